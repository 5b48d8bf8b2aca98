//! Calls that name an address, for a confined tenant: bind, and sendto/sendmsg with a
//! destination on an untracked datagram socket. The supervisor reads the address once,
//! decides on its copy (labels, own range, ports) and performs the call itself on its
//! copy of the socket, so a second tenant thread rewriting the address after the
//! decision changes nothing. Unconfined tenants get CONTINUE, as before.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use super::request::Request;
use super::{continue_untracked, Park, ParkTarget, Resume, Supervisor, Verdict};
use crate::label::guard::Call;
use crate::stream::table::Lookup;
use crate::sys::{self, SockAddr};

/// Largest datagram the supervisor forwards: the UDP maximum over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// The supervisor's copy of an inet socket, or `None` for everything whose family makes
/// labels moot (AF_UNIX: Landlock's business) or that the kernel should reject itself.
pub(super) fn inet_copy(sv: &mut Supervisor, request: &Request, fd: i32) -> Option<OwnedFd> {
    let copy = match sv.table.lookup(request, fd).ok()? {
        Lookup::Untracked(copy) => copy?,
        Lookup::Tracked(inode) => sv.table.copy(inode)?.try_clone_to_owned().ok()?,
    };
    let domain = sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).ok()?;
    (domain == libc::AF_INET || domain == libc::AF_INET6).then_some(copy)
}

/// Reads a sockaddr the tenant passed (pointer, length) into our own copy.
pub(super) fn read_sockaddr(request: &Request, ptr: u64, len: u64) -> Result<SockAddr, i32> {
    if len as usize > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(libc::EINVAL);
    }
    let bytes = request
        .read_memory(ptr, len as usize)
        .map_err(|e| e.errno())?;
    SockAddr::from_bytes(&bytes).ok_or(libc::EINVAL)
}

fn is_stream(copy: &OwnedFd) -> bool {
    sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE).ok() == Some(libc::SOCK_STREAM)
}

/// bind: only inside the tenant's own range, only its ports.
pub(super) fn bind(sv: &mut Supervisor, request: &Request) -> Verdict {
    if sv.guard.is_none() {
        return continue_untracked();
    }
    let Some(copy) = inet_copy(sv, request, request.fd_arg(0)) else {
        return continue_untracked();
    };
    let addr = match read_sockaddr(request, request.arg(1), request.arg(2)) {
        Ok(a) => a,
        Err(errno) => return Verdict::Errno(errno),
    };
    // AF_UNSPEC and other families on an inet socket: the kernel may read AF_UNSPEC as
    // the wildcard, so anything but a proper inet address is refused here.
    let Some(target) = addr.as_std() else {
        return Verdict::Errno(libc::EAFNOSUPPORT);
    };
    let tcp = is_stream(&copy);
    let guard = sv.guard.as_mut().expect("checked above");
    if guard.check(Call::Bind, target, tcp).is_err() {
        return Verdict::Errno(libc::EACCES);
    }
    match sys::bind(copy.as_fd(), &addr) {
        Ok(()) => Verdict::Value(0),
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The destination of a sendto/sendmsg/sendmmsg (first message), if it names one.
fn destination(request: &Request) -> Result<Option<SockAddr>, i32> {
    match request.nr() {
        libc::SYS_sendto if request.arg(4) != 0 => {
            read_sockaddr(request, request.arg(4), request.arg(5)).map(Some)
        }
        libc::SYS_sendmsg | libc::SYS_sendmmsg => {
            let raw = request
                .read_memory(request.arg(1), 16)
                .map_err(|e| e.errno())?;
            let name = u64::from_ne_bytes(raw[..8].try_into().expect("8 bytes"));
            let len = u32::from_ne_bytes(raw[8..12].try_into().expect("4 bytes"));
            if name == 0 || len == 0 {
                Ok(None)
            } else {
                read_sockaddr(request, name, len.into()).map(Some)
            }
        }
        _ => Ok(None),
    }
}

/// A send on an untracked socket of a confined tenant. Without a destination, or on a
/// stream socket (which ignores it, except for TCP Fast Open, refused), the kernel runs
/// it. With one, the label decides, then the supervisor sends its copy of the payload
/// to its copy of the address.
pub(super) fn send_untracked(sv: &mut Supervisor, request: &Request) -> Verdict {
    let flags_arg = match request.nr() {
        libc::SYS_sendmsg => 2,
        _ => 3, // sendto, sendmmsg
    };
    let flags = request.arg(flags_arg) as i32;
    let dest = match destination(request) {
        Ok(Some(dest)) => dest,
        Ok(None) => return continue_untracked(),
        Err(errno) => return Verdict::Errno(errno),
    };
    let Some(copy) = inet_copy(sv, request, request.fd_arg(0)) else {
        return continue_untracked();
    };
    if is_stream(&copy) {
        if flags & libc::MSG_FASTOPEN != 0 {
            tracing::warn!(target: "supervise::label", "TCP Fast Open refused for a confined tenant: its implicit connect would skip the label check");
            return Verdict::Errno(libc::EOPNOTSUPP);
        }
        return continue_untracked();
    }
    let Some(target) = dest.as_std() else {
        return Verdict::Errno(libc::EAFNOSUPPORT);
    };
    let guard = sv.guard.as_mut().expect("confined");
    if guard.check(Call::SendTo, target, false).is_err() {
        return Verdict::Errno(libc::EACCES);
    }
    if request.nr() != libc::SYS_sendto {
        return send_message(sv, request, &copy, &dest, flags);
    }
    let len = (request.arg(2) as usize).min(MAX_DATAGRAM + 1);
    let payload = match request.read_memory(request.arg(1), len) {
        Ok(p) => p,
        Err(e) => return Verdict::Errno(e.errno()),
    };
    perform_send(copy, &payload, flags, &dest)
}

/// sendmsg/sendmmsg with a destination: the payload is gathered from the iovecs; control
/// data (IP_PKTINFO could forge the source address) is refused.
fn send_message(
    sv: &mut Supervisor,
    request: &Request,
    copy: &OwnedFd,
    dest: &SockAddr,
    flags: i32,
) -> Verdict {
    let raw = match request.read_memory(request.arg(1), 56) {
        Ok(r) => r,
        Err(e) => return Verdict::Errno(e.errno()),
    };
    let field = |off: usize| u64::from_ne_bytes(raw[off..off + 8].try_into().expect("8 bytes"));
    if field(40) != 0 {
        tracing::warn!(target: "supervise::label", "ancillary data with a destination refused for a confined tenant");
        return Verdict::Errno(libc::EOPNOTSUPP);
    }
    let iovs = match request.read_iovecs(field(16), field(24)) {
        Ok(v) => v,
        Err(errno) => return Verdict::Errno(errno),
    };
    let total: usize = iovs
        .iter()
        .map(|v| v.iov_len)
        .fold(0, usize::saturating_add);
    let take = total.min(MAX_DATAGRAM + 1);
    let taken = match request.read_memory_into(&iovs, &mut sv.scratch[..take]) {
        Ok(n) => n,
        Err(e) => return Verdict::Errno(e.errno()),
    };
    let payload = sv.scratch[..taken].to_vec();
    let copy = match copy.try_clone() {
        Ok(c) => c,
        Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    };
    match perform_send(copy, &payload, flags, dest) {
        Verdict::Value(n) if request.nr() == libc::SYS_sendmmsg => {
            // msg_len of the first mmsghdr, then one message sent.
            let slot = request.arg(1) + super::io::MSGHDR_SIZE;
            match request.write_value(slot, &(n as u32).to_ne_bytes()) {
                Ok(()) => Verdict::Value(1),
                Err(e) => Verdict::Errno(e.errno()),
            }
        }
        other => other,
    }
}

/// Sends without blocking the supervisor; a blocking caller whose socket buffer is full
/// waits (parked) and the call is re-run when it drains.
fn perform_send(copy: OwnedFd, payload: &[u8], flags: i32, dest: &SockAddr) -> Verdict {
    match sys::send_to(
        copy.as_fd(),
        payload,
        flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        dest,
    ) {
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
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Our copy of `ip:0` in a socket's family (v4-mapped for AF_INET6), to bind the
/// tenant's own address as a connection's source.
pub(super) fn source_address(family: i32, ip: Ipv4Addr) -> SockAddr {
    let std = if family == libc::AF_INET6 {
        SocketAddr::new(ip.to_ipv6_mapped().into(), 0)
    } else {
        SocketAddr::new(ip.into(), 0)
    };
    SockAddr::from_std(std)
}
