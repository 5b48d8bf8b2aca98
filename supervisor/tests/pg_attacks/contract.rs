//! What every attack is held to: the protected data, the byte scan that looks for
//! every spelling of it, and the judging of each attack against the contract (the
//! [`Suite`] prints one line per attack and fails the #[test] at the end).

use crate::pgcluster::wire::{Msg, Raw};
use crate::pgcluster::*;
use crate::runners::*;
use sha2::Digest;
use std::time::Duration;

// ---------------------------------------------------------------- the data

/// The attack schema: every secret is distinctive, so a byte scan is meaningful.
pub(crate) const SCHEMA: &str = "
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
pub(crate) const EMPLOYEE_ROWS: &str = "
    (1, 'zz_dept20_alice', 20, '931-77-4410'),
    (2, 'zz_dept20_bob',   20, '931-88-5521'),
    (3, 'yy_dept21_carol', 21, '931-66-3397'),
    (4, 'yy_dept21_dave',  21, '931-55-2286'),
    (5, 'xx_dept22_erin',  22, '931-44-1175'),
    (6, 'yy_dept21_frank', 21, NULL)";

pub(crate) const SSNS: &[&str] = &[
    "931-77-4410",
    "931-88-5521",
    "931-66-3397",
    "931-55-2286",
    "931-44-1175",
];
const SALARY_AMOUNTS: &[&str] = &["918273.64", "827364.55"];
pub(crate) const SALARY_NOTES: &[&str] = &["SALARY-SECRET-7Q", "SALARY-SECRET-8R"];
pub(crate) const AUDIT_ROWS: &[&str] = &["AUDIT-BASELINE"];
const DEPT20_NAMES: &[&str] = &["zz_dept20_alice", "zz_dept20_bob"];
/// What department 21's names start with: a rewritten `dept = 20` shows these.
const DEPT21_MARK: &str = "yy_dept21_";
const MASK: &str = "XXX-XX-XXXX";
/// A query whose answer proves the session still works.
pub(crate) const ALIVE_SQL: &str = "SELECT 'alive' || '-marker'";
pub(crate) const ALIVE: &str = "alive-marker";

/// Timeout of one psql attack run (a hang is a violation, not a stuck suite).
pub(crate) const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one crate attack.
pub(crate) const CRATE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- the byte scan

/// One spelling of one protected value, lower-cased (the scan is case-insensitive).
#[derive(Debug, Clone)]
pub(crate) struct Form {
    /// "ssn", "salaries note", …
    pub(crate) kind: String,
    /// The value as stored.
    pub(crate) value: String,
    /// "" (clear), "reversed", "as hex", …; "prefix …" marks a partial value.
    spelling: String,
    needle: Vec<u8>,
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

pub(crate) fn base64(b: &[u8]) -> String {
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
pub(crate) fn spellings(kind: &str, value: &str, rich: bool) -> Vec<Form> {
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
pub(crate) fn protected_forms() -> Vec<Form> {
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

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
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

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

/// One protected value found in the bytes.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) form: Form,
    /// The bytes around it (escaped).
    pub(crate) context: String,
}

/// The forms found in `bytes`, each with a little context.
pub(crate) fn scan(bytes: &[u8], forms: &[Form]) -> Vec<Hit> {
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
pub(crate) struct Err {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
}

#[derive(Debug, Default)]
pub(crate) struct Obs {
    /// Every byte the client received (or, for the crate, every value and error).
    pub(crate) bytes: Vec<u8>,
    /// ErrorResponses (not notices).
    pub(crate) errors: Vec<Err>,
    /// The server closed the connection.
    pub(crate) closed: bool,
    /// The client got no answer within its timeout.
    pub(crate) hung: bool,
    /// Contract checks that failed while running the attack.
    pub(crate) violations: Vec<String>,
    /// What the client saw, briefly (shown with a violation).
    pub(crate) trail: String,
}

impl Obs {
    pub(crate) fn from_raw(r: &Raw, violations: Vec<String>) -> Obs {
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
pub(crate) enum Expect {
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
    pub(crate) fn forms(self) -> Vec<Form> {
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

    pub(crate) fn wants_alive(self) -> bool {
        !matches!(
            self,
            Expect::Drop | Expect::Replication | Expect::RefuseOrDrop
        )
    }
}

/// The control run over the untracked socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    /// No control.
    No,
    /// The same script.
    Plain,
    /// The same script inside BEGIN … ROLLBACK (it writes).
    Tx,
}

/// The results of one #[test]: lines printed as they come, failures listed at the end.
#[derive(Debug)]
pub(crate) struct Suite {
    pub(crate) name: &'static str,
    attacks: usize,
    leaks: Vec<String>,
    pub(crate) violations: Vec<String>,
    pub(crate) broken_controls: Vec<String>,
}

impl Suite {
    pub(crate) fn new(name: &'static str) -> Suite {
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
    pub(crate) fn judge(&mut self, label: &str, expect: Expect, obs: Obs) {
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
    pub(crate) fn control(&mut self, label: &str, bytes: &[u8], forms: &[Form]) {
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
    pub(crate) fn note(&mut self, label: &str, text: &str) {
        eprintln!("attack {label}: {text}");
    }

    /// Prints the summary and fails if anything leaked or broke the contract.
    pub(crate) fn finish(self) {
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
