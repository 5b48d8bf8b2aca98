//! Hand-rolled `--key value` / `--flag` parsing (no clap, to keep binaries tiny).

use crate::{arm_timeout, usage};
use std::str::FromStr;

/// Hand-parsed command line: `--key value` pairs and bare `--flag`s.
#[derive(Debug)]
pub struct Args {
    vals: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()`, accepting only the given keys (plus
    /// `timeout-secs`), then arms the timeout. Dies with exit 2 on bad usage.
    pub fn init(value_keys: &[&str], flag_keys: &[&str]) -> Args {
        let mut vals = Vec::new();
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                usage(&format!("unexpected argument {a:?}"))
            };
            if flag_keys.contains(&key) {
                flags.push(key.to_string());
            } else if value_keys.contains(&key) || key == "timeout-secs" {
                let Some(v) = it.next() else {
                    usage(&format!("--{key} needs a value"))
                };
                vals.push((key.to_string(), v));
            } else {
                usage(&format!("unknown option --{key}"));
            }
        }
        let args = Args { vals, flags };
        arm_timeout(args.num("timeout-secs", 30u32));
        args
    }

    /// Last value given for `--key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vals
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Value of a mandatory `--key`.
    pub fn req(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| usage(&format!("--{key} is required")))
    }

    /// Parsed value of `--key`, or `default` when absent.
    pub fn num<T: FromStr>(&self, key: &str, default: T) -> T {
        match self.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| usage(&format!("--{key}: bad value {v:?}"))),
        }
    }

    /// Whether the bare `--key` flag was given.
    pub fn flag(&self, key: &str) -> bool {
        self.flags.iter().any(|f| f == key)
    }

    /// `--key yes|no`, or `default` when absent.
    pub fn yes_no(&self, key: &str, default: bool) -> bool {
        match self.get(key) {
            None => default,
            Some("yes") => true,
            Some("no") => false,
            Some(v) => usage(&format!("--{key} must be yes or no, got {v:?}")),
        }
    }
}
