//! Hostile clients against rules replaced under a live session (`swap`), from an
//! attack review: each test is a way a client tried past the promise that nothing runs
//! under the old rules after the swap boundary (or fails closed with a FATAL), and
//! shows it refused. The server's replies are those PostgreSQL gives; each test says
//! which. Each comment states the hole as the review found it; the assertions are
//! what holds now.

mod common;

use common::*;
use transforms::pg::message as msg;
use transforms::pg::session::{Condition, PgRule, PgSession};
use transforms::Output;

/// Answers the question asked for the new rules with no derived view, no SQL
/// prepared statement and no cursor (protocol-level statements are not `from_sql`).
fn answer(s: &mut PgSession, status: u8) -> Output {
    let out = server(s, &text_row(&["s", "0", "0", "read committed"]));
    assert!(out.onward.is_empty() && out.back.is_empty());
    server(s, &msg::build_ready(status))
}

fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    msg::build(b'S', format!("{name}\0{value}\0").as_bytes())
}

/// The server's ParameterStatus, CommandComplete and ReadyForQuery for a SET.
fn set_done(s: &mut PgSession, name: &str, value: &str) {
    server(s, &parameter_status(name, value));
    server(s, &msg::build(b'C', b"SET\0"));
    server(s, &msg::build_ready(b'I'));
}

// a protocol-prepared statement revoked by the new rules still runs through
// SQL `EXECUTE name` (protocol and SQL prepared statements share one namespace; the
// server still holds the old text; the question counts only `from_sql` statements).
#[test]
fn sql_execute_runs_a_revoked_protocol_statement() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    sync(&mut s);
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("EXECUTE s1"));
    let out = answer(&mut s, b'I');
    assert!(
        is_refusal(&out.back),
        "revoked s1 (SELECT name FROM employee) runs under the new deny: {:?}",
        String::from_utf8_lossy(&out.back)
    );
}

// the session forgets a statement at Close even when the server skips the
// Close (an earlier error in the same batch), then takes a second Parse of the name
// as the statement; the server refused that Parse (42P05) and still holds the
// revoked text.
#[test]
fn a_close_the_server_skipped_revives_a_revoked_statement() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    sync(&mut s);
    adopt(&mut s, deny(&["employee"]));
    // Bind of a statement that does not exist: the server errors and skips to Sync.
    bind(&mut s, "", "nope");
    answer(&mut s, b'I');
    client(&mut s, &msg::build_close(b'S', "s1"));
    client(&mut s, &msg::build_sync());
    server(
        &mut s,
        &msg::build_error(
            "ERROR",
            "26000",
            "prepared statement \"nope\" does not exist",
        ),
    );
    server(&mut s, &msg::build_ready(b'I'));
    // The server still has s1: this Parse fails (42P05 duplicate_prepared_statement).
    client(
        &mut s,
        &msg::build_parse(&msg::ParseMsg {
            name: "s1",
            query: "SELECT 1",
            param_types: vec![],
        }),
    );
    client(&mut s, &msg::build_sync());
    server(
        &mut s,
        &msg::build_error("ERROR", "42P05", "prepared statement \"s1\" already exists"),
    );
    server(&mut s, &msg::build_ready(b'I'));
    let out = bind(&mut s, "", "s1");
    assert!(
        is_refusal(&out.onward) || out.close,
        "Bind of s1 reaches the server, which runs SELECT name FROM employee: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// same root cause with Parse: a Parse the server skipped is recorded, a later
// Parse of the name (which the server accepts) is not; the swap judges the text the
// server never had.
#[test]
fn a_parse_the_server_skipped_hides_the_real_text_from_the_rejudgment() {
    let mut s = ready(&demo_answer());
    bind(&mut s, "", "nope");
    client(
        &mut s,
        &msg::build_parse(&msg::ParseMsg {
            name: "s9",
            query: "SELECT 1",
            param_types: vec![],
        }),
    );
    client(&mut s, &msg::build_sync());
    server(
        &mut s,
        &msg::build_error(
            "ERROR",
            "26000",
            "prepared statement \"nope\" does not exist",
        ),
    );
    server(&mut s, &msg::build_ready(b'I'));
    // Allowed under the old rules; the server now holds this as s9.
    parse(&mut s, "s9", "SELECT name FROM employee", vec![]);
    sync(&mut s);
    adopt(&mut s, deny(&["employee"]));
    bind(&mut s, "", "s9");
    let out = answer(&mut s, b'I');
    assert!(
        is_refusal(&out.back),
        "s9 (SELECT name FROM employee on the server) is kept and bound: {:?}",
        String::from_utf8_lossy(&out.back)
    );
}

// statements are judged again with today's standard_conforming_strings, but
// the server parsed them with the setting of their Parse. Off at Parse, the text
// reads salaries; on at the swap, the same text reads as `SELECT 'x\', 1 -- …`.
#[test]
fn a_statement_is_judged_again_under_a_standard_conforming_strings_it_was_not_parsed_with() {
    let mask_only = vec![PgRule::Mask {
        when: Condition::default(),
        table: "employee".into(),
        column: "ssn".into(),
        replacement: "XXX".into(),
    }];
    let mut s = ready_with(mask_only, &demo_answer());
    let out = client(
        &mut s,
        &msg::build_query("SET standard_conforming_strings = off"),
    );
    assert_eq!(
        out.onward,
        msg::build_query("SET standard_conforming_strings = off")
    );
    set_done(&mut s, "standard_conforming_strings", "off");
    let text = "SELECT 'x\\' , 1 -- ' , amount FROM salaries";
    parse(&mut s, "s1", text, vec![]);
    sync(&mut s);
    client(
        &mut s,
        &msg::build_query("SET standard_conforming_strings = on"),
    );
    set_done(&mut s, "standard_conforming_strings", "on");
    adopt(&mut s, rules()); // adds: deny salaries
    bind(&mut s, "", "s1");
    let out = answer(&mut s, b'I');
    assert!(
        is_refusal(&out.back),
        "s1 (reads salaries as the server parsed it) is kept and bound: {:?}",
        String::from_utf8_lossy(&out.back)
    );
}

// a client encoding that lets a multibyte character swallow a backslash is
// refused only while rules are in force when the server reports it. Accepted without
// rules, it stays when rules arrive: the supervisor reads one string literal, the
// server (SJIS: C3 | 81 5C) reads a closed string and a second statement.
#[test]
fn an_unsafe_client_encoding_from_before_the_rules_survives_them() {
    let mut s = PgSession::new(Vec::new());
    client(
        &mut s,
        &startup(&[("user", "app"), ("client_encoding", "SJIS")]),
    );
    let out = server(&mut s, &parameter_status("client_encoding", "SJIS"));
    assert!(!out.close);
    server(&mut s, &msg::build_ready(b'I'));
    adopt(&mut s, rules()); // deny salaries, mask employee.ssn, ...
    let smuggled = "SELECT E'\u{c1}\\' ; SELECT amount FROM salaries; --'";
    assert_eq!(&smuggled.as_bytes()[9..12], b"\xc3\x81\\");
    // The rules cannot be read right under this encoding: the session ends at once,
    // the statement never reaches the server.
    let out = client(&mut s, &msg::build_query(smuggled));
    assert!(
        out.close,
        "forwarded: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
    assert_eq!(out.onward, msg::build_terminate());
    assert!(String::from_utf8_lossy(&out.back).contains("client_encoding SJIS"));
}

// `EXECUTE b2(20)` is refused when b2's parameters are rewritten at Bind; but
// the swap judges statements in name order against the statement map as it is
// mid-way: a1 is judged before b2 gains its rewritten parameter, and is kept.
#[test]
fn a_statement_executing_another_is_judged_before_the_other() {
    let mut s = ready_with(deny(&["salaries"]), &[]);
    parse(
        &mut s,
        "b2",
        "SELECT name FROM employee WHERE dept = $1",
        vec![],
    );
    parse(&mut s, "a1", "EXECUTE b2(20)", vec![]);
    sync(&mut s);
    adopt(&mut s, rules()); // adds: rewrite employee.dept 20 -> 21
    bind(&mut s, "", "a1");
    let out = answer(&mut s, b'I');
    assert!(
        is_refusal(&out.back),
        "a1 runs b2 with dept = 20, never rewritten to 21: {:?}",
        String::from_utf8_lossy(&out.back)
    );
}

// Not swap-specific, same check: a statement that EXECUTEs one prepared
// later is never checked again.
#[test]
fn a_statement_executing_one_prepared_later_is_never_checked() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "a1", "EXECUTE b2(20)", vec![]);
    parse(
        &mut s,
        "b2",
        "SELECT name FROM employee WHERE dept = $1",
        vec![],
    );
    let out = bind(&mut s, "", "a1");
    assert!(
        is_refusal(&out.onward),
        "a1 runs b2 with dept = 20 unrewritten: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// Not swap-specific: SQL DEALLOCATE frees the name on the server but not in the
// session, which keeps the first Parse's entry for the next: its parameters are not
// the ones the server holds.
#[test]
fn deallocate_leaves_the_old_entry_for_the_next_parse() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT 1 WHERE $1::int > 0", vec![23]);
    let out = client(&mut s, &msg::build_query("DEALLOCATE s1"));
    assert_eq!(out.onward, msg::build_query("DEALLOCATE s1"));
    server(&mut s, &msg::build(b'C', b"DEALLOCATE\0"));
    server(&mut s, &msg::build_ready(b'I'));
    parse(
        &mut s,
        "s1",
        "SELECT name FROM employee WHERE dept = $1",
        vec![23],
    );
    let out = client(
        &mut s,
        &msg::build_bind(&msg::BindMsg {
            portal: "",
            statement: "s1",
            param_formats: vec![],
            params: vec![Some(b"20")],
            result_formats: vec![],
        }),
    );
    let typed = msg::typed(&out.onward).unwrap();
    let bound = msg::parse_bind(typed.body).unwrap();
    assert_eq!(
        bound.params[0],
        Some(&b"21"[..]),
        "dept = 20 reaches the server"
    );
}

// inside a REPEATABLE READ or SERIALIZABLE
// block the question reads the catalog in the client's snapshot, so a view (or
// function) committed by another connection after that snapshot — allowed under the
// old rules — is absent from the answer, yet usable by name. The session should not
// trust an answer from a non-read-committed snapshot.
#[test]
fn a_repeatable_read_block_answers_the_question_from_a_stale_snapshot() {
    let mut s = ready_with(deny(&["salaries"]), &[]);
    client(
        &mut s,
        &msg::build_query("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1"),
    );
    server(&mut s, &msg::build(b'C', b"BEGIN\0"));
    server(&mut s, &msg::build(b'C', b"SELECT 1\0"));
    server(&mut s, &msg::build_ready(b'T'));
    // Meanwhile another connection: CREATE VIEW emp_v2 AS SELECT * FROM employee.
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_query("SELECT * FROM emp_v2"));
    let question = query_text(&out.onward);
    assert!(question.contains("current_setting('transaction_isolation')"));
    // The snapshot predates emp_v2: no `v, emp_v2, employee` row comes back, and the
    // answer says so: the session ends rather than trust it.
    server(&mut s, &text_row(&["s", "0", "0", "repeatable read"]));
    let out = server(&mut s, &msg::build_ready(b'T'));
    assert!(
        out.close,
        "emp_v2 forwarded: {:?}",
        String::from_utf8_lossy(&out.back)
    );
    assert_eq!(out.back, msg::build_terminate());
    assert!(String::from_utf8_lossy(&out.onward).contains("repeatable read transaction"));
}

// while the question asked for new rules is out, client messages are held
// with no bound (the 1 MiB bound applies only while waiting for the server to come
// to rest).
#[test]
fn messages_during_the_swap_question_are_held_without_bound() {
    let mut s = ready(&demo_answer());
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("SELECT 1"));
    let big = msg::build_query(&format!("SELECT '{}'", "x".repeat(1 << 20)));
    let mut closed = false;
    for _ in 0..8 {
        closed |= client(&mut s, &big).close;
    }
    assert!(
        closed,
        "8 MiB held while the question is out, session goes on"
    );
}

// Not swap-specific: before authentication ends, every non-password
// message is held, with no bound, for a client that never authenticates.
#[test]
fn messages_before_authentication_are_held_without_bound() {
    let mut s = PgSession::new(rules());
    client(&mut s, &startup(&[("user", "app")]));
    let big = msg::build_query(&format!("SELECT '{}'", "x".repeat(1 << 20)));
    let mut closed = false;
    for _ in 0..8 {
        closed |= client(&mut s, &big).close;
    }
    assert!(closed, "8 MiB held from an unauthenticated client");
}

// a replication stream let through under the old rules keeps streaming after
// rules that refuse it arrive: the session ends only once the client has sent 1 MiB
// of feedback (held), i.e. never for a quiet client.
#[test]
fn a_live_replication_stream_outlives_rules_that_refuse_it() {
    let mut s = PgSession::new(Vec::new());
    client(
        &mut s,
        &startup(&[("user", "app"), ("replication", "database")]),
    );
    server(&mut s, &msg::build_ready(b'I'));
    client(
        &mut s,
        &msg::build_query("START_REPLICATION SLOT s LOGICAL 0/0"),
    );
    server(&mut s, &msg::build(b'W', &[0, 0, 0]));
    adopt(&mut s, deny(&["employee"]));
    let mut closed = false;
    for _ in 0..1000 {
        let out = server(&mut s, &msg::build(b'd', b"w...INSERT INTO employee ..."));
        closed |= out.close;
    }
    let out = client(&mut s, &msg::build(b'd', b"r-standby-status"));
    closed |= out.close;
    assert!(
        closed,
        "WAL keeps flowing under rules that refuse this connection"
    );
}
