//! Tenant profiles: TOML in, a validated [`Profile`] out, or an error naming the file,
//! the line and the key.
//!
//! Everything is validated before any side effect: a profile that parses is one the
//! launcher can act on without further checks.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
pub mod confine;
mod rules;

pub use confine::Confinement;

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
    /// The TOML is malformed, a key is unknown or a value has the wrong type.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// The parser's message (names the key).
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{path}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
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
    tenant: Spanned<TenantSpec>,
    filesystem: Option<Spanned<confine::FilesystemSpec>>,
    network: Option<Spanned<confine::NetworkSpec>>,
    #[serde(default)]
    stream: Vec<Spanned<StreamSpec>>,
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
    rule: Vec<Spanned<rules::RuleSpec>>,
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
    /// The tenant's command (`tenant.command`), for `supervise up` and a `run` without
    /// `-- CMD`. `{home}`, `{address}` and `{name}` are expanded at launch.
    pub command: Option<Vec<String>>,
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
    /// A fresh framer for one direction of a new connection.
    pub fn new_framer(&self, direction: Direction) -> Box<dyn Framer> {
        match self.framer {
            FramerKind::Raw => Box::new(RawFramer),
            FramerKind::Lines => Box::new(LinesFramer::new(self.max_message)),
            FramerKind::Postgres => Box::new(PgFramer::new(direction, self.max_message)),
        }
    }

    /// Fresh rule instances for a new connection (one chain for both directions).
    pub fn new_rules(&self) -> Vec<Box<dyn Rule>> {
        rules::instantiate(&self.rules, self.framer)
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
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: ProfileFile = toml::from_str(text).map_err(|e| ProfileError::Syntax {
            path: path.to_owned(),
            line: e.span().map_or(1, |s| line_of(s.start)),
            message: e.message().trim().to_owned(),
        })?;
        let invalid = |offset: usize, key: String, message: String| ProfileError::Invalid {
            path: path.to_owned(),
            line: line_of(offset),
            key,
            message,
        };

        let tenant_at = file.tenant.span().start;
        let tenant = file.tenant.into_inner();
        if tenant.name.is_empty()
            || !tenant
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        {
            return Err(invalid(
                tenant_at,
                "tenant.name".into(),
                format!("{:?} must be non-empty [A-Za-z0-9_-]", tenant.name),
            ));
        }
        let ids = resolve_ids(&tenant).map_err(|m| invalid(tenant_at, "tenant.user".into(), m))?;
        let confinement = confine::validate(
            tenant.confine,
            ids.as_ref().map(|i| (i.uid, i.gid)),
            tenant_at,
            file.filesystem,
            file.network,
        )
        .map_err(|(at, key, message)| invalid(at, key, message))?;
        if let Some(command) = &tenant.command {
            if command.is_empty() || command[0].is_empty() {
                return Err(invalid(
                    tenant_at,
                    "tenant.command".into(),
                    "needs a program (first element)".into(),
                ));
            }
        }

        let mut streams = Vec::new();
        for (i, spanned) in file.stream.into_iter().enumerate() {
            let at = spanned.span().start;
            let spec = spanned.into_inner();
            let key = |k: &str| format!("stream[{i}].{k}");
            let selector = match (spec.listen_port, spec.remote_port) {
                (Some(p), None) => Selector::ListenPort(p),
                (None, Some(p)) => Selector::RemotePort(p),
                _ => {
                    return Err(invalid(
                        at,
                        key("listen_port"),
                        "exactly one of listen_port or remote_port is required".into(),
                    ))
                }
            };
            if matches!(selector, Selector::ListenPort(0) | Selector::RemotePort(0)) {
                return Err(invalid(
                    at,
                    key("listen_port"),
                    "port 0 cannot be tracked".into(),
                ));
            }
            if streams
                .iter()
                .any(|s: &StreamConfig| s.selector == selector)
            {
                return Err(invalid(
                    at,
                    key("listen_port"),
                    format!("{selector:?} is already tracked by another stream"),
                ));
            }
            let max_message = spec.max_message.unwrap_or(DEFAULT_MAX_MESSAGE);
            if max_message == 0 || max_message > MAX_MESSAGE_CEILING {
                return Err(invalid(
                    at,
                    key("max_message"),
                    format!("{max_message} is outside 1..={MAX_MESSAGE_CEILING}"),
                ));
            }
            let mut rules = Vec::new();
            for (j, rule) in spec.rule.into_iter().enumerate() {
                let rule_at = rule.span().start;
                let key_prefix = format!("stream[{i}].rule[{j}]");
                let config =
                    rules::validate(rule.into_inner(), spec.framer).map_err(|(key, message)| {
                        invalid(rule_at, format!("{key_prefix}.{key}"), message)
                    })?;
                rules.push(config);
            }
            let has_pg_rules = rules
                .iter()
                .any(|r| matches!(r, rules::RuleConfig::Postgres(_)));
            if has_pg_rules && spec.on_error == OnError::Passthrough {
                return Err(invalid(
                    at,
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
        Ok(Profile {
            source: path.display().to_string(),
            tenant: tenant.name,
            ids,
            streams,
            confinement,
            command: tenant.command,
        })
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

/// Turns `user` / `uid` / `gid` into numeric credentials, resolving names now (before
/// any fork) so the launch child needs no lookups.
fn resolve_ids(tenant: &TenantSpec) -> Result<Option<Ids>, String> {
    match (&tenant.user, tenant.uid, tenant.gid) {
        (None, None, None) => Ok(None),
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            Err("give either user or uid/gid, not both".into())
        }
        (None, Some(uid), gid) => Ok(Some(Ids {
            uid,
            gid: gid.unwrap_or(uid),
            groups: Vec::new(),
        })),
        (None, None, Some(_)) => Err("gid needs a uid".into()),
        (Some(name), None, None) => lookup_user(name).map(Some),
    }
}

fn lookup_user(name: &str) -> Result<Ids, String> {
    let cname = CString::new(name).map_err(|_| format!("user {name:?} contains a NUL byte"))?;
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0u8; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call: `pwd` and `result` are writable,
    // `buf` is writable for its length and outlives every use of the returned strings.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            pwd.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return Err(format!("no such user {name:?} on this host"));
    }
    // SAFETY: getpwnam_r succeeded and `result` points at `pwd`, now initialised.
    let pwd = unsafe { pwd.assume_init() };
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut count = groups.len() as libc::c_int;
    // SAFETY: `groups` is writable for `count` entries; the name is NUL-terminated.
    let rc =
        unsafe { libc::getgrouplist(cname.as_ptr(), pwd.pw_gid, groups.as_mut_ptr(), &mut count) };
    if rc < 0 {
        return Err(format!(
            "user {name:?} is in more than {} groups",
            groups.len()
        ));
    }
    groups.truncate(count as usize);
    Ok(Ids {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn embedded_default_parses() {
        let p = Profile::embedded_default();
        assert!(p.streams.is_empty());
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
    fn unknown_key_names_file_line_and_key() {
        let err = parse("[tenant]\nname = \"x\"\n\n[[stream]]\nname = \"c\"\nlisten_prot = 1\nframer = \"raw\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("t.toml:6:"), "{msg}");
        assert!(msg.contains("listen_prot"), "{msg}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(
            "[tenant]\nname = \"x\"\n[[stream]]\nname = \"c\"\nlisten_port = 1\nframer = \"xml\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("t.toml:6:") && err.to_string().contains("xml"),
            "{err}"
        );
        let err = parse("[tenant]\nname = \"x\"\n[[stream]]\nname = \"c\"\nlisten_port = 1\nremote_port = 2\nframer = \"raw\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("stream[0].listen_port: exactly one"),
            "{err}"
        );
        let err = parse("[tenant]\nname = \"x\"\n[[stream]]\nname = \"c\"\nlisten_port = 70000\nframer = \"raw\"\n").unwrap_err();
        assert!(err.to_string().contains("t.toml:5:"), "{err}");
        let err = parse("[tenant]\nname = \"x\"\nuser = \"no-such-user-here\"\n").unwrap_err();
        assert!(
            err.to_string().contains("tenant.user: no such user"),
            "{err}"
        );
    }
}
