//! 3. COPY out and identifier spellings.

use crate::contract::*;
use crate::pgcluster::wire::{self, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;

/// COPY out in every spelling and position; Unicode-escape, quoted, qualified and
/// mixed-case names; strings the engine and the server could lex differently
/// (psql and raw client).
#[test]
fn copy_out_and_identifier_spellings() {
    let _serial = serial();
    let mut run = Run::start("copy_out_and_identifier_spellings", attack_options(""));
    let dir = run.c.sockdir().display().to_string();

    // --- COPY out ---
    for (label, sql) in [
        ("COPY employee TO STDOUT", "COPY employee TO STDOUT;"),
        (
            "COPY (SELECT ssn FROM employee) TO STDOUT",
            "COPY (SELECT ssn FROM employee) TO STDOUT;",
        ),
        (
            "/* x */ COPY employee TO STDOUT",
            "/* x */ COPY employee TO STDOUT;",
        ),
        (
            "-- comment line, then COPY",
            "-- harmless\nCOPY employee TO STDOUT;",
        ),
        (
            "COPY employee(ssn)TO STDOUT",
            "COPY employee(ssn)TO STDOUT;",
        ),
        (
            "COPY public.employee TO STDOUT",
            "COPY public.employee TO STDOUT;",
        ),
        (
            "COPY \"employee\" TO STDOUT",
            "COPY \"employee\" TO STDOUT;",
        ),
        (
            "COPY U&\"employe\\0065\" TO STDOUT",
            "COPY U&\"employe\\0065\" TO STDOUT;",
        ),
        ("copy EMPLOYEE to stdout", "copy EMPLOYEE to stdout;"),
        (
            "COPY (TABLE employee) TO STDOUT",
            "COPY (TABLE employee) TO STDOUT;",
        ),
        (
            "COPY (SELECT * FROM employee) TO STDOUT (FORMAT csv, HEADER)",
            "COPY (SELECT * FROM employee) TO STDOUT (FORMAT csv, HEADER);",
        ),
        (
            "COPY employee TO STDOUT (FORMAT binary)",
            "COPY employee TO STDOUT (FORMAT binary);",
        ),
        (
            "SELECT 1 \\; COPY employee TO STDOUT (second statement of one Query)",
            "SELECT 1 \\; COPY employee TO STDOUT;",
        ),
        ("\\copy employee to stdout", "\\copy employee to stdout"),
        (
            "\\copy (select ssn from employee) to stdout",
            "\\copy (select ssn from employee) to stdout",
        ),
        (
            "COPY (WITH x AS (SELECT ssn FROM employee) SELECT * FROM x) TO STDOUT",
            "COPY (WITH x AS (SELECT ssn FROM employee) SELECT * FROM x) TO STDOUT;",
        ),
    ] {
        run.psql(label, sql, Expect::RefuseOrMask, Ctl::Plain);
    }
    for (label, sql) in [
        ("copy salaries to stdout", "copy salaries to stdout;"),
        (
            "COPY (SELECT * FROM salaries) TO STDOUT",
            "COPY (SELECT * FROM salaries) TO STDOUT;",
        ),
        (
            "/**/COPY\tsalaries TO STDOUT",
            "/**/COPY\tsalaries TO STDOUT;",
        ),
        (
            "SELECT 1 \\; copy salaries to stdout",
            "SELECT 1 \\; copy salaries to stdout;",
        ),
    ] {
        run.psql(label, sql, Expect::Refuse, Ctl::Plain);
    }
    run.psql(
        "COPY employee TO PROGRAM 'cat > file' then pg_read_file",
        &format!(
            "COPY employee TO PROGRAM 'cat > {dir}/leak-prog.txt';\n\
             SELECT pg_read_file('{dir}/leak-prog.txt');"
        ),
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "COPY (SELECT ssn FROM employee) TO 'file' then pg_read_file",
        &format!(
            "COPY (SELECT ssn FROM employee) TO '{dir}/leak-file.txt';\n\
             SELECT pg_read_file('{dir}/leak-file.txt');"
        ),
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "COPY (SELECT note FROM salaries) TO PROGRAM 'cat > file' then pg_read_file",
        &format!(
            "COPY (SELECT note FROM salaries) TO PROGRAM 'cat > {dir}/leak-sal.txt';\n\
             SELECT pg_read_file('{dir}/leak-sal.txt');"
        ),
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql_in_tx(
        "COPY employee TO STDOUT",
        "COPY employee TO STDOUT;",
        Expect::RefuseOrMask,
    );
    // COPY through the extended protocol and as the 2nd statement of one raw Query.
    run.raw(
        "raw extended COPY employee TO STDOUT",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![wire::pbes("COPY employee TO STDOUT", &[])], 1),
    );
    run.raw(
        "raw Query 'SELECT 1; COPY employee TO STDOUT'",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![wire::query("SELECT 1; COPY employee TO STDOUT")], 1),
    );
    run.raw(
        "raw Query 'SELECT 1;COPY(select ssn from employee)TO STDOUT'",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![wire::query(
                "SELECT 1;COPY(select ssn from employee)TO STDOUT",
            )],
            1,
        ),
    );

    // --- identifier spellings ---
    for (label, sql) in [
        ("U&\"s\\0061laries\"", "SELECT * FROM U&\"s\\0061laries\";"),
        (
            "U&\"!0073alaries\" UESCAPE '!'",
            "SELECT * FROM U&\"!0073alaries\" UESCAPE '!';",
        ),
        (
            "U&\"\\+000073alaries\"",
            "SELECT * FROM U&\"\\+000073alaries\";",
        ),
        ("quoted \"salaries\"", "SELECT * FROM \"salaries\";"),
        ("public.\"salaries\"", "SELECT * FROM public.\"salaries\";"),
        ("SaLaRiEs", "SELECT * FROM SaLaRiEs;"),
        ("TABLE salaries", "TABLE salaries;"),
        ("TABLE U&\"s\\0061laries\"", "TABLE U&\"s\\0061laries\";"),
        (
            "current_database-qualified postgres.public.salaries",
            "SELECT * FROM postgres.public.salaries;",
        ),
        (
            "U&\"public\".U&\"s\\0061l\\0061ries\"",
            "SELECT note FROM U&\"public\".U&\"s\\0061l\\0061ries\";",
        ),
        (
            "salaries via a subquery alias",
            "SELECT x.note FROM (SELECT * FROM U&\"s\\0061laries\") x;",
        ),
        (
            "UPDATE U&\"s\\0061laries\" RETURNING note",
            "BEGIN;\nUPDATE U&\"s\\0061laries\" SET amount = amount RETURNING note;\nROLLBACK;",
        ),
    ] {
        run.psql(label, sql, Expect::Refuse, Ctl::Plain);
    }
    run.psql_in_tx(
        "U&\"s\\0061laries\"",
        "SELECT * FROM U&\"s\\0061laries\";",
        Expect::Refuse,
    );
    run.psql(
        "SELECT U&\"\\0073sn\" FROM employee",
        "SELECT U&\"\\0073sn\" FROM employee;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "SELECT U&\"!0073sn\" UESCAPE '!' FROM U&\"employe\\0065\"",
        "SELECT U&\"!0073sn\" UESCAPE '!' FROM U&\"employe\\0065\";",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "unquoted upper case: SELECT SSN FROM EMPLOYEE",
        "SELECT SSN FROM EMPLOYEE;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "rewrite via U&\"d\\0065pt\" = 20",
        "SELECT name FROM employee WHERE U&\"d\\0065pt\" = 20 ORDER BY 1;",
        Expect::Rewrite,
        Ctl::Plain,
    );
    run.psql(
        "rewrite via U&\"employe\\0065\" with dept = 20",
        "SELECT name FROM U&\"employe\\0065\" WHERE dept = 20 ORDER BY 1;",
        Expect::Rewrite,
        Ctl::Plain,
    );
    // drop-session through escaped names: FATAL, and nothing committed.
    for (label, sql) in [
        (
            "U&\"audit\\005flog\"",
            "SELECT * FROM U&\"audit\\005flog\";",
        ),
        (
            "INSERT INTO U&\"audit\\005flog\" in a transaction",
            "BEGIN;\nINSERT INTO U&\"audit\\005flog\" VALUES (90, 'INJECTED-U');\nCOMMIT;",
        ),
        (
            "DELETE FROM U&\"!0061udit_log\" UESCAPE '!' (autocommit)",
            "DELETE FROM U&\"!0061udit_log\" UESCAPE '!';",
        ),
        (
            "mixed case: INSERT INTO Audit_Log",
            "INSERT INTO Audit_Log VALUES (91, 'INJECTED-C');",
        ),
        (
            "public.\"audit_log\" second in one Query",
            "SELECT 1 \\; INSERT INTO public.\"audit_log\" VALUES (92, 'INJECTED-Q');",
        ),
    ] {
        run.psql(label, sql, Expect::Drop, Ctl::No);
    }

    // --- strings the engine and the server could lex differently ---
    // client_encoding=SJIS: 0x95 0x5C is one character to the server, so the
    // backslash does not escape the quote and `note FROM salaries` is code.
    run.raw(
        "client_encoding=SJIS string smuggle (0x95 0x5C before the quote)",
        Expect::RefuseOrDrop,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("client_encoding", "SJIS"));
            let mut r = Raw::login(t, &params);
            r.send(&wire::query_bytes(
                b"SELECT E'\x95\\', note FROM salaries --'",
            ));
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "SET client_encoding=BIG5 then string smuggle (0xA4 0x5C)",
        Expect::RefuseOrDrop,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "SET client_encoding = 'BIG5'");
            r.send(&wire::query_bytes(
                b"SELECT E'\xa4\\', note FROM salaries --'",
            ));
            r.read_until(1);
            (r, Vec::new())
        },
    );
    // standard_conforming_strings=off: \' escapes the quote for the server.
    run.raw(
        "options standard_conforming_strings=off string smuggle",
        Expect::Refuse,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c standard_conforming_strings=off"));
            let mut r = Raw::login(t, &params);
            q(&mut r, "SELECT 'a\\' || ' , note FROM salaries -- '");
            (r, Vec::new())
        },
    );
    run.raw(
        "SET standard_conforming_strings=off pipelined with the smuggle",
        Expect::Refuse,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                wire::query("SET standard_conforming_strings = off"),
                wire::query("SELECT 'a\\' || ' , note FROM salaries -- '"),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );
    run.raw(
        "standard_conforming_strings=off smuggle of ssn (mask)",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c standard_conforming_strings=off"));
            let mut r = Raw::login(t, &params);
            q(&mut r, "SELECT 'a\\' || ' , ssn FROM employee -- '");
            (r, Vec::new())
        },
    );
    run.raw(
        "dollar-quote tag confusion $a$ … $a$ around salaries",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![wire::query("SELECT $a$ $b$ $a$, note FROM salaries -- $b$")],
            1,
        ),
    );
    run.raw(
        "nested comment /* /* */ salaries */ confusion",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![wire::query("SELECT /* /* */ 1 */ note FROM salaries")],
            1,
        ),
    );
    run.finish();
}
