//! Mirroring: a copy of a prefix of each logical message, its length chosen per message
//! by policy, runtime overrides and triggers, to listening stations (README
//! "Mirroring"). An observer of the engine: it sees a message after the engine has
//! decided what the tenant gets, and a slow station never stalls it (its queue drops).
//!
//! What is mirrored, so nothing leaks: what a client sent, as it arrived (an audit
//! sees a refused statement as written), with passwords and parameter values cut by
//! structure; what the client received, as it received it (after the rules' masks).

pub mod overrides;
pub mod pcapng;
pub mod policy;
pub mod record;
pub mod sink;
pub mod start;
pub mod triggers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use transforms::Direction;

use crate::diag::dpid::DpidMap;
use crate::diag::{Dpid, Kind};
use crate::observe::{Event, Observer};
use crate::profile::mirror::MirrorConfig;
use crate::profile::{FramerKind, Profile};
use overrides::Overrides;
use policy::{first_match, larger, redaction_limit, Capture, Facts};
use record::{Origin, Record, What};
use sink::Sink;
use triggers::Triggers;

/// What the mirror knows of one stream of the profile.
#[derive(Debug)]
struct StreamInfo {
    name: Arc<str>,
    postgres: bool,
    tenant_is_client: bool,
    /// A policy or trigger may apply (otherwise its connections are not watched,
    /// unless an override names them).
    watched: bool,
}

/// What the mirror knows of one connection.
#[derive(Debug)]
struct Conn {
    stream: usize,
    serial: u64,
    dpid: Arc<str>,
    client: SocketAddr,
    server: SocketAddr,
    peer: Option<IpAddr>,
    local_port: Option<u16>,
    user: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
    authenticated: bool,
    /// The StartupMessage was seen: session facts are taken once, never again.
    started: bool,
    /// A trigger keeps this session whole (an unknown peer, a marker).
    whole: Option<usize>,
    /// Its messages are seen (a policy, trigger or override may apply).
    active: bool,
    mirrored: u64,
}

/// Counters the control socket and metrics read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Messages mirrored (queued to a station, or dropped by a full queue).
    pub messages: u64,
    /// Bytes captured of them.
    pub captured_bytes: u64,
    /// Their full lengths.
    pub original_bytes: u64,
    /// Bytes withheld by structural redaction.
    pub redacted: u64,
}

/// The mirror of one tenant.
#[derive(Debug)]
pub struct Mirror {
    tenant: Arc<str>,
    config: MirrorConfig,
    streams: Vec<StreamInfo>,
    /// Trigger state (public for state dumps).
    pub triggers: Triggers,
    /// Listening stations.
    pub sinks: Vec<Sink>,
    /// Runtime capture changes.
    pub overrides: Overrides,
    conns: DpidMap<Conn>,
    started: Instant,
    /// Counters.
    pub totals: Totals,
    /// Per policy: messages it chose.
    pub policy_hits: Vec<u64>,
    reasons: Reasons,
}

/// Reasons shared by every record they explain (no allocation per message).
#[derive(Debug)]
struct Reasons {
    policies: Vec<Arc<str>>,
    triggers: Vec<Arc<str>>,
    overrides: Arc<str>,
}

/// The observer installed in the engine; the control socket reaches the same mirror.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Mutex<Mirror>>);

impl Observer for Shared {
    fn wants_messages(&self, conn: &Dpid) -> bool {
        self.lock().conns.get(conn).is_some_and(|c| c.active)
    }

    fn observe(&mut self, event: &Event<'_>) {
        self.lock().observe(event);
    }
}

impl Shared {
    /// The mirror (a poisoned lock is taken over: the mirror only observes).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A client's or server's address from an event's text (`unknown` for none).
fn address(text: &str) -> Option<SocketAddr> {
    text.parse().ok()
}

/// The connection number in `tenant/stream/cN`.
fn serial_of(dpid: &Dpid) -> u64 {
    dpid.as_str()
        .rsplit_once("/c")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Mirror {
    /// The mirror of `profile`, writing to `sinks` (started by the caller, same order
    /// as the profile's `[[mirror.sink]]`).
    pub fn new(profile: &Profile, config: MirrorConfig, sinks: Vec<Sink>) -> Mirror {
        let triggers = Triggers::new(config.triggers.clone());
        let streams = profile
            .streams
            .iter()
            .enumerate()
            .map(|(i, s)| StreamInfo {
                name: s.name.as_str().into(),
                postgres: s.framer == FramerKind::Postgres,
                tenant_is_client: s.tenant_is_client(),
                watched: config.policies.iter().any(|p| p.when.may_match_stream(i))
                    || triggers.watch(i),
            })
            .collect();
        let reasons = Reasons {
            policies: (0..config.policies.len())
                .map(|i| Arc::from(format!("policy[{i}]")))
                .collect(),
            triggers: (0..config.triggers.len())
                .map(|i| Arc::from(format!("trigger[{i}]")))
                .collect(),
            overrides: Arc::from("override"),
        };
        Mirror {
            tenant: profile.tenant.as_str().into(),
            policy_hits: vec![0; config.policies.len()],
            config,
            streams,
            triggers,
            sinks,
            overrides: Overrides::default(),
            conns: DpidMap::default(),
            started: Instant::now(),
            totals: Totals::default(),
            reasons,
        }
    }

    /// The tenant's name.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The validated configuration.
    pub fn config(&self) -> &MirrorConfig {
        &self.config
    }

    /// Connections being watched now.
    pub fn watched(&self) -> usize {
        self.conns.len()
    }

    /// Stream names, by index.
    pub fn stream_name(&self, i: usize) -> Option<&str> {
        self.streams.get(i).map(|s| &*s.name)
    }

    /// Sets (`Some`) or removes (`None`) a runtime capture change; it applies from
    /// each connection's next message. Returns whether something was removed.
    pub fn set_override(
        &mut self,
        target: overrides::Target,
        capture: Option<Capture>,
        hold: Option<std::time::Duration>,
    ) -> bool {
        let now = self.started.elapsed();
        let removed = match capture {
            Some(c) => {
                self.overrides.set(target, c, hold.map(|h| now + h));
                false
            }
            None => self.overrides.reset(&target),
        };
        self.refresh();
        removed
    }

    /// Ends overrides whose time is up (called periodically); logs each.
    pub fn expire(&mut self) {
        let ended = self.overrides.expire(self.started.elapsed());
        for o in &ended {
            tracing::info!(target: Kind::Mirror.target(), dpid = %Dpid::singleton(&self.tenant, Kind::Mirror), target = ?o.target, capture = %o.capture, "capture override ended");
        }
        if !ended.is_empty() {
            self.refresh();
        }
    }

    /// Stops mirroring: each station writes what is queued and closes.
    pub fn close(&mut self) {
        let written: u64 = self.sinks.iter().map(|s| s.totals().0).sum();
        self.sinks.clear();
        self.conns.clear();
        tracing::info!(target: Kind::Mirror.target(), dpid = %Dpid::singleton(&self.tenant, Kind::Mirror), messages = self.totals.messages, written, "mirror closed");
    }

    /// Self-test: every redacted kind, captured whole, keeps its secret out.
    pub fn check_redaction(&self) -> Result<String, String> {
        if self.config.redact.is_empty() {
            return Ok("redaction by structure is off (mirror.redact = [])".into());
        }
        let secret = b"s3cr3t-value";
        for kind in &self.config.redact {
            // Each kind as it is laid out, the secret where its secret goes.
            let mut m = match kind.as_str() {
                "PasswordMessage" => vec![b'p', 0, 0, 0, 0],
                "Bind" => {
                    let mut b = vec![b'B', 0, 0, 0, 0];
                    b.extend_from_slice(b"\0s\0");
                    b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, secret.len() as u8]);
                    b
                }
                "FunctionCall" => {
                    let mut f = vec![b'F', 0, 0, 0, 0, 0, 0, 0, 1];
                    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, secret.len() as u8]);
                    f
                }
                "Authentication" => vec![b'R', 0, 0, 0, 0, 0, 0, 0, 11],
                "BackendKeyData" => vec![b'K', 0, 0, 0, 0, 0, 0, 0x30, 0x39],
                _ => vec![0, 0, 0, 0, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39],
            };
            m.extend_from_slice(secret);
            if m[0] != 0 {
                let len = (m.len() as u32 - 1).to_be_bytes();
                m[1..5].copy_from_slice(&len);
            } else {
                let len = (m.len() as u32).to_be_bytes();
                m[..4].copy_from_slice(&len);
            }
            let kept = &m[..redaction_limit(kind, &m)];
            if kept.windows(secret.len()).any(|w| w == secret) {
                return Err(format!(
                    "a {kind} captured whole kept its secret ({} bytes)",
                    kept.len()
                ));
            }
        }
        Ok(format!(
            "{:?}: captured whole, none keeps its secret",
            self.config.redact
        ))
    }

    /// Recomputes which connections are watched.
    fn refresh(&mut self) {
        for (dpid, c) in self.conns.iter_mut() {
            c.active =
                self.streams[c.stream].watched || self.overrides.may_apply(dpid, c.stream, c.peer);
        }
    }

    /// The time on the mirror's clock.
    pub fn now(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    fn observe(&mut self, event: &Event<'_>) {
        match *event {
            Event::Opened {
                conn,
                stream,
                local,
                peer,
                ..
            } => self.opened(conn, stream, local, peer),
            Event::Message {
                conn,
                direction,
                name,
                bytes,
                ..
            } => self.arrived(conn, direction, name, bytes),
            Event::Queued {
                conn,
                direction,
                bytes,
            } => self.queued(conn, direction, bytes),
            Event::Closed { conn, .. } => {
                if let Some(c) = self.conns.remove(conn).filter(|c| c.active) {
                    let record = self.record(&c, What::Closed, Vec::new());
                    self.send_all(record);
                }
            }
            Event::Bytes { .. } | Event::Decision { .. } => {}
        }
    }

    fn opened(&mut self, dpid: &Dpid, stream: &str, local: &str, peer: &str) {
        let Some(index) = self.streams.iter().position(|s| &*s.name == stream) else {
            return;
        };
        self.expire();
        let info = &self.streams[index];
        let unknown = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        let (local, peer) = (address(local), address(peer));
        let (client, server) = if info.tenant_is_client {
            (local, peer)
        } else {
            (peer, local)
        };
        let now = self.started.elapsed();
        let peer_ip = peer.map(|p| p.ip());
        let active = info.watched || self.overrides.may_apply(dpid, index, peer_ip);
        let (whole, firings) = if active {
            self.triggers.on_connection(now, peer_ip, index)
        } else {
            (None, Vec::new())
        };
        self.log_firings(dpid, &firings);
        let conn = Conn {
            stream: index,
            serial: serial_of(dpid),
            dpid: dpid.shared(),
            client: client.unwrap_or(unknown),
            server: server.unwrap_or(unknown),
            peer: peer_ip,
            local_port: local.map(|l| l.port()),
            user: None,
            database: None,
            application_name: None,
            authenticated: false,
            started: false,
            whole,
            active,
            mirrored: 0,
        };
        let record = self.record(&conn, What::Opened, Vec::new());
        self.conns.insert(dpid.clone(), conn);
        if active {
            self.send_all(record);
        }
    }

    /// The protocol direction of engine direction `direction` on the connection's
    /// stream (`Inbound`: client → server).
    fn client_sent(&self, stream: usize, direction: Direction) -> bool {
        let flipped = self.streams[stream].tenant_is_client;
        (direction == Direction::Inbound) != flipped
    }

    fn arrived(&mut self, dpid: &Dpid, direction: Direction, kind: &'static str, message: &[u8]) {
        let Some(stream) = self.conns.get(dpid).map(|c| c.stream) else {
            return;
        };
        if !self.client_sent(stream, direction) {
            return; // the server's side is mirrored as the client receives it
        }
        if kind == "StartupMessage" && self.streams[stream].postgres {
            if let Some(c) = self.conns.get_mut(dpid).filter(|c| !c.started) {
                c.started = true;
                startup_facts(c, message);
            }
        }
        self.message(dpid, Origin::Client, kind, message);
    }

    fn queued(&mut self, dpid: &Dpid, direction: Direction, bytes: &[u8]) {
        let Some(stream) = self.conns.get(dpid).map(|c| c.stream) else {
            return;
        };
        if self.client_sent(stream, direction) {
            return; // the client's side was mirrored as it arrived
        }
        if !self.streams[stream].postgres {
            return self.message(dpid, Origin::Server, "message", bytes);
        }
        // Whole backend messages; anything that is not (the one-byte answer to an
        // SSLRequest) goes as one unframed piece.
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = match rest.get(1..5) {
                Some(l) if rest[0] != 0 => {
                    u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize + 1
                }
                _ => rest.len(),
            };
            let len = if len < 5 || len > rest.len() {
                rest.len()
            } else {
                len
            };
            let (message, next) = rest.split_at(len);
            let kind = if len >= 5 && message[0] != 0 {
                transforms::pg::framer::message_name(Direction::Outbound, message)
            } else {
                "unframed"
            };
            if kind == "Authentication" && message.get(5..9) == Some(&[0, 0, 0, 0]) {
                if let Some(c) = self.conns.get_mut(dpid) {
                    c.authenticated = true;
                }
            }
            self.message(dpid, Origin::Server, kind, message);
            rest = next;
        }
    }

    /// Chooses the capture of one message and queues the record.
    fn message(&mut self, dpid: &Dpid, origin: Origin, kind: &'static str, message: &[u8]) {
        let now = self.started.elapsed();
        let Some(conn) = self.conns.get_mut(dpid) else {
            return;
        };
        let (stream, peer) = (conn.stream, conn.peer);
        let (marked, firings) = self
            .triggers
            .on_message(now, peer, stream, origin, kind, message);
        if conn.whole.is_none() {
            conn.whole = marked;
        }
        if !firings.is_empty() {
            self.log_firings(dpid, &firings);
        }
        let conn = &self.conns[dpid];
        let facts = Facts {
            stream,
            origin,
            kind,
            peer,
            local_port: conn.local_port,
            user: conn.user.as_deref(),
            database: conn.database.as_deref(),
            application_name: conn.application_name.as_deref(),
            size: message.len(),
            authenticated: conn.authenticated,
        };
        let postgres = self.streams[stream].postgres;
        let header = match (postgres, message.first()) {
            (true, Some(0)) => 8,
            (true, Some(_)) => 5,
            _ => 0,
        };
        let chosen = first_match(&self.config.policies, &facts);
        // With no policy: no capture, and nowhere to send it, unless changed below.
        let (mut capture, mut sinks, mut reason) = match chosen {
            Some((i, p)) => (p.capture, p.sinks.as_slice(), &self.reasons.policies[i]),
            None => (Capture::None, &[][..], &self.reasons.overrides),
        };
        // An override on a message no policy chose goes to every sink.
        let mut every_sink = false;
        if let Some(c) = self.overrides.capture_for(now, dpid, stream, peer) {
            capture = c;
            reason = &self.reasons.overrides;
            every_sink = chosen.is_none();
        }
        let raised = [conn.whole, self.triggers.peer_raise(now, peer, stream)];
        for t in raised.into_iter().flatten() {
            let trigger = &self.triggers.list[t];
            if larger(capture, trigger.capture, message.len(), header) != capture {
                capture = trigger.capture;
                reason = &self.reasons.triggers[t];
                if chosen.is_none() {
                    sinks = &trigger.sinks;
                    every_sink = false;
                }
            }
        }
        let Some((mut from, mut to)) = capture.resolve(message.len(), header) else {
            return;
        };
        let sinks: Vec<usize> = if every_sink {
            (0..self.sinks.len()).collect()
        } else {
            sinks.to_vec()
        };
        if sinks.is_empty() {
            return;
        }
        let reason = reason.clone();
        if postgres {
            let limit = if kind == "unframed" {
                // Unframed bytes of a PostgreSQL stream may hold anything.
                if self.config.redact.is_empty() {
                    message.len()
                } else {
                    0
                }
            } else if self.config.redact.iter().any(|r| r == kind) {
                redaction_limit(kind, message)
            } else {
                message.len()
            };
            if to > limit {
                self.totals.redacted += (to - limit) as u64;
                to = limit;
                from = from.min(to);
            }
        }
        if let Some((i, _)) = chosen {
            self.policy_hits[i] += 1;
        }
        self.emit(dpid, origin, kind, message, (from, to), &sinks, reason);
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        dpid: &Dpid,
        origin: Origin,
        kind: &'static str,
        message: &[u8],
        (from, to): (usize, usize),
        sinks: &[usize],
        reason: Arc<str>,
    ) {
        let Some(conn) = self.conns.get_mut(dpid) else {
            return;
        };
        conn.mirrored += 1;
        self.totals.messages += 1;
        self.totals.captured_bytes += (to - from) as u64;
        self.totals.original_bytes += message.len() as u64;
        let what = What::Message {
            kind,
            origin,
            original_len: message.len(),
            offset: from,
            reason,
        };
        let stream = self.streams[conn.stream].name.clone();
        let data = message[from..to].to_vec();
        let record = Arc::new(record(&self.tenant, stream, conn, what, data));
        for &i in sinks {
            if let Some(sink) = self.sinks.get(i) {
                sink.send(record.clone());
            }
        }
    }

    fn record(&self, conn: &Conn, what: What, data: Vec<u8>) -> Record {
        let stream = self.streams[conn.stream].name.clone();
        record(&self.tenant, stream, conn, what, data)
    }

    fn send_all(&self, record: Record) {
        let record = Arc::new(record);
        for sink in &self.sinks {
            sink.send(record.clone());
        }
    }

    fn log_firings(&self, dpid: &Dpid, firings: &[triggers::Firing]) {
        for f in firings {
            let trigger = format!("{}/@mirror trigger[{}]", self.tenant, f.trigger);
            tracing::warn!(target: Kind::Mirror.target(), dpid = dpid.as_str(), trigger, reason = %f.reason, "mirror trigger fired: capture raised");
        }
    }
}

/// What a station is told about `conn`.
fn record(tenant: &Arc<str>, stream: Arc<str>, conn: &Conn, what: What, data: Vec<u8>) -> Record {
    Record {
        time_ns: now_ns(),
        tenant: tenant.clone(),
        stream,
        conn: conn.dpid.clone(),
        serial: conn.serial,
        client: conn.client,
        server: conn.server,
        what,
        data,
    }
}

/// user, database and application_name from a StartupMessage.
fn startup_facts(conn: &mut Conn, message: &[u8]) {
    let Some(body) = message.get(8..) else {
        return;
    };
    let mut parts = body.split(|b| *b == 0);
    while let (Some(key), Some(value)) = (parts.next(), parts.next()) {
        if key.is_empty() {
            break;
        }
        let value = String::from_utf8_lossy(value).into_owned();
        match key {
            b"user" => conn.user = Some(value),
            b"database" => conn.database = Some(value),
            b"application_name" => conn.application_name = Some(value),
            _ => {}
        }
    }
    if conn.database.is_none() {
        conn.database = conn.user.clone(); // PostgreSQL's own default
    }
}

#[cfg(test)]
mod attack_tests;
#[cfg(test)]
mod tests;
