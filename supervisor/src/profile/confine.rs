//! The confinement part of a profile: `tenant.confine`, `[filesystem]` and `[network]`.
//!
//! A confined tenant gets a registry entry (uid, label, home, address range), a labeled
//! home, Landlock, and address checks on connect, bind, sendto and accept. An unconfined
//! one (the default, and every profile without `confine = true`) runs as before: the
//! filter and the streams, nothing else.

use std::path::PathBuf;

use serde::Deserialize;

use crate::label::policy::{NetRules, Peer};
use crate::label::Ipv4Net;

/// Read-only paths when the profile names none: what dynamically linked programs and
/// shells need, nothing that is writable or belongs to another tenant.
pub const DEFAULT_READ_ONLY: &[&str] = &[
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/lib32",
    "/etc",
    "/proc",
    "/dev/urandom",
    "/dev/random",
];

/// `[filesystem]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FilesystemSpec {
    home: Option<PathBuf>,
    read_only: Option<Vec<PathBuf>>,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkSpec {
    address: Option<String>,
    #[serde(default)]
    allowed_peers: Vec<String>,
    tcp_bind: Option<Vec<u16>>,
    tcp_connect: Option<Vec<u16>>,
}

/// A validated confinement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Explicit uid (`tenant.uid` or `tenant.user`); otherwise allocated.
    pub uid: Option<u32>,
    /// Explicit gid (`tenant.gid`, or `tenant.user`'s group); otherwise gid = uid.
    pub gid: Option<u32>,
    /// Explicit home; otherwise `<state dir>/home/<name>`.
    pub home: Option<PathBuf>,
    /// Paths the tenant may read and execute.
    pub read_only: Vec<PathBuf>,
    /// True when `read_only` came from the profile: a missing path is then an error,
    /// not a default that does not apply to this host.
    pub read_only_explicit: bool,
    /// Explicit address range; otherwise the uid's /24.
    pub address: Option<Ipv4Net>,
    /// Peers and ports.
    pub net: NetRules,
}

/// The dotted key at fault (`network.allowed_peers[1]`) and what is wrong with it; the
/// profile finds its line.
pub(super) type Invalid = (String, String);

/// Validates the confinement tables. `confine` is `tenant.confine`; `ids` the resolved
/// `tenant.uid`/`gid`/`user` and `id_keys` the keys that gave the uid and the gid.
pub(super) fn validate(
    confine: bool,
    ids: Option<(u32, u32)>,
    id_keys: (&str, &str),
    filesystem: Option<FilesystemSpec>,
    network: Option<NetworkSpec>,
) -> Result<Option<Confinement>, Invalid> {
    if !confine {
        for (table, present) in [
            ("filesystem", filesystem.is_some()),
            ("network", network.is_some()),
        ] {
            if present {
                return Err((
                    table.into(),
                    format!("[{table}] applies to confined tenants: set tenant.confine = true"),
                ));
            }
        }
        return Ok(None);
    }
    let (uid, gid) = (ids.map(|i| i.0), ids.map(|i| i.1));
    if uid == Some(0) || gid == Some(0) {
        let key = if uid == Some(0) { id_keys.0 } else { id_keys.1 };
        return Err((
            key.into(),
            "a confined tenant cannot be root (uid or gid 0)".into(),
        ));
    }
    let (home, read_only, read_only_explicit) = match filesystem {
        None => (None, defaults(), false),
        Some(fs) => {
            let home = fs
                .home
                .map(|h| absolute(h, "filesystem.home".into()))
                .transpose()?;
            match fs.read_only {
                None => (home, defaults(), false),
                Some(list) => {
                    let paths = list
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| absolute(p, format!("filesystem.read_only[{i}]")))
                        .collect::<Result<Vec<_>, _>>()?;
                    (home, paths, true)
                }
            }
        }
    };
    let net = match network {
        None => (None, NetRules::default()),
        Some(spec) => network_rules(spec)?,
    };
    Ok(Some(Confinement {
        uid,
        gid,
        home,
        read_only,
        read_only_explicit,
        address: net.0,
        net: net.1,
    }))
}

fn defaults() -> Vec<PathBuf> {
    DEFAULT_READ_ONLY.iter().map(PathBuf::from).collect()
}

fn absolute(path: PathBuf, key: String) -> Result<PathBuf, Invalid> {
    if !path.is_absolute() {
        return Err((key, format!("{} must be absolute", path.display())));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err((key, format!("{} must not contain `..`", path.display())));
    }
    Ok(path)
}

fn network_rules(spec: NetworkSpec) -> Result<(Option<Ipv4Net>, NetRules), Invalid> {
    let address = match spec.address {
        None => None,
        Some(text) => {
            let net: Ipv4Net = text
                .parse()
                .map_err(|e: crate::label::NetError| ("network.address".into(), e.to_string()))?;
            if net.prefix() > 30 {
                return Err((
                    "network.address".into(),
                    format!("{net} is too small: a tenant range needs at least a /30"),
                ));
            }
            Some(net)
        }
    };
    let mut allowed_peers = Vec::new();
    for (i, peer) in spec.allowed_peers.iter().enumerate() {
        let parsed = Peer::parse(peer).map_err(|m| (format!("network.allowed_peers[{i}]"), m))?;
        allowed_peers.push(parsed);
    }
    let ports = |list: Option<Vec<u16>>, key: &str| match list {
        None => Ok(None),
        Some(list) if key == "network.tcp_connect" && list.contains(&0) => {
            let i = list.iter().position(|&p| p == 0).unwrap_or(0);
            Err((
                format!("{key}[{i}]"),
                "port 0 cannot be connected to".to_string(),
            ))
        }
        Some(list) => Ok(Some(list)),
    };
    Ok((
        address,
        NetRules {
            allowed_peers,
            tcp_bind: ports(spec.tcp_bind, "network.tcp_bind")?,
            tcp_connect: ports(spec.tcp_connect, "network.tcp_connect")?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::Profile;
    use std::path::Path;

    fn parse(text: &str) -> Result<Profile, String> {
        Profile::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn confined_profile_parses() {
        let p = parse(
            "[tenant]\nname = \"a\"\nconfine = true\ncommand = [\"/bin/true\"]\n\
             [filesystem]\nhome = \"/srv/a\"\nread_only = [\"/usr\"]\n\
             [network]\naddress = \"127.1.9.0/24\"\nallowed_peers = [\"b\", \"127.0.0.0/16\"]\n\
             tcp_bind = [5432]\ntcp_connect = [5432, 6379]\n",
        )
        .unwrap();
        let c = p.confinement.unwrap();
        assert_eq!(c.home.unwrap(), Path::new("/srv/a"));
        assert!(c.read_only_explicit);
        assert_eq!(c.address.unwrap().to_string(), "127.1.9.0/24");
        assert_eq!(c.net.allowed_peers.len(), 2);
        assert_eq!(c.net.tcp_connect, Some(vec![5432, 6379]));
        assert_eq!(p.command.unwrap(), ["/bin/true"]);
        let p = parse("[tenant]\nname = \"a\"\nconfine = true\n").unwrap();
        let c = p.confinement.unwrap();
        assert!(!c.read_only_explicit && c.read_only.len() > 3 && c.uid.is_none());
        assert!(parse("[tenant]\nname = \"a\"\n")
            .unwrap()
            .confinement
            .is_none());
    }

    #[test]
    fn confinement_errors_name_file_line_and_key() {
        let cases = [
            (
                "[tenant]\nname = \"a\"\n[network]\naddress = \"127.1.0.0/24\"\n",
                "t.toml:3: network: [network] applies to confined tenants",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\naddress = \"127.1.0.1/24\"\n",
                "t.toml:5: network.address: network \"127.1.0.1/24\": host bits",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\nallowed_peers = [\"ok\",\n \"no pe\"]\n",
                "t.toml:6: network.allowed_peers[1]:",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[filesystem]\nhome = \"rel/dir\"\n",
                "t.toml:5: filesystem.home: rel/dir must be absolute",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[filesystem]\nread_only = [\"/usr\", \"/a/../etc\"]\n",
                "t.toml:5: filesystem.read_only[1]: /a/../etc must not contain `..`",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\ntcp_connect = [0]\n",
                "t.toml:5: network.tcp_connect[0]: port 0",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\nuid = 0\n",
                "t.toml:4: tenant.uid: a confined tenant cannot be root",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\nuid = 5\ngid = 0\n",
                "t.toml:5: tenant.gid: a confined tenant cannot be root",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\nuser = \"root\"\n",
                "t.toml:4: tenant.user: a confined tenant cannot be root",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\nadress = \"x\"\n",
                "t.toml:5: network.adress: unknown key (expected one of `address`",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
    }
}
