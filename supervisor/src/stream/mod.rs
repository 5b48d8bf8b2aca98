//! Per-socket spool state: the patent's buffers and remainder.
//!
//! A [`Stream`] owns, per direction, the bytes taken from one side that do not yet form
//! a whole message (`spool`), and the transformed bytes waiting for the other side
//! (`ready`). It makes no syscalls: the notify handlers move bytes between the kernel,
//! the tenant and these queues.
//!
//! Directions here are the engine's, seen from the tenant (`Inbound`: peer → tenant),
//! whichever end of the protocol the tenant is. The framers and rules come from the
//! stream's [`StreamConfig`], which maps them to the protocol's roles where a
//! protocol has them ([`StreamConfig::protocol_direction`]: on a `remote_port`
//! stream the tenant is the client).

use crate::diag::Kind;
mod queue;
pub mod recent;

pub use queue::ByteQueue;
use recent::{Pending, Recent, Seen};

use transforms::{apply_rules, Direction, Framer, Framing, Output, Rule};

use crate::diag::Dpid;
pub use crate::observe::NoTap;
use crate::observe::{Tap, Totals};
use crate::profile::{OnError, OnPartialClose, StreamConfig};

/// One direction's state.
#[derive(Debug)]
pub struct Half {
    /// Bytes of an incomplete message.
    spool: Vec<u8>,
    framer: Box<dyn Framer>,
    /// Identity fast path: no framing, no rules.
    identity: bool,
    /// Framing failed and the policy was passthrough: bytes now flow unframed.
    raw: bool,
    /// Transformed bytes waiting for their destination.
    pub ready: ByteQueue,
    /// The source of this direction ended (EOF from the peer, or the tenant shut down
    /// writing).
    pub ended: bool,
    /// Bytes taken from the source (accounting).
    pub taken: u64,
    /// Bytes queued toward the destination: what rules emitted for whole messages,
    /// plus what a rule sent back the other way (accounting).
    pub emitted: u64,
    /// Bytes that reached the destination (accounting).
    pub delivered: u64,
    /// Bytes dropped by a policy (accounting).
    pub dropped: u64,
    /// Whole messages framed (accounting).
    pub messages: u64,
}

/// What the engine must do after feeding bytes in.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// A rule asked to end the session, or framing failed under the close policy.
    pub close: bool,
    /// Bytes were queued back toward the source of the message.
    pub back_queued: bool,
}

/// Spool capacity a connection keeps between messages (more is given back).
const KEEP_CAPACITY: usize = 256 * 1024;

/// The spool state of one tracked connection.
#[derive(Debug)]
pub struct Stream {
    /// The profile's stream name (logs).
    pub name: String,
    /// The connection's DPID (`tenant/stream/cN`): its events carry it, `ctl` finds it
    /// by it.
    pub dpid: Dpid,
    /// The stream's index in the profile.
    pub config: usize,
    /// The last messages, by name.
    pub recent: Recent,
    /// Rule decisions the engine has yet to log.
    pub pending: Pending,
    /// The profile index of each postgres rule (the session numbers its rules in the
    /// order it got them; decisions are reported by profile index).
    pg_rule_index: Vec<usize>,
    /// Peer → tenant.
    pub inbound: Half,
    /// One rule chain for both directions: a protocol rule needs what it saw one way
    /// (a server's transaction status) to decide the other (a client's query).
    rules: Vec<Box<dyn Rule>>,
    /// Tenant → peer.
    pub outbound: Half,
    on_error: OnError,
    on_partial_close: OnPartialClose,
    /// The session is being closed by policy: deliver what is ready, then end.
    pub closing: bool,
    /// The tenant shut down writing while bytes were queued: send FIN after them.
    pub shutdown_after_flush: bool,
}

impl Half {
    fn new(config: &StreamConfig, direction: Direction) -> Half {
        Half {
            spool: Vec::new(),
            framer: config.new_framer(direction),
            identity: config.is_identity(),
            raw: false,
            ready: ByteQueue::default(),
            ended: false,
            taken: 0,
            emitted: 0,
            delivered: 0,
            dropped: 0,
            messages: 0,
        }
    }

    /// `n` ready bytes reached their destination.
    pub fn delivered(&mut self, n: usize) {
        self.ready.consume(n);
        self.delivered += n as u64;
    }

    /// Bytes spooled but not yet a whole message.
    pub fn spooled(&self) -> usize {
        self.spool.len()
    }

    /// Those bytes (for a signed `dump-spool`).
    pub fn spool_bytes(&self) -> &[u8] {
        &self.spool
    }
}

impl Stream {
    /// Where every byte of `direction` went so far.
    pub fn totals(&self, direction: Direction) -> Totals {
        let h = match direction {
            Direction::Inbound => &self.inbound,
            Direction::Outbound => &self.outbound,
        };
        Totals {
            taken: h.taken,
            emitted: h.emitted,
            delivered: h.delivered,
            dropped: h.dropped,
            messages: h.messages,
        }
    }

    /// Fresh state for a new connection of `config` (the profile's stream `index`),
    /// known as `dpid`.
    pub fn new(config: &StreamConfig, index: usize, dpid: Dpid) -> Stream {
        Stream {
            name: config.name.clone(),
            dpid,
            config: index,
            recent: Recent::default(),
            pending: Pending::default(),
            pg_rule_index: config.postgres_rule_indices(),
            inbound: Half::new(config, Direction::Inbound),
            rules: config.new_rules(),
            outbound: Half::new(config, Direction::Outbound),
            on_error: config.on_error,
            on_partial_close: config.on_partial_close,
            closing: false,
            shutdown_after_flush: false,
        }
    }

    /// Puts `config`'s rules (the stream's, replaced) in force on this connection:
    /// rules that keep no session state are replaced at once, so the next message is
    /// theirs; a session rule adopts its successor's rules and applies them at the first
    /// boundary where it can (see [`Rule::adopt`]). `Err` (nothing changed) when the
    /// connection cannot continue under them: the caller ends it.
    pub fn replace_rules(&mut self, config: &StreamConfig) -> Result<(), String> {
        if config.is_identity() != self.inbound.identity {
            return Err("the new rules change how the stream is framed".into());
        }
        let mut next = config.new_rules();
        let next_session = next.pop_if(|r| r.keeps_session());
        let has_session = self.rules.last().is_some_and(|r| r.keeps_session());
        match (has_session, next_session) {
            (false, None) => {}
            (true, Some(successor)) => {
                let Some(session) = self.rules.last_mut() else {
                    return Err("the connection lost its session rule".into());
                };
                session.adopt(successor)?;
                let session = self.rules.pop();
                next.extend(session);
            }
            _ => return Err("the new rules keep a different kind of session".into()),
        }
        self.rules = next;
        self.pg_rule_index = config.postgres_rule_indices();
        Ok(())
    }

    /// Whether the stream passes bytes unchanged (the engine then reads exactly what
    /// the tenant asks for, keeping kernel readiness exact).
    pub fn is_identity(&self) -> bool {
        self.inbound.identity && !self.closing
    }

    /// What the rules know about the session (e.g. the server's transaction status).
    pub fn rule_state(&self) -> Vec<(&'static str, String)> {
        self.rules.iter().flat_map(|r| r.state()).collect()
    }

    /// The half for `direction`.
    pub fn half(&mut self, direction: Direction) -> &mut Half {
        match direction {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        }
    }

    /// Feeds bytes travelling in `direction`; whole messages are transformed into the
    /// ready queues (onward bytes into this direction's, back bytes into the other's).
    /// `tap` sees each message and what the rules queued for it.
    pub fn push(&mut self, direction: Direction, bytes: &[u8], tap: &mut dyn Tap) -> Effects {
        let mut effects = Effects::default();
        let half = match direction {
            Direction::Inbound => &mut self.inbound,
            Direction::Outbound => &mut self.outbound,
        };
        half.taken += bytes.len() as u64;
        if (half.identity || half.raw) && half.spool.is_empty() {
            half.ready.extend(bytes);
            half.emitted += bytes.len() as u64;
            let name = if half.raw { "unframed" } else { "message" };
            tap.message(&self.dpid, direction, name, bytes);
            tap.queued(&self.dpid, direction, bytes);
            return effects;
        }
        half.spool.extend_from_slice(bytes);
        self.drain_spool(direction, &mut effects, tap);
        effects
    }

    fn drain_spool(&mut self, direction: Direction, effects: &mut Effects, tap: &mut dyn Tap) {
        let mut consumed = 0;
        loop {
            let (half, rules) = match direction {
                Direction::Inbound => (&mut self.inbound, &mut self.rules),
                Direction::Outbound => (&mut self.outbound, &mut self.rules),
            };
            let rest = half.spool.len() - consumed;
            if half.raw || self.closing {
                if half.raw {
                    let unframed = &half.spool[consumed..];
                    half.ready.extend(unframed);
                    half.emitted += rest as u64;
                    if rest > 0 {
                        tap.message(&self.dpid, direction, "unframed", unframed);
                        tap.queued(&self.dpid, direction, unframed);
                    }
                } else {
                    // A rule ended the session: what the source sent after that
                    // message is not delivered (accounted as dropped).
                    half.dropped += rest as u64;
                }
                consumed += rest;
                break;
            }
            let message_len = match half.framer.frame(&half.spool[consumed..]) {
                Ok(Framing::Partial) => break,
                Ok(Framing::Complete { len }) => len,
                Err(error) => {
                    let framer = half.framer.name();
                    tracing::warn!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, framer, %error, policy = ?self.on_error, "framing failed");
                    if self.on_error == OnError::Close {
                        // The protocol's own way of saying so (e.g. a FATAL
                        // ErrorResponse to the client), before the connection closes.
                        let mut out = Output::default();
                        for rule in rules.iter_mut() {
                            rule.on_framing_error(direction, &error, &mut out);
                        }
                        self.deliver(direction, out, effects, tap);
                    }
                    // Whole messages before the bad bytes were delivered: only what
                    // follows them is subject to the policy.
                    self.half(direction).spool.drain(..consumed);
                    consumed = 0;
                    self.fail(direction, effects);
                    if self.half(direction).raw {
                        continue;
                    }
                    break;
                }
            };
            let mut out = Output::default();
            let message = &half.spool[consumed..consumed + message_len];
            half.messages += 1;
            let name = half.framer.describe(message).unwrap_or("message");
            self.recent.push(Seen {
                direction,
                name,
                len: message_len,
            });
            tap.message(&self.dpid, direction, name, message);
            let result = apply_rules(rules, direction, message, &mut out);
            consumed += message_len;
            if !out.decisions.is_empty() {
                let mut decisions = std::mem::take(&mut out.decisions);
                for d in &mut decisions {
                    d.rule = d.rule.and_then(|k| self.pg_rule_index.get(k).copied());
                }
                self.pending.extend(direction, decisions);
            }
            match result {
                Ok(()) => self.deliver(direction, out, effects, tap),
                Err(error) => {
                    tracing::warn!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, %error, "rule failed; message not delivered");
                    self.half(direction).dropped += message_len as u64;
                    self.half(direction).spool.drain(..consumed);
                    consumed = 0;
                    self.fail(direction, effects);
                }
            }
        }
        let half = self.half(direction);
        half.spool.drain(..consumed.min(half.spool.len()));
        // A long message leaves a large buffer behind; keep it only while it is used.
        if half.spool.capacity() > KEEP_CAPACITY && half.spool.len() < KEEP_CAPACITY / 4 {
            half.spool.shrink_to(KEEP_CAPACITY / 4);
        }
    }

    /// Queues a rule's output: onward bytes continue, back bytes return to the source.
    fn deliver(
        &mut self,
        direction: Direction,
        out: Output,
        effects: &mut Effects,
        tap: &mut dyn Tap,
    ) {
        self.half(direction).ready.extend(&out.onward);
        self.half(direction).emitted += out.onward.len() as u64;
        if !out.onward.is_empty() {
            tap.queued(&self.dpid, direction, &out.onward);
        }
        if !out.back.is_empty() {
            tap.queued(&self.dpid, direction.reverse(), &out.back);
            self.half(direction.reverse()).ready.extend(&out.back);
            self.half(direction.reverse()).emitted += out.back.len() as u64;
            effects.back_queued = true;
        }
        if out.close {
            tracing::info!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, "a rule ended the session");
            self.closing = true;
            effects.close = true;
        }
    }

    /// Applies the on_error policy to `direction`.
    fn fail(&mut self, direction: Direction, effects: &mut Effects) {
        match self.on_error {
            OnError::Close => {
                let half = self.half(direction);
                let dropped = half.spool.len();
                half.spool = Vec::new(); // and its memory
                half.dropped += dropped as u64;
                if dropped > 0 {
                    tracing::warn!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, dropped, "session closed by on_error policy; spooled bytes dropped");
                }
                self.closing = true;
                effects.close = true;
            }
            OnError::Passthrough => {
                tracing::warn!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, "on_error = passthrough: this direction now flows unframed and untransformed");
                self.half(direction).raw = true;
            }
        }
    }

    /// The tenant's spools together passed their budget while this direction held a
    /// large partial message: it goes as a framing failure would (the `on_error`
    /// policy), logged, so the supervisor's memory for a tenant stays bounded by the
    /// tenant's own limit rather than by its number of connections.
    pub fn over_budget(&mut self, direction: Direction, budget: usize) -> Effects {
        let mut effects = Effects::default();
        let spooled = self.half(direction).spool.len();
        tracing::warn!(target: Kind::Connection.target(), dpid = %self.dpid, stream = %self.name, %direction, spooled, budget, policy = ?self.on_error, "the tenant's spools passed their budget (a quarter of limits.memory)");
        self.fail(direction, &mut effects);
        effects
    }

    /// The source of `direction` ended: a partial message is flushed raw or dropped,
    /// per policy, and logged either way. Returns the number of bytes dropped.
    pub fn end(&mut self, direction: Direction) -> usize {
        let policy = self.on_partial_close;
        let name = self.name.clone();
        let dpid = self.dpid.clone();
        let half = self.half(direction);
        half.ended = true;
        let partial = std::mem::take(&mut half.spool);
        if partial.is_empty() {
            return 0;
        }
        match policy {
            OnPartialClose::Flush => {
                tracing::warn!(target: Kind::Connection.target(), dpid = %dpid, stream = %name, %direction, bytes = partial.len(), "direction ended inside a message; partial bytes delivered untransformed (on_partial_close = flush)");
                half.ready.extend(&partial);
                half.emitted += partial.len() as u64;
                0
            }
            OnPartialClose::Drop => {
                half.dropped += partial.len() as u64;
                tracing::warn!(target: Kind::Connection.target(), dpid = %dpid, stream = %name, %direction, dropped = partial.len(), "direction ended inside a message; partial bytes dropped (on_partial_close = drop)");
                partial.len()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;
    use std::path::Path;

    fn config(extra: &str) -> StreamConfig {
        let text =
            format!("[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nlisten_port = 1\n{extra}");
        Profile::parse(&text, Path::new("t.toml"))
            .unwrap()
            .streams
            .remove(0)
    }

    #[test]
    fn n_to_one_whole_message_transformed_once() {
        let cfg = config("framer = \"lines\"\n[[stream.rule]]\nkind = \"wrap\"\ndirection = \"outbound\"\nprefix = \"[\"\nsuffix = \"]\"\n");
        let mut s = Stream::new(&cfg, 0, Dpid::tenant("t"));
        for piece in [&b"hel"[..], b"lo wo", b"rld\n"] {
            s.push(Direction::Outbound, piece, &mut NoTap);
        }
        assert_eq!(s.outbound.ready.as_slice(), b"[hello world\n]");
    }

    #[test]
    fn partial_at_end_flushes_or_drops() {
        let mut s = Stream::new(&config("framer = \"lines\"\n"), 0, Dpid::tenant("t"));
        s.push(Direction::Inbound, b"ab\ncd", &mut NoTap);
        assert_eq!(s.end(Direction::Inbound), 0);
        assert_eq!(s.inbound.ready.as_slice(), b"ab\ncd");
        let mut s = Stream::new(
            &config("framer = \"lines\"\non_partial_close = \"drop\"\n"),
            0,
            Dpid::tenant("t"),
        );
        s.push(Direction::Inbound, b"ab\ncd", &mut NoTap);
        assert_eq!(s.end(Direction::Inbound), 2);
        assert_eq!(s.inbound.ready.as_slice(), b"ab\n");
    }

    #[test]
    fn remote_port_postgres_stream_has_the_tenant_as_client() {
        let cfg = {
            let text = "[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nremote_port = 5432\n\
                        framer = \"postgres\"\n";
            Profile::parse(text, Path::new("t.toml"))
                .unwrap()
                .streams
                .remove(0)
        };
        let mut s = Stream::new(&cfg, 0, Dpid::tenant("t"));
        // The tenant (client) asks for TLS: declined back to it, nothing to the server.
        let fx = s.push(
            Direction::Outbound,
            &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            &mut NoTap,
        );
        assert!(fx.back_queued && !fx.close);
        assert_eq!(s.inbound.ready.as_slice(), b"N");
        assert!(s.outbound.ready.is_empty());
        s.inbound.delivered(1);
        // Its StartupMessage (untyped), written in two pieces, goes to the server whole.
        let mut startup = vec![0, 0, 0, 0, 0, 3, 0, 0];
        startup.extend_from_slice(b"user\0postgres\0\0");
        let len = (startup.len() as u32).to_be_bytes();
        startup[..4].copy_from_slice(&len);
        let fx = s.push(Direction::Outbound, &startup[..5], &mut NoTap);
        assert!(!fx.close && s.outbound.ready.is_empty());
        s.push(Direction::Outbound, &startup[5..], &mut NoTap);
        assert_eq!(s.outbound.ready.as_slice(), &startup[..]);
        // The server's typed reply reaches the tenant.
        let auth_ok = [b'R', 0, 0, 0, 8, 0, 0, 0, 0];
        let fx = s.push(Direction::Inbound, &auth_ok, &mut NoTap);
        assert!(!fx.close, "{fx:?}");
        assert_eq!(s.inbound.ready.as_slice(), &auth_ok[..]);
    }

    #[test]
    fn oversized_message_follows_policy() {
        let mut s = Stream::new(
            &config("framer = \"lines\"\nmax_message = 4\n"),
            0,
            Dpid::tenant("t"),
        );
        let fx = s.push(Direction::Inbound, b"abcdef", &mut NoTap);
        assert!(fx.close && s.closing);
        assert!(s.inbound.ready.is_empty());
        let mut s = Stream::new(
            &config("framer = \"lines\"\nmax_message = 4\non_error = \"passthrough\"\n"),
            0,
            Dpid::tenant("t"),
        );
        let fx = s.push(Direction::Inbound, b"abcdef", &mut NoTap);
        assert!(!fx.close);
        s.push(Direction::Inbound, b"gh\n", &mut NoTap);
        assert_eq!(s.inbound.ready.as_slice(), b"abcdefgh\n");
    }
}
