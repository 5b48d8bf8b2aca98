//! Per-tenant resource limits of a confined tenant (`[limits]`, see
//! [`crate::profile::limits`]): memory, processes and CPU weight through a cgroup of its
//! own ([`cgroup`]), disk through a home on its own filesystem ([`home_fs`]), and the
//! supervisor's inotify watches through the label watcher's cap
//! ([`crate::label::watch`]).
//!
//! # Order (see `run` in main.rs)
//!
//! 1. The home image is mounted before the home is labeled ([`HomeFs::mount`]).
//! 2. The cgroup is created, limits set, and the supervisor moves itself into it before
//!    the tenant is launched ([`Enforcement::create`]): the init stub, the tenant and
//!    its agent are born inside, and what the supervisor does for the tenant (its
//!    spools, the TCP buffers of the sockets it creates and accepts for it, its CPU)
//!    is charged to the tenant's limits, not to the host.
//! 3. The tenant's processes are the OOM killer's first choice in it (`oom_score_adj`
//!    1000, set by the init stub before it forks the tenant); should the supervisor be
//!    killed anyway, its stub dies with it and so does the tenant.
//! 4. A thread polls the counters once a second and logs each limit hit
//!    ([`Enforcement::watch`]).
//! 5. When the run ends the counters are read a last time, the cgroup is removed once
//!    its processes are gone, and the home unmounted ([`Enforcement`]'s `Drop`).
//!
//! # What a tenant sees at a limit
//!
//! | limit | the tenant | the supervisor's log (target `supervise::limits`) |
//! |---|---|---|
//! | `memory` | the kernel's OOM killer SIGKILLs a process of the tenant (its exit status says signal 9) | `memory limit hit: the kernel OOM-killed …` |
//! | `pids` | `fork`/`clone`/`pthread_create` fail with EAGAIN | `pids limit hit: … fork/clone refused with EAGAIN` |
//! | `home_size` | `write`/`creat`/`mkdir` fail with ENOSPC | `home full: …` |
//! | `home_watches` | nothing (labels come from rescans) | `home watch cap reached: …` (once) |
//!
//! Each counter belongs to the tenant's own cgroup or filesystem: one tenant at its
//! limit never touches another's.

use crate::diag::Kind;
pub mod cgroup;
pub mod home_fs;

use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::profile::limits::{human, Limits};
use cgroup::{CgroupError, Counters, Origin, TenantCgroup};
use home_fs::HomeFs;

/// How often the counters are read: three small files and a statvfs a second.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Setting up a tenant's limits failed.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The cgroup.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The home's own filesystem.
    #[error(transparent)]
    HomeFs(#[from] home_fs::HomeFsError),
}

/// Everything enforcing one tenant's limits during a run. Dropping it ends the run's
/// part: last counters logged, cgroup removed, home unmounted.
#[derive(Debug)]
pub struct Enforcement {
    probe: Arc<Mutex<Probe>>,
    monitor: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    finished: bool,
}

impl Enforcement {
    /// Creates the tenant's cgroup with `limits`; `home` is its mounted image, if any.
    pub fn create(
        tenant: &str,
        limits: &Limits,
        home: Option<HomeFs>,
    ) -> Result<Enforcement, LimitsError> {
        let cgroup = TenantCgroup::create(tenant, limits)?;
        let origin = match cgroup.join_self() {
            Ok(origin) => origin,
            Err(e) => {
                let _ = cgroup.remove();
                return Err(e.into());
            }
        };
        tracing::info!(target: Kind::Limits.target(), tenant = %tenant, cgroup = %cgroup.path(), version = %cgroup.version(), %limits, "limits set");
        if home.is_none() {
            tracing::warn!(target: Kind::Limits.target(), tenant = %tenant, "the home shares its filesystem with the host and other tenants: this tenant can fill it (set limits.home_size to give it its own)");
        }
        let probe = Probe {
            tenant: tenant.to_owned(),
            limits: *limits,
            cgroup,
            origin,
            home,
            seen: Counters::default(),
            home_full: false,
        };
        Ok(Enforcement {
            probe: Arc::new(Mutex::new(probe)),
            monitor: None,
            finished: false,
        })
    }

    /// Starts the thread that logs limit hits. Call after the launch: the launch forks
    /// and must find the supervisor single-threaded.
    pub fn watch(&mut self) -> std::io::Result<()> {
        let (stop, stopped) = mpsc::channel::<()>();
        let probe = Arc::clone(&self.probe);
        let handle = std::thread::Builder::new()
            .name("limits".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(POLL_EVERY) {
                    lock(&probe).poll();
                }
            })?;
        self.monitor = Some((stop, handle));
        Ok(())
    }

    fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        if let Some((stop, handle)) = self.monitor.take() {
            drop(stop);
            if handle.join().is_err() {
                tracing::error!(target: Kind::Limits.target(), "the limits thread panicked");
            }
        }
        let mut probe = lock(&self.probe);
        // Hits of the last moments (an OOM kill that ended the tenant) are logged too.
        probe.poll();
        if let Err(error) = probe.origin.restore() {
            tracing::warn!(target: Kind::Limits.target(), tenant = %probe.tenant, %error, "cannot move the supervisor back to its own cgroup");
        }
        match probe.cgroup.remove() {
            Ok(()) => {
                tracing::debug!(target: Kind::Limits.target(), tenant = %probe.tenant, cgroup = %probe.cgroup.path(), "cgroup removed")
            }
            Err(error) => {
                tracing::warn!(target: Kind::Limits.target(), tenant = %probe.tenant, %error, "cgroup left in place; the next start removes it")
            }
        }
        if let Some(home) = probe.home.take() {
            home.unmount();
        }
    }
}

impl Drop for Enforcement {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The probe, even if a poll panicked while holding it (its state stays usable).
fn lock(probe: &Mutex<Probe>) -> std::sync::MutexGuard<'_, Probe> {
    probe
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What is polled, and what was already logged.
#[derive(Debug)]
struct Probe {
    tenant: String,
    limits: Limits,
    cgroup: TenantCgroup,
    /// Where the supervisor goes back to before the cgroup is removed.
    origin: Origin,
    home: Option<HomeFs>,
    seen: Counters,
    home_full: bool,
}

impl Probe {
    /// Reads the counters and logs what is new.
    fn poll(&mut self) {
        let now = self.cgroup.counters();
        let tenant = &self.tenant;
        if now.oom_kills > self.seen.oom_kills {
            let killed = now.oom_kills - self.seen.oom_kills;
            let limit = self.limits.memory.map_or_else(|| "max".into(), human);
            tracing::warn!(target: Kind::Limits.target(), tenant = %tenant, killed, total = now.oom_kills, limit = %limit, cgroup = %self.cgroup.path(), "memory limit hit: the kernel OOM-killed {killed} process(es) of the tenant (limits.memory = {limit}); the kernel log names them");
        }
        if now.forks_refused > self.seen.forks_refused {
            let refused = now.forks_refused - self.seen.forks_refused;
            let limit = self
                .limits
                .pids
                .map_or_else(|| "max".into(), |p| p.to_string());
            tracing::warn!(target: Kind::Limits.target(), tenant = %tenant, refused, total = now.forks_refused, limit = %limit, cgroup = %self.cgroup.path(), "pids limit hit: {refused} fork/clone refused with EAGAIN (limits.pids = {limit})");
        }
        self.seen = now;
        let Some(usage) = self.home.as_ref().and_then(HomeFs::usage) else {
            return;
        };
        let home = self.home.as_ref().map(|h| h.home().display().to_string());
        if !self.home_full && usage.is_full() {
            self.home_full = true;
            let size = self.limits.home_size.map_or_else(String::new, human);
            tracing::warn!(target: Kind::Limits.target(), tenant = %tenant, home = home.unwrap_or_default(), available = usage.available, inodes_available = usage.inodes_available, "home full: {} left of {size} (limits.home_size); the tenant's writes fail with ENOSPC", human(usage.available));
        } else if self.home_full && usage.has_room() {
            self.home_full = false;
            tracing::info!(target: Kind::Limits.target(), tenant = %tenant, home = home.unwrap_or_default(), available = usage.available, "home has room again");
        }
    }
}
