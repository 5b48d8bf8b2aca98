//! Thin, safe wrappers over the few syscalls the supervisor itself makes.
//!
//! Each wrapper owns its `unsafe` block and returns `io::Result`; callers never see a
//! raw return code. Descriptors come back as [`OwnedFd`] so they cannot leak.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Turns a `-1`-on-error return into `io::Result`.
fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a descriptor a syscall just returned.
fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful syscall that creates a descriptor;
    // nothing else owns it, so wrapping it transfers sole ownership.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// `pidfd_getfd`: a duplicate of descriptor `fd` of the process behind `pidfd`.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: all arguments are integers passed by value; the kernel installs a new
    // descriptor in our table, which we take ownership of below.
    let ret = check(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })?;
    Ok(owned(ret))
}

/// `pidfd_send_signal(pidfd, sig)`.
/// A connected SOCK_SEQPACKET pair, close-on-exec.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut pair = [0 as RawFd; 2];
    // SAFETY: `pair` is writable for two ints.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) })
}

/// Writes `msg` to stderr and `_exit`s with `code`: for forked children, which must not
/// allocate, lock or run destructors.
pub fn write_stderr_and_exit(msg: &[u8], code: libc::c_int) -> ! {
    // SAFETY: `msg` is a valid byte slice; _exit never returns and runs no destructors.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

/// A new socket whose inode (and so `sk_uid`, what `/proc/net` and `ss` show as its
/// owner) belongs to `uid`: created with this thread's fsuid switched to it.
pub fn socket_as(
    uid: libc::uid_t,
    domain: libc::c_int,
    ty: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: setfsuid takes an integer and changes only this thread's fsuid, which is
    // restored below; socket takes integers.
    let fd = unsafe {
        let old = libc::setfsuid(uid);
        let fd = libc::socket(domain, ty, protocol);
        let error = io::Error::last_os_error();
        libc::setfsuid(old as libc::uid_t);
        if fd < 0 {
            return Err(error);
        }
        fd
    };
    Ok(owned(fd as libc::c_long))
}

/// Whether processes (or threads) `a` and `b` use the same fd table (`kcmp` with
/// KCMP_FILES: the kernel compares the tables themselves).
pub fn same_fd_table(a: libc::pid_t, b: libc::pid_t) -> io::Result<bool> {
    const KCMP_FILES: libc::c_long = 2;
    // SAFETY: integer arguments only.
    let r = check(unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) })?;
    Ok(r == 0)
}

pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: a null siginfo asks the kernel to build one; other arguments are integers.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// The inode number of an open descriptor and whether it is a socket (sockets are
/// identified by inode); see [`file_id`].
pub fn inode_of(fd: BorrowedFd<'_>) -> io::Result<(u64, bool)> {
    file_id(fd).map(|(_, ino, socket)| (ino, socket))
}

/// Copies `local` into the tenant's memory described by `remote` iovecs.
pub fn process_vm_write(
    pid: libc::pid_t,
    local: &[u8],
    remote: &[libc::iovec],
) -> io::Result<usize> {
    let local_iov = libc::iovec {
        iov_base: local.as_ptr() as *mut libc::c_void,
        iov_len: local.len(),
    };
    // SAFETY: the local iovec points into `local`, which is valid for reads of its
    // length; remote addresses are the tenant's and are checked by the kernel (EFAULT).
    let ret = unsafe {
        libc::process_vm_writev(pid, &local_iov, 1, remote.as_ptr(), remote.len() as _, 0)
    };
    Ok(check(ret as libc::c_long)? as usize)
}

/// Copies from the tenant's memory described by `remote` iovecs into `local`.
pub fn process_vm_read(
    pid: libc::pid_t,
    local: &mut [u8],
    remote: &[libc::iovec],
) -> io::Result<usize> {
    let local_iov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    // SAFETY: the local iovec points into `local`, valid for writes of its length; the
    // remote side is the tenant's memory, which the kernel checks.
    let ret = unsafe {
        libc::process_vm_readv(pid, &local_iov, 1, remote.as_ptr(), remote.len() as _, 0)
    };
    Ok(check(ret as libc::c_long)? as usize)
}

/// `recv(fd, buf, flags)`.
pub fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    let ret = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    Ok(check(ret as libc::c_long)? as usize)
}

/// `send(fd, buf, flags)`.
pub fn send(fd: BorrowedFd<'_>, buf: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    let ret = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) };
    Ok(check(ret as libc::c_long)? as usize)
}

/// Whether the open file description has `O_NONBLOCK` (shared with the tenant's fd).
pub fn is_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFL takes no pointer argument.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())?;
    Ok(flags as libc::c_int & libc::O_NONBLOCK != 0)
}

/// Sets or clears `O_NONBLOCK` on the open file description; returns the old flags.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL takes no pointer argument.
    let old = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())? as libc::c_int;
    let new = if on {
        old | libc::O_NONBLOCK
    } else {
        old & !libc::O_NONBLOCK
    };
    if new != old {
        // SAFETY: F_SETFL takes an int by value.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) }.into())?;
    }
    Ok(old)
}

/// Restores file status flags saved by [`set_nonblocking`].
pub fn restore_flags(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int by value.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) }.into())?;
    Ok(())
}

/// Polls one descriptor without blocking; returns the revents.
pub fn poll_now(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd for the duration of the call.
    check(unsafe { libc::poll(&mut pfd, 1, 0) }.into())?;
    Ok(pfd.revents)
}

/// `getsockopt(SOL_SOCKET, opt)` for an int-valued option.
pub fn sockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes and `len` states value's size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    check(rc.into())?;
    Ok(value)
}

/// A socket address as raw bytes (what the kernel reads and writes).
#[derive(Clone, Copy)]
pub struct SockAddr {
    /// Storage large enough for any family.
    pub storage: libc::sockaddr_storage,
    /// Valid length.
    pub len: libc::socklen_t,
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.as_std() {
            Some(addr) => write!(f, "{addr}"),
            None => write!(f, "<family {}>", self.family()),
        }
    }
}

impl SockAddr {
    /// An empty address buffer for the kernel to fill.
    pub fn empty() -> SockAddr {
        SockAddr {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// Builds an address from bytes copied out of tenant memory.
    pub fn from_bytes(bytes: &[u8]) -> Option<SockAddr> {
        let mut addr = SockAddr::empty();
        if bytes.len() > std::mem::size_of::<libc::sockaddr_storage>() || bytes.len() < 2 {
            return None;
        }
        // SAFETY: `bytes.len()` fits in the storage (checked above), and both regions
        // are valid and distinct.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut addr.storage as *mut libc::sockaddr_storage).cast::<u8>(),
                bytes.len(),
            );
        }
        addr.len = bytes.len() as libc::socklen_t;
        Some(addr)
    }

    /// A std address in the kernel's layout (sockaddr_in / sockaddr_in6).
    pub fn from_std(addr: std::net::SocketAddr) -> SockAddr {
        let mut out = SockAddr::empty();
        let bytes: Vec<u8> = match addr {
            std::net::SocketAddr::V4(v4) => {
                let mut b = vec![0u8; std::mem::size_of::<libc::sockaddr_in>()];
                b[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&v4.port().to_be_bytes());
                b[4..8].copy_from_slice(&v4.ip().octets());
                b
            }
            std::net::SocketAddr::V6(v6) => {
                let mut b = vec![0u8; std::mem::size_of::<libc::sockaddr_in6>()];
                b[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
                b[2..4].copy_from_slice(&v6.port().to_be_bytes());
                b[8..24].copy_from_slice(&v6.ip().octets());
                b
            }
        };
        if let Some(addr) = SockAddr::from_bytes(&bytes) {
            out = addr;
        }
        out
    }

    /// The valid bytes of the address.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: storage is plain data of at least `len` bytes (len never exceeds it).
        unsafe {
            std::slice::from_raw_parts(
                (&self.storage as *const libc::sockaddr_storage).cast::<u8>(),
                self.len as usize,
            )
        }
    }

    /// The address as a std type (IPv4/IPv6 only), for logs.
    pub fn as_std(&self) -> Option<std::net::SocketAddr> {
        let b = self.as_bytes();
        let port = self.port()?;
        match self.family() as libc::c_int {
            libc::AF_INET if b.len() >= 8 => {
                let ip = std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]);
                Some(std::net::SocketAddr::new(ip.into(), port))
            }
            libc::AF_INET6 if b.len() >= 24 => {
                let octets: [u8; 16] = b[8..24].try_into().ok()?;
                let ip = std::net::Ipv6Addr::from(octets);
                Some(std::net::SocketAddr::new(ip.into(), port))
            }
            _ => None,
        }
    }

    /// Address family.
    pub fn family(&self) -> libc::sa_family_t {
        self.storage.ss_family
    }

    /// Port for AF_INET/AF_INET6 addresses.
    pub fn port(&self) -> Option<u16> {
        let bytes = self.as_bytes();
        match self.family() as libc::c_int {
            libc::AF_INET | libc::AF_INET6 if bytes.len() >= 4 => {
                Some(u16::from_be_bytes([bytes[2], bytes[3]]))
            }
            _ => None,
        }
    }
}

/// `getsockname(fd)`.
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<SockAddr> {
    let mut addr = SockAddr::empty();
    // SAFETY: storage and len are valid for writes; len states the storage size.
    let rc = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
            &mut addr.len,
        )
    };
    check(rc.into())?;
    Ok(addr)
}

/// `accept4(fd, flags)` returning the new socket and the peer's address.
pub fn accept4(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<(OwnedFd, SockAddr)> {
    let mut addr = SockAddr::empty();
    // SAFETY: storage and len are valid for writes; len states the storage size.
    let ret = check(
        unsafe {
            libc::accept4(
                fd.as_raw_fd(),
                (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
                &mut addr.len,
                flags,
            )
        }
        .into(),
    )?;
    Ok((owned(ret), addr))
}

/// `connect(fd, addr)`.
pub fn connect(fd: BorrowedFd<'_>, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: the address points at our own copy, valid for `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr.storage as *const libc::sockaddr_storage).cast(),
            addr.len,
        )
    };
    check(rc.into())?;
    Ok(())
}

/// `bind(fd, addr)`.
pub fn bind(fd: BorrowedFd<'_>, addr: &SockAddr) -> io::Result<()> {
    // SAFETY: the address points at our own copy, valid for `len` bytes.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr.storage as *const libc::sockaddr_storage).cast(),
            addr.len,
        )
    };
    check(rc.into())?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) }.into())?;
    Ok(())
}

/// A socket timeout option (SO_RCVTIMEO / SO_SNDTIMEO); `None` when it is zero (wait
/// forever).
pub fn sockopt_timeout(
    fd: BorrowedFd<'_>,
    name: libc::c_int,
) -> io::Result<Option<std::time::Duration>> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid for writes and `len` states tv's size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    check(rc.into())?;
    let timeout = std::time::Duration::from_secs(tv.tv_sec.max(0) as u64)
        + std::time::Duration::from_micros(tv.tv_usec.max(0) as u64);
    Ok((!timeout.is_zero()).then_some(timeout))
}

/// Sets an int socket option.
pub fn set_sockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    check(rc.into())?;
    Ok(())
}

/// `sendto(fd, buf, flags, addr)`.
pub fn send_to(
    fd: BorrowedFd<'_>,
    buf: &[u8],
    flags: libc::c_int,
    addr: &SockAddr,
) -> io::Result<usize> {
    // SAFETY: `buf` and the address are our own buffers, valid for their lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            flags,
            (&addr.storage as *const libc::sockaddr_storage).cast(),
            addr.len,
        )
    };
    Ok(check(n as i64)? as usize)
}

/// Closes a connection with a reset (SO_LINGER 0): the peer learns it was refused
/// instead of seeing an orderly end of stream.
pub fn close_with_reset(fd: OwnedFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid struct of the stated size; the fd is ours.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(fd);
}

/// `shutdown(fd, how)`.
pub fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::shutdown(fd.as_raw_fd(), how) }.into())?;
    Ok(())
}

/// `tgkill(tgid, tid, sig)`: delivers a signal to one tenant thread (e.g. SIGPIPE).
pub fn tgkill(tgid: libc::pid_t, tid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) })?;
    Ok(())
}

/// `readlink` into a String (for /proc links); `None` if the link is gone.
pub fn read_link(path: &CStr) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    // SAFETY: `path` is NUL-terminated; `buf` is valid for writes of its length.
    let ret = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if ret < 0 {
        None
    } else {
        Some(buf[..ret as usize].to_vec())
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (each tracked connection
/// costs the supervisor a descriptor or two); returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }.into())?;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit read by the call.
        check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }.into())?;
    }
    Ok(limit.rlim_max)
}

#[cfg(test)]
mod tests {
    use super::SockAddr;

    #[test]
    fn inet_addresses_print_as_ip_and_port() {
        let v4 = [2u8, 0, 0x1f, 0x90, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let addr = SockAddr::from_bytes(
            &(libc::AF_INET as u16)
                .to_ne_bytes()
                .iter()
                .chain(&v4[2..])
                .copied()
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert_eq!(format!("{addr:?}"), "127.0.0.1:8080");
        assert_eq!(addr.port(), Some(8080));
    }
}

// --- added for launch/ rustix conversion ---

/// `_exit(code)`: ends this process at once, without atexit handlers, stdio flushes or
/// destructors; for forked children (async-signal-safe, allocation-free).
pub fn exit_now(code: libc::c_int) -> ! {
    // SAFETY: _exit takes an integer and never returns; it touches no memory of ours.
    unsafe { libc::_exit(code) }
}

/// `unshare(flags)` for namespace flags only (CLONE_NEW*); anything else is refused with
/// EINVAL before the call. Raw syscall, allocation-free (usable after fork).
pub fn unshare_namespaces(flags: rustix::thread::UnshareFlags) -> rustix::io::Result<()> {
    use rustix::thread::UnshareFlags as F;
    let namespaces = F::NEWNS
        | F::NEWCGROUP
        | F::NEWUTS
        | F::NEWIPC
        | F::NEWUSER
        | F::NEWPID
        | F::NEWNET
        | F::NEWTIME;
    if !namespaces.contains(flags) {
        return Err(rustix::io::Errno::INVAL);
    }
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES (threads would stop
    // sharing the descriptor table, so an fd one thread owns could be another's in the
    // other); the check above admits namespace flags only, which leave the fd table
    // (and every memory object) shared as before.
    unsafe { rustix::thread::unshare_unsafe(flags) }
}

/// A socket address given as raw bytes (as a caller encoded it), passed to the kernel
/// as is: it validates family and length itself.
#[derive(Debug, Clone, Copy)]
pub struct RawSockAddr<'a>(&'a [u8]);

impl<'a> RawSockAddr<'a> {
    /// `None` when `bytes` is longer than any socket address (`sockaddr_storage`).
    pub fn new(bytes: &'a [u8]) -> Option<RawSockAddr<'a>> {
        (bytes.len() <= std::mem::size_of::<libc::sockaddr_storage>()).then_some(RawSockAddr(bytes))
    }
}

// SAFETY: `with_sockaddr` hands `f` a pointer to the borrowed bytes with their exact
// length (at most 128, checked in `new`, so the cast is lossless), readable for the
// whole call; the kernel copies and checks the address, so any content is acceptable
// to the calls that take a `const struct sockaddr *`.
unsafe impl rustix::net::addr::SocketAddrArg for RawSockAddr<'_> {
    unsafe fn with_sockaddr<R>(
        &self,
        f: impl FnOnce(
            *const rustix::net::addr::SocketAddrOpaque,
            rustix::net::addr::SocketAddrLen,
        ) -> R,
    ) -> R {
        f(
            self.0.as_ptr().cast(),
            self.0.len() as rustix::net::addr::SocketAddrLen,
        )
    }
}

/// Blocks every signal in this thread (`sigprocmask(SIG_SETMASK, full set)`) and returns
/// the full set, for `sigwaitinfo`. Allocation-free: usable after fork.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data (all-zero is a valid value); sigfillset initialises
    // the local set, sigprocmask only reads it (no old mask wanted).
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        all
    }
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`: marks every descriptor from `first` on
/// close-on-exec (closes none). Allocation-free: usable after fork.
pub fn cloexec_from(first: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: integers only; with CLOSE_RANGE_CLOEXEC the kernel closes nothing, so no
    // descriptor an `OwnedFd` or `BorrowedFd` names is invalidated.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Device, inode and whether it is a socket, of an open descriptor: a file's identity
/// across filesystems (inode numbers alone repeat between them).
pub fn file_id(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, bool)> {
    let st = rustix::fs::fstat(fd)?;
    let socket = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Socket;
    Ok((st.st_dev, st.st_ino, socket))
}

/// Spawns a helper thread with every signal blocked. Threads inherit their creator's
/// mask; one started before `notify::block_handled_signals` would otherwise take a
/// SIGTERM meant for the signalfd and die of it, and a helper thread should never
/// handle a signal anyway.
pub fn spawn_without_signals<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    // SAFETY: sigset_t is plain data; sigfillset initialises `all`, pthread_sigmask
    // reads it and writes the old mask into `old`, a valid local.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        old
    };
    let spawned = std::thread::Builder::new().name(name.to_owned()).spawn(f);
    // SAFETY: `old` is the mask read above; no old mask wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    spawned
}
