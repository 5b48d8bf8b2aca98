//! The policy against hostile spellings: every statement here either keeps the demo
//! rules' promise when forwarded or is refused; none passes unchanged with a leak.

use super::*;

fn demo() -> Policy {
    let mut learned = Learned::default();
    learned
        .derived
        .push(("emp_view".into(), Guarded::DerivedFrom("employee".into())));
    learned.derived.push(("pay_view".into(), Guarded::Deny));
    learned.functions.insert("leak".into());
    learned.functions.insert("dblink".into());
    learned.operators.insert("===".into());
    learned.columns.insert(
        "employee".into(),
        ["tableoid", "ctid", "xmin", "id", "name", "dept", "ssn"]
            .map(String::from)
            .into(),
    );
    Policy {
        deny: vec!["salaries".into()],
        drop: vec!["audit_log".into()],
        masked: vec![MaskedColumn {
            table: "employee".into(),
            column: "ssn".into(),
        }],
        rewrites: vec![PredicateRewrite {
            table: "employee".into(),
            column: "dept".into(),
            from: "20".into(),
            to: "21".into(),
        }],
        allowed_functions: vec!["allowed_fn".into()],
        learned: Some(Ok(learned)),
    }
}

fn judge(sql: &str) -> Verdict {
    demo().judge(sql, Some(true))
}

#[track_caller]
fn refused(sql: &str) {
    match judge(sql) {
        Verdict::Refuse(reason) => assert!(reason.starts_with("supervise:"), "{reason}"),
        other => panic!("{sql:?} should be refused, got {other:?}"),
    }
}

#[track_caller]
fn dropped(sql: &str) {
    assert!(
        matches!(judge(sql), Verdict::Drop(_)),
        "{sql:?} should drop the session, got {:?}",
        judge(sql)
    );
}

#[track_caller]
fn forwarded(sql: &str) {
    assert!(
        matches!(judge(sql), Verdict::Forward { .. }),
        "{sql:?} should be forwarded, got {:?}",
        judge(sql)
    );
}

#[test]
fn unicode_escapes_quoting_and_case_name_the_same_table() {
    for sql in [
        "SELECT * FROM salaries",
        "SELECT * FROM SaLaRiEs",
        "SELECT * FROM \"salaries\"",
        "SELECT * FROM public.\"salaries\"",
        "SELECT * FROM U&\"s\\0061laries\"",
        "SELECT * FROM u&\"!0073alaries\" UESCAPE '!'",
        "SELECT * FROM U&\"\\+000073alaries\"",
        "SELECT 1; SELECT * FROM/**/salaries",
        "SELECT * FROM /* /* nested */ */ salaries",
        "TABLE salaries",
    ] {
        refused(sql);
    }
    for sql in [
        "SELECT * FROM audit_log",
        "SELECT * FROM U&\"audit\\005flog\"",
        "DELETE FROM \"AUDIT_LOG\"",
        "DO $$BEGIN EXECUTE 'x'; END$$; SELECT 1 FROM audit_log",
    ] {
        dropped(sql);
    }
}

#[test]
fn strings_and_comments_do_not_hide_names_and_are_not_names() {
    forwarded("SELECT 'salaries', $$audit_log$$ -- salaries\n");
    forwarded("SELECT 1 /* FROM salaries */");
    refused("SELECT E'\\'' , (SELECT 1 FROM salaries)");
}

#[test]
fn code_the_supervisor_cannot_see_is_refused() {
    for sql in [
        "DO $$BEGIN RAISE NOTICE 'x'; END$$",
        "do language plpgsql 'begin end'",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "create procedure p() language sql as 'select 1'",
        "CREATE TRIGGER t AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION f()",
        "CREATE RULE r AS ON INSERT TO project DO ALSO NOTIFY x",
        "CREATE OPERATOR === (PROCEDURE = f, LEFTARG = int, RIGHTARG = int)",
        "CREATE CAST (int AS text) WITH FUNCTION f(int)",
        "CREATE EXTENSION dblink",
        "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw",
        "CREATE USER MAPPING FOR CURRENT_USER SERVER s",
        "IMPORT FOREIGN SCHEMA public FROM SERVER s INTO x",
        "ALTER FUNCTION f() SECURITY DEFINER",
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        "LOAD 'plpgsql'",
        "SELECT query_to_xml('select * from sal' || 'aries', true, false, '')",
        "SELECT pg_catalog.table_to_xml('salaries', true, false, '')",
        "SELECT cursor_to_xml('c', 1, true, false, '')",
        "SELECT * FROM ts_stat('select to_tsvector(ssn) from employee')",
        "SELECT pg_read_file('base/1/2')",
        "SELECT pg_read_binary_file('x')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_get(1234)",
        "SELECT leak()",
        "SELECT public.leak ()",
        "SELECT p.leak FROM project p",
        "SELECT * FROM dblink('dbname=postgres', 'select 1') AS t(x int)",
        "SELECT 1 === 1",
        "SELECT set_config('client_encoding', 'SJIS', false)",
        "SET client_encoding = 'SJIS'",
        "SET NAMES 'big5'",
        "COPY project TO PROGRAM 'cat'",
        "COPY project FROM PROGRAM 'cat'",
        "COPY project TO '/tmp/x'",
        "CREATE TABLE t AS EXECUTE p",
        "CREATE TEMP TABLE t AS EXECUTE p(1)",
        "SELECT * FROM pg_stats WHERE tablename = 'employee'",
        "SELECT stavalues1 FROM pg_catalog.pg_statistic",
    ] {
        refused(sql);
    }
    forwarded("SELECT allowed_fn()");
    forwarded("CREATE TABLE t (id int)");
    forwarded("CREATE USER bob");
    forwarded("SET client_encoding = 'UTF8'");
    forwarded("SET NAMES 'LATIN1'");
    forwarded("SELECT count(*), upper(name), now() FROM project");
    forwarded("SELECT current_setting('client_encoding')");
    forwarded("INSERT INTO project VALUES (1, 'x', 2) ON CONFLICT DO NOTHING");
}

#[test]
fn copy_out_of_protected_tables_is_refused_in_any_spelling() {
    for sql in [
        "COPY employee TO STDOUT",
        "/* x */ COPY employee TO STDOUT",
        "COPY employee(ssn)TO STDOUT",
        "copy (select ssn from employee) to stdout",
        "SELECT 1; COPY employee TO STDOUT",
        "COPY \"employee\" TO STDOUT WITH (FORMAT binary)",
        "COPY (SELECT * FROM employee WHERE dept = 20) TO STDOUT",
    ] {
        refused(sql);
    }
    refused("copy salaries to stdout");
    dropped("COPY audit_log TO STDOUT");
    forwarded("COPY project TO STDOUT");
    forwarded("COPY project FROM STDIN");
}

#[test]
fn derived_relations_and_changes_are_refused() {
    for sql in [
        "SELECT * FROM emp_view",
        "SELECT * FROM pay_view",
        "CREATE VIEW v AS SELECT * FROM employee",
        "CREATE VIEW v AS SELECT ssn FROM employee",
        "CREATE MATERIALIZED VIEW v AS SELECT * FROM employee",
        "CREATE TABLE t AS SELECT ssn FROM employee",
        "CREATE TABLE t AS SELECT id FROM employee",
        "SELECT ssn INTO t FROM employee",
        "INSERT INTO project SELECT id, ssn, 1 FROM employee",
        "UPDATE employee SET name = ssn",
        "ALTER TABLE employee RENAME COLUMN ssn TO s2",
        "ALTER TABLE employee RENAME TO e2",
        "ALTER TABLE salaries RENAME TO s2",
    ] {
        refused(sql);
    }
}

#[test]
fn masked_column_only_as_a_plain_result_column() {
    for sql in [
        "SELECT ssn FROM employee",
        "SELECT e.ssn AS x, name FROM employee e WHERE id = 1",
        "SELECT * FROM employee",
        "SELECT e.* FROM employee e ORDER BY name",
        "UPDATE employee SET ssn = 'x' WHERE id = 1 RETURNING ssn",
        "INSERT INTO employee (id, name, dept, ssn) VALUES (9, 'z', 22, '1')",
        "SELECT name FROM employee WHERE EXISTS (SELECT * FROM employee)",
        "SELECT count(*) FROM employee",
        "DECLARE c CURSOR FOR SELECT ssn FROM employee",
        "PREPARE p AS SELECT ssn FROM employee",
        "EXPLAIN SELECT ssn FROM employee",
    ] {
        assert!(
            matches!(judge(sql), Verdict::Forward { .. }),
            "{sql}: {:?}",
            judge(sql)
        );
    }
    for sql in [
        "SELECT ssn || '' FROM employee",
        "SELECT upper(ssn) FROM employee",
        "SELECT ssn::bytea FROM employee",
        "SELECT row_to_json(e) FROM employee e",
        "SELECT row_to_json(e.*) FROM employee e",
        "SELECT e FROM employee e",
        "SELECT e::text FROM employee e",
        "SELECT employee FROM employee",
        "SELECT (e).ssn FROM employee e",
        "SELECT string_agg(ssn, ',') FROM employee",
        "SELECT max(ssn) FROM employee",
        "SELECT json_agg(e) FROM employee e",
        "SELECT x FROM (SELECT ssn AS x FROM employee) s",
        "SELECT upper(x) FROM (SELECT * FROM employee) s(a, b, c, x)",
        "WITH c AS (SELECT ssn FROM employee) SELECT ssn FROM c",
        "SELECT 1 FROM employee WHERE ssn::int = 0",
        "SELECT * FROM employee WHERE ssn LIKE '931-77%'",
        "SELECT name FROM employee ORDER BY ssn",
        "SELECT ssn, name FROM employee ORDER BY 1",
        "SELECT name FROM project UNION ALL SELECT ssn FROM employee",
        "SELECT * FROM employee UNION SELECT * FROM employee",
        "SELECT (SELECT ssn FROM employee LIMIT 1)",
        "SELECT name FROM employee JOIN project USING (ssn)",
        "SELECT * FROM employee NATURAL JOIN project",
        "SELECT DISTINCT ON (ssn) name FROM employee",
        "SELECT U&\"\\0073sn\" || '' FROM employee",
        "UPDATE employee SET name = 'x' WHERE ssn = '1'",
        "SELECT x FROM (TABLE employee) s(a, b, c, x)",
    ] {
        refused(sql);
    }
}

#[test]
fn statements_no_rule_concerns_pass_unparsed() {
    for sql in [
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "BEGIN",
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(employee)$' COLLATE pg_catalog.default",
        "LISTEN x; NOTIFY x, 'payload'",
        "SELECT * FROM project WHERE dept = 20",
    ] {
        forwarded(sql);
    }
}

#[test]
fn unreadable_text_and_failed_learning_fail_closed() {
    refused("SELECT 'unterminated FROM salaries");
    let mut policy = demo();
    policy.learned = Some(Err(
        "57014 canceling statement due to statement timeout".into()
    ));
    for sql in ["SELECT ssn FROM employee", "SELECT leak()", "SELECT 1"] {
        assert!(
            matches!(policy.judge(sql, Some(true)), Verdict::Refuse(_)),
            "{sql}"
        );
    }
    for sql in [
        "BEGIN",
        "COMMIT",
        "SET application_name = 'x'",
        "SHOW search_path",
    ] {
        assert!(
            matches!(policy.judge(sql, Some(true)), Verdict::Forward { .. }),
            "{sql}"
        );
    }
}

#[test]
fn a_changing_strings_setting_needs_both_readings_to_agree() {
    let policy = demo();
    // Under standard_conforming_strings = off the backslash escapes the quote and
    // `salaries` is inside the string; under on it is a name. Either way the text is
    // refused while the setting is uncertain.
    let sql = "SELECT 'a\\', (SELECT 1 FROM salaries) , '";
    assert!(matches!(policy.judge(sql, None), Verdict::Refuse(_)));
    assert!(matches!(
        policy.judge("SELECT 1", None),
        Verdict::Forward { .. }
    ));
    // Known off: the name the server sees is found.
    let sql = "SELECT 'a\\' , ' , (SELECT 1 FROM salaries), ''''";
    assert!(matches!(policy.judge(sql, Some(false)), Verdict::Refuse(_)));
}

#[test]
fn no_rules_no_judgement() {
    let policy = Policy::default();
    assert!(matches!(
        policy.judge(
            "DO $$ $$; SELECT query_to_xml('x', true, true, '')",
            Some(true)
        ),
        Verdict::Forward { .. }
    ));
}

#[test]
fn red_team_findings_are_refused() {
    for sql in [
        // Attribute notation: a function of the whole row.
        "SELECT e.to_jsonb FROM employee e",
        "SELECT employee.row_to_json FROM employee",
        "SELECT public.employee.to_json FROM public.employee",
        "SELECT e.concat::int FROM employee e",
        "SELECT name FROM employee e WHERE e.to_jsonb->>'dept' = '20'",
        "UPDATE employee e SET name = e.record_out WHERE id = 1 RETURNING name",
        // TABLE as an arm of a set operation: result columns without a table.
        "SELECT 0, '', 0, '' WHERE false UNION ALL TABLE employee",
        "VALUES (0, '', 0, '') UNION TABLE employee",
        "INSERT INTO project SELECT 1, '', 1 UNION ALL TABLE employee",
        // Output names of the masked column used again: oracles.
        "SELECT name, ssn AS s FROM employee ORDER BY s",
        "SELECT count(*), ssn AS s FROM employee GROUP BY s",
        "SELECT DISTINCT ON (s) ssn AS s FROM employee",
        // CREATE … AS EXECUTE inside EXPLAIN.
        "EXPLAIN ANALYZE CREATE TEMP TABLE t AS EXECUTE p",
    ] {
        refused(sql);
    }
    forwarded("SELECT e.id, e.name, e.ssn, e.ctid FROM employee e");
    forwarded("SELECT p.name FROM project p JOIN employee e ON e.id = p.id");
    forwarded("SELECT ssn AS s, name FROM employee ORDER BY name");
}

#[test]
fn with_standard_strings_off_a_backslash_in_a_plain_string_is_refused() {
    let policy = demo();
    // Off: the server reads 'a\' AS q, ' as one string and `upper(ssn)` as code;
    // the parser would read three strings.
    let sql = "SELECT 'a\\' AS q, ' || upper(ssn) || ', ' FROM employee -- '";
    assert!(matches!(policy.judge(sql, Some(false)), Verdict::Refuse(_)));
    assert!(matches!(policy.judge(sql, None), Verdict::Refuse(_)));
    // E'…' strings mean the same under both settings.
    let sql = "SELECT name FROM employee WHERE name = E'a\\\\b'";
    assert!(matches!(
        policy.judge(sql, Some(false)),
        Verdict::Forward { .. }
    ));
}

fn without_operators() -> Policy {
    let mut policy = demo();
    if let Some(Ok(learned)) = &mut policy.learned {
        learned.operators.clear();
    }
    policy
}

/// The no-lexing fast path never lets through what the full judgement would not.
#[test]
fn the_fast_path_agrees_with_the_full_judgement() {
    // A user-defined operator that can run SQL turns the fast path off (operators are
    // not words); without one it serves plain text.
    assert!(!demo().is_plainly_unconcerned("SELECT 1", Some(true)));
    let policy = without_operators();
    let plain = [
        "SELECT abalance FROM pgbench_accounts WHERE aid = 123",
        "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 7",
        "BEGIN",
        "SELECT 1 -- a comment naming nothing",
    ];
    for sql in plain {
        assert!(policy.is_plainly_unconcerned(sql, Some(true)), "{sql}");
        assert!(
            matches!(policy.judge(sql, Some(true)), Verdict::Forward { .. }),
            "{sql}"
        );
    }
    for sql in [
        "SELECT * FROM salaries",
        "SELECT * FROM SALARIES",
        "SELECT * FROM emp_view",
        "SELECT leak()",
        "SELECT query_to_xml(1)",
        "SELECT * FROM pg_stats",
        "DO x",
        "COPY project FROM STDIN",
        "SELECT * FROM \"salaries\"",
        "SELECT * FROM U&\"s\\0061laries\"",
        "SELECT 'salaries'",
        "SELECT $1",
        "EXECUTE p",
        "SET client_encoding = x",
        "SELECT e.ssn FROM employee e",
    ] {
        assert!(!policy.is_plainly_unconcerned(sql, Some(true)), "{sql}");
    }
    assert!(!policy.is_plainly_unconcerned("SELECT 1", None));
    let mut failed = demo();
    failed.learned = Some(Err("x".into()));
    assert!(!failed.is_plainly_unconcerned("SELECT 1", Some(true)));
}

proptest::proptest! {
    /// Whatever the text, the fast path only says "unconcerned" where the full
    /// judgement forwards the text unchanged.
    #[test]
    fn the_fast_path_is_never_more_lenient(
        words in proptest::collection::vec(
            proptest::sample::select(vec![
                "select", "from", "where", "salaries", "audit_log", "employee", "ssn",
                "emp_view", "leak", "(", ")", ",", ";", "=", "1", "do", "copy", "to",
                "stdout", "pg_stats", "query_to_xml", "x", "/*", "*/", "--", "\n",
                "create", "view", "as", "execute", "e.", "*",
            ]),
            0..12,
        )
    ) {
        let sql = words.join(" ");
        let policy = without_operators();
        if policy.is_plainly_unconcerned(&sql, Some(true)) {
            let verdict = policy.judge(&sql, Some(true));
            proptest::prop_assert!(
                matches!(verdict, Verdict::Forward { ref masked_tables } if masked_tables.is_empty()),
                "{sql}: {verdict:?}"
            );
        }
    }
}
