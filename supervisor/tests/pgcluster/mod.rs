//! The throwaway-cluster harness of the PostgreSQL end-to-end tests (`pg_rules.rs`,
//! `pg_attacks.rs`, `pg_ordinary.rs`): a fresh PostgreSQL 15 cluster (initdb as
//! postgres, trust authentication) served under
//! `supervise run --profile <copy of profiles/pg-demo.toml> -- postgres …`, with
//!
//! - psql over the UNIX socket (not tracked: an administrator's way in, to create the
//!   schema and check what was really committed) and over TCP 127.0.0.1:PORT (tracked:
//!   every rule applies);
//! - the `postgres` crate (extended protocol) over TCP or the UNIX socket;
//! - [`wire::Raw`], a raw protocol client that builds every message by hand and keeps
//!   every byte it received.
//!
//! **Ports.** Each cluster listens on its own port, picked free at start (bind to
//! port 0), and the supervisor gets a copy of `profiles/pg-demo.toml` whose only
//! change is `listen_port = 5432` → that port (written to a temporary file). So these
//! binaries never need 5432 nor each other's port; the per-process lock ([`serial`])
//! only keeps one cluster per test binary at a time (2-vCPU machines).
//!
//! Every client call has a timeout: psql runs under `timeout(1)`, the crate client in
//! [`within`], the raw client with socket read deadlines.
//!
//! Each test binary includes `mod common;` and then `mod pgcluster;`.
#![allow(dead_code)]

use crate::common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a client of these tests may take, at most (a hang fails the test).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

static SERIAL: Mutex<()> = Mutex::new(());

/// One cluster at a time in this process (tests of one binary, even without
/// `--test-threads=1`).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A PostgreSQL program.
pub fn pg(bin: &str) -> PathBuf {
    Path::new(PG_BIN).join(bin)
}

/// `["a", "b"]` → `"a\nb\n"`.
pub fn lines(v: &[&str]) -> String {
    v.iter().map(|s| format!("{s}\n")).collect()
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// SQL run over the UNIX socket once the server is up (psql, ON_ERROR_STOP).
    pub schema: String,
    /// Extra server settings, each passed as `-c NAME=VALUE`.
    pub settings: Vec<String>,
    /// Extra pg_hba.conf lines, placed before initdb's own (first match wins).
    pub hba: Vec<String>,
    /// Prefix of the temporary directory (tells whose cluster it is).
    pub prefix: String,
}

impl Options {
    /// The defaults with this schema.
    pub fn new(schema: &str) -> Options {
        Options {
            schema: schema.to_owned(),
            settings: Vec::new(),
            hba: Vec::new(),
            prefix: "supervise-pg-".to_owned(),
        }
    }

    /// Adds `-c setting` (e.g. `"max_wal_senders=4"`).
    pub fn setting(mut self, setting: &str) -> Options {
        self.settings.push(setting.to_owned());
        self
    }

    /// Adds a pg_hba.conf line.
    pub fn hba(mut self, line: &str) -> Options {
        self.hba.push(line.to_owned());
        self
    }

    /// Sets the temporary directory's prefix.
    pub fn prefix(mut self, prefix: &str) -> Options {
        self.prefix = prefix.to_owned();
        self
    }
}

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

/// A throwaway cluster served by PostgreSQL under `supervise run` with a copy of
/// profiles/pg-demo.toml on its own port, the schema created over the UNIX socket.
#[derive(Debug)]
pub struct Cluster {
    // Declared first so it is dropped (SIGKILL) before the profile and the directory.
    tenant: Tenant,
    profile: tempfile::TempPath,
    dir: tempfile::TempDir,
    port: u16,
}

/// profiles/pg-demo.toml with its tracked port replaced by `port`.
pub fn demo_profile_on(port: u16) -> tempfile::TempPath {
    let path = repo_profile("pg-demo.toml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let from = "listen_port = 5432";
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} must contain `{from}` exactly once (the harness moves it to its own port)",
        path.display()
    );
    write_profile(&text.replace(from, &format!("listen_port = {port}")))
}

impl Cluster {
    /// A cluster with the default options and this schema.
    pub fn start(schema: &str) -> Cluster {
        Cluster::start_with(Options::new(schema))
    }

    /// A cluster with these options.
    pub fn start_with(opts: Options) -> Cluster {
        require_root();
        require_postgres();
        let dir = tempfile::Builder::new()
            .prefix(&opts.prefix)
            .tempdir()
            .expect("tempdir");
        let root = dir.path().to_path_buf();
        run_ok(Command::new("chown").args(["postgres:postgres"]).arg(&root));
        let data = root.join("data");
        run_ok(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ])
                .current_dir(&root),
        );
        if !opts.hba.is_empty() {
            let hba = data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
            let mut new: String = opts.hba.iter().map(|l| format!("{l}\n")).collect();
            new.push_str(&old);
            std::fs::write(&hba, new).expect("write pg_hba.conf");
        }
        let port = free_port();
        let profile = demo_profile_on(port);
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--profile".into(),
            profile.to_path_buf().into(),
            "--".into(),
            pg("postgres").into(),
            "-D".into(),
            data.into(),
            "-k".into(),
            root.clone().into(),
            "-c".into(),
            "listen_addresses=127.0.0.1".into(),
            "-p".into(),
            port.to_string().into(),
        ];
        for s in &opts.settings {
            args.push("-c".into());
            args.push(s.into());
        }
        let tenant = Tenant::spawn_args(&args, Some(&root));
        let mut cluster = Cluster {
            tenant,
            profile,
            dir,
            port,
        };
        cluster.wait_ready();
        cluster.psql_unix(&opts.schema);
        cluster
    }

    /// The tracked TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the UNIX socket (and the data directory, `data/`).
    pub fn sockdir(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory.
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The supervisor's log so far.
    pub fn supervisor_log(&self) -> String {
        self.tenant.stderr()
    }

    /// Everything known about the supervisor, for panic messages.
    pub fn dump(&mut self) -> String {
        self.tenant.dump()
    }

    /// libpq conninfo for TCP 127.0.0.1:PORT (tracked).
    pub fn tcp_conninfo(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        )
    }

    /// libpq conninfo for the UNIX socket (untracked).
    pub fn unix_conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.sockdir().display(),
            self.port
        )
    }

    fn wait_ready(&mut self) {
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(pg("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .expect("run pg_isready")
                .success();
            if ok {
                // Make sure it is our server that answered, not another one on the port.
                std::thread::sleep(Duration::from_millis(300));
                if !self.tenant.is_running() {
                    let d = self.tenant.dump();
                    panic!("something answered on 127.0.0.1:{port} but supervise exited\n{d}");
                }
                return;
            }
            if !self.tenant.is_running() {
                let d = self.tenant.dump();
                panic!("supervise exited before PostgreSQL accepted connections\n{d}");
            }
            if Instant::now() > deadline {
                let d = self.tenant.dump();
                panic!("PostgreSQL not ready on 127.0.0.1:{port} within 60 s\n{d}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

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

    /// Where the UNIX socket is.
    pub fn unix_target(&self) -> wire::Target {
        wire::Target::Unix(self.sockdir().join(format!(".s.PGSQL.{}", self.port)))
    }

    /// Where the tracked port is.
    pub fn tcp_target(&self) -> wire::Target {
        wire::Target::Tcp(self.port)
    }

    /// True while the supervisor runs.
    pub fn supervisor_running(&mut self) -> bool {
        self.tenant.is_running()
    }

    /// SIGTERM (smart shutdown, forwarded to postgres): supervise must exit 0 and
    /// must not have panicked.
    pub fn stop(mut self) {
        self.tenant.kill(libc::SIGTERM);
        let st = self.tenant.wait(Duration::from_secs(30));
        let log = self.tenant.stderr();
        if st.code() != Some(0) {
            let d = self.tenant.dump();
            panic!("supervise exited with {st} after SIGTERM, expected 0\n{d}");
        }
        assert!(!log.contains("panicked"), "the supervisor panicked:\n{log}");
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

/// A hand-built protocol v3 client: every message is built here byte by byte, every
/// byte read is kept (`received`), and reads stop at a given number of
/// ReadyForQuery, at EOF, or at a deadline.
pub mod wire {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// Default deadline of one [`Raw::read_until`].
    pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
    /// At most this many bytes are kept (a runaway stream stops the read).
    pub const MAX_KEEP: usize = 256 << 20;

    /// Where to connect.
    #[derive(Debug, Clone)]
    pub enum Target {
        /// 127.0.0.1:port (tracked).
        Tcp(u16),
        /// A UNIX socket file (untracked).
        Unix(PathBuf),
    }

    impl Target {
        /// "tcp" or "unix".
        pub fn kind(&self) -> &'static str {
            match self {
                Target::Tcp(_) => "tcp",
                Target::Unix(_) => "unix",
            }
        }
    }

    #[derive(Debug)]
    enum Conn {
        Tcp(TcpStream),
        Unix(UnixStream),
    }

    /// One backend message.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Msg {
        /// The type byte.
        pub tag: u8,
        /// Everything after the length.
        pub body: Vec<u8>,
    }

    /// The fields of an ErrorResponse or NoticeResponse.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ErrFields {
        /// `V` (non-localized severity), else `S`.
        pub severity: String,
        /// `C`.
        pub code: String,
        /// `M`.
        pub message: String,
        /// Every (code, value) pair.
        pub all: Vec<(u8, String)>,
    }

    impl Msg {
        /// The fields, if this is an ErrorResponse (`E`) or NoticeResponse (`N`).
        pub fn fields(&self) -> Option<ErrFields> {
            if self.tag != b'E' && self.tag != b'N' {
                return None;
            }
            let mut all = Vec::new();
            let mut rest = &self.body[..];
            while let Some((&code, tail)) = rest.split_first() {
                if code == 0 {
                    break;
                }
                let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
                all.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
                rest = tail.get(end + 1..).unwrap_or(&[]);
            }
            let get = |c: u8| {
                all.iter()
                    .find(|(k, _)| *k == c)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            let severity = if all.iter().any(|(k, _)| *k == b'V') {
                get(b'V')
            } else {
                get(b'S')
            };
            Some(ErrFields {
                severity,
                code: get(b'C'),
                message: get(b'M'),
                all,
            })
        }

        /// The fields if this is an ErrorResponse.
        pub fn error(&self) -> Option<ErrFields> {
            (self.tag == b'E').then(|| self.fields()).flatten()
        }

        /// The status byte if this is a ReadyForQuery.
        pub fn ready(&self) -> Option<u8> {
            (self.tag == b'Z')
                .then(|| self.body.first().copied())
                .flatten()
        }

        /// The values if this is a DataRow.
        pub fn data_row(&self) -> Option<Vec<Option<Vec<u8>>>> {
            if self.tag != b'D' || self.body.len() < 2 {
                return None;
            }
            let n = i16::from_be_bytes([self.body[0], self.body[1]]);
            let mut at = 2usize;
            let mut out = Vec::new();
            for _ in 0..n.max(0) {
                let len_bytes = self.body.get(at..at + 4)?;
                let len = i32::from_be_bytes(len_bytes.try_into().ok()?);
                at += 4;
                if len < 0 {
                    out.push(None);
                } else {
                    let len = usize::try_from(len).ok()?;
                    out.push(Some(self.body.get(at..at + len)?.to_vec()));
                    at += len;
                }
            }
            Some(out)
        }

        /// The tag if this is a CommandComplete.
        pub fn command_tag(&self) -> Option<String> {
            (self.tag == b'C').then(|| {
                String::from_utf8_lossy(self.body.strip_suffix(&[0]).unwrap_or(&self.body))
                    .into_owned()
            })
        }

        /// Field names if this is a RowDescription.
        pub fn field_names(&self) -> Option<Vec<String>> {
            if self.tag != b'T' || self.body.len() < 2 {
                return None;
            }
            let n = i16::from_be_bytes([self.body[0], self.body[1]]);
            let mut at = 2usize;
            let mut out = Vec::new();
            for _ in 0..n.max(0) {
                let end = at + self.body.get(at..)?.iter().position(|&b| b == 0)?;
                out.push(String::from_utf8_lossy(&self.body[at..end]).into_owned());
                at = end + 1 + 18;
            }
            Some(out)
        }

        /// A one-line summary (`E 42501 ERROR: …`, `Z I`, `C SELECT 3`, `D …`).
        pub fn summary(&self) -> String {
            if let Some(f) = self.fields() {
                return format!(
                    "{} {} {}: {}",
                    self.tag as char, f.code, f.severity, f.message
                );
            }
            if let Some(s) = self.ready() {
                return format!("Z {}", s as char);
            }
            if let Some(t) = self.command_tag() {
                return format!("C {t}");
            }
            if let Some(v) = self.data_row() {
                let cols: Vec<String> = v
                    .iter()
                    .map(|c| match c {
                        None => "NULL".to_owned(),
                        Some(b) => super::escape_bytes(&b[..b.len().min(60)]),
                    })
                    .collect();
                return format!("D [{}]", cols.join(" | "));
            }
            if let Some(n) = self.field_names() {
                return format!("T {n:?}");
            }
            format!("{} ({} bytes)", self.tag as char, self.body.len())
        }
    }

    /// A raw connection.
    #[derive(Debug)]
    pub struct Raw {
        conn: Option<Conn>,
        /// Every byte received, in order.
        pub received: Vec<u8>,
        pending: Vec<u8>,
        /// Every complete message received, in order.
        pub msgs: Vec<Msg>,
        /// The server closed the connection (EOF or a reset).
        pub eof: bool,
        /// A read hit its deadline.
        pub timed_out: bool,
        /// A send failed (the peer had closed).
        pub send_failed: bool,
        /// Where it is connected.
        pub target: Target,
    }

    impl Raw {
        /// Connects (10 s timeout); panics if the server does not accept.
        pub fn connect(target: &Target) -> Raw {
            let conn = match target {
                Target::Tcp(port) => {
                    let s = TcpStream::connect_timeout(
                        &std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                        Duration::from_secs(10),
                    )
                    .unwrap_or_else(|e| panic!("raw client: connect 127.0.0.1:{port}: {e}"));
                    s.set_nodelay(true).expect("TCP_NODELAY");
                    s.set_write_timeout(Some(Duration::from_secs(15)))
                        .expect("write timeout");
                    Conn::Tcp(s)
                }
                Target::Unix(path) => {
                    let s = UnixStream::connect(path)
                        .unwrap_or_else(|e| panic!("raw client: connect {}: {e}", path.display()));
                    s.set_write_timeout(Some(Duration::from_secs(15)))
                        .expect("write timeout");
                    Conn::Unix(s)
                }
            };
            Raw {
                conn: Some(conn),
                received: Vec::new(),
                pending: Vec::new(),
                msgs: Vec::new(),
                eof: false,
                timed_out: false,
                send_failed: false,
                target: target.clone(),
            }
        }

        /// Connects, sends a StartupMessage with these parameters and reads up to the
        /// first ReadyForQuery.
        pub fn login(target: &Target, params: &[(&str, &str)]) -> Raw {
            let mut r = Raw::connect(target);
            r.send(&startup(params));
            r.read_until(1);
            r
        }

        /// Writes all of `bytes` in one write call where the kernel allows (a failure
        /// is recorded in `send_failed`, not a panic: the server may have closed).
        pub fn send(&mut self, bytes: &[u8]) {
            let res = match self.conn.as_mut() {
                Some(Conn::Tcp(s)) => s.write_all(bytes),
                Some(Conn::Unix(s)) => s.write_all(bytes),
                None => Err(std::io::Error::other("closed")),
            };
            if res.is_err() {
                self.send_failed = true;
            }
        }

        /// Sends the concatenation of these messages in one write.
        pub fn send_all(&mut self, msgs: &[Vec<u8>]) {
            let bytes: Vec<u8> = msgs.concat();
            self.send(&bytes);
        }

        fn read_some(&mut self, deadline: Instant) -> bool {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.timed_out = true;
                return false;
            }
            let mut buf = vec![0u8; 64 * 1024];
            let res = match self.conn.as_mut() {
                Some(Conn::Tcp(s)) => {
                    s.set_read_timeout(Some(left)).expect("read timeout");
                    s.read(&mut buf)
                }
                Some(Conn::Unix(s)) => {
                    s.set_read_timeout(Some(left)).expect("read timeout");
                    s.read(&mut buf)
                }
                None => Ok(0),
            };
            match res {
                Ok(0) => {
                    self.eof = true;
                    false
                }
                Ok(n) => {
                    if self.received.len() < MAX_KEEP {
                        self.received.extend_from_slice(&buf[..n]);
                    }
                    self.pending.extend_from_slice(&buf[..n]);
                    true
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    self.timed_out = true;
                    false
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => true,
                Err(_) => {
                    self.eof = true;
                    false
                }
            }
        }

        fn next_msg(&mut self) -> Option<Msg> {
            if self.pending.len() < 5 {
                return None;
            }
            let len = i32::from_be_bytes([
                self.pending[1],
                self.pending[2],
                self.pending[3],
                self.pending[4],
            ]);
            let len = usize::try_from(len).ok().filter(|&l| l >= 4)?;
            if self.pending.len() < 1 + len {
                return None;
            }
            let m = Msg {
                tag: self.pending[0],
                body: self.pending[5..1 + len].to_vec(),
            };
            self.pending.drain(..1 + len);
            Some(m)
        }

        /// Reads until `ready` ReadyForQuery messages arrived (0: until EOF), EOF, or
        /// [`READ_TIMEOUT`]. Returns the messages read by this call.
        pub fn read_until(&mut self, ready: usize) -> Vec<Msg> {
            self.read_until_for(ready, READ_TIMEOUT)
        }

        /// [`Raw::read_until`] with this deadline.
        pub fn read_until_for(&mut self, ready: usize, timeout: Duration) -> Vec<Msg> {
            let deadline = Instant::now() + timeout;
            let mut got = Vec::new();
            let mut seen = 0usize;
            loop {
                while let Some(m) = self.next_msg() {
                    let is_ready = m.tag == b'Z';
                    self.msgs.push(m.clone());
                    got.push(m);
                    if is_ready {
                        seen += 1;
                        if ready > 0 && seen >= ready {
                            return got;
                        }
                    }
                }
                if self.eof || self.received.len() >= MAX_KEEP {
                    return got;
                }
                if !self.read_some(deadline) {
                    if self.eof {
                        continue; // parse what is left, then return
                    }
                    return got;
                }
            }
        }

        /// Reads whatever arrives within `timeout` (for "nothing more must come").
        pub fn drain_for(&mut self, timeout: Duration) -> Vec<Msg> {
            let before = self.timed_out;
            let got = self.read_until_for(0, timeout);
            self.timed_out = before;
            got
        }

        /// Closes our side.
        pub fn close(&mut self) {
            self.conn = None;
        }
    }

    fn cstr(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    /// Byte1 tag + Int32 length + body.
    pub fn build(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(i32::try_from(body.len() + 4).expect("fits")).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// StartupMessage (protocol 3.0) with these parameters, in this order.
    pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut body = 196608i32.to_be_bytes().to_vec();
        for (k, v) in params {
            cstr(&mut body, k);
            cstr(&mut body, v);
        }
        body.push(0);
        let mut m = (i32::try_from(body.len() + 4).expect("fits"))
            .to_be_bytes()
            .to_vec();
        m.extend_from_slice(&body);
        m
    }

    /// The usual startup parameters: user postgres, database postgres.
    pub fn default_params() -> Vec<(&'static str, &'static str)> {
        vec![("user", "postgres"), ("database", "postgres")]
    }

    /// Query.
    pub fn query(sql: &str) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, sql);
        build(b'Q', &b)
    }

    /// Query with raw (possibly non-UTF-8) text.
    pub fn query_bytes(sql: &[u8]) -> Vec<u8> {
        let mut b = sql.to_vec();
        b.push(0);
        build(b'Q', &b)
    }

    /// Parse.
    pub fn parse(name: &str, sql: &str, types: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, name);
        cstr(&mut b, sql);
        b.extend_from_slice(&(i16::try_from(types.len()).expect("fits")).to_be_bytes());
        for t in types {
            b.extend_from_slice(&t.to_be_bytes());
        }
        build(b'P', &b)
    }

    /// Bind.
    pub fn bind(
        portal: &str,
        statement: &str,
        param_formats: &[i16],
        params: &[Option<&[u8]>],
        result_formats: &[i16],
    ) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        cstr(&mut b, statement);
        b.extend_from_slice(&(i16::try_from(param_formats.len()).expect("fits")).to_be_bytes());
        for f in param_formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b.extend_from_slice(&(i16::try_from(params.len()).expect("fits")).to_be_bytes());
        for p in params {
            match p {
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    b.extend_from_slice(&(i32::try_from(v.len()).expect("fits")).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b.extend_from_slice(&(i16::try_from(result_formats.len()).expect("fits")).to_be_bytes());
        for f in result_formats {
            b.extend_from_slice(&f.to_be_bytes());
        }
        build(b'B', &b)
    }

    /// Describe (`b'S'` statement or `b'P'` portal).
    pub fn describe(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        build(b'D', &b)
    }

    /// Close (`b'S'` statement or `b'P'` portal).
    pub fn close(kind: u8, name: &str) -> Vec<u8> {
        let mut b = vec![kind];
        cstr(&mut b, name);
        build(b'C', &b)
    }

    /// Execute with a row limit (0: all).
    pub fn execute(portal: &str, max_rows: i32) -> Vec<u8> {
        let mut b = Vec::new();
        cstr(&mut b, portal);
        b.extend_from_slice(&max_rows.to_be_bytes());
        build(b'E', &b)
    }

    /// Sync.
    pub fn sync() -> Vec<u8> {
        build(b'S', &[])
    }

    /// Flush.
    pub fn flush() -> Vec<u8> {
        build(b'H', &[])
    }

    /// Terminate.
    pub fn terminate() -> Vec<u8> {
        build(b'X', &[])
    }

    /// Parse + Bind + Execute (unnamed, all rows, these result formats) + Sync,
    /// without Describe.
    pub fn pbes(sql: &str, result_formats: &[i16]) -> Vec<u8> {
        [
            parse("", sql, &[]),
            bind("", "", &[], &[], result_formats),
            execute("", 0),
            sync(),
        ]
        .concat()
    }
}
