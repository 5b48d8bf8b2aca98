//! What the supervisor asks the database at a session's start, before any statement
//! of the client's runs.
//!
//! The question is asked **in band**, on the client's own connection, at the first
//! idle moment after authentication, with every client message held back until the
//! answer is in (so nothing the client pipelined can run first, fail the transaction
//! the question runs in, or receive its answer). Its replies never reach the client.
//! It is made safe from the session's own settings:
//!
//! - it runs as one Query (an implicit transaction of its own, the session idle), whose
//!   first statements are `SET LOCAL statement_timeout = 0`, `lock_timeout = 0` and
//!   `search_path = pg_catalog, pg_temp` — so a client's `options=-c …` timeouts do not
//!   apply, and no user-defined operator or function can be picked by name resolution;
//!   every relation it reads is schema-qualified;
//! - if it fails anyway (a timeout of 1 ms can kill even the first SET), the session is
//!   refused everything but transaction control and SET/SHOW: the rules are never
//!   applied from a partial or missing answer.
//!
//! A separate connection over the server's unix socket would be immune to the client
//! altogether, but the supervisor cannot know how to authenticate it (pg_hba, which
//! role, which database); in band, the answer is about exactly the database and role
//! the client is in, and a failure is fail-closed.
//!
//! The answer, as rows of four text columns:
//! - `c, oid, attnum, table.column`: each masked or rewritten column, so a mask
//!   recognises its values under any alias, in cursors and prepared statements, by the
//!   RowDescription's table OID and column number;
//! - `v, name, root`: every view, materialized view and inheritance ancestor that
//!   exposes a protected table (through the protected column, for mask and rewrite
//!   tables; any column for deny and drop tables), transitively;
//! - `t, table, column`: every column of each mask or rewrite rule's table (system
//!   columns included), so `e.to_jsonb` — a function of the whole row in attribute
//!   notation — is told apart from a column;
//! - `f, name`: user-defined functions (OID ≥ 16384), refused unless allowed;
//! - `o, name`: user-defined operators whose function is written in a language that
//!   can run SQL (not `c` or `internal`).

use super::{rule_error, PgSession};
use crate::pg::message as msg;
use crate::pg::policy::{Guarded, Learned};
use crate::RuleError;

/// The `s` row: how many SQL-level prepared statements and named cursors (DECLARE,
/// or a named portal, both readable by SQL FETCH) the session holds, and the
/// transaction's isolation (a snapshot older than the question may miss objects).
const STATE_ROW: &str = " UNION ALL SELECT 's', \
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql)::pg_catalog.text, \
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_cursors WHERE name <> '')::pg_catalog.text, \
    pg_catalog.current_setting('transaction_isolation')";

/// Objects at or above this OID were created after initdb (PostgreSQL's
/// FirstNormalObjectId).
const FIRST_USER_OID: u32 = 16384;

/// An SQL array literal of `values` as `pg_catalog.<element>[]`.
fn sql_array(values: &[String], element: &str) -> String {
    let quoted: Vec<String> = values
        .iter()
        .map(|n| format!("'{}'", n.replace('\'', "''")))
        .collect();
    format!("ARRAY[{}]::pg_catalog.{element}[]", quoted.join(","))
}

fn name_array(names: &[String]) -> String {
    sql_array(names, "name")
}

fn text_array(values: &[String]) -> String {
    sql_array(values, "text")
}

/// The state of a learning answer being read.
#[derive(Debug, Default)]
pub(super) struct Answer {
    learned: Learned,
    /// (SQL prepared statements, named cursors, transaction isolation), when asked.
    state: Option<(u64, u64, String)>,
    /// The server's error, if it failed.
    error: Option<String>,
}

impl PgSession {
    /// The catalog question (see the module documentation); `with_state` adds the
    /// count of the session's SQL prepared statements and cursors (see `swap`).
    pub(super) fn learn_query(&self, with_state: bool) -> String {
        let policy = &self.policy;
        let any_column: Vec<String> = policy.deny.iter().chain(&policy.drop).cloned().collect();
        let checked: Vec<String> = policy
            .masked
            .iter()
            .map(|m| m.table.clone())
            .chain(policy.rewrites.iter().map(|r| r.table.clone()))
            .collect();
        let columns: Vec<String> = policy
            .masked
            .iter()
            .map(|m| format!("{}.{}", m.table, m.column))
            .chain(
                policy
                    .rewrites
                    .iter()
                    .map(|r| format!("{}.{}", r.table, r.column.to_lowercase())),
            )
            .collect();
        let mut roots: Vec<String> = any_column.iter().chain(&checked).cloned().collect();
        roots.sort();
        roots.dedup();
        format!(
            "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0; \
             SET LOCAL search_path = pg_catalog, pg_temp; \
             WITH RECURSIVE \
             ancestors(oid, root, any_column) AS ( \
               SELECT c.oid, c.relname, c.relname = ANY ({any}) FROM pg_catalog.pg_class c \
                 WHERE c.relname = ANY ({roots}) \
               UNION \
               SELECT i.inhparent, a.root, true FROM ancestors a \
                 JOIN pg_catalog.pg_inherits i ON i.inhrelid = a.oid), \
             cols(oid, attnum, relname, attname) AS ( \
               SELECT c.oid, a.attnum, c.relname, a.attname FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 WHERE c.relname = ANY ({checked_tables}) \
                   AND (c.relname::pg_catalog.text || '.' || a.attname::pg_catalog.text) = ANY ({cols}) \
                   AND a.attnum > 0 AND NOT a.attisdropped), \
             derived(oid, root) AS ( \
               SELECT w.ev_class, a.root FROM ancestors a \
                 JOIN pg_catalog.pg_depend d ON d.refclassid = 1259 AND d.refobjid = a.oid \
                 JOIN pg_catalog.pg_rewrite w ON d.classid = 2618 AND w.oid = d.objid \
                 WHERE w.ev_class <> a.oid AND (a.any_column OR d.refobjsubid = 0 \
                   OR EXISTS (SELECT FROM cols k WHERE k.oid = a.oid AND k.attnum = d.refobjsubid)) \
               UNION \
               SELECT w.ev_class, x.root FROM derived x \
                 JOIN pg_catalog.pg_depend d ON d.refclassid = 1259 AND d.refobjid = x.oid \
                 JOIN pg_catalog.pg_rewrite w ON d.classid = 2618 AND w.oid = d.objid \
                 WHERE w.ev_class <> x.oid) \
             SELECT 'c', k.oid::pg_catalog.text, k.attnum::pg_catalog.text, \
                    k.relname::pg_catalog.text || '.' || k.attname::pg_catalog.text FROM cols k \
             UNION ALL SELECT 'v', c.relname::pg_catalog.text, a.root::pg_catalog.text, '' \
               FROM ancestors a JOIN pg_catalog.pg_class c ON c.oid = a.oid WHERE c.relname <> a.root \
             UNION ALL SELECT 'v', c.relname::pg_catalog.text, x.root::pg_catalog.text, '' \
               FROM derived x JOIN pg_catalog.pg_class c ON c.oid = x.oid \
             UNION ALL SELECT 't', c.relname::pg_catalog.text, a.attname::pg_catalog.text, '' \
               FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
               WHERE c.relname = ANY ({checked_tables}) AND NOT a.attisdropped \
             UNION ALL SELECT 'f', p.proname::pg_catalog.text, '', '' FROM pg_catalog.pg_proc p \
               WHERE p.oid >= {first} \
             UNION ALL SELECT 'o', o.oprname::pg_catalog.text, '', '' FROM pg_catalog.pg_operator o \
               JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
               JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
               WHERE o.oid >= {first} AND l.lanname <> ALL (ARRAY['c', 'internal']::pg_catalog.name[]){state}",
            any = name_array(&any_column),
            roots = name_array(&roots),
            cols = text_array(&columns),
            checked_tables = name_array(&checked),
            first = FIRST_USER_OID,
            state = if with_state { STATE_ROW } else { "" },
        )
    }

    /// One reply to the catalog question; nothing reaches the client but parameter
    /// status and notifications. Returns true at its ReadyForQuery.
    pub(super) fn learn_reply(&mut self, tag: u8, body: &[u8]) -> Result<bool, RuleError> {
        match tag {
            b'D' => {
                let values = msg::parse_data_row(body).map_err(rule_error)?;
                let text = |n: usize| {
                    values
                        .get(n)
                        .copied()
                        .flatten()
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .unwrap_or("")
                };
                self.learn_row(text(0), text(1), text(2), text(3));
            }
            b'E' => {
                let fields = msg::parse_fields(body).map_err(rule_error)?;
                let message = fields
                    .iter()
                    .find(|(code, _)| *code == b'M')
                    .map_or("(no message)", |(_, m)| m);
                let code = fields
                    .iter()
                    .find(|(code, _)| *code == b'C')
                    .map_or("", |(_, c)| c);
                self.answer.error = Some(format!("{code} {message}"));
            }
            b'Z' => {
                self.status = msg::parse_ready(body).map_err(rule_error)?;
                let answer = std::mem::take(&mut self.answer);
                self.answer_state = answer.state;
                self.policy.learned = Some(match answer.error {
                    Some(error) => Err(error),
                    None => Ok(answer.learned),
                });
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    fn learn_row(&mut self, kind: &str, a: &str, b: &str, c: &str) {
        let learned = &mut self.answer.learned;
        match kind {
            "c" => {
                let (Ok(oid), Ok(attnum)) = (a.parse::<u32>(), b.parse::<i16>()) else {
                    return;
                };
                for (i, m) in self.policy.masked.iter().enumerate() {
                    if format!("{}.{}", m.table, m.column) == c.to_lowercase() {
                        self.learned_columns.insert((oid, attnum, i));
                    }
                }
            }
            "v" => {
                let root = b.to_lowercase();
                let guarded = if self.policy.drop.contains(&root) {
                    Guarded::Drop
                } else if self.policy.deny.contains(&root) {
                    Guarded::Deny
                } else {
                    Guarded::DerivedFrom(root)
                };
                learned.derived.push((a.to_lowercase(), guarded));
            }
            "t" => {
                learned
                    .columns
                    .entry(a.to_lowercase())
                    .or_default()
                    .insert(b.to_lowercase());
            }
            "f" => {
                learned.functions.insert(a.to_lowercase());
            }
            "o" => {
                learned.operators.insert(a.to_owned());
            }
            "s" => {
                if let (Ok(statements), Ok(cursors)) = (a.parse(), b.parse()) {
                    self.answer.state = Some((statements, cursors, c.to_owned()));
                }
            }
            _ => {}
        }
    }
}
