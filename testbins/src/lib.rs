//! Shared helpers for the tenant workload programs in `src/bin/`.
//!
//! Everything here talks to the kernel through `libc` directly so that each
//! program's syscall pattern is exactly what its doc comment says. Progress
//! goes to stdout as whole lines, each emitted with a single write(2) so that
//! lines from threads/children never interleave; errors go to stderr.
//!
//! Common argument: `--timeout-secs N` (default 30, 0 = none). When exceeded,
//! SIGALRM fires, the program prints `timeout` on stderr and exits with 3.

use std::ffi::c_int;

mod args;
mod text;

pub use args::Args;
pub use text::{escape_text, hex, split_pieces, unescape};

/// Exit status used when `--timeout-secs` elapses.
pub const TIMEOUT_EXIT: i32 = 3;

pub(crate) fn prog() -> String {
    let a0 = std::env::args().next().unwrap_or_default();
    a0.rsplit('/').next().unwrap_or("testbin").to_string()
}

pub(crate) fn usage(msg: &str) -> ! {
    eprintln!("{}: usage error: {msg}", prog());
    std::process::exit(2)
}

/// Prints `<prog>: msg` on stderr and exits 1.
pub fn die(msg: &str) -> ! {
    eprintln!("{}: {msg}", prog());
    std::process::exit(1)
}

/// Dies with `what: errno=NAME` using the current errno.
pub fn fail(what: &str) -> ! {
    let e = errno();
    die(&format!(
        "{what}: errno={} ({})",
        errno_name(e),
        std::io::Error::from_raw_os_error(e)
    ))
}

/// Returns `r`, or dies via [`fail`] when it is -1.
pub fn ck(r: c_int, what: &str) -> c_int {
    if r == -1 {
        fail(what)
    }
    r
}

/// Like [`ck`] for ssize_t-returning calls.
pub fn ckz(r: isize, what: &str) -> usize {
    if r < 0 {
        fail(what)
    }
    r as usize
}

/// Current thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Symbolic name of an errno value (`E<num>` for unusual ones).
pub fn errno_name(e: i32) -> String {
    let n = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EALREADY => "EALREADY",
        _ => return format!("E{e}"),
    };
    n.to_string()
}

/// Writes `line` plus '\n' to stdout with one write(2) (retried only on
/// EINTR or a short write, which never happens for pipes below PIPE_BUF).
pub fn say(line: &str) {
    let mut buf = Vec::with_capacity(line.len() + 1);
    buf.extend_from_slice(line.as_bytes());
    buf.push(b'\n');
    write_all_raw(1, &buf);
}

/// write(2) loop used for stdout/stderr; ignores errors other than EINTR.
fn write_all_raw(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; write reads at most buf.len() bytes from it.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return;
        }
        buf = &buf[n as usize..];
    }
}

extern "C" fn on_alarm(_: c_int) {
    let msg = b"timeout\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is a static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(TIMEOUT_EXIT);
    }
}

pub(crate) fn arm_timeout(secs: u32) {
    install_handler(libc::SIGALRM, on_alarm, false);
    // SAFETY: alarm(2) has no memory-safety preconditions.
    unsafe { libc::alarm(secs) };
}

/// sigaction(sig) with `handler`, SA_RESTART iff `restart`, empty mask.
pub fn install_handler(sig: c_int, handler: extern "C" fn(c_int), restart: bool) {
    // SAFETY: sigaction is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler as usize;
    sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
    // SAFETY: sa is fully initialised; handler only does async-signal-safe work
    // (callers' handlers touch atomics and write(2) only); old action is not requested.
    ck(
        unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) },
        "sigaction",
    );
}

/// Host pid: first field of `NSpid:` in /proc/self/status, else getpid().
pub fn host_pid() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok());
    // SAFETY: getpid(2) has no preconditions.
    nspid.unwrap_or_else(|| i64::from(unsafe { libc::getpid() }))
}

/// Prints the `ready pid=<host_pid>` line.
pub fn say_ready() {
    say(&format!("ready pid={}", host_pid()));
}

/// sockaddr_in for `ip:port`.
pub fn sockaddr(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from(ip).to_be();
    sa
}

/// socket(AF_INET, SOCK_STREAM[|SOCK_NONBLOCK]), SO_REUSEADDR, bind
/// 127.0.0.1:port, listen(128). Returns the listening fd.
pub fn listen_tcp(port: u16, nonblock: bool) -> c_int {
    let ty = libc::SOCK_STREAM | if nonblock { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: socket(2) takes only integer arguments.
    let fd = ck(unsafe { libc::socket(libc::AF_INET, ty, 0) }, "socket");
    let one: c_int = 1;
    let len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: &one points to a live c_int and len is its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const c_int).cast(),
            len,
        )
    };
    ck(r, "setsockopt(SO_REUSEADDR)");
    let sa = sockaddr(std::net::Ipv4Addr::LOCALHOST, port);
    let salen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a live sockaddr_in and salen is its size.
    ck(
        unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), salen) },
        "bind",
    );
    // SAFETY: listen(2) takes only integer arguments.
    ck(unsafe { libc::listen(fd, 128) }, "listen");
    fd
}

/// accept(lfd, NULL, NULL), retried on EINTR. Dies on other errors.
pub fn accept_conn(lfd: c_int) -> c_int {
    loop {
        // SAFETY: NULL addr/addrlen are allowed by accept(2).
        let fd = unsafe { libc::accept(lfd, std::ptr::null_mut(), std::ptr::null_mut()) };
        if fd >= 0 {
            return fd;
        }
        if errno() != libc::EINTR {
            fail("accept");
        }
    }
}

/// poll(fd, events, timeout_ms) on one fd; returns revents (0 on timeout).
pub fn poll1(fd: c_int, events: i16, timeout_ms: c_int) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: p is one live pollfd and nfds is 1.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r >= 0 {
            return if r == 0 { 0 } else { p.revents };
        }
        if errno() != libc::EINTR {
            fail("poll");
        }
    }
}

/// Sends all of `buf` with send(fd, .., 0) (the sendto syscall with NULL
/// address on x86_64); retries EINTR; on EAGAIN waits with poll(POLLOUT).
pub fn send_all(fd: c_int, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; send reads at most buf.len() bytes.
        let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            buf = &buf[n as usize..];
            continue;
        }
        match errno() {
            libc::EINTR => {}
            libc::EAGAIN => {
                poll1(fd, libc::POLLOUT, -1);
            }
            _ => fail("send"),
        }
    }
}

/// close(2), dying on error.
pub fn close(fd: c_int, what: &str) {
    // SAFETY: the caller owns fd and does not use it afterwards.
    ck(unsafe { libc::close(fd) }, what);
}
