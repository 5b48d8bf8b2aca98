//! Helpers shared by the lexer's tests: tokens and errors of a text, and short
//! constructors for the tokens expected.

use super::*;

pub(super) fn toks(sql: &str) -> Vec<Tok> {
    toks_scs(sql, true)
}

pub(super) fn toks_scs(sql: &str, scs: bool) -> Vec<Tok> {
    match lex(sql, scs) {
        Ok(t) => t.into_iter().map(|t| t.tok).collect(),
        Err(e) => panic!("lex({sql:?}, {scs}) failed: {e}"),
    }
}

pub(super) fn err(sql: &str) -> LexError {
    err_scs(sql, true)
}

pub(super) fn err_scs(sql: &str, scs: bool) -> LexError {
    match lex(sql, scs) {
        Ok(t) => panic!("lex({sql:?}, {scs}) succeeded: {t:?}"),
        Err(e) => e,
    }
}

pub(super) fn id(name: &str) -> Tok {
    Tok::Ident {
        name: name.to_owned(),
        quoted: false,
    }
}

pub(super) fn qid(name: &str) -> Tok {
    Tok::Ident {
        name: name.to_owned(),
        quoted: true,
    }
}

pub(super) fn s(v: &str) -> Tok {
    Tok::Str(v.to_owned())
}

pub(super) fn num(v: &str) -> Tok {
    Tok::Number(v.to_owned())
}

pub(super) fn op(v: &str) -> Tok {
    Tok::Op(v.to_owned())
}

pub(super) fn p(c: char) -> Tok {
    Tok::Punct(c)
}
