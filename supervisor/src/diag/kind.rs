//! The kinds of component that emit diagnostics. Every log event names its kind as its
//! tracing target (`Kind::X.target()`), so filters (`SUPERVISE_LOG`) and the log
//! formatter speak one vocabulary instead of hand-typed strings.

use std::fmt;

/// A kind of component. Singletons (one per supervising process) get their DPID from
/// the kind alone; per-instance kinds (stream, connection, rule, sink) carry a `dpid`
/// field on their events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The supervising process: its notification loop and its setup.
    Supervisor,
    /// The tenant: its processes, its launch, its account.
    Tenant,
    /// A stream of the profile (a tracked port and its rules).
    Stream,
    /// One tracked connection of a stream.
    Connection,
    /// One rule of a stream.
    Rule,
    /// The label enforcer (addresses, peers, files).
    Label,
    /// The tenant's Landlock ruleset.
    Landlock,
    /// The registry of tracked descriptors, threads and holders.
    Registry,
    /// Resource limits (cgroup, home filesystem, spool budget).
    Limits,
    /// The control socket.
    Control,
    /// The tenant's own stdout and stderr, stamped line by line.
    Output,
    /// Mirroring: its policies, triggers and runtime capture changes.
    Mirror,
    /// One listening station group of the mirror (`TENANT/@sink/NAME`).
    Sink,
    /// Signed privileged requests: every one is audited under its DPID.
    Keyring,
}

impl Kind {
    /// Every kind, in the order listings show them.
    pub const ALL: [Kind; 14] = [
        Kind::Supervisor,
        Kind::Tenant,
        Kind::Stream,
        Kind::Connection,
        Kind::Rule,
        Kind::Label,
        Kind::Landlock,
        Kind::Registry,
        Kind::Limits,
        Kind::Control,
        Kind::Output,
        Kind::Mirror,
        Kind::Sink,
        Kind::Keyring,
    ];

    /// The tracing target of this kind's events (`supervise::<name>`).
    pub const fn target(self) -> &'static str {
        match self {
            Kind::Supervisor => "supervise::supervisor",
            Kind::Tenant => "supervise::tenant",
            Kind::Stream => "supervise::stream",
            Kind::Connection => "supervise::connection",
            Kind::Rule => "supervise::rule",
            Kind::Label => "supervise::label",
            Kind::Landlock => "supervise::landlock",
            Kind::Registry => "supervise::registry",
            Kind::Limits => "supervise::limits",
            Kind::Control => "supervise::control",
            Kind::Output => "supervise::output",
            Kind::Mirror => "supervise::mirror",
            Kind::Sink => "supervise::sink",
            Kind::Keyring => "supervise::keyring",
        }
    }

    /// The short name (`connection`), as JSON logs and `ctl list` show it.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Supervisor => "supervisor",
            Kind::Tenant => "tenant",
            Kind::Stream => "stream",
            Kind::Connection => "connection",
            Kind::Rule => "rule",
            Kind::Label => "label",
            Kind::Landlock => "landlock",
            Kind::Registry => "registry",
            Kind::Limits => "limits",
            Kind::Control => "control",
            Kind::Output => "output",
            Kind::Mirror => "mirror",
            Kind::Sink => "sink",
            Kind::Keyring => "keyring",
        }
    }

    /// Whether there is one of this kind per tenant (its DPID is `TENANT/@kind`).
    pub const fn is_singleton(self) -> bool {
        !matches!(
            self,
            Kind::Tenant | Kind::Stream | Kind::Connection | Kind::Rule | Kind::Sink
        )
    }

    /// The kind whose target this is.
    pub fn from_target(target: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.target() == target)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_names_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for kind in Kind::ALL {
            assert!(seen.insert(kind.target()), "{kind:?} target repeated");
            assert_eq!(Kind::from_target(kind.target()), Some(kind));
            assert_eq!(kind.target(), format!("supervise::{}", kind.name()));
        }
    }
}
