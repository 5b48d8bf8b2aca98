//! Rules replaced under a live session: the new rules hold from the client's next
//! message on, or the session ends at that boundary with the reason; nothing judged
//! under the old rules runs after it.

mod common;

use common::*;
use transforms::pg::message as msg;
use transforms::pg::session::PgSession;
use transforms::{Output, Rule};

/// Answers the question asked for the new rules: `state` is (SQL prepared
/// statements, cursors); returns the output of its ReadyForQuery.
fn answer(s: &mut PgSession, state: (u32, u32), status: u8) -> Output {
    let (p, c) = (state.0.to_string(), state.1.to_string());
    for row in [
        ["v", "emp_v", "employee", ""],
        ["s", &p, &c, "read committed"],
    ] {
        let out = server(s, &text_row(&row));
        assert!(out.onward.is_empty() && out.back.is_empty());
    }
    server(s, &msg::build_ready(status))
}

/// What `out` says to the client was the end of the session.
fn assert_ended(to_client: &[u8], to_server: &[u8], out: &Output, why: &str) {
    let text = String::from_utf8_lossy(to_client);
    assert!(out.close, "the session goes on");
    assert!(text.contains("FATAL") && text.contains(why), "{text}");
    assert_eq!(to_server, msg::build_terminate());
}

#[test]
fn an_idle_session_judges_its_next_query_by_the_new_rules() {
    let mut s = ready(&demo_answer());
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_query("SELECT name FROM employee"));
    let question = query_text(&out.onward);
    assert!(
        question.contains("pg_prepared_statements") && question.contains("'employee'"),
        "the question for the new rules goes out first: {question}"
    );
    assert!(!question.contains("SAVEPOINT"), "idle: no savepoint needed");
    let out = answer(&mut s, (0, 0), b'I');
    assert!(
        out.onward.is_empty(),
        "the question's replies are not the client's"
    );
    assert!(
        is_refusal(&out.back),
        "the held query runs under the new rules"
    );
    server(&mut s, &msg::build_error("ERROR", "42501", "x"));
    server(&mut s, &msg::build_ready(b'I'));
    // The old rules are gone: salaries is no longer denied, ssn no longer masked.
    let out = client(&mut s, &msg::build_query("SELECT amount FROM salaries"));
    assert_eq!(out.onward, msg::build_query("SELECT amount FROM salaries"));
    server(&mut s, &msg::build(b'C', b"SELECT 0\0"));
    server(&mut s, &msg::build_ready(b'I'));
    assert_eq!(
        s.state()
            .into_iter()
            .find(|(k, _)| *k == "rules_active")
            .unwrap()
            .1,
        "true"
    );
}

#[test]
fn sql_prepared_statements_or_cursors_end_the_session() {
    for state in [(1, 0), (0, 1)] {
        let mut s = ready(&demo_answer());
        adopt(&mut s, deny(&["employee"]));
        client(&mut s, &msg::build_query("EXECUTE leak"));
        let out = answer(&mut s, state, b'I');
        assert_ended(&out.onward, &out.back, &out, "cannot be judged again");
    }
}

#[test]
fn a_failed_question_ends_the_session() {
    let mut s = ready(&demo_answer());
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("SELECT 1"));
    let out = server(&mut s, &msg::build_error("ERROR", "57014", "canceling"));
    assert!(out.onward.is_empty());
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert_ended(&out.onward, &out.back, &out, "57014 canceling");
}

#[test]
fn inside_a_transaction_block_the_question_runs_in_a_savepoint() {
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN"));
    server(&mut s, &msg::build(b'C', b"BEGIN\0"));
    server(&mut s, &msg::build_ready(b'T'));
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_query("SELECT name FROM employee"));
    let question = query_text(&out.onward);
    assert!(
        question.starts_with("SAVEPOINT supervise_rules;")
            && question.ends_with(
                "ROLLBACK TO SAVEPOINT supervise_rules; RELEASE SAVEPOINT supervise_rules"
            ),
        "{question}"
    );
    let out = answer(&mut s, (0, 0), b'T');
    assert!(is_refusal(&out.back));
    // A question that failed the client's transaction ends the session.
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN"));
    server(&mut s, &msg::build_ready(b'T'));
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("SELECT 1"));
    server(&mut s, &msg::build_error("ERROR", "57014", "canceling"));
    let out = server(&mut s, &msg::build_ready(b'E'));
    assert_ended(&out.onward, &out.back, &out, "failed");
}

#[test]
fn pipelined_messages_wait_for_the_server_to_come_to_rest() {
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("SELECT pg_sleep(1)"));
    adopt(&mut s, deny(&["employee"]));
    // What is in flight ends in a ReadyForQuery by itself: the next messages wait.
    for sql in ["SELECT name FROM employee", "SELECT 2"] {
        let out = client(&mut s, &msg::build_query(sql));
        assert!(out.onward.is_empty() && out.back.is_empty() && !out.close);
    }
    server(&mut s, &msg::build(b'C', b"SELECT 1\0"));
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert_eq!(
        out.onward,
        msg::build_ready(b'I'),
        "the client gets its answer"
    );
    assert!(query_text(&out.back).contains("pg_prepared_statements"));
    let out = answer(&mut s, (0, 0), b'I');
    let (refusal, rest) = out
        .back
        .split_at(out.back.len() - msg::build_query("SELECT 2").len());
    assert!(
        is_refusal(refusal),
        "the first held query runs under the new rules"
    );
    assert_eq!(rest, msg::build_query("SELECT 2"));
    // More than 1 MiB held: the session ends rather than buffer without bound.
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("SELECT pg_sleep(1)"));
    adopt(&mut s, deny(&["employee"]));
    let big = msg::build_query(&format!("SELECT '{}'", "x".repeat(600 << 10)));
    assert!(!client(&mut s, &big).close);
    let out = client(&mut s, &big);
    assert_ended(&out.back, &out.onward, &out, "more than 1 MiB");
}

#[test]
fn a_busy_or_failed_session_ends_at_its_next_message() {
    // In flight, and the server answers nothing before a Sync the client has not
    // sent: the next message is judged under neither rule set.
    let mut s = ready(&demo_answer());
    parse(&mut s, "", "SELECT 1", vec![]);
    client(&mut s, &msg::build_execute("", 0));
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_sync());
    assert_ended(&out.back, &out.onward, &out, "in flight");
    // A failed transaction: the question cannot run in it.
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN; SELECT 1/0"));
    server(
        &mut s,
        &msg::build_error("ERROR", "22012", "division by zero"),
    );
    server(&mut s, &msg::build_ready(b'E'));
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_query("ROLLBACK"));
    assert_ended(&out.back, &out.onward, &out, "transaction had failed");
    // ...also when it fails while the client's next messages wait.
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN; SELECT 1/0"));
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("SELECT name FROM employee"));
    server(
        &mut s,
        &msg::build_error("ERROR", "22012", "division by zero"),
    );
    let out = server(&mut s, &msg::build_ready(b'E'));
    let to_client = &out.onward[msg::build_ready(b'E').len()..];
    assert_ended(to_client, &out.back, &out, "transaction had failed");
}

#[test]
fn prepared_statements_are_judged_again_and_revoked_when_the_rules_differ() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    parse(&mut s, "s2", "SELECT amount FROM project", vec![]);
    client(&mut s, &msg::build_sync());
    server(&mut s, &msg::build_ready(b'I'));
    adopt(&mut s, deny(&["employee"]));
    let out = bind(&mut s, "", "s1");
    assert!(query_text(&out.onward).contains("pg_cursors"));
    let out = answer(&mut s, (0, 0), b'I');
    let sent = String::from_utf8_lossy(&out.back);
    assert!(
        is_refusal(&out.back) && sent.contains("\"s1\" was prepared under rules since replaced"),
        "{sent}"
    );
    // The refusal discards to Sync; the server answers it.
    client(&mut s, &msg::build_sync());
    for m in [
        msg::build(b'1', &[]),
        msg::build(b'2', &[]),
        msg::build_error("ERROR", "42501", "x"),
        msg::build_ready(b'I'),
    ] {
        server(&mut s, &m);
    }
    // Forwarded unchanged under the new rules: kept.
    let out = bind(&mut s, "", "s2");
    assert_eq!(msg::typed(&out.onward).unwrap().tag, b'B');
}

#[test]
fn a_statement_rewritten_under_the_old_rules_is_revoked() {
    // The server holds the rewritten text: even the same rules again cannot vouch
    // for it, so it is revoked, not kept.
    let mut s = ready(&demo_answer());
    parse(
        &mut s,
        "s3",
        "SELECT name FROM employee WHERE dept = 20",
        vec![],
    );
    parse(
        &mut s,
        "s4",
        "SELECT name FROM employee WHERE dept = 22",
        vec![],
    );
    client(&mut s, &msg::build_sync());
    server(&mut s, &msg::build_ready(b'I'));
    adopt(&mut s, rules());
    client(&mut s, &msg::build_query("SELECT 1"));
    answer(&mut s, (0, 0), b'I');
    server(&mut s, &msg::build_ready(b'I'));
    let out = bind(&mut s, "", "s3");
    let sent = String::from_utf8_lossy(&out.onward);
    assert!(
        sent.contains(
            "\"s3\" was prepared under rules since replaced, and the new rules rewrite it"
        ),
        "{sent}"
    );
    client(&mut s, &msg::build_sync());
    for m in [b'1', b'2'] {
        server(&mut s, &msg::build(m, &[]));
    }
    server(&mut s, &msg::build_error("ERROR", "42501", "x"));
    server(&mut s, &msg::build_ready(b'I'));
    let out = bind(&mut s, "", "s4");
    assert_eq!(
        msg::typed(&out.onward).unwrap().tag,
        b'B',
        "s4 was sent as is: kept"
    );
}

#[test]
fn a_second_parse_of_a_revoked_name_does_not_revive_it() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_sync());
    answer(&mut s, (0, 0), b'I');
    server(&mut s, &msg::build_ready(b'I'));
    // The server refuses a second "s1" (42P05) and keeps the first; so must the
    // session.
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
        &msg::build_error("ERROR", "42P05", "already exists"),
    );
    server(&mut s, &msg::build_ready(b'I'));
    let out = bind(&mut s, "", "s1");
    assert!(is_refusal(&out.onward), "{:?}", out.onward);
}

#[test]
fn portals_bound_in_the_open_transaction_are_revoked() {
    // The unnamed portal: SQL cannot FETCH from it, so the question does not count
    // it; Execute of it is refused. (A named one is a cursor SQL can FETCH from: it
    // is counted, and the session ends.)
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN"));
    server(&mut s, &msg::build_ready(b'T'));
    parse(&mut s, "s1", "SELECT name FROM project", vec![]);
    bind(&mut s, "", "s1");
    server(&mut s, &msg::build(b'2', &[]));
    client(&mut s, &msg::build_sync());
    server(&mut s, &msg::build_ready(b'T'));
    adopt(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_execute("", 10));
    assert!(query_text(&out.onward).contains("pg_cursors WHERE name <> ''"));
    let out = answer(&mut s, (0, 0), b'T');
    let sent = String::from_utf8_lossy(&out.back);
    assert!(
        sent.contains("portal \"\" was bound under rules since replaced"),
        "{sent}"
    );
    // A named portal counted by the question ends the session.
    let mut s = ready(&demo_answer());
    client(&mut s, &msg::build_query("BEGIN"));
    server(&mut s, &msg::build_ready(b'T'));
    adopt(&mut s, deny(&["employee"]));
    client(&mut s, &msg::build_query("FETCH 10 FROM p"));
    let out = answer(&mut s, (0, 1), b'T');
    assert_ended(&out.onward, &out.back, &out, "1 cursor(s)");
}

#[test]
fn removing_every_rule_needs_no_question() {
    let mut s = ready(&demo_answer());
    adopt(&mut s, Vec::new());
    let out = client(&mut s, &msg::build_query("SELECT amount FROM salaries"));
    assert_eq!(out.onward, msg::build_query("SELECT amount FROM salaries"));
}

#[test]
fn rules_replaced_before_the_session_is_served_are_the_ones_asked_about() {
    // During authentication: the one question asked is the new rules'.
    let mut s = PgSession::new(rules());
    client(&mut s, &startup(&[("user", "app")]));
    reported(&mut s, "client_encoding", "UTF8");
    adopt(&mut s, deny(&["employee"]));
    let out = server(&mut s, &msg::build_ready(b'I'));
    let question = query_text(&out.back);
    assert!(!question.contains("'salaries'") && question.contains("'employee'"));
    // While the first question is out: asked again for the new rules.
    let mut s = PgSession::new(rules());
    client(&mut s, &startup(&[("user", "app")]));
    reported(&mut s, "client_encoding", "UTF8");
    let held = client(&mut s, &msg::build_query("SELECT name FROM employee"));
    assert!(held.onward.is_empty());
    server(&mut s, &msg::build_ready(b'I'));
    adopt(&mut s, deny(&["employee"]));
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert!(query_text(&out.back).contains("pg_prepared_statements"));
    let out = answer(&mut s, (0, 0), b'I');
    assert!(
        is_refusal(&out.back),
        "the held query runs under the new rules"
    );
    // A replication connection let through with no rules is refused by new ones.
    let mut s = PgSession::new(Vec::new());
    client(
        &mut s,
        &startup(&[("user", "app"), ("replication", "database")]),
    );
    reported(&mut s, "client_encoding", "UTF8");
    adopt(&mut s, deny(&["employee"]));
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert_ended(&out.onward, &out.back, &out, "replication connection");
}
