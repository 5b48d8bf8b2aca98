//! The NATS station: the protocol parser on fixtures, the client against scripted
//! loopback servers, and interop with a real `nats-server` (JetStream on a free port
//! and a temporary store; the test fails, naming it, if the binary is missing).

use super::*;
use crate::mirror::record::{Origin, What};
use base64::Engine;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;

fn complete(buf: &[u8]) -> (ServerOp, usize) {
    match parse(buf).expect("parses") {
        Parse::Complete { op, consumed } => (op, consumed),
        Parse::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
    }
}

/// Every strict prefix of `buf` is Partial, the whole is one op of its full length.
fn only_whole(buf: &[u8]) -> ServerOp {
    for cut in 0..buf.len() {
        assert_eq!(parse(&buf[..cut]).unwrap(), Parse::Partial, "cut at {cut}");
    }
    let (op, consumed) = complete(buf);
    assert_eq!(consumed, buf.len());
    op
}

#[test]
fn info_as_nats_server_2_9_sends_it() {
    let line = br#"INFO {"server_id":"NCN","server_name":"n1","version":"2.9.10","proto":1,"headers":true,"max_payload":1048576,"jetstream":true,"client_id":4} "#;
    let mut buf = line.to_vec();
    buf.extend_from_slice(b"\r\nPING\r\n");
    let (op, consumed) = complete(&buf);
    assert_eq!(consumed, line.len() + 2);
    let ServerOp::Info(info) = op else {
        panic!("{op:?}")
    };
    assert_eq!(
        (info.server_name.as_str(), info.version.as_str()),
        ("n1", "2.9.10")
    );
    assert!(info.headers);
    assert_eq!(info.max_payload, 1048576);
    assert_eq!(complete(&buf[consumed..]).0, ServerOp::Ping);
    assert!(parse(b"INFO not-json\r\n").is_err());
}

#[test]
fn control_ops_any_case() {
    assert_eq!(only_whole(b"PING\r\n"), ServerOp::Ping);
    assert_eq!(only_whole(b"pong\r\n"), ServerOp::Pong);
    assert_eq!(only_whole(b"+OK\r\n"), ServerOp::Ok);
    assert_eq!(
        only_whole(b"-ERR 'Authorization Violation'\r\n"),
        ServerOp::Err("Authorization Violation".into())
    );
}

#[test]
fn msg_with_and_without_reply() {
    // The server pads with two spaces when there is no reply subject.
    let op = only_whole(b"MSG _INBOX.x.3 1  23\r\n{\"stream\":\"S\", \"seq\":1}\r\n");
    let ServerOp::Msg(msg) = op else { panic!() };
    assert_eq!(
        (msg.subject.as_str(), msg.reply, msg.status),
        ("_INBOX.x.3", None, None)
    );
    assert_eq!(msg.payload, b"{\"stream\":\"S\", \"seq\":1}");
    // A payload may hold CRLF: only the length counts.
    let ServerOp::Msg(msg) = only_whole(b"msg a.b 7 r.1 4\r\n\r\n\r\n\r\n") else {
        panic!()
    };
    assert_eq!(
        (msg.reply.as_deref(), &msg.payload[..]),
        (Some("r.1"), &b"\r\n\r\n"[..])
    );
}

#[test]
fn hmsg_no_responders_exactly_as_the_server_sends_it() {
    let ServerOp::Msg(msg) = only_whole(b"HMSG _INBOX.x.1 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n")
    else {
        panic!()
    };
    assert_eq!(msg.status, Some((503, String::new())));
    assert!(msg.payload.is_empty());
    let err = api_result("m.a", &msg).unwrap_err();
    assert!(
        matches!(err, NatsError::Status { code: 503, ref subject, .. } if subject == "m.a"),
        "{err}"
    );
}

#[test]
fn hmsg_with_description_headers_and_payload() {
    let headers = "NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n";
    let text = format!(
        "HMSG in.9 2 r {} {}\r\n{headers}hello\r\n",
        headers.len(),
        headers.len() + 5
    );
    let ServerOp::Msg(msg) = only_whole(text.as_bytes()) else {
        panic!()
    };
    assert_eq!(msg.status, Some((408, "Request Timeout".into())));
    assert_eq!(msg.payload, b"hello");
    assert!(api_result("x", &msg)
        .unwrap_err()
        .to_string()
        .contains("408 Request Timeout"));
    // No status: a plain header block.
    let ServerOp::Msg(msg) = only_whole(b"HMSG s 1 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n") else {
        panic!()
    };
    assert_eq!((msg.status, &msg.payload[..]), (None, &b"hi"[..]));
}

#[test]
fn malformed_input_is_an_error_not_a_wait() {
    for bad in [
        &b"HELLO\r\n"[..],
        b"MSG a 1\r\n",
        b"MSG a 1 99999999999\r\n",
        b"MSG a 1 2\r\nabXY",
        b"HMSG a 1 5 3\r\nNATS/1.0\r\n",
        b"HMSG a 1 4 4\r\nHTTP\r\n",
    ] {
        assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    // No CRLF within the bound: refused instead of buffering forever.
    assert!(parse(&vec![b'I'; MAX_CONTROL_LINE + 1]).is_err());
    assert_eq!(
        parse(&vec![b'I'; MAX_CONTROL_LINE]).unwrap(),
        Parse::Partial
    );
}

#[test]
fn jetstream_error_reply_names_it() {
    let msg = Msg {
        subject: "_INBOX.x.1".into(),
        reply: None,
        status: None,
        payload: br#"{"type":"t","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#.to_vec(),
    };
    let err = api_result("$JS.API.STREAM.INFO.S", &msg).unwrap_err();
    assert!(matches!(
        err,
        NatsError::JetStream {
            err_code: STREAM_NOT_FOUND,
            code: 404,
            ..
        }
    ));
    let io = io::Error::from(err);
    assert_eq!(
        io.to_string(),
        "$JS.API.STREAM.INFO.S: JetStream error 404/10059: stream not found"
    );
}

#[test]
fn subject_tokens_urls_and_coverage() {
    assert_eq!(token("node.a b*>\t"), "node_a_b___");
    assert_eq!(token(""), "_");
    assert_eq!(token("t-1_x"), "t-1_x");
    assert!(covers("mirror.>", "mirror"));
    assert!(covers(">", "a.b"));
    assert!(covers("a.*.>", "a.b"));
    assert!(!covers("mirror.*", "mirror"));
    assert!(!covers("other.>", "mirror"));
    assert!(!covers("a.b.c.>", "a.b"));
    assert_eq!(host_port("nats://h:1").unwrap(), "h:1");
    assert_eq!(host_port("h").unwrap(), "h:4222");
    assert_eq!(host_port("[::1]").unwrap(), "[::1]:4222");
    assert_eq!(host_port("nats://[::1]:5/").unwrap(), "[::1]:5");
    assert!(host_port("tls://h:1").is_err());
    assert!(host_port("nats://u:p@h:1").is_err());
    let mut c = NatsConfig::new("h", "S", "mirror.v1", "n");
    assert!(NatsStation::new(c.clone()).is_ok());
    c.subject_prefix = "mirror.>".into();
    assert!(NatsStation::new(c.clone()).is_err());
    c.subject_prefix = "m".into();
    c.stream = "a.b".into();
    assert!(NatsStation::new(c).is_err());
}

fn record(i: usize) -> Record {
    Record {
        time_ns: 1_700_000_000_000_000_000 + i as u64,
        tenant: Arc::from("t1"),
        stream: Arc::from("pg"),
        conn: Arc::from("t1/pg/c1"),
        serial: 1,
        client: "127.0.0.1:40000".parse().unwrap(),
        server: "127.0.0.1:5432".parse().unwrap(),
        what: What::Message {
            kind: "Query",
            origin: Origin::Client,
            original_len: 100,
            offset: 0,
            reason: Arc::from("policy 0"),
        },
        data: format!("Q select {i}").into_bytes(),
    }
}

/// A scripted server on loopback: `script` gets the accepted connection.
fn fake_server(
    script: impl FnOnce(BufReader<TcpStream>, TcpStream) + Send + 'static,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        script(BufReader::new(sock.try_clone().unwrap()), sock)
    });
    (url, handle)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut s = String::new();
    r.read_line(&mut s).unwrap();
    s
}

const FAKE_INFO: &[u8] = b"INFO {\"server_name\":\"fake\",\"version\":\"2.9.0\",\"headers\":true,\"max_payload\":1048576} \r\n";

#[test]
fn handshake_answers_ping_sends_credentials_and_a_503_ack_fails_flush() {
    let (url, server) = fake_server(|mut r, mut w| {
        w.write_all(FAKE_INFO).unwrap();
        let connect = line(&mut r);
        let json: serde_json::Value =
            serde_json::from_str(connect.strip_prefix("CONNECT ").unwrap()).unwrap();
        assert_eq!(
            (json["user"].as_str(), json["pass"].as_str()),
            (Some("u"), Some("secret"))
        );
        assert_eq!(
            (json["headers"].as_bool(), json["no_responders"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(line(&mut r), "PING\r\n");
        // The server pings first: the client must answer before it gets its PONG.
        w.write_all(b"PING\r\n").unwrap();
        assert_eq!(line(&mut r), "PONG\r\n");
        w.write_all(b"PONG\r\n").unwrap();
        let sub = line(&mut r);
        let inbox = sub
            .strip_prefix("SUB ")
            .unwrap()
            .strip_suffix(".* 1\r\n")
            .unwrap()
            .to_owned();
        let info = line(&mut r);
        assert_eq!(info, format!("PUB $JS.API.STREAM.INFO.S {inbox}.1 0\r\n"));
        assert_eq!(line(&mut r), "\r\n");
        let reply = br#"{"config":{"name":"S","subjects":["m.>"]}}"#;
        w.write_all(format!("MSG {inbox}.1 1 {}\r\n", reply.len()).as_bytes())
            .unwrap();
        w.write_all(reply).unwrap();
        w.write_all(b"\r\n").unwrap();
        for id in 2..=3 {
            let publish = line(&mut r);
            assert!(
                publish.starts_with(&format!("PUB m.n_1.t1.pg {inbox}.{id} ")),
                "{publish}"
            );
            line(&mut r);
        }
        w.write_all(format!("MSG {inbox}.2 1 22\r\n{{\"stream\":\"S\",\"seq\":1}}\r\n").as_bytes())
            .unwrap();
        w.write_all(format!("HMSG {inbox}.3 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n").as_bytes())
            .unwrap();
        line(&mut r); // until the client hangs up
    });
    let mut config = NatsConfig::new(&url, "S", "m", "n.1");
    config.auth = NatsAuth::UserPassword {
        user: "u".into(),
        password: "secret".into(),
    };
    let mut station = NatsStation::new(config).unwrap();
    assert!(!format!("{station:?} {}", station.config()).contains("secret"));
    station.connect().unwrap();
    assert_eq!(station.state()["stream_created"], false);
    station.write(&record(0)).unwrap();
    station.write(&record(1)).unwrap();
    let err = station.flush().unwrap_err();
    assert!(
        err.to_string()
            .contains("m.n_1.t1.pg: status 503 no responders"),
        "{err}"
    );
    let state = station.state();
    assert_eq!(
        (state["published"].as_u64(), state["acked"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(state["connected"], false);
    assert!(state["last_error"]
        .as_str()
        .unwrap()
        .contains("no responders"));
    drop(station);
    server.join().unwrap();
}

#[test]
fn err_after_connect_names_the_servers_text() {
    let (url, server) = fake_server(|mut r, mut w| {
        w.write_all(FAKE_INFO).unwrap();
        line(&mut r);
        w.write_all(b"-ERR 'Authorization Violation'\r\n").unwrap();
        while !line(&mut r).is_empty() {} // until the client hangs up
    });
    let mut station = NatsStation::new(NatsConfig::new(&url, "S", "m", "n")).unwrap();
    let err = station.connect().unwrap_err();
    assert_eq!(
        err.to_string(),
        "NATS server error: Authorization Violation"
    );
    server.join().unwrap();
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    let (url, server) = fake_server(|mut r, _w| {
        line(&mut r); // says nothing; returns when the client gives up
    });
    let mut station = NatsStation::new(NatsConfig::new(&url, "S", "m", "n")).unwrap();
    let start = Instant::now();
    let err = station.connect().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    drop(station);
    server.join().unwrap();
}

// ---- a real nats-server ----

fn nats_server_bin() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = [PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")];
    dirs.into_iter()
        .chain(std::env::split_paths(&path))
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .expect(
            "nats-server not found in /usr/bin, /usr/sbin or PATH: the NATS station's interop \
             tests need it (DEBIAN_FRONTEND=noninteractive apt-get install -y nats-server)",
        )
}

/// A `nats-server` child, killed when dropped (also on a test's panic).
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start(port: u16, store: Option<&Path>, extra: &[&str]) -> NatsServer {
        let mut command = Command::new(nats_server_bin());
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra);
        if let Some(dir) = store {
            command.arg("-js").arg("-sd").arg(dir);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = NatsServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stream_messages(station: &mut NatsStation, stream: &str) -> u64 {
    let info = station
        .request(&format!("$JS.API.STREAM.INFO.{stream}"), b"")
        .unwrap();
    info["state"]["messages"].as_u64().unwrap()
}

#[test]
fn real_server_stores_1000_records_with_their_subjects() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::start(free_port(), Some(store.path()), &[]);
    let mut station = NatsStation::new(NatsConfig::new(
        &server.url(),
        "MIRROR",
        "mirror",
        "node.a 1",
    ))
    .unwrap();
    station.connect().unwrap();
    assert_eq!(station.state()["stream_created"], true);
    let start = Instant::now();
    for i in 0..1000 {
        station.write(&record(i)).unwrap();
    }
    station.flush().unwrap();
    let elapsed = start.elapsed();
    eprintln!(
        "1000 records published and acked in {elapsed:?} ({:.0}/s)",
        1000.0 / elapsed.as_secs_f64()
    );
    let state = station.state();
    assert_eq!(
        (state["published"].as_u64(), state["acked"].as_u64()),
        (Some(1000), Some(1000))
    );
    assert_eq!(state["pending"], 0);
    assert_eq!(stream_messages(&mut station, "MIRROR"), 1000);

    let got = station
        .request("$JS.API.STREAM.MSG.GET.MIRROR", br#"{"seq":1}"#)
        .unwrap();
    assert_eq!(got["message"]["subject"], "mirror.node_a_1.t1.pg");
    let data = base64::engine::general_purpose::STANDARD
        .decode(got["message"]["data"].as_str().unwrap())
        .unwrap();
    let mut expected = Vec::new();
    encode_line(&record(0), &mut expected);
    assert_eq!(data, &expected[..expected.len() - 1]);
    let value: serde_json::Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(
        value["data"],
        base64::engine::general_purpose::STANDARD.encode(b"Q select 0")
    );

    station
        .publish_diagnostic("t1", b"{\"level\":\"warn\"}")
        .unwrap();
    station.flush().unwrap();
    let got = station
        .request("$JS.API.STREAM.MSG.GET.MIRROR", br#"{"seq":1001}"#)
        .unwrap();
    assert_eq!(got["message"]["subject"], "mirror.node_a_1.t1.$diag");

    // A record over the server's max_payload (1 MiB) is refused, the connection kept.
    let mut huge = record(0);
    huge.data = vec![0; 1 << 20];
    let err = station.write(&huge).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(station.state()["connected"], true);

    // A second station finds the stream instead of creating it.
    let mut other =
        NatsStation::new(NatsConfig::new(&server.url(), "MIRROR", "mirror", "b")).unwrap();
    other.connect().unwrap();
    assert_eq!(other.state()["stream_created"], false);
    assert_eq!(stream_messages(&mut other, "MIRROR"), 1001);
    // One that publishes elsewhere is told the stream does not capture it.
    let mut wrong =
        NatsStation::new(NatsConfig::new(&server.url(), "MIRROR", "elsewhere", "b")).unwrap();
    let err = wrong.connect().unwrap_err();
    assert!(err.to_string().contains("not elsewhere.>"), "{err}");
}

#[test]
fn real_server_gone_then_back_on_the_same_port() {
    let store = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = NatsServer::start(port, Some(store.path()), &[]);
    let mut config = NatsConfig::new(&server.url(), "S", "m", "n");
    config.max_pending = 8;
    let mut station = NatsStation::new(config).unwrap();
    station.connect().unwrap();
    for i in 0..20 {
        station.write(&record(i)).unwrap();
    }
    station.flush().unwrap();
    drop(server);

    // With 8 acks in flight, the 8th write at the latest waits for acks and sees the end.
    let start = Instant::now();
    let failed = (0..8).find_map(|i| station.write(&record(i)).err());
    let err = failed.expect("a write fails once the server is gone");
    eprintln!(
        "write after the server died: {err} (after {:?})",
        start.elapsed()
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(station.state()["connected"], false);
    let start = Instant::now();
    let err = station.connect().unwrap_err();
    eprintln!("connect while down: {err} (after {:?})", start.elapsed());
    assert!(err.to_string().contains("connecting to"), "{err}");

    let _server = NatsServer::start(port, Some(store.path()), &[]);
    station.connect().unwrap();
    assert_eq!(station.state()["stream_created"], false); // recovered from the store
    for i in 0..5 {
        station.write(&record(i)).unwrap();
    }
    station.flush().unwrap();
    assert_eq!(stream_messages(&mut station, "S"), 25);
    assert!(station.state()["unacked_lost"].as_u64().unwrap() <= 8);
}

#[test]
fn real_server_without_jetstream_is_named() {
    let server = NatsServer::start(free_port(), None, &[]);
    let mut station = NatsStation::new(NatsConfig::new(&server.url(), "S", "m", "n")).unwrap();
    let err = station.connect().unwrap_err();
    eprintln!("{err}");
    assert!(
        err.to_string().contains("JetStream is not enabled"),
        "{err}"
    );
    assert!(err.to_string().contains("$JS.API.STREAM.INFO.S"), "{err}");
}

#[test]
fn real_server_with_a_password() {
    let store = tempfile::tempdir().unwrap();
    let server = NatsServer::start(
        free_port(),
        Some(store.path()),
        &["--user", "u", "--pass", "p4ss"],
    );
    let mut config = NatsConfig::new(&server.url(), "S", "m", "n");
    config.auth = NatsAuth::UserPassword {
        user: "u".into(),
        password: "wrong".into(),
    };
    let err = NatsStation::new(config.clone())
        .unwrap()
        .connect()
        .unwrap_err();
    assert!(err.to_string().contains("Authorization Violation"), "{err}");
    config.auth = NatsAuth::UserPassword {
        user: "u".into(),
        password: "p4ss".into(),
    };
    let mut station = NatsStation::new(config).unwrap();
    station.connect().unwrap();
    station.write(&record(0)).unwrap();
    station.flush().unwrap();
    assert!(!station.config().to_string().contains("p4ss"));
}

#[test]
fn real_server_dropping_an_idle_station_costs_no_record() {
    let store = tempfile::tempdir().unwrap();
    // Pings every 200 ms, stale after one unanswered: the idle station is dropped.
    let conf = store.path().join("nats.conf");
    std::fs::write(&conf, "ping_interval: \"200ms\"\nping_max: 1\n").unwrap();
    let conf = conf.to_str().unwrap();
    let server = NatsServer::start(free_port(), Some(store.path()), &["-c", conf]);
    let mut station = NatsStation::new(NatsConfig::new(&server.url(), "S", "m", "n")).unwrap();
    station.connect().unwrap();
    station.write(&record(0)).unwrap();
    station.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    station.write(&record(1)).unwrap();
    station.flush().unwrap();
    assert_eq!(stream_messages(&mut station, "S"), 2);
    let state = station.state();
    eprintln!("after an idle drop: {state}");
    assert_eq!(state["unacked_lost"], 0);
    assert!(
        state["last_error"]
            .as_str()
            .unwrap()
            .contains("Stale Connection"),
        "{state}"
    );
}
