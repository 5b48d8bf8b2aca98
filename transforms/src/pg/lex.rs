//! A lexer for PostgreSQL 15 SQL text that resolves tokens exactly as the server does.
//!
//! Security rules need to know every identifier and every string constant the server
//! will see, so this module follows the server's scanner (`src/backend/parser/scan.l`)
//! and the token post-processing of `src/backend/parser/parser.c` (Unicode escapes and
//! `UESCAPE`) rule by rule, rather than approximating SQL. Where flex would pick the
//! longest match among several rules, the code below says which rule wins and why.
//!
//! # What the server does that this reproduces
//!
//! - Unquoted identifiers and keywords are lowered in ASCII only (`downcase_identifier`
//!   with a UTF-8 database), then truncated to [`NAMEDATALEN`]` - 1` bytes at a
//!   character boundary (`truncate_identifier`); quoted identifiers are truncated too.
//! - `"…"`, `U&"…"` (with `UESCAPE`), `'…'`, `E'…'`, `N'…'`, `U&'…'` (with `UESCAPE`),
//!   `$tag$…$tag$`, `B'…'`, `X'…'`, including the SQL-standard continuation of quoted
//!   literals across whitespace that holds a newline (scan.l's `xqs` state).
//! - Nested `/* … */` comments, `--` comments, and the operator rules (comment starts
//!   inside an operator run, trailing `+`/`-`).
//! - PostgreSQL 15 numeric rules, including the rejection of trailing junk
//!   (`123abc` is an error in PostgreSQL 15, commit 2549f06).
//!
//! # Assumptions
//!
//! - The database encoding is UTF-8 (the input is a `&str`), and the client encoding is
//!   not a client-only one (SJIS, BIG5, GBK, UHC, GB18030), so the default
//!   `backslash_quote = safe_encoding` accepts `\'` in escape strings.
//! - Characters that scan.l hands to the grammar as single-character tokens no rule
//!   accepts (`{`, `}`, `\`, a `$` that starts no parameter or dollar quote, control
//!   characters) are reported as [`LexError::UnexpectedCharacter`]: the server rejects
//!   any statement containing one with a syntax error, so an error here loses nothing.
//!
//! Time is linear in the input and nothing recurses, so hostile input is safe to lex.

use std::ops::Range;

/// PostgreSQL's `NAMEDATALEN`: identifiers keep at most `NAMEDATALEN - 1` bytes.
pub const NAMEDATALEN: usize = 64;

/// The longest identifier the server keeps, in bytes.
const MAX_IDENT_BYTES: usize = NAMEDATALEN - 1;

/// One token with its byte range in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What the server sees.
    pub tok: Tok,
    /// Where it is in the text: for strings continued over newlines, from the opening
    /// quote to the last closing quote; for `U&` forms with a `UESCAPE` clause, from
    /// `U&` to the end of the escape character's string; for `N'…'`, from the `N`.
    pub span: Range<usize>,
}

/// A token as PostgreSQL 15's scanner (plus parser.c's `UESCAPE` handling) resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// Identifier or keyword as the server resolves it: unquoted → ASCII A-Z lowered
    /// only (PostgreSQL's `downcase_identifier` with a UTF-8 database lowers only
    /// ASCII); quoted `"…"` (`""` → `"`) and `U&"…"` (with `\XXXX`, `\+XXXXXX`
    /// escapes, `\\`, and an optional `UESCAPE 'c'` clause) → exact decoded text.
    /// Names longer than 63 bytes are truncated at a character boundary, as the
    /// server truncates them.
    Ident {
        /// The name the server uses.
        name: String,
        /// Written in double quotes (`"…"` or `U&"…"`); keywords are never quoted.
        quoted: bool,
    },
    /// A string constant's value after escapes: `'…'` (`''` → `'`; backslashes
    /// literal when `standard_conforming_strings` is on, escapes when off), `E'…'`
    /// (`\n \t \b \f \r \\ \'`, `\ooo` octal, `\xHH`, `\uXXXX`, `\UXXXXXXXX`),
    /// `U&'…'` (+ `UESCAPE`), `N'…'`, `$tag$…$tag$`. Quoted literals separated by
    /// whitespace that includes at least one newline are one constant, as in scan.l;
    /// the continuation is read with the rules of the literal it continues (so the
    /// continued part of an `E'…'` string honours escapes).
    Str(String),
    /// `B'…'` or `X'…'` bit-string constants (raw content between the quotes,
    /// continuations joined). Which of the two it is: the first byte of the span.
    BitStr(String),
    /// A numeric constant's text as written (`123`, `1.5`, `.5`, `5.`, `1e10`,
    /// `1.5e-3`). No sign: a leading `-` is an operator.
    Number(String),
    /// `$n` positional parameter.
    Param(u32),
    /// An operator per scan.l's rules, as text: runs of `+ - * / < > = ~ ! @ # % ^ & |
    /// ` ?`, where a multi-character operator cannot end in `+` or `-` unless it
    /// contains one of `~ ! @ # % ^ & | ` ?`, and `--` or `/*` inside a run starts a
    /// comment. Also `::`, `:=`, `=>`, `..`, `<=`, `>=`, `<>`, `!=`, and the
    /// single-character operators (`+`, `-`, `*`, `/`, `%`, `^`, `<`, `>`, `=`, …).
    Op(String),
    /// One of `( ) [ ] , ; : .`
    Punct(char),
}

/// Why the text is not something the server's scanner accepts. Every variant carries
/// the byte offset in the text that the server would point at (or near).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LexError {
    /// A nul byte: impossible in a Query message, whose text is nul-terminated.
    #[error("nul byte in query text at byte {at}")]
    NulByte {
        /// Offset of the nul byte.
        at: usize,
    },
    /// `/*` without its matching `*/` (comments nest).
    #[error("unterminated /* comment at byte {at}")]
    UnterminatedComment {
        /// Offset of the outermost `/*`.
        at: usize,
    },
    /// `'…`, `E'…`, `N'…` or `U&'…` without a closing quote.
    #[error("unterminated quoted string at byte {at}")]
    UnterminatedString {
        /// Offset of the literal's start.
        at: usize,
    },
    /// `B'…` without a closing quote.
    #[error("unterminated bit string literal at byte {at}")]
    UnterminatedBitString {
        /// Offset of the literal's start.
        at: usize,
    },
    /// `X'…` without a closing quote.
    #[error("unterminated hexadecimal string literal at byte {at}")]
    UnterminatedHexString {
        /// Offset of the literal's start.
        at: usize,
    },
    /// `"…` or `U&"…` without a closing quote.
    #[error("unterminated quoted identifier at byte {at}")]
    UnterminatedQuotedIdentifier {
        /// Offset of the identifier's start.
        at: usize,
    },
    /// `$tag$…` without the closing `$tag$`.
    #[error("unterminated dollar-quoted string at byte {at}")]
    UnterminatedDollarQuote {
        /// Offset of the opening delimiter.
        at: usize,
    },
    /// `""` or `U&""`.
    #[error("zero-length delimited identifier at byte {at}")]
    ZeroLengthIdentifier {
        /// Offset of the identifier's start.
        at: usize,
    },
    /// A malformed `\u`/`\U` escape in `E'…'`, or a malformed escape in `U&` text.
    #[error("invalid Unicode escape at byte {at}")]
    InvalidUnicodeEscape {
        /// Offset of the escape.
        at: usize,
    },
    /// A Unicode escape naming code point 0 or one above U+10FFFF.
    #[error("invalid Unicode escape value at byte {at}")]
    InvalidUnicodeEscapeValue {
        /// Offset of the escape.
        at: usize,
    },
    /// A UTF-16 surrogate escape that is not half of a high-low pair.
    #[error("invalid Unicode surrogate pair at byte {at}")]
    InvalidUnicodeSurrogatePair {
        /// Offset where the pair breaks.
        at: usize,
    },
    /// `E'…'` escapes (`\xHH`, `\ooo`) that produce a nul byte or invalid UTF-8.
    #[error("invalid byte sequence for encoding \"UTF8\" in the string at byte {at}")]
    InvalidByteSequence {
        /// Offset of the literal's start.
        at: usize,
    },
    /// `U&'…'` while `standard_conforming_strings` is off.
    #[error("unsafe use of string constant with Unicode escapes at byte {at}")]
    UnsafeUnicodeString {
        /// Offset of the literal's start.
        at: usize,
    },
    /// `UESCAPE` followed by something other than `'…'`, `E'…'` or `$…$`.
    #[error("UESCAPE must be followed by a simple string literal at byte {at}")]
    UescapeWithoutString {
        /// Offset of what follows `UESCAPE` (the text's length at end of input).
        at: usize,
    },
    /// `UESCAPE 'c'` where `c` is not one byte, or is a hex digit, `+`, `'`, `"` or
    /// whitespace.
    #[error("invalid Unicode escape character at byte {at}")]
    InvalidUescape {
        /// Offset of the string after `UESCAPE`.
        at: usize,
    },
    /// A number immediately followed by an identifier character (`123abc`, `1.5e`,
    /// `0x1F`): an error since PostgreSQL 15.
    #[error("trailing junk after numeric literal at byte {at}")]
    TrailingJunkAfterNumber {
        /// Offset of the number.
        at: usize,
    },
    /// `$1abc`: an error since PostgreSQL 15.
    #[error("trailing junk after parameter at byte {at}")]
    TrailingJunkAfterParameter {
        /// Offset of the `$`.
        at: usize,
    },
    /// `$n` with `n` above 2147483647 (the server would wrap it into an `int`).
    #[error("parameter number too large at byte {at}")]
    ParameterOutOfRange {
        /// Offset of the `$`.
        at: usize,
    },
    /// An operator of [`NAMEDATALEN`] or more characters.
    #[error("operator too long at byte {at}")]
    OperatorTooLong {
        /// Offset of the operator.
        at: usize,
    },
    /// A character no token starts with (see the module documentation).
    #[error("syntax error at or near {ch:?} at byte {at}")]
    UnexpectedCharacter {
        /// Offset of the character.
        at: usize,
        /// The character.
        ch: char,
    },
}

impl LexError {
    /// The byte offset the error points at.
    pub fn at(&self) -> usize {
        match *self {
            LexError::NulByte { at }
            | LexError::UnterminatedComment { at }
            | LexError::UnterminatedString { at }
            | LexError::UnterminatedBitString { at }
            | LexError::UnterminatedHexString { at }
            | LexError::UnterminatedQuotedIdentifier { at }
            | LexError::UnterminatedDollarQuote { at }
            | LexError::ZeroLengthIdentifier { at }
            | LexError::InvalidUnicodeEscape { at }
            | LexError::InvalidUnicodeEscapeValue { at }
            | LexError::InvalidUnicodeSurrogatePair { at }
            | LexError::InvalidByteSequence { at }
            | LexError::UnsafeUnicodeString { at }
            | LexError::UescapeWithoutString { at }
            | LexError::InvalidUescape { at }
            | LexError::TrailingJunkAfterNumber { at }
            | LexError::TrailingJunkAfterParameter { at }
            | LexError::ParameterOutOfRange { at }
            | LexError::OperatorTooLong { at }
            | LexError::UnexpectedCharacter { at, .. } => at,
        }
    }
}

/// Lexes `sql`. `standard_conforming_strings` is the session's setting (default on).
///
/// # Errors
///
/// Whatever the server's scanner would reject, with the offset it would point at; see
/// [`LexError`].
pub fn lex(sql: &str, standard_conforming_strings: bool) -> Result<Vec<Token>, LexError> {
    if let Some(at) = sql.bytes().position(|c| c == 0) {
        return Err(LexError::NulByte { at });
    }
    let mut lexer = Lexer {
        src: sql,
        b: sql.as_bytes(),
        scs: standard_conforming_strings,
        raw: Vec::new(),
        op_run: None,
    };
    lexer.run()?;
    resolve_unicode(lexer.raw, sql.len())
}

/// Text equivalent to `sql` for a parser that does not know `U&` forms: every `U&"…"`
/// identifier becomes a plain `"…"` identifier (with `"` doubled) and every `U&'…'`
/// string (with its `UESCAPE` clause, if any) a plain `'…'` string (with `'` doubled;
/// if the value contains a backslash, an `E'…'` string with `\\` for a backslash and
/// `''` for a quote) — same meaning, for the PostgreSQL server. Everything else is kept
/// byte for byte. `None` when the text has no `U&` forms (the common case: callers
/// then use the original text).
///
/// `tokens` must be what [`lex`] returned for `sql`; tokens whose spans do not fit
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

/// scan.l's `{space}`.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0c)
}

/// scan.l's `{ident_start}`: `[A-Za-z\200-\377_]`.
fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// scan.l's `{ident_cont}`: `[A-Za-z\200-\377_0-9\$]`.
fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

/// scan.l's `{dolq_cont}`: `{ident_cont}` without `$`.
fn is_dolq_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit()
}

/// scan.l's `{op_chars}`.
fn is_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// The characters that let a multi-character operator end in `+` or `-`.
fn is_non_sql_op_char(c: u8) -> bool {
    matches!(
        c,
        b'~' | b'!' | b'@' | b'#' | b'^' | b'&' | b'|' | b'`' | b'?' | b'%'
    )
}

/// Where scan.l's `{whitespace_with_newline}` starting at `i` ends, if it matches:
/// spaces, tabs, form feeds, newlines and `--` comments (each running to a newline),
/// with at least one newline. `/* */` comments do not count.
fn whitespace_with_newline_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut newline = false;
    loop {
        match b.get(i) {
            Some(b' ' | b'\t' | 0x0c) => i += 1,
            Some(b'\n' | b'\r') => {
                newline = true;
                i += 1;
            }
            Some(b'-') if b.get(i + 1) == Some(&b'-') => {
                // A comment must reach a newline to be followed by a quote.
                let rest = &b[i..];
                i += rest.iter().position(|&c| c == b'\n' || c == b'\r')?;
            }
            _ => break,
        }
    }
    newline.then_some(i)
}

/// scan.l's `{quotecontinue}` after a closing quote: the offset of the quote that
/// continues the literal, if there is one.
fn quote_continuation(b: &[u8], after_quote: usize) -> Option<usize> {
    let end = whitespace_with_newline_end(b, after_quote)?;
    (b.get(end) == Some(&b'\'')).then_some(end)
}

/// Truncates an identifier the way `truncate_identifier` does with a UTF-8 database:
/// to at most 63 bytes, at a character boundary.
fn truncate_identifier(name: &mut String) {
    if name.len() > MAX_IDENT_BYTES {
        let mut cut = MAX_IDENT_BYTES;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
}

/// How the body of a quoted literal is read (scan.l's exclusive states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoted {
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
struct Raw {
    span: Range<usize>,
    kind: RawKind,
}

#[derive(Debug)]
enum RawKind {
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

/// What is known of the operator run a position lies in, so that re-scanning the
/// rest of a run after a split costs nothing (flex's own re-scan is quadratic).
#[derive(Debug, Clone, Copy)]
struct OpRun {
    /// Where the run was first entered.
    from: usize,
    /// End of the operator part: the run's end or the first `/*` / `--` in it.
    end: usize,
    /// Start of the `+`/`-` characters that end `[from, end)`.
    trailing_signs: usize,
    /// Last character in `[from, end)` that lets an operator end in `+` or `-`.
    last_non_sql: Option<usize>,
}

#[derive(Debug)]
struct Lexer<'a> {
    src: &'a str,
    b: &'a [u8],
    scs: bool,
    raw: Vec<Raw>,
    op_run: Option<OpRun>,
}

impl Lexer<'_> {
    /// The byte at `i`, or 0 past the end (the text holds no nul bytes).
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn push(&mut self, span: Range<usize>, tok: Tok) {
        self.raw.push(Raw {
            span,
            kind: RawKind::Done(tok),
        });
    }

    /// scan.l's INITIAL state, one token (or skipped whitespace/comment) per turn.
    fn run(&mut self) -> Result<(), LexError> {
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

    /// `<xq>`, `<xe>`, `<xus>`, `<xb>`, `<xh>` and their `<xqs>` continuations.
    /// `start` is where the token starts (a prefix letter, if any), `body` just after
    /// the opening quote. Returns the offset after the final closing quote.
    fn quoted(
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

    /// `<xd>` and `<xui>`. Returns the offset after the closing quote.
    fn delimited(&mut self, start: usize, body: usize, unicode: bool) -> Result<usize, LexError> {
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

    /// `$`: {param}, {param_junk}, {dolqdelim} (then `<xdolq>`), {dolqfailed}, {other}.
    fn dollar(&mut self, i: usize) -> Result<usize, LexError> {
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

    /// {integer}, {decimal}, {decimalfail}, {real}, {realfail} and the PostgreSQL 15
    /// junk rules, longest match first.
    fn number(&mut self, i: usize) -> Result<usize, LexError> {
        let digits_from = |mut j: usize| {
            while self.at(j).is_ascii_digit() {
                j += 1;
            }
            j
        };
        let mut j = digits_from(i);
        if self.at(j) == b'.' {
            if j > i && self.at(j + 1) == b'.' {
                // {decimalfail}: `1..10` is 1, `..`, 10.
                self.push(i..j, Tok::Number(self.src[i..j].to_owned()));
                return Ok(j);
            }
            j = digits_from(j + 1);
        }
        let mantissa_end = j;
        let junk = LexError::TrailingJunkAfterNumber { at: i };
        if matches!(self.at(j), b'e' | b'E') {
            let mut k = j + 1;
            if matches!(self.at(k), b'+' | b'-') {
                if !self.at(k + 1).is_ascii_digit() {
                    // {realfail} (mantissa, e, sign) outruns {integer_junk}: the
                    // mantissa alone is the number; `e` is rescanned.
                    self.push(
                        i..mantissa_end,
                        Tok::Number(self.src[i..mantissa_end].to_owned()),
                    );
                    return Ok(mantissa_end);
                }
                k += 1;
            }
            if !self.at(k).is_ascii_digit() {
                // `1e`, `1.5ex`: {integer_junk} / {decimal_junk}.
                return Err(junk);
            }
            j = digits_from(k);
        }
        if is_ident_start(self.at(j)) {
            return Err(junk);
        }
        self.push(i..j, Tok::Number(self.src[i..j].to_owned()));
        Ok(j)
    }

    /// {operator}, with scan.l's splitting rules.
    fn operator(&mut self, i: usize) -> Result<usize, LexError> {
        let run = match self.op_run {
            Some(run) if run.from <= i && i < run.end => run,
            _ => {
                let run = self.scan_op_run(i);
                self.op_run = Some(run);
                run
            }
        };
        let mut end = run.end;
        if end - i > 1
            && matches!(self.b[end - 1], b'+' | b'-')
            && run.last_non_sql.is_none_or(|p| p < i)
        {
            // Strip every trailing + and -, keeping at least one character.
            end = run.trailing_signs.max(i + 1);
        }
        if end - i >= NAMEDATALEN {
            return Err(LexError::OperatorTooLong { at: i });
        }
        self.push(i..end, Tok::Op(self.src[i..end].to_owned()));
        Ok(end)
    }

    fn scan_op_run(&self, from: usize) -> OpRun {
        let b = self.b;
        let mut run_end = from;
        while run_end < b.len() && is_op_char(b[run_end]) {
            run_end += 1;
        }
        // The run never starts with a comment (those are matched first), so `end`
        // stays past `from`.
        let end = (from..run_end.saturating_sub(1))
            .find(|&k| matches!((b[k], b[k + 1]), (b'/', b'*') | (b'-', b'-')))
            .unwrap_or(run_end);
        let mut trailing_signs = end;
        while trailing_signs > from && matches!(b[trailing_signs - 1], b'+' | b'-') {
            trailing_signs -= 1;
        }
        let last_non_sql = (from..end).rev().find(|&k| is_non_sql_op_char(b[k]));
        OpRun {
            from,
            end,
            trailing_signs,
            last_non_sql,
        }
    }

    /// {identifier}: keywords and names alike, lowered in ASCII and truncated.
    fn identifier(&mut self, i: usize) -> usize {
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

/// parser.c's lookahead for `UIDENT`/`USCONST`: an optional `UESCAPE 'c'` clause, then
/// de-escaping (and truncation, for identifiers).
fn resolve_unicode(raw: Vec<Raw>, text_len: usize) -> Result<Vec<Token>, LexError> {
    let mut out = Vec::with_capacity(raw.len());
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

fn hex_value(d: u8) -> u32 {
    char::from(d).to_digit(16).unwrap_or(0)
}

fn is_surrogate_first(c: u32) -> bool {
    (0xd800..=0xdbff).contains(&c)
}

fn is_surrogate_second(c: u32) -> bool {
    (0xdc00..=0xdfff).contains(&c)
}

fn surrogate_pair(first: u32, second: u32) -> u32 {
    ((first & 0x3ff) << 10) + 0x10000 + (second & 0x3ff)
}

/// scan.l's `addunicode`: code points 1..=U+10FFFF, as UTF-8.
fn push_code_point(buf: &mut Vec<u8>, cp: u32, at: usize) -> Result<(), LexError> {
    let ch = char::from_u32(cp)
        .filter(|_| cp != 0)
        .ok_or(LexError::InvalidUnicodeEscapeValue { at })?;
    let mut tmp = [0u8; 4];
    buf.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn toks(sql: &str) -> Vec<Tok> {
        toks_scs(sql, true)
    }

    fn toks_scs(sql: &str, scs: bool) -> Vec<Tok> {
        match lex(sql, scs) {
            Ok(t) => t.into_iter().map(|t| t.tok).collect(),
            Err(e) => panic!("lex({sql:?}, {scs}) failed: {e}"),
        }
    }

    fn err(sql: &str) -> LexError {
        err_scs(sql, true)
    }

    fn err_scs(sql: &str, scs: bool) -> LexError {
        match lex(sql, scs) {
            Ok(t) => panic!("lex({sql:?}, {scs}) succeeded: {t:?}"),
            Err(e) => e,
        }
    }

    fn id(name: &str) -> Tok {
        Tok::Ident {
            name: name.to_owned(),
            quoted: false,
        }
    }

    fn qid(name: &str) -> Tok {
        Tok::Ident {
            name: name.to_owned(),
            quoted: true,
        }
    }

    fn s(v: &str) -> Tok {
        Tok::Str(v.to_owned())
    }

    fn num(v: &str) -> Tok {
        Tok::Number(v.to_owned())
    }

    fn op(v: &str) -> Tok {
        Tok::Op(v.to_owned())
    }

    fn p(c: char) -> Tok {
        Tok::Punct(c)
    }

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
}
