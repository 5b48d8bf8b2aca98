//! Judging each reference to a rule's column: an operand of a comparison is rewritten
//! (literal equal to `from`), reported (`$n`), proven unrelated or refused; any other
//! reference is judged by the expressions around it and by where they end up.

use sqlparser::ast::{Function, FunctionArg, FunctionArgExpr, FunctionArguments};

use super::forms::{addr, is_eq_like, operand, peel, shown, FnClass, FrameKind, Literal, Operand};
use super::scope::{Entry, RootKind};
use super::value::{parse_number, verdict, Num, Seen, Verdict};
use super::visitor::{Edit, RewriteVisitor};
use super::*;

/// A column reference that belongs to rules.
pub(super) struct Interest {
    /// Indexes of the rules whose table and column it is, in rule order.
    rules: Vec<usize>,
    /// A whole-row reference (`e`, `e.*`) of a rule's table.
    whole_row: bool,
}

impl RewriteVisitor<'_> {
    /// The rules a (peeled) column reference belongs to.
    pub(super) fn interest(&self, expr: &Expr) -> Option<Interest> {
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
    pub(super) fn comparison(&mut self, expr: &Expr) {
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
    pub(super) fn occurrence(&mut self, at: usize, interest: &Interest) {
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
    pub(super) fn feeds_output(&self, at: usize) -> bool {
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
}

impl RewriteVisitor<'_> {
    /// `f(e.*)` passes a rule table's whole row (not an `Expr`, so checked here); only
    /// `count(e.*)` selects nothing by its values.
    pub(super) fn whole_row_arguments(&mut self, f: &Function) {
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
