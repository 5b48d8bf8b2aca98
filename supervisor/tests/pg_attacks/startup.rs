//! 2. Startup in one write, and learning defeated.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;

/// Objects in schema `evil` that could steer a catalog query run in the client's
/// session: `=` (and `>`) operators that are always false, for the types a catalog
/// lookup compares.
const EVIL: &str = "
CREATE SCHEMA evil;
CREATE FUNCTION evil.never(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.never);
CREATE FUNCTION evil.never(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.never);
CREATE FUNCTION evil.never(name, name) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.never);
CREATE FUNCTION evil.never(name, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.never);
CREATE FUNCTION evil.never(int2, int4) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.> (LEFTARG = int2, RIGHTARG = int4, FUNCTION = evil.never);
CREATE OPERATOR evil.= (LEFTARG = int2, RIGHTARG = int4, FUNCTION = evil.never);
CREATE FUNCTION evil.never(int4, int4) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.never);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
";

/// The startup packet and queries in one write; startup options that defeat a
/// catalog query run in the client's session; a pipelined failing transaction right
/// after startup (raw client, psql).
#[test]
fn startup_in_one_write_and_learning_defeated() {
    let _serial = serial();
    let mut run = Run::start(
        "startup_in_one_write_and_learning_defeated",
        attack_options(EVIL),
    );
    use wire::{bind, execute, parse, pbes, query, startup, sync};

    // Startup + Query in one write: the client's own answer must arrive, and aliases
    // later in the session stay masked.
    run.raw(
        "startup+Query in one write, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT 'first-' || 'answer' AS tag, ssn FROM employee ORDER BY id"),
            ]);
            let got = r.read_until(2);
            if !has_data(&got, "first-answer") {
                v.push(format!(
                    "the first Query's own result never arrived: [{}]",
                    summaries(&got)
                ));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            v.extend(own_errors_only(
                &r.msgs,
                &[&[], &["42501"], &["42501"], &["42501"]],
            ));
            (r, v)
        },
    );
    run.raw(
        "startup+Parse/Bind/Execute/Sync in one write, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                pbes("SELECT 'first-' || 'ext' AS tag, ssn FROM employee", &[0]),
            ]);
            let got = r.read_until(2);
            if !has_data(&got, "first-ext") {
                v.push(format!(
                    "the first Execute's own result never arrived: [{}]",
                    summaries(&got)
                ));
            }
            r.send_all(&[pbes("SELECT ssn AS x FROM employee", &[1])]);
            r.read_until(1);
            q(&mut r, "SELECT e.ssn FROM employee e");
            (r, v)
        },
    );
    run.raw(
        "startup+aliased ssn as the very first query",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT ssn AS x FROM employee e"),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );
    run.raw(
        "startup+three Queries in one write (harmless, alias, table alias)",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT 'q1-' || 'own'"),
                query("SELECT ssn AS y FROM employee"),
                query("SELECT e.ssn AS z FROM public.employee e"),
            ]);
            let got = r.read_until(4);
            if !has_data(&got, "q1-own") {
                v.push(format!(
                    "the first Query's own answer is missing: [{}]",
                    summaries(&got)
                ));
            }
            (r, v)
        },
    );
    run.raw(
        "startup+SELECT * binary without Describe in one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                pbes("SELECT * FROM employee", &[1]),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );

    // Startup options that could defeat a catalog query run in the client's session.
    let opt_sessions: &[(&str, &str)] = &[
        ("options -c statement_timeout=1", "-c statement_timeout=1"),
        ("options -c lock_timeout=1", "-c lock_timeout=1"),
        (
            "options -c search_path=evil,pg_catalog (always-false = operators)",
            "-c search_path=evil,pg_catalog",
        ),
        (
            "options -c search_path=evil,public,pg_catalog",
            "-c search_path=evil,public,pg_catalog",
        ),
        (
            "options -c default_transaction_read_only=on",
            "-c default_transaction_read_only=on",
        ),
        (
            "options -c statement_timeout=1 -c search_path=evil,pg_catalog",
            "-c statement_timeout=1 -c search_path=evil,pg_catalog",
        ),
        (
            "options -c default_transaction_isolation=serializable -c idle_in_transaction_session_timeout=1",
            "-c default_transaction_isolation=serializable -c idle_in_transaction_session_timeout=1",
        ),
    ];
    for &(label, options) in opt_sessions {
        // As set at startup, and reset by the client's first statement (the setting
        // then acts only on what happens at startup, before the client's queries).
        for reset in [false, true] {
            let options = options.to_owned();
            let label = format!(
                "{label}{}, then ssn, aliases, SELECT *",
                if reset { " (reset after startup)" } else { "" }
            );
            run.raw(&label, Expect::RefuseOrMask, true, &move |t: &Target| {
                let mut params = wire::default_params();
                params.push(("options", options.as_str()));
                let mut r = Raw::connect(t);
                let mut first = vec![startup(&params)];
                let mut allowed: Vec<&[&str]> = vec![&[]];
                if reset {
                    first.push(query("RESET ALL"));
                    allowed.push(&["57014"]);
                }
                // In one write with the startup, and again after it.
                first.push(query("SELECT ssn AS x FROM public.employee"));
                allowed.push(&["57014", "42501"]);
                r.send_all(&first);
                r.read_until(first.len());
                for sql in [
                    "SELECT ssn FROM public.employee",
                    "SELECT e.ssn AS y FROM public.employee e",
                ] {
                    q(&mut r, sql);
                    allowed.push(&["57014", "42501"]);
                }
                r.send_all(&[pbes("SELECT * FROM public.employee", &[1])]);
                r.read_until(1);
                allowed.push(&["57014", "42501"]);
                let v = own_errors_only(&r.msgs, &allowed);
                (r, v)
            });
        }
    }
    // The same through psql (PGOPTIONS), simple protocol.
    for (label, opts) in [
        (
            "psql PGOPTIONS statement_timeout=1",
            "-c statement_timeout=1",
        ),
        (
            "psql PGOPTIONS search_path=evil,public,pg_catalog",
            "-c search_path=evil,public,pg_catalog",
        ),
    ] {
        run.psql_env(
            label,
            "SELECT ssn AS x FROM employee;\nSELECT e.ssn FROM employee e;\nSELECT * FROM employee;",
            Expect::RefuseOrMask,
            Ctl::Plain,
            &[("PGOPTIONS", opts)],
        );
    }

    // A failing transaction pipelined right after the startup: the client must see
    // exactly its own errors, and masks must hold afterwards.
    run.raw(
        "startup+'BEGIN; SELECT 1/0;' before the first ReadyForQuery",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("BEGIN; SELECT 1/0;"),
            ]);
            let got = r.read_until(2);
            if got.last().and_then(Msg::ready) != Some(b'E') {
                v.push(format!(
                    "status after the failed block is not E: [{}]",
                    summaries(&got)
                ));
            }
            let rb = q(&mut r, "ROLLBACK");
            if rb.iter().any(|m| m.tag == b'E') {
                v.push(format!("ROLLBACK got an error: [{}]", summaries(&rb)));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            v.extend(own_errors_only(
                &r.msgs,
                &[&[], &["22012"], &[], &["42501"], &["42501"]],
            ));
            (r, v)
        },
    );
    run.raw(
        "startup+BEGIN+1/0 (extended)+SELECT ssn pipelined in one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("BEGIN"),
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                sync(),
                query("SELECT ssn FROM employee"),
                query("ROLLBACK"),
            ]);
            let got = r.read_until(5);
            let codes: Vec<String> = got.iter().filter_map(Msg::error).map(|e| e.code).collect();
            // Its own statements fail: 1/0 (22012), then its own SELECT in the failed
            // block (25P02) — or the SELECT is refused (42501). Nothing else.
            let ok = codes.len() == 2
                && codes[0] == "22012"
                && (codes[1] == "25P02" || codes[1] == "42501");
            if !ok {
                v.push(format!(
                    "errors should be [22012, 25P02|42501] (its own statements), got {codes:?}: [{}]",
                    summaries(&got)
                ));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            (r, v)
        },
    );
    run.raw(
        "startup with options statement_timeout=1 + failing block + alias, one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c statement_timeout=1"));
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&params),
                query("BEGIN"),
                query("SELECT 1/0"),
                query("ROLLBACK"),
                query("SET statement_timeout = 0"),
                query("SELECT ssn AS x FROM employee"),
            ]);
            r.read_until(6);
            // With a 1 ms statement_timeout any of its own statements may be cancelled.
            let t: &[&str] = &["57014"];
            let v = own_errors_only(
                &r.msgs,
                &[&[], t, &["22012", "57014"], t, t, &["42501", "57014"]],
            );
            (r, v)
        },
    );
    // The client changes the learning conditions mid-session, then aliases.
    run.raw(
        "SET search_path=evil,public,pg_catalog + SET statement_timeout=1 mid-session, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "SET search_path = evil, public, pg_catalog");
            q(&mut r, "SET statement_timeout = 1");
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            (r, Vec::new())
        },
    );
    run.finish();
}
