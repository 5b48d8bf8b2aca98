//! The engine's components by DPID: the tenant's streams and their rules, the
//! connections (numbered per stream for the supervisor's lifetime), what the rules
//! decided (hits per rule), and the observers every event goes to. The loop owns it;
//! `provide` reads it to answer the control socket.

#![forbid(unsafe_code)]

use std::collections::VecDeque;

use transforms::Direction;

use super::table::Inode;
use super::Supervisor;
use crate::diag::{Dpid, Kind};
use crate::observe::{Event, Observers, Totals};
use crate::profile::Profile;

/// One stream of the profile as a component.
#[derive(Debug)]
pub struct StreamComponent {
    /// `tenant/stream`.
    pub dpid: Dpid,
    /// `tenant/stream/rN`, one per configured rule.
    pub rules: Vec<Dpid>,
    /// Decisions each rule caused.
    pub hits: Vec<u64>,
    /// Refusals no one rule caused (fail-closed).
    pub unattributed: u64,
    /// Connections opened and released so far.
    pub opened: u64,
    /// Connections released so far.
    pub released: u64,
    next_serial: u64,
}

/// A released connection, kept a while so a DPID read in a log line still answers.
#[derive(Debug, Clone)]
pub struct Released {
    /// Its DPID.
    pub dpid: Dpid,
    /// Peer → tenant.
    pub inbound: Totals,
    /// Tenant → peer.
    pub outbound: Totals,
}

/// Released connections remembered.
const RELEASED_KEPT: usize = 64;

/// All of them.
#[derive(Debug)]
pub struct Components {
    /// The tenant's name (the first part of every DPID here).
    pub tenant: String,
    /// One per profile stream, same index.
    pub streams: Vec<StreamComponent>,
    /// Recently released connections, newest last.
    pub released: VecDeque<Released>,
    /// Where events go.
    pub observers: Observers,
    /// The mirror, when the profile has one (also among the observers).
    pub mirror: Option<crate::mirror::Shared>,
    /// Notifications serviced and their service times.
    pub stats: super::metrics::ServiceStats,
    /// When the supervisor started.
    pub started: std::time::Instant,
}

impl Components {
    /// The components of `profile`'s tenant; the diagnostics log observes.
    pub fn new(profile: &Profile) -> Components {
        let streams = profile
            .streams
            .iter()
            .map(|s| {
                let dpid = Dpid::stream(&profile.tenant, &s.name);
                StreamComponent {
                    rules: (0..s.rule_count()).map(|i| Dpid::rule(&dpid, i)).collect(),
                    hits: vec![0; s.rule_count()],
                    dpid,
                    unattributed: 0,
                    opened: 0,
                    released: 0,
                    next_serial: 1,
                }
            })
            .collect();
        let mut observers = Observers::default();
        observers.add(Box::new(crate::diag::events::EventLog));
        Components {
            tenant: profile.tenant.clone(),
            streams,
            released: VecDeque::new(),
            observers,
            mirror: None,
            stats: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    /// The DPID of a new connection of stream `config`.
    pub fn new_connection(&mut self, config: usize) -> Dpid {
        let stream = &mut self.streams[config];
        let serial = stream.next_serial;
        stream.next_serial += 1;
        stream.opened += 1;
        Dpid::connection(&stream.dpid, serial)
    }

    /// A singleton's DPID.
    pub fn singleton(&self, kind: Kind) -> Dpid {
        Dpid::singleton(&self.tenant, kind)
    }
}

impl Supervisor {
    /// Installs the tenant's mirror: an observer of every event, and a component the
    /// control socket reaches (`TENANT/@mirror`, `TENANT/@sink/NAME`).
    pub fn attach_mirror(&mut self, mirror: crate::mirror::Shared) {
        self.components.observers.add(Box::new(mirror.clone()));
        self.components.mirror = Some(mirror);
    }

    /// A tracked connection began: tell the observers.
    pub(super) fn emit_opened(&mut self, inode: Inode, local: &str, peer: &str, accepted: bool) {
        let Some((stream, _)) = self.table.stream(inode) else {
            return;
        };
        self.components.observers.emit(&Event::Opened {
            conn: &stream.dpid,
            stream: &stream.name,
            local,
            peer,
            accepted,
        });
    }

    /// A tracked connection was released: its final accounting goes to the observers
    /// and is kept for a late `ctl state`.
    pub(super) fn emit_released(&mut self, stream: &crate::stream::Stream) {
        let (inbound, outbound) = (
            stream.totals(Direction::Inbound),
            stream.totals(Direction::Outbound),
        );
        self.components.observers.emit(&Event::Closed {
            conn: &stream.dpid,
            stream: &stream.name,
            inbound,
            outbound,
        });
        if let Some(s) = self.components.streams.get_mut(stream.config) {
            s.released += 1;
        }
        if self.components.released.len() == RELEASED_KEPT {
            self.components.released.pop_front();
        }
        self.components.released.push_back(Released {
            dpid: stream.dpid.clone(),
            inbound,
            outbound,
        });
    }

    /// After bytes went into `inode`'s spool (the messages themselves went to the
    /// observers through the stream's tap): the rules' decisions go to the observers,
    /// and each decision counts as a hit of its rule.
    pub(super) fn after_push(&mut self, inode: Inode) {
        let Some((stream, _)) = self.table.stream(inode) else {
            return;
        };
        if stream.pending.is_empty() {
            return;
        }
        let component = &mut self.components.streams[stream.config];
        for (direction, decision) in stream.pending.take() {
            let rule = decision.rule.and_then(|i| component.rules.get(i));
            match decision.rule {
                Some(i) if i < component.hits.len() => component.hits[i] += 1,
                _ => component.unattributed += 1,
            }
            self.components.observers.emit(&Event::Decision {
                conn: &stream.dpid,
                rule,
                direction,
                action: decision.action,
                reason: &decision.reason,
            });
        }
    }
}
