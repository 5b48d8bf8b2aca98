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
//!
//! The fd cache is keyed by fd table ([`Files`]), not by process: the threads of a
//! process share one (the filter refuses a thread with a private table), a process
//! created with CLONE_FILES shares its parent's, and exec gives a process that shared
//! one a private copy. A process first seen without a resolved fork is matched to a
//! known table with `kcmp(KCMP_FILES)`, so a close in one sharer is a close for all.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use rustix::process::{Pid, PidfdFlags};

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

/// An fd table, as the kernel shares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Files(u32);

impl Files {
    /// A table no cache entry is filed under (a process the supervisor does not know):
    /// every lookup in it misses and is resolved from the tenant's real table.
    pub const UNKNOWN: Files = Files(u32::MAX);
}

#[derive(Debug)]
struct Process {
    /// `pidfd_open(tgid, 0)`: readable once the whole thread group has exited.
    pidfd: OwnedFd,
    /// It may hold tracked sockets the cache does not show.
    opaque: bool,
    /// Its fd table.
    files: Files,
    /// It called exec while sharing `Files` with another process: filed under a
    /// private copy, to be checked at its next call (a failed exec keeps the shared
    /// table).
    exec_from: Option<Files>,
}

/// A fork whose child is not known yet: the parent's tracked fds at the time, pinned.
#[derive(Debug)]
struct Fork {
    tgid: libc::pid_t,
    snapshot: Vec<(RawFd, Inode)>,
    /// CLONE_FILES: the child shares the parent's fd table.
    shares_files: bool,
}

/// What became of a process's fd table when it exited or left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Left {
    /// Another process still uses the table: its entries stay.
    Shared(Files),
    /// It was the last user: the table's entries are gone.
    Last(Files),
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
    /// Processes using each fd table.
    tables: HashMap<Files, u32>,
    next_files: u32,
    /// Processes with an exec to check ([`Process::exec_from`]).
    execs_pending: usize,
    /// Threads and processes learned since the loop last looked, whose exit it must
    /// start watching.
    pub newly_learned: Vec<Learned>,
}

const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

fn pidfd_open(pid: libc::pid_t, flags: libc::c_int) -> io::Result<OwnedFd> {
    // The kernel refuses a pid <= 0 with EINVAL; rustix's `Pid` cannot hold one.
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = PidfdFlags::from_bits_retain(flags as libc::c_uint);
    Ok(rustix::process::pidfd_open(pid, flags)?)
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
            let files = if opaque {
                self.identify_files(tgid)
            } else {
                None
            };
            self.learn_process(tgid, opaque, files, reserve)?;
            if opaque {
                tracing::info!(target: Kind::Supervisor.target(), tgid, "a tenant process appeared without a fork the supervisor resolved: its descriptors will be read before any socket is released");
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
        files: Option<Files>,
        reserve: &mut Reserve,
    ) -> io::Result<()> {
        let pidfd = reserve.retry(|| pidfd_open(pid, 0))?;
        self.insert_process(pid, pidfd, opaque, files);
        Ok(())
    }

    /// Registers a process using `files` (`None`: a table of its own).
    fn insert_process(
        &mut self,
        pid: libc::pid_t,
        pidfd: OwnedFd,
        opaque: bool,
        files: Option<Files>,
    ) -> Files {
        let files = files.unwrap_or_else(|| self.new_files());
        *self.tables.entry(files).or_default() += 1;
        self.processes.insert(
            pid,
            Process {
                pidfd,
                opaque,
                files,
                exec_from: None,
            },
        );
        self.newly_learned.push(Learned::Process(pid));
        files
    }

    fn new_files(&mut self) -> Files {
        self.next_files += 1;
        Files(self.next_files)
    }

    /// The known fd table process `pid` uses, asked of the kernel (`kcmp`): for a
    /// process whose creation the supervisor did not see.
    fn identify_files(&self, pid: libc::pid_t) -> Option<Files> {
        let mut different = std::collections::HashSet::new();
        for (&other, p) in &self.processes {
            if other == pid || different.contains(&p.files) {
                continue;
            }
            match sys::same_fd_table(pid, other) {
                Ok(true) => return Some(p.files),
                Ok(false) => {
                    different.insert(p.files);
                }
                Err(_) => {} // `other` is gone: ask another member of its table
            }
        }
        None
    }

    /// The fd table of process `tgid` ([`Files::UNKNOWN`] if it is not known).
    pub fn files_of(&self, tgid: libc::pid_t) -> Files {
        self.processes
            .get(&tgid)
            .map_or(Files::UNKNOWN, |p| p.files)
    }

    /// Whether more than one process uses `files`.
    pub fn is_shared(&self, files: Files) -> bool {
        self.tables.get(&files).is_some_and(|&n| n > 1)
    }

    /// Takes process `tgid` off its table; says whether others still use it.
    fn leave_files(&mut self, files: Files) -> Left {
        match self.tables.get_mut(&files) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Left::Shared(files)
            }
            _ => {
                self.tables.remove(&files);
                Left::Last(files)
            }
        }
    }

    /// Learns a child found in a children list, unless it has already exited: a
    /// zombie not yet reaped is still listed (and may be one the supervisor already
    /// forgot), and holds nothing. `Ok(false)`: it had exited.
    fn learn_listed_child(
        &mut self,
        pid: libc::pid_t,
        opaque: bool,
        files: Option<Files>,
        reserve: &mut Reserve,
    ) -> io::Result<Option<Files>> {
        let pidfd = match reserve.retry(|| pidfd_open(pid, 0)) {
            Ok(pidfd) => pidfd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None), // reaped
            Err(e) => return Err(e),
        };
        if has_exited(pidfd.as_fd()) {
            return Ok(None);
        }
        Ok(Some(self.insert_process(pid, pidfd, opaque, files)))
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
    /// socket: every change to its table is a notified call filed under the table,
    /// whichever process sharing it makes it; not for an opaque process (what it holds
    /// came in ways the cache does not follow).
    pub fn may_cache_untracked(&self, tgid: libc::pid_t) -> bool {
        self.processes.get(&tgid).is_some_and(|p| !p.opaque)
    }

    /// Whether some process's exec waits to be checked.
    pub fn execs_pending(&self) -> bool {
        self.execs_pending > 0
    }

    /// Process `tgid` may now hold tracked sockets the cache does not show.
    pub fn mark_opaque(&mut self, tgid: libc::pid_t) {
        if let Some(p) = self.processes.get_mut(&tgid) {
            if !p.opaque {
                tracing::info!(target: Kind::Supervisor.target(), tgid, "a tenant process may hold tracked sockets the cache does not show (dup, F_DUPFD or SCM_RIGHTS): its descriptors will be read before any socket is released");
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
        let snapshot = self.entries_of(self.tenants.files_of(tgid));
        for &(_, inode) in &snapshot {
            self.pin(inode);
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
                tracing::debug!(target: Kind::Supervisor.target(), tid, %error, "children of a forking thread not readable yet");
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
        tracing::debug!(target: Kind::Supervisor.target(), tid, settled, ?children, "resolving a fork");
        let mut found = false;
        let parent_files = self.tenants.files_of(tgid);
        let shares_files = self.tenants.forks[&tid].shares_files;
        for child in children {
            if self.tenants.processes.contains_key(&child) {
                // Known already. (A pid is reused only after the kernel has cycled
                // through pid_max; its exit is processed long before.)
                continue;
            }
            let shared = shares_files.then_some(parent_files);
            let files = match self.tenants.learn_listed_child(
                child,
                false,
                shared,
                &mut self.reserve,
            ) {
                Ok(Some(files)) => files,
                Ok(None) => continue, // a zombie: holds nothing
                Err(error) => {
                    tracing::warn!(target: Kind::Supervisor.target(), child, %error, "cannot follow a forked child; its sockets stay pinned until the parent's next call");
                    return;
                }
            };
            found = true;
            if shares_files {
                continue; // the same table: its entries are the child's already
            }
            let snapshot = self.tenants.forks[&tid].snapshot.clone();
            for (fd, inode) in snapshot {
                self.hold((files, fd), inode);
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
                tracing::warn!(target: Kind::Supervisor.target(), %error, "cannot read the init stub's children; a child holding tracked sockets may find them shut down");
                return;
            }
        };
        for pid in orphans {
            if self.tenants.processes.contains_key(&pid) {
                continue;
            }
            let files = self.tenants.identify_files(pid);
            match self
                .tenants
                .learn_listed_child(pid, true, files, &mut self.reserve)
            {
                Ok(Some(_)) => {
                    tracing::info!(target: Kind::Supervisor.target(), pid, "a reparented tenant process: its descriptors will be read before any socket is released")
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(target: Kind::Supervisor.target(), pid, %error, "cannot follow a reparented tenant process")
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
            let files = self.tenants.files_of(pid);
            for (fd, inode) in found {
                self.hold((files, fd), inode);
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

    /// Forgets everything about a process that exited; its fd table's entries go with
    /// the table's last user.
    pub fn forget_process(&mut self, tgid: libc::pid_t) {
        self.tenants.threads.retain(|_, t| t.tgid != tgid);
        let Some(process) = self.tenants.processes.remove(&tgid) else {
            return;
        };
        if process.exec_from.is_some() {
            self.tenants.execs_pending -= 1;
        }
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
        if let Left::Last(files) = self.tenants.leave_files(process.files) {
            self.forget_table(files);
        }
    }

    /// Drops every entry filed under `files` (no process uses it any more).
    fn forget_table(&mut self, files: Files) {
        for fd in self.fds_of(files) {
            self.forget(files, fd);
        }
        self.forget_untracked(files, RawFd::MIN, RawFd::MAX);
    }

    /// Process `tgid`, which shares its fd table, is calling exec: the kernel gives it
    /// a private copy without the close-on-exec descriptors (`closes(fd)`) and leaves
    /// the shared table as it is for the others. Filed under a new table, checked at
    /// the process's next call ([`Table::settle_exec`]).
    pub fn exec_unshare(&mut self, tgid: libc::pid_t, closes: impl Fn(RawFd) -> bool) {
        let old = self.tenants.files_of(tgid);
        let new = self.tenants.new_files();
        let kept: Vec<(RawFd, Inode)> = self
            .entries_of(old)
            .into_iter()
            .filter(|&(fd, _)| !closes(fd))
            .collect();
        for (fd, inode) in kept {
            self.hold((new, fd), inode);
        }
        self.tenants.leave_files(old);
        self.tenants.tables.insert(new, 1);
        let process = self.tenants.processes.get_mut(&tgid).expect("known");
        process.files = new;
        if process.exec_from.replace(old).is_none() {
            self.tenants.execs_pending += 1;
        }
    }

    /// Checks the exec of process `tgid`, if one is pending: a process still sharing
    /// its old table (the exec failed) goes back to it.
    pub fn settle_exec(&mut self, tgid: libc::pid_t) {
        let Some(process) = self.tenants.processes.get_mut(&tgid) else {
            return;
        };
        let Some(old) = process.exec_from.take() else {
            return;
        };
        self.tenants.execs_pending -= 1;
        let members: Vec<libc::pid_t> = self
            .tenants
            .processes
            .iter()
            .filter(|(&pid, p)| pid != tgid && p.files == old)
            .map(|(&pid, _)| pid)
            .collect();
        let still_shared = members
            .iter()
            .any(|&pid| sys::same_fd_table(tgid, pid).unwrap_or(false));
        if !still_shared {
            return;
        }
        tracing::debug!(target: Kind::Supervisor.target(), tgid, "exec failed: the process still shares its fd table");
        let new = self.tenants.files_of(tgid);
        self.forget_table(new);
        self.tenants.tables.remove(&new);
        *self.tenants.tables.entry(old).or_default() += 1;
        self.tenants.processes.get_mut(&tgid).expect("known").files = old;
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
            let files = self.tenants.files_of(pid);
            for (fd, inode) in found {
                self.hold((files, fd), inode);
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

/// What `ctl state` shows of the tenant's processes.
impl Tenants {
    /// The tenant processes known (tgids, ascending).
    pub fn process_ids(&self) -> Vec<libc::pid_t> {
        let mut ids: Vec<_> = self.processes.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Threads known.
    pub fn thread_count(&self) -> usize {
        self.threads.len()
    }

    /// The processes using fd table `files`.
    pub fn processes_using(&self, files: Files) -> Vec<libc::pid_t> {
        let mut ids: Vec<_> = self
            .processes
            .iter()
            .filter(|(_, p)| p.files == files)
            .map(|(&tgid, _)| tgid)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The fd tables in use.
    pub fn files_in_use(&self) -> usize {
        self.tables.len()
    }
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
