//! The node registry: which tenant holds which uid, label, home and address range.
//!
//! It lives in a state dir (default [`DEFAULT_STATE_DIR`]) as `tenants.toml`, one
//! `[[tenant]]` table per tenant, so an operator can read it. Several supervisors may run
//! on one node; [`Registry::open`] takes an exclusive `flock` on `<dir>/lock` and holds it
//! until the `Registry` is dropped, so two supervisors never allocate from a stale view.
//! [`Registry::save`] writes a temp file and renames it over `tenants.toml`, so a crash
//! leaves either the old or the new registry, never half of one.
//!
//! Labels and addresses are derived from the uid's index in the node range
//! ([`super::mcs`], [`super::tenant_net`]); they are stored anyway so that `supervise
//! label` can list them and so a changed node configuration is caught as a collision
//! instead of silently relabeling a tenant's files.

#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::mcs::{Label, McsError, NodeRange};
use super::{tenant_capacity, tenant_net, Ipv4Net, NetError, DEFAULT_NODE_NET};

/// Where the registry lives unless the caller says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/supervise";
/// First uid handed to tenants by default: above the usual subuid start (100000) block.
pub const DEFAULT_BASE_UID: u32 = 200_000;

const REGISTRY_FILE: &str = "tenants.toml";
const LOCK_FILE: &str = "lock";

/// One tenant's allocation. `gid` equals `uid` (a private group) unless the profile names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub label: Label,
    pub home: PathBuf,
    pub address: Ipv4Net,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    #[serde(default, rename = "tenant")]
    tenants: Vec<Entry>,
}

/// What a profile asks of the registry; `None` fields are allocated or defaulted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// An explicit uid (must lie in the node range: the label derives from it).
    pub uid: Option<u32>,
    /// An explicit gid; default: gid = uid (a private group).
    pub gid: Option<u32>,
    /// An explicit address range instead of the uid's /24.
    pub address: Option<Ipv4Net>,
    /// An explicit home instead of `<state dir>/home/<name>`.
    pub home: Option<PathBuf>,
}

/// Reads the registry without locking it, for decisions that only need a consistent
/// view: `save` replaces the file by rename, so a reader sees the old or the new one.
pub fn snapshot(dir: &Path) -> Result<Vec<Entry>, RegistryError> {
    load(&dir.join(REGISTRY_FILE))
}

/// The registry file's path in a state dir (for messages and change detection).
pub fn file_in(dir: &Path) -> PathBuf {
    dir.join(REGISTRY_FILE)
}

/// The node's uid range and address network. The default range holds as many uids as the
/// default network holds tenant /24s (65,280), so neither runs out first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeConfig {
    pub range: NodeRange,
    pub net: Ipv4Net,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        let count = tenant_capacity(DEFAULT_NODE_NET).expect("default node net is a /8");
        NodeConfig {
            range: NodeRange::new(DEFAULT_BASE_UID, count).expect("default range is valid"),
            net: DEFAULT_NODE_NET,
        }
    }
}

/// What failed, and on which path or tenant.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("creating state dir {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("opening lock file {path}: {source}")]
    OpenLock { path: PathBuf, source: io::Error },
    #[error("locking {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: tenants {first:?} and {second:?} both hold {what} {value}")]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        value: String,
        first: String,
        second: String,
    },
    #[error("tenant name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("tenant {requested_by:?} cannot have {what} {value}: tenant {held_by:?} holds it")]
    Held {
        what: &'static str,
        value: String,
        requested_by: String,
        held_by: String,
    },
    #[error("tenant {tenant:?} already has uid {existing}, not the requested {requested}")]
    UidChanged {
        tenant: String,
        existing: u32,
        requested: u32,
    },
    #[error("tenant {tenant:?}: {source}")]
    Uid { tenant: String, source: McsError },
    #[error("tenant {tenant:?}: {source}")]
    Address { tenant: String, source: NetError },
    #[error("tenant {tenant:?}: address range {range} is outside the node's tenant space ({node} without the host's {host})")]
    OutsideTenantSpace {
        tenant: String,
        range: Ipv4Net,
        node: Ipv4Net,
        host: Ipv4Net,
    },
    #[error("tenant {tenant:?}: home {home} would hold or sit in the state dir {dir} (only <state dir>/home/<name> and paths outside it are allowed)")]
    HomeInStateDir {
        tenant: String,
        home: PathBuf,
        dir: PathBuf,
    },
    #[error("tenant {tenant:?}: every uid {first}..={last} of the node range is taken")]
    Full {
        tenant: String,
        first: u32,
        last: u32,
    },
    #[error("serializing {path}: {message}")]
    Serialize { path: PathBuf, message: String },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("renaming {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
}

/// The registry of one state dir, locked for as long as this value lives.
#[derive(Debug)]
pub struct Registry {
    dir: PathBuf,
    node: NodeConfig,
    entries: Vec<Entry>,
    /// Holds the `flock`; closing it on drop releases the lock.
    _lock: File,
}

impl Registry {
    /// Opens (creating if needed) the registry in `dir` with the default node config,
    /// blocking until no other `Registry` holds the dir's lock.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry, RegistryError> {
        Registry::open_with(dir, NodeConfig::default())
    }

    /// As [`Registry::open`], with an explicit uid range and address network.
    pub fn open_with(dir: impl AsRef<Path>, node: NodeConfig) -> Result<Registry, RegistryError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| RegistryError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| RegistryError::OpenLock {
                path: lock_path.clone(),
                source,
            })?;
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => {
                    return Err(RegistryError::Lock {
                        path: lock_path,
                        source: err.into(),
                    })
                }
            }
        }
        let entries = load(&dir.join(REGISTRY_FILE))?;
        Ok(Registry {
            dir,
            node,
            entries,
            _lock: lock,
        })
    }

    /// Every tenant, in allocation order.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn list(&self) -> &[Entry] {
        &self.entries
    }

    /// Gives `name` a uid, label, home (`<dir>/home/<name>`) and address range.
    ///
    /// Idempotent: an existing tenant gets its entry back (if `requested_uid` is `None`
    /// or equal to its uid). Otherwise the requested uid, or the lowest free uid of the
    /// node range, is taken; a uid, label or address held by another tenant is refused
    /// naming both. Call [`Registry::save`] to persist.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn allocate(
        &mut self,
        name: &str,
        requested_uid: Option<u32>,
    ) -> Result<Entry, RegistryError> {
        self.claim(
            name,
            &Claim {
                uid: requested_uid,
                ..Claim::default()
            },
        )
    }

    /// As [`Registry::allocate`], with the profile's optional address range and home.
    ///
    /// A registered tenant keeps its uid (and so its label: its files carry it); its
    /// address range and home follow the profile, so an operator can move them. An
    /// address range overlapping another tenant's is refused naming both.
    pub fn claim(&mut self, name: &str, claim: &Claim) -> Result<Entry, RegistryError> {
        validate_name(name)?;
        if let Some(pos) = self.entries.iter().position(|e| e.name == name) {
            let existing = &self.entries[pos];
            if let Some(uid) = claim.uid.filter(|&uid| uid != existing.uid) {
                return Err(RegistryError::UidChanged {
                    tenant: name.to_string(),
                    existing: existing.uid,
                    requested: uid,
                });
            }
            let mut updated = existing.clone();
            if let Some(address) = claim.address {
                updated.address = address;
            }
            if let Some(home) = &claim.home {
                updated.home = home.clone();
            }
            updated.gid = claim.gid.unwrap_or(updated.uid);
            self.check_place(&updated, claim.address.is_some())?;
            self.entries[pos] = updated.clone();
            return Ok(updated);
        }
        let requested_uid = claim.uid;
        let range = self.node.range;
        let uid = match requested_uid {
            Some(uid) => uid,
            None => {
                let held: HashSet<u32> = self.entries.iter().map(|e| e.uid).collect();
                (range.base_uid()..=range.last_uid())
                    .find(|uid| !held.contains(uid))
                    .ok_or_else(|| RegistryError::Full {
                        tenant: name.to_string(),
                        first: range.base_uid(),
                        last: range.last_uid(),
                    })?
            }
        };
        let index = range.index_of(uid).map_err(|source| RegistryError::Uid {
            tenant: name.to_string(),
            source,
        })?;
        let label = Label::from_index(index).map_err(|source| RegistryError::Uid {
            tenant: name.to_string(),
            source,
        })?;
        let address =
            tenant_net(self.node.net, index).map_err(|source| RegistryError::Address {
                tenant: name.to_string(),
                source,
            })?;
        let address = claim.address.unwrap_or(address);
        let entry = Entry {
            name: name.to_string(),
            uid,
            gid: claim.gid.unwrap_or(uid),
            label,
            home: claim
                .home
                .clone()
                .unwrap_or_else(|| self.dir.join("home").join(name)),
            address,
        };
        for other in &self.entries {
            let clash = if other.uid == entry.uid {
                Some(("uid", entry.uid.to_string()))
            } else if other.label == entry.label {
                Some(("label", entry.label.to_string()))
            } else {
                None
            };
            if let Some((what, value)) = clash {
                return Err(RegistryError::Held {
                    what,
                    value,
                    requested_by: name.to_string(),
                    held_by: other.name.clone(),
                });
            }
        }
        self.check_place(&entry, claim.address.is_some())?;
        self.entries.push(entry.clone());
        Ok(entry)
    }

    /// Where a tenant lives must be its own: an address range inside the node's tenant
    /// space (an explicit one may not reach the host's first /16) overlapping no other
    /// tenant's, and a home neither inside nor around another tenant's home or the state
    /// dir (its owner and label would be changed by the home's preparation).
    fn check_place(&self, entry: &Entry, explicit_address: bool) -> Result<(), RegistryError> {
        let overlap = |a: &Ipv4Net, b: &Ipv4Net| a.contains(b.addr()) || b.contains(a.addr());
        let name = &entry.name;
        let wanted = entry.address;
        if explicit_address {
            let host = Ipv4Net::new(self.node.net.addr(), 16).expect("node nets are /8../15");
            let inside =
                self.node.net.contains(wanted.addr()) && wanted.prefix() >= self.node.net.prefix();
            if !inside || overlap(&host, &wanted) {
                return Err(RegistryError::OutsideTenantSpace {
                    tenant: name.clone(),
                    range: wanted,
                    node: self.node.net,
                    host,
                });
            }
        }
        for other in self.entries.iter().filter(|e| &e.name != name) {
            if overlap(&other.address, &wanted) {
                return Err(RegistryError::Held {
                    what: "address range overlapping",
                    value: format!("{wanted} ({} is {})", other.name, other.address),
                    requested_by: name.clone(),
                    held_by: other.name.clone(),
                });
            }
            if entry.home.starts_with(&other.home) || other.home.starts_with(&entry.home) {
                return Err(RegistryError::Held {
                    what: "home overlapping",
                    value: format!(
                        "{} ({} is {})",
                        entry.home.display(),
                        other.name,
                        other.home.display()
                    ),
                    requested_by: name.clone(),
                    held_by: other.name.clone(),
                });
            }
        }
        let homes = self.dir.join("home");
        let inside_state = entry.home.starts_with(&self.dir);
        if self.dir.starts_with(&entry.home)
            || (inside_state && (!entry.home.starts_with(&homes) || entry.home == homes))
        {
            return Err(RegistryError::HomeInStateDir {
                tenant: name.clone(),
                home: entry.home.clone(),
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    /// Forgets `name`, returning its entry if it had one. Call [`Registry::save`] to persist.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn release(&mut self, name: &str) -> Option<Entry> {
        let pos = self.entries.iter().position(|e| e.name == name)?;
        Some(self.entries.remove(pos))
    }

    /// Writes `tenants.toml` atomically: temp file, fsync, rename, fsync the dir.
    pub fn save(&self) -> Result<(), RegistryError> {
        let path = self.dir.join(REGISTRY_FILE);
        let tmp = self.dir.join(format!("{REGISTRY_FILE}.tmp"));
        let stored = Stored {
            tenants: self.entries.clone(),
        };
        let text = toml::to_string(&stored).map_err(|e| RegistryError::Serialize {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let write = |tmp: &Path| -> io::Result<()> {
            let mut f = File::create(tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write(&tmp).map_err(|source| RegistryError::Write {
            path: tmp.clone(),
            source,
        })?;
        fs::rename(&tmp, &path).map_err(|source| RegistryError::Rename {
            from: tmp,
            to: path.clone(),
            source,
        })?;
        // Best effort: makes the rename itself durable; the data is already safe.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

/// Tenant names become path components (the home) and appear in logs.
fn validate_name(name: &str) -> Result<(), RegistryError> {
    let bad = |reason| {
        Err(RegistryError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return bad("may only contain ASCII letters, digits, '-' and '_'");
    }
    Ok(())
}

/// Reads and checks `tenants.toml`; a missing file is an empty registry.
fn load(path: &Path) -> Result<Vec<Entry>, RegistryError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RegistryError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let stored: Stored = toml::from_str(&text).map_err(|e| RegistryError::Parse {
        path: path.to_path_buf(),
        line: e
            .span()
            .map_or(1, |s| text[..s.start].matches('\n').count() + 1),
        message: e.message().to_string(),
    })?;
    let entries = stored.tenants;
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[..i] {
            let clash = [
                ("name", a.name == b.name, a.name.clone()),
                ("uid", a.uid == b.uid, a.uid.to_string()),
                ("label", a.label == b.label, a.label.to_string()),
                ("address", a.address == b.address, a.address.to_string()),
            ];
            if let Some((what, _, value)) = clash.into_iter().find(|c| c.1) {
                return Err(RegistryError::Corrupt {
                    path: path.to_path_buf(),
                    what,
                    value,
                    first: b.name.clone(),
                    second: a.name.clone(),
                });
            }
        }
    }
    Ok(entries)
}

// Tests: `super::registry_tests` in label/mod.rs (keeps this file under 400 lines).
