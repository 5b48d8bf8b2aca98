//! Launch hygiene (issue 9, "Must show" 5), on the real binary and kernel:
//!
//! - the tenant starts with a clean environment (PATH, HOME/USER/LOGNAME of its
//!   account, the supervisor's LANG/LC_*/TZ/TERM), plus the profile's `tenant.env`,
//!   plus `--env`, in that precedence — none of the supervisor's other variables;
//! - it inherits no descriptor above 2 (nor does the init stub keep any it does not
//!   need), though the supervisor itself was started with strays;
//! - profile errors name the file, the key's own line and the key (`supervise check`);
//! - a `remote_port` stream with the postgres framer has the tenant as the client:
//!   psql run as the tenant against a bare PostgreSQL gets the rules applied.
//!
//! `env_fds` (testbins) prints its descriptors and environment. Run as root with
//! `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod confined;
#[path = "hygiene/mod.rs"]
mod support;

use std::ffi::OsString;

use common::*;
use confined::*;
use support::*;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The supervisor's own environment in these tests: what a root shell may hold.
fn supervisor_env() -> Vec<(String, String)> {
    [
        ("PATH", "/opt/secret/bin:/usr/bin:/bin"),
        ("HOME", "/root/elsewhere"),
        ("USER", "someone"),
        ("SECRET_TOKEN", "s3cret"),
        ("PGPASSWORD", "pw"),
        ("LD_LIBRARY_PATH", "/nonexistent/lib"),
        ("RUST_BACKTRACE", "1"),
        ("LANG", "C.UTF-8"),
        ("LC_MESSAGES", "C"),
        ("TZ", "Europe/Paris"),
        ("TERM", "dumb"),
        ("FROM_HOST", "host value"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[test]
fn environment_is_clean_then_profile_then_cli() {
    require_root();
    let launch = Launch {
        env: supervisor_env(),
        ..Launch::default()
    };
    let profile = write_profile(
        "[tenant]\nname = \"env\"\n\n[tenant.env]\nA = \"profile\"\nB = \"profile\"\n\
         TZ = \"UTC\"\nHOME = \"/srv/env\"\n",
    );
    let env_fds = testbin("env_fds");
    let out = launch.supervise(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--env",
        "A=cli",
        "--env",
        "FROM_HOST",
        "-e",
        "NOT_THERE",
        "--env",
        "C=x=y",
        "--",
        env_fds.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let root = passwd_of(0).expect("root has a passwd entry");
    let expected = [
        "A=cli".to_owned(),
        "B=profile".to_owned(),
        "C=x=y".to_owned(),
        "FROM_HOST=host value".to_owned(),
        "HOME=/srv/env".to_owned(),
        "LANG=C.UTF-8".to_owned(),
        "LC_MESSAGES=C".to_owned(),
        format!("LOGNAME={}", root[0]),
        format!("PATH={DEFAULT_PATH}"),
        "TERM=dumb".to_owned(),
        "TZ=UTC".to_owned(),
        format!("USER={}", root[0]),
    ];
    assert_eq!(out.env(), expected, "{out:?}");
    assert!(
        out.stderr
            .contains("--env: not set in the supervisor's environment")
            && out.stderr.contains("NOT_THERE"),
        "{}",
        out.stderr
    );
    // Without the profile's HOME, root's own.
    let out = launch.supervise(&["run", "--", env_fds.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let env = out.env();
    assert!(env.contains(&format!("HOME={}", root[5])), "{env:?}");
    assert_eq!(
        env.len(),
        8,
        "PATH HOME USER LOGNAME LANG LC_MESSAGES TZ TERM: {env:?}"
    );
}

#[test]
fn home_and_user_come_from_the_tenants_account() {
    require_root();
    let launch = Launch {
        env: supervisor_env(),
        ..Launch::default()
    };
    let env_fds = testbin("env_fds");
    let nobody = passwd_of(65534).expect("uid 65534 (nobody) has a passwd entry");
    let profile = write_profile("[tenant]\nname = \"nobody\"\nuid = 65534\n");
    let out = launch.supervise(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--",
        env_fds.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let env = out.env();
    for want in [
        format!("HOME={}", nobody[5]),
        format!("USER={}", nobody[0]),
        format!("LOGNAME={}", nobody[0]),
    ] {
        assert!(env.contains(&want), "{want} missing: {env:?}");
    }
    // A uid without a passwd entry: HOME=/ and no USER/LOGNAME.
    let uid = (4_242_421..4_242_500)
        .find(|&u| passwd_of(u).is_none())
        .expect("a free uid");
    let profile = write_profile(&format!("[tenant]\nname = \"anon\"\nuid = {uid}\n"));
    let out = launch.supervise(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--",
        env_fds.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let env = out.env();
    assert!(env.contains(&"HOME=/".to_owned()), "{env:?}");
    assert!(
        !env.iter()
            .any(|v| v.starts_with("USER=") || v.starts_with("LOGNAME=")),
        "{env:?}"
    );
}

#[test]
fn confined_tenant_gets_its_home_and_identity_only() {
    require_root();
    let state = StateDir::new();
    let ro = system_and_testbins();
    let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
    let profile = write_profile(&format!(
        "[tenant]\nname = \"hyg-env\"\nconfine = true\nenv = {{ EXTRA = \"1\" }}\n\
         [filesystem]\nread_only = {}\n",
        toml_paths(&ro)
    ));
    let env_fds = testbin("env_fds");
    let mut t = state.run(&profile, &[env_fds.to_str().unwrap()]);
    t.wait_line("done", std::time::Duration::from_secs(30));
    assert_eq!(t.wait(std::time::Duration::from_secs(30)).code(), Some(0));
    let row = registry_row(&state, "hyg-env");
    let env: Vec<String> = t
        .stdout_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("env "))
        .map(str::to_owned)
        .collect();
    let names: Vec<&str> = env.iter().filter_map(|v| v.split('=').next()).collect();
    for want in [
        format!("HOME={}", state.home("hyg-env").display()),
        "SUPERVISE_TENANT=hyg-env".to_owned(),
        format!("SUPERVISE_LABEL={}", row[2]),
        format!("PATH={DEFAULT_PATH}"),
        "EXTRA=1".to_owned(),
    ] {
        assert!(env.contains(&want), "{want} missing: {env:?}");
    }
    for name in ["USER", "LOGNAME", "SUPERVISE_ADDRESS", "SUPERVISE_RANGE"] {
        assert!(names.contains(&name), "{name} missing: {env:?}");
    }
    // The test process's own variables (cargo sets CARGO_*) do not reach the tenant.
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{env:?}");
    // The supervisor's facts cannot be overridden.
    let (code, _, err) = state.supervise(&[
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--env",
        "SUPERVISE_LABEL=s0:c0,c1",
        "--",
        env_fds.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--env SUPERVISE_LABEL: set by the supervisor for a confined tenant"),
        "{err}"
    );
}

#[test]
fn no_descriptor_above_2_is_inherited() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("stray-marker");
    let launch = Launch {
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        stray: vec![(40, marker.clone()), (41, marker.clone())],
    };
    let env_fds = testbin("env_fds");
    // The probe sees strays: run bare, it lists them (and whatever this test process
    // itself inherited without close-on-exec).
    let bare = launch.run(&env_fds, &[]);
    let bare_fds: Vec<i32> = bare.fds().iter().map(|f| f.0).collect();
    assert!(
        bare_fds.starts_with(&[0, 1, 2]) && bare_fds.contains(&40) && bare_fds.contains(&41),
        "{bare:?}"
    );
    // Under the supervisor, which inherited them too: 0, 1 and 2 only.
    let out = launch.supervise(&["run", "--", env_fds.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let fds: Vec<i32> = out.fds().iter().map(|f| f.0).collect();
    assert_eq!(fds, [0, 1, 2], "{out:?}");

    // A long-running tenant: neither it nor the init stub holds the strays.
    let args: Vec<OsString> = ["run", "--", "sleep", "60"]
        .iter()
        .map(Into::into)
        .collect();
    let mut sup = launch
        .command(&supervise_bin(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn supervise");
    let sup_pid = sup.id();
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let mut stub_and_tenant = None;
    eventually("the stub and the tenant run", || {
        let stub = children(sup_pid).first().copied();
        let tenant = stub.and_then(|s| children(s).first().copied());
        let exec_done = tenant.is_some_and(|t| {
            std::fs::read_link(format!("/proc/{t}/exe"))
                .is_ok_and(|e| e.to_string_lossy().ends_with("/sleep"))
        });
        stub_and_tenant = stub.zip(tenant);
        exec_done
    });
    let (stub, tenant) = stub_and_tenant.expect("found");
    let targets = |pid: u32| -> Vec<(String, String)> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read /proc/PID/fd")
            .flatten()
            .map(|e| {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    target.display().to_string(),
                )
            })
            .collect()
    };
    let tenant_fds = targets(tenant);
    let mut numbers: Vec<String> = tenant_fds.iter().map(|f| f.0.clone()).collect();
    numbers.sort();
    assert_eq!(numbers, ["0", "1", "2"], "tenant: {tenant_fds:?}");
    let stub_fds = targets(stub);
    assert!(
        stub_fds.len() <= 4 && !stub_fds.iter().any(|(_, t)| t.contains("stray-marker")),
        "the stub keeps stdio and its report socket only: {stub_fds:?}"
    );
    // The supervisor itself still has them (nothing closed behind the caller's back).
    assert!(
        targets(sup_pid)
            .iter()
            .any(|(n, t)| n == "40" && t.contains("stray-marker")),
        "supervisor: {:?}",
        targets(sup_pid)
    );
    let _ = sup.kill();
    let _ = sup.wait();
}

#[test]
fn profile_errors_name_file_key_line() {
    let launch = Launch::default();
    let cases = [
        (
            "[tenant]\nname = \"x\"\n\n[[stream]]\nname = \"c\"\nlisten_port = \"5432\"\nframer = \"raw\"\n",
            ":6: stream[0].listen_port: invalid type: string \"5432\", expected an integer in 0..=65535",
        ),
        (
            "[tenant]\nname = \"x\"\nuid = -1\n",
            ":3: tenant.uid: invalid value: integer `-1`, expected an integer in 0..=4294967295",
        ),
        (
            "[tenant]\nname = \"x\"\n[[stream]]\nname = \"c\"\nremote_port = 1\nframer = \"xml\"\n",
            ":6: stream[0].framer: unknown variant `xml`, expected one of `raw`, `lines`, `postgres`",
        ),
        (
            "[tenant]\nname = \"x\"\n[[stream]]\nname = \"c\"\nframer = \"raw\"\n",
            ":3: stream[0].listen_port: exactly one of listen_port or remote_port is required",
        ),
    ];
    for (text, want) in cases {
        let profile = write_profile(text);
        let path = profile.to_str().unwrap();
        let out = launch.supervise(&["check", path]);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert_eq!(out.stderr, format!("supervise: {path}{want}\n"), "{text}");
    }
    let out = launch.supervise(&["run", "--env", "=x", "--", "true"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("needs a name"), "{}", out.stderr);
}

// ------------------------------------------------ remote_port: the tenant is the client

const SCHEMA: &str = "
CREATE TABLE employee (id int PRIMARY KEY, name text NOT NULL, dept int NOT NULL, ssn text);
INSERT INTO employee VALUES (1, 'alice', 20, '111-11-1111'), (2, 'bob', 21, '222-22-2222');
CREATE TABLE salaries (id int PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO salaries VALUES (1, 1000);
";

/// psql as a client of 127.0.0.1:`port`, over TCP: under `supervise run` when
/// `profile` is given, bare otherwise. libpq is told not to ask for TLS or GSS (see
/// the README: the supervisor's `N` to an SSLRequest waits in its spool, which a
/// client polling its socket would not see).
fn psql(port: u16, profile: Option<&std::path::Path>, sql: &[&str]) -> Output {
    let mut args: Vec<String> = Vec::new();
    if let Some(p) = profile {
        args.extend(["run", "--profile", p.to_str().unwrap()].map(String::from));
        args.extend(
            ["--env", "PGSSLMODE", "--env", "PGGSSENCMODE=disable", "--"].map(String::from),
        );
    }
    args.push(pg("psql").display().to_string());
    args.extend(["-X", "-A", "-t", "-v", "VERBOSITY=verbose"].map(String::from));
    args.extend(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"].map(String::from));
    args.extend(["-d", "postgres"].map(String::from));
    for s in sql {
        args.push("-c".into());
        args.push(s.to_string());
    }
    let launch = Launch {
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("PGSSLMODE".into(), "disable".into()),
            ("PGGSSENCMODE".into(), "disable".into()),
        ],
        ..Launch::default()
    };
    let args: Vec<OsString> = args.iter().map(Into::into).collect();
    match profile {
        Some(_) => launch.run(&supervise_bin(), &args),
        None => launch.run(&std::path::PathBuf::from(&args[0]), &args[1..]),
    }
}

#[test]
fn remote_port_postgres_stream_applies_the_rules_to_a_client_tenant() {
    require_root();
    let server = BarePg::start(SCHEMA);
    let port = server.port();
    let profile = write_profile(&format!(
        "[tenant]\nname = \"pg-client\"\n\n[[stream]]\nname = \"to-pg\"\nremote_port = {port}\n\
         framer = \"postgres\"\n\n[[stream.rule]]\nkind = \"mask\"\ntable = \"employee\"\n\
         column = \"ssn\"\nreplacement = \"XXX-XX-XXXX\"\n\n[[stream.rule]]\nkind = \"deny\"\n\
         objects = [\"salaries\"]\n\n[[stream.rule]]\nkind = \"rewrite\"\ntable = \"employee\"\n\
         column = \"dept\"\nfrom = \"20\"\nto = \"21\"\n"
    ));
    let reads = [
        "SELECT 40 + 2",
        "SELECT name, ssn FROM employee ORDER BY id",
        "SELECT name FROM employee WHERE dept = 20",
    ];
    // Bare: the data as stored.
    let bare = psql(port, None, &reads);
    assert_eq!(bare.code, Some(0), "{bare:?}");
    assert_eq!(
        bare.stdout, "42\nalice|111-11-1111\nbob|222-22-2222\nalice\n",
        "{bare:?}"
    );
    // The tenant psql: ordinary queries work, ssn is masked, dept = 20 reads 21.
    let out = psql(port, Some(&profile), &reads);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", server.log());
    assert_eq!(
        out.stdout, "42\nalice|XXX-XX-XXXX\nbob|XXX-XX-XXXX\nbob\n",
        "{out:?}"
    );
    // A denied statement: SQLSTATE 42501 from the server; the session goes on.
    let denied = ["SELECT count(*) FROM salaries", "SELECT 'still here'"];
    let bare = psql(port, None, &denied);
    assert_eq!(bare.stdout, "1\nstill here\n", "{bare:?}");
    let out = psql(port, Some(&profile), &denied);
    assert!(out.stderr.contains("ERROR:  42501:"), "{out:?}");
    assert_eq!(out.stdout, "still here\n", "{out:?}");
    assert!(
        out.stderr.contains("supervise::connection") || out.stderr.contains("connection closed"),
        "the connection was tracked: {}",
        out.stderr
    );
}
