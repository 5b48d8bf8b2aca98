//! Client → server messages: judged by the policy, swapped, held or forwarded, each
//! with its entry in the reply queue.

use super::{
    refusal_statement, rule_error, Expect, PgSession, Phase, Portal, Prepared, TEXTUAL_TYPES,
};
use crate::pg::message as msg;
use crate::pg::policy::{self, Policy, Verdict};
use crate::pg::sql;
use crate::{Output, RuleError};

/// Whether `text` holds `word` in any ASCII case (a cheap test before lexing).
fn has_word_ci(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
}

/// What became of one statement text.
pub(super) enum Judged {
    /// Forward this text (the original, or a rewritten one).
    Text(Option<String>, Prepared),
    Refuse(String),
    Drop(String),
}

/// How a bound value is read: text, or (binary) a big-endian integer of its width —
/// only when the parameter's type is known to be an integer; a binary value of a text
/// type is its text. Any other binary value cannot be judged (`Err`).
fn binary_meaning(binary: bool, type_oid: u32) -> Result<bool, sql::SqlError> {
    const INTEGERS: [u32; 3] = [20, 21, 23];
    match (binary, type_oid) {
        (false, _) => Ok(false),
        (true, t) if INTEGERS.contains(&t) => Ok(true),
        (true, t) if TEXTUAL_TYPES.contains(&t) => Ok(false),
        (true, t) => Err(sql::SqlError::Unprovable {
            reason: format!(
                "a binary value of type OID {t} (0: not known to the supervisor; declare it in Parse or Describe the statement) cannot be compared with the rewrite rule's value"
            ),
        }),
    }
}

impl PgSession {
    pub(super) fn client_message(
        &mut self,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        let typed = msg::typed(message).map_err(rule_error)?;
        match self.phase {
            // Password, SASL and GSS responses belong to authentication.
            Phase::Auth if typed.tag == b'p' => {
                out.onward.extend_from_slice(message);
                return Ok(());
            }
            Phase::Auth | Phase::Learning => {
                if let Err(reason) = self.hold(message) {
                    Self::end_session(&reason, out, true);
                }
                return Ok(());
            }
            Phase::Startup | Phase::Ready => {}
        }
        if self.discarding {
            // After a refused Parse or Bind the server skips to Sync; so does the
            // client's pipeline here (Terminate still ends the session).
            match typed.tag {
                b'S' => self.discarding = false,
                b'X' => {}
                _ => return Ok(()),
            }
        }
        if self.server_skips_to_sync {
            // The server discards these itself after its error; only Sync is answered.
            match typed.tag {
                b'S' => self.server_skips_to_sync = false,
                _ => {
                    out.onward.extend_from_slice(message);
                    return Ok(());
                }
            }
        }
        match typed.tag {
            b'Q' => {
                let sql = msg::parse_query(typed.body).map_err(rule_error)?;
                match self.judge(sql) {
                    Judged::Drop(reason) => {
                        self.decide(out, "drop-session", &reason);
                        Self::drop_session(&reason, &mut out.back, &mut out.onward);
                        out.close = true;
                        return Ok(());
                    }
                    Judged::Refuse(reason) => {
                        self.decide(out, "refuse", &reason);
                        // The server raises the error itself: its status byte is the truth.
                        out.onward
                            .extend_from_slice(&msg::build_query(&refusal_statement(&reason)));
                        self.expect.push_back(Expect::Simple { named: Vec::new() });
                    }
                    Judged::Text(text, prepared) => {
                        match text {
                            Some(new) => {
                                self.decide(out, "rewrite", "a predicate on a rewritten column");
                                out.onward.extend_from_slice(&msg::build_query(&new))
                            }
                            None => out.onward.extend_from_slice(message),
                        }
                        self.client_copies += prepared.copies;
                        self.expect.push_back(Expect::Simple {
                            named: prepared.named,
                        });
                    }
                }
                return Ok(());
            }
            b'P' => {
                let parse = msg::parse_parse(typed.body).map_err(rule_error)?;
                let name = parse.name.to_owned();
                match self.judge(parse.query) {
                    Judged::Drop(reason) => {
                        self.decide(out, "drop-session", &reason);
                        Self::drop_session(&reason, &mut out.back, &mut out.onward);
                        out.close = true;
                        return Ok(());
                    }
                    Judged::Refuse(reason) => {
                        self.refuse_extended(&reason, out);
                        return Ok(());
                    }
                    Judged::Text(text, mut prepared) => {
                        prepared.param_types = parse.param_types.clone();
                        prepared.text = parse.query.to_owned();
                        prepared.rewritten = text.is_some();
                        prepared.standard_strings = self.standard_strings;
                        match text {
                            Some(new) => {
                                self.decide(out, "rewrite", "a predicate on a rewritten column");
                                let swapped = msg::ParseMsg {
                                    query: &new,
                                    ..parse
                                };
                                out.onward.extend_from_slice(&msg::build_parse(&swapped));
                            }
                            None => out.onward.extend_from_slice(message),
                        }
                        self.expect
                            .push_back(Expect::Parse(name, Box::new(prepared)));
                    }
                }
                return Ok(());
            }
            b'B' => return self.bind(typed.body, message, out),
            b'D' => {
                let (kind, name) = msg::parse_describe(typed.body).map_err(rule_error)?;
                self.expect.push_back(if kind == b'S' {
                    Expect::DescribeStatement(name.to_owned())
                } else {
                    Expect::DescribePortal
                });
            }
            b'E' => {
                let (portal, _) = msg::parse_execute(typed.body).map_err(rule_error)?;
                if self.portals.get(portal).is_some_and(|p| p.revoked) {
                    let reason = format!(
                        "supervise: refused: portal \"{portal}\" was bound under rules since replaced; bind it again"
                    );
                    self.refuse_extended(&reason, out);
                    return Ok(());
                }
                if !self.policy.masked.is_empty() {
                    // The shape of the rows is asked by the supervisor itself, right
                    // before they come, whatever the client described or not.
                    out.onward
                        .extend_from_slice(&msg::build_describe(b'P', portal));
                    self.expect
                        .push_back(Expect::HiddenDescribe(portal.to_owned()));
                }
                if self.portals.get(portal).is_some_and(|p| p.copy_in) {
                    self.client_copies += 1;
                }
                self.expect.push_back(Expect::Execute(portal.to_owned()));
            }
            b'C' => {
                let (kind, name) = msg::parse_describe(typed.body).map_err(rule_error)?;
                self.expect.push_back(Expect::Close(kind, name.to_owned()));
            }
            b'S' if self.client_copies > 0 => self.expect.push_back(Expect::CopySync),
            b'S' => self.expect.push_back(Expect::Sync),
            b'c' | b'f' => self.client_copies = self.client_copies.saturating_sub(1),
            b'F' if self.policy.is_active() => {
                // A FunctionCall names its function by OID: nothing to judge it by.
                let reason = "supervise: refused: FunctionCall messages call a function by OID, which the supervisor cannot judge while rules are in force";
                out.decide("refuse", reason, None);
                out.onward
                    .extend_from_slice(&msg::build_query(&refusal_statement(reason)));
                self.expect.push_back(Expect::Simple { named: Vec::new() });
                return Ok(());
            }
            b'F' => self.expect.push_back(Expect::Simple { named: Vec::new() }),
            _ => {}
        }
        out.onward.extend_from_slice(message);
        Ok(())
    }

    pub(super) fn judge(&mut self, sql: &str) -> Judged {
        // One reading of the text serves every question asked of it. Without rules only
        // COPY matters (the reply queue must know about copy-in mode).
        let active = self.policy.is_active();
        if active
            && self
                .policy
                .is_plainly_unconcerned(sql, self.standard_strings)
        {
            return Judged::Text(None, Prepared::default());
        }
        let wants_tokens = active || has_word_ci(sql, "copy");
        let tokens = if wants_tokens {
            match Policy::read(sql, self.standard_strings) {
                Ok(tokens) => tokens,
                Err(Verdict::Refuse(reason) | Verdict::Drop(reason)) if active => {
                    return Judged::Refuse(reason)
                }
                Err(_) => Vec::new(),
            }
        } else {
            Vec::new()
        };
        let copies = policy::copies_from(&tokens);
        let verdict = self.policy.judge_read(sql, &tokens, self.standard_strings);
        if policy::mentions_standard_strings(&tokens) {
            // Until the server reports the new value, statements must read the same
            // under both settings.
            self.standard_strings = None;
        }
        let executes = policy::executed_statements(&tokens);
        let verdict = match self.execute_refusal(&executes) {
            Some(reason) if !matches!(verdict, Verdict::Drop(_)) => Verdict::Refuse(reason),
            _ => verdict,
        };
        let named = |tables: &[String]| -> Vec<usize> {
            (0..self.policy.masked.len())
                .filter(|&i| tables.contains(&self.policy.masked[i].table))
                .collect()
        };
        let (text, named, params) = match verdict {
            Verdict::Forward { masked_tables } => (None, named(&masked_tables), Vec::new()),
            Verdict::Replace { sql, masked_tables } => {
                self.strip_position = true;
                (Some(sql), named(&masked_tables), Vec::new())
            }
            Verdict::WithParams {
                params,
                masked_tables,
            } => (None, named(&masked_tables), params),
            Verdict::Refuse(reason) => return Judged::Refuse(reason),
            Verdict::Drop(reason) => return Judged::Drop(reason),
        };
        Judged::Text(
            text,
            Prepared {
                named,
                params,
                copies,
                executes,
                ..Prepared::default()
            },
        )
    }

    /// Why running `names` by SQL `EXECUTE` is refused, if it is: a protocol-prepared
    /// statement whose parameters are rewritten at Bind (SQL EXECUTE binds them in
    /// the server), or one revoked when the rules were replaced — in any version the
    /// server may hold when the EXECUTE runs (confirmed, or a Parse still unanswered).
    fn execute_refusal(&self, names: &[String]) -> Option<String> {
        names.iter().find_map(|name| {
            let versions = self.statement_versions(name);
            if versions.iter().any(|p| p.revoked.is_some()) {
                Some(format!(
                    "supervise: refused: EXECUTE {name}: it was prepared under rules since replaced, which the new rules judge differently"
                ))
            } else if versions.iter().any(|p| !p.params.is_empty()) {
                Some(format!(
                    "supervise: refused: EXECUTE {name}: its parameters are compared with a rewritten column and are rewritten only when bound through the protocol"
                ))
            } else {
                None
            }
        })
    }

    /// Every version of statement `name` the server may hold once what is in flight
    /// is answered: the confirmed one and each Parse of it still unanswered.
    fn statement_versions(&self, name: &str) -> Vec<Prepared> {
        let mut versions: Vec<Prepared> = self
            .expect
            .iter()
            .filter_map(|e| match e {
                Expect::Parse(n, prepared) if n == name => Some((**prepared).clone()),
                _ => None,
            })
            .collect();
        versions.push(self.statements.get(name).cloned().unwrap_or_default());
        versions
    }

    /// The statement a Bind of `name` binds. A Parse or Close of it in the Bind's own
    /// batch (no Sync since) decides: if it fails, the server skips the Bind too.
    /// Across a Sync, the server may hold either version (a Parse rejected as a
    /// duplicate, a Close skipped after an error): the Bind is judged only if every
    /// version is judged alike (`Err`: the reason to refuse it).
    fn statement(&self, name: &str) -> Result<Prepared, String> {
        let mut in_batch = true;
        let mut versions = Vec::new();
        for expect in self.expect.iter().rev() {
            let version = match expect {
                Expect::Sync | Expect::CopySync | Expect::Simple { .. } => {
                    in_batch = false;
                    continue;
                }
                Expect::Parse(n, prepared) if n == name => (**prepared).clone(),
                Expect::Close(b'S', n) if n == name => Prepared::default(),
                _ => continue,
            };
            if in_batch {
                return Ok(version);
            }
            versions.push(version);
        }
        let confirmed = self.statements.get(name).cloned().unwrap_or_default();
        if versions.is_empty() {
            return Ok(confirmed);
        }
        let alike = |p: &Prepared| {
            p.named == confirmed.named
                && p.params == confirmed.params
                && p.param_types == confirmed.param_types
                && p.copies == confirmed.copies
                && p.executes == confirmed.executes
                && p.revoked.is_none()
        };
        if confirmed.revoked.is_none() && versions.iter().all(alike) {
            return Ok(confirmed);
        }
        Err(format!(
            "supervise: refused: Bind of prepared statement \"{name}\": a Parse or Close of it sent before the last Sync is still unanswered, and the versions the server may hold are judged differently; wait for its answer"
        ))
    }

    /// Holds a client message until it can be judged; `Err` (the reason to end the
    /// session) past `MAX_HELD` bytes.
    pub(super) fn hold(&mut self, message: &[u8]) -> Result<(), String> {
        if self.held_bytes + message.len() > super::MAX_HELD {
            return Err("supervise: the client sent more than 1 MiB while its session could not judge it yet (authentication, the catalog question or replaced rules under way); the session ends".to_owned());
        }
        self.held_bytes += message.len();
        self.held.push_back(message.to_vec());
        Ok(())
    }

    /// Bind: the portal's statement is looked up now (a later re-Parse of the name does
    /// not change what this portal runs), and parameters compared with a rewritten
    /// column get the rewrite's value.
    fn bind(&mut self, body: &[u8], message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        let bind = msg::parse_bind(body).map_err(rule_error)?;
        let prepared = match self.statement(bind.statement) {
            Ok(prepared) => prepared,
            Err(reason) => {
                self.refuse_extended(&reason, out);
                return Ok(());
            }
        };
        if let Some(reason) = self.execute_refusal(&prepared.executes) {
            self.refuse_extended(&reason, out);
            return Ok(());
        }
        if let Some(why) = &prepared.revoked {
            let reason = format!(
                "supervise: refused: prepared statement \"{}\" was prepared under rules since replaced, and the new rules {why}; close it and prepare it again",
                bind.statement
            );
            self.refuse_extended(&reason, out);
            return Ok(());
        }
        self.portals.insert(
            bind.portal.to_owned(),
            Portal {
                named: prepared.named.clone(),
                copy_in: prepared.copies > 0,
                mask: None,
                revoked: false,
            },
        );
        self.expect.push_back(Expect::Bind);
        if prepared.params.is_empty() {
            out.onward.extend_from_slice(message);
            return Ok(());
        }
        let mut values: Vec<Option<Vec<u8>>> =
            bind.params.iter().map(|v| v.map(<[u8]>::to_vec)).collect();
        for &(n, rule) in &prepared.params {
            let index = (n as usize).saturating_sub(1);
            let binary = match bind.param_formats.len() {
                0 => false,
                1 => bind.param_formats[0] == 1,
                _ => bind.param_formats.get(index) == Some(&1),
            };
            let Some(Some(value)) = values.get(index) else {
                continue;
            };
            let type_oid = prepared.param_types.get(index).copied().unwrap_or(0);
            let judged = match binary_meaning(binary, type_oid) {
                Ok(as_binary_integer) => {
                    sql::rewrite_param(&self.policy.rewrites[rule], value, as_binary_integer)
                }
                Err(e) => Err(e),
            };
            match judged {
                Ok(Some(new)) => values[index] = Some(new),
                Ok(None) => {}
                Err(e) => {
                    self.expect.pop_back();
                    self.portals.remove(bind.portal);
                    let reason = format!("supervise: refused: parameter ${n}: {e}");
                    self.refuse_extended(&reason, out);
                    return Ok(());
                }
            }
        }
        self.strip_position = true;
        let params: Vec<Option<&[u8]>> = values.iter().map(|v| v.as_deref()).collect();
        out.onward
            .extend_from_slice(&msg::build_bind(&msg::BindMsg { params, ..bind }));
        Ok(())
    }

    /// Refuses in the extended protocol the way the server refuses a bad message: in
    /// its place the server runs a statement that raises 42501 (so it fails an open
    /// transaction itself), the client's messages up to Sync are discarded, and the
    /// server's ErrorResponse and single ReadyForQuery reach the client. The replies
    /// to the injected Parse and Bind are swallowed. (A Parse swap alone would not do:
    /// the refusal has no parameters, so a driver binding the original's parameters
    /// fails differently.)
    fn refuse_extended(&mut self, reason: &str, out: &mut Output) {
        self.decide(out, "refuse", reason);
        let refusal = refusal_statement(reason);
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

    /// Runs the held client messages now that the catalog answer is in: their bytes
    /// for the server go out as `to_server`, any answer for the client as `to_client`.
    pub(super) fn release_held(
        &mut self,
        to_client: &mut Vec<u8>,
        to_server: &mut Vec<u8>,
    ) -> Result<bool, RuleError> {
        while let Some(message) = self.held.pop_front() {
            self.held_bytes -= message.len();
            let mut out = Output::default();
            self.client_message(&message, &mut out)?;
            to_server.extend_from_slice(&out.onward);
            to_client.extend_from_slice(&out.back);
            if out.close {
                self.held.clear();
                self.held_bytes = 0;
                return Ok(true);
            }
        }
        Ok(false)
    }
}
