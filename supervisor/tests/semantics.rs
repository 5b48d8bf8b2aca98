//! The engine's data-path semantics on real processes (issue 2, "Must show" item 4):
//! n:1 writes, 1:n reads (preadv2/pwritev2 with offset -1 included), non-blocking +
//! epoll, blocking sockets served in parallel, tracked connect, partial messages at
//! close, oversized messages.
//!
//! Every assertion is byte-exact; time limits are hang guards only. Run as root with
//! `--test-threads=1` after `cargo build --workspace`.

mod common;
mod peer;

use common::*;
use peer::*;
use std::time::Duration;

const LINE: Duration = Duration::from_secs(20);

fn profile(streams: &str) -> tempfile::TempPath {
    write_profile(&format!("{}{streams}", tenant_header("semantics", None)))
}

fn listen_stream(
    port: u16,
    framer: &str,
    extra: &[&str],
    rules: &[(&str, &str, &str, &str)],
) -> String {
    stream_table(&format!("listen_port = {port}"), framer, extra, rules)
}

/// Waits for the supervisor to exit and asserts it exited 0, dumping everything
/// otherwise.
fn assert_exit_ok(t: &mut Tenant) {
    let st = t.wait(LINE);
    if st.code() != Some(0) {
        let d = t.dump();
        panic!("expected exit 0, got {st:?}\n{d}");
    }
}

/// Reads exactly `n` bytes from the peer socket; on failure panics with the tenant's
/// output too.
fn read_n(t: &mut Tenant, s: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    match try_read_exact(s, n) {
        Ok(v) => v,
        Err(e) => {
            let d = t.dump();
            panic!("{e}\n{d}")
        }
    }
}

// 1. n:1 — a message written in 3 write-type calls reaches the transform whole, and
//    the peer receives the transformed bytes exactly once, for write and pwritev2
//    (offset -1).
fn n_to_1(syscall: &str) {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(
        port,
        "lines",
        &[],
        &[("wrap", "outbound", "[", "]")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("split_writer"),
        &[
            "--port",
            &port.to_string(),
            "--pieces",
            "hel,lo wo,rld\\n",
            "--syscall",
            syscall,
        ],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    let (got, end) = read_to_end(&mut s);
    let writes: Vec<String> = {
        t.wait_line("closed", LINE);
        t.stdout_lines()
            .iter()
            .filter(|l| l.starts_with("write n="))
            .cloned()
            .collect()
    };
    if got != b"[hello world\n]" || end != End::Eof {
        let d = t.dump();
        panic!(
            "--syscall {syscall}: peer expected exactly \"[hello world\\n]\" then EOF, got {:?} then {end:?}\n{d}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(
        writes,
        ["write n=3", "write n=5", "write n=4"],
        "--syscall {syscall}: each call must report its full length\n{}",
        t.dump()
    );
    assert_exit_ok(&mut t);
}

#[test]
fn n_to_1_three_writes_one_message() {
    n_to_1("write");
}
#[test]
fn n_to_1_pwritev2() {
    n_to_1("pwritev2");
}

// 2. 1:n — a transformed message longer than the tenant's 7-byte buffer is delivered
//    across as many reads as needed, for every read-family call.
fn one_to_n(syscall: &str) {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(
        port,
        "lines",
        &[],
        &[("wrap", "inbound", "<<<<", ">>>>")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("small_reader"),
        &[
            "--port",
            &port.to_string(),
            "--bufsize",
            "7",
            "--syscall",
            syscall,
        ],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    t.wait_line("accepted", LINE);
    send(&mut s, b"abc\n");
    // The first message is delivered (at least its first piece) before the second
    // one is sent, so the two arrive as separate kernel reads.
    t.wait_line("read n=", LINE);
    send(&mut s, b"defgh\n");
    shut_wr(&s);
    let total = t.wait_line("total=", LINE);
    let expected = b"<<<<abc\n>>>><<<<defgh\n>>>>";
    let want = format!("total={} data={}", expected.len(), hex(expected));
    if total != want {
        let d = t.dump();
        panic!(
            "--syscall {syscall}: expected `{want}` ({:?}), got `{total}`\n{d}",
            String::from_utf8_lossy(expected)
        );
    }
    let reads: Vec<usize> = t
        .stdout_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("read n="))
        .map(|n| n.parse().expect("read n=<number>"))
        .collect();
    let nonzero = reads.iter().filter(|&&n| n > 0).count();
    assert!(
        reads.iter().all(|&n| n <= 7) && nonzero >= expected.len().div_ceil(7),
        "--syscall {syscall}: reads must be <= 7 bytes and at least {} of them: {reads:?}\n{}",
        expected.len().div_ceil(7),
        t.dump()
    );
    assert_eq!(
        reads.last(),
        Some(&0),
        "last read must be EOF\n{}",
        t.dump()
    );
    assert_exit_ok(&mut t);
}

#[test]
fn one_to_n_read() {
    one_to_n("read");
}
#[test]
fn one_to_n_recv() {
    one_to_n("recv");
}
#[test]
fn one_to_n_recvfrom() {
    one_to_n("recvfrom");
}
#[test]
fn one_to_n_readv() {
    one_to_n("readv");
}
#[test]
fn one_to_n_preadv2() {
    one_to_n("preadv2");
}
#[test]
fn one_to_n_recvmsg() {
    one_to_n("recvmsg");
}

// 3. Non-blocking socket with epoll (level- and edge-triggered): a partial message
//    gives EAGAIN and completes when the rest arrives; the tenant never hangs.
fn epoll(mode: &str) {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(
        port,
        "lines",
        &[],
        &[("wrap", "inbound", "<", ">\n")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("epoll_reader"),
        &["--port", &port.to_string(), "--mode", mode],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    t.wait_line("accepted", LINE);
    send(&mut s, b"hel");
    t.wait_line("EAGAIN", LINE);
    {
        let lines = t.stdout_lines().to_vec();
        assert!(
            !lines.iter().any(|l| l.starts_with("read n=")),
            "--mode {mode}: a partial message must give EAGAIN without any data\n{}",
            t.dump()
        );
    }
    send(&mut s, b"lo\n");
    // The echo passes the outbound lines framer too: the suffix ends in a newline so
    // the echoed bytes are whole lines.
    let echo = read_n(&mut t, &mut s, b"<hello\n>\n".len());
    assert_eq!(
        echo,
        b"<hello\n>\n",
        "--mode {mode}: echo of the wrapped message: {:?}\n{}",
        String::from_utf8_lossy(&echo),
        t.dump()
    );
    shut_wr(&s);
    let eof = t.wait_line("eof total=", LINE);
    assert_eq!(eof, "eof total=9", "--mode {mode}\n{}", t.dump());
    let (rest, _) = read_to_end(&mut s);
    assert!(
        rest.is_empty(),
        "--mode {mode}: nothing may follow the echo, got {:?}\n{}",
        String::from_utf8_lossy(&rest),
        t.dump()
    );
    assert_exit_ok(&mut t);
}

#[test]
fn epoll_level_triggered_partial_message_eagain() {
    epoll("lt");
}
#[test]
fn epoll_edge_triggered_partial_message_eagain() {
    epoll("et");
}

// 4. Blocking sockets: a call waiting for data never delays another thread's (or
//    another process's) connection.
fn blocking(fork: bool) {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(port, "lines", &[], &[]));
    let mut args = vec![
        "--port".to_string(),
        port.to_string(),
        "--conns".into(),
        "2".into(),
    ];
    if fork {
        args.push("--fork".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut t = Tenant::spawn(&prof, &testbin("blocking_threads"), &args);
    let pid = pid_of(&t.wait_line("ready pid=", LINE));
    let mut a = connect(port);
    t.wait_line("accepted 0", LINE);
    // Conn A's worker (a thread of the tenant, or child 0) is blocked in its recv
    // (recvfrom on x86_64), waiting for the supervisor, before B connects.
    if fork {
        let c0 = pid_of(&t.wait_line("child 0 pid=", LINE));
        wait_in_syscall(c0, libc::SYS_recvfrom);
    } else {
        wait_any_thread_in_syscall(pid, libc::SYS_recvfrom);
    }
    let mut b = connect(port);
    t.wait_line("accepted 1", LINE);
    // A is silent: its worker is blocked in recv. B must still be served.
    send(&mut b, b"ping\n");
    let got = read_n(&mut t, &mut b, 5);
    assert_eq!(got, b"ping\n", "conn B echo while A blocks\n{}", t.dump());
    send(&mut a, b"pong\n");
    let got = read_n(&mut t, &mut a, 5);
    assert_eq!(got, b"pong\n", "conn A echo\n{}", t.dump());
    shut_wr(&a);
    shut_wr(&b);
    let (ra, _) = read_to_end(&mut a);
    let (rb, _) = read_to_end(&mut b);
    assert!(
        ra.is_empty() && rb.is_empty(),
        "no extra bytes: A {ra:?} B {rb:?}"
    );
    t.wait_line("done", LINE);
    let lines = t.stdout_lines().to_vec();
    for want in ["conn 0 eof total=5", "conn 1 eof total=5"] {
        assert!(
            lines.iter().any(|l| l == want),
            "missing `{want}`\n{}",
            t.dump()
        );
    }
    assert_exit_ok(&mut t);
}

#[test]
fn blocking_threads_one_waiting_call_does_not_delay_another() {
    blocking(false);
}
#[test]
fn blocking_forked_children_one_waiting_call_does_not_delay_another() {
    blocking(true);
}

// 5. connect is performed by the supervisor and the connection is tracked by its
//    remote port: the outbound rule applies, the inbound direction stays untouched.
fn connector(nonblock: bool) {
    require_root();
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind test listener");
    let port = l.local_addr().expect("local_addr").port();
    let prof = profile(&stream_table(
        &format!("remote_port = {port}"),
        "lines",
        &[],
        &[("uppercase", "outbound", "", "")],
    ));
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--connect", &addr, "--pieces", "hello ,world\\n,bye\\n"];
    if nonblock {
        args.push("--nonblock");
    }
    let mut t = Tenant::spawn(&prof, &testbin("connector"), &args);
    let mut s = accept(&l);
    let (got, end) = read_to_end(&mut s);
    if got != b"HELLO WORLD\nBYE\n" || end != End::Eof {
        let d = t.dump();
        panic!(
            "test server expected \"HELLO WORLD\\nBYE\\n\" then EOF, got {:?} then {end:?}\n{d}",
            String::from_utf8_lossy(&got)
        );
    }
    send(&mut s, b"reply, not uppercased\n");
    drop(s);
    let reply = t.wait_line("reply=", LINE);
    assert_eq!(
        reply,
        format!("reply={}", hex(b"reply, not uppercased\n")),
        "inbound bytes must pass unchanged\n{}",
        t.dump()
    );
    let lines = t.stdout_lines().to_vec();
    if nonblock {
        assert!(
            lines.iter().any(|l| l == "connect EINPROGRESS"),
            "non-blocking connect must give EINPROGRESS\n{}",
            t.dump()
        );
    }
    let sent: Vec<&String> = lines.iter().filter(|l| l.starts_with("sent n=")).collect();
    assert_eq!(
        sent,
        ["sent n=6", "sent n=6", "sent n=4"],
        "send results\n{}",
        t.dump()
    );
    assert_exit_ok(&mut t);
}

#[test]
fn connector_blocking_tracked_by_remote_port() {
    connector(false);
}
#[test]
fn connector_nonblocking_tracked_by_remote_port() {
    connector(true);
}

// 6. A tenant closes a tracked socket with a partial (unterminated) message spooled:
//    "flush" sends it raw, "drop" discards it.
fn partial_close(policy: &str, expected: &[u8]) {
    require_root();
    let port = free_port();
    let policy_line = format!("on_partial_close = \"{policy}\"");
    let prof = profile(&listen_stream(
        port,
        "lines",
        &[&policy_line],
        &[("wrap", "outbound", "[", "]")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("split_writer"),
        &["--port", &port.to_string(), "--pieces", "abc"],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    let (got, end) = read_to_end(&mut s);
    t.wait_line("closed", LINE);
    if got != expected || end != End::Eof {
        let d = t.dump();
        panic!(
            "on_partial_close={policy}: peer expected {:?} then EOF, got {:?} then {end:?}\n{d}",
            String::from_utf8_lossy(expected),
            String::from_utf8_lossy(&got)
        );
    }
    assert_exit_ok(&mut t);
}

#[test]
fn partial_close_flush_sends_raw() {
    partial_close("flush", b"abc");
}
#[test]
fn partial_close_drop_sends_nothing() {
    partial_close("drop", b"");
}

// 7. A message larger than max_message: "close" ends the connection (the tenant sees
//    EOF, the peer sees its connection closed, no byte delivered); "passthrough"
//    hands the raw bytes to the tenant.
#[test]
fn oversized_message_close() {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(
        port,
        "lines",
        &["max_message = 16", "on_error = \"close\""],
        &[("wrap", "inbound", "<", ">")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("small_reader"),
        &["--port", &port.to_string(), "--bufsize", "7"],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    t.wait_line("accepted", LINE);
    send(&mut s, &[b'x'; 100]);
    // The peer does NOT close: only the engine's policy can end the stream.
    let total = t.wait_line("total=", LINE);
    assert_eq!(
        total,
        "total=0 data=",
        "tenant must see EOF and no data\n{}",
        t.dump()
    );
    let (got, end) = read_to_end(&mut s);
    assert!(
        got.is_empty(),
        "peer must receive nothing, got {:?} ({end:?})\n{}",
        String::from_utf8_lossy(&got),
        t.dump()
    );
    assert_exit_ok(&mut t);
}

#[test]
fn oversized_message_passthrough() {
    require_root();
    let port = free_port();
    let prof = profile(&listen_stream(
        port,
        "lines",
        &["max_message = 16", "on_error = \"passthrough\""],
        &[("wrap", "inbound", "<", ">")],
    ));
    let mut t = Tenant::spawn(
        &prof,
        &testbin("small_reader"),
        &["--port", &port.to_string(), "--bufsize", "7"],
    );
    t.wait_line("ready pid=", LINE);
    let mut s = connect(port);
    t.wait_line("accepted", LINE);
    let data = [b'x'; 100];
    send(&mut s, &data);
    // All 100 raw bytes reach the tenant before the peer closes.
    let mut seen = 0;
    while seen < data.len() {
        let l = t.wait_line("read n=", LINE);
        let n: usize = l["read n=".len()..].parse().expect("read n=<number>");
        assert!(n > 0, "unexpected EOF after {seen} bytes\n{}", t.dump());
        seen += n;
    }
    shut_wr(&s);
    let total = t.wait_line("total=", LINE);
    assert_eq!(
        total,
        format!("total=100 data={}", hex(&data)),
        "tenant must receive the raw bytes exactly once\n{}",
        t.dump()
    );
    assert_exit_ok(&mut t);
}
