//! Parked calls: a call that cannot complete now waits for its socket (one-shot epoll
//! interest), is re-run when the socket is ready, and is given back to its thread when a
//! signal is pending for it (checked by a 10 ms ticker while anything is parked).

use std::os::fd::AsFd;

use super::events::{self, Token};
use super::request::{self, Request};
use super::{io, sockets, Park, ParkTarget, Resume, Supervisor, Verdict, Waiter};
use crate::stream::table::{Inode, SocketKind};

impl Supervisor {
    pub(super) fn park(&mut self, request: Request, tgid: libc::pid_t, park: Park) {
        let serial = self.next_serial;
        self.next_serial += 1;
        match &park.target {
            ParkTarget::Socket(inode) => {
                if let Some(t) = self.table.sockets.get_mut(inode) {
                    t.armed |= park.interest;
                }
                self.arm(*inode);
            }
            ParkTarget::Own(fd) => {
                let events = park.interest | libc::EPOLLONESHOT as u32;
                if let Err(error) = self.epoll.add(fd.as_fd(), events, Token::Waiter(serial)) {
                    tracing::error!(target: "supervise::notify", %error, "cannot watch a parked call");
                }
            }
        }
        self.waiters.push(Waiter {
            request,
            tgid,
            serial,
            park,
        });
        if !self.ticker_armed {
            events::set_ticker(self.ticker.as_fd(), Some(10));
            self.ticker_armed = true;
        }
    }

    /// (Re-)arms the one-shot epoll interest of a tracked socket: what its parked calls
    /// wait for, plus EPOLLOUT while it has bytes to flush in the background.
    pub(super) fn arm(&mut self, inode: Inode) {
        let Some(t) = self.table.sockets.get_mut(&inode) else {
            return;
        };
        let mut interest = t.armed;
        if let SocketKind::Stream(s) = &t.kind {
            if !s.outbound.ready.is_empty() {
                interest |= libc::EPOLLOUT as u32;
            }
        }
        if interest == t.registered {
            return; // already armed for exactly this (one-shot not yet fired)
        }
        let events = interest | libc::EPOLLONESHOT as u32;
        if self
            .epoll
            .modify(t.copy.as_fd(), events, Token::Socket(inode))
            .is_err()
        {
            let _ = self.epoll.add(t.copy.as_fd(), events, Token::Socket(inode));
        }
        t.registered = interest;
    }

    pub(super) fn on_socket_ready(&mut self, inode: Inode) {
        if let Some(t) = self.table.sockets.get_mut(&inode) {
            t.armed = 0;
            t.registered = 0; // the one-shot fired: disarmed
        }
        if let Err(errno) = io::flush_outbound(self, inode) {
            tracing::debug!(target: "supervise::notify", inode, errno, "background flush failed");
        }
        self.wake_waiters(|w| matches!(w.park.target, ParkTarget::Socket(i) if i == inode));
        self.arm(inode);
        self.retire_if_drained(inode);
    }

    /// Re-runs the parked calls selected by `which`.
    pub(super) fn wake_waiters(&mut self, which: impl Fn(&Waiter) -> bool) {
        let (woken, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| which(w));
        self.waiters = kept;
        for waiter in woken {
            self.resume(waiter, false);
        }
    }

    /// Resumes one parked call; `interrupted` when a signal is pending for its thread.
    pub(super) fn resume(&mut self, waiter: Waiter, interrupted: bool) {
        let Waiter {
            request,
            tgid,
            park,
            ..
        } = waiter;
        if let ParkTarget::Own(fd) = &park.target {
            self.epoll.remove(fd.as_fd());
        }
        let verdict = match (park.resume, interrupted) {
            (Resume::ReplyAfterFlush(n), true) => Verdict::Value(n as i64),
            (Resume::ReplyAfterFlush(n), false) => match &park.target {
                ParkTarget::Socket(inode) if io::outbound_pending(self, *inode) => {
                    Verdict::Park(park)
                }
                _ => Verdict::Value(n as i64),
            },
            (_, true) => Verdict::Errno(request::ERESTARTSYS),
            (Resume::Rerun, false) => self.dispatch(&request, tgid),
            (Resume::ConnectResult, false) => sockets::connect_result(self, park),
        };
        self.finish(request, tgid, verdict);
    }

    pub(super) fn on_tick(&mut self) {
        events::drain(self.ticker.as_fd());
        if self.waiters.is_empty() {
            events::set_ticker(self.ticker.as_fd(), None);
            self.ticker_armed = false;
            return;
        }
        let waiters = std::mem::take(&mut self.waiters);
        for waiter in waiters {
            if !waiter.request.is_valid() {
                continue; // the thread was killed; its call needs no answer
            }
            if events::signal_pending(waiter.tgid, waiter.request.tid()) {
                tracing::debug!(target: "supervise::notify", tid = waiter.request.tid(), "signal pending: giving a parked call back");
                self.resume(waiter, true);
            } else {
                self.waiters.push(waiter);
            }
        }
    }
}
