//! Diagnostic provider ids: which component emitted an event, and whom to ask about it.
//!
//! A DPID is hierarchical and readable, the path an operator would say out loud:
//!
//! | component               | DPID                          |
//! |-------------------------|-------------------------------|
//! | tenant                  | `pg-demo`                     |
//! | a singleton of a tenant | `pg-demo/@supervisor`, `pg-demo/@label`, `pg-demo/@landlock`, `pg-demo/@registry`, `pg-demo/@limits`, `pg-demo/@control`, `pg-demo/@output` |
//! | stream                  | `pg-demo/pg-clients`          |
//! | rule *i* of a stream    | `pg-demo/pg-clients/r2`       |
//! | connection *n*          | `pg-demo/pg-clients/c17`      |
//!
//! Readable rather than opaque because the id is also what routes a call: `ctl` finds
//! the supervising process by the first segment (the tenant), and an operator can type
//! one from a log line without a lookup. Tenant and stream names are `[A-Za-z0-9_-]`
//! (the profile checks), so `/` separates and `@` marks a singleton without ambiguity.
//! Tenant names are unique on a node (one registry entry, one cgroup, one control
//! socket each), stream names within a profile; connection numbers count up from 1 for
//! the supervisor's lifetime and are never reused while it runs.

use std::fmt;
use std::sync::Arc;

use super::Kind;

/// A component's diagnostic provider id. Cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dpid(Arc<str>);

impl Dpid {
    /// The tenant itself.
    pub fn tenant(tenant: &str) -> Dpid {
        Dpid(tenant.into())
    }

    /// A component there is one of per tenant (its supervisor, label enforcer, ...).
    pub fn singleton(tenant: &str, kind: Kind) -> Dpid {
        Dpid(format!("{tenant}/@{}", kind.name()).into())
    }

    /// A stream of the tenant's profile.
    pub fn stream(tenant: &str, stream: &str) -> Dpid {
        Dpid(format!("{tenant}/{stream}").into())
    }

    /// Rule `index` (0-based, the profile's order) of a stream.
    pub fn rule(stream: &Dpid, index: usize) -> Dpid {
        Dpid(format!("{stream}/r{index}").into())
    }

    /// Sink `name` of a tenant's mirror.
    pub fn sink(tenant: &str, name: &str) -> Dpid {
        Dpid(format!("{tenant}/@sink/{name}").into())
    }

    /// The shared text (records and events hold it without copying).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    /// Connection `serial` of a stream.
    pub fn connection(stream: &Dpid, serial: u64) -> Dpid {
        Dpid(format!("{stream}/c{serial}").into())
    }

    /// Checks the shape of a DPID given by a client and returns its kind.
    pub fn parse(text: &str) -> Result<(Dpid, Kind), String> {
        let bad = |why: &str| Err(format!("{text:?} is not a DPID: {why}"));
        if text.len() > 256 {
            return bad("longer than 256 bytes");
        }
        let parts: Vec<&str> = text.split('/').collect();
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
        };
        if !name_ok(parts[0]) {
            return bad("the tenant part must be non-empty [A-Za-z0-9_-]");
        }
        let kind = match parts.as_slice() {
            [_] => Kind::Tenant,
            [_, s] if s.starts_with('@') => match Kind::ALL.into_iter().find(|k| &s[1..] == k.name()) {
                Some(k) if k.is_singleton() => k,
                _ => return bad("unknown @component"),
            },
            [_, "@sink", n] if name_ok(n) => Kind::Sink,
            [_, s] if name_ok(s) => Kind::Stream,
            [_, s, c] if name_ok(s) && serial(c, 'c').is_some() => Kind::Connection,
            [_, s, r] if name_ok(s) && serial(r, 'r').is_some() => Kind::Rule,
            _ => return bad("expected TENANT, TENANT/@KIND, TENANT/STREAM, TENANT/STREAM/cN, TENANT/STREAM/rN or TENANT/@sink/NAME"),
        };
        Ok((Dpid(text.into()), kind))
    }

    /// The tenant part (the first segment).
    pub fn tenant_name(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `c17` → 17 (with `prefix` 'c').
/// A map keyed by DPIDs, hashed with a fast non-keyed hash (Fx): the keys are the
/// supervisor's own names, never chosen by a client, so the DoS resistance of the
/// default (SipHash) buys nothing here, and the mirror looks one up per message.
pub type DpidMap<V> = std::collections::HashMap<Dpid, V, std::hash::BuildHasherDefault<FxHasher>>;

/// The Fx hash (as in rustc): a rotate, xor and multiply per 8-byte word.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn serial(part: &str, prefix: char) -> Option<u64> {
    let digits = part.strip_prefix(prefix)?;
    if digits.is_empty() || digits.starts_with('0') && digits.len() > 1 {
        return None;
    }
    digits.parse().ok()
}

impl fmt::Display for Dpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Dpid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dpid({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_round_trip_through_parse() {
        let stream = Dpid::stream("pg-demo", "pg-clients");
        let cases = [
            (Dpid::tenant("pg-demo"), Kind::Tenant),
            (Dpid::singleton("pg-demo", Kind::Label), Kind::Label),
            (stream.clone(), Kind::Stream),
            (Dpid::connection(&stream, 17), Kind::Connection),
            (Dpid::rule(&stream, 2), Kind::Rule),
            (Dpid::sink("pg-demo", "file"), Kind::Sink),
            (Dpid::singleton("pg-demo", Kind::Mirror), Kind::Mirror),
        ];
        for (dpid, kind) in cases {
            assert_eq!(Dpid::parse(dpid.as_str()), Ok((dpid.clone(), kind)));
            assert_eq!(dpid.tenant_name(), "pg-demo");
        }
        assert_eq!(
            Dpid::connection(&stream, 17).as_str(),
            "pg-demo/pg-clients/c17"
        );
    }

    #[test]
    fn malformed_ids_are_refused_with_a_reason() {
        for bad in [
            "",
            "/x",
            "a b",
            "pg/@nope",
            "pg/@connection",
            "pg/s/c",
            "pg/s/c01",
            "pg/s/x1",
            "pg/s/c1/d",
            "pg//c1",
            "pg/s/r-1",
        ] {
            let error = Dpid::parse(bad).unwrap_err();
            assert!(error.contains("is not a DPID"), "{bad:?}: {error}");
        }
        assert!(Dpid::parse(&"a".repeat(300)).is_err());
    }
}
