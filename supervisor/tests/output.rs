//! The tenant's stderr comes out stamped: whole lines, per process, in order, never
//! mixed with another process's, and a blocked output never stalls the tenant (lines
//! are dropped and the drop is reported instead).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::supervise_bin;

const PYTHON: &str = "/usr/bin/python3";

fn python() -> &'static str {
    assert!(
        std::path::Path::new(PYTHON).exists(),
        "{PYTHON} is missing (Debian package python3)"
    );
    PYTHON
}

/// Four children write 300 numbered lines each, every line in three small writes, all
/// at once; the supervisor must put each line back together and keep each child's
/// order.
#[test]
fn lines_stay_whole_and_in_order_per_process() {
    let state = tempfile::tempdir().unwrap();
    let script = r#"
import os
kids = []
for k in range(4):
    pid = os.fork()
    if pid == 0:
        for n in range(300):
            line = "child=%d seq=%d %s\n" % (k, n, "x" * (n % 50))
            a, b = len(line) // 3, 2 * len(line) // 3
            for part in (line[:a], line[a:b], line[b:]):
                os.write(2, part.encode())
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
"#;
    let out = Command::new(supervise_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["run", "--", python(), "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("run supervise");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "supervise failed: {:?}\n{stderr}",
        out.status
    );
    let mut seen: Vec<Vec<usize>> = vec![Vec::new(); 4];
    let mut pids: Vec<Option<String>> = vec![None; 4];
    for line in stderr.lines() {
        let Some(at) = line.find("child=") else {
            continue;
        };
        // `TIME  INFO DPID: child=K seq=N xxx fd=stderr pid=P`
        let text = &line[at..];
        let (body, stamp) = text
            .rsplit_once(" fd=stderr pid=")
            .unwrap_or_else(|| panic!("unstamped line {line:?}\n{stderr}"));
        let mut words = body.split(' ');
        let k: usize = words.next().unwrap()["child=".len()..].parse().unwrap();
        let n: usize = words.next().unwrap()["seq=".len()..].parse().unwrap();
        let pad = words.next().unwrap_or("");
        assert_eq!(pad, "x".repeat(n % 50), "line cut or mixed: {line:?}");
        assert!(words.next().is_none(), "two lines mixed into one: {line:?}");
        assert!(line.contains(" INFO "), "not a log record: {line:?}");
        match &pids[k] {
            None => pids[k] = Some(stamp.to_owned()),
            Some(p) => assert_eq!(p, stamp, "child {k}'s lines carry two pids"),
        }
        seen[k].push(n);
    }
    for (k, seqs) in seen.iter().enumerate() {
        assert_eq!(
            *seqs,
            (0..300).collect::<Vec<_>>(),
            "child {k}'s lines\n{stderr}"
        );
    }
    let mut distinct: Vec<_> = pids.iter().flatten().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        distinct.len(),
        4,
        "each child stamped with its own pid: {pids:?}"
    );
}

/// The supervisor's stderr is a pipe nobody reads: the tenant still writes 10 MB of
/// log and finishes; the lines that did not fit are counted and the count is written.
#[test]
fn a_blocked_log_output_never_stalls_the_tenant() {
    let state = tempfile::tempdir().unwrap();
    let script = r#"
import os, sys
line = ("y" * 99 + "\n").encode()
for _ in range(100000):
    os.write(2, line)
sys.stdout.write("done\n")
sys.stdout.flush()
"#;
    let mut child = Command::new(supervise_bin())
        .arg("--state-dir")
        .arg(state.path())
        .args(["run", "--", python(), "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run supervise");
    let started = Instant::now();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    // Generous: this is not a timing assertion but a hang detector (natively the
    // loop takes well under a second).
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = stdout.read_line(&mut first);
        let _ = tx.send(first);
    });
    let got = rx.recv_timeout(Duration::from_secs(120));
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    if got.is_err() {
        let _ = child.kill();
    }
    let _ = stderr.read_to_string(&mut log);
    let status = child.wait().unwrap();
    assert_eq!(
        got.as_deref().map(str::trim),
        Ok("done"),
        "the tenant did not finish while its log output was blocked ({:?} elapsed)",
        started.elapsed()
    );
    assert!(status.success(), "supervise: {status:?}");
    assert!(
        log.contains("log lines dropped"),
        "the drop was not reported; last lines: {}",
        log.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
}
