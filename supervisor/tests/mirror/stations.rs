//! Listening stations under load and failure: a collector that accepts and never
//! reads, one that is down at start and comes up, and NATS JetStream as a fleet sink.

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::common::*;
use crate::confined::StateDir;
use crate::harness::*;
use crate::pg::{pg, PgDemo};
use crate::tools::*;

/// pg-mirror.toml with one more sink.
fn with_sink(sink: String) -> impl Fn(String) -> String {
    move |text| format!("{text}\n[[mirror.sink]]\n{sink}\n")
}

fn pgbench(c: &PgDemo, transactions: u32) -> std::process::Output {
    let port = c.port.to_string();
    run_ok(
        Command::new(pg("pgbench"))
            .args(["-i", "-s", "1", "-q", "-h"])
            .arg(c.dir())
            .args(["-p", &port, "-U", "postgres", "postgres"]),
    );
    Command::new("timeout")
        .args(["-k", "5", "120"])
        .arg(pg("pgbench"))
        .args([
            "-n",
            "-S",
            "-c",
            "2",
            "-j",
            "2",
            "-t",
            &transactions.to_string(),
        ])
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "postgres"])
        .output()
        .expect("run pgbench")
}

fn station(state: &serde_json::Value) -> &serde_json::Value {
    &state["stations"][0]
}

#[test]
fn a_collector_that_never_reads_costs_drops_not_the_tenant() {
    require_tool("tshark", "tshark");
    // Accepts and never reads: its receive buffer fills, then the station's writes
    // block until their timeout; its queue (64 records) fills and drops.
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = collector.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = collector.incoming().take(3).collect();
        std::thread::sleep(Duration::from_secs(3600));
        drop(conns);
    });
    let state = StateDir::new();
    let sink = format!("name = \"slow\"\nkind = \"tcp\"\naddresses = [\"{address}\"]\nqueue = 64");
    let mut c = PgDemo::start_with(&state, &[], "pg-mirror.toml", "127.0.0.1", with_sink(sink));
    let out = pgbench(&c, 10_000);
    assert!(
        out.status.success(),
        "the tenant kept working: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slow = c.sup.ctl_json(&["state", "pg-mirror/@sink/slow"]);
    let dropped = station(&slow)["dropped_queue_full"].as_u64().unwrap();
    assert!(dropped > 1000, "drops are counted: {slow}");
    let metrics = c.sup.ctl(&["metrics"]).stdout;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("supervise_sink_dropped_total{dpid=\"pg-mirror/@sink/slow\"")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The file sink beside it missed nothing.
    let file = c.sup.ctl_json(&["state", "pg-mirror/@sink/file"]);
    assert_eq!(station(&file)["dropped_queue_full"], 0, "{file}");
    c.stop();
    drop(held);
}

#[test]
fn a_collector_down_at_start_is_used_once_it_is_up() {
    require_tool("tshark", "tshark");
    let port = free_port();
    let state = StateDir::new();
    let sink = format!("name = \"late\"\nkind = \"tcp\"\naddresses = [\"127.0.0.1:{port}\"]");
    let mut c = PgDemo::start_with(&state, &[], "pg-mirror.toml", "127.0.0.1", with_sink(sink));
    psql_tcp(&c, &["SELECT 'while the collector is down'"]);
    let late = c.sup.ctl_json(&["state", "pg-mirror/@sink/late"]);
    assert_eq!(station(&late)["up"], false, "{late}");
    assert!(
        station(&late)["dropped_station_down"].as_u64().unwrap() > 0,
        "{late}"
    );
    assert!(
        station(&late)["last_error"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{late}"
    );
    // The collector comes up: everything it receives goes to a file.
    let collector = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let received = std::thread::spawn(move || {
        let (mut conn, _) = collector.accept().unwrap();
        let mut all = Vec::new();
        let _ = conn.read_to_end(&mut all);
        all
    });
    let deadline = Instant::now() + PATIENCE;
    while c.sup.ctl_json(&["state", "pg-mirror/@sink/late"])["stations"][0]["up"] != true {
        assert!(Instant::now() < deadline, "the station never reconnected");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (out, _) = psql_tcp(&c, &["SELECT 'after the collector came up' AS back"]);
    assert!(out.contains("after the collector"), "{out}");
    c.stop(); // the station flushes and closes: the collector reads to the end
    let bytes = received.join().unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "a pcapng stream (SHB first)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collector.pcapng");
    std::fs::write(&file, &bytes).unwrap();
    let got_port = c_port_from(&bytes);
    let queries: Vec<String> = tshark(&file, got_port)
        .into_iter()
        .map(|p| p.query)
        .collect();
    assert!(
        queries
            .iter()
            .any(|q| q == "SELECT 'after the collector came up' AS back"),
        "{queries:?}"
    );
    assert!(
        !queries
            .iter()
            .any(|q| q.contains("while the collector is down")),
        "{queries:?}"
    );
}

/// The server port of the first TCP segment in a pcapng stream (the tracked port the
/// cluster got): read from the frames by tshark.
fn c_port_from(bytes: &[u8]) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.pcapng");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(require_tool("tshark", "tshark"))
        .arg("-r")
        .arg(&file)
        .args(["-c", "1", "-T", "fields", "-e", "tcp.dstport"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a TCP port")
}

#[test]
fn nats_jetstream_receives_every_record_and_no_secret() {
    let nats = Nats::start();
    let state = StateDir::new();
    let sink = format!(
        "name = \"fleet\"\nkind = \"nats\"\nurl = \"nats://127.0.0.1:{}\"\njetstream = \"MIRROR\"\nnode = \"node-a\"",
        nats.port
    );
    let mut c = PgDemo::start_with(&state, &[], "pg-mirror.toml", "127.0.0.1", with_sink(sink));
    let statements = ["SELECT id, ssn FROM employee", "SELECT 'to the fleet' AS f"];
    psql_tcp(&c, &statements);
    assert_eq!(
        c.sup.ctl_json(&["selftest", "pg-mirror/@sink/fleet"])["passed"],
        true
    );
    // psql has gone: once the count stops moving every record is written.
    let deadline = Instant::now() + PATIENCE;
    let mut last = u64::MAX;
    let written = loop {
        let fleet = c.sup.ctl_json(&["state", "pg-mirror/@sink/fleet"]);
        let w = station(&fleet)["written"].as_u64().unwrap();
        assert_eq!(station(&fleet)["dropped_station_down"], 0, "{fleet}");
        if w > 10 && w == last {
            break w;
        }
        last = w;
        assert!(
            Instant::now() < deadline,
            "records never reached NATS: {fleet}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    c.stop();
    let stored = nats.stream_messages("MIRROR");
    assert!(
        stored > written,
        "records and log lines are in JetStream: {stored} stored, {written} records"
    );
    // The stored payloads: JSON with base64 data; decode every data field.
    let raw = all_bytes(nats.store.path());
    let text = String::from_utf8_lossy(&raw);
    let mut decoded = Vec::new();
    for piece in text.split("\"data\":\"").skip(1) {
        let b64 = piece.split('"').next().unwrap_or("");
        decoded.extend(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap_or_default(),
        );
    }
    assert!(
        contains(&decoded, b"SELECT 'to the fleet' AS f"),
        "the query in the fleet stream"
    );
    assert!(
        !contains(&decoded, b"111-11-1111") && !contains(&raw, b"111-11-1111"),
        "no ssn in NATS"
    );
    assert!(
        text.contains("supervise.node-a.pg-mirror.pg-clients"),
        "subjects per node/tenant/stream"
    );
}
