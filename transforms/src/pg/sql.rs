//! SQL analysis and predicate rewriting for PostgreSQL statements (sans-IO).
//!
//! Parsing uses `sqlparser` with its PostgreSQL dialect. Three questions are answered:
//! which tables a statement list touches ([`tables_touched`], [`touches_any`]) and how
//! to rewrite `<column> = <literal>` predicates ([`rewrite`]).
//!
//! # Rewriting edits the original text
//!
//! sqlparser's printer normalises SQL (keywords, types, some literals, and it drops
//! comments), so [`rewrite`] never prints the AST: it locates each matched literal
//! through the token spans and splices the replacement into the *original* text. Every
//! byte outside the replaced literals is kept, comments included, and `Ok(None)` says
//! nothing matched (callers then forward the original bytes untouched).
//!
//! # Bounds
//!
//! Hostile input cannot exhaust the stack or run long: input longer than
//! [`MAX_SQL_LEN`] is rejected, the parser runs with a recursion limit of
//! [`PARSER_RECURSION_LIMIT`], and before parsing a linear pass over the tokens bounds
//! the operator chains that sqlparser builds iteratively but drops, prints and partly
//! parses recursively (`1+1+1…`, `a[1][1]…`, `… UNION … UNION …`): an estimate above
//! [`MAX_CHAIN_DEPTH`] is rejected with [`SqlError::ChainTooLong`].
//!
//! # Names
//!
//! Table names are compared on their last name part, lower-cased, quoted or not:
//! `public.employee`, `EMPLOYEE` and `"Employee"` all count as `employee`. This
//! over-matches quoted mixed-case names (PostgreSQL keeps `"Employee"` distinct), which
//! errs on the side of deny rules. References to a CTE are reported like tables.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CopySource, Expr, FromTable, Ident, ObjectName, ObjectNamePart, Query, Select,
    Statement, TableAlias, TableFactor, TableWithJoins, UnaryOperator, UpdateTableFromKind, Value,
    Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer, Whitespace};

/// Longest SQL text analysed, in bytes; longer text gives [`SqlError::TooLong`].
pub const MAX_SQL_LEN: usize = 1 << 20;

/// Recursion limit handed to sqlparser (its own default): deeper nesting of
/// parentheses, subqueries or prefix operators gives [`SqlError::NestingTooDeep`].
pub const PARSER_RECURSION_LIMIT: usize = 50;

/// Largest accepted estimate of operator-chain depth in one statement (see the module
/// documentation); above it [`SqlError::ChainTooLong`].
///
/// The estimate counts, per statement, the operators and operator keywords (`AND`,
/// `OR`, `IS`, `IN`, `::`, …) and opening brackets (`[` twice) at each bracket level
/// since the last comma at that level, summed over the enclosing levels, plus every
/// `UNION`/`INTERSECT`/`EXCEPT` of the statement. Literals, identifiers, commas and
/// clause keywords (`SELECT`, `FROM`, `WHERE`, `JOIN`, `CASE`/`WHEN`/`THEN`, `NULL`, …)
/// are free, so long `IN` lists, wide select lists and multi-row `VALUES` stay well
/// below it; a `WHERE` clause of 500 `AND`-ed comparisons is at the limit.
///
/// Why 1,000: sqlparser drops (and, while backtracking, even parses) these chains
/// recursively outside the stack growth it applies to its parser and visitor, which only
/// guarantees 128 KiB of stack at the entry of a protected function. One chain level
/// costs up to ~135 bytes of stack in a debug build (~70 in release), so 1,000 levels
/// fit in that guarantee; 3,000 `[1]` subscripts measurably did not.
pub const MAX_CHAIN_DEPTH: usize = 1_000;

/// What went wrong analysing or rewriting SQL.
///
/// For deny rules callers treat any error as "touches" (fail closed); for rewrite
/// rules as "nothing to rewrite" (forward the original bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The SQL text is longer than [`MAX_SQL_LEN`].
    #[error("SQL text of {len} bytes is over the {max}-byte analysis limit")]
    TooLong {
        /// Length of the text in bytes.
        len: usize,
        /// The limit, [`MAX_SQL_LEN`].
        max: usize,
    },
    /// An operator chain is too long to analyse safely (see [`MAX_CHAIN_DEPTH`]).
    #[error("SQL operator chain depth estimate {depth} is over the analysis limit {max}")]
    ChainTooLong {
        /// The estimate where the scan stopped (the first value over the limit).
        depth: usize,
        /// The limit, [`MAX_CHAIN_DEPTH`].
        max: usize,
    },
    /// Parentheses, subqueries or prefix operators nest deeper than
    /// [`PARSER_RECURSION_LIMIT`].
    #[error("SQL nests deeper than the parser's recursion limit of {max}")]
    NestingTooDeep {
        /// The limit, [`PARSER_RECURSION_LIMIT`].
        max: usize,
    },
    /// sqlparser (PostgreSQL dialect) cannot tokenize or parse the text, or the body of
    /// a `DO` block cannot be tokenized.
    #[error("SQL is not parsable (sqlparser, PostgreSQL dialect): {reason}")]
    Unparsable {
        /// sqlparser's message, with the line and column where it stopped.
        reason: String,
    },
    /// A rewrite's `from` or `to` is not a single number or string literal.
    #[error("rewrite `{field}` value {text:?} is not a single SQL number or string literal")]
    NotALiteral {
        /// `"from"` or `"to"`.
        field: &'static str,
        /// The text given.
        text: String,
    },
    /// A matched literal could not be mapped back onto the SQL text (an inconsistency
    /// between sqlparser's spans and the text; nothing is rewritten).
    #[error(
        "matched literal at line {line}, column {column} could not be located in the SQL text"
    )]
    LiteralNotLocated {
        /// Line of the literal's span (1-based; 0 for an empty span).
        line: u64,
        /// Column of the literal's span (1-based, in characters).
        column: u64,
    },
}

/// A predicate rewrite: in statements that read `table`, replace comparisons
/// `<column> = <from>` (column optionally qualified by the table name or its alias,
/// either operand order, literal number or string) by `<column> = <to>`.
///
/// `from` and `to` are SQL literal texts: `20` (or `-20`) is the number 20 and
/// matches only a number literal written exactly `20` (`20.0` and `'20'` do not
/// match); `'x'` is the string `x` and matches any string literal spelling of it
/// (`'x'`, `E'x'`, `$$x$$`). `to` is spliced in verbatim.
///
/// Which comparisons count (checked per query block, i.e. per `SELECT`, `UPDATE` or
/// `DELETE` and its `FROM`/`USING`/`JOIN` list):
/// - `alias.column` or `table.column` (also `schema.table.column`) when that qualifier
///   names `table` in this query block or an enclosing one (correlated subqueries);
/// - unqualified `column` only when the innermost query block with a non-empty `FROM`
///   reads exactly one relation and it is `table`: in a join the column may belong to
///   another table, whose columns we cannot know, so qualify it there;
/// - a single-part reference to a CTE named like `table` is not `table`.
///
/// Not rewritten: `$n` placeholders (the value is in Bind), `IN` lists, `BETWEEN`,
/// casts (`'20'::int`), parenthesised operands, assignments (`SET dept = 20`),
/// `INSERT … ON CONFLICT`/`MERGE` conditions, and anything inside `DO` blocks or
/// function bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredicateRewrite {
    /// Table read by the statement (last name part; compared lower-cased).
    pub table: String,
    /// Column compared (compared lower-cased).
    pub column: String,
    /// Literal to look for, as SQL text: `20`, `-1` or `'x'`.
    pub from: String,
    /// Literal to put instead, as SQL text.
    pub to: String,
}

impl PredicateRewrite {
    /// Checks that `from` and `to` are single number or string literals (what
    /// [`rewrite`] would otherwise report), e.g. when a profile is loaded.
    pub fn validate(&self) -> Result<(), SqlError> {
        Compiled::new(self).map(|_| ())
    }
}

/// Lower-cased last name part of every table/view a statement list reads or writes
/// (FROM, JOIN, subqueries, CTEs, INSERT/UPDATE/DELETE targets, COPY table, TRUNCATE, ...).
///
/// Names are listed once, in order of first appearance. Also reported: CTE references,
/// table functions in `FROM` (`generate_series`), and the objects of `DROP`, `LOCK`,
/// `ANALYZE`, `CREATE INDEX`, `CREATE VIEW`.
///
/// Statements whose table references sqlparser does not expose, or that carry code in
/// a string, are over-approximated by every word they contain, including the words of
/// their string literals (one level deep): `DO` blocks, `CREATE FUNCTION`, `CREATE
/// TABLE` (foreign keys), `ALTER TABLE`, `GRANT`, `COMMENT`, and any other statement
/// kind not listed above. So `DO $$ BEGIN DELETE FROM salaries; END $$` reports
/// `salaries` (with `begin`, `delete`, …), and `EXECUTE 'TRUNCATE salaries'` inside it
/// too. Not visible to any SQL analysis: tables read by functions a statement calls
/// (`SELECT f()`), and SQL assembled at run time from pieces.
///
/// A `DO` body that does not tokenize gives [`SqlError::Unparsable`].
pub fn tables_touched(sql: &str) -> Result<Vec<String>, SqlError> {
    ParsedSql::parse(sql)?.tables_touched()
}

/// Whether any statement touches one of `objects` (lower-cased last name part;
/// schema-qualified names in `sql` match on their last part, quoted identifiers
/// compared exactly lower-cased).
///
/// The objects are themselves lower-cased and cut to their last dot-separated part, so
/// `public.Salaries` means `salaries`. See [`tables_touched`] for what is seen.
pub fn touches_any(sql: &str, objects: &[String]) -> Result<bool, SqlError> {
    ParsedSql::parse(sql)?.touches_any(objects)
}

/// Applies rewrites; `Ok(None)` when nothing changed (callers then forward the
/// ORIGINAL bytes untouched — sqlparser's printing normalises text), `Ok(Some(new_sql))`
/// otherwise.
///
/// The new text is the original with only the matched literals replaced (see
/// [`PredicateRewrite`] for the matching rules and the module documentation for why).
/// When two rewrites match the same literal the first one in `rewrites` wins; all
/// rewrites are matched against the original statement (no chaining). With no
/// rewrites the SQL is not even parsed.
pub fn rewrite(sql: &str, rewrites: &[PredicateRewrite]) -> Result<Option<String>, SqlError> {
    let compiled = compile(rewrites)?;
    if compiled.is_empty() {
        return Ok(None);
    }
    ParsedSql::parse(sql)?.rewrite_compiled(&compiled)
}

/// A statement list parsed once, for asking several questions of it (a deny check and a
/// rewrite of the same Query cost one parse, ~10 µs for a short statement in a release
/// build, instead of two).
#[derive(Debug)]
pub struct ParsedSql<'s> {
    sql: &'s str,
    statements: Vec<Statement>,
    /// Words of `DO` blocks, which sqlparser does not parse.
    opaque_words: Vec<String>,
}

impl<'s> ParsedSql<'s> {
    /// Parses `sql` (bounded as described in the module documentation).
    pub fn parse(sql: &'s str) -> Result<Self, SqlError> {
        parse(sql)
    }

    /// The SQL text parsed.
    pub fn sql(&self) -> &'s str {
        self.sql
    }

    /// See [`tables_touched`].
    pub fn tables_touched(&self) -> Result<Vec<String>, SqlError> {
        let mut visitor = TablesVisitor::default();
        // The visitor never breaks.
        let _ = self.statements.visit(&mut visitor);
        let mut names = visitor.names;
        names.extend(self.opaque_words.iter().cloned());
        if visitor.opaque {
            let tokens = tokenize(self.sql)?;
            words_of(&tokens, false, 1, &mut names)?;
        }
        Ok(dedup(names))
    }

    /// See [`touches_any`].
    pub fn touches_any(&self, objects: &[String]) -> Result<bool, SqlError> {
        if objects.is_empty() {
            return Ok(false);
        }
        let touched = self.tables_touched()?;
        Ok(objects
            .iter()
            .any(|object| touched.contains(&last_part(object))))
    }

    /// See [`rewrite`].
    pub fn rewrite(&self, rewrites: &[PredicateRewrite]) -> Result<Option<String>, SqlError> {
        self.rewrite_compiled(&compile(rewrites)?)
    }

    fn rewrite_compiled(&self, compiled: &[Compiled]) -> Result<Option<String>, SqlError> {
        if compiled.is_empty() {
            return Ok(None);
        }
        let mut visitor = RewriteVisitor {
            rules: compiled,
            scopes: Vec::new(),
            statement_scopes: Vec::new(),
            ctes: Vec::new(),
            edits: Vec::new(),
        };
        // The visitor never breaks.
        let _ = self.statements.visit(&mut visitor);
        if visitor.edits.is_empty() {
            return Ok(None);
        }
        splice(self.sql, visitor.edits, compiled).map(Some)
    }
}

fn compile(rewrites: &[PredicateRewrite]) -> Result<Vec<Compiled>, SqlError> {
    rewrites.iter().map(Compiled::new).collect()
}

// ---------------------------------------------------------------------------------
// Parsing

const DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    Tokenizer::new(&DIALECT, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| SqlError::Unparsable {
            reason: e.to_string(),
        })
}

fn parse(sql: &str) -> Result<ParsedSql<'_>, SqlError> {
    if sql.len() > MAX_SQL_LEN {
        return Err(SqlError::TooLong {
            len: sql.len(),
            max: MAX_SQL_LEN,
        });
    }
    let mut tokens = tokenize(sql)?;
    check_chain_depth(&tokens)?;
    blank_inheritance_only(&mut tokens);
    let chunks = split_statements(&tokens);
    if !chunks.iter().any(|chunk| is_do(&tokens[chunk.clone()])) {
        return Ok(ParsedSql {
            sql,
            statements: parse_tokens(tokens)?,
            opaque_words: Vec::new(),
        });
    }
    // sqlparser has no `DO`: parse the other statements one by one, and take the
    // words of each `DO` block (its body included).
    let mut parsed = ParsedSql {
        sql,
        statements: Vec::new(),
        opaque_words: Vec::new(),
    };
    for chunk in chunks {
        let chunk = &tokens[chunk];
        if is_do(chunk) {
            words_of(chunk, true, 2, &mut parsed.opaque_words)?;
        } else if chunk.iter().any(|t| !is_whitespace(&t.token)) {
            parsed.statements.extend(parse_tokens(chunk.to_vec())?);
        }
    }
    Ok(parsed)
}

/// Blanks the inheritance modifier in `FROM ONLY t`, `JOIN ONLY t`, `UPDATE ONLY t`,
/// `TRUNCATE ONLY t`, …: sqlparser's PostgreSQL dialect would read `ONLY` as a table
/// named `only` aliased `t` (or fail on `ONLY s.t`). `ONLY` is reserved in PostgreSQL,
/// so after these words or a comma it can only be that modifier. The token becomes a
/// space with the same span, so every other span is unchanged.
fn blank_inheritance_only(tokens: &mut [TokenWithSpan]) {
    let mut previous: Option<usize> = None;
    for i in 0..tokens.len() {
        let is_only = matches!(&tokens[i].token,
            Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::ONLY);
        if is_only {
            let after_table_position = previous.is_some_and(|p| match &tokens[p].token {
                Token::Comma => true,
                Token::Word(w) => {
                    w.quote_style.is_none()
                        && matches!(
                            w.keyword,
                            Keyword::FROM
                                | Keyword::JOIN
                                | Keyword::UPDATE
                                | Keyword::TABLE
                                | Keyword::TRUNCATE
                                | Keyword::LOCK
                        )
                }
                _ => false,
            });
            if after_table_position {
                tokens[i].token = Token::Whitespace(Whitespace::Space);
                continue;
            }
        }
        if !is_whitespace(&tokens[i].token) {
            previous = Some(i);
        }
    }
}

fn parse_tokens(tokens: Vec<TokenWithSpan>) -> Result<Vec<Statement>, SqlError> {
    Parser::new(&DIALECT)
        .with_recursion_limit(PARSER_RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| match e {
            ParserError::RecursionLimitExceeded => SqlError::NestingTooDeep {
                max: PARSER_RECURSION_LIMIT,
            },
            other => SqlError::Unparsable {
                reason: other.to_string(),
            },
        })
}

fn is_whitespace(token: &Token) -> bool {
    matches!(token, Token::Whitespace(_))
}

/// Token index ranges of the statements: split at `;` outside brackets.
fn split_statements(tokens: &[TokenWithSpan]) -> Vec<std::ops::Range<usize>> {
    let mut chunks = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        match t.token {
            Token::LParen | Token::LBracket => depth += 1,
            Token::RParen | Token::RBracket => depth = depth.saturating_sub(1),
            Token::SemiColon if depth == 0 => {
                chunks.push(start..i);
                start = i + 1;
            }
            _ => {}
        }
    }
    chunks.push(start..tokens.len());
    chunks
}

/// Whether a statement's first token is the keyword `DO`.
fn is_do(chunk: &[TokenWithSpan]) -> bool {
    match chunk.iter().find(|t| !is_whitespace(&t.token)) {
        Some(TokenWithSpan {
            token: Token::Word(w),
            ..
        }) => w.quote_style.is_none() && w.keyword == Keyword::DO,
        _ => false,
    }
}

/// Collects the lower-cased words of `tokens`, descending `levels` levels into string
/// literals (tokenized as SQL). With `strict`, a top-level string that does not
/// tokenize is an error (a `DO` body); deeper strings are free text and skipped.
fn words_of(
    tokens: &[TokenWithSpan],
    strict: bool,
    levels: u32,
    out: &mut Vec<String>,
) -> Result<(), SqlError> {
    for t in tokens {
        let text = match &t.token {
            Token::Word(w) => {
                out.push(w.value.to_lowercase());
                continue;
            }
            Token::SingleQuotedString(s)
            | Token::EscapedStringLiteral(s)
            | Token::NationalStringLiteral(s)
            | Token::UnicodeStringLiteral(s) => s,
            Token::DollarQuotedString(d) => &d.value,
            _ => continue,
        };
        if levels == 0 {
            continue;
        }
        match tokenize(text) {
            Ok(inner) => words_of(&inner, false, levels - 1, out)?,
            Err(SqlError::Unparsable { reason }) if strict => {
                return Err(SqlError::Unparsable {
                    reason: format!("body of DO block{}: {reason}", t.span.start),
                })
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// Rejects statements whose operator chains could overflow the stack in sqlparser's
/// recursive drop/print/parse code (see [`MAX_CHAIN_DEPTH`]). Linear in the tokens.
fn check_chain_depth(tokens: &[TokenWithSpan]) -> Result<(), SqlError> {
    // Counters per open bracket level; `sum` is their total, `set_ops` the set
    // operations of the current statement.
    let mut levels: Vec<usize> = vec![0];
    let mut sum = 0usize;
    let mut set_ops = 0usize;
    for t in tokens {
        let bump = match &t.token {
            Token::Word(w) if w.quote_style.is_some() => 0,
            Token::Word(w) => match w.keyword {
                Keyword::UNION | Keyword::EXCEPT | Keyword::INTERSECT | Keyword::MINUS => {
                    set_ops += 1;
                    1
                }
                k if FREE_KEYWORDS.contains(&k) => 0,
                _ => 1,
            },
            Token::Whitespace(_)
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::EscapedStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Period => 0,
            Token::Comma => {
                if let Some(last) = levels.last_mut() {
                    sum -= *last;
                    *last = 0;
                }
                0
            }
            Token::SemiColon if levels.len() == 1 => {
                levels[0] = 0;
                sum = 0;
                set_ops = 0;
                0
            }
            Token::LParen | Token::LBracket | Token::LBrace => {
                // `[` twice: a subscript/array-type level costs about twice the stack.
                let weight = if t.token == Token::LParen { 1 } else { 2 };
                if let Some(last) = levels.last_mut() {
                    *last += weight;
                }
                sum += weight;
                levels.push(0);
                0
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if levels.len() > 1 {
                    sum -= levels.pop().unwrap_or(0);
                }
                0
            }
            _ => 1,
        };
        if let Some(last) = levels.last_mut() {
            *last += bump;
        }
        sum += bump;
        let depth = sum + set_ops;
        if depth > MAX_CHAIN_DEPTH {
            return Err(SqlError::ChainTooLong {
                depth,
                max: MAX_CHAIN_DEPTH,
            });
        }
    }
    Ok(())
}

/// Keywords that never extend an operator chain: clause keywords (their parts are
/// fields or lists in the AST), literals, and `CASE` parts (a `CASE` nests through the
/// parser's recursion limit, its branches are a list).
const FREE_KEYWORDS: &[Keyword] = &[
    Keyword::NoKeyword,
    Keyword::SELECT,
    Keyword::FROM,
    Keyword::WHERE,
    Keyword::GROUP,
    Keyword::ORDER,
    Keyword::BY,
    Keyword::HAVING,
    Keyword::LIMIT,
    Keyword::OFFSET,
    Keyword::AS,
    Keyword::ON,
    Keyword::USING,
    Keyword::JOIN,
    Keyword::INNER,
    Keyword::LEFT,
    Keyword::RIGHT,
    Keyword::FULL,
    Keyword::OUTER,
    Keyword::CROSS,
    Keyword::NATURAL,
    Keyword::LATERAL,
    Keyword::CASE,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::END,
    Keyword::NULL,
    Keyword::TRUE,
    Keyword::FALSE,
    Keyword::DEFAULT,
    Keyword::ASC,
    Keyword::DESC,
    Keyword::NULLS,
    Keyword::FIRST,
    Keyword::LAST,
    Keyword::DISTINCT,
    Keyword::ALL,
    Keyword::INSERT,
    Keyword::INTO,
    Keyword::VALUES,
    Keyword::UPDATE,
    Keyword::SET,
    Keyword::DELETE,
    Keyword::RETURNING,
    Keyword::WITH,
    Keyword::RECURSIVE,
];

// ---------------------------------------------------------------------------------
// Names

fn ident_lower(ident: &Ident) -> String {
    ident.value.to_lowercase()
}

fn object_last(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident_lower(ident),
        Some(other) => other.to_string().to_lowercase(),
        None => String::new(),
    }
}

/// `Public.Salaries` → `salaries` (profile-side names).
fn last_part(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .trim_matches('"')
        .to_lowercase()
}

fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------
// tables_touched

#[derive(Default)]
struct TablesVisitor {
    names: Vec<String>,
    /// A statement whose table references sqlparser does not fully expose was seen.
    opaque: bool,
}

impl Visitor for TablesVisitor {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.names.push(object_last(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        match statement {
            Statement::Copy { source, .. } => {
                if let CopySource::Table { table_name, .. } = source {
                    self.names.push(object_last(table_name));
                }
            }
            Statement::Drop { names, .. } => self.names.extend(names.iter().map(object_last)),
            // Fully covered by `pre_visit_relation` (or free of tables).
            Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_)
            | Statement::Truncate(_)
            | Statement::Explain { .. }
            | Statement::Prepare { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Discard { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Lock(_)
            | Statement::Analyze(_)
            | Statement::CreateView(_)
            | Statement::CreateIndex(_)
            | Statement::Call(_) => {}
            _ => self.opaque = true,
        }
        ControlFlow::Continue(())
    }
}

// ---------------------------------------------------------------------------------
// rewrite

mod rewrite;
#[cfg(test)]
mod tests;

use rewrite::*;
