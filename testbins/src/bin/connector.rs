//! `connector --connect 127.0.0.1:PORT [--send TEXT | --pieces a,b,c] [--nonblock]`
//!
//! Syscall pattern:
//! 1. socket(AF_INET, SOCK_STREAM[|SOCK_NONBLOCK]); connect(2) to the address.
//!    * blocking: connect must succeed.
//!    * `--nonblock`: connect must fail with EINPROGRESS (prints `connect EINPROGRESS`),
//!      then poll(POLLOUT) and getsockopt(SO_ERROR) must give 0.
//!
//!    Then prints `connected`, then `ready pid=<pid>`.
//! 2. Sends TEXT with one send() (= sendto, NULL address), or each comma-separated
//!    piece with its own send(). Escapes `\n` `\r` `\t` `\\` `\xHH` (and `\,` in
//!    pieces) are expanded. Prints `sent n=<n>` per send call; short sends are
//!    continued with further send() calls; EAGAIN waits with poll(POLLOUT).
//! 3. shutdown(SHUT_WR); prints `shutdown`.
//! 4. recv(4096) (= recvfrom) until it returns 0 (EAGAIN -> poll(POLLIN));
//!    prints `reply=<lower-case hex of all bytes>` and exits 0.

use std::ffi::c_int;
use std::net::SocketAddrV4;
use testbins::{
    ck, errno, fail, hex, poll1, say, say_ready, sockaddr, split_pieces, unescape, Args,
};

fn send_piece(fd: c_int, mut rest: &[u8]) {
    loop {
        // SAFETY: rest is a live slice; send reads at most rest.len() bytes.
        let n = unsafe { libc::send(fd, rest.as_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    poll1(fd, libc::POLLOUT, -1);
                    continue;
                }
                _ => fail("send"),
            }
        }
        say(&format!("sent n={n}"));
        rest = &rest[n as usize..];
        if rest.is_empty() {
            return;
        }
    }
}

fn main() {
    let args = Args::init(&["connect", "send", "pieces"], &["nonblock"]);
    let addr: SocketAddrV4 = args
        .req("connect")
        .parse()
        .unwrap_or_else(|_| testbins::die("--connect must be IPv4:PORT"));
    let nonblock = args.flag("nonblock");
    let pieces = match (args.get("pieces"), args.get("send")) {
        (Some(p), _) => split_pieces(p),
        (None, Some(s)) => vec![unescape(s)],
        (None, None) => Vec::new(),
    };
    let ty = libc::SOCK_STREAM | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket(2) takes only integer arguments.
    let fd = ck(unsafe { libc::socket(libc::AF_INET, ty, 0) }, "socket");
    let sa = sockaddr(*addr.ip(), addr.port());
    let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a live sockaddr_in and salen is its size.
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), salen) };
    if nonblock {
        if r == 0 || errno() != libc::EINPROGRESS {
            testbins::die(&format!(
                "nonblocking connect: expected EINPROGRESS, got r={r} errno={}",
                testbins::errno_name(errno())
            ));
        }
        say("connect EINPROGRESS");
        poll1(fd, libc::POLLOUT, -1);
        let mut err: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: err/len are live and len is err's size.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut c_int).cast(),
                &mut len,
            )
        };
        ck(r, "getsockopt(SO_ERROR)");
        if err != 0 {
            testbins::die(&format!(
                "connect failed: SO_ERROR={}",
                testbins::errno_name(err)
            ));
        }
    } else if r != 0 {
        fail("connect");
    }
    say("connected");
    say_ready();
    for p in &pieces {
        send_piece(fd, p);
    }
    // SAFETY: shutdown(2) takes only integer arguments.
    ck(unsafe { libc::shutdown(fd, libc::SHUT_WR) }, "shutdown");
    say("shutdown");
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is a live, writable 4096-byte buffer.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    poll1(fd, libc::POLLIN, -1);
                    continue;
                }
                _ => fail("recv"),
            }
        }
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n as usize]);
    }
    say(&format!("reply={}", hex(&reply)));
}
