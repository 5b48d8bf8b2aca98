use super::*;

fn sample() -> Request {
    Request {
        op: "set-capture".into(),
        target: Target::new("pg-demo/pg-clients").unwrap(),
        node: "SHA256:abc".into(),
        instance: None,
        issued: 1000,
        expires: 1300,
        nonce: [0xab; 16],
        recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
            .parse()
            .unwrap(),
        args: Args::Clear(vec![
            ("capture".into(), "0..64".into()),
            ("note".into(), "50% of\nit é".into()),
        ]),
    }
}

#[test]
fn encode_then_parse_is_the_identity_and_values_are_percent_encoded() {
    let r = sample();
    let text = r.encode();
    assert!(
        text.contains("arg note 50%25%20of%0Ait%20%C3%A9\n"),
        "{text}"
    );
    assert_eq!(Request::parse(text.as_bytes()).unwrap(), r);
    assert_eq!(
        Request::parse(text.as_bytes()).unwrap().arg("note"),
        Some("50% of\nit é")
    );
}

#[test]
fn other_spellings_of_the_same_request_are_refused() {
    let text = sample().encode();
    let refuse = |t: &str| Request::parse(t.as_bytes()).unwrap_err();
    for (what, bad) in [
        ("crlf", text.replace('\n', "\r\n")),
        ("lower-case hex escape", text.replace("%25", "%2f")),
        (
            "an escape for a plain byte",
            text.replace("0..64", "0%2E.64"),
        ),
        ("leading zero", text.replace("issued 1000", "issued 01000")),
        (
            "two spaces",
            text.replace("op set-capture", "op  set-capture"),
        ),
        (
            "fields reordered",
            text.replace("issued 1000\nexpires 1300", "expires 1300\nissued 1000"),
        ),
        (
            "duplicate field",
            text.replace("op set-capture\n", "op set-capture\nop set-capture\n"),
        ),
        ("trailing line", format!("{text}extra\n")),
        ("no end line", text.replace("end\n", "")),
        ("missing newline", text.trim_end().to_owned()),
        (
            "upper-case nonce",
            text.replace(&hex(&[0xab; 16]), &hex(&[0xab; 16]).to_uppercase()),
        ),
        ("duplicate arg", text.replace("arg note", "arg capture")),
        (
            "version 2",
            text.replace("supervise-request/1", "supervise-request/2"),
        ),
        ("unknown op", text.replace("op set-capture", "op reboot")),
    ] {
        assert_ne!(bad, text, "{what}");
        let refusal = refuse(&bad);
        assert!(
            matches!(refusal.code, "malformed" | "too_large"),
            "{what}: {refusal}"
        );
    }
}

#[test]
fn every_length_is_bounded() {
    let mut r = sample();
    r.args = Args::Clear((0..17).map(|i| (format!("a{i}"), "x".into())).collect());
    assert_eq!(
        Request::parse(r.encode().as_bytes()).unwrap_err().code,
        "too_large"
    );
    r.args = Args::Clear(vec![("big".into(), "x".repeat(MAX_ARG + 1))]);
    assert!(Request::parse(r.encode().as_bytes()).is_err());
    let huge = format!("{}{}", sample().encode(), "#".repeat(MAX_REQUEST));
    assert_eq!(
        Request::parse(huge.as_bytes()).unwrap_err().code,
        "too_large"
    );
    assert!(Target::new(&"t".repeat(MAX_TARGET + 1)).is_err());
    for n in 0..sample().encode().len() {
        // Every truncation is refused, never accepted as a shorter request.
        assert!(
            Request::parse(&sample().encode().as_bytes()[..n]).is_err(),
            "prefix {n}"
        );
    }
}

#[test]
fn recipients_are_checked_where_they_are_parsed() {
    let text = sample().encode();
    for bad in [
        "age1notakey",
        "ssh-rsa AAAAB3NzaC1yc2E",
        "ssh-ed25519 AAAAnotbase64!",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOhQ2gU1eGmsH2nDr1Ie7RjjfEw3S6ARH5tIR6CLbq4L comment",
        "x25519 something",
    ] {
        let changed = text.replace(
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            bad,
        );
        assert_eq!(
            Request::parse(changed.as_bytes()).unwrap_err().code,
            "bad_recipient",
            "{bad}"
        );
    }
    let ssh = text.replace(
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOhQ2gU1eGmsH2nDr1Ie7RjjfEw3S6ARH5tIR6CLbq4L",
    );
    assert!(matches!(
        Request::parse(ssh.as_bytes()).unwrap().recipient,
        Recipient::SshEd25519(_)
    ));
}

#[test]
fn targets_name_their_tenant() {
    assert_eq!(
        Target::new("pg-demo/pg-clients/c3").unwrap().tenant(),
        "pg-demo"
    );
    assert_eq!(Target::new("pg-demo").unwrap().tenant(), "pg-demo");
    for bad in ["", "/x", "x/", "a//b", "a b", "a\u{0}"] {
        assert!(Target::new(bad).is_err(), "{bad:?}");
    }
}
