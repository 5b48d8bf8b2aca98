//! The notification loop: receives the tenant's notified syscalls, dispatches them to
//! one handler per syscall family, and is the only place that answers.
//!
//! Handlers return a [`Verdict`]. A call that cannot complete now (a blocking read with
//! no whole message, a blocking accept with no connection) is *parked*: the loop keeps
//! the notification, watches the socket, and re-runs the handler when it is ready — so
//! one waiting call never delays another. A ticker checks parked calls for pending
//! signals and dead threads, so a tenant blocked in a serviced call stays stoppable.

// Handlers return `Result<_, Verdict>` to answer early; a Verdict is a few hundred
// bytes (it can carry a peer address) and boxing it would allocate on every call.
#![allow(clippy::result_large_err)]

use crate::diag::Kind;
mod addresses;
mod agent;
mod components;
mod events;
mod fds;
mod forks;
mod io;
mod lifecycle;
mod metrics;
mod msghdr;
mod output;
mod privileged;
mod provide;
mod provide_keyring;
mod provide_mirror;
mod provider;
mod request;
mod route;
mod sockets;
pub mod table;
mod waiters;

use std::os::fd::{AsFd, OwnedFd};

use events::{Epoll, Token};
use request::Answer;
pub use request::Request;

use crate::launch::Launched;
use crate::notify::table::{Inode, SocketKind, Table};
use crate::profile::Profile;
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
    /// Return a new fd: an accepted connection no stream tracks (a confined tenant's
    /// listener, accepted here so its peer could be checked). Back to `listener`'s
    /// stash if the tenant is gone.
    InjectUntracked {
        /// The accepted connection.
        conn: OwnedFd,
        /// O_CLOEXEC on the tenant's descriptor.
        cloexec: bool,
        /// The listener it came from.
        listener: Inode,
        /// The peer's address.
        peer: SockAddr,
    },
    /// Return a new fd: a socket the supervisor created for the tenant (nothing to
    /// undo if the tenant is gone: it is closed).
    InjectNew {
        /// The socket.
        fd: OwnedFd,
        /// O_CLOEXEC on the tenant's descriptor.
        cloexec: bool,
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
    /// The tenant's agent performs the call; the target is its answer.
    Agent(agent::Pending),
}

/// The one place that answers CONTINUE.
///
/// CONTINUE lets the kernel re-read the tenant's arguments and look its fd up again, so
/// it is only used where no decision rests on either: calls on descriptors no stream
/// tracks (the fd number is a register, not memory, and the supervisor's cache of
/// tracked fds is exact), fd-table calls whose tracked slots were already swapped out,
/// process creation noted for the fd cache (its flags were checked in the filter, on
/// registers), and for an unconfined tenant, calls on sockets whose family makes the
/// decision moot. For a confined tenant nothing that names an address or changes who
/// it can reach is continued, whatever the fd is now (a second thread could swap it):
/// those are performed on the supervisor's copy (`addresses`, `sockets`, `agent`);
/// what is left (sendto without an address, write, recv) reaches no one new on any
/// kind of socket. A descriptor the supervisor could not look up is never taken for
/// untracked: only EBADF (not open) is, and the kernel then says EBADF itself.
pub fn continue_untracked() -> Verdict {
    Verdict::Continue
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
    waiters: waiters::Waiters,
    /// Unheld sockets whose release could not be confirmed yet (an opaque process's
    /// descriptors could not be read): kept tracked, retried on the ticker.
    deferred: Vec<Inode>,
    /// Sockets whose parked calls must re-run after the current answer.
    wake_after: Vec<Inode>,
    /// /dev/null, swapped into a tracked socket's slot before the tenant closes it.
    placeholder: OwnedFd,
    scratch: Vec<u8>,
    continue_all: bool,
    exit_code: Option<i32>,
    /// Labels and network rules of a confined tenant; `None`: no address checks.
    guard: Option<crate::label::guard::Guard>,
    /// A confined tenant's agent, for its unix-socket calls.
    agent: Option<agent::Agent>,
    /// Most bytes the tenant's partial messages may hold in the supervisor, together: a
    /// quarter of its memory limit (at least 16 MiB); `None` without a limit.
    spool_budget: Option<usize>,
    /// Components by DPID, hit counters, and the observers events go to.
    components: components::Components,
    /// The control socket's path, once it is serving.
    control_path: Option<std::path::PathBuf>,
    /// Where the control threads queue requests for the loop.
    control: Option<std::sync::Arc<crate::control::bridge::Bridge>>,
    /// The keyring that checks signed requests (its provider view reads it).
    keyring: Option<std::sync::Arc<crate::control::signed::Keyring>>,
    /// The tenant's partial output lines (see `output`).
    outputs: output::Outputs,
}

impl Supervisor {
    /// Sets up the loop's event sources for a launched tenant.
    pub fn new(
        profile: Profile,
        mut launched: Launched,
        continue_all: bool,
        guard: Option<crate::label::guard::Guard>,
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
        // After the launch: the tenant keeps the limits it was started with.
        match crate::sys::raise_fd_limit() {
            Ok(limit) => {
                tracing::debug!(target: Kind::Supervisor.target(), limit, "supervisor fd limit")
            }
            Err(error) => {
                tracing::warn!(target: Kind::Supervisor.target(), %error, "cannot raise the supervisor's fd limit")
            }
        }
        let placeholder = std::fs::File::open("/dev/null")?.into();
        let agent = launched.agent.take().map(agent::Agent::new);
        let spool_budget = profile.limits.and_then(|l| l.memory).map(|bytes| {
            usize::try_from(bytes / 4)
                .unwrap_or(usize::MAX)
                .max(16 << 20)
        });
        Ok(Supervisor {
            components: components::Components::new(&profile),
            control_path: None,
            control: None,
            keyring: None,
            outputs: Default::default(),
            table: Table::new(launched.tenant_pid, launched.stub_pid),
            profile,
            launched,
            epoll,
            signals,
            ticker,
            ticker_armed: false,
            waiters: waiters::Waiters::default(),
            deferred: Vec::new(),
            wake_after: Vec::new(),
            placeholder,
            scratch: vec![0; WRITE_CHUNK],
            continue_all,
            exit_code: None,
            guard,
            agent,
            spool_budget,
        })
    }

    /// Runs until the tenant exits; returns the supervisor's exit code (the tenant's
    /// code, or 128 + signal).
    /// `pin`: notification thread i runs on the i-th allowed CPU only.
    pub fn run(self, workers: usize, pin: bool) -> i32 {
        if workers == 0 {
            return self.run_single();
        }
        self.run_threaded(workers, pin)
    }

    /// Notifications are received by `workers` threads, each blocking in RECV (the
    /// kernel hands each notification to one of them) and handling it under the state
    /// lock; this thread handles everything else. A notification arriving while another
    /// is being handled is received at once instead of after the next epoll_wait.
    fn run_threaded(self, workers: usize, pin: bool) -> i32 {
        self.epoll.remove(self.launched.listener.as_fd());
        let listener = match self.launched.listener.try_clone() {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(target: Kind::Supervisor.target(), %error, "cannot share the listener");
                return 125;
            }
        };
        let waiter = match self.epoll.try_clone() {
            Ok(e) => e,
            Err(error) => {
                tracing::error!(target: Kind::Supervisor.target(), %error, "cannot share epoll");
                return 125;
            }
        };
        let cpus = if pin { allowed_cpus() } else { Vec::new() };
        let shared = std::sync::Arc::new(std::sync::Mutex::new(self));
        for i in 0..workers {
            let shared = shared.clone();
            let listener = listener.try_clone().expect("dup listener");
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let spawned = std::thread::Builder::new()
                .name(format!("notify-{i}"))
                .spawn(move || respond(&shared, &listener, cpu));
            if let Err(error) = spawned {
                tracing::error!(target: Kind::Supervisor.target(), %error, "cannot start a notification thread");
                return 125;
            }
        }
        let mut ready = Vec::with_capacity(64);
        loop {
            if let Err(error) = waiter.wait(&mut ready, -1) {
                tracing::error!(target: Kind::Supervisor.target(), %error, "epoll_wait failed");
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
                tracing::error!(target: Kind::Supervisor.target(), %error, "epoll_wait failed");
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
                            tracing::error!(target: Kind::Supervisor.target(), %error, "SECCOMP_IOCTL_NOTIF_RECV failed")
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
            Token::Waiter(serial) => self.wake(serial, waiters::Wake::Ready),
            Token::Thread(tid) => self.on_thread_exit(tid),
            Token::Process(tgid) => self.on_process_exit(tgid),
            Token::Control => self.on_control(),
        }
        self.after_event();
    }

    /// Handles one notification.
    fn handle(&mut self, request: Request) {
        if self.continue_all {
            let _ = request.respond(Answer::Continue);
            return;
        }
        let tid = request.tid();
        let tgid = match self.table.learn_thread(tid) {
            Ok(tgid) => tgid,
            Err(error) => {
                answer_unidentified(&request, &error);
                return self.after_event();
            }
        };
        if self.table.tenants.forking(tid) {
            // Its fork returned (it is making another call): the child is known now.
            self.table.resolve_fork(tid, true);
        }
        // A bug in a handler must not leave the call (and with it the tenant) waiting
        // forever: the panic is logged and the call fails with ENOMEM.
        let started = std::time::Instant::now();
        let family = route::family(request.nr());
        let dispatched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.dispatch(&request, tgid)
        }));
        let verdict = dispatched.unwrap_or_else(|_| {
            tracing::error!(target: Kind::Supervisor.target(), nr = request.nr(), tid = request.tid(), "a handler panicked (a bug): the call fails with ENOMEM");
            Verdict::Errno(libc::ENOMEM)
        });
        self.finish(request, tgid, verdict);
        match family {
            Some(family) => self.components.stats.record(family, started.elapsed()),
            None => self.components.stats.other += 1,
        }
        self.after_event();
    }

    /// What every notification and event ends with: watch what was learned, release
    /// what nobody holds, and top up the fd reserve.
    fn after_event(&mut self) {
        for inode in std::mem::take(&mut self.wake_after) {
            self.wake_socket(inode);
        }
        self.watch_learned();
        self.release_unheld();
        if self.table.tenants.forks_pending() || !self.deferred.is_empty() {
            self.arm_ticker();
        }
        if !self.table.reserve.is_full() {
            self.table.reserve.refill();
        }
    }

    /// Watches the pidfds of newly learned threads (tid reuse) and processes (exit
    /// releases what they held).
    fn watch_learned(&mut self) {
        for learned in std::mem::take(&mut self.table.tenants.newly_learned) {
            let token = match learned {
                crate::notify::table::Learned::Thread(tid) => Token::Thread(tid),
                crate::notify::table::Learned::Process(tgid) => Token::Process(tgid),
            };
            let Some(fd) = self.table.tenants.exit_watch(learned) else {
                continue;
            };
            if let Err(error) = self.epoll.add(fd, libc::EPOLLIN as u32, token) {
                tracing::warn!(target: Kind::Supervisor.target(), ?learned, %error, "cannot watch tenant thread or process");
            }
        }
    }

    fn dispatch(&mut self, request: &Request, tgid: libc::pid_t) -> Verdict {
        use route::Family;
        let Some(family) = route::family(request.nr()) else {
            tracing::error!(target: Kind::Supervisor.target(), nr = request.nr(), "notified syscall without a handler");
            return Verdict::Errno(libc::ENOSYS);
        };
        match family {
            Family::Read => io::read_family(self, request),
            Family::Write => io::write_family(self, request),
            Family::Splice => io::refuse_on_tracked(self, request),
            Family::Accept => sockets::accept(self, request, tgid),
            Family::Socket => sockets::create(self, request),
            Family::Connect => sockets::connect(self, request, tgid),
            Family::Bind => addresses::bind(self, request),
            Family::Listen => addresses::listen(self, request),
            Family::Shutdown => sockets::shutdown(self, request),
            Family::Watch => agent::watch(self, request),
            Family::Close => fds::close(self, request, tgid),
            Family::CloseRange => fds::close_range(self, request, tgid),
            Family::DupOver => fds::dup_over(self, request, tgid),
            Family::DupAnywhere => fds::dup_anywhere(self, request, tgid),
            Family::Exec => fds::exec(self, request, tgid),
            Family::Fork => forks::create(self, request, tgid),
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
                        if self.components.observers.wants_messages(&stream.dpid) {
                            self.components
                                .observers
                                .emit(&crate::observe::Event::Bytes {
                                    conn: &stream.dpid,
                                    direction: transforms::Direction::Inbound,
                                    stage: crate::observe::Stage::Delivered,
                                    bytes: &stream.inbound.ready.as_slice()[..n],
                                });
                        }
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
                        self.table.hold((self.table.files(tgid), fd as i32), inode);
                        self.arm(inode);
                        tracing::debug!(target: Kind::Supervisor.target(), tgid, fd, inode, ?peer, "accepted connection handed to tenant");
                        return;
                    }
                    Err(error) => {
                        if let Some(tracked) = self.table.untrack(inode) {
                            self.stash_connection(listener, tracked.copy, peer, &error);
                        }
                        Self::answer_failed_injection(&request, &error);
                        return;
                    }
                }
            }
            Verdict::InjectNew { fd, cloexec } => request.respond(Answer::InjectFd {
                fd: fd.as_fd(),
                cloexec,
            }),
            Verdict::InjectUntracked {
                conn,
                cloexec,
                listener,
                peer,
            } => match request.respond(Answer::InjectFd {
                fd: conn.as_fd(),
                cloexec,
            }) {
                Ok(_) => return,
                Err(error) => {
                    self.stash_connection(listener, conn, peer, &error);
                    Self::answer_failed_injection(&request, &error);
                    return;
                }
            },
        };
        if let Err(error) = outcome {
            tracing::debug!(target: Kind::Supervisor.target(), id = request.id(), %error, "answer not delivered (tenant thread gone)");
        }
    }
}

impl Supervisor {
    /// Services writes to the pipe given to the tenant as `which` (device, inode).
    pub fn capture_output(&mut self, id: (u64, u64), which: table::OutputFd) {
        self.table.set_output(id, which);
        self.outputs.captured.push(which.name());
    }

    /// Serves the control socket's requests from this loop (see `control::bridge`).
    pub fn attach_control(
        &mut self,
        bridge: std::sync::Arc<crate::control::bridge::Bridge>,
        path: &std::path::Path,
        keyring: Option<std::sync::Arc<crate::control::signed::Keyring>>,
    ) -> std::io::Result<()> {
        self.epoll
            .add(bridge.wake_fd(), libc::EPOLLIN as u32, Token::Control)?;
        self.control = Some(bridge);
        self.keyring = keyring;
        self.control_path = Some(path.to_owned());
        Ok(())
    }

    /// Answers what the control threads queued. A bug in a provider fails that request,
    /// never the loop.
    fn on_control(&mut self) {
        let Some(bridge) = self.control.clone() else {
            return;
        };
        for job in bridge.take() {
            if !job.start() {
                continue; // its waiter gave up: it must not run late
            }
            let reply = job.reply;
            let op = match job.call {
                crate::control::bridge::Call::Open(op) => op,
                crate::control::bridge::Call::Privileged(op) => {
                    let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.serve_privileged(op)
                    }))
                    .unwrap_or_else(|_| {
                        Err(crate::control::Failure::new(
                            "internal",
                            "the privileged operation failed (a bug; see the supervisor's log)",
                        ))
                    });
                    let _ = reply.try_send(answer);
                    continue;
                }
            };
            if let crate::control::Op::Selftest { dpid, name } = &op {
                if let Ok((sink, Kind::Sink)) = crate::diag::Dpid::parse(dpid) {
                    self.sink_selftest(&sink, name.as_deref(), reply);
                    continue;
                }
            }
            let answer =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve_control(op)))
                    .unwrap_or_else(|_| {
                        Err(crate::control::Failure::new(
                            "internal",
                            "the component's provider failed (a bug; see the supervisor's log)",
                        ))
                    });
            let _ = reply.try_send(answer);
        }
    }

    /// An accepted connection the tenant did not receive waits for the next accept.
    fn stash_connection(
        &mut self,
        listener: Inode,
        conn: OwnedFd,
        peer: SockAddr,
        error: &std::io::Error,
    ) {
        if let Some(SocketKind::Listener { stash, .. }) =
            self.table.sockets.get_mut(&listener).map(|t| &mut t.kind)
        {
            tracing::info!(target: Kind::Supervisor.target(), %error, "connection not handed to the tenant; kept for the next accept");
            stash.push_back((conn, peer));
        }
    }

    /// ENOENT from ADDFD|SEND: the thread is gone, nobody to answer. Anything else
    /// (EMFILE: the tenant's fd table is full) left the call unanswered: say so, or the
    /// tenant would wait in accept forever.
    fn answer_failed_injection(request: &Request, error: &std::io::Error) {
        let errno = error.raw_os_error().unwrap_or(libc::EIO);
        if errno != libc::ENOENT {
            let _ = request.respond(Answer::Errno(errno));
        }
    }
}

/// Answers a call whose thread could not be identified (its `/proc` entry or a pidfd
/// could not be had: the supervisor is out of descriptors or memory). Nothing can be
/// proven about its descriptors, so it fails, with the errno the kernel gives when
/// resources run out; close-like calls get EINTR (the fd stays open, so nothing the
/// tenant holds goes untracked).
fn answer_unidentified(request: &Request, error: &std::io::Error) {
    if !request.is_valid() {
        return; // the thread is gone: nobody to answer
    }
    let nr = request.nr();
    let errno = match nr {
        libc::SYS_accept | libc::SYS_accept4 => libc::ENFILE,
        libc::SYS_close | libc::SYS_close_range | libc::SYS_dup2 | libc::SYS_dup3 => libc::EINTR,
        _ => libc::ENOMEM,
    };
    let syscall = crate::launch::filter::notified_name(nr as i32);
    tracing::error!(target: Kind::Supervisor.target(), tid = request.tid(), syscall, %error, errno, "cannot identify the calling tenant thread (the supervisor is out of file descriptors or memory); the call fails");
    if let Err(error) = request.respond(Answer::Errno(errno)) {
        tracing::debug!(target: Kind::Supervisor.target(), %error, "answer not delivered (tenant thread gone)");
    }
}

/// Locks the shared state; a handler that panicked leaves it usable (each handler's
/// effects are complete or absent per notification).
fn lock(shared: &std::sync::Mutex<Supervisor>) -> std::sync::MutexGuard<'_, Supervisor> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A notification thread: pinned to `cpu` if given, it blocks in RECV and handles
/// each notification under the state lock, until RECV fails.
fn respond(shared: &std::sync::Mutex<Supervisor>, listener: &OwnedFd, cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        pin_to(cpu);
    }
    loop {
        match Request::receive(listener.as_fd()) {
            Ok(Some(request)) => lock(shared).handle(request),
            Ok(None) => {}
            Err(error) => {
                tracing::error!(target: Kind::Supervisor.target(), %error, "SECCOMP_IOCTL_NOTIF_RECV failed");
                return;
            }
        }
    }
}

/// The CPUs this process may run on, in order (empty if that cannot be read).
fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&cpu| set.is_set(cpu))
            .collect(),
        Err(error) => {
            tracing::warn!(target: Kind::Supervisor.target(), %error, "cannot read the CPU affinity: notification threads are not pinned");
            Vec::new()
        }
    }
}

/// Pins the calling thread to `cpu`; a failure is logged and the thread runs unpinned.
fn pin_to(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(error) = rustix::thread::sched_setaffinity(None, &set) {
        tracing::warn!(target: Kind::Supervisor.target(), cpu, %error, "cannot pin a notification thread");
    }
}
