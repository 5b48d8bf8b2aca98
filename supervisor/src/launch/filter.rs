//! The tenant's seccomp program: compiled here (pure, unit-tested), installed by the
//! launch child with one raw `seccomp(2)` call.
//!
//! Three outcomes per syscall: the ones the supervisor services return
//! `SECCOMP_RET_USER_NOTIF`; the ones that would let a tenant escape the supervisor
//! return an errno; everything else is allowed. Only x86_64 is accepted: a tenant using
//! the i386 (`int 0x80`) or x32 entry points would reach the same kernel services under
//! other numbers, so a foreign arch kills the process and x32 numbers get `ENOSYS`.

#![forbid(unsafe_code)]

use libc::sock_filter;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Offsets into `struct seccomp_data`.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg_low(i: u32) -> u32 {
    16 + 8 * i
}

/// Syscalls the supervisor services: socket I/O (it may own the bytes), the calls that
/// create tracked sockets, and the ones that change what an fd number refers to (so the
/// supervisor's fd cache stays exact).
pub const NOTIFIED: &[(libc::c_long, &str)] = &[
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    // With offset -1 these are readv/writev on the file position, sockets included.
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_recvmmsg, "recvmmsg"),
    (libc::SYS_sendmmsg, "sendmmsg"),
    (libc::SYS_sendfile, "sendfile"),
    (libc::SYS_splice, "splice"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_connect, "connect"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_shutdown, "shutdown"),
    (libc::SYS_close, "close"),
    (libc::SYS_close_range, "close_range"),
    (libc::SYS_dup2, "dup2"),
    (libc::SYS_dup3, "dup3"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    // A new process inherits its parent's fds: the supervisor learns it and what it
    // holds from the fork, instead of scanning /proc when a socket might be released.
    // (`clone` is notified below, after its namespace-flag check.)
    (libc::SYS_fork, "fork"),
    (libc::SYS_vfork, "vfork"),
    (libc::SYS_dup, "dup"),
];

/// Notified after an argument check: `clone` when it creates a process (not a thread,
/// and never a namespace), `fcntl` only for F_DUPFD / F_DUPFD_CLOEXEC (the other
/// commands stay free), and for a confined tenant `socket` of an IP family and
/// `inotify_add_watch` (Landlock does not judge watches: its agent does).
pub const NOTIFIED_CONDITIONALLY: &[(libc::c_long, &str)] = &[
    (libc::SYS_clone, "clone"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_socket, "socket"),
    (libc::SYS_inotify_add_watch, "inotify_add_watch"),
];

/// Syscalls that would let a tenant escape or blind the supervisor, with the errno the
/// tenant gets. `clone3` gets ENOSYS so libc falls back to `clone`, whose flags the
/// filter can inspect.
pub const DENIED: &[(libc::c_long, i32, &str)] = &[
    (libc::SYS_io_uring_setup, libc::EPERM, "io_uring_setup"),
    // Linux AIO can read and write sockets (IOCB_CMD_PREAD/PWRITE) around the spool.
    (libc::SYS_io_setup, libc::EPERM, "io_setup"),
    (libc::SYS_io_uring_enter, libc::EPERM, "io_uring_enter"),
    (
        libc::SYS_io_uring_register,
        libc::EPERM,
        "io_uring_register",
    ),
    (libc::SYS_seccomp, libc::EPERM, "seccomp"),
    (libc::SYS_ptrace, libc::EPERM, "ptrace"),
    (libc::SYS_process_vm_readv, libc::EPERM, "process_vm_readv"),
    (
        libc::SYS_process_vm_writev,
        libc::EPERM,
        "process_vm_writev",
    ),
    (libc::SYS_pidfd_getfd, libc::EPERM, "pidfd_getfd"),
    (libc::SYS_bpf, libc::EPERM, "bpf"),
    (libc::SYS_perf_event_open, libc::EPERM, "perf_event_open"),
    (libc::SYS_userfaultfd, libc::EPERM, "userfaultfd"),
    (libc::SYS_mount, libc::EPERM, "mount"),
    (libc::SYS_umount2, libc::EPERM, "umount2"),
    (libc::SYS_pivot_root, libc::EPERM, "pivot_root"),
    (libc::SYS_fsopen, libc::EPERM, "fsopen"),
    (libc::SYS_fsmount, libc::EPERM, "fsmount"),
    (libc::SYS_fsconfig, libc::EPERM, "fsconfig"),
    (libc::SYS_move_mount, libc::EPERM, "move_mount"),
    (libc::SYS_open_tree, libc::EPERM, "open_tree"),
    (libc::SYS_mount_setattr, libc::EPERM, "mount_setattr"),
    (
        libc::SYS_open_by_handle_at,
        libc::EPERM,
        "open_by_handle_at",
    ),
    (libc::SYS_kexec_load, libc::EPERM, "kexec_load"),
    (libc::SYS_kexec_file_load, libc::EPERM, "kexec_file_load"),
    (libc::SYS_init_module, libc::EPERM, "init_module"),
    (libc::SYS_finit_module, libc::EPERM, "finit_module"),
    (libc::SYS_delete_module, libc::EPERM, "delete_module"),
    (libc::SYS_unshare, libc::EPERM, "unshare"),
    (libc::SYS_setns, libc::EPERM, "setns"),
    (libc::SYS_keyctl, libc::EPERM, "keyctl"),
    (libc::SYS_add_key, libc::EPERM, "add_key"),
    (libc::SYS_request_key, libc::EPERM, "request_key"),
    (libc::SYS_reboot, libc::EPERM, "reboot"),
    (libc::SYS_swapon, libc::EPERM, "swapon"),
    (libc::SYS_swapoff, libc::EPERM, "swapoff"),
    (libc::SYS_iopl, libc::EPERM, "iopl"),
    (libc::SYS_ioperm, libc::EPERM, "ioperm"),
    (libc::SYS_clone3, libc::ENOSYS, "clone3"),
];

const TCP_ZEROCOPY_RECEIVE: u32 = 35;

/// `clone` flags that create namespaces: a tenant may not leave its namespaces.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// One instruction of a block assembled with labels ([`assemble`]).
enum Ins {
    Op(sock_filter),
    /// A conditional jump to labels; `None` falls through.
    Jump {
        code: u16,
        k: u32,
        jt: Option<u8>,
        jf: Option<u8>,
    },
    /// Marks the position of a label (emits nothing).
    Label(u8),
}

fn jump_to(code: u16, k: u32, jt: Option<u8>, jf: Option<u8>) -> Ins {
    Ins::Jump { code, k, jt, jf }
}

/// Resolves a block's labels into classic BPF's forward offsets. Panics on a backward
/// or missing label: a programming error caught by the unit tests.
fn assemble(block: &[Ins]) -> Vec<sock_filter> {
    let mut at = std::collections::HashMap::new();
    let mut pos = 0usize;
    for ins in block {
        match ins {
            Ins::Label(l) => {
                at.insert(*l, pos);
            }
            _ => pos += 1,
        }
    }
    let mut out = Vec::with_capacity(pos);
    for ins in block {
        let here = out.len();
        let offset = |label: Option<u8>| -> u8 {
            label.map_or(0, |l| {
                let target = at[&l];
                assert!(target > here, "backward jump to label {l}");
                u8::try_from(target - here - 1).expect("jump too far")
            })
        };
        match ins {
            Ins::Op(op) => out.push(*op),
            Ins::Jump { code, k, jt, jf } => out.push(jump(*code, *k, offset(*jt), offset(*jf))),
            Ins::Label(_) => {}
        }
    }
    out
}

fn ret_errno(errno: i32) -> sock_filter {
    stmt(
        BPF_RET_K,
        libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA),
    )
}

/// Compiles the tenant's filter. Pure: the result is installed by the launch child.
#[cfg(test)]
pub fn compile() -> Vec<sock_filter> {
    compile_for(false)
}

/// As [`compile`]; a `confined` tenant may only create unix, netlink and IP sockets,
/// and no SCTP ones: their associations are made by setsockopt and sendmsg, around
/// the connect and bind the supervisor checks (and AF_VSOCK & co. reach services no
/// label covers).
pub fn compile_for(confined: bool) -> Vec<sock_filter> {
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JGE_K, X32_SYSCALL_BIT, 0, 1),
        ret_errno(libc::ENOSYS),
    ];
    prog.extend(refuse_private_fd_tables());
    if confined {
        prog.extend(refuse_fast_open());
    }
    for &(nr, _) in NOTIFIED {
        prog.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        prog.push(stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF));
    }
    for &(nr, errno, _) in DENIED {
        prog.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        prog.push(ret_errno(errno));
    }
    // prctl(PR_SET_SECCOMP, …) would install a filter: deny (mode changes only tighten,
    // but a strict-mode switch would kill the tenant on its next notified call).
    prog.extend([
        jump(BPF_JEQ_K, libc::SYS_prctl as u32, 0, 3),
        stmt(BPF_LD_W_ABS, off_arg_low(0)),
        jump(BPF_JEQ_K, libc::PR_SET_SECCOMP as u32, 0, 1),
        ret_errno(libc::EPERM),
        // The accumulator may hold an argument now; reload the number for the next test.
        stmt(BPF_LD_W_ABS, OFF_NR),
        // getsockopt(fd, IPPROTO_TCP, TCP_ZEROCOPY_RECEIVE) maps received payload into
        // memory, a read that never passes through recv.
        jump(BPF_JEQ_K, libc::SYS_getsockopt as u32, 0, 6),
        stmt(BPF_LD_W_ABS, off_arg_low(1)),
        jump(BPF_JEQ_K, libc::IPPROTO_TCP as u32, 0, 3),
        stmt(BPF_LD_W_ABS, off_arg_low(2)),
        jump(BPF_JEQ_K, TCP_ZEROCOPY_RECEIVE, 0, 1),
        ret_errno(libc::EPERM),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 8),
        stmt(BPF_LD_W_ABS, off_arg_low(0)),
        jump(BPF_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1),
        ret_errno(libc::EPERM),
        // A thread joins a known process (learned at its first notified call) and
        // shares its fd table; a thread with a private table (no CLONE_FILES, which no
        // libc asks for) is refused, so the fd cache never needs a table per thread. A
        // new process is notified so the supervisor learns what it inherits.
        jump(BPF_JSET_K, libc::CLONE_THREAD as u32, 0, 3),
        jump(BPF_JSET_K, libc::CLONE_FILES as u32, 0, 1),
        stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW),
        ret_errno(libc::EPERM),
        stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF),
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JEQ_K, libc::SYS_fcntl as u32, 0, 4),
        stmt(BPF_LD_W_ABS, off_arg_low(1)),
        jump(BPF_JEQ_K, libc::F_DUPFD as u32, 1, 0),
        jump(BPF_JEQ_K, libc::F_DUPFD_CLOEXEC as u32, 0, 1),
        stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF),
    ]);
    if confined {
        prog.extend(confined_sockets());
        prog.extend(confined_socket_options());
        prog.extend(confined_watches());
    }
    prog.push(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW));
    prog
}

/// `close_range(…, CLOSE_RANGE_UNSHARE)` gives the calling thread a private fd table,
/// which the fd cache (one table per process) would not see: refused (EPERM), as a
/// thread created without CLONE_FILES is.
fn refuse_private_fd_tables() -> Vec<sock_filter> {
    const CLOSE_RANGE_UNSHARE: u32 = 1 << 1;
    assemble(&[
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
        jump_to(BPF_JEQ_K, libc::SYS_close_range as u32, None, Some(0)),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
        jump_to(BPF_JSET_K, CLOSE_RANGE_UNSHARE, None, Some(0)),
        Ins::Op(ret_errno(libc::EPERM)),
        Ins::Label(0),
        // Every block leaves the syscall number in the accumulator.
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
    ])
}

/// MSG_FASTOPEN makes a send an implicit connect the supervisor would not see as one:
/// refused from the flags register, before any notification.
fn refuse_fast_open() -> Vec<sock_filter> {
    let mut block = Vec::new();
    for (nr, flags_arg) in [
        (libc::SYS_sendto, 3),
        (libc::SYS_sendmsg, 2),
        (libc::SYS_sendmmsg, 3),
    ] {
        block.extend([
            Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
            jump_to(BPF_JEQ_K, nr as u32, None, Some(0)),
            Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(flags_arg))),
            jump_to(BPF_JSET_K, libc::MSG_FASTOPEN as u32, None, Some(0)),
            Ins::Op(ret_errno(libc::EOPNOTSUPP)),
            Ins::Label(0),
            // Every block leaves the syscall number in the accumulator.
            Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
        ]);
    }
    // Each triple's label 0 is its own end: assemble per triple (six instructions).
    block.chunks(7).flat_map(assemble).collect()
}

/// A confined tenant may create unix, IP and NETLINK_ROUTE sockets only: no SCTP (its
/// associations are made by setsockopt and sendmsg, around the checked connect and
/// bind), no NETLINK_SOCK_DIAG (it lists every socket on the host with its uid) nor
/// other netlink families, no AF_VSOCK & co. (they reach services no label covers).
/// IP sockets are created by the supervisor, in the host's network namespace (the
/// tenant lives in its own): notified.
fn confined_sockets() -> Vec<sock_filter> {
    const END: u8 = 0;
    const IP: u8 = 1;
    const NETLINK: u8 = 2;
    const REFUSE: u8 = 3;
    const ALLOW: u8 = 4;
    const NOTIFY: u8 = 5;
    assemble(&[
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
        jump_to(BPF_JEQ_K, libc::SYS_socket as u32, None, Some(END)),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(0))),
        jump_to(BPF_JEQ_K, libc::AF_INET as u32, Some(IP), None),
        jump_to(BPF_JEQ_K, libc::AF_INET6 as u32, Some(IP), None),
        jump_to(BPF_JEQ_K, libc::AF_UNIX as u32, Some(ALLOW), None),
        jump_to(BPF_JEQ_K, libc::AF_NETLINK as u32, Some(NETLINK), None),
        Ins::Op(ret_errno(libc::EAFNOSUPPORT)),
        Ins::Label(IP),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
        jump_to(
            BPF_JEQ_K,
            libc::IPPROTO_SCTP as u32,
            Some(REFUSE),
            Some(NOTIFY),
        ),
        Ins::Label(NETLINK),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
        jump_to(
            BPF_JEQ_K,
            libc::NETLINK_ROUTE as u32,
            Some(ALLOW),
            Some(REFUSE),
        ),
        Ins::Label(REFUSE),
        Ins::Op(ret_errno(libc::EPROTONOSUPPORT)),
        Ins::Label(ALLOW),
        Ins::Op(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW)),
        Ins::Label(NOTIFY),
        Ins::Op(stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF)),
        Ins::Label(END),
        // Every block leaves the syscall number in the accumulator.
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
    ])
}

/// A confined tenant's inotify watches are judged by its agent (notified); fanotify,
/// whose marks Landlock does not judge either, is refused (EPERM).
fn confined_watches() -> Vec<sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, OFF_NR),
        jump(BPF_JEQ_K, libc::SYS_inotify_add_watch as u32, 0, 1),
        stmt(BPF_RET_K, libc::SECCOMP_RET_USER_NOTIF),
        jump(BPF_JEQ_K, libc::SYS_fanotify_init as u32, 0, 1),
        ret_errno(libc::EPERM),
    ]
}

const TCP_FASTOPEN_CONNECT: u32 = 30;
const IPV6_2292PKTINFO: u32 = 2;
const IPV6_2292RTHDR: u32 = 5;

/// Socket options that would choose a confined tenant's peer or source address around
/// the supervisor's checks: TCP_FASTOPEN_CONNECT (the connect happens at the first
/// write), IP options (source routing, recorded routes) and IPv6 routing headers, and
/// a sticky IPV6_PKTINFO (a source address for every later send). EPERM.
fn confined_socket_options() -> Vec<sock_filter> {
    const END: u8 = 0;
    const TCP: u8 = 1;
    const IP: u8 = 2;
    const IPV6: u8 = 3;
    const REFUSE: u8 = 4;
    let refused_ip = [libc::IP_OPTIONS as u32, libc::IP_RETOPTS as u32];
    let refused_ipv6 = [
        libc::IPV6_PKTINFO as u32,
        IPV6_2292PKTINFO,
        libc::IPV6_RTHDR as u32,
        IPV6_2292RTHDR,
    ];
    let mut block = vec![
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
        jump_to(BPF_JEQ_K, libc::SYS_setsockopt as u32, None, Some(END)),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(1))),
        jump_to(BPF_JEQ_K, libc::IPPROTO_TCP as u32, Some(TCP), None),
        jump_to(BPF_JEQ_K, libc::IPPROTO_IP as u32, Some(IP), None),
        jump_to(BPF_JEQ_K, libc::IPPROTO_IPV6 as u32, Some(IPV6), Some(END)),
        Ins::Label(TCP),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
        jump_to(BPF_JEQ_K, TCP_FASTOPEN_CONNECT, Some(REFUSE), Some(END)),
        Ins::Label(IP),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
    ];
    block.extend(
        refused_ip
            .iter()
            .map(|&opt| jump_to(BPF_JEQ_K, opt, Some(REFUSE), None)),
    );
    block.extend([
        Ins::Op(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW)),
        Ins::Label(IPV6),
        Ins::Op(stmt(BPF_LD_W_ABS, off_arg_low(2))),
    ]);
    block.extend(
        refused_ipv6
            .iter()
            .map(|&opt| jump_to(BPF_JEQ_K, opt, Some(REFUSE), None)),
    );
    block.extend([
        Ins::Op(stmt(BPF_RET_K, libc::SECCOMP_RET_ALLOW)),
        Ins::Label(REFUSE),
        Ins::Op(ret_errno(libc::EPERM)),
        Ins::Label(END),
        // Every block leaves the syscall number in the accumulator.
        Ins::Op(stmt(BPF_LD_W_ABS, OFF_NR)),
    ]);
    assemble(&block)
}

/// The name of a notified syscall number, for logs.
pub fn notified_name(nr: i32) -> &'static str {
    NOTIFIED
        .iter()
        .chain(NOTIFIED_CONDITIONALLY)
        .find(|(n, _)| *n == nr as libc::c_long)
        .map_or("?", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the subset of classic BPF `compile` emits, so the
    /// program's decisions are tested without installing it.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        run_full(prog, arch, nr, [arg0, 0, 0])
    }

    fn run_args(prog: &[sock_filter], nr: u32, args: [u32; 3]) -> u32 {
        run_full(prog, X86, nr, args)
    }

    fn run_full(prog: &[sock_filter], arch: u32, nr: u32, args: [u32; 3]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            let at = 16 + 8 * i;
            data[at..at + 4].copy_from_slice(&arg.to_ne_bytes());
        }
        interpret(prog, &data)
    }

    fn interpret(prog: &[sock_filter], data: &[u8; 64]) -> u32 {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                BPF_LD_W_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_ne_bytes(data[k..k + 4].try_into().unwrap());
                }
                BPF_JEQ_K => pc += if acc == ins.k { ins.jt } else { ins.jf } as usize,
                BPF_JGE_K => pc += if acc >= ins.k { ins.jt } else { ins.jf } as usize,
                BPF_JSET_K => pc += if acc & ins.k != 0 { ins.jt } else { ins.jf } as usize,
                BPF_RET_K => return ins.k,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    const X86: u32 = AUDIT_ARCH_X86_64;

    /// Whatever the arguments, a notified call is notified and a denied one denied: no
    /// argument check may leave an argument where the next check expects the number.
    #[test]
    fn decisions_on_the_number_do_not_depend_on_the_arguments() {
        let argsets = [
            [0, 0, 0],
            [3, 1, 1],
            [3, 64, 64],
            [3, 0x4000, 0x4000],
            [u32::MAX, u32::MAX, u32::MAX],
            [3, libc::MSG_DONTWAIT as u32, libc::MSG_DONTWAIT as u32],
            [3, libc::SYS_read as u32, libc::SYS_write as u32],
            [3, libc::SYS_getpid as u32, libc::SYS_getpid as u32],
        ];
        for confined in [false, true] {
            let prog = compile_for(confined);
            for args in argsets {
                for &(nr, name) in NOTIFIED {
                    let got = run_full(&prog, X86, nr as u32, [args[0], args[1], args[2]]);
                    let unshare =
                        nr == libc::SYS_close_range && args[2] & libc::CLOSE_RANGE_UNSHARE != 0;
                    let fast_open = confined
                        && nr == libc::SYS_sendmsg
                        && args[2] & libc::MSG_FASTOPEN as u32 != 0;
                    if unshare || fast_open {
                        continue; // refused on purpose (tested elsewhere)
                    }
                    assert_eq!(
                        got,
                        libc::SECCOMP_RET_USER_NOTIF,
                        "{name} {args:?} confined={confined}"
                    );
                }
                for &(nr, errno, name) in DENIED {
                    let got = run_full(&prog, X86, nr as u32, [args[0], args[1], args[2]]);
                    let want = libc::SECCOMP_RET_ERRNO | errno as u32;
                    assert_eq!(got, want, "{name} {args:?} confined={confined}");
                }
            }
            // sendto's and sendmmsg's flags are in arg 3, which run_full leaves 0.
            let mut data = [0u32; 4];
            data[3] = libc::MSG_DONTWAIT as u32;
            for nr in [libc::SYS_sendto, libc::SYS_sendmmsg] {
                assert_eq!(
                    run4(&prog, nr as u32, data),
                    libc::SECCOMP_RET_USER_NOTIF,
                    "nr {nr} confined={confined}"
                );
            }
            data[3] = 0x40; // semget's number as flags
            assert_eq!(
                run4(&prog, libc::SYS_sendto as u32, data),
                libc::SECCOMP_RET_USER_NOTIF
            );
        }
    }

    #[test]
    fn serviced_calls_notify() {
        let prog = compile();
        for &(nr, name) in NOTIFIED {
            assert_eq!(
                run(&prog, X86, nr as u32, 0),
                libc::SECCOMP_RET_USER_NOTIF,
                "{name}"
            );
        }
    }

    #[test]
    fn escapes_get_their_errno() {
        let prog = compile();
        for &(nr, errno, name) in DENIED {
            assert_eq!(
                run(&prog, X86, nr as u32, 0),
                libc::SECCOMP_RET_ERRNO | errno as u32,
                "{name}"
            );
        }
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(
            run(
                &prog,
                X86,
                libc::SYS_prctl as u32,
                libc::PR_SET_SECCOMP as u32
            ),
            eperm
        );
        assert_eq!(
            run(
                &prog,
                X86,
                libc::SYS_clone as u32,
                libc::CLONE_NEWUSER as u32
            ),
            eperm
        );
        let tcp = libc::IPPROTO_TCP as u32;
        let zerocopy = run_args(
            &prog,
            libc::SYS_getsockopt as u32,
            [3, tcp, TCP_ZEROCOPY_RECEIVE],
        );
        assert_eq!(zerocopy, eperm);
        let nodelay = run_args(
            &prog,
            libc::SYS_getsockopt as u32,
            [3, tcp, libc::TCP_NODELAY as u32],
        );
        assert_eq!(nodelay, libc::SECCOMP_RET_ALLOW);
    }

    #[test]
    fn confined_tenants_get_ip_unix_and_netlink_sockets_only() {
        let socket = libc::SYS_socket as u32;
        let stream = libc::SOCK_STREAM as u32;
        let allow = libc::SECCOMP_RET_ALLOW;
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
        let open = compile();
        let confined = compile_for(true);
        for family in [libc::AF_INET, libc::AF_INET6] {
            let args = [family as u32, stream, 0];
            let notify = libc::SECCOMP_RET_USER_NOTIF;
            assert_eq!(run_args(&confined, socket, args), notify, "family {family}");
            assert_eq!(run_args(&open, socket, args), allow, "family {family}");
        }
        for family in [libc::AF_UNIX, libc::AF_NETLINK] {
            let args = [family as u32, stream, 0];
            assert_eq!(run_args(&confined, socket, args), allow, "family {family}");
        }
        for family in [libc::AF_VSOCK, libc::AF_PACKET, libc::AF_BLUETOOTH] {
            let args = [family as u32, stream, 0];
            assert_eq!(run_args(&confined, socket, args), errno(libc::EAFNOSUPPORT));
            assert_eq!(run_args(&open, socket, args), allow);
        }
        let sctp = [libc::AF_INET as u32, stream, libc::IPPROTO_SCTP as u32];
        assert_eq!(
            run_args(&confined, socket, sctp),
            errno(libc::EPROTONOSUPPORT)
        );
        let tcp = [libc::AF_INET6 as u32, stream, libc::IPPROTO_TCP as u32];
        assert_eq!(
            run_args(&confined, socket, tcp),
            libc::SECCOMP_RET_USER_NOTIF
        );
        // Everything else is decided as in the open filter.
        assert_eq!(run(&confined, X86, libc::SYS_openat as u32, 0), allow);
        assert_eq!(
            run(
                &confined,
                X86,
                libc::SYS_clone as u32,
                libc::CLONE_NEWNET as u32
            ),
            errno(libc::EPERM)
        );
        assert_eq!(
            run(&confined, X86, libc::SYS_connect as u32, 0),
            libc::SECCOMP_RET_USER_NOTIF
        );
    }

    #[test]
    fn confined_tenants_cannot_choose_peers_around_the_supervisor() {
        let confined = compile_for(true);
        let open = compile();
        let errno = |e: i32| libc::SECCOMP_RET_ERRNO | e as u32;
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let allow = libc::SECCOMP_RET_ALLOW;
        let fast_open = libc::MSG_FASTOPEN as u32;
        // sendto and sendmmsg carry their flags in arg 3, sendmsg in arg 2.
        let mut data = [0u32; 4];
        data[3] = fast_open;
        assert_eq!(
            run4(&confined, libc::SYS_sendto as u32, data),
            errno(libc::EOPNOTSUPP)
        );
        assert_eq!(
            run4(&confined, libc::SYS_sendmmsg as u32, data),
            errno(libc::EOPNOTSUPP)
        );
        assert_eq!(run4(&open, libc::SYS_sendto as u32, data), notify);
        assert_eq!(
            run_args(&confined, libc::SYS_sendmsg as u32, [3, 0, fast_open]),
            errno(libc::EOPNOTSUPP)
        );
        assert_eq!(
            run_args(&confined, libc::SYS_sendmsg as u32, [3, 0, 0]),
            notify
        );
        let socket = libc::SYS_socket as u32;
        let netlink = |proto: i32| [libc::AF_NETLINK as u32, libc::SOCK_RAW as u32, proto as u32];
        assert_eq!(
            run_args(&confined, socket, netlink(libc::NETLINK_ROUTE)),
            allow
        );
        assert_eq!(
            run_args(&confined, socket, netlink(libc::NETLINK_SOCK_DIAG)),
            errno(libc::EPROTONOSUPPORT)
        );
        assert_eq!(
            run_args(&confined, socket, netlink(libc::NETLINK_AUDIT)),
            errno(libc::EPROTONOSUPPORT)
        );
        assert_eq!(
            run_args(&open, socket, netlink(libc::NETLINK_SOCK_DIAG)),
            allow
        );
        let watch = libc::SYS_inotify_add_watch as u32;
        assert_eq!(
            run_args(&confined, watch, [3, 0, 0]),
            libc::SECCOMP_RET_USER_NOTIF
        );
        assert_eq!(run_args(&open, watch, [3, 0, 0]), allow);
        let fanotify = libc::SYS_fanotify_init as u32;
        assert_eq!(run_args(&confined, fanotify, [0, 0, 0]), errno(libc::EPERM));
        let setsockopt = libc::SYS_setsockopt as u32;
        let opt = |level: i32, name: u32| [3, level as u32, name];
        for (level, name) in [
            (libc::IPPROTO_TCP, TCP_FASTOPEN_CONNECT),
            (libc::IPPROTO_IP, libc::IP_OPTIONS as u32),
            (libc::IPPROTO_IP, libc::IP_RETOPTS as u32),
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO as u32),
            (libc::IPPROTO_IPV6, IPV6_2292PKTINFO),
            (libc::IPPROTO_IPV6, libc::IPV6_RTHDR as u32),
        ] {
            let got = run_args(&confined, setsockopt, opt(level, name));
            assert_eq!(got, errno(libc::EPERM), "level {level} option {name}");
            assert_eq!(run_args(&open, setsockopt, opt(level, name)), allow);
        }
        for (level, name) in [
            (libc::IPPROTO_TCP, libc::TCP_NODELAY as u32),
            (libc::IPPROTO_IP, libc::IP_TOS as u32),
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY as u32),
            (libc::SOL_SOCKET, libc::SO_REUSEADDR as u32),
        ] {
            let got = run_args(&confined, setsockopt, opt(level, name));
            assert_eq!(got, allow, "level {level} option {name}");
        }
    }

    fn run4(prog: &[sock_filter], nr: u32, args: [u32; 4]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&X86.to_ne_bytes());
        for (i, arg) in args.iter().enumerate() {
            let at = 16 + 8 * i;
            data[at..at + 4].copy_from_slice(&arg.to_ne_bytes());
        }
        interpret(prog, &data)
    }

    #[test]
    fn ordinary_calls_pass_and_foreign_arches_die() {
        let prog = compile();
        let allow = libc::SECCOMP_RET_ALLOW;
        assert_eq!(run(&prog, X86, libc::SYS_openat as u32, 0), allow);
        assert_eq!(
            run(&prog, X86, libc::SYS_prctl as u32, libc::PR_SET_NAME as u32),
            allow
        );
        let thread_flags = (libc::CLONE_VM | libc::CLONE_FILES | libc::CLONE_THREAD) as u32;
        assert_eq!(run(&prog, X86, libc::SYS_clone as u32, thread_flags), allow);
        let private_table = (libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u32;
        assert_eq!(
            run(&prog, X86, libc::SYS_clone as u32, private_table),
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32
        );
        let close_range = libc::SYS_close_range as u32;
        let unshare = [3, u32::MAX, libc::CLOSE_RANGE_UNSHARE];
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(run_args(&prog, close_range, unshare), eperm);
        let cloexec = [3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC];
        assert_eq!(
            run_args(&prog, close_range, cloexec),
            libc::SECCOMP_RET_USER_NOTIF
        );
        let shared_table_child = (libc::CLONE_FILES | libc::SIGCHLD) as u32;
        assert_eq!(
            run(&prog, X86, libc::SYS_clone as u32, shared_table_child),
            libc::SECCOMP_RET_USER_NOTIF
        );
        let notify = libc::SECCOMP_RET_USER_NOTIF;
        let fork_flags = libc::SIGCHLD as u32;
        assert_eq!(run(&prog, X86, libc::SYS_clone as u32, fork_flags), notify);
        let fcntl = libc::SYS_fcntl as u32;
        assert_eq!(run_args(&prog, fcntl, [3, libc::F_DUPFD as u32, 0]), notify);
        let cloexec = libc::F_DUPFD_CLOEXEC as u32;
        assert_eq!(run_args(&prog, fcntl, [3, cloexec, 0]), notify);
        assert_eq!(run_args(&prog, fcntl, [3, libc::F_SETFL as u32, 0]), allow);
        assert_eq!(run_args(&prog, fcntl, [3, libc::F_GETFL as u32, 0]), allow);
        assert_eq!(
            run(&prog, X86, X32_SYSCALL_BIT, 0),
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&prog, 0x4000_0003, 3, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }
}
