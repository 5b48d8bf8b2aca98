//! More confinement attacks by a hostile tenant A (the `hostile more` testbin mode)
//! while tenant B runs, against what came after issue 10: the fd cache keyed by fd
//! table, the agent that performs unix-socket calls, and the cgroup limits. Each test
//! asserts the secure outcome, so it fails while the hole is there.
//!
//! The tenants here are named `rt-a`/`rt-b` with uids near the top of the node range,
//! so that they share neither cgroups nor uids nor addresses with the tenants of other
//! test files that may be running on the same host.
//!
//! Run as root with `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod confined;
#[path = "hostile/harness.rs"]
mod harness;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use confined::*;
use harness::{assert_none, ARun, B_ABSTRACT, LINE};

const A_NAME: &str = "rt-a";
const A_UID: u32 = 265_000;
const B_NAME: &str = "rt-b";
const B_UID: u32 = 265_001;

fn read_only() -> String {
    let ro = system_and_testbins();
    let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
    toml_paths(&ro)
}

/// Tenant B (`hostile serve`), running while A attacks.
struct Stage {
    b: Tenant,
    state: StateDir,
    _b_prof: tempfile::TempPath,
}

impl Stage {
    fn start() -> Stage {
        require_root();
        let state = StateDir::new();
        let bin = testbin("hostile");
        let prof = write_profile(&format!(
            "[tenant]\nname = \"{B_NAME}\"\nuid = {B_UID}\nconfine = true\n\
             command = [\"{bin}\", \"serve\", \"--tcp\", \"{{address}}:0\", \"--udp\", \"{{address}}:0\", \"--abstract\", \"{B_ABSTRACT}\"]\n\
             [filesystem]\nread_only = {ro}\n",
            bin = bin.display(),
            ro = read_only(),
        ));
        let mut b = state.run(&prof, &[]);
        b.wait_line("ready pid=", LINE);
        Stage {
            b,
            state,
            _b_prof: prof,
        }
    }

    /// Runs `hostile more ARGS` as A (`extra` appended to its profile) until `done`;
    /// `on_line` sees every line first (e.g. `holding`).
    fn run_a(&mut self, extra: &str, args: &[&str], on_line: impl FnMut(&str)) -> ARun {
        self.run_a_within(extra, args, LINE, on_line)
    }

    /// As [`Stage::run_a`], with `per_line` as the hang guard for each line.
    fn run_a_within(
        &mut self,
        extra: &str,
        args: &[&str],
        per_line: Duration,
        mut on_line: impl FnMut(&str),
    ) -> ARun {
        let bin = testbin("hostile");
        let prof = write_profile(&format!(
            "[tenant]\nname = \"{A_NAME}\"\nuid = {A_UID}\nconfine = true\n\
             [filesystem]\nread_only = {}\n{extra}",
            read_only()
        ));
        let mut cmd: Vec<&str> = vec![bin.to_str().unwrap(), "more"];
        cmd.extend(args);
        let mut a = self.state.run(&prof, &cmd);
        loop {
            let line = a.wait_line("", per_line);
            on_line(&line);
            if line == "done" {
                break;
            }
        }
        let st = a.wait(LINE);
        let dump = a.dump();
        assert_eq!(st.code(), Some(0), "tenant A must exit 0\n{dump}");
        assert!(self.b.is_running(), "tenant B died\n{}", self.b.dump());
        let lines = a.stdout_lines().to_vec();
        eprintln!("--- tenant A:\n{}", lines.join("\n"));
        ARun {
            lines,
            dump,
            pokes: 0,
        }
    }
}

/// A TCP server on 127.0.0.1 that keeps every byte each connection sends.
struct Recorder {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut conn) = conn else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder { addr, got }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.got.lock().unwrap()).into_owned()
    }
}

/// A thread that gives itself a private fd table with
/// close_range(CLOSE_RANGE_UNSHARE) must not reach a tracked stream around its rules:
/// the main thread's close + /dev/null + write leaves "not a socket" cached for the
/// number, which in the thread's own table is still the tracked connection. Every byte
/// the server gets must have gone through the outbound `wrap` rule.
#[test]
fn close_range_unshare_cannot_bypass_a_tracked_stream() {
    let mut st = Stage::start();
    let server = Recorder::start();
    let port = server.addr.port();
    let extra = format!(
        "[[stream]]\nname = \"wrapped\"\nremote_port = {port}\nframer = \"raw\"\n\
         [[stream.rule]]\nkind = \"wrap\"\ndirection = \"outbound\"\nprefix = \"<\"\nsuffix = \">\"\n"
    );
    let wrapped = server.addr.to_string();
    let run = st.run_a(
        &extra,
        &["--part", "unshare_bypass", "--wrapped", &wrapped],
        |_| {},
    );
    std::thread::sleep(Duration::from_millis(300));
    let got = server.text();
    eprintln!("the server received: {got:?}");
    let mut failures = Vec::new();
    let name = "close_range_unshare_spool_bypass";
    match run.attack(name) {
        None => failures.push(format!("attack {name}: no line from A")),
        Some(l) if l.contains("SETUP-FAILED") => failures.push(l.clone()),
        Some(_) => {}
    }
    assert!(
        got.contains("<SUPERVISED-1>"),
        "control: the wrap rule did not apply to an ordinary write ({got:?})\n{}",
        run.dump
    );
    let raw = got.matches("BYPASS-RAW").count();
    let wrapped_count = got.matches("<BYPASS-RAW>").count();
    if raw > wrapped_count {
        failures.push(format!(
            "{} write(s) reached the server without the outbound rule: {got:?}",
            raw - wrapped_count
        ));
    }
    assert_none("close_range(CLOSE_RANGE_UNSHARE)", &failures, &run);
}

/// A unix sendmsg whose second cmsg_len wraps the offset to 0: EINVAL, and the
/// supervisor answers the next call (no panic, no unanswered notification).
#[test]
fn wrapping_cmsg_len_is_refused_and_the_supervisor_keeps_serving() {
    let mut st = Stage::start();
    // A hung supervisor shows as no line from A: 20 s is plenty for two sendmsg calls.
    let run = st.run_a_within(
        "",
        &["--part", "control_overflow"],
        Duration::from_secs(20),
        |_| {},
    );
    let failures = run.not_denied(&["control_overflow".to_string()]);
    assert_none("wrapping cmsg_len", &failures, &run);
}

/// SCM_CREDENTIALS through the agent cannot name uid 0, pid 1 (the root init stub) or
/// any pid not the sender's with another uid; SO_PEERCRED of A's own listener is A's.
#[test]
fn agent_credentials_stay_the_tenants() {
    let mut st = Stage::start();
    let run = st.run_a("", &["--part", "agent_creds"], |_| {});
    let mut names: Vec<String> = run
        .lines
        .iter()
        .filter_map(|l| l.strip_prefix("attack "))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    let mut failures = run.not_denied(&names);
    if !names.iter().any(|n| n == "scm_credentials_uid0") {
        failures.push("no scm_credentials_uid0 line".into());
    }
    assert_none("agent credentials", &failures, &run);
}

/// TCP buffers of A's own loopback connections count against its memory limit: with
/// memory = 64M, A cannot hold 256 MiB in socket queues while it lives (cgroup v1
/// charges TCP memory only when memory.kmem.tcp.limit_in_bytes is set).
#[test]
#[ignore = "open hole (issue 10): on cgroup v1 the kernel charges TCP buffers to memory.kmem.tcp but forces charges past its limit (about 93 KiB per connection: 186 MiB in 2000 connections at a 64 MiB limit); see README Known limits"]
fn tcp_socket_buffers_count_against_the_memory_limit() {
    let mut st = Stage::start();
    let cg = format!("/sys/fs/cgroup/memory/supervise/{A_NAME}");
    let mut seen = String::new();
    let run = st.run_a(
        "[limits]\nmemory = \"64M\"\n",
        &[
            "--part",
            "tcp_memory",
            "--limit-mib",
            "64",
            "--target-mib",
            "256",
        ],
        |line| {
            if line == "holding" {
                let read = |f: &str| {
                    std::fs::read_to_string(format!("{cg}/{f}"))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|e| format!("({e})"))
                };
                let tcp = std::fs::read_to_string("/proc/net/sockstat")
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("TCP:"))
                    .unwrap_or("")
                    .to_string();
                seen = format!(
                    "{cg}: usage {} max_usage {} limit {} kmem.tcp.usage {}; host {tcp}",
                    read("memory.usage_in_bytes"),
                    read("memory.max_usage_in_bytes"),
                    read("memory.limit_in_bytes"),
                    read("memory.kmem.tcp.usage_in_bytes"),
                );
            }
        },
    );
    eprintln!("while A held its connections: {seen}");
    let failures = run.not_denied(&["tcp_buffers_outside_memcg".to_string()]);
    let mut failures = failures;
    if !failures.is_empty() {
        failures.push(format!("while A held them: {seen}"));
    }
    assert_none("TCP buffers and the memory limit", &failures, &run);
}

/// inotify on a world-readable directory outside A's Landlock paths: Landlock keeps A
/// from listing it, and must not let a watch tell A the names created there.
#[test]
fn inotify_cannot_list_a_directory_outside_landlock() {
    let mut st = Stage::start();
    let dir = tempfile::Builder::new()
        .prefix("rt-outside-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = dir.path().to_path_buf();
    let d = path.to_str().unwrap().to_string();
    let run = st.run_a("", &["--part", "inotify_outside", "--dir", &d], |line| {
        if line == "watching" {
            std::fs::write(path.join("host-secret-file-name"), b"x").unwrap();
        }
    });
    let failures = run.not_denied(&["inotify_outside_landlock".to_string()]);
    assert_none("inotify outside Landlock", &failures, &run);
}

/// A tenant that stops its own agent makes only its own unix calls wait: the
/// supervisor answers its other calls at once, and killing the agent answers every
/// parked call (EIO).
#[test]
fn a_stopped_agent_stalls_nothing_else() {
    let mut st = Stage::start();
    let run = st.run_a("", &["--part", "agent_stopped"], |_| {});
    let failures = run.not_denied(&[
        "agent_stopped_stalls_supervisor".to_string(),
        "agent_killed_calls_answered".to_string(),
    ]);
    assert_none("stopped agent", &failures, &run);
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the supervisor spools for A (incomplete `lines` messages on tracked
/// connections) is memory A makes a root process hold outside A's cgroup: with
/// memory = 64M, A must not make its supervisor grow by more than that.
#[test]
fn supervisor_spool_is_bounded_by_the_tenants_memory_limit() {
    let mut st = Stage::start();
    let server = Recorder::start();
    let port = server.addr.port();
    let extra = format!(
        "[limits]\nmemory = \"64M\"\n\
         [[stream]]\nname = \"lines\"\nremote_port = {port}\nframer = \"lines\"\n\
         [[stream.rule]]\nkind = \"uppercase\"\ndirection = \"outbound\"\n"
    );
    let to = server.addr.to_string();
    let sup = Arc::new(Mutex::new((0u64, 0u64)));
    let seen = sup.clone();
    let state_path = st.state.path().to_path_buf();
    let run = st.run_a(
        &extra,
        &[
            "--part",
            "spool_memory",
            "--to",
            &to,
            "--conns",
            "200",
            "--kib-each",
            "1000",
        ],
        |line| {
            if line == "holding" {
                // A's supervisor: the `supervise` process whose command line names this
                // state dir and the spool_memory part.
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                        continue;
                    };
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    if cmd.contains(state_path.to_str().unwrap())
                        && cmd.contains("spool_memory")
                        && cmd.starts_with(supervise_bin().to_str().unwrap())
                    {
                        let mut seen = seen.lock().unwrap();
                        // The stub and the agent are forks of it: the supervisor is
                        // the lowest pid.
                        if seen.0 == 0 || (pid as u64) < seen.0 {
                            *seen = (pid as u64, rss_kib(pid));
                        }
                    }
                }
            }
        },
    );
    let (pid, rss) = *sup.lock().unwrap();
    eprintln!(
        "A's supervisor (pid {pid}) held {} MiB resident while A held its connections",
        rss >> 10
    );
    let mut failures = Vec::new();
    if pid == 0 {
        failures.push("could not find A's supervisor".into());
    }
    if rss > 64 << 10 {
        failures.push(format!(
            "A's supervisor held {} MiB resident for A's spooled messages, over A's 64 MiB limit",
            rss >> 10
        ));
    }
    assert_none("spool memory", &failures, &run);
}

/// Two state dirs each allocate from the same node ranges, so without a node-wide claim
/// two different tenants would get one uid, one MCS label and one address range. While
/// the first runs, the second is refused, naming who holds its identity; once the first
/// is gone, it runs.
#[test]
fn two_state_dirs_never_give_two_live_tenants_one_identity() {
    require_root();
    let profile = |name: &str| {
        write_profile(&format!(
            "[tenant]\nname = \"{name}\"\nconfine = true\n[filesystem]\nread_only = {}\n",
            read_only()
        ))
    };
    let (first_state, second_state) = (StateDir::new(), StateDir::new());
    let (first_profile, second_profile) = (profile("id-first"), profile("id-second"));
    let mut first = first_state.run(&first_profile, &["/bin/sleep", "30"]);
    tenant_pid(&first);
    let second = second_state.path().to_owned();
    let run_second = || {
        std::process::Command::new(supervise_bin())
            .arg("--state-dir")
            .arg(&second)
            .args(["run", "--profile"])
            .arg(&second_profile)
            .args(["--", "/bin/true"])
            .output()
            .expect("run supervise")
    };
    let refused = run_second();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is in use on this node by tenant \"id-first\"")
            && stderr.contains(&first_state.path().display().to_string()),
        "{stderr}"
    );
    first.kill(libc::SIGTERM);
    first.wait(Duration::from_secs(20));
    let ran = run_second();
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}
