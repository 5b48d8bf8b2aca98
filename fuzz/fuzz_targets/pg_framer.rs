//! Fuzzes the PostgreSQL framer and every message parser.
//!
//! Input layout (see fuzz/README.md): byte 0 holds flags (bit 0: outbound, bit 1: a
//! 64-byte `max_message` so `TooLong` is reached), byte 1 the number `k` (mod 16) of
//! chunk sizes that follow, one byte each (size = byte + 1, cycled over the stream); the
//! rest is the stream. Checked:
//! - framing the stream whole and in those chunks gives the same messages, the same
//!   unframed rest and the same error (split invariance), and never panics;
//! - the framed messages are exactly the stream's prefix, in order;
//! - each typed message passes `typed`, and a startup packet the framer accepted is not
//!   refused by `parse_startup` for its length or code;
//! - every parser runs on every body; whatever parses rebuilds to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use transforms::pg::framer::PgFramer;
use transforms::pg::message::{self as m, MessageError};
use transforms::{Direction, FrameError, Framer, Framing};

/// Messages framed (each with whether it was a startup packet) and how the run ended.
type Run = (Vec<(bool, Vec<u8>)>, Result<Vec<u8>, FrameError>);

fn run(direction: Direction, max: usize, stream: &[u8], chunks: &[usize]) -> Run {
    let mut framer = PgFramer::new(direction, max);
    let mut spool = Vec::new();
    let mut messages = Vec::new();
    let mut pos = 0;
    let mut sizes = chunks.iter().cycle();
    while pos < stream.len() {
        let size = sizes.next().copied().unwrap_or(stream.len());
        let end = stream.len().min(pos + size);
        spool.extend_from_slice(&stream[pos..end]);
        pos = end;
        loop {
            let startup = framer.in_startup();
            match framer.frame(&spool) {
                Ok(Framing::Complete { len }) => {
                    assert!(len > 0 && len <= spool.len(), "Complete({len}) of {}", spool.len());
                    messages.push((startup, spool.drain(..len).collect()));
                }
                Ok(Framing::Partial) => break,
                Err(e) => return (messages, Err(e)),
            }
        }
    }
    (messages, Ok(spool))
}

/// Rebuilds `body` with the builder of each client and server message type whose parser
/// accepts it, and checks it comes back byte for byte.
fn check_body(body: &[u8]) {
    let same = |rebuilt: Vec<u8>| {
        let t = m::typed(&rebuilt).expect("a built message frames");
        assert_eq!(t.body, body, "rebuilt body differs");
    };
    if let Ok(sql) = m::parse_query(body) {
        same(m::build_query(sql));
    }
    if let Ok(p) = m::parse_parse(body) {
        same(m::build_parse(&p));
    }
    if let Ok(b) = m::parse_bind(body) {
        same(m::build_bind(&b));
    }
    if let Ok((kind, name)) = m::parse_describe(body) {
        same(m::build_describe(kind, name));
        same(m::build_close(kind, name));
    }
    if let Ok((portal, rows)) = m::parse_execute(body) {
        same(m::build_execute(portal, rows));
    }
    if let Ok(fields) = m::parse_row_description(body) {
        same(m::build_row_description(&fields));
    }
    if let Ok(values) = m::parse_data_row(body) {
        same(m::build_data_row(&values));
    }
    if let Ok(fields) = m::parse_fields(body) {
        same(m::build_fields(b'E', &fields));
    }
    if let Ok(status) = m::parse_ready(body) {
        same(m::build_ready(status));
    }
}

fn check_message(startup: bool, message: &[u8]) {
    if startup {
        match m::parse_startup(message) {
            Ok(s) => assert_eq!(m::build_startup(&s), message, "startup rebuild differs"),
            Err(e @ (MessageError::BadLength { what: "startup packet", .. }
            | MessageError::UnknownStartupCode(_))) => {
                panic!("framer accepted a startup packet parse_startup refuses: {e}")
            }
            Err(_) => {}
        }
    } else {
        let t = m::typed(message).expect("framer and typed() disagree");
        check_body(t.body);
    }
    // Whatever the phase, the other parsers must not panic either.
    let _ = m::parse_startup(message);
    if message.len() > 5 {
        check_body(&message[5..]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, rest)) = rest.split_first() else {
        return;
    };
    let k = usize::from(k % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(k);
    let chunks: Vec<usize> = sizes.iter().map(|&b| usize::from(b) + 1).collect();
    let direction = if flags & 1 == 1 {
        Direction::Outbound
    } else {
        Direction::Inbound
    };
    let max = if flags & 2 == 2 { 64 } else { 1 << 20 };

    let whole = run(direction, max, stream, &[]);
    let chunked = run(direction, max, stream, &chunks);
    assert_eq!(whole, chunked, "framing depends on the chunking");

    let framed: Vec<u8> = whole.0.iter().flat_map(|(_, msg)| msg.clone()).collect();
    assert_eq!(&stream[..framed.len()], &framed[..], "messages are not the stream prefix");
    if let Ok(rest) = &whole.1 {
        assert_eq!(&stream[framed.len()..], &rest[..], "rest is not the stream suffix");
    }
    for (startup, message) in &whole.0 {
        check_message(*startup, message);
    }
});
