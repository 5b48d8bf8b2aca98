//! The logic of `supervise label`: list the registry, and audit files and addresses
//! against it (whose home holds a path, and does its label say the same).
//!
//! Nothing here writes: an audit reads owners and labels and reports, so it is safe to run
//! on a live node. Only root can read `trusted.*` labels; run unprivileged, every file
//! looks unlabeled (the xattr read fails with ENODATA rather than EPERM).

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::registry::Entry;
use super::xattr;

/// Prints the tenants as an aligned table, or a line saying there are none in
/// `registry_path`.
pub fn list(entries: &[Entry], registry_path: &Path, out: &mut impl Write) -> io::Result<()> {
    if entries.is_empty() {
        return writeln!(
            out,
            "no tenants are registered in {}",
            registry_path.display()
        );
    }
    let header = ["NAME", "UID", "LABEL", "HOME", "ADDRESSES"].map(String::from);
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.name.clone(),
                e.uid.to_string(),
                e.label.to_string(),
                e.home.display().to_string(),
                e.address.to_string(),
            ]
        })
        .collect();
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// How a file's label compares with where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Inside a tenant's home, carrying that tenant's label.
    Ok,
    /// Inside a tenant's home, without a label.
    Unlabeled,
    /// Inside a tenant's home, carrying another label (of `label_of`, if any tenant's).
    Mislabeled { label_of: Option<String> },
    /// Outside every home, yet labeled (with `label_of`'s label, if any tenant's).
    Foreign { label_of: Option<String> },
    /// Outside every home and unlabeled: nothing the supervisor manages.
    Unmanaged,
}

impl Verdict {
    /// Whether the file is as the supervisor would leave it.
    pub fn is_clean(&self) -> bool {
        matches!(self, Verdict::Ok | Verdict::Unmanaged)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = |f: &mut fmt::Formatter<'_>, label_of: &Option<String>| match label_of {
            Some(name) => write!(f, " (label of tenant {name})"),
            None => write!(f, " (label of no registered tenant)"),
        };
        match self {
            Verdict::Ok => write!(f, "ok"),
            Verdict::Unlabeled => write!(f, "unlabeled"),
            Verdict::Mislabeled { label_of } => {
                write!(f, "mislabeled")?;
                whose(f, label_of)
            }
            Verdict::Foreign { label_of } => {
                write!(f, "foreign")?;
                whose(f, label_of)
            }
            Verdict::Unmanaged => write!(f, "unmanaged"),
        }
    }
}

/// One file's audit; `Display` is the one-line report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub path: PathBuf,
    pub owner_uid: u32,
    pub owner_gid: u32,
    /// The file's label xattr (lossily decoded if it is not UTF-8).
    pub found: Option<String>,
    /// The tenant whose home holds the file.
    pub tenant: Option<String>,
    /// That tenant's label.
    pub expected: Option<String>,
    pub verdict: Verdict,
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (uid, gid) = (self.owner_uid, self.owner_gid);
        write!(f, "{}: owner {uid}:{gid}, ", self.path.display())?;
        match &self.found {
            Some(label) => write!(f, "label {label}, ")?,
            None => write!(f, "label none, ")?,
        }
        match (&self.tenant, &self.expected) {
            (Some(tenant), Some(expected)) => write!(f, "tenant {tenant} (expects {expected})")?,
            _ => write!(f, "no tenant")?,
        }
        write!(f, ": {}", self.verdict)
    }
}

/// Every tenant's home, canonicalized once per audit run.
struct Homes<'a> {
    entries: &'a [Entry],
    homes: Vec<(PathBuf, &'a Entry)>,
}

impl<'a> Homes<'a> {
    fn new(entries: &'a [Entry]) -> Homes<'a> {
        let homes = entries
            .iter()
            // A home not created yet holds nothing, but compare it as written anyway.
            .map(|e| {
                (
                    fs::canonicalize(&e.home).unwrap_or_else(|_| e.home.clone()),
                    e,
                )
            })
            .collect();
        Homes { entries, homes }
    }

    /// The tenant whose home holds `canonical`, the deepest home if homes nest.
    fn containing(&self, canonical: &Path) -> Option<&'a Entry> {
        self.homes
            .iter()
            .filter(|(home, _)| canonical.starts_with(home))
            .max_by_key(|(home, _)| home.components().count())
            .map(|(_, entry)| *entry)
    }

    fn label_owner(&self, label: &str) -> Option<String> {
        let entry = self.entries.iter().find(|e| e.label.to_string() == label)?;
        Some(entry.name.clone())
    }

    fn audit(&self, path: &Path) -> io::Result<Audit> {
        let meta = fs::symlink_metadata(path)?;
        let found = xattr::get_raw(path)?.map(|raw| String::from_utf8_lossy(&raw).into_owned());
        let tenant = self.containing(&locate(path)?);
        let expected = tenant.map(|t| t.label.to_string());
        let label_of = || found.as_deref().and_then(|l| self.label_owner(l));
        let verdict = match (&expected, &found) {
            (Some(expected), Some(found)) if expected == found => Verdict::Ok,
            (Some(_), None) => Verdict::Unlabeled,
            (Some(_), Some(_)) => Verdict::Mislabeled {
                label_of: label_of(),
            },
            (None, Some(_)) => Verdict::Foreign {
                label_of: label_of(),
            },
            (None, None) => Verdict::Unmanaged,
        };
        Ok(Audit {
            path: path.to_path_buf(),
            owner_uid: meta.uid(),
            owner_gid: meta.gid(),
            found,
            tenant: tenant.map(|t| t.name.clone()),
            expected,
            verdict,
        })
    }
}

/// Where `path` really is, without following a symlink in its last component (the link
/// lives where it is, whatever it points at).
fn locate(path: &Path) -> io::Result<PathBuf> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(fs::canonicalize(parent)?.join(name))
        }
        _ => fs::canonicalize(path),
    }
}

/// Audits one file (or symlink, or directory itself) against the tenants' homes.
#[cfg_attr(not(test), allow(dead_code))]
pub fn audit_path(path: &Path, entries: &[Entry]) -> io::Result<Audit> {
    Homes::new(entries).audit(path)
}

/// The tenant whose address range holds `ip`.
pub fn audit_address(ip: Ipv4Addr, entries: &[Entry]) -> Option<&Entry> {
    entries.iter().find(|e| e.address.contains(ip))
}

/// One address's audit; `Display` is the one-line report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressAudit<'a> {
    pub ip: Ipv4Addr,
    pub tenant: Option<&'a Entry>,
}

impl<'a> AddressAudit<'a> {
    pub fn new(ip: Ipv4Addr, entries: &'a [Entry]) -> AddressAudit<'a> {
        AddressAudit {
            ip,
            tenant: audit_address(ip, entries),
        }
    }
}

impl fmt::Display for AddressAudit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tenant {
            Some(e) => write!(
                f,
                "{}: tenant {} (range {}, label {})",
                self.ip, e.name, e.address, e.label
            ),
            None => write!(f, "{}: no tenant's range holds this address", self.ip),
        }
    }
}

/// `pid:N`: the label a process carries is its uid's (the mapping is a bijection), so
/// the report names the uid, the tenant holding it and its label.
fn process_audit(pid: &str, entries: &[Entry]) -> String {
    let status = match pid.parse::<u32>().map_err(|e| e.to_string()).and_then(|n| {
        std::fs::read_to_string(format!("/proc/{n}/status")).map_err(|e| e.to_string())
    }) {
        Ok(status) => status,
        Err(error) => return format!("pid {pid}: cannot audit: {error}"),
    };
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let uid: Option<u32> = field("Uid:")
        .split_whitespace()
        .next()
        .and_then(|u| u.parse().ok());
    let name = field("Name:");
    match uid.and_then(|u| entries.iter().find(|e| e.uid == u)) {
        Some(e) => format!(
            "pid {pid} ({name}): uid {}, tenant {}, label {}",
            e.uid, e.name, e.label
        ),
        None => format!(
            "pid {pid} ({name}): uid {}: no tenant's uid",
            uid.map_or("?".into(), |u| u.to_string())
        ),
    }
}

/// Prints one line per argument (every file below a directory too when `recursive`; an
/// argument that parses as an IPv4 address is audited as an address). True when every
/// file is `Ok` or `Unmanaged`; a file that cannot be audited prints why and counts as
/// not clean. Symlinks are reported, never followed; the walk stays on each argument's
/// filesystem. Errors are only those of writing to `out`.
pub fn run_audit(
    paths: &[PathBuf],
    recursive: bool,
    entries: &[Entry],
    out: &mut impl Write,
) -> io::Result<bool> {
    let homes = Homes::new(entries);
    let mut clean = true;
    for arg in paths {
        if let Some(ip) = arg.to_str().and_then(|s| s.parse::<Ipv4Addr>().ok()) {
            writeln!(out, "{}", AddressAudit::new(ip, entries))?;
            continue;
        }
        if let Some(pid) = arg.to_str().and_then(|s| s.strip_prefix("pid:")) {
            writeln!(out, "{}", process_audit(pid, entries))?;
            continue;
        }
        let mut stack = vec![arg.clone()];
        let mut dev = None;
        while let Some(path) = stack.pop() {
            let audit = match homes.audit(&path) {
                Ok(audit) => audit,
                Err(error) => {
                    writeln!(out, "{}: cannot audit: {error}", path.display())?;
                    clean = false;
                    continue;
                }
            };
            writeln!(out, "{audit}")?;
            clean &= audit.verdict.is_clean();
            if !recursive {
                continue;
            }
            match children(&path, &mut dev) {
                Ok(mut below) => {
                    // Popped in name order.
                    below.sort_unstable_by(|a, b| b.cmp(a));
                    stack.extend(below);
                }
                Err(error) => {
                    writeln!(out, "{}: cannot read directory: {error}", path.display())?;
                    clean = false;
                }
            }
        }
    }
    Ok(clean)
}

/// The entries of `path` if it is a real directory on the walk's filesystem (`dev`, set by
/// the first call); nothing for files, symlinks and other filesystems.
fn children(path: &Path, dev: &mut Option<u64>) -> io::Result<Vec<PathBuf>> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() || *dev.get_or_insert(meta.dev()) != meta.dev() {
        return Ok(Vec::new());
    }
    fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect()
}

#[cfg(test)]
mod tests;
