//! What the mirror hands to its listening stations: one [`Record`] per mirrored
//! message (its captured prefix and its full length), plus a connection's opening and
//! closing so a station can frame a conversation. Built on the loop's thread, shared by
//! every station it goes to (`Arc`), written on each station's own thread.

use std::net::SocketAddr;
use std::sync::Arc;

/// Which way a mirrored message travelled, in the protocol's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Sent by the client (the peer of a `listen_port` stream, the tenant on a
    /// `remote_port` one), mirrored as it arrived, before any rule.
    Client,
    /// Received by the client, mirrored as the client got it (after the rules).
    Server,
}

impl Origin {
    /// `client` or `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Server => "server",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A tracked connection began: a station may frame a handshake.
    Opened,
    /// One whole message: `data` is the captured part of it.
    Message {
        /// The protocol's name for it (`Query`, `DataRow`, `line`, …).
        kind: &'static str,
        /// Which side sent it.
        origin: Origin,
        /// Its full length in bytes (what the station did not get is `original_len -
        /// offset - data.len()`).
        original_len: usize,
        /// Where `data` starts within the message (0 but for a `M..N` capture).
        offset: usize,
        /// Why this much was captured (the policy's index, a trigger, an override).
        reason: Arc<str>,
    },
    /// The connection was released.
    Closed,
}

/// One thing a listening station is told.
#[derive(Debug, Clone)]
pub struct Record {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time_ns: u64,
    /// The tenant's name.
    pub tenant: Arc<str>,
    /// The stream's name.
    pub stream: Arc<str>,
    /// The connection's DPID (`tenant/stream/cN`).
    pub conn: Arc<str>,
    /// The connection's number on its stream (stable, for spreading over stations).
    pub serial: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The server's address.
    pub server: SocketAddr,
    /// What.
    pub what: What,
    /// The captured bytes (empty but for a message).
    pub data: Vec<u8>,
}
