//! 5. Derived relations.

use crate::contract::*;
use crate::pgcluster::*;
use crate::runners::*;

const DERIVED_ADMIN: &str = "
CREATE VIEW admin_emp_v AS SELECT id, name, ssn FROM employee;
CREATE VIEW admin_renamed_v AS SELECT id, ssn AS nick FROM employee;
CREATE VIEW admin_sal_v AS SELECT * FROM salaries;
CREATE FUNCTION admin_ssn_f() RETURNS SETOF text LANGUAGE sql AS $$SELECT ssn FROM employee$$;
CREATE FUNCTION admin_sal_f() RETURNS SETOF text LANGUAGE sql AS $$SELECT note FROM salaries$$;
CREATE SCHEMA shadow;
CREATE VIEW shadow.employee AS SELECT id, name, dept, ssn AS nickname FROM public.employee;
ANALYZE;
";

/// Does `relation` exist (over the untracked socket)?
fn exists(run: &Run, relation: &str) -> bool {
    run.admin(&format!("SELECT to_regclass('{relation}') IS NOT NULL"))
        .trim()
        == "t"
}

/// Views, materialized views, CREATE TABLE AS, INSERT … SELECT, UPDATE copying ssn,
/// SQL functions, renames, rules, triggers, statistics (psql and the crate).
#[test]
fn derived_relations() {
    let _serial = serial();
    let mut run = Run::start("derived_relations", attack_options(DERIVED_ADMIN));

    // Views (same session, then a new session if one was created).
    run.psql(
        "CREATE VIEW v1 AS SELECT * FROM employee; SELECT * FROM v1",
        "CREATE VIEW v1 AS SELECT * FROM employee;\nSELECT * FROM v1;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE VIEW v2 (a, b) AS SELECT id, ssn FROM employee; SELECT b FROM v2",
        "CREATE VIEW v2 (a, b) AS SELECT id, ssn FROM employee;\nSELECT b FROM v2;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    for (rel, label, sql) in [
        ("v1", "new session: SELECT * FROM v1", "SELECT * FROM v1;"),
        ("v2", "new session: SELECT b FROM v2", "SELECT b FROM v2;"),
    ] {
        if exists(&run, rel) {
            run.psql(label, sql, Expect::RefuseOrMask, Ctl::No);
        } else {
            run.s
                .note(label, "moot (the view was not created: refused earlier)");
        }
    }
    run.psql(
        "admin view: SELECT * FROM admin_emp_v",
        "SELECT * FROM admin_emp_v;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin view renaming ssn: SELECT nick FROM admin_renamed_v",
        "SELECT nick FROM admin_renamed_v;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin view over salaries: SELECT * FROM admin_sal_v",
        "SELECT * FROM admin_sal_v;",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "search_path shadow: SET search_path = shadow, public; SELECT nickname FROM employee",
        "SET search_path = shadow, public;\nSELECT nickname FROM employee;\nRESET search_path;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "CREATE TEMP VIEW tv AS SELECT ssn AS x FROM employee; SELECT x FROM tv",
        "CREATE TEMP VIEW tv AS SELECT ssn AS x FROM employee;\nSELECT x FROM tv;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE MATERIALIZED VIEW mv1 AS SELECT ssn FROM employee; SELECT * FROM mv1",
        "CREATE MATERIALIZED VIEW mv1 AS SELECT ssn FROM employee;\nSELECT * FROM mv1;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    if exists(&run, "mv1") {
        run.psql(
            "new session: SELECT * FROM mv1",
            "SELECT * FROM mv1;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s
            .note("new session: SELECT * FROM mv1", "moot (not created)");
    }
    run.psql(
        "CREATE TABLE t_ctas AS SELECT ssn FROM employee; SELECT * FROM t_ctas",
        "CREATE TABLE t_ctas AS SELECT ssn FROM employee;\nSELECT * FROM t_ctas;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    if exists(&run, "t_ctas") {
        run.psql(
            "new session: SELECT * FROM t_ctas",
            "SELECT * FROM t_ctas;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s
            .note("new session: SELECT * FROM t_ctas", "moot (not created)");
    }
    run.psql(
        "SELECT ssn INTO t_into FROM employee; SELECT * FROM t_into",
        "SELECT ssn INTO t_into FROM employee;\nSELECT * FROM t_into;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE TABLE t_json AS SELECT row_to_json(e) j FROM employee e; SELECT j FROM t_json",
        "CREATE TABLE t_json AS SELECT row_to_json(e) j FROM employee e;\nSELECT j FROM t_json;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "INSERT INTO t_ins SELECT ssn FROM employee; SELECT * FROM t_ins",
        "CREATE TABLE t_ins (x text);\nINSERT INTO t_ins SELECT ssn FROM employee;\nSELECT * FROM t_ins;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE TABLE t_sal AS TABLE salaries",
        "CREATE TABLE t_sal AS TABLE salaries;\nSELECT * FROM t_sal;",
        Expect::Refuse,
        Ctl::Tx,
    );
    run.psql(
        "UPDATE employee SET name = ssn; SELECT name FROM employee (rolled back)",
        "BEGIN;\nUPDATE employee SET name = ssn WHERE ssn IS NOT NULL;\nSELECT name FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "UPDATE employee SET name = ssn (committed)",
        "UPDATE employee SET name = ssn WHERE id IN (1, 2);\nSELECT id, name FROM employee ORDER BY id;",
        Expect::RefuseOrMask,
        Ctl::No,
    );
    let copied = run.admin("SELECT count(*) FROM employee WHERE name LIKE '931-%'");
    if copied.trim() != "0" {
        run.psql(
            "new session: SELECT name FROM employee (after ssn was copied into name)",
            "SELECT id, name FROM employee ORDER BY id;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s.note(
            "new session: SELECT name FROM employee (after ssn was copied into name)",
            "moot (the UPDATE copied nothing)",
        );
    }
    run.admin(&format!(
        "BEGIN; DELETE FROM employee; INSERT INTO employee VALUES {EMPLOYEE_ROWS}; COMMIT;"
    ));
    run.psql(
        "CREATE FUNCTION f_ssn() sql 'SELECT ssn FROM employee'; SELECT * FROM f_ssn()",
        "CREATE FUNCTION f_ssn() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM employee';\n\
         SELECT * FROM f_ssn();",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "admin function: SELECT admin_ssn_f()",
        "SELECT admin_ssn_f();",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin function over salaries: SELECT * FROM admin_sal_f()",
        "SELECT * FROM admin_sal_f();",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "WITH x AS (SELECT ssn FROM employee) SELECT * FROM x",
        "WITH x AS (SELECT ssn FROM employee) SELECT * FROM x;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "ADD COLUMN s3 GENERATED ALWAYS AS (ssn) STORED; SELECT s3 (rolled back)",
        "BEGIN;\nALTER TABLE employee ADD COLUMN s3 text GENERATED ALWAYS AS (ssn) STORED;\n\
         SELECT s3 FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );

    // Renames, committed; a new session reads under the new name.
    let renames: [(&str, &str, &str, &str, &str); 3] = [
        (
            "ALTER TABLE employee RENAME COLUMN ssn TO s2",
            "ALTER TABLE employee RENAME COLUMN ssn TO s2;",
            "SELECT s2 FROM employee;",
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'employee'::regclass AND attname = 's2'",
            "ALTER TABLE employee RENAME COLUMN s2 TO ssn",
        ),
        (
            "ALTER TABLE salaries RENAME TO s2",
            "ALTER TABLE salaries RENAME TO s2;",
            "SELECT * FROM s2;",
            "SELECT count(*) FROM pg_class WHERE relname = 's2'",
            "ALTER TABLE s2 RENAME TO salaries",
        ),
        (
            "ALTER TABLE employee RENAME TO staff",
            "ALTER TABLE employee RENAME TO staff;",
            "SELECT ssn FROM staff;",
            "SELECT count(*) FROM pg_class WHERE relname = 'staff'",
            "ALTER TABLE staff RENAME TO employee",
        ),
    ];
    for (label, ddl, read, committed_sql, undo) in renames {
        let expect = if label.contains("salaries") {
            Expect::Refuse
        } else {
            Expect::RefuseOrMask
        };
        run.psql(
            &format!("{label}, then {}", read.trim_end_matches(';')),
            &format!("{ddl}\n{read}"),
            expect,
            Ctl::No,
        );
        let committed = run.admin(committed_sql).trim() != "0";
        eprintln!("  {label}: committed = {committed}");
        if committed {
            run.psql(
                &format!("new session after {label}: {}", read.trim_end_matches(';')),
                read,
                expect,
                Ctl::No,
            );
            run.admin(undo);
        } else {
            run.s.note(
                &format!("new session after {label}"),
                "moot (rename not committed)",
            );
        }
    }

    // Rules and triggers.
    run.psql(
        "CREATE RULE … ON INSERT DO INSTEAD SELECT ssn FROM employee",
        "CREATE TABLE t_rule (x text);\n\
         CREATE RULE r_leak AS ON INSERT TO t_rule DO INSTEAD SELECT ssn FROM employee;\n\
         INSERT INTO t_rule VALUES ('a');",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE RULE … ON UPDATE TO project DO ALSO INSERT … SELECT ssn",
        "CREATE TABLE t_rule2 (x text);\n\
         CREATE RULE r_copy AS ON UPDATE TO project DO ALSO INSERT INTO t_rule2 SELECT ssn FROM employee;\n\
         UPDATE project SET name = name WHERE id = 1;\n\
         SELECT * FROM t_rule2;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "trigger copying ssn into another table",
        "CREATE TABLE t_trig (x text);\n\
         CREATE FUNCTION trg_copy() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN INSERT INTO t_trig SELECT ssn FROM employee; RETURN NEW; END$$;\n\
         CREATE TRIGGER tr_copy AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION trg_copy();\n\
         INSERT INTO project VALUES (99, 'trig', 1);\n\
         SELECT * FROM t_trig;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "trigger raising a NOTICE with salaries",
        "CREATE FUNCTION trg_notice() RETURNS trigger LANGUAGE plpgsql AS \
         $$DECLARE r text; BEGIN SELECT string_agg(note, ',') INTO r FROM salaries; \
         RAISE NOTICE 'n=%', r; RETURN NEW; END$$;\n\
         CREATE TRIGGER tr_notice AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION trg_notice();\n\
         INSERT INTO project VALUES (98, 'trig2', 1);",
        Expect::Refuse,
        Ctl::Tx,
    );
    // Clean up whatever the attacks managed to commit.
    run.admin(
        "DROP TABLE IF EXISTS t_rule, t_rule2, t_trig, t_ctas, t_into, t_json, t_ins, t_sal CASCADE;
         DROP TRIGGER IF EXISTS tr_copy ON project; DROP TRIGGER IF EXISTS tr_notice ON project;
         DELETE FROM project WHERE id > 3;",
    );

    // Planner statistics hold the values (pg_stats, after the admin's ANALYZE).
    run.psql(
        "pg_stats histogram_bounds of employee.ssn",
        "SELECT histogram_bounds::text, most_common_vals::text FROM pg_stats \
         WHERE tablename = 'employee' AND attname = 'ssn';",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "pg_stats of salaries",
        "SELECT attname, histogram_bounds::text FROM pg_stats WHERE tablename = 'sal' || 'aries';",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "pg_statistic stavalues1 of employee",
        "SELECT stavalues1::text FROM pg_statistic WHERE starelid = 'public.employee'::regclass;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );

    // Extended protocol (the crate): a view, then the admin's view.
    run.ext(
        "crate: CREATE VIEW v_ext AS SELECT ssn AS y; SELECT y FROM v_ext",
        Expect::RefuseOrMask,
        |x| {
            x.query("CREATE VIEW v_ext AS SELECT ssn AS y FROM employee", &[]);
            x.query("SELECT y FROM v_ext", &[]);
        },
    );
    run.ext(
        "crate: SELECT * FROM admin_renamed_v (binary)",
        Expect::RefuseOrMask,
        |x| {
            x.query("SELECT * FROM admin_renamed_v", &[]);
        },
    );
    run.ext("crate: SELECT admin_ssn_f()", Expect::RefuseOrMask, |x| {
        x.query("SELECT admin_ssn_f()", &[]);
    });
    run.finish();
}
