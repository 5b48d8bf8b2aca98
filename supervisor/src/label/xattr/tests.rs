//! Tests for `xattr.rs` (kept apart so that file stays short). They run as root on a
//! filesystem with trusted xattrs; anything else fails loudly rather than skipping.

use super::*;
use rustix::mount::{MountFlags, MountPropagationFlags};
use std::os::unix::fs::{symlink, MetadataExt};

const A: &str = "s0:c0,c1";
const B: &str = "s0:c0,c2";

/// A temp dir whose filesystem is known to take trusted xattrs, or a panic naming it.
pub(in crate::label) fn xattr_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    fs::write(&probe, "").unwrap();
    if let Err(e) = set_label(&probe, A) {
        let fs_type = match rustix::fs::statfs(dir.path()) {
            Ok(sfs) => format!("{:#x}", sfs.f_type),
            Err(_) => "unknown".into(),
        };
        panic!(
            "cannot set {LABEL_XATTR} on {} (filesystem magic {fs_type}): {e}; these tests \
             need root and a filesystem with trusted xattrs (ext4, xfs, btrfs, tmpfs)",
            dir.path().display()
        );
    }
    fs::remove_file(&probe).unwrap();
    dir
}

fn label_of(path: &Path) -> Option<String> {
    get_label(path).unwrap()
}

#[test]
fn set_get_round_trip_and_symlinks_are_not_followed() {
    assert_eq!(LABEL_XATTR_C.to_str().unwrap(), LABEL_XATTR);
    let dir = xattr_dir();
    let file = dir.path().join("f");
    fs::write(&file, "x").unwrap();
    assert_eq!(label_of(&file), None);
    set_label(&file, A).unwrap();
    assert_eq!(label_of(&file).as_deref(), Some(A));
    set_label(&file, B).unwrap();
    assert_eq!(label_of(&file).as_deref(), Some(B));

    let link = dir.path().join("link");
    symlink(&file, &link).unwrap();
    assert_eq!(
        label_of(&link),
        None,
        "get must read the link, not its target"
    );
    set_label(&link, A).unwrap();
    assert_eq!(label_of(&link).as_deref(), Some(A));
    assert_eq!(label_of(&file).as_deref(), Some(B), "target untouched");
    let dangling = dir.path().join("dangling");
    symlink("/nonexistent/x", &dangling).unwrap();
    set_label(&dangling, A).unwrap();
    assert_eq!(label_of(&dangling).as_deref(), Some(A));

    let missing = get_label(&dir.path().join("missing")).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
}

#[test]
fn label_tree_counts_and_never_follows_symlinks() {
    let dir = xattr_dir();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "x").unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("f"), "x").unwrap();
    fs::write(root.join("a/b/g"), "x").unwrap();
    symlink(&outside, root.join("a/to-dir")).unwrap();
    symlink(outside.join("secret"), root.join("to-file")).unwrap();
    // root, a, a/b, f, a/b/g, two links.
    let count = label_tree(&root, A).unwrap();
    assert_eq!(
        count,
        TreeCount {
            labeled: 7,
            already_correct: 0,
            relabeled: 0
        }
    );
    assert_eq!(label_of(&root.join("a/to-dir")).as_deref(), Some(A));
    assert_eq!(label_of(&outside), None, "followed a directory symlink");
    assert_eq!(
        label_of(&outside.join("secret")),
        None,
        "followed a file symlink"
    );

    set_label(&root.join("a/b/g"), B).unwrap();
    fs::write(root.join("new"), "x").unwrap();
    let count = label_tree(&root, A).unwrap();
    assert_eq!(
        count,
        TreeCount {
            labeled: 1,
            already_correct: 6,
            relabeled: 1
        }
    );
    assert_eq!(count.total(), 8);
    assert_eq!(label_of(&root.join("a/b/g")).as_deref(), Some(A));

    // A single file, or a symlink, as the root.
    let count = label_tree(&root.join("to-file"), B).unwrap();
    assert_eq!(count.relabeled, 1);
    assert_eq!(label_of(&outside.join("secret")), None);
    let err = label_tree(&dir.path().join("missing"), A).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn a_file_vanishing_mid_walk_is_skipped() {
    let dir = xattr_dir();
    for name in ["a", "b", "c", "d"] {
        fs::create_dir(dir.path().join(name)).unwrap();
        fs::write(dir.path().join(name).join("f"), "x").unwrap();
    }
    let root = open_dir_at(None, dir.path()).unwrap();
    let dev = stat_at(root.as_fd(), OsStr::new("")).unwrap().st_dev;
    let (mut seen, mut deleted) = (Vec::new(), false);
    // The first subdirectory visited deletes its siblings after they were listed.
    walk(root, dir.path().to_path_buf(), dev, &mut |v| {
        if v.is_dir && v.path != dir.path() && !deleted {
            deleted = true;
            for name in ["a", "b", "c", "d"] {
                let sibling = dir.path().join(name);
                if sibling != v.path {
                    let _ = fs::remove_dir_all(sibling);
                }
            }
        }
        seen.push(v.path.to_path_buf());
        // A visit reporting ENOENT is also a vanished file, not an error.
        Err(io::ErrorKind::NotFound.into())
    })
    .unwrap();
    // The root, the surviving directory and its file.
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
#[allow(unsafe_code)] // unshare: rustix has no safe wrapper (see the SAFETY comment)
fn label_tree_stays_on_its_filesystem() {
    let dir = xattr_dir();
    let root = dir.path().to_path_buf();
    fs::create_dir(root.join("mnt")).unwrap();
    fs::write(root.join("f"), "x").unwrap();
    // A private mount namespace for this thread only: the tmpfs goes away with it.
    let result = std::thread::spawn(move || {
        // SAFETY: rustix's contract for `unshare_unsafe` is about CLONE_FILES (threads
        // must not see descriptors from an unshared table), which is not asked for.
        // CLONE_NEWNS moves only this thread, which ends with this closure, into a new
        // mount namespace (it implies CLONE_FS, which unshares this thread's root and
        // cwd, not the process's); no descriptor table changes.
        let unshared =
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) };
        unshared.unwrap_or_else(|e| panic!("unshare: {}", io::Error::from(e)));
        let private = MountPropagationFlags::REC | MountPropagationFlags::PRIVATE;
        rustix::mount::mount_change(c"/", private)
            .unwrap_or_else(|e| panic!("making / private: {}", io::Error::from(e)));
        let target = c_path(&root.join("mnt")).unwrap();
        rustix::mount::mount(
            c"tmpfs",
            target.as_c_str(),
            c"tmpfs",
            MountFlags::empty(),
            None,
        )
        .unwrap_or_else(|e| panic!("mounting tmpfs: {}", io::Error::from(e)));
        fs::write(root.join("mnt/inner"), "x").unwrap();
        let count = label_tree(&root, A).unwrap();
        (
            count,
            label_of(&root.join("mnt")),
            label_of(&root.join("mnt/inner")),
        )
    })
    .join()
    .unwrap();
    // The root and `f`; neither the mount point nor what is inside it.
    let count = TreeCount {
        labeled: 2,
        already_correct: 0,
        relabeled: 0,
    };
    assert_eq!(result, (count, None, None));
}

#[test]
fn prepare_home_owns_modes_and_labels() {
    let dir = xattr_dir();
    let home = dir.path().join("state/home/pg-a");
    let count = prepare_home(&home, 200_001, 200_001, B).unwrap();
    assert_eq!(
        count,
        TreeCount {
            labeled: 1,
            already_correct: 0,
            relabeled: 0
        }
    );
    let meta = fs::metadata(&home).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (200_001, 200_001, 0o700)
    );
    for parent in [dir.path().join("state"), dir.path().join("state/home")] {
        let meta = fs::metadata(&parent).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o755),
            "{parent:?}"
        );
        assert_eq!(label_of(&parent), None);
    }
    assert_eq!(label_of(&home).as_deref(), Some(B));

    // Existing contents keep their owners and get the label; a second run is a no-op.
    fs::write(home.join("root-file"), "x").unwrap();
    fs::create_dir(home.join("sub")).unwrap();
    std::os::unix::fs::chown(home.join("sub"), Some(200_001), Some(200_001)).unwrap();
    fs::set_permissions(&home, Permissions::from_mode(0o755)).unwrap();
    let count = prepare_home(&home, 200_001, 200_001, B).unwrap();
    assert_eq!(
        count,
        TreeCount {
            labeled: 2,
            already_correct: 1,
            relabeled: 0
        }
    );
    assert_eq!(fs::metadata(&home).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(home.join("root-file")).unwrap().uid(), 0);
    assert_eq!(label_of(&home.join("root-file")).as_deref(), Some(B));
}

#[test]
fn prepare_home_refusals_name_the_path() {
    let dir = xattr_dir();
    let target = dir.path().join("target");
    fs::create_dir(&target).unwrap();
    let link = dir.path().join("link");
    symlink(&target, &link).unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let slash = dir.path().join("slash");
    symlink("/", &slash).unwrap();

    let refuse = |home: &Path| {
        let err = prepare_home(home, 200_001, 200_001, A).unwrap_err();
        assert!(
            err.to_string().contains(&home.display().to_string()),
            "{err}"
        );
        err
    };
    assert!(matches!(refuse(&link), HomeError::Symlink { .. }));
    assert!(matches!(refuse(&file), HomeError::NotDirectory { .. }));
    for system in ["/", "/etc", "/usr/lib/x", "/var/lib", "/tmp", "/proc/1"] {
        assert!(
            matches!(refuse(Path::new(system)), HomeError::SystemPath { .. }),
            "{system}"
        );
    }
    assert!(matches!(
        refuse(&slash.join("etc")),
        HomeError::SystemPath { .. }
    ));
    assert!(matches!(
        refuse(Path::new("rel/home")),
        HomeError::NotAbsolute { .. }
    ));
    assert!(matches!(
        refuse(&dir.path().join("a/../b")),
        HomeError::NotAbsolute { .. }
    ));
    // Nothing was touched on the way: the symlink's target is still root's and unlabeled.
    let meta = fs::metadata(&target).unwrap();
    assert_eq!((meta.uid(), label_of(&target)), (0, None));
    assert!(!dir.path().join("a").exists());
}
