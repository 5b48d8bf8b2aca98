//! parser.c's post-processing of `U&` forms (the optional `UESCAPE 'c'` clause, then
//! de-escaping), and the code-point helpers that `E'…'` escapes share with it.

use super::char_classes::is_space;
use super::identifiers::truncate_identifier;
use super::scanner::{Raw, RawKind};
use super::{LexError, Tok, Token};

/// parser.c's lookahead for `UIDENT`/`USCONST`: an optional `UESCAPE 'c'` clause, then
/// de-escaping (and truncation, for identifiers).
pub(super) fn resolve_unicode(raw: Vec<Raw>, text_len: usize) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::with_capacity(raw.len());
    if !raw
        .iter()
        .any(|r| matches!(r.kind, RawKind::Unicode { .. }))
    {
        // The common case: no `U&` form, nothing to look ahead for.
        for Raw { span, kind } in raw {
            match kind {
                RawKind::Done(tok) => out.push(Token { tok, span }),
                RawKind::SimpleStr(s) => out.push(Token {
                    tok: Tok::Str(s),
                    span,
                }),
                RawKind::Unicode { .. } => {}
            }
        }
        return Ok(out);
    }
    let mut iter = raw.into_iter().peekable();
    while let Some(Raw { span, kind }) = iter.next() {
        let token = match kind {
            RawKind::Done(tok) => Token { tok, span },
            RawKind::SimpleStr(s) => Token {
                tok: Tok::Str(s),
                span,
            },
            RawKind::Unicode {
                ident,
                body,
                offsets,
            } => {
                let mut span = span;
                let mut escape = b'\\';
                let uescape_follows = matches!(
                    iter.peek(),
                    Some(Raw { kind: RawKind::Done(Tok::Ident { name, quoted: false }), .. })
                        if name == "uescape"
                );
                if uescape_follows {
                    iter.next();
                    match iter.next() {
                        Some(Raw {
                            kind: RawKind::SimpleStr(s),
                            span: esc_span,
                        }) => {
                            match s.as_bytes() {
                                &[c] if valid_uescape_char(c) => escape = c,
                                _ => return Err(LexError::InvalidUescape { at: esc_span.start }),
                            }
                            span.end = esc_span.end;
                        }
                        Some(other) => {
                            return Err(LexError::UescapeWithoutString {
                                at: other.span.start,
                            })
                        }
                        None => return Err(LexError::UescapeWithoutString { at: text_len }),
                    }
                }
                let mut value = udeescape(&body, &offsets, escape, span.start)?;
                let tok = if ident {
                    truncate_identifier(&mut value);
                    Tok::Ident {
                        name: value,
                        quoted: true,
                    }
                } else {
                    Tok::Str(value)
                };
                Token { tok, span }
            }
        };
        out.push(token);
    }
    Ok(out)
}

/// parser.c's `check_uescapechar`.
fn valid_uescape_char(c: u8) -> bool {
    !(c.is_ascii_hexdigit() || c == b'+' || c == b'\'' || c == b'"' || is_space(c))
}

/// parser.c's `str_udeescape`: `<esc>XXXX`, `<esc>+XXXXXX`, `<esc><esc>`.
fn udeescape(
    body: &[u8],
    offsets: &[usize],
    escape: u8,
    token_start: usize,
) -> Result<String, LexError> {
    let at = |k: usize| offsets.get(k).copied().unwrap_or(token_start);
    let hex_at = |k: usize, n: usize| {
        body.get(k..k + n)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .map(|h| h.iter().fold(0u32, |v, &d| (v << 4) | hex_value(d)))
    };
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut pair_first: Option<u32> = None;
    let mut k = 0;
    while k < body.len() {
        if body[k] != escape {
            if pair_first.is_some() {
                return Err(LexError::InvalidUnicodeSurrogatePair { at: at(k) });
            }
            out.push(body[k]);
            k += 1;
            continue;
        }
        let esc_at = at(k);
        if body.get(k + 1) == Some(&escape) {
            if pair_first.is_some() {
                return Err(LexError::InvalidUnicodeSurrogatePair { at: esc_at });
            }
            out.push(escape);
            k += 2;
            continue;
        }
        let (cp, len) = if let Some(cp) = hex_at(k + 1, 4) {
            (cp, 5)
        } else if body.get(k + 1) == Some(&b'+') {
            match hex_at(k + 2, 6) {
                Some(cp) => (cp, 8),
                None => return Err(LexError::InvalidUnicodeEscape { at: esc_at }),
            }
        } else {
            return Err(LexError::InvalidUnicodeEscape { at: esc_at });
        };
        if cp == 0 || cp > 0x10ffff {
            return Err(LexError::InvalidUnicodeEscapeValue { at: esc_at });
        }
        let cp = match pair_first.take() {
            Some(first) if is_surrogate_second(cp) => surrogate_pair(first, cp),
            Some(_) => return Err(LexError::InvalidUnicodeSurrogatePair { at: esc_at }),
            None if is_surrogate_second(cp) => {
                return Err(LexError::InvalidUnicodeSurrogatePair { at: esc_at })
            }
            None => cp,
        };
        if is_surrogate_first(cp) {
            pair_first = Some(cp);
        } else {
            push_code_point(&mut out, cp, esc_at)?;
        }
        k += len;
    }
    if pair_first.is_some() {
        return Err(LexError::InvalidUnicodeSurrogatePair {
            at: offsets.last().map_or(token_start, |&o| o + 1),
        });
    }
    String::from_utf8(out).map_err(|_| LexError::InvalidByteSequence { at: token_start })
}

pub(super) fn hex_value(d: u8) -> u32 {
    char::from(d).to_digit(16).unwrap_or(0)
}

pub(super) fn is_surrogate_first(c: u32) -> bool {
    (0xd800..=0xdbff).contains(&c)
}

pub(super) fn is_surrogate_second(c: u32) -> bool {
    (0xdc00..=0xdfff).contains(&c)
}

pub(super) fn surrogate_pair(first: u32, second: u32) -> u32 {
    ((first & 0x3ff) << 10) + 0x10000 + (second & 0x3ff)
}

/// scan.l's `addunicode`: code points 1..=U+10FFFF, as UTF-8.
pub(super) fn push_code_point(buf: &mut Vec<u8>, cp: u32, at: usize) -> Result<(), LexError> {
    let ch = char::from_u32(cp)
        .filter(|_| cp != 0)
        .ok_or(LexError::InvalidUnicodeEscapeValue { at })?;
    let mut tmp = [0u8; 4];
    buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    Ok(())
}
