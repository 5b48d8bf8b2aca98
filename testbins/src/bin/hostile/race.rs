//! Class 2: check-then-CONTINUE races on what fd N is.
//!
//! Fd N starts as a unix socket. A flipper thread loops `dup2(U, N); dup2(I, N)`, where
//! U is a unix socket and I the IP socket of the current try, so N keeps switching
//! between "unix" (which a supervisor may let the kernel handle) and "IP" (which it
//! must decide on). The main thread, per try: makes a fresh IP socket, makes it the
//! current I, makes the racing call on N, then checks the fresh socket and the previous
//! one (the call may have hit either) for an escape. A race ends after `--tries`
//! (default 2000) tries, `--secs` (default 4) seconds or 10 escapes, whichever first.
//!
//! Races (`--which a,b,...`):
//! * `fastopen_tcp`: sendto(N, MSG_FASTOPEN, B's TCP address); escape: the TCP socket
//!   is connected to B (B's greeting, which holds its secret, is read).
//! * `connect_tcp`: connect(N, B's TCP address); escape as above.
//! * `connect_udp`: connect(N, B's UDP address); escape: a UDP socket connected to B
//!   (a datagram `leak:race_connect_udp` is then sent on it).
//! * `bind_tcp_b` / `bind_udp_b`: bind(N, B's second address:0); escape: bound there.
//! * `bind_tcp_wild` / `bind_udp_wild`: bind(N, 0.0.0.0:0); escape: bound to the
//!   wildcard.
//! * `listen`: listen(N) on an unbound TCP socket; escape: listening on the wildcard.
//! * `sendmsg_b`: sendmsg(N, name = B's UDP address); escape: the call succeeded (a
//!   unix socket refuses an AF_INET name; the supervisor must say EACCES).
//! * `sendmsg_pktinfo`: sendmsg(N, name = the test's UDP socket on 127.0.0.1, an
//!   IP_PKTINFO source in B's range); escape: the call succeeded.
//!
//! On the first escape of a bind or listen race A shows what the socket gets: a bound
//! TCP socket is made to listen; then A prints `poke udp|tcp IP:PORT` (B's address, or
//! B's second address, with the port A got) and waits up to 3 s for the test's datagram
//! or connection. Lines: `race <name>: tries=<n> escapes=<m> errors=<ERRNO:count,...>`
//! (`ok:count` for calls that returned success), `race-detail <name>: ...` for the first
//! 3 escapes, `info race <name>: flips=<n>`.

use crate::sys::{self, Cmsg, Sa};
use crate::{info, Opts};
use std::collections::BTreeMap;
use std::ffi::c_int;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbins::{escape_text, say};

const MAX_ESCAPES: u32 = 10;

#[derive(Debug, Clone, Copy)]
struct Cfg {
    b_tcp: SocketAddrV4,
    b_udp: SocketAddrV4,
    b_ip2: Ipv4Addr,
    host_udp: SocketAddrV4,
    tries: u32,
    secs: u64,
}

pub fn run(o: &Opts) {
    let cfg = Cfg {
        b_tcp: o.addr("b-tcp"),
        b_udp: o.addr("b-udp"),
        b_ip2: o.ip("b-ip2"),
        host_udp: o.addr("host-udp"),
        tries: o.opt("tries").map_or(2000, |_| o.parsed("tries")),
        secs: o.opt("secs").map_or(4, |_| o.parsed("secs")),
    };
    for which in o.req("which").split(',') {
        race(which, &cfg);
    }
}

/// The racing call on N.
fn op(which: &str, c: &Cfg, n: c_int) -> Result<usize, i32> {
    let payload = format!("leak:race_{which}");
    let p = payload.as_bytes();
    let any = Sa::v4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    let b_ip2 = Sa::v4(SocketAddrV4::new(c.b_ip2, 0));
    match which {
        "fastopen_tcp" => sys::sendto(n, p, libc::MSG_FASTOPEN, Some(&Sa::v4(c.b_tcp))),
        "connect_tcp" => sys::connect(n, &Sa::v4(c.b_tcp)).map(|()| 0),
        "connect_udp" => sys::connect(n, &Sa::v4(c.b_udp)).map(|()| 0),
        "bind_tcp_b" | "bind_udp_b" => sys::bind(n, &b_ip2).map(|()| 0),
        "bind_tcp_wild" | "bind_udp_wild" => sys::bind(n, &any).map(|()| 0),
        "listen" => {
            // SAFETY: listen(2) takes only integers.
            if unsafe { libc::listen(n, 8) } < 0 {
                Err(testbins::errno())
            } else {
                Ok(0)
            }
        }
        "sendmsg_b" => sys::sendmsg(n, p, 0, Some(&Sa::v4(c.b_udp)), None),
        "sendmsg_pktinfo" => sys::sendmsg(
            n,
            p,
            0,
            Some(&Sa::v4(c.host_udp)),
            Some(&Cmsg::pktinfo(c.b_ip2)),
        ),
        w => crate::usage(&format!("unknown race {w:?}")),
    }
}

/// The IP socket type of a race (the unix socket is of the same type).
fn sock_type(which: &str) -> c_int {
    match which {
        "connect_udp" | "bind_udp_b" | "bind_udp_wild" | "sendmsg_b" | "sendmsg_pktinfo" => {
            libc::SOCK_DGRAM
        }
        _ => libc::SOCK_STREAM,
    }
}

fn v4(a: Option<SocketAddr>) -> Option<SocketAddrV4> {
    a.and_then(sys::v4_of)
}

/// Waits up to 3 s for a datagram on `s` (after a `poke udp`).
fn poked_datagram(s: libc::c_int, at: SocketAddrV4) -> String {
    say(&format!("poke udp {at}"));
    match sys::read_within(s, 3000) {
        Some(d) => format!("received \"{}\" sent to {at}", escape_text(&d)),
        None => format!("nothing received at {at} within 3s"),
    }
}

/// Waits up to 3 s for a connection on listening `s` (after a `poke tcp`).
fn poked_connection(s: libc::c_int, at: SocketAddrV4) -> String {
    say(&format!("poke tcp {at}"));
    if sys::poll1(s, libc::POLLIN, 3000) == 0 {
        return format!("no connection to {at} within 3s");
    }
    // SAFETY: NULL addr/addrlen are allowed by accept4(2).
    let c = unsafe {
        libc::accept4(
            s,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK,
        )
    };
    if c < 0 {
        return format!("accept failed {}", sys::errname(testbins::errno()));
    }
    let to = sys::local(c).map_or_else(|| "?".into(), |a| a.to_string());
    sys::close(c);
    format!("accepted a connection addressed to {to}")
}

/// Escape detail if socket `s` shows one. `first`: the race's first escape (show
/// what the socket receives).
fn check(
    which: &str,
    c: &Cfg,
    s: c_int,
    r: Result<usize, i32>,
    fresh: bool,
    first: bool,
) -> Option<String> {
    match which {
        "fastopen_tcp" | "connect_tcp" => (v4(sys::peer(s)) == Some(c.b_tcp)).then(|| {
            format!(
                "TCP socket connected to B {}: {}",
                c.b_tcp,
                sys::greeting(s)
            )
        }),
        "connect_udp" => (v4(sys::peer(s)) == Some(c.b_udp)).then(|| {
            let sent = sys::sendto(s, b"leak:race_connect_udp", 0, None);
            format!("UDP socket connected to B {}: send {sent:?}", c.b_udp)
        }),
        "bind_tcp_b" | "bind_udp_b" | "bind_tcp_wild" | "bind_udp_wild" => {
            let at = v4(sys::local(s))?;
            let hit = if which.ends_with("_b") {
                *at.ip() == c.b_ip2
            } else {
                at.ip().is_unspecified() && at.port() != 0
            };
            if !hit {
                return None;
            }
            let mut d = format!("bound {at}");
            if first {
                let target = if which.ends_with("_b") {
                    at
                } else {
                    SocketAddrV4::new(*c.b_tcp.ip(), at.port())
                };
                if which.starts_with("bind_udp") {
                    d.push_str(&format!(", {}", poked_datagram(s, target)));
                } else {
                    // SAFETY: listen(2) takes only integers.
                    let l = unsafe { libc::listen(s, 8) };
                    if l == 0 {
                        d.push_str(&format!(", listening: {}", poked_connection(s, target)));
                    } else {
                        d.push_str(", listen refused");
                    }
                }
            }
            Some(d)
        }
        "listen" => {
            let at = v4(sys::local(s))?;
            let listening = sys::sockopt_int(s, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) == Ok(1);
            if !(listening && at.ip().is_unspecified()) {
                return None;
            }
            let mut d = format!("listening on the wildcard {at}");
            if first {
                let target = SocketAddrV4::new(*c.b_tcp.ip(), at.port());
                d.push_str(&format!(", {}", poked_connection(s, target)));
            }
            Some(d)
        }
        "sendmsg_b" | "sendmsg_pktinfo" => match r {
            Ok(n) if fresh => Some(format!("sendmsg returned {n}")),
            _ => None,
        },
        _ => None,
    }
}

fn race(which: &str, c: &Cfg) {
    let ty = sock_type(which);
    let unix = |what: &str| {
        sys::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC).unwrap_or_else(|e| {
            testbins::die(&format!("socket(unix) for {what}: {}", sys::errname(e)))
        })
    };
    let u = unix("U");
    let n = unix("N");
    let cur = Arc::new(AtomicI32::new(-1));
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (cur, stop) = (Arc::clone(&cur), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut flips = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = sys::dup2(u, n);
                let i = cur.load(Ordering::Relaxed);
                if i >= 0 {
                    let _ = sys::dup2(i, n);
                }
                flips += 1;
            }
            flips
        })
    };

    let start = Instant::now();
    let (mut tries, mut escapes) = (0u32, 0u32);
    let mut errs: BTreeMap<String, u32> = BTreeMap::new();
    // (fd, already counted as an escape)
    let mut prev: Option<(c_int, bool)> = None;
    while tries < c.tries && start.elapsed() < Duration::from_secs(c.secs) && escapes < MAX_ESCAPES
    {
        let fresh = match sys::socket(libc::AF_INET, ty | libc::SOCK_CLOEXEC) {
            Ok(fd) => fd,
            Err(e) => {
                *errs
                    .entry(format!("socket:{}", sys::errname(e)))
                    .or_default() += 1;
                tries += 1;
                continue;
            }
        };
        cur.store(fresh, Ordering::SeqCst);
        let r = op(which, c, n);
        tries += 1;
        let key = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => sys::errname(e),
        };
        *errs.entry(key).or_default() += 1;
        let mut fresh_counted = false;
        let mut slots = vec![(fresh, true)];
        if let Some((p, counted)) = prev {
            if !counted {
                slots.push((p, false));
            }
        }
        for (s, is_fresh) in slots {
            if let Some(d) = check(which, c, s, r, is_fresh, escapes == 0) {
                escapes += 1;
                if escapes <= 3 {
                    say(&format!(
                        "race-detail {which}: escape {escapes} at try {tries}: {d}"
                    ));
                }
                if is_fresh {
                    fresh_counted = true;
                } else if let Some(p) = prev.as_mut() {
                    p.1 = true;
                }
            }
        }
        if let Some((p, _)) = prev {
            sys::close(p);
        }
        prev = Some((fresh, fresh_counted));
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap_or(0);
    if let Some((p, _)) = prev {
        sys::close(p);
    }
    sys::close(n);
    sys::close(u);
    let errors: Vec<String> = errs.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    info(&format!(
        "race {which}: flips={flips} elapsed_ms={}",
        start.elapsed().as_millis()
    ));
    say(&format!(
        "race {which}: tries={tries} escapes={escapes} errors={}",
        errors.join(",")
    ));
}
