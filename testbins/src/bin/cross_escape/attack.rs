//! `attack` mode (tenant A): the attempts, in this order, one line each.
//!
//! | name                  | operation                                                    |
//! |-----------------------|--------------------------------------------------------------|
//! | read_b_file           | open(b-file, O_RDONLY); read if it opened                    |
//! | write_b_file          | open(b-file, O_WRONLY\|O_APPEND)                             |
//! | create_in_b_home      | open(b-home/evil-<pid>, O_CREAT\|O_WRONLY\|O_EXCL, 0644); unlinked again if created |
//! | list_b_home           | open(b-home, O_RDONLY\|O_DIRECTORY); entries listed if it opened |
//! | read_outside_file     | open(outside-file, O_RDONLY); read if it opened              |
//! | write_tmp             | open(/tmp/cross-escape-<pid>, O_CREAT\|O_WRONLY\|O_EXCL, 0644); unlinked if created |
//! | connect_b             | blocking TCP connect to b-addr                               |
//! | connect_b_v4mapped    | AF_INET6 socket, IPV6_V6ONLY=0, connect to ::ffff:<b ip>:<b port> |
//! | connect_b_nonblocking | SOCK_NONBLOCK connect; EINPROGRESS → poll(POLLOUT, 2 s) + SO_ERROR (ETIMEDOUT if no POLLOUT) |
//! | sendto_b_udp          | UDP sendto(b-addr, "x")                                      |
//! | bind_b                | TCP bind to b-bind-ip:0                                      |
//! | bind_wildcard         | TCP bind to 0.0.0.0:0                                        |
//! | connect_b_abstract    | AF_UNIX stream connect to "\0<b-abstract>"                   |
//! | signal_b              | kill(b-pid, 0); only if that worked kill(b-pid, SIGKILL)     |
//! | ptrace_b              | ptrace(PTRACE_ATTACH, b-pid); waitpid + PTRACE_DETACH if it worked |
//! | proc_mem_b            | open(/proc/<b-pid>/mem, O_RDWR), then O_RDONLY; errno of the O_RDONLY try |
//! | setns_b               | open(/proc/<b-pid>/ns/net) in A, setns(fd, 0) in a forked child |
//! | unshare               | unshare(CLONE_NEWUSER\|CLONE_NEWNS) in a forked child          |
//! | mount                 | mount("none", "/tmp", "tmpfs", 0, NULL); umount2(MNT_DETACH) if it worked |
//! | setuid_exec           | fork; child execs `<setuid-bin> whoami` with stdout on a pipe |
//! | toctou_connect        | see the `toctou` module                                      |
//! | sendmsg_b_udp         | UDP sendmsg(msg_name = b-addr, one iovec "x", no control)    |
//! | sendmmsg_b_second     | UDP sendmmsg(vlen=2): allowed-addr, then b-addr; on 1 sent, retries message 1 alone |
//! | listen_autobind       | TCP listen(2) without bind, then getsockname(2)              |
//! | socket_vsock          | socket(AF_VSOCK, SOCK_STREAM, 0)                             |
//! | socket_sctp           | socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)                   |
//! | fd_swap_connect       | see the `race` module                                        |
//! | bind_unspec           | TCP bind to an AF_UNSPEC 0.0.0.0:0 sockaddr (the kernel's wildcard) |
//! | connect_truncated_addr| TCP connect to b-addr with addrlen 4 (family and port only)  |
//! | connect_oversized_addr| TCP connect to b-addr with addrlen 200                       |
//!
//! A failing step before the attempt's own syscall (socket(2), fork(2), ...) is
//! reported as `blocked <ERRNO of that step>` with a note on stderr. Attempts run
//! in forked children (setns_b, unshare) report `blocked killed-sig=<n>` if the
//! child is killed by a signal. setuid_exec reports `blocked <ERRNO of execve>`,
//! `ESCAPED euid=0` or `blocked euid=<n>`. The non-errno lines of the attempts
//! after toctou_connect are listed in the `net2` and `race` modules.

use crate::{files, net, net2, procs, race, toctou, usage, Opts, ATTACK_KEYS};
use std::net::{Ipv4Addr, SocketAddrV4};

/// Parsed `attack` arguments.
#[derive(Debug)]
pub struct Config {
    pub b_home: String,
    pub b_file: String,
    pub b_addr: SocketAddrV4,
    pub b_bind_ip: Ipv4Addr,
    pub b_pid: libc::pid_t,
    pub b_abstract: String,
    pub outside_file: String,
    pub setuid_bin: String,
    pub allowed_addr: SocketAddrV4,
    /// Optional `--own-prefix`: A's own address prefix (e.g. "127.1.0.").
    pub own_prefix: Option<String>,
}

impl Config {
    pub fn from_opts(o: &Opts) -> Config {
        // Every key is checked up front, in the documented order.
        for k in ATTACK_KEYS {
            o.req(k);
        }
        let b_pid: libc::pid_t = o.parsed("b-pid");
        // kill(0|-1|-n, ...) would signal whole groups; pid 1 is never tenant B.
        if b_pid <= 1 {
            usage(&format!("--b-pid: must be > 1, got {b_pid}"));
        }
        let b_abstract = o.req("b-abstract").to_string();
        if b_abstract.is_empty() || b_abstract.len() > 106 {
            usage("--b-abstract: name must be 1..=106 bytes");
        }
        Config {
            b_home: o.req("b-home").to_string(),
            b_file: o.req("b-file").to_string(),
            b_addr: o.parsed("b-addr"),
            b_bind_ip: o.parsed("b-bind-ip"),
            b_pid,
            b_abstract,
            outside_file: o.req("outside-file").to_string(),
            setuid_bin: o.req("setuid-bin").to_string(),
            allowed_addr: o.parsed("allowed-addr"),
            own_prefix: o.opt("own-prefix").map(str::to_string),
        }
    }
}

pub fn run(c: &Config) {
    // SAFETY: getpid(2) has no preconditions.
    let me = unsafe { libc::getpid() };
    files::read_b_file(&c.b_file);
    files::write_b_file(&c.b_file);
    files::create_in_b_home(&format!("{}/evil-{me}", c.b_home));
    files::list_b_home(&c.b_home);
    files::read_outside_file(&c.outside_file);
    files::write_tmp(&format!("/tmp/cross-escape-{me}"));

    net::connect_b(c.b_addr);
    net::connect_b_v4mapped(c.b_addr);
    net::connect_b_nonblocking(c.b_addr);
    net::sendto_b_udp(c.b_addr);
    net::bind_tcp("bind_b", SocketAddrV4::new(c.b_bind_ip, 0));
    net::bind_tcp("bind_wildcard", SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
    net::connect_b_abstract(&c.b_abstract);

    procs::signal_b(c.b_pid);
    procs::ptrace_b(c.b_pid);
    procs::proc_mem_b(c.b_pid);
    procs::setns_b(c.b_pid);
    procs::unshare();
    procs::mount_tmp();
    procs::setuid_exec(&c.setuid_bin);

    toctou::run(c.allowed_addr, c.b_addr);

    net2::sendmsg_b_udp(c.b_addr);
    net2::sendmmsg_b_second(c.allowed_addr, c.b_addr);
    net2::listen_autobind(c.own_prefix.as_deref());
    net2::socket_vsock();
    net2::socket_sctp();
    race::run(c.b_addr);
    net2::bind_unspec();
    net2::connect_truncated_addr(c.b_addr);
    net2::connect_oversized_addr(c.b_addr);
}
