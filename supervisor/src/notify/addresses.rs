//! Calls that name an address, for a confined tenant: bind, listen, and sends on
//! untracked datagram sockets. The supervisor reads the address once, decides on its
//! copy (labels, own range, ports) and performs the call itself on its copy of the
//! socket, so a second tenant thread rewriting the address after the decision changes
//! nothing. Unconfined tenants get CONTINUE, as before.
//!
//! For a confined tenant a descriptor that is not open or not a socket is answered here
//! (EBADF, ENOTSOCK) instead of continued: between a CONTINUE and the kernel running
//! the call, a second thread could put a fresh inet socket at that number.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use super::msghdr::{one_message_sent, read_sockaddr, Datagram, Limit};
use super::request::Request;
use super::{continue_untracked, Park, ParkTarget, Resume, Supervisor, Verdict};
use crate::label::guard::Call;
use crate::label::policy::primary_address;
use crate::notify::table::Lookup;
use crate::sys::{self, SockAddr};

/// The largest UDP payload (IPv6; IPv4's is smaller and the kernel says EMSGSIZE).
const MAX_DATAGRAM: usize = 65_527;

/// A confined tenant's socket, as the label decisions see it.
pub(super) enum Socket {
    /// AF_INET or AF_INET6: the supervisor's copy.
    Inet {
        copy: OwnedFd,
        family: i32,
        stream: bool,
    },
    /// Any other family (unix, netlink): no address label applies; the tenant's agent
    /// performs the call on this copy with the tenant's own rights (Landlock,
    /// permissions, credentials).
    Other(OwnedFd),
}

/// Classifies the tenant's `fd`, failing closed: not open → its errno, not a socket →
/// ENOTSOCK.
pub(super) fn socket_of(
    sv: &mut Supervisor,
    request: &Request,
    fd: i32,
) -> Result<Socket, Verdict> {
    let copy = match sv.table.lookup(request, fd) {
        Ok(Lookup::Untracked(Some(copy))) => copy,
        Ok(Lookup::Tracked(inode)) => match sv.table.copy(inode).map(|c| c.try_clone_to_owned()) {
            Some(Ok(copy)) => copy,
            _ => return Err(Verdict::Errno(libc::EBADF)),
        },
        Ok(Lookup::Untracked(None)) => return Err(Verdict::Errno(libc::ENOTSOCK)),
        Err(e) => return Err(Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF))),
    };
    let option = |name| sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, name);
    let (Ok(family), Ok(kind)) = (option(libc::SO_DOMAIN), option(libc::SO_TYPE)) else {
        return Err(Verdict::Errno(libc::EBADF));
    };
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Ok(Socket::Other(copy));
    }
    Ok(Socket::Inet {
        copy,
        family,
        stream: kind == libc::SOCK_STREAM,
    })
}

/// The errno for an address that is not a whole IPv4/IPv6 address: a cut-short inet
/// address is EINVAL (as the kernel says), any other family EAFNOSUPPORT.
pub(super) fn bad_address(addr: &SockAddr) -> Verdict {
    match addr.family() as i32 {
        libc::AF_INET | libc::AF_INET6 => Verdict::Errno(libc::EINVAL),
        _ => Verdict::Errno(libc::EAFNOSUPPORT),
    }
}

fn errno_of(e: std::io::Error) -> Verdict {
    Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO))
}

/// bind: only inside the tenant's own range, only its ports.
pub(super) fn bind(sv: &mut Supervisor, request: &Request) -> Verdict {
    if sv.guard.is_none() {
        return continue_untracked();
    }
    let (copy, stream) = match socket_of(sv, request, request.fd_arg(0)) {
        Ok(Socket::Inet { copy, stream, .. }) => (copy, stream),
        Ok(Socket::Other(copy)) => return super::agent::bind(sv, request, copy),
        Err(verdict) => return verdict,
    };
    let addr = match read_sockaddr(request, request.arg(1), request.arg(2)) {
        Ok(a) => a,
        Err(errno) => return Verdict::Errno(errno),
    };
    // AF_UNSPEC and other families on an inet socket: the kernel may read AF_UNSPEC as
    // the wildcard, so anything but a proper inet address is refused here.
    let Some(target) = addr.as_std() else {
        return bad_address(&addr);
    };
    let guard = sv.guard.as_mut().expect("checked above");
    if guard.check(Call::Bind, target, stream).is_err() {
        return Verdict::Errno(libc::EACCES);
    }
    match sys::bind(copy.as_fd(), &addr) {
        Ok(()) => Verdict::Value(0),
        Err(e) => errno_of(e),
    }
}

/// listen: an unbound socket would be bound by the kernel to the wildcard (every
/// tenant's addresses); the supervisor binds it to the tenant's own address first.
pub(super) fn listen(sv: &mut Supervisor, request: &Request) -> Verdict {
    let Some(guard) = sv.guard.as_ref() else {
        return continue_untracked();
    };
    let own = primary_address(guard.entry());
    let (copy, family) = match socket_of(sv, request, request.fd_arg(0)) {
        Ok(Socket::Inet { copy, family, .. }) => (copy, family),
        Ok(Socket::Other(copy)) => return super::agent::listen(sv, request, copy),
        Err(verdict) => return verdict,
    };
    let unbound = sys::local_addr(copy.as_fd())
        .ok()
        .and_then(|a| a.as_std())
        .is_some_and(|a| a.port() == 0);
    if unbound {
        if let Err(e) = sys::bind(copy.as_fd(), &source_address(family, own)) {
            return errno_of(e);
        }
    }
    match sys::listen(copy.as_fd(), request.arg(1) as i32) {
        Ok(()) => Verdict::Value(0),
        Err(e) => errno_of(e),
    }
}

/// sendto/sendmsg/sendmmsg on a confined tenant's untracked socket.
///
/// `sendto` without an address names nothing the tenant could change afterwards (the
/// pointer is a register), so the kernel runs it. Datagram sockets otherwise are served
/// here: the destination (if any) is judged, then the supervisor sends its copy of the
/// payload. On stream sockets the destination is ignored, except by TCP Fast Open,
/// which is refused.
pub(super) fn send_untracked(sv: &mut Supervisor, request: &Request) -> Verdict {
    let nr = request.nr();
    if nr == libc::SYS_sendto && request.arg(4) == 0 {
        return continue_untracked();
    }
    let flags = request.arg(if nr == libc::SYS_sendmsg { 2 } else { 3 }) as i32;
    let copy = match socket_of(sv, request, request.fd_arg(0)) {
        Ok(Socket::Inet { stream: true, .. }) if flags & libc::MSG_FASTOPEN != 0 => {
            tracing::warn!(target: Kind::Label.target(), "TCP Fast Open refused for a confined tenant: its implicit connect would skip the label check");
            return Verdict::Errno(libc::EOPNOTSUPP);
        }
        Ok(Socket::Inet {
            copy, stream: true, ..
        }) => return send_stream(sv, request, copy, flags),
        Ok(Socket::Other(copy)) => return super::agent::send(sv, request, copy),
        Ok(Socket::Inet { copy, .. }) => copy,
        Err(verdict) => return verdict,
    };
    if nr == libc::SYS_sendmmsg && request.arg(2) == 0 {
        return Verdict::Value(0);
    }
    let message = match Datagram::read(request, &mut sv.scratch, Limit::Whole(MAX_DATAGRAM), false)
    {
        Ok(m) => m,
        Err(errno) => return Verdict::Errno(errno),
    };
    if let Some(dest) = &message.dest {
        let Some(target) = dest.as_std() else {
            return bad_address(dest);
        };
        let guard = sv.guard.as_mut().expect("confined");
        if guard.check(Call::SendTo, target, false).is_err() {
            return Verdict::Errno(libc::EACCES);
        }
    }
    let payload = &sv.scratch[..message.len];
    let verdict = perform_send(copy, payload, flags, message.dest.as_ref());
    one_message_sent(request, verdict)
}

/// A send with a msghdr on a confined tenant's TCP socket: performed on the copy (the
/// kernel would re-read the msghdr, and the fd, after any decision). The destination
/// is ignored, as TCP does; control data is refused (IP_PKTINFO & co.). A send larger
/// than one chunk may be short, as a stream send may be.
fn send_stream(sv: &mut Supervisor, request: &Request, copy: OwnedFd, flags: i32) -> Verdict {
    let limit = Limit::Prefix(super::WRITE_CHUNK);
    let message = match Datagram::read(request, &mut sv.scratch, limit, false) {
        Ok(m) => m,
        Err(errno) => return Verdict::Errno(errno),
    };
    let payload = &sv.scratch[..message.len];
    let verdict = match perform_send(copy, payload, flags, None) {
        Verdict::Errno(libc::EPIPE) if flags & libc::MSG_NOSIGNAL == 0 => {
            if let Some(tgid) = sv.table.tenants.tgid_of(request.tid()) {
                let _ = sys::tgkill(tgid, request.tid(), libc::SIGPIPE);
            }
            Verdict::Errno(libc::EPIPE)
        }
        other => other,
    };
    one_message_sent(request, verdict)
}

/// Sends without blocking the supervisor; a blocking caller whose socket buffer is full
/// waits (parked) and the call is re-run when it drains.
fn perform_send(copy: OwnedFd, payload: &[u8], flags: i32, dest: Option<&SockAddr>) -> Verdict {
    let flags_now = flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
    let sent = match dest {
        Some(dest) => sys::send_to(copy.as_fd(), payload, flags_now, dest),
        None => sys::send(copy.as_fd(), payload, flags_now),
    };
    match sent {
        Ok(n) => Verdict::Value(n as i64),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            let nonblocking = flags & libc::MSG_DONTWAIT != 0
                || sys::is_nonblocking(copy.as_fd()).unwrap_or(true);
            if nonblocking {
                return Verdict::Errno(libc::EAGAIN);
            }
            Verdict::Park(Park {
                target: ParkTarget::Own(copy),
                interest: libc::EPOLLOUT as u32,
                resume: Resume::Rerun,
            })
        }
        Err(e) => errno_of(e),
    }
}

/// Our copy of `ip:0` in a socket's family (v4-mapped for AF_INET6), to bind the
/// tenant's own address as a connection's source or a listener's address.
pub(super) fn source_address(family: i32, ip: Ipv4Addr) -> SockAddr {
    let std = if family == libc::AF_INET6 {
        SocketAddr::new(ip.to_ipv6_mapped().into(), 0)
    } else {
        SocketAddr::new(ip.into(), 0)
    };
    SockAddr::from_std(std)
}
