//! Keys and helpers the unit tests share.

use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::PrivateKey;

use crate::request::{Args, Recipient, Request, Target};
use crate::seal::NodeKeys;

/// An ed25519 key from a one-byte seed.
pub fn key(seed: u8, comment: &str) -> PrivateKey {
    PrivateKey::new(
        KeypairData::Ed25519(Ed25519Keypair::from_seed(&[seed; 32])),
        comment,
    )
    .unwrap()
}

/// `ssh-ed25519 AAAA…` of a key.
pub fn public(key: &PrivateKey) -> String {
    let text = key.public_key().to_openssh().unwrap();
    text.split(' ').take(2).collect::<Vec<_>>().join(" ")
}

/// The node every test runs on.
pub fn node() -> NodeKeys {
    NodeKeys::from_seeds(&[1; 32], &[2; 32], "node")
}

/// The requester's age identity and recipient.
pub fn requester() -> (age::x25519::Identity, Recipient) {
    let id = NodeKeys::from_seeds(&[3; 32], &[4; 32], "requester");
    let identity: age::x25519::Identity = id.age_identity_text().parse().unwrap();
    let recipient = identity.to_public().to_string().parse().unwrap();
    (identity, recipient)
}

/// A valid request for `op` on `target`, issued at 1000 for 300 s.
pub fn request(op: &str, target: &str, args: &[(&str, &str)]) -> Request {
    Request {
        op: op.into(),
        target: Target::new(target).unwrap(),
        node: node().id(),
        instance: None,
        issued: 1000,
        expires: 1300,
        nonce: [9; 16],
        recipient: requester().1,
        args: Args::Clear(
            args.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ),
    }
}

/// Signs `text` as `ssh-keygen -Y sign -n NAMESPACE` would.
pub fn sign(key: &PrivateKey, namespace: &str, text: &[u8]) -> Vec<u8> {
    crate::sshsig::sign(key, namespace, text)
        .unwrap()
        .into_bytes()
}
