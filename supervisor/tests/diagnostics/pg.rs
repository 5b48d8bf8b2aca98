//! A throwaway PostgreSQL 15 cluster under `supervise --state-dir S --log-format json
//! run --profile <copy of profiles/pg-demo.toml> -- postgres …`, and a `postgres`-crate
//! client whose every call has a deadline.
//!
//! The copy of pg-demo.toml differs only in its tracked port (`listen_port = 5432` →
//! a port that was free a moment ago), as in `pgcluster/`: nothing here needs 5432.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::confined::StateDir;
use crate::harness::*;

/// The tables the diagnostics tests use: salaries is denied by rule r2.
pub const SCHEMA: &str = "
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO salaries VALUES (1, 1000), (2, 2000);
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES (1, 'alice', 20, '111-11-1111');
";

pub fn pg(bin: &str) -> PathBuf {
    Path::new(PG_BIN).join(bin)
}

/// PostgreSQL under pg-demo.toml. Fields are dropped in order: the supervisor first
/// (SIGTERM), then the profile and the cluster's directory.
pub struct PgDemo {
    pub sup: Sup,
    profile: tempfile::TempPath,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl PgDemo {
    /// Starts the cluster with `extra_run` before `--profile` (e.g. `--metrics-listen
    /// ADDR`), waits until it accepts connections, creates [`SCHEMA`] over the unix
    /// socket (not tracked).
    pub fn start(state: &StateDir, extra_run: &[&str]) -> PgDemo {
        PgDemo::start_with(state, extra_run, "pg-demo.toml", "127.0.0.1", |t| t)
    }

    /// As [`PgDemo::start`], with the repository's profile `name`, its text passed
    /// through `edit` (after the port is changed), PostgreSQL listening on `listen`.
    pub fn start_with(
        state: &StateDir,
        extra_run: &[&str],
        name: &str,
        listen: &str,
        edit: impl Fn(String) -> String,
    ) -> PgDemo {
        require_root();
        require_postgres();
        let (dir, data) = init_cluster("supervise-diag-pg-");
        let root = dir.path().to_path_buf();
        let port = free_port();
        let demo = repo_profile(name);
        let text = std::fs::read_to_string(&demo).expect("read pg-demo.toml");
        let from = "listen_port = 5432";
        assert_eq!(
            text.matches(from).count(),
            1,
            "{} must contain `{from}` exactly once",
            demo.display()
        );
        let profile = write_profile(&edit(text.replace(from, &format!("listen_port = {port}"))));
        let mut args: Vec<OsString> = extra_run.iter().map(OsString::from).collect();
        args.extend([
            "--profile".into(),
            profile.to_path_buf().into_os_string(),
            "--".into(),
            pg("postgres").into_os_string(),
            "-D".into(),
            data.into_os_string(),
            "-k".into(),
            root.clone().into_os_string(),
            "-c".into(),
            format!("listen_addresses={listen}").into(),
            "-p".into(),
            port.to_string().into(),
        ]);
        let sup = Sup::start(state, &args, Some(&root));
        let mut c = PgDemo {
            sup,
            profile,
            dir,
            port,
        };
        c.wait_ready();
        c.psql_unix(SCHEMA);
        c
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ok = Command::new(pg("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .expect("run pg_isready")
                .success();
            if ok {
                if !self.sup.tenant.is_running() {
                    let d = self.sup.dump();
                    panic!(
                        "something answered on port {} but supervise exited\n{d}",
                        self.port
                    );
                }
                return;
            }
            if !self.sup.tenant.is_running() {
                let d = self.sup.dump();
                panic!("supervise exited before PostgreSQL accepted connections\n{d}");
            }
            if Instant::now() > deadline {
                let d = self.sup.dump();
                panic!("PostgreSQL not ready within {PATIENCE:?}\n{d}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the supervisor (SIGTERM; it must exit 0), then removes the cluster.
    pub fn stop(self) {
        let PgDemo {
            sup, profile, dir, ..
        } = self;
        sup.stop();
        drop((profile, dir));
    }

    /// The cluster's directory (its unix socket is there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// psql over the unix socket (untracked), stop on error; returns stdout.
    pub fn psql_unix(&self, sql: &str) -> String {
        run_ok(
            Command::new("timeout")
                .args(["-k", "5", "60"])
                .arg(pg("psql"))
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(self.dir.path())
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-d",
                    "postgres",
                ])
                .args(["-c", sql]),
        )
    }

    /// A `postgres`-crate client over TCP 127.0.0.1:PORT (the tracked port).
    pub fn client(&mut self) -> Pg {
        let port = self.port;
        let got = try_within(move || {
            let mut cfg = postgres::Config::new();
            cfg.host("127.0.0.1")
                .port(port)
                .user("postgres")
                .dbname("postgres")
                .application_name("diagnostics-test")
                .connect_timeout(Duration::from_secs(10));
            cfg.connect(postgres::NoTls)
        });
        match got {
            Some(Ok(client)) => Pg {
                client: Some(client),
            },
            Some(Err(e)) => {
                let d = self.sup.dump();
                panic!("connect to 127.0.0.1:{port}: {e}\n{d}")
            }
            None => {
                let d = self.sup.dump();
                panic!("connect to 127.0.0.1:{port} hangs\n{d}")
            }
        }
    }
}

/// Runs `f` on a thread; None if it does not finish within [`PATIENCE`].
pub fn try_within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(PATIENCE) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => None,
    }
}

/// A client whose every call runs with a deadline (a hang fails the test with the
/// supervisor's log instead of blocking it).
pub struct Pg {
    client: Option<postgres::Client>,
}

impl Pg {
    /// Runs `f` on the client; panics with the supervisor's log if it hangs.
    pub fn with<T: Send + 'static>(
        &mut self,
        sup: &mut Sup,
        what: &str,
        f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
    ) -> T {
        let mut client = self.client.take().expect("client was lost to a hang");
        match try_within(move || {
            let v = f(&mut client);
            (client, v)
        }) {
            Some((client, v)) => {
                self.client = Some(client);
                v
            }
            None => {
                let d = sup.dump();
                panic!("{what}: no answer within {PATIENCE:?}\n{d}")
            }
        }
    }

    /// A simple-protocol statement that must succeed; its first column's values.
    pub fn query(&mut self, sup: &mut Sup, sql: &str) -> Vec<String> {
        let q = sql.to_owned();
        let r = self.with(sup, sql, move |c| c.simple_query(&q));
        match r {
            Ok(msgs) => msgs
                .iter()
                .filter_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or("(null)").to_owned())
                    }
                    _ => None,
                })
                .collect(),
            Err(e) => {
                let d = sup.dump();
                panic!("{sql:?} failed: {e:?}\n{d}")
            }
        }
    }

    /// A simple-protocol statement that must fail with an ErrorResponse; its
    /// (SQLSTATE, message).
    pub fn query_err(&mut self, sup: &mut Sup, sql: &str) -> (String, String) {
        let q = sql.to_owned();
        let r = self.with(sup, sql, move |c| c.simple_query(&q).map(|_| ()));
        match r {
            Ok(()) => {
                let d = sup.dump();
                panic!("{sql:?} succeeded; expected an error\n{d}")
            }
            Err(e) => match e.as_db_error() {
                Some(db) => (db.code().code().to_owned(), db.message().to_owned()),
                None => {
                    let d = sup.dump();
                    panic!("{sql:?}: expected an ErrorResponse, got {e:?}\n{d}")
                }
            },
        }
    }

    /// Closes the connection (Terminate).
    pub fn close(mut self, sup: &mut Sup) {
        if let Some(client) = self.client.take() {
            let r = try_within(move || client.close());
            if r.is_none() {
                let d = sup.dump();
                panic!("closing the client hangs\n{d}");
            }
        }
    }
}
