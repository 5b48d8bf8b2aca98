//! The interface every kind of listening station implements. A station runs on its own
//! thread (see `sink::Sink`), so it may block on its file or socket: the tenant never
//! waits for it, the bounded queue in front of it drops instead.

use std::io;

use super::super::record::Record;

/// A listening station: where mirrored records are written.
pub trait Station: Send + std::fmt::Debug {
    /// The kind, for state and metrics (`pcapng`, `tcp`, `jsonl`, `nats`).
    fn kind(&self) -> &'static str;
    /// Opens (or reopens after an error) its file or connection. Called on the
    /// station's thread before the first write and after any failed one; an error
    /// here is retried with backoff while records queue, then drop.
    fn connect(&mut self) -> io::Result<()>;
    /// Writes one record. An error marks the station down: the record counts as
    /// dropped, `connect` is tried again.
    fn write(&mut self, record: &Record) -> io::Result<()>;
    /// Writes one diagnostics line of `tenant` (only a fleet station keeps them; the
    /// others ignore it).
    fn diagnostic(&mut self, tenant: &str, line: &[u8]) -> io::Result<()> {
        let _ = (tenant, line);
        Ok(())
    }
    /// Pushes buffered bytes out (called when the queue runs empty, and at the end).
    fn flush(&mut self) -> io::Result<()>;
    /// Its effective configuration (no secrets).
    fn config(&self) -> serde_json::Value;
    /// Where it writes now (the current file, the connected address), for state.
    fn state(&self) -> serde_json::Value;
}
