//! Parked calls behave as the kernel's (issue 9, "Must show" item 4), on a TRACKED
//! socket (raw framer, no rules). Each case runs the `parked_calls` testbin twice with
//! the same arguments — bare (no supervisor: the kernel's own behaviour) and under
//! `supervise run` — records what the tenant printed and what its peer (this test)
//! saw, and asserts the two records are equal. The bare run must also be free of hangs
//! (a sanity check of the scenario). What the kernel does here (6.x, TCP on loopback):
//!
//! 1. `close`: thread A blocks in recv, thread B close()s the fd: A's recv stays in
//!    flight (it holds the file) and returns the data the peer sends afterwards; the
//!    peer sees no EOF while A's recv is in flight, and EOF once it returned.
//! 2. `shut_rd` / `shut_rdwr`: shutdown() from thread B wakes A's recv with 0 (EOF).
//! 3. `rcvtimeo`: SO_RCVTIMEO = 300 ms, recv with no data: -1 EAGAIN; the connection
//!    still works afterwards (the next recv, without timeout, gets the peer's data).
//! 4. `sndtimeo`: SO_SNDTIMEO = 300 ms, sends of 64 MiB to a peer that does not read:
//!    the first returns a partial count (what fitted in the buffers), the next -1
//!    EAGAIN (nothing fits any more: only the timeout can end it); the peer then
//!    receives exactly the bytes the calls reported (nothing lost or duplicated). A
//!    supervisor may cut a write into more partial counts than the kernel (a run of
//!    partial counts is one record line), but must end with EAGAIN at the timeout.
//! 5. `accept_timeo`: SO_RCVTIMEO = 300 ms on the listener, accept with no client:
//!    -1 EAGAIN; the listener still works afterwards.
//! 6. `signal`: SIGUSR1 (handler, no SA_RESTART) sent with pthread_kill to the thread
//!    blocked in recv: the handler runs, recv fails with EINTR, and the next recv gets
//!    the peer's data. (lifecycle.rs already covers a process-directed SIGTERM
//!    forwarded by the supervisor to a single-threaded tenant parked in recv; this is
//!    the thread-directed case in a multi-threaded tenant.)
//!
//! No timing assertions: every wait is a liveness bound (a hang is recorded as
//! `HANG …` in the record, which then differs from the kernel's, and the processes are
//! killed). Measured durations are printed. Run as root with `--test-threads=1` after
//! `cargo build --workspace --all-targets`.

mod common;
mod peer;

use common::*;
use peer::{stream_table, tenant_header};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Liveness bound for one awaited tenant line or peer read.
const WATCHDOG: Duration = Duration::from_secs(20);
/// How long the peer watches for an early EOF (a negative check: nothing may arrive).
const QUIET: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Bare,
    Supervised,
}

/// The testbin, bare or under `supervise run` (with a profile tracking its port),
/// stdout read line by line on a thread, stderr to a file. Dropping it SIGKILLs the
/// process (a supervised tenant dies with its supervisor).
struct Proc {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    taken: Vec<bool>,
    stderr: tempfile::TempPath,
    _profile: Option<tempfile::TempPath>,
    what: String,
}

impl std::fmt::Debug for Proc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proc").field("what", &self.what).finish()
    }
}

impl Proc {
    fn spawn(how: How, port: u16, mode: &str) -> Proc {
        require_root();
        let bin = testbin("parked_calls");
        let port_s = port.to_string();
        let targs = [
            "--port",
            port_s.as_str(),
            "--mode",
            mode,
            "--linger-secs",
            "60",
            "--timeout-secs",
            "120",
        ];
        let (mut cmd, profile) = match how {
            How::Bare => {
                let mut c = Command::new(&bin);
                c.args(targs);
                (c, None)
            }
            How::Supervised => {
                let prof = write_profile(&format!(
                    "{}{}",
                    tenant_header("parked", None),
                    stream_table(&format!("listen_port = {port}"), "raw", &[], &[])
                ));
                let mut c = Command::new(supervise_bin());
                c.arg("run")
                    .arg("--profile")
                    .arg(&*prof)
                    .arg("--")
                    .arg(&bin)
                    .args(targs);
                (c, Some(prof))
            }
        };
        let stderr = tempfile::Builder::new()
            .prefix("parked-stderr-")
            .tempfile()
            .expect("stderr capture file")
            .into_temp_path();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).expect("open stderr capture"));
        let what = format!("{how:?} {cmd:?}");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            taken: Vec::new(),
            stderr,
            _profile: profile,
            what,
        }
    }

    /// The first stdout line starting with `prefix` not returned before (lines seen
    /// while waiting stay available to later calls, so the order of two awaited lines
    /// does not matter), or Err describing the hang or the exit.
    fn wait_line(&mut self, prefix: &str) -> Result<String, String> {
        let deadline = Instant::now() + WATCHDOG;
        loop {
            if let Some(i) =
                (0..self.seen.len()).find(|&i| !self.taken[i] && self.seen[i].starts_with(prefix))
            {
                self.taken[i] = true;
                return Ok(self.seen[i].clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l);
                    self.taken.push(false);
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("HANG: no `{prefix}` line within {WATCHDOG:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.try_wait().ok().flatten();
                    return Err(format!("EXIT before a `{prefix}` line (status {st:?})"));
                }
            }
        }
    }

    /// Everything printed so far (drains the channel without waiting).
    fn transcript(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
            self.taken.push(false);
        }
        self.seen.clone()
    }

    fn dump(&mut self) -> String {
        let out = self.transcript().join("\n");
        let mut err = String::new();
        if let Ok(mut f) = File::open(&self.stderr) {
            let _ = f.read_to_string(&mut err);
        }
        format!(
            "--- {}\n--- stdout:\n{out}\n--- stderr (supervisor and tenant):\n{err}\n---",
            self.what
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run showed: `record` is compared between bare and supervised; `notes`
/// (durations, sizes) are only printed.
#[derive(Debug, Default)]
struct Run {
    record: Vec<String>,
    notes: Vec<String>,
    dump: String,
}

/// Connects the peer (with WATCHDOG read/write timeouts).
fn peer_connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(WATCHDOG))
                    .expect("set_read_timeout");
                s.set_write_timeout(Some(WATCHDOG))
                    .expect("set_write_timeout");
                return s;
            }
            Err(e) if Instant::now() > deadline => panic!("connect 127.0.0.1:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// What the peer reads within `window`: `nothing`, `EOF`, `reset`, `<n> bytes`
/// (then EOF / still open), or an error.
fn peer_read(s: &mut TcpStream, window: Duration) -> String {
    s.set_read_timeout(Some(window)).expect("set_read_timeout");
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break format!("still open after {window:?}");
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break "reset".to_string(),
            Err(e) => break format!("error {e}"),
        }
    };
    if total == 0 && end.starts_with("still open") {
        "nothing".to_string()
    } else if total == 0 {
        end
    } else {
        format!("{total} bytes, then {end}")
    }
}

fn peer_send(s: &mut TcpStream, data: &[u8]) -> String {
    match s.write_all(data) {
        Ok(()) => format!("sent {:?}", String::from_utf8_lossy(data)),
        Err(e) => format!("send of {:?} failed: {e}", String::from_utf8_lossy(data)),
    }
}

/// Splits ` elapsed_ms=N` off a tenant line into the notes.
fn strip_elapsed(line: &str, notes: &mut Vec<String>) -> String {
    match line.split_once(" elapsed_ms=") {
        Some((head, ms)) => {
            notes.push(format!("`{head}` after {ms} ms"));
            head.to_string()
        }
        None => line.to_string(),
    }
}

/// The tenant's stdout, normalised (`ready pid=N` → `ready`, elapsed times removed,
/// a partial send count replaced by `partial` and a run of such calls collapsed into
/// one line, the total sent removed), as `tenant: …` lines.
fn tenant_record(p: &mut Proc, notes: &mut Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut partial_sends = 0usize;
    for l in p.transcript() {
        let l = if l.starts_with("ready pid=") {
            "ready".to_string()
        } else if let Some(t) = l.strip_prefix("sent total=") {
            notes.push(format!("sent total={t} in {partial_sends} partial send(s)"));
            "sent total=<n>".to_string()
        } else {
            normalise_send(&strip_elapsed(&l, notes))
        };
        if l == PARTIAL {
            partial_sends += 1;
            if out.last().map(String::as_str) == Some(&format!("tenant: {PARTIAL}")) {
                continue;
            }
        }
        out.push(format!("tenant: {l}"));
    }
    out
}

/// A send of `SEND_LEN` bytes: `send n=<n>` with 0 < n < SEND_LEN.
const PARTIAL: &str = "send n=partial (one or more calls)";
const SEND_LEN: usize = 64 << 20;

fn normalise_send(l: &str) -> String {
    if let Some(n) = l
        .strip_prefix("send n=")
        .and_then(|n| n.parse::<usize>().ok())
    {
        return match n {
            0 => "send n=0".into(),
            n if n == SEND_LEN => "send n=all (64 MiB)".into(),
            _ => PARTIAL.into(),
        };
    }
    l.to_string()
}

/// Runs `scenario` against a fresh tenant; a `?` in the scenario (a hang or an early
/// exit) ends it, recorded as the last peer line.
fn run(
    how: How,
    mode: &str,
    scenario: impl FnOnce(&mut Proc, u16, &mut Vec<String>, &mut Vec<String>) -> Result<(), String>,
) -> Run {
    let port = free_port();
    let mut p = Proc::spawn(how, port, mode);
    let mut record = Vec::new();
    let mut notes = Vec::new();
    let t0 = Instant::now();
    if let Err(e) = p.wait_line("ready pid=") {
        record.push(format!("peer: {e}"));
    } else if let Err(e) = scenario(&mut p, port, &mut record, &mut notes) {
        record.push(format!("peer: {e}"));
    }
    notes.push(format!("scenario took {} ms", t0.elapsed().as_millis()));
    record.extend(tenant_record(&mut p, &mut notes));
    let dump = p.dump();
    Run {
        record,
        notes,
        dump,
    }
}

/// Runs the case bare and supervised and asserts equal records.
fn compare(
    mode: &str,
    scenario: impl Fn(&mut Proc, u16, &mut Vec<String>, &mut Vec<String>) -> Result<(), String>,
) {
    let bare = run(How::Bare, mode, &scenario);
    eprintln!(
        "[{mode}] bare record:\n  {}\n  notes: {:?}",
        bare.record.join("\n  "),
        bare.notes
    );
    assert!(
        !bare
            .record
            .iter()
            .any(|l| l.contains("HANG") || l.contains("EXIT before")),
        "[{mode}] the BARE run (no supervisor) hung or exited early — the scenario is \
         wrong, not the engine:\n{}\n{}",
        bare.record.join("\n"),
        bare.dump
    );
    let sup = run(How::Supervised, mode, &scenario);
    eprintln!(
        "[{mode}] supervised record:\n  {}\n  notes: {:?}",
        sup.record.join("\n  "),
        sup.notes
    );
    if sup.record != bare.record {
        let width = bare.record.len().max(sup.record.len());
        let mut diff = String::new();
        for i in 0..width {
            let b = bare.record.get(i).map(String::as_str).unwrap_or("");
            let s = sup.record.get(i).map(String::as_str).unwrap_or("");
            let mark = if b == s { "  " } else { "≠ " };
            diff.push_str(&format!("{mark}{b:<55} | {s}\n"));
        }
        panic!(
            "[{mode}] under supervise the tracked socket does not behave as the kernel's.\n\
             {:<57} | supervised\n{diff}notes bare: {:?}\nnotes supervised: {:?}\n{}",
            "  bare (kernel)", bare.notes, sup.notes, sup.dump
        );
    }
}

// ---- 1. close() from another thread while recv is parked ----------------------------

fn close_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    _notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    p.wait_line("close ")?;
    // The in-flight recv holds the socket: no EOF may reach the peer yet.
    rec.push(format!("peer after close(): {}", peer_read(&mut s, QUIET)));
    rec.push(format!("peer: {}", peer_send(&mut s, b"hello")));
    p.wait_line("recv ")?;
    // The recv returned: the last reference is gone, the peer sees EOF (the tenant
    // process lingers, so it is not the exit that closes the socket).
    rec.push(format!(
        "peer after recv returned: {}",
        peer_read(&mut s, WATCHDOG)
    ));
    p.wait_line("done")?;
    Ok(())
}

#[test]
fn close_from_another_thread_parked_recv_gets_later_data() {
    compare("close", close_scenario);
}

// ---- 2. shutdown() from another thread while recv is parked -------------------------

fn shutdown_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    _notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    p.wait_line("recv ")?;
    p.wait_line("shutdown ")?;
    p.wait_line("done")?;
    rec.push(format!("peer after done: {}", peer_read(&mut s, WATCHDOG)));
    Ok(())
}

#[test]
fn shutdown_rd_from_another_thread_wakes_parked_recv() {
    compare("shut_rd", shutdown_scenario);
}

#[test]
fn shutdown_rdwr_from_another_thread_wakes_parked_recv() {
    compare("shut_rdwr", shutdown_scenario);
}

// ---- 3. SO_RCVTIMEO on a tracked connection -----------------------------------------

fn rcvtimeo_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    _notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    p.wait_line("recv ")?;
    rec.push(format!("peer: {}", peer_send(&mut s, b"after")));
    p.wait_line("recv2 ")?;
    p.wait_line("done")?;
    rec.push(format!("peer after done: {}", peer_read(&mut s, WATCHDOG)));
    Ok(())
}

#[test]
fn so_rcvtimeo_on_tracked_connection_gives_eagain() {
    compare("rcvtimeo", rcvtimeo_scenario);
}

// ---- 4. SO_SNDTIMEO on a tracked connection -----------------------------------------

fn sndtimeo_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    // The peer does not read until the tenant's sends are over.
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    let line = p.wait_line("sent total=")?;
    let reported: usize = line["sent total=".len()..]
        .trim()
        .parse()
        .map_err(|e| format!("bad line {line:?}: {e}"))?;
    p.wait_line("done")?;
    // Now read everything: exactly the reported total must arrive, then EOF.
    s.set_read_timeout(Some(WATCHDOG))
        .expect("set_read_timeout");
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "EOF".to_string(),
            Ok(n) => {
                if buf[..n].iter().any(|&b| b != b'x') {
                    break "bytes other than the tenant's 'x'".to_string();
                }
                got += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break format!("error {e}"),
        }
    };
    notes.push(format!(
        "tenant sent {reported} in total, peer received {got}"
    ));
    rec.push(format!(
        "peer received {} the total the tenant's sends reported, then {end}",
        if reported == got { "exactly" } else { "NOT" }
    ));
    Ok(())
}

#[test]
fn so_sndtimeo_on_tracked_connection_partial_then_eagain() {
    compare("sndtimeo", sndtimeo_scenario);
}

// ---- 5. SO_RCVTIMEO on a tracked listener -------------------------------------------

fn accept_timeo_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    _notes: &mut Vec<String>,
) -> Result<(), String> {
    p.wait_line("accept ")?;
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    p.wait_line("done")?;
    rec.push(format!("peer after done: {}", peer_read(&mut s, WATCHDOG)));
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

#[test]
fn so_rcvtimeo_on_tracked_listener_accept_gives_eagain() {
    compare("accept_timeo", accept_timeo_scenario);
}

// ---- 6. a thread-directed signal to a thread parked in recv ---------------------------

fn signal_scenario(
    p: &mut Proc,
    port: u16,
    rec: &mut Vec<String>,
    _notes: &mut Vec<String>,
) -> Result<(), String> {
    let mut s = peer_connect(port);
    p.wait_line("accepted")?;
    p.wait_line("recv ")?;
    rec.push(format!("peer: {}", peer_send(&mut s, b"after")));
    p.wait_line("recv2 ")?;
    p.wait_line("done")?;
    rec.push(format!("peer after done: {}", peer_read(&mut s, WATCHDOG)));
    Ok(())
}

#[test]
fn sigusr1_to_thread_parked_in_recv_gives_eintr() {
    compare("signal", signal_scenario);
}
