//! `epoll_reader --port P --mode lt|et --bufsize N`
//!
//! Syscall pattern:
//! 1. socket(SOCK_STREAM|SOCK_NONBLOCK), setsockopt(SO_REUSEADDR), bind(127.0.0.1:P),
//!    listen; epoll_create1(EPOLL_CLOEXEC); epoll_ctl(ADD, listener, EPOLLIN[|EPOLLET]);
//!    prints `ready pid=<pid>`.
//! 2. epoll_wait(-1) until the listener is readable, then accept4(SOCK_NONBLOCK)
//!    (EAGAIN -> back to epoll_wait); prints `accepted`; epoll_ctl(DEL, listener);
//!    epoll_ctl(ADD, conn, EPOLLIN[|EPOLLET]).
//! 3. On each wakeup for the connection: recv(N) (= recvfrom with NULL address)
//!    repeatedly, printing `read n=<n>` per successful read and echoing the bytes
//!    back with send() (= sendto, NULL address; on EAGAIN poll(POLLOUT) and retry),
//!    until recv fails with EAGAIN (prints `EAGAIN`, back to epoll_wait) or returns 0.
//! 4. On recv == 0 prints `eof total=<bytes read>` and exits 0.
//!    `--mode` defaults to `lt`, `--bufsize` to 4096. EINTR is retried silently.

use std::ffi::c_int;
use testbins::{ck, errno, fail, listen_tcp, say, say_ready, send_all, Args};

fn ctl(ep: c_int, op: c_int, fd: c_int, events: u32) {
    let mut ev = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: ev is a live epoll_event (ignored by the kernel for EPOLL_CTL_DEL).
    ck(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, "epoll_ctl");
}

fn main() {
    let args = Args::init(&["port", "mode", "bufsize"], &[]);
    let port: u16 = args.num("port", 0);
    let bufsize: usize = args.num("bufsize", 4096);
    let flags = match args.get("mode").unwrap_or("lt") {
        "lt" => libc::EPOLLIN as u32,
        "et" => (libc::EPOLLIN | libc::EPOLLET) as u32,
        m => testbins::die(&format!("--mode must be lt or et, got {m}")),
    };
    if bufsize == 0 {
        testbins::die("--bufsize must be > 0");
    }
    let lfd = listen_tcp(port, true);
    // SAFETY: epoll_create1 takes only an integer flag.
    let ep = ck(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    );
    ctl(ep, libc::EPOLL_CTL_ADD, lfd, flags);
    say_ready();

    let mut conn: c_int = -1;
    let mut total = 0usize;
    let mut buf = vec![0u8; bufsize];
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    loop {
        // SAFETY: events is a live array of 8 epoll_events.
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as c_int, -1) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fail("epoll_wait");
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as c_int;
            if fd == lfd && conn < 0 {
                // SAFETY: NULL addr/addrlen are allowed by accept4(2).
                let c = unsafe {
                    libc::accept4(
                        lfd,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_NONBLOCK,
                    )
                };
                if c < 0 {
                    if matches!(errno(), libc::EAGAIN | libc::EINTR) {
                        continue;
                    }
                    fail("accept4");
                }
                conn = c;
                say("accepted");
                ctl(ep, libc::EPOLL_CTL_DEL, lfd, 0);
                ctl(ep, libc::EPOLL_CTL_ADD, conn, flags);
            } else if fd == conn {
                loop {
                    // SAFETY: buf is a live, writable buffer of buf.len() bytes.
                    let r = unsafe { libc::recv(conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
                    if r < 0 {
                        match errno() {
                            libc::EINTR => continue,
                            libc::EAGAIN => {
                                say("EAGAIN");
                                break;
                            }
                            _ => fail("recv"),
                        }
                    }
                    if r == 0 {
                        say(&format!("eof total={total}"));
                        return;
                    }
                    let r = r as usize;
                    say(&format!("read n={r}"));
                    total += r;
                    send_all(conn, &buf[..r]);
                }
            }
        }
    }
}
