//! Diagnostics (issue 11) end to end, on real processes: DPIDs in the JSON log, the
//! control socket (`supervise ctl`: state, self-tests, levels, metrics) and who may use
//! it, malformed requests, the OpenMetrics exposition (checked with
//! prometheus_client's parser, over the control socket and HTTP), and tenant stderr
//! stamped with the DPID of the connection the writing process holds.
//!
//! - `e2e.rs`: PostgreSQL under profiles/pg-demo.toml: a refused statement's DPID, that
//!   connection's state, PostgreSQL's log line about it, a temporary debug level,
//!   metrics.
//! - `selftests.rs`: every component passes its self-tests; a tenant that closes its
//!   tracked listener fails its stream's.
//! - `access.rs`: a root tenant and a confined tenant are not served by the socket.
//! - `malformed.rs`: bad frames and requests, stalls, a connection flood.
//! - `logs.rs`: the json and human formats, stamped tenant stderr, ctl exit codes.
//!
//! Needs root, PostgreSQL 15 (installed with apt-get when missing), /usr/bin/python3
//! with `python3-prometheus-client`, and curl (`.ci/run` installs both). Every
//! supervisor gets its own state dir (`--state-dir`), and every PostgreSQL its own
//! port (a copy of pg-demo.toml tracking it). Run with `--test-threads=1` after
//! `cargo build --workspace --all-targets` (`just test`). Waiting loops are hang
//! guards, never timing assertions.

mod common;
mod confined;

#[path = "diagnostics/harness.rs"]
mod harness;
#[path = "diagnostics/openmetrics.rs"]
mod openmetrics;
#[path = "diagnostics/operator.rs"]
mod operator;
#[path = "diagnostics/pg.rs"]
mod pg;

#[path = "diagnostics/access.rs"]
mod access;
#[path = "diagnostics/e2e.rs"]
mod e2e;
#[path = "diagnostics/logs.rs"]
mod logs;
#[path = "diagnostics/malformed.rs"]
mod malformed;
#[path = "diagnostics/selftests.rs"]
mod selftests;
