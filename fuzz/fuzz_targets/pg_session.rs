//! Fuzzes the PostgreSQL rule pipeline: `PgFramer` per direction and one `PgSession`
//! under the demo rules, driven like a minimal engine (spool, frame, apply).
//!
//! Input layout (see fuzz/README.md): byte 0 holds flags (bits 0–1: the user of a
//! synthesized StartupMessage, `app`, `auditor` or `postgres`, or 3 for none, the client
//! stream then starting with whatever packets the input holds; bit 2: a 256-byte
//! `max_message` so `TooLong` is reached), byte 1 a cut size `s` (0: none), then feeds:
//! a two-byte header (bit 15 set: server → client, else client → server; bits 0–14 the
//! length) and that many bytes (fewer at the end of the input). Checked:
//! - nothing panics, whatever the bytes;
//! - every `Output` (of a message or of `on_framing_error`) carries whole messages only:
//!   its `onward` and `back` bytes frame completely with a fresh typed framer, except a
//!   startup packet forwarded as is and the single `N` answering SSL/GSS requests;
//! - a message the session built (rather than forwarded) parses with `message.rs`;
//! - everything delivered to the server frames as one client stream;
//! - feeding each direction's consecutive feeds whole, or the input's feeds each cut in
//!   `s`-byte pieces, gives the same outputs message by message, the same ending and the
//!   same transaction status (split invariance).
#![no_main]

use libfuzzer_sys::fuzz_target;
use transforms::pg::framer::PgFramer;
use transforms::pg::message::{self as msg, Startup, PROTOCOL_3_0};
use transforms::pg::session::{Condition, PgRule, PgSession};
use transforms::pg::sql::PredicateRewrite;
use transforms::{Direction, Framer, Framing, Output, Rule};

/// Users a synthesized StartupMessage may carry; `auditor` has an extra mask.
const USERS: [&str; 3] = ["app", "auditor", "postgres"];

/// The demo profile's rules, as in transforms/tests/pg_sessions.rs.
fn demo_rules() -> Vec<PgRule> {
    vec![
        PgRule::Rewrite {
            when: Condition::default(),
            rewrite: PredicateRewrite {
                table: "employee".into(),
                column: "dept".into(),
                from: "20".into(),
                to: "21".into(),
            },
        },
        PgRule::Mask {
            when: Condition::default(),
            table: "employee".into(),
            column: "ssn".into(),
            replacement: "XXX-XX-XXXX".into(),
        },
        PgRule::Deny {
            when: Condition::default(),
            objects: vec!["salaries".into()],
        },
        PgRule::DropSession {
            when: Condition::default(),
            objects: vec!["audit_log".into()],
        },
        PgRule::Mask {
            when: Condition {
                user: Some("auditor".into()),
                ..Condition::default()
            },
            table: "employee".into(),
            column: "name".into(),
            replacement: "(hidden)".into(),
        },
    ]
}

/// What the engine did for one message (or framing error), in order.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A message was applied.
    Applied {
        direction: Direction,
        onward: Vec<u8>,
        back: Vec<u8>,
        close: bool,
    },
    /// Framing failed; the session's `on_framing_error` output.
    FramingError {
        direction: Direction,
        error: String,
        onward: Vec<u8>,
        back: Vec<u8>,
    },
    /// The rule refused the message; the stream stops.
    RuleError(String),
}

/// Frames `bytes` completely as typed messages with a fresh framer: a leftover means
/// half a message was emitted. Returns the messages.
fn whole_typed<'a>(bytes: &'a [u8], what: &str) -> Vec<&'a [u8]> {
    let mut framer = PgFramer::new(Direction::Outbound, usize::MAX);
    let mut messages = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        match framer.frame(rest) {
            Ok(Framing::Complete { len }) => {
                messages.push(&rest[..len]);
                rest = &rest[len..];
            }
            Ok(Framing::Partial) => panic!("{what}: half a message emitted: {rest:02x?}"),
            Err(e) => panic!("{what}: unframable bytes emitted ({e}): {rest:02x?}"),
        }
    }
    messages
}

/// A single whole startup packet, as a fresh client-side framer reads it.
fn whole_startup(bytes: &[u8], what: &str) {
    let mut framer = PgFramer::new(Direction::Inbound, usize::MAX);
    match framer.frame(bytes) {
        Ok(Framing::Complete { len }) if len == bytes.len() => {}
        other => panic!("{what}: not one whole startup packet ({other:?}): {bytes:02x?}"),
    }
}

/// A message the session built must parse: it is the session's own output, not
/// something forwarded from a peer.
fn built_parses(direction: Direction, message: &[u8]) {
    let t = msg::typed(message).expect("a framed message is typed");
    let ok = match (direction, t.tag) {
        (Direction::Inbound, b'Q') => msg::parse_query(t.body).map(drop),
        (Direction::Inbound, b'P') => msg::parse_parse(t.body).map(drop),
        (Direction::Outbound, b'D') => msg::parse_data_row(t.body).map(drop),
        (Direction::Outbound, b'E') => msg::parse_fields(t.body).map(drop),
        _ => Ok(()),
    };
    if let Err(e) = ok {
        panic!("session built a malformed {direction} message ({e}): {message:02x?}");
    }
}

/// Checks one output of the session: whole messages only, in both directions.
fn check_output(direction: Direction, startup: bool, message: Option<&[u8]>, out: &Output) {
    if direction == Direction::Inbound && startup {
        // The client's untyped packets: forwarded whole or answered with a lone `N`.
        if !out.onward.is_empty() {
            whole_startup(&out.onward, "onward startup packet");
        }
        if out.back != b"N" {
            whole_typed(&out.back, "back to the client during startup");
        }
        return;
    }
    for m in whole_typed(&out.onward, "onward") {
        if message != Some(m) {
            built_parses(direction, m);
        }
    }
    for m in whole_typed(&out.back, "back") {
        built_parses(direction.reverse(), m);
    }
}

/// A minimal engine: per direction a spool and a framer, one session for both.
struct Engine {
    framers: [PgFramer; 2],
    spools: [Vec<u8>; 2],
    session: PgSession,
    events: Vec<Event>,
    to_server: Vec<u8>,
    stopped: bool,
}

impl Engine {
    fn new(max: usize) -> Engine {
        Engine {
            framers: [
                PgFramer::new(Direction::Inbound, max),
                PgFramer::new(Direction::Outbound, max),
            ],
            spools: [Vec::new(), Vec::new()],
            session: PgSession::new(demo_rules()),
            events: Vec::new(),
            to_server: Vec::new(),
            stopped: false,
        }
    }

    fn feed(&mut self, direction: Direction, chunk: &[u8]) {
        if self.stopped {
            return;
        }
        let i = usize::from(direction == Direction::Outbound);
        self.spools[i].extend_from_slice(chunk);
        loop {
            let startup = self.framers[i].in_startup();
            let len = match self.framers[i].frame(&self.spools[i]) {
                Ok(Framing::Complete { len }) => len,
                Ok(Framing::Partial) => return,
                Err(error) => {
                    let mut out = Output::default();
                    self.session.on_framing_error(direction, &error, &mut out);
                    check_output(direction, false, None, &out);
                    self.deliver(direction, &out);
                    self.events.push(Event::FramingError {
                        direction,
                        error: error.to_string(),
                        onward: out.onward,
                        back: out.back,
                    });
                    self.stopped = true;
                    return;
                }
            };
            assert!(
                len > 0 && len <= self.spools[i].len(),
                "Complete({len}) of {}",
                self.spools[i].len()
            );
            let message: Vec<u8> = self.spools[i].drain(..len).collect();
            let mut out = Output::default();
            if let Err(error) = self.session.apply(direction, &message, &mut out) {
                self.events.push(Event::RuleError(error.to_string()));
                self.stopped = true;
                return;
            }
            check_output(direction, startup, Some(&message), &out);
            self.deliver(direction, &out);
            let close = out.close;
            self.events.push(Event::Applied {
                direction,
                onward: out.onward,
                back: out.back,
                close,
            });
            if close {
                self.stopped = true;
                return;
            }
        }
    }

    fn deliver(&mut self, direction: Direction, out: &Output) {
        match direction {
            Direction::Inbound => self.to_server.extend_from_slice(&out.onward),
            Direction::Outbound => self.to_server.extend_from_slice(&out.back),
        }
    }
}

/// Runs the feeds, each cut in `cut`-byte pieces (0: whole).
fn run(max: usize, feeds: &[(Direction, &[u8])], cut: usize) -> (Vec<Event>, u8, Vec<u8>) {
    let mut engine = Engine::new(max);
    for &(direction, bytes) in feeds {
        if cut == 0 || bytes.is_empty() {
            engine.feed(direction, bytes);
        } else {
            for piece in bytes.chunks(cut) {
                engine.feed(direction, piece);
            }
        }
    }
    let status = engine.session.transaction_status();
    (engine.events, status, engine.to_server)
}

fuzz_target!(|data: &[u8]| {
    let [flags, cut, rest @ ..] = data else {
        return;
    };
    let max = if flags & 4 == 4 { 256 } else { 1 << 20 };
    let startup = USERS.get(usize::from(flags & 3)).map(|user| {
        msg::build_startup(&Startup::Params {
            version: PROTOCOL_3_0,
            params: vec![("user", user), ("database", "hr")],
        })
    });

    let mut feeds: Vec<(Direction, &[u8])> = Vec::new();
    if let Some(packet) = &startup {
        feeds.push((Direction::Inbound, packet));
    }
    let mut rest = rest;
    while let [hi, lo, tail @ ..] = rest {
        let direction = if hi & 0x80 == 0 {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let len = (usize::from(hi & 0x7f) << 8 | usize::from(*lo)).min(tail.len());
        let (chunk, tail) = tail.split_at(len);
        feeds.push((direction, chunk));
        rest = tail;
    }

    // Each direction's consecutive feeds joined: what one big read would see.
    let mut joined: Vec<(Direction, Vec<u8>)> = Vec::new();
    for &(direction, bytes) in &feeds {
        match joined.last_mut() {
            Some((d, seg)) if *d == direction => seg.extend_from_slice(bytes),
            _ => joined.push((direction, bytes.to_vec())),
        }
    }
    let joined: Vec<(Direction, &[u8])> = joined.iter().map(|(d, b)| (*d, b.as_slice())).collect();

    let whole = run(max, &joined, 0);
    let split = run(max, &feeds, usize::from(*cut));
    assert_eq!(whole, split, "output depends on how the bytes were split");

    // Everything the server received is one well-formed client stream.
    let mut framer = PgFramer::new(Direction::Inbound, usize::MAX);
    let mut rest = whole.2.as_slice();
    while !rest.is_empty() {
        match framer.frame(rest) {
            Ok(Framing::Complete { len }) => rest = &rest[len..],
            other => panic!("stream to the server does not frame ({other:?}): {rest:02x?}"),
        }
    }
});
