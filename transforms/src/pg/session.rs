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

mod mask;

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
    /// A reply to a message the session injected: not the client's.
    Swallow(u8),
    /// Replies to the learning query, up to its ReadyForQuery: not the client's.
    Learn,
}

/// What to do with one statement.
#[derive(Debug)]
enum Decision {
    Forward,
    Replace(String),
    Refuse(&'static str),
    Drop,
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
    /// Every configured table name (cheap pre-check before parsing).
    names: Vec<String>,
    /// Client messages are being discarded up to Sync (after a refused Parse).
    discarding: bool,
    /// The learning query was sent.
    learn_sent: bool,
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
            names: Vec::new(),
            discarding: false,
            learn_sent: false,
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
        let rewritten = self.rewrites.iter().map(|r| r.table.clone());
        let masked = self.masks.iter().map(|m| m.table.clone());
        self.names = self
            .deny
            .iter()
            .chain(&self.drop)
            .cloned()
            .chain(rewritten)
            .chain(masked)
            .collect();
        self.names.sort();
        self.names.dedup();
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

    /// The configured tables `sql` touches. Parsed at most once per statement, and not
    /// at all when the text mentions no configured name (the common case: cheap). SQL
    /// the parser cannot read is checked word by word instead, so an unparsable
    /// statement naming a protected table is still caught (fail closed).
    fn analyze(&self, sql: &str) -> Vec<String> {
        let lower = sql.to_lowercase();
        if !self.names.iter().any(|n| lower.contains(n.as_str())) {
            return Vec::new();
        }
        let tables = match sql::tables_touched(sql) {
            Ok(tables) => tables,
            Err(_) => lower
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(str::to_owned)
                .collect(),
        };
        let mut found: Vec<String> = tables
            .into_iter()
            .filter(|t| self.names.contains(t))
            .collect();
        found.sort();
        found.dedup();
        found
    }

    fn touched_masks(&self, tables: &[String]) -> Vec<usize> {
        (0..self.masks.len())
            .filter(|&i| tables.contains(&self.masks[i].table))
            .collect()
    }

    /// What to do with one statement, from the tables it touches.
    fn decide(&mut self, sql: &str, tables: &[String]) -> Decision {
        let any = |objects: &[String]| tables.iter().any(|t| objects.contains(t));
        if any(&self.drop) {
            return Decision::Drop;
        }
        if any(&self.deny) {
            return Decision::Refuse(
                "supervise: permission denied: the statement touches a protected object",
            );
        }
        if !self.touched_masks(tables).is_empty() && is_copy_out(sql) {
            // COPY data is not DataRow: the mask could not apply, so refuse (fail closed).
            return Decision::Refuse("supervise: permission denied: COPY out of a masked table");
        }
        if !self.rewrites.iter().any(|r| tables.contains(&r.table)) {
            return Decision::Forward;
        }
        match sql::rewrite(sql, &self.rewrites) {
            Ok(Some(new)) => {
                self.strip_position = true;
                Decision::Replace(new)
            }
            Ok(None) | Err(_) => Decision::Forward,
        }
    }

    /// FATAL to the client, Terminate to the server, close.
    fn drop_session(out: &mut Output) {
        let error = msg::build_error(
            "FATAL",
            "42501",
            "supervise: session terminated: the statement touches a protected object",
        );
        out.back.extend_from_slice(&error);
        out.onward.extend_from_slice(&msg::build_terminate());
        out.close = true;
    }

    /// Refuses a Parse the way the server refuses a bad one: in its place the server
    /// runs a statement that raises 42501 (so it fails an open transaction itself),
    /// the client's messages up to Sync are discarded, and the server's ErrorResponse
    /// and single ReadyForQuery reach the client. The replies to the injected Parse
    /// and Bind are swallowed. (A Parse swap alone would not do: the refusal has no
    /// parameters, so a driver binding the original's parameters fails differently.)
    fn refuse_parse(&mut self, message: &'static str, out: &mut Output) {
        let refusal = refusal_statement(message);
        out.onward
            .extend_from_slice(&msg::build_parse(&msg::ParseMsg {
                name: "",
                query: &refusal,
                param_types: vec![],
            }));
        out.onward
            .extend_from_slice(&msg::build_bind(&msg::BindMsg {
                portal: "",
                statement: "",
                param_formats: vec![],
                params: vec![],
                result_formats: vec![],
            }));
        out.onward.extend_from_slice(&msg::build_execute("", 0));
        self.expect.extend([
            Expect::Swallow(b'1'),
            Expect::Swallow(b'2'),
            Expect::Execute(String::new()),
        ]);
        self.discarding = true;
    }

    fn client_message(&mut self, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        let typed = msg::typed(message).map_err(rule_error)?;
        if self.discarding {
            // After a refused Parse the server would skip to Sync; so does the client's
            // pipeline here (Terminate still ends the session).
            match typed.tag {
                b'S' => self.discarding = false,
                b'X' => {}
                _ => return Ok(()),
            }
        }
        match typed.tag {
            b'Q' => {
                let sql = msg::parse_query(typed.body).map_err(rule_error)?;
                let tables = self.analyze(sql);
                let touched = self.touched_masks(&tables);
                match self.decide(sql, &tables) {
                    Decision::Drop => {
                        Self::drop_session(out);
                        return Ok(());
                    }
                    // The server raises the error itself: its status byte is the truth.
                    Decision::Refuse(why) => out
                        .onward
                        .extend_from_slice(&msg::build_query(&refusal_statement(why))),
                    Decision::Replace(new) => out.onward.extend_from_slice(&msg::build_query(&new)),
                    Decision::Forward => out.onward.extend_from_slice(message),
                }
                self.expect.push_back(Expect::Simple { touched });
                return Ok(());
            }
            b'P' => {
                let parse = msg::parse_parse(typed.body).map_err(rule_error)?;
                let tables = self.analyze(parse.query);
                let touched = self.touched_masks(&tables);
                let name = parse.name.to_owned();
                match self.decide(parse.query, &tables) {
                    Decision::Drop => {
                        Self::drop_session(out);
                        return Ok(());
                    }
                    Decision::Refuse(why) => {
                        self.refuse_parse(why, out);
                        return Ok(());
                    }
                    Decision::Replace(new) => {
                        let swapped = msg::ParseMsg {
                            query: &new,
                            ..parse
                        };
                        out.onward.extend_from_slice(&msg::build_parse(&swapped));
                    }
                    Decision::Forward => out.onward.extend_from_slice(message),
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
        match self.expect.front() {
            Some(Expect::Swallow(tag)) if *tag == typed.tag => {
                self.expect.pop_front();
                return Ok(());
            }
            // Asynchronous messages (notices, parameter status, notifications) are
            // the client's even in the middle of the learning query.
            Some(Expect::Learn) if !matches!(typed.tag, b'N' | b'S' | b'A') => {
                return self.learn_reply(typed.tag, typed.body)
            }
            _ => {}
        }
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
                if !self.learn_sent && !self.masks.is_empty() && self.status == b'I' {
                    // First idle moment after authentication: ask which columns the masks
                    // name, before the client's first statement (queued after it).
                    self.learn_sent = true;
                    out.back
                        .extend_from_slice(&msg::build_query(&self.learn_query()));
                    self.expect.push_back(Expect::Learn);
                }
            }
            _ => {}
        }
        out.onward.extend_from_slice(message);
        Ok(())
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
