//! Framing attacks: a type-0 message mid-session, and what the synthetic
//! conversation's ports make tshark decode.

use super::*;

// ---------------------------------------------------------------------------------
// 1. A typed message with tag 0 in mid-session re-reads as a StartupMessage

/// HELD (was a hole: the mirror re-read a mid-session type-0 message as a
/// StartupMessage and took `app` for the session's user). A message of type 0 after
/// startup is now a framing error: the session closes (PostgreSQL itself ends one on
/// type 0), nothing of it is mirrored as a startup, and the user stays `intern`.
#[test]
fn holds_tag0_message_mid_session_ends_the_session_and_spoofs_nothing() {
    let mut rig = Rig::new(AUDIT, "10.1.1.1:40000");
    rig.login("intern");
    // A refused Parse: the supervisor discards the client's messages up to Sync.
    rig.client(&parse("SELECT * FROM salaries"));
    let spoof = tag0(0);
    let fx = rig.client(&spoof);
    assert!(fx.close, "a type-0 message ends the session");
    assert!(
        !contains(&rig.sent_to_server(), b"user\0app"),
        "the server never saw the tag-0 message"
    );
    let got = settle(&rig.keep);
    let m = messages(&got);
    assert_eq!(
        m.iter().filter(|x| x.0 == "StartupMessage").count(),
        1,
        "only the real startup: {m:?}"
    );
    assert!(
        !m.iter().any(|x| x.2 == spoof.len()),
        "the type-0 bytes are not mirrored"
    );
}

/// HELD (was a hole: tshark showed a forged `DROP TABLE audit_log` Query hidden in
/// a type-0 message and lost the real Query after it). The type-0 message now ends
/// the session; tshark shows only what the client really sent as Queries.
#[test]
fn holds_tag0_message_cannot_forge_a_query_for_tshark() {
    let mut rig = Rig::new(PG_MIRROR, "10.1.1.1:40000");
    rig.login("intern");
    let real = query("SELECT name FROM employee WHERE id = 7");
    rig.client(&real);
    rig.sent_to_server();
    rig.client(&parse("SELECT * FROM salaries"));
    let spoof = tag0(sync().len());
    let fx = rig.client(&spoof);
    assert!(fx.close, "a type-0 message ends the session");
    rig.close();
    let got = settle(&rig.keep);
    let lines = tshark(&got, &["-Y", "pgsql.type == \"Simple query\""]);
    let shown: Vec<&str> = lines
        .iter()
        .map(|l| l.split('|').nth(2).unwrap_or(""))
        .collect();
    assert_eq!(
        shown,
        ["SELECT name FROM employee WHERE id = 7"],
        "{lines:?}"
    );
}

// ---------------------------------------------------------------------------------
// 2. tshark: what the synthetic conversation's ports make it decode

fn frontend_of(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect()
}

/// HOLDS: the client picks its source port; from 3306 (below the server's, MySQL's)
/// tshark still decodes pgsql, because the synthetic SYN tells it which end is the
/// server and it tries that port first.
#[test]
fn holds_client_source_port_3306_does_not_hide_the_session_from_tshark_pgsql() {
    let normal = tshark(
        &conversation("10.1.1.1:40000", "10.9.9.9:5432"),
        &["-Y", "pgsql"],
    );
    assert_eq!(normal.len(), 6, "control: 6 messages decoded");
    let lines = tshark(
        &conversation("10.1.1.1:3306", "10.9.9.9:5432"),
        &["-Y", "pgsql"],
    );
    assert_eq!(lines.len(), 6, "the same session from port 3306: {lines:?}");
}

/// HELD (was a hole): a client whose source port equals the server's port (5432 on another
/// host: unprivileged) makes tshark take every message as a frontend one: the
/// server's DataRow reads as a client `Describe`, its CommandComplete as a `Close`.
/// Fixed: the pcapng writes such a client with another (ephemeral) port.
#[test]
fn holds_client_source_port_5432_is_written_as_another_so_tshark_reads_both_ways() {
    let lines = tshark(
        &conversation("10.1.1.1:5432", "10.9.9.9:5432"),
        &["-Y", "pgsql"],
    );
    let decoded = frontend_of(&lines);
    let want: Vec<(String, String)> = [
        ("1", "Startup message"),
        ("0", "Authentication request"),
        ("0", "Ready for query"),
        ("1", "Simple query"),
        ("0", "Data row"),
        ("0", "Command completion"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(decoded, want);
}

/// HOLDS: libpq's default sslmode=prefer starts with SSLRequest; the supervisor's
/// one-byte `N` is mirrored as "unframed" with 0 bytes captured. tshark still decodes
/// the server's later messages in place (no desync).
#[test]
fn holds_ssl_answer_captured_empty_does_not_desync_tshark() {
    let mut rig = Rig::new(PG_MIRROR, "10.1.1.1:40000");
    rig.client(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
    assert_eq!(rig.sent_to_client(), b"N");
    rig.login("alice");
    rig.client(&query("SELECT 1"));
    let mut answer = typed(b'T', &[0, 0]);
    answer.extend_from_slice(&typed(b'C', b"SELECT 1\0"));
    answer.extend_from_slice(&ready());
    rig.server(&answer);
    rig.close();
    let got = settle(&rig.keep);
    let m = messages(&got);
    assert_eq!((m[1].0, m[1].2, m[1].3.len()), ("unframed", 1, 0));
    let lines = tshark(&got, &["-Y", "pgsql"]);
    let decoded = frontend_of(&lines);
    let backend: Vec<&str> = decoded
        .iter()
        .filter(|d| d.0 == "0")
        .map(|d| d.1.as_str())
        .collect();
    assert!(backend.contains(&"Authentication request"), "{decoded:?}");
    assert!(backend.contains(&"Command completion"), "{decoded:?}");
    assert_eq!(
        decoded.iter().filter(|d| d.1 == "Simple query").count(),
        1,
        "{decoded:?}"
    );
}
