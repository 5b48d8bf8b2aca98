//! More network attempts: sendmsg/sendmmsg to B, listen without bind, and
//! socket families/protocols a tenant has no business creating.
//!
//! Lines (besides `blocked <ERRNO>` for a failing syscall):
//! * sendmsg_b_udp: `ESCAPED sent <n> byte to <b-addr>`.
//! * sendmmsg_b_second: `ESCAPED sent=2`; `blocked sent=<0|1>` when fewer were
//!   sent; after sent=1, a vlen=1 retry of message 1 gives
//!   `ESCAPED retry sent the second message` or `blocked sent=1 retry=<ERRNO>`.
//! * listen_autobind: `ESCAPED bound <ip:port>` (wildcard, or outside
//!   `--own-prefix`, then followed by `outside --own-prefix <P>`),
//!   `ESCAPED listening, getsockname failed <ERRNO>`, else `blocked bound=<ip:port>`.
//! * socket_vsock / socket_sctp: `ESCAPED created <what> socket` (closed again).
//! * bind_unspec / connect_truncated_addr / connect_oversized_addr: malformed
//!   addresses; `ESCAPED bound` / `ESCAPED connected` if the call succeeded.

use crate::net::{self, SIN_LEN};
use crate::{blocked, blocked_at, close_fd, errname, escaped};
use std::ffi::c_int;
use std::net::{Ipv4Addr, SocketAddrV4};
use testbins::{errno, say};

/// AF_VSOCK (linux/socket.h).
const AF_VSOCK: c_int = 40;
/// IPPROTO_SCTP (linux/in.h).
const IPPROTO_SCTP: c_int = 132;

/// UDP socket, or None after reporting the failed socket(2) as the attempt's line.
fn udp(name: &str) -> Option<c_int> {
    match net::socket(libc::AF_INET, libc::SOCK_DGRAM) {
        Ok(fd) => Some(fd),
        Err(_) => {
            blocked_at(name, "socket(AF_INET, SOCK_DGRAM)");
            None
        }
    }
}

/// A msghdr naming `sa` with the single iovec `iov`, no control data.
/// The result holds raw pointers to both: they must outlive its use.
fn msghdr(sa: &libc::sockaddr_in, iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zeroes is valid (null
    // pointers, zero lengths).
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_name = (sa as *const libc::sockaddr_in).cast_mut().cast();
    m.msg_namelen = SIN_LEN;
    m.msg_iov = iov;
    m.msg_iovlen = 1;
    m
}

/// An iovec over `buf` (the kernel only reads it when sending).
fn iovec(buf: &mut [u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }
}

pub fn sendmsg_b_udp(b: SocketAddrV4) {
    let name = "sendmsg_b_udp";
    let Some(fd) = udp(name) else { return };
    let sa = testbins::sockaddr(*b.ip(), b.port());
    let mut buf = *b"x";
    let mut iov = iovec(&mut buf);
    let m = msghdr(&sa, &mut iov);
    // SAFETY: m points to sa, iov and buf, all live locals of the sizes given.
    let r = unsafe { libc::sendmsg(fd, &m, 0) };
    if r < 0 {
        blocked(name, errno());
    } else {
        escaped(name, &format!("sent {r} byte to {b}"));
    }
    close_fd(fd);
}

/// sendmmsg(2) over `msgs`; Err(errno) on -1.
fn sendmmsg(fd: c_int, msgs: &mut [libc::mmsghdr]) -> Result<c_int, i32> {
    // SAFETY: msgs is a live, writable slice of mmsghdrs whose pointers (names,
    // iovecs, buffers) the caller keeps alive; vlen is its length.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), msgs.len() as libc::c_uint, 0) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

pub fn sendmmsg_b_second(allowed: SocketAddrV4, b: SocketAddrV4) {
    let name = "sendmmsg_b_second";
    let Some(fd) = udp(name) else { return };
    let sa_allowed = testbins::sockaddr(*allowed.ip(), allowed.port());
    let sa_b = testbins::sockaddr(*b.ip(), b.port());
    let (mut buf0, mut buf1) = (*b"x", *b"x");
    let (mut iov0, mut iov1) = (iovec(&mut buf0), iovec(&mut buf1));
    let mut msgs = [
        libc::mmsghdr {
            msg_hdr: msghdr(&sa_allowed, &mut iov0),
            msg_len: 0,
        },
        libc::mmsghdr {
            msg_hdr: msghdr(&sa_b, &mut iov1),
            msg_len: 0,
        },
    ];
    match sendmmsg(fd, &mut msgs) {
        Err(e) => blocked(name, e),
        Ok(2) => escaped(name, "sent=2"),
        Ok(1) => match sendmmsg(fd, &mut msgs[1..]) {
            Ok(1) => escaped(name, "retry sent the second message"),
            Ok(n) => say(&format!("attempt {name}: blocked sent=1 retry=sent{n}")),
            Err(e) => say(&format!(
                "attempt {name}: blocked sent=1 retry={}",
                errname(e)
            )),
        },
        Ok(n) => say(&format!("attempt {name}: blocked sent={n}")),
    }
    close_fd(fd);
}

pub fn listen_autobind(own_prefix: Option<&str>) {
    let name = "listen_autobind";
    let fd = match net::socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_INET)"),
    };
    // SAFETY: listen(2) takes only integers.
    if unsafe { libc::listen(fd, 1) } < 0 {
        blocked(name, errno());
        return close_fd(fd);
    }
    match net::sockname4(fd) {
        None => escaped(
            name,
            &format!("listening, getsockname failed {}", errname(errno())),
        ),
        Some(a) if *a.ip() == Ipv4Addr::UNSPECIFIED => escaped(name, &format!("bound {a}")),
        Some(a) => match own_prefix {
            Some(p) if !a.ip().to_string().starts_with(p) => {
                escaped(name, &format!("bound {a} outside --own-prefix {p}"))
            }
            _ => say(&format!("attempt {name}: blocked bound={a}")),
        },
    }
    close_fd(fd);
}

/// socket(domain, ty, proto): created → ESCAPED (and closed), failed → blocked.
fn try_socket(name: &str, what: &str, domain: c_int, ty: c_int, proto: c_int) {
    // SAFETY: socket(2) takes only integers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        blocked(name, errno());
    } else {
        escaped(name, &format!("created {what} socket"));
        close_fd(fd);
    }
}

pub fn socket_vsock() {
    try_socket("socket_vsock", "AF_VSOCK", AF_VSOCK, libc::SOCK_STREAM, 0);
}

pub fn socket_sctp() {
    let (d, t) = (libc::AF_INET, libc::SOCK_STREAM);
    try_socket("socket_sctp", "SCTP", d, t, IPPROTO_SCTP);
}

/// bind() with `len` bytes of `bytes` as the address; the attempt's line.
fn raw_bind_or_connect(name: &str, connect: bool, bytes: &[u8], len: usize) {
    let Ok(fd) = net::socket(libc::AF_INET, libc::SOCK_STREAM) else {
        blocked_at(name, "socket(AF_INET, SOCK_STREAM)");
        return;
    };
    // SAFETY: `bytes` is a live buffer of at least `len` bytes (callers pass
    // len <= bytes.len()); the kernel (or the supervisor) reads at most `len`.
    let r = unsafe {
        let addr = bytes.as_ptr().cast::<libc::sockaddr>();
        if connect {
            libc::connect(fd, addr, len as libc::socklen_t)
        } else {
            libc::bind(fd, addr, len as libc::socklen_t)
        }
    };
    if r == 0 {
        escaped(name, if connect { "connected" } else { "bound" });
    } else {
        blocked(name, errno());
    }
    close_fd(fd);
}

/// `sockaddr_in` bytes for `ip:port` with the given family field.
fn sockaddr_bytes(family: c_int, addr: SocketAddrV4) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..2].copy_from_slice(&(family as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&addr.port().to_be_bytes());
    b[4..8].copy_from_slice(&addr.ip().octets());
    b
}

/// bind() to AF_UNSPEC 0.0.0.0 on an inet socket: the kernel reads that as the
/// wildcard (for old programs), which is outside the tenant's range.
pub fn bind_unspec() {
    let b = sockaddr_bytes(libc::AF_UNSPEC, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    raw_bind_or_connect("bind_unspec", false, &b, b.len());
}

/// connect() to B with an address cut after the port (4 bytes).
pub fn connect_truncated_addr(b: SocketAddrV4) {
    let bytes = sockaddr_bytes(libc::AF_INET, b);
    raw_bind_or_connect("connect_truncated_addr", true, &bytes, 4);
}

/// connect() to B with an address length past any sockaddr (200 bytes).
pub fn connect_oversized_addr(b: SocketAddrV4) {
    let mut bytes = [0u8; 200];
    bytes[..16].copy_from_slice(&sockaddr_bytes(libc::AF_INET, b));
    raw_bind_or_connect("connect_oversized_addr", true, &bytes, bytes.len());
}
