//! The replay decision: every nonce seen is kept until its request expires, and a
//! request whose nonce is kept is refused. The cache is text the caller persists
//! (`<state>/keyring/nonces`), so a replay after a restart is refused too. When full,
//! it refuses new requests rather than forget a live nonce: forgetting would let that
//! request run twice.
//!
//! The cache also remembers the latest time it was asked at: a clock stepped back
//! must not bring back a request whose nonce was forgotten when it expired. The last
//! line counts the entries, so a file cut short at a line boundary is seen to be.
//!
//! ```text
//! supervise-nonces/2
//! clock 1796601650
//! 0f1e2d3c4b5a69788796a5b4c3d2e1f0 1796601900
//! end 1
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::refusal::Refusal;
use crate::request::hex;

const MAGIC: &str = "supervise-nonces/2";
/// The first format (no clock, no count), still read so an upgrade keeps its nonces.
const MAGIC_V1: &str = "supervise-nonces/1";
/// Live nonces kept at most, by default.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Nonces and when each may be forgotten (its request's expiry, unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceCache {
    seen: HashMap<[u8; 16], u64>,
    capacity: usize,
    /// The latest `now` seen (unix s).
    clock: u64,
}

impl NonceCache {
    /// An empty cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            seen: HashMap::new(),
            capacity,
            clock: 0,
        }
    }

    /// Live nonces.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none are kept.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `nonce` (valid until `expires`) or refuses: seen before and not yet
    /// expired, or the cache is full of live nonces. Expired ones are forgotten first.
    pub fn admit(&mut self, nonce: [u8; 16], expires: u64, now: u64) -> Result<(), Refusal> {
        // Never earlier than a time already seen: what was forgotten stays expired.
        let now = now.max(self.clock);
        self.clock = now;
        self.seen.retain(|_, until| *until > now);
        if expires <= now {
            return Err(Refusal::new(
                "expired",
                format!("the request expired at {expires}; this node's clock has already read {now} (was it set back?)"),
            ));
        }
        if let Some(until) = self.seen.get(&nonce) {
            return Err(Refusal::new(
                "replayed",
                format!(
                    "nonce {} was already used (it is remembered until {until}); sign a new request",
                    hex(&nonce)
                ),
            ));
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::new(
                "nonce_cache_full",
                format!(
                    "{} requests are still live (the limit); no live nonce is forgotten, so new requests wait until some expire",
                    self.seen.len()
                ),
            ));
        }
        self.seen.insert(nonce, expires);
        Ok(())
    }

    /// The text to persist, sorted so equal caches write equal files.
    pub fn encode(&self) -> String {
        let mut entries: Vec<_> = self.seen.iter().collect();
        entries.sort();
        let mut out = String::with_capacity(16 + entries.len() * 44);
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "clock {}", self.clock);
        for (nonce, until) in &entries {
            let _ = writeln!(out, "{} {until}", hex(*nonce));
        }
        let _ = writeln!(out, "end {}", entries.len());
        out
    }

    /// Reads persisted text. A damaged file is an error, never an empty cache: that
    /// would forget every live nonce.
    pub fn parse(text: &str, capacity: usize) -> Result<NonceCache, String> {
        let mut lines = text.lines();
        let v1 = match lines.next() {
            Some(MAGIC) => false,
            Some(MAGIC_V1) => true,
            _ => return Err(format!("the nonce cache does not start with {MAGIC:?}")),
        };
        let mut cache = NonceCache::new(capacity);
        if !v1 {
            let clock = lines.next().and_then(|l| l.strip_prefix("clock "));
            cache.clock = clock
                .filter(|c| canonical_decimal(c))
                .and_then(|c| c.parse().ok())
                .ok_or("the nonce cache's second line is not `clock N`")?;
        }
        let mut ended = v1;
        for (index, line) in lines.enumerate() {
            let bad = || format!("nonce cache line {}: {line:?}", index + 3);
            if ended && !v1 {
                return Err(format!("nonce cache: line {} after `end`", index + 3));
            }
            if let Some(count) = line.strip_prefix("end ") {
                if count != cache.seen.len().to_string() {
                    return Err(format!(
                        "nonce cache: `end {count}` but {} entries (cut short?)",
                        cache.seen.len()
                    ));
                }
                ended = true;
                continue;
            }
            let (nonce, until) = line.split_once(' ').ok_or_else(bad)?;
            // As written by encode(): lower-case hex, decimal without sign or leading
            // zeros, each nonce once.
            let hex_ok = nonce.len() == 32
                && nonce
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let until_ok = canonical_decimal(until);
            if !hex_ok || !until_ok {
                return Err(bad());
            }
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = nonce
                    .get(2 * i..2 * i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(bad)?;
            }
            let until: u64 = until.parse().map_err(|_| bad())?;
            // More than the capacity on disk (a lowered limit) is kept: they are live.
            if cache.seen.insert(bytes, until).is_some() {
                return Err(format!(
                    "nonce cache line {}: {nonce} is listed twice",
                    index + 2
                ));
            }
        }
        if !ended {
            return Err("nonce cache: no `end` line (cut short?)".into());
        }
        Ok(cache)
    }
}

fn canonical_decimal(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_until_its_request_expires_and_survives_a_round_trip() {
        let mut cache = NonceCache::new(4);
        cache.admit([1; 16], 100, 10).unwrap();
        assert_eq!(cache.admit([1; 16], 100, 50).unwrap_err().code, "replayed");
        let text = cache.encode();
        let mut reread = NonceCache::parse(&text, 4).unwrap();
        assert_eq!(reread, cache);
        assert_eq!(reread.admit([1; 16], 100, 99).unwrap_err().code, "replayed");
        // Once the request has expired, its nonce is forgotten (the request itself is
        // refused as expired by then).
        reread.admit([1; 16], 200, 100).unwrap();
    }

    #[test]
    fn a_full_cache_refuses_and_never_evicts_a_live_nonce() {
        let mut cache = NonceCache::new(2);
        cache.admit([1; 16], 100, 0).unwrap();
        cache.admit([2; 16], 100, 0).unwrap();
        assert_eq!(
            cache.admit([3; 16], 100, 0).unwrap_err().code,
            "nonce_cache_full"
        );
        assert_eq!(cache.admit([1; 16], 100, 0).unwrap_err().code, "replayed");
        assert_eq!(cache.len(), 2);
        cache.admit([3; 16], 300, 100).unwrap(); // both expired at 100
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_damaged_cache_is_an_error_not_an_empty_one() {
        let head = "supervise-nonces/2\nclock 7\n";
        let line = "0f1e2d3c4b5a69788796a5b4c3d2e1f0 5";
        let good = format!("{head}{line}\nend 1\n");
        assert_eq!(NonceCache::parse(&good, 4).unwrap().len(), 1);
        assert!(NonceCache::parse(&format!("{head}end 0\n"), 4)
            .unwrap()
            .is_empty());
        for bad in [
            String::new(),
            "supervise-nonces/2\nend 0\n".to_owned(),
            "supervise-nonces/3\nclock 1\nend 0\n".to_owned(),
            format!("{head}zz 5\nend 1\n"),
            format!("{head}0f1e2d3c4b5a69788796a5b4c3d2e1f0\nend 1\n"),
            format!("{head}{line}\n{line}\nend 2\n"),
            format!("{head}{}\nend 1\n", line.to_uppercase()),
            format!("{head}0f1e2d3c4b5a69788796a5b4c3d2e1f0 +5\nend 1\n"),
            // Cut short at a line boundary: the count no longer matches, or is gone.
            format!("{head}end 1\n"),
            format!("{head}{line}\n"),
            format!("{head}{line}\nend 1\n{line}\n"),
        ] {
            assert!(NonceCache::parse(&bad, 4).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_first_format_cache_is_still_read() {
        let v1 = "supervise-nonces/1\n0f1e2d3c4b5a69788796a5b4c3d2e1f0 5\n";
        let mut cache = NonceCache::parse(v1, 4).unwrap();
        assert_eq!(
            cache
                .admit(
                    [
                        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4,
                        0xc3, 0xd2, 0xe1, 0xf0
                    ],
                    5,
                    1
                )
                .unwrap_err()
                .code,
            "replayed"
        );
        assert!(cache.encode().starts_with("supervise-nonces/2\n"));
    }

    #[test]
    fn a_clock_set_back_does_not_bring_back_a_forgotten_request() {
        let mut cache = NonceCache::new(4);
        cache.admit([1; 16], 1300, 1100).unwrap();
        cache.admit([2; 16], 1600, 1301).unwrap(); // forgets [1] (expired at 1300)
        let mut cache = NonceCache::parse(&cache.encode(), 4).unwrap();
        // The clock now reads 1296: [1] would look valid, but the node has seen 1301.
        assert_eq!(
            cache.admit([1; 16], 1300, 1296).unwrap_err().code,
            "expired"
        );
        assert_eq!(
            cache.admit([2; 16], 1600, 1296).unwrap_err().code,
            "replayed"
        );
    }
}
