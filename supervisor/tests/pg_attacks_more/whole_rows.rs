//! 1. Whole rows by attribute notation, TABLE in set operations, oracles.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;

/// Attribute notation (`e.to_jsonb` is `to_jsonb(e)`: the whole row, every column
/// included, as one value the mask cannot see), `TABLE employee` as an arm of a set
/// operation (invisible to the statement's table list, so no masked-column check runs
/// and the UNION's result columns carry no table), `EXPLAIN ANALYZE CREATE TABLE … AS
/// EXECUTE`, and oracles through an output alias of ssn in ORDER BY / GROUP BY.
#[test]
fn whole_row_by_attribute_notation_and_table_in_set_operations() {
    let _serial = serial();
    let mut run = Run::start("whole_row_by_attribute_notation_and_table_in_set_operations");
    use Expect::*;

    // --- attribute notation: a function of the whole row, written as a column ---
    for sql in [
        "SELECT e.to_jsonb FROM employee e WHERE id = 1;",
        "SELECT e.record_out FROM employee e;",
        "SELECT employee.row_to_json FROM employee;",
        "SELECT public.employee.to_json FROM public.employee;",
        "SELECT e.quote_literal FROM employee e;",
        "SELECT e.concat FROM employee e;",
        "SELECT e.json_build_array FROM employee e;",
        "SELECT x.key, x.value FROM employee e, jsonb_each_text(e.to_jsonb) x WHERE x.key = 'ssn';",
        "SELECT e.concat::int FROM employee e;",
        "LISTEN leakch;\nSELECT pg_notify('leakch', e.concat) FROM employee e WHERE id = 1;",
        "BEGIN;\nUPDATE employee e SET name = e.record_out WHERE id = 1 RETURNING name;\nROLLBACK;",
        "BEGIN;\nINSERT INTO project SELECT 100 + e.id, e.record_out, 1 FROM employee e RETURNING name;\nROLLBACK;",
    ] {
        run.psql(&sql.replace('\n', " "), sql, RefuseOrMask, true);
    }
    run.psql(
        "rewrite: WHERE e.to_jsonb->>'dept' = '20'",
        "SELECT name FROM employee e WHERE e.to_jsonb->>'dept' = '20' ORDER BY 1;",
        Rewrite,
        true,
    );
    run.psql(
        "rewrite: WHERE e.to_jsonb @> '{\"dept\": 20}'",
        "SELECT name FROM employee e WHERE e.to_jsonb @> '{\"dept\": 20}' ORDER BY 1;",
        Rewrite,
        true,
    );
    run.ext(
        "crate: SELECT e.to_jsonb FROM employee e (binary jsonb)",
        RefuseOrMask,
        "SELECT e.to_jsonb FROM employee e",
    );
    run.raw(
        "raw no Describe binary: SELECT e.record_out FROM employee e",
        RefuseOrMask,
        true,
        &raw_batch(
            vec![wire::pbes("SELECT e.record_out FROM employee e", &[1])],
            1,
        ),
    );

    // --- TABLE employee as an arm of a set operation ---
    for sql in [
        "SELECT 0, '', 0, '' WHERE false UNION ALL TABLE employee;",
        "VALUES (0, '', 0, '') UNION ALL TABLE public.employee;",
        "SELECT 0, 'x', 0, 'y' UNION TABLE employee;",
        "CREATE TEMP TABLE tt (a int, b text, c int, d text);\n\
         INSERT INTO tt SELECT 0, '', 0, '' WHERE false UNION ALL TABLE employee;\n\
         SELECT upper(d) FROM tt;",
    ] {
        run.psql(&sql.replace('\n', " "), sql, RefuseOrMask, true);
    }
    run.ext(
        "crate: SELECT 0,'',0,'' WHERE false UNION ALL TABLE employee",
        RefuseOrMask,
        "SELECT 0, '', 0, '' WHERE false UNION ALL TABLE employee",
    );
    run.raw(
        "raw no Describe binary: VALUES (…) UNION ALL TABLE employee",
        RefuseOrMask,
        true,
        &raw_batch(
            vec![wire::pbes(
                "VALUES (0, '', 0, '') UNION ALL TABLE employee",
                &[1],
            )],
            1,
        ),
    );
    run.psql(
        "deny through TABLE in a set operation: … UNION ALL TABLE salaries",
        "SELECT 0, 0::numeric, '' WHERE false UNION ALL TABLE salaries;",
        Refuse,
        true,
    );

    // --- CREATE TABLE … AS EXECUTE under EXPLAIN ANALYZE (the plain form is refused) ---
    run.psql(
        "PREPARE p (ssn); CREATE TEMP TABLE t AS EXECUTE p (regression: refused)",
        "PREPARE p1 AS SELECT ssn FROM employee;\nCREATE TEMP TABLE t_c1 AS EXECUTE p1;\n\
         SELECT upper(ssn) FROM t_c1;",
        RefuseOrMask,
        true,
    );
    run.psql(
        "PREPARE p (ssn); EXPLAIN ANALYZE CREATE TEMP TABLE t AS EXECUTE p; SELECT upper(ssn) FROM t",
        "PREPARE p2 AS SELECT ssn FROM employee;\n\
         EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) CREATE TEMP TABLE t_c2 AS EXECUTE p2;\n\
         SELECT upper(ssn) FROM t_c2;",
        RefuseOrMask,
        true,
    );
    run.raw(
        "protocol Parse \"ps\" (ssn); Query EXPLAIN ANALYZE CREATE TEMP TABLE … AS EXECUTE ps",
        RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                wire::parse("ps", "SELECT ssn FROM employee", &[]),
                wire::sync(),
            ]);
            r.read_until(1);
            q(
                &mut r,
                "EXPLAIN ANALYZE CREATE TEMP TABLE t_c3 AS EXECUTE ps",
            );
            q(&mut r, "SELECT ssn || '' FROM t_c3");
            (r, Vec::new())
        },
    );

    // --- oracles through an output alias of ssn ---
    // ORDER BY an output alias orders by the hidden value: with two probe rows a client
    // inserts (rolled back), the answer tells whether a secret lies between them.
    let order_oracle = |t: &Target| -> (Raw, Vec<String>) {
        let mut r = Raw::login(t, &wire::default_params());
        q(&mut r, "BEGIN");
        q(
            &mut r,
            "INSERT INTO employee VALUES (900, 'probe-lo', 0, '931-77-4409'), \
             (901, 'probe-hi', 0, '931-77-4411')",
        );
        let got = q(
            &mut r,
            "SELECT name, ssn AS s FROM employee WHERE id IN (1, 900, 901) ORDER BY s",
        );
        q(&mut r, "ROLLBACK");
        let v = vec![if refused(&got) {
            "refused".to_owned()
        } else {
            first_column(&got).join(",")
        }];
        (r, v)
    };
    let (_, ctl) = order_oracle(&run.c.unix_target());
    let (_, got) = order_oracle(&run.c.tcp_target());
    eprintln!("  control ORDER BY alias: untracked order {:?}", ctl[0]);
    let leaked = (got[0] == "probe-lo,zz_dept20_alice,probe-hi").then(|| {
        "ordering oracle: probes 931-77-4409 < alice's ssn < 931-77-4411, so it is 931-77-4410 \
         (SELECT name, ssn AS s … ORDER BY s not refused)"
            .to_owned()
    });
    run.s.finding(
        "oracle: ORDER BY an output alias of ssn, between two probe rows",
        leaked,
        None,
    );
    // GROUP BY an output alias groups by the hidden value: a probe row with a guessed
    // ssn lands in the secret's group exactly when the guess is right.
    let group_oracle = |t: &Target, guess: &str| -> Option<bool> {
        let mut r = Raw::login(t, &wire::default_params());
        q(&mut r, "BEGIN");
        q(
            &mut r,
            &format!("INSERT INTO employee VALUES (900, 'probe', 0, '{guess}')"),
        );
        let got = q(
            &mut r,
            "SELECT count(*) AS n, ssn AS s FROM employee WHERE id IN (1, 900) GROUP BY s",
        );
        q(&mut r, "ROLLBACK");
        (!refused(&got)).then(|| first_column(&got).iter().any(|n| n == "2"))
    };
    let right = group_oracle(&run.c.tcp_target(), "931-77-4410");
    let wrong = group_oracle(&run.c.tcp_target(), "931-77-4411");
    eprintln!(
        "  control GROUP BY alias: untracked right guess groups together: {:?}",
        group_oracle(&run.c.unix_target(), "931-77-4410")
    );
    let leaked = (right == Some(true) && wrong == Some(false)).then(|| {
        "equality oracle: a probe with ssn 931-77-4410 shares alice's group, 931-77-4411 does not \
         (SELECT count(*), ssn AS s … GROUP BY s not refused)"
            .to_owned()
    });
    run.s.finding(
        "oracle: GROUP BY an output alias of ssn with a probe row",
        leaked,
        None,
    );

    // --- ordinary traffic the rules refuse or break (reported, not failed) ---
    for (label, sql) in [
        (
            "TABLE employee (the same as SELECT *, masked)",
            "TABLE employee",
        ),
        (
            "SELECT (ssn) FROM employee (a parenthesised plain column)",
            "SELECT (ssn) FROM employee",
        ),
        (
            "SELECT * FROM employee ORDER BY 1 (ordered by id)",
            "SELECT * FROM employee ORDER BY 1",
        ),
    ] {
        let mut r = Raw::login(&run.c.tcp_target(), &wire::default_params());
        let got = q(&mut r, sql);
        if refused(&got) {
            let why = got
                .iter()
                .filter_map(Msg::error)
                .map(|e| e.message)
                .next()
                .unwrap_or_default();
            run.s.note(label, &format!("refused: {}", tail(&why, 160)));
        } else {
            eprintln!("attack {label}: served");
        }
    }
    {
        let mut r = Raw::login(&run.c.tcp_target(), &wire::default_params());
        let got = q(&mut r, "SELECT repeat('x', 1100000) AS big");
        let rows = got.iter().filter(|m| m.tag == b'D').count();
        if rows == 0 {
            let err = got
                .iter()
                .filter_map(Msg::error)
                .map(|e| format!("{} {} {}", e.severity, e.code, e.message))
                .next()
                .unwrap_or_else(|| format!("eof={} [{}]", r.eof, summaries(&got)));
            run.s.note(
                "SELECT repeat('x', 1100000) (a 1.1 MB value, no protected table)",
                &format!("no row; {}", tail(&err, 200)),
            );
        } else {
            eprintln!("attack SELECT repeat('x', 1100000): served");
        }
    }
    run.admin("DELETE FROM project WHERE id > 3; UPDATE employee SET name = name;");
    run.finish();
}
