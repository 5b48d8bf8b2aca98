//! Self-tests: every component of a running supervisor passes its own (pg-demo with a
//! live connection; a confined tenant with limits and a tracked listener), and a broken
//! component fails its own: a tenant that closes its tracked listener.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::confined::*;
use crate::harness::*;
use crate::pg::*;

/// The self-tests a component of `kind` runs (None: any, e.g. a rule may have none).
fn expected(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "tenant" => &["alive"],
        "supervisor" => &["listener-valid"],
        "registry" => &["fd-reserve"],
        "control" => &["socket-present"],
        "stream" => &["listener-tracked"],
        "connection" => &["socket-open"],
        "label" => &["foreign-label-refused"],
        "landlock" => &["fully-enforced"],
        "limits" => &["spool-within-budget"],
        _ => return None,
    })
}

/// `ctl list --json`: (dpid, kind) of every component.
fn list(sup: &mut Sup) -> Vec<(String, String)> {
    let v = sup.ctl_json(&["list"]);
    v.as_array()
        .unwrap_or_else(|| panic!("ctl list --json is not an array: {v}"))
        .iter()
        .map(|c| (s(c, "dpid").to_owned(), s(c, "kind").to_owned()))
        .collect()
}

/// `ctl selftest DPID --json` must exit 0 and report every test passed; checks the
/// names against the component's kind.
fn all_pass(sup: &mut Sup, dpid: &str, kind: &str) {
    let v = sup.ctl_json(&["selftest", dpid]);
    assert_eq!(v["dpid"], dpid, "{v}");
    let results = v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("selftest {dpid}: no results array: {v}"));
    assert_eq!(v["passed"], true, "selftest of {dpid} ({kind}) failed: {v}");
    for r in results {
        assert_eq!(r["passed"], true, "selftest of {dpid} ({kind}) failed: {r}");
        assert!(
            !s(r, "detail").is_empty(),
            "selftest of {dpid} without detail: {r}"
        );
    }
    let names: Vec<&str> = results.iter().map(|r| s(r, "name")).collect();
    match (kind, expected(kind)) {
        ("rule", _) => assert!(
            names.is_empty() || names == ["fixtures"],
            "rule {dpid}: unexpected self-tests {names:?}"
        ),
        (_, Some(want)) => assert_eq!(names, want, "self-tests of {dpid} ({kind}): {v}"),
        // A kind this test does not know (yet): its own tests must pass, whatever
        // they are.
        (_, None) => eprintln!("note: {dpid} is of kind {kind:?}, self-tests {names:?}"),
    }
    // `selftests` names the same tests.
    let listed = sup.ctl_json(&["selftests", dpid]);
    let text = listed.to_string();
    for n in &names {
        assert!(
            text.contains(&format!("\"{n}\"")),
            "selftests {dpid} lacks {n}: {listed}"
        );
    }
}

#[test]
fn every_component_of_pg_demo_passes_its_selftests() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let mut client = c.client();
    let sup = &mut c.sup;
    client.query(sup, "SELECT 1");

    let comps = list(sup);
    let dpids: Vec<&str> = comps.iter().map(|(d, _)| d.as_str()).collect();
    for want in [
        "pg-demo",
        "pg-demo/@supervisor",
        "pg-demo/@registry",
        "pg-demo/@control",
        "pg-demo/pg-clients",
        "pg-demo/pg-clients/r0",
        "pg-demo/pg-clients/r1",
        "pg-demo/pg-clients/r2",
        "pg-demo/pg-clients/r3",
    ] {
        assert!(dpids.contains(&want), "ctl list lacks {want}: {dpids:?}");
    }
    let conns: Vec<&(String, String)> = comps.iter().filter(|(_, k)| k == "connection").collect();
    assert!(
        !conns.is_empty(),
        "the live client's connection is not listed: {comps:?}"
    );
    for (dpid, kind) in &comps {
        all_pass(sup, dpid, kind);
    }
    client.close(sup);
    c.sup.stop();
}

/// A listener on SUPERVISE_ADDRESS:PORT: one nonblocking accept (so the supervisor
/// tracks it), `ready`; closes it when file CLOSE appears, `closed`; exits when EXIT
/// appears.
const LISTENER: &str = r#"
import os, socket, sys, time
port, close_file, exit_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.05)
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((os.environ["SUPERVISE_ADDRESS"], port))
s.listen(8)
s.setblocking(False)
try:
    s.accept()
except BlockingIOError:
    pass
print("ready", flush=True)
wait_for(close_file)
s.close()
print("closed", flush=True)
wait_for(exit_file)
print("bye", flush=True)
"#;

#[test]
fn confined_tenant_passes_its_selftests_and_fails_the_stream_one_after_closing_its_listener() {
    require_root();
    let state = StateDir::new();
    let prog = program_dir();
    let script = write_program(prog.path(), "listener.py", LISTENER);
    let (close, exit) = (prog.path().join("close"), prog.path().join("exit"));
    let port = free_port();
    let mut ro: Vec<std::path::PathBuf> = ["/usr", "/lib", "/lib64", "/etc", "/proc"]
        .iter()
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    ro.push(prog.path().to_owned());
    let ro: Vec<&Path> = ro.iter().map(|p| p.as_path()).collect();
    let profile = write_profile(&format!(
        "[tenant]\nname = \"diag-lsn\"\nconfine = true\n\
         [filesystem]\nread_only = {}\n\
         [network]\ntcp_bind = [{port}]\n\
         [limits]\nmemory = \"256M\"\npids = 64\n\
         [[stream]]\nname = \"lsn\"\nlisten_port = {port}\nframer = \"raw\"\n",
        toml_paths(&ro)
    ));
    let (port_s, close_s, exit_s) = (
        port.to_string(),
        close.to_str().expect("utf-8").to_owned(),
        exit.to_str().expect("utf-8").to_owned(),
    );
    let script_s = script.to_str().expect("utf-8");
    let mut sup = Sup::run(
        &state,
        &profile,
        &[PYTHON, script_s, &port_s, &close_s, &exit_s],
    );
    sup.tenant.wait_line("ready", PATIENCE);

    let comps = list(&mut sup);
    for want in [
        "diag-lsn",
        "diag-lsn/@supervisor",
        "diag-lsn/@registry",
        "diag-lsn/@control",
        "diag-lsn/@label",
        "diag-lsn/@landlock",
        "diag-lsn/@limits",
        "diag-lsn/lsn",
    ] {
        assert!(
            comps.iter().any(|(d, _)| d == want),
            "ctl list lacks {want}: {comps:?}"
        );
    }
    for (dpid, kind) in &comps {
        all_pass(&mut sup, dpid, kind);
    }

    // The tenant closes its listener: the stream's self-test fails, and says why. A
    // failed self-test is a successful request (exit 0) answering passed: false.
    std::fs::write(&close, "").expect("create close file");
    sup.tenant.wait_line("closed", PATIENCE);
    let check = |v: &Value| {
        assert_eq!(v["dpid"], "diag-lsn/lsn", "{v}");
        assert_eq!(
            v["passed"], false,
            "the stream's self-test passed without a listener: {v}"
        );
        let r = &v["results"][0];
        assert_eq!(r["name"], "listener-tracked", "{v}");
        assert_eq!(r["passed"], false, "{v}");
        assert!(
            s(r, "detail").contains("listen"),
            "the failure's detail does not name the listener: {v}"
        );
    };
    // The close is seen by the supervisor when the tenant's close() is notified, which
    // is before `closed` is printed; poll anyway (a hang guard, not a timing check).
    let deadline = std::time::Instant::now() + PATIENCE;
    let v = loop {
        let v = sup.ctl_json(&["selftest", "diag-lsn/lsn"]);
        if v["passed"] == false || std::time::Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    check(&v);
    check(&sup.ctl_json(&["selftest", "diag-lsn/lsn", "listener-tracked"]));
    // The CLI's table form exits 0 too.
    let out = sup.ctl(&["selftest", "diag-lsn/lsn"]);
    assert_eq!(
        out.code,
        Some(0),
        "a failed self-test is not a failed request: {out:?}"
    );
    // The rest is still well.
    all_pass(&mut sup, "diag-lsn", "tenant");
    all_pass(&mut sup, "diag-lsn/@landlock", "landlock");
    // An unknown self-test name is an error.
    let out = sup.ctl(&["selftest", "diag-lsn/lsn", "no-such-test"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("unknown_selftest"), "{out:?}");

    std::fs::write(&exit, "").expect("create exit file");
    sup.tenant.wait_line("bye", PATIENCE);
    sup.wait_exit_ok();
}
