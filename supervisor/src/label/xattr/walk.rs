//! Walking a tree a tenant writes to, without being redirected out of it.
//!
//! Homes belong to live tenants, so a path-based walk can be redirected: swap a
//! directory for a symlink between our `lstat` and our `setxattr` and root would label a
//! host file with the tenant's label. [`walk`] therefore holds each directory open
//! (`O_DIRECTORY | O_NOFOLLOW`) and reaches its entries as `/proc/self/fd/<dir>/<name>`
//! with the non-following `l*xattr` calls: the kernel resolves `<dir>` to the open
//! directory itself, so `<name>` is the only component a tenant can swap, and it is
//! never followed. This needs `/proc` mounted, which [`walk`] checks.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// An I/O error with the step and path it happened at; the kind is kept so callers can
/// still tell ENOENT (vanished) or EOPNOTSUPP (filesystem without xattrs) apart.
#[derive(Debug, thiserror::Error)]
#[error("{step} {path}")]
struct AtPath {
    step: &'static str,
    path: PathBuf,
    source: io::Error,
}

pub(in crate::label) fn at_path(step: &'static str, path: &Path, source: io::Error) -> io::Error {
    let kind = source.kind();
    let path = path.to_path_buf();
    io::Error::new(kind, AtPath { step, path, source })
}

pub(in crate::label) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        let msg = format!("{}: path contains a NUL byte", path.display());
        io::Error::new(io::ErrorKind::InvalidInput, msg)
    })
}

/// `/proc/self/fd/<dir>/<name>`, or `/proc/self/fd/<dir>/.` for the directory itself: a
/// path the kernel resolves through the open descriptor, never through names above it.
pub(in crate::label) fn via_fd(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name.unwrap_or(OsStr::new(".")));
    path
}

/// Opens directory `name` (relative to `dir`, or to the cwd when `None`) without following
/// a symlink in its last component: ELOOP or ENOTDIR if it is not a real directory.
pub(in crate::label) fn open_dir_at(
    dir: Option<BorrowedFd<'_>>,
    name: &Path,
) -> io::Result<OwnedFd> {
    let c = c_path(name)?;
    let dirfd = dir.unwrap_or(rustix::fs::CWD);
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::openat(
        dirfd,
        c.as_c_str(),
        flags,
        Mode::empty(),
    )?)
}

/// `lstat` of `name` in `dir`, or `fstat` of `dir` itself when `name` is empty.
pub(in crate::label) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Stat> {
    let c = c_path(Path::new(name))?;
    let mut flags = AtFlags::SYMLINK_NOFOLLOW;
    if name.is_empty() {
        flags |= AtFlags::EMPTY_PATH;
    }
    Ok(rustix::fs::statat(dir, c.as_c_str(), flags)?)
}

fn is_dir(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// One file met by [`walk`].
#[derive(Debug)]
pub(in crate::label) struct Visit<'a> {
    /// Where the file is, for messages: the start path joined with the names below it.
    pub path: &'a Path,
    /// How to reach the file without a path a tenant could redirect (module docs).
    pub access: &'a Path,
    pub is_dir: bool,
    pub ino: u64,
}

struct Frame {
    dir: OwnedFd,
    path: PathBuf,
    names: std::vec::IntoIter<OsString>,
}

/// Visits `dir` (open at `path`) and everything below it on device `dev`, each directory
/// before its entries, so a watch added by `visit` sees every entry made after the listing.
/// Symlinks are visited, never followed; other filesystems are skipped. A file vanishing
/// (ENOENT, from the walk or from `visit`) is skipped; any other error ends the walk.
/// Holds one descriptor per level of depth, not per directory.
pub(in crate::label) fn walk(
    dir: OwnedFd,
    path: PathBuf,
    dev: u64,
    visit: &mut dyn FnMut(&Visit<'_>) -> io::Result<()>,
) -> io::Result<()> {
    if !Path::new("/proc/self/fd").is_dir() {
        let msg = "labeling needs /proc mounted (it reaches files through /proc/self/fd)";
        return Err(io::Error::new(io::ErrorKind::Unsupported, msg));
    }
    let st = stat_at(dir.as_fd(), OsStr::new("")).map_err(|e| at_path("inspecting", &path, e))?;
    if st.st_dev != dev {
        return Ok(());
    }
    let mut stack: Vec<Frame> = enter(dir, path, st.st_ino, visit)?.into_iter().collect();
    while let Some(frame) = stack.last_mut() {
        let Some(name) = frame.names.next() else {
            stack.pop();
            continue;
        };
        let path = frame.path.join(&name);
        let st = match stat_at(frame.dir.as_fd(), &name) {
            Ok(st) => st,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(at_path("inspecting", &path, e)),
        };
        if st.st_dev != dev {
            tracing::debug!(target: Kind::Label.target(), path = %path.display(), "not crossing into another filesystem");
            continue;
        }
        if !is_dir(&st) {
            let access = via_fd(frame.dir.as_fd(), Some(&name));
            let (is_dir, ino) = (false, st.st_ino);
            skip_vanished(visit(&Visit {
                path: &path,
                access: &access,
                is_dir,
                ino,
            }))?;
            continue;
        }
        let child = match open_dir_at(Some(frame.dir.as_fd()), Path::new(&name)) {
            Ok(fd) => fd,
            // Gone, or swapped for a symlink or a file since the stat: nothing to descend.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
                ) =>
            {
                continue
            }
            Err(e) => return Err(at_path("opening", &path, e)),
        };
        // The directory opened may not be the one stat saw; only the open one counts.
        let st =
            stat_at(child.as_fd(), OsStr::new("")).map_err(|e| at_path("inspecting", &path, e))?;
        if st.st_dev != dev {
            continue;
        }
        stack.extend(enter(child, path, st.st_ino, visit)?);
    }
    Ok(())
}

/// Visits a directory, then lists it; `None` if it vanished meanwhile.
fn enter(
    dir: OwnedFd,
    path: PathBuf,
    ino: u64,
    visit: &mut dyn FnMut(&Visit<'_>) -> io::Result<()>,
) -> io::Result<Option<Frame>> {
    let access = via_fd(dir.as_fd(), None);
    skip_vanished(visit(&Visit {
        path: &path,
        access: &access,
        is_dir: true,
        ino,
    }))?;
    let list = || -> io::Result<Vec<OsString>> {
        fs::read_dir(&access)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    };
    match list() {
        Ok(names) => Ok(Some(Frame {
            dir,
            path,
            names: names.into_iter(),
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(at_path("reading directory", &path, e)),
    }
}

fn skip_vanished(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
