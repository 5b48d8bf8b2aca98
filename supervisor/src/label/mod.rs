//! Tenant labels (issue 4): the uid → MCS label mapping ([`mcs`]), each tenant's address
//! range (here), and the node registry that records who holds what ([`registry`]).
//!
//! This is the pure foundation: nothing here touches xattrs, sockets or Landlock. The
//! launcher and the notification engine consume these types to label homes and to
//! decide connect/bind/accept.

pub mod audit;
pub mod claims;
pub mod guard;
pub mod mcs;
pub mod policy;
pub mod registry;
pub mod watch;
pub mod xattr;

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in CIDR form (`127.1.0.0/24`). The address is always the network
/// address (host bits zero), so two equal networks compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string or a tenant address cannot be produced; each names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("network {input:?}: expected `a.b.c.d/prefix`")]
    Syntax { input: String },
    #[error("network {input:?}: prefix must be 0..=32")]
    Prefix { input: String },
    #[error("network {input:?}: host bits are set, the network address is {network}")]
    HostBits { input: String, network: Ipv4Addr },
    #[error("node network {net}: tenant /24s need a node network of /8 to /15")]
    NodePrefix { net: Ipv4Net },
    #[error("node network {net} has room for {capacity} tenant /24s, index {index} does not fit")]
    Full {
        net: Ipv4Net,
        index: u32,
        capacity: u32,
    },
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl Ipv4Net {
    /// A network; fails if `addr` has host bits set or `prefix > 32`.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, NetError> {
        format!("{addr}/{prefix}").parse()
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network: what bind/connect checks will ask.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Ipv4Net, NetError> {
        let input = || s.to_string();
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| NetError::Syntax { input: input() })?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| NetError::Syntax { input: input() })?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| NetError::Prefix { input: input() })?;
        let network = Ipv4Addr::from(u32::from(addr) & mask(prefix));
        if network != addr {
            return Err(NetError::HostBits {
                input: input(),
                network,
            });
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = NetError;
    fn try_from(s: String) -> Result<Ipv4Net, NetError> {
        s.parse()
    }
}

impl From<Ipv4Net> for String {
    fn from(net: Ipv4Net) -> String {
        net.to_string()
    }
}

/// The default node network: loopback, so tenants on one host reach each other only
/// through addresses the supervisor can label.
pub const DEFAULT_NODE_NET: Ipv4Net = Ipv4Net {
    addr: Ipv4Addr::new(127, 0, 0, 0),
    prefix: 8,
};

/// How many tenant /24s a node network holds: all its /24s except the first 256 (the
/// first /16 of the network). For `127.0.0.0/8` that keeps `127.0.0.0/16`, which holds
/// the host's `127.0.0.1`, out of every tenant's range, leaving 255 × 256 = 65,280.
pub fn tenant_capacity(node: Ipv4Net) -> Result<u32, NetError> {
    if !(8..=15).contains(&node.prefix) {
        return Err(NetError::NodePrefix { net: node });
    }
    Ok((1u32 << (24 - node.prefix)) - 256)
}

/// The /24 of the tenant with uid index `index` (uid − node base): the `(256 + index)`-th
/// /24 of the node network. For `127.0.0.0/8` that is `127.<1 + index / 256>.<index %
/// 256>.0/24`: index 0 → `127.1.0.0/24`, 255 → `127.1.255.0/24`, 256 → `127.2.0.0/24`.
/// Distinct indices give disjoint networks (it is an offset, not a hash).
pub fn tenant_net(node: Ipv4Net, index: u32) -> Result<Ipv4Net, NetError> {
    let capacity = tenant_capacity(node)?;
    if index >= capacity {
        return Err(NetError::Full {
            net: node,
            index,
            capacity,
        });
    }
    let addr = u32::from(node.addr) + ((256 + index) << 8);
    Ok(Ipv4Net {
        addr: Ipv4Addr::from(addr),
        prefix: 24,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tenant_nets_on_loopback() {
        let net = |i| tenant_net(DEFAULT_NODE_NET, i).unwrap().to_string();
        assert_eq!(net(0), "127.1.0.0/24");
        assert_eq!(net(255), "127.1.255.0/24");
        assert_eq!(net(256), "127.2.0.0/24");
        assert_eq!(net(65_279), "127.255.255.0/24");
        assert_eq!(tenant_capacity(DEFAULT_NODE_NET).unwrap(), 65_280);
        assert!(matches!(
            tenant_net(DEFAULT_NODE_NET, 65_280),
            Err(NetError::Full { index: 65_280, .. })
        ));
    }

    #[test]
    fn tenant_nets_are_disjoint_and_avoid_the_host() {
        let host = Ipv4Addr::new(127, 0, 0, 1);
        let mut seen = HashSet::new();
        for index in 0..tenant_capacity(DEFAULT_NODE_NET).unwrap() {
            let net = tenant_net(DEFAULT_NODE_NET, index).unwrap();
            assert!(DEFAULT_NODE_NET.contains(net.addr()));
            assert!(!net.contains(host));
            // /24s with distinct network addresses are disjoint.
            assert!(seen.insert(net.addr()), "{net} allocated twice");
        }
    }

    #[test]
    fn other_node_networks() {
        let node: Ipv4Net = "10.64.0.0/12".parse().unwrap();
        assert_eq!(tenant_capacity(node).unwrap(), 4096 - 256);
        assert_eq!(tenant_net(node, 0).unwrap().to_string(), "10.65.0.0/24");
        let small: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        assert!(matches!(
            tenant_net(small, 0),
            Err(NetError::NodePrefix { .. })
        ));
    }

    #[test]
    fn cidr_parse_errors() {
        assert!(matches!(
            "127.0.0.1".parse::<Ipv4Net>(),
            Err(NetError::Syntax { .. })
        ));
        assert!(matches!(
            "127.0.0/8".parse::<Ipv4Net>(),
            Err(NetError::Syntax { .. })
        ));
        assert!(matches!(
            "127.0.0.0/33".parse::<Ipv4Net>(),
            Err(NetError::Prefix { .. })
        ));
        let err = "127.1.2.3/24".parse::<Ipv4Net>().unwrap_err();
        assert!(err.to_string().contains("127.1.2.0"), "{err}");
        let net: Ipv4Net = "127.1.0.0/24".parse().unwrap();
        assert!(net.contains(Ipv4Addr::new(127, 1, 0, 9)));
        assert!(!net.contains(Ipv4Addr::new(127, 2, 0, 9)));
        assert_eq!(
            Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap().to_string(),
            "0.0.0.0/0"
        );
    }
}

/// Registry tests live here so `registry.rs` stays under 400 lines.
#[cfg(test)]
mod registry_tests {
    use super::mcs::NodeRange;
    use super::registry::{NodeConfig, Registry, RegistryError};
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn small_node() -> NodeConfig {
        NodeConfig {
            range: NodeRange::new(5000, 3).unwrap(),
            net: DEFAULT_NODE_NET,
        }
    }

    #[test]
    fn allocate_lowest_free_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        let a = reg.allocate("alice", None).unwrap();
        assert_eq!((a.uid, a.gid), (5000, 5000));
        assert_eq!(a.label.to_string(), "s0:c0,c1");
        assert_eq!(a.address.to_string(), "127.1.0.0/24");
        assert_eq!(a.home, dir.path().join("home/alice"));
        let b = reg.allocate("bob", None).unwrap();
        assert_eq!((b.uid, b.label.to_string()), (5001, "s0:c0,c2".into()));
        assert_eq!(b.address.to_string(), "127.1.1.0/24");
        assert_eq!(reg.allocate("alice", None).unwrap(), a);
        assert_eq!(reg.allocate("alice", Some(5000)).unwrap(), a);
        assert_eq!(reg.list().len(), 2);
        // Release frees the lowest uid for the next tenant.
        assert_eq!(reg.release("alice"), Some(a));
        assert_eq!(reg.release("alice"), None);
        assert_eq!(reg.allocate("carol", None).unwrap().uid, 5000);
        reg.allocate("dave", None).unwrap();
        let err = reg.allocate("erin", None).unwrap_err();
        assert!(matches!(err, RegistryError::Full { .. }), "{err}");
        assert!(err.to_string().contains("erin"), "{err}");
    }

    #[test]
    fn collisions_and_bad_requests_name_both_tenants() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        reg.allocate("alice", Some(5002)).unwrap();
        let err = reg.allocate("bob", Some(5002)).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, RegistryError::Held { what: "uid", .. }),
            "{msg}"
        );
        assert!(msg.contains("alice") && msg.contains("bob") && msg.contains("5002"));
        let err = reg.allocate("alice", Some(5001)).unwrap_err();
        assert!(matches!(
            err,
            RegistryError::UidChanged { existing: 5002, .. }
        ));
        let err = reg.allocate("bob", Some(4999)).unwrap_err();
        assert!(err.to_string().contains("below the node range"), "{err}");
        let err = reg.allocate("bob", Some(5003)).unwrap_err();
        assert!(err.to_string().contains("past the node range"), "{err}");
        assert!(matches!(
            reg.allocate("../x", None),
            Err(RegistryError::InvalidName { .. })
        ));
        assert!(reg.allocate("", None).is_err());
    }

    #[test]
    fn label_clash_from_a_changed_node_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        reg.allocate("alice", None).unwrap();
        reg.save().unwrap();
        drop(reg);
        // Same labels, different uids: a moved base must not hand out alice's label.
        let moved = NodeConfig {
            range: NodeRange::new(9000, 3).unwrap(),
            net: "10.0.0.0/8".parse().unwrap(),
        };
        let mut reg = Registry::open_with(dir.path(), moved).unwrap();
        let err = reg.allocate("bob", Some(9000)).unwrap_err();
        assert!(
            matches!(err, RegistryError::Held { what: "label", .. }),
            "{err}"
        );
        assert!(err.to_string().contains("alice") && err.to_string().contains("s0:c0,c1"));
    }

    #[test]
    fn save_round_trips_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(dir.path()).unwrap();
        let a = reg.allocate("alice", None).unwrap();
        assert_eq!(a.uid, registry::DEFAULT_BASE_UID);
        let b = reg
            .allocate("bob", Some(registry::DEFAULT_BASE_UID + 300))
            .unwrap();
        assert_eq!(b.address.to_string(), "127.2.44.0/24");
        reg.save().unwrap();
        assert!(!dir.path().join("tenants.toml.tmp").exists());
        drop(reg);
        let reg = Registry::open(dir.path()).unwrap();
        assert_eq!(reg.list(), &[a, b]);
    }

    #[test]
    fn corrupt_file_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenants.toml");
        let text = "[[tenant]]\nname = \"a\"\nuid = \"x\"\n";
        fs_write(&path, text);
        let err = Registry::open(dir.path()).unwrap_err();
        assert!(matches!(err, RegistryError::Parse { line: 3, .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("{}:3:", path.display())));
        let bad_label = "[[tenant]]\nname = \"a\"\nuid = 1\ngid = 1\nlabel = \"s0:c9,c2\"\n\
                         home = \"/h\"\naddress = \"127.1.0.0/24\"\n";
        fs_write(&path, bad_label);
        let err = Registry::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(":5:") && err.contains("ascending"), "{err}");
        let dup = "[[tenant]]\nname = \"a\"\nuid = 1\ngid = 1\nlabel = \"s0:c0,c1\"\n\
                   home = \"/h\"\naddress = \"127.1.0.0/24\"\n\
                   [[tenant]]\nname = \"b\"\nuid = 2\ngid = 2\nlabel = \"s0:c0,c1\"\n\
                   home = \"/h\"\naddress = \"127.1.1.0/24\"\n";
        fs_write(&path, dup);
        let err = Registry::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, RegistryError::Corrupt { what: "label", .. }),
            "{err}"
        );
    }

    #[test]
    fn claims_with_address_home_and_gid() {
        use super::registry::Claim;
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        let wide: Ipv4Net = "127.9.0.0/16".parse().unwrap();
        let a = reg
            .claim(
                "alice",
                &Claim {
                    gid: Some(7000),
                    address: Some(wide),
                    home: Some("/srv/alice".into()),
                    ..Claim::default()
                },
            )
            .unwrap();
        assert_eq!((a.uid, a.gid), (5000, 7000));
        assert_eq!(a.address, wide);
        assert_eq!(a.home, std::path::Path::new("/srv/alice"));
        // Overlapping ranges are refused, naming both tenants.
        let inside: Ipv4Net = "127.9.3.0/24".parse().unwrap();
        let err = reg
            .claim(
                "bob",
                &Claim {
                    address: Some(inside),
                    ..Claim::default()
                },
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("alice") && err.contains("bob") && err.contains("127.9.0.0/16"),
            "{err}"
        );
        // A registered tenant may move its home and range, not its uid.
        let moved = reg
            .claim(
                "alice",
                &Claim {
                    home: Some("/srv/a2".into()),
                    ..Claim::default()
                },
            )
            .unwrap();
        assert_eq!((moved.uid, moved.gid, moved.address), (5000, 5000, wide));
        assert!(reg
            .claim(
                "alice",
                &Claim {
                    uid: Some(5001),
                    ..Claim::default()
                }
            )
            .is_err());
    }

    #[test]
    fn places_must_be_the_tenants_own() {
        use super::registry::Claim;
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        let with = |address: Option<&str>, home: Option<std::path::PathBuf>| Claim {
            address: address.map(|a| a.parse().unwrap()),
            home,
            ..Claim::default()
        };
        // An explicit range reaching the host's 127.0.0.0/16 or outside the node net.
        for bad in ["127.0.0.0/30", "127.0.0.0/8", "10.1.0.0/24"] {
            let err = reg
                .claim("x", &with(Some(bad), None))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("outside the node's tenant space"),
                "{bad}: {err}"
            );
        }
        // A wide range first, then a default /24 inside it: refused, naming both.
        reg.claim("wide", &with(Some("127.1.0.0/16"), None))
            .unwrap();
        let err = reg
            .claim("narrow", &with(None, None))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wide") && err.contains("narrow") && err.contains("overlapping"),
            "{err}"
        );
        // Homes: not inside or around another's, not the state dir or its ancestors.
        drop(reg); // (never saved: the next open starts empty)
        let mut reg = Registry::open_with(dir.path(), small_node()).unwrap();
        reg.claim("a", &with(None, Some("/srv/t/a".into())))
            .unwrap();
        for home in ["/srv/t/a/sub", "/srv/t", "/srv/t/a"] {
            let err = reg
                .claim("b", &with(None, Some(home.into())))
                .unwrap_err()
                .to_string();
            assert!(err.contains("home overlapping"), "{home}: {err}");
        }
        for home in [
            dir.path().to_path_buf(),
            dir.path().join("home"),
            dir.path().join("x"),
        ] {
            let err = reg
                .claim("c", &with(None, Some(home.clone())))
                .unwrap_err()
                .to_string();
            assert!(err.contains("state dir"), "{}: {err}", home.display());
        }
        let c = reg.claim("c", &with(None, None)).unwrap();
        assert_eq!(c.home, dir.path().join("home/c"));
    }

    fn fs_write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn concurrent_opens_serialize() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Registry::open(dir.path()).unwrap();
        let (tx, rx) = mpsc::channel();
        let path = dir.path().to_path_buf();
        let second = std::thread::spawn(move || {
            let reg = Registry::open(&path).unwrap();
            let names: Vec<String> = reg.list().iter().map(|e| e.name.clone()).collect();
            tx.send(names).unwrap();
        });
        // While `first` holds the lock the second open must not complete.
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        first.allocate("alice", None).unwrap();
        first.save().unwrap();
        drop(first);
        // Hang guard only: the second open sees what the first saved.
        let names = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("second open hung");
        assert_eq!(names, ["alice"]);
        second.join().unwrap();
    }
}
