//! Command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::profile::env::EnvArg;

/// Runs workloads under seccomp user notification and services their socket I/O.
#[derive(Debug, Parser)]
#[command(name = "supervise", version, about)]
pub struct Cli {
    /// Where the node registry (tenants.toml) and default homes live.
    #[arg(long, global = true, env = "SUPERVISE_STATE_DIR", default_value = crate::label::registry::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one tenant in the foreground; exits with its status (128+N if killed by
    /// signal N).
    ///
    /// The tenant starts with a clean environment, not the supervisor's: PATH
    /// (/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin), HOME, USER and
    /// LOGNAME of its account, the supervisor's LANG, LC_*, TZ and TERM if set, then
    /// the profile's tenant.env, then --env. It inherits stdin, stdout and stderr and no
    /// other descriptor.
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
        /// Set a variable in the tenant's environment: NAME=VALUE, or NAME to pass the
        /// supervisor's value (nothing if it has none). Repeatable; overrides the
        /// profile's tenant.env, which overrides the defaults.
        #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]", value_parser = parse_env)]
        env: Vec<EnvArg>,
        /// The tenant's command and arguments (default: the profile's tenant.command).
        #[arg(last = true)]
        command: Vec<OsString>,
    },
    /// Run every profile (*.toml) in DIR, each tenant under its own supervising
    /// process, all sharing the node registry; stops them all on SIGTERM/SIGINT.
    Up {
        /// Directory of profiles; each needs tenant.command.
        dir: PathBuf,
        /// Passed to each tenant's `supervise run`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=16))]
        notify_threads: u8,
    },
    /// List the node's tenants (uid, label, home, addresses), or audit paths and
    /// addresses: which tenant's label they carry and whether that is the right one.
    Label {
        /// Paths, IPv4 addresses or `pid:N` (a process: its uid's tenant and label) to
        /// audit; none: list the registry.
        #[arg(long, num_args = 1..)]
        audit: Vec<PathBuf>,
        /// Audit directories recursively.
        #[arg(long, short)]
        recursive: bool,
    },
    /// Validate a profile and print what it tracks.
    Check {
        /// Tenant profile (TOML).
        profile: PathBuf,
    },
}

fn parse_env(arg: &str) -> Result<EnvArg, String> {
    EnvArg::parse(std::ffi::OsStr::new(arg))
}
