//! The mirror driven by the engine's events, writing to a station that keeps what it
//! gets: what is captured of each message, what structure redacts whatever the
//! capture, what triggers and overrides change, and from when.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::sink::station::Station;
use super::*;
use crate::profile::Profile;

/// A station that keeps every record it is given (also the attack tests' station).
#[derive(Debug, Clone, Default)]
pub(super) struct Keep(pub(super) Arc<Mutex<Vec<Record>>>);

impl Station for Keep {
    fn kind(&self) -> &'static str {
        "keep"
    }
    fn connect(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn write(&mut self, record: &Record) -> io::Result<()> {
        self.0.lock().unwrap().push(record.clone());
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

const PROFILE: &str = r#"
[tenant]
name = "t"
[[stream]]
name = "pg"
listen_port = 5432
framer = "postgres"
[mirror]
[[mirror.sink]]
name = "keep"
kind = "jsonl"
[[mirror.policy]]
direction = "from_client"
capture = "all"
[[mirror.policy]]
messages = ["DataRow"]
capture = "header"
[[mirror.policy]]
capture = 64
[[mirror.trigger]]
kind = "marker"
sqlstate = ["42501"]
[[mirror.trigger]]
kind = "unknown_peer"
known = ["10.0.0.0/8"]
"#;

fn mirror() -> (Shared, Keep) {
    let (shared, keep, _) = mirror_of(PROFILE, 1024);
    (shared, keep)
}

/// The mirror of `profile_text` writing to one keeping station (queue of `queue`).
pub(super) fn mirror_of(profile_text: &str, queue: usize) -> (Shared, Keep, Profile) {
    let profile = Profile::parse(profile_text, Path::new("t.toml")).unwrap();
    let config = profile.mirror.clone().unwrap();
    let keep = Keep::default();
    let sink = Sink::start(
        Dpid::sink("t", "keep"),
        "keep".into(),
        vec![Box::new(keep.clone())],
        queue,
    );
    let shared = Shared(Arc::new(Mutex::new(Mirror::new(
        &profile,
        config,
        vec![sink],
    ))));
    (shared, keep, profile)
}

fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup(user: &str) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for part in ["user", user, "database", "shop", ""] {
        body.extend_from_slice(part.as_bytes());
        body.push(0);
    }
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

fn data_row(value: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend_from_slice(&(value.len() as u32).to_be_bytes());
    body.extend_from_slice(value);
    typed(b'D', &body)
}

fn error(state: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (code, value) in [(b'S', "ERROR"), (b'C', state), (b'M', "permission denied")] {
        body.push(code);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    typed(b'E', &body)
}

fn wait(keep: &Keep, n: usize) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = keep.0.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} records: {got:#?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn captured(r: &Record) -> (&'static str, Origin, usize, &[u8]) {
    match &r.what {
        What::Message {
            kind,
            origin,
            original_len,
            ..
        } => (kind, *origin, *original_len, &r.data),
        other => panic!("not a message: {other:?}"),
    }
}

struct Conn<'a> {
    mirror: &'a mut Shared,
    dpid: Dpid,
}

impl Conn<'_> {
    fn open<'m>(mirror: &'m mut Shared, serial: u64, peer: &str) -> Conn<'m> {
        let dpid = Dpid::connection(&Dpid::stream("t", "pg"), serial);
        mirror.observe(&Event::Opened {
            conn: &dpid,
            stream: "pg",
            local: "127.0.0.1:5432",
            peer,
            accepted: true,
        });
        assert!(mirror.wants_messages(&dpid));
        Conn { mirror, dpid }
    }
    fn client(&mut self, kind: &'static str, m: &[u8]) {
        self.mirror.observe(&Event::Message {
            conn: &self.dpid,
            direction: Direction::Inbound,
            name: kind,
            len: m.len(),
            bytes: m,
        });
    }
    fn server(&mut self, bytes: &[u8]) {
        self.mirror.observe(&Event::Queued {
            conn: &self.dpid,
            direction: Direction::Outbound,
            bytes,
        });
    }
}

#[test]
fn each_side_is_mirrored_as_the_client_saw_it_and_secrets_are_cut_by_structure() {
    let (mut m, keep) = mirror();
    let mut c = Conn::open(&mut m, 1, "10.0.0.1:40000");
    c.client("StartupMessage", &startup("alice"));
    c.client("PasswordMessage", &typed(b'p', b"hunter2\0"));
    let mut bind = b"\0s1\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&6u32.to_be_bytes());
    bind.extend_from_slice(b"777-55");
    bind.extend_from_slice(&[0, 0]);
    c.client("Bind", &typed(b'B', &bind));
    // What the rules queued toward the client: already masked.
    let mut out = typed(b'R', &[0, 0, 0, 0]);
    out.extend_from_slice(&data_row(b"***-**-1234"));
    out.extend_from_slice(&typed(b'C', b"SELECT 1\0"));
    c.server(&out);
    // The engine's own view of the server's messages is not mirrored.
    c.mirror.observe(&Event::Message {
        conn: &c.dpid,
        direction: Direction::Outbound,
        name: "DataRow",
        len: 20,
        bytes: &data_row(b"777-55-1234"),
    });
    let got = wait(&keep, 7);
    assert_eq!(got[0].what, What::Opened);
    let msgs: Vec<_> = got[1..].iter().map(captured).collect();
    assert_eq!(msgs[0].0, "StartupMessage");
    assert_eq!(
        msgs[0].3,
        &startup("alice")[..],
        "client messages whole (policy 0)"
    );
    assert_eq!(
        (msgs[1].0, msgs[1].2, msgs[1].3),
        ("PasswordMessage", 13, &b"p\0\0\0\x0c"[..]),
        "password: header only"
    );
    assert_eq!(msgs[2].0, "Bind");
    assert!(
        !msgs[2].3.windows(6).any(|w| w == b"777-55"),
        "no parameter value: {:?}",
        msgs[2].3
    );
    assert_eq!(
        msgs[2].3.len(),
        5 + 4 + 2 + 2,
        "everything before the first value"
    );
    assert_eq!((msgs[3].0, msgs[3].1), ("Authentication", Origin::Server));
    assert_eq!(
        (msgs[4].0, msgs[4].2, msgs[4].3.len()),
        ("DataRow", 22, 5),
        "DataRow: header only, full length kept"
    );
    assert_eq!(msgs[5].0, "CommandComplete");
    let all: Vec<u8> = got.iter().flat_map(|r| r.data.clone()).collect();
    for secret in [&b"hunter2"[..], b"777-55"] {
        assert!(!all.windows(secret.len()).any(|w| w == secret));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(keep.0.lock().unwrap().len(), 7, "nothing else mirrored");
}

#[test]
fn a_marker_keeps_the_session_whole_and_an_unknown_peer_is_captured_whole() {
    let (mut m, keep) = mirror();
    let mut c = Conn::open(&mut m, 1, "10.0.0.1:40000");
    let row = data_row(b"***-**-1234");
    c.server(&row);
    c.server(&error("42501"));
    c.server(&row);
    c.client("PasswordMessage", &typed(b'p', b"hunter2\0"));
    let got = wait(&keep, 5);
    assert_eq!(captured(&got[1]).3.len(), 5, "header before the marker");
    assert_eq!(captured(&got[3]).3, &row[..], "whole after it");
    assert!(matches!(&got[3].what, What::Message { reason, .. } if &**reason == "trigger[0]"));
    assert_eq!(
        captured(&got[4]).3.len(),
        5,
        "a raise does not lift redaction"
    );
    let mut stranger = Conn::open(&mut m, 2, "192.0.2.1:5555");
    stranger.server(&row);
    let got = wait(&keep, 7);
    assert_eq!(captured(&got[6]).3, &row[..]);
    assert_eq!(got[6].client, "192.0.2.1:5555".parse().unwrap());
    assert_eq!(got[6].server, "127.0.0.1:5432".parse().unwrap());
    assert_eq!(m.lock().triggers.fired, vec![1, 1]);
}

#[test]
fn an_override_applies_from_the_next_message_and_can_be_reset() {
    let (mut m, keep) = mirror();
    let mut c = Conn::open(&mut m, 1, "10.0.0.1:40000");
    let q = typed(b'Q', b"SELECT 1\0");
    c.client("Query", &q);
    let dpid = c.dpid.clone();
    m.lock().set_override(
        overrides::Target::Connection(dpid.clone()),
        Some(Capture::None),
        None,
    );
    let mut c = Conn {
        mirror: &mut m,
        dpid: dpid.clone(),
    };
    c.client("Query", &q);
    c.mirror.lock().set_override(
        overrides::Target::Connection(dpid.clone()),
        Some(Capture::Bytes(3)),
        Some(Duration::from_millis(50)),
    );
    let mut c = Conn {
        mirror: &mut m,
        dpid: dpid.clone(),
    };
    c.client("Query", &q);
    std::thread::sleep(Duration::from_millis(60));
    c.client("Query", &q);
    let got = wait(&keep, 4);
    assert_eq!(captured(&got[1]).3, &q[..]);
    assert_eq!(
        captured(&got[2]).3,
        b"Q\0\0",
        "the override, not the policy"
    );
    assert_eq!(captured(&got[3]).3, &q[..], "ended on time");
    assert!(m.lock().check_redaction().is_ok());
}
