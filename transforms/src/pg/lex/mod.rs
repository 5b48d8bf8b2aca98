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

mod char_classes;
mod identifiers;
mod numbers_and_operators;
mod scanner;
mod strings;
mod unicode_decode;
mod unicode_rewrite;

#[cfg(test)]
mod tests_identifiers_strings;
#[cfg(test)]
mod tests_operators_numbers;
#[cfg(test)]
mod tests_rewrite_properties;
#[cfg(test)]
mod tests_support;

use std::ops::Range;

use scanner::Lexer;
use unicode_decode::resolve_unicode;

pub use unicode_rewrite::without_unicode_escapes;

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
        raw: Vec::with_capacity(sql.len() / 3 + 4),
        op_run: None,
    };
    lexer.run()?;
    resolve_unicode(lexer.raw, sql.len())
}
