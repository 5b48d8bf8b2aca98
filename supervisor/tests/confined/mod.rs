//! Helpers for tests of confined tenants (issue 4): a private state dir (registry and
//! homes), profiles with `confine = true`, and reading the labels the supervisor sets.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A fresh state dir for one test, searchable by tenants (their homes live under it).
pub struct StateDir {
    dir: tempfile::TempDir,
}

impl StateDir {
    pub fn new() -> StateDir {
        let dir = tempfile::Builder::new()
            .prefix("supervise-state-")
            .tempdir()
            .expect("create state dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod state dir");
        StateDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the registry puts a tenant's home by default.
    pub fn home(&self, tenant: &str) -> PathBuf {
        self.path().join("home").join(tenant)
    }

    /// `supervise --state-dir DIR ARGS...` to completion: (exit code, stdout, stderr).
    pub fn supervise(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(supervise_bin())
            .arg("--state-dir")
            .arg(self.path())
            .args(args)
            .output()
            .expect("run supervise");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `supervise --state-dir DIR run --profile P [-- BIN ARGS]` in the background.
    pub fn run(&self, profile: &Path, command: &[&str]) -> Tenant {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--state-dir".into(),
            self.path().into(),
            "run".into(),
            "--profile".into(),
            profile.into(),
        ];
        if !command.is_empty() {
            args.push("--".into());
            args.extend(command.iter().map(Into::into));
        }
        Tenant::spawn_args(&args, None)
    }
}

/// The directory holding the testbins (a tenant must be allowed to read it).
pub fn testbins_dir() -> PathBuf {
    testbin("cross_escape")
        .parent()
        .expect("testbins have a directory")
        .to_path_buf()
}

/// A TOML list of paths.
pub fn toml_paths(paths: &[&Path]) -> String {
    let quoted: Vec<String> = paths
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The read-only paths a testbin tenant needs: the system and the testbins.
pub fn system_and_testbins() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["/usr", "/lib", "/lib64", "/etc", "/proc"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    v.push(testbins_dir());
    v
}

/// `trusted.supervise.label` of a path, read as root (None: no label).
pub fn label_of(path: &Path) -> Option<String> {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let name = CString::new("trusted.supervise.label").expect("static name");
    let mut buf = [0u8; 128];
    // SAFETY: path and name are NUL-terminated; buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// Sets `trusted.supervise.label` (to forge a wrong label in audit tests).
pub fn set_label(path: &Path, label: &str) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let name = CString::new("trusted.supervise.label").expect("static name");
    // SAFETY: path and name are NUL-terminated; the value is a live slice.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            name.as_ptr(),
            label.as_ptr().cast(),
            label.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "lsetxattr {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Polls (hang guard, not a timing assertion) until `f` holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The tenant's host pid from the supervisor's start line (`... pid=N ...`).
pub fn tenant_pid(t: &Tenant) -> i32 {
    // The log is written by a thread: give the line a moment to arrive.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut stderr = t.stderr();
    while !stderr.contains("tenant started") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        stderr = t.stderr();
    }
    let line = stderr
        .lines()
        .find(|l| l.contains("tenant started"))
        .unwrap_or_else(|| panic!("no start line in:\n{stderr}"));
    let at = line.find(" pid=").expect("pid field") + 5;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .expect("numeric pid")
}

/// A row of `supervise label` for `tenant`, split on whitespace.
pub fn registry_row(state: &StateDir, tenant: &str) -> Vec<String> {
    let (code, out, err) = state.supervise(&["label"]);
    assert_eq!(code, 0, "supervise label failed:\n{out}\n{err}");
    out.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.first().map(String::as_str) == Some(tenant))
        .unwrap_or_else(|| panic!("tenant {tenant} not listed:\n{out}"))
}
