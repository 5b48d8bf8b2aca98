//! Ping-pong server for the notification round-trip benchmark (`just bench`).
//!
//! Usage: `pingpong_server PORT`
//!
//! Listens on 127.0.0.1:PORT (0 picks a free port), prints `listening port=<P>` on
//! stdout, accepts ONE connection, then echoes 64-byte messages with blocking `read(2)`
//! and `write(2)` until the peer closes. In the normal case a round trip costs the
//! server exactly one `read` and one `write`; a short read (or write) is completed with
//! further calls, so the echo stays byte-exact whatever the kernel does.
//! Exits 0 after a clean EOF at a message boundary, 1 on any error.

use std::io::Write;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

const MSG: usize = 64;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingpong_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let port: u16 = std::env::args()
        .nth(1)
        .ok_or("usage: pingpong_server PORT")?
        .parse()
        .map_err(|e| format!("bad PORT: {e}"))?;
    let listener =
        TcpListener::bind(("127.0.0.1", port)).map_err(|e| format!("bind {port}: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening port={port}").map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
    }
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    drop(listener);
    conn.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let fd = conn.as_raw_fd();

    let mut buf = [0u8; MSG];
    let mut rounds: u64 = 0;
    loop {
        // Read one whole message; loop only on short reads.
        let mut got = 0;
        while got < MSG {
            // SAFETY: `fd` is the open socket owned by `conn`, which outlives this call;
            // the destination is the unfilled tail of `buf`, exactly `MSG - got` bytes long.
            let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), MSG - got) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("read after {rounds} round trips: {err}"));
            }
            if n == 0 {
                if got == 0 {
                    return Ok(()); // clean EOF at a message boundary
                }
                return Err(format!("EOF inside a message ({got} of {MSG} bytes)"));
            }
            got += n as usize;
        }
        // Echo it back; loop only on short writes.
        let mut sent = 0;
        while sent < MSG {
            // SAFETY: `fd` is the open socket owned by `conn`; the source is the unsent
            // tail of `buf`, exactly `MSG - sent` initialised bytes.
            let n = unsafe { libc::write(fd, buf[sent..].as_ptr().cast(), MSG - sent) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("write after {rounds} round trips: {err}"));
            }
            sent += n as usize;
        }
        rounds += 1;
    }
}
