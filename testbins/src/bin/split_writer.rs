//! `split_writer --port P --pieces "hel,lo wo,rld\n" [--syscall write|pwritev2]`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 2. accept(2) exactly one connection; prints `accepted`.
//! 3. One write-type call per comma-separated piece (escapes `\n` `\r` `\t` `\\` `\xHH`,
//!    `\,` for a literal comma); prints `write n=<n>` per call. A short write is
//!    completed with further calls of the same kind, each also printed. Per
//!    `--syscall` (default `write`):
//!    * `write`    -> write(fd, piece, len)
//!    * `pwritev2` -> pwritev2(fd, [iov piece], 1, offset -1, flags 0)
//!      (offset -1 = the current file position: writev on a socket)
//! 4. Prints `wrote <N> pieces`, then close(2) on the connection, prints `closed`, exits 0.

use std::ffi::c_int;
use testbins::{accept_conn, ckz, close, listen_tcp, say, say_ready, split_pieces, Args};

fn write_once(kind: &str, fd: c_int, buf: &[u8]) -> isize {
    match kind {
        // SAFETY: buf is a live slice; write reads at most buf.len() bytes.
        "write" => unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) },
        "pwritev2" => {
            let iov = libc::iovec {
                iov_base: buf.as_ptr().cast_mut().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: iov describes the live buf, which pwritev2 only reads;
            // offset -1 writes at the current position, as writev.
            unsafe { libc::pwritev2(fd, &iov, 1, -1, 0) }
        }
        other => testbins::die(&format!("unknown --syscall {other}")),
    }
}

fn main() {
    let args = Args::init(&["port", "pieces", "syscall"], &[]);
    let port: u16 = args.num("port", 0);
    let pieces = split_pieces(args.req("pieces"));
    let kind = args.get("syscall").unwrap_or("write").to_string();
    if !["write", "pwritev2"].contains(&kind.as_str()) {
        testbins::die(&format!("unknown --syscall {kind}"));
    }
    let lfd = listen_tcp(port, false);
    say_ready();
    let conn = accept_conn(lfd);
    say("accepted");
    for piece in &pieces {
        let mut rest: &[u8] = piece;
        loop {
            let n = ckz(write_once(&kind, conn, rest), &kind);
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
