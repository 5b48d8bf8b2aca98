//! Tests of identifiers (plain, quoted, `U&`, with `UESCAPE`) and of string constants
//! (plain, `E`, `N`, `U&`, bit strings, continuations).

use super::tests_support::*;
use super::*;

// ---- identifiers -------------------------------------------------------------

#[test]
fn unquoted_identifiers_lower_ascii_only() {
    assert_eq!(
        toks("SELECT Foo, ÀBC, straße_X FROM T"),
        vec![
            id("select"),
            id("foo"),
            p(','),
            id("Àbc"),
            p(','),
            id("straße_x"),
            id("from"),
            id("t")
        ]
    );
}

#[test]
fn quoted_identifiers_keep_case_and_undouble_quotes() {
    assert_eq!(
        toks(r#"SELECT "Foo", "a""b", """", "x y""#),
        vec![
            id("select"),
            qid("Foo"),
            p(','),
            qid("a\"b"),
            p(','),
            qid("\""),
            p(','),
            qid("x y")
        ]
    );
}

#[test]
fn identifiers_may_hold_dollars_and_digits() {
    assert_eq!(
        toks("x$1 a$$b$$ _9"),
        vec![id("x$1"), id("a$$b$$"), id("_9")]
    );
    assert_eq!(toks("ab$c$"), vec![id("ab$c$")]);
}

#[test]
fn long_identifiers_are_truncated_to_63_bytes_at_char_boundary() {
    let long = "A".repeat(70);
    assert_eq!(toks(&long), vec![id(&"a".repeat(63))]);
    assert_eq!(toks(&format!("\"{long}\"")), vec![qid(&"A".repeat(63))]);
    // 62 ASCII bytes then a two-byte character: 64 bytes, cut before the é.
    let multi = format!("{}é", "a".repeat(62));
    assert_eq!(toks(&multi), vec![id(&"a".repeat(62))]);
    let exact = format!("{}é", "a".repeat(61));
    assert_eq!(toks(&exact), vec![id(&exact)]);
    // U& identifiers are truncated after de-escaping.
    let u = format!("U&\"{}\"", r"\0061".repeat(70));
    assert_eq!(toks(&u), vec![qid(&"a".repeat(63))]);
}

#[test]
fn empty_quoted_identifier_is_an_error() {
    assert_eq!(
        err(r#"SELECT """#),
        LexError::ZeroLengthIdentifier { at: 7 }
    );
    assert_eq!(err(r#"U&"""#), LexError::ZeroLengthIdentifier { at: 0 });
}

#[test]
fn u_ampersand_without_quote_is_identifier_u() {
    assert_eq!(toks("U&x"), vec![id("u"), op("&"), id("x")]);
    assert_eq!(toks("xu&'a'"), vec![id("xu"), op("&"), s("a")]);
}

// ---- U& identifiers and strings ------------------------------------------------

#[test]
fn unicode_identifier_escapes() {
    assert_eq!(toks(r#"U&"d\0061t\+000061""#), vec![qid("data")]);
    assert_eq!(toks(r#"u&"\\x""#), vec![qid(r"\x")]);
    assert_eq!(toks(r#"U&"a""b""#), vec![qid("a\"b")]);
    assert_eq!(toks(r#"U&"\D83D\DE00""#), vec![qid("😀")]);
}

#[test]
fn unicode_identifier_with_uescape() {
    let sql = r#"SELECT U&"d!0061t" UESCAPE '!' FROM t"#;
    let t = lex(sql, true).unwrap();
    assert_eq!(t[1].tok, qid("dat"));
    assert_eq!(&sql[t[1].span.clone()], r#"U&"d!0061t" UESCAPE '!'"#);
    assert_eq!(t[2].tok, id("from"));
    // Comments and any case are fine between the parts; `\` is then plain.
    assert_eq!(
        toks("U&\"a\\b!!#0062\" /* c */ uEsCaPe -- x\n '#'"),
        vec![qid("a\\b!!b")]
    );
    // E'…' and $$…$$ are simple string literals too.
    assert_eq!(toks(r#"U&"!0061" UESCAPE E'!'"#), vec![qid("a")]);
    assert_eq!(toks(r#"U&"!0061" UESCAPE $$!$$"#), vec![qid("a")]);
    assert_eq!(toks(r#"U&"!0061" UESCAPE $q$!$q$"#), vec![qid("a")]);
    // A quoted "uescape" is no keyword.
    assert_eq!(
        toks(r#"U&"a" "uescape" '!'"#),
        vec![qid("a"), qid("uescape"), s("!")]
    );
    // UESCAPE on its own is an ordinary (unreserved keyword) identifier.
    assert_eq!(toks("SELECT uescape"), vec![id("select"), id("uescape")]);
}

#[test]
fn invalid_uescape_characters() {
    for bad in [
        "'a'", "'F'", "'0'", "'+'", "''''", "'\"'", "' '", "'\t'", "'\n'", "'ab'", "''", "'é'",
    ] {
        let sql = format!("U&'x' UESCAPE {bad}");
        assert_eq!(
            lex(&sql, true),
            Err(LexError::InvalidUescape { at: 14 }),
            "{sql:?}"
        );
    }
    for good in ["'!'", "'g'", "'\\'", "'#'", "'*'"] {
        let sql = format!("U&'x' UESCAPE {good}");
        assert_eq!(lex(&sql, true).map(|t| t.len()), Ok(1), "{sql:?}");
    }
}

#[test]
fn uescape_needs_a_simple_string() {
    for (sql, at) in [
        ("U&'a' UESCAPE x", 14),
        ("U&'a' UESCAPE U&'!'", 14),
        ("U&'a' UESCAPE N'!'", 14),
        ("U&'a' UESCAPE B'1'", 14),
        ("U&'a' UESCAPE \"!\"", 14),
        ("U&'a' UESCAPE", 13),
    ] {
        assert_eq!(
            lex(sql, true),
            Err(LexError::UescapeWithoutString { at }),
            "{sql:?}"
        );
    }
}

#[test]
fn unicode_strings() {
    assert_eq!(toks(r"U&'\0041\+01F600'"), vec![s("A😀")]);
    assert_eq!(toks(r"U&'it''s \\ ok'"), vec![s(r"it's \ ok")]);
    assert_eq!(toks(r"U&'\D83D\DE00'"), vec![s("😀")]);
    assert_eq!(toks(r"U&'d!0061t' UESCAPE '!'"), vec![s("dat")]);
    // The escape is decoded over the joined continuation.
    assert_eq!(toks("U&'\\00'\n'41'"), vec![s("A")]);
    assert_eq!(err(r"U&'\00'"), LexError::InvalidUnicodeEscape { at: 3 });
    assert_eq!(err(r"U&'\+01F6'"), LexError::InvalidUnicodeEscape { at: 3 });
    assert_eq!(err(r"U&'ab\'"), LexError::InvalidUnicodeEscape { at: 5 });
    assert_eq!(
        err(r"U&'\0000'"),
        LexError::InvalidUnicodeEscapeValue { at: 3 }
    );
    assert_eq!(
        err(r"U&'\+110000'"),
        LexError::InvalidUnicodeEscapeValue { at: 3 }
    );
    assert!(matches!(
        err(r"U&'\D83D'"),
        LexError::InvalidUnicodeSurrogatePair { .. }
    ));
    assert_eq!(
        err(r"U&'\DE00'"),
        LexError::InvalidUnicodeSurrogatePair { at: 3 }
    );
    assert_eq!(
        err(r"U&'\D83Dx'"),
        LexError::InvalidUnicodeSurrogatePair { at: 8 }
    );
    assert_eq!(
        err(r"U&'\D83D\0041'"),
        LexError::InvalidUnicodeSurrogatePair { at: 8 }
    );
}

#[test]
fn unicode_strings_need_standard_conforming_strings() {
    assert_eq!(
        err_scs("SELECT U&'a'", false),
        LexError::UnsafeUnicodeString { at: 7 }
    );
    // Identifiers do not.
    assert_eq!(toks_scs(r#"U&"\0061""#, false), vec![qid("a")]);
}

// ---- plain, E, N strings -----------------------------------------------------------

#[test]
fn standard_strings() {
    assert_eq!(toks("'it''s'"), vec![s("it's")]);
    assert_eq!(toks("''"), vec![s("")]);
    assert_eq!(toks("'é\n'"), vec![s("é\n")]);
    assert_eq!(toks(r"'a\\b'"), vec![s(r"a\\b")]);
    assert_eq!(toks_scs(r"'a\\b'", false), vec![s(r"a\b")]);
}

#[test]
fn backslash_quote_depends_on_standard_conforming_strings() {
    let sql = r"'a\' , b '";
    // On: 'a\' is a string, then `, b` and an unterminated literal.
    assert_eq!(err_scs(sql, true), LexError::UnterminatedString { at: 9 });
    assert_eq!(toks_scs(r"'a\' , b", true), vec![s(r"a\"), p(','), id("b")]);
    // Off: \' is an escaped quote, so it is all one string.
    assert_eq!(toks_scs(sql, false), vec![s("a' , b ")]);
}

#[test]
fn escape_strings() {
    assert_eq!(
        toks(r"E'a\nb\tc\\d\'e\bf\fg\rh\qi\8\x'"),
        vec![s("a\nb\tc\\d'e\u{8}f\u{c}g\rhqi8x")]
    );
    assert_eq!(toks(r"e'\101\7\0101'"), vec![s("A\u{7}\u{8}1")]);
    assert_eq!(toks(r"E'\x41\x4g\x414'"), vec![s("A\u{4}gA4")]);
    assert_eq!(toks(r"E'\xc3\xa9'"), vec![s("é")]);
    assert_eq!(toks(r"E'\u00e9\U0001F600'"), vec![s("é😀")]);
    assert_eq!(toks(r"E'\u00411'"), vec![s("A1")]);
    assert_eq!(toks(r"E'it''s'"), vec![s("it's")]);
    // Surrogate pairs, in either escape form.
    assert_eq!(toks(r"E'\uD83D\uDE00'"), vec![s("😀")]);
    assert_eq!(toks(r"E'\uD83D\U0000DE00'"), vec![s("😀")]);
    assert_eq!(
        err(r"E'\uD83D'"),
        LexError::InvalidUnicodeSurrogatePair { at: 8 }
    );
    assert_eq!(
        err(r"E'\uD83Dx'"),
        LexError::InvalidUnicodeSurrogatePair { at: 8 }
    );
    assert_eq!(
        err(r"E'\uD83D\u0041'"),
        LexError::InvalidUnicodeSurrogatePair { at: 8 }
    );
    assert_eq!(
        err(r"E'\uD83D\u12'"),
        LexError::InvalidUnicodeEscape { at: 8 }
    );
    assert_eq!(
        err(r"E'\uDE00'"),
        LexError::InvalidUnicodeSurrogatePair { at: 2 }
    );
    assert_eq!(err(r"E'\u12'"), LexError::InvalidUnicodeEscape { at: 2 });
    assert_eq!(err(r"E'\u'"), LexError::InvalidUnicodeEscape { at: 2 });
    assert_eq!(
        err(r"E'\U0000004'"),
        LexError::InvalidUnicodeEscape { at: 2 }
    );
    assert_eq!(
        err(r"E'\u0000'"),
        LexError::InvalidUnicodeEscapeValue { at: 2 }
    );
    assert_eq!(
        err(r"E'\U00110000'"),
        LexError::InvalidUnicodeEscapeValue { at: 2 }
    );
    // Escapes that make bytes UTF-8 rejects, or a nul.
    assert_eq!(err(r"E'\xff'"), LexError::InvalidByteSequence { at: 0 });
    assert_eq!(err(r"E'\0'"), LexError::InvalidByteSequence { at: 0 });
    assert_eq!(err(r"E'\400'"), LexError::InvalidByteSequence { at: 0 });
    assert_eq!(err(r"E'\777'"), LexError::InvalidByteSequence { at: 0 });
    assert_eq!(err(r"E'\xc3'"), LexError::InvalidByteSequence { at: 0 });
    // A backslash before a multi-byte character keeps the character.
    assert_eq!(toks(r"E'\é'"), vec![s("é")]);
    assert_eq!(err(r"E'abc\"), LexError::UnterminatedString { at: 0 });
    assert_eq!(err(r"E'abc\'"), LexError::UnterminatedString { at: 0 });
}

#[test]
fn national_strings() {
    let t = lex("SELECT N'a''b'", true).unwrap();
    assert_eq!(
        t[1],
        Token {
            tok: s("a'b"),
            span: 7..14
        }
    );
    assert_eq!(toks_scs(r"n'a\'b'", false), vec![s("a'b")]);
    assert_eq!(toks(r"n'a\'"), vec![s(r"a\")]);
}

#[test]
fn bit_strings_are_raw_and_do_not_double_quotes() {
    assert_eq!(
        toks("B'0101' x'1F' b''"),
        vec![
            Tok::BitStr("0101".into()),
            Tok::BitStr("1F".into()),
            Tok::BitStr(String::new())
        ]
    );
    assert_eq!(toks("B'01''10'"), vec![Tok::BitStr("01".into()), s("10")]);
    assert_eq!(toks(r"X'\'"), vec![Tok::BitStr(r"\".into())]);
    assert_eq!(err("B'01"), LexError::UnterminatedBitString { at: 0 });
    assert_eq!(err(" X'01"), LexError::UnterminatedHexString { at: 1 });
}

#[test]
fn string_continuation_needs_a_newline() {
    let t = lex("SELECT 'a'\n'b' ,", true).unwrap();
    assert_eq!(
        t[1],
        Token {
            tok: s("ab"),
            span: 7..14
        }
    );
    assert_eq!(toks("'a'  \n  'b'"), vec![s("ab")]);
    assert_eq!(toks("'a'\r'b'"), vec![s("ab")]);
    assert_eq!(toks("'a'\r\n\t\x0c'b'\n'c'"), vec![s("abc")]);
    assert_eq!(toks("'a' -- c\n'b'"), vec![s("ab")]);
    assert_eq!(toks("'a'\n-- c\n  -- d\n'b'"), vec![s("ab")]);
    assert_eq!(toks("'a'\n''"), vec![s("a")]);
    // Without a newline: two constants (a syntax error for the server).
    assert_eq!(toks("'a' 'b'"), vec![s("a"), s("b")]);
    assert_eq!(toks("'a'\t'b'"), vec![s("a"), s("b")]);
    // A /* */ comment breaks the continuation.
    assert_eq!(toks("'a'/**/\n'b'"), vec![s("a"), s("b")]);
    assert_eq!(toks("'a'\n/**/'b'"), vec![s("a"), s("b")]);
    // A -- comment swallows what follows on its line.
    assert_eq!(toks("'a'\n-- 'b'"), vec![s("a")]);
    assert_eq!(toks("'a'\n-'b'"), vec![s("a"), op("-"), s("b")]);
    // The continued part is read with the first part's rules.
    assert_eq!(toks("E'\\x41'\n'\\x42'"), vec![s("AB")]);
    assert_eq!(toks("'\\x41'\n'\\x42'"), vec![s("\\x41\\x42")]);
    assert_eq!(toks("N'a'\n'b'"), vec![s("ab")]);
    assert_eq!(toks("B'01'\n'10'"), vec![Tok::BitStr("0110".into())]);
    assert_eq!(toks("X'1F'\n'2'"), vec![Tok::BitStr("1F2".into())]);
    // Only a bare quote continues: prefixed literals and dollar quotes start anew.
    assert_eq!(toks("'a'\nE'b'"), vec![s("a"), s("b")]);
    assert_eq!(toks("'a'\nU&'b'"), vec![s("a"), s("b")]);
    assert_eq!(toks("$$a$$\n'b'"), vec![s("a"), s("b")]);
    assert_eq!(err("'a'\n'b"), LexError::UnterminatedString { at: 0 });
}
