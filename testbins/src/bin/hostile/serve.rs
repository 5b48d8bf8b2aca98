//! `serve` (tenant B): a TCP listener that greets with B's secret, a UDP socket that
//! reports every datagram, and an abstract unix listener; one poll loop.

use crate::sys::{self, Sa};
use crate::Opts;
use std::ffi::c_int;
use std::net::SocketAddrV4;
use testbins::{ck, errno, escape_text, fail, install_handler, say};

/// What B sends every TCP client: whoever reads it has B's secret.
pub const GREETING: &[u8] = b"hello-from-b b-secret\n";

extern "C" fn on_term(_: c_int) {
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(0) };
}

pub fn run(o: &Opts) -> ! {
    let tcp_at = o.addr("tcp");
    let udp_at = o.addr("udp");
    let name = o.req("abstract").to_string();
    install_handler(libc::SIGTERM, on_term, false);

    let tcp = ck(
        sys::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC).unwrap_or(-1),
        "socket(tcp)",
    );
    let _ = sys::set_int(tcp, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1);
    if let Err(e) = sys::bind(tcp, &Sa::v4(tcp_at)) {
        testbins::die(&format!("bind tcp {tcp_at}: {}", sys::errname(e)));
    }
    // SAFETY: listen(2) takes only integers.
    ck(unsafe { libc::listen(tcp, 128) }, "listen(tcp)");

    let udp = ck(
        sys::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC).unwrap_or(-1),
        "socket(udp)",
    );
    if let Err(e) = sys::bind(udp, &Sa::v4(udp_at)) {
        testbins::die(&format!("bind udp {udp_at}: {}", sys::errname(e)));
    }

    let unix = ck(
        sys::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC).unwrap_or(-1),
        "socket(unix)",
    );
    // SAFETY: sockaddr_un is a plain C struct for which all-zeroes is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let n = name.len().min(sun.sun_path.len() - 1);
    for (d, &b) in sun.sun_path[1..].iter_mut().zip(&name.as_bytes()[..n]) {
        *d = b as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + 1 + n;
    // SAFETY: sun is a live sockaddr_un and len does not exceed its size.
    let r = unsafe {
        libc::bind(
            unix,
            (&sun as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    ck(r, "bind(abstract)");
    // SAFETY: listen(2) takes only integers.
    ck(unsafe { libc::listen(unix, 16) }, "listen(unix)");

    let show = |fd| sys::local(fd).map_or_else(|| "?".to_string(), |a| a.to_string());
    say(&format!(
        "ready pid={} tcp={} udp={}",
        testbins::host_pid(),
        show(tcp),
        show(udp)
    ));

    let mut fds = [tcp, udp, unix].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: fds is a live array of three pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) } < 0 {
            if errno() != libc::EINTR {
                fail("poll");
            }
            continue;
        }
        if fds[0].revents != 0 {
            accept_one(tcp, true);
        }
        if fds[1].revents != 0 {
            datagram(udp);
        }
        if fds[2].revents != 0 {
            accept_one(unix, false);
        }
    }
}

fn accept_one(lfd: c_int, tcp: bool) {
    // SAFETY: NULL addr/addrlen are allowed by accept4(2).
    let fd = unsafe {
        libc::accept4(
            lfd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        eprintln!("hostile serve: accept: {}", sys::errname(errno()));
        return;
    }
    if tcp {
        let from = sys::peer(fd).map_or_else(|| "?".to_string(), |a| a.to_string());
        let to = sys::local(fd).map_or_else(|| "?".to_string(), |a| a.to_string());
        say(&format!("accepted tcp from {from} to {to}"));
    } else {
        say("accepted unix");
    }
    let (p, n) = (GREETING.as_ptr().cast(), GREETING.len());
    // SAFETY: p/n describe the static greeting.
    unsafe { libc::send(fd, p, n, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    sys::close(fd);
}

fn datagram(fd: c_int) {
    let mut buf = [0u8; 2048];
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut from: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut flen = sys::SIN_LEN;
    // SAFETY: buf and from/flen are live, writable and of the lengths passed.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            (&mut from as *mut libc::sockaddr_in).cast(),
            &mut flen,
        )
    };
    if n < 0 {
        return;
    }
    let src = SocketAddrV4::new(
        u32::from_be(from.sin_addr.s_addr).into(),
        u16::from_be(from.sin_port),
    );
    say(&format!(
        "udp from {src} len={n} data={}",
        escape_text(&buf[..n as usize])
    ));
}
