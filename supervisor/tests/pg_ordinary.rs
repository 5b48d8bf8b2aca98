//! Ordinary traffic under `profiles/pg-demo.toml` (issue 8, item 7, and contract 5 of
//! pg_attacks.rs): statements no rule concerns pass byte for byte unchanged. Each
//! item of a broad corpus — psql's `\d` family, COPY of unprotected tables in both
//! directions, PREPARE/EXECUTE, cursors, LISTEN/NOTIFY, CTEs, window functions,
//! errors, savepoints — runs once over TCP (tracked: every rule applies) and once over
//! the UNIX socket (untracked), and the two outputs must be identical. The same for the
//! extended protocol (the `postgres` crate: prepared statements with parameters,
//! binary results, a transaction, COPY) and for raw protocol messages; and
//! `SELECT ssn FROM employee` must come back masked, not refused.
//!
//! Only one normalisation: the PID in psql's "Asynchronous notification … from server
//! process with PID N" (each session has its own backend).

mod common;
mod pgcluster;

use pgcluster::wire::{self, Msg, Raw};
use pgcluster::*;
use std::time::Duration;

const SCHEMA: &str = "
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES
    (1, 'zz_dept20_alice', 20, '931-77-4410'),
    (2, 'zz_dept20_bob',   20, '931-88-5521'),
    (3, 'yy_dept21_carol', 21, '931-66-3397'),
    (4, 'yy_dept21_dave',  21, '931-55-2286'),
    (5, 'xx_dept22_erin',  22, '931-44-1175'),
    (6, 'yy_dept21_frank', 21, NULL);
CREATE TABLE project (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL);
INSERT INTO project VALUES (1, 'apollo', 20), (2, 'borealis', 21), (3, 'cygnus', 20);
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL, note text NOT NULL);
INSERT INTO salaries VALUES (1, 918273.64, 'SALARY-SECRET-7Q'), (2, 827364.55, 'SALARY-SECRET-8R');
CREATE TABLE audit_log (id int PRIMARY KEY, what text NOT NULL);
INSERT INTO audit_log VALUES (1, 'AUDIT-BASELINE');
CREATE INDEX project_dept_idx ON project (dept);
CREATE VIEW project_v AS SELECT id, name FROM project WHERE dept = 21;
CREATE FUNCTION add_one(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 + 1';
CREATE SCHEMA reporting;
COMMENT ON TABLE project IS 'projects of the company';
";

const MASK: &str = "XXX-XX-XXXX";

/// The psql corpus: (label, script). Every script leaves the database as it found it.
const CORPUS: &[(&str, &str)] = &[
    ("\\d", "\\d"),
    ("\\dt", "\\dt"),
    ("\\d+ project", "\\d+ project"),
    ("\\d project_v", "\\d project_v"),
    ("\\df", "\\df"),
    ("\\dn", "\\dn"),
    ("\\l", "\\l"),
    ("\\dv", "\\dv"),
    ("\\di", "\\di"),
    ("\\dx", "\\dx"),
    ("COPY project TO STDOUT", "COPY project TO STDOUT;"),
    (
        "COPY (SELECT …) TO STDOUT csv header",
        "COPY (SELECT id, name FROM project ORDER BY id) TO STDOUT (FORMAT csv, HEADER);",
    ),
    ("\\copy project to stdout", "\\copy project to stdout"),
    (
        "COPY project FROM STDIN (rolled back)",
        "BEGIN;\nCOPY project FROM STDIN;\n10\tcopied-a\t21\n11\tcopied-b\t22\n\\.\n\
         SELECT * FROM project ORDER BY id;\nROLLBACK;",
    ),
    (
        "COPY … FROM STDIN csv (rolled back)",
        "BEGIN;\nCOPY project (id, name, dept) FROM STDIN (FORMAT csv);\n12,\"quoted, name\",20\n\\.\n\
         SELECT * FROM project WHERE id = 12;\nROLLBACK;",
    ),
    (
        "PREPARE/EXECUTE/DEALLOCATE on project",
        "PREPARE pp(int) AS SELECT id, name FROM project WHERE dept = $1 ORDER BY id;\n\
         EXECUTE pp(20);\nEXECUTE pp(21);\nDEALLOCATE pp;",
    ),
    (
        "DECLARE/FETCH/CLOSE in a transaction",
        "BEGIN;\nDECLARE cur CURSOR FOR SELECT * FROM project ORDER BY id;\n\
         FETCH 2 FROM cur;\nFETCH NEXT FROM cur;\nFETCH NEXT FROM cur;\nCLOSE cur;\nCOMMIT;",
    ),
    (
        "LISTEN/NOTIFY with payload to the same session",
        "LISTEN chan;\nNOTIFY chan, 'payload-1';\nSELECT pg_notify('chan', 'payload-2');\n\
         SELECT 'after-notify';\nUNLISTEN chan;",
    ),
    (
        "SELECT id, name, dept FROM employee",
        "SELECT id, name, dept FROM employee ORDER BY id;",
    ),
    (
        "employee aggregate without ssn",
        "SELECT dept, count(*), string_agg(name, ',' ORDER BY name) FROM employee GROUP BY dept ORDER BY dept;",
    ),
    (
        "employee WHERE dept = 22 (no rule concerns 22)",
        "SELECT name FROM employee WHERE dept = 22;",
    ),
    (
        "CTE on project",
        "WITH d AS (SELECT dept, count(*) AS c FROM project GROUP BY dept) SELECT * FROM d ORDER BY dept;",
    ),
    (
        "recursive CTE joined with project",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) \
         SELECT p.name, t.n FROM project p JOIN t ON t.n = p.id ORDER BY 1;",
    ),
    (
        "window functions",
        "SELECT name, dept, row_number() OVER (PARTITION BY dept ORDER BY id), \
         sum(id) OVER (ORDER BY id), lag(name) OVER (ORDER BY id) FROM project ORDER BY id;",
    ),
    (
        "generate_series",
        "SELECT g, g * g, g::text || '-x' FROM generate_series(1, 12) g;",
    ),
    ("VALUES", "VALUES (1, 'a'), (2, 'b'), (3, NULL);"),
    ("a view over project", "SELECT * FROM project_v;"),
    (
        "EXPLAIN (COSTS OFF)",
        "EXPLAIN (COSTS OFF) SELECT * FROM project WHERE dept = 20;",
    ),
    (
        "SET/SHOW/RESET",
        "SET work_mem = '8MB';\nSHOW work_mem;\nRESET work_mem;\nSHOW work_mem;",
    ),
    (
        "errors and the session after them",
        "SELECT 1/0;\nSELECT * FROM no_such_table;\nSELEC 1;\nSELECT 'after-errors';",
    ),
    (
        "transaction with savepoint (rolled back)",
        "BEGIN;\nINSERT INTO project VALUES (20, 'tmp', 22);\nSAVEPOINT s;\n\
         UPDATE project SET name = 'changed' WHERE id = 20;\nROLLBACK TO s;\n\
         SELECT * FROM project WHERE id = 20;\nROLLBACK;",
    ),
    (
        "failed transaction block and ROLLBACK",
        "BEGIN;\nSELECT 1/0;\nSELECT 1;\nCOMMIT;\nSELECT 'after-rollback';",
    ),
    (
        "temp table",
        "CREATE TEMP TABLE tt AS SELECT * FROM project;\nSELECT count(*) FROM tt;\nDROP TABLE tt;",
    ),
    (
        "multi-statement line",
        "SELECT 1 AS a \\; SELECT 2 AS b \\; SELECT name FROM project WHERE id = 1;",
    ),
    (
        "string literals naming protected objects",
        "SELECT 'salaries' AS word, 'audit_log' AS other, 'employee.ssn' AS col;",
    ),
    (
        "catalog query naming the protected tables",
        "SELECT relname, relkind FROM pg_class WHERE relname IN ('employee', 'salaries', 'audit_log') ORDER BY 1;",
    ),
    (
        "\\d employee (structure of a protected table)",
        "\\d employee",
    ),
];

fn normalise(s: &str) -> String {
    // "… from server process with PID 12345." → "… PID N."
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("with PID ") {
        out.push_str(&rest[..i + "with PID ".len()]);
        rest = &rest[i + "with PID ".len()..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        out.push('N');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

fn diff_lines(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out = String::new();
    for i in 0..la.len().max(lb.len()) {
        let (x, y) = (la.get(i).copied(), lb.get(i).copied());
        if x != y {
            out.push_str(&format!(
                "    line {}: tcp {:?}\n             unix {:?}\n",
                i + 1,
                x,
                y
            ));
        }
    }
    out
}

/// Every corpus item, over TCP and over the UNIX socket, must print the same bytes.
#[test]
fn psql_corpus_is_byte_identical() {
    let _serial = serial();
    let c = Cluster::start_with(Options::new(SCHEMA).prefix("supervise-pgordinary-"));
    let args = ["-X", "-v", "VERBOSITY=verbose", "-P", "pager=off"];
    let timeout = Duration::from_secs(30);
    let mut failures = Vec::new();
    for &(label, script) in CORPUS {
        let tcp = c.psql_raw(&c.tcp_conninfo(), &args, &[], script, timeout);
        let unix = c.psql_raw(&c.unix_conninfo(), &args, &[], script, timeout);
        let (ts, us) = (normalise(&tcp.stdout), normalise(&unix.stdout));
        let (te, ue) = (normalise(&tcp.stderr), normalise(&unix.stderr));
        let same = ts == us && te == ue && tcp.code == unix.code;
        if same && !ts.is_empty() {
            eprintln!("ordinary {label}: identical ({} bytes)", tcp.raw.len());
        } else if same {
            eprintln!("ordinary {label}: identical but empty output?");
            failures.push(format!("{label}: no output at all (stderr «{te}»)"));
        } else {
            let mut d = format!(
                "{label}: tcp exit {:?} vs unix exit {:?}\n",
                tcp.code, unix.code
            );
            d.push_str(&format!("  stdout:\n{}", diff_lines(&ts, &us)));
            d.push_str(&format!("  stderr:\n{}", diff_lines(&te, &ue)));
            eprintln!("ordinary {label}: DIFFERENT\n{d}");
            failures.push(d);
        }
    }
    c.stop();
    assert!(
        failures.is_empty(),
        "{} ordinary psql item(s) changed by the supervisor:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One extended-protocol session's results, as raw value bytes.
type Rows = Vec<Vec<Option<Vec<u8>>>>;

fn extended_corpus(client: &mut postgres::Client) -> Vec<(String, Result<Rows, String>)> {
    let mut out: Vec<(String, Result<Rows, String>)> = Vec::new();
    let err = |e: postgres::Error| match e.as_db_error() {
        Some(db) => format!("{} {} {}", db.severity(), db.code().code(), db.message()),
        None => e.to_string(),
    };
    let st = client
        .prepare("SELECT id, name, dept FROM project WHERE dept = $1 ORDER BY id")
        .expect("prepare");
    for d in [20i32, 21, 99] {
        out.push((
            format!("prepared project dept = $1 ({d})"),
            client
                .query(&st, &[&d])
                .map(|r| row_values(&r))
                .map_err(err),
        ));
    }
    for (label, sql) in [
        (
            "binary types",
            "SELECT 1.5::numeric, DATE '2024-02-29', '\\x0102ff'::bytea, ARRAY[1, 2, 3], \
             '{\"a\": 1}'::jsonb, NULL::text, true, 3.25::float8, 'x'::char(3)",
        ),
        (
            "employee without ssn",
            "SELECT id, name, dept FROM employee ORDER BY id",
        ),
        (
            "employee dept = 22",
            "SELECT name FROM employee WHERE dept = 22",
        ),
        ("a view over project", "SELECT * FROM project_v"),
        (
            "window over project",
            "SELECT name, rank() OVER (ORDER BY dept) FROM project ORDER BY id",
        ),
        ("an error", "SELECT 1/0"),
        ("after the error", "SELECT 'after'::text"),
    ] {
        out.push((
            label.to_owned(),
            client.query(sql, &[]).map(|r| row_values(&r)).map_err(err),
        ));
    }
    out.push((
        "text parameter".to_owned(),
        client
            .query(
                "SELECT name FROM project WHERE name = $1 OR name LIKE $2",
                &[&"apollo", &"c%"],
            )
            .map(|r| row_values(&r))
            .map_err(err),
    ));
    // A transaction (rolled back): insert, read.
    let count = |n: u64| vec![vec![Some(n.to_string().into_bytes())]];
    let tx_result = (|| -> Result<(), postgres::Error> {
        let mut tx = client.transaction()?;
        let n = tx
            .execute(
                "INSERT INTO project VALUES ($1, $2, $3)",
                &[&50i32, &"ext-tx", &21i32],
            )
            .map(count)
            .map_err(err);
        out.push(("insert in a transaction".to_owned(), n));
        let r = tx
            .query("SELECT * FROM project WHERE id = 50", &[])
            .map(|r| row_values(&r))
            .map_err(err);
        out.push(("read own insert".to_owned(), r));
        tx.rollback()
    })();
    out.push((
        "transaction begin/rollback".to_owned(),
        tx_result.map(|()| Vec::new()).map_err(err),
    ));
    // COPY out, and COPY in inside a rolled-back transaction.
    {
        use std::io::{Read, Write};
        let r = client
            .copy_out("COPY project TO STDOUT")
            .map_err(err)
            .and_then(|mut r| {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf).map_err(|e| e.to_string())?;
                Ok(vec![vec![Some(buf)]])
            });
        out.push(("copy_out project".to_owned(), r));
        let copy_in = (|| -> Result<Rows, String> {
            let mut tx = client.transaction().map_err(err)?;
            let mut w = tx.copy_in("COPY project FROM STDIN").map_err(err)?;
            w.write_all(b"60\tcopied\t22\n")
                .map_err(|e| e.to_string())?;
            let n = w.finish().map_err(err)?;
            tx.rollback().map_err(err)?;
            Ok(count(n))
        })();
        out.push(("copy_in project (rolled back)".to_owned(), copy_in));
    }
    out
}

/// Raw protocol exchanges whose every reply message must be identical.
fn raw_corpus(target: &wire::Target) -> Vec<(String, Vec<Msg>)> {
    use wire::{bind, describe, execute, parse, query, sync};
    let mut out = Vec::new();
    let mut r = Raw::login(target, &wire::default_params());
    let batches: Vec<(&str, Vec<Vec<u8>>, usize)> = vec![
        (
            "simple multi-statement",
            vec![query(
                "SELECT 1 AS a; SELECT name FROM project ORDER BY id; SELECT id, name, dept FROM employee ORDER BY id",
            )],
            1,
        ),
        (
            "extended with Describe, text and binary",
            vec![
                parse("s", "SELECT id, name FROM project WHERE dept = $1 ORDER BY id", &[23]),
                describe(b'S', "s"),
                bind("p", "s", &[0], &[Some(b"20")], &[0, 1]),
                describe(b'P', "p"),
                execute("p", 0),
                sync(),
            ],
            1,
        ),
        (
            "extended without Describe, max_rows",
            vec![
                parse("", "SELECT g FROM generate_series(1, 5) g", &[]),
                bind("q", "", &[], &[], &[1]),
                execute("q", 2),
                execute("q", 0),
                sync(),
            ],
            1,
        ),
        (
            "extended error then Sync",
            vec![
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
        ("simple error", vec![query("SELECT * FROM no_such_table")], 1),
        ("empty query", vec![query("")], 1),
        (
            "transaction statuses",
            vec![query("BEGIN"), query("SELECT 1/0"), query("ROLLBACK")],
            3,
        ),
        (
            "COPY out of project",
            vec![query("COPY project TO STDOUT")],
            1,
        ),
    ];
    for (label, msgs, syncs) in batches {
        r.send_all(&msgs);
        out.push((label.to_owned(), r.read_until(syncs)));
    }
    out
}

/// The extended protocol and raw exchanges are unchanged; ssn comes back masked.
#[test]
fn extended_and_raw_traffic_unchanged() {
    let _serial = serial();
    let c = Cluster::start_with(Options::new(SCHEMA).prefix("supervise-pgordinary-"));
    let mut failures = Vec::new();

    let tcp_cfg = c.client_config();
    let unix_cfg = c.client_config_unix();
    let (tcp, unix) = within("extended corpus", move || {
        let mut t = tcp_cfg.connect(postgres::NoTls).expect("connect tcp");
        let mut u = unix_cfg.connect(postgres::NoTls).expect("connect unix");
        // Each corpus item's result is compared; a connection lost midway shows as
        // errors from there on.
        (extended_corpus(&mut t), extended_corpus(&mut u))
    });
    let missing = |from: &[(String, Result<Rows, String>)],
                   to: &[(String, Result<Rows, String>)]| {
        from.iter()
            .filter(|(l, _)| !to.iter().any(|(m, _)| m == l))
            .map(|(l, _)| l.clone())
            .collect::<Vec<_>>()
    };
    for (side, labels) in [
        ("tcp", missing(&unix, &tcp)),
        ("unix", missing(&tcp, &unix)),
    ] {
        for label in labels {
            eprintln!("ordinary crate {label}: DIFFERENT (no result over {side})");
            failures.push(format!("crate {label}: no result over {side}"));
        }
    }
    for (label, a) in &tcp {
        let Some((_, b)) = unix.iter().find(|(l, _)| l == label) else {
            continue;
        };
        if a == b {
            eprintln!("ordinary crate {label}: identical");
        } else {
            eprintln!("ordinary crate {label}: DIFFERENT\n  tcp  {a:?}\n  unix {b:?}");
            failures.push(format!("crate {label}: tcp {a:?} vs unix {b:?}"));
        }
    }

    let tcp = raw_corpus(&c.tcp_target());
    let unix = raw_corpus(&c.unix_target());
    for ((label, a), (_, b)) in tcp.iter().zip(unix.iter()) {
        if a == b && !a.is_empty() {
            eprintln!("ordinary raw {label}: identical ({} messages)", a.len());
        } else {
            let s = |m: &[Msg]| m.iter().map(Msg::summary).collect::<Vec<_>>().join(", ");
            eprintln!(
                "ordinary raw {label}: DIFFERENT\n  tcp  [{}]\n  unix [{}]",
                s(a),
                s(b)
            );
            failures.push(format!("raw {label}: tcp [{}] vs unix [{}]", s(a), s(b)));
        }
    }

    // ssn through the extended protocol: masked, not refused (text and binary).
    let cfg = c.client_config();
    let masked = within("ssn masked", move || {
        let mut t = cfg.connect(postgres::NoTls).expect("connect");
        let bin = t
            .query("SELECT ssn FROM employee ORDER BY id", &[])
            .map(|r| row_values(&r));
        let txt = t
            .simple_query("SELECT ssn FROM employee ORDER BY id")
            .map(|m| {
                m.into_iter()
                    .filter_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(r) => {
                            Some(r.get(0).map(|s| s.as_bytes().to_vec()))
                        }
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            });
        (bin, txt)
    });
    let want: Vec<Option<Vec<u8>>> = (1..=6)
        .map(|i| (i != 6).then(|| MASK.as_bytes().to_vec()))
        .collect();
    match masked.0 {
        Ok(rows) => {
            let got: Vec<Option<Vec<u8>>> = rows.into_iter().map(|mut r| r.remove(0)).collect();
            if got == want {
                eprintln!("ordinary crate SELECT ssn (binary): masked");
            } else {
                failures.push(format!(
                    "crate SELECT ssn (binary): expected masked, got {got:?}"
                ));
            }
        }
        Err(e) => failures.push(format!("crate SELECT ssn (binary): refused or failed: {e}")),
    }
    match masked.1 {
        Ok(got) if got == want => eprintln!("ordinary crate SELECT ssn (simple): masked"),
        Ok(got) => failures.push(format!(
            "crate SELECT ssn (simple): expected masked, got {got:?}"
        )),
        Err(e) => failures.push(format!("crate SELECT ssn (simple): refused or failed: {e}")),
    }

    c.stop();
    assert!(
        failures.is_empty(),
        "{} ordinary extended/raw item(s) changed by the supervisor:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
