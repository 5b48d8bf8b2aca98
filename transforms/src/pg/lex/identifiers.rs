//! Identifiers: unquoted names (lowered in ASCII only), `"…"` and `U&"…"` bodies, and
//! the truncation to `NAMEDATALEN - 1` bytes that the server applies to all of them.

use super::char_classes::is_ident_cont;
use super::scanner::{Lexer, Raw, RawKind};
use super::{LexError, Tok, MAX_IDENT_BYTES};

/// Truncates an identifier the way `truncate_identifier` does with a UTF-8 database:
/// to at most 63 bytes, at a character boundary.
pub(super) fn truncate_identifier(name: &mut String) {
    if name.len() > MAX_IDENT_BYTES {
        let mut cut = MAX_IDENT_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
}

impl Lexer<'_> {
    /// `<xd>` and `<xui>`. Returns the offset after the closing quote.
    pub(super) fn delimited(
        &mut self,
        start: usize,
        body: usize,
        unicode: bool,
    ) -> Result<usize, LexError> {
        let b = self.b;
        let mut buf: Vec<u8> = Vec::new();
        let mut offsets: Vec<usize> = Vec::new();
        let mut i = body;
        let end = loop {
            let Some(p) = b[i..].iter().position(|&c| c == b'"') else {
                return Err(LexError::UnterminatedQuotedIdentifier { at: start });
            };
            let q = i + p;
            buf.extend_from_slice(&b[i..q]);
            if unicode {
                offsets.extend(i..q);
            }
            if self.at(q + 1) == b'"' {
                buf.push(b'"');
                if unicode {
                    offsets.push(q);
                }
                i = q + 2;
            } else {
                break q + 1;
            }
        };
        if buf.is_empty() {
            return Err(LexError::ZeroLengthIdentifier { at: start });
        }
        let kind = if unicode {
            // Truncated only after de-escaping (parser.c).
            RawKind::Unicode {
                ident: true,
                body: buf,
                offsets,
            }
        } else {
            let mut name =
                String::from_utf8(buf).map_err(|_| LexError::InvalidByteSequence { at: start })?;
            truncate_identifier(&mut name);
            RawKind::Done(Tok::Ident { name, quoted: true })
        };
        self.raw.push(Raw {
            span: start..end,
            kind,
        });
        Ok(end)
    }

    /// {identifier}: keywords and names alike, lowered in ASCII and truncated.
    pub(super) fn identifier(&mut self, i: usize) -> usize {
        let mut j = i + 1;
        while is_ident_cont(self.at(j)) {
            j += 1;
        }
        // `j` stops at ASCII or the end, and `i` is a token start: char boundaries.
        let mut name = self.src[i..j].to_owned();
        name.make_ascii_lowercase();
        truncate_identifier(&mut name);
        self.push(
            i..j,
            Tok::Ident {
                name,
                quoted: false,
            },
        );
        j
    }
}
