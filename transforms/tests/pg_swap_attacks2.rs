//! Hostile clients against the confirmation-based Parse/Close bookkeeping and the
//! swap promise (second attack review). Each test sends what a client can pipeline
//! without waiting for a reply; the server's replies are those PostgreSQL gives, as
//! each comment says. Each comment states the hole as the review found it; the
//! assertions are what holds now.

mod common;

use common::*;
use transforms::pg::message as msg;
use transforms::pg::session::{PgRule, PgSession};
use transforms::Output;

fn parse_msg(name: &str, query: &str) -> Vec<u8> {
    msg::build_parse(&msg::ParseMsg {
        name,
        query,
        param_types: vec![],
    })
}

fn bind_msg(portal: &str, statement: &str, params: Vec<Option<&[u8]>>) -> Vec<u8> {
    msg::build_bind(&msg::BindMsg {
        portal,
        statement,
        param_formats: vec![],
        params,
        result_formats: vec![],
    })
}

/// The first parameter of the Bind in `to_server` (a refusal has none).
fn bound_param(to_server: &[u8]) -> Option<Vec<u8>> {
    let typed = msg::typed(to_server).unwrap();
    assert_eq!(typed.tag, b'B', "{:?}", String::from_utf8_lossy(to_server));
    let bind = msg::parse_bind(typed.body).unwrap();
    bind.params.first().copied().flatten().map(<[u8]>::to_vec)
}

/// Puts `rules` in force on an idle session (the next Query triggers the question,
/// which reports no SQL-level state), and lets that Query complete.
fn swap_to(s: &mut PgSession, rules: Vec<PgRule>) {
    adopt(s, rules);
    let out = client(s, &msg::build_query("SELECT 1"));
    assert!(query_text(&out.onward).contains("SET LOCAL statement_timeout = 0"));
    server(s, &text_row(&["s", "0", "0", "read committed"]));
    let out: Output = server(s, &msg::build_ready(b'I'));
    assert_eq!(
        out.back,
        msg::build_query("SELECT 1"),
        "held Query released"
    );
    server(s, &msg::build(b'C', b"SELECT 1\0"));
    server(s, &msg::build_ready(b'I'));
}

// A Bind takes the judgment of the latest Parse of its name still awaiting
// ParseComplete, even when a Sync lies between them: the server answers that Parse
// with 42P05 (the name already exists) and then binds the statement it still holds.
// No swap needed: the rewrite of `dept = $1` (20 -> 21) is skipped.
#[test]
fn a_pipelined_bind_takes_a_reparse_the_server_rejects_as_duplicate() {
    let mut s = ready(&demo_answer());
    parse(
        &mut s,
        "s1",
        "SELECT name FROM employee WHERE dept = $1",
        vec![],
    );
    sync(&mut s);
    // One pipeline, no reply read: Parse s1 (fails: 42P05), Sync, Bind s1 ('20').
    let out = client(&mut s, &parse_msg("s1", "SELECT $1::text"));
    assert_eq!(msg::typed(&out.onward).unwrap().tag, b'P');
    client(&mut s, &msg::build_sync());
    let out = client(&mut s, &bind_msg("", "s1", vec![Some(b"20")]));
    assert!(
        is_refusal(&out.onward) || bound_param(&out.onward).as_deref() == Some(&b"21"[..]),
        "the server binds s1 = SELECT name FROM employee WHERE dept = $1 with '20': {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// Same root cause with the unnamed statement: a Parse the server skips (an earlier
// error in its batch) is still taken by a Bind after the Sync; the server binds the
// unnamed statement it still holds.
#[test]
fn a_pipelined_bind_takes_an_unnamed_parse_the_server_skips() {
    let mut s = ready(&demo_answer());
    parse(
        &mut s,
        "",
        "SELECT name FROM employee WHERE dept = $1",
        vec![],
    );
    sync(&mut s);
    // Bind of a missing statement: the server errors (26000) and skips to Sync.
    client(&mut s, &bind_msg("", "nope", vec![]));
    client(&mut s, &parse_msg("", "SELECT $1::text"));
    client(&mut s, &msg::build_sync());
    let out = client(&mut s, &bind_msg("", "", vec![Some(b"20")]));
    assert!(
        is_refusal(&out.onward) || bound_param(&out.onward).as_deref() == Some(&b"21"[..]),
        "the server binds the old unnamed statement with dept = '20': {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// The swap promise: s1 is revoked by the new rules (deny employee). A Close of s1
// that the server skips (an earlier error in its batch) makes a Bind after the Sync
// see "no statement" (default judgment: not revoked) — the server still holds s1 and
// runs SELECT name FROM employee under rules that deny it.
#[test]
fn a_pipelined_close_the_server_skips_unrevokes_a_statement() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    sync(&mut s);
    swap_to(&mut s, deny(&["employee"]));
    // Sanity: s1 is revoked.
    let out = client(&mut s, &bind_msg("", "s1", vec![]));
    assert!(is_refusal(&out.onward));
    server(&mut s, &msg::build_error("ERROR", "42501", "refused"));
    sync(&mut s);
    // One pipeline: Bind nope (26000), Close s1 (skipped), Sync, Bind s1, Execute, Sync.
    client(&mut s, &bind_msg("", "nope", vec![]));
    client(&mut s, &msg::build_close(b'S', "s1"));
    client(&mut s, &msg::build_sync());
    let out = client(&mut s, &bind_msg("", "s1", vec![]));
    assert!(
        is_refusal(&out.onward) || out.close,
        "Bind of revoked s1 reaches the server: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// The same with a re-Parse the server rejects (42P05) in the same pipeline: the
// existing sequential test (a_second_parse_of_a_revoked_name_does_not_revive_it)
// waits for the error; a pipelining client does not.
#[test]
fn a_pipelined_reparse_the_server_rejects_unrevokes_a_statement() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "SELECT name FROM employee", vec![]);
    sync(&mut s);
    swap_to(&mut s, deny(&["employee"]));
    client(&mut s, &parse_msg("s1", "SELECT 1"));
    client(&mut s, &msg::build_sync());
    let out = client(&mut s, &bind_msg("", "s1", vec![]));
    assert!(
        is_refusal(&out.onward) || out.close,
        "Bind of revoked s1 reaches the server: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// SQL EXECUTE is checked against confirmed statements only: a statement with a
// rewritten parameter whose Parse is still unanswered is not seen, so
// `EXECUTE b2(20)` pipelined after it runs dept = 20 unrewritten.
#[test]
fn sql_execute_of_a_statement_parsed_earlier_in_the_pipeline_is_not_checked() {
    let mut s = ready(&demo_answer());
    client(
        &mut s,
        &parse_msg("b2", "SELECT name FROM employee WHERE dept = $1"),
    );
    client(&mut s, &msg::build_sync());
    let out = client(&mut s, &msg::build_query("EXECUTE b2(20)"));
    assert!(
        is_refusal(&out.onward),
        "EXECUTE b2(20) forwarded: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// The same through a statement that EXECUTEs another, checked at Bind: the Bind's
// check looks only at confirmed statements, not at b2's Parse just before it.
#[test]
fn a_bind_of_an_executing_statement_misses_a_pending_parse_of_its_target() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "a1", "EXECUTE b2(20)", vec![]);
    sync(&mut s);
    client(
        &mut s,
        &parse_msg("b2", "SELECT name FROM employee WHERE dept = $1"),
    );
    let out = client(&mut s, &bind_msg("", "a1", vec![]));
    assert!(
        is_refusal(&out.onward),
        "a1 runs b2 with dept = 20 unrewritten: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// The swap promise through SQL: only a statement that begins with EXECUTE is checked;
// EXPLAIN ANALYZE EXECUTE runs the revoked statement too (here a DELETE on a table
// the new rules deny).
#[test]
fn explain_analyze_execute_runs_a_revoked_statement() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "s1", "DELETE FROM employee WHERE dept = 7", vec![]);
    sync(&mut s);
    swap_to(&mut s, deny(&["employee"]));
    let out = client(&mut s, &msg::build_query("EXPLAIN ANALYZE EXECUTE s1"));
    assert!(
        is_refusal(&out.onward) || out.close,
        "EXPLAIN ANALYZE EXECUTE s1 forwarded: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}

// Same without a swap: the rewritten parameter of b2 is bound by the server.
#[test]
fn explain_analyze_execute_skips_the_parameter_rewrite() {
    let mut s = ready(&demo_answer());
    parse(
        &mut s,
        "b2",
        "SELECT name FROM employee WHERE dept = $1",
        vec![],
    );
    sync(&mut s);
    let out = client(&mut s, &msg::build_query("EXPLAIN ANALYZE EXECUTE b2(20)"));
    assert!(
        is_refusal(&out.onward),
        "EXPLAIN ANALYZE EXECUTE b2(20) forwarded: {:?}",
        String::from_utf8_lossy(&out.onward)
    );
}
