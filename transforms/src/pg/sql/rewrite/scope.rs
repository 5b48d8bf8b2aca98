//! Query-block scoping: the relations each block's `FROM` brings into scope (tables,
//! CTEs, derived tables, functions), which rule tables each of them may pass on, and
//! the `FROM` lists refused outright (renamed columns, `NATURAL`/`USING` joins).

use std::collections::HashSet;

use sqlparser::ast::{Join, JoinConstraint, JoinOperator};

use super::forms::{addr, peel};
use super::visitor::RewriteVisitor;
use super::*;

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
    pub(super) fn has(&self, table: &str) -> bool {
        matches!(&self.kind, EntryKind::Base(t) if t == table)
            || self.carries.iter().any(|c| c == table)
    }

    pub(super) fn is_base(&self) -> bool {
        matches!(self.kind, EntryKind::Base(_))
    }
}

pub(super) struct Scope {
    pub(super) entries: Vec<Entry>,
    /// Hidden while a non-`LATERAL` subquery in its `FROM` is visited.
    pub(super) hidden: usize,
}

/// What the values of a query block's result feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BlockKind {
    /// Rows for the client (or a table): its result columns select nothing.
    Output,
    /// A derived table or CTE: its result columns are read by name outside.
    PassThrough,
    /// A subquery in an expression: its values are compared outside.
    Predicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RootKind {
    Output,
    /// A result column of a derived table or CTE, with its alias.
    PassThrough(Option<String>),
    /// `ORDER BY`, `GROUP BY`, `DISTINCT ON`, window definitions.
    Order,
    /// Anything else: conditions, subquery results, `LIMIT`, function arguments in
    /// `FROM`, `VALUES`, ….
    Predicate,
}

pub(super) struct Root {
    pub(super) kind: RootKind,
    /// Relations visible only in this expression (`INSERT … ON CONFLICT`, `RETURNING`,
    /// `ORDER BY` of a set operation).
    pub(super) scope: Option<Vec<Entry>>,
}

pub(super) struct CteInfo {
    pub(super) name: String,
    pub(super) carries: Vec<String>,
    pub(super) renames: bool,
}

/// Result columns an `ORDER BY` or `DISTINCT ON` names (bare names) or numbers: with
/// `LIMIT` they select rows by those columns' values, so such a column is judged like an
/// `ORDER BY` key (`SELECT abs(dept - 20) AS d … ORDER BY d LIMIT 1` is refused).
#[derive(Debug, Clone, Default)]
pub(super) struct OrderRefs {
    names: Vec<String>,
    /// 1-based result column numbers (`ORDER BY 2`).
    positions: Vec<u64>,
}

impl OrderRefs {
    pub(super) fn add(&mut self, expr: &Expr) {
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

    pub(super) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.positions.is_empty()
    }

    /// Whether result column `index` (0-based), `expr` with `alias`, may be one of
    /// these; after a `*` (`first_wildcard`) positions are unknown.
    pub(super) fn names_column(
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

pub(super) struct QueryFrame {
    pub(super) kind: BlockKind,
    pub(super) order: OrderRefs,
    pub(super) ctes: Vec<CteInfo>,
    /// Index of the scope hidden while this query is visited.
    pub(super) hid: Option<usize>,
    pub(super) frames_start: usize,
    /// The query's body when it is one `SELECT`: its scope stays for `ORDER BY`.
    pub(super) direct_select: Option<usize>,
    pub(super) select_pushed: bool,
}

pub(super) struct StatementFrame {
    pub(super) pushed_scope: bool,
    pub(super) prepare: bool,
}

impl RewriteVisitor<'_> {
    pub(super) fn visible_entries(&self) -> impl Iterator<Item = &Entry> {
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
    pub(super) fn lookup(&self, qualifier: &str) -> Option<&Entry> {
        self.visible_entries()
            .find(|e| e.qualifier.as_deref() == Some(qualifier))
    }

    /// Rule tables `query` may pass on: those it reads (directly or through a CTE), and
    /// those visible around it (or beside it, for `LATERAL`) when it names a rule's
    /// column (a correlated reference).
    pub(super) fn carried_by<V: Visit>(&self, query: &V, beside: Option<&[Entry]>) -> Vec<String> {
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

    pub(super) fn entries(&mut self, from: &[TableWithJoins], out: &mut Vec<Entry>) {
        for twj in from {
            self.factor(&twj.relation, out);
            for join in &twj.joins {
                self.factor(&join.relation, out);
            }
        }
    }

    pub(super) fn factor(&mut self, factor: &TableFactor, out: &mut Vec<Entry>) {
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

    pub(super) fn push_scope(&mut self, entries: Vec<Entry>, joins: &[&Join]) {
        self.check_from(&entries, joins);
        self.scopes.push(Scope { entries, hidden: 0 });
    }
}

pub(super) fn joins_of(from: &[TableWithJoins]) -> Vec<&Join> {
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
