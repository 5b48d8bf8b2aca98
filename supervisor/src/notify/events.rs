//! The loop's event sources: epoll (with typed tokens), signalfd and the waiter ticker.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::io::Errno;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

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
    /// The control socket's threads have requests for the loop.
    Control,
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
            Token::Control => (9, 0),
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
            9 => Token::Control,
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

/// An `epoll_wait` timeout in milliseconds (negative: block) as the `Timespec` rustix
/// takes (`None`: block).
fn timeout_of_ms(timeout_ms: libc::c_int) -> Option<Timespec> {
    (timeout_ms >= 0).then(|| Timespec {
        tv_sec: i64::from(timeout_ms / 1000),
        tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
    })
}

impl Epoll {
    /// A new epoll instance.
    pub fn new() -> io::Result<Epoll> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Epoll { fd })
    }

    /// A second handle on the same epoll instance (for a thread that waits on it).
    pub fn try_clone(&self) -> io::Result<Epoll> {
        Ok(Epoll {
            fd: self.fd.try_clone()?,
        })
    }

    /// Watches `fd` for `events` (level-triggered unless EPOLLET/EPOLLONESHOT given).
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: Token) -> io::Result<()> {
        let data = EventData::new_u64(token.encode());
        epoll::add(&self.fd, fd, data, EventFlags::from_bits_retain(events))?;
        Ok(())
    }

    /// Changes the interest of a watched fd.
    pub fn modify(&self, fd: BorrowedFd<'_>, events: u32, token: Token) -> io::Result<()> {
        let data = EventData::new_u64(token.encode());
        epoll::modify(&self.fd, fd, data, EventFlags::from_bits_retain(events))?;
        Ok(())
    }

    /// Stops watching `fd`.
    pub fn remove(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.fd, fd);
    }

    /// Waits for events; `timeout_ms` -1 blocks. Interrupted by a signal, it returns
    /// `Ok` with `out` untouched.
    pub fn wait(&self, out: &mut Vec<(Token, u32)>, timeout_ms: libc::c_int) -> io::Result<()> {
        let mut events = [MaybeUninit::<epoll::Event>::uninit(); 64];
        let timeout = timeout_of_ms(timeout_ms);
        let (ready, _) = match epoll::wait(&self.fd, &mut events, timeout.as_ref()) {
            Ok(ready) => ready,
            Err(Errno::INTR) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        out.clear();
        out.extend(ready.iter().filter_map(|e| {
            // Copied out: `Event` is packed, so its fields cannot be borrowed.
            let (data, flags) = (e.data, e.flags);
            Some((Token::decode(data.u64())?, flags.bits()))
        }));
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
    // rustix has no safe `pthread_sigmask` (only the raw, unsafe `rt_sigprocmask`).
    // SAFETY: `set` and `old` are zeroed `sigset_t`s (plain bit arrays, valid when all
    // zero), local and alive for every call that gets a pointer to them; sigemptyset and
    // sigaddset only write inside `set`, with valid signal numbers; pthread_sigmask reads
    // `set`, writes `old` and changes only this thread's mask.
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
    // rustix has no signalfd.
    // SAFETY: `set` is a zeroed `sigset_t` (valid when all zero), filled in place by
    // sigemptyset/sigaddset with valid signal numbers and alive across signalfd, which
    // only reads it; with -1 signalfd creates a new descriptor, which nothing else owns,
    // so `OwnedFd` takes sole ownership of it (only once `check` saw it is not -1).
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

/// `struct signalfd_siginfo`: what one read of a signalfd returns.
const SIGINFO_SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();

/// Reads one pending signal: `(signo, sent_by_a_process)`.
pub fn read_signal(fd: BorrowedFd<'_>) -> Option<(libc::c_int, bool)> {
    let mut info = [0u8; SIGINFO_SIZE];
    match rustix::io::read(fd, &mut info) {
        Ok(SIGINFO_SIZE) => {}
        _ => return None,
    }
    // `ssi_signo` (u32) at offset 0 and `ssi_code` (i32) at offset 8 of signalfd_siginfo.
    let field = |at: usize| <[u8; 4]>::try_from(&info[at..at + 4]).expect("4 bytes");
    let signo = u32::from_ne_bytes(field(0));
    let code = i32::from_ne_bytes(field(8));
    // si_code <= 0 (SI_USER, SI_QUEUE, SI_TKILL…) means a process sent it; SI_KERNEL
    // (e.g. ^C on the terminal) already reached the tenant through its process group.
    Some((signo as libc::c_int, code <= 0))
}

/// A periodic timerfd, disarmed until [`set_ticker`] arms it.
pub fn ticker() -> io::Result<OwnedFd> {
    let flags = TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK;
    Ok(timerfd_create(TimerfdClockId::Monotonic, flags)?)
}

/// Arms (`Some(period)`) or disarms the ticker.
pub fn set_ticker(fd: BorrowedFd<'_>, period_ms: Option<i64>) {
    let ns = period_ms.unwrap_or(0) * 1_000_000;
    let spec = Timespec {
        tv_sec: ns / 1_000_000_000,
        tv_nsec: ns % 1_000_000_000,
    };
    let value = Itimerspec {
        it_interval: spec,
        it_value: spec,
    };
    let _ = timerfd_settime(fd, TimerfdTimerFlags::empty(), &value);
}

/// Consumes a ticker expiration.
pub fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
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
