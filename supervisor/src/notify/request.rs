//! One seccomp notification and everything that may touch the tenant on its behalf:
//! reading and writing tenant memory, fetching and injecting descriptors, and the
//! `ID_VALID` checks that make those safe. Handlers get a `&Request`; only the loop
//! sends the response ([`Request::respond`]).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::sys;

/// Upper bound on iovec arrays read from a tenant (the kernel's UIO_MAXIOV).
pub const MAX_IOV: usize = 1024;

/// `-ERESTARTSYS`: returned only while a signal is pending for the thread, so the
/// kernel's signal code either restarts the call (SA_RESTART) or turns it into EINTR —
/// exactly what the tenant would see if it had blocked in the kernel itself.
pub const ERESTARTSYS: i32 = 512;

/// A received notification.
#[derive(Clone, Copy)]
pub struct Request {
    notif: libc::seccomp_notif,
    listener: RawFd,
    /// The tracked socket a parked call waits on: when it resumes, its fd argument
    /// means that socket even if another thread has closed or reused the number since
    /// (in the kernel, a call in flight holds its file).
    pinned: Option<u64>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.notif.id)
            .field("tid", &self.notif.pid)
            .field(
                "syscall",
                &crate::launch::filter::notified_name(self.notif.data.nr),
            )
            .finish()
    }
}

/// Why tenant memory could not be used.
#[derive(Debug)]
pub enum MemError {
    /// The address range is not mapped in the tenant (the tenant gets EFAULT).
    Fault,
    /// The notification is no longer valid: the tenant thread died. Drop silently.
    Gone,
}

impl MemError {
    /// The errno the tenant gets, if it is still there to get one.
    pub fn errno(&self) -> i32 {
        match self {
            MemError::Fault => libc::EFAULT,
            MemError::Gone => libc::ESRCH,
        }
    }
}

impl Request {
    /// Blocks until a notification arrives on `listener` (call after poll says readable).
    ///
    /// `Ok(None)`: the notification was withdrawn before we got it (benign ENOENT) or
    /// the call was interrupted.
    pub fn receive(listener: BorrowedFd<'_>) -> io::Result<Option<Request>> {
        // SAFETY: seccomp_notif is plain data; RECV requires it zeroed.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        // SAFETY: RECV writes one seccomp_notif into `notif`, which is valid and sized.
        let rc = unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_RECV as _,
                &mut notif,
            )
        };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINTR) => Ok(None),
                _ => Err(err),
            };
        }
        Ok(Some(Request {
            notif,
            listener: listener.as_raw_fd(),
            pinned: None,
        }))
    }

    /// Binds the call's fd argument to the tracked socket `inode` (see `pinned`).
    pub fn pin(&mut self, inode: u64) {
        self.pinned = Some(inode);
    }

    /// The tracked socket the call's fd argument is bound to, if it was parked on one.
    pub fn pinned(&self) -> Option<u64> {
        self.pinned
    }

    /// The notification id.
    pub fn id(&self) -> u64 {
        self.notif.id
    }

    /// The calling thread (in the supervisor's PID namespace).
    pub fn tid(&self) -> libc::pid_t {
        self.notif.pid as libc::pid_t
    }

    /// The syscall number.
    pub fn nr(&self) -> libc::c_long {
        self.notif.data.nr as libc::c_long
    }

    /// Argument `i` as the raw 64-bit register value.
    pub fn arg(&self, i: usize) -> u64 {
        self.notif.data.args[i]
    }

    /// Argument `i` as an fd (the kernel truncates to int).
    pub fn fd_arg(&self, i: usize) -> RawFd {
        self.notif.data.args[i] as u32 as i32
    }

    /// `SECCOMP_IOCTL_NOTIF_ID_VALID`: the tenant thread is still waiting for this
    /// answer, so memory we read belongs to it and memory we write reaches it.
    pub fn is_valid(&self) -> bool {
        let mut id = self.notif.id;
        // SAFETY: ID_VALID reads one u64 from the pointer, which points at `id`.
        unsafe {
            libc::ioctl(
                self.listener,
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _,
                &mut id,
            ) == 0
        }
    }

    /// Copies `len` bytes from tenant address `addr`, then checks the notification is
    /// still valid (so the pid was not reused while we read).
    pub fn read_memory(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemError> {
        let mut buf = vec![0u8; len];
        self.read_memory_into(
            &[libc::iovec {
                iov_base: addr as *mut _,
                iov_len: len,
            }],
            &mut buf,
        )?;
        Ok(buf)
    }

    /// Gathers tenant iovecs into `buf` (whose length is the amount wanted).
    pub fn read_memory_into(
        &self,
        remote: &[libc::iovec],
        buf: &mut [u8],
    ) -> Result<usize, MemError> {
        if buf.is_empty() {
            return if self.is_valid() {
                Ok(0)
            } else {
                Err(MemError::Gone)
            };
        }
        let n = match sys::process_vm_read(self.tid(), buf, remote) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(MemError::Gone),
            Err(_) => return Err(MemError::Fault),
        };
        if !self.is_valid() {
            return Err(MemError::Gone);
        }
        Ok(n)
    }

    /// Scatters `data` into the tenant's iovecs after checking the notification is
    /// still valid. Returns the bytes written (short only at a fault).
    pub fn write_memory(&self, remote: &[libc::iovec], data: &[u8]) -> Result<usize, MemError> {
        if !self.is_valid() {
            return Err(MemError::Gone);
        }
        if data.is_empty() {
            return Ok(0);
        }
        match sys::process_vm_write(self.tid(), data, remote) {
            Ok(n) => Ok(n),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Err(MemError::Gone),
            Err(_) => Err(MemError::Fault),
        }
    }

    /// Writes one plain value into tenant memory.
    pub fn write_value(&self, addr: u64, bytes: &[u8]) -> Result<(), MemError> {
        let iov = [libc::iovec {
            iov_base: addr as *mut _,
            iov_len: bytes.len(),
        }];
        match self.write_memory(&iov, bytes)? {
            n if n == bytes.len() => Ok(()),
            _ => Err(MemError::Fault),
        }
    }

    /// Reads an iovec array of `count` entries at `addr`, bounded by [`MAX_IOV`].
    pub fn read_iovecs(&self, addr: u64, count: u64) -> Result<Vec<libc::iovec>, i32> {
        if count as usize > MAX_IOV {
            return Err(libc::EINVAL);
        }
        let size = std::mem::size_of::<libc::iovec>();
        let raw = self
            .read_memory(addr, count as usize * size)
            .map_err(|e| e.errno())?;
        Ok(raw
            .chunks_exact(size)
            .map(|c| libc::iovec {
                iov_base: u64::from_ne_bytes(c[0..8].try_into().expect("8 bytes")) as *mut _,
                iov_len: u64::from_ne_bytes(c[8..16].try_into().expect("8 bytes")) as usize,
            })
            .collect())
    }

    /// A duplicate of the tenant's descriptor `fd`, via the calling thread's pidfd.
    pub fn fetch_fd(&self, thread_pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
        sys::pidfd_getfd(thread_pidfd, fd)
    }

    /// Installs `fd` in the tenant at exactly `target` (replacing what is there)
    /// without answering the notification. Used to drop a tracked socket's slot before
    /// a close the tenant asked for, so the socket's last reference goes now.
    pub fn install_fd_at(
        &self,
        fd: BorrowedFd<'_>,
        target: RawFd,
        cloexec: bool,
    ) -> io::Result<()> {
        let addfd = libc::seccomp_notif_addfd {
            id: self.notif.id,
            flags: libc::SECCOMP_ADDFD_FLAG_SETFD as u32,
            srcfd: fd.as_raw_fd() as u32,
            newfd: target as u32,
            newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
        };
        // SAFETY: ADDFD reads one seccomp_notif_addfd from the pointer, which points at a
        // fully initialised struct.
        let rc =
            unsafe { libc::ioctl(self.listener, libc::SECCOMP_IOCTL_NOTIF_ADDFD as _, &addfd) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Answers the notification. `Err` with ENOENT means the tenant thread is gone
    /// (killed); the caller must then undo whatever the answer would have handed over.
    pub fn respond(&self, answer: Answer<'_>) -> io::Result<i64> {
        if let Answer::InjectFd { fd, cloexec } = answer {
            let addfd = libc::seccomp_notif_addfd {
                id: self.notif.id,
                flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
                srcfd: fd.as_raw_fd() as u32,
                newfd: 0,
                newfd_flags: if cloexec { libc::O_CLOEXEC as u32 } else { 0 },
            };
            // SAFETY: ADDFD reads one fully initialised seccomp_notif_addfd; with
            // FLAG_SEND it also answers the notification with the new fd number.
            let rc =
                unsafe { libc::ioctl(self.listener, libc::SECCOMP_IOCTL_NOTIF_ADDFD as _, &addfd) };
            return if rc < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(rc as i64)
            };
        }
        let (val, error, flags) = match answer {
            Answer::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
            Answer::Value(v) => (v, 0, 0),
            Answer::Errno(e) => (0, -e, 0),
            Answer::InjectFd { .. } => unreachable!("handled above"),
        };
        let mut resp = libc::seccomp_notif_resp {
            id: self.notif.id,
            val,
            error,
            flags,
        };
        // SAFETY: SEND reads one seccomp_notif_resp from the pointer, which points at a
        // fully initialised struct.
        let rc = unsafe {
            libc::ioctl(
                self.listener,
                libc::SECCOMP_IOCTL_NOTIF_SEND as _,
                &mut resp,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(val)
    }
}

/// The low-level answer to a notification.
#[derive(Debug)]
pub enum Answer<'a> {
    /// Let the kernel run the call as the tenant made it. See
    /// [`super::continue_untracked`] for when that is allowed.
    Continue,
    /// The call returns this value.
    Value(i64),
    /// The call fails with this errno.
    Errno(i32),
    /// The call returns a new descriptor, a copy of `fd`, installed atomically with
    /// the answer (ADDFD_FLAG_SEND): it cannot leak if the tenant is gone.
    InjectFd {
        /// What to install.
        fd: BorrowedFd<'a>,
        /// `O_CLOEXEC` on the new descriptor.
        cloexec: bool,
    },
}
