//! Network attempts against tenant B's listeners, plus sockaddr helpers shared
//! with `serve` and `toctou`.

use crate::{blocked, blocked_at, close_fd, escaped};
use std::ffi::c_int;
use std::net::{Ipv4Addr, SocketAddrV4};
use testbins::{errno, escape_text};

pub const SIN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

/// `ip:port` of a sockaddr_in.
pub fn from_sockaddr(sa: &libc::sockaddr_in) -> SocketAddrV4 {
    let ip = Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
    SocketAddrV4::new(ip, u16::from_be(sa.sin_port))
}

/// getsockname(2) of an AF_INET socket.
pub fn sockname4(fd: c_int) -> Option<SocketAddrV4> {
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = SIN_LEN;
    // SAFETY: sa/len describe a live, writable sockaddr_in.
    let r = unsafe { libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) };
    (r == 0).then(|| from_sockaddr(&sa))
}

/// Abstract AF_UNIX address "\0name" and its exact length
/// (offsetof(sun_path) + 1 + name length).
pub fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &b) in sa.sun_path[1..].iter_mut().zip(name.as_bytes()) {
        *dst = b as libc::c_char;
    }
    let n = name.len().min(sa.sun_path.len() - 1);
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + n;
    (sa, len as libc::socklen_t)
}

/// socket(2) with SOCK_CLOEXEC; Err(errno).
pub fn socket(domain: c_int, ty: c_int) -> Result<c_int, i32> {
    // SAFETY: socket(2) takes only integers.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Reads what the peer sends within 1 s (B greets right away).
fn read_greeting(fd: c_int) -> String {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one live pollfd.
    if unsafe { libc::poll(&mut p, 1, 1000) } <= 0 {
        return "connected (nothing read within 1s)".to_string();
    }
    let mut buf = [0u8; 256];
    // SAFETY: buf is a live, writable buffer of the length passed.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return format!("connected (read failed {})", crate::errname(errno()));
    }
    format!("connected, read \"{}\"", escape_text(&buf[..n as usize]))
}

/// Connects fd to (sa, len) and prints the attempt's line; closes fd.
fn connect_and_report<T>(name: &str, fd: c_int, sa: &T, len: usize) {
    let p = (sa as *const T).cast();
    // SAFETY: p points to a live socket address of at least len bytes.
    let r = unsafe { libc::connect(fd, p, len as libc::socklen_t) };
    if r < 0 {
        blocked(name, errno());
    } else {
        escaped(name, &read_greeting(fd));
    }
    close_fd(fd);
}

pub fn connect_b(b: SocketAddrV4) {
    let fd = match socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at("connect_b", "socket(AF_INET)"),
    };
    let sa = testbins::sockaddr(*b.ip(), b.port());
    connect_and_report("connect_b", fd, &sa, SIN_LEN as usize);
}

pub fn connect_b_v4mapped(b: SocketAddrV4) {
    let name = "connect_b_v4mapped";
    let fd = match socket(libc::AF_INET6, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_INET6)"),
    };
    let zero: c_int = 0;
    let ilen = std::mem::size_of::<c_int>() as libc::socklen_t;
    let (level, opt) = (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY);
    // SAFETY: &zero is a live c_int and ilen is its size.
    let r = unsafe { libc::setsockopt(fd, level, opt, (&zero as *const c_int).cast(), ilen) };
    if r < 0 {
        eprintln!(
            "cross_escape: {name}: IPV6_V6ONLY=0: {}",
            crate::errname(errno())
        );
    }
    // SAFETY: sockaddr_in6 is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = b.port().to_be();
    sa.sin6_addr.s6_addr = b.ip().to_ipv6_mapped().octets();
    connect_and_report(name, fd, &sa, std::mem::size_of::<libc::sockaddr_in6>());
}

pub fn connect_b_nonblocking(b: SocketAddrV4) {
    let name = "connect_b_nonblocking";
    let fd = match socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_INET)"),
    };
    nonblocking_outcome(name, fd, b);
    close_fd(fd);
}

fn nonblocking_outcome(name: &str, fd: c_int, b: SocketAddrV4) {
    let sa = testbins::sockaddr(*b.ip(), b.port());
    // SAFETY: sa is a live sockaddr_in and SIN_LEN is its size.
    let r = unsafe { libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), SIN_LEN) };
    if r == 0 {
        return escaped(name, "connected immediately");
    }
    let e = errno();
    if e != libc::EINPROGRESS {
        return blocked(name, e);
    }
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: p is one live pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 2000) };
    if n < 0 {
        return blocked_at(name, "poll");
    }
    if n == 0 {
        eprintln!("cross_escape: {name}: no POLLOUT within 2s");
        return blocked(name, libc::ETIMEDOUT);
    }
    let mut err: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    let (level, opt) = (libc::SOL_SOCKET, libc::SO_ERROR);
    // SAFETY: err/len describe a live, writable c_int.
    let r = unsafe { libc::getsockopt(fd, level, opt, (&mut err as *mut c_int).cast(), &mut len) };
    if r < 0 {
        blocked_at(name, "getsockopt(SO_ERROR)")
    } else if err != 0 {
        blocked(name, err)
    } else {
        escaped(
            name,
            &format!("connected after EINPROGRESS (revents={:#x})", p.revents),
        )
    }
}

pub fn sendto_b_udp(b: SocketAddrV4) {
    let name = "sendto_b_udp";
    let fd = match socket(libc::AF_INET, libc::SOCK_DGRAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_INET, SOCK_DGRAM)"),
    };
    let sa = testbins::sockaddr(*b.ip(), b.port());
    let (msg, sp) = (b"x", (&sa as *const libc::sockaddr_in).cast());
    // SAFETY: msg is a live 1-byte buffer; sp is a live sockaddr_in of SIN_LEN bytes.
    let r = unsafe { libc::sendto(fd, msg.as_ptr().cast(), 1, 0, sp, SIN_LEN) };
    if r < 0 {
        blocked(name, errno());
    } else {
        escaped(name, &format!("sent {r} byte to {b}"));
    }
    close_fd(fd);
}

/// TCP socket bound to `addr`.
pub fn bind_tcp(name: &str, addr: SocketAddrV4) {
    let fd = match socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_INET)"),
    };
    let sa = testbins::sockaddr(*addr.ip(), addr.port());
    // SAFETY: sa is a live sockaddr_in and SIN_LEN is its size.
    let r = unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), SIN_LEN) };
    if r < 0 {
        blocked(name, errno());
    } else {
        let got = sockname4(fd).map_or_else(|| "?".to_string(), |a| a.to_string());
        escaped(name, &format!("bound {got}"));
    }
    close_fd(fd);
}

pub fn connect_b_abstract(b_abstract: &str) {
    let name = "connect_b_abstract";
    let fd = match socket(libc::AF_UNIX, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return blocked_at(name, "socket(AF_UNIX)"),
    };
    let (sa, len) = abstract_addr(b_abstract);
    connect_and_report(name, fd, &sa, len as usize);
}
