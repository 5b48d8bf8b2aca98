//! The session engine against hostile clients, message by message: what reaches the
//! server and what reaches the client when the client tries to get around a rule.

mod common;

use common::*;
use transforms::pg::message::{self as msg, Startup};
use transforms::pg::session::PgSession;

#[test]
fn learned_views_and_functions_are_refused() {
    let mut s = ready(&demo_answer());
    for sql in [
        "SELECT * FROM emp_v",
        "SELECT leak()",
        "SELECT * FROM EMP_V",
    ] {
        let out = client(&mut s, &msg::build_query(sql));
        let forwarded = query_text(&out.onward);
        assert!(
            forwarded.starts_with("DO $supervise$") && forwarded.contains("42501"),
            "{sql} → {forwarded}"
        );
        server(&mut s, &msg::build_error("ERROR", "42501", "x"));
        server(&mut s, &msg::build_ready(b'I'));
    }
}

/// Binds `value` to `$1` of `statement`; what reaches the server (`None`: refused).
fn bind_one(s: &mut PgSession, statement: &str, format: i16, value: &[u8]) -> Option<Vec<u8>> {
    let out = client(
        s,
        &msg::build_bind(&msg::BindMsg {
            portal: "",
            statement,
            param_formats: vec![format],
            params: vec![Some(value)],
            result_formats: vec![],
        }),
    );
    if out.onward.first() != Some(&b'B') {
        // Refused: the server is made to raise 42501 instead.
        assert!(String::from_utf8_lossy(&out.onward).contains("42501"));
        return None;
    }
    let typed = msg::typed(&out.onward).unwrap();
    let bind = msg::parse_bind(typed.body).unwrap();
    server(s, &msg::build(b'2', &[]));
    Some(bind.params[0].unwrap().to_vec())
}

#[test]
fn bind_rewrites_text_and_binary_parameters() {
    let mut s = ready(&demo_answer());
    let sql = "SELECT name FROM employee WHERE dept = $1";
    parse(&mut s, "s1", sql, vec![23]);
    for (format, value, expected) in [
        (0i16, b"20".to_vec(), b"21".to_vec()),
        (0, b" 020 ".to_vec(), b"21".to_vec()),
        (0, b"22".to_vec(), b"22".to_vec()),
        (
            1,
            20i32.to_be_bytes().to_vec(),
            21i32.to_be_bytes().to_vec(),
        ),
        (
            1,
            22i32.to_be_bytes().to_vec(),
            22i32.to_be_bytes().to_vec(),
        ),
    ] {
        assert_eq!(
            bind_one(&mut s, "s1", format, &value),
            Some(expected),
            "{value:?}"
        );
    }
    // Types the server told in its ParameterDescription count too: int8 here.
    parse(&mut s, "s2", sql, vec![]);
    client(&mut s, &msg::build_describe(b'S', "s2"));
    client(&mut s, &msg::build_sync());
    let mut description = 1u16.to_be_bytes().to_vec();
    description.extend(20u32.to_be_bytes());
    server(&mut s, &msg::build(b't', &description));
    server(&mut s, &msg::build(b'n', &[]));
    server(&mut s, &msg::build_ready(b'I'));
    assert_eq!(
        bind_one(&mut s, "s2", 1, &20i64.to_be_bytes()),
        Some(21i64.to_be_bytes().to_vec())
    );
    // A binary value of a text type is its text ('20' as text is not 0x3230).
    parse(
        &mut s,
        "s3",
        "SELECT name FROM employee WHERE dept = $1::text::int",
        vec![25],
    );
    assert_eq!(bind_one(&mut s, "s3", 1, b"20"), Some(b"21".to_vec()));
    // A binary value whose type the supervisor does not know: refused.
    parse(&mut s, "s4", sql, vec![]);
    assert_eq!(bind_one(&mut s, "s4", 1, &20i32.to_be_bytes()), None);
    // SQL EXECUTE binds in the server, past the rewrite: refused.
    client(&mut s, &msg::build_sync());
    server(&mut s, &msg::build_error("ERROR", "42501", "refused"));
    server(&mut s, &msg::build_ready(b'I'));
    let out = client(&mut s, &msg::build_query("EXECUTE s1(20)"));
    assert!(query_text(&out.onward).contains("42501"));
}

#[test]
fn syncs_during_copy_in_are_not_answered() {
    let mut s = ready(&demo_answer());
    parse(&mut s, "", "COPY project FROM STDIN", vec![]);
    for m in [
        msg::build_bind(&msg::BindMsg {
            portal: "",
            statement: "",
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }),
        msg::build_execute("", 0),
        msg::build_sync(),
        msg::build(b'd', b"1\tx\t20\n"),
        msg::build(b'c', &[]),
        msg::build_sync(),
    ] {
        client(&mut s, &m);
    }
    for m in [
        msg::build(b'2', &[]),
        msg::build(b'n', &[]),
        msg::build(b'G', &[0, 0, 0]),
        msg::build(b'C', b"COPY 1\0"),
        msg::build_ready(b'I'),
    ] {
        assert_eq!(!server(&mut s, &m).onward.is_empty(), m[0] != b'n', "{m:?}");
    }
    // In step: the next simple Query's answer is matched to it.
    client(&mut s, &msg::build_query("SELECT ssn FROM employee"));
    server(&mut s, &row_description(&[("ssn", 16384, 4, 25, 0)]));
    let out = server(&mut s, &text_row(&["931-77-4410"]));
    assert_eq!(out.onward, text_row(&["XXX-XX-XXXX"]));
}

#[test]
fn an_unsafe_client_encoding_ends_the_session() {
    let mut s = ready(&demo_answer());
    let mut body = b"client_encoding\0SJIS\0".to_vec();
    let out = server(&mut s, &msg::build(b'S', &body));
    assert!(out.close);
    assert_eq!(out.back, msg::build_terminate());
    assert!(String::from_utf8_lossy(&out.onward).contains("FATAL"));
    let mut s = ready(&demo_answer());
    body = b"client_encoding\0UTF8\0".to_vec();
    let out = server(&mut s, &msg::build(b'S', &body));
    assert!(!out.close);
    assert_eq!(out.onward, msg::build(b'S', &body));
}

#[test]
fn error_details_of_statements_on_masked_tables_are_withheld() {
    let mut s = ready(&demo_answer());
    let failing_row = |detail: &str| {
        msg::build_fields(
            b'E',
            &[
                (b'S', "ERROR"),
                (b'C', "23502"),
                (
                    b'M',
                    "null value in column \"name\" violates not-null constraint",
                ),
                (b'D', detail),
            ],
        )
    };
    client(
        &mut s,
        &msg::build_query("UPDATE employee SET name = NULL WHERE id = 1"),
    );
    let out = server(
        &mut s,
        &failing_row("Failing row contains (1, null, 20, 931-77-4410)."),
    );
    let text = String::from_utf8_lossy(&out.onward).into_owned();
    assert!(!text.contains("931-77-4410"), "{text}");
    assert!(
        text.contains("23502") && text.contains("detail withheld"),
        "{text}"
    );
    server(&mut s, &msg::build_ready(b'I'));
    // A statement on other tables keeps its detail.
    client(
        &mut s,
        &msg::build_query("UPDATE project SET name = NULL WHERE id = 1"),
    );
    let out = server(&mut s, &failing_row("Failing row contains (1, null, 20)."));
    assert!(String::from_utf8_lossy(&out.onward).contains("Failing row contains (1, null, 20)."));
}

#[test]
fn function_call_messages_are_refused() {
    let mut s = ready(&demo_answer());
    let out = client(
        &mut s,
        &msg::build(b'F', &[0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]),
    );
    assert!(query_text(&out.onward).contains("FunctionCall"));
}

#[test]
fn client_describe_of_another_statement_does_not_steer_the_mask() {
    let mut s = ready(&demo_answer());
    for m in [
        msg::build_parse(&msg::ParseMsg {
            name: "a",
            query: "SELECT name FROM project",
            param_types: vec![],
        }),
        msg::build_parse(&msg::ParseMsg {
            name: "b",
            query: "SELECT ssn FROM employee",
            param_types: vec![],
        }),
        msg::build_describe(b'S', "a"),
        msg::build_bind(&msg::BindMsg {
            portal: "p",
            statement: "b",
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }),
    ] {
        client(&mut s, &m);
    }
    let out = client(&mut s, &msg::build_execute("p", 0));
    // The supervisor's own Describe goes first.
    assert_eq!(
        out.onward,
        [msg::build_describe(b'P', "p"), msg::build_execute("p", 0)].concat()
    );
    client(&mut s, &msg::build_sync());
    for m in [
        msg::build(b'1', &[]),
        msg::build(b'1', &[]),
        msg::build(b't', &[0, 0]),
    ] {
        assert_eq!(server(&mut s, &m).onward, m);
    }
    // The client's Describe answer (of `a`) is forwarded...
    let described = row_description(&[("name", 16500, 2, 25, 0)]);
    assert_eq!(server(&mut s, &described).onward, described);
    server(&mut s, &msg::build(b'2', &[]));
    // ...the supervisor's own one is hidden...
    let own = row_description(&[("ssn", 16384, 4, 25, 0)]);
    assert!(server(&mut s, &own).onward.is_empty());
    // ...and the row is masked by it.
    let out = server(&mut s, &text_row(&["931-77-4410"]));
    assert_eq!(out.onward, text_row(&["XXX-XX-XXXX"]));
}

#[test]
fn a_session_without_an_answer_serves_no_protected_table() {
    let mut s = PgSession::new(rules());
    let startup = msg::build_startup(&Startup::Params {
        version: msg::PROTOCOL_3_0,
        params: vec![("user", "app")],
    });
    client(&mut s, &startup);
    // Pipelined before the startup ended: held, not forwarded.
    let held = client(&mut s, &msg::build_query("BEGIN; SELECT 1/0;"));
    assert!(held.onward.is_empty());
    server(&mut s, &msg::build_ready(b'I'));
    // The question failed (the client's statement_timeout): not the client's error.
    let out = server(
        &mut s,
        &msg::build_error("ERROR", "57014", "canceling statement"),
    );
    assert!(out.onward.is_empty());
    let out = server(&mut s, &msg::build_ready(b'I'));
    // The held Query is judged now: refused (only transaction control and SET/SHOW).
    assert!(query_text(&out.back).contains("could not learn"));
}

/// The next simple Query on ssn must be masked: the queue is in step.
fn assert_in_step(s: &mut PgSession) {
    client(s, &msg::build_query("SELECT ssn FROM employee"));
    server(s, &row_description(&[("ssn", 16384, 4, 25, 0)]));
    let out = server(s, &text_row(&["931-77-4410"]));
    assert_eq!(out.onward, text_row(&["XXX-XX-XXXX"]), "queue out of step");
    server(s, &msg::build(b'C', b"SELECT 1\0"));
    server(s, &msg::build_ready(b'I'));
}

fn unnamed_bind() -> Vec<u8> {
    msg::build_bind(&msg::BindMsg {
        portal: "",
        statement: "",
        param_formats: vec![],
        params: vec![],
        result_formats: vec![],
    })
}

#[test]
fn a_query_the_server_skips_after_an_extended_error_gets_no_entry() {
    let mut s = ready(&demo_answer());
    for m in [
        msg::build_parse(&msg::ParseMsg {
            name: "",
            query: "SELECT 1/0",
            param_types: vec![],
        }),
        unnamed_bind(),
        msg::build_execute("", 0),
        msg::build_query("SELECT 1"),
        msg::build_sync(),
    ] {
        client(&mut s, &m);
    }
    server(&mut s, &msg::build(b'1', &[]));
    server(&mut s, &msg::build(b'2', &[]));
    server(&mut s, &msg::build(b'n', &[]));
    server(
        &mut s,
        &msg::build_error("ERROR", "22012", "division by zero"),
    );
    // The server skipped the Query: one ReadyForQuery, for the Sync.
    server(&mut s, &msg::build_ready(b'I'));
    assert_in_step(&mut s);
}

#[test]
fn messages_sent_after_an_extended_error_arrived_get_no_entry() {
    let mut s = ready(&demo_answer());
    for m in [
        msg::build_parse(&msg::ParseMsg {
            name: "",
            query: "SELECT 1/0",
            param_types: vec![],
        }),
        unnamed_bind(),
        msg::build_execute("", 0),
        msg::build(b'H', &[]),
    ] {
        client(&mut s, &m);
    }
    for m in [
        msg::build(b'1', &[]),
        msg::build(b'2', &[]),
        msg::build(b'n', &[]),
    ] {
        server(&mut s, &m);
    }
    server(
        &mut s,
        &msg::build_error("ERROR", "22012", "division by zero"),
    );
    // Only now does the client send the rest of its pipeline; the server skips it.
    for m in [
        msg::build_parse(&msg::ParseMsg {
            name: "",
            query: "SELECT 1",
            param_types: vec![],
        }),
        unnamed_bind(),
        msg::build_execute("", 0),
        msg::build_sync(),
    ] {
        client(&mut s, &m);
    }
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert_eq!(out.onward, msg::build_ready(b'I'));
    assert_in_step(&mut s);
}

#[test]
fn a_sync_during_the_second_copy_of_one_query_is_not_answered() {
    let mut s = ready(&demo_answer());
    for m in [
        msg::build_query("COPY project FROM STDIN; COPY project FROM STDIN"),
        msg::build(b'd', b"1\tx\t20\n"),
        msg::build(b'c', &[]),
        msg::build_sync(),
        msg::build(b'd', b"2\ty\t21\n"),
        msg::build(b'c', &[]),
    ] {
        client(&mut s, &m);
    }
    for m in [
        msg::build(b'G', &[0, 0, 0]),
        msg::build(b'C', b"COPY 1\0"),
        msg::build(b'G', &[0, 0, 0]),
        msg::build(b'C', b"COPY 1\0"),
        msg::build_ready(b'I'),
    ] {
        server(&mut s, &m);
    }
    assert_in_step(&mut s);
}
