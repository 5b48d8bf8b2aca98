//! Tests for `watch.rs`. Polling loops are hang guards, not timing assertions.

use super::*;
use crate::label::xattr::tests::xattr_dir;
use crate::label::xattr::{get_label, set_label};
use std::fs;
use std::os::unix::fs::symlink;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const A: &str = "s0:c0,c1";

fn label_of(path: &Path) -> Option<String> {
    get_label(path).unwrap()
}

/// Waits until `done` holds; panics naming `what` after ten seconds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn labeled(path: &Path) -> bool {
    label_of(path).as_deref() == Some(A)
}

/// Stops on another thread so a stop that hangs fails the test instead of hanging it.
fn stop_promptly(relabeler: Relabeler) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        relabeler.stop();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("Relabeler::stop hung");
}

#[test]
fn labels_files_and_trees_created_after_spawn() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let relabeler = spawn(root.clone(), A.into(), u32::MAX).unwrap();
    assert!(labeled(&root), "spawn's first pass labels the root");

    fs::write(root.join("f"), "x").unwrap();
    eventually("a new file's label", || labeled(&root.join("f")));

    // Files may land in b and c before their watches exist; the scans must find them.
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    let files = ["a/x", "a/b/y", "a/b/c/z"].map(|f| root.join(f));
    for file in &files {
        fs::write(file, "x").unwrap();
    }
    symlink(&outside, root.join("a/b/c/link")).unwrap();
    let all = ["a", "a/b", "a/b/c", "a/b/c/link"].map(|f| root.join(f));
    for path in files.iter().chain(&all) {
        eventually(&format!("{}'s label", path.display()), || labeled(path));
    }
    assert_eq!(label_of(&outside), None, "a symlink's target was labeled");
    // root, f, a, a/b, a/b/c, three files and the link: each labeled exactly once.
    eventually("the count", || relabeler.relabeled() >= 9);
    assert_eq!(relabeler.relabeled(), 9);
    stop_promptly(relabeler);
}

#[test]
fn moved_in_and_renamed_directories() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    let staged = dir.path().join("staged");
    fs::create_dir_all(staged.join("deep")).unwrap();
    fs::write(staged.join("deep/file"), "x").unwrap();
    let relabeler = spawn(root.clone(), A.into(), u32::MAX).unwrap();

    fs::rename(&staged, root.join("moved")).unwrap();
    eventually("a moved-in tree's labels", || {
        labeled(&root.join("moved/deep/file"))
    });
    // A directory renamed within the tree keeps being watched under its new name.
    fs::rename(root.join("moved"), root.join("renamed")).unwrap();
    fs::write(root.join("renamed/deep/later"), "x").unwrap();
    eventually("a file in a renamed directory", || {
        labeled(&root.join("renamed/deep/later"))
    });
    // Drop stops the thread too.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(relabeler);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("drop hung");
}

fn event(wd: libc::c_int, mask: u32) -> libc::inotify_event {
    libc::inotify_event {
        wd,
        mask,
        cookie: 0,
        len: 0,
    }
}

#[test]
fn an_event_in_a_directory_swapped_for_a_symlink_is_not_followed() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir_all(root.join("d")).unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret"), "x").unwrap();
    let mut watcher = Watcher::new(root.clone(), A.into()).unwrap();
    watcher.rescan(true).unwrap();
    let wd = *watcher
        .dirs
        .iter()
        .find(|(_, w)| w.rel == Path::new("d"))
        .unwrap()
        .0;
    // The tenant moves `d` away and puts a symlink to a host directory in its place.
    fs::rename(root.join("d"), root.join("d-old")).unwrap();
    symlink(&outside, root.join("d")).unwrap();
    watcher.handle(&event(wd, libc::IN_CREATE), OsStr::new("secret"));
    assert_eq!(label_of(&outside.join("secret")), None);
    // A real directory of the same name is a different inode: still skipped.
    fs::remove_file(root.join("d")).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/secret"), "x").unwrap();
    watcher.handle(&event(wd, libc::IN_CREATE), OsStr::new("secret"));
    assert_eq!(label_of(&root.join("d/secret")), None);
}

#[test]
fn overflow_relabels_and_rewatches_everything() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    let mut watcher = Watcher::new(root.clone(), A.into()).unwrap();
    watcher.rescan(true).unwrap();
    assert_eq!(watcher.dirs.len(), 1);
    // Changes whose events were lost.
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/f"), "x").unwrap();
    set_label(&root, "s0:c5,c9").unwrap();
    watcher.handle(&event(-1, libc::IN_Q_OVERFLOW), OsStr::new(""));
    for path in ["", "a", "a/b", "a/b/f"].map(|p| root.join(p)) {
        assert!(labeled(&path), "{}", path.display());
    }
    assert_eq!(watcher.dirs.len(), 3);
    assert_eq!(watcher.relabeled.load(Ordering::Relaxed), 5);
}

#[test]
fn events_are_parsed_with_bounds_checks() {
    let mut buf = Vec::new();
    for (wd, name) in [(1, &b"abc\0\0\0\0\0"[..]), (2, b"")] {
        let ev = event(wd, libc::IN_CREATE);
        for field in [ev.wd as u32, ev.mask, ev.cookie, name.len() as u32] {
            buf.extend_from_slice(&field.to_ne_bytes());
        }
        buf.extend_from_slice(name);
    }
    let (first, name, next) = next_event(&buf, 0).unwrap();
    assert_eq!((first.wd, name), (1, OsStr::new("abc")));
    let (second, name, end) = next_event(&buf, next).unwrap();
    assert_eq!((second.wd, name, end), (2, OsStr::new(""), buf.len()));
    assert!(next_event(&buf, end).is_none());
    // A name running past the buffer is not read.
    assert!(next_event(&buf[..next - 1], 0).is_none());
}

/// The watches `inotify` holds, as the kernel counts them (`/proc/self/fdinfo`).
fn kernel_watches(inotify: &OwnedFd) -> usize {
    let info = fs::read_to_string(format!("/proc/self/fdinfo/{}", inotify.as_raw_fd())).unwrap();
    info.lines()
        .filter(|l| l.starts_with("inotify wd:"))
        .count()
}

/// `n` directories `d<i>/sub`, each holding a file `f`.
fn tree(root: &Path, n: usize) {
    for i in 0..n {
        fs::create_dir_all(root.join(format!("d{i}/sub"))).unwrap();
        fs::write(root.join(format!("d{i}/sub/f")), "x").unwrap();
    }
}

fn all_labeled(root: &Path, n: usize, file: &str) -> bool {
    (0..n).all(|i| labeled(&root.join(format!("d{i}/sub/{file}"))))
}

#[test]
fn past_the_cap_directories_are_labeled_by_rescans_without_watches() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    tree(&root, 6);
    let mut watcher = Watcher::new(root.clone(), A.into()).unwrap();
    watcher.max_watches = 3;
    watcher.rescan(true).unwrap();
    // root + 2 directories watched; 13 directories exist.
    assert_eq!(watcher.dirs.len(), 3);
    assert_eq!(kernel_watches(&watcher.inotify), 3);
    assert!(
        all_labeled(&root, 6, "f"),
        "the first pass labels past the cap"
    );
    // Only the tops of unwatched subtrees are remembered, not every directory in them.
    assert!(
        (1..=6).contains(&watcher.unwatched.len()),
        "{:?}",
        watcher.unwatched
    );
    assert!(watcher.next_rescan.is_some(), "a rescan is scheduled");

    // No event comes from an unwatched directory: the rescan finds the new files (the
    // watched ones' events label theirs).
    for i in 0..6 {
        fs::write(root.join(format!("d{i}/sub/g")), "y").unwrap();
    }
    let mut buf = vec![0u8; 64 * 1024];
    assert!(watcher.drain(&mut buf));
    let by_events = (0..6)
        .filter(|i| labeled(&root.join(format!("d{i}/sub/g"))))
        .count();
    assert!(by_events < 6, "{by_events} of 6 labeled without a rescan");
    watcher.rescan_unwatched();
    assert!(all_labeled(&root, 6, "g"));
    assert_eq!(kernel_watches(&watcher.inotify), 3, "the cap holds");
    assert!(watcher.rescan_every >= MIN_RESCAN_EVERY);

    // A watch freed by a removed directory is taken again by the next rescan.
    let (wd, rel) = watcher
        .dirs
        .iter()
        .find(|(_, w)| !w.rel.as_os_str().is_empty() && w.rel.components().count() == 1)
        .map(|(wd, w)| (*wd, w.rel.clone()))
        .expect("a watched d<i>");
    fs::remove_dir_all(root.join(&rel)).unwrap();
    assert!(watcher.drain(&mut buf));
    assert!(
        !watcher.dirs.contains_key(&wd),
        "IN_IGNORED dropped the watch"
    );
    assert!(!watcher.by_ino.values().any(|&w| w == wd));
    watcher.rescan_unwatched();
    assert_eq!(watcher.dirs.len(), 3);
    assert_eq!(kernel_watches(&watcher.inotify), 3);
}

#[test]
fn too_many_unwatched_subtrees_fall_back_to_whole_home_rescans() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    tree(&root, 5);
    let mut watcher = Watcher::new(root.clone(), A.into()).unwrap();
    watcher.max_watches = 1;
    watcher.max_unwatched = 2;
    watcher.rescan(true).unwrap();
    assert!(watcher.rescan_all, "more tops than remembered");
    assert!(watcher.unwatched.len() <= 2);
    for i in 0..5 {
        fs::write(root.join(format!("d{i}/sub/g")), "y").unwrap();
    }
    watcher.rescan_unwatched();
    assert!(all_labeled(&root, 5, "g"));
    assert_eq!(kernel_watches(&watcher.inotify), 1);
    assert!(
        watcher.next_rescan.is_some(),
        "still over the cap: rescans go on"
    );
}

#[test]
fn a_capped_relabeler_labels_new_files_in_unwatched_directories() {
    let dir = xattr_dir();
    let root = dir.path().join("home");
    fs::create_dir(&root).unwrap();
    let relabeler = spawn(root.clone(), A.into(), 2).unwrap();
    // Made after spawn: the first directory takes the last watch, the rest are
    // reached from their parent's events and left unwatched.
    tree(&root, 4);
    eventually("the trees' labels", || all_labeled(&root, 4, "f"));
    for i in 0..4 {
        fs::write(root.join(format!("d{i}/sub/g")), "y").unwrap();
    }
    eventually("files in unwatched directories labeled by a rescan", || {
        all_labeled(&root, 4, "g")
    });
    stop_promptly(relabeler);
}
