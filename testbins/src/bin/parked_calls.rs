//! `parked_calls --port P --mode MODE [--linger-secs N]`
//!
//! A blocking call that has to wait (a "parked" call, under supervise), and what
//! another thread, a signal or a socket timeout does to it. Run bare and under
//! supervise by supervisor/tests/parked.rs, which asserts both runs print the same.
//!
//! Syscall pattern, every mode:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen (blocking); prints
//!    `ready pid=<host pid>`.
//!
//! Modes with a connection (step 2: accept(2) one connection, print `accepted`):
//! * `close`, `shut_rd`, `shut_rdwr`, `signal`: thread A reads its host tid from
//!   readlink(/proc/thread-self) and calls one blocking recv(conn, 64) (= recvfrom).
//!   Thread B (the main thread) waits until /proc/self/task/<A>/syscall shows
//!   recvfrom twice, 50 ms apart (A is blocked in it: for a trapped call, waiting for
//!   the supervisor's answer), prints `parked`, then:
//!   - `close`: close(conn); prints `close rc=<r>` (or `close errno=<E>`);
//!   - `shut_rd` / `shut_rdwr`: shutdown(conn, SHUT_RD / SHUT_RDWR); once A is
//!     joined (so after A's line) prints `shutdown rc=<r>` (or `shutdown errno=<E>`);
//!   - `signal`: SIGUSR1 (handler without SA_RESTART, installed before step 1) with
//!     pthread_kill to A; the handler write(2)s `handler SIGUSR1`.
//!
//!   A prints `recv n=<n> data=<text>` or `recv errno=<E>`. In `signal` mode, after
//!   `recv errno=EINTR` A calls recv once more and prints `recv2 n=<n> data=<text>`
//!   (or `recv2 errno=<E>`). After A is joined, the main thread closes conn unless
//!   `close` mode already did, prints `done`, then sleeps `--linger-secs` (default 0)
//!   before exiting 0, so a test can watch the peer while the process is still alive.
//! * `rcvtimeo`: setsockopt(conn, SO_RCVTIMEO, 300 ms); prints `start recv`; one
//!   blocking recv(conn, 64): prints `recv n=<n> ...` or `recv errno=<E>` followed by
//!   ` elapsed_ms=<ms>`. Then setsockopt(SO_RCVTIMEO, 0) and a second blocking recv:
//!   `recv2 n=<n> data=<text>` or `recv2 errno=<E>`; close, `done`.
//! * `sndtimeo`: setsockopt(conn, SO_SNDTIMEO, 300 ms); prints `start send`; then
//!   blocking send(conn, 64 MiB of 'x', 0) (= sendto) calls to a peer that does not
//!   read, each printing `send n=<n>` or `send errno=<E>` followed by
//!   ` elapsed_ms=<ms>`, until one fails (at most 4096 calls); then
//!   `sent total=<bytes>`, close, `done`.
//!
//! Mode without a connection:
//! * `accept_timeo`: setsockopt(listener, SO_RCVTIMEO, 300 ms); prints `start accept`;
//!   one blocking accept(listener): prints `accept fd` (a connection came) or
//!   `accept errno=<E>`, followed by ` elapsed_ms=<ms>`. Then
//!   setsockopt(SO_RCVTIMEO, 0) and a second blocking accept: `accepted` (or
//!   `accept2 errno=<E>`); close, `done`.
//!
//! Errors other than those printed: message on stderr, exit 1.

use std::ffi::c_int;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use testbins::{
    accept_conn, ck, close, die, errno, errno_name, escape_text, install_handler, listen_tcp, say,
    say_ready, Args,
};

extern "C" fn on_usr1(_: c_int) {
    let msg = b"handler SIGUSR1\n";
    // SAFETY: write(2) is async-signal-safe and msg is a static buffer.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

/// Bytes one send(2) of `sndtimeo` mode offers.
const SEND_LEN: usize = 64 << 20;
/// At most this many send(2) calls in `sndtimeo` mode.
const MAX_SENDS: usize = 4096;

/// Host tid of thread A (0 until known).
static TID_A: AtomicI64 = AtomicI64::new(0);

/// This thread's tid as /proc (mounted for the host's PID namespace) names it.
fn host_tid() -> i64 {
    let link = std::fs::read_link("/proc/thread-self")
        .unwrap_or_else(|e| die(&format!("readlink /proc/thread-self: {e}")));
    link.to_string_lossy()
        .rsplit('/')
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| die(&format!("cannot parse /proc/thread-self -> {link:?}")))
}

fn in_syscall(tid: i64, nr: i64) -> bool {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<i64>().ok())
        == Some(nr)
}

/// Waits until thread A is known and sits in syscall `nr` (seen twice, 50 ms apart).
fn wait_parked(nr: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tid = TID_A.load(Ordering::SeqCst);
        if tid != 0 && in_syscall(tid, nr) {
            std::thread::sleep(Duration::from_millis(50));
            if in_syscall(tid, nr) {
                return;
            }
        }
        if Instant::now() > deadline {
            die(&format!(
                "thread A (tid {tid}) never blocked in syscall {nr} within 20 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn set_timeout(fd: c_int, opt: c_int, ms: i64) {
    let tv = libc::timeval {
        tv_sec: ms / 1000,
        tv_usec: (ms % 1000) * 1000,
    };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: &tv points to a live timeval and len is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&tv as *const libc::timeval).cast(),
            len,
        )
    };
    ck(r, "setsockopt(timeout)");
}

/// One blocking recv(fd, 64): `n=<n> data=<text>` or `errno=<E>`, and the errno.
fn recv_once(fd: c_int) -> (String, i32) {
    let mut buf = [0u8; 64];
    // SAFETY: buf is a live, writable 64-byte buffer.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        let e = errno();
        return (format!("errno={}", errno_name(e)), e);
    }
    let n = n as usize;
    (format!("n={n} data={}", escape_text(&buf[..n])), 0)
}

fn rc_line(what: &str, r: c_int) -> String {
    if r == 0 {
        format!("{what} rc=0")
    } else {
        format!("{what} errno={}", errno_name(errno()))
    }
}

fn parked_recv(conn: c_int, mode: &str) {
    let reader = std::thread::spawn(move || {
        TID_A.store(host_tid(), Ordering::SeqCst);
        let (r, e) = recv_once(conn);
        say(&format!("recv {r}"));
        if e == libc::EINTR {
            let (r, _) = recv_once(conn);
            say(&format!("recv2 {r}"));
        }
    });
    wait_parked(libc::SYS_recvfrom);
    say("parked");
    let mut closed = false;
    match mode {
        "close" => {
            // SAFETY: conn is ours; thread A's recv is the only other user.
            let r = unsafe { libc::close(conn) };
            say(&rc_line("close", r));
            closed = true;
        }
        "shut_rd" | "shut_rdwr" => {
            let how = if mode == "shut_rd" {
                libc::SHUT_RD
            } else {
                libc::SHUT_RDWR
            };
            // SAFETY: shutdown(2) takes only integers.
            let r = unsafe { libc::shutdown(conn, how) };
            // Printed after A's line (below), so the order of the two never races.
            let line = rc_line("shutdown", r);
            reader
                .join()
                .unwrap_or_else(|_| die("reader thread panicked"));
            say(&line);
            close(conn, "close");
            return;
        }
        "signal" => {
            let t = std::os::unix::thread::JoinHandleExt::as_pthread_t(&reader);
            // SAFETY: the thread has not been joined, so its pthread_t is valid.
            let r = unsafe { libc::pthread_kill(t, libc::SIGUSR1) };
            if r != 0 {
                die(&format!("pthread_kill: {r}"));
            }
        }
        _ => unreachable!(),
    }
    reader
        .join()
        .unwrap_or_else(|_| die("reader thread panicked"));
    if !closed {
        close(conn, "close");
    }
}

fn elapsed_ms(t0: Instant) -> u128 {
    t0.elapsed().as_millis()
}

fn main() {
    let args = Args::init(&["port", "mode", "linger-secs"], &[]);
    let port: u16 = args.num("port", 0);
    let mode = args.req("mode").to_string();
    let linger: u64 = args.num("linger-secs", 0);
    install_handler(libc::SIGUSR1, on_usr1, false);
    let lfd = listen_tcp(port, false);
    say_ready();
    match mode.as_str() {
        "close" | "shut_rd" | "shut_rdwr" | "signal" => {
            let conn = accept_conn(lfd);
            say("accepted");
            parked_recv(conn, &mode);
        }
        "rcvtimeo" => {
            let conn = accept_conn(lfd);
            say("accepted");
            set_timeout(conn, libc::SO_RCVTIMEO, 300);
            say("start recv");
            let t0 = Instant::now();
            let (r, _) = recv_once(conn);
            say(&format!("recv {r} elapsed_ms={}", elapsed_ms(t0)));
            set_timeout(conn, libc::SO_RCVTIMEO, 0);
            let (r, _) = recv_once(conn);
            say(&format!("recv2 {r}"));
            close(conn, "close");
        }
        "sndtimeo" => {
            let conn = accept_conn(lfd);
            say("accepted");
            set_timeout(conn, libc::SO_SNDTIMEO, 300);
            let buf = vec![b'x'; SEND_LEN];
            say("start send");
            let mut total = 0usize;
            for _ in 0..MAX_SENDS {
                let t0 = Instant::now();
                // SAFETY: buf is a live slice; send reads at most buf.len() bytes.
                let n = unsafe { libc::send(conn, buf.as_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    let e = errno();
                    say(&format!(
                        "send errno={} elapsed_ms={}",
                        errno_name(e),
                        elapsed_ms(t0)
                    ));
                    break;
                }
                total += n as usize;
                say(&format!("send n={n} elapsed_ms={}", elapsed_ms(t0)));
            }
            say(&format!("sent total={total}"));
            close(conn, "close");
        }
        "accept_timeo" => {
            set_timeout(lfd, libc::SO_RCVTIMEO, 300);
            say("start accept");
            let t0 = Instant::now();
            // SAFETY: NULL addr/addrlen are allowed by accept(2).
            let fd = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
            let r = if fd < 0 {
                format!("errno={}", errno_name(errno()))
            } else {
                close(fd, "close");
                "fd".to_string()
            };
            say(&format!("accept {r} elapsed_ms={}", elapsed_ms(t0)));
            set_timeout(lfd, libc::SO_RCVTIMEO, 0);
            // SAFETY: NULL addr/addrlen are allowed by accept(2).
            let fd = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
            if fd < 0 {
                say(&format!("accept2 errno={}", errno_name(errno())));
            } else {
                say("accepted");
                close(fd, "close");
            }
        }
        m => die(&format!("unknown --mode {m:?}")),
    }
    close(lfd, "close listener");
    say("done");
    if linger > 0 {
        std::thread::sleep(Duration::from_secs(linger));
    }
}
