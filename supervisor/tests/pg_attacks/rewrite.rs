//! 7. Rewrite bypasses.

use crate::contract::*;
use crate::pgcluster::wire;
use crate::pgcluster::*;
use crate::runners::*;

/// Predicates equal in value to `dept = 20`: never department 20's names.
#[test]
fn rewrite_bypasses() {
    let _serial = serial();
    let mut run = Run::start(
        "rewrite_bypasses",
        attack_options(
            "CREATE FUNCTION twenty() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 20';",
        ),
    );
    let preds = [
        "dept = 020",
        "dept = '20'",
        "dept = 20.0",
        "dept = 2e1",
        "dept = 20.00",
        "dept = '0020'",
        "dept = ' 20'",
        "dept = +20",
        "dept IN (20)",
        "dept IN (20, 20)",
        "dept BETWEEN 20 AND 20",
        "dept = 10+10",
        "dept = 2*10",
        "dept = '20'::int",
        "dept = CAST(20 AS int)",
        "dept = 20::int8",
        "dept = abs(-20)",
        "dept = (SELECT 20)",
        "dept = ANY('{20}')",
        "dept = ANY(ARRAY[20])",
        "dept IN (SELECT 20)",
        "20 = dept",
        "(dept) = 20",
        "dept >= 20 AND dept <= 20",
        "dept > 19 AND dept < 21",
        "NOT dept <> 20",
        "NOT (dept <> 20)",
        "dept IS NOT DISTINCT FROM 20",
        "dept::text = '20'",
        "dept + 0 = 20",
        "dept - 20 = 0",
        "employee.dept = 20",
        "public.employee.dept = 20",
        "\"dept\" = 20",
        "DEPT = 20",
        "dept = /* c */ 20",
        "dept = 20 OR false",
        "(dept, 1) = (20, 1)",
        "dept = length(repeat('x', 20))",
        "dept = twenty()",
        "dept = current_setting('my.dept')::int",
        "dept OPERATOR(pg_catalog.=) 20",
        "pg_catalog.int4eq(dept, 20)",
    ];
    for p in preds {
        let script =
            format!("SET my.dept = '20';\nSELECT name FROM employee WHERE {p} ORDER BY 1;");
        run.psql(&format!("WHERE {p}"), &script, Expect::Rewrite, Ctl::Plain);
    }
    for (label, sql) in [
        (
            "subquery: FROM (SELECT * FROM employee) s WHERE dept = 20",
            "SELECT name FROM (SELECT * FROM employee) s WHERE dept = 20;",
        ),
        (
            "CTE: WITH e AS (SELECT * FROM employee) … WHERE dept = 20",
            "WITH e AS (SELECT * FROM employee) SELECT name FROM e WHERE dept = 20;",
        ),
        (
            "JOIN (VALUES (20)) v(d) ON e.dept = v.d",
            "SELECT e.name FROM employee e JOIN (VALUES (20)) v(d) ON e.dept = v.d;",
        ),
        (
            "SQL PREPARE p(int) … dept = $1; EXECUTE p(20)",
            "PREPARE p(int) AS SELECT name FROM employee WHERE dept = $1;\nEXECUTE p(20);\nDEALLOCATE p;",
        ),
        (
            "SQL PREPARE p2 … dept = $1::int; EXECUTE p2('20')",
            "PREPARE p2 AS SELECT name FROM employee WHERE dept = $1::int;\nEXECUTE p2('20');\nDEALLOCATE p2;",
        ),
        (
            "SQL PREPARE without predicate literal, EXECUTE with 10+10",
            "PREPARE p3(int) AS SELECT name FROM employee WHERE dept = $1;\nEXECUTE p3(10+10);\nDEALLOCATE p3;",
        ),
        (
            "DO block reading dept 20 into a NOTICE",
            "DO $$DECLARE r text; BEGIN SELECT string_agg(name, ',') INTO r FROM employee WHERE dept = 20; \
             RAISE NOTICE 'n=%', r; END$$;",
        ),
        (
            "rewrite in a cursor: DECLARE … WHERE dept = 020; FETCH",
            "BEGIN;\nDECLARE c CURSOR FOR SELECT name FROM employee WHERE dept = 020;\nFETCH ALL FROM c;\nCOMMIT;",
        ),
    ] {
        run.psql(label, sql, Expect::Rewrite, Ctl::Plain);
    }

    // $1 bound to 20 through the protocol (raw client): text and binary, int4 and int8.
    use wire::{bind, execute, parse, sync};
    let sql = "SELECT name FROM employee WHERE dept = $1 ORDER BY 1";
    let twenty4 = 20i32.to_be_bytes();
    let twenty8 = 20i64.to_be_bytes();
    // (label, Parse parameter types, Bind parameter format, value)
    type BindCase = (&'static str, Vec<u32>, Vec<i16>, Vec<u8>);
    let cases: Vec<BindCase> = vec![
        (
            "raw Bind $1 text '20' (type unspecified)",
            vec![],
            vec![0],
            b"20".to_vec(),
        ),
        (
            "raw Bind $1 text '020' (int4)",
            vec![23],
            vec![0],
            b"020".to_vec(),
        ),
        (
            "raw Bind $1 text ' 20' (int4)",
            vec![23],
            vec![0],
            b" 20".to_vec(),
        ),
        (
            "raw Bind $1 binary int4 20",
            vec![23],
            vec![1],
            twenty4.to_vec(),
        ),
        (
            "raw Bind $1 binary int8 20",
            vec![20],
            vec![1],
            twenty8.to_vec(),
        ),
    ];
    for (label, types, fmts, value) in cases {
        let msgs = vec![
            parse("", sql, &types),
            bind("", "", &fmts, &[Some(&value)], &[0]),
            execute("", 0),
            sync(),
        ];
        run.raw(label, Expect::Rewrite, true, &raw_batch(msgs, 1));
    }
    run.raw(
        "raw named statement bound to 21 then 20",
        Expect::Rewrite,
        true,
        &raw_batch(
            vec![
                parse("d", sql, &[23]),
                bind("a", "d", &[0], &[Some(b"21")], &[0]),
                execute("a", 0),
                bind("b", "d", &[1], &[Some(&twenty4)], &[0]),
                execute("b", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "raw dept = 020 through Parse, binary result",
        Expect::Rewrite,
        true,
        &raw_batch(
            vec![wire::pbes(
                "SELECT name FROM employee WHERE dept = 020",
                &[1],
            )],
            1,
        ),
    );

    // The crate: parameters are always bound in binary.
    run.ext("crate $1 = 20i32", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1 ORDER BY 1",
            &[&20i32],
        );
    });
    run.ext("crate $1::int8 = 20i64", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1::int8 ORDER BY 1",
            &[&20i64],
        );
    });
    run.ext("crate dept = ANY($1) with [20]", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = ANY($1) ORDER BY 1",
            &[&vec![20i32]],
        );
    });
    run.ext("crate $1::text::int with '20'", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1::text::int ORDER BY 1",
            &[&"20"],
        );
    });
    run.ext("crate dept = 2e1 (no parameter)", Expect::Rewrite, |x| {
        x.query("SELECT name FROM employee WHERE dept = 2e1", &[]);
    });
    run.finish();
}
