//! `toctou_connect`: races connect(2)'s sockaddr against a supervisor that reads
//! and checks it before the kernel copies it.
//!
//! One `sockaddr_in` lives in a leaked heap buffer. A second thread flips it with
//! volatile writes of the whole struct (sin_addr and sin_port both change) between
//! allowed-addr and b-addr in a tight loop. The main thread, for 3 s or 3000
//! iterations (whichever comes first), creates a TCP socket, calls
//! connect(fd, <raw pointer into the shared buffer>, sizeof(sockaddr_in)), on
//! success getpeername(2)s it, and closes it. Counted: connections to allowed-addr,
//! connections to b-addr (an escape), failed connects by errno.
//!
//! Line: `attempt toctou_connect: ESCAPED <n> connections reached b-addr`, else
//! `attempt toctou_connect: blocked EACCES allowed=<n> denied=<m> other=<k>` where
//! denied counts connects failing with EACCES or EPERM and other counts every other
//! failure (socket(2), other errnos, unexpected/unknown peers). The per-errno
//! breakdown goes to stderr.

use crate::{close_fd, errname, net};
use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbins::{errno, say};

const MAX_ITERS: u32 = 3000;
const MAX_TIME: Duration = Duration::from_secs(3);

/// The leaked shared buffer, as an address so that it can move to the flipper.
#[derive(Clone, Copy, Debug)]
struct SharedAddr(usize);

impl SharedAddr {
    fn ptr(self) -> *mut libc::sockaddr_in {
        self.0 as *mut libc::sockaddr_in
    }
}

fn peer(fd: libc::c_int) -> Option<SocketAddrV4> {
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = net::SIN_LEN;
    let p = (&mut sa as *mut libc::sockaddr_in).cast();
    // SAFETY: p/len describe a live, writable sockaddr_in.
    let r = unsafe { libc::getpeername(fd, p, &mut len) };
    (r == 0).then(|| net::from_sockaddr(&sa))
}

#[derive(Default)]
struct Counts {
    iters: u32,
    allowed: u32,
    to_b: u32,
    odd_peer: u32,
    errs: BTreeMap<i32, u32>,
}

pub fn run(allowed: SocketAddrV4, b: SocketAddrV4) {
    let sa_allowed = testbins::sockaddr(*allowed.ip(), allowed.port());
    let sa_b = testbins::sockaddr(*b.ip(), b.port());
    // Leaked on purpose: the flipper may still write it until it is joined, and a
    // few bytes for the process's lifetime do not matter.
    let shared = SharedAddr(Box::into_raw(Box::new(sa_allowed)) as usize);
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let p = shared.ptr();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    // SAFETY: p points to the leaked, never-freed sockaddr_in; no Rust
                    // code reads it (only the kernel does, inside connect(2)).
                    unsafe {
                        std::ptr::write_volatile(p, sa_b);
                        std::ptr::write_volatile(p, sa_allowed);
                    }
                }
            }
        })
    };

    let c = race(shared, allowed, b);
    stop.store(true, Ordering::Relaxed);
    let _ = flipper.join();

    let denied = c.errs.get(&libc::EACCES).unwrap_or(&0) + c.errs.get(&libc::EPERM).unwrap_or(&0);
    let failed: u32 = c.errs.values().sum();
    let other = failed - denied + c.odd_peer;
    let breakdown: Vec<String> = c
        .errs
        .iter()
        .map(|(e, n)| format!("{}={n}", errname(*e)))
        .collect();
    eprintln!(
        "cross_escape: toctou_connect: iterations={} allowed={} to_b={} odd_peer={} errors=[{}]",
        c.iters,
        c.allowed,
        c.to_b,
        c.odd_peer,
        breakdown.join(",")
    );
    let name = "toctou_connect";
    if c.to_b > 0 {
        say(&format!(
            "attempt {name}: ESCAPED {} connections reached b-addr",
            c.to_b
        ));
    } else {
        say(&format!(
            "attempt {name}: blocked EACCES allowed={} denied={denied} other={other}",
            c.allowed
        ));
    }
}

/// The main thread's connect loop.
fn race(shared: SharedAddr, allowed: SocketAddrV4, b: SocketAddrV4) -> Counts {
    let mut c = Counts::default();
    let start = Instant::now();
    while c.iters < MAX_ITERS && start.elapsed() < MAX_TIME {
        c.iters += 1;
        let fd = match net::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(fd) => fd,
            Err(e) => {
                *c.errs.entry(e).or_default() += 1;
                continue;
            }
        };
        let p = shared.ptr().cast_const().cast();
        // SAFETY: p points to the live leaked sockaddr_in of SIN_LEN bytes; the
        // concurrent writes only change which (valid) address it holds.
        let r = unsafe { libc::connect(fd, p, net::SIN_LEN) };
        if r < 0 {
            *c.errs.entry(errno()).or_default() += 1;
        } else {
            match peer(fd) {
                Some(a) if a == allowed => c.allowed += 1,
                Some(a) if a == b => c.to_b += 1,
                _ => c.odd_peer += 1,
            }
        }
        close_fd(fd);
    }
    c
}
