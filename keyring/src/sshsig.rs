//! SSH signatures (OpenSSH's PROTOCOL.sshsig), as `ssh-keygen -Y sign` writes them.
//!
//! Parsed here rather than with `ssh_key::SshSig` so every length is bounded before it
//! is read, and so a signature made with a *certificate* (ssh-agent holding a
//! CA-signed key, `ssh-keygen -Y sign -f key-cert.pub`) is understood. The inner
//! signature is checked with `ssh-key`.

use base64::Engine as _;
use ssh_key::public::KeyData;
use ssh_key::{Certificate, HashAlg, PublicKey, SshSig};

use crate::refusal::Refusal;

/// Largest armored signature we read (an ed25519 certificate signature is ~1 KiB).
pub const MAX_ARMORED: usize = 8 * 1024;
const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// Who signed: a plain key, or a certificate (whose CA the signers file must trust).
#[derive(Debug, Clone)]
pub enum Signer {
    /// A plain public key.
    Key(KeyData),
    /// A certificate; its key made the signature.
    Certificate(Box<Certificate>),
}

impl Signer {
    /// The key that made the signature.
    pub fn key(&self) -> &KeyData {
        match self {
            Signer::Key(key) => key,
            Signer::Certificate(cert) => cert.public_key(),
        }
    }

    /// `SHA256:…` of the signing key (for a certificate, of its key).
    pub fn fingerprint(&self) -> String {
        self.key().fingerprint(HashAlg::Sha256).to_string()
    }
}

/// A parsed SSH signature.
#[derive(Debug, Clone)]
pub struct Signature {
    /// Who signed.
    pub signer: Signer,
    /// The namespace it was made for.
    pub namespace: String,
    hash_alg: HashAlg,
    signature: ssh_key::Signature,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new("bad_signature", message)
}

impl Signature {
    /// Parses an armored signature (`-----BEGIN SSH SIGNATURE-----` …).
    pub fn parse_armored(text: &[u8]) -> Result<Signature, Refusal> {
        if text.len() > MAX_ARMORED {
            return Err(Refusal::new(
                "too_large",
                format!(
                    "the signature is {} bytes; the limit is {MAX_ARMORED}",
                    text.len()
                ),
            ));
        }
        let text = std::str::from_utf8(text).map_err(|_| bad("the signature is not text"))?;
        let body = text
            .trim()
            .strip_prefix(BEGIN)
            .and_then(|t| t.strip_suffix(END))
            .ok_or_else(|| {
                if text.trim().is_empty() {
                    Refusal::new("unsigned", "the request carries no signature")
                } else {
                    bad(format!("the signature is not armored ({BEGIN} … {END})"))
                }
            })?;
        let b64: String = body.split_whitespace().collect();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(format!("the signature's base64: {e}")))?;
        Signature::parse_blob(&blob)
    }

    /// Parses the binary signature.
    pub fn parse_blob(blob: &[u8]) -> Result<Signature, Refusal> {
        let mut r = Reader(blob);
        if r.take(6)? != b"SSHSIG" {
            return Err(bad("not an SSH signature (no SSHSIG magic)"));
        }
        let version = r.u32()?;
        if version != 1 {
            return Err(bad(format!(
                "SSH signature version {version} (only 1 is known)"
            )));
        }
        let public_key = r.string(4096, "public key")?;
        let namespace = r.string(256, "namespace")?;
        let reserved = r.string(256, "reserved")?;
        let hash = r.string(64, "hash algorithm")?;
        let signature = r.string(4096, "signature")?;
        if !r.0.is_empty() {
            return Err(bad("trailing bytes after the signature"));
        }
        if !reserved.is_empty() {
            return Err(bad("the reserved field is not empty"));
        }
        let namespace = std::str::from_utf8(namespace)
            .map_err(|_| bad("the namespace is not UTF-8"))?
            .to_owned();
        let hash_alg = match hash {
            b"sha512" => HashAlg::Sha512,
            b"sha256" => HashAlg::Sha256,
            other => {
                return Err(bad(format!(
                    "hash algorithm {:?} (sha256 or sha512)",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        let signer = parse_signer(public_key)?;
        let signature = ssh_key::Signature::try_from(signature)
            .map_err(|e| bad(format!("the inner signature: {e}")))?;
        Ok(Signature {
            signer,
            namespace,
            hash_alg,
            signature,
        })
    }

    /// Whether it signs `message` in `namespace`, with the key it names.
    pub fn verify(&self, namespace: &str, message: &[u8]) -> Result<(), Refusal> {
        if self.namespace != namespace {
            return Err(Refusal::new(
                "wrong_namespace",
                format!(
                    "the signature was made for namespace {:?}, not {namespace:?} (ssh-keygen -Y sign -n {namespace})",
                    self.namespace
                ),
            ));
        }
        let signed = SshSig::signed_data(namespace, self.hash_alg, message)
            .map_err(|e| bad(format!("cannot build the signed data: {e}")))?;
        use signature::Verifier as _;
        self.signer
            .key()
            .verify(&signed, &self.signature)
            .map_err(|_| {
                bad(format!(
                    "the signature by {} does not match the request (changed after signing?)",
                    self.signer.fingerprint()
                ))
            })
    }
}

fn parse_signer(blob: &[u8]) -> Result<Signer, Refusal> {
    let algorithm = Reader(blob).string(128, "key algorithm")?;
    if algorithm.ends_with(b"-cert-v01@openssh.com") {
        let cert = Certificate::from_bytes(blob)
            .map_err(|e| bad(format!("the signing certificate: {e}")))?;
        return Ok(Signer::Certificate(Box::new(cert)));
    }
    let key = PublicKey::from_bytes(blob).map_err(|e| bad(format!("the signing key: {e}")))?;
    Ok(Signer::Key(key.key_data().clone()))
}

/// Signs `message` in `namespace` with `key`, armored as `ssh-keygen -Y sign` writes.
pub fn sign(key: &ssh_key::PrivateKey, namespace: &str, message: &[u8]) -> Result<String, String> {
    let sig = key
        .sign(namespace, HashAlg::Sha512, message)
        .map_err(|e| format!("cannot sign: {e}"))?;
    sig.to_pem(ssh_key::LineEnding::LF)
        .map_err(|e| format!("cannot armor the signature: {e}"))
}

/// A bounded reader of SSH wire strings.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refusal> {
        if self.0.len() < n {
            return Err(bad("the signature is truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Refusal> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, max: usize, what: &str) -> Result<&'a [u8], Refusal> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(bad(format!("its {what} is {len} bytes (at most {max})")));
        }
        self.take(len)
    }
}
