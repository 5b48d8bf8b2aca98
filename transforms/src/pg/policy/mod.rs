//! The rules' promise, judged per statement, failing closed.
//!
//! A [`Policy`] holds what one session must keep (the deny, drop-session, mask and
//! rewrite rules whose conditions match it) and what the supervisor learned of the
//! database at the session's start (see `session::learn`). [`Policy::judge`] decides,
//! for the text of one Query or Parse, whether to forward it, rewrite it, refuse it
//! (SQLSTATE 42501 with a reason) or end the session. It refuses whatever it cannot
//! prove keeps every promise:
//!
//! - **Names as the server reads them.** The text is lexed by [`lex`], which resolves
//!   quoting, case folding, `U&"…"` escapes with any `UESCAPE` and identifier truncation
//!   exactly as PostgreSQL's scanner does; every identifier is compared with the
//!   protected names (lower-cased, on their last part: a same-named column or a table
//!   of another schema is refused too). Only statements naming a masked or rewritten
//!   table are parsed further.
//! - **Derived relations**: views, materialized views and inheritance parents over a
//!   protected table (learned from `pg_depend`/`pg_inherits`) are protected like it.
//!   Creating a new one over a masked or rewritten table is refused.
//! - **Code the supervisor cannot see**: `DO`, `CREATE FUNCTION`/`PROCEDURE`/`TRIGGER`/
//!   `RULE`/`OPERATOR`/`CAST`/…, `LOAD`, foreign servers, built-in functions that run
//!   SQL given as text or read files and large objects ([`SQL_RUNNING_FUNCTIONS`]), and
//!   every user-defined function and every user-defined operator written in a language
//!   that can run SQL, unless the profile allows the function by name.
//! - **Side doors**: `COPY … TO` of a protected table in any spelling or position,
//!   `COPY … PROGRAM` and server-side files, client encodings whose multibyte
//!   characters can hide a quote or a backslash from the lexer.

use std::collections::HashSet;

use super::lex::{self, Tok, Token};
use super::sql::{self, MaskedColumn, PredicateRewrite};

mod lists;
mod tokens;

pub use lists::{is_safe_encoding, SQL_RUNNING_FUNCTIONS};
pub use tokens::{copies_from, executed_statements, mentions_standard_strings, split_statements};

use lists::{CODE_OBJECTS, CREATE_MODIFIERS, DATA_CATALOGS, SESSION_COMMANDS};
use tokens::{
    copy_side_door, encoding_change, has_backslash_in_plain_string, is_copy_to,
    mentions_lexer_settings,
};

/// Words the token-level judgement reacts to (beyond protected names and functions):
/// statements that put code in the database or open side doors, COPY, EXECUTE, and
/// the settings that change how text is read.
const REACTS_TO: &[&str] = &[
    "do",
    "load",
    "import",
    "create",
    "alter",
    "copy",
    "execute",
    "set_config",
    "client_encoding",
    "names",
    "standard_conforming_strings",
];

/// Which rule a protected relation answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guarded {
    /// A deny rule: statements naming it are refused.
    Deny,
    /// A drop-session rule: statements naming it end the session.
    Drop,
    /// A mask or rewrite rule's table: statements naming it are parsed and checked.
    Checked,
    /// A view or parent derived from a protected relation through the column(s) a mask
    /// or rewrite rule protects: refused, naming its source.
    DerivedFrom(String),
}

impl Guarded {
    /// Lower is stricter: a drop beats a deny beats a refusal beats a check.
    fn severity(&self) -> u8 {
        match self {
            Guarded::Drop => 0,
            Guarded::Deny => 1,
            Guarded::DerivedFrom(_) => 2,
            Guarded::Checked => 3,
        }
    }
}

/// What the catalog said at the session's start.
#[derive(Debug, Clone, Default)]
pub struct Learned {
    /// Relations derived from protected ones: (name, the rule it answers to).
    pub derived: Vec<(String, Guarded)>,
    /// User-defined functions (by name, lower-cased).
    pub functions: HashSet<String>,
    /// User-defined operators whose function can run SQL.
    pub operators: HashSet<String>,
    /// The columns (system columns included) of each mask or rewrite rule's table:
    /// `e.x` where x is none of them is a function of the whole row.
    pub columns: std::collections::HashMap<String, HashSet<String>>,
}

/// A session's promises and what it knows.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Denied relation names.
    pub deny: Vec<String>,
    /// Drop-session relation names.
    pub drop: Vec<String>,
    /// Masked columns.
    pub masked: Vec<MaskedColumn>,
    /// Predicate rewrites.
    pub rewrites: Vec<PredicateRewrite>,
    /// Functions the profile allows by name (lower-cased).
    pub allowed_functions: Vec<String>,
    /// The catalog's answer; `Err` says why learning failed.
    pub learned: Option<Result<Learned, String>>,
}

/// What to do with one statement text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward as sent; `masked_tables` are the masked tables it names (result columns
    /// are recognised by name there too).
    Forward {
        /// Masked tables the text names.
        masked_tables: Vec<String>,
    },
    /// Forward this text instead (a predicate rewritten); `params` are the `$n` compared
    /// with a rewritten column (value checked at Bind), with the rule's index.
    Replace {
        /// The text to forward.
        sql: String,
        /// Masked tables the text names.
        masked_tables: Vec<String>,
    },
    /// Forward as sent, but rewrite these parameters' values at Bind.
    WithParams {
        /// `$n` and the index of the rewrite rule.
        params: Vec<(u32, usize)>,
        /// Masked tables the text names.
        masked_tables: Vec<String>,
    },
    /// Refuse with SQLSTATE 42501 and this reason.
    Refuse(String),
    /// End the session: this reason.
    Drop(String),
}

impl Policy {
    /// Whether any rule is in force for the session.
    pub fn is_active(&self) -> bool {
        !(self.deny.is_empty()
            && self.drop.is_empty()
            && self.masked.is_empty()
            && self.rewrites.is_empty())
    }

    /// The strictest rule a name answers to. A name can stand for several relations
    /// (one per schema, chosen by `search_path`): a view over a protected column named
    /// like the masked table itself is refused, not checked as the table.
    fn guarded(&self, name: &str) -> Option<Guarded> {
        let derived = match &self.learned {
            Some(Ok(learned)) => learned
                .derived
                .iter()
                .filter(|(derived, _)| derived == name)
                .map(|(_, g)| g.clone())
                .collect(),
            _ => Vec::new(),
        };
        let configured = [
            (self.drop.iter().any(|d| d == name), Guarded::Drop),
            (self.deny.iter().any(|d| d == name), Guarded::Deny),
            (
                self.masked.iter().any(|m| m.table == name)
                    || self.rewrites.iter().any(|r| r.table == name),
                Guarded::Checked,
            ),
        ]
        .into_iter()
        .filter_map(|(hit, g)| hit.then_some(g));
        configured.chain(derived).min_by_key(Guarded::severity)
    }

    /// Judges one Query or Parse text (`standard_conforming_strings` as the session has
    /// it; `None` when a change is in flight and both readings must agree).
    pub fn judge(&self, sql: &str, standard_conforming_strings: Option<bool>) -> Verdict {
        if !self.is_active() {
            return Verdict::Forward {
                masked_tables: Vec::new(),
            };
        }
        match Self::read(sql, standard_conforming_strings) {
            Ok(tokens) => self.judge_read(sql, &tokens, standard_conforming_strings),
            Err(verdict) => verdict,
        }
    }

    /// Whether `sql` certainly concerns no rule, decided without lexing: plain ASCII
    /// with no quote, dollar, backslash, ampersand, NUL or block comment (so every
    /// identifier the server reads is an unquoted word of the text), and no word the
    /// judgement reacts to. Conservative: `false` sends the text to the full reading.
    /// This is the hot path of ordinary traffic (`SELECT abalance FROM … WHERE aid = 1`).
    pub fn is_plainly_unconcerned(
        &self,
        sql: &str,
        standard_conforming_strings: Option<bool>,
    ) -> bool {
        let learned = match &self.learned {
            Some(Ok(learned)) if learned.operators.is_empty() => learned,
            _ => return false,
        };
        // Block comments (nested, possibly unterminated) are left to the lexer.
        if standard_conforming_strings.is_none()
            || sql.contains("/*")
            || sql
                .bytes()
                .any(|b| !b.is_ascii() || matches!(b, b'\'' | b'"' | b'$' | b'\\' | b'&' | 0))
        {
            return false;
        }
        let mut word = [0u8; 64];
        let bytes = sql.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if !(bytes[i].is_ascii_alphabetic() || bytes[i] == b'_') {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let len = i - start;
            if len >= word.len() {
                return false;
            }
            for (w, b) in word.iter_mut().zip(&bytes[start..i]) {
                *w = b.to_ascii_lowercase();
            }
            let Ok(w) = std::str::from_utf8(&word[..len]) else {
                return false;
            };
            if REACTS_TO.contains(&w)
                || SQL_RUNNING_FUNCTIONS.contains(&w)
                || DATA_CATALOGS.contains(&w)
                || self.guarded(w).is_some()
                || learned.functions.contains(w)
            {
                return false;
            }
        }
        true
    }

    /// Lexes a statement text as the server will read it (`Err`: the refusal when it
    /// cannot be read, or reads differently under a changing setting).
    pub fn read(
        sql: &str,
        standard_conforming_strings: Option<bool>,
    ) -> Result<Vec<Token>, Verdict> {
        let tokens = match standard_conforming_strings {
            Some(on) => lex::lex(sql, on),
            None => match (lex::lex(sql, true), lex::lex(sql, false)) {
                (Ok(a), Ok(b)) if a == b => Ok(a),
                (Err(e), _) | (_, Err(e)) => Err(e),
                _ => {
                    return Err(Verdict::Refuse(
                        "supervise: refused: standard_conforming_strings is changing and this text reads differently under its two settings".into(),
                    ))
                }
            },
        };
        tokens.map_err(|e| {
            Verdict::Refuse(format!(
                "supervise: refused: the statement text cannot be read: {e}"
            ))
        })
    }

    /// [`judge`](Self::judge) of a text already [`read`](Self::read).
    pub fn judge_read(
        &self,
        sql: &str,
        tokens: &[Token],
        standard_conforming_strings: Option<bool>,
    ) -> Verdict {
        if !self.is_active() {
            return Verdict::Forward {
                masked_tables: Vec::new(),
            };
        }
        let mut masked_tables = Vec::new();
        let mut parse = false;
        let mut refusal = None;
        for statement in split_statements(tokens) {
            match self.scan(statement) {
                Ok(scan) => {
                    parse |= scan.parse;
                    for t in scan.masked_tables {
                        if !masked_tables.contains(&t) {
                            masked_tables.push(t);
                        }
                    }
                }
                // A drop-session rule anywhere in the text wins over a refusal.
                Err(drop @ Verdict::Drop(_)) => return drop,
                Err(verdict) => {
                    refusal.get_or_insert(verdict);
                }
            }
        }
        if let Some(refusal) = refusal {
            return refusal;
        }
        if !parse {
            return Verdict::Forward { masked_tables };
        }
        self.judge_parsed(sql, tokens, masked_tables, standard_conforming_strings)
    }

    /// The token-level checks of one statement; `Err` is the verdict.
    fn scan(&self, tokens: &[Token]) -> Result<Scan, Verdict> {
        let refuse = |reason: String| Err(Verdict::Refuse(format!("supervise: refused: {reason}")));
        let idents: Vec<(usize, &str)> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| match &t.tok {
                Tok::Ident { name, .. } => Some((i, name.as_str())),
                _ => None,
            })
            .collect();
        let word = |i: usize| match tokens.get(i).map(|t| &t.tok) {
            Some(Tok::Ident {
                name,
                quoted: false,
            }) => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let first = word(0).unwrap_or_default();
        match first.as_str() {
            "do" => return refuse(
                "runs a DO block: code the supervisor cannot see, refused while rules are in force"
                    .into(),
            ),
            "load" => {
                return refuse(
                    "LOAD loads code into the server, refused while rules are in force".into(),
                )
            }
            "import" => {
                return refuse(
                    "IMPORT FOREIGN SCHEMA opens a data path the supervisor cannot see".into(),
                )
            }
            "create" | "alter" => {
                let kind = (1..tokens.len())
                    .map_while(word)
                    .find(|w| !CREATE_MODIFIERS.contains(&w.as_str()));
                let user_mapping = |k: &String| {
                    k != "user" || tokens.iter().any(|t| matches!(&t.tok, Tok::Ident { name, quoted: false } if name.eq_ignore_ascii_case("mapping")))
                };
                if let Some(kind) =
                    kind.filter(|k| CODE_OBJECTS.contains(&k.as_str()) && user_mapping(k))
                {
                    return refuse(format!(
                        "{} {} puts code or a data path in the database that the supervisor cannot see, refused while rules are in force",
                        first.to_uppercase(),
                        kind.to_uppercase()
                    ));
                }
            }
            _ => {}
        }
        // `CREATE TABLE … AS EXECUTE p`, also inside EXPLAIN ANALYZE: copies a prepared
        // statement's rows into a table no rule covers.
        let as_execute = tokens.windows(2).any(|w| {
            matches!((&w[0].tok, &w[1].tok),
                (Tok::Ident { name: a, quoted: false }, Tok::Ident { name: e, quoted: false })
                    if a.eq_ignore_ascii_case("as") && e.eq_ignore_ascii_case("execute"))
        });
        if as_execute {
            return refuse(
                "CREATE … AS EXECUTE copies a prepared statement's rows into a new table the rules do not cover".into(),
            );
        }
        if first == "copy" {
            if let Some(reason) = copy_side_door(tokens) {
                return refuse(reason);
            }
        }
        let learned = match &self.learned {
            Some(Ok(learned)) => Some(learned),
            _ => None,
        };
        let mut masked_tables = Vec::new();
        let mut parse = false;
        let mut copy_out_of = None;
        let copy_out = first == "copy" && is_copy_to(tokens);
        // Whole-statement scans, done at most once (a statement repeating the word must
        // not cost time quadratic in its length).
        let mut lexer_settings: Option<bool> = None;
        let mut encoding_checked = false;
        for &(i, name) in &idents {
            // Unquoted names are lower-case already; quoted ones are compared folded.
            let folded: std::borrow::Cow<str> =
                if name.bytes().any(|b| b.is_ascii_uppercase()) || !name.is_ascii() {
                    std::borrow::Cow::Owned(name.to_lowercase())
                } else {
                    std::borrow::Cow::Borrowed(name)
                };
            let name: &str = &folded;
            let next = tokens.get(i + 1).map(|t| &t.tok);
            let prev = i.checked_sub(1).and_then(|p| tokens.get(p)).map(|t| &t.tok);
            let call = matches!(next, Some(Tok::Punct('(')));
            let attribute = matches!(prev, Some(Tok::Punct('.')));
            if (call || attribute) && !self.allowed_functions.iter().any(|f| f == name) {
                let user = learned.is_some_and(|l| l.functions.contains(name));
                if (call && SQL_RUNNING_FUNCTIONS.contains(&name)) || user {
                    return refuse(format!(
                        "calls {name}(), which runs SQL or reads data the supervisor cannot see; a profile may allow it by name"
                    ));
                }
            }
            if call
                && name == "set_config"
                && *lexer_settings.get_or_insert_with(|| mentions_lexer_settings(tokens))
            {
                return refuse(
                    "set_config() of client_encoding or standard_conforming_strings would change how the supervisor must read statements".into(),
                );
            }
            if first == "set" && (name == "client_encoding" || name == "names") && !encoding_checked
            {
                encoding_checked = true;
                if let Some(reason) = encoding_change(tokens) {
                    return refuse(reason);
                }
            }
            if DATA_CATALOGS.contains(&name) {
                return refuse(format!(
                    "reads {name}, which holds sampled values of protected columns"
                ));
            }
            match self.guarded(name) {
                Some(Guarded::Drop) => {
                    return Err(Verdict::Drop(format!(
                        "supervise: session terminated: the statement names {name}, protected by a drop-session rule"
                    )))
                }
                Some(Guarded::Deny) => {
                    return refuse(format!("the statement names {name}, protected by a deny rule"))
                }
                Some(Guarded::DerivedFrom(source)) => {
                    return refuse(format!(
                        "{name} is derived from {source}, protected by a rule the supervisor cannot apply through it"
                    ))
                }
                Some(Guarded::Checked) => {
                    parse = true;
                    copy_out_of.get_or_insert(name.to_owned());
                    if self.masked.iter().any(|m| m.table == name) && !masked_tables.iter().any(|t| t == name) {
                        masked_tables.push(name.to_owned());
                    }
                }
                None => {}
            }
        }
        if let (true, Some(table)) = (copy_out, copy_out_of) {
            return refuse(format!(
                "COPY … TO of {table}: COPY data is not a result the mask or rewrite rules on {table} can apply to"
            ));
        }
        if let Some(learned) = learned {
            for t in tokens {
                if let Tok::Op(op) = &t.tok {
                    if learned.operators.contains(op.as_str()) {
                        return refuse(format!(
                            "uses operator {op}, which has a user-defined version that can run SQL the supervisor cannot see"
                        ));
                    }
                }
            }
        }
        if let Some(Err(reason)) = &self.learned {
            let harmless = SESSION_COMMANDS.contains(&first.as_str())
                && !tokens.iter().any(|t| t.tok == Tok::Punct('('));
            if !harmless {
                return refuse(format!(
                    "the supervisor could not learn this database's catalog for the session ({reason}): only transaction control and SET/SHOW are served"
                ));
            }
        }
        Ok(Scan {
            parse,
            masked_tables,
        })
    }

    /// The parsed checks, for statements naming a masked or rewritten table.
    fn judge_parsed(
        &self,
        sql: &str,
        tokens: &[Token],
        masked_tables: Vec<String>,
        standard_conforming_strings: Option<bool>,
    ) -> Verdict {
        // The parser reads '…' as standard_conforming_strings = on does; when the
        // session may have it off, a backslash in such a string would make the parser
        // and the server read different statements.
        if standard_conforming_strings != Some(true) && has_backslash_in_plain_string(sql, tokens) {
            return Verdict::Refuse(
                "supervise: refused: with standard_conforming_strings off, a backslash in a '…' string names a protected table's statement ambiguously; use E'…' strings".into(),
            );
        }
        let normalized = lex::without_unicode_escapes(sql, tokens);
        let text = normalized.as_deref().unwrap_or(sql);
        let parsed = match sql::ParsedSql::parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                return Verdict::Refuse(format!(
                    "supervise: refused: the statement names a protected table and cannot be analysed: {e}"
                ))
            }
        };
        if let Err(reason) = parsed.check_changes(&self.checked_tables()) {
            return Verdict::Refuse(format!("supervise: refused: {reason}"));
        }
        if let Err(reason) = parsed.check_masked_use(&self.masked) {
            return Verdict::Refuse(format!("supervise: refused: {reason}"));
        }
        if let Some(Ok(learned)) = &self.learned {
            if let Err(reason) = parsed.check_attribute_calls(&learned.columns) {
                return Verdict::Refuse(format!("supervise: refused: {reason}"));
            }
        }
        match parsed.rewrite_plan(&self.rewrites) {
            Err(e) => Verdict::Refuse(format!("supervise: refused: {e}")),
            Ok(plan) if !plan.params.is_empty() => match plan.text {
                Some(_) => Verdict::Refuse(
                    "supervise: refused: the statement compares a rewritten column with both literals and parameters; use one form".into(),
                ),
                None => Verdict::WithParams {
                    params: plan.params,
                    masked_tables,
                },
            },
            Ok(plan) => match (plan.text, normalized) {
                (Some(sql), _) | (None, Some(sql)) => Verdict::Replace { sql, masked_tables },
                (None, None) => Verdict::Forward { masked_tables },
            },
        }
    }

    /// Tables of mask and rewrite rules (what DDL may not change).
    fn checked_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = self
            .masked
            .iter()
            .map(|m| m.table.clone())
            .chain(self.rewrites.iter().map(|r| r.table.clone()))
            .collect();
        tables.sort();
        tables.dedup();
        tables
    }
}

struct Scan {
    parse: bool,
    masked_tables: Vec<String>,
}

#[cfg(test)]
mod tests;
