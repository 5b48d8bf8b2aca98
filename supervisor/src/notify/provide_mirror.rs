//! The mirror and its sinks as components: state, config, self-tests, and the runtime
//! capture change (`ctl capture`). The sinks' self-tests are answered by the stations'
//! own threads, so a slow station never holds the loop.

#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::provider::Provider;
use super::Supervisor;
use crate::control::Failure;
use crate::diag::{Dpid, Kind};
use crate::mirror::overrides::Target;
use crate::mirror::policy::{Capture, Cidr};
use crate::mirror::record::{Origin, Record, What};
use crate::mirror::triggers::Condition;
use crate::mirror::Shared;

/// `TENANT/@mirror`.
pub(super) struct MirrorView(pub Shared);

fn capture_text(c: Capture) -> String {
    c.to_string()
}

impl Provider for MirrorView {
    fn state(&mut self) -> Value {
        let m = self.0.lock();
        let now = m.now();
        let t = m.totals;
        json!({
            "connections_watched": m.watched(),
            "messages_mirrored": t.messages,
            "captured_bytes": t.captured_bytes,
            "original_bytes": t.original_bytes,
            "redacted_bytes": t.redacted,
            "policy_hits": m.policy_hits,
            "trigger_firings": m.triggers.fired,
            "overrides": m.overrides.describe(now, |i| m.stream_name(i).unwrap_or("?").to_owned()),
            "sinks": m.sinks.iter().map(|s| {
                let (written, dropped, errors) = s.totals();
                json!({ "dpid": s.dpid.as_str(), "written": written, "dropped": dropped, "errors": errors })
            }).collect::<Vec<_>>(),
        })
    }

    fn config(&self) -> Value {
        let m = self.0.lock();
        let c = m.config();
        let stream = |i: &usize| m.stream_name(*i).unwrap_or("?").to_owned();
        let sink = |i: &usize| c.sinks.get(*i).map_or("?".to_owned(), |s| s.name.clone());
        let policies: Vec<Value> = c.policies.iter().map(|p| {
            let w = &p.when;
            json!({
                "streams": w.streams.iter().map(stream).collect::<Vec<_>>(),
                "direction": w.origin.map(|o| match o { Origin::Client => "from_client", Origin::Server => "to_client" }),
                "messages": w.messages, "peers": w.peers.iter().map(Cidr::to_string).collect::<Vec<_>>(),
                "local_ports": w.local_ports, "users": w.users, "databases": w.databases,
                "application_names": w.application_names, "min_size": w.min_size,
                "max_size": w.max_size, "authenticated": w.authenticated,
                "capture": capture_text(p.capture),
                "sinks": p.sinks.iter().map(sink).collect::<Vec<_>>(),
            })
        }).collect();
        let triggers: Vec<Value> = c.triggers.iter().map(|t| {
            let condition = match &t.condition {
                Condition::Rate { counted, above, window, hold } => json!({
                    "kind": "rate", "count": format!("{counted:?}").to_lowercase(), "above": above,
                    "window_ms": window.as_millis() as u64, "for_ms": hold.as_millis() as u64 }),
                Condition::UnknownPeer { known, unseen_for } => json!({
                    "kind": "unknown_peer", "known": known.iter().map(Cidr::to_string).collect::<Vec<_>>(),
                    "unseen_for_ms": unseen_for.map(|d| d.as_millis() as u64) }),
                // The marker's text is configuration, not tenant data.
                Condition::Marker { marker, origin } => json!({
                    "kind": "marker", "marker": format!("{marker:?}"),
                    "direction": origin.map(|o| o.as_str()) }),
            };
            json!({ "condition": condition, "capture": capture_text(t.capture),
                    "streams": t.streams.iter().map(stream).collect::<Vec<_>>(),
                    "sinks": t.sinks.iter().map(sink).collect::<Vec<_>>() })
        }).collect();
        json!({
            "policies": policies, "combine": "first matching policy; overrides replace; triggers raise; redaction caps",
            "triggers": triggers, "redact": c.redact,
            "sinks": m.sinks.iter().map(|s| json!({ "dpid": s.dpid.as_str(), "stations": s.config() })).collect::<Vec<_>>(),
        })
    }

    fn selftests(&self) -> Vec<&'static str> {
        vec!["redaction"]
    }

    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "redaction").then(|| self.0.lock().check_redaction())
    }
}

/// `TENANT/@sink/NAME`.
pub(super) struct SinkView(pub Shared, pub usize);

impl Provider for SinkView {
    fn state(&mut self) -> Value {
        self.0.lock().sinks[self.1].state()
    }
    fn config(&self) -> Value {
        let m = self.0.lock();
        let s = &m.sinks[self.1];
        json!({ "name": s.name, "stations": s.config() })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["write"]
    }
    fn selftest(&mut self, _name: &str) -> Option<Result<String, String>> {
        // Answered by the stations' threads: see `Supervisor::sink_selftest`.
        None
    }
}

type Reply = std::sync::mpsc::SyncSender<Result<Value, Failure>>;
/// Each station's self-test answer, once it has come.
type Answers = Arc<Mutex<Vec<Option<Result<String, String>>>>>;

impl Supervisor {
    /// The mirror's sink known as `dpid`.
    pub(super) fn sink_index(&self, dpid: &Dpid) -> Option<(Shared, usize)> {
        let shared = self.components.mirror.clone()?;
        let i = shared.lock().sinks.iter().position(|s| &s.dpid == dpid)?;
        Some((shared, i))
    }

    /// Runs a sink's self-test: each station writes a test record; the answer is sent
    /// when all have replied, from their threads.
    pub(super) fn sink_selftest(&self, dpid: &Dpid, name: Option<&str>, reply: Reply) {
        if let Some(n) = name.filter(|n| *n != "write") {
            let _ = reply.try_send(Err(Failure::new(
                "unknown_selftest",
                format!("{dpid} has no self-test {n:?} (it has: [\"write\"])"),
            )));
            return;
        }
        let Some((shared, i)) = self.sink_index(dpid) else {
            let _ = reply.try_send(Err(Failure::new(
                "unknown_dpid",
                format!("no component {dpid} here (`supervise ctl list` shows them)"),
            )));
            return;
        };
        let m = shared.lock();
        let sink = &m.sinks[i];
        let record = Arc::new(Record {
            time_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            tenant: m.tenant().into(),
            stream: "selftest".into(),
            conn: dpid.shared(),
            serial: 0,
            client: "127.0.0.1:9".parse().expect("an address"),
            server: "127.0.0.1:9".parse().expect("an address"),
            what: What::Message {
                kind: "SelfTest",
                origin: Origin::Client,
                original_len: 9,
                offset: 0,
                reason: "selftest".into(),
            },
            data: b"self-test".to_vec(),
        });
        let stations = sink.config().as_array().map_or(1, Vec::len);
        let results: Answers = Arc::new(Mutex::new(vec![None; stations]));
        let dpid_text = dpid.to_string();
        let reply = Mutex::new(Some(reply));
        sink.test(record, move |station, result| {
            let mut all = results.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(slot) = all.get_mut(station) {
                *slot = Some(result);
            }
            if all.iter().all(Option::is_some) {
                let items: Vec<Value> = all.iter().flatten().enumerate().map(|(k, r)| match r {
                    Ok(d) => json!({ "name": format!("write (station {k})"), "passed": true, "detail": d }),
                    Err(d) => json!({ "name": format!("write (station {k})"), "passed": false, "detail": d }),
                }).collect();
                let passed = all.iter().flatten().all(Result::is_ok);
                if let Some(reply) = reply.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = reply.try_send(Ok(json!({ "dpid": dpid_text, "passed": passed, "results": items })));
                }
            }
        });
    }

    /// `ctl capture`: sets or resets a runtime capture change.
    pub(super) fn set_capture(
        &mut self,
        dpid: &str,
        peer: Option<&str>,
        capture: &str,
        for_ms: Option<u64>,
    ) -> Result<Value, Failure> {
        let bad = |m: String| Failure::new("bad_request", m);
        let Some(shared) = self.components.mirror.clone() else {
            return Err(Failure::new(
                "not_offered",
                "this tenant's profile has no [mirror] (no sinks to write to)",
            ));
        };
        let (parsed, kind) = Dpid::parse(dpid).map_err(bad)?;
        if parsed.tenant_name() != self.components.tenant {
            return Err(Failure::new(
                "unknown_dpid",
                format!("no component {dpid} here"),
            ));
        }
        let target = match (kind, peer) {
            (Kind::Tenant, None) => Target::Tenant,
            (Kind::Tenant, Some(p)) => Target::Peer(Cidr::parse(p).map_err(bad)?),
            (Kind::Stream, None) => Target::Stream(
                self.components
                    .streams
                    .iter()
                    .position(|s| s.dpid == parsed)
                    .ok_or_else(|| {
                        Failure::new("unknown_dpid", format!("no stream {dpid} here"))
                    })?,
            ),
            (Kind::Connection, None) => {
                if self.connection(&parsed).is_none() {
                    return Err(Failure::new(
                        "unknown_dpid",
                        format!("no live connection {dpid} here"),
                    ));
                }
                Target::Connection(parsed.clone())
            }
            (_, Some(_)) => return Err(bad("--peer goes with the tenant's DPID".into())),
            (k, None) => {
                return Err(bad(format!(
                    "a capture is set on a tenant, stream, connection or peer, not a {k}"
                )))
            }
        };
        let capture = match capture {
            "reset" => None,
            other => Some(Capture::parse(other).map_err(bad)?),
        };
        if capture.is_none() && for_ms.is_some() {
            return Err(bad("reset takes no duration".into()));
        }
        let removed =
            shared
                .lock()
                .set_override(target.clone(), capture, for_ms.map(Duration::from_millis));
        if capture.is_none() && !removed {
            return Err(bad(format!(
                "no capture override on {dpid}{}",
                peer.map(|p| format!(" peer {p}")).unwrap_or_default()
            )));
        }
        tracing::info!(target: Kind::Mirror.target(), dpid = %Dpid::singleton(&self.components.tenant, Kind::Mirror), target_dpid = dpid, peer, capture = capture.map_or("reset".to_owned(), |c| c.to_string()), for_ms, "capture changed");
        let target = match &target {
            Target::Tenant => format!("tenant {dpid}"),
            Target::Stream(_) => format!("stream {dpid}"),
            Target::Peer(net) => format!("peer {net} of {dpid}"),
            Target::Connection(_) => format!("connection {dpid}"),
        };
        let capture = capture.map_or("reset".to_owned(), |c| c.to_string());
        Ok(json!({ "target": target, "capture": capture, "for_ms": for_ms }))
    }
}
