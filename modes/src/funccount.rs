//! Client `funccount`: counts the entries of a chosen set of native functions, with one
//! inlined counter add at each function's translated entry (JIFL, Olszewski et al., EuroSys'07:
//! just-in-time instrumentation instead of a probe trap per hit; the module compares it with
//! kprobes and ftrace, docs/INSTRUMENT.md).
//!
//! - **Where:** a listed address always starts a block (a straight line running into it is cut
//!   there), so every way in (call, jump, tail call, landing, fall-through) passes the add.
//! - **What:** `lock add qword [counts + 8*k], 1`. One counter array is shared by every CPU
//!   and translator: the `lock` makes it exact when two CPUs (or, in fast, a preempted task
//!   moved to another CPU) run the same function. Where the flags are live the add is wrapped
//!   in `pushfq`/`popfq`.
//! - **Never twice for one entry:** past the add, the code is no instruction boundary
//!   ([`crate::rollback::Recipe::counted`]), so drk delays an interrupt that arrives there to
//!   the next instruction rather than resuming at the entry. A fault of the function's first
//!   instruction would still re-enter it (rollback to that native PC); kernel functions start
//!   with ftrace's 5-byte NOP, which cannot fault.

use alloc::vec::Vec;
use iced_x86::{Code, Instruction, MemoryOperand};

use crate::emit::{Emitter, EncodeFailed};
use crate::env::is_abs32;

/// Why a function set was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuncSetError {
    /// No function was given.
    Empty,
    /// The counter array is not addressable with an absolute sign-extended 32-bit
    /// displacement (emitted code adds to it directly).
    CountsUnreachable,
    /// The mode spec does not have `funccount` on.
    ClientOff,
    /// Blocks are translated already: a set must be given before the first translation.
    AfterTranslation,
}

/// The functions whose entries emitted code counts, and where their counters are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FuncSet {
    /// Native entry addresses, sorted, no repeats; counter `k` belongs to `entries[k]`.
    entries: Vec<u64>,
    /// Address of the first of `entries.len()` `u64` counters.
    counts: u64,
}

impl FuncSet {
    /// A set over native entry addresses `entries` (any order; repeats count once), counted at
    /// `counts`, an array of one `u64` per distinct entry in ascending address order.
    ///
    /// Errors: [`FuncSetError::Empty`], [`FuncSetError::CountsUnreachable`].
    pub fn new(entries: &[u64], counts: u64) -> Result<FuncSet, FuncSetError> {
        let mut entries = entries.to_vec();
        entries.sort_unstable();
        entries.dedup();
        if entries.is_empty() {
            return Err(FuncSetError::Empty);
        }
        let end = counts + 8 * entries.len() as u64;
        if !is_abs32(counts) || !is_abs32(end) {
            return Err(FuncSetError::CountsUnreachable);
        }
        Ok(FuncSet { entries, counts })
    }

    /// The distinct entries, ascending: counter `k` counts `entries()[k]`.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }

    /// Address of counter `k`.
    pub fn counter(&self, k: usize) -> u64 {
        self.counts + 8 * k as u64
    }

    /// The counter index of native `pc`, if it is a listed entry.
    pub(crate) fn index(&self, pc: u64) -> Option<usize> {
        self.entries.binary_search(&pc).ok()
    }
}

/// Emits the count of one entry at `counter`. `flags_dead`: the add may clobber the flags.
/// `red_zone`: bytes to step over before pushing the flags.
pub(crate) fn emit_count(
    e: &mut Emitter,
    counter: u64,
    flags_dead: bool,
    red_zone: i32,
) -> Result<(), EncodeFailed> {
    let mut add = Instruction::with2(
        Code::Add_rm64_imm8,
        MemoryOperand::with_displ(counter, 8),
        1u32,
    )?;
    add.set_has_lock_prefix(true);
    if flags_dead {
        e.insn(&add)?;
        return Ok(());
    }
    e.lea_rsp(-red_zone)?;
    e.pushing(&Instruction::with(Code::Pushfq))?;
    e.insn(&add)?;
    e.popping(&Instruction::with(Code::Popfq))?;
    e.lea_rsp(red_zone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_sorted_and_deduplicated_and_indexes_its_counters() {
        let s = FuncSet::new(&[0x3000, 0x1000, 0x3000, 0x2000], 0x10_0000).unwrap();
        assert_eq!(s.entries(), &[0x1000, 0x2000, 0x3000]);
        assert_eq!(s.index(0x2000), Some(1));
        assert_eq!(s.index(0x2001), None);
        assert_eq!(s.counter(2), 0x10_0010);
    }

    #[test]
    fn an_empty_set_or_far_counters_are_refused() {
        assert_eq!(FuncSet::new(&[], 0x1000), Err(FuncSetError::Empty));
        assert_eq!(
            FuncSet::new(&[0x1000], 0x1_0000_0000),
            Err(FuncSetError::CountsUnreachable)
        );
        // The top 2 GiB (the kernel's module area) is reachable.
        assert!(FuncSet::new(&[0x1000], 0xffff_ffff_a000_0000).is_ok());
    }

    #[test]
    fn the_count_is_one_locked_add_where_flags_are_dead_and_saved_around_it_elsewhere() {
        let mut e = Emitter::new(0x40_0000);
        emit_count(&mut e, 0x50_0000, true, 0).unwrap();
        let dead = e.code().to_vec();
        assert_eq!(dead[0], 0xf0, "lock prefix");
        let mut e = Emitter::new(0x40_0000);
        emit_count(&mut e, 0x50_0000, false, 128).unwrap();
        let live = e.code();
        let mut d = iced_x86::Decoder::new(64, live, 0);
        let m: Vec<_> = d.iter().map(|i| i.mnemonic()).collect();
        use iced_x86::Mnemonic::*;
        assert_eq!(m, [Lea, Pushfq, Add, Popfq, Lea]);
    }
}
