//! `signal_reader --port P --restart yes|no`
//!
//! Syscall pattern:
//! 1. rt_sigaction(SIGTERM, handler, SA_RESTART iff `--restart yes`; default no).
//!    The handler write(2)s `handler SIGTERM\n` to stdout and sets an atomic flag.
//! 2. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 3. accept(2) one connection; prints `accepted`, then `blocked`.
//! 4. One blocking recv(fd, buf, 64, 0) (= recvfrom, NULL address):
//!    * -1/EINTR: prints `recv EINTR`; if the flag is set prints `exiting`, exits 0;
//!      otherwise prints `blocked` again and repeats the recv.
//!    * n >= 0: prints `recv n=<n> data=<text>` (text escaped: `\n`, `\r`, `\t`,
//!      `\\`, `\xHH`), exits 0.
//!    * other errors: message on stderr, exit 1.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use testbins::{
    accept_conn, errno, escape_text, fail, install_handler, listen_tcp, say, say_ready, Args,
};

static GOT_TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: c_int) {
    let msg = b"handler SIGTERM\n";
    // SAFETY: write(2) is async-signal-safe and msg is a static buffer.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
    GOT_TERM.store(true, Ordering::SeqCst);
}

fn main() {
    let args = Args::init(&["port", "restart"], &[]);
    let port: u16 = args.num("port", 0);
    let restart = args.yes_no("restart", false);
    install_handler(libc::SIGTERM, on_term, restart);
    let lfd = listen_tcp(port, false);
    say_ready();
    let conn = accept_conn(lfd);
    say("accepted");
    let mut buf = [0u8; 64];
    loop {
        say("blocked");
        // SAFETY: buf is a live, writable 64-byte buffer.
        let n = unsafe { libc::recv(conn, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            let n = n as usize;
            say(&format!("recv n={n} data={}", escape_text(&buf[..n])));
            return;
        }
        if errno() != libc::EINTR {
            fail("recv");
        }
        say("recv EINTR");
        if GOT_TERM.load(Ordering::SeqCst) {
            say("exiting");
            return;
        }
    }
}
