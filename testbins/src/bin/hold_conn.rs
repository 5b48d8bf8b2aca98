//! `hold_conn --port P`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 2. accept(2) one connection; prints `accepted`.
//! 3. pause(2) in a loop, never reading or closing the connection, until killed
//!    (or until `--timeout-secs`, default 30, elapses: exit 3).

use testbins::{accept_conn, listen_tcp, say, say_ready, Args};

fn main() {
    let args = Args::init(&["port"], &[]);
    let port: u16 = args.num("port", 0);
    let lfd = listen_tcp(port, false);
    say_ready();
    let _conn = accept_conn(lfd);
    say("accepted");
    loop {
        // SAFETY: pause(2) has no preconditions.
        unsafe { libc::pause() };
    }
}
