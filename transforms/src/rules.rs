//! Protocol-agnostic rules, used by the engine's tests and demos: they change message
//! sizes, which is what exercises the spool.

use crate::{Direction, Output, Rule, RuleError};

/// ASCII-uppercases the message (same length).
#[derive(Debug, Default, Clone)]
pub struct UppercaseRule;

impl Rule for UppercaseRule {
    fn apply(&mut self, _: Direction, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        out.onward
            .extend(message.iter().map(u8::to_ascii_uppercase));
        Ok(())
    }

    fn name(&self) -> &'static str {
        "uppercase"
    }
}

/// Emits `prefix + message + suffix`: makes every message longer, so a split message
/// shows up as several wrapped pieces.
#[derive(Debug, Clone)]
pub struct WrapRule {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

impl WrapRule {
    /// A rule wrapping each message in `prefix` and `suffix`.
    pub fn new(prefix: Vec<u8>, suffix: Vec<u8>) -> WrapRule {
        WrapRule { prefix, suffix }
    }
}

impl Rule for WrapRule {
    fn apply(&mut self, _: Direction, message: &[u8], out: &mut Output) -> Result<(), RuleError> {
        out.onward.extend_from_slice(&self.prefix);
        out.onward.extend_from_slice(message);
        out.onward.extend_from_slice(&self.suffix);
        Ok(())
    }

    fn name(&self) -> &'static str {
        "wrap"
    }
}

/// Applies `inner` to messages travelling in one direction only; the others pass.
#[derive(Debug)]
pub struct OneDirection {
    direction: Direction,
    inner: Box<dyn Rule>,
}

impl OneDirection {
    /// `inner`, restricted to `direction`.
    pub fn new(direction: Direction, inner: Box<dyn Rule>) -> OneDirection {
        OneDirection { direction, inner }
    }
}

impl Rule for OneDirection {
    fn apply(
        &mut self,
        direction: Direction,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        if direction == self.direction {
            self.inner.apply(direction, message, out)
        } else {
            out.onward.extend_from_slice(message);
            Ok(())
        }
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        self.inner.state()
    }
}
