//! Ping-pong client for the notification round-trip benchmark (`just bench`).
//!
//! Usage: `pingpong_client PORT [N] [WARMUP]`
//!
//! Connects to 127.0.0.1:PORT (retrying for up to 10 s while the server starts), does
//! WARMUP (default 1000) untimed and then N (default 20000) timed round trips of a
//! 64-byte message with `write(2)` / `read(2)`, checks that every echo is byte-exact,
//! and prints one line:
//!
//!     rtt_us_median=<f> rtt_us_mean=<f> n=<N>
//!
//! Exits 0 on success, 1 on any error (including a wrong echo).

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const MSG: usize = 64;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pingpong_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn arg<T: std::str::FromStr>(i: usize, name: &str, default: Option<T>) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match std::env::args().nth(i) {
        Some(s) => s.parse().map_err(|e| format!("bad {name} {s:?}: {e}")),
        None => default.ok_or_else(|| "usage: pingpong_client PORT [N] [WARMUP]".to_string()),
    }
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                if e.kind() != std::io::ErrorKind::ConnectionRefused {
                    return Err(format!("connect 127.0.0.1:{port}: {e}"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(format!(
                    "connect 127.0.0.1:{port} (gave up after 10 s): {e}"
                ))
            }
        }
    }
}

fn write_all(fd: i32, buf: &[u8]) -> Result<(), String> {
    let mut sent = 0;
    while sent < buf.len() {
        // SAFETY: `fd` is an open socket owned by the caller's TcpStream; the source is
        // the unsent tail of `buf`, `buf.len() - sent` initialised bytes.
        let n = unsafe { libc::write(fd, buf[sent..].as_ptr().cast(), buf.len() - sent) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("write: {err}"));
        }
        sent += n as usize;
    }
    Ok(())
}

fn read_exact(fd: i32, buf: &mut [u8]) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: `fd` is an open socket owned by the caller's TcpStream; the destination
        // is the unfilled tail of `buf`, `buf.len() - got` writable bytes.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("read: {err}"));
        }
        if n == 0 {
            return Err(format!("unexpected EOF after {got} of {} bytes", buf.len()));
        }
        got += n as usize;
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let port: u16 = arg(1, "PORT", None)?;
    let n: usize = arg(2, "N", Some(20_000))?;
    let warmup: usize = arg(3, "WARMUP", Some(1_000))?;
    if n == 0 {
        return Err("N must be at least 1".into());
    }

    let conn = connect(port)?;
    conn.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let fd = conn.as_raw_fd();

    let mut msg = [0u8; MSG];
    let mut echo = [0u8; MSG];
    let mut rtts = Vec::with_capacity(n);
    for round in 0..(warmup + n) {
        // A different message every round, so a stale or duplicated echo is caught.
        let tag = (round as u64).to_le_bytes();
        for (i, b) in msg.iter_mut().enumerate() {
            *b = tag[i % 8] ^ (i as u8).wrapping_mul(31);
        }
        let t0 = Instant::now();
        write_all(fd, &msg)?;
        read_exact(fd, &mut echo)?;
        let dt = t0.elapsed();
        if echo != msg {
            return Err(format!("round {round}: echo differs from what was sent"));
        }
        if round >= warmup {
            rtts.push(dt.as_secs_f64() * 1e6);
        }
    }
    drop(conn);

    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    rtts.sort_by(f64::total_cmp);
    let mid = rtts.len() / 2;
    let median = if rtts.len() % 2 == 1 {
        rtts[mid]
    } else {
        (rtts[mid - 1] + rtts[mid]) / 2.0
    };
    println!("rtt_us_median={median:.3} rtt_us_mean={mean:.3} n={n}");
    Ok(())
}
