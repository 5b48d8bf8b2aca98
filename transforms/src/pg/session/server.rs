//! Server → client messages: matched with the request they answer, masked, or
//! swallowed when they answer the supervisor's own request.

use super::{rule_error, Expect, PgSession, Phase};
use crate::pg::message as msg;
use crate::pg::policy::is_safe_encoding;
use crate::{Output, RuleError};

/// The type OIDs of a ParameterDescription (Int16 n, Int32[n]); empty when malformed.
fn parameter_types(body: &[u8]) -> Vec<u32> {
    let Some((count, rest)) = body.split_first_chunk::<2>() else {
        return Vec::new();
    };
    let count = u16::from_be_bytes(*count) as usize;
    let types: Vec<u32> = rest
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if types.len() == count {
        types
    } else {
        Vec::new()
    }
}

impl PgSession {
    pub(super) fn server_message(
        &mut self,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        let typed = msg::typed(message).map_err(rule_error)?;
        if typed.tag == b'S' {
            if let Some(reason) = self.parameter_status(typed.body)? {
                // The client's half is `onward` here, the server's `back`.
                Self::drop_session(&reason, &mut out.onward, &mut out.back);
                out.close = true;
                return Ok(());
            }
        }
        match self.expect.front() {
            Some(Expect::Swallow(tag)) if *tag == typed.tag => {
                self.expect.pop_front();
                return Ok(());
            }
            // Parameter status and notifications are the session's, whoever asked.
            Some(Expect::Learn) if !matches!(typed.tag, b'S' | b'A') => {
                if self.learn_reply(typed.tag, typed.body)? {
                    self.after_learning(out)?;
                }
                return Ok(());
            }
            Some(Expect::HiddenDescribe(_)) if matches!(typed.tag, b'T' | b'n') => {
                let Some(Expect::HiddenDescribe(portal)) = self.expect.pop_front() else {
                    // The front was checked above; never panic in the supervisor.
                    return Err(RuleError {
                        rule: "postgres",
                        reason: "reply queue changed while reading a Describe reply".into(),
                    });
                };
                let mask = if typed.tag == b'T' {
                    let fields = msg::parse_row_description(typed.body).map_err(rule_error)?;
                    let named = self
                        .portals
                        .get(&portal)
                        .map(|p| p.named.clone())
                        .unwrap_or_default();
                    let columns = self.columns_for(&fields, &named);
                    let formats: Vec<i16> = fields.iter().map(|f| f.format).collect();
                    Self::row_mask(&columns, &formats)
                } else {
                    None
                };
                self.portals.entry(portal).or_default().mask = Some(mask);
                return Ok(());
            }
            _ => {}
        }
        match typed.tag {
            b'T' => {
                let fields = msg::parse_row_description(typed.body).map_err(rule_error)?;
                match self.expect.front() {
                    Some(Expect::DescribeStatement(_) | Expect::DescribePortal) => {
                        // The client's own Describe: its shape is forwarded, but rows
                        // are masked by the supervisor's own knowledge (see `mask`).
                        self.expect.pop_front();
                    }
                    Some(Expect::Simple { named }) => {
                        let columns = self.columns_for(&fields, &named.clone());
                        let formats: Vec<i16> = fields.iter().map(|f| f.format).collect();
                        self.current = Self::row_mask(&columns, &formats);
                    }
                    _ => {}
                }
            }
            b'D' => {
                let row = match self.expect.front() {
                    Some(Expect::Execute(portal)) => {
                        match self.portals.get(portal).and_then(|p| p.mask.as_ref()) {
                            Some(Some(mask)) => Some(self.mask_row(typed.body, mask)),
                            Some(None) => None,
                            // Rows of a shape the supervisor did not learn: withheld.
                            None if !self.policy.masked.is_empty() => {
                                Some(Self::withhold_row(typed.body))
                            }
                            None => None,
                        }
                    }
                    _ => self
                        .current
                        .as_ref()
                        .map(|mask| self.mask_row(typed.body, mask)),
                };
                if let Some(row) = row {
                    out.onward.extend_from_slice(&row.map_err(rule_error)?);
                    return Ok(());
                }
            }
            b'G' => self.server_in_copy = true,
            b'C' | b'I' | b's' => {
                self.end_copy();
                self.current = None;
                if matches!(self.expect.front(), Some(Expect::Execute(_))) {
                    self.expect.pop_front();
                }
            }
            b't' => {
                if let Some(Expect::DescribeStatement(name)) = self.expect.front() {
                    let types = parameter_types(typed.body);
                    if let Some(prepared) = self.statements.get_mut(name) {
                        prepared.param_types = types;
                    }
                }
            }
            b'1' if matches!(self.expect.front(), Some(Expect::Parse(..))) => {
                if let Some(Expect::Parse(name, prepared)) = self.expect.pop_front() {
                    self.statements.insert(name, *prepared);
                }
            }
            b'2' if matches!(self.expect.front(), Some(Expect::Bind)) => {
                self.expect.pop_front();
            }
            b'3' if matches!(self.expect.front(), Some(Expect::Close(..))) => {
                match self.expect.pop_front() {
                    Some(Expect::Close(b'S', name)) => {
                        self.statements.remove(&name);
                    }
                    Some(Expect::Close(_, name)) => {
                        self.portals.remove(&name);
                    }
                    _ => {}
                }
            }
            b'n' if matches!(
                self.expect.front(),
                Some(Expect::DescribeStatement(_) | Expect::DescribePortal)
            ) =>
            {
                self.expect.pop_front();
            }
            b'N' if self.answers_masked_statement() => {
                return self.forward_fields(b'N', typed.body, true, out);
            }
            b'E' => {
                self.current = None;
                let hide_detail = self.answers_masked_statement();
                if !self.end_copy() {
                    // The COPY failed before copy-in mode: the client stops too.
                    self.client_copies = 0;
                }
                self.skip_after_error();
                if self.strip_position || hide_detail {
                    return self.forward_fields(b'E', typed.body, hide_detail, out);
                }
            }
            b'Z' => {
                self.status = msg::parse_ready(typed.body).map_err(rule_error)?;
                self.current = None;
                self.strip_position = false;
                let front = self.expect.pop_front();
                if !matches!(
                    front,
                    Some(Expect::Sync | Expect::CopySync | Expect::Simple { .. } | Expect::Startup)
                ) {
                    // Out of step: a ReadyForQuery nothing asked for. Put back what
                    // was there and end the session rather than guess.
                    return Err(RuleError {
                        rule: "postgres",
                        reason: format!(
                            "ReadyForQuery answered no pending request (expected {front:?})"
                        ),
                    });
                }
                if matches!(front, Some(Expect::Startup)) {
                    out.onward.extend_from_slice(message);
                    self.after_startup(out)?;
                    return Ok(());
                }
                if self.pending.is_some() {
                    out.onward.extend_from_slice(message);
                    self.swap_after(out);
                    return Ok(());
                }
            }
            _ => {}
        }
        out.onward.extend_from_slice(message);
        Ok(())
    }

    /// Whether the reply being read answers a statement that names a masked table: its
    /// errors' DETAIL can quote the masked value ("Failing row contains (…)", "Key
    /// (ssn)=(…) already exists").
    fn answers_masked_statement(&self) -> bool {
        match self.expect.front() {
            Some(Expect::Simple { named }) => !named.is_empty(),
            Some(Expect::Execute(portal) | Expect::HiddenDescribe(portal)) => self
                .portals
                .get(portal)
                .is_some_and(|p| !p.named.is_empty()),
            _ => false,
        }
    }

    /// Forwards an ErrorResponse or NoticeResponse without the position (after a
    /// rewrite it points into text the client never sent) and, when `hide_detail`,
    /// with its DETAIL replaced (it may quote a masked value).
    fn forward_fields(
        &self,
        tag: u8,
        body: &[u8],
        hide_detail: bool,
        out: &mut Output,
    ) -> Result<(), RuleError> {
        let fields = msg::parse_fields(body).map_err(rule_error)?;
        let kept: Vec<(u8, &str)> = fields
            .into_iter()
            .filter(|(code, _)| !(self.strip_position && *code == b'P'))
            .map(|(code, value)| match code {
                b'D' if hide_detail => (
                    code,
                    "supervise: detail withheld: it may quote a masked column's value",
                ),
                _ => (code, value),
            })
            .collect();
        out.onward.extend_from_slice(&msg::build_fields(tag, &kept));
        Ok(())
    }

    /// An ErrorResponse: a simple Query's error ends that Query (its ReadyForQuery
    /// follows), the startup's ends the startup; an extended-protocol error makes the
    /// server discard every message up to the next Sync — simple Queries sent in
    /// between included — so their entries go, and if no Sync is pending yet the
    /// client's next messages up to one expect no reply either.
    fn skip_after_error(&mut self) {
        if matches!(
            self.expect.front(),
            None | Some(Expect::Simple { .. } | Expect::Startup | Expect::Sync | Expect::CopySync)
        ) {
            return;
        }
        while let Some(e) = self.expect.front() {
            if matches!(e, Expect::Sync | Expect::CopySync) {
                return;
            }
            self.expect.pop_front();
        }
        self.server_skips_to_sync = true;
    }

    /// A copy-in ended (CommandComplete or ErrorResponse): the Syncs the client sent
    /// during it were ignored by the server. Returns whether one was in progress.
    fn end_copy(&mut self) -> bool {
        if !self.server_in_copy {
            return false;
        }
        self.server_in_copy = false;
        self.expect.retain(|e| !matches!(e, Expect::CopySync));
        true
    }

    /// Authentication is over: ask the catalog question, or serve the client at once
    /// when no rule is in force.
    fn after_startup(&mut self, out: &mut Output) -> Result<(), RuleError> {
        if let Some(reason) = self.install_pending() {
            // Rules replaced during authentication refuse this connection.
            out.decide("refuse", reason.as_str(), None);
            Self::drop_session(&reason, &mut out.onward, &mut out.back);
            out.close = true;
            return Ok(());
        }
        if self.policy.is_active() {
            self.phase = Phase::Learning;
            out.back
                .extend_from_slice(&msg::build_query(&self.learn_query(false)));
            self.expect.push_back(Expect::Learn);
            return Ok(());
        }
        self.phase = Phase::Ready;
        if self.release_held(&mut out.onward, &mut out.back)? {
            out.close = true;
        }
        Ok(())
    }

    /// Why the rules in force cannot be kept under the server's `client_encoding`, if
    /// they cannot.
    pub(super) fn unsafe_encoding(&self) -> Option<String> {
        (self.policy.is_active() && !is_safe_encoding(&self.client_encoding)).then(|| {
            format!(
                "client_encoding {} lets multibyte characters hide quotes from the supervisor's reading of statements",
                self.client_encoding
            )
        })
    }

    /// ParameterStatus: follows the settings that change how statements are read; an
    /// unsafe client encoding ends the session (its reason).
    fn parameter_status(&mut self, body: &[u8]) -> Result<Option<String>, RuleError> {
        let mut parts = body.split(|&b| b == 0);
        let name = String::from_utf8_lossy(parts.next().unwrap_or_default()).to_ascii_lowercase();
        let value = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        match name.as_str() {
            "standard_conforming_strings" => self.standard_strings = Some(value == "on"),
            "client_encoding" => {
                self.client_encoding = value;
                if let Some(why) = self.unsafe_encoding() {
                    return Ok(Some(format!("supervise: session terminated: {why}")));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}
