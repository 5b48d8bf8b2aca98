//! The adversarial end-to-end suite of issue 8 (item 7): a hostile client on the
//! tracked port of `profiles/pg-demo.toml` tries every class of attack the issue lists
//! ("Why"), several variants each, with three kinds of client — psql (simple
//! protocol), the `postgres` crate (extended protocol, binary results) and a raw wire
//! client that builds every message by hand (`pgcluster::wire`).
//!
//! The contract each attack is held to (issue 8, DESIGN.md "Rules fail closed"):
//!
//! 1. no protected value appears ANYWHERE in the raw bytes the client received (psql:
//!    stdout + stderr; raw client: every byte read; crate: every value's raw bytes,
//!    error fields and notices). Protected: every ssn (clear, reversed, hex of its
//!    bytes as bytea output shows them, base64, digits only, sha256), every salaries
//!    amount and note, audit_log's rows, and for rewrite attacks the names of
//!    department 20;
//! 2. a statement the engine cannot prove safe is refused — ErrorResponse severity
//!    ERROR, SQLSTATE 42501, message starting `supervise:` — and the session stays
//!    usable (a following `SELECT` answers on the same connection; inside BEGIN the
//!    refusal fails the transaction, so COMMIT reports ROLLBACK). Where the attack's
//!    result is a plain column, a masked value (XXX-XX-XXXX) is accepted instead;
//! 3. drop-session on audit_log: FATAL 42501, the connection closed, and nothing the
//!    session did to audit_log committed (checked over the UNIX socket);
//! 4. a replication connection is refused with a FATAL naming replication, and no data
//!    file content reaches the client;
//! 5. (pg_ordinary.rs) statements no rule concerns pass unchanged.
//!
//! Most attacks also run a *control*: the same bytes over the untracked UNIX socket
//! must show the secret (or the oracle, or the replication answer), so a tracked run
//! without the secret really means the supervisor stopped it and not that the attack
//! was broken. A broken control fails the test too.
//!
//! Every attack prints one line, `attack <label>: refused|masked|rewritten|dropped|
//! LEAKED <what>` (plus `VIOLATION …` when the contract is broken without a leak), and
//! each #[test] fails at the end listing every leak and violation, so one run shows all
//! of them. Each #[test] starts one cluster (`pgcluster::Cluster`, its own free port).

mod common;
mod pgcluster;

use pgcluster::wire::{self, Msg, Raw, Target};
use pgcluster::*;
use postgres::types::ToSql;
use sha2::Digest;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------- the data

/// The attack schema: every secret is distinctive, so a byte scan is meaningful.
const SCHEMA: &str = "
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES
    (1, 'zz_dept20_alice', 20, '931-77-4410'),
    (2, 'zz_dept20_bob',   20, '931-88-5521'),
    (3, 'yy_dept21_carol', 21, '931-66-3397'),
    (4, 'yy_dept21_dave',  21, '931-55-2286'),
    (5, 'xx_dept22_erin',  22, '931-44-1175'),
    (6, 'yy_dept21_frank', 21, NULL);
CREATE TABLE project (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL);
INSERT INTO project VALUES (1, 'apollo', 20), (2, 'borealis', 21), (3, 'cygnus', 20);
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL, note text NOT NULL);
INSERT INTO salaries VALUES (1, 918273.64, 'SALARY-SECRET-7Q'), (2, 827364.55, 'SALARY-SECRET-8R');
CREATE TABLE audit_log (id int PRIMARY KEY, what text NOT NULL);
INSERT INTO audit_log VALUES (1, 'AUDIT-BASELINE');
";

/// employee's rows as the schema creates them (the admin restores them after
/// attacks that may have changed them).
const EMPLOYEE_ROWS: &str = "
    (1, 'zz_dept20_alice', 20, '931-77-4410'),
    (2, 'zz_dept20_bob',   20, '931-88-5521'),
    (3, 'yy_dept21_carol', 21, '931-66-3397'),
    (4, 'yy_dept21_dave',  21, '931-55-2286'),
    (5, 'xx_dept22_erin',  22, '931-44-1175'),
    (6, 'yy_dept21_frank', 21, NULL)";

const SSNS: &[&str] = &[
    "931-77-4410",
    "931-88-5521",
    "931-66-3397",
    "931-55-2286",
    "931-44-1175",
];
const SALARY_AMOUNTS: &[&str] = &["918273.64", "827364.55"];
const SALARY_NOTES: &[&str] = &["SALARY-SECRET-7Q", "SALARY-SECRET-8R"];
const AUDIT_ROWS: &[&str] = &["AUDIT-BASELINE"];
const DEPT20_NAMES: &[&str] = &["zz_dept20_alice", "zz_dept20_bob"];
/// What department 21's names start with: a rewritten `dept = 20` shows these.
const DEPT21_MARK: &str = "yy_dept21_";
const MASK: &str = "XXX-XX-XXXX";
/// A query whose answer proves the session still works.
const ALIVE_SQL: &str = "SELECT 'alive' || '-marker'";
const ALIVE: &str = "alive-marker";

/// Timeout of one psql attack run (a hang is a violation, not a stuck suite).
const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one crate attack.
const CRATE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the byte scan

/// One spelling of one protected value, lower-cased (the scan is case-insensitive).
#[derive(Debug, Clone)]
struct Form {
    /// "ssn", "salaries note", …
    kind: String,
    /// The value as stored.
    value: String,
    /// "" (clear), "reversed", "as hex", …; "prefix …" marks a partial value.
    spelling: String,
    needle: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

fn base64(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.len();
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= n {
                s.push(A[((v >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// The spellings of `value` an attack could make the server produce.
fn spellings(kind: &str, value: &str, rich: bool) -> Vec<Form> {
    let mut v = vec![(String::new(), value.to_owned())];
    if rich {
        v.push(("reversed".into(), value.chars().rev().collect()));
        v.push(("as hex".into(), hex(value.as_bytes())));
        // Only whole 3-byte groups: the prefix is the same whatever follows.
        let whole = value.len() / 3 * 3;
        if whole >= 6 {
            v.push(("as base64".into(), base64(&value.as_bytes()[..whole])));
        }
        let digits: String = value.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 6 && digits.len() != value.len() {
            v.push(("digits only".into(), digits));
        }
        v.push((
            "sha256".into(),
            hex(&sha2::Sha256::digest(value.as_bytes())),
        ));
    }
    v.into_iter()
        .map(|(spelling, n)| Form {
            kind: kind.to_owned(),
            value: value.to_owned(),
            spelling,
            needle: n.to_ascii_lowercase().into_bytes(),
        })
        .collect()
}

/// Parts of an ssn an error message may quote (`931-77…`, `…77-4410`): reported only
/// when no whole spelling of the same value was found.
fn ssn_parts(value: &str) -> Vec<Form> {
    [(&value[..6], "prefix"), (&value[4..], "suffix")]
        .into_iter()
        .map(|(part, what)| Form {
            kind: "ssn".to_owned(),
            value: value.to_owned(),
            spelling: format!("{what} {part:?}"),
            needle: part.to_ascii_lowercase().into_bytes(),
        })
        .collect()
}

/// Every protected value, in every spelling.
fn protected_forms() -> Vec<Form> {
    let mut f = Vec::new();
    for s in SSNS {
        f.extend(spellings("ssn", s, true));
        f.extend(ssn_parts(s));
    }
    for s in SALARY_AMOUNTS {
        f.extend(spellings("salary amount", s, false));
    }
    for s in SALARY_NOTES {
        f.extend(spellings("salaries note", s, true));
    }
    for s in AUDIT_ROWS {
        f.extend(spellings("audit_log row", s, true));
    }
    f
}

/// What a rewrite attack must not show: department 20's names.
fn dept20_forms() -> Vec<Form> {
    DEPT20_NAMES
        .iter()
        .flat_map(|n| spellings("dept-20 name", n, true))
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last = hay.len() - needle.len();
    let mut i = 0;
    while i <= last {
        match hay[i..=last].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// One protected value found in the bytes.
#[derive(Debug, Clone)]
struct Hit {
    form: Form,
    /// The bytes around it (escaped).
    context: String,
}

/// The forms found in `bytes`, each with a little context.
fn scan(bytes: &[u8], forms: &[Form]) -> Vec<Hit> {
    let lower = bytes.to_ascii_lowercase();
    let mut hits: Vec<Hit> = Vec::new();
    for f in forms {
        if let Some(at) = find(&lower, &f.needle) {
            let from = at.saturating_sub(20);
            let to = (at + f.needle.len() + 20).min(bytes.len());
            hits.push(Hit {
                form: f.clone(),
                context: escape_bytes(&bytes[from..to]),
            });
        }
    }
    // A partial value counts only where no whole spelling of it was found.
    let whole: Vec<String> = hits
        .iter()
        .filter(|h| !is_part(&h.form))
        .map(|h| h.form.value.clone())
        .collect();
    hits.retain(|h| !is_part(&h.form) || !whole.contains(&h.form.value));
    hits
}

fn is_part(f: &Form) -> bool {
    f.spelling.starts_with("prefix") || f.spelling.starts_with("suffix")
}

/// `ssn 931-77-4410 (+4 more), salaries note as hex SALARY-SECRET-7Q — e.g. «…»`.
fn describe_hits(hits: &[Hit]) -> String {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for h in hits {
        let key = if h.form.spelling.is_empty() {
            h.form.kind.clone()
        } else {
            format!("{} {}", h.form.kind, h.form.spelling)
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => {
                if !v.contains(&h.form.value) {
                    v.push(h.form.value.clone())
                }
            }
            None => groups.push((key, vec![h.form.value.clone()])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(k, v)| match v.len() {
            1 => format!("{k} {}", v[0]),
            n => format!("{k} {} (+{} more)", v[0], n - 1),
        })
        .collect();
    format!(
        "{} — e.g. «{}»",
        parts.join(", "),
        hits.first().map(|h| h.context.as_str()).unwrap_or("")
    )
}

// ---------------------------------------------------------------- judging

/// What the client saw from one attack.
#[derive(Debug, Clone)]
struct Err {
    severity: String,
    code: String,
    message: String,
}

#[derive(Debug, Default)]
struct Obs {
    /// Every byte the client received (or, for the crate, every value and error).
    bytes: Vec<u8>,
    /// ErrorResponses (not notices).
    errors: Vec<Err>,
    /// The server closed the connection.
    closed: bool,
    /// The client got no answer within its timeout.
    hung: bool,
    /// Contract checks that failed while running the attack.
    violations: Vec<String>,
    /// What the client saw, briefly (shown with a violation).
    trail: String,
}

impl Obs {
    fn from_raw(r: &Raw, violations: Vec<String>) -> Obs {
        Obs {
            bytes: r.received.clone(),
            errors: r
                .msgs
                .iter()
                .filter_map(Msg::error)
                .map(|f| Err {
                    severity: f.severity,
                    code: f.code,
                    message: f.message,
                })
                .collect(),
            closed: r.eof || r.send_failed,
            hung: r.timed_out,
            violations,
            trail: tail(&summaries(&r.msgs), 500),
        }
    }

    fn errors_summary(&self) -> String {
        let v: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{} {} {}", e.severity, e.code, e.message))
            .collect();
        format!("[{}]", v.join(" / "))
    }
}

/// What an attack must end in (besides never leaking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused (42501) or the values masked.
    RefuseOrMask,
    /// Refused (42501).
    Refuse,
    /// The session dropped: FATAL 42501, connection closed, audit_log untouched.
    Drop,
    /// Refused, or department 21's rows instead of 20's; never a dept-20 name.
    Rewrite,
    /// A FATAL naming replication, connection closed.
    Replication,
    /// Refused; the marker appearing means the secret decided the answer.
    Oracle(&'static str),
    /// Refused (42501) or the session dropped (FATAL 42501, closed); the runner also
    /// checks audit_log is untouched.
    RefuseOrDrop,
}

impl Expect {
    fn forms(self) -> Vec<Form> {
        let mut f = protected_forms();
        match self {
            Expect::Rewrite => f.extend(dept20_forms()),
            Expect::Oracle(marker) => {
                // Its own text quotes parts of an ssn: only whole values count here.
                f.retain(|x| !is_part(x));
                f.push(Form {
                    kind: "oracle answer".to_owned(),
                    value: marker.to_owned(),
                    spelling: String::new(),
                    needle: marker.to_ascii_lowercase().into_bytes(),
                });
            }
            _ => {}
        }
        f
    }

    fn wants_alive(self) -> bool {
        !matches!(
            self,
            Expect::Drop | Expect::Replication | Expect::RefuseOrDrop
        )
    }
}

/// The control run over the untracked socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctl {
    /// No control.
    No,
    /// The same script.
    Plain,
    /// The same script inside BEGIN … ROLLBACK (it writes).
    Tx,
}

/// The results of one #[test]: lines printed as they come, failures listed at the end.
#[derive(Debug)]
struct Suite {
    name: &'static str,
    attacks: usize,
    leaks: Vec<String>,
    violations: Vec<String>,
    broken_controls: Vec<String>,
}

impl Suite {
    fn new(name: &'static str) -> Suite {
        eprintln!("==== {name}");
        Suite {
            name,
            attacks: 0,
            leaks: Vec::new(),
            violations: Vec::new(),
            broken_controls: Vec::new(),
        }
    }

    /// Judges one attack against the contract and prints its line.
    fn judge(&mut self, label: &str, expect: Expect, obs: Obs) {
        self.attacks += 1;
        let hits = scan(&obs.bytes, &expect.forms());
        let mut v = obs.violations.clone();
        let refusals: Vec<&Err> = obs
            .errors
            .iter()
            .filter(|e| e.code == "42501" && e.severity == "ERROR")
            .collect();
        let fatal = obs.errors.iter().find(|e| e.severity == "FATAL");
        let dropped = fatal.is_some_and(|e| e.code == "42501") && obs.closed;
        let lower = obs.bytes.to_ascii_lowercase();
        let masked = contains(&obs.bytes, MASK.as_bytes())
            || contains(&lower, hex(MASK.as_bytes()).as_bytes());
        // Attacks that set statement_timeout may see their own statements cancelled
        // (57014): no result, nothing to mask — not a failure of the rules.
        let own_timeouts = obs.errors.iter().any(|e| e.code == "57014");
        let rewritten = contains(&obs.bytes, DEPT21_MARK.as_bytes());
        for e in &refusals {
            if !e.message.starts_with("supervise:") {
                v.push(format!(
                    "a 42501 refusal whose message does not start with `supervise:`: {:?}",
                    e.message
                ));
            }
        }
        if let Some(f) = fatal {
            if f.code == "42501" && !f.message.starts_with("supervise:") {
                v.push(format!(
                    "a FATAL 42501 whose message does not start with `supervise:`: {:?}",
                    f.message
                ));
            }
        }
        if obs.hung {
            v.push("the client got no answer within its timeout (hang)".to_owned());
        }
        let status = if !hits.is_empty() {
            format!("LEAKED {}", describe_hits(&hits))
        } else if expect == Expect::Replication && fatal.is_some() && obs.closed {
            "refused at startup (FATAL)".to_owned()
        } else if dropped {
            "dropped".to_owned()
        } else if !refusals.is_empty() {
            "refused".to_owned()
        } else if let Some(f) = fatal {
            format!("closed with FATAL {} {}", f.code, f.message)
        } else if masked {
            "masked".to_owned()
        } else if expect == Expect::Rewrite && rewritten {
            "rewritten".to_owned()
        } else if own_timeouts {
            "its own statement timed out (57014)".to_owned()
        } else {
            "no protected value seen".to_owned()
        };
        let ok = match expect {
            Expect::RefuseOrMask => !refusals.is_empty() || masked || own_timeouts,
            Expect::Refuse | Expect::Oracle(_) => !refusals.is_empty(),
            Expect::Drop => dropped,
            Expect::Rewrite => !refusals.is_empty() || rewritten,
            Expect::Replication => {
                fatal.is_some_and(|f| f.message.to_ascii_lowercase().contains("replication"))
                    && obs.closed
            }
            Expect::RefuseOrDrop => !refusals.is_empty() || dropped,
        };
        if hits.is_empty() && !ok {
            v.push(format!(
                "expected {expect:?}, got: {status}; errors {}; client saw «{}»",
                obs.errors_summary(),
                if obs.trail.is_empty() {
                    escape_bytes(&obs.bytes[obs.bytes.len().saturating_sub(300)..])
                } else {
                    obs.trail.clone()
                }
            ));
        }
        let mut line = format!("attack {label}: {status}");
        if !v.is_empty() {
            line.push_str(&format!("  — VIOLATION: {}", v.join(" | ")));
        }
        eprintln!("{line}");
        if !hits.is_empty() {
            self.leaks
                .push(format!("{label}: LEAKED {}", describe_hits(&hits)));
        }
        if !v.is_empty() {
            self.violations.push(format!("{label}: {}", v.join(" | ")));
        }
    }

    /// The control: over the untracked socket the attack must show `forms`.
    fn control(&mut self, label: &str, bytes: &[u8], forms: &[Form]) {
        let hits = scan(bytes, forms);
        if hits.is_empty() {
            eprintln!(
                "  control {label}: BROKEN — the untracked run shows no protected value \
                 either (the attack itself does not work); got «{}»",
                escape_bytes(&bytes[..bytes.len().min(400)])
            );
            self.broken_controls.push(label.to_owned());
        } else {
            let f = &hits[0].form;
            eprintln!(
                "  control {label}: untracked shows {} {}{}",
                f.kind,
                f.value,
                if f.spelling.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", f.spelling)
                }
            );
        }
    }

    /// A note that is not a judgement (an attack made moot by an earlier refusal).
    fn note(&mut self, label: &str, text: &str) {
        eprintln!("attack {label}: {text}");
    }

    /// Prints the summary and fails if anything leaked or broke the contract.
    fn finish(self) {
        eprintln!(
            "==== {}: {} attacks, {} leaked, {} with contract violations, {} broken controls",
            self.name,
            self.attacks,
            self.leaks.len(),
            self.violations.len(),
            self.broken_controls.len()
        );
        let mut report = String::new();
        if !self.leaks.is_empty() {
            report.push_str(&format!("LEAKS ({}):\n", self.leaks.len()));
            for l in &self.leaks {
                report.push_str(&format!("  {l}\n"));
            }
        }
        if !self.violations.is_empty() {
            report.push_str(&format!(
                "CONTRACT VIOLATIONS ({}):\n",
                self.violations.len()
            ));
            for l in &self.violations {
                report.push_str(&format!("  {l}\n"));
            }
        }
        if !self.broken_controls.is_empty() {
            report.push_str(&format!(
                "BROKEN CONTROLS (the attack does not work untracked either): {}\n",
                self.broken_controls.join(", ")
            ));
        }
        if !report.is_empty() {
            eprintln!("{report}");
            panic!("{}: the rules do not hold:\n{report}", self.name);
        }
    }
}

// ---------------------------------------------------------------- the runners

/// One cluster and the suite judging the attacks made on it.
struct Run {
    c: Cluster,
    s: Suite,
}

/// Errors psql printed (VERBOSITY verbose: `ERROR:  42501: message`).
fn psql_errors(stderr: &str) -> Vec<Err> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        for sev in ["ERROR", "FATAL", "PANIC"] {
            let pat = format!("{sev}:  ");
            if let Some(i) = line.find(&pat) {
                let rest = &line[i + pat.len()..];
                let b = rest.as_bytes();
                let (code, message) =
                    if b.len() >= 7 && b[5] == b':' && b[..5].iter().all(u8::is_ascii_alphanumeric)
                    {
                        (rest[..5].to_owned(), rest[7..].to_owned())
                    } else {
                        (String::new(), rest.to_owned())
                    };
                out.push(Err {
                    severity: sev.to_owned(),
                    code,
                    message,
                });
            }
        }
    }
    out
}

fn psql_closed(p: &Psql) -> bool {
    p.stderr.contains("server closed the connection")
        || p.stderr.contains("connection to server was lost")
        || p.stderr.contains("no connection to the server")
        || p.code == Some(2)
}

/// Runs a raw query on a logged-in connection, returns the messages up to `Z`.
fn q(r: &mut Raw, sql: &str) -> Vec<Msg> {
    r.send(&wire::query(sql));
    r.read_until(1)
}

fn has_data(msgs: &[Msg], text: &str) -> bool {
    msgs.iter()
        .filter_map(Msg::data_row)
        .flatten()
        .flatten()
        .any(|v| contains(&v, text.as_bytes()))
}

fn summaries(msgs: &[Msg]) -> String {
    let v: Vec<String> = msgs.iter().map(Msg::summary).collect();
    v.join(", ")
}

/// The answer to one crate attack.
struct Ext {
    client: Option<postgres::Client>,
    obs: Obs,
}

impl Ext {
    fn record_error(&mut self, e: &postgres::Error) {
        if let Some(db) = e.as_db_error() {
            let text = format!(
                "{} {} {} {:?} {:?} {:?}\n",
                db.severity(),
                db.code().code(),
                db.message(),
                db.detail(),
                db.hint(),
                db.where_()
            );
            self.obs.bytes.extend_from_slice(text.as_bytes());
            self.obs.errors.push(Err {
                severity: db.severity().to_owned(),
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            });
            if db.severity() == "FATAL" {
                self.obs.closed = true;
            }
        } else {
            self.obs
                .bytes
                .extend_from_slice(format!("client error: {e}\n").as_bytes());
            if e.is_closed() {
                self.obs.closed = true;
            }
        }
    }

    /// Extended protocol (Parse/Describe/Bind/Execute, binary results): every value's
    /// raw bytes go into the observation.
    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        match client.query(sql, params) {
            Ok(rows) => {
                for row in row_values(&rows) {
                    for v in row {
                        match v {
                            Some(b) => self.obs.bytes.extend_from_slice(&b),
                            None => self.obs.bytes.extend_from_slice(b"(null)"),
                        }
                        self.obs.bytes.push(b'|');
                    }
                    self.obs.bytes.push(b'\n');
                }
                true
            }
            Err(e) => {
                self.record_error(&e);
                false
            }
        }
    }

    /// Simple protocol through the crate.
    fn simple(&mut self, sql: &str) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        match client.simple_query(sql) {
            Ok(msgs) => {
                for m in msgs {
                    if let postgres::SimpleQueryMessage::Row(r) = m {
                        for i in 0..r.len() {
                            let v = r.get(i).unwrap_or("(null)");
                            self.obs.bytes.extend_from_slice(v.as_bytes());
                            self.obs.bytes.push(b'|');
                        }
                        self.obs.bytes.push(b'\n');
                    }
                }
                true
            }
            Err(e) => {
                self.record_error(&e);
                false
            }
        }
    }
}

impl Run {
    fn start(name: &'static str, opts: Options) -> Run {
        let c = Cluster::start_with(opts);
        eprintln!(
            "cluster for {name}: tracked 127.0.0.1:{}, untracked {}",
            c.port(),
            c.sockdir().display()
        );
        Run {
            c,
            s: Suite::new(name),
        }
    }

    /// Admin SQL over the untracked socket (panics on error).
    fn admin(&self, sql: &str) -> String {
        self.c.psql_unix(sql)
    }

    /// A violation if audit_log is not exactly its baseline (then restores it).
    fn audit_check(&self) -> Option<String> {
        let now = self.admin("SELECT id, what FROM audit_log ORDER BY id");
        if now == "1|AUDIT-BASELINE\n" {
            return None;
        }
        self.admin("DELETE FROM audit_log; INSERT INTO audit_log VALUES (1, 'AUDIT-BASELINE');");
        Some(format!(
            "audit_log changed (committed): {:?}",
            now.trim_end()
        ))
    }

    fn psql_obs(&mut self, conninfo: &str, env: &[(&str, &str)], script: &str) -> (Obs, Psql) {
        let p = self.c.psql_raw(
            conninfo,
            &[
                "-X",
                "-A",
                "-t",
                "-P",
                "null=(null)",
                "-v",
                "VERBOSITY=verbose",
            ],
            env,
            script,
            PSQL_TIMEOUT,
        );
        let obs = Obs {
            bytes: p.raw.clone(),
            errors: psql_errors(&p.stderr),
            closed: psql_closed(&p),
            hung: p.code == Some(124) || p.code == Some(137),
            violations: Vec::new(),
            trail: format!(
                "stdout …{} stderr …{}",
                tail(&p.stdout, 200),
                tail(&p.stderr, 300)
            ),
        };
        (obs, p)
    }

    /// A psql attack over TCP (tracked) with the control over the UNIX socket.
    fn psql(&mut self, label: &str, script: &str, expect: Expect, ctl: Ctl) {
        self.psql_env(label, script, expect, ctl, &[]);
    }

    fn psql_env(
        &mut self,
        label: &str,
        script: &str,
        expect: Expect,
        ctl: Ctl,
        env: &[(&str, &str)],
    ) {
        // The control first: it runs on the state the attack finds (a rolled-back
        // control leaves nothing behind).
        self.psql_control(label, script, expect, ctl, env);
        let mut full = script.to_owned();
        if expect.wants_alive() {
            full.push_str(&format!("\n{ALIVE_SQL};\n"));
        }
        let conninfo = self.c.tcp_conninfo();
        let (mut obs, p) = self.psql_obs(&conninfo, env, &full);
        if expect.wants_alive() && !obs.hung && !p.stdout.contains(ALIVE) {
            obs.violations.push(format!(
                "the session was not usable after the attack (no answer to the following \
                 SELECT; psql exit {:?}; stderr tail «{}»)",
                p.code,
                tail(&p.stderr, 300)
            ));
        }
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(v) = self.audit_check() {
                obs.violations.push(v);
            }
        }
        self.s.judge(label, expect, obs);
    }

    fn psql_control(
        &mut self,
        label: &str,
        script: &str,
        expect: Expect,
        ctl: Ctl,
        env: &[(&str, &str)],
    ) {
        let script = match ctl {
            Ctl::No => return,
            Ctl::Plain => script.to_owned(),
            Ctl::Tx => format!("BEGIN;\n{script}\nROLLBACK;\n"),
        };
        let conninfo = self.c.unix_conninfo();
        let (obs, _) = self.psql_obs(&conninfo, env, &script);
        self.s.control(label, &obs.bytes, &expect.forms());
    }

    /// The attack inside BEGIN … COMMIT: a refusal must fail the transaction (COMMIT
    /// answers ROLLBACK), a masked answer must leave it committable.
    fn psql_in_tx(&mut self, label: &str, script: &str, expect: Expect) {
        let full = format!("BEGIN;\n{script}\nCOMMIT;\n{ALIVE_SQL};\n");
        let conninfo = self.c.tcp_conninfo();
        let (mut obs, p) = self.psql_obs(&conninfo, &[], &full);
        let refused = obs
            .errors
            .iter()
            .any(|e| e.code == "42501" && e.severity == "ERROR");
        let failed = !obs.errors.is_empty();
        if refused && !p.stdout.contains("ROLLBACK") {
            obs.violations.push(format!(
                "refused inside BEGIN but COMMIT did not report ROLLBACK (stdout «{}»)",
                tail(&p.stdout, 200)
            ));
        }
        if !failed && !p.stdout.contains("COMMIT") {
            obs.violations.push(format!(
                "no error inside BEGIN but COMMIT did not report COMMIT (stdout «{}»)",
                tail(&p.stdout, 200)
            ));
        }
        if !p.stdout.contains(ALIVE) && !obs.hung {
            obs.violations.push(format!(
                "the session was not usable after COMMIT (stderr «{}»)",
                tail(&p.stderr, 300)
            ));
        }
        self.s.judge(&format!("{label} [in BEGIN]"), expect, obs);
    }

    /// A raw-client attack: `attack` runs against a target and returns its
    /// connection (and violations it found); the runner checks the session is still
    /// usable, judges, and runs the same attack against the UNIX socket as control.
    fn raw(
        &mut self,
        label: &str,
        expect: Expect,
        control: bool,
        attack: &dyn Fn(&Target) -> (Raw, Vec<String>),
    ) {
        if control {
            let (r, _) = attack(&self.c.unix_target());
            self.s.control(label, &r.received, &expect.forms());
        }
        let target = self.c.tcp_target();
        let (mut r, mut v) = attack(&target);
        if expect.wants_alive() {
            if r.eof || r.send_failed || r.timed_out {
                v.push(format!(
                    "the session was not usable after the attack (connection {}; client saw «{}»)",
                    if r.timed_out { "hung" } else { "closed" },
                    tail(&summaries(&r.msgs), 300)
                ));
            } else {
                let got = q(&mut r, ALIVE_SQL);
                if !has_data(&got, ALIVE) {
                    v.push(format!(
                        "the session was not usable after the attack: {ALIVE_SQL} got [{}]",
                        summaries(&got)
                    ));
                }
            }
        }
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(a) = self.audit_check() {
                v.push(a);
            }
        }
        let obs = Obs::from_raw(&r, v);
        drop(r);
        self.s.judge(label, expect, obs);
    }

    /// A `postgres`-crate attack (extended protocol; binary results).
    fn ext(&mut self, label: &str, expect: Expect, attack: impl FnOnce(&mut Ext) + Send + 'static) {
        let notices = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = notices.clone();
        let mut cfg = self.c.client_config();
        cfg.notice_callback(move |n| {
            let text = format!(
                "NOTICE {} {} {:?} {:?}\n",
                n.code().code(),
                n.message(),
                n.detail(),
                n.where_()
            );
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(text.as_bytes());
        });
        let wants_alive = expect.wants_alive();
        let result = try_within(CRATE_TIMEOUT, move || {
            let mut ext = Ext {
                client: None,
                obs: Obs::default(),
            };
            match cfg.connect(postgres::NoTls) {
                Ok(c) => ext.client = Some(c),
                Err(e) => {
                    ext.record_error(&e);
                    return ext.obs;
                }
            }
            attack(&mut ext);
            if let Some(client) = ext.client.as_mut() {
                if wants_alive {
                    match client.query_one(ALIVE_SQL, &[]) {
                        Ok(row) if row.get::<_, String>(0) == ALIVE => {}
                        Ok(_) => ext.obs.violations.push("alive check: wrong answer".into()),
                        Err(e) => ext
                            .obs
                            .violations
                            .push(format!("the session was not usable after the attack: {e}")),
                    }
                } else if client.query_one("SELECT 1", &[]).is_err() || client.is_closed() {
                    ext.obs.closed = true;
                }
            }
            ext.obs
        });
        let mut obs = result.unwrap_or_else(|| Obs {
            hung: true,
            ..Obs::default()
        });
        obs.bytes
            .extend_from_slice(&notices.lock().unwrap_or_else(|p| p.into_inner()));
        if matches!(expect, Expect::Drop | Expect::RefuseOrDrop) {
            if let Some(a) = self.audit_check() {
                obs.violations.push(a);
            }
        }
        self.s.judge(label, expect, obs);
    }

    fn finish(self) {
        let Run { c, s } = self;
        c.stop();
        s.finish();
    }
}

fn tail(s: &str, n: usize) -> String {
    let start = s.len().saturating_sub(n);
    let mut i = start;
    while !s.is_char_boundary(i) {
        i += 1;
    }
    s[i..].replace('\n', "⏎")
}

/// Logs in on `t`, sends `msgs` in one write, reads `syncs` ReadyForQuery.
fn raw_session(t: &Target, msgs: &[Vec<u8>], syncs: usize) -> Raw {
    let mut r = Raw::login(t, &wire::default_params());
    r.send_all(msgs);
    r.read_until(syncs);
    r
}

/// An attack made of one write of `msgs` after login, `syncs` answers read. Every
/// batch leaves no transaction open, so the last ReadyForQuery must say idle (`I`),
/// refused or not.
fn raw_batch(msgs: Vec<Vec<u8>>, syncs: usize) -> impl Fn(&Target) -> (Raw, Vec<String>) {
    move |t: &Target| {
        let r = raw_session(t, &msgs, syncs);
        let mut v = Vec::new();
        let last = r.msgs.iter().rev().find_map(Msg::ready);
        if !r.eof && !r.timed_out && last != Some(b'I') {
            v.push(format!(
                "ReadyForQuery after the batch is {:?}, expected I (idle)",
                last.map(char::from)
            ));
        }
        (r, v)
    }
}

/// The same batch inside BEGIN; checks the ReadyForQuery statuses stay truthful: a
/// refusal leaves the block failed (`E`, COMMIT → ROLLBACK), a masked answer leaves it
/// open (`T`, COMMIT → COMMIT).
fn raw_batch_in_tx(msgs: Vec<Vec<u8>>, syncs: usize) -> impl Fn(&Target) -> (Raw, Vec<String>) {
    move |t: &Target| {
        let mut v = Vec::new();
        let mut r = Raw::login(t, &wire::default_params());
        let begin = q(&mut r, "BEGIN");
        if begin.last().and_then(Msg::ready) != Some(b'T') {
            v.push(format!("BEGIN answered [{}]", summaries(&begin)));
        }
        r.send_all(&msgs);
        let got = r.read_until(syncs);
        let refused = got.iter().filter_map(Msg::error).any(|e| e.code == "42501");
        let errored = got.iter().any(|m| m.tag == b'E');
        let status = got.last().and_then(Msg::ready);
        let want = if errored { b'E' } else { b'T' };
        if status != Some(want) {
            v.push(format!(
                "inside BEGIN, ReadyForQuery after the attack is {:?}, expected {:?} \
                 (refused: {refused}); got [{}]",
                status.map(char::from),
                want as char,
                summaries(&got)
            ));
        }
        let commit = q(&mut r, "COMMIT");
        let tag = commit.iter().find_map(Msg::command_tag);
        let want_tag = if errored { "ROLLBACK" } else { "COMMIT" };
        if tag.as_deref() != Some(want_tag) {
            v.push(format!(
                "COMMIT after the attack answered {tag:?}, expected {want_tag}"
            ));
        }
        (r, v)
    }
}

/// The client's answers, one per ReadyForQuery (the first: the startup's).
fn segments(msgs: &[Msg]) -> Vec<Vec<Msg>> {
    let mut out = vec![Vec::new()];
    for m in msgs {
        out.last_mut().expect("one segment").push(m.clone());
        if m.tag == b'Z' {
            out.push(Vec::new());
        }
    }
    if out.last().is_some_and(Vec::is_empty) {
        out.pop();
    }
    out
}

/// Violations unless each answer carries only the errors its own statement may get
/// (`allowed[i]` for the i-th answer, the startup's first): the client must never see
/// an error for a statement it did not send, nor miss or gain an answer.
fn own_errors_only(msgs: &[Msg], allowed: &[&[&str]]) -> Vec<String> {
    let segs = segments(msgs);
    let mut v = Vec::new();
    let complete = segs
        .iter()
        .filter(|s| s.last().is_some_and(|m| m.tag == b'Z'))
        .count();
    if complete != allowed.len() {
        v.push(format!(
            "expected {} answers (ReadyForQuery), got {complete}: [{}]",
            allowed.len(),
            tail(&summaries(msgs), 400)
        ));
    }
    for (i, seg) in segs.iter().enumerate() {
        let ok: &[&str] = allowed.get(i).copied().unwrap_or(&[]);
        for e in seg.iter().filter_map(Msg::error) {
            if !ok.contains(&e.code.as_str()) {
                let whose = if i == 0 {
                    "the startup (no statement of the client's)".to_owned()
                } else {
                    format!("answer {i}")
                };
                v.push(format!(
                    "error {} {:?} in {whose}, which its own statement cannot cause",
                    e.code, e.message
                ));
            }
        }
    }
    v
}

fn attack_options(extra: &str) -> Options {
    Options::new(&format!("{SCHEMA}\n{extra}")).prefix("supervise-pgattacks-")
}

// ---------------------------------------------------------------- 1. extended protocol

/// Extended protocol without Describe, and pipelining that makes the client's
/// Describe describe something else than what is executed (raw client).
#[test]
fn extended_protocol_and_pipelining() {
    let _serial = serial();
    let mut run = Run::start("extended_protocol_and_pipelining", attack_options(""));
    use wire::{bind, close, describe, execute, flush, parse, pbes, query, sync};
    let ssn = "SELECT ssn FROM employee ORDER BY id";

    // --- Parse/Bind/Execute/Sync, no Describe ---
    run.raw(
        "ext-no-describe text unnamed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes(ssn, &[])], 1),
    );
    run.raw(
        "ext-no-describe binary unnamed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes(ssn, &[1])], 1),
    );
    run.raw(
        "ext-no-describe SELECT * binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT * FROM employee", &[1])], 1),
    );
    run.raw(
        "ext-no-describe alias binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT ssn AS x FROM employee e", &[1])], 1),
    );
    run.raw(
        "ext-no-describe mixed formats name text, ssn binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![pbes("SELECT name, ssn FROM employee", &[0, 1])], 1),
    );
    run.raw(
        "ext-no-describe named statement and portal",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s1", ssn, &[]),
                bind("p1", "s1", &[], &[], &[0]),
                execute("p1", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe max_rows 1 then repeated Execute (PortalSuspended)",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", ssn, &[]),
                bind("p", "", &[], &[], &[0]),
                execute("p", 1),
                execute("p", 1),
                execute("p", 2),
                execute("p", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe binary max_rows across Syncs in a transaction",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "BEGIN");
            r.send_all(&[
                parse("s6", ssn, &[]),
                bind("p6", "s6", &[], &[], &[1]),
                execute("p6", 2),
                sync(),
            ]);
            r.read_until(1);
            for max in [2, 0] {
                r.send_all(&[execute("p6", max), sync()]);
                r.read_until(1);
            }
            q(&mut r, "COMMIT");
            (r, Vec::new())
        },
    );
    run.raw(
        "ext-no-describe statement bound twice, second portal binary",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s7", "SELECT id, ssn FROM employee WHERE id = $1", &[23]),
                bind("a", "s7", &[0], &[Some(b"1")], &[0]),
                execute("a", 0),
                bind("b", "s7", &[0], &[Some(b"2")], &[1]),
                execute("b", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "ext-no-describe Flush instead of Sync, then Sync",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("", ssn, &[]),
                bind("", "", &[], &[], &[1]),
                execute("", 0),
                flush(),
            ]);
            r.drain_for(Duration::from_millis(700));
            r.send(&sync());
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "ext-no-describe text [in BEGIN]",
        Expect::RefuseOrMask,
        false,
        &raw_batch_in_tx(vec![pbes(ssn, &[])], 1),
    );
    run.raw(
        "ext-no-describe salaries binary [in BEGIN]",
        Expect::Refuse,
        false,
        &raw_batch_in_tx(vec![pbes("SELECT * FROM salaries", &[1])], 1),
    );

    // --- pipelining ---
    run.raw(
        "pipe Describe S1 then Execute S2",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s1", "SELECT name FROM employee ORDER BY id", &[]),
                parse("s2", ssn, &[]),
                describe(b'S', "s1"),
                bind("p2", "s2", &[], &[], &[0]),
                execute("p2", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe Describe portal A then Execute portal B",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("a", "SELECT name FROM employee ORDER BY id", &[]),
                parse("b", ssn, &[]),
                bind("pa", "a", &[], &[], &[]),
                bind("pb", "b", &[], &[], &[]),
                describe(b'P', "pa"),
                execute("pb", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe Close + re-Parse of a name before the Describe reply",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("s", "SELECT name, ssn FROM employee ORDER BY id", &[]),
                describe(b'S', "s"),
                close(b'S', "s"),
                parse("s", "SELECT ssn, name FROM employee ORDER BY id", &[]),
                bind("", "s", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe harmless \"s\" described, then Close + re-Parse as ssn, Execute without Describe",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                parse("s", "SELECT name FROM project ORDER BY id", &[]),
                describe(b'S', "s"),
                sync(),
            ]);
            r.read_until(1);
            r.send_all(&[
                close(b'S', "s"),
                parse("s", ssn, &[]),
                bind("", "s", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ]);
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "pipe unnamed statement replaced by a second Parse (no Close)",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT name FROM employee ORDER BY id", &[]),
                describe(b'S', ""),
                parse("", ssn, &[]),
                bind("", "", &[], &[], &[1]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "pipe same-shape swap: text column of project described, ssn executed",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("x", "SELECT name FROM project", &[]),
                bind("px", "x", &[], &[], &[]),
                describe(b'P', "px"),
                close(b'P', "px"),
                parse("y", ssn, &[]),
                bind("px", "y", &[], &[], &[]),
                execute("px", 0),
                sync(),
            ],
            1,
        ),
    );
    {
        let mut msgs = Vec::new();
        for i in 0..12 {
            let sql = if i % 3 == 2 {
                format!("SELECT ssn AS c{i} FROM employee WHERE id = {}", i % 5 + 1)
            } else {
                format!("SELECT name AS c{i} FROM project WHERE id = {}", i % 3 + 1)
            };
            let name = format!("m{i}");
            msgs.push(parse(&name, &sql, &[]));
            if i % 4 == 0 {
                // A statement parsed earlier (crossed: not the one executed next).
                msgs.push(describe(b'S', &format!("m{}", i / 2)));
            }
            msgs.push(bind(&name, &name, &[], &[], &[(i % 2) as i16]));
            msgs.push(execute(&name, 0));
        }
        msgs.push(sync());
        run.raw(
            "pipe 12 statements, crossed Describes, one Sync",
            Expect::RefuseOrMask,
            true,
            &raw_batch(msgs, 1),
        );
    }
    run.raw(
        "pipe extended batch then a simple Query of ssn before Sync",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT name FROM employee", &[]),
                bind("", "", &[], &[], &[]),
                describe(b'P', ""),
                query("SELECT ssn AS v FROM employee"),
                execute("", 0),
                sync(),
            ],
            2,
        ),
    );
    run.raw(
        "pipe portal from a cursor-like named portal, FETCH via Execute after Close of the statement",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![
                query("BEGIN"),
                parse("k", ssn, &[]),
                bind("kp", "k", &[], &[], &[0]),
                close(b'S', "k"),
                execute("kp", 3),
                execute("kp", 0),
                sync(),
                query("COMMIT"),
            ],
            3,
        ),
    );
    run.raw(
        "pipe Describe S1 then Execute S2 [in BEGIN]",
        Expect::RefuseOrMask,
        false,
        &raw_batch_in_tx(
            vec![
                parse("s1", "SELECT name FROM employee ORDER BY id", &[]),
                parse("s2", ssn, &[]),
                describe(b'S', "s1"),
                bind("p2", "s2", &[], &[], &[0]),
                execute("p2", 0),
                sync(),
            ],
            1,
        ),
    );
    // Deny through the extended protocol, pipelined behind a harmless statement.
    run.raw(
        "pipe harmless Execute then salaries without Describe",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![
                parse("", "SELECT 1", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                parse("z", "SELECT note, amount FROM salaries", &[]),
                bind("", "z", &[], &[], &[0]),
                execute("", 0),
                sync(),
            ],
            1,
        ),
    );
    run.finish();
}

// ---------------------------------------------------------------- 2. startup + learning

/// Objects in schema `evil` that could steer a catalog query run in the client's
/// session: `=` (and `>`) operators that are always false, for the types a catalog
/// lookup compares.
const EVIL: &str = "
CREATE SCHEMA evil;
CREATE FUNCTION evil.never(text, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.never);
CREATE FUNCTION evil.never(oid, oid) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.never);
CREATE FUNCTION evil.never(name, name) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.never);
CREATE FUNCTION evil.never(name, text) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.never);
CREATE FUNCTION evil.never(int2, int4) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.> (LEFTARG = int2, RIGHTARG = int4, FUNCTION = evil.never);
CREATE OPERATOR evil.= (LEFTARG = int2, RIGHTARG = int4, FUNCTION = evil.never);
CREATE FUNCTION evil.never(int4, int4) RETURNS boolean LANGUAGE sql IMMUTABLE AS 'SELECT false';
CREATE OPERATOR evil.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = evil.never);
GRANT USAGE ON SCHEMA evil TO PUBLIC;
";

/// The startup packet and queries in one write; startup options that defeat a
/// catalog query run in the client's session; a pipelined failing transaction right
/// after startup (raw client, psql).
#[test]
fn startup_in_one_write_and_learning_defeated() {
    let _serial = serial();
    let mut run = Run::start(
        "startup_in_one_write_and_learning_defeated",
        attack_options(EVIL),
    );
    use wire::{bind, execute, parse, pbes, query, startup, sync};

    // Startup + Query in one write: the client's own answer must arrive, and aliases
    // later in the session stay masked.
    run.raw(
        "startup+Query in one write, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT 'first-' || 'answer' AS tag, ssn FROM employee ORDER BY id"),
            ]);
            let got = r.read_until(2);
            if !has_data(&got, "first-answer") {
                v.push(format!(
                    "the first Query's own result never arrived: [{}]",
                    summaries(&got)
                ));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            v.extend(own_errors_only(
                &r.msgs,
                &[&[], &["42501"], &["42501"], &["42501"]],
            ));
            (r, v)
        },
    );
    run.raw(
        "startup+Parse/Bind/Execute/Sync in one write, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                pbes("SELECT 'first-' || 'ext' AS tag, ssn FROM employee", &[0]),
            ]);
            let got = r.read_until(2);
            if !has_data(&got, "first-ext") {
                v.push(format!(
                    "the first Execute's own result never arrived: [{}]",
                    summaries(&got)
                ));
            }
            r.send_all(&[pbes("SELECT ssn AS x FROM employee", &[1])]);
            r.read_until(1);
            q(&mut r, "SELECT e.ssn FROM employee e");
            (r, v)
        },
    );
    run.raw(
        "startup+aliased ssn as the very first query",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT ssn AS x FROM employee e"),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );
    run.raw(
        "startup+three Queries in one write (harmless, alias, table alias)",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("SELECT 'q1-' || 'own'"),
                query("SELECT ssn AS y FROM employee"),
                query("SELECT e.ssn AS z FROM public.employee e"),
            ]);
            let got = r.read_until(4);
            if !has_data(&got, "q1-own") {
                v.push(format!(
                    "the first Query's own answer is missing: [{}]",
                    summaries(&got)
                ));
            }
            (r, v)
        },
    );
    run.raw(
        "startup+SELECT * binary without Describe in one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                pbes("SELECT * FROM employee", &[1]),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );

    // Startup options that could defeat a catalog query run in the client's session.
    let opt_sessions: &[(&str, &str)] = &[
        ("options -c statement_timeout=1", "-c statement_timeout=1"),
        ("options -c lock_timeout=1", "-c lock_timeout=1"),
        (
            "options -c search_path=evil,pg_catalog (always-false = operators)",
            "-c search_path=evil,pg_catalog",
        ),
        (
            "options -c search_path=evil,public,pg_catalog",
            "-c search_path=evil,public,pg_catalog",
        ),
        (
            "options -c default_transaction_read_only=on",
            "-c default_transaction_read_only=on",
        ),
        (
            "options -c statement_timeout=1 -c search_path=evil,pg_catalog",
            "-c statement_timeout=1 -c search_path=evil,pg_catalog",
        ),
        (
            "options -c default_transaction_isolation=serializable -c idle_in_transaction_session_timeout=1",
            "-c default_transaction_isolation=serializable -c idle_in_transaction_session_timeout=1",
        ),
    ];
    for &(label, options) in opt_sessions {
        // As set at startup, and reset by the client's first statement (the setting
        // then acts only on what happens at startup, before the client's queries).
        for reset in [false, true] {
            let options = options.to_owned();
            let label = format!(
                "{label}{}, then ssn, aliases, SELECT *",
                if reset { " (reset after startup)" } else { "" }
            );
            run.raw(&label, Expect::RefuseOrMask, true, &move |t: &Target| {
                let mut params = wire::default_params();
                params.push(("options", options.as_str()));
                let mut r = Raw::connect(t);
                let mut first = vec![startup(&params)];
                let mut allowed: Vec<&[&str]> = vec![&[]];
                if reset {
                    first.push(query("RESET ALL"));
                    allowed.push(&["57014"]);
                }
                // In one write with the startup, and again after it.
                first.push(query("SELECT ssn AS x FROM public.employee"));
                allowed.push(&["57014", "42501"]);
                r.send_all(&first);
                r.read_until(first.len());
                for sql in [
                    "SELECT ssn FROM public.employee",
                    "SELECT e.ssn AS y FROM public.employee e",
                ] {
                    q(&mut r, sql);
                    allowed.push(&["57014", "42501"]);
                }
                r.send_all(&[pbes("SELECT * FROM public.employee", &[1])]);
                r.read_until(1);
                allowed.push(&["57014", "42501"]);
                let v = own_errors_only(&r.msgs, &allowed);
                (r, v)
            });
        }
    }
    // The same through psql (PGOPTIONS), simple protocol.
    for (label, opts) in [
        (
            "psql PGOPTIONS statement_timeout=1",
            "-c statement_timeout=1",
        ),
        (
            "psql PGOPTIONS search_path=evil,public,pg_catalog",
            "-c search_path=evil,public,pg_catalog",
        ),
    ] {
        run.psql_env(
            label,
            "SELECT ssn AS x FROM employee;\nSELECT e.ssn FROM employee e;\nSELECT * FROM employee;",
            Expect::RefuseOrMask,
            Ctl::Plain,
            &[("PGOPTIONS", opts)],
        );
    }

    // A failing transaction pipelined right after the startup: the client must see
    // exactly its own errors, and masks must hold afterwards.
    run.raw(
        "startup+'BEGIN; SELECT 1/0;' before the first ReadyForQuery",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("BEGIN; SELECT 1/0;"),
            ]);
            let got = r.read_until(2);
            if got.last().and_then(Msg::ready) != Some(b'E') {
                v.push(format!(
                    "status after the failed block is not E: [{}]",
                    summaries(&got)
                ));
            }
            let rb = q(&mut r, "ROLLBACK");
            if rb.iter().any(|m| m.tag == b'E') {
                v.push(format!("ROLLBACK got an error: [{}]", summaries(&rb)));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            v.extend(own_errors_only(
                &r.msgs,
                &[&[], &["22012"], &[], &["42501"], &["42501"]],
            ));
            (r, v)
        },
    );
    run.raw(
        "startup+BEGIN+1/0 (extended)+SELECT ssn pipelined in one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut v = Vec::new();
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&wire::default_params()),
                query("BEGIN"),
                parse("", "SELECT 1/0", &[]),
                bind("", "", &[], &[], &[]),
                execute("", 0),
                sync(),
                query("SELECT ssn FROM employee"),
                query("ROLLBACK"),
            ]);
            let got = r.read_until(5);
            let codes: Vec<String> = got.iter().filter_map(Msg::error).map(|e| e.code).collect();
            // Its own statements fail: 1/0 (22012), then its own SELECT in the failed
            // block (25P02) — or the SELECT is refused (42501). Nothing else.
            let ok = codes.len() == 2
                && codes[0] == "22012"
                && (codes[1] == "25P02" || codes[1] == "42501");
            if !ok {
                v.push(format!(
                    "errors should be [22012, 25P02|42501] (its own statements), got {codes:?}: [{}]",
                    summaries(&got)
                ));
            }
            q(&mut r, "SELECT ssn AS x FROM employee");
            (r, v)
        },
    );
    run.raw(
        "startup with options statement_timeout=1 + failing block + alias, one write",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c statement_timeout=1"));
            let mut r = Raw::connect(t);
            r.send_all(&[
                startup(&params),
                query("BEGIN"),
                query("SELECT 1/0"),
                query("ROLLBACK"),
                query("SET statement_timeout = 0"),
                query("SELECT ssn AS x FROM employee"),
            ]);
            r.read_until(6);
            // With a 1 ms statement_timeout any of its own statements may be cancelled.
            let t: &[&str] = &["57014"];
            let v = own_errors_only(
                &r.msgs,
                &[&[], t, &["22012", "57014"], t, t, &["42501", "57014"]],
            );
            (r, v)
        },
    );
    // The client changes the learning conditions mid-session, then aliases.
    run.raw(
        "SET search_path=evil,public,pg_catalog + SET statement_timeout=1 mid-session, then aliases",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "SET search_path = evil, public, pg_catalog");
            q(&mut r, "SET statement_timeout = 1");
            q(&mut r, "SELECT ssn AS x FROM employee");
            q(&mut r, "SELECT e.ssn FROM employee e");
            (r, Vec::new())
        },
    );
    run.finish();
}

// ---------------------------------------------------------------- 3. COPY and names

/// COPY out in every spelling and position; Unicode-escape, quoted, qualified and
/// mixed-case names; strings the engine and the server could lex differently
/// (psql and raw client).
#[test]
fn copy_out_and_identifier_spellings() {
    let _serial = serial();
    let mut run = Run::start("copy_out_and_identifier_spellings", attack_options(""));
    let dir = run.c.sockdir().display().to_string();

    // --- COPY out ---
    for (label, sql) in [
        ("COPY employee TO STDOUT", "COPY employee TO STDOUT;"),
        (
            "COPY (SELECT ssn FROM employee) TO STDOUT",
            "COPY (SELECT ssn FROM employee) TO STDOUT;",
        ),
        (
            "/* x */ COPY employee TO STDOUT",
            "/* x */ COPY employee TO STDOUT;",
        ),
        (
            "-- comment line, then COPY",
            "-- harmless\nCOPY employee TO STDOUT;",
        ),
        (
            "COPY employee(ssn)TO STDOUT",
            "COPY employee(ssn)TO STDOUT;",
        ),
        (
            "COPY public.employee TO STDOUT",
            "COPY public.employee TO STDOUT;",
        ),
        (
            "COPY \"employee\" TO STDOUT",
            "COPY \"employee\" TO STDOUT;",
        ),
        (
            "COPY U&\"employe\\0065\" TO STDOUT",
            "COPY U&\"employe\\0065\" TO STDOUT;",
        ),
        ("copy EMPLOYEE to stdout", "copy EMPLOYEE to stdout;"),
        (
            "COPY (TABLE employee) TO STDOUT",
            "COPY (TABLE employee) TO STDOUT;",
        ),
        (
            "COPY (SELECT * FROM employee) TO STDOUT (FORMAT csv, HEADER)",
            "COPY (SELECT * FROM employee) TO STDOUT (FORMAT csv, HEADER);",
        ),
        (
            "COPY employee TO STDOUT (FORMAT binary)",
            "COPY employee TO STDOUT (FORMAT binary);",
        ),
        (
            "SELECT 1 \\; COPY employee TO STDOUT (second statement of one Query)",
            "SELECT 1 \\; COPY employee TO STDOUT;",
        ),
        ("\\copy employee to stdout", "\\copy employee to stdout"),
        (
            "\\copy (select ssn from employee) to stdout",
            "\\copy (select ssn from employee) to stdout",
        ),
        (
            "COPY (WITH x AS (SELECT ssn FROM employee) SELECT * FROM x) TO STDOUT",
            "COPY (WITH x AS (SELECT ssn FROM employee) SELECT * FROM x) TO STDOUT;",
        ),
    ] {
        run.psql(label, sql, Expect::RefuseOrMask, Ctl::Plain);
    }
    for (label, sql) in [
        ("copy salaries to stdout", "copy salaries to stdout;"),
        (
            "COPY (SELECT * FROM salaries) TO STDOUT",
            "COPY (SELECT * FROM salaries) TO STDOUT;",
        ),
        (
            "/**/COPY\tsalaries TO STDOUT",
            "/**/COPY\tsalaries TO STDOUT;",
        ),
        (
            "SELECT 1 \\; copy salaries to stdout",
            "SELECT 1 \\; copy salaries to stdout;",
        ),
    ] {
        run.psql(label, sql, Expect::Refuse, Ctl::Plain);
    }
    run.psql(
        "COPY employee TO PROGRAM 'cat > file' then pg_read_file",
        &format!(
            "COPY employee TO PROGRAM 'cat > {dir}/leak-prog.txt';\n\
             SELECT pg_read_file('{dir}/leak-prog.txt');"
        ),
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "COPY (SELECT ssn FROM employee) TO 'file' then pg_read_file",
        &format!(
            "COPY (SELECT ssn FROM employee) TO '{dir}/leak-file.txt';\n\
             SELECT pg_read_file('{dir}/leak-file.txt');"
        ),
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "COPY (SELECT note FROM salaries) TO PROGRAM 'cat > file' then pg_read_file",
        &format!(
            "COPY (SELECT note FROM salaries) TO PROGRAM 'cat > {dir}/leak-sal.txt';\n\
             SELECT pg_read_file('{dir}/leak-sal.txt');"
        ),
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql_in_tx(
        "COPY employee TO STDOUT",
        "COPY employee TO STDOUT;",
        Expect::RefuseOrMask,
    );
    // COPY through the extended protocol and as the 2nd statement of one raw Query.
    run.raw(
        "raw extended COPY employee TO STDOUT",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![wire::pbes("COPY employee TO STDOUT", &[])], 1),
    );
    run.raw(
        "raw Query 'SELECT 1; COPY employee TO STDOUT'",
        Expect::RefuseOrMask,
        true,
        &raw_batch(vec![wire::query("SELECT 1; COPY employee TO STDOUT")], 1),
    );
    run.raw(
        "raw Query 'SELECT 1;COPY(select ssn from employee)TO STDOUT'",
        Expect::RefuseOrMask,
        true,
        &raw_batch(
            vec![wire::query(
                "SELECT 1;COPY(select ssn from employee)TO STDOUT",
            )],
            1,
        ),
    );

    // --- identifier spellings ---
    for (label, sql) in [
        ("U&\"s\\0061laries\"", "SELECT * FROM U&\"s\\0061laries\";"),
        (
            "U&\"!0073alaries\" UESCAPE '!'",
            "SELECT * FROM U&\"!0073alaries\" UESCAPE '!';",
        ),
        (
            "U&\"\\+000073alaries\"",
            "SELECT * FROM U&\"\\+000073alaries\";",
        ),
        ("quoted \"salaries\"", "SELECT * FROM \"salaries\";"),
        ("public.\"salaries\"", "SELECT * FROM public.\"salaries\";"),
        ("SaLaRiEs", "SELECT * FROM SaLaRiEs;"),
        ("TABLE salaries", "TABLE salaries;"),
        ("TABLE U&\"s\\0061laries\"", "TABLE U&\"s\\0061laries\";"),
        (
            "current_database-qualified postgres.public.salaries",
            "SELECT * FROM postgres.public.salaries;",
        ),
        (
            "U&\"public\".U&\"s\\0061l\\0061ries\"",
            "SELECT note FROM U&\"public\".U&\"s\\0061l\\0061ries\";",
        ),
        (
            "salaries via a subquery alias",
            "SELECT x.note FROM (SELECT * FROM U&\"s\\0061laries\") x;",
        ),
        (
            "UPDATE U&\"s\\0061laries\" RETURNING note",
            "BEGIN;\nUPDATE U&\"s\\0061laries\" SET amount = amount RETURNING note;\nROLLBACK;",
        ),
    ] {
        run.psql(label, sql, Expect::Refuse, Ctl::Plain);
    }
    run.psql_in_tx(
        "U&\"s\\0061laries\"",
        "SELECT * FROM U&\"s\\0061laries\";",
        Expect::Refuse,
    );
    run.psql(
        "SELECT U&\"\\0073sn\" FROM employee",
        "SELECT U&\"\\0073sn\" FROM employee;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "SELECT U&\"!0073sn\" UESCAPE '!' FROM U&\"employe\\0065\"",
        "SELECT U&\"!0073sn\" UESCAPE '!' FROM U&\"employe\\0065\";",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "unquoted upper case: SELECT SSN FROM EMPLOYEE",
        "SELECT SSN FROM EMPLOYEE;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "rewrite via U&\"d\\0065pt\" = 20",
        "SELECT name FROM employee WHERE U&\"d\\0065pt\" = 20 ORDER BY 1;",
        Expect::Rewrite,
        Ctl::Plain,
    );
    run.psql(
        "rewrite via U&\"employe\\0065\" with dept = 20",
        "SELECT name FROM U&\"employe\\0065\" WHERE dept = 20 ORDER BY 1;",
        Expect::Rewrite,
        Ctl::Plain,
    );
    // drop-session through escaped names: FATAL, and nothing committed.
    for (label, sql) in [
        (
            "U&\"audit\\005flog\"",
            "SELECT * FROM U&\"audit\\005flog\";",
        ),
        (
            "INSERT INTO U&\"audit\\005flog\" in a transaction",
            "BEGIN;\nINSERT INTO U&\"audit\\005flog\" VALUES (90, 'INJECTED-U');\nCOMMIT;",
        ),
        (
            "DELETE FROM U&\"!0061udit_log\" UESCAPE '!' (autocommit)",
            "DELETE FROM U&\"!0061udit_log\" UESCAPE '!';",
        ),
        (
            "mixed case: INSERT INTO Audit_Log",
            "INSERT INTO Audit_Log VALUES (91, 'INJECTED-C');",
        ),
        (
            "public.\"audit_log\" second in one Query",
            "SELECT 1 \\; INSERT INTO public.\"audit_log\" VALUES (92, 'INJECTED-Q');",
        ),
    ] {
        run.psql(label, sql, Expect::Drop, Ctl::No);
    }

    // --- strings the engine and the server could lex differently ---
    // client_encoding=SJIS: 0x95 0x5C is one character to the server, so the
    // backslash does not escape the quote and `note FROM salaries` is code.
    run.raw(
        "client_encoding=SJIS string smuggle (0x95 0x5C before the quote)",
        Expect::RefuseOrDrop,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("client_encoding", "SJIS"));
            let mut r = Raw::login(t, &params);
            r.send(&wire::query_bytes(
                b"SELECT E'\x95\\', note FROM salaries --'",
            ));
            r.read_until(1);
            (r, Vec::new())
        },
    );
    run.raw(
        "SET client_encoding=BIG5 then string smuggle (0xA4 0x5C)",
        Expect::RefuseOrDrop,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            q(&mut r, "SET client_encoding = 'BIG5'");
            r.send(&wire::query_bytes(
                b"SELECT E'\xa4\\', note FROM salaries --'",
            ));
            r.read_until(1);
            (r, Vec::new())
        },
    );
    // standard_conforming_strings=off: \' escapes the quote for the server.
    run.raw(
        "options standard_conforming_strings=off string smuggle",
        Expect::Refuse,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c standard_conforming_strings=off"));
            let mut r = Raw::login(t, &params);
            q(&mut r, "SELECT 'a\\' || ' , note FROM salaries -- '");
            (r, Vec::new())
        },
    );
    run.raw(
        "SET standard_conforming_strings=off pipelined with the smuggle",
        Expect::Refuse,
        true,
        &|t: &Target| {
            let mut r = Raw::login(t, &wire::default_params());
            r.send_all(&[
                wire::query("SET standard_conforming_strings = off"),
                wire::query("SELECT 'a\\' || ' , note FROM salaries -- '"),
            ]);
            r.read_until(2);
            (r, Vec::new())
        },
    );
    run.raw(
        "standard_conforming_strings=off smuggle of ssn (mask)",
        Expect::RefuseOrMask,
        true,
        &|t: &Target| {
            let mut params = wire::default_params();
            params.push(("options", "-c standard_conforming_strings=off"));
            let mut r = Raw::login(t, &params);
            q(&mut r, "SELECT 'a\\' || ' , ssn FROM employee -- '");
            (r, Vec::new())
        },
    );
    run.raw(
        "dollar-quote tag confusion $a$ … $a$ around salaries",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![wire::query("SELECT $a$ $b$ $a$, note FROM salaries -- $b$")],
            1,
        ),
    );
    run.raw(
        "nested comment /* /* */ salaries */ confusion",
        Expect::Refuse,
        true,
        &raw_batch(
            vec![wire::query("SELECT /* /* */ 1 */ note FROM salaries")],
            1,
        ),
    );
    run.finish();
}

// ---------------------------------------------------------------- 4. replication

fn scan_dir(dir: &Path, forms: &[Form]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                for h in scan(&b, forms) {
                    hits.push(format!(
                        "{}: {} {} in «{}»",
                        p.display(),
                        h.form.kind,
                        h.form.value,
                        h.context
                    ));
                }
            }
        }
    }
    hits
}

/// The secrets as they sit in data files (clear text in heap pages).
fn file_forms() -> Vec<Form> {
    let mut f = Vec::new();
    for s in SSNS.iter().chain(SALARY_NOTES).chain(AUDIT_ROWS) {
        f.extend(spellings("stored value", s, false));
    }
    f
}

/// IDENTIFY_SYSTEM answered (a replication session works).
fn identify_ok(msgs: &[Msg]) -> bool {
    msgs.iter().any(|m| m.tag == b'D')
}

/// A raw replication attack: the control over the UNIX socket first (it must answer
/// IDENTIFY_SYSTEM, or show `forms`), then the tracked run, judged. Each connection is
/// closed before the next (an open walsender would hold up the server's shutdown).
fn replication_raw(
    run: &mut Run,
    label: &str,
    attack: &dyn Fn(&Target) -> Raw,
    forms: Option<&[Form]>,
) {
    {
        let r = attack(&run.c.unix_target());
        match forms {
            Some(forms) => run.s.control(label, &r.received, forms),
            None if identify_ok(&r.msgs) => {
                eprintln!("  control {label}: untracked IDENTIFY_SYSTEM answers")
            }
            None => {
                eprintln!("  control {label}: BROKEN: [{}]", summaries(&r.msgs));
                run.s.broken_controls.push(label.to_owned());
            }
        }
    }
    let r = attack(&run.c.tcp_target());
    let mut obs = Obs::from_raw(&r, Vec::new());
    if forms.is_none() && identify_ok(&r.msgs) {
        obs.violations
            .push("IDENTIFY_SYSTEM answered over the tracked port".to_owned());
    }
    drop(r);
    run.s.judge(label, Expect::Replication, obs);
}

/// Replication connections on the tracked port: psql, pg_basebackup, raw startups
/// with every spelling PostgreSQL accepts. The cluster allows replication, and each
/// attack's control over the UNIX socket proves it works untracked.
#[test]
fn replication_side_door() {
    let _serial = serial();
    let opts = attack_options("")
        .setting("wal_level=replica")
        .setting("max_wal_senders=8")
        .setting("wal_keep_size=1024")
        .hba("local replication all trust")
        .hba("host replication all 127.0.0.1/32 trust");
    let mut run = Run::start("replication_side_door", opts);
    run.admin("CHECKPOINT");
    let tmp = tempfile::Builder::new()
        .prefix("supervise-pgattacks-bb-")
        .tempdir()
        .expect("tempdir");

    // Control: untracked, pg_basebackup copies every secret.
    let unix_dir = tmp.path().join("unix");
    let out = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(pg("pg_basebackup"))
        .arg("-h")
        .arg(run.c.sockdir())
        .args([
            "-p",
            &run.c.port().to_string(),
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&unix_dir)
        .output()
        .expect("run pg_basebackup");
    assert!(
        out.status.success(),
        "control: pg_basebackup over the UNIX socket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = scan_dir(&unix_dir, &file_forms());
    assert!(
        !hits.is_empty(),
        "control: the untracked base backup holds no secret; the replication attack \
         would prove nothing"
    );
    eprintln!(
        "  control pg_basebackup over the UNIX socket: copies {}",
        hits[0]
    );

    // pg_basebackup over the tracked port: must fail, nothing of the data arrives.
    for (label, args) in [
        (
            "pg_basebackup -X none (plain)",
            vec!["-X", "none", "-c", "fast"],
        ),
        (
            "pg_basebackup -X stream",
            vec!["-X", "stream", "-c", "fast"],
        ),
    ] {
        let d = tmp.path().join(label.replace([' ', '/'], "_"));
        let out = Command::new("timeout")
            .args(["-k", "5", "60"])
            .arg(pg("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &run.c.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(&args)
            .arg("-D")
            .arg(&d)
            .output()
            .expect("run pg_basebackup");
        let mut bytes = out.stdout.clone();
        bytes.extend_from_slice(&out.stderr);
        let mut obs = Obs {
            errors: psql_errors(&String::from_utf8_lossy(&out.stderr)),
            closed: true,
            hung: out.status.code() == Some(124),
            ..Obs::default()
        };
        let file_hits = scan_dir(&d, &file_forms());
        if !file_hits.is_empty() {
            // The hits quote the files' bytes: the scan of `bytes` reports them.
            bytes.extend_from_slice(format!("\nFILES: {}\n", file_hits.join("; ")).as_bytes());
            obs.violations.push(format!(
                "pg_basebackup wrote data files holding secrets: {}",
                file_hits.join("; ")
            ));
        }
        if out.status.success() {
            obs.violations
                .push("pg_basebackup succeeded over the tracked port".to_owned());
        }
        obs.bytes = bytes;
        run.s.judge(label, Expect::Replication, obs);
    }
    // Tar format to stdout: the data itself would be on the client's stdout.
    {
        let out = Command::new("timeout")
            .args(["-k", "5", "60"])
            .arg(pg("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &run.c.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "none", "-c", "fast", "-F", "t", "-D", "-"])
            .output()
            .expect("run pg_basebackup");
        let mut bytes = out.stdout.clone();
        bytes.extend_from_slice(&out.stderr);
        let mut obs = Obs {
            errors: psql_errors(&String::from_utf8_lossy(&out.stderr)),
            closed: true,
            hung: out.status.code() == Some(124),
            bytes,
            ..Obs::default()
        };
        if out.status.success() {
            obs.violations
                .push("pg_basebackup -F t -D - succeeded over the tracked port".to_owned());
        }
        run.s.judge(
            "pg_basebackup -F t -D - (tar on stdout)",
            Expect::Replication,
            obs,
        );
    }

    // psql in replication mode.
    for (label, mode) in [
        ("psql replication=database IDENTIFY_SYSTEM", "database"),
        ("psql replication=true IDENTIFY_SYSTEM", "true"),
    ] {
        let tcp = format!("{} replication={mode}", run.c.tcp_conninfo());
        let (mut obs, p) = run.psql_obs(&tcp, &[], "IDENTIFY_SYSTEM;\n");
        if p.code == Some(0) {
            obs.violations.push(format!(
                "psql replication={mode} succeeded: {}",
                tail(&p.stdout, 200)
            ));
        }
        obs.closed = obs.closed || p.code != Some(0);
        run.s.judge(label, Expect::Replication, obs);
        let unix = format!("{} replication={mode}", run.c.unix_conninfo());
        let (_, p) = run.psql_obs(&unix, &[], "IDENTIFY_SYSTEM;\n");
        if p.code == Some(0) && !p.stdout.trim().is_empty() {
            eprintln!(
                "  control {label}: untracked answers {}",
                tail(&p.stdout, 80)
            );
        } else {
            eprintln!("  control {label}: BROKEN: {p:?}");
            run.s.broken_controls.push(label.to_owned());
        }
    }

    // Raw startups: every value PostgreSQL takes for replication (booleans by prefix,
    // any case; "database"), and a duplicated key (the server takes the last).
    let variants: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("replication=true".into(), vec![("replication", "true")]),
        (
            "replication=database".into(),
            vec![("replication", "database")],
        ),
        ("replication=on".into(), vec![("replication", "on")]),
        ("replication=1".into(), vec![("replication", "1")]),
        ("replication=YES".into(), vec![("replication", "YES")]),
        ("replication=t (prefix)".into(), vec![("replication", "t")]),
        (
            "replication=tRu (prefix, mixed case)".into(),
            vec![("replication", "tRu")],
        ),
        ("replication=y".into(), vec![("replication", "y")]),
        (
            "replication=0 then replication=1 (duplicate key, last wins)".into(),
            vec![("replication", "0"), ("replication", "1")],
        ),
        (
            "replication=false then replication=database (duplicate key)".into(),
            vec![("replication", "false"), ("replication", "database")],
        ),
    ];
    for (label, extra) in variants {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let attack = move |t: &Target| {
            let mut params: Vec<(&str, &str)> = vec![("user", "postgres")];
            for (k, v) in &extra {
                params.push((k.as_str(), v.as_str()));
            }
            // database only where replication=database wants one
            params.push(("database", "postgres"));
            let mut r = Raw::connect(t);
            r.send_all(&[wire::startup(&params), wire::query("IDENTIFY_SYSTEM")]);
            r.read_until(2);
            r
        };
        replication_raw(
            &mut run,
            &format!("raw startup {label} + IDENTIFY_SYSTEM"),
            &attack,
            None,
        );
    }

    // BASE_BACKUP and START_REPLICATION through the raw client: the bytes would be the
    // data files / the WAL holding every INSERT.
    replication_raw(
        &mut run,
        "raw replication=true BASE_BACKUP",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[("user", "postgres"), ("replication", "true")]),
                wire::query("BASE_BACKUP (CHECKPOINT 'fast', WAL false)"),
            ]);
            r.read_until_for(2, Duration::from_secs(30));
            r
        },
        Some(&file_forms()),
    );
    replication_raw(
        &mut run,
        "raw replication=on START_REPLICATION from the first segment",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[("user", "postgres"), ("replication", "on")]),
                wire::query("START_REPLICATION PHYSICAL 0/1000000"),
            ]);
            r.read_until_for(2, Duration::from_secs(4));
            r.timed_out = false; // a stream never ends: the read deadline is expected
            r
        },
        Some(&file_forms()),
    );
    // replication=database also runs plain SQL: the rules must not be bypassed there.
    replication_raw(
        &mut run,
        "raw replication=database then plain SQL on salaries and ssn",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[
                    ("user", "postgres"),
                    ("database", "postgres"),
                    ("replication", "database"),
                ]),
                wire::query("SELECT note FROM salaries"),
                wire::query("SELECT ssn FROM employee"),
            ]);
            r.read_until(3);
            r
        },
        Some(&protected_forms()),
    );
    run.finish();
}

// ---------------------------------------------------------------- 5. derived relations

const DERIVED_ADMIN: &str = "
CREATE VIEW admin_emp_v AS SELECT id, name, ssn FROM employee;
CREATE VIEW admin_renamed_v AS SELECT id, ssn AS nick FROM employee;
CREATE VIEW admin_sal_v AS SELECT * FROM salaries;
CREATE FUNCTION admin_ssn_f() RETURNS SETOF text LANGUAGE sql AS $$SELECT ssn FROM employee$$;
CREATE FUNCTION admin_sal_f() RETURNS SETOF text LANGUAGE sql AS $$SELECT note FROM salaries$$;
CREATE SCHEMA shadow;
CREATE VIEW shadow.employee AS SELECT id, name, dept, ssn AS nickname FROM public.employee;
ANALYZE;
";

/// Does `relation` exist (over the untracked socket)?
fn exists(run: &Run, relation: &str) -> bool {
    run.admin(&format!("SELECT to_regclass('{relation}') IS NOT NULL"))
        .trim()
        == "t"
}

/// Views, materialized views, CREATE TABLE AS, INSERT … SELECT, UPDATE copying ssn,
/// SQL functions, renames, rules, triggers, statistics (psql and the crate).
#[test]
fn derived_relations() {
    let _serial = serial();
    let mut run = Run::start("derived_relations", attack_options(DERIVED_ADMIN));

    // Views (same session, then a new session if one was created).
    run.psql(
        "CREATE VIEW v1 AS SELECT * FROM employee; SELECT * FROM v1",
        "CREATE VIEW v1 AS SELECT * FROM employee;\nSELECT * FROM v1;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE VIEW v2 (a, b) AS SELECT id, ssn FROM employee; SELECT b FROM v2",
        "CREATE VIEW v2 (a, b) AS SELECT id, ssn FROM employee;\nSELECT b FROM v2;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    for (rel, label, sql) in [
        ("v1", "new session: SELECT * FROM v1", "SELECT * FROM v1;"),
        ("v2", "new session: SELECT b FROM v2", "SELECT b FROM v2;"),
    ] {
        if exists(&run, rel) {
            run.psql(label, sql, Expect::RefuseOrMask, Ctl::No);
        } else {
            run.s
                .note(label, "moot (the view was not created: refused earlier)");
        }
    }
    run.psql(
        "admin view: SELECT * FROM admin_emp_v",
        "SELECT * FROM admin_emp_v;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin view renaming ssn: SELECT nick FROM admin_renamed_v",
        "SELECT nick FROM admin_renamed_v;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin view over salaries: SELECT * FROM admin_sal_v",
        "SELECT * FROM admin_sal_v;",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "search_path shadow: SET search_path = shadow, public; SELECT nickname FROM employee",
        "SET search_path = shadow, public;\nSELECT nickname FROM employee;\nRESET search_path;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "CREATE TEMP VIEW tv AS SELECT ssn AS x FROM employee; SELECT x FROM tv",
        "CREATE TEMP VIEW tv AS SELECT ssn AS x FROM employee;\nSELECT x FROM tv;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE MATERIALIZED VIEW mv1 AS SELECT ssn FROM employee; SELECT * FROM mv1",
        "CREATE MATERIALIZED VIEW mv1 AS SELECT ssn FROM employee;\nSELECT * FROM mv1;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    if exists(&run, "mv1") {
        run.psql(
            "new session: SELECT * FROM mv1",
            "SELECT * FROM mv1;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s
            .note("new session: SELECT * FROM mv1", "moot (not created)");
    }
    run.psql(
        "CREATE TABLE t_ctas AS SELECT ssn FROM employee; SELECT * FROM t_ctas",
        "CREATE TABLE t_ctas AS SELECT ssn FROM employee;\nSELECT * FROM t_ctas;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    if exists(&run, "t_ctas") {
        run.psql(
            "new session: SELECT * FROM t_ctas",
            "SELECT * FROM t_ctas;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s
            .note("new session: SELECT * FROM t_ctas", "moot (not created)");
    }
    run.psql(
        "SELECT ssn INTO t_into FROM employee; SELECT * FROM t_into",
        "SELECT ssn INTO t_into FROM employee;\nSELECT * FROM t_into;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE TABLE t_json AS SELECT row_to_json(e) j FROM employee e; SELECT j FROM t_json",
        "CREATE TABLE t_json AS SELECT row_to_json(e) j FROM employee e;\nSELECT j FROM t_json;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "INSERT INTO t_ins SELECT ssn FROM employee; SELECT * FROM t_ins",
        "CREATE TABLE t_ins (x text);\nINSERT INTO t_ins SELECT ssn FROM employee;\nSELECT * FROM t_ins;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE TABLE t_sal AS TABLE salaries",
        "CREATE TABLE t_sal AS TABLE salaries;\nSELECT * FROM t_sal;",
        Expect::Refuse,
        Ctl::Tx,
    );
    run.psql(
        "UPDATE employee SET name = ssn; SELECT name FROM employee (rolled back)",
        "BEGIN;\nUPDATE employee SET name = ssn WHERE ssn IS NOT NULL;\nSELECT name FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "UPDATE employee SET name = ssn (committed)",
        "UPDATE employee SET name = ssn WHERE id IN (1, 2);\nSELECT id, name FROM employee ORDER BY id;",
        Expect::RefuseOrMask,
        Ctl::No,
    );
    let copied = run.admin("SELECT count(*) FROM employee WHERE name LIKE '931-%'");
    if copied.trim() != "0" {
        run.psql(
            "new session: SELECT name FROM employee (after ssn was copied into name)",
            "SELECT id, name FROM employee ORDER BY id;",
            Expect::RefuseOrMask,
            Ctl::No,
        );
    } else {
        run.s.note(
            "new session: SELECT name FROM employee (after ssn was copied into name)",
            "moot (the UPDATE copied nothing)",
        );
    }
    run.admin(&format!(
        "BEGIN; DELETE FROM employee; INSERT INTO employee VALUES {EMPLOYEE_ROWS}; COMMIT;"
    ));
    run.psql(
        "CREATE FUNCTION f_ssn() sql 'SELECT ssn FROM employee'; SELECT * FROM f_ssn()",
        "CREATE FUNCTION f_ssn() RETURNS SETOF text LANGUAGE sql AS 'SELECT ssn FROM employee';\n\
         SELECT * FROM f_ssn();",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "admin function: SELECT admin_ssn_f()",
        "SELECT admin_ssn_f();",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "admin function over salaries: SELECT * FROM admin_sal_f()",
        "SELECT * FROM admin_sal_f();",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "WITH x AS (SELECT ssn FROM employee) SELECT * FROM x",
        "WITH x AS (SELECT ssn FROM employee) SELECT * FROM x;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "ADD COLUMN s3 GENERATED ALWAYS AS (ssn) STORED; SELECT s3 (rolled back)",
        "BEGIN;\nALTER TABLE employee ADD COLUMN s3 text GENERATED ALWAYS AS (ssn) STORED;\n\
         SELECT s3 FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );

    // Renames, committed; a new session reads under the new name.
    let renames: [(&str, &str, &str, &str, &str); 3] = [
        (
            "ALTER TABLE employee RENAME COLUMN ssn TO s2",
            "ALTER TABLE employee RENAME COLUMN ssn TO s2;",
            "SELECT s2 FROM employee;",
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'employee'::regclass AND attname = 's2'",
            "ALTER TABLE employee RENAME COLUMN s2 TO ssn",
        ),
        (
            "ALTER TABLE salaries RENAME TO s2",
            "ALTER TABLE salaries RENAME TO s2;",
            "SELECT * FROM s2;",
            "SELECT count(*) FROM pg_class WHERE relname = 's2'",
            "ALTER TABLE s2 RENAME TO salaries",
        ),
        (
            "ALTER TABLE employee RENAME TO staff",
            "ALTER TABLE employee RENAME TO staff;",
            "SELECT ssn FROM staff;",
            "SELECT count(*) FROM pg_class WHERE relname = 'staff'",
            "ALTER TABLE staff RENAME TO employee",
        ),
    ];
    for (label, ddl, read, committed_sql, undo) in renames {
        let expect = if label.contains("salaries") {
            Expect::Refuse
        } else {
            Expect::RefuseOrMask
        };
        run.psql(
            &format!("{label}, then {}", read.trim_end_matches(';')),
            &format!("{ddl}\n{read}"),
            expect,
            Ctl::No,
        );
        let committed = run.admin(committed_sql).trim() != "0";
        eprintln!("  {label}: committed = {committed}");
        if committed {
            run.psql(
                &format!("new session after {label}: {}", read.trim_end_matches(';')),
                read,
                expect,
                Ctl::No,
            );
            run.admin(undo);
        } else {
            run.s.note(
                &format!("new session after {label}"),
                "moot (rename not committed)",
            );
        }
    }

    // Rules and triggers.
    run.psql(
        "CREATE RULE … ON INSERT DO INSTEAD SELECT ssn FROM employee",
        "CREATE TABLE t_rule (x text);\n\
         CREATE RULE r_leak AS ON INSERT TO t_rule DO INSTEAD SELECT ssn FROM employee;\n\
         INSERT INTO t_rule VALUES ('a');",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "CREATE RULE … ON UPDATE TO project DO ALSO INSERT … SELECT ssn",
        "CREATE TABLE t_rule2 (x text);\n\
         CREATE RULE r_copy AS ON UPDATE TO project DO ALSO INSERT INTO t_rule2 SELECT ssn FROM employee;\n\
         UPDATE project SET name = name WHERE id = 1;\n\
         SELECT * FROM t_rule2;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "trigger copying ssn into another table",
        "CREATE TABLE t_trig (x text);\n\
         CREATE FUNCTION trg_copy() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN INSERT INTO t_trig SELECT ssn FROM employee; RETURN NEW; END$$;\n\
         CREATE TRIGGER tr_copy AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION trg_copy();\n\
         INSERT INTO project VALUES (99, 'trig', 1);\n\
         SELECT * FROM t_trig;",
        Expect::RefuseOrMask,
        Ctl::Tx,
    );
    run.psql(
        "trigger raising a NOTICE with salaries",
        "CREATE FUNCTION trg_notice() RETURNS trigger LANGUAGE plpgsql AS \
         $$DECLARE r text; BEGIN SELECT string_agg(note, ',') INTO r FROM salaries; \
         RAISE NOTICE 'n=%', r; RETURN NEW; END$$;\n\
         CREATE TRIGGER tr_notice AFTER INSERT ON project FOR EACH ROW EXECUTE FUNCTION trg_notice();\n\
         INSERT INTO project VALUES (98, 'trig2', 1);",
        Expect::Refuse,
        Ctl::Tx,
    );
    // Clean up whatever the attacks managed to commit.
    run.admin(
        "DROP TABLE IF EXISTS t_rule, t_rule2, t_trig, t_ctas, t_into, t_json, t_ins, t_sal CASCADE;
         DROP TRIGGER IF EXISTS tr_copy ON project; DROP TRIGGER IF EXISTS tr_notice ON project;
         DELETE FROM project WHERE id > 3;",
    );

    // Planner statistics hold the values (pg_stats, after the admin's ANALYZE).
    run.psql(
        "pg_stats histogram_bounds of employee.ssn",
        "SELECT histogram_bounds::text, most_common_vals::text FROM pg_stats \
         WHERE tablename = 'employee' AND attname = 'ssn';",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    run.psql(
        "pg_stats of salaries",
        "SELECT attname, histogram_bounds::text FROM pg_stats WHERE tablename = 'sal' || 'aries';",
        Expect::Refuse,
        Ctl::Plain,
    );
    run.psql(
        "pg_statistic stavalues1 of employee",
        "SELECT stavalues1::text FROM pg_statistic WHERE starelid = 'public.employee'::regclass;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );

    // Extended protocol (the crate): a view, then the admin's view.
    run.ext(
        "crate: CREATE VIEW v_ext AS SELECT ssn AS y; SELECT y FROM v_ext",
        Expect::RefuseOrMask,
        |x| {
            x.query("CREATE VIEW v_ext AS SELECT ssn AS y FROM employee", &[]);
            x.query("SELECT y FROM v_ext", &[]);
        },
    );
    run.ext(
        "crate: SELECT * FROM admin_renamed_v (binary)",
        Expect::RefuseOrMask,
        |x| {
            x.query("SELECT * FROM admin_renamed_v", &[]);
        },
    );
    run.ext("crate: SELECT admin_ssn_f()", Expect::RefuseOrMask, |x| {
        x.query("SELECT admin_ssn_f()", &[]);
    });
    run.finish();
}

// ---------------------------------------------------------------- 6. functions running SQL

/// Functions and statements that run SQL or read files the supervisor cannot see.
#[test]
fn functions_that_run_sql_or_read_files() {
    let _serial = serial();
    let mut run = Run::start(
        "functions_that_run_sql_or_read_files",
        attack_options("CREATE EXTENSION dblink; CREATE EXTENSION pageinspect; CHECKPOINT;"),
    );
    let sal_path = run.admin("SELECT pg_relation_filepath('salaries')");
    let sal_path = sal_path.trim().to_owned();
    let emp_path = run.admin("SELECT pg_relation_filepath('employee')");
    let emp_path = emp_path.trim().to_owned();
    let dir = run.c.sockdir().display().to_string();
    let port = run.c.port();

    for (label, sql, expect) in [
        (
            "table_to_xml('salaries')",
            "SELECT table_to_xml('salaries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "table_to_xml('employee')",
            "SELECT table_to_xml('employee', true, false, '');".to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "query_to_xml('select * from sal' || 'aries')",
            "SELECT query_to_xml('select * from sal' || 'aries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "query_to_xml('select ssn from employee')",
            "SELECT query_to_xml('select ssn from employee', true, false, '');".to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "query_to_xml(U&'select note from s\\0061laries')",
            "SELECT query_to_xml(U&'select note from s\\0061laries', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "cursor_to_xml over a cursor on ssn",
            "BEGIN;\nDECLARE c CURSOR FOR SELECT ssn FROM employee;\n\
             SELECT cursor_to_xml('c', 10, true, false, '');\nCOMMIT;"
                .to_owned(),
            Expect::RefuseOrMask,
        ),
        (
            "schema_to_xml('public')",
            "SELECT schema_to_xml('public', true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "database_to_xml",
            "SELECT database_to_xml(true, false, '');".to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: EXECUTE 'SELECT … FROM sal' || 'aries' INTO r; RAISE NOTICE",
            "DO $$DECLARE r text; BEGIN EXECUTE 'SELECT string_agg(note, '','') FROM sal' || 'aries' INTO r; \
             RAISE NOTICE 'got %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: EXECUTE 'SELECT string_agg(ssn) FROM employee'; RAISE NOTICE",
            "DO $$DECLARE r text; BEGIN EXECUTE 'SELECT string_agg(ssn, '','') FROM employee' INTO r; \
             RAISE NOTICE 'got %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "DO: static SELECT INTO + RAISE EXCEPTION carrying ssn",
            "DO $$DECLARE r text; BEGIN SELECT ssn INTO r FROM employee WHERE id = 1; \
             RAISE EXCEPTION 'boom %', r; END$$;"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "plpgsql function with EXECUTE of a concatenated name",
            "CREATE OR REPLACE FUNCTION leakf(t text) RETURNS SETOF text LANGUAGE plpgsql AS \
             $$BEGIN RETURN QUERY EXECUTE 'SELECT note::text FROM ' || t; END$$;\n\
             SELECT * FROM leakf('sal' || 'aries');\nDROP FUNCTION leakf(text);"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "CREATE PROCEDURE + CALL with EXECUTE and NOTICE",
            "CREATE OR REPLACE PROCEDURE leakp() LANGUAGE plpgsql AS \
             $$DECLARE r text; BEGIN EXECUTE 'SELECT max(ssn) FROM ' || 'employee' INTO r; \
             RAISE NOTICE 'p=%', r; END$$;\nCALL leakp();\nDROP PROCEDURE leakp();"
                .to_owned(),
            Expect::Refuse,
        ),
        (
            "psql \\gexec of a generated statement",
            "SELECT 'SELECT note FROM sal' || 'aries' \\gexec".to_owned(),
            Expect::Refuse,
        ),
        (
            "pg_read_binary_file of salaries' data file",
            format!("SELECT pg_read_binary_file('{sal_path}');"),
            Expect::Refuse,
        ),
        (
            "encode(pg_read_binary_file(salaries file), 'escape')",
            format!("SELECT encode(pg_read_binary_file('{sal_path}'), 'escape');"),
            Expect::Refuse,
        ),
        (
            "encode(pg_read_binary_file(employee file), 'escape')",
            format!("SELECT encode(pg_read_binary_file('{emp_path}'), 'escape');"),
            Expect::Refuse,
        ),
        (
            "lo_import of salaries' file, then lo_get",
            format!(
                "SELECT lo_import('{dir}/data/{sal_path}') AS lo \\gset\n\
                 SELECT encode(lo_get(:lo), 'escape');"
            ),
            Expect::Refuse,
        ),
        (
            "lo_import of employee's file, then lo_get (hex)",
            format!(
                "SELECT lo_import('{dir}/data/{emp_path}') AS lo \\gset\nSELECT lo_get(:lo);"
            ),
            Expect::Refuse,
        ),
        (
            "pageinspect heap_page_items(get_raw_page('salaries', 0))",
            "SELECT t_data FROM heap_page_items(get_raw_page('salaries', 0));".to_owned(),
            Expect::Refuse,
        ),
        (
            "pageinspect get_raw_page('employee', 0) as escape",
            "SELECT encode(get_raw_page('employee', 0), 'escape');".to_owned(),
            Expect::Refuse,
        ),
        (
            "dblink to the UNIX socket, concatenated salaries",
            format!(
                "SELECT * FROM dblink('host={dir} port={port} user=postgres dbname=postgres', \
                 'SELECT note FROM sal' || 'aries') AS t(x text);"
            ),
            Expect::Refuse,
        ),
        (
            "dblink to the UNIX socket, ssn",
            format!(
                "SELECT * FROM dblink('host={dir} port={port} user=postgres dbname=postgres', \
                 'SELECT ssn FROM employee') AS t(x text);"
            ),
            Expect::Refuse,
        ),
        (
            "COPY (SELECT 1) TO PROGRAM running psql on the UNIX socket",
            format!(
                "COPY (SELECT 1) TO PROGRAM '{psql} -X -A -t -h {dir} -p {port} -U postgres -d postgres \
                 -c \"SELECT note FROM sal\"\"aries\" > {dir}/leak-psql.txt';\n\
                 SELECT pg_read_file('{dir}/leak-psql.txt');",
                psql = pg("psql").display()
            ),
            Expect::Refuse,
        ),
    ] {
        run.psql(label, &sql, expect, Ctl::Plain);
    }
    // dblink back into the tracked port: that inner connection is itself a tracked
    // session (no control: untracked it reaches the same tracked port).
    run.psql(
        "dblink to the tracked TCP port, ssn",
        &format!(
            "SELECT * FROM dblink('host=127.0.0.1 port={port} user=postgres dbname=postgres', \
             'SELECT ssn FROM employee') AS t(x text);"
        ),
        Expect::RefuseOrMask,
        Ctl::No,
    );
    run.psql_in_tx(
        "query_to_xml('select * from sal' || 'aries')",
        "SELECT query_to_xml('select * from sal' || 'aries', true, false, '');",
        Expect::Refuse,
    );

    // Writes into audit_log the session cannot be seen doing: refused or dropped, and
    // nothing committed.
    for (label, sql) in [
        (
            "DO: EXECUTE 'INSERT INTO audit' || '_log …'",
            "DO $$BEGIN EXECUTE 'INSERT INTO audit' || '_log VALUES (77, ''INJECTED-DO'')'; END$$;".to_owned(),
        ),
        (
            "SQL function inserting into audit_log via concatenated EXECUTE",
            "CREATE OR REPLACE FUNCTION inj() RETURNS void LANGUAGE plpgsql AS \
             $$BEGIN EXECUTE format('INSERT INTO %I VALUES (78, %L)', 'audit' || '_log', 'INJECTED-F'); END$$;\n\
             SELECT inj();\nDROP FUNCTION IF EXISTS inj();"
                .to_owned(),
        ),
        (
            "dblink_exec to the UNIX socket inserting into audit_log",
            format!(
                "SELECT dblink_exec('host={dir} port={port} user=postgres dbname=postgres', \
                 'INSERT INTO audit' || '_log VALUES (79, ''INJECTED-DBLINK'')');"
            ),
        ),
    ] {
        run.psql(label, &sql, Expect::RefuseOrDrop, Ctl::No);
    }
    run.finish();
}

// ---------------------------------------------------------------- 7. rewrite bypasses

/// Predicates equal in value to `dept = 20`: never department 20's names.
#[test]
fn rewrite_bypasses() {
    let _serial = serial();
    let mut run = Run::start(
        "rewrite_bypasses",
        attack_options(
            "CREATE FUNCTION twenty() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 20';",
        ),
    );
    let preds = [
        "dept = 020",
        "dept = '20'",
        "dept = 20.0",
        "dept = 2e1",
        "dept = 20.00",
        "dept = '0020'",
        "dept = ' 20'",
        "dept = +20",
        "dept IN (20)",
        "dept IN (20, 20)",
        "dept BETWEEN 20 AND 20",
        "dept = 10+10",
        "dept = 2*10",
        "dept = '20'::int",
        "dept = CAST(20 AS int)",
        "dept = 20::int8",
        "dept = abs(-20)",
        "dept = (SELECT 20)",
        "dept = ANY('{20}')",
        "dept = ANY(ARRAY[20])",
        "dept IN (SELECT 20)",
        "20 = dept",
        "(dept) = 20",
        "dept >= 20 AND dept <= 20",
        "dept > 19 AND dept < 21",
        "NOT dept <> 20",
        "NOT (dept <> 20)",
        "dept IS NOT DISTINCT FROM 20",
        "dept::text = '20'",
        "dept + 0 = 20",
        "dept - 20 = 0",
        "employee.dept = 20",
        "public.employee.dept = 20",
        "\"dept\" = 20",
        "DEPT = 20",
        "dept = /* c */ 20",
        "dept = 20 OR false",
        "(dept, 1) = (20, 1)",
        "dept = length(repeat('x', 20))",
        "dept = twenty()",
        "dept = current_setting('my.dept')::int",
        "dept OPERATOR(pg_catalog.=) 20",
        "pg_catalog.int4eq(dept, 20)",
    ];
    for p in preds {
        let script =
            format!("SET my.dept = '20';\nSELECT name FROM employee WHERE {p} ORDER BY 1;");
        run.psql(&format!("WHERE {p}"), &script, Expect::Rewrite, Ctl::Plain);
    }
    for (label, sql) in [
        (
            "subquery: FROM (SELECT * FROM employee) s WHERE dept = 20",
            "SELECT name FROM (SELECT * FROM employee) s WHERE dept = 20;",
        ),
        (
            "CTE: WITH e AS (SELECT * FROM employee) … WHERE dept = 20",
            "WITH e AS (SELECT * FROM employee) SELECT name FROM e WHERE dept = 20;",
        ),
        (
            "JOIN (VALUES (20)) v(d) ON e.dept = v.d",
            "SELECT e.name FROM employee e JOIN (VALUES (20)) v(d) ON e.dept = v.d;",
        ),
        (
            "SQL PREPARE p(int) … dept = $1; EXECUTE p(20)",
            "PREPARE p(int) AS SELECT name FROM employee WHERE dept = $1;\nEXECUTE p(20);\nDEALLOCATE p;",
        ),
        (
            "SQL PREPARE p2 … dept = $1::int; EXECUTE p2('20')",
            "PREPARE p2 AS SELECT name FROM employee WHERE dept = $1::int;\nEXECUTE p2('20');\nDEALLOCATE p2;",
        ),
        (
            "SQL PREPARE without predicate literal, EXECUTE with 10+10",
            "PREPARE p3(int) AS SELECT name FROM employee WHERE dept = $1;\nEXECUTE p3(10+10);\nDEALLOCATE p3;",
        ),
        (
            "DO block reading dept 20 into a NOTICE",
            "DO $$DECLARE r text; BEGIN SELECT string_agg(name, ',') INTO r FROM employee WHERE dept = 20; \
             RAISE NOTICE 'n=%', r; END$$;",
        ),
        (
            "rewrite in a cursor: DECLARE … WHERE dept = 020; FETCH",
            "BEGIN;\nDECLARE c CURSOR FOR SELECT name FROM employee WHERE dept = 020;\nFETCH ALL FROM c;\nCOMMIT;",
        ),
    ] {
        run.psql(label, sql, Expect::Rewrite, Ctl::Plain);
    }

    // $1 bound to 20 through the protocol (raw client): text and binary, int4 and int8.
    use wire::{bind, execute, parse, sync};
    let sql = "SELECT name FROM employee WHERE dept = $1 ORDER BY 1";
    let twenty4 = 20i32.to_be_bytes();
    let twenty8 = 20i64.to_be_bytes();
    // (label, Parse parameter types, Bind parameter format, value)
    type BindCase = (&'static str, Vec<u32>, Vec<i16>, Vec<u8>);
    let cases: Vec<BindCase> = vec![
        (
            "raw Bind $1 text '20' (type unspecified)",
            vec![],
            vec![0],
            b"20".to_vec(),
        ),
        (
            "raw Bind $1 text '020' (int4)",
            vec![23],
            vec![0],
            b"020".to_vec(),
        ),
        (
            "raw Bind $1 text ' 20' (int4)",
            vec![23],
            vec![0],
            b" 20".to_vec(),
        ),
        (
            "raw Bind $1 binary int4 20",
            vec![23],
            vec![1],
            twenty4.to_vec(),
        ),
        (
            "raw Bind $1 binary int8 20",
            vec![20],
            vec![1],
            twenty8.to_vec(),
        ),
    ];
    for (label, types, fmts, value) in cases {
        let msgs = vec![
            parse("", sql, &types),
            bind("", "", &fmts, &[Some(&value)], &[0]),
            execute("", 0),
            sync(),
        ];
        run.raw(label, Expect::Rewrite, true, &raw_batch(msgs, 1));
    }
    run.raw(
        "raw named statement bound to 21 then 20",
        Expect::Rewrite,
        true,
        &raw_batch(
            vec![
                parse("d", sql, &[23]),
                bind("a", "d", &[0], &[Some(b"21")], &[0]),
                execute("a", 0),
                bind("b", "d", &[1], &[Some(&twenty4)], &[0]),
                execute("b", 0),
                sync(),
            ],
            1,
        ),
    );
    run.raw(
        "raw dept = 020 through Parse, binary result",
        Expect::Rewrite,
        true,
        &raw_batch(
            vec![wire::pbes(
                "SELECT name FROM employee WHERE dept = 020",
                &[1],
            )],
            1,
        ),
    );

    // The crate: parameters are always bound in binary.
    run.ext("crate $1 = 20i32", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1 ORDER BY 1",
            &[&20i32],
        );
    });
    run.ext("crate $1::int8 = 20i64", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1::int8 ORDER BY 1",
            &[&20i64],
        );
    });
    run.ext("crate dept = ANY($1) with [20]", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = ANY($1) ORDER BY 1",
            &[&vec![20i32]],
        );
    });
    run.ext("crate $1::text::int with '20'", Expect::Rewrite, |x| {
        x.query(
            "SELECT name FROM employee WHERE dept = $1::text::int ORDER BY 1",
            &[&"20"],
        );
    });
    run.ext("crate dept = 2e1 (no parameter)", Expect::Rewrite, |x| {
        x.query("SELECT name FROM employee WHERE dept = 2e1", &[]);
    });
    run.finish();
}

// ---------------------------------------------------------------- 8. derived expressions

/// Expressions over the masked column, whole-row references, aggregates, casts,
/// unions, oracles (psql, crate, raw).
#[test]
fn expressions_over_the_masked_column() {
    let _serial = serial();
    let mut run = Run::start("expressions_over_the_masked_column", attack_options(""));
    for sql in [
        "SELECT ssn || '' FROM employee",
        "SELECT upper(ssn) FROM employee",
        "SELECT lower(ssn) FROM employee",
        "SELECT pg_catalog.upper(ssn) FROM employee",
        "SELECT pg_catalog.textin(pg_catalog.textout(ssn)) FROM employee",
        "SELECT reverse(ssn) FROM employee",
        "SELECT ssn::bytea FROM employee",
        "SELECT encode(ssn::bytea, 'base64') FROM employee",
        "SELECT encode(ssn::bytea, 'hex') FROM employee",
        "SELECT replace(ssn, '-', '') FROM employee",
        "SELECT sha256(ssn::bytea) FROM employee",
        "SELECT row_to_json(e) FROM employee e",
        "SELECT to_jsonb(e) FROM employee e",
        "SELECT e FROM employee e",
        "SELECT e::text FROM employee e",
        "SELECT (e).ssn FROM employee e",
        "SELECT (e.*)::text FROM employee e",
        "SELECT ROW(e.ssn) FROM employee e",
        "SELECT string_agg(ssn, ',') FROM employee",
        "SELECT max(ssn) FROM employee",
        "SELECT min(ssn) FROM employee",
        "SELECT json_agg(ssn) FROM employee",
        "SELECT json_agg(e) FROM employee e",
        "SELECT array_agg(ssn) FROM employee",
        "SELECT ARRAY[ssn] FROM employee",
        "SELECT jsonb_build_object('s', ssn) FROM employee",
        "SELECT xmlelement(name x, ssn) FROM employee",
        "SELECT format('%s', ssn) FROM employee",
        "SELECT concat(ssn) FROM employee",
        "SELECT coalesce(ssn, '') FROM employee",
        "SELECT CASE WHEN true THEN ssn END FROM employee",
        "SELECT (SELECT ssn) FROM employee",
        "SELECT ssn COLLATE \"C\" FROM employee",
        "SELECT ssn::varchar(20) FROM employee",
        "SELECT substring(ssn from 1) FROM employee",
        "SELECT x FROM (SELECT ssn AS x FROM employee) s",
        "SELECT * FROM (SELECT ssn FROM employee) s(x)",
        "SELECT name FROM project UNION ALL SELECT ssn FROM employee",
        "SELECT ssn FROM employee UNION SELECT 'x'",
        "SELECT v.*, s.* FROM (VALUES (1)) v, LATERAL (SELECT ssn FROM employee) s",
        "SELECT 1 FROM employee WHERE ssn::int = 0",
        "SELECT ssn::int FROM employee",
        "SELECT ssn::date FROM employee",
        "SELECT ssn::regclass FROM employee",
        "SELECT ssn::json FROM employee",
        "SELECT DISTINCT ssn FROM employee",
        "SELECT e.* FROM employee e",
    ] {
        run.psql(sql, &format!("{sql};"), Expect::RefuseOrMask, Ctl::Plain);
    }
    run.psql(
        "ALTER COLUMN ssn TYPE bytea USING ssn::bytea; SELECT ssn (rolled back)",
        "BEGIN;\nALTER TABLE employee ALTER COLUMN ssn TYPE bytea USING ssn::bytea;\n\
         SELECT ssn FROM employee;\nROLLBACK;",
        Expect::RefuseOrMask,
        Ctl::Plain,
    );
    // RETURNING (rolled back).
    for (label, sql) in [
        (
            "UPDATE … RETURNING ssn",
            "BEGIN;\nUPDATE employee SET dept = dept WHERE id = 1 RETURNING ssn;\nROLLBACK;",
        ),
        (
            "UPDATE … RETURNING ssn || ''",
            "BEGIN;\nUPDATE employee SET dept = dept RETURNING ssn || '';\nROLLBACK;",
        ),
        (
            "DELETE … RETURNING *",
            "BEGIN;\nDELETE FROM employee WHERE id = 2 RETURNING *;\nROLLBACK;",
        ),
        (
            "INSERT INTO project SELECT … ssn … RETURNING name",
            "BEGIN;\nINSERT INTO project SELECT 100 + id, ssn, 1 FROM employee WHERE ssn IS NOT NULL RETURNING name;\nROLLBACK;",
        ),
    ] {
        run.psql(label, sql, Expect::RefuseOrMask, Ctl::Plain);
    }
    run.psql_in_tx(
        "SELECT upper(ssn) FROM employee",
        "SELECT upper(ssn) FROM employee;",
        Expect::RefuseOrMask,
    );
    // Oracles: the answer depends on the secret (the marker appears only on a match).
    for (label, sql, marker) in [
        (
            "oracle: WHERE ssn LIKE '931-77%'",
            "SELECT name FROM employee WHERE ssn LIKE '931-77%';",
            "zz_dept20_alice",
        ),
        (
            "oracle: WHERE ssn = '931-77-' || '4410'",
            "SELECT 'oracle' || '-hit' FROM employee WHERE ssn = '931-77-' || '4410';",
            "oracle-hit",
        ),
        (
            "oracle: WHERE substr(ssn, 1, 6) = '931-88'",
            "SELECT 'oracle' || '-sub' FROM employee WHERE substr(ssn, 1, 6) = '931-88';",
            "oracle-sub",
        ),
    ] {
        run.psql(label, sql, Expect::Oracle(marker), Ctl::Plain);
    }

    // The crate: extended protocol, binary formats.
    for sql in [
        "SELECT ssn || '' FROM employee",
        "SELECT upper(ssn) FROM employee",
        "SELECT e FROM employee e",
        "SELECT row_to_json(e) FROM employee e",
        "SELECT ssn::bytea FROM employee",
        "SELECT array_agg(ssn) FROM employee",
        "SELECT string_agg(ssn, ',') FROM employee",
        "SELECT x FROM (SELECT ssn AS x FROM employee) s",
        "SELECT name FROM project UNION ALL SELECT ssn FROM employee",
        "SELECT jsonb_agg(e) FROM employee e",
    ] {
        run.ext(&format!("crate: {sql}"), Expect::RefuseOrMask, move |x| {
            x.query(sql, &[]);
        });
    }
    run.ext(
        "crate oracle: WHERE ssn = $1 with '931-77-4410'",
        Expect::Oracle("oracle-param"),
        |x| {
            let guess = format!("931-77-{}", 4410);
            x.query(
                "SELECT 'oracle' || '-param' FROM employee WHERE ssn = $1",
                &[&guess],
            );
        },
    );
    run.ext(
        "crate: simple_query SELECT e::text FROM employee e",
        Expect::RefuseOrMask,
        |x| {
            x.simple("SELECT e::text FROM employee e");
        },
    );
    // Raw client: no Describe, binary record and bytea.
    for sql in [
        "SELECT e FROM employee e",
        "SELECT ssn::bytea FROM employee",
        "SELECT ARRAY[ssn] FROM employee",
    ] {
        run.raw(
            &format!("raw binary no Describe: {sql}"),
            Expect::RefuseOrMask,
            true,
            &raw_batch(vec![wire::pbes(sql, &[1])], 1),
        );
    }
    run.finish();
}
