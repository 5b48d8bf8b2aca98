//! `parked_threads --port P --conns M [--stack-kib K]`
//!
//! Tenant of the parked-calls benchmark (`scripts/bench_pressure.sh`, with
//! `parked_client`): M threads, each blocked in its own recv.
//!
//! Syscall pattern:
//! 1. Raises its RLIMIT_NOFILE soft limit to the hard limit (setrlimit).
//! 2. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen(backlog 4096: the
//!    client connects all M at once); prints `ready pid=<host pid>`.
//! 3. The main thread accept(2)s M connections one after another and gives each its
//!    own thread (stack K KiB, default 64). Prints `accepted <M>` after the last.
//! 4. Worker: send(1 byte 'r') — "about to block" — then blocking recv(64) in a loop;
//!    each chunk received is echoed with send(); when recv returns 0 it close(2)s.
//! 5. The main thread joins every worker and prints `done`, exit 0.

use std::ffi::c_int;
use testbins::{accept_conn, ck, close, errno, fail, say, say_ready, send_all, sockaddr, Args};

fn worker(conn: c_int) {
    send_all(conn, b"r");
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: buf is a live, writable 64-byte buffer.
        let n = unsafe { libc::recv(conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fail("recv");
        }
        if n == 0 {
            break;
        }
        send_all(conn, &buf[..n as usize]);
    }
    close(conn, "close");
}

/// Raises the RLIMIT_NOFILE soft limit to the hard limit.
fn raise_nofile() {
    // SAFETY: rlimit is a plain C struct for which all-zeroes is valid.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a live rlimit that getrlimit fills in.
    ck(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) },
        "getrlimit",
    );
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: rl is a live, initialised rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        ck(
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) },
            "setrlimit",
        );
    }
}

/// Like `testbins::listen_tcp` with a backlog of 4096.
fn listen_wide(port: u16) -> c_int {
    // SAFETY: socket(2) takes only integer arguments.
    let fd = ck(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) },
        "socket",
    );
    let one: c_int = 1;
    let len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: &one points to a live c_int and len is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const c_int).cast(),
            len,
        )
    };
    ck(r, "setsockopt(SO_REUSEADDR)");
    let sa = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
    let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a live sockaddr_in and salen is its size.
    ck(
        unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), salen) },
        "bind",
    );
    // SAFETY: listen(2) takes only integer arguments.
    ck(unsafe { libc::listen(fd, 4096) }, "listen");
    fd
}

fn main() {
    let args = Args::init(&["port", "conns", "stack-kib"], &[]);
    let port: u16 = args.num("port", 0);
    let conns: usize = args.num("conns", 2000);
    let stack: usize = args.num("stack-kib", 64usize) * 1024;
    raise_nofile();
    let lfd = listen_wide(port);
    say_ready();
    let mut threads = Vec::with_capacity(conns);
    for i in 0..conns {
        let conn = accept_conn(lfd);
        let t = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || worker(conn))
            .unwrap_or_else(|e| testbins::die(&format!("spawning worker {i}: {e}")));
        threads.push(t);
    }
    say(&format!("accepted {conns}"));
    close(lfd, "close listener");
    for t in threads {
        t.join()
            .unwrap_or_else(|_| testbins::die("worker thread panicked"));
    }
    say("done");
}
