//! The read family (read, readv, recvfrom, recvmsg, recvmmsg) and write family (write,
//! writev, sendto, sendmsg, sendmmsg) on tracked streams: the spool's 1:n and n:1.
//!
//! Reads: whole transformed messages wait in the stream's inbound queue; a read takes
//! as much as the tenant's buffer holds and the rest stays for the next read (1:n).
//! When the queue is empty the supervisor pulls from the kernel (non-blocking) until a
//! message completes. Writes: the tenant's bytes are taken and acknowledged; when they
//! complete a message it is transformed and sent (n:1) — before the call returns, for a
//! blocking socket.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use crate::observe::{Event, Observers, Stage};
use crate::stream::{Effects, NoTap, Stream};
use std::os::fd::BorrowedFd;

use transforms::Direction;

use super::msghdr::{self, MsgHeader};
use super::request::{MemError, Request};
use super::{
    continue_untracked, Park, ParkTarget, Resume, Supervisor, Verdict, OUTBOUND_HIGH_WATER,
    WRITE_CHUNK,
};
use crate::notify::table::{Inode, Lookup, SocketKind};
use crate::sys;

const READ_FLAGS: i32 = libc::MSG_DONTWAIT
    | libc::MSG_PEEK
    | libc::MSG_WAITALL
    | libc::MSG_NOSIGNAL
    | libc::MSG_CMSG_CLOEXEC;
const WRITE_FLAGS: i32 = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE | libc::MSG_EOR;

/// A tracked stream's inode for `fd`, `Ok(None)` if the call is not ours, or the
/// answer when that cannot be told: a descriptor that could not be looked up (the
/// supervisor out of descriptors, say) is never taken for untracked.
pub(super) fn tracked_stream(
    sv: &mut Supervisor,
    request: &Request,
    fd: i32,
) -> Result<Option<Inode>, Verdict> {
    match sv.table.lookup(request, fd) {
        Ok(Lookup::Tracked(inode)) => match sv.table.sockets.get(&inode).map(|t| &t.kind) {
            Some(SocketKind::Stream(_)) => Ok(Some(inode)),
            _ => Ok(None),
        },
        Ok(Lookup::Untracked(_)) => Ok(None),
        Err(e) => Err(lookup_failed(request, fd, &e)),
    }
}

/// The answer to a call whose descriptor could not be looked up: EBADF (not open)
/// lets the kernel say so; anything else fails the call with a logged reason.
pub(super) fn lookup_failed(request: &Request, fd: i32, error: &std::io::Error) -> Verdict {
    match error.raw_os_error() {
        Some(libc::EBADF) => continue_untracked(),
        errno => {
            let syscall = crate::launch::filter::notified_name(request.nr() as i32);
            tracing::error!(target: Kind::Connection.target(), tid = request.tid(), syscall, fd, %error, "cannot tell whether the descriptor is tracked; the call fails");
            Verdict::Errno(match errno {
                Some(libc::EMFILE | libc::ENFILE) => libc::ENOMEM,
                Some(e) => e,
                None => libc::EIO,
            })
        }
    }
}

/// Where a read's bytes go and what else the call reports back.
struct ReadCall {
    iovs: Vec<libc::iovec>,
    flags: i32,
    /// recvfrom's addrlen pointer, or recvmsg's msghdr (its name/control lengths and
    /// flags are written back), and recvmmsg's msg_len slot.
    msghdr: Option<u64>,
    addrlen: Option<u64>,
    mmsg: bool,
}

fn parse_read(request: &Request) -> Result<ReadCall, i32> {
    let one = |addr: u64, len: u64| {
        vec![libc::iovec {
            iov_base: addr as *mut _,
            iov_len: len as usize,
        }]
    };
    let mut call = ReadCall {
        iovs: Vec::new(),
        flags: 0,
        msghdr: None,
        addrlen: None,
        mmsg: false,
    };
    match request.nr() {
        libc::SYS_read => call.iovs = one(request.arg(1), request.arg(2)),
        libc::SYS_readv => call.iovs = request.read_iovecs(request.arg(1), request.arg(2))?,
        libc::SYS_preadv2 => {
            call.iovs = request.read_iovecs(request.arg(1), request.arg(2))?;
            call.flags = rwf_to_msg(request.arg(5))?;
        }
        libc::SYS_recvfrom => {
            call.iovs = one(request.arg(1), request.arg(2));
            call.flags = request.arg(3) as i32;
            if request.arg(4) != 0 && request.arg(5) != 0 {
                call.addrlen = Some(request.arg(5));
            }
        }
        libc::SYS_recvmsg | libc::SYS_recvmmsg => {
            if request.nr() == libc::SYS_recvmmsg && request.arg(2) == 0 {
                return Err(libc::EINVAL);
            }
            let hdr = request.arg(1);
            call.iovs = MsgHeader::read(request, hdr)?.iovecs(request)?;
            call.flags = request.arg(if request.nr() == libc::SYS_recvmsg {
                2
            } else {
                3
            }) as i32;
            call.msghdr = Some(hdr);
            call.mmsg = request.nr() == libc::SYS_recvmmsg;
        }
        _ => return Err(libc::ENOSYS),
    }
    if call.flags & !READ_FLAGS != 0 {
        tracing::warn!(target: Kind::Connection.target(), flags = call.flags, "receive flags not supported on a tracked stream");
        return Err(libc::EOPNOTSUPP);
    }
    Ok(call)
}

/// preadv2/pwritev2 flags on a socket: RWF_NOWAIT acts like MSG_DONTWAIT; the
/// durability and priority hints mean nothing for a socket, as in the kernel.
fn rwf_to_msg(flags: u64) -> Result<i32, i32> {
    const RWF_HIPRI: u64 = 1;
    const RWF_DSYNC: u64 = 2;
    const RWF_SYNC: u64 = 4;
    const RWF_NOWAIT: u64 = 8;
    const RWF_APPEND: u64 = 16;
    if flags & !(RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND) != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok(if flags & RWF_NOWAIT != 0 {
        libc::MSG_DONTWAIT
    } else {
        0
    })
}

/// preadv2/pwritev2 with an explicit offset are positional I/O, which sockets refuse
/// (ESPIPE) in the kernel: only offset -1 (the file position) moves socket bytes.
fn positional(request: &Request) -> bool {
    matches!(request.nr(), libc::SYS_preadv2 | libc::SYS_pwritev2) && request.arg(3) as i64 != -1
}

/// read, readv, preadv2, recvfrom, recvmsg, recvmmsg (first message only).
pub(super) fn read_family(sv: &mut Supervisor, request: &Request) -> Verdict {
    if positional(request) {
        return continue_untracked();
    }
    let inode = match tracked_stream(sv, request, request.fd_arg(0)) {
        Ok(Some(inode)) => inode,
        Ok(None) => {
            note_descriptor_passing(sv, request);
            return continue_untracked();
        }
        Err(verdict) => return verdict,
    };
    let call = match parse_read(request) {
        Ok(call) => call,
        Err(errno) => return Verdict::Errno(errno),
    };
    let wanted: usize = call
        .iovs
        .iter()
        .map(|v| v.iov_len)
        .fold(0usize, usize::saturating_add);
    let peek = call.flags & libc::MSG_PEEK != 0;
    let waitall = call.flags & libc::MSG_WAITALL != 0 && !peek;
    loop {
        let Some((stream, copy)) = sv.table.stream(inode) else {
            return Verdict::Errno(libc::EBADF);
        };
        let queued = stream.inbound.ready.len();
        let ended = stream.inbound.ended || stream.closing;
        if queued > 0 && (queued >= wanted || !waitall || ended)
            || (queued == 0 && ended)
            || wanted == 0
        {
            let n = queued.min(wanted);
            let data = &stream.inbound.ready.as_slice()[..n];
            return match request.write_memory(&call.iovs, data) {
                Ok(written) => match report_read(request, &call, written) {
                    Ok(()) => {
                        let reply = if call.mmsg { 1 } else { written as i64 };
                        Verdict::Deliver {
                            inode,
                            n: written,
                            peek,
                            reply,
                        }
                    }
                    Err(e) => mem_error(e),
                },
                Err(e) => mem_error(e),
            };
        }
        let pull = if stream.is_identity() {
            wanted.saturating_sub(queued).clamp(1, WRITE_CHUNK)
        } else {
            WRITE_CHUNK
        };
        match sys::recv(copy, &mut sv.scratch[..pull], libc::MSG_DONTWAIT) {
            Ok(0) => {
                let (stream, _) = sv.table.stream(inode).expect("stream present");
                stream.end(Direction::Inbound);
            }
            Ok(n) => {
                let (stream, _) = sv.table.stream(inode).expect("stream present");
                let effects = push(
                    stream,
                    &mut sv.components.observers,
                    Direction::Inbound,
                    &sv.scratch[..n],
                );
                sv.after_push(inode);
                let over = over_budget(sv, inode, Direction::Inbound);
                if effects.back_queued || effects.close || over {
                    let _ = flush_outbound(sv, inode);
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                // A partial message stays spooled; a non-blocking tenant sees what a
                // non-blocking socket shows when no whole message is there.
                let nonblocking = call.flags & libc::MSG_DONTWAIT != 0
                    || sys::is_nonblocking(copy).unwrap_or(true);
                return Verdict::would_block(nonblocking, inode, libc::EPOLLIN);
            }
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Verdict::Errno(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// A recvmsg with room for control data on an untracked socket may receive
/// descriptors (SCM_RIGHTS), tracked sockets among them, that no notified call shows:
/// the process becomes opaque (its descriptors are read before a socket is released).
/// A tenant that shrinks the buffer after this look only loses its own connection: a
/// released socket is shut down.
fn note_descriptor_passing(sv: &mut Supervisor, request: &Request) {
    if !matches!(request.nr(), libc::SYS_recvmsg | libc::SYS_recvmmsg) {
        return;
    }
    let Some(tgid) = sv.table.tenants.tgid_of(request.tid()) else {
        return;
    };
    if sv.table.sockets.is_empty() {
        return;
    }
    // recvmsg: one msghdr; recvmmsg: vlen mmsghdrs (a msghdr and its length, 64 bytes).
    let (count, stride) = if request.nr() == libc::SYS_recvmmsg {
        (
            (request.arg(2) as usize).min(super::request::MAX_IOV),
            msghdr::MMSG_STRIDE,
        )
    } else {
        (1, msghdr::SIZE as usize)
    };
    let at = msghdr::CONTROLLEN_AT as usize;
    let room_for_control = request
        .read_memory(request.arg(1), count * stride)
        .map(|raw| {
            raw.chunks(stride)
                .any(|hdr| hdr.len() >= at + 8 && hdr[at..at + 8] != [0u8; 8])
        })
        .unwrap_or(true);
    if room_for_control {
        sv.table.tenants.mark_opaque(tgid);
    }
}

/// Writes back what a receive reports besides the data: no source address and no
/// control data for a stream socket, and (recvmmsg) the message length.
fn report_read(request: &Request, call: &ReadCall, n: usize) -> Result<(), MemError> {
    if let Some(addrlen) = call.addrlen {
        request.write_value(addrlen, &0u32.to_ne_bytes())?;
    }
    if let Some(hdr) = call.msghdr {
        request.write_value(hdr + msghdr::NAMELEN_AT, &0u32.to_ne_bytes())?;
        request.write_value(hdr + msghdr::CONTROLLEN_AT, &0u64.to_ne_bytes())?;
        request.write_value(hdr + msghdr::FLAGS_AT, &0i32.to_ne_bytes())?;
        if call.mmsg {
            request.write_value(hdr + msghdr::MSG_LEN_AT, &(n as u32).to_ne_bytes())?;
        }
    }
    Ok(())
}

fn mem_error(e: MemError) -> Verdict {
    match e {
        MemError::Gone => Verdict::Gone,
        MemError::Fault => Verdict::Errno(libc::EFAULT),
    }
}

/// Where a write's bytes come from.
struct WriteCall {
    iovs: Vec<libc::iovec>,
    flags: i32,
    mmsg_hdr: Option<u64>,
}

fn parse_write(request: &Request) -> Result<WriteCall, i32> {
    let one = |addr: u64, len: u64| {
        vec![libc::iovec {
            iov_base: addr as *mut _,
            iov_len: len as usize,
        }]
    };
    let call = match request.nr() {
        libc::SYS_write => WriteCall {
            iovs: one(request.arg(1), request.arg(2)),
            flags: 0,
            mmsg_hdr: None,
        },
        libc::SYS_pwritev2 => WriteCall {
            iovs: request.read_iovecs(request.arg(1), request.arg(2))?,
            flags: rwf_to_msg(request.arg(5))?,
            mmsg_hdr: None,
        },
        libc::SYS_writev => WriteCall {
            iovs: request.read_iovecs(request.arg(1), request.arg(2))?,
            flags: 0,
            mmsg_hdr: None,
        },
        // A destination address on a connected stream socket is ignored, as by TCP.
        libc::SYS_sendto => WriteCall {
            iovs: one(request.arg(1), request.arg(2)),
            flags: request.arg(3) as i32,
            mmsg_hdr: None,
        },
        libc::SYS_sendmsg | libc::SYS_sendmmsg => {
            if request.nr() == libc::SYS_sendmmsg && request.arg(2) == 0 {
                return Err(libc::EINVAL);
            }
            let hdr = request.arg(1);
            let msg = MsgHeader::read(request, hdr)?;
            if msg.has_control() {
                tracing::warn!(target: Kind::Connection.target(), "ancillary data on a tracked stream is not supported");
                return Err(libc::EOPNOTSUPP);
            }
            let mmsg = request.nr() == libc::SYS_sendmmsg;
            WriteCall {
                iovs: msg.iovecs(request)?,
                flags: request.arg(if mmsg { 3 } else { 2 }) as i32,
                mmsg_hdr: mmsg.then_some(hdr),
            }
        }
        _ => return Err(libc::ENOSYS),
    };
    if call.flags & !WRITE_FLAGS != 0 {
        tracing::warn!(target: Kind::Connection.target(), flags = call.flags, "send flags not supported on a tracked stream");
        return Err(libc::EOPNOTSUPP);
    }
    Ok(call)
}

/// write, writev, pwritev2, sendto, sendmsg, sendmmsg (first message only).
pub(super) fn write_family(sv: &mut Supervisor, request: &Request) -> Verdict {
    if positional(request) {
        return continue_untracked();
    }
    let inode = match tracked_stream(sv, request, request.fd_arg(0)) {
        Ok(Some(inode)) => inode,
        Ok(None) => {
            if let Some(which) = sv.table.found_output() {
                let sends = matches!(
                    request.nr(),
                    libc::SYS_sendto | libc::SYS_sendmsg | libc::SYS_sendmmsg
                );
                if sends {
                    return Verdict::Errno(libc::ENOTSOCK); // a pipe, as the kernel says
                }
                return match parse_write(request) {
                    Ok(call) => super::output::write(sv, request, which, &call.iovs),
                    Err(errno) => Verdict::Errno(errno),
                };
            }
            let sends = matches!(
                request.nr(),
                libc::SYS_sendto | libc::SYS_sendmsg | libc::SYS_sendmmsg
            );
            if sends && sv.guard.is_some() {
                return super::addresses::send_untracked(sv, request);
            }
            return continue_untracked();
        }
        Err(verdict) => return verdict,
    };
    let tgid = sv.table.tenants.tgid_of(request.tid());
    let call = match parse_write(request) {
        Ok(call) => call,
        Err(errno) => return Verdict::Errno(errno),
    };
    let signal_on_epipe = call.flags & libc::MSG_NOSIGNAL == 0;
    let dontwait = call.flags & libc::MSG_DONTWAIT != 0;
    let Some((stream, _)) = sv.table.stream(inode) else {
        return Verdict::Errno(libc::EBADF);
    };
    // O_NONBLOCK is read from the shared file description only when it decides
    // something (a full queue): the common path costs no extra syscall.
    let nonblocking = |copy| dontwait || sys::is_nonblocking(copy).unwrap_or(false);
    if stream.outbound.ended || stream.closing {
        return epipe(request, tgid, signal_on_epipe);
    }
    let backlog = !stream.outbound.ready.is_empty();
    if backlog {
        if let Err(errno) = flush_outbound(sv, inode) {
            return send_error(request, tgid, errno, signal_on_epipe);
        }
        if outbound_len(sv, inode) >= OUTBOUND_HIGH_WATER {
            let copy = sv.table.copy(inode).expect("tracked");
            return Verdict::would_block(nonblocking(copy), inode, libc::EPOLLOUT);
        }
    }
    let wanted: usize = call
        .iovs
        .iter()
        .map(|v| v.iov_len)
        .fold(0usize, usize::saturating_add);
    let take = wanted.min(WRITE_CHUNK);
    let taken = match request.read_memory_into(&call.iovs, &mut sv.scratch[..take]) {
        Ok(n) => n,
        Err(e) => return mem_error(e),
    };
    let (stream, _) = sv.table.stream(inode).expect("stream present");
    let effects = push(
        stream,
        &mut sv.components.observers,
        Direction::Outbound,
        &sv.scratch[..taken],
    );
    sv.after_push(inode);
    if effects.close || over_budget(sv, inode, Direction::Outbound) {
        tracing::info!(target: Kind::Connection.target(), inode, "session closed by policy after a tenant write");
    }
    if let Some(hdr) = call.mmsg_hdr {
        if let Err(e) = request.write_value(hdr + msghdr::MSG_LEN_AT, &(taken as u32).to_ne_bytes())
        {
            return mem_error(e);
        }
    }
    let reply = if call.mmsg_hdr.is_some() { 1 } else { taken };
    if let Err(errno) = flush_outbound(sv, inode) {
        return send_error(request, tgid, errno, signal_on_epipe);
    }
    if !outbound_pending(sv, inode) {
        return Verdict::Value(reply as i64);
    }
    // Bytes the kernel did not take yet: a blocking writer waits for them (the call
    // returns once its message is sent); a non-blocking one returns now and the loop
    // flushes in the background.
    sv.arm(inode);
    let copy = sv.table.copy(inode).expect("tracked");
    if nonblocking(copy) {
        Verdict::Value(reply as i64)
    } else {
        Verdict::Park(Park {
            target: ParkTarget::Socket(inode),
            interest: libc::EPOLLOUT as u32,
            resume: Resume::ReplyAfterFlush(reply),
        })
    }
}

fn epipe(request: &Request, tgid: Option<libc::pid_t>, signal: bool) -> Verdict {
    send_error(request, tgid, libc::EPIPE, signal)
}

/// A send error the tenant must see; EPIPE also raises SIGPIPE unless MSG_NOSIGNAL, as
/// the kernel would (the supervisor's own send used MSG_NOSIGNAL).
fn send_error(request: &Request, tgid: Option<libc::pid_t>, errno: i32, signal: bool) -> Verdict {
    if let (libc::EPIPE, true, Some(tgid)) = (errno, signal, tgid) {
        let _ = sys::tgkill(tgid, request.tid(), libc::SIGPIPE);
    }
    Verdict::Errno(errno)
}

/// A spool past this size makes the supervisor add up the tenant's spools.
const BUDGET_CHECK_FROM: usize = 64 * 1024;

/// Whether the tenant's spools passed their budget with `inode`'s `direction` holding
/// a large partial message; if so that stream follows its `on_error` policy. The sum
/// is taken only past [`BUDGET_CHECK_FROM`], so ordinary messages cost nothing.
fn over_budget(sv: &mut Supervisor, inode: Inode, direction: Direction) -> bool {
    let Some(budget) = sv.spool_budget else {
        return false;
    };
    let large = sv
        .table
        .stream(inode)
        .is_some_and(|(s, _)| s.half(direction).spooled() >= BUDGET_CHECK_FROM);
    if !large || sv.table.spooled_total() <= budget {
        return false;
    }
    let (stream, _) = sv.table.stream(inode).expect("stream present");
    stream.over_budget(direction, budget).close
}

fn outbound_len(sv: &mut Supervisor, inode: Inode) -> usize {
    sv.table
        .stream(inode)
        .map_or(0, |(s, _)| s.outbound.ready.len())
}

/// Whether transformed bytes toward the peer are still queued.
pub(super) fn outbound_pending(sv: &mut Supervisor, inode: Inode) -> bool {
    outbound_len(sv, inode) > 0
}

/// Feeds bytes taken in `direction` to the stream: observers that watch the
/// connection see the bytes, each message and what the rules queued for it.
fn push(
    stream: &mut Stream,
    observers: &mut Observers,
    direction: Direction,
    bytes: &[u8],
) -> Effects {
    if observers.wants_messages(&stream.dpid) {
        observers.taken(&stream.dpid, direction, bytes);
        stream.push(direction, bytes, observers)
    } else {
        stream.push(direction, bytes, &mut NoTap)
    }
}

/// Sends queued outbound bytes without blocking, as far as the kernel takes them.
/// When a policy closed the session and everything is out, shuts the socket down.
pub(super) fn flush_outbound(sv: &mut Supervisor, inode: Inode) -> Result<(), i32> {
    let Some((stream, copy)) = sv.table.stream(inode) else {
        return Ok(());
    };
    let observers = &mut sv.components.observers;
    let result = if observers.wants_messages(&stream.dpid) {
        let conn = stream.dpid.clone();
        send_all_nonblocking(copy, &mut stream.outbound, &mut |bytes| {
            observers.emit(&Event::Bytes {
                conn: &conn,
                direction: Direction::Outbound,
                stage: Stage::Delivered,
                bytes,
            })
        })
    } else {
        send_all_nonblocking(copy, &mut stream.outbound, &mut |_| {})
    };
    if stream.shutdown_after_flush && stream.outbound.ready.is_empty() {
        stream.shutdown_after_flush = false;
        let _ = sys::shutdown(copy, libc::SHUT_WR);
    }
    if stream.closing && stream.outbound.ready.is_empty() && !stream.outbound.ended {
        stream.outbound.ended = true;
        stream.inbound.ended = true;
        let _ = sys::shutdown(copy, libc::SHUT_RDWR);
    }
    result
}

/// Sends what `half` has ready; `sent` sees each run of bytes the kernel took.
fn send_all_nonblocking(
    copy: BorrowedFd<'_>,
    half: &mut crate::stream::Half,
    sent: &mut dyn FnMut(&[u8]),
) -> Result<(), i32> {
    while !half.ready.is_empty() {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        match sys::send(copy, half.ready.as_slice(), flags) {
            Ok(n) => {
                sent(&half.ready.as_slice()[..n]);
                half.delivered(n)
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => {
                let dropped = half.ready.clear();
                half.dropped += dropped as u64;
                tracing::warn!(target: Kind::Connection.target(), error = %e, dropped, "peer gone; queued outbound bytes dropped");
                return Err(e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
    }
    Ok(())
}

/// sendfile and splice would move bytes between a tracked socket and another fd inside
/// the kernel, around the spool: refused on tracked sockets (EINVAL, which is what the
/// kernel returns for unsupported fd pairs), passed through otherwise.
pub(super) fn refuse_on_tracked(sv: &mut Supervisor, request: &Request) -> Verdict {
    let fds: &[usize] = if request.nr() == libc::SYS_sendfile {
        &[0, 1]
    } else {
        &[0, 2]
    };
    for &i in fds {
        let tracked = match tracked_stream(sv, request, request.fd_arg(i)) {
            Ok(found) => found.is_some(),
            Err(verdict) => return verdict,
        };
        if tracked {
            tracing::warn!(target: Kind::Connection.target(), syscall = crate::launch::filter::notified_name(request.nr() as i32), "refused on a tracked stream: it would bypass the spool");
            return Verdict::Errno(libc::EINVAL);
        }
    }
    continue_untracked()
}
