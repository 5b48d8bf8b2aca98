//! Malformed and hostile requests on a live supervisor's control socket (raw frames
//! from the test process): each gets its error code, a stalled client costs only its
//! own connection, a flood of connections is told `busy`, and afterwards the
//! supervisor still answers and PostgreSQL still serves queries.

use std::time::{Duration, Instant};

use crate::confined::StateDir;
use crate::harness::*;
use crate::pg::*;

#[test]
fn malformed_requests_get_their_codes_and_the_supervisor_keeps_serving() {
    let state = StateDir::new();
    let mut c = PgDemo::start(&state, &[]);
    let sock = c.sup.wait_socket("pg-demo");

    // --- one connection, many bad requests: each answered, the framing kept ---
    let mut a = Raw::connect(&sock);
    let cases: &[(&[u8], &str)] = &[
        (b"{nope", "bad_request"),
        (b"\xff\xfe\x00garbage", "bad_request"),
        (b"[1]", "bad_request"),
        (b"", "bad_request"),
        (br#"{"op":"list"}"#, "bad_request"),
        (br#"{"v":2,"op":"list"}"#, "bad_version"),
        (br#"{"v":1,"op":"frobnicate"}"#, "unknown_op"),
        (br#"{"v":1}"#, "bad_request"),
        (br#"{"v":1,"op":"state"}"#, "bad_request"),
        (
            br#"{"v":1,"op":"state","dpid":"pg-demo","extra":1}"#,
            "bad_request",
        ),
        (
            br#"{"v":1,"op":"state","dpid":"pg-demo/nope"}"#,
            "unknown_dpid",
        ),
        (
            br#"{"v":1,"op":"state","dpid":"pg-demo/pg-clients/c999999"}"#,
            "unknown_dpid",
        ),
        (
            br#"{"v":1,"op":"config","dpid":"other-tenant"}"#,
            "unknown_dpid",
        ),
        (
            br#"{"v":1,"op":"level","dpid":"pg-demo","level":"loud"}"#,
            "requires_signed_request",
        ),
        (
            br#"{"v":1,"op":"selftest","dpid":"pg-demo","name":"nope"}"#,
            "unknown_selftest",
        ),
        (
            br#"{"v":1,"op":"dump-spool","dpid":"pg-demo"}"#,
            "requires_signed_request",
        ),
        (
            br#"{"v":1,"op":"dump-memory","dpid":"pg-demo"}"#,
            "requires_signed_request",
        ),
        (
            br#"{"v":1,"op":"set-rules","dpid":"pg-demo"}"#,
            "requires_signed_request",
        ),
        // Changing what is mirrored or logged needs a signed request.
        (
            br#"{"v":1,"op":"set-capture","dpid":"pg-demo","capture":"all"}"#,
            "requires_signed_request",
        ),
        (
            br#"{"v":1,"op":"signed","request":"x","signature":""}"#,
            "malformed",
        ),
        (br#"{"v":1,"op":"signed","request":"x"}"#, "bad_request"),
        (
            br#"{"v":1,"op":"stop","dpid":"pg-demo"}"#,
            "requires_signed_request",
        ),
        (
            br#"{"v":1,"op":"kill","dpid":"pg-demo"}"#,
            "requires_signed_request",
        ),
    ];
    for (body, want) in cases {
        let resp = a.ask(body);
        assert_eq!(
            error_code(&resp),
            *want,
            "request {:?}: {resp}",
            String::from_utf8_lossy(body)
        );
    }
    let listed = a.ask(br#"{"v":1,"op":"list"}"#);
    let dpids = result(&listed).to_string();
    assert!(dpids.contains("pg-demo/pg-clients/r2"), "{listed}");
    drop(a);

    // --- a 100 MiB length: refused before any of it is read, then closed ---
    let mut big = Raw::connect(&sock);
    big.send_bytes(&(100u32 << 20).to_be_bytes());
    let resp = big.recv().expect("an answer to the oversized length");
    assert_eq!(error_code(&resp), "too_large", "{resp}");
    assert!(
        big.closed_by_server(),
        "the connection stays open after too_large"
    );

    // --- a request sent and the answer never read: nothing for the server to mind ---
    let mut rude = Raw::connect(&sock);
    rude.send(br#"{"v":1,"op":"metrics"}"#);
    drop(rude);

    // --- stalled clients: half a body, half a length prefix ---
    let mut stalled = Raw::connect(&sock);
    let body = br#"{"v":1,"op":"state","dpid":"pg-demo"}"#;
    stalled.send_bytes(&(body.len() as u32).to_be_bytes());
    stalled.send_bytes(&body[..10]);
    let mut stalled_prefix = Raw::connect(&sock);
    stalled_prefix.send_bytes(&[0, 0]);
    // Meanwhile another client is served, several requests on one connection.
    let mut b = Raw::connect(&sock);
    for _ in 0..3 {
        let r = b.ask(br#"{"v":1,"op":"state","dpid":"pg-demo"}"#);
        result(&r);
        let r = b.ask(br#"{"v":1,"op":"selftest","dpid":"pg-demo/@control"}"#);
        assert_eq!(result(&r)["passed"], true, "{r}");
    }
    let out = c.sup.ctl(&["list"]);
    assert_eq!(
        out.code,
        Some(0),
        "ctl list while two clients stall: {out:?}"
    );
    drop(b);
    // The stalled ones are told `timeout` and closed.
    for (what, raw) in [
        ("half a body", &mut stalled),
        ("half a prefix", &mut stalled_prefix),
    ] {
        let resp = raw
            .recv()
            .unwrap_or_else(|| panic!("{what}: closed without an answer"));
        assert_eq!(error_code(&resp), "timeout", "{what}: {resp}");
        assert!(raw.closed_by_server(), "{what}: still open after timeout");
    }

    // --- a flood of connections: past the limit, `busy`; served again afterwards ---
    let mut held = Vec::new();
    let mut busy = None;
    for _ in 0..256 {
        let mut r = Raw::connect(&sock);
        let resp = r.ask(br#"{"v":1,"op":"state","dpid":"pg-demo"}"#);
        if resp["ok"] == true {
            held.push(r);
        } else {
            busy = Some(resp);
            break;
        }
    }
    let busy = busy.unwrap_or_else(|| {
        panic!(
            "{} control connections served at once, none told busy",
            held.len()
        )
    });
    assert_eq!(error_code(&busy), "busy", "{busy}");
    assert!(!held.is_empty(), "not even one connection was served");
    drop(held);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let resp = Raw::connect(&sock).ask(br#"{"v":1,"op":"list"}"#);
        if resp["ok"] == true {
            break;
        }
        assert_eq!(error_code(&resp), "busy", "{resp}");
        assert!(
            Instant::now() < deadline,
            "still busy after the flood ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // --- afterwards: the supervisor answers, PostgreSQL serves, nothing panicked ---
    let out = c.sup.ctl(&["list", "--json"]);
    assert_eq!(out.code, Some(0), "ctl list after the abuse: {out:?}");
    let selftest = c.sup.ctl_json(&["selftest", "pg-demo/@control"]);
    assert_eq!(selftest["passed"], true, "{selftest}");
    let mut client = c.client();
    let sup = &mut c.sup;
    assert_eq!(client.query(sup, "SELECT 40 + 2"), ["42"]);
    let (code, _) = client.query_err(sup, "SELECT * FROM salaries");
    assert_eq!(code, "42501");
    assert!(
        sup.tenant.is_running(),
        "the supervisor exited:\n{}",
        sup.log()
    );
    let log = sup.log();
    assert!(!log.contains("panicked"), "the supervisor panicked:\n{log}");
    client.close(sup);
    c.sup.stop();
}
