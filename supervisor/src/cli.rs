//! Command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Runs workloads under seccomp user notification and services their socket I/O.
#[derive(Debug, Parser)]
#[command(name = "supervise", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one tenant in the foreground; exits with its status (128+N if killed by
    /// signal N).
    Run {
        /// Tenant profile (TOML). Without it, the embedded default: track nothing.
        #[arg(long, short)]
        profile: Option<PathBuf>,
        /// Trap the same syscalls but answer every notification CONTINUE without
        /// looking at it. Measures the kernel's floor; tracks and enforces nothing.
        #[arg(long)]
        continue_all: bool,
        /// Ask the kernel for synchronous wake-ups (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP):
        /// lower latency for one busy connection, lower throughput for many.
        #[arg(long)]
        sync_wakeup: bool,
        /// Threads that receive notifications (each blocks in RECV and handles what it
        /// gets under the state lock; the main thread handles sockets, signals and
        /// timers). 0 = everything on the main thread.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=16))]
        notify_threads: u8,
        /// The tenant's command and arguments.
        #[arg(required = true, last = true)]
        command: Vec<OsString>,
    },
    /// Validate a profile and print what it tracks.
    Check {
        /// Tenant profile (TOML).
        profile: PathBuf,
    },
}
