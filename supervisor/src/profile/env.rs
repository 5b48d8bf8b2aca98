//! The tenant's environment: clean, like `docker run` and `systemd-run` give, never the
//! supervisor's (root's) own.
//!
//! From lowest to highest precedence:
//! 1. defaults: `PATH` ([`DEFAULT_PATH`]); `HOME`, `USER` and `LOGNAME` of the tenant's
//!    uid from the passwd database (a confined tenant's home is its registry home; a
//!    uid without an entry gets `HOME=/` and no `USER`/`LOGNAME`); and, when the
//!    supervisor has them, its `LANG`, every `LC_*`, `TZ` and `TERM` — they describe
//!    the operator's locale, time zone and terminal (the tenant shares the
//!    supervisor's stdio), not its privileges;
//! 2. the profile's `tenant.env` table;
//! 3. `supervise run --env NAME=VALUE`, or `--env NAME`: the supervisor's value of
//!    NAME (as `docker run -e NAME`); when the supervisor has none, the argument
//!    changes nothing.
//!
//! A confined tenant's `SUPERVISE_TENANT`, `SUPERVISE_LABEL`, `SUPERVISE_ADDRESS` and
//! `SUPERVISE_RANGE` are facts the supervisor states: neither the profile nor `--env`
//! may set them.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The tenant's `PATH` (Debian's default for root; the command itself is resolved
/// with the supervisor's `PATH` before launch).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables a confined tenant gets from the supervisor and nobody else.
pub const CONFINED_FIXED: &[&str] = &[
    "SUPERVISE_TENANT",
    "SUPERVISE_LABEL",
    "SUPERVISE_ADDRESS",
    "SUPERVISE_RANGE",
];

/// Whether the supervisor's variable `name` is passed on by default.
fn passed_through(name: &[u8]) -> bool {
    matches!(name, b"LANG" | b"TZ" | b"TERM") || name.starts_with(b"LC_")
}

/// Checks an environment variable's name: non-empty, no `=`, no NUL byte.
pub fn check_name(name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("an environment variable needs a name".into());
    }
    if name.contains(&b'=') {
        return Err(format!(
            "{:?}: a variable name cannot contain '='",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&0) {
        return Err(format!(
            "{:?}: a variable name cannot contain a NUL byte",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

/// One `--env` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvArg {
    /// The variable.
    pub name: OsString,
    /// `NAME=VALUE`'s value; None for a bare `NAME` (copy the supervisor's).
    pub value: Option<OsString>,
}

impl EnvArg {
    /// Parses `NAME=VALUE` or `NAME` (clap's value parser for `--env`).
    pub fn parse(arg: &OsStr) -> Result<EnvArg, String> {
        let bytes = arg.as_bytes();
        let (name, value) = match bytes.iter().position(|&b| b == b'=') {
            Some(i) => (
                &bytes[..i],
                Some(OsString::from_vec(bytes[i + 1..].to_vec())),
            ),
            None => (bytes, None),
        };
        check_name(name).map_err(|m| format!("{m} (expected NAME=VALUE or NAME)"))?;
        Ok(EnvArg {
            name: OsStr::from_bytes(name).to_owned(),
            value,
        })
    }
}

/// Whose HOME, USER and LOGNAME the tenant gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `HOME`.
    pub home: PathBuf,
    /// `USER` and `LOGNAME`; None for a uid without a passwd entry.
    pub user: Option<String>,
}

/// Where the tenant's variables come from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The tenant's account.
    pub identity: &'a Identity,
    /// The supervisor's own environment (`std::env::vars_os()`).
    pub supervisor: &'a [(OsString, OsString)],
    /// `tenant.env` (validated by the profile).
    pub profile: &'a [(String, String)],
    /// `--env` arguments, in order (a later one wins).
    pub cli: &'a [EnvArg],
    /// Set by the supervisor last (a confined tenant's `SUPERVISE_*`).
    pub fixed: &'a [(String, String)],
}

/// The tenant's environment, in a stable order (defaults first, then additions in
/// the order they were given). An error names the `--env` argument at fault.
pub fn compose(s: Sources<'_>) -> Result<Vec<(OsString, OsString)>, String> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |name: OsString, value: OsString| {
        match env.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => env.push((name, value)),
        };
    };
    set("PATH".into(), DEFAULT_PATH.into());
    set("HOME".into(), s.identity.home.clone().into());
    if let Some(user) = &s.identity.user {
        set("USER".into(), user.into());
        set("LOGNAME".into(), user.into());
    }
    for (name, value) in s.supervisor {
        if passed_through(name.as_bytes()) {
            set(name.clone(), value.clone());
        }
    }
    for (name, value) in s.profile {
        set(name.into(), value.into());
    }
    for arg in s.cli {
        if s.fixed.iter().any(|(f, _)| *f.as_str() == *arg.name) {
            return Err(format!(
                "--env {}: set by the supervisor for a confined tenant",
                arg.name.to_string_lossy()
            ));
        }
        let value = match &arg.value {
            Some(v) => Some(v.clone()),
            None => s
                .supervisor
                .iter()
                .find(|(n, _)| *n == arg.name)
                .map(|(_, v)| v.clone()),
        };
        if let Some(v) = value {
            set(arg.name.clone(), v);
        }
    }
    for (name, value) in s.fixed {
        set(name.into(), value.into());
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(n, v)| (OsString::from(n), OsString::from(v)))
            .collect()
    }

    fn arg(s: &str) -> EnvArg {
        EnvArg::parse(OsStr::new(s)).unwrap()
    }

    #[test]
    fn defaults_then_profile_then_cli() {
        let identity = Identity {
            home: "/home/t".into(),
            user: Some("t".into()),
        };
        let supervisor = os(&[
            ("PATH", "/root/bin"),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("TZ", "UTC"),
            ("SECRET", "s"),
            ("LD_PRELOAD", "/x.so"),
            ("FROM_HOST", "h"),
        ]);
        let profile = vec![
            ("A".to_owned(), "profile".to_owned()),
            ("LANG".to_owned(), "de_DE.UTF-8".to_owned()),
            ("B".to_owned(), "profile".to_owned()),
        ];
        let cli = [
            arg("A=cli"),
            arg("FROM_HOST"),
            arg("B"),
            arg("EMPTY="),
            arg("X=a=b"),
        ];
        let env = compose(Sources {
            identity: &identity,
            supervisor: &supervisor,
            profile: &profile,
            cli: &cli,
            fixed: &[],
        })
        .unwrap();
        assert_eq!(
            env,
            os(&[
                ("PATH", DEFAULT_PATH),
                ("HOME", "/home/t"),
                ("USER", "t"),
                ("LOGNAME", "t"),
                ("LANG", "de_DE.UTF-8"),
                ("LC_TIME", "en_GB.UTF-8"),
                ("TZ", "UTC"),
                ("A", "cli"),
                ("B", "profile"),
                ("FROM_HOST", "h"),
                ("EMPTY", ""),
                ("X", "a=b"),
            ])
        );
    }

    #[test]
    fn no_account_and_fixed_variables() {
        let identity = Identity {
            home: "/".into(),
            user: None,
        };
        let fixed = vec![("SUPERVISE_TENANT".to_owned(), "a".to_owned())];
        let base = Sources {
            identity: &identity,
            supervisor: &[],
            profile: &[],
            cli: &[],
            fixed: &fixed,
        };
        let env = compose(base).unwrap();
        assert_eq!(
            env,
            os(&[
                ("PATH", DEFAULT_PATH),
                ("HOME", "/"),
                ("SUPERVISE_TENANT", "a")
            ])
        );
        let cli = [arg("SUPERVISE_TENANT=b")];
        let err = compose(Sources { cli: &cli, ..base }).unwrap_err();
        assert_eq!(
            err,
            "--env SUPERVISE_TENANT: set by the supervisor for a confined tenant"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "=x", "A B=", "\u{0}"] {
            let e = EnvArg::parse(OsStr::new(bad));
            if bad == "A B=" {
                assert!(e.is_ok(), "only '=' and NUL are refused");
                continue;
            }
            assert!(e.is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            EnvArg::parse(OsStr::new("=x")).unwrap_err(),
            "an environment variable needs a name (expected NAME=VALUE or NAME)"
        );
        assert_eq!(
            check_name(b"A=B").unwrap_err(),
            "\"A=B\": a variable name cannot contain '='"
        );
    }
}
