//! `serve` mode (tenant B): secret file, TCP + abstract-unix listeners, greeting loop.

use crate::{net, usage, Opts};
use std::ffi::c_int;
use std::net::SocketAddrV4;
use testbins::{ck, die, errno, fail, install_handler, say};

const GREETING: &[u8] = b"hello-from-b\n";

extern "C" fn on_term(_: c_int) {
    // SAFETY: _exit(2) is async-signal-safe.
    unsafe { libc::_exit(0) };
}

pub fn run(o: &Opts) -> ! {
    let listen: SocketAddrV4 = o.parsed("listen");
    let name = o.req("abstract");
    if name.is_empty() || name.len() > 106 {
        usage("--abstract: name must be 1..=106 bytes");
    }
    let home = std::path::Path::new(o.req("home"));
    install_handler(libc::SIGTERM, on_term, false);
    write_secret(home);

    let tcp = listen_tcp(listen);
    let unix = listen_abstract(name);
    let bound = net::sockname4(tcp).map_or_else(|| listen.to_string(), |a| a.to_string());
    // SAFETY: getpid(2) has no preconditions.
    let pid = unsafe { libc::getpid() };
    say(&format!("ready pid={pid} listen={bound}"));

    let mut fds = [tcp, unix].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: fds is a live array of two pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            if errno() != libc::EINTR {
                fail("poll");
            }
            continue;
        }
        if fds[0].revents != 0 {
            accept_tcp(tcp);
        }
        if fds[1].revents != 0 {
            accept_unix(unix);
        }
    }
}

/// mkdir DIR (0700) if missing; DIR/secret.txt = "b-secret\n", mode 0600.
fn write_secret(home: &std::path::Path) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if !home.is_dir() {
        let r = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(home);
        r.unwrap_or_else(|e| die(&format!("mkdir {}: {e}", home.display())));
    }
    let path = home.join("secret.txt");
    let res = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            std::io::Write::write_all(&mut f, b"b-secret\n")
        });
    res.unwrap_or_else(|e| die(&format!("{}: {e}", path.display())));
}

fn set_reuseaddr(fd: c_int) {
    let one: c_int = 1;
    let len = std::mem::size_of::<c_int>() as libc::socklen_t;
    let p = (&one as *const c_int).cast();
    // SAFETY: p points to a live c_int and len is its size.
    let r = unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, p, len) };
    ck(r, "setsockopt(SO_REUSEADDR)");
}

fn listen_tcp(addr: SocketAddrV4) -> c_int {
    // SAFETY: socket(2) takes only integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    ck(fd, "socket(AF_INET)");
    // Like any server: a TIME_WAIT left by an earlier connection from this address (a
    // tenant's connections leave from its own address) must not block the bind.
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int of the stated size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ck(r, "setsockopt(SO_REUSEADDR)");
    set_reuseaddr(fd);
    let sa = testbins::sockaddr(*addr.ip(), addr.port());
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is a live sockaddr_in and len is its size.
    let r = unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), len) };
    ck(r, &format!("bind {addr}"));
    // SAFETY: listen(2) takes only integers.
    ck(unsafe { libc::listen(fd, 128) }, "listen(tcp)");
    fd
}

fn listen_abstract(name: &str) -> c_int {
    // SAFETY: socket(2) takes only integers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    ck(fd, "socket(AF_UNIX)");
    let (sa, len) = net::abstract_addr(name);
    // SAFETY: sa is a live sockaddr_un and len does not exceed its size.
    let r = unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_un).cast(), len) };
    ck(r, &format!("bind abstract {name:?}"));
    // SAFETY: listen(2) takes only integers.
    ck(unsafe { libc::listen(fd, 128) }, "listen(unix)");
    fd
}

fn accept_tcp(lfd: c_int) {
    // SAFETY: sockaddr_in is a plain C struct for which all-zeroes is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let p = (&mut sa as *mut libc::sockaddr_in).cast();
    // SAFETY: p/len describe the live, writable sa.
    let fd = unsafe { libc::accept4(lfd, p, &mut len, libc::SOCK_CLOEXEC) };
    if fd < 0 {
        return eprintln!("cross_escape: accept(tcp): {}", crate::errname(errno()));
    }
    say(&format!("accepted tcp from {}", net::from_sockaddr(&sa)));
    greet(fd);
}

fn accept_unix(lfd: c_int) {
    let (addr, len) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: NULL addr/addrlen are allowed by accept4(2).
    let fd = unsafe { libc::accept4(lfd, addr, len, libc::SOCK_CLOEXEC) };
    if fd < 0 {
        return eprintln!("cross_escape: accept(unix): {}", crate::errname(errno()));
    }
    say("accepted unix");
    greet(fd);
}

/// Sends the greeting (MSG_NOSIGNAL: a peer that already left must not kill B) and
/// closes the connection.
fn greet(fd: c_int) {
    let (p, n) = (GREETING.as_ptr().cast(), GREETING.len());
    // SAFETY: p/n describe the static greeting.
    let r = unsafe { libc::send(fd, p, n, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if r < 0 {
        eprintln!("cross_escape: send greeting: {}", crate::errname(errno()));
    }
    crate::close_fd(fd);
}
