//! 4. Replication side door.

use crate::contract::*;
use crate::pgcluster::wire::{self, Msg, Raw, Target};
use crate::pgcluster::*;
use crate::runners::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn scan_dir(dir: &Path, forms: &[Form]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                for h in scan(&b, forms) {
                    hits.push(format!(
                        "{}: {} {} in «{}»",
                        p.display(),
                        h.form.kind,
                        h.form.value,
                        h.context
                    ));
                }
            }
        }
    }
    hits
}

/// The secrets as they sit in data files (clear text in heap pages).
fn file_forms() -> Vec<Form> {
    let mut f = Vec::new();
    for s in SSNS.iter().chain(SALARY_NOTES).chain(AUDIT_ROWS) {
        f.extend(spellings("stored value", s, false));
    }
    f
}

/// IDENTIFY_SYSTEM answered (a replication session works).
fn identify_ok(msgs: &[Msg]) -> bool {
    msgs.iter().any(|m| m.tag == b'D')
}

/// A raw replication attack: the control over the UNIX socket first (it must answer
/// IDENTIFY_SYSTEM, or show `forms`), then the tracked run, judged. Each connection is
/// closed before the next (an open walsender would hold up the server's shutdown).
fn replication_raw(
    run: &mut Run,
    label: &str,
    attack: &dyn Fn(&Target) -> Raw,
    forms: Option<&[Form]>,
) {
    {
        let r = attack(&run.c.unix_target());
        match forms {
            Some(forms) => run.s.control(label, &r.received, forms),
            None if identify_ok(&r.msgs) => {
                eprintln!("  control {label}: untracked IDENTIFY_SYSTEM answers")
            }
            None => {
                eprintln!("  control {label}: BROKEN: [{}]", summaries(&r.msgs));
                run.s.broken_controls.push(label.to_owned());
            }
        }
    }
    let r = attack(&run.c.tcp_target());
    let mut obs = Obs::from_raw(&r, Vec::new());
    if forms.is_none() && identify_ok(&r.msgs) {
        obs.violations
            .push("IDENTIFY_SYSTEM answered over the tracked port".to_owned());
    }
    drop(r);
    run.s.judge(label, Expect::Replication, obs);
}

/// Replication connections on the tracked port: psql, pg_basebackup, raw startups
/// with every spelling PostgreSQL accepts. The cluster allows replication, and each
/// attack's control over the UNIX socket proves it works untracked.
#[test]
fn replication_side_door() {
    let _serial = serial();
    let opts = attack_options("")
        .setting("wal_level=replica")
        .setting("max_wal_senders=8")
        .setting("wal_keep_size=1024")
        .hba("local replication all trust")
        .hba("host replication all 127.0.0.1/32 trust");
    let mut run = Run::start("replication_side_door", opts);
    run.admin("CHECKPOINT");
    let tmp = tempfile::Builder::new()
        .prefix("supervise-pgattacks-bb-")
        .tempdir()
        .expect("tempdir");

    // Control: untracked, pg_basebackup copies every secret.
    let unix_dir = tmp.path().join("unix");
    let out = Command::new("timeout")
        .args(["-k", "5", "60"])
        .arg(pg("pg_basebackup"))
        .arg("-h")
        .arg(run.c.sockdir())
        .args([
            "-p",
            &run.c.port().to_string(),
            "-U",
            "postgres",
            "-X",
            "none",
            "-c",
            "fast",
            "-D",
        ])
        .arg(&unix_dir)
        .output()
        .expect("run pg_basebackup");
    assert!(
        out.status.success(),
        "control: pg_basebackup over the UNIX socket failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = scan_dir(&unix_dir, &file_forms());
    assert!(
        !hits.is_empty(),
        "control: the untracked base backup holds no secret; the replication attack \
         would prove nothing"
    );
    eprintln!(
        "  control pg_basebackup over the UNIX socket: copies {}",
        hits[0]
    );

    // pg_basebackup over the tracked port: must fail, nothing of the data arrives.
    for (label, args) in [
        (
            "pg_basebackup -X none (plain)",
            vec!["-X", "none", "-c", "fast"],
        ),
        (
            "pg_basebackup -X stream",
            vec!["-X", "stream", "-c", "fast"],
        ),
    ] {
        let d = tmp.path().join(label.replace([' ', '/'], "_"));
        let out = Command::new("timeout")
            .args(["-k", "5", "60"])
            .arg(pg("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &run.c.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(&args)
            .arg("-D")
            .arg(&d)
            .output()
            .expect("run pg_basebackup");
        let mut bytes = out.stdout.clone();
        bytes.extend_from_slice(&out.stderr);
        let mut obs = Obs {
            errors: psql_errors(&String::from_utf8_lossy(&out.stderr)),
            closed: true,
            hung: out.status.code() == Some(124),
            ..Obs::default()
        };
        let file_hits = scan_dir(&d, &file_forms());
        if !file_hits.is_empty() {
            // The hits quote the files' bytes: the scan of `bytes` reports them.
            bytes.extend_from_slice(format!("\nFILES: {}\n", file_hits.join("; ")).as_bytes());
            obs.violations.push(format!(
                "pg_basebackup wrote data files holding secrets: {}",
                file_hits.join("; ")
            ));
        }
        if out.status.success() {
            obs.violations
                .push("pg_basebackup succeeded over the tracked port".to_owned());
        }
        obs.bytes = bytes;
        run.s.judge(label, Expect::Replication, obs);
    }
    // Tar format to stdout: the data itself would be on the client's stdout.
    {
        let out = Command::new("timeout")
            .args(["-k", "5", "60"])
            .arg(pg("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &run.c.port().to_string(),
                "-U",
                "postgres",
            ])
            .args(["-X", "none", "-c", "fast", "-F", "t", "-D", "-"])
            .output()
            .expect("run pg_basebackup");
        let mut bytes = out.stdout.clone();
        bytes.extend_from_slice(&out.stderr);
        let mut obs = Obs {
            errors: psql_errors(&String::from_utf8_lossy(&out.stderr)),
            closed: true,
            hung: out.status.code() == Some(124),
            bytes,
            ..Obs::default()
        };
        if out.status.success() {
            obs.violations
                .push("pg_basebackup -F t -D - succeeded over the tracked port".to_owned());
        }
        run.s.judge(
            "pg_basebackup -F t -D - (tar on stdout)",
            Expect::Replication,
            obs,
        );
    }

    // psql in replication mode.
    for (label, mode) in [
        ("psql replication=database IDENTIFY_SYSTEM", "database"),
        ("psql replication=true IDENTIFY_SYSTEM", "true"),
    ] {
        let tcp = format!("{} replication={mode}", run.c.tcp_conninfo());
        let (mut obs, p) = run.psql_obs(&tcp, &[], "IDENTIFY_SYSTEM;\n");
        if p.code == Some(0) {
            obs.violations.push(format!(
                "psql replication={mode} succeeded: {}",
                tail(&p.stdout, 200)
            ));
        }
        obs.closed = obs.closed || p.code != Some(0);
        run.s.judge(label, Expect::Replication, obs);
        let unix = format!("{} replication={mode}", run.c.unix_conninfo());
        let (_, p) = run.psql_obs(&unix, &[], "IDENTIFY_SYSTEM;\n");
        if p.code == Some(0) && !p.stdout.trim().is_empty() {
            eprintln!(
                "  control {label}: untracked answers {}",
                tail(&p.stdout, 80)
            );
        } else {
            eprintln!("  control {label}: BROKEN: {p:?}");
            run.s.broken_controls.push(label.to_owned());
        }
    }

    // Raw startups: every value PostgreSQL takes for replication (booleans by prefix,
    // any case; "database"), and a duplicated key (the server takes the last).
    let variants: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("replication=true".into(), vec![("replication", "true")]),
        (
            "replication=database".into(),
            vec![("replication", "database")],
        ),
        ("replication=on".into(), vec![("replication", "on")]),
        ("replication=1".into(), vec![("replication", "1")]),
        ("replication=YES".into(), vec![("replication", "YES")]),
        ("replication=t (prefix)".into(), vec![("replication", "t")]),
        (
            "replication=tRu (prefix, mixed case)".into(),
            vec![("replication", "tRu")],
        ),
        ("replication=y".into(), vec![("replication", "y")]),
        (
            "replication=0 then replication=1 (duplicate key, last wins)".into(),
            vec![("replication", "0"), ("replication", "1")],
        ),
        (
            "replication=false then replication=database (duplicate key)".into(),
            vec![("replication", "false"), ("replication", "database")],
        ),
    ];
    for (label, extra) in variants {
        let extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let attack = move |t: &Target| {
            let mut params: Vec<(&str, &str)> = vec![("user", "postgres")];
            for (k, v) in &extra {
                params.push((k.as_str(), v.as_str()));
            }
            // database only where replication=database wants one
            params.push(("database", "postgres"));
            let mut r = Raw::connect(t);
            r.send_all(&[wire::startup(&params), wire::query("IDENTIFY_SYSTEM")]);
            r.read_until(2);
            r
        };
        replication_raw(
            &mut run,
            &format!("raw startup {label} + IDENTIFY_SYSTEM"),
            &attack,
            None,
        );
    }

    // BASE_BACKUP and START_REPLICATION through the raw client: the bytes would be the
    // data files / the WAL holding every INSERT.
    replication_raw(
        &mut run,
        "raw replication=true BASE_BACKUP",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[("user", "postgres"), ("replication", "true")]),
                wire::query("BASE_BACKUP (CHECKPOINT 'fast', WAL false)"),
            ]);
            r.read_until_for(2, Duration::from_secs(30));
            r
        },
        Some(&file_forms()),
    );
    replication_raw(
        &mut run,
        "raw replication=on START_REPLICATION from the first segment",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[("user", "postgres"), ("replication", "on")]),
                wire::query("START_REPLICATION PHYSICAL 0/1000000"),
            ]);
            r.read_until_for(2, Duration::from_secs(4));
            r.timed_out = false; // a stream never ends: the read deadline is expected
            r
        },
        Some(&file_forms()),
    );
    // replication=database also runs plain SQL: the rules must not be bypassed there.
    replication_raw(
        &mut run,
        "raw replication=database then plain SQL on salaries and ssn",
        &|t: &Target| {
            let mut r = Raw::connect(t);
            r.send_all(&[
                wire::startup(&[
                    ("user", "postgres"),
                    ("database", "postgres"),
                    ("replication", "database"),
                ]),
                wire::query("SELECT note FROM salaries"),
                wire::query("SELECT ssn FROM employee"),
            ]);
            r.read_until(3);
            r
        },
        Some(&protected_forms()),
    );
    run.finish();
}
