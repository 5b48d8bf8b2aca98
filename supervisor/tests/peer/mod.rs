//! Helpers for the test side of a connection (the tenant's peer) and for watching
//! tenant processes, shared by semantics.rs, lifecycle.rs and escape.rs.
//!
//! Every wait has a generous deadline that only guards against hangs: no test
//! asserts on timing.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Hang guard for a single network read or for waiting on a tenant's output line.
pub const GUARD: Duration = Duration::from_secs(20);

/// A `[tenant]`-only profile header (optionally with `user = ...`).
pub fn tenant_header(name: &str, user: Option<&str>) -> String {
    let mut s = format!("[tenant]\nname = \"{name}\"\n");
    if let Some(u) = user {
        s.push_str(&format!("user = \"{u}\"\n"));
    }
    s
}

/// One `[[stream]]` table. `selector` is e.g. `listen_port = 7000`; `extra` holds
/// further `key = value` lines (max_message, on_error, ...); `rules` is a list of
/// (kind, direction, prefix, suffix) with prefix/suffix only emitted for wrap.
pub fn stream_table(
    selector: &str,
    framer: &str,
    extra: &[&str],
    rules: &[(&str, &str, &str, &str)],
) -> String {
    let mut s = format!("\n[[stream]]\nname = \"s\"\n{selector}\nframer = \"{framer}\"\n");
    for e in extra {
        s.push_str(e);
        s.push('\n');
    }
    for (kind, dir, prefix, suffix) in rules {
        s.push_str(&format!(
            "\n[[stream.rule]]\nkind = \"{kind}\"\ndirection = \"{dir}\"\n"
        ));
        if *kind == "wrap" {
            s.push_str(&format!(
                "prefix = {}\nsuffix = {}\n",
                toml_str(prefix),
                toml_str(suffix)
            ));
        }
    }
    s
}

/// A TOML basic string for `s` (escapes backslash, quote and control characters).
pub fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Lower-case hex, as the testbins print it.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The pid in a `ready pid=<pid>` (or `child <i> pid=<pid>`) line.
pub fn pid_of(line: &str) -> i32 {
    line.rsplit("pid=")
        .next()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid=<n> in line {line:?}"))
}

/// Connects to 127.0.0.1:`port` (retrying while refused, up to GUARD) and sets a
/// read/write timeout of GUARD on the stream as a hang guard.
pub fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + GUARD;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(GUARD)).expect("set_read_timeout");
                s.set_write_timeout(Some(GUARD)).expect("set_write_timeout");
                return s;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("connect 127.0.0.1:{port}: {e}"),
        }
    }
}

/// How a read-to-end finished.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum End {
    /// read returned 0.
    Eof,
    /// ECONNRESET.
    Reset,
}

/// Reads until EOF or connection reset; panics (with what was read) on a timeout or
/// any other error.
pub fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, End) {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, End::Eof),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (out, End::Reset),
            Err(e) => panic!(
                "peer read failed ({e}) after receiving {} bytes: {:?}",
                out.len(),
                String::from_utf8_lossy(&out)
            ),
        }
    }
}

/// Reads exactly `n` bytes; Err describes what was read on EOF, error or timeout.
pub fn try_read_exact(s: &mut TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match s.read(&mut out[got..]) {
            Ok(0) => {
                return Err(format!(
                    "peer got EOF after {got} of {n} bytes: {:?}",
                    String::from_utf8_lossy(&out[..got])
                ))
            }
            Ok(k) => got += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "peer read failed ({e}) after {got} of {n} bytes: {:?}",
                    String::from_utf8_lossy(&out[..got])
                ))
            }
        }
    }
    Ok(out)
}

/// Reads exactly `n` bytes; panics with what was read on EOF, error or timeout.
pub fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    try_read_exact(s, n).unwrap_or_else(|e| panic!("{e}"))
}

/// write_all with a clear panic message.
pub fn send(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data)
        .unwrap_or_else(|e| panic!("peer write of {:?}: {e}", String::from_utf8_lossy(data)));
}

/// shutdown(SHUT_WR) on the peer side.
pub fn shut_wr(s: &TcpStream) {
    s.shutdown(Shutdown::Write).expect("peer shutdown(SHUT_WR)");
}

/// Accepts one connection on `l` within GUARD (hang guard), with GUARD timeouts set.
pub fn accept(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).expect("listener set_nonblocking");
    let deadline = Instant::now() + GUARD;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)
                    .expect("stream set_nonblocking(false)");
                s.set_read_timeout(Some(GUARD)).expect("set_read_timeout");
                s.set_write_timeout(Some(GUARD)).expect("set_write_timeout");
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("test-side accept: {e}"),
        }
    }
}

/// The syscall number a (host) task is currently in, from /proc/<pid>/syscall:
/// None if the file cannot be read or the task is running in user space.
pub fn current_syscall(pid: i32) -> Option<i64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let first = s.split_whitespace().next()?;
    first.parse().ok()
}

/// Waits until task `pid` sits in syscall `nr` (e.g. libc::SYS_recvfrom): the tenant
/// is blocked in that call (for a trapped call, waiting for the supervisor's answer).
/// Panics after GUARD with what /proc showed.
pub fn wait_in_syscall(pid: i32, nr: i64) {
    let deadline = Instant::now() + GUARD;
    loop {
        if current_syscall(pid) == Some(nr) {
            // Seen twice in a row, so it is not just passing through.
            std::thread::sleep(Duration::from_millis(50));
            if current_syscall(pid) == Some(nr) {
                return;
            }
        }
        if Instant::now() > deadline {
            let sc = std::fs::read_to_string(format!("/proc/{pid}/syscall"));
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"));
            panic!(
                "task {pid} never blocked in syscall {nr} within {GUARD:?}: \
                 /proc/{pid}/syscall = {sc:?}, wchan = {wchan:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until some thread of process `pid` sits in syscall `nr`; returns its tid.
/// Panics after GUARD with every thread's /proc/<pid>/task/<tid>/syscall.
pub fn wait_any_thread_in_syscall(pid: i32, nr: i64) -> i32 {
    let deadline = Instant::now() + GUARD;
    let tids = || -> Vec<i32> {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let in_call = |tid: i32| -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
            == Some(nr)
    };
    loop {
        for tid in tids() {
            if in_call(tid) {
                std::thread::sleep(Duration::from_millis(50));
                if in_call(tid) {
                    return tid;
                }
            }
        }
        if Instant::now() > deadline {
            let all: Vec<String> = tids()
                .into_iter()
                .map(|t| {
                    let sc = std::fs::read_to_string(format!("/proc/{pid}/task/{t}/syscall"));
                    format!("{t}: {sc:?}")
                })
                .collect();
            panic!("no thread of {pid} blocked in syscall {nr} within {GUARD:?}: {all:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True while /proc/<pid> exists and the task is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => false,
        Ok(st) => !st.lines().any(|l| {
            l.starts_with("State:") && (l.contains("Z (zombie)") || l.contains("X (dead)"))
        }),
    }
}

/// SIGKILLs a host pid (a tenant process, not our child).
pub fn kill_pid(pid: i32, sig: i32) {
    // SAFETY: kill(2) takes only integers.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}
