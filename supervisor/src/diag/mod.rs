//! Diagnostics: what kind of component emitted an event ([`Kind`]), which one
//! ([`Dpid`]), how it is written ([`log`]) and filtered ([`levels`]).
//!
//! Everything here observes; nothing decides what the tenant gets. Output goes through
//! bounded writers ([`writer`]) so a slow terminal never stalls the notification loop.

pub mod dpid;
pub mod events;
mod kind;
pub mod levels;
pub mod log;
pub mod writer;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use dpid::Dpid;
pub use kind::Kind;
pub use log::Format;

use levels::{Directives, Levels};
use writer::LineWriter;

/// The process's diagnostics, set up once by [`init`].
#[derive(Debug)]
pub struct Diag {
    /// Filter and overrides.
    pub levels: Arc<Levels>,
    /// The log's output (stderr).
    pub log: Arc<LineWriter>,
    /// The tenant's stamped stdout (`--tenant-output all`), once started.
    pub stdout: OnceLock<Arc<LineWriter>>,
    /// The tenant this process supervises, once known.
    pub tenant: Arc<OnceLock<String>>,
    /// The format chosen.
    pub format: Format,
    /// Why `SUPERVISE_LOG` was not understood, until it is reported: once the tenant is
    /// known (so the warning is stamped like every line of a run), or at shutdown for
    /// commands that supervise nothing.
    filter_problem: std::sync::Mutex<Option<String>>,
}

static DIAG: OnceLock<Diag> = OnceLock::new();

/// Installs the formatter: `SUPERVISE_LOG` for the filter (an invalid one is reported
/// and `info` used), `format` for the lines, stderr for the output.
pub fn init(format: Format) {
    let (directives, problem) = match std::env::var("SUPERVISE_LOG") {
        Ok(text) => match Directives::parse(&text) {
            Ok(d) => (d, None),
            Err(e) => (Directives::parse("info").expect("info parses"), Some(e)),
        },
        Err(_) => (Directives::parse("info").expect("info parses"), None),
    };
    let levels = Arc::new(Levels::new(directives));
    let notice: writer::DropNotice = |name, n| {
        format!("supervise: {n} log lines dropped ({name} was not keeping up)\n").into_bytes()
    };
    let log = match LineWriter::start("stderr", Box::new(std::io::stderr()), notice) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            eprintln!("supervise: cannot start the log writer thread: {e}");
            return;
        }
    };
    let tenant = Arc::new(OnceLock::new());
    let layer = log::DiagLayer::new(format, levels.clone(), log.clone(), tenant.clone());
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    let reaper = levels.clone();
    let _ = crate::sys::spawn_without_signals("level-reaper", move || revert_expired(&reaper));
    let _ = DIAG.set(Diag {
        stdout: OnceLock::new(),
        levels,
        log,
        tenant,
        format,
        filter_problem: std::sync::Mutex::new(problem),
    });
}

/// Reports an unreadable `SUPERVISE_LOG`, once.
fn report_filter_problem(diag: &Diag) {
    let problem = diag
        .filter_problem
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(problem) = problem {
        tracing::warn!(target: Kind::Supervisor.target(), %problem, "SUPERVISE_LOG not understood; using info");
    }
}

/// Reverts `ctl level ... --for D` overrides when their time is up, and says so.
fn revert_expired(levels: &Levels) {
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (expired, _) = levels.expire();
        for o in expired {
            tracing::info!(target: Kind::Control.target(), target_dpid = %o.dpid, level = %o.level, "log level override ended; back to the configured level");
        }
    }
}

/// The process's diagnostics (`None` before [`init`]).
pub fn get() -> Option<&'static Diag> {
    DIAG.get()
}

/// Records which tenant this process supervises: singleton DPIDs derive from it.
pub fn set_tenant(name: &str) {
    if let Some(diag) = DIAG.get() {
        let _ = diag.tenant.set(name.to_owned());
        report_filter_problem(diag);
    }
}

/// Starts the writer of the tenant's stamped stdout (the supervisor's stdout).
pub fn start_stdout() {
    let Some(diag) = DIAG.get() else {
        return;
    };
    let notice: writer::DropNotice = |name, n| {
        format!("supervise: {n} tenant output lines dropped ({name} was not keeping up)\n")
            .into_bytes()
    };
    match LineWriter::start("stdout", Box::new(std::io::stdout()), notice) {
        Ok(w) => {
            let _ = diag.stdout.set(Arc::new(w));
        }
        Err(e) => eprintln!("supervise: cannot start the stdout writer thread: {e}"),
    }
}

/// Writes what is queued (at most a second's wait for a blocked output).
pub fn shutdown() {
    if let Some(diag) = DIAG.get() {
        report_filter_problem(diag);
        if let Some(out) = diag.stdout.get() {
            out.close(Duration::from_secs(1));
        }
        diag.log.close(Duration::from_secs(1));
    }
}

/// The operations a component of `kind` offers over the control socket (the log line
/// says so, so a console knows what it can call back).
pub fn ops_of(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Output => &["state", "config", "level"],
        _ => &["state", "config", "selftests", "selftest", "level"],
    }
}
