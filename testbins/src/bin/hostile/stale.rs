//! Class 1: a stale fd cache. A tracked socket (a listener on A's own address, made
//! tracked by a non-blocking accept; or a tracked connection to an allowed place) sits
//! at fd N; a process or thread that the supervisor believes shares N's meaning puts a
//! UDP socket under N in one fd table while the other still holds the tracked socket,
//! then the battery (`sys::Battery`: sendto/sendmsg/sendmmsg to B, sendmsg with
//! IP_PKTINFO forging a source in B's range, the host's, an unassigned one) is fired on
//! N where N is the UDP socket.
//!
//! Variants (`--only a,b` to run some; all by default), each `<variant>_<send>` lines:
//! * `clone_files_child_swaps`: a `clone(CLONE_FILES|SIGCHLD)` child (its own tgid, the
//!   same fd table) closes N and opens a UDP socket there; the parent fires.
//! * `clone_files_parent_swaps`: the parent puts a UDP socket at N (dup2) after the
//!   clone; the child fires.
//! * `clone_files_exec`: as above, but the child execs `hostile stale-send --fd N` first,
//!   which fires (exec gives it a private copy of the table).
//! * `thread_private_thread_swaps`: a thread made with CLONE_VM|CLONE_SIGHAND|
//!   CLONE_THREAD|CLONE_SYSVSEM and no CLONE_FILES (same tgid, private fd table) puts a
//!   UDP socket at N in its table; the main thread calls accept4(N) (its N is still the
//!   listener, so the supervisor caches it again); the thread fires. The listener is
//!   also dup2'ed to a high fd first so that it stays held while N is swapped.
//! * `thread_private_main_swaps`: the main thread swaps N, the thread calls accept4(N),
//!   the main thread fires.
//! * `stream_clone_files_child_swaps` (only with `--allowed-tcp IP:PORT`, which the
//!   profile must track as a stream): as the first, with N a tracked connection.
//!
//! A step that fails before the battery (no listener, no UDP socket at N) prints
//! `attack <variant>_<send>: SETUP-FAILED <why>` for each send: neither held nor
//! escaped, so the test fails and says why. A clone or exec refused with an errno is a
//! defence: each send is then `denied errno=<that errno>`.

use crate::sys::{self, Battery, Sa, Targets};
use crate::{info, own_ip, Opts};
use std::ffi::{c_int, c_void, CString};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicIsize, AtomicU32, Ordering};
use std::time::{Duration, Instant};
use testbins::{errno, say};

/// Where the listener is duplicated to keep it held while N is swapped.
const HIGH_FD: c_int = 100;

fn targets(o: &Opts) -> Targets {
    Targets {
        b_udp: o.addr("b-udp"),
        b_ip2: o.ip("b-ip2"),
        host_udp: o.addr("host-udp"),
        unassigned: o.ip("unassigned"),
    }
}

pub fn run(o: &Opts) {
    let t = targets(o);
    let own = own_ip(o);
    let only: Option<Vec<String>> = o
        .opt("only")
        .map(|s| s.split(',').map(str::to_string).collect());
    let want = |v: &str| match &only {
        None => true,
        Some(l) => l.iter().any(|x| x == v),
    };
    if want("clone_files_child_swaps") {
        clone_files_child_swaps("clone_files_child_swaps", &t, || own_listener(own));
    }
    if want("clone_files_parent_swaps") {
        clone_files_parent_swaps("clone_files_parent_swaps", &t, own, None);
    }
    if want("clone_files_exec") {
        clone_files_parent_swaps("clone_files_exec", &t, own, Some(o));
    }
    if want("thread_private_thread_swaps") {
        thread_private("thread_private_thread_swaps", &t, own, true);
    }
    if want("thread_private_main_swaps") {
        thread_private("thread_private_main_swaps", &t, own, false);
    }
    if let Some(allowed) = o.opt("allowed-tcp") {
        let allowed: SocketAddrV4 = allowed
            .parse()
            .unwrap_or_else(|_| crate::usage("--allowed-tcp: invalid address"));
        if want("stream_clone_files_child_swaps") {
            clone_files_child_swaps("stream_clone_files_child_swaps", &t, || {
                allowed_stream(allowed)
            });
        }
    }
}

/// `stale-send`: run by `clone_files_exec` after exec; fires the battery on `--fd`.
pub fn run_exec_child(o: &Opts) {
    let fd: c_int = o.parsed("fd");
    let variant = o.req("variant");
    let mut b = Battery::new(variant, &targets(o));
    info(&format!(
        "{variant}: after exec fd {fd} is {}",
        describe(fd)
    ));
    // SAFETY: b is a live battery nobody else uses.
    unsafe { Battery::fire(&mut *b, fd) };
    b.report();
}

/// Every send of the battery as SETUP-FAILED.
fn setup_failed(variant: &str, t: &Targets, why: &str) {
    let b = Battery::new(variant, t);
    for name in &b.names {
        say(&format!("attack {name}: SETUP-FAILED {why}"));
    }
}

/// Every send of the battery as denied with `errno` (a clone or exec refused).
fn all_denied(variant: &str, t: &Targets, errno: i32, what: &str) {
    let b = Battery::new(variant, t);
    info(&format!(
        "{variant}: {what} refused: {}",
        sys::errname(errno)
    ));
    for name in &b.names {
        crate::denied(name, errno);
    }
}

/// "UDP", "TCP", "not a socket (errno)" ... for info lines.
fn describe(fd: c_int) -> String {
    match sys::sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        Ok(libc::SOCK_DGRAM) => "a datagram socket".into(),
        Ok(libc::SOCK_STREAM) => "a stream socket".into(),
        Ok(t) => format!("a socket of type {t}"),
        Err(e) => format!("not a socket ({})", sys::errname(e)),
    }
}

/// A TCP listener on A's own address, made tracked by a non-blocking accept.
fn own_listener(own: Ipv4Addr) -> Result<c_int, String> {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
        .map_err(|e| format!("socket(tcp) {}", sys::errname(e)))?;
    sys::bind(fd, &Sa::v4(SocketAddrV4::new(own, 0)))
        .map_err(|e| format!("bind {own}:0 {}", sys::errname(e)))?;
    // SAFETY: listen(2) takes only integers.
    if unsafe { libc::listen(fd, 16) } < 0 {
        return Err(format!("listen {}", sys::errname(errno())));
    }
    sys::set_nonblocking(fd);
    // SAFETY: NULL addr/addrlen are allowed by accept4(2).
    let r = unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
    if r >= 0 {
        sys::close(r);
    } else if errno() != libc::EAGAIN {
        return Err(format!("accept4 {}", sys::errname(errno())));
    }
    Ok(fd)
}

/// A connection to an allowed place (the profile tracks it as a stream).
fn allowed_stream(to: SocketAddrV4) -> Result<c_int, String> {
    let fd = sys::socket(libc::AF_INET, libc::SOCK_STREAM)
        .map_err(|e| format!("socket(tcp) {}", sys::errname(e)))?;
    sys::connect(fd, &Sa::v4(to)).map_err(|e| format!("connect {to} {}", sys::errname(e)))?;
    Ok(fd)
}

/// Puts a fresh UDP socket at `n` (close + socket, or dup2 if it lands elsewhere).
fn udp_at(n: c_int, close_first: bool) -> Result<(), String> {
    if close_first {
        sys::close(n);
    }
    let s = sys::socket(libc::AF_INET, libc::SOCK_DGRAM)
        .map_err(|e| format!("socket(udp) {}", sys::errname(e)))?;
    if s != n {
        sys::dup2(s, n).map_err(|e| format!("dup2 {}", sys::errname(e)))?;
        sys::close(s);
    }
    Ok(())
}

fn pipe() -> (c_int, c_int) {
    let mut p = [0 as c_int; 2];
    // SAFETY: p is a live array of two ints.
    testbins::ck(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    );
    (p[0], p[1])
}

fn write_all(fd: c_int, bytes: &[u8]) {
    // SAFETY: bytes is a live slice.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// Reads exactly `n` bytes within `ms` (None on timeout or EOF).
fn read_exact(fd: c_int, n: usize, ms: u64) -> Option<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as c_int;
        if left == 0 || sys::poll1(fd, libc::POLLIN, left) == 0 {
            return None;
        }
        let mut buf = vec![0u8; n - out.len()];
        // SAFETY: buf is a live, writable buffer of the length passed.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r <= 0 {
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            return None;
        }
        out.extend_from_slice(&buf[..r as usize]);
    }
    Some(out)
}

/// A raw clone(CLONE_FILES|SIGCHLD): a fork whose child shares our fd table.
fn clone_files() -> Result<libc::pid_t, i32> {
    let flags = (libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a raw clone without CLONE_VM and with no new stack is a fork: the child
    // runs on a copy of our memory. This process is single-threaded here, so the child
    // may allocate and print.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as libc::pid_t)
    }
}

/// Waits for `pid` up to `secs` (SIGKILL after).
fn reap(pid: libc::pid_t, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut st = 0;
        // SAFETY: st is a live int.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r != 0 {
            return;
        }
        if Instant::now() > deadline {
            eprintln!("hostile: child {pid} did not exit; killing it");
            // SAFETY: pid is our unreaped child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut st, 0);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The child swaps N; the parent (whose cache still says "tracked") fires.
fn clone_files_child_swaps(
    variant: &str,
    t: &Targets,
    make: impl FnOnce() -> Result<c_int, String>,
) {
    let n = match make() {
        Ok(n) => n,
        Err(why) => return setup_failed(variant, t, &why),
    };
    info(&format!("{variant}: tracked socket at fd {n}"));
    let mut b = Battery::new(variant, t);
    let (go_r, go_w) = pipe();
    let (done_r, done_w) = pipe();
    let pid = match clone_files() {
        Ok(pid) => pid,
        Err(e) => return all_denied(variant, t, e, "clone(CLONE_FILES)"),
    };
    if pid == 0 {
        let ok = read_exact(go_r, 1, 10_000).is_some() && udp_at(n, true).is_ok();
        write_all(done_w, &[u8::from(ok)]);
        // SAFETY: _exit(2) ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    // This write is the parent's first call after the clone: the fork is known now.
    write_all(go_w, b"g");
    let ok = read_exact(done_r, 1, 10_000) == Some(vec![1]);
    reap(pid, 10);
    for fd in [go_r, go_w, done_r, done_w] {
        sys::close(fd);
    }
    if !ok {
        return setup_failed(variant, t, "the child could not put a UDP socket at N");
    }
    info(&format!("{variant}: fd {n} is now {}", describe(n)));
    // SAFETY: b is a live battery nobody else uses.
    unsafe { Battery::fire(&mut *b, n) };
    b.report();
    sys::close(n);
}

/// The parent swaps N after the clone; the child (directly, or after exec) fires.
fn clone_files_parent_swaps(variant: &str, t: &Targets, own: Ipv4Addr, exec: Option<&Opts>) {
    let n = match own_listener(own) {
        Ok(n) => n,
        Err(why) => return setup_failed(variant, t, &why),
    };
    info(&format!("{variant}: tracked listener at fd {n}"));
    let mut b = Battery::new(variant, t);
    let argv: Option<(CString, Vec<CString>)> = exec.map(|o| {
        let exe = std::env::current_exe().expect("current_exe");
        let exe = CString::new(exe.to_str().expect("utf-8 path")).expect("no NUL");
        let mut args = vec![exe.clone(), CString::new("stale-send").expect("static")];
        let n_text = n.to_string();
        for (k, v) in [
            ("--fd", n_text.as_str()),
            ("--variant", variant),
            ("--b-udp", o.req("b-udp")),
            ("--b-ip2", o.req("b-ip2")),
            ("--host-udp", o.req("host-udp")),
            ("--unassigned", o.req("unassigned")),
        ] {
            args.push(CString::new(k).expect("no NUL"));
            args.push(CString::new(v).expect("no NUL"));
        }
        (exe, args)
    });
    let (go_r, go_w) = pipe();
    let (res_r, res_w) = pipe();
    let pid = match clone_files() {
        Ok(pid) => pid,
        Err(e) => return all_denied(variant, t, e, "clone(CLONE_FILES)"),
    };
    if pid == 0 {
        if read_exact(go_r, 1, 10_000).is_none() {
            // SAFETY: _exit(2) ends the child.
            unsafe { libc::_exit(1) };
        }
        if let Some((exe, args)) = &argv {
            let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
            ptrs.push(std::ptr::null());
            // SAFETY: exe and the argv pointers are NUL-terminated strings that live
            // until execv returns (it only returns on failure); argv ends with NULL.
            unsafe { libc::execv(exe.as_ptr(), ptrs.as_ptr()) };
            all_denied(variant, t, errno(), "execve");
            // SAFETY: _exit(2) ends the child.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: b is this child's own copy of the battery.
        unsafe { Battery::fire(&mut *b, n) };
        let mut bytes = Vec::new();
        for r in b.results {
            bytes.extend_from_slice(&(r as i64).to_ne_bytes());
        }
        write_all(res_w, &bytes);
        // SAFETY: _exit(2) ends the child.
        unsafe { libc::_exit(0) };
    }
    // The dup2 is the parent's first notified call after the clone: the supervisor
    // learns the child (with N cached as the listener) right before it.
    let swapped = udp_at(n, false);
    write_all(go_w, b"g");
    if exec.is_some() {
        reap(pid, 30);
    } else {
        let got = read_exact(res_r, 8 * Battery::N, 10_000);
        reap(pid, 10);
        match got {
            Some(bytes) => {
                for (i, c) in bytes.chunks(8).enumerate() {
                    b.results[i] = i64::from_ne_bytes(c.try_into().expect("8 bytes")) as isize;
                }
                if let Err(why) = &swapped {
                    setup_failed(variant, t, why);
                } else {
                    b.report();
                }
            }
            None => setup_failed(variant, t, "the child reported nothing"),
        }
    }
    if let Err(why) = swapped {
        info(&format!("{variant}: swap failed: {why}"));
    }
    for fd in [go_r, go_w, res_r, res_w, n] {
        sys::close(fd);
    }
}

/// Shared with the bare thread (which has no TLS of its own: atomics and raw pointers
/// only).
struct ThreadCtx {
    thread_swaps: bool,
    n: c_int,
    battery: *mut Battery,
    step: AtomicU32,
    swap_rc: AtomicIsize,
    accept_rc: AtomicIsize,
}

/// Waits (raw nanosleep, up to ~10 s) until `step` reaches `want`.
///
/// # Safety
/// None beyond the raw syscall's; a function for the bare thread.
unsafe fn wait_step_raw(step: &AtomicU32, want: u32) -> bool {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 100_000,
    };
    for _ in 0..100_000 {
        if step.load(Ordering::SeqCst) >= want {
            return true;
        }
        // SAFETY: ts is a live timespec; no remainder pointer.
        unsafe {
            sys::raw(
                libc::SYS_nanosleep,
                [&ts as *const _ as usize, 0, 0, 0, 0, 0],
            )
        };
    }
    false
}

fn wait_step(step: &AtomicU32, want: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while step.load(Ordering::SeqCst) < want {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Body of the bare thread: raw syscalls and atomics only.
extern "C" fn thread_body(arg: *mut c_void) -> c_int {
    // SAFETY: arg is the leaked ThreadCtx, alive for the process's lifetime.
    let ctx = unsafe { &*(arg as *const ThreadCtx) };
    // SAFETY: raw syscalls with integer arguments or pointers into the live ctx and
    // battery (the main thread does not touch the battery until step 3).
    unsafe {
        if ctx.thread_swaps {
            let s = sys::raw(
                libc::SYS_socket,
                [
                    libc::AF_INET as usize,
                    libc::SOCK_DGRAM as usize,
                    0,
                    0,
                    0,
                    0,
                ],
            );
            let r = if s < 0 {
                s
            } else {
                let r = sys::raw(libc::SYS_dup2, [s as usize, ctx.n as usize, 0, 0, 0, 0]);
                sys::raw(libc::SYS_close, [s as usize, 0, 0, 0, 0, 0]);
                r
            };
            ctx.swap_rc.store(r, Ordering::SeqCst);
            ctx.step.store(1, Ordering::SeqCst);
            if wait_step_raw(&ctx.step, 2) && r >= 0 {
                Battery::fire(ctx.battery, ctx.n);
            }
            ctx.step.store(3, Ordering::SeqCst);
        } else {
            if wait_step_raw(&ctx.step, 1) {
                let r = sys::raw(
                    libc::SYS_accept4,
                    [ctx.n as usize, 0, 0, libc::SOCK_NONBLOCK as usize, 0, 0],
                );
                ctx.accept_rc.store(r, Ordering::SeqCst);
            }
            ctx.step.store(2, Ordering::SeqCst);
        }
    }
    0
}

fn rc_text(r: isize) -> String {
    if r < 0 {
        sys::errname((-r) as i32)
    } else {
        format!("ok({r})")
    }
}

/// A thread with its own fd table (no CLONE_FILES) under the process's one tgid.
fn thread_private(variant: &str, t: &Targets, own: Ipv4Addr, thread_swaps: bool) {
    let n = match own_listener(own) {
        Ok(n) => n,
        Err(why) => return setup_failed(variant, t, &why),
    };
    if let Err(e) = sys::dup2(n, HIGH_FD) {
        sys::close(n);
        return setup_failed(
            variant,
            t,
            &format!("dup2 to {HIGH_FD}: {}", sys::errname(e)),
        );
    }
    info(&format!(
        "{variant}: tracked listener at fd {n} and {HIGH_FD}"
    ));
    let battery = Box::into_raw(Battery::new(variant, t));
    let ctx: &'static ThreadCtx = Box::leak(Box::new(ThreadCtx {
        thread_swaps,
        n,
        battery,
        step: AtomicU32::new(0),
        swap_rc: AtomicIsize::new(0),
        accept_rc: AtomicIsize::new(0),
    }));
    let stack: &'static mut [u8] = Box::leak(vec![0u8; 256 * 1024].into_boxed_slice());
    // The top of the stack, 16-byte aligned.
    let top = ((stack.as_mut_ptr() as usize + stack.len()) & !15) as *mut c_void;
    let flags = libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD | libc::CLONE_SYSVSEM;
    // SAFETY: a thread on a leaked stack running thread_body, which makes raw syscalls
    // and touches only the leaked ctx and battery (no TLS, no allocation).
    let tid = unsafe {
        libc::clone(
            thread_body,
            top,
            flags,
            (ctx as *const ThreadCtx).cast_mut().cast(),
        )
    };
    if tid < 0 {
        all_denied(
            variant,
            t,
            errno(),
            "clone(CLONE_THREAD without CLONE_FILES)",
        );
        sys::close(n);
        sys::close(HIGH_FD);
        return;
    }
    let ok = if thread_swaps {
        // The thread swaps its N; ours is still the listener: accept4 caches it again.
        let swapped = wait_step(&ctx.step, 1);
        // SAFETY: NULL addr/addrlen are allowed by accept4(2).
        let r = unsafe { libc::accept4(n, std::ptr::null_mut(), std::ptr::null_mut(), 0) };
        let rc = if r < 0 {
            -(errno() as isize)
        } else {
            r as isize
        };
        if r >= 0 {
            sys::close(r);
        }
        ctx.accept_rc.store(rc, Ordering::SeqCst);
        ctx.step.store(2, Ordering::SeqCst);
        let fired = wait_step(&ctx.step, 3);
        swapped && fired && ctx.swap_rc.load(Ordering::SeqCst) >= 0
    } else {
        // We swap our N; the thread's N is still the listener: its accept4 caches it
        // again; we fire.
        let swapped = udp_at(n, false);
        if let Err(why) = &swapped {
            info(&format!("{variant}: swap failed: {why}"));
        }
        ctx.step.store(1, Ordering::SeqCst);
        let accepted = wait_step(&ctx.step, 2);
        if swapped.is_ok() && accepted {
            // SAFETY: the thread no longer touches the battery in this mode.
            unsafe { Battery::fire(battery, n) };
        }
        swapped.is_ok() && accepted
    };
    info(&format!(
        "{variant}: swap={} accept4={} fd {n} in the main thread is {}",
        rc_text(ctx.swap_rc.load(Ordering::SeqCst)),
        rc_text(ctx.accept_rc.load(Ordering::SeqCst)),
        describe(n)
    ));
    if ok {
        // SAFETY: the thread is done with the battery (step 3, or it never fires).
        unsafe { (*battery).report() };
    } else {
        setup_failed(variant, t, "the thread's steps did not complete");
    }
    sys::close(n);
    sys::close(HIGH_FD);
}
