//! The tenant's threads and processes, known from the notified calls rather than from
//! scanning `/proc`.
//!
//! Every process of a tenant descends from its first one by `clone`, `fork` or `vfork`
//! (`clone3` is refused so libc falls back to `clone`), and all three are notified. At
//! the notification the parent's cached tracked fds are snapshotted and pinned; once the
//! call has returned (the forking thread's next notification, its exit, or a tick) the
//! new child is read from `/proc/<tgid>/task/<tid>/children` — one small file, not a
//! walk of the host — and gets the snapshot as its own cached fds. So a backend forked
//! with a client socket holds it in the cache before its parent closes its copy.
//!
//! A process first seen at one of its own notifications, other than the tenant's first
//! process, was created where the supervisor could not follow (its parent exited before
//! the fork was resolved, or it was reparented); it is *opaque*: its descriptors are
//! read from `/proc/<pid>/fd` before any socket is released.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{Inode, Reserve, Table};
use crate::sys;

/// A tenant thread the supervisor has seen.
#[derive(Debug)]
pub struct Thread {
    /// Its process (thread group).
    pub tgid: libc::pid_t,
    /// `pidfd_open(tid, PIDFD_THREAD)` for a thread that is not its process's leader
    /// (a leader uses its process's pidfd): fetches fds from this thread's table and
    /// becomes readable when the thread exits, so its tid is never trusted after reuse.
    pidfd: Option<OwnedFd>,
}

#[derive(Debug)]
struct Process {
    /// `pidfd_open(tgid, 0)`: readable once the whole thread group has exited.
    pidfd: OwnedFd,
    /// It may hold tracked sockets the cache does not show.
    opaque: bool,
    /// It shares its fd table with another process (clone with CLONE_FILES), so what
    /// a number refers to can change by a call the supervisor files under the other.
    shares_files: bool,
}

/// A fork whose child is not known yet: the parent's tracked fds at the time, pinned.
#[derive(Debug)]
struct Fork {
    tgid: libc::pid_t,
    snapshot: Vec<(RawFd, Inode)>,
    /// CLONE_FILES: the child shares the parent's fd table.
    shares_files: bool,
}

/// Something new to watch for exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A thread (tid): its exit retires its tid.
    Thread(libc::pid_t),
    /// A process (tgid): its exit releases everything it held.
    Process(libc::pid_t),
}

/// Threads, processes and forks in flight.
#[derive(Debug, Default)]
pub struct Tenants {
    /// The tenant's first process: it starts with no tracked fd, so it is never opaque.
    root: libc::pid_t,
    /// The init stub (PID 1 of the tenant's namespace): orphans are reparented to it.
    reaper: libc::pid_t,
    threads: HashMap<libc::pid_t, Thread>,
    processes: HashMap<libc::pid_t, Process>,
    /// By the forking thread's tid.
    forks: HashMap<libc::pid_t, Fork>,
    /// Threads and processes learned since the loop last looked, whose exit it must
    /// start watching.
    pub newly_learned: Vec<Learned>,
}

const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

fn pidfd_open(pid: libc::pid_t, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether the process or thread behind a pidfd has exited.
fn has_exited(pidfd: BorrowedFd<'_>) -> bool {
    sys::poll_now(pidfd, libc::POLLIN).is_ok_and(|r| r != 0)
}

fn read_tgid(tid: libc::pid_t) -> io::Result<libc::pid_t> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Tgid in /proc status"))
}

/// The children of one thread, read with a large buffer (each read(2) restarts the
/// kernel's walk of the list, and a postmaster has a child per connection).
fn read_children(tgid: libc::pid_t, tid: libc::pid_t) -> io::Result<Vec<libc::pid_t>> {
    use std::io::Read;
    let mut file = std::fs::File::open(format!("/proc/{tgid}/task/{tid}/children"))?;
    let mut list = Vec::with_capacity(64 * 1024);
    // A seq_file read returns at most about a page at a time, short of the end: read
    // until the 0-byte EOF (a list cut short would miss the newest child).
    loop {
        let start = list.len();
        list.resize(start + 64 * 1024, 0);
        let n = file.read(&mut list[start..])?;
        list.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    Ok(list
        .split(|b| b.is_ascii_whitespace())
        .filter_map(|p| std::str::from_utf8(p).ok()?.parse().ok())
        .collect())
}

impl Tenants {
    /// Knowledge of a tenant whose first process is `root`, under init stub `reaper`.
    pub fn new(root: libc::pid_t, reaper: libc::pid_t) -> Tenants {
        Tenants {
            root,
            reaper,
            ..Tenants::default()
        }
    }

    /// Every known process may hold tracked sockets the cache does not show.
    pub fn mark_all_opaque(&mut self) {
        for p in self.processes.values_mut() {
            p.opaque = true;
        }
    }

    /// Registers the thread that made a notification, if new; returns its tgid.
    pub fn learn_thread(
        &mut self,
        tid: libc::pid_t,
        reserve: &mut Reserve,
    ) -> io::Result<libc::pid_t> {
        if let Some(t) = self.threads.get(&tid) {
            return Ok(t.tgid);
        }
        let tgid = if self.processes.contains_key(&tid) {
            tid // the leader of a process learned at its fork
        } else {
            reserve.retry(|| read_tgid(tid))?
        };
        if !self.processes.contains_key(&tgid) {
            let opaque = tgid != self.root;
            self.learn_process(tgid, opaque, reserve)?;
            if opaque {
                tracing::info!(target: "supervise::notify", tgid, "a tenant process appeared without a fork the supervisor resolved: its descriptors will be read before any socket is released");
            }
        }
        let pidfd = if tid == tgid {
            None
        } else {
            let pidfd = reserve.retry(|| pidfd_open(tid, PIDFD_THREAD))?;
            self.newly_learned.push(Learned::Thread(tid));
            Some(pidfd)
        };
        self.threads.insert(tid, Thread { tgid, pidfd });
        Ok(tgid)
    }

    fn learn_process(
        &mut self,
        pid: libc::pid_t,
        opaque: bool,
        reserve: &mut Reserve,
    ) -> io::Result<()> {
        let pidfd = reserve.retry(|| pidfd_open(pid, 0))?;
        self.insert_process(pid, pidfd, opaque);
        Ok(())
    }

    fn insert_process(&mut self, pid: libc::pid_t, pidfd: OwnedFd, opaque: bool) {
        self.processes.insert(
            pid,
            Process {
                pidfd,
                opaque,
                shares_files: false,
            },
        );
        self.newly_learned.push(Learned::Process(pid));
    }

    /// Learns a child found in a children list, unless it has already exited: a
    /// zombie not yet reaped is still listed (and may be one the supervisor already
    /// forgot), and holds nothing. `Ok(false)`: it had exited.
    fn learn_listed_child(
        &mut self,
        pid: libc::pid_t,
        opaque: bool,
        reserve: &mut Reserve,
    ) -> io::Result<bool> {
        let pidfd = match reserve.retry(|| pidfd_open(pid, 0)) {
            Ok(pidfd) => pidfd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false), // reaped
            Err(e) => return Err(e),
        };
        if has_exited(pidfd.as_fd()) {
            return Ok(false);
        }
        self.insert_process(pid, pidfd, opaque);
        Ok(true)
    }

    /// The process of a known thread.
    pub fn tgid_of(&self, tid: libc::pid_t) -> Option<libc::pid_t> {
        self.threads.get(&tid).map(|t| t.tgid)
    }

    /// The pidfd that fetches descriptors from a known thread's fd table.
    pub fn pidfd_of(&self, tid: libc::pid_t) -> Option<BorrowedFd<'_>> {
        let thread = self.threads.get(&tid)?;
        match &thread.pidfd {
            Some(fd) => Some(fd.as_fd()),
            None => self.processes.get(&thread.tgid).map(|p| p.pidfd.as_fd()),
        }
    }

    /// The pidfd to watch for a learned thread's or process's exit.
    pub fn exit_watch(&self, learned: Learned) -> Option<BorrowedFd<'_>> {
        match learned {
            Learned::Thread(tid) => self.threads.get(&tid)?.pidfd.as_ref().map(|f| f.as_fd()),
            Learned::Process(tgid) => self.processes.get(&tgid).map(|p| p.pidfd.as_fd()),
        }
    }

    /// Forgets a thread that exited (its tid may be reused); `false` if the thread
    /// known under that tid is still alive (a stale exit event).
    pub fn thread_exited(&mut self, tid: libc::pid_t) -> bool {
        let alive = self
            .threads
            .get(&tid)
            .and_then(|t| t.pidfd.as_ref())
            .is_some_and(|fd| !has_exited(fd.as_fd()));
        if alive {
            return false;
        }
        self.threads.remove(&tid);
        true
    }

    /// Whether the process known under `tgid` has exited (or is unknown).
    pub fn process_exited(&self, tgid: libc::pid_t) -> bool {
        self.processes
            .get(&tgid)
            .is_none_or(|p| has_exited(p.pidfd.as_fd()))
    }

    /// Whether `pid` is a known process (its leader thread may not be known yet).
    pub fn is_process(&self, pid: libc::pid_t) -> bool {
        self.processes.contains_key(&pid)
    }

    /// Whether a fork of thread `tid` waits to be resolved.
    pub fn forking(&self, tid: libc::pid_t) -> bool {
        self.forks.contains_key(&tid)
    }

    /// Whether any fork waits to be resolved.
    pub fn forks_pending(&self) -> bool {
        !self.forks.is_empty()
    }

    /// Whether the supervisor may remember that an fd of process `tgid` is not a
    /// socket: only while every change to its fd table is a notified call filed under
    /// it (not opaque, no shared fd table).
    pub fn may_cache_untracked(&self, tgid: libc::pid_t) -> bool {
        self.processes
            .get(&tgid)
            .is_some_and(|p| !p.opaque && !p.shares_files)
    }

    /// Process `tgid` shares its fd table with a child.
    pub fn mark_shares_files(&mut self, tgid: libc::pid_t) {
        if let Some(p) = self.processes.get_mut(&tgid) {
            p.shares_files = true;
        }
    }

    /// Process `tgid` may now hold tracked sockets the cache does not show.
    pub fn mark_opaque(&mut self, tgid: libc::pid_t) {
        if let Some(p) = self.processes.get_mut(&tgid) {
            if !p.opaque {
                tracing::info!(target: "supervise::notify", tgid, "a tenant process may hold tracked sockets the cache does not show (dup, F_DUPFD or SCM_RIGHTS): its descriptors will be read before any socket is released");
            }
            p.opaque = true;
        }
    }

    fn opaque(&self) -> Vec<libc::pid_t> {
        self.processes
            .iter()
            .filter(|(_, p)| p.opaque)
            .map(|(&pid, _)| pid)
            .collect()
    }
}

impl Table {
    /// Thread `tid` of `tgid` is about to create a process: snapshot and pin what it
    /// holds, so nothing it passes on is released before the child is known.
    pub fn fork_started(&mut self, tid: libc::pid_t, tgid: libc::pid_t, shares_files: bool) {
        self.resolve_fork(tid, true);
        let snapshot = self.entries_of(tgid);
        for &(_, inode) in &snapshot {
            self.pin(inode);
        }
        if shares_files {
            self.tenants.mark_shares_files(tgid);
        }
        self.tenants.forks.insert(
            tid,
            Fork {
                tgid,
                snapshot,
                shares_files,
            },
        );
    }

    /// Looks for the child of thread `tid`'s fork and gives it the snapshot. `settled`:
    /// the fork call has certainly returned (the thread made another call, or exited),
    /// so a fork with no child to find is over (it failed, or the child is already
    /// gone).
    pub fn resolve_fork(&mut self, tid: libc::pid_t, settled: bool) {
        let Some(fork) = self.tenants.forks.get(&tid) else {
            return;
        };
        let tgid = fork.tgid;
        let children = match self.reserve.retry(|| read_children(tgid, tid)) {
            Ok(children) => children,
            Err(error) if !settled => {
                tracing::debug!(target: "supervise::notify", tid, %error, "children of a forking thread not readable yet");
                return;
            }
            Err(_) => {
                // The forking thread is gone (its process exited right after the fork):
                // its child was reparented to the init stub. Unknown children there are
                // learned as opaque, so they are read before any socket is released.
                self.adopt_orphans();
                Vec::new()
            }
        };
        tracing::debug!(target: "supervise::notify", tid, settled, ?children, "resolving a fork");
        let mut found = false;
        for child in children {
            if self.tenants.processes.contains_key(&child) {
                // Known already. (A pid is reused only after the kernel has cycled
                // through pid_max; its exit is processed long before.)
                continue;
            }
            match self
                .tenants
                .learn_listed_child(child, false, &mut self.reserve)
            {
                Ok(true) => {}
                Ok(false) => continue, // a zombie: holds nothing
                Err(error) => {
                    tracing::warn!(target: "supervise::notify", child, %error, "cannot follow a forked child; its sockets stay pinned until the parent's next call");
                    return;
                }
            }
            found = true;
            if self.tenants.forks[&tid].shares_files {
                self.tenants.mark_shares_files(child);
            }
            let snapshot = self.tenants.forks[&tid].snapshot.clone();
            for (fd, inode) in snapshot {
                self.hold((child, fd), inode);
            }
        }
        if !found && !settled {
            return;
        }
        if !found {
            // The call returned and no child is listed: it failed, the child already
            // exited, or the parent exited and the child was reparented (a zombie's
            // list is empty). The last case leaves an orphan to learn.
            self.adopt_orphans();
        }
        let fork = self.tenants.forks.remove(&tid).expect("present");
        for (_, inode) in fork.snapshot {
            self.unpin(inode);
        }
    }

    /// Learns the init stub's children the supervisor does not know (orphans whose
    /// fork it could not resolve) as opaque processes.
    fn adopt_orphans(&mut self) {
        let reaper = self.tenants.reaper;
        let orphans = match self.reserve.retry(|| read_children(reaper, reaper)) {
            Ok(children) => children,
            Err(error) => {
                tracing::warn!(target: "supervise::notify", %error, "cannot read the init stub's children; a child holding tracked sockets may find them shut down");
                return;
            }
        };
        for pid in orphans {
            if self.tenants.processes.contains_key(&pid) {
                continue;
            }
            match self
                .tenants
                .learn_listed_child(pid, true, &mut self.reserve)
            {
                Ok(true) => {
                    tracing::info!(target: "supervise::notify", pid, "a reparented tenant process: its descriptors will be read before any socket is released")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(target: "supervise::notify", pid, %error, "cannot follow a reparented tenant process")
                }
            }
        }
    }

    /// Caches every known tenant process's descriptors referring to `inode` (a socket
    /// tracked only now, which processes forked earlier may hold). Once per listener.
    pub fn adopt_holders(&mut self, inode: Inode) -> io::Result<()> {
        let pids: Vec<libc::pid_t> = self.tenants.processes.keys().copied().collect();
        for pid in pids {
            let found = match self.reserve.retry(|| sockets_held_by(pid, &[inode])) {
                Ok(found) => found,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            for (fd, inode) in found {
                self.hold((pid, fd), inode);
            }
        }
        Ok(())
    }

    /// Resolves every fork whose child is already visible.
    pub fn resolve_forks(&mut self) {
        let tids: Vec<libc::pid_t> = self.tenants.forks.keys().copied().collect();
        for tid in tids {
            self.resolve_fork(tid, false);
        }
    }

    /// Forgets everything about a process that exited.
    pub fn forget_process(&mut self, tgid: libc::pid_t) {
        self.tenants.threads.retain(|_, t| t.tgid != tgid);
        self.tenants.processes.remove(&tgid);
        let forks: Vec<libc::pid_t> = self
            .tenants
            .forks
            .iter()
            .filter(|(_, f)| f.tgid == tgid)
            .map(|(&tid, _)| tid)
            .collect();
        for tid in forks {
            self.resolve_fork(tid, true);
        }
        for fd in self.fds_of(tgid) {
            self.forget(tgid, fd);
        }
        self.forget_untracked(tgid, RawFd::MIN, RawFd::MAX);
    }

    /// Of `candidates` (sockets nothing cached keeps), those that may be released:
    /// opaque processes' descriptors are read first and what they hold is cached.
    /// `Err`: a read failed, so nothing can be proven released (the caller keeps them).
    pub fn confirm_unheld(&mut self, candidates: &[Inode]) -> io::Result<Vec<Inode>> {
        let mut unheld: Vec<Inode> = candidates
            .iter()
            .copied()
            .filter(|i| self.sockets.get(i).is_some_and(|t| t.is_unheld()))
            .collect();
        unheld.sort_unstable();
        unheld.dedup();
        if unheld.is_empty() {
            return Ok(unheld);
        }
        for pid in self.tenants.opaque() {
            let found = match self.reserve.retry(|| sockets_held_by(pid, &unheld)) {
                Ok(found) => found,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue, // exited
                Err(e) => return Err(e),
            };
            for (fd, inode) in found {
                self.hold((pid, fd), inode);
            }
        }
        unheld.retain(|i| self.sockets.get(i).is_some_and(|t| t.is_unheld()));
        Ok(unheld)
    }
}

/// `(fd, inode)` for every descriptor of process `pid` referring to one of `inodes`.
fn sockets_held_by(pid: libc::pid_t, inodes: &[Inode]) -> io::Result<Vec<(RawFd, Inode)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        let path = CString::new(format!("/proc/{pid}/fd/{fd}")).expect("no NUL");
        let Some(target) = sys::read_link(&path) else {
            continue; // closed meanwhile
        };
        if let Some(inode) = parse_socket_link(&target) {
            if inodes.binary_search(&inode).is_ok() {
                found.push((fd, inode));
            }
        }
    }
    Ok(found)
}

/// `socket:[12345]` → 12345.
fn parse_socket_link(target: &[u8]) -> Option<Inode> {
    let inner = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(inner).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_socket_link;

    #[test]
    fn socket_links_parse() {
        assert_eq!(parse_socket_link(b"socket:[4711]"), Some(4711));
        assert_eq!(parse_socket_link(b"pipe:[4711]"), None);
        assert_eq!(parse_socket_link(b"socket:[x]"), None);
    }
}
