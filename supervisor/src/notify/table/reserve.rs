//! Spare descriptors held back for the moments the supervisor must not fail.
//!
//! At its fd limit every `/proc` read, `pidfd_open` or `pidfd_getfd` fails with EMFILE,
//! and a handler that cannot learn a thread or fetch an fd cannot prove a call is safe.
//! The reserve keeps a few `/dev/null` descriptors open; an operation that fails for
//! want of a descriptor gives one back and is retried. A new connection is admitted only
//! while the reserve can be kept full, so the descriptors a tracked connection later
//! needs (its backend's pidfd, transient `/proc` reads) are there when it needs them.

#![forbid(unsafe_code)]

use std::io;
use std::os::fd::OwnedFd;

/// How many spare descriptors the supervisor keeps.
pub const RESERVE: usize = 16;

/// The spare descriptors.
#[derive(Debug, Default)]
pub struct Reserve {
    spare: Vec<OwnedFd>,
}

/// Whether an error means the process (or the system) is out of descriptors.
pub fn is_exhaustion(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Reserve {
    /// A full reserve (as full as the limit allows).
    pub fn new() -> Reserve {
        let mut reserve = Reserve::default();
        reserve.refill();
        reserve
    }

    /// Runs `op`; while it fails for want of a descriptor, gives one spare back and
    /// tries again.
    pub fn retry<T>(&mut self, mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
        loop {
            match op() {
                Err(error) if is_exhaustion(&error) => {
                    if self.spare.pop().is_none() {
                        return Err(error);
                    }
                }
                result => return result,
            }
        }
    }

    /// Tops the reserve up; `true` when it is full.
    pub fn refill(&mut self) -> bool {
        while self.spare.len() < RESERVE {
            match std::fs::File::open("/dev/null") {
                Ok(file) => self.spare.push(file.into()),
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether every spare is in place.
    pub fn is_full(&self) -> bool {
        self.spare.len() >= RESERVE
    }

    /// Spare descriptors now held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.spare.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_gives_back_spares_until_the_operation_succeeds() {
        let mut reserve = Reserve::new();
        assert!(reserve.is_full());
        let mut failures = 3;
        let result = reserve.retry(|| {
            if failures > 0 {
                failures -= 1;
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            } else {
                Ok(7)
            }
        });
        assert_eq!(result.unwrap(), 7);
        assert_eq!(reserve.len(), RESERVE - 3);
        assert!(reserve.refill());
    }

    #[test]
    fn other_errors_are_not_retried_and_an_empty_reserve_gives_up() {
        let mut reserve = Reserve::default();
        let mut calls = 0;
        let err = reserve
            .retry(|| -> io::Result<()> {
                calls += 1;
                Err(io::Error::from_raw_os_error(libc::EMFILE))
            })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EMFILE));
        assert_eq!(calls, 1);
        let mut full = Reserve::new();
        let err = full
            .retry(|| -> io::Result<()> { Err(io::Error::from_raw_os_error(libc::EBADF)) })
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        assert!(full.is_full());
    }
}
