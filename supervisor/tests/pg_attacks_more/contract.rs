//! What every attack is held to: the protected data, the byte scan that looks for
//! every spelling of it, and the judging of each attack against the contract (the
//! [`Suite`] prints one line per attack and fails the #[test] at the end).

use crate::pgcluster::wire::{Msg, Raw};
use crate::pgcluster::*;
use std::time::Duration;

// ---------------------------------------------------------------- the data

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

const SSNS: &[&str] = &[
    "931-77-4410",
    "931-88-5521",
    "931-66-3397",
    "931-55-2286",
    "931-44-1175",
];
const SALARY_VALUES: &[&str] = &[
    "918273.64",
    "827364.55",
    "SALARY-SECRET-7Q",
    "SALARY-SECRET-8R",
];
const DEPT20_NAMES: &[&str] = &["zz_dept20_alice", "zz_dept20_bob"];
const DEPT21_MARK: &str = "yy_dept21_";
pub(crate) const MASK: &str = "XXX-XX-XXXX";
pub(crate) const ALIVE_SQL: &str = "SELECT 'alive' || '-marker'";
pub(crate) const ALIVE: &str = "alive-marker";
pub(crate) const PSQL_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CRATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The masked query of the lexer/sqlparser disagreement: with
/// standard_conforming_strings off the server reads
/// `SELECT 'a'' AS q, ' || upper(ssn) || ', ' FROM employee` (+ a comment), sqlparser
/// (always standard) three string literals and no table at all.
pub(crate) const SCS_OFF_MASK: &str =
    r"SELECT 'a\' AS q, ' || upper(ssn) || ', ' FROM employee -- '";
/// The same for the rewrite: the server selects department 20 by `dept = 20`.
pub(crate) const SCS_OFF_REWRITE: &str =
    r"SELECT 'a\' AS q, ' || name || ', ' FROM employee WHERE dept = 20 -- '";
/// The same shape on salaries (the deny rule is judged on the server's reading).
pub(crate) const SCS_OFF_DENY: &str = r"SELECT 'a\' AS q, ' || note || ', ' FROM salaries -- '";

// ---------------------------------------------------------------- the byte scan

#[derive(Debug, Clone)]
struct Form {
    what: String,
    needle: Vec<u8>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|c| format!("{c:02x}")).collect()
}

fn forms(rewrite: bool) -> Vec<Form> {
    let mut f = Vec::new();
    for s in SSNS {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        for (how, n) in [
            ("", s.to_string()),
            (" (hex)", hex(s.as_bytes())),
            (" (digits)", digits),
        ] {
            f.push(Form {
                what: format!("ssn {s}{how}"),
                needle: n.to_ascii_lowercase().into_bytes(),
            });
        }
    }
    for s in SALARY_VALUES {
        f.push(Form {
            what: format!("salaries {s}"),
            needle: s.to_ascii_lowercase().into_bytes(),
        });
    }
    f.push(Form {
        what: "audit_log row".into(),
        needle: b"audit-baseline".to_vec(),
    });
    if rewrite {
        for s in DEPT20_NAMES {
            f.push(Form {
                what: format!("dept-20 name {s}"),
                needle: s.as_bytes().to_vec(),
            });
        }
    }
    f
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn scan(bytes: &[u8], forms: &[Form]) -> Vec<String> {
    let lower = bytes.to_ascii_lowercase();
    let mut hits: Vec<String> = forms
        .iter()
        .filter(|f| contains(&lower, &f.needle))
        .map(|f| f.what.clone())
        .collect();
    hits.dedup();
    hits
}

pub(crate) fn tail(s: &str, n: usize) -> String {
    let mut i = s.len().saturating_sub(n);
    while !s.is_char_boundary(i) {
        i += 1;
    }
    s[i..].replace('\n', "⏎")
}

pub(crate) fn summaries(msgs: &[Msg]) -> String {
    msgs.iter().map(Msg::summary).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------- judging

#[derive(Debug, Clone)]
pub(crate) struct Err {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
}

#[derive(Debug, Default)]
pub(crate) struct Obs {
    pub(crate) bytes: Vec<u8>,
    pub(crate) errors: Vec<Err>,
    pub(crate) hung: bool,
    pub(crate) violations: Vec<String>,
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
            hung: r.timed_out,
            violations,
            trail: tail(&summaries(&r.msgs), 400),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Refused (42501) or the values masked.
    RefuseOrMask,
    /// Refused (42501).
    Refuse,
    /// Refused, or department 21's rows instead of 20's.
    Rewrite,
    /// Anything but a leak (protocol sequences whose own answers are the server's).
    NoLeak,
}

pub(crate) struct Suite {
    name: &'static str,
    attacks: usize,
    leaks: Vec<String>,
    violations: Vec<String>,
    broken_controls: Vec<String>,
    notes: Vec<String>,
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
            notes: Vec::new(),
        }
    }

    pub(crate) fn judge(&mut self, label: &str, expect: Expect, obs: Obs) {
        self.attacks += 1;
        let hits = scan(&obs.bytes, &forms(expect == Expect::Rewrite));
        let mut v = obs.violations.clone();
        let refusals: Vec<&Err> = obs
            .errors
            .iter()
            .filter(|e| e.code == "42501" && e.severity == "ERROR")
            .collect();
        for e in &refusals {
            if !e.message.starts_with("supervise:") {
                v.push(format!("42501 without `supervise:`: {:?}", e.message));
            }
        }
        if obs.hung {
            v.push("no answer within the client's timeout (hang)".into());
        }
        let masked = contains(&obs.bytes, MASK.as_bytes());
        let rewritten = contains(&obs.bytes, DEPT21_MARK.as_bytes());
        let status = if !hits.is_empty() {
            format!("LEAKED {}", hits.join(", "))
        } else if !refusals.is_empty() {
            "refused".into()
        } else if masked {
            "masked".into()
        } else if expect == Expect::Rewrite && rewritten {
            "rewritten".into()
        } else {
            let errs: Vec<String> = obs
                .errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message))
                .collect();
            format!("no protected value seen (errors: {errs:?})")
        };
        let ok = match expect {
            Expect::RefuseOrMask => !refusals.is_empty() || masked,
            Expect::Refuse => !refusals.is_empty(),
            Expect::Rewrite => !refusals.is_empty() || rewritten,
            Expect::NoLeak => true,
        };
        if hits.is_empty() && !ok {
            v.push(format!(
                "expected {expect:?}, got: {status}; client saw «{}»",
                obs.trail
            ));
        }
        let mut line = format!("attack {label}: {status}");
        if !v.is_empty() {
            line.push_str(&format!("  — VIOLATION: {}", v.join(" | ")));
        }
        if !hits.is_empty() {
            line.push_str(&format!("  «{}»", obs.trail));
            self.leaks
                .push(format!("{label}: LEAKED {}", hits.join(", ")));
        }
        eprintln!("{line}");
        if !v.is_empty() {
            self.violations.push(format!("{label}: {}", v.join(" | ")));
        }
    }

    /// A finding judged by the attack itself (oracles, timings).
    pub(crate) fn finding(
        &mut self,
        label: &str,
        leaked: Option<String>,
        violation: Option<String>,
    ) {
        self.attacks += 1;
        match (&leaked, &violation) {
            (Some(l), _) => {
                eprintln!("attack {label}: LEAKED {l}");
                self.leaks.push(format!("{label}: LEAKED {l}"));
            }
            (None, Some(v)) => {
                eprintln!("attack {label}: VIOLATION: {v}");
                self.violations.push(format!("{label}: {v}"));
            }
            (None, None) => eprintln!("attack {label}: held"),
        }
        if let (Some(_), Some(v)) = (&leaked, &violation) {
            self.violations.push(format!("{label}: {v}"));
        }
    }

    pub(crate) fn control(&mut self, label: &str, bytes: &[u8], rewrite: bool) {
        let hits = scan(bytes, &forms(rewrite));
        if hits.is_empty() {
            eprintln!(
                "  control {label}: BROKEN (untracked shows nothing either): «{}»",
                escape_bytes(&bytes[..bytes.len().min(300)])
            );
            self.broken_controls.push(label.to_owned());
        } else {
            eprintln!("  control {label}: untracked shows {}", hits[0]);
        }
    }

    pub(crate) fn note(&mut self, label: &str, text: &str) {
        eprintln!("attack {label}: NOTE {text}");
        self.notes.push(format!("{label}: {text}"));
    }

    pub(crate) fn finish(self) {
        eprintln!(
            "==== {}: {} attacks, {} leaked, {} with violations, {} broken controls, {} notes",
            self.name,
            self.attacks,
            self.leaks.len(),
            self.violations.len(),
            self.broken_controls.len(),
            self.notes.len()
        );
        let mut report = String::new();
        for (title, list) in [
            ("LEAKS", &self.leaks),
            ("CONTRACT VIOLATIONS", &self.violations),
            ("BROKEN CONTROLS", &self.broken_controls),
        ] {
            if !list.is_empty() {
                report.push_str(&format!("{title} ({}):\n", list.len()));
                for l in list {
                    report.push_str(&format!("  {l}\n"));
                }
            }
        }
        if !self.notes.is_empty() {
            eprintln!("NOTES (ordinary traffic refused or broken, not failed):");
            for n in &self.notes {
                eprintln!("  {n}");
            }
        }
        if !report.is_empty() {
            eprintln!("{report}");
            panic!("{}: the rules do not hold:\n{report}", self.name);
        }
    }
}
