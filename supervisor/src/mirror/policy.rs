//! Which part of a message is mirrored: capture lengths, the policies that choose
//! them, and the structural redaction no policy can lift. Sans-IO: facts in, a byte
//! range out; no syscalls, no clock.
//!
//! How several policies combine: the **first** policy (in profile order) whose every
//! condition holds decides the capture and the stations, like a firewall's rules; no
//! match, nothing is mirrored. A runtime override (`ctl capture`) replaces that
//! choice; triggers in effect may only raise it; redaction by structure then caps it.

use std::net::IpAddr;

use super::record::Origin;

/// How much of a message to capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    /// Nothing: the message is not mirrored.
    None,
    /// The protocol's header (PostgreSQL: the type byte and length, 5 bytes; a
    /// StartupMessage's length and code, 8; `lines` and `raw` have none: 0 bytes).
    Header,
    /// The first N bytes.
    Bytes(usize),
    /// Bytes M..N (end exclusive).
    Range(usize, usize),
    /// The whole message.
    All,
}

impl Capture {
    /// Parses `none`, `header`, `all`, `N` or `M..N`.
    pub fn parse(text: &str) -> Result<Capture, String> {
        let bad = || {
            format!(
                "{text:?} is not a capture (none, header, all, a length N, or a byte range M..N)"
            )
        };
        match text {
            "none" => return Ok(Capture::None),
            "header" => return Ok(Capture::Header),
            "all" => return Ok(Capture::All),
            _ => {}
        }
        if let Some((m, n)) = text.split_once("..") {
            let m: usize = m.parse().map_err(|_| bad())?;
            let n: usize = n.parse().map_err(|_| bad())?;
            if m >= n {
                return Err(format!("{text:?}: the range M..N needs M < N"));
            }
            return Ok(Capture::Range(m, n));
        }
        text.parse().map(Capture::Bytes).map_err(|_| bad())
    }

    /// The byte range of a message of `len` bytes whose header is `header` bytes.
    pub fn resolve(self, len: usize, header: usize) -> Option<(usize, usize)> {
        match self {
            Capture::None => None,
            Capture::Header => Some((0, header.min(len))),
            Capture::Bytes(n) => Some((0, n.min(len))),
            Capture::Range(m, n) => Some((m.min(len), n.min(len))),
            Capture::All => Some((0, len)),
        }
    }
}

impl std::fmt::Display for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capture::None => f.write_str("none"),
            Capture::Header => f.write_str("header"),
            Capture::Bytes(n) => write!(f, "{n}"),
            Capture::Range(m, n) => write!(f, "{m}..{n}"),
            Capture::All => f.write_str("all"),
        }
    }
}

/// An IPv4 or IPv6 network (a bare address is a /32 or /128). A v4-mapped IPv6
/// address matches as the IPv4 address it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `192.0.2.7`.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let base: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an address or CIDR (10.0.0.0/8, fd00::/8)"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0..={max}"))?,
        };
        let cidr = Cidr { base, prefix };
        if cidr.mask(base) != base {
            return Err(format!("{text:?} has bits set past its /{prefix}"));
        }
        Ok(cidr)
    }

    fn mask(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.base.is_ipv4() && self.mask(ip) == self.base
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// A v4-mapped IPv6 address as its IPv4 address; others unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What is known about one message when its capture is chosen.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The stream's index in the profile.
    pub stream: usize,
    /// Who sent it.
    pub origin: Origin,
    /// The framer's name for it.
    pub kind: &'a str,
    /// The peer's address.
    pub peer: Option<IpAddr>,
    /// The tenant's port.
    pub local_port: Option<u16>,
    /// The session's user, database and application_name (PostgreSQL startup).
    pub user: Option<&'a str>,
    /// See `user`.
    pub database: Option<&'a str>,
    /// See `user`.
    pub application_name: Option<&'a str>,
    /// The message's full length.
    pub size: usize,
    /// Whether the server has accepted the client's authentication.
    pub authenticated: bool,
}

/// A policy's conditions; an empty list or `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct Match {
    /// Stream indices.
    pub streams: Vec<usize>,
    /// Who sent it.
    pub origin: Option<Origin>,
    /// Message kinds by name.
    pub messages: Vec<String>,
    /// The peer's networks.
    pub peers: Vec<Cidr>,
    /// The tenant's ports.
    pub local_ports: Vec<u16>,
    /// Session users.
    pub users: Vec<String>,
    /// Session databases.
    pub databases: Vec<String>,
    /// Session application names.
    pub application_names: Vec<String>,
    /// Smallest message size that matches.
    pub min_size: Option<usize>,
    /// Largest message size that matches.
    pub max_size: Option<usize>,
    /// Only before (`false`) or after (`true`) authentication.
    pub authenticated: Option<bool>,
}

fn any_or<T>(list: &[T], hit: impl Fn(&T) -> bool) -> bool {
    list.is_empty() || list.iter().any(hit)
}

fn named(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|l| l == v))
}

impl Match {
    /// Whether every condition holds for `facts`.
    pub fn matches(&self, facts: &Facts<'_>) -> bool {
        any_or(&self.streams, |s| *s == facts.stream)
            && self.origin.is_none_or(|o| o == facts.origin)
            && any_or(&self.messages, |m| m == facts.kind)
            && (self.peers.is_empty()
                || facts
                    .peer
                    .is_some_and(|ip| self.peers.iter().any(|c| c.contains(ip))))
            && (self.local_ports.is_empty()
                || facts
                    .local_port
                    .is_some_and(|p| self.local_ports.contains(&p)))
            && named(&self.users, facts.user)
            && named(&self.databases, facts.database)
            && named(&self.application_names, facts.application_name)
            && self.min_size.is_none_or(|m| facts.size >= m)
            && self.max_size.is_none_or(|m| facts.size <= m)
            && self.authenticated.is_none_or(|a| a == facts.authenticated)
    }

    /// Whether a message of stream `stream` could ever match (decides whether the
    /// engine builds message events for a connection at all).
    pub fn may_match_stream(&self, stream: usize) -> bool {
        any_or(&self.streams, |s| *s == stream)
    }
}

/// One `[[mirror.policy]]`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// When it applies.
    pub when: Match,
    /// How much it captures.
    pub capture: Capture,
    /// Indices of the sinks it writes to.
    pub sinks: Vec<usize>,
}

/// The first policy matching `facts`, with its index.
pub fn first_match<'p>(policies: &'p [Policy], facts: &Facts<'_>) -> Option<(usize, &'p Policy)> {
    policies
        .iter()
        .enumerate()
        .find(|(_, p)| p.when.matches(facts))
}

/// Of two captures, the one that takes more of this message.
pub fn larger(a: Capture, b: Capture, len: usize, header: usize) -> Capture {
    let size = |c: Capture| c.resolve(len, header).map(|(m, n)| (n - m, n));
    if size(b) > size(a) {
        b
    } else {
        a
    }
}

/// Message kinds redacted by structure unless the profile says otherwise: no
/// capture, whatever it asks for, reaches their secret part.
pub const REDACTED_BY_DEFAULT: [&str; 5] = [
    "PasswordMessage",
    "Bind",
    "Authentication",
    "BackendKeyData",
    "CancelRequest",
];

/// Kinds the redaction knows how to cut.
pub const REDACTABLE: [&str; 6] = [
    "PasswordMessage",
    "Bind",
    "FunctionCall",
    "Authentication",
    "BackendKeyData",
    "CancelRequest",
];

/// The end of what may be mirrored of a PostgreSQL `message` of `kind` when `kind` is
/// redacted (whichever side sent it):
/// - a password message (cleartext, MD5, every SASL step) keeps its 5-byte header;
/// - an Authentication request keeps its header and code (9 bytes: which method),
///   not the salt, SCRAM nonces or server signature (with them a capture would allow
///   an offline guess at the password);
/// - BackendKeyData keeps header and backend pid (9), a CancelRequest its length,
///   code and pid (12): the cancel secret would let a station cancel queries;
/// - a Bind or FunctionCall keeps everything before its first parameter value
///   (names, format codes, the count).
///
/// A message that does not parse as its kind keeps its header only: what cannot be
/// read cannot be shown.
pub fn redaction_limit(kind: &str, message: &[u8]) -> usize {
    let header = 5.min(message.len());
    let values_start = match kind {
        "Bind" => bind_values_start(message),
        "FunctionCall" => function_args_start(message),
        "Authentication" | "BackendKeyData" => Some(9),
        "CancelRequest" => Some(12),
        _ => None,
    };
    values_start.unwrap_or(header).min(message.len())
}

/// A reader over a message body that fails on any overrun.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn cstring(&mut self) -> Option<()> {
        let nul = self.bytes.get(self.at..)?.iter().position(|b| *b == 0)?;
        self.at += nul + 1;
        Some(())
    }
    fn int16(&mut self) -> Option<usize> {
        let b = self.bytes.get(self.at..self.at + 2)?;
        self.at += 2;
        Some(u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.at.checked_add(n)?;
        (end <= self.bytes.len()).then(|| self.at = end)
    }
}

/// Bind: type, length, portal, statement, format codes, parameter count; values next.
fn bind_values_start(message: &[u8]) -> Option<usize> {
    let mut c = Cursor {
        bytes: message,
        at: 5,
    };
    c.cstring()?;
    c.cstring()?;
    let formats = c.int16()?;
    c.skip(formats * 2)?;
    c.int16()?;
    Some(c.at)
}

/// FunctionCall: type, length, function OID, argument format codes, argument count.
fn function_args_start(message: &[u8]) -> Option<usize> {
    let mut c = Cursor {
        bytes: message,
        at: 5,
    };
    c.skip(4)?;
    let formats = c.int16()?;
    c.skip(formats * 2)?;
    c.int16()?;
    Some(c.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: &str) -> Facts<'_> {
        Facts {
            stream: 0,
            origin: Origin::Client,
            kind,
            peer: Some("10.1.2.3".parse().unwrap()),
            local_port: Some(5432),
            user: Some("alice"),
            database: Some("shop"),
            application_name: None,
            size: 40,
            authenticated: true,
        }
    }

    #[test]
    fn captures_parse_and_resolve_within_the_message() {
        assert_eq!(Capture::parse("all"), Ok(Capture::All));
        assert_eq!(Capture::parse("64"), Ok(Capture::Bytes(64)));
        assert_eq!(Capture::parse("5..20"), Ok(Capture::Range(5, 20)));
        for bad in ["", "-1", "5..5", "9..2", "a..b", "header ", "1.5"] {
            assert!(Capture::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Capture::Header.resolve(40, 5), Some((0, 5)));
        assert_eq!(Capture::Header.resolve(3, 5), Some((0, 3)));
        assert_eq!(Capture::Bytes(64).resolve(40, 5), Some((0, 40)));
        assert_eq!(Capture::Range(30, 60).resolve(40, 5), Some((30, 40)));
        assert_eq!(Capture::Range(50, 60).resolve(40, 5), Some((40, 40)));
        assert_eq!(Capture::None.resolve(40, 5), None);
        assert_eq!(larger(Capture::Header, Capture::All, 40, 5), Capture::All);
        assert_eq!(
            larger(Capture::Bytes(64), Capture::All, 40, 5),
            Capture::Bytes(64)
        );
        assert_eq!(
            larger(Capture::None, Capture::Header, 40, 5),
            Capture::Header
        );
    }

    #[test]
    fn networks_match_both_families_and_mapped_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.9.9.9".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            !net.contains("::a09:909".parse().unwrap()),
            "IPv4-compatible is not v4"
        );
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("192.0.2.7")
            .unwrap()
            .contains("192.0.2.7".parse().unwrap()));
        for bad in ["10.0.0.1/8", "10.0.0.0/33", "x/8", "10.0.0.0/", "::1/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_first_matching_policy_decides() {
        let p = |when: Match, capture| Policy {
            when,
            capture,
            sinks: vec![0],
        };
        let policies = [
            p(
                Match {
                    messages: vec!["DataRow".into()],
                    ..Match::default()
                },
                Capture::Header,
            ),
            p(
                Match {
                    origin: Some(Origin::Client),
                    peers: vec![Cidr::parse("10.0.0.0/8").unwrap()],
                    users: vec!["alice".into()],
                    ..Match::default()
                },
                Capture::All,
            ),
            p(Match::default(), Capture::Bytes(64)),
        ];
        assert_eq!(first_match(&policies, &facts("Query")).unwrap().0, 1);
        assert_eq!(first_match(&policies, &facts("DataRow")).unwrap().0, 0);
        let mut other = facts("Query");
        other.user = None; // a condition on the user needs a known user
        assert_eq!(first_match(&policies, &other).unwrap().0, 2);
        let only_unauth = Match {
            authenticated: Some(false),
            max_size: Some(39),
            ..Match::default()
        };
        assert!(!only_unauth.matches(&facts("Query")));
    }

    #[test]
    fn redaction_keeps_structure_and_never_a_value() {
        // Bind: portal "", statement "s1", 1 format code (text), 2 parameters.
        let mut bind = vec![b'B', 0, 0, 0, 0];
        bind.extend_from_slice(b"\0s1\0");
        bind.extend_from_slice(&[0, 1, 0, 0, 0, 2]);
        let values_at = bind.len();
        bind.extend_from_slice(&[0, 0, 0, 6]);
        bind.extend_from_slice(b"secret");
        bind.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        bind.extend_from_slice(&[0, 0]);
        assert_eq!(redaction_limit("Bind", &bind), values_at);
        // Cut short: the header only.
        assert_eq!(redaction_limit("Bind", &bind[..9]), 5);
        let password = b"p\0\0\0\x0bhunter2\0";
        assert_eq!(redaction_limit("PasswordMessage", password), 5);
        let mut call = vec![b'F', 0, 0, 0, 0, 0, 0, 4, 0xd2, 0, 0, 0, 1];
        let args_at = call.len();
        call.extend_from_slice(&[0, 0, 0, 1, b'x']);
        assert_eq!(redaction_limit("FunctionCall", &call), args_at);
        // SCRAM's server-first message: the code (11: SASLContinue) stays, its nonce
        // and salt do not.
        let mut scram = vec![b'R', 0, 0, 0, 0, 0, 0, 0, 11];
        scram.extend_from_slice(b"r=abc,s=c2FsdA==,i=4096");
        assert_eq!(redaction_limit("Authentication", &scram), 9);
        let key = [b'K', 0, 0, 0, 12, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef];
        assert_eq!(redaction_limit("BackendKeyData", &key), 9);
        let cancel = [
            0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef,
        ];
        assert_eq!(redaction_limit("CancelRequest", &cancel), 12);
        assert_eq!(
            redaction_limit("CancelRequest", &cancel[..6]),
            6,
            "short: no key in it to cut"
        );
    }
}
