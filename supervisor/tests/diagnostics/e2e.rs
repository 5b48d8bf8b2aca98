//! PostgreSQL under pg-demo.toml, json logs: one client's refused statement found in
//! the log by its connection DPID, that DPID's state over `supervise ctl`, the
//! server's own log line about the client stamped with the same DPID, a temporary
//! debug level on that connection, and the metrics (control socket and HTTP), parsed
//! by prometheus_client.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::confined::StateDir;
use crate::harness::*;
use crate::openmetrics::*;
use crate::operator::Operator;
use crate::pg::*;

const DENY_RULE: &str = "pg-demo/pg-clients/r2";

/// True for `pg-demo/pg-clients/cN`.
fn is_connection_dpid(d: &str) -> bool {
    d.strip_prefix("pg-demo/pg-clients/c")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A refusal by the deny rule (of connection `dpid`, if given), as logged.
fn is_refusal(r: &Value, dpid: Option<&str>) -> bool {
    s(r, "message") == "rule decision: refuse"
        && field(r, "rule") == DENY_RULE
        && dpid.is_none_or(|d| s(r, "dpid") == d)
}

#[test]
fn refused_statement_state_stamped_output_debug_level_and_metrics_of_one_connection() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let mut client = c.client();
    let sup = &mut c.sup;

    // --- who the client is, as the server sees it ---
    let backend_pid: i64 = client.query(sup, "SELECT pg_backend_pid()")[0]
        .parse()
        .expect("numeric pid");
    // The client's own address: the server's peer address of this session.
    let client_addr = client.query(
        sup,
        "SELECT host(inet_client_addr()) || ':' || inet_client_port()",
    )[0]
    .clone();
    assert!(client_addr.starts_with("127.0.0.1:"), "{client_addr}");

    // --- a refused statement, found in the JSON log ---
    let (code, msg) = client.query_err(sup, "SELECT * FROM salaries");
    assert_eq!(code, "42501", "SELECT * FROM salaries: {msg}");
    let refusal = sup.wait_record("\"rule decision: refuse\" by r2", |r| is_refusal(r, None));
    let d = s(&refusal, "dpid").to_owned();
    assert!(
        is_connection_dpid(&d),
        "the refusal's dpid {d:?} is not a connection DPID: {refusal}"
    );
    assert_eq!(s(&refusal, "level"), "WARN", "{refusal}");
    assert_eq!(s(&refusal, "kind"), "connection", "{refusal}");
    assert_eq!(s(&refusal, "tenant"), "pg-demo", "{refusal}");
    assert_eq!(field(&refusal, "action"), "refuse", "{refusal}");
    assert!(
        !field(&refusal, "reason").is_empty(),
        "no reason: {refusal}"
    );
    let opened = sup
        .records()
        .into_iter()
        .find(|r| s(r, "message") == "connection opened" && s(r, "dpid") == d);
    let opened =
        opened.unwrap_or_else(|| panic!("no \"connection opened\" for {d}:\n{}", sup.log()));
    assert_eq!(field(&opened, "peer"), client_addr, "{opened}");

    // --- the connection's state over the control socket ---
    let st = sup.ctl_json(&["state", &d]);
    assert_eq!(st["dpid"], d, "{st}");
    assert_eq!(st["stream"], "pg-clients", "{st}");
    assert_eq!(
        st["peer"],
        client_addr.as_str(),
        "peer is not the client's address: {st}"
    );
    assert!(
        st["local"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!(":{}", c.port))),
        "local is not the tracked port {}: {st}",
        c.port
    );
    let pids: Vec<i64> = st["backend_pids"]
        .as_array()
        .unwrap_or_else(|| panic!("no backend_pids array: {st}"))
        .iter()
        .filter_map(|p| int(Some(p)))
        .collect();
    assert!(
        pids.contains(&backend_pid),
        "backend_pids {pids:?} lacks pg_backend_pid() = {backend_pid} (the pid in the \
         tenant's PID namespace): {st}"
    );
    assert!(
        st["backend_host_pids"].is_array(),
        "no backend_host_pids: {st}"
    );
    assert_eq!(st["transaction_status"], "I", "{st}");
    for dir in ["peer_to_tenant", "tenant_to_peer"] {
        assert!(st[dir].is_object(), "no {dir}: {st}");
        assert!(
            int(st[dir].get("delivered")).is_some_and(|n| n > 0),
            "{dir}: {st}"
        );
    }
    let recent = st["recent_messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        recent
            .iter()
            .any(|m| m["type"] == "Query" && m["direction"] == "inbound"),
        "recent_messages has no inbound Query: {st}"
    );
    assert!(
        recent.iter().any(|m| m["type"] == "ReadyForQuery"),
        "recent_messages has no ReadyForQuery: {st}"
    );

    // The state dir from the environment instead of --state-dir.
    let out = Command::new(supervise_bin())
        .args(["ctl", "state", &d, "--json"])
        .env("SUPERVISE_STATE_DIR", state.path())
        .stdin(Stdio::null())
        .output()
        .expect("run supervise ctl");
    assert!(
        out.status.success(),
        "SUPERVISE_STATE_DIR=… ctl state {d}: {out:?}"
    );
    let env_st: Value = serde_json::from_slice(&out.stdout).expect("JSON state");
    assert_eq!(env_st["dpid"], d, "{env_st}");

    // --- the server's log line about this client carries its DPID ---
    let (code, _) = client.query_err(sup, "SELEC 1");
    assert_eq!(code, "42601");
    let needle = "syntax error at or near \"SELEC\"";
    let line = sup.wait_record("of kind \"output\" with PostgreSQL's syntax error", |r| {
        s(r, "kind") == "output" && s(r, "message").contains(needle)
    });
    assert_eq!(
        s(&line, "dpid"),
        d,
        "the backend's stderr line is not stamped with its connection's DPID: {line}"
    );
    assert_eq!(field(&line, "fd"), "stderr", "{line}");
    let pid = int(line.pointer("/fields/pid"));
    assert_eq!(
        pid,
        Some(backend_pid),
        "fields.pid is not the backend's pid: {line}"
    );

    // --- debug level on this connection for 2 s ---
    // Raising a level is a signed request (it may reveal more in the log).
    let operator = Operator::new("oncall");
    operator.trust(&sup.state, r#"permit="level",tenants="pg-demo""#);
    let unsigned = sup.ctl(&["level", &d, "debug"]);
    assert_eq!(unsigned.code, Some(2), "ctl level is gone: {unsigned:?}");
    let set = operator.request_ok(&sup.state, &["level", &d, "debug", "for=2s"]);
    assert_eq!(set["result"]["level"], "debug", "{set}");
    client.query(sup, "SELECT 1");
    let is_debug = |r: &Value| s(r, "level") == "DEBUG" && s(r, "dpid") == d;
    sup.wait_record("DEBUG for the connection's messages", |r| {
        is_debug(r)
            && (s(r, "message") == "Query" || field(r, "type") == "Query")
            && field(r, "direction") == "inbound"
    });
    let ended = sup.wait_record("\"log level override ended\" for the connection", |r| {
        s(r, "kind") == "control"
            && s(r, "message").starts_with("log level override ended")
            && field(r, "target_dpid") == d
    });
    assert_eq!(s(&ended, "level"), "INFO", "{ended}");
    for r in sup.records().iter().filter(|r| is_debug(r)) {
        assert!(
            matches!(field(r, "direction"), "inbound" | "outbound"),
            "a debug line without a direction: {r}"
        );
    }
    // After the override: a query, then a refusal as a marker that everything the
    // query logged is written; no DEBUG line of the connection may follow the end.
    client.query(sup, "SELECT 2");
    let (code, _) = client.query_err(sup, "SELECT amount FROM salaries");
    assert_eq!(code, "42501");
    let marker = |r: &Value| is_refusal(r, Some(&d));
    let deadline = Instant::now() + PATIENCE;
    while sup.records().iter().filter(|r| marker(r)).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "second refusal never logged:\n{}",
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = sup.records();
    let end_at = all.iter().position(|r| *r == ended).expect("ended line");
    let late: Vec<&Value> = all[end_at..].iter().filter(|r| is_debug(r)).collect();
    assert!(
        late.is_empty(),
        "DEBUG lines after the override ended: {late:?}"
    );

    // --- a bad level and an unknown DPID ---
    let out = operator.request(&sup.state, &["level", &d, "loud"]);
    assert_eq!(out.code, Some(1), "level {d} loud: {out:?}");
    let failed = operator.open(&operator.result());
    assert_eq!(failed["error"]["code"], "bad_level", "{failed}");
    let out = sup.ctl(&["state", "pg-demo/pg-clients/c999999"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("unknown_dpid"), "{out:?}");

    // --- metrics over the control socket ---
    let out = sup.ctl(&["metrics"]);
    assert_eq!(out.code, Some(0), "ctl metrics: {out:?}");
    assert!(out.stdout.trim_end().ends_with("# EOF"), "{}", out.stdout);
    let m = parse_openmetrics(&out.stdout);
    check_metrics(&m, Some(&d), &out.stdout);

    client.close(sup);
    c.sup.stop();
}

/// What every exposition of a pg-demo supervisor that refused two statements has.
fn check_metrics(m: &Metrics, conn: Option<&str>, text: &str) {
    let hits = m.value("supervise_rule_hits_total", &[("dpid", DENY_RULE)]);
    assert!(
        hits.is_some_and(|h| h >= 2.0),
        "rule hits of r2: {hits:?}\n{text}"
    );
    assert_eq!(
        m.families
            .get("supervise_service_seconds")
            .map(String::as_str),
        Some("histogram"),
        "no supervise_service_seconds histogram\n{text}"
    );
    for part in ["_bucket", "_count", "_sum"] {
        assert!(
            m.has_sample(&format!("supervise_service_seconds{part}")),
            "histogram without {part}\n{text}"
        );
    }
    let read = m.value(
        "supervise_notifications_total",
        &[("dpid", "pg-demo/@supervisor"), ("family", "read")],
    );
    assert!(
        read.is_some_and(|n| n > 0.0),
        "read notifications: {read:?}\n{text}"
    );
    if let Some(d) = conn {
        let delivered = m.value(
            "supervise_connection_bytes_total",
            &[
                ("dpid", d),
                ("direction", "peer_to_tenant"),
                ("stage", "delivered"),
            ],
        );
        assert!(
            delivered.is_some_and(|n| n > 0.0),
            "bytes of {d}: {delivered:?}\n{text}"
        );
    }
}

#[test]
fn metrics_over_http_are_the_control_socket_exposition() {
    require_curl();
    require_prometheus_client();
    let state = StateDir::new();
    let mport = free_port();
    let listen = format!("127.0.0.1:{mport}");
    let mut c = PgDemo::start(&state, &["--metrics-listen", &listen]);
    let mut client = c.client();
    let sup = &mut c.sup;
    for sql in ["SELECT * FROM salaries", "SELECT id FROM salaries"] {
        let (code, _) = client.query_err(sup, sql);
        assert_eq!(code, "42501");
    }
    let deadline = Instant::now() + PATIENCE;
    while sup.records().iter().filter(|r| is_refusal(r, None)).count() < 2 {
        assert!(
            Instant::now() < deadline,
            "refusals never logged:\n{}",
            sup.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let (headers, body) = (dir.path().join("headers"), dir.path().join("body"));
    let url = format!("http://{listen}/metrics");
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "30", "-D"])
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl");
    if !out.status.success() {
        let d = sup.dump();
        panic!(
            "curl {url} failed ({}): {}\n{d}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let headers = std::fs::read_to_string(&headers).expect("headers");
    let ctype = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no Content-Type:\n{headers}"));
    assert_eq!(
        ctype, "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "{headers}"
    );
    let text = std::fs::read_to_string(&body).expect("body");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let http = parse_openmetrics(&text);
    check_metrics(&http, None, &text);

    // The same families as `ctl metrics`.
    let out = sup.ctl(&["metrics"]);
    assert_eq!(out.code, Some(0), "ctl metrics: {out:?}");
    let ctl = parse_openmetrics(&out.stdout);
    assert_eq!(
        http.families, ctl.families,
        "HTTP and ctl metrics have different families"
    );

    client.close(sup);
    c.sup.stop();
}
