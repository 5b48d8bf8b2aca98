//! The node's keyring files under `<state dir>/keyring/` (0700, root's): the host key
//! that signs results (its fingerprint is the node's id), the age identity request
//! arguments may be sealed to, and the replay cache. Every supervising process that
//! shares a state dir is the same node: the first one to start makes the keys, the
//! others read them, and all of them share one nonce cache under a lock.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use keyring::replay::{NonceCache, DEFAULT_CAPACITY};
use keyring::seal::NodeKeys;
use keyring::signers::{Signers, MAX_FILE};
use keyring::Refusal;

const HOST_KEY: &str = "host_ed25519_key";
const AGE_IDENTITY: &str = "node.age";
const NONCES: &str = "nonces";
const NONCES_LOCK: &str = "nonces.lock";
/// How long a request waits for the node's replay cache.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// `<state dir>/keyring`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("keyring")
}

/// Appends one line to `<state dir>/keyring/audit.log` (0600) and syncs it: the record
/// of every signed request, which no log filter or full queue can drop.
pub fn append_audit(state_dir: &Path, line: &str) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir(state_dir).join("audit.log"))?;
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// Checks that nobody but root can change what the keyring reads: the state dir and
/// every directory above it are root's and not writable by group or others (a
/// root-owned sticky directory such as /tmp is fine: others cannot replace root's
/// entries in it), as sshd's StrictModes asks of a home. Then makes `keyring/`.
/// Returns the state dir's resolved path, which the keyring uses from then on (a
/// symlink on the way is followed once, here, after its own directory was checked).
pub fn prepare(state_dir: &Path) -> io::Result<PathBuf> {
    let real = secure_path(state_dir)?;
    prepare_dir(&dir(&real))?;
    Ok(real)
}

/// Checks `path` as given, component by component (each one, and each symlink's own
/// directory, must be root's alone), then as resolved ([`secure_ancestors`]); returns
/// the resolved path. A symlink in a directory another user can write could otherwise
/// be pointed elsewhere between two uses.
pub fn secure_path(path: &Path) -> io::Result<PathBuf> {
    let absolute = std::path::absolute(path)?;
    let mut prefix = PathBuf::new();
    for component in absolute.components() {
        prefix.push(component);
        let meta = fs::symlink_metadata(&prefix)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", prefix.display())))?;
        let is_last = prefix == absolute;
        check_owner(&prefix, path, &meta, !is_last)?;
    }
    secure_ancestors(path)?;
    fs::canonicalize(path)
}

fn check_owner(entry: &Path, of: &Path, meta: &fs::Metadata, ancestor: bool) -> io::Result<()> {
    let mode = meta.mode();
    // A root-owned sticky directory (such as /tmp) is fine above the state dir: others
    // cannot replace root's entries in it. The state dir itself must not be one.
    let sticky_root = ancestor && mode & 0o1000 != 0 && meta.uid() == 0;
    let symlink = meta.file_type().is_symlink();
    if meta.uid() != 0 || (!symlink && mode & 0o022 != 0 && !sticky_root) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} (on the way to {}) is owned by uid {} with mode {:o}: only root may be able to change what the keyring trusts",
                entry.display(),
                of.display(),
                meta.uid(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Refuses `dir` when it, or a directory above it, could be changed by someone other
/// than root.
pub fn secure_ancestors(dir: &Path) -> io::Result<()> {
    let real = fs::canonicalize(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    for (i, ancestor) in real.ancestors().enumerate() {
        check_owner(ancestor, dir, &fs::metadata(ancestor)?, i > 0)?;
    }
    Ok(())
}

/// The node's keys, made on first use.
pub fn node_keys(state_dir: &Path) -> io::Result<NodeKeys> {
    let dir = dir(state_dir);
    prepare_dir(&dir)?;
    let host = dir.join(HOST_KEY);
    let age = dir.join(AGE_IDENTITY);
    if !host.exists() || !age.exists() {
        let mut host_seed = [0u8; 32];
        let mut age_seed = [0u8; 32];
        random(&mut host_seed)?;
        random(&mut age_seed)?;
        let keys = NodeKeys::from_seeds(&host_seed, &age_seed, "supervise node key");
        host_seed.fill(0);
        age_seed.fill(0);
        // Both files or neither: a partial pair from a crash is completed by the next
        // start only where a file is missing (write_new never replaces one).
        write_new(&host, keys.host_key_text().as_bytes())?;
        write_new(&age, format!("{}\n", keys.age_identity_text()).as_bytes())?;
    }
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    };
    let keys = NodeKeys::load(&read(&host)?, &read(&age)?).map_err(|m| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {m}", dir.display()),
        )
    })?;
    // For operators (`ssh-keygen -l -f`), from the key that won any race.
    let public = dir.join(format!("{HOST_KEY}.pub"));
    if !public.exists() {
        write_new(&public, format!("{}\n", keys.host_public()).as_bytes())?;
    }
    Ok(keys)
}

/// The trusted keys at `path`, read afresh; `None`: there is no such file (nobody is
/// trusted). Only a file root alone can change is trusted: its directories are checked
/// (see [`secure_ancestors`]), it is opened without following a symlink, and the
/// descriptor itself is checked (a regular file of root's, not writable by group or
/// others) before at most [`MAX_FILE`] bytes are read from it.
pub fn read_signers(path: &Path) -> Result<Option<Signers>, Refusal> {
    use std::io::Read as _;
    let shown = path.display();
    let refuse = |m: String| Refusal::new("signers_file", m);
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(e) = secure_ancestors(parent) {
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(refuse(format!("{shown}: {e}")));
    }
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(refuse(format!(
                "cannot open {shown} ({e}; a symlink is not followed): no key is trusted"
            )))
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| refuse(format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(format!("{shown} is not a regular file")));
    }
    if meta.uid() != 0 {
        return Err(refuse(format!(
            "{shown} is owned by uid {}, not root: refusing to trust it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(refuse(format!(
            "{shown} is writable by group or others (mode {:o}): refusing to trust it",
            meta.mode() & 0o7777
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read {shown}: {e}")))?;
    if bytes.len() > MAX_FILE {
        return Err(refuse(format!("{shown} is larger than {MAX_FILE} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| refuse(format!("{shown} is not UTF-8")))?;
    Signers::parse(&text, &shown.to_string())
        .map(Some)
        .map_err(refuse)
}

/// Runs `decide` with the node's nonce cache, locked against every other supervising
/// process of the node, and persists it when `decide` changed it. An unreadable cache
/// refuses the request: starting from an empty one would forget live nonces.
pub fn with_nonces<T>(
    state_dir: &Path,
    decide: impl FnOnce(&mut NonceCache) -> T,
) -> Result<T, Refusal> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Refusal::new(
            "nonce_store",
            format!(
                "the replay cache in {}: {what}: {e}",
                dir(state_dir).display()
            ),
        )
    };
    let dir = dir(state_dir);
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(NONCES_LOCK))
        .map_err(|e| fail("cannot open its lock", &e))?;
    // Bounded: a holder that never lets go (another process stuck, or a flood of
    // requests on the node) refuses this request instead of blocking its thread.
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK | rustix::io::Errno::INTR)
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => return Err(fail("cannot lock it within 2 s", &e)),
        }
    }
    let path = dir.join(NONCES);
    let mut cache = match fs::read_to_string(&path) {
        Ok(text) => NonceCache::parse(&text, DEFAULT_CAPACITY).map_err(|m| fail("damaged", &m))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => NonceCache::new(DEFAULT_CAPACITY),
        Err(e) => return Err(fail("cannot read it", &e)),
    };
    let before = cache.clone();
    let out = decide(&mut cache);
    if cache != before {
        let tmp = dir.join(format!("{NONCES}.tmp"));
        let written = fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| {
                f.write_all(cache.encode().as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| fs::rename(&tmp, &path))
            // The rename itself must survive a crash, or a restart could forget it.
            .and_then(|()| fs::File::open(&dir)?.sync_all());
        written.map_err(|e| fail("cannot persist it (the request is refused, not run)", &e))?;
    }
    Ok(out)
}

/// Creates `dir` 0700, or checks an existing one is a root-owned directory and makes it
/// 0700: the keys' protection is the directory's.
fn prepare_dir(dir: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", dir.display()),
            ))
        }
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing {}: not a root-owned directory", dir.display()),
        ));
    }
    if meta.mode() & 0o7777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes a new 0600 file; an existing one (another process was first) is kept.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

fn random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        filled +=
            rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(())
}

/// 128 random bits, for nonces and instance ids.
pub fn random_id() -> io::Result<[u8; 16]> {
    let mut id = [0u8; 16];
    random(&mut id)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_root_alone_can_change_are_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("state");
        fs::create_dir(&inner).unwrap();
        secure_ancestors(&inner).unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let e = secure_ancestors(&inner).unwrap_err();
        assert!(e.to_string().contains("mode 777"), "{e}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        secure_ancestors(&inner).unwrap(); // sticky and root's, as /tmp
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            secure_ancestors(&inner).is_err(),
            "the state dir itself may not be /tmp-like"
        );
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o755)).unwrap();
        // A symlink in a directory someone else controls is refused as given.
        let open = dir.path().join("open");
        fs::create_dir(&open).unwrap();
        rustix::fs::chown(&open, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        let link = open.join("state");
        std::os::unix::fs::symlink(&inner, &link).unwrap();
        let e = secure_path(&link).unwrap_err();
        assert!(e.to_string().contains("uid 65534"), "{e}");
        assert_eq!(
            secure_path(&inner).unwrap(),
            fs::canonicalize(&inner).unwrap()
        );
        rustix::fs::chown(&inner, Some(rustix::process::Uid::from_raw(65534)), None).unwrap();
        let e = secure_ancestors(&inner).unwrap_err();
        assert!(e.to_string().contains("uid 65534"), "{e}");
    }

    #[test]
    fn a_signers_file_must_be_roots_alone_and_not_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allowed_signers");
        assert!(read_signers(&path).unwrap().is_none());
        fs::write(&path, "# nobody yet\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_signers(&path).unwrap().unwrap().entries().len(), 0);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        assert_eq!(read_signers(&path).unwrap_err().code, "signers_file");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_signers(&link).unwrap_err().code, "signers_file");
        fs::write(&path, vec![b'#'; MAX_FILE + 1]).unwrap();
        assert!(read_signers(&path).unwrap_err().message.contains("larger"));
    }
}
