//! Class 5: what A can see of B and of the host.
//!
//! * `sock_diag_tcp`, `sock_diag_udp`: NETLINK_SOCK_DIAG dumps of AF_INET TCP / UDP
//!   sockets. ESCAPED if B's socket (`--b-tcp` listening, `--b-udp`) is listed or any
//!   socket of another uid is; `denied errno=..` if the netlink socket or the dump is
//!   refused; `denied own-only listed=<n>` if only A's own sockets come back.
//! * `sock_diag_unix`: the AF_UNIX dump with names; ESCAPED if B's abstract socket
//!   (`--b-abstract`) or another uid's socket is listed.
//! * `proc_foreign_pids`: numeric /proc entries other than 1 owned by another uid
//!   (in a /proc of A's own PID namespace there are none).
//! * `proc_pid1`: /proc/1/cmdline is the host's init's (`--host-init`, hex) → ESCAPED.
//! * `proc_<label>` for each `--foreign label:pid:marker,...`: /proc/<pid> exists and
//!   its cmdline holds `marker` (that very process, not one of A's that happens to have
//!   the number) → ESCAPED; unreadable but listed → ESCAPED.
//! * `proc_b_status`, `proc_b_environ`, `proc_b_net_tcp` (`--b-pid`): readable and not
//!   A's own process → ESCAPED.
//!
//! `--part sock_diag|proc` runs one half (default both).
//!
//! `info` lines (not judged): /proc/self's NSpid and getpid(), the number of visible
//! pids, /proc/net/tcp's line count and whether B's listener is in it.

use crate::sys;
use crate::{denied, denied_because, escaped, info, Opts};
use std::ffi::c_int;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::fs::MetadataExt;
use testbins::{errno, escape_text};

const NETLINK_SOCK_DIAG: c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u8 = 10;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_UID: u32 = 0x40;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_UID: u16 = 7;

fn my_uid() -> u32 {
    // SAFETY: getuid(2) has no preconditions.
    unsafe { libc::getuid() }
}

pub fn run(o: &Opts) {
    let b_tcp = o.addr("b-tcp");
    let b_udp = o.addr("b-udp");
    let part = o.opt("part").unwrap_or("all");
    if part == "all" || part == "sock_diag" {
        let b_abstract = o.req("b-abstract").to_string();
        sock_diag_inet("sock_diag_tcp", libc::IPPROTO_TCP as u8, b_tcp, true);
        sock_diag_inet("sock_diag_udp", libc::IPPROTO_UDP as u8, b_udp, false);
        sock_diag_unix("sock_diag_unix", &b_abstract);
    }
    if part == "all" || part == "proc" {
        proc_checks(o, b_tcp);
    }
}

/// One netlink dump request; the messages' payloads of the reply (type, payload), or
/// Err(errno) of the socket, the send or an NLMSG_ERROR.
fn dump(req_payload: &[u8]) -> Result<Vec<Vec<u8>>, i32> {
    let fd = sys::socket_proto(
        libc::AF_NETLINK,
        libc::SOCK_RAW | libc::SOCK_CLOEXEC,
        NETLINK_SOCK_DIAG,
    )?;
    let result = dump_on(fd, req_payload);
    sys::close(fd);
    result
}

fn dump_on(fd: c_int, req_payload: &[u8]) -> Result<Vec<Vec<u8>>, i32> {
    let len = 16 + req_payload.len();
    let mut req = Vec::with_capacity(len);
    req.extend_from_slice(&(len as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    req.extend_from_slice(&flags.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // pid
    req.extend_from_slice(req_payload);
    // SAFETY: sockaddr_nl is a plain C struct for which all-zeroes is valid.
    let mut nl: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    nl.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    let nl_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: req and nl are live and of the lengths passed.
    let r = unsafe {
        libc::sendto(
            fd,
            req.as_ptr().cast(),
            req.len(),
            0,
            (&nl as *const libc::sockaddr_nl).cast(),
            nl_len,
        )
    };
    if r < 0 {
        return Err(errno());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if sys::poll1(fd, libc::POLLIN, 2000) == 0 {
            return Ok(out); // no NLMSG_DONE within 2 s: what came so far
        }
        // SAFETY: buf is a live, writable buffer of the length passed.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(errno());
        }
        let mut at = 0usize;
        let n = n as usize;
        while at + 16 <= n {
            let mlen = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4")) as usize;
            let mtype = u16::from_ne_bytes(buf[at + 4..at + 6].try_into().expect("2"));
            if mlen < 16 || at + mlen > n {
                return Ok(out);
            }
            let payload = &buf[at + 16..at + mlen];
            match mtype {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = i32::from_ne_bytes(payload[..4].try_into().expect("4"));
                    if e != 0 {
                        return Err(-e);
                    }
                }
                _ => out.push(payload.to_vec()),
            }
            at += (mlen + 3) & !3;
        }
    }
}

fn sock_diag_inet(name: &str, proto: u8, b: SocketAddrV4, listener: bool) {
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zero sockid (48).
    let mut req = vec![libc::AF_INET as u8, proto, 0, 0];
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&[0u8; 48]);
    let msgs = match dump(&req) {
        Ok(m) => m,
        Err(e) => return denied(name, e),
    };
    let me = my_uid();
    let (mut found, mut foreign, mut examples) = (None, 0usize, Vec::new());
    for m in &msgs {
        if m.len() < 72 {
            continue;
        }
        let state = m[1];
        let sport = u16::from_be_bytes([m[4], m[5]]);
        let src = Ipv4Addr::new(m[8], m[9], m[10], m[11]);
        let uid = u32::from_ne_bytes(m[64..68].try_into().expect("4"));
        let at = SocketAddrV4::new(src, sport);
        if at == b && (!listener || state == TCP_LISTEN) {
            found = Some(uid);
        }
        if uid != me {
            foreign += 1;
            if examples.len() < 3 {
                examples.push(format!("{at}(uid {uid})"));
            }
        }
    }
    let summary = format!(
        "{} sockets listed, {foreign} of other uids (e.g. {})",
        msgs.len(),
        examples.join(" ")
    );
    match found {
        Some(uid) => escaped(
            name,
            &format!("listed B's socket {b} (uid {uid}); {summary}"),
        ),
        None if foreign > 0 => escaped(name, &summary),
        None => denied_because(name, &format!("own-only listed={}", msgs.len())),
    }
}

fn sock_diag_unix(name: &str, b_abstract: &str) {
    // unix_diag_req: family, protocol, pad(2), states, ino, show, cookie(8).
    let mut req = vec![libc::AF_UNIX as u8, 0, 0, 0];
    req.extend_from_slice(&u32::MAX.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_UID).to_ne_bytes());
    req.extend_from_slice(&[0u8; 8]);
    let msgs = match dump(&req) {
        Ok(m) => m,
        Err(e) => return denied(name, e),
    };
    let me = my_uid();
    let mut want = vec![0u8];
    want.extend_from_slice(b_abstract.as_bytes());
    let (mut found, mut foreign, mut examples) = (false, 0usize, Vec::new());
    for m in &msgs {
        let mut at = 16usize; // unix_diag_msg
        let (mut sock_name, mut uid) = (None, None);
        while at + 4 <= m.len() {
            let alen = u16::from_ne_bytes([m[at], m[at + 1]]) as usize;
            let atype = u16::from_ne_bytes([m[at + 2], m[at + 3]]);
            if alen < 4 || at + alen > m.len() {
                break;
            }
            let data = &m[at + 4..at + alen];
            match atype {
                UNIX_DIAG_NAME => sock_name = Some(data.to_vec()),
                UNIX_DIAG_UID if data.len() >= 4 => {
                    uid = Some(u32::from_ne_bytes(data[..4].try_into().expect("4")))
                }
                _ => {}
            }
            at += (alen + 3) & !3;
        }
        if sock_name.as_deref() == Some(want.as_slice()) {
            found = true;
        }
        if uid.is_some_and(|u| u != me) {
            foreign += 1;
            if examples.len() < 3 {
                let n = sock_name.as_deref().map_or_else(String::new, escape_text);
                examples.push(format!("{n}(uid {})", uid.unwrap_or(0)));
            }
        }
    }
    let summary = format!(
        "{} unix sockets listed, {foreign} of other uids (e.g. {})",
        msgs.len(),
        examples.join(" ")
    );
    if found {
        escaped(
            name,
            &format!("listed B's abstract socket @{b_abstract}; {summary}"),
        );
    } else if foreign > 0 {
        escaped(name, &summary);
    } else {
        denied_because(name, &format!("own-only listed={}", msgs.len()));
    }
}

fn read(path: &str) -> Result<Vec<u8>, i32> {
    std::fs::read(path).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The owner uid of /proc/<pid>, if listed.
fn owner(pid: &str) -> Result<u32, i32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .map(|m| m.uid())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// "0100017F:1F90" as /proc/net/tcp spells 127.1.0.1:8080.
fn proc_net_spelling(a: SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(a.ip().octets()),
        a.port()
    )
}

fn proc_checks(o: &Opts, b_tcp: SocketAddrV4) {
    let me = my_uid();
    let status =
        String::from_utf8_lossy(&read("/proc/self/status").unwrap_or_default()).into_owned();
    let nspid = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .unwrap_or("?")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // SAFETY: getpid(2) has no preconditions.
    let pid = unsafe { libc::getpid() };
    info(&format!("proc_self NSpid={nspid} getpid={pid}"));

    let mut visible = 0usize;
    let mut foreign = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            visible += 1;
            if name == "1" {
                continue;
            }
            if let Ok(uid) = owner(&name) {
                if uid != me {
                    foreign.push(format!("{name}(uid {uid})"));
                }
            }
        }
    }
    info(&format!("proc_visible_pids n={visible}"));
    if foreign.is_empty() {
        denied_because("proc_foreign_pids", &format!("none of {visible} visible"));
    } else {
        let ex: Vec<&String> = foreign.iter().take(5).collect();
        escaped(
            "proc_foreign_pids",
            &format!(
                "{} of {visible} visible pids belong to other uids (e.g. {ex:?})",
                foreign.len()
            ),
        );
    }

    let host_init = unhex(o.req("host-init"));
    match read("/proc/1/cmdline") {
        Ok(c) if c == host_init => escaped(
            "proc_pid1",
            &format!("/proc/1 is the host's init: {}", escape_text(&c)),
        ),
        Ok(c) => denied_because("proc_pid1", &format!("pid 1 is {}", escape_text(&c))),
        Err(e) => denied("proc_pid1", e),
    }

    if let Some(list) = o.opt("foreign") {
        for item in list.split(',').filter(|s| !s.is_empty()) {
            let mut parts = item.splitn(3, ':');
            let (Some(label), Some(p), Some(marker)) = (parts.next(), parts.next(), parts.next())
            else {
                crate::usage(&format!("--foreign: bad item {item:?}"))
            };
            let name = format!("proc_{label}");
            match (owner(p), read(&format!("/proc/{p}/cmdline"))) {
                (Err(e), _) => denied(&name, e),
                (Ok(_), Ok(c)) if String::from_utf8_lossy(&c).contains(marker) => escaped(
                    &name,
                    &format!("/proc/{p} is listed: cmdline {}", escape_text(&c)),
                ),
                (Ok(uid), Ok(c)) if uid == me => denied_because(
                    &name,
                    &format!("pid {p} here is A's own process ({})", escape_text(&c)),
                ),
                (Ok(uid), Ok(c)) => escaped(
                    &name,
                    &format!(
                        "/proc/{p} is listed (uid {uid}): cmdline {}",
                        escape_text(&c)
                    ),
                ),
                (Ok(uid), Err(e)) => escaped(
                    &name,
                    &format!(
                        "/proc/{p} is listed (uid {uid}), cmdline unreadable {}",
                        sys::errname(e)
                    ),
                ),
            }
        }
    }

    let b_pid = o.req("b-pid");
    let b_owner = owner(b_pid);
    let own_process = b_owner == Ok(me);
    for (name, file) in [
        ("proc_b_status", "status"),
        ("proc_b_environ", "environ"),
        ("proc_b_net_tcp", "net/tcp"),
    ] {
        match read(&format!("/proc/{b_pid}/{file}")) {
            Err(e) => denied(name, e),
            Ok(_) if own_process => {
                denied_because(name, &format!("pid {b_pid} here is A's own process"))
            }
            Ok(c) => {
                let text = String::from_utf8_lossy(&c);
                let detail = match file {
                    "net/tcp" => format!(
                        "{} lines, B's listener {}listed",
                        text.lines().count(),
                        if text.contains(&proc_net_spelling(b_tcp)) {
                            ""
                        } else {
                            "not "
                        }
                    ),
                    _ => escape_text(&c[..c.len().min(80)]),
                };
                escaped(name, &format!("/proc/{b_pid}/{file} readable: {detail}"));
            }
        }
    }

    // The tenant's own network namespace: its /proc/self/net lists none of the host's
    // sockets, B's listener among them.
    match read("/proc/self/net/tcp") {
        Ok(c) => {
            let text = String::from_utf8_lossy(&c);
            info(&format!("proc_net_tcp lines={}", text.lines().count()));
            if text.contains(&proc_net_spelling(b_tcp)) {
                escaped(
                    "proc_self_net_tcp",
                    "B's listener is listed in /proc/self/net/tcp",
                );
            } else {
                denied_because("proc_self_net_tcp", "B's listener is not listed");
            }
        }
        Err(e) => denied("proc_self_net_tcp", e),
    }
}
