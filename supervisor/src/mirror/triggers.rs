//! Stateful triggers that raise the capture: a rate per peer over a sliding window,
//! a peer not known (or not seen for a while), a marker in a session. Sans-IO: the
//! caller passes the time (`now`, any monotonic origin) and the facts, and logs the
//! firings it gets back with the DPIDs it knows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::policy::{canonical, Capture, Cidr};
use super::record::Origin;

/// What a rate trigger counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Messages from the peer (client messages of its connections).
    Messages,
    /// New connections from the peer.
    Connections,
}

/// What a marker looks for.
#[derive(Debug, Clone)]
pub enum Marker {
    /// These bytes anywhere in a message.
    Literal(Vec<u8>),
    /// A match of this expression in a message.
    Regex(regex::bytes::Regex),
    /// An ErrorResponse with one of these SQLSTATEs (what the client received).
    SqlState(Vec<String>),
}

/// The condition of a trigger.
#[derive(Debug, Clone)]
pub enum Condition {
    /// More than `above` of `counted` from one peer within `window` raises the
    /// capture of that peer's messages for `hold`.
    Rate {
        /// What is counted.
        counted: Counted,
        /// Fires when the count passes this.
        above: usize,
        /// The sliding window.
        window: Duration,
        /// How long the raise lasts.
        hold: Duration,
    },
    /// A peer outside `known` (when given) and not seen within `unseen_for` (when
    /// given) gets its connections captured in full.
    UnknownPeer {
        /// Networks that are always known.
        known: Vec<Cidr>,
        /// A peer seen more recently than this is known.
        unseen_for: Option<Duration>,
    },
    /// A marker keeps the rest of the session captured in full.
    Marker {
        /// What to look for.
        marker: Marker,
        /// In whose messages (`None`: both).
        origin: Option<Origin>,
    },
}

/// One `[[mirror.trigger]]`.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// When it fires.
    pub condition: Condition,
    /// The capture it raises to.
    pub capture: Capture,
    /// Stream indices it watches (empty: all).
    pub streams: Vec<usize>,
    /// Indices of the sinks raised messages go to when no policy chose any.
    pub sinks: Vec<usize>,
}

/// A trigger fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// Its index in the profile.
    pub trigger: usize,
    /// What happened, for the log line.
    pub reason: String,
}

/// A rate trigger's window, as `BUCKETS` counters of `window / BUCKETS` each: a
/// peer costs the same few bytes however many events it sends (a list of times
/// would grow to `above` entries per idle peer). The count covers the last window
/// to within one bucket.
#[derive(Debug, Default, Clone)]
struct Window {
    counts: [u32; BUCKETS],
    /// The bucket (time / bucket width) the newest count went into.
    last: u64,
}

/// Buckets per rate window.
const BUCKETS: usize = 10;

impl Window {
    /// Counts one event at `now`; returns the events within the window.
    fn count(&mut self, now: Duration, window: Duration) -> u64 {
        let width = (window.as_nanos() / BUCKETS as u128).max(1);
        let bucket = (now.as_nanos() / width) as u64;
        let stale = bucket.saturating_sub(self.last);
        if stale >= BUCKETS as u64 {
            self.counts = [0; BUCKETS];
        } else {
            for b in self.last + 1..=bucket {
                self.counts[(b % BUCKETS as u64) as usize] = 0;
            }
        }
        self.last = self.last.max(bucket);
        let slot = &mut self.counts[(bucket % BUCKETS as u64) as usize];
        *slot = slot.saturating_add(1);
        self.counts.iter().map(|c| u64::from(*c)).sum()
    }
}

/// What the triggers remember of one peer.
#[derive(Debug, Default)]
struct PeerState {
    last_seen: Option<Duration>,
    /// Per rate trigger: its window.
    windows: HashMap<usize, Window>,
    /// Per rate trigger: raised until.
    raised_until: HashMap<usize, Duration>,
}

/// Most peers remembered; past it the least recently seen are forgotten.
const PEERS_KEPT: usize = 65_536;

/// The triggers and their state.
#[derive(Debug, Default)]
pub struct Triggers {
    /// As configured.
    pub list: Vec<Trigger>,
    peers: HashMap<IpAddr, PeerState>,
    /// Firings so far, per trigger.
    pub fired: Vec<u64>,
}

impl Triggers {
    /// Triggers in profile order.
    pub fn new(list: Vec<Trigger>) -> Triggers {
        let fired = vec![0; list.len()];
        Triggers {
            list,
            peers: HashMap::new(),
            fired,
        }
    }

    /// Whether any trigger watches stream `stream`.
    pub fn watch(&self, stream: usize) -> bool {
        self.list
            .iter()
            .any(|t| t.streams.is_empty() || t.streams.contains(&stream))
    }

    fn applies(&self, i: usize, stream: usize) -> bool {
        let streams = &self.list[i].streams;
        streams.is_empty() || streams.contains(&stream)
    }

    /// A connection from `peer` on `stream` opened at `now`. Returns the full-capture
    /// trigger for the connection (an unknown peer), if any, and what fired.
    pub fn on_connection(
        &mut self,
        now: Duration,
        peer: Option<IpAddr>,
        stream: usize,
    ) -> (Option<usize>, Vec<Firing>) {
        let mut firings = Vec::new();
        let Some(peer) = peer.map(canonical) else {
            return (None, firings);
        };
        self.forget_if_full(now);
        let last_seen = self.peers.get(&peer).and_then(|p| p.last_seen);
        let mut whole = None;
        for i in 0..self.list.len() {
            if !self.applies(i, stream) {
                continue;
            }
            match &self.list[i].condition {
                Condition::UnknownPeer { known, unseen_for } => {
                    let listed = known.iter().any(|c| c.contains(peer));
                    let recent = match (unseen_for, last_seen) {
                        (Some(t), Some(seen)) => now.saturating_sub(seen) < *t,
                        _ => false,
                    };
                    // With a list only, the list decides; with a time only, recency.
                    let is_known = match (known.is_empty(), unseen_for.is_some()) {
                        (false, false) => listed,
                        (true, true) => recent,
                        (false, true) => listed || recent,
                        (true, false) => false,
                    };
                    if !is_known {
                        whole.get_or_insert(i);
                        let why = match last_seen {
                            Some(seen) => format!(
                                "peer {peer} is unknown (last seen {}s ago)",
                                now.saturating_sub(seen).as_secs()
                            ),
                            None => format!("peer {peer} is unknown (never seen)"),
                        };
                        firings.push(self.fire(i, why));
                    }
                }
                Condition::Rate {
                    counted: Counted::Connections,
                    ..
                } => {
                    if let Some(f) = self.count(i, now, peer) {
                        firings.push(f);
                    }
                }
                _ => {}
            }
        }
        self.peers.entry(peer).or_default().last_seen = Some(now);
        (whole, firings)
    }

    /// A message of a connection from `peer` on `stream`: counts it for rate
    /// triggers; returns the marker trigger that matched (the session is then kept
    /// whole), if any, and what fired.
    pub fn on_message(
        &mut self,
        now: Duration,
        peer: Option<IpAddr>,
        stream: usize,
        origin: Origin,
        kind: &str,
        message: &[u8],
    ) -> (Option<usize>, Vec<Firing>) {
        let mut firings = Vec::new();
        let mut marked = None;
        let peer = peer.map(canonical);
        for i in 0..self.list.len() {
            if !self.applies(i, stream) {
                continue;
            }
            match &self.list[i].condition {
                Condition::Rate {
                    counted: Counted::Messages,
                    ..
                } if origin == Origin::Client => {
                    if let Some(f) = peer.and_then(|p| self.count(i, now, p)) {
                        firings.push(f);
                    }
                }
                Condition::Marker { marker, origin: o } if o.is_none_or(|o| o == origin) => {
                    if let Some(what) = marked_by(marker, kind, message) {
                        marked.get_or_insert(i);
                        firings.push(self.fire(i, format!("marker found: {what}")));
                    }
                }
                _ => {}
            }
        }
        (marked, firings)
    }

    /// The largest raise in effect for `peer` on `stream` at `now`.
    pub fn peer_raise(&self, now: Duration, peer: Option<IpAddr>, stream: usize) -> Option<usize> {
        let state = self.peers.get(&canonical(peer?))?;
        state
            .raised_until
            .iter()
            .filter(|(i, until)| now < **until && self.applies(**i, stream))
            .map(|(i, _)| *i)
            .min()
    }

    /// Counts one event of rate trigger `i` for `peer`; fires when the window holds
    /// more than allowed and the peer is not already raised by it.
    fn count(&mut self, i: usize, now: Duration, peer: IpAddr) -> Option<Firing> {
        let Condition::Rate {
            counted,
            above,
            window,
            hold,
        } = self.list[i].condition
        else {
            return None;
        };
        self.forget_if_full(now);
        let state = self.peers.entry(peer).or_default();
        state.last_seen = Some(state.last_seen.map_or(now, |s| s.max(now)));
        let seen = state.windows.entry(i).or_default().count(now, window);
        if seen <= above as u64 {
            return None;
        }
        let raised = state.raised_until.get(&i).is_some_and(|u| now < *u);
        state.raised_until.insert(i, now + hold);
        if raised {
            return None; // extended, not fired again
        }
        let what = match counted {
            Counted::Messages => "messages",
            Counted::Connections => "connections",
        };
        Some(self.fire(
            i,
            format!(
                "peer {peer}: more than {above} {what} in {}ms; capture raised for {}s",
                window.as_millis(),
                hold.as_secs()
            ),
        ))
    }

    fn fire(&mut self, i: usize, reason: String) -> Firing {
        self.fired[i] += 1;
        Firing { trigger: i, reason }
    }

    /// Keeps the peer table bounded: past the limit, peers not seen for the longest
    /// window go; if that is not enough, the older half.
    fn forget_if_full(&mut self, now: Duration) {
        if self.peers.len() < PEERS_KEPT {
            return;
        }
        let horizon = self
            .list
            .iter()
            .map(|t| match t.condition {
                Condition::Rate { window, hold, .. } => window.max(hold),
                Condition::UnknownPeer { unseen_for, .. } => unseen_for.unwrap_or_default(),
                Condition::Marker { .. } => Duration::ZERO,
            })
            .max()
            .unwrap_or_default();
        let seen = |p: &PeerState| p.last_seen.unwrap_or_default();
        // A peer whose capture is raised is never forgotten: filling the table with
        // other peers must not shed a raise.
        let raised = |p: &PeerState| p.raised_until.values().any(|u| now < *u);
        self.peers
            .retain(|_, p| raised(p) || now.saturating_sub(seen(p)) < horizon);
        if self.peers.len() >= PEERS_KEPT {
            let mut times: Vec<Duration> = self.peers.values().map(seen).collect();
            times.sort_unstable();
            let median = times[times.len() / 2];
            self.peers.retain(|_, p| raised(p) || seen(p) > median);
        }
    }
}

/// What `marker` found in `message` of `kind`, if anything.
fn marked_by(marker: &Marker, kind: &str, message: &[u8]) -> Option<String> {
    match marker {
        Marker::Literal(text) => message
            .windows(text.len().max(1))
            .any(|w| w == text.as_slice())
            .then(|| format!("literal {:?}", String::from_utf8_lossy(text))),
        // Where, not what: the matched bytes may be a value redaction keeps from the
        // stations, and log lines may reach one.
        Marker::Regex(re) => re
            .find(message)
            .map(|m| format!("regex /{}/ matched at byte {}", re.as_str(), m.start())),
        Marker::SqlState(states) => {
            if kind != "ErrorResponse" {
                return None;
            }
            let state = sqlstate(message)?;
            states
                .iter()
                .any(|s| s == state)
                .then(|| format!("ErrorResponse SQLSTATE {state}"))
        }
    }
}

/// The SQLSTATE field (`C`) of an ErrorResponse.
pub fn sqlstate(message: &[u8]) -> Option<&str> {
    let mut fields = message.get(5..)?;
    while let Some((&code, rest)) = fields.split_first() {
        if code == 0 {
            return None;
        }
        let nul = rest.iter().position(|b| *b == 0)?;
        if code == b'C' {
            return std::str::from_utf8(&rest[..nul]).ok();
        }
        fields = &rest[nul + 1..];
    }
    None
}

#[cfg(test)]
mod tests;
