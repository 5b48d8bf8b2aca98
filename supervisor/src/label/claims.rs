//! Node-wide claims on a confined tenant's identity.
//!
//! The registry that hands out uids, MCS labels and address ranges lives in a state
//! dir, so two state dirs on one node hand out the same ones: two different tenants
//! would share a uid and a category, which is what keeps them apart. Each supervisor of
//! a confined tenant therefore holds, for its whole life, an exclusive `flock` on one
//! file per identity under [`CLAIMS_DIR`] (tmpfs: empty after a reboot; a lock goes with
//! the process that held it). A second supervisor claiming a uid, label or range in use
//! is refused, naming the tenant and state dir that hold it.

#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::registry::Entry;

/// Where the claims live.
pub const CLAIMS_DIR: &str = "/run/supervise/claims";

/// The claims of one tenant, held until dropped (the supervisor keeps them to the end).
#[derive(Debug)]
pub struct NodeClaims {
    _held: Vec<File>,
}

/// Why a claim was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another live supervisor holds it.
    #[error("{what} is in use on this node by {holder}; every state dir allocates uids, labels and address ranges on its own, so run a node's tenants from one state dir (or give this tenant its own uid in its profile)")]
    Taken {
        /// What was claimed (e.g. `uid 200000`).
        what: String,
        /// Who holds it, as the holder wrote it.
        holder: String,
    },
    /// The claim file could not be made or locked.
    #[error("claiming {what} in {path}: {source}")]
    Io {
        /// What was claimed.
        what: String,
        /// The claim file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Claims `entry`'s uid, label and address range node-wide for this process.
pub fn hold(entry: &Entry, state_dir: &Path) -> Result<NodeClaims, ClaimError> {
    hold_in(Path::new(CLAIMS_DIR), entry, state_dir)
}

/// [`hold`] with the claims in `dir`.
pub fn hold_in(dir: &Path, entry: &Entry, state_dir: &Path) -> Result<NodeClaims, ClaimError> {
    let file_name = |s: String| s.replace([':', ',', '/'], "_");
    let claims = [
        (format!("uid {}", entry.uid), format!("uid-{}", entry.uid)),
        (
            format!("label {}", entry.label),
            file_name(format!("label-{}", entry.label)),
        ),
        (
            format!("address range {}", entry.address),
            file_name(format!("net-{}", entry.address)),
        ),
    ];
    let me = format!(
        "tenant {:?} (state dir {}, supervisor pid {})",
        entry.name,
        state_dir.display(),
        std::process::id()
    );
    let mut held = Vec::with_capacity(claims.len());
    for (what, name) in claims {
        let path = dir.join(name);
        let io = |source: io::Error| ClaimError::Io {
            what: what.clone(),
            path: path.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(ClaimError::Taken {
                    what,
                    holder: if holder.is_empty() {
                        "another supervisor".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{me}").map_err(io)?;
        held.push(file);
    }
    Ok(NodeClaims { _held: held })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::registry::Registry;

    fn entry(dir: &Path, name: &str) -> Entry {
        let mut registry = Registry::open(dir).unwrap();
        registry.claim(name, &Default::default()).unwrap()
    }

    #[test]
    fn a_second_state_dir_handing_out_the_same_identity_is_refused_while_the_first_lives() {
        let (a, b, claims) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        // Two registries, two tenants: the same uid, label and range.
        let (first, second) = (entry(a.path(), "one"), entry(b.path(), "two"));
        assert_eq!(first.uid, second.uid);
        let held = hold_in(claims.path(), &first, a.path()).unwrap();
        let refused = hold_in(claims.path(), &second, b.path()).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.starts_with(&format!(
                "uid {} is in use on this node by tenant \"one\"",
                first.uid
            )),
            "{text}"
        );
        assert!(text.contains(&a.path().display().to_string()), "{text}");
        drop(held);
        hold_in(claims.path(), &second, b.path()).expect("free once the first is gone");
    }
}
