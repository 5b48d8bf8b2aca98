//! Rules replaced under a live session (a signed `set-rules`).
//!
//! A session's decisions rest on what it learned under its rules: the catalog answer
//! (which columns are masked, which views expose a protected table), the judgment of
//! every statement the client prepared, the portals bound from them. New rules are put
//! in force at the first message boundary where all of that can be redone:
//!
//! - before the StartupMessage, at once; during authentication or the catalog
//!   question, when the answer is in (the question is asked again);
//! - serving the client, at the client's next message if nothing is in flight (or,
//!   when what is in flight ends in a ReadyForQuery by itself, at that ReadyForQuery,
//!   the client's messages held meanwhile up to 1 MiB) and no transaction has
//!   failed: the client's messages are held, the catalog question is asked again
//!   (inside a transaction block, within a savepoint it rolls back, so the client's
//!   settings are untouched), together with how many SQL-level prepared statements
//!   and named cursors the session holds and the transaction's isolation. Those
//!   statements and cursors (a named protocol portal is one: SQL FETCH reads it) were
//!   judged under the old rules and cannot be judged again from here, and a
//!   REPEATABLE READ or SERIALIZABLE snapshot may predate objects the new rules must
//!   know of: in those cases the session ends. Otherwise each protocol-prepared
//!   statement is judged again from its text, read under the
//!   `standard_conforming_strings` it was prepared under: one the new rules would
//!   forward unchanged stays; any other is revoked (a Bind of it, or SQL `EXECUTE`,
//!   is refused with the reason) — the server holds the old text. The unnamed portal
//!   of the open transaction is revoked likewise. Then the held message runs under the
//!   new rules. A statement already running when the rules arrive finishes under
//!   the rules that judged it: its rows were asked for before the change.
//!
//! A replication session takes new rules at its next message in either direction
//! (its stream has no boundary to wait for). A `client_encoding` the new rules cannot
//! read statements under ends the session.
//!
//! Anywhere else (requests in flight, a failed transaction, a failed question) the
//! session ends at that boundary with a FATAL that says why: the client reconnects
//! under the new rules. Nothing runs under the old rules after the boundary.

use super::client::Judged;
use super::{Expect, PgRule, PgSession, Phase};
use crate::pg::message as msg;
use crate::pg::policy::Policy;
use crate::{Output, RuleError};

/// The savepoint the catalog question runs in inside a transaction block.
const SAVEPOINT: &str = "supervise_rules";

impl PgSession {
    /// Takes `rules` over: at once before the StartupMessage (nothing was decided
    /// yet), otherwise at the first safe point.
    pub(super) fn adopt_rules(&mut self, rules: Vec<PgRule>) {
        if self.phase == Phase::Startup {
            self.rules = rules;
        } else {
            self.pending = Some(rules);
        }
    }

    /// Puts the pending rules in force: the policy from the startup parameters
    /// again, nothing learned yet. Returns why the session must end (the new rules
    /// refuse its replication connection, or cannot read statements under its
    /// client_encoding).
    pub(super) fn install_pending(&mut self) -> Option<String> {
        let rules = self.pending.take()?;
        self.rules = rules;
        self.replaced += 1;
        self.policy = Policy::default();
        self.replacements.clear();
        self.replication_users.clear();
        self.learned_columns.clear();
        self.activate();
        if let Some(why) = self.unsafe_encoding() {
            return Some(format!(
                "supervise: session terminated: the stream's rules were replaced and its {why}"
            ));
        }
        self.startup_refusal()
    }

    /// A replication session with rules waiting: they are put in force at once, at
    /// this message in either direction (its stream has no boundary to wait for);
    /// `Some` is why it ends.
    pub(super) fn replication_swap(&mut self) -> Option<String> {
        if self.phase != Phase::Ready || !self.is_replication_session() {
            return None;
        }
        self.install_pending()
    }

    /// A client message while new rules wait (the session serving the client).
    pub(super) fn swap_at(&mut self, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        if self.is_at_rest() {
            return match self.begin_swap(&mut out.onward) {
                Ok(true) => {
                    if let Err(reason) = self.hold(message) {
                        Self::end_session(&reason, out, true);
                    }
                    Ok(())
                }
                Ok(false) => self.client_message(message, out),
                Err(reason) => {
                    Self::end_session(&reason, out, true);
                    Ok(())
                }
            };
        }
        let why = if !self.comes_to_rest() {
            "requests were in flight that need more of the client's messages to be answered"
        } else {
            // The server will come to rest by itself: wait for it (see `swap_after`).
            match self.hold(message) {
                Ok(()) => return Ok(()),
                Err(_) => "the client sent more than 1 MiB while its requests were answered",
            }
        };
        let reason = format!(
            "supervise: this stream's rules were replaced while {why}; the session ends here so that nothing more runs under the old rules: reconnect"
        );
        Self::end_session(&reason, out, true);
        Ok(())
    }

    /// A ReadyForQuery while new rules wait and client messages are held for them:
    /// if it brings the session to rest, the rules are put in force now.
    pub(super) fn swap_after(&mut self, out: &mut Output) {
        if self.pending.is_none() || self.held.is_empty() || !self.is_at_rest_ignoring_held() {
            return;
        }
        match self.begin_swap(&mut out.back) {
            Ok(true) => {}
            Ok(false) => {
                self.phase = Phase::Ready;
                match self.release_held(&mut out.onward, &mut out.back) {
                    Ok(false) => {}
                    Ok(true) => out.close = true,
                    Err(e) => Self::end_session(&e.reason, out, false),
                }
            }
            Err(reason) => Self::end_session(&reason, out, false),
        }
    }

    /// Nothing in flight: no reply is owed, no copy or discard under way.
    fn is_at_rest(&self) -> bool {
        self.held.is_empty() && self.is_at_rest_ignoring_held()
    }

    fn is_at_rest_ignoring_held(&self) -> bool {
        self.expect.is_empty()
            && !self.discarding
            && !self.server_skips_to_sync
            && self.client_copies == 0
            && !self.server_in_copy
    }

    /// Whether what is in flight ends in a ReadyForQuery without more from the
    /// client (the last request is a Sync or a simple Query, no copy under way).
    fn comes_to_rest(&self) -> bool {
        !self.discarding
            && !self.server_skips_to_sync
            && self.client_copies == 0
            && !self.server_in_copy
            && matches!(
                self.expect.back(),
                Some(Expect::Sync | Expect::Simple { .. })
            )
    }

    /// At rest: puts the pending rules in force. `Ok(true)`: the catalog question
    /// went to the server and client messages are held until it is answered;
    /// `Ok(false)`: nothing to ask, serve the client now; `Err`: the session ends.
    fn begin_swap(&mut self, to_server: &mut Vec<u8>) -> Result<bool, String> {
        if self.status == b'E' {
            return Err("supervise: this stream's rules were replaced while the session's transaction had failed; the session ends here so that nothing more runs under the old rules: reconnect".into());
        }
        let in_block = self.status == b'T';
        if let Some(reason) = self.install_pending() {
            return Err(reason);
        }
        if in_block {
            for portal in self.portals.values_mut() {
                portal.revoked = true;
                portal.named.clear();
                portal.mask = None;
            }
        } else {
            // Protocol portals do not outlive their transaction.
            self.portals.clear();
        }
        if !self.policy.is_active() {
            // Nothing is protected any more: nothing to learn or to end for.
            self.rejudge_statements();
            return Ok(false);
        }
        self.ask_again(in_block, to_server);
        Ok(true)
    }

    /// Sends the catalog question for the rules in force, with the count of the
    /// session's SQL-level state, and holds the client until it is answered.
    fn ask_again(&mut self, in_block: bool, to_server: &mut Vec<u8>) {
        let question = self.learn_query(true);
        let text = if in_block {
            format!(
                "SAVEPOINT {SAVEPOINT}; {question}; ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
            )
        } else {
            question
        };
        to_server.extend_from_slice(&msg::build_query(&text));
        self.expect.push_back(Expect::Learn);
        self.phase = Phase::Learning;
        self.swapping = true;
    }

    /// The catalog question's ReadyForQuery: serve the client, ask again for rules
    /// that arrived meanwhile, or end the session when the answer says it must.
    pub(super) fn after_learning(&mut self, out: &mut Output) -> Result<(), RuleError> {
        self.expect.pop_front();
        if self.pending.is_some() {
            if let Some(reason) = self.install_pending() {
                Self::end_session(&reason, out, false);
                return Ok(());
            }
            if self.policy.is_active() {
                self.ask_again(self.status == b'T', &mut out.back);
                return Ok(());
            }
            self.rejudge_statements();
        } else if std::mem::take(&mut self.swapping) {
            if let Some(reason) = self.swap_refusal() {
                Self::end_session(&reason, out, false);
                return Ok(());
            }
            self.rejudge_statements();
        }
        self.phase = Phase::Ready;
        if self.release_held(&mut out.onward, &mut out.back)? {
            out.close = true;
        }
        Ok(())
    }

    /// Why the answer to a question asked for replaced rules ends the session.
    fn swap_refusal(&self) -> Option<String> {
        if let Some(Err(error)) = &self.policy.learned {
            return Some(format!(
                "supervise: this stream's rules were replaced and the catalog question for them failed ({error}); the session ends: reconnect"
            ));
        }
        if let Some((_, _, isolation)) = &self.answer_state {
            if self.status == b'T' && isolation != "read committed" {
                return Some(format!(
                    "supervise: this stream's rules were replaced inside a {isolation} transaction, whose snapshot may predate objects the new rules must know of; the session ends here: reconnect"
                ));
            }
        }
        match self.answer_state.as_ref().map(|(p, c, _)| (*p, *c)) {
            Some((0, 0)) => None,
            Some((statements, cursors)) => Some(format!(
                "supervise: this stream's rules were replaced; the session holds {statements} SQL prepared statement(s) and {cursors} cursor(s) made under the old rules, which cannot be judged again; the session ends here: reconnect"
            )),
            None => Some(
                "supervise: this stream's rules were replaced and the catalog answer did not say which prepared statements and cursors the session holds; the session ends: reconnect".to_owned(),
            ),
        }
    }

    /// Judges each protocol-prepared statement again under the rules now in force.
    /// The server holds the text it was given: a statement the new rules would not
    /// forward exactly as it was sent is revoked.
    fn rejudge_statements(&mut self) {
        let strip_position = self.strip_position;
        let standard_strings = self.standard_strings;
        let mut names: Vec<String> = self.statements.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(old) = self.statements.get(&name).cloned() else {
                continue;
            };
            if old.revoked.is_some() {
                continue;
            }
            let Some(setting) = old.standard_strings else {
                // Judged while standard_conforming_strings was changing: how the server
                // read it is not known.
                self.statements.insert(
                    name,
                    Self::revoked(old, "cannot tell how the server read it".to_owned()),
                );
                continue;
            };
            // Read as the server read it at Parse.
            self.standard_strings = Some(setting);
            let judged = self.judge(&old.text);
            let entry = match judged {
                Judged::Text(None, mut prepared) if !old.rewritten => {
                    prepared.param_types = old.param_types;
                    prepared.text = old.text;
                    prepared.standard_strings = old.standard_strings;
                    prepared
                }
                Judged::Text(..) => Self::revoked(old, "rewrite it".to_owned()),
                Judged::Refuse(reason) | Judged::Drop(reason) => {
                    Self::revoked(old, format!("refuse it ({reason})"))
                }
            };
            self.statements.insert(name, entry);
        }
        self.strip_position = strip_position;
        self.standard_strings = standard_strings;
    }

    fn revoked(old: super::Prepared, why: String) -> super::Prepared {
        super::Prepared {
            revoked: Some(why),
            ..old
        }
    }

    /// Ends the session: FATAL with `reason` to the client, Terminate to the server.
    /// `client_sent`: `out` is for a client message (its `back` is the client's).
    pub(super) fn end_session(reason: &str, out: &mut Output, client_sent: bool) {
        out.decide("drop-session", reason, None);
        if client_sent {
            Self::drop_session(reason, &mut out.back, &mut out.onward);
        } else {
            Self::drop_session(reason, &mut out.onward, &mut out.back);
        }
        out.close = true;
    }
}
