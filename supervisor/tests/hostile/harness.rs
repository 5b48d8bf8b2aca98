//! The stage for `tests/hostile.rs`: tenant B (`hostile serve`, confined) with a TCP
//! listener that greets with its secret, a UDP socket that reports every datagram and
//! an abstract unix listener; the test's own observers (a UDP socket on 127.0.0.1, a
//! UDP6 socket and a TCP6 listener on ::1, a TCP listener on 127.0.0.1 that A may
//! reach, an AF_PACKET capture of IPv6 on every interface); and tenant A (`hostile
//! MODE`, confined, no allowed peers), driven line by line until `done`.
#![allow(dead_code)]

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use crate::confined::*;

/// Hang guard for one line of a tenant (not a timing assertion).
pub const LINE: Duration = Duration::from_secs(120);
/// B's abstract unix socket name.
pub const B_ABSTRACT: &str = "hostile-b-sock";

/// Accepts connections on 127.0.0.1 (an unlabeled place every tenant may reach) and
/// holds them open, counting them, until dropped.
pub struct HoldingServer {
    pub addr: SocketAddrV4,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl HoldingServer {
    pub fn start() -> HoldingServer {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = match l.local_addr().expect("addr") {
            SocketAddr::V4(a) => a,
            a => panic!("unexpected {a}"),
        };
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        held.push(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        HoldingServer {
            addr,
            accepted,
            stop,
        }
    }
}

impl Drop for HoldingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One captured IPv6 packet.
#[derive(Debug, Clone)]
pub struct Packet {
    pub interface: String,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub payload: Vec<u8>,
}

/// AF_PACKET capture of every IPv6 packet on every interface (outgoing included).
pub struct Capture {
    fd: OwnedFd,
}

impl Capture {
    pub fn ipv6() -> Capture {
        let proto = (libc::ETH_P_IPV6 as u16).to_be() as libc::c_int;
        // SAFETY: socket(2) takes only integers.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                proto,
            )
        };
        assert!(
            fd >= 0,
            "AF_PACKET capture: {} (the test runs as root)",
            std::io::Error::last_os_error()
        );
        // SAFETY: fd is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size: libc::c_int = 8 << 20;
        // SAFETY: &size is a live c_int of the stated length.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        Capture { fd }
    }

    /// Everything captured so far.
    pub fn drain(&self) -> Vec<Packet> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: sockaddr_ll is a plain C struct for which all-zeroes is valid.
            let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buf and ll/len are live and writable for the lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut ll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 40 {
                if n < 0 {
                    break;
                }
                continue;
            }
            let p = &buf[..n as usize];
            let dst: [u8; 16] = p[24..40].try_into().expect("16");
            out.push(Packet {
                interface: if_name(ll.sll_ifindex),
                dst: Ipv6Addr::from(dst),
                next_header: p[6],
                payload: p[40..].to_vec(),
            });
        }
        out
    }
}

fn if_name(index: libc::c_int) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf is IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index as libc::c_uint, buf.as_mut_ptr()) };
    if p.is_null() {
        return format!("if{index}");
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// What A printed, and the supervisor's output for messages.
pub struct ARun {
    pub lines: Vec<String>,
    pub dump: String,
    pub pokes: usize,
}

impl ARun {
    /// The `attack NAME: ` line.
    pub fn attack(&self, name: &str) -> Option<&String> {
        let prefix = format!("attack {name}: ");
        self.lines.iter().find(|l| l.starts_with(&prefix))
    }

    /// Failures for every attack in `names` whose line is not `denied ...`.
    pub fn not_denied(&self, names: &[String]) -> Vec<String> {
        let mut bad = Vec::new();
        for name in names {
            match self.attack(name) {
                None => bad.push(format!("attack {name}: no line from A")),
                Some(l) if l.starts_with(&format!("attack {name}: denied")) => {}
                Some(l) => bad.push(l.clone()),
            }
        }
        bad
    }

    /// `race NAME: tries=N escapes=M ...` → (N, M, the line).
    pub fn race(&self, name: &str) -> Option<(u64, u64, String)> {
        let prefix = format!("race {name}: tries=");
        let line = self.lines.iter().find(|l| l.starts_with(&prefix))?;
        let field = |k: &str| -> Option<u64> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        Some((field("tries=")?, field("escapes=")?, line.clone()))
    }

    /// The `info` and `race-detail` lines, for the test's output.
    pub fn notes(&self) -> String {
        self.lines
            .iter()
            .filter(|l| l.starts_with("info ") || l.starts_with("race-detail "))
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Tenant B and the test's observers, in their own state dir.
pub struct Stage {
    pub b: Tenant,
    pub b_tcp: SocketAddrV4,
    pub b_udp: SocketAddrV4,
    /// A second address of B's range (B does not use it).
    pub b_ip2: Ipv4Addr,
    /// An address of the node network no tenant holds.
    pub unassigned: Ipv4Addr,
    pub b_pid: i32,
    pub b_profile: String,
    pub host_udp: UdpSocket,
    pub host_udp6: UdpSocket,
    pub host_tcp6: TcpListener,
    pub allowed: HoldingServer,
    markers: usize,
    _b_prof: tempfile::TempPath,
    pub state: StateDir,
}

impl Stage {
    pub fn start() -> Stage {
        require_root();
        let state = StateDir::new();
        let bin = testbin("hostile");
        let ro = system_and_testbins();
        let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
        let prof = write_profile(&format!(
            "[tenant]\nname = \"hb\"\nconfine = true\n\
             command = [\"{bin}\", \"serve\", \"--tcp\", \"{{address}}:0\", \"--udp\", \"{{address}}:0\", \"--abstract\", \"{B_ABSTRACT}\"]\n\
             [filesystem]\nread_only = {ro}\n",
            bin = bin.display(),
            ro = toml_paths(&ro),
        ));
        let mut b = state.run(&prof, &[]);
        let ready = b.wait_line("ready pid=", LINE);
        let field = |k: &str| -> String {
            ready
                .split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or_else(|| panic!("no {k} in {ready:?}"))
                .to_string()
        };
        let b_tcp: SocketAddrV4 = field("tcp=").parse().expect("B's tcp address");
        let b_udp: SocketAddrV4 = field("udp=").parse().expect("B's udp address");
        let o = b_tcp.ip().octets();
        let b_ip2 = Ipv4Addr::new(o[0], o[1], o[2], 2);
        let b_pid = tenant_pid(&b);
        let host_udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1");
        host_udp.set_nonblocking(true).unwrap();
        let host_udp6 = UdpSocket::bind("[::1]:0").expect("bind udp [::1]");
        host_udp6.set_nonblocking(true).unwrap();
        let host_tcp6 = TcpListener::bind("[::1]:0").expect("bind tcp [::1]");
        host_tcp6.set_nonblocking(true).unwrap();
        Stage {
            b,
            b_tcp,
            b_udp,
            b_ip2,
            unassigned: Ipv4Addr::new(127, 250, 250, 1),
            b_pid,
            b_profile: prof.to_str().expect("utf-8").to_string(),
            host_udp,
            host_udp6,
            host_tcp6,
            allowed: HoldingServer::start(),
            markers: 0,
            _b_prof: prof,
            state,
        }
    }

    pub fn host_udp_addr(&self) -> SocketAddrV4 {
        match self.host_udp.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            a => panic!("unexpected {a}"),
        }
    }

    /// The arguments every attack mode takes.
    pub fn common_args(&self) -> Vec<String> {
        [
            ("--b-tcp", self.b_tcp.to_string()),
            ("--b-udp", self.b_udp.to_string()),
            ("--b-ip2", self.b_ip2.to_string()),
            ("--host-udp", self.host_udp_addr().to_string()),
            ("--unassigned", self.unassigned.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }

    /// Runs `hostile ARGS` as confined tenant A ("ha", no allowed peers; `extra` is
    /// appended to its profile), answering its pokes, until `done`.
    pub fn run_a(&mut self, extra: &str, args: &[String]) -> ARun {
        let bin = testbin("hostile");
        let ro = system_and_testbins();
        let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
        let prof = write_profile(&format!(
            "[tenant]\nname = \"ha\"\nconfine = true\n[filesystem]\nread_only = {}\n{extra}",
            toml_paths(&ro)
        ));
        let mut cmd: Vec<&str> = vec![bin.to_str().unwrap()];
        cmd.extend(args.iter().map(String::as_str));
        let mut a = self.state.run(&prof, &cmd);
        let mut held = Vec::new();
        let mut pokes = 0;
        loop {
            let line = a.wait_line("", LINE);
            if line == "done" {
                break;
            }
            if let Some(at) = line.strip_prefix("poke udp ") {
                pokes += 1;
                let to: SocketAddr = at.parse().expect("poke address");
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                let _ = s.send_to(b"poke-from-test", to);
            } else if let Some(at) = line.strip_prefix("poke tcp ") {
                pokes += 1;
                let to: SocketAddr = at.parse().expect("poke address");
                if let Ok(s) = TcpStream::connect_timeout(&to, Duration::from_secs(1)) {
                    held.push(s);
                }
            }
        }
        let st = a.wait(LINE);
        let dump = short_dump(&mut a);
        assert_eq!(st.code(), Some(0), "tenant A must exit 0\n{dump}");
        let lines = a.stdout_lines().to_vec();
        eprintln!("--- tenant A:\n{}", lines.join("\n"));
        ARun { lines, dump, pokes }
    }

    /// What reached B from anyone but the test: datagrams and connections, in B's
    /// words. A datagram from the test, sent last, marks the end of what B received.
    pub fn b_received(&mut self) -> Vec<String> {
        self.markers += 1;
        let marker = format!("marker-{}", self.markers);
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(marker.as_bytes(), self.b_udp)
            .expect("send marker to B");
        self.b.wait_line(
            &format!("udp from 127.0.0.1:{}", s.local_addr().unwrap().port()),
            LINE,
        );
        assert!(self.b.is_running(), "tenant B died\n{}", self.b.dump());
        self.b
            .stdout_lines()
            .iter()
            .filter(|l| {
                (l.starts_with("udp from") && !l.contains("data=marker-"))
                    || l.starts_with("accepted")
            })
            .cloned()
            .collect()
    }

    /// Datagrams on the test's UDP socket on 127.0.0.1 (every one was sent by A with a
    /// forged source, or to a place it must not reach).
    pub fn host_udp_received(&self) -> Vec<String> {
        drain_udp(&self.host_udp)
    }

    pub fn host_udp6_received(&self) -> Vec<String> {
        drain_udp(&self.host_udp6)
    }

    pub fn host_tcp6_accepted(&self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok((mut s, from)) = self.host_tcp6.accept() {
            let mut b = [0u8; 64];
            s.set_read_timeout(Some(Duration::from_millis(100))).ok();
            let n = s.read(&mut b).unwrap_or(0);
            out.push(format!(
                "TCP6 connection from {from}: {:?}",
                String::from_utf8_lossy(&b[..n])
            ));
        }
        out
    }

    /// Everything that reached B, the test's UDP sockets or its TCP6 listener.
    pub fn leaks(&mut self) -> Vec<String> {
        let mut out: Vec<String> = self
            .b_received()
            .into_iter()
            .map(|l| format!("B got: {l}"))
            .collect();
        out.extend(
            self.host_udp_received()
                .into_iter()
                .map(|l| format!("the test's UDP socket on 127.0.0.1 got: {l}")),
        );
        out.extend(
            self.host_udp6_received()
                .into_iter()
                .map(|l| format!("the test's UDP6 socket on ::1 got: {l}")),
        );
        out.extend(self.host_tcp6_accepted());
        out
    }
}

/// A tenant's stdout and the last lines of its stderr (a race logs thousands of
/// denials).
fn short_dump(t: &mut Tenant) -> String {
    let err = t.stderr();
    let lines: Vec<&str> = err.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!(
        "--- stdout:\n{}\n--- stderr ({} lines, the last 40):\n{tail}\n---",
        t.stdout_lines().join("\n"),
        lines.len()
    )
}

fn drain_udp(s: &UdpSocket) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push(format!(
            "{n} bytes from {from}: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    out
}

/// Panics listing `failures` (with A's notes and output) unless there are none.
pub fn assert_none(what: &str, failures: &[String], run: &ARun) {
    assert!(
        failures.is_empty(),
        "{what}: {} failure(s):\n  {}\n--- A's notes:\n{}\n{}",
        failures.len(),
        failures.join("\n  "),
        run.notes(),
        run.dump
    );
}
