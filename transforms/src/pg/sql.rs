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
/// Callers fail closed on any error: a statement that names a protected table and
/// cannot be analysed, or whose rewrite cannot be proven, is refused.
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
    /// A rewrite rule's promise cannot be proven for the statement (or parameter
    /// value): refuse it. The reason names the form and the column, e.g. "compares
    /// employee.dept with BETWEEN, which the rewrite rule cannot prove; write dept =
    /// <value>".
    #[error("{reason}")]
    Unprovable {
        /// What the statement does that the rule cannot follow.
        reason: String,
    },
}

/// A predicate rewrite: a client asking, in a statement that reads `table`, for rows
/// whose `column` equals `from` gets the rows whose `column` equals `to`. No statement
/// that reads `table` selects rows by the value `from` without being rewritten: where
/// that cannot be proven the statement is refused ([`SqlError::Unprovable`]).
///
/// `from` and `to` are SQL literal texts: a number (`20`, `-3`, `1.5`) or a string
/// (`'x'`, `E'x'`, `$$x$$`). Matching is by value, not spelling:
/// - a number `from` matches number literals of equal exact value (`20`, `020`, `20.0`,
///   `2e1`, `0.2e2`, `+20`, `2_0`, `0x14`) and string literals whose trimmed content is
///   such a number (`'20'`, `' 20 '`, `'+20'`, `'2e1'`), as the server coerces them
///   for a numeric column;
/// - a string `from` matches string literals with equal content in any spelling, and
///   number literals equal to its content when that is a number;
/// - casts of a literal (`'20'::int`, `CAST('20' AS integer)`, `20::numeric`, `int
///   '20'`) count as that literal; its bytes are replaced, `to` spliced in verbatim (as
///   a string literal in a typed string: `int '21'`).
///
/// Literals that may equal `from` under some column type without being equal (float
/// rounding, `char(n)` trailing spaces, rounding casts `20.4::int`, casts with a type
/// modifier) are refused, never passed.
///
/// Rewritten forms: `column = lit`, `lit = column`, `<>`/`!=`, `IN (lit, …)`, `= ANY
/// (ARRAY[lit, …])`, `<> ALL(ARRAY[…])`, any parentheses, under `NOT`, in conditions
/// and result columns alike. `$n` parameters in those forms are reported by
/// [`rewrite_plan`] for [`rewrite_param`] at Bind (refused inside SQL `PREPARE`).
/// Allowed untouched: comparisons with another literal or with a column of a base
/// table, `IS [NOT] NULL`, the column as a plain result column, `SET` value,
/// `RETURNING` item, `ORDER BY`/`GROUP BY` key or passed under its own name through a
/// derived table or CTE (whose references then count as the column), `INSERT` column
/// lists and `SET column = …` targets. Everything else using the column is refused:
/// ranges (`<`, `BETWEEN`), `IS DISTINCT FROM`, `LIKE`, expressions over it in a
/// comparison (`dept + 0 = 20`, `dept::text = '20'`, `abs(dept) = 20`), comparisons
/// with non-literals (`10 + 10`, subqueries, functions, columns of derived tables,
/// `VALUES` or functions in `FROM`), row comparisons, `CASE dept …`, `ANY` of anything
/// but `ARRAY[…]`, the column renamed or computed in a derived table or CTE, alias
/// column lists over the table, and `DO` blocks naming the table.
///
/// Which references are the table's column (per query block, i.e. per `SELECT`,
/// `UPDATE`, `DELETE`, `MERGE` and its `FROM`/`USING`/`JOIN` list):
/// - `alias.column` or `table.column` (also `schema.table.column`) when that qualifier
///   names `table`, or a derived table or CTE reading it, in this query block or an
///   enclosing one;
/// - unqualified `column` when `table` (or a relation reading it) is in this query
///   block or any enclosing one: in a join or a correlated subquery the name may be the
///   table's, whose columns we cannot know, so it counts as the table's (fail closed);
/// - a single-part reference to a CTE named like `table` is that CTE.
///
/// Not seen here: function bodies and SQL run by functions (see the guard checks);
/// values stored in tables the statement compares the column with (`dept = d.id`).
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
/// otherwise, and [`SqlError::Unprovable`] when the statement must be refused (see
/// [`PredicateRewrite`]), including when a rule's column is compared with a `$n`
/// parameter (use [`rewrite_plan`] where parameters have values at Bind).
///
/// The new text is the original with only the matched literals replaced (see the
/// module documentation for why). When two rewrites match the same literal the first
/// one in `rewrites` wins; all rewrites are matched against the original statement (no
/// chaining). With no rewrites the SQL is not even parsed.
pub fn rewrite(sql: &str, rewrites: &[PredicateRewrite]) -> Result<Option<String>, SqlError> {
    let compiled = compile(rewrites)?;
    if compiled.is_empty() {
        return Ok(None);
    }
    ParsedSql::parse(sql)?.rewrite_compiled(&compiled)
}

/// What [`rewrite_plan`] found: the rewritten text and the parameters to rewrite at
/// Bind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewritePlan {
    /// The rewritten text; `None` when no literal changed (forward the original bytes).
    pub text: Option<String>,
    /// `(n, rule)`: parameter `$n` is compared with the column of `rewrites[rule]`.
    /// Sorted; a parameter compared with a column several rules share is listed once
    /// per rule, in rule order: at Bind apply the first rule whose [`rewrite_param`]
    /// gives `Some`, and refuse on any `Err`.
    pub params: Vec<(u32, usize)>,
}

/// Like [`rewrite`], but a rule's column compared with a `$n` parameter (in the forms
/// rewritten for literals, also `$n::int`) is reported in [`RewritePlan::params`]
/// instead of refused: in a protocol Parse the value arrives later, in Bind. Inside SQL
/// `PREPARE name AS …` such a parameter is refused (its value arrives in `EXECUTE`).
pub fn rewrite_plan(sql: &str, rewrites: &[PredicateRewrite]) -> Result<RewritePlan, SqlError> {
    let compiled = compile(rewrites)?;
    if compiled.is_empty() {
        return Ok(RewritePlan::default());
    }
    rewrite::plan(&ParsedSql::parse(sql)?, &compiled)
}

/// Rewrites one Bind parameter value compared with `rule`'s column: `Ok(Some(new))`
/// when the value means `from`, `Ok(None)` when it provably does not, `Err(Unprovable)`
/// when that cannot be told (refuse).
///
/// Text format (`binary == false`): the UTF-8 value is judged like a string literal
/// (see [`PredicateRewrite`]: `' 20 '`, `'2e1'` mean 20); the new value is `to` as text
/// (the number as written, or a string `to`'s content). Binary format: for an integer
/// `from`, a 2-, 4- or 8-byte big-endian integer equal to it becomes `to` in the same
/// width (`Err` when `to` is not an integer or does not fit); other 2-, 4- or 8-byte
/// values give `Ok(None)`, unless they are the float4/float8 encoding of `from`
/// (`Err`); any other length, or a non-integer or string `from`, gives `Err`.
pub fn rewrite_param(
    rule: &PredicateRewrite,
    value: &[u8],
    binary: bool,
) -> Result<Option<Vec<u8>>, SqlError> {
    rewrite::param(&Compiled::new(rule)?, value, binary)
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

    /// Whether every statement keeps the masks' promise (see the `guard` module): `Err`
    /// says how a masked value could reach the client past the mask.
    pub fn check_masked_use(&self, masked: &[MaskedColumn]) -> Result<(), String> {
        guard::check_masked_use(&self.statements, masked)
    }

    /// Refuses statements that change or derive from `tables` (see the `guard` module).
    pub fn check_changes(&self, tables: &[String]) -> Result<(), String> {
        guard::check_changes(&self.statements, tables)
    }

    /// Refuses attribute-notation calls on the rows of `columns`' tables (see the
    /// `guard` module).
    pub fn check_attribute_calls(
        &self,
        columns: &std::collections::HashMap<String, std::collections::HashSet<String>>,
    ) -> Result<(), String> {
        guard::check_attribute_calls(&self.statements, columns)
    }

    /// See [`rewrite`].
    pub fn rewrite(&self, rewrites: &[PredicateRewrite]) -> Result<Option<String>, SqlError> {
        self.rewrite_compiled(&compile(rewrites)?)
    }

    /// See [`rewrite_plan`].
    pub fn rewrite_plan(&self, rewrites: &[PredicateRewrite]) -> Result<RewritePlan, SqlError> {
        rewrite::plan(self, &compile(rewrites)?)
    }

    fn rewrite_compiled(&self, compiled: &[Compiled]) -> Result<Option<String>, SqlError> {
        let plan = rewrite::plan(self, compiled)?;
        if !plan.params.is_empty() {
            return Err(rewrite::params_unprovable(&plan, compiled));
        }
        Ok(plan.text)
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

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // `TABLE t` (alone or as an arm of a set operation) is a name sqlparser keeps as
        // a string, not a relation.
        guard::set_tables(query.body.as_ref(), &mut self.names);
        ControlFlow::Continue(())
    }

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

mod guard;
mod rewrite;
#[cfg(test)]
mod tests;

pub use guard::MaskedColumn;

use rewrite::*;
