//! Rule fixtures: PostgreSQL conversations in `fixtures/sessions/*.session`, run through
//! the framer and the session engine with the demo rule set, rendered as text and
//! compared with insta snapshots under `snapshots/`. Every fixture is also replayed
//! with each direction's bytes cut at random points (as syscalls would cut them): the
//! bytes reaching the server and the client must be identical — the point of the spool.
//!
//! Fixture lines: `C …` client → server (what the tenant PostgreSQL reads), `S …`
//! server → client. See `fixtures/sessions/README.md` for the message syntax.

use std::path::Path;

use proptest::prelude::*;
use transforms::pg::framer::PgFramer;
use transforms::pg::message::{self as msg, Startup};
use transforms::pg::session::{Condition, PgRule, PgSession};
use transforms::pg::sql::PredicateRewrite;
use transforms::{Direction, Framer, Framing, Output, Rule};

const MAX: usize = 1 << 20;

/// The rules every fixture runs under (the demo profile's).
fn demo_rules() -> Vec<PgRule> {
    vec![
        PgRule::Rewrite {
            when: Condition::default(),
            rewrite: PredicateRewrite {
                table: "employee".into(),
                column: "dept".into(),
                from: "20".into(),
                to: "21".into(),
            },
        },
        PgRule::Mask {
            when: Condition::default(),
            table: "employee".into(),
            column: "ssn".into(),
            replacement: "XXX-XX-XXXX".into(),
        },
        PgRule::Deny {
            when: Condition::default(),
            objects: vec!["salaries".into()],
        },
        PgRule::DropSession {
            when: Condition::default(),
            objects: vec!["audit_log".into()],
        },
        PgRule::Mask {
            when: Condition {
                user: Some("auditor".into()),
                ..Condition::default()
            },
            table: "employee".into(),
            column: "name".into(),
            replacement: "(hidden)".into(),
        },
    ]
}

/// Splits a line into words, keeping `'quoted strings'` whole (quotes removed).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            out.push(chars.by_ref().take_while(|&c| c != '\'').collect());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            out.push(word);
        }
    }
    out
}

fn name(word: &str) -> &str {
    if word == "-" {
        ""
    } else {
        word
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// One fixture line → (direction, message bytes).
fn encode(line: &str) -> (Direction, Vec<u8>) {
    let (side, rest) = line.split_at(1);
    let direction = match side {
        "C" => Direction::Inbound,
        "S" => Direction::Outbound,
        other => panic!("line must start with C or S, not {other:?}: {line}"),
    };
    let rest = rest.trim_start();
    let (kind, tail) = rest.split_once(' ').unwrap_or((rest, ""));
    let w = words(tail);
    let bytes = match (direction, kind) {
        (_, "raw") => transforms::pg::message::fixture::load_hex_fixture(tail).concat(),
        (Direction::Inbound, "startup") => {
            let params: Vec<(&str, &str)> = w
                .iter()
                .map(|kv| kv.split_once('=').expect("key=value"))
                .collect();
            msg::build_startup(&Startup::Params {
                version: msg::PROTOCOL_3_0,
                params,
            })
        }
        (Direction::Inbound, "ssl") => msg::build_startup(&Startup::Ssl),
        (Direction::Inbound, "gssenc") => msg::build_startup(&Startup::GssEnc),
        (Direction::Inbound, "Q") => msg::build_query(tail),
        (Direction::Inbound, "P") => {
            let (stmt, sql) = tail.split_once(' ').expect("P name sql");
            msg::build_parse(&msg::ParseMsg {
                name: name(stmt),
                query: sql,
                param_types: vec![],
            })
        }
        (Direction::Inbound, "B") => {
            let format: i16 = w[2].parse().expect("result format");
            msg::build_bind(&msg::BindMsg {
                portal: name(&w[0]),
                statement: name(&w[1]),
                param_formats: vec![],
                params: vec![],
                result_formats: vec![format],
            })
        }
        (Direction::Inbound, "D") => msg::build_describe(w[0].as_bytes()[0], name(&w[1])),
        (Direction::Inbound, "E") => msg::build_execute(name(&w[0]), 0),
        (Direction::Inbound, "S") => msg::build_sync(),
        (Direction::Inbound, "X") => msg::build_terminate(),
        (Direction::Outbound, "R") => msg::build(b'R', &0i32.to_be_bytes()),
        (Direction::Outbound, "T") => {
            let mut body = (w.len() as i16).to_be_bytes().to_vec();
            for field in &w {
                let parts: Vec<&str> = field.split(':').collect();
                body.extend(cstr(parts[0]));
                body.extend(parts[1].parse::<u32>().unwrap().to_be_bytes());
                body.extend(parts[2].parse::<i16>().unwrap().to_be_bytes());
                body.extend(parts[3].parse::<u32>().unwrap().to_be_bytes());
                body.extend((-1i16).to_be_bytes());
                body.extend((-1i32).to_be_bytes());
                body.extend(parts[4].parse::<i16>().unwrap().to_be_bytes());
            }
            msg::build(b'T', &body)
        }
        (Direction::Outbound, "D") => {
            let values: Vec<Option<&[u8]>> = w
                .iter()
                .map(|v| {
                    if v == "NULL" {
                        None
                    } else {
                        Some(v.as_bytes())
                    }
                })
                .collect();
            msg::build_data_row(&values)
        }
        (Direction::Outbound, "C") => msg::build(b'C', &cstr(tail)),
        (Direction::Outbound, "Z") => msg::build_ready(tail.as_bytes()[0]),
        (Direction::Outbound, "E") => {
            let (code, message) = tail.split_once(' ').expect("E code message");
            msg::build_error("ERROR", code, message)
        }
        (Direction::Outbound, "E+P") => {
            let (code, rest) = tail.split_once(' ').expect("E+P code pos message");
            let (pos, message) = rest.split_once(' ').expect("E+P code pos message");
            msg::build_fields(
                b'E',
                &[(b'S', "ERROR"), (b'C', code), (b'M', message), (b'P', pos)],
            )
        }
        (Direction::Outbound, tag @ ("1" | "2" | "3" | "n")) => msg::build(tag.as_bytes()[0], &[]),
        _ => panic!("unknown fixture message {kind:?} in {line}"),
    };
    (direction, bytes)
}

/// Renders protocol bytes as fixture-like text, one message per line.
fn render(direction: Direction, bytes: &[u8]) -> Vec<String> {
    // Startup packets (no type byte) start with a zero length byte; everything else
    // is typed, whichever way it travels.
    let untyped = direction == Direction::Inbound && bytes.first() == Some(&0);
    let mut framer = PgFramer::new(
        if untyped {
            Direction::Inbound
        } else {
            Direction::Outbound
        },
        MAX,
    );
    let mut lines = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = match framer.frame(rest) {
            Ok(Framing::Complete { len }) => len,
            _ => {
                lines.push(format!("raw {:?}", String::from_utf8_lossy(rest)));
                break;
            }
        };
        let message = &rest[..len];
        rest = &rest[len..];
        if message.len() == 1 {
            lines.push(format!("{:?}", message[0] as char));
            continue;
        }
        let Ok(typed) = msg::typed(message) else {
            lines.push(format!("startup {:?}", msg::parse_startup(message)));
            continue;
        };
        let tag = typed.tag as char;
        let text = match typed.tag {
            b'Q' => msg::parse_query(typed.body)
                .map(str::to_owned)
                .unwrap_or_default(),
            b'P' if direction == Direction::Inbound => msg::parse_parse(typed.body)
                .map(|p| format!("{:?} {}", p.name, p.query))
                .unwrap_or_default(),
            b'D' if direction == Direction::Outbound => msg::parse_data_row(typed.body)
                .map(|vals| {
                    vals.iter()
                        .map(|v| {
                            v.map_or("NULL".to_owned(), |b| {
                                format!("'{}'", String::from_utf8_lossy(b))
                            })
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            b'E' | b'N' if direction == Direction::Outbound => msg::parse_fields(typed.body)
                .map(|f| {
                    f.iter()
                        .map(|(c, v)| format!("{}={v}", *c as char))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            b'Z' => format!("{}", typed.body.first().map_or('?', |&b| b as char)),
            b'T' => msg::parse_row_description(typed.body)
                .map(|f| {
                    f.iter()
                        .map(|f| format!("{}:{}:{}", f.name, f.table_oid, f.column))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
            b'C' if direction == Direction::Outbound => {
                String::from_utf8_lossy(typed.body.strip_suffix(&[0]).unwrap_or(typed.body))
                    .into_owned()
            }
            _ => format!("{} bytes", typed.body.len()),
        };
        lines.push(format!("{tag} {text}"));
    }
    lines
}

/// What reached each side, as bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Delivered {
    to_server: Vec<u8>,
    to_client: Vec<u8>,
    closed: bool,
}

/// A minimal engine: per direction a spool and a framer, one session for both.
struct Harness {
    framers: [PgFramer; 2],
    spools: [Vec<u8>; 2],
    session: PgSession,
    delivered: Delivered,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            framers: [
                PgFramer::new(Direction::Inbound, MAX),
                PgFramer::new(Direction::Outbound, MAX),
            ],
            spools: [Vec::new(), Vec::new()],
            session: PgSession::new(demo_rules()),
            delivered: Delivered::default(),
        }
    }

    /// Feeds a chunk; returns the rendered outputs of the messages it completed.
    fn feed(&mut self, direction: Direction, chunk: &[u8]) -> Vec<String> {
        let i = (direction == Direction::Outbound) as usize;
        self.spools[i].extend_from_slice(chunk);
        let mut rendered = Vec::new();
        while !self.delivered.closed {
            let len = match self.framers[i].frame(&self.spools[i]) {
                Ok(Framing::Complete { len }) => len,
                Ok(Framing::Partial) => break,
                Err(error) => {
                    let mut out = Output::default();
                    self.session.on_framing_error(direction, &error, &mut out);
                    rendered.push(format!("framing error: {error}"));
                    self.record(direction, out, &mut rendered);
                    self.delivered.closed = true;
                    break;
                }
            };
            let message: Vec<u8> = self.spools[i].drain(..len).collect();
            let mut out = Output::default();
            if let Err(error) = self.session.apply(direction, &message, &mut out) {
                rendered.push(format!("rule error: {error}"));
                self.delivered.closed = true;
                break;
            }
            self.record(direction, out, &mut rendered);
        }
        rendered
    }

    fn record(&mut self, direction: Direction, out: Output, rendered: &mut Vec<String>) {
        let (onward_to, back_to) = match direction {
            Direction::Inbound => ("→ server", "← client"),
            Direction::Outbound => ("← client", "→ server"),
        };
        rendered.extend(
            render(direction, &out.onward)
                .into_iter()
                .map(|l| format!("  {onward_to}: {l}")),
        );
        rendered.extend(
            render(direction.reverse(), &out.back)
                .into_iter()
                .map(|l| format!("  {back_to}: {l}")),
        );
        let (onward, back) = match direction {
            Direction::Inbound => (&mut self.delivered.to_server, &mut self.delivered.to_client),
            Direction::Outbound => (&mut self.delivered.to_client, &mut self.delivered.to_server),
        };
        onward.extend_from_slice(&out.onward);
        back.extend_from_slice(&out.back);
        if out.close {
            rendered.push("  session closed".into());
            self.delivered.closed = true;
        }
    }
}

/// A fixture as its message lines.
fn load(path: &Path) -> Vec<(String, Direction, Vec<u8>)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (d, b) = encode(l);
            (l.to_owned(), d, b)
        })
        .collect()
}

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sessions");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "session"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
}

/// Runs a fixture one message at a time: the transcript that is snapshotted.
fn transcript(messages: &[(String, Direction, Vec<u8>)]) -> (String, Delivered) {
    let mut harness = Harness::new();
    let mut text = String::new();
    for (line, direction, bytes) in messages {
        text.push_str(&format!("{line}\n"));
        for out in harness.feed(*direction, bytes) {
            text.push_str(&format!("{out}\n"));
        }
    }
    text.push_str(&format!(
        "status {}\n",
        harness.session.transaction_status() as char
    ));
    (text, harness.delivered)
}

#[test]
fn session_fixtures_match_snapshots() {
    for path in fixtures() {
        let (text, _) = transcript(&load(&path));
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("session__{name}"), text);
        });
    }
}

/// Consecutive messages of one direction form a segment, delivered in order.
fn segments(messages: &[(String, Direction, Vec<u8>)]) -> Vec<(Direction, Vec<u8>)> {
    let mut out: Vec<(Direction, Vec<u8>)> = Vec::new();
    for (_, direction, bytes) in messages {
        match out.last_mut() {
            Some((d, seg)) if d == direction => seg.extend_from_slice(bytes),
            _ => out.push((*direction, bytes.clone())),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn session_fixtures_are_independent_of_syscall_boundaries(cuts in proptest::collection::vec(1usize..40, 1..64)) {
        for path in fixtures() {
            let messages = load(&path);
            let (_, whole) = transcript(&messages);
            let mut harness = Harness::new();
            let mut cut = cuts.iter().cycle();
            for (direction, segment) in segments(&messages) {
                let mut rest = segment.as_slice();
                while !rest.is_empty() {
                    let n = (*cut.next().unwrap()).min(rest.len());
                    harness.feed(direction, &rest[..n]);
                    rest = &rest[n..];
                }
            }
            prop_assert_eq!(&harness.delivered, &whole, "fixture {}", path.display());
        }
    }
}

/// Every framing fixture (`fixtures/*.hex`, recorded or hand-written traffic), framed
/// as one stream and rendered message by message, split at random points too.
#[test]
fn framing_fixtures_match_snapshots() {
    use transforms::pg::message::fixture;
    for (name, text) in fixture::ALL {
        let direction = fixture::direction_of(name);
        let stream: Vec<u8> = fixture::load_hex_fixture(text).concat();
        let mut framer = PgFramer::new(direction, MAX);
        let mut rest = stream.as_slice();
        let mut lines = Vec::new();
        loop {
            match framer.frame(rest) {
                Ok(Framing::Complete { len }) => {
                    let untyped = direction == Direction::Inbound && rest[0] == 0;
                    let shown = if untyped {
                        format!("startup {:?}", msg::parse_startup(&rest[..len]))
                    } else {
                        render(direction, &rest[..len]).join(" | ")
                    };
                    lines.push(shown);
                    rest = &rest[len..];
                }
                Ok(Framing::Partial) => {
                    if !rest.is_empty() {
                        lines.push(format!("partial: {} bytes spooled", rest.len()));
                    }
                    break;
                }
                Err(error) => {
                    lines.push(format!("error: {error}"));
                    break;
                }
            }
        }
        let stem = name.trim_end_matches(".hex").replace('.', "-");
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!(format!("framing__{stem}"), lines.join("\n"));
        });
    }
}

/// The `pg_session` fuzz target's seed for a fixture (format: fuzz/README.md): flags
/// (the user of a leading `C startup`, else 3), cut size 7, then one feed per run of
/// consecutive lines of one direction.
fn fuzz_seed(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut flags = 3u8;
    if let Some(first) = lines.first() {
        if let Some(rest) = first.strip_prefix("C startup ") {
            let words: Vec<String> = words(rest);
            let user = words.iter().find_map(|w| w.strip_prefix("user="));
            let database_hr = words.iter().any(|w| w == "database=hr");
            let others = words.len() == 2;
            if let (Some(user), true, true) = (user, database_hr, others) {
                if let Some(i) = ["app", "auditor", "postgres"]
                    .iter()
                    .position(|u| *u == user)
                {
                    flags = i as u8;
                    lines.remove(0);
                }
            }
        }
    }
    let mut seed = vec![flags, 7];
    let mut feeds: Vec<(Direction, Vec<u8>)> = Vec::new();
    for line in lines {
        let (direction, bytes) = encode(line);
        match feeds.last_mut() {
            Some((d, feed)) if *d == direction => feed.extend(bytes),
            _ => feeds.push((direction, bytes)),
        }
    }
    for (direction, feed) in feeds {
        for chunk in feed.chunks(0x7fff) {
            let mut header = chunk.len() as u16;
            if direction == Direction::Outbound {
                header |= 0x8000;
            }
            seed.extend(header.to_be_bytes());
            seed.extend(chunk);
        }
    }
    seed
}

/// The fuzz seeds are the session fixtures (run with SUPERVISE_WRITE_SEEDS=1 to
/// regenerate them after changing a fixture).
#[test]
fn fuzz_seeds_match_session_fixtures() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/pg_session");
    let write = std::env::var_os("SUPERVISE_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for path in fixtures() {
        let seed = fuzz_seed(&path);
        let target = dir.join(path.with_extension("bin").file_name().unwrap());
        if write {
            std::fs::write(&target, &seed).unwrap();
        } else if std::fs::read(&target).ok().as_deref() != Some(seed.as_slice()) {
            stale.push(target.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "fuzz seeds out of date (SUPERVISE_WRITE_SEEDS=1 cargo test -p transforms --test pg_sessions fuzz_seeds): {stale:?}"
    );
}
