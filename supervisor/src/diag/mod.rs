//! Diagnostics: what kind of component emitted an event, and which one.

// Kinds not yet emitted (stream, rule, control, output) and the lookup arrive with the
// DPID formatter; the vocabulary is complete now so targets never change again.
#[allow(dead_code)]
mod kind;

pub use kind::Kind;
