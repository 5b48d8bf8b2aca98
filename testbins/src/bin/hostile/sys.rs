//! Socket helpers over `libc`, a raw `syscall` instruction for code that must not touch
//! thread-local state (a thread made with a bare `clone`), and the send battery.

use std::ffi::c_int;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use testbins::{errno, escape_text};

pub const SIN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
pub const SIN6_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
/// TCP_FASTOPEN_CONNECT (linux/tcp.h).
pub const TCP_FASTOPEN_CONNECT: c_int = 30;

/// Symbolic errno name; `E<n>` for values not listed.
pub fn errname(e: i32) -> String {
    use libc::*;
    let n = match e {
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EINTR => "EINTR",
        EIO => "EIO",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENOTDIR => "ENOTDIR",
        EISDIR => "EISDIR",
        EINVAL => "EINVAL",
        ENFILE => "ENFILE",
        EMFILE => "EMFILE",
        EPIPE => "EPIPE",
        ENOSYS => "ENOSYS",
        ENOTSOCK => "ENOTSOCK",
        EDESTADDRREQ => "EDESTADDRREQ",
        EMSGSIZE => "EMSGSIZE",
        EPROTOTYPE => "EPROTOTYPE",
        ENOPROTOOPT => "ENOPROTOOPT",
        EPROTONOSUPPORT => "EPROTONOSUPPORT",
        ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        EOPNOTSUPP => "EOPNOTSUPP",
        EPFNOSUPPORT => "EPFNOSUPPORT",
        EAFNOSUPPORT => "EAFNOSUPPORT",
        EADDRINUSE => "EADDRINUSE",
        EADDRNOTAVAIL => "EADDRNOTAVAIL",
        ENETDOWN => "ENETDOWN",
        ENETUNREACH => "ENETUNREACH",
        ECONNABORTED => "ECONNABORTED",
        ECONNRESET => "ECONNRESET",
        ENOBUFS => "ENOBUFS",
        EISCONN => "EISCONN",
        ENOTCONN => "ENOTCONN",
        ETIMEDOUT => "ETIMEDOUT",
        ECONNREFUSED => "ECONNREFUSED",
        EHOSTUNREACH => "EHOSTUNREACH",
        EALREADY => "EALREADY",
        EINPROGRESS => "EINPROGRESS",
        _ => return format!("E{e}"),
    };
    n.to_string()
}

/// A socket address the kernel reads: IPv4 or IPv6.
#[derive(Clone, Copy)]
pub enum Sa {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl std::fmt::Debug for Sa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.std())
    }
}

impl Sa {
    pub fn v4(a: SocketAddrV4) -> Sa {
        Sa::V4(testbins::sockaddr(*a.ip(), a.port()))
    }

    pub fn v6(ip: Ipv6Addr, port: u16) -> Sa {
        // SAFETY: sockaddr_in6 is a plain C struct for which all-zeroes is valid.
        let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_port = port.to_be();
        sa.sin6_addr.s6_addr = ip.octets();
        Sa::V6(sa)
    }

    pub fn ptr(&self) -> *const libc::sockaddr {
        match self {
            Sa::V4(a) => (a as *const libc::sockaddr_in).cast(),
            Sa::V6(a) => (a as *const libc::sockaddr_in6).cast(),
        }
    }

    pub fn len(&self) -> libc::socklen_t {
        match self {
            Sa::V4(_) => SIN_LEN,
            Sa::V6(_) => SIN6_LEN,
        }
    }

    pub fn std(&self) -> SocketAddr {
        match self {
            Sa::V4(a) => SocketAddr::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)).into(),
                u16::from_be(a.sin_port),
            ),
            Sa::V6(a) => SocketAddr::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr).into(),
                u16::from_be(a.sin6_port),
            ),
        }
    }
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which is smaller
            // than sockaddr_storage and has no stricter alignment.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr))),
                u16::from_be(a.sin_port),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr)),
                u16::from_be(a.sin6_port),
            ))
        }
        _ => None,
    }
}

type NameFn = unsafe extern "C" fn(c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int;

fn name_of(fd: c_int, f: NameFn) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is a plain C struct for which all-zeroes is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: ss/len describe a live, writable sockaddr_storage.
    let r = unsafe {
        f(
            fd,
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return None;
    }
    from_storage(&ss)
}

/// getsockname(2), IPv4/IPv6 only.
pub fn local(fd: c_int) -> Option<SocketAddr> {
    name_of(fd, libc::getsockname)
}

/// getpeername(2), IPv4/IPv6 only.
pub fn peer(fd: c_int) -> Option<SocketAddr> {
    name_of(fd, libc::getpeername)
}

/// The IPv4 address a v4 or v4-mapped address is.
pub fn v4_of(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(v4) => Some(v4),
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|ip| SocketAddrV4::new(ip, v6.port())),
    }
}

/// socket(2) without SOCK_CLOEXEC (an exec'd child must keep some); Err(errno).
pub fn socket(domain: c_int, ty: c_int) -> Result<c_int, i32> {
    socket_proto(domain, ty, 0)
}

pub fn socket_proto(domain: c_int, ty: c_int, proto: c_int) -> Result<c_int, i32> {
    // SAFETY: socket(2) takes only integers.
    let fd = unsafe { libc::socket(domain, ty, proto) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// close(2), ignoring errors.
pub fn close(fd: c_int) {
    if fd >= 0 {
        // SAFETY: the caller owns fd and does not use it afterwards.
        unsafe { libc::close(fd) };
    }
}

/// dup2(2); Err(errno).
pub fn dup2(old: c_int, new: c_int) -> Result<(), i32> {
    // SAFETY: dup2(2) takes only integers.
    if unsafe { libc::dup2(old, new) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn sockopt_int(fd: c_int, level: c_int, name: c_int) -> Result<c_int, i32> {
    let mut v: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: v/len describe a live, writable c_int.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut c_int).cast(), &mut len) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(v)
    }
}

pub fn set_int(fd: c_int, level: c_int, name: c_int, v: c_int) -> Result<(), i32> {
    let len = std::mem::size_of::<c_int>() as libc::socklen_t;
    // SAFETY: &v is a live c_int and len is its size.
    let r = unsafe { libc::setsockopt(fd, level, name, (&v as *const c_int).cast(), len) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

pub fn set_nonblocking(fd: c_int) {
    // SAFETY: fcntl(2) with integer arguments only.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// poll(2) one fd for `events` up to `ms`; the revents (0 on timeout or error).
pub fn poll1(fd: c_int, events: i16, ms: c_int) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: p is one live pollfd.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    if r > 0 {
        p.revents
    } else {
        0
    }
}

/// Reads what arrives within `ms` (one read; None if nothing or an error).
pub fn read_within(fd: c_int, ms: c_int) -> Option<Vec<u8>> {
    if poll1(fd, libc::POLLIN, ms) == 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    // SAFETY: buf is a live, writable buffer of the length passed.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    (n > 0).then(|| buf[..n as usize].to_vec())
}

/// What a connected stream socket got from B within 1 s, for an ESCAPED line.
pub fn greeting(fd: c_int) -> String {
    match read_within(fd, 1000) {
        Some(b) => format!("read \"{}\"", escape_text(&b)),
        None => "nothing read within 1s".to_string(),
    }
}

/// connect(2); Err(errno).
pub fn connect(fd: c_int, sa: &Sa) -> Result<(), i32> {
    // SAFETY: sa points to a live socket address of sa.len() bytes.
    if unsafe { libc::connect(fd, sa.ptr(), sa.len()) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// bind(2); Err(errno).
pub fn bind(fd: c_int, sa: &Sa) -> Result<(), i32> {
    // SAFETY: sa points to a live socket address of sa.len() bytes.
    if unsafe { libc::bind(fd, sa.ptr(), sa.len()) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// sendto(2) with an optional destination; Err(errno).
pub fn sendto(fd: c_int, payload: &[u8], flags: c_int, dest: Option<&Sa>) -> Result<usize, i32> {
    let (p, l) = dest.map_or((std::ptr::null(), 0), |d| (d.ptr(), d.len()));
    // SAFETY: payload is a live slice; p/l are a live address or NULL/0.
    let r = unsafe { libc::sendto(fd, payload.as_ptr().cast(), payload.len(), flags, p, l) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// A control-message buffer (cmsghdr-aligned).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub struct Cmsg {
    pub buf: [u8; 32],
    pub len: usize,
}

impl Cmsg {
    /// One IP_PKTINFO message asking for source address `src`:
    /// cmsghdr { len = 16 + 12, IPPROTO_IP, IP_PKTINFO } + in_pktinfo { 0, src, 0 }.
    pub fn pktinfo(src: Ipv4Addr) -> Cmsg {
        let mut buf = [0u8; 32];
        buf[0..8].copy_from_slice(&(16usize + 12).to_ne_bytes());
        buf[8..12].copy_from_slice(&libc::IPPROTO_IP.to_ne_bytes());
        buf[12..16].copy_from_slice(&libc::IP_PKTINFO.to_ne_bytes());
        // in_pktinfo: ipi_ifindex (0), ipi_spec_dst (the source), ipi_addr (ignored).
        buf[20..24].copy_from_slice(&src.octets());
        Cmsg { buf, len: 32 }
    }
}

/// sendmsg(2) with one iovec, an optional name and optional control data.
pub fn sendmsg(
    fd: c_int,
    payload: &[u8],
    flags: c_int,
    dest: Option<&Sa>,
    control: Option<&Cmsg>,
) -> Result<usize, i32> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is a plain C struct for which all-zeroes is valid.
    let mut m: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(d) = dest {
        m.msg_name = d.ptr().cast_mut().cast();
        m.msg_namelen = d.len();
    }
    m.msg_iov = &mut iov;
    m.msg_iovlen = 1;
    if let Some(c) = control {
        m.msg_control = c.buf.as_ptr().cast_mut().cast();
        m.msg_controllen = c.len;
    }
    // SAFETY: m points to live locals (iov, payload, dest, control) for the call.
    let r = unsafe { libc::sendmsg(fd, &m, flags) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// sendmmsg(2) of one message (name, payload); Ok(messages sent).
pub fn sendmmsg1(fd: c_int, payload: &[u8], flags: c_int, dest: Option<&Sa>) -> Result<usize, i32> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: mmsghdr is a plain C struct for which all-zeroes is valid.
    let mut mm: libc::mmsghdr = unsafe { std::mem::zeroed() };
    if let Some(d) = dest {
        mm.msg_hdr.msg_name = d.ptr().cast_mut().cast();
        mm.msg_hdr.msg_namelen = d.len();
    }
    mm.msg_hdr.msg_iov = &mut iov;
    mm.msg_hdr.msg_iovlen = 1;
    // SAFETY: mm points to live locals for the call; vlen is 1.
    let r = unsafe { libc::sendmmsg(fd, &mut mm, 1, flags) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r as usize)
    }
}

/// A raw `syscall` instruction: the kernel's return value (-errno on failure), with no
/// libc wrapper and so no errno or other thread-local state touched.
///
/// # Safety
/// The arguments must be valid for syscall `nr` (pointers live and of the right size).
#[inline(always)]
pub unsafe fn raw(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments are valid for `nr`; the syscall
    // instruction clobbers only rcx and r11 besides rax, declared here.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// One send of the battery: which call and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sendto,
    Sendmsg,
    Sendmmsg,
}

/// The sends a stale descriptor is tried with, prepared up front so that a thread with
/// no TLS of its own can fire them with raw syscalls only (no allocation, no errno).
/// Every pointer inside points into the same boxed value.
#[repr(C)]
pub struct Battery {
    pub names: Vec<String>,
    pub dests: Vec<SocketAddrV4>,
    kinds: [Kind; Battery::N],
    payload: [[u8; 96]; Battery::N],
    plen: [usize; Battery::N],
    sa: [libc::sockaddr_in; Battery::N],
    iov: [libc::iovec; Battery::N],
    msg: [libc::msghdr; Battery::N],
    mmsg: libc::mmsghdr,
    cmsg: [Cmsg; Battery::N],
    pub results: [isize; Battery::N],
}

impl std::fmt::Debug for Battery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Battery")
            .field("names", &self.names)
            .finish()
    }
}

/// Addresses the battery aims at.
#[derive(Clone, Copy, Debug)]
pub struct Targets {
    pub b_udp: SocketAddrV4,
    pub b_ip2: Ipv4Addr,
    pub host_udp: SocketAddrV4,
    pub unassigned: Ipv4Addr,
}

impl Battery {
    pub const N: usize = 7;

    /// The sends, named `<prefix>_<send>`:
    /// sendto_b / sendmsg_b / sendmmsg_b: "leak:<name>" to B's UDP socket;
    /// pktinfo_b_range_to_host: sendmsg to the test's UDP socket on 127.0.0.1 with an
    /// IP_PKTINFO source inside B's range; pktinfo_b_range_to_b: the same to B;
    /// pktinfo_host_to_b: to B with the host's 127.0.0.1 as source;
    /// pktinfo_unassigned_to_host: to the test with an unassigned node address as source.
    pub fn new(prefix: &str, t: &Targets) -> Box<Battery> {
        let plan: [(&str, Kind, SocketAddrV4, Option<Ipv4Addr>); Battery::N] = [
            ("sendto_b", Kind::Sendto, t.b_udp, None),
            ("sendmsg_b", Kind::Sendmsg, t.b_udp, None),
            ("sendmmsg_b", Kind::Sendmmsg, t.b_udp, None),
            (
                "pktinfo_b_range_to_host",
                Kind::Sendmsg,
                t.host_udp,
                Some(t.b_ip2),
            ),
            (
                "pktinfo_b_range_to_b",
                Kind::Sendmsg,
                t.b_udp,
                Some(t.b_ip2),
            ),
            (
                "pktinfo_host_to_b",
                Kind::Sendmsg,
                t.b_udp,
                Some(Ipv4Addr::LOCALHOST),
            ),
            (
                "pktinfo_unassigned_to_host",
                Kind::Sendmsg,
                t.host_udp,
                Some(t.unassigned),
            ),
        ];
        // SAFETY: sockaddr_in, iovec, msghdr and mmsghdr are plain C structs (integers
        // and raw pointers) for which all-zeroes is valid.
        let c: CParts = unsafe { std::mem::zeroed() };
        let mut b = Box::new(Battery {
            names: Vec::new(),
            dests: Vec::new(),
            kinds: [Kind::Sendto; Battery::N],
            payload: [[0; 96]; Battery::N],
            plen: [0; Battery::N],
            sa: c.sa,
            iov: c.iov,
            msg: c.msg,
            mmsg: c.mmsg,
            cmsg: [Cmsg {
                buf: [0; 32],
                len: 0,
            }; Battery::N],
            results: [0; Battery::N],
        });
        for (i, (name, kind, dest, src)) in plan.iter().enumerate() {
            let full = format!("{prefix}_{name}");
            let text = format!("leak:{full}");
            let bytes = text.as_bytes();
            let n = bytes.len().min(96);
            b.payload[i][..n].copy_from_slice(&bytes[..n]);
            b.plen[i] = n;
            b.kinds[i] = *kind;
            b.sa[i] = testbins::sockaddr(*dest.ip(), dest.port());
            b.cmsg[i] = match src {
                Some(ip) => Cmsg::pktinfo(*ip),
                None => Cmsg {
                    buf: [0; 32],
                    len: 0,
                },
            };
            b.names.push(full);
            b.dests.push(*dest);
        }
        let base: *mut Battery = &mut *b;
        for i in 0..Battery::N {
            // SAFETY: base points to the boxed battery, alive as long as the box; the
            // pointers stored point into it (the box never moves its contents).
            unsafe {
                let bb = &mut *base;
                bb.iov[i] = libc::iovec {
                    iov_base: bb.payload[i].as_mut_ptr().cast(),
                    iov_len: bb.plen[i],
                };
                let m = &mut bb.msg[i];
                m.msg_name = (&mut bb.sa[i] as *mut libc::sockaddr_in).cast();
                m.msg_namelen = SIN_LEN;
                m.msg_iov = &mut bb.iov[i];
                m.msg_iovlen = 1;
                if bb.cmsg[i].len > 0 {
                    m.msg_control = bb.cmsg[i].buf.as_mut_ptr().cast();
                    m.msg_controllen = bb.cmsg[i].len;
                }
                if bb.kinds[i] == Kind::Sendmmsg {
                    bb.mmsg.msg_hdr = *m;
                }
            }
        }
        b
    }

    /// Fires every send on `fd` with raw syscalls; results (-errno or the count) go to
    /// `results`. Touches nothing but the battery and the kernel.
    ///
    /// # Safety
    /// `b` must point to a live battery made by [`Battery::new`] that nobody else uses
    /// during the call.
    pub unsafe fn fire(b: *mut Battery, fd: c_int) {
        for i in 0..Battery::N {
            // SAFETY: the caller guarantees b is live and ours; every pointer passed
            // to the kernel points into it.
            unsafe {
                let bb = &mut *b;
                let r = match bb.kinds[i] {
                    Kind::Sendto => raw(
                        libc::SYS_sendto,
                        [
                            fd as usize,
                            bb.payload[i].as_ptr() as usize,
                            bb.plen[i],
                            0,
                            &bb.sa[i] as *const libc::sockaddr_in as usize,
                            SIN_LEN as usize,
                        ],
                    ),
                    Kind::Sendmsg => raw(
                        libc::SYS_sendmsg,
                        [
                            fd as usize,
                            &bb.msg[i] as *const libc::msghdr as usize,
                            0,
                            0,
                            0,
                            0,
                        ],
                    ),
                    Kind::Sendmmsg => raw(
                        libc::SYS_sendmmsg,
                        [
                            fd as usize,
                            &mut bb.mmsg as *mut libc::mmsghdr as usize,
                            1,
                            0,
                            0,
                            0,
                        ],
                    ),
                };
                bb.results[i] = r;
            }
        }
    }

    /// One `attack` line per send.
    pub fn report(&self) {
        for i in 0..Battery::N {
            let r = self.results[i];
            let name = &self.names[i];
            if r < 0 {
                crate::denied(name, (-r) as i32);
            } else {
                let call = match self.kinds[i] {
                    Kind::Sendto => "sendto",
                    Kind::Sendmsg => "sendmsg",
                    Kind::Sendmmsg => "sendmmsg",
                };
                crate::escaped(name, &format!("{call} to {} returned {r}", self.dests[i]));
            }
        }
    }
}

/// The C parts of a battery, zeroed together.
#[repr(C)]
struct CParts {
    sa: [libc::sockaddr_in; Battery::N],
    iov: [libc::iovec; Battery::N],
    msg: [libc::msghdr; Battery::N],
    mmsg: libc::mmsghdr,
}
