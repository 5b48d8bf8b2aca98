//! The node's keys, sealed results, and sealed arguments.
//!
//! A node has two keys, made once from caller-supplied random seeds and kept in its
//! state dir: an ed25519 *host key* that signs every sealed result (its fingerprint is
//! the node's id, which requests are bound to), and an age X25519 *identity* whose
//! recipient operators may seal a request's arguments to.

use std::io::Write as _;
use std::str::FromStr;

use age::secrecy::ExposeSecret as _;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{HashAlg, PrivateKey};

use crate::refusal::Refusal;
use crate::request::Recipient;

/// Most recipient stanzas read in a sealed-arguments header: each costs an X25519
/// operation, so thousands of them would be a cheap way to burn the node's CPU.
pub const MAX_STANZAS: usize = 8;
/// Largest sealed-arguments file.
pub const MAX_SEALED_ARGS: usize = 20 * 1024;

/// A node's keys.
pub struct NodeKeys {
    host: PrivateKey,
    age: age::x25519::Identity,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl NodeKeys {
    /// Keys from two 32-byte random seeds (read them from the OS's CSPRNG).
    pub fn from_seeds(host_seed: &[u8; 32], age_seed: &[u8; 32], comment: &str) -> NodeKeys {
        let pair = Ed25519Keypair::from_seed(host_seed);
        let host = PrivateKey::new(KeypairData::Ed25519(pair), comment)
            .expect("an ed25519 keypair is always a valid private key");
        NodeKeys {
            host,
            age: age_identity_from_seed(age_seed),
        }
    }

    /// Keys as persisted by [`NodeKeys::host_key_text`] and [`NodeKeys::age_identity_text`].
    pub fn load(host_key: &str, age_identity: &str) -> Result<NodeKeys, String> {
        let host = PrivateKey::from_openssh(host_key).map_err(|e| format!("the host key: {e}"))?;
        if host.is_encrypted() || !host.public_key().key_data().is_ed25519() {
            return Err("the host key must be an unencrypted ed25519 key".into());
        }
        let age = age::x25519::Identity::from_str(age_identity.trim())
            .map_err(|e| format!("the age identity: {e}"))?;
        Ok(NodeKeys { host, age })
    }

    /// The host key in OpenSSH format (keep it 0600).
    pub fn host_key_text(&self) -> String {
        self.host
            .to_openssh(ssh_key::LineEnding::LF)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// The age identity (`AGE-SECRET-KEY-1…`; keep it 0600).
    pub fn age_identity_text(&self) -> String {
        self.age.to_string().expose_secret().to_owned()
    }

    /// The node's id: its host key's `SHA256:` fingerprint, as `ssh-keygen -l` shows it.
    pub fn id(&self) -> String {
        self.host
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// The host public key, `ssh-ed25519 AAAA…`.
    pub fn host_public(&self) -> String {
        self.host.public_key().to_openssh().unwrap_or_default()
    }

    /// The age recipient arguments may be sealed to.
    pub fn age_recipient(&self) -> String {
        self.age.to_public().to_string()
    }

    /// The line a requester puts in an allowed_signers file to check results with
    /// `ssh-keygen -Y verify -I <node id> -n supervise-result`.
    pub fn result_signers_line(&self) -> String {
        format!(
            "{} namespaces=\"{}\" {}",
            self.id(),
            crate::RESULT_NAMESPACE,
            self.host_public()
        )
    }

    /// Signs a sealed result (its exact bytes) with the host key.
    pub fn sign_result(&self, sealed: &[u8]) -> Result<String, String> {
        crate::sshsig::sign(&self.host, crate::RESULT_NAMESPACE, sealed)
    }

    /// Decrypts sealed arguments, refusing oversized files and crowded headers before
    /// any key operation.
    pub fn unseal_args(&self, sealed: &[u8]) -> Result<Vec<u8>, Refusal> {
        if sealed.len() > MAX_SEALED_ARGS {
            return Err(Refusal::new(
                "too_large",
                format!(
                    "sealed-args is {} bytes; the limit is {MAX_SEALED_ARGS}",
                    sealed.len()
                ),
            ));
        }
        let stanzas = count_stanzas(sealed)?;
        if stanzas > MAX_STANZAS {
            return Err(Refusal::new(
                "sealed_args",
                format!("sealed-args names more than {MAX_STANZAS} recipients (found {stanzas} before stopping); at most {MAX_STANZAS} are read"),
            ));
        }
        age::decrypt(&self.age, sealed).map_err(|e| {
            Refusal::new(
                "sealed_args",
                format!("sealed-args does not open with this node's age identity: {e}"),
            )
        })
    }
}

/// Seals `plaintext` to `recipient`, armored (`age -d -i` reads it).
pub fn seal(recipient: &Recipient, plaintext: &[u8]) -> Result<String, String> {
    let boxed: Box<dyn age::Recipient + Send> = match recipient {
        Recipient::X25519(text) => {
            Box::new(age::x25519::Recipient::from_str(text).map_err(|e| e.to_string())?)
        }
        Recipient::SshEd25519(text) => {
            Box::new(age::ssh::Recipient::from_str(text).map_err(|e| format!("{e:?}"))?)
        }
    };
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&*boxed as &dyn age::Recipient))
            .map_err(|e| format!("cannot seal: {e}"))?;
    let mut out = Vec::with_capacity(plaintext.len() + 512);
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| format!("cannot seal: {e}"))?;
    let mut writer = encryptor
        .wrap_output(armor)
        .map_err(|e| format!("cannot seal: {e}"))?;
    writer
        .write_all(plaintext)
        .map_err(|e| format!("cannot seal: {e}"))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| format!("cannot seal: {e}"))?;
    String::from_utf8(out).map_err(|_| "the armor is not text".into())
}

/// Seals `args` lines to a node's age recipient (what `supervise request --seal-args` does).
pub fn seal_args(node_recipient: &str, args: &[(String, String)]) -> Result<Vec<u8>, String> {
    let recipient = age::x25519::Recipient::from_str(node_recipient)
        .map_err(|e| format!("node recipient {node_recipient:?}: {e}"))?;
    age::encrypt(&recipient, crate::request::encode_args(args).as_bytes())
        .map_err(|e| e.to_string())
}

/// Recipient stanzas in an age header (`-> ` lines before the `---` MAC line).
fn count_stanzas(file: &[u8]) -> Result<usize, Refusal> {
    let bad = |m: &str| {
        Refusal::new(
            "sealed_args",
            format!("sealed-args is not an age file: {m}"),
        )
    };
    let mut lines = file.split(|&b| b == b'\n');
    if lines.next() != Some(b"age-encryption.org/v1".as_slice()) {
        return Err(bad("no age-encryption.org/v1 header"));
    }
    let mut stanzas = 0;
    for line in lines {
        if line.starts_with(b"---") {
            return Ok(stanzas);
        }
        if line.starts_with(b"-> ") {
            stanzas += 1;
            if stanzas > MAX_STANZAS {
                return Ok(stanzas);
            }
        }
    }
    Err(bad("the header never ends"))
}

/// An age X25519 identity from 32 secret bytes (the encoding `age-keygen` writes).
fn age_identity_from_seed(seed: &[u8; 32]) -> age::x25519::Identity {
    use bech32::ToBase32 as _;
    let text = bech32::encode("age-secret-key-", seed.to_base32(), bech32::Variant::Bech32)
        .expect("a fixed human-readable part always encodes")
        .to_uppercase();
    age::x25519::Identity::from_str(&text).expect("32 bytes are always an X25519 secret")
}

#[cfg(test)]
mod tests;
