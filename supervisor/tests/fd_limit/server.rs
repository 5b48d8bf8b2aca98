//! A throwaway PostgreSQL 15 cluster under `supervise run` whose supervisor starts
//! with RLIMIT_NOFILE = [`NOFILE`] (soft and hard, set in the spawned command before
//! exec, so the supervisor cannot raise it; the tenant inherits it), with a copy of
//! profiles/pg-demo.toml tracking the cluster's own port. Unlike `pgcluster::Cluster`
//! it keeps the supervisor's pid and its log, and finds the tenant's processes (every
//! process in the postmaster's PID namespace) to check none is stuck in a seccomp
//! notification. Dropping it SIGKILLs the supervisor (its tenant dies with it) and any
//! tenant process left.

use crate::common::*;
use crate::pgcluster::{demo_profile_on, pg, timeout_cmd};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The supervisor's fd limit (soft = hard).
pub const NOFILE: u64 = 64;

/// The wait channel of a task sleeping in a seccomp user notification (the kernel's
/// symbol may carry a compiler suffix: `seccomp_do_user_notification.isra.0`).
pub const NOTIF_WCHAN: &str = "seccomp_do_user_notification";

/// True if `wchan` (the contents of /proc/…/wchan) is [`NOTIF_WCHAN`], with or
/// without a `.suffix`.
pub fn is_notif_wchan(wchan: &str) -> bool {
    let w = wchan.trim();
    w == NOTIF_WCHAN
        || w.strip_prefix(NOTIF_WCHAN)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// A cluster under a supervisor with a low fd limit.
#[derive(Debug)]
pub struct LimitedCluster {
    child: Child,
    status: Option<ExitStatus>,
    log: tempfile::TempPath,
    _profile: tempfile::TempPath,
    dir: tempfile::TempDir,
    port: u16,
    /// The PID namespace of the tenant (`pid:[N]`), once known.
    ns: Option<String>,
}

/// Fails loudly, naming the program, if `prog` is not found in PATH (or as a path).
pub fn require_tool(prog: &str) {
    let found = if prog.contains('/') {
        Path::new(prog).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
            .unwrap_or(false)
    };
    assert!(
        found,
        "required tool `{prog}` not found (PATH={:?}); install it (util-linux, coreutils, \
         postgresql-15)",
        std::env::var_os("PATH")
    );
}

impl LimitedCluster {
    /// initdb, then `supervise run --profile <pg-demo copy> -- postgres …` at
    /// RLIMIT_NOFILE = NOFILE with these extra `-c` settings; waits until the server
    /// answers on its UNIX socket and runs `schema` there (untracked).
    pub fn start(schema: &str, settings: &[&str]) -> LimitedCluster {
        require_root();
        require_postgres();
        for tool in ["runuser", "chown", "timeout"] {
            require_tool(tool);
        }
        for bin in ["initdb", "postgres", "psql", "pg_isready"] {
            require_tool(&pg(bin).to_string_lossy());
        }
        let dir = tempfile::Builder::new()
            .prefix("supervise-fdlimit-")
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
        let port = free_port();
        let profile = demo_profile_on(port);
        let log = tempfile::Builder::new()
            .prefix("supervise-fdlimit-")
            .suffix(".log")
            .tempfile()
            .expect("log file")
            .into_temp_path();
        let mut cmd = Command::new(supervise_bin());
        cmd.arg("run")
            .arg("--profile")
            .arg(&*profile)
            .arg("--")
            .arg(pg("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&root)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()]);
        for s in settings {
            cmd.args(["-c", s]);
        }
        let out = File::create(&log).expect("open log");
        let err = out.try_clone().expect("clone log fd");
        cmd.current_dir(&root)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let lim = libc::rlimit {
            rlim_cur: NOFILE,
            rlim_max: NOFILE,
        };
        // SAFETY: the closure runs in the forked child before exec and only calls
        // setrlimit(2), which is async-signal-safe and touches no shared state; `lim`
        // is a plain value copied into the closure.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn supervise run");
        let mut c = LimitedCluster {
            child,
            status: None,
            log,
            _profile: profile,
            dir,
            port,
            ns: None,
        };
        c.wait_ready();
        c.psql_unix(schema);
        c.ns = c.tenant_ns();
        assert!(
            c.ns.is_some(),
            "cannot find the postmaster under supervisor {}\n{}",
            c.pid(),
            c.log()
        );
        c
    }

    /// The tracked TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    /// The directory holding the UNIX socket.
    pub fn sockdir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the supervisor and PostgreSQL wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    /// The supervisor's own log lines (tracing format: `2026-…T…Z  LEVEL target: …`),
    /// without PostgreSQL's (`2026-… UTC [pid] LOG: …`).
    pub fn supervisor_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|t| t.contains('T') && t.ends_with('Z'))
            })
            .map(str::to_owned)
            .collect()
    }

    /// The number of fds the supervisor holds now (None once it exited).
    pub fn supervisor_fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()
            .map(|d| d.count())
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(pg("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.sockdir())
                .args(["-p", &self.port.to_string()])
                .status()
                .expect("run pg_isready")
                .success();
            if ok {
                return;
            }
            if !self.is_running() {
                panic!(
                    "supervise exited before PostgreSQL was ready (status {:?})\n{}",
                    self.status,
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "PostgreSQL not ready on its UNIX socket within 60 s\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// psql over the UNIX socket (untracked), stop on error; panics on failure.
    pub fn psql_unix(&self, sql: &str) -> String {
        let mut c = timeout_cmd(&pg("psql"), Duration::from_secs(60));
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

    /// As [`LimitedCluster::psql_unix`], but a failure or a timeout (`bound`) is an
    /// Err with psql's output instead of a panic.
    pub fn try_psql_unix(&self, sql: &str, bound: Duration) -> Result<String, String> {
        let mut c = timeout_cmd(&pg("psql"), bound);
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
            ])
            .stdin(Stdio::null());
        let out = c.output().map_err(|e| format!("cannot run psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "psql over the UNIX socket failed ({}; 124 = timed out after {bound:?}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
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

    /// SIGTERM to the supervisor; its exit status if it exits within `bound`.
    pub fn sigterm_and_wait(&mut self, bound: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            // SAFETY: kill(2) takes only integers; the child is not reaped yet (we hold
            // it), so the pid is still ours.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        }
        let deadline = Instant::now() + bound;
        while Instant::now() < deadline {
            if !self.is_running() {
                return self.status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The PID namespace (`pid:[N]`) of the postmaster: the supervisor's descendant
    /// named postgres whose parent is not postgres.
    fn tenant_ns(&self) -> Option<String> {
        let procs = all_processes();
        let mut desc: BTreeSet<i32> = BTreeSet::from([self.pid()]);
        loop {
            let before = desc.len();
            for p in &procs {
                if desc.contains(&p.ppid) {
                    desc.insert(p.pid);
                }
            }
            if desc.len() == before {
                break;
            }
        }
        let comm: BTreeMap<i32, &str> = procs.iter().map(|p| (p.pid, p.comm.as_str())).collect();
        let postmaster = procs.iter().find(|p| {
            desc.contains(&p.pid)
                && p.comm == "postgres"
                && comm.get(&p.ppid).copied() != Some("postgres")
        })?;
        pid_ns(postmaster.pid)
    }

    /// Every process in the tenant's PID namespace (host pids).
    pub fn tenant_pids(&self) -> Vec<i32> {
        let Some(ns) = &self.ns else {
            return Vec::new();
        };
        all_processes()
            .into_iter()
            .filter(|p| pid_ns(p.pid).as_deref() == Some(ns.as_str()))
            .map(|p| p.pid)
            .collect()
    }

    /// Samples every tenant thread's wchan `samples` times, `gap` apart, and returns
    /// the threads that sat in a seccomp notification in every sample (stuck: the
    /// tenant is idle, nothing should be waiting for the supervisor), described.
    pub fn stuck_threads(&self, samples: usize, gap: Duration) -> Vec<String> {
        let mut in_notif: Option<BTreeSet<(i32, i32)>> = None;
        for i in 0..samples {
            if i > 0 {
                std::thread::sleep(gap);
            }
            let mut now = BTreeSet::new();
            for pid in self.tenant_pids() {
                for tid in tids(pid) {
                    let w = read(&format!("/proc/{pid}/task/{tid}/wchan"));
                    if is_notif_wchan(&w) {
                        now.insert((pid, tid));
                    }
                }
            }
            in_notif = Some(match in_notif {
                None => now,
                Some(prev) => prev.intersection(&now).copied().collect(),
            });
        }
        in_notif
            .unwrap_or_default()
            .into_iter()
            .map(|(pid, tid)| {
                let cmd = read(&format!("/proc/{pid}/cmdline")).replace('\0', " ");
                let sc = read(&format!("/proc/{pid}/task/{tid}/syscall"));
                let nr = sc.split_whitespace().next().unwrap_or("?").to_owned();
                format!(
                    "pid {pid} tid {tid} ({}) in syscall {} [{}] — wchan {NOTIF_WCHAN} in all \
                     {samples} samples",
                    cmd.trim(),
                    nr,
                    syscall_name(&nr)
                )
            })
            .collect()
    }

    /// Every thread of every tenant process: pid, tid, comm, wchan, syscall number.
    pub fn describe_tenant(&self) -> String {
        let mut out = String::new();
        for pid in self.tenant_pids() {
            for tid in tids(pid) {
                let comm = read(&format!("/proc/{pid}/task/{tid}/comm"));
                let wchan = read(&format!("/proc/{pid}/task/{tid}/wchan"));
                let sc = read(&format!("/proc/{pid}/task/{tid}/syscall"));
                let nr = sc.split_whitespace().next().unwrap_or("?").to_owned();
                out.push_str(&format!(
                    "  pid {pid} tid {tid} {:<16} wchan {:<32} syscall {nr} [{}]\n",
                    comm.trim(),
                    wchan.trim(),
                    syscall_name(&nr)
                ));
            }
        }
        out
    }

    /// Waits up to `bound` for every tenant process to be gone; the ones left.
    pub fn tenant_left_after(&self, bound: Duration) -> Vec<String> {
        let deadline = Instant::now() + bound;
        loop {
            let left: Vec<i32> = self
                .tenant_pids()
                .into_iter()
                .filter(|&p| !is_zombie(p))
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                return left
                    .into_iter()
                    .map(|p| {
                        format!(
                            "pid {p} ({}) state {}",
                            read(&format!("/proc/{p}/cmdline"))
                                .replace('\0', " ")
                                .trim(),
                            read(&format!("/proc/{p}/status"))
                                .lines()
                                .find(|l| l.starts_with("State:"))
                                .unwrap_or("?")
                        )
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LimitedCluster {
    fn drop(&mut self) {
        let left = self.tenant_pids();
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The kernel kills the namespace when its init dies; anything still there
        // after a moment is killed by pid (only processes of this tenant's namespace).
        std::thread::sleep(Duration::from_millis(200));
        for p in left {
            if self.ns.is_some() && pid_ns(p) == self.ns {
                // SAFETY: kill(2) takes only integers; p is in our tenant's namespace.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

#[derive(Debug)]
struct ProcInfo {
    pid: i32,
    ppid: i32,
    comm: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn all_processes() -> Vec<ProcInfo> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let st = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |k: &str| {
                st.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
            };
            Some(ProcInfo {
                pid,
                ppid: field("PPid:")?.parse().ok()?,
                comm: field("Name:")?,
            })
        })
        .collect()
}

fn pid_ns(pid: i32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/pid"))
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

fn tids(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_zombie(pid: i32) -> bool {
    read(&format!("/proc/{pid}/status"))
        .lines()
        .any(|l| l.starts_with("State:") && (l.contains("(zombie)") || l.contains("(dead)")))
}

fn syscall_name(nr: &str) -> &'static str {
    match nr.parse::<i64>() {
        Ok(libc::SYS_close) => "close",
        Ok(libc::SYS_read) => "read",
        Ok(libc::SYS_write) => "write",
        Ok(libc::SYS_recvfrom) => "recvfrom",
        Ok(libc::SYS_sendto) => "sendto",
        Ok(libc::SYS_accept) => "accept",
        Ok(libc::SYS_accept4) => "accept4",
        Ok(libc::SYS_connect) => "connect",
        Ok(libc::SYS_execve) => "execve",
        Ok(libc::SYS_dup2) => "dup2",
        Ok(libc::SYS_dup3) => "dup3",
        Ok(libc::SYS_close_range) => "close_range",
        Ok(libc::SYS_shutdown) => "shutdown",
        Ok(libc::SYS_epoll_wait) => "epoll_wait",
        Ok(libc::SYS_pselect6) => "pselect6",
        Ok(libc::SYS_select) => "select",
        Ok(libc::SYS_rt_sigtimedwait) => "rt_sigtimedwait",
        Ok(libc::SYS_wait4) => "wait4",
        _ => "?",
    }
}
