//! Confinement against a hostile tenant (issue 10): the `hostile` testbin runs as
//! confined tenant A while confined tenant B (`hostile serve`) runs with a TCP listener
//! that greets with its secret, a UDP socket that reports every datagram and an
//! abstract unix listener. Each test is one attack class; every attempt in it must be
//! refused (`attack NAME: denied ...`), every race must end with `escapes=0`, and
//! nothing may reach B or the test's own observers (a UDP socket on 127.0.0.1, UDP6 and
//! TCP6 on ::1, an AF_PACKET capture of IPv6 for the address-spelling test).
//!
//! 1. A stale fd cache: clone(CLONE_FILES) children, exec in one, threads without
//!    CLONE_FILES (`stale_fd_cache_*`).
//! 2. Check-then-CONTINUE races on what an fd is (`race_*`; tries are printed).
//! 3. TCP Fast Open (`tcp_fast_open_is_refused`).
//! 4. IPv6 spellings of IPv4 addresses and plain IPv6 (`ipv6_spellings_...`).
//! 5. What A sees of others: NETLINK_SOCK_DIAG, /proc (`sock_diag_...`, `proc_...`).
//!
//! Run as root with `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod confined;
#[path = "hostile/harness.rs"]
mod harness;

use std::collections::HashSet;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use harness::*;

/// The sends of the battery `hostile stale` fires on a stale descriptor.
const BATTERY: [&str; 7] = [
    "sendto_b",
    "sendmsg_b",
    "sendmmsg_b",
    "pktinfo_b_range_to_host",
    "pktinfo_b_range_to_b",
    "pktinfo_host_to_b",
    "pktinfo_unassigned_to_host",
];

fn battery(variant: &str) -> Vec<String> {
    BATTERY.iter().map(|s| format!("{variant}_{s}")).collect()
}

/// Runs `hostile stale --only VARIANTS` as A; every send must be refused and nothing
/// may reach B or the test.
fn stale(variants: &[&str], profile_extra: impl FnOnce(&Stage) -> (String, Vec<String>)) {
    let mut st = Stage::start();
    let (extra, extra_args) = profile_extra(&st);
    let mut args: Vec<String> = vec!["stale".into(), "--only".into(), variants.join(",")];
    args.extend(st.common_args());
    args.extend(extra_args);
    let run = st.run_a(&extra, &args);
    let mut failures = Vec::new();
    for v in variants {
        failures.extend(run.not_denied(&battery(v)));
    }
    failures.extend(st.leaks());
    assert_none("stale fd cache", &failures, &run);
}

/// A clone(CLONE_FILES) child (its own tgid, the parent's fd table) closes the number
/// of the parent's tracked listener (and, second variant, of a tracked connection to
/// an allowed place) and opens a UDP socket there; the parent sends on it.
#[test]
fn stale_fd_cache_clone_files_child_swaps() {
    stale(
        &["clone_files_child_swaps", "stream_clone_files_child_swaps"],
        |st| {
            let port = st.allowed.addr.port();
            (
                format!("[[stream]]\nname = \"allowed\"\nremote_port = {port}\nframer = \"raw\"\n"),
                vec!["--allowed-tcp".into(), st.allowed.addr.to_string()],
            )
        },
    );
}

/// The parent puts a UDP socket under its tracked listener's number after a
/// clone(CLONE_FILES); the child, which inherited the cached listener, sends on it.
#[test]
fn stale_fd_cache_clone_files_parent_swaps() {
    stale(&["clone_files_parent_swaps"], |_| (String::new(), vec![]));
}

/// As above, but the child execs first (exec gives it a private copy of the table) and
/// the new image sends.
#[test]
fn stale_fd_cache_clone_files_exec() {
    stale(&["clone_files_exec"], |_| (String::new(), vec![]));
}

/// A thread with CLONE_THREAD|CLONE_VM|CLONE_SIGHAND and no CLONE_FILES: one tgid, two
/// fd tables. One table's N becomes UDP while the other's stays the tracked listener
/// (re-cached by an accept4); the UDP side sends.
#[test]
fn stale_fd_cache_thread_without_clone_files() {
    stale(
        &["thread_private_thread_swaps", "thread_private_main_swaps"],
        |_| (String::new(), vec![]),
    );
}

/// Runs `hostile race --which RACES`: each must end with escapes=0 after enough tries.
fn races(which: &[&str]) {
    let mut st = Stage::start();
    let mut args: Vec<String> = [
        "race",
        "--which",
        &which.join(","),
        "--tries",
        "5000",
        "--secs",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(st.common_args());
    let run = st.run_a("", &args);
    let mut failures = Vec::new();
    for w in which {
        match run.race(w) {
            None => failures.push(format!("race {w}: no result line from A")),
            Some((tries, escapes, line)) => {
                eprintln!("race {w}: {tries} tries, {escapes} escapes ({line})");
                if escapes > 0 {
                    failures.push(line);
                } else if tries < 100 {
                    failures.push(format!("{line} (too few tries to mean anything)"));
                }
            }
        }
    }
    failures.extend(st.leaks());
    assert_none("check-then-CONTINUE race", &failures, &run);
}

/// sendto(N, MSG_FASTOPEN, B) while N flips between a unix and a TCP socket.
#[test]
fn race_fastopen_sendto_on_flipping_fd() {
    races(&["fastopen_tcp"]);
}

/// connect(N, B) (TCP and UDP) while N flips between a unix and an IP socket.
#[test]
fn race_connect_on_flipping_fd() {
    races(&["connect_tcp", "connect_udp"]);
}

/// bind(N, B's address / the wildcard) (TCP and UDP) while N flips; a socket bound
/// there would be shown what the test sends to B's address.
#[test]
fn race_bind_on_flipping_fd() {
    races(&["bind_tcp_b", "bind_tcp_wild", "bind_udp_b", "bind_udp_wild"]);
}

/// listen(N) on an unbound TCP socket while N flips: the kernel would bind the
/// wildcard, and the test's connection to B's address would land in A's accept.
#[test]
fn race_listen_on_flipping_fd() {
    races(&["listen"]);
}

/// sendmsg(N) with a name (B) and with an IP_PKTINFO source in B's range while N flips.
#[test]
fn race_sendmsg_on_flipping_fd() {
    races(&["sendmsg_b", "sendmsg_pktinfo"]);
}

/// TCP_FASTOPEN_CONNECT then connect, and MSG_FASTOPEN on sendto/sendmsg/sendmmsg, to B
/// and to an allowed place: every one is an error and nothing connects.
#[test]
fn tcp_fast_open_is_refused() {
    let mut st = Stage::start();
    let args: Vec<String> = vec![
        "fastopen".into(),
        "--b-tcp".into(),
        st.b_tcp.to_string(),
        "--allowed-tcp".into(),
        st.allowed.addr.to_string(),
    ];
    let run = st.run_a("", &args);
    let names: Vec<String> = [
        "tfo_connect_b",
        "tfo_connect_b_v4mapped",
        "tfo_sendto_b",
        "msg_fastopen_sendto_b",
        "msg_fastopen_sendmsg_b",
        "msg_fastopen_sendmmsg_b",
        "msg_fastopen_sendto_b_v4mapped",
        "msg_fastopen_sendto_allowed",
        "msg_fastopen_sendmsg_allowed",
        "msg_fastopen_sendmmsg_allowed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut failures = run.not_denied(&names);
    let allowed = st
        .allowed
        .accepted
        .load(std::sync::atomic::Ordering::SeqCst);
    if allowed > 0 {
        failures.push(format!(
            "the allowed listener accepted {allowed} Fast Open connection(s)"
        ));
    }
    failures.extend(st.leaks());
    assert_none("TCP Fast Open", &failures, &run);
}

/// The IPv6 spellings of `ip` A uses (see the testbin's `spell` module).
fn spellings(ip: Ipv4Addr) -> Vec<Ipv6Addr> {
    let o = ip.octets();
    let (hi, lo) = (
        u16::from_be_bytes([o[0], o[1]]),
        u16::from_be_bytes([o[2], o[3]]),
    );
    vec![
        ip.to_ipv6_compatible(),
        ip.to_ipv6_mapped(),
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, hi, lo),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
        Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
    ]
}

/// IPv4-compatible, IPv4-mapped, IPv4-translated, NAT64 and 6to4 spellings of B's
/// address, ::127.0.0.1, ::1 and a global address, by UDP6 and TCP6, from a tenant
/// whose profile allows no peers by address: every one refused, no IPv6 packet to
/// any of them on any interface, nothing at B or at the test's ::1 sockets.
#[test]
fn ipv6_spellings_and_plain_ipv6_are_refused() {
    let mut st = Stage::start();
    let capture = Capture::ipv6();
    let mut args: Vec<String> = vec!["spellings".into()];
    args.extend(st.common_args());
    args.extend([
        "--host-udp6".into(),
        st.host_udp6.local_addr().unwrap().to_string(),
        "--host-tcp6".into(),
        st.host_tcp6.local_addr().unwrap().to_string(),
    ]);
    let run = st.run_a("", &args);
    let mut names: Vec<String> = Vec::new();
    for proto in ["udp", "tcp"] {
        for a in [
            "v4compat_b",
            "v4mapped_b",
            "v4translated_b",
            "nat64_b",
            "6to4_b",
            "loopback6",
            "global6",
        ] {
            names.push(format!("{proto}_{a}"));
        }
    }
    names.extend(
        [
            "udp_v4compat_host",
            "sendmsg_v4compat_b",
            "sendmsg_nat64_b",
            "udp_connect_v4compat_b",
        ]
        .map(String::from),
    );
    // Where the kernel would send an IPv4-compatible spelling (not asserted: a route
    // that leaves loopback is what makes these spellings dangerous).
    let compat = st.b_udp.ip().to_ipv6_compatible().to_string();
    if let Ok(out) = std::process::Command::new("ip")
        .args(["-6", "route", "get", &compat])
        .output()
    {
        eprintln!(
            "ip -6 route get {compat}: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let mut failures = run.not_denied(&names);
    // Packets are queued on the capture as they are sent; a moment for any in flight.
    std::thread::sleep(Duration::from_millis(200));
    let mut targets: HashSet<Ipv6Addr> = spellings(*st.b_udp.ip()).into_iter().collect();
    targets.insert(Ipv4Addr::LOCALHOST.to_ipv6_compatible());
    targets.insert("2001:db8::1".parse().unwrap());
    for p in capture.drain() {
        if targets.contains(&p.dst) {
            failures.push(format!(
                "an IPv6 packet to {} left on {} (next header {}, payload {:?})",
                p.dst,
                p.interface,
                p.next_header,
                String::from_utf8_lossy(&p.payload[p.payload.len().min(8)..])
            ));
        }
    }
    failures.extend(st.leaks());
    assert_none("IPv6 spellings", &failures, &run);
}

/// NETLINK_SOCK_DIAG (TCP, UDP, unix) lists neither B's sockets nor any other uid's.
#[test]
fn sock_diag_lists_no_other_tenant() {
    let mut st = Stage::start();
    let mut args: Vec<String> = vec![
        "leaks".into(),
        "--part".into(),
        "sock_diag".into(),
        "--b-abstract".into(),
        B_ABSTRACT.into(),
    ];
    args.extend(st.common_args());
    let run = st.run_a("", &args);
    let names: Vec<String> = ["sock_diag_tcp", "sock_diag_udp", "sock_diag_unix"]
        .map(String::from)
        .to_vec();
    let mut failures = run.not_denied(&names);
    failures.extend(st.leaks());
    assert_none("NETLINK_SOCK_DIAG", &failures, &run);
}

/// A's /proc shows its own PID namespace only: not B's pid (nor its cmdline, status,
/// environment, sockets), not B's supervisor, not the test, not the host's init.
/// The number of visible pids and what /proc/net/tcp still shows are printed.
#[test]
fn proc_shows_only_own_pid_namespace() {
    let mut st = Stage::start();
    let host_init = std::fs::read("/proc/1/cmdline").expect("read /proc/1/cmdline");
    let hex: String = host_init.iter().map(|b| format!("{b:02x}")).collect();
    let me = std::env::current_exe().unwrap();
    let me = me.file_name().unwrap().to_string_lossy().into_owned();
    let foreign = format!(
        "b_tenant:{}:serve,b_supervisor:{}:{},test_harness:{}:{me}",
        st.b_pid,
        st.b.pid(),
        st.b_profile,
        std::process::id()
    );
    let mut args: Vec<String> = vec![
        "leaks".into(),
        "--part".into(),
        "proc".into(),
        "--b-pid".into(),
        st.b_pid.to_string(),
        "--host-init".into(),
        hex,
        "--foreign".into(),
        foreign,
    ];
    args.extend(st.common_args());
    let run = st.run_a("", &args);
    eprintln!("what A still sees:\n{}", run.notes());
    let names: Vec<String> = [
        "proc_foreign_pids",
        "proc_pid1",
        "proc_b_tenant",
        "proc_b_supervisor",
        "proc_test_harness",
        "proc_b_status",
        "proc_b_environ",
        "proc_b_net_tcp",
        "proc_self_net_tcp",
    ]
    .map(String::from)
    .to_vec();
    let mut failures = run.not_denied(&names);
    failures.extend(st.leaks());
    assert_none("/proc", &failures, &run);
}
