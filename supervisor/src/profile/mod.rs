//! Tenant profiles: TOML in, a validated [`Profile`] out, or an error naming the file,
//! the line and the key (`t.toml:7: stream[0].listen_port: …`).
//!
//! Everything is validated before any side effect: a profile that parses is one the
//! launcher can act on without further checks. Lines come from [`spans`]: the typed
//! structs below carry no positions (so dotted keys and inline tables parse as TOML
//! says), and every error is located by its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
pub mod account;
pub mod confine;
pub mod duration;
pub mod env;
pub mod limits;
pub mod mirror;
mod rules;
mod spans;
#[cfg(test)]
mod tests;

pub use confine::Confinement;
use spans::{KeyPath, Spans};

use transforms::pg::framer::PgFramer;
use transforms::{Direction, Framer, LinesFramer, RawFramer, Rule};

/// The profile used when `--profile` is not given: track nothing.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../../profiles/default.toml");

/// Largest message a framer may spool, whatever the profile says.
pub const MAX_MESSAGE_CEILING: usize = 64 << 20;
const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// A profile that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read profile {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML (no key can be named: the document does not parse).
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line where the parser stopped.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown, missing, of the wrong type or out of range, or the values do
    /// not make sense together.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key (of its table's header when the key is missing).
        line: usize,
        /// The key at fault, dotted (`stream[0].listen_port`).
        key: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    tenant: TenantSpec,
    filesystem: Option<confine::FilesystemSpec>,
    network: Option<confine::NetworkSpec>,
    limits: Option<limits::LimitsSpec>,
    #[serde(default)]
    stream: Vec<StreamSpec>,
    mirror: Option<mirror::MirrorSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSpec {
    name: String,
    user: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    confine: bool,
    command: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamSpec {
    name: String,
    listen_port: Option<u16>,
    remote_port: Option<u16>,
    framer: FramerKind,
    max_message: Option<usize>,
    #[serde(default)]
    on_error: OnError,
    #[serde(default)]
    on_partial_close: OnPartialClose,
    #[serde(default)]
    rule: Vec<rules::RuleSpec>,
}

/// How a stream's bytes are cut into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FramerKind {
    /// Every chunk is a message.
    Raw,
    /// Newline-terminated lines.
    Lines,
    /// PostgreSQL frontend/backend protocol v3 (both directions).
    Postgres,
}

/// What happens when a framer or rule fails on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Close the connection (both directions), logged.
    #[default]
    Close,
    /// Stop framing this direction and pass its bytes through unchanged, logged.
    Passthrough,
}

/// What happens to a partial message spooled when its direction ends (EOF, shutdown,
/// close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnPartialClose {
    /// Deliver the partial bytes untransformed, logged.
    #[default]
    Flush,
    /// Drop them, logged with the count.
    Drop,
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Where it came from (for messages).
    pub source: String,
    /// The tenant's name.
    pub tenant: String,
    /// Credentials to drop to, if any.
    pub ids: Option<Ids>,
    /// Tracked streams.
    pub streams: Vec<StreamConfig>,
    /// Labels, Landlock and address checks (`tenant.confine = true`).
    pub confinement: Option<Confinement>,
    /// `[limits]` of a confined tenant (defaults when absent); `None` when unconfined.
    pub limits: Option<limits::Limits>,
    /// The tenant's command (`tenant.command`), for `supervise up` and a `run` without
    /// `-- CMD`. `{home}`, `{address}` and `{name}` are expanded at launch.
    pub command: Option<Vec<String>>,
    /// `tenant.env`: variables added to the tenant's clean environment (see [`env`]).
    pub env: Vec<(String, String)>,
    /// `[mirror]`: copies of message prefixes to listening stations.
    pub mirror: Option<mirror::MirrorConfig>,
    /// Where its keys are, for errors found after parsing (a path missing on this host).
    spans: Option<std::sync::Arc<Spans>>,
}

/// Credentials the tenant runs under.
#[derive(Debug, Clone)]
pub struct Ids {
    /// User id.
    pub uid: libc::uid_t,
    /// Group id.
    pub gid: libc::gid_t,
    /// Supplementary groups.
    pub groups: Vec<libc::gid_t>,
}

/// Which sockets a stream tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    /// Connections the tenant accepts on this local port.
    ListenPort(u16),
    /// Connections the tenant makes to this remote port.
    RemotePort(u16),
}

/// One tracked stream's configuration.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Operator-chosen name (logs).
    pub name: String,
    /// Which sockets.
    pub selector: Selector,
    /// How messages are cut.
    pub framer: FramerKind,
    /// Spool limit per message.
    pub max_message: usize,
    /// Failure policy.
    pub on_error: OnError,
    /// Partial-message policy at end of direction.
    pub on_partial_close: OnPartialClose,
    rules: Vec<rules::RuleConfig>,
}

impl StreamConfig {
    /// Whether the tenant is the protocol's client on this stream: it makes the
    /// connections of a `remote_port` stream and accepts those of a `listen_port` one.
    pub fn tenant_is_client(&self) -> bool {
        matches!(self.selector, Selector::RemotePort(_))
    }

    /// The protocol's direction of bytes travelling in the engine's `direction`.
    ///
    /// The engine names directions from the tenant (`Inbound`: peer → tenant); the
    /// protocol layer (the PostgreSQL framer and session) from the server it assumes
    /// the tenant to be (`Inbound`: client → server). They agree on a `listen_port`
    /// stream; on a `remote_port` stream the tenant is the client, so they are swapped.
    /// This is the one place the roles are mapped: [`StreamConfig::new_framer`] and the
    /// protocol rules of [`StreamConfig::new_rules`] go through it, the generic rules
    /// (`wrap`, `uppercase`) keep the tenant's view their `direction` key documents.
    pub fn protocol_direction(&self, direction: Direction) -> Direction {
        if self.tenant_is_client() {
            direction.reverse()
        } else {
            direction
        }
    }

    /// A fresh framer for one direction (the engine's, seen from the tenant) of a new
    /// connection.
    pub fn new_framer(&self, direction: Direction) -> Box<dyn Framer> {
        match self.framer {
            FramerKind::Raw => Box::new(RawFramer),
            FramerKind::Lines => Box::new(LinesFramer::new(self.max_message)),
            FramerKind::Postgres => Box::new(PgFramer::new(
                self.protocol_direction(direction),
                self.max_message,
            )),
        }
    }

    /// This stream with its rules replaced by `text` (`[[rule]]` tables, as under a
    /// stream in a profile): every rule is checked against the stream's framer, and
    /// one bad rule refuses the whole set.
    pub fn with_rules_text(&self, text: &str) -> Result<StreamConfig, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Replacement {
            #[serde(default)]
            rule: Vec<rules::RuleSpec>,
        }
        let parsed: Replacement = toml::from_str(text)
            .map_err(|e| format!("the rules are not valid TOML: {}", e.message()))?;
        let mut rules = Vec::with_capacity(parsed.rule.len());
        for (j, spec) in parsed.rule.into_iter().enumerate() {
            rules.push(
                rules::validate(spec, self.framer)
                    .map_err(|(key, message)| format!("rule[{j}].{key}: {message}"))?,
            );
        }
        let has_pg_rules = rules
            .iter()
            .any(|r| matches!(r, rules::RuleConfig::Postgres(_)));
        if has_pg_rules && self.on_error == OnError::Passthrough {
            return Err("PostgreSQL rules on a stream with on_error = \"passthrough\" would let what the rules cannot read flow unchecked".into());
        }
        Ok(StreamConfig {
            rules,
            ..self.clone()
        })
    }

    /// Fresh rule instances for a new connection (one chain for both directions),
    /// called with the engine's directions.
    pub fn new_rules(&self) -> Vec<Box<dyn Rule>> {
        rules::instantiate(&self.rules, self.framer, self.tenant_is_client())
    }

    /// The profile index of each postgres rule, in the order the session gets them.
    pub fn postgres_rule_indices(&self) -> Vec<usize> {
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, rules::RuleConfig::Postgres(_)))
            .map(|(i, _)| i)
            .collect()
    }

    /// Rule `i`'s kind, its configuration as text, and whether it has self-test
    /// fixtures.
    pub fn rule_summary(&self, i: usize) -> Option<(&'static str, String, bool)> {
        let rule = self.rules.get(i)?;
        Some((rule.kind_name(), format!("{rule:?}"), rule.has_fixtures()))
    }

    /// Replays rule `i`'s fixtures through a fresh instance of it.
    pub fn rule_replay(&self, i: usize) -> Option<Result<String, String>> {
        self.rules.get(i).map(|r| r.replay())
    }

    /// How many rules the stream has (each one a component, `tenant/stream/rN`).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// True when bytes pass unchanged and unframed: the engine may then pull exactly
    /// what the tenant asked for, so the kernel's readiness stays exact.
    pub fn is_identity(&self) -> bool {
        self.framer == FramerKind::Raw && self.rules.is_empty()
    }
}

impl Profile {
    /// Loads and validates a profile file.
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Profile::parse(&text, path)
    }

    /// The embedded default profile.
    pub fn embedded_default() -> Profile {
        Profile::parse(EMBEDDED_DEFAULT, Path::new("<embedded default>"))
            .expect("the embedded default profile is valid (tested)")
    }

    /// Parses and validates profile text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Profile, ProfileError> {
        let spans = Spans::parse(text);
        let file: ProfileFile =
            toml::from_str(text).map_err(|e| toml_error(&e, spans.as_ref(), text, path))?;
        let invalid = |key: KeyPath, message: String| ProfileError::Invalid {
            path: path.to_owned(),
            line: spans.as_ref().map_or(1, |s| s.line_of_key(&key)),
            key: key.to_string(),
            message,
        };
        let k = KeyPath::parse;

        let tenant = file.tenant;
        if tenant.name.is_empty()
            || !tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(invalid(
                k("tenant.name"),
                format!("{:?} must be non-empty [A-Za-z0-9_-]", tenant.name),
            ));
        }
        let ids = account::resolve_ids(tenant.user.as_deref(), tenant.uid, tenant.gid)
            .map_err(|(key, m)| invalid(k("tenant").key(key), m))?;
        // The keys that gave the uid and the gid, for the confinement's checks.
        let id_keys = match (&tenant.user, tenant.gid) {
            (Some(_), _) => ("tenant.user", "tenant.user"),
            (None, Some(_)) => ("tenant.uid", "tenant.gid"),
            (None, None) => ("tenant.uid", "tenant.uid"),
        };
        let confinement = confine::validate(
            tenant.confine,
            ids.as_ref().map(|i| (i.uid, i.gid)),
            id_keys,
            file.filesystem,
            file.network,
        )
        .map_err(|(key, message)| invalid(k(&key), message))?;
        let limits = limits::validate(confinement.is_some(), file.limits)
            .map_err(|(key, message)| invalid(k(&key), message))?;
        if let Some(command) = &tenant.command {
            if command.is_empty() || command[0].is_empty() {
                return Err(invalid(
                    k("tenant.command"),
                    "needs a program (first element)".into(),
                ));
            }
        }
        for (name, value) in &tenant.env {
            let key = k("tenant.env").key(name);
            env::check_name(name.as_bytes()).map_err(|m| invalid(key.clone(), m))?;
            if value.contains('\0') {
                return Err(invalid(key, "a value cannot contain a NUL byte".into()));
            }
            if confinement.is_some() && env::CONFINED_FIXED.contains(&name.as_str()) {
                return Err(invalid(
                    key,
                    "set by the supervisor for a confined tenant; it cannot be changed".into(),
                ));
            }
        }

        let mut streams = Vec::new();
        for (i, spec) in file.stream.into_iter().enumerate() {
            let key = |name: &str| k(&format!("stream[{i}].{name}"));
            // The name is part of the stream's DPIDs (`tenant/stream/c17`).
            let name_ok = !spec.name.is_empty()
                && spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !name_ok {
                return Err(invalid(
                    key("name"),
                    format!(
                        "{:?} must be non-empty [A-Za-z0-9_-] (it is part of the stream's DPIDs)",
                        spec.name
                    ),
                ));
            }
            if streams.iter().any(|s: &StreamConfig| s.name == spec.name) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} names another stream already", spec.name),
                ));
            }
            let (selector, selector_key) = match (spec.listen_port, spec.remote_port) {
                (Some(p), None) => (Selector::ListenPort(p), "listen_port"),
                (None, Some(p)) => (Selector::RemotePort(p), "remote_port"),
                _ => {
                    return Err(invalid(
                        key("listen_port"),
                        "exactly one of listen_port or remote_port is required".into(),
                    ))
                }
            };
            if matches!(selector, Selector::ListenPort(0) | Selector::RemotePort(0)) {
                return Err(invalid(
                    key(selector_key),
                    "port 0 cannot be tracked".into(),
                ));
            }
            if streams
                .iter()
                .any(|s: &StreamConfig| s.selector == selector)
            {
                return Err(invalid(
                    key(selector_key),
                    format!("{selector:?} is already tracked by another stream"),
                ));
            }
            let max_message = spec.max_message.unwrap_or(DEFAULT_MAX_MESSAGE);
            if max_message == 0 || max_message > MAX_MESSAGE_CEILING {
                return Err(invalid(
                    key("max_message"),
                    format!("{max_message} is outside 1..={MAX_MESSAGE_CEILING}"),
                ));
            }
            let mut rules = Vec::new();
            for (j, rule) in spec.rule.into_iter().enumerate() {
                let config = rules::validate(rule, spec.framer).map_err(|(name, message)| {
                    invalid(key(&format!("rule[{j}].{name}")), message)
                })?;
                rules.push(config);
            }
            let has_pg_rules = rules
                .iter()
                .any(|r| matches!(r, rules::RuleConfig::Postgres(_)));
            if has_pg_rules && spec.on_error == OnError::Passthrough {
                return Err(invalid(
                    key("on_error"),
                    "\"passthrough\" would let a stream the rules cannot read flow unchecked; PostgreSQL rules fail closed: use \"close\"".into(),
                ));
            }
            streams.push(StreamConfig {
                name: spec.name,
                selector,
                framer: spec.framer,
                max_message,
                on_error: spec.on_error,
                on_partial_close: spec.on_partial_close,
                rules,
            });
        }
        let mirror = mirror::validate(file.mirror, &streams)
            .map_err(|(key, message)| invalid(k(&key), message))?;
        Ok(Profile {
            source: path.display().to_string(),
            tenant: tenant.name,
            ids,
            streams,
            confinement,
            limits,
            command: tenant.command,
            env: tenant.env.into_iter().collect(),
            mirror,
            spans: spans.map(std::sync::Arc::new),
        })
    }

    /// An error about `key` (dotted, `filesystem.read_only[2]`) found after parsing,
    /// located like the parser's own: `file:line: key: message`.
    pub fn error(&self, key: &str, message: String) -> ProfileError {
        let key = KeyPath::parse(key);
        ProfileError::Invalid {
            path: PathBuf::from(&self.source),
            line: self.spans.as_ref().map_or(1, |s| s.line_of_key(&key)),
            key: key.to_string(),
            message,
        }
    }

    /// The stream tracking connections accepted on `port`, if any.
    pub fn stream_for_listen_port(&self, port: u16) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.selector == Selector::ListenPort(port))
    }

    /// The stream tracking connections made to `port`, if any.
    pub fn stream_for_remote_port(&self, port: u16) -> Option<usize> {
        self.streams
            .iter()
            .position(|s| s.selector == Selector::RemotePort(port))
    }
}

/// A deserialization error, located: the key holding the offending value (or, for an
/// unknown or missing key, that key in the table at fault) and its line.
fn toml_error(e: &toml::de::Error, spans: Option<&Spans>, text: &str, path: &Path) -> ProfileError {
    let message = e.message().trim();
    let offset = e.span().map_or(0, |s| s.start);
    let Some(spans) = spans else {
        return ProfileError::Syntax {
            path: path.to_owned(),
            line: spans::line_of(&spans::line_starts(text), offset),
            message: message.lines().collect::<Vec<_>>().join("; "),
        };
    };
    let mut key = spans.path_at(offset);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
    };
    let message = if let Some(name) = named("unknown field `") {
        // The offset is the unknown key's own; a table it names (`[tenants]`) starts on
        // the same line and already holds it.
        let holds_it = key.0.last() == Some(&spans::Seg::Key(name.to_owned()))
            && spans.line_of_key(&key) == spans.line_of(offset);
        if !holds_it {
            key = key.key(name);
        }
        match message.split_once("`, ") {
            Some((_, expected)) => format!("unknown key ({expected})"),
            None => "unknown key".to_owned(),
        }
    } else if let Some(name) = named("missing field `") {
        key = key.key(name);
        "required key is missing".to_owned()
    } else {
        plain_words(message)
    };
    ProfileError::Invalid {
        path: path.to_owned(),
        line: spans.line_of(offset),
        key: if key.0.is_empty() {
            "(top level)".to_owned()
        } else {
            key.to_string()
        },
        message,
    }
}

/// serde's type names in an operator's words: "expected u16" → "expected an integer
/// in 0..=65535", "expected struct TenantSpec" → "expected a table".
fn plain_words(message: &str) -> String {
    let Some((before, expected)) = message.rsplit_once("expected ") else {
        return message.to_owned();
    };
    let plain = match expected {
        "u8" => "an integer in 0..=255".to_owned(),
        "u16" => "an integer in 0..=65535".to_owned(),
        "u32" => format!("an integer in 0..={}", u32::MAX),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        e if e.starts_with("struct ") => "a table".to_owned(),
        e => e.to_owned(),
    };
    format!("{before}expected {plain}")
}
