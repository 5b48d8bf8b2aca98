//! Predicate rewriting: finds `column = literal` comparisons that belong to a rule's
//! table and replaces the literal's bytes in place, leaving the rest of the text as sent.

use super::*;

/// A literal value as matched: numbers by their text, strings by their content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Lit {
    Number { negative: bool, text: String },
    Text(String),
}

pub(super) struct Compiled {
    pub(super) table: String,
    pub(super) column: String,
    pub(super) from: Lit,
    pub(super) to: String,
}

impl Compiled {
    pub(super) fn new(rule: &PredicateRewrite) -> Result<Self, SqlError> {
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
pub(super) fn literal_text(text: &str, field: &'static str) -> Result<Lit, SqlError> {
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
pub(super) fn literal_of(expr: &Expr) -> Option<(Lit, Span)> {
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
pub(super) fn column_of(expr: &Expr) -> Option<(Option<String>, String)> {
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
pub(super) struct Entry {
    pub(super) qualifier: Option<String>,
    pub(super) relation: Option<String>,
}

pub(super) struct Edit {
    pub(super) span: Span,
    pub(super) lit: Lit,
    pub(super) rule: usize,
}

pub(super) struct RewriteVisitor<'r> {
    pub(super) rules: &'r [Compiled],
    /// One scope per query block being visited, innermost last.
    pub(super) scopes: Vec<Vec<Entry>>,
    /// Per statement being visited: whether it pushed a scope.
    pub(super) statement_scopes: Vec<bool>,
    /// CTE names visible, per query being visited.
    pub(super) ctes: Vec<Vec<String>>,
    pub(super) edits: Vec<Edit>,
}

impl RewriteVisitor<'_> {
    pub(super) fn is_cte(&self, name: &ObjectName) -> bool {
        name.0.len() == 1 && {
            let last = object_last(name);
            self.ctes.iter().flatten().any(|c| *c == last)
        }
    }

    pub(super) fn entries(&self, from: &[TableWithJoins], out: &mut Vec<Entry>) {
        for twj in from {
            self.factor(&twj.relation, out);
            for join in &twj.joins {
                self.factor(&join.relation, out);
            }
        }
    }

    pub(super) fn factor(&self, factor: &TableFactor, out: &mut Vec<Entry>) {
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
    pub(super) fn resolve(&self, qualifier: Option<&str>) -> Option<&str> {
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

    pub(super) fn try_match(&mut self, column: &Expr, literal: &Expr) {
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
}

/// Replaces each edited literal in the original text.
pub(super) fn splice(sql: &str, edits: Vec<Edit>, rules: &[Compiled]) -> Result<String, SqlError> {
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
pub(super) fn glues(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || c == '\'' || c == '.'
}

/// Characters that, right before a `-`, would start a comment (`--`) or form a
/// longer operator with it (PostgreSQL lexes `@-` as one operator, `=-` as two).
pub(super) fn glues_minus(c: char) -> bool {
    "-~!@#%^&|`?".contains(c)
}
