//! A `struct msghdr` (and `mmsghdr`) as the tenant passed it, x86_64 layout: the one
//! reader the read, write, address and agent handlers share. Each field is read once,
//! into the supervisor's memory, and every decision is taken on that copy.

#![forbid(unsafe_code)]

use super::request::Request;
use super::Verdict;
use crate::diag::Kind;
use crate::sys::SockAddr;

/// `sizeof(struct msghdr)`.
pub const SIZE: u64 = 56;
/// `sizeof(struct mmsghdr)`: a msghdr, its `msg_len`, padding.
pub const MMSG_STRIDE: usize = 64;
/// Offsets of the fields a receive writes back.
pub const NAMELEN_AT: u64 = 8;
/// `msg_controllen`.
pub const CONTROLLEN_AT: u64 = 40;
/// `msg_flags`.
pub const FLAGS_AT: u64 = 48;
/// An mmsghdr's `msg_len`, after its msghdr.
pub const MSG_LEN_AT: u64 = SIZE;

/// The fields of one msghdr.
#[derive(Debug, Clone, Copy)]
pub struct MsgHeader {
    name: u64,
    name_len: u64,
    iov: u64,
    iov_len: u64,
    control: u64,
    /// `msg_controllen`.
    pub control_len: u64,
}

impl MsgHeader {
    /// Reads the msghdr at `addr`.
    pub fn read(request: &Request, addr: u64) -> Result<MsgHeader, i32> {
        let raw = request
            .read_memory(addr, SIZE as usize)
            .map_err(|e| e.errno())?;
        let field = |off: usize| u64::from_ne_bytes(raw[off..off + 8].try_into().expect("8"));
        Ok(MsgHeader {
            name: field(0),
            name_len: field(8) & 0xffff_ffff,
            iov: field(16),
            iov_len: field(24),
            control: field(32),
            control_len: field(40),
        })
    }

    /// Whether the msghdr carries control data.
    pub fn has_control(&self) -> bool {
        self.control_len != 0
    }

    /// Its iovecs.
    pub fn iovecs(&self, request: &Request) -> Result<Vec<libc::iovec>, i32> {
        request.read_iovecs(self.iov, self.iov_len)
    }

    /// Its control data, at most `max` bytes (ENOBUFS past that).
    pub fn control(&self, request: &Request, max: usize) -> Result<Vec<u8>, i32> {
        let len = usize::try_from(self.control_len).unwrap_or(usize::MAX);
        if len > max {
            return Err(libc::ENOBUFS);
        }
        request
            .read_memory(self.control, len)
            .map_err(|e| e.errno())
    }

    /// Its destination, if it names one. The kernel clamps an oversized name length
    /// for sendmsg, and so does this.
    pub fn name(&self, request: &Request) -> Result<Option<SockAddr>, i32> {
        let len = self
            .name_len
            .min(std::mem::size_of::<libc::sockaddr_storage>() as u64);
        if self.name == 0 || len == 0 {
            return Ok(None);
        }
        read_sockaddr(request, self.name, len).map(Some)
    }
}

/// Reads a sockaddr the tenant passed (pointer, length) into our own copy.
pub fn read_sockaddr(request: &Request, ptr: u64, len: u64) -> Result<SockAddr, i32> {
    if len as usize > std::mem::size_of::<libc::sockaddr_storage>() {
        return Err(libc::EINVAL);
    }
    let bytes = request
        .read_memory(ptr, len as usize)
        .map_err(|e| e.errno())?;
    SockAddr::from_bytes(&bytes).ok_or(libc::EINVAL)
}

/// A send's answer; for sendmmsg (which sends one message per call here) the first
/// mmsghdr's msg_len is written and 1 returned.
pub(super) fn one_message_sent(request: &Request, verdict: Verdict) -> Verdict {
    match verdict {
        Verdict::Value(n) if request.nr() == libc::SYS_sendmmsg => {
            let slot = request.arg(1) + MSG_LEN_AT;
            match request.write_value(slot, &(n as u32).to_ne_bytes()) {
                Ok(()) => Verdict::Value(1),
                Err(e) => Verdict::Errno(e.errno()),
            }
        }
        other => other,
    }
}

/// How much of a message the supervisor takes from the tenant.
#[derive(Debug, Clone, Copy)]
pub(super) enum Limit {
    /// A datagram: all of it, or EMSGSIZE past this many bytes.
    Whole(usize),
    /// A stream: at most this many bytes (the send may be short).
    Prefix(usize),
}

/// Largest control data taken from a tenant's unix-socket sendmsg.
const MAX_CONTROL_IN: usize = 4096;

/// One message read out of the tenant (sendto, sendmsg, or the first of a sendmmsg):
/// its destination, its control data if `with_control` (else control is refused),
/// and its payload (in scratch). Read once: the decision and the call use this copy.
pub(super) struct Datagram {
    pub dest: Option<SockAddr>,
    pub len: usize,
    pub control: Vec<u8>,
}

impl Datagram {
    pub(super) fn read(
        request: &Request,
        scratch: &mut [u8],
        limit: Limit,
        with_control: bool,
    ) -> Result<Datagram, i32> {
        let mut control = Vec::new();
        let (dest, iovs) = if request.nr() == libc::SYS_sendto {
            let dest = read_sockaddr(request, request.arg(4), request.arg(5))?;
            let iov = libc::iovec {
                iov_base: request.arg(1) as *mut _,
                iov_len: request.arg(2) as usize,
            };
            (Some(dest), vec![iov])
        } else {
            let header = MsgHeader::read(request, request.arg(1))?;
            if header.has_control() {
                if !with_control {
                    // IP_PKTINFO & co. could forge the source address; refused outright.
                    tracing::warn!(target: Kind::Label.target(), "control data on a confined tenant's IP send refused");
                    return Err(libc::EOPNOTSUPP);
                }
                control = header.control(request, MAX_CONTROL_IN)?;
            }
            (header.name(request)?, header.iovecs(request)?)
        };
        let total = iovs
            .iter()
            .map(|v| v.iov_len)
            .fold(0usize, usize::saturating_add);
        let total = match limit {
            Limit::Whole(max) if total > max => return Err(libc::EMSGSIZE),
            Limit::Whole(_) => total,
            Limit::Prefix(max) => total.min(max),
        };
        let len = request
            .read_memory_into(&iovs, &mut scratch[..total])
            .map_err(|e| e.errno())?;
        if len != total {
            return Err(libc::EFAULT);
        }
        Ok(Datagram { dest, len, control })
    }
}
