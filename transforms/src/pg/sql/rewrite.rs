//! Predicate rewriting that fails closed.
//!
//! In every query block that reads a rule's table, each reference to the rule's column
//! must end up in one of four places, or the statement is refused with
//! [`SqlError::Unprovable`]:
//!
//! - **rewritten**: the column compared (`=`, `<>`, `!=`, `IN (…)`, `= ANY(ARRAY[…])`,
//!   `<> ALL(ARRAY[…])`, either operand order, any parentheses) with a literal equal *in
//!   value* to the rule's `from` (`20`, `020`, `20.0`, `2e1`, `+20`, `0x14`, `'20'`,
//!   `' 20 '`, `'20'::int`, `CAST('20' AS integer)`, `int '20'`): that literal's bytes are
//!   replaced by `to` in the original text;
//! - **reported**: the column compared in those forms with a `$n` parameter (through
//!   casts): the value arrives in Bind and [`rewrite_param`](super::rewrite_param) judges
//!   it there. Inside SQL `PREPARE` this is refused: EXECUTE's values are not seen;
//! - **proven unrelated**: the same forms with a literal whose value differs from `from`,
//!   or with a column of a base table (a value the statement did not choose); `IS [NOT]
//!   NULL`; the plain column as a result column, an `UPDATE … SET` value or `RETURNING`
//!   item (also inside arithmetic, casts and a few per-row functions, or as the bare
//!   argument of an aggregate); the bare column in `ORDER BY`, `GROUP BY`, `DISTINCT ON`,
//!   `PARTITION BY`; the bare column passed through a derived table or CTE under its own
//!   name (whose references are then treated as the table's column);
//! - anything else is **refused**: ranges (`<`, `BETWEEN`), `IS DISTINCT FROM`, `LIKE`,
//!   expressions over the column in a comparison (`dept + 0 = 20`, `dept::text = '20'`,
//!   `abs(dept) = 20`), comparisons with non-literals (`10 + 10`, subqueries, functions,
//!   columns of derived tables, `VALUES` or set-returning functions), row comparisons,
//!   `CASE dept …`, `ANY` of anything but `ARRAY[…]`, literals that may equal `from` under
//!   some column type (float rounding, `char(n)` padding, rounding casts, casts with a
//!   type modifier), the column renamed or computed in a derived table, alias column
//!   lists over the table, `NATURAL`/`USING` joins with relations the statement builds,
//!   whole-row references in conditions, and `DO` blocks that mention the table.
//!
//! An unqualified column name counts as the table's when the table is read in the query
//! block or any enclosing one (the server resolves it outward when inner relations lack
//! the column, and their columns are unknown here).

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{
    DataType, Distinct, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArguments, GroupByExpr, Join, JoinConstraint, JoinOperator, MergeAction,
    MergeUpdateKind, NamedWindowExpr, OnConflictAction, OnInsert, OrderByKind, SelectItem, SetExpr,
    TableObject, ValueWithSpan, WindowType,
};

use super::*;

#[cfg(test)]
#[path = "rewrite_tests.rs"]
mod rewrite_tests;

// ---------------------------------------------------------------------------------
// Values

/// An exact decimal `digits × 10^exp`, without leading or trailing zeros in `digits`
/// (empty for zero, which is never negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dec {
    negative: bool,
    digits: String,
    exp: i64,
}

impl Dec {
    fn new(negative: bool, digits: &str, exp: i64) -> Dec {
        let trimmed = digits.trim_start_matches('0');
        let kept = trimmed.trim_end_matches('0');
        if kept.is_empty() {
            return Dec {
                negative: false,
                digits: String::new(),
                exp: 0,
            };
        }
        let zeros = i64::try_from(trimmed.len() - kept.len()).unwrap_or(i64::MAX);
        Dec {
            negative,
            digits: kept.to_owned(),
            exp: exp.saturating_add(zeros),
        }
    }

    fn negated(mut self) -> Dec {
        if !self.digits.is_empty() {
            self.negative = !self.negative;
        }
        self
    }

    fn is_integer(&self) -> bool {
        self.exp >= 0
    }

    fn sci(&self) -> String {
        let digits = if self.digits.is_empty() {
            "0"
        } else {
            &self.digits
        };
        let sign = if self.negative { "-" } else { "" };
        format!("{sign}{digits}e{}", self.exp)
    }

    /// The nearest `f64` (infinite when out of range).
    fn to_f64(&self) -> f64 {
        self.sci().parse().unwrap_or(f64::NAN)
    }

    /// The nearest `f32` (infinite when out of range).
    fn to_f32(&self) -> f32 {
        self.sci().parse().unwrap_or(f32::NAN)
    }

    fn to_i128(&self) -> Option<i128> {
        if self.digits.is_empty() {
            return Some(0);
        }
        let exp = u32::try_from(self.exp).ok()?;
        let mut value: i128 = self.digits.parse().ok()?;
        value = value.checked_mul(10i128.checked_pow(exp)?)?;
        Some(if self.negative { -value } else { value })
    }
}

/// What a numeric text means to PostgreSQL's number input (and its numeric literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Num {
    Dec(Dec),
    /// Not a number: `abc`, `NaN`, `Infinity`, malformed digits.
    NotANumber,
    /// An integer too large to evaluate here (non-decimal with more than 128 bits).
    Unbounded,
}

impl Num {
    fn negated(self) -> Num {
        match self {
            Num::Dec(d) => Num::Dec(d.negated()),
            other => other,
        }
    }
}

/// Digits of `radix` from `bytes[*i..]`, with single underscores between digits
/// (PostgreSQL 16), underscores removed. Stops at the first other character.
fn digit_run(bytes: &[u8], i: &mut usize, radix: u32) -> String {
    let mut out = String::new();
    while let Some(&b) = bytes.get(*i) {
        let c = char::from(b);
        if c.is_digit(radix) {
            out.push(c);
            *i += 1;
        } else if c == '_'
            && !out.is_empty()
            && bytes
                .get(*i + 1)
                .is_some_and(|&n| char::from(n).is_digit(radix))
        {
            *i += 1;
        } else {
            break;
        }
    }
    out
}

/// Parses a number as PostgreSQL's numeric and integer input does (the text already
/// trimmed): an optional sign, then decimal digits with an optional fraction and
/// exponent, or `0x`/`0o`/`0b` integers; single underscores between digits.
pub(super) fn parse_number(text: &str) -> Num {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let bytes = rest.as_bytes();
    let radix = match (bytes.first(), bytes.get(1)) {
        (Some(b'0'), Some(b'x' | b'X')) => Some(16),
        (Some(b'0'), Some(b'o' | b'O')) => Some(8),
        (Some(b'0'), Some(b'b' | b'B')) => Some(2),
        _ => None,
    };
    if let Some(radix) = radix {
        let mut i = 2;
        if bytes.get(i) == Some(&b'_') {
            i += 1;
        }
        let digits = digit_run(bytes, &mut i, radix);
        if digits.is_empty() || i != bytes.len() {
            return Num::NotANumber;
        }
        return match u128::from_str_radix(&digits, radix) {
            Ok(v) => Num::Dec(Dec::new(negative, &v.to_string(), 0)),
            Err(_) => Num::Unbounded,
        };
    }
    let mut i = 0;
    let int = digit_run(bytes, &mut i, 10);
    let mut frac = String::new();
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        frac = digit_run(bytes, &mut i, 10);
    }
    if int.is_empty() && frac.is_empty() {
        return Num::NotANumber;
    }
    let mut exp: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match bytes.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let digits = digit_run(bytes, &mut i, 10);
        if digits.is_empty() {
            return Num::NotANumber;
        }
        // An exponent beyond i64 saturates: such a value equals no rule's value.
        exp = digits.parse().unwrap_or(i64::MAX);
        if exp_negative {
            exp = -exp;
        }
    }
    if i != bytes.len() {
        return Num::NotANumber;
    }
    let frac_len = i64::try_from(frac.len()).unwrap_or(i64::MAX);
    Num::Dec(Dec::new(
        negative,
        &format!("{int}{frac}"),
        exp.saturating_sub(frac_len),
    ))
}

/// PostgreSQL's boolean input (`t`, `yes`, `on`, `1`, unique prefixes, any case).
fn parse_bool(text: &str) -> Option<bool> {
    let s = text.trim().to_ascii_lowercase();
    if s.is_empty() {
        return None;
    }
    if s == "1" || s == "on" || "true".starts_with(&s) || "yes".starts_with(&s) {
        Some(true)
    } else if s == "0" || s == "off" || s == "of" || "false".starts_with(&s) || "no".starts_with(&s)
    {
        Some(false)
    } else {
        None
    }
}

/// A rule's literal value: a number (exact) or a string's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lit {
    Number(Dec),
    Text(String),
}

impl Lit {
    /// The value as SQL text, for messages.
    fn describe(&self) -> String {
        match self {
            Lit::Number(d) => {
                if d.digits.is_empty() {
                    return "0".to_owned();
                }
                let sign = if d.negative { "-" } else { "" };
                let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
                match d.exp {
                    0..=30 => format!("{sign}{}{}", d.digits, "0".repeat(d.exp as usize)),
                    e if e < 0 && -e < len => {
                        let point = (len + e) as usize;
                        format!("{sign}{}.{}", &d.digits[..point], &d.digits[point..])
                    }
                    e if e < 0 && -e - len <= 30 => {
                        format!("{sign}0.{}{}", "0".repeat((-e - len) as usize), d.digits)
                    }
                    _ => d.sci(),
                }
            }
            Lit::Text(s) => format!("'{}'", s.replace('\'', "''")),
        }
    }
}

/// A literal as found in a statement.
enum Seen<'a> {
    Num(Num),
    Str(&'a str),
    Bool(bool),
    Null,
    /// A literal kind not evaluated here (bit strings, …).
    Opaque,
}

/// How a literal compares with a rule's value.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Equal,
    /// Not provably different: refuse, saying why.
    Maybe(&'static str),
    Different,
}

fn num_verdict(from: &Dec, seen: &Num, integer_cast: bool) -> Verdict {
    let seen = match seen {
        Num::NotANumber => return Verdict::Different,
        Num::Unbounded => return Verdict::Maybe("is a number too large to evaluate"),
        Num::Dec(d) => d,
    };
    if integer_cast && !seen.is_integer() {
        return Verdict::Maybe("is rounded by its cast to an integer type");
    }
    if seen == from {
        Verdict::Equal
    } else if seen.to_f64() == from.to_f64() || seen.to_f32() == from.to_f32() {
        Verdict::Maybe("rounds to the same floating-point value")
    } else {
        Verdict::Different
    }
}

fn verdict(from: &Lit, seen: &Seen<'_>, integer_cast: bool) -> Verdict {
    match (from, seen) {
        (_, Seen::Opaque) => Verdict::Maybe("is a literal of a kind the rewrite does not evaluate"),
        (_, Seen::Null) | (Lit::Number(_), Seen::Bool(_)) => Verdict::Different,
        (Lit::Number(f), Seen::Num(n)) => num_verdict(f, n, integer_cast),
        (Lit::Number(f), Seen::Str(s)) => num_verdict(f, &parse_number(s.trim()), integer_cast),
        (Lit::Text(t), Seen::Str(s)) => {
            if s == t {
                Verdict::Equal
            } else if s.trim_end_matches(' ') == t.trim_end_matches(' ') {
                Verdict::Maybe("differs only in trailing spaces, which a char(n) column ignores")
            } else if let (Num::Dec(a), Num::Dec(b)) =
                (parse_number(t.trim()), parse_number(s.trim()))
            {
                match num_verdict(&a, &Num::Dec(b), integer_cast) {
                    Verdict::Different => Verdict::Different,
                    _ => Verdict::Maybe("is the same number in a numeric column"),
                }
            } else {
                Verdict::Different
            }
        }
        (Lit::Text(t), Seen::Num(n)) => match parse_number(t.trim()) {
            Num::Dec(a) => num_verdict(&a, n, integer_cast),
            _ => Verdict::Different,
        },
        (Lit::Text(t), Seen::Bool(b)) => match parse_bool(t) {
            Some(v) if v == *b => Verdict::Maybe("is the same boolean"),
            _ => Verdict::Different,
        },
    }
}

// ---------------------------------------------------------------------------------
// Rules

pub(super) struct Compiled {
    pub(super) table: String,
    pub(super) column: String,
    pub(super) from: Lit,
    /// `to` as SQL text, spliced verbatim.
    pub(super) to: String,
    /// `to` as a value: the number as written (`21`, `-5`) or the string's content.
    pub(super) to_value: String,
    /// `to` as a string literal (for typed strings such as `int '20'`).
    pub(super) to_quoted: String,
    /// `to` as an integer, when it is one (binary parameters).
    pub(super) to_int: Option<i128>,
}

impl Compiled {
    pub(super) fn new(rule: &PredicateRewrite) -> Result<Self, SqlError> {
        let from_text = rule.from.trim();
        let to_text = rule.to.trim();
        let (from, _) = literal_text(from_text, "from")?;
        let (to, to_value) = literal_text(to_text, "to")?;
        let to_quoted = match to {
            Lit::Text(_) => to_text.to_owned(),
            Lit::Number(_) => format!("'{to_value}'"),
        };
        Ok(Compiled {
            table: last_part(&rule.table),
            column: rule.column.trim_matches('"').to_lowercase(),
            from,
            to: to_text.to_owned(),
            to_value,
            to_quoted,
            to_int: match &to {
                Lit::Number(d) => d.to_i128(),
                Lit::Text(_) => None,
            },
        })
    }

    fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// Parses a rule's literal: one number (optionally negative) or one string literal,
/// nothing else (no comments, no second token). Also gives the value as text: the
/// number as written (sign attached) or the string's content.
pub(super) fn literal_text(text: &str, field: &'static str) -> Result<(Lit, String), SqlError> {
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
    let number = |n: &str, negative: bool| match parse_number(n) {
        Num::Dec(d) => {
            let d = if negative { d.negated() } else { d };
            let sign = if negative { "-" } else { "" };
            Ok((Lit::Number(d), format!("{sign}{n}")))
        }
        _ => Err(bad()),
    };
    match significant.as_slice() {
        [Token::Number(n, false)] => number(n, false),
        [Token::Minus, Token::Number(n, false)] => number(n, true),
        [Token::SingleQuotedString(s) | Token::EscapedStringLiteral(s)] => {
            Ok((Lit::Text(s.clone()), s.clone()))
        }
        [Token::DollarQuotedString(d)] => Ok((Lit::Text(d.value.clone()), d.value.clone())),
        _ => Err(bad()),
    }
}

// ---------------------------------------------------------------------------------
// Entry points

/// Plans the rewrite of a parsed statement list (see the module documentation).
pub(super) fn plan(parsed: &ParsedSql<'_>, rules: &[Compiled]) -> Result<RewritePlan, SqlError> {
    if rules.is_empty() {
        return Ok(RewritePlan::default());
    }
    if let Some(rule) = rules
        .iter()
        .find(|r| parsed.opaque_words.contains(&r.table))
    {
        return Err(SqlError::Unprovable {
            reason: format!(
                "a DO block mentions {}, and the rewrite rule on {} cannot see the SQL it runs",
                rule.table,
                rule.name()
            ),
        });
    }
    let mut visitor = RewriteVisitor::new(parsed.sql, rules);
    let _ = parsed.statements.visit(&mut visitor);
    if let Some(reason) = visitor.refusal {
        return Err(SqlError::Unprovable { reason });
    }
    let mut params = visitor.params;
    params.sort_unstable();
    params.dedup();
    let text = if visitor.edits.is_empty() {
        None
    } else {
        Some(splice(parsed.sql, visitor.edits, rules)?)
    };
    Ok(RewritePlan { text, params })
}

/// The refusal of [`rewrite`](super::rewrite) for a plan with parameters: a text-only
/// rewrite cannot see their values.
pub(super) fn params_unprovable(plan: &RewritePlan, rules: &[Compiled]) -> SqlError {
    let (n, rule) = plan.params[0];
    let rule = &rules[rule];
    SqlError::Unprovable {
        reason: format!(
            "compares {} with parameter ${n}, whose value the rewrite rule cannot see in this text; write {} = <value>",
            rule.name(),
            rule.column
        ),
    }
}

/// See [`rewrite_param`](super::rewrite_param).
pub(super) fn param(
    rule: &Compiled,
    value: &[u8],
    binary: bool,
) -> Result<Option<Vec<u8>>, SqlError> {
    let unprovable = |why: String| {
        SqlError::Unprovable {
        reason: format!(
            "a parameter compared with {} {why}, so the rewrite rule cannot prove what it selects; write {} = <value>",
            rule.name(),
            rule.column
        ),
    }
    };
    if !binary {
        let text =
            std::str::from_utf8(value).map_err(|_| unprovable("is not UTF-8 text".to_owned()))?;
        return match verdict(&rule.from, &Seen::Str(text), false) {
            Verdict::Equal => Ok(Some(rule.to_value.clone().into_bytes())),
            Verdict::Maybe(why) => Err(unprovable(format!(
                "may mean {} (it {why})",
                rule.from.describe()
            ))),
            Verdict::Different => Ok(None),
        };
    }
    let from = match &rule.from {
        Lit::Number(d) => d,
        Lit::Text(_) => {
            return Err(unprovable(format!(
                "is in binary format, which is not compared with the string {}",
                rule.from.describe()
            )))
        }
    };
    let Some(from_int) = from.to_i128() else {
        return Err(unprovable(format!(
            "is in binary format, which is not compared with the non-integer {}",
            rule.from.describe()
        )));
    };
    let (seen, float_equal) = match value.len() {
        2 => (i128::from(i16::from_be_bytes([value[0], value[1]])), false),
        4 => {
            let bytes = [value[0], value[1], value[2], value[3]];
            (
                i128::from(i32::from_be_bytes(bytes)),
                f32::from_be_bytes(bytes) == from.to_f32(),
            )
        }
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(value);
            (
                i128::from(i64::from_be_bytes(bytes)),
                f64::from_be_bytes(bytes) == from.to_f64(),
            )
        }
        n => {
            return Err(unprovable(format!(
                "is a binary value of {n} bytes, not a 2-, 4- or 8-byte integer, and may mean {}",
                rule.from.describe()
            )))
        }
    };
    if seen != from_int {
        if float_equal {
            return Err(unprovable(format!(
                "is a binary value that may be the floating-point encoding of {}",
                rule.from.describe()
            )));
        }
        return Ok(None);
    }
    let to = rule.to_int.ok_or_else(|| {
        unprovable(format!(
            "means {} in binary format, but the replacement {} is not an integer",
            rule.from.describe(),
            rule.to
        ))
    })?;
    let overflow = || {
        unprovable(format!(
            "means {} as a {}-byte integer, but the replacement {} does not fit in it",
            rule.from.describe(),
            value.len(),
            rule.to
        ))
    };
    Ok(Some(match value.len() {
        2 => i16::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
        4 => i32::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
        _ => i64::try_from(to)
            .map_err(|_| overflow())?
            .to_be_bytes()
            .to_vec(),
    }))
}

// ---------------------------------------------------------------------------------
// Operands

fn addr<T>(node: &T) -> usize {
    std::ptr::from_ref(node) as usize
}

fn peel(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// Short SQL text of an expression for messages.
fn shown(expr: &Expr) -> String {
    let text = expr.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// A literal operand of a comparison.
struct Literal<'e> {
    value: &'e Value,
    span: Span,
    /// A unary `-` (`Some(true)`) or `+` (`Some(false)`) right before the number.
    sign: Option<bool>,
    /// A typed string (`int '20'`): the replacement must be a string literal.
    quote: bool,
    /// Cast to an integer type on the way (numeric values would be rounded).
    integer_cast: bool,
    /// The whole operand, for messages.
    shown: String,
}

enum Operand<'e> {
    Literal(Literal<'e>),
    Param(&'e str),
    /// A column reference (possibly cast).
    Column(&'e Expr),
    /// Cannot be proven: the message says why.
    Refuse(String),
    /// Anything else: an expression.
    Other,
}

enum CastClass {
    Transparent,
    Integer,
    Refuse,
}

/// How a cast to `data_type` may change a literal's value. Type modifiers
/// (`numeric(5,0)`, `varchar(2)`) round or truncate, and so do `char`/`character`
/// without a length (one character), `"char"`, `name` and `bit`: refused. Integer
/// types round non-integral numbers. Other types read the literal as the column's own
/// type would (an untyped literal is coerced the same way).
fn cast_class(data_type: &DataType) -> CastClass {
    let name = data_type.to_string().to_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    if name.contains(['(', '[']) {
        return CastClass::Refuse;
    }
    match name {
        "int" | "integer" | "int2" | "int4" | "int8" | "smallint" | "bigint" => CastClass::Integer,
        "char" | "character" | "\"char\"" | "name" | "bit" | "nchar" => CastClass::Refuse,
        _ => CastClass::Transparent,
    }
}

fn is_string(value: &Value) -> bool {
    matches!(
        value,
        Value::SingleQuotedString(_)
            | Value::EscapedStringLiteral(_)
            | Value::UnicodeStringLiteral(_)
            | Value::NationalStringLiteral(_)
            | Value::DollarQuotedString(_)
    )
}

fn operand<'e>(expr: &'e Expr) -> Operand<'e> {
    let expr = peel(expr);
    let literal = |value: &'e ValueWithSpan, sign| {
        Operand::Literal(Literal {
            value: &value.value,
            span: value.span,
            sign,
            quote: false,
            integer_cast: false,
            shown: shown(expr),
        })
    };
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Placeholder(p) => Operand::Param(p),
            _ => literal(v, None),
        },
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => {
            // `-20`, and `-20::int`, which is `-(20::int)`; not `-(20)`, whose sign
            // is not next to the literal.
            if matches!(inner.as_ref(), Expr::Nested(_)) {
                return Operand::Other;
            }
            match operand(inner) {
                Operand::Literal(mut l)
                    if l.sign.is_none()
                        && matches!(l.value, Value::Number(..) | Value::HexStringLiteral(_)) =>
                {
                    l.sign = Some(*op == UnaryOperator::Minus);
                    l.shown = shown(expr);
                    Operand::Literal(l)
                }
                Operand::Refuse(why) => Operand::Refuse(why),
                _ => Operand::Other,
            }
        }
        Expr::Cast {
            expr: inner,
            data_type,
            format: None,
            ..
        } => {
            let class = cast_class(data_type);
            match (operand(inner), class) {
                (Operand::Literal(_) | Operand::Param(_), CastClass::Refuse) => {
                    Operand::Refuse(format!("the cast to {data_type} may change the value"))
                }
                (Operand::Literal(mut l), class) => {
                    l.integer_cast |= matches!(class, CastClass::Integer);
                    l.shown = shown(expr);
                    Operand::Literal(l)
                }
                (other, _) => other,
            }
        }
        Expr::TypedString(ts) if is_string(&ts.value.value) => match cast_class(&ts.data_type) {
            CastClass::Refuse => {
                Operand::Refuse(format!("the type {} may change the value", ts.data_type))
            }
            class => Operand::Literal(Literal {
                value: &ts.value.value,
                span: ts.value.span,
                sign: None,
                quote: true,
                integer_cast: matches!(class, CastClass::Integer),
                shown: shown(expr),
            }),
        },
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => Operand::Column(expr),
        _ => Operand::Other,
    }
}

/// `=`, `<>`, `!=`, also as `OPERATOR(pg_catalog.=)`.
fn is_eq_like(op: &BinaryOperator) -> bool {
    match op {
        BinaryOperator::Eq | BinaryOperator::NotEq => true,
        BinaryOperator::PGCustomBinaryOperator(parts) => {
            matches!(parts.last().map(String::as_str), Some("=" | "<>" | "!="))
                && (parts.len() == 1 || parts[0].eq_ignore_ascii_case("pg_catalog"))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------
// Scopes

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EntryKind {
    /// A table (or view) by name: its lower-cased last name part.
    Base(String),
    Cte,
    Derived,
    /// A function in `FROM` (`generate_series(…)`, `unnest(…)`).
    Function,
    Other,
}

/// One relation of a query block's `FROM`.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The name it is referred to by.
    pub(super) qualifier: Option<String>,
    pub(super) kind: EntryKind,
    /// Rule tables whose rows this relation may pass on (derived tables, CTEs, join
    /// aliases): its columns named like a rule's column count as that column.
    pub(super) carries: Vec<String>,
    /// An alias column list renames its columns (`employee AS e(a, b)`).
    pub(super) renames: bool,
}

impl Entry {
    fn has(&self, table: &str) -> bool {
        matches!(&self.kind, EntryKind::Base(t) if t == table)
            || self.carries.iter().any(|c| c == table)
    }

    fn is_base(&self) -> bool {
        matches!(self.kind, EntryKind::Base(_))
    }
}

struct Scope {
    entries: Vec<Entry>,
    /// Hidden while a non-`LATERAL` subquery in its `FROM` is visited.
    hidden: usize,
}

/// What the values of a query block's result feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    /// Rows for the client (or a table): its result columns select nothing.
    Output,
    /// A derived table or CTE: its result columns are read by name outside.
    PassThrough,
    /// A subquery in an expression: its values are compared outside.
    Predicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RootKind {
    Output,
    /// A result column of a derived table or CTE, with its alias.
    PassThrough(Option<String>),
    /// `ORDER BY`, `GROUP BY`, `DISTINCT ON`, window definitions.
    Order,
    /// Anything else: conditions, subquery results, `LIMIT`, function arguments in
    /// `FROM`, `VALUES`, ….
    Predicate,
}

struct Root {
    kind: RootKind,
    /// Relations visible only in this expression (`INSERT … ON CONFLICT`, `RETURNING`,
    /// `ORDER BY` of a set operation).
    scope: Option<Vec<Entry>>,
}

struct CteInfo {
    name: String,
    carries: Vec<String>,
    renames: bool,
}

/// Result columns an `ORDER BY` or `DISTINCT ON` names (bare names) or numbers: with
/// `LIMIT` they select rows by those columns' values, so such a column is judged like an
/// `ORDER BY` key (`SELECT abs(dept - 20) AS d … ORDER BY d LIMIT 1` is refused).
#[derive(Debug, Clone, Default)]
struct OrderRefs {
    names: Vec<String>,
    /// 1-based result column numbers (`ORDER BY 2`).
    positions: Vec<u64>,
}

impl OrderRefs {
    fn add(&mut self, expr: &Expr) {
        match peel(expr) {
            Expr::Identifier(ident) => self.names.push(ident_lower(ident)),
            Expr::Value(v) => {
                if let Value::Number(n, _) = &v.value {
                    // An unreadable number counts as naming every column.
                    self.positions.push(n.parse().unwrap_or(0));
                }
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.names.is_empty() && self.positions.is_empty()
    }

    /// Whether result column `index` (0-based), `expr` with `alias`, may be one of
    /// these; after a `*` (`first_wildcard`) positions are unknown.
    fn names_column(
        &self,
        index: usize,
        first_wildcard: Option<usize>,
        expr: &Expr,
        alias: Option<&str>,
    ) -> bool {
        let by_position = self.positions.iter().any(|&p| {
            let p = usize::try_from(p).unwrap_or(usize::MAX);
            match first_wildcard {
                Some(w) if index > w => p == 0 || p > w,
                _ => p == 0 || p == index + 1,
            }
        });
        by_position
            || alias
                .map(str::to_owned)
                .or_else(|| column_name(expr))
                .is_some_and(|name| self.names.contains(&name))
    }
}

/// The name PostgreSQL gives an unaliased result column, when it is not `?column?`.
fn column_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => column_name(inner),
        Expr::Identifier(ident) => Some(ident_lower(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_lower),
        Expr::Function(f) => Some(object_last(&f.name)),
        Expr::Cast {
            expr, data_type, ..
        } => column_name(expr).or_else(|| {
            let name = data_type.to_string().to_lowercase();
            Some(name.rsplit('.').next().unwrap_or(&name).to_owned())
        }),
        Expr::Case { .. } => Some("case".to_owned()),
        _ => None,
    }
}

struct QueryFrame {
    kind: BlockKind,
    order: OrderRefs,
    ctes: Vec<CteInfo>,
    /// Index of the scope hidden while this query is visited.
    hid: Option<usize>,
    frames_start: usize,
    /// The query's body when it is one `SELECT`: its scope stays for `ORDER BY`.
    direct_select: Option<usize>,
    select_pushed: bool,
}

struct StatementFrame {
    pushed_scope: bool,
    prepare: bool,
}

// ---------------------------------------------------------------------------------
// Expression frames

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FnClass {
    /// Aggregates a bare column without selecting rows by its value.
    Aggregate,
    /// Per-row functions that select nothing.
    Scalar,
    Unknown,
}

const AGGREGATES: &[&str] = &[
    "count",
    "min",
    "max",
    "sum",
    "avg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "any_value",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "variance",
    "var_pop",
    "var_samp",
];

const SCALARS: &[&str] = &[
    "coalesce",
    "lower",
    "upper",
    "length",
    "char_length",
    "to_char",
    "abs",
    "round",
    "trunc",
    "floor",
    "ceil",
    "ceiling",
    "btrim",
    "ltrim",
    "rtrim",
    "concat",
    "format",
];

/// A form that compares or selects: a column under it is refused.
#[derive(Debug, Clone)]
enum Form {
    Op(BinaryOperator),
    Between,
    Distinct,
    In,
    InSubquery,
    AnyAll,
    Like,
    Case,
    Row,
    Array,
    Not,
    Other,
}

impl Form {
    /// The refusal, for `subject` (the column or an expression over it).
    fn refusal(&self, subject: &str) -> String {
        match self {
            Form::Op(op) => format!("compares {subject} with the operator {op}"),
            Form::Between => format!("compares {subject} with BETWEEN"),
            Form::Distinct => format!("compares {subject} with IS DISTINCT FROM"),
            Form::In => format!("compares {subject} with IN (…)"),
            Form::InSubquery => format!("compares {subject} with IN (a subquery)"),
            Form::AnyAll => format!("compares {subject} with ANY/ALL"),
            Form::Like => format!("compares {subject} with a pattern"),
            Form::Case => format!("uses {subject} in CASE"),
            Form::Row => format!("uses {subject} in a row constructor"),
            Form::Array => format!("uses {subject} in an array"),
            Form::Not => format!("uses {subject} as a boolean under NOT"),
            Form::Other => format!("uses {subject} in an expression"),
        }
    }
}

enum FrameKind {
    Nested,
    /// Arithmetic, casts, concatenation, signs: per-row values.
    Scalar,
    /// `IS [NOT] NULL`: selects nothing by value.
    Sink,
    Function {
        name: String,
        class: FnClass,
        args: Vec<usize>,
        filter: Option<usize>,
        /// `OVER (PARTITION BY … ORDER BY …)`, `WITHIN GROUP`, `ORDER BY` in arguments.
        ordering: Vec<usize>,
    },
    Selecting(Form),
}

struct Frame {
    addr: usize,
    kind: FrameKind,
    /// A walk from below that is past the column itself (not bare) was found
    /// allowed from this frame up: later walks stop here (linear cost in total).
    clear_above: bool,
}

fn function_frame(f: &Function) -> FrameKind {
    let name = object_last(&f.name);
    let class = if AGGREGATES.contains(&name.as_str()) {
        FnClass::Aggregate
    } else if SCALARS.contains(&name.as_str()) {
        FnClass::Scalar
    } else {
        FnClass::Unknown
    };
    let mut args = Vec::new();
    let mut ordering: Vec<usize> = f.within_group.iter().map(|o| addr(&o.expr)).collect();
    if let FunctionArguments::List(list) = &f.args {
        for arg in &list.args {
            let (FunctionArg::Unnamed(a)
            | FunctionArg::Named { arg: a, .. }
            | FunctionArg::ExprNamed { arg: a, .. }) = arg;
            if let FunctionArgExpr::Expr(e) = a {
                args.push(addr(e));
            }
        }
        for clause in &list.clauses {
            if let FunctionArgumentClause::OrderBy(order) = clause {
                ordering.extend(order.iter().map(|o| addr(&o.expr)));
            }
        }
    }
    if let Some(WindowType::WindowSpec(spec)) = &f.over {
        ordering.extend(spec.partition_by.iter().map(addr));
        ordering.extend(spec.order_by.iter().map(|o| addr(&o.expr)));
    }
    FrameKind::Function {
        name,
        class,
        args,
        filter: f.filter.as_deref().map(addr),
        ordering,
    }
}

fn frame_kind(expr: &Expr) -> FrameKind {
    use BinaryOperator as B;
    match expr {
        // Grouping sets only list `GROUP BY` keys.
        Expr::Nested(_) | Expr::GroupingSets(_) | Expr::Cube(_) | Expr::Rollup(_) => {
            FrameKind::Nested
        }
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            ..
        }
        | Expr::Cast { .. }
        | Expr::Collate { .. } => FrameKind::Scalar,
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        } => FrameKind::Selecting(Form::Not),
        Expr::BinaryOp { op, .. } => match op {
            B::Plus | B::Minus | B::Multiply | B::Divide | B::Modulo | B::StringConcat => {
                FrameKind::Scalar
            }
            other => FrameKind::Selecting(Form::Op(other.clone())),
        },
        Expr::IsNull(_) | Expr::IsNotNull(_) => FrameKind::Sink,
        Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => {
            FrameKind::Selecting(Form::Distinct)
        }
        Expr::Between { .. } => FrameKind::Selecting(Form::Between),
        Expr::InList { .. } => FrameKind::Selecting(Form::In),
        Expr::InSubquery { .. } => FrameKind::Selecting(Form::InSubquery),
        Expr::AnyOp { .. } | Expr::AllOp { .. } => FrameKind::Selecting(Form::AnyAll),
        Expr::Like { .. } | Expr::ILike { .. } | Expr::SimilarTo { .. } | Expr::RLike { .. } => {
            FrameKind::Selecting(Form::Like)
        }
        Expr::Case { .. } => FrameKind::Selecting(Form::Case),
        Expr::Tuple(_) => FrameKind::Selecting(Form::Row),
        Expr::Array(_) => FrameKind::Selecting(Form::Array),
        Expr::Function(f) => function_frame(f),
        _ => FrameKind::Selecting(Form::Other),
    }
}

// ---------------------------------------------------------------------------------
// The visitor

/// A column reference that belongs to rules.
struct Interest {
    /// Indexes of the rules whose table and column it is, in rule order.
    rules: Vec<usize>,
    /// A whole-row reference (`e`, `e.*`) of a rule's table.
    whole_row: bool,
}

pub(super) struct Edit {
    pub(super) span: Span,
    pub(super) value: Value,
    pub(super) sign: bool,
    pub(super) quote: bool,
    pub(super) rule: usize,
}

pub(super) struct RewriteVisitor<'r> {
    rules: &'r [Compiled],
    index: LineIndex<'r>,
    scopes: Vec<Scope>,
    queries: Vec<QueryFrame>,
    statements: Vec<StatementFrame>,
    frames: Vec<Frame>,
    roots: HashMap<usize, Root>,
    /// Kinds of queries about to be visited, and whether to hide the top scope.
    pending: HashMap<usize, (BlockKind, bool)>,
    /// `ORDER BY` references a parenthesized query inherits from its set operation.
    inherited_order: HashMap<usize, OrderRefs>,
    /// Roots that pushed a scope.
    root_scopes: Vec<usize>,
    /// Column references already judged by the comparison they are an operand of.
    handled: HashSet<usize>,
    pub(super) edits: Vec<Edit>,
    pub(super) params: Vec<(u32, usize)>,
    pub(super) refusal: Option<String>,
}

impl<'r> RewriteVisitor<'r> {
    pub(super) fn new(sql: &'r str, rules: &'r [Compiled]) -> Self {
        RewriteVisitor {
            rules,
            index: LineIndex::new(sql),
            scopes: Vec::new(),
            queries: Vec::new(),
            statements: Vec::new(),
            frames: Vec::new(),
            roots: HashMap::new(),
            pending: HashMap::new(),
            inherited_order: HashMap::new(),
            root_scopes: Vec::new(),
            handled: HashSet::new(),
            edits: Vec::new(),
            params: Vec::new(),
            refusal: None,
        }
    }

    fn refuse(&mut self, reason: String) {
        if self.refusal.is_none() {
            self.refusal = Some(reason);
        }
    }

    /// Refuses with the standard ending naming the rule's column.
    fn refuse_form(&mut self, rule: usize, what: String) {
        let column = &self.rules[rule].column;
        let reason =
            format!("{what}, which the rewrite rule cannot prove; write {column} = <value>");
        self.refuse(reason);
    }

    fn visible_entries(&self) -> impl Iterator<Item = &Entry> {
        self.scopes
            .iter()
            .rev()
            .filter(|s| s.hidden == 0)
            .flat_map(|s| s.entries.iter())
    }

    fn visible_ctes(&self) -> impl Iterator<Item = &CteInfo> {
        self.queries.iter().rev().flat_map(|q| q.ctes.iter().rev())
    }

    fn cte(&self, name: &ObjectName) -> Option<&CteInfo> {
        if name.0.len() != 1 {
            return None;
        }
        let last = object_last(name);
        self.visible_ctes().find(|c| c.name == last)
    }

    /// The innermost visible relation called `qualifier`.
    fn lookup(&self, qualifier: &str) -> Option<&Entry> {
        self.visible_entries()
            .find(|e| e.qualifier.as_deref() == Some(qualifier))
    }

    /// Rule tables `query` may pass on: those it reads (directly or through a CTE), and
    /// those visible around it (or beside it, for `LATERAL`) when it names a rule's
    /// column (a correlated reference).
    fn carried_by<V: Visit>(&self, query: &V, beside: Option<&[Entry]>) -> Vec<String> {
        let mut names = NamesVisitor::default();
        let _ = query.visit(&mut names);
        let mut carries: Vec<String> = Vec::new();
        for rule in self.rules {
            let table = &rule.table;
            if carries.contains(table) {
                continue;
            }
            let reads = names.relations.contains(table)
                || self
                    .visible_ctes()
                    .any(|c| names.relations.contains(&c.name) && c.carries.contains(table));
            let correlated = names.idents.contains(&rule.column)
                && (self.visible_entries().any(|e| e.has(table))
                    || beside.is_some_and(|b| b.iter().any(|e| e.has(table))));
            if reads || correlated {
                carries.push(table.clone());
            }
        }
        carries
    }

    fn entries(&mut self, from: &[TableWithJoins], out: &mut Vec<Entry>) {
        for twj in from {
            self.factor(&twj.relation, out);
            for join in &twj.joins {
                self.factor(&join.relation, out);
            }
        }
    }

    fn factor(&mut self, factor: &TableFactor, out: &mut Vec<Entry>) {
        let alias_name = |alias: &Option<TableAlias>| alias.as_ref().map(|a| ident_lower(&a.name));
        let renames =
            |alias: &Option<TableAlias>| alias.as_ref().is_some_and(|a| !a.columns.is_empty());
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let last = object_last(name);
                let qualifier = Some(alias_name(alias).unwrap_or_else(|| last.clone()));
                let entry = if args.is_some() {
                    Entry {
                        qualifier,
                        kind: EntryKind::Function,
                        carries: Vec::new(),
                        renames: renames(alias),
                    }
                } else if let Some(cte) = self.cte(name) {
                    Entry {
                        qualifier,
                        kind: EntryKind::Cte,
                        carries: cte.carries.clone(),
                        renames: cte.renames || renames(alias),
                    }
                } else {
                    Entry {
                        qualifier,
                        kind: EntryKind::Base(last),
                        carries: Vec::new(),
                        renames: renames(alias),
                    }
                };
                out.push(entry);
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => self.entries(std::slice::from_ref(table_with_joins.as_ref()), out),
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = Vec::new();
                self.entries(std::slice::from_ref(table_with_joins.as_ref()), &mut inner);
                let mut carries: Vec<String> = Vec::new();
                for e in &inner {
                    for rule in self.rules {
                        if e.has(&rule.table) && !carries.contains(&rule.table) {
                            carries.push(rule.table.clone());
                        }
                    }
                }
                out.push(Entry {
                    qualifier: alias_name(alias),
                    kind: EntryKind::Other,
                    carries,
                    renames: renames(alias),
                });
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                let carries = self.carried_by(subquery.as_ref(), lateral.then_some(&out[..]));
                self.pending
                    .insert(addr(subquery.as_ref()), (BlockKind::PassThrough, !lateral));
                out.push(Entry {
                    qualifier: alias_name(alias),
                    kind: EntryKind::Derived,
                    carries,
                    renames: renames(alias),
                });
            }
            TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. }
            | TableFactor::JsonTable { alias, .. } => out.push(Entry {
                qualifier: alias_name(alias),
                kind: EntryKind::Function,
                carries: Vec::new(),
                renames: false,
            }),
            _ => out.push(Entry {
                qualifier: None,
                kind: EntryKind::Other,
                carries: Vec::new(),
                renames: false,
            }),
        }
    }

    /// Refuses a `FROM` list that renames a rule table's columns, or joins it
    /// `NATURAL`/`USING` its column with a relation the statement builds.
    fn check_from(&mut self, entries: &[Entry], joins: &[&Join]) {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(e) = entries.iter().find(|e| e.renames && e.has(&rule.table)) {
                let what = format!(
                    "renames the columns of {} with an alias column list ({})",
                    rule.table,
                    e.qualifier.as_deref().unwrap_or("?")
                );
                self.refuse_form(i, what);
                return;
            }
        }
        let mut natural = false;
        let mut using: Vec<String> = Vec::new();
        for join in joins {
            match join_constraint(&join.join_operator) {
                Some(JoinConstraint::Natural) => natural = true,
                Some(JoinConstraint::Using(names)) => using.extend(names.iter().map(object_last)),
                _ => {}
            }
        }
        if !natural && using.is_empty() {
            return;
        }
        let built = entries.iter().any(|e| !e.is_base());
        for (i, rule) in self.rules.iter().enumerate() {
            let joined = natural || using.contains(&rule.column);
            if joined && built && entries.iter().any(|e| e.has(&rule.table)) {
                let what = format!(
                    "joins {} NATURAL or USING ({}) with a relation the statement builds itself",
                    rule.table, rule.column
                );
                self.refuse_form(i, what);
                return;
            }
        }
    }

    fn push_scope(&mut self, entries: Vec<Entry>, joins: &[&Join]) {
        self.check_from(&entries, joins);
        self.scopes.push(Scope { entries, hidden: 0 });
    }

    /// The rules a (peeled) column reference belongs to.
    fn interest(&self, expr: &Expr) -> Option<Interest> {
        let of_entry = |entry: &Entry, column: &str| -> Vec<usize> {
            (0..self.rules.len())
                .filter(|&i| self.rules[i].column == column && entry.has(&self.rules[i].table))
                .collect()
        };
        let whole_row = |entry: &Entry| -> Vec<usize> {
            (0..self.rules.len())
                .filter(|&i| entry.has(&self.rules[i].table))
                .collect()
        };
        let found = |rules: Vec<usize>, whole_row| {
            (!rules.is_empty()).then_some(Interest { rules, whole_row })
        };
        match expr {
            Expr::Identifier(ident) => {
                let name = ident_lower(ident);
                let rules: Vec<usize> = (0..self.rules.len())
                    .filter(|&i| {
                        self.rules[i].column == name
                            && self.visible_entries().any(|e| e.has(&self.rules[i].table))
                    })
                    .collect();
                if !rules.is_empty() {
                    return found(rules, false);
                }
                let entry = self.lookup(&name)?;
                found(whole_row(entry), true)
            }
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let column = ident_lower(&parts[parts.len() - 1]);
                let qualifier = ident_lower(&parts[parts.len() - 2]);
                let entry = self.lookup(&qualifier)?;
                if column == "*" {
                    return found(whole_row(entry), true);
                }
                found(of_entry(entry, &column), false)
            }
            Expr::QualifiedWildcard(name, _) => {
                let entry = self.lookup(&object_last(name))?;
                found(whole_row(entry), true)
            }
            _ => None,
        }
    }

    /// Whether a column reference provably names a column of a base table (a value
    /// stored, not one the statement chose).
    fn is_base_column(&self, expr: &Expr) -> bool {
        match expr {
            Expr::CompoundIdentifier(parts) if parts.len() >= 2 => self
                .lookup(&ident_lower(&parts[parts.len() - 2]))
                .is_none_or(Entry::is_base),
            _ => self.visible_entries().all(Entry::is_base),
        }
    }

    fn in_prepare(&self) -> bool {
        self.statements.iter().any(|s| s.prepare)
    }

    fn literal_seen<'v>(&self, lit: &Literal<'v>) -> Seen<'v> {
        let negative = lit.sign == Some(true);
        let number = |n: Num| Seen::Num(if negative { n.negated() } else { n });
        match lit.value {
            Value::Number(n, _) => number(parse_number(n)),
            Value::HexStringLiteral(h) => {
                let text = self
                    .index
                    .offset(lit.span.start)
                    .and_then(|at| self.index.sql.get(at..));
                if text.is_some_and(|t| t.starts_with("0x") || t.starts_with("0X")) {
                    number(parse_number(&format!("0x{h}")))
                } else {
                    Seen::Opaque
                }
            }
            Value::SingleQuotedString(s)
            | Value::EscapedStringLiteral(s)
            | Value::UnicodeStringLiteral(s)
            | Value::NationalStringLiteral(s) => Seen::Str(s),
            Value::DollarQuotedString(d) => Seen::Str(&d.value),
            Value::Boolean(b) => Seen::Bool(*b),
            Value::Null => Seen::Null,
            _ => Seen::Opaque,
        }
    }

    /// Judges `other`, compared (`=`, `<>`, `IN`, `ANY`) with a column of `interest`.
    fn compare(&mut self, interest: &Interest, other: &Expr) {
        let first = interest.rules[0];
        let name = self.rules[first].name();
        match operand(other) {
            Operand::Literal(lit) => {
                let seen = self.literal_seen(&lit);
                for &rule in &interest.rules {
                    match verdict(&self.rules[rule].from, &seen, lit.integer_cast) {
                        Verdict::Equal => {
                            self.edits.push(Edit {
                                span: lit.span,
                                value: lit.value.clone(),
                                sign: lit.sign.is_some(),
                                quote: lit.quote,
                                rule,
                            });
                            return;
                        }
                        Verdict::Maybe(why) => {
                            let what = format!(
                                "compares {name} with {} (it may equal {}: it {why})",
                                lit.shown,
                                self.rules[rule].from.describe()
                            );
                            self.refuse_form(rule, what);
                            return;
                        }
                        Verdict::Different => {}
                    }
                }
            }
            Operand::Param(p) => {
                if self.in_prepare() {
                    self.refuse(format!(
                        "compares {name} with parameter {p} inside PREPARE; its value arrives in EXECUTE, where the rewrite rule cannot see it; use a literal or protocol-level parameters"
                    ));
                    return;
                }
                match p.strip_prefix('$').and_then(|n| n.parse::<u32>().ok()) {
                    Some(n) if n > 0 => {
                        for &rule in &interest.rules {
                            self.params.push((n, rule));
                        }
                    }
                    _ => {
                        self.refuse_form(first, format!("compares {name} with the placeholder {p}"))
                    }
                }
            }
            Operand::Column(column) => {
                if !self.is_base_column(column) {
                    let what = format!(
                        "compares {name} with {} (a column of a relation the statement builds itself: a derived table, VALUES, a function or a CTE)",
                        shown(column)
                    );
                    self.refuse_form(first, what);
                }
            }
            Operand::Refuse(why) => {
                let what = format!("compares {name} with {} ({why})", shown(other));
                self.refuse_form(first, what);
            }
            Operand::Other => {
                let what = format!("compares {name} with {} (not a literal)", shown(other));
                self.refuse_form(first, what);
            }
        }
    }

    /// Handles `expr` when it is a comparison form the rewrite understands.
    fn comparison(&mut self, expr: &Expr) {
        let column = |v: &Self, e: &Expr| v.interest(e).filter(|i| !i.whole_row);
        match expr {
            Expr::BinaryOp { left, op, right } if is_eq_like(op) => {
                let (l, r) = (peel(left), peel(right));
                let (li, ri) = (column(self, l), column(self, r));
                if let Some(i) = li {
                    self.handled.insert(addr(l));
                    self.compare(&i, r);
                }
                if let Some(i) = ri {
                    self.handled.insert(addr(r));
                    self.compare(&i, l);
                }
            }
            Expr::InList { expr: e, list, .. } => {
                let e = peel(e);
                if let Some(i) = column(self, e) {
                    self.handled.insert(addr(e));
                    for item in list {
                        self.compare(&i, item);
                    }
                }
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } if is_eq_like(compare_op) => {
                let l = peel(left);
                if let Some(i) = column(self, l) {
                    self.handled.insert(addr(l));
                    match peel(right) {
                        Expr::Array(array) => {
                            for item in &array.elem {
                                self.compare(&i, item);
                            }
                        }
                        other => {
                            let what = format!(
                                "compares {} with ANY/ALL of {} (not an ARRAY[…] of literals)",
                                self.rules[i.rules[0]].name(),
                                shown(other)
                            );
                            self.refuse_form(i.rules[0], what);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Judges a column reference that is not an operand of an understood comparison,
    /// from the expressions around it and the position of the outermost one.
    fn occurrence(&mut self, at: usize, interest: &Interest) {
        let rule = interest.rules[0];
        let name = if interest.whole_row {
            format!("the whole row of {}", self.rules[rule].table)
        } else {
            self.rules[rule].name()
        };
        let start = self.segment_start();
        let mut child = at;
        let mut bare = true;
        let mut failure: Option<String> = None;
        let mut unsettled = Vec::new();
        for i in (start..self.frames.len()).rev() {
            let frame = &self.frames[i];
            let subject = if bare {
                name.clone()
            } else {
                format!("an expression over {name}")
            };
            match &frame.kind {
                FrameKind::Nested => {}
                FrameKind::Sink => return,
                FrameKind::Scalar => bare = false,
                FrameKind::Function {
                    name: f,
                    class,
                    args,
                    filter,
                    ordering,
                } => {
                    if *filter == Some(child) {
                        failure = Some(format!("uses {subject} in the FILTER of {f}()"));
                    } else if ordering.contains(&child) {
                        if !bare {
                            failure = Some(format!("orders by {subject} in {f}()"));
                        }
                        bare = false;
                    } else if args.contains(&child) && *class != FnClass::Unknown {
                        if *class == FnClass::Aggregate && !bare {
                            failure = Some(format!("aggregates {subject} with {f}()"));
                        }
                        bare = false;
                    } else {
                        failure = Some(format!("passes {subject} to {f}()"));
                    }
                }
                FrameKind::Selecting(form) => failure = Some(form.refusal(&subject)),
            }
            if failure.is_some() {
                break;
            }
            if !bare {
                if frame.clear_above {
                    return;
                }
                unsettled.push(i);
            }
            child = frame.addr;
        }
        if failure.is_none() {
            let kind = self
                .roots
                .get(&child)
                .map_or(RootKind::Predicate, |r| r.kind.clone());
            let column = &self.rules[rule].column;
            failure = match kind {
                RootKind::Output => None,
                RootKind::Order if bare && !interest.whole_row => None,
                RootKind::Order => Some(format!("orders or groups by an expression over {name}")),
                RootKind::PassThrough(alias)
                    if bare
                        && !interest.whole_row
                        && alias.as_ref().is_none_or(|a| a == column) =>
                {
                    None
                }
                RootKind::PassThrough(Some(alias)) if bare => Some(format!(
                    "renames {name} to {alias} in a derived table, CTE or subquery"
                )),
                RootKind::PassThrough(_) => Some(format!(
                    "computes {} in a derived table, CTE or subquery",
                    if bare {
                        name.clone()
                    } else {
                        format!("an expression over {name}")
                    }
                )),
                RootKind::Predicate if bare => Some(format!(
                    "uses {name} other than in a comparison with a literal"
                )),
                RootKind::Predicate => {
                    Some(format!("uses an expression over {name} in a condition"))
                }
            };
        }
        if failure.is_none() {
            for i in unsettled {
                self.frames[i].clear_above = true;
            }
        }
        if let Some(what) = failure {
            self.refuse_form(rule, what);
        }
    }

    /// Whether the value of the expression at `at` (not yet among the frames) only
    /// reaches a result column, through arithmetic, casts and per-row functions.
    fn feeds_output(&self, at: usize) -> bool {
        let mut child = at;
        for frame in self.frames[self.segment_start()..].iter().rev() {
            match &frame.kind {
                FrameKind::Nested | FrameKind::Scalar => {}
                FrameKind::Function {
                    class: FnClass::Scalar,
                    args,
                    ..
                } if args.contains(&child) => {}
                _ => return false,
            }
            child = frame.addr;
        }
        self.roots
            .get(&child)
            .is_some_and(|r| r.kind == RootKind::Output)
    }

    fn segment_start(&self) -> usize {
        self.queries.last().map_or(0, |q| q.frames_start)
    }

    fn root(&mut self, expr: &Expr, kind: RootKind, scope: Option<Vec<Entry>>) {
        self.roots.insert(addr(expr), Root { kind, scope });
    }

    fn output_items(&mut self, items: &[SelectItem], scope: Option<&Vec<Entry>>) {
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e)
                | SelectItem::ExprWithAlias { expr: e, .. }
                | SelectItem::ExprWithAliases { expr: e, .. } => {
                    self.root(e, RootKind::Output, scope.cloned());
                }
                _ => {}
            }
        }
    }

    /// Registers parenthesized queries of a set expression with `kind`.
    fn register_set_expr(&mut self, body: &SetExpr, kind: BlockKind, order: &OrderRefs) {
        match body {
            SetExpr::Query(q) => {
                self.pending.insert(addr(q.as_ref()), (kind, false));
                if !order.is_empty() {
                    self.inherited_order.insert(addr(q.as_ref()), order.clone());
                }
            }
            SetExpr::SetOperation { left, right, .. } => {
                self.register_set_expr(left, kind, order);
                self.register_set_expr(right, kind, order);
            }
            _ => {}
        }
    }
}

fn joins_of(from: &[TableWithJoins]) -> Vec<&Join> {
    from.iter().flat_map(|twj| twj.joins.iter()).collect()
}

fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    match op {
        JoinOperator::Join(c)
        | JoinOperator::Inner(c)
        | JoinOperator::Left(c)
        | JoinOperator::LeftOuter(c)
        | JoinOperator::Right(c)
        | JoinOperator::RightOuter(c)
        | JoinOperator::FullOuter(c)
        | JoinOperator::CrossJoin(c)
        | JoinOperator::Semi(c)
        | JoinOperator::LeftSemi(c)
        | JoinOperator::RightSemi(c)
        | JoinOperator::Anti(c)
        | JoinOperator::LeftAnti(c)
        | JoinOperator::RightAnti(c)
        | JoinOperator::StraightJoin(c)
        | JoinOperator::AsOf { constraint: c, .. } => Some(c),
        _ => None,
    }
}

/// Relation names and identifier parts of a subtree, lower-cased.
#[derive(Default)]
struct NamesVisitor {
    relations: HashSet<String>,
    idents: HashSet<String>,
}

impl Visitor for NamesVisitor {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.relations.insert(object_last(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                self.idents.insert(ident_lower(ident));
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.idents.insert(ident_lower(last));
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for RewriteVisitor<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let (kind, hide) = self
            .pending
            .remove(&addr(query))
            .unwrap_or((BlockKind::Predicate, false));
        let hid = if hide {
            let top = self.scopes.len().checked_sub(1);
            if let Some(i) = top {
                self.scopes[i].hidden += 1;
            }
            top
        } else {
            None
        };
        let mut order = self
            .inherited_order
            .remove(&addr(query))
            .unwrap_or_default();
        if let Some(OrderByKind::Expressions(items)) = query.order_by.as_ref().map(|o| &o.kind) {
            for o in items {
                order.add(&o.expr);
            }
        }
        self.register_set_expr(&query.body, kind, &order);
        let direct_select = match query.body.as_ref() {
            SetExpr::Select(select) => Some(addr(select.as_ref())),
            _ => None,
        };
        self.queries.push(QueryFrame {
            kind,
            order,
            ctes: Vec::new(),
            hid,
            frames_start: self.frames.len(),
            direct_select,
            select_pushed: false,
        });
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let carries = self.carried_by(cte.query.as_ref(), None);
                self.pending
                    .insert(addr(cte.query.as_ref()), (BlockKind::PassThrough, false));
                let info = CteInfo {
                    name: ident_lower(&cte.alias.name),
                    carries,
                    renames: !cte.alias.columns.is_empty(),
                };
                if let Some(frame) = self.queries.last_mut() {
                    frame.ctes.push(info);
                }
            }
        }
        if let Some(OrderByKind::Expressions(order)) = query.order_by.as_ref().map(|o| &o.kind) {
            // A set operation's ORDER BY names its result columns.
            let scope = direct_select.is_none().then(|| {
                vec![Entry {
                    qualifier: None,
                    kind: EntryKind::Derived,
                    carries: self.carried_by(query.body.as_ref(), None),
                    renames: false,
                }]
            });
            for o in order {
                self.root(&o.expr, RootKind::Order, scope.clone());
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        if let Some(frame) = self.queries.pop() {
            if frame.select_pushed {
                self.scopes.pop();
            }
            if let Some(scope) = frame.hid.and_then(|i| self.scopes.get_mut(i)) {
                scope.hidden = scope.hidden.saturating_sub(1);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        let block = self.queries.last().map_or(BlockKind::Predicate, |q| q.kind);
        let mut order = self
            .queries
            .last()
            .map(|q| q.order.clone())
            .unwrap_or_default();
        if let Some(Distinct::On(exprs)) = &select.distinct {
            for e in exprs {
                order.add(e);
            }
        }
        let mut entries = Vec::new();
        self.entries(&select.from, &mut entries);
        self.push_scope(entries, &joins_of(&select.from));
        let first_wildcard = select.projection.iter().position(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        for (index, item) in select.projection.iter().enumerate() {
            let (e, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(ident_lower(alias))),
                SelectItem::ExprWithAliases { expr, .. } => (expr, Some(String::new())),
                _ => continue,
            };
            let kind = match block {
                BlockKind::Output
                    if order.names_column(index, first_wildcard, e, alias.as_deref()) =>
                {
                    RootKind::Order
                }
                BlockKind::Output => RootKind::Output,
                BlockKind::PassThrough => RootKind::PassThrough(alias),
                BlockKind::Predicate => RootKind::Predicate,
            };
            self.root(e, kind, None);
        }
        if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
            for e in exprs {
                self.root(e, RootKind::Order, None);
            }
        }
        if let Some(Distinct::On(exprs)) = &select.distinct {
            for e in exprs {
                self.root(e, RootKind::Order, None);
            }
        }
        for window in &select.named_window {
            if let NamedWindowExpr::WindowSpec(spec) = &window.1 {
                for e in &spec.partition_by {
                    self.root(e, RootKind::Order, None);
                }
                for o in &spec.order_by {
                    self.root(&o.expr, RootKind::Order, None);
                }
            }
        }
        if self.refusal.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        match self.queries.last_mut() {
            Some(q) if q.direct_select == Some(addr(select)) => q.select_pushed = true,
            _ => {
                self.scopes.pop();
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let mut pushed_scope = false;
        match statement {
            Statement::Query(q) => {
                self.pending
                    .insert(addr(q.as_ref()), (BlockKind::Output, false));
            }
            Statement::Insert(insert) => {
                if let Some(source) = &insert.source {
                    self.pending
                        .insert(addr(source.as_ref()), (BlockKind::Output, false));
                }
                if let TableObject::TableName(name) = &insert.table {
                    let table = object_last(name);
                    let target = Entry {
                        qualifier: Some(
                            insert
                                .table_alias
                                .as_ref()
                                .map_or_else(|| table.clone(), |a| ident_lower(&a.alias)),
                        ),
                        kind: EntryKind::Base(table.clone()),
                        carries: Vec::new(),
                        renames: false,
                    };
                    let excluded = Entry {
                        qualifier: Some("excluded".into()),
                        ..target.clone()
                    };
                    let both = vec![target.clone(), excluded];
                    if let Some(OnInsert::OnConflict(conflict)) = &insert.on {
                        if let OnConflictAction::DoUpdate(update) = &conflict.action {
                            for a in &update.assignments {
                                self.root(&a.value, RootKind::Output, Some(both.clone()));
                            }
                            if let Some(selection) = &update.selection {
                                self.root(selection, RootKind::Predicate, Some(both.clone()));
                            }
                        }
                    }
                    if let Some(returning) = &insert.returning {
                        self.output_items(returning, Some(&vec![target]));
                    }
                }
            }
            Statement::Update(update) => {
                let mut scope = Vec::new();
                self.entries(std::slice::from_ref(&update.table), &mut scope);
                let mut joins = joins_of(std::slice::from_ref(&update.table));
                if let Some(
                    UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from),
                ) = &update.from
                {
                    self.entries(from, &mut scope);
                    joins.extend(joins_of(from));
                }
                self.push_scope(scope, &joins);
                pushed_scope = true;
                for a in &update.assignments {
                    self.root(&a.value, RootKind::Output, None);
                }
                if let Some(returning) = &update.returning {
                    self.output_items(returning, None);
                }
            }
            Statement::Delete(delete) => {
                let mut scope = Vec::new();
                let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) =
                    &delete.from;
                self.entries(from, &mut scope);
                let mut joins = joins_of(from);
                if let Some(using) = &delete.using {
                    self.entries(using, &mut scope);
                    joins.extend(joins_of(using));
                }
                self.push_scope(scope, &joins);
                pushed_scope = true;
                if let Some(returning) = &delete.returning {
                    self.output_items(returning, None);
                }
            }
            Statement::Merge(merge) => {
                let mut scope = Vec::new();
                self.factor(&merge.table, &mut scope);
                self.factor(&merge.source, &mut scope);
                self.push_scope(scope, &[]);
                pushed_scope = true;
                for clause in &merge.clauses {
                    if let MergeAction::Update(update) = &clause.action {
                        if let MergeUpdateKind::Set(assignments) = &update.kind {
                            for a in assignments {
                                self.root(&a.value, RootKind::Output, None);
                            }
                        }
                    }
                }
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        self.pending
                            .insert(addr(q.as_ref()), (BlockKind::Output, false));
                    }
                }
            }
            Statement::Copy {
                source: CopySource::Query(q),
                ..
            } => {
                self.pending
                    .insert(addr(q.as_ref()), (BlockKind::Output, false));
            }
            Statement::CreateView(view) => {
                self.pending
                    .insert(addr(view.query.as_ref()), (BlockKind::Output, false));
            }
            Statement::CreateTable(table) => {
                if let Some(q) = &table.query {
                    self.pending
                        .insert(addr(q.as_ref()), (BlockKind::Output, false));
                }
            }
            _ => {}
        }
        self.statements.push(StatementFrame {
            pushed_scope,
            prepare: matches!(statement, Statement::Prepare { .. }),
        });
        if self.refusal.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        if self.statements.pop().is_some_and(|s| s.pushed_scope) {
            self.scopes.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let at = addr(expr);
        if self.frames.len() == self.segment_start() {
            let scope = self.roots.get(&at).and_then(|r| r.scope.clone());
            if let Some(entries) = scope {
                self.scopes.push(Scope { entries, hidden: 0 });
                self.root_scopes.push(at);
            }
        }
        match expr {
            // EXISTS reads no values from its subquery's result.
            Expr::Exists { subquery, .. } => {
                self.pending
                    .insert(addr(subquery.as_ref()), (BlockKind::Output, false));
            }
            // A scalar subquery whose value only reaches the result, per row.
            Expr::Subquery(query) if self.feeds_output(at) => {
                self.pending
                    .insert(addr(query.as_ref()), (BlockKind::Output, false));
            }
            _ => {}
        }
        self.comparison(expr);
        if !self.handled.contains(&at) {
            if let Some(interest) = self.interest(expr) {
                self.occurrence(at, &interest);
            }
        }
        if let Expr::Function(f) = expr {
            self.whole_row_arguments(f);
        }
        self.frames.push(Frame {
            addr: at,
            kind: frame_kind(expr),
            clear_above: false,
        });
        if self.refusal.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        self.frames.pop();
        let at = addr(expr);
        if self.root_scopes.last() == Some(&at) {
            self.root_scopes.pop();
            self.scopes.pop();
        }
        ControlFlow::Continue(())
    }
}

impl RewriteVisitor<'_> {
    /// `f(e.*)` passes a rule table's whole row (not an `Expr`, so checked here); only
    /// `count(e.*)` selects nothing by its values.
    fn whole_row_arguments(&mut self, f: &Function) {
        let FunctionArguments::List(list) = &f.args else {
            return;
        };
        let name = object_last(&f.name);
        for arg in &list.args {
            let (FunctionArg::Unnamed(a)
            | FunctionArg::Named { arg: a, .. }
            | FunctionArg::ExprNamed { arg: a, .. }) = arg;
            let FunctionArgExpr::QualifiedWildcard(qualifier) = a else {
                continue;
            };
            let Some(entry) = self.lookup(&object_last(qualifier)) else {
                continue;
            };
            let rule = (0..self.rules.len()).find(|&i| entry.has(&self.rules[i].table));
            if let Some(rule) = rule {
                if name != "count" {
                    let what = format!(
                        "passes the whole row of {} to {name}()",
                        self.rules[rule].table
                    );
                    self.refuse_form(rule, what);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Splicing

/// Maps sqlparser locations (1-based line, 1-based column in characters, lines
/// separated by `\n`) to byte offsets.
pub(super) struct LineIndex<'s> {
    pub(super) sql: &'s str,
    pub(super) starts: Vec<usize>,
}

impl<'s> LineIndex<'s> {
    pub(super) fn new(sql: &'s str) -> Self {
        let starts = std::iter::once(0)
            .chain(sql.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { sql, starts }
    }

    pub(super) fn offset(&self, at: Location) -> Option<usize> {
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

    /// [`offset`](Self::offset) of many locations in one pass over the text (linear
    /// in the text plus the sorting, where one by one is linear in each column).
    pub(super) fn offsets(&self, locations: &[Location]) -> Vec<Option<usize>> {
        let mut order: Vec<usize> = (0..locations.len()).collect();
        order.sort_by_key(|&i| (locations[i].line, locations[i].column));
        let mut out = vec![None; locations.len()];
        // (line, column) reached and its byte offset, both 0-based.
        let mut cursor: Option<(usize, usize, usize)> = None;
        for i in order {
            let at = locations[i];
            let (Some(line), Some(column)) = (
                usize::try_from(at.line).ok().and_then(|l| l.checked_sub(1)),
                usize::try_from(at.column)
                    .ok()
                    .and_then(|c| c.checked_sub(1)),
            ) else {
                continue;
            };
            let Some(&line_start) = self.starts.get(line) else {
                continue;
            };
            let (mut col, mut byte) = match cursor {
                Some((l, c, b)) if l == line && c <= column => (c, b),
                _ => (0, line_start),
            };
            while col < column {
                match self.sql[byte..].chars().next() {
                    Some(c) => {
                        byte += c.len_utf8();
                        col += 1;
                    }
                    None => break,
                }
            }
            cursor = Some((line, col, byte));
            if col == column {
                out[i] = Some(byte);
            }
        }
        out
    }
}

/// The literal a located text holds, if it is exactly one literal token.
fn located_value(text: &str) -> Option<Value> {
    let tokens = tokenize(text).ok()?;
    let mut significant = tokens.into_iter().filter(|t| !is_whitespace(&t.token));
    let token = significant.next()?.token;
    if significant.next().is_some() {
        return None;
    }
    Some(match token {
        Token::Number(n, long) => Value::Number(n, long),
        Token::SingleQuotedString(s) => Value::SingleQuotedString(s),
        Token::EscapedStringLiteral(s) => Value::EscapedStringLiteral(s),
        Token::UnicodeStringLiteral(s) => Value::UnicodeStringLiteral(s),
        Token::NationalStringLiteral(s) => Value::NationalStringLiteral(s),
        Token::DollarQuotedString(d) => Value::DollarQuotedString(d),
        Token::HexStringLiteral(s) => Value::HexStringLiteral(s),
        _ => return None,
    })
}

/// Replaces each edited literal in the original text.
pub(super) fn splice(sql: &str, edits: Vec<Edit>, rules: &[Compiled]) -> Result<String, SqlError> {
    let index = LineIndex::new(sql);
    let locations: Vec<Location> = edits
        .iter()
        .flat_map(|e| [e.span.start, e.span.end])
        .collect();
    let offsets = index.offsets(&locations);
    let mut ranges = Vec::with_capacity(edits.len());
    for (k, edit) in edits.into_iter().enumerate() {
        let not_located = || SqlError::LiteralNotLocated {
            line: edit.span.start.line,
            column: edit.span.start.column,
        };
        let start = offsets[2 * k].ok_or_else(not_located)?;
        let end = offsets[2 * k + 1].ok_or_else(not_located)?;
        let token = sql.get(start..end).ok_or_else(not_located)?;
        // The located text must be the literal itself.
        if located_value(token).as_ref() != Some(&edit.value) {
            return Err(not_located());
        }
        let start = if edit.sign {
            let before = sql[..start].trim_end();
            if !before.ends_with(['-', '+']) {
                return Err(not_located());
            }
            before.len() - 1
        } else {
            start
        };
        ranges.push((start, end, edit.rule, edit.quote));
    }
    ranges.sort_unstable();
    ranges.dedup();
    let mut out = String::with_capacity(sql.len() + 16 * ranges.len());
    let mut at = 0;
    for (start, end, rule, quote) in ranges {
        if start < at {
            // Overlapping edits cannot come from distinct literals.
            return Err(SqlError::LiteralNotLocated { line: 0, column: 0 });
        }
        let to = if quote {
            &rules[rule].to_quoted
        } else {
            &rules[rule].to
        };
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
pub(super) fn glues(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\'' || c == '.'
}

/// Characters that, right before a `-`, would start a comment (`--`) or form a
/// longer operator with it (PostgreSQL lexes `@-` as one operator, `=-` as two).
pub(super) fn glues_minus(c: char) -> bool {
    "-~!@#%^&|`?".contains(c)
}
