//! Process/namespace/privilege attempts: signal, ptrace, /proc/<pid>/mem, setns,
//! unshare, mount, setuid exec.

use crate::{blocked, blocked_at, close_fd, errname, escaped};
use std::ffi::{c_int, CString};
use testbins::{errno, say};

/// Outcome of running one call in a forked child.
enum Child {
    Ok,
    Err(i32),
    Killed(c_int),
}

fn wait(pid: libc::pid_t, flags: c_int) -> Option<c_int> {
    let mut st = 0;
    loop {
        // SAFETY: st is a live c_int.
        if unsafe { libc::waitpid(pid, &mut st, flags) } >= 0 {
            return Some(st);
        }
        if errno() != libc::EINTR {
            return None;
        }
    }
}

/// Runs `f` (a syscall returning 0 or -1) in a forked child, which reports its
/// errno through the exit status, so that a success cannot change this process's
/// namespaces. Err(errno of fork) if fork(2) fails.
fn in_child(f: impl FnOnce() -> c_int) -> Result<Child, i32> {
    // SAFETY: attack mode is single-threaded here (the racing threads of
    // toctou_connect and fd_swap_connect come later and are joined), so the
    // child may run arbitrary code; it leaves only through _exit(2).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno());
    }
    if pid == 0 {
        let code = if f() == 0 { 0 } else { errno().clamp(1, 255) };
        // SAFETY: _exit(2) ends the child without running exit handlers.
        unsafe { libc::_exit(code) };
    }
    let st = wait(pid, 0).unwrap_or(0);
    Ok(if libc::WIFSIGNALED(st) {
        Child::Killed(libc::WTERMSIG(st))
    } else if libc::WEXITSTATUS(st) == 0 {
        Child::Ok
    } else {
        Child::Err(libc::WEXITSTATUS(st))
    })
}

fn report_child(name: &str, r: Result<Child, i32>, ok_detail: &str) {
    match r {
        Ok(Child::Ok) => escaped(name, ok_detail),
        Ok(Child::Err(e)) => blocked(name, e),
        Ok(Child::Killed(sig)) => say(&format!("attempt {name}: blocked killed-sig={sig}")),
        Err(e) => {
            eprintln!("cross_escape: {name}: fork failed: {}", errname(e));
            blocked(name, e);
        }
    }
}

pub fn signal_b(pid: libc::pid_t) {
    // SAFETY: kill(2) takes only integers; pid > 1 was checked when parsing.
    if unsafe { libc::kill(pid, 0) } < 0 {
        return blocked("signal_b", errno());
    }
    // SAFETY: as above.
    let r = unsafe { libc::kill(pid, libc::SIGKILL) };
    let how = if r == 0 {
        "SIGKILL sent".to_string()
    } else {
        format!("SIGKILL failed {}", errname(errno()))
    };
    escaped("signal_b", &format!("kill({pid}, 0) ok, {how}"));
}

pub fn ptrace_b(pid: libc::pid_t) {
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: PTRACE_ATTACH takes no pointers.
    if unsafe { libc::ptrace(libc::PTRACE_ATTACH, pid, null, null) } < 0 {
        return blocked("ptrace_b", errno());
    }
    wait(pid, libc::__WALL);
    // SAFETY: pid is our stopped tracee; data NULL delivers no signal.
    let r = unsafe { libc::ptrace(libc::PTRACE_DETACH, pid, null, null) };
    let how = if r == 0 {
        "detached again"
    } else {
        "detach failed"
    };
    escaped("ptrace_b", &format!("attached to {pid} ({how})"));
}

fn open(path: &CString, flags: c_int) -> Result<c_int, i32> {
    // SAFETY: path is a live NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

fn proc_path(pid: libc::pid_t, rest: &str) -> CString {
    CString::new(format!("/proc/{pid}/{rest}")).expect("no NUL in a formatted pid path")
}

pub fn proc_mem_b(pid: libc::pid_t) {
    let name = "proc_mem_b";
    let path = proc_path(pid, "mem");
    let e_rw = match open(&path, libc::O_RDWR) {
        Ok(fd) => {
            close_fd(fd);
            return escaped(name, "opened O_RDWR");
        }
        Err(e) => e,
    };
    match open(&path, libc::O_RDONLY) {
        Ok(fd) => {
            close_fd(fd);
            escaped(
                name,
                &format!("opened O_RDONLY (O_RDWR: {})", errname(e_rw)),
            );
        }
        Err(e) => {
            eprintln!("cross_escape: {name}: O_RDWR: {}", errname(e_rw));
            blocked(name, e);
        }
    }
}

pub fn setns_b(pid: libc::pid_t) {
    let name = "setns_b";
    let fd = match open(&proc_path(pid, "ns/net"), libc::O_RDONLY) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("cross_escape: {name}: open /proc/{pid}/ns/net failed");
            return blocked(name, e);
        }
    };
    let r = in_child(|| {
        // SAFETY: setns(2) takes only integers; fd is open (inherited by the child).
        unsafe { libc::setns(fd, 0) }
    });
    close_fd(fd);
    report_child(name, r, &format!("joined the net namespace of {pid}"));
}

pub fn unshare() {
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNS;
    let r = in_child(|| {
        // SAFETY: unshare(2) takes only flags; it runs in a throwaway child.
        unsafe { libc::unshare(flags) }
    });
    report_child("unshare", r, "new user+mount namespace");
}

pub fn mount_tmp() {
    let (none, tmp, tmpfs) = (c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr());
    // SAFETY: all strings are NUL-terminated literals; data is NULL.
    if unsafe { libc::mount(none, tmp, tmpfs, 0, std::ptr::null()) } < 0 {
        return blocked("mount", errno());
    }
    // SAFETY: NUL-terminated literal path; undoes the mount just made.
    let r = unsafe { libc::umount2(tmp, libc::MNT_DETACH) };
    let how = if r == 0 {
        "detached again"
    } else {
        "umount failed"
    };
    escaped("mount", &format!("tmpfs on /tmp ({how})"));
}

/// Forks; the child execs `<bin> whoami` with stdout on a pipe (on exec failure it
/// writes `exec-errno=<n>` there instead); the parent reads the pipe to EOF.
pub fn setuid_exec(bin: &str) {
    let name = "setuid_exec";
    let Ok(path) = CString::new(bin) else {
        crate::usage("--setuid-bin contains NUL")
    };
    let argv = [path.as_ptr(), c"whoami".as_ptr(), std::ptr::null()];
    let mut p = [0 as c_int; 2];
    // SAFETY: p is a live array of two c_ints.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return blocked_at(name, "pipe2");
    }
    // SAFETY: single-threaded here (see in_child); the child only calls dup2,
    // execv, write and _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        close_fd(p[0]);
        close_fd(p[1]);
        return blocked_at(name, "fork");
    }
    if pid == 0 {
        // SAFETY: p[1] is open; argv is a NULL-terminated array of live C strings.
        unsafe {
            libc::dup2(p[1], 1);
            libc::execv(path.as_ptr(), argv.as_ptr());
        }
        let msg = format!("exec-errno={}\n", errno());
        // SAFETY: msg is live; _exit ends the child.
        unsafe {
            libc::write(1, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    close_fd(p[1]);
    let out = read_to_eof(p[0]);
    close_fd(p[0]);
    let st = wait(pid, 0).unwrap_or(0);
    let field = |k: &str| -> Option<i64> {
        let v = out.split_whitespace().find_map(|w| w.strip_prefix(k))?;
        v.parse().ok()
    };
    if let Some(e) = field("exec-errno=") {
        blocked(name, e as i32);
    } else if let Some(euid) = field("euid=") {
        if euid == 0 {
            escaped(name, "euid=0");
        } else {
            say(&format!("attempt {name}: blocked euid={euid}"));
        }
    } else if libc::WIFSIGNALED(st) {
        say(&format!(
            "attempt {name}: blocked killed-sig={}",
            libc::WTERMSIG(st)
        ));
    } else {
        let code = libc::WEXITSTATUS(st);
        say(&format!("attempt {name}: blocked no-output exit={code}"));
    }
}

fn read_to_eof(fd: c_int) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: buf is a live, writable buffer of the length passed.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            out.extend_from_slice(&buf[..n as usize]);
        } else if n == 0 || errno() != libc::EINTR {
            return String::from_utf8_lossy(&out).into_owned();
        }
    }
}
