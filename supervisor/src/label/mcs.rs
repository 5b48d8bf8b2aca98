//! MCS-style category labels (`s0:cX,cY`) derived from a tenant's uid.
//!
//! # The mapping
//!
//! A node hands tenants uids from a contiguous [`NodeRange`] `base_uid .. base_uid + count`.
//! A uid's *index* is `uid - base_uid`. The index is turned into a pair of distinct
//! categories `X < Y` from `c0..=c1023` with the combinatorial number system of degree 2:
//!
//! ```text
//! index = C(Y, 2) + C(X, 1) = Y * (Y - 1) / 2 + X        with 0 <= X < Y <= 1023
//! ```
//!
//! Every index in `0 .. C(1024, 2)` has exactly one such pair and every pair exactly one
//! index, so distinct uids in a range always get distinct labels: the mapping is a
//! bijection, not a hash, and needs no collision handling. The first labels are
//! `s0:c0,c1`, `s0:c0,c2`, `s0:c1,c2`, `s0:c0,c3`, ...; the last is `s0:c1022,c1023`.
//!
//! The bound is [`MAX_TENANTS`] = C(1024, 2) = 523,776 tenants per node range. A uid below
//! the base or at/after `base_uid + count` is a typed [`McsError`], never a wrapped label.
//!
//! Only the sensitivity `s0` is used: the labels separate tenants from one another
//! (categories), they do not express levels.

use std::fmt;
use std::str::FromStr;

/// Number of categories, `c0..=c1023`, as in SELinux's default MCS policy.
pub const CATEGORIES: u32 = 1024;

/// How many distinct two-category labels exist: C(1024, 2). The most tenants one node
/// range can hold.
pub const MAX_TENANTS: u32 = CATEGORIES * (CATEGORIES - 1) / 2;

/// A tenant's label: sensitivity `s0` and two distinct categories, lowest first.
///
/// Stored as a string (`s0:c3,c17`) in the registry so the file stays readable.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Label {
    low: u16,
    high: u16,
}

/// Why a uid, index or range cannot be mapped to a label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum McsError {
    #[error("uid {uid} is below the node range, which starts at {base}")]
    BelowBase { uid: u32, base: u32 },
    #[error("uid {uid} is past the node range, whose last uid is {last}")]
    AboveRange { uid: u32, last: u32 },
    #[error("label index {index} is out of bounds: only {MAX_TENANTS} two-category labels exist")]
    IndexTooLarge { index: u32 },
    #[error("a node range of {count} uids is too large: at most {MAX_TENANTS} tenants get distinct labels")]
    RangeTooLarge { count: u32 },
    #[error("a node range must hold at least one uid")]
    EmptyRange,
    #[error("node range {base} + {count} overflows the uid space")]
    RangeOverflow { base: u32, count: u32 },
}

/// Why a string is not a label; each variant quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseLabelError {
    #[error("label {input:?}: expected `s0:cX,cY`, missing the `s0:` sensitivity")]
    MissingSensitivity { input: String },
    #[error("label {input:?}: sensitivity {found:?} is not supported, only `s0`")]
    WrongSensitivity { input: String, found: String },
    #[error("label {input:?}: expected exactly two categories `cX,cY`")]
    CategoryCount { input: String },
    #[error("label {input:?}: category {part:?} is not of the form `c<number>`")]
    BadCategory { input: String, part: String },
    #[error("label {input:?}: category c{value} is out of range, categories are c0..=c1023")]
    CategoryOutOfRange { input: String, value: u32 },
    #[error("label {input:?}: categories must be distinct and ascending, got c{low},c{high}")]
    NotAscending { input: String, low: u32, high: u32 },
}

impl Label {
    /// Builds a label from two categories; they must be distinct, ascending and < 1024.
    pub fn new(low: u32, high: u32) -> Result<Label, ParseLabelError> {
        let input = format!("s0:c{low},c{high}");
        for value in [low, high] {
            if value >= CATEGORIES {
                return Err(ParseLabelError::CategoryOutOfRange { input, value });
            }
        }
        if low >= high {
            return Err(ParseLabelError::NotAscending { input, low, high });
        }
        // Both are < 1024 (checked above), so they fit a u16.
        Ok(Label {
            low: low as u16,
            high: high as u16,
        })
    }

    /// The two categories, lowest first.
    pub fn categories(&self) -> (u32, u32) {
        (u32::from(self.low), u32::from(self.high))
    }

    /// Unranks `index` into its pair: the largest `Y` with `C(Y, 2) <= index`, then
    /// `X = index - C(Y, 2)`.
    pub fn from_index(index: u32) -> Result<Label, McsError> {
        if index >= MAX_TENANTS {
            return Err(McsError::IndexTooLarge { index });
        }
        let n = u64::from(index);
        // Float estimate of the root of y(y-1)/2 = n, then exact integer correction so
        // rounding can never pick a neighbouring pair.
        let mut y = ((1.0 + (1.0 + 8.0 * n as f64).sqrt()) / 2.0) as u64;
        while y * (y.saturating_sub(1)) / 2 > n {
            y -= 1;
        }
        while (y + 1) * y / 2 <= n {
            y += 1;
        }
        let x = n - y * (y - 1) / 2;
        // x < y <= 1023 by construction, so both fit a u16.
        Ok(Label {
            low: x as u16,
            high: y as u16,
        })
    }

    /// Ranks the label back to its index: `C(Y, 2) + X`. Inverse of [`Label::from_index`].
    pub fn index(&self) -> u32 {
        let (x, y) = self.categories();
        y * (y - 1) / 2 + x
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s0:c{},c{}", self.low, self.high)
    }
}

impl FromStr for Label {
    type Err = ParseLabelError;

    fn from_str(s: &str) -> Result<Label, ParseLabelError> {
        let input = || s.to_string();
        let (sens, cats) = s
            .split_once(':')
            .ok_or_else(|| ParseLabelError::MissingSensitivity { input: input() })?;
        if sens != "s0" {
            return Err(ParseLabelError::WrongSensitivity {
                input: input(),
                found: sens.to_string(),
            });
        }
        let parts: Vec<&str> = cats.split(',').collect();
        let [a, b] = parts[..] else {
            return Err(ParseLabelError::CategoryCount { input: input() });
        };
        let category = |part: &str| -> Result<u32, ParseLabelError> {
            let bad = || ParseLabelError::BadCategory {
                input: input(),
                part: part.to_string(),
            };
            let digits = part.strip_prefix('c').ok_or_else(bad)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let value: u32 = digits.parse().map_err(|_| bad())?;
            if value >= CATEGORIES {
                return Err(ParseLabelError::CategoryOutOfRange {
                    input: input(),
                    value,
                });
            }
            Ok(value)
        };
        let (low, high) = (category(a)?, category(b)?);
        if low >= high {
            return Err(ParseLabelError::NotAscending {
                input: input(),
                low,
                high,
            });
        }
        Label::new(low, high)
    }
}

impl TryFrom<String> for Label {
    type Error = ParseLabelError;
    fn try_from(s: String) -> Result<Label, ParseLabelError> {
        s.parse()
    }
}

impl From<Label> for String {
    fn from(label: Label) -> String {
        label.to_string()
    }
}

/// The uids a node hands to tenants: `base_uid .. base_uid + count`, `count <= MAX_TENANTS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRange {
    base_uid: u32,
    count: u32,
}

impl NodeRange {
    /// Validates the range: non-empty, within [`MAX_TENANTS`], not overflowing `u32`.
    pub fn new(base_uid: u32, count: u32) -> Result<NodeRange, McsError> {
        if count == 0 {
            return Err(McsError::EmptyRange);
        }
        if count > MAX_TENANTS {
            return Err(McsError::RangeTooLarge { count });
        }
        if base_uid.checked_add(count - 1).is_none() {
            return Err(McsError::RangeOverflow {
                base: base_uid,
                count,
            });
        }
        Ok(NodeRange { base_uid, count })
    }

    pub fn base_uid(&self) -> u32 {
        self.base_uid
    }

    /// The last uid of the range (inclusive).
    pub fn last_uid(&self) -> u32 {
        self.base_uid + (self.count - 1)
    }

    /// `uid - base_uid`, or why the uid is not in this range.
    pub fn index_of(&self, uid: u32) -> Result<u32, McsError> {
        if uid < self.base_uid {
            return Err(McsError::BelowBase {
                uid,
                base: self.base_uid,
            });
        }
        if uid > self.last_uid() {
            return Err(McsError::AboveRange {
                uid,
                last: self.last_uid(),
            });
        }
        Ok(uid - self.base_uid)
    }

    /// The label of `uid`: the `(uid - base_uid)`-th pair (see the module docs).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn label_for(&self, uid: u32) -> Result<Label, McsError> {
        Label::from_index(self.index_of(uid)?)
    }

    /// The uid carrying `label` in this range, if any (inverse of [`NodeRange::label_for`]).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn uid_for(&self, label: &Label) -> Option<u32> {
        let index = label.index();
        (index < self.count).then(|| self.base_uid + index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn bound_is_c_1024_2() {
        assert_eq!(MAX_TENANTS, 523_776);
    }

    #[test]
    fn first_labels_follow_the_combinatorial_order() {
        let got: Vec<String> = (0..6)
            .map(|i| Label::from_index(i).unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            ["s0:c0,c1", "s0:c0,c2", "s0:c1,c2", "s0:c0,c3", "s0:c1,c3", "s0:c2,c3"]
        );
    }

    #[test]
    fn boundaries() {
        assert_eq!(Label::from_index(0).unwrap().to_string(), "s0:c0,c1");
        let last = Label::from_index(MAX_TENANTS - 1).unwrap();
        assert_eq!(last.to_string(), "s0:c1022,c1023");
        assert_eq!(last.index(), MAX_TENANTS - 1);
        assert_eq!(
            Label::from_index(MAX_TENANTS),
            Err(McsError::IndexTooLarge { index: MAX_TENANTS })
        );
        assert!(Label::from_index(u32::MAX).is_err());
    }

    #[test]
    fn every_index_maps_to_a_distinct_valid_pair_and_round_trips() {
        // Exhaustive over the whole space: 523,776 labels is cheap.
        let mut seen = HashSet::with_capacity(MAX_TENANTS as usize);
        for index in 0..MAX_TENANTS {
            let label = Label::from_index(index).unwrap();
            let (x, y) = label.categories();
            assert!(x < y && y < CATEGORIES, "{index} -> {label}");
            assert_eq!(label.index(), index, "unrank∘rank for {label}");
            assert!(seen.insert(label), "collision at {index}: {label}");
            assert_eq!(label.to_string().parse::<Label>().unwrap(), label);
        }
    }

    #[test]
    fn every_pair_ranks_to_an_index_in_bounds() {
        for y in 1..CATEGORIES {
            for x in 0..y {
                let label = Label::new(x, y).unwrap();
                assert!(label.index() < MAX_TENANTS);
                assert_eq!(Label::from_index(label.index()).unwrap(), label);
            }
        }
    }

    #[test]
    fn node_range_maps_uids_and_rejects_outsiders() {
        let range = NodeRange::new(200_000, 100_000).unwrap();
        let mut seen = HashSet::new();
        for uid in range.base_uid()..=range.last_uid() {
            let label = range.label_for(uid).unwrap();
            assert!(seen.insert(label));
            assert_eq!(range.uid_for(&label), Some(uid));
        }
        assert_eq!(
            range.label_for(199_999),
            Err(McsError::BelowBase {
                uid: 199_999,
                base: 200_000
            })
        );
        assert_eq!(
            range.label_for(300_000),
            Err(McsError::AboveRange {
                uid: 300_000,
                last: 299_999
            })
        );
        assert_eq!(range.uid_for(&Label::from_index(100_000).unwrap()), None);
    }

    #[test]
    fn node_range_validation() {
        assert_eq!(NodeRange::new(1, 0), Err(McsError::EmptyRange));
        assert!(NodeRange::new(0, MAX_TENANTS).is_ok());
        assert_eq!(
            NodeRange::new(0, MAX_TENANTS + 1),
            Err(McsError::RangeTooLarge {
                count: MAX_TENANTS + 1
            })
        );
        assert!(matches!(
            NodeRange::new(u32::MAX, 2),
            Err(McsError::RangeOverflow { .. })
        ));
        let top = NodeRange::new(u32::MAX, 1).unwrap();
        assert_eq!(top.label_for(u32::MAX).unwrap().to_string(), "s0:c0,c1");
    }

    #[test]
    fn parse_errors_name_the_problem() {
        // (input, variant, a detail the message must carry besides the input)
        let cases = [
            ("c3,c17", "MissingSensitivity", "s0:"),
            ("s1:c3,c17", "WrongSensitivity", "\"s1\""),
            ("s0:c3", "CategoryCount", "two categories"),
            ("s0:c3,c4,c5", "CategoryCount", "two categories"),
            ("s0:c3,x4", "BadCategory", "\"x4\""),
            ("s0:c+3,c4", "BadCategory", "\"c+3\""),
            ("s0:c,c4", "BadCategory", "\"c\""),
            ("s0:c3,c1024", "CategoryOutOfRange", "c1024 is out of range"),
            ("s0:c17,c3", "NotAscending", "ascending, got c17,c3"),
            ("s0:c3,c3", "NotAscending", "distinct"),
        ];
        for (input, variant, detail) in cases {
            let err = input.parse::<Label>().unwrap_err();
            assert!(format!("{err:?}").starts_with(variant), "{input}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains(detail), "{msg}");
        }
        assert_eq!("s0:c3,c17".parse::<Label>(), Label::new(3, 17));
    }
}
