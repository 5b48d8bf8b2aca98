//! Starting a tenant: validate and prepare everything in the parent, then one linear
//! fork sequence (see [`launch`]).

use crate::diag::Kind;
pub mod agent;
mod child;
pub mod filter;
pub mod handoff;
pub mod landlock;

use std::ffi::{CString, OsString};
use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use rustix::process::{Gid, Uid};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::label::policy::primary_address;
use crate::label::registry::Entry;
use crate::profile::account::account_of;
use crate::profile::env::{self, EnvArg, Identity};
use crate::profile::{Confinement, Ids, Profile};
use crate::sys;

/// A launch step that failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command could not be found or is not executable.
    #[error("command not found or not executable: {0}")]
    CommandNotFound(String),
    /// An argument or environment entry holds a NUL byte.
    #[error("argument or environment entry contains a NUL byte: {0:?}")]
    NulByte(OsString),
    /// The tenant's environment cannot be built as asked (`--env`).
    #[error("{0}")]
    Environment(String),
    /// Creating the handoff socket failed.
    #[error("creating the handoff socket")]
    Socketpair(#[source] io::Error),
    /// The supervisor could not create a PID namespace for the tenant (needs root).
    #[error("creating the tenant's PID namespace (supervise must run as root)")]
    PidNamespace(#[source] io::Error),
    /// fork failed.
    #[error("fork")]
    Fork(#[source] io::Error),
    /// The init stub or tenant died before handing over (its stderr says why).
    #[error("the tenant exited before its filter was installed (see its message above)")]
    EarlyExit,
    /// Receiving the tenant's pidfd failed.
    #[error("receiving the tenant's pidfd")]
    Handoff(#[source] io::Error),
    /// The tenant stopped but its seccomp listener was not found.
    #[error("the tenant's seccomp listener was not found in /proc/{0}/fd")]
    ListenerNotFound(libc::pid_t),
    /// pidfd_getfd on the listener failed.
    #[error("taking the tenant's seccomp listener")]
    TakeListener(#[source] io::Error),
    /// Resuming the stopped tenant failed.
    #[error("resuming the tenant")]
    Resume(#[source] io::Error),
    /// The Landlock ruleset could not be built.
    #[error(transparent)]
    Landlock(#[from] landlock::LandlockError),
    /// The tenant could not confine itself with Landlock (its stderr says so).
    #[error("the tenant did not report its Landlock status")]
    LandlockReport,
}

/// Everything the post-fork code needs, built before fork so the child allocates
/// nothing.
pub(crate) struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    ids: Option<Credentials>,
    filter: Vec<libc::sock_filter>,
    tenant_sigmask: libc::sigset_t,
    chdir: Option<CString>,
    landlock: Option<::landlock::RulesetCreated>,
    /// The rule the tenant adds for its own /proc (see `landlock::Plan::proc_rule`).
    proc_rule: Option<landlock::ProcRule>,
    /// A confined tenant: its own IPC and mount namespaces (with a /proc of its PID
    /// namespace) and an agent for its unix-socket calls.
    confined: bool,
    /// A confined tenant's own address (`.1` of its range): its own network namespace
    /// shows it on `lo`.
    own_address: Option<[u8; 4]>,
    /// What the Landlock rules cover, for the start-up report.
    pub landlock_summary: Option<String>,
    /// Descriptors the tenant gets as its stdout and stderr instead of the
    /// supervisor's (the pipes whose writes are stamped, see `notify::output`).
    pub outputs: [Option<std::os::fd::RawFd>; 2],
}

/// The credentials the tenant switches to, as the post-fork code passes them to the
/// kernel (built before fork: the child cannot allocate the group list).
struct Credentials {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
}

impl From<&Ids> for Credentials {
    fn from(ids: &Ids) -> Credentials {
        // `from_raw_unchecked`: no debug assertion on -1 (the kernel refuses it with
        // EINVAL, as it did through libc).
        Credentials {
            uid: Uid::from_raw_unchecked(ids.uid),
            gid: Gid::from_raw_unchecked(ids.gid),
            groups: ids
                .groups
                .iter()
                .map(|&g| Gid::from_raw_unchecked(g))
                .collect(),
        }
    }
}

/// A confined tenant's registry entry and profile section, for [`Prepared::new`].
#[derive(Debug, Clone, Copy)]
pub struct ConfinedLaunch<'a> {
    /// Its uid, label, home and range.
    pub entry: &'a Entry,
    /// Its profile's confinement.
    pub confinement: &'a Confinement,
}

/// A running tenant, as the notification loop needs it.
#[derive(Debug)]
pub struct Launched {
    /// The init stub (PID 1 of the tenant's namespace), our direct child.
    pub stub_pid: libc::pid_t,
    /// The tenant's pid, as seen by the supervisor.
    pub tenant_pid: libc::pid_t,
    /// The seccomp listener.
    pub listener: OwnedFd,
    /// Our end of the stub's report socket: becomes readable with the tenant's wait
    /// status when it exits.
    pub report: OwnedFd,
    /// What the tenant reported of its Landlock ruleset (confined tenants only).
    pub landlock: Option<landlock::Enforcement>,
    /// The channel to the tenant's agent (confined tenants only; see [`agent`]).
    pub agent: Option<OwnedFd>,
}

impl Prepared {
    /// Resolves the command and builds argv, envp (see [`env`]: a clean environment,
    /// the profile's `tenant.env`, then `cli_env`) and the filter.
    pub(crate) fn new(
        profile: &Profile,
        command: &[OsString],
        cli_env: &[EnvArg],
        tenant_sigmask: libc::sigset_t,
        confined: Option<ConfinedLaunch<'_>>,
    ) -> Result<Prepared, LaunchError> {
        let program = command
            .first()
            .ok_or_else(|| LaunchError::CommandNotFound(String::new()))?;
        let path = resolve_command(Path::new(program))
            .ok_or_else(|| LaunchError::CommandNotFound(program.to_string_lossy().into_owned()))?;
        let cstring =
            |s: &OsString| CString::new(s.as_bytes()).map_err(|_| LaunchError::NulByte(s.clone()));
        let argv = command.iter().map(cstring).collect::<Result<Vec<_>, _>>()?;
        let envp = tenant_environment(profile, cli_env, confined)?
            .into_iter()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                cstring(&kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ptrs = |v: &[CString]| {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let plan = match confined {
            Some(c) => Some(landlock::build(
                &c.entry.home,
                &c.confinement.read_only,
                c.confinement.read_only_explicit,
                &path,
                &c.confinement.net,
            )?),
            None => None,
        };
        let chdir = match confined {
            Some(c) => Some(
                CString::new(c.entry.home.as_os_str().as_bytes())
                    .map_err(|_| LaunchError::NulByte(c.entry.home.clone().into()))?,
            ),
            None => None,
        };
        let ids = match confined {
            Some(c) => Some(Ids {
                uid: c.entry.uid,
                gid: c.entry.gid,
                groups: Vec::new(),
            }),
            None => profile.ids.clone(),
        };
        let landlock_summary = plan.as_ref().map(|p| p.summary.clone());
        let (landlock, proc_rule) = match plan {
            Some(p) => (Some(p.ruleset), p.proc_rule),
            None => (None, None),
        };
        Ok(Prepared {
            chdir,
            landlock,
            proc_rule,
            confined: confined.is_some(),
            own_address: confined.map(|c| primary_address(c.entry).octets()),
            landlock_summary,
            path: CString::new(path.as_os_str().as_bytes())
                .map_err(|_| LaunchError::NulByte(path.into()))?,
            argv_ptrs: ptrs(&argv),
            envp_ptrs: ptrs(&envp),
            _argv: argv,
            _envp: envp,
            ids: ids.as_ref().map(Credentials::from),
            filter: filter::compile_for(confined.is_some()),
            tenant_sigmask,
            outputs: [None, None],
        })
    }
}

/// The tenant's whole environment (never the supervisor's: see [`env`]). Its account
/// gives HOME, USER and LOGNAME: the profile's uid, or the supervisor's own when the
/// profile names none. A confined tenant's HOME is its registry home, and it also finds
/// its name, label and address, so it can listen on its own range
/// (`listen_addresses=$SUPERVISE_ADDRESS`).
fn tenant_environment(
    profile: &Profile,
    cli_env: &[EnvArg],
    confined: Option<ConfinedLaunch<'_>>,
) -> Result<Vec<(OsString, OsString)>, LaunchError> {
    let (identity, fixed) = match confined {
        Some(c) => {
            let e = c.entry;
            let user = account_of(e.uid).map_or_else(|| format!("sv-{}", e.name), |a| a.name);
            let identity = Identity {
                home: e.home.clone(),
                user: Some(user),
            };
            let fixed = [
                ("SUPERVISE_TENANT", e.name.clone()),
                ("SUPERVISE_LABEL", e.label.to_string()),
                ("SUPERVISE_ADDRESS", primary_address(e).to_string()),
                ("SUPERVISE_RANGE", e.address.to_string()),
            ];
            (identity, fixed.map(|(k, v)| (k.to_owned(), v)).to_vec())
        }
        None => {
            let uid = profile
                .ids
                .as_ref()
                .map_or(rustix::process::geteuid().as_raw(), |i| i.uid);
            let identity = match account_of(uid) {
                Some(a) => Identity {
                    home: a.home,
                    user: Some(a.name),
                },
                None => Identity {
                    home: "/".into(),
                    user: None,
                },
            };
            (identity, Vec::new())
        }
    };
    let supervisor: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env::compose(env::Sources {
        identity: &identity,
        supervisor: &supervisor,
        profile: &profile.env,
        cli: cli_env,
        fixed: &fixed,
    })
    .map_err(LaunchError::Environment)
}

/// Finds `program` like `execvp` would, but now, so a typo is reported before fork.
fn resolve_command(program: &Path) -> Option<PathBuf> {
    let executable = |p: &Path| {
        // A path with a NUL byte fails (EINVAL) like any other inaccessible one.
        let ok = rustix::fs::access(p, rustix::fs::Access::EXEC_OK).is_ok() && p.is_file();
        ok.then(|| p.to_owned())
    };
    if program.as_os_str().as_bytes().contains(&b'/') {
        return executable(program);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).find_map(|dir| executable(&dir.join(program)))
}

/// Starts the tenant. The supervisor must be single-threaded here (fork).
///
/// 1. A socketpair for the stub's reports, created first so both children inherit it.
/// 2. `unshare(CLONE_NEWPID)`: our next child is PID 1 of a fresh namespace, so when it
///    dies the kernel kills every tenant process — the "no unsupervised tenant" rule.
/// 3. fork the stub; it forks the tenant, which installs the filter and stops.
/// 4. Receive the tenant's pidfd, take its listener with `pidfd_getfd` (nothing the
///    tenant does can intercept that), optionally ask for synchronous wake-ups, resume
///    it.
pub fn launch(prep: &Prepared, sync_wakeup: bool) -> Result<Launched, LaunchError> {
    let (ours, theirs) = sys::seqpacket_pair().map_err(LaunchError::Socketpair)?;
    let agent = if prep.confined {
        Some(sys::seqpacket_pair().map_err(LaunchError::Socketpair)?)
    } else {
        None
    };
    // Our own namespace, to switch back to after the fork: while pid_for_children
    // differs from our namespace the kernel refuses to create threads (EINVAL).
    let own_ns = std::fs::File::open("/proc/self/ns/pid").map_err(LaunchError::PidNamespace)?;
    // It affects only our future children.
    sys::unshare_namespaces(UnshareFlags::NEWPID)
        .map_err(|e| LaunchError::PidNamespace(e.into()))?;
    // SAFETY: the supervisor is single-threaded at this point (launch runs before the
    // loop starts any thread), so the child may run the allocation-free stub code (it
    // never returns here: `run_init_stub` ends in `_exit` or `execve`). rustix has no
    // safe fork.
    let stub_pid = unsafe { libc::fork() };
    if stub_pid < 0 {
        return Err(LaunchError::Fork(io::Error::last_os_error()));
    }
    if stub_pid == 0 {
        drop(ours);
        let agent = agent.map(|(supervisor, agent)| child::AgentFds { agent, supervisor });
        child::run_init_stub(prep, theirs, agent);
    }
    drop(theirs);
    let agent = agent.map(|(sup, _theirs)| sup);
    // Resets pid_for_children only.
    rustix::thread::move_into_link_name_space(own_ns.as_fd(), Some(LinkNameSpaceType::ProcessID))
        .map_err(|e| LaunchError::PidNamespace(e.into()))?;

    let (tenant_pidfd, landlock) = receive_handoff(&ours)?;
    if prep.landlock.is_some() && landlock.is_none() {
        return Err(LaunchError::LandlockReport);
    }
    let tenant_pid = pid_of_pidfd(&tenant_pidfd).ok_or(LaunchError::EarlyExit)?;
    let listener_fd = find_listener(tenant_pid).ok_or(LaunchError::ListenerNotFound(tenant_pid))?;
    let listener =
        sys::pidfd_getfd(tenant_pidfd.as_fd(), listener_fd).map_err(LaunchError::TakeListener)?;
    if sync_wakeup {
        enable_sync_wakeup(&listener);
    }
    sys::pidfd_send_signal(tenant_pidfd.as_fd(), libc::SIGCONT).map_err(LaunchError::Resume)?;
    Ok(Launched {
        stub_pid,
        tenant_pid,
        listener,
        report: ours,
        landlock,
        agent,
    })
}

/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`: the kernel wakes the supervisor on the
/// tenant's CPU and vice versa. It lowers one connection's round trip, but with several
/// busy tenant processes it drags the single supervisor thread from CPU to CPU: measured
/// here, pgbench -S -c 4 lost ~20% with it, so it is opt-in (`--sync-wakeup`).
fn enable_sync_wakeup(listener: &OwnedFd) {
    const SYNC_WAKE_UP: u64 = 1;
    // SAFETY: a seccomp notify ioctl (rustix has none) on the listener we own;
    // SET_FLAGS takes the flags by value in the argument slot, no pointer.
    let rc = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS as _,
            SYNC_WAKE_UP,
        )
    };
    if rc != 0 {
        tracing::warn!(target: Kind::Supervisor.target(), error = %io::Error::last_os_error(), "SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unavailable; continuing without it");
    }
}

/// Reads the tenant's Landlock report (confined tenants send it before they stop),
/// then the stub's pidfd.
fn receive_handoff(
    sock: &OwnedFd,
) -> Result<(OwnedFd, Option<landlock::Enforcement>), LaunchError> {
    let mut enforcement = None;
    loop {
        match receive_pidfd(sock)? {
            Handoff::Pidfd(fd) => return Ok((fd, enforcement)),
            Handoff::Landlock(status) => {
                enforcement =
                    Some(landlock::Enforcement::decode(status).map_err(LaunchError::Handoff)?)
            }
        }
    }
}

enum Handoff {
    Pidfd(OwnedFd),
    Landlock(u8),
}

/// Waits (bounded) for the next message: the stub's SCM_RIGHTS message carrying the
/// tenant's pidfd, or the tenant's Landlock report.
fn receive_pidfd(sock: &OwnedFd) -> Result<Handoff, LaunchError> {
    let mut pfd = [PollFd::new(sock, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: 30,
        tv_nsec: 0,
    };
    if !matches!(rustix::event::poll(&mut pfd, Some(&timeout)), Ok(n) if n > 0) {
        return Err(LaunchError::Handoff(io::Error::new(
            io::ErrorKind::TimedOut,
            "no handoff from the init stub within 30 s",
        )));
    }
    let mut byte = [0u8; 3];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let received = rustix::net::recvmsg(
        sock,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_or(0, |m| m.bytes.min(byte.len()));
    match handoff::decode(&byte[..received]) {
        Some(handoff::Report::Landlock { status, .. }) => return Ok(Handoff::Landlock(status)),
        Some(handoff::Report::Pidfd) => {}
        _ => return Err(LaunchError::EarlyExit),
    }
    // The first descriptor of the first SCM_RIGHTS message (any others are closed
    // when `control` is dropped).
    let pidfd = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    });
    pidfd
        .map(Handoff::Pidfd)
        .ok_or_else(|| LaunchError::Handoff(io::Error::other("handoff carried no descriptor")))
}

/// The pid (in our namespace) behind a pidfd, from /proc/self/fdinfo.
fn pid_of_pidfd(pidfd: &OwnedFd) -> Option<libc::pid_t> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Pid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|&p| p > 0)
}

/// The fd number of the seccomp listener in the stopped tenant.
fn find_listener(pid: libc::pid_t) -> Option<RawFd> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    dir.flatten().find_map(|entry| {
        let target = std::fs::read_link(entry.path()).ok()?;
        let is_listener = target
            .as_os_str()
            .as_bytes()
            .starts_with(b"anon_inode:seccomp notify");
        is_listener
            .then(|| entry.file_name().to_str()?.parse().ok())
            .flatten()
    })
}
