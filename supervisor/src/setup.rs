//! Before a confined tenant launches: its registry entry (uid, label, home, range), an
//! account for its uid (PostgreSQL and many others refuse a uid without a passwd
//! entry), and its labeled home. Each step's error names what it was doing.

#![forbid(unsafe_code)]

use crate::diag::Kind;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use crate::label::registry::{Claim, Entry, Registry, RegistryError};
use crate::label::xattr::{self, HomeError};
use crate::label::{policy::primary_address, DEFAULT_NODE_NET};
use crate::profile::account;
use crate::profile::{Confinement, Profile};

/// A setup step that failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The profile names something this host does not have.
    #[error("{0}")]
    Profile(String),
    /// The registry refused or could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The tenant's uid, label or address range is held by another supervisor.
    #[error("tenant {tenant:?}: {claim}")]
    Claim {
        /// The tenant.
        tenant: String,
        /// Why (its text is the whole reason; not chained again).
        claim: crate::label::claims::ClaimError,
    },
    /// The tenant's account could not be created.
    #[error("creating account {account} (uid {uid}) for tenant {tenant:?}: {message}")]
    Account {
        /// The tenant.
        tenant: String,
        /// The account name.
        account: String,
        /// Its uid.
        uid: u32,
        /// What failed.
        message: String,
    },
    /// The home could not be created or labeled.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The home's own filesystem (`limits.home_size`) could not be set up.
    #[error(transparent)]
    Limits(#[from] crate::limits::LimitsError),
    /// A directory above the home is closed to the tenant's uid.
    #[error("tenant {tenant:?}: {dir} (mode {mode:o}) is not searchable by uid {uid}, so its home {home} is unreachable")]
    HomeUnreachable {
        /// The tenant.
        tenant: String,
        /// The closed directory.
        dir: std::path::PathBuf,
        /// Its mode bits.
        mode: u32,
        /// The tenant's uid.
        uid: u32,
        /// The home.
        home: std::path::PathBuf,
    },
}

/// Claims the tenant's entry in the registry of `state_dir` (held locked only for the
/// claim) and persists it.
pub fn claim(
    profile: &Profile,
    confinement: &Confinement,
    state_dir: &Path,
) -> Result<Entry, SetupError> {
    let mut registry = Registry::open(state_dir)?;
    let entry = registry.claim(
        &profile.tenant,
        &Claim {
            uid: confinement.uid,
            gid: confinement.gid,
            address: confinement.address,
            home: confinement.home.clone(),
        },
    )?;
    registry.save()?;
    Ok(entry)
}

/// The node network tenants' ranges are drawn from.
pub fn node_net() -> crate::label::Ipv4Net {
    DEFAULT_NODE_NET
}

/// Makes sure `entry.uid` has a passwd entry (and `entry.gid` a group): an existing one
/// is used as is; otherwise `sv-<name>` is created with `groupadd`/`useradd`, no login
/// shell, the tenant's home. Returns the account's name.
pub fn ensure_account(entry: &Entry) -> Result<String, SetupError> {
    if let Some(name) = user_name(entry.uid) {
        return Ok(name);
    }
    let account = format!("sv-{}", entry.name);
    let fail = |message: String| SetupError::Account {
        tenant: entry.name.clone(),
        account: account.clone(),
        uid: entry.uid,
        message,
    };
    if account::user_exists(&account) {
        return Err(fail(format!(
            "the name {account} is taken by another uid; remove it or give the tenant that uid"
        )));
    }
    if !account::group_exists(entry.gid) {
        run(Command::new("groupadd")
            .arg("--gid")
            .arg(entry.gid.to_string())
            .arg(&account))
        .map_err(|m| fail(format!("groupadd: {m}")))?;
    }
    run(Command::new("useradd")
        .args(["--uid", &entry.uid.to_string()])
        .args(["--gid", &entry.gid.to_string()])
        .arg("--no-create-home")
        .arg("--home-dir")
        .arg(&entry.home)
        .args(["--shell", "/usr/sbin/nologin"])
        .args(["--comment", &format!("supervise tenant {}", entry.name)])
        .arg(&account))
    .map_err(|m| fail(format!("useradd: {m}")))?;
    tracing::info!(target: Kind::Tenant.target(), tenant = %entry.name, account, uid = entry.uid, "created account for the tenant's uid");
    Ok(account)
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run it ({e}); install the `passwd` package"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Creates, owns and labels the home; logs what the labeling changed.
pub fn prepare_home(entry: &Entry) -> Result<(), SetupError> {
    let label = entry.label.to_string();
    let count = xattr::prepare_home(&entry.home, entry.uid, entry.gid, &label)?;
    for dir in entry.home.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        let owner = std::os::unix::fs::MetadataExt::uid(&meta);
        let searchable = mode & 0o001 != 0 || (owner == entry.uid && mode & 0o100 != 0);
        if !searchable {
            return Err(SetupError::HomeUnreachable {
                tenant: entry.name.clone(),
                dir: dir.to_owned(),
                mode,
                uid: entry.uid,
                home: entry.home.clone(),
            });
        }
    }
    tracing::info!(target: Kind::Tenant.target(), tenant = %entry.name, home = %entry.home.display(), %label, counts = ?count, "home labeled");
    Ok(())
}

/// Expands `{home}`, `{address}`, `{range}`, `{label}` and `{name}` in a profile's
/// command, so a server can be told to listen on its own address.
pub fn expand_command(command: &[String], entry: Option<&Entry>) -> Vec<OsString> {
    command
        .iter()
        .map(|arg| {
            let mut arg = arg.clone();
            if let Some(e) = entry {
                for (key, value) in [
                    ("{home}", e.home.display().to_string()),
                    ("{address}", primary_address(e).to_string()),
                    ("{range}", e.address.to_string()),
                    ("{label}", e.label.to_string()),
                    ("{name}", e.name.clone()),
                ] {
                    arg = arg.replace(key, &value);
                }
            }
            arg.into()
        })
        .collect()
}

fn user_name(uid: u32) -> Option<String> {
    account::account_of(uid).map(|a| a.name)
}
