//! Rewriting `U&` forms into plain literals with the same meaning, for parsers (such as
//! sqlparser's) that do not know them.

use std::ops::Range;

use super::char_classes::{quote_continuation, whitespace_with_newline_end};
use super::{Tok, Token};

/// Text equivalent to `sql` for a parser that does not know `U&` forms: every `U&"…"`
/// identifier becomes a plain `"…"` identifier (with `"` doubled) and every `U&'…'`
/// string (with its `UESCAPE` clause, if any) a plain `'…'` string (with `'` doubled;
/// if the value contains a backslash, an `E'…'` string with `\\` for a backslash and
/// `''` for a quote) — same meaning, for the PostgreSQL server. Everything else is kept
/// byte for byte. `None` when the text has no `U&` forms (the common case: callers
/// then use the original text).
///
/// `tokens` must be what [`lex`](super::lex) returned for `sql`; tokens whose spans do not fit
/// `sql` are ignored.
///
/// Where a plain literal would fuse with a neighbour (`"a"U&"b"` must not become the
/// one identifier `"a""b"`; `'x'` + newline + `U&'y'` must not become one continued
/// string), a space is inserted, the `E'…'` form is used, or an empty `/**/` comment
/// follows the literal, whichever keeps the tokens apart.
pub fn without_unicode_escapes(sql: &str, tokens: &[Token]) -> Option<String> {
    let b = sql.as_bytes();
    let fits = |t: &Token| {
        t.span.start <= t.span.end
            && t.span.end <= sql.len()
            && sql.is_char_boundary(t.span.start)
            && sql.is_char_boundary(t.span.end)
    };
    let is_unicode_form = |t: &Token| {
        fits(t)
            && t.span.end - t.span.start >= 3
            && matches!(b[t.span.start], b'u' | b'U')
            && b[t.span.start + 1] == b'&'
            && matches!(
                (&t.tok, b[t.span.start + 2]),
                (Tok::Ident { quoted: true, .. }, b'"') | (Tok::Str(_), b'\'')
            )
    };
    if !tokens.iter().any(is_unicode_form) {
        return None;
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut copied = 0;
    let mut prev_end: Option<usize> = None;
    for t in tokens {
        if !fits(t) || t.span.start < copied {
            continue;
        }
        if !is_unicode_form(t) {
            prev_end = Some(t.span.end);
            continue;
        }
        let Range { start, end } = t.span.clone();
        out.push_str(&sql[copied..start]);
        // `u&U&'x'` (an identifier `u`, the operator `&`, a U& string) must not become
        // `u&'x'`, itself a U& string; nor may the literal join a word before it.
        if out.ends_with(|c: char| c == '&' || c.is_alphanumeric() || c == '_' || c == '$') {
            out.push(' ');
        }
        match &t.tok {
            Tok::Ident { name, .. } => {
                // `"a"U&"b"` is two identifiers; `"a""b"` would be one.
                if out.ends_with('"') {
                    out.push(' ');
                }
                out.push('"');
                for ch in name.chars() {
                    if ch == '"' {
                        out.push('"');
                    }
                    out.push(ch);
                }
                out.push('"');
                if b.get(end) == Some(&b'"') {
                    out.push(' ');
                }
            }
            Tok::Str(value) => {
                // A plain '…' right after a quote-ending literal, either adjacent or
                // across whitespace with a newline, would join it (`''` or a
                // continuation); an E'…' string never does.
                let gap = prev_end
                    .filter(|&p| p <= start)
                    .map(|p| (p, start - p))
                    .unwrap_or((start, 0));
                let before_gap = &out.as_bytes()[..out.len() - gap.1];
                let joins_left = before_gap.last() == Some(&b'\'')
                    && (gap.1 == 0 || whitespace_with_newline_end(b, gap.0) == Some(start));
                if joins_left || value.contains('\\') {
                    out.push_str("E'");
                    for ch in value.chars() {
                        match ch {
                            '\\' => out.push_str("\\\\"),
                            '\'' => out.push_str("''"),
                            _ => out.push(ch),
                        }
                    }
                } else {
                    out.push('\'');
                    for ch in value.chars() {
                        if ch == '\'' {
                            out.push('\'');
                        }
                        out.push(ch);
                    }
                }
                out.push('\'');
                // What follows could otherwise continue the new literal: a quote right
                // after it (only possible after a `UESCAPE $$c$$` clause) or whitespace
                // with a newline and then a quote.
                if b.get(end) == Some(&b'\'') {
                    out.push(' ');
                } else if quote_continuation(b, end).is_some() {
                    out.push_str("/**/");
                }
            }
            _ => {}
        }
        copied = end;
        prev_end = Some(end);
    }
    out.push_str(&sql[copied..]);
    Some(out)
}
