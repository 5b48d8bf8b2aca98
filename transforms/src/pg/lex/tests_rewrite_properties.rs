//! Tests of [`without_unicode_escapes`], of hostile input sizes, and properties over
//! random and SQL-like text.

use super::tests_support::*;
use super::*;
use proptest::prelude::*;

// ---- without_unicode_escapes -----------------------------------------------------

fn rewrite(sql: &str) -> Option<String> {
    let t = lex(sql, true).unwrap();
    without_unicode_escapes(sql, &t)
}

fn assert_round_trip(sql: &str) {
    let original = toks(sql);
    let Some(plain) = rewrite(sql) else {
        panic!("no U& forms found in {sql:?}");
    };
    assert!(!plain.contains("U&") && !plain.contains("u&"), "{plain:?}");
    assert_eq!(toks(&plain), original, "{sql:?} → {plain:?}");
}

#[test]
fn without_unicode_escapes_is_none_without_u_forms() {
    assert_eq!(rewrite("SELECT 'U&x', \"u&\", u & 1, x"), None);
    assert_eq!(rewrite(""), None);
}

#[test]
fn without_unicode_escapes_rewrites_u_forms() {
    assert_eq!(
        rewrite(r#"SELECT U&"d\0061t\+000061" FROM t"#).as_deref(),
        Some(r#"SELECT "data" FROM t"#)
    );
    assert_eq!(
        rewrite(r#"SELECT U&"a!0022b" UESCAPE '!' /* keep */"#).as_deref(),
        Some(r#"SELECT "a""b" /* keep */"#)
    );
    assert_eq!(
        rewrite(r"SELECT U&'it''s \00e9'").as_deref(),
        Some("SELECT 'it''s é'")
    );
    assert_eq!(
        rewrite(r"SELECT U&'a\005C''b'").as_deref(),
        Some(r"SELECT E'a\\''b'")
    );
    // Keeping neighbours apart.
    assert_eq!(
        rewrite(r#"SELECT "a"U&"b""#).as_deref(),
        Some(r#"SELECT "a" "b""#)
    );
    assert_eq!(
        rewrite(r#"SELECT U&"a" UESCAPE '!'"b""#).as_deref(),
        Some(r#"SELECT "a" "b""#)
    );
    assert_eq!(
        rewrite("SELECT 'x'U&'y'").as_deref(),
        Some("SELECT 'x'E'y'")
    );
    assert_eq!(
        rewrite("SELECT 'x'\nU&'y'").as_deref(),
        Some("SELECT 'x'\nE'y'")
    );
    assert_eq!(
        rewrite("SELECT U&'a' UESCAPE $$!$$'b'").as_deref(),
        Some("SELECT 'a' 'b'")
    );
    assert_eq!(
        rewrite("SELECT U&'a' UESCAPE $$!$$\n'b'").as_deref(),
        Some("SELECT 'a'/**/\n'b'")
    );
}

#[test]
fn without_unicode_escapes_round_trips() {
    for sql in [
        r#"SELECT U&"d\0061t\+000061" FROM t"#,
        r#"SELECT U&"d!0061t" UESCAPE '!' FROM t"#,
        r"SELECT U&'\0041\+01F600\\', 'x'",
        "SELECT U&'a'\n'b' UESCAPE '!'",
        "SELECT \"a\"U&\"b\", 'x'U&'y', 'x'\nU&'y', B'1'\nU&'y'",
        "SELECT U&'a' UESCAPE $$!$$'b'",
        "SELECT U&'a' UESCAPE $$!$$\n'b'",
        "SELECT U&'a' UESCAPE $$!$$ -- c\n'b'",
        "SELECT U&'a' UESCAPE $$!$$U&'b'",
        "SELECT U&'a' UESCAPE $$!$$\nU&'b' UESCAPE $$#$$\nU&'c'",
        r#"SELECT U&"""", U&'''', U&'\005C'''"#,
        &format!("SELECT U&\"{}\"", r"\0061".repeat(70)),
    ] {
        assert_round_trip(sql);
    }
}

// ---- bounds --------------------------------------------------------------------------

/// Lexes hostile input both ways; no timing is asserted (machines are noisy), but a
/// quadratic path would make this test visibly slow and a recursive one overflow.
fn assert_quick(sql: &str) {
    let _ = lex(sql, true);
    let _ = lex(sql, false);
    if let Ok(t) = lex(sql, true) {
        let _ = without_unicode_escapes(sql, &t);
    }
}

#[test]
fn hostile_quarter_mebibyte_inputs_finish() {
    const MIB: usize = 1 << 18;
    let cases = [
        format!("<{}", "+".repeat(MIB)),
        "=-".repeat(MIB / 2),
        "/*".repeat(MIB / 4) + &"*/".repeat(MIB / 4),
        "/*".repeat(MIB / 2),
        "'a'\n".repeat(MIB / 4),
        "''".repeat(MIB / 2),
        "B''".repeat(MIB / 3),
        format!("${}$x", "a".repeat(MIB / 2)),
        format!("${0}$ {0} ${0}a ${0}$", "a".repeat(MIB / 8)),
        "$a$".repeat(MIB / 3),
        "a".repeat(MIB),
        "\"a".repeat(MIB / 2),
        format!("E'{}'", r"\uD83D\uDE00".repeat(MIB / 12)),
        format!("U&'{}'", r"\0061".repeat(MIB / 5)),
        "U&'a' UESCAPE '!' ".repeat(MIB / 18),
        "1.5e3 ".repeat(MIB / 6),
        "-- x\n".repeat(MIB / 5),
        "'a' -- x\n".repeat(MIB / 9),
        "SELECT a, \"b\", 'c', $1 FROM t WHERE x >= 1.5; ".repeat(MIB / 46),
    ];
    for sql in &cases {
        assert_quick(sql);
    }
}

// ---- properties ------------------------------------------------------------------

fn check_spans(sql: &str, tokens: &[Token]) {
    let mut last = 0;
    for t in tokens {
        assert!(t.span.start >= last, "overlap at {t:?} in {sql:?}");
        assert!(t.span.start < t.span.end, "empty span {t:?} in {sql:?}");
        assert!(t.span.end <= sql.len(), "span past end {t:?} in {sql:?}");
        assert!(sql.is_char_boundary(t.span.start) && sql.is_char_boundary(t.span.end));
        last = t.span.end;
    }
}

/// Fragments that exercise the interesting rules when glued together.
fn sqlish() -> impl Strategy<Value = String> {
    let frag = prop::sample::select(vec![
        "U&'",
        "U&\"",
        "u&",
        "'",
        "\"",
        "''",
        "\"\"",
        "\\",
        "\\0061",
        "\\+01F600",
        "\\D83D",
        "\\DE00",
        "!0062",
        " UESCAPE ",
        "'!'",
        "$$!$$",
        "$$",
        "$a$",
        "$1",
        "\n",
        " ",
        "a",
        "É",
        "😀",
        "E'",
        "e'\\",
        "N'",
        "B'",
        "X'",
        "--",
        "/*",
        "*/",
        "=",
        "-",
        "+",
        "<",
        "@",
        "1",
        ".",
        "..",
        "e",
        ":",
        "x",
    ]);
    prop::collection::vec(frag, 0..16).prop_map(|v| v.concat())
}

/// `U&` forms (some with `UESCAPE`) among literals that could fuse with them,
/// separated by nothing, spaces, newlines or comments. Most lex; some do not
/// (`1U&'a'` is trailing junk, `UESCAPE '!'` + newline + `'x'` continues `'!'`).
fn unicode_forms() -> impl Strategy<Value = String> {
    let body = |parts: Vec<&'static str>| {
        prop::collection::vec(prop::sample::select(parts), 1..5).prop_map(|v| v.concat())
    };
    let uescape = prop::sample::select(vec!["", "", " UESCAPE '!'", " uescape $$#$$"]);
    let string = (
        body(vec![
            "a",
            "''",
            "\\\\",
            "\\0061",
            "\\+01F600",
            "\\D83D\\DE00",
            "é",
            "\n",
            "\\005C",
            "\\0027",
            "\\0022",
        ]),
        uescape.clone(),
    )
        .prop_map(|(b, u)| format!("U&'{b}'{u}"));
    let ident = (
        body(vec!["a", "\"\"", "\\0061", "é", "\\\\", "\\0022", "!0062"]),
        uescape,
    )
        .prop_map(|(b, u)| format!("U&\"{b}\"{u}"));
    let other = prop::sample::select(vec![
        "'x'", "\"y\"", "B'1'", "$$d$$", "E'\\\\'", "z", "1", "(", ",",
    ])
    .prop_map(str::to_owned);
    let piece = prop_oneof![string, ident, other];
    let sep = prop::sample::select(vec!["", "", " ", "\n", " -- c\n", "/**/", "\n\n"]);
    prop::collection::vec((piece, sep), 1..8)
        .prop_map(|v| v.into_iter().map(|(p, s)| p + s).collect::<String>())
}

fn assert_same_tokens(sql: &str, scs: bool) -> Result<(), TestCaseError> {
    let Ok(tokens) = lex(sql, scs) else {
        return Ok(());
    };
    check_spans(sql, &tokens);
    if let Some(plain) = without_unicode_escapes(sql, &tokens) {
        let again: Vec<Tok> = match lex(&plain, scs) {
            Ok(t) => t.into_iter().map(|t| t.tok).collect(),
            Err(e) => panic!("{sql:?} → {plain:?} fails: {e}"),
        };
        let original: Vec<Tok> = tokens.into_iter().map(|t| t.tok).collect();
        prop_assert_eq!(again, original, "{:?} → {:?}", sql, plain);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn lex_never_panics_and_spans_are_ordered(sql in any::<String>(), scs in any::<bool>()) {
        if let Ok(tokens) = lex(&sql, scs) {
            check_spans(&sql, &tokens);
        }
    }

    #[test]
    fn sqlish_text_lexes_sanely(sql in sqlish(), scs in any::<bool>()) {
        if let Err(e) = lex(&sql, scs) {
            prop_assert!(e.at() <= sql.len());
        }
        assert_same_tokens(&sql, scs)?;
    }

    #[test]
    fn unicode_forms_round_trip(sql in unicode_forms()) {
        assert_same_tokens(&sql, true)?;
    }

    #[test]
    fn without_unicode_escapes_never_panics_on_foreign_tokens(
        sql in sqlish(),
        other in sqlish(),
    ) {
        if let Ok(tokens) = lex(&other, true) {
            let _ = without_unicode_escapes(&sql, &tokens);
        }
    }
}

/// Found by `sqlish_text_lexes_sanely`: a plain literal written right after `u&` would
/// be read as a new `U&` form.
#[test]
fn rewritten_literals_do_not_fuse_with_a_preceding_ampersand() {
    for sql in [
        "SELECT E'N'u&U&'E'$1",
        "SELECT 'U&'u&U&\"u&\"",
        "SELECT a&U&\"b\"",
    ] {
        for scs in [true, false] {
            let Ok(tokens) = super::lex(sql, scs) else {
                continue;
            };
            let rewritten = super::without_unicode_escapes(sql, &tokens).unwrap();
            let again = super::lex(&rewritten, scs).unwrap();
            let values = |t: &[super::Token]| t.iter().map(|t| t.tok.clone()).collect::<Vec<_>>();
            assert_eq!(values(&tokens), values(&again), "{sql} → {rewritten}");
        }
    }
}
