//! `cross_escape`: one tenant (A) tries to reach another tenant (B).
//!
//! Modes (the mode word comes first, then `--key value` pairs in any order):
//!
//! * `cross_escape serve --listen IP:PORT --abstract NAME --home DIR` (tenant B):
//!   creates DIR (0700) if missing, writes DIR/secret.txt = "b-secret\n" (0600),
//!   listens on TCP IP:PORT and on the abstract AF_UNIX stream socket "\0NAME", prints
//!   `ready pid=<getpid()> listen=<IP:PORT actually bound>`, then forever: for each
//!   accepted connection prints `accepted tcp from <ip:port>` or `accepted unix`,
//!   sends "hello-from-b\n" and closes it. SIGTERM makes it exit 0.
//! * `cross_escape attack --b-home DIR --b-file PATH --b-addr IP:PORT --b-bind-ip IP
//!   --b-pid PID --b-abstract NAME --outside-file PATH --setuid-bin PATH
//!   --allowed-addr IP:PORT [--own-prefix P]` (tenant A): runs the attempts listed
//!   in the `attack` module, each printing exactly one line,
//!   `attempt <name>: blocked <ERRNO>` or `attempt <name>: ESCAPED <detail>`,
//!   then `done`, exit 0. `--own-prefix P` (optional, e.g. "127.1.0.") is A's own
//!   address prefix: listen_autobind also reports ESCAPED if the kernel bound the
//!   listener to an IP whose text does not start with P.
//! * `cross_escape whoami`: prints `euid=<geteuid()> uid=<getuid()>`, exit 0.
//!
//! Optional in every mode: `--timeout-secs N` (default 60 for `attack`, 0 = none
//! for the others); when it elapses `timeout` goes to stderr and the exit status is 3.
//! Usage errors name the argument on stderr and exit 2. Lines go to stdout with one
//! write(2) each (testbins' `say`), so nothing is buffered.

use std::collections::HashMap;
use std::ffi::c_int;
use testbins::{errno, say};

mod attack;
mod files;
mod net;
mod net2;
mod procs;
mod race;
mod serve;
mod toctou;

const ATTACK_KEYS: [&str; 9] = [
    "b-home",
    "b-file",
    "b-addr",
    "b-bind-ip",
    "b-pid",
    "b-abstract",
    "outside-file",
    "setuid-bin",
    "allowed-addr",
];

/// `attack` options that may be left out.
const ATTACK_OPTIONAL: [&str; 1] = ["own-prefix"];

/// `--key value` pairs after the mode word.
#[derive(Debug)]
pub struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(rest: &[String], keys: &[&str]) -> Opts {
        let mut map = HashMap::new();
        let mut it = rest.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                usage(&format!("unexpected argument {a:?}"))
            };
            if !keys.contains(&key) && key != "timeout-secs" {
                usage(&format!("unknown option --{key}"));
            }
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

    fn timeout(&self, default: u32) -> u32 {
        match self.0.get("timeout-secs") {
            None => default,
            Some(_) => self.parsed("timeout-secs"),
        }
    }
}

/// Prints `cross_escape: usage error: msg` on stderr and exits 2.
pub fn usage(msg: &str) -> ! {
    eprintln!("cross_escape: usage error: {msg}");
    eprintln!(
        "usage: cross_escape serve --listen IP:PORT --abstract NAME --home DIR\n       \
         cross_escape attack --b-home DIR --b-file PATH --b-addr IP:PORT --b-bind-ip IP \
         --b-pid PID --b-abstract NAME --outside-file PATH --setuid-bin PATH \
         --allowed-addr IP:PORT [--own-prefix P]\n       cross_escape whoami"
    );
    std::process::exit(2)
}

/// Symbolic errno name; `errno=<n>` for values not listed.
pub fn errname(e: i32) -> String {
    use libc::*;
    let n = match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        E2BIG => "E2BIG",
        ENOEXEC => "ENOEXEC",
        EBADF => "EBADF",
        ECHILD => "ECHILD",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        EXDEV => "EXDEV",
        ENODEV => "ENODEV",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        ETXTBSY => "ETXTBSY",
        ENOSPC => "ENOSPC",
        EROFS => "EROFS",
        EPIPE => "EPIPE",
        ENAMETOOLONG => "ENAMETOOLONG",
        ENOSYS => "ENOSYS",
        ELOOP => "ELOOP",
        ENOTSOCK => "ENOTSOCK",
        EDESTADDRREQ => "EDESTADDRREQ",
        EMSGSIZE => "EMSGSIZE",
        ENOPROTOOPT => "ENOPROTOOPT",
        EPROTOTYPE => "EPROTOTYPE",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        EOPNOTSUPP => "EOPNOTSUPP",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENETDOWN => "ENETDOWN",
        ENOBUFS => "ENOBUFS",
        ENETUNREACH => "ENETUNREACH",
        ECONNABORTED => "ECONNABORTED",
        ECONNRESET => "ECONNRESET",
        EISCONN => "EISCONN",
        ENOTCONN => "ENOTCONN",
        ETIMEDOUT => "ETIMEDOUT",
        ECONNREFUSED => "ECONNREFUSED",
        EHOSTUNREACH => "EHOSTUNREACH",
        EALREADY => "EALREADY",
        EINPROGRESS => "EINPROGRESS",
        _ => return format!("errno={e}"),
    };
    n.to_string()
}

/// `attempt <name>: blocked <ERRNO>`.
pub fn blocked(name: &str, e: i32) {
    say(&format!("attempt {name}: blocked {}", errname(e)));
}

/// `attempt <name>: blocked <ERRNO>` for the current errno, plus a stderr note
/// saying which step failed (for steps other than the attempt's own syscall).
pub fn blocked_at(name: &str, step: &str) {
    let e = errno();
    eprintln!("cross_escape: {name}: {step} failed: {}", errname(e));
    blocked(name, e);
}

/// `attempt <name>: ESCAPED <detail>`.
pub fn escaped(name: &str, detail: &str) {
    say(&format!("attempt {name}: ESCAPED {detail}"));
}

/// close(2), ignoring errors (attempt fds only).
pub fn close_fd(fd: c_int) {
    // SAFETY: the caller owns fd and does not use it afterwards.
    unsafe { libc::close(fd) };
}

extern "C" fn on_alarm(_: c_int) {
    let msg = b"timeout\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe; msg is a static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(testbins::TIMEOUT_EXIT);
    }
}

fn arm_timeout(secs: u32) {
    if secs > 0 {
        testbins::install_handler(libc::SIGALRM, on_alarm, false);
        // SAFETY: alarm(2) has no memory-safety preconditions.
        unsafe { libc::alarm(secs) };
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let Some(mode) = argv.get(1) else {
        usage("missing mode (serve, attack or whoami)")
    };
    let rest = &argv[2..];
    match mode.as_str() {
        "serve" => {
            let o = Opts::parse(rest, &["listen", "abstract", "home"]);
            arm_timeout(o.timeout(0));
            serve::run(&o)
        }
        "attack" => {
            let keys: Vec<&str> = ATTACK_KEYS
                .iter()
                .chain(&ATTACK_OPTIONAL)
                .copied()
                .collect();
            let o = Opts::parse(rest, &keys);
            let cfg = attack::Config::from_opts(&o);
            arm_timeout(o.timeout(60));
            attack::run(&cfg);
            say("done");
        }
        "whoami" => {
            let o = Opts::parse(rest, &[]);
            arm_timeout(o.timeout(0));
            // SAFETY: geteuid/getuid have no preconditions.
            let (euid, uid) = unsafe { (libc::geteuid(), libc::getuid()) };
            say(&format!("euid={euid} uid={uid}"));
        }
        m => usage(&format!("unknown mode {m:?} (serve, attack or whoami)")),
    }
}
