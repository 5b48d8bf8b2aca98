//! The control socket is out of the tenants' reach: a tenant running as root (not
//! confined, same mount namespace: the socket's path is reachable) and a confined
//! tenant each try a valid `list` request on their own supervisor's socket; neither
//! may get an answer served.

use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::confined::*;
use crate::harness::*;

/// Waits for file GO, then connects to the socket, sends `{"v":1,"op":"list"}` and
/// prints `probe reply:<json>` (whatever the server wrote, also after a failed send: a
/// refusal is written before the server reads anything) or `probe error:<Name>:<errno>`;
/// then waits for file DONE, so its supervisor (and socket) outlive the verdict.
const PROBE: &str = r#"
import json, os, socket, struct, sys, time
path, go, done = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(go):
    time.sleep(0.05)
req = json.dumps({"v": 1, "op": "list"}).encode()
def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(b), n))
        b += chunk
    return b
def probe():
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(path)
    except OSError as e:
        return "probe error:%s:%s" % (type(e).__name__, e.errno)
    send_error = None
    try:
        s.sendall(struct.pack(">I", len(req)) + req)
    except OSError as e:
        send_error = e
    try:
        (n,) = struct.unpack(">I", recv_exact(s, 4))
        return "probe reply:" + recv_exact(s, n).decode()
    except OSError as e:
        e = send_error or e
        return "probe error:%s:%s" % (type(e).__name__, e.errno)
print(probe(), flush=True)
while not os.path.exists(done):
    time.sleep(0.05)
"#;

/// Runs the probe as tenant `name` (`tenant_extra`: more [tenant] keys) and returns
/// once the probe has printed its verdict.
fn probe(name: &str, tenant_extra: &str, confined: bool) -> Probe {
    require_root();
    let state = StateDir::new();
    let prog = program_dir();
    let script = write_program(prog.path(), "probe.py", PROBE);
    let go = prog.path().join("go");
    let done = prog.path().join("done");
    let mut text = format!("[tenant]\nname = \"{name}\"\n{tenant_extra}\n");
    if confined {
        let mut ro: Vec<std::path::PathBuf> = ["/usr", "/lib", "/lib64", "/etc", "/proc"]
            .iter()
            .map(std::path::PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        ro.push(prog.path().to_owned());
        let ro: Vec<&Path> = ro.iter().map(|p| p.as_path()).collect();
        text.push_str(&format!("[filesystem]\nread_only = {}\n", toml_paths(&ro)));
    }
    let profile = write_profile(&text);
    let sock = state.path().join("ctl").join(format!("{name}.sock"));
    let (sock_s, go_s, done_s) = (
        sock.to_str().expect("utf-8").to_owned(),
        go.to_str().expect("utf-8").to_owned(),
        done.to_str().expect("utf-8").to_owned(),
    );
    let mut sup = Sup::run(
        &state,
        &profile,
        &[
            PYTHON,
            script.to_str().expect("utf-8"),
            &sock_s,
            &go_s,
            &done_s,
        ],
    );
    sup.wait_socket(name);
    // The socket answers the host's root: it is live when the tenant tries.
    let listed = sup.ctl(&["list", "--json"]);
    assert_eq!(listed.code, Some(0), "ctl list from the host: {listed:?}");
    std::fs::write(&go, "").expect("create go file");
    sup.tenant.wait_line("probe ", PATIENCE);
    Probe { sup, state, prog }
}

/// A probing tenant's supervisor; dropped before its state and program directories.
struct Probe {
    sup: Sup,
    state: StateDir,
    prog: tempfile::TempDir,
}

/// What the probe printed: Ok(reply) or Err(error text). Panics on a served answer.
fn verdict(name: &str, sup: &mut Sup) -> Result<Value, String> {
    let line = sup
        .tenant
        .stdout_lines()
        .iter()
        .find(|l| l.starts_with("probe "))
        .cloned()
        .expect("wait_line saw it");
    if let Some(json) = line.strip_prefix("probe reply:") {
        let v: Value = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("probe reply is not JSON ({e}): {line}"));
        if v["ok"] != false {
            let d = sup.dump();
            panic!("tenant {name} was SERVED by its supervisor's control socket: {v}\n{d}");
        }
        Ok(v)
    } else {
        Err(line.trim_start_matches("probe ").to_owned())
    }
}

#[test]
fn a_root_tenant_is_refused_by_the_control_socket() {
    let mut p = probe("diag-root", "", false);
    match verdict("diag-root", &mut p.sup) {
        Ok(v) => {
            assert_eq!(error_code(&v), "forbidden", "{v}");
            let r = p.sup.wait_record("\"control connection refused\"", |r| {
                s(r, "message") == "control connection refused"
            });
            assert_eq!(s(&r, "dpid"), "diag-root/@control", "{r}");
            assert_eq!(s(&r, "level"), "WARN", "{r}");
        }
        Err(e) => eprintln!("the root tenant could not talk to the control socket: {e}"),
    }
    // The host's root is still served.
    let out = p.sup.ctl(&["state", "diag-root"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let Probe { sup, state, prog } = p;
    std::fs::write(prog.path().join("done"), "").expect("create done file");
    sup.wait_exit_ok();
    drop((state, prog));
}

#[test]
fn a_confined_tenant_cannot_use_the_control_socket() {
    let mut p = probe("diag-conf", "confine = true", true);
    match verdict("diag-conf", &mut p.sup) {
        Ok(v) => assert_eq!(error_code(&v), "forbidden", "{v}"),
        Err(e) => eprintln!("the confined tenant could not talk to the control socket: {e}"),
    }
    let out = p.sup.ctl(&["state", "diag-conf"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let Probe { sup, state, prog } = p;
    std::fs::write(prog.path().join("done"), "").expect("create done file");
    sup.wait_exit_ok();
    drop((state, prog));
}
