//! Capture changes made at runtime (`supervise ctl capture`): for the whole tenant, a
//! stream, a peer network or one connection, optionally for a while. Sans-IO: the
//! caller passes the time. The most specific one in effect wins (connection, then
//! peer, then stream, then tenant); it replaces what the policies chose.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::policy::{Capture, Cidr};
use crate::diag::Dpid;

/// What an override applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of the tenant.
    Tenant,
    /// Every connection of stream `index`.
    Stream(usize),
    /// Connections from this network.
    Peer(Cidr),
    /// One connection.
    Connection(Dpid),
}

impl Target {
    fn rank(&self) -> u8 {
        match self {
            Target::Connection(_) => 0,
            Target::Peer(_) => 1,
            Target::Stream(_) => 2,
            Target::Tenant => 3,
        }
    }
}

/// One change.
#[derive(Debug, Clone)]
pub struct Override {
    /// What it applies to.
    pub target: Target,
    /// The capture it sets.
    pub capture: Capture,
    /// When it ends (the caller's clock), if it does.
    pub until: Option<Duration>,
}

/// The changes in effect.
#[derive(Debug, Default)]
pub struct Overrides {
    list: Vec<Override>,
}

impl Overrides {
    /// Sets (or replaces) the override of `target`.
    pub fn set(&mut self, target: Target, capture: Capture, until: Option<Duration>) {
        self.list.retain(|o| o.target != target);
        self.list.push(Override {
            target,
            capture,
            until,
        });
        self.list.sort_by_key(|o| o.target.rank());
    }

    /// Removes the override of `target`; whether there was one.
    pub fn reset(&mut self, target: &Target) -> bool {
        let before = self.list.len();
        self.list.retain(|o| &o.target != target);
        self.list.len() != before
    }

    /// Drops the ones that ended; returns them.
    pub fn expire(&mut self, now: Duration) -> Vec<Override> {
        let (ended, kept) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|o| o.until.is_some_and(|u| now >= u));
        self.list = kept;
        ended
    }

    fn applies(o: &Override, conn: &Dpid, stream: usize, peer: Option<IpAddr>) -> bool {
        match &o.target {
            Target::Tenant => true,
            Target::Stream(s) => *s == stream,
            Target::Peer(net) => peer.is_some_and(|p| net.contains(p)),
            Target::Connection(d) => d == conn,
        }
    }

    /// The capture set for a message of `conn` (stream `stream`, from `peer`) at `now`.
    pub fn capture_for(
        &self,
        now: Duration,
        conn: &Dpid,
        stream: usize,
        peer: Option<IpAddr>,
    ) -> Option<Capture> {
        self.list
            .iter()
            .filter(|o| o.until.is_none_or(|u| now < u))
            .find(|o| Self::applies(o, conn, stream, peer))
            .map(|o| o.capture)
    }

    /// Whether any override could apply to `conn` (its messages must then be seen).
    pub fn may_apply(&self, conn: &Dpid, stream: usize, peer: Option<IpAddr>) -> bool {
        self.list
            .iter()
            .any(|o| Self::applies(o, conn, stream, peer))
    }

    /// For state dumps, with the time left.
    pub fn describe(&self, now: Duration, stream_name: impl Fn(usize) -> String) -> Value {
        json!(self
            .list
            .iter()
            .map(|o| {
                let target = match &o.target {
                    Target::Tenant => "tenant".to_owned(),
                    Target::Stream(i) => format!("stream {}", stream_name(*i)),
                    Target::Peer(net) => format!("peer {net}"),
                    Target::Connection(d) => format!("connection {d}"),
                };
                json!({
                    "target": target,
                    "capture": o.capture.to_string(),
                    "remaining_ms": o.until.map(|u| u.saturating_sub(now).as_millis() as u64),
                })
            })
            .collect::<Vec<_>>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_override_in_effect_wins_and_ends_on_time() {
        let stream = Dpid::stream("t", "s");
        let (c1, c2) = (Dpid::connection(&stream, 1), Dpid::connection(&stream, 2));
        let peer = Some("10.0.0.5".parse().unwrap());
        let mut o = Overrides::default();
        let s = Duration::from_secs;
        assert_eq!(o.capture_for(s(0), &c1, 0, peer), None);
        o.set(Target::Tenant, Capture::Header, None);
        o.set(Target::Connection(c1.clone()), Capture::All, Some(s(10)));
        o.set(
            Target::Peer(Cidr::parse("10.0.0.0/8").unwrap()),
            Capture::Bytes(64),
            None,
        );
        assert_eq!(o.capture_for(s(1), &c1, 0, peer), Some(Capture::All));
        assert_eq!(o.capture_for(s(1), &c2, 0, peer), Some(Capture::Bytes(64)));
        assert_eq!(o.capture_for(s(1), &c2, 0, None), Some(Capture::Header));
        assert_eq!(
            o.capture_for(s(11), &c1, 0, peer),
            Some(Capture::Bytes(64)),
            "ended"
        );
        assert_eq!(o.expire(s(11)).len(), 1);
        o.set(Target::Tenant, Capture::None, None);
        assert_eq!(
            o.capture_for(s(12), &c2, 1, None),
            Some(Capture::None),
            "replaced"
        );
        assert!(o.reset(&Target::Tenant));
        assert!(!o.reset(&Target::Tenant));
        assert!(!o.may_apply(&c2, 1, None));
        assert!(o.may_apply(&c2, 1, peer));
    }
}
