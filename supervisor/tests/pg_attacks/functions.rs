//! 6. Functions that run SQL or read files.

use crate::contract::*;
use crate::pgcluster::*;
use crate::runners::*;

/// Functions and statements that run SQL or read files the supervisor cannot see.
#[test]
fn functions_that_run_sql_or_read_files() {
    let _serial = serial();
    let mut run = Run::start(
        "functions_that_run_sql_or_read_files",
        attack_options("CREATE EXTENSION dblink; CREATE EXTENSION pageinspect; CHECKPOINT;"),
    );
    let sal_path = run.admin("SELECT pg_relation_filepath('salaries')");
    let sal_path = sal_path.trim().to_owned();
    let emp_path = run.admin("SELECT pg_relation_filepath('employee')");
    let emp_path = emp_path.trim().to_owned();
    let dir = run.c.sockdir().display().to_string();
    let port = run.c.port();

    for (label, sql, expect) in [
        (
            "table_to_xml('salaries')",
            "SELECT table_to_xml('salaries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "table_to_xml('employee')",
            "SELECT table_to_xml('employee', true, false, '');".to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "query_to_xml('select * from sal' || 'aries')",
            "SELECT query_to_xml('select * from sal' || 'aries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "query_to_xml('select ssn from employee')",
            "SELECT query_to_xml('select ssn from employee', true, false, '');".to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "query_to_xml(U&'select note from s\\0061laries')",
            "SELECT query_to_xml(U&'select note from s\\0061laries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "cursor_to_xml over a cursor on ssn",
            "BEGIN;\nDECLARE c CURSOR FOR SELECT ssn FROM employee;\n\
             SELECT cursor_to_xml('c', 10, true, false, '');\nCOMMIT;"
                .to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "schema_to_xml('public')",
            "SELECT schema_to_xml('public', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "database_to_xml",
            "SELECT database_to_xml(true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: EXECUTE 'SELECT … FROM sal' || 'aries' INTO r; RAISE NOTICE",
            "DO $$DECLARE r text; BEGIN EXECUTE 'SELECT string_agg(note, '','') FROM sal' || 'aries' INTO r; \
             RAISE NOTICE 'got %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: EXECUTE 'SELECT string_agg(ssn) FROM employee'; RAISE NOTICE",
            "DO $$DECLARE r text; BEGIN EXECUTE 'SELECT string_agg(ssn, '','') FROM employee' INTO r; \
             RAISE NOTICE 'got %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: static SELECT INTO + RAISE EXCEPTION carrying ssn",
            "DO $$DECLARE r text; BEGIN SELECT ssn INTO r FROM employee WHERE id = 1; \
             RAISE EXCEPTION 'boom %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "plpgsql function with EXECUTE of a concatenated name",
            "CREATE OR REPLACE FUNCTION leakf(t text) RETURNS SETOF text LANGUAGE plpgsql AS \
             $$BEGIN RETURN QUERY EXECUTE 'SELECT note::text FROM ' || t; END$$;\n\
             SELECT * FROM leakf('sal' || 'aries');\nDROP FUNCTION leakf(text);"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "CREATE PROCEDURE + CALL with EXECUTE and NOTICE",
            "CREATE OR REPLACE PROCEDURE leakp() LANGUAGE plpgsql AS \
             $$DECLARE r text; BEGIN EXECUTE 'SELECT max(ssn) FROM ' || 'employee' INTO r; \
             RAISE NOTICE 'p=%', r; END$$;\nCALL leakp();\nDROP PROCEDURE leakp();"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "psql \\gexec of a generated statement",
            "SELECT 'SELECT note FROM sal' || 'aries' \\gexec".to_owned(),
            Expect::Refuse,
        ),
        (
            "pg_read_binary_file of salaries' data file",
            format!("SELECT pg_read_binary_file('{sal_path}');"),
            Expect::Refuse,
        ),
        (
            "encode(pg_read_binary_file(salaries file), 'escape')",
            format!("SELECT encode(pg_read_binary_file('{sal_path}'), 'escape');"),
            Expect::Refuse,
        ),
        (
            "encode(pg_read_binary_file(employee file), 'escape')",
            format!("SELECT encode(pg_read_binary_file('{emp_path}'), 'escape');"),
            Expect::Refuse,
        ),
        (
            "lo_import of salaries' file, then lo_get",
            format!(
                "SELECT lo_import('{dir}/data/{sal_path}') AS lo \\gset\n\
                 SELECT encode(lo_get(:lo), 'escape');"
            ),
            Expect::Refuse,
        ),
        (
            "lo_import of employee's file, then lo_get (hex)",
            format!(
                "SELECT lo_import('{dir}/data/{emp_path}') AS lo \\gset\nSELECT lo_get(:lo);"
            ),
            Expect::Refuse,
        ),
        (
            "pageinspect heap_page_items(get_raw_page('salaries', 0))",
            "SELECT t_data FROM heap_page_items(get_raw_page('salaries', 0));".to_owned(),
            Expect::Refuse,
        ),
        (
            "pageinspect get_raw_page('employee', 0) as escape",
            "SELECT encode(get_raw_page('employee', 0), 'escape');".to_owned(),
            Expect::Refuse,
        ),
        (
            "dblink to the UNIX socket, concatenated salaries",
            format!(
                "SELECT * FROM dblink('host={dir} port={port} user=postgres dbname=postgres', \
                 'SELECT note FROM sal' || 'aries') AS t(x text);"
            ),
            Expect::Refuse,
        ),
        (
            "dblink to the UNIX socket, ssn",
            format!(
                "SELECT * FROM dblink('host={dir} port={port} user=postgres dbname=postgres', \
                 'SELECT ssn FROM employee') AS t(x text);"
            ),
            Expect::Refuse,
        ),
        (
            "COPY (SELECT 1) TO PROGRAM running psql on the UNIX socket",
            format!(
                "COPY (SELECT 1) TO PROGRAM '{psql} -X -A -t -h {dir} -p {port} -U postgres -d postgres \
                 -c \"SELECT note FROM sal\"\"aries\" > {dir}/leak-psql.txt';\n\
                 SELECT pg_read_file('{dir}/leak-psql.txt');",
                psql = pg("psql").display()
            ),
            Expect::Refuse,
        ),
    ] {
        run.psql(label, &sql, expect, Ctl::Plain);
    }
    // dblink back into the tracked port: that inner connection is itself a tracked
    // session (no control: untracked it reaches the same tracked port).
    run.psql(
        "dblink to the tracked TCP port, ssn",
        &format!(
            "SELECT * FROM dblink('host=127.0.0.1 port={port} user=postgres dbname=postgres', \
             'SELECT ssn FROM employee') AS t(x text);"
        ),
        Expect::RefuseOrMask,
        Ctl::No,
    );
    run.psql_in_tx(
        "query_to_xml('select * from sal' || 'aries')",
        "SELECT query_to_xml('select * from sal' || 'aries', true, false, '');",
        Expect::Refuse,
    );

    // Writes into audit_log the session cannot be seen doing: refused or dropped, and
    // nothing committed.
    for (label, sql) in [
        (
            "DO: EXECUTE 'INSERT INTO audit' || '_log …'",
            "DO $$BEGIN EXECUTE 'INSERT INTO audit' || '_log VALUES (77, ''INJECTED-DO'')'; END$$;".to_owned(),
        ),
        (
            "SQL function inserting into audit_log via concatenated EXECUTE",
            "CREATE OR REPLACE FUNCTION inj() RETURNS void LANGUAGE plpgsql AS \
             $$BEGIN EXECUTE format('INSERT INTO %I VALUES (78, %L)', 'audit' || '_log', 'INJECTED-F'); END$$;\n\
             SELECT inj();\nDROP FUNCTION IF EXISTS inj();"
                .to_owned(),
        ),
        (
            "dblink_exec to the UNIX socket inserting into audit_log",
            format!(
                "SELECT dblink_exec('host={dir} port={port} user=postgres dbname=postgres', \
                 'INSERT INTO audit' || '_log VALUES (79, ''INJECTED-DBLINK'')');"
            ),
        ),
    ] {
        run.psql(label, &sql, Expect::RefuseOrDrop, Ctl::No);
    }
    run.finish();
}
