//! A real PostgreSQL 15 under `supervise run --profile profiles/postgres.toml`, with
//! psql and pgbench as clients over TCP 127.0.0.1:5432 (the tracked port).
//!
//! Installs postgresql-15 with apt-get when it is missing; needs root and a free
//! port 5432 (a running Debian system cluster on 5432 is stopped).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PORT: u16 = 5432;

fn pg(bin: &str) -> PathBuf {
    Path::new(PG_BIN).join(bin)
}

/// psql over TCP to the tracked port, tuples only, unaligned, quiet, stop on error.
fn psql_cmd() -> Command {
    let mut c = Command::new(pg("psql"));
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-p", &PORT.to_string()])
        .args(["-U", "postgres", "-d", "postgres"]);
    c
}

fn psql(sql: &str) -> String {
    run_ok(psql_cmd().args(["-c", sql]))
}

/// Runs psql with `input` on its stdin (COPY ... FROM STDIN), returns stdout.
fn psql_stdin(sql: &str, input: &[u8]) -> String {
    use std::io::Write;
    let mut child = psql_cmd()
        .args(["-c", sql])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn psql");
    let mut stdin = child.stdin.take().expect("psql stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&data).expect("write psql stdin");
    });
    let out = child.wait_with_output().expect("wait psql");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "psql -c {sql:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 psql output")
}

fn md5sum_file(path: &Path) -> String {
    let out = run_ok(Command::new("md5sum").arg(path));
    out.split_whitespace()
        .next()
        .expect("md5sum output")
        .to_string()
}

/// Deterministic pseudo-random text of `len` bytes from [a-z0-9 ].
fn text_of_len(len: usize, mut seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789 ";
    let mut s = Vec::with_capacity(len);
    for _ in 0..len {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s.push(ALPHABET[(seed >> 33) as usize % ALPHABET.len()]);
    }
    String::from_utf8(s).expect("ascii")
}

fn wait_ready(t: &mut Tenant, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = Command::new(pg("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &PORT.to_string()])
            .status()
            .expect("run pg_isready")
            .success();
        if ok {
            // Make sure it is our server that answered, not another one on the port.
            std::thread::sleep(Duration::from_millis(300));
            if !t.is_running() {
                let d = t.dump();
                panic!("something answered on 127.0.0.1:{PORT} but supervise exited\n{d}");
            }
            return;
        }
        if !t.is_running() {
            let d = t.dump();
            panic!("supervise exited before PostgreSQL accepted connections\n{d}");
        }
        if Instant::now() > deadline {
            let d = t.dump();
            panic!("PostgreSQL not ready on 127.0.0.1:{PORT} within {timeout:?}\n{d}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Parses `key: <integer>` from pgbench's report.
fn pgbench_number(report: &str, key: &str) -> u64 {
    let line = report
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("pgbench report has no line {key:?}:\n{report}"));
    line[key.len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"))
}

#[test]
fn postgres_under_supervise_psql_and_pgbench() {
    require_root();
    require_postgres();
    ensure_port_free(PORT);

    // A throwaway cluster in a directory owned by postgres; it also holds the unix socket.
    let dir = tempfile::Builder::new()
        .prefix("supervise-pg-")
        .tempdir()
        .expect("tempdir");
    let root = dir.path().to_path_buf();
    run_ok(Command::new("chown").args(["postgres:postgres"]).arg(&root));
    let data = root.join("data");
    run_ok(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg("--no-sync")
            .current_dir(&root),
    );

    let profile = repo_profile("postgres.toml");
    let port = PORT.to_string();
    let args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--profile".into(),
        profile.into(),
        "--".into(),
        pg("postgres").into(),
        "-D".into(),
        data.clone().into(),
        "-k".into(),
        root.clone().into(),
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-p".into(),
        port.clone().into(),
    ];
    let mut t = Tenant::spawn_args(&args, Some(&root));
    wait_ready(&mut t, Duration::from_secs(60));

    // --- plain queries, exact results ---
    psql("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL)");
    psql("INSERT INTO t VALUES (1, 'alpha', 10), (2, 'beta', 20), (3, 'gamma', 30)");
    assert_eq!(psql("SELECT name FROM t WHERE id = 2"), "beta\n");
    assert_eq!(
        psql("SELECT id, name, qty FROM t ORDER BY id"),
        "1|alpha|10\n2|beta|20\n3|gamma|30\n"
    );
    assert_eq!(psql("SELECT sum(qty), count(*) FROM t"), "60|3\n");
    psql("UPDATE t SET qty = qty + 1 WHERE id >= 2");
    assert_eq!(
        psql("SELECT string_agg(qty::text, ',' ORDER BY id) FROM t"),
        "10,21,31\n"
    );

    // A multi-row result larger than one packet.
    let expected: String = (1..=5000u64).map(|g| format!("{g}|{}\n", g * g)).collect();
    assert_eq!(
        psql("SELECT g, g::bigint * g FROM generate_series(1, 5000) g"),
        expected
    );

    // A server-side error travels back as a protocol error; the session survives.
    let out = psql_cmd()
        .args(["-c", "SELECT 1/0"])
        .stdin(Stdio::null())
        .output()
        .expect("run psql");
    assert!(!out.status.success(), "SELECT 1/0 should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("division by zero"),
        "unexpected psql stderr: {err}"
    );
    assert_eq!(psql("SELECT 42"), "42\n");

    // --- a 1 MiB text value round trip, md5 checked on both sides ---
    let big = text_of_len(1 << 20, 0x5eed);
    let big_path = root.join("big.txt");
    std::fs::write(&big_path, &big).expect("write big.txt");
    let client_md5 = md5sum_file(&big_path);
    let sql_path = root.join("big.sql");
    std::fs::write(
        &sql_path,
        format!("CREATE TABLE big (id int PRIMARY KEY, v text);\nINSERT INTO big VALUES (1, '{big}');\n"),
    )
    .expect("write big.sql");
    run_ok(psql_cmd().arg("-f").arg(&sql_path));
    assert_eq!(
        psql("SELECT length(v), md5(v) FROM big WHERE id = 1"),
        format!("{}|{client_md5}\n", 1 << 20),
        "server-side length/md5 of the 1 MiB value differ from the client's"
    );
    let back = psql("SELECT v FROM big WHERE id = 1");
    let back = back.strip_suffix('\n').expect("trailing newline");
    let back_path = root.join("back.txt");
    std::fs::write(&back_path, back).expect("write back.txt");
    assert_eq!(
        md5sum_file(&back_path),
        client_md5,
        "md5 of the 1 MiB value read back differs"
    );
    assert!(
        back == big,
        "1 MiB value read back differs from what was written"
    );

    // --- COPY in and out ---
    psql("CREATE TABLE c (id int PRIMARY KEY, label text NOT NULL, n bigint NOT NULL)");
    let mut csv = String::new();
    for i in 1..=20000u64 {
        let label = match i % 10 {
            0 => format!("\"row {i}, with a comma\""),
            5 => format!("\"row {i} says \"\"hi\"\"\""),
            _ => format!("row {i}"),
        };
        csv.push_str(&format!("{i},{label},{}\n", i * 7));
    }
    psql_stdin("COPY c FROM STDIN (FORMAT csv)", csv.as_bytes());
    let sum: u64 = (1..=20000u64).map(|i| i * 7).sum();
    assert_eq!(
        psql("SELECT count(*), sum(n) FROM c"),
        format!("20000|{sum}\n")
    );
    assert_eq!(
        psql("SELECT label FROM c WHERE id = 5"),
        "row 5 says \"hi\"\n"
    );
    let copied_out = psql("COPY (SELECT * FROM c ORDER BY id) TO STDOUT (FORMAT csv)");
    assert!(
        copied_out == csv,
        "COPY TO STDOUT differs from the CSV copied in ({} vs {} bytes)",
        copied_out.len(),
        csv.len()
    );

    // --- pgbench ---
    run_ok(
        Command::new(pg("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-i",
                "postgres",
            ])
            .current_dir(&root),
    );
    let report = run_ok(
        Command::new(pg("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
            .args(["-S", "-c", "4", "-T", "20", "postgres"])
            .current_dir(&root),
    );
    eprintln!("pgbench -S -c 4 -T 20 under supervise:\n{report}");
    assert_eq!(
        pgbench_number(&report, "number of failed transactions:"),
        0,
        "pgbench reported failed transactions:\n{report}"
    );
    let processed = pgbench_number(&report, "number of transactions actually processed:");
    assert!(processed > 0, "pgbench processed no transaction:\n{report}");

    // --- no socket copies left behind: every client has gone, so no server-side
    // socket on the tracked port may linger in CLOSE-WAIT (a copy the supervisor kept
    // after the backend exited would hold it open) ---
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lingering = run_ok(Command::new("ss").args([
            "-Htn",
            "state",
            "close-wait",
            &format!("( sport = :{PORT} )"),
        ]));
        if lingering.trim().is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let fds = std::fs::read_dir(format!("/proc/{}/fd", t.pid()))
                .map(|d| d.count())
                .unwrap_or(0);
            panic!(
                "{} server-side connection(s) on port {PORT} still in CLOSE-WAIT 10 s after \
                 all clients left (the supervisor holds {fds} fds): copies of tracked sockets \
                 are not released when the backend that owned them exits\n{lingering}",
                lingering.lines().count()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // --- smart shutdown: SIGTERM to the supervisor reaches postgres, which exits 0 ---
    t.kill(libc::SIGTERM);
    let st = t.wait(Duration::from_secs(30));
    if st.code() != Some(0) {
        let d = t.dump();
        panic!("supervise exited with {st} after SIGTERM, expected 0\n{d}");
    }
    let log = t.stderr();
    assert!(
        log.contains("database system is shut down"),
        "postgres did not log a clean shutdown:\n{log}"
    );
    assert!(!log.contains("panicked"), "the supervisor panicked:\n{log}");
}
