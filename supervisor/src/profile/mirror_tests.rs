//! `[mirror]` errors name the file, the line and the key; the repository's
//! pg-mirror.toml parses to what its comments say.

use std::path::Path;

use super::super::Profile;
use crate::mirror::policy::Capture;
use crate::mirror::record::Origin;

const HEAD: &str = "[tenant]\nname = \"t\"\n[[stream]]\nname = \"pg\"\nlisten_port = 5432\nframer = \"postgres\"\n[[stream]]\nname = \"echo\"\nlisten_port = 7\nframer = \"lines\"\n";

fn error(mirror: &str) -> String {
    let text = format!("{HEAD}{mirror}");
    match Profile::parse(&text, Path::new("t.toml")) {
        Ok(_) => panic!("accepted:\n{mirror}"),
        Err(e) => e.to_string(),
    }
}

const SINK: &str = "[[mirror.sink]]\nname = \"f\"\nkind = \"pcapng\"\n";

#[test]
fn errors_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[[mirror.sink]]\nname = \"a b\"\nkind = \"pcapng\"\n", "t.toml:12: mirror.sink[0].name: \"a b\" must be non-empty"),
        ("[[mirror.sink]]\nname = \"f\"\nkind = \"carrier-pigeon\"\n", "t.toml:13: mirror.sink[0].kind: \"carrier-pigeon\": expected"),
        ("[[mirror.sink]]\nname = \"n\"\nkind = \"tcp\"\naddresses = [\"nowhere\"]\n", "t.toml:14: mirror.sink[0].addresses[0]: \"nowhere\" is not an IP:port"),
        ("[[mirror.sink]]\nname = \"n\"\nkind = \"tcp\"\n", "mirror.sink[0].addresses: missing"),
        ("[[mirror.sink]]\nname = \"n\"\nkind = \"jsonl\"\nrotate_bytes = 5000\n", "t.toml:14: mirror.sink[0].rotate_bytes: does not apply to a \"jsonl\" sink"),
        ("[[mirror.sink]]\nname = \"n\"\nkind = \"nats\"\nurl = \"http://x\"\n", "mirror.sink[0].url: \"http://x\" must start with nats://"),
        ("[[mirror.sink]]\nname = \"n\"\nkind = \"pcapng\"\nqueue = 1\n", "mirror.sink[0].queue: 1 is outside 16..=1048576"),
        ("[[mirror.policy]]\ncapture = \"all\"\n", "t.toml:11: mirror: policies and triggers need at least one [[mirror.sink]]"),
        (&format!("{SINK}[[mirror.policy]]\ncapture = \"most\"\n"), "t.toml:15: mirror.policy[0].capture: \"most\" is not a capture"),
        (&format!("{SINK}[[mirror.policy]]\ncapture = \"9..3\"\n"), "mirror.policy[0].capture: \"9..3\": the range M..N needs M < N"),
        (&format!("{SINK}[[mirror.policy]]\nmessages = [\"Qeury\"]\ncapture = 5\n"), "t.toml:15: mirror.policy[0].messages[0]: \"Qeury\" is not a message kind"),
        (&format!("{SINK}[[mirror.policy]]\nstreams = [\"echo\"]\nmessages = [\"DataRow\"]\ncapture = 5\n"), "mirror.policy[0].messages[0]: \"DataRow\" is not a message kind of these streams"),
        (&format!("{SINK}[[mirror.policy]]\nstreams = [\"nope\"]\ncapture = 5\n"), "t.toml:15: mirror.policy[0].streams[0]: \"nope\" is not a stream of this profile"),
        (&format!("{SINK}[[mirror.policy]]\npeers = [\"10.0.0.1/8\"]\ncapture = 5\n"), "mirror.policy[0].peers[0]: \"10.0.0.1/8\" has bits set past its /8"),
        (&format!("{SINK}[[mirror.policy]]\nsinks = [\"g\"]\ncapture = 5\n"), "mirror.policy[0].sinks[0]: \"g\" is not a [[mirror.sink]] name"),
        (&format!("{SINK}[[mirror.policy]]\ndirection = \"sideways\"\ncapture = 5\n"), "mirror.policy[0].direction: \"sideways\": expected"),
        (&format!("{SINK}[[mirror.policy]]\nmin_size = 9\nmax_size = 3\ncapture = 5\n"), "mirror.policy[0].max_size: 3 is below min_size 9"),
        (&format!("{SINK}[[mirror.policy]]\ncapture = 5\ncolour = \"red\"\n"), "t.toml:16: mirror.policy[0].colour: unknown key"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"rate\"\nabove = 5\nwindow = \"1s\"\n"), "mirror.trigger[0].for: missing"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"rate\"\nabove = 5\nwindow = \"1 s\"\nfor = \"1m\"\n"), "mirror.trigger[0].window: bad duration"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"rate\"\nabove = 5\nwindow = \"1s\"\nfor = \"1m\"\nliteral = \"x\"\n"), "mirror.trigger[0].literal: does not apply to a \"rate\" trigger"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"marker\"\nregex = \"(unclosed\"\n"), "mirror.trigger[0].regex: \"(unclosed\" is not a valid expression"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"marker\"\nliteral = \"a\"\nregex = \"b\"\n"), "exactly one of a non-empty literal, regex or sqlstate"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"marker\"\nsqlstate = [\"4250\"]\n"), "mirror.trigger[0].sqlstate[0]: \"4250\" is not a SQLSTATE"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"marker\"\nsqlstate = [\"42501\"]\ndirection = \"from_client\"\n"), "an SQLSTATE comes from the server"),
        (&format!("{SINK}[[mirror.trigger]]\nkind = \"unknown_peer\"\n"), "mirror.trigger[0].known: an unknown_peer trigger needs known, unseen_for or both"),
        (&format!("[mirror]\nredact = [\"Query\"]\n{SINK}"), "mirror.redact[0]: \"Query\": redaction by structure knows"),
    ];
    for (mirror, want) in cases {
        let got = error(mirror);
        assert!(
            got.contains(want),
            "for\n{mirror}\nwant {want:?}\ngot  {got:?}"
        );
    }
}

#[test]
fn pg_mirror_profile_is_what_its_comments_say() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/pg-mirror.toml");
    let p = Profile::load(&path).unwrap();
    let m = p.mirror.expect("a [mirror]");
    assert_eq!(m.sinks.len(), 1);
    assert_eq!(m.policies.len(), 3);
    assert_eq!(m.policies[0].when.origin, Some(Origin::Client));
    assert_eq!(m.policies[0].capture, Capture::All);
    assert_eq!(m.policies[1].when.messages, ["DataRow"]);
    assert_eq!(m.policies[1].capture, Capture::Header);
    assert_eq!(m.policies[2].capture, Capture::Bytes(64));
    assert_eq!(m.redact, crate::mirror::policy::REDACTED_BY_DEFAULT);
    assert_eq!(m.triggers.len(), 3);
    // Its rules are pg-demo's.
    let demo =
        Profile::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/pg-demo.toml"))
            .unwrap();
    assert_eq!(p.streams.len(), demo.streams.len());
    assert_eq!(p.streams[0].rule_count(), demo.streams[0].rule_count());
}
