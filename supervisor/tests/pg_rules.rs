//! PostgreSQL rules end to end: a real PostgreSQL 15 under
//! `supervise run --profile profiles/pg-demo.toml` (its port tracked, framer
//! "postgres"), with psql (simple query protocol), the `postgres` crate (extended
//! protocol: Parse/Bind/Describe/Execute/Sync, binary results) and pgbench as clients
//! over TCP 127.0.0.1 (the tracked port). The profile:
//!
//! - rewrites `dept = 20` to `dept = 21` in statements reading employee,
//! - masks employee.ssn as XXX-XX-XXXX (NULL stays NULL),
//! - denies every statement touching salaries (SQLSTATE 42501, session survives, an
//!   open transaction really fails),
//! - drops the session on any statement touching audit_log.
//!
//! The tables are created, and what was really committed is checked, over the unix
//! socket, which the profile does not track. Installs postgresql-15 with apt-get when
//! it is missing; needs root. The harness (`pgcluster/`) gives each cluster a free
//! port and the supervisor a copy of the profile tracking that port; the tests take a
//! lock and run one at a time even without `--test-threads=1`.

mod common;
mod pgcluster;

use common::*;
use pgcluster::*;

const SCHEMA: &str = "
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES
    (1, 'alice', 20, '111-11-1111'),
    (2, 'bob',   20, '222-22-2222'),
    (3, 'carol', 21, '333-33-3333'),
    (4, 'dave',  21, '444-44-4444'),
    (5, 'erin',  22, '555-55-5555'),
    (6, 'frank', 21, NULL);
CREATE TABLE project (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL);
INSERT INTO project VALUES (1, 'apollo', 20), (2, 'borealis', 21), (3, 'cygnus', 20);
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO salaries VALUES (1, 1000), (2, 2000);
CREATE TABLE audit_log (id int PRIMARY KEY, what text NOT NULL);
INSERT INTO audit_log VALUES (1, 'created');
";

/// Department 20's and 21's names, as stored.
const DEPT20: &[&str] = &["alice", "bob"];
const DEPT21: &[&str] = &["carol", "dave", "frank"];
const MASK: &str = "XXX-XX-XXXX";

fn names(rows: &[postgres::Row]) -> Vec<String> {
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

fn db_error(e: &postgres::Error) -> (String, String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("expected an ErrorResponse from the server, got {e:?}"));
    (
        db.severity().to_owned(),
        db.code().code().to_owned(),
        db.message().to_owned(),
    )
}

// ---------------------------------------------------------------- psql (simple query)

#[test]
fn psql_rewrite_mask_deny_drop() {
    let _serial = serial();
    let mut c = Cluster::start(SCHEMA);

    // --- rewrite: dept = 20 reads department 21, however employee is named ---
    for sql in [
        "SELECT name FROM employee WHERE dept = 20 ORDER BY name;",
        "SELECT name FROM public.employee WHERE dept = 20 ORDER BY name;",
        "SELECT e.name FROM employee AS e WHERE e.dept = 20 ORDER BY e.name;",
        "SELECT e.name FROM public.employee e WHERE e.dept = 20 ORDER BY 1;",
    ] {
        let p = c.psql_tcp(sql);
        assert_eq!(
            (p.code, p.stdout.as_str()),
            (Some(0), lines(DEPT21).as_str()),
            "rewrite of {sql:?}: {p:?}"
        );
    }
    // The untracked unix socket sees the real department 20 (the rule is the
    // supervisor's, not the data's).
    assert_eq!(
        c.psql_unix("SELECT name FROM employee WHERE dept = 20 ORDER BY name"),
        lines(DEPT20)
    );
    // Another table with the same predicate is not rewritten.
    let p = c.psql_tcp("SELECT name FROM project WHERE dept = 20 ORDER BY name;");
    assert_eq!(
        (p.code, p.stdout.as_str()),
        (Some(0), "apollo\ncygnus\n"),
        "project must not be rewritten: {p:?}"
    );
    // A different predicate on employee is not rewritten either.
    let p = c.psql_tcp("SELECT name FROM employee WHERE dept = 22;");
    assert_eq!(p.stdout, "erin\n", "{p:?}");

    // --- mask: every non-NULL ssn reads XXX-XX-XXXX, NULL stays NULL ---
    let p = c.psql_tcp("SELECT id, name, ssn FROM employee ORDER BY id;");
    assert_eq!(
        (p.code, p.stdout.as_str()),
        (
            Some(0),
            "1|alice|XXX-XX-XXXX\n2|bob|XXX-XX-XXXX\n3|carol|XXX-XX-XXXX\n\
             4|dave|XXX-XX-XXXX\n5|erin|XXX-XX-XXXX\n6|frank|(null)\n"
        ),
        "mask: {p:?}"
    );
    let p = c.psql_tcp(
        "SELECT ssn FROM public.employee WHERE id = 2;\nSELECT * FROM employee WHERE id = 6;",
    );
    assert_eq!(
        p.stdout, "XXX-XX-XXXX\n6|frank|21|(null)\n",
        "mask (SELECT *): {p:?}"
    );
    assert!(!p.stdout.contains("222-22-2222"), "ssn leaked: {p:?}");
    assert_eq!(
        c.psql_unix("SELECT ssn FROM employee WHERE id = 2"),
        "222-22-2222\n"
    );

    // --- deny: 42501, and the SAME session goes on ---
    let p = c.psql_tcp(
        "SELECT 'pid-before', pg_backend_pid();\n\
         SELECT * FROM salaries;\n\
         SELECT 'after-deny', 42;\n\
         UPDATE salaries SET amount = 0;\n\
         SELECT 'pid-after', pg_backend_pid();\n",
    );
    assert_eq!(
        p.code,
        Some(0),
        "psql session with denied statements: {p:?}"
    );
    assert_eq!(
        p.stderr.matches("ERROR:  42501").count(),
        2,
        "expected two 42501 errors: {p:?}"
    );
    assert!(
        p.stdout.contains("after-deny|42\n"),
        "session did not go on after the deny: {p:?}"
    );
    assert!(!p.stdout.contains("1000"), "salaries leaked: {p:?}");
    let pid = |tag: &str| {
        p.stdout
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("no {tag} line: {p:?}"))
            .to_owned()
    };
    assert_eq!(
        pid("pid-before|"),
        pid("pid-after|"),
        "the deny must not reconnect: {p:?}"
    );
    assert_eq!(
        c.psql_unix("SELECT id, amount FROM salaries ORDER BY id"),
        "1|1000\n2|2000\n"
    );

    // --- deny inside a transaction block: the transaction really fails ---
    let p = c.psql_tcp(
        "BEGIN;\n\
         INSERT INTO employee VALUES (100, 'mallory', 20, '999-99-9999');\n\
         SELECT * FROM salaries;\n\
         SELECT 'in-failed-block';\n\
         COMMIT;\n\
         SELECT 'after-commit', count(*) FROM employee WHERE id = 100;\n",
    );
    assert_eq!(p.code, Some(0), "{p:?}");
    assert!(
        p.stderr.contains("ERROR:  42501"),
        "denied statement in a block: {p:?}"
    );
    assert!(
        p.stderr.contains("25P02"),
        "the server must consider the block failed (in_failed_sql_transaction): {p:?}"
    );
    assert!(
        p.stdout.contains("ROLLBACK\n"),
        "COMMIT of a failed block must report ROLLBACK: {p:?}"
    );
    assert!(p.stdout.contains("after-commit|0\n"), "{p:?}");
    assert_eq!(
        c.psql_unix("SELECT count(*) FROM employee WHERE id = 100"),
        "0\n",
        "the INSERT before the denied statement was committed"
    );

    // --- drop-session: FATAL, connection lost; a new connection works ---
    let p = c.psql_tcp("SELECT 'before-drop';\nSELECT * FROM audit_log;\nSELECT 'after-drop';\n");
    assert_eq!(
        p.code,
        Some(2),
        "psql must report the lost connection (exit 2): {p:?}"
    );
    assert!(p.stdout.contains("before-drop\n"), "{p:?}");
    assert!(
        !p.stdout.contains("after-drop"),
        "the session went on after audit_log: {p:?}"
    );
    assert!(!p.stdout.contains("created"), "audit_log leaked: {p:?}");
    assert!(
        p.stderr.contains("FATAL:  42501"),
        "expected a FATAL 42501: {p:?}"
    );
    assert!(p.stderr.contains("connection to server was lost"), "{p:?}");
    // Inside a transaction the server rolls back what the session did.
    let p = c.psql_tcp(
        "BEGIN;\nINSERT INTO employee VALUES (101, 'trent', 21, NULL);\nDELETE FROM audit_log;\nCOMMIT;\n",
    );
    assert_eq!(p.code, Some(2), "{p:?}");
    let p = c.psql_tcp("SELECT 'new-session', count(*) FROM employee WHERE id = 101;");
    assert_eq!(
        (p.code, p.stdout.as_str()),
        (Some(0), "new-session|0\n"),
        "{p:?}"
    );
    assert_eq!(c.psql_unix("SELECT count(*) FROM audit_log"), "1\n");

    c.stop();
}

// ---------------------------------------------------------------- SSLRequest

#[test]
fn ssl_request_is_declined() {
    let _serial = serial();
    let mut c = Cluster::start(SCHEMA);
    let port = c.port();

    let p = c.psql_tcp_conn(
        &format!("sslmode=prefer host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        "SELECT 'plain', ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();",
    );
    assert_eq!(
        (p.code, p.stdout.as_str()),
        (Some(0), "plain|f\n"),
        "sslmode=prefer: {p:?}"
    );

    let p = c.psql_tcp_conn(
        &format!("sslmode=require host=127.0.0.1 port={port} user=postgres dbname=postgres"),
        "SELECT 1;",
    );
    assert_eq!(p.code, Some(2), "sslmode=require must fail: {p:?}");
    assert!(
        p.stderr
            .contains("server does not support SSL, but SSL was required"),
        "{p:?}"
    );

    // The server is fine afterwards.
    let p = c.psql_tcp("SELECT 'still-up';");
    assert_eq!(p.stdout, "still-up\n", "{p:?}");
    c.stop();
}

// ---------------------------------------------------------------- extended protocol

#[test]
fn extended_protocol_rewrite_mask_deny_drop() {
    let _serial = serial();
    let c = Cluster::start(SCHEMA);
    let port = c.port();
    let sockdir = c.sockdir().to_path_buf();
    let unix = move |sql: &str| {
        let mut cmd = timeout_cmd(&pg("psql"), CLIENT_TIMEOUT);
        cmd.args(["-X", "-q", "-A", "-t", "-h"])
            .arg(&sockdir)
            .args(["-p", &port.to_string(), "-U", "postgres", "-c", sql]);
        run_ok(&mut cmd)
    };

    let mut client = c.client();
    let client = within("rewrite and mask", move || {
        // Rewrite of a literal in Parse.
        let rows = client
            .query(
                "SELECT name FROM employee WHERE dept = 20 ORDER BY name",
                &[],
            )
            .unwrap();
        assert_eq!(names(&rows), DEPT21, "rewrite through Parse");
        let rows = client
            .query(
                "SELECT e.name FROM public.employee e WHERE e.dept = 20 ORDER BY 1",
                &[],
            )
            .unwrap();
        assert_eq!(
            names(&rows),
            DEPT21,
            "rewrite through Parse (alias, schema)"
        );
        let rows = client
            .query(
                "SELECT name FROM project WHERE dept = 20 ORDER BY name",
                &[],
            )
            .unwrap();
        assert_eq!(
            names(&rows),
            ["apollo", "cygnus"],
            "project must not be rewritten"
        );

        // Mask in binary results (the crate asks for binary): text stays text.
        let rows = client
            .query("SELECT name, ssn FROM employee ORDER BY id", &[])
            .unwrap();
        let got: Vec<(String, Option<String>)> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want: Vec<(String, Option<String>)> =
            ["alice", "bob", "carol", "dave", "erin", "frank"]
                .iter()
                .map(|n| (n.to_string(), (*n != "frank").then(|| MASK.to_owned())))
                .collect();
        assert_eq!(got, want, "mask through the extended protocol");

        // A prepared statement with a parameter, executed twice (statement reused:
        // the RowDescription comes from Describe, not with each Execute).
        let st = client
            .prepare("SELECT ssn, dept FROM employee WHERE id = $1")
            .unwrap();
        for id in [1i32, 6] {
            let row = client.query_one(&st, &[&id]).unwrap();
            let ssn: Option<String> = row.get(0);
            assert_eq!(
                ssn.as_deref(),
                (id != 6).then_some(MASK),
                "prepared, id {id}"
            );
        }
        // SELECT * (simple protocol through the same client) masks too.
        let msgs = client
            .simple_query("SELECT * FROM employee WHERE id = 3")
            .unwrap();
        let row = msgs
            .iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .expect("one row");
        assert_eq!(row.get("ssn"), Some(MASK));
        client
    });

    // Deny: a DbError 42501, the session goes on.
    let mut client = within("deny", move || {
        let mut client = client;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let e = client
            .query("SELECT amount FROM salaries", &[])
            .expect_err("salaries must be denied");
        let (severity, code, message) = db_error(&e);
        assert_eq!(
            (severity.as_str(), code.as_str()),
            ("ERROR", "42501"),
            "{message}"
        );
        let e = client
            .execute("UPDATE salaries SET amount = 0", &[])
            .expect_err("denied");
        assert_eq!(db_error(&e).1, "42501");
        let row = client
            .query_one("SELECT pg_backend_pid(), 42", &[])
            .unwrap();
        assert_eq!(
            (row.get::<_, i32>(0), row.get::<_, i32>(1)),
            (pid, 42),
            "same session after the deny"
        );
        client
    });
    assert_eq!(
        unix("SELECT id, amount FROM salaries ORDER BY id"),
        "1|1000\n2|2000\n"
    );

    // Deny inside a transaction: the server's transaction fails; COMMIT rolls back.
    let client_after_tx = within("deny in a transaction", move || {
        {
            let mut tx = client.transaction().unwrap();
            assert_eq!(
                tx.execute(
                    "INSERT INTO employee VALUES ($1, 'mallory', 20, '999-99-9999')",
                    &[&100i32]
                )
                .unwrap(),
                1
            );
            let e = tx.query("SELECT * FROM salaries", &[]).expect_err("denied");
            assert_eq!(db_error(&e).1, "42501");
            // The server itself is in a failed block now.
            let e = tx.query("SELECT 1", &[]).expect_err("block must be failed");
            assert_eq!(
                db_error(&e).1,
                "25P02",
                "in_failed_sql_transaction expected"
            );
            // COMMIT of a failed block is answered ROLLBACK (the crate reports Ok or
            // an error depending on its version; either way nothing may be committed).
            let _ = tx.commit();
        }
        let n: i64 = client
            .query_one("SELECT count(*) FROM employee WHERE id = 100", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "the insert was committed");
        client
    });
    assert_eq!(
        unix("SELECT count(*) FROM employee WHERE id = 100"),
        "0\n",
        "the insert was committed"
    );

    // Drop-session: the query errors (FATAL), the client is closed afterwards.
    within("drop-session", move || {
        let mut client = client_after_tx;
        let e = client
            .query("SELECT * FROM audit_log", &[])
            .expect_err("audit_log must end the session");
        if let Some(db) = e.as_db_error() {
            assert_eq!(
                (db.severity(), db.code().code()),
                ("FATAL", "42501"),
                "{e:?}"
            );
        }
        let e = client
            .query("SELECT 1", &[])
            .expect_err("the session must be closed");
        assert!(
            e.is_closed() || client.is_closed(),
            "expected a closed connection, got {e:?}"
        );
    });
    // A new connection works.
    let mut client = c.client();
    within("new session", move || {
        let rows = client
            .query(
                "SELECT name FROM employee WHERE dept = 20 ORDER BY name",
                &[],
            )
            .unwrap();
        assert_eq!(names(&rows), DEPT21);
    });
    c.stop();
}

/// A denied statement with parameters, prepared by a driver that lets the server infer
/// the parameter types (Parse without types, Describe, then Bind with the values): the
/// client must still get the server's 42501, not a parameter-count mismatch, and the
/// session must go on.
#[test]
fn extended_protocol_deny_parameterized_statement() {
    let _serial = serial();
    let c = Cluster::start(SCHEMA);
    let mut client = c.client();
    within("deny with parameters", move || {
        for (sql, id) in [
            ("UPDATE salaries SET amount = 0 WHERE id = $1", 1i32),
            ("SELECT amount FROM salaries WHERE id = $1", 2i32),
        ] {
            let e = client.query(sql, &[&id]).expect_err("denied");
            assert_eq!(db_error(&e).1, "42501", "{sql:?}: {e:?}");
        }
        let row = client.query_one("SELECT 42", &[]).unwrap();
        assert_eq!(row.get::<_, i32>(0), 42, "session after the deny");
    });
    assert_eq!(
        c.psql_unix("SELECT id, amount FROM salaries ORDER BY id"),
        "1|1000\n2|2000\n"
    );
    c.stop();
}

// ---------------------------------------------------------------- pgbench

#[test]
fn pgbench_select_only_under_rules() {
    let _serial = serial();
    let c = Cluster::start(SCHEMA);
    let sock = c.sockdir().to_string_lossy().into_owned();
    let port = c.port().to_string();
    // Initialise over the unix socket, measure over TCP (through the rules).
    c.pgbench(&["-h", &sock, "-p", &port, "-i", "-q"]);
    for mode in ["simple", "prepared"] {
        let secs = if mode == "simple" { "10" } else { "5" };
        let report = c.pgbench(&[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-S",
            "-M",
            mode,
            "-c",
            "4",
            "-T",
            secs,
        ]);
        eprintln!("pgbench -S -M {mode} -c 4 -T {secs} under profiles/pg-demo.toml:\n{report}");
        assert_eq!(
            pgbench_number(&report, "number of failed transactions:"),
            0,
            "pgbench -M {mode} reported failed transactions:\n{report}"
        );
        let processed = pgbench_number(&report, "number of transactions actually processed:");
        assert!(
            processed > 0,
            "pgbench -M {mode} processed no transaction:\n{report}"
        );
    }
    c.stop();
}

/// A connection per transaction (`pgbench -C`): the postmaster forks a backend per
/// connection while earlier backends exit and wait, as zombies, to be reaped. Each
/// backend must receive its client socket from the fork and keep it after the
/// postmaster closes its copy (a zombie once took a new fork's descriptors, and the
/// new backend's connection was shut down: pgbench aborted).
#[test]
fn pgbench_connection_per_transaction_under_rules() {
    let _serial = serial();
    let c = Cluster::start(SCHEMA);
    let sock = c.sockdir().to_string_lossy().into_owned();
    let port = c.port().to_string();
    c.pgbench(&["-h", &sock, "-p", &port, "-i", "-q"]);
    let report = c.pgbench(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-S",
        "-C",
        "-c",
        "4",
        "-j",
        "2",
        "-t",
        "150",
    ]);
    eprintln!("pgbench -S -C -c 4 -t 150 under profiles/pg-demo.toml:\n{report}");
    assert!(
        report.contains("number of transactions actually processed: 600/600"),
        "every transaction, on its own connection, must complete:\n{report}"
    );
    c.stop();
}

/// Parses `key: <integer>` from pgbench's report.
fn pgbench_number(report: &str, key: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("pgbench report has no line {key:?}:\n{report}"));
    line[key.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"))
}
