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

/// A literal value as matched: numbers by their text, strings by their content.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lit {
    Number { negative: bool, text: String },
    Text(String),
}

struct Compiled {
    table: String,
    column: String,
    from: Lit,
    to: String,
}

impl Compiled {
    fn new(rule: &PredicateRewrite) -> Result<Self, SqlError> {
        let from = literal_text(rule.from.trim(), "from")?;
        literal_text(rule.to.trim(), "to")?;
        Ok(Compiled {
            table: last_part(&rule.table),
            column: rule.column.trim_matches('"').to_lowercase(),
            from,
            to: rule.to.trim().to_owned(),
        })
    }
}

/// Parses a rule's literal: one number (optionally negative) or one string literal,
/// nothing else (no comments, no second token).
fn literal_text(text: &str, field: &'static str) -> Result<Lit, SqlError> {
    let bad = || SqlError::NotALiteral {
        field,
        text: text.to_owned(),
    };
    if text.len() > 4096 {
        return Err(bad());
    }
    let tokens = tokenize(text).map_err(|_| bad())?;
    let mut significant = Vec::new();
    for t in tokens {
        match t.token {
            Token::Whitespace(Whitespace::Space | Whitespace::Tab | Whitespace::Newline) => {}
            other => significant.push(other),
        }
    }
    match significant.as_slice() {
        [Token::Number(n, false)] => Ok(Lit::Number {
            negative: false,
            text: n.clone(),
        }),
        [Token::Minus, Token::Number(n, false)] => Ok(Lit::Number {
            negative: true,
            text: n.clone(),
        }),
        [Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)] => Ok(Lit::Text(s.clone())),
        [Token::DollarQuotedString(d)] => Ok(Lit::Text(d.value.clone())),
        _ => Err(bad()),
    }
}

/// The literal of a comparison operand with the span of its last token.
fn literal_of(expr: &Expr) -> Option<(Lit, Span)> {
    match expr {
        Expr::Value(v) => {
            let lit = match &v.value {
                Value::Number(n, _) => Lit::Number {
                    negative: false,
                    text: n.clone(),
                },
                Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
                    Lit::Text(s.clone())
                }
                Value::DollarQuotedString(d) => Lit::Text(d.value.clone()),
                _ => return None,
            };
            Some((lit, v.span))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, _) => Some((
                    Lit::Number {
                        negative: true,
                        text: n.clone(),
                    },
                    v.span,
                )),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// A column reference: (qualifier, column), lower-cased.
fn column_of(expr: &Expr) -> Option<(Option<String>, String)> {
    match expr {
        Expr::Identifier(ident) => Some((None, ident_lower(ident))),
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let column = ident_lower(&parts[parts.len() - 1]);
            let qualifier = ident_lower(&parts[parts.len() - 2]);
            Some((Some(qualifier), column))
        }
        _ => None,
    }
}

/// One relation of a query block's `FROM`: the name it is referred to by and, for a
/// base table (not a CTE), its lower-cased last name part.
struct Entry {
    qualifier: Option<String>,
    relation: Option<String>,
}

struct Edit {
    span: Span,
    lit: Lit,
    rule: usize,
}

struct RewriteVisitor<'r> {
    rules: &'r [Compiled],
    /// One scope per query block being visited, innermost last.
    scopes: Vec<Vec<Entry>>,
    /// Per statement being visited: whether it pushed a scope.
    statement_scopes: Vec<bool>,
    /// CTE names visible, per query being visited.
    ctes: Vec<Vec<String>>,
    edits: Vec<Edit>,
}

impl RewriteVisitor<'_> {
    fn is_cte(&self, name: &ObjectName) -> bool {
        name.0.len() == 1 && {
            let last = object_last(name);
            self.ctes.iter().flatten().any(|c| *c == last)
        }
    }

    fn entries(&self, from: &[TableWithJoins], out: &mut Vec<Entry>) {
        for twj in from {
            self.factor(&twj.relation, out);
            for join in &twj.joins {
                self.factor(&join.relation, out);
            }
        }
    }

    fn factor(&self, factor: &TableFactor, out: &mut Vec<Entry>) {
        let alias_name = |alias: &Option<TableAlias>| alias.as_ref().map(|a| ident_lower(&a.name));
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let last = object_last(name);
                out.push(Entry {
                    qualifier: Some(alias_name(alias).unwrap_or_else(|| last.clone())),
                    relation: (!self.is_cte(name)).then_some(last),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.entries(std::slice::from_ref(table_with_joins.as_ref()), out),
            TableFactor::NestedJoin { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. } => out.push(Entry {
                qualifier: alias_name(alias),
                relation: None,
            }),
            _ => out.push(Entry {
                qualifier: None,
                relation: None,
            }),
        }
    }

    /// The base table a column reference resolves to, if we can tell.
    fn resolve(&self, qualifier: Option<&str>) -> Option<&str> {
        match qualifier {
            Some(q) => self
                .scopes
                .iter()
                .rev()
                .find_map(|scope| scope.iter().find(|e| e.qualifier.as_deref() == Some(q)))
                .and_then(|e| e.relation.as_deref()),
            None => match self.scopes.iter().rev().find(|scope| !scope.is_empty()) {
                Some(scope) if scope.len() == 1 => scope[0].relation.as_deref(),
                _ => None,
            },
        }
    }

    fn try_match(&mut self, column: &Expr, literal: &Expr) {
        let (Some((qualifier, column)), Some((lit, span))) =
            (column_of(column), literal_of(literal))
        else {
            return;
        };
        let Some(table) = self.resolve(qualifier.as_deref()) else {
            return;
        };
        let rule = self
            .rules
            .iter()
            .position(|r| r.table == table && r.column == column && r.from == lit);
        if let Some(rule) = rule {
            self.edits.push(Edit { span, lit, rule });
        }
    }
}

impl Visitor for RewriteVisitor<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let names = query
            .with
            .iter()
            .flat_map(|with| with.cte_tables.iter())
            .map(|cte| ident_lower(&cte.alias.name))
            .collect();
        self.ctes.push(names);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.ctes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        let mut scope = Vec::new();
        self.entries(&select.from, &mut scope);
        self.scopes.push(scope);
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _select: &Select) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let mut scope = Vec::new();
        let pushed = match statement {
            Statement::Update(update) => {
                self.entries(std::slice::from_ref(&update.table), &mut scope);
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    self.entries(from, &mut scope);
                }
                true
            }
            Statement::Delete(delete) => {
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                self.entries(from, &mut scope);
                if let Some(using) = &delete.using {
                    self.entries(using, &mut scope);
                }
                true
            }
            _ => false,
        };
        if pushed {
            self.scopes.push(scope);
        }
        self.statement_scopes.push(pushed);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        if self.statement_scopes.pop() == Some(true) {
            self.scopes.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
        {
            self.try_match(left, right);
            self.try_match(right, left);
        }
        ControlFlow::Continue(())
    }
}

/// Maps sqlparser locations (1-based line, 1-based column in characters, lines
/// separated by `\n`) to byte offsets.
struct LineIndex<'s> {
    sql: &'s str,
    starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    fn new(sql: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { sql, starts }
    }

    fn offset(&self, at: Location) -> Option<usize> {
        let line = usize::try_from(at.line).ok()?.checked_sub(1)?;
        let column = usize::try_from(at.column).ok()?.checked_sub(1)?;
        let start = *self.starts.get(line)?;
        let rest = &self.sql[start..];
        if column == 0 {
            return Some(start);
        }
        match rest.char_indices().nth(column) {
            Some((i, _)) => Some(start + i),
            None if rest.chars().count() == column => Some(self.sql.len()),
            None => None,
        }
    }
}

/// Replaces each edited literal in the original text.
fn splice(sql: &str, edits: Vec<Edit>, rules: &[Compiled]) -> Result<String, SqlError> {
    let index = LineIndex::new(sql);
    let mut ranges = Vec::with_capacity(edits.len());
    for edit in edits {
        let not_located = || SqlError::LiteralNotLocated {
            line: edit.span.start.line,
            column: edit.span.start.column,
        };
        let start = index.offset(edit.span.start).ok_or_else(not_located)?;
        let end = index.offset(edit.span.end).ok_or_else(not_located)?;
        let token = sql.get(start..end).ok_or_else(not_located)?;
        // The located text must be the literal itself.
        let unsigned = match &edit.lit {
            Lit::Number { text, .. } => Lit::Number {
                negative: false,
                text: text.clone(),
            },
            text => text.clone(),
        };
        if literal_text(token, "from").ok() != Some(unsigned) {
            return Err(not_located());
        }
        let start = match edit.lit {
            Lit::Number { negative: true, .. } => {
                let before = sql[..start].trim_end();
                if !before.ends_with('-') {
                    return Err(not_located());
                }
                before.len() - 1
            }
            _ => start,
        };
        ranges.push((start, end, edit.rule));
    }
    ranges.sort_unstable();
    ranges.dedup();
    let mut out = String::with_capacity(sql.len() + 16 * ranges.len());
    let mut at = 0;
    for (start, end, rule) in ranges {
        if start < at {
            // Overlapping edits cannot come from distinct literals.
            return Err(SqlError::LiteralNotLocated { line: 0, column: 0 });
        }
        let to = &rules[rule].to;
        out.push_str(&sql[at..start]);
        let before = sql[..start].chars().next_back();
        let after = sql[end..].chars().next();
        if before.is_some_and(|c| glues(c) || (to.starts_with('-') && glues_minus(c))) {
            out.push(' ');
        }
        out.push_str(to);
        if after.is_some_and(glues) {
            out.push(' ');
        }
        at = end;
    }
    out.push_str(&sql[at..]);
    Ok(out)
}

/// Characters that would merge with an adjacent literal into one token.
fn glues(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\'' || c == '.'
}

/// Characters that, right before a `-`, would start a comment (`--`) or form a
/// longer operator with it (PostgreSQL lexes `@-` as one operator, `=-` as two).
fn glues_minus(c: char) -> bool {
    "-~!@#%^&|`?".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(table: &str, column: &str, from: &str, to: &str) -> PredicateRewrite {
        PredicateRewrite {
            table: table.into(),
            column: column.into(),
            from: from.into(),
            to: to.into(),
        }
    }

    fn dept() -> Vec<PredicateRewrite> {
        vec![rule("employee", "dept", "20", "21")]
    }

    /// (input, expected output; `None` = unchanged) under `employee.dept 20 → 21`.
    const DEPT_CASES: &[(&str, Option<&str>)] = &[
        // The basic case, spellings and operand order.
        (
            "SELECT * FROM employee WHERE dept = 20",
            Some("SELECT * FROM employee WHERE dept = 21"),
        ),
        (
            "select * from employee where dept=20",
            Some("select * from employee where dept=21"),
        ),
        (
            "SELECT * FROM EMPLOYEE WHERE DEPT = 20",
            Some("SELECT * FROM EMPLOYEE WHERE DEPT = 21"),
        ),
        (
            "SELECT * FROM \"employee\" WHERE \"dept\" = 20",
            Some("SELECT * FROM \"employee\" WHERE \"dept\" = 21"),
        ),
        (
            "SELECT * FROM employee WHERE 20 = dept",
            Some("SELECT * FROM employee WHERE 21 = dept"),
        ),
        (
            "SELECT * FROM employee WHERE (dept = 20)",
            Some("SELECT * FROM employee WHERE (dept = 21)"),
        ),
        (
            "SELECT dept = 20 AS is_20 FROM employee",
            Some("SELECT dept = 21 AS is_20 FROM employee"),
        ),
        (
            "SELECT * FROM employee WHERE dept = 20 OR dept = 20",
            Some("SELECT * FROM employee WHERE dept = 21 OR dept = 21"),
        ),
        // Schema-qualified tables, qualified columns, aliases.
        (
            "SELECT * FROM public.employee WHERE dept = 20",
            Some("SELECT * FROM public.employee WHERE dept = 21"),
        ),
        (
            "SELECT * FROM employee e WHERE e.dept = 20",
            Some("SELECT * FROM employee e WHERE e.dept = 21"),
        ),
        (
            "SELECT * FROM employee AS e WHERE 20 = e.dept",
            Some("SELECT * FROM employee AS e WHERE 21 = e.dept"),
        ),
        (
            "SELECT * FROM employee WHERE employee.dept = 20",
            Some("SELECT * FROM employee WHERE employee.dept = 21"),
        ),
        (
            "SELECT * FROM public.employee WHERE public.employee.dept = 20",
            Some("SELECT * FROM public.employee WHERE public.employee.dept = 21"),
        ),
        ("SELECT * FROM employee e WHERE x.dept = 20", None),
        (
            "SELECT * FROM ONLY employee WHERE dept = 20",
            Some("SELECT * FROM ONLY employee WHERE dept = 21"),
        ),
        (
            "UPDATE ONLY public.employee SET x = 1 WHERE dept = 20",
            Some("UPDATE ONLY public.employee SET x = 1 WHERE dept = 21"),
        ),
        // Another table aliased `employee` is not employee.
        ("SELECT * FROM other employee WHERE dept = 20", None),
        // Not the literal: other numbers, a string, other operators, lists, casts.
        ("SELECT * FROM employee WHERE dept = 200", None),
        ("SELECT * FROM employee WHERE dept = 20.0", None),
        ("SELECT * FROM employee WHERE dept = '20'", None),
        ("SELECT * FROM employee WHERE dept = -20", None),
        ("SELECT * FROM employee WHERE dept <> 20", None),
        ("SELECT * FROM employee WHERE dept > 20", None),
        ("SELECT * FROM employee WHERE dept IN (20, 30)", None),
        ("SELECT * FROM employee WHERE dept = 20::int", None),
        ("SELECT * FROM employee WHERE (dept) = 20", None),
        ("SELECT * FROM employee WHERE dept = $1", None),
        ("SELECT * FROM employee WHERE other_col = 20", None),
        // Statements not reading employee.
        ("SELECT * FROM other WHERE dept = 20", None),
        ("SELECT * FROM employees WHERE dept = 20", None),
        ("SELECT 20 = 20", None),
        ("INSERT INTO employee (dept) VALUES (20)", None),
        ("UPDATE employee SET dept = 20 WHERE id = 1", None),
        // Joins: unqualified columns are ambiguous, qualified ones are not.
        (
            "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id WHERE dept = 20",
            None,
        ),
        (
            "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id \
             WHERE e.dept = 20 AND h.dept = 20",
            Some(
                "SELECT * FROM employee e JOIN dept_history h ON h.emp = e.id \
                 WHERE e.dept = 21 AND h.dept = 20",
            ),
        ),
        (
            "SELECT * FROM employee, other o WHERE employee.dept = 20 AND o.dept = 20",
            Some("SELECT * FROM employee, other o WHERE employee.dept = 21 AND o.dept = 20"),
        ),
        (
            "SELECT * FROM employee e JOIN other o ON e.dept = 20",
            Some("SELECT * FROM employee e JOIN other o ON e.dept = 21"),
        ),
        (
            "SELECT * FROM (employee e JOIN other o ON true) WHERE e.dept = 20",
            Some("SELECT * FROM (employee e JOIN other o ON true) WHERE e.dept = 21"),
        ),
        ("SELECT * FROM employee, generate_series(1, 2) g WHERE dept = 20", None),
        // Subqueries, derived tables, CTEs, correlation.
        (
            "SELECT * FROM other WHERE id IN (SELECT id FROM employee WHERE dept = 20)",
            Some("SELECT * FROM other WHERE id IN (SELECT id FROM employee WHERE dept = 21)"),
        ),
        (
            "SELECT * FROM (SELECT * FROM employee WHERE dept = 20) AS s WHERE s.dept = 20",
            Some("SELECT * FROM (SELECT * FROM employee WHERE dept = 21) AS s WHERE s.dept = 20"),
        ),
        (
            "WITH e AS (SELECT * FROM employee WHERE dept = 20) SELECT * FROM e WHERE dept = 20",
            Some(
                "WITH e AS (SELECT * FROM employee WHERE dept = 21) SELECT * FROM e WHERE dept = 20",
            ),
        ),
        (
            "WITH employee AS (SELECT 20 AS dept) SELECT * FROM employee WHERE dept = 20",
            None,
        ),
        (
            "WITH x AS (SELECT 1) SELECT * FROM public.employee WHERE dept = 20",
            Some("WITH x AS (SELECT 1) SELECT * FROM public.employee WHERE dept = 21"),
        ),
        (
            "SELECT * FROM employee e WHERE EXISTS \
             (SELECT 1 FROM other o WHERE o.id = e.id AND e.dept = 20)",
            Some(
                "SELECT * FROM employee e WHERE EXISTS \
                 (SELECT 1 FROM other o WHERE o.id = e.id AND e.dept = 21)",
            ),
        ),
        (
            "SELECT * FROM employee e WHERE EXISTS (SELECT 1 FROM other o WHERE dept = 20)",
            None,
        ),
        (
            "SELECT * FROM employee WHERE EXISTS (SELECT 1 WHERE dept = 20)",
            Some("SELECT * FROM employee WHERE EXISTS (SELECT 1 WHERE dept = 21)"),
        ),
        (
            "SELECT (SELECT max(x) FROM employee WHERE dept = 20) FROM other",
            Some("SELECT (SELECT max(x) FROM employee WHERE dept = 21) FROM other"),
        ),
        (
            "SELECT * FROM employee WHERE dept = 20 UNION SELECT * FROM other WHERE dept = 20",
            Some(
                "SELECT * FROM employee WHERE dept = 21 UNION SELECT * FROM other WHERE dept = 20",
            ),
        ),
        // UPDATE / DELETE / INSERT … SELECT.
        (
            "UPDATE employee SET salary = salary + 1 WHERE dept = 20",
            Some("UPDATE employee SET salary = salary + 1 WHERE dept = 21"),
        ),
        (
            "UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND dept = 20",
            None,
        ),
        (
            "UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND e.dept = 20",
            Some("UPDATE employee e SET salary = 1 FROM other o WHERE o.id = e.id AND e.dept = 21"),
        ),
        (
            "DELETE FROM employee WHERE dept = 20 RETURNING *",
            Some("DELETE FROM employee WHERE dept = 21 RETURNING *"),
        ),
        (
            "DELETE FROM employee USING other o WHERE employee.dept = 20",
            Some("DELETE FROM employee USING other o WHERE employee.dept = 21"),
        ),
        (
            "INSERT INTO archive SELECT * FROM employee WHERE dept = 20",
            Some("INSERT INTO archive SELECT * FROM employee WHERE dept = 21"),
        ),
        (
            "UPDATE other SET x = 1 WHERE id IN (SELECT id FROM employee WHERE dept = 20)",
            Some("UPDATE other SET x = 1 WHERE id IN (SELECT id FROM employee WHERE dept = 21)"),
        ),
        // Several statements: only the one reading employee changes.
        (
            "SELECT 1; SELECT * FROM employee WHERE dept = 20; SELECT * FROM other WHERE dept = 20;",
            Some(
                "SELECT 1; SELECT * FROM employee WHERE dept = 21; \
                 SELECT * FROM other WHERE dept = 20;",
            ),
        ),
        // Everything but the literal is kept byte for byte.
        (
            "/* lead */ SELECT  *\n\tFROM employee -- the table\n WHERE dept =\n 20 -- c\n;",
            Some("/* lead */ SELECT  *\n\tFROM employee -- the table\n WHERE dept =\n 21 -- c\n;"),
        ),
        (
            "SELECT 'ä€😀' AS x, * FROM employee\r\nWHERE ü = 'ß' AND dept = 20",
            Some("SELECT 'ä€😀' AS x, * FROM employee\r\nWHERE ü = 'ß' AND dept = 21"),
        ),
        ("/* comment */ SELECT * FROM other -- dept = 20\n", None),
        ("SELECT * FROM employee WHERE name = 'dept = 20' -- dept = 20", None),
        // DO blocks are not rewritten, statements beside them are.
        ("DO $$ BEGIN UPDATE employee SET x = 1 WHERE dept = 20; END $$", None),
        (
            "DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM employee WHERE dept = 20",
            Some("DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM employee WHERE dept = 21"),
        ),
        // Empty input.
        ("", None),
        (";", None),
    ];

    #[test]
    fn dept_rewrites() {
        for (sql, expected) in DEPT_CASES {
            let got = rewrite(sql, &dept()).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got.as_deref(), *expected, "{sql}");
        }
    }

    #[test]
    fn literal_kinds() {
        // (rule from, rule to, input, expected)
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            ("'bob'", "'alice'", "name = 'bob'", Some("name = 'alice'")),
            ("'bob'", "'alice'", "name = E'bob'", Some("name = 'alice'")),
            ("'bob'", "'alice'", "name = $$bob$$", Some("name = 'alice'")),
            (
                "'bob'",
                "'alice'",
                "name = $t$bob$t$",
                Some("name = 'alice'"),
            ),
            ("'bob'", "'alice'", "name = 'Bob'", None),
            ("'bob'", "'alice'", "name = bob", None),
            ("'it''s'", "'its'", "name = 'it''s'", Some("name = 'its'")),
            ("'it''s'", "'its'", "name = E'it\\'s'", Some("name = 'its'")),
            ("'20'", "'21'", "name = '20'", Some("name = '21'")),
            ("'20'", "'21'", "name = 20", None),
            ("-1", "0", "name = -1", Some("name = 0")),
            ("-1", "0", "name = - 1", Some("name = 0")),
            ("-1", "0", "name = 1", None),
            ("-1", "0", "-1 = name", Some("0 = name")),
            ("20", "-5", "name=20", Some("name=-5")),
            ("20", "-5", "20=name", Some("-5=name")),
            ("20", "-5", "true AND(20=name)", Some("true AND(-5=name)")),
            ("20", "'x'", "name = 20", Some("name = 'x'")),
            // A replacement never glues onto its neighbours.
            ("'20'", "21", "name='20'AND true", Some("name=21 AND true")),
            ("  20 ", " 21  ", "name = 20", Some("name = 21")),
        ];
        for (from, to, predicate, expected) in cases {
            let sql = format!("SELECT * FROM t WHERE {predicate}");
            let got = rewrite(&sql, &[rule("t", "name", from, to)])
                .unwrap_or_else(|e| panic!("{from} → {to} on {sql}: {e}"));
            let expected = expected.map(|p| format!("SELECT * FROM t WHERE {p}"));
            assert_eq!(got, expected, "{from} → {to} on {sql}");
        }
    }

    #[test]
    fn rewrite_rules_must_be_literals() {
        for (from, to) in [
            ("20", "21 OR 1=1"),
            ("20", "21 -- rest"),
            ("20", "21 /* c */"),
            ("20", "21; DROP TABLE x"),
            ("20", "$1"),
            ("20", ""),
            ("20", "dept"),
            ("20", "(21)"),
            ("dept", "21"),
            ("'unterminated", "21"),
            ("20 20", "21"),
        ] {
            let r = rule("employee", "dept", from, to);
            let err = r.validate().unwrap_err();
            assert!(matches!(err, SqlError::NotALiteral { .. }), "{from} → {to}");
            assert_eq!(rewrite("SELECT 1", &[r]), Err(err));
        }
        for (from, to) in [
            ("20", "21"),
            ("'a'", "'b'"),
            ("-1", "E'x'"),
            ("1.5", "$$y$$"),
        ] {
            assert_eq!(rule("t", "c", from, to).validate(), Ok(()), "{from} → {to}");
        }
    }

    #[test]
    fn several_rules() {
        let rules = [
            rule("employee", "dept", "20", "21"),
            rule("employee", "dept", "20", "99"),
            rule("employee", "dept", "21", "22"),
            rule("Public.Project", "Owner", "'a'", "'b'"),
        ];
        let sql = "SELECT * FROM employee WHERE dept = 20 OR dept = 21; \
                   SELECT * FROM project WHERE owner = 'a' AND dept = 20";
        assert_eq!(
            rewrite(sql, &rules).unwrap().as_deref(),
            Some(
                "SELECT * FROM employee WHERE dept = 21 OR dept = 22; \
                 SELECT * FROM project WHERE owner = 'b' AND dept = 20"
            )
        );
        assert_eq!(rewrite(sql, &[]), Ok(None));
    }

    #[test]
    fn parsed_once_answers_everything() {
        let sql = "SELECT * FROM employee e JOIN salaries s ON s.id = e.id WHERE e.dept = 20";
        let parsed = ParsedSql::parse(sql).unwrap();
        assert_eq!(parsed.sql(), sql);
        assert_eq!(
            parsed.tables_touched(),
            Ok(vec!["employee".into(), "salaries".into()])
        );
        assert_eq!(parsed.touches_any(&["audit_log".into()]), Ok(false));
        assert_eq!(parsed.touches_any(&["salaries".into()]), Ok(true));
        assert_eq!(parsed.touches_any(&[]), Ok(false));
        assert_eq!(parsed.rewrite(&dept()), rewrite(sql, &dept()));
        assert_eq!(parsed.rewrite(&[]), Ok(None));
        assert!(parsed.rewrite(&[rule("t", "c", "x", "1")]).is_err());
    }

    /// (input, tables touched in order)
    const TABLE_CASES: &[(&str, &[&str])] = &[
        ("SELECT * FROM employee", &["employee"]),
        ("SELECT * FROM public.Employee", &["employee"]),
        ("select * from \"Salaries\"", &["salaries"]),
        ("select * from salaries", &["salaries"]),
        ("SELECT * FROM ONLY salaries FOR UPDATE", &["salaries"]),
        (
            "SELECT * FROM ONLY public.salaries s, ONLY b JOIN ONLY c ON true",
            &["salaries", "b", "c"],
        ),
        (
            "UPDATE ONLY a SET x = 1; DELETE FROM ONLY b; LOCK ONLY c",
            &["a", "b", "c"],
        ),
        ("SELECT * FROM a FETCH FIRST 1 ROWS ONLY", &["a"]),
        (
            "SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c.d USING (id)",
            &["a", "b", "d"],
        ),
        (
            "SELECT * FROM a WHERE id IN (SELECT id FROM b WHERE x = (SELECT 1 FROM c))",
            &["a", "b", "c"],
        ),
        ("SELECT * FROM (SELECT * FROM inner_t) AS s", &["inner_t"]),
        (
            "WITH w AS (SELECT * FROM base) SELECT * FROM w JOIN other ON true",
            &["base", "w", "other"],
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT n FROM r) SELECT * FROM r",
            &["r"],
        ),
        (
            "SELECT 1 FROM a UNION SELECT 1 FROM b EXCEPT SELECT 1 FROM c",
            &["a", "b", "c"],
        ),
        ("SELECT * FROM generate_series(1, 3)", &["generate_series"]),
        ("SELECT * FROM a, LATERAL (SELECT * FROM b) x", &["a", "b"]),
        ("INSERT INTO a SELECT * FROM b", &["a", "b"]),
        (
            "INSERT INTO s.a (x) VALUES (1) ON CONFLICT (x) DO NOTHING",
            &["a"],
        ),
        (
            "UPDATE a SET x = (SELECT 1 FROM b) FROM c WHERE a.id = c.id",
            &["a", "b", "c"],
        ),
        (
            "DELETE FROM a USING b WHERE a.id = b.id RETURNING *",
            &["a", "b"],
        ),
        (
            "MERGE INTO a USING b ON a.id = b.id WHEN MATCHED THEN DELETE",
            &["a", "b"],
        ),
        ("COPY salaries TO STDOUT", &["salaries"]),
        ("COPY public.salaries (a, b) FROM STDIN", &["salaries"]),
        ("COPY (SELECT * FROM salaries) TO STDOUT", &["salaries"]),
        ("TRUNCATE a, s.b", &["a", "b"]),
        ("TRUNCATE TABLE ONLY a RESTART IDENTITY CASCADE", &["a"]),
        ("DROP TABLE IF EXISTS x.salaries, y", &["salaries", "y"]),
        (
            "LOCK TABLE salaries IN ACCESS EXCLUSIVE MODE",
            &["salaries"],
        ),
        ("EXPLAIN ANALYZE DELETE FROM a", &["a"]),
        ("PREPARE p AS SELECT * FROM a WHERE id = $1", &["a"]),
        ("DECLARE c CURSOR FOR SELECT * FROM a", &["a"]),
        ("CREATE VIEW v AS SELECT * FROM a", &["v", "a"]),
        ("CREATE INDEX i ON a (x)", &["a"]),
        (
            "SELECT * FROM a; SELECT * FROM b; SELECT * FROM a",
            &["a", "b"],
        ),
        ("SELECT 1", &[]),
        ("SELECT f(x) FROM (VALUES (1)) v(x)", &[]),
        ("BEGIN; SET search_path = x; SHOW search_path; COMMIT", &[]),
        (
            "EXECUTE p(1); DEALLOCATE p; LISTEN ch; NOTIFY ch; DISCARD ALL",
            &[],
        ),
        ("", &[]),
        (" ; ;", &[]),
    ];

    #[test]
    fn tables() {
        for (sql, expected) in TABLE_CASES {
            let got = tables_touched(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(got, *expected, "{sql}");
        }
    }

    /// Statements seen only as words: (input, a word that must be reported).
    const OPAQUE_CASES: &[(&str, &str)] = &[
        ("DO $$ BEGIN DELETE FROM salaries; END $$", "salaries"),
        (
            "DO LANGUAGE plpgsql $$ BEGIN PERFORM * FROM s.salaries; END $$",
            "salaries",
        ),
        ("DO 'BEGIN TRUNCATE salaries; END'", "salaries"),
        (
            "DO $do$ BEGIN EXECUTE 'TRUNCATE ' || 'x'; EXECUTE 'DELETE FROM salaries'; END $do$",
            "salaries",
        ),
        (
            "DO $$ BEGIN RAISE NOTICE 'it''s %', 1; UPDATE salaries SET x = 1; END $$",
            "salaries",
        ),
        (
            "SELECT 1; DO $$ BEGIN PERFORM 1; END $$; SELECT * FROM a",
            "a",
        ),
        (
            "CREATE TABLE z (a int REFERENCES salaries (id))",
            "salaries",
        ),
        ("CREATE TABLE z AS SELECT * FROM salaries", "salaries"),
        (
            "ALTER TABLE z ADD FOREIGN KEY (a) REFERENCES salaries (id)",
            "salaries",
        ),
        ("GRANT SELECT ON salaries TO bob", "salaries"),
        ("COMMENT ON TABLE salaries IS 'pay'", "salaries"),
        ("VACUUM salaries", "salaries"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM salaries $$",
            "salaries",
        ),
        (
            "CREATE TRIGGER t AFTER INSERT ON salaries FOR EACH ROW EXECUTE FUNCTION f()",
            "salaries",
        ),
    ];

    #[test]
    fn opaque_statements_report_their_words() {
        for (sql, word) in OPAQUE_CASES {
            let got = tables_touched(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert!(got.iter().any(|w| w == word), "{sql}: {got:?}");
            assert_eq!(touches_any(sql, &[word.to_string()]), Ok(true), "{sql}");
        }
        assert_eq!(
            touches_any("DO $$ BEGIN PERFORM 1; END $$", &["salaries".into()]),
            Ok(false)
        );
    }

    #[test]
    fn do_body_that_does_not_tokenize_is_unparsable() {
        let err = tables_touched("DO $$ BEGIN SELECT 'unterminated; END $$").unwrap_err();
        let SqlError::Unparsable { reason } = &err else {
            panic!("{err:?}");
        };
        assert!(reason.contains("DO block"), "{reason}");
        assert!(reason.contains("Line: 1, Column: 4"), "{reason}");
        assert!(touches_any("DO $$ x $$; DO $$ ' $$", &["x".into()]).is_err());
    }

    #[test]
    fn touches() {
        let objects = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, &[&str], bool)] = &[
            ("select * from \"Salaries\"", &["salaries"], true),
            ("select * from salaries", &["salaries"], true),
            ("SELECT * FROM public.salaries s", &["salaries"], true),
            ("SELECT * FROM salaries", &["public.Salaries"], true),
            ("SELECT * FROM salaries", &["SALARIES"], true),
            ("SELECT * FROM salaries_archive", &["salaries"], false),
            ("SELECT salaries FROM pay", &["salaries"], false),
            ("SELECT 'salaries' FROM pay", &["salaries"], false),
            ("SELECT * FROM pay -- salaries", &["salaries"], false),
            (
                "SELECT * FROM pay WHERE id IN (SELECT id FROM audit_log)",
                &["audit_log"],
                true,
            ),
            (
                "WITH x AS (DELETE FROM audit_log RETURNING *) SELECT * FROM x",
                &["audit_log"],
                true,
            ),
            (
                "SELECT 1; COPY audit_log TO STDOUT",
                &["salaries", "audit_log"],
                true,
            ),
            ("SELECT 1", &["salaries", "audit_log"], false),
            ("SELECT * FROM salaries", &[], false),
        ];
        for (sql, objs, expected) in cases {
            assert_eq!(
                touches_any(sql, &objects(objs)),
                Ok(*expected),
                "{sql} {objs:?}"
            );
        }
    }

    #[test]
    fn unparsable_sql_is_an_error() {
        for sql in [
            "SELEC * FROM salaries",
            "SELECT * FROM salaries WHERE",
            "SELECT 'unterminated FROM salaries",
            "REFRESH MATERIALIZED VIEW salaries",
            "\u{0}",
        ] {
            let err = tables_touched(sql).unwrap_err();
            assert!(matches!(err, SqlError::Unparsable { .. }), "{sql}: {err:?}");
            assert!(touches_any(sql, &["salaries".into()]).is_err(), "{sql}");
            assert!(rewrite(sql, &dept()).is_err(), "{sql}");
        }
        let err = tables_touched("SELEC * FROM salaries").unwrap_err();
        assert!(err.to_string().contains("Line: 1, Column: 1"), "{err}");
    }

    #[test]
    fn limits() {
        let long = format!("SELECT 1 -- {}", "x".repeat(MAX_SQL_LEN));
        assert_eq!(
            tables_touched(&long),
            Err(SqlError::TooLong {
                len: long.len(),
                max: MAX_SQL_LEN
            })
        );
        assert!(matches!(
            rewrite(&long, &dept()),
            Err(SqlError::TooLong { .. })
        ));

        // Chains sqlparser drops and prints recursively, near 1 MiB each.
        let hostile = [
            format!("SELECT 1{}", "+1".repeat(500_000)),
            format!(
                "SELECT * FROM t WHERE {}",
                vec!["a = 1"; 100_000].join(" AND ")
            ),
            format!("SELECT a{}", "[1]".repeat(300_000)),
            format!("SELECT a::int{}", "[]".repeat(500_000)),
            format!("SELECT 1{}", " UNION SELECT 1".repeat(60_000)),
            format!("SELECT 1{}", " IS NULL".repeat(100_000)),
            format!("SELECT {}1", "(".repeat(500_000)),
            format!("SELECT * FROM {}", "(SELECT * FROM ".repeat(50_000)),
        ];
        for sql in &hostile {
            let err = tables_touched(sql).unwrap_err();
            assert!(
                matches!(
                    err,
                    SqlError::ChainTooLong { .. } | SqlError::NestingTooDeep { .. }
                ),
                "{}…: {err:?}",
                &sql[..40]
            );
        }
        let nested = format!("SELECT {}1{}", "(".repeat(60), ")".repeat(60));
        assert_eq!(
            tables_touched(&nested),
            Err(SqlError::NestingTooDeep {
                max: PARSER_RECURSION_LIMIT
            })
        );

        // Just under the limit still works, without overflowing a test thread's stack.
        let and_chain = format!(
            "SELECT * FROM employee WHERE {}",
            vec!["dept = 20"; MAX_CHAIN_DEPTH / 2].join(" AND ")
        );
        let rewritten = rewrite(&and_chain, &dept()).unwrap().unwrap();
        assert_eq!(rewritten, and_chain.replace("= 20", "= 21"));
        let subscripts = format!(
            "SELECT a{} FROM employee",
            "[1]".repeat(MAX_CHAIN_DEPTH / 3)
        );
        assert_eq!(tables_touched(&subscripts), Ok(vec!["employee".into()]));
        let unions = format!(
            "SELECT a FROM employee{}",
            " UNION ALL SELECT a FROM employee".repeat(MAX_CHAIN_DEPTH / 3)
        );
        assert_eq!(tables_touched(&unions), Ok(vec!["employee".into()]));

        // Long lists are free: a 100,000-element IN list and 10,000 VALUES rows pass.
        let ids = (0..100_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let in_list = format!("SELECT * FROM employee WHERE id IN ({ids}) AND dept = 20");
        assert!(rewrite(&in_list, &dept())
            .unwrap()
            .unwrap()
            .ends_with("dept = 21"));
        let rows = vec!["(1, 'x', NULL, true, '2020-01-01'::date)"; 10_000].join(", ");
        let insert = format!("INSERT INTO employee VALUES {rows}");
        assert_eq!(tables_touched(&insert), Ok(vec!["employee".into()]));
    }

    #[test]
    fn line_index_maps_character_columns() {
        let sql = "ab\nä€x\n\nz";
        let index = LineIndex::new(sql);
        let at = |line, column| index.offset(Location { line, column });
        assert_eq!(at(1, 1), Some(0));
        assert_eq!(at(1, 3), Some(2));
        assert_eq!(at(2, 1), Some(3));
        assert_eq!(at(2, 2), Some(5));
        assert_eq!(at(2, 3), Some(8));
        assert_eq!(at(4, 1), Some(sql.len() - 1));
        assert_eq!(at(4, 2), Some(sql.len()));
        assert_eq!(at(4, 3), None);
        assert_eq!(at(0, 1), None);
        assert_eq!(at(9, 1), None);
    }

    /// SQL-ish fragments for the fuzz-style properties.
    const FRAGMENTS: &[&str] = &[
        "SELECT", "*", "FROM", "employee", "e", "other", "public.", "WHERE", "dept", "e.", "=",
        "20", "21", "'20'", "-", "(", ")", "[", "]", ",", ";", "AND", "OR", "NOT", "IN", "JOIN",
        "ON", "UNION", "WITH", "AS", "UPDATE", "SET", "DELETE", "INSERT", "INTO", "VALUES", "DO",
        "$$", "$1", "'", "\"", "--", "/*", "*/", "\n", "::int", "COPY", "TRUNCATE", "EXISTS",
        "CASE", "WHEN", "THEN", "END", "ä", "\u{0}", "E'",
    ];

    fn sqlish() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40)
            .prop_map(|parts| parts.join(" "))
    }

    /// A valid statement reading employee, with the spelling of every part varied.
    fn employee_query() -> impl Strategy<Value = (String, String)> {
        let ws = prop::sample::select(vec![" ", "  ", "\n", "\t", " /* ä */ ", " -- c\n"]);
        (
            prop::sample::select(vec![
                "employee",
                "public.employee",
                "EMPLOYEE",
                "\"employee\"",
            ]),
            prop::option::of(prop::sample::select(vec!["e", "emp"])),
            prop::bool::ANY,
            "[a-zA-Z0-9 äöü€😀]{0,12}",
            ws.clone(),
            ws,
        )
            .prop_map(|(table, alias, swap, text, ws1, ws2)| {
                let column = match alias {
                    Some(a) => format!("{a}.dept"),
                    None => "dept".to_owned(),
                };
                let alias = alias.map(|a| format!(" {a}")).unwrap_or_default();
                let (l, r) = if swap {
                    ("20", column.as_str())
                } else {
                    (column.as_str(), "20")
                };
                let (l2, r2) = if swap {
                    ("21", column.as_str())
                } else {
                    (column.as_str(), "21")
                };
                let head =
                    format!("SELECT '{text}' AS t,{ws1}*{ws2}FROM {table}{alias}{ws1}WHERE ");
                (
                    format!("{head}{l}{ws2}={ws1}{r}{ws2}"),
                    format!("{head}{l2}{ws2}={ws1}{r2}{ws2}"),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text_never_panics(sql in any::<String>()) {
            let _ = tables_touched(&sql);
            let _ = touches_any(&sql, &["salaries".into()]);
            let _ = rewrite(&sql, &dept());
        }

        #[test]
        fn sqlish_text_never_panics_and_rewrites_completely(sql in sqlish()) {
            let _ = tables_touched(&sql);
            if let Ok(Some(new)) = rewrite(&sql, &dept()) {
                prop_assert_ne!(&new, &sql);
                // Every match was replaced and the text still parses the same way.
                prop_assert_eq!(rewrite(&new, &dept()), Ok(None));
                prop_assert_eq!(tables_touched(&new), tables_touched(&sql));
            }
        }

        #[test]
        fn splices_exactly((sql, expected) in employee_query()) {
            prop_assert_eq!(rewrite(&sql, &dept()), Ok(Some(expected.clone())));
            prop_assert_eq!(rewrite(&expected, &dept()), Ok(None));
            prop_assert_eq!(touches_any(&sql, &["employee".into()]), Ok(true));
        }
    }
}
