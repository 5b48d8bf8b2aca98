//! The AST visitor that walks a statement list once: it tracks query blocks (their
//! scopes, CTEs, `ORDER BY` references and what their results feed), statements and
//! expression frames, and collects the literal edits, the parameters to judge at Bind,
//! and the first refusal.

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{
    Distinct, GroupByExpr, MergeAction, MergeUpdateKind, NamedWindowExpr, OnConflictAction,
    OnInsert, OrderByKind, SelectItem, SetExpr, TableObject,
};

use super::forms::{addr, frame_kind, Frame};
use super::scope::{
    joins_of, BlockKind, CteInfo, Entry, EntryKind, OrderRefs, QueryFrame, Root, RootKind, Scope,
    StatementFrame,
};
use super::*;

pub(super) struct Edit {
    pub(super) span: Span,
    pub(super) value: Value,
    pub(super) sign: bool,
    pub(super) quote: bool,
    pub(super) rule: usize,
}

pub(super) struct RewriteVisitor<'r> {
    pub(super) rules: &'r [Compiled],
    pub(super) index: LineIndex<'r>,
    pub(super) scopes: Vec<Scope>,
    pub(super) queries: Vec<QueryFrame>,
    pub(super) statements: Vec<StatementFrame>,
    pub(super) frames: Vec<Frame>,
    pub(super) roots: HashMap<usize, Root>,
    /// Kinds of queries about to be visited, and whether to hide the top scope.
    pub(super) pending: HashMap<usize, (BlockKind, bool)>,
    /// `ORDER BY` references a parenthesized query inherits from its set operation.
    inherited_order: HashMap<usize, OrderRefs>,
    /// Roots that pushed a scope.
    root_scopes: Vec<usize>,
    /// Column references already judged by the comparison they are an operand of.
    pub(super) handled: HashSet<usize>,
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

    pub(super) fn refuse(&mut self, reason: String) {
        if self.refusal.is_none() {
            self.refusal = Some(reason);
        }
    }

    /// Refuses with the standard ending naming the rule's column.
    pub(super) fn refuse_form(&mut self, rule: usize, what: String) {
        let column = &self.rules[rule].column;
        let reason =
            format!("{what}, which the rewrite rule cannot prove; write {column} = <value>");
        self.refuse(reason);
    }

    pub(super) fn segment_start(&self) -> usize {
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
