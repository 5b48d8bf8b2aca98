//! Who holds a tracked socket: the engine follows forks, dup/F_DUPFD and SCM_RIGHTS
//! without scanning /proc, releases a socket once no tenant process holds it, and shuts
//! a released socket down first. These tests try to break that on a TRACKED connection
//! and run each scenario bare too (the tenant without the supervisor), for the kernel's
//! own behaviour.
//!
//! The stream uses the `lines` framer with two rules that make tracking visible in each
//! direction: `uppercase` inbound (the tenant reads `PING\n` when the peer sent
//! `ping\n`) and `wrap` outbound with `[`/`]` (the peer gets `[PING\n]` back when the
//! tenant echoes). Bytes that pass unchanged on a connection that should be tracked are
//! a breach; a connection that dies (EOF, error) where the tenant still held it is a
//! lost connection. The tenant is `testbins/src/bin/holder_games.rs`; its echo worker
//! closes the connection after a `bye` line and then lingers (alive, without the
//! descriptor) until SIGUSR1, so a peer EOF seen at all proves the release happened on
//! the close, not on the process's exit.
//!
//! Time limits are hang guards only; nothing asserts on timing. Run as root with
//! `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod peer;

use common::*;
use peer::*;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Hang guard for waiting on a line of tenant output or the tenant's exit.
const LINE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Under {
    /// Under `supervise run` with the transforming profile.
    Tracked,
    /// The testbin run directly: the kernel's own behaviour.
    Bare,
}

/// The tenant run directly (no supervisor), in its own process group, which is
/// SIGKILLed when this is dropped (forked children included).
#[derive(Debug)]
struct BareProc {
    child: Child,
    lines: Receiver<String>,
    so_far: Vec<String>,
    stderr_path: tempfile::TempPath,
    status: Option<ExitStatus>,
}

impl BareProc {
    fn spawn(bin: &std::path::Path, args: &[&str]) -> BareProc {
        let stderr_path = tempfile::Builder::new()
            .prefix("holders-bare-stderr-")
            .tempfile()
            .expect("stderr capture file")
            .into_temp_path();
        let stderr = File::create(&stderr_path).expect("open stderr capture file");
        let mut child = Command::new(bin)
            .args(args)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        BareProc {
            child,
            lines,
            so_far: Vec::new(),
            stderr_path,
            status: None,
        }
    }

    fn stdout_lines(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.so_far.push(l);
        }
        &self.so_far
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn dump(&mut self) -> String {
        let out = self.stdout_lines().join("\n");
        let mut err = String::new();
        if let Ok(mut f) = File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut err);
        }
        format!(
            "--- bare run, status {:?}\n--- stdout so far:\n{out}\n--- stderr so far:\n{err}\n---",
            self.try_status()
        )
    }
}

impl Drop for BareProc {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) takes only integers; the group is the one we created for
        // this child (its id is the child's pid, which we have not reaped yet or just
        // reaped; forked children keep the group alive).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
enum Proc {
    Sup(Tenant),
    Bare(BareProc),
}

/// One run of `holder_games`, supervised or bare.
#[derive(Debug)]
struct Run {
    under: Under,
    what: String,
    port: u16,
    proc_: Proc,
    _profile: Option<tempfile::TempPath>,
}

fn profile(port: u16) -> tempfile::TempPath {
    write_profile(&format!(
        "{}{}",
        tenant_header("holders", None),
        stream_table(
            &format!("listen_port = {port}"),
            "lines",
            &[],
            &[
                ("uppercase", "inbound", "", ""),
                ("wrap", "outbound", "[", "]")
            ],
        )
    ))
}

impl Run {
    /// Starts `holder_games --port <free port> ARGS`.
    fn start(under: Under, args: &[&str]) -> Run {
        require_root();
        let port = free_port();
        let port_s = port.to_string();
        let mut full = vec!["--port", &port_s, "--timeout-secs", "90"];
        full.extend_from_slice(args);
        let bin = testbin("holder_games");
        let what = format!("{under:?} holder_games {}", args.join(" "));
        let (proc_, prof) = match under {
            Under::Tracked => {
                let prof = profile(port);
                (Proc::Sup(Tenant::spawn(&prof, &bin, &full)), Some(prof))
            }
            Under::Bare => (Proc::Bare(BareProc::spawn(&bin, &full)), None),
        };
        let mut run = Run {
            under,
            what,
            port,
            proc_,
            _profile: prof,
        };
        run.line("ready pid=");
        run
    }

    fn lines(&mut self) -> Vec<String> {
        match &mut self.proc_ {
            Proc::Sup(t) => t.stdout_lines().to_vec(),
            Proc::Bare(b) => b.stdout_lines().to_vec(),
        }
    }

    fn dump(&mut self) -> String {
        let d = match &mut self.proc_ {
            Proc::Sup(t) => t.dump(),
            Proc::Bare(b) => b.dump(),
        };
        format!("=== {}\n{d}", self.what)
    }

    fn fail(&mut self, msg: &str) -> ! {
        let d = self.dump();
        panic!("{}: {msg}\n{d}", self.what)
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        match &mut self.proc_ {
            Proc::Sup(t) => {
                if t.is_running() {
                    None
                } else {
                    Some(t.wait(Duration::from_secs(1)))
                }
            }
            Proc::Bare(b) => b.try_status(),
        }
    }

    /// The first output line (so far or to come) matching `pred`.
    fn line_where(&mut self, desc: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LINE;
        loop {
            if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                return l;
            }
            if self.exited().is_some() {
                // Pick up what the reader thread may still have queued.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                    return l;
                }
                self.fail(&format!("the tenant exited without printing {desc}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("no line {desc} within {LINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn line(&mut self, prefix: &str) -> String {
        self.line_where(&format!("starting with {prefix:?}"), |l| {
            l.starts_with(prefix)
        })
    }

    fn line_eq(&mut self, want: &str) -> String {
        self.line_where(&format!("{want:?}"), |l| l == want)
    }

    fn has_line(&mut self, prefix: &str) -> bool {
        self.lines().iter().any(|l| l.starts_with(prefix))
    }

    /// Waits for the tenant to exit and asserts it exited 0.
    fn finish(&mut self) {
        let deadline = Instant::now() + LINE;
        let st = loop {
            if let Some(st) = self.exited() {
                break st;
            }
            if Instant::now() > deadline {
                self.fail(&format!("did not exit within {LINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if st.code() != Some(0) {
            self.fail(&format!("expected exit 0, got {st:?}"));
        }
    }

    /// What the tenant reads when the peer sends `msg`.
    fn seen(&self, msg: &[u8]) -> Vec<u8> {
        match self.under {
            Under::Tracked => msg.to_ascii_uppercase(),
            Under::Bare => msg.to_vec(),
        }
    }

    /// What the peer gets back when the tenant echoes what it read of `msg`.
    fn reply(&self, msg: &[u8]) -> Vec<u8> {
        match self.under {
            Under::Tracked => [b"[".as_slice(), &msg.to_ascii_uppercase(), b"]"].concat(),
            Under::Bare => msg.to_vec(),
        }
    }

    /// Connects to the tenant's port (retrying while refused, up to the hang guard).
    fn connect(&mut self) -> TcpStream {
        let deadline = Instant::now() + GUARD;
        loop {
            match TcpStream::connect(("127.0.0.1", self.port)) {
                Ok(s) => {
                    s.set_read_timeout(Some(GUARD)).expect("set_read_timeout");
                    s.set_write_timeout(Some(GUARD)).expect("set_write_timeout");
                    return s;
                }
                Err(e) if Instant::now() > deadline => {
                    let port = self.port;
                    self.fail(&format!(
                        "cannot connect to the tenant's listener on 127.0.0.1:{port}: {e}"
                    ))
                }
                Err(e) => {
                    if let Some(st) = self.exited() {
                        let port = self.port;
                        self.fail(&format!(
                            "cannot connect to 127.0.0.1:{port} ({e}) and the tenant has \
                             exited ({st:?})"
                        ))
                    }
                    std::thread::sleep(Duration::from_millis(50))
                }
            }
        }
    }
}

/// How the peer's question was answered.
#[derive(Debug)]
enum Answer {
    /// Exactly the expected reply.
    Exact,
    /// The send itself failed.
    SendFailed(String),
    /// EOF after these bytes.
    Eof(Vec<u8>),
    /// Connection reset after these bytes.
    Reset(Vec<u8>),
    /// Bytes that are not (a prefix of) the expected reply.
    Other(Vec<u8>),
    /// Another read error (a hang-guard timeout included) after these bytes.
    Error(String, Vec<u8>),
}

/// Sends `msg` and reads until the reply is complete or cannot become `want`.
fn ask(s: &mut TcpStream, msg: &[u8], want: &[u8]) -> Answer {
    if let Err(e) = s.write_all(msg) {
        return Answer::SendFailed(e.to_string());
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want.len() && want.starts_with(&got) {
        match s.read(&mut buf[..want.len() - got.len()]) {
            Ok(0) => return Answer::Eof(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Answer::Reset(got),
            Err(e) => return Answer::Error(e.to_string(), got),
        }
    }
    if got == want {
        Answer::Exact
    } else {
        Answer::Other(got)
    }
}

/// Reads to EOF or reset (hang guard: the stream's read timeout).
fn rest(s: &mut TcpStream) -> Result<(Vec<u8>, End), String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((out, End::Eof)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok((out, End::Reset)),
            Err(e) => {
                return Err(format!(
                    "{e} after {:?}",
                    String::from_utf8_lossy(&out).into_owned()
                ))
            }
        }
    }
}

fn show(b: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(b))
}

/// Explains an answer that is not the expected reply, naming a breach when bytes came
/// back untransformed on a connection that should be tracked.
fn explain(run: &Run, msg: &[u8], answer: &Answer, when: &str) -> String {
    let want = run.reply(msg);
    let what = match answer {
        Answer::Exact => return format!("{when}: got the expected reply"),
        Answer::SendFailed(e) => format!("the peer's send failed ({e}): connection dead"),
        Answer::Eof(got) => format!("peer saw EOF after {}: connection dead", show(got)),
        Answer::Reset(got) => format!("peer saw a reset after {}: connection dead", show(got)),
        Answer::Error(e, got) => format!("peer read failed ({e}) after {}", show(got)),
        Answer::Other(got) if run.under == Under::Tracked && msg.starts_with(got) => format!(
            "BREACH: the peer got {} back, the bytes passed UNTRANSFORMED (untracked)",
            show(got)
        ),
        Answer::Other(got) => format!("peer got unexpected bytes {}", show(got)),
    };
    format!(
        "{when}: sent {}, expected {}: {what}",
        show(msg),
        show(&want)
    )
}

/// The tenant's `<tag>` worker is serving the connection: a ping is answered
/// (transformed both ways when tracked, so the connection is tracked and not at EOF),
/// then `bye` is answered and the worker closes: the peer sees EOF right after the last
/// reply, while the worker process is still alive (lingering without the descriptor).
/// Returns after releasing the lingering worker.
fn serve_and_close(run: &mut Run, s: &mut TcpStream, tag: &str, when: &str) {
    let ping = b"ping\n";
    let a = ask(s, ping, &run.reply(ping));
    if !matches!(a, Answer::Exact) {
        let m = explain(run, ping, &a, when);
        run.fail(&m);
    }
    let read = format!("{tag} read hex={}", hex(&run.seen(ping)));
    run.line_where(&format!("{read:?}"), |l| l == read);
    let bye = b"bye\n";
    let a = ask(s, bye, &run.reply(bye));
    if !matches!(a, Answer::Exact) {
        let m = explain(run, bye, &a, &format!("{when}, the last exchange"));
        run.fail(&m);
    }
    let end = rest(s);
    let pid = pid_of(&run.line(&format!("{tag} lingering pid=")));
    match end {
        Ok((extra, End::Eof)) if extra.is_empty() => {}
        Ok((extra, end)) => run.fail(&format!(
            "{when}: after the last reply the peer must see EOF and nothing else once \
             {tag} closed, got {} then {end:?}",
            show(&extra)
        )),
        Err(e) => run.fail(&format!(
            "{when}: no EOF after {tag} closed its descriptor (its process is alive \
             and holds no descriptor): {e}"
        )),
    }
    if !pid_alive(pid) {
        run.fail(&format!(
            "{tag} (pid {pid}) exited before it was told to: the EOF proves nothing"
        ));
    }
    kill_pid(pid, libc::SIGUSR1);
}

// ---- 1. fork: the parent closes at once, the child uses the connection later -------

fn fork_child_keeps_it(under: Under) {
    let mut run = Run::start(under, &["--mode", "fork", "--delay-ms", "200"]);
    let mut s = run.connect();
    run.line_eq("accepted");
    run.line_eq("parent closed");
    serve_and_close(
        &mut run,
        &mut s,
        "conn 0",
        "the child's first exchange, after the parent closed its copy",
    );
    run.line_eq("child status=0");
    run.line_eq("done");
    run.finish();
}

#[test]
fn fork_parent_closes_child_serves_tracked() {
    fork_child_keeps_it(Under::Tracked);
}
#[test]
fn fork_parent_closes_child_serves_bare() {
    fork_child_keeps_it(Under::Bare);
}

// ---- 2. fork, then the parent exits before the child uses the connection ----------

fn orphan_keeps_it(under: Under, how: &str) {
    let mut run = Run::start(under, &["--mode", "orphan", "--how", how]);
    let mut s = run.connect();
    run.line_eq("accepted");
    run.line_eq("server forking");
    if how == "close" {
        run.line_eq("server exiting");
    }
    run.line("worker pid=");
    serve_and_close(
        &mut run,
        &mut s,
        "conn 0",
        &format!("the reparented child's first exchange (server exit: {how})"),
    );
    run.line_eq("done");
    run.finish();
}

#[test]
fn orphan_server_closes_then_exits_tracked() {
    orphan_keeps_it(Under::Tracked, "close");
}
#[test]
fn orphan_server_closes_then_exits_bare() {
    orphan_keeps_it(Under::Bare, "close");
}
#[test]
fn orphan_server_exits_right_after_fork_tracked() {
    orphan_keeps_it(Under::Tracked, "immediate");
}
#[test]
fn orphan_server_exits_right_after_fork_bare() {
    orphan_keeps_it(Under::Bare, "immediate");
}

// ---- 3. dup / F_DUPFD / F_DUPFD_CLOEXEC (and dup2 / dup3 to a new number) ---------

fn dup_keeps_it(under: Under, how: &str) {
    let mut run = Run::start(under, &["--mode", "dup", "--how", how]);
    let mut s = run.connect();
    run.line_eq("accepted");
    let switched = run.line("switched fd=");
    let fd: i32 = switched["switched fd=".len()..]
        .parse()
        .expect("switched fd=<n>");
    let ok = match how {
        "dupfd" | "dupfd-cloexec" => fd >= 100,
        "dup2" | "dup3" => fd == 77,
        _ => fd >= 0,
    };
    if !ok {
        run.fail(&format!("{how} gave fd {fd}"));
    }
    serve_and_close(
        &mut run,
        &mut s,
        "conn 0",
        &format!("first exchange on the {how} copy after the original was closed"),
    );
    run.finish();
}

#[test]
fn dup_then_close_original_tracked() {
    dup_keeps_it(Under::Tracked, "dup");
}
#[test]
fn dup_then_close_original_bare() {
    dup_keeps_it(Under::Bare, "dup");
}
#[test]
fn fcntl_dupfd_then_close_original_tracked() {
    dup_keeps_it(Under::Tracked, "dupfd");
}
#[test]
fn fcntl_dupfd_then_close_original_bare() {
    dup_keeps_it(Under::Bare, "dupfd");
}
#[test]
fn fcntl_dupfd_cloexec_then_close_original_tracked() {
    dup_keeps_it(Under::Tracked, "dupfd-cloexec");
}
#[test]
fn fcntl_dupfd_cloexec_then_close_original_bare() {
    dup_keeps_it(Under::Bare, "dupfd-cloexec");
}
#[test]
fn dup2_to_new_number_then_close_original_tracked() {
    dup_keeps_it(Under::Tracked, "dup2");
}
#[test]
fn dup2_to_new_number_then_close_original_bare() {
    dup_keeps_it(Under::Bare, "dup2");
}
#[test]
fn dup3_to_new_number_then_close_original_tracked() {
    dup_keeps_it(Under::Tracked, "dup3");
}
#[test]
fn dup3_to_new_number_then_close_original_bare() {
    dup_keeps_it(Under::Bare, "dup3");
}

// ---- 4. SCM_RIGHTS to another process, the sender closes its copy -----------------

/// What became of a connection passed with SCM_RIGHTS.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// The receiver serves it, EOF when the receiver closes; supervised, the
    /// transformation applies both ways (still tracked).
    Served,
    /// Shut down: the receiver got EOF or an error, the peer EOF or a reset, and no
    /// byte passed.
    Dead,
}

fn passed_fd(under: Under, recv: &str) -> Fate {
    let mut run = Run::start(under, &["--mode", "pass", "--recv", recv]);
    let receiver = pid_of(&run.line("receiver pid="));
    match recv {
        "early" => wait_in_syscall(receiver, libc::SYS_recvmsg),
        "mmsg" => wait_in_syscall(receiver, libc::SYS_recvmmsg),
        _ => {}
    }
    let mut s = run.connect();
    run.line_eq("accepted");
    run.line_eq("sent and closed");
    if recv == "late" {
        kill_pid(receiver, libc::SIGUSR1);
    }
    run.line("received fd=");
    let when = format!("first exchange on the descriptor received with SCM_RIGHTS ({recv})");
    let ping = b"ping\n";
    let raw_read = format!("recv read hex={}", hex(ping));
    let answer = ask(&mut s, ping, &run.reply(ping));
    let fate = match &answer {
        Answer::Exact => Fate::Served,
        // Dead only if not a single byte came back before the end.
        Answer::SendFailed(_) => Fate::Dead,
        Answer::Eof(got) | Answer::Reset(got) if got.is_empty() => Fate::Dead,
        _ => {
            let m = explain(&run, ping, &answer, &when);
            run.fail(&m)
        }
    };
    if under == Under::Tracked && run.has_line(&raw_read) {
        run.fail(&format!(
            "BREACH: the receiver read the peer's bytes untransformed ({raw_read})"
        ));
    }
    match fate {
        Fate::Served => serve_and_close(&mut run, &mut s, "recv", &when),
        Fate::Dead => {
            if under == Under::Bare {
                let m = explain(&run, ping, &answer, &when);
                run.fail(&format!("the kernel itself: {m}"));
            }
            let ended = run.line_where("recv eof / recv read err= / recv write err=", |l| {
                l == "recv eof"
                    || l.starts_with("recv read err=")
                    || l.starts_with("recv write err=")
            });
            if run.has_line("recv read hex=") {
                run.fail(&format!(
                    "the connection is dead for the peer ({answer:?}) but the receiver \
                     read bytes before it ended ({ended})"
                ));
            }
            match rest(&mut s) {
                Ok((extra, _)) if extra.is_empty() => {}
                Ok((extra, end)) => run.fail(&format!(
                    "dead connection: the peer got {} then {end:?}",
                    show(&extra)
                )),
                Err(e) => run.fail(&format!("dead connection: peer read: {e}")),
            }
            let pid = pid_of(&run.line("recv lingering pid="));
            kill_pid(pid, libc::SIGUSR1);
        }
    }
    run.line_eq("receiver status=0");
    run.line_eq("done");
    run.finish();
    let outcome = match (&fate, under) {
        (Fate::Served, Under::Tracked) => "still TRACKED (transformed both ways)",
        (Fate::Served, Under::Bare) => "served by the receiver (kernel behaviour)",
        (Fate::Dead, _) => "DEAD (shut down; no byte passed)",
    };
    eprintln!("{}: the passed connection was {outcome}", run.what);
    fate
}

#[test]
fn scm_rights_receiver_waiting_tracked_or_dead() {
    passed_fd(Under::Tracked, "early");
}
#[test]
fn scm_rights_receiver_waiting_bare() {
    assert_eq!(passed_fd(Under::Bare, "early"), Fate::Served);
}
#[test]
fn scm_rights_receiver_late_tracked_or_dead() {
    passed_fd(Under::Tracked, "late");
}
#[test]
fn scm_rights_receiver_late_bare() {
    assert_eq!(passed_fd(Under::Bare, "late"), Fate::Served);
}
#[test]
fn scm_rights_recvmmsg_second_slot_tracked_or_dead() {
    passed_fd(Under::Tracked, "mmsg");
}
#[test]
fn scm_rights_recvmmsg_second_slot_bare() {
    assert_eq!(passed_fd(Under::Bare, "mmsg"), Fate::Served);
}

// ---- 5. the child dup2s another fd over the tracked number; the parent keeps it ---

fn child_dup2_over(under: Under, how: &str) {
    let mut run = Run::start(under, &["--mode", "dup2-child", "--how", how]);
    let mut s = run.connect();
    run.line_eq("accepted");
    run.line("child replaced fd=");
    run.line_eq("child status=0");
    serve_and_close(
        &mut run,
        &mut s,
        "conn 0",
        &format!("the parent's exchange after its child {how}'d a pipe over the number"),
    );
    run.finish();
}

#[test]
fn child_dup2_over_tracked_number_parent_keeps_it_tracked() {
    child_dup2_over(Under::Tracked, "dup2");
}
#[test]
fn child_dup2_over_tracked_number_parent_keeps_it_bare() {
    child_dup2_over(Under::Bare, "dup2");
}
#[test]
fn child_dup3_over_tracked_number_parent_keeps_it_tracked() {
    child_dup2_over(Under::Tracked, "dup3");
}
#[test]
fn child_dup3_over_tracked_number_parent_keeps_it_bare() {
    child_dup2_over(Under::Bare, "dup3");
}

// ---- 5b. pre-forked acceptors: the listening process never accepts itself ---------

fn prefork(under: Under) {
    let mut run = Run::start(under, &["--mode", "prefork", "--conns", "2"]);
    for k in 0..2 {
        let mut s = run.connect();
        run.line_eq(&format!("accepted {k}"));
        serve_and_close(
            &mut run,
            &mut s,
            &format!("conn {k}"),
            &format!(
                "connection {k}, accepted by forked worker {k} on the listener its \
                 parent made (and still holds)"
            ),
        );
        run.line_eq(&format!("worker {k} status=0"));
    }
    run.line_eq("done");
    run.finish();
}

#[test]
fn prefork_second_worker_accepts_on_parents_listener_tracked() {
    prefork(Under::Tracked);
}
#[test]
fn prefork_second_worker_accepts_on_parents_listener_bare() {
    prefork(Under::Bare);
}

// ---- 6. many forks: a child per connection, the parent closes each -----------------

/// More children than one page of `/proc/<pid>/task/<tid>/children` lists (about 680
/// pids of 5 digits): the newest child, at the end of the list, must still be found.
const MANY: usize = 800;

fn many_forks(under: Under) {
    let conns = MANY.to_string();
    let mut run = Run::start(under, &["--mode", "many", "--conns", &conns]);
    let mut peers = Vec::new();
    for k in 0..MANY {
        peers.push(run.connect());
        run.line_eq(&format!("accepted {k}"));
    }
    // Every child answers while every parent copy is closed (or being closed).
    let ping = b"ping\n";
    for (k, s) in peers.iter_mut().enumerate() {
        let a = ask(s, ping, &run.reply(ping));
        if !matches!(a, Answer::Exact) {
            let m = explain(&run, ping, &a, &format!("connection {k}, first exchange"));
            run.fail(&m);
        }
    }
    // Then each closes in turn: its peer sees EOF right after its last reply, while the
    // other connections are still open.
    for (k, s) in peers.iter_mut().enumerate().rev() {
        serve_and_close(
            &mut run,
            s,
            &format!("conn {k}"),
            &format!("connection {k} of {MANY}"),
        );
    }
    run.line_eq("done");
    run.finish();
}

#[test]
fn many_forks_each_child_serves_and_closes_tracked() {
    many_forks(Under::Tracked);
}
#[test]
fn many_forks_each_child_serves_and_closes_bare() {
    many_forks(Under::Bare);
}
