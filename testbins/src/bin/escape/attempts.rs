//! The syscall attempts, in the order documented in main.rs.

use crate::{close_fd, in_child, report, wait_child};
use libc::syscall;
use std::ffi::c_long;

pub fn all() {
    let null = std::ptr::null::<u8>();
    let mut params = [0u8; 120];
    // SAFETY: params is a live, zeroed io_uring_params-sized buffer.
    let r = unsafe { syscall(libc::SYS_io_uring_setup, 8, params.as_mut_ptr()) };
    close_fd(report("io_uring_setup", r));

    // Linux AIO: an aio_context_t the kernel fills in on success.
    let mut ctx: u64 = 0;
    // SAFETY: ctx is a live, zeroed aio_context_t (u64), as io_setup requires.
    let r = unsafe { syscall(libc::SYS_io_setup, 8, &mut ctx as *mut u64) };
    if report("io_setup", r).is_some() {
        // SAFETY: ctx is the context io_setup just created; it is not used again.
        unsafe { syscall(libc::SYS_io_destroy, ctx) };
    }
    tcp_zerocopy_receive();

    // One instruction: BPF_RET|BPF_K SECCOMP_RET_ALLOW.
    let filter = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    }];
    let prog = libc::sock_fprog {
        len: 1,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prog points to a live one-instruction filter that allows everything.
    let r = unsafe { syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) };
    report("seccomp_filter", r);
    in_child("seccomp_strict", || {
        // SAFETY: strict mode takes no pointers; on success the child only
        // write(2)s and exit(2)s (see in_child).
        unsafe { syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_STRICT, 0, 0) }
    });
    in_child("prctl_seccomp_strict", || {
        // SAFETY: as above; prctl takes only integers here.
        unsafe { libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_STRICT) as c_long }
    });
    in_child("ptrace_traceme", || {
        // SAFETY: PTRACE_TRACEME ignores the other arguments; the child exits right after.
        unsafe { libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) }
    });

    // SAFETY: getppid/getpid have no preconditions.
    let (ppid, me) = unsafe { (libc::getppid(), libc::getpid()) };
    // SAFETY: PTRACE_ATTACH takes no pointers.
    let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, ppid, null, null) };
    if report("ptrace_attach", r).is_some() {
        wait_child(ppid);
        // SAFETY: ppid is our stopped tracee; data 0 suppresses the attach SIGSTOP.
        unsafe { libc::ptrace(libc::PTRACE_DETACH, ppid, null, null) };
    }

    let maps = std::fs::read_to_string(format!("/proc/{ppid}/maps")).unwrap_or_default();
    let first = maps
        .split('-')
        .next()
        .and_then(|a| usize::from_str_radix(a, 16).ok());
    let (mut a, b) = ([0u8; 8], [7u8; 8]);
    let local = libc::iovec {
        iov_base: a.as_mut_ptr().cast(),
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: first.unwrap_or(0x1000) as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: local describes our live buffer `a`; the remote side is checked by the kernel.
    let r = unsafe { libc::process_vm_readv(ppid, &local, 1, &remote, 1, 0) };
    report("process_vm_readv", r as c_long);
    let src = libc::iovec {
        iov_base: b.as_ptr().cast_mut().cast(),
        iov_len: 8,
    };
    // SAFETY: src reads our live `b`; local (the "remote" side, own pid) is our live `a`.
    let r = unsafe { libc::process_vm_writev(me, &src, 1, &local, 1, 0) };
    report("process_vm_writev", r as c_long);

    // SAFETY: pidfd_open takes only integers.
    let pidfd = report("pidfd_open", unsafe {
        syscall(libc::SYS_pidfd_open, ppid, 0)
    });
    // SAFETY: pidfd_getfd takes only integers.
    let r = unsafe { syscall(libc::SYS_pidfd_getfd, pidfd.unwrap_or(-1), 0, 0) };
    close_fd(report("pidfd_getfd", r));
    close_fd(pidfd);

    let attr = [0u8; 128];
    // SAFETY: attr is a live zeroed buffer of the size passed (5 = BPF_PROG_LOAD).
    close_fd(report("bpf_prog_load", unsafe {
        syscall(libc::SYS_bpf, 5, attr.as_ptr(), 128)
    }));
    let (none, mnt, tmpfs) = (c"none".as_ptr(), c"/mnt".as_ptr(), c"tmpfs".as_ptr());
    // SAFETY: all strings are NUL-terminated literals; data is NULL.
    let r = unsafe { libc::mount(none, mnt, tmpfs, 0, std::ptr::null()) };
    if report("mount_tmpfs", r as c_long).is_some() {
        // SAFETY: NUL-terminated literal path.
        unsafe { libc::umount2(mnt, libc::MNT_DETACH) };
    }
    // SAFETY: NULL segments with 0 count; the invalid flag makes the call a no-op.
    report("kexec_load", unsafe {
        syscall(libc::SYS_kexec_load, 0, 0, null, 0x8000)
    });
    // SAFETY: NULL image of length 0; params is a NUL-terminated literal.
    report("init_module", unsafe {
        syscall(libc::SYS_init_module, null, 0, c"".as_ptr())
    });
    // SAFETY: fd -1 is never valid; params is a NUL-terminated literal.
    report("finit_module", unsafe {
        syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0)
    });
    in_child("unshare_newuser", || {
        // SAFETY: unshare takes only a flag; it runs in a throwaway child.
        unsafe { libc::unshare(libc::CLONE_NEWUSER) as c_long }
    });

    // struct clone_args, CLONE_ARGS_SIZE_VER0 = 64 bytes; only exit_signal set.
    let mut cargs = [0u64; 8];
    cargs[4] = libc::SIGCHLD as u64;
    // SAFETY: cargs is a live 64-byte clone_args; with no stack given the child runs
    // on a copy of our stack like fork(2) and immediately _exit(0)s.
    let r = unsafe { syscall(libc::SYS_clone3, cargs.as_mut_ptr(), 64) };
    if r == 0 {
        // SAFETY: _exit(2) ends the clone3 child at once.
        unsafe { libc::_exit(0) };
    }
    if report("clone3", r).is_some() {
        wait_child(r as libc::pid_t);
    }
    let flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    // SAFETY: userfaultfd takes only flags.
    close_fd(report("userfaultfd", unsafe {
        syscall(libc::SYS_userfaultfd, flags)
    }));

    // struct perf_event_attr (128 bytes): type PERF_TYPE_SOFTWARE, size 128,
    // config PERF_COUNT_SW_DUMMY, flags disabled|exclude_kernel|exclude_hv.
    let mut pattr = [0u64; 16];
    pattr[0] = 1 | (128 << 32);
    pattr[1] = 9;
    pattr[5] = 1 | (1 << 5) | (1 << 6);
    // SAFETY: pattr is a live 128-byte perf_event_attr; 8 = PERF_FLAG_FD_CLOEXEC.
    let r = unsafe { syscall(libc::SYS_perf_event_open, pattr.as_ptr(), 0, -1, -1, 8) };
    close_fd(report("perf_event_open", r));
}

/// getsockopt(IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE) on a fresh (unconnected) TCP socket
/// with a zeroed 64-byte struct tcp_zerocopy_receive.
fn tcp_zerocopy_receive() {
    const TCP_ZEROCOPY_RECEIVE: libc::c_int = 35;
    // SAFETY: socket takes only integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        let e = testbins::errno_name(testbins::errno());
        return testbins::say(&format!("tcp_zerocopy_receive socket-failed errno={e}"));
    }
    let mut zc = [0u8; 64];
    let mut len = zc.len() as libc::socklen_t;
    let (level, p) = (libc::IPPROTO_TCP, zc.as_mut_ptr().cast());
    // SAFETY: zc is a live, writable 64-byte buffer and len holds its size.
    let r = unsafe { libc::getsockopt(fd, level, TCP_ZEROCOPY_RECEIVE, p, &mut len) };
    report("tcp_zerocopy_receive", r as c_long);
    close_fd(Some(fd as c_long));
}
