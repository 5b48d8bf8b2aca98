//! Labels files as a live tenant creates them.
//!
//! [`super::xattr::prepare_home`] labels what exists before the tenant starts; what the
//! tenant creates afterwards is labeled here, from inotify events, on a thread of its own.
//!
//! # What is watched
//!
//! `IN_CREATE` and `IN_MOVED_TO` on every directory of the tree. `IN_ATTRIB` is not: a
//! tenant cannot change or remove a `trusted.*` label, so no attribute change undoes ours,
//! and it would wake us on every chmod, on every utime and on our own `setxattr`.
//!
//! A new (or moved-in) directory gets its watch before it is listed (the walk visits each
//! directory before reading it), so a file made in it is found by the listing if it came
//! before the watch and by an event if it came after. A queue overflow means events were
//! lost: the whole tree is walked again, re-adding watches and labeling.
//!
//! # Resolving an event to a file
//!
//! Events name a watch and an entry. For each watch we keep the directory's path relative
//! to the root and its inode; on an event we reopen it from the root descriptor one
//! `O_NOFOLLOW` component at a time and check the inode, so a directory the tenant moved
//! away or replaced with a symlink is skipped rather than followed. A directory moved
//! within the tree raises its own `IN_MOVED_TO`, whose walk records its new path. This
//! holds three descriptors however large the tree is, not one per directory.
//!
//! # The cap on watches
//!
//! Watches are a kernel resource of the watching user — root, whose
//! `fs.inotify.max_user_watches` every supervisor and root daemon on the node shares — so
//! a tenant must not grow their number by making directories. At most `max_watches`
//! directories of a home are watched (`[limits] home_watches`). A directory met past the
//! cap (or when the kernel refuses a watch with ENOSPC) is labeled like any other but not
//! watched, and recorded as the top of an *unwatched subtree*; its subtree is walked
//! again periodically, labeling what appeared there and watching directories again as
//! watches free up (a watched directory removed). Rescans start every
//! [`MIN_RESCAN_EVERY`] and are spaced to ten times their own duration, so a huge
//! unwatched tree costs at most about a tenth of a core. The cap being hit is logged
//! once. At most [`MAX_UNWATCHED`] subtree tops are remembered; past that the next
//! rescan walks the whole home (which records them again), so memory stays bounded too.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
#[cfg(test)]
use std::os::fd::AsRawFd; // for the tests, which `use super::*`
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::xattr::walk::{at_path, c_path, open_dir_at, stat_at, via_fd, walk, Visit};
use super::xattr::{apply, Outcome};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, WatchFlags};
use rustix::io::Errno;

const WATCH_MASK: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW)
    .union(WatchFlags::EXCL_UNLINK);
const EVENT_HEADER: usize = std::mem::size_of::<libc::inotify_event>();
/// Shortest interval between two rescans of unwatched subtrees.
pub const MIN_RESCAN_EVERY: Duration = Duration::from_secs(2);
/// Unwatched subtree tops remembered before the next rescan walks the whole home.
pub const MAX_UNWATCHED: usize = 4096;

/// The relabeling thread; stopping it (or dropping this) ends and joins the thread.
#[derive(Debug)]
pub struct Relabeler {
    stop: OwnedFd,
    stopping: Arc<AtomicBool>,
    relabeled: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Watches `root` and labels every file that appears below it with `label`, holding at
/// most `max_watches` inotify watches (see the module docs for directories past it).
///
/// Before returning, every existing directory is watched (up to the cap) and the tree
/// labeled once (a no-op after `prepare_home`), so nothing created after `spawn` returns
/// is missed. Errors during that first pass are returned; later ones are logged and
/// skipped.
pub fn spawn(root: PathBuf, label: String, max_watches: u32) -> io::Result<Relabeler> {
    let mut watcher = Watcher::new(root, label)?;
    watcher.max_watches = usize::try_from(max_watches).unwrap_or(usize::MAX).max(1);
    let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let wake = stop.try_clone()?;
    watcher.rescan(true)?;
    let (stopping, relabeled) = (
        Arc::clone(&watcher.stopping),
        Arc::clone(&watcher.relabeled),
    );
    let thread = std::thread::Builder::new()
        .name("relabel".into())
        .spawn(move || watcher.run(wake))?;
    Ok(Relabeler {
        stop,
        stopping,
        relabeled,
        thread: Some(thread),
    })
}

impl Relabeler {
    /// How many files the relabeler gave a label to (none, or another, before), counting
    /// its first pass in [`spawn`].
    pub fn relabeled(&self) -> u64 {
        self.relabeled.load(Ordering::Relaxed)
    }

    /// Ends the thread and waits for it; an overflow rescan in progress is abandoned.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        let written = rustix::io::write(&self.stop, &one);
        if written != Ok(8) {
            // Joining a thread we could not wake would hang; leave it to process exit.
            let error = match written {
                Err(errno) => io::Error::from(errno),
                Ok(_) => io::ErrorKind::WriteZero.into(),
            };
            tracing::warn!(target: Kind::Label.target(), %error, "cannot wake the relabel thread");
            return;
        }
        if thread.join().is_err() {
            tracing::warn!(target: Kind::Label.target(), "the relabel thread panicked");
        }
    }
}

impl Drop for Relabeler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A watched directory: where it was last seen, and which inode it must still be.
#[derive(Debug)]
struct Watched {
    rel: PathBuf,
    ino: u64,
}

/// Why a directory is not watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwatched {
    /// `max_watches` reached.
    Cap,
    /// The kernel refused the watch (ENOSPC: `fs.inotify.max_user_watches`).
    Kernel,
}

#[derive(Debug)]
struct Watcher {
    inotify: OwnedFd,
    root: PathBuf,
    root_fd: OwnedFd,
    dev: u64,
    label: String,
    dirs: HashMap<libc::c_int, Watched>,
    /// Inode → watch, to tell a directory watched already (a re-walk after a rename)
    /// from one that would take a new watch.
    by_ino: HashMap<u64, libc::c_int>,
    max_watches: usize,
    /// Tops of unwatched subtrees: path relative to the root → inode.
    unwatched: HashMap<PathBuf, u64>,
    /// [`MAX_UNWATCHED`] (smaller in tests).
    max_unwatched: usize,
    /// More tops than [`MAX_UNWATCHED`] were met: the next rescan walks everything.
    rescan_all: bool,
    /// During a walk, the unwatched subtree being walked (its directories are not
    /// recorded again: walks are depth-first, each directory before its entries).
    in_unwatched: Option<PathBuf>,
    next_rescan: Option<Instant>,
    rescan_every: Duration,
    /// Whether the cap, and the kernel's refusal, were logged already (once each).
    logged: (bool, bool),
    stopping: Arc<AtomicBool>,
    relabeled: Arc<AtomicU64>,
}

impl Watcher {
    fn new(root: PathBuf, label: String) -> io::Result<Watcher> {
        let inotify =
            inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        let root_fd = open_dir_at(None, &root).map_err(|e| at_path("opening", &root, e))?;
        let dev = stat_at(root_fd.as_fd(), OsStr::new(""))?.st_dev;
        Ok(Watcher {
            inotify,
            root,
            root_fd,
            dev,
            label,
            dirs: HashMap::new(),
            by_ino: HashMap::new(),
            max_watches: usize::MAX,
            unwatched: HashMap::new(),
            max_unwatched: MAX_UNWATCHED,
            rescan_all: false,
            in_unwatched: None,
            next_rescan: None,
            rescan_every: MIN_RESCAN_EVERY,
            logged: (false, false),
            stopping: Arc::default(),
            relabeled: Arc::default(),
        })
    }

    fn run(mut self, stop: OwnedFd) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut fds = [
                PollFd::new(&self.inotify, PollFlags::IN),
                PollFd::new(&stop, PollFlags::IN),
            ];
            // Whole milliseconds, as poll(2) takes them; none: wait for an event.
            let timeout = self.next_rescan.map(|at| {
                let left = at.saturating_duration_since(Instant::now()).as_millis();
                let ms = i64::from(libc::c_int::try_from(left).unwrap_or(libc::c_int::MAX));
                Timespec {
                    tv_sec: ms / 1000,
                    tv_nsec: ms % 1000 * 1_000_000,
                }
            });
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    let error = io::Error::from(errno);
                    tracing::warn!(target: Kind::Label.target(), root = %self.root.display(), %error, "poll failed, relabeling stopped");
                    return;
                }
            }
            let (inotify_ready, stop_ready) =
                (!fds[0].revents().is_empty(), !fds[1].revents().is_empty());
            if stop_ready {
                return;
            }
            if inotify_ready && !self.drain(&mut buf) {
                return;
            }
            if self.next_rescan.is_some_and(|at| Instant::now() >= at) {
                self.rescan_unwatched();
            }
        }
    }

    /// Handles every queued event; false if the inotify descriptor failed.
    fn drain(&mut self, buf: &mut [u8]) -> bool {
        loop {
            let n = match rustix::io::read(&self.inotify, &mut *buf) {
                Ok(n) => n,
                Err(Errno::AGAIN) => return true,
                Err(Errno::INTR) => continue,
                Err(errno) => {
                    let error = io::Error::from(errno);
                    tracing::warn!(target: Kind::Label.target(), root = %self.root.display(), %error, "reading inotify failed, relabeling stopped");
                    return false;
                }
            };
            let mut offset = 0;
            while let Some((event, name, next)) = next_event(&buf[..n], offset) {
                self.handle(&event, name);
                offset = next;
            }
        }
    }

    fn handle(&mut self, event: &libc::inotify_event, name: &OsStr) {
        if event.mask & libc::IN_Q_OVERFLOW != 0 {
            tracing::warn!(target: Kind::Label.target(), root = %self.root.display(), "inotify queue overflowed, relabeling the whole tree");
            if let Err(error) = self.rescan(false) {
                gone_or_warn(&self.root, &error, "relabeling after an overflow");
            }
            return;
        }
        if event.mask & libc::IN_IGNORED != 0 {
            if let Some(gone) = self.dirs.remove(&event.wd) {
                if self.by_ino.get(&gone.ino) == Some(&event.wd) {
                    self.by_ino.remove(&gone.ino);
                }
            }
            return;
        }
        if event.mask & (libc::IN_CREATE | libc::IN_MOVED_TO) == 0 || name.is_empty() {
            return;
        }
        let Some((dir, dir_path)) = self.open_watched(event.wd) else {
            return;
        };
        let path = dir_path.join(name);
        if event.mask & libc::IN_ISDIR != 0 {
            let child = match open_dir_at(Some(dir.as_fd()), Path::new(name)) {
                Ok(child) => child,
                Err(error) => return gone_or_warn(&path, &error, "opening a new directory"),
            };
            self.in_unwatched = None;
            if let Err(error) = walk(child, path.clone(), self.dev, &mut |v| self.visit(v, false)) {
                gone_or_warn(&path, &error, "labeling a new directory");
            }
        } else {
            self.label_new(dir.as_fd(), name, &path);
        }
    }

    fn label_new(&self, dir: BorrowedFd<'_>, name: &OsStr, path: &Path) {
        match apply(&via_fd(dir, Some(name)), &self.label) {
            Ok(outcome) => self.count(outcome),
            Err(error) => gone_or_warn(path, &error, "labeling a new file"),
        }
    }

    /// Reopens a watched directory from the root without following symlinks; `None` if it
    /// moved, vanished or was replaced (see the module docs).
    fn open_watched(&self, wd: libc::c_int) -> Option<(OwnedFd, PathBuf)> {
        let watched = self.dirs.get(&wd)?;
        let path = self.root.join(&watched.rel);
        let dir = self.reopen(&watched.rel, watched.ino, "reopening a watched directory")?;
        Some((dir, path))
    }

    /// Opens `rel` from the root one `O_NOFOLLOW` component at a time; `None` unless it
    /// is still directory `ino` of the home's filesystem.
    fn reopen(&self, rel: &Path, ino: u64, what: &str) -> Option<OwnedFd> {
        let mut dir = open_dir_at(Some(self.root_fd.as_fd()), Path::new("."));
        for component in rel.components() {
            dir = dir.and_then(|d| open_dir_at(Some(d.as_fd()), component.as_ref()));
        }
        let path = self.root.join(rel);
        let dir = dir
            .map_err(|error| gone_or_warn(&path, &error, what))
            .ok()?;
        let st = stat_at(dir.as_fd(), OsStr::new("")).ok()?;
        (st.st_ino == ino && st.st_dev == self.dev).then_some(dir)
    }

    /// Walks the whole tree: watches every directory (up to the cap) and labels every
    /// file. `strict` returns the first error; otherwise errors are logged and the walk
    /// goes on. The unwatched subtrees it meets are recorded afresh.
    fn rescan(&mut self, strict: bool) -> io::Result<()> {
        let root = open_dir_at(Some(self.root_fd.as_fd()), Path::new("."))?;
        let (path, dev) = (self.root.clone(), self.dev);
        self.unwatched.clear();
        self.rescan_all = false;
        self.in_unwatched = None;
        let result = walk(root, path, dev, &mut |v| self.visit(v, strict));
        self.schedule(Duration::ZERO);
        result
    }

    /// Walks the unwatched subtrees again (or the whole home, past [`MAX_UNWATCHED`]):
    /// labels what appeared there, and watches their directories if watches freed up.
    fn rescan_unwatched(&mut self) {
        let started = Instant::now();
        if self.rescan_all {
            if let Err(error) = self.rescan(false) {
                gone_or_warn(&self.root, &error, "rescanning the home");
            }
        } else {
            let tops: Vec<(PathBuf, u64)> = self.unwatched.drain().collect();
            for (rel, ino) in tops {
                if self.stopping.load(Ordering::Relaxed) {
                    return;
                }
                // Gone or moved: a move within the home walked it under its new name.
                let Some(dir) = self.reopen(&rel, ino, "reopening an unwatched directory") else {
                    continue;
                };
                let path = self.root.join(&rel);
                self.in_unwatched = None;
                if let Err(error) = walk(dir, path.clone(), self.dev, &mut |v| self.visit(v, false))
                {
                    gone_or_warn(&path, &error, "rescanning an unwatched directory");
                }
            }
        }
        self.schedule(started.elapsed());
    }

    /// Sets the next rescan, if anything is unwatched: [`MIN_RESCAN_EVERY`] or ten times
    /// the last rescan's duration, whichever is longer.
    fn schedule(&mut self, last_took: Duration) {
        self.rescan_every = MIN_RESCAN_EVERY.max(last_took.saturating_mul(10));
        let pending = self.rescan_all || !self.unwatched.is_empty();
        self.next_rescan = pending.then(|| Instant::now() + self.rescan_every);
    }

    fn visit(&mut self, v: &Visit<'_>, strict: bool) -> io::Result<()> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::Interrupted.into());
        }
        match self.watch_and_label(v) {
            Err(error) if !strict && error.kind() != io::ErrorKind::NotFound => {
                warn(v.path, &error, "cannot watch or label");
                Ok(())
            }
            other => other,
        }
    }

    fn watch_and_label(&mut self, v: &Visit<'_>) -> io::Result<()> {
        if v.is_dir {
            self.watch(v)?;
        }
        let outcome = apply(v.access, &self.label).map_err(|e| at_path("labeling", v.path, e))?;
        self.count(outcome);
        Ok(())
    }

    /// Watches directory `v`, unless it is past the cap (see the module docs).
    fn watch(&mut self, v: &Visit<'_>) -> io::Result<()> {
        match &self.in_unwatched {
            Some(top) if v.path.starts_with(top) => return Ok(()),
            Some(_) => self.in_unwatched = None,
            None => {}
        }
        let rel = v.path.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let rel = rel.to_path_buf();
        if !self.by_ino.contains_key(&v.ino) && self.dirs.len() >= self.max_watches {
            self.leave_unwatched(v, rel, Unwatched::Cap);
            return Ok(());
        }
        let c = c_path(v.access)?;
        let wd = match inotify::add_watch(&self.inotify, c.as_c_str(), WATCH_MASK) {
            Ok(wd) => wd,
            Err(Errno::NOSPC) => {
                self.leave_unwatched(v, rel, Unwatched::Kernel);
                return Ok(());
            }
            Err(errno) => return Err(at_path("watching", v.path, errno.into())),
        };
        if let Some(old) = self.dirs.insert(wd, Watched { rel, ino: v.ino }) {
            if old.ino != v.ino && self.by_ino.get(&old.ino) == Some(&wd) {
                self.by_ino.remove(&old.ino);
            }
        }
        self.by_ino.insert(v.ino, wd);
        Ok(())
    }

    /// Records `v` as the top of an unwatched subtree, to be rescanned; logs the first
    /// time for each cause.
    fn leave_unwatched(&mut self, v: &Visit<'_>, rel: PathBuf, why: Unwatched) {
        self.in_unwatched = Some(v.path.to_path_buf());
        if !self.rescan_all {
            if self.unwatched.len() >= self.max_unwatched {
                self.unwatched.clear();
                self.rescan_all = true;
            } else {
                self.unwatched.insert(rel, v.ino);
            }
        }
        if self.next_rescan.is_none() {
            self.next_rescan = Some(Instant::now() + self.rescan_every);
        }
        let (root, cap) = (self.root.display().to_string(), self.max_watches);
        let every = MIN_RESCAN_EVERY.as_secs();
        match why {
            Unwatched::Cap if !self.logged.0 => {
                self.logged.0 = true;
                tracing::warn!(target: Kind::Label.target(), home = %root, watches = cap, "home watch cap reached: {cap} directories are watched (limits.home_watches); directories past the cap are labeled by rescans every {every} s or more instead of as files appear");
            }
            Unwatched::Kernel if !self.logged.1 => {
                self.logged.1 = true;
                tracing::warn!(target: Kind::Label.target(), home = %root, watches = self.dirs.len(), "the kernel refused an inotify watch (ENOSPC: fs.inotify.max_user_watches, shared by every root process, is reached); directories past it are labeled by rescans every {every} s or more");
            }
            _ => {}
        }
    }

    fn count(&self, outcome: Outcome) {
        if outcome.changed() {
            self.relabeled.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The event at `offset` in `buf`, its name (NUL padding cut) and the next offset; `None`
/// past the end or on a truncated event.
fn next_event(buf: &[u8], offset: usize) -> Option<(libc::inotify_event, &OsStr, usize)> {
    let header = buf.get(offset..offset.checked_add(EVENT_HEADER)?)?;
    // `struct inotify_event`: four 32-bit integers (wd, mask, cookie, len), unaligned here.
    let field = |i: usize| <[u8; 4]>::try_from(&header[i * 4..i * 4 + 4]).expect("4 bytes");
    let event = libc::inotify_event {
        wd: i32::from_ne_bytes(field(0)),
        mask: u32::from_ne_bytes(field(1)),
        cookie: u32::from_ne_bytes(field(2)),
        len: u32::from_ne_bytes(field(3)),
    };
    let start = offset + EVENT_HEADER;
    let end = start.checked_add(usize::try_from(event.len).ok()?)?;
    let name = buf.get(start..end)?;
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
    Some((event, OsStr::from_bytes(name), end))
}

/// Logs `error` unless it says the file is gone (deleted or moved before we got to it).
fn gone_or_warn(path: &Path, error: &io::Error, what: &str) {
    let gone = matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
    ) || error.kind() == io::ErrorKind::NotFound;
    if gone {
        tracing::debug!(target: Kind::Label.target(), path = %path.display(), %error, "{what}: gone");
    } else if error.kind() != io::ErrorKind::Interrupted {
        warn(path, error, what);
    }
}

/// Logs with the whole source chain: `at_path` errors keep the errno in their source.
fn warn(path: &Path, error: &io::Error, what: &str) {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    tracing::warn!(target: Kind::Label.target(), path = %path.display(), error = %chain, "{what}");
}

#[cfg(test)]
mod tests;
