//! The tenant's agent: a process with the tenant's own uid, Landlock domain and
//! namespaces that performs, on the supervisor's copy of a socket, the calls on unix
//! and netlink sockets whose effect depends on who makes them.
//!
//! The supervisor never CONTINUEs a confined tenant's connect, bind, listen or sendmsg
//! (between its check and the kernel's run, a second tenant thread could put an inet
//! socket at that number, or rewrite the msghdr). For inet sockets it performs them
//! itself. Unix sockets must be judged as the tenant's: the kernel resolves paths
//! with the caller's mount namespace, directory and Landlock domain, checks
//! permissions with its uid, and records its credentials as the peer's (SO_PEERCRED,
//! SCM_CREDENTIALS) — the supervisor is root, so it would be wrong on every count. The
//! agent is forked by the tenant itself after `landlock_restrict_self` and before its
//! seccomp filter, so it is in the tenant's domain but runs only the code below, and
//! it is not dumpable, so the tenant cannot read or write its memory.
//!
//! Wire format (SOCK_SEQPACKET, one request per packet, native endian): a [`HEADER`]
//! of op, flags, backlog, umask, address length, address, control length, then the
//! control bytes (non-SCM_RIGHTS messages, e.g. SCM_CREDENTIALS) and the payload. The
//! packet's SCM_RIGHTS carry: the reply socket, the tenant's socket, the tenant's
//! working directory if [`HAS_CWD`], then the descriptors a sendmsg passes on. The
//! reply is one i64: the call's result or `-errno`.

use std::os::fd::RawFd;

/// The request header's size.
pub const HEADER: usize = 160;
/// Largest payload the agent sends per call (a unix datagram's default limit is
/// about 208 KiB; a stream send may be short, as the kernel's may).
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest non-SCM_RIGHTS control data forwarded.
pub const MAX_CONTROL: usize = 256;
/// Most descriptors one sendmsg may pass (the kernel's SCM_MAX_FD).
pub const MAX_PASSED: usize = 253;

/// What the agent performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Op {
    /// connect(sock, addr)
    Connect = 1,
    /// bind(sock, addr)
    Bind = 2,
    /// listen(sock, backlog)
    Listen = 3,
    /// sendmsg(sock, {addr, payload, control + passed fds}, flags)
    Send = 4,
    /// inotify_add_watch(sock = the inotify fd, payload = the path, flags = the mask),
    /// on the path as the tenant may open it for reading (Landlock has no inotify hook).
    Watch = 5,
}

/// Flag bit: the request carries the tenant's working directory.
pub const HAS_CWD: u32 = 1;

/// A request header, as the supervisor encodes and the agent decodes it.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    /// The call.
    pub op: Op,
    /// sendmsg flags (the agent adds MSG_DONTWAIT and MSG_NOSIGNAL).
    pub flags: i32,
    /// listen backlog.
    pub backlog: i32,
    /// The tenant's umask, for the socket file a bind creates.
    pub umask: u32,
    /// [`HAS_CWD`].
    pub bits: u32,
    /// Address length (0: none).
    pub addr_len: u32,
    /// The address.
    pub addr: [u8; 128],
    /// Control bytes following the header.
    pub control_len: u32,
}

impl Header {
    /// Encodes into the first [`HEADER`] bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) {
        let put =
            |out: &mut [u8], at: usize, v: u32| out[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        put(out, 0, self.op as u32);
        put(out, 4, self.flags as u32);
        put(out, 8, self.backlog as u32);
        put(out, 12, self.umask);
        put(out, 16, self.bits);
        put(out, 20, self.addr_len);
        out[24..152].copy_from_slice(&self.addr);
        put(out, 152, self.control_len);
        put(out, 156, 0);
    }

    /// Decodes a header; `None` for an unknown op or out-of-range lengths.
    pub fn decode(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < HEADER {
            return None;
        }
        let get = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4"));
        let op = match get(0) {
            1 => Op::Connect,
            2 => Op::Bind,
            3 => Op::Listen,
            4 => Op::Send,
            5 => Op::Watch,
            _ => return None,
        };
        let mut addr = [0u8; 128];
        addr.copy_from_slice(&bytes[24..152]);
        let header = Header {
            op,
            flags: get(4) as i32,
            backlog: get(8) as i32,
            umask: get(12),
            bits: get(16),
            addr_len: get(20),
            addr,
            control_len: get(152),
        };
        (header.addr_len as usize <= 128 && header.control_len as usize <= MAX_CONTROL)
            .then_some(header)
    }
}

/// Forks the agent from the tenant (after its Landlock restriction, before its
/// filter), twice so it is reparented to the init stub and the tenant never sees it as
/// a child. The tenant closes `agent` and `supervisor` afterwards. Raw syscalls only.
///
/// # Safety
/// Called in a single-threaded fresh fork; `agent` is the agent's end of the channel.
pub(super) unsafe fn spawn(agent: RawFd, supervisor: RawFd) {
    // SAFETY: (whole block) raw syscalls on integers; single-threaded process.
    unsafe {
        let first = libc::fork();
        if first < 0 {
            super::handoff::die(b"supervise: tenant: fork of its agent failed\n", 126);
        }
        if first > 0 {
            let mut status = 0;
            libc::waitpid(first, &mut status, 0);
            return;
        }
        let second = libc::fork();
        if second != 0 {
            libc::_exit(if second < 0 { 1 } else { 0 });
        }
        libc::close(supervisor);
        serve(agent)
    }
}

/// The agent's loop: one request at a time, never blocking on a tenant socket.
///
/// # Safety
/// Runs in the agent process only (see [`spawn`]).
unsafe fn serve(channel: RawFd) -> ! {
    // SAFETY: (whole block) raw syscalls on integers and on stack buffers that live
    // across each call; CMSG_* compute offsets inside `control`, sized by CMSG_SPACE.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_NAME,
            c"supervise-agent".as_ptr() as libc::c_ulong,
            0,
            0,
            0,
        );
        // Nothing but stderr and the channel.
        libc::close(0);
        libc::close(1);
        let keep = channel as libc::c_uint;
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            keep.saturating_sub(1),
            0 as libc::c_uint,
        );
        libc::syscall(
            libc::SYS_close_range,
            keep + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        let mut packet = vec![0u8; HEADER + MAX_CONTROL + MAX_PAYLOAD];
        const FDS: usize = 3 + MAX_PASSED;
        let mut control = vec![0u64; (FDS * 4 + 64) / 8 + 8];
        loop {
            let mut iov = libc::iovec {
                iov_base: packet.as_mut_ptr().cast(),
                iov_len: packet.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len() * 8;
            let n = libc::recvmsg(channel, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n == 0 {
                libc::_exit(0); // the supervisor is gone
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                libc::_exit(1);
            }
            let mut fds = [-1 as RawFd; FDS];
            let mut nfds = 0usize;
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                    let count = ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(data.add(i));
                        if nfds < FDS {
                            fds[nfds] = fd;
                            nfds += 1;
                        } else {
                            libc::close(fd);
                        }
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            let result = perform(&packet[..n as usize], &fds[..nfds]);
            if nfds > 0 {
                let bytes = result.to_ne_bytes();
                libc::send(
                    fds[0],
                    bytes.as_ptr().cast(),
                    8,
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                );
            }
            for &fd in &fds[..nfds] {
                libc::close(fd);
            }
        }
    }
}

fn errno() -> i64 {
    // SAFETY: reading this thread's errno.
    -(unsafe { *libc::__errno_location() } as i64)
}

/// Performs one request: `fds` = reply, socket, [cwd], passed….
fn perform(packet: &[u8], fds: &[RawFd]) -> i64 {
    let Some(header) = Header::decode(packet) else {
        return -(libc::EINVAL as i64);
    };
    if fds.len() < 2 {
        return -(libc::EINVAL as i64);
    }
    let sock = fds[1];
    let mut rest = &fds[2..];
    if header.bits & HAS_CWD != 0 {
        let Some((&cwd, tail)) = rest.split_first() else {
            return -(libc::EINVAL as i64);
        };
        // SAFETY: fchdir on a descriptor we received.
        if unsafe { libc::fchdir(cwd) } != 0 {
            return errno();
        }
        rest = tail;
    }
    let addr = header.addr.as_ptr().cast::<libc::sockaddr>();
    let addr_len = header.addr_len as libc::socklen_t;
    // SAFETY: (whole block) raw socket calls on received descriptors, with pointers
    // into `header` and `packet`, which outlive each call.
    unsafe {
        match header.op {
            Op::Bind => {
                let old = libc::umask(header.umask as libc::mode_t);
                let r = libc::bind(sock, addr, addr_len);
                libc::umask(old);
                if r == 0 {
                    0
                } else {
                    errno()
                }
            }
            Op::Listen => {
                if libc::listen(sock, header.backlog) == 0 {
                    0
                } else {
                    errno()
                }
            }
            Op::Connect => {
                // Never block here: a unix connect to a full backlog says EAGAIN, and
                // the supervisor retries for a blocking caller.
                let flags = libc::fcntl(sock, libc::F_GETFL);
                let blocking = flags >= 0 && flags & libc::O_NONBLOCK == 0;
                if blocking {
                    libc::fcntl(sock, libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
                let r = if libc::connect(sock, addr, addr_len) == 0 {
                    0
                } else {
                    errno()
                };
                if blocking {
                    libc::fcntl(sock, libc::F_SETFL, flags);
                }
                r
            }
            Op::Send => send(&header, packet, sock, rest),
            Op::Watch => watch(&header, packet, sock),
        }
    }
}

/// Opens the path for reading first, so Landlock and the permissions judge it as a
/// read by the tenant (a directory Landlock keeps it from listing cannot be watched to
/// learn the names created in it), then watches the inode it opened.
fn watch(header: &Header, packet: &[u8], inotify: RawFd) -> i64 {
    const IN_DONT_FOLLOW: u32 = 0x0200_0000;
    const IN_ONLYDIR: u32 = 0x0100_0000;
    let mask = header.flags as u32;
    let mut path = packet[HEADER..].to_vec();
    if path.contains(&0) || path.is_empty() {
        return -(libc::EINVAL as i64);
    }
    path.push(0);
    let mut flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    if mask & IN_DONT_FOLLOW != 0 {
        flags |= libc::O_NOFOLLOW; // a symlink itself cannot be opened for reading: ELOOP
    }
    if mask & IN_ONLYDIR != 0 {
        flags |= libc::O_DIRECTORY;
    }
    // SAFETY: `path` is NUL-terminated and outlives the call.
    let fd = unsafe { libc::open(path.as_ptr().cast(), flags) };
    if fd < 0 {
        return errno();
    }
    let mut link = *b"/proc/self/fd/\0\0\0\0\0\0\0\0\0\0\0\0";
    let digits = fd.to_string();
    link[14..14 + digits.len()].copy_from_slice(digits.as_bytes());
    // SAFETY: `link` is NUL-terminated (zero-filled past the digits); the descriptors
    // are ours.
    unsafe {
        let r = libc::inotify_add_watch(inotify, link.as_ptr().cast(), mask & !IN_DONT_FOLLOW);
        let result = if r < 0 { errno() } else { i64::from(r) };
        libc::close(fd);
        result
    }
}

fn send(header: &Header, packet: &[u8], sock: RawFd, passed: &[RawFd]) -> i64 {
    let control_len = header.control_len as usize;
    let Some(control_raw) = packet.get(HEADER..HEADER + control_len) else {
        return -(libc::EINVAL as i64);
    };
    let payload = &packet[HEADER + control_len..];
    // The control buffer: the forwarded messages, then SCM_RIGHTS for `passed`.
    let mut control = vec![0u64; (MAX_CONTROL + MAX_PASSED * 4 + 64) / 8];
    let bytes: &mut [u8] =
        // SAFETY: reinterpreting a u64 buffer (for cmsghdr alignment) as bytes.
        unsafe { std::slice::from_raw_parts_mut(control.as_mut_ptr().cast(), control.len() * 8) };
    bytes[..control_len].copy_from_slice(control_raw);
    let mut total = control_len;
    if !passed.is_empty() {
        // SAFETY: CMSG_* arithmetic on integers.
        let (space, len) = unsafe {
            (
                libc::CMSG_SPACE((passed.len() * 4) as u32) as usize,
                libc::CMSG_LEN((passed.len() * 4) as u32) as usize,
            )
        };
        let at = total;
        let hdr = libc::cmsghdr {
            cmsg_len: len,
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SCM_RIGHTS,
        };
        let hdr_size = std::mem::size_of::<libc::cmsghdr>();
        // SAFETY: the cmsghdr is plain data; `bytes` has room for it (sized above).
        let raw = unsafe {
            std::slice::from_raw_parts((&hdr as *const libc::cmsghdr).cast::<u8>(), hdr_size)
        };
        bytes[at..at + hdr_size].copy_from_slice(raw);
        for (i, fd) in passed.iter().enumerate() {
            let o = at + hdr_size + 4 * i;
            bytes[o..o + 4].copy_from_slice(&fd.to_ne_bytes());
        }
        total += space;
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr points at `iov`, `header.addr` and `control`, all alive for the
    // call.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        if header.addr_len > 0 {
            msg.msg_name = header.addr.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = header.addr_len;
        }
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if total > 0 {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = total;
        }
        let flags = header.flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let n = libc::sendmsg(sock, &msg, flags);
        if n < 0 {
            errno()
        } else {
            n as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_bad_ones_are_refused() {
        let mut addr = [0u8; 128];
        addr[..4].copy_from_slice(&[1, 0, b'/', b'x']);
        let header = Header {
            op: Op::Send,
            flags: libc::MSG_EOR,
            backlog: 0,
            umask: 0o077,
            bits: HAS_CWD,
            addr_len: 4,
            addr,
            control_len: 32,
        };
        let mut out = [0u8; HEADER];
        header.encode(&mut out);
        let back = Header::decode(&out).unwrap();
        assert_eq!(back.op, Op::Send);
        assert_eq!(
            (back.flags, back.umask, back.bits),
            (libc::MSG_EOR, 0o077, HAS_CWD)
        );
        assert_eq!((back.addr_len, back.control_len), (4, 32));
        assert_eq!(back.addr, addr);
        let mut bad = out;
        bad[0] = 9;
        assert!(Header::decode(&bad).is_none(), "unknown op");
        let mut long = out;
        long[20..24].copy_from_slice(&129u32.to_ne_bytes());
        assert!(Header::decode(&long).is_none(), "address too long");
        assert!(Header::decode(&out[..HEADER - 1]).is_none(), "short");
    }
}
