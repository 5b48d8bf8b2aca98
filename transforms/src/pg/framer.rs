//! Where PostgreSQL v3 messages end, in either direction of a connection.
//!
//! Two framings exist. The client's first packets are untyped: Int32 length (counting
//! itself) and Int32 code (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest).
//! Every later message, in both directions, is typed: Byte1 tag and Int32 length
//! counting itself but not the tag. COPY data (`d`, `c`, `f`, `G`, `H`, `W`) needs no
//! special case: it is typed like the rest.
//!
//! The framer decides only from the header, so the answer for a given spool never
//! depends on how its bytes were split, and an error is reported at the same offset
//! however the stream arrives. It looks inside a message only to learn whether a startup
//! packet ends the startup phase; message contents are [`super::message`]'s job.

use super::message::{
    is_protocol_3, CANCEL_REQUEST, GSSENC_REQUEST, MAX_CANCEL_KEY_LEN, MAX_STARTUP_LEN, SSL_REQUEST,
};
use crate::{Direction, FrameError, Framer, Framing};

#[cfg(test)]
mod tests;

/// The framer's protocol name, in errors and logs.
const PROTOCOL: &str = "postgres";

/// Which framing the next message uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Untyped packets: the client has not sent its StartupMessage yet.
    Startup,
    /// Byte1 tag + Int32 length.
    Typed,
}

/// Frames one direction of a PostgreSQL v3 connection.
///
/// `Inbound` is client → server (what the tracked PostgreSQL reads): it starts with the
/// untyped startup packets. After an SSLRequest or GSSENCRequest it stays there (a
/// tracked stream answers `N`, after which the client may ask for the other encryption
/// or send its StartupMessage); asking for the same one twice is refused, as the server
/// refuses it. After a CancelRequest it stays there too. A StartupMessage (any protocol
/// 3.x, e.g. 3.0 or 3.2) switches to typed framing.
///
/// `Outbound` is server → client and typed from the start. This assumes the supervisor
/// itself answered any SSLRequest/GSSENCRequest, so the server never writes the bare
/// one-byte `S`/`G`/`N` reply on a tracked stream.
#[derive(Debug, Clone)]
pub struct PgFramer {
    direction: Direction,
    max_message: usize,
    phase: Phase,
    ssl_requested: bool,
    gss_requested: bool,
}

impl PgFramer {
    /// A framer for `direction` refusing typed messages longer than `max_message` bytes
    /// (tag and length included). Startup packets are capped at
    /// [`MAX_STARTUP_LEN`] like the server caps them.
    pub fn new(direction: Direction, max_message: usize) -> PgFramer {
        let phase = match direction {
            Direction::Inbound => Phase::Startup,
            Direction::Outbound => Phase::Typed,
        };
        PgFramer {
            direction,
            max_message,
            phase,
            ssl_requested: false,
            gss_requested: false,
        }
    }

    /// The direction this framer was made for.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// True while the next message is an untyped startup packet (inbound, before the
    /// StartupMessage): a rule uses it to pick `parse_startup` over `typed`.
    pub fn in_startup(&self) -> bool {
        self.phase == Phase::Startup
    }

    /// Frames an untyped startup packet at the start of `spool`.
    fn frame_startup(&mut self, spool: &[u8]) -> Result<Framing, FrameError> {
        let Some(len) = read_i32(spool, 0) else {
            return Ok(Framing::Partial);
        };
        if spool.first() == Some(&0x16) {
            // A TLS record header: the client skipped SSLRequest (PostgreSQL 17 direct
            // TLS). Its bytes are opaque, so the stream cannot be tracked.
            return Err(malformed(
                "direct TLS handshake (no SSLRequest) cannot be tracked",
            ));
        }
        let total = usize::try_from(len)
            .ok()
            .filter(|l| (8..=MAX_STARTUP_LEN).contains(l))
            .ok_or_else(|| {
                malformed(format!(
                    "startup packet length {len} outside 8..={MAX_STARTUP_LEN}"
                ))
            })?;
        if total > self.max_message {
            return Err(FrameError::TooLong {
                max: self.max_message,
                seen: total,
            });
        }
        let Some(code) = read_i32(spool, 4) else {
            return Ok(Framing::Partial);
        };
        let next = match code {
            SSL_REQUEST | GSSENC_REQUEST => {
                if total != 8 {
                    return Err(malformed(format!(
                        "encryption request of length {total}, expected 8"
                    )));
                }
                let asked = if code == SSL_REQUEST {
                    &mut self.ssl_requested
                } else {
                    &mut self.gss_requested
                };
                if *asked {
                    return Err(malformed(format!("encryption request {code} repeated")));
                }
                Some(asked)
            }
            CANCEL_REQUEST => {
                if !(13..=12 + MAX_CANCEL_KEY_LEN).contains(&total) {
                    return Err(malformed(format!("CancelRequest of length {total}")));
                }
                None
            }
            version if is_protocol_3(version) => None,
            other => {
                return Err(malformed(format!(
                    "unknown startup code {other} ({}.{})",
                    other >> 16,
                    other & 0xffff
                )))
            }
        };
        if spool.len() < total {
            return Ok(Framing::Partial);
        }
        // Only now, with the whole packet present, does the state change: a `Partial`
        // answer must leave the framer as it was, since it is asked again.
        match next {
            Some(asked) => *asked = true,
            None if is_protocol_3(code) => self.phase = Phase::Typed,
            None => {}
        }
        Ok(Framing::Complete { len: total })
    }

    /// Frames a typed message at the start of `spool`.
    fn frame_typed(&self, spool: &[u8]) -> Result<Framing, FrameError> {
        // No message type is 0: PostgreSQL ends the session on one ("invalid frontend
        // message type 0"), and a 0 would read as a startup packet to anything that
        // names messages by their first byte (a mirror, tshark).
        if spool.first() == Some(&0) {
            return Err(malformed("message type 0 after startup".to_owned()));
        }
        let Some(len) = read_i32(spool, 1) else {
            return Ok(Framing::Partial);
        };
        let tag = spool[0];
        let body_and_len = usize::try_from(len)
            .ok()
            .filter(|&l| l >= 4)
            .ok_or_else(|| {
                malformed(format!(
                    "message {} has length {len}, below 4",
                    tag.escape_ascii()
                ))
            })?;
        let total = body_and_len.saturating_add(1);
        if total > self.max_message {
            return Err(FrameError::TooLong {
                max: self.max_message,
                seen: total,
            });
        }
        if spool.len() < total {
            return Ok(Framing::Partial);
        }
        Ok(Framing::Complete { len: total })
    }
}

impl Framer for PgFramer {
    fn frame(&mut self, spool: &[u8]) -> Result<Framing, FrameError> {
        match self.phase {
            Phase::Startup => self.frame_startup(spool),
            Phase::Typed => self.frame_typed(spool),
        }
    }

    fn name(&self) -> &'static str {
        PROTOCOL
    }

    fn describe(&self, message: &[u8]) -> Option<&'static str> {
        Some(message_name(self.direction, message))
    }

    /// A FATAL ErrorResponse with SQLSTATE 53300 (too_many_connections), which libpq
    /// reports whether it sent an SSLRequest or a StartupMessage first (the server's own
    /// answer when it cannot start a backend).
    fn refusal(&self, reason: &str) -> Vec<u8> {
        crate::pg::message::build_error("FATAL", "53300", reason)
    }
}

/// The big-endian Int32 at `at`, or `None` if the spool does not reach that far yet.
fn read_i32(spool: &[u8], at: usize) -> Option<i32> {
    let bytes = spool.get(at..at.checked_add(4)?)?;
    Some(i32::from_be_bytes(bytes.try_into().ok()?))
}

fn malformed(reason: impl Into<String>) -> FrameError {
    FrameError::Malformed {
        protocol: PROTOCOL,
        reason: reason.into(),
    }
}

/// Every name [`message_name`] gives.
pub const MESSAGE_NAMES: &[&str] = &[
    "Empty",
    "SSLRequest",
    "GSSENCRequest",
    "CancelRequest",
    "StartupMessage",
    "Query",
    "Parse",
    "Bind",
    "Execute",
    "Describe",
    "Sync",
    "Flush",
    "Close",
    "Terminate",
    "FunctionCall",
    "PasswordMessage",
    "CopyFail",
    "Authentication",
    "ParameterStatus",
    "BackendKeyData",
    "ReadyForQuery",
    "RowDescription",
    "DataRow",
    "CommandComplete",
    "ErrorResponse",
    "NoticeResponse",
    "NotificationResponse",
    "ParseComplete",
    "BindComplete",
    "CloseComplete",
    "NoData",
    "PortalSuspended",
    "ParameterDescription",
    "EmptyQueryResponse",
    "CopyInResponse",
    "CopyOutResponse",
    "CopyBothResponse",
    "FunctionCallResponse",
    "NegotiateProtocolVersion",
    "CopyData",
    "CopyDone",
    "Unknown",
    "unframed",
];

/// The protocol's name for a whole message travelling in `direction` (inbound: client
/// to server). An untyped startup packet starts with its length, whose first byte is
/// 0 for any packet the framer accepts, which no typed message does.
pub fn message_name(direction: Direction, message: &[u8]) -> &'static str {
    let Some(&tag) = message.first() else {
        return "Empty";
    };
    if tag == 0 {
        return match message.get(4..8) {
            Some([0x04, 0xd2, 0x16, 0x2f]) => "SSLRequest",
            Some([0x04, 0xd2, 0x16, 0x30]) => "GSSENCRequest",
            Some([0x04, 0xd2, 0x16, 0x2e]) => "CancelRequest",
            _ => "StartupMessage",
        };
    }
    match (direction, tag) {
        (Direction::Inbound, b'Q') => "Query",
        (Direction::Inbound, b'P') => "Parse",
        (Direction::Inbound, b'B') => "Bind",
        (Direction::Inbound, b'E') => "Execute",
        (Direction::Inbound, b'D') => "Describe",
        (Direction::Inbound, b'S') => "Sync",
        (Direction::Inbound, b'H') => "Flush",
        (Direction::Inbound, b'C') => "Close",
        (Direction::Inbound, b'X') => "Terminate",
        (Direction::Inbound, b'F') => "FunctionCall",
        (Direction::Inbound, b'p') => "PasswordMessage",
        (Direction::Inbound, b'f') => "CopyFail",
        (Direction::Outbound, b'R') => "Authentication",
        (Direction::Outbound, b'S') => "ParameterStatus",
        (Direction::Outbound, b'K') => "BackendKeyData",
        (Direction::Outbound, b'Z') => "ReadyForQuery",
        (Direction::Outbound, b'T') => "RowDescription",
        (Direction::Outbound, b'D') => "DataRow",
        (Direction::Outbound, b'C') => "CommandComplete",
        (Direction::Outbound, b'E') => "ErrorResponse",
        (Direction::Outbound, b'N') => "NoticeResponse",
        (Direction::Outbound, b'A') => "NotificationResponse",
        (Direction::Outbound, b'1') => "ParseComplete",
        (Direction::Outbound, b'2') => "BindComplete",
        (Direction::Outbound, b'3') => "CloseComplete",
        (Direction::Outbound, b'n') => "NoData",
        (Direction::Outbound, b's') => "PortalSuspended",
        (Direction::Outbound, b't') => "ParameterDescription",
        (Direction::Outbound, b'I') => "EmptyQueryResponse",
        (Direction::Outbound, b'G') => "CopyInResponse",
        (Direction::Outbound, b'H') => "CopyOutResponse",
        (Direction::Outbound, b'W') => "CopyBothResponse",
        (Direction::Outbound, b'V') => "FunctionCallResponse",
        (Direction::Outbound, b'v') => "NegotiateProtocolVersion",
        (_, b'd') => "CopyData",
        (_, b'c') => "CopyDone",
        _ => "Unknown",
    }
}
