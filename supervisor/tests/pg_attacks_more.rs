//! More attacks on the PostgreSQL rules of `profiles/pg-demo.toml`, beyond
//! `pg_attacks.rs`: a hostile client on the tracked port tries spellings and protocol
//! sequences that suite does not, each held to the same contract —
//!
//! 1. no protected value (an ssn in clear or as hex/digits, a salaries amount or note,
//!    audit_log's row; for rewrite attacks the names of department 20) anywhere in the
//!    bytes the client received;
//! 2. a refusal is an ErrorResponse ERROR 42501 whose message starts `supervise:`, and
//!    the session stays usable and truthful afterwards;
//! 3. no hang: every client call has a timeout, and a statement the server answers in
//!    milliseconds must not keep the supervisor busy for seconds.
//!
//! Most attacks run a control first: the same bytes over the untracked UNIX socket must
//! show the secret, so a clean tracked run means the supervisor stopped the attack.
//! Every attack prints one line, `attack <label>: refused|masked|rewritten|LEAKED …|
//! NOTE …` (plus `VIOLATION …`), and each #[test] fails at the end listing every leak
//! and violation. Lines marked `NOTE` are ordinary statements the rules refuse or break
//! (reported, not failed).
//!
//! Classes (one #[test], one cluster each):
//! - `whole_row_by_attribute_notation_and_table_in_set_operations` — `e.to_jsonb`
//!   (PostgreSQL's attribute notation for `to_jsonb(e)`), `… UNION ALL TABLE
//!   employee`, `EXPLAIN ANALYZE CREATE TABLE … AS EXECUTE`, ordering and grouping by
//!   an output alias of the masked column (oracles);
//! - `parser_disagreement_and_reply_queue_desync` — text that sqlparser reads
//!   differently from the server once `standard_conforming_strings` is off, and
//!   protocol sequences where the server sends no reply to a message the session
//!   engine expects one for (a Query after an extended-protocol error before Sync,
//!   messages the client sends after such an error reached it, a Sync during the
//!   second COPY FROM STDIN of one Query);
//! - `long_statements_do_not_stall_the_supervisor` — statements whose judgement cost
//!   time quadratic in their length before the fix (and, as a note, the linear cost of
//!   a statement near the 1 MiB limit).
//!
//! Layout: [`contract`] (the protected data, the byte scan, the judging) and
//! [`runners`] (the cluster and the three clients) are shared; each class is one
//! module with its #[test]: [`whole_rows`], [`desync`], [`long_statements`].

mod common;
mod pgcluster;

#[path = "pg_attacks_more/contract.rs"]
mod contract;
#[path = "pg_attacks_more/runners.rs"]
mod runners;

#[path = "pg_attacks_more/desync.rs"]
mod desync;
#[path = "pg_attacks_more/long_statements.rs"]
mod long_statements;
#[path = "pg_attacks_more/whole_rows.rs"]
mod whole_rows;
