//! `storm_echo --port P --restart yes|no --interval-us U`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 2. accept(2) one connection (blocking); prints `accepted`.
//! 3. rt_sigaction(SIGUSR1, handler, SA_RESTART iff `--restart yes`; default no); the
//!    handler only increments an atomic counter. Spawns a signaller thread that calls
//!    pthread_kill(io_thread, SIGUSR1) then nanosleep(U µs; default 50) until told to stop.
//! 4. The I/O (main) thread echoes: read(fd, buf, 65536) then write(2) of the whole
//!    chunk (short writes continued with further write(2) calls), until read returns 0.
//!    Every -1/EINTR from read or write is counted and the same call retried.
//! 5. stops and joins the signaller, then shutdown(SHUT_WR) (any notified syscall can
//!    return EINTR when a signal without SA_RESTART lands before the supervisor has
//!    received it — shutdown included — so the storm ends first); prints
//!    `echoed total=<bytes> signals=<handler runs> eintr=<EINTR count>`, exits 0.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testbins::{accept_conn, ck, errno, fail, install_handler, listen_tcp, say, say_ready, Args};

static SIGNALS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_usr1(_: c_int) {
    SIGNALS.fetch_add(1, Ordering::Relaxed);
}

fn main() {
    let args = Args::init(&["port", "restart", "interval-us"], &[]);
    let port: u16 = args.num("port", 0);
    let restart = args.yes_no("restart", false);
    let interval = Duration::from_micros(args.num("interval-us", 50u64));
    let lfd = listen_tcp(port, false);
    say_ready();
    let conn = accept_conn(lfd);
    say("accepted");
    install_handler(libc::SIGUSR1, on_usr1, restart);

    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let signaller = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            // SAFETY: the main thread outlives this thread (it joins us before exiting),
            // so `me` names a live thread; SIGUSR1 has a handler installed.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            std::thread::sleep(interval);
        }
    });

    let mut buf = vec![0u8; 65536];
    let (mut total, mut eintr) = (0usize, 0u64);
    loop {
        // SAFETY: buf is a live, writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(conn, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                eintr += 1;
                continue;
            }
            fail("read");
        }
        if n == 0 {
            break;
        }
        let n = n as usize;
        total += n;
        let mut off = 0;
        while off < n {
            // SAFETY: off < n <= buf.len(), so the range [off, n) lies within buf.
            let w = unsafe { libc::write(conn, buf.as_ptr().add(off).cast(), n - off) };
            if w < 0 {
                if errno() == libc::EINTR {
                    eintr += 1;
                    continue;
                }
                fail("write");
            }
            off += w as usize;
        }
    }
    stop.store(true, Ordering::SeqCst);
    signaller
        .join()
        .unwrap_or_else(|_| testbins::die("signaller panicked"));
    // SAFETY: shutdown(2) takes only integer arguments.
    ck(unsafe { libc::shutdown(conn, libc::SHUT_WR) }, "shutdown");
    let signals = SIGNALS.load(Ordering::Relaxed);
    say(&format!(
        "echoed total={total} signals={signals} eintr={eintr}"
    ));
}
