//! Sans-IO framers and transform rules for `supervise`.
//!
//! The engine hands this crate bytes and asks two questions: *where does the next
//! logical message end?* (a [`Framer`]) and *what should be emitted for it?* (a
//! [`Rule`]). Nothing here makes a syscall, owns a socket or reads a clock, so every
//! framer and rule can be tested with byte fixtures and replayed split at arbitrary
//! boundaries.
//!
//! Directions are named from the tenant's point of view: [`Direction::Inbound`] is what
//! the tenant reads (peer → tenant), [`Direction::Outbound`] what it writes.
#![deny(missing_docs)]

mod framers;
pub mod pg;
mod rules;

pub use framers::{LinesFramer, RawFramer};
pub use rules::{OneDirection, UppercaseRule, WrapRule};

use std::any::Any;
use std::fmt;

/// Which way a message travels, seen from the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Peer → tenant: bytes the tenant reads.
    Inbound,
    /// Tenant → peer: bytes the tenant writes.
    Outbound,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Direction {
        match self {
            Direction::Inbound => Direction::Outbound,
            Direction::Outbound => Direction::Inbound,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
    }
}

/// What a framer found at the start of the spooled bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No whole message yet: spool more bytes.
    Partial,
    /// The first `len` bytes are one whole logical message.
    Complete {
        /// Length of the message, in bytes, counted from the start of the spool.
        len: usize,
    },
}

/// Why a framer gave up on a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message would exceed the configured maximum; the length is attacker-controlled,
    /// so the framer refuses to spool further.
    #[error("message exceeds the maximum of {max} bytes (at least {seen} bytes)")]
    TooLong {
        /// The configured limit.
        max: usize,
        /// How many bytes the framer has seen without the message ending.
        seen: usize,
    },
    /// The bytes do not follow the protocol.
    #[error("malformed {protocol} framing: {reason}")]
    Malformed {
        /// The framer's protocol name.
        protocol: &'static str,
        /// What was wrong, for the operator.
        reason: String,
    },
}

/// Says where logical messages end in one direction of one stream.
///
/// A framer is stateful (a protocol's first message may differ from later ones) and is
/// called with the whole unconsumed spool each time; after `Complete { len }` the caller
/// drops those `len` bytes and calls again.
pub trait Framer: Send + fmt::Debug {
    /// Looks at the spooled bytes and reports whether a whole message starts them.
    fn frame(&mut self, spool: &[u8]) -> Result<Framing, FrameError>;
    /// Short name for logs and errors.
    fn name(&self) -> &'static str;
    /// What to send a client whose connection is refused before it was handed to the
    /// tenant (the supervisor is out of resources), in the protocol's own words, so the
    /// client reports the reason instead of a bare disconnect. Empty: just close.
    fn refusal(&self, _reason: &str) -> Vec<u8> {
        Vec::new()
    }
    /// The protocol's name for a whole message this framer delimited (`Query`,
    /// `ReadyForQuery`), for diagnostics; `None` when the protocol has no names.
    fn describe(&self, _message: &[u8]) -> Option<&'static str> {
        None
    }
}

/// Something a rule decided about a message, reported for diagnostics (the bytes in
/// [`Output`] are what takes effect; this only says why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What was done: `refuse`, `drop-session`, `rewrite`.
    pub action: &'static str,
    /// Why, in the words the client was given (or would be).
    pub reason: String,
    /// The configured rule that caused it, by its index in the stream's rule list;
    /// `None` when no one rule did (a statement refused because it could not be proven
    /// to keep every rule's promise).
    pub rule: Option<usize>,
}

/// Bytes a rule emits for one message.
#[derive(Debug, Default)]
pub struct Output {
    /// Bytes continuing in the message's own direction (to the tenant for inbound, to
    /// the peer for outbound).
    pub onward: Vec<u8>,
    /// Bytes sent back where the message came from (e.g. an error for a denied query).
    pub back: Vec<u8>,
    /// End the session after these bytes are delivered.
    pub close: bool,
    /// What the rules decided (diagnostics only).
    pub decisions: Vec<Decision>,
}

impl Output {
    /// Records a decision.
    pub fn decide(&mut self, action: &'static str, reason: impl Into<String>, rule: Option<usize>) {
        self.decisions.push(Decision {
            action,
            reason: reason.into(),
            rule,
        });
    }
}

/// Why a rule could not handle a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {reason}")]
pub struct RuleError {
    /// The rule's name.
    pub rule: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// Decides what to emit for one whole message.
///
/// Rules run in order; each receives the previous rule's `onward` bytes as its message.
pub trait Rule: Any + Send + fmt::Debug {
    /// Transforms `message` travelling in `direction`, appending to `out`.
    fn apply(
        &mut self,
        direction: Direction,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError>;
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// What the rule knows about the session, for diagnostics (e.g. the server's
    /// transaction status). Default: nothing.
    fn state(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Framing failed in `direction` and the stream will close: emit what the protocol
    /// says in that case (e.g. a FATAL error to the client). Default: nothing.
    fn on_framing_error(&mut self, direction: Direction, error: &FrameError, out: &mut Output) {
        let _ = (direction, error, out);
    }

    /// Whether the rule keeps state about the connection that new rules must inherit
    /// (see [`Rule::adopt`]). A rule that keeps none is replaced whole, at once.
    fn keeps_session(&self) -> bool {
        false
    }

    /// The stream's rules were replaced: `next` is what a new connection now gets in
    /// this rule's place. A session rule takes `next`'s rules over, keeping what it
    /// knows of the connection, and puts them in force at the first point where it can
    /// prove that is safe, ending the session there when it cannot (fail closed).
    /// `Err` says why it cannot take them over at all: the engine ends the connection.
    fn adopt(&mut self, next: Box<dyn Rule>) -> Result<(), String> {
        let _ = next;
        Err(format!(
            "the {} rule cannot take over new rules in place",
            self.name()
        ))
    }
}

/// Runs `rules` in order over one message; with no rules the message passes unchanged.
///
/// Each rule sees the `onward` bytes of the one before; `back` bytes accumulate and
/// `close` is sticky.
pub fn apply_rules(
    rules: &mut [Box<dyn Rule>],
    direction: Direction,
    message: &[u8],
    out: &mut Output,
) -> Result<(), RuleError> {
    let Some((first, rest)) = rules.split_first_mut() else {
        out.onward.extend_from_slice(message);
        return Ok(());
    };
    if rest.is_empty() {
        return first.apply(direction, message, out);
    }
    let mut current = Output::default();
    first.apply(direction, message, &mut current)?;
    for rule in rest {
        let mut next = Output {
            back: std::mem::take(&mut current.back),
            close: current.close,
            onward: Vec::new(),
            decisions: std::mem::take(&mut current.decisions),
        };
        rule.apply(direction, &current.onward, &mut next)?;
        current = next;
    }
    out.onward.extend_from_slice(&current.onward);
    out.back.extend_from_slice(&current.back);
    out.close |= current.close;
    out.decisions.append(&mut current.decisions);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_chain_in_order() {
        let mut rules: Vec<Box<dyn Rule>> = vec![
            Box::new(UppercaseRule),
            Box::new(WrapRule::new(b"<".to_vec(), b">".to_vec())),
        ];
        let mut out = Output::default();
        apply_rules(&mut rules, Direction::Inbound, b"ab\n", &mut out).unwrap();
        assert_eq!(out.onward, b"<AB\n>");
        assert!(out.back.is_empty());
        assert!(!out.close);
    }

    #[test]
    fn no_rules_is_identity() {
        let mut out = Output::default();
        apply_rules(&mut [], Direction::Outbound, b"xyz", &mut out).unwrap();
        assert_eq!(out.onward, b"xyz");
    }
}
