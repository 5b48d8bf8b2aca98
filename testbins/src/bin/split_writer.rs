//! `split_writer --port P --pieces "hel,lo wo,rld\n"`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 2. accept(2) exactly one connection; prints `accepted`.
//! 3. One write(2) per comma-separated piece (escapes `\n` `\r` `\t` `\\` `\xHH`,
//!    `\,` for a literal comma); prints `write n=<n>` per call. A short write is
//!    completed with further write(2) calls, each also printed.
//! 4. Prints `wrote <N> pieces`, then close(2) on the connection, prints `closed`, exits 0.

use testbins::{accept_conn, ckz, close, listen_tcp, say, say_ready, split_pieces, Args};

fn main() {
    let args = Args::init(&["port", "pieces"], &[]);
    let port: u16 = args.num("port", 0);
    let pieces = split_pieces(args.req("pieces"));
    let lfd = listen_tcp(port, false);
    say_ready();
    let conn = accept_conn(lfd);
    say("accepted");
    for piece in &pieces {
        let mut rest: &[u8] = piece;
        loop {
            // SAFETY: rest is a live slice; write reads at most rest.len() bytes.
            let n = ckz(
                unsafe { libc::write(conn, rest.as_ptr().cast(), rest.len()) },
                "write",
            );
            say(&format!("write n={n}"));
            rest = &rest[n..];
            if rest.is_empty() || n == 0 {
                break;
            }
        }
    }
    say(&format!("wrote {} pieces", pieces.len()));
    close(conn, "close");
    say("closed");
}
