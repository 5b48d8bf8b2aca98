//! Signed privileged requests on the control socket (seed 001): the node's side.
//!
//! Served on the control thread, never on the notification loop: the signers file is
//! read afresh for each request (an edit takes effect at once, a removed key at once),
//! the signature and the replay cache are checked by `keyring`, and only an accepted
//! request becomes a [`Privileged`] operation the loop runs. Its result is sealed to
//! the recipient named inside the signed request and signed by the node's host key
//! before it leaves this process. Every request, accepted or refused, is audited as an
//! event of the keyring component (`TENANT/@keyring`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use keyring::check::Verdict;
use keyring::seal::NodeKeys;
use keyring::signers::Signers;
use keyring::{Accepted, Checker, Limits, Node, Refusal};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::protocol::{Failure, Privileged};
use super::{keystore, Backend};
use crate::diag::{Dpid, Kind};

/// Largest memory range one `dump-memory` reads.
pub const MAX_DUMP: usize = 1024 * 1024;

/// The keyring component of one supervising process.
#[derive(Debug)]
pub struct Keyring {
    state_dir: PathBuf,
    signers_path: PathBuf,
    keys: NodeKeys,
    tenant: String,
    instance: String,
    limits: Limits,
    accepted: AtomicU64,
    refused: AtomicU64,
    last: Mutex<Option<Value>>,
}

impl Keyring {
    /// The node's keyring for `tenant` (keys made on first use); `signers`: the trusted
    /// keys file, by default `<state dir>/allowed_signers`.
    pub fn open(
        state_dir: &Path,
        signers: Option<&Path>,
        tenant: &str,
    ) -> std::io::Result<Keyring> {
        let keys = keystore::node_keys(state_dir)?;
        let instance = keyring::request::hex(&keystore::random_id()?[..8]);
        Ok(Keyring {
            state_dir: state_dir.to_owned(),
            signers_path: signers.map_or_else(|| state_dir.join("allowed_signers"), Path::to_owned),
            keys,
            tenant: tenant.to_owned(),
            instance,
            limits: Limits::default(),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last: Mutex::new(None),
        })
    }

    /// This node's public facts (the unsigned `node` op).
    pub fn node(&self) -> Value {
        json!({
            "node": self.keys.id(),
            "tenant": self.tenant,
            "instance": self.instance,
            "host_key": self.keys.host_public(),
            "age_recipient": self.keys.age_recipient(),
            "result_signers": self.keys.result_signers_line(),
            "request_namespace": keyring::REQUEST_NAMESPACE,
            "result_namespace": keyring::RESULT_NAMESPACE,
            "max_skew_s": self.limits.max_skew,
            "max_lifetime_s": self.limits.max_lifetime,
        })
    }

    /// The keyring's state for its provider: counters, the signers file, the last
    /// decision.
    pub fn state(&self) -> Value {
        let signers = match self.signers() {
            Ok(Some(s)) => json!({ "path": self.signers_path, "entries": s.entries().len() }),
            Ok(None) => json!({ "path": self.signers_path, "entries": 0, "missing": true }),
            Err(r) => json!({ "path": self.signers_path, "error": r.message }),
        };
        json!({
            "node": self.keys.id(),
            "instance": self.instance,
            "signers": signers,
            "accepted": self.accepted.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
            "last": self.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> Value {
        json!({
            "signers": self.signers_path,
            "keyring_dir": keystore::dir(&self.state_dir),
            "max_skew_s": self.limits.max_skew,
            "max_lifetime_s": self.limits.max_lifetime,
            "nonce_capacity": keyring::replay::DEFAULT_CAPACITY,
        })
    }

    /// Self-test: the signers file parses, the host key signs what it verifies, and
    /// the replay cache can be read and locked.
    pub fn selftest(&self) -> Result<String, String> {
        let trusted = match self.signers().map_err(|r| r.message)? {
            Some(signers) => format!(
                "{} trusted key line(s) in {}",
                signers.entries().len(),
                self.signers_path.display()
            ),
            None => format!(
                "no {}: no key is trusted, every signed request is refused",
                self.signers_path.display()
            ),
        };
        let probe = b"supervise keyring self-test";
        let sig = self.keys.sign_result(probe)?;
        keyring::sshsig::Signature::parse_armored(sig.as_bytes())
            .and_then(|s| s.verify(keyring::RESULT_NAMESPACE, probe))
            .map_err(|r| format!("the host key's signature does not verify: {r}"))?;
        let live = keystore::with_nonces(&self.state_dir, |c| c.len()).map_err(|r| r.message)?;
        Ok(format!(
            "{trusted}; host key {} signs and verifies; {live} live nonce(s)",
            self.keys.id()
        ))
    }

    /// The trusted keys, read afresh; `None`: there is no file (nobody is trusted). A
    /// file someone other than root could write is refused: whoever can edit it can
    /// grant themselves anything.
    fn signers(&self) -> Result<Option<Signers>, Refusal> {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.signers_path.display();
        match std::fs::metadata(&self.signers_path) {
            Ok(meta) if meta.uid() != 0 => {
                return Err(Refusal::new(
                    "signers_file",
                    format!(
                        "{path} is owned by uid {}, not root: refusing to trust it",
                        meta.uid()
                    ),
                ))
            }
            Ok(meta) if meta.mode() & 0o022 != 0 => {
                return Err(Refusal::new(
                    "signers_file",
                    format!(
                        "{path} is writable by group or others (mode {:o}): refusing to trust it",
                        meta.mode() & 0o7777
                    ),
                ))
            }
            _ => {}
        }
        let text = match std::fs::read(&self.signers_path) {
            Ok(bytes) if bytes.len() > keyring::signers::MAX_FILE => {
                return Err(Refusal::new(
                    "signers_file",
                    format!(
                        "{} is larger than {} bytes",
                        self.signers_path.display(),
                        keyring::signers::MAX_FILE
                    ),
                ))
            }
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| {
                Refusal::new(
                    "signers_file",
                    format!("{} is not UTF-8", self.signers_path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Refusal::new(
                    "signers_file",
                    format!(
                        "cannot read {} ({e}): no key is trusted",
                        self.signers_path.display()
                    ),
                ))
            }
        };
        Signers::parse(&text, &self.signers_path.display().to_string())
            .map(Some)
            .map_err(|m| Refusal::new("signers_file", m))
    }

    /// Decides on a signed request and, when it is accepted, runs it through `backend`
    /// and answers with the sealed, signed result.
    pub fn serve(
        &self,
        request: &str,
        signature: &str,
        backend: &dyn Backend,
    ) -> Result<Value, Failure> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = self.decide(request.as_bytes(), signature.as_bytes(), now);
        let accepted = match verdict.outcome {
            Ok(ref a) => a.clone(),
            Err(ref refusal) => {
                self.audit(&verdict, None, refusal.code, &refusal.message);
                return Err(Failure::new(refusal.code, refusal.message.clone()));
            }
        };
        let op = match privileged(&accepted) {
            Ok(op) => op,
            Err(message) => {
                self.audit(&verdict, Some(&accepted), "bad_arguments", &message);
                return Err(Failure::new("bad_arguments", message));
            }
        };
        let result = backend.privileged(op);
        let (outcome, reason) = match &result {
            Ok(_) => ("executed", String::new()),
            Err(f) => ("failed", format!("{}: {}", f.code, f.message)),
        };
        self.audit(&verdict, Some(&accepted), outcome, &reason);
        let digest = keyring::request::hex(&Sha256::digest(request.as_bytes()));
        let plaintext = json!({
            "v": 1,
            "node": self.keys.id(),
            "tenant": self.tenant,
            "instance": self.instance,
            "op": accepted.request.op,
            "target": accepted.request.target.as_str(),
            "nonce": keyring::request::hex(&accepted.request.nonce),
            "request_sha256": digest,
            "executed_at": now,
            "ok": result.is_ok(),
            "result": result.as_ref().ok(),
            "error": result.as_ref().err().map(|f| json!({"code": f.code, "message": f.message})),
        });
        let bytes = serde_json::to_vec_pretty(&plaintext)
            .map_err(|e| Failure::new("internal", e.to_string()))?;
        let sealed = keyring::seal::seal(&accepted.request.recipient, &bytes)
            .map_err(|m| Failure::new("internal", format!("cannot seal the result: {m}")))?;
        let node_signature = self
            .keys
            .sign_result(sealed.as_bytes())
            .map_err(|m| Failure::new("internal", format!("cannot sign the result: {m}")))?;
        // Whether it ran is said in the clear (so a script can tell); what it returned,
        // or why it failed, only inside the sealed result.
        Ok(json!({
            "node": self.keys.id(),
            "ok": result.is_ok(),
            "request_sha256": digest,
            "sealed": sealed,
            "signature": node_signature,
        }))
    }

    fn decide(&self, request: &[u8], signature: &[u8], now: u64) -> Verdict {
        let refused = |refusal: Refusal| Verdict {
            fingerprint: None,
            op: None,
            target: None,
            outcome: Err(refusal),
        };
        // A request that does not parse is refused as such, whatever else is wrong.
        if let Err(r) = keyring::Request::parse(request) {
            return refused(r);
        }
        let signers = match self.signers() {
            Ok(Some(s)) => s,
            Ok(None) => Signers::default(),
            Err(r) => return refused(r),
        };
        let checker = Checker {
            signers: &signers,
            limits: self.limits,
            node: Node {
                keys: &self.keys,
                tenant: &self.tenant,
                instance: &self.instance,
            },
        };
        keystore::with_nonces(&self.state_dir, |nonces| {
            checker.check(request, signature, now, nonces)
        })
        .unwrap_or_else(refused)
    }

    /// One audit event per request: the keyring's DPID, the key, the operation, the
    /// outcome and the reason.
    fn audit(&self, verdict: &Verdict, accepted: Option<&Accepted>, outcome: &str, reason: &str) {
        let dpid = Dpid::singleton(&self.tenant, Kind::Keyring);
        let fingerprint = verdict.fingerprint.as_deref().unwrap_or("-");
        let op = verdict.op.as_deref().unwrap_or("-");
        let target = verdict.target.as_deref().unwrap_or("-");
        let principal = accepted.map_or("-", |a| a.principal.as_str());
        let nonce = accepted.map(|a| keyring::request::hex(&a.request.nonce));
        if accepted.is_some() && outcome == "executed" {
            self.accepted.fetch_add(1, Ordering::Relaxed);
            tracing::info!(target: Kind::Keyring.target(), dpid = %dpid, fingerprint, principal, op, target_dpid = target, nonce = nonce.as_deref().unwrap_or("-"), outcome, "signed request executed");
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: Kind::Keyring.target(), dpid = %dpid, fingerprint, principal, op, target_dpid = target, outcome, reason, "signed request refused");
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(json!({
            "fingerprint": fingerprint, "principal": principal, "op": op,
            "target": target, "outcome": outcome, "reason": reason,
        }));
    }
}

/// The operation an accepted request asks for, its arguments checked; unknown or
/// missing arguments are refused by name.
fn privileged(a: &Accepted) -> Result<Privileged, String> {
    let target = a.request.target.as_str().to_owned();
    let allowed: &[&str] = match a.request.op.as_str() {
        "dump-spool" | "stop" => &[],
        "dump-memory" => &["pid", "addr", "len"],
        "set-capture" => &["capture", "peer", "for"],
        "set-rules" => &["rules"],
        "level" => &["level", "for"],
        other => return Err(format!("operation {other:?} has no handler here")),
    };
    if let Some((name, _)) = a.args.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        return Err(format!(
            "{} takes no argument {name:?} (it takes: {})",
            a.request.op,
            if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            }
        ));
    }
    let need = |name: &str| {
        a.arg(name)
            .map(str::to_owned)
            .ok_or_else(|| format!("{} needs the argument {name:?}", a.request.op))
    };
    let for_ms = || -> Result<Option<u64>, String> {
        a.arg("for")
            .map(|t| crate::profile::duration::parse_duration(t).map(|d| d.as_millis() as u64))
            .transpose()
            .map_err(|m| format!("for: {m}"))
    };
    let tenant_only = |what: &str| {
        if a.request.target.as_str() != a.request.target.tenant() {
            return Err(format!(
                "{what} targets the tenant ({}), not {target}",
                a.request.target.tenant()
            ));
        }
        Ok(())
    };
    Ok(match a.request.op.as_str() {
        "dump-spool" => Privileged::DumpSpool { dpid: target },
        "stop" => {
            tenant_only("stop")?;
            Privileged::Stop
        }
        "dump-memory" => {
            tenant_only("dump-memory")?;
            let pid: i32 = need("pid")?
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("pid: a positive process id as the tenant numbers it")?;
            let addr_text = need("addr")?;
            let addr = match addr_text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => addr_text.parse(),
            }
            .map_err(|_| format!("addr {addr_text:?}: an address, 0x-hex or decimal"))?;
            let len: usize = need("len")?
                .parse()
                .ok()
                .filter(|l| (1..=MAX_DUMP).contains(l))
                .ok_or(format!("len: 1 to {MAX_DUMP} bytes"))?;
            Privileged::DumpMemory { pid, addr, len }
        }
        "set-capture" => Privileged::SetCapture {
            dpid: target,
            peer: a.arg("peer").map(str::to_owned),
            capture: need("capture")?,
            for_ms: for_ms()?,
        },
        "set-rules" => Privileged::SetRules {
            dpid: target,
            rules: need("rules")?,
        },
        "level" => Privileged::Level {
            dpid: target,
            level: need("level")?,
            for_ms: for_ms()?,
        },
        other => return Err(format!("operation {other:?} has no handler here")),
    })
}
