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
    let parsed = parse(sql)?;
    let mut visitor = TablesVisitor::default();
    // The visitor never breaks.
    let _ = parsed.statements.visit(&mut visitor);
    let mut names = visitor.names;
    names.extend(parsed.opaque_words);
    if visitor.opaque {
        let tokens = tokenize(sql)?;
        words_of(&tokens, false, 1, &mut names)?;
    }
    Ok(dedup(names))
}

/// Whether any statement touches one of `objects` (lower-cased last name part;
/// schema-qualified names in `sql` match on their last part, quoted identifiers
/// compared exactly lower-cased).
///
/// The objects are themselves lower-cased and cut to their last dot-separated part, so
/// `public.Salaries` means `salaries`. See [`tables_touched`] for what is seen.
pub fn touches_any(sql: &str, objects: &[String]) -> Result<bool, SqlError> {
    let touched = tables_touched(sql)?;
    Ok(objects.iter().any(|object| {
        let wanted = last_part(object);
        touched.iter().any(|name| *name == wanted)
    }))
}

/// Applies rewrites; `Ok(None)` when nothing changed (callers then forward the
/// ORIGINAL bytes untouched — sqlparser's printing normalises text), `Ok(Some(new_sql))`
/// otherwise.
///
/// The new text is the original with only the matched literals replaced (see
/// [`PredicateRewrite`] for the matching rules and the module documentation for why).
/// When two rewrites match the same literal the first one in `rewrites` wins; all
/// rewrites are matched against the original statement (no chaining).
pub fn rewrite(sql: &str, rewrites: &[PredicateRewrite]) -> Result<Option<String>, SqlError> {
    let compiled = rewrites
        .iter()
        .map(Compiled::new)
        .collect::<Result<Vec<_>, _>>()?;
    let parsed = parse(sql)?;
    if compiled.is_empty() {
        return Ok(None);
    }
    let mut visitor = RewriteVisitor {
        rules: &compiled,
        scopes: Vec::new(),
        statement_scopes: Vec::new(),
        ctes: Vec::new(),
        edits: Vec::new(),
    };
    // The visitor never breaks.
    let _ = parsed.statements.visit(&mut visitor);
    if visitor.edits.is_empty() {
        return Ok(None);
    }
    splice(sql, visitor.edits, &compiled).map(Some)
}

// ---------------------------------------------------------------------------------
// Parsing

const DIALECT: PostgreSqlDialect = PostgreSqlDialect {};

/// Parsed statements plus the words of `DO` blocks, which sqlparser does not parse.
struct Parsed {
    statements: Vec<Statement>,
    opaque_words: Vec<String>,
}

fn tokenize(sql: &str) -> Result<Vec<TokenWithSpan>, SqlError> {
    Tokenizer::new(&DIALECT, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| SqlError::Unparsable {
            reason: e.to_string(),
        })
}

fn parse(sql: &str) -> Result<Parsed, SqlError> {
    if sql.len() > MAX_SQL_LEN {
        return Err(SqlError::TooLong {
            len: sql.len(),
            max: MAX_SQL_LEN,
        });
    }
    let tokens = tokenize(sql)?;
    check_chain_depth(&tokens)?;
    let chunks = split_statements(&tokens);
    if !chunks.iter().any(|chunk| is_do(&tokens[chunk.clone()])) {
        return Ok(Parsed {
            statements: parse_tokens(tokens)?,
            opaque_words: Vec::new(),
        });
    }
    // sqlparser has no `DO`: parse the other statements one by one, and take the
    // words of each `DO` block (its body included).
    let mut parsed = Parsed {
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
        if before.is_some_and(|c| glues(c) || (to.starts_with('-') && is_operator_char(c))) {
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

fn is_operator_char(c: char) -> bool {
    "+-*/<>=~!@#%^&|`?".contains(c)
}
