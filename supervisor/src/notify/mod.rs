//! The notification loop: receives the tenant's notified syscalls, dispatches them to
//! one handler per syscall family, and is the only place that answers.
//!
//! Handlers return a [`Verdict`]. A call that cannot complete now (a blocking read with
//! no whole message, a blocking accept with no connection) is *parked*: the loop keeps
//! the notification, watches the socket, and re-runs the handler when it is ready — so
//! one waiting call never delays another. A ticker checks parked calls for pending
//! signals and dead threads, so a tenant blocked in a serviced call stays stoppable.

mod events;
mod fds;
mod io;
mod request;
mod sockets;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use events::{Epoll, Token};
use request::Answer;
pub use request::Request;

use crate::launch::Launched;
use crate::profile::Profile;
use crate::stream::table::{Inode, Learned, SocketKind, Table};
use crate::sys::SockAddr;

pub use events::block_handled_signals;

/// What a handler decided.
#[derive(Debug)]
pub enum Verdict {
    /// Let the kernel run the call: build only with [`continue_untracked`].
    Continue,
    /// Return a value.
    Value(i64),
    /// Fail with an errno.
    Errno(i32),
    /// Return `n`: `n` inbound bytes were copied into the tenant's buffer; they leave
    /// the spool only once the answer is delivered (unless it was a peek).
    Deliver {
        /// The stream.
        inode: Inode,
        /// Bytes copied.
        n: usize,
        /// MSG_PEEK: leave them queued.
        peek: bool,
        /// The call's return value (`n`, or 1 for recvmmsg).
        reply: i64,
    },
    /// Return a new fd: the accepted connection `inode` (already tracked). If the
    /// tenant is gone, the connection goes back to `listener`'s stash.
    Inject {
        /// The accepted connection.
        inode: Inode,
        /// O_CLOEXEC on the tenant's descriptor.
        cloexec: bool,
        /// The listener it came from.
        listener: Inode,
        /// The peer's address (kept with a stashed connection).
        peer: SockAddr,
    },
    /// Cannot complete now: wait for readiness.
    Park(Park),
    /// The tenant thread is gone; nothing to answer.
    Gone,
}

impl Verdict {
    /// EAGAIN for a non-blocking caller, otherwise wait for `interest` on `inode` and
    /// run the handler again.
    pub fn would_block(nonblocking: bool, inode: Inode, interest: libc::c_int) -> Verdict {
        if nonblocking {
            return Verdict::Errno(libc::EAGAIN);
        }
        Verdict::Park(Park {
            target: ParkTarget::Socket(inode),
            interest: interest as u32,
            resume: Resume::Rerun,
        })
    }
}

/// A parked call: what to wait for and how to resume.
#[derive(Debug)]
pub struct Park {
    /// What to watch.
    pub target: ParkTarget,
    /// EPOLLIN and/or EPOLLOUT.
    pub interest: u32,
    /// What to do when ready.
    pub resume: Resume,
}

/// The descriptor a parked call waits on.
#[derive(Debug)]
pub enum ParkTarget {
    /// A tracked socket.
    Socket(Inode),
    /// An untracked socket the supervisor is connecting on the tenant's behalf.
    Own(OwnedFd),
}

/// How a parked call resumes.
#[derive(Debug, Clone, Copy)]
pub enum Resume {
    /// Run the handler again from the start (nothing was taken from the tenant yet).
    Rerun,
    /// The tenant's bytes were taken; answer `n` once the outbound queue is flushed.
    ReplyAfterFlush(usize),
    /// A connect is in progress on the target; answer with its outcome.
    ConnectResult,
}

/// The one place that answers CONTINUE.
///
/// CONTINUE lets the kernel re-read the tenant's arguments, so it is only used where no
/// decision rests on them: calls on descriptors no stream tracks (the fd number is a
/// register, not memory, and the supervisor's cache of tracked fds is exact), calls on
/// sockets whose family makes the decision moot (an AF_UNIX socket can only connect to
/// AF_UNIX addresses), and fd-table calls whose tracked slots were already swapped out.
pub fn continue_untracked() -> Verdict {
    Verdict::Continue
}

#[derive(Debug)]
struct Waiter {
    request: Request,
    tgid: libc::pid_t,
    serial: u64,
    park: Park,
}

/// Cap on bytes taken from the tenant per write call, and on the unsent outbound queue
/// before a writer must wait: bounded memory per stream.
const WRITE_CHUNK: usize = 256 * 1024;
const OUTBOUND_HIGH_WATER: usize = 1 << 20;

/// The supervisor of one tenant.
#[derive(Debug)]
pub struct Supervisor {
    profile: Profile,
    launched: Launched,
    table: Table,
    epoll: Epoll,
    signals: OwnedFd,
    ticker: OwnedFd,
    ticker_armed: bool,
    waiters: Vec<Waiter>,
    next_serial: u64,
    /// /dev/null, swapped into a tracked socket's slot before the tenant closes it.
    placeholder: OwnedFd,
    scratch: Vec<u8>,
    continue_all: bool,
    exit_code: Option<i32>,
}

impl Supervisor {
    /// Sets up the loop's event sources for a launched tenant.
    pub fn new(
        profile: Profile,
        launched: Launched,
        continue_all: bool,
    ) -> std::io::Result<Supervisor> {
        let epoll = Epoll::new()?;
        let signals = events::signalfd()?;
        let ticker = events::ticker()?;
        epoll.add(
            launched.listener.as_fd(),
            libc::EPOLLIN as u32,
            Token::Listener,
        )?;
        epoll.add(signals.as_fd(), libc::EPOLLIN as u32, Token::Signals)?;
        epoll.add(launched.report.as_fd(), libc::EPOLLIN as u32, Token::Report)?;
        epoll.add(ticker.as_fd(), libc::EPOLLIN as u32, Token::Ticker)?;
        let placeholder = std::fs::File::open("/dev/null")?.into();
        Ok(Supervisor {
            table: Table::new(launched.pid_ns),
            profile,
            launched,
            epoll,
            signals,
            ticker,
            ticker_armed: false,
            waiters: Vec::new(),
            next_serial: 0,
            placeholder,
            scratch: vec![0; WRITE_CHUNK],
            continue_all,
            exit_code: None,
        })
    }

    /// Runs until the tenant exits; returns the supervisor's exit code (the tenant's
    /// code, or 128 + signal).
    pub fn run(self, workers: usize) -> i32 {
        if workers == 0 {
            return self.run_single();
        }
        self.run_threaded(workers)
    }

    /// Notifications are received by `workers` threads, each blocking in RECV (the
    /// kernel hands each notification to one of them) and handling it under the state
    /// lock; this thread handles everything else. A notification arriving while another
    /// is being handled is received at once instead of after the next epoll_wait.
    fn run_threaded(self, workers: usize) -> i32 {
        self.epoll.remove(self.launched.listener.as_fd());
        let listener = match self.launched.listener.try_clone() {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(target: "supervise::notify", %error, "cannot share the listener");
                return 125;
            }
        };
        let waiter = match self.epoll.try_clone() {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(target: "supervise::notify", %error, "cannot share epoll");
                return 125;
            }
        };
        let shared = std::sync::Arc::new(std::sync::Mutex::new(self));
        for i in 0..workers {
            let shared = shared.clone();
            let listener = listener.try_clone().expect("dup listener");
            let spawned = std::thread::Builder::new().name(format!("notify-{i}")).spawn(move || loop {
                match Request::receive(listener.as_fd()) {
                    Ok(Some(request)) => lock(&shared).handle(request),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(target: "supervise::notify", %error, "SECCOMP_IOCTL_NOTIF_RECV failed");
                        return;
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(target: "supervise::notify", %error, "cannot start a notification thread");
                return 125;
            }
        }
        let mut ready = Vec::with_capacity(64);
        loop {
            if let Err(error) = waiter.wait(&mut ready, -1) {
                tracing::error!(target: "supervise::notify", %error, "epoll_wait failed");
                return 125;
            }
            let mut sv = lock(&shared);
            for &(token, events) in &ready {
                sv.on_event(token, events);
            }
            if let Some(code) = sv.exit_code {
                sv.drain_before_exit();
                return code;
            }
        }
    }

    fn run_single(mut self) -> i32 {
        let mut ready = Vec::with_capacity(64);
        while self.exit_code.is_none() {
            if let Err(error) = self.epoll.wait(&mut ready, -1) {
                tracing::error!(target: "supervise::notify", %error, "epoll_wait failed");
                return 125;
            }
            for &(token, events) in &ready {
                self.on_event(token, events);
            }
        }
        self.drain_before_exit();
        self.exit_code.unwrap_or(125)
    }

    fn on_event(&mut self, token: Token, events: u32) {
        match token {
            Token::Listener => {
                if events & libc::EPOLLIN as u32 != 0 {
                    match Request::receive(self.launched.listener.as_fd()) {
                        Ok(Some(request)) => self.handle(request),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::error!(target: "supervise::notify", %error, "SECCOMP_IOCTL_NOTIF_RECV failed")
                        }
                    }
                } else if events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                    // No tenant process is left; the stub's report follows.
                    self.epoll.remove(self.launched.listener.as_fd());
                }
            }
            Token::Signals => self.on_signals(),
            Token::Report => self.on_report(),
            Token::Ticker => self.on_tick(),
            Token::Socket(inode) => self.on_socket_ready(inode),
            Token::Waiter(serial) => self.wake_waiters(|w| w.serial == serial),
            Token::Thread(tid) => self.on_thread_exit(tid),
            Token::Process(tgid) => self.on_process_exit(tgid),
        }
    }

    /// Handles one notification.
    fn handle(&mut self, request: Request) {
        if self.continue_all {
            let _ = request.respond(Answer::Continue);
            return;
        }
        if self.table.learn_thread(request.tid()).is_err() {
            return; // the thread is already gone: nobody to answer
        }
        self.watch_learned();
        let tgid = self.table.threads[&request.tid()].tgid;
        let verdict = self.dispatch(&request, tgid);
        self.finish(request, tgid, verdict);
    }

    /// Watches the pidfds of newly learned threads (tid reuse) and processes (exit
    /// releases what they held).
    fn watch_learned(&mut self) {
        for learned in std::mem::take(&mut self.table.newly_learned) {
            let (fd, token) = match learned {
                Learned::Thread(tid) => match self.table.threads.get(&tid) {
                    Some(t) => (t.pidfd.as_fd(), Token::Thread(tid)),
                    None => continue,
                },
                Learned::Process(tgid) => match self.table.processes.get(&tgid) {
                    Some(fd) => (fd.as_fd(), Token::Process(tgid)),
                    None => continue,
                },
            };
            if let Err(error) = self.epoll.add(fd, libc::EPOLLIN as u32, token) {
                tracing::warn!(target: "supervise::notify", ?learned, %error, "cannot watch tenant thread or process");
            }
        }
    }

    fn dispatch(&mut self, request: &Request, tgid: libc::pid_t) -> Verdict {
        match request.nr() {
            libc::SYS_read
            | libc::SYS_readv
            | libc::SYS_preadv2
            | libc::SYS_recvfrom
            | libc::SYS_recvmsg
            | libc::SYS_recvmmsg => io::read_family(self, request),
            libc::SYS_write
            | libc::SYS_writev
            | libc::SYS_pwritev2
            | libc::SYS_sendto
            | libc::SYS_sendmsg
            | libc::SYS_sendmmsg => io::write_family(self, request),
            libc::SYS_sendfile | libc::SYS_splice => io::refuse_on_tracked(self, request),
            libc::SYS_accept | libc::SYS_accept4 => sockets::accept(self, request),
            libc::SYS_connect => sockets::connect(self, request, tgid),
            libc::SYS_shutdown => sockets::shutdown(self, request),
            libc::SYS_close => fds::close(self, request, tgid),
            libc::SYS_close_range => fds::close_range(self, request, tgid),
            libc::SYS_dup2 | libc::SYS_dup3 => fds::dup_over(self, request, tgid),
            libc::SYS_execve | libc::SYS_execveat => fds::exec(self, request, tgid),
            nr => {
                tracing::error!(target: "supervise::notify", nr, "notified syscall without a handler");
                Verdict::Errno(libc::ENOSYS)
            }
        }
    }

    /// Sends the answer for a verdict, with the undo each kind needs if the tenant is
    /// gone.
    fn finish(&mut self, request: Request, tgid: libc::pid_t, verdict: Verdict) {
        let outcome = match verdict {
            Verdict::Gone => return,
            Verdict::Park(park) => return self.park(request, tgid, park),
            Verdict::Continue => request.respond(Answer::Continue),
            Verdict::Value(v) => request.respond(Answer::Value(v)),
            Verdict::Errno(e) => request.respond(Answer::Errno(e)),
            Verdict::Deliver {
                inode,
                n,
                peek,
                reply,
            } => {
                let sent = request.respond(Answer::Value(reply));
                if sent.is_ok() && !peek {
                    if let Some((stream, _)) = self.table.stream(inode) {
                        stream.inbound.delivered(n);
                    }
                }
                // On failure the bytes stay queued: the next read gets them.
                sent
            }
            Verdict::Inject {
                inode,
                cloexec,
                listener,
                peer,
            } => {
                let Some(copy) = self.table.copy(inode) else {
                    return;
                };
                match request.respond(Answer::InjectFd { fd: copy, cloexec }) {
                    Ok(fd) => {
                        self.table.hold((tgid, fd as i32), inode);
                        self.arm(inode);
                        tracing::debug!(target: "supervise::notify", tgid, fd, inode, ?peer, "accepted connection handed to tenant");
                        return;
                    }
                    Err(error) => {
                        if let Some(tracked) = self.table.untrack(inode) {
                            if let Some(SocketKind::Listener { stash, .. }) =
                                self.table.sockets.get_mut(&listener).map(|t| &mut t.kind)
                            {
                                tracing::info!(target: "supervise::notify", %error, "tenant gone before receiving a connection; kept for the next accept");
                                stash.push_back((tracked.copy, peer));
                            }
                        }
                        return;
                    }
                }
            }
        };
        if let Err(error) = outcome {
            tracing::debug!(target: "supervise::notify", id = request.id(), %error, "answer not delivered (tenant thread gone)");
        }
    }

    fn park(&mut self, request: Request, tgid: libc::pid_t, park: Park) {
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
    fn arm(&mut self, inode: Inode) {
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

    fn on_socket_ready(&mut self, inode: Inode) {
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
    fn wake_waiters(&mut self, which: impl Fn(&Waiter) -> bool) {
        let (woken, kept): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|w| which(w));
        self.waiters = kept;
        for waiter in woken {
            self.resume(waiter, false);
        }
    }

    /// Resumes one parked call; `interrupted` when a signal is pending for its thread.
    fn resume(&mut self, waiter: Waiter, interrupted: bool) {
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

    fn on_tick(&mut self) {
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

    fn on_thread_exit(&mut self, tid: libc::pid_t) {
        if let Some(thread) = self.table.threads.remove(&tid) {
            self.epoll.remove(thread.pidfd.as_fd());
        }
        self.waiters.retain(|w| w.request.tid() != tid);
    }

    fn on_process_exit(&mut self, tgid: libc::pid_t) {
        if let Some(fd) = self.table.processes.get(&tgid) {
            self.epoll.remove(fd.as_fd());
        }
        self.waiters.retain(|w| w.tgid != tgid);
        let orphaned = self.table.forget_process(tgid);
        self.release(orphaned);
    }

    /// Sockets left without cached holders: find other holders or let them go.
    fn release(&mut self, candidates: Vec<Inode>) {
        if candidates.is_empty() {
            return;
        }
        let orphaned = self.table.sweep(&candidates);
        self.watch_learned();
        for inode in orphaned {
            self.retire(inode);
        }
    }

    /// No tenant process holds `inode` any more: apply the partial-message policy,
    /// flush what is queued toward the peer, then close our copy.
    fn retire(&mut self, inode: Inode) {
        if let Some((stream, _)) = self.table.stream(inode) {
            stream.end(transforms::Direction::Outbound);
            let unread = stream.inbound.ready.clear() + stream.inbound.spooled();
            stream.inbound.dropped += unread as u64;
            if unread > 0 {
                tracing::info!(target: "supervise::notify", stream = %stream.name, unread, "tenant closed the connection with inbound bytes unread (as the kernel would discard them)");
            }
        }
        let _ = io::flush_outbound(self, inode);
        if let Some(t) = self.table.sockets.get_mut(&inode) {
            if let SocketKind::Listener { stash, .. } = &t.kind {
                if !stash.is_empty() {
                    tracing::warn!(target: "supervise::notify", dropped = stash.len(), "listener closed with undelivered connections");
                }
            }
            if let SocketKind::Stream(s) = &mut t.kind {
                s.closing = true;
            }
        }
        self.arm(inode);
        self.retire_if_drained(inode);
    }

    fn retire_if_drained(&mut self, inode: Inode) {
        let Some(t) = self.table.sockets.get(&inode) else {
            return;
        };
        let drained = match &t.kind {
            SocketKind::Stream(s) => s.closing && s.outbound.ready.is_empty(),
            SocketKind::Listener { .. } => true,
        };
        if drained && t.holders() == 0 {
            if let Some(t) = self.table.untrack(inode) {
                self.epoll.remove(t.copy.as_fd());
                if let SocketKind::Stream(stream) = &t.kind {
                    stream.log_accounting();
                }
                tracing::debug!(target: "supervise::notify", inode, "released tracked socket");
            }
        }
    }

    fn on_signals(&mut self) {
        while let Some((sig, from_process)) = events::read_signal(self.signals.as_fd()) {
            if sig == libc::SIGCHLD {
                self.reap_stub();
            } else if from_process {
                tracing::info!(target: "supervise::notify", sig, "forwarding signal to the tenant");
                // SAFETY: plain kill(2) of our own child, the init stub, which relays it.
                unsafe { libc::kill(self.launched.stub_pid, sig) };
            }
        }
    }

    fn on_report(&mut self) {
        let mut message = [0u8; 8];
        // SAFETY: `message` is writable for its length.
        let n = unsafe {
            libc::recv(
                self.launched.report.as_raw_fd(),
                message.as_mut_ptr().cast(),
                message.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n == 5 && message[0] == b'S' {
            let status = i32::from_ne_bytes(message[1..5].try_into().expect("4 bytes"));
            self.exit_code = Some(exit_code_of(status));
            tracing::info!(target: "supervise::notify", code = self.exit_code, "tenant exited");
        } else if n <= 0 {
            self.epoll.remove(self.launched.report.as_fd());
            self.reap_stub();
        }
    }

    fn reap_stub(&mut self) {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let pid = unsafe { libc::waitpid(self.launched.stub_pid, &mut status, libc::WNOHANG) };
        if pid == self.launched.stub_pid && self.exit_code.is_none() {
            self.on_report();
            if self.exit_code.is_none() {
                tracing::error!(target: "supervise::notify", status, "the init stub died without reporting the tenant's status");
                self.exit_code = Some(exit_code_of(status));
            }
        }
    }

    /// The tenant is gone: give queued outbound bytes a bounded chance to reach their
    /// peers before the supervisor exits (and closes its copies).
    fn drain_before_exit(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let inodes: Vec<Inode> = self.table.sockets.keys().copied().collect();
        for inode in inodes {
            while io::outbound_pending(self, inode) && std::time::Instant::now() < deadline {
                let Some(copy) = self.table.copy(inode) else {
                    break;
                };
                let mut pfd = libc::pollfd {
                    fd: copy.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                if io::flush_outbound(self, inode).is_err() {
                    break;
                }
            }
        }
    }
}

/// Locks the shared state; a handler that panicked leaves it usable (each handler's
/// effects are complete or absent per notification).
fn lock(shared: &std::sync::Mutex<Supervisor>) -> std::sync::MutexGuard<'_, Supervisor> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wait status → shell-style exit code.
fn exit_code_of(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        125
    }
}
