use super::*;
use crate::testkit::{key, public, requester};

#[test]
fn a_result_opens_only_for_its_recipient_and_carries_the_nodes_signature() {
    let node = crate::testkit::node();
    let (identity, recipient) = requester();
    let sealed = seal(&recipient, b"the spool").unwrap();
    assert!(
        sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{sealed}"
    );
    assert_eq!(
        age::decrypt(&identity, sealed.as_bytes()).unwrap(),
        b"the spool"
    );
    let stranger: age::x25519::Identity = NodeKeys::from_seeds(&[8; 32], &[9; 32], "x")
        .age_identity_text()
        .parse()
        .unwrap();
    let raw = sealed.as_bytes();
    assert!(age::decrypt(&stranger, raw).is_err());
    let sig = node.sign_result(sealed.as_bytes()).unwrap();
    let parsed = crate::sshsig::Signature::parse_armored(sig.as_bytes()).unwrap();
    parsed
        .verify(crate::RESULT_NAMESPACE, sealed.as_bytes())
        .unwrap();
    assert_eq!(parsed.signer.fingerprint(), node.id());
    assert!(parsed
        .verify(crate::RESULT_NAMESPACE, b"another result")
        .is_err());
}

#[test]
fn results_seal_to_ssh_ed25519_keys_too() {
    let alice = key(30, "alice");
    let recipient = public(&alice).parse().unwrap();
    let sealed = seal(&recipient, b"x").unwrap();
    let identity = age::ssh::Identity::from_buffer(
        alice
            .to_openssh(ssh_key::LineEnding::LF)
            .unwrap()
            .as_bytes(),
        None,
    )
    .unwrap();
    let raw = sealed.as_bytes();
    assert_eq!(age::decrypt(&identity, raw).unwrap(), b"x");
}

#[test]
fn node_keys_survive_a_round_trip_through_their_files() {
    let node = crate::testkit::node();
    let again = NodeKeys::load(&node.host_key_text(), &node.age_identity_text()).unwrap();
    assert_eq!(again.id(), node.id());
    assert_eq!(again.age_recipient(), node.age_recipient());
    assert!(node.id().starts_with("SHA256:"));
    assert!(node
        .result_signers_line()
        .contains("namespaces=\"supervise-result\" ssh-ed25519 "));
    assert!(NodeKeys::load("nope", &node.age_identity_text()).is_err());
}
