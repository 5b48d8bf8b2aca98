//! Landlock for a confined tenant, built in the parent before fork (opening the path fds
//! and creating the ruleset allocate), enforced by the tenant between setuid and the
//! seccomp filter, and reported the way the `landlock` crate reports it: fully,
//! partially or not enforced, never hidden.
//!
//! Best effort up to the kernel's ABI: filesystem access (rw the home, read and execute
//! the read-only paths, the null devices), TCP, and the signal and abstract-unix-socket
//! scopes.
//!
//! TCP bind and connect are denied to the tenant outright. Every one the tenant asks
//! for is performed by the supervisor on its copy of the socket (Landlock judges the
//! caller, so those run under the supervisor's checks — labels, own range, the
//! profile's port lists — not under this ruleset). What this ruleset stops is a bind or
//! connect the kernel would run for the tenant itself: none should (no such call is
//! CONTINUEd for a confined tenant), so it is the second wall, not the first.

use crate::diag::Kind;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, RestrictionStatus, Ruleset,
    RulesetAttr, RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::label::policy::NetRules;

/// The newest ABI whose features are requested: V6 brings the scopes (V7 adds only
/// audit logging flags). A kernel below it gets a partially enforced ruleset.
const REQUESTED_ABI: ABI = ABI::V6;

/// Devices every program expects to write.
const NULL_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// What building the ruleset failed on; names the path.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// A path could not be opened for its rule.
    #[error("landlock rule for {path}: {message}")]
    Path {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The ruleset itself could not be built.
    #[error("landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// The ruleset and what it asks for (for the start-up report).
#[derive(Debug)]
pub struct Plan {
    /// Consumed by the tenant's `restrict_self` (a `try_clone` in the child).
    pub ruleset: RulesetCreated,
    /// A second descriptor of the same ruleset and the read rights, for the rule the
    /// tenant adds itself on the `/proc` of its own PID namespace (mounted after fork,
    /// so no path opened here can name it). `None` when `/proc` is not read-only.
    pub proc_rule: Option<ProcRule>,
    /// One line: what the rules cover.
    pub summary: String,
}

/// See [`Plan::proc_rule`].
#[derive(Debug)]
pub struct ProcRule {
    ruleset: OwnedFd,
    access: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the uapi header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// In the tenant after fork, in its mount namespace: read rights on its own `/proc`.
/// Raw syscalls only; a failure ends the tenant.
pub(super) fn allow_own_proc(rule: &ProcRule) {
    use rustix::fs::{Mode, OFlags};
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let Ok(proc) = rustix::fs::open(c"/proc", flags, Mode::empty()) else {
        super::handoff::die(b"supervise: tenant: cannot open its /proc\n", 126);
    };
    let attr = PathBeneathAttr {
        allowed_access: rule.access,
        parent_fd: proc.as_raw_fd(),
    };
    // SAFETY: `attr` lives on the stack across the call and the kernel only reads it;
    // the ruleset fd and `proc` are ours and open. rustix has no Landlock calls, and
    // the `landlock` crate's `add_rule` would allocate (it opens the path itself).
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            rule.ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0,
        )
    };
    drop(proc);
    if r != 0 {
        super::handoff::die(
            b"supervise: tenant: landlock rule for its /proc failed\n",
            126,
        );
    }
}

/// Builds the tenant's ruleset. `read_only` paths that do not exist are an error when
/// `explicit` (the profile named them) and skipped otherwise (defaults such as /lib32).
pub fn build(
    home: &Path,
    read_only: &[PathBuf],
    explicit: bool,
    program: &Path,
    net: &NetRules,
) -> Result<Plan, LandlockError> {
    let abi = REQUESTED_ABI;
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .scope(Scope::from_all(abi))?;
    ruleset = ruleset.handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?;
    let mut created = ruleset.create()?;
    created = created.add_rule(beneath(home, AccessFs::from_all(abi))?)?;
    let mut read_count = 0;
    let mut proc_rule = None;
    for path in read_only.iter().map(PathBuf::as_path).chain([program]) {
        if path == Path::new("/proc") {
            // The tenant gets a /proc of its own PID namespace, mounted after fork.
            let ruleset: Option<OwnedFd> = created
                .try_clone()
                .map_err(|e| LandlockError::Path {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
                .into();
            proc_rule = ruleset.map(|ruleset| ProcRule {
                ruleset,
                access: AccessFs::from_read(abi).bits(),
            });
            read_count += 1;
            continue;
        }
        if !explicit && !path.exists() && path != program {
            tracing::debug!(target: Kind::Landlock.target(), path = %path.display(), "default read-only path absent on this host");
            continue;
        }
        created = created.add_rule(beneath(path, AccessFs::from_read(abi))?)?;
        read_count += 1;
    }
    for dev in NULL_DEVICES {
        created = created.add_rule(beneath(Path::new(dev), AccessFs::from_file(abi))?)?;
    }
    // No NetPort rule: see the module doc.
    let ports = |p: &Option<Vec<u16>>| match p {
        None => "any".to_string(),
        Some(list) => format!("{list:?}"),
    };
    Ok(Plan {
        ruleset: created,
        proc_rule,
        summary: format!(
            "rw {}, ro {read_count} paths, no direct tcp bind/connect (the supervisor performs bind {} connect {}), scoped signals and abstract unix sockets",
            home.display(),
            ports(&net.tcp_bind),
            ports(&net.tcp_connect)
        ),
    })
}

/// A path rule; a non-directory only gets the rights that apply to files (the kernel
/// rejects directory rights on a file).
fn beneath(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, LandlockError> {
    let fd = PathFd::new(path).map_err(|e| LandlockError::Path {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(REQUESTED_ABI)
    };
    Ok(PathBeneath::new(fd, access))
}

/// In the tenant after fork: restricts itself and reports over `report`. No allocation
/// (the crate's `restrict_self` makes two syscalls and fills a plain struct); a failure
/// ends the tenant, so it never runs with less confinement than reported.
pub(super) fn restrict_in_child(plan: &RulesetCreated, report: BorrowedFd<'_>) {
    let status = plan
        .try_clone()
        .map_err(|_| ())
        .and_then(|r| r.restrict_self().map_err(|_| ()));
    let message = match status {
        Ok(RestrictionStatus {
            ruleset,
            no_new_privs,
            ..
        }) => super::handoff::landlock(encode(&ruleset), no_new_privs),
        Err(()) => super::handoff::landlock(255, false),
    };
    let _ = rustix::net::send(report, &message, rustix::net::SendFlags::NOSIGNAL);
    if message[1] == 255 {
        super::handoff::die(b"supervise: tenant: landlock_restrict_self failed\n", 126);
    }
}

fn encode(status: &RulesetStatus) -> u8 {
    match status {
        RulesetStatus::NotEnforced => 0,
        RulesetStatus::PartiallyEnforced => 1,
        RulesetStatus::FullyEnforced => 2,
    }
}

/// The status a tenant reported, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcement {
    /// Every requested restriction is in force.
    Full,
    /// The kernel's ABI is older than requested: some are.
    Partial,
    /// Landlock is unavailable: none are.
    None,
}

impl Enforcement {
    /// Decodes the status byte of a tenant's report.
    pub fn decode(byte: u8) -> io::Result<Enforcement> {
        match byte {
            0 => Ok(Enforcement::None),
            1 => Ok(Enforcement::Partial),
            2 => Ok(Enforcement::Full),
            _ => Err(io::Error::other(
                "tenant reported an unknown landlock status",
            )),
        }
    }
}

impl std::fmt::Display for Enforcement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Enforcement::Full => "fully enforced",
            Enforcement::Partial => {
                "partially enforced (the kernel's Landlock ABI is older than V6)"
            }
            Enforcement::None => "not enforced (Landlock is unavailable in this kernel)",
        })
    }
}
