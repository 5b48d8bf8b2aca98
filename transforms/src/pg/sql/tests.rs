//! Tests of SQL analysis and rewriting.
use super::*;
use proptest::prelude::*;

fn rule(table: &str, column: &str, from: &str, to: &str) -> PredicateRewrite {
    PredicateRewrite {
        table: table.into(),
        column: column.into(),
        from: from.into(),
        to: to.into(),
    }
}

fn dept() -> Vec<PredicateRewrite> {
    vec![rule("employee", "dept", "20", "21")]
}

/// (input, expected output; `None` = unchanged) under `employee.dept 20 → 21`.
const DEPT_CASES: &[(&str, Option<&str>)] = &[
    // The basic case, spellings and operand order.
    (
        "SELECT * FROM employee WHERE dept = 20",
        Some("SELECT * FROM employee WHERE dept = 21"),
    ),
    (
        "select * from employee where dept=20",
        Some("select * from employee where dept=21"),
    ),
    (
        "SELECT * FROM EMPLOYEE WHERE DEPT = 20",
        Some("SELECT * FROM EMPLOYEE WHERE DEPT = 21"),
    ),
    (
        "SELECT * FROM \"employee\" WHERE \"dept\" = 20",
        Some("SELECT * FROM \"employee\" WHERE \"dept\" = 21"),
    ),
    (
        "SELECT * FROM employee WHERE 20 = dept",
        Some("SELECT * FROM employee WHERE 21 = dept"),
    ),
    (
        "SELECT * FROM employee WHERE (dept = 20)",
        Some("SELECT * FROM employee WHERE (dept = 21)"),
    ),
    (
        "SELECT dept = 20 AS is_20 FROM employee",
        Some("SELECT dept = 21 AS is_20 FROM employee"),
    ),
    (
        "SELECT * FROM employee WHERE dept = 20 OR dept = 20",
        Some("SELECT * FROM employee WHERE dept = 21 OR dept = 21"),
    ),
    // Schema-qualified tables, qualified columns, aliases.
    (
        "SELECT * FROM public.employee WHERE dept = 20",
        Some("SELECT * FROM public.employee WHERE dept = 21"),
    ),
    (
        "SELECT * FROM employee e WHERE e.dept = 20",
        Some("SELECT * FROM employee e WHERE e.dept = 21"),
    ),
    (
        "SELECT * FROM employee AS e WHERE 20 = e.dept",
        Some("SELECT * FROM employee AS e WHERE 21 = e.dept"),
    ),
    (
        "SELECT * FROM employee WHERE employee.dept = 20",
        Some("SELECT * FROM employee WHERE employee.dept = 21"),
    ),
    (
        "SELECT * FROM public.employee WHERE public.employee.dept = 20",
        Some("SELECT * FROM public.employee WHERE public.employee.dept = 21"),
    ),
    ("SELECT * FROM employee e WHERE x.dept = 20", None),
    (
        "SELECT * FROM ONLY employee WHERE dept = 20",
        Some("SELECT * FROM ONLY employee WHERE dept = 21"),
    ),
    (
        "UPDATE ONLY public.employee SET x = 1 WHERE dept = 20",
        Some("UPDATE ONLY public.employee SET x = 1 WHERE dept = 21"),
    ),
    // Another table aliased `employee` is not employee.
    ("SELECT * FROM other employee WHERE dept = 20", None),
    // Other values are not rewritten; equal values in other spellings and forms are
    // (these were left alone before, a leak; refusals and parameters are in
    // rewrite_tests.rs).
    ("SELECT * FROM employee WHERE dept = 200", None),
    ("SELECT * FROM employee WHERE dept = -20", None),
    ("SELECT * FROM employee WHERE other_col = 20", None),
    (
        "SELECT * FROM employee WHERE dept = 20.0",
        Some("SELECT * FROM employee WHERE dept = 21"),
    ),
    (
        "SELECT * FROM employee WHERE dept = '20'",
        Some("SELECT * FROM employee WHERE dept = 21"),
    ),
    (
        "SELECT * FROM employee WHERE dept <> 20",
        Some("SELECT * FROM employee WHERE dept <> 21"),
    ),
    (
        "SELECT * FROM employee WHERE dept IN (20, 30)",
        Some("SELECT * FROM employee WHERE dept IN (21, 30)"),
    ),
    (
        "SELECT * FROM employee WHERE dept = 20::int",
        Some("SELECT * FROM employee WHERE dept = 21::int"),
    ),
    (
        "SELECT * FROM employee WHERE (dept) = 20",
        Some("SELECT * FROM employee WHERE (dept) = 21"),
    ),
    // Statements not reading employee.
    ("SELECT * FROM other WHERE dept = 20", None),
    ("SELECT * FROM employees WHERE dept = 20", None),
    ("SELECT 20 = 20", None),
    ("INSERT INTO employee (dept) VALUES (20)", None),
    ("UPDATE employee SET dept = 20 WHERE id = 1", None),
    // Joins: an unqualified column may be employee's, so it counts as employee's
    // (fail closed; it was left alone before); qualified ones are not ambiguous.
    (
        "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id WHERE dept = 20",
        Some("SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id WHERE dept = 21"),
    ),
    (
        "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id \
         WHERE e.dept = 20 AND h.dept = 20",
        Some(
            "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id \
             WHERE e.dept = 21 AND h.dept = 20",
        ),
    ),
    (
        "SELECT * FROM employee, other o WHERE employee.dept = 20 AND o.dept = 20",
        Some("SELECT * FROM employee, other o WHERE employee.dept = 21 AND o.dept = 20"),
    ),
    (
        "SELECT * FROM employee e JOIN other o ON e.dept = 20",
        Some("SELECT * FROM employee e JOIN other o ON e.dept = 21"),
    ),
    (
        "SELECT * FROM (employee e JOIN other o ON true) WHERE e.dept = 20",
        Some("SELECT * FROM (employee e JOIN other o ON true) WHERE e.dept = 21"),
    ),
    (
        "SELECT * FROM employee, generate_series(1, 2) g WHERE dept = 20",
        Some("SELECT * FROM employee, generate_series(1, 2) g WHERE dept = 21"),
    ),
    // Subqueries, derived tables, CTEs, correlation. A derived table or CTE reading
    // employee passes its dept on: references to it count as employee's (before, the
    // outer comparisons were left alone, a leak).
    (
        "SELECT * FROM other WHERE id IN (SELECT id FROM employee WHERE dept = 20)",
        Some("SELECT * FROM other WHERE id IN (SELECT id FROM employee WHERE dept = 21)"),
    ),
    (
        "SELECT * FROM (SELECT * FROM employee WHERE dept = 20) AS s WHERE s.dept = 20",
        Some("SELECT * FROM (SELECT * FROM employee WHERE dept = 21) AS s WHERE s.dept = 21"),
    ),
    (
        "WITH e AS (SELECT * FROM employee WHERE dept = 20) SELECT * FROM e WHERE dept = 20",
        Some("WITH e AS (SELECT * FROM employee WHERE dept = 21) SELECT * FROM e WHERE dept = 21"),
    ),
    (
        "WITH employee AS (SELECT 20 AS dept) SELECT * FROM employee WHERE dept = 20",
        None,
    ),
    (
        "WITH x AS (SELECT 1) SELECT * FROM public.employee WHERE dept = 20",
        Some("WITH x AS (SELECT 1) SELECT * FROM public.employee WHERE dept = 21"),
    ),
    (
        "SELECT * FROM employee e WHERE EXISTS \
         (SELECT 1 FROM other o WHERE o.id = e.id AND e.dept = 20)",
        Some(
            "SELECT * FROM employee e WHERE EXISTS \
             (SELECT 1 FROM other o WHERE o.id = e.id AND e.dept = 21)",
        ),
    ),
    // Unqualified in a correlated subquery: other may lack dept, then it is e.dept.
    (
        "SELECT * FROM employee e WHERE EXISTS (SELECT 1 FROM other o WHERE dept = 20)",
        Some("SELECT * FROM employee e WHERE EXISTS (SELECT 1 FROM other o WHERE dept = 21)"),
    ),
    (
        "SELECT * FROM employee WHERE EXISTS (SELECT 1 WHERE dept = 20)",
        Some("SELECT * FROM employee WHERE EXISTS (SELECT 1 WHERE dept = 21)"),
    ),
    (
        "SELECT (SELECT max(x) FROM employee WHERE dept = 20) FROM other",
        Some("SELECT (SELECT max(x) FROM employee WHERE dept = 21) FROM other"),
    ),
    (
        "SELECT * FROM employee WHERE dept = 20 UNION SELECT * FROM other WHERE dept = 20",
        Some("SELECT * FROM employee WHERE dept = 21 UNION SELECT * FROM other WHERE dept = 20"),
    ),
    // UPDATE / DELETE / INSERT … SELECT.
    (
        "UPDATE employee SET salary = salary + 1 WHERE dept = 20",
        Some("UPDATE employee SET salary = salary + 1 WHERE dept = 21"),
    ),
    (
        "UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND dept = 20",
        Some("UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND dept = 21"),
    ),
    (
        "UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND e.dept = 20",
        Some("UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND e.dept = 21"),
    ),
    (
        "DELETE FROM employee WHERE dept = 20 RETURNING *",
        Some("DELETE FROM employee WHERE dept = 21 RETURNING *"),
    ),
    (
        "DELETE FROM employee USING other o WHERE employee.dept = 20",
        Some("DELETE FROM employee USING other o WHERE employee.dept = 21"),
    ),
    (
        "INSERT INTO archive SELECT * FROM employee WHERE dept = 20",
        Some("INSERT INTO archive SELECT * FROM employee WHERE dept = 21"),
    ),
    (
        "UPDATE other SET x = 1 WHERE id IN (SELECT id FROM employee WHERE dept = 20)",
        Some("UPDATE other SET x = 1 WHERE id IN (SELECT id FROM employee WHERE dept = 21)"),
    ),
    // Several statements: only the one reading employee changes.
    (
        "SELECT 1; SELECT * FROM employee WHERE dept = 20; SELECT * FROM other WHERE dept = 20;",
        Some(
            "SELECT 1; SELECT * FROM employee WHERE dept = 21; \
             SELECT * FROM other WHERE dept = 20;",
        ),
    ),
    // Everything but the literal is kept byte for byte.
    (
        "/* lead */ SELECT  *\n\tFROM employee -- the table\n WHERE dept =\n 20 -- c\n;",
        Some("/* lead */ SELECT  *\n\tFROM employee -- the table\n WHERE dept =\n 21 -- c\n;"),
    ),
    (
        "SELECT 'ä€😀' AS x, * FROM employee\r\nWHERE ü = 'ß' AND dept = 20",
        Some("SELECT 'ä€😀' AS x, * FROM employee\r\nWHERE ü = 'ß' AND dept = 21"),
    ),
    ("/* comment */ SELECT * FROM other -- dept = 20\n", None),
    (
        "SELECT * FROM employee WHERE name = 'dept = 20' -- dept = 20",
        None,
    ),
    // Statements beside a DO block are rewritten (a DO block naming employee is
    // refused: rewrite_tests.rs).
    (
        "DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM employee WHERE dept = 20",
        Some("DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM employee WHERE dept = 21"),
    ),
    // Empty input.
    ("", None),
    (";", None),
];

#[test]
fn dept_rewrites() {
    for (sql, expected) in DEPT_CASES {
        let got = rewrite(sql, &dept()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got.as_deref(), *expected, "{sql}");
    }
}

#[test]
fn literal_kinds() {
    // (rule from, rule to, input, expected)
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("'bob'", "'alice'", "name = 'bob'", Some("name = 'alice'")),
        ("'bob'", "'alice'", "name = E'bob'", Some("name = 'alice'")),
        ("'bob'", "'alice'", "name = $$bob$$", Some("name = 'alice'")),
        (
            "'bob'",
            "'alice'",
            "name = $t$bob$t$",
            Some("name = 'alice'"),
        ),
        ("'bob'", "'alice'", "name = 'Bob'", None),
        ("'bob'", "'alice'", "name = bob", None),
        ("'it''s'", "'its'", "name = 'it''s'", Some("name = 'its'")),
        ("'it''s'", "'its'", "name = E'it\\'s'", Some("name = 'its'")),
        ("'20'", "'21'", "name = '20'", Some("name = '21'")),
        // The string '20' is the number 20 in a numeric column (left alone before).
        ("'20'", "'21'", "name = 20", Some("name = '21'")),
        ("-1", "0", "name = -1", Some("name = 0")),
        ("-1", "0", "name = - 1", Some("name = 0")),
        ("-1", "0", "name = 1", None),
        ("-1", "0", "-1 = name", Some("0 = name")),
        ("20", "-5", "name=20", Some("name=-5")),
        ("20", "-5", "20=name", Some("-5=name")),
        ("20", "-5", "true AND(20=name)", Some("true AND(-5=name)")),
        ("20", "'x'", "name = 20", Some("name = 'x'")),
        // A replacement never glues onto its neighbours.
        ("'20'", "21", "name='20'AND true", Some("name=21 AND true")),
        ("  20 ", " 21  ", "name = 20", Some("name = 21")),
    ];
    for (from, to, predicate, expected) in cases {
        let sql = format!("SELECT * FROM t WHERE {predicate}");
        let got = rewrite(&sql, &[rule("t", "name", from, to)])
            .unwrap_or_else(|e| panic!("{from} → {to} on {sql}: {e}"));
        let expected = expected.map(|p| format!("SELECT * FROM t WHERE {p}"));
        assert_eq!(got, expected, "{from} → {to} on {sql}");
    }
}

#[test]
fn rewrite_rules_must_be_literals() {
    for (from, to) in [
        ("20", "21 OR 1=1"),
        ("20", "21 -- rest"),
        ("20", "21 /* c */"),
        ("20", "21; DROP TABLE x"),
        ("20", "$1"),
        ("20", ""),
        ("20", "dept"),
        ("20", "(21)"),
        ("dept", "21"),
        ("'unterminated", "21"),
        ("20 20", "21"),
    ] {
        let r = rule("employee", "dept", from, to);
        let err = r.validate().unwrap_err();
        assert!(matches!(err, SqlError::NotALiteral { .. }), "{from} → {to}");
        assert_eq!(rewrite("SELECT 1", &[r]), Err(err));
    }
    for (from, to) in [
        ("20", "21"),
        ("'a'", "'b'"),
        ("-1", "E'x'"),
        ("1.5", "$$y$$"),
    ] {
        assert_eq!(rule("t", "c", from, to).validate(), Ok(()), "{from} → {to}");
    }
}

#[test]
fn several_rules() {
    let rules = [
        rule("employee", "dept", "20", "21"),
        rule("employee", "dept", "20", "99"),
        rule("employee", "dept", "21", "22"),
        rule("Public.Project", "Owner", "'a'", "'b'"),
    ];
    let sql = "SELECT * FROM employee WHERE dept = 20 OR dept = 21; \
               SELECT * FROM project WHERE owner = 'a' AND dept = 20";
    assert_eq!(
        rewrite(sql, &rules).unwrap().as_deref(),
        Some(
            "SELECT * FROM employee WHERE dept = 21 OR dept = 22; \
             SELECT * FROM project WHERE owner = 'b' AND dept = 20"
        )
    );
    assert_eq!(rewrite(sql, &[]), Ok(None));
}

#[test]
fn parsed_once_answers_everything() {
    let sql = "SELECT * FROM employee e JOIN salaries s ON s.id = e.id WHERE e.dept = 20";
    let parsed = ParsedSql::parse(sql).unwrap();
    assert_eq!(parsed.sql(), sql);
    assert_eq!(
        parsed.tables_touched(),
        Ok(vec!["employee".into(), "salaries".into()])
    );
    assert_eq!(parsed.touches_any(&["audit_log".into()]), Ok(false));
    assert_eq!(parsed.touches_any(&["salaries".into()]), Ok(true));
    assert_eq!(parsed.touches_any(&[]), Ok(false));
    assert_eq!(parsed.rewrite(&dept()), rewrite(sql, &dept()));
    assert_eq!(parsed.rewrite(&[]), Ok(None));
    assert!(parsed.rewrite(&[rule("t", "c", "x", "1")]).is_err());
}

/// (input, tables touched in order)
const TABLE_CASES: &[(&str, &[&str])] = &[
    ("SELECT * FROM employee", &["employee"]),
    ("SELECT * FROM public.Employee", &["employee"]),
    ("select * from \"Salaries\"", &["salaries"]),
    ("select * from salaries", &["salaries"]),
    ("SELECT * FROM ONLY salaries FOR UPDATE", &["salaries"]),
    (
        "SELECT * FROM ONLY public.salaries s, ONLY b JOIN ONLY c ON true",
        &["salaries", "b", "c"],
    ),
    (
        "UPDATE ONLY a SET x = 1; DELETE FROM ONLY b; LOCK ONLY c",
        &["a", "b", "c"],
    ),
    ("SELECT * FROM a FETCH FIRST 1 ROWS ONLY", &["a"]),
    (
        "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c.d USING (id)",
        &["a", "b", "d"],
    ),
    (
        "SELECT * FROM a WHERE id IN (SELECT id FROM b WHERE x = (SELECT 1 FROM c))",
        &["a", "b", "c"],
    ),
    ("SELECT * FROM (SELECT * FROM inner_t) AS s", &["inner_t"]),
    (
        "WITH w AS (SELECT * FROM base) SELECT * FROM w JOIN other ON true",
        &["base", "w", "other"],
    ),
    (
        "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r",
        &["r"],
    ),
    (
        "SELECT 1 FROM a UNION SELECT 1 FROM b EXCEPT SELECT 1 FROM c",
        &["a", "b", "c"],
    ),
    ("SELECT * FROM generate_series(1, 3)", &["generate_series"]),
    ("SELECT * FROM a, LATERAL (SELECT * FROM b) x", &["a", "b"]),
    ("INSERT INTO a SELECT * FROM b", &["a", "b"]),
    (
        "INSERT INTO s.a (x) VALUES (1) ON CONFLICT (x) DO NOTHING",
        &["a"],
    ),
    (
        "UPDATE a SET x = (SELECT 1 FROM b) FROM c WHERE a.id = c.id",
        &["a", "b", "c"],
    ),
    (
        "DELETE FROM a USING b WHERE a.id = b.id RETURNING *",
        &["a", "b"],
    ),
    (
        "MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE",
        &["a", "b"],
    ),
    ("COPY salaries TO STDOUT", &["salaries"]),
    ("COPY public.salaries (a, b) FROM STDIN", &["salaries"]),
    ("COPY (SELECT * FROM salaries) TO STDOUT", &["salaries"]),
    ("TRUNCATE a, s.b", &["a", "b"]),
    ("TRUNCATE TABLE ONLY a RESTART IDENTITY CASCADE", &["a"]),
    ("DROP TABLE IF EXISTS x.salaries, y", &["salaries", "y"]),
    (
        "LOCK TABLE salaries IN ACCESS EXCLUSIVE MODE",
        &["salaries"],
    ),
    ("EXPLAIN ANALYZE DELETE FROM a", &["a"]),
    ("PREPARE p AS SELECT * FROM a WHERE id = $1", &["a"]),
    ("DECLARE c CURSOR FOR SELECT * FROM a", &["a"]),
    ("CREATE VIEW v AS SELECT * FROM a", &["v", "a"]),
    ("CREATE INDEX i ON a (x)", &["a"]),
    (
        "SELECT * FROM a; SELECT * FROM b; SELECT * FROM a",
        &["a", "b"],
    ),
    ("SELECT 1", &[]),
    ("SELECT f(x) FROM (VALUES (1)) v(x)", &[]),
    ("BEGIN; SET search_path = x; SHOW search_path; COMMIT", &[]),
    (
        "EXECUTE p(1); DEALLOCATE p; LISTEN ch; NOTIFY ch; DISCARD ALL",
        &[],
    ),
    ("", &[]),
    (" ; ;", &[]),
];

#[test]
fn tables() {
    for (sql, expected) in TABLE_CASES {
        let got = tables_touched(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got, *expected, "{sql}");
    }
}

/// Statements seen only as words: (input, a word that must be reported).
const OPAQUE_CASES: &[(&str, &str)] = &[
    ("DO $$ BEGIN DELETE FROM salaries; END $$", "salaries"),
    (
        "DO LANGUAGE plpgsql $$ BEGIN PERFORM * FROM s.salaries; END $$",
        "salaries",
    ),
    ("DO 'BEGIN TRUNCATE salaries; END'", "salaries"),
    (
        "DO $do$ BEGIN EXECUTE 'TRUNCATE ' || 'x'; EXECUTE 'DELETE FROM salaries'; END $do$",
        "salaries",
    ),
    (
        "DO $$ BEGIN RAISE NOTICE 'it''s %', 1; UPDATE salaries SET x = 1; END $$",
        "salaries",
    ),
    (
        "SELECT 1; DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM a",
        "a",
    ),
    (
        "CREATE TABLE z (a int REFERENCES salaries (id))",
        "salaries",
    ),
    ("CREATE TABLE z AS SELECT * FROM salaries", "salaries"),
    (
        "ALTER TABLE z ADD FOREIGN KEY (a) REFERENCES salaries (id)",
        "salaries",
    ),
    ("GRANT SELECT ON salaries TO bob", "salaries"),
    ("COMMENT ON TABLE salaries IS 'pay'", "salaries"),
    ("VACUUM salaries", "salaries"),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM salaries $$",
        "salaries",
    ),
    (
        "CREATE TRIGGER t AFTER INSERT ON salaries FOR EACH ROW EXECUTE FUNCTION f()",
        "salaries",
    ),
];

#[test]
fn opaque_statements_report_their_words() {
    for (sql, word) in OPAQUE_CASES {
        let got = tables_touched(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(got.iter().any(|w| w == word), "{sql}: {got:?}");
        assert_eq!(touches_any(sql, &[word.to_string()]), Ok(true), "{sql}");
    }
    assert_eq!(
        touches_any("DO $$ BEGIN PERFORM 1; END $$", &["salaries".into()]),
        Ok(false)
    );
}

#[test]
fn do_body_that_does_not_tokenize_is_unparsable() {
    let err = tables_touched("DO $$ BEGIN SELECT 'unterminated; END $$").unwrap_err();
    let SqlError::Unparsable { reason } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("DO block"), "{reason}");
    assert!(reason.contains("Line: 1, Column: 4"), "{reason}");
    assert!(touches_any("DO $$ x $$; DO $$ ' $$", &["x".into()]).is_err());
}

#[test]
fn touches() {
    let objects = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases: &[(&str, &[&str], bool)] = &[
        ("select * from \"Salaries\"", &["salaries"], true),
        ("select * from salaries", &["salaries"], true),
        ("SELECT * FROM public.salaries s", &["salaries"], true),
        ("SELECT * FROM salaries", &["public.Salaries"], true),
        ("SELECT * FROM salaries", &["SALARIES"], true),
        ("SELECT * FROM salaries_archive", &["salaries"], false),
        ("SELECT salaries FROM pay", &["salaries"], false),
        ("SELECT 'salaries' FROM pay", &["salaries"], false),
        ("SELECT * FROM pay -- salaries", &["salaries"], false),
        (
            "SELECT * FROM pay WHERE id IN (SELECT id FROM audit_log)",
            &["audit_log"],
            true,
        ),
        (
            "WITH x AS (DELETE FROM audit_log RETURNING *) SELECT * FROM x",
            &["audit_log"],
            true,
        ),
        (
            "SELECT 1; COPY audit_log TO STDOUT",
            &["salaries", "audit_log"],
            true,
        ),
        ("SELECT 1", &["salaries", "audit_log"], false),
        ("SELECT * FROM salaries", &[], false),
    ];
    for (sql, objs, expected) in cases {
        assert_eq!(
            touches_any(sql, &objects(objs)),
            Ok(*expected),
            "{sql} {objs:?}"
        );
    }
}

#[test]
fn unparsable_sql_is_an_error() {
    for sql in [
        "SELEC * FROM salaries",
        "SELECT * FROM salaries WHERE",
        "SELECT 'unterminated FROM salaries",
        "REFRESH MATERIALIZED VIEW salaries",
        "\u{0}",
    ] {
        let err = tables_touched(sql).unwrap_err();
        assert!(matches!(err, SqlError::Unparsable { .. }), "{sql}: {err:?}");
        assert!(touches_any(sql, &["salaries".into()]).is_err(), "{sql}");
        assert!(rewrite(sql, &dept()).is_err(), "{sql}");
    }
    let err = tables_touched("SELEC * FROM salaries").unwrap_err();
    assert!(err.to_string().contains("Line: 1, Column: 1"), "{err}");
}

#[test]
fn limits() {
    let long = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_LEN));
    assert_eq!(
        tables_touched(&long),
        Err(SqlError::TooLong {
            len: long.len(),
            max: MAX_SQL_LEN
        })
    );
    assert!(matches!(
        rewrite(&long, &dept()),
        Err(SqlError::TooLong { .. })
    ));

    // Chains sqlparser drops and prints recursively, near 1 MiB each.
    let hostile = [
        format!("SELECT 1{}", "+1".repeat(500_000)),
        format!(
            "SELECT * FROM t WHERE {}",
            vec!["a = 1"; 100_000].join(" AND ")
        ),
        format!("SELECT a{}", "[1]".repeat(300_000)),
        format!("SELECT a::int{}", "[]".repeat(500_000)),
        format!("SELECT 1{}", " UNION SELECT 1".repeat(60_000)),
        format!("SELECT 1{}", " IS NULL".repeat(100_000)),
        format!("SELECT {}1", "(".repeat(500_000)),
        format!("SELECT * FROM {}", "(SELECT * FROM ".repeat(50_000)),
    ];
    for sql in &hostile {
        let err = tables_touched(sql).unwrap_err();
        assert!(
            matches!(
                err,
                SqlError::ChainTooLong { .. } | SqlError::NestingTooDeep { .. }
            ),
            "{}…: {err:?}",
            &sql[..40]
        );
    }
    let nested = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
    assert_eq!(
        tables_touched(&nested),
        Err(SqlError::NestingTooDeep {
            max: PARSER_RECURSION_LIMIT
        })
    );

    // Just under the limit still works, without overflowing a test thread's stack.
    let and_chain = format!(
        "SELECT * FROM employee WHERE {}",
        vec!["dept = 20"; MAX_CHAIN_DEPTH / 2].join(" AND ")
    );
    let rewritten = rewrite(&and_chain, &dept()).unwrap().unwrap();
    assert_eq!(rewritten, and_chain.replace("= 20", "= 21"));
    let subscripts = format!(
        "SELECT a{} FROM employee",
        "[1]".repeat(MAX_CHAIN_DEPTH / 3)
    );
    assert_eq!(tables_touched(&subscripts), Ok(vec!["employee".into()]));
    let unions = format!(
        "SELECT a FROM employee{}",
        " UNION ALL SELECT a FROM employee".repeat(MAX_CHAIN_DEPTH / 3)
    );
    assert_eq!(tables_touched(&unions), Ok(vec!["employee".into()]));

    // Long lists are free: a 100,000-element IN list and 10,000 VALUES rows pass.
    let ids = (0..100_000)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let in_list = format!("SELECT * FROM employee WHERE id IN ({ids}) AND dept = 20");
    assert!(rewrite(&in_list, &dept())
        .unwrap()
        .unwrap()
        .ends_with("dept = 21"));
    let rows = vec!["(1, 'x', NULL, true, '2020-01-01'::date)"; 10_000].join(", ");
    let insert = format!("INSERT INTO employee VALUES {rows}");
    assert_eq!(tables_touched(&insert), Ok(vec!["employee".into()]));
}

#[test]
fn line_index_maps_character_columns() {
    let sql = "ab\nä€x\n\nz";
    let index = LineIndex::new(sql);
    let at = |line, column| index.offset(Location { line, column });
    assert_eq!(at(1, 1), Some(0));
    assert_eq!(at(1, 3), Some(2));
    assert_eq!(at(2, 1), Some(3));
    assert_eq!(at(2, 2), Some(5));
    assert_eq!(at(2, 3), Some(8));
    assert_eq!(at(4, 1), Some(sql.len() - 1));
    assert_eq!(at(4, 2), Some(sql.len()));
    assert_eq!(at(4, 3), None);
    assert_eq!(at(0, 1), None);
    assert_eq!(at(9, 1), None);
}

/// SQL-ish fragments for the fuzz-style properties.
const FRAGMENTS: &[&str] = &[
    "SELECT", "*", "FROM", "employee", "e", "other", "public.", "WHERE", "dept", "e.", "=", "20",
    "21", "'20'", "-", "(", ")", "[", "]", ",", ";", "AND", "OR", "NOT", "IN", "JOIN", "ON",
    "UNION", "WITH", "AS", "UPDATE", "SET", "DELETE", "INSERT", "INTO", "VALUES", "DO", "$$", "$1",
    "'", "\"", "--", "/*", "*/", "\n", "::int", "COPY", "TRUNCATE", "EXISTS", "CASE", "WHEN",
    "THEN", "END", "ä", "\u{0}", "E'",
];

fn sqlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|parts| parts.join(" "))
}

/// A valid statement reading employee, with the spelling of every part varied.
fn employee_query() -> impl Strategy<Value = (String, String)> {
    let ws = prop::sample::select(vec![" ", "  ", "\n", "\t", " /* ä */ ", " -- c\n"]);
    (
        prop::sample::select(vec![
            "employee",
            "public.employee",
            "EMPLOYEE",
            "\"employee\"",
        ]),
        prop::option::of(prop::sample::select(vec!["e", "emp"])),
        prop::bool::ANY,
        "[a-zA-Z0-9 äöü€😀]{0,12}",
        ws.clone(),
        ws,
    )
        .prop_map(|(table, alias, swap, text, ws1, ws2)| {
            let column = match alias {
                Some(a) => format!("{a}.dept"),
                None => "dept".to_owned(),
            };
            let alias = alias.map(|a| format!(" {a}")).unwrap_or_default();
            let (l, r) = if swap {
                ("20", column.as_str())
            } else {
                (column.as_str(), "20")
            };
            let (l2, r2) = if swap {
                ("21", column.as_str())
            } else {
                (column.as_str(), "21")
            };
            let head = format!("SELECT '{text}' AS t,{ws1}*{ws2}FROM {table}{alias}{ws1}WHERE ");
            (
                format!("{head}{l}{ws2}={ws1}{r}{ws2}"),
                format!("{head}{l2}{ws2}={ws1}{r2}{ws2}"),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(sql in any::<String>()) {
        let _ = tables_touched(&sql);
        let _ = touches_any(&sql, &["salaries".into()]);
        let _ = rewrite(&sql, &dept());
    }

    #[test]
    fn sqlish_text_never_panics_and_rewrites_completely(sql in sqlish()) {
        let _ = tables_touched(&sql);
        if let Ok(Some(new)) = rewrite(&sql, &dept()) {
            prop_assert_ne!(&new, &sql);
            // Every match was replaced and the text still parses the same way.
            prop_assert_eq!(rewrite(&new, &dept()), Ok(None));
            prop_assert_eq!(tables_touched(&new), tables_touched(&sql));
        }
    }

    #[test]
    fn splices_exactly((sql, expected) in employee_query()) {
        prop_assert_eq!(rewrite(&sql, &dept()), Ok(Some(expected.clone())));
        prop_assert_eq!(rewrite(&expected, &dept()), Ok(None));
        prop_assert_eq!(touches_any(&sql, &["employee".into()]), Ok(true));
    }
}
