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

mod column_references;
mod forms;
mod params;
mod scope;
mod splice;
mod value;
mod visitor;

#[cfg(test)]
mod tests_forms;
#[cfg(test)]
mod tests_params;
#[cfg(test)]
mod tests_support;
#[cfg(test)]
mod tests_values;

use super::*;

pub(super) use params::{param, params_unprovable};
pub(super) use splice::LineIndex;

use splice::splice;
use value::{parse_number, Lit, Num};
use visitor::RewriteVisitor;

// ---------------------------------------------------------------------------------
// Rules

pub(super) struct Compiled {
    table: String,
    column: String,
    from: Lit,
    /// `to` as SQL text, spliced verbatim.
    to: String,
    /// `to` as a value: the number as written (`21`, `-5`) or the string's content.
    to_value: String,
    /// `to` as a string literal (for typed strings such as `int '20'`).
    to_quoted: String,
    /// `to` as an integer, when it is one (binary parameters).
    to_int: Option<i128>,
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
fn literal_text(text: &str, field: &'static str) -> Result<(Lit, String), SqlError> {
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
