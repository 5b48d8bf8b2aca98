//! Why a request is refused: a stable code for programs, a message for people.

use std::fmt;

/// A refusal. Nothing of the request was executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable: `malformed`, `too_large`, `bad_recipient`, `unsigned`, `bad_signature`,
    /// `wrong_namespace`, `unknown_key`, `not_permitted`, `key_not_yet_valid`,
    /// `key_expired`, `expired`, `not_yet_valid`, `too_long`, `wrong_node`,
    /// `wrong_instance`, `wrong_tenant`, `replayed`, `nonce_cache_full`,
    /// `sealed_args`.
    pub code: &'static str,
    /// What was wrong, naming the part.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Refusal {}
