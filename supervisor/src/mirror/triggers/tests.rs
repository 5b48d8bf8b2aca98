//! The triggers driven by a scripted clock; each script's firings and raises are
//! kept as a snapshot (`snapshots/`), reviewed like code.

use std::fmt::Write;

use super::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ip(text: &str) -> Option<IpAddr> {
    Some(text.parse().unwrap())
}

fn trigger(condition: Condition) -> Trigger {
    Trigger {
        condition,
        capture: Capture::All,
        streams: vec![],
        sinks: vec![0],
    }
}

fn log(out: &mut String, at: f64, firings: &[Firing]) {
    for f in firings {
        writeln!(out, "{at:>5}s t{}: {}", f.trigger, f.reason).unwrap();
    }
}

#[test]
fn a_message_rate_raises_one_peer_for_a_while() {
    let mut t = Triggers::new(vec![trigger(Condition::Rate {
        counted: Counted::Messages,
        above: 3,
        window: secs(1.0),
        hold: secs(10.0),
    })]);
    let mut out = String::new();
    let q = b"Q\0\0\0\x0dSELECT 1\0";
    // Three a second is allowed; a fourth within the second fires, once.
    for (at, peer) in [
        (0.0, "10.0.0.1"),
        (0.3, "10.0.0.1"),
        (0.6, "10.0.0.1"),
        (0.7, "10.0.0.2"),
        (1.2, "10.0.0.1"),
        (1.25, "10.0.0.1"),
        (1.3, "10.0.0.1"),
        (1.35, "10.0.0.1"),
        (1.4, "10.0.0.1"),
    ] {
        let (_, f) = t.on_message(secs(at), ip(peer), 0, Origin::Client, "Query", q);
        log(&mut out, at, &f);
    }
    // Server messages are not the peer's.
    for i in 0..10 {
        let (_, f) = t.on_message(secs(2.0), ip("10.0.0.2"), 0, Origin::Server, "DataRow", b"");
        assert!(f.is_empty(), "{i}");
    }
    for (at, peer) in [
        (5.0, "10.0.0.1"),
        (5.0, "10.0.0.2"),
        (11.34, "10.0.0.1"),
        (11.36, "10.0.0.1"),
    ] {
        writeln!(
            out,
            "{at:>5}s raise {peer}: {:?}",
            t.peer_raise(secs(at), ip(peer), 0)
        )
        .unwrap();
    }
    assert_eq!(t.fired, vec![1]);
    insta::assert_snapshot!(out);
}

#[test]
fn connections_from_unknown_or_long_unseen_peers_are_captured_whole() {
    let mut t = Triggers::new(vec![
        trigger(Condition::UnknownPeer {
            known: vec![Cidr::parse("10.0.0.0/8").unwrap()],
            unseen_for: Some(secs(60.0)),
        }),
        trigger(Condition::Rate {
            counted: Counted::Connections,
            above: 2,
            window: secs(5.0),
            hold: secs(30.0),
        }),
    ]);
    let mut out = String::new();
    for (at, peer) in [
        (0.0, "10.1.1.1"),
        (1.0, "192.0.2.9"),
        (2.0, "192.0.2.9"),
        (3.0, "::ffff:192.0.2.9"),
        (100.0, "192.0.2.9"),
        (101.0, "2001:db8::1"),
    ] {
        let (whole, f) = t.on_connection(secs(at), ip(peer), 0);
        writeln!(out, "{at:>5}s {peer}: whole={whole:?}").unwrap();
        log(&mut out, at, &f);
    }
    insta::assert_snapshot!(out);
}

#[test]
fn markers_find_literals_expressions_and_sqlstates() {
    let mut t = Triggers::new(vec![
        trigger(Condition::Marker {
            marker: Marker::Literal(b"pg_read_file".to_vec()),
            origin: Some(Origin::Client),
        }),
        trigger(Condition::Marker {
            marker: Marker::Regex(regex::bytes::Regex::new("(?i)drop\\s+table").unwrap()),
            origin: None,
        }),
        trigger(Condition::Marker {
            marker: Marker::SqlState(vec!["28P01".into(), "42501".into()]),
            origin: Some(Origin::Server),
        }),
    ]);
    let error = |state: &str| {
        let mut m = vec![b'E', 0, 0, 0, 0];
        for (code, value) in [(b'S', "ERROR"), (b'C', state), (b'M', "no")] {
            m.push(code);
            m.extend_from_slice(value.as_bytes());
            m.push(0);
        }
        m.push(0);
        m
    };
    let mut out = String::new();
    let cases: Vec<(Origin, &str, Vec<u8>)> = vec![
        (
            Origin::Client,
            "Query",
            b"Q....SELECT pg_read_file('/etc/passwd')\0".to_vec(),
        ),
        (Origin::Server, "DataRow", b"D....pg_read_file".to_vec()),
        (Origin::Client, "Query", b"Q....DROP   TABLE t\0".to_vec()),
        (Origin::Server, "ErrorResponse", error("42501")),
        (Origin::Server, "ErrorResponse", error("23505")),
        (Origin::Server, "NoticeResponse", error("28P01")),
    ];
    for (origin, kind, message) in cases {
        let (marked, f) = t.on_message(secs(0.0), ip("10.0.0.1"), 0, origin, kind, &message);
        writeln!(out, "{} {kind}: marked={marked:?}", origin.as_str()).unwrap();
        log(&mut out, 0.0, &f);
    }
    insta::assert_snapshot!(out);
    assert_eq!(sqlstate(&error("28P01")), Some("28P01"));
    assert_eq!(sqlstate(b"E\0\0\0\x05"), None);
    assert_eq!(sqlstate(b"E\0\0\0\x09Cabc"), None, "unterminated field");
}

#[test]
fn the_peer_table_stays_bounded() {
    let mut t = Triggers::new(vec![trigger(Condition::UnknownPeer {
        known: vec![],
        unseen_for: Some(secs(1.0)),
    })]);
    for i in 0..(PEERS_KEPT as u32 + 10) {
        let peer = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        t.on_connection(secs(f64::from(i) * 0.001), Some(peer), 0);
    }
    assert!(t.peers.len() <= PEERS_KEPT, "{}", t.peers.len());
}
