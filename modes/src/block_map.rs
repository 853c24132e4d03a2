//! The native→tx map of block entry points: an open-addressing hash table from native PC to
//! block index.
//!
//! Every direct branch asks it whether its target is translated (to link at once), so it is
//! on the translator's hot path: a lookup is a multiply, a shift and a probe or two, where a
//! `BTreeMap` walked a few nodes and allocated on insert. Linear probing, deletion by
//! backward shift (no tombstones); the table doubles at half full, or never once
//! [`BlockMap::reserve`] sized it for every block the cache may hold.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

/// A free slot's block index.
const EMPTY: u32 = u32::MAX;

/// Native PC → block index.
pub(crate) struct BlockMap {
    /// (native PC, block index or [`EMPTY`]); a power of two long, or empty.
    slots: Vec<(u64, u32)>,
    len: usize,
}

impl BlockMap {
    pub(crate) const fn new() -> BlockMap {
        BlockMap {
            slots: Vec::new(),
            len: 0,
        }
    }

    /// The home slot of `pc` in a table of `2^bits` slots (Fibonacci hashing: kernel text is
    /// 16-byte aligned and within 1 GiB, so the high bits of the product mix the ones that
    /// vary).
    fn home(pc: u64, mask: usize) -> usize {
        (pc.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
    }

    /// The block starting at native `pc`.
    pub(crate) fn get(&self, pc: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::home(pc, mask);
        loop {
            let (key, block) = self.slots[i];
            if block == EMPTY {
                return None;
            }
            if key == pc {
                return Some(block as usize);
            }
            i = (i + 1) & mask;
        }
    }

    /// Maps `pc` to `block` unless `pc` is mapped already.
    pub(crate) fn insert_new(&mut self, pc: u64, block: usize) {
        if 2 * (self.len + 1) > self.slots.len() {
            let want = (2 * (self.len + 1)).next_power_of_two().max(64);
            self.rehash(want);
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::home(pc, mask);
        loop {
            let (key, b) = self.slots[i];
            if b == EMPTY {
                self.slots[i] = (pc, block as u32);
                self.len += 1;
                return;
            }
            if key == pc {
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Unmaps `pc`.
    pub(crate) fn remove(&mut self, pc: u64) {
        if self.slots.is_empty() {
            return;
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::home(pc, mask);
        loop {
            let (key, b) = self.slots[i];
            if b == EMPTY {
                return;
            }
            if key == pc {
                break;
            }
            i = (i + 1) & mask;
        }
        // Backward shift: move up every later entry of the run that may sit in the hole.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let (key, b) = self.slots[j];
            if b == EMPTY {
                break;
            }
            let home = Self::home(key, mask);
            // `key` may move to the hole iff its home is not cyclically in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = (key, b);
                hole = j;
            }
        }
        self.slots[hole] = (0, EMPTY);
        self.len -= 1;
    }

    /// Forgets every entry, keeping the table.
    pub(crate) fn clear(&mut self) {
        self.slots.fill((0, EMPTY));
        self.len = 0;
    }

    /// Sizes the table for `entries` entries, so inserting up to that many never allocates.
    pub(crate) fn reserve(&mut self, entries: usize) -> Result<(), TryReserveError> {
        let want = (2 * entries).next_power_of_two().max(64);
        if want > self.slots.len() {
            let mut slots = Vec::new();
            slots.try_reserve_exact(want)?;
            slots.resize(want, (0, EMPTY));
            self.move_into(slots);
        }
        Ok(())
    }

    fn rehash(&mut self, size: usize) {
        self.move_into(alloc::vec![(0, EMPTY); size]);
    }

    /// Moves every entry into `slots` (all empty, a power of two long).
    fn move_into(&mut self, slots: Vec<(u64, u32)>) {
        let old = core::mem::replace(&mut self.slots, slots);
        self.len = 0;
        for (pc, b) in old {
            if b != EMPTY {
                self.insert_new(pc, b as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a `BTreeMap`: inserts, repeated inserts, removals (which shift runs back), growth.
    #[test]
    fn agrees_with_a_btreemap() {
        let mut m = BlockMap::new();
        let mut model = alloc::collections::BTreeMap::new();
        let mut x = 0xffff_ffff_8100_0000u64;
        for step in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct keys, 16-byte aligned like kernel functions: collisions and reuse.
            let pc = 0xffff_ffff_8100_0000 + ((x >> 40) % 3000) * 16;
            if x & 3 == 0 {
                m.remove(pc);
                model.remove(&pc);
            } else {
                m.insert_new(pc, step as usize);
                model.entry(pc).or_insert(step as usize);
            }
            assert_eq!(m.len, model.len());
        }
        for k in 0..3000u64 {
            let pc = 0xffff_ffff_8100_0000 + k * 16;
            assert_eq!(m.get(pc), model.get(&pc).copied(), "{pc:x}");
        }
        m.clear();
        assert_eq!(m.get(0xffff_ffff_8100_0000), None);
    }
}
