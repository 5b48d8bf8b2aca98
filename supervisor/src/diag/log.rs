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
        self.levels.base_for(meta.target()) >= *meta.level()
    }
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
        Some(self.levels.max())
    }

    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        if !self.levels.has_overrides() {
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
        Format::Json => serde_json::json!({
            "time": now_rfc3339(),
            "level": level,
            "dpid": dpid,
            "kind": kind.name(),
            "tenant": tenant,
            "message": message,
            "fields": serde_json::Map::from_iter(fields.iter().map(|(k, v)| (k.to_string(), v.clone()))),
            "ops": super::ops_of(kind),
        })
        .to_string(),
    };
    line.push('\n');
    line
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
