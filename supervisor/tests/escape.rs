//! The bypasses are closed (issue 2, "Must show" item 4, last point): the `escape`
//! testbin tries the syscalls a tenant could use to get around the supervisor, as
//! user nobody under the default filter (io_uring and Linux AIO, TCP zerocopy receive
//! included), and the ways to move bytes on a tracked socket without the serviced
//! read/write calls (sendfile, splice, positional preadv2).
//!
//! Run as root with `--test-threads=1` after `cargo build --workspace`.

mod common;
mod peer;

use common::*;
use peer::*;
use std::time::Duration;

const LINE: Duration = Duration::from_secs(30);

/// Runs `escape ARGS` as nobody with `streams` in the profile; `during` runs once the
/// tenant printed its first line (ready). Returns all stdout lines, after asserting
/// that the supervisor exited 0.
fn run_escape(
    args: &[&str],
    streams: &str,
    during: impl FnOnce(&mut Tenant),
) -> (Vec<String>, String) {
    require_root();
    let prof = write_profile(&format!(
        "{}{streams}",
        tenant_header("escape", Some("nobody"))
    ));
    let mut t = Tenant::spawn(&prof, &testbin("escape"), args);
    t.wait_line("ready pid=", LINE);
    during(&mut t);
    t.wait_line("seccomp-mode=", LINE);
    let st = t.wait(LINE);
    let dump = t.dump();
    assert_eq!(st.code(), Some(0), "escape must exit 0\n{dump}");
    (t.stdout_lines().to_vec(), dump)
}

fn assert_lines(lines: &[String], want: &[String], dump: &str) {
    let missing: Vec<&String> = want.iter().filter(|w| !lines.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "missing lines (exact match): {missing:#?}\n--- full output:\n{dump}"
    );
}

#[test]
fn escape_attempts_are_denied_as_nobody() {
    let (lines, dump) = run_escape(&[], "", |_| {});
    let mut want: Vec<String> = [
        "io_uring_setup",
        "io_setup",
        "tcp_zerocopy_receive",
        "seccomp_filter",
        "ptrace_traceme",
        "ptrace_attach",
        "process_vm_readv",
        "process_vm_writev",
        "pidfd_getfd",
        "bpf_prog_load",
        "mount_tmpfs",
        "kexec_load",
        "init_module",
        "finit_module",
        "unshare_newuser",
        "userfaultfd",
        "perf_event_open",
    ]
    .iter()
    .map(|n| format!("{n} errno=EPERM"))
    .collect();
    want.push("clone3 errno=ENOSYS".into());
    want.push("listener-fd-visible no".into());
    assert_lines(&lines, &want, &dump);

    // The tenant cannot switch off or leave its filter: it still runs in filter mode
    // with the supervisor's filter installed after every attempt above.
    let mode = lines
        .iter()
        .find(|l| l.starts_with("seccomp-mode="))
        .unwrap_or_else(|| panic!("no seccomp-mode= line\n{dump}"));
    let field = |k: &str| -> String {
        mode.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {mode:?}\n{dump}"))
            .to_string()
    };
    assert_eq!(
        field("seccomp-mode="),
        "2",
        "tenant must run in filter mode\n{dump}"
    );
    let filters: u32 = field("filters=")
        .parse()
        .unwrap_or_else(|_| panic!("bad filters= in {mode:?}\n{dump}"));
    assert!(
        filters >= 1,
        "at least the supervisor's filter: {mode}\n{dump}"
    );
}

#[test]
fn sendfile_and_splice_on_tracked_socket_fail_with_einval() {
    let port = free_port();
    let streams = stream_table(&format!("listen_port = {port}"), "raw", &[], &[]);
    let mut peer_bytes = None;
    let (lines, dump) = run_escape(&["--port", &port.to_string()], &streams, |t| {
        let mut s = connect(port);
        t.wait_line("accepted", LINE);
        // A few bytes for splice_in to (try to) move into a pipe.
        send(&mut s, b"peer bytes\n");
        t.wait_line("conn closed", LINE);
        peer_bytes = Some(read_to_end(&mut s));
    });
    let mut want: Vec<String> = ["sendfile", "splice_in", "splice_out"]
        .iter()
        .map(|n| format!("{n} errno=EINVAL"))
        .collect();
    // preadv2 with an explicit offset is positional I/O: the kernel refuses it on a
    // socket, so it cannot read around the spool either.
    want.push("preadv2_offset errno=ESPIPE".into());
    assert_lines(&lines, &want, &dump);
    let (got, end) = peer_bytes.expect("peer ran");
    // The tenant never wrote through the serviced calls: the engine sent nothing,
    // and neither sendfile nor a splice got "sendfile\n" or the peer's own bytes out.
    assert!(
        got.is_empty(),
        "peer received bytes the engine never sent: {:?} (then {end:?})\n{dump}",
        String::from_utf8_lossy(&got)
    );
}
