//! Where a masked column may appear: the fail-closed check behind mask rules.
//!
//! A mask replaces a column's values in the rows the client receives, and it finds
//! those values by the result's RowDescription (table OID and column number, which
//! PostgreSQL traces through subqueries and CTEs to the base column) or by name. That
//! only works for a value that reaches the client *as the column itself*. Anything
//! else computed from it — `upper(ssn)`, `ssn || ''`, `ssn::bytea`, `max(ssn)`, a
//! whole-row reference (`SELECT e FROM employee e`, `row_to_json(e)`), a set operation
//! (`… UNION SELECT ssn …`, whose result columns carry no table), a copy into another
//! table (`INSERT … SELECT ssn`, `CREATE TABLE … AS`, `UPDATE … SET name = ssn`), or a
//! predicate that selects rows by the secret (`WHERE ssn LIKE '9%'`, an oracle; its
//! error messages can carry the value too: `ssn::int`) — carries the secret where the
//! mask cannot see it. So in a statement that reads a masked table, the masked
//! column's name may appear only:
//!
//! - as a bare column reference that *is* a result column of the statement's
//!   outermost `SELECT` (not a set operation), of `RETURNING`, or of the query of
//!   `DECLARE … CURSOR`, `PREPARE` or `EXPLAIN`;
//! - as a target column of `INSERT (…)` or `UPDATE … SET ssn = …` (writing is not
//!   reading), or as an output alias.
//!
//! `*` and `t.*` are allowed in those same outermost positions (PostgreSQL expands
//! them to base columns, which the mask recognises) and in `EXISTS (…)`; anywhere else
//! in a query block that reads a masked table they are refused, as are whole-row
//! references, `JOIN … USING (ssn)`, `NATURAL JOIN` and positional `ORDER BY`/`GROUP
//! BY` that point at the masked column. Every other appearance refuses the statement
//! with a reason naming the column. Names are compared lower-cased on their last part,
//! so a same-named column of another table is refused too (errs towards refusing).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    Assignment, AssignmentTarget, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    GroupByExpr, Ident, JoinConstraint, JoinOperator, ObjectName, ObjectNamePart, OrderByKind,
    Query, Select, SelectItem, SetExpr, Statement, TableAlias, TableFactor, Value, Visit, Visitor,
};

use super::{ident_lower, object_last, TablesVisitor};

/// A column whose values a mask rule replaces (lower-cased last name parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedColumn {
    /// The table.
    pub table: String,
    /// The column.
    pub column: String,
}

/// Checks `statements` against the masked columns; `Err` says why a statement could
/// carry a masked value where the mask cannot see it.
pub fn check_masked_use(statements: &[Statement], masked: &[MaskedColumn]) -> Result<(), String> {
    for statement in statements {
        let mut tables = TablesVisitor::default();
        let _ = statement.visit(&mut tables);
        let read: Vec<&MaskedColumn> = masked
            .iter()
            .filter(|m| tables.names.contains(&m.table))
            .collect();
        if read.is_empty() {
            continue;
        }
        check_statement(statement, &read)?;
    }
    Ok(())
}

fn check_statement(statement: &Statement, masked: &[&MaskedColumn]) -> Result<(), String> {
    let mut allowed = Allowed {
        masked: masked.iter().map(|m| m.column.clone()).collect(),
        ..Allowed::default()
    };
    allowed.collect(statement);
    let mut names = RelationNames::default();
    let _ = statement.visit(&mut names);
    let mut visitor = UseVisitor {
        masked,
        allowed: &allowed,
        relation_names: &names.0,
        exists: HashSet::new(),
        queries: Vec::new(),
        refusal: None,
    };
    let _ = statement.visit(&mut visitor);
    match visitor.refusal {
        Some(reason) => Err(reason),
        None => Ok(()),
    }
}

/// Positions where the masked column may be named, by address in the AST.
#[derive(Default)]
struct Allowed {
    idents: HashSet<*const Ident>,
    /// Output names given to a masked column (`ssn AS s`): naming them again
    /// (`ORDER BY s`, `GROUP BY s`) orders or groups by the hidden value.
    masked_aliases: HashSet<String>,
    /// The masked column names.
    masked: Vec<String>,
    /// The outermost SELECT blocks, whose `*`/`t.*` result columns reach the client.
    selects: HashSet<*const Select>,
    /// The outermost queries (their ORDER BY may name result columns by position).
    queries: HashSet<*const Query>,
}

impl Allowed {
    fn collect(&mut self, statement: &Statement) {
        match statement {
            Statement::Query(query) => self.outermost(query),
            Statement::Insert(insert) => {
                for column in &insert.columns {
                    self.object_name(column);
                }
                self.assignments(&insert.assignments);
                if let Some(items) = &insert.returning {
                    self.items(items);
                }
            }
            Statement::Update(update) => {
                self.assignments(&update.assignments);
                if let Some(items) = &update.returning {
                    self.items(items);
                }
            }
            Statement::Delete(delete) => {
                if let Some(items) = &delete.returning {
                    self.items(items);
                }
            }
            Statement::Prepare { statement, .. } | Statement::Explain { statement, .. } => {
                self.collect(statement)
            }
            Statement::Declare { stmts } => {
                for query in stmts.iter().filter_map(|d| d.for_query.as_deref()) {
                    self.outermost(query);
                }
            }
            _ => {}
        }
    }

    fn outermost(&mut self, query: &Query) {
        self.queries.insert(query);
        if let SetExpr::Select(select) = query.body.as_ref() {
            self.selects.insert(select.as_ref());
            self.items(&select.projection);
        }
    }

    fn items(&mut self, items: &[SelectItem]) {
        for item in items {
            match item {
                SelectItem::UnnamedExpr(expr) => self.bare_column(expr),
                SelectItem::ExprWithAlias { expr, alias } => {
                    self.bare_column(expr);
                    self.idents.insert(alias);
                    let names_masked = match expr {
                        Expr::Identifier(i) => self.masked.contains(&ident_lower(i)),
                        Expr::CompoundIdentifier(p) => p
                            .last()
                            .is_some_and(|i| self.masked.contains(&ident_lower(i))),
                        _ => false,
                    };
                    if names_masked {
                        self.masked_aliases.insert(ident_lower(alias));
                    }
                }
                _ => {}
            }
        }
    }

    fn bare_column(&mut self, expr: &Expr) {
        match expr {
            Expr::Identifier(ident) => {
                self.idents.insert(ident);
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(last) = parts.last() {
                    self.idents.insert(last);
                }
            }
            _ => {}
        }
    }

    fn assignments(&mut self, assignments: &[Assignment]) {
        for assignment in assignments {
            match &assignment.target {
                AssignmentTarget::ColumnName(name) => self.object_name(name),
                AssignmentTarget::Tuple(names) => names.iter().for_each(|n| self.object_name(n)),
            }
        }
    }

    fn object_name(&mut self, name: &ObjectName) {
        if let Some(ObjectNamePart::Identifier(ident)) = name.0.last() {
            self.idents.insert(ident);
        }
    }
}

/// Every name a relation goes by in the statement (table names and aliases), for
/// spotting whole-row references.
#[derive(Default)]
struct RelationNames(HashSet<String>);

impl Visitor for RelationNames {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let alias_of = |alias: &Option<TableAlias>| alias.as_ref().map(|a| ident_lower(&a.name));
        match factor {
            TableFactor::Table { name, alias, .. } => {
                self.0.insert(object_last(name));
                self.0.extend(alias_of(alias));
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::NestedJoin { alias, .. }
            | TableFactor::UNNEST { alias, .. } => self.0.extend(alias_of(alias)),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

struct UseVisitor<'a> {
    masked: &'a [&'a MaskedColumn],
    allowed: &'a Allowed,
    relation_names: &'a HashSet<String>,
    /// Subqueries of `EXISTS (…)`: their `*` selects nothing.
    exists: HashSet<*const Query>,
    /// Queries being visited, innermost last.
    queries: Vec<*const Query>,
    refusal: Option<String>,
}

impl UseVisitor<'_> {
    fn refuse(&mut self, reason: String) -> ControlFlow<()> {
        self.refusal = Some(reason);
        ControlFlow::Break(())
    }

    fn column(&self, name: &str) -> Option<&MaskedColumn> {
        self.masked.iter().copied().find(|m| m.column == name)
    }

    fn table_of_wildcard(&self, select: &Select) -> Option<&MaskedColumn> {
        let mut tables = TablesVisitor::default();
        for twj in &select.from {
            let _ = twj.visit(&mut tables);
        }
        self.masked
            .iter()
            .copied()
            .find(|m| tables.names.contains(&m.table))
    }

    fn positional(&mut self, query: &Query, expr: &Expr, clause: &str) -> ControlFlow<()> {
        let Expr::Value(v) = expr else {
            return ControlFlow::Continue(());
        };
        let Value::Number(n, _) = &v.value else {
            return ControlFlow::Continue(());
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return ControlFlow::Continue(());
        };
        let Some(item) = n
            .parse::<usize>()
            .ok()
            .and_then(|k| k.checked_sub(1))
            .and_then(|k| select.projection.get(k))
        else {
            return ControlFlow::Continue(());
        };
        let named = match item {
            SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => match e {
                Expr::Identifier(i) => self.column(&ident_lower(i)).is_some(),
                Expr::CompoundIdentifier(p) => p
                    .last()
                    .is_some_and(|i| self.column(&ident_lower(i)).is_some()),
                _ => false,
            },
            SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                self.table_of_wildcard(select).is_some()
            }
            _ => false,
        };
        if named {
            return self.refuse(format!(
                "{clause} {n} points at a masked column: it would order or group rows by the hidden value"
            ));
        }
        ControlFlow::Continue(())
    }
}

impl Visitor for UseVisitor<'_> {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        self.queries.push(query);
        if self.allowed.queries.contains(&(query as *const Query)) {
            if let Some(order_by) = &query.order_by {
                if let OrderByKind::Expressions(exprs) = &order_by.kind {
                    for e in exprs {
                        self.positional(query, &e.expr, "ORDER BY")?;
                    }
                }
            }
            if let SetExpr::Select(select) = query.body.as_ref() {
                if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
                    for e in exprs {
                        self.positional(query, e, "GROUP BY")?;
                    }
                }
            }
        } else {
            let mut tables = Vec::new();
            set_tables(query.body.as_ref(), &mut tables);
            if let Some(m) = self.masked.iter().find(|m| tables.contains(&m.table)) {
                return self.refuse(format!(
                    "reads all of masked table {} (TABLE) inside another query or a set operation, where the mask on {}.{} cannot follow it",
                    m.table, m.table, m.column
                ));
            }
        }
        if self.allowed.queries.contains(&(query as *const Query))
            && !matches!(query.body.as_ref(), SetExpr::Table(_))
        {
            let mut tables = Vec::new();
            set_tables(query.body.as_ref(), &mut tables);
            if let Some(m) = self.masked.iter().find(|m| tables.contains(&m.table)) {
                return self.refuse(format!(
                    "reads all of masked table {} (TABLE) in a set operation, whose result columns the mask on {}.{} cannot recognise",
                    m.table, m.table, m.column
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.queries.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        for twj in &select.from {
            for join in &twj.joins {
                let constraint = match &join.join_operator {
                    JoinOperator::Join(c)
                    | JoinOperator::Inner(c)
                    | JoinOperator::Left(c)
                    | JoinOperator::LeftOuter(c)
                    | JoinOperator::Right(c)
                    | JoinOperator::RightOuter(c)
                    | JoinOperator::FullOuter(c) => Some(c),
                    _ => None,
                };
                match constraint {
                    Some(JoinConstraint::Using(columns)) => {
                        for column in columns {
                            if let Some(m) = self.column(&object_last(column)) {
                                return self.refuse(format!(
                                    "joins USING the masked column {}.{}: rows would be matched by the hidden value",
                                    m.table, m.column
                                ));
                            }
                        }
                    }
                    Some(JoinConstraint::Natural) => {
                        if let Some(m) = self.table_of_wildcard(select) {
                            return self.refuse(format!(
                                "a NATURAL JOIN with masked table {} may match rows by the hidden {}.{}",
                                m.table, m.table, m.column
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        let outermost = self.allowed.selects.contains(&(select as *const Select));
        let in_exists = self.queries.last().is_some_and(|q| self.exists.contains(q));
        if outermost || in_exists {
            return ControlFlow::Continue(());
        }
        let wildcard = select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        if wildcard {
            if let Some(m) = self.table_of_wildcard(select) {
                return self.refuse(format!(
                    "selects * from masked table {} inside another query or a set operation, where the mask on {}.{} cannot follow it",
                    m.table, m.table, m.column
                ));
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Exists { subquery, .. } => {
                self.exists.insert(subquery.as_ref());
            }
            Expr::Identifier(ident) => {
                let name = ident_lower(ident);
                if self.relation_names.contains(&name) && self.column(&name).is_none() {
                    return self.refuse(format!(
                        "uses the whole row of {name} as a value, which would carry the masked columns past the mask"
                    ));
                }
            }
            Expr::QualifiedWildcard(name, _) => {
                return self.refuse(format!(
                    "uses {name}.* as a value, which would carry the masked columns past the mask"
                ));
            }
            Expr::Function(function) => {
                let is_count = object_last(&function.name) == "count";
                if let FunctionArguments::List(list) = &function.args {
                    for arg in &list.args {
                        let arg = match arg {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        match arg {
                            FunctionArgExpr::QualifiedWildcard(name) => {
                                return self.refuse(format!(
                                    "passes {name}.* to {}(), which would carry the masked columns past the mask",
                                    function.name
                                ));
                            }
                            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_)
                                if !is_count =>
                            {
                                return self.refuse(format!(
                                    "passes * to {}(), which would carry the masked columns past the mask",
                                    function.name
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<()> {
        let name = ident_lower(ident);
        if self.allowed.masked_aliases.contains(&name)
            && !self.allowed.idents.contains(&(ident as *const Ident))
        {
            return self.refuse(format!(
                "refers again to {name}, an output name of a masked column: ordering, grouping or filtering by it reveals the hidden value"
            ));
        }
        let Some(m) = self.column(&name) else {
            return ControlFlow::Continue(());
        };
        if self.allowed.idents.contains(&(ident as *const Ident)) {
            return ControlFlow::Continue(());
        }
        let (table, column) = (m.table.clone(), m.column.clone());
        self.refuse(format!(
            "uses the masked column {table}.{column} other than as a plain result column (in an expression, a condition, a subquery, a set operation or a copy), where the mask cannot follow its values"
        ))
    }
}

/// Refuses statements that change or derive from a mask or rewrite rule's table
/// (`ALTER TABLE … RENAME`, `CREATE VIEW … AS SELECT … FROM employee`, `CREATE TABLE …
/// AS`, `SELECT … INTO`, rules and triggers on it, …): a renamed column or a derived
/// relation would carry protected values out from under the rule. Reading and
/// writing rows (SELECT, INSERT, UPDATE, DELETE, COPY FROM, cursors, PREPARE, EXPLAIN)
/// and statements that neither change the table nor copy it (LOCK, ANALYZE, VACUUM,
/// TRUNCATE) are checked elsewhere or harmless. Statement kinds the parser does not
/// expose table references for count as touching (fail closed).
pub fn check_changes(statements: &[Statement], tables: &[String]) -> Result<(), String> {
    for statement in statements {
        if reads_or_writes_rows(statement) {
            continue;
        }
        let mut visitor = TablesVisitor::default();
        let _ = statement.visit(&mut visitor);
        let touched = tables.iter().find(|t| visitor.names.contains(t));
        let kind = statement_kind(statement);
        match touched {
            Some(table) => {
                return Err(format!(
                    "{kind} on or from {table}, protected by a mask or rewrite rule: changing it or deriving a relation from it would carry protected values past the rule"
                ))
            }
            None if visitor.opaque => {
                return Err(format!(
                    "{kind} in a statement list that names a table protected by a mask or rewrite rule cannot be checked"
                ))
            }
            None => {}
        }
    }
    Ok(())
}

fn reads_or_writes_rows(statement: &Statement) -> bool {
    match statement {
        Statement::Query(query) => !has_into(query),
        Statement::Prepare { statement, .. } | Statement::Explain { statement, .. } => {
            reads_or_writes_rows(statement)
        }
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Copy { .. }
        | Statement::Declare { .. }
        | Statement::Lock(_)
        | Statement::Analyze(_)
        | Statement::Truncate(_) => true,
        _ => false,
    }
}

/// `SELECT … INTO t` creates a table from the result.
fn has_into(query: &Query) -> bool {
    matches!(query.body.as_ref(), SetExpr::Select(select) if select.into.is_some())
}

fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second]
            if first.eq_ignore_ascii_case("create")
                || first.eq_ignore_ascii_case("alter")
                || first.eq_ignore_ascii_case("drop") =>
        {
            format!("{} {}", first.to_uppercase(), second.to_uppercase())
        }
        [first, ..] => first.to_uppercase(),
        [] => "the statement".into(),
    }
}

/// Names of `TABLE t` arms of a query body (through set operations, not into
/// subqueries), lower-cased without quotes.
pub(super) fn set_tables(body: &SetExpr, out: &mut Vec<String>) {
    match body {
        SetExpr::Table(table) => {
            if let Some(name) = &table.table_name {
                out.push(name.trim_matches('"').to_lowercase());
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            set_tables(left, out);
            set_tables(right, out);
        }
        _ => {}
    }
}

/// Refuses `q.f` where `q` names a table of `columns` and `f` is none of its columns:
/// PostgreSQL reads it as `f(q)`, a function of the whole row (`e.to_jsonb`,
/// `e.concat`), which carries masked and rewritten columns past their rules.
pub fn check_attribute_calls(
    statements: &[Statement],
    columns: &HashMap<String, HashSet<String>>,
) -> Result<(), String> {
    for statement in statements {
        let mut relations = RelationTables::default();
        let _ = statement.visit(&mut relations);
        let mut visitor = AttributeVisitor {
            relations: &relations.0,
            columns,
            refusal: None,
        };
        let _ = statement.visit(&mut visitor);
        if let Some(reason) = visitor.refusal {
            return Err(reason);
        }
    }
    Ok(())
}

/// The base table each relation name or alias of a statement stands for.
#[derive(Default)]
struct RelationTables(HashMap<String, String>);

impl Visitor for RelationTables {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = factor {
            let table = object_last(name);
            if let Some(alias) = alias {
                self.0.insert(ident_lower(&alias.name), table.clone());
            }
            self.0.insert(table.clone(), table);
        }
        ControlFlow::Continue(())
    }
}

struct AttributeVisitor<'a> {
    relations: &'a HashMap<String, String>,
    columns: &'a HashMap<String, HashSet<String>>,
    refusal: Option<String>,
}

impl Visitor for AttributeVisitor<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        let Expr::CompoundIdentifier(parts) = expr else {
            return ControlFlow::Continue(());
        };
        let [.., qualifier, attribute] = parts.as_slice() else {
            return ControlFlow::Continue(());
        };
        let Some(table) = self.relations.get(&ident_lower(qualifier)) else {
            return ControlFlow::Continue(());
        };
        let Some(known) = self.columns.get(table) else {
            return ControlFlow::Continue(());
        };
        let attribute = ident_lower(attribute);
        if known.contains(&attribute) {
            return ControlFlow::Continue(());
        }
        let qualifier = ident_lower(qualifier);
        self.refusal = Some(format!(
            "{qualifier}.{attribute} is not a column of {table}: PostgreSQL reads it as {attribute}({qualifier}), a function of the whole row, which would carry protected columns past the rules"
        ));
        ControlFlow::Break(())
    }
}
