//! close, close_range, dup2, dup3, execve, dup and fcntl(F_DUPFD): the calls that
//! change what an fd number refers to. They are notified only to keep the tracked-fd
//! cache exact.
//!
//! Before a tracked socket's slot is closed (or overwritten, or closed by exec), the
//! supervisor swaps a placeholder (/dev/null) into it with ADDFD + SETFD. The socket's
//! reference from that slot is gone the moment the ioctl returns, so a release that
//! follows sees the table as it will be; the tenant's own call then closes (or
//! overwrites) the placeholder, and returns what it would have.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::os::fd::AsFd;

use super::request::Request;
use super::{continue_untracked, Supervisor, Verdict};
use crate::notify::table::Lookup;

/// Takes a cached tracked fd out of the tenant's table (placeholder swap) and forgets
/// it (the loop releases the socket if that was its last holder).
fn drop_slot(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t, fd: i32, cloexec: bool) {
    let files = sv.table.files(tgid);
    if sv.table.cached(files, fd).is_none() {
        return;
    }
    if let Err(error) = request.install_fd_at(sv.placeholder.as_fd(), fd, cloexec) {
        tracing::debug!(target: Kind::Registry.target(), fd, %error, "placeholder swap failed (tenant gone?)");
    }
    sv.table.forget(files, fd);
}

/// close(fd).
pub(super) fn close(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let fd = request.fd_arg(0);
    sv.table.forget_untracked(sv.table.files(tgid), fd, fd);
    drop_slot(sv, request, tgid, fd, false);
    continue_untracked()
}

/// close_range(first, last, flags): every cached tracked fd in the range.
pub(super) fn close_range(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let (first, last, flags) = (
        request.arg(0) as u32,
        request.arg(1) as u32,
        request.arg(2) as u32,
    );
    if flags & libc::CLOSE_RANGE_CLOEXEC != 0 {
        return continue_untracked(); // only marks close-on-exec; exec handles those
    }
    let clamp = |v: u32| v.min(i32::MAX as u32) as i32;
    let files = sv.table.files(tgid);
    sv.table.forget_untracked(files, clamp(first), clamp(last));
    let fds: Vec<i32> = sv
        .table
        .fds_of(files)
        .into_iter()
        .filter(|&fd| (first..=last).contains(&(fd as u32)))
        .collect();
    for fd in fds {
        drop_slot(sv, request, tgid, fd, false);
    }
    continue_untracked()
}

/// dup2 / dup3 onto a cached tracked fd.
///
/// When `old` is a tracked socket the supervisor performs the call itself (ADDFD with
/// SETFD installs the same open file description at `new`, atomically replacing what
/// is there, as dup2 does), so the new holder is cached exactly.
pub(super) fn dup_over(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let (old, new) = (request.fd_arg(0), request.fd_arg(1));
    if old == new || new < 0 {
        return continue_untracked(); // dup2: returns new; dup3: EINVAL; EBADF: the kernel says
    }
    let inode = match sv.table.lookup(request, old) {
        Ok(Lookup::Tracked(inode)) => Some(inode),
        Ok(Lookup::Untracked(_)) => None,
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => None,
        Err(e) => return super::io::lookup_failed(request, old, &e),
    };
    if request.nr() == libc::SYS_dup3 && request.arg(2) as i32 & !libc::O_CLOEXEC != 0 {
        return Verdict::Errno(libc::EINVAL);
    }
    sv.table.forget_untracked(sv.table.files(tgid), new, new);
    drop_slot(sv, request, tgid, new, false);
    let Some(inode) = inode else {
        return continue_untracked();
    };
    let cloexec = request.nr() == libc::SYS_dup3 && request.arg(2) as i32 & libc::O_CLOEXEC != 0;
    let Some(copy) = sv.table.copy(inode) else {
        return Verdict::Errno(libc::EBADF);
    };
    match request.install_fd_at(copy, new, cloexec) {
        Ok(()) => {
            sv.table.hold((sv.table.files(tgid), new), inode);
            Verdict::Value(new as i64)
        }
        Err(e) => Verdict::Errno(e.raw_os_error().unwrap_or(libc::EBADF)),
    }
}

/// dup(fd) and fcntl(fd, F_DUPFD[_CLOEXEC], min): the new number is chosen by the
/// kernel and not seen here, so a process duplicating a tracked socket becomes opaque
/// (its descriptors are read before any socket is released) rather than leave a
/// holder the cache does not know.
pub(super) fn dup_anywhere(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    match sv.table.lookup(request, request.fd_arg(0)) {
        Ok(Lookup::Tracked(_)) => sv.table.tenants.mark_opaque(tgid),
        Ok(Lookup::Untracked(_)) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {}
        // Cannot tell: assume the worst.
        Err(_) => sv.table.tenants.mark_opaque(tgid),
    }
    continue_untracked()
}

/// execve / execveat: close-on-exec tracked fds go with the old image.
pub(super) fn exec(sv: &mut Supervisor, request: &Request, tgid: libc::pid_t) -> Verdict {
    let files = sv.table.files(tgid);
    if sv.table.tenants.is_shared(files) {
        // The kernel gives the process a private copy of the table; the other sharers
        // keep theirs whole, so no placeholder goes into the shared one.
        let tid = request.tid();
        sv.table.exec_unshare(tgid, |fd| is_cloexec(tid, fd));
        return continue_untracked();
    }
    // The new image starts afresh (close-on-exec fds go, numbers are reused).
    sv.table.forget_untracked(files, i32::MIN, i32::MAX);
    for fd in sv.table.fds_of(files) {
        if is_cloexec(request.tid(), fd) {
            // A CLOEXEC placeholder: if exec fails the slot holds /dev/null, not the
            // socket (the common fork+exec child exits on failure anyway).
            drop_slot(sv, request, tgid, fd, true);
        }
    }
    continue_untracked()
}

/// Reads the close-on-exec flag from /proc/<tid>/fdinfo/<fd>.
fn is_cloexec(tid: libc::pid_t, fd: i32) -> bool {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{tid}/fdinfo/{fd}")) else {
        return false;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| i64::from_str_radix(v.trim(), 8).ok())
        .is_some_and(|flags| flags & libc::O_CLOEXEC as i64 != 0)
}
