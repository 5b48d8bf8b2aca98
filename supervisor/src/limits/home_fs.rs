//! A home of bounded size: the tenant's home on its own ext4 filesystem, an image file
//! under the state dir loop-mounted on the home (`[limits] home_size`).
//!
//! # Why an image, not quotas
//!
//! A tenant that fills its own filesystem gets ENOSPC and nobody else notices: other
//! homes and the host's filesystem are different filesystems. Project quotas would
//! need the host filesystem to be ext4 or XFS mounted with `prjquota` — a choice made when
//! the host was installed, not something a supervisor can switch on — and quota limits
//! still share the host's free space. An image needs only what every Linux host has: loop
//! devices, ext4, and e2fsprogs and util-linux for `mkfs.ext4`, `fallocate`, `mount`.
//!
//! # What the operator provides
//!
//! Room under the state dir: the image is `<state dir>/images/<tenant>.ext4`, and its
//! whole size is allocated when it is created and again at each start (`fallocate`), so
//! a tenant filling its home never takes space from the host, even after a trim punched
//! holes in the file. The tools above (a missing one fails the start with its name and
//! package), and a home that is empty when the image is first mounted on it (files there
//! would be hidden; the start refuses instead).
//!
//! # Lifetime
//!
//! The image is created on the first start with `home_size` (`mkfs.ext4 -m 0`: no blocks
//! reserved for root, the tenant gets the whole size), grown when the profile asks for
//! more (`resize2fs`; shrinking is refused with a message), mounted `nosuid,nodev` before
//! the home is labeled, and unmounted when the run ends. A mount left by a crashed run
//! is recognised by its loop device's backing file and reused.

use crate::diag::Kind;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::profile::limits::human;

/// Where tool lookups go when `PATH` lacks the sbin directories (a non-login root shell).
const TOOL_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// A step of putting the home on its own filesystem that failed.
#[derive(Debug, thiserror::Error)]
pub enum HomeFsError {
    /// A tool is not installed.
    #[error("limits.home_size needs `{tool}`, which is not installed (package {package})")]
    ToolMissing {
        /// The program.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// A tool ran and failed.
    #[error("{command} failed: {message}{hint}")]
    Tool {
        /// The command line.
        command: String,
        /// Its stderr (or exit status).
        message: String,
        /// What it may need.
        hint: &'static str,
    },
    /// The home holds files and no image is mounted on it.
    #[error("tenant {tenant:?}: limits.home_size would mount an ext4 image on {home}, which already holds files (they would be hidden); move them out (and into the image once it is mounted) or remove them")]
    NotEmpty {
        /// The tenant.
        tenant: String,
        /// Its home.
        home: PathBuf,
    },
    /// Something else is mounted on the home.
    #[error("tenant {tenant:?}: {home} is a mount point of {source_dev}, not of the tenant's image {image}")]
    ForeignMount {
        /// The tenant.
        tenant: String,
        /// Its home.
        home: PathBuf,
        /// What is mounted there.
        source_dev: String,
        /// The image that should be.
        image: PathBuf,
    },
    /// The image is larger than the profile asks.
    #[error("tenant {tenant:?}: the home image {image} is {actual}, limits.home_size asks for {wanted}: shrinking is not automatic (resize2fs offline, or a new image with the files copied over)")]
    Shrink {
        /// The tenant.
        tenant: String,
        /// The image.
        image: PathBuf,
        /// Its size.
        actual: String,
        /// The profile's.
        wanted: String,
    },
    /// A file operation failed.
    #[error("{step} {path}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HomeFsError + 'a {
    move |source| HomeFsError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

/// Free space and inodes of a home, from `statvfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes the tenant can still write.
    pub available: u64,
    /// Size of the filesystem.
    pub total: u64,
    /// Inodes the tenant can still create.
    pub inodes_available: u64,
}

impl Usage {
    /// Full for practical purposes: the tenant's next writes fail with ENOSPC. ext4 keeps
    /// a few blocks back for its own metadata, so "no byte left" is never seen; less
    /// than 1% (at least 1 MiB) counts as full.
    pub fn is_full(&self) -> bool {
        self.available < (self.total / 100).max(1 << 20) || self.inodes_available == 0
    }

    /// Has room again: twice the fullness threshold, so one event is logged per episode.
    pub fn has_room(&self) -> bool {
        self.available >= 2 * (self.total / 100).max(1 << 20) && self.inodes_available > 0
    }
}

/// A home mounted on its own image; unmounted when dropped (see [`HomeFs::unmount`]).
#[derive(Debug)]
pub struct HomeFs {
    tenant: String,
    home: PathBuf,
    image: PathBuf,
    size: u64,
    mounted: bool,
}

/// The image of `tenant`'s home under `state_dir`.
pub fn image_path(state_dir: &Path, tenant: &str) -> PathBuf {
    state_dir.join("images").join(format!("{tenant}.ext4"))
}

impl HomeFs {
    /// Creates (or grows) the image and mounts it on `home`, which must exist and be
    /// empty unless the image is already mounted there (a crashed run's mount, reused).
    /// The filesystem's root is given to `uid:gid`; labeling is the caller's next step.
    pub fn mount(
        tenant: &str,
        home: &Path,
        size: u64,
        state_dir: &Path,
        owner: (u32, u32),
    ) -> Result<HomeFs, HomeFsError> {
        let image = image_path(state_dir, tenant);
        let mut fs = HomeFs {
            tenant: tenant.to_owned(),
            home: home.to_owned(),
            image,
            size,
            mounted: false,
        };
        if let Some(source) = mounted_on(home) {
            if fs.is_our_loop(&source) {
                tracing::info!(target: Kind::Limits.target(), tenant = %tenant, home = %home.display(), image = %fs.image.display(), "reusing the home image an earlier run left mounted");
                fs.mounted = true;
                fs.reserve()?;
                return Ok(fs);
            }
            return Err(HomeFsError::ForeignMount {
                tenant: tenant.to_owned(),
                home: home.to_owned(),
                source_dev: source,
                image: fs.image.clone(),
            });
        }
        if fs::read_dir(home)
            .map_err(io_err("listing the home", home))?
            .next()
            .is_some()
        {
            return Err(HomeFsError::NotEmpty {
                tenant: tenant.to_owned(),
                home: home.to_owned(),
            });
        }
        fs.create_or_grow(owner)?;
        fs.reserve()?;
        let options = "loop,nosuid,nodev";
        run(
            "mount",
            "util-linux",
            &[
                OsStr::new("-t"),
                OsStr::new("ext4"),
                OsStr::new("-o"),
                OsStr::new(options),
                fs.image.as_os_str(),
                home.as_os_str(),
            ],
            " (the kernel needs loop devices, /dev/loop-control, and ext4)",
        )?;
        fs.mounted = true;
        tracing::info!(target: Kind::Limits.target(), tenant = %tenant, home = %home.display(), image = %fs.image.display(), size = %human(size), "home mounted on its own ext4 image (limits.home_size)");
        Ok(fs)
    }

    /// The mount point.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Free space now; `None` if statvfs fails (the home is being unmounted).
    pub fn usage(&self) -> Option<Usage> {
        let st = rustix::fs::statvfs(&self.home).ok()?;
        Some(Usage {
            available: st.f_bavail.saturating_mul(st.f_frsize),
            total: st.f_blocks.saturating_mul(st.f_frsize),
            inodes_available: st.f_favail,
        })
    }

    /// Unmounts the home (the tenant's processes must be gone: a busy mount is left for
    /// the next start, which reuses it, and logged).
    pub fn unmount(mut self) {
        self.unmount_now();
    }

    fn unmount_now(&mut self) {
        if !self.mounted {
            return;
        }
        self.mounted = false;
        if !mounted_on(&self.home).is_some_and(|s| self.is_our_loop(&s)) {
            return;
        }
        match run("umount", "util-linux", &[self.home.as_os_str()], "") {
            Ok(()) => {
                tracing::info!(target: Kind::Limits.target(), tenant = %self.tenant, home = %self.home.display(), "home image unmounted")
            }
            Err(error) => {
                tracing::warn!(target: Kind::Limits.target(), tenant = %self.tenant, home = %self.home.display(), %error, "home image left mounted; the next start reuses it")
            }
        }
    }

    /// Whether `source` (a mount's source device) is a loop device backed by our image.
    fn is_our_loop(&self, source: &str) -> bool {
        let Some(name) = source.strip_prefix("/dev/") else {
            return false;
        };
        let backing = Path::new("/sys/block").join(name).join("loop/backing_file");
        let Ok(backing) = fs::read_to_string(backing) else {
            return false;
        };
        let image = fs::canonicalize(&self.image).unwrap_or_else(|_| self.image.clone());
        Path::new(backing.trim_end()) == image
    }

    fn create_or_grow(&self, (uid, gid): (u32, u32)) -> Result<(), HomeFsError> {
        let dir = self.image.parent().unwrap_or(Path::new("/"));
        // Root only: an image holds a tenant's files, readable by whoever can read it.
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(dir)
            .map_err(io_err("creating", dir))?;
        let actual = match fs::metadata(&self.image) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("inspecting", &self.image)(e)),
        };
        match actual {
            None => {
                fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&self.image)
                    .map_err(io_err("creating", &self.image))?;
                self.reserve()?;
                let owner = format!("nodiscard,root_owner={uid}:{gid}");
                let label = format!("sv-{}", self.tenant);
                let label: String = label.chars().take(16).collect();
                run(
                    "mkfs.ext4",
                    "e2fsprogs",
                    &[
                        OsStr::new("-q"),
                        OsStr::new("-F"),
                        OsStr::new("-m"),
                        OsStr::new("0"),
                        OsStr::new("-E"),
                        OsStr::new(&owner),
                        OsStr::new("-L"),
                        OsStr::new(&label),
                        self.image.as_os_str(),
                    ],
                    "",
                )
                .inspect_err(|_| {
                    let _ = fs::remove_file(&self.image);
                })?;
                tracing::info!(target: Kind::Limits.target(), tenant = %self.tenant, image = %self.image.display(), size = %human(self.size), "created the home image");
            }
            Some(len) if len < self.size => {
                self.reserve()?;
                let image = self.image.as_os_str();
                run(
                    "e2fsck",
                    "e2fsprogs",
                    &[OsStr::new("-f"), OsStr::new("-p"), image],
                    "",
                )?;
                run("resize2fs", "e2fsprogs", &[image], "")?;
                tracing::info!(target: Kind::Limits.target(), tenant = %self.tenant, image = %self.image.display(), from = %human(len), to = %human(self.size), "grew the home image");
            }
            Some(len) if len > self.size => {
                return Err(HomeFsError::Shrink {
                    tenant: self.tenant.clone(),
                    image: self.image.clone(),
                    actual: human(len),
                    wanted: human(self.size),
                })
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Allocates every block of the image (a no-op when they already are), so the host
    /// filesystem has given the tenant its whole size up front.
    fn reserve(&self) -> Result<(), HomeFsError> {
        run(
            "fallocate",
            "util-linux",
            &[
                OsStr::new("--length"),
                OsStr::new(&self.size.to_string()),
                self.image.as_os_str(),
            ],
            " (the state dir's filesystem must support preallocation and have room for the image)",
        )
    }
}

impl Drop for HomeFs {
    fn drop(&mut self) {
        self.unmount_now();
    }
}

/// The source of the topmost mount on `path` (canonicalized), from /proc/self/mountinfo.
fn mounted_on(path: &Path) -> Option<String> {
    let path = fs::canonicalize(path).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&info, &path)
}

fn parse_mountinfo(info: &str, path: &Path) -> Option<String> {
    info.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mount_point = before.split(' ').nth(4)?;
            let source = after.split(' ').nth(1)?;
            (Path::new(&unescape(mount_point)) == path).then(|| unescape(source))
        })
        .next_back()
}

/// mountinfo's octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `tool` with `args`; a missing tool or a failure is an error naming it.
fn run(
    tool: &'static str,
    package: &'static str,
    args: &[&OsStr],
    hint: &'static str,
) -> Result<(), HomeFsError> {
    let program = find_tool(tool).ok_or(HomeFsError::ToolMissing { tool, package })?;
    let command = std::iter::once(tool.to_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| HomeFsError::Tool {
            command: command.clone(),
            message: e.to_string(),
            hint,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    Err(HomeFsError::Tool {
        command,
        message: if stderr.is_empty() {
            output.status.to_string()
        } else {
            stderr
        },
        hint,
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(TOOL_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_topmost_mount_with_escapes() {
        let info = "24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw\n\
                    45 27 7:0 / /srv/a\\040b rw,nosuid - ext4 /dev/loop0 rw\n\
                    46 45 7:1 / /srv/a\\040b rw,nosuid - ext4 /dev/loop3 rw\n\
                    47 27 7:2 / /srv/c rw - ext4 /dev/loop2 rw\n";
        assert_eq!(
            parse_mountinfo(info, Path::new("/srv/a b")).as_deref(),
            Some("/dev/loop3")
        );
        assert_eq!(parse_mountinfo(info, Path::new("/srv")), None);
        assert_eq!(unescape("a\\134b\\011c"), "a\\b\tc");
        assert_eq!(unescape("plain\\0"), "plain\\0");
    }

    #[test]
    fn a_missing_tool_is_named_with_its_package() {
        let err = run("supervise-no-such-tool", "e2fsprogs", &[], "").unwrap_err();
        assert_eq!(
            err.to_string(),
            "limits.home_size needs `supervise-no-such-tool`, which is not installed (package e2fsprogs)"
        );
        let err = run("false", "coreutils", &[OsStr::new("x")], " (hint)").unwrap_err();
        assert_eq!(err.to_string(), "false x failed: exit status: 1 (hint)");
    }

    #[test]
    fn fullness_has_hysteresis() {
        let total = 1 << 30;
        let at = |available| Usage {
            available,
            total,
            inodes_available: 10,
        };
        assert!(at(0).is_full() && at((total / 100) - 1).is_full());
        assert!(!at(total / 100).is_full() && !at(total / 100).has_room());
        assert!(at(total / 50).has_room());
        let no_inodes = Usage {
            inodes_available: 0,
            ..at(total)
        };
        assert!(no_inodes.is_full() && !no_inodes.has_room());
        // Small homes: at least 1 MiB counts as full.
        let small = Usage {
            available: 900 << 10,
            total: 32 << 20,
            inodes_available: 10,
        };
        assert!(small.is_full());
    }
}
