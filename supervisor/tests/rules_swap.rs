//! Rules replaced under load (a signed `set-rules`): pgbench keeps running through the
//! change, every connection taking the new rules at a message boundary, none ended,
//! not one transaction failed; and the new rules hold on those same connections.
//!
//! Needs root, PostgreSQL 15 (pgbench), `age` and `openssh-client`. Run with
//! `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod confined;

#[path = "diagnostics/harness.rs"]
mod harness;
#[path = "diagnostics/operator.rs"]
mod operator;
#[path = "diagnostics/pg.rs"]
mod pg;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::run_ok;
use confined::StateDir;
use operator::Operator;
use pg::{pg, PgDemo};

/// Denies employee and masks pgbench_history.delta: pgbench's statements stay as
/// they were judged (kept, not revoked); its INSERTs into pgbench_history go on.
const NEW_RULES: &str = r#"
[[rule]]
kind = "deny"
objects = ["employee"]

[[rule]]
kind = "mask"
table = "pgbench_history"
column = "delta"
replacement = "0"
"#;

/// pgbench over the tracked port for `seconds`, `mode` its query protocol.
fn pgbench(port: u16, mode: &str, script: &str, seconds: u32) -> std::process::Child {
    Command::new(pg("pgbench"))
        .args(["-n", script, "-M", mode, "-c", "4", "-j", "2", "-T"])
        .arg(seconds.to_string())
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .arg("postgres")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgbench")
}

#[test]
fn pgbench_runs_through_a_rules_change_without_a_failed_transaction() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let st = c.sup.state.clone();
    let ops = Operator::new("ops");
    ops.trust(&st, r#"permit="set-rules",tenants="pg-demo""#);
    run_ok(
        Command::new(pg("pgbench"))
            .args(["-i", "-s", "1", "-q", "-h"])
            .arg(c.dir())
            .args(["-p", &c.port.to_string(), "-U", "postgres", "postgres"]),
    );
    // Read-only with prepared statements (each re-judged: unchanged, kept), then
    // TPC-B-like (BEGIN … END: inside a block, the catalog question runs in a
    // savepoint) in simple mode and with prepared statements (the block's unnamed
    // portal is revoked; pgbench binds a new one).
    for (mode, script) in [("prepared", "-S"), ("simple", "-N"), ("prepared", "-N")] {
        let bench = pgbench(c.port, mode, script, 6);
        std::thread::sleep(Duration::from_secs(2));
        let out = ops.set_rules(&st, "pg-demo/pg-clients", NEW_RULES);
        assert_eq!(out.code, Some(0), "{out:?}");
        let set = ops.open(&ops.result());
        let adopted = set["result"]["connections_adopted"].as_array().unwrap();
        assert_eq!(adopted.len(), 4, "pgbench's four connections: {set}");
        assert_eq!(set["result"]["connections_ended"], serde_json::json!([]));
        // Each live session put them in force itself, at a boundary of its own.
        std::thread::sleep(Duration::from_millis(500));
        for dpid in adopted {
            let conn = c.sup.ctl_json(&["state", dpid.as_str().unwrap()]);
            let rules = &conn["session"];
            assert_eq!(rules["rules_replaced"], "1", "{conn}");
            assert_eq!(rules["rules_waiting"], "false", "{conn}");
        }
        let done = bench.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&done.stdout);
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert!(
            done.status.success(),
            "pgbench -M {mode} {script}: {stdout}\n{stderr}"
        );
        assert!(
            stdout.contains("number of failed transactions: 0 (0.000%)"),
            "{stdout}"
        );
        assert!(
            !stderr.contains("FATAL") && !stderr.contains("ERROR"),
            "{stderr}"
        );
    }
    // The new rules hold (a new connection; the live ones are tested in signed.rs).
    let mut client = c.client();
    let (code, _) = client.query_err(&mut c.sup, "SELECT name FROM employee");
    assert_eq!(code, "42501");
    let deltas = client.query(&mut c.sup, "SELECT delta FROM pgbench_history LIMIT 3");
    assert!(
        !deltas.is_empty() && deltas.iter().all(|d| d == "0"),
        "{deltas:?}"
    );
    client.close(&mut c.sup);
    c.stop();
}
