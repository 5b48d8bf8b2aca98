//! `supervise up DIR`: every profile in DIR, each tenant under its own supervising
//! process (`supervise run`), all sharing the node registry through its lock.
//!
//! One process per tenant rather than one loop for all: a tenant's notification loop
//! then never waits behind another tenant's, a crash stays with one tenant, and the
//! tenants spread over the cores. What they share is the registry, which is what the
//! labels need (each supervisor re-reads it when it changes).

use crate::diag::Kind;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use crate::profile::Profile;

/// Validates every profile, starts them all, forwards SIGTERM/SIGINT/SIGHUP, waits.
pub fn run(dir: &Path, state_dir: &Path, notify_threads: u8) -> i32 {
    let profiles = match load_all(dir) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("supervise: up: {message}");
            return 2;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("supervise: up: cannot find my own executable: {e}");
            return 125;
        }
    };
    // Blocked here (and in the output threads) so sigtimedwait takes them; std's spawn
    // resets the mask in each child, so the tenants' supervisors get them normally.
    let stop_signals = stop_set();
    // SAFETY: `stop_signals` is an initialised set, only read; no old mask wanted.
    // rustix has no pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &stop_signals, std::ptr::null_mut()) };
    let mut children: Vec<(String, Child)> = Vec::new();
    for (path, profile) in &profiles {
        let mut command = Command::new(&exe);
        // SAFETY: `pre_exec` is unsafe because the closure runs between fork and
        // exec: it makes only async-signal-safe, allocation-free calls on stack data:
        // unblock what `up` blocked (the child would pass the mask on to its tenant;
        // the set is initialised, only read), and stop this tenant's supervisor
        // (gracefully) if `up` itself dies (a raw prctl).
        unsafe {
            command.pre_exec(|| {
                let empty = stop_set_empty();
                libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
                let _ = rustix::process::set_parent_process_death_signal(Some(Signal::TERM));
                Ok(())
            });
        }
        let spawned = command
            .arg("--state-dir")
            .arg(state_dir)
            .arg("run")
            .arg("--profile")
            .arg(path)
            .arg("--notify-threads")
            .arg(notify_threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        match spawned {
            Ok(mut child) => {
                prefix_lines(&profile.tenant, child.stdout.take(), false);
                prefix_lines(&profile.tenant, child.stderr.take(), true);
                tracing::info!(target: Kind::Supervisor.target(), tenant = %profile.tenant, profile = %path.display(), pid = child.id(), "started");
                children.push((profile.tenant.clone(), child));
            }
            Err(e) => {
                eprintln!("supervise: up: starting {}: {e}", path.display());
                stop_all(&mut children, Signal::TERM);
                return 125;
            }
        }
    }
    wait_all(children, &stop_signals)
}

/// Every `*.toml` in `dir`, sorted, each valid, with a command and a distinct name.
fn load_all(dir: &Path) -> Result<Vec<(PathBuf, Profile)>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{} holds no *.toml profile", dir.display()));
    }
    let mut out: Vec<(PathBuf, Profile)> = Vec::new();
    for path in paths {
        let profile = Profile::load(&path).map_err(|e| e.to_string())?;
        if profile.command.is_none() {
            let error = profile.error(
                "tenant.command",
                "`up` needs each profile to name its command".into(),
            );
            return Err(error.to_string());
        }
        if let Some((other, _)) = out.iter().find(|(_, p)| p.tenant == profile.tenant) {
            return Err(format!(
                "{} and {} both name tenant {:?}",
                other.display(),
                path.display(),
                profile.tenant
            ));
        }
        out.push((path, profile));
    }
    Ok(out)
}

/// Copies a child's output to ours, each line prefixed with the tenant's name.
fn prefix_lines(tenant: &str, stream: Option<impl Read + Send + 'static>, to_stderr: bool) {
    let Some(stream) = stream else { return };
    let prefix = format!("[{tenant}] ");
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if to_stderr {
                let _ = writeln!(std::io::stderr().lock(), "{prefix}{line}");
            } else {
                let _ = writeln!(std::io::stdout().lock(), "{prefix}{line}");
            }
        }
    });
}

/// SIGTERM, SIGINT, SIGHUP: the signals `up` forwards to every tenant.
fn stop_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data (all-zero is valid); sigemptyset initialises the
    // stack set, sigaddset extends it with valid signal numbers. rustix has no sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// An empty signal set (built without allocation: usable after fork).
fn stop_set_empty() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data (all-zero is valid); sigemptyset initialises the
    // stack set (async-signal-safe, no allocation). rustix has no sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn stop_all(children: &mut [(String, Child)], signal: Signal) {
    for (_, child) in children.iter_mut() {
        // The pid is our own unreaped child's.
        let _ = rustix::process::kill_process(Pid::from_child(child), signal);
    }
}

/// Waits for every child, forwarding stop signals. Exit: 0 when every tenant ended
/// cleanly (0, or the forwarded signal's 128+N), else the first other status.
fn wait_all(mut children: Vec<(String, Child)>, set: &libc::sigset_t) -> i32 {
    let mut stop_signal = None;
    let mut worst = 0;
    while !children.is_empty() {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: Duration::from_millis(200).as_nanos() as libc::c_long,
        };
        // SAFETY: `set` and `timeout` are initialised and only read; no siginfo
        // wanted. rustix has no sigtimedwait.
        let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
        // `set` holds only SIGTERM, SIGINT and SIGHUP, all named signals.
        if let Some(signal) = Signal::from_named_raw(sig) {
            tracing::info!(target: Kind::Supervisor.target(), signal = sig, "stopping every tenant");
            stop_signal = Some(sig);
            stop_all(&mut children, signal);
        }
        children.retain_mut(|(tenant, child)| match child.try_wait() {
            Ok(Some(status)) => {
                let code = status.code().unwrap_or(125);
                let clean = code == 0 || stop_signal.is_some_and(|s| code == 128 + s);
                if !clean && worst == 0 {
                    worst = code;
                }
                tracing::info!(target: Kind::Supervisor.target(), tenant = %tenant, code, "tenant's supervisor exited");
                false
            }
            Ok(None) => true,
            Err(_) => false,
        });
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::load_all;

    fn profile(dir: &std::path::Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn every_profile_is_checked_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_all(dir.path()).unwrap_err();
        assert!(err.contains("no *.toml profile"), "{err}");
        profile(
            dir.path(),
            "a.toml",
            "[tenant]\nname = \"a\"\ncommand = [\"/bin/true\"]\n",
        );
        profile(dir.path(), "notes.txt", "not a profile");
        assert_eq!(load_all(dir.path()).unwrap().len(), 1);
        profile(dir.path(), "b.toml", "[tenant]\nname = \"b\"\n");
        let err = load_all(dir.path()).unwrap_err();
        assert!(
            err.contains("b.toml:1: tenant.command: `up` needs"),
            "{err}"
        );
        profile(
            dir.path(),
            "b.toml",
            "[tenant]\nname = \"a\"\ncommand = [\"/bin/true\"]\n",
        );
        let err = load_all(dir.path()).unwrap_err();
        assert!(err.contains("both name tenant \"a\""), "{err}");
        profile(
            dir.path(),
            "b.toml",
            "[tenant]\nname = \"b\"\ncommand = [\"/bin/true\"]\nbogus = 1\n",
        );
        let err = load_all(dir.path()).unwrap_err();
        assert!(err.contains("b.toml:4:") && err.contains("bogus"), "{err}");
    }
}
