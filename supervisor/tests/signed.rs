//! Signed privileged requests (issue 13) end to end, with real tools: operators' keys
//! from `ssh-keygen`, requests signed with `ssh-keygen -Y sign` by `supervise
//! request`, results opened with the stock `age` CLI and the node's signature checked
//! with `ssh-keygen -Y verify`, against PostgreSQL under profiles/pg-demo.toml.
//!
//! Needs root, PostgreSQL 15, `age` and `openssh-client` (`.ci/run` installs them).
//! Run with `--test-threads=1` after `cargo build --workspace --all-targets`.

mod common;
mod confined;

#[path = "diagnostics/harness.rs"]
mod harness;
#[path = "diagnostics/operator.rs"]
mod operator;
#[path = "diagnostics/pg.rs"]
mod pg;

use std::fs;
use std::path::Path;

use serde_json::Value;

use confined::StateDir;
use harness::*;

use operator::{tool, Operator};
use pg::PgDemo;

/// The DPIDs of pg-demo's live connections.
fn connections(sup: &mut Sup) -> Vec<String> {
    let list = sup.ctl_json(&["list", "--tenant", "pg-demo"]);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "connection")
        .map(|e| e["dpid"].as_str().unwrap().to_owned())
        .collect()
}

/// The keyring's audit line for the request whose nonce or op matches, waited for.
fn audited(sup: &mut Sup, op: &str, outcome: &str) -> Value {
    sup.wait_record(&format!("the keyring's audit of {op} ({outcome})"), |r| {
        s(r, "kind") == "keyring" && field(r, "op") == op && field(r, "outcome") == outcome
    })
}

fn fingerprint(operator: &Operator) -> String {
    let pub_key = operator.key.with_extension("pub");
    let out = tool(
        "ssh-keygen",
        &["-l", "-E", "sha256", "-f", pub_key.to_str().unwrap()],
    );
    out.split_whitespace().nth(1).unwrap().to_owned()
}

/// Writes `text` to a file in `dir`; its path.
fn file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_dump_spool_is_sealed_to_a_second_identity_and_signed_by_the_node() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let sup_state = c.sup.state.clone();
    let mut client = c.client();
    client.query(&mut c.sup, "SELECT name FROM employee");
    let conns = connections(&mut c.sup);
    assert_eq!(conns.len(), 1, "{conns:?}");
    let dpid = &conns[0];

    let alice = Operator::new("alice@ops");
    let reader = Operator::new("forensics");
    alice.trust(&sup_state, r#"permit="dump-spool",tenants="pg-demo""#);

    // Alice signs; the result is sealed to the forensics identity, not to her.
    let out = alice.request(
        &sup_state,
        &["--recipient", &reader.recipient, "dump-spool", dpid],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let sealed = alice.result();
    let text = fs::read_to_string(&sealed).unwrap();
    assert!(
        text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "{text}"
    );
    assert!(
        !text.contains("employee"),
        "the result travels in the clear"
    );
    let opened = reader.open(&sealed);
    assert_eq!(opened["ok"], true, "{opened}");
    assert_eq!(opened["op"], "dump-spool");
    assert_eq!(opened["target"], dpid.as_str());
    let result = &opened["result"];
    assert_eq!(result["dpid"], dpid.as_str(), "{result}");
    let names: Vec<&str> = result["recent_messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"Query") && names.contains(&"DataRow"),
        "{names:?}"
    );
    // Alice herself cannot read it: only the recipient in the request can.
    let denied = std::process::Command::new("age")
        .args([
            "-d",
            "-i",
            alice.identity.to_str().unwrap(),
            sealed.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        !denied.status.success(),
        "the signer opened a result sealed to someone else"
    );

    // The node's signature over the sealed bytes checks with ssh-keygen and the line
    // the node publishes; a changed result does not.
    let node = c.sup.ctl_json(&["node", "pg-demo"]);
    let node_id = node["node"].as_str().unwrap().to_owned();
    let signers = file(
        reader.dir.path(),
        "node_signers",
        &format!("{}\n", node["result_signers"].as_str().unwrap()),
    );
    let sig = format!("{}.sig", sealed.display());
    let verify = |data: &[u8]| {
        std::process::Command::new("ssh-keygen")
            .args([
                "-Y",
                "verify",
                "-n",
                "supervise-result",
                "-I",
                &node_id,
                "-f",
            ])
            .arg(&signers)
            .args(["-s", &sig])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(data)?;
                child.wait_with_output()
            })
            .unwrap()
    };
    let good = verify(text.as_bytes());
    assert!(
        good.status.success(),
        "ssh-keygen -Y verify: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let mut tampered = text.clone().into_bytes();
    let at = tampered.len() / 2;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert!(
        !verify(&tampered).status.success(),
        "a changed result verified"
    );

    // The audit names the keyring's DPID, the key's fingerprint, the op, the outcome.
    let audit = audited(&mut c.sup, "dump-spool", "executed");
    assert_eq!(s(&audit, "dpid"), "pg-demo/@keyring", "{audit}");
    assert_eq!(field(&audit, "fingerprint"), fingerprint(&alice), "{audit}");
    assert_eq!(field(&audit, "principal"), "alice@ops", "{audit}");
    assert_eq!(field(&audit, "target_dpid"), dpid.as_str(), "{audit}");
    // The same record in the node's audit file, which no log filter can drop.
    let file = fs::read_to_string(sup_state.join("keyring/audit.log")).unwrap();
    let line = file
        .lines()
        .find(|l| l.contains("dump-spool"))
        .unwrap_or_else(|| panic!("{file}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["record"]["outcome"], "executed", "{line}");
    assert_eq!(
        line["record"]["fingerprint"],
        fingerprint(&alice).as_str(),
        "{line}"
    );

    // An ssh-ed25519 recipient works too: the reader's ssh key opens it with age.
    let ssh_recipient = fs::read_to_string(reader.key.with_extension("pub")).unwrap();
    let out = alice.request(
        &sup_state,
        &["--recipient", ssh_recipient.trim(), "dump-spool", dpid],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let text = tool(
        "age",
        &[
            "-d",
            "-i",
            reader.key.to_str().unwrap(),
            alice.result().to_str().unwrap(),
        ],
    );
    assert!(text.contains("recent_messages"), "{text}");

    // Sealed arguments: the request carries no readable argument.
    let prepared = std::process::Command::new(common::supervise_bin())
        .arg("--state-dir")
        .arg(&sup_state)
        .args([
            "request",
            "--prepare",
            "--seal-args",
            "--recipient",
            &alice.recipient,
            "set-capture",
            "pg-demo/pg-clients",
            "all",
        ])
        .output()
        .unwrap();
    let prepared = String::from_utf8_lossy(&prepared.stdout);
    assert!(
        prepared.contains("sealed-args ") && !prepared.contains("arg capture"),
        "{prepared}"
    );
    client.close(&mut c.sup);
    c.stop();
}

/// Signs `text` (written to DIR/name) with ssh-keygen in `namespace`; its signature.
fn sign_file(operator: &Operator, name: &str, text: &str, namespace: &str) -> std::path::PathBuf {
    let path = file(operator.dir.path(), name, text);
    let sig = std::path::PathBuf::from(format!("{}.sig", path.display()));
    let _ = fs::remove_file(&sig);
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-Y",
            "sign",
            "-n",
            namespace,
            "-f",
            operator.key.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    path
}

fn prepare(state: &Path, operator: &Operator, args: &[&str]) -> String {
    let mut all = vec!["request", "--prepare", "--recipient", &operator.recipient];
    all.extend_from_slice(args);
    let out = supervise(state, &all, &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout
}

fn send(state: &Path, operator: &Operator, request: &Path) -> Ctl {
    let result = operator.result();
    let args = [
        "request",
        "--send",
        request.to_str().unwrap(),
        "-o",
        result.to_str().unwrap(),
    ];
    supervise(state, &args, &[])
}

/// Replaces pg-clients' rules with `rules` by a signed request.
fn set_rules(ops: &Operator, state: &Path, rules: &str) -> Ctl {
    ops.set_rules(state, "pg-demo/pg-clients", rules)
}

fn refused(out: &Ctl, code: &str) {
    assert_eq!(out.code, Some(1), "expected a refusal ({code}): {out:?}");
    assert!(out.stderr.contains(code), "expected {code}: {out:?}");
}

#[test]
fn bad_requests_are_refused_with_their_reason_and_replays_fail_after_a_restart() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let st = c.sup.state.clone();
    let alice = Operator::new("alice");
    alice.trust(&st, r#"permit="stop",tenants="pg-demo""#);
    let mallory = Operator::new("mallory");

    // Unknown key; a key without the operation; another tenant.
    refused(&mallory.request(&st, &["stop", "pg-demo"]), "unknown_key");
    refused(
        &alice.request(&st, &["dump-spool", "pg-demo/pg-clients/c1"]),
        "not_permitted",
    );
    let audit = audited(&mut c.sup, "dump-spool", "not_permitted");
    assert!(
        field(&audit, "reason").contains("may not dump-spool"),
        "{audit}"
    );
    assert_eq!(field(&audit, "fingerprint"), fingerprint(&alice), "{audit}");

    // Signed elsewhere: wrong namespace, unsigned, changed after signing.
    let text = prepare(&st, &alice, &["stop", "pg-demo", "--valid-for", "10m"]);
    let req = sign_file(&alice, "git.req", &text, "git");
    refused(&send(&st, &alice, &req), "wrong_namespace");
    fs::write(format!("{}.sig", req.display()), "").unwrap();
    refused(&send(&st, &alice, &req), "unsigned");
    let req = sign_file(&alice, "stop.req", &text, "supervise-request");
    let changed = text.replace("op stop", "op level");
    fs::write(&req, &changed).unwrap();
    refused(&send(&st, &alice, &req), "bad_signature");
    // Another node's request: bound to a different node id (validly signed).
    let node_line = text.lines().find(|l| l.starts_with("node ")).unwrap();
    let other = text.replace(
        node_line,
        "node SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let req = sign_file(&alice, "other.req", &other, "supervise-request");
    refused(&send(&st, &alice, &req), "wrong_node");
    // Truncated, and oversized.
    let req = sign_file(
        &alice,
        "cut.req",
        &text[..text.len() - 4],
        "supervise-request",
    );
    refused(&send(&st, &alice, &req), "malformed");
    let huge = format!("{text}{}", "#".repeat(40 * 1024));
    let req = sign_file(&alice, "huge.req", &huge, "supervise-request");
    refused(&send(&st, &alice, &req), "too_large");
    // Expired (a 1 s request, sent 2 s later).
    let short = prepare(&st, &alice, &["stop", "pg-demo", "--valid-for", "1s"]);
    let req = sign_file(&alice, "short.req", &short, "supervise-request");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    refused(&send(&st, &alice, &req), "expired");
    // An invalid recipient never makes a request.
    let bad = alice.request(&st, &["--recipient", "age1nope", "stop", "pg-demo"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
    assert!(bad.stderr.contains("recipient"), "{bad:?}");
    // A signers file someone else could edit is not trusted at all.
    let signers = st.join("allowed_signers");
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&signers, fs::Permissions::from_mode(0o666)).unwrap();
    refused(&alice.request(&st, &["stop", "pg-demo"]), "signers_file");
    fs::set_permissions(&signers, fs::Permissions::from_mode(0o644)).unwrap();
    // Nor is one reached through a symlink (its target could be swapped under it).
    let real = st.join("signers.real");
    fs::rename(&signers, &real).unwrap();
    std::os::unix::fs::symlink(&real, &signers).unwrap();
    refused(&alice.request(&st, &["stop", "pg-demo"]), "signers_file");
    fs::remove_file(&signers).unwrap();
    fs::rename(&real, &signers).unwrap();
    // Nothing ran: the tenant is still up and answers.
    let mut client = c.client();
    client.query(&mut c.sup, "SELECT 1");
    client.close(&mut c.sup);

    // A user certificate from a trusted CA, its key held by ssh-agent: signed with
    // `ssh-keygen -Y sign -f KEY-cert.pub` (the agent signs, the certificate is sent).
    let ca = Operator::new("ops-ca");
    let carol = Operator::new("carol");
    let carol_pub = carol.key.with_extension("pub");
    tool(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            ca.key.to_str().unwrap(),
            "-I",
            "carol-cert",
            "-n",
            "ops-carol",
            "-V",
            "+10m",
            carol_pub.to_str().unwrap(),
        ],
    );
    let cert = carol.dir.path().join("id_ed25519-cert.pub");
    assert!(cert.exists(), "ssh-keygen -s wrote no certificate");
    let line = format!(
        "ops-* cert-authority,permit=\"level\",tenants=\"pg-demo\" {}\n",
        ca.public_key()
    );
    let mut text_signers = fs::read_to_string(&signers).unwrap();
    text_signers.push_str(&line);
    fs::write(&signers, text_signers).unwrap();
    let agent = tool("ssh-agent", &["-s"]);
    let var = |name: &str| {
        agent
            .split(';')
            .find_map(|p| p.trim().strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("ssh-agent -s printed no {name}: {agent}"))
            .to_owned()
    };
    let (sock, agent_pid) = (var("SSH_AUTH_SOCK"), var("SSH_AGENT_PID"));
    let with_agent =
        |args: &[&str]| carol.request_with(&st, &cert, args, &[("SSH_AUTH_SOCK", &sock)]);
    let added = std::process::Command::new("ssh-add")
        .env("SSH_AUTH_SOCK", &sock)
        .arg(&carol.key)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    let ok = with_agent(&["level", "pg-demo", "info"]);
    assert_eq!(ok.code, Some(0), "a certified key in ssh-agent: {ok:?}");
    assert_eq!(carol.open(&carol.result())["ok"], true);
    let audit = audited(&mut c.sup, "level", "executed");
    assert_eq!(field(&audit, "principal"), "ops-carol", "{audit}");
    // The certificate does not grant what its CA line does not.
    refused(&with_agent(&["stop", "pg-demo"]), "not_permitted");
    let _ = std::process::Command::new("kill").arg(&agent_pid).status();

    // A request for a later step: prepared and signed now, accepted once, replayed
    // after the supervisor restarts (same state dir, same node).
    let level = prepare(
        &st,
        &alice,
        &["level", "pg-demo", "info", "--valid-for", "10m"],
    );
    alice.trust(&st, r#"permit="level",tenants="pg-demo""#);
    let req = sign_file(&alice, "level.req", &level, "supervise-request");
    let first = send(&st, &alice, &req);
    assert_eq!(first.code, Some(0), "{first:?}");
    refused(&send(&st, &alice, &req), "replayed");
    c.stop();
    let mut c = PgDemo::start(&state, &[]);
    refused(&send(&st, &alice, &req), "replayed");
    let audit = audited(&mut c.sup, "level", "replayed");
    assert_eq!(s(&audit, "dpid"), "pg-demo/@keyring", "{audit}");
    // A level request cannot switch off the audit of the requests after it.
    alice.request_ok(&st, &["level", "pg-demo", "off"]);
    refused(&mallory.request(&st, &["stop", "pg-demo"]), "unknown_key");
    let after = audited(&mut c.sup, "stop", "unknown_key");
    assert_eq!(
        field(&after, "fingerprint"),
        fingerprint(&mallory),
        "{after}"
    );
    let st_keyring = c.sup.ctl_json(&["state", "pg-demo/@keyring"]);
    assert_eq!(
        st_keyring["refused"], 2,
        "the replay and mallory: {st_keyring}"
    );
    assert_eq!(st_keyring["executed"], 1, "{st_keyring}");
    c.stop();
}

#[test]
fn privileged_operations_read_memory_replace_rules_and_stop_the_tenant() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let st = c.sup.state.clone();
    let ops = Operator::new("ops");
    ops.trust(
        &st,
        r#"permit="dump-memory,set-rules,stop",tenants="pg-demo""#,
    );

    // dump-memory: the bytes match what /proc/PID/mem holds at that address.
    let mut client = c.client();
    let (code, _) = client.query_err(&mut c.sup, "SELECT amount FROM salaries");
    assert_eq!(code, "42501");
    let d = connections(&mut c.sup).pop().unwrap();
    let conn = c.sup.ctl_json(&["state", &d]);
    let ns_pid = conn["backend_pids"][0].as_i64().unwrap();
    let host_pid = conn["backend_host_pids"][0].as_i64().unwrap();
    let maps = fs::read_to_string(format!("/proc/{host_pid}/maps")).unwrap();
    let stack = maps.lines().find(|l| l.ends_with("[stack]")).unwrap();
    let start = u64::from_str_radix(stack.split('-').next().unwrap(), 16).unwrap();
    let addr = format!("{:#x}", start);
    let got = ops.request_ok(
        &st,
        &["dump-memory", "pg-demo", &ns_pid.to_string(), &addr, "64"],
    );
    assert_eq!(got["result"]["read"], 64, "{got}");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(got["result"]["bytes_base64"].as_str().unwrap())
        .unwrap();
    let mem = fs::File::open(format!("/proc/{host_pid}/mem")).unwrap();
    let mut expect = vec![0u8; 64];
    use std::os::unix::fs::FileExt as _;
    mem.read_exact_at(&mut expect, start).unwrap();
    assert_eq!(bytes, expect);
    // A process that is not one of the tenant's is refused.
    let out = ops.request(&st, &["dump-memory", "pg-demo", "999999", &addr, "64"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(ops.open(&ops.result())["error"]["code"], "unknown_process");

    // set-rules: a bad set is refused whole, and nothing changes.
    let bad =
        "[[rule]]\nkind = \"deny\"\nobjects = [\"payroll\"]\n\n[[rule]]\nkind = \"frobnicate\"\n";
    let out = set_rules(&ops, &st, bad);
    assert_eq!(out.code, Some(1), "{out:?}");
    let why = ops.open(&ops.result());
    assert_eq!(why["error"]["code"], "bad_rules", "{why}");
    let (code, _) = client.query_err(&mut c.sup, "SELECT amount FROM salaries");
    assert_eq!(code, "42501", "a refused rule set changed the rules");
    // A good set: live connections take it at their next message boundary, in place
    // when they can (the catalog asked again, prepared statements judged again),
    // ended with the reason when they cannot; new ones get it at once.
    let employee_names = "SELECT name FROM employee ORDER BY id";
    let mut prepared = c.client();
    let statement = prepared.with(&mut c.sup, "prepare", move |c| {
        c.prepare(employee_names).unwrap()
    });
    let mut in_block = c.client();
    in_block.query(&mut c.sup, "BEGIN");
    let mut sql_prepared = c.client();
    sql_prepared.query(&mut c.sup, "PREPARE p AS SELECT 1");
    let live = connections(&mut c.sup);
    assert_eq!(live.len(), 4, "{live:?}");
    let good = "[[rule]]\nkind = \"deny\"\nobjects = [\"employee\"]\n\n[[rule]]\nkind = \"mask\"\ntable = \"salaries\"\ncolumn = \"amount\"\nreplacement = \"0\"\n";
    let out = set_rules(&ops, &st, good);
    assert_eq!(out.code, Some(0), "{out:?}");
    let set = ops.open(&ops.result());
    assert_eq!(set["result"]["rules"], 2, "{set}");
    let mut adopted: Vec<String> = set["result"]["connections_adopted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    adopted.sort();
    let mut expected = live.clone();
    expected.sort();
    assert_eq!(adopted, expected, "{set}");
    assert_eq!(
        set["result"]["connections_ended"],
        serde_json::json!([]),
        "{set}"
    );
    // The idle session goes on under the new rules: salaries readable but masked
    // (learned again from the catalog), employee refused.
    assert_eq!(
        client.query(&mut c.sup, "SELECT amount FROM salaries ORDER BY id"),
        ["0", "0"]
    );
    let (code, _) = client.query_err(&mut c.sup, employee_names);
    assert_eq!(code, "42501");
    // A statement prepared under the old rules is judged again: refused now.
    let (code, message) = prepared.with(&mut c.sup, "execute", move |c| {
        let e = c.query(&statement, &[]).unwrap_err();
        let db = e.as_db_error().unwrap();
        (db.code().code().to_owned(), db.message().to_owned())
    });
    assert_eq!(code, "42501", "{message}");
    assert!(
        message.contains("prepared under rules since replaced"),
        "{message}"
    );
    // Inside a transaction block: the question ran in a savepoint; the transaction
    // goes on under the new rules and commits.
    assert_eq!(
        in_block.query(&mut c.sup, "SELECT amount FROM salaries ORDER BY id"),
        ["0", "0"]
    );
    in_block.query(&mut c.sup, "COMMIT");
    // SQL-level prepared statements cannot be judged again: that session ends, with
    // the reason (the crate may report the close before the FATAL it read).
    let ended = sql_prepared.with(&mut c.sup, "EXECUTE p", |c| {
        let e = c.simple_query("EXECUTE p").unwrap_err();
        let fatal = e.as_db_error().map(|db| db.severity() == "FATAL");
        (fatal, e.is_closed(), c.is_closed())
    });
    assert!(
        matches!(ended, (Some(true), _, _) | (None, true, _) | (_, _, true)),
        "{ended:?}"
    );
    let decision = c
        .sup
        .wait_record("the session's end, with its reason", |r| {
            field(r, "action") == "drop-session"
                && field(r, "reason").contains("1 SQL prepared statement")
        });
    assert_eq!(s(&decision, "dpid"), live[3].as_str(), "{decision}");
    let mut fresh = c.client();
    assert_eq!(
        fresh.query(&mut c.sup, "SELECT amount FROM salaries ORDER BY id"),
        ["0", "0"]
    );
    let (code, _) = fresh.query_err(&mut c.sup, "SELECT name FROM employee");
    assert_eq!(code, "42501");
    fresh.close(&mut c.sup);
    drop((client, prepared, in_block, sql_prepared));

    // stop: the tenant is stopped and the supervisor exits by itself.
    ops.request_ok(&st, &["stop", "pg-demo"]);
    audited(&mut c.sup, "stop", "executed");
    let PgDemo { sup, .. } = c;
    sup.wait_exit_ok();
}
