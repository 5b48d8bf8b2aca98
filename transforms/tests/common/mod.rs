//! Driving one PostgreSQL session engine message by message, as the tests of hostile
//! clients do.
#![allow(dead_code)]

use transforms::pg::message::{self as msg, Startup};
use transforms::pg::session::{Condition, PgRule, PgSession};
use transforms::pg::sql::PredicateRewrite;
use transforms::{Direction, Output, Rule};

/// The rules most tests run under: rewrite `employee.dept` 20 → 21, mask
/// `employee.ssn`, deny `salaries`.
pub fn rules() -> Vec<PgRule> {
    vec![
        PgRule::Rewrite {
            when: Condition::default(),
            rewrite: PredicateRewrite {
                table: "employee".into(),
                column: "dept".into(),
                from: "20".into(),
                to: "21".into(),
            },
        },
        PgRule::Mask {
            when: Condition::default(),
            table: "employee".into(),
            column: "ssn".into(),
            replacement: "XXX-XX-XXXX".into(),
        },
        PgRule::Deny {
            when: Condition::default(),
            objects: vec!["salaries".into()],
        },
    ]
}

pub fn client(s: &mut PgSession, message: &[u8]) -> Output {
    let mut out = Output::default();
    s.apply(Direction::Inbound, message, &mut out).unwrap();
    out
}

pub fn server(s: &mut PgSession, message: &[u8]) -> Output {
    let mut out = Output::default();
    s.apply(Direction::Outbound, message, &mut out).unwrap();
    out
}

pub fn text_row(values: &[&str]) -> Vec<u8> {
    let v: Vec<Option<&[u8]>> = values.iter().map(|v| Some(v.as_bytes())).collect();
    msg::build_data_row(&v)
}

pub fn row_description(fields: &[(&str, u32, i16, u32, i16)]) -> Vec<u8> {
    let fields: Vec<msg::Field<'_>> = fields
        .iter()
        .map(|&(name, table_oid, column, type_oid, format)| msg::Field {
            name,
            table_oid,
            column,
            type_oid,
            type_len: -1,
            type_mod: -1,
            format,
        })
        .collect();
    msg::build_row_description(&fields)
}

/// A session under [`rules`] past startup and the catalog question; `rows` are the
/// answer's rows.
pub fn ready(rows: &[[&str; 4]]) -> PgSession {
    ready_with(rules(), rows)
}

/// A session under `rules` past startup and the catalog question.
pub fn ready_with(rules: Vec<PgRule>, rows: &[[&str; 4]]) -> PgSession {
    let mut s = PgSession::new(rules);
    let startup = msg::build_startup(&Startup::Params {
        version: msg::PROTOCOL_3_0,
        params: vec![("user", "app"), ("database", "hr")],
    });
    client(&mut s, &startup);
    reported(&mut s, "client_encoding", "UTF8");
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert!(
        String::from_utf8_lossy(&out.back).contains("SET LOCAL statement_timeout = 0"),
        "the catalog question goes to the server"
    );
    for row in rows {
        let out = server(&mut s, &text_row(row));
        assert!(out.onward.is_empty(), "catalog rows never reach the client");
    }
    let out = server(&mut s, &msg::build_ready(b'I'));
    assert!(out.onward.is_empty());
    s
}

/// The server's ParameterStatus `name = value` (it reports client_encoding, among
/// others, during every startup).
pub fn reported(s: &mut PgSession, name: &str, value: &str) -> Output {
    server(
        s,
        &msg::build(b'S', format!("{name}\0{value}\0").as_bytes()),
    )
}

pub fn demo_answer() -> Vec<[&'static str; 4]> {
    vec![
        ["c", "16384", "4", "employee.ssn"],
        ["c", "16384", "3", "employee.dept"],
        ["v", "emp_v", "employee", ""],
        ["f", "leak", "", ""],
    ]
}

pub fn query_text(out: &[u8]) -> String {
    let typed = msg::typed(out).unwrap();
    assert_eq!(typed.tag, b'Q');
    msg::parse_query(typed.body).unwrap().to_owned()
}

pub fn parse(s: &mut PgSession, name: &str, query: &str, param_types: Vec<u32>) {
    let out = client(
        s,
        &msg::build_parse(&msg::ParseMsg {
            name,
            query,
            param_types,
        }),
    );
    assert_eq!(msg::typed(&out.onward).unwrap().tag, b'P');
    server(s, &msg::build(b'1', &[]));
}

/// Deny rules on `objects`.
pub fn deny(objects: &[&str]) -> Vec<PgRule> {
    vec![PgRule::Deny {
        when: Condition::default(),
        objects: objects.iter().map(|o| o.to_string()).collect(),
    }]
}

/// The stream's rules replaced by `rules` (what a signed `set-rules` does).
pub fn adopt(s: &mut PgSession, rules: Vec<PgRule>) {
    s.adopt(Box::new(PgSession::new(rules))).unwrap();
}

/// Whether the bytes for the server are the refusal statement (42501 raised by the
/// server itself).
pub fn is_refusal(to_server: &[u8]) -> bool {
    let text = String::from_utf8_lossy(to_server);
    text.contains("DO $supervise$") && text.contains("42501")
}

/// The client binds `portal` to `statement` (no parameters): what it sends on.
pub fn bind(s: &mut PgSession, portal: &str, statement: &str) -> Output {
    client(
        s,
        &msg::build_bind(&msg::BindMsg {
            portal,
            statement,
            param_formats: vec![],
            params: vec![],
            result_formats: vec![],
        }),
    )
}

/// A Sync and its ReadyForQuery (idle).
pub fn sync(s: &mut PgSession) {
    client(s, &msg::build_sync());
    server(s, &msg::build_ready(b'I'));
}

/// A StartupMessage with `params`.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    msg::build_startup(&Startup::Params {
        version: msg::PROTOCOL_3_0,
        params: params.to_vec(),
    })
}
