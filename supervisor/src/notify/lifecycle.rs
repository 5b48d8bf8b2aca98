//! The tenant's lifecycle as the loop sees it: threads and processes exiting (their
//! tracked sockets released once nobody holds them), the supervisor's own signals, and
//! the init stub's report of the tenant's exit status.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::os::fd::AsFd;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;
use rustix::process::{kill_process, waitpid, Pid, Signal, WaitOptions};

use super::events;
use super::{io, Supervisor};
use crate::launch::handoff::{self, Report};
use crate::notify::table::{Inode, SocketKind};
use crate::sys;

impl Supervisor {
    pub(super) fn on_thread_exit(&mut self, tid: libc::pid_t) {
        if !self.table.tenants.thread_exited(tid) {
            return; // a stale event: the tid now names a live thread
        }
        self.table.resolve_fork(tid, true);
        let gone = self.waiters.of_threads(|_, t| t == tid);
        self.drop_waiters(gone);
    }

    pub(super) fn on_process_exit(&mut self, tgid: libc::pid_t) {
        if !self.table.tenants.process_exited(tgid) {
            return; // a stale event: the pid now names a live process
        }
        let gone = self.waiters.of_threads(|t, _| t == tgid);
        self.drop_waiters(gone);
        self.flush_output_of(tgid);
        self.table.forget_process(tgid);
    }

    /// Releases the sockets nothing holds any more, once opaque processes are known
    /// not to hold them either; if that cannot be known, they stay tracked (retried on
    /// the ticker).
    pub(super) fn release_unheld(&mut self) {
        if self.table.unheld.is_empty() && self.deferred.is_empty() {
            return;
        }
        let mut candidates = std::mem::take(&mut self.table.unheld);
        candidates.append(&mut self.deferred);
        match self.table.confirm_unheld(&candidates) {
            Ok(unheld) => {
                for inode in unheld {
                    self.retire(inode);
                }
            }
            Err(error) => {
                tracing::warn!(target: Kind::Supervisor.target(), %error, sockets = candidates.len(), "cannot read a tenant process's descriptors; its sockets stay tracked until it can be read");
                candidates.retain(|i| self.table.sockets.get(i).is_some_and(|t| t.is_unheld()));
                self.deferred = candidates;
                self.arm_ticker();
            }
        }
    }

    /// No tenant process holds `inode` any more: apply the partial-message policy,
    /// flush what is queued toward the peer, then shut it down and close our copy.
    pub(super) fn retire(&mut self, inode: Inode) {
        if let Some((stream, _)) = self.table.stream(inode) {
            stream.end(transforms::Direction::Outbound);
            let unread = stream.inbound.ready.clear() + stream.inbound.spooled();
            stream.inbound.dropped += unread as u64;
            if unread > 0 {
                tracing::info!(target: Kind::Supervisor.target(), stream = %stream.name, unread, "tenant closed the connection with inbound bytes unread (as the kernel would discard them)");
            }
        }
        let _ = io::flush_outbound(self, inode);
        if let Some(t) = self.table.sockets.get_mut(&inode) {
            if let SocketKind::Listener { stash, .. } = &t.kind {
                if !stash.is_empty() {
                    tracing::warn!(target: Kind::Supervisor.target(), dropped = stash.len(), "listener closed with undelivered connections");
                }
            }
            if let SocketKind::Stream(s) = &mut t.kind {
                s.closing = true;
            }
        }
        self.arm(inode);
        self.retire_if_drained(inode);
    }

    pub(super) fn retire_if_drained(&mut self, inode: Inode) {
        let Some(t) = self.table.sockets.get(&inode) else {
            return;
        };
        let drained = match &t.kind {
            SocketKind::Stream(s) => s.closing && s.outbound.ready.is_empty(),
            SocketKind::Listener { .. } => true,
        };
        if drained && t.is_unheld() {
            if let Some(t) = self.table.untrack(inode) {
                self.epoll.remove(t.copy.as_fd());
                // Failing closed: a holder the supervisor missed finds the connection
                // ended, never a live socket nobody tracks.
                let _ = sys::shutdown(t.copy.as_fd(), libc::SHUT_RDWR);
                if let SocketKind::Stream(stream) = &t.kind {
                    self.emit_released(stream);
                }
                tracing::debug!(target: Kind::Supervisor.target(), inode, "released tracked socket");
            }
        }
    }

    pub(super) fn on_signals(&mut self) {
        while let Some((sig, from_process)) = events::read_signal(self.signals.as_fd()) {
            if sig == libc::SIGCHLD {
                self.reap_stub();
            } else if from_process {
                tracing::info!(target: Kind::Supervisor.target(), sig, "forwarding signal to the tenant");
                // Our own child, the init stub, relays it. The signals read here are the
                // handled ones (named), and the stub's pid is positive, so both convert.
                if let (Some(pid), Some(sig)) = (
                    Pid::from_raw(self.launched.stub_pid),
                    Signal::from_named_raw(sig),
                ) {
                    let _ = kill_process(pid, sig);
                }
            }
        }
    }

    pub(super) fn on_report(&mut self) {
        let mut message = [0u8; 8];
        // 0 for an error as for the end of the stream: both mean the stub is gone.
        let received =
            match rustix::net::recv(&self.launched.report, &mut message, RecvFlags::DONTWAIT) {
                Ok((n, _)) => n,
                Err(_) => 0,
            };
        if let Some(Report::Status(status)) = handoff::decode(&message[..received]) {
            self.exit_code = Some(exit_code_of(status));
            tracing::info!(target: Kind::Supervisor.target(), code = self.exit_code, "tenant exited");
        } else if received == 0 {
            self.epoll.remove(self.launched.report.as_fd());
            self.reap_stub();
        }
    }

    pub(super) fn reap_stub(&mut self) {
        // Only our own child, the init stub: never `None` (any child) for a bad pid.
        let Some(stub) = Pid::from_raw(self.launched.stub_pid) else {
            return;
        };
        let reaped = waitpid(Some(stub), WaitOptions::NOHANG);
        let Ok(Some((pid, status))) = reaped else {
            return;
        };
        let status = status.as_raw();
        if pid == stub && self.exit_code.is_none() {
            self.on_report();
            if self.exit_code.is_none() {
                tracing::error!(target: Kind::Supervisor.target(), status, "the init stub died without reporting the tenant's status");
                self.exit_code = Some(exit_code_of(status));
            }
        }
    }

    /// The tenant is gone: give queued outbound bytes a bounded chance to reach their
    /// peers before the supervisor exits (and closes its copies).
    pub(super) fn drain_before_exit(&mut self) {
        self.flush_all_output();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let inodes: Vec<Inode> = self.table.sockets.keys().copied().collect();
        for inode in inodes {
            while io::outbound_pending(self, inode) && std::time::Instant::now() < deadline {
                let Some(copy) = self.table.copy(inode) else {
                    break;
                };
                let mut pfd = [PollFd::from_borrowed_fd(copy, PollFlags::OUT)];
                let wait = Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                };
                let _ = poll(&mut pfd, Some(&wait));
                if io::flush_outbound(self, inode).is_err() {
                    break;
                }
            }
        }
        // The stations write what they hold and close (5 s at most in all): the
        // loop's threads are never joined, so nothing else would.
        if let Some(mirror) = &self.components.mirror {
            mirror.lock().close();
        }
    }
}

/// Wait status → shell-style exit code.
pub(super) fn exit_code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}
