//! 8. Derived expressions: expressions over the masked column.

use crate::contract::*;
use crate::pgcluster::wire;
use crate::pgcluster::*;
use crate::runners::*;

/// Expressions over the masked column, whole-row references, aggregates, casts,
/// unions, oracles (psql, crate, raw).
#[test]
fn expressions_over_the_masked_column() {
    let _serial = serial();
    let mut run = Run::start("expressions_over_the_masked_column", attack_options(""));
    for sql in [
        "SELECT ssn || '' FROM employee",
        "SELECT upper(ssn) FROM employee",
        "SELECT lower(ssn) FROM employee",
        "SELECT pg_catalog.upper(ssn) FROM employee",
        "SELECT pg_catalog.textin(pg_catalog.textout(ssn)) FROM employee",
        "SELECT reverse(ssn) FROM employee",
        "SELECT ssn::bytea FROM employee",
        "SELECT encode(ssn::bytea, 'base64') FROM employee",
        "SELECT encode(ssn::bytea, 'hex') FROM employee",
        "SELECT replace(ssn, '-', '') FROM employee",
        "SELECT sha256(ssn::bytea) FROM employee",
        "SELECT row_to_json(e) FROM employee e",
        "SELECT to_jsonb(e) FROM employee e",
        "SELECT e FROM employee e",
        "SELECT e::text FROM employee e",
        "SELECT (e).ssn FROM employee e",
        "SELECT (e.*)::text FROM employee e",
        "SELECT ROW(e.ssn) FROM employee e",
        "SELECT string_agg(ssn, ',') FROM employee",
        "SELECT max(ssn) FROM employee",
        "SELECT min(ssn) FROM employee",
        "SELECT json_agg(ssn) FROM employee",
        "SELECT json_agg(e) FROM employee e",
        "SELECT array_agg(ssn) FROM employee",
        "SELECT ARRAY[ssn] FROM employee",
        "SELECT jsonb_build_object('s', ssn) FROM employee",
        "SELECT xmlelement(name x, ssn) FROM employee",
        "SELECT format('%s', ssn) FROM employee",
        "SELECT concat(ssn) FROM employee",
        "SELECT coalesce(ssn, '') FROM employee",
        "SELECT CASE WHEN true THEN ssn END FROM employee",
        "SELECT (SELECT ssn) FROM employee",
        "SELECT ssn COLLATE \"C\" FROM employee",
        "SELECT ssn::varchar(20) FROM employee",
        "SELECT substring(ssn from 1) FROM employee",
        "SELECT x FROM (SELECT ssn AS x FROM employee) s",
        "SELECT * FROM (SELECT ssn FROM employee) s(x)",
        "SELECT name FROM project UNION ALL SELECT ssn FROM employee",
        "SELECT ssn FROM employee UNION SELECT 'x'",
        "SELECT v.*, s.* FROM (VALUES (1)) v, LATERAL (SELECT ssn FROM employee) s",
        "SELECT 1 FROM employee WHERE ssn::int = 0",
        "SELECT ssn::int FROM employee",
        "SELECT ssn::date FROM employee",
        "SELECT ssn::regclass FROM employee",
        "SELECT ssn::json FROM employee",
        "SELECT DISTINCT ssn FROM employee",
        "SELECT e.* FROM employee e",
    ] {
        run.psql(sql, &format!("{sql};"), Expect::RefuseOrMask, Ctl::Plain);
    }
    run.psql(
        "ALTER COLUMN ssn TYPE bytea USING ssn::bytea; SELECT ssn (rolled back)",
        "BEGIN;\nALTER TABLE employee ALTER COLUMN ssn TYPE bytea USING ssn::bytea;\n\
         SELECT ssn FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    // RETURNING (rolled back).
    for (label, sql) in [
        (
            "UPDATE … RETURNING ssn",
            "BEGIN;\nUPDATE employee SET dept = dept WHERE id = 1 RETURNING ssn;\nROLLBACK;",
        ),
        (
            "UPDATE … RETURNING ssn || ''",
            "BEGIN;\nUPDATE employee SET dept = dept RETURNING ssn || '';\nROLLBACK;",
        ),
        (
            "DELETE … RETURNING *",
            "BEGIN;\nDELETE FROM employee WHERE id = 2 RETURNING *;\nROLLBACK;",
        ),
        (
            "INSERT INTO project SELECT … ssn … RETURNING name",
            "BEGIN;\nINSERT INTO project SELECT 100 + id, ssn, 1 FROM employee WHERE ssn IS NOT NULL RETURNING name;\nROLLBACK;",
        ),
    ] {
        run.psql(label, sql, Expect::RefuseOrMask, Ctl::Plain);
    }
    run.psql_in_tx(
        "SELECT upper(ssn) FROM employee",
        "SELECT upper(ssn) FROM employee;",
        Expect::RefuseOrMask,
    );
    // Oracles: the answer depends on the secret (the marker appears only on a match).
    for (label, sql, marker) in [
        (
            "oracle: WHERE ssn LIKE '931-77%'",
            "SELECT name FROM employee WHERE ssn LIKE '931-77%';",
            "zz_dept20_alice",
        ),
        (
            "oracle: WHERE ssn = '931-77-' || '4410'",
            "SELECT 'oracle' || '-hit' FROM employee WHERE ssn = '931-77-' || '4410';",
            "oracle-hit",
        ),
        (
            "oracle: WHERE substr(ssn, 1, 6) = '931-88'",
            "SELECT 'oracle' || '-sub' FROM employee WHERE substr(ssn, 1, 6) = '931-88';",
            "oracle-sub",
        ),
    ] {
        run.psql(label, sql, Expect::Oracle(marker), Ctl::Plain);
    }

    // The crate: extended protocol, binary formats.
    for sql in [
        "SELECT ssn || '' FROM employee",
        "SELECT upper(ssn) FROM employee",
        "SELECT e FROM employee e",
        "SELECT row_to_json(e) FROM employee e",
        "SELECT ssn::bytea FROM employee",
        "SELECT array_agg(ssn) FROM employee",
        "SELECT string_agg(ssn, ',') FROM employee",
        "SELECT x FROM (SELECT ssn AS x FROM employee) s",
        "SELECT name FROM project UNION ALL SELECT ssn FROM employee",
        "SELECT jsonb_agg(e) FROM employee e",
    ] {
        run.ext(&format!("crate: {sql}"), Expect::RefuseOrMask, move |x| {
            x.query(sql, &[]);
        });
    }
    run.ext(
        "crate oracle: WHERE ssn = $1 with '931-77-4410'",
        Expect::Oracle("oracle-param"),
        |x| {
            let guess = format!("931-77-{}", 4410);
            x.query(
                "SELECT 'oracle' || '-param' FROM employee WHERE ssn = $1",
                &[&guess],
            );
        },
    );
    run.ext(
        "crate: simple_query SELECT e::text FROM employee e",
        Expect::RefuseOrMask,
        |x| {
            x.simple("SELECT e::text FROM employee e");
        },
    );
    // Raw client: no Describe, binary record and bytea.
    for sql in [
        "SELECT e FROM employee e",
        "SELECT ssn::bytea FROM employee",
        "SELECT ARRAY[ssn] FROM employee",
    ] {
        run.raw(
            &format!("raw binary no Describe: {sql}"),
            Expect::RefuseOrMask,
            true,
            &raw_batch(vec![wire::pbes(sql, &[1])], 1),
        );
    }
    run.finish();
}
