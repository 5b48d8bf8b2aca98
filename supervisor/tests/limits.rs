//! Resource limits of confined tenants (issue 10, item 5): the tenant's cgroup
//! (memory, pids, cpu weight), its home on its own ext4 image, and the cap on the label
//! watcher's inotify watches — each hit a clear error to the tenant, a line in the
//! supervisor's log, and nothing for the other tenants.
//!
//! Real kernel, real cgroups (v1 or v2, whichever the host runs), real loop mounts. Run
//! as root with `--test-threads=1` after `cargo build --workspace --all-targets`. The
//! polling loops are hang guards, never timing assertions.

mod common;
mod confined;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use confined::*;

const LINE: Duration = Duration::from_secs(60);

/// A confined `limits_tenant` profile with `limits` as its `[limits]` table.
fn profile(name: &str, limits: &str) -> tempfile::TempPath {
    let ro = system_and_testbins();
    let ro: Vec<&Path> = ro.iter().map(|p| p.as_path()).collect();
    write_profile(&format!(
        "[tenant]\nname = \"{name}\"\nconfine = true\n[filesystem]\nread_only = {}\n\
         [limits]\n{limits}\n",
        toml_paths(&ro)
    ))
}

fn run(state: &StateDir, profile: &Path, args: &[&str]) -> Tenant {
    let bin = testbin("limits_tenant");
    let mut command = vec![bin.to_str().expect("utf-8 path")];
    command.extend_from_slice(args);
    state.run(profile, &command)
}

/// True on a pure cgroup v2 host.
fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The tenant's cgroup directory for `controller` (v1) or the unified one (v2).
fn cgroup_dir(controller: &str, tenant: &str) -> PathBuf {
    if v2() {
        PathBuf::from(format!("/sys/fs/cgroup/supervise/{tenant}"))
    } else {
        PathBuf::from(format!("/sys/fs/cgroup/{controller}/supervise/{tenant}"))
    }
}

fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Whether anything is mounted on `path`, from /proc/self/mountinfo.
fn mount_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .rfind(|l| l.split(' ').nth(4).map(Path::new) == Some(path.as_path()))
        .map(str::to_string)
}

/// Unmounts what a failed test left mounted, so the state dir can be removed.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        while mount_of(&self.0).is_some() {
            let ok = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
    }
}

/// How many inotify watches process `pid` holds, over all its inotify descriptors.
fn inotify_watches(pid: u32) -> usize {
    let mut watches = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list fds")
        .flatten()
    {
        let is_inotify =
            std::fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify");
        if is_inotify {
            let info = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
            let text = std::fs::read_to_string(info).unwrap_or_default();
            watches += text
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count();
        }
    }
    watches
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}N in {line:?}"))
}

#[test]
fn the_tenant_runs_its_command_inside_its_cgroup_which_is_removed_after() {
    require_root();
    let state = StateDir::new();
    let name = "lim-probe";
    let prof = profile(name, "memory = \"256M\"\npids = 64\ncpu_weight = 50");
    let mut t = run(&state, &prof, &["probe"]);
    // Read by the command's first instructions: it was placed before its execve ran.
    let own = t.wait_line("cgroup ", LINE);
    let child = t.wait_line("child cgroup ", LINE);
    t.wait_line("ready", LINE);
    let dump = t.dump();
    let wanted = format!("/supervise/{name}");
    for line in [&own, &child] {
        let entries: Vec<&str> = line.split(';').collect();
        for controller in ["memory", "pids", "cpu"] {
            let entry = entries
                .iter()
                .find(|e| {
                    let mut f = e.splitn(3, ':');
                    let (_, names) = (f.next(), f.next().unwrap_or(""));
                    if v2() {
                        names.is_empty()
                    } else {
                        names.split(',').any(|n| n == controller)
                    }
                })
                .unwrap_or_else(|| panic!("no {controller} line in {line:?}\n{dump}"));
            assert!(
                entry.ends_with(&wanted),
                "{controller}: {entry} in {line:?}\n{dump}"
            );
        }
    }
    let (memory, cpu) = if v2() {
        ("memory.max", ("cpu.weight", "50"))
    } else {
        ("memory.limit_in_bytes", ("cpu.shares", "512"))
    };
    let mem_dir = cgroup_dir("memory", name);
    assert_eq!(read_trim(&mem_dir.join(memory)), (256u64 << 20).to_string());
    assert_eq!(read_trim(&cgroup_dir("pids", name).join("pids.max")), "64");
    assert_eq!(read_trim(&cgroup_dir("cpu", name).join(cpu.0)), cpu.1);
    // The init stub, the tenant, and the stub's other children (the tenant's agent).
    let procs = read_trim(&cgroup_dir("pids", name).join("cgroup.procs"));
    let tenant = tenant_pid(&t);
    let status = read_trim(Path::new(&format!("/proc/{tenant}/status")));
    let stub = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .expect("PPid")
        .trim()
        .to_string();
    let stub_children = read_trim(Path::new(&format!("/proc/{stub}/task/{stub}/children")));
    let expected: Vec<&str> = std::iter::once(stub.as_str())
        .chain(stub_children.split_whitespace())
        .collect();
    assert!(expected.len() >= 2, "{expected:?}");
    for pid in &expected {
        assert!(
            procs.lines().any(|p| p == *pid),
            "pid {pid} (of stub {stub}, tenant {tenant}) not in cgroup.procs {procs:?}\n{dump}"
        );
    }
    assert!(t.stderr().contains("limits set"), "{dump}");

    t.kill(libc::SIGTERM);
    t.wait(LINE);
    for controller in ["memory", "pids", "cpu"] {
        let dir = cgroup_dir(controller, name);
        assert!(
            !dir.exists(),
            "{} left after the run\n{}",
            dir.display(),
            t.dump()
        );
    }
}

#[test]
fn forking_past_pids_gets_eagain_and_is_logged_and_others_still_fork() {
    require_root();
    let state = StateDir::new();
    let prof_a = profile("lim-fork-a", "pids = 16");
    let mut a = run(&state, &prof_a, &["fork", "200"]);
    let line = a.wait_line("fork ", LINE);
    let dump = a.dump();
    assert!(
        line.starts_with("fork failed errno=11 EAGAIN"),
        "{line}\n{dump}"
    );
    // The init stub and the tenant count too.
    let started = field(&line, "after=");
    assert!(
        (1..=14).contains(&started),
        "{started} children under pids = 16\n{dump}"
    );
    eprintln!("pids = 16: {started} children started, then {line}");
    a.wait(LINE);
    let log = a.stderr();
    assert!(log.contains("pids limit hit"), "no log line\n{}", a.dump());
    assert!(
        log.contains("refused with EAGAIN (limits.pids = 16)"),
        "{}",
        a.dump()
    );

    // Another tenant, with the default limit, is not affected.
    let prof_b = profile("lim-fork-b", "");
    let mut b = run(&state, &prof_b, &["fork", "40"]);
    let line = b.wait_line("fork", LINE);
    assert_eq!(line, "forked all 40", "{}", b.dump());
    b.wait(LINE);
    assert!(!b.stderr().contains("limit hit"), "{}", b.dump());
}

#[test]
fn allocating_past_memory_is_oom_killed_and_logged() {
    require_root();
    let state = StateDir::new();
    let prof = profile("lim-mem", "memory = \"32M\"");
    let mut t = run(&state, &prof, &["alloc", "512"]);
    let status = t.wait(LINE);
    let dump = t.dump();
    assert_eq!(status.code(), Some(128 + libc::SIGKILL), "{dump}");
    assert!(
        !t.stdout_lines()
            .iter()
            .any(|l| l.starts_with("allocated all")),
        "{dump}"
    );
    let log = t.stderr();
    let progress = t.stdout_lines().last().cloned().unwrap_or_default();
    eprintln!("memory = 32M: last progress line {progress:?}, then {status}");
    // Usually the allocating process alone; the kernel may take the tenant's init
    // stub with it (seen once in CI: "OOM-killed 2"), which ends the tenant the same way.
    assert!(
        log.contains("memory limit hit: the kernel OOM-killed 1 process(es)")
            || log.contains("memory limit hit: the kernel OOM-killed 2 process(es)"),
        "{dump}"
    );
    assert!(log.contains("limits.memory = 32 MiB"), "{dump}");
}

#[test]
fn filling_the_home_gets_enospc_and_spares_other_homes_and_the_host() {
    require_root();
    let state = StateDir::new();
    // B's home is a plain directory on the filesystem that holds the state dir (the host's).
    let prof_b = profile("lim-fill-b", "");
    let mut b = run(&state, &prof_b, &["wait-write"]);
    b.wait_line("waiting", LINE);
    let a_home = state.home("lim-fill-a");
    let _cleanup = Unmount(a_home.clone());
    let prof_a = profile("lim-fill-a", "home_size = \"32M\"");
    let mut a = run(&state, &prof_a, &["fill"]);
    let image = state.path().join("images/lim-fill-a.ext4");
    let line = a.wait_line("fill stopped", LINE);
    let dump = a.dump();
    assert!(
        line.starts_with("fill stopped errno=28 ENOSPC"),
        "{line}\n{dump}"
    );
    let written = field(&line, "after=");
    assert!(
        (16u64 << 20..32 << 20).contains(&written),
        "{written} bytes written to a 32 MiB home\n{dump}"
    );
    eprintln!("home_size = 32M: {written} bytes written, then {line}");
    // The image was allocated in full up front: filling it took nothing from the host.
    let meta = std::fs::metadata(&image).expect("the image exists");
    assert_eq!(meta.mode() & 0o777, 0o600, "the image is root's alone");
    assert!(
        meta.blocks() * 512 >= 32 << 20,
        "image not preallocated: {meta:?}"
    );
    let mount = mount_of(&a_home).unwrap_or_else(|| panic!("home not mounted\n{dump}"));
    assert!(
        mount.contains("nosuid") && mount.contains("nodev") && mount.contains(" ext4 "),
        "{mount}"
    );
    let label = label_of(&a_home).expect("the mounted home is labeled");
    assert_eq!(
        label_of(&a_home.join("fill")).as_deref(),
        Some(label.as_str())
    );
    eventually("the home-full log line", || {
        a.stderr().contains("home full")
    });
    assert!(
        a.stderr().contains("the tenant's writes fail with ENOSPC"),
        "{}",
        a.dump()
    );

    // B writes as if nothing happened.
    std::fs::write(state.home("lim-fill-b").join("go"), "").expect("write go");
    let line = b.wait_line("wrote after", LINE);
    assert_eq!(line, "wrote after ok", "{}", b.dump());
    b.wait(LINE);

    a.kill(libc::SIGTERM);
    a.wait(LINE);
    assert!(
        mount_of(&a_home).is_none(),
        "home still mounted\n{}",
        a.dump()
    );
    assert!(a.stderr().contains("home image unmounted"), "{}", a.dump());
    assert!(image.exists(), "the image outlives the run");
}

#[test]
fn a_crashed_run_leaves_nothing_the_next_run_cannot_reuse() {
    require_root();
    let state = StateDir::new();
    let name = "lim-crash";
    let home = state.home(name);
    let _cleanup = Unmount(home.clone());
    let prof = profile(name, "home_size = \"24M\"\npids = 32");
    let mut first = run(&state, &prof, &["probe"]);
    first.wait_line("ready", LINE);
    std::fs::write(home.join("kept"), "x").expect("write into the mounted home");
    first.kill(libc::SIGKILL);
    first.wait(LINE);
    assert!(
        mount_of(&home).is_some(),
        "a SIGKILLed supervisor cannot unmount"
    );
    assert!(cgroup_dir("pids", name).exists(), "nor remove its cgroup");

    let mut second = run(&state, &prof, &["probe"]);
    second.wait_line("ready", LINE);
    let log = second.stderr();
    assert!(log.contains("removed a stale cgroup"), "{}", second.dump());
    assert!(log.contains("reusing the home image"), "{}", second.dump());
    assert!(home.join("kept").exists(), "the home's files survive");
    second.kill(libc::SIGTERM);
    second.wait(LINE);
    assert!(!cgroup_dir("pids", name).exists(), "{}", second.dump());
    assert!(mount_of(&home).is_none(), "{}", second.dump());
}

#[test]
fn the_watch_cap_holds_and_unwatched_directories_are_still_labeled() {
    require_root();
    let state = StateDir::new();
    let name = "lim-watch";
    let cap = 8;
    let dirs = 40;
    let prof = profile(name, &format!("home_watches = {cap}"));
    let mut t = run(&state, &prof, &["dirs", &dirs.to_string()]);
    t.wait_line("made ", LINE);
    let home = state.home(name);
    let label = label_of(&home).expect("the home is labeled");
    let all_labeled = |file: &str| {
        (0..dirs).all(|i| {
            label_of(&home.join(format!("d{i}/{file}"))).as_deref() == Some(label.as_str())
        })
    };
    eventually("every directory's first file labeled", || all_labeled("f"));
    let watches = inotify_watches(t.pid());
    assert!(
        (1..=cap).contains(&watches),
        "{watches} watches with home_watches = {cap}\n{}",
        t.dump()
    );
    eventually("the cap's log line", || {
        t.stderr().contains("home watch cap reached")
    });
    eprintln!("home_watches = {cap}: {dirs} directories, {watches} watches held");

    // Files made later in directories that exist already, most of them unwatched.
    std::fs::write(home.join("go"), "").expect("write go");
    t.wait_line("wrote later files", LINE);
    eventually("every later file labeled", || all_labeled("g"));
    let watches = inotify_watches(t.pid());
    assert!(
        (1..=cap).contains(&watches),
        "{watches} watches\n{}",
        t.dump()
    );
    assert_eq!(
        t.stderr().matches("home watch cap reached").count(),
        1,
        "{}",
        t.dump()
    );
    t.kill(libc::SIGTERM);
    t.wait(LINE);
}

#[test]
fn bad_limits_are_refused_before_anything_starts() {
    require_root();
    let state = StateDir::new();
    let prof = profile("lim-bad", "memory = \"lots\"");
    let (code, _, err) = state.supervise(&["check", prof.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let want = format!(
        "{}:7: limits.memory: \"lots\": expected bytes",
        prof.display()
    );
    assert!(err.contains(&want), "want {want:?} in {err:?}");
    let mut t = run(&state, &prof, &["probe"]);
    assert_eq!(t.wait(LINE).code(), Some(2));
    assert!(!cgroup_dir("pids", "lim-bad").exists());
}
