//! Attacks on the mirror, from a hostile client, a hostile station and an unlucky
//! configuration. Each test tries one and asserts the promise holds. Those marked
//! "HELD (was a hole)" broke it when the review found them; the fix is named there.

use std::io;
use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::pcapng::PcapngWriter;
use super::triggers::{Condition, Counted, Trigger, Triggers};
use super::*;
use crate::observe::Observers;
use crate::stream::Stream;

// ---------------------------------------------------------------------------------
// Harness

use super::tests::{mirror_of, Keep};

/// Waits for the station to go quiet and returns what it has.
fn settle(keep: &Keep) -> Vec<Record> {
    let mut last = usize::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let n = keep.0.lock().unwrap().len();
        if n == last {
            return keep.0.lock().unwrap().clone();
        }
        last = n;
    }
}

fn messages(records: &[Record]) -> Vec<(&'static str, Origin, usize, Vec<u8>)> {
    records
        .iter()
        .filter_map(|r| match &r.what {
            What::Message {
                kind,
                origin,
                original_len,
                ..
            } => Some((*kind, *origin, *original_len, r.data.clone())),
            _ => None,
        })
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn typed(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = vec![0, 3, 0, 0];
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

fn query(text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.push(0);
    typed(b'Q', &b)
}

fn parse(text: &str) -> Vec<u8> {
    let mut b = b"\0".to_vec();
    b.extend_from_slice(text.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    typed(b'P', &b)
}

fn sync() -> Vec<u8> {
    typed(b'S', b"")
}

fn auth(code: u32, rest: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(rest);
    typed(b'R', &b)
}

fn ready() -> Vec<u8> {
    typed(b'Z', b"I")
}

/// The real engine (framer + rules) of stream 0 of a profile with the mirror as its
/// only observer: what a connection does is what the mirror sees.
struct Rig {
    stream: Stream,
    observers: Observers,
    mirror: Shared,
    keep: Keep,
    dpid: Dpid,
}

impl Rig {
    fn new(profile_text: &str, peer: &str) -> Rig {
        let (mirror, keep, profile) = mirror_of(profile_text, 1 << 16);
        let name = profile.streams[0].name.clone();
        let dpid = Dpid::connection(&Dpid::stream(&profile.tenant, &name), 1);
        let stream = Stream::new(&profile.streams[0], 0, dpid.clone());
        let mut observers = Observers::default();
        observers.add(Box::new(mirror.clone()));
        observers.emit(&Event::Opened {
            conn: &dpid,
            stream: &name,
            local: "10.9.9.9:5432",
            peer,
            accepted: true,
        });
        Rig {
            stream,
            observers,
            mirror,
            keep,
            dpid,
        }
    }
    /// Bytes the client wrote (one write).
    fn client(&mut self, bytes: &[u8]) -> crate::stream::Effects {
        assert!(self.observers.wants_messages(&self.dpid));
        self.stream
            .push(Direction::Inbound, bytes, &mut self.observers)
    }
    /// Bytes the server wrote (one write).
    fn server(&mut self, bytes: &[u8]) -> crate::stream::Effects {
        self.stream
            .push(Direction::Outbound, bytes, &mut self.observers)
    }
    /// What the server has been sent so far (consumed).
    fn sent_to_server(&mut self) -> Vec<u8> {
        let v = self.stream.inbound.ready.as_slice().to_vec();
        self.stream.inbound.delivered(v.len());
        v
    }
    /// What the client has been sent so far (consumed).
    fn sent_to_client(&mut self) -> Vec<u8> {
        let v = self.stream.outbound.ready.as_slice().to_vec();
        self.stream.outbound.delivered(v.len());
        v
    }
    fn close(&mut self) {
        let totals = crate::observe::Totals::default();
        let name = self.stream.name.clone();
        self.observers.emit(&Event::Closed {
            conn: &self.dpid,
            stream: &name,
            inbound: totals,
            outbound: totals,
        });
    }
    /// Startup, authentication and the catalog question answered empty: Ready.
    fn login(&mut self, user: &str) {
        self.client(&startup(&[("user", user), ("database", "shop")]));
        let mut hello = auth(0, b"");
        hello.extend_from_slice(&typed(b'S', b"client_encoding\0UTF8\0"));
        hello.extend_from_slice(&typed(b'S', b"standard_conforming_strings\0on\0"));
        hello.extend_from_slice(&typed(b'K', &[0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]));
        hello.extend_from_slice(&ready());
        self.server(&hello);
        // The supervisor's catalog question went to the server; its (empty) answer.
        self.server(&ready());
        self.sent_to_server();
        self.sent_to_client();
    }
}

/// pg-mirror's rules (deny salaries, mask employee.ssn), with an audit policy that
/// keeps everything user `intern` sends and only headers of everyone else's.
const AUDIT: &str = r#"
[tenant]
name = "t"
[[stream]]
name = "pg"
listen_port = 5432
framer = "postgres"
on_error = "close"
[[stream.rule]]
kind = "mask"
table = "employee"
column = "ssn"
replacement = "XXX-XX-XXXX"
[[stream.rule]]
kind = "deny"
objects = ["salaries"]
[mirror]
[[mirror.sink]]
name = "keep"
kind = "jsonl"
[[mirror.policy]]
direction = "from_client"
users = ["intern"]
capture = "all"
[[mirror.policy]]
capture = "header"
"#;

/// Runs tshark over `records` written as pcapng; one line per pgsql PDU:
/// frontend|type|query|srcport|dstport.
fn tshark(records: &[Record], extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pcapng");
    let mut w = PcapngWriter::new(Vec::new(), "attack").unwrap();
    for r in records {
        w.record(r).unwrap();
    }
    std::fs::write(&path, w.get_mut()).unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&path)
        .args(extra)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=a"])
        .args([
            "-e",
            "pgsql.frontend",
            "-e",
            "pgsql.type",
            "-e",
            "pgsql.query",
        ])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "_ws.col.Protocol",
        ])
        .output()
        .expect("tshark is needed by this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    println!("tshark {extra:?}:\n{text}");
    text.lines().map(str::to_owned).collect()
}

fn rec(client: &str, server: &str, what: What, data: &[u8]) -> Record {
    Record {
        time_ns: 1_700_000_000_000_000_000,
        tenant: Arc::from("t"),
        stream: Arc::from("pg"),
        conn: Arc::from("t/pg/c1"),
        serial: 1,
        client: client.parse().unwrap(),
        server: server.parse().unwrap(),
        what,
        data: data.to_vec(),
    }
}

fn whole(kind: &'static str, origin: Origin, m: &[u8]) -> What {
    What::Message {
        kind,
        origin,
        original_len: m.len(),
        offset: 0,
        reason: Arc::from("policy[0]"),
    }
}

/// A small conversation (client at `client`, server at `server`): startup, a Query,
/// its answer.
fn conversation(client: &str, server: &str) -> Vec<Record> {
    let s = startup(&[("user", "intern"), ("database", "shop")]);
    let q = query("SELECT name FROM employee");
    let row = typed(b'D', &[0, 1, 0, 0, 0, 3, b'b', b'o', b'b']);
    let done = typed(b'C', b"SELECT 1\0");
    vec![
        rec(client, server, What::Opened, b""),
        rec(
            client,
            server,
            whole("StartupMessage", Origin::Client, &s),
            &s,
        ),
        rec(
            client,
            server,
            whole("Authentication", Origin::Server, &auth(0, b"")),
            &auth(0, b""),
        ),
        rec(
            client,
            server,
            whole("ReadyForQuery", Origin::Server, &ready()),
            &ready(),
        ),
        rec(client, server, whole("Query", Origin::Client, &q), &q),
        rec(client, server, whole("DataRow", Origin::Server, &row), &row),
        rec(
            client,
            server,
            whole("CommandComplete", Origin::Server, &done),
            &done,
        ),
        rec(client, server, What::Closed, b""),
    ]
}

/// The shipped profile: every client message whole.
const PG_MIRROR: &str = include_str!("../../../profiles/pg-mirror.toml");

/// A typed message with tag 0 (the server only ever sees typed messages after the
/// StartupMessage). The framer frames it by its Int32 at 1..5 (here 8193 bytes), but
/// `message_name` calls anything starting with 0 a startup packet: `StartupMessage`.
/// Its bytes 8.. read as startup parameters: `user=app database=payroll`. tshark, for
/// its part, frames a frontend message starting with 0 by its Int32 at 0..4 (here 32),
/// and then reads a Query at byte 32 whose length runs `swallow` bytes past the end of
/// this message (over the messages that follow it).
fn tag0(swallow: usize) -> Vec<u8> {
    let total = 8193;
    let mut m = vec![0u8, 0, 0, 0x20, 0x00, 0, 0, 0];
    m.extend_from_slice(b"user\0app\0database\0payroll\0\0");
    m.resize(32, 0);
    let fake_text = b"DROP TABLE audit_log\0";
    let fake_len = (total - 32 - 1) + swallow; // tag excluded
    m.push(b'Q');
    m.extend_from_slice(&(fake_len as u32).to_be_bytes());
    m.extend_from_slice(fake_text);
    m.resize(total, b' ');
    assert_eq!(
        u32::from_be_bytes(m[1..5].try_into().unwrap()) as usize + 1,
        m.len()
    );
    m
}

/// Everything captured, every trigger raised: an override `all` on the tenant, and a
/// literal marker every message matches.
const GREEDY: &str = r#"
[tenant]
name = "t"
[[stream]]
name = "pg"
listen_port = 5432
framer = "postgres"
[[stream.rule]]
kind = "deny"
objects = ["salaries"]
[mirror]
[[mirror.sink]]
name = "keep"
kind = "jsonl"
[[mirror.policy]]
capture = "all"
[[mirror.trigger]]
kind = "marker"
literal = "\u0000"
"#;

fn greedy_rig() -> Rig {
    let rig = Rig::new(GREEDY, "10.1.1.1:40000");
    rig.mirror
        .lock()
        .set_override(overrides::Target::Tenant, Some(Capture::All), None);
    rig
}

fn assert_none_of(records: &[Record], secrets: &[&[u8]]) {
    for r in records {
        for s in secrets {
            assert!(
                !contains(&r.data, s),
                "{:?} leaked in {:?}",
                String::from_utf8_lossy(s),
                r.what
            );
        }
    }
}

mod framing;
mod robustness;
mod secrets;
mod triggers;
