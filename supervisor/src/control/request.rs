//! `supervise request`: the operator's side of a signed privileged request.
//!
//! It asks the tenant's supervisor for the node's public facts (`node`), builds the
//! canonical request (`keyring::request`), has `ssh-keygen -Y sign` sign it (a key
//! file, or a key in ssh-agent), sends it and writes the sealed result. Signing goes
//! through `ssh-keygen` on purpose: operators keep their keys where they already are
//! (agents, hardware tokens, certificates), and this program never reads a private key.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use keyring::request::{Args, Recipient, Request, Target};
use serde_json::Value;

use super::client::{ask_quietly, report};
use super::Op;
use crate::cli::RequestArgs;

const FAILED: i32 = 1;
/// How long a signed request may take, end to end.
const SIGNED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);
const USAGE: i32 = 2;

fn usage(message: &str) -> i32 {
    eprintln!("supervise: request: {message}");
    USAGE
}

/// Runs `supervise request`; returns the exit status.
pub fn run(state_dir: &Path, args: RequestArgs) -> i32 {
    let (text, signature) = if let Some(file) = &args.send {
        let sig_file = args
            .signature
            .clone()
            .unwrap_or_else(|| with_suffix(file, ".sig"));
        match (
            std::fs::read_to_string(file),
            std::fs::read_to_string(&sig_file),
        ) {
            (Ok(t), Ok(s)) => (t, s),
            (Err(e), _) => return usage(&format!("{}: {e}", file.display())),
            (_, Err(e)) => return usage(&format!("{}: {e}", sig_file.display())),
        }
    } else {
        let text = match build(state_dir, &args) {
            Ok(t) => t,
            Err(status) => return status,
        };
        if args.prepare {
            print!("{text}");
            return 0;
        }
        let Some(key) = &args.key else {
            return usage(
                "--key FILE is needed to sign (or --prepare, sign elsewhere, then --send)",
            );
        };
        match sign(key, &text) {
            Ok(sig) => (text, sig),
            Err(message) => return usage(&message),
        }
    };
    // Routed by its target's tenant. A request that does not parse here is still
    // sent when its target can be read: the node refuses it and audits why.
    let tenant = match Request::parse(text.as_bytes()) {
        Ok(r) => r.target.tenant().to_owned(),
        Err(refusal) => match text
            .lines()
            .find_map(|l| l.strip_prefix("target "))
            .and_then(|t| Target::new(t).ok())
        {
            Some(target) => target.tenant().to_owned(),
            None => return usage(&format!("the request does not parse: {refusal}")),
        },
    };
    let path = super::socket_path(state_dir, &tenant);
    let signed = Op::Signed {
        request: text,
        signature,
    };
    // Longer than ctl's: a started operation is waited for (up to 65 s) by the node,
    // and giving up first would leave the operator unsure whether it ran.
    let result = match super::client::ask_within(&path, signed, SIGNED_TIMEOUT) {
        Ok(result) => result,
        Err(e) => return report("request", &path, e),
    };
    let field = |name: &str| result.get(name).and_then(Value::as_str).unwrap_or("");
    let (sealed, node_sig) = (field("sealed"), field("signature"));
    let written = match &args.out {
        Some(out) => std::fs::write(out, sealed),
        None => io::stdout().write_all(sealed.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("supervise: request: cannot write the result: {e}");
        return FAILED;
    }
    let sig_out = args
        .signature_out
        .clone()
        .or_else(|| args.out.as_ref().map(|o| with_suffix(o, ".sig")));
    if let Some(sig_out) = sig_out {
        if let Err(e) = std::fs::write(&sig_out, node_sig) {
            eprintln!(
                "supervise: request: cannot write {}: {e}",
                sig_out.display()
            );
            return FAILED;
        }
    }
    if result.get("ok").and_then(Value::as_bool) == Some(false) {
        eprintln!(
            "supervise: request: the node accepted the request but the operation did not succeed ({}); why is in the sealed result",
            field("code")
        );
        return FAILED;
    }
    eprintln!(
        "supervise: request: sealed result from node {} (decrypt: age -d -i IDENTITY; verify: ssh-keygen -Y verify -n {} -I {} -f NODE_SIGNERS -s SIG < RESULT)",
        field("node"),
        keyring::RESULT_NAMESPACE,
        field("node"),
    );
    0
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The canonical request the arguments describe, bound to the node that serves the
/// target's tenant.
fn build(state_dir: &Path, args: &RequestArgs) -> Result<String, i32> {
    let (Some(op), Some(target)) = (&args.op, &args.target) else {
        return Err(usage("OP and TARGET are needed"));
    };
    let target = Target::new(target).map_err(|m| usage(&m))?;
    let recipient = recipient(args.recipient.as_deref()).map_err(|m| usage(&m))?;
    let named = arguments(op, &args.args).map_err(|m| usage(&m))?;
    let lifetime = crate::profile::duration::parse_duration(&args.valid_for)
        .map_err(|m| usage(&format!("--valid-for: {m}")))?
        .as_secs()
        .max(1);
    let path = super::socket_path(state_dir, target.tenant());
    let node = ask_quietly(&path, Op::Node).map_err(|e| {
        let message = match e {
            Ok(f) => format!("{}: {}", f.code, f.message),
            Err(e) => format!("cannot reach {}: {e}", path.display()),
        };
        eprintln!("supervise: request: asking the node for its id: {message}");
        3
    })?;
    let field = |name: &str| node.get(name).and_then(Value::as_str).map(str::to_owned);
    let node_id = field("node").ok_or_else(|| usage("the node did not say its id"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let nonce = super::keystore::random_id().map_err(|e| usage(&format!("no randomness: {e}")))?;
    let args_field = if args.seal_args {
        let to = field("age_recipient").ok_or_else(|| usage("the node has no age recipient"))?;
        Args::Sealed(keyring::seal::seal_args(&to, &named).map_err(|m| usage(&m))?)
    } else {
        Args::Clear(named)
    };
    let request = Request {
        op: op.clone(),
        target,
        node: node_id,
        instance: if args.this_run {
            field("instance")
        } else {
            None
        },
        issued: now,
        expires: now + lifetime,
        nonce,
        recipient,
        args: args_field,
    };
    let text = request.encode();
    // What we send must be what the node will parse.
    Request::parse(text.as_bytes()).map_err(|r| usage(&r.to_string()))?;
    Ok(text)
}

/// `age1…`, `ssh-ed25519 AAAA…`, or a file holding one (its first such line; an ssh
/// public key's comment is dropped).
fn recipient(given: Option<&str>) -> Result<Recipient, String> {
    let given = given.ok_or("--recipient is needed: who may read the result")?;
    let text = if given.starts_with("age1") || given.starts_with("ssh-") {
        given.to_owned()
    } else {
        let file =
            std::fs::read_to_string(given).map_err(|e| format!("--recipient {given}: {e}"))?;
        file.lines()
            .map(str::trim)
            .find(|l| l.starts_with("age1") || l.starts_with("ssh-"))
            .ok_or(format!(
                "--recipient {given}: no age1… or ssh-ed25519 line in it"
            ))?
            .to_owned()
    };
    let text = if text.starts_with("ssh-") {
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        text
    };
    text.parse()
}

/// NAME=VALUE arguments, or positional ones in the operation's order; `@FILE` reads a
/// value from a file (set-rules).
fn arguments(op: &str, given: &[String]) -> Result<Vec<(String, String)>, String> {
    let positional: &[&str] = match op {
        "dump-memory" => &["pid", "addr", "len"],
        "set-capture" => &["capture"],
        "level" => &["level"],
        "set-rules" => &["rules"],
        _ => &[],
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut next = 0;
    for arg in given {
        let (name, value) = match arg.split_once('=') {
            Some((n, v))
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
            {
                (n.to_owned(), v.to_owned())
            }
            _ => {
                let name = positional.get(next).ok_or(format!(
                    "{op}: unexpected argument {arg:?} (use NAME=VALUE)"
                ))?;
                next += 1;
                (name.to_string(), arg.clone())
            }
        };
        let value = match value.strip_prefix('@') {
            Some(file) => {
                std::fs::read_to_string(file).map_err(|e| format!("{name}: {file}: {e}"))?
            }
            None => value,
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Signs `text` with `ssh-keygen -Y sign -n supervise-request -f KEY`, through its
/// standard input and output: no file is written, so nobody can plant one (a shared
/// temp directory would let a local user swap the text being signed).
fn sign(key: &Path, text: &str) -> Result<String, String> {
    use std::io::Read as _;
    use std::process::Stdio;
    let mut command = Command::new("ssh-keygen");
    // Its stdin is the request, so a passphrase cannot be asked there: never fall back
    // to ssh-askpass either (use ssh-agent for a key with a passphrase).
    if std::env::var_os("SSH_ASKPASS_REQUIRE").is_none() {
        command.env("SSH_ASKPASS_REQUIRE", "never");
    }
    let mut child = command
        .args(["-q", "-Y", "sign", "-n", keyring::REQUEST_NAMESPACE, "-f"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ssh-keygen (openssh-client): {e}"))?;
    let mut stdin = child.stdin.take().ok_or("ssh-keygen has no stdin")?;
    stdin
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing the request to ssh-keygen: {e}"))?;
    drop(stdin);
    let mut signature = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut signature);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    if !out.status.success() || !signature.contains("BEGIN SSH SIGNATURE") {
        return Err(format!(
            "ssh-keygen -Y sign -f {} failed: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(signature)
}
