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

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags};
use rustix::process::{Pid, WaitOptions};

use crate::sys::{exit_now, RawSockAddr};

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
/// a child. Closes the tenant's copies of `agent` and `supervisor` once the agent is
/// forked. Raw syscalls only in the tenant.
///
/// # Safety
/// Called in a single-threaded fresh fork: the forked agent allocates.
pub(super) unsafe fn spawn(agent: OwnedFd, supervisor: OwnedFd) {
    // SAFETY: the caller guarantees this process is single-threaded, so the child may
    // go on without exec (and allocate: no other thread can hold a lock). rustix has
    // no safe fork.
    let first = unsafe { libc::fork() };
    if first < 0 {
        super::handoff::die(b"supervise: tenant: fork of its agent failed\n", 126);
    }
    if first > 0 {
        let _ = rustix::process::waitpid(Pid::from_raw(first), WaitOptions::empty());
        drop(agent);
        drop(supervisor);
        return;
    }
    // SAFETY: as above: the first child is a fork of a single-threaded process, so
    // single-threaded itself.
    let second = unsafe { libc::fork() };
    if second != 0 {
        exit_now(if second < 0 { 1 } else { 0 });
    }
    drop(supervisor);
    serve(agent)
}

/// The agent's loop: one request at a time, never blocking on a tenant socket. Runs in
/// the agent process only (see [`spawn`]).
fn serve(channel: OwnedFd) -> ! {
    crate::sys::block_all_signals();
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let _ = rustix::thread::set_name(c"supervise-agent");
    // Nothing but stderr and the channel.
    let keep = channel.as_raw_fd() as libc::c_uint;
    // SAFETY: close and close_range take integers. Nothing in this process uses
    // stdin, stdout or any descriptor above 2 but `channel` from here on, and no
    // `OwnedFd` it will drop names one of them (the tenant's ends were dropped or are
    // `channel`). rustix's close is unsafe for the same reason and it has no
    // close_range.
    unsafe {
        libc::close(0);
        libc::close(1);
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
    }
    let mut packet = vec![0u8; HEADER + MAX_CONTROL + MAX_PAYLOAD];
    const FDS: usize = 3 + MAX_PASSED;
    // As much control space as the u64 buffer this replaced ((FDS * 4 + 64) / 8 + 8
    // words), plus room to align it for cmsghdr.
    const CONTROL: usize = ((FDS * 4 + 64) / 8 + 8) * 8 + 8;
    let mut space = vec![MaybeUninit::<u8>::uninit(); CONTROL];
    let mut fds: Vec<OwnedFd> = Vec::with_capacity(FDS);
    loop {
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            &channel,
            &mut [IoSliceMut::new(&mut packet)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        let n = match received {
            Ok(msg) if msg.bytes == 0 => exit_now(0), // the supervisor is gone
            Ok(msg) => msg.bytes.min(packet.len()),
            Err(Errno::INTR) => continue,
            Err(_) => exit_now(1),
        };
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                for fd in received {
                    if fds.len() < FDS {
                        fds.push(fd);
                    } // else dropped here: closed
                }
            }
        }
        drop(control);
        let result = perform(&packet[..n], &fds);
        if let Some(reply) = fds.first() {
            let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
            let _ = rustix::net::send(reply, &result.to_ne_bytes(), flags);
        }
        fds.clear(); // closes them all
    }
}

/// A failed call's result on the wire: `-errno`.
fn neg(e: Errno) -> i64 {
    -i64::from(e.raw_os_error())
}

/// A call's result on the wire: 0 or `-errno`.
fn status(r: rustix::io::Result<()>) -> i64 {
    r.map_or_else(neg, |()| 0)
}

/// Performs one request: `fds` = reply, socket, [cwd], passed….
fn perform(packet: &[u8], fds: &[OwnedFd]) -> i64 {
    let Some(header) = Header::decode(packet) else {
        return -(libc::EINVAL as i64);
    };
    if fds.len() < 2 {
        return -(libc::EINVAL as i64);
    }
    let sock = fds[1].as_fd();
    let mut rest = &fds[2..];
    if header.bits & HAS_CWD != 0 {
        let Some((cwd, tail)) = rest.split_first() else {
            return -(libc::EINVAL as i64);
        };
        if let Err(e) = rustix::process::fchdir(cwd) {
            return neg(e);
        }
        rest = tail;
    }
    // `decode` checked addr_len <= 128, the size of `addr` (and of sockaddr_storage).
    let Some(addr) = RawSockAddr::new(&header.addr[..header.addr_len as usize]) else {
        return -(libc::EINVAL as i64);
    };
    match header.op {
        Op::Bind => {
            let old = rustix::process::umask(Mode::from_bits_retain(header.umask));
            let r = rustix::net::bind(sock, &addr);
            rustix::process::umask(old);
            status(r)
        }
        Op::Listen => status(rustix::net::listen(sock, header.backlog)),
        Op::Connect => {
            // Never block here: a unix connect to a full backlog says EAGAIN, and
            // the supervisor retries for a blocking caller.
            let flags = rustix::fs::fcntl_getfl(sock);
            let blocking = matches!(flags, Ok(f) if !f.contains(OFlags::NONBLOCK));
            if let (true, Ok(flags)) = (blocking, flags) {
                let _ = rustix::fs::fcntl_setfl(sock, flags | OFlags::NONBLOCK);
            }
            let r = status(rustix::net::connect(sock, &addr));
            if let (true, Ok(flags)) = (blocking, flags) {
                let _ = rustix::fs::fcntl_setfl(sock, flags);
            }
            r
        }
        Op::Send => send(&header, packet, sock, rest),
        Op::Watch => watch(&header, packet, sock),
    }
}

/// Opens the path for reading first, so Landlock and the permissions judge it as a
/// read by the tenant (a directory Landlock keeps it from listing cannot be watched to
/// learn the names created in it), then watches the inode it opened.
fn watch(header: &Header, packet: &[u8], inotify: BorrowedFd<'_>) -> i64 {
    use rustix::fs::inotify::WatchFlags;
    const IN_DONT_FOLLOW: u32 = 0x0200_0000;
    const IN_ONLYDIR: u32 = 0x0100_0000;
    let mask = header.flags as u32;
    let path = &packet[HEADER..];
    if path.contains(&0) || path.is_empty() {
        return -(libc::EINVAL as i64);
    }
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    if mask & IN_DONT_FOLLOW != 0 {
        flags |= OFlags::NOFOLLOW; // a symlink itself cannot be opened for reading: ELOOP
    }
    if mask & IN_ONLYDIR != 0 {
        flags |= OFlags::DIRECTORY;
    }
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => return neg(e),
    };
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let watched = WatchFlags::from_bits_retain(mask & !IN_DONT_FOLLOW);
    let r = rustix::fs::inotify::add_watch(inotify, link.as_str(), watched);
    drop(fd);
    r.map_or_else(neg, i64::from)
}

/// Room for the forwarded control messages and one SCM_RIGHTS message of
/// [`MAX_PASSED`] descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; (MAX_CONTROL + MAX_PASSED * 4 + 64) / 8 * 8]);

fn send(header: &Header, packet: &[u8], sock: BorrowedFd<'_>, passed: &[OwnedFd]) -> i64 {
    let control_len = header.control_len as usize;
    let Some(control_raw) = packet.get(HEADER..HEADER + control_len) else {
        return -(libc::EINVAL as i64);
    };
    let payload = &packet[HEADER + control_len..];
    // The control buffer: the forwarded messages, then SCM_RIGHTS for `passed`.
    let mut control = Control([0; (MAX_CONTROL + MAX_PASSED * 4 + 64) / 8 * 8]);
    let bytes = &mut control.0;
    bytes[..control_len].copy_from_slice(control_raw);
    let mut total = control_len;
    if !passed.is_empty() {
        let data = passed.len() * 4;
        let align = |n: usize| n.next_multiple_of(std::mem::size_of::<usize>());
        let hdr_size = std::mem::size_of::<libc::cmsghdr>();
        // CMSG_LEN and CMSG_SPACE, computed here (libc's are unsafe fns).
        let (len, space) = (align(hdr_size) + data, align(hdr_size) + align(data));
        let at = total;
        let hdr = libc::cmsghdr {
            cmsg_len: len as _,
            cmsg_level: libc::SOL_SOCKET,
            cmsg_type: libc::SCM_RIGHTS,
        };
        let mut put = |offset: usize, value: &[u8]| {
            bytes[at + offset..at + offset + value.len()].copy_from_slice(value)
        };
        put(
            std::mem::offset_of!(libc::cmsghdr, cmsg_len),
            &hdr.cmsg_len.to_ne_bytes(),
        );
        put(
            std::mem::offset_of!(libc::cmsghdr, cmsg_level),
            &hdr.cmsg_level.to_ne_bytes(),
        );
        put(
            std::mem::offset_of!(libc::cmsghdr, cmsg_type),
            &hdr.cmsg_type.to_ne_bytes(),
        );
        for (i, fd) in passed.iter().enumerate() {
            put(hdr_size + 4 * i, &fd.as_raw_fd().to_ne_bytes());
        }
        total += space;
    }
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control); it then points at
    // `iov` (and through it `payload`), `header.addr` and `control`, all alive for the
    // call, with their true lengths; sendmsg only reads them. libc's sendmsg because
    // the forwarded control bytes go to the kernel as they are (rustix builds control
    // messages only from typed values).
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        if header.addr_len > 0 {
            msg.msg_name = header.addr.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = header.addr_len;
        }
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if total > 0 {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = total;
        }
        let flags = header.flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        libc::sendmsg(sock.as_raw_fd(), &msg, flags)
    };
    if n < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error();
        -i64::from(errno.unwrap_or(libc::EIO))
    } else {
        n as i64
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
