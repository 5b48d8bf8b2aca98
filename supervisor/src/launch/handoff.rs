//! The messages the init stub and the tenant send the supervisor over the report
//! socket: encoded here, allocation-free (the senders are forked children), and decoded
//! here (the launch and the loop read them). Also `die`, the children's way out.
//!
//! | tag | bytes | from | meaning |
//! |---|---|---|---|
//! | `L` | tag, ruleset status, no_new_privs | the tenant, before its filter | its Landlock result |
//! | `P` | tag; SCM_RIGHTS: a pidfd | the stub, once the tenant stopped | the tenant's pidfd |
//! | `S` | tag, wait status (4 bytes, native) | the stub, when the tenant exited | its exit status |

#![forbid(unsafe_code)]

const LANDLOCK: u8 = b'L';
const PIDFD: u8 = b'P';
const STATUS: u8 = b'S';

/// A decoded report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The tenant's Landlock result (see `landlock::Enforcement::decode`).
    Landlock {
        /// The ruleset status byte (255: restrict_self failed).
        status: u8,
        /// Whether no_new_privs was set.
        no_new_privs: bool,
    },
    /// The tenant's pidfd travels with this message (SCM_RIGHTS).
    Pidfd,
    /// The tenant's wait status.
    Status(i32),
}

/// The bytes of the Landlock report.
pub const fn landlock(status: u8, no_new_privs: bool) -> [u8; 3] {
    [LANDLOCK, status, no_new_privs as u8]
}

/// The bytes sent with the pidfd.
pub const fn pidfd() -> [u8; 1] {
    [PIDFD]
}

/// The bytes of the exit report.
pub const fn status(wait_status: i32) -> [u8; 5] {
    let s = wait_status.to_ne_bytes();
    [STATUS, s[0], s[1], s[2], s[3]]
}

/// Decodes one message; `None` for anything that is not a whole report.
pub fn decode(bytes: &[u8]) -> Option<Report> {
    match bytes {
        [LANDLOCK, status, nnp] => Some(Report::Landlock {
            status: *status,
            no_new_privs: *nnp != 0,
        }),
        [PIDFD] => Some(Report::Pidfd),
        [STATUS, a, b, c, d] => Some(Report::Status(i32::from_ne_bytes([*a, *b, *c, *d]))),
        _ => None,
    }
}

/// Writes a fixed message to stderr and exits with `code`; for forked children
/// (allocation-free, no destructors).
pub fn die(msg: &[u8], code: libc::c_int) -> ! {
    crate::sys::write_stderr_and_exit(msg, code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_anything_else_is_refused() {
        assert_eq!(
            decode(&landlock(3, true)),
            Some(Report::Landlock {
                status: 3,
                no_new_privs: true
            })
        );
        assert_eq!(decode(&pidfd()), Some(Report::Pidfd));
        assert_eq!(decode(&status(0x0900)), Some(Report::Status(0x0900)));
        assert_eq!(decode(&status(-1)), Some(Report::Status(-1)));
        for bad in [&b""[..], b"S12", b"X", b"PP", b"L12345"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
