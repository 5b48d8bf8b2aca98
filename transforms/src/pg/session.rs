//! The PostgreSQL rule engine: one [`PgSession`] per connection sees both directions,
//! keeps what the decisions need (the startup parameters, the server's transaction
//! status, which request each reply answers) and keeps the profile's rules, failing
//! closed (see [`crate::pg::policy`] for what is refused and why):
//!
//! - **rewrite** a predicate in Query and Parse text, or a parameter's value at Bind
//!   (the error position of a later ErrorResponse is dropped: it would point into text
//!   the client never sent);
//! - **mask** named columns in DataRow (NULL stays NULL), recognised by the shape the
//!   supervisor itself knows (see `mask`);
//! - **deny** a statement: it is swapped for one that makes the *server* raise SQLSTATE
//!   42501 (`DO … RAISE`), so the ErrorResponse and the ReadyForQuery status are the
//!   server's own — idle stays `I`, a transaction block really fails (`E`, a later
//!   COMMIT rolls back), the extended protocol discards to Sync with exactly one `Z` per
//!   Sync. No status byte is ever forged;
//! - **drop-session**: FATAL ErrorResponse to the client, Terminate to the server, close.
//!
//! Requests and replies are matched by one queue ([`Expect`]) in protocol order, exact
//! under any pipelining: the startup exchange, the supervisor's own catalog question
//! and Describes, and the client's messages each have their entry, and replies to the
//! supervisor's own requests never reach the client. Until the catalog answer is in,
//! the client's messages are held back (see `learn`).
//!
//! SSLRequest and GSSENCRequest are answered `N` (a tracked stream must stay readable).
//! A replication connection is refused while any rule is in force, unless an `allow`
//! rule names its user. Directions: inbound is client → server (what the tenant
//! PostgreSQL reads).

mod client;
mod learn;
mod mask;
mod server;
mod swap;

use std::collections::{HashMap, HashSet, VecDeque};

use super::message::{self as msg, MessageError, Startup};
use super::policy::Policy;
use super::sql::{MaskedColumn, PredicateRewrite};
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
    /// Relax the fail-closed defaults for matching sessions.
    Allow {
        /// When it applies.
        when: Condition,
        /// User-defined or SQL-running functions the session may call (lower-case).
        functions: Vec<String>,
        /// Users whose replication connections are let through.
        replication_users: Vec<String>,
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
            | PgRule::DropSession { when, .. }
            | PgRule::Allow { when, .. } => when,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Params {
    user: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
    replication: Option<String>,
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the StartupMessage.
    Startup,
    /// Startup forwarded, authenticating: client messages other than password
    /// responses are held.
    Auth,
    /// The catalog question is out: client messages are held.
    Learning,
    /// Serving the client.
    Ready,
}

/// What a server response answers, in order (the protocol answers in order).
#[derive(Debug, Clone)]
enum Expect {
    /// Authentication and the startup parameters, up to the first ReadyForQuery.
    Startup,
    /// A simple Query (or a swapped FunctionCall): everything up to ReadyForQuery;
    /// `named` are the masks whose table the text names.
    Simple {
        named: Vec<usize>,
    },
    /// The client's Parse: the statement exists on the server once ParseComplete
    /// says so (an error, or an earlier one the server skips to Sync after, means it
    /// does not).
    Parse(String, Box<Prepared>),
    Bind,
    /// The client's Describe of a statement: its ParameterDescription tells the
    /// parameters' types (what a binary value means at Bind).
    DescribeStatement(String),
    DescribePortal,
    /// The supervisor's own Describe of this portal: its reply is the shape of the
    /// Execute that follows, and is not the client's.
    HiddenDescribe(String),
    Execute(String),
    /// The client's Close of a statement (`S`) or portal (`P`): gone once
    /// CloseComplete says so.
    Close(u8, String),
    Sync,
    /// A Sync sent while the client was in a COPY FROM STDIN: the server ignores it if
    /// it did enter copy-in mode, answers it like any Sync if the COPY failed first.
    CopySync,
    /// A reply to a message the session injected: not the client's.
    Swallow(u8),
    /// Replies to the catalog question, up to its ReadyForQuery: not the client's.
    Learn,
}

/// Per result column: which mask, if any, and whether values are text.
type RowMask = Vec<Option<(usize, bool)>>;

/// A prepared statement as the client named it.
#[derive(Debug, Clone, Default)]
struct Prepared {
    /// Masks whose table the text names.
    named: Vec<usize>,
    /// `$n` compared with a rewritten column: (n, rewrite index).
    params: Vec<(u32, usize)>,
    /// Parameter type OIDs, from Parse or the server's ParameterDescription (0:
    /// unknown).
    param_types: Vec<u32>,
    /// How many `COPY … FROM` statements the text holds (each may put the server in
    /// copy-in mode when it runs).
    copies: usize,
    /// The client's text, judged again when the rules are replaced.
    text: String,
    /// The server holds a rewritten text, not the client's.
    rewritten: bool,
    /// Prepared under rules since replaced, which the new rules judge differently:
    /// why it may no longer be bound.
    revoked: Option<String>,
    /// Statements the text runs by SQL `EXECUTE name` (checked at each Bind: what
    /// they are then is what runs).
    executes: Vec<String>,
    /// `standard_conforming_strings` when it was judged (how the server read it).
    standard_strings: Option<bool>,
}

/// A portal: the shape of its rows, once the supervisor's own Describe answered.
#[derive(Debug, Clone, Default)]
struct Portal {
    named: Vec<usize>,
    copy_in: bool,
    mask: Option<Option<RowMask>>,
    /// Bound under rules since replaced: it may no longer be executed.
    revoked: bool,
}

/// The per-connection rule engine.
#[derive(Debug)]
pub struct PgSession {
    rules: Vec<PgRule>,
    phase: Phase,
    params: Params,
    policy: Policy,
    /// Replacement text per masked column (same index as `policy.masked`).
    replacements: Vec<Vec<u8>>,
    replication_users: Vec<String>,
    /// The server's transaction status from its last ReadyForQuery.
    status: u8,
    /// `standard_conforming_strings` as the server last reported; `None` while a
    /// change may be in flight.
    standard_strings: Option<bool>,
    /// Client messages are being discarded up to Sync (after a refused Parse or Bind).
    discarding: bool,
    /// A rewritten statement is in flight: ErrorResponse positions refer to text the
    /// client never sent, so they are dropped until the next ReadyForQuery.
    strip_position: bool,
    expect: VecDeque<Expect>,
    statements: HashMap<String, Prepared>,
    portals: HashMap<String, Portal>,
    /// The mask of the result whose DataRows are arriving now (simple Query).
    current: Option<RowMask>,
    /// (table OID, column number, mask index) of masked columns, from the catalog.
    learned_columns: HashSet<(u32, i16, usize)>,
    /// How many COPY FROM STDIN the client's messages are still inside (a Query may
    /// hold several; each ends with CopyDone or CopyFail).
    client_copies: usize,
    /// The server reported an error in the extended protocol and no Sync was pending:
    /// it discards every message up to the next Sync, so they expect no reply.
    server_skips_to_sync: bool,
    /// The server answered CopyInResponse: it ignores Syncs until the copy ends.
    server_in_copy: bool,
    /// Client messages held until the catalog answer is in (or new rules are in force).
    held: VecDeque<Vec<u8>>,
    /// Their bytes (bounded by `MAX_HELD`).
    held_bytes: usize,
    /// The server's `client_encoding`, as it last reported it.
    client_encoding: String,
    answer: learn::Answer,
    /// Rules that replace these at the first safe point (see `swap`).
    pending: Option<Vec<PgRule>>,
    /// The catalog question in flight is the one asked for replaced rules.
    swapping: bool,
    /// (SQL prepared statements, named cursors, transaction isolation) of the
    /// session, from the last question asked for replaced rules.
    answer_state: Option<(u64, u64, String)>,
    /// How many times replaced rules were put in force on this session.
    replaced: u32,
}

/// Bytes of client messages a session holds while it cannot judge them yet (before
/// authentication ends, while the catalog question is out, while new rules wait).
const MAX_HELD: usize = 1 << 20;

/// Type OIDs whose binary representation is their text (text, varchar, bpchar, name).
const TEXTUAL_TYPES: [u32; 4] = [25, 1043, 1042, 19];

fn rule_error(error: MessageError) -> RuleError {
    RuleError {
        rule: "postgres",
        reason: error.to_string(),
    }
}

/// The statement that makes the server itself refuse: SQLSTATE 42501 with `message`.
pub fn refusal_statement(message: &str) -> String {
    let safe = message.replace('\'', "''").replace('$', "");
    format!("DO $supervise$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '{safe}'; END$supervise$")
}

/// Whether `text` names `word` as a whole identifier (not inside a longer one).
fn mentions(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

impl PgSession {
    /// Whether the session is a replication connection (its stream carries WAL).
    fn is_replication_session(&self) -> bool {
        self.params
            .replication
            .as_deref()
            .is_some_and(is_replication)
    }
}

/// Whether a `replication` startup value asks for a replication connection.
fn is_replication(value: &str) -> bool {
    !matches!(
        value.to_ascii_lowercase().as_str(),
        "false" | "off" | "no" | "0"
    )
}

impl PgSession {
    /// A session applying `rules` (their conditions are checked at startup).
    pub fn new(rules: Vec<PgRule>) -> PgSession {
        PgSession {
            rules,
            phase: Phase::Startup,
            params: Params::default(),
            policy: Policy::default(),
            replacements: Vec::new(),
            replication_users: Vec::new(),
            status: b'I',
            standard_strings: Some(true),
            discarding: false,
            strip_position: false,
            expect: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            current: None,
            learned_columns: HashSet::new(),
            client_copies: 0,
            server_skips_to_sync: false,
            server_in_copy: false,
            held: VecDeque::new(),
            held_bytes: 0,
            client_encoding: String::new(),
            answer: learn::Answer::default(),
            pending: None,
            swapping: false,
            answer_state: None,
            replaced: 0,
        }
    }

    /// Records a decision, attributed to the configured rule that caused it: the first
    /// deny (refuse) or drop-session rule naming an object the reason names, the first
    /// rewrite rule for a rewrite; none for a fail-closed refusal no one rule caused.
    /// Attribution is for counting hits only; it decides nothing (and is left out
    /// while replacement rules wait, since the engine already numbers by them).
    fn decide(&self, out: &mut Output, action: &'static str, reason: &str) {
        if self.pending.is_some() {
            out.decide(action, reason, None);
            return;
        }
        let lower = reason.to_ascii_lowercase();
        let names = |objects: &[String]| objects.iter().any(|o| mentions(&lower, o));
        let rule = self.rules.iter().position(|rule| match (action, rule) {
            ("refuse", PgRule::Deny { objects, .. }) => names(objects),
            ("drop-session", PgRule::DropSession { objects, .. }) => names(objects),
            ("rewrite", PgRule::Rewrite { .. }) => true,
            _ => false,
        });
        out.decide(action, reason, rule);
    }

    /// The server's transaction status as last reported (`I`, `T` or `E`).
    pub fn transaction_status(&self) -> u8 {
        self.status
    }

    fn activate(&mut self) {
        for rule in self.rules.iter().filter(|r| r.when().matches(&self.params)) {
            match rule {
                PgRule::Rewrite { rewrite, .. } => self.policy.rewrites.push(rewrite.clone()),
                PgRule::Mask {
                    table,
                    column,
                    replacement,
                    ..
                } => {
                    self.policy.masked.push(MaskedColumn {
                        table: table.clone(),
                        column: column.clone(),
                    });
                    self.replacements.push(replacement.clone().into_bytes());
                }
                PgRule::Deny { objects, .. } => self.policy.deny.extend(objects.iter().cloned()),
                PgRule::DropSession { objects, .. } => {
                    self.policy.drop.extend(objects.iter().cloned())
                }
                PgRule::Allow {
                    functions,
                    replication_users,
                    ..
                } => {
                    self.policy
                        .allowed_functions
                        .extend(functions.iter().cloned());
                    self.replication_users
                        .extend(replication_users.iter().cloned());
                }
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
                    replication: param("replication"),
                };
                self.activate();
                if let Some(reason) = self.startup_refusal() {
                    out.decide("refuse", reason.as_str(), None);
                    out.back
                        .extend_from_slice(&msg::build_error("FATAL", "42501", &reason));
                    out.close = true;
                    return Ok(());
                }
                self.phase = Phase::Auth;
                self.expect.push_back(Expect::Startup);
                out.onward.extend_from_slice(message);
            }
        }
        Ok(())
    }

    /// Why this StartupMessage is refused, if it is: a replication connection would
    /// stream the whole cluster past every rule.
    fn startup_refusal(&self) -> Option<String> {
        let replication = self.params.replication.as_deref()?;
        if !is_replication(replication) || !self.policy.is_active() {
            return None;
        }
        let user = self.params.user.as_deref().unwrap_or("");
        if self.replication_users.iter().any(|u| u == user) {
            return None;
        }
        Some(format!(
            "supervise: replication connection (replication={replication}) refused: it would stream data past this stream's rules; an allow rule with replication_users may let a user through"
        ))
    }

    /// FATAL to the client, Terminate to the server, close. `to_client` and
    /// `to_server` are the Output halves for the direction being processed.
    fn drop_session(reason: &str, to_client: &mut Vec<u8>, to_server: &mut Vec<u8>) {
        to_client.extend_from_slice(&msg::build_error("FATAL", "42501", reason));
        to_server.extend_from_slice(&msg::build_terminate());
    }
}

impl Rule for PgSession {
    fn apply(
        &mut self,
        direction: Direction,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        if self.pending.is_some() {
            if let Some(reason) = self.replication_swap() {
                Self::end_session(&reason, out, direction == Direction::Inbound);
                return Ok(());
            }
        }
        match direction {
            Direction::Inbound if self.phase == Phase::Startup => self.startup(message, out),
            Direction::Inbound if self.pending.is_some() && self.phase == Phase::Ready => {
                self.swap_at(message, out)
            }
            Direction::Inbound => self.client_message(message, out),
            Direction::Outbound => self.server_message(message, out),
        }
    }

    fn name(&self) -> &'static str {
        "postgres"
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("transaction_status", char::from(self.status).to_string()),
            ("user", text(&self.params.user)),
            ("database", text(&self.params.database)),
            ("application_name", text(&self.params.application_name)),
            ("rules_active", self.policy.is_active().to_string()),
            ("rules_replaced", self.replaced.to_string()),
            ("rules_waiting", self.pending.is_some().to_string()),
        ]
    }

    fn keeps_session(&self) -> bool {
        true
    }

    fn adopt(&mut self, next: Box<dyn Rule>) -> Result<(), String> {
        let next: Box<dyn std::any::Any> = next;
        let next = next
            .downcast::<PgSession>()
            .map_err(|_| "the stream is no longer a PostgreSQL stream".to_owned())?;
        self.adopt_rules(next.rules);
        Ok(())
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
