//! Byte-level tests for every parse/build pair, written as hex so they read like the wire.

use super::fixture::load_hex_fixture;
use super::*;
use proptest::prelude::*;

/// One message from fixture notation (hex pairs and quoted text).
fn h(text: &str) -> Vec<u8> {
    load_hex_fixture(text).concat()
}

/// The body of a whole typed message (panics in tests if it is not one).
fn body(whole: &[u8]) -> &[u8] {
    typed(whole).unwrap().body
}

fn truncated(what: &'static str) -> MessageError {
    MessageError::Truncated { what }
}

#[test]
fn startup_3_0_round_trip() {
    let wire = h(r#"00000034 00030000 "user\0alice\0database\0shop\0application_name\0\0" 00"#);
    let parsed = parse_startup(&wire);
    // The fixture above ends its value list with an empty application_name and then the
    // terminator; check the parse, then rebuild byte for byte.
    let expected = Startup::Params {
        version: PROTOCOL_3_0,
        params: vec![
            ("user", "alice"),
            ("database", "shop"),
            ("application_name", ""),
        ],
    };
    assert_eq!(parsed, Ok(expected.clone()));
    assert_eq!(build_startup(&expected), wire);
    assert_eq!(expected.param("database"), Some("shop"));
    assert_eq!(expected.param("options"), None);
    assert_eq!(Startup::Ssl.param("user"), None);
}

#[test]
fn startup_3_2_and_unknown_minor_are_protocol_3() {
    let wire = h(r#"0000001a 00030002 "user\0bob\0_pq_.x\0\0" 00"#);
    let expected = Startup::Params {
        version: PROTOCOL_3_2,
        params: vec![("user", "bob"), ("_pq_.x", "")],
    };
    assert_eq!(parse_startup(&wire), Ok(expected.clone()));
    assert_eq!(build_startup(&expected), wire);
    // 3.9 is negotiated down by the server, so it is a StartupMessage here too.
    let wire = h(r#"00000010 00030009 "user\0x\0" 00"#);
    assert!(matches!(
        parse_startup(&wire),
        Ok(Startup::Params {
            version: 0x30009,
            ..
        })
    ));
}

#[test]
fn encryption_and_cancel_requests_round_trip() {
    let ssl = h("00000008 04d2162f");
    let gss = h("00000008 04d21630");
    let cancel = h("00000010 04d2162e 00003039 deadbeef");
    let key32 = [7u8; 32];
    let cancel32 = [h("0000002c 04d2162e 00000001"), key32.to_vec()].concat();
    assert_eq!(parse_startup(&ssl), Ok(Startup::Ssl));
    assert_eq!(parse_startup(&gss), Ok(Startup::GssEnc));
    assert_eq!(
        parse_startup(&cancel),
        Ok(Startup::Cancel {
            pid: 12345,
            key: &[0xde, 0xad, 0xbe, 0xef]
        })
    );
    assert_eq!(
        parse_startup(&cancel32),
        Ok(Startup::Cancel {
            pid: 1,
            key: &key32
        })
    );
    for wire in [&ssl, &gss, &cancel, &cancel32] {
        assert_eq!(&build_startup(&parse_startup(wire).unwrap()), wire);
    }
}

#[test]
fn malformed_startup_packets_are_errors() {
    let bad_len = |len| MessageError::BadLength {
        what: "startup packet",
        len,
    };
    assert_eq!(
        parse_startup(&h("000000")),
        Err(truncated("startup length"))
    );
    assert_eq!(parse_startup(&h("00000004")), Err(bad_len(4)));
    assert_eq!(parse_startup(&h("00000009 04d2162f")), Err(bad_len(9)));
    assert_eq!(parse_startup(&h("ffffffff 04d2162f")), Err(bad_len(-1)));
    let big = [&10_001i32.to_be_bytes()[..], &[0; 9_997]].concat();
    assert_eq!(parse_startup(&big), Err(bad_len(10_001)));
    assert_eq!(
        parse_startup(&h("00000008 00020000")),
        Err(MessageError::UnknownStartupCode(0x20000))
    );
    assert_eq!(
        parse_startup(&h("0000000c 04d2162f 00000000")),
        Err(MessageError::TrailingBytes {
            what: "startup packet",
            count: 4
        })
    );
    let no_key = MessageError::BadLength {
        what: "cancel key",
        len: 0,
    };
    assert_eq!(parse_startup(&h("0000000c 04d2162e 00000001")), Err(no_key));
    let long_key = [
        &269i32.to_be_bytes()[..],
        &h("04d2162e 00000001"),
        &[1; 257],
    ]
    .concat();
    assert!(matches!(
        parse_startup(&long_key),
        Err(MessageError::BadLength { len: 257, .. })
    ));
    assert_eq!(
        parse_startup(&h("0000000b 04d2162e 000000")),
        Err(truncated("cancel pid"))
    );
    // No terminator after the last pair; a name without a value; not UTF-8.
    assert_eq!(
        parse_startup(&h(r#"00000011 00030000 "user\0bob\0""#)),
        Err(MessageError::NotNulTerminated {
            what: "startup parameter name"
        })
    );
    assert_eq!(
        parse_startup(&h(r#"0000000d 00030000 "user\0""#)),
        Err(MessageError::NotNulTerminated {
            what: "startup parameter value"
        })
    );
    assert_eq!(
        parse_startup(&h(r#"0000000d 00030000 "u\0" ff 00 00"#)),
        Err(MessageError::NotUtf8 {
            what: "startup parameter value"
        })
    );
}

#[test]
fn typed_checks_the_length_field() {
    let sync = h("53 00000004");
    assert_eq!(
        typed(&sync),
        Ok(Typed {
            tag: b'S',
            body: &[]
        })
    );
    assert_eq!(build_sync(), sync);
    assert_eq!(build(b'S', &[]), sync);
    assert_eq!(build_terminate(), h("58 00000004"));
    let bad = |len| {
        Err(MessageError::BadLength {
            what: "message length",
            len,
        })
    };
    assert_eq!(typed(&h("51 0000")), Err(truncated("message length")));
    assert_eq!(typed(&h("")), Err(truncated("message type")));
    assert_eq!(typed(&h("53 00000003")), bad(3));
    assert_eq!(typed(&h("53 80000000")), bad(i64::from(i32::MIN)));
    assert_eq!(typed(&h("53 00000005")), bad(5));
    assert_eq!(typed(&h("53 00000004 00")), bad(4));
}

#[test]
fn query_round_trip_and_errors() {
    let wire = h(r#"51 0000000d "select 1\0""#);
    assert_eq!(parse_query(body(&wire)), Ok("select 1"));
    assert_eq!(build_query("select 1"), wire);
    assert_eq!(
        parse_query(b"select 1"),
        Err(MessageError::NotNulTerminated {
            what: "query string"
        })
    );
    assert_eq!(
        parse_query(b"a\0b\0"),
        Err(MessageError::TrailingBytes {
            what: "Query",
            count: 2
        })
    );
    assert_eq!(
        parse_query(b"\xff\0"),
        Err(MessageError::NotUtf8 {
            what: "query string"
        })
    );
    // A NUL cannot travel inside a string: the builder cuts there, so it still parses.
    assert_eq!(build_query("a\0b"), h(r#"51 00000006 "a\0""#));
}

#[test]
fn parse_round_trip_and_errors() {
    let wire = h(r#"50 0000001b "s1\0" "select $1\0" 0002 00000017 00000000"#);
    let msg = ParseMsg {
        name: "s1",
        query: "select $1",
        param_types: vec![23, 0],
    };
    assert_eq!(parse_parse(body(&wire)), Ok(msg.clone()));
    assert_eq!(build_parse(&msg), wire);
    assert_eq!(
        parse_parse(&h(r#""\0" "x\0" ffff"#)),
        Err(MessageError::BadLength {
            what: "parameter type count",
            len: -1
        })
    );
    // A count of 32767 with one type present: truncated, and no 128 KiB reservation.
    assert_eq!(
        parse_parse(&h(r#""\0" "x\0" 7fff 00000017"#)),
        Err(truncated("parameter type"))
    );
    assert_eq!(
        parse_parse(&h(r#""\0" "x\0""#)),
        Err(truncated("parameter type count"))
    );
}

#[test]
fn bind_round_trip_and_errors() {
    let wire =
        h(r#"42 00000021 "p\0" "s1\0" 0001 0001 0003 00000002 "42" ffffffff 00000000 0001 0000"#);
    let msg = BindMsg {
        portal: "p",
        statement: "s1",
        param_formats: vec![1],
        params: vec![Some(b"42"), None, Some(b"")],
        result_formats: vec![0],
    };
    assert_eq!(parse_bind(body(&wire)), Ok(msg.clone()));
    assert_eq!(build_bind(&msg), wire);
    assert_eq!(
        parse_bind(&h(r#""\0" "\0" 0000 0001 fffffffe 0000"#)),
        Err(MessageError::BadLength {
            what: "parameter value",
            len: -2
        })
    );
    assert_eq!(
        parse_bind(&h(r#""\0" "\0" 0000 0001 7fffffff 0000"#)),
        Err(truncated("parameter value"))
    );
    assert_eq!(
        parse_bind(&h(r#""\0" "\0" 8000"#)),
        Err(MessageError::BadLength {
            what: "parameter format codes",
            len: -32768
        })
    );
    assert_eq!(
        parse_bind(&h(r#""\0" "\0" 0000 0000"#)),
        Err(truncated("result format codes"))
    );
}

#[test]
fn describe_close_execute_round_trip() {
    let describe = h(r#"44 00000008 "Ss1\0""#);
    let close = h(r#"43 00000006 "P\0""#);
    assert_eq!(parse_describe(body(&describe)), Ok((b'S', "s1")));
    assert_eq!(build_describe(b'S', "s1"), describe);
    assert_eq!(parse_describe(body(&close)), Ok((b'P', "")));
    assert_eq!(build_close(b'P', ""), close);
    assert_eq!(
        parse_describe(b"X\0"),
        Err(MessageError::UnexpectedByte {
            what: "describe/close kind",
            byte: b'X'
        })
    );
    assert_eq!(parse_describe(b""), Err(truncated("describe/close kind")));
    let execute = h(r#"45 0000000a "p\0" 00000064"#);
    assert_eq!(parse_execute(body(&execute)), Ok(("p", 100)));
    assert_eq!(build_execute("p", 100), execute);
    assert_eq!(parse_execute(b"p\0\0\0"), Err(truncated("maximum rows")));
}

#[test]
fn row_description_round_trip_and_errors() {
    // `select id, ssn from employee` as PostgreSQL 15 describes it.
    let wire = h(concat!(
        r#"54 00000031 0002 "id\0" 00004001 0001 00000017 0004 ffffffff 0000"#,
        r#" "ssn\0" 00004001 0003 00000019 ffff ffffffff 0000"#
    ));
    let fields = vec![
        Field {
            name: "id",
            table_oid: 16385,
            column: 1,
            type_oid: 23,
            type_len: 4,
            type_mod: -1,
            format: 0,
        },
        Field {
            name: "ssn",
            table_oid: 16385,
            column: 3,
            type_oid: 25,
            type_len: -1,
            type_mod: -1,
            format: 0,
        },
    ];
    assert_eq!(parse_row_description(body(&wire)), Ok(fields.clone()));
    assert_eq!(build_row_description(&fields), wire);
    assert_eq!(parse_row_description(&h("0000")), Ok(vec![]));
    assert_eq!(
        parse_row_description(&h(r#"0001 "id\0" 00004001 0001"#)),
        Err(truncated("type OID"))
    );
    assert_eq!(
        parse_row_description(&h("7fff")),
        Err(MessageError::NotNulTerminated { what: "field name" })
    );
}

#[test]
fn data_row_round_trip_and_errors() {
    let wire = h(r#"44 00000016 0003 00000001 "7" ffffffff 00000003 "abc""#);
    let values: Vec<Option<&[u8]>> = vec![Some(b"7"), None, Some(b"abc")];
    assert_eq!(parse_data_row(body(&wire)), Ok(values.clone()));
    assert_eq!(build_data_row(&values), wire);
    assert_eq!(
        parse_data_row(&h("0001 ffffff80")),
        Err(MessageError::BadLength {
            what: "column value",
            len: -128
        })
    );
    assert_eq!(
        parse_data_row(&h("0002 00000000")),
        Err(truncated("column value"))
    );
    assert_eq!(
        parse_data_row(&h("0000 00")),
        Err(MessageError::TrailingBytes {
            what: "DataRow",
            count: 1
        })
    );
}

#[test]
fn error_fields_round_trip_and_errors() {
    let wire = h(concat!(
        r#"45 00000046 "SERROR\0" "VERROR\0" "C42P01\0""#,
        r#" "Mrelation \"nope\" does not exist\0" "P15\0" "Zfuture\0" 00"#
    ));
    let fields = vec![
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "42P01"),
        (b'M', "relation \"nope\" does not exist"),
        (b'P', "15"),
        (b'Z', "future"),
    ];
    assert_eq!(parse_fields(body(&wire)), Ok(fields.clone()));
    assert_eq!(build_fields(b'E', &fields), wire);
    assert_eq!(
        build_error("ERROR", "42501", "denied"),
        h(r#"45 00000022 "SERROR\0" "VERROR\0" "C42501\0" "Mdenied\0" 00"#)
    );
    assert_eq!(
        build_fields(b'N', &[(0, "x"), (b'M', "m")]),
        h(r#"4e 00000008 "Mm\0" 00"#)
    );
    assert_eq!(parse_fields(b"Mx\0"), Err(truncated("field code")));
    assert_eq!(
        parse_fields(b"Mx"),
        Err(MessageError::NotNulTerminated {
            what: "field value"
        })
    );
    assert_eq!(
        parse_fields(b"\0\0"),
        Err(MessageError::TrailingBytes {
            what: "ErrorResponse/NoticeResponse",
            count: 1
        })
    );
}

#[test]
fn ready_round_trip_and_errors() {
    for status in [b'I', b'T', b'E'] {
        let wire = [h("5a 00000005"), vec![status]].concat();
        assert_eq!(build_ready(status), wire);
        assert_eq!(parse_ready(body(&wire)), Ok(status));
    }
    assert_eq!(
        parse_ready(b"X"),
        Err(MessageError::UnexpectedByte {
            what: "transaction status",
            byte: b'X'
        })
    );
    assert_eq!(parse_ready(b""), Err(truncated("transaction status")));
    assert!(matches!(
        parse_ready(b"II"),
        Err(MessageError::TrailingBytes { count: 1, .. })
    ));
}

#[test]
fn fixture_loader_reads_hex_text_and_comments() {
    let text = "# a comment\n\n51 0000000d \"select 1\\0\"  # trailing\n  5a00000005 49\n";
    assert_eq!(
        load_hex_fixture(text),
        vec![build_query("select 1"), build_ready(b'I')]
    );
}

#[test]
#[should_panic(expected = "fixture line 1")]
fn fixture_loader_rejects_half_bytes() {
    load_hex_fixture("5 1");
}

/// Rebuilds a typed body with the builder matching `tag`'s client-side parser, if the
/// parser accepts it. Every accepted body must rebuild to the same bytes.
fn reparse_typed(tag: u8, b: &[u8]) -> Option<Vec<u8>> {
    Some(match tag {
        b'Q' => build_query(parse_query(b).ok()?),
        b'P' => build_parse(&parse_parse(b).ok()?),
        b'B' => build_bind(&parse_bind(b).ok()?),
        b'd' => {
            let (kind, name) = parse_describe(b).ok()?;
            build_describe(kind, name)
        }
        b'x' => {
            let (portal, rows) = parse_execute(b).ok()?;
            build_execute(portal, rows)
        }
        b'T' => build_row_description(&parse_row_description(b).ok()?),
        b'D' => build_data_row(&parse_data_row(b).ok()?),
        b'E' => build_fields(b'E', &parse_fields(b).ok()?),
        b'Z' => build_ready(parse_ready(b).ok()?),
        _ => return None,
    })
}

proptest! {
    /// No parser panics on any bytes, and whatever parses rebuilds byte for byte.
    #[test]
    fn parsers_never_panic_and_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        for tag in [b'Q', b'P', b'B', b'd', b'x', b'T', b'D', b'E', b'Z'] {
            if let Some(rebuilt) = reparse_typed(tag, &bytes) {
                let wire_tag = match tag { b'd' => b'D', b'x' => b'E', t => t };
                prop_assert_eq!(rebuilt, build(wire_tag, &bytes));
            }
        }
        if let Ok(s) = parse_startup(&bytes) {
            prop_assert_eq!(build_startup(&s), bytes.clone());
        }
        let _ = typed(&bytes);
    }

    /// Generated well-formed messages survive a build → parse → build cycle.
    #[test]
    fn generated_messages_round_trip(
        names in proptest::collection::vec("[a-z_]{0,8}", 1..6),
        values in proptest::collection::vec(
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)), 0..6),
        formats in proptest::collection::vec(0i16..2, 0..3),
    ) {
        let params: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        let bind = BindMsg {
            portal: &names[0], statement: names.last().unwrap(),
            param_formats: formats.clone(), params: params.clone(), result_formats: formats,
        };
        let wire = build_bind(&bind);
        prop_assert_eq!(parse_bind(body(&wire)), Ok(bind));
        let row = build_data_row(&params);
        prop_assert_eq!(parse_data_row(body(&row)), Ok(params));
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| ("k", n.as_str())).collect();
        let startup = Startup::Params { version: PROTOCOL_3_0, params: pairs };
        let wire = build_startup(&startup);
        prop_assert_eq!(parse_startup(&wire), Ok(startup));
    }
}
