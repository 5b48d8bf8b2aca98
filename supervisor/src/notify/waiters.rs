//! Parked calls: a call that cannot complete now waits for its socket (one-shot epoll
//! interest) and is re-run when the socket is ready, as the kernel would wake it.
//!
//! A parked call behaves as one blocked in the kernel:
//! - it *pins* its socket: another thread closing the fd does not end the call, and the
//!   socket lives until the call returns (its fd argument stays bound to that socket);
//! - SO_RCVTIMEO / SO_SNDTIMEO end it with EAGAIN (or the count already taken, or
//!   EINPROGRESS for a connect) at the deadline, as the socket's own timeout would;
//! - a signal pending for its thread gives the thread back (ERESTARTSYS), so handlers
//!   run. Seeing a pending signal means reading `/proc`, so the ticker does it on a
//!   budget: [`SIGNAL_CHECKS_PER_TICK`] parked threads per tick, in turn. With up to
//!   that many parked calls each is checked every tick (10 ms, as before); a
//!   process-directed signal to a process with many parked threads is seen within a
//!   tick (any of them shows it); a signal for one thread among thousands parked may
//!   take seconds. The supervisor's idle CPU stays flat (at most 400 small
//!   `/proc` reads a second) instead of growing with the number parked.
//!
//! Calls are indexed by socket and by deadline, so waking the calls of one socket costs
//! nothing per other parked call.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::events::{self, Token};
use super::request::{self, Request};
use super::{io, sockets, Park, ParkTarget, Resume, Supervisor, Verdict};
use crate::notify::table::{Inode, SocketKind};
use crate::sys;

/// Per-thread signal checks per tick (each reads one `/proc` status file).
pub const SIGNAL_CHECKS_PER_TICK: usize = 4;
/// The ticker's period while anything waits.
pub const TICK_MS: i64 = 10;

/// One parked call.
#[derive(Debug)]
pub struct Waiter {
    request: Request,
    tgid: libc::pid_t,
    park: Park,
    /// When its socket timeout ends it.
    deadline: Option<Instant>,
    /// The socket it keeps alive until it returns.
    pinned: Option<Inode>,
}

/// The parked calls and their indexes.
#[derive(Debug, Default)]
pub struct Waiters {
    parked: HashMap<u64, Waiter>,
    on_socket: HashMap<Inode, Vec<u64>>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Signal-check order (serials; ones no longer parked are skipped).
    rota: VecDeque<u64>,
    next_serial: u64,
}

impl Waiters {
    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.parked.is_empty()
    }

    /// Number of parked calls.
    pub fn len(&self) -> usize {
        self.parked.len()
    }

    /// Number of calls parked on `inode`.
    pub fn parked_on(&self, inode: Inode) -> usize {
        self.on_socket.get(&inode).map_or(0, Vec::len)
    }

    fn insert(&mut self, serial: u64, waiter: Waiter) {
        if let ParkTarget::Socket(inode) = waiter.park.target {
            self.on_socket.entry(inode).or_default().push(serial);
        }
        if let Some(at) = waiter.deadline {
            self.deadlines.insert((at, serial));
        }
        self.rota.push_back(serial);
        self.parked.insert(serial, waiter);
    }

    fn remove(&mut self, serial: u64) -> Option<Waiter> {
        let waiter = self.parked.remove(&serial)?;
        if let ParkTarget::Socket(inode) = waiter.park.target {
            if let Some(list) = self.on_socket.get_mut(&inode) {
                list.retain(|&s| s != serial);
                if list.is_empty() {
                    self.on_socket.remove(&inode);
                }
            }
        }
        if let Some(at) = waiter.deadline {
            self.deadlines.remove(&(at, serial));
        }
        Some(waiter)
    }

    /// Serials of the calls parked by threads `which` selects.
    pub fn of_threads(&self, which: impl Fn(libc::pid_t, libc::pid_t) -> bool) -> Vec<u64> {
        self.parked
            .iter()
            .filter(|(_, w)| which(w.tgid, w.request.tid()))
            .map(|(&s, _)| s)
            .collect()
    }
}

/// The socket timeout (SO_RCVTIMEO for reads and accepts, SO_SNDTIMEO for writes and
/// connects) that bounds a call waiting for `interest` on `fd`.
fn socket_timeout(fd: BorrowedFd<'_>, interest: u32) -> Option<Duration> {
    let name = if interest & libc::EPOLLIN as u32 != 0 {
        libc::SO_RCVTIMEO
    } else {
        libc::SO_SNDTIMEO
    };
    sys::sockopt_timeout(fd, name).ok().flatten()
}

impl Supervisor {
    /// Parks a call that cannot complete now.
    pub(super) fn park(&mut self, mut request: Request, tgid: libc::pid_t, park: Park) {
        let target_fd = match &park.target {
            ParkTarget::Socket(inode) => self.table.copy(*inode),
            ParkTarget::Own(fd) => Some(fd.as_fd()),
        };
        let deadline = target_fd
            .and_then(|fd| socket_timeout(fd, park.interest))
            .map(|timeout| Instant::now() + timeout);
        let pinned = match park.target {
            ParkTarget::Socket(inode) => {
                request.pin(inode);
                self.table.pin(inode);
                Some(inode)
            }
            ParkTarget::Own(_) => None,
        };
        self.repark(request, tgid, park, deadline, pinned);
    }

    /// Parks (again) a call whose socket, if any, is already pinned.
    fn repark(
        &mut self,
        request: Request,
        tgid: libc::pid_t,
        park: Park,
        deadline: Option<Instant>,
        pinned: Option<Inode>,
    ) {
        let serial = self.waiters.next_serial;
        self.waiters.next_serial += 1;
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
                    tracing::error!(target: Kind::Supervisor.target(), %error, "cannot watch a parked call");
                }
            }
        }
        self.waiters.insert(
            serial,
            Waiter {
                request,
                tgid,
                park,
                deadline,
                pinned,
            },
        );
        self.arm_ticker();
    }

    /// Keeps the ticker running while anything needs it: parked calls (signals and
    /// timeouts), forks not yet resolved, releases not yet confirmed.
    pub(super) fn arm_ticker(&mut self) {
        if !self.ticker_armed {
            events::set_ticker(self.ticker.as_fd(), Some(TICK_MS));
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
            tracing::debug!(target: Kind::Supervisor.target(), inode, errno, "background flush failed");
        }
        self.wake_socket(inode);
        self.arm(inode);
        self.retire_if_drained(inode);
    }

    /// Re-runs the calls parked on `inode` once the current call is answered (a
    /// shutdown ends what they wait for without the kernel socket saying so).
    pub(super) fn wake_later(&mut self, inode: Inode) {
        self.wake_after.push(inode);
    }

    /// Re-runs every call parked on `inode`.
    pub(super) fn wake_socket(&mut self, inode: Inode) {
        let serials = self
            .waiters
            .on_socket
            .get(&inode)
            .cloned()
            .unwrap_or_default();
        for serial in serials {
            self.wake(serial, Wake::Ready);
        }
    }

    /// Resumes one parked call.
    pub(super) fn wake(&mut self, serial: u64, why: Wake) {
        let Some(waiter) = self.waiters.remove(serial) else {
            return;
        };
        let Waiter {
            request,
            tgid,
            park,
            deadline,
            pinned,
        } = waiter;
        if let ParkTarget::Own(fd) = &park.target {
            self.epoll.remove(fd.as_fd());
        }
        let verdict = match (park.resume, why) {
            // Sent to the agent: the call may have happened; only its answer ends it.
            (Resume::Agent(pending), Wake::Ready) => {
                super::agent::reply(self, &request, tgid, &park, pending)
            }
            (Resume::Agent(_), Wake::Signal | Wake::Timeout) => Verdict::Park(park),
            (Resume::ReplyAfterFlush(n), Wake::Signal | Wake::Timeout) => Verdict::Value(n as i64),
            (Resume::ReplyAfterFlush(n), Wake::Ready) => match &park.target {
                ParkTarget::Socket(inode) if io::outbound_pending(self, *inode) => {
                    Verdict::Park(park)
                }
                _ => Verdict::Value(n as i64),
            },
            (_, Wake::Signal) => Verdict::Errno(request::ERESTARTSYS),
            (Resume::Rerun, Wake::Timeout) => Verdict::Errno(libc::EAGAIN),
            (Resume::ConnectResult, Wake::Timeout) => Verdict::Errno(libc::EINPROGRESS),
            (Resume::Rerun, Wake::Ready) => self.dispatch(&request, tgid),
            (Resume::ConnectResult, Wake::Ready) => sockets::connect_result(self, park),
        };
        if let Verdict::Park(again) = verdict {
            return self.repark(request, tgid, again, deadline, pinned);
        }
        self.finish(request, tgid, verdict);
        if let Some(inode) = pinned {
            self.table.unpin(inode);
        }
    }

    /// Drops the parked calls of threads that are gone (nothing to answer), unpinning
    /// their sockets.
    pub(super) fn drop_waiters(&mut self, serials: Vec<u64>) {
        for serial in serials {
            if let Some(waiter) = self.waiters.remove(serial) {
                if let ParkTarget::Own(fd) = &waiter.park.target {
                    self.epoll.remove(fd.as_fd());
                }
                if let Some(inode) = waiter.pinned {
                    self.table.unpin(inode);
                }
            }
        }
    }

    pub(super) fn on_tick(&mut self) {
        events::drain(self.ticker.as_fd());
        if self.table.tenants.forks_pending() {
            self.table.resolve_forks();
        }
        self.expire_deadlines();
        self.check_signals();
        self.release_unheld();
        let idle = self.waiters.is_empty()
            && !self.table.tenants.forks_pending()
            && self.deferred.is_empty();
        if idle {
            events::set_ticker(self.ticker.as_fd(), None);
            self.ticker_armed = false;
        }
    }

    fn expire_deadlines(&mut self) {
        let now = Instant::now();
        while let Some(&(at, serial)) = self.waiters.deadlines.first() {
            if at > now {
                break;
            }
            self.waiters.deadlines.pop_first();
            tracing::debug!(target: Kind::Supervisor.target(), serial, "socket timeout: a parked call returns");
            self.wake(serial, Wake::Timeout);
        }
    }

    /// Gives back parked calls whose thread has a signal to handle, reading at most
    /// [`SIGNAL_CHECKS_PER_TICK`] threads' status per tick, in turn. One read shows both
    /// the thread's own pending signals and its process's (see
    /// [`Supervisor::give_back_process`] for those).
    fn check_signals(&mut self) {
        let budget = SIGNAL_CHECKS_PER_TICK.min(self.waiters.len());
        let mut checked = 0;
        while checked < budget {
            let Some(serial) = self.waiters.rota.pop_front() else {
                break;
            };
            let Some(w) = self.waiters.parked.get(&serial) else {
                continue; // answered since
            };
            self.waiters.rota.push_back(serial);
            checked += 1;
            let tgid = w.tgid;
            match events::signal_state(tgid, w.request.tid()) {
                Some(s) if s.thread & !s.blocked != 0 => self.give_back(serial),
                Some(s) if s.shared & !s.blocked != 0 => self.give_back_process(tgid),
                Some(_) => {}
                None if !w.request.is_valid() => self.drop_waiters(vec![serial]),
                None => {}
            }
        }
    }

    /// A signal is pending for process `tgid` as a whole. The kernel marked one thread
    /// to take it — the leader, unless the leader blocks it — and only that thread will
    /// run the handler when its call returns: give back the leader if it is parked
    /// and does not block the signal; otherwise every parked thread that does not
    /// block it (the marked one among them).
    fn give_back_process(&mut self, tgid: libc::pid_t) {
        let threads = self.waiters.of_threads(|t, _| t == tgid);
        let takers: Vec<(u64, libc::pid_t)> = threads
            .into_iter()
            .filter_map(|serial| {
                let w = self.waiters.parked.get(&serial)?;
                let tid = w.request.tid();
                let s = events::signal_state(tgid, tid)?;
                (s.shared & !s.blocked != 0).then_some((serial, tid))
            })
            .collect();
        match takers.iter().find(|&&(_, tid)| tid == tgid) {
            Some(&(leader, _)) => self.give_back(leader),
            None => {
                for (serial, _) in takers {
                    self.give_back(serial);
                }
            }
        }
    }

    fn give_back(&mut self, serial: u64) {
        let Some(w) = self.waiters.parked.get(&serial) else {
            return;
        };
        if !w.request.is_valid() {
            // The thread was killed: its call needs no answer.
            return self.drop_waiters(vec![serial]);
        }
        tracing::debug!(target: Kind::Supervisor.target(), tid = w.request.tid(), "signal pending: giving a parked call back");
        self.wake(serial, Wake::Signal);
    }
}

/// Why a parked call resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Its socket is ready.
    Ready,
    /// A signal is pending for its thread.
    Signal,
    /// Its socket timeout passed.
    Timeout,
}
