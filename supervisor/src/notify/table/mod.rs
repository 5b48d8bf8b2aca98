//! Which tenant descriptors refer to tracked sockets.
//!
//! Sockets are identified by inode; fd numbers are only a per-fd-table cache of that
//! identity, kept from the notified calls: accept and connect add entries, close,
//! close_range, dup2, dup3 and execve remove them, and a fork gives the child a copy of
//! its parent's entries (see [`tenants`]). The supervisor holds one copy of each
//! tracked socket; it counts the cached descriptors referring to it (*holders*) and
//! the calls in flight on it (*pins*: a parked call, a fork not yet resolved), and lets
//! the copy go only when both are zero — so the peer sees EOF exactly when the tenant
//! has closed it everywhere, and nothing here ever scans `/proc` per connection.
//!
//! Where the cache cannot be exact (a process that received descriptors in ways no
//! notified call shows) the process is *opaque* and its descriptors are read before a
//! release; if that read fails the socket stays tracked. And a released socket is shut
//! down before the copy closes, so a holder the supervisor missed finds a dead
//! connection, never an untracked one.

#![forbid(unsafe_code)]

mod reserve;
pub mod tenants;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

pub use reserve::Reserve;
pub use tenants::{Files, Learned};

use super::Request;
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
    /// Calls in flight that keep it alive (parked calls, unresolved forks).
    pins: usize,
    /// Epoll interest parked calls need.
    pub armed: u32,
    /// Interest currently registered with epoll (0 = disarmed).
    pub registered: u32,
}

impl Tracked {
    /// Whether nothing the supervisor knows of keeps the socket: no cached descriptor,
    /// no call in flight.
    pub fn is_unheld(&self) -> bool {
        self.holders == 0 && self.pins == 0
    }
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
    /// (fd table, fd) → socket; ordered so one table's entries are a range.
    fds: BTreeMap<(Files, RawFd), Inode>,
    /// (fd table, fd) known not to be a socket (a file, a pipe): most notified reads and
    /// writes are on these, and each would otherwise cost a pidfd_getfd + fstat. A
    /// number keeps its file until a notified close, close_range, dup2/dup3 or exec
    /// changes it, which forgets the entry; sockets are never remembered here (an
    /// untracked socket can become tracked), nor fds of opaque processes.
    not_sockets: BTreeSet<(Files, RawFd)>,
    /// Tenant threads, processes and forks in flight.
    pub tenants: tenants::Tenants,
    /// Spare descriptors for when the supervisor is at its fd limit.
    pub reserve: Reserve,
    /// Sockets that became unheld (no cached holder, no pin) since the loop last
    /// looked: it releases them, once [`Table::confirm_unheld`] agrees.
    pub unheld: Vec<Inode>,
    /// The pipes the supervisor gave the tenant as stdout/stderr, by (device, inode):
    /// writes to them are taken and stamped (see `notify::output`).
    output_ids: Vec<((u64, u64), OutputFd)>,
    /// Cached (fd table, fd) of those pipes; entries are also in `not_sockets` and
    /// forgotten with them.
    outputs: BTreeMap<(Files, RawFd), OutputFd>,
    /// What the last [`Table::lookup`] found, if the fd was one of those pipes.
    found_output: Option<OutputFd>,
}

/// Which of the tenant's outputs a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutputFd {
    /// Its stdout.
    Stdout,
    /// Its stderr.
    Stderr,
}

impl Table {
    /// A registry whose first tenant process is `root` (it starts with no tracked fd),
    /// under init stub `reaper`.
    pub fn new(root: libc::pid_t, reaper: libc::pid_t) -> Table {
        Table {
            tenants: tenants::Tenants::new(root, reaper),
            reserve: Reserve::new(),
            ..Table::default()
        }
    }

    /// Registers the thread that made a notification, if new; returns its tgid. A new
    /// process may be the child of a fork not resolved yet: those are resolved first,
    /// so it gets its parent's descriptors rather than being taken for opaque.
    pub fn learn_thread(&mut self, tid: libc::pid_t) -> io::Result<libc::pid_t> {
        if let Some(tgid) = self.tenants.tgid_of(tid) {
            if self.tenants.execs_pending() {
                self.settle_exec(tgid);
            }
            return Ok(tgid);
        }
        if self.tenants.forks_pending() && !self.tenants.is_process(tid) {
            self.resolve_forks();
        }
        self.tenants.learn_thread(tid, &mut self.reserve)
    }

    /// Looks up the tenant's fd `fd` as seen by the thread that made `request` (which
    /// must be known). A parked call resumed on the socket it pinned gets that socket,
    /// whatever its fd number means now (another thread may have closed it).
    pub fn lookup(&mut self, request: &Request, fd: RawFd) -> io::Result<Lookup> {
        self.found_output = None;
        if let Some(inode) = request.pinned() {
            if fd == request.fd_arg(0) && self.sockets.contains_key(&inode) {
                return Ok(Lookup::Tracked(inode));
            }
        }
        let tgid = self
            .tenants
            .tgid_of(request.tid())
            .ok_or_else(|| io::Error::other("unknown thread"))?;
        let key = (self.tenants.files_of(tgid), fd);
        if let Some(&inode) = self.fds.get(&key) {
            return Ok(Lookup::Tracked(inode));
        }
        let cacheable = self.tenants.may_cache_untracked(tgid);
        if self.not_sockets.contains(&key) {
            if cacheable {
                self.found_output = self.outputs.get(&key).copied();
                return Ok(Lookup::Untracked(None));
            }
            self.not_sockets.remove(&key);
            self.outputs.remove(&key);
        }
        let pidfd = self
            .tenants
            .pidfd_of(request.tid())
            .ok_or_else(|| io::Error::other("unknown thread"))?;
        let copy = self.reserve.retry(|| request.fetch_fd(pidfd, fd))?;
        let (dev, inode, is_socket) = sys::file_id(copy.as_fd())?;
        if !is_socket {
            let output = self
                .output_ids
                .iter()
                .find(|(id, _)| *id == (dev, inode))
                .map(|(_, o)| *o);
            self.found_output = output;
            if cacheable {
                self.not_sockets.insert(key);
                if let Some(output) = output {
                    self.outputs.insert(key, output);
                }
            }
            return Ok(Lookup::Untracked(None));
        }
        if self.sockets.contains_key(&inode) {
            self.hold(key, inode);
            return Ok(Lookup::Tracked(inode));
        }
        Ok(Lookup::Untracked(Some(copy)))
    }

    /// Forgets what is known of fds `first..=last` of table `files` that are not
    /// sockets (they were closed or replaced).
    pub fn forget_untracked(&mut self, files: Files, first: RawFd, last: RawFd) {
        if first > last {
            return;
        }
        let gone: Vec<(Files, RawFd)> = self
            .not_sockets
            .range((files, first)..=(files, last))
            .copied()
            .collect();
        for key in gone {
            self.not_sockets.remove(&key);
            self.outputs.remove(&key);
        }
    }

    /// The fd table process `tgid` uses.
    pub fn files(&self, tgid: libc::pid_t) -> Files {
        self.tenants.files_of(tgid)
    }

    /// The cached inode for `(files, fd)`, without resolving a miss.
    pub fn cached(&self, files: Files, fd: RawFd) -> Option<Inode> {
        self.fds.get(&(files, fd)).copied()
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
                pins: 0,
                armed: 0,
                registered: u32::MAX,
            },
        );
        Ok(inode)
    }

    /// Records that the tenant's `(files, fd)` refers to `inode`.
    pub fn hold(&mut self, key: (Files, RawFd), inode: Inode) {
        if let Some(old) = self.fds.insert(key, inode) {
            self.release_one(old);
        }
        if let Some(t) = self.sockets.get_mut(&inode) {
            t.holders += 1;
        }
    }

    /// Forgets `(files, fd)`; `false` if it was not cached.
    pub fn forget(&mut self, files: Files, fd: RawFd) -> bool {
        match self.fds.remove(&(files, fd)) {
            Some(inode) => {
                self.release_one(inode);
                true
            }
            None => false,
        }
    }

    /// Cached fds of table `files` that refer to tracked sockets, with their sockets.
    pub fn entries_of(&self, files: Files) -> Vec<(RawFd, Inode)> {
        self.fds
            .range((files, RawFd::MIN)..=(files, RawFd::MAX))
            .map(|(&(_, fd), &inode)| (fd, inode))
            .collect()
    }

    /// Cached fds of table `files` that refer to tracked sockets.
    pub fn fds_of(&self, files: Files) -> Vec<RawFd> {
        self.entries_of(files)
            .into_iter()
            .map(|(fd, _)| fd)
            .collect()
    }

    /// Keeps `inode` alive for a call in flight.
    pub fn pin(&mut self, inode: Inode) {
        if let Some(t) = self.sockets.get_mut(&inode) {
            t.pins += 1;
        }
    }

    /// Ends a pin.
    pub fn unpin(&mut self, inode: Inode) {
        if let Some(t) = self.sockets.get_mut(&inode) {
            t.pins = t.pins.saturating_sub(1);
            if t.is_unheld() {
                self.unheld.push(inode);
            }
        }
    }

    fn release_one(&mut self, inode: Inode) {
        if let Some(t) = self.sockets.get_mut(&inode) {
            t.holders = t.holders.saturating_sub(1);
            if t.is_unheld() {
                self.unheld.push(inode);
            }
        }
    }

    /// Removes a tracked socket, returning it (its copy closes when dropped).
    pub fn untrack(&mut self, inode: Inode) -> Option<Tracked> {
        let tracked = self.sockets.remove(&inode)?;
        if tracked.holders > 0 {
            self.fds.retain(|_, i| *i != inode);
        }
        Some(tracked)
    }

    /// The supervisor's copy of a tracked socket.
    pub fn copy(&self, inode: Inode) -> Option<BorrowedFd<'_>> {
        self.sockets.get(&inode).map(|t| t.copy.as_fd())
    }

    /// Bytes spooled (partial messages) across every tracked connection.
    pub fn spooled_total(&self) -> usize {
        self.sockets
            .values()
            .map(|t| match &t.kind {
                SocketKind::Stream(s) => s.inbound.spooled() + s.outbound.spooled(),
                SocketKind::Listener { .. } => 0,
            })
            .sum()
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

/// What `ctl state` shows of the registry.
impl Table {
    /// The tenant processes whose descriptors hold `inode` (a connection's backend).
    pub fn holder_processes(&self, inode: Inode) -> Vec<libc::pid_t> {
        let mut pids: Vec<libc::pid_t> = self
            .fds
            .iter()
            .filter(|(_, &i)| i == inode)
            .flat_map(|((files, _), _)| self.tenants.processes_using(*files))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Tracked connections each process holds: (tgid, inode) pairs.
    pub fn held_by(&self, tgid: libc::pid_t) -> Vec<Inode> {
        let files = self.tenants.files_of(tgid);
        let mut inodes: Vec<Inode> = self.entries_of(files).into_iter().map(|(_, i)| i).collect();
        inodes.sort_unstable();
        inodes.dedup();
        inodes
    }

    /// Cached (fd table, fd) entries of tracked sockets, and of known non-sockets.
    pub fn cache_sizes(&self) -> (usize, usize) {
        (self.fds.len(), self.not_sockets.len())
    }

    /// Holders and pins of `inode`.
    pub fn holds(&self, inode: Inode) -> Option<(usize, usize)> {
        self.sockets.get(&inode).map(|t| (t.holders, t.pins))
    }
}

/// The tenant's outputs.
impl Table {
    /// Registers the pipe given to the tenant as `which` (by its device and inode).
    pub fn set_output(&mut self, id: (u64, u64), which: OutputFd) {
        self.output_ids.push((id, which));
    }

    /// Whether the fd of the last [`Table::lookup`] was one of the tenant's outputs.
    pub fn found_output(&self) -> Option<OutputFd> {
        self.found_output
    }
}
