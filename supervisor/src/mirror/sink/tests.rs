//! The queue in front of stations: a stalled station drops and counts instead of
//! blocking the sender; a station that is down at start is retried and used once it
//! is back; connections spread over stations by a stable hash and move off a failed
//! one.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::station::Station;
use super::*;
use crate::mirror::record::{Origin, Record, What};

/// A station under the test's control.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Records written.
    pub got: Arc<Mutex<Vec<Arc<str>>>>,
    /// While set, `connect` fails.
    pub down: Arc<AtomicBool>,
    /// While set, `write` blocks (a collector that never reads).
    pub stall: Arc<AtomicBool>,
    /// Connects tried.
    pub connects: Arc<AtomicUsize>,
}

impl Station for Probe {
    fn kind(&self) -> &'static str {
        "probe"
    }
    fn connect(&mut self) -> io::Result<()> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::ConnectionRefused, "down"));
        }
        Ok(())
    }
    fn write(&mut self, record: &Record) -> io::Result<()> {
        while self.stall.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "went away"));
        }
        self.got.lock().unwrap().push(record.conn.clone());
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "kind": "probe" })
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}

pub fn record(serial: u64) -> Arc<Record> {
    Arc::new(Record {
        time_ns: 1,
        tenant: "t".into(),
        stream: "s".into(),
        conn: format!("t/s/c{serial}").into(),
        serial,
        client: "127.0.0.1:1".parse().unwrap(),
        server: "127.0.0.1:2".parse().unwrap(),
        what: What::Message {
            kind: "Query",
            origin: Origin::Client,
            original_len: 3,
            offset: 0,
            reason: "test".into(),
        },
        data: b"abc".to_vec(),
    })
}

fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_stalled_station_drops_and_counts_and_never_blocks_the_sender() {
    let probe = Probe::default();
    probe.stall.store(true, Ordering::SeqCst);
    let sink = Sink::start(
        Dpid::sink("t", "slow"),
        "slow".into(),
        vec![Box::new(probe.clone())],
        16,
    );
    wait_for("connect", || sink.per_station()[0].4);
    let started = Instant::now();
    let queued = (0..10_000).filter(|i| sink.send(record(*i))).count();
    let took = started.elapsed();
    // 16 queued, at most one more held by the station's thread; the rest dropped.
    assert!((16..=17).contains(&queued), "{queued}");
    let (_, dropped, _) = sink.totals();
    assert_eq!(dropped as usize, 10_000 - queued);
    assert!(
        took < Duration::from_secs(2),
        "sending must not wait: {took:?}"
    );
    probe.stall.store(false, Ordering::SeqCst);
    wait_for("the queue to drain", || sink.totals().0 as usize == queued);
    assert_eq!(
        sink.state()["stations"][0]["dropped_queue_full"],
        10_000 - queued
    );
}

#[test]
fn a_station_down_at_start_is_retried_and_used_when_it_is_back() {
    let probe = Probe::default();
    probe.down.store(true, Ordering::SeqCst);
    let sink = Sink::start(
        Dpid::sink("t", "late"),
        "late".into(),
        vec![Box::new(probe.clone())],
        64,
    );
    wait_for("two connects", || {
        probe.connects.load(Ordering::SeqCst) >= 2
    });
    for i in 0..5 {
        sink.send(record(i));
    }
    wait_for("drops while down", || sink.totals().1 == 5);
    assert!(sink.state()["stations"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("down"));
    probe.down.store(false, Ordering::SeqCst);
    wait_for("reconnect", || sink.per_station()[0].4);
    for i in 0..5 {
        sink.send(record(i));
    }
    wait_for("writes", || sink.totals().0 == 5);
    // It goes away mid-stream: the failed write is counted, and it comes back again.
    probe.down.store(true, Ordering::SeqCst);
    sink.send(record(9));
    wait_for("marked down", || !sink.per_station()[0].4);
    probe.down.store(false, Ordering::SeqCst);
    wait_for("back again", || sink.per_station()[0].4);
    sink.send(record(10));
    wait_for("written after the return", || sink.totals().0 == 6);
}

#[test]
fn connections_spread_by_a_stable_hash_and_move_off_a_failed_station() {
    let probes: Vec<Probe> = (0..3).map(|_| Probe::default()).collect();
    let stations: Vec<Box<dyn Station>> = probes
        .iter()
        .map(|p| Box::new(p.clone()) as Box<dyn Station>)
        .collect();
    let sink = Sink::start(Dpid::sink("t", "spread"), "spread".into(), stations, 4096);
    wait_for("all up", || sink.per_station().iter().all(|s| s.4));
    for serial in 0..300 {
        for _ in 0..3 {
            sink.send(record(serial));
        }
    }
    wait_for("900 written", || sink.totals().0 == 900);
    let owner = |serial: u64| {
        let conn: Arc<str> = format!("t/s/c{serial}").into();
        probes
            .iter()
            .position(|p| p.got.lock().unwrap().contains(&conn))
            .unwrap()
    };
    for (i, p) in probes.iter().enumerate() {
        let got = p.got.lock().unwrap();
        assert!(
            (200..=400).contains(&got.len()),
            "station {i} got {}",
            got.len()
        );
        // Every record of a connection went to one station.
        for conn in got.iter() {
            assert_eq!(got.iter().filter(|c| *c == conn).count(), 3);
        }
    }
    let before: Vec<usize> = (0..300).map(owner).collect();
    // Station 0 fails: its connections move, the others' stay.
    probes[0].down.store(true, Ordering::SeqCst);
    sink.send(record(before.iter().position(|o| *o == 0).unwrap() as u64));
    wait_for("station 0 down", || !sink.per_station()[0].4);
    for p in &probes {
        p.got.lock().unwrap().clear();
    }
    for serial in 0..300 {
        sink.send(record(serial));
    }
    wait_for("the rest written", || {
        probes[1..]
            .iter()
            .map(|p| p.got.lock().unwrap().len())
            .sum::<usize>()
            == 300
    });
    for serial in 0..300u64 {
        let now = owner(serial);
        assert_ne!(now, 0);
        if before[serial as usize] != 0 {
            assert_eq!(
                now, before[serial as usize],
                "c{serial} moved without cause"
            );
        }
    }
}
