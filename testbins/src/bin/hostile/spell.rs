//! Class 4: IPv6 spellings of IPv4 addresses, and plain IPv6, from a tenant whose
//! profile allows no peers by address.
//!
//! Addresses (B's address is a.b.c.d):
//! * `v4compat_b` ::a.b.c.d (IPv4-compatible), `v4mapped_b` ::ffff:a.b.c.d,
//!   `v4translated_b` ::ffff:0:a.b.c.d, `nat64_b` 64:ff9b::a.b.c.d, `6to4_b`
//!   2002:aabb:ccdd::1, with B's UDP or TCP port;
//! * `v4compat_host` ::127.0.0.1 with the test's UDP port on 127.0.0.1 (`--host-udp`);
//! * `loopback6` ::1 with the test's UDP6 / TCP6 ports (`--host-udp6`, `--host-tcp6`);
//! * `global6` 2001:db8::1 port 9.
//!
//! Attacks: `udp_<addr>`: sendto from an AF_INET6 UDP socket (IPV6_V6ONLY=0);
//! `sendmsg_<addr>` for v4compat_b and nat64_b; `udp_connect_v4compat_b`: connect a
//! UDP6 socket to ::<B>, then send on it; `tcp_<addr>`: non-blocking connect from an
//! AF_INET6 TCP socket. A datagram carries `leak:<attack>`.
//!
//! Outcomes: a send that returns a count is ESCAPED (the datagram left); a connect that
//! returns 0 or EINPROGRESS is ESCAPED (a SYN left; the detail says whether it
//! connected within 1 s); any other error is `denied errno=<ERRNO>`.

use crate::sys::{self, Sa};
use crate::{denied, escaped, info, Opts};
use std::ffi::c_int;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

fn halves(ip: Ipv4Addr) -> (u16, u16) {
    let o = ip.octets();
    (
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    )
}

/// The spellings of `ip`, by name.
pub fn spellings(ip: Ipv4Addr) -> Vec<(&'static str, Ipv6Addr)> {
    let (hi, lo) = halves(ip);
    vec![
        ("v4compat_b", ip.to_ipv6_compatible()),
        ("v4mapped_b", ip.to_ipv6_mapped()),
        (
            "v4translated_b",
            Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
        ),
        ("nat64_b", Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo)),
        ("6to4_b", Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1)),
    ]
}

fn parse6(o: &Opts, key: &str) -> std::net::SocketAddrV6 {
    o.parsed(key)
}

pub fn run(o: &Opts) {
    let b_tcp = o.addr("b-tcp");
    let b_udp = o.addr("b-udp");
    let host_udp: SocketAddrV4 = o.addr("host-udp");
    let host_udp6 = parse6(o, "host-udp6");
    let host_tcp6 = parse6(o, "host-tcp6");
    let global: Ipv6Addr = "2001:db8::1".parse().expect("static");

    let mut udp: Vec<(String, Sa)> = spellings(*b_udp.ip())
        .into_iter()
        .map(|(n, a)| (format!("udp_{n}"), Sa::v6(a, b_udp.port())))
        .collect();
    udp.push((
        "udp_v4compat_host".into(),
        Sa::v6(Ipv4Addr::LOCALHOST.to_ipv6_compatible(), host_udp.port()),
    ));
    udp.push((
        "udp_loopback6".into(),
        Sa::v6(*host_udp6.ip(), host_udp6.port()),
    ));
    udp.push(("udp_global6".into(), Sa::v6(global, 9)));
    for (name, dest) in &udp {
        info(&format!("{name}: to {dest:?}"));
        datagram(name, dest, false);
    }
    for (n, a) in spellings(*b_udp.ip()) {
        if n == "v4compat_b" || n == "nat64_b" {
            datagram(&format!("sendmsg_{n}"), &Sa::v6(a, b_udp.port()), true);
        }
    }
    udp_connect(
        "udp_connect_v4compat_b",
        &Sa::v6(b_udp.ip().to_ipv6_compatible(), b_udp.port()),
    );

    let mut tcp: Vec<(String, Sa)> = spellings(*b_tcp.ip())
        .into_iter()
        .map(|(n, a)| (format!("tcp_{n}"), Sa::v6(a, b_tcp.port())))
        .collect();
    tcp.push((
        "tcp_loopback6".into(),
        Sa::v6(*host_tcp6.ip(), host_tcp6.port()),
    ));
    tcp.push(("tcp_global6".into(), Sa::v6(global, 9)));
    for (name, dest) in &tcp {
        info(&format!("{name}: to {dest:?}"));
        connect(name, dest);
    }
}

fn socket6(name: &str, ty: c_int) -> Option<c_int> {
    match sys::socket(libc::AF_INET6, ty) {
        Ok(fd) => {
            let _ = sys::set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0);
            Some(fd)
        }
        Err(e) => {
            testbins::say(&format!(
                "attack {name}: SETUP-FAILED socket(AF_INET6) {}",
                sys::errname(e)
            ));
            None
        }
    }
}

fn datagram(name: &str, dest: &Sa, use_sendmsg: bool) {
    let Some(fd) = socket6(name, libc::SOCK_DGRAM) else {
        return;
    };
    let payload = format!("leak:{name}");
    let r = if use_sendmsg {
        sys::sendmsg(fd, payload.as_bytes(), 0, Some(dest), None)
    } else {
        sys::sendto(fd, payload.as_bytes(), 0, Some(dest))
    };
    match r {
        Err(e) => denied(name, e),
        Ok(n) => escaped(name, &format!("sent {n} bytes to {dest:?}")),
    }
    sys::close(fd);
}

fn udp_connect(name: &str, dest: &Sa) {
    let Some(fd) = socket6(name, libc::SOCK_DGRAM) else {
        return;
    };
    match sys::connect(fd, dest) {
        Err(e) => denied(name, e),
        Ok(()) => {
            let sent = sys::sendto(fd, format!("leak:{name}").as_bytes(), 0, None);
            escaped(name, &format!("connected to {dest:?}; send {sent:?}"));
        }
    }
    sys::close(fd);
}

fn connect(name: &str, dest: &Sa) {
    let Some(fd) = socket6(name, libc::SOCK_STREAM | libc::SOCK_NONBLOCK) else {
        return;
    };
    match sys::connect(fd, dest) {
        Ok(()) => escaped(
            name,
            &format!("connected to {dest:?}; {}", sys::greeting(fd)),
        ),
        Err(libc::EINPROGRESS) => {
            let rev = sys::poll1(fd, libc::POLLOUT, 1000);
            let err = sys::sockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR);
            let outcome = match (rev, err) {
                (0, _) => "still connecting after 1s".to_string(),
                (_, Ok(0)) => format!("connected; {}", sys::greeting(fd)),
                (_, Ok(e)) => format!("then failed {}", sys::errname(e)),
                (_, Err(e)) => format!("SO_ERROR unreadable {}", sys::errname(e)),
            };
            escaped(
                name,
                &format!("connect to {dest:?} started (EINPROGRESS: a SYN left): {outcome}"),
            );
        }
        Err(e) => denied(name, e),
    }
    sys::close(fd);
}
