//! Address decisions for a confined tenant: may it connect to, send to, bind, or accept
//! from this address? Pure functions of the tenant's own entry, its profile's network
//! section and the registry's other tenants; the notify handlers perform the call only
//! after `Allow`, on their own copy of the address.
//!
//! An address is *labeled* when it lies in a registered tenant's range: it carries that
//! tenant's label. Addresses of the node network's first /16 (`127.0.0.0/16` on
//! loopback, the host's own `127.0.0.1`) and addresses outside the node network are
//! unlabeled: operators' clients and the outside world.
//!
//! An IPv6 address means what the kernel will do with it: the v4-mapped form reaches
//! the IPv4 address it carries and is judged as that; the other forms that carry an
//! IPv4 address (IPv4-compatible `::a.b.c.d`, NAT64, 6to4, Teredo, IPv4-translated)
//! are routed as IPv6 to wherever a gateway sends them, so they are refused; IPv6
//! proper is refused unless an `allowed_peers` network holds it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::registry::Entry;
use super::Ipv4Net;

/// A peer the profile allows across labels: a tenant by name, or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// Every address of this tenant's range.
    Tenant(String),
    /// Every address in this network.
    Net(Ipv4Net),
    /// Every address in this IPv6 network (address, prefix length).
    Net6(Ipv6Addr, u8),
}

impl Peer {
    /// `pg-b` (a tenant), `127.3.0.0/24` (a network) or `127.3.0.7` (one address).
    pub fn parse(text: &str) -> Result<Peer, String> {
        if text.contains(':') {
            return parse_net6(text);
        }
        if text.contains('/') {
            return text
                .parse()
                .map(Peer::Net)
                .map_err(|e: super::NetError| e.to_string());
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(Peer::Net(Ipv4Net::new(ip, 32).expect("/32 is valid")));
        }
        let valid = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Peer::Tenant(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is neither a tenant name, an IP address nor a CIDR network"
            ))
        }
    }
}

/// `2001:db8::/32` or `2001:db8::1`; an address that carries an IPv4 address is refused
/// (write the IPv4 address instead).
fn parse_net6(text: &str) -> Result<Peer, String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, prefix)) => {
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= 128)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0..=128"))?;
            (addr, prefix)
        }
        None => (text, 128),
    };
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv6 address or network"))?;
    if let Reach::V4(_) | Reach::Embedded(_) = reach(IpAddr::V6(addr)) {
        if !addr.is_unspecified() {
            return Err(format!(
                "{text:?} carries an IPv4 address: name the IPv4 address or network instead"
            ));
        }
    }
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    Ok(Peer::Net6(Ipv6Addr::from(u128::from(addr) & mask), prefix))
}

fn net6_contains(net: Ipv6Addr, prefix: u8, ip: Ipv6Addr) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net)
}

/// Where an IP address leads, as the kernel routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// An IPv4 address (or the v4-mapped form of one).
    V4(Ipv4Addr),
    /// An IPv6 form carrying an IPv4 address that is routed as IPv6 (named here).
    Embedded(&'static str),
    /// IPv6 proper.
    V6(Ipv6Addr),
}

/// Classifies `ip` by what the kernel will do with it.
pub fn reach(ip: IpAddr) -> Reach {
    let v6 = match ip {
        IpAddr::V4(v4) => return Reach::V4(v4),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Reach::V4(v4);
    }
    if v6.is_unspecified() || v6.is_loopback() {
        return Reach::V6(v6);
    }
    let s = v6.segments();
    let form = match s {
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (::a.b.c.d)",
        [0, 0, 0, 0, 0xffff, 0, _, _] => "IPv4-translated (::ffff:0:a.b.c.d)",
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => "NAT64 (64:ff9b::/96)",
        [0x64, 0xff9b, 1, ..] => "local NAT64 (64:ff9b:1::/48)",
        [0x2002, ..] => "6to4 (2002::/16)",
        [0x2001, 0, ..] => "Teredo (2001::/32)",
        _ => return Reach::V6(v6),
    };
    Reach::Embedded(form)
}

/// A confined tenant's network rules, from its profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetRules {
    /// Tenants and networks reachable (and accepted from) across labels.
    pub allowed_peers: Vec<Peer>,
    /// TCP ports the tenant may bind; `None`: any.
    pub tcp_bind: Option<Vec<u16>>,
    /// TCP ports the tenant may connect to; `None`: any.
    pub tcp_connect: Option<Vec<u16>>,
}

/// Why a call was refused. Its Display is the log line's message; the labels are
/// logged as fields next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The address is in another tenant's range and that tenant is not an allowed peer.
    OtherTenant {
        /// The tenant holding the address.
        name: String,
        /// Its label.
        label: String,
    },
    /// The address is in the node's tenant space but no tenant holds it (yet).
    Unassigned,
    /// A bind outside the tenant's own range.
    OutsideOwnRange,
    /// The profile's port list does not hold this port.
    Port {
        /// "tcp_bind" or "tcp_connect".
        list: &'static str,
        /// The port.
        port: u16,
    },
    /// Below the host's unprivileged port start: the kernel would refuse the tenant.
    Privileged {
        /// The port.
        port: u16,
        /// `net.ipv4.ip_unprivileged_port_start`.
        start: u16,
    },
    /// An IPv6 form carrying an IPv4 address, routed as IPv6 (not to that address).
    EmbeddedV4 {
        /// Which form.
        form: &'static str,
    },
    /// IPv6 proper, and no `allowed_peers` network holds it.
    Ipv6,
}

impl Denial {
    /// The label carried by the refused address, if it has one.
    pub fn peer_label(&self) -> Option<&str> {
        match self {
            Denial::OtherTenant { label, .. } => Some(label),
            _ => None,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::OtherTenant { name, label } => write!(
                f,
                "address is labeled {label} (tenant {name:?}), which is not an allowed peer"
            ),
            Denial::Unassigned => write!(f, "address is in the node's tenant space but unassigned"),
            Denial::OutsideOwnRange => write!(f, "address is outside the tenant's own range"),
            Denial::Port { list, port } => write!(f, "port {port} is not in network.{list}"),
            Denial::Privileged { port, start } => write!(
                f,
                "port {port} is privileged (below ip_unprivileged_port_start = {start})"
            ),
            Denial::EmbeddedV4 { form } => write!(
                f,
                "address is an IPv6 {form} address: it carries an IPv4 address but is routed as IPv6"
            ),
            Denial::Ipv6 => write!(
                f,
                "address is IPv6 and no network.allowed_peers network holds it"
            ),
        }
    }
}

/// Who holds an address, as far as labels go.
#[derive(Debug, PartialEq, Eq)]
enum Holder<'a> {
    Own,
    Tenant(&'a Entry),
    Unassigned,
    Unlabeled,
}

/// The decisions, given the registry's current entries (`others` may include the
/// tenant itself; it is skipped by name).
#[derive(Debug)]
pub struct Policy<'a> {
    /// The tenant's own registry entry.
    pub own: &'a Entry,
    /// Its profile's rules.
    pub rules: &'a NetRules,
    /// Every registered tenant.
    pub tenants: &'a [Entry],
    /// The node network (tenant space is all of it but its first /16).
    pub node: Ipv4Net,
    /// The tenant's uid (0 may bind privileged ports).
    pub uid: u32,
    /// `net.ipv4.ip_unprivileged_port_start`.
    pub unprivileged_port_start: u16,
}

/// The IPv4 address behind an IP: itself, or the v4 inside a v4-mapped v6 address
/// (`::ffff:127.1.0.1` reaches `127.1.0.1`, so it must be judged as that).
pub fn as_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

impl Policy<'_> {
    fn holder(&self, ip: Ipv4Addr) -> Holder<'_> {
        if self.own.address.contains(ip) {
            return Holder::Own;
        }
        if let Some(entry) = self
            .tenants
            .iter()
            .find(|e| e.name != self.own.name && e.address.contains(ip))
        {
            return Holder::Tenant(entry);
        }
        let host_part = Ipv4Net::new(self.node.addr(), 16).expect("node nets are /8../15");
        if self.node.contains(ip) && !host_part.contains(ip) {
            Holder::Unassigned
        } else {
            Holder::Unlabeled
        }
    }

    fn allowed(&self, ip: Ipv4Addr, entry: Option<&Entry>) -> bool {
        self.rules.allowed_peers.iter().any(|peer| match peer {
            Peer::Net(net) => net.contains(ip),
            Peer::Tenant(name) => entry.is_some_and(|e| &e.name == name),
            Peer::Net6(..) => false,
        })
    }

    fn allowed_v6(&self, ip: Ipv6Addr) -> bool {
        self.rules.allowed_peers.iter().any(|peer| match peer {
            Peer::Net6(net, prefix) => net6_contains(*net, *prefix, ip),
            _ => false,
        })
    }

    /// The label rule shared by connect, sendto and accept: another tenant's address
    /// (or an unassigned one) only if the profile allows it as a peer.
    fn check_peer(&self, ip: IpAddr) -> Result<(), Denial> {
        let v4 = match reach(ip) {
            Reach::V4(v4) => v4,
            Reach::Embedded(form) => return Err(Denial::EmbeddedV4 { form }),
            Reach::V6(v6) if self.allowed_v6(v6) => return Ok(()),
            Reach::V6(_) => return Err(Denial::Ipv6),
        };
        match self.holder(v4) {
            Holder::Own | Holder::Unlabeled => Ok(()),
            Holder::Tenant(entry) if self.allowed(v4, Some(entry)) => Ok(()),
            Holder::Tenant(entry) => Err(Denial::OtherTenant {
                name: entry.name.clone(),
                label: entry.label.to_string(),
            }),
            Holder::Unassigned if self.allowed(v4, None) => Ok(()),
            Holder::Unassigned => Err(Denial::Unassigned),
        }
    }

    /// connect (and sendto/sendmsg with a destination): `tcp` applies the port list.
    pub fn check_connect(&self, ip: IpAddr, port: u16, tcp: bool) -> Result<(), Denial> {
        self.check_peer(ip)?;
        match &self.rules.tcp_connect {
            Some(ports) if tcp && !ports.contains(&port) => Err(Denial::Port {
                list: "tcp_connect",
                port,
            }),
            _ => Ok(()),
        }
    }

    /// bind: only inside the tenant's own range (so the wildcard and IPv6 are refused),
    /// only the profile's TCP ports, never a privileged port for a non-root tenant.
    pub fn check_bind(&self, ip: IpAddr, port: u16, tcp: bool) -> Result<(), Denial> {
        match as_v4(ip) {
            Some(v4) if self.own.address.contains(v4) => {}
            _ => return Err(Denial::OutsideOwnRange),
        }
        if port != 0 && port < self.unprivileged_port_start && self.uid != 0 {
            return Err(Denial::Privileged {
                port,
                start: self.unprivileged_port_start,
            });
        }
        match &self.rules.tcp_bind {
            Some(ports) if tcp && !ports.contains(&port) => Err(Denial::Port {
                list: "tcp_bind",
                port,
            }),
            _ => Ok(()),
        }
    }

    /// accept: a connection from another tenant's address is refused unless allowed.
    pub fn check_accept(&self, peer: IpAddr) -> Result<(), Denial> {
        self.check_peer(peer)
    }

    /// The source address the supervisor binds before connecting to `ip`, so the
    /// connection carries this tenant's label: the first host of its range, for
    /// destinations inside the node network (elsewhere a loopback source would not
    /// route).
    pub fn source_for(&self, ip: IpAddr) -> Option<Ipv4Addr> {
        let v4 = as_v4(ip)?;
        // 0.0.0.0 as a destination means this host.
        (v4.is_unspecified() || self.node.contains(v4)).then(|| primary_address(self.own))
    }
}

/// A tenant's own first address (`.1` of its range): what it listens on and connects
/// from.
pub fn primary_address(entry: &Entry) -> Ipv4Addr {
    let base = u32::from(entry.address.addr());
    let host = if entry.address.prefix() >= 31 { 0 } else { 1 };
    Ipv4Addr::from(base + host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label::mcs::Label;
    use crate::label::DEFAULT_NODE_NET;

    fn entry(name: &str, index: u32) -> Entry {
        Entry {
            name: name.into(),
            uid: 200_000 + index,
            gid: 200_000 + index,
            label: Label::from_index(index).unwrap(),
            home: format!("/h/{name}").into(),
            address: crate::label::tenant_net(DEFAULT_NODE_NET, index).unwrap(),
        }
    }

    fn check(rules: NetRules, f: impl FnOnce(&Policy<'_>)) {
        let tenants = [entry("a", 0), entry("b", 1)];
        let policy = Policy {
            own: &tenants[0],
            rules: &rules,
            tenants: &tenants,
            node: DEFAULT_NODE_NET,
            uid: 200_000,
            unprivileged_port_start: 1024,
        };
        f(&policy);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_peers_only_by_an_allowed_network() {
        let rules = NetRules {
            allowed_peers: vec![Peer::parse("2001:db8::/32").unwrap()],
            ..NetRules::default()
        };
        check(rules, |p| {
            assert_eq!(p.check_connect(ip("2001:db8:1::5"), 443, true), Ok(()));
            assert_eq!(
                p.check_connect(ip("2001:db9::5"), 443, true),
                Err(Denial::Ipv6)
            );
            assert_eq!(p.check_connect(ip("::1"), 443, true), Err(Denial::Ipv6));
        });
        assert_eq!(
            Peer::parse("2001:db8::1"),
            Ok(Peer::Net6("2001:db8::1".parse().unwrap(), 128))
        );
        assert!(Peer::parse("::/0").is_ok());
        for bad in [
            "2001:db8::/129",
            "::ffff:127.1.0.1",
            "64:ff9b::1.2.3.4",
            "2001:zz::",
        ] {
            assert!(Peer::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connect_across_labels_needs_an_allowed_peer() {
        check(NetRules::default(), |p| {
            assert_eq!(p.check_connect(ip("127.1.0.9"), 80, true), Ok(()));
            assert_eq!(p.check_connect(ip("127.0.0.1"), 5432, true), Ok(()));
            assert_eq!(p.check_connect(ip("10.1.2.3"), 443, true), Ok(()));
            assert_eq!(p.check_connect(ip("::1"), 443, true), Err(Denial::Ipv6));
            let denied = p.check_connect(ip("127.1.1.1"), 5432, true).unwrap_err();
            assert_eq!(denied.peer_label(), Some("s0:c0,c2"));
            assert!(denied.to_string().contains("tenant \"b\""), "{denied}");
            // The v4-mapped form of b's address is b's address.
            assert!(p.check_connect(ip("::ffff:127.1.1.1"), 1, true).is_err());
            // Other forms carrying it are routed as IPv6: refused, whatever they carry.
            for form in [
                "::127.1.1.1",
                "::127.0.0.1",
                "::ffff:0:127.1.1.1",
                "64:ff9b::127.1.1.1",
                "64:ff9b:1::7f01:101",
                "2002:7f01:101::1",
                "2001:0:7f01:101::1",
            ] {
                let denied = p.check_connect(ip(form), 1, false).unwrap_err();
                assert!(
                    matches!(denied, Denial::EmbeddedV4 { .. }),
                    "{form}: {denied}"
                );
                assert!(p.check_bind(ip(form), 1, false).is_err(), "{form}");
            }
            // IPv6 proper: refused without an allowed IPv6 network.
            for v6 in ["::1", "::", "2001:db8::1", "fe80::1"] {
                assert_eq!(p.check_connect(ip(v6), 1, false), Err(Denial::Ipv6), "{v6}");
            }
            assert_eq!(
                p.check_connect(ip("127.9.9.9"), 1, false),
                Err(Denial::Unassigned)
            );
        });
        let rules = NetRules {
            allowed_peers: vec![Peer::parse("b").unwrap()],
            ..NetRules::default()
        };
        check(rules, |p| {
            assert_eq!(p.check_connect(ip("127.1.1.1"), 5432, true), Ok(()));
            assert_eq!(p.check_accept(ip("127.1.1.1")), Ok(()));
            assert!(p.check_accept(ip("127.9.0.1")).is_err());
        });
        let rules = NetRules {
            allowed_peers: vec![Peer::parse("127.9.0.0/16").unwrap()],
            ..NetRules::default()
        };
        check(rules, |p| {
            assert_eq!(p.check_connect(ip("127.9.3.3"), 1, true), Ok(()));
            assert!(p.check_connect(ip("127.1.1.1"), 1, true).is_err());
        });
    }

    #[test]
    fn bind_stays_in_the_own_range_and_port_lists() {
        let rules = NetRules {
            tcp_bind: Some(vec![5432]),
            tcp_connect: Some(vec![5432]),
            ..NetRules::default()
        };
        check(rules, |p| {
            assert_eq!(p.check_bind(ip("127.1.0.1"), 5432, true), Ok(()));
            assert_eq!(p.check_bind(ip("127.1.0.1"), 9999, false), Ok(()));
            assert_eq!(
                p.check_bind(ip("127.1.0.1"), 9999, true),
                Err(Denial::Port {
                    list: "tcp_bind",
                    port: 9999
                })
            );
            for other in ["0.0.0.0", "127.1.1.1", "127.0.0.1", "::", "::1"] {
                assert_eq!(
                    p.check_bind(ip(other), 5432, true),
                    Err(Denial::OutsideOwnRange),
                    "{other}"
                );
            }
            assert!(matches!(
                p.check_bind(ip("127.1.0.1"), 80, false),
                Err(Denial::Privileged { port: 80, .. })
            ));
            assert!(p.check_connect(ip("127.0.0.1"), 6379, true).is_err());
            assert_eq!(p.check_connect(ip("127.0.0.1"), 6379, false), Ok(()));
        });
    }

    #[test]
    fn source_addresses_and_peer_syntax() {
        check(NetRules::default(), |p| {
            assert_eq!(
                p.source_for(ip("127.1.1.1")),
                Some(Ipv4Addr::new(127, 1, 0, 1))
            );
            assert_eq!(p.source_for(ip("10.0.0.1")), None);
            assert_eq!(
                p.source_for(ip("0.0.0.0")),
                Some(Ipv4Addr::new(127, 1, 0, 1))
            );
        });
        assert_eq!(
            Peer::parse("127.3.0.7").unwrap(),
            Peer::Net("127.3.0.7/32".parse().unwrap())
        );
        assert!(Peer::parse("127.3.0.7/24")
            .unwrap_err()
            .contains("host bits"));
        assert!(Peer::parse("a b").is_err());
    }
}
