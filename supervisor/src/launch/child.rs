//! Code that runs after `fork`, in the init stub and in the tenant before `execve`.
//!
//! Only raw syscalls here: no allocation, no locks, no panics. Everything these
//! functions read was prepared by the parent before the fork ([`super::Prepared`]).

use std::os::fd::RawFd;

use super::handoff::{self, die};
use super::Prepared;

/// The raw ends of the agent's channel, inherited through the forks.
#[derive(Debug, Clone, Copy)]
pub(super) struct AgentFds {
    /// The agent's end.
    pub agent: RawFd,
    /// The supervisor's end (closed in the stub, the tenant and the agent).
    pub supervisor: RawFd,
}

/// PID 1 of the tenant's PID namespace: forks the tenant, forwards the supervisor's
/// signals to it, reaps every orphan, and reports the tenant's wait status over
/// `report`. When it exits (or is killed because the supervisor died), the kernel
/// kills every process left in the namespace: no tenant outlives its supervisor.
pub(super) fn run_init_stub(prep: &Prepared, report: RawFd, agent: Option<AgentFds>) -> ! {
    // SAFETY: (whole block) raw syscalls on integers and on stack buffers that outlive
    // each call; this process is single-threaded (fresh fork of a single-threaded
    // parent), so no lock or allocator state can be inconsistent.
    unsafe {
        // Die with the supervisor. The check after it closes the race where the parent
        // died before the prctl took effect: its end of `report` would then be closed.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut pfd = libc::pollfd {
            fd: report,
            events: 0,
            revents: 0,
        };
        if libc::poll(&mut pfd, 1, 0) > 0 && pfd.revents & libc::POLLHUP != 0 {
            libc::_exit(1);
        }
        // All signals stay blocked in the stub: it handles them with sigwaitinfo.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        // A confined tenant's own System V IPC and POSIX message queues: shared memory
        // segments of other tenants are not even visible. Done here, as root, because
        // unshare(CLONE_NEWIPC) in the supervisor would move the supervisor itself.
        if prep.confined && libc::unshare(libc::CLONE_NEWIPC) != 0 {
            die(b"supervise: init stub: unshare(CLONE_NEWIPC) failed\n", 125);
        }
        if let Some(address) = prep.own_address {
            own_proc();
            own_network(address);
            prefer_tenant_for_oom();
        }

        let tenant = libc::fork();
        if tenant < 0 {
            die(b"supervise: init stub: fork failed\n", 125);
        }
        if tenant == 0 {
            exec_tenant(prep, report, agent);
        }
        // The stub needs only `report` (and stdio, for `die`): whatever else it
        // inherited from the supervisor (a caller's stray descriptors, the Landlock
        // ruleset) is closed, so nothing outlives the launch in PID 1 either. A failure
        // here leaves descriptors open in the stub only, never in the tenant.
        close_all_but(report);
        let mut handed_over = false;
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&all, &mut info);
            if sig < 0 {
                continue;
            }
            if sig == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED);
                    if pid <= 0 {
                        break;
                    }
                    if pid != tenant {
                        continue; // an orphan reparented to us: reaped, nothing else
                    }
                    if libc::WIFSTOPPED(status) {
                        if !handed_over {
                            handed_over = true;
                            send_pidfd(report, tenant);
                        }
                        continue;
                    }
                    let message = handoff::status(status);
                    libc::send(
                        report,
                        message.as_ptr().cast(),
                        message.len(),
                        libc::MSG_NOSIGNAL,
                    );
                    libc::_exit(0);
                }
            } else if info.si_code == libc::SI_USER && info.si_pid() == 0 {
                // Sent by a process outside the namespace (the supervisor forwarding an
                // operator's signal). Terminal-generated signals (SI_KERNEL) already
                // reached the tenant directly through its process group.
                libc::kill(tenant, sig);
            }
        }
    }
}

/// A confined tenant's own mount namespace (mounts made later on the host still reach
/// it: a slave of `/`) with a /proc of its PID namespace, `hidepid=invisible`: other
/// tenants' and the host's processes, their cmdlines, environments and fds do not
/// exist there, nor do the init stub's and the agent's (not ptrace-readable).
/// Raw syscalls, as root, before the tenant is forked.
fn own_proc() {
    // SAFETY: (whole block) NUL-terminated literals and integer flags.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            die(b"supervise: init stub: unshare(CLONE_NEWNS) failed\n", 125);
        }
        let none = std::ptr::null::<libc::c_char>();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            die(
                b"supervise: init stub: making / a slave mount failed\n",
                125,
            );
        }
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            flags,
            c"hidepid=invisible".as_ptr().cast(),
        ) != 0
        {
            die(
                b"supervise: init stub: mounting the tenant's /proc failed\n",
                125,
            );
        }
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
    // SAFETY: a NUL-terminated literal path and a stack buffer alive for the write.
    unsafe {
        let fd = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd >= 0 {
            let value = b"1000";
            libc::write(fd, value.as_ptr().cast(), value.len());
            libc::close(fd);
        }
    }
}

/// A confined tenant's own network namespace, so `/proc/self/net/*` and netlink show
/// it nothing of the host's sockets and interfaces: every IP socket it asks for is
/// created by the supervisor in the host's namespace (see `notify::sockets::create`),
/// so no traffic ever uses this one. `lo` is brought up with the tenant's own address
/// as an alias, which is what `getifaddrs` and `AI_ADDRCONFIG` then see. Raw syscalls,
/// as root, before the tenant is forked; only the unshare is essential.
fn own_network(address: [u8; 4]) {
    // SAFETY: (whole block) integer arguments and stack `ifreq`s alive for each call.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNET) != 0 {
            die(b"supervise: init stub: unshare(CLONE_NEWNET) failed\n", 125);
        }
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return;
        }
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
        let inet = |ip: [u8; 4]| {
            let mut sin: libc::sockaddr_in = std::mem::zeroed();
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(ip);
            std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin)
        };
        let mut alias = named(b"lo:1");
        alias.ifr_ifru.ifru_addr = inet(address);
        if libc::ioctl(s, libc::SIOCSIFADDR, &alias) == 0 {
            alias.ifr_ifru.ifru_netmask = inet([255, 255, 255, 255]);
            libc::ioctl(s, libc::SIOCSIFNETMASK, &alias);
        }
        libc::close(s);
    }
}

/// Closes every descriptor above 2 except `keep`. Raw syscalls only.
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    // SAFETY: close_range takes integers; closing descriptors this process does not
    // use (it uses only `keep` and 0..=2 from here on) cannot invalidate a live object.
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

/// Hands the supervisor a pidfd of the stopped tenant (SCM_RIGHTS).
///
/// # Safety
/// `report` must be a connected unix socket; `tenant` a child of the caller.
unsafe fn send_pidfd(report: RawFd, tenant: libc::pid_t) {
    // SAFETY: integer arguments only.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, tenant, 0) } as RawFd;
    if pidfd < 0 {
        die(b"supervise: init stub: pidfd_open failed\n", 125);
    }
    let mut byte = handoff::pidfd();
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Control buffer for one fd, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr and cmsg point at stack buffers alive for the call; CMSG_* compute
    // offsets inside `control`, which is large enough for one int (checked by CMSG_SPACE).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), pidfd);
        libc::sendmsg(report, &msg, libc::MSG_NOSIGNAL);
        libc::close(pidfd);
    }
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
fn exec_tenant(prep: &Prepared, report: RawFd, agent: Option<AgentFds>) -> ! {
    // SAFETY: (whole block) raw syscalls whose pointer arguments point into `prep`,
    // which the parent built before fork and which stays alive (this process's copy)
    // until execve replaces the image. Single-threaded fresh fork.
    unsafe {
        libc::sigprocmask(
            libc::SIG_SETMASK,
            &prep.tenant_sigmask,
            std::ptr::null_mut(),
        );
        // Rust's runtime ignores SIGPIPE in the supervisor; the tenant gets the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if let Some(ids) = &prep.ids {
            if libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) != 0 {
                die(b"supervise: tenant: setgroups failed\n", 126);
            }
            if libc::setgid(ids.gid) != 0 {
                die(b"supervise: tenant: setgid failed\n", 126);
            }
            if libc::setuid(ids.uid) != 0 {
                die(b"supervise: tenant: setuid failed\n", 126);
            }
        }
        if let Some(dir) = &prep.chdir {
            if libc::chdir(dir.as_ptr()) != 0 {
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
        // performs its unix-socket calls (see `agent`).
        if let Some(fds) = agent {
            super::agent::spawn(fds.agent, fds.supervisor);
            libc::close(fds.agent);
            libc::close(fds.supervisor);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            die(b"supervise: tenant: PR_SET_NO_NEW_PRIVS failed\n", 126);
        }
        if libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
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
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        );
        if listener < 0 {
            die(
                b"supervise: tenant: seccomp(NEW_LISTENER|WAIT_KILLABLE_RECV) failed\n",
                126,
            );
        }
        // The listener fd is O_CLOEXEC (set by the kernel) like every other above 2:
        // the tenant loses it at exec.
        libc::kill(libc::getpid(), libc::SIGSTOP);
        libc::execve(
            prep.path.as_ptr(),
            prep.argv_ptrs.as_ptr(),
            prep.envp_ptrs.as_ptr(),
        );
        die(b"supervise: tenant: execve failed\n", 127);
    }
}
