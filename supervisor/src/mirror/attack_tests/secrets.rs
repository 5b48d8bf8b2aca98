//! Secrets through the real engine, whatever a policy, override or trigger asks.

use super::*;

// ---------------------------------------------------------------------------------
// 5. Secrets through the real engine, whatever is asked for

/// HOLDS: SCRAM end to end, the client's messages split a byte at a time, the
/// server's pipelined in one write: no password, nonce, salt, proof, signature or
/// cancel key reaches a station.
#[test]
fn holds_scram_and_cancel_key_with_split_and_pipelined_writes() {
    let mut rig = greedy_rig();
    rig.client(&startup(&[("user", "alice"), ("database", "shop")]));
    let mut server = auth(10, b"SCRAM-SHA-256\0\0");
    rig.server(&server);
    let mut initial = b"SCRAM-SHA-256\0".to_vec();
    let first = b"n,,n=,r=CLIENTNONCE";
    initial.extend_from_slice(&(first.len() as u32).to_be_bytes());
    initial.extend_from_slice(first);
    let mut client = typed(b'p', &initial);
    client.extend_from_slice(&typed(
        b'p',
        b"c=biws,r=CLIENTNONCESERVERNONCE,p=PROOFPROOF",
    ));
    for b in &client {
        rig.client(std::slice::from_ref(b));
    }
    server = auth(11, b"r=CLIENTNONCESERVERNONCE,s=SALTSALT,i=4096");
    server.extend_from_slice(&auth(12, b"v=SERVERSIGNATURE"));
    server.extend_from_slice(&auth(0, b""));
    server.extend_from_slice(&typed(b'K', &[0, 0, 0x30, 0x39, 0xCA, 0xFE, 0xBA, 0xBE]));
    server.extend_from_slice(&ready());
    rig.server(&server);
    // A cleartext and an MD5 password on another pass, and CancelRequests pipelined.
    rig.client(&typed(b'p', b"hunter2\0"));
    rig.client(&typed(b'p', b"md5abcdef0123456789\0"));
    rig.close();
    let mut cancel = Rig::new(GREEDY, "10.1.1.1:40001");
    cancel
        .mirror
        .lock()
        .set_override(overrides::Target::Tenant, Some(Capture::All), None);
    let mut c = Vec::new();
    for _ in 0..3 {
        c.extend_from_slice(&[0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39]);
        c.extend_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE]);
    }
    cancel.client(&c);
    let got = settle(&rig.keep);
    let kinds: Vec<&str> = messages(&got).iter().map(|m| m.0).collect();
    println!("{kinds:?}");
    assert!(kinds.iter().filter(|k| **k == "PasswordMessage").count() >= 4);
    assert_eq!(kinds.iter().filter(|k| **k == "Authentication").count(), 4);
    assert_none_of(
        &got,
        &[
            b"NONCE",
            b"SALT",
            b"PROOF",
            b"SIGNATURE",
            b"hunter2",
            b"md5abc",
            &[0xCA, 0xFE, 0xBA, 0xBE],
        ],
    );
    let got = settle(&cancel.keep);
    assert_eq!(
        messages(&got)
            .iter()
            .filter(|m| m.0 == "CancelRequest")
            .count(),
        3
    );
    assert_none_of(&got, &[&[0xCA, 0xFE, 0xBA, 0xBE]]);
}

/// HOLDS: Bind values under every capture an override can ask (including a byte range
/// aimed past the values' start), format-code lists long and short, a Bind cut short.
#[test]
fn holds_bind_values_under_any_override() {
    // With the marker (every capture raised to all) and without it.
    let plain = GREEDY.replace(
        "[[mirror.trigger]]\nkind = \"marker\"\nliteral = \"\\u0000\"\n",
        "",
    );
    assert!(!plain.contains("marker"));
    for profile in [GREEDY, &plain] {
        bind_values_under_any_override(profile);
    }
}

fn bind_values_under_any_override(profile: &str) {
    let mut rig = Rig::new(profile, "10.1.1.1:40000");
    rig.login("alice");
    let dpid = rig.dpid.clone();
    let mut binds = Vec::new();
    for formats in [0u16, 1, 3] {
        let mut b = b"portal\0stmt\0".to_vec();
        b.extend_from_slice(&formats.to_be_bytes());
        for _ in 0..formats {
            b.extend_from_slice(&[0, 1]);
        }
        b.extend_from_slice(&[0, 2]);
        for v in [&b"SECRETVALUE1"[..], b"SECRETVALUE2"] {
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v);
        }
        b.extend_from_slice(&[0, 0]);
        binds.push(typed(b'B', &b));
    }
    for capture in ["all", "header", "9", "12..40", "20..200", "0..1000000"] {
        rig.mirror.lock().set_override(
            overrides::Target::Connection(dpid.clone()),
            Some(Capture::parse(capture).unwrap()),
            None,
        );
        let mut all = Vec::new();
        for b in &binds {
            all.extend_from_slice(b);
            all.extend_from_slice(&sync());
        }
        rig.client(&all);
    }
    // A Bind cut short after a value's length (the rules then end the session).
    let mut cut = b"\0\0\0\0\0\x01".to_vec();
    cut.extend_from_slice(&12u32.to_be_bytes());
    cut.extend_from_slice(b"SECRETVALUE3");
    rig.client(&typed(b'B', &cut));
    let got = settle(&rig.keep);
    assert_none_of(&got, &[b"SECRET"]);
    let kinds: Vec<_> = messages(&got).iter().map(|m| (m.0, m.3.len())).collect();
    assert!(
        kinds.iter().filter(|m| m.0 == "Bind").count() == 19,
        "{kinds:?}"
    );
}

/// HOLDS: a masked column's real value, whatever the capture: the DataRow the client
/// got (masked) is what is mirrored, the server's own is not, even with the server's
/// messages pipelined with everything else in one write.
#[test]
fn holds_masked_value_never_reaches_a_station() {
    let mut rig = Rig::new(AUDIT, "10.1.1.1:40000");
    rig.mirror
        .lock()
        .set_override(overrides::Target::Tenant, Some(Capture::All), None);
    rig.client(&startup(&[("user", "intern"), ("database", "shop")]));
    let mut hello = auth(0, b"");
    hello.extend_from_slice(&ready());
    rig.server(&hello);
    // The catalog answer: employee.ssn is table 16384 column 3.
    let row = |vals: &[&str]| {
        let mut b = (vals.len() as u16).to_be_bytes().to_vec();
        for v in vals {
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        typed(b'D', &b)
    };
    let mut learn = row(&["c", "16384", "3", "employee.ssn"]);
    for c in ["id", "name", "ssn"] {
        learn.extend_from_slice(&row(&["t", "employee", c, ""]));
    }
    learn.extend_from_slice(&typed(b'C', b"SELECT 4\0"));
    learn.extend_from_slice(&ready());
    rig.server(&learn);
    rig.sent_to_server();
    rig.sent_to_client();
    rig.client(&query("SELECT ssn FROM employee"));
    let sent = rig.sent_to_server();
    assert!(
        contains(&sent, b"SELECT ssn FROM employee"),
        "{:?}",
        String::from_utf8_lossy(&sent)
    );
    let mut field = b"ssn\0".to_vec();
    field.extend_from_slice(&16384u32.to_be_bytes());
    field.extend_from_slice(&3i16.to_be_bytes());
    field.extend_from_slice(&25u32.to_be_bytes());
    field.extend_from_slice(&(-1i16).to_be_bytes());
    field.extend_from_slice(&(-1i32).to_be_bytes());
    field.extend_from_slice(&0i16.to_be_bytes());
    let mut desc = 1u16.to_be_bytes().to_vec();
    desc.extend_from_slice(&field);
    let mut answer = typed(b'T', &desc);
    for _ in 0..3 {
        answer.extend_from_slice(&row(&["123-45-6789"]));
    }
    answer.extend_from_slice(&typed(b'C', b"SELECT 3\0"));
    answer.extend_from_slice(&ready());
    // Split anywhere: the server's write arrives in two pieces.
    rig.server(&answer[..answer.len() / 2]);
    rig.server(&answer[answer.len() / 2..]);
    let to_client = rig.sent_to_client();
    assert!(
        contains(&to_client, b"XXX-XX-XXXX"),
        "masked for the client"
    );
    assert!(!contains(&to_client, b"123-45-6789"));
    let got = settle(&rig.keep);
    let rows = messages(&got)
        .into_iter()
        .filter(|m| m.0 == "DataRow" && m.1 == Origin::Server)
        .count();
    assert_eq!(rows, 3);
    assert_none_of(&got, &[b"123-45-6789"]);
}

/// HOLDS: after a framing failure under on_error = "passthrough", the client's bytes
/// flow unframed; a password following the bad message is mirrored as its length.
#[test]
fn holds_unframed_client_bytes_are_mirrored_as_their_length() {
    // (PostgreSQL rules refuse passthrough: without them.)
    let profile = GREEDY
        .replace(
            "[[stream.rule]]\nkind = \"deny\"\nobjects = [\"salaries\"]\n",
            "",
        )
        .replace(
            "framer = \"postgres\"",
            "framer = \"postgres\"\non_error = \"passthrough\"",
        );
    let mut rig = Rig::new(&profile, "10.1.1.1:40000");
    rig.mirror
        .lock()
        .set_override(overrides::Target::Tenant, Some(Capture::All), None);
    rig.client(&startup(&[("user", "alice")]));
    let mut bad = vec![b'Q', 0, 0, 0, 2];
    bad.extend_from_slice(&typed(b'p', b"hunter2\0"));
    rig.client(&bad);
    rig.client(&typed(b'p', b"hunter3\0"));
    let got = settle(&rig.keep);
    let m = messages(&got);
    assert!(m.iter().any(|x| x.0 == "unframed"), "{m:?}");
    assert_none_of(&got, &[b"hunter"]);
}
