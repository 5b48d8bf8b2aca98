//! Which events are shown: the operator's filter (`SUPERVISE_LOG`) plus per-component
//! overrides set over the control socket (`ctl level DPID LEVEL --for 10m`).
//!
//! An override on a DPID also covers the components under it (`pg-demo/pg-clients`
//! covers its connections and rules); the longest matching DPID wins. An override with
//! a duration reverts by itself: [`Levels::expire`] drops it once its time is up (the
//! control thread calls it when the earliest one is due), and until then every check
//! also ignores an expired one, so a revert is never late by more than a check.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use tracing_core::LevelFilter;

/// The operator's filter: a default level and per-target levels, the subset of
/// `EnvFilter` syntax the README documents (`info`, `info,supervise::connection=debug`).
#[derive(Debug, Clone)]
pub struct Directives {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Directives {
    /// Parses `level` or `target=level`, comma-separated. Unknown levels are errors.
    pub fn parse(text: &str) -> Result<Directives, String> {
        let mut directives = Directives {
            default: LevelFilter::INFO,
            targets: Vec::new(),
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((target, level)) => directives
                    .targets
                    .push((target.trim().to_owned(), parse_level(level)?)),
                None => directives.default = parse_level(part)?,
            }
        }
        // Longest target first: the most specific directive decides.
        directives
            .targets
            .sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        Ok(directives)
    }

    /// The level for events of `target`.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(t, _)| {
                target == t
                    || (target.starts_with(t.as_str()) && target[t.len()..].starts_with("::"))
            })
            .map_or(self.default, |(_, l)| *l)
    }

    fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, LevelFilter::max)
    }
}

/// Parses a level name (`error`, `warn`, `info`, `debug`, `trace`, `off`).
pub fn parse_level(text: &str) -> Result<LevelFilter, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(LevelFilter::OFF),
        "error" => Ok(LevelFilter::ERROR),
        "warn" => Ok(LevelFilter::WARN),
        "info" => Ok(LevelFilter::INFO),
        "debug" => Ok(LevelFilter::DEBUG),
        "trace" => Ok(LevelFilter::TRACE),
        other => Err(format!(
            "{other:?} is not a level (off, error, warn, info, debug, trace)"
        )),
    }
}

/// One override.
#[derive(Debug, Clone)]
pub struct Override {
    /// The DPID it covers (and everything under it).
    pub dpid: String,
    /// Its level.
    pub level: LevelFilter,
    /// When it reverts; `None`: until changed.
    pub until: Option<Instant>,
}

/// The filter plus the overrides.
#[derive(Debug)]
pub struct Levels {
    base: Directives,
    overrides: RwLock<Vec<Override>>,
    /// Any override set: checks must look at each event's DPID.
    active: AtomicBool,
    /// The most verbose override level (as `level_index`), so events more verbose than
    /// anything allows are refused without looking at their fields.
    max_override: AtomicU8,
}

fn level_index(level: LevelFilter) -> u8 {
    match level.into_level() {
        None => 0,
        Some(tracing_core::Level::ERROR) => 1,
        Some(tracing_core::Level::WARN) => 2,
        Some(tracing_core::Level::INFO) => 3,
        Some(tracing_core::Level::DEBUG) => 4,
        Some(tracing_core::Level::TRACE) => 5,
    }
}

fn level_of_index(index: u8) -> LevelFilter {
    [
        LevelFilter::OFF,
        LevelFilter::ERROR,
        LevelFilter::WARN,
        LevelFilter::INFO,
        LevelFilter::DEBUG,
        LevelFilter::TRACE,
    ][usize::from(index.min(5))]
}

impl Levels {
    /// No overrides yet.
    pub fn new(base: Directives) -> Levels {
        Levels {
            base,
            overrides: RwLock::new(Vec::new()),
            active: AtomicBool::new(false),
            max_override: AtomicU8::new(0),
        }
    }

    /// The most verbose level any override allows.
    pub fn max_override(&self) -> LevelFilter {
        level_of_index(self.max_override.load(Ordering::Acquire))
    }

    fn note_overrides(&self, overrides: &[Override]) {
        let max = overrides
            .iter()
            .map(|o| level_index(o.level))
            .max()
            .unwrap_or(0);
        self.max_override.store(max, Ordering::Release);
        self.active.store(!overrides.is_empty(), Ordering::Release);
    }

    /// Whether per-DPID checks are needed.
    pub fn has_overrides(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The level without overrides.
    pub fn base_for(&self, target: &str) -> LevelFilter {
        self.base.level_for(target)
    }

    /// The effective level of an event of `target` emitted by `dpid`.
    pub fn level_for(&self, target: &str, dpid: &str) -> LevelFilter {
        if self.has_overrides() {
            let now = Instant::now();
            let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
            let best = overrides
                .iter()
                .filter(|o| o.until.is_none_or(|t| t > now) && covers(&o.dpid, dpid))
                .max_by_key(|o| o.dpid.len());
            if let Some(o) = best {
                return o.level;
            }
        }
        self.base.level_for(target)
    }

    /// The most verbose level anything may be shown at (the callsite hint).
    pub fn max(&self) -> LevelFilter {
        let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
        overrides
            .iter()
            .map(|o| o.level)
            .fold(self.base.max(), LevelFilter::max)
    }

    /// Sets (or replaces) the override of `dpid`; `duration`: revert after it.
    pub fn set(&self, dpid: &str, level: LevelFilter, duration: Option<Duration>) {
        {
            let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
            overrides.retain(|o| o.dpid != dpid);
            overrides.push(Override {
                dpid: dpid.to_owned(),
                level,
                until: duration.map(|d| Instant::now() + d),
            });
            self.note_overrides(&overrides);
        }
        tracing_core::callsite::rebuild_interest_cache();
    }

    /// Drops the override of `dpid`; whether there was one.
    pub fn clear(&self, dpid: &str) -> bool {
        let removed = {
            let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
            let before = overrides.len();
            overrides.retain(|o| o.dpid != dpid);
            self.note_overrides(&overrides);
            before != overrides.len()
        };
        tracing_core::callsite::rebuild_interest_cache();
        removed
    }

    /// Drops overrides whose time is up; returns them, and when the next one is due.
    pub fn expire(&self) -> (Vec<Override>, Option<Instant>) {
        let now = Instant::now();
        let (expired, next) = {
            let mut overrides = self.overrides.write().unwrap_or_else(|p| p.into_inner());
            let (expired, kept): (Vec<_>, Vec<_>) = overrides
                .drain(..)
                .partition(|o| o.until.is_some_and(|t| t <= now));
            *overrides = kept;
            self.note_overrides(&overrides);
            (expired, overrides.iter().filter_map(|o| o.until).min())
        };
        if !expired.is_empty() {
            tracing_core::callsite::rebuild_interest_cache();
        }
        (expired, next)
    }
}

/// Whether an override on `scope` covers `dpid` (itself or a component under it).
fn covers(scope: &str, dpid: &str) -> bool {
    dpid == scope || (dpid.starts_with(scope) && dpid.as_bytes().get(scope.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_pick_the_most_specific_target() {
        let d = Directives::parse("warn, supervise::connection=debug,supervise=info").unwrap();
        assert_eq!(d.level_for("supervise::connection"), LevelFilter::DEBUG);
        assert_eq!(d.level_for("supervise::label"), LevelFilter::INFO);
        assert_eq!(d.level_for("other"), LevelFilter::WARN);
        assert!(Directives::parse("loud")
            .unwrap_err()
            .contains("not a level"));
    }

    #[test]
    fn overrides_cover_their_subtree_and_expire() {
        let levels = Levels::new(Directives::parse("info").unwrap());
        levels.set("pg/s", LevelFilter::DEBUG, None);
        levels.set(
            "pg/s/c2",
            LevelFilter::ERROR,
            Some(Duration::from_millis(30)),
        );
        assert_eq!(levels.level_for("t", "pg/s/c1"), LevelFilter::DEBUG);
        assert_eq!(levels.level_for("t", "pg/s/c2"), LevelFilter::ERROR);
        assert_eq!(levels.level_for("t", "pg/s2/c1"), LevelFilter::INFO);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            levels.level_for("t", "pg/s/c2"),
            LevelFilter::DEBUG,
            "expired override ignored"
        );
        let (expired, next) = levels.expire();
        assert_eq!(expired.len(), 1);
        assert_eq!(next, None);
        assert!(levels.clear("pg/s"));
        assert!(!levels.has_overrides());
    }
}
