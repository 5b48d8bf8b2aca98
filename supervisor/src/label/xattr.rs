//! Tenant labels on files, kept in the `trusted.*` xattr namespace.
//!
//! Only CAP_SYS_ADMIN can read or write `trusted.*`, so a tenant can neither forge the
//! label on its files nor learn it; the supervisor is the only reader and writer.
//!
//! Trees are walked through open directory descriptors ([`walk`]), because a live tenant
//! can swap any directory of its home for a symlink while we walk.

// Production code here has no `unsafe`; the tests (a submodule, so under this lint too)
// have one `unshare`, so the forbid applies outside test builds and `deny` within.
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

use std::ffi::{CStr, OsStr};
use std::fmt;
use std::fs::{self, File, Permissions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{lgetxattr, lsetxattr, XattrFlags};
use rustix::io::Errno;

use self::walk::{at_path, c_path, open_dir_at, stat_at, walk};

/// The xattr holding a file's label, e.g. `s0:c0,c2`.
#[cfg_attr(not(test), allow(dead_code))]
pub const LABEL_XATTR: &str = "trusted.supervise.label";
const LABEL_XATTR_C: &CStr = c"trusted.supervise.label";
/// The kernel's limit on one xattr value (`XATTR_SIZE_MAX`).
const XATTR_SIZE_MAX: usize = 65_536;

/// What [`label_tree`] did, file by file.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TreeCount {
    /// Had no label and got one.
    pub labeled: u64,
    /// Already carried the label; left alone.
    pub already_correct: u64,
    /// Carried another label, which was replaced.
    pub relabeled: u64,
}

impl TreeCount {
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn total(&self) -> u64 {
        self.labeled + self.already_correct + self.relabeled
    }

    fn record(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Labeled => self.labeled += 1,
            Outcome::AlreadyCorrect => self.already_correct += 1,
            Outcome::Relabeled => self.relabeled += 1,
        }
    }
}

impl fmt::Display for TreeCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} labeled, {} relabeled, {} already correct",
            self.labeled, self.relabeled, self.already_correct
        )
    }
}

/// What [`apply`] did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Labeled,
    AlreadyCorrect,
    Relabeled,
}

impl Outcome {
    /// Whether the file's xattr was written.
    pub(super) fn changed(self) -> bool {
        self != Outcome::AlreadyCorrect
    }
}

/// Labels `path` itself; a symlink gets the label, its target does not.
pub fn set_label(path: &Path, label: &str) -> io::Result<()> {
    let c = c_path(path)?;
    let value = label.as_bytes();
    Ok(lsetxattr(
        c.as_c_str(),
        LABEL_XATTR_C,
        value,
        XattrFlags::empty(),
    )?)
}

/// The label of `path` itself (a symlink's own, not its target's); `None` if it has none.
#[cfg_attr(not(test), allow(dead_code))]
pub fn get_label(path: &Path) -> io::Result<Option<String>> {
    let Some(raw) = get_raw(path)? else {
        return Ok(None);
    };
    String::from_utf8(raw).map(Some).map_err(|_| {
        let msg = format!("{}: {LABEL_XATTR} is not UTF-8", path.display());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    })
}

/// The label's raw bytes, so an audit can still show a corrupt value.
pub(super) fn get_raw(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let c = c_path(path)?;
    // Labels are ~15 bytes; the retry below handles anything longer.
    let mut buf = vec![0u8; 64];
    loop {
        match lgetxattr(c.as_c_str(), LABEL_XATTR_C, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(Errno::RANGE) if buf.len() < XATTR_SIZE_MAX => buf.resize(XATTR_SIZE_MAX, 0),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Gives `path` the label unless it already carries it (no write, no inotify event).
pub(super) fn apply(path: &Path, label: &str) -> io::Result<Outcome> {
    let outcome = match get_raw(path)? {
        Some(found) if found == label.as_bytes() => return Ok(Outcome::AlreadyCorrect),
        Some(_) => Outcome::Relabeled,
        None => Outcome::Labeled,
    };
    set_label(path, label)?;
    Ok(outcome)
}

/// Labels `root` and everything below it on the same filesystem, without following
/// symlinks (a symlink gets the label itself). Files vanishing meanwhile are skipped.
#[cfg_attr(not(test), allow(dead_code))]
pub fn label_tree(root: &Path, label: &str) -> io::Result<TreeCount> {
    let meta = fs::symlink_metadata(root).map_err(|e| at_path("inspecting", root, e))?;
    if !meta.is_dir() {
        let mut count = TreeCount::default();
        count.record(apply(root, label).map_err(|e| at_path("labeling", root, e))?);
        return Ok(count);
    }
    let dir = open_dir_at(None, root).map_err(|e| at_path("opening", root, e))?;
    label_tree_fd(dir, root.to_path_buf(), label)
}

fn label_tree_fd(dir: OwnedFd, path: PathBuf, label: &str) -> io::Result<TreeCount> {
    let dev = stat_at(dir.as_fd(), OsStr::new(""))
        .map_err(|e| at_path("inspecting", &path, e))?
        .st_dev;
    let mut count = TreeCount::default();
    walk(dir, path, dev, &mut |v| {
        count.record(apply(v.access, label).map_err(|e| at_path("labeling", v.path, e))?);
        Ok(())
    })?;
    Ok(count)
}

/// Why [`prepare_home`] refused or failed; each names the path and the step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    #[error("home {path}: must be an absolute path without `..`")]
    NotAbsolute { path: PathBuf },
    #[error("home {path}: refusing a system directory as a tenant home")]
    SystemPath { path: PathBuf },
    #[error("home {path}: is a symlink, refusing to follow it")]
    Symlink { path: PathBuf },
    #[error("home {path}: exists and is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("home {home}: creating {path}")]
    Create {
        home: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    #[error("home {path}: opening")]
    Open { path: PathBuf, source: io::Error },
    #[error("home {path}: changing owner to {uid}:{gid}")]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        source: io::Error,
    },
    #[error("home {path}: changing mode to 0700")]
    Chmod { path: PathBuf, source: io::Error },
    #[error("home {path}: labeling with {label}")]
    Label {
        path: PathBuf,
        label: String,
        source: io::Error,
    },
}

/// Directories that are never a tenant home themselves.
const SYSTEM_DIRS: &str = "/ /home /media /mnt /opt /root /run /srv /tmp /var /var/lib /var/log \
                           /var/run /var/tmp /usr/local";
/// Trees no tenant home belongs in at any depth: the OS and kernel interfaces.
const SYSTEM_TREES: &str = "/bin /boot /dev /etc /lib /lib32 /lib64 /proc /sbin /sys /usr";

fn is_system_path(path: &Path) -> bool {
    SYSTEM_DIRS.split_whitespace().any(|d| path == Path::new(d))
        || SYSTEM_TREES.split_whitespace().any(|t| path.starts_with(t))
}

/// Makes `home` ready for its tenant: missing parents created root-owned 0755, the home
/// itself owned by `uid:gid` with mode 0700, and the whole tree labeled. The contents keep
/// their owners: a file root left there stays root's.
pub fn prepare_home(home: &Path, uid: u32, gid: u32, label: &str) -> Result<TreeCount, HomeError> {
    let path = || home.to_path_buf();
    let plain = home
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !home.is_absolute() || !plain {
        return Err(HomeError::NotAbsolute { path: path() });
    }
    if is_system_path(home) {
        return Err(HomeError::SystemPath { path: path() });
    }
    // Checked again through symlinked parents: `/srv/t -> /` must not make `/srv/t/etc`.
    if let (Some(parent), Some(name)) = (home.parent(), home.file_name()) {
        if resolved(parent).is_some_and(|p| is_system_path(&p.join(name))) {
            return Err(HomeError::SystemPath { path: path() });
        }
    }
    create_parents(home)?;
    match fs::DirBuilder::new().mode(0o700).create(home) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(HomeError::Create {
                home: path(),
                path: path(),
                source: e,
            })
        }
        _ => {}
    }
    // Opened without following, and every later step goes through this descriptor.
    // With O_DIRECTORY the kernel reports a symlink as ENOTDIR, not ELOOP: ask lstat.
    let dir = open_dir_at(None, home).map_err(|source| match source.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR)
            if fs::symlink_metadata(home).is_ok_and(|m| m.is_symlink()) =>
        {
            HomeError::Symlink { path: path() }
        }
        Some(libc::ENOTDIR) => HomeError::NotDirectory { path: path() },
        _ => HomeError::Open {
            path: path(),
            source,
        },
    })?;
    std::os::unix::fs::fchown(&dir, Some(uid), Some(gid)).map_err(|source| HomeError::Chown {
        path: path(),
        uid,
        gid,
        source,
    })?;
    // After chown, which may clear mode bits: the mode ends exactly 0700.
    let dir = File::from(dir);
    dir.set_permissions(Permissions::from_mode(0o700))
        .map_err(|source| HomeError::Chmod {
            path: path(),
            source,
        })?;
    label_tree_fd(dir.into(), path(), label).map_err(|source| HomeError::Label {
        path: path(),
        label: label.to_string(),
        source,
    })
}

/// `path` with its existing part canonicalized: where it would really be created.
fn resolved(path: &Path) -> Option<PathBuf> {
    let existing = path.ancestors().find(|p| fs::symlink_metadata(p).is_ok())?;
    let rest = path.strip_prefix(existing).ok()?;
    Some(fs::canonicalize(existing).ok()?.join(rest))
}

/// Creates the missing ancestors of `home`, root-owned 0755 whatever the umask or a setgid
/// grandparent says: tenants must reach their homes but never rename or replace them.
fn create_parents(home: &Path) -> Result<(), HomeError> {
    let missing = |p: &&Path| matches!(fs::symlink_metadata(p), Err(ref e) if e.kind() == io::ErrorKind::NotFound);
    let Some(parent) = home.parent() else {
        return Ok(());
    };
    let to_create: Vec<&Path> = parent.ancestors().take_while(missing).collect();
    for dir in to_create.into_iter().rev() {
        let err = |source| HomeError::Create {
            home: home.to_path_buf(),
            path: dir.to_path_buf(),
            source,
        };
        match fs::DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => {}
            // Made by someone else meanwhile: theirs to own.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(err(e)),
        }
        std::os::unix::fs::lchown(dir, Some(0), Some(0)).map_err(err)?;
        fs::set_permissions(dir, Permissions::from_mode(0o755)).map_err(err)?;
    }
    Ok(())
}

pub(super) mod walk;

#[cfg(test)]
pub(super) mod tests;
