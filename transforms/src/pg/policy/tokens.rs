//! Token-level reading of statements: where they split, what COPY reads or writes,
//! which settings a statement changes.

use crate::pg::lex::{Tok, Token};

use super::lists::is_safe_encoding;

/// Names of prepared statements that SQL `EXECUTE` runs in a lexed text, as the server
/// resolves them: wherever `EXECUTE name` appears (`EXPLAIN ANALYZE EXECUTE name` runs
/// it too). A name that follows EXECUTE in another construct (`GRANT EXECUTE ON`,
/// `EXECUTE FUNCTION f`) is listed as well: it only matters if a prepared statement
/// has that name, and then listing it fails closed.
pub fn executed_statements(tokens: &[Token]) -> Vec<String> {
    tokens
        .windows(2)
        .filter_map(|pair| match pair {
            [Token {
                tok:
                    Tok::Ident {
                        name: keyword,
                        quoted: false,
                    },
                ..
            }, Token {
                tok: Tok::Ident { name, .. },
                ..
            }] if keyword.eq_ignore_ascii_case("execute") => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Statements of a token list: split at `;` outside brackets.
pub fn split_statements(tokens: &[Token]) -> Vec<&[Token]> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.tok {
            Tok::Punct('(') | Tok::Punct('[') => depth += 1,
            Tok::Punct(')') | Tok::Punct(']') => depth = depth.saturating_sub(1),
            Tok::Punct(';') if depth == 0 => {
                if i > start {
                    out.push(&tokens[start..i]);
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < tokens.len() {
        out.push(&tokens[start..]);
    }
    out
}

/// The `TO`/`FROM` keyword of a COPY statement (outside brackets) and what follows it.
pub(super) fn copy_target(tokens: &[Token]) -> Option<(bool, Option<&Tok>)> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(1) {
        match &t.tok {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => depth = depth.saturating_sub(1),
            Tok::Ident {
                name,
                quoted: false,
            } if depth == 0 => {
                let lower = name.to_ascii_lowercase();
                if lower == "to" || lower == "from" {
                    return Some((lower == "to", tokens.get(i + 1).map(|t| &t.tok)));
                }
            }
            _ => {}
        }
    }
    None
}

/// How many `COPY … FROM` statements a lexed text holds (each may put the server in
/// copy-in mode).
pub fn copies_from(tokens: &[Token]) -> usize {
    split_statements(tokens).into_iter().filter(|statement| {
        matches!(statement.first().map(|t| &t.tok), Some(Tok::Ident { name, quoted: false }) if name.eq_ignore_ascii_case("copy"))
            && matches!(copy_target(statement), Some((false, _)))
    }).count()
}

pub(super) fn is_copy_to(tokens: &[Token]) -> bool {
    // Unreadable COPY counts as out (fail closed).
    copy_target(tokens).is_none_or(|(to, _)| to)
}

/// `COPY … PROGRAM` and server-side files: outside anything the supervisor sees.
pub(super) fn copy_side_door(tokens: &[Token]) -> Option<String> {
    match copy_target(tokens) {
        Some((_, Some(Tok::Ident { name, quoted: false }))) if name.eq_ignore_ascii_case("program") => {
            Some("COPY … PROGRAM runs a program the supervisor cannot see, refused while rules are in force".into())
        }
        Some((_, Some(Tok::Str(_)))) => Some(
            "COPY to or from a server file reads or writes data the supervisor cannot see, refused while rules are in force".into(),
        ),
        _ => None,
    }
}

/// Whether the text names standard_conforming_strings (a change the server reports only
/// once it has run).
pub fn mentions_standard_strings(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| match &t.tok {
        Tok::Ident { name, .. } => name.eq_ignore_ascii_case("standard_conforming_strings"),
        Tok::Str(s) => s
            .to_ascii_lowercase()
            .contains("standard_conforming_strings"),
        _ => false,
    })
}

/// Whether a string of the statement names a setting that changes how text is lexed.
pub(super) fn mentions_lexer_settings(tokens: &[Token]) -> bool {
    tokens.iter().any(|t| match &t.tok {
        Tok::Str(s) => {
            let s = s.to_ascii_lowercase();
            s.contains("client_encoding") || s.contains("standard_conforming_strings")
        }
        _ => false,
    })
}

/// A statement that changes the client encoding: refused unless to a known-safe one.
pub(super) fn encoding_change(tokens: &[Token]) -> Option<String> {
    let mut values = tokens.iter().filter_map(|t| match &t.tok {
        Tok::Str(s) => Some(s.as_str()),
        Tok::Ident { name, .. } => Some(name.as_str()),
        _ => None,
    });
    let unsafe_value = values.find(|v| {
        let v = v.to_ascii_lowercase();
        !matches!(
            v.as_str(),
            "set" | "session" | "local" | "to" | "names" | "client_encoding" | "show" | "reset"
        ) && !is_safe_encoding(&v)
    });
    unsafe_value.map(|v| {
        format!("changing client_encoding to {v:?} is refused: only encodings whose multibyte characters cannot hide a quote or backslash are allowed while rules are in force")
    })
}

/// Whether a standard `'…'` (or `N'…'`) string literal of the text holds a backslash,
/// which standard_conforming_strings decides the meaning of.
pub(super) fn has_backslash_in_plain_string(sql: &str, tokens: &[Token]) -> bool {
    tokens.iter().any(|t| {
        matches!(t.tok, Tok::Str(_))
            && sql.get(t.span.clone()).is_some_and(|text| {
                matches!(text.as_bytes().first(), Some(b'\'' | b'n' | b'N')) && text.contains('\\')
            })
    })
}
