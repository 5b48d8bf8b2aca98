//! `[[stream.rule]]`: parsing, validation, and building the rule chain of a connection.
//!
//! Generic rules (`uppercase`, `wrap`) act on any framer's messages in one direction.
//! PostgreSQL rules (`rewrite`, `mask`, `deny`, `drop-session`) need `framer =
//! "postgres"`; all of a stream's PostgreSQL rules run in one session engine that sees
//! both directions.
//!
//! Directions: the engine calls the chain with its own (seen from the tenant). A
//! generic rule's `direction` key is in those terms. The session engine speaks the
//! protocol's (client → server is `Inbound`); on a stream where the tenant is the
//! client it runs behind [`TenantIsClient`], which maps one to the other.

use serde::Deserialize;
use transforms::pg::session::{Condition, PgRule, PgSession};
use transforms::pg::sql::PredicateRewrite;
use transforms::{
    Direction, FrameError, OneDirection, Output, Rule, RuleError, UppercaseRule, WrapRule,
};

use super::FramerKind;

/// One `[[stream.rule]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    kind: RuleKind,
    direction: Option<DirectionSpec>,
    prefix: Option<String>,
    suffix: Option<String>,
    table: Option<String>,
    column: Option<String>,
    from: Option<String>,
    to: Option<String>,
    replacement: Option<String>,
    objects: Option<Vec<String>>,
    functions: Option<Vec<String>>,
    replication_users: Option<Vec<String>>,
    when: Option<WhenSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenSpec {
    user: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum RuleKind {
    Uppercase,
    Wrap,
    Rewrite,
    Mask,
    Deny,
    DropSession,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DirectionSpec {
    Inbound,
    Outbound,
    Both,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub(super) enum RuleConfig {
    Uppercase(DirectionSpec),
    Wrap {
        direction: DirectionSpec,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
    },
    Postgres(PgRule),
}

/// The key at fault (inside the rule: `objects[1]`) and what is wrong with it.
type Invalid = (String, String);

fn required(value: Option<String>, key: &'static str, kind: &str) -> Result<String, Invalid> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err((key.into(), format!("kind = \"{kind}\" needs {key}"))),
    }
}

/// SQL names are matched lower-cased on their last part (`public.employee` → `employee`).
fn object_name(name: &str, key: impl Into<String>) -> Result<String, Invalid> {
    let last = name
        .rsplit('.')
        .next()
        .unwrap_or(name)
        .trim()
        .trim_matches('"');
    if last.is_empty() || !last.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return Err((
            key.into(),
            format!("{name:?} is not a table or column name"),
        ));
    }
    Ok(last.to_lowercase())
}

/// Checks one rule against its stream's framer.
pub(super) fn validate(spec: RuleSpec, framer: FramerKind) -> Result<RuleConfig, Invalid> {
    let generic = matches!(spec.kind, RuleKind::Uppercase | RuleKind::Wrap);
    let kind_name = format!("{:?}", spec.kind).to_lowercase();
    if generic {
        if spec.table.is_some()
            || spec.column.is_some()
            || spec.objects.is_some()
            || spec.when.is_some()
        {
            return Err((
                "kind".into(),
                format!("kind = \"{kind_name}\" takes only direction (and prefix/suffix for wrap)"),
            ));
        }
        let direction = spec.direction.ok_or((
            "direction".into(),
            "generic rules need direction = \"inbound\", \"outbound\" or \"both\"".to_owned(),
        ))?;
        if spec.kind == RuleKind::Uppercase {
            if spec.prefix.is_some() || spec.suffix.is_some() {
                return Err((
                    "prefix".into(),
                    "prefix/suffix only apply to kind = \"wrap\"".into(),
                ));
            }
            return Ok(RuleConfig::Uppercase(direction));
        }
        if spec.prefix.is_none() && spec.suffix.is_none() {
            return Err((
                "prefix".into(),
                "kind = \"wrap\" needs a prefix or a suffix".into(),
            ));
        }
        return Ok(RuleConfig::Wrap {
            direction,
            prefix: spec.prefix.unwrap_or_default().into_bytes(),
            suffix: spec.suffix.unwrap_or_default().into_bytes(),
        });
    }
    if framer != FramerKind::Postgres {
        return Err((
            "kind".into(),
            format!("kind = \"{kind_name}\" needs framer = \"postgres\""),
        ));
    }
    if spec.direction.is_some() || spec.prefix.is_some() || spec.suffix.is_some() {
        return Err((
            "direction".into(),
            "PostgreSQL rules see both directions; direction/prefix/suffix do not apply".into(),
        ));
    }
    let when = spec
        .when
        .map(|w| Condition {
            user: w.user,
            database: w.database,
            application_name: w.application_name,
        })
        .unwrap_or_default();
    let objects = |spec_objects: Option<Vec<String>>| -> Result<Vec<String>, Invalid> {
        let list = spec_objects.unwrap_or_default();
        if list.is_empty() {
            return Err((
                "objects".into(),
                "needs a non-empty list of table names".into(),
            ));
        }
        list.iter()
            .enumerate()
            .map(|(i, o)| object_name(o, format!("objects[{i}]")))
            .collect()
    };
    let has_table_or_column = spec.table.is_some() || spec.column.is_some();
    if spec.kind != RuleKind::Allow
        && (spec.functions.is_some() || spec.replication_users.is_some())
    {
        return Err((
            "functions".into(),
            format!("kind = \"{kind_name}\" takes no functions or replication_users (those are kind = \"allow\")"),
        ));
    }
    let rule = match spec.kind {
        RuleKind::Rewrite => PgRule::Rewrite {
            when,
            rewrite: PredicateRewrite {
                table: object_name(&required(spec.table, "table", "rewrite")?, "table")?,
                column: object_name(&required(spec.column, "column", "rewrite")?, "column")?,
                from: required(spec.from, "from", "rewrite")?,
                to: required(spec.to, "to", "rewrite")?,
            },
        },
        RuleKind::Mask => PgRule::Mask {
            when,
            table: object_name(&required(spec.table, "table", "mask")?, "table")?,
            column: object_name(&required(spec.column, "column", "mask")?, "column")?,
            replacement: spec.replacement.unwrap_or_else(|| "****".to_owned()),
        },
        RuleKind::Deny => PgRule::Deny {
            when,
            objects: objects(spec.objects)?,
        },
        RuleKind::DropSession => PgRule::DropSession {
            when,
            objects: objects(spec.objects)?,
        },
        RuleKind::Allow => {
            if has_table_or_column || spec.objects.is_some() || spec.replacement.is_some() {
                return Err((
                    "kind".into(),
                    "kind = \"allow\" takes functions and/or replication_users only".into(),
                ));
            }
            let functions = spec
                .functions
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, f)| object_name(f, format!("functions[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            let replication_users = spec.replication_users.unwrap_or_default();
            if functions.is_empty() && replication_users.is_empty() {
                return Err((
                    "functions".into(),
                    "kind = \"allow\" needs functions or replication_users".into(),
                ));
            }
            PgRule::Allow {
                when,
                functions,
                replication_users,
            }
        }
        RuleKind::Uppercase | RuleKind::Wrap => unreachable!("generic rules returned above"),
    };
    if matches!(rule, PgRule::Deny { .. } | PgRule::DropSession { .. }) && has_table_or_column {
        return Err((
            "table".into(),
            format!("kind = \"{kind_name}\" takes objects, not table/column"),
        ));
    }
    Ok(RuleConfig::Postgres(rule))
}

/// Builds a connection's rule chain: generic rules in order, then, on a PostgreSQL
/// stream, one session engine holding every PostgreSQL rule (even none: it still
/// declines TLS so the stream stays readable).
///
/// `tenant_is_client`: the tenant makes the connections (a `remote_port` stream), so
/// the session engine, written for a tenant that is the server, sees its directions
/// swapped.
pub(super) fn instantiate(
    configs: &[RuleConfig],
    framer: FramerKind,
    tenant_is_client: bool,
) -> Vec<Box<dyn Rule>> {
    let mut chain: Vec<Box<dyn Rule>> = Vec::new();
    let mut pg_rules = Vec::new();
    for config in configs {
        let (direction, rule): (DirectionSpec, Box<dyn Rule>) = match config {
            RuleConfig::Uppercase(direction) => (*direction, Box::new(UppercaseRule)),
            RuleConfig::Wrap {
                direction,
                prefix,
                suffix,
            } => (
                *direction,
                Box::new(WrapRule::new(prefix.clone(), suffix.clone())),
            ),
            RuleConfig::Postgres(rule) => {
                pg_rules.push(rule.clone());
                continue;
            }
        };
        chain.push(match direction {
            DirectionSpec::Both => rule,
            DirectionSpec::Inbound => Box::new(OneDirection::new(Direction::Inbound, rule)),
            DirectionSpec::Outbound => Box::new(OneDirection::new(Direction::Outbound, rule)),
        });
    }
    if framer == FramerKind::Postgres {
        let session = Box::new(PgSession::new(pg_rules));
        chain.push(if tenant_is_client {
            Box::new(TenantIsClient(session))
        } else {
            session
        });
    }
    chain
}

/// A protocol rule written for a tenant that is the server, on a stream where the
/// tenant is the client: the engine's `Inbound` (peer → tenant) is the server's bytes,
/// which the rule knows as `Outbound`, and the other way round. `onward` and `back`
/// are relative to the message, so its output needs no mapping.
#[derive(Debug)]
struct TenantIsClient(Box<dyn Rule>);

impl Rule for TenantIsClient {
    fn apply(
        &mut self,
        direction: Direction,
        message: &[u8],
        out: &mut Output,
    ) -> Result<(), RuleError> {
        self.0.apply(direction.reverse(), message, out)
    }

    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn state(&self) -> Vec<(&'static str, String)> {
        self.0.state()
    }

    fn on_framing_error(&mut self, direction: Direction, error: &FrameError, out: &mut Output) {
        self.0.on_framing_error(direction.reverse(), error, out);
    }

    fn keeps_session(&self) -> bool {
        self.0.keeps_session()
    }

    fn adopt(&mut self, next: Box<dyn Rule>) -> Result<(), String> {
        let next: Box<dyn std::any::Any> = next;
        let next = next
            .downcast::<TenantIsClient>()
            .map_err(|_| "the tenant is no longer the stream's client".to_owned())?;
        self.0.adopt(next.0)
    }
}

/// A rule as a component: its kind, its configuration, its self-tests.
impl RuleConfig {
    /// The rule's kind as the profile names it.
    pub(super) fn kind_name(&self) -> &'static str {
        match self {
            RuleConfig::Uppercase(_) => "uppercase",
            RuleConfig::Wrap { .. } => "wrap",
            RuleConfig::Postgres(PgRule::Rewrite { .. }) => "rewrite",
            RuleConfig::Postgres(PgRule::Mask { .. }) => "mask",
            RuleConfig::Postgres(PgRule::Deny { .. }) => "deny",
            RuleConfig::Postgres(PgRule::DropSession { .. }) => "drop-session",
            RuleConfig::Postgres(PgRule::Allow { .. }) => "allow",
            RuleConfig::Postgres(_) => "postgres",
        }
    }

    /// Whether [`RuleConfig::replay`] has something to check.
    pub(super) fn has_fixtures(&self) -> bool {
        match self {
            RuleConfig::Postgres(rule) => transforms::pg::selftest::has_fixtures(rule),
            _ => true,
        }
    }

    /// Replays the rule's fixtures through a fresh instance of it.
    pub(super) fn replay(&self) -> Result<String, String> {
        let (mut rule, expect): (Box<dyn Rule>, Vec<u8>) = match self {
            RuleConfig::Postgres(rule) => return transforms::pg::selftest::replay(rule),
            RuleConfig::Uppercase(_) => (Box::new(UppercaseRule), b"ABC\n".to_vec()),
            RuleConfig::Wrap { prefix, suffix, .. } => (
                Box::new(WrapRule::new(prefix.clone(), suffix.clone())),
                [prefix.as_slice(), b"abc\n", suffix.as_slice()].concat(),
            ),
        };
        let mut out = Output::default();
        rule.apply(Direction::Inbound, b"abc\n", &mut out)
            .map_err(|e| e.to_string())?;
        let got = String::from_utf8_lossy(&out.onward);
        if out.onward == expect {
            Ok(format!("\"abc\\n\" → {got:?}"))
        } else {
            Err(format!("\"abc\\n\" came out as {got:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::profile::Profile;
    use std::path::Path;

    fn check(rule: &str, framer: &str) -> Result<Profile, String> {
        let text = format!("[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nlisten_port = 1\nframer = \"{framer}\"\n[[stream.rule]]\n{rule}");
        Profile::parse(&text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn postgres_rules_parse_and_build_one_session() {
        let p = check(
            "kind = \"deny\"\nobjects = [\"public.Salaries\"]\nwhen = { user = \"app\" }\n",
            "postgres",
        )
        .unwrap();
        let names: Vec<&str> = p.streams[0].new_rules().iter().map(|r| r.name()).collect();
        assert_eq!(names, ["postgres"]);
    }

    #[test]
    fn postgres_framer_without_rules_still_declines_tls() {
        let text = "[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nlisten_port = 1\nframer = \"postgres\"\n";
        let p = Profile::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(p.streams[0].new_rules().len(), 1);
    }

    #[test]
    fn every_rule_kind_replays_its_fixture_and_allow_has_none() {
        for (rule, framer) in [
            ("kind = \"uppercase\"\ndirection = \"inbound\"\n", "lines"),
            (
                "kind = \"wrap\"\ndirection = \"both\"\nprefix = \"<\"\nsuffix = \">\"\n",
                "lines",
            ),
            ("kind = \"deny\"\nobjects = [\"salaries\"]\n", "postgres"),
            (
                "kind = \"drop-session\"\nobjects = [\"audit_log\"]\n",
                "postgres",
            ),
            (
                "kind = \"mask\"\ntable = \"employee\"\ncolumn = \"ssn\"\n",
                "postgres",
            ),
        ] {
            let p = check(rule, framer).unwrap();
            let (_, _, fixtures) = p.streams[0].rule_summary(0).unwrap();
            assert!(fixtures, "{rule}");
            let outcome = p.streams[0].rule_replay(0).unwrap();
            assert!(outcome.is_ok(), "{rule}: {outcome:?}");
        }
        let p = check("kind = \"allow\"\nfunctions = [\"f\"]\n", "postgres").unwrap();
        assert!(!p.streams[0].rule_summary(0).unwrap().2);
    }

    #[test]
    fn allow_rule_parses() {
        let p = check(
            "kind = \"allow\"\nfunctions = [\"public.My_Report\"]\nreplication_users = [\"replicator\"]\n",
            "postgres",
        )
        .unwrap();
        assert_eq!(p.streams[0].new_rules().len(), 1);
    }

    #[test]
    fn passthrough_is_refused_with_postgres_rules() {
        let text = "[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nlisten_port = 1\nframer = \"postgres\"\non_error = \"passthrough\"\n[[stream.rule]]\nkind = \"deny\"\nobjects = [\"x\"]\n";
        let err = Profile::parse(text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("stream[0].on_error"), "{err}");
        assert!(err.contains("fail closed"), "{err}");
        // Without rules (identity) passthrough stays a choice.
        let text = "[tenant]\nname = \"t\"\n[[stream]]\nname = \"s\"\nlisten_port = 1\nframer = \"postgres\"\non_error = \"passthrough\"\n";
        assert!(Profile::parse(text, Path::new("t.toml")).is_ok());
    }

    #[test]
    fn bad_rules_name_the_key() {
        let cases = [
            (
                "kind = \"deny\"\nobjects = [\"x\"]\n",
                "raw",
                "stream[0].rule[0].kind: kind = \"deny\" needs framer = \"postgres\"",
            ),
            (
                "kind = \"mask\"\ntable = \"employee\"\n",
                "postgres",
                "stream[0].rule[0].column: kind = \"mask\" needs column",
            ),
            (
                "kind = \"deny\"\nobjects = []\n",
                "postgres",
                "stream[0].rule[0].objects: needs a non-empty list",
            ),
            (
                "kind = \"deny\"\nobjects = [\"a b\"]\n",
                "postgres",
                "stream[0].rule[0].objects[0]: \"a b\" is not a table or column name",
            ),
            (
                "kind = \"rewrite\"\ntable = \"e\"\ncolumn = \"d\"\nfrom = \"1\"\n",
                "postgres",
                "stream[0].rule[0].to: kind = \"rewrite\" needs to",
            ),
            (
                "kind = \"deny\"\nobjects = [\"x\"]\ndirection = \"inbound\"\n",
                "postgres",
                "stream[0].rule[0].direction: PostgreSQL rules see both directions",
            ),
            (
                "kind = \"uppercase\"\n",
                "lines",
                "stream[0].rule[0].direction: generic rules need direction",
            ),
            (
                "kind = \"deny\"\nobjects = [\"x\"]\nwhen = { host = \"h\" }\n",
                "postgres",
                "t.toml:10: stream[0].rule[0].when.host: unknown key (expected one of `user`, `database`, `application_name`)",
            ),
            (
                "kind = \"allow\"\n",
                "postgres",
                "stream[0].rule[0].functions: kind = \"allow\" needs functions or replication_users",
            ),
            (
                "kind = \"allow\"\nfunctions = [\"f\"]\ntable = \"t\"\n",
                "postgres",
                "stream[0].rule[0].kind: kind = \"allow\" takes functions and/or replication_users only",
            ),
            (
                "kind = \"deny\"\nobjects = [\"x\"]\nfunctions = [\"f\"]\n",
                "postgres",
                "stream[0].rule[0].functions: kind = \"deny\" takes no functions",
            ),
            (
                "kind = \"allow\"\nfunctions = [\"a b\"]\n",
                "postgres",
                "stream[0].rule[0].functions[0]: \"a b\" is not a table or column name",
            ),
        ];
        for (rule, framer, expected) in cases {
            let err = check(rule, framer).unwrap_err();
            assert!(err.starts_with("t.toml:"), "{err}");
            assert!(err.contains(expected), "{err} lacks {expected}");
        }
    }
}
