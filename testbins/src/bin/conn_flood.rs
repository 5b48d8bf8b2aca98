//! `conn_flood --port P --conns N [--threads T] [--unix PATH] [--postmaster-pid PID]
//!  [--cpu-pid PID] [--open-timeout S] [--drain-timeout S] [--poll-ms MS]
//!  [--user U] [--database D]`
//!
//! PostgreSQL connection flood for the pressure benchmark (`scripts/bench_pressure.sh`).
//! Speaks just enough of the v3 protocol: StartupMessage (user, database), then reads
//! messages until ReadyForQuery ('Z'); trust authentication only (an
//! AuthenticationRequest other than Ok, or an ErrorResponse, fails that connection).
//!
//! 1. Raises its own RLIMIT_NOFILE soft limit to the hard limit.
//! 2. Opens the monitor connection: over the unix socket PATH when `--unix` is given
//!    (untracked by a profile that tracks the TCP port), else over TCP. It runs
//!    `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'
//!    AND pid <> pg_backend_pid()` and dies unless that is 0. With `--postmaster-pid`,
//!    the number of the postmaster's children (/proc/PID/task/PID/children: aux
//!    processes, the monitor's backend, zombies not yet reaped) is the baseline.
//! 3. Samples utime+stime of `--cpu-pid` (/proc/PID/stat, clock ticks), if given.
//! 4. Open: T threads (default 4); connection i belongs to thread i % T, and each
//!    thread opens its connections one after another: connect(127.0.0.1:P), send the
//!    StartupMessage, read until 'Z'. open_s = from the start until every thread is
//!    done (all N ready, or `--open-timeout`, default 300 s, elapsed).
//! 5. Samples the CPU again; checks the monitor's count equals the connections opened.
//! 6. Close: the main thread sends Terminate ('X') on every connection and closes it,
//!    one after another. Drain: every `--poll-ms` (default 10) the monitor's count and
//!    the postmaster's children are read; drain_activity_s = from the first Terminate
//!    until the count is 0; drain_s = until the children are back to the baseline
//!    (every backend has exited and been reaped), or drain_activity_s without
//!    `--postmaster-pid`. Gives up after `--drain-timeout` (default 300 s).
//! 7. Waits until `--cpu-pid` is idle (at most 1 tick in 500 ms, for at most 15 s) and
//!    samples its CPU a third time.
//! 8. Prints one line of `key=value`: opened failed open_s open_p50_ms open_p99_ms
//!    open_max_ms drain_activity_s drain_s settle_s cpu_open_ticks cpu_close_ticks
//!    clk_tck cpu_open_us cpu_close_us cpu_us (the last three per connection); a phase
//!    that ran out of time reads `timeout`, CPU figures `-` without `--cpu-pid`.
//!    Exits 0 whenever it could measure (the benchmark prints, never asserts); 1 on a
//!    failure of the monitor connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use testbins::{die, say, Args};

/// A PostgreSQL backend message: its type byte and payload.
struct Msg {
    kind: u8,
    body: Vec<u8>,
}

fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut pkt = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    pkt.extend_from_slice(&body);
    pkt
}

fn read_msg<S: Read>(s: &mut S) -> Result<Msg, String> {
    let mut hdr = [0u8; 5];
    s.read_exact(&mut hdr).map_err(|e| format!("read: {e}"))?;
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if !(4..=(1 << 26)).contains(&len) {
        return Err(format!("bad message length {len}"));
    }
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
    Ok(Msg { kind: hdr[0], body })
}

/// The 'M' (message) field of an ErrorResponse.
fn error_text(body: &[u8]) -> String {
    for field in body.split(|&b| b == 0) {
        if let Some((&b'M', text)) = field.split_first() {
            return String::from_utf8_lossy(text).into_owned();
        }
    }
    String::from_utf8_lossy(body).into_owned()
}

/// Reads messages until ReadyForQuery; returns the DataRows' first columns seen.
fn until_ready<S: Read>(s: &mut S) -> Result<Vec<String>, String> {
    let mut first_cols = Vec::new();
    loop {
        let m = read_msg(s)?;
        match m.kind {
            b'Z' => return Ok(first_cols),
            b'E' => return Err(format!("server error: {}", error_text(&m.body))),
            b'R' if m.body.get(..4) != Some(&[0, 0, 0, 0][..]) => {
                return Err("server asks for a password (trust auth expected)".into())
            }
            b'D' if m.body.len() >= 6 => {
                let len = i32::from_be_bytes([m.body[2], m.body[3], m.body[4], m.body[5]]);
                let col = if len < 0 {
                    String::new()
                } else {
                    let end = (6 + len as usize).min(m.body.len());
                    String::from_utf8_lossy(&m.body[6..end]).into_owned()
                };
                first_cols.push(col);
            }
            _ => {}
        }
    }
}

fn startup<S: Read + Write>(s: &mut S, user: &str, database: &str) -> Result<(), String> {
    s.write_all(&startup_packet(user, database))
        .map_err(|e| format!("write: {e}"))?;
    until_ready(s).map(|_| ())
}

/// Simple-protocol query whose result is one number in the first column.
fn query_count<S: Read + Write>(s: &mut S, sql: &str) -> Result<u64, String> {
    let mut pkt = vec![b'Q'];
    pkt.extend_from_slice(&((sql.len() + 5) as u32).to_be_bytes());
    pkt.extend_from_slice(sql.as_bytes());
    pkt.push(0);
    s.write_all(&pkt).map_err(|e| format!("write: {e}"))?;
    let rows = until_ready(s)?;
    rows.first()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("unexpected result {rows:?}"))
}

const COUNT_SQL: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()";

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// utime+stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn children(pid: u32) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .ok()
        .map(|s| s.split_whitespace().count())
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

/// Raises the RLIMIT_NOFILE soft limit to the hard limit.
fn raise_nofile() {
    // SAFETY: rlimit is a plain C struct for which all-zeroes is valid.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: rl is a live rlimit that getrlimit fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 && rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: rl is a live, initialised rlimit; raising the soft limit up to the
        // hard limit needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn pct_ms(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "-".into();
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    format!("{:.2}", sorted[i].as_secs_f64() * 1e3)
}

struct Opened {
    conns: Vec<TcpStream>,
    lat: Vec<Duration>,
    failed: usize,
    first_error: Option<String>,
}

fn open_one(port: u16, user: &str, db: &str, deadline: Instant) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    startup(&mut s, user, db)?;
    s.set_read_timeout(None)
        .map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(s)
}

fn open_all(
    port: u16,
    n: usize,
    threads: usize,
    user: &str,
    db: &str,
    deadline: Instant,
) -> Opened {
    let out = Mutex::new(Opened {
        conns: Vec::with_capacity(n),
        lat: Vec::with_capacity(n),
        failed: 0,
        first_error: None,
    });
    std::thread::scope(|sc| {
        for t in 0..threads {
            let out = &out;
            sc.spawn(move || {
                let mine = (t..n).step_by(threads).count();
                let (mut conns, mut lat, mut failed, mut err) = (Vec::new(), Vec::new(), 0, None);
                for _ in 0..mine {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t0 = Instant::now();
                    match open_one(port, user, db, deadline) {
                        Ok(s) => {
                            lat.push(t0.elapsed());
                            conns.push(s);
                        }
                        Err(e) => {
                            failed += 1;
                            err.get_or_insert(e);
                        }
                    }
                }
                let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
                o.conns.append(&mut conns);
                o.lat.append(&mut lat);
                o.failed += failed;
                if o.first_error.is_none() {
                    o.first_error = err;
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

fn main() {
    let args = Args::init(
        &[
            "port",
            "conns",
            "threads",
            "unix",
            "postmaster-pid",
            "cpu-pid",
            "open-timeout",
            "drain-timeout",
            "poll-ms",
            "user",
            "database",
        ],
        &[],
    );
    let port: u16 = args.num("port", 5432);
    let n: usize = args.num("conns", 1000);
    let threads: usize = args.num("threads", 4usize).max(1);
    let pm: Option<u32> = args
        .get("postmaster-pid")
        .map(|_| args.num("postmaster-pid", 0));
    let cpu_pid: Option<u32> = args.get("cpu-pid").map(|_| args.num("cpu-pid", 0));
    let open_timeout = Duration::from_secs(args.num("open-timeout", 300u64));
    let drain_timeout = Duration::from_secs(args.num("drain-timeout", 300u64));
    let poll = Duration::from_millis(args.num("poll-ms", 10u64));
    let user = args.get("user").unwrap_or("postgres").to_string();
    let db = args.get("database").unwrap_or("postgres").to_string();
    raise_nofile();

    let mut mon: Box<dyn Stream> = match args.get("unix") {
        Some(p) => {
            Box::new(UnixStream::connect(p).unwrap_or_else(|e| die(&format!("monitor {p}: {e}"))))
        }
        None => Box::new(
            TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| die(&format!("monitor: {e}"))),
        ),
    };
    startup(&mut mon, &user, &db).unwrap_or_else(|e| die(&format!("monitor startup: {e}")));
    let count = |mon: &mut Box<dyn Stream>| {
        query_count(mon, COUNT_SQL).unwrap_or_else(|e| die(&format!("monitor query: {e}")))
    };
    let before = count(&mut mon);
    if before != 0 {
        die(&format!(
            "{before} client backends before the flood (expected 0)"
        ));
    }
    let base_children =
        pm.map(|p| children(p).unwrap_or_else(|| die(&format!("no /proc/{p}/task/{p}/children"))));
    let cpu = || cpu_pid.and_then(cpu_ticks);
    let cpu0 = cpu();

    // Open.
    let t_open = Instant::now();
    let mut opened = open_all(port, n, threads, &user, &db, t_open + open_timeout);
    let open_d = t_open.elapsed();
    let cpu1 = cpu();
    let ok = opened.conns.len();
    let open_s = if ok + opened.failed < n {
        "timeout".to_string()
    } else {
        secs(open_d)
    };
    if let Some(e) = &opened.first_error {
        eprintln!(
            "conn_flood: {} connection(s) failed; first: {e}",
            opened.failed
        );
    }
    let backends_open = count(&mut mon);
    if backends_open != ok as u64 {
        eprintln!("conn_flood: warning: {backends_open} client backends after opening {ok}");
    }

    // Close and drain.
    let t_close = Instant::now();
    for mut s in opened.conns.drain(..) {
        let _ = s.write_all(&[b'X', 0, 0, 0, 4]);
        drop(s);
    }
    let (mut act_d, mut proc_d) = (None, None);
    while t_close.elapsed() < drain_timeout {
        if act_d.is_none() && count(&mut mon) == 0 {
            act_d = Some(t_close.elapsed());
        }
        if proc_d.is_none() {
            match (pm, base_children) {
                (Some(p), Some(b)) => {
                    if children(p).is_some_and(|c| c <= b) {
                        proc_d = Some(t_close.elapsed());
                    }
                }
                _ => proc_d = act_d,
            }
        }
        if act_d.is_some() && proc_d.is_some() {
            break;
        }
        std::thread::sleep(poll);
    }
    let t_settle = Instant::now();
    let mut cpu2 = cpu();
    if cpu_pid.is_some() {
        while t_settle.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(500));
            let c = cpu();
            let idle = matches!((c, cpu2), (Some(a), Some(b)) if a <= b + 1);
            cpu2 = c;
            if idle {
                break;
            }
        }
    }
    let settle = t_settle.elapsed();
    drop(mon);

    opened.lat.sort();
    let tck = clk_tck();
    let per_conn_us = |ticks: u64| {
        if ok == 0 {
            "-".to_string()
        } else {
            format!("{:.0}", ticks as f64 * 1e6 / tck as f64 / ok as f64)
        }
    };
    let (co, cc, cu_o, cu_c, cu) = match (cpu0, cpu1, cpu2) {
        (Some(a), Some(b), Some(c)) => (
            (b - a).to_string(),
            (c - b).to_string(),
            per_conn_us(b - a),
            per_conn_us(c - b),
            per_conn_us(c - a),
        ),
        _ => ("-".into(), "-".into(), "-".into(), "-".into(), "-".into()),
    };
    let fmt = |d: Option<Duration>| d.map_or("timeout".to_string(), secs);
    say(&format!(
        "opened={ok} failed={} open_s={open_s} open_p50_ms={} open_p99_ms={} open_max_ms={} \
         drain_activity_s={} drain_s={} settle_s={} cpu_open_ticks={co} cpu_close_ticks={cc} \
         clk_tck={tck} cpu_open_us={cu_o} cpu_close_us={cu_c} cpu_us={cu}",
        opened.failed,
        pct_ms(&opened.lat, 0.5),
        pct_ms(&opened.lat, 0.99),
        pct_ms(&opened.lat, 1.0),
        fmt(act_d),
        fmt(proc_d),
        secs(settle),
    ));
}
