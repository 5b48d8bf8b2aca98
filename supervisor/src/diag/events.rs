//! The diagnostics observer: turns the engine's events into log lines stamped with the
//! connection's DPID (and the rule's, for a decision). Message-level lines are debug:
//! they are built only while debug is on for connections somewhere (the filter, or a
//! `ctl level` override on one connection).

use tracing::Level;

use super::{Dpid, Kind};
use crate::observe::{Event, Observer};

/// Logs events.
#[derive(Debug, Default)]
pub struct EventLog;

impl Observer for EventLog {
    fn wants_messages(&self, conn: &Dpid) -> bool {
        match super::get() {
            // An override somewhere: only for connections it makes debug.
            Some(diag) if diag.levels.has_overrides() => {
                diag.levels
                    .level_for(Kind::Connection.target(), conn.as_str())
                    >= tracing_core::LevelFilter::DEBUG
            }
            _ => tracing::enabled!(target: Kind::Connection.target(), Level::DEBUG),
        }
    }

    fn observe(&mut self, event: &Event<'_>) {
        match *event {
            Event::Opened {
                conn,
                stream,
                local,
                peer,
                accepted,
            } => {
                tracing::info!(target: Kind::Connection.target(), dpid = conn.as_str(), stream, local, peer, accepted, "connection opened");
            }
            Event::Closed {
                conn,
                stream,
                inbound: i,
                outbound: o,
            } => {
                tracing::info!(
                    target: Kind::Connection.target(),
                    dpid = conn.as_str(),
                    stream,
                    peer_to_tenant_taken = i.taken,
                    peer_to_tenant_emitted = i.emitted,
                    peer_to_tenant_delivered = i.delivered,
                    peer_to_tenant_dropped = i.dropped,
                    tenant_to_peer_taken = o.taken,
                    tenant_to_peer_emitted = o.emitted,
                    tenant_to_peer_delivered = o.delivered,
                    tenant_to_peer_dropped = o.dropped,
                    "connection closed"
                );
            }
            Event::Message {
                conn,
                direction,
                name,
                len,
                ..
            } => {
                tracing::debug!(target: Kind::Connection.target(), dpid = conn.as_str(), %direction, r#type = name, len, "message");
            }
            Event::Bytes {
                conn,
                direction,
                stage,
                bytes,
            } => {
                tracing::trace!(target: Kind::Connection.target(), dpid = conn.as_str(), %direction, %stage, len = bytes.len(), "bytes");
            }
            Event::Queued {
                conn,
                direction,
                bytes,
            } => {
                tracing::trace!(target: Kind::Connection.target(), dpid = conn.as_str(), %direction, len = bytes.len(), "queued");
            }
            Event::Decision {
                conn,
                rule,
                direction,
                action,
                reason,
            } => {
                let rule = rule.map_or_else(|| "none (fail-closed)".to_owned(), |r| r.to_string());
                tracing::warn!(target: Kind::Connection.target(), dpid = conn.as_str(), rule, %direction, action, reason, "rule decision: {action}");
            }
        }
    }
}
