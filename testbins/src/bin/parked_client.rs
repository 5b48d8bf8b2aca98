//! `parked_client --port P --conns M [--tenant-pid T] [--cpu-pid S] [--settle-secs 1]
//!  [--idle-secs 5] [--serial 100] [--setup-timeout 300] [--wake-timeout 300]
//!  [--close-timeout 120]`
//!
//! Client of the parked-calls benchmark (`scripts/bench_pressure.sh`), against
//! `parked_threads` (M threads, each blocked in its own recv).
//!
//! 1. Raises its RLIMIT_NOFILE soft limit to the hard limit.
//! 2. Setup: connects M times to 127.0.0.1:P (one after another, TCP_NODELAY), then
//!    waits (epoll) for the byte 'r' each tenant thread sends right before its recv.
//!    With `--tenant-pid`, it then waits until M threads of that process are inside
//!    syscall 45 (recvfrom; first field of /proc/T/task/*/syscall: the kernel's own
//!    account of a task blocked in a syscall, which a call waiting for the supervisor's
//!    answer also shows). setup_s = from the first connect until then.
//! 3. Sleeps `--settle-secs`, then samples utime+stime of `--cpu-pid` (the supervisor:
//!    /proc/S/stat, clock ticks) around an idle wait of `--idle-secs`:
//!    idle_cpu_pct = ticks / CLK_TCK / idle-secs × 100 (% of one core).
//! 4. One at a time: on the first `--serial` connections (default 100), one after
//!    another, sends 'w' and waits for its echo while the others stay parked:
//!    serial_p50_ms / serial_p99_ms = latency of one wake. Then waits until all M
//!    threads are in recvfrom again (with `--tenant-pid`).
//! 5. Wake: sends the byte 'w' on every connection (one thread, one after another),
//!    then waits (epoll) until every connection has echoed it. wake_s = from the first
//!    send until the last echo.
//! 6. Close: closes every connection; with `--tenant-pid`, close_s = until that process
//!    has exited (gone from /proc or a zombie).
//! 7. Prints one line: `conns= setup_s= parked= idle_cpu_ticks= idle_cpu_pct=
//!    serial_p50_ms= serial_p99_ms= wake_s= woke= close_s=`; a phase that ran out of
//!    time reads `timeout` (the next phases are skipped and read `-`), CPU figures read
//!    `-` without `--cpu-pid`. Exits 0 whenever it measured (the benchmark prints,
//!    never asserts); 1 on a hard error (connect failed, a wrong byte, an early EOF).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use testbins::{ck, die, errno, fail, say, Args};

const SYS_RECVFROM: &str = "45";

/// Raises the RLIMIT_NOFILE soft limit to the hard limit.
fn raise_nofile() {
    // SAFETY: rlimit is a plain C struct for which all-zeroes is valid.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a live rlimit that getrlimit fills in.
    ck(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) },
        "getrlimit",
    );
    if rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: rl is a live, initialised rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        ck(
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) },
            "setrlimit",
        );
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf takes an integer and has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Threads of `pid` whose /proc/PID/task/TID/syscall starts with recvfrom's number.
fn threads_in_recv(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("syscall"))
                .is_ok_and(|s| s.split_whitespace().next() == Some(SYS_RECVFROM))
        })
        .count()
}

/// Waits until `m` threads of `pid` are in recvfrom, or `deadline`; returns how many are.
fn wait_parked(pid: u32, m: usize, deadline: Instant) -> usize {
    loop {
        let p = threads_in_recv(pid);
        if p >= m || Instant::now() >= deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The process has exited: gone from /proc, or a zombie.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].split_whitespace().next())
            .is_some_and(|st| st == "Z" || st == "X"),
    }
}

/// Waits until every stream has delivered exactly the byte `want`; returns how many
/// did before `deadline`. Dies on EOF, a read error or another byte.
fn await_byte_each(conns: &mut [TcpStream], want: u8, deadline: Instant) -> usize {
    // SAFETY: epoll_create1 takes only an integer flag.
    let ep = ck(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    );
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: ev is a live epoll_event; the fd is an open socket owned by conns.
        ck(
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.as_raw_fd(), &mut ev) },
            "epoll_ctl(ADD)",
        );
    }
    let mut done = 0;
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    while done < conns.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ms = left.as_millis().clamp(1, 1000) as i32;
        // SAFETY: evs is a live, writable array of evs.len() epoll_events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), evs.len() as i32, ms) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            fail("epoll_wait");
        }
        for ev in &evs[..n as usize] {
            let i = ev.u64 as usize;
            let mut b = [0u8; 16];
            let got = conns[i]
                .read(&mut b)
                .unwrap_or_else(|e| die(&format!("conn {i}: read: {e}")));
            if got == 0 {
                die(&format!(
                    "conn {i}: EOF while waiting for {:?}",
                    want as char
                ));
            }
            if got != 1 || b[0] != want {
                die(&format!(
                    "conn {i}: got {:?}, want {:?}",
                    &b[..got],
                    want as char
                ));
            }
            // SAFETY: the fd is open and registered; a NULL event is allowed for DEL.
            ck(
                unsafe {
                    libc::epoll_ctl(
                        ep,
                        libc::EPOLL_CTL_DEL,
                        conns[i].as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                },
                "epoll_ctl(DEL)",
            );
            done += 1;
        }
    }
    // SAFETY: ep is our own epoll fd, not used afterwards.
    unsafe { libc::close(ep) };
    done
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn main() {
    let args = Args::init(
        &[
            "port",
            "conns",
            "tenant-pid",
            "cpu-pid",
            "settle-secs",
            "idle-secs",
            "setup-timeout",
            "wake-timeout",
            "close-timeout",
            "serial",
        ],
        &[],
    );
    let port: u16 = args.num("port", 0);
    let m: usize = args.num("conns", 2000);
    let tenant: Option<u32> = args.get("tenant-pid").map(|_| args.num("tenant-pid", 0));
    let cpu_pid: Option<u32> = args.get("cpu-pid").map(|_| args.num("cpu-pid", 0));
    let settle = Duration::from_secs_f64(args.num("settle-secs", 1.0));
    let idle = Duration::from_secs_f64(args.num("idle-secs", 5.0));
    let setup_timeout = Duration::from_secs(args.num("setup-timeout", 300u64));
    let wake_timeout = Duration::from_secs(args.num("wake-timeout", 300u64));
    let close_timeout = Duration::from_secs(args.num("close-timeout", 120u64));
    let serial: usize = args.num("serial", 100);
    raise_nofile();

    let (mut ticks, mut pct) = ("-".to_string(), "-".to_string());
    let (mut wake_s, mut woke, mut close_s) = ("-".to_string(), 0, "-".to_string());
    let (mut serial_p50, mut serial_p99) = ("-".to_string(), "-".to_string());

    // Setup.
    let t0 = Instant::now();
    let deadline = t0 + setup_timeout;
    let mut conns = Vec::with_capacity(m);
    for i in 0..m {
        let c = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| die(&format!("connect {i}: {e}")));
        c.set_nodelay(true)
            .unwrap_or_else(|e| die(&format!("TCP_NODELAY: {e}")));
        conns.push(c);
    }
    let ready = await_byte_each(&mut conns, b'r', deadline);
    let parked = match tenant {
        Some(t) if ready == m => wait_parked(t, m, deadline),
        _ => ready,
    };
    let ok = ready == m && parked >= m;
    let setup_s = if ok {
        secs(t0.elapsed())
    } else {
        eprintln!(
            "parked_client: setup: {ready} of {m} ready, {parked} in recvfrom after {setup_timeout:?}"
        );
        "timeout".to_string()
    };

    if ok {
        // Idle.
        std::thread::sleep(settle);
        let c0 = cpu_pid.and_then(cpu_ticks);
        std::thread::sleep(idle);
        let c1 = cpu_pid.and_then(cpu_ticks);
        if let (Some(a), Some(b)) = (c0, c1) {
            ticks = (b - a).to_string();
            pct = format!(
                "{:.1}",
                (b - a) as f64 / clk_tck() as f64 / idle.as_secs_f64() * 100.0
            );
        }

        // One at a time.
        let k = serial.min(m);
        let t_ser = Instant::now() + wake_timeout;
        let mut lat = Vec::with_capacity(k);
        for (i, c) in conns.iter_mut().take(k).enumerate() {
            let left = t_ser.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            c.set_read_timeout(Some(left))
                .unwrap_or_else(|e| die(&format!("SO_RCVTIMEO: {e}")));
            let t = Instant::now();
            c.write_all(b"w")
                .unwrap_or_else(|e| die(&format!("conn {i}: write: {e}")));
            let mut b = [0u8; 1];
            match c.read(&mut b) {
                Ok(1) if b[0] == b'w' => lat.push(t.elapsed()),
                Ok(n) => die(&format!("conn {i}: got {:?}, want 'w'", &b[..n])),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => die(&format!("conn {i}: read: {e}")),
            }
            c.set_read_timeout(None)
                .unwrap_or_else(|e| die(&format!("SO_RCVTIMEO: {e}")));
        }
        lat.sort();
        let pct_ms = |p: f64| {
            if lat.len() < k || k == 0 {
                return if k == 0 {
                    "-".to_string()
                } else {
                    "timeout".to_string()
                };
            }
            let i = ((k as f64 * p).ceil() as usize).clamp(1, k) - 1;
            format!("{:.2}", lat[i].as_secs_f64() * 1e3)
        };
        (serial_p50, serial_p99) = (pct_ms(0.5), pct_ms(0.99));
        // Every thread back in recv before the wake.
        if let Some(t) = tenant {
            wait_parked(t, m, Instant::now() + wake_timeout);
        }

        // Wake.
        let t1 = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            c.write_all(b"w")
                .unwrap_or_else(|e| die(&format!("conn {i}: write: {e}")));
        }
        woke = await_byte_each(&mut conns, b'w', t1 + wake_timeout);
        wake_s = if woke == m {
            secs(t1.elapsed())
        } else {
            "timeout".into()
        };
    }

    // Close.
    let t2 = Instant::now();
    drop(conns);
    if let Some(t) = tenant {
        while !exited(t) && t2.elapsed() < close_timeout {
            std::thread::sleep(Duration::from_millis(10));
        }
        close_s = if exited(t) {
            secs(t2.elapsed())
        } else {
            "timeout".into()
        };
    }
    say(&format!(
        "conns={m} setup_s={setup_s} parked={parked} idle_cpu_ticks={ticks} idle_cpu_pct={pct} \
         serial_p50_ms={serial_p50} serial_p99_ms={serial_p99} wake_s={wake_s} woke={woke} close_s={close_s}"
    ));
}
