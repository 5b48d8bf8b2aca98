//! The loop's event sources: epoll (with typed tokens), signalfd and the waiter ticker.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What an epoll event is about (encoded in its 64-bit data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// The seccomp listener has a notification (or hung up).
    Listener,
    /// A signal for the supervisor.
    Signals,
    /// The init stub reported (tenant exit status).
    Report,
    /// Periodic check of parked notifications.
    Ticker,
    /// A tracked socket became ready (inode).
    Socket(u64),
    /// A tenant thread exited (tid).
    Thread(libc::pid_t),
    /// A tenant process exited (tgid).
    Process(libc::pid_t),
    /// A socket owned by one parked notification (serial).
    Waiter(u64),
}

const KIND_SHIFT: u32 = 56;
const LOW: u64 = (1 << KIND_SHIFT) - 1;

impl Token {
    fn encode(self) -> u64 {
        let (kind, low) = match self {
            Token::Listener => (1, 0),
            Token::Signals => (2, 0),
            Token::Report => (3, 0),
            Token::Ticker => (4, 0),
            Token::Socket(inode) => (5, inode & LOW),
            Token::Thread(tid) => (6, tid as u64),
            Token::Waiter(serial) => (7, serial & LOW),
            Token::Process(tgid) => (8, tgid as u64),
        };
        (kind << KIND_SHIFT) | low
    }

    fn decode(data: u64) -> Option<Token> {
        let low = data & LOW;
        Some(match data >> KIND_SHIFT {
            1 => Token::Listener,
            2 => Token::Signals,
            3 => Token::Report,
            4 => Token::Ticker,
            5 => Token::Socket(low),
            6 => Token::Thread(low as libc::pid_t),
            7 => Token::Waiter(low),
            8 => Token::Process(low as libc::pid_t),
            _ => return None,
        })
    }
}

/// An epoll instance speaking [`Token`]s.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Epoll {
    /// A new epoll instance.
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: flag argument only.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 returned a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// A second handle on the same epoll instance (for a thread that waits on it).
    pub fn try_clone(&self) -> io::Result<Epoll> {
        Ok(Epoll {
            fd: self.fd.try_clone()?,
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: Token) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events,
            u64: token.encode(),
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Watches `fd` for `events` (level-triggered unless EPOLLET/EPOLLONESHOT given).
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: Token) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    /// Changes the interest of a watched fd.
    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: Token) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        // SAFETY: a null event pointer is allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits for events; `timeout_ms` -1 blocks.
    pub fn wait(&self, out: &mut Vec<(Token, u32)>, timeout_ms: libc::c_int) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: `events` is writable for its length, which is passed.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            return if err.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(err)
            };
        }
        out.clear();
        out.extend(
            events[..n as usize]
                .iter()
                .filter_map(|e| Some((Token::decode(e.u64)?, e.events))),
        );
        Ok(())
    }
}

/// Signals the supervisor handles itself (blocked, read from a signalfd). The
/// forwarded ones go to the tenant; SIGCHLD reports the init stub's death.
pub const FORWARDED: [libc::c_int; 7] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Blocks the handled signals and returns the previous mask (which the tenant gets).
pub fn block_handled_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED.iter().chain([&libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(old)
    }
}

/// A signalfd for the handled signals (they must already be blocked).
pub fn signalfd() -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset/sigaddset; signalfd
    // returns a new descriptor that we take ownership of.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in FORWARDED.iter().chain([&libc::SIGCHLD]) {
            libc::sigaddset(&mut set, *sig);
        }
        let fd = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads one pending signal: `(signo, sent_by_a_process)`.
pub fn read_signal(fd: BorrowedFd<'_>) -> Option<(libc::c_int, bool)> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is writable for `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n as usize != size {
        return None;
    }
    // si_code <= 0 (SI_USER, SI_QUEUE, SI_TKILL…) means a process sent it; SI_KERNEL
    // (e.g. ^C on the terminal) already reached the tenant through its process group.
    Some((info.ssi_signo as libc::c_int, info.ssi_code <= 0))
}

/// A periodic timerfd, disarmed until [`set_ticker`] arms it.
pub fn ticker() -> io::Result<OwnedFd> {
    // SAFETY: flags only; returns a new descriptor that we take ownership of.
    let fd = check(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    })?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms (`Some(period)`) or disarms the ticker.
pub fn set_ticker(fd: BorrowedFd<'_>, period_ms: Option<i64>) {
    let ns = period_ms.unwrap_or(0) * 1_000_000;
    let spec = libc::timespec {
        tv_sec: ns / 1_000_000_000,
        tv_nsec: ns % 1_000_000_000,
    };
    let value = libc::itimerspec {
        it_interval: spec,
        it_value: spec,
    };
    // SAFETY: `value` is a valid itimerspec; old value not requested.
    unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) };
}

/// Consumes a ticker expiration.
pub fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is writable for 8 bytes.
    unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
}

/// A thread's signals, from `/proc/<tgid>/task/<tid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct SignalState {
    /// Pending for this thread (SigPnd).
    pub thread: u64,
    /// Pending for the whole process (ShdPnd).
    pub shared: u64,
    /// Blocked by this thread (SigBlk).
    pub blocked: u64,
}

fn status_field(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// What signals thread `tid` of `tgid` has pending and blocked; `None` if it is gone.
pub fn signal_state(tgid: libc::pid_t, tid: libc::pid_t) -> Option<SignalState> {
    let status = std::fs::read_to_string(format!("/proc/{tgid}/task/{tid}/status")).ok()?;
    Some(SignalState {
        thread: status_field(&status, "SigPnd:"),
        shared: status_field(&status, "ShdPnd:"),
        blocked: status_field(&status, "SigBlk:"),
    })
}
