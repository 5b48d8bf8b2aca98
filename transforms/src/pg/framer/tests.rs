//! Framer tests: every startup variant, typed messages both ways, COPY, bad lengths, the
//! recorded fixtures, and split invariance (whole stream vs. arbitrary chunks).

use super::*;
use crate::pg::message::fixture::{direction_of, is_malformed, load_hex_fixture, ALL};
use crate::pg::message::{
    build, build_query, build_ready, build_startup, build_sync, build_terminate, Startup,
    PROTOCOL_3_0, PROTOCOL_3_2,
};
use proptest::prelude::*;

const MAX: usize = 1 << 20;

/// What a stream framed to: the whole messages, then the unframed rest or the error.
type Framed = (Vec<Vec<u8>>, Result<Vec<u8>, FrameError>);

/// Feeds `input` to a fresh framer, delivering it in chunks cut at `cuts` (offsets
/// modulo the length), the way a spool fills across syscalls.
fn frame_in_chunks(direction: Direction, max: usize, input: &[u8], cuts: &[usize]) -> Framed {
    let mut framer = PgFramer::new(direction, max);
    let mut spool = Vec::new();
    let mut messages = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    bounds.push(input.len());
    bounds.sort_unstable();
    let mut pos = 0;
    for end in bounds {
        spool.extend_from_slice(&input[pos..end.max(pos)]);
        pos = end.max(pos);
        loop {
            match framer.frame(&spool) {
                Ok(Framing::Complete { len }) => {
                    assert!(len > 0 && len <= spool.len(), "bad len {len}");
                    messages.push(spool.drain(..len).collect());
                }
                Ok(Framing::Partial) => break,
                Err(e) => return (messages, Err(e)),
            }
        }
    }
    (messages, Ok(spool))
}

fn frame_all(direction: Direction, input: &[u8]) -> Framed {
    frame_in_chunks(direction, MAX, input, &[])
}

fn startup(version: i32) -> Vec<u8> {
    build_startup(&Startup::Params {
        version,
        params: vec![("user", "alice"), ("database", "shop")],
    })
}

fn is_malformed_err(r: &Result<Vec<u8>, FrameError>) -> bool {
    matches!(
        r,
        Err(FrameError::Malformed {
            protocol: "postgres",
            ..
        })
    )
}

#[test]
fn startup_3_0_then_typed() {
    let input = [
        startup(PROTOCOL_3_0),
        build_query("select 1"),
        build_terminate(),
    ];
    let (messages, rest) = frame_all(Direction::Inbound, &input.concat());
    assert_eq!(messages, input);
    assert_eq!(rest, Ok(vec![]));
}

#[test]
fn startup_3_2_then_typed() {
    let input = [startup(PROTOCOL_3_2), build_sync()];
    assert_eq!(frame_all(Direction::Inbound, &input.concat()).0, input);
}

#[test]
fn ssl_and_gssenc_requests_stay_in_startup() {
    let mut framer = PgFramer::new(Direction::Inbound, MAX);
    assert!(framer.in_startup());
    assert_eq!(framer.direction(), Direction::Inbound);
    let ssl = build_startup(&Startup::Ssl);
    let gss = build_startup(&Startup::GssEnc);
    assert_eq!(framer.frame(&ssl), Ok(Framing::Complete { len: 8 }));
    assert!(framer.in_startup());
    assert_eq!(framer.frame(&gss), Ok(Framing::Complete { len: 8 }));
    let start = startup(PROTOCOL_3_0);
    let len = start.len();
    assert_eq!(framer.frame(&start), Ok(Framing::Complete { len }));
    assert!(!framer.in_startup());
    // Typed now: the same SSLRequest bytes would be a message of type 0, which no
    // message has (PostgreSQL ends the session on it), so framing fails.
    assert!(matches!(
        framer.frame(&ssl),
        Err(FrameError::Malformed { ref reason, .. }) if reason.contains("type 0")
    ));
    assert!(framer.frame(&[0]).is_err(), "decided on the first byte");
}

#[test]
fn repeated_encryption_request_is_malformed() {
    for request in [Startup::Ssl, Startup::GssEnc] {
        let one = build_startup(&request);
        let (messages, rest) = frame_all(Direction::Inbound, &[one.clone(), one].concat());
        assert_eq!(messages.len(), 1);
        assert!(is_malformed_err(&rest), "{rest:?}");
    }
    let long_ssl = [
        &12i32.to_be_bytes()[..],
        &SSL_REQUEST.to_be_bytes(),
        &[0; 4],
    ]
    .concat();
    assert!(is_malformed_err(
        &frame_all(Direction::Inbound, &long_ssl).1
    ));
}

#[test]
fn cancel_request_stays_in_startup() {
    let cancel = build_startup(&Startup::Cancel {
        pid: 7,
        key: &[1, 2, 3, 4],
    });
    assert_eq!(cancel.len(), 16);
    let long = build_startup(&Startup::Cancel {
        pid: 7,
        key: &[9; 256],
    });
    let input = [cancel, long, startup(PROTOCOL_3_0), build_sync()];
    assert_eq!(frame_all(Direction::Inbound, &input.concat()).0, input);
    let too_long_key = [&269i32.to_be_bytes()[..], &CANCEL_REQUEST.to_be_bytes()].concat();
    assert!(is_malformed_err(
        &frame_all(Direction::Inbound, &too_long_key).1
    ));
    let no_key = [&12i32.to_be_bytes()[..], &CANCEL_REQUEST.to_be_bytes()].concat();
    assert!(is_malformed_err(&frame_all(Direction::Inbound, &no_key).1));
}

#[test]
fn outbound_is_typed_from_the_start() {
    let auth_ok = build(b'R', &0i32.to_be_bytes());
    let input = [
        auth_ok,
        build_ready(b'I'),
        build(b'1', &[]),
        build(b'D', b"\0\0"),
    ];
    assert_eq!(frame_all(Direction::Outbound, &input.concat()).0, input);
    let framer = PgFramer::new(Direction::Outbound, MAX);
    assert!(!framer.in_startup());
    assert_eq!(framer.name(), "postgres");
}

#[test]
fn copy_messages_are_ordinary_typed_messages() {
    let inbound = [
        build_query("copy t from stdin"),
        build(b'd', b"1\tx\n"),
        build(b'd', b""),
        build(b'c', b""),
        build(b'f', b"no\0"),
    ];
    let outbound = [
        build(b'G', b"\0\0\x01\0\0"),
        build(b'H', b"\0\0\x01\0\0"),
        build(b'W', b"\x01\0\0"),
        build(b'd', b"1\tx\n"),
        build(b'c', b""),
    ];
    for (direction, input) in [
        (Direction::Outbound, &outbound[..]),
        (Direction::Inbound, &inbound[..]),
    ] {
        let mut spool = input.concat();
        let mut framer = PgFramer::new(direction, MAX);
        if direction == Direction::Inbound {
            spool.splice(0..0, startup(PROTOCOL_3_0));
            let first = framer.frame(&spool).unwrap();
            let Framing::Complete { len } = first else {
                panic!("{first:?}")
            };
            spool.drain(..len);
        }
        for expected in input {
            assert_eq!(
                framer.frame(&spool),
                Ok(Framing::Complete {
                    len: expected.len()
                })
            );
            spool.drain(..expected.len());
        }
    }
}

#[test]
fn lengths_out_of_range() {
    // Typed: below 4, negative, above max_message (refused from the header alone).
    let started = startup(PROTOCOL_3_0);
    for bad in [&b"Q\0\0\0\x03"[..], b"Q\xff\xff\xff\xff", b"Q\x80\0\0\0"] {
        let (messages, rest) = frame_all(Direction::Inbound, &[&started[..], bad].concat());
        assert_eq!(messages, vec![started.clone()]);
        assert!(is_malformed_err(&rest), "{rest:?}");
    }
    let mut framer = PgFramer::new(Direction::Outbound, 100);
    assert_eq!(framer.frame(b"D\0\0\0\x63"), Ok(Framing::Partial));
    assert_eq!(
        framer.frame(b"D\0\0\0\x64"),
        Err(FrameError::TooLong {
            max: 100,
            seen: 101
        })
    );
    let mut framer = PgFramer::new(Direction::Outbound, MAX);
    assert_eq!(
        framer.frame(b"D\x7f\xff\xff\xff"),
        Err(FrameError::TooLong {
            max: MAX,
            seen: 1 << 31
        })
    );
    // Startup: below 8, above MAX_STARTUP_LEN, negative; and above a small max_message.
    for len in [0i32, 7, 10_001, -8] {
        let bad = [len.to_be_bytes(), PROTOCOL_3_0.to_be_bytes()].concat();
        assert!(
            is_malformed_err(&frame_all(Direction::Inbound, &bad).1),
            "{len}"
        );
    }
    let mut framer = PgFramer::new(Direction::Inbound, 16);
    assert_eq!(
        framer.frame(&startup(PROTOCOL_3_0)),
        Err(FrameError::TooLong { max: 16, seen: 34 })
    );
}

#[test]
fn unknown_startup_codes_are_malformed() {
    for code in [0x0002_0000, 0x0004_0000, 1234 << 16 | 5681, 0] {
        let bad = [8i32.to_be_bytes(), i32::to_be_bytes(code)].concat();
        let (messages, rest) = frame_all(Direction::Inbound, &bad);
        assert!(messages.is_empty());
        assert!(is_malformed_err(&rest), "{code}: {rest:?}");
    }
    // Direct TLS: a TLS record header where the length should be.
    let err = frame_all(Direction::Inbound, b"\x16\x03\x01\x00\xc8\x01")
        .1
        .unwrap_err();
    assert!(err.to_string().contains("direct TLS"), "{err}");
}

#[test]
fn partial_answers_do_not_change_state() {
    let start = startup(PROTOCOL_3_0);
    let mut framer = PgFramer::new(Direction::Inbound, MAX);
    for n in 0..start.len() {
        assert_eq!(framer.frame(&start[..n]), Ok(Framing::Partial), "{n}");
        assert!(framer.in_startup());
    }
    let ssl = build_startup(&Startup::Ssl);
    for _ in 0..3 {
        assert_eq!(framer.frame(&ssl[..7]), Ok(Framing::Partial));
    }
    assert_eq!(framer.frame(&ssl), Ok(Framing::Complete { len: 8 }));
}

#[test]
fn fixture_list_matches_the_directory() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hex"))
        .collect();
    on_disk.sort();
    let listed: Vec<&str> = ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(on_disk, listed);
}

#[test]
fn fixtures_frame_line_by_line() {
    for (name, text) in ALL {
        let lines = load_hex_fixture(text);
        assert!(!lines.is_empty(), "{name}");
        let (messages, rest) = frame_all(direction_of(name), &lines.concat());
        if is_malformed(name) {
            assert_eq!(messages, lines[..lines.len() - 1], "{name}");
            let too_long = matches!(rest, Err(FrameError::TooLong { .. }));
            assert_eq!(too_long, name.contains("too-long"), "{name}: {rest:?}");
            assert!(too_long || is_malformed_err(&rest), "{name}: {rest:?}");
        } else {
            assert_eq!(messages, lines, "{name}");
            assert_eq!(rest, Ok(vec![]), "{name}");
        }
    }
}

/// A valid inbound stream: optional encryption requests and cancels, a StartupMessage,
/// then typed messages.
fn inbound_stream() -> impl Strategy<Value = Vec<u8>> {
    let pre = proptest::collection::vec(0u8..3, 0..3);
    let params = proptest::collection::vec(("[a-z_]{1,8}", "[ -~]{0,12}"), 0..4);
    (pre, any::<bool>(), params, typed_messages()).prop_map(|(pre, v32, params, typed)| {
        let mut out = Vec::new();
        let (mut ssl, mut gss) = (false, false);
        for kind in pre {
            // Each encryption request at most once, as the server allows.
            out.extend(build_startup(&match kind {
                0 if !std::mem::replace(&mut ssl, true) => Startup::Ssl,
                1 if !std::mem::replace(&mut gss, true) => Startup::GssEnc,
                _ => Startup::Cancel {
                    pid: 1,
                    key: &[7; 8],
                },
            }));
        }
        let params = params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let version = if v32 { PROTOCOL_3_2 } else { PROTOCOL_3_0 };
        out.extend(build_startup(&Startup::Params { version, params }));
        out.extend(typed);
        out
    })
}

/// Typed messages with any tag but 0 and small arbitrary bodies, concatenated.
fn typed_messages() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (1u8.., proptest::collection::vec(any::<u8>(), 0..40)),
        0..12,
    )
    .prop_map(|msgs| {
        msgs.iter()
            .flat_map(|(tag, body)| build(*tag, body))
            .collect()
    })
}

proptest! {
    #[test]
    fn inbound_split_invariance(input in inbound_stream(),
                                cuts in proptest::collection::vec(0usize..1000, 0..16)) {
        let whole = frame_all(Direction::Inbound, &input);
        prop_assert_eq!(&whole.1, &Ok(vec![]));
        prop_assert_eq!(whole.0.concat(), input.clone());
        prop_assert_eq!(frame_in_chunks(Direction::Inbound, MAX, &input, &cuts), whole);
    }

    #[test]
    fn outbound_split_invariance(input in typed_messages(),
                                 cuts in proptest::collection::vec(0usize..1000, 0..16)) {
        let whole = frame_all(Direction::Outbound, &input);
        prop_assert_eq!(&whole.1, &Ok(vec![]));
        prop_assert_eq!(frame_in_chunks(Direction::Outbound, MAX, &input, &cuts), whole);
    }

    /// Arbitrary bytes (truncated or garbage streams): same messages and same error
    /// whatever the chunking, with a small limit so TooLong is reached too.
    #[test]
    fn arbitrary_bytes_split_invariance(input in proptest::collection::vec(any::<u8>(), 0..200),
                                        outbound in any::<bool>(),
                                        cuts in proptest::collection::vec(0usize..300, 0..16)) {
        let direction = if outbound { Direction::Outbound } else { Direction::Inbound };
        prop_assert_eq!(frame_in_chunks(direction, 64, &input, &cuts),
                        frame_in_chunks(direction, 64, &input, &[]));
    }

    #[test]
    fn fixtures_split_invariance(index in 0..ALL.len(),
                                 cuts in proptest::collection::vec(0usize..2000, 0..24)) {
        let (name, text) = ALL[index];
        let input = load_hex_fixture(text).concat();
        let direction = direction_of(name);
        let whole = frame_all(direction, &input);
        prop_assert_eq!(frame_in_chunks(direction, MAX, &input, &cuts), whole);
    }
}
