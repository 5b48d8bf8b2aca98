//! `[mirror]`: which part of each message is copied to which listening stations
//! (`[[mirror.sink]]`), chosen by `[[mirror.policy]]` (first match wins) and raised by
//! `[[mirror.trigger]]`. README "Mirroring" documents every key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::parse_duration;
use super::{FramerKind, StreamConfig};
use crate::mirror::policy::{Capture, Cidr, Match, Policy, REDACTABLE, REDACTED_BY_DEFAULT};
use crate::mirror::record::Origin;
use crate::mirror::triggers::{Condition, Counted, Marker, Trigger};

/// Records a sink queues when the profile says nothing.
pub const DEFAULT_QUEUE: usize = 8192;
/// A pcapng file's size before the next one is started, when the profile says nothing.
pub const DEFAULT_ROTATE_BYTES: u64 = 64 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MirrorSpec {
    #[serde(default)]
    sink: Vec<SinkSpec>,
    #[serde(default)]
    policy: Vec<PolicySpec>,
    #[serde(default)]
    trigger: Vec<TriggerSpec>,
    redact: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkSpec {
    name: String,
    kind: String,
    path: Option<PathBuf>,
    rotate_bytes: Option<u64>,
    addresses: Option<Vec<String>>,
    url: Option<String>,
    jetstream: Option<String>,
    subject_prefix: Option<String>,
    node: Option<String>,
    diagnostics: Option<bool>,
    user: Option<String>,
    password_env: Option<String>,
    token_env: Option<String>,
    queue: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    #[serde(default)]
    streams: Vec<String>,
    direction: Option<String>,
    #[serde(default)]
    messages: Vec<String>,
    #[serde(default)]
    peers: Vec<String>,
    #[serde(default)]
    local_ports: Vec<u16>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default)]
    application_names: Vec<String>,
    min_size: Option<usize>,
    max_size: Option<usize>,
    authenticated: Option<bool>,
    capture: toml::Value,
    sinks: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSpec {
    kind: String,
    #[serde(default)]
    streams: Vec<String>,
    capture: Option<toml::Value>,
    sinks: Option<Vec<String>>,
    count: Option<String>,
    above: Option<usize>,
    window: Option<String>,
    #[serde(rename = "for")]
    hold: Option<String>,
    #[serde(default)]
    known: Vec<String>,
    unseen_for: Option<String>,
    literal: Option<String>,
    regex: Option<String>,
    #[serde(default)]
    sqlstate: Vec<String>,
    direction: Option<String>,
}

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkKind {
    /// pcapng files `PATH-N.pcapng` (relative paths are under the state dir).
    Pcapng {
        /// File prefix.
        path: PathBuf,
        /// Size of one file before the next.
        rotate_bytes: u64,
    },
    /// pcapng streamed to collectors over TCP; connections spread over them.
    Tcp {
        /// The collectors.
        addresses: Vec<SocketAddr>,
    },
    /// JSON lines appended to a file.
    Jsonl {
        /// The file (relative paths are under the state dir).
        path: PathBuf,
    },
    /// NATS JetStream.
    Nats {
        /// `nats://host:port`.
        url: String,
        /// The JetStream stream (created if missing).
        jetstream: String,
        /// Subjects are `PREFIX.node.tenant.stream`.
        subject_prefix: String,
        /// This node's name (default: the host name).
        node: Option<String>,
        /// Publish the supervisor's diagnostics lines too (`…NODE.TENANT.$diag`).
        diagnostics: bool,
        /// Credentials, named, never written in the profile.
        auth: NatsCredentials,
    },
}

/// Where a NATS sink's credentials come from: environment variables of the
/// supervisor, read at start (the profile holds only their names).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NatsCredentials {
    /// None.
    #[default]
    None,
    /// `user`, and the password in the variable named.
    UserPassword {
        /// The user.
        user: String,
        /// The variable holding the password.
        password_env: String,
    },
    /// The token in the variable named.
    Token {
        /// The variable.
        token_env: String,
    },
}

/// One validated `[[mirror.sink]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Its name (`TENANT/@sink/NAME` is its DPID).
    pub name: String,
    /// Where it writes.
    pub kind: SinkKind,
    /// Records queued before they are dropped.
    pub queue: usize,
}

/// The validated `[mirror]`.
#[derive(Debug, Clone, Default)]
pub struct MirrorConfig {
    /// Listening stations.
    pub sinks: Vec<SinkConfig>,
    /// First match wins.
    pub policies: Vec<Policy>,
    /// Raise the capture.
    pub triggers: Vec<Trigger>,
    /// Message kinds redacted by structure.
    pub redact: Vec<String>,
}

type Failure = (String, String);

fn name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
}

fn capture(value: &toml::Value) -> Result<Capture, String> {
    match value {
        toml::Value::Integer(n) if *n >= 0 => Ok(Capture::Bytes(*n as usize)),
        toml::Value::String(s) => Capture::parse(s),
        other => Err(format!(
            "{other} is not a capture (none, header, all, a length N, or \"M..N\")"
        )),
    }
}

fn origin(value: &Option<String>) -> Result<Option<Origin>, String> {
    match value.as_deref() {
        None | Some("any") => Ok(None),
        Some("from_client") => Ok(Some(Origin::Client)),
        Some("to_client") => Ok(Some(Origin::Server)),
        Some(other) => Err(format!(
            "{other:?}: expected \"from_client\", \"to_client\" or \"any\""
        )),
    }
}

fn duration(value: &Option<String>, needed: bool) -> Result<Option<Duration>, String> {
    match value {
        Some(text) => parse_duration(text).map(Some),
        None if needed => Err("missing (a duration: 500ms, 10s, 5m, 1h)".into()),
        None => Ok(None),
    }
}

/// The names a stream's messages can have.
fn kinds_of(stream: &StreamConfig) -> &'static [&'static str] {
    match stream.framer {
        FramerKind::Postgres => transforms::pg::framer::MESSAGE_NAMES,
        FramerKind::Lines | FramerKind::Raw => &["message", "unframed"],
    }
}

/// Stream names to indices; each must name a stream of the profile.
fn stream_indices(names: &[String], streams: &[StreamConfig]) -> Result<Vec<usize>, Failure> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            streams.iter().position(|s| &s.name == n).ok_or_else(|| {
                (
                    format!("streams[{i}]"),
                    format!("{n:?} is not a stream of this profile"),
                )
            })
        })
        .collect()
}

fn sink_indices(names: &Option<Vec<String>>, sinks: &[SinkConfig]) -> Result<Vec<usize>, Failure> {
    match names {
        None => Ok((0..sinks.len()).collect()),
        Some(names) => names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                sinks.iter().position(|s| &s.name == n).ok_or_else(|| {
                    (
                        format!("sinks[{i}]"),
                        format!("{n:?} is not a [[mirror.sink]] name"),
                    )
                })
            })
            .collect(),
    }
}

fn sink(spec: SinkSpec) -> Result<SinkConfig, Failure> {
    let e = |key: &str, m: String| (key.to_owned(), m);
    if !name_ok(&spec.name) {
        return Err(e(
            "name",
            format!(
                "{:?} must be non-empty [A-Za-z0-9_-] (it is part of the sink's DPID)",
                spec.name
            ),
        ));
    }
    // Each kind's own keys; any other key given is an error naming it.
    let given = [
        ("path", spec.path.is_some()),
        ("rotate_bytes", spec.rotate_bytes.is_some()),
        ("addresses", spec.addresses.is_some()),
        ("url", spec.url.is_some()),
        ("jetstream", spec.jetstream.is_some()),
        ("subject_prefix", spec.subject_prefix.is_some()),
        ("node", spec.node.is_some()),
        ("diagnostics", spec.diagnostics.is_some()),
        ("user", spec.user.is_some()),
        ("password_env", spec.password_env.is_some()),
        ("token_env", spec.token_env.is_some()),
    ];
    let only = |allowed: &[&str]| -> Result<(), Failure> {
        match given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
            Some((key, _)) => Err(e(key, format!("does not apply to a {:?} sink", spec.kind))),
            None => Ok(()),
        }
    };
    let kind = match spec.kind.as_str() {
        "pcapng" | "jsonl" => {
            only(&["path", "rotate_bytes"])?;
            let default = PathBuf::from(format!("mirror/{}", spec.name));
            let path = spec.path.unwrap_or(default);
            if path.as_os_str().is_empty() {
                return Err(e("path", "must not be empty".into()));
            }
            if spec.kind == "pcapng" {
                let rotate_bytes = spec.rotate_bytes.unwrap_or(DEFAULT_ROTATE_BYTES);
                if rotate_bytes < 4096 {
                    return Err(e("rotate_bytes", format!("{rotate_bytes} is below 4096")));
                }
                SinkKind::Pcapng { path, rotate_bytes }
            } else {
                only(&["path"])?;
                SinkKind::Jsonl { path }
            }
        }
        "tcp" => {
            only(&["addresses"])?;
            let texts = spec
                .addresses
                .ok_or_else(|| e("addresses", "missing (collectors, \"host:port\")".into()))?;
            if texts.is_empty() {
                return Err(e("addresses", "needs at least one collector".into()));
            }
            let mut addresses = Vec::new();
            for (i, t) in texts.iter().enumerate() {
                let a: SocketAddr = t.parse().map_err(|_| {
                    e(
                        &format!("addresses[{i}]"),
                        format!("{t:?} is not an IP:port"),
                    )
                })?;
                addresses.push(a);
            }
            SinkKind::Tcp { addresses }
        }
        "nats" => {
            only(&[
                "url",
                "jetstream",
                "subject_prefix",
                "node",
                "diagnostics",
                "user",
                "password_env",
                "token_env",
            ])?;
            let url = spec.url.unwrap_or_else(|| "nats://127.0.0.1:4222".into());
            if !url.starts_with("nats://") {
                return Err(e("url", format!("{url:?} must start with nats://")));
            }
            let token = |key: &str, v: &str| {
                if v.is_empty() || v.contains(|c: char| c.is_whitespace() || "*>".contains(c)) {
                    Err(e(key, format!("{v:?} cannot be used in a NATS subject")))
                } else {
                    Ok(())
                }
            };
            let jetstream = spec.jetstream.unwrap_or_else(|| "SUPERVISE".into());
            if !name_ok(&jetstream) {
                return Err(e(
                    "jetstream",
                    format!("{jetstream:?} must be [A-Za-z0-9_-]"),
                ));
            }
            let subject_prefix = spec.subject_prefix.unwrap_or_else(|| "supervise".into());
            token("subject_prefix", &subject_prefix)?;
            if let Some(node) = &spec.node {
                token("node", node)?;
            }
            let auth = match (spec.user, spec.password_env, spec.token_env) {
                (None, None, None) => NatsCredentials::None,
                (Some(user), Some(password_env), None) => NatsCredentials::UserPassword { user, password_env },
                (None, None, Some(token_env)) => NatsCredentials::Token { token_env },
                _ => {
                    return Err(e(
                        "user",
                        "give user with password_env, or token_env alone (names of environment variables of the supervisor)".into(),
                    ))
                }
            };
            SinkKind::Nats {
                url,
                jetstream,
                subject_prefix,
                node: spec.node,
                diagnostics: spec.diagnostics.unwrap_or(true),
                auth,
            }
        }
        other => {
            return Err(e(
                "kind",
                format!("{other:?}: expected \"pcapng\", \"tcp\", \"jsonl\" or \"nats\""),
            ))
        }
    };
    let queue = spec.queue.unwrap_or(DEFAULT_QUEUE);
    if !(16..=1 << 20).contains(&queue) {
        return Err(e("queue", format!("{queue} is outside 16..=1048576")));
    }
    Ok(SinkConfig {
        name: spec.name,
        kind,
        queue,
    })
}

fn policy(
    spec: PolicySpec,
    streams: &[StreamConfig],
    sinks: &[SinkConfig],
) -> Result<Policy, Failure> {
    let e = |key: &str, m: String| (key.to_owned(), m);
    let stream_ids = stream_indices(&spec.streams, streams)?;
    let applies: Vec<&StreamConfig> = if stream_ids.is_empty() {
        streams.iter().collect()
    } else {
        stream_ids.iter().map(|i| &streams[*i]).collect()
    };
    for (i, m) in spec.messages.iter().enumerate() {
        if !applies.iter().any(|s| kinds_of(s).contains(&m.as_str())) {
            return Err(e(
                &format!("messages[{i}]"),
                format!("{m:?} is not a message kind of these streams (PostgreSQL: Query, Parse, Bind, DataRow, …; lines and raw: message)"),
            ));
        }
    }
    let peers = spec
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| Cidr::parse(p).map_err(|m| e(&format!("peers[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    if let (Some(a), Some(b)) = (spec.min_size, spec.max_size) {
        if a > b {
            return Err(e("max_size", format!("{b} is below min_size {a}")));
        }
    }
    let when = Match {
        streams: stream_ids,
        origin: origin(&spec.direction).map_err(|m| e("direction", m))?,
        messages: spec.messages,
        peers,
        local_ports: spec.local_ports,
        users: spec.users,
        databases: spec.databases,
        application_names: spec.application_names,
        min_size: spec.min_size,
        max_size: spec.max_size,
        authenticated: spec.authenticated,
    };
    Ok(Policy {
        when,
        capture: capture(&spec.capture).map_err(|m| e("capture", m))?,
        sinks: sink_indices(&spec.sinks, sinks)?,
    })
}

fn trigger(
    spec: TriggerSpec,
    streams: &[StreamConfig],
    sinks: &[SinkConfig],
) -> Result<Trigger, Failure> {
    let e = |key: &str, m: String| (key.to_owned(), m);
    let set = |key: &'static str, present: bool| (key, present);
    let only = |allowed: &[&str], keys: &[(&'static str, bool)]| -> Result<(), Failure> {
        match keys.iter().find(|(k, on)| *on && !allowed.contains(k)) {
            Some((k, _)) => Err(e(k, format!("does not apply to a {:?} trigger", spec.kind))),
            None => Ok(()),
        }
    };
    let keys = [
        set("count", spec.count.is_some()),
        set("above", spec.above.is_some()),
        set("window", spec.window.is_some()),
        set("for", spec.hold.is_some()),
        set("known", !spec.known.is_empty()),
        set("unseen_for", spec.unseen_for.is_some()),
        set("literal", spec.literal.is_some()),
        set("regex", spec.regex.is_some()),
        set("sqlstate", !spec.sqlstate.is_empty()),
        set("direction", spec.direction.is_some()),
    ];
    let condition = match spec.kind.as_str() {
        "rate" => {
            only(&["count", "above", "window", "for"], &keys)?;
            let counted = match spec.count.as_deref() {
                None | Some("messages") => Counted::Messages,
                Some("connections") => Counted::Connections,
                Some(other) => {
                    return Err(e(
                        "count",
                        format!("{other:?}: expected \"messages\" or \"connections\""),
                    ))
                }
            };
            let above = spec
                .above
                .ok_or_else(|| e("above", "missing (a count)".into()))?;
            if above == 0 || above > 1_000_000 {
                return Err(e("above", format!("{above} is outside 1..=1000000")));
            }
            Condition::Rate {
                counted,
                above,
                window: duration(&spec.window, true)
                    .map_err(|m| e("window", m))?
                    .unwrap_or_default(),
                hold: duration(&spec.hold, true)
                    .map_err(|m| e("for", m))?
                    .unwrap_or_default(),
            }
        }
        "unknown_peer" => {
            only(&["known", "unseen_for"], &keys)?;
            let known = spec
                .known
                .iter()
                .enumerate()
                .map(|(i, p)| Cidr::parse(p).map_err(|m| e(&format!("known[{i}]"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            let unseen_for = duration(&spec.unseen_for, false).map_err(|m| e("unseen_for", m))?;
            if known.is_empty() && unseen_for.is_none() {
                return Err(e(
                    "known",
                    "an unknown_peer trigger needs known, unseen_for or both".into(),
                ));
            }
            Condition::UnknownPeer { known, unseen_for }
        }
        "marker" => {
            only(&["literal", "regex", "sqlstate", "direction"], &keys)?;
            let marker = match (spec.literal, spec.regex, spec.sqlstate.is_empty()) {
                (Some(l), None, true) if !l.is_empty() => Marker::Literal(l.into_bytes()),
                (None, Some(r), true) => Marker::Regex(
                    regex::bytes::RegexBuilder::new(&r)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|err| {
                            e("regex", format!("{r:?} is not a valid expression: {err}"))
                        })?,
                ),
                (None, None, false) => {
                    for (i, s) in spec.sqlstate.iter().enumerate() {
                        if s.len() != 5
                            || !s
                                .bytes()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                        {
                            return Err(e(
                                &format!("sqlstate[{i}]"),
                                format!("{s:?} is not a SQLSTATE (5 characters, like 28P01)"),
                            ));
                        }
                    }
                    Marker::SqlState(spec.sqlstate)
                }
                _ => {
                    return Err(e(
                        "literal",
                        "a marker needs exactly one of a non-empty literal, regex or sqlstate"
                            .into(),
                    ))
                }
            };
            let origin = match (
                &marker,
                origin(&spec.direction).map_err(|m| e("direction", m))?,
            ) {
                (Marker::SqlState(_), Some(Origin::Client)) => {
                    return Err(e(
                        "direction",
                        "an SQLSTATE comes from the server: use \"to_client\"".into(),
                    ))
                }
                (Marker::SqlState(_), _) => Some(Origin::Server),
                (_, o) => o,
            };
            Condition::Marker { marker, origin }
        }
        other => {
            return Err(e(
                "kind",
                format!("{other:?}: expected \"rate\", \"unknown_peer\" or \"marker\""),
            ))
        }
    };
    let capture = match &spec.capture {
        Some(v) => capture(v).map_err(|m| e("capture", m))?,
        None => Capture::All,
    };
    Ok(Trigger {
        condition,
        capture,
        streams: stream_indices(&spec.streams, streams)?,
        sinks: sink_indices(&spec.sinks, sinks)?,
    })
}

/// Validates `[mirror]` against the profile's streams; errors name the key under
/// `mirror.` and say what is wrong.
pub(super) fn validate(
    spec: Option<MirrorSpec>,
    streams: &[StreamConfig],
) -> Result<Option<MirrorConfig>, Failure> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let within = |prefix: String| move |(key, m): Failure| (format!("{prefix}.{key}"), m);
    let mut sinks: Vec<SinkConfig> = Vec::new();
    for (i, s) in spec.sink.into_iter().enumerate() {
        let s = sink(s).map_err(within(format!("mirror.sink[{i}]")))?;
        if sinks.iter().any(|o| o.name == s.name) {
            return Err((
                format!("mirror.sink[{i}].name"),
                format!("{:?} names another sink already", s.name),
            ));
        }
        sinks.push(s);
    }
    if sinks.is_empty() && !(spec.policy.is_empty() && spec.trigger.is_empty()) {
        return Err((
            "mirror".into(),
            "policies and triggers need at least one [[mirror.sink]]".into(),
        ));
    }
    let policies = spec
        .policy
        .into_iter()
        .enumerate()
        .map(|(i, p)| policy(p, streams, &sinks).map_err(within(format!("mirror.policy[{i}]"))))
        .collect::<Result<_, _>>()?;
    let triggers = spec
        .trigger
        .into_iter()
        .enumerate()
        .map(|(i, t)| trigger(t, streams, &sinks).map_err(within(format!("mirror.trigger[{i}]"))))
        .collect::<Result<_, _>>()?;
    let redact = spec.redact.unwrap_or_else(|| {
        REDACTED_BY_DEFAULT
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    });
    for (i, r) in redact.iter().enumerate() {
        if !REDACTABLE.contains(&r.as_str()) {
            return Err((
                format!("mirror.redact[{i}]"),
                format!("{r:?}: redaction by structure knows {REDACTABLE:?}"),
            ));
        }
    }
    Ok(Some(MirrorConfig {
        sinks,
        policies,
        triggers,
        redact,
    }))
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
