//! The clients of a [`Cluster`]: psql (UNIX socket and tracked TCP), pgbench, the
//! `postgres` crate (extended protocol), raw connections, and the timeouts that keep
//! a hanging client from blocking a test.

use super::{pg, wire, Cluster, CLIENT_TIMEOUT};
use crate::common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The outcome of one psql run.
#[derive(Debug)]
pub struct Psql {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// stdout, lossily decoded.
    pub stdout: String,
    /// stderr, lossily decoded.
    pub stderr: String,
    /// stdout bytes followed by stderr bytes, exactly as received.
    pub raw: Vec<u8>,
}

impl Cluster {
    /// psql over the UNIX socket (not tracked: no rule applies), tuples only,
    /// unaligned, stop on error. Returns stdout; panics if psql fails.
    pub fn psql_unix(&self, sql: &str) -> String {
        let mut c = timeout_cmd(&pg("psql"), CLIENT_TIMEOUT);
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.sockdir())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ]);
        run_ok(&mut c)
    }

    /// One psql session over TCP 127.0.0.1:PORT (the tracked port) running `script`
    /// from its stdin: unaligned, tuples only, NULL shown as `(null)`, errors with
    /// their SQLSTATE (VERBOSITY verbose), NOT stopping at errors.
    pub fn psql_tcp(&mut self, script: &str) -> Psql {
        let conninfo = self.tcp_conninfo();
        self.psql_tcp_conn(&conninfo, script)
    }

    /// As [`Cluster::psql_tcp`] with this conninfo.
    pub fn psql_tcp_conn(&mut self, conninfo: &str, script: &str) -> Psql {
        self.psql_script(conninfo, &[], &[], script, CLIENT_TIMEOUT)
    }

    /// The same psql session (unaligned, tuples only, VERBOSITY verbose, no stop on
    /// error) over the UNIX socket: what the script does without the rules.
    pub fn psql_unix_script(&mut self, script: &str) -> Psql {
        let conninfo = self.unix_conninfo();
        self.psql_script(&conninfo, &[], &[], script, CLIENT_TIMEOUT)
    }

    /// psql `-X -A -t -P null=(null) -v VERBOSITY=verbose` plus `extra` arguments,
    /// connected with `conninfo`, `script` on stdin, `env` set, killed after
    /// `timeout` (a hang panics with the supervisor's log).
    pub fn psql_script(
        &mut self,
        conninfo: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        script: &str,
        timeout: Duration,
    ) -> Psql {
        let mut args = vec![
            "-X",
            "-A",
            "-t",
            "-P",
            "null=(null)",
            "-v",
            "VERBOSITY=verbose",
        ];
        args.extend_from_slice(extra);
        let p = self.psql_raw(conninfo, &args, env, script, timeout);
        if p.code == Some(124) || p.code == Some(137) {
            let d = self.tenant.dump();
            panic!("psql timed out ({timeout:?}) on script:\n{script}\n{p:?}\n{d}");
        }
        p
    }

    /// psql with exactly these arguments (plus `-f - -d conninfo`), `script` on stdin,
    /// under `timeout -k 5 SECS`. Does not panic on a timeout (exit 124/137).
    pub fn psql_raw(
        &self,
        conninfo: &str,
        args: &[&str],
        env: &[(&str, &str)],
        script: &str,
        timeout: Duration,
    ) -> Psql {
        let mut c = timeout_cmd(&pg("psql"), timeout);
        c.args(args)
            .args(["-f", "-", "-d", conninfo])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn psql");
        let mut stdin = child.stdin.take().expect("psql stdin");
        let data = script.as_bytes().to_vec();
        let writer = std::thread::spawn(move || {
            // psql may exit before reading everything (a dropped session): ignore EPIPE.
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait psql");
        let _ = writer.join();
        let mut raw = out.stdout.clone();
        raw.extend_from_slice(&out.stderr);
        Psql {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            raw,
        }
    }

    /// pgbench with these arguments (run in the socket directory); panics on failure.
    pub fn pgbench(&self, args: &[&str]) -> String {
        let mut c = timeout_cmd(&pg("pgbench"), CLIENT_TIMEOUT);
        c.args(["-U", "postgres"])
            .args(args)
            .arg("postgres")
            .current_dir(self.sockdir());
        run_ok(&mut c)
    }

    /// Extended-protocol client (the `postgres` crate) over TCP, no TLS.
    pub fn client(&self) -> postgres::Client {
        self.client_config()
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("postgres crate: connect to 127.0.0.1:{}: {e}", self.port))
    }

    /// The crate's configuration for TCP 127.0.0.1:PORT (tracked).
    pub fn client_config(&self) -> postgres::Config {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name("pg_rules-test")
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    /// The crate's configuration for the UNIX socket (untracked).
    pub fn client_config_unix(&self) -> postgres::Config {
        let mut cfg = postgres::Config::new();
        cfg.host_path(self.sockdir())
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name("pg_rules-test")
            .connect_timeout(Duration::from_secs(10));
        cfg
    }

    /// A raw protocol connection to the tracked port (no startup sent yet).
    pub fn raw_tcp(&self) -> wire::Raw {
        wire::Raw::connect(&wire::Target::Tcp(self.port))
    }

    /// A raw protocol connection to the UNIX socket (untracked; no startup sent yet).
    pub fn raw_unix(&self) -> wire::Raw {
        wire::Raw::connect(&self.unix_target())
    }
}

/// `timeout -k 5 SECS BIN`: a client that hangs fails the test instead of blocking it.
pub fn timeout_cmd(bin: &Path, timeout: Duration) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &timeout.as_secs().max(1).to_string()])
        .arg(bin);
    c
}

/// Runs `f` on a thread; panics if it does not finish within CLIENT_TIMEOUT (the
/// stuck thread is left behind; the supervisor is killed when the Cluster drops,
/// which closes its connections).
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    within_for(what, CLIENT_TIMEOUT, f)
}

/// [`within`] with this timeout; `None` if it did not finish in time.
pub fn try_within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => None,
    }
}

/// [`within`] with this timeout.
pub fn within_for<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    try_within(timeout, f)
        .unwrap_or_else(|| panic!("{what}: no answer within {timeout:?} (client hangs)"))
}

/// Bytes as text for messages: printable ASCII kept, the rest `\xNN`.
pub fn escape_bytes(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'\\' {
            s.push(c as char);
        } else if c == b'\n' {
            s.push_str("\\n");
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

/// Any column value, as the raw bytes the server sent (text or binary format): the
/// `postgres` crate decodes every type into this, so a test sees exactly the value
/// bytes (a byte scan of rows needs no knowledge of the type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyValue(pub Option<Vec<u8>>);

impl<'a> postgres::types::FromSql<'a> for AnyValue {
    fn from_sql(
        _ty: &postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyValue(Some(raw.to_vec())))
    }

    fn from_sql_null(
        _ty: &postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyValue(None))
    }

    fn accepts(_ty: &postgres::types::Type) -> bool {
        true
    }
}

/// Every value of every row, as raw bytes.
pub fn row_values(rows: &[postgres::Row]) -> Vec<Vec<Option<Vec<u8>>>> {
    rows.iter()
        .map(|r| {
            (0..r.len())
                .map(|i| r.get::<_, AnyValue>(i).0)
                .collect::<Vec<_>>()
        })
        .collect()
}
