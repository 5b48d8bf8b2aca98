//! Trigger state under a flood of peers, and what a marker's log line says.

use super::*;

// ---------------------------------------------------------------------------------
// 3. Trigger state

fn rate(above: usize, window: Duration, hold: Duration) -> Trigger {
    Trigger {
        condition: Condition::Rate {
            counted: Counted::Messages,
            above,
            window,
            hold,
        },
        capture: Capture::All,
        streams: vec![],
        sinks: vec![0],
    }
}

fn v6(i: u32) -> Option<IpAddr> {
    Some(IpAddr::V6(std::net::Ipv6Addr::from(
        0xfd00_0000_0000_0000_0000_0000_0000_0000u128 | u128::from(i),
    )))
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// HELD (was a hole): trigger memory is bounded in peers (65 536) but not in bytes. Under
/// the shipped rate trigger (above = 2000 in 1 s, for 5 m) each peer that sends a
/// burst of 2000 messages (staying at the limit, so nothing fires; CancelRequests
/// before any authentication will do) leaves 2000 timestamps behind, kept long after
/// its window: they are pruned only when that peer sends again. 4096 peers hold
/// ~128 MiB; the 65 536 the table keeps, ~2 GiB (above = 1 000 000, allowed, 1 TiB).
/// Fixed: a window is 10 counters per peer and trigger, whatever the rate.
#[test]
fn holds_idle_peers_cost_a_fixed_window_each() {
    let window = Duration::from_secs(1);
    let mut t = Triggers::new(vec![rate(2000, window, Duration::from_secs(300))]);
    let peers = 4096u32;
    let before = resident_bytes();
    for p in 0..peers {
        let at = Duration::from_millis(u64::from(p));
        t.on_connection(at, v6(p), 0);
        for _ in 0..2000 {
            t.on_message(at, v6(p), 0, Origin::Client, "CancelRequest", b"");
        }
    }
    assert_eq!(t.fired, vec![0], "no peer passed the limit");
    // An hour later (every window long over) one more peer connects and sends.
    let later = Duration::from_secs(3600);
    t.on_connection(later, v6(peers), 0);
    t.on_message(later, v6(peers), 0, Origin::Client, "Query", b"");
    let grown = resident_bytes().saturating_sub(before);
    println!("{peers} idle peers: {} MiB resident", grown >> 20);
    assert!(
        grown < 16 << 20,
        "{} MiB held for {peers} peers whose windows ended an hour ago",
        grown >> 20
    );
}

/// HELD (was a hole): a peer raised by the rate trigger (everything captured for 5 min)
/// has its raise forgotten as soon as 65 536 other peers connect (an IPv6 /64 has
/// plenty): the table keeps the newer half, the raise is dropped with the peer, and
/// the peer is back to its policy's capture long before its 5 minutes are over.
/// Fixed: a raised peer is never forgotten, and messages count as being seen.
#[test]
fn holds_a_raised_peer_is_not_laundered_by_filling_the_peer_table() {
    let mut t = Triggers::new(vec![rate(
        10,
        Duration::from_secs(1),
        Duration::from_secs(300),
    )]);
    let attacker: Option<IpAddr> = Some("10.6.6.6".parse().unwrap());
    let s = Duration::from_secs;
    t.on_connection(s(0), attacker, 0);
    for _ in 0..11 {
        t.on_message(s(0), attacker, 0, Origin::Client, "Query", b"");
    }
    assert_eq!(t.peer_raise(s(1), attacker, 0), Some(0), "raised for 5 min");
    for p in 0..65_537u32 {
        t.on_connection(s(2) + Duration::from_micros(u64::from(p)), v6(p), 0);
    }
    assert_eq!(
        t.peer_raise(s(10), attacker, 0),
        Some(0),
        "10 s into a 5 min raise, the attacker's capture must still be raised"
    );
}

// ---------------------------------------------------------------------------------
// 4. A marker's log line

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// HELD (was a hole): a regex marker is matched on every message before redaction, and its
/// firing's WARN line quotes what it matched (64 characters). A marker meant to catch
/// SSNs going by (`\d{3}-\d{2}-\d{4}`) puts a Bind's parameter value, which no record
/// may carry, into the log, and with a NATS sink's `diagnostics = true` (the log tee)
/// onto that station. Fixed: the line says where it matched, not what.
#[test]
fn holds_regex_marker_logs_where_not_what() {
    let profile = r#"
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
capture = "all"
[[mirror.trigger]]
kind = "marker"
regex = '\d{3}-\d{2}-\d{4}'
"#;
    let log = LogBuffer::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let mut rig = Rig::new(profile, "10.1.1.1:40000");
    tracing::subscriber::with_default(subscriber, || {
        rig.client(&startup(&[("user", "alice")]));
        let mut bind = b"\0s1\0\0\0\0\x01".to_vec();
        bind.extend_from_slice(&11u32.to_be_bytes());
        bind.extend_from_slice(b"123-45-6789");
        bind.extend_from_slice(&[0, 0]);
        rig.client(&typed(b'B', &bind));
    });
    let got = settle(&rig.keep);
    let all: Vec<u8> = got.iter().flat_map(|r| r.data.clone()).collect();
    assert!(!contains(&all, b"123-45-6789"), "records: redacted (holds)");
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    println!("{log}");
    assert!(log.contains("mirror trigger fired"), "{log}");
    assert!(
        !log.contains("123-45-6789"),
        "a Bind parameter value reached the log: {log}"
    );
}
