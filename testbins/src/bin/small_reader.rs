//! `small_reader --port P --bufsize B [--syscall read|recv|recvfrom|readv|preadv2|recvmsg]`
//!
//! Syscall pattern:
//! 1. socket, setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<pid>`.
//! 2. accept(2) exactly one connection; prints `accepted`.
//! 3. Loops one read-type call with a buffer of exactly B bytes (default 7) until it
//!    returns 0; prints `read n=<n>` after every call (including the final `read n=0`).
//!    EINTR is retried silently. Per `--syscall` (default `read`), on x86_64:
//!    * `read`     -> read(fd, buf, B)
//!    * `recv`     -> recvfrom(fd, buf, B, 0, NULL, NULL)   (glibc recv)
//!    * `recvfrom` -> recvfrom(fd, buf, B, 0, &sockaddr_storage, &len)
//!    * `readv`    -> readv(fd, [iov B/2, iov B-B/2], 2)
//!    * `preadv2`  -> preadv2(fd, [iov B/2, iov B-B/2], 2, offset -1, flags 0)
//!      (offset -1 = the current file position: readv on a socket)
//!    * `recvmsg`  -> recvmsg(fd, {no name, iov [B/2, B-B/2], no control}, 0)
//! 4. Prints `total=<bytes> data=<lower-case hex of all bytes>` and exits 0.

use std::ffi::c_int;
use testbins::{accept_conn, errno, fail, hex, listen_tcp, say, say_ready, Args};

/// Two iovecs covering buf: the first floor(len/2) bytes and the rest.
fn halves(buf: &mut [u8]) -> [libc::iovec; 2] {
    let (lo, hi) = buf.split_at_mut(buf.len() / 2);
    [lo, hi].map(|h| libc::iovec {
        iov_base: h.as_mut_ptr().cast(),
        iov_len: h.len(),
    })
}

fn read_once(kind: &str, fd: c_int, buf: &mut [u8]) -> isize {
    let len = buf.len();
    match kind {
        // SAFETY: buf is a live, writable buffer of len bytes.
        "read" => unsafe { libc::read(fd, buf.as_mut_ptr().cast(), len) },
        // SAFETY: buf is a live, writable buffer of len bytes.
        "recv" => unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), len, 0) },
        "recvfrom" => {
            // SAFETY: sockaddr_storage is plain data; all-zeroes is valid.
            let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
            let mut sl = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let sp = (&mut ss as *mut libc::sockaddr_storage).cast();
            // SAFETY: buf has len writable bytes; ss and sl are live and sl is ss's size.
            unsafe { libc::recvfrom(fd, buf.as_mut_ptr().cast(), len, 0, sp, &mut sl) }
        }
        "readv" => {
            let iov = halves(buf);
            // SAFETY: both iovecs describe disjoint, writable halves of the live buf.
            unsafe { libc::readv(fd, iov.as_ptr(), 2) }
        }
        "preadv2" => {
            let iov = halves(buf);
            // SAFETY: both iovecs describe disjoint, writable halves of the live buf;
            // offset -1 reads at the current position, as readv.
            unsafe { libc::preadv2(fd, iov.as_ptr(), 2, -1, 0) }
        }
        "recvmsg" => {
            let mut iov = halves(buf);
            // SAFETY: msghdr is plain data; all-zeroes means no name and no control.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = 2;
            // SAFETY: msg points to two live iovecs covering disjoint halves of buf.
            unsafe { libc::recvmsg(fd, &mut msg, 0) }
        }
        other => testbins::die(&format!("unknown --syscall {other}")),
    }
}

fn main() {
    let args = Args::init(&["port", "bufsize", "syscall"], &[]);
    let port: u16 = args.num("port", 0);
    let bufsize: usize = args.num("bufsize", 7);
    let kind = args.get("syscall").unwrap_or("read").to_string();
    if bufsize == 0 {
        testbins::die("--bufsize must be > 0");
    }
    if !["read", "recv", "recvfrom", "readv", "preadv2", "recvmsg"].contains(&kind.as_str()) {
        testbins::die(&format!("unknown --syscall {kind}"));
    }
    let lfd = listen_tcp(port, false);
    say_ready();
    let conn = accept_conn(lfd);
    say("accepted");
    let mut buf = vec![0u8; bufsize];
    let mut all = Vec::new();
    loop {
        let n = read_once(&kind, conn, &mut buf);
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fail(&kind);
        }
        say(&format!("read n={n}"));
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n as usize]);
    }
    say(&format!("total={} data={}", all.len(), hex(&all)));
}
