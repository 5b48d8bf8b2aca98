//! PostgreSQL frontend/backend protocol v3: framing, message parsing and building, SQL
//! analysis, and the rule engine that rewrites, masks, denies and drops on whole
//! messages.

pub mod framer;
pub mod lex;
pub mod message;
pub mod policy;
pub mod selftest;
pub mod session;
pub mod sql;
