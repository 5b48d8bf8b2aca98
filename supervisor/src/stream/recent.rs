//! What a connection's `ctl state` shows beyond byte counts: the last messages by
//! name, and the rule decisions not yet reported. Fixed-size and allocation-free per
//! message, so keeping it always costs nothing measurable.

use transforms::{Decision, Direction};

/// Messages remembered per connection.
pub const RECENT: usize = 16;

/// One remembered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// Which way it travelled (the engine's: inbound is peer → tenant).
    pub direction: Direction,
    /// The protocol's name for it (`Query`), or `message` for unnamed protocols.
    pub name: &'static str,
    /// Its length in bytes as taken.
    pub len: usize,
}

/// The last [`RECENT`] messages, oldest first when listed.
#[derive(Debug)]
pub struct Recent {
    ring: [Option<Seen>; RECENT],
    next: usize,
}

impl Default for Recent {
    fn default() -> Recent {
        Recent {
            ring: [None; RECENT],
            next: 0,
        }
    }
}

impl Recent {
    /// Remembers one message, forgetting the oldest.
    pub fn push(&mut self, seen: Seen) {
        self.ring[self.next] = Some(seen);
        self.next = (self.next + 1) % RECENT;
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<Seen> {
        (0..RECENT)
            .filter_map(|i| self.ring[(self.next + i) % RECENT])
            .collect()
    }
}

/// Decisions the rules made that the engine has not yet logged, with the direction of
/// the message they were about. Bounded: past the cap, the count of the unlogged is
/// kept instead.
#[derive(Debug, Default)]
pub struct Pending {
    decisions: Vec<(Direction, Decision)>,
    /// Decisions beyond the cap (counted, not kept).
    pub overflow: u64,
}

/// Most decisions held between two engine drains.
const PENDING_CAP: usize = 64;

impl Pending {
    /// Adds decisions about a message travelling in `direction`.
    pub fn extend(&mut self, direction: Direction, decisions: Vec<Decision>) {
        for decision in decisions {
            if self.decisions.len() < PENDING_CAP {
                self.decisions.push((direction, decision));
            } else {
                self.overflow += 1;
            }
        }
    }

    /// Takes what is pending.
    pub fn take(&mut self) -> Vec<(Direction, Decision)> {
        std::mem::take(&mut self.decisions)
    }

    /// Whether anything is pending.
    pub fn is_empty(&self) -> bool {
        self.decisions.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_messages_in_order() {
        let mut recent = Recent::default();
        for len in 0..(RECENT + 3) {
            recent.push(Seen {
                direction: Direction::Inbound,
                name: "Query",
                len,
            });
        }
        let lens: Vec<usize> = recent.list().iter().map(|s| s.len).collect();
        assert_eq!(lens, (3..RECENT + 3).collect::<Vec<_>>());
    }
}
