//! Helpers of `hygiene.rs`: running `supervise` with a chosen environment and stray
//! descriptors, and a PostgreSQL cluster started bare (not under the supervisor), for a
//! tenant that is its client.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// stdout, lossily decoded.
    pub stdout: String,
    /// stderr, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// The `env NAME=VALUE` lines of `env_fds`, without the prefix.
    pub fn env(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("env "))
            .map(str::to_owned)
            .collect()
    }

    /// The `fd N TARGET` lines of `env_fds`: (N, TARGET).
    pub fn fds(&self) -> Vec<(i32, String)> {
        self.stdout
            .lines()
            .filter_map(|l| l.strip_prefix("fd "))
            .map(|l| {
                let (n, target) = l.split_once(' ').unwrap_or((l, ""));
                (n.parse().expect("fd number"), target.to_owned())
            })
            .collect()
    }
}

/// How to start a command: its whole environment, and descriptors it inherits above 2.
#[derive(Debug, Default, Clone)]
pub struct Launch {
    /// The environment (nothing else is inherited from the test process).
    pub env: Vec<(String, String)>,
    /// Open files to place, without close-on-exec, at these descriptor numbers.
    pub stray: Vec<(i32, PathBuf)>,
}

impl Launch {
    /// The command, configured: env cleared then set, stdin /dev/null, stray fds.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut files = Vec::new();
        for (fd, path) in &self.stray {
            let file = File::options()
                .read(true)
                .append(true)
                .create(true)
                .open(path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            files.push((*fd, file));
        }
        // SAFETY: between fork and exec only dup2 and fcntl (async-signal-safe) on
        // descriptors this closure owns; both leave the number without close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                for (fd, file) in &files {
                    let raw = std::os::fd::AsRawFd::as_raw_fd(file);
                    let rc = if raw == *fd {
                        libc::fcntl(raw, libc::F_SETFD, 0)
                    } else {
                        libc::dup2(raw, *fd)
                    };
                    if rc < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `program args` to completion (a hang guard of 60 s, not a timing check).
    pub fn run(&self, program: &Path, args: &[OsString]) -> Output {
        let (out, err) = (temp_file("out"), temp_file("err"));
        let mut cmd = self.command(program, args);
        cmd.stdout(File::create(&out).expect("stdout file"));
        cmd.stderr(File::create(&err).expect("stderr file"));
        let what = format!("{} {args:?}", program.display());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let status = wait_or_kill(&mut child, Duration::from_secs(60), &what);
        Output {
            code: status,
            stdout: read(&out),
            stderr: read(&err),
        }
    }

    /// `supervise ARGS...` to completion.
    pub fn supervise(&self, args: &[&str]) -> Output {
        let args: Vec<OsString> = args.iter().map(Into::into).collect();
        self.run(&supervise_bin(), &args)
    }
}

fn temp_file(what: &str) -> tempfile::TempPath {
    tempfile::Builder::new()
        .prefix(&format!("supervise-hygiene-{what}-"))
        .tempfile()
        .expect("temporary file")
        .into_temp_path()
}

fn read(path: &Path) -> String {
    let mut b = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut b))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    String::from_utf8_lossy(&b).into_owned()
}

/// Waits for `child`; after `limit` kills it and panics.
pub fn wait_or_kill(child: &mut Child, limit: Duration, what: &str) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The passwd line of `uid` (`getent passwd UID`), split on ':'; None if it has none.
pub fn passwd_of(uid: u32) -> Option<Vec<String>> {
    let out = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .expect("run getent (libc-bin)");
    match out.status.code() {
        Some(0) => Some(
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(':')
                .map(str::to_owned)
                .collect(),
        ),
        Some(2) => None,
        other => panic!("getent passwd {uid}: status {other:?}"),
    }
}

/// A PostgreSQL 15 cluster run bare by the postgres account (no supervisor), trust
/// authentication, on 127.0.0.1:PORT and a unix socket in its directory.
pub struct BarePg {
    server: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl BarePg {
    /// initdb, start, wait until it accepts connections, run `schema` (unix socket).
    pub fn start(schema: &str) -> BarePg {
        require_postgres();
        let dir = tempfile::Builder::new()
            .prefix("supervise-hygiene-pg-")
            .tempdir()
            .expect("tempdir");
        run_ok(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()),
        );
        let data = dir.path().join("data");
        run_ok(
            Command::new("setpriv")
                .args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(pg("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["--auth=trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--no-locale", "--no-sync"])
                .current_dir(dir.path()),
        );
        let port = free_port();
        let log = File::create(dir.path().join("server.log")).expect("server log");
        let server = Command::new("setpriv")
            .args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(pg("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres (setpriv from util-linux)");
        let mut bare = BarePg { server, dir, port };
        bare.wait_ready();
        bare.psql_unix(schema);
        bare
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(pg("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string()])
                .status()
                .expect("run pg_isready")
                .success();
            if ready {
                return;
            }
            if let Some(st) = self.server.try_wait().expect("try_wait") {
                panic!(
                    "postgres exited ({st}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL over the unix socket (ON_ERROR_STOP); returns stdout.
    pub fn psql_unix(&self, sql: &str) -> String {
        run_ok(
            Command::new(pg("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d"])
                .args(["postgres", "-c", sql]),
        )
    }
}

impl Drop for BarePg {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (clients are gone by now).
        // SAFETY: kill takes integers; the child is not reaped yet, so its pid is ours.
        unsafe { libc::kill(self.server.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.server.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.server.kill();
                let _ = self.server.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A PostgreSQL program.
pub fn pg(bin: &str) -> PathBuf {
    Path::new(PG_BIN).join(bin)
}
