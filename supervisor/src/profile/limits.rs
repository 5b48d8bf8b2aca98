//! `[limits]`: what one confined tenant may take from the node — memory, processes, CPU
//! share, disk for its home, and the supervisor's inotify watches for its home.
//!
//! Every confined tenant has limits: a profile without `[limits]` gets the defaults
//! below. They are enforced by [`crate::limits`] (cgroups, the home's own filesystem) and
//! by the label watcher ([`crate::label::watch`], `home_watches`).

use serde::Deserialize;

/// Memory when the profile says nothing: 1 GiB. A PostgreSQL server with its default
/// `shared_buffers` (128 MiB) and a few dozen backends fits several times over, and a
/// runaway tenant is stopped long before it can push a host of a few GiB into its own
/// OOM killer. Raise it per tenant, or `"max"`.
pub const DEFAULT_MEMORY: u64 = 1 << 30;
/// Processes and threads when the profile says nothing: 512, four times what PostgreSQL
/// runs with its default `max_connections = 100` (one process per backend plus its
/// auxiliaries), and small enough that a fork bomb stops at once.
pub const DEFAULT_PIDS: u32 = 512;
/// CPU weight when the profile says nothing: cgroup v2's default, the same share as any
/// other cgroup.
pub const DEFAULT_CPU_WEIGHT: u16 = 100;
/// inotify watches the label watcher may hold for one tenant's home when the profile says
/// nothing. Watches are counted against root's `fs.inotify.max_user_watches`, which every
/// root daemon and every supervisor on the node share; a home with more directories is
/// still labeled, by periodic rescans of the directories past the cap.
pub const DEFAULT_HOME_WATCHES: u32 = 4096;

/// Smallest memory limit accepted: below it a tenant cannot even start its program.
pub const MIN_MEMORY: u64 = 8 << 20;
/// Smallest home image: ext4 needs room for its journal and metadata.
pub const MIN_HOME_SIZE: u64 = 16 << 20;
/// Largest `pids` value: the kernel's own ceiling for `pid_max`.
pub const MAX_PIDS: u64 = 4_194_304;
/// Largest `home_watches` value.
pub const MAX_HOME_WATCHES: u64 = 1 << 20;

/// `[limits]`, as written. Values are taken as TOML values and checked here, so a wrong
/// one gets a message in the operator's terms (`"512M"`, `"max"`), not serde's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSpec {
    memory: Option<toml::Value>,
    pids: Option<toml::Value>,
    cpu_weight: Option<toml::Value>,
    home_size: Option<toml::Value>,
    home_watches: Option<toml::Value>,
}

/// A confined tenant's validated limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory (RAM, and swap counted with it); `None`: unlimited.
    pub memory: Option<u64>,
    /// Processes and threads at once; `None`: unlimited.
    pub pids: Option<u32>,
    /// CPU weight, 1..=10000, cgroup v2 semantics (v1: `cpu.shares = weight·1024/100`).
    pub cpu_weight: u16,
    /// Size of the home's own filesystem image; `None`: the home is a plain directory on
    /// the filesystem that holds it (no size limit).
    pub home_size: Option<u64>,
    /// inotify watches the label watcher may hold for the home.
    pub home_watches: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory: Some(DEFAULT_MEMORY),
            pids: Some(DEFAULT_PIDS),
            cpu_weight: DEFAULT_CPU_WEIGHT,
            home_size: None,
            home_watches: DEFAULT_HOME_WATCHES,
        }
    }
}

impl Limits {
    /// cgroup v1's `cpu.shares` for this weight: v2's default weight 100 is v1's default
    /// 1024 shares, and the kernel's minimum is 2.
    pub fn cpu_shares(&self) -> u64 {
        (u64::from(self.cpu_weight) * 1024 / 100).max(2)
    }
}

impl std::fmt::Display for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_max = |v: Option<String>| v.unwrap_or_else(|| "max".into());
        write!(
            f,
            "memory {}, pids {}, cpu weight {}, home size {}, home watches {}",
            or_max(self.memory.map(human)),
            or_max(self.pids.map(|p| p.to_string())),
            self.cpu_weight,
            self.home_size
                .map_or_else(|| "unlimited (no own filesystem)".into(), human),
            self.home_watches,
        )
    }
}

/// `bytes` the way a profile would write it: `512 MiB`, `2 GiB`, `1536 KiB`, `100 B`.
pub fn human(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes >= 1 << shift && bytes.trailing_zeros() >= shift {
            return format!("{} {unit}", bytes >> shift);
        }
    }
    if bytes >= 1 << 20 {
        return format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20));
    }
    format!("{bytes} B")
}

/// The dotted key at fault and what is wrong with it; the profile finds its line.
pub(super) type Invalid = (String, String);

/// Validates `[limits]` (`spec`) for a tenant that is `confined` or not: an unconfined
/// tenant has none (it has no home and no cgroup of its own), a confined one gets the
/// defaults for every key it leaves out.
pub(super) fn validate(
    confined: bool,
    spec: Option<LimitsSpec>,
) -> Result<Option<Limits>, Invalid> {
    if !confined {
        return match spec {
            Some(_) => Err((
                "limits".into(),
                "[limits] applies to confined tenants: set tenant.confine = true".into(),
            )),
            None => Ok(None),
        };
    }
    let Some(spec) = spec else {
        return Ok(Some(Limits::default()));
    };
    let mut limits = Limits::default();
    if let Some(v) = &spec.memory {
        limits.memory = size_or_max(v, "limits.memory")?;
        if let Some(bytes) = limits.memory {
            at_least(
                bytes,
                MIN_MEMORY,
                "limits.memory",
                "a tenant could not even start",
            )?;
        }
    }
    if let Some(v) = &spec.pids {
        limits.pids = match v {
            toml::Value::String(s) if is_max(s) => None,
            _ => Some(integer(v, "limits.pids", 2, MAX_PIDS, PIDS_HINT)? as u32),
        };
    }
    if let Some(v) = &spec.cpu_weight {
        limits.cpu_weight = integer(v, "limits.cpu_weight", 1, 10_000, WEIGHT_HINT)? as u16;
    }
    if let Some(v) = &spec.home_size {
        let key = "limits.home_size";
        let bytes = match v {
            toml::Value::String(s) if is_max(s) => {
                return Err((
                    key.into(),
                    format!(
                    "{s:?}: a home image needs a size; leave the key out for a home without one"
                ),
                ))
            }
            _ => size(v, key)?,
        };
        at_least(bytes, MIN_HOME_SIZE, key, "ext4 needs room for its journal")?;
        limits.home_size = Some(bytes);
    }
    if let Some(v) = &spec.home_watches {
        let watches = integer(v, "limits.home_watches", 1, MAX_HOME_WATCHES, WATCHES_HINT)?;
        limits.home_watches = watches as u32;
    }
    Ok(Some(limits))
}

const SIZE_HINT: &str =
    "expected bytes (an integer) or a string like \"512M\" or \"2G\" (K, M, G, T: powers of 1024)";
const PIDS_HINT: &str = "expected a number of processes (2 or more) or \"max\"";
const WEIGHT_HINT: &str = "expected an integer weight in 1..=10000 (100 is the default share)";
const WATCHES_HINT: &str = "expected a number of directories to watch";

fn is_max(s: &str) -> bool {
    s.eq_ignore_ascii_case("max") || s.eq_ignore_ascii_case("unlimited")
}

fn size_or_max(v: &toml::Value, key: &str) -> Result<Option<u64>, Invalid> {
    match v {
        toml::Value::String(s) if is_max(s) => Ok(None),
        _ => size(v, key).map(Some),
    }
}

fn size(v: &toml::Value, key: &str) -> Result<u64, Invalid> {
    let fail = |what: String| (key.to_owned(), format!("{what}: {SIZE_HINT}, or \"max\""));
    match v {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| fail(n.to_string())),
        toml::Value::String(s) => parse_size(s).ok_or_else(|| fail(format!("{s:?}"))),
        other => Err(fail(format!("a {}", other.type_str()))),
    }
}

/// `"512M"`, `"2 GiB"`, `"1048576"`, `"64k"` → bytes; `None` if it is not a size or
/// does not fit in 64 bits. Decimal units (`MB`) are refused: they would be read as
/// binary ones by some and decimal by others.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

fn integer(v: &toml::Value, key: &str, min: u64, max: u64, hint: &str) -> Result<u64, Invalid> {
    let n = match v {
        toml::Value::Integer(n) => *n,
        toml::Value::String(s) => return Err((key.into(), format!("{s:?}: {hint}"))),
        other => return Err((key.into(), format!("a {}: {hint}", other.type_str()))),
    };
    match u64::try_from(n) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err((key.into(), format!("{n} is outside {min}..={max}: {hint}"))),
    }
}

fn at_least(bytes: u64, min: u64, key: &str, why: &str) -> Result<(), Invalid> {
    if bytes < min {
        return Err((
            key.into(),
            format!(
                "{} is below the minimum {} ({why})",
                human(bytes),
                human(min)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Profile;
    use super::*;
    use std::path::Path;

    fn parse(text: &str) -> Result<Profile, String> {
        Profile::parse(text, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    const CONFINED: &str = "[tenant]\nname = \"a\"\nconfine = true\n";

    #[test]
    fn defaults_for_confined_tenants_only() {
        let p = parse(CONFINED).unwrap();
        assert_eq!(p.limits, Some(Limits::default()));
        let l = Limits::default();
        assert_eq!(l.memory, Some(1 << 30));
        assert_eq!((l.pids, l.cpu_weight, l.home_size), (Some(512), 100, None));
        assert_eq!(l.home_watches, 4096);
        assert_eq!(parse("[tenant]\nname = \"a\"\n").unwrap().limits, None);
    }

    #[test]
    fn values_parse() {
        let p = parse(&format!(
            "{CONFINED}[limits]\nmemory = \"512M\"\npids = 64\ncpu_weight = 250\n\
             home_size = \"2G\"\nhome_watches = 100\n"
        ))
        .unwrap();
        let l = p.limits.unwrap();
        assert_eq!(l.memory, Some(512 << 20));
        assert_eq!(l.pids, Some(64));
        assert_eq!(l.cpu_weight, 250);
        assert_eq!(l.cpu_shares(), 2560);
        assert_eq!(l.home_size, Some(2 << 30));
        assert_eq!(l.home_watches, 100);
        let p = parse(&format!(
            "{CONFINED}[limits]\nmemory = \"max\"\npids = \"unlimited\"\n"
        ))
        .unwrap();
        let l = p.limits.unwrap();
        assert_eq!((l.memory, l.pids), (None, None));
        let p = parse(&format!("{CONFINED}[limits]\nmemory = 16777216\n")).unwrap();
        assert_eq!(p.limits.unwrap().memory, Some(16 << 20));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64k"), Some(64 << 10));
        assert_eq!(parse_size("2 GiB"), Some(2 << 30));
        assert_eq!(parse_size("3T"), Some(3 << 40));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("1GB"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(1536 << 10), "1536 KiB");
        assert_eq!(human(100), "100 B");
        assert_eq!(Limits::default().cpu_shares(), 1024);
        let weight_one = Limits {
            cpu_weight: 1,
            ..Limits::default()
        };
        assert_eq!(weight_one.cpu_shares(), 10);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases = [
            (
                "memory = \"lots\"",
                "t.toml:5: limits.memory: \"lots\": expected bytes",
            ),
            (
                "memory = \"1GB\"",
                "t.toml:5: limits.memory: \"1GB\": expected bytes",
            ),
            ("memory = -5", "t.toml:5: limits.memory: -5: expected bytes"),
            (
                "memory = true",
                "t.toml:5: limits.memory: a boolean: expected bytes",
            ),
            (
                "memory = \"1M\"",
                "t.toml:5: limits.memory: 1 MiB is below the minimum 8 MiB",
            ),
            (
                "pids = 1",
                "t.toml:5: limits.pids: 1 is outside 2..=4194304",
            ),
            (
                "pids = \"many\"",
                "t.toml:5: limits.pids: \"many\": expected a number",
            ),
            (
                "cpu_weight = 0",
                "t.toml:5: limits.cpu_weight: 0 is outside 1..=10000",
            ),
            (
                "cpu_weight = 10001",
                "t.toml:5: limits.cpu_weight: 10001 is outside 1..=10000",
            ),
            (
                "cpu_weight = 1.5",
                "t.toml:5: limits.cpu_weight: a float: expected an integer",
            ),
            (
                "home_size = \"4M\"",
                "t.toml:5: limits.home_size: 4 MiB is below the minimum 16 MiB",
            ),
            (
                "home_size = \"max\"",
                "t.toml:5: limits.home_size: \"max\": a home image needs a size",
            ),
            (
                "home_watches = 0",
                "t.toml:5: limits.home_watches: 0 is outside 1..=1048576",
            ),
            (
                "swap = \"1G\"",
                "t.toml:5: limits.swap: unknown key (expected one of `memory`",
            ),
        ];
        for (line, want) in cases {
            let err = parse(&format!("{CONFINED}[limits]\n{line}\n")).unwrap_err();
            assert!(err.starts_with(want), "want {want:?}, got {err:?}");
        }
        // The failing key on a later line, with another one before it.
        let err = parse(&format!(
            "{CONFINED}[limits]\npids = 10\n\ncpu_weight = -3\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("t.toml:7: limits.cpu_weight: -3 is outside"),
            "{err}"
        );
        let err = parse("[tenant]\nname = \"a\"\n[limits]\npids = 10\n").unwrap_err();
        assert!(
            err.starts_with("t.toml:3: limits: [limits] applies to confined tenants"),
            "{err}"
        );
    }
}
