//! `escape [--port P]`: tries syscalls a sandboxed tenant must not get to use.
//!
//! Prints one line per attempt, `<name> ok` or `<name> errno=<NAME>` (e.g.
//! `errno=EPERM`), in this order, each a single call (raw syscall(2) where noted):
//!
//! * `io_uring_setup`    raw io_uring_setup(8, &zeroed params); fd closed if ok
//! * `io_setup`          raw io_setup(8, &zeroed aio_context_t) (Linux AIO); io_destroy if ok
//! * `tcp_zerocopy_receive` getsockopt(fresh TCP socket, IPPROTO_TCP,
//!   TCP_ZEROCOPY_RECEIVE = 35, zeroed 64-byte buffer); the socket is closed after.
//!   Prints `tcp_zerocopy_receive socket-failed errno=<NAME>` if socket(2) fails
//! * `seccomp_filter`    raw seccomp(SECCOMP_SET_MODE_FILTER, 0, allow-all filter)
//! * `seccomp_strict`    [child] raw seccomp(SECCOMP_SET_MODE_STRICT, 0, NULL)
//! * `prctl_seccomp_strict` [child] prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT)
//! * `ptrace_traceme`    [child] ptrace(PTRACE_TRACEME)
//! * `ptrace_attach`     ptrace(PTRACE_ATTACH, getppid()); if ok: wait4 + PTRACE_DETACH
//! * `process_vm_readv`  8 bytes from getppid() at the first address in its maps
//! * `process_vm_writev` 8 bytes into our own buffer (own pid)
//! * `pidfd_open`        raw pidfd_open(getppid(), 0)
//! * `pidfd_getfd`       raw pidfd_getfd(that pidfd or -1, 0, 0)
//! * `bpf_prog_load`     raw bpf(BPF_PROG_LOAD, &zeroed attr, 128); E2BIG (insn_cnt 0)
//!   means the call reached the kernel
//! * `mount_tmpfs`       mount("none", "/mnt", "tmpfs", 0, NULL); umount2(MNT_DETACH) if ok
//! * `kexec_load`        raw kexec_load(0, 0, NULL, 0x8000): an invalid flag, so the
//!   call can never load/unload anything; EINVAL means it passed the privilege check
//! * `init_module`       raw init_module(NULL, 0, "")
//! * `finit_module`      raw finit_module(-1, "", 0)
//! * `unshare_newuser`   [child] unshare(CLONE_NEWUSER)
//! * `clone3`            raw clone3({exit_signal=SIGCHLD}, 64); child _exit(0)s, parent waits
//! * `userfaultfd`       raw userfaultfd(O_CLOEXEC|O_NONBLOCK)
//! * `perf_event_open`   raw perf_event_open(sw dummy, self, any cpu, no group)
//!
//! [child] = done in a fork(2)ed child so that success cannot kill or trace the
//! reporter; the child prints the line; if it dies, `<name> killed sig=<n>`.
//!
//! Then `fd <n> -> <link target>` for each entry of /proc/self/fd,
//! `listener-fd-visible yes|no` (yes if a target contains "seccomp") and
//! `seccomp-mode=<Seccomp:> filters=<Seccomp_filters:>` from /proc/self/status.
//! Always exits 0.
//!
//! With `--port P`: listens (prints `ready pid=<pid>`), accepts one connection
//! (`accepted`) and first tries, on it:
//! * `sendfile`   sendfile(conn, unlinked tmp file holding "sendfile\n", &off, 9)
//! * `splice_in`  after poll(POLLIN, 5s): splice(conn -> pipe, 4096, SPLICE_F_NONBLOCK);
//!   prints `splice_in skipped` if the peer sent nothing within 5s
//! * `tee`        tee(pipe -> pipe2, 4096, SPLICE_F_NONBLOCK)
//! * `splice_out` splice(pipe -> conn, 4096, SPLICE_F_NONBLOCK)
//! * `preadv2_offset` preadv2(conn, [16-byte iov], 1, offset 0, 0): positional I/O,
//!   which a socket refuses (ESPIPE)
//!
//! then close(2)s the connection (`conn closed`). The peer should send a few bytes
//! right after connecting and then read to EOF: it gets "sendfile\n" if sendfile
//! worked, followed by its own bytes if both splices worked.
//! Without `--port`, `ready pid=<pid>` is printed first thing.

use std::ffi::{c_int, c_long};
use testbins::{accept_conn, errno, errno_name, listen_tcp, say, say_ready, Args};

mod attempts;
mod sockets;

/// Prints `<name> ok` (r >= 0) or `<name> errno=<NAME>`; must be called right
/// after the syscall so errno is still the syscall's. Returns r when ok.
fn report(name: &str, r: c_long) -> Option<c_long> {
    if r < 0 {
        say(&format!("{name} errno={}", errno_name(errno())));
        return None;
    }
    say(&format!("{name} ok"));
    Some(r)
}

fn close_fd(fd: Option<c_long>) {
    if let Some(fd) = fd {
        // SAFETY: fd was just returned to us by the kernel and is not used again.
        unsafe { libc::close(fd as c_int) };
    }
}

fn wait_child(pid: libc::pid_t) -> c_int {
    let mut st = 0;
    // SAFETY: st is a live c_int; pid is our child (or tracee).
    while unsafe { libc::waitpid(pid, &mut st, libc::__WALL) } < 0 && errno() == libc::EINTR {}
    st
}

/// Runs `f` in a forked child, which prints the line itself (the `ok` line is
/// formatted up front and emitted with a bare write(2) + exit(2), the only calls
/// still allowed after a successful switch to strict seccomp mode).
fn in_child(name: &str, f: fn() -> c_long) {
    let ok_line = format!("{name} ok\n");
    // SAFETY: escape is single-threaded, so the child may run arbitrary Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return say(&format!("{name} fork-failed errno={}", errno_name(errno())));
    }
    if pid == 0 {
        if f() >= 0 {
            // SAFETY: ok_line is live; write and exit are the only calls made.
            unsafe {
                libc::write(1, ok_line.as_ptr().cast(), ok_line.len());
                libc::syscall(libc::SYS_exit, 0);
            }
        }
        say(&format!("{name} errno={}", errno_name(errno())));
        // SAFETY: _exit(2) ends the child without running exit handlers.
        unsafe { libc::_exit(0) };
    }
    let st = wait_child(pid);
    if libc::WIFSIGNALED(st) {
        say(&format!("{name} killed sig={}", libc::WTERMSIG(st)));
    }
}

fn main() {
    let args = Args::init(&["port"], &[]);
    if let Some(port) = args.get("port") {
        let port = port.parse().unwrap_or_else(|_| testbins::die("bad --port"));
        let lfd = listen_tcp(port, false);
        say_ready();
        let conn = accept_conn(lfd);
        say("accepted");
        sockets::attempts(conn);
    } else {
        say_ready();
    }
    attempts::all();
    proc_report();
}

/// The `fd ...`, `listener-fd-visible` and `seccomp-mode=` lines.
fn proc_report() {
    let entries = std::fs::read_dir("/proc/self/fd").map(|d| d.flatten().collect::<Vec<_>>());
    let mut fds: Vec<(u32, String)> = entries
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.parse().ok()?;
            let t = std::fs::read_link(e.path()).ok()?;
            Some((n, t.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    for (n, t) in &fds {
        say(&format!("fd {n} -> {t}"));
    }
    let visible = fds.iter().any(|(_, t)| t.contains("seccomp"));
    say(&format!(
        "listener-fd-visible {}",
        if visible { "yes" } else { "no" }
    ));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| {
        let v = status.lines().find_map(|l| l.strip_prefix(k));
        v.map_or("?", str::trim).to_string()
    };
    let (mode, filters) = (field("Seccomp:"), field("Seccomp_filters:"));
    say(&format!("seccomp-mode={mode} filters={filters}"));
}
