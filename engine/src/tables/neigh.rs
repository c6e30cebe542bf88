//! Neighbour table: next-hop address → MAC, per family.
//!
//! Static (from the config), so it is an open-addressing table with
//! power-of-two capacity built once and read by all workers; lookups are one
//! hash and a short probe, with no allocation.

use crate::wire::{Family, Mac};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    used: bool,
    v6: bool,
    ip: u128,
    mac: Mac,
    port: u16,
}

const EMPTY: Slot = Slot {
    used: false,
    v6: false,
    ip: 0,
    mac: [0; 6],
    port: 0,
};

/// A neighbour entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub family: Family,
    pub ip: u128,
    pub mac: Mac,
    pub port: u16,
}

/// Static neighbour table.
#[derive(Clone, Debug)]
pub struct Neighbors {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
}

#[inline]
fn hash(v6: bool, ip: u128) -> usize {
    let x = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(29) ^ u64::from(v6);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 20) as usize
}

impl Neighbors {
    /// Builds the table. A later entry for the same address replaces an
    /// earlier one (the config loader rejects duplicates before this).
    pub fn build(entries: &[Neighbor]) -> Neighbors {
        let cap = (entries.len() * 2).next_power_of_two().max(16);
        let mut t = Neighbors {
            slots: vec![EMPTY; cap],
            mask: cap - 1,
            len: 0,
        };
        for e in entries {
            let v6 = e.family == Family::V6;
            let mut i = hash(v6, e.ip) & t.mask;
            while let Some(s) = t.slots.get_mut(i) {
                if !s.used || (s.v6 == v6 && s.ip == e.ip) {
                    if !s.used {
                        t.len += 1;
                    }
                    *s = Slot {
                        used: true,
                        v6,
                        ip: e.ip,
                        mac: e.mac,
                        port: e.port,
                    };
                    break;
                }
                i = (i + 1) & t.mask;
            }
        }
        t
    }

    /// The MAC and port of `ip`, if known.
    #[inline]
    pub fn lookup(&self, family: Family, ip: u128) -> Option<(Mac, u16)> {
        self.find(family, ip).and_then(|i| self.get(i))
    }

    /// The slot of `ip`, if known: a number below [`Neighbors::slots`],
    /// fixed for this table.
    #[inline]
    pub fn find(&self, family: Family, ip: u128) -> Option<usize> {
        let v6 = family == Family::V6;
        let mut i = hash(v6, ip) & self.mask;
        loop {
            let s = self.slots.get(i)?;
            if !s.used {
                return None;
            }
            if s.v6 == v6 && s.ip == ip {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The MAC and port in slot `i`, if used.
    #[inline]
    pub fn get(&self, i: usize) -> Option<(Mac, u16)> {
        self.slots
            .get(i)
            .filter(|s| s.used)
            .map(|s| (s.mac, s.port))
    }

    /// Number of slots (used or not).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_put() {
        let entries: Vec<Neighbor> = (0..100u128)
            .map(|i| Neighbor {
                family: if i % 2 == 0 { Family::V4 } else { Family::V6 },
                ip: i * 7919,
                mac: [2, 0, 0, 0, 0, i as u8],
                port: (i % 3) as u16,
            })
            .collect();
        let t = Neighbors::build(&entries);
        assert_eq!(t.len(), 100);
        for e in &entries {
            assert_eq!(t.lookup(e.family, e.ip), Some((e.mac, e.port)));
            let other = if e.family == Family::V4 {
                Family::V6
            } else {
                Family::V4
            };
            assert_eq!(t.lookup(other, e.ip), None);
        }
        assert_eq!(t.lookup(Family::V4, 1), None);
    }
}
