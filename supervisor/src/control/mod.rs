//! The control socket: one unix socket per supervising process,
//! `<state dir>/ctl/<tenant>.sock`, through which `supervise ctl` (or any program
//! speaking [`protocol`]) calls back into a component by its DPID.
//!
//! Root only: the directory is 0700, the socket 0600, and every connection's
//! `SO_PEERCRED` must show uid 0 and a process outside the tenant's PID namespace (a
//! tenant running as root still cannot reach it). Requests are read and answered on the
//! control threads; what needs the engine's state is asked of the notification loop
//! through a [`Backend`], so a slow or hostile client never holds the loop.

pub mod bridge;
pub mod client;
pub mod keystore;
pub mod metrics_http;
pub mod operations;
pub mod protocol;
pub mod request;
pub mod server;
pub mod signed;

use std::path::{Path, PathBuf};

pub use protocol::{Failure, Op, Privileged, Request, Response};
pub use server::Server;

/// `<state dir>/ctl`: the control sockets of every tenant sharing a state dir.
pub fn socket_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ctl")
}

/// `<state dir>/ctl/<tenant>.sock`: where `tenant`'s supervising process answers.
pub fn socket_path(state_dir: &Path, tenant: &str) -> PathBuf {
    socket_dir(state_dir).join(format!("{tenant}.sock"))
}

/// What answers requests (the notification loop, or a test double in unit tests).
pub trait Backend: Send + Sync + 'static {
    /// Serves one operation. Called on a control thread; may block briefly.
    fn serve(&self, op: Op) -> Result<serde_json::Value, Failure>;

    /// Runs an operation a signed request was accepted for (only the keyring calls
    /// this, after checking the request).
    fn privileged(&self, op: Privileged) -> Result<serde_json::Value, Failure> {
        let _ = op;
        Err(Failure::new(
            "not_offered",
            "privileged operations are not served here",
        ))
    }
}
