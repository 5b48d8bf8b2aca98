//! `blocking_threads --port P --conns K [--fork]`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen (all blocking);
//!    prints `ready pid=<pid>`.
//! 2. The main thread accept(2)s K connections one after another; after each it
//!    prints `accepted <i>` (i = 0..K-1) and hands the connection to a worker:
//!    * default: a new thread (clone via std::thread::spawn);
//!    * `--fork`: fork(2); the parent close(2)s its copy of the connection right
//!      away and goes back to accept; the child close(2)s the listener, prints
//!      `child <i> pid=<host pid>` and runs the worker, then _exit(0).
//! 3. Worker: blocking recv(4096) (= recvfrom, NULL address) in a loop, printing
//!    `conn <i> read n=<n>` and echoing each chunk with send() (= sendto) until
//!    recv returns 0; then prints `conn <i> eof total=<n>` and close(2)s.
//! 4. The main thread joins all threads (or wait4()s all children, dying if one
//!    did not exit 0) and prints `done`, exit 0.

use std::ffi::c_int;
use testbins::{
    accept_conn, ck, close, errno, fail, host_pid, listen_tcp, say, say_ready, send_all, Args,
};

fn worker(i: usize, conn: c_int) {
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        // SAFETY: buf is a live, writable 4096-byte buffer.
        let n = unsafe { libc::recv(conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fail(&format!("conn {i} recv"));
        }
        let n = n as usize;
        say(&format!("conn {i} read n={n}"));
        if n == 0 {
            break;
        }
        total += n;
        send_all(conn, &buf[..n]);
    }
    say(&format!("conn {i} eof total={total}"));
    close(conn, "close");
}

fn main() {
    let args = Args::init(&["port", "conns"], &["fork"]);
    let port: u16 = args.num("port", 0);
    let conns: usize = args.num("conns", 1);
    let fork = args.flag("fork");
    let lfd = listen_tcp(port, false);
    say_ready();
    let mut threads = Vec::new();
    let mut children = Vec::new();
    for i in 0..conns {
        let conn = accept_conn(lfd);
        say(&format!("accepted {i}"));
        if !fork {
            threads.push(std::thread::spawn(move || worker(i, conn)));
            continue;
        }
        // SAFETY: the process is single-threaded in --fork mode, so the child may
        // keep running Rust code (no locks can be held by a vanished thread).
        let pid = ck(unsafe { libc::fork() }, "fork");
        if pid == 0 {
            close(lfd, "close listener");
            say(&format!("child {i} pid={}", host_pid()));
            worker(i, conn);
            // SAFETY: _exit(2) ends the child without running the parent's atexit state.
            unsafe { libc::_exit(0) };
        }
        close(conn, "close");
        children.push(pid);
    }
    for t in threads {
        t.join()
            .unwrap_or_else(|_| testbins::die("worker thread panicked"));
    }
    for pid in children {
        let mut status: c_int = 0;
        loop {
            // SAFETY: status is a live c_int; pid is our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            if r >= 0 {
                break;
            }
            if errno() != libc::EINTR {
                fail("waitpid");
            }
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            testbins::die(&format!("child {pid} failed: status {status:#x}"));
        }
    }
    say("done");
}
