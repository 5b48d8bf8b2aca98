//! The keyring component's provider (`TENANT/@keyring`): its state, configuration and
//! self-test come from the keyring itself, which lives on the control threads.

#![forbid(unsafe_code)]

use std::sync::Arc;

use serde_json::Value;

use super::provider::Provider;
use crate::control::signed::Keyring;

/// The keyring component's provider.
pub(super) struct KeyringView(pub Arc<Keyring>);

impl Provider for KeyringView {
    fn state(&mut self) -> Value {
        self.0.state()
    }
    fn config(&self) -> Value {
        self.0.config()
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["keyring"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "keyring").then(|| self.0.selftest())
    }
}
