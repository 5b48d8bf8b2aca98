//! The replay decision: every nonce seen is kept until its request expires, and a
//! request whose nonce is kept is refused. The cache is text the caller persists
//! (`<state>/keyring/nonces`), so a replay after a restart is refused too. When full,
//! it refuses new requests rather than forget a live nonce: forgetting would let that
//! request run twice.
//!
//! ```text
//! supervise-nonces/1
//! 0f1e2d3c4b5a69788796a5b4c3d2e1f0 1796601900
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::refusal::Refusal;
use crate::request::hex;

const MAGIC: &str = "supervise-nonces/1";
/// Live nonces kept at most, by default.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// Nonces and when each may be forgotten (its request's expiry, unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceCache {
    seen: HashMap<[u8; 16], u64>,
    capacity: usize,
}

impl NonceCache {
    /// An empty cache holding at most `capacity` live nonces.
    pub fn new(capacity: usize) -> NonceCache {
        NonceCache {
            seen: HashMap::new(),
            capacity,
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
        self.seen.retain(|_, until| *until > now);
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
        for (nonce, until) in entries {
            let _ = writeln!(out, "{} {until}", hex(nonce));
        }
        out
    }

    /// Reads persisted text. A damaged file is an error, never an empty cache: that
    /// would forget every live nonce.
    pub fn parse(text: &str, capacity: usize) -> Result<NonceCache, String> {
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(format!("the nonce cache does not start with {MAGIC:?}"));
        }
        let mut cache = NonceCache::new(capacity);
        for (index, line) in lines.enumerate() {
            let bad = || format!("nonce cache line {}: {line:?}", index + 2);
            let (nonce, until) = line.split_once(' ').ok_or_else(bad)?;
            // As written by encode(): lower-case hex, decimal without sign or leading
            // zeros, each nonce once.
            let hex_ok = nonce.len() == 32
                && nonce
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let until_ok = !until.is_empty()
                && until.bytes().all(|b| b.is_ascii_digit())
                && (until == "0" || !until.starts_with('0'));
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
        Ok(cache)
    }
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
        assert!(NonceCache::parse("", 4).is_err());
        assert!(NonceCache::parse("supervise-nonces/1\nzz 5\n", 4).is_err());
        assert!(
            NonceCache::parse("supervise-nonces/1\n0f1e2d3c4b5a69788796a5b4c3d2e1f0\n", 4).is_err()
        );
        assert!(NonceCache::parse("supervise-nonces/1\n", 4)
            .unwrap()
            .is_empty());
        let line = "0f1e2d3c4b5a69788796a5b4c3d2e1f0 5";
        let twice = format!("supervise-nonces/1\n{line}\n{line}\n");
        assert!(NonceCache::parse(&twice, 4).is_err());
        let upper = "supervise-nonces/1\n0F1E2D3C4B5A69788796A5B4C3D2E1F0 5\n";
        assert!(NonceCache::parse(upper, 4).is_err());
        let signed = "supervise-nonces/1\n0f1e2d3c4b5a69788796a5b4c3d2e1f0 +5\n";
        assert!(NonceCache::parse(signed, 4).is_err());
    }
}
