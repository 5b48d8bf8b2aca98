//! The log formats: in json mode every line the supervisor writes is one object with
//! the documented keys; in human mode `TIME LEVEL DPID: message key=value`; a tenant's
//! stderr lines come out as records of kind "output" in either; `SUPERVISE_LOG` filters,
//! and one it cannot read is reported and `info` used; and `supervise ctl`'s exit codes
//! without a supervisor to ask.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::confined::StateDir;
use crate::harness::*;

const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// `supervise --state-dir S --log-format FORMAT run --profile P -- COMMAND…` to
/// completion (under `timeout`): (exit code, stdout, stderr).
fn run_to_end(format: &str, profile: &std::path::Path, command: &[&str]) -> (i32, String, String) {
    run_to_end_with(format, profile, command, None)
}

/// [`run_to_end`] with `SUPERVISE_LOG` set to `filter` (unset when `None`).
fn run_to_end_with(
    format: &str,
    profile: &std::path::Path,
    command: &[&str],
    filter: Option<&str>,
) -> (i32, String, String) {
    let state = StateDir::new();
    let mut cmd = Command::new("timeout");
    match filter {
        Some(f) => cmd.env("SUPERVISE_LOG", f),
        None => cmd.env_remove("SUPERVISE_LOG"),
    };
    let out = cmd
        .args(["-k", "5", "60"])
        .arg(supervise_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--log-format", format, "run", "--profile"])
        .arg(profile)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .output()
        .expect("run supervise");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every line of `stderr` is a JSON log record with the documented keys and types.
fn all_json(stderr: &str, tenant: &str) -> Vec<Value> {
    let mut records = Vec::new();
    for line in stderr.lines() {
        let r: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\n--- stderr:\n{stderr}"));
        let o = r
            .as_object()
            .unwrap_or_else(|| panic!("not a JSON object: {line}"));
        for key in ["time", "level", "dpid", "kind", "tenant", "message"] {
            assert!(
                o.get(key).is_some_and(Value::is_string),
                "key {key:?} missing or not a string: {line}"
            );
        }
        assert!(
            o.get("fields").is_some_and(Value::is_object),
            "fields: {line}"
        );
        assert!(o.get("ops").is_some_and(Value::is_array), "ops: {line}");
        assert!(LEVELS.contains(&s(&r, "level")), "level: {line}");
        let time = s(&r, "time");
        assert!(
            time.len() >= 20 && time.as_bytes()[10] == b'T' && time.ends_with('Z'),
            "time is not RFC 3339 UTC: {line}"
        );
        assert_eq!(s(&r, "tenant"), tenant, "{line}");
        let dpid = s(&r, "dpid");
        assert!(
            dpid == tenant || dpid.starts_with(&format!("{tenant}/")),
            "dpid {dpid:?} is not under the tenant {tenant:?}: {line}"
        );
        records.push(r);
    }
    records
}

#[test]
fn json_mode_every_supervisor_line_is_a_record_with_the_required_keys() {
    require_root();
    let profile = write_profile(
        "[tenant]\nname = \"diag-json\"\n\
         [[stream]]\nname = \"s\"\nlisten_port = 47999\nframer = \"lines\"\n",
    );
    let (code, stdout, stderr) = run_to_end("json", &profile, &["/bin/true"]);
    assert_eq!(code, 0, "supervise run -- /bin/true:\n{stdout}\n{stderr}");
    let records = all_json(&stderr, "diag-json");
    for want in [
        "tenant started under seccomp user notification",
        "tenant exited",
    ] {
        assert!(
            records.iter().any(|r| s(r, "message") == want),
            "no {want:?} record:\n{stderr}"
        );
    }
    let started = records
        .iter()
        .find(|r| s(r, "message").starts_with("tenant started"))
        .expect("start record");
    assert_eq!(s(started, "dpid"), "diag-json/@supervisor", "{started}");
    assert!(int(started.pointer("/fields/pid")).is_some(), "{started}");
}

#[test]
fn human_mode_lines_are_time_level_dpid_message() {
    require_root();
    let profile = write_profile("[tenant]\nname = \"diag-human\"\n");
    let (code, stdout, stderr) = run_to_end("human", &profile, &["/bin/true"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.trim().is_empty(), "no log lines at all");
    for line in stderr.lines() {
        let mut f = line.split_whitespace();
        let (time, level, dpid) = (f.next(), f.next(), f.next());
        assert!(
            time.is_some_and(|t| t.ends_with('Z') && t.contains('T')),
            "no time: {line:?}\n{stderr}"
        );
        assert!(
            level.is_some_and(|l| LEVELS.contains(&l)),
            "no level: {line:?}"
        );
        assert!(
            dpid.is_some_and(|d| d.starts_with("diag-human") && d.ends_with(':')),
            "no DPID: {line:?}"
        );
    }
    assert!(
        stderr.contains(" INFO diag-human/@supervisor: tenant exited code=0"),
        "{stderr}"
    );
}

/// Two stderr lines around one stdout line.
const WRITER: &str = "echo first-stderr-line >&2; echo stdout-line; echo second-stderr-line >&2";

#[test]
fn tenant_stderr_lines_become_output_records() {
    require_root();
    let profile = write_profile("[tenant]\nname = \"diag-out\"\n");
    let (code, stdout, stderr) = run_to_end("json", &profile, &["/bin/sh", "-c", WRITER]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // stdout stays the tenant's own, raw.
    assert_eq!(stdout, "stdout-line\n", "stderr:\n{stderr}");
    // Every stderr line, the tenant's included, is a record.
    let records = all_json(&stderr, "diag-out");
    let output: Vec<&Value> = records
        .iter()
        .filter(|r| s(r, "kind") == "output")
        .collect();
    let messages: Vec<&str> = output.iter().map(|r| s(r, "message")).collect();
    assert_eq!(
        messages,
        ["first-stderr-line", "second-stderr-line"],
        "output records:\n{stderr}"
    );
    for r in &output {
        assert_eq!(s(r, "dpid"), "diag-out", "{r}");
        assert_eq!(field(r, "fd"), "stderr", "{r}");
        let pid = int(r.pointer("/fields/pid"));
        assert!(pid.is_some_and(|p| p > 0), "no pid: {r}");
    }

    let (code, stdout, stderr) = run_to_end("human", &profile, &["/bin/sh", "-c", WRITER]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(stdout, "stdout-line\n", "stderr:\n{stderr}");
    for want in ["first-stderr-line", "second-stderr-line"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(want))
            .unwrap_or_else(|| panic!("{want} missing:\n{stderr}"));
        assert!(
            line.contains(&format!(" INFO diag-out: {want} fd=stderr pid=")),
            "not stamped: {line:?}\n{stderr}"
        );
    }
}

#[test]
fn ctl_exit_codes_without_a_supervisor() {
    let state = StateDir::new();
    // Nothing serves this tenant: the socket cannot be reached.
    let out = ctl(state.path(), &["state", "nobody-here"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert!(!out.stderr.is_empty(), "no reason given: {out:?}");
    let out = ctl(state.path(), &["selftest", "nobody-here/@control"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    // Usage errors.
    let out = ctl(state.path(), &["state"]);
    assert_eq!(out.code, Some(2), "missing DPID: {out:?}");
    let out = ctl(state.path(), &["level", "nobody-here", "debug"]);
    assert_eq!(out.code, Some(2), "level is a signed request now: {out:?}");
    let out = ctl(state.path(), &["frobnicate"]);
    assert_eq!(out.code, Some(2), "unknown subcommand: {out:?}");
}

#[test]
fn supervise_log_filters_and_an_unreadable_one_falls_back_to_info_with_a_warning() {
    require_root();
    let profile = write_profile("[tenant]\nname = \"diag-filter\"\n");
    let exited = |records: &[Value]| {
        records
            .iter()
            .any(|r| s(r, "message") == "tenant exited" && s(r, "level") == "INFO")
    };
    // Understood: `warn` hides the INFO line that the tenant exited.
    let (code, _, stderr) = run_to_end_with("json", &profile, &["/bin/true"], Some("warn"));
    assert_eq!(code, 0, "{stderr}");
    let records = all_json(&stderr, "diag-filter");
    assert!(!exited(&records), "warn still shows INFO:\n{stderr}");
    // Not understood: a warning that names what was wrong, then `info`.
    let (code, _, stderr) =
        run_to_end_with("json", &profile, &["/bin/true"], Some("supervise=loud"));
    assert_eq!(code, 0, "a bad filter must not stop the tenant: {stderr}");
    let records = all_json(&stderr, "diag-filter");
    let warning = records
        .iter()
        .find(|r| s(r, "message") == "SUPERVISE_LOG not understood; using info")
        .unwrap_or_else(|| panic!("no warning about SUPERVISE_LOG:\n{stderr}"));
    assert_eq!(s(warning, "level"), "WARN", "{warning}");
    assert!(
        field(warning, "problem").contains("\"loud\" is not a level"),
        "{warning}"
    );
    assert!(exited(&records), "info was not used:\n{stderr}");
    assert!(
        records.iter().all(|r| s(r, "level") != "DEBUG"),
        "debug lines under the info fallback:\n{stderr}"
    );
}
