//! Tests of comments, operators and punctuation, dollar quotes and parameters, numbers,
//! and of error offsets and token spans.

use super::tests_support::*;
use super::*;

// ---- comments ----------------------------------------------------------------------

#[test]
fn comments_nest() {
    assert_eq!(toks("/* a /* b */ c */ x"), vec![id("x")]);
    assert_eq!(toks("/*/ x */ y"), vec![id("y")]);
    assert_eq!(
        toks("/**/a/***/b/* ** */c"),
        vec![id("a"), id("b"), id("c")]
    );
    assert_eq!(toks("/*/**/*/z"), vec![id("z")]);
    assert_eq!(err("x /* /* */"), LexError::UnterminatedComment { at: 2 });
    assert_eq!(err("/*"), LexError::UnterminatedComment { at: 0 });
    assert_eq!(err("/*/"), LexError::UnterminatedComment { at: 0 });
    assert_eq!(toks("a -- b\nc --"), vec![id("a"), id("c")]);
    assert_eq!(toks("a -- b\rc"), vec![id("a"), id("c")]);
}

#[test]
fn comment_starts_end_operator_runs() {
    assert_eq!(toks("a=-- c\n1"), vec![id("a"), op("="), num("1")]);
    assert_eq!(toks("a--b"), vec![id("a")]);
    assert_eq!(toks("a+/*c*/b"), vec![id("a"), op("+"), id("b")]);
    assert_eq!(toks("*/*x*/"), vec![op("*")]);
    assert_eq!(toks("a@@/* c */b"), vec![id("a"), op("@@"), id("b")]);
    assert_eq!(toks("a<@--x\nb"), vec![id("a"), op("<@"), id("b")]);
}

// ---- operators and punctuation -----------------------------------------------

#[test]
fn trailing_plus_minus_rule() {
    assert_eq!(toks("a<-1"), vec![id("a"), op("<"), op("-"), num("1")]);
    assert_eq!(toks("a=-1"), vec![id("a"), op("="), op("-"), num("1")]);
    assert_eq!(toks("a*-1"), vec![id("a"), op("*"), op("-"), num("1")]);
    assert_eq!(toks("a@-1"), vec![id("a"), op("@-"), num("1")]);
    assert_eq!(toks("a?-b"), vec![id("a"), op("?-"), id("b")]);
    assert_eq!(toks("a%-1"), vec![id("a"), op("%-"), num("1")]);
    assert_eq!(toks("a^-1"), vec![id("a"), op("^-"), num("1")]);
    assert_eq!(toks("a||-1"), vec![id("a"), op("||-"), num("1")]);
    assert_eq!(toks("a!=-1"), vec![id("a"), op("!=-"), num("1")]);
    assert_eq!(toks("a<=-1"), vec![id("a"), op("<="), op("-"), num("1")]);
    assert_eq!(
        toks("a+-+1"),
        vec![id("a"), op("+"), op("-"), op("+"), num("1")]
    );
    assert_eq!(toks("a=>-1"), vec![id("a"), op("=>"), op("-"), num("1")]);
    assert_eq!(toks("a-1"), vec![id("a"), op("-"), num("1")]);
    assert_eq!(toks("a<=>b"), vec![id("a"), op("<=>"), id("b")]);
    assert_eq!(toks("@-@"), vec![op("@-@")]);
}

#[test]
fn special_operators_and_punctuation() {
    assert_eq!(
        toks("a::int, b := 1, f(x => 2) <> 3 != 4 >= 5 <= 6"),
        vec![
            id("a"),
            op("::"),
            id("int"),
            p(','),
            id("b"),
            op(":="),
            num("1"),
            p(','),
            id("f"),
            p('('),
            id("x"),
            op("=>"),
            num("2"),
            p(')'),
            op("<>"),
            num("3"),
            op("!="),
            num("4"),
            op(">="),
            num("5"),
            op("<="),
            num("6"),
        ]
    );
    assert_eq!(
        toks("a[1:2].b;"),
        vec![
            id("a"),
            p('['),
            num("1"),
            p(':'),
            num("2"),
            p(']'),
            p('.'),
            id("b"),
            p(';')
        ]
    );
    assert_eq!(toks(":::"), vec![op("::"), p(':')]);
    assert_eq!(toks("..."), vec![op(".."), p('.')]);
    assert_eq!(toks("a.1"), vec![id("a"), num(".1")]);
}

#[test]
fn operators_are_limited_to_63_characters() {
    assert_eq!(toks(&"~".repeat(63)), vec![op(&"~".repeat(63))]);
    assert_eq!(
        err(&format!("x {}", "~".repeat(64))),
        LexError::OperatorTooLong { at: 2 }
    );
    // Trailing signs are stripped before the length check.
    let mut ops = vec![op("<")];
    ops.extend((0..70).map(|_| op("+")));
    assert_eq!(toks(&format!("<{}", "+".repeat(70))), ops);
}

#[test]
fn characters_no_token_starts_with() {
    for (sql, ch) in [
        ("a { b", '{'),
        ("a } b", '}'),
        (r"a \ b", '\\'),
        ("a \x0b b", '\x0b'),
    ] {
        assert_eq!(
            err(sql),
            LexError::UnexpectedCharacter { at: 2, ch },
            "{sql:?}"
        );
    }
    assert_eq!(err("a\0"), LexError::NulByte { at: 1 });
}

// ---- dollar quotes and parameters --------------------------------------------------

#[test]
fn dollar_quotes() {
    assert_eq!(toks("$$a'b$$"), vec![s("a'b")]);
    assert_eq!(toks("$tag$a$$b$tag$"), vec![s("a$$b")]);
    assert_eq!(toks("$a$ $b$ x $b$ $a$"), vec![s(" $b$ x $b$ ")]);
    assert_eq!(toks("$a$x$ab$y$a$"), vec![s("x$ab$y")]);
    assert_eq!(toks("$b$$a$b$"), vec![s("$a")]);
    assert_eq!(toks("$_$x$_$ $é1$y$é1$"), vec![s("x"), s("y")]);
    assert_eq!(toks("$TAG$x$tag$y$TAG$"), vec![s("x$tag$y")]);
    assert_eq!(toks("1$$x$$"), vec![num("1"), s("x")]);
    let t = lex("SELECT $f$ body $f$;", true).unwrap();
    assert_eq!(
        t[1],
        Token {
            tok: s(" body "),
            span: 7..19
        }
    );
    assert_eq!(
        err("SELECT $q$ x"),
        LexError::UnterminatedDollarQuote { at: 7 }
    );
    assert_eq!(err("$a"), LexError::UnexpectedCharacter { at: 0, ch: '$' });
    assert_eq!(
        err("a $ b"),
        LexError::UnexpectedCharacter { at: 2, ch: '$' }
    );
}

#[test]
fn parameters() {
    assert_eq!(
        toks("$1, $23 + $0,$01"),
        vec![
            Tok::Param(1),
            p(','),
            Tok::Param(23),
            op("+"),
            Tok::Param(0),
            p(','),
            Tok::Param(1)
        ]
    );
    assert_eq!(toks("$2147483647"), vec![Tok::Param(2147483647)]);
    assert_eq!(err("$2147483648"), LexError::ParameterOutOfRange { at: 0 });
    assert_eq!(
        err(&format!("${}", "9".repeat(40))),
        LexError::ParameterOutOfRange { at: 0 }
    );
    assert_eq!(
        err("x = $1abc"),
        LexError::TrailingJunkAfterParameter { at: 4 }
    );
    // A tag cannot start with a digit: `$1$` is a parameter, then a lone `$`.
    assert_eq!(err("$1$"), LexError::UnexpectedCharacter { at: 2, ch: '$' });
    assert_eq!(toks("$1::int"), vec![Tok::Param(1), op("::"), id("int")]);
}

// ---- numbers -----------------------------------------------------------------------

#[test]
fn numbers() {
    assert_eq!(
        toks("1 1.5e3 .5 5. 1e10 1.5e-3 1E+2 99999999999999999999 0.0"),
        vec![
            num("1"),
            num("1.5e3"),
            num(".5"),
            num("5."),
            num("1e10"),
            num("1.5e-3"),
            num("1E+2"),
            num("99999999999999999999"),
            num("0.0")
        ]
    );
    assert_eq!(toks("1..10"), vec![num("1"), op(".."), num("10")]);
    assert_eq!(toks("1...2"), vec![num("1"), op(".."), num(".2")]);
    assert_eq!(toks("1.5.5"), vec![num("1.5"), num(".5")]);
    assert_eq!(toks("1.5..2"), vec![num("1.5"), op(".."), num("2")]);
    assert_eq!(toks("1.e5"), vec![num("1.e5")]);
    // {realfail}: the mantissa, then `e` and the sign are rescanned.
    assert_eq!(toks("1e+ x"), vec![num("1"), id("e"), op("+"), id("x")]);
    assert_eq!(toks("1.5E-"), vec![num("1.5"), id("e"), op("-")]);
    assert_eq!(toks("1-2"), vec![num("1"), op("-"), num("2")]);
    assert_eq!(toks("1$$a$$"), vec![num("1"), s("a")]);
}

#[test]
fn trailing_junk_after_numbers_is_an_error_in_pg15() {
    for sql in [
        "123abc", "0x1F", "1e", "1ex", "1.5e", "1.x", ".5x", "1e5x", "1_000", "1é", "1.5e-3a",
        "1U&'x'",
    ] {
        assert_eq!(
            lex(&format!("SELECT {sql}"), true),
            Err(LexError::TrailingJunkAfterNumber { at: 7 }),
            "{sql:?}"
        );
    }
}

// ---- errors and spans --------------------------------------------------------------

#[test]
fn unterminated_literals_report_their_start() {
    assert_eq!(err("SELECT 'abc"), LexError::UnterminatedString { at: 7 });
    assert_eq!(err("SELECT E'abc"), LexError::UnterminatedString { at: 7 });
    assert_eq!(err("SELECT U&'abc"), LexError::UnterminatedString { at: 7 });
    assert_eq!(err("SELECT N'abc"), LexError::UnterminatedString { at: 7 });
    assert_eq!(
        err("SELECT \"abc"),
        LexError::UnterminatedQuotedIdentifier { at: 7 }
    );
    assert_eq!(
        err("SELECT U&\"abc"),
        LexError::UnterminatedQuotedIdentifier { at: 7 }
    );
    assert_eq!(
        err("SELECT 'abc").to_string(),
        "unterminated quoted string at byte 7"
    );
    assert_eq!(LexError::UnterminatedComment { at: 3 }.at(), 3);
}

#[test]
fn spans_cover_tokens() {
    let sql = "SELECT a.\"B\", $1 FROM t -- x\nWHERE c >= 'd'";
    let t = lex(sql, true).unwrap();
    let texts: Vec<&str> = t.iter().map(|t| &sql[t.span.clone()]).collect();
    assert_eq!(
        texts,
        vec!["SELECT", "a", ".", "\"B\"", ",", "$1", "FROM", "t", "WHERE", "c", ">=", "'d'"]
    );
}

#[test]
fn empty_and_blank_input() {
    assert_eq!(toks(""), vec![]);
    assert_eq!(toks(" \t\n\r\x0c -- x"), vec![]);
    assert_eq!(toks("/* */"), vec![]);
}
