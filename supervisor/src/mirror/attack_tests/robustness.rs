//! No panic on hostile input; stations that stall or read slowly.

use super::*;

// ---------------------------------------------------------------------------------
// 6. Panics on hostile input

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.next() as usize) % (max + 1);
        (0..n)
            .map(|_| {
                // Mostly small values: lengths and tags that parse.
                match self.next() % 4 {
                    0 => 0,
                    1 => (self.next() % 16) as u8,
                    2 => b"QPBEDSHCXFpfdcRKZTNE"[(self.next() % 20) as usize],
                    _ => self.next() as u8,
                }
            })
            .collect()
    }
}

/// HOLDS: random server bytes queued to the client, random client bytes through the
/// real framer and rules (startup phase included), random captures and overrides, and
/// every record the mirror made through the pcapng writer: no panic, and redaction
/// keeps every `p` message to its header.
#[test]
fn holds_no_panic_on_random_input_in_observer_policy_and_pcapng() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let profile = GREEDY
        .replace(
            "[[stream.rule]]\nkind = \"deny\"\nobjects = [\"salaries\"]\n",
            "",
        )
        .replace(
            "framer = \"postgres\"",
            "framer = \"postgres\"\non_error = \"passthrough\"\nmax_message = 4096",
        );
    let mut all = Vec::new();
    for round in 0..60 {
        let mut rig = Rig::new(&profile, "[::ffff:10.1.1.1]:40000");
        for _ in 0..40 {
            let capture = match rng.next() % 6 {
                0 => Capture::All,
                1 => Capture::Header,
                2 => Capture::None,
                3 => Capture::Bytes((rng.next() % 70_000) as usize),
                _ => {
                    let m = (rng.next() % 100) as usize;
                    Capture::Range(m, m + 1 + (rng.next() % 70_000) as usize)
                }
            };
            rig.mirror.lock().set_override(
                overrides::Target::Connection(rig.dpid.clone()),
                Some(capture),
                None,
            );
            let b = rng.bytes(200);
            if round % 2 == 0 {
                rig.client(&b);
            } else {
                rig.server(&b);
            }
            // Straight into the observer too, bypassing the engine.
            let direction = if rng.next().is_multiple_of(2) {
                Direction::Inbound
            } else {
                Direction::Outbound
            };
            let dpid = rig.dpid.clone();
            rig.mirror.observe(&Event::Queued {
                conn: &dpid,
                direction,
                bytes: &b,
            });
            for kind in super::policy::REDACTABLE {
                let limit = super::policy::redaction_limit(kind, &b);
                assert!(limit <= b.len());
            }
        }
        rig.close();
        all.extend(settle(&rig.keep));
    }
    // A huge message near max_message captured whole and in ranges.
    let big = vec![b'x'; 200_000];
    for (offset, len) in [
        (0, 200_000),
        (0, 65_494),
        (0, 65_495),
        (65_494, 2),
        (10, 199_990),
    ] {
        let mut r = rec(
            "[fe80::1%2]:1",
            "0.0.0.0:0",
            whole("DataRow", Origin::Server, &big),
            &big[offset..offset + len],
        );
        if let What::Message {
            offset: o,
            original_len,
            ..
        } = &mut r.what
        {
            *o = offset;
            *original_len = if len == 2 { 1 } else { 200_000 };
        }
        all.push(r);
    }
    let mut w = PcapngWriter::new(Vec::new(), &"é".repeat(40_000)).unwrap();
    for r in &all {
        w.record(r).unwrap();
        if let What::Message {
            kind: "PasswordMessage",
            ..
        } = r.what
        {
            assert!(r.data.len() <= 5);
        }
    }
    println!("{} records", all.len());
}

// ---------------------------------------------------------------------------------
// 7. Stations

/// HOLDS: a collector that never reads: the loop's `send` never blocks, what does
/// not fit is counted as dropped.
#[test]
fn holds_a_stalled_collector_never_blocks_send() {
    use super::sink::tcp::TcpStation;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let station =
        TcpStation::with_timeouts(addr, Duration::from_secs(1), Duration::from_millis(200));
    let sink = Sink::start(
        Dpid::sink("t", "slow"),
        "slow".into(),
        vec![Box::new(station)],
        64,
    );
    let (_peer, _) = listener.accept().unwrap();
    let big = vec![b'x'; 60_000];
    let r = Arc::new(rec(
        "10.1.1.1:1",
        "10.9.9.9:5432",
        whole("DataRow", Origin::Server, &big),
        &big,
    ));
    let started = Instant::now();
    for _ in 0..5_000 {
        let one = Instant::now();
        sink.send(r.clone());
        assert!(one.elapsed() < Duration::from_millis(50), "send blocked");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let (_, dropped, _) = sink.totals();
    assert!(dropped > 0, "dropped and counted");
    std::mem::forget(sink); // its thread is stuck on the collector; not joined here
}

/// HELD (was a hole: closing was bounded per write only, so a collector reading a
/// little before each 200 ms write timeout held the exit as long as it liked).
/// Closing a sink now waits `CLOSE_PATIENCE` in all.
#[test]
fn holds_a_slow_reading_collector_cannot_hold_sink_close_past_its_patience() {
    use super::sink::tcp::TcpStation;
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let timeout = Duration::from_millis(200);
    let station = TcpStation::with_timeouts(addr, Duration::from_secs(1), timeout);
    let sink = Sink::start(
        Dpid::sink("t", "slow"),
        "slow".into(),
        vec![Box::new(station)],
        4096,
    );
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_recv_buffer_size_hint();
    let ours = peer.try_clone().unwrap();
    let fast = Arc::new(AtomicBool::new(false));
    let go = fast.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0; 256 * 1024];
        loop {
            let want = if go.load(Ordering::Relaxed) {
                buf.len()
            } else {
                4096
            };
            match peer.read(&mut buf[..want]) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if !go.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150));
            }
        }
    });
    let big = vec![b'x'; 60_000];
    let r = Arc::new(rec(
        "10.1.1.1:1",
        "10.9.9.9:5432",
        whole("DataRow", Origin::Server, &big),
        &big,
    ));
    for _ in 0..300 {
        sink.send(r.clone());
    }
    let started = Instant::now();
    let closer = std::thread::spawn(move || drop(sink));
    let patience = super::sink::CLOSE_PATIENCE;
    while !closer.is_finished() && started.elapsed() < patience + Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    fast.store(true, Ordering::Relaxed);
    closer.join().unwrap();
    println!("closed after {:?}", started.elapsed());
    let _ = ours.shutdown(std::net::Shutdown::Both);
    reader.join().unwrap();
    assert!(
        took < patience + Duration::from_secs(2),
        "closing took {took:?} with a {timeout:?} write timeout, {patience:?} patience"
    );
}

trait RecvHint {
    fn set_recv_buffer_size_hint(&self);
}
impl RecvHint for std::net::TcpStream {
    /// A small receive buffer so the slow reader is felt at once.
    fn set_recv_buffer_size_hint(&self) {
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 4096;
        // SAFETY: a valid fd and a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// A probe: a capture shorter than the 5-byte header (a policy's `capture = 3`) of a
/// Query, followed by a whole Query. Does tshark still decode the second in place?
#[test]
fn holds_a_capture_shorter_than_the_header_does_not_swallow_the_next_message() {
    let (c, s) = ("10.1.1.1:40000", "10.9.9.9:5432");
    let q1 = query("SELECT 'first one, captured 3 bytes'");
    let q2 = query("SELECT 'second one, whole'");
    let mut records = conversation(c, s);
    records.truncate(4);
    records.push(rec(c, s, whole("Query", Origin::Client, &q1), &q1[..3]));
    records.push(rec(c, s, whole("Query", Origin::Client, &q2), &q2));
    records.push(rec(c, s, What::Closed, b""));
    let lines = tshark(&records, &["-Y", "pgsql.type == \"Simple query\""]);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("SELECT 'second one, whole'")),
        "{lines:?}"
    );
}

/// HOLDS: `ctl capture` changes (every target, every capture, resets) made from
/// another thread while the loop mirrors passwords and Binds: no deadlock, no panic,
/// nothing redacted leaks.
#[test]
fn holds_ctl_capture_racing_the_loop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let plain = GREEDY.replace(
        "[[mirror.trigger]]\nkind = \"marker\"\nliteral = \"\\u0000\"\n",
        "",
    );
    let mut rig = Rig::new(&plain, "10.1.1.1:40000");
    rig.login("alice");
    let shared = rig.mirror.clone();
    let dpid = rig.dpid.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let done = stop.clone();
    let ctl = std::thread::spawn(move || {
        let mut rng = Rng(7);
        let mut n = 0u64;
        while !done.load(Ordering::Relaxed) {
            let target = match rng.next() % 4 {
                0 => overrides::Target::Tenant,
                1 => overrides::Target::Stream(0),
                2 => overrides::Target::Peer(policy::Cidr::parse("10.0.0.0/8").unwrap()),
                _ => overrides::Target::Connection(dpid.clone()),
            };
            let capture = match rng.next() % 6 {
                0 => None,
                1 => Some(Capture::All),
                2 => Some(Capture::None),
                3 => Some(Capture::Header),
                4 => Some(Capture::Bytes(1 + (rng.next() % 64) as usize)),
                _ => Some(Capture::Range(3, 64)),
            };
            let hold = rng
                .next()
                .is_multiple_of(2)
                .then(|| Duration::from_micros(rng.next() % 500));
            shared.lock().set_override(target, capture, hold);
            shared.lock().expire();
            n += 1;
        }
        n
    });
    let mut bind = b"\0\0\0\0\0\x01".to_vec();
    bind.extend_from_slice(&12u32.to_be_bytes());
    bind.extend_from_slice(b"SECRETVALUE1");
    bind.extend_from_slice(&[0, 0]);
    let mut batch = typed(b'B', &bind);
    batch.extend_from_slice(&sync());
    batch.extend_from_slice(&typed(b'p', b"hunter2\0"));
    for _ in 0..2000 {
        rig.client(&batch);
    }
    stop.store(true, Ordering::Relaxed);
    let changes = ctl.join().unwrap();
    let got = settle(&rig.keep);
    println!("{changes} changes, {} records", got.len());
    assert_none_of(&got, &[b"SECRET", b"hunter2"]);
}
