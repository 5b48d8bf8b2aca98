//! Issue 4, "Must show" 6: PostgreSQL as tenant A and a second PostgreSQL as tenant B,
//! both confined and labeled, started together by `supervise up profiles/tenants`.
//! Operator clients (psql from the host) reach both; A's own backend processes cannot
//! reach B (dblink from inside A gets "Permission denied" from the supervisor), while
//! they can reach A itself, from A's own labeled address.
//!
//! Run as root with `--test-threads=1` (port 5432 on the tenants' addresses).

mod common;
mod confined;

use std::process::Command;
use std::time::Duration;

use common::*;
use confined::*;

/// `psql -h HOST -U postgres -Atc SQL`: (success, stdout, stderr).
fn psql(host: &str, sql: &str) -> (bool, String, String) {
    let out = Command::new(format!("{PG_BIN}/psql"))
        .args(["-h", host, "-p", "5432", "-U", "postgres", "-d", "postgres"])
        .args(["-X", "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Real uids of the postmasters whose command line names `data_dir`.
fn postgres_uids(data_dir: &str) -> Vec<String> {
    let mut uids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !(cmdline.contains("bin/postgres") && cmdline.contains(data_dir)) {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(uid) = status.lines().find_map(|l| l.strip_prefix("Uid:")) {
            uids.push(uid.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    uids
}

fn address_of(state: &StateDir, tenant: &str) -> String {
    let range = registry_row(state, tenant)[4].clone();
    format!("{}.1", range.rsplit_once('.').expect("dotted range").0)
}

fn wait_for_server(host: &str, up: &mut Tenant) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if psql(host, "select 1").0 {
            return;
        }
        if std::time::Instant::now() > deadline || !up.is_running() {
            panic!("PostgreSQL on {host} never answered\n{}", up.dump());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn postgres_tenants_are_isolated_from_each_other_but_not_from_operators() {
    require_postgres();
    ensure_port_free(5432);
    let state = StateDir::new();
    let profiles = workspace_root().join("profiles/tenants");
    let mut up = Tenant::spawn_args(
        &[
            "--state-dir",
            state.path().to_str().unwrap(),
            "up",
            profiles.to_str().unwrap(),
        ],
        None,
    );
    eventually("both tenants are registered", || {
        state
            .supervise(&["label"])
            .1
            .lines()
            .filter(|l| l.starts_with("pg-"))
            .count()
            == 2
    });
    let (a, b) = (address_of(&state, "pg-a"), address_of(&state, "pg-b"));
    assert_ne!(a, b);
    wait_for_server(&a, &mut up);
    wait_for_server(&b, &mut up);
    let row_a = registry_row(&state, "pg-a");
    let row_b = registry_row(&state, "pg-b");
    assert_ne!(row_a[2], row_b[2], "labels must differ");

    // Operators reach both, and each keeps its own data.
    for (host, name) in [(&a, "in-a"), (&b, "in-b")] {
        let (ok, _, err) = psql(
            host,
            &format!("create table t(x text); insert into t values ('{name}')"),
        );
        assert!(ok, "{host}: {err}");
        let (ok, out, err) = psql(host, "select x from t");
        assert!(ok && out == name, "{host}: {out} {err}");
    }
    // Each server runs as its tenant's uid.
    for (tenant, row) in [("pg-a", &row_a), ("pg-b", &row_b)] {
        let data = state.home(tenant).join("data");
        let uids = postgres_uids(&data.display().to_string());
        assert!(!uids.is_empty(), "no postgres process for {tenant}");
        assert!(
            uids.iter().all(|u| *u == row[1]),
            "{tenant}: uids {uids:?}, registry {}",
            row[1]
        );
    }

    // From inside A (a backend process of A, under A's filter and labels): B is refused
    // by the supervisor; A itself is reachable, and sees the call coming from A's own
    // labeled address.
    let (ok, _, err) = psql(&a, "create extension dblink");
    assert!(ok, "{err}");
    let (ok, _, err) = psql(
        &a,
        &format!("select dblink_connect('b', 'host={b} port=5432 user=postgres dbname=postgres')"),
    );
    assert!(!ok, "A's backend reached B");
    eprintln!("dblink from A ({a}) to B ({b}): {}", err.trim());
    assert!(
        err.contains("Permission denied"),
        "expected EACCES from the supervisor, got: {err}"
    );
    let (ok, out, err) = psql(
        &a,
        &format!(
            "select * from dblink('host={a} port=5432 user=postgres dbname=postgres', \
             'select inet_client_addr()::text || '' '' || (select x from t)') as r(s text)"
        ),
    );
    assert!(ok, "A could not reach itself: {err}");
    eprintln!("dblink from A to A: inet_client_addr and row = {out}");
    assert_eq!(
        out,
        format!("{a}/32 in-a"),
        "A's own connection must come from A's address"
    );
    let log = up.stderr();
    assert!(
        log.lines().any(|l| l.contains("[pg-a]")
            && l.contains("denied")
            && l.contains(&row_a[2])
            && l.contains(&row_b[2])),
        "the denial is logged with both labels:\n{log}"
    );

    // Both homes are labeled throughout, PostgreSQL's own files included.
    for (tenant, row) in [("pg-a", &row_a), ("pg-b", &row_b)] {
        let home = state.home(tenant);
        assert_eq!(
            label_of(&home.join("data/PG_VERSION")).as_deref(),
            Some(row[2].as_str())
        );
        eventually(
            &format!("every file in {tenant}'s home carries its label"),
            || {
                state
                    .supervise(&["label", "--recursive", "--audit", home.to_str().unwrap()])
                    .0
                    == 0
            },
        );
    }

    up.kill(libc::SIGTERM);
    let st = up.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(0), "{}", up.dump());
}
