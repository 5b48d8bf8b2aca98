//! `more --part NAME ...`: attacks on the mechanisms added after issue 10 (the fd
//! cache keyed by fd table, the agent, the cgroup limits), run by `tests/hostile_more.rs`.
//!
//! Parts:
//! * `unshare_bypass --wrapped IP:PORT`: a thread gets a private fd table with
//!   `close_range(1000, 1000, CLOSE_RANGE_UNSHARE)` (the filter refuses such threads
//!   from `clone`, not from `close_range`). The main thread then closes its copy of a
//!   tracked stream (a forked child keeps it held), puts /dev/null at the same number
//!   and writes to it, so the supervisor caches "not a socket" for (table, N); the
//!   private-table thread, whose N is still the tracked stream, writes `BYPASS-RAW`
//!   and reads. The test's server tells whether the bytes passed the outbound rule.
//! * `control_overflow`: sendmsg on a unix socket with two control messages, the second
//!   with `cmsg_len` = 2^64 - 16 (the first one's end plus it wraps to 0). The kernel
//!   says EINVAL; the supervisor must say so too and keep answering.
//! * `agent_creds`: SCM_CREDENTIALS naming uid 0, pid 1 or the agent's guessed pids
//!   through the agent, and SO_PEERCRED of a unix connection the agent listened for.
//! * `tcp_memory --limit-mib L --target-mib T`: TCP connections from A to its own
//!   listener, written to without reading; bytes queued beyond the memory limit while
//!   A lives are memory outside its cgroup. Holds them 3 s after `holding` for the
//!   test to read the cgroup.
//! * `inotify_outside --dir D`: D is outside A's Landlock paths (world-readable, as
//!   /tmp is). A checks it cannot list D, then watches it with inotify, prints
//!   `watching`, and reports any file name it learns (the test creates one).
//! * `spool_memory --to IP:PORT --conns N --kib-each K`: N connections to a port the
//!   profile tracks with the `lines` framer, each sent K KiB without a newline (a
//!   message the supervisor must spool whole); prints `holding` and keeps them 3 s.
//! * `agent_stopped`: A stops its own agent (the pid in its namespace that exists but
//!   /proc does not show), parks 32 threads in blocking unix sends on it, and checks
//!   the supervisor still answers its other calls at once; then kills the agent and
//!   checks every parked call is answered (EIO).

use crate::sys::{self, Sa};
use crate::{denied, denied_because, escaped, info, own_ip, Opts};
use std::ffi::c_int;
use std::net::SocketAddrV4;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use testbins::{errno, say};

const CLOSE_RANGE_UNSHARE: usize = 2;

pub fn run(o: &Opts) {
    match o.req("part") {
        "unshare_bypass" => unshare_bypass(o),
        "control_overflow" => control_overflow(),
        "agent_creds" => agent_creds(),
        "tcp_memory" => tcp_memory(o),
        "inotify_outside" => inotify_outside(o),
        "agent_stopped" => agent_stopped(),
        "spool_memory" => spool_memory(o),
        p => crate::usage(&format!("unknown part {p:?}")),
    }
}

fn write_fd(fd: c_int, bytes: &[u8]) -> Result<usize, i32> {
    // SAFETY: bytes is a live slice.
    let r = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

fn so_type(fd: c_int) -> String {
    match sys::sockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        Ok(libc::SOCK_STREAM) => "a stream socket".into(),
        Ok(t) => format!("a socket of type {t}"),
        Err(e) => format!("not a socket ({})", sys::errname(e)),
    }
}

fn unshare_bypass(o: &Opts) {
    let name = "close_range_unshare_spool_bypass";
    let to: SocketAddrV4 = o.addr("wrapped");
    let s = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
        Ok(s) => s,
        Err(e) => {
            return say(&format!(
                "attack {name}: SETUP-FAILED socket {}",
                sys::errname(e)
            ))
        }
    };
    if let Err(e) = sys::connect(s, &Sa::v4(to)) {
        return say(&format!(
            "attack {name}: SETUP-FAILED connect {to} {}",
            sys::errname(e)
        ));
    }
    // Goes through the stream's outbound rule: the server sees <SUPERVISED-1>.
    let _ = write_fd(s, b"SUPERVISED-1");
    std::thread::sleep(Duration::from_millis(200));
    // A child that keeps the tracked stream held (so closing ours releases nothing).
    // SAFETY: fork in a process whose only other threads are none yet; the child only
    // calls async-signal-safe functions.
    let child = unsafe { libc::fork() };
    if child == 0 {
        loop {
            // SAFETY: pause(2) has no preconditions.
            unsafe { libc::pause() };
        }
    }
    if child < 0 {
        return say(&format!(
            "attack {name}: SETUP-FAILED fork {}",
            sys::errname(errno())
        ));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (to_thread, from_main) = mpsc::channel::<()>();
    let (to_main, from_thread) = mpsc::channel::<isize>();
    let thread = std::thread::spawn(move || {
        // SAFETY: close_range takes integers.
        let r = unsafe {
            sys::raw(
                libc::SYS_close_range,
                [1000, 1000, CLOSE_RANGE_UNSHARE, 0, 0, 0],
            )
        };
        to_main.send(r).unwrap();
        if r < 0 {
            return None;
        }
        from_main.recv().unwrap();
        let kind = so_type(s);
        let w = write_fd(s, b"BYPASS-RAW");
        let mut buf = [0u8; 64];
        // SAFETY: buf is live and writable.
        let rd = unsafe { libc::recv(s, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        let rd = if rd < 0 { -(errno() as isize) } else { rd };
        Some((kind, w, rd))
    });
    let r = from_thread.recv().unwrap();
    if r < 0 {
        denied(name, (-r) as i32);
        // SAFETY: kill/waitpid on our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        let _ = thread.join();
        return;
    }
    info(&format!(
        "{name}: a thread got a private fd table (close_range returned {r})"
    ));
    // Main thread: close its N (the supervisor swaps a placeholder into *this*
    // thread's table and forgets (table, N)), put /dev/null at N and write to it (the
    // supervisor caches "not a socket" for (table, N)).
    sys::close(s);
    // SAFETY: NUL-terminated literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY) };
    if null != s {
        let _ = sys::dup2(null, s);
        sys::close(null);
    }
    let _ = write_fd(s, b"x");
    info(&format!("{name}: main thread's fd {s} is {}", so_type(s)));
    to_thread.send(()).unwrap();
    let (kind, w, rd) = thread.join().unwrap().expect("thread result");
    info(&format!(
        "{name}: the thread's fd {s} is {kind}; its write returned {w:?}, its recv {rd}"
    ));
    std::thread::sleep(Duration::from_millis(300));
    // The test judges from what its server received; this line is only a summary.
    say(&format!("attack {name}: judged-by-test write={w:?}"));
    // SAFETY: kill/waitpid on our own child.
    unsafe {
        libc::kill(child, libc::SIGKILL);
        libc::waitpid(child, std::ptr::null_mut(), 0);
    }
}

/// One unix datagram socketpair (A's own).
fn dgram_pair() -> Option<(c_int, c_int)> {
    let mut p = [0 as c_int; 2];
    // SAFETY: p is a live array of two ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, p.as_mut_ptr()) };
    (r == 0).then_some((p[0], p[1]))
}

/// sendmsg with raw control bytes; Ok(n) or Err(errno).
fn sendmsg_control(fd: c_int, payload: &[u8], control: &mut [u64]) -> Result<usize, i32> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zeroes is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = control.as_mut_ptr().cast();
    m.msg_controllen = control.len() * 8;
    // SAFETY: m points to live locals for the call.
    let r = unsafe { libc::sendmsg(fd, &m, 0) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

fn control_overflow() {
    let name = "control_overflow";
    let Some((a, b)) = dgram_pair() else {
        return say(&format!("attack {name}: SETUP-FAILED socketpair"));
    };
    // [cmsghdr{16, SOL_SOCKET, SCM_RIGHTS}] [cmsghdr{2^64-16, SOL_SOCKET, SCM_RIGHTS}]
    let mut control = [0u64; 4];
    control[0] = 16;
    control[1] = (libc::SOL_SOCKET as u32 as u64) | ((libc::SCM_RIGHTS as u32 as u64) << 32);
    control[2] = 0u64.wrapping_sub(16);
    control[3] = control[1];
    let r = sendmsg_control(a, b"overflow", &mut control);
    info(&format!("{name}: sendmsg returned {r:?}"));
    // The supervisor still answers: an ordinary agent call afterwards.
    let after = sys::sendmsg(a, b"after", 0, None, None);
    let mut buf = [0u8; 16];
    // SAFETY: buf is live.
    let got = unsafe { libc::recv(b, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    match (r, after) {
        (Err(e), Ok(_)) => {
            info(&format!("{name}: the next sendmsg worked, recv {got}"));
            denied(name, e)
        }
        (Ok(n), _) => escaped(name, &format!("sendmsg with a wrapping cmsg_len sent {n}")),
        (Err(e), Err(e2)) => escaped(
            name,
            &format!(
                "sendmsg said {} but the next ordinary sendmsg failed with {}",
                sys::errname(e),
                sys::errname(e2)
            ),
        ),
    }
}

/// SCM_CREDENTIALS {pid, uid, gid} as control bytes.
fn creds_control(pid: i32, uid: u32, gid: u32) -> [u64; 4] {
    let mut c = [0u64; 4];
    c[0] = 16 + 12;
    c[1] = (libc::SOL_SOCKET as u32 as u64) | ((libc::SCM_CREDENTIALS as u32 as u64) << 32);
    c[2] = (pid as u32 as u64) | ((uid as u64) << 32);
    c[3] = gid as u64;
    c
}

/// Receives one datagram with SO_PASSCRED set; the credentials the kernel attached.
fn recv_creds(fd: c_int) -> Option<(i32, u32, u32)> {
    let mut buf = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is a plain C struct for which all-zeroes is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    m.msg_control = control.as_mut_ptr().cast();
    m.msg_controllen = 64;
    // SAFETY: m points to live locals.
    let n = unsafe { libc::recvmsg(fd, &mut m, libc::MSG_DONTWAIT) };
    if n < 0 {
        return None;
    }
    let kind = (control[1] >> 32) as i32;
    if kind != libc::SCM_CREDENTIALS {
        return None;
    }
    Some((
        control[2] as u32 as i32,
        (control[2] >> 32) as u32,
        control[3] as u32,
    ))
}

fn agent_creds() {
    // SAFETY: getuid/getgid/getpid have no preconditions.
    let (uid, gid, pid) = unsafe { (libc::getuid(), libc::getgid(), libc::getpid()) };
    let Some((a, b)) = dgram_pair() else {
        return say("attack scm_credentials_root: SETUP-FAILED socketpair");
    };
    let _ = sys::set_int(b, libc::SOL_SOCKET, libc::SO_PASSCRED, 1);
    let mut forged = vec![
        ("scm_credentials_uid0".to_string(), pid, 0u32, 0u32),
        ("scm_credentials_pid1".to_string(), 1, uid, gid),
    ];
    for p in 2..12 {
        if p != pid {
            forged.push((format!("scm_credentials_pid{p}"), p, uid, gid));
        }
    }
    for (name, fpid, fuid, fgid) in forged {
        let mut c = creds_control(fpid, fuid, fgid);
        match sendmsg_control(a, b"creds", &mut c) {
            Err(e) => denied(&name, e),
            Ok(_) => {
                let got = recv_creds(b);
                match got {
                    Some((rp, ru, rg)) if (ru, rg) == (uid, gid) && fpid != 1 && fuid == uid => {
                        // A pid that is not ours but is in our own namespace (the agent's).
                        info(&format!("{name}: accepted as pid={rp} uid={ru} gid={rg}"));
                        denied_because(&name, &format!("only our own uid {ru} (pid {rp})"));
                    }
                    other => escaped(&name, &format!("the receiver saw {other:?}")),
                }
            }
        }
    }
    // SO_PEERCRED of a unix connection the agent listened for.
    let name = "so_peercred_root";
    let l = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM).unwrap_or(-1);
    // SAFETY: sockaddr_un is a plain C struct for which all-zeroes is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as u16;
    for (i, ch) in b"peercred.sock".iter().enumerate() {
        sun.sun_path[i] = *ch as libc::c_char;
    }
    // SAFETY: the path is relative (the home is the cwd).
    unsafe { libc::unlink(c"peercred.sock".as_ptr()) };
    let len = (2 + 13) as libc::socklen_t;
    // SAFETY: sun is live for the calls.
    let rb = unsafe { libc::bind(l, (&sun as *const libc::sockaddr_un).cast(), len) };
    // SAFETY: integers.
    let rl = unsafe { libc::listen(l, 4) };
    let c = sys::socket(libc::AF_UNIX, libc::SOCK_STREAM).unwrap_or(-1);
    // SAFETY: as above.
    let rc = unsafe { libc::connect(c, (&sun as *const libc::sockaddr_un).cast(), len) };
    if rb != 0 || rl != 0 || rc != 0 {
        say(&format!(
            "attack {name}: SETUP-FAILED bind={rb} listen={rl} connect={rc} errno={}",
            sys::errname(errno())
        ));
        return;
    }
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut clen = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred/clen are live.
    unsafe {
        libc::getsockopt(
            c,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut clen,
        )
    };
    info(&format!(
        "{name}: peer of our own listener: pid={} uid={} gid={}",
        cred.pid, cred.uid, cred.gid
    ));
    if cred.uid == uid && cred.gid == gid {
        denied_because(name, &format!("peer uid {} is ours", cred.uid));
    } else {
        escaped(name, &format!("peer credentials {} {}", cred.uid, cred.gid));
    }
}

fn tcp_memory(o: &Opts) {
    let name = "tcp_buffers_outside_memcg";
    let limit: u64 = o.parsed::<u64>("limit-mib") << 20;
    let target: u64 = o.parsed::<u64>("target-mib") << 20;
    let own = own_ip(o);
    let l = sys::socket(libc::AF_INET, libc::SOCK_STREAM).expect("socket");
    sys::bind(l, &Sa::v4(SocketAddrV4::new(own, 0))).expect("bind own");
    // SAFETY: integers.
    unsafe { libc::listen(l, 512) };
    let Some(std::net::SocketAddr::V4(at)) = sys::local(l) else {
        return say(&format!("attack {name}: SETUP-FAILED no local address"));
    };
    let buf = vec![0x5au8; 65536];
    let mut held = Vec::new();
    let mut total: u64 = 0;
    let start = Instant::now();
    while total < target && held.len() < 2000 && start.elapsed() < Duration::from_secs(90) {
        let c = match sys::socket(libc::AF_INET, libc::SOCK_STREAM) {
            Ok(c) => c,
            Err(e) => {
                info(&format!("{name}: socket failed {}", sys::errname(e)));
                break;
            }
        };
        if let Err(e) = sys::connect(c, &Sa::v4(at)) {
            info(&format!("{name}: connect failed {}", sys::errname(e)));
            break;
        }
        // SAFETY: NULL address arguments are allowed.
        let a = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
        sys::set_nonblocking(c);
        let mut idle = 0;
        while idle < 5 {
            match write_fd(c, &buf) {
                Ok(n) if n > 0 => {
                    total += n as u64;
                    idle = 0;
                }
                _ => {
                    idle += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        held.push((c, a));
    }
    info(&format!(
        "{name}: {} MiB queued in {} loopback connections (memory limit {} MiB)",
        total >> 20,
        held.len(),
        limit >> 20
    ));
    say("holding");
    std::thread::sleep(Duration::from_secs(3));
    if total > limit {
        escaped(
            name,
            &format!(
                "{} MiB held in socket buffers, over the {} MiB memory limit, and A lives",
                total >> 20,
                limit >> 20
            ),
        );
    } else {
        denied_because(name, &format!("only {} MiB queued", total >> 20));
    }
    for (c, a) in held {
        sys::close(c);
        sys::close(a);
    }
}

fn inotify_outside(o: &Opts) {
    let name = "inotify_outside_landlock";
    let dir = std::ffi::CString::new(o.req("dir")).unwrap();
    // SAFETY: NUL-terminated path.
    let d = unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if d >= 0 {
        say(&format!(
            "attack {name}: SETUP-FAILED the directory is readable by A (not outside Landlock)"
        ));
        say("watching");
        return;
    }
    info(&format!(
        "{name}: open(dir) refused: {}",
        sys::errname(errno())
    ));
    // SAFETY: integer flags.
    let ifd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK) };
    // SAFETY: NUL-terminated path.
    let w = unsafe {
        libc::inotify_add_watch(
            ifd,
            dir.as_ptr(),
            libc::IN_CREATE | libc::IN_OPEN | libc::IN_MODIFY,
        )
    };
    if w < 0 {
        denied(name, errno());
        say("watching");
        return;
    }
    say("watching");
    let mut names = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if sys::poll1(ifd, libc::POLLIN, 100) == 0 {
            continue;
        }
        // SAFETY: buf is live.
        let n = unsafe { libc::read(ifd, buf.as_mut_ptr().cast(), buf.len()) };
        let mut at = 0usize;
        while n > 0 && at + 16 <= n as usize {
            let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
            let raw = &buf[at + 16..at + 16 + len];
            let nm = String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string();
            if !nm.is_empty() {
                names.push(nm);
            }
            at += 16 + len;
        }
    }
    if names.is_empty() {
        denied_because(name, "the watch saw no names");
    } else {
        escaped(
            name,
            &format!("learned names in a directory Landlock keeps A from listing: {names:?}"),
        );
    }
}

/// The pid (in A's namespace) that answers kill(pid, 0) but has no /proc entry.
fn find_agent() -> Option<c_int> {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    (2..64).find(|&p| {
        // SAFETY: signal 0 only checks.
        p != me
            && unsafe { libc::kill(p, 0) } == 0
            && !std::path::Path::new(&format!("/proc/{p}")).exists()
    })
}

fn agent_stopped() {
    let name = "agent_stopped_stalls_supervisor";
    let Some(agent) = find_agent() else {
        return say(&format!(
            "attack {name}: SETUP-FAILED no hidden pid (agent)"
        ));
    };
    info(&format!(
        "{name}: the agent is pid {agent} in A's namespace"
    ));
    // SAFETY: signalling our own agent.
    if unsafe { libc::kill(agent, libc::SIGSTOP) } != 0 {
        denied(name, errno());
        return;
    }
    std::thread::sleep(Duration::from_millis(100));
    let mut threads = Vec::new();
    for i in 0..32 {
        threads.push(std::thread::spawn(move || {
            let Some((a, _b)) = dgram_pair() else {
                return -1;
            };
            let t0 = Instant::now();
            let r = sys::sendmsg(a, format!("parked-{i}").as_bytes(), 0, None, None);
            let _ = t0;
            match r {
                Ok(_) => 0,
                Err(e) => e,
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Other notified calls are answered while 32 calls wait on the stopped agent.
    // SAFETY: NUL-terminated literal.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY) };
    let t0 = Instant::now();
    for _ in 0..200 {
        let _ = write_fd(null, b"x");
    }
    let took = t0.elapsed();
    info(&format!(
        "{name}: 200 writes took {took:?} while 32 sends waited on the agent"
    ));
    // A non-blocking unix send now (in a thread: it waits for the stopped agent too).
    let (a, _b) = dgram_pair().unwrap();
    let nonblocking = std::thread::spawn(move || {
        let t1 = Instant::now();
        let nb = sys::sendmsg(a, b"nonblocking", libc::MSG_DONTWAIT, None, None);
        (nb, t1.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1500));
    info(&format!(
        "{name}: a MSG_DONTWAIT unix sendmsg has returned after 1.5 s: {}",
        nonblocking.is_finished()
    ));
    // SAFETY: killing our own agent.
    unsafe { libc::kill(agent, libc::SIGKILL) };
    let (nb, after) = nonblocking.join().unwrap();
    info(&format!(
        "{name}: the MSG_DONTWAIT sendmsg returned {nb:?} after {after:?} (the agent was killed at 1.5 s)"
    ));
    let t2 = Instant::now();
    let results: Vec<i32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    info(&format!(
        "{name}: after SIGKILL of the agent the 32 parked sends returned within {:?}: {:?}",
        t2.elapsed(),
        results.iter().map(|&e| sys::errname(e)).collect::<Vec<_>>()
    ));
    if took > Duration::from_secs(2) {
        escaped(
            name,
            &format!("200 notified writes took {took:?} while the agent was stopped"),
        );
    } else {
        denied_because(name, &format!("200 writes in {took:?}"));
    }
    let after = sys::sendmsg(a, b"after", 0, None, None);
    say(&format!(
        "attack agent_killed_calls_answered: denied parked={} then {:?}",
        results.len(),
        after.map_err(sys::errname)
    ));
}

fn spool_memory(o: &Opts) {
    let to: SocketAddrV4 = o.addr("to");
    let conns: usize = o.parsed("conns");
    let each: usize = o.parsed::<usize>("kib-each") << 10;
    let chunk = vec![b'a'; 64 * 1024];
    let mut held = Vec::new();
    let mut taken: u64 = 0;
    for _ in 0..conns {
        let Ok(c) = sys::socket(libc::AF_INET, libc::SOCK_STREAM) else {
            break;
        };
        if sys::connect(c, &Sa::v4(to)).is_err() {
            break;
        }
        sys::set_nonblocking(c);
        let mut sent = 0;
        while sent < each {
            match write_fd(c, &chunk[..chunk.len().min(each - sent)]) {
                Ok(n) if n > 0 => sent += n,
                _ => break,
            }
        }
        taken += sent as u64;
        held.push(c);
    }
    info(&format!(
        "spool_memory: {} MiB taken by the supervisor without a newline over {} connections",
        taken >> 20,
        held.len()
    ));
    say("holding");
    std::thread::sleep(Duration::from_secs(3));
    say(&format!(
        "attack spool_memory: judged-by-test taken={}",
        taken
    ));
    for c in held {
        sys::close(c);
    }
}
