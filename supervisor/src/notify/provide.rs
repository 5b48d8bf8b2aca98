//! The provider interface: every component answers `state`, `config`, `selftests` and
//! `selftest NAME` about itself, found by its DPID. The loop calls this between
//! notifications (a control thread asks, see `control::bridge`), so a view reads the
//! engine's state as it is, and a request never races a handler.

#![forbid(unsafe_code)]

use std::os::fd::AsFd;

use serde_json::{json, Value};
use transforms::Direction;

use super::table::{Inode, SocketKind};
use super::Supervisor;
use crate::control::{Failure, Op};
use crate::diag::{Dpid, Kind};

use super::provider::Provider;

impl Supervisor {
    /// Serves one control operation.
    pub(super) fn serve_control(&mut self, op: Op) -> Result<Value, Failure> {
        match op {
            Op::List => Ok(self.list()),
            Op::State { dpid } => Ok(self.provider(&dpid)?.state()),
            Op::Config { dpid } => Ok(self.provider(&dpid)?.config()),
            Op::Selftests { dpid } => Ok(json!(self.provider(&dpid)?.selftests())),
            Op::Selftest { dpid, name } => self.run_selftests(&dpid, name.as_deref()),
            Op::Metrics => Ok(Value::String(super::metrics::render(self))),
            // Answered by the keyring on the control thread; never queued here.
            Op::Node | Op::Signed { .. } => Err(Failure::new(
                "not_offered",
                "signed requests are answered by the keyring",
            )),
        }
    }

    /// Every component of this process: DPID, kind, operations.
    fn list(&self) -> Value {
        let c = &self.components;
        let entry = |dpid: &Dpid, kind: Kind| json!({ "dpid": dpid.as_str(), "kind": kind.name(), "ops": crate::diag::ops_of(kind) });
        let mut out = vec![entry(&Dpid::tenant(&c.tenant), Kind::Tenant)];
        for kind in self.singletons() {
            out.push(entry(&c.singleton(kind), kind));
        }
        if let Some(mirror) = &c.mirror {
            for sink in &mirror.lock().sinks {
                out.push(entry(&sink.dpid, Kind::Sink));
            }
        }
        for stream in &c.streams {
            out.push(entry(&stream.dpid, Kind::Stream));
            for rule in &stream.rules {
                out.push(entry(rule, Kind::Rule));
            }
        }
        let mut conns: Vec<&Dpid> = self
            .table
            .sockets
            .values()
            .filter_map(|t| match &t.kind {
                SocketKind::Stream(s) => Some(&s.dpid),
                _ => None,
            })
            .collect();
        conns.sort();
        out.extend(conns.into_iter().map(|d| entry(d, Kind::Connection)));
        Value::Array(out)
    }

    /// The singletons this tenant has.
    fn singletons(&self) -> Vec<Kind> {
        let mut kinds = vec![Kind::Supervisor, Kind::Registry, Kind::Control];
        if self.guard.is_some() {
            kinds.push(Kind::Label);
        }
        if self.launched.landlock.is_some() {
            kinds.push(Kind::Landlock);
        }
        if self.profile.limits.is_some() {
            kinds.push(Kind::Limits);
        }
        if !self.outputs.captured.is_empty() {
            kinds.push(Kind::Output);
        }
        if self.components.mirror.is_some() {
            kinds.push(Kind::Mirror);
        }
        if self.keyring.is_some() {
            kinds.push(Kind::Keyring);
        }
        kinds
    }

    /// The provider for `dpid`, or why there is none.
    fn provider(&mut self, dpid: &str) -> Result<Box<dyn Provider + '_>, Failure> {
        let (dpid, kind) = Dpid::parse(dpid).map_err(|m| Failure::new("bad_request", m))?;
        let unknown = || {
            Failure::new(
                "unknown_dpid",
                format!("no component {dpid} here (`supervise ctl list` shows them)"),
            )
        };
        if dpid.tenant_name() != self.components.tenant {
            return Err(unknown());
        }
        match kind {
            Kind::Tenant => Ok(Box::new(TenantView(self))),
            k if k.is_singleton() && !self.singletons().contains(&k) => Err(unknown()),
            Kind::Supervisor => Ok(Box::new(SupervisorView(self))),
            Kind::Registry => Ok(Box::new(RegistryView(self))),
            Kind::Control => Ok(Box::new(ControlView(self))),
            Kind::Label => Ok(Box::new(LabelView(self))),
            Kind::Landlock => Ok(Box::new(LandlockView(self))),
            Kind::Limits => Ok(Box::new(LimitsView(self))),
            Kind::Stream => {
                let index = self.stream_index(&dpid).ok_or_else(unknown)?;
                Ok(Box::new(StreamView { sv: self, index }))
            }
            Kind::Rule => {
                let (stream, rule) = self.rule_index(&dpid).ok_or_else(unknown)?;
                Ok(Box::new(RuleView {
                    sv: self,
                    stream,
                    rule,
                }))
            }
            Kind::Connection => {
                if let Some(inode) = self.connection(&dpid) {
                    return Ok(Box::new(ConnectionView { sv: self, inode }));
                }
                let released = self.components.released.iter().find(|r| r.dpid == dpid);
                let released = released.cloned().ok_or_else(unknown)?;
                Ok(Box::new(Released(released)))
            }
            Kind::Output => Ok(Box::new(OutputView(self))),
            Kind::Mirror => Ok(Box::new(super::provide_mirror::MirrorView(
                self.components.mirror.clone().ok_or_else(unknown)?,
            ))),
            Kind::Sink => {
                let (shared, i) = self.sink_index(&dpid).ok_or_else(unknown)?;
                Ok(Box::new(super::provide_mirror::SinkView(shared, i)))
            }
            Kind::Keyring => Ok(Box::new(super::provide_keyring::KeyringView(
                self.keyring.clone().ok_or_else(unknown)?,
            ))),
        }
    }

    fn stream_index(&self, dpid: &Dpid) -> Option<usize> {
        self.components.streams.iter().position(|s| &s.dpid == dpid)
    }

    fn rule_index(&self, dpid: &Dpid) -> Option<(usize, usize)> {
        self.components
            .streams
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.rules.iter().position(|r| r == dpid).map(|j| (i, j)))
    }

    /// The live connection known as `dpid`.
    pub(super) fn connection(&self, dpid: &Dpid) -> Option<Inode> {
        self.table
            .sockets
            .iter()
            .find_map(|(&inode, t)| match &t.kind {
                SocketKind::Stream(s) if &s.dpid == dpid => Some(inode),
                _ => None,
            })
    }

    fn run_selftests(&mut self, dpid: &str, name: Option<&str>) -> Result<Value, Failure> {
        let mut provider = self.provider(dpid)?;
        let names = match name {
            Some(n) => vec![n.to_owned()],
            None => provider
                .selftests()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        let mut results = Vec::new();
        let mut passed = true;
        for name in names {
            let outcome = provider.selftest(&name).ok_or_else(|| {
                Failure::new(
                    "unknown_selftest",
                    format!(
                        "{dpid} has no self-test {name:?} (it has: {:?})",
                        provider.selftests()
                    ),
                )
            })?;
            passed &= outcome.is_ok();
            results.push(match outcome {
                Ok(detail) => json!({ "name": name, "passed": true, "detail": detail }),
                Err(detail) => json!({ "name": name, "passed": false, "detail": detail }),
            });
        }
        Ok(json!({ "dpid": dpid, "passed": passed, "results": results }))
    }

    pub(super) fn set_level(
        &mut self,
        dpid: &str,
        level: &str,
        for_ms: Option<u64>,
    ) -> Result<Value, Failure> {
        // Only components that exist (a typo must not be "ok").
        drop(self.provider(dpid)?);
        let Some(diag) = crate::diag::get() else {
            return Err(Failure::new("internal", "diagnostics are not initialised"));
        };
        if level.eq_ignore_ascii_case("reset") {
            let had = diag.levels.clear(dpid);
            return Ok(json!({ "dpid": dpid, "level": "reset", "had_override": had }));
        }
        let parsed =
            crate::diag::levels::parse_level(level).map_err(|m| Failure::new("bad_level", m))?;
        if for_ms == Some(0) {
            return Err(Failure::new(
                "bad_level",
                "a duration of 0 would revert at once",
            ));
        }
        let duration = for_ms.map(std::time::Duration::from_millis);
        diag.levels.set(dpid, parsed, duration);
        tracing::info!(target: Kind::Control.target(), target_dpid = dpid, level = %parsed, for_ms, "log level changed");
        Ok(json!({ "dpid": dpid, "level": parsed.to_string(), "reverts_in_ms": for_ms }))
    }
}

struct TenantView<'a>(&'a mut Supervisor);

impl Provider for TenantView<'_> {
    fn state(&mut self) -> Value {
        let sv = &*self.0;
        let ids = sv.profile.ids.as_ref();
        json!({
            "tenant": sv.profile.tenant,
            "pid": sv.launched.tenant_pid,
            "init_stub_pid": sv.launched.stub_pid,
            "processes": sv.table.tenants.process_ids(),
            "threads": sv.table.tenants.thread_count(),
            "uid": ids.map(|i| i.uid),
            "gid": ids.map(|i| i.gid),
            "label": sv.guard.as_ref().map(|g| g.entry().label.to_string()),
            "landlock": sv.launched.landlock.map(|l| l.to_string()),
            "confined": sv.guard.is_some(),
        })
    }
    fn config(&self) -> Value {
        let p = &self.0.profile;
        json!({
            "profile": p.source,
            "command": p.command,
            // Names only: values may hold credentials, and whether they do is not
            // something to guess from a name.
            "env": p.env.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "confinement": p.confinement.as_ref().map(|c| format!("{c:?}")),
            "limits": p.limits.as_ref().map(|l| format!("{l:?}")),
        })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["alive"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "alive").then(|| {
            let pid = self.0.launched.tenant_pid;
            match std::fs::metadata(format!("/proc/{pid}")) {
                Ok(_) => Ok(format!("tenant process {pid} is running")),
                Err(e) => Err(format!("tenant process {pid}: {e}")),
            }
        })
    }
}

struct SupervisorView<'a>(&'a mut Supervisor);

impl Provider for SupervisorView<'_> {
    fn state(&mut self) -> Value {
        let sv = &*self.0;
        json!({
            "pid": std::process::id(),
            "uptime_s": sv.components.started.elapsed().as_secs_f64(),
            "notifications": sv.components.stats.total(),
            "parked_calls": sv.waiters.len(),
            "tracked_sockets": sv.table.sockets.len(),
            "continue_all": sv.continue_all,
            "log_lines_dropped": crate::diag::get().map(|d| d.log.dropped()),
            "log_lines_written": crate::diag::get().map(|d| d.log.written()),
        })
    }
    fn config(&self) -> Value {
        json!({ "continue_all": self.0.continue_all, "spool_budget": self.0.spool_budget })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["listener-valid"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "listener-valid").then(|| {
            match rustix::io::fcntl_getfd(self.0.launched.listener.as_fd()) {
                Ok(_) => Ok("the seccomp listener descriptor is open".into()),
                Err(e) => Err(format!("the seccomp listener descriptor: {e}")),
            }
        })
    }
}

struct RegistryView<'a>(&'a mut Supervisor);

impl Provider for RegistryView<'_> {
    fn state(&mut self) -> Value {
        let t = &self.0.table;
        let (tracked_fds, not_sockets) = t.cache_sizes();
        json!({
            "tracked_sockets": t.sockets.len(),
            "tracked_descriptors": tracked_fds,
            "known_non_sockets": not_sockets,
            "processes": t.tenants.process_ids().len(),
            "threads": t.tenants.thread_count(),
            "fd_tables": t.tenants.files_in_use(),
            "deferred_releases": self.0.deferred.len(),
            "fd_reserve_full": t.reserve.is_full(),
        })
    }
    fn config(&self) -> Value {
        json!({})
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["fd-reserve"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "fd-reserve").then(|| {
            let reserve = &mut self.0.table.reserve;
            if reserve.is_full() || reserve.refill() || reserve.is_full() {
                Ok("the spare descriptors for fd exhaustion are in place".into())
            } else {
                Err("the fd reserve cannot be filled: the supervisor is at its fd limit".into())
            }
        })
    }
}

struct ControlView<'a>(&'a mut Supervisor);

impl Provider for ControlView<'_> {
    fn state(&mut self) -> Value {
        json!({ "socket": self.0.control_path.as_ref().map(|p| p.display().to_string()) })
    }
    fn config(&self) -> Value {
        json!({ "protocol": crate::control::protocol::VERSION, "max_request": crate::control::protocol::MAX_REQUEST })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["socket-present"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        use std::os::unix::fs::FileTypeExt;
        (name == "socket-present").then(|| match &self.0.control_path {
            Some(path) => match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_socket() => Ok(format!("{} is a socket", path.display())),
                Ok(_) => Err(format!("{} is not a socket", path.display())),
                Err(e) => Err(format!("{}: {e}", path.display())),
            },
            None => Err("no control socket".into()),
        })
    }
}

struct LabelView<'a>(&'a mut Supervisor);

impl Provider for LabelView<'_> {
    fn state(&mut self) -> Value {
        self.0.guard.as_ref().map_or(Value::Null, |g| g.state())
    }
    fn config(&self) -> Value {
        self.0.guard.as_ref().map_or(Value::Null, |g| g.config())
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["foreign-label-refused"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        let guard = self.0.guard.as_mut()?;
        (name == "foreign-label-refused").then(|| guard.selftest_foreign_label())
    }
}

struct LandlockView<'a>(&'a mut Supervisor);

impl Provider for LandlockView<'_> {
    fn state(&mut self) -> Value {
        json!({ "status": self.0.launched.landlock.map(|l| l.to_string()) })
    }
    fn config(&self) -> Value {
        let c = self.0.profile.confinement.as_ref();
        json!({
            "home": c.and_then(|c| c.home.as_ref()).map(|p| p.display().to_string()),
            "read_only": c.map(|c| c.read_only.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()),
        })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["fully-enforced"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        use crate::launch::landlock::Enforcement;
        (name == "fully-enforced").then(|| match self.0.launched.landlock {
            Some(Enforcement::Full) => Ok("the tenant reported its ruleset fully enforced".into()),
            Some(other) => Err(format!("the tenant reported its ruleset {other}")),
            None => Err("no Landlock status was reported".into()),
        })
    }
}

struct LimitsView<'a>(&'a mut Supervisor);

impl Provider for LimitsView<'_> {
    fn state(&mut self) -> Value {
        json!({
            "spool_budget": self.0.spool_budget,
            "spooled": self.0.table.spooled_total(),
        })
    }
    fn config(&self) -> Value {
        json!({ "limits": self.0.profile.limits.as_ref().map(|l| format!("{l:?}")) })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["spool-within-budget"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        (name == "spool-within-budget").then(|| {
            let spooled = self.0.table.spooled_total();
            match self.0.spool_budget {
                Some(budget) if spooled > budget => Err(format!(
                    "{spooled} bytes spooled, over the budget of {budget}"
                )),
                Some(budget) => Ok(format!("{spooled} of {budget} bytes spooled")),
                None => Ok(format!(
                    "{spooled} bytes spooled; no memory limit, no budget"
                )),
            }
        })
    }
}

struct StreamView<'a> {
    sv: &'a mut Supervisor,
    index: usize,
}

impl StreamView<'_> {
    /// The tracked listeners of this stream, and how many tenant descriptors hold each.
    fn listeners(&self) -> Vec<(Inode, usize)> {
        self.sv
            .table
            .sockets
            .iter()
            .filter_map(|(&inode, t)| match &t.kind {
                SocketKind::Listener {
                    config: Some(c), ..
                } if *c == self.index => {
                    Some((inode, self.sv.table.holds(inode).map_or(0, |(h, _)| h)))
                }
                _ => None,
            })
            .collect()
    }
}

impl Provider for StreamView<'_> {
    fn state(&mut self) -> Value {
        let c = &self.sv.components.streams[self.index];
        let mut conns: Vec<&Dpid> = self
            .sv
            .table
            .sockets
            .values()
            .filter_map(|t| match &t.kind {
                SocketKind::Stream(s) if s.config == self.index => Some(&s.dpid),
                _ => None,
            })
            .collect();
        conns.sort();
        json!({
            "name": self.sv.profile.streams[self.index].name,
            "connections": conns.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            "opened": c.opened,
            "released": c.released,
            "listeners": self.listeners().iter().map(|(i, h)| json!({"inode": i, "tenant_descriptors": h})).collect::<Vec<_>>(),
            "refusals_unattributed": c.unattributed,
        })
    }
    fn config(&self) -> Value {
        let s = &self.sv.profile.streams[self.index];
        json!({
            "name": s.name,
            "selector": format!("{:?}", s.selector),
            "framer": format!("{:?}", s.framer),
            "max_message": s.max_message,
            "on_error": format!("{:?}", s.on_error),
            "on_partial_close": format!("{:?}", s.on_partial_close),
            "rules": self.sv.components.streams[self.index].rules.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        })
    }
    fn selftests(&self) -> Vec<&'static str> {
        match self.sv.profile.streams[self.index].selector {
            crate::profile::Selector::ListenPort(_) => vec!["listener-tracked"],
            crate::profile::Selector::RemotePort(_) => vec![],
        }
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        if name != "listener-tracked" || self.selftests().is_empty() {
            return None;
        }
        let held: Vec<_> = self
            .listeners()
            .into_iter()
            .filter(|(_, h)| *h > 0)
            .collect();
        Some(if held.is_empty() {
            Err("no listening socket of this stream is held by the tenant: its connections are not being accepted under this stream".into())
        } else {
            Ok(format!(
                "{} tracked listener(s) held by the tenant",
                held.len()
            ))
        })
    }
}

struct RuleView<'a> {
    sv: &'a mut Supervisor,
    stream: usize,
    rule: usize,
}

impl Provider for RuleView<'_> {
    fn state(&mut self) -> Value {
        let c = &self.sv.components.streams[self.stream];
        let kind = self.sv.profile.streams[self.stream]
            .rule_summary(self.rule)
            .map(|s| s.0);
        json!({ "kind": kind, "hits": c.hits[self.rule] })
    }
    fn config(&self) -> Value {
        let summary = self.sv.profile.streams[self.stream].rule_summary(self.rule);
        json!({ "kind": summary.as_ref().map(|s| s.0), "rule": summary.map(|s| s.1) })
    }
    fn selftests(&self) -> Vec<&'static str> {
        match self.sv.profile.streams[self.stream].rule_summary(self.rule) {
            Some((_, _, true)) => vec!["fixtures"],
            _ => vec![],
        }
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        if name != "fixtures" || self.selftests().is_empty() {
            return None;
        }
        self.sv.profile.streams[self.stream].rule_replay(self.rule)
    }
}

struct ConnectionView<'a> {
    sv: &'a mut Supervisor,
    inode: Inode,
}

impl Provider for ConnectionView<'_> {
    fn state(&mut self) -> Value {
        let backend = self.sv.table.holder_processes(self.inode);
        let parked = self.sv.waiters.parked_on(self.inode);
        let Some((stream, copy)) = self.sv.table.stream(self.inode) else {
            return Value::Null;
        };
        let local = crate::sys::local_addr(copy)
            .ok()
            .and_then(|a| a.as_std())
            .map(|a| a.to_string());
        let peer = rustix::net::getpeername(copy)
            .ok()
            .flatten()
            .and_then(|a| std::net::SocketAddr::try_from(a).ok())
            .map(|a| a.to_string());
        let stream = &*stream;
        let half = |d: Direction| {
            let t = stream.totals(d);
            let h = match d {
                Direction::Inbound => &stream.inbound,
                Direction::Outbound => &stream.outbound,
            };
            json!({
                "taken": t.taken, "emitted": t.emitted, "delivered": t.delivered,
                "dropped": t.dropped, "messages": t.messages,
                "spooled": h.spooled(), "ready": h.ready.len(), "ended": h.ended,
            })
        };
        let rules: serde_json::Map<String, Value> = stream
            .rule_state()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        json!({
            "dpid": stream.dpid.as_str(),
            "stream": stream.name,
            "local": local,
            "peer": peer,
            "backend_pids": backend.iter().map(|&p| namespace_pid(p)).collect::<Vec<_>>(),
            "backend_host_pids": backend,
            "transaction_status": rules.get("transaction_status"),
            "session": rules,
            "peer_to_tenant": half(Direction::Inbound),
            "tenant_to_peer": half(Direction::Outbound),
            "parked_calls": parked,
            "closing": stream.closing,
            "recent_messages": stream.recent.list().iter().map(|s| json!({
                "direction": s.direction.to_string(), "type": s.name, "len": s.len,
            })).collect::<Vec<_>>(),
            "decisions_not_logged": stream.pending.overflow,
        })
    }
    fn config(&self) -> Value {
        let config = self
            .sv
            .table
            .sockets
            .get(&self.inode)
            .and_then(|t| match &t.kind {
                SocketKind::Stream(s) => Some(s.config),
                _ => None,
            });
        json!({ "stream": config.map(|i| self.sv.components.streams[i].dpid.as_str()) })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec!["socket-open"]
    }
    fn selftest(&mut self, name: &str) -> Option<Result<String, String>> {
        if name != "socket-open" {
            return None;
        }
        let copy = self.sv.table.copy(self.inode)?;
        Some(match crate::sys::poll_now(copy, libc::POLLOUT) {
            Ok(r) if r & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 => Err(format!(
                "the socket reports poll flags {r:#x} (error or hang-up)"
            )),
            Ok(_) => Ok("the socket is open in both directions".into()),
            Err(e) => Err(format!("poll: {e}")),
        })
    }
}

struct OutputView<'a>(&'a mut Supervisor);

impl Provider for OutputView<'_> {
    fn state(&mut self) -> Value {
        json!({
            "lines_stamped": self.0.outputs.lines,
            "processes_with_partial_lines": self.0.outputs.partial_count(),
            "log_lines_dropped": crate::diag::get().map(|d| d.log.dropped()),
        })
    }
    fn config(&self) -> Value {
        json!({ "stamped": self.0.outputs.captured })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec![]
    }
    fn selftest(&mut self, _name: &str) -> Option<Result<String, String>> {
        None
    }
}

/// A connection already released: its final accounting.
struct Released(super::components::Released);

impl Provider for Released {
    fn state(&mut self) -> Value {
        let t = |t: &crate::observe::Totals| {
            json!({
                "taken": t.taken, "emitted": t.emitted, "delivered": t.delivered,
                "dropped": t.dropped, "messages": t.messages,
            })
        };
        json!({
            "dpid": self.0.dpid.as_str(),
            "released": true,
            "peer_to_tenant": t(&self.0.inbound),
            "tenant_to_peer": t(&self.0.outbound),
        })
    }
    fn config(&self) -> Value {
        json!({ "released": true })
    }
    fn selftests(&self) -> Vec<&'static str> {
        vec![]
    }
    fn selftest(&mut self, _name: &str) -> Option<Result<String, String>> {
        None
    }
}

/// A host pid as the tenant sees it (`NSpid`'s last field in `/proc/PID/status`): what
/// `pg_backend_pid()` returns inside the tenant's PID namespace. `None` if it is gone.
pub(crate) fn namespace_pid(pid: libc::pid_t) -> Option<libc::pid_t> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}
