//! The scanner's main loop: scan.l's INITIAL state, which picks the rule for each token
//! from its first characters. The rules themselves live in the sibling modules; the
//! tokens it makes still await parser.c's `UESCAPE` handling.

use std::ops::Range;

use super::char_classes::{is_ident_start, is_op_char, is_space};
use super::numbers_and_operators::OpRun;
use super::{LexError, Tok};

/// How the body of a quoted literal is read (scan.l's exclusive states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Quoted {
    /// `<xq>`: `''` doubles a quote, backslashes are literal.
    Standard,
    /// `<xe>`: `''` and backslash escapes.
    Extended,
    /// `<xus>`: like `<xq>`; the escapes are decoded later (parser.c).
    Unicode,
    /// `<xb>`: raw, no `''`.
    Bit,
    /// `<xh>`: raw, no `''`.
    Hex,
}

/// A token before parser.c's `UESCAPE` handling.
#[derive(Debug)]
pub(super) struct Raw {
    pub(super) span: Range<usize>,
    pub(super) kind: RawKind,
}

#[derive(Debug)]
pub(super) enum RawKind {
    /// Final as it is.
    Done(Tok),
    /// scan.l's `SCONST` from `'…'`, `E'…'` or `$…$`: what `UESCAPE` accepts.
    SimpleStr(String),
    /// `UIDENT` or `USCONST`: text still to be de-escaped, with each byte's offset in
    /// the source for error positions.
    Unicode {
        ident: bool,
        body: Vec<u8>,
        offsets: Vec<usize>,
    },
}

#[derive(Debug)]
pub(super) struct Lexer<'a> {
    pub(super) src: &'a str,
    pub(super) b: &'a [u8],
    pub(super) scs: bool,
    pub(super) raw: Vec<Raw>,
    pub(super) op_run: Option<OpRun>,
}

impl Lexer<'_> {
    /// The byte at `i`, or 0 past the end (the text holds no nul bytes).
    pub(super) fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    pub(super) fn push(&mut self, span: Range<usize>, tok: Tok) {
        self.raw.push(Raw {
            span,
            kind: RawKind::Done(tok),
        });
    }

    /// scan.l's INITIAL state, one token (or skipped whitespace/comment) per turn.
    pub(super) fn run(&mut self) -> Result<(), LexError> {
        let n = self.b.len();
        let mut i = 0;
        while i < n {
            let c = self.b[i];
            let c1 = self.at(i + 1);
            i = match c {
                c if is_space(c) => i + 1,
                // {comment}: ties with {operator} go to {whitespace}, listed first.
                b'-' if c1 == b'-' => self.b[i..]
                    .iter()
                    .position(|&c| c == b'\n' || c == b'\r')
                    .map_or(n, |p| i + p),
                // {xcstart} wins over {operator}: same length, listed first.
                b'/' if c1 == b'*' => self.block_comment(i)?,
                b'b' | b'B' if c1 == b'\'' => self.quoted(i, i + 2, Quoted::Bit, false)?,
                b'x' | b'X' if c1 == b'\'' => self.quoted(i, i + 2, Quoted::Hex, false)?,
                // {xnstart}: the NCHAR keyword, then an ordinary '…' literal.
                b'n' | b'N' if c1 == b'\'' => {
                    let mode = self.plain_mode();
                    self.quoted(i, i + 2, mode, true)?
                }
                b'e' | b'E' if c1 == b'\'' => self.quoted(i, i + 2, Quoted::Extended, false)?,
                b'u' | b'U' if c1 == b'&' => match self.at(i + 2) {
                    b'\'' => {
                        if !self.scs {
                            return Err(LexError::UnsafeUnicodeString { at: i });
                        }
                        self.quoted(i, i + 3, Quoted::Unicode, false)?
                    }
                    b'"' => self.delimited(i, i + 3, true)?,
                    // {xufailed}: the `u` alone is an identifier.
                    _ => {
                        self.push(
                            i..i + 1,
                            Tok::Ident {
                                name: "u".to_owned(),
                                quoted: false,
                            },
                        );
                        i + 1
                    }
                },
                b'\'' => {
                    let mode = self.plain_mode();
                    self.quoted(i, i + 1, mode, false)?
                }
                b'"' => self.delimited(i, i + 1, false)?,
                b'$' => self.dollar(i)?,
                b'0'..=b'9' => self.number(i)?,
                b'.' if c1.is_ascii_digit() => self.number(i)?,
                b'.' if c1 == b'.' => {
                    self.push(i..i + 2, Tok::Op("..".to_owned()));
                    i + 2
                }
                b':' if c1 == b':' || c1 == b'=' => {
                    self.push(i..i + 2, Tok::Op(self.src[i..i + 2].to_owned()));
                    i + 2
                }
                b'(' | b')' | b'[' | b']' | b',' | b';' | b':' | b'.' => {
                    self.push(i..i + 1, Tok::Punct(char::from(c)));
                    i + 1
                }
                c if is_op_char(c) => self.operator(i)?,
                c if is_ident_start(c) => self.identifier(i),
                _ => {
                    let ch = self
                        .src
                        .get(i..)
                        .and_then(|s| s.chars().next())
                        .unwrap_or(char::REPLACEMENT_CHARACTER);
                    return Err(LexError::UnexpectedCharacter { at: i, ch });
                }
            };
        }
        Ok(())
    }

    /// `'…'` is `<xq>` with standard_conforming_strings on, `<xe>` with it off.
    fn plain_mode(&self) -> Quoted {
        if self.scs {
            Quoted::Standard
        } else {
            Quoted::Extended
        }
    }

    /// `<xc>`: nested comments. Returns the offset after the closing `*/`.
    fn block_comment(&self, start: usize) -> Result<usize, LexError> {
        let b = self.b;
        let mut i = start + 2;
        let mut depth = 0usize;
        while i + 1 < b.len() {
            match (b[i], b[i + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    i += 2;
                }
                (b'*', b'/') => {
                    if depth == 0 {
                        return Ok(i + 2);
                    }
                    depth -= 1;
                    i += 2;
                }
                _ => i += 1,
            }
        }
        Err(LexError::UnterminatedComment { at: start })
    }
}
