use super::*;
use crate::sshsig::Signer;
use crate::testkit::{key, public};
use ssh_key::certificate::{Builder, CertType};

fn plain(seed: u8) -> Signer {
    Signer::Key(key(seed, "k").public_key().key_data().clone())
}

#[test]
fn errors_name_the_line_and_what_was_wrong() {
    let k = public(&key(1, "k"));
    for (line, want) in [
        (format!("alice permt=\"*\" {k}"), "unknown option"),
        (format!("alice permit=\"reboot\" {k}"), "unknown operation"),
        (format!("alice valid-after=\"20260101\" {k}"), "trailing Z"),
        (format!("alice permit=* {k}"), "double quotes"),
        (
            format!("alice permit=\"*\",,tenants=\"*\" {k}"),
            "empty option",
        ),
        ("alice ssh-ed25519 AAAAnope".to_owned(), "key"),
        ("alice".to_owned(), "expected"),
    ] {
        let text = format!("# comment\n\n{line}\n");
        let error = Signers::parse(&text, "/s/allowed_signers").unwrap_err();
        assert!(error.starts_with("/s/allowed_signers:3: "), "{error}");
        assert!(error.contains(want), "{line}: {error}");
    }
}

#[test]
fn a_line_grants_only_what_it_names_and_nothing_by_default() {
    let k = public(&key(1, "k"));
    let signers = Signers::parse(
        &format!("bare {k}\nops permit=\"level\",tenants=\"pg-*,!pg-secret\" {k}\n"),
        "f",
    )
    .unwrap();
    let grant = signers.authorize(&plain(1), "level", "pg-demo", 0).unwrap();
    assert_eq!((grant.principal.as_str(), grant.line), ("ops", 2));
    assert_eq!(
        signers
            .authorize(&plain(1), "stop", "pg-demo", 0)
            .unwrap_err()
            .code,
        "not_permitted"
    );
    assert_eq!(
        signers
            .authorize(&plain(1), "level", "pg-secret", 0)
            .unwrap_err()
            .code,
        "not_permitted"
    );
    assert_eq!(
        signers
            .authorize(&plain(1), "level", "web", 0)
            .unwrap_err()
            .code,
        "not_permitted"
    );
    assert_eq!(
        signers
            .authorize(&plain(2), "level", "pg-demo", 0)
            .unwrap_err()
            .code,
        "unknown_key"
    );
}

#[test]
fn namespaces_when_given_must_include_requests() {
    let k = public(&key(1, "k"));
    let signers = Signers::parse(
        &format!("a namespaces=\"git\",permit=\"*\",tenants=\"*\" {k}\n"),
        "f",
    )
    .unwrap();
    assert_eq!(
        signers
            .authorize(&plain(1), "level", "t", 0)
            .unwrap_err()
            .code,
        "not_permitted"
    );
}

fn certificate(
    ca: &ssh_key::PrivateKey,
    user: &ssh_key::PrivateKey,
    principal: &str,
    kind: CertType,
) -> Signer {
    let mut builder =
        Builder::new([0u8; 16], user.public_key().key_data().clone(), 100, 200).unwrap();
    builder.cert_type(kind).unwrap();
    builder.valid_principal(principal).unwrap();
    builder.key_id("cert-of-carol").unwrap();
    Signer::Certificate(Box::new(builder.sign(ca).unwrap()))
}

#[test]
fn a_cert_authority_trusts_the_certificates_it_issued_while_they_are_valid() {
    let ca = key(20, "ca");
    let carol = key(21, "carol");
    let signers = Signers::parse(
        &format!(
            "ops-* cert-authority,permit=\"dump-spool\",tenants=\"*\" {}\n",
            public(&ca)
        ),
        "f",
    )
    .unwrap();
    let good = certificate(&ca, &carol, "ops-carol", CertType::User);
    assert_eq!(
        signers
            .authorize(&good, "dump-spool", "t", 150)
            .unwrap()
            .principal,
        "ops-carol"
    );
    // Outside the certificate's own validity.
    assert_eq!(
        signers
            .authorize(&good, "dump-spool", "t", 250)
            .unwrap_err()
            .code,
        "bad_signature"
    );
    // A principal the line does not cover.
    let other = certificate(&ca, &carol, "dev-carol", CertType::User);
    assert_eq!(
        signers
            .authorize(&other, "dump-spool", "t", 150)
            .unwrap_err()
            .code,
        "not_permitted"
    );
    // A host certificate is no user's.
    let host = certificate(&ca, &carol, "ops-carol", CertType::Host);
    assert_eq!(
        signers
            .authorize(&host, "dump-spool", "t", 150)
            .unwrap_err()
            .code,
        "bad_signature"
    );
    // Issued by another CA.
    let rogue = certificate(&key(22, "rogue"), &carol, "ops-carol", CertType::User);
    assert_eq!(
        signers
            .authorize(&rogue, "dump-spool", "t", 150)
            .unwrap_err()
            .code,
        "unknown_key"
    );
    // The CA's key itself, used plainly, is not a signer.
    assert_eq!(
        signers
            .authorize(&plain(20), "dump-spool", "t", 150)
            .unwrap_err()
            .code,
        "unknown_key"
    );
}

#[test]
fn patterns_follow_openssh() {
    let list = |s: &str| s.split(',').map(str::to_owned).collect::<Vec<_>>();
    assert!(matches_list(&list("pg-*"), "pg-demo"));
    assert!(matches_list(&list("a?c"), "abc"));
    assert!(!matches_list(&list("a?c"), "abbc"));
    assert!(!matches_list(&list("*,!x"), "x"));
    assert!(matches_list(&list("*,!x"), "y"));
    assert!(!matches_list(&list("!x"), "y"));
}
