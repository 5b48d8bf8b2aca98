//! The provider interface every component kind implements (seed 003): `state`,
//! `config`, `selftests`, `selftest NAME`. Views over the loop's state implement it
//! (`provide`, `provide_mirror`).

#![forbid(unsafe_code)]

use serde_json::Value;

/// What every component kind implements.
pub trait Provider {
    /// Its state now.
    fn state(&mut self) -> Value;
    /// Its effective configuration; secrets are left out by structure (environment
    /// values are never shown, whatever their names).
    fn config(&self) -> Value;
    /// Its self-tests' names.
    fn selftests(&self) -> Vec<&'static str>;
    /// Runs one; `None`: no such test.
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>>;
}
