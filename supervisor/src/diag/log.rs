//! The log formatter: every event goes out stamped with the DPID of the component that
//! emitted it, as a readable line or as a JSON line (`--log-format json`).
//!
//! An event names its component by its target (its [`Kind`]) and, for kinds with many
//! instances (a stream, a connection, a rule), by a `dpid` field; a singleton's DPID
//! follows from its kind and the tenant. Filtering is [`Levels`]: the operator's
//! `SUPERVISE_LOG` plus per-DPID overrides. While no override is set, callsites are
//! enabled or disabled once (tracing's interest cache) and a disabled event costs a
//! load and a branch; an override makes the affected callsites check the event's DPID.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use tracing_core::{Event, Interest, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use super::levels::Levels;
use super::writer::LineWriter;
use super::{Dpid, Kind};

/// How lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `TIME LEVEL DPID: message key=value ...`
    Human,
    /// One JSON object per line: time, level, dpid, kind, tenant, message, fields, ops.
    Json,
}

/// The formatter layer.
#[derive(Debug)]
pub struct DiagLayer {
    format: Format,
    levels: Arc<Levels>,
    out: Arc<LineWriter>,
    /// The tenant this process supervises, once known (`supervise run` learns it from
    /// the profile; `supervise up` has none).
    tenant: Arc<OnceLock<String>>,
}

impl DiagLayer {
    /// A layer writing to `out`.
    pub fn new(
        format: Format,
        levels: Arc<Levels>,
        out: Arc<LineWriter>,
        tenant: Arc<OnceLock<String>>,
    ) -> DiagLayer {
        DiagLayer {
            format,
            levels,
            out,
            tenant,
        }
    }

    fn statically_enabled(&self, meta: &Metadata<'_>) -> bool {
        is_audit(meta) || self.levels.base_for(meta.target()) >= *meta.level()
    }
}

/// The keyring's audit of signed requests (its INFO and above): always written, whatever
/// `SUPERVISE_LOG` says and whatever level a signed `level` request set, so no request
/// can switch off the record of the ones after it.
fn is_audit(meta: &Metadata<'_>) -> bool {
    meta.target() == crate::diag::Kind::Keyring.target()
        && *meta.level() <= tracing_core::Level::INFO
}

impl<S: Subscriber> Layer<S> for DiagLayer {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.levels.has_overrides() {
            Interest::sometimes()
        } else if self.statically_enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        self.levels.has_overrides() || self.statically_enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // At least INFO: the audit (is_audit) must reach this layer whatever the filter.
        Some(self.levels.max().max(LevelFilter::INFO))
    }

    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if !self.levels.has_overrides() || is_audit(event.metadata()) {
            return true;
        }
        let meta = event.metadata();
        let level = LevelFilter::from_level(*meta.level());
        // More verbose than the filter and every override: no need to find the DPID.
        if level
            > self
                .levels
                .base_for(meta.target())
                .max(self.levels.max_override())
        {
            return false;
        }
        let mut finder = DpidLevel {
            levels: &self.levels,
            target: meta.target(),
            found: None,
        };
        event.record(&mut finder);
        let allowed = finder.found.unwrap_or_else(|| {
            self.levels
                .level_for(meta.target(), &self.implied_dpid(meta.target()))
        });
        allowed >= level
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let kind = Kind::from_target(meta.target());
        let dpid = fields
            .dpid
            .take()
            .unwrap_or_else(|| self.implied_dpid(meta.target()));
        let line = record(
            self.format,
            meta.level().as_str(),
            &dpid,
            kind.unwrap_or(Kind::Supervisor),
            self.tenant.get().map(String::as_str),
            &fields.message,
            &fields.values,
        );
        self.out.send(line.into_bytes());
    }
}

impl DiagLayer {
    /// The DPID of an event without a `dpid` field: its singleton kind's, or the
    /// supervisor's.
    fn implied_dpid(&self, target: &str) -> String {
        let Some(tenant) = self.tenant.get() else {
            return "supervise".to_owned();
        };
        match Kind::from_target(target) {
            Some(kind) if kind.is_singleton() => Dpid::singleton(tenant, kind).to_string(),
            Some(Kind::Tenant) => tenant.clone(),
            _ => Dpid::singleton(tenant, Kind::Supervisor).to_string(),
        }
    }
}

/// The current time, RFC 3339 with microseconds, UTC.
pub fn now_rfc3339() -> String {
    use tracing_subscriber::fmt::time::FormatTime;
    let mut s = String::with_capacity(32);
    let _ = tracing_subscriber::fmt::time::SystemTime
        .format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut s));
    s
}

/// One line in `format`: the same shape for the supervisor's events and the tenant's
/// stamped output, so one reader handles both.
pub fn record(
    format: Format,
    level: &str,
    dpid: &str,
    kind: Kind,
    tenant: Option<&str>,
    message: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    let mut line = match format {
        Format::Human => {
            let mut line = format!("{} {level:>5} {dpid}: {message}", now_rfc3339());
            for (name, value) in fields {
                let _ = match value {
                    serde_json::Value::String(s) => write!(line, " {name}={s}"),
                    other => write!(line, " {name}={other}"),
                };
            }
            line
        }
        Format::Json => {
            // Written directly (no serde_json::Value tree): this runs on the emitting
            // thread, the notification loop for a connection at debug.
            let mut line = String::with_capacity(256 + message.len());
            line.push_str("{\"time\":");
            json_str(&mut line, &now_rfc3339());
            line.push_str(",\"level\":");
            json_str(&mut line, level);
            line.push_str(",\"dpid\":");
            json_str(&mut line, dpid);
            line.push_str(",\"kind\":");
            json_str(&mut line, kind.name());
            line.push_str(",\"tenant\":");
            match tenant {
                Some(t) => json_str(&mut line, t),
                None => line.push_str("null"),
            }
            line.push_str(",\"message\":");
            json_str(&mut line, message);
            line.push_str(",\"fields\":{");
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                json_str(&mut line, name);
                line.push(':');
                match value {
                    serde_json::Value::String(s) => json_str(&mut line, s),
                    other => {
                        let _ = write!(line, "{other}");
                    }
                }
            }
            line.push_str("},\"ops\":[");
            for (i, op) in super::ops_of(kind).iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                json_str(&mut line, op);
            }
            line.push_str("]}");
            line
        }
    };
    line.push('\n');
    line
}

/// Appends `text` as a JSON string (quotes, backslashes and control characters
/// escaped).
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An event's fields: the message, its `dpid`, and the rest with their JSON types.
#[derive(Default)]
struct Fields {
    message: String,
    dpid: Option<String>,
    values: Vec<(&'static str, serde_json::Value)>,
}

impl tracing_core::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "dpid" => self.dpid = Some(text),
            name => self.values.push((name, serde_json::Value::String(text))),
        }
    }
    fn record_str(&mut self, field: &tracing_core::Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "dpid" => self.dpid = Some(value.to_owned()),
            name => self.values.push((name, value.into())),
        }
    }
    fn record_u64(&mut self, field: &tracing_core::Field, value: u64) {
        self.values.push((field.name(), value.into()));
    }
    fn record_i64(&mut self, field: &tracing_core::Field, value: i64) {
        self.values.push((field.name(), value.into()));
    }
    fn record_bool(&mut self, field: &tracing_core::Field, value: bool) {
        self.values.push((field.name(), value.into()));
    }
}

/// Finds the `dpid` field and the level in force for it (a `&str` field costs no
/// allocation; a `Display` one is formatted).
struct DpidLevel<'a> {
    levels: &'a Levels,
    target: &'a str,
    found: Option<LevelFilter>,
}

impl tracing_core::field::Visit for DpidLevel<'_> {
    fn record_debug(&mut self, field: &tracing_core::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "dpid" {
            self.found = Some(self.levels.level_for(self.target, &format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &tracing_core::Field, value: &str) {
        if field.name() == "dpid" {
            self.found = Some(self.levels.level_for(self.target, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_parse_back_with_every_field() {
        let nasty = "quote \" backslash \\ newline \n tab \t bell \u{7} é";
        let line = record(
            Format::Json,
            "WARN",
            "pg/s/c1",
            Kind::Connection,
            Some("pg"),
            nasty,
            &[
                ("n", serde_json::Value::from(3)),
                ("ok", serde_json::Value::from(true)),
                ("text", serde_json::Value::from(nasty)),
            ],
        );
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(v["message"], nasty);
        assert_eq!(v["fields"]["text"], nasty);
        assert_eq!(v["fields"]["n"], 3);
        assert_eq!(v["fields"]["ok"], true);
        assert_eq!(v["dpid"], "pg/s/c1");
        assert_eq!(v["kind"], "connection");
        assert_eq!(v["tenant"], "pg");
        assert_eq!(v["level"], "WARN");
        assert!(v["ops"].as_array().is_some_and(|o| !o.is_empty()));
        let none = record(
            Format::Json,
            "INFO",
            "supervise",
            Kind::Supervisor,
            None,
            "x",
            &[],
        );
        let v: serde_json::Value = serde_json::from_str(&none).expect("valid JSON");
        assert!(v["tenant"].is_null());
    }
}
