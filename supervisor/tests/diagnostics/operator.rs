//! An operator with real tools: an ed25519 key made by `ssh-keygen`, an age identity
//! made by `age-keygen`, `supervise request` to sign (ssh-keygen -Y sign) and send, and
//! the stock `age` CLI to open results. Missing tools fail loudly by name.
//!
//! Shared by several test binaries, each using a part of it.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::common::run_ok;
use super::harness::{supervise, Ctl};

/// One operator's keys, in a directory of their own.
pub struct Operator {
    pub dir: tempfile::TempDir,
    pub name: String,
    /// The signing key (private; `KEY.pub` beside it).
    pub key: PathBuf,
    /// The age identity that opens results.
    pub identity: PathBuf,
    /// Its recipient (`age1…`).
    pub recipient: String,
}

/// Runs `program args`, which must succeed; its stdout. A missing tool fails loudly by
/// name (`.ci/run` installs age and openssh-client).
pub fn tool(program: &str, args: &[&str]) -> String {
    run_ok(Command::new(program).args(args))
}

impl Operator {
    /// Fresh keys for `name`.
    pub fn new(name: &str) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let k = key.to_str().unwrap();
        tool(
            "ssh-keygen",
            &["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", k],
        );
        let identity = dir.path().join("age.key");
        tool("age-keygen", &["-o", identity.to_str().unwrap()]);
        let recipient = tool("age-keygen", &["-y", identity.to_str().unwrap()])
            .trim()
            .to_owned();
        Operator {
            dir,
            name: name.to_owned(),
            key,
            identity,
            recipient,
        }
    }

    /// `ssh-ed25519 AAAA…` of the signing key.
    pub fn public_key(&self) -> String {
        let text = fs::read_to_string(self.key.with_extension("pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Appends this operator's line to `STATE/allowed_signers` with `options`
    /// (e.g. `permit="level",tenants="pg-demo"`).
    pub fn trust(&self, state: &Path, options: &str) {
        let path = state.join("allowed_signers");
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{} {options} {}", self.name, self.public_key()).unwrap();
    }

    /// `supervise --state-dir STATE request --key … --recipient … -o RESULT ARGS…`
    /// (the recipient is this operator's unless ARGS name one); the sealed result
    /// lands in `result.age` (and the node's signature in `result.age.sig`) in this
    /// operator's directory.
    pub fn request(&self, state: &Path, args: &[&str]) -> Ctl {
        self.request_with(state, &self.key, args, &[])
    }

    /// [`Operator::request`] signing with `key` (a private key, or a public key or
    /// certificate whose private key is in the agent `env` names).
    pub fn request_with(
        &self,
        state: &Path,
        key: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Ctl {
        let _ = fs::remove_file(self.result());
        let result = self.result();
        let mut all = vec![
            "request",
            "--key",
            key.to_str().unwrap(),
            "-o",
            result.to_str().unwrap(),
        ];
        if !args.contains(&"--recipient") {
            all.extend(["--recipient", &self.recipient]);
        }
        all.extend_from_slice(args);
        supervise(state, &all, env)
    }

    /// [`Operator::request`], which must succeed; the opened result.
    pub fn request_ok(&self, state: &Path, args: &[&str]) -> Value {
        let out = self.request(state, args);
        assert_eq!(out.code, Some(0), "supervise request {args:?}: {out:?}");
        self.open(&self.result())
    }

    /// Replaces `stream`'s rules with `rules` (written to a file) by a signed request.
    pub fn set_rules(&self, state: &Path, stream: &str, rules: &str) -> Ctl {
        let path = self.dir.path().join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        let arg = format!("@{}", path.display());
        self.request(state, &["set-rules", stream, &arg])
    }

    /// Where the last sealed result is.
    pub fn result(&self) -> PathBuf {
        self.dir.path().join("result.age")
    }

    /// Opens a sealed result with `age -d -i IDENTITY`.
    pub fn open(&self, sealed: &Path) -> Value {
        let text = tool(
            "age",
            &[
                "-d",
                "-i",
                self.identity.to_str().unwrap(),
                sealed.to_str().unwrap(),
            ],
        );
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the result is not JSON ({e}): {text}"))
    }
}
