//! The adversarial end-to-end suite of issue 8 (item 7): a hostile client on the
//! tracked port of `profiles/pg-demo.toml` tries every class of attack the issue lists
//! ("Why"), several variants each, with three kinds of client — psql (simple
//! protocol), the `postgres` crate (extended protocol, binary results) and a raw wire
//! client that builds every message by hand (`pgcluster::wire`).
//!
//! The contract each attack is held to (issue 8, DESIGN.md "Rules fail closed"):
//!
//! 1. no protected value appears ANYWHERE in the raw bytes the client received (psql:
//!    stdout + stderr; raw client: every byte read; crate: every value's raw bytes,
//!    error fields and notices). Protected: every ssn (clear, reversed, hex of its
//!    bytes as bytea output shows them, base64, digits only, sha256), every salaries
//!    amount and note, audit_log's rows, and for rewrite attacks the names of
//!    department 20;
//! 2. a statement the engine cannot prove safe is refused — ErrorResponse severity
//!    ERROR, SQLSTATE 42501, message starting `supervise:` — and the session stays
//!    usable (a following `SELECT` answers on the same connection; inside BEGIN the
//!    refusal fails the transaction, so COMMIT reports ROLLBACK). Where the attack's
//!    result is a plain column, a masked value (XXX-XX-XXXX) is accepted instead;
//! 3. drop-session on audit_log: FATAL 42501, the connection closed, and nothing the
//!    session did to audit_log committed (checked over the UNIX socket);
//! 4. a replication connection is refused with a FATAL naming replication, and no data
//!    file content reaches the client;
//! 5. (pg_ordinary.rs) statements no rule concerns pass unchanged.
//!
//! Most attacks also run a *control*: the same bytes over the untracked UNIX socket
//! must show the secret (or the oracle, or the replication answer), so a tracked run
//! without the secret really means the supervisor stopped it and not that the attack
//! was broken. A broken control fails the test too.
//!
//! Every attack prints one line, `attack <label>: refused|masked|rewritten|dropped|
//! LEAKED <what>` (plus `VIOLATION …` when the contract is broken without a leak), and
//! each #[test] fails at the end listing every leak and violation, so one run shows all
//! of them. Each #[test] starts one cluster (`pgcluster::Cluster`, its own free port).
//!
//! Layout: [`contract`] (the protected data, the byte scan, the judging) and
//! [`runners`] (the cluster and the three clients) are shared; each attack class is
//! one module with its #[test]: [`extended`], [`startup`], [`copy_names`],
//! [`replication`], [`derived`], [`functions`], [`rewrite`], [`expressions`].

mod common;
mod pgcluster;

#[path = "pg_attacks/contract.rs"]
mod contract;
#[path = "pg_attacks/runners.rs"]
mod runners;

#[path = "pg_attacks/copy_names.rs"]
mod copy_names;
#[path = "pg_attacks/derived.rs"]
mod derived;
#[path = "pg_attacks/expressions.rs"]
mod expressions;
#[path = "pg_attacks/extended.rs"]
mod extended;
#[path = "pg_attacks/functions.rs"]
mod functions;
#[path = "pg_attacks/replication.rs"]
mod replication;
#[path = "pg_attacks/rewrite.rs"]
mod rewrite;
#[path = "pg_attacks/startup.rs"]
mod startup;
