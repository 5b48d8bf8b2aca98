//! The PostgreSQL rule engine: one [`PgSession`] per connection sees both directions,
//! keeps what the decisions need (the startup parameters, the server's transaction
//! status, which result a DataRow belongs to) and applies the profile's rules:
//!
//! - **rewrite** a predicate in Query and Parse text (original bytes forwarded when
//!   nothing changed; the error position of a later ErrorResponse dropped, since it
//!   would point into text the client never sent);
//! - **mask** named columns in DataRow (NULL stays NULL);
//! - **deny** a statement: the client's statement is swapped for one that makes the
//!   *server* raise SQLSTATE 42501 (`DO … RAISE`), so the ErrorResponse and the
//!   ReadyForQuery status are the server's own — idle stays `I`, a transaction block
//!   really fails (`E`, a later COMMIT rolls back), the extended protocol discards to
//!   Sync with exactly one `Z` per Sync. No status byte is ever forged;
//! - **drop-session**: FATAL ErrorResponse to the client, Terminate to the server, close.
//!
//! SSLRequest and GSSENCRequest are answered `N` (a tracked stream must stay readable).
//! Directions: inbound is client → server (what the tenant PostgreSQL reads).

use std::collections::{HashMap, HashSet, VecDeque};

use super::message::{self as msg, MessageError, Startup};
use super::sql::{self, PredicateRewrite};
use crate::{Direction, FrameError, Output, Rule, RuleError};

/// Session attributes a rule can be conditioned on (from the StartupMessage).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    /// `user` must equal this.
    pub user: Option<String>,
    /// `database` must equal this (PostgreSQL defaults it to the user name).
    pub database: Option<String>,
    /// `application_name` must equal this.
    pub application_name: Option<String>,
}

/// One configured rule.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgRule {
    /// Rewrite a predicate in statements reading a table.
    Rewrite {
        /// When it applies.
        when: Condition,
        /// What to rewrite.
        rewrite: PredicateRewrite,
    },
    /// Replace the values of `table.column` in results.
    Mask {
        /// When it applies.
        when: Condition,
        /// Lower-case table name (last part).
        table: String,
        /// Lower-case column name.
        column: String,
        /// What non-NULL values become (text).
        replacement: String,
    },
    /// Refuse statements touching any of `objects` with SQLSTATE 42501.
    Deny {
        /// When it applies.
        when: Condition,
        /// Lower-case object names (last part).
        objects: Vec<String>,
    },
    /// End the session on a statement touching any of `objects`.
    DropSession {
        /// When it applies.
        when: Condition,
        /// Lower-case object names (last part).
        objects: Vec<String>,
    },
}

impl Condition {
    fn matches(&self, params: &Params) -> bool {
        let ok = |want: &Option<String>, have: &Option<String>| {
            want.as_ref().is_none_or(|w| Some(w) == have.as_ref())
        };
        ok(&self.user, &params.user)
            && ok(&self.database, &params.database)
            && ok(&self.application_name, &params.application_name)
    }
}

impl PgRule {
    fn when(&self) -> &Condition {
        match self {
            PgRule::Rewrite { when, .. }
            | PgRule::Mask { when, .. }
            | PgRule::Deny { when, .. }
            | PgRule::DropSession { when, .. } => when,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Params {
    user: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
}

/// A mask that applies to this session.
#[derive(Debug, Clone)]
struct Mask {
    table: String,
    column: String,
    replacement: Vec<u8>,
}

/// What a server response answers, in order (the protocol answers in order).
#[derive(Debug, Clone)]
enum Expect {
    /// A simple Query (or FunctionCall): everything up to ReadyForQuery; `touched` are
    /// the masks whose table the query text touches.
    Simple {
        touched: Vec<usize>,
    },
    Parse,
    Bind,
    DescribeStatement(String),
    DescribePortal(String),
    Execute(String),
    Close,
    Sync,
}

/// Per result column: which mask, if any, and whether values are text.
type RowMask = Vec<Option<(usize, bool)>>;

#[derive(Debug, Clone, Default)]
struct Statement {
    touched: Vec<usize>,
    /// Masked columns by index with the column's type OID (from Describe).
    columns: Option<Vec<Option<(usize, u32)>>>,
}

#[derive(Debug, Clone, Default)]
struct Portal {
    statement: String,
    result_formats: Vec<i16>,
    columns: Option<Vec<Option<(usize, u32)>>>,
}

/// The per-connection rule engine.
#[derive(Debug)]
pub struct PgSession {
    rules: Vec<PgRule>,
    started: bool,
    params: Params,
    rewrites: Vec<PredicateRewrite>,
    masks: Vec<Mask>,
    deny: Vec<String>,
    drop: Vec<String>,
    /// The server's transaction status from its last ReadyForQuery.
    status: u8,
    /// A rewritten statement is in flight: ErrorResponse positions refer to text the
    /// client never sent, so they are dropped until the next ReadyForQuery.
    strip_position: bool,
    expect: VecDeque<Expect>,
    statements: HashMap<String, Statement>,
    portals: HashMap<String, Portal>,
    /// The mask of the result whose DataRows are arriving now.
    current: Option<RowMask>,
    /// (table OID, column number) pairs seen under a masked column's name in a
    /// statement touching its table: masked under any alias from then on.
    learned: HashSet<(u32, i16, usize)>,
}

/// Type OIDs whose binary representation is their text (text, varchar, bpchar, name).
const TEXTUAL_TYPES: [u32; 4] = [25, 1043, 1042, 19];

fn rule_error(error: MessageError) -> RuleError {
    RuleError {
        rule: "postgres",
        reason: error.to_string(),
    }
}

/// `COPY … TO …` (table or query out to the client or a file).
fn is_copy_out(sql: &str) -> bool {
    let lower = sql.trim_start().to_lowercase();
    lower.starts_with("copy") && lower.split_whitespace().any(|w| w == "to")
}

/// The statement that makes the server itself refuse: SQLSTATE 42501 with `message`.
pub fn refusal_statement(message: &str) -> String {
    let safe = message.replace('\'', "''").replace('$', "");
    format!("DO $supervise$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '{safe}'; END$supervise$")
}

impl PgSession {
    /// A session applying `rules` (their conditions are checked at startup).
    pub fn new(rules: Vec<PgRule>) -> PgSession {
        PgSession {
            rules,
            started: false,
            params: Params::default(),
            rewrites: Vec::new(),
            masks: Vec::new(),
            deny: Vec::new(),
            drop: Vec::new(),
            status: b'I',
            strip_position: false,
            expect: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            current: None,
            learned: HashSet::new(),
        }
    }

    /// The server's transaction status as last reported (`I`, `T` or `E`).
    pub fn transaction_status(&self) -> u8 {
        self.status
    }

    fn activate(&mut self) {
        for rule in self.rules.iter().filter(|r| r.when().matches(&self.params)) {
            match rule {
                PgRule::Rewrite { rewrite, .. } => self.rewrites.push(rewrite.clone()),
                PgRule::Mask {
                    table,
                    column,
                    replacement,
                    ..
                } => self.masks.push(Mask {
                    table: table.clone(),
                    column: column.clone(),
                    replacement: replacement.clone().into_bytes(),
                }),
                PgRule::Deny { objects, .. } => self.deny.extend(objects.iter().cloned()),
                PgRule::DropSession { objects, .. } => self.drop.extend(objects.iter().cloned()),
            }
        }
    }

    fn startup(&mut self, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        match msg::parse_startup(message).map_err(rule_error)? {
            // TLS/GSS would make the stream opaque: decline, the client continues in
            // plaintext or gives up (sslmode=require), as with a server without TLS.
            Startup::Ssl | Startup::GssEnc => out.back.push(b'N'),
            Startup::Cancel { .. } => out.onward.extend_from_slice(message),
            startup @ Startup::Params { .. } => {
                let param = |name: &str| startup.param(name).map(str::to_owned);
                self.params = Params {
                    user: param("user"),
                    database: param("database").or_else(|| param("user")),
                    application_name: param("application_name"),
                };
                self.started = true;
                self.activate();
                out.onward.extend_from_slice(message);
            }
        }
        Ok(())
    }

    /// Whether `sql` touches one of `objects`. SQL the parser cannot read is checked
    /// word by word instead, so an unparsable statement naming a denied object is
    /// still caught (fail closed).
    fn touches(sql: &str, objects: &[String]) -> bool {
        if objects.is_empty() {
            return false;
        }
        match sql::touches_any(sql, objects) {
            Ok(found) => found,
            Err(_) => {
                let lower = sql.to_lowercase();
                lower
                    .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .any(|word| objects.iter().any(|o| o == word))
            }
        }
    }

    fn touched_masks(&self, sql: &str) -> Vec<usize> {
        if self.masks.is_empty() {
            return Vec::new();
        }
        let tables = sql::tables_touched(sql).unwrap_or_default();
        (0..self.masks.len())
            .filter(|&i| tables.contains(&self.masks[i].table))
            .collect()
    }

    /// Drop, deny or rewrite one statement's text. Returns the text to forward (None:
    /// unchanged) or `Err(())` when the session was dropped.
    fn decide(&mut self, sql: &str, masked: bool, out: &mut Output) -> Result<Option<String>, ()> {
        if Self::touches(sql, &self.drop) {
            let error = msg::build_error(
                "FATAL",
                "42501",
                "supervise: session terminated: the statement touches a protected object",
            );
            out.back.extend_from_slice(&error);
            out.onward.extend_from_slice(&msg::build_terminate());
            out.close = true;
            return Err(());
        }
        if Self::touches(sql, &self.deny) {
            return Ok(Some(refusal_statement(
                "supervise: permission denied: the statement touches a protected object",
            )));
        }
        if masked && is_copy_out(sql) {
            // COPY data is not DataRow: the mask could not apply, so refuse (fail closed).
            return Ok(Some(refusal_statement(
                "supervise: permission denied: COPY out of a masked table",
            )));
        }
        if self.rewrites.is_empty() {
            return Ok(None);
        }
        match sql::rewrite(sql, &self.rewrites) {
            Ok(Some(new)) => {
                self.strip_position = true;
                Ok(Some(new))
            }
            Ok(None) | Err(_) => Ok(None),
        }
    }

    fn client_message(&mut self, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        let typed = msg::typed(message).map_err(rule_error)?;
        match typed.tag {
            b'Q' => {
                let sql = msg::parse_query(typed.body).map_err(rule_error)?;
                let touched = self.touched_masks(sql);
                match self.decide(sql, !touched.is_empty(), out) {
                    Err(()) => return Ok(()),
                    Ok(Some(new)) => out.onward.extend_from_slice(&msg::build_query(&new)),
                    Ok(None) => out.onward.extend_from_slice(message),
                }
                self.expect.push_back(Expect::Simple { touched });
                return Ok(());
            }
            b'P' => {
                let parse = msg::parse_parse(typed.body).map_err(rule_error)?;
                let touched = self.touched_masks(parse.query);
                let name = parse.name.to_owned();
                match self.decide(parse.query, !touched.is_empty(), out) {
                    Err(()) => return Ok(()),
                    Ok(Some(new)) => {
                        let swapped = msg::ParseMsg {
                            query: &new,
                            ..parse
                        };
                        out.onward.extend_from_slice(&msg::build_parse(&swapped));
                    }
                    Ok(None) => out.onward.extend_from_slice(message),
                }
                self.statements.insert(
                    name,
                    Statement {
                        touched,
                        columns: None,
                    },
                );
                self.expect.push_back(Expect::Parse);
                return Ok(());
            }
            b'B' => {
                let bind = msg::parse_bind(typed.body).map_err(rule_error)?;
                let portal = Portal {
                    statement: bind.statement.to_owned(),
                    result_formats: bind.result_formats.clone(),
                    columns: None,
                };
                self.portals.insert(bind.portal.to_owned(), portal);
                self.expect.push_back(Expect::Bind);
            }
            b'D' => {
                let (kind, name) = msg::parse_describe(typed.body).map_err(rule_error)?;
                self.expect.push_back(if kind == b'S' {
                    Expect::DescribeStatement(name.to_owned())
                } else {
                    Expect::DescribePortal(name.to_owned())
                });
            }
            b'E' => {
                let (portal, _) = msg::parse_execute(typed.body).map_err(rule_error)?;
                self.expect.push_back(Expect::Execute(portal.to_owned()));
            }
            b'C' => {
                let (kind, name) = msg::parse_describe(typed.body).map_err(rule_error)?;
                if kind == b'S' {
                    self.statements.remove(name);
                } else {
                    self.portals.remove(name);
                }
                self.expect.push_back(Expect::Close);
            }
            b'S' => self.expect.push_back(Expect::Sync),
            b'F' => self.expect.push_back(Expect::Simple {
                touched: Vec::new(),
            }),
            _ => {}
        }
        out.onward.extend_from_slice(message);
        Ok(())
    }

    /// Column masks for a row description, given the masks whose table the statement
    /// touches. Learns (table OID, column) identities for later aliases.
    fn columns_for(
        &mut self,
        fields: &[msg::Field<'_>],
        touched: &[usize],
    ) -> Vec<Option<(usize, u32)>> {
        fields
            .iter()
            .map(|f| {
                let by_name = touched
                    .iter()
                    .copied()
                    .find(|&i| self.masks[i].column == f.name.to_lowercase());
                if let Some(i) = by_name {
                    if f.table_oid != 0 {
                        self.learned.insert((f.table_oid, f.column, i));
                    }
                    return Some((i, f.type_oid));
                }
                self.learned
                    .iter()
                    .find(|(oid, col, _)| {
                        *oid == f.table_oid && *col == f.column && f.table_oid != 0
                    })
                    .map(|&(_, _, i)| (i, f.type_oid))
            })
            .collect()
    }

    fn row_mask(
        columns: &[Option<(usize, u32)>],
        formats: impl Fn(usize) -> i16,
    ) -> Option<RowMask> {
        if columns.iter().all(Option::is_none) {
            return None;
        }
        Some(
            columns
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    c.map(|(i, oid)| (i, formats(n) == 0 || TEXTUAL_TYPES.contains(&oid)))
                })
                .collect(),
        )
    }

    fn statement_touched(&self, expect: Option<&Expect>) -> Vec<usize> {
        match expect {
            Some(Expect::Simple { touched }) => touched.clone(),
            Some(Expect::DescribeStatement(name)) => self
                .statements
                .get(name)
                .map(|s| s.touched.clone())
                .unwrap_or_default(),
            Some(Expect::DescribePortal(portal)) => self
                .portals
                .get(portal)
                .and_then(|p| self.statements.get(&p.statement))
                .map(|s| s.touched.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn server_message(&mut self, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        let typed = msg::typed(message).map_err(rule_error)?;
        match typed.tag {
            b'T' => {
                let fields = msg::parse_row_description(typed.body).map_err(rule_error)?;
                let touched = self.statement_touched(self.expect.front());
                let columns = self.columns_for(&fields, &touched);
                let formats: Vec<i16> = fields.iter().map(|f| f.format).collect();
                self.current = Self::row_mask(&columns, |n| formats.get(n).copied().unwrap_or(0));
                match self.expect.front().cloned() {
                    Some(Expect::DescribeStatement(name)) => {
                        self.expect.pop_front();
                        if let Some(s) = self.statements.get_mut(&name) {
                            s.columns = Some(columns);
                        }
                    }
                    Some(Expect::DescribePortal(name)) => {
                        self.expect.pop_front();
                        if let Some(p) = self.portals.get_mut(&name) {
                            p.columns = Some(columns);
                        }
                    }
                    _ => {}
                }
            }
            b'D' => {
                if self.current.is_none() {
                    self.current = self.execute_mask();
                }
                if let Some(mask) = &self.current {
                    let values = msg::parse_data_row(typed.body).map_err(rule_error)?;
                    let masked: Vec<Option<&[u8]>> = values
                        .iter()
                        .enumerate()
                        .map(|(n, value)| match (value, mask.get(n).copied().flatten()) {
                            (Some(_), Some((i, true))) => {
                                Some(self.masks[i].replacement.as_slice())
                            }
                            // A binary value of a non-text type cannot carry the
                            // replacement text: withheld as NULL rather than leaked.
                            (Some(_), Some((_, false))) => None,
                            (value, _) => *value,
                        })
                        .collect();
                    out.onward.extend_from_slice(&msg::build_data_row(&masked));
                    return Ok(());
                }
            }
            b'C' | b'I' | b's' => {
                self.current = None;
                if matches!(self.expect.front(), Some(Expect::Execute(_))) {
                    self.expect.pop_front();
                }
            }
            b'1' if matches!(self.expect.front(), Some(Expect::Parse)) => {
                self.expect.pop_front();
            }
            b'2' if matches!(self.expect.front(), Some(Expect::Bind)) => {
                self.expect.pop_front();
            }
            b'3' if matches!(self.expect.front(), Some(Expect::Close)) => {
                self.expect.pop_front();
            }
            b'n' if matches!(
                self.expect.front(),
                Some(Expect::DescribeStatement(_) | Expect::DescribePortal(_))
            ) =>
            {
                self.expect.pop_front();
            }
            b'E' => {
                self.current = None;
                // The server skips to the next Sync in the extended protocol.
                while matches!(self.expect.front(), Some(e) if !matches!(e, Expect::Sync | Expect::Simple { .. }))
                {
                    self.expect.pop_front();
                }
                if self.strip_position {
                    let fields = msg::parse_fields(typed.body).map_err(rule_error)?;
                    if fields.iter().any(|(code, _)| *code == b'P') {
                        let kept: Vec<(u8, &str)> = fields
                            .into_iter()
                            .filter(|(code, _)| *code != b'P')
                            .collect();
                        out.onward
                            .extend_from_slice(&msg::build_fields(b'E', &kept));
                        return Ok(());
                    }
                }
            }
            b'Z' => {
                self.status = msg::parse_ready(typed.body).map_err(rule_error)?;
                self.current = None;
                self.strip_position = false;
                if matches!(
                    self.expect.front(),
                    Some(Expect::Sync | Expect::Simple { .. })
                ) {
                    self.expect.pop_front();
                }
            }
            _ => {}
        }
        out.onward.extend_from_slice(message);
        Ok(())
    }

    /// The mask for rows of the Execute being answered, from its portal or statement.
    fn execute_mask(&self) -> Option<RowMask> {
        let Some(Expect::Execute(portal)) = self.expect.front() else {
            return None;
        };
        let portal = self.portals.get(portal)?;
        let columns = portal
            .columns
            .clone()
            .or_else(|| self.statements.get(&portal.statement)?.columns.clone())?;
        let formats = &portal.result_formats;
        Self::row_mask(&columns, |n| match formats.len() {
            0 => 0,
            1 => formats[0],
            _ => formats.get(n).copied().unwrap_or(0),
        })
    }
}

impl Rule for PgSession {
    fn apply(
        &mut self,
        direction: Direction,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        match direction {
            Direction::Inbound if !self.started => self.startup(message, out),
            Direction::Inbound => self.client_message(message, out),
            Direction::Outbound => self.server_message(message, out),
        }
    }

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn on_framing_error(&mut self, direction: Direction, error: &FrameError, out: &mut Output) {
        let text = format!("supervise: protocol violation in the {direction} stream: {error}");
        let fatal = msg::build_error("FATAL", "08P01", &text);
        match direction {
            Direction::Inbound => out.back.extend_from_slice(&fatal),
            Direction::Outbound => out.onward.extend_from_slice(&fatal),
        }
    }
}
