//! Client `funccount`: counts the entries of a chosen set of native functions, with one
//! inlined counter add at each function's translated entry (JIFL, Olszewski et al., EuroSys'07:
//! just-in-time instrumentation instead of a probe trap per hit; the module compares it with
//! kprobes and ftrace, docs/INSTRUMENT.md).
//!
//! - **Where:** a listed address always starts a block (a straight line running into it is cut
//!   there), so every way in (call, jump, tail call, landing, fall-through) passes the add.
//! - **What:** one add per entry, wrapped in `pushfq`/`popfq` where the flags are live:
//!   - **per CPU** (the module's default): `add qword gs:[counts + 8*k], 1`, like the kernel's
//!     `this_cpu_inc`. One instruction, so a task preempted and moved to another CPU (fast)
//!     never splits it, and no cache line bounces between CPUs. It needs the per-CPU offset
//!     of the array within disp32 reach, which Linux's per-CPU allocator gives only in its
//!     first chunk (tens of KiB; the module falls back when a set does not fit there);
//!   - **shared:** `lock add qword [counts + 8*k], 1` on one array for every CPU; the `lock`
//!     makes it exact when two CPUs run the same function.
//!
//!   A listed function is traceable (it starts with ftrace's NOP), so it never runs with the
//!   user's `%gs`: only `noinstr` entry code does.
//! - **Never twice for one entry:** past the add, the code is no instruction boundary
//!   ([`crate::rollback::Recipe::counted`]), so drk delays an interrupt that arrives there to
//!   the next instruction rather than resuming at the entry. A fault of the function's first
//!   instruction would still re-enter it (rollback to that native PC); kernel functions start
//!   with ftrace's 5-byte NOP, which cannot fault.

use alloc::vec::Vec;
use iced_x86::{Code, Instruction};

use crate::clients::Home;
use crate::emit::{Emitter, EncodeFailed};
use crate::env::is_abs32;

/// Why a function set was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FuncSetError {
    /// No function was given.
    Empty,
    /// The counter array is not addressable with a sign-extended 32-bit displacement
    /// (absolute, or `%gs`-relative for per-CPU counters): emitted code adds to it directly.
    CountsUnreachable,
    /// The mode spec does not have `funccount` on.
    ClientOff,
    /// Blocks are translated already: a set must be given before the first translation.
    AfterTranslation,
}

/// The functions whose entries emitted code counts, and where their counters are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncSet {
    /// Native entry addresses, sorted, no repeats; counter `k` belongs to `entries[k]`.
    entries: Vec<u64>,
    /// Where the first of `entries.len()` `u64` counters is.
    counts: Home,
}

impl FuncSet {
    /// A set over native entry addresses `entries` (any order; repeats count once), counted at
    /// `counts`, an array of one `u64` per distinct entry in ascending address order.
    ///
    /// The counters are shared by every CPU and added to with `lock add`.
    ///
    /// Errors: [`FuncSetError::Empty`], [`FuncSetError::CountsUnreachable`].
    pub fn new(entries: &[u64], counts: u64) -> Result<FuncSet, FuncSetError> {
        let entries = Self::distinct(entries)?;
        let end = counts.wrapping_add(8 * entries.len() as u64);
        if !is_abs32(counts) || !is_abs32(end) {
            return Err(FuncSetError::CountsUnreachable);
        }
        Ok(FuncSet {
            entries,
            counts: Home::Abs(counts),
        })
    }

    /// A set whose counters are per CPU: the array starts at offset `gs_offset` from each
    /// CPU's `%gs` base (a kernel per-CPU pointer), and an entry adds to the running CPU's copy.
    ///
    /// Errors: [`FuncSetError::Empty`], [`FuncSetError::CountsUnreachable`] when the array
    /// does not lie within `i32` offsets.
    pub fn per_cpu(entries: &[u64], gs_offset: i64) -> Result<FuncSet, FuncSetError> {
        let entries = Self::distinct(entries)?;
        let end = gs_offset.checked_add(8 * entries.len() as i64);
        let fits = |o: i64| i32::try_from(o).is_ok();
        match (i32::try_from(gs_offset), end) {
            (Ok(off), Some(end)) if fits(end) => Ok(FuncSet {
                entries,
                counts: Home::Gs(off),
            }),
            _ => Err(FuncSetError::CountsUnreachable),
        }
    }

    fn distinct(entries: &[u64]) -> Result<Vec<u64>, FuncSetError> {
        let mut entries = entries.to_vec();
        entries.sort_unstable();
        entries.dedup();
        if entries.is_empty() {
            return Err(FuncSetError::Empty);
        }
        Ok(entries)
    }

    /// The distinct entries, ascending: counter `k` counts `entries()[k]`.
    pub fn entries(&self) -> &[u64] {
        &self.entries
    }

    /// Whether the counters are per CPU ([`FuncSet::per_cpu`]).
    pub fn is_per_cpu(&self) -> bool {
        matches!(self.counts, Home::Gs(_))
    }

    /// Counter `k`: its address, or for per-CPU counters its offset from `%gs`.
    pub fn counter(&self, k: usize) -> u64 {
        match self.counts {
            Home::Abs(a) => a + 8 * k as u64,
            Home::Gs(off) => (off as i64 + 8 * k as i64) as u64,
        }
    }

    /// Where emitted code adds for counter `k`.
    pub(crate) fn counter_home(&self, k: usize) -> Home {
        match self.counts {
            Home::Abs(_) => Home::Abs(self.counter(k)),
            Home::Gs(off) => Home::Gs(off + 8 * k as i32),
        }
    }

    /// The counter index of native `pc`, if it is a listed entry.
    pub(crate) fn index(&self, pc: u64) -> Option<usize> {
        self.entries.binary_search(&pc).ok()
    }
}

/// Emits the count of one entry at `counter`: a `%gs`-relative add (per CPU) or a locked
/// absolute one (shared). `flags_dead`: the add may clobber the flags. `red_zone`: bytes to
/// step over before pushing the flags.
pub(crate) fn emit_count(
    e: &mut Emitter,
    counter: Home,
    flags_dead: bool,
    red_zone: i32,
) -> Result<(), EncodeFailed> {
    let mut add = Instruction::with2(Code::Add_rm64_imm8, counter.operand_at(), 1u32)?;
    add.set_has_lock_prefix(matches!(counter, Home::Abs(_)));
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
        assert!(!s.is_per_cpu());
        let p = FuncSet::per_cpu(&[0x2000, 0x1000], 0x1_0000).unwrap();
        assert!(p.is_per_cpu());
        assert_eq!(p.counter(1), 0x1_0008);
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
        // A per-CPU array outside the first per-CPU chunk, or running past i32::MAX.
        assert_eq!(
            FuncSet::per_cpu(&[0x1000], 0x4100_0000_0000),
            Err(FuncSetError::CountsUnreachable)
        );
        assert_eq!(
            FuncSet::per_cpu(&[0x1000, 0x2000], i32::MAX as i64 - 8),
            Err(FuncSetError::CountsUnreachable)
        );
        assert!(FuncSet::per_cpu(&[0x1000], -0x1000).is_ok());
    }

    #[test]
    fn the_count_is_one_add_where_flags_are_dead_and_saved_around_it_elsewhere() {
        let mut e = Emitter::new(0x40_0000);
        emit_count(&mut e, Home::Abs(0x50_0000), true, 0).unwrap();
        let dead = e.code().to_vec();
        assert_eq!(dead[0], 0xf0, "lock prefix");
        let mut e = Emitter::new(0x40_0000);
        emit_count(&mut e, Home::Gs(0x2000), true, 0).unwrap();
        let mut d = iced_x86::Decoder::new(64, e.code(), 0);
        let add = d.decode();
        assert_eq!(add.code(), Code::Add_rm64_imm8);
        assert_eq!(add.segment_prefix(), iced_x86::Register::GS);
        assert_eq!(add.memory_displacement64(), 0x2000);
        assert!(!add.has_lock_prefix(), "per CPU: one unlocked add");
        assert_eq!(d.position(), e.code().len());
        let mut e = Emitter::new(0x40_0000);
        emit_count(&mut e, Home::Abs(0x50_0000), false, 128).unwrap();
        let live = e.code();
        let mut d = iced_x86::Decoder::new(64, live, 0);
        let m: Vec<_> = d.iter().map(|i| i.mnemonic()).collect();
        use iced_x86::Mnemonic::*;
        assert_eq!(m, [Lea, Pushfq, Add, Popfq, Lea]);
    }
}
