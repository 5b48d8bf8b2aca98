//! Which tenant descriptors refer to tracked sockets.
//!
//! Sockets are identified by inode; fd numbers are only a per-process cache of that
//! identity. The cache is exact because every syscall that can change what an fd
//! number refers to is notified (close, close_range, dup2, dup3, execve) or ends the
//! process; a miss is resolved with `pidfd_getfd` + `fstat`. The supervisor holds one
//! copy of each tracked socket; when no cached tenant descriptor refers to it any more,
//! [`Table::sweep`] looks through every tenant process (a forked child may hold it
//! without ever having used it) and releases the copy only if none does — so the peer
//! sees EOF exactly when the tenant has closed it everywhere.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;

use crate::notify::Request;
use crate::stream::Stream;
use crate::sys::{self, SockAddr};

/// Socket inode number.
pub type Inode = u64;

/// What a tracked socket is.
#[derive(Debug)]
pub enum SocketKind {
    /// A listening socket whose accepted connections belong to stream config `config`
    /// (`None`: a confined tenant's listener no stream tracks, accepted here only so
    /// each peer's label is checked).
    Listener {
        /// Index of the stream in the profile.
        config: Option<usize>,
        /// Connections accepted for a tenant that died before receiving them: handed to
        /// the next accept, so no connection is lost.
        stash: VecDeque<(OwnedFd, SockAddr)>,
    },
    /// A connection with spool state.
    Stream(Box<Stream>),
}

/// A tracked socket and the supervisor's copy of it.
#[derive(Debug)]
pub struct Tracked {
    /// The supervisor's own descriptor for it.
    pub copy: OwnedFd,
    /// Listener or stream.
    pub kind: SocketKind,
    /// Cached tenant descriptors referring to it.
    holders: usize,
    /// Epoll interest parked calls need.
    pub armed: u32,
    /// Interest currently registered with epoll (0 = disarmed).
    pub registered: u32,
}

impl Tracked {
    /// Cached tenant descriptors referring to this socket.
    pub fn holders(&self) -> usize {
        self.holders
    }
}

/// A tenant thread the supervisor has seen.
#[derive(Debug)]
pub struct Thread {
    /// Its process (thread group).
    pub tgid: libc::pid_t,
    /// `pidfd_open(tid, PIDFD_THREAD)`: fetches fds from this thread's own table and
    /// becomes readable when the thread exits (so its tid is never trusted after reuse).
    pub pidfd: OwnedFd,
}

/// Result of looking up a tenant fd.
#[derive(Debug)]
pub enum Lookup {
    /// A tracked socket.
    Tracked(Inode),
    /// Not tracked; the fetched copy is returned for callers that classify it (accept,
    /// connect), or `None` when the fd is not a socket.
    Untracked(Option<OwnedFd>),
}

/// The registry.
#[derive(Debug, Default)]
pub struct Table {
    /// Tracked sockets by inode.
    pub sockets: HashMap<Inode, Tracked>,
    fds: HashMap<(libc::pid_t, RawFd), Inode>,
    /// Known tenant threads by tid.
    pub threads: HashMap<libc::pid_t, Thread>,
    /// Tenant PID namespace inode (membership = tenant process).
    pub pid_ns: u64,
    /// Known tenant processes: `pidfd_open(tgid, 0)`, readable once the whole thread
    /// group has exited (a leader's own exit is not the process's).
    pub processes: HashMap<libc::pid_t, OwnedFd>,
    /// Threads and processes learned since the caller last looked, whose exit it must
    /// start watching.
    pub newly_learned: Vec<Learned>,
}

/// Something new to watch for exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A thread (tid): its exit retires its tid.
    Thread(libc::pid_t),
    /// A process (tgid): its exit releases everything it held.
    Process(libc::pid_t),
}

fn pidfd_open(pid: libc::pid_t, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments only.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as RawFd) })
}

const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

impl Table {
    /// A registry for tenants in PID namespace `pid_ns`.
    pub fn new(pid_ns: u64) -> Table {
        Table {
            pid_ns,
            ..Table::default()
        }
    }

    /// Registers a thread (and its process) seen for the first time; what is new is
    /// queued in [`Table::newly_learned`].
    pub fn learn_thread(&mut self, tid: libc::pid_t) -> io::Result<()> {
        if self.threads.contains_key(&tid) {
            return Ok(());
        }
        let status = std::fs::read_to_string(format!("/proc/{tid}/status"))?;
        let tgid = status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| io::Error::other("no Tgid in status"))?;
        let pidfd = pidfd_open(tid, PIDFD_THREAD)?;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.processes.entry(tgid) {
            slot.insert(pidfd_open(tgid, 0)?);
            self.newly_learned.push(Learned::Process(tgid));
        }
        self.threads.insert(tid, Thread { tgid, pidfd });
        self.newly_learned.push(Learned::Thread(tid));
        Ok(())
    }

    /// Looks up the tenant's fd `fd` as seen by the thread that made `request` (which
    /// must be known).
    pub fn lookup(&mut self, request: &Request, fd: RawFd) -> io::Result<Lookup> {
        let thread = self
            .threads
            .get(&request.tid())
            .ok_or_else(|| io::Error::other("unknown thread"))?;
        let key = (thread.tgid, fd);
        if let Some(&inode) = self.fds.get(&key) {
            return Ok(Lookup::Tracked(inode));
        }
        let copy = request.fetch_fd(thread.pidfd.as_fd(), fd)?;
        let (inode, is_socket) = sys::inode_of(copy.as_fd())?;
        if !is_socket {
            return Ok(Lookup::Untracked(None));
        }
        if self.sockets.contains_key(&inode) {
            self.hold(key, inode);
            return Ok(Lookup::Tracked(inode));
        }
        Ok(Lookup::Untracked(Some(copy)))
    }

    /// The cached inode for `(tgid, fd)`, without resolving a miss.
    pub fn cached(&self, tgid: libc::pid_t, fd: RawFd) -> Option<Inode> {
        self.fds.get(&(tgid, fd)).copied()
    }

    /// Starts tracking a socket the supervisor created or classified.
    pub fn track(&mut self, copy: OwnedFd, kind: SocketKind) -> io::Result<Inode> {
        let (inode, _) = sys::inode_of(copy.as_fd())?;
        self.sockets.insert(
            inode,
            Tracked {
                copy,
                kind,
                holders: 0,
                armed: 0,
                registered: u32::MAX,
            },
        );
        Ok(inode)
    }

    /// Records that the tenant's `(tgid, fd)` refers to `inode`.
    pub fn hold(&mut self, key: (libc::pid_t, RawFd), inode: Inode) {
        if let Some(old) = self.fds.insert(key, inode) {
            self.release_one(old);
        }
        if let Some(t) = self.sockets.get_mut(&inode) {
            t.holders += 1;
        }
    }

    /// Forgets `(tgid, fd)`; returns the inode if that was its last cached holder.
    pub fn forget(&mut self, tgid: libc::pid_t, fd: RawFd) -> Option<Inode> {
        let inode = self.fds.remove(&(tgid, fd))?;
        self.release_one(inode).then_some(inode)
    }

    /// Cached fds of process `tgid` that refer to tracked sockets.
    pub fn fds_of(&self, tgid: libc::pid_t) -> Vec<RawFd> {
        self.fds
            .keys()
            .filter(|(p, _)| *p == tgid)
            .map(|&(_, fd)| fd)
            .collect()
    }

    /// Forgets everything about a process that exited; returns sockets left with no
    /// cached holder.
    pub fn forget_process(&mut self, tgid: libc::pid_t) -> Vec<Inode> {
        self.threads.retain(|_, t| t.tgid != tgid);
        self.processes.remove(&tgid);
        let fds = self.fds_of(tgid);
        fds.into_iter()
            .filter_map(|fd| self.forget(tgid, fd))
            .collect()
    }

    fn release_one(&mut self, inode: Inode) -> bool {
        match self.sockets.get_mut(&inode) {
            Some(t) => {
                t.holders = t.holders.saturating_sub(1);
                t.holders == 0
            }
            None => false,
        }
    }

    /// For sockets with no cached holder: searches every tenant process for a
    /// descriptor still referring to them (caching what it finds), and returns those
    /// nobody holds — the caller releases them.
    pub fn sweep(&mut self, candidates: &[Inode]) -> Vec<Inode> {
        let mut orphaned: Vec<Inode> = candidates
            .iter()
            .copied()
            .filter(|i| self.sockets.get(i).is_some_and(|t| t.holders == 0))
            .collect();
        if orphaned.is_empty() {
            return orphaned;
        }
        for (tgid, fd, inode) in self.scan_tenant_sockets(&orphaned) {
            // A process that exited meanwhile no longer holds anything.
            if self.learn_thread(tgid).is_ok() {
                self.hold((tgid, fd), inode);
            }
        }
        orphaned.retain(|i| self.sockets.get(i).is_some_and(|t| t.holders == 0));
        orphaned
    }

    /// `(tgid, fd, inode)` for every descriptor of every tenant process referring to
    /// one of `inodes`.
    fn scan_tenant_sockets(&self, inodes: &[Inode]) -> Vec<(libc::pid_t, RawFd, Inode)> {
        let mut found = Vec::new();
        let Ok(proc_dir) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in proc_dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<libc::pid_t>().ok())
            else {
                continue;
            };
            let in_tenant_ns = std::fs::metadata(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|m| m.ino() == self.pid_ns);
            if !in_tenant_ns {
                continue;
            }
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd_entry in fds.flatten() {
                let Some(fd) = fd_entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<RawFd>().ok())
                else {
                    continue;
                };
                let Ok(path) = CString::new(format!("/proc/{pid}/fd/{fd}")) else {
                    continue;
                };
                let Some(target) = sys::read_link(&path) else {
                    continue;
                };
                let Some(inode) = parse_socket_link(&target) else {
                    continue;
                };
                if inodes.contains(&inode) {
                    found.push((pid, fd, inode));
                }
            }
        }
        found
    }

    /// Removes a tracked socket, returning it (its copy closes when dropped).
    pub fn untrack(&mut self, inode: Inode) -> Option<Tracked> {
        self.fds.retain(|_, i| *i != inode);
        self.sockets.remove(&inode)
    }

    /// The supervisor's copy of a tracked socket.
    pub fn copy(&self, inode: Inode) -> Option<BorrowedFd<'_>> {
        self.sockets.get(&inode).map(|t| t.copy.as_fd())
    }

    /// The stream state of a tracked connection.
    pub fn stream(&mut self, inode: Inode) -> Option<(&mut Stream, BorrowedFd<'_>)> {
        let t = self.sockets.get_mut(&inode)?;
        match &mut t.kind {
            SocketKind::Stream(s) => Some((s, t.copy.as_fd())),
            SocketKind::Listener { .. } => None,
        }
    }
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
