//! Signed privileged requests on the control socket (seed 001): the node's side.
//!
//! Served on the control thread, never on the notification loop: the signers file is
//! read afresh for each request (an edit takes effect at once, a removed key at once),
//! the signature and the replay cache are checked by `keyring`, and only an accepted
//! request becomes a [`Privileged`](super::Privileged) operation the loop runs. Its
//! result is sealed to the recipient named inside the signed request and signed by the
//! node's host key before it leaves this process. Every request, accepted or refused,
//! is audited as an event of the keyring component (`TENANT/@keyring`); the audit is
//! never filtered out (`diag::log`).
//!
//! What happened after acceptance (an argument refused, an operation failed) is told in
//! the clear only by its code; the message, which may echo sealed arguments or tenant
//! data, travels inside the sealed result.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use keyring::check::Verdict;
use keyring::seal::NodeKeys;
use keyring::{Accepted, Checker, Limits, Node, Refusal};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::protocol::Failure;
use super::{keystore, operations, Backend};
use crate::diag::{Dpid, Kind};

/// The keyring component of one supervising process.
#[derive(Debug)]
pub struct Keyring {
    state_dir: PathBuf,
    signers_path: PathBuf,
    /// Loaded on first use, after the tenant is launched: the tenant's init stub is
    /// forked from this process and must not carry a copy of the host key.
    keys: OnceLock<NodeKeys>,
    loading: Mutex<()>,
    ready: AtomicBool,
    tenant: String,
    instance: String,
    limits: Limits,
    executed: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    last: Mutex<Option<Value>>,
}

fn failure(refusal: Refusal) -> Failure {
    Failure::new(refusal.code, refusal.message)
}

impl Keyring {
    /// The keyring for `tenant`: checks that only root can change the state dir (and
    /// what is above it) and makes `keyring/` there; the keys themselves are made or
    /// read on first use. `signers`: the trusted keys file, by default
    /// `<state dir>/allowed_signers`.
    pub fn open(
        state_dir: &Path,
        signers: Option<&Path>,
        tenant: &str,
    ) -> std::io::Result<Keyring> {
        let state_dir = keystore::prepare(state_dir)?;
        let signers = signers.map_or_else(|| state_dir.join("allowed_signers"), Path::to_owned);
        // Its directory resolved once, now, after being checked like the state dir.
        let (parent, name) = match (signers.parent(), signers.file_name()) {
            (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p, n),
            (_, Some(n)) => (Path::new("."), n),
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--allowed-signers {}: not a file name", signers.display()),
                ))
            }
        };
        let signers_path = keystore::secure_path(parent)
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("--allowed-signers {}: {e}", signers.display()),
                )
            })?
            .join(name);
        let instance = keyring::request::hex(&keystore::random_id()?[..8]);
        Ok(Keyring {
            state_dir,
            signers_path,
            keys: OnceLock::new(),
            loading: Mutex::new(()),
            ready: AtomicBool::new(false),
            tenant: tenant.to_owned(),
            instance,
            limits: Limits::default(),
            executed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last: Mutex::new(None),
        })
    }

    /// The tenant is launched: the keys may be loaded from now on.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn keys(&self) -> Result<&NodeKeys, Failure> {
        if let Some(keys) = self.keys.get() {
            return Ok(keys);
        }
        if !self.ready.load(Ordering::Acquire) {
            return Err(Failure::new(
                "busy",
                "the supervisor is still starting its tenant; try again",
            ));
        }
        let _one = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = self.keys.get() {
            return Ok(keys);
        }
        let keys = keystore::node_keys(&self.state_dir)
            .map_err(|e| Failure::new("internal", format!("the node's keys: {e}")))?;
        Ok(self.keys.get_or_init(|| keys))
    }

    /// Whether `op` asks this keyring's provider (`TENANT/@keyring`) a question.
    pub fn provides(&self, op: &super::Op) -> bool {
        use super::Op;
        let dpid = match op {
            Op::State { dpid } | Op::Config { dpid } | Op::Selftests { dpid } => dpid,
            Op::Selftest { dpid, .. } => dpid,
            _ => return false,
        };
        *dpid == Dpid::singleton(&self.tenant, Kind::Keyring).as_str()
    }

    /// Answers a provider question [`Keyring::provides`] accepted.
    pub fn serve_provider(&self, op: super::Op) -> Result<Value, Failure> {
        use super::Op;
        let dpid = Dpid::singleton(&self.tenant, Kind::Keyring);
        match op {
            Op::State { .. } => Ok(self.state()),
            Op::Config { .. } => Ok(self.config()),
            Op::Selftests { .. } => Ok(json!(["keyring"])),
            Op::Selftest { name, .. } => {
                if name.as_deref().is_some_and(|n| n != "keyring") {
                    return Err(Failure::new(
                        "unknown_selftest",
                        format!("{dpid} has no self-test {name:?} (it has: [\"keyring\"])"),
                    ));
                }
                let (passed, detail) = match self.selftest() {
                    Ok(d) => (true, d),
                    Err(d) => (false, d),
                };
                Ok(json!({ "dpid": dpid.as_str(), "passed": passed,
                    "results": [{ "name": "keyring", "passed": passed, "detail": detail }] }))
            }
            _ => Err(Failure::new("internal", "not a provider question")),
        }
    }

    /// This node's public facts (the unsigned `node` op).
    pub fn node(&self) -> Result<Value, Failure> {
        let keys = self.keys()?;
        Ok(json!({
            "node": keys.id(),
            "tenant": self.tenant,
            "instance": self.instance,
            "host_key": keys.host_public(),
            "age_recipient": keys.age_recipient(),
            "result_signers": keys.result_signers_line(),
            "request_namespace": keyring::REQUEST_NAMESPACE,
            "result_namespace": keyring::RESULT_NAMESPACE,
            "max_skew_s": self.limits.max_skew,
            "max_lifetime_s": self.limits.max_lifetime,
        }))
    }

    /// The keyring's state for its provider: counters, the signers file, the last
    /// decision. Answered on the control thread (it reads files).
    pub fn state(&self) -> Value {
        let signers = match keystore::read_signers(&self.signers_path) {
            Ok(Some(s)) => json!({ "path": self.signers_path, "entries": s.entries().len() }),
            Ok(None) => json!({ "path": self.signers_path, "entries": 0, "missing": true }),
            Err(r) => json!({ "path": self.signers_path, "error": r.message }),
        };
        json!({
            "node": self.keys.get().map(NodeKeys::id),
            "instance": self.instance,
            "signers": signers,
            "executed": self.executed.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
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
        let path = self.signers_path.display();
        let trusted = match keystore::read_signers(&self.signers_path).map_err(|r| r.message)? {
            Some(signers) => format!("{} trusted key line(s) in {path}", signers.entries().len()),
            None => format!("no {path}: no key is trusted, every signed request is refused"),
        };
        let keys = self.keys().map_err(|f| f.message)?;
        let probe = b"supervise keyring self-test";
        let sig = keys.sign_result(probe)?;
        keyring::sshsig::Signature::parse_armored(sig.as_bytes())
            .and_then(|s| s.verify(keyring::RESULT_NAMESPACE, probe))
            .map_err(|r| format!("the host key's signature does not verify: {r}"))?;
        let live = keystore::with_nonces(&self.state_dir, |c| c.len()).map_err(|r| r.message)?;
        Ok(format!(
            "{trusted}; host key {} signs and verifies; {live} live nonce(s)",
            keys.id()
        ))
    }

    /// Decides on a signed request and, when it is accepted, runs it through `backend`
    /// and answers with the sealed, signed result.
    pub fn serve(
        &self,
        request: &str,
        signature: &str,
        backend: &dyn Backend,
    ) -> Result<Value, Failure> {
        let keys = self.keys()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let verdict = self.decide(keys, request.as_bytes(), signature.as_bytes(), now);
        let accepted = match verdict.outcome {
            Ok(ref a) => a.clone(),
            Err(ref refusal) => {
                self.audit(&verdict, None, refusal.code, &refusal.message);
                return Err(failure(refusal.clone()));
            }
        };
        let result = match operations::privileged(&accepted) {
            Ok(op) => backend.privileged(op),
            Err(message) => Err(Failure::new("bad_arguments", message)),
        };
        let outcome = match &result {
            Ok(_) => "executed",
            Err(f) => f.code.as_str(),
        };
        self.audit(&verdict, Some(&accepted), outcome, "");
        let digest = keyring::request::hex(&Sha256::digest(request.as_bytes()));
        let plaintext = json!({
            "v": 1,
            "node": keys.id(),
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
        let node_signature = keys
            .sign_result(sealed.as_bytes())
            .map_err(|m| Failure::new("internal", format!("cannot sign the result: {m}")))?;
        // Whether it ran, and the code if not, in the clear (so a script can tell);
        // what it returned, or why it failed, only inside the sealed result.
        Ok(json!({
            "node": keys.id(),
            "ok": result.is_ok(),
            "code": result.as_ref().err().map(|f| f.code.clone()),
            "request_sha256": digest,
            "sealed": sealed,
            "signature": node_signature,
        }))
    }

    fn decide(&self, keys: &NodeKeys, request: &[u8], signature: &[u8], now: u64) -> Verdict {
        // A request that does not parse is refused as such, whatever else is wrong.
        let parsed = match keyring::Request::parse(request) {
            Ok(r) => r,
            Err(r) => {
                return Verdict {
                    fingerprint: None,
                    op: None,
                    target: None,
                    outcome: Err(r),
                }
            }
        };
        // For the audit of a refusal before the check (signers file, replay cache):
        // who claims to ask for what.
        let claimed = keyring::sshsig::Signature::parse_armored(signature)
            .ok()
            .map(|s| s.signer.fingerprint());
        let refused = |refusal: Refusal| Verdict {
            fingerprint: claimed.clone(),
            op: Some(parsed.op.clone()),
            target: Some(parsed.target.as_str().to_owned()),
            outcome: Err(refusal),
        };
        let signers = match keystore::read_signers(&self.signers_path) {
            Ok(s) => s.unwrap_or_default(),
            Err(r) => return refused(r),
        };
        let checker = Checker {
            signers: &signers,
            limits: self.limits,
            node: Node {
                keys,
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
    /// outcome and, for a refusal, the reason (after acceptance only the outcome's code:
    /// its message is sealed).
    fn audit(&self, verdict: &Verdict, accepted: Option<&Accepted>, outcome: &str, reason: &str) {
        let dpid = Dpid::singleton(&self.tenant, Kind::Keyring);
        let fingerprint = verdict.fingerprint.as_deref().unwrap_or("-");
        let op = verdict.op.as_deref().unwrap_or("-");
        let target = verdict.target.as_deref().unwrap_or("-");
        let principal = accepted.map_or("-", |a| a.principal.as_str());
        let nonce = accepted.map_or_else(
            || "-".to_owned(),
            |a| keyring::request::hex(&a.request.nonce),
        );
        match (accepted, outcome) {
            (Some(_), "executed") => {
                self.executed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target: Kind::Keyring.target(), dpid = %dpid, fingerprint, principal, op, target_dpid = target, nonce, outcome, "signed request executed");
            }
            (Some(_), _) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: Kind::Keyring.target(), dpid = %dpid, fingerprint, principal, op, target_dpid = target, nonce, outcome, "signed request accepted, not done (why is in the sealed result)");
            }
            (None, _) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: Kind::Keyring.target(), dpid = %dpid, fingerprint, principal, op, target_dpid = target, outcome, reason, "signed request refused");
            }
        }
        let record = json!({
            "fingerprint": fingerprint, "principal": principal, "op": op,
            "target": target, "outcome": outcome, "reason": reason,
        });
        // Also to the node's own audit file: the log can drop lines (a full queue, a
        // slow stderr, journald's rate limit); this file does not.
        let line = json!({
            "time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "dpid": dpid.as_str(), "nonce": nonce, "record": record,
        });
        if let Err(error) = keystore::append_audit(&self.state_dir, &line.to_string()) {
            tracing::error!(target: Kind::Keyring.target(), dpid = %dpid, %error, "cannot append to the keyring's audit file");
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(record);
    }
}
