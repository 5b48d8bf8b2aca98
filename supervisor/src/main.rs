//! `supervise`: runs tenants under a seccomp filter whose interesting syscalls the
//! supervisor services itself. See the README and DESIGN for the architecture.

mod cli;
mod label;
mod launch;
mod notify;
mod profile;
mod stream;
mod sys;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use profile::Profile;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let code = match cli.command {
        Command::Run {
            profile,
            continue_all,
            sync_wakeup,
            notify_threads,
            command,
        } => {
            let options = RunOptions {
                continue_all,
                sync_wakeup,
                notify_threads: notify_threads.into(),
            };
            run(profile, options, command)
        }
        Command::Check { profile } => check(&profile),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SUPERVISE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .init();
}

/// Prints an error with its whole source chain.
fn report(error: &dyn std::error::Error) {
    let mut message = format!("supervise: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
}

fn load(profile: Option<&std::path::Path>) -> Result<Profile, profile::ProfileError> {
    match profile {
        Some(path) => Profile::load(path),
        None => Ok(Profile::embedded_default()),
    }
}

/// Engine options from the command line.
struct RunOptions {
    continue_all: bool,
    sync_wakeup: bool,
    notify_threads: usize,
}

fn run(
    profile: Option<std::path::PathBuf>,
    options: RunOptions,
    command: Vec<std::ffi::OsString>,
) -> i32 {
    // Validate everything before any side effect.
    let profile = match load(profile.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return 2;
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("supervise: must run as root (it creates a PID namespace, drops the tenant's credentials and reads tenant memory)");
        return 2;
    }
    let original_mask = match notify::block_handled_signals() {
        Ok(mask) => mask,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    let prepared = match launch::Prepared::new(&profile, &command, original_mask) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return 127;
        }
    };
    let launched = match launch::launch(&prepared, options.sync_wakeup) {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    tracing::info!(target: "supervise", tenant = %profile.tenant, pid = launched.tenant_pid, profile = %profile.source, streams = profile.streams.len(), "tenant started under seccomp user notification");
    let supervisor = match notify::Supervisor::new(profile, launched, options.continue_all) {
        Ok(s) => s,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    supervisor.run(options.notify_threads)
}

fn check(path: &std::path::Path) -> i32 {
    match Profile::load(path) {
        Ok(p) => {
            println!(
                "{}: ok: tenant {:?}, {} stream(s)",
                path.display(),
                p.tenant,
                p.streams.len()
            );
            for s in &p.streams {
                println!(
                    "  stream {:?}: {:?}, framer {:?}, max_message {}",
                    s.name, s.selector, s.framer, s.max_message
                );
            }
            0
        }
        Err(e) => {
            report(&e);
            2
        }
    }
}
