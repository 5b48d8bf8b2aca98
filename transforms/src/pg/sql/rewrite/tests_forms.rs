//! Tests of the forms rewritten, refused and left alone, of statements that do not read
//! the table, of query-block scoping, and of several rules on one column.

use super::super::*;
use super::tests_support::*;

/// (predicate, expected) under `employee.dept 20 → 21`: the forms rewritten.
const FORM_CASES: &[(&str, &str)] = &[
    ("20 = dept", "21 = dept"),
    ("dept <> 20", "dept <> 21"),
    ("dept != 20", "dept != 21"),
    ("NOT dept <> 20", "NOT dept <> 21"),
    ("NOT (dept = 20)", "NOT (dept = 21)"),
    ("(dept) = 20", "(dept) = 21"),
    ("((dept)) = ((20))", "((dept)) = ((21))"),
    ("(20) = (dept)", "(21) = (dept)"),
    ("dept IN (20, 30, '20', 2e1)", "dept IN (21, 30, 21, 21)"),
    ("dept NOT IN (20)", "dept NOT IN (21)"),
    ("(dept) IN ((20))", "(dept) IN ((21))"),
    ("dept = ANY(ARRAY[20, 30])", "dept = ANY(ARRAY[21, 30])"),
    (
        "dept = ANY (ARRAY['20'::int])",
        "dept = ANY (ARRAY[21::int])",
    ),
    ("dept = SOME(ARRAY[20])", "dept = SOME(ARRAY[21])"),
    ("dept <> ALL(ARRAY[20, 30])", "dept <> ALL(ARRAY[21, 30])"),
    (
        "dept OPERATOR(pg_catalog.=) 20",
        "dept OPERATOR(pg_catalog.=) 21",
    ),
    ("dept = 20 IS TRUE", "dept = 21 IS TRUE"),
    ("(dept = 20) = true", "(dept = 21) = true"),
    (
        "CASE WHEN dept = 20 THEN true END",
        "CASE WHEN dept = 21 THEN true END",
    ),
    ("dept = 20 AND dept = 30", "dept = 21 AND dept = 30"),
    ("dept=20AND true", "dept=21 AND true"),
    ("dept = 20 AND id = 20", "dept = 21 AND id = 20"),
    ("dept IS NULL OR dept = 20", "dept IS NULL OR dept = 21"),
];

#[test]
fn forms_rewritten() {
    for (predicate, expected) in FORM_CASES {
        let got = on_employee(predicate).unwrap_or_else(|e| panic!("{predicate}: {e}"));
        assert_eq!(got.as_deref(), Some(*expected), "{predicate}");
        // The rewritten text has nothing left to rewrite.
        assert_eq!(on_employee(expected), Ok(None), "{expected}");
    }
}

/// (statement, words the refusal must contain) under `employee.dept 20 → 21`.
const REFUSALS: &[(&str, &[&str])] = &[
    // Ranges and other comparisons.
    (
        "SELECT * FROM employee WHERE dept BETWEEN 19 AND 21",
        &["compares employee.dept with BETWEEN", "write dept = <value>"],
    ),
    (
        "SELECT * FROM employee WHERE dept NOT BETWEEN 21 AND 30",
        &["BETWEEN"],
    ),
    ("SELECT * FROM employee WHERE dept > 19", &["operator >"]),
    ("SELECT * FROM employee WHERE dept >= 20", &["operator >="]),
    ("SELECT * FROM employee WHERE dept < 21", &["operator <"]),
    ("SELECT * FROM employee WHERE 21 > dept", &["operator >"]),
    (
        "SELECT * FROM employee WHERE dept IS DISTINCT FROM 30",
        &["IS DISTINCT FROM"],
    ),
    (
        "SELECT * FROM employee WHERE dept IS NOT DISTINCT FROM 20",
        &["IS DISTINCT FROM"],
    ),
    ("SELECT * FROM employee WHERE dept LIKE '2%'", &["pattern"]),
    (
        "SELECT * FROM employee WHERE dept OPERATOR(public.=) 20",
        &["operator"],
    ),
    // Non-literals.
    ("SELECT * FROM employee WHERE dept = 10+10", &["10 + 10", "not a literal"]),
    ("SELECT * FROM employee WHERE dept = 10 * 2", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept = -(-20)", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept = (SELECT 20)", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept = abs(-20)", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept = '2' || '0'", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept IN (20, 10 + 10)", &["not a literal"]),
    ("SELECT * FROM employee WHERE dept IN (SELECT 20)", &["IN (a subquery)"]),
    ("SELECT * FROM employee WHERE dept = ANY(SELECT 20)", &["ANY/ALL"]),
    ("SELECT * FROM employee WHERE dept = ANY('{20}')", &["ANY/ALL", "ARRAY"]),
    ("SELECT * FROM employee WHERE dept = ANY($1)", &["ANY/ALL"]),
    ("SELECT * FROM employee WHERE dept = ANY(ARRAY[20] || 30)", &["ANY/ALL"]),
    // Expressions over the column.
    ("SELECT * FROM employee WHERE dept + 0 = 20", &["an expression over employee.dept"]),
    ("SELECT * FROM employee WHERE dept::text = '20'", &["expression over employee.dept"]),
    ("SELECT * FROM employee WHERE abs(dept) = 20", &["expression over employee.dept"]),
    ("SELECT * FROM employee WHERE dept * 1 IN (20)", &["expression over employee.dept"]),
    ("SELECT * FROM employee WHERE greatest(dept, 0) = 20", &["greatest()"]),
    ("SELECT * FROM employee WHERE (dept, id) = (20, 1)", &["row constructor"]),
    ("SELECT * FROM employee WHERE ROW(dept) = ROW(20)", &["employee.dept"]),
    ("SELECT * FROM employee WHERE CASE dept WHEN 20 THEN true END", &["CASE"]),
    ("SELECT * FROM employee WHERE nullif(dept, 20) IS NULL", &["nullif()"]),
    ("SELECT * FROM employee WHERE 20 IN (dept, 30)", &["IN (…)"]),
    ("SELECT * FROM employee WHERE 20 = ANY(ARRAY[dept])", &["array"]),
    ("SELECT * FROM employee WHERE (SELECT e.dept FROM employee e LIMIT 1) = 20", &["employee.dept"]),
    ("SELECT * FROM employee e WHERE (SELECT e.dept) = 20", &["employee.dept"]),
    ("SELECT * FROM employee WHERE NOT dept", &["NOT"]),
    // Whole rows.
    ("SELECT * FROM employee e WHERE e::text LIKE '%20%'", &["whole row of employee"]),
    ("SELECT * FROM employee WHERE row_to_json(employee)->>'dept' = '20'", &["whole row"]),
    ("SELECT to_jsonb(e.*) FROM employee e", &["whole row of employee", "to_jsonb()"]),
    ("SELECT * FROM employee e WHERE (e).dept = 20", &["whole row"]),
    // Literals that may equal 20 under some column type.
    ("SELECT * FROM employee WHERE dept = 20.000000000000001", &["floating-point"]),
    ("SELECT * FROM employee WHERE dept = '20.0000001'", &["floating-point"]),
    ("SELECT * FROM employee WHERE dept = 20.4::int", &["rounded"]),
    ("SELECT * FROM employee WHERE dept = CAST(19.6 AS bigint)", &["rounded"]),
    ("SELECT * FROM employee WHERE dept = '20.4'::numeric(5,0)", &["NUMERIC(5,0)"]),
    ("SELECT * FROM employee WHERE dept = '200'::varchar(2)", &["VARCHAR(2)"]),
    ("SELECT * FROM employee WHERE dept = X'14'", &["kind"]),
    // Aggregates and derived relations that select by value.
    (
        "SELECT sum(salary * (1 / ((dept - 20) * (dept - 20) + 1))) FROM employee",
        &["aggregates an expression over employee.dept with sum()"],
    ),
    (
        "SELECT count(*) FILTER (WHERE dept + 0 = 20) FROM employee",
        &["expression over employee.dept"],
    ),
    ("SELECT * FROM employee ORDER BY abs(dept - 20) LIMIT 1", &["orders or groups"]),
    ("SELECT * FROM (SELECT dept AS d FROM employee) s WHERE s.d = 20", &["renames employee.dept to d"]),
    ("SELECT * FROM (SELECT dept + 0 AS dept FROM employee) s", &["computes an expression"]),
    ("WITH w AS (SELECT dept AS d FROM employee) SELECT * FROM w WHERE d = 20", &["renames"]),
    ("WITH w(a, b) AS (SELECT dept, id FROM employee) SELECT * FROM w WHERE a = 20", &["alias column list"]),
    ("SELECT * FROM employee AS e(a, b, c) WHERE c = 20", &["alias column list"]),
    ("SELECT * FROM (SELECT * FROM employee) s(a, b) WHERE b = 20", &["alias column list"]),
    ("SELECT * FROM (SELECT * FROM employee) s WHERE s.dept + 0 = 20", &["expression over employee.dept"]),
    (
        "SELECT * FROM employee e, LATERAL (SELECT e.dept + 0 AS d) x WHERE x.d = 20",
        &["computes an expression"],
    ),
    // Result columns that ORDER BY / DISTINCT ON name or number select with LIMIT.
    (
        "SELECT *, abs(dept - 20) AS dist FROM employee ORDER BY dist LIMIT 1",
        &["orders or groups by an expression over employee.dept"],
    ),
    (
        "SELECT name, abs(dept - 20) FROM employee ORDER BY 2 LIMIT 1",
        &["orders or groups"],
    ),
    (
        "SELECT *, abs(dept - 20) FROM employee ORDER BY 3 LIMIT 1",
        &["orders or groups"],
    ),
    (
        "SELECT abs(dept - 20) FROM employee ORDER BY abs LIMIT 1",
        &["orders or groups"],
    ),
    (
        "SELECT DISTINCT ON (d) dept - 20 AS d, name FROM employee",
        &["orders or groups"],
    ),
    (
        "(SELECT abs(dept - 20) AS d FROM employee) UNION ALL (SELECT 1) ORDER BY d LIMIT 1",
        &["orders or groups"],
    ),
    // Columns the statement itself chose.
    ("SELECT * FROM employee e, (VALUES (20)) v(x) WHERE e.dept = v.x", &["v.x", "builds itself"]),
    ("SELECT * FROM employee, generate_series(20, 20) g WHERE dept = g", &["builds itself"]),
    (
        "WITH c AS (SELECT 20 AS x) SELECT * FROM employee, c WHERE dept = c.x",
        &["builds itself"],
    ),
    (
        "SELECT * FROM employee e, (SELECT 20 AS dept FROM employee LIMIT 1) s WHERE e.dept = s.dept",
        &["builds itself"],
    ),
    ("SELECT * FROM employee NATURAL JOIN (SELECT 20 AS dept) x", &["NATURAL or USING"]),
    ("SELECT * FROM employee JOIN (VALUES (20)) v(dept) USING (dept)", &["NATURAL or USING"]),
    // Unqualified names in a join count as employee's.
    ("SELECT * FROM employee e JOIN other o ON o.id = e.id WHERE dept BETWEEN 1 AND 30", &["BETWEEN"]),
    // Parameters where no Bind follows.
    (
        "PREPARE p(int) AS SELECT * FROM employee WHERE dept = $1",
        &["parameter $1 inside PREPARE", "use a literal or protocol-level parameters"],
    ),
    // DO blocks naming the table.
    (
        "DO $$ BEGIN UPDATE employee SET x = 1 WHERE dept = 20; END $$",
        &["DO block mentions employee"],
    ),
    (
        "DO $$ BEGIN EXECUTE 'DELETE FROM employee WHERE dept = ' || 20; END $$",
        &["DO block"],
    ),
    // Other statements reading employee.
    ("UPDATE employee SET x = 1 WHERE dept > 19", &["operator >"]),
    ("DELETE FROM employee WHERE dept::text = '20'", &["expression over"]),
    (
        "INSERT INTO employee VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1 WHERE employee.dept > 19",
        &["operator >"],
    ),
    ("MERGE INTO employee e USING other o ON e.dept > 19 WHEN MATCHED THEN DELETE", &["operator >"]),
    ("COPY (SELECT * FROM employee WHERE dept > 19) TO STDOUT", &["operator >"]),
    ("SELECT 1; SELECT * FROM employee WHERE dept < 21", &["operator <"]),
];

#[test]
fn unprovable_is_refused() {
    for (sql, words) in REFUSALS {
        let got = reason(rewrite_plan(sql, &dept()));
        for word in *words {
            assert!(got.contains(word), "{sql}: {got:?} lacks {word:?}");
        }
        // The text-only API refuses too.
        assert!(
            matches!(rewrite(sql, &dept()), Err(SqlError::Unprovable { .. })),
            "{sql}"
        );
    }
}

/// Statements reading employee whose use of dept is left alone.
const ALLOWED: &[&str] = &[
    "SELECT dept FROM employee",
    "SELECT dept AS d, (dept) FROM employee e",
    "SELECT e.dept, dept + 1, dept::text, -dept, dept || '' FROM employee e",
    "SELECT coalesce(dept, 0), upper(dept::text), to_char(dept, '999') FROM employee",
    "SELECT max(dept), min(dept), count(dept), count(DISTINCT dept), max(dept) + 1 FROM employee",
    "SELECT DISTINCT dept FROM employee",
    "SELECT DISTINCT ON (dept) * FROM employee ORDER BY dept, id",
    "SELECT dept, count(*) FROM employee GROUP BY dept HAVING count(*) > 1",
    "SELECT dept, count(*) FROM employee GROUP BY ROLLUP (dept), CUBE (dept, id)",
    "SELECT row_number() OVER (PARTITION BY dept ORDER BY dept) FROM employee",
    "SELECT sum(salary) OVER w FROM employee WINDOW w AS (PARTITION BY dept)",
    "SELECT * FROM employee ORDER BY dept DESC LIMIT 1",
    "SELECT dept AS d FROM employee ORDER BY d LIMIT 1",
    "SELECT dept + 1 AS next, name FROM employee ORDER BY name LIMIT 5",
    "SELECT dept, dept::text FROM employee ORDER BY 1",
    "SELECT dept + 1, name FROM employee ORDER BY 2 LIMIT 1",
    "SELECT employee FROM employee",
    "SELECT count(e.*) FROM employee e",
    "SELECT * FROM employee WHERE dept IS NULL",
    "SELECT * FROM employee WHERE dept IS NOT NULL AND id = 20",
    "SELECT * FROM employee WHERE dept = other_col",
    "SELECT * FROM employee a JOIN employee b ON a.dept = b.dept WHERE b.id = 20",
    "SELECT * FROM employee e JOIN department d ON d.id = e.dept WHERE d.name = 'R&D'",
    "SELECT * FROM employee e JOIN department d USING (dept)",
    "SELECT (SELECT max(dept) FROM employee) + 1 FROM other",
    "SELECT * FROM other WHERE EXISTS (SELECT dept FROM employee WHERE id = 20)",
    "SELECT * FROM (SELECT dept, id FROM employee) s WHERE s.id = 20",
    "WITH w AS (SELECT dept FROM employee) SELECT dept FROM w",
    "INSERT INTO employee (id, dept) VALUES (1, 20)",
    "INSERT INTO employee (dept) SELECT 20",
    "INSERT INTO archive SELECT dept, dept * 2 FROM employee",
    "INSERT INTO employee (id, dept) VALUES (1, 20) RETURNING dept, dept + 1",
    "INSERT INTO employee (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET dept = excluded.dept",
    "UPDATE employee SET dept = 20 WHERE id = 1",
    "UPDATE employee SET dept = dept + 1, x = coalesce(dept, 0) WHERE id = 1 RETURNING dept",
    "DELETE FROM employee WHERE id = 20 RETURNING dept",
    "SELECT * FROM employee WHERE dept = 30 OR dept <> 40 OR dept IN (1, 2)",
    "PREPARE p(int) AS SELECT * FROM employee WHERE id = $1",
    "EXECUTE p(20)",
    "DECLARE c CURSOR FOR SELECT dept FROM employee",
    "EXPLAIN SELECT dept FROM employee",
    "COPY (SELECT dept FROM employee) TO STDOUT",
    "DO $$ BEGIN PERFORM 1; END $$",
];

#[test]
fn unrelated_uses_are_allowed() {
    for sql in ALLOWED {
        assert_eq!(
            rewrite_plan(sql, &dept()),
            Ok(RewritePlan::default()),
            "{sql}"
        );
        assert_eq!(rewrite(sql, &dept()), Ok(None), "{sql}");
    }
}

/// Statements where no `dept` can be employee's: untouched, whatever they do with it.
const NOT_READING: &[&str] = &[
    "SELECT * FROM other WHERE dept = 20",
    "SELECT * FROM other WHERE dept BETWEEN 1 AND 30 OR dept + 0 = 20 OR dept::text = '20'",
    "SELECT * FROM employees WHERE dept > 19",
    "SELECT * FROM other o WHERE o.dept = $1",
    "SELECT 20 = 20, dept FROM other",
    "WITH employee AS (SELECT 20 AS dept) SELECT * FROM employee WHERE dept < 30",
    "SELECT * FROM other employee WHERE employee.dept > 1",
    "SELECT * FROM employee WHERE true UNION SELECT * FROM other WHERE dept > 1",
    "SELECT * FROM other WHERE id IN (SELECT id FROM employee) AND dept > 1",
    "SELECT * FROM employee e, (SELECT * FROM other WHERE dept > 1) o",
    "INSERT INTO employee SELECT * FROM other WHERE dept > 1",
    "PREPARE q(int) AS SELECT * FROM other WHERE dept = $1",
];

#[test]
fn statements_not_reading_the_table_are_untouched() {
    for sql in NOT_READING {
        assert_eq!(
            rewrite_plan(sql, &dept()),
            Ok(RewritePlan::default()),
            "{sql}"
        );
    }
}

#[test]
fn scoping() {
    let cases: &[(&str, &str)] = &[
        // Aliases and qualification.
        (
            "SELECT * FROM public.employee WHERE employee.dept IN ('20') AND 2e1 = public.employee.dept",
            "SELECT * FROM public.employee WHERE employee.dept IN (21) AND 21 = public.employee.dept",
        ),
        (
            "SELECT * FROM employee AS e WHERE e.dept = 20 AND x.dept = 20",
            "SELECT * FROM employee AS e WHERE e.dept = 21 AND x.dept = 20",
        ),
        // Unqualified in a subquery: badge may lack dept, then it is employee's.
        (
            "SELECT * FROM employee WHERE id IN (SELECT emp FROM badge WHERE dept = 20)",
            "SELECT * FROM employee WHERE id IN (SELECT emp FROM badge WHERE dept = 21)",
        ),
        // Unqualified in a join: fail closed, counts as employee's.
        (
            "SELECT * FROM employee e JOIN other o ON o.id = e.id WHERE dept = 20.0 AND o.dept = 20",
            "SELECT * FROM employee e JOIN other o ON o.id = e.id WHERE dept = 21 AND o.dept = 20",
        ),
        // Derived tables and CTEs reading employee pass dept on.
        (
            "SELECT * FROM (SELECT * FROM employee) s WHERE s.dept = '20'",
            "SELECT * FROM (SELECT * FROM employee) s WHERE s.dept = 21",
        ),
        (
            "WITH w AS (SELECT id, dept FROM employee) SELECT * FROM w WHERE dept IN (20)",
            "WITH w AS (SELECT id, dept FROM employee) SELECT * FROM w WHERE dept IN (21)",
        ),
        (
            "WITH a AS (SELECT * FROM employee), b AS (SELECT * FROM a) SELECT * FROM b WHERE b.dept = 20",
            "WITH a AS (SELECT * FROM employee), b AS (SELECT * FROM a) SELECT * FROM b WHERE b.dept = 21",
        ),
        (
            "SELECT * FROM (employee e JOIN other o ON true) AS j WHERE j.dept = 20",
            "SELECT * FROM (employee e JOIN other o ON true) AS j WHERE j.dept = 21",
        ),
        // The ORDER BY of a query sees its FROM; of a set operation, its result.
        (
            "SELECT * FROM employee ORDER BY dept = 20 DESC LIMIT 1",
            "SELECT * FROM employee ORDER BY dept = 21 DESC LIMIT 1",
        ),
        (
            "SELECT dept FROM employee UNION SELECT 1 ORDER BY dept = 20 DESC",
            "SELECT dept FROM employee UNION SELECT 1 ORDER BY dept = 21 DESC",
        ),
        // Conditions in results and FILTER.
        (
            "SELECT count(*) FILTER (WHERE dept = 20), dept = 20 AS is_20 FROM employee",
            "SELECT count(*) FILTER (WHERE dept = 21), dept = 21 AS is_20 FROM employee",
        ),
        // INSERT … ON CONFLICT and MERGE read the table.
        (
            "INSERT INTO employee AS t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1 WHERE t.dept = 20",
            "INSERT INTO employee AS t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1 WHERE t.dept = 21",
        ),
        (
            "MERGE INTO employee e USING other o ON e.id = o.id WHEN MATCHED AND e.dept = 20 THEN DELETE",
            "MERGE INTO employee e USING other o ON e.id = o.id WHEN MATCHED AND e.dept = 21 THEN DELETE",
        ),
        // Data-modifying CTE.
        (
            "WITH d AS (DELETE FROM employee WHERE dept = 20 RETURNING *) SELECT * FROM d",
            "WITH d AS (DELETE FROM employee WHERE dept = 21 RETURNING *) SELECT * FROM d",
        ),
        // Cursors, EXPLAIN, PREPARE with a literal, COPY.
        (
            "DECLARE c CURSOR FOR SELECT * FROM employee WHERE dept = 20",
            "DECLARE c CURSOR FOR SELECT * FROM employee WHERE dept = 21",
        ),
        (
            "EXPLAIN ANALYZE SELECT * FROM employee WHERE dept = 20",
            "EXPLAIN ANALYZE SELECT * FROM employee WHERE dept = 21",
        ),
        (
            "PREPARE p AS SELECT * FROM employee WHERE dept = '20'",
            "PREPARE p AS SELECT * FROM employee WHERE dept = 21",
        ),
        (
            "COPY (SELECT * FROM employee WHERE dept = 20) TO STDOUT",
            "COPY (SELECT * FROM employee WHERE dept = 21) TO STDOUT",
        ),
        // A non-LATERAL subquery in FROM does not see its siblings.
        (
            "SELECT * FROM employee e, (SELECT * FROM other WHERE dept = 20) o WHERE e.dept = 20",
            "SELECT * FROM employee e, (SELECT * FROM other WHERE dept = 20) o WHERE e.dept = 21",
        ),
        // A LATERAL one does.
        (
            "SELECT * FROM employee e, LATERAL (SELECT * FROM other WHERE dept = 20) o",
            "SELECT * FROM employee e, LATERAL (SELECT * FROM other WHERE dept = 21) o",
        ),
    ];
    for (sql, expected) in cases {
        let got = rewrite(sql, &dept()).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got.as_deref(), Some(*expected), "{sql}");
    }
}

#[test]
fn several_rules_on_one_column() {
    let rules = [
        rule("employee", "dept", "20", "21"),
        rule("employee", "dept", "020", "99"),
        rule("employee", "dept", "21", "22"),
        rule("project", "owner", "'a'", "'b'"),
    ];
    // The first matching rule wins; no chaining.
    assert_eq!(
        rewrite(
            "SELECT * FROM employee WHERE dept IN (20.0, 21, 22)",
            &rules
        ),
        Ok(Some(
            "SELECT * FROM employee WHERE dept IN (21, 22, 22)".into()
        ))
    );
    // A parameter is listed once per rule on its column, in rule order.
    assert_eq!(
        rewrite_plan(
            "SELECT * FROM employee e JOIN project p ON p.id = e.id \
             WHERE e.dept = $2 AND p.owner = $1 AND e.dept IN ($3, $2)",
            &rules
        ),
        Ok(RewritePlan {
            text: None,
            params: vec![(1, 3), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)],
        })
    );
}
