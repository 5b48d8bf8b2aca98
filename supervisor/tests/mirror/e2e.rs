//! PostgreSQL under profiles/pg-mirror.toml: psql and pgbench traffic mirrored to the
//! pcapng sink and read back by tshark.

use std::process::Command;

use crate::common::*;
use crate::confined::StateDir;
use crate::harness::*;
use crate::operator::Operator;
use crate::pg::{pg, PgDemo};
use crate::tools::*;

/// The masked column's real value (pg.rs SCHEMA): it must be in no byte written.
const SSN: &[u8] = b"111-11-1111";

#[test]
fn psql_and_pgbench_are_mirrored_to_pcapng_as_tshark_reads_them() {
    require_tool("tshark", "tshark");
    let state = StateDir::new();
    let mut c = PgDemo::start_with(&state, &[], "pg-mirror.toml", "127.0.0.1,::1", |t| t);
    let port = c.port;
    // A connection from ::1, a peer never seen (pg_isready came from 127.0.0.1):
    // captured whole.
    let first = ["SELECT 'first' AS greeting"];
    let (out, err) = psql_to(&c, "::1", &first);
    assert!(out.contains("first"), "{out}{err}");
    // From 127.0.0.1 again: DataRow headers only, until a refused statement (SQLSTATE 42501,
    // the deny rule) keeps the rest of the session whole.
    let second = [
        "SELECT id, ssn FROM employee",
        "SELECT amount FROM salaries",
        "SELECT id, ssn FROM employee WHERE id = 1",
    ];
    let (out, err) = psql_tcp(&c, &second);
    assert!(
        out.contains("XXX-XX-XXXX") && !out.contains("111-11"),
        "{out}{err}"
    );
    assert!(
        err.contains("permission") || err.contains("refused"),
        "{err}"
    );
    let firing = c.sup.wait_record("a marker firing", |r| {
        s(r, "message").starts_with("mirror trigger fired") && field(r, "reason").contains("42501")
    });
    assert!(
        s(&firing, "dpid").starts_with("pg-mirror/pg-clients/c"),
        "{firing}"
    );
    // A runtime change: the stream captures nothing from the next message on.
    // A runtime change, by a signed request: the stream captures nothing from the
    // next message on.
    let operator = Operator::new("auditor");
    operator.trust(&c.sup.state, r#"permit="set-capture",tenants="pg-mirror""#);
    operator.request_ok(
        &c.sup.state,
        &["set-capture", "pg-mirror/pg-clients", "none"],
    );
    psql_tcp(&c, &["SELECT 'hidden from the mirror' AS h"]);
    operator.request_ok(
        &c.sup.state,
        &["set-capture", "pg-mirror/pg-clients", "reset"],
    );
    let bad = operator.request(
        &c.sup.state,
        &["set-capture", "pg-mirror/pg-clients", "12..3"],
    );
    assert_eq!(bad.code, Some(1), "a bad capture is refused: {bad:?}");
    // pgbench's tables over the unix socket (untracked), its run over TCP.
    let unix = c.dir().to_owned();
    run_ok(
        Command::new(pg("pgbench"))
            .args(["-i", "-s", "1", "-q", "-h"])
            .arg(&unix)
            .args(["-p", &port.to_string(), "-U", "postgres", "postgres"]),
    );
    let bench = Command::new("timeout")
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
            "200",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", "postgres", "postgres"])
        .output()
        .expect("run pgbench");
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    // The sink's self-test writes a record; the mirror's state counts what went out.
    let test = c.sup.ctl_json(&["selftest", "pg-mirror/@sink/file"]);
    assert_eq!(test["passed"], true, "{test}");
    let state_now = c.sup.ctl_json(&["state", "pg-mirror/@mirror"]);
    assert!(
        state_now["messages_mirrored"].as_u64().unwrap() > 800,
        "{state_now}"
    );
    assert!(
        state_now["redacted_bytes"].as_u64().is_some(),
        "{state_now}"
    );
    c.stop();

    let files = files(&state.path().join("mirror"), ".pcapng");
    assert!(
        !files.is_empty(),
        "no pcapng under {}/mirror",
        state.path().display()
    );
    let packets: Vec<Packet> = files.iter().flat_map(|f| tshark(f, port)).collect();
    let queries: Vec<&str> = packets
        .iter()
        .map(|p| p.query.as_str())
        .filter(|q| !q.is_empty())
        .collect();
    // Every statement psql sent, as written (the refused one too); not the hidden one.
    for q in first.iter().chain(&second) {
        assert!(
            queries.contains(q),
            "{q:?} not among the decoded queries: {queries:?}"
        );
    }
    assert!(!queries.iter().any(|q| q.contains("hidden")), "{queries:?}");
    // Its own catalog query at start, then 400 of `SELECT abalance …`.
    let bench_queries = queries
        .iter()
        .filter(|q| q.contains("SELECT abalance FROM pgbench_accounts"))
        .count();
    assert_eq!(
        bench_queries, 400,
        "pgbench -S -c 2 -t 200 sent 400 queries"
    );
    // Queries go client → server: their source port is not the server's.
    assert!(packets
        .iter()
        .filter(|p| !p.query.is_empty())
        .all(|p| p.src_port != port));
    // DataRows: the header only (5 bytes captured, the original length kept) in the
    // second session before its marker, whole after it and in the first session.
    let rows: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.types.contains("Data row"))
        .collect();
    let truncated = rows.iter().filter(|p| p.cap_len < p.len).count();
    let whole = rows.iter().filter(|p| p.cap_len == p.len).count();
    assert!(
        truncated >= 400,
        "pgbench's rows are header-only: {truncated} of {}",
        rows.len()
    );
    assert_eq!(
        whole, 2,
        "the unknown peer's and the marked session's rows are whole: {rows:#?}"
    );
    let whole_reasons: Vec<&str> = rows
        .iter()
        .filter(|p| p.cap_len == p.len)
        .map(|p| p.comment.as_str())
        .collect();
    assert!(
        whole_reasons
            .iter()
            .all(|c| c.ends_with("trigger[0]") || c.ends_with("trigger[1]")),
        "{whole_reasons:?}"
    );
    // Ethernet + IPv4 + TCP headers (54 bytes) and the message's 5-byte header.
    for p in rows.iter().filter(|p| p.cap_len < p.len) {
        assert_eq!(p.cap_len, 54 + 5, "{p:?}");
    }
    let bytes = all_bytes(&state.path().join("mirror"));
    assert!(
        contains(&bytes, b"XXX-XX-XXXX"),
        "the masked value as the client got it"
    );
    assert!(!contains(&bytes, SSN), "the real ssn reached a station");
    assert!(!contains(&bytes, b"hidden from the mirror"));
    assert!(
        packets
            .iter()
            .any(|p| p.comment.contains("pg-mirror/pg-clients/c")),
        "block comments name the DPID"
    );
}

#[test]
fn a_cleartext_password_never_reaches_a_station() {
    require_tool("tshark", "tshark");
    let state = StateDir::new();
    let c = PgDemo::start_with(&state, &[], "pg-mirror.toml", "127.0.0.1", |t| t);
    let port = c.port;
    const PASSWORD: &str = "Tr0ub4dor-and-3";
    c.psql_unix(&format!(
        "CREATE ROLE alice LOGIN PASSWORD '{PASSWORD}'; GRANT SELECT ON employee TO alice;"
    ));
    // alice over TCP must send her password in clear (`password` method): the worst
    // case for a mirror that copies client messages whole.
    let hba = c.dir().join("data/pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(&hba, format!("host all alice 127.0.0.1/32 password\n{old}")).unwrap();
    c.psql_unix("SELECT pg_reload_conf()");
    let out = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(pg("psql"))
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-U",
            "alice",
            "-d",
            "postgres",
            "-c",
            "SELECT count(*) FROM employee",
        ])
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("run psql");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
        "alice logged in: {out:?}"
    );
    let wrong = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(pg("psql"))
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "alice",
            "-d",
            "postgres",
        ])
        .args(["-c", "SELECT 1"])
        .env("PGPASSWORD", "not-her-password")
        .output()
        .expect("run psql");
    assert!(!wrong.status.success(), "a wrong password is refused");
    c.stop();
    let files = files(&state.path().join("mirror"), ".pcapng");
    let bytes = all_bytes(&state.path().join("mirror"));
    assert!(
        !contains(&bytes, PASSWORD.as_bytes()),
        "the password reached the mirror"
    );
    assert!(
        !contains(&bytes, b"not-her-password"),
        "the wrong password reached the mirror"
    );
    let packets: Vec<Packet> = files.iter().flat_map(|f| tshark(f, port)).collect();
    let passwords: Vec<&Packet> = packets
        .iter()
        .filter(|p| p.types.contains("Password message"))
        .collect();
    assert_eq!(
        passwords.len(),
        2,
        "both password messages are mirrored: {packets:#?}"
    );
    for p in passwords {
        assert_eq!(p.cap_len, 54 + 5, "header only, full length kept: {p:?}");
        assert!(p.len > p.cap_len, "{p:?}");
    }
    // 28P01 (the wrong password) fired the marker: still no password in the capture.
    assert!(
        packets.iter().any(|p| p.comment.contains("trigger[0]")),
        "the marker fired"
    );
}
