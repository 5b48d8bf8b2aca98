//! The supervisor's view of labels while a confined tenant runs: its own entry, its
//! profile's network rules, and the registry's other tenants, re-read when the registry
//! file changes (another supervisor on the node registered a tenant).

use crate::diag::Kind;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::policy::{Denial, NetRules, Policy};
use super::registry::{self, Entry};
use super::Ipv4Net;

/// Labels and rules for one confined tenant.
#[derive(Debug)]
pub struct Guard {
    own: Entry,
    rules: NetRules,
    node: Ipv4Net,
    unprivileged_port_start: u16,
    state_dir: PathBuf,
    tenants: Vec<Entry>,
    /// (inode, mtime ns, size) of the registry file when `tenants` was read.
    stamp: Option<(u64, i64, u64)>,
    /// Denial lines are rate-limited: a tenant must not flood the host's logs.
    log_budget: LogBudget,
    /// Calls refused so far (all of them, logged or held back).
    pub denials: u64,
}

/// At most [`LogBudget::PER_SECOND`] lines a second; what is held back is counted and
/// said in the next line that goes out.
#[derive(Debug)]
struct LogBudget {
    window: Instant,
    used: u32,
    held_back: u64,
}

impl LogBudget {
    const PER_SECOND: u32 = 20;

    fn new(now: Instant) -> LogBudget {
        LogBudget {
            window: now,
            used: 0,
            held_back: 0,
        }
    }

    /// `Some(n)`: log now, `n` lines having been held back before it; `None`: hold.
    fn take(&mut self, now: Instant) -> Option<u64> {
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.used = 0;
        }
        if self.used >= Self::PER_SECOND {
            self.held_back += 1;
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.held_back))
    }
}

/// Which call a decision is for (logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Connect,
    Bind,
    SendTo,
    Accept,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Connect => "connect",
            Call::Bind => "bind",
            Call::SendTo => "sendto",
            Call::Accept => "accept",
        }
    }
}

impl Guard {
    /// A guard for `own`, reading other tenants from the registry in `state_dir`.
    pub fn new(own: Entry, rules: NetRules, node: Ipv4Net, state_dir: PathBuf) -> Guard {
        let unprivileged_port_start =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(1024);
        let mut guard = Guard {
            own,
            rules,
            node,
            unprivileged_port_start,
            state_dir,
            tenants: Vec::new(),
            stamp: None,
            log_budget: LogBudget::new(Instant::now()),
            denials: 0,
        };
        guard.refresh();
        guard
    }

    /// The tenant's own registry entry.
    pub fn entry(&self) -> &Entry {
        &self.own
    }

    /// Re-reads the registry if its file changed. A registry that fails to parse keeps
    /// the previous view (logged): a half-edited file must not open the labels.
    fn refresh(&mut self) {
        let path = registry::file_in(&self.state_dir);
        let stamp = std::fs::metadata(&path).ok().map(|m| {
            (
                m.ino(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.size(),
            )
        });
        if stamp.is_some() && stamp == self.stamp {
            return;
        }
        match registry::snapshot(&self.state_dir) {
            Ok(tenants) => {
                self.tenants = tenants;
                self.stamp = stamp;
            }
            Err(error) => {
                tracing::warn!(target: Kind::Label.target(), %error, "registry unreadable; keeping the previous view of other tenants")
            }
        }
    }

    fn policy(&self) -> Policy<'_> {
        Policy {
            own: &self.own,
            rules: &self.rules,
            tenants: &self.tenants,
            node: self.node,
            uid: self.own.uid,
            unprivileged_port_start: self.unprivileged_port_start,
        }
    }

    /// Decides `call` on `addr`; a denial is logged with both labels.
    pub fn check(&mut self, call: Call, addr: SocketAddr, tcp: bool) -> Result<(), Denial> {
        self.refresh();
        let policy = self.policy();
        let (ip, port) = (addr.ip(), addr.port());
        let decision = match call {
            Call::Connect | Call::SendTo => policy.check_connect(ip, port, tcp),
            Call::Bind => policy.check_bind(ip, port, tcp),
            Call::Accept => policy.check_accept(ip),
        };
        if let Err(denial) = &decision {
            self.denials += 1;
            if let Some(held_back) = self.log_budget.take(Instant::now()) {
                tracing::warn!(
                    target: Kind::Label.target(),
                    tenant = %self.own.name,
                    label = %self.own.label,
                    call = call.name(),
                    address = %addr,
                    peer_label = denial.peer_label().unwrap_or("unlabeled"),
                    held_back,
                    "denied: {denial}"
                );
            }
        }
        decision
    }

    /// What `ctl state` shows of the enforcer.
    pub fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "tenant": self.own.name,
            "label": self.own.label.to_string(),
            "address": self.own.address.to_string(),
            "node_network": self.node.to_string(),
            "other_tenants_known": self.tenants.iter().filter(|t| t.name != self.own.name).count(),
            "denials": self.denials,
        })
    }

    /// The enforcer's configuration (the profile's network rules).
    pub fn config(&self) -> serde_json::Value {
        serde_json::json!({ "network": format!("{:?}", self.rules) })
    }

    /// Self-test: an address carrying another tenant's label is refused for connect.
    /// Uses a registered tenant when there is one, otherwise a made-up tenant in the
    /// node network, labeled differently from this one; nothing is logged or counted.
    pub fn selftest_foreign_label(&mut self) -> Result<String, String> {
        self.refresh();
        let other = self
            .tenants
            .iter()
            .find(|t| t.name != self.own.name && t.label != self.own.label)
            .cloned();
        let foreign = match other {
            Some(entry) => entry,
            None => {
                let label = (0..1000)
                    .filter_map(|i| crate::label::mcs::Label::from_index(i).ok())
                    .find(|l| *l != self.own.label)
                    .ok_or("no label other than this tenant's could be made")?;
                let base = u32::from(self.node.addr()) + (1 << 16) + (0xfe << 8);
                let address = crate::label::Ipv4Net::new(std::net::Ipv4Addr::from(base), 24)
                    .map_err(|e| format!("cannot make a foreign range: {e}"))?;
                if address.contains(crate::label::policy::primary_address(&self.own)) {
                    return Err("the made-up range overlaps this tenant's".into());
                }
                Entry {
                    name: "selftest-foreign".into(),
                    label,
                    address,
                    ..self.own.clone()
                }
            }
        };
        let mut tenants = self.tenants.clone();
        if !tenants.iter().any(|t| t.name == foreign.name) {
            tenants.push(foreign.clone());
        }
        let policy = Policy {
            tenants: &tenants,
            ..self.policy()
        };
        let target = crate::label::policy::primary_address(&foreign);
        match policy.check_connect(IpAddr::V4(target), 5432, true) {
            Err(denial) => Ok(format!(
                "connect to {target} (tenant {}, label {}) refused: {denial}",
                foreign.name, foreign.label
            )),
            Ok(()) => Err(format!(
                "connect to {target} (tenant {}, label {}) would be ALLOWED: check network.allowed_peers",
                foreign.name, foreign.label
            )),
        }
    }

    /// Source address to bind before connecting to `ip` (see [`Policy::source_for`]).
    pub fn source_for(&self, ip: IpAddr) -> Option<std::net::Ipv4Addr> {
        self.policy().source_for(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_lines_are_rate_limited_and_the_rest_counted() {
        let start = Instant::now();
        let mut budget = LogBudget::new(start);
        let logged = (0..100).filter(|_| budget.take(start).is_some()).count();
        assert_eq!(logged, LogBudget::PER_SECOND as usize);
        // The next second's first line says how many were held back.
        let later = start + Duration::from_secs(1);
        assert_eq!(budget.take(later), Some(80));
        assert_eq!(budget.take(later), Some(0));
    }
}
