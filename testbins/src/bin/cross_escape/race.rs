//! `fd_swap_connect`: races the *socket behind an fd number* against a supervisor
//! that inspects fd N in the tenant and then lets the kernel run connect(N, ...).
//!
//! The main thread creates a TCP socket; its number N is the lowest free fd. A
//! swapper thread loops: close(N), then socket(AF_INET, SOCK_STREAM), which lands
//! on N again (lowest free fd; dup2/dup3 are not used). A socket landing elsewhere
//! (M) is closed at once; if M > N, N was taken by something else, so the swapper
//! stops rather than close a foreign fd. Meanwhile the main thread, for 2 s or
//! 5000 iterations, calls blocking connect(N, b-addr); on success getpeername(N)
//! equal to b-addr counts as a connection to B (an escape). Failures are counted
//! by errno. Afterwards the swapper is joined and N closed.
//!
//! Line: `attempt fd_swap_connect: ESCAPED <n> connections reached b-addr`, or,
//! if connect(N, b-addr) returned 0 but the peer could not be confirmed (the
//! socket was swapped before getpeername), `ESCAPED <n> connects to b-addr
//! returned 0 (peer not verified)`, else `attempt fd_swap_connect: blocked
//! <most common ERRNO> tries=<n> errors=<ERRNO:count,...>` (errors sorted by
//! errno value; `blocked none tries=0 errors=` if nothing was tried).

use crate::{close_fd, errname, net};
use std::collections::BTreeMap;
use std::ffi::c_int;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use testbins::{errno, say};

const MAX_ITERS: u32 = 5000;
const MAX_TIME: Duration = Duration::from_secs(2);
const NAME: &str = "fd_swap_connect";

/// getpeername(2) of an AF_INET socket.
fn peer(fd: c_int) -> Option<SocketAddrV4> {
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = net::SIN_LEN;
    let p = (&mut sa as *mut libc::sockaddr_in).cast();
    // SAFETY: p/len describe a live, writable sockaddr_in.
    let r = unsafe { libc::getpeername(fd, p, &mut len) };
    (r == 0).then(|| net::from_sockaddr(&sa))
}

#[derive(Debug, Default)]
struct Counts {
    tries: u32,
    to_b: u32,
    unverified: u32,
    errs: BTreeMap<i32, u32>,
}

/// What the swapper did, for the stderr note.
#[derive(Debug, Default)]
struct Swaps {
    landed: u64,
    missed: u64,
    socket_errs: u64,
    gave_up_at: Option<c_int>,
}

/// Swapper thread body: close(n) + socket() until `stop` or MAX_TIME.
fn swap(n: c_int, stop: &AtomicBool) -> Swaps {
    let mut s = Swaps::default();
    let start = Instant::now();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < MAX_TIME {
        // fd n is ours (only this program's two threads touch fds during the
        // race); closing it while the main thread uses the number is only an
        // integer race: the kernel resolves the number on each syscall.
        close_fd(n);
        match net::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(fd) if fd == n => s.landed += 1,
            Ok(fd) => {
                s.missed += 1;
                close_fd(fd);
                if fd > n {
                    // n is occupied by someone else's fd: never close it.
                    s.gave_up_at = Some(fd);
                    break;
                }
            }
            Err(_) => s.socket_errs += 1,
        }
    }
    s
}

pub fn run(b: SocketAddrV4) {
    let n = match net::socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(fd) => fd,
        Err(_) => return crate::blocked_at(NAME, "socket(AF_INET)"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || swap(n, &stop))
    };
    let c = race(n, b);
    stop.store(true, Ordering::Relaxed);
    let s = swapper.join().unwrap_or_default();
    // Whatever sits at n now is the swapper's last socket (or nothing), unless it
    // gave up because n belonged to someone else.
    if s.gave_up_at.is_none() {
        close_fd(n);
    }
    report(n, &c, &s);
}

/// The main thread's connect loop on fd number n.
fn race(n: c_int, b: SocketAddrV4) -> Counts {
    let sa = testbins::sockaddr(*b.ip(), b.port());
    let p = (&sa as *const libc::sockaddr_in).cast();
    let mut c = Counts::default();
    let start = Instant::now();
    while c.tries < MAX_ITERS && start.elapsed() < MAX_TIME {
        c.tries += 1;
        // SAFETY: p points to the live local sa of SIN_LEN bytes; n is an integer
        // the kernel resolves (EBADF if the swapper has it closed right now).
        let r = unsafe { libc::connect(n, p, net::SIN_LEN) };
        if r < 0 {
            *c.errs.entry(errno()).or_default() += 1;
        } else if peer(n) == Some(b) {
            c.to_b += 1;
        } else {
            c.unverified += 1;
        }
    }
    c
}

fn report(n: c_int, c: &Counts, s: &Swaps) {
    let errors: Vec<String> = c
        .errs
        .iter()
        .map(|(e, k)| format!("{}:{k}", errname(*e)))
        .collect();
    let errors = errors.join(",");
    eprintln!(
        "cross_escape: {NAME}: fd={n} tries={} to_b={} unverified={} errors=[{errors}] \
         swaps landed={} missed={} socket_errs={} gave_up_at={:?}",
        c.tries, c.to_b, c.unverified, s.landed, s.missed, s.socket_errs, s.gave_up_at
    );
    if c.to_b > 0 {
        say(&format!(
            "attempt {NAME}: ESCAPED {} connections reached b-addr",
            c.to_b
        ));
    } else if c.unverified > 0 {
        say(&format!(
            "attempt {NAME}: ESCAPED {} connects to b-addr returned 0 (peer not verified)",
            c.unverified
        ));
    } else {
        // Most common errno; ties go to the lowest errno value.
        let top = c
            .errs
            .iter()
            .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
            .map_or_else(|| "none".to_string(), |(e, _)| errname(*e));
        say(&format!(
            "attempt {NAME}: blocked {top} tries={} errors={errors}",
            c.tries
        ));
    }
}
