//! Mirroring (issue 12) end to end, on real processes: PostgreSQL under
//! profiles/pg-mirror.toml with psql and pgbench as clients, the pcapng files read back
//! by tshark, a NATS JetStream fleet sink (Debian's nats-server), TCP stations that
//! stall, are down at start, or come back.
//!
//! - `e2e.rs`: psql and pgbench traffic in the pcapng sink, decoded by tshark; DataRow
//!   headers only until a marker; an unknown peer captured whole; a runtime change;
//!   the masked column in no byte written; the sink's self-test.
//! - `stations.rs`: a collector that never reads (drops counted, the tenant unhurt), a
//!   collector down at start and then up; NATS JetStream.
//!
//! Needs root, PostgreSQL 15, tshark and nats-server (`.ci/run` installs them; a
//! missing one fails the test naming it). Run with `--test-threads=1` after `cargo
//! build --workspace --all-targets` (`just test`).

mod common;
mod confined;

#[path = "diagnostics/harness.rs"]
mod harness;
#[path = "diagnostics/operator.rs"]
mod operator;
#[path = "diagnostics/pg.rs"]
mod pg;

#[path = "mirror/tools.rs"]
mod tools;

#[path = "mirror/e2e.rs"]
mod e2e;
#[path = "mirror/stations.rs"]
mod stations;
