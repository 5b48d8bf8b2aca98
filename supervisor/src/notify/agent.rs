//! A confined tenant's connect, bind, listen and sends on unix and netlink sockets:
//! read once from the tenant, performed by its agent (`launch::agent`) on the
//! supervisor's copy of the socket, so the kernel judges paths, permissions and
//! credentials as the tenant's and no second tenant thread can change what the call
//! acts on after the supervisor looked (the fd number or the msghdr). Never CONTINUE.
//!
//! The agent answers on a socket made for each request; the call is parked on it, so
//! the loop never waits for the agent. Once a request is sent the call may happen, so
//! a signal or a timeout does not end the wait: only the agent's answer does (a fatal
//! signal still kills the tenant thread).

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

use super::msghdr::{Datagram, Limit};
use super::request::Request;
use super::{Park, ParkTarget, Resume, Supervisor, Verdict};
use crate::launch::agent::{Header, Op, HAS_CWD, HEADER, MAX_CONTROL, MAX_PASSED, MAX_PAYLOAD};
use crate::sys;

/// The supervisor's end of the agent's channel.
#[derive(Debug)]
pub struct Agent {
    channel: OwnedFd,
}

/// What a parked agent call does with the answer.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    op: Op,
    /// The tenant's call may wait (no O_NONBLOCK, no MSG_DONTWAIT).
    blocking: bool,
    /// EPIPE raises SIGPIPE (no MSG_NOSIGNAL).
    sigpipe: bool,
}

impl Agent {
    /// Wraps the channel the launch set up.
    pub fn new(channel: OwnedFd) -> Agent {
        Agent { channel }
    }

    /// Sends one request with `fds` (socket, [cwd], passed…) after the reply socket;
    /// returns our end of the reply socket.
    fn submit(&self, packet: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<OwnedFd> {
        let (ours, theirs) = sys::seqpacket_pair()?;
        let mut all: Vec<BorrowedFd<'_>> = Vec::with_capacity(fds.len() + 1);
        all.push(theirs.as_fd());
        all.extend_from_slice(fds);
        send_with_fds(self.channel.as_fd(), packet, &all)?;
        Ok(ours)
    }
}

/// Why a request could not go to the agent: the tenant sees EIO (its agent is gone or
/// not keeping up), and it is logged.
fn unavailable(error: &io::Error) -> Verdict {
    tracing::warn!(target: Kind::Label.target(), %error, "the tenant's agent cannot take a unix-socket call (killed or stopped by the tenant?): EIO");
    Verdict::Errno(libc::EIO)
}

/// The tenant's working directory, when a unix path in `addr` is relative.
fn cwd_for(request: &Request, addr: &[u8]) -> io::Result<Option<OwnedFd>> {
    let family = addr.get(..2).map(|f| u16::from_ne_bytes([f[0], f[1]]));
    let relative =
        family == Some(libc::AF_UNIX as u16) && addr.get(2).is_some_and(|&b| b != 0 && b != b'/');
    if !relative {
        return Ok(None);
    }
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(format!("/proc/{}/cwd", request.tid()))?;
    Ok(Some(dir.into()))
}

/// The tenant thread's umask (for the socket file a bind creates).
fn umask_of(tid: libc::pid_t) -> u32 {
    std::fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn header(op: Op) -> Header {
    Header {
        op,
        flags: 0,
        backlog: 0,
        umask: 0o022,
        bits: 0,
        addr_len: 0,
        addr: [0; 128],
        control_len: 0,
    }
}

/// Sends a request and parks the call on its answer.
fn call(
    sv: &mut Supervisor,
    mut head: Header,
    addr: &[u8],
    body: (&[u8], &[u8]),
    fds: (&OwnedFd, Option<&OwnedFd>, &[OwnedFd]),
    pending: Pending,
) -> Verdict {
    let Some(agent) = sv.agent.as_ref() else {
        return Verdict::Errno(libc::EIO);
    };
    head.addr_len = addr.len() as u32;
    head.addr[..addr.len()].copy_from_slice(addr);
    let (control, payload) = body;
    head.control_len = control.len() as u32;
    let (socket, cwd, passed) = fds;
    if cwd.is_some() {
        head.bits |= HAS_CWD;
    }
    let mut packet = vec![0u8; HEADER + control.len() + payload.len()];
    head.encode(&mut packet);
    packet[HEADER..HEADER + control.len()].copy_from_slice(control);
    packet[HEADER + control.len()..].copy_from_slice(payload);
    let mut all: Vec<BorrowedFd<'_>> = vec![socket.as_fd()];
    all.extend(cwd.map(|c| c.as_fd()));
    all.extend(passed.iter().map(|p| p.as_fd()));
    match agent.submit(&packet, &all) {
        Ok(reply) => Verdict::Park(Park {
            target: ParkTarget::Own(reply),
            interest: libc::EPOLLIN as u32,
            resume: Resume::Agent(pending),
        }),
        Err(error) => unavailable(&error),
    }
}

/// Reads a sockaddr the tenant passed, as raw bytes (at most sockaddr_storage).
fn read_addr(request: &Request, ptr: u64, len: u64) -> Result<Vec<u8>, i32> {
    if len as usize > 128 {
        return Err(libc::EINVAL);
    }
    request
        .read_memory(ptr, len as usize)
        .map_err(|e| e.errno())
}

/// The address a connect or bind names, and the calling thread's working directory
/// when it is a relative unix path.
fn named_address(request: &Request) -> Result<(Vec<u8>, Option<OwnedFd>), Verdict> {
    let addr = read_addr(request, request.arg(1), request.arg(2)).map_err(Verdict::Errno)?;
    let cwd = cwd_for(request, &addr)
        .map_err(|e| Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok((addr, cwd))
}

/// bind on a unix or netlink socket.
pub(super) fn bind(sv: &mut Supervisor, request: &Request, socket: OwnedFd) -> Verdict {
    let (addr, cwd) = match named_address(request) {
        Ok(named) => named,
        Err(verdict) => return verdict,
    };
    let mut head = header(Op::Bind);
    head.umask = umask_of(request.tid());
    let pending = Pending {
        op: Op::Bind,
        blocking: false,
        sigpipe: false,
    };
    let fds = (&socket, cwd.as_ref(), &[][..]);
    call(sv, head, &addr, (&[], &[]), fds, pending)
}

/// listen on a unix socket (its credentials become the ones clients see).
pub(super) fn listen(sv: &mut Supervisor, request: &Request, socket: OwnedFd) -> Verdict {
    let mut head = header(Op::Listen);
    head.backlog = request.arg(1) as i32;
    let pending = Pending {
        op: Op::Listen,
        blocking: false,
        sigpipe: false,
    };
    call(sv, head, &[], (&[], &[]), (&socket, None, &[]), pending)
}

/// connect on a unix or netlink socket.
pub(super) fn connect(sv: &mut Supervisor, request: &Request, socket: OwnedFd) -> Verdict {
    let (addr, cwd) = match named_address(request) {
        Ok(named) => named,
        Err(verdict) => return verdict,
    };
    let pending = Pending {
        op: Op::Connect,
        blocking: !sys::is_nonblocking(socket.as_fd()).unwrap_or(true),
        sigpipe: false,
    };
    let fds = (&socket, cwd.as_ref(), &[][..]);
    call(sv, header(Op::Connect), &addr, (&[], &[]), fds, pending)
}

/// sendto with an address, sendmsg, sendmmsg (its first message) on a unix or netlink
/// socket: payload, address and control read once; descriptors passed with
/// SCM_RIGHTS are taken from the tenant's table and passed on by the agent.
pub(super) fn send(sv: &mut Supervisor, request: &Request, socket: OwnedFd) -> Verdict {
    let nr = request.nr();
    let flags = request.arg(if nr == libc::SYS_sendmsg { 2 } else { 3 }) as i32;
    if nr == libc::SYS_sendmmsg && request.arg(2) == 0 {
        return Verdict::Value(0);
    }
    let stream = sys::sockopt_int(socket.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE)
        .is_ok_and(|t| t == libc::SOCK_STREAM);
    let limit = if stream {
        Limit::Prefix(MAX_PAYLOAD)
    } else {
        Limit::Whole(MAX_PAYLOAD)
    };
    let message = match Datagram::read(request, &mut sv.scratch, limit, true) {
        Ok(m) => m,
        Err(errno) => return Verdict::Errno(errno),
    };
    let (forwarded, wanted) = match split_control(&message.control) {
        Ok(split) => split,
        Err(errno) => return Verdict::Errno(errno),
    };
    let mut passed = Vec::with_capacity(wanted.len());
    if !wanted.is_empty() {
        let Some(pidfd) = sv.table.tenants.pidfd_of(request.tid()) else {
            return Verdict::Errno(libc::EBADF);
        };
        for fd in wanted {
            match request.fetch_fd(pidfd, fd) {
                Ok(copy) => passed.push(copy),
                Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF)),
            }
        }
    }
    let addr = message
        .dest
        .as_ref()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    let cwd = match cwd_for(request, &addr) {
        Ok(c) => c,
        Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    let mut head = header(Op::Send);
    head.flags = flags & !(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    let pending = Pending {
        op: Op::Send,
        blocking: flags & libc::MSG_DONTWAIT == 0
            && !sys::is_nonblocking(socket.as_fd()).unwrap_or(true),
        sigpipe: flags & libc::MSG_NOSIGNAL == 0,
    };
    let payload = sv.scratch[..message.len].to_vec();
    call(
        sv,
        head,
        &addr,
        (&forwarded, &payload),
        (&socket, cwd.as_ref(), &passed),
        pending,
    )
}

/// inotify_add_watch(fd, path, mask) for a confined tenant: the agent opens the path
/// for reading as the tenant (Landlock, permissions, the tenant's mount namespace and
/// working directory) and watches what it opened, so a watch never tells the tenant
/// what happens in a directory it could not list. The path is read once.
pub(super) fn watch(sv: &mut Supervisor, request: &Request) -> Verdict {
    let path = match read_path(request, request.arg(1)) {
        Ok(p) => p,
        Err(errno) => return Verdict::Errno(errno),
    };
    let Some(pidfd) = sv.table.tenants.pidfd_of(request.tid()) else {
        return Verdict::Errno(libc::EBADF);
    };
    let inotify = match request.fetch_fd(pidfd, request.fd_arg(0)) {
        Ok(fd) => fd,
        Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF)),
    };
    let cwd = if path.first() == Some(&b'/') {
        None
    } else {
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(format!("/proc/{}/cwd", request.tid()));
        match dir {
            Ok(d) => Some(OwnedFd::from(d)),
            Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    };
    let mut head = header(Op::Watch);
    head.flags = request.arg(2) as u32 as i32;
    let pending = Pending {
        op: Op::Watch,
        blocking: false,
        sigpipe: false,
    };
    call(
        sv,
        head,
        &[],
        (&[], &path),
        (&inotify, cwd.as_ref(), &[]),
        pending,
    )
}

/// A NUL-terminated path from tenant memory (without the NUL), read a page at most at
/// a time so a string near the end of a mapping does not fault: at most PATH_MAX.
fn read_path(request: &Request, mut addr: u64) -> Result<Vec<u8>, i32> {
    const PAGE: u64 = 4096;
    let mut path = Vec::new();
    while path.len() < libc::PATH_MAX as usize {
        let chunk = (PAGE - addr % PAGE) as usize;
        let bytes = request.read_memory(addr, chunk).map_err(|e| e.errno())?;
        if let Some(end) = bytes.iter().position(|&b| b == 0) {
            path.extend_from_slice(&bytes[..end]);
            return if path.is_empty() {
                Err(libc::ENOENT)
            } else {
                Ok(path)
            };
        }
        path.extend_from_slice(&bytes);
        addr += chunk as u64;
    }
    Err(libc::ENAMETOOLONG)
}

/// Splits a tenant's control data into the messages forwarded as they are
/// (SCM_CREDENTIALS: the kernel checks them against the agent, which has the tenant's
/// uid and gid) and the descriptors of its SCM_RIGHTS. Anything else: EINVAL.
fn split_control(control: &[u8]) -> Result<(Vec<u8>, Vec<RawFd>), i32> {
    const HDR: usize = std::mem::size_of::<libc::cmsghdr>();
    let align = |n: usize| n.checked_add(7).map(|n| n & !7);
    let (mut forwarded, mut fds) = (Vec::new(), Vec::new());
    let mut at = 0;
    while at + HDR <= control.len() {
        let len = usize::from_ne_bytes(control[at..at + 8].try_into().expect("8"));
        let level = i32::from_ne_bytes(control[at + 8..at + 12].try_into().expect("4"));
        let kind = i32::from_ne_bytes(control[at + 12..at + 16].try_into().expect("4"));
        let end = at.checked_add(len).ok_or(libc::EINVAL)?;
        if len < HDR || end > control.len() {
            return Err(libc::EINVAL);
        }
        let data = &control[at + HDR..end];
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                fds.extend(
                    data.chunks_exact(4)
                        .map(|c| RawFd::from_ne_bytes(c.try_into().expect("4"))),
                );
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) => {
                forwarded.extend_from_slice(&control[at..end]);
                let padded = align(forwarded.len()).ok_or(libc::EINVAL)?;
                forwarded.resize(padded, 0);
            }
            _ => return Err(libc::EINVAL),
        }
        at = align(end).ok_or(libc::EINVAL)?;
    }
    if fds.len() > MAX_PASSED {
        return Err(libc::ETOOMANYREFS);
    }
    if forwarded.len() > MAX_CONTROL {
        return Err(libc::ENOBUFS);
    }
    Ok((forwarded, fds))
}

/// The agent answered (or its reply socket closed): the tenant's result.
pub(super) fn reply(
    sv: &mut Supervisor,
    request: &Request,
    tgid: libc::pid_t,
    park: &Park,
    pending: Pending,
) -> Verdict {
    let ParkTarget::Own(reply) = &park.target else {
        return Verdict::Errno(libc::EIO);
    };
    let mut bytes = [0u8; 8];
    let result = match sys::recv(reply.as_fd(), &mut bytes, libc::MSG_DONTWAIT) {
        Ok(8) => i64::from_ne_bytes(bytes),
        Ok(_) | Err(_) => {
            return unavailable(&io::Error::other("no answer (the agent exited)"));
        }
    };
    if result >= 0 {
        return super::msghdr::one_message_sent(request, Verdict::Value(result));
    }
    let errno = (-result) as i32;
    if errno == libc::EAGAIN && pending.blocking {
        return retry_later(sv, request, pending.op);
    }
    if errno == libc::EPIPE && pending.sigpipe {
        let _ = sys::tgkill(tgid, request.tid(), libc::SIGPIPE);
    }
    Verdict::Errno(errno)
}

/// A blocking caller whose send found the socket full, or whose connect found the
/// listener's backlog full: the call runs again (from the start, deciding afresh) when
/// the socket is writable, or after a short pause for a connect (a client cannot wait
/// for room in a listener's backlog).
fn retry_later(sv: &mut Supervisor, request: &Request, op: Op) -> Verdict {
    let target = if op == Op::Send {
        let copy = sv
            .table
            .tenants
            .pidfd_of(request.tid())
            .map(|pidfd| request.fetch_fd(pidfd, request.fd_arg(0)));
        match copy {
            Some(Ok(copy)) => (copy, libc::EPOLLOUT),
            Some(Err(e)) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF)),
            None => return Verdict::Errno(libc::EBADF),
        }
    } else {
        match pause(10) {
            Ok(timer) => (timer, libc::EPOLLIN),
            Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        }
    };
    Verdict::Park(Park {
        target: ParkTarget::Own(target.0),
        interest: target.1 as u32,
        resume: Resume::Rerun,
    })
}

/// A one-shot timer that becomes readable after `ms` milliseconds.
fn pause(ms: i64) -> io::Result<OwnedFd> {
    let timer = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)?;
    let spec = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: 0,
            tv_nsec: ms * 1_000_000,
        },
    };
    timerfd_settime(&timer, TimerfdTimerFlags::empty(), &spec)?;
    Ok(timer)
}

/// One packet with `fds` in SCM_RIGHTS, without blocking (a full channel means the
/// agent is not reading: EAGAIN, reported as unavailable).
fn send_with_fds(channel: BorrowedFd<'_>, packet: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other(
            "SCM_RIGHTS does not fit its control buffer",
        ));
    }
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    rustix::net::sendmsg(channel, &[io::IoSlice::new(packet)], &mut control, flags)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split_control;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = 16 + data.len();
        let mut out = Vec::new();
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&level.to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(data);
        out.resize((out.len() + 7) & !7, 0);
        out
    }

    #[test]
    fn control_splits_into_forwarded_credentials_and_passed_fds() {
        let mut control = cmsg(
            libc::SOL_SOCKET,
            libc::SCM_RIGHTS,
            &[3, 0, 0, 0, 9, 0, 0, 0],
        );
        let creds = cmsg(libc::SOL_SOCKET, libc::SCM_CREDENTIALS, &[0; 12]);
        control.extend_from_slice(&creds);
        let (forwarded, fds) = split_control(&control).unwrap();
        assert_eq!(fds, vec![3, 9]);
        assert_eq!(forwarded, creds);
        let pktinfo = cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 12]);
        assert_eq!(split_control(&pktinfo), Err(libc::EINVAL));
        let mut cut = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[3, 0, 0, 0]);
        cut[0] = 200; // longer than the buffer
        assert_eq!(split_control(&cut), Err(libc::EINVAL));
        // A length that wraps the offset (2^64 - 16) after a first valid message.
        let mut wrap = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[3, 0, 0, 0]);
        let mut second = cmsg(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[4, 0, 0, 0]);
        second[..8].copy_from_slice(&(u64::MAX - 15).to_ne_bytes());
        wrap.extend_from_slice(&second);
        assert_eq!(split_control(&wrap), Err(libc::EINVAL));
    }
}
