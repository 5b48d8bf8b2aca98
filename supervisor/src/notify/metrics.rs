//! Counters the loop keeps for itself (notifications serviced and how long each family
//! took), and the OpenMetrics text of every component, labeled by DPID.
//!
//! Service time is taken around each handler and its answer: two clock reads per
//! notification (vDSO, tens of nanoseconds) and a bucket increment.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::time::Duration;

use super::route::Family;
use super::table::SocketKind;
use super::Supervisor;
use crate::diag::Kind;

/// Upper bounds of the service-time buckets, in seconds.
const BUCKETS: [f64; 10] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.01, 0.1,
];

/// One family's service times.
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Per-family counts and service times.
#[derive(Debug)]
pub struct ServiceStats {
    families: Vec<Histogram>,
    /// Notifications answered without a family (unidentified thread, continue-all).
    pub other: u64,
}

impl Default for ServiceStats {
    fn default() -> ServiceStats {
        ServiceStats {
            families: vec![Histogram::default(); Family::ALL.len()],
            other: 0,
        }
    }
}

impl ServiceStats {
    /// Records one serviced notification.
    pub(super) fn record(&mut self, family: Family, took: Duration) {
        let h = &mut self.families[family.index()];
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += secs;
    }

    /// Notifications serviced in all.
    pub fn total(&self) -> u64 {
        self.families.iter().map(|h| h.count).sum::<u64>() + self.other
    }
}

/// Escapes a label value (backslash, quote, newline).
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The mirror's counters, and each station's of each sink.
fn mirror_metrics(w: &mut String, m: &crate::mirror::Mirror) {
    let me = label(&crate::diag::Dpid::singleton(m.tenant(), Kind::Mirror).to_string());
    let t = m.totals;
    for (name, help, value) in [
        (
            "supervise_mirror_messages",
            "Messages mirrored (queued to a station or dropped by a full queue).",
            t.messages,
        ),
        (
            "supervise_mirror_captured_bytes",
            "Bytes captured of mirrored messages.",
            t.captured_bytes,
        ),
        (
            "supervise_mirror_original_bytes",
            "Full lengths of mirrored messages.",
            t.original_bytes,
        ),
        (
            "supervise_mirror_redacted_bytes",
            "Bytes a capture asked for that structural redaction withheld.",
            t.redacted,
        ),
    ] {
        let _ = writeln!(
            w,
            "# TYPE {name} counter\n# HELP {name} {help}\n{name}_total{{dpid=\"{me}\"}} {value}"
        );
    }
    let _ = writeln!(w, "# TYPE supervise_mirror_trigger_firings counter\n# HELP supervise_mirror_trigger_firings Times each trigger fired.");
    for (i, n) in m.triggers.fired.iter().enumerate() {
        let _ = writeln!(
            w,
            "supervise_mirror_trigger_firings_total{{dpid=\"{me}\",trigger=\"{i}\"}} {n}"
        );
    }
    let stations: Vec<_> = m
        .sinks
        .iter()
        .flat_map(|s| {
            s.per_station()
                .into_iter()
                .map(move |p| (label(s.dpid.as_str()), p))
        })
        .collect();
    for (name, help, pick) in [
        ("supervise_sink_written", "Records a station wrote.", 1usize),
        (
            "supervise_sink_dropped",
            "Records dropped: the station's queue was full or it was down.",
            2,
        ),
        (
            "supervise_sink_errors",
            "Failed connects and writes of a station.",
            3,
        ),
    ] {
        let _ = writeln!(w, "# TYPE {name} counter\n# HELP {name} {help}");
        for (dpid, (i, written, dropped, errors, _)) in &stations {
            let v = [0, *written, *dropped, *errors][pick];
            let _ = writeln!(w, "{name}_total{{dpid=\"{dpid}\",station=\"{i}\"}} {v}");
        }
    }
    let _ = writeln!(
        w,
        "# TYPE supervise_sink_up gauge\n# HELP supervise_sink_up Whether a station is connected."
    );
    for (dpid, (i, _, _, _, up)) in &stations {
        let _ = writeln!(
            w,
            "supervise_sink_up{{dpid=\"{dpid}\",station=\"{i}\"}} {}",
            u8::from(*up)
        );
    }
}

/// The OpenMetrics exposition of this supervisor's components.
pub(super) fn render(sv: &Supervisor) -> String {
    let c = &sv.components;
    let me = label(c.singleton(Kind::Supervisor).as_str());
    let mut out = String::new();
    let w = &mut out;

    let _ = writeln!(w, "# TYPE supervise_notifications counter");
    let _ = writeln!(
        w,
        "# HELP supervise_notifications Notifications serviced, by syscall family."
    );
    for family in Family::ALL {
        let h = &c.stats.families[family.index()];
        let _ = writeln!(
            w,
            "supervise_notifications_total{{dpid=\"{me}\",family=\"{}\"}} {}",
            family.name(),
            h.count
        );
    }
    let _ = writeln!(
        w,
        "supervise_notifications_total{{dpid=\"{me}\",family=\"other\"}} {}",
        c.stats.other
    );

    let _ = writeln!(w, "# TYPE supervise_service_seconds histogram");
    let _ = writeln!(w, "# HELP supervise_service_seconds Time from receiving a notification to answering it, by family.");
    let _ = writeln!(w, "# UNIT supervise_service_seconds seconds");
    for family in Family::ALL {
        let h = &c.stats.families[family.index()];
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let _ = writeln!(w, "supervise_service_seconds_bucket{{dpid=\"{me}\",family=\"{}\",le=\"{bound}\"}} {cumulative}", family.name());
        }
        let _ = writeln!(
            w,
            "supervise_service_seconds_bucket{{dpid=\"{me}\",family=\"{}\",le=\"+Inf\"}} {}",
            family.name(),
            h.count
        );
        let _ = writeln!(
            w,
            "supervise_service_seconds_count{{dpid=\"{me}\",family=\"{}\"}} {}",
            family.name(),
            h.count
        );
        let _ = writeln!(
            w,
            "supervise_service_seconds_sum{{dpid=\"{me}\",family=\"{}\"}} {}",
            family.name(),
            h.sum
        );
    }

    let _ = writeln!(w, "# TYPE supervise_parked_calls gauge");
    let _ = writeln!(
        w,
        "# HELP supervise_parked_calls Tenant calls waiting in the supervisor."
    );
    let _ = writeln!(
        w,
        "supervise_parked_calls{{dpid=\"{me}\"}} {}",
        sv.waiters.len()
    );

    let _ = writeln!(w, "# TYPE supervise_log_lines_dropped counter");
    let _ = writeln!(w, "# HELP supervise_log_lines_dropped Log lines dropped because the output was not keeping up.");
    let dropped = crate::diag::get().map_or(0, |d| d.log.dropped());
    let _ = writeln!(
        w,
        "supervise_log_lines_dropped_total{{dpid=\"{me}\"}} {dropped}"
    );

    let _ = writeln!(w, "# TYPE supervise_connections_opened counter");
    let _ = writeln!(
        w,
        "# HELP supervise_connections_opened Tracked connections opened, by stream."
    );
    for s in &c.streams {
        let _ = writeln!(
            w,
            "supervise_connections_opened_total{{dpid=\"{}\"}} {}",
            label(s.dpid.as_str()),
            s.opened
        );
    }
    let _ = writeln!(w, "# TYPE supervise_refusals_unattributed counter");
    let _ = writeln!(w, "# HELP supervise_refusals_unattributed Statements refused because they could not be proven to keep every rule (no single rule caused it).");
    for s in &c.streams {
        let _ = writeln!(
            w,
            "supervise_refusals_unattributed_total{{dpid=\"{}\"}} {}",
            label(s.dpid.as_str()),
            s.unattributed
        );
    }
    let _ = writeln!(w, "# TYPE supervise_rule_hits counter");
    let _ = writeln!(w, "# HELP supervise_rule_hits Decisions a rule caused (refusals, dropped sessions, rewrites).");
    for s in &c.streams {
        for (rule, hits) in s.rules.iter().zip(&s.hits) {
            let _ = writeln!(
                w,
                "supervise_rule_hits_total{{dpid=\"{}\"}} {hits}",
                label(rule.as_str())
            );
        }
    }
    if let Some(guard) = &sv.guard {
        let _ = writeln!(w, "# TYPE supervise_label_denials counter");
        let _ = writeln!(
            w,
            "# HELP supervise_label_denials Calls the label enforcer refused."
        );
        let _ = writeln!(
            w,
            "supervise_label_denials_total{{dpid=\"{}\"}} {}",
            label(c.singleton(Kind::Label).as_str()),
            guard.denials
        );
    }

    if let Some(mirror) = &c.mirror {
        mirror_metrics(w, &mirror.lock());
    }

    let mut conns: Vec<_> = sv
        .table
        .sockets
        .values()
        .filter_map(|t| match &t.kind {
            SocketKind::Stream(s) => Some(s),
            _ => None,
        })
        .collect();
    conns.sort_by(|a, b| a.dpid.cmp(&b.dpid));
    let _ = writeln!(w, "# TYPE supervise_connection_bytes counter");
    let _ = writeln!(w, "# HELP supervise_connection_bytes Bytes of a live connection by direction and stage (taken, emitted, delivered, dropped).");
    for s in &conns {
        for (direction, d) in [
            ("peer_to_tenant", transforms::Direction::Inbound),
            ("tenant_to_peer", transforms::Direction::Outbound),
        ] {
            let t = s.totals(d);
            for (stage, v) in [
                ("taken", t.taken),
                ("emitted", t.emitted),
                ("delivered", t.delivered),
                ("dropped", t.dropped),
            ] {
                let _ = writeln!(w, "supervise_connection_bytes_total{{dpid=\"{}\",direction=\"{direction}\",stage=\"{stage}\"}} {v}", label(s.dpid.as_str()));
            }
        }
    }
    let _ = writeln!(w, "# TYPE supervise_connection_messages counter");
    let _ = writeln!(w, "# HELP supervise_connection_messages Whole messages framed on a live connection, by direction.");
    for s in &conns {
        for (direction, d) in [
            ("peer_to_tenant", transforms::Direction::Inbound),
            ("tenant_to_peer", transforms::Direction::Outbound),
        ] {
            let _ = writeln!(
                w,
                "supervise_connection_messages_total{{dpid=\"{}\",direction=\"{direction}\"}} {}",
                label(s.dpid.as_str()),
                s.totals(d).messages
            );
        }
    }
    out.push_str("# EOF\n");
    out
}
