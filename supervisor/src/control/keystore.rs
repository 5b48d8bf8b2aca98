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
use keyring::Refusal;

const HOST_KEY: &str = "host_ed25519_key";
const AGE_IDENTITY: &str = "node.age";
const NONCES: &str = "nonces";
const NONCES_LOCK: &str = "nonces.lock";

/// `<state dir>/keyring`.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("keyring")
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
        let comment = format!("supervise node key ({})", state_dir.display());
        let keys = NodeKeys::from_seeds(&host_seed, &age_seed, &comment);
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
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| fail("cannot lock it", &e))?;
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
            .and_then(|()| fs::rename(&tmp, &path));
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
