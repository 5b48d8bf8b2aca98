//! The harness of `diagnostics.rs`: a supervisor started with `--state-dir` and
//! `--log-format json` that is stopped with SIGTERM on every path, its JSON log read
//! back as records, `supervise ctl` run as a command, a raw control-socket client, and
//! the Python (`python3-prometheus-client`) and curl checks the metrics tests use.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::confined::StateDir;

/// How long anything the tests wait for may take (a hang guard, never a timing
/// assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The system Python: the tenants' clean PATH and Landlock's read-only /usr see this
/// one (not a pyenv shim under /root), and `python3-prometheus-client` installs here.
pub const PYTHON: &str = "/usr/bin/python3";

/// A supervisor run in the background: `supervise --state-dir S --log-format json
/// run …`. Dropping it sends SIGTERM and waits (then SIGKILL), so a failed test never
/// leaves a tenant holding its ports.
#[derive(Debug)]
pub struct Sup {
    pub tenant: Tenant,
    pub state: PathBuf,
}

impl Sup {
    /// `supervise --state-dir STATE --log-format json run RUN_ARGS…`, in `cwd`.
    pub fn start(state: &StateDir, run_args: &[OsString], cwd: Option<&Path>) -> Sup {
        let mut args: Vec<OsString> = vec![
            "--state-dir".into(),
            state.path().into(),
            "--log-format".into(),
            "json".into(),
            "run".into(),
        ];
        args.extend(run_args.iter().cloned());
        Sup {
            tenant: Tenant::spawn_args(&args, cwd),
            state: state.path().to_owned(),
        }
    }

    /// `run --profile PROFILE -- COMMAND…`.
    pub fn run(state: &StateDir, profile: &Path, command: &[&str]) -> Sup {
        let mut args: Vec<OsString> = vec!["--profile".into(), profile.into(), "--".into()];
        args.extend(command.iter().map(OsString::from));
        Sup::start(state, &args, None)
    }

    /// The supervisor's stderr so far.
    pub fn log(&self) -> String {
        self.tenant.stderr()
    }

    /// Everything known, for panic messages.
    pub fn dump(&mut self) -> String {
        self.tenant.dump()
    }

    /// The JSON records of the supervisor's stderr so far (lines that are not JSON
    /// objects — a tenant's raw output — are left out).
    pub fn records(&self) -> Vec<Value> {
        records(&self.log())
    }

    /// Waits until a record satisfies `pred` and returns the first that does; panics
    /// with the whole log, naming `what`, when none comes or the supervisor exits.
    pub fn wait_record(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                return r;
            }
            if !self.tenant.is_running() {
                // One last look: the record may have been written as it exited.
                if let Some(r) = self.records().into_iter().find(|r| pred(r)) {
                    return r;
                }
                let d = self.dump();
                panic!("the supervisor exited before logging {what}\n{d}");
            }
            if Instant::now() > deadline {
                let d = self.dump();
                panic!("no log record {what} within {PATIENCE:?}\n{d}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The control socket of tenant `name`.
    pub fn socket(&self, name: &str) -> PathBuf {
        self.state.join("ctl").join(format!("{name}.sock"))
    }

    /// Waits until the control socket of `name` exists.
    pub fn wait_socket(&mut self, name: &str) -> PathBuf {
        let path = self.socket(name);
        let deadline = Instant::now() + PATIENCE;
        while !path.exists() {
            if !self.tenant.is_running() || Instant::now() > deadline {
                let d = self.dump();
                panic!("control socket {} never appeared\n{d}", path.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        path
    }

    /// `supervise --state-dir STATE ctl ARGS…` (under `timeout`).
    pub fn ctl(&self, args: &[&str]) -> Ctl {
        ctl(&self.state, args)
    }

    /// `ctl ARGS… --json`, which must exit 0; its stdout parsed.
    pub fn ctl_json(&mut self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ctl(&all);
        if out.code != Some(0) {
            let d = self.dump();
            panic!("supervise ctl {all:?} failed: {out:?}\n{d}");
        }
        serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("supervise ctl {all:?} printed no JSON ({e}): {out:?}"))
    }

    /// SIGTERM; the supervisor must exit 0 without having panicked.
    pub fn stop(mut self) {
        self.tenant.kill(libc::SIGTERM);
        let st = self.tenant.wait(PATIENCE);
        let log = self.tenant.stderr();
        if st.code() != Some(0) {
            let d = self.tenant.dump();
            panic!("supervise exited with {st} after SIGTERM, expected 0\n{d}");
        }
        assert!(!log.contains("panicked"), "the supervisor panicked:\n{log}");
    }

    /// Waits for the supervisor to exit by itself (its tenant ended); must exit 0.
    pub fn wait_exit_ok(mut self) {
        let st = self.tenant.wait(PATIENCE);
        if st.code() != Some(0) {
            let d = self.tenant.dump();
            panic!("supervise exited with {st}, expected 0\n{d}");
        }
        let log = self.tenant.stderr();
        assert!(!log.contains("panicked"), "the supervisor panicked:\n{log}");
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        if !self.tenant.is_running() {
            return;
        }
        let pid = self.tenant.pid() as libc::pid_t;
        // SAFETY: kill has no memory preconditions; the child is not reaped yet (the
        // Tenant holds it), so the pid is still ours.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.tenant.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Still running: the Tenant's own Drop SIGKILLs and reaps it.
    }
}

/// JSON objects among `log`'s lines.
pub fn records(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// `r[key]` as a string ("" when absent or not a string).
pub fn s<'a>(r: &'a Value, key: &str) -> &'a str {
    r.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `r.fields[key]` as a string ("" when absent or not a string).
pub fn field<'a>(r: &'a Value, key: &str) -> &'a str {
    r.get("fields")
        .and_then(|f| f.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A number, or a string holding one.
pub fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// What a finished command did.
#[derive(Debug)]
pub struct Ctl {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `supervise --state-dir STATE ctl ARGS…` under `timeout -k 5 60`.
pub fn ctl(state: &Path, args: &[&str]) -> Ctl {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    supervise(state, &all, &[])
}

/// `supervise --state-dir STATE ARGS…` under `timeout -k 5 60`, with `env` added.
pub fn supervise<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(
    state: &Path,
    args: &[S],
    env: &[(&str, &str)],
) -> Ctl {
    let out = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(supervise_bin())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run supervise {args:?}: {e}"));
    assert_ne!(
        out.status.code(),
        Some(124),
        "supervise {args:?} hung (killed after 60 s)"
    );
    Ctl {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ------------------------------------------------------------- raw control client

/// A raw connection to a control socket: frames are written and read by hand.
pub struct Raw {
    pub stream: UnixStream,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(PATIENCE))
            .expect("write timeout");
        Raw { stream }
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("write to control socket");
    }

    /// Writes one frame: the 4-byte big-endian length, then `body`.
    pub fn send(&mut self, body: &[u8]) {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_bytes(&frame);
    }

    /// Reads one response frame; None on a clean end of stream before its first byte.
    pub fn recv(&mut self) -> Option<Value> {
        let mut prefix = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.stream.read(&mut prefix[got..]) {
                Ok(0) if got == 0 => return None,
                Ok(0) => panic!("control socket closed inside a length prefix"),
                Ok(n) => got += n,
                Err(e) => panic!("reading a control response: {e}"),
            }
        }
        let len = u32::from_be_bytes(prefix) as usize;
        let mut body = vec![0u8; len];
        self.stream
            .read_exact(&mut body)
            .unwrap_or_else(|e| panic!("reading a {len}-byte control response: {e}"));
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "control response is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(v.get("v").and_then(Value::as_u64), Some(1), "response: {v}");
        Some(v)
    }

    /// Sends `body` and reads the response. A failed write is no failure yet: a
    /// server that refuses a connection (`busy`, `forbidden`) answers and closes
    /// without reading, so the answer is read all the same.
    pub fn ask(&mut self, body: &[u8]) -> Value {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        if let Err(e) = self.stream.write_all(&frame) {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "write to control socket: {e}"
            );
        }
        self.recv().unwrap_or_else(|| {
            panic!(
                "the server closed the connection instead of answering {}",
                String::from_utf8_lossy(body)
            )
        })
    }

    /// True when the server has closed its end (reads return EOF).
    pub fn closed_by_server(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
    }
}

/// The error code of a failure response (panics, showing it, on a success).
pub fn error_code(resp: &Value) -> String {
    assert_eq!(
        resp.get("ok"),
        Some(&Value::Bool(false)),
        "expected a failure, got {resp}"
    );
    let code = resp
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("failure without error.code: {resp}"));
    let message = resp.pointer("/error/message").and_then(Value::as_str);
    assert!(
        message.is_some_and(|m| !m.is_empty()),
        "failure without a message: {resp}"
    );
    code.to_owned()
}

/// The result of a success response (panics, showing it, on a failure).
pub fn result(resp: &Value) -> &Value {
    assert_eq!(
        resp.get("ok"),
        Some(&Value::Bool(true)),
        "expected a success, got {resp}"
    );
    resp.get("result")
        .unwrap_or_else(|| panic!("success without result: {resp}"))
}

/// A directory the tenant may read (0755), for programs and signal files.
pub fn program_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("supervise-diag-prog-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod program dir");
    dir
}

/// Writes a world-readable file `name` with `text` into `dir`.
pub fn write_program(dir: &Path, name: &str, text: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    p
}
