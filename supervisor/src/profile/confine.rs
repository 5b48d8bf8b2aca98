//! The confinement part of a profile: `tenant.confine`, `[filesystem]` and `[network]`.
//!
//! A confined tenant gets a registry entry (uid, label, home, address range), a labeled
//! home, Landlock, and address checks on connect, bind, sendto and accept. An unconfined
//! one (the default, and every profile without `confine = true`) runs as before: the
//! filter and the streams, nothing else.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

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
    home: Option<Spanned<PathBuf>>,
    read_only: Option<Vec<Spanned<PathBuf>>>,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NetworkSpec {
    address: Option<Spanned<String>>,
    #[serde(default)]
    allowed_peers: Vec<Spanned<String>>,
    tcp_bind: Option<Spanned<Vec<u16>>>,
    tcp_connect: Option<Spanned<Vec<u16>>>,
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

/// A key and what is wrong with it, at a byte offset of the profile.
pub(super) type Invalid = (usize, String, String);

/// Validates the confinement tables. `confine` is `tenant.confine`; `ids` the resolved
/// `tenant.uid`/`gid`/`user`; `at` the `[tenant]` table's offset.
pub(super) fn validate(
    confine: bool,
    ids: Option<(u32, u32)>,
    at: usize,
    filesystem: Option<Spanned<FilesystemSpec>>,
    network: Option<Spanned<NetworkSpec>>,
) -> Result<Option<Confinement>, Invalid> {
    if !confine {
        for (table, span) in [
            ("filesystem", filesystem.as_ref().map(|s| s.span().start)),
            ("network", network.as_ref().map(|s| s.span().start)),
        ] {
            if let Some(offset) = span {
                return Err((
                    offset,
                    table.into(),
                    format!("[{table}] applies to confined tenants: set tenant.confine = true"),
                ));
            }
        }
        return Ok(None);
    }
    let (uid, gid) = (ids.map(|i| i.0), ids.map(|i| i.1));
    if uid == Some(0) || gid == Some(0) {
        return Err((
            at,
            "tenant.uid".into(),
            "a confined tenant cannot be root (uid or gid 0)".into(),
        ));
    }
    let (home, read_only, read_only_explicit) = match filesystem.map(Spanned::into_inner) {
        None => (None, defaults(), false),
        Some(fs) => {
            let home = fs
                .home
                .map(|h| absolute(h, "filesystem.home"))
                .transpose()?;
            match fs.read_only {
                None => (home, defaults(), false),
                Some(list) => {
                    let paths = list
                        .into_iter()
                        .map(|p| absolute(p, "filesystem.read_only"))
                        .collect::<Result<Vec<_>, _>>()?;
                    (home, paths, true)
                }
            }
        }
    };
    let net = match network.map(Spanned::into_inner) {
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

fn absolute(path: Spanned<PathBuf>, key: &str) -> Result<PathBuf, Invalid> {
    let at = path.span().start;
    let path = path.into_inner();
    if !path.is_absolute() {
        return Err((
            at,
            key.into(),
            format!("{} must be absolute", path.display()),
        ));
    }
    if path
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return Err((
            at,
            key.into(),
            format!("{} must not contain `..`", path.display()),
        ));
    }
    Ok(path)
}

fn network_rules(spec: NetworkSpec) -> Result<(Option<Ipv4Net>, NetRules), Invalid> {
    let address = match spec.address {
        None => None,
        Some(text) => {
            let at = text.span().start;
            let net: Ipv4Net = text
                .into_inner()
                .parse()
                .map_err(|e: crate::label::NetError| {
                    (at, "network.address".into(), e.to_string())
                })?;
            if net.prefix() > 30 {
                return Err((
                    at,
                    "network.address".into(),
                    format!("{net} is too small: a tenant range needs at least a /30"),
                ));
            }
            Some(net)
        }
    };
    let mut allowed_peers = Vec::new();
    for (i, peer) in spec.allowed_peers.into_iter().enumerate() {
        let at = peer.span().start;
        let parsed = Peer::parse(peer.get_ref())
            .map_err(|m| (at, format!("network.allowed_peers[{i}]"), m))?;
        allowed_peers.push(parsed);
    }
    let ports = |list: Option<Spanned<Vec<u16>>>, key: &str| match list {
        None => Ok(None),
        Some(list) if list.get_ref().contains(&0) && key == "network.tcp_connect" => Err((
            list.span().start,
            key.to_string(),
            "port 0 cannot be connected to".to_string(),
        )),
        Some(list) => Ok(Some(list.into_inner())),
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
                "t.toml:5: filesystem.read_only: /a/../etc must not contain `..`",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\ntcp_connect = [0]\n",
                "t.toml:5: network.tcp_connect: port 0",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\nuid = 0\n",
                "t.toml:1: tenant.uid: a confined tenant cannot be root",
            ),
            (
                "[tenant]\nname = \"a\"\nconfine = true\n[network]\nadress = \"x\"\n",
                "t.toml:5:",
            ),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
    }
}
