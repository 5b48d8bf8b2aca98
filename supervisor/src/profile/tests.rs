//! Profile parsing and its errors: every error names the file, the line of the key
//! itself (of its table's header when the key is missing) and the dotted key.

use super::*;

fn parse(text: &str) -> Result<Profile, ProfileError> {
    Profile::parse(text, Path::new("t.toml"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const STREAM: &str = "[tenant]\nname = \"x\"\n\n[[stream]]\nname = \"c\"\n";

#[test]
fn embedded_default_parses() {
    let p = Profile::embedded_default();
    assert!(p.streams.is_empty());
    assert!(p.env.is_empty());
}

#[test]
fn full_profile_parses() {
    let p = parse(
        "[tenant]\nname = \"echo\"\nuid = 65534\n\n[[stream]]\nname = \"c\"\nlisten_port = 7000\nframer = \"lines\"\n\
         [[stream.rule]]\nkind = \"wrap\"\ndirection = \"inbound\"\nprefix = \"<\"\n",
    )
    .unwrap();
    assert_eq!(p.streams[0].selector, Selector::ListenPort(7000));
    let mut rules = p.streams[0].new_rules();
    let mut out = transforms::Output::default();
    transforms::apply_rules(&mut rules, Direction::Outbound, b"x", &mut out).unwrap();
    assert_eq!(out.onward, b"x");
    let mut out = transforms::Output::default();
    transforms::apply_rules(&mut rules, Direction::Inbound, b"x", &mut out).unwrap();
    assert_eq!(out.onward, b"<x");
    assert_eq!(p.ids.unwrap().gid, 65534);
}

#[test]
fn dotted_keys_and_inline_tables_parse() {
    let p = parse("tenant.name = \"x\"\ntenant.env.A = \"1\"\n").unwrap();
    assert_eq!(p.tenant, "x");
    assert_eq!(p.env, [("A".to_owned(), "1".to_owned())]);
    let p = parse("tenant = { name = \"y\", env = { B = \"2\", A = \"1\" } }\n").unwrap();
    assert_eq!(
        p.env,
        [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned())
        ]
    );
}

#[test]
fn unknown_keys() {
    assert_eq!(
        error(&format!("{STREAM}listen_prot = 1\nframer = \"raw\"\n")),
        "t.toml:6: stream[0].listen_prot: unknown key (expected one of `name`, `listen_port`, \
         `remote_port`, `framer`, `max_message`, `on_error`, `on_partial_close`, `rule`)"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nenvironment = {}\n"),
        "t.toml:3: tenant.environment: unknown key (expected one of `name`, `user`, `uid`, \
         `gid`, `confine`, `command`, `env`)"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\n[tenants]\n"),
        "t.toml:3: tenants: unknown key (expected one of `tenant`, `filesystem`, `network`, \
         `limits`, `stream`, `mirror`)"
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = \"5432\"\nframer = \"raw\"\n"
        )),
        "t.toml:6: stream[0].listen_port: invalid type: string \"5432\", expected an \
         integer in 0..=65535"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nconfine = \"yes\"\n"),
        "t.toml:3: tenant.confine: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        error("tenant = 5\n"),
        "t.toml:1: tenant: invalid type: integer `5`, expected a table"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"raw\"\nrule = \"none\"\n"
        )),
        "t.toml:8: stream[0].rule: invalid type: string \"none\", expected an array"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nenv = { A = 1 }\n"),
        "t.toml:3: tenant.env.A: invalid type: integer `1`, expected a string"
    );
}

#[test]
fn out_of_range_values() {
    assert_eq!(
        error(&format!("{STREAM}listen_port = 70000\nframer = \"raw\"\n")),
        "t.toml:6: stream[0].listen_port: invalid value: integer `70000`, expected an \
         integer in 0..=65535"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\n\nuid = -1\n"),
        "t.toml:4: tenant.uid: invalid value: integer `-1`, expected an integer in \
         0..=4294967295"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"raw\"\nmax_message = 0\n"
        )),
        "t.toml:8: stream[0].max_message: 0 is outside 1..=67108864"
    );
    assert_eq!(
        error(&format!("{STREAM}remote_port = 0\nframer = \"raw\"\n")),
        "t.toml:6: stream[0].remote_port: port 0 cannot be tracked"
    );
}

#[test]
fn bad_enum_values() {
    assert_eq!(
        error(&format!("{STREAM}listen_port = 1\n\nframer = \"xml\"\n")),
        "t.toml:8: stream[0].framer: unknown variant `xml`, expected one of `raw`, `lines`, \
         `postgres`"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"raw\"\n[[stream.rule]]\nkind = \"wrap\"\n\
             direction = \"sideways\"\nprefix = \"<\"\n"
        )),
        "t.toml:10: stream[0].rule[0].direction: unknown variant `sideways`, expected one of \
         `inbound`, `outbound`, `both`"
    );
}

#[test]
fn missing_keys_point_at_their_table() {
    assert_eq!(
        error(&format!("{STREAM}listen_port = 1\n")),
        "t.toml:4: stream[0].framer: required key is missing"
    );
    assert_eq!(
        error("# a comment\n[tenant]\nuser = \"root\"\n"),
        "t.toml:2: tenant.name: required key is missing"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"lines\"\n[[stream]]\nname = \"d\"\nframer = \"raw\"\n"
        )),
        "t.toml:8: stream[1].listen_port: exactly one of listen_port or remote_port is required"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"raw\"\n[[stream.rule]]\nkind = \"wrap\"\n"
        )),
        "t.toml:8: stream[0].rule[0].direction: generic rules need direction = \"inbound\", \
         \"outbound\" or \"both\""
    );
    assert_eq!(error(""), "t.toml:1: tenant: required key is missing");
    assert_eq!(
        error("[tenant]\nname = \"x\"\ntenant = 1\n"),
        "t.toml:3: tenant.tenant: unknown key (expected one of `name`, `user`, `uid`, `gid`, \
         `confine`, `command`, `env`)"
    );
    assert_eq!(
        error("name = \"x\"\n"),
        "t.toml:1: name: unknown key (expected one of `tenant`, `filesystem`, `network`, `limits`, `stream`, `mirror`)"
    );
}

#[test]
fn validation_errors_point_at_the_key() {
    assert_eq!(
        error("[tenant]\n\nname = \"a b\"\n"),
        "t.toml:3: tenant.name: \"a b\" must be non-empty [A-Za-z0-9_-]"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nuser = \"no-such-user-here\"\n"),
        "t.toml:3: tenant.user: no such user \"no-such-user-here\" on this host"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nuser = \"root\"\n\nuid = 3\n"),
        "t.toml:5: tenant.uid: give either user or uid/gid, not both"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nremote_port = 2\nframer = \"raw\"\n"
        )),
        "t.toml:6: stream[0].listen_port: exactly one of listen_port or remote_port is required"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"raw\"\n[[stream]]\nname = \"d\"\n\nlisten_port = 1\nframer = \"raw\"\n"
        )),
        "t.toml:11: stream[1].listen_port: ListenPort(1) is already tracked by another stream"
    );
    assert_eq!(
        error(&format!(
            "{STREAM}listen_port = 1\nframer = \"postgres\"\n[[stream.rule]]\nkind = \"deny\"\n\
             objects = [\"ok\",\n  \"not ok\"]\n"
        )),
        "t.toml:11: stream[0].rule[0].objects[1]: \"not ok\" is not a table or column name"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\ncommand = []\n"),
        "t.toml:3: tenant.command: needs a program (first element)"
    );
}

#[test]
fn env_key() {
    let p =
        parse("[tenant]\nname = \"x\"\n[tenant.env]\nPGSSLMODE = \"disable\"\n\"A.B\" = \"\"\n")
            .unwrap();
    assert_eq!(
        p.env,
        [
            ("A.B".to_owned(), String::new()),
            ("PGSSLMODE".to_owned(), "disable".to_owned())
        ]
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nenv = { \"A=B\" = \"1\" }\n"),
        "t.toml:3: tenant.env.A=B: \"A=B\": a variable name cannot contain '='"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\n[tenant.env]\nOK = \"1\"\n\"\" = \"1\"\n"),
        "t.toml:5: tenant.env.: an environment variable needs a name"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\n[tenant.env]\nA = \"a\\u0000b\"\n"),
        "t.toml:4: tenant.env.A: a value cannot contain a NUL byte"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nconfine = true\nenv = { SUPERVISE_LABEL = \"s0\" }\n"),
        "t.toml:4: tenant.env.SUPERVISE_LABEL: set by the supervisor for a confined tenant; \
         it cannot be changed"
    );
    // Unconfined tenants may use the names.
    assert!(parse("[tenant]\nname = \"x\"\nenv = { SUPERVISE_LABEL = \"s0\" }\n").is_ok());
}

#[test]
fn syntax_errors_give_the_line() {
    assert_eq!(
        error(&format!("{STREAM}listen_port = \n")),
        "t.toml:6: invalid string; expected `\"`, `'`"
    );
    assert_eq!(
        error("[tenant]\nname = \"x\"\nname = \"y\"\n"),
        "t.toml:3: duplicate key `name` in table `tenant`"
    );
}

#[test]
fn remote_port_streams_map_the_protocol_roles() {
    let listen = parse(&format!(
        "{STREAM}listen_port = 5432\nframer = \"postgres\"\n"
    ))
    .unwrap();
    let remote = parse(&format!(
        "{STREAM}remote_port = 5432\nframer = \"postgres\"\n"
    ))
    .unwrap();
    let (l, r) = (&listen.streams[0], &remote.streams[0]);
    assert!(!l.tenant_is_client() && r.tenant_is_client());
    assert_eq!(l.protocol_direction(Direction::Inbound), Direction::Inbound);
    assert_eq!(
        r.protocol_direction(Direction::Inbound),
        Direction::Outbound
    );
    assert_eq!(
        r.protocol_direction(Direction::Outbound),
        Direction::Inbound
    );
    // The client's StartupMessage (untyped) is framed where the client writes: the
    // tenant's outbound bytes on a remote_port stream, its inbound ones otherwise.
    let startup: &[u8] = &[0, 0, 0, 8, 0, 3, 0, 0];
    let complete = transforms::Framing::Complete { len: 8 };
    assert_eq!(
        r.new_framer(Direction::Outbound).frame(startup),
        Ok(complete)
    );
    assert_eq!(
        l.new_framer(Direction::Inbound).frame(startup),
        Ok(complete)
    );
    // The server's ReadyForQuery (typed) is framed where the server writes.
    let ready: &[u8] = b"Z\0\0\0\x05I";
    let whole = transforms::Framing::Complete { len: 6 };
    assert_eq!(r.new_framer(Direction::Inbound).frame(ready), Ok(whole));
    assert_eq!(l.new_framer(Direction::Outbound).frame(ready), Ok(whole));
    assert!(r.new_framer(Direction::Outbound).frame(ready).is_err());
    // An SSLRequest written by a client tenant is answered 'N' back to the tenant.
    let ssl_request: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut rules = r.new_rules();
    let mut out = transforms::Output::default();
    transforms::apply_rules(&mut rules, Direction::Outbound, ssl_request, &mut out).unwrap();
    assert_eq!(out.back, b"N");
    assert!(out.onward.is_empty());
}

#[test]
fn stream_names_must_fit_a_dpid_and_be_unique() {
    let bad = error(
        "[tenant]\nname = \"x\"\n\n[[stream]]\nname = \"a/b\"\nlisten_port = 1\nframer = \"raw\"\n",
    );
    assert!(
        bad.contains("stream[0].name") && bad.contains("DPID"),
        "{bad}"
    );
    let twice = error(
        "[tenant]\nname = \"x\"\n\n[[stream]]\nname = \"a\"\nlisten_port = 1\nframer = \"raw\"\n\n[[stream]]\nname = \"a\"\nlisten_port = 2\nframer = \"raw\"\n",
    );
    assert!(
        twice.contains("stream[1].name") && twice.contains("another stream"),
        "{twice}"
    );
}
