//! String constants: `'…'`, `E'…'` with its escapes, `N'…'`, the bodies of `U&'…'`,
//! `B'…'` and `X'…'`, continuations across newlines, and dollar quotes (with the `$n`
//! parameters that start with the same `$`).

use super::char_classes::{is_dolq_cont, is_ident_start, quote_continuation};
use super::scanner::{Lexer, Quoted, Raw, RawKind};
use super::unicode_decode::{
    hex_value, is_surrogate_first, is_surrogate_second, push_code_point, surrogate_pair,
};
use super::{LexError, Tok};

impl Lexer<'_> {
    /// `<xq>`, `<xe>`, `<xus>`, `<xb>`, `<xh>` and their `<xqs>` continuations.
    /// `start` is where the token starts (a prefix letter, if any), `body` just after
    /// the opening quote. Returns the offset after the final closing quote.
    pub(super) fn quoted(
        &mut self,
        start: usize,
        body: usize,
        mode: Quoted,
        national: bool,
    ) -> Result<usize, LexError> {
        let b = self.b;
        let unterminated = || match mode {
            Quoted::Bit => LexError::UnterminatedBitString { at: start },
            Quoted::Hex => LexError::UnterminatedHexString { at: start },
            _ => LexError::UnterminatedString { at: start },
        };
        let doubles = matches!(mode, Quoted::Standard | Quoted::Extended | Quoted::Unicode);
        let mut buf: Vec<u8> = Vec::new();
        let mut offsets: Vec<usize> = Vec::new();
        let mut i = body;
        let end = loop {
            let Some(&c) = b.get(i) else {
                return Err(unterminated());
            };
            match c {
                b'\'' => {
                    if doubles && self.at(i + 1) == b'\'' {
                        buf.push(b'\'');
                        if mode == Quoted::Unicode {
                            offsets.push(i);
                        }
                        i += 2;
                    } else if let Some(q) = quote_continuation(b, i + 1) {
                        i = q + 1;
                    } else {
                        break i + 1;
                    }
                }
                b'\\' if mode == Quoted::Extended => i = self.escape(i, start, &mut buf)?,
                _ => {
                    let stop = b[i..]
                        .iter()
                        .position(|&c| c == b'\'' || (c == b'\\' && mode == Quoted::Extended))
                        .map_or(b.len(), |p| i + p);
                    buf.extend_from_slice(&b[i..stop]);
                    if mode == Quoted::Unicode {
                        offsets.extend(i..stop);
                    }
                    i = stop;
                }
            }
        };
        let span = start..end;
        let kind = match mode {
            Quoted::Unicode => RawKind::Unicode {
                ident: false,
                body: buf,
                offsets,
            },
            _ => {
                // Escapes can make bytes the encoding rejects (pg_verifymbstr).
                if buf.contains(&0) {
                    return Err(LexError::InvalidByteSequence { at: start });
                }
                let text = String::from_utf8(buf)
                    .map_err(|_| LexError::InvalidByteSequence { at: start })?;
                match mode {
                    Quoted::Bit | Quoted::Hex => RawKind::Done(Tok::BitStr(text)),
                    _ if national => RawKind::Done(Tok::Str(text)),
                    _ => RawKind::SimpleStr(text),
                }
            }
        };
        self.raw.push(Raw { span, kind });
        Ok(end)
    }

    /// One backslash escape in `<xe>` at `i`. Returns the offset after it.
    fn escape(&self, i: usize, start: usize, buf: &mut Vec<u8>) -> Result<usize, LexError> {
        let c1 = match self.b.get(i + 1) {
            Some(&c) => c,
            // `<xe>.` keeps the backslash, then the input ends inside the literal.
            None => return Err(LexError::UnterminatedString { at: start }),
        };
        match c1 {
            // {xeoctesc}: up to three octal digits, kept as one byte.
            b'0'..=b'7' => {
                let mut j = i + 1;
                let mut v: u32 = 0;
                while j < i + 4 && matches!(self.at(j), b'0'..=b'7') {
                    v = v * 8 + u32::from(self.at(j) - b'0');
                    j += 1;
                }
                buf.push((v & 0xff) as u8);
                Ok(j)
            }
            // {xehexesc}: one or two hex digits; `\x` alone is {xeescape}.
            b'x' if self.at(i + 2).is_ascii_hexdigit() => {
                let mut j = i + 2;
                let mut v: u32 = 0;
                while j < i + 4 && self.at(j).is_ascii_hexdigit() {
                    v = v * 16 + hex_value(self.at(j));
                    j += 1;
                }
                buf.push((v & 0xff) as u8);
                Ok(j)
            }
            // {xeunicode}, or {xeunicodefail} (listed before {xeescape}).
            b'u' | b'U' => {
                let (cp, next) = self
                    .unicode_escape(i)
                    .ok_or(LexError::InvalidUnicodeEscape { at: i })?;
                if is_surrogate_first(cp) {
                    // <xeu>: the low half must follow at once.
                    let low = if self.at(next) == b'\\' && matches!(self.at(next + 1), b'u' | b'U')
                    {
                        self.unicode_escape(next)
                            .ok_or(LexError::InvalidUnicodeEscape { at: next })?
                    } else {
                        return Err(LexError::InvalidUnicodeSurrogatePair { at: next });
                    };
                    if !is_surrogate_second(low.0) {
                        return Err(LexError::InvalidUnicodeSurrogatePair { at: next });
                    }
                    push_code_point(buf, surrogate_pair(cp, low.0), i)?;
                    Ok(low.1)
                } else if is_surrogate_second(cp) {
                    Err(LexError::InvalidUnicodeSurrogatePair { at: i })
                } else {
                    push_code_point(buf, cp, i)?;
                    Ok(next)
                }
            }
            // {xeescape}: one byte, some of them translated.
            _ => {
                buf.push(match c1 {
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    other => other,
                });
                Ok(i + 2)
            }
        }
    }

    /// `\uXXXX` or `\UXXXXXXXX` at `i` (the backslash): the code point and the offset
    /// after the escape, or `None` for scan.l's {xeunicodefail}.
    fn unicode_escape(&self, i: usize) -> Option<(u32, usize)> {
        let digits = if self.at(i + 1) == b'u' { 4 } else { 8 };
        let hex = self.b.get(i + 2..i + 2 + digits)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let cp = hex.iter().fold(0u32, |v, &d| (v << 4) | hex_value(d));
        Some((cp, i + 2 + digits))
    }

    /// `$`: {param}, {param_junk}, {dolqdelim} (then `<xdolq>`), {dolqfailed}, {other}.
    pub(super) fn dollar(&mut self, i: usize) -> Result<usize, LexError> {
        let c1 = self.at(i + 1);
        if c1.is_ascii_digit() {
            let mut j = i + 1;
            let mut v: u64 = 0;
            while self.at(j).is_ascii_digit() {
                v = (v * 10 + u64::from(self.at(j) - b'0')).min(u64::from(u32::MAX) + 1);
                j += 1;
            }
            if is_ident_start(self.at(j)) {
                return Err(LexError::TrailingJunkAfterParameter { at: i });
            }
            let n = u32::try_from(v)
                .ok()
                .filter(|&n| i32::try_from(n).is_ok())
                .ok_or(LexError::ParameterOutOfRange { at: i })?;
            self.push(i..j, Tok::Param(n));
            return Ok(j);
        }
        let mut j = i + 1;
        if is_ident_start(c1) {
            j += 1;
            while is_dolq_cont(self.at(j)) {
                j += 1;
            }
        }
        if self.at(j) != b'$' {
            // {dolqfailed} or a lone `$`: scan.l returns the `$` itself, which no
            // grammar rule accepts.
            return Err(LexError::UnexpectedCharacter { at: i, ch: '$' });
        }
        // The delimiter ends in ASCII `$`, so both slices fall on char boundaries.
        let delim = &self.src[i..=j];
        let body = j + 1;
        // `<xdolq>` ends at the first occurrence of the opening delimiter: every `$`
        // inside is a token start there, and {dolqdelim} from it matches exactly
        // `$tag$` when the tag follows.
        let Some(p) = self.src[body..].find(delim) else {
            return Err(LexError::UnterminatedDollarQuote { at: i });
        };
        let end = body + p + delim.len();
        self.raw.push(Raw {
            span: i..end,
            kind: RawKind::SimpleStr(self.src[body..body + p].to_owned()),
        });
        Ok(end)
    }
}
