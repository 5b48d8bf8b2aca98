//! Which handler serves each notified syscall. Kept next to the filter's lists by a
//! test: every call the filter notifies has a handler here, and every call routed here
//! is one the filter notifies (a handler for a call never notified is dead code, a
//! notified call without one would be answered ENOSYS).

#![forbid(unsafe_code)]

/// The handler families of `notify` (one file each, mostly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// read, readv, preadv2, recvfrom, recvmsg, recvmmsg (`io`).
    Read,
    /// write, writev, pwritev2, sendto, sendmsg, sendmmsg (`io`).
    Write,
    /// sendfile, splice: refused on tracked sockets (`io`).
    Splice,
    /// accept, accept4 (`sockets`).
    Accept,
    /// socket, for a confined tenant (`sockets`).
    Socket,
    /// connect (`sockets`).
    Connect,
    /// bind (`addresses`).
    Bind,
    /// listen (`addresses`).
    Listen,
    /// shutdown (`sockets`).
    Shutdown,
    /// inotify_add_watch, for a confined tenant (`agent`).
    Watch,
    /// close (`fds`).
    Close,
    /// close_range (`fds`).
    CloseRange,
    /// dup2, dup3 (`fds`).
    DupOver,
    /// dup, fcntl(F_DUPFD*) (`fds`).
    DupAnywhere,
    /// execve, execveat (`fds`).
    Exec,
    /// clone, fork, vfork (`forks`).
    Fork,
}

/// The family serving syscall `nr`, if any.
pub(super) fn family(nr: libc::c_long) -> Option<Family> {
    Some(match nr {
        libc::SYS_read
        | libc::SYS_readv
        | libc::SYS_preadv2
        | libc::SYS_recvfrom
        | libc::SYS_recvmsg
        | libc::SYS_recvmmsg => Family::Read,
        libc::SYS_write
        | libc::SYS_writev
        | libc::SYS_pwritev2
        | libc::SYS_sendto
        | libc::SYS_sendmsg
        | libc::SYS_sendmmsg => Family::Write,
        libc::SYS_sendfile | libc::SYS_splice => Family::Splice,
        libc::SYS_accept | libc::SYS_accept4 => Family::Accept,
        libc::SYS_socket => Family::Socket,
        libc::SYS_connect => Family::Connect,
        libc::SYS_bind => Family::Bind,
        libc::SYS_listen => Family::Listen,
        libc::SYS_shutdown => Family::Shutdown,
        libc::SYS_inotify_add_watch => Family::Watch,
        libc::SYS_close => Family::Close,
        libc::SYS_close_range => Family::CloseRange,
        libc::SYS_dup2 | libc::SYS_dup3 => Family::DupOver,
        libc::SYS_dup | libc::SYS_fcntl => Family::DupAnywhere,
        libc::SYS_execve | libc::SYS_execveat => Family::Exec,
        libc::SYS_clone | libc::SYS_fork | libc::SYS_vfork => Family::Fork,
        _ => return None,
    })
}

impl Family {
    /// Every family, in a fixed order (metrics index by it).
    pub(super) const ALL: [Family; 16] = [
        Family::Read,
        Family::Write,
        Family::Splice,
        Family::Accept,
        Family::Socket,
        Family::Connect,
        Family::Bind,
        Family::Listen,
        Family::Shutdown,
        Family::Watch,
        Family::Close,
        Family::CloseRange,
        Family::DupOver,
        Family::DupAnywhere,
        Family::Exec,
        Family::Fork,
    ];

    /// Its position in [`Family::ALL`].
    pub(super) fn index(self) -> usize {
        Family::ALL.iter().position(|f| *f == self).unwrap_or(0)
    }

    /// Its name in metrics (`read`, `close-range`).
    pub(super) fn name(self) -> &'static str {
        match self {
            Family::Read => "read",
            Family::Write => "write",
            Family::Splice => "splice",
            Family::Accept => "accept",
            Family::Socket => "socket",
            Family::Connect => "connect",
            Family::Bind => "bind",
            Family::Listen => "listen",
            Family::Shutdown => "shutdown",
            Family::Watch => "watch",
            Family::Close => "close",
            Family::CloseRange => "close-range",
            Family::DupOver => "dup-over",
            Family::DupAnywhere => "dup-anywhere",
            Family::Exec => "exec",
            Family::Fork => "fork",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::family;
    use crate::launch::filter::{NOTIFIED, NOTIFIED_CONDITIONALLY};

    #[test]
    fn the_filter_and_the_dispatch_agree() {
        let notified: Vec<libc::c_long> = NOTIFIED
            .iter()
            .chain(NOTIFIED_CONDITIONALLY)
            .map(|&(nr, _)| nr)
            .collect();
        for &(nr, name) in NOTIFIED.iter().chain(NOTIFIED_CONDITIONALLY) {
            assert!(
                family(nr).is_some(),
                "{name} is notified but has no handler"
            );
        }
        // x86_64 syscall numbers stop below 512.
        for nr in 0..512 {
            if family(nr).is_some() {
                assert!(
                    notified.contains(&nr),
                    "syscall {nr} has a handler but the filter never notifies it"
                );
            }
        }
    }
}
