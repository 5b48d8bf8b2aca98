//! `hostile`: a hostile confined tenant (A) against another confined tenant (B), the
//! attack classes of issue 10. `tests/hostile.rs` runs B as `hostile serve` and A as one
//! of the attack modes, and asserts on the lines below.
//!
//! Modes (the mode word first, then `--key value` pairs in any order):
//!
//! * `serve --tcp IP:PORT --udp IP:PORT --abstract NAME` (tenant B): a TCP listener, a
//!   UDP socket and an abstract unix listener "\0NAME". Prints
//!   `ready pid=<host pid> tcp=<IP:PORT> udp=<IP:PORT>` (the ports actually bound), then
//!   for each TCP connection `accepted tcp from <ip:port>` (greets it with
//!   [`serve::GREETING`], which holds B's secret, and closes it), for each unix one
//!   `accepted unix`, for each datagram `udp from <ip:port> len=<n> data=<escaped>`.
//! * `stale ...` (A): class 1, a stale fd cache (see `stale`).
//! * `stale-send --fd N --variant V ...` (A, exec'd by `stale`): fires the send battery on
//!   fd N and prints its lines.
//! * `race --which NAME[,NAME...] ...` (A): class 2, check-then-CONTINUE races on the fd's
//!   type (see `race`).
//! * `fastopen ...` (A): class 3, TCP Fast Open (see `fastopen`).
//! * `spellings ...` (A): class 4, IPv6 spellings of IPv4 addresses (see `spell`).
//! * `leaks ...` (A): class 5, what A can see of others (see `leaks`).
//!
//! Lines (stdout, one write(2) each):
//! * `attack <name>: denied errno=<ERRNO>` or `attack <name>: denied <detail>`: held;
//! * `attack <name>: ESCAPED <detail>`: got through;
//! * `race <name>: tries=<n> escapes=<m> errors=<ERRNO:count,...>` (plus
//!   `race-detail <name>: ...` lines describing escapes);
//! * `poke udp|tcp <IP:PORT>`: A asks the test to send a datagram to / connect to that
//!   address (to show a socket bound or listening where it must not receives what is
//!   meant for B); A waits up to 3 s for it;
//! * `info <what>`: printed, not judged;
//! * `done` at the end (exit 0).
//!
//! Common option: `--timeout-secs N` (default 120; 0 = none): `timeout` on stderr and
//! exit 3 when it elapses. Usage errors exit 2.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use testbins::say;

mod fastopen;
mod leaks;
mod more;
mod race;
mod serve;
mod spell;
mod stale;
mod sys;

/// `--key value` pairs after the mode word.
#[derive(Debug)]
pub struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(rest: &[String]) -> Opts {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                usage(&format!("unexpected argument {a:?}"))
            };
            let Some(v) = it.next() else {
                usage(&format!("--{key} needs a value"))
            };
            map.insert(key.to_string(), v.clone());
        }
        Opts(map)
    }

    /// Value of a mandatory `--key`.
    pub fn req(&self, key: &str) -> &str {
        match self.0.get(key) {
            Some(v) => v,
            None => usage(&format!("--{key} is required")),
        }
    }

    /// Value of an optional `--key`.
    pub fn opt(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Mandatory `--key`, parsed.
    pub fn parsed<T: std::str::FromStr>(&self, key: &str) -> T {
        let v = self.req(key);
        v.parse()
            .unwrap_or_else(|_| usage(&format!("--{key}: invalid value {v:?}")))
    }

    /// Mandatory `--key` as IPv4 `ip:port`.
    pub fn addr(&self, key: &str) -> SocketAddrV4 {
        self.parsed(key)
    }

    /// Mandatory `--key` as an IPv4 address.
    pub fn ip(&self, key: &str) -> Ipv4Addr {
        self.parsed(key)
    }
}

/// Prints `hostile: usage error: msg` on stderr and exits 2.
pub fn usage(msg: &str) -> ! {
    eprintln!("hostile: usage error: {msg}");
    eprintln!(
        "usage: hostile serve|stale|stale-send|race|fastopen|spellings|leaks --key value ..."
    );
    std::process::exit(2)
}

/// `attack <name>: denied errno=<ERRNO>`.
pub fn denied(name: &str, errno: i32) {
    say(&format!(
        "attack {name}: denied errno={}",
        sys::errname(errno)
    ));
}

/// `attack <name>: denied <detail>`.
pub fn denied_because(name: &str, detail: &str) {
    say(&format!("attack {name}: denied {detail}"));
}

/// `attack <name>: ESCAPED <detail>`.
pub fn escaped(name: &str, detail: &str) {
    say(&format!("attack {name}: ESCAPED {detail}"));
}

/// `info <what>`.
pub fn info(what: &str) {
    say(&format!("info {what}"));
}

/// The tenant's own address (`$SUPERVISE_ADDRESS`, or `--own-ip`).
pub fn own_ip(o: &Opts) -> Ipv4Addr {
    if let Some(ip) = o.opt("own-ip") {
        return ip
            .parse()
            .unwrap_or_else(|_| usage(&format!("--own-ip: invalid value {ip:?}")));
    }
    match std::env::var("SUPERVISE_ADDRESS")
        .ok()
        .and_then(|a| a.parse().ok())
    {
        Some(ip) => ip,
        None => usage("no $SUPERVISE_ADDRESS (not a confined tenant?) and no --own-ip"),
    }
}

extern "C" fn on_alarm(_: libc::c_int) {
    let msg = b"timeout\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is a static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(testbins::TIMEOUT_EXIT);
    }
}

fn arm_timeout(o: &Opts, default: u32) {
    let secs: u32 = match o.opt("timeout-secs") {
        None => default,
        Some(_) => o.parsed("timeout-secs"),
    };
    if secs > 0 {
        testbins::install_handler(libc::SIGALRM, on_alarm, false);
        // SAFETY: alarm(2) has no memory-safety preconditions.
        unsafe { libc::alarm(secs) };
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let Some(mode) = argv.get(1) else {
        usage("missing mode")
    };
    let o = Opts::parse(&argv[2..]);
    match mode.as_str() {
        "serve" => {
            arm_timeout(&o, 0);
            serve::run(&o)
        }
        "stale" => {
            arm_timeout(&o, 120);
            stale::run(&o);
        }
        "stale-send" => {
            arm_timeout(&o, 60);
            stale::run_exec_child(&o);
            // The parent prints `done`.
            return;
        }
        "race" => {
            arm_timeout(&o, 300);
            race::run(&o);
        }
        "fastopen" => {
            arm_timeout(&o, 120);
            fastopen::run(&o);
        }
        "spellings" => {
            arm_timeout(&o, 120);
            spell::run(&o);
        }
        "leaks" => {
            arm_timeout(&o, 120);
            leaks::run(&o);
        }
        "more" => {
            arm_timeout(&o, 180);
            more::run(&o);
        }
        m => usage(&format!("unknown mode {m:?}")),
    }
    say("done");
}
