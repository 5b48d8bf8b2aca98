//! `holder_games --mode MODE --port P [--how H] [--recv R] [--conns N] [--delay-ms D]`
//!
//! A tenant that moves one accepted connection between descriptors and processes in
//! the ways a supervisor's holder cache must follow (fork, reparenting, dup and
//! F_DUPFD, SCM_RIGHTS, dup2 over the number in a child, pre-forked acceptors, many
//! forked children).
//!
//! Every mode starts the same way: SIGPIPE ignored, SIGUSR1 blocked (it is only ever
//! taken by `sigsuspend`, so a signal sent early is never lost), then socket,
//! setsockopt(SO_REUSEADDR), bind(127.0.0.1:P), listen; prints `ready pid=<host pid>`.
//!
//! The *worker* `<tag>` on descriptor `fd`: blocking read(2) of up to 4096 bytes in a
//! loop, printing `<tag> read hex=<hex>` and echoing each chunk back with write(2),
//! until the bytes read so far end in a line equal to `bye` (ASCII case-insensitive);
//! read returning 0 prints `<tag> eof`, an error `<tag> read err=<ERRNO>` (a failed
//! echo `<tag> write err=<ERRNO>`), both ending the loop. Then it prints
//! `<tag> closing`, close(2)s `fd`, prints `<tag> closed` and `<tag> lingering
//! pid=<host pid>`, and waits for SIGUSR1 before returning (so the process is still
//! alive, without the descriptor, for as long as the caller likes).
//!
//! Modes (after `ready`; D = `--delay-ms`, default 200, slept with nanosleep):
//! * `fork`: accept, `accepted`, fork. The parent close(2)s the connection at once,
//!   prints `parent closed`, waits for the child, prints `child status=<status>` and
//!   `done`. The child sleeps D, prints `child pid=<host pid>`, runs worker `conn 0`.
//! * `orphan --how close|immediate`: pipe2; fork a *server*; the first process closes
//!   the pipe's write end and reads the pipe until EOF (every other process has
//!   exited), reaps the server, prints `done`. The server accepts, prints `accepted`
//!   and `server forking`, forks a *worker child*; then `close`: close(2)s the
//!   connection, prints `server exiting`, `_exit(0)`; `immediate`: `_exit(0)` right
//!   after fork returns (no other call in between, the exit closes the descriptor).
//!   The worker child polls getppid() until the server is gone, sleeps D, prints
//!   `worker pid=<host pid> ppid=<ppid>` and runs worker `conn 0`.
//! * `dup --how dup|dupfd|dupfd-cloexec|dup2|dup3`: accept, `accepted`; duplicates
//!   the connection with dup(fd), fcntl(fd, F_DUPFD, 100), fcntl(fd,
//!   F_DUPFD_CLOEXEC, 100), dup2(fd, 77) or dup3(fd, 77, O_CLOEXEC); close(2)s the
//!   original; prints `switched fd=<new>`; sleeps D; runs worker `conn 0` on the new
//!   descriptor.
//! * `pass --recv early|late|mmsg`: socketpair(AF_UNIX, SOCK_DGRAM); fork a
//!   *receiver*, which closes the listener and its unused end, prints `receiver
//!   pid=<host pid>`, (`late`: waits for SIGUSR1), then receives one descriptor with
//!   recvmsg (`early`, `late`: one message with room for one SCM_RIGHTS fd) or
//!   recvmmsg (`mmsg`: two messages, the first with no control buffer, the second with
//!   room for the fd), prints `received fd=<n>` and runs worker `recv` on it. The
//!   first process closes its unused end, accepts, prints `accepted`, sends the
//!   connection with sendmsg(SCM_RIGHTS) (`mmsg`: after a plain one-byte message),
//!   close(2)s it, prints `sent and closed`, waits for the receiver, prints
//!   `receiver status=<status>` and `done`.
//! * `dup2-child --how dup2|dup3`: accept, `accepted`, fork. The child makes a pipe,
//!   dup2(pipe_w, conn) (or dup3(pipe_w, conn, 0)), writes `x` to the connection's
//!   number and reads it back from the pipe, prints `child replaced fd=<n>`,
//!   `_exit(0)`. The parent waits for it, prints `child status=<status>`, sleeps D and
//!   runs worker `conn 0` on the connection.
//! * `prefork --conns N`: N times, one after another: fork a child that accepts (the
//!   first process never accepts: it only listened), prints `accepted <i>` and runs
//!   worker `conn <i>`, then `_exit(0)`; the parent waits for it and prints `worker
//!   <i> status=<status>`. Then prints `done`.
//! * `many --conns N`: N times: accept, `accepted <i>`, fork; the child closes the
//!   listener and runs worker `conn <i>`, then `_exit(0)`; the parent close(2)s the
//!   connection. Then waits for all children (dying if one did not exit 0) and prints
//!   `done`.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use testbins::{
    accept_conn, ck, close, die, errno, errno_name, fail, hex, host_pid, install_handler,
    listen_tcp, say, say_ready, Args,
};

static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: c_int) {
    USR1.store(true, Ordering::SeqCst);
}

/// Blocks SIGUSR1 (so it stays pending until `wait_usr1`) and ignores SIGPIPE.
fn setup_signals() {
    install_handler(libc::SIGUSR1, on_usr1, true);
    // SAFETY: sigset_t is a plain C type; the calls only read/write these locals.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        ck(
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            "sigprocmask",
        );
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Waits (sigsuspend) for one SIGUSR1, then re-arms.
fn wait_usr1() {
    while !USR1.load(Ordering::SeqCst) {
        // SAFETY: an empty mask for the duration of sigsuspend; the handler only
        // touches an atomic.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigsuspend(&none);
        }
    }
    USR1.store(false, Ordering::SeqCst);
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(std::time::Duration::from_millis(ms));
}

/// write(2) all of `buf`; Err(errno) on failure.
fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: buf is a live slice; write reads at most buf.len() bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(errno());
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Whether the last complete line of `acc` is `bye`.
fn saw_bye(acc: &[u8]) -> bool {
    let Some(body) = acc.strip_suffix(b"\n") else {
        return false;
    };
    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(body);
    last.eq_ignore_ascii_case(b"bye")
}

/// The echo worker described in the module docs.
fn worker(tag: &str, fd: c_int) {
    let mut buf = [0u8; 4096];
    let mut acc = Vec::new();
    loop {
        // SAFETY: buf is a live, writable 4096-byte buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            say(&format!("{tag} read err={}", errno_name(errno())));
            break;
        }
        if n == 0 {
            say(&format!("{tag} eof"));
            break;
        }
        let data = &buf[..n as usize];
        say(&format!("{tag} read hex={}", hex(data)));
        if let Err(e) = write_all(fd, data) {
            say(&format!("{tag} write err={}", errno_name(e)));
            break;
        }
        acc.extend_from_slice(data);
        if saw_bye(&acc) {
            break;
        }
    }
    say(&format!("{tag} closing"));
    close(fd, "close connection");
    say(&format!("{tag} closed"));
    say(&format!("{tag} lingering pid={}", host_pid()));
    wait_usr1();
}

fn fork() -> libc::pid_t {
    // SAFETY: the process is single-threaded, so the child may keep running Rust code.
    ck(unsafe { libc::fork() }, "fork")
}

fn wait_child(pid: libc::pid_t) -> c_int {
    let mut status: c_int = 0;
    loop {
        // SAFETY: status is a live c_int; pid is our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            return status;
        }
        if errno() != libc::EINTR {
            fail("waitpid");
        }
    }
}

fn exit_now(code: c_int) -> ! {
    // SAFETY: _exit(2) ends the process without running atexit handlers.
    unsafe { libc::_exit(code) }
}

fn mode_fork(lfd: c_int, delay: u64) {
    let conn = accept_conn(lfd);
    say("accepted");
    let pid = fork();
    if pid == 0 {
        sleep_ms(delay);
        say(&format!("child pid={}", host_pid()));
        worker("conn 0", conn);
        exit_now(0);
    }
    close(conn, "close (parent)");
    say("parent closed");
    let status = wait_child(pid);
    say(&format!("child status={status}"));
    say("done");
}

fn mode_orphan(lfd: c_int, how: &str, delay: u64) {
    if how != "close" && how != "immediate" {
        die(&format!("--how must be close or immediate, got {how:?}"));
    }
    let mut p = [0 as c_int; 2];
    // SAFETY: p has room for the two descriptors pipe2 writes.
    ck(
        unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) },
        "pipe2",
    );
    let server = fork();
    if server == 0 {
        close(p[0], "close pipe read end");
        let conn = accept_conn(lfd);
        say("accepted");
        say("server forking");
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let child = fork();
        if child == 0 {
            // Wait (no notified call) until the server is gone.
            // SAFETY: getppid has no preconditions.
            while unsafe { libc::getppid() } == me {
                sleep_ms(5);
            }
            sleep_ms(delay);
            // SAFETY: getppid has no preconditions.
            let ppid = unsafe { libc::getppid() };
            say(&format!("worker pid={} ppid={ppid}", host_pid()));
            worker("conn 0", conn);
            exit_now(0);
        }
        if how == "immediate" {
            exit_now(0);
        }
        close(conn, "close (server)");
        say("server exiting");
        exit_now(0);
    }
    close(p[1], "close pipe write end");
    let mut b = [0u8; 1];
    loop {
        // SAFETY: b is a live 1-byte buffer.
        let n = unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
        if n == 0 {
            break;
        }
        if n < 0 && errno() != libc::EINTR {
            fail("read pipe");
        }
    }
    let status = wait_child(server);
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        die(&format!("server failed: status {status:#x}"));
    }
    say("done");
}

fn mode_dup(lfd: c_int, how: &str, delay: u64) {
    let conn = accept_conn(lfd);
    say("accepted");
    // SAFETY: descriptor-only calls on our own descriptor.
    let new = unsafe {
        match how {
            "dup" => libc::dup(conn),
            "dupfd" => libc::fcntl(conn, libc::F_DUPFD, 100),
            "dupfd-cloexec" => libc::fcntl(conn, libc::F_DUPFD_CLOEXEC, 100),
            "dup2" => libc::dup2(conn, 77),
            "dup3" => libc::dup3(conn, 77, libc::O_CLOEXEC),
            _ => die(&format!("unknown --how {how:?}")),
        }
    };
    ck(new, how);
    close(conn, "close original");
    say(&format!("switched fd={new}"));
    sleep_ms(delay);
    worker("conn 0", new);
}

fn send_fd(sock: c_int, fd: c_int) {
    let mut byte = *b"f";
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is a plain C struct; all pointers refer to live locals, the
    // control buffer is large enough for CMSG_SPACE(4) and aligned.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize;
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>(), fd);
        if libc::sendmsg(sock, &msg, 0) != 1 {
            fail("sendmsg(SCM_RIGHTS)");
        }
    }
}

/// The descriptor carried by a received message's control data.
///
/// # Safety
/// `msg` must describe a control buffer filled by the kernel.
unsafe fn fd_from(msg: &libc::msghdr) -> c_int {
    // SAFETY: per the caller, the control buffer is the kernel's.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            die(&format!(
                "no SCM_RIGHTS in the received message (controllen {}, flags {:#x})",
                msg.msg_controllen, msg.msg_flags
            ));
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<c_int>())
    }
}

fn recv_fd(sock: c_int, mmsg: bool) -> c_int {
    let mut bytes = [[0u8; 16]; 2];
    let mut control = [[0u64; 8]; 2];
    // SAFETY: the headers point at live locals sized as declared; the kernel fills
    // them; fd_from reads only what the kernel wrote.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<c_int>() as u32) as usize;
        let [b0, b1] = &mut bytes;
        let mut iovs = [
            libc::iovec {
                iov_base: b0.as_mut_ptr().cast(),
                iov_len: 16,
            },
            libc::iovec {
                iov_base: b1.as_mut_ptr().cast(),
                iov_len: 16,
            },
        ];
        let mut hdrs: [libc::mmsghdr; 2] = std::mem::zeroed();
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
        }
        if mmsg {
            // Only the second message has room for a descriptor.
            hdrs[1].msg_hdr.msg_control = control[1].as_mut_ptr().cast();
            hdrs[1].msg_hdr.msg_controllen = space;
            let n = loop {
                let n = libc::recvmmsg(sock, hdrs.as_mut_ptr(), 2, 0, std::ptr::null_mut());
                if n >= 0 || errno() != libc::EINTR {
                    break n;
                }
            };
            if n != 2 {
                fail(&format!("recvmmsg returned {n}"));
            }
            fd_from(&hdrs[1].msg_hdr)
        } else {
            hdrs[0].msg_hdr.msg_control = control[0].as_mut_ptr().cast();
            hdrs[0].msg_hdr.msg_controllen = space;
            let n = loop {
                let n = libc::recvmsg(sock, &mut hdrs[0].msg_hdr, 0);
                if n >= 0 || errno() != libc::EINTR {
                    break n;
                }
            };
            if n != 1 {
                fail(&format!("recvmsg returned {n}"));
            }
            fd_from(&hdrs[0].msg_hdr)
        }
    }
}

fn mode_pass(lfd: c_int, recv: &str) {
    if !["early", "late", "mmsg"].contains(&recv) {
        die(&format!("--recv must be early, late or mmsg, got {recv:?}"));
    }
    let mut sp = [0 as c_int; 2];
    // SAFETY: sp has room for the two descriptors socketpair writes.
    ck(
        unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, sp.as_mut_ptr()) },
        "socketpair",
    );
    let receiver = fork();
    if receiver == 0 {
        close(lfd, "close listener (receiver)");
        close(sp[0], "close sender end");
        say(&format!("receiver pid={}", host_pid()));
        if recv == "late" {
            wait_usr1();
        }
        let fd = recv_fd(sp[1], recv == "mmsg");
        say(&format!("received fd={fd}"));
        worker("recv", fd);
        exit_now(0);
    }
    close(sp[1], "close receiver end");
    let conn = accept_conn(lfd);
    say("accepted");
    if recv == "mmsg" {
        // SAFETY: a live one-byte buffer.
        if unsafe { libc::send(sp[0], b"a".as_ptr().cast(), 1, 0) } != 1 {
            fail("send plain message");
        }
    }
    send_fd(sp[0], conn);
    close(conn, "close (sender)");
    say("sent and closed");
    let status = wait_child(receiver);
    say(&format!("receiver status={status}"));
    say("done");
}

fn mode_dup2_child(lfd: c_int, how: &str, delay: u64) {
    if how != "dup2" && how != "dup3" {
        die(&format!("--how must be dup2 or dup3, got {how:?}"));
    }
    let conn = accept_conn(lfd);
    say("accepted");
    let pid = fork();
    if pid == 0 {
        let mut p = [0 as c_int; 2];
        // SAFETY: p has room for two descriptors.
        ck(unsafe { libc::pipe(p.as_mut_ptr()) }, "pipe");
        // SAFETY: descriptor-only calls.
        let r = unsafe {
            if how == "dup2" {
                libc::dup2(p[1], conn)
            } else {
                libc::dup3(p[1], conn, 0)
            }
        };
        ck(r, how);
        if let Err(e) = write_all(conn, b"x") {
            die(&format!("write to the replaced number: {}", errno_name(e)));
        }
        let mut b = [0u8; 1];
        // SAFETY: b is a live 1-byte buffer.
        let n = unsafe { libc::read(p[0], b.as_mut_ptr().cast(), 1) };
        if n != 1 || b != *b"x" {
            die(&format!("pipe read back {n} bytes: {b:?}"));
        }
        say(&format!("child replaced fd={conn}"));
        exit_now(0);
    }
    let status = wait_child(pid);
    say(&format!("child status={status}"));
    sleep_ms(delay);
    worker("conn 0", conn);
}

fn mode_prefork(lfd: c_int, conns: usize) {
    for i in 0..conns {
        let pid = fork();
        if pid == 0 {
            let conn = accept_conn(lfd);
            say(&format!("accepted {i}"));
            worker(&format!("conn {i}"), conn);
            exit_now(0);
        }
        let status = wait_child(pid);
        say(&format!("worker {i} status={status}"));
    }
    say("done");
}

fn mode_many(lfd: c_int, conns: usize) {
    let mut children = Vec::new();
    for i in 0..conns {
        let conn = accept_conn(lfd);
        say(&format!("accepted {i}"));
        let pid = fork();
        if pid == 0 {
            close(lfd, "close listener (child)");
            worker(&format!("conn {i}"), conn);
            exit_now(0);
        }
        close(conn, "close (parent)");
        children.push(pid);
    }
    for pid in children {
        let status = wait_child(pid);
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            die(&format!("child {pid} failed: status {status:#x}"));
        }
    }
    say("done");
}

fn main() {
    let args = Args::init(&["mode", "port", "how", "recv", "conns", "delay-ms"], &[]);
    setup_signals();
    let port: u16 = args.num("port", 0);
    let delay: u64 = args.num("delay-ms", 200);
    let mode = args.req("mode").to_string();
    let lfd = listen_tcp(port, false);
    say_ready();
    match mode.as_str() {
        "fork" => mode_fork(lfd, delay),
        "orphan" => mode_orphan(lfd, args.req("how"), delay),
        "dup" => mode_dup(lfd, args.req("how"), delay),
        "pass" => mode_pass(lfd, args.req("recv")),
        "dup2-child" => mode_dup2_child(lfd, args.req("how"), delay),
        "prefork" => mode_prefork(lfd, args.num("conns", 2)),
        "many" => mode_many(lfd, args.num("conns", 50)),
        other => die(&format!("unknown --mode {other:?}")),
    }
}
