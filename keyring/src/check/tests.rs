//! One test per way a request can be bad (issue 13, item 7): each is refused with its
//! reason, and nothing is recorded for it.

use super::*;
use crate::replay::NonceCache;
use crate::request::{Args, Request};
use crate::seal::{seal_args, NodeKeys};
use crate::signers::Signers;
use crate::testkit::{key, node, public, request, sign};

const NOW: u64 = 1100;

struct Fixture {
    node: NodeKeys,
    signers: Signers,
    alice: ssh_key::PrivateKey,
    nonces: NonceCache,
}

impl Fixture {
    fn new() -> Fixture {
        let alice = key(10, "alice");
        let bob = key(11, "bob");
        let text = format!(
            "alice permit=\"dump-spool,set-capture\",tenants=\"pg-demo\" {}\n\
             bob permit=\"*\",tenants=\"*\",valid-after=\"19700101000200Z\",valid-before=\"19700101000500Z\" {}\n",
            public(&alice),
            public(&bob)
        );
        Fixture {
            node: node(),
            signers: Signers::parse(&text, "allowed_signers").unwrap(),
            alice,
            nonces: NonceCache::new(16),
        }
    }

    fn check(&mut self, request: &[u8], signature: &[u8], now: u64) -> Result<Accepted, Refusal> {
        let checker = Checker {
            signers: &self.signers,
            limits: Limits::default(),
            node: Node {
                keys: &self.node,
                tenant: "pg-demo",
                instance: "run-1",
            },
        };
        let before = self.nonces.len();
        let verdict = checker.check(request, signature, now, &mut self.nonces);
        if verdict.outcome.is_err() {
            assert_eq!(
                self.nonces.len(),
                before,
                "a refused request recorded its nonce"
            );
        }
        verdict.outcome
    }

    fn signed(&mut self, r: &Request) -> Result<Accepted, Refusal> {
        let text = r.encode();
        let sig = sign(&self.alice, crate::REQUEST_NAMESPACE, text.as_bytes());
        self.check(text.as_bytes(), &sig, NOW)
    }
}

fn code(result: Result<Accepted, Refusal>) -> &'static str {
    match result {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(r) => {
            assert!(!r.message.is_empty());
            r.code
        }
    }
}

#[test]
fn a_good_request_is_accepted_once() {
    let mut f = Fixture::new();
    let r = request("dump-spool", "pg-demo/pg-clients/c1", &[]);
    let accepted = f.signed(&r).unwrap();
    assert_eq!(accepted.principal, "alice");
    assert_eq!(accepted.line, 1);
    assert_eq!(code(f.signed(&r)), "replayed");
}

#[test]
fn unsigned_or_signed_for_another_namespace() {
    let mut f = Fixture::new();
    let text = request("dump-spool", "pg-demo", &[]).encode();
    assert_eq!(code(f.check(text.as_bytes(), b"", NOW)), "unsigned");
    let git = sign(&f.alice, "git", text.as_bytes());
    assert_eq!(code(f.check(text.as_bytes(), &git, NOW)), "wrong_namespace");
}

#[test]
fn unknown_key() {
    let mut f = Fixture::new();
    let text = request("dump-spool", "pg-demo", &[]).encode();
    let sig = sign(
        &key(99, "mallory"),
        crate::REQUEST_NAMESPACE,
        text.as_bytes(),
    );
    assert_eq!(code(f.check(text.as_bytes(), &sig, NOW)), "unknown_key");
}

#[test]
fn a_key_without_that_operation_or_that_tenant() {
    let mut f = Fixture::new();
    assert_eq!(
        code(f.signed(&request("dump-memory", "pg-demo", &[]))),
        "not_permitted"
    );
    let other = request("dump-spool", "other-tenant/s", &[]);
    assert_eq!(code(f.signed(&other)), "not_permitted");
}

#[test]
fn outside_the_keys_valid_after_and_before() {
    let mut f = Fixture::new();
    let bob = key(11, "bob");
    let mut r = request("stop", "pg-demo", &[]);
    for (now, want) in [(100, "key_not_yet_valid"), (300, "key_expired")] {
        r.issued = now;
        r.expires = now + 60;
        let text = r.encode();
        let sig = sign(&bob, crate::REQUEST_NAMESPACE, text.as_bytes());
        assert_eq!(code(f.check(text.as_bytes(), &sig, now)), want);
    }
    r.issued = 200;
    r.expires = 260;
    let text = r.encode();
    let sig = sign(&bob, crate::REQUEST_NAMESPACE, text.as_bytes());
    f.check(text.as_bytes(), &sig, 200).unwrap();
}

#[test]
fn expired_dated_in_the_future_or_valid_too_long() {
    let mut f = Fixture::new();
    let mut r = request("dump-spool", "pg-demo", &[]);
    r.expires = NOW;
    assert_eq!(code(f.signed(&r)), "expired");
    r.issued = NOW + 61;
    r.expires = NOW + 200;
    assert_eq!(code(f.signed(&r)), "not_yet_valid");
    r.issued = NOW + 59; // within the skew
    f.signed(&r).unwrap();
    let mut long = request("dump-spool", "pg-demo", &[]);
    long.nonce = [1; 16];
    long.expires = long.issued + 15 * 60 + 1;
    assert_eq!(code(f.signed(&long)), "too_long");
}

#[test]
fn replayed_also_after_a_restart() {
    let mut f = Fixture::new();
    let r = request("dump-spool", "pg-demo", &[]);
    f.signed(&r).unwrap();
    // A restart: the cache is read back from what was persisted.
    f.nonces = NonceCache::parse(&f.nonces.encode(), 16).unwrap();
    assert_eq!(code(f.signed(&r)), "replayed");
}

#[test]
fn another_nodes_another_runs_or_another_tenants() {
    let mut f = Fixture::new();
    let mut r = request("dump-spool", "pg-demo", &[]);
    r.node = NodeKeys::from_seeds(&[5; 32], &[6; 32], "other").id();
    assert_eq!(code(f.signed(&r)), "wrong_node");
    let mut r = request("dump-spool", "pg-demo", &[]);
    r.instance = Some("run-0".into());
    assert_eq!(code(f.signed(&r)), "wrong_instance");
    r.instance = Some("run-1".into());
    f.signed(&r).unwrap();
    // alice may act on every tenant named pg-demo; a request for another tenant sent to
    // this supervisor is refused even when the key would allow it.
    let bob = key(11, "bob");
    let mut r = request("stop", "another", &[]);
    r.issued = 200;
    r.expires = 260;
    let text = r.encode();
    let sig = sign(&bob, crate::REQUEST_NAMESPACE, text.as_bytes());
    assert_eq!(code(f.check(text.as_bytes(), &sig, 200)), "wrong_tenant");
}

#[test]
fn any_byte_changed_after_signing() {
    let mut f = Fixture::new();
    let r = request(
        "set-capture",
        "pg-demo/pg-clients",
        &[("capture", "header")],
    );
    let text = r.encode();
    let sig = sign(&f.alice, crate::REQUEST_NAMESPACE, text.as_bytes());
    let swaps = [
        ("capture header", "capture all"),
        ("pg-demo/pg-clients", "pg-demo/pg-admin"),
        ("issued 1000", "issued 1001"),
        ("expires 1300", "expires 1299"),
    ];
    for (from, to) in swaps {
        let changed = text.replace(from, to);
        assert_ne!(changed, text);
        assert_eq!(
            code(f.check(changed.as_bytes(), &sig, NOW)),
            "bad_signature",
            "{from} -> {to}"
        );
    }
    // The recipient swapped for an attacker's: the whole point of signing it.
    let mut swapped = r.clone();
    swapped.recipient = crate::testkit::requester().1;
    swapped.recipient = NodeKeys::from_seeds(&[7; 32], &[8; 32], "x")
        .age_recipient()
        .parse()
        .unwrap();
    let changed = swapped.encode();
    assert_eq!(
        code(f.check(changed.as_bytes(), &sig, NOW)),
        "bad_signature"
    );
    // And a signature with one bit flipped.
    let mut blob = sig.clone();
    let at = blob.len() / 2;
    blob[at] ^= 1;
    assert!(f.check(text.as_bytes(), &blob, NOW).is_err());
}

#[test]
fn truncated_or_oversized() {
    let mut f = Fixture::new();
    let text = request("dump-spool", "pg-demo", &[]).encode();
    let sig = sign(&f.alice, crate::REQUEST_NAMESPACE, text.as_bytes());
    let cut = &text.as_bytes()[..text.len() - 10];
    assert_eq!(code(f.check(cut, &sig, NOW)), "malformed");
    assert!(f
        .check(text.as_bytes(), &sig[..sig.len() - 40], NOW)
        .is_err());
    let big = vec![b'a'; crate::request::MAX_REQUEST + 1];
    assert_eq!(code(f.check(&big, &sig, NOW)), "too_large");
    let big_sig = vec![b'a'; crate::sshsig::MAX_ARMORED + 1];
    assert_eq!(code(f.check(text.as_bytes(), &big_sig, NOW)), "too_large");
}

#[test]
fn an_invalid_recipient() {
    let mut f = Fixture::new();
    let text = request("dump-spool", "pg-demo", &[]).encode();
    let recipient = text.lines().find(|l| l.starts_with("recipient ")).unwrap();
    let bad = text.replace(recipient, "recipient age1qqqqqqqqqqqqqqqq");
    let sig = sign(&f.alice, crate::REQUEST_NAMESPACE, bad.as_bytes());
    assert_eq!(code(f.check(bad.as_bytes(), &sig, NOW)), "bad_recipient");
}

#[test]
fn sealed_arguments_open_only_here_and_crowded_headers_are_refused() {
    let mut f = Fixture::new();
    let args = vec![("capture".to_owned(), "all".to_owned())];
    let mut r = request("set-capture", "pg-demo/pg-clients", &[]);
    r.args = Args::Sealed(seal_args(&f.node.age_recipient(), &args).unwrap());
    assert!(!r.encode().contains("capture all"));
    assert_eq!(f.signed(&r).unwrap().args, args);
    // Sealed to another node: refused.
    r.nonce = [2; 16];
    let other = NodeKeys::from_seeds(&[5; 32], &[6; 32], "other");
    r.args = Args::Sealed(seal_args(&other.age_recipient(), &args).unwrap());
    assert_eq!(code(f.signed(&r)), "sealed_args");
    // A header with thousands of recipient stanzas is refused before any key operation.
    let mut header = b"age-encryption.org/v1\n".to_vec();
    for _ in 0..5000 {
        header.extend_from_slice(b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAA\n");
    }
    header.extend_from_slice(b"--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
    r.args = Args::Sealed(header[..crate::seal::MAX_SEALED_ARGS - 100].to_vec());
    r.nonce = [3; 16];
    let refused = f.signed(&r).unwrap_err();
    assert_eq!(refused.code, "sealed_args", "{refused}");
    assert!(refused.message.contains("recipients"), "{refused}");
    r.args = Args::Sealed(header);
    assert!(matches!(code(f.signed(&r)), "too_large"));
}

#[test]
fn a_bad_sealed_plaintext_is_refused_without_echoing_it() {
    let mut f = Fixture::new();
    let mut r = request("set-capture", "pg-demo/pg-clients", &[]);
    let recipient: age::x25519::Recipient = f.node.age_recipient().parse().unwrap();
    r.args = Args::Sealed(age::encrypt(&recipient, b"arg password=hunter2\n").unwrap());
    let refusal = f.signed(&r).unwrap_err();
    assert_eq!(refusal.code, "sealed_args", "{refusal}");
    assert!(!refusal.message.contains("hunter2"), "{refusal}");
}
