//! tshark, nats-server and psql over TCP, for the mirroring tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::pg::{pg, PgDemo};

/// A tool the tests need: its path, or a failure that names it and how to install it.
pub fn require_tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: install it with `apt-get install -y {package}` (.ci/run does)");
}

/// One packet as tshark decodes it.
#[derive(Debug, Clone)]
pub struct Packet {
    pub len: usize,
    pub cap_len: usize,
    pub stream: String,
    pub src_port: u16,
    pub types: String,
    pub query: String,
    pub comment: String,
}

/// `tshark -r FILE` with PORT decoded as PostgreSQL: one [`Packet`] per frame that
/// carries pgsql.
pub fn tshark(file: &Path, port: u16) -> Vec<Packet> {
    let tshark = require_tool("tshark", "tshark");
    let out = Command::new(tshark)
        .arg("-r")
        .arg(file)
        .args([
            "-d",
            &format!("tcp.port=={port},pgsql"),
            "-Y",
            "pgsql",
            "-T",
            "fields",
        ])
        .args([
            "-E",
            "separator=/t",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=|",
        ])
        .args([
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
            "-e",
            "tcp.stream",
            "-e",
            "tcp.srcport",
        ])
        .args([
            "-e",
            "pgsql.type",
            "-e",
            "pgsql.query",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark -r {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("").to_owned();
            Packet {
                len: get(0).parse().unwrap_or(0),
                cap_len: get(1).parse().unwrap_or(0),
                stream: get(2),
                src_port: get(3).parse().unwrap_or(0),
                types: get(4),
                query: get(5),
                comment: get(6),
            }
        })
        .collect()
}

/// psql over TCP (the tracked port): each statement with `-c` in one session, errors
/// not fatal; returns stdout and stderr.
pub fn psql_tcp(c: &PgDemo, statements: &[&str]) -> (String, String) {
    psql_to(c, "127.0.0.1", statements)
}

/// As [`psql_tcp`], to `host` (`::1`: a peer other than 127.0.0.1).
pub fn psql_to(c: &PgDemo, host: &str, statements: &[&str]) -> (String, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", "60"]).arg(pg("psql"));
    cmd.args(["-X", "-A", "-t", "-h", host, "-p", &c.port.to_string()]);
    cmd.args(["-U", "postgres", "-d", "postgres"]);
    for s in statements {
        cmd.args(["-c", s]);
    }
    let out = cmd.output().expect("run psql");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Files under `dir` whose name ends with `suffix`, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    found.retain(|p| p.to_string_lossy().ends_with(suffix));
    found.sort();
    found
}

/// Every byte of every file under `dir`, recursively.
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_bytes(&p));
            } else if let Ok(b) = std::fs::read(&p) {
                out.extend(b);
            }
        }
    }
    out
}

pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A nats-server with JetStream on a free port, its store in a temp dir; killed on
/// drop.
pub struct Nats {
    child: Child,
    pub port: u16,
    pub monitor: u16,
    pub store: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Nats {
        let bin = require_tool("nats-server", "nats-server");
        let store = tempfile::tempdir().expect("tempdir");
        let (port, monitor) = (free_port(), free_port());
        let child = Command::new(bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-m",
                &monitor.to_string(),
            ])
            .arg("-sd")
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let n = Nats {
            child,
            port,
            monitor,
            store,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_in_use(port) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    /// JetStream's account of stream `name` (`/jsz?streams=true` on the monitor port).
    pub fn stream_messages(&self, name: &str) -> u64 {
        let out = Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/jsz?streams=true", self.monitor),
            ])
            .output()
            .expect("run curl");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == name)
            .map(|s| s["state"]["messages"].as_u64().unwrap_or(0))
            .sum()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
