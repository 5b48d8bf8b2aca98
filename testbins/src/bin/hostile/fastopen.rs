//! Class 3: TCP Fast Open, an implicit connect.
//!
//! * `tfo_connect_b`: setsockopt(IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1), connect to B's
//!   TCP address (a returned 0 is followed by a write, which sends the SYN).
//! * `tfo_connect_b_v4mapped`: the same on an AF_INET6 socket to ::ffff:<B>.
//! * `tfo_sendto_b`: TCP_FASTOPEN_CONNECT set, then sendto(B) without MSG_FASTOPEN.
//! * `msg_fastopen_sendto_b`, `msg_fastopen_sendmsg_b`, `msg_fastopen_sendmmsg_b`: a
//!   fresh TCP socket each, MSG_FASTOPEN to B's TCP address.
//! * `msg_fastopen_sendto_b_v4mapped`: MSG_FASTOPEN on AF_INET6 to ::ffff:<B>.
//! * `msg_fastopen_sendto_allowed`, `msg_fastopen_sendmsg_allowed`,
//!   `msg_fastopen_sendmmsg_allowed`: MSG_FASTOPEN to `--allowed-tcp` (the test's own
//!   listener on 127.0.0.1, a place A may connect to): refused all the same.
//!
//! Any call that succeeds is ESCAPED (with what B sent, if anything); an error is
//! `denied errno=<ERRNO>`. A failed setsockopt is reported as an `info` line and the
//! attempt goes on.

use crate::sys::{self, Sa};
use crate::{denied, escaped, info, Opts};
use std::ffi::c_int;

pub fn run(o: &Opts) {
    let b = o.addr("b-tcp");
    let allowed = o.addr("allowed-tcp");
    let b6 = Sa::v6(b.ip().to_ipv6_mapped(), b.port());

    tfo_connect("tfo_connect_b", libc::AF_INET, &Sa::v4(b));
    tfo_connect("tfo_connect_b_v4mapped", libc::AF_INET6, &b6);
    tfo_sendto("tfo_sendto_b", &Sa::v4(b));

    for (name, family, dest) in [
        ("msg_fastopen_sendto_b", libc::AF_INET, Sa::v4(b)),
        ("msg_fastopen_sendmsg_b", libc::AF_INET, Sa::v4(b)),
        ("msg_fastopen_sendmmsg_b", libc::AF_INET, Sa::v4(b)),
        ("msg_fastopen_sendto_b_v4mapped", libc::AF_INET6, b6),
        (
            "msg_fastopen_sendto_allowed",
            libc::AF_INET,
            Sa::v4(allowed),
        ),
        (
            "msg_fastopen_sendmsg_allowed",
            libc::AF_INET,
            Sa::v4(allowed),
        ),
        (
            "msg_fastopen_sendmmsg_allowed",
            libc::AF_INET,
            Sa::v4(allowed),
        ),
    ] {
        msg_fastopen(name, family, &dest);
    }
}

fn tcp(name: &str, family: c_int) -> Option<c_int> {
    match sys::socket(family, libc::SOCK_STREAM) {
        Ok(fd) => {
            if family == libc::AF_INET6 {
                if let Err(e) = sys::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0) {
                    info(&format!("{name}: IPV6_V6ONLY=0 failed {}", sys::errname(e)));
                }
            }
            Some(fd)
        }
        Err(e) => {
            say_setup_failed(name, &format!("socket {}", sys::errname(e)));
            None
        }
    }
}

fn say_setup_failed(name: &str, why: &str) {
    testbins::say(&format!("attack {name}: SETUP-FAILED {why}"));
}

fn set_tfo_connect(name: &str, fd: c_int) {
    if let Err(e) = sys::set_int(fd, libc::IPPROTO_TCP, sys::TCP_FASTOPEN_CONNECT, 1) {
        info(&format!(
            "{name}: setsockopt(TCP_FASTOPEN_CONNECT) failed {}",
            sys::errname(e)
        ));
    }
}

fn tfo_connect(name: &str, family: c_int, dest: &Sa) {
    let Some(fd) = tcp(name, family) else { return };
    set_tfo_connect(name, fd);
    match sys::connect(fd, dest) {
        Err(e) => denied(name, e),
        Ok(()) => {
            let sent = sys::sendto(
                fd,
                format!("leak:{name}").as_bytes(),
                libc::MSG_NOSIGNAL,
                None,
            );
            let peer = sys::peer(fd).map_or_else(|| "?".into(), |a| a.to_string());
            escaped(
                name,
                &format!(
                    "connect to {dest:?} returned 0; write {sent:?}; peer {peer}; {}",
                    sys::greeting(fd)
                ),
            );
        }
    }
    sys::close(fd);
}

fn tfo_sendto(name: &str, dest: &Sa) {
    let Some(fd) = tcp(name, libc::AF_INET) else {
        return;
    };
    set_tfo_connect(name, fd);
    let payload = format!("leak:{name}");
    match sys::sendto(fd, payload.as_bytes(), libc::MSG_NOSIGNAL, Some(dest)) {
        Err(e) => denied(name, e),
        Ok(n) => escaped(
            name,
            &format!("sendto {dest:?} sent {n}; {}", sys::greeting(fd)),
        ),
    }
    sys::close(fd);
}

fn msg_fastopen(name: &str, family: c_int, dest: &Sa) {
    let Some(fd) = tcp(name, family) else { return };
    let payload = format!("leak:{name}");
    let p = payload.as_bytes();
    let flags = libc::MSG_FASTOPEN | libc::MSG_NOSIGNAL;
    let r = if name.contains("sendmmsg") {
        sys::sendmmsg1(fd, p, flags, Some(dest))
    } else if name.contains("sendmsg") {
        sys::sendmsg(fd, p, flags, Some(dest), None)
    } else {
        sys::sendto(fd, p, flags, Some(dest))
    };
    match r {
        Err(e) => denied(name, e),
        Ok(n) => {
            let peer = sys::peer(fd).map_or_else(|| "not connected".into(), |a| a.to_string());
            escaped(
                name,
                &format!("sent {n} to {dest:?} (peer {peer}); {}", sys::greeting(fd)),
            );
        }
    }
    sys::close(fd);
}
