//! The `--port` attempts: sendfile, splice in, tee, splice out, positional preadv2 on
//! the connection.

use crate::{close_fd, report};
use std::ffi::{c_int, c_long};
use std::os::fd::AsRawFd;
use testbins::{die, fail, poll1, say};

pub fn attempts(conn: c_int) {
    let path = std::env::temp_dir().join(format!("escape-sendfile-{}", std::process::id()));
    let tmp = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path);
    let tmp = tmp.unwrap_or_else(|e| die(&format!("tmp file {}: {e}", path.display())));
    let _ = std::fs::remove_file(&path);
    std::io::Write::write_all(&mut &tmp, b"sendfile\n").unwrap_or_else(|e| die(&format!("{e}")));
    let mut off: libc::off_t = 0;
    // SAFETY: off is a live off_t; both fds are open.
    let r = unsafe { libc::sendfile(conn, tmp.as_raw_fd(), &mut off, 9) };
    report("sendfile", r as c_long);

    let (mut p1, mut p2) = ([0 as c_int; 2], [0 as c_int; 2]);
    for p in [&mut p1, &mut p2] {
        // SAFETY: p is a live array of two c_ints.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_NONBLOCK) } != 0 {
            fail("pipe2");
        }
    }
    let (nb, null) = (libc::SPLICE_F_NONBLOCK, std::ptr::null_mut());
    if poll1(conn, libc::POLLIN, 5000) == 0 {
        say("splice_in skipped");
    } else {
        // SAFETY: NULL offsets are required for sockets and pipes; fds are open.
        let r = unsafe { libc::splice(conn, null, p1[1], null, 4096, nb) };
        report("splice_in", r as c_long);
    }
    // SAFETY: both are open pipe fds.
    let r = unsafe { libc::tee(p1[0], p2[1], 4096, nb) };
    report("tee", r as c_long);
    // SAFETY: NULL offsets are required for sockets and pipes; fds are open.
    let r = unsafe { libc::splice(p1[0], null, conn, null, 4096, nb) };
    report("splice_out", r as c_long);
    let mut buf = [0u8; 16];
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: iov describes the live, writable buf; offset 0 is positional I/O.
    let r = unsafe { libc::preadv2(conn, &iov, 1, 0, 0) };
    report("preadv2_offset", r as c_long);
    for fd in p1.into_iter().chain(p2).chain([conn]) {
        close_fd(Some(fd as c_long));
    }
    say("conn closed");
}
