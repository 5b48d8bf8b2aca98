//! Fuzzes the whole decision on a request, `keyring::Checker::check`.
//!
//! A fixed node (`NodeKeys::from_seeds(&[1; 32], &[2; 32], "n")`, tenant `pg-demo`,
//! instance `6f1c0a9e2b7d4c31`, default limits) trusts one operator key (ed25519 from the
//! seed `[5; 32]`) with the line
//! `ops permit="dump-spool,set-capture,level",tenants="pg-*" ssh-ed25519 AAAA…`,
//! and decides at the fixed time 1796601700 with a fresh nonce cache (capacity 16).
//!
//! Input: up to the first 0xff byte the request, after it the armored signature. With no
//! 0xff byte the whole input is the request and, when it parses, the target signs it with
//! the operator key itself, so mutations of a valid request reach the checks after the
//! signature (trust, binding, time, sealed arguments, replay). Checked:
//! - nothing panics;
//! - the verdict names the op and target exactly when the request parses;
//! - a refusal's code is one of the documented ones, and a refused request leaves the
//!   nonce cache empty;
//! - an accepted request is the parsed request, granted by line 1 to `ops`, signed by the
//!   operator, bound to this node and tenant, within its window and of a permitted op;
//!   its nonce is recorded, and checking it again is refused as `replayed`.
#![no_main]

use std::sync::OnceLock;

use keyring::replay::NonceCache;
use keyring::seal::NodeKeys;
use keyring::signers::Signers;
use keyring::{Checker, Limits, Node, Request, REQUEST_NAMESPACE};
use libfuzzer_sys::fuzz_target;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{HashAlg, PrivateKey};

const TENANT: &str = "pg-demo";
const INSTANCE: &str = "6f1c0a9e2b7d4c31";
const NOW: u64 = 1_796_601_700;
const CODES: [&str; 19] = [
    "malformed",
    "too_large",
    "bad_recipient",
    "unsigned",
    "bad_signature",
    "wrong_namespace",
    "unknown_key",
    "not_permitted",
    "key_not_yet_valid",
    "key_expired",
    "expired",
    "not_yet_valid",
    "too_long",
    "wrong_node",
    "wrong_instance",
    "wrong_tenant",
    "replayed",
    "nonce_cache_full",
    "sealed_args",
];

struct Fixture {
    keys: NodeKeys,
    operator: PrivateKey,
    fingerprint: String,
    signers: Signers,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys = NodeKeys::from_seeds(&[1; 32], &[2; 32], "n");
        let operator = PrivateKey::new(
            KeypairData::Ed25519(Ed25519Keypair::from_seed(&[5; 32])),
            "ops",
        )
        .expect("an ed25519 key");
        let public = operator.public_key().to_openssh().expect("a public key");
        let line =
            format!("ops permit=\"dump-spool,set-capture,level\",tenants=\"pg-*\" {public}\n");
        let signers = Signers::parse(&line, "fuzz").expect("the fixed signers line parses");
        let fingerprint = operator
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        Fixture {
            keys,
            operator,
            fingerprint,
            signers,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (request, signature) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], data[i + 1..].to_vec()),
        None if Request::parse(data).is_ok() => {
            let armored = keyring::sshsig::sign(&f.operator, REQUEST_NAMESPACE, data)
                .expect("the operator key signs");
            (data, armored.into_bytes())
        }
        None => (data, Vec::new()),
    };
    let checker = Checker {
        signers: &f.signers,
        limits: Limits::default(),
        node: Node {
            keys: &f.keys,
            tenant: TENANT,
            instance: INSTANCE,
        },
    };
    let mut nonces = NonceCache::new(16);
    let verdict = checker.check(request, &signature, NOW, &mut nonces);

    let parsed = Request::parse(request).ok();
    assert_eq!(
        verdict.op.as_deref(),
        parsed.as_ref().map(|r| r.op.as_str()),
        "the verdict's op"
    );
    assert_eq!(
        verdict.target.as_deref(),
        parsed.as_ref().map(|r| r.target.as_str()),
        "the verdict's target"
    );
    match &verdict.outcome {
        Err(refusal) => {
            assert!(CODES.contains(&refusal.code), "undocumented code {refusal}");
            assert!(nonces.is_empty(), "a refused request recorded its nonce");
        }
        Ok(accepted) => {
            let r = &accepted.request;
            assert_eq!(
                Some(r),
                parsed.as_ref(),
                "the accepted request is not the parsed one"
            );
            assert_eq!((accepted.principal.as_str(), accepted.line), ("ops", 1));
            assert_eq!(verdict.fingerprint.as_deref(), Some(f.fingerprint.as_str()));
            assert_eq!(r.node, f.keys.id(), "accepted for another node");
            assert_eq!(r.target.tenant(), TENANT, "accepted for another tenant");
            assert!(r.instance.as_deref().is_none_or(|i| i == INSTANCE));
            assert!(["dump-spool", "set-capture", "level"].contains(&r.op.as_str()));
            assert!(r.issued < r.expires && r.issued <= NOW + 60 && NOW < r.expires);
            assert!(r.expires - r.issued <= 15 * 60);
            assert_eq!(nonces.len(), 1, "the nonce was not recorded");
            let again = checker.check(request, &signature, NOW, &mut nonces);
            assert_eq!(
                again.outcome.as_ref().map_err(|r| r.code).err(),
                Some("replayed"),
                "a replay was not refused"
            );
        }
    }
});
