//! `supervise`: runs tenants under a seccomp filter whose interesting syscalls the
//! supervisor services itself. See the README and DESIGN for the architecture.

use crate::diag::Kind;
mod cli;
mod control;
mod diag;
mod label;
mod launch;
mod limits;
mod mirror;
mod notify;
mod observe;
mod output;
mod profile;
mod setup;
mod stream;
mod sys;
mod up;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use profile::Profile;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    diag::init(cli.log_format);
    // Homes default to <state dir>/home/<name> and must be absolute paths.
    if let Ok(absolute) = std::path::absolute(&cli.state_dir) {
        cli.state_dir = absolute;
    }
    let code = match cli.command {
        Command::Run {
            profile,
            continue_all,
            sync_wakeup,
            notify_threads,
            pin_notify_threads,
            env,
            tenant_output,
            metrics_listen,
            allowed_signers,
            command,
        } => {
            let options = RunOptions {
                continue_all,
                sync_wakeup,
                notify_threads: notify_threads.into(),
                pin_notify_threads,
                env,
                tenant_output,
                metrics_listen,
                allowed_signers,
            };
            run(profile, options, command, &cli.state_dir)
        }
        Command::Check { profile } => check(&profile),
        Command::Up {
            dir,
            notify_threads,
        } => up::run(&dir, &cli.state_dir, notify_threads),
        Command::Label { audit, recursive } => label_command(&cli.state_dir, &audit, recursive),
        Command::Ctl(args) => control::client::run(&cli.state_dir, args),
        Command::Request(args) => control::request::run(&cli.state_dir, args),
    };
    diag::shutdown();
    ExitCode::from(code.clamp(0, 255) as u8)
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
    /// `--pin-notify-threads`.
    pin_notify_threads: bool,
    /// `--env`, in order.
    env: Vec<profile::env::EnvArg>,
    /// Which of the tenant's outputs are stamped.
    tenant_output: cli::TenantOutput,
    /// `--metrics-listen`.
    metrics_listen: Option<std::net::SocketAddr>,
    /// `--allowed-signers`.
    allowed_signers: Option<std::path::PathBuf>,
}

fn run(
    profile: Option<std::path::PathBuf>,
    options: RunOptions,
    command: Vec<std::ffi::OsString>,
    state_dir: &std::path::Path,
) -> i32 {
    // Validate everything before any side effect.
    let profile = match load(profile.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return 2;
        }
    };
    diag::set_tenant(&profile.tenant);
    // The control socket first: a second supervisor of the same tenant on this node is
    // refused here, before it touches the registry, the home or the cgroup.
    let bridge = match control::bridge::Bridge::new() {
        Ok(b) => b,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    let control_path = control::socket_path(state_dir, &profile.tenant);
    let backend = std::sync::Arc::new(control::bridge::LoopBackend(bridge.clone()));
    let backend_for_metrics = backend.clone();
    if let Err(e) = std::fs::create_dir_all(state_dir) {
        eprintln!("supervise: state dir {}: {e}", state_dir.display());
        return 125;
    }
    // Without a keyring the tenant still runs; signed requests are then refused (fail
    // closed), and the reason is said now and to each requester.
    let keyring = match control::signed::Keyring::open(
        state_dir,
        options.allowed_signers.as_deref(),
        &profile.tenant,
    ) {
        Ok(k) => Some(std::sync::Arc::new(k)),
        Err(e) => {
            eprintln!("supervise: keyring disabled, signed requests will be refused: {e}");
            control::server::set_no_keyring_reason(e.to_string());
            None
        }
    };
    let control_server =
        match control::Server::start_with_keyring(&control_path, backend, keyring.clone()) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("supervise: control socket {}: {e}", control_path.display());
                return 125;
            }
        };
    // The mirror's stations start before the tenant (one that is down is retried).
    let mirror = match mirror::start::start(&profile, state_dir) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("supervise: mirror: {e}");
            return 2;
        }
    };
    if options.continue_all && mirror.is_some() {
        eprintln!("supervise: --continue-all lets every call through unseen: nothing would be mirrored ({} has a [mirror])", profile.source);
        return 2;
    }
    if options.continue_all && profile.confinement.is_some() {
        eprintln!("supervise: --continue-all would let every call through unchecked; it cannot be used with a confined tenant ({})", profile.source);
        return 2;
    }
    if profile.confinement.is_some() {
        let fixed = profile::env::CONFINED_FIXED;
        if let Some(arg) = options
            .env
            .iter()
            .find(|a| fixed.iter().any(|f| *a.name == **f))
        {
            eprintln!(
                "supervise: --env {}: set by the supervisor for a confined tenant ({})",
                arg.name.to_string_lossy(),
                profile.source
            );
            return 2;
        }
    }
    if command.is_empty() && profile.command.is_none() {
        eprintln!(
            "supervise: no command: give one after `--` or set tenant.command in the profile"
        );
        return 2;
    }
    if !rustix::process::geteuid().is_root() {
        eprintln!("supervise: must run as root (it creates a PID namespace, drops the tenant's credentials and reads tenant memory)");
        return 2;
    }
    let (entry, home_fs, _claims) = match &profile.confinement {
        Some(confinement) => match confine(&profile, confinement, state_dir) {
            Ok((entry, home_fs, claims)) => (Some(entry), home_fs, Some(claims)),
            Err(e) => {
                report(&e);
                return 2;
            }
        },
        None => {
            tracing::warn!(target: Kind::Supervisor.target(), tenant = %profile.tenant, "tenant is not confined (tenant.confine = false): no label, no Landlock, no address checks");
            (None, None, None)
        }
    };
    let command = if command.is_empty() {
        setup::expand_command(
            profile.command.as_deref().unwrap_or_default(),
            entry.as_ref(),
        )
    } else {
        command
    };
    let original_mask = match notify::block_handled_signals() {
        Ok(mask) => mask,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    let confined = entry
        .as_ref()
        .zip(profile.confinement.as_ref())
        .map(|(entry, confinement)| launch::ConfinedLaunch { entry, confinement });
    for arg in options.env.iter().filter(|a| a.value.is_none()) {
        if std::env::var_os(&arg.name).is_none() {
            tracing::warn!(target: Kind::Supervisor.target(), name = %arg.name.to_string_lossy(), "--env: not set in the supervisor's environment; not passed to the tenant");
        }
    }
    let mut prepared =
        match launch::Prepared::new(&profile, &command, &options.env, original_mask, confined) {
            Ok(p) => p,
            Err(e) => {
                report(&e);
                return 127;
            }
        };
    let outputs = match output::Pipes::create(options.tenant_output) {
        Ok(pipes) => pipes,
        Err(e) => {
            eprintln!("supervise: cannot create the tenant's output pipes: {e}");
            return 125;
        }
    };
    prepared.outputs = outputs.child_ends();
    // The tenant's cgroup exists, with its limits, before the tenant does.
    let mut limits = match (&entry, &profile.limits) {
        (Some(entry), Some(l)) => match limits::Enforcement::create(&entry.name, l, home_fs) {
            Ok(e) => Some(e),
            Err(e) => {
                report(&e);
                return 2;
            }
        },
        _ => None,
    };
    let launched = match launch::launch(&prepared, options.sync_wakeup) {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return 125;
        }
    };
    // The tenant has its ends; the supervisor keeps only the reading ends, drained
    // for what bypasses the notified writes.
    let output_ids = outputs.started(&profile.tenant);
    if let Some(limits) = &mut limits {
        if let Err(error) = limits.watch() {
            tracing::warn!(target: Kind::Limits.target(), %error, "cannot start the limits thread; limit hits are logged when the tenant ends");
        }
    }
    tracing::info!(target: Kind::Supervisor.target(), tenant = %profile.tenant, pid = launched.tenant_pid, profile = %profile.source, streams = profile.streams.len(), "tenant started under seccomp user notification");
    let mut relabeler = None;
    let mut guard = None;
    if let (Some(entry), Some(confinement)) = (entry, profile.confinement.as_ref()) {
        let landlock = launched.landlock.map(|l| l.to_string()).unwrap_or_default();
        let rules = prepared.landlock_summary.as_deref().unwrap_or_default();
        if launched.landlock == Some(launch::landlock::Enforcement::Full) {
            tracing::info!(target: Kind::Landlock.target(), tenant = %entry.name, "landlock {landlock}: {rules}");
        } else {
            tracing::warn!(target: Kind::Landlock.target(), tenant = %entry.name, "landlock {landlock}: {rules}");
        }
        tracing::info!(target: Kind::Label.target(), tenant = %entry.name, uid = entry.uid, label = %entry.label, home = %entry.home.display(), range = %entry.address, "labels enforced on connect, bind, sendto and accept");
        let cap = profile::limits::DEFAULT_HOME_WATCHES;
        let watches = profile.limits.map_or(cap, |l| l.home_watches);
        let home = entry.home.clone();
        relabeler = match label::watch::spawn(home, entry.label.to_string(), watches) {
            Ok(r) => Some(r),
            Err(error) => {
                tracing::warn!(target: Kind::Label.target(), %error, "cannot watch the home; new files are labeled at the next start only");
                None
            }
        };
        guard = Some(label::guard::Guard::new(
            entry,
            confinement.net.clone(),
            setup::node_net(),
            state_dir.to_owned(),
        ));
    }
    let mut supervisor =
        match notify::Supervisor::new(profile, launched, options.continue_all, guard) {
            Ok(s) => s,
            Err(e) => {
                report(&e);
                return 125;
            }
        };
    for (id, which) in output_ids {
        supervisor.capture_output(id, which);
    }
    if let Some(mirror) = mirror {
        supervisor.attach_mirror(mirror);
    }
    let _metrics_server = match options.metrics_listen {
        Some(address) => match control::metrics_http::serve(address, backend_for_metrics.clone()) {
            Ok(server) => Some(server),
            Err(error) => {
                tracing::error!(target: Kind::Control.target(), %address, %error, "cannot serve --metrics-listen");
                None
            }
        },
        None => None,
    };
    // The tenant (and its init stub, forked from us) is running: only now may the
    // node's keys come into this process's memory.
    if let Some(keyring) = &keyring {
        keyring.mark_ready();
    }
    if let Err(error) = supervisor.attach_control(bridge, control_server.path(), keyring) {
        tracing::error!(target: Kind::Control.target(), %error, "cannot serve the control socket from the loop; ctl requests will time out");
    }
    let code = supervisor.run(options.notify_threads, options.pin_notify_threads);
    if let Some(relabeler) = relabeler {
        tracing::info!(target: Kind::Label.target(), files = relabeler.relabeled(), "home watcher stopped");
        relabeler.stop();
    }
    // Last limit hits logged, cgroup removed once the tenant's processes are gone, home
    // unmounted.
    drop(limits);
    drop(control_server);
    code
}

/// What confining a tenant sets up and holds until the supervisor exits.
type Confined = (
    label::registry::Entry,
    Option<limits::home_fs::HomeFs>,
    label::claims::NodeClaims,
);

/// Registry entry, node-wide claims, account and labeled home of a confined tenant, and
/// the home's own filesystem when `limits.home_size` asks for one.
fn confine(
    profile: &Profile,
    confinement: &profile::Confinement,
    state_dir: &std::path::Path,
) -> Result<Confined, setup::SetupError> {
    if confinement.read_only_explicit {
        if let Some(missing) = confinement.read_only.iter().find(|p| !p.exists()) {
            let error = profile.error(
                "filesystem.read_only",
                format!("{} does not exist", missing.display()),
            );
            return Err(setup::SetupError::Profile(error.to_string()));
        }
    }
    let entry = setup::claim(profile, confinement, state_dir)?;
    let claims =
        label::claims::hold(&entry, state_dir).map_err(|claim| setup::SetupError::Claim {
            tenant: entry.name.clone(),
            claim,
        })?;
    setup::ensure_account(&entry)?;
    // Validates the home's path and makes the directory (the mount point, if any).
    setup::prepare_home(&entry)?;
    let home_fs = match profile.limits.and_then(|l| l.home_size) {
        Some(size) => {
            let (name, owner) = (&entry.name, (entry.uid, entry.gid));
            let fs = limits::home_fs::HomeFs::mount(name, &entry.home, size, state_dir, owner);
            let fs = fs.map_err(limits::LimitsError::from)?;
            // The mounted filesystem's root: owned, 0700 and labeled like the home.
            setup::prepare_home(&entry)?;
            Some(fs)
        }
        None => None,
    };
    Ok((entry, home_fs, claims))
}

/// `supervise label`: the registry as a table, or audits.
fn label_command(
    state_dir: &std::path::Path,
    audit: &[std::path::PathBuf],
    recursive: bool,
) -> i32 {
    let entries = match label::registry::snapshot(state_dir) {
        Ok(entries) => entries,
        Err(e) => {
            report(&e);
            return 2;
        }
    };
    if !audit.is_empty() && !rustix::process::geteuid().is_root() {
        eprintln!("supervise: label --audit must run as root (labels live in the trusted xattr namespace, which only CAP_SYS_ADMIN can read)");
        return 2;
    }
    let mut out = std::io::stdout().lock();
    let result = if audit.is_empty() {
        label::audit::list(&entries, &label::registry::file_in(state_dir), &mut out).map(|()| true)
    } else {
        label::audit::run_audit(audit, recursive, &entries, &mut out)
    };
    match result {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            report(&e);
            2
        }
    }
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
            match &p.confinement {
                Some(c) => println!(
                    "  confined: uid {}, home {}, address {}, {} read-only path(s), allowed peers {:?}, tcp bind {:?}, tcp connect {:?}",
                    c.uid.map_or("allocated".to_string(), |u| u.to_string()),
                    c.home.as_ref().map_or("<state dir>/home/<name>".to_string(), |h| h.display().to_string()),
                    c.address.map_or("allocated /24".to_string(), |a| a.to_string()),
                    c.read_only.len(),
                    c.net.allowed_peers,
                    c.net.tcp_bind,
                    c.net.tcp_connect,
                ),
                None => println!("  not confined (tenant.confine = false)"),
            }
            if let Some(limits) = &p.limits {
                println!("  limits: {limits}");
            }
            0
        }
        Err(e) => {
            report(&e);
            2
        }
    }
}
