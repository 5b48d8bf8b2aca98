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
//!
//! Layout: this file holds the cluster ([`Cluster`], [`Options`], start and stop, its
//! ports and sockets); `clients.rs` the psql and `postgres`-crate clients and the
//! timeouts around them ([`within`]); `wire.rs` the raw protocol client ([`wire`]).
//! Everything is re-exported here, so `pgcluster::*` and `pgcluster::wire::…` are the
//! paths to use.
#![allow(dead_code)]

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

mod clients;
pub mod wire;

pub use clients::*;

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
