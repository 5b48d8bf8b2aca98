//! Command line.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::profile::env::EnvArg;

/// Runs workloads under seccomp user notification and services their socket I/O.
#[derive(Debug, Parser)]
#[command(name = "supervise", version, about)]
pub struct Cli {
    /// Where the node registry (tenants.toml) and default homes live.
    #[arg(long, global = true, env = "SUPERVISE_STATE_DIR", default_value = crate::label::registry::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// How log lines look: `human` (TIME LEVEL DPID: message key=value) or `json` (one
    /// object per line: time, level, dpid, kind, tenant, message, fields, ops).
    #[arg(
        long,
        global = true,
        env = "SUPERVISE_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    pub log_format: crate::diag::Format,
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
        /// Pin notification thread i to the i-th CPU the supervisor may run on. With
        /// --notify-threads equal to the CPU count and --sync-wakeup, the thread woken
        /// for a call is the one on the caller's CPU.
        #[arg(long)]
        pin_notify_threads: bool,
        /// Set a variable in the tenant's environment: NAME=VALUE, or NAME to pass the
        /// supervisor's value (nothing if it has none). Repeatable; overrides the
        /// profile's tenant.env, which overrides the defaults.
        #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]", value_parser = parse_env)]
        env: Vec<EnvArg>,
        /// Which of the tenant's outputs come out stamped, as whole lines with the DPID
        /// of the connection the writing process serves (log records of kind `output`):
        /// `stderr` (its log; stdout passes through untouched, byte for byte), `all`
        /// (stdout too, stamped on the supervisor's stdout), or `raw` (neither).
        #[arg(long, value_enum, default_value = "stderr")]
        tenant_output: TenantOutput,
        /// Also serve OpenMetrics text over HTTP on this address (GET /metrics), e.g.
        /// 127.0.0.1:9464. The same text as `supervise ctl metrics`.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// The keys trusted to sign privileged requests, and for what (an OpenSSH
        /// allowed_signers file with permit="…" and tenants="…"; see the README).
        /// Default: <state dir>/allowed_signers. Read afresh for every request.
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
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
    /// Ask a running supervisor about its components, or set their log levels, through
    /// its control socket (<state dir>/ctl/<tenant>.sock; root only).
    ///
    /// Components are named by DPID: TENANT, TENANT/@KIND (e.g. pg-demo/@label),
    /// TENANT/STREAM, TENANT/STREAM/cN (connection N), TENANT/STREAM/rN (rule N). The
    /// first segment picks the tenant's socket. Exit status: 0 ok, 1 the supervisor
    /// answered an error, 2 usage, 3 the socket cannot be reached.
    Ctl(CtlArgs),
    /// Build, sign (with ssh-keygen -Y sign) and send a privileged request, or send
    /// one signed elsewhere; the result comes back sealed with age to the recipient
    /// named in the request and signed by the node.
    ///
    /// OP is dump-spool, dump-memory, set-capture, set-rules, level or stop; TARGET a
    /// DPID (its first segment picks the tenant). ARGS are NAME=VALUE, or positional:
    /// dump-memory PID ADDR LEN, set-capture CAPTURE, level LEVEL, set-rules @FILE.
    /// Exit status: 0 ok, 1 refused or failed, 2 usage, 3 unreachable.
    Request(RequestArgs),
}

/// `supervise request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The signing key for ssh-keygen -Y sign -f: a private key file, or a public key
    /// (or certificate, KEY-cert.pub) whose private key is in ssh-agent.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Who can read the result: an age recipient (age1…), an ssh-ed25519 public key,
    /// or a file holding one (e.g. ~/.ssh/id_ed25519.pub).
    #[arg(long, value_name = "RECIPIENT")]
    pub recipient: Option<String>,
    /// How long the request stays valid (at most the node's limit, 15m by default).
    #[arg(long = "valid-for", value_name = "DURATION", default_value = "5m")]
    pub valid_for: String,
    /// Bind the request to this run of the tenant's supervisor only.
    #[arg(long)]
    pub this_run: bool,
    /// Seal the arguments to the node's age recipient, so nobody on the way reads them.
    #[arg(long)]
    pub seal_args: bool,
    /// Only write the unsigned request to stdout (sign it elsewhere, then --send it).
    #[arg(long, conflicts_with_all = ["send", "key"])]
    pub prepare: bool,
    /// Send a request signed elsewhere: its file (the signature is FILE.sig, or
    /// --signature).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "prepare"])]
    pub send: Option<PathBuf>,
    /// With --send: the signature file.
    #[arg(long, value_name = "FILE", requires = "send")]
    pub signature: Option<PathBuf>,
    /// Write the sealed result here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the node's signature over the sealed result here (default: OUT.sig with
    /// --out).
    #[arg(long, value_name = "FILE")]
    pub signature_out: Option<PathBuf>,
    /// The operation (not with --send).
    #[arg(required_unless_present = "send")]
    pub op: Option<String>,
    /// The target DPID.
    #[arg(required_unless_present = "send")]
    pub target: Option<String>,
    /// Arguments.
    pub args: Vec<String>,
}

/// `supervise ctl`.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// What to ask.
    #[command(subcommand)]
    pub op: CtlCommand,
    /// Print the result as the supervisor sent it (one line of JSON) instead of a
    /// table, pretty JSON or metrics text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Control operations.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Every component (DPID, kind, the operations it offers) of every tenant served
    /// with this state dir, or of one.
    List {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// A component's state.
    State {
        /// The component's DPID.
        dpid: String,
    },
    /// A component's effective configuration (secrets left out).
    Config {
        /// The component's DPID.
        dpid: String,
    },
    /// The names of a component's self-tests.
    Selftests {
        /// The component's DPID.
        dpid: String,
    },
    /// Run a component's self-test NAME, or all of them.
    Selftest {
        /// The component's DPID.
        dpid: String,
        /// The self-test (see `selftests`); all when absent.
        name: Option<String>,
    },
    /// This node's public facts for signed requests: its id, host key, age recipient,
    /// this run's instance id, and the allowed_signers line that checks its results.
    Node {
        /// The tenant whose supervisor to ask.
        tenant: String,
    },
    /// Metrics in OpenMetrics text, of every tenant served with this state dir (one
    /// exposition) or of one.
    Metrics {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn parse_env(arg: &str) -> Result<EnvArg, String> {
    EnvArg::parse(std::ffi::OsStr::new(arg))
}

/// `--tenant-output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TenantOutput {
    /// Stamp stderr; stdout passes through.
    Stderr,
    /// Stamp both.
    All,
    /// Stamp neither: both pass through.
    Raw,
}
