//! Files and rotation: 0600 files in a 0700 directory, numbering past existing files,
//! records kept across a rotation.

use super::*;
use crate::mirror::record::{Origin, What};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::Arc;

fn record(conn: &str, server: &str, what: What, data: &[u8]) -> Record {
    Record {
        time_ns: 1_700_000_000_000_000_000,
        tenant: Arc::from("pg-demo"),
        stream: Arc::from("pg-clients"),
        conn: Arc::from(conn),
        serial: 1,
        client: "192.0.2.10:51000".parse().unwrap(),
        server: server.parse().unwrap(),
        what,
        data: data.to_vec(),
    }
}

fn message(kind: &'static str, origin: Origin, original_len: usize, offset: usize) -> What {
    let reason = Arc::from("policy[0]");
    What::Message {
        kind,
        origin,
        original_len,
        offset,
        reason,
    }
}

/// A typed PostgreSQL message: type byte, length (itself included), body.
fn pg(kind: u8, body: &[&[u8]]) -> Vec<u8> {
    let body = body.concat();
    [&[kind][..], &(body.len() as u32 + 4).to_be_bytes(), &body].concat()
}

/// A startup, a query, its rows (one truncated to its 5-byte header, one captured
/// only from byte 5 on), completion and close, as the mirror would record them.
fn pg_conversation(conn: &str, server: &str) -> Vec<Record> {
    use Origin::{Client, Server};
    let params = b"user\0alice\0database\0db\0\0";
    let len = (params.len() as u32 + 8).to_be_bytes();
    let startup = [&len[..], &196_608u32.to_be_bytes(), params].concat();
    let query = pg(b'Q', &[b"SELECT secret FROM t WHERE id = 1\0"]);
    let (int16, int32) = (|v: i16| v.to_be_bytes(), |v: i32| v.to_be_bytes());
    let (one, text_oid, minus_one) = (int16(1), int32(25), int32(-1));
    let field: &[&[u8]] = &[
        &one,
        b"secret\0",
        &int32(16_384),
        &one,
        &text_oid,
        &int16(-1),
        &minus_one,
        &int16(0),
    ];
    let row = |value: &[u8]| pg(b'D', &[&one, &(value.len() as i32).to_be_bytes(), value]);
    let (long_row, other_row) = (row(&[b'x'; 40]), row(b"another secret value"));
    let big_row = row(&vec![b'y'; 200_000]);
    // `from..to` of the message `full` captured.
    let cut = |kind, origin, full: &[u8], from: usize, to: usize| {
        record(
            conn,
            server,
            message(kind, origin, full.len(), from),
            &full[from..to],
        )
    };
    let all = |kind, origin, full: &[u8]| cut(kind, origin, full, 0, full.len());
    vec![
        record(conn, server, What::Opened, b""),
        all("StartupMessage", Client, &startup),
        all("AuthenticationOk", Server, &pg(b'R', &[&int32(0)])),
        all("ReadyForQuery", Server, &pg(b'Z', &[b"I"])),
        all("Query", Client, &query),
        all("RowDescription", Server, &pg(b'T', field)),
        all("DataRow", Server, &row(b"s3cr3t")),
        cut("DataRow", Server, &long_row, 0, 5),
        cut("DataRow", Server, &other_row, 5, other_row.len()),
        cut("DataRow", Server, &big_row, 0, 100_000),
        cut("DataRow", Server, &big_row, 0, 100),
        all("DataRow", Server, &big_row),
        all("CommandComplete", Server, &pg(b'C', &[b"SELECT 3\0"])),
        all("ReadyForQuery", Server, &pg(b'Z', &[b"I"])),
        record(conn, server, What::Closed, b""),
    ]
}

/// Runs tshark on `file` for one line per PostgreSQL message: source port,
/// destination port, frontend (1) or backend (0), type, query, frame length on the
/// wire, captured length. A missing tshark fails the test by name.
fn tshark(file: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let fields =
        "tcp.srcport tcp.dstport pgsql.frontend pgsql.type pgsql.query frame.len frame.cap_len";
    let mut command = Command::new("tshark");
    command
        .arg("-r")
        .arg(file)
        .args(extra)
        .args(["-T", "fields", "-E", "separator=|"]);
    for field in fields.split(' ') {
        command.args(["-e", field]);
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("tshark is required by this test (apt-get install -y tshark): {e}")
    });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tshark {extra:?} failed: {stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    println!("tshark {extra:?}:\n{stdout}");
    stdout
        .lines()
        .map(|l| l.split('|').map(String::from).collect())
        .collect()
}

/// What tshark makes of `pg_conversation`: the whole messages and the prefixes
/// decoded (a big one reassembled), the byte range (a retransmission) not.
fn check_decoded(lines: &[Vec<String>], port: &str) {
    let expected = [
        ("1", "Startup message", 86, 86),
        ("0", "Authentication request", 63, 63),
        ("0", "Ready for query", 60, 60),
        ("1", "Simple query", 93, 93),
        ("0", "Row description", 86, 86),
        ("0", "Data row", 71, 71),
        ("0", "Data row", 105, 59), // truncated to its 5-byte header
        ("0", "Data row", 65_549, 65_548), // 100 KB of 200 KB
        ("0", "Data row", 65_549, 154), // 100 bytes of 200 KB
        ("0", "Data row", 3_580, 3_580), // 200 KB whole, reassembled
        ("0", "Command completion", 68, 68),
        ("0", "Ready for query", 60, 60),
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:?}");
    for (line, (frontend, kind, len, cap_len)) in lines.iter().zip(expected) {
        let (len, cap_len) = (len.to_string(), cap_len.to_string());
        assert_eq!(
            (&*line[2], &*line[3], &line[5], &line[6]),
            (frontend, kind, &len, &cap_len)
        );
        // A frontend message goes to the server's port, a backend one comes from it.
        assert_eq!(line[if frontend == "1" { 1 } else { 0 }], port, "{line:?}");
    }
    assert_eq!(lines[3][4], "SELECT secret FROM t WHERE id = 1");
}

#[test]
fn tshark_decodes_a_mirrored_postgresql_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let mut station = PcapngFile::new(dir.path().join("mirror"), "pg".into(), 0);
    station.connect().unwrap();
    let on_5432 = pg_conversation("pg-demo/pg-clients/c3", "192.0.2.20:5432");
    let on_6543 = pg_conversation("pg-demo/pg-clients/c4", "192.0.2.20:6543");
    for r in on_5432.iter().chain(&on_6543) {
        station.write(r).unwrap();
    }
    station.flush().unwrap();
    let file = dir.path().join("mirror/pg-1.pcapng");
    // By default only 5432 is PostgreSQL; 6543 is once told so.
    check_decoded(&tshark(&file, &["-Y", "pgsql"]), "5432");
    let told = [
        "-d",
        "tcp.port==6543,pgsql",
        "-Y",
        "pgsql && tcp.port==6543",
    ];
    check_decoded(&tshark(&file, &told), "6543");
    // Nothing tshark calls an error (malformed, bad checksum), even checking sums.
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(told[..2].iter())
        .args([
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "ip.check_checksum:TRUE",
        ])
        .args(["-q", "-z", "expert,error"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !summary.contains("Errors"),
        "{summary}"
    );
}

/// The TCP sequence numbers of the packets in a pcapng file (IPv4 frames).
fn sequences(path: &Path) -> Vec<u32> {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).unwrap();
    let mut out = Vec::new();
    while let Some(block) = reader.next_block() {
        if let pcap_file::pcapng::Block::EnhancedPacket(p) = block.unwrap() {
            out.push(u32::from_be_bytes(p.data[38..42].try_into().unwrap()));
        }
    }
    out
}

#[test]
fn files_rotate_past_the_limit_continue_numbering_and_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("mirror");
    std::fs::create_dir(&mirror).unwrap();
    std::fs::write(mirror.join("pg-7.pcapng"), b"an earlier run").unwrap();
    // Every file passes 1 byte with its first record: one record a file.
    let mut station = PcapngFile::new(mirror.clone(), "pg".into(), 1);
    station.connect().unwrap();
    for r in &pg_conversation("d/s/c1", "192.0.2.20:5432")[..3] {
        station.write(r).unwrap();
    }
    station.flush().unwrap();
    let state = station.state();
    assert_eq!(
        state["file"],
        serde_json::json!(mirror.join("pg-10.pcapng"))
    );
    assert_eq!(state["files_written"], 3);
    let file = |n: u32| mirror.join(format!("pg-{n}.pcapng"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file(8)), 0o600);
    // Each file is a capture of its own; the sequence numbers run on across them.
    let (syn, startup, auth) = (
        sequences(&file(8)),
        sequences(&file(9)),
        sequences(&file(10)),
    );
    assert_eq!((syn.len(), startup.len(), auth.len()), (3, 1, 1));
    assert_eq!(startup[0], syn[0] + 1);
    assert_eq!(auth[0], syn[1] + 1);
    // Rotation fails while the directory's name is taken by a file, and the station
    // is down; `connect` recreates the directory, 0700.
    std::fs::remove_dir_all(&mirror).unwrap();
    std::fs::write(&mirror, b"in the way").unwrap();
    let next = &pg_conversation("d/s/c1", "192.0.2.20:5432")[3];
    assert!(station.write(next).is_err());
    assert_eq!(station.state()["open"], false);
    assert!(station.write(next).is_err());
    std::fs::remove_file(&mirror).unwrap();
    station.connect().unwrap();
    assert_eq!(mode(&mirror), 0o700);
    assert_eq!(station.state()["file"], serde_json::json!(file(11)));
}
