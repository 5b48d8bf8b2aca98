//! Code that runs after `fork`, in the init stub and in the tenant before `execve`.
//!
//! Only raw syscalls here: no allocation, no locks, no panics. Everything these
//! functions read was prepared by the parent before the fork ([`super::Prepared`]).

use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, MountPropagationFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::handoff::{self, die};
use super::Prepared;
use crate::sys::{block_all_signals, cloexec_from, exit_now, unshare_namespaces};

/// The ends of the agent's channel, inherited through the forks.
#[derive(Debug)]
pub(super) struct AgentFds {
    /// The agent's end.
    pub agent: OwnedFd,
    /// The supervisor's end (closed in the stub, the tenant and the agent).
    pub supervisor: OwnedFd,
}

/// PID 1 of the tenant's PID namespace: forks the tenant, forwards the supervisor's
/// signals to it, reaps every orphan, and reports the tenant's wait status over
/// `report`. When it exits (or is killed because the supervisor died), the kernel
/// kills every process left in the namespace: no tenant outlives its supervisor.
///
/// This process is single-threaded (a fresh fork of a single-threaded parent), so no
/// lock or allocator state can be inconsistent; still, everything here is a raw
/// syscall (rustix's or libc's) on integers and stack buffers: no allocation.
pub(super) fn run_init_stub(prep: &Prepared, report: OwnedFd, agent: Option<AgentFds>) -> ! {
    // Die with the supervisor. The check after it closes the race where the parent
    // died before the prctl took effect: its end of `report` would then be closed.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    let mut pfd = [PollFd::new(&report, PollFlags::empty())];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if matches!(rustix::event::poll(&mut pfd, Some(&now)), Ok(n) if n > 0)
        && pfd[0].revents().contains(PollFlags::HUP)
    {
        exit_now(1);
    }
    // All signals stay blocked in the stub: it handles them with sigwaitinfo.
    let all = block_all_signals();
    // A confined tenant's own System V IPC and POSIX message queues: shared memory
    // segments of other tenants are not even visible. Done here, as root, because
    // unshare(CLONE_NEWIPC) in the supervisor would move the supervisor itself.
    if prep.confined && unshare_namespaces(UnshareFlags::NEWIPC).is_err() {
        die(b"supervise: init stub: unshare(CLONE_NEWIPC) failed\n", 125);
    }
    if let Some(address) = prep.own_address {
        own_proc();
        own_network(address);
        prefer_tenant_for_oom();
    }

    // SAFETY: this process is single-threaded (see above), so the child may go on
    // without exec; it runs only `exec_tenant`, raw syscalls on data prepared before
    // the first fork. rustix has no safe fork.
    let tenant = unsafe { libc::fork() };
    if tenant < 0 {
        die(b"supervise: init stub: fork failed\n", 125);
    }
    if tenant == 0 {
        exec_tenant(prep, report.as_fd(), agent);
    }
    let Some(tenant) = Pid::from_raw(tenant) else {
        die(b"supervise: init stub: fork failed\n", 125); // unreachable: tenant > 0
    };
    // The stub needs only `report` (and stdio, for `die`): whatever else it
    // inherited from the supervisor (a caller's stray descriptors, the Landlock
    // ruleset, the agent's channel) is closed, so nothing outlives the launch in PID 1
    // either. A failure here leaves descriptors open in the stub only, never in the
    // tenant. (The agent's channel is closed by dropping it, just before the rest.)
    drop(agent);
    close_all_but(report.as_raw_fd());
    let mut handed_over = false;
    loop {
        // SAFETY: `all` is an initialised set and `info` a writable, zeroed siginfo_t on
        // the stack, alive across the call; `si_pid` is read only when si_code is
        // SI_USER, for which the kernel fills that union member. rustix has no
        // sigwaitinfo.
        let (sig, from_outside) = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            (sig, info.si_code == libc::SI_USER && info.si_pid() == 0)
        };
        if sig < 0 {
            continue;
        }
        if sig == libc::SIGCHLD {
            while let Ok(Some((pid, status))) =
                rustix::process::wait(WaitOptions::NOHANG | WaitOptions::UNTRACED)
            {
                if pid != tenant {
                    continue; // an orphan reparented to us: reaped, nothing else
                }
                if status.stopped() {
                    if !handed_over {
                        handed_over = true;
                        send_pidfd(report.as_fd(), tenant);
                    }
                    continue;
                }
                let message = handoff::status(status.as_raw());
                let _ = rustix::net::send(&report, &message, SendFlags::NOSIGNAL);
                exit_now(0);
            }
        } else if from_outside {
            // Sent by a process outside the namespace (the supervisor forwarding an
            // operator's signal). Terminal-generated signals (SI_KERNEL) already
            // reached the tenant directly through its process group.
            // SAFETY: kill takes integers. libc's, because rustix's `Signal` cannot
            // carry the real-time signals an operator may send.
            unsafe { libc::kill(tenant.as_raw_pid(), sig) };
        }
    }
}

/// A confined tenant's own mount namespace (mounts made later on the host still reach
/// it: a slave of `/`) with a /proc of its PID namespace, `hidepid=invisible`: other
/// tenants' and the host's processes, their cmdlines, environments and fds do not
/// exist there, nor do the init stub's and the agent's (not ptrace-readable).
/// Raw syscalls (NUL-terminated literals, no allocation), as root, before the tenant
/// is forked.
fn own_proc() {
    if unshare_namespaces(UnshareFlags::NEWNS).is_err() {
        die(b"supervise: init stub: unshare(CLONE_NEWNS) failed\n", 125);
    }
    let slave = MountPropagationFlags::REC | MountPropagationFlags::DOWNSTREAM;
    if rustix::mount::mount_change(c"/", slave).is_err() {
        die(
            b"supervise: init stub: making / a slave mount failed\n",
            125,
        );
    }
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if rustix::mount::mount(c"proc", c"/proc", c"proc", flags, c"hidepid=invisible").is_err() {
        die(
            b"supervise: init stub: mounting the tenant's /proc failed\n",
            125,
        );
    }
}

/// A confined tenant shares its memory cgroup with its supervisor (see `limits`): at
/// the limit the OOM killer should take the tenant's processes, which made the memory
/// grow, before the supervisor, whose spools can be the larger (1000: always first;
/// 500 still let a 60 MiB supervisor outrank a small tenant at a 64 MiB limit).
/// Raising `oom_score_adj` needs no privilege (lowering the supervisor's would need
/// CAP_SYS_RESOURCE, which these hosts do not grant), and every tenant process
/// inherits it from the stub. On the host as a whole this makes tenant processes the
/// OOM killer's first choice too, before host services. Best effort.
fn prefer_tenant_for_oom() {
    let flags = OFlags::WRONLY | OFlags::CLOEXEC;
    if let Ok(fd) = rustix::fs::open(c"/proc/self/oom_score_adj", flags, Mode::empty()) {
        let _ = rustix::io::write(&fd, b"1000");
    }
}

/// A confined tenant's own network namespace, so `/proc/self/net/*` and netlink show
/// it nothing of the host's sockets and interfaces: every IP socket it asks for is
/// created by the supervisor in the host's namespace (see `notify::sockets::create`),
/// so no traffic ever uses this one. `lo` is brought up with the tenant's own address
/// as an alias, which is what `getifaddrs` and `AI_ADDRCONFIG` then see. Raw syscalls,
/// as root, before the tenant is forked; only the unshare is essential.
fn own_network(address: [u8; 4]) {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    if unshare_namespaces(UnshareFlags::NEWNET).is_err() {
        die(b"supervise: init stub: unshare(CLONE_NEWNET) failed\n", 125);
    }
    let Ok(sock) = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    ) else {
        return;
    };
    let s = sock.as_raw_fd(); // `sock` closes it when this function returns
                              // A `sockaddr_in` (port 0) in the generic `sockaddr` the ifreq union holds.
    let inet = |ip: [u8; 4]| {
        let mut sa_data = [0 as libc::c_char; 14];
        for (i, b) in ip.iter().enumerate() {
            sa_data[2 + i] = *b as libc::c_char;
        }
        libc::sockaddr {
            sa_family: libc::AF_INET as libc::sa_family_t,
            sa_data,
        }
    };
    // SAFETY: (whole block) all-zero is a valid `ifreq` (plain data); each ioctl gets
    // an integer socket we own and a pointer to a stack `ifreq` alive for the call,
    // of the type the request expects; `ifru_flags` is read after SIOCGIFFLAGS filled
    // it. rustix has no wrappers for these interface ioctls.
    unsafe {
        let named = |name: &[u8]| {
            let mut req: libc::ifreq = std::mem::zeroed();
            for (i, b) in name.iter().enumerate() {
                req.ifr_name[i] = *b as libc::c_char;
            }
            req
        };
        let mut lo = named(b"lo");
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut lo) == 0 {
            lo.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(s, libc::SIOCSIFFLAGS, &lo);
        }
        let mut alias = named(b"lo:1");
        alias.ifr_ifru.ifru_addr = inet(address);
        if libc::ioctl(s, libc::SIOCSIFADDR, &alias) == 0 {
            alias.ifr_ifru.ifru_netmask = inet([255, 255, 255, 255]);
            libc::ioctl(s, libc::SIOCSIFNETMASK, &alias);
        }
    }
}

/// Closes every descriptor above 2 except `keep`. Raw syscalls only.
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range takes integers. Closing descriptors breaks no object of this
    // process: it uses only `keep` and 0..=2 from here on (the `OwnedFd`s it still
    // holds in `prep` are never used or dropped: the stub only ever `_exit`s). rustix
    // has no close_range.
    unsafe {
        if keep > 3 {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                keep - 1,
                0 as libc::c_uint,
            );
        }
        libc::syscall(
            libc::SYS_close_range,
            keep.max(2) + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
}

/// Hands the supervisor a pidfd of the stopped tenant (SCM_RIGHTS). `report` is a
/// connected unix socket; `tenant` a child of the caller. No allocation: the control
/// buffer is on the stack.
fn send_pidfd(report: BorrowedFd<'_>, tenant: Pid) {
    let Ok(pidfd) = rustix::process::pidfd_open(tenant, PidfdFlags::empty()) else {
        die(b"supervise: init stub: pidfd_open failed\n", 125);
    };
    let byte = handoff::pidfd();
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [pidfd.as_fd()];
    control.push(SendAncillaryMessage::ScmRights(&fds));
    let _ = rustix::net::sendmsg(
        report,
        &[IoSlice::new(&byte)],
        &mut control,
        SendFlags::NOSIGNAL,
    );
}

/// The tenant, between fork and exec: drop credentials, forbid new privileges, install
/// the filter (which creates the listener), stop so the supervisor can take the
/// listener, then exec. Every step's order matters:
/// - credentials before the filter, so setuid & co. are not trapped;
/// - no_new_privs before seccomp, which requires it for an unprivileged caller and keeps
///   a setuid binary from regaining what was dropped;
/// - every descriptor above 2 close-on-exec before the filter (`close_range` is a
///   notified call once the filter is in, and nobody would answer it yet): the report
///   socket, the Landlock ruleset and the listener stay usable until `execve`, which
///   closes them and anything the supervisor's own caller left open, so the tenant
///   starts with stdin, stdout and stderr only, as under firecracker's jailer;
/// - the stop after the filter, because from the filter on every notified syscall waits
///   for a supervisor that does not have the listener yet: `kill` and the stop are not
///   notified, `execve` is, and only runs once the supervisor holds the listener.
///
/// Credentials are set with the raw per-thread syscalls (`setgroups`, `setgid`,
/// `setuid`): this process has exactly one thread (a fresh fork of the single-threaded
/// stub), so they change the whole process, as libc's process-wide versions would.
fn exec_tenant(prep: &Prepared, report: BorrowedFd<'_>, agent: Option<AgentFds>) -> ! {
    // SAFETY: `tenant_sigmask` is an initialised set in `prep` (this process's copy,
    // alive until execve), only read; no old mask wanted. Resetting SIGPIPE to SIG_DFL
    // installs no handler. rustix has no sigprocmask or signal.
    unsafe {
        libc::sigprocmask(
            libc::SIG_SETMASK,
            &prep.tenant_sigmask,
            std::ptr::null_mut(),
        );
        // Rust's runtime ignores SIGPIPE in the supervisor; the tenant gets the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // The stamped outputs replace stdout/stderr first, so every later message of this
    // process (a failed step's die()) is stamped like the tenant's own.
    for (target, source) in [(1, prep.outputs[0]), (2, prep.outputs[1])] {
        if let Some(source) = source {
            // SAFETY: dup2 takes two integers; `source` is a descriptor this process
            // inherited from the supervisor (open until execve), `target` a standard one.
            if unsafe { libc::dup2(source, target) } < 0 {
                die(b"supervise: tenant: dup2 of an output pipe failed\n", 126);
            }
        }
    }
    if let Some(ids) = &prep.ids {
        if rustix::thread::set_thread_groups(&ids.groups).is_err() {
            die(b"supervise: tenant: setgroups failed\n", 126);
        }
        if rustix::thread::set_thread_gid(ids.gid).is_err() {
            die(b"supervise: tenant: setgid failed\n", 126);
        }
        if rustix::thread::set_thread_uid(ids.uid).is_err() {
            die(b"supervise: tenant: setuid failed\n", 126);
        }
    }
    if let Some(dir) = &prep.chdir {
        if rustix::process::chdir(dir.as_c_str()).is_err() {
            die(b"supervise: tenant: chdir to its home failed\n", 126);
        }
    }
    // After the credentials (the ruleset confines the tenant's uid, not root's
    // setup), before the filter (landlock_restrict_self is not notified anyway).
    if let Some(rule) = &prep.proc_rule {
        super::landlock::allow_own_proc(rule);
    }
    if let Some(ruleset) = &prep.landlock {
        super::landlock::restrict_in_child(ruleset, report);
    }
    // In the tenant's domain and namespaces, before its filter: the agent that
    // performs its unix-socket calls (see `agent`). `spawn` closes the tenant's ends
    // of the channel once the agent is forked.
    if let Some(fds) = agent {
        // SAFETY: this process is single-threaded (a fresh fork, see above).
        unsafe { super::agent::spawn(fds.agent, fds.supervisor) };
    }
    if rustix::thread::set_no_new_privs(true).is_err() {
        die(b"supervise: tenant: PR_SET_NO_NEW_PRIVS failed\n", 126);
    }
    if cloexec_from(3).is_err() {
        die(
            b"supervise: tenant: close_range(3, ~0, CLOSE_RANGE_CLOEXEC) failed\n",
            126,
        );
    }
    let prog = libc::sock_fprog {
        len: prep.filter.len() as u16,
        filter: prep.filter.as_ptr() as *mut libc::sock_filter,
    };
    let flags =
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    // SAFETY: `prog` lives on the stack across the call and points at `prep.filter`
    // (this process's copy, alive until execve), `len` instructions long; the kernel
    // only reads it. rustix has no seccomp.
    let listener = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if listener < 0 {
        die(
            b"supervise: tenant: seccomp(NEW_LISTENER|WAIT_KILLABLE_RECV) failed\n",
            126,
        );
    }
    // The listener fd is O_CLOEXEC (set by the kernel) like every other above 2:
    // the tenant loses it at exec.
    let _ = rustix::process::kill_process(rustix::process::getpid(), Signal::STOP);
    // SAFETY: path, argv and envp point into `prep` (this process's copy, alive until
    // execve replaces the image): a NUL-terminated path and two null-terminated arrays
    // of pointers to NUL-terminated strings the parent built before fork. rustix has
    // no execve outside its experimental runtime.
    unsafe {
        libc::execve(
            prep.path.as_ptr(),
            prep.argv_ptrs.as_ptr(),
            prep.envp_ptrs.as_ptr(),
        );
    }
    die(b"supervise: tenant: execve failed\n", 127);
}
