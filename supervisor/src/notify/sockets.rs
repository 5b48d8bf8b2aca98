//! accept, accept4, connect and shutdown: the calls that create or end tracked
//! connections. The supervisor performs them on its own copy of the socket with its own
//! copy of the arguments, never by letting the kernel re-read tenant memory.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::os::fd::{AsFd, OwnedFd};

use transforms::Direction;

use super::request::{MemError, Request};
use super::{addresses, continue_untracked, io, Park, ParkTarget, Resume, Supervisor, Verdict};
use crate::label::guard::Call;
use crate::notify::table::{Inode, Lookup, SocketKind};
use crate::stream::Stream;
use crate::sys::{self, SockAddr};

/// Finds (or classifies) the tracked listener behind the tenant's fd. `Err` carries the
/// answer when there is none: CONTINUE where no decision rests on the call, an errno
/// for a confined tenant's descriptor that is not an open socket (see `addresses`).
fn tracked_listener(
    sv: &mut Supervisor,
    request: &Request,
    tgid: libc::pid_t,
    fd: i32,
) -> Result<Inode, Verdict> {
    let confined = sv.guard.is_some();
    let undecided = || continue_untracked();
    let copy = match sv.table.lookup(request, fd) {
        Ok(Lookup::Tracked(inode)) => {
            return match sv.table.sockets.get(&inode).map(|t| &t.kind) {
                Some(SocketKind::Listener { .. }) => Ok(inode),
                _ if confined => Err(Verdict::Errno(libc::EINVAL)),
                _ => Err(undecided()),
            }
        }
        Ok(Lookup::Untracked(Some(copy))) => copy,
        Ok(Lookup::Untracked(None)) if confined => return Err(Verdict::Errno(libc::ENOTSOCK)),
        Err(e) if confined => return Err(Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF))),
        Ok(Lookup::Untracked(None)) => return Err(undecided()),
        Err(e) => return Err(io::lookup_failed(request, fd, &e)),
    };
    let option = |name| sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, name).ok();
    let family = option(libc::SO_DOMAIN);
    let inet = family == Some(libc::AF_INET) || family == Some(libc::AF_INET6);
    let listening = option(libc::SO_ACCEPTCONN).is_some_and(|v| v != 0);
    let port = sys::local_addr(copy.as_fd()).ok().and_then(|a| a.port());
    let config = port.and_then(|p| sv.profile.stream_for_listen_port(p));
    if !listening || (!confined && (!inet || config.is_none())) {
        // A confined tenant's socket that is not listening: what the kernel says.
        return Err(if confined {
            Verdict::Errno(libc::EINVAL)
        } else {
            undecided()
        });
    }
    // A confined tenant's every listener is ours: its inet peers are checked, and no
    // accept is CONTINUEd (a second thread could put another listener at the number).
    let inode = sv
        .table
        .track(
            copy,
            SocketKind::Listener {
                config,
                stash: Default::default(),
            },
        )
        .map_err(|e| Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
    sv.table.hold((sv.table.files(tgid), fd), inode);
    // A listener is tracked at its first accept, but processes forked since it was
    // created hold it too (a prefork master that never accepts): find them once.
    if let Err(error) = sv.table.adopt_holders(inode) {
        tracing::warn!(target: Kind::Connection.target(), %error, "cannot read which tenant processes hold a listener; they are treated as opaque");
        sv.table.tenants.mark_all_opaque();
    }
    let stream = config.map_or("(labels only)", |c| sv.profile.streams[c].name.as_str());
    tracing::info!(target: Kind::Connection.target(), stream, port, "tracking listener");
    Ok(inode)
}

/// accept / accept4 on a tracked listener: accept on our copy, track the connection,
/// inject it with ADDFD_FLAG_SEND (atomic with the answer).
pub(super) fn accept(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let listener = match tracked_listener(sv, request, tgid, request.fd_arg(0)) {
        Ok(listener) => listener,
        Err(verdict) => return verdict,
    };
    let flags = if request.nr() == libc::SYS_accept4 {
        request.arg(3) as i32
    } else {
        0
    };
    if flags & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) != 0 {
        return Verdict::Errno(libc::EINVAL);
    }
    let (config, conn, peer) = loop {
        let (config, conn, peer) = match next_connection(sv, listener, flags) {
            Ok(next) => next,
            Err(verdict) => return verdict,
        };
        let refused = match (sv.guard.as_mut(), peer.as_std()) {
            (Some(guard), Some(from)) => guard.check(Call::Accept, from, true).is_err(),
            _ => false,
        };
        if !refused {
            break (config, conn, peer);
        }
        sys::close_with_reset(conn);
    };
    if let Err(error) = write_peer_address(request, &peer) {
        // Accepted but not handed over: the connection waits for the next accept.
        if let Some(SocketKind::Listener { stash, .. }) =
            sv.table.sockets.get_mut(&listener).map(|t| &mut t.kind)
        {
            stash.push_front((conn, peer));
        }
        return match error {
            MemError::Gone => Verdict::Gone,
            MemError::Fault => Verdict::Errno(libc::EFAULT),
        };
    }
    let Some(config) = config else {
        return Verdict::InjectUntracked {
            conn,
            cloexec: flags & libc::SOCK_CLOEXEC != 0,
            listener,
            peer,
        };
    };
    let dpid = sv.components.new_connection(config);
    let stream = Stream::new(&sv.profile.streams[config], config, dpid);
    let local = address_text(sys::local_addr(conn.as_fd()).ok());
    match sv.table.track(conn, SocketKind::Stream(Box::new(stream))) {
        Ok(inode) => {
            sv.emit_opened(inode, &local, &address_text(Some(peer)), true);
            Verdict::Inject {
                inode,
                cloexec: flags & libc::SOCK_CLOEXEC != 0,
                listener,
                peer,
            }
        }
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// The next connection of a tracked listener: one stashed by an accept whose tenant
/// thread went away, or a fresh one from the kernel; a verdict when there is none.
#[allow(clippy::type_complexity)]
fn next_connection(
    sv: &mut Supervisor,
    listener: Inode,
    flags: i32,
) -> Result<(Option<usize>, OwnedFd, SockAddr), Verdict> {
    let Some(tracked) = sv.table.sockets.get_mut(&listener) else {
        return Err(Verdict::Errno(libc::EBADF));
    };
    let SocketKind::Listener { config, stash } = &mut tracked.kind else {
        return Err(Verdict::Errno(libc::EINVAL));
    };
    let config = *config;
    let (conn, peer) = match stash.pop_front() {
        Some((conn, peer)) => {
            let _ = sys::set_nonblocking(conn.as_fd(), flags & libc::SOCK_NONBLOCK != 0);
            (conn, peer)
        }
        None => {
            let copy = tracked.copy.as_fd();
            // We are the only acceptor of a tracked listener (every accept is ours), so
            // a connection that poll shows stays there for the accept4 below.
            let readable = sys::poll_now(copy, libc::POLLIN)
                .map(|r| r & libc::POLLIN != 0)
                .unwrap_or(false);
            if !readable {
                let nonblocking = sys::is_nonblocking(copy).unwrap_or(true);
                return Err(Verdict::would_block(nonblocking, listener, libc::EPOLLIN));
            }
            let accepted = sv
                .table
                .reserve
                .retry(|| sys::accept4(copy, libc::SOCK_CLOEXEC | (flags & libc::SOCK_NONBLOCK)));
            let (conn, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    return Err(Verdict::Errno(libc::EAGAIN))
                }
                Err(e) => return Err(Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO))),
            };
            // Admission: a connection is handed over only while the reserve stays
            // full, so what it will need later (its process's pidfd, /proc reads) is
            // there. Otherwise its client is told why, instead of waiting in the
            // backlog while the tenant's accepts fail; the tenant's accept fails with
            // ECONNABORTED (servers take it as transient) and never parks: a tenant
            // that polled before a blocking accept (PostgreSQL's postmaster, signals
            // blocked) would otherwise wait in accept for the next client.
            if !sv.table.reserve.refill() {
                refuse(sv, config, conn, &peer);
                return Err(Verdict::Errno(libc::ECONNABORTED));
            }
            (conn, peer)
        }
    };
    Ok((config, conn, peer))
}

/// What a refused client is told (in its protocol's words where the stream has one).
const REFUSAL: &str =
    "supervise: the supervisor is out of file descriptors; connection refused (try again later)";

/// Ends a connection the supervisor cannot take on: the protocol's refusal, then FIN.
fn refuse(sv: &Supervisor, config: Option<usize>, conn: OwnedFd, peer: &SockAddr) {
    tracing::warn!(target: Kind::Connection.target(), peer = ?peer.as_std(), "connection refused: the supervisor is at its file descriptor limit (EMFILE); raise its RLIMIT_NOFILE");
    let refusal = config
        .map(|c| {
            sv.profile.streams[c]
                .new_framer(Direction::Inbound)
                .refusal(REFUSAL)
        })
        .unwrap_or_default();
    if !refusal.is_empty() {
        let _ = sys::send(
            conn.as_fd(),
            &refusal,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
    }
    let _ = sys::shutdown(conn.as_fd(), libc::SHUT_WR);
    // Whatever the client already sent is read, so the close sends no RST that could
    // overtake the refusal.
    let mut sink = [0u8; 1024];
    while matches!(sys::recv(conn.as_fd(), &mut sink, libc::MSG_DONTWAIT), Ok(n) if n > 0) {}
}

/// accept's `addr`/`addrlen` out-parameters: truncated to the tenant's buffer, the
/// full length reported, like the kernel.
fn write_peer_address(request: &Request, peer: &SockAddr) -> Result<(), MemError> {
    let (addr, addrlen) = (request.arg(1), request.arg(2));
    if addr == 0 || addrlen == 0 {
        return Ok(());
    }
    let raw = request.read_memory(addrlen, 4)?;
    // A negative length is EINVAL in the kernel; treat it as no room.
    let room = i32::from_ne_bytes(raw[..4].try_into().expect("4 bytes")).max(0) as usize;
    let bytes = peer.as_bytes();
    let n = bytes.len().min(room);
    request.write_value(addr, &bytes[..n])?;
    request.write_value(addrlen, &(bytes.len() as u32).to_ne_bytes())
}

/// socket(AF_INET or AF_INET6, …) for a confined tenant, which lives in a network
/// namespace of its own (empty: `/proc/self/net` and netlink show it nothing of the
/// host's sockets): the supervisor creates the socket in the host's namespace, owned
/// by the tenant's uid, and hands it over. Only what an unprivileged tenant could
/// create itself: TCP and UDP (no raw sockets, no ICMP "ping" sockets: the supervisor's
/// privileges must not lend it what the kernel would refuse it).
pub(super) fn create(sv: &mut Supervisor, request: &Request) -> Verdict {
    let Some(guard) = sv.guard.as_ref() else {
        return continue_untracked(); // not notified for an unconfined tenant
    };
    let (domain, ty, protocol) = (
        request.arg(0) as i32,
        request.arg(1) as i32,
        request.arg(2) as i32,
    );
    let flags = ty & (libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let kind = ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
    let verdict = match (kind, protocol) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) | (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => {
            None
        }
        (libc::SOCK_RAW, _) => Some(libc::EPERM),
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => Some(libc::EACCES),
        (libc::SOCK_STREAM | libc::SOCK_DGRAM, _) => Some(libc::EPROTONOSUPPORT),
        _ => Some(libc::ESOCKTNOSUPPORT),
    };
    if let Some(errno) = verdict {
        return Verdict::Errno(errno);
    }
    let uid = guard.entry().uid;
    match sys::socket_as(uid, domain, kind | flags | libc::SOCK_CLOEXEC, protocol) {
        Ok(fd) => Verdict::InjectNew {
            fd,
            cloexec: flags & libc::SOCK_CLOEXEC != 0,
        },
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::ENOBUFS)),
    }
}

/// connect: performed by the supervisor on its copy, with its copy of the address, for
/// every IP socket (so a tenant thread cannot swap the address after the decision).
/// A connection to a tracked remote port becomes a stream.
pub(super) fn connect(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let fd = request.fd_arg(0);
    let copy = match sv.table.lookup(request, fd) {
        Ok(Lookup::Untracked(Some(copy))) => copy,
        Ok(Lookup::Tracked(inode)) => match sv.table.copy(inode).map(|c| c.try_clone_to_owned()) {
            Some(Ok(copy)) => copy,
            _ => return Verdict::Errno(libc::EBADF),
        },
        // A confined tenant's call is answered here (see `addresses`).
        Ok(Lookup::Untracked(None)) if sv.guard.is_some() => return Verdict::Errno(libc::ENOTSOCK),
        Err(e) if sv.guard.is_some() => {
            return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF))
        }
        // Not a socket: the kernel gives the right error.
        Ok(Lookup::Untracked(None)) => return continue_untracked(),
        Err(e) => return io::lookup_failed(request, fd, &e),
    };
    let domain = sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        if sv.guard.is_some() {
            return super::agent::connect(sv, request, copy);
        }
        return continue_untracked();
    }
    let len = request.arg(2) as usize;
    if len > std::mem::size_of::<libc::sockaddr_storage>() {
        return Verdict::Errno(libc::EINVAL);
    }
    let bytes = match request.read_memory(request.arg(1), len) {
        Ok(b) => b,
        Err(e) => return Verdict::Errno(e.errno()),
    };
    let Some(addr) = SockAddr::from_bytes(&bytes) else {
        return Verdict::Errno(libc::EINVAL);
    };
    if let Some(verdict) = label_connect(sv, &copy, domain, &addr) {
        return verdict;
    }
    let tenant_nonblocking = sys::is_nonblocking(copy.as_fd()).unwrap_or(false);
    // The supervisor must not block: a blocking socket is connected non-blocking and the
    // call parked. The flag is restored at once (the window is a few microseconds).
    let saved = if tenant_nonblocking {
        None
    } else {
        sys::set_nonblocking(copy.as_fd(), true).ok()
    };
    let result = sys::connect(copy.as_fd(), &addr);
    if let Some(flags) = saved {
        let _ = sys::restore_flags(copy.as_fd(), flags);
    }
    let config = addr
        .port()
        .and_then(|p| sv.profile.stream_for_remote_port(p));
    let errno = result.as_ref().err().and_then(|e| e.raw_os_error());
    let started =
        result.is_ok() || errno == Some(libc::EINPROGRESS) || errno == Some(libc::EALREADY);
    let mut target_inode = None;
    if let (Some(config), true) = (config, started) {
        target_inode = Some(track_connection(sv, tgid, fd, &copy, config));
    }
    match errno {
        None => Verdict::Value(0),
        Some(libc::EINPROGRESS | libc::EALREADY) if !tenant_nonblocking => {
            let target = match target_inode {
                Some(inode) => ParkTarget::Socket(inode),
                None => ParkTarget::Own(copy),
            };
            Verdict::Park(Park {
                target,
                interest: libc::EPOLLOUT as u32,
                resume: Resume::ConnectResult,
            })
        }
        Some(e) => Verdict::Errno(e),
    }
}

/// A confined tenant's connect: refused across labels (EACCES), otherwise the socket
/// gets the tenant's own address as its source when it has none, so the peer's
/// supervisor sees who is calling. `None`: go on and connect.
fn label_connect(
    sv: &mut Supervisor,
    copy: &OwnedFd,
    domain: i32,
    addr: &SockAddr,
) -> Option<Verdict> {
    let guard = sv.guard.as_mut()?;
    let Some(target) = addr.as_std() else {
        // AF_UNSPEC dissolves a datagram association: nothing to decide. Any other
        // family on an inet socket is refused rather than left to the kernel.
        return (addr.family() as i32 != libc::AF_UNSPEC).then(|| addresses::bad_address(addr));
    };
    let tcp = sys::sockopt_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_TYPE).ok()
        == Some(libc::SOCK_STREAM);
    if guard.check(Call::Connect, target, tcp).is_err() {
        return Some(Verdict::Errno(libc::EACCES));
    }
    let source = guard.source_for(target.ip())?;
    let unbound = sys::local_addr(copy.as_fd())
        .ok()
        .and_then(|a| a.as_std())
        .is_some_and(|a| a.port() == 0 && a.ip().is_unspecified());
    if unbound {
        // The port is chosen at connect time, so a connection costs no reserved port.
        let _ = sys::set_sockopt_int(
            copy.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            1,
        );
        let local = addresses::source_address(domain, source);
        if let Err(error) = sys::bind(copy.as_fd(), &local) {
            // Connecting unlabeled would let the peer take the call for the host's.
            tracing::warn!(target: Kind::Label.target(), %error, %source, "cannot bind the tenant's source address; connect refused");
            return Some(Verdict::Errno(
                error.raw_os_error().unwrap_or(libc::EADDRNOTAVAIL),
            ));
        }
    }
    None
}

fn track_connection(
    sv: &mut Supervisor,
    tgid: libc::pid_t,
    fd: i32,
    copy: &OwnedFd,
    config: usize,
) -> Inode {
    let (inode, _) = sys::inode_of(copy.as_fd()).unwrap_or((0, true));
    if !sv.table.sockets.contains_key(&inode) {
        let dpid = sv.components.new_connection(config);
        let stream = Stream::new(&sv.profile.streams[config], config, dpid);
        if let Ok(own) = copy.try_clone() {
            let local = address_text(sys::local_addr(own.as_fd()).ok());
            let peer = address_text(
                rustix::net::getpeername(&own)
                    .ok()
                    .flatten()
                    .and_then(|a| std::net::SocketAddr::try_from(a).ok())
                    .map(SockAddr::from_std),
            );
            if let Ok(inode) = sv.table.track(own, SocketKind::Stream(Box::new(stream))) {
                sv.table.hold((sv.table.files(tgid), fd), inode);
                sv.emit_opened(inode, &local, &peer, false);
            }
        }
    }
    inode
}

/// The outcome of a parked blocking connect.
pub(super) fn connect_result(sv: &mut Supervisor, park: Park) -> Verdict {
    let fd = match &park.target {
        ParkTarget::Own(fd) => fd.as_fd(),
        ParkTarget::Socket(inode) => match sv.table.copy(*inode) {
            Some(fd) => fd,
            None => return Verdict::Errno(libc::EBADF),
        },
    };
    match sys::sockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Ok(0) => {
            let connected = sys::poll_now(fd, libc::POLLOUT)
                .map(|r| r & libc::POLLOUT != 0)
                .unwrap_or(true);
            if connected {
                Verdict::Value(0)
            } else {
                Verdict::Park(park)
            }
        }
        Ok(err) => Verdict::Errno(err),
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// shutdown on a tracked stream: SHUT_WR ends the outbound direction (a partial
/// message follows the on_partial_close policy), flushes, then shuts our copy down;
/// SHUT_RD ends the inbound direction.
pub(super) fn shutdown(sv: &mut Supervisor, request: &Request) -> Verdict {
    let inode = match io::tracked_stream(sv, request, request.fd_arg(0)) {
        Ok(Some(inode)) => inode,
        Ok(None) => return continue_untracked(),
        Err(verdict) => return verdict,
    };
    let how = request.arg(1) as i32;
    if !matches!(how, libc::SHUT_RD | libc::SHUT_WR | libc::SHUT_RDWR) {
        return Verdict::Errno(libc::EINVAL);
    }
    let (stream, _) = sv.table.stream(inode).expect("tracked stream");
    if how != libc::SHUT_RD {
        stream.end(Direction::Outbound);
    }
    if how != libc::SHUT_WR {
        stream.inbound.ended = true;
    }
    let _ = io::flush_outbound(sv, inode);
    // Calls parked on it see the end now, as the kernel's would.
    sv.wake_later(inode);
    let (stream, copy) = sv.table.stream(inode).expect("tracked stream");
    if how == libc::SHUT_RD || stream.outbound.ready.is_empty() {
        return match sys::shutdown(copy, how) {
            Ok(()) => Verdict::Value(0),
            Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        };
    }
    // Bytes are still queued toward the peer: the FIN must follow them.
    stream.closing = how == libc::SHUT_RDWR || stream.closing;
    stream.shutdown_after_flush = true;
    sv.arm(inode);
    Verdict::Value(0)
}

/// An address as logs and `ctl state` show it (`127.0.0.1:5432`).
fn address_text(address: Option<SockAddr>) -> String {
    match address {
        Some(a) => a
            .as_std()
            .map_or_else(|| format!("{a:?}"), |std| std.to_string()),
        None => "unknown".to_owned(),
    }
}
