//! Confined tenants (issue 4): labels on homes and addresses, Landlock, the escape
//! suite run as tenant A against tenant B, accept-side refusal, `supervise up`.
//!
//! Each test has its own state dir (registry and homes). Run as root with
//! `--test-threads=1` after `cargo build --workspace` (`just test`).

mod common;
mod confined;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use confined::*;

const LINE: Duration = Duration::from_secs(60);

/// A confined `cross_escape serve` tenant listening on its own address.
fn server_profile(name: &str, port: u16, extra_network: &str) -> tempfile::TempPath {
    let bin = testbin("cross_escape");
    let ro = system_and_testbins();
    let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
    write_profile(&format!(
        "[tenant]\nname = \"{name}\"\nconfine = true\n\
         command = [\"{bin}\", \"serve\", \"--listen\", \"{{address}}:{port}\", \"--abstract\", \"{name}-sock\", \"--home\", \"{{home}}\"]\n\
         [filesystem]\nread_only = {ro}\n\
         [network]\ntcp_bind = [{port}]\n{extra_network}",
        bin = bin.display(),
        ro = toml_paths(&ro),
    ))
}

/// A confined tenant running whatever command the test gives after `--`.
fn client_profile(name: &str, extra_ro: &[&std::path::Path], network: &str) -> tempfile::TempPath {
    let mut ro = system_and_testbins();
    ro.extend(extra_ro.iter().map(|p| p.to_path_buf()));
    let ro: Vec<&std::path::Path> = ro.iter().map(|p| p.as_path()).collect();
    write_profile(&format!(
        "[tenant]\nname = \"{name}\"\nconfine = true\n[filesystem]\nread_only = {}\n{network}",
        toml_paths(&ro)
    ))
}

fn listen_addr(ready: &str) -> String {
    ready
        .split("listen=")
        .nth(1)
        .expect("ready line names its address")
        .trim()
        .to_string()
}

/// Accepts and drops connections on 127.0.0.1 (an unlabeled peer every tenant may reach)
/// until the returned flag is set.
fn unlabeled_server() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => drop(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    });
    (addr, stop)
}

#[test]
fn escape_suite_tenant_a_against_tenant_b() {
    require_root();
    let state = StateDir::new();
    let port_b = free_port();
    let prof_b = server_profile("esc-b", port_b, "");
    let mut b = state.run(&prof_b, &[]);
    let b_addr = listen_addr(&b.wait_line("ready pid=", LINE));
    let b_pid = tenant_pid(&b).to_string();
    let b_home = state.home("esc-b");
    let b_ip = b_addr.split(':').next().expect("ip").to_string();
    let b_other_ip = format!("{}.2", b_ip.rsplit_once('.').expect("dotted").0);

    // A setuid-root copy of the testbin, on a filesystem that honours setuid.
    let suid_dir = state.path().join("suid");
    std::fs::create_dir(&suid_dir).expect("mkdir suid");
    std::fs::set_permissions(&suid_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let suid = suid_dir.join("cross_escape_suid");
    std::fs::copy(testbin("cross_escape"), &suid).expect("copy setuid binary");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_eq!(std::fs::metadata(&suid).unwrap().mode() & 0o4000, 0o4000);
    let c = std::ffi::CString::new(suid_dir.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path and a zeroed statvfs to fill.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut vfs) }, 0);
    assert_eq!(
        vfs.f_flag & libc::ST_NOSUID,
        0,
        "{} is on a nosuid mount: the setuid attempt would prove nothing",
        suid_dir.display()
    );
    // World-readable, outside every allowed path: only Landlock stands in the way.
    let outside = state.path().join("outside.txt");
    std::fs::write(&outside, "outside\n").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (allowed, stop_allowed) = unlabeled_server();

    let prof_a = client_profile(
        "esc-a",
        &[&suid_dir],
        "[network]\naddress = \"127.1.77.0/24\"\n",
    );
    let bin = testbin("cross_escape");
    let secret = b_home.join("secret.txt");
    let mut a = state.run(
        &prof_a,
        &[
            bin.to_str().unwrap(),
            "attack",
            "--b-home",
            b_home.to_str().unwrap(),
            "--b-file",
            secret.to_str().unwrap(),
            "--b-addr",
            &b_addr,
            "--b-bind-ip",
            &b_other_ip,
            "--b-pid",
            &b_pid,
            "--b-abstract",
            "esc-b-sock",
            "--outside-file",
            outside.to_str().unwrap(),
            "--setuid-bin",
            suid.to_str().unwrap(),
            "--allowed-addr",
            &allowed,
            "--own-prefix",
            "127.1.77.",
        ],
    );
    a.wait_line("done", Duration::from_secs(120));
    stop_allowed.store(true, Ordering::Relaxed);
    let lines = a.stdout_lines().to_vec();
    eprintln!("tenant A's attempts:\n{}", lines.join("\n"));
    let dump = a.dump();
    let a_uid = registry_row(&state, "esc-a")[1].clone();
    let a_label = registry_row(&state, "esc-a")[2].clone();
    let b_label = registry_row(&state, "esc-b")[2].clone();
    let uid_line = format!("euid={a_uid}");
    // (attempt, what its "blocked" line must say; "" = any errno)
    let expected: &[(&str, &str)] = &[
        ("read_b_file", ""),
        ("write_b_file", ""),
        ("create_in_b_home", ""),
        ("list_b_home", ""),
        ("read_outside_file", "EACCES"),
        ("write_tmp", "EACCES"),
        ("connect_b", "EACCES"),
        ("connect_b_v4mapped", "EACCES"),
        ("connect_b_nonblocking", "EACCES"),
        ("sendto_b_udp", "EACCES"),
        ("bind_b", "EACCES"),
        ("bind_wildcard", "EACCES"),
        // B's abstract name lives in B's own network namespace (Landlock's scope,
        // EPERM, is the second wall).
        ("connect_b_abstract", "ECONNREFUSED"),
        ("signal_b", ""),
        ("ptrace_b", "EPERM"),
        ("proc_mem_b", ""),
        ("setns_b", ""),
        ("unshare", "EPERM"),
        ("mount", "EPERM"),
        ("setuid_exec", &uid_line),
        ("toctou_connect", "EACCES"),
        ("sendmsg_b_udp", "EACCES"),
        ("sendmmsg_b_second", "sent=1 retry=EACCES"),
        ("listen_autobind", "bound=127.1.77.1:"),
        ("socket_vsock", "EAFNOSUPPORT"),
        ("socket_sctp", "EPROTONOSUPPORT"),
        ("fd_swap_connect", ""),
        // Malformed addresses get the errno the kernel would give, never a CONTINUE.
        ("bind_unspec", "EAFNOSUPPORT"),
        ("connect_truncated_addr", "EINVAL"),
        ("connect_oversized_addr", "EINVAL"),
    ];
    for (name, detail) in expected {
        let prefix = format!("attempt {name}: ");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for attempt {name}\n{dump}"));
        let want = format!("{prefix}blocked {detail}");
        assert!(
            line.starts_with(want.trim_end()),
            "attempt {name}: want {want:?}, got {line:?}\n{dump}"
        );
    }
    // The race ran both ways: some connects reached the allowed peer, some were refused,
    // none reached B (the line would say ESCAPED).
    let toctou = lines
        .iter()
        .find(|l| l.starts_with("attempt toctou_connect"))
        .unwrap();
    let count = |key: &str| -> u64 {
        toctou
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {toctou}"))
    };
    assert!(count("allowed=") > 0 && count("denied=") > 0, "{toctou}");
    // Denials are logged with both labels.
    let log = a.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("denied") && l.contains(&a_label) && l.contains(&b_label)),
        "no denial naming {a_label} and {b_label} in:\n{log}"
    );
    assert!(log.contains("landlock fully enforced"), "{log}");
    // B is untouched: alive, and nothing of A's reached it.
    assert!(b.is_running(), "tenant B died\n{}", b.dump());
    let b_lines = b.stdout_lines().join("\n");
    assert!(
        !b_lines.contains("accepted"),
        "B accepted something from A:\n{b_lines}"
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "b-secret\n");
}

#[test]
fn accept_refuses_other_tenants_and_labels_the_source() {
    require_root();
    let state = StateDir::new();
    let port = free_port();
    let prof_c = server_profile("acc-c", port, "allowed_peers = [\"acc-e\"]\n");
    let mut c = state.run(&prof_c, &[]);
    let c_addr = listen_addr(&c.wait_line("ready pid=", LINE));
    let c_label = registry_row(&state, "acc-c")[2].clone();

    // D may connect (C is its allowed peer) but C does not allow D: refused at accept.
    let prof_d = client_profile("acc-d", &[], "[network]\nallowed_peers = [\"acc-c\"]\n");
    let connector = testbin("connector");
    let mut d = state.run(
        &prof_d,
        &[connector.to_str().unwrap(), "--connect", &c_addr],
    );
    let _ = d.wait(LINE);
    let d_label = registry_row(&state, "acc-d")[2].clone();
    let d_range = registry_row(&state, "acc-d")[4].clone();
    let log = c.stderr();
    assert!(
        log.lines().any(|l| l.contains("denied")
            && l.contains("accept")
            && l.contains(&c_label)
            && l.contains(&d_label)),
        "C's supervisor did not log the refused accept with both labels:\n{log}"
    );
    // E is allowed both ways: accepted, and from E's own address (its label).
    let prof_e = client_profile("acc-e", &[], "[network]\nallowed_peers = [\"acc-c\"]\n");
    let mut e = state.run(
        &prof_e,
        &[connector.to_str().unwrap(), "--connect", &c_addr],
    );
    let st = e.wait(LINE);
    assert_eq!(st.code(), Some(0), "E's connection failed\n{}", e.dump());
    let e_prefix = registry_row(&state, "acc-e")[4]
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    c.wait_line(&format!("accepted tcp from {e_prefix}."), LINE);
    // An operator's client (127.0.0.1, unlabeled) is served.
    let mut s = std::net::TcpStream::connect(&c_addr).expect("operator connects to C");
    let mut hello = String::new();
    s.read_to_string(&mut hello).unwrap();
    assert_eq!(hello, "hello-from-b\n");
    c.wait_line("accepted tcp from 127.0.0.1:", LINE);
    let accepted = c.stdout_lines().join("\n");
    let d_prefix = d_range.rsplit_once('.').unwrap().0.to_string();
    assert!(
        !accepted.contains(&format!("from {d_prefix}.")),
        "D got through:\n{accepted}"
    );
}

#[test]
fn homes_are_owned_labeled_and_relabeled() {
    require_root();
    let state = StateDir::new();
    let prof = write_profile(
        "[tenant]\nname = \"lab-a\"\nconfine = true\n\
         command = [\"/bin/sh\", \"-c\", \"mkdir -p d/e && echo x > d/e/f && echo ready && exec sleep 60\"]\n",
    );
    let mut t = state.run(&prof, &[]);
    t.wait_line("ready", LINE);
    let row = registry_row(&state, "lab-a");
    let (uid, label, home) = (row[1].clone(), row[2].clone(), state.home("lab-a"));
    assert_eq!(row[3], home.display().to_string());
    let meta = std::fs::metadata(&home).unwrap();
    assert_eq!(meta.uid().to_string(), uid);
    assert_eq!(meta.mode() & 0o777, 0o700);
    assert_eq!(label_of(&home).as_deref(), Some(label.as_str()));
    let file = home.join("d/e/f");
    eventually("the tenant's new file is labeled", || {
        label_of(&file).as_deref() == Some(label.as_str())
    });
    assert_eq!(std::fs::metadata(&file).unwrap().uid().to_string(), uid);
    let (code, out, err) = state.supervise(&["label", "--audit", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lab-a") && out.contains(&label), "{out}");
    // A forged label is caught by the audit.
    set_label(&file, "s0:c7,c9");
    let (code, out, _) = state.supervise(&["label", "--audit", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("s0:c7,c9") && out.contains(&label), "{out}");
    // Addresses are audited too.
    let ip = format!("{}.1", row[4].rsplit_once('.').unwrap().0);
    let (code, out, _) = state.supervise(&["label", "--audit", &ip]);
    assert_eq!(code, 0);
    assert!(out.contains("lab-a") && out.contains(&label), "{out}");
    // Processes carry the label of their uid.
    let pid = format!("pid:{}", tenant_pid(&t));
    let (code, out, _) = state.supervise(&["label", "--audit", &pid]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("uid {uid}, tenant lab-a, label {label}")),
        "{out}"
    );
    t.kill(libc::SIGTERM);
    t.wait(LINE);
}

#[test]
fn up_runs_every_profile_in_a_directory() {
    require_root();
    let state = StateDir::new();
    let dir = tempfile::tempdir().unwrap();
    for name in ["up-a", "up-b"] {
        let prof = server_profile(name, free_port(), "");
        std::fs::copy(&prof, dir.path().join(format!("{name}.toml"))).unwrap();
    }
    let mut up = Tenant::spawn_args(
        &[
            "--state-dir",
            state.path().to_str().unwrap(),
            "up",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    // The two tenants start concurrently: their lines come in either order.
    let deadline = std::time::Instant::now() + LINE;
    loop {
        let lines = up.stdout_lines();
        let ready = ["[up-a] ready pid=", "[up-b] ready pid="]
            .iter()
            .all(|p| lines.iter().any(|l| l.starts_with(p)));
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not both ready:\n{}",
            up.dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = registry_row(&state, "up-a");
    let b = registry_row(&state, "up-b");
    assert_ne!(a[2], b[2], "labels must differ");
    assert_ne!(a[4], b[4], "address ranges must differ");
    up.kill(libc::SIGTERM);
    let st = up.wait(LINE);
    assert_eq!(st.code(), Some(0), "{}", up.dump());
}

#[test]
fn bad_confinement_profiles_name_file_line_and_key() {
    require_root();
    let state = StateDir::new();
    let run_bad = |text: &str| {
        let prof = write_profile(text);
        let path = prof.to_str().unwrap().to_string();
        state.supervise(&["run", "--profile", &path, "--", "/bin/true"])
    };
    let (code, _, err) = run_bad(
        "[tenant]\nname = \"bad\"\nconfine = true\n[network]\nallowed_peers = [\"not a peer\"]\n",
    );
    assert_eq!(code, 2);
    assert!(err.contains(":5: network.allowed_peers[0]:"), "{err}");
    let (code, _, err) = run_bad(
        "[tenant]\nname = \"bad\"\nconfine = true\n[filesystem]\nread_only = [\"/no/such/dir\"]\n",
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("filesystem.read_only: /no/such/dir does not exist"),
        "{err}"
    );
    // Refused before any side effect: nothing was registered.
    let (_, out, _) = state.supervise(&["label"]);
    assert!(!out.contains("bad"), "{out}");
    // An audit without root could not read trusted xattrs: refused, not "unlabeled".
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(supervise_bin())
        .args([
            "--state-dir",
            state.path().to_str().unwrap(),
            "label",
            "--audit",
            "/",
        ])
        .output()
        .expect("run setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("must run as root"), "{err}");
    // A profile directory with nothing to run.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = state.supervise(&["up", empty.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("holds no *.toml profile"), "{err}");
}
