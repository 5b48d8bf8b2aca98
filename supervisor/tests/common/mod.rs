//! Shared helpers for supervise's integration tests.
//!
//! Every test binary includes this module with `mod common;` and uses only part of it.
//! The tests run real processes on the real kernel: run them through `just test`, which
//! builds the testbins first and serialises the tests (`--test-threads=1`).
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The postgres server binary the tests (and scripts/) use.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Path of the `supervise` binary under test.
pub fn supervise_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_supervise"))
}

/// The workspace root (the directory holding `profiles/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("supervisor/ has a parent")
        .to_path_buf()
}

/// Path of a profile shipped in the repository's `profiles/` directory.
pub fn repo_profile(name: &str) -> PathBuf {
    let p = workspace_root().join("profiles").join(name);
    assert!(p.is_file(), "profile {} is missing", p.display());
    p
}

/// Path of a program from the `testbins` crate, next to `supervise` in
/// target/<profile>/. `just test` builds them (`cargo build --workspace --all-targets`)
/// before running the tests; a missing one fails the test with its name.
pub fn testbin(name: &str) -> PathBuf {
    let dir = supervise_bin()
        .parent()
        .expect("supervise binary has a parent directory")
        .to_path_buf();
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "testbin `{name}` not found at {} — build the workspace first \
         (`cargo build --workspace --all-targets`, or run `just test`)",
        p.display()
    );
    p
}

/// Writes `toml` to a fresh temporary `.toml` file; the file is removed when the
/// returned path is dropped, so keep it alive while the tenant runs.
pub fn write_profile(toml: &str) -> tempfile::TempPath {
    let mut f = tempfile::Builder::new()
        .prefix("supervise-profile-")
        .suffix(".toml")
        .tempfile()
        .expect("create temporary profile");
    f.write_all(toml.as_bytes())
        .expect("write temporary profile");
    f.flush().expect("flush temporary profile");
    f.into_temp_path()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Panics with a clear message unless the test runs as root (the supervisor must).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test must run as root (euid is {euid}): supervise installs seccomp \
         filters for other users and injects descriptors; run `just test` as root"
    );
}

/// Makes sure PostgreSQL 15 is installed; installs `postgresql-15` and
/// `postgresql-client-15` with apt-get when /usr/lib/postgresql/15/bin/postgres is
/// missing. A failed install fails the test loudly.
pub fn require_postgres() {
    require_root();
    let postgres = Path::new(PG_BIN).join("postgres");
    if postgres.is_file() {
        return;
    }
    eprintln!(
        "{} missing: installing postgresql-15 with apt-get",
        postgres.display()
    );
    let run = |args: &[&str]| {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run apt-get {args:?}: {e}"));
        assert!(st.success(), "apt-get {args:?} failed: {st}");
    };
    run(&["update"]);
    run(&["install", "-y", "postgresql-15", "postgresql-client-15"]);
    assert!(
        postgres.is_file(),
        "postgresql-15 installed but {} is still missing",
        postgres.display()
    );
}

/// True if something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
        || TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Makes sure nothing listens on 127.0.0.1:`port`. Debian's packaged clusters
/// (`pg_lsclusters`: installing postgresql-15 creates and may start 15/main on 5432)
/// that are online on that port are stopped with `pg_ctlcluster`, with a note on
/// stderr; anything else holding the port fails the test with a clear message.
pub fn ensure_port_free(port: u16) {
    if !port_in_use(port) {
        return;
    }
    if let Ok(out) = Command::new("pg_lsclusters").arg("-h").output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() >= 4 && f[2] == port.to_string() && f[3].starts_with("online") {
                eprintln!(
                    "port {port} is held by the system PostgreSQL cluster {} {}: stopping it \
                     (pg_ctlcluster {} {} stop)",
                    f[0], f[1], f[0], f[1]
                );
                let st = Command::new("pg_ctlcluster")
                    .args([f[0], f[1], "stop"])
                    .status()
                    .expect("run pg_ctlcluster");
                assert!(
                    st.success(),
                    "pg_ctlcluster {} {} stop failed: {st}",
                    f[0],
                    f[1]
                );
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while port_in_use(port) {
        if Instant::now() > deadline {
            let ss = Command::new("ss")
                .args(["-ltnp", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "TCP port {port} on 127.0.0.1 is in use by another program; this test needs \
                 it (the profile tracks it). Stop that program and retry.\n{ss}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tenant running under `supervise run`. Its stdout is piped (read with
/// [`Tenant::wait_line`]); the supervisor's and the tenant's stderr go to a file
/// (see [`Tenant::stderr`]). Dropping a Tenant SIGKILLs the supervisor and reaps it.
#[derive(Debug)]
pub struct Tenant {
    child: Child,
    lines: Receiver<String>,
    stdout_so_far: Vec<String>,
    stderr_path: tempfile::TempPath,
    status: Option<ExitStatus>,
    what: String,
}

impl Tenant {
    /// `supervise run --profile PROFILE -- BIN ARGS...`
    pub fn spawn(profile: &Path, bin: &Path, args: &[&str]) -> Tenant {
        let mut full: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--profile".into(),
            profile.as_os_str().to_owned(),
            "--".into(),
            bin.as_os_str().to_owned(),
        ];
        full.extend(args.iter().map(|a| a.into()));
        Tenant::spawn_args(&full, None)
    }

    /// `supervise ARGS...` (give "run" and everything else yourself), optionally in a
    /// working directory.
    pub fn spawn_args<S: AsRef<std::ffi::OsStr>>(args: &[S], cwd: Option<&Path>) -> Tenant {
        let stderr_path = tempfile::Builder::new()
            .prefix("supervise-stderr-")
            .suffix(".log")
            .tempfile()
            .expect("create stderr capture file")
            .into_temp_path();
        let stderr = File::create(&stderr_path).expect("open stderr capture file");
        let mut cmd = Command::new(supervise_bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let what = format!(
            "supervise {}",
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut line = String::new();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Tenant {
            child,
            lines,
            stdout_so_far: Vec::new(),
            stderr_path,
            status: None,
            what,
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far (supervisor logs and the tenant's stderr).
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.stderr_path) {
            let mut b = Vec::new();
            let _ = f.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
        s
    }

    /// All stdout lines received so far (by wait_line / stdout_lines).
    pub fn stdout_lines(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.stdout_so_far.push(l);
        }
        &self.stdout_so_far
    }

    /// A report of everything seen so far, for panic messages.
    pub fn dump(&mut self) -> String {
        let out = self.stdout_lines().join("\n");
        let status = if self.is_running() {
            "still running".to_string()
        } else {
            format!("exited: {:?}", self.status)
        };
        format!(
            "--- command: {}\n--- supervisor: {status}\n--- stdout so far:\n{}\n\
             --- stderr so far:\n{}\n---",
            self.what,
            out,
            self.stderr()
        )
    }

    /// Reads stdout lines until one starts with `prefix` and returns it. Panics with
    /// all output so far on timeout or if stdout closes first.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout_so_far.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let d = self.dump();
                    panic!("no stdout line starting with {prefix:?} within {timeout:?}\n{d}");
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    let d = self.dump();
                    panic!(
                        "stdout closed before a line starting with {prefix:?} \
                         (supervisor status: {st:?})\n{d}"
                    );
                }
            }
        }
    }

    /// Sends signal `sig` (libc::SIGTERM, ...) to the supervisor.
    pub fn kill(&self, sig: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; `pid` is our own child, which is
        // not reaped yet (we hold the Child), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits for the supervisor to exit; panics with all output on timeout (the Drop
    /// then kills it).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.status = Some(st);
                    return st;
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
            if Instant::now() > deadline {
                let d = self.dump();
                panic!("supervisor did not exit within {timeout:?}\n{d}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// True while the supervisor has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            _ => true,
        }
    }
}

impl Drop for Tenant {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill(); // SIGKILL; the tenant dies with its supervisor
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion and returns its stdout; panics with stdout, stderr
/// and the exit status if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed: {}\n--- stdout:\n{}\n--- stderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A throwaway PostgreSQL cluster: a temporary directory owned by postgres with
/// `initdb` run in `data/` (trust auth, no locale, no sync). Returns the directory
/// (removed when dropped) and the data directory.
pub fn init_cluster(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir");
    run_ok(
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path()),
    );
    let data = dir.path().join("data");
    run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
            .args(["--no-locale", "--no-sync"])
            .current_dir(dir.path()),
    );
    (dir, data)
}
