//! A tenant's cgroup, `supervise/<tenant>` in the memory, pids and cpu controllers, v1 or
//! v2, through the `cgroups-rs` crate.
//!
//! # Which hierarchy
//!
//! `/sys/fs/cgroup` of type cgroup2 (it has `cgroup.controllers`) is a pure v2 host: the
//! cgroup is `/sys/fs/cgroup/supervise/<tenant>` and the controllers are enabled in the
//! `cgroup.subtree_control` of the root and of `supervise/`. Otherwise the v1 hierarchies
//! mounted below `/sys/fs/cgroup` are used, one directory per controller
//! (`/sys/fs/cgroup/{memory,pids,cpu}/supervise/<tenant>`); a hybrid host's empty v2
//! hierarchy (`/sys/fs/cgroup/unified`) holds no controller and is not used. A missing
//! controller is an error that names it: a confined tenant never runs without its limits.
//!
//! The cgroups hang from the hierarchy's root, not from the supervisor's own cgroup: on
//! v2 a cgroup with processes (the supervisor's) cannot also hand controllers to
//! children, and a tenant's limits should not depend on where the operator started the
//! supervisor.
//!
//! # What the crate does and what is done here
//!
//! Creating, placing processes, setting limits and removing go through `cgroups-rs`.
//! Reading the OOM-kill counter is done here, from one file: the crate reads it only as
//! part of `memory_stat()` (a dozen files per call) on v1 and not at all on v2
//! (`memory.events`).

use crate::diag::Kind;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::cpu::CpuController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::{hierarchies, Cgroup, CgroupPid, Controller, Hierarchy, MaxValue};

use crate::profile::limits::Limits;

/// The directory every tenant's cgroup is made in.
pub const PARENT: &str = "supervise";
/// The controllers a confined tenant needs.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// How long a stale cgroup's processes (a crashed run's, dying with their PID namespace)
/// or an ended run's are waited for.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// A cgroup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The host lacks a controller the limits need.
    #[error("cgroups: {0}; a confined tenant needs the memory, pids and cpu controllers (cgroup v1 hierarchies under /sys/fs/cgroup/<controller>, or cgroup v2 at /sys/fs/cgroup)")]
    Unsupported(String),
    /// A cgroup of the tenant's name still holds live processes.
    #[error("cgroup {path} still holds processes {pids:?} after {DRAIN_WAIT:?}: is another supervisor running tenant {tenant:?}?")]
    Busy {
        /// The cgroup.
        path: String,
        /// The tenant.
        tenant: String,
        /// What is still in it.
        pids: Vec<u64>,
    },
    /// A step on the cgroup failed.
    #[error("cgroup {path}: {step}: {detail}")]
    Step {
        /// The cgroup.
        path: String,
        /// What was being done.
        step: String,
        /// What the crate said.
        detail: String,
        /// The kernel's error, when there is one.
        #[source]
        source: Option<io::Error>,
    },
}

/// Which cgroup version the tenant's cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// Counters of limit hits since the cgroup was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Processes the kernel OOM-killed for the memory limit.
    pub oom_kills: u64,
    /// fork/clone calls refused (EAGAIN) for the pids limit.
    pub forks_refused: u64,
}

/// Where the supervisor was before it joined its tenant's cgroup: the `cgroup.procs`
/// file of its own cgroup in each controller, to go back to before the tenant's is
/// removed.
#[derive(Debug, Default)]
pub struct Origin(Vec<PathBuf>);

impl Origin {
    /// Moves the calling process back where it was.
    pub fn restore(&self) -> std::io::Result<()> {
        let pid = std::process::id().to_string();
        for procs in &self.0 {
            std::fs::write(procs, &pid)?;
        }
        Ok(())
    }
}

/// One tenant's cgroup.
#[derive(Debug)]
pub struct TenantCgroup {
    cgroup: Cgroup,
    version: Version,
    tenant: String,
    /// `supervise/<tenant>`.
    path: String,
}

impl TenantCgroup {
    /// Creates `supervise/<tenant>` (a stale one from a crashed run is removed first, so
    /// its counters start at zero) and sets `limits` in it. Nothing is placed in it yet.
    pub fn create(tenant: &str, limits: &Limits) -> Result<TenantCgroup, CgroupError> {
        let path = format!("{PARENT}/{tenant}");
        let (_, version) = hierarchy()?;
        let stale = load(&path)?;
        if stale.exists() {
            let found = TenantCgroup {
                cgroup: stale,
                version,
                tenant: tenant.to_owned(),
                path: path.clone(),
            };
            found.drain()?;
            found.delete("removing the stale cgroup of an earlier run")?;
            tracing::info!(target: Kind::Limits.target(), tenant = %tenant, cgroup = %path, "removed a stale cgroup left by an earlier run");
        }
        let (hier, _) = hierarchy()?;
        let cgroup = match version {
            Version::V1 => {
                let controllers = CONTROLLERS.map(String::from).to_vec();
                Cgroup::new_with_specified_controllers(hier, &path, Some(controllers))
            }
            // One directory whatever the controllers; naming them would make cgroups-rs
            // 0.3 compare them with the untrimmed last word of cgroup.controllers. All
            // the root offers are enabled below it, as container runtimes do.
            Version::V2 => Cgroup::new(hier, &path),
        }
        .map_err(|e| step(&path, "creating it", e))?;
        let made = TenantCgroup {
            cgroup,
            version,
            tenant: tenant.to_owned(),
            path,
        };
        // cgroups-rs 0.3 logs a failed mkdir of a v1 controller instead of returning it.
        for name in CONTROLLERS {
            if !made.controller_dir(name).is_some_and(|d| d.is_dir()) {
                let _ = made.delete("cleaning up");
                return Err(CgroupError::Step {
                    path: made.path.clone(),
                    step: format!("creating it in the {name} controller"),
                    detail: "the directory was not created (see the log above)".into(),
                    source: None,
                });
            }
        }
        if let Err(e) = made.set(limits) {
            let _ = made.delete("cleaning up");
            return Err(e);
        }
        Ok(made)
    }

    /// v1 or v2.
    pub fn version(&self) -> Version {
        self.version
    }

    /// `supervise/<tenant>`.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn controller_dir(&self, name: &str) -> Option<PathBuf> {
        let dir = match name {
            "memory" => self.mem()?.path(),
            "pids" => self.pids()?.path(),
            "cpu" => self.cpu()?.path(),
            _ => return None,
        };
        Some(dir.to_path_buf())
    }

    fn mem(&self) -> Option<&MemController> {
        self.cgroup.controller_of::<MemController>()
    }

    fn pids(&self) -> Option<&PidController> {
        self.cgroup.controller_of::<PidController>()
    }

    fn cpu(&self) -> Option<&CpuController> {
        self.cgroup.controller_of::<CpuController>()
    }

    fn set(&self, limits: &Limits) -> Result<(), CgroupError> {
        let missing =
            |name: &str| CgroupError::Unsupported(format!("no {name} controller in {}", self.path));
        let mem = self.mem().ok_or_else(|| missing("memory"))?;
        let bytes = limits
            .memory
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
        mem.set_limit(bytes)
            .map_err(|e| step(&self.path, "setting the memory limit", e))?;
        // Swap must not stretch the limit: v1 bounds memory+swap to the same figure
        // (the file exists only with swap accounting), v2 allows no swap at all.
        match self.version {
            Version::V1 if mem.path().join("memory.memsw.limit_in_bytes").exists() => mem
                .set_memswap_limit(bytes)
                .map_err(|e| step(&self.path, "setting the memory+swap limit", e))?,
            Version::V2
                if limits.memory.is_some() && mem.path().join("memory.swap.max").exists() =>
            {
                mem.set_memswap_limit(0)
                    .map_err(|e| step(&self.path, "setting memory.swap.max", e))?
            }
            _ => {}
        }
        // v1 charges TCP buffers to a cgroup only once it has a TCP limit (v2 always
        // does): the same figure as the memory limit.
        let tcp = mem.path().join("memory.kmem.tcp.limit_in_bytes");
        if self.version == Version::V1 && limits.memory.is_some() && tcp.exists() {
            std::fs::write(&tcp, bytes.to_string()).map_err(|e| CgroupError::Step {
                path: self.path.clone(),
                step: "setting memory.kmem.tcp.limit_in_bytes".into(),
                detail: e.to_string(),
                source: None,
            })?;
        }
        let pids = self.pids().ok_or_else(|| missing("pids"))?;
        let max = limits
            .pids
            .map_or(MaxValue::Max, |n| MaxValue::Value(i64::from(n)));
        pids.set_pid_max(max)
            .map_err(|e| step(&self.path, "setting the pids limit", e))?;
        let cpu = self.cpu().ok_or_else(|| missing("cpu"))?;
        // The crate writes cpu.shares on v1 and cpu.weight on v2, the value as given.
        let value = match self.version {
            Version::V1 => limits.cpu_shares(),
            Version::V2 => u64::from(limits.cpu_weight),
        };
        cpu.set_shares(value)
            .map_err(|e| step(&self.path, "setting the cpu weight", e))
    }

    /// Moves the supervisor itself (all its threads) into the cgroup, so what it does for
    /// the tenant — the memory of its spools, the TCP buffers of the sockets it creates
    /// and accepts for the tenant, its CPU — is charged to the tenant, and everything it
    /// forks (the init stub, and so the tenant) is born inside. Returns where it was.
    pub fn join_self(&self) -> Result<Origin, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| CgroupError::Step {
            path: self.path.clone(),
            step: "reading /proc/self/cgroup".into(),
            detail: e.to_string(),
            source: None,
        })?;
        let mut origin = Vec::new();
        let dirs: Vec<PathBuf> = match self.version {
            Version::V1 => CONTROLLERS
                .iter()
                .filter_map(|c| self.controller_dir(c))
                .collect(),
            Version::V2 => self.controller_dir("memory").into_iter().collect(),
        };
        for (dir, name) in dirs.iter().zip(CONTROLLERS) {
            // <hierarchy root>/supervise/<tenant> → <hierarchy root>
            let root = dir
                .to_str()
                .and_then(|d| d.strip_suffix(&format!("/{}", self.path)))
                .map(PathBuf::from)
                .ok_or_else(|| {
                    CgroupError::Unsupported(format!(
                        "unexpected cgroup directory {}",
                        dir.display()
                    ))
                })?;
            let mine = own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                let matches = match self.version {
                    Version::V1 => list.split(',').any(|c| c == name),
                    Version::V2 => list.is_empty(),
                };
                matches.then(|| path.trim_start_matches('/').to_owned())
            });
            let mine = mine.unwrap_or_default();
            origin.push(root.join(mine).join("cgroup.procs"));
        }
        self.place(std::process::id() as libc::pid_t)?;
        Ok(Origin(origin))
    }

    /// Moves process `pid` (all its threads) into the cgroup. Its children from then on
    /// are born in it.
    pub fn place(&self, pid: libc::pid_t) -> Result<(), CgroupError> {
        let id = u64::try_from(pid).unwrap_or_default();
        self.cgroup
            .add_task_by_tgid(CgroupPid::from(id))
            .map_err(|e| step(&self.path, &format!("moving pid {pid} into it"), e))
    }

    /// The processes in the cgroup now.
    pub fn procs(&self) -> Vec<u64> {
        self.cgroup.procs().into_iter().map(|p| p.pid).collect()
    }

    /// The limit-hit counters; a file that cannot be read counts 0 (logged at debug).
    pub fn counters(&self) -> Counters {
        let oom_kills = self.mem().map_or(0, |m| {
            let (file, key) = match self.version {
                Version::V1 => ("memory.oom_control", "oom_kill"),
                Version::V2 => ("memory.events", "oom_kill"),
            };
            read_key(&m.path().join(file), key)
        });
        let forks_refused = self.pids().map_or(0, |p| match p.get_pid_events() {
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(target: Kind::Limits.target(), cgroup = %self.path, %error, "cannot read pids.events");
                0
            }
        });
        Counters {
            oom_kills,
            forks_refused,
        }
    }

    /// Removes the cgroup once its processes are gone (they die with the tenant's PID
    /// namespace when the init stub exits). On v2 leftovers past the wait are killed
    /// through `cgroup.kill` (every process in it is this tenant's); v1 has no race-free
    /// way to do that, so the cgroup is left for the next start to clean.
    pub fn remove(&self) -> Result<(), CgroupError> {
        if let Err(busy) = self.drain() {
            if self.version == Version::V1 || self.cgroup.kill().is_err() {
                return Err(busy);
            }
            self.drain()?;
        }
        self.delete("removing it")
    }

    /// Waits (bounded) until no process is left.
    fn drain(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + DRAIN_WAIT;
        loop {
            let pids = self.procs();
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Busy {
                    path: self.path.clone(),
                    tenant: self.tenant.clone(),
                    pids,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn delete(&self, what: &str) -> Result<(), CgroupError> {
        self.cgroup.delete().map_err(|e| step(&self.path, what, e))
    }
}

/// The hierarchy to use and its version, or which controller is missing.
fn hierarchy() -> Result<(Box<dyn Hierarchy>, Version), CgroupError> {
    let hier = hierarchies::auto();
    let version = if hier.v2() { Version::V2 } else { Version::V1 };
    let present: Vec<String> = hier
        .subsystems()
        .iter()
        .map(|s| s.controller_name())
        .collect();
    let missing: Vec<&str> = CONTROLLERS
        .into_iter()
        .filter(|c| !present.iter().any(|p| p == c))
        .collect();
    if !missing.is_empty() {
        let what = match version {
            Version::V2 => "cgroup v2 at /sys/fs/cgroup does not offer",
            Version::V1 => "no cgroup v1 hierarchy is mounted for",
        };
        let plural = if missing.len() > 1 { "s" } else { "" };
        return Err(CgroupError::Unsupported(format!(
            "{what} the {} controller{plural}",
            missing.join(", ")
        )));
    }
    Ok((hier, version))
}

/// A handle on `path` (v1: in the three controllers only, so no cpuset or devices
/// directory is made; v2: the one directory), whether it exists or not.
fn load(path: &str) -> Result<Cgroup, CgroupError> {
    let (hier, version) = hierarchy()?;
    Ok(match version {
        Version::V1 => {
            let controllers = CONTROLLERS.map(String::from).to_vec();
            Cgroup::load_with_specified_controllers(hier, path, controllers)
        }
        Version::V2 => Cgroup::load(hier, path),
    })
}

/// The value of `key` in a flat-keyed cgroup file (`oom_kill 3`); 0 if unreadable.
fn read_key(file: &Path, key: &str) -> u64 {
    match std::fs::read_to_string(file) {
        Ok(text) => parse_key(&text, key).unwrap_or(0),
        Err(error) => {
            tracing::debug!(target: Kind::Limits.target(), file = %file.display(), %error, "cannot read");
            0
        }
    }
}

fn parse_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A crate error as a step error: its kind in words, the kernel's errno as the source.
fn step(path: &str, what: &str, e: cgroups_rs::error::Error) -> CgroupError {
    let source = std::error::Error::source(&e)
        .and_then(|c| c.downcast_ref::<io::Error>())
        .map(|io| match io.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(io.kind(), io.to_string()),
        });
    CgroupError::Step {
        path: path.to_owned(),
        step: what.to_owned(),
        detail: e.kind().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_key(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_key(v2, "oom_kill"), Some(2));
        assert_eq!(parse_key(v2, "max"), Some(12));
        assert_eq!(parse_key("", "oom_kill"), None);
    }
}
