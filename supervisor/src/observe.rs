//! The engine's one place of emission: what happens to connections, messages and
//! decisions goes out as [`Event`]s to [`Observer`]s (the diagnostics log now,
//! mirroring next). Observers watch; they never decide what the tenant gets, and they
//! are called after the decision is made. With no observer installed an emission is a
//! length check; byte-level events are built only when an observer asks for them.

use std::fmt;

use transforms::Direction;

use crate::diag::Dpid;

/// Where a connection's bytes went, per direction (the engine's directions: inbound
/// is peer → tenant).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Taken from the source.
    pub taken: u64,
    /// Queued toward the destination by the rules.
    pub emitted: u64,
    /// Reached the destination.
    pub delivered: u64,
    /// Dropped by a policy.
    pub dropped: u64,
    /// Whole messages framed.
    pub messages: u64,
}

/// Something that happened.
#[derive(Debug)]
pub enum Event<'a> {
    /// A tracked connection began (accepted by the tenant, or made by it).
    Opened {
        /// The connection.
        conn: &'a Dpid,
        /// Its stream's name.
        stream: &'a str,
        /// The tenant's end.
        local: &'a str,
        /// The other end.
        peer: &'a str,
        /// Whether the tenant accepted it (or connected out).
        accepted: bool,
    },
    /// A tracked connection was released; where every byte went.
    Closed {
        /// The connection.
        conn: &'a Dpid,
        /// Its stream's name.
        stream: &'a str,
        /// Peer → tenant.
        inbound: Totals,
        /// Tenant → peer.
        outbound: Totals,
    },
    /// A whole message was framed and handed to the rules.
    Message {
        /// The connection.
        conn: &'a Dpid,
        /// Which way.
        direction: Direction,
        /// The protocol's name for it.
        name: &'static str,
        /// Its length.
        len: usize,
        /// The message as it arrived, before any rule.
        bytes: &'a [u8],
    },
    /// Bytes the rules queued toward a destination for one message: whole protocol
    /// messages (or an unframed chunk), as the destination will get them.
    Queued {
        /// The connection.
        conn: &'a Dpid,
        /// Which way they travel.
        direction: Direction,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// Bytes moved between the engine and one side (`taken` from a source or
    /// `delivered` to a destination).
    Bytes {
        /// The connection.
        conn: &'a Dpid,
        /// Which way they travel.
        direction: Direction,
        /// `taken` or `delivered`.
        stage: Stage,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// A rule decided something about a message.
    Decision {
        /// The connection.
        conn: &'a Dpid,
        /// The rule, when one rule caused it.
        rule: Option<&'a Dpid>,
        /// The message's direction.
        direction: Direction,
        /// `refuse`, `drop-session`, `rewrite`.
        action: &'static str,
        /// Why.
        reason: &'a str,
    },
}

/// Which end of the engine bytes crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Read from the source (the peer's socket, or the tenant's buffer).
    Taken,
    /// Written to the destination.
    Delivered,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Taken => "taken",
            Stage::Delivered => "delivered",
        })
    }
}

/// Sees whole messages as they pass, for observers (mirroring needs the bytes): what
/// arrived from a source before any rule, and what the rules queued toward a
/// destination. Called only for connections an observer watches.
pub trait Tap {
    /// A whole message of `direction`, as it arrived, before the rules (`name`: the
    /// framer's name for it).
    fn message(&mut self, conn: &Dpid, direction: Direction, name: &'static str, message: &[u8]);
    /// Bytes the rules queued toward `direction`'s destination for one message (whole
    /// protocol messages, or the chunk of an unframed stream).
    fn queued(&mut self, conn: &Dpid, direction: Direction, bytes: &[u8]);
}

/// The tap of an unwatched connection.
#[derive(Debug)]
pub struct NoTap;

impl Tap for NoTap {
    #[inline]
    fn message(&mut self, _: &Dpid, _: Direction, _: &'static str, _: &[u8]) {}
    #[inline]
    fn queued(&mut self, _: &Dpid, _: Direction, _: &[u8]) {}
}

impl Tap for Observers {
    fn message(&mut self, conn: &Dpid, direction: Direction, name: &'static str, message: &[u8]) {
        self.emit(&Event::Message {
            conn,
            direction,
            name,
            len: message.len(),
            bytes: message,
        });
    }

    fn queued(&mut self, conn: &Dpid, direction: Direction, bytes: &[u8]) {
        self.emit(&Event::Queued {
            conn,
            direction,
            bytes,
        });
    }
}

/// Something that watches the engine.
pub trait Observer: Send + fmt::Debug {
    /// Whether it wants [`Event::Message`] and [`Event::Bytes`] of connection `conn`
    /// right now (they are built only then).
    fn wants_messages(&self, conn: &Dpid) -> bool {
        let _ = conn;
        false
    }
    /// Sees one event. Must not block: a slow sink drops, it never stalls the tenant.
    fn observe(&mut self, event: &Event<'_>);
}

/// The installed observers.
#[derive(Debug, Default)]
pub struct Observers {
    list: Vec<Box<dyn Observer>>,
}

impl Observers {
    /// Installs one.
    pub fn add(&mut self, observer: Box<dyn Observer>) {
        self.list.push(observer);
    }

    /// Whether any observer wants message- and byte-level events of `conn` now.
    #[inline]
    pub fn wants_messages(&self, conn: &Dpid) -> bool {
        !self.list.is_empty() && self.list.iter().any(|o| o.wants_messages(conn))
    }

    /// Bytes of `conn` were taken from their source in `direction`. For a connection
    /// the caller has found watched ([`Observers::wants_messages`]): asking again
    /// would lock and look up the mirror's table a second time per push.
    #[inline]
    pub fn taken(&mut self, conn: &Dpid, direction: Direction, bytes: &[u8]) {
        self.emit(&Event::Bytes {
            conn,
            direction,
            stage: Stage::Taken,
            bytes,
        });
    }

    /// Hands `event` to every observer.
    #[inline]
    pub fn emit(&mut self, event: &Event<'_>) {
        for observer in &mut self.list {
            observer.observe(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Count(usize);
    impl Observer for Count {
        fn observe(&mut self, _: &Event<'_>) {
            self.0 += 1;
        }
    }

    #[test]
    fn no_observer_wants_nothing_and_events_reach_each_observer() {
        let mut none = Observers::default();
        let conn = Dpid::tenant("t");
        assert!(!none.wants_messages(&conn));
        none.emit(&Event::Message {
            conn: &conn,
            direction: Direction::Inbound,
            name: "Query",
            len: 5,
            bytes: b"Q\0\0\0\x04",
        });
        let mut some = Observers::default();
        some.add(Box::new(Count::default()));
        assert!(
            !some.wants_messages(&conn),
            "an observer must ask for messages"
        );
    }
}
