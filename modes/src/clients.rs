//! Clients: counters the emitted code bumps (inscount, indirect branches, jumptable hits) and
//! the translator's own statistics. Zero cost when off: no counter code is emitted.
//!
//! Emitted counters live right after the jumptable in [`crate::env::DataMemory`] or per CPU behind `%gs`
//! (see [`crate::env::CounterHome`]). A bump uses `add qword [ctr], n` where the flags are dead
//! and the `flags-liveness` option is on; otherwise a flag-free `mov`/`lea`/`mov` through a
//! spilled scratch register.

use iced_x86::code_asm::{qword_ptr, AsmMemoryOperand};
use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::emit::{Emitter, EncodeFailed};
use crate::env::CounterHome;
use crate::jumptable;

/// The counters emitted code maintains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Native instructions executed (client `inscount`).
    Instructions = 0,
    /// Indirect branches, indirect calls and lookup returns executed (client `indirect`).
    IndirectBranches = 1,
    /// Of those, resolved inline by the jumptable probe or a landing (client `indirect`).
    JumptableHits = 2,
    /// Of those, resolved by the site's inline cache ([`crate::inline_cache`]; client
    /// `indirect`). Not also in [`Counter::JumptableHits`]: [`Stats::jumptable_hits`] is the
    /// sum of both.
    InlineCacheHits = 3,
}

/// Number of emitted counters.
pub const COUNTERS: usize = 4;
/// Offset of the counters in [`crate::env::DataMemory`] when homed there.
pub const COUNTERS_OFF: usize = jumptable::SIZE;
/// Bytes of [`crate::env::DataMemory`] the translator needs.
pub const DATA_SIZE: usize = crate::landing::TABLE_OFF + 8 * crate::landing::ENTRIES;

/// Where emitted code addresses the counters (resolved from the environment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Home {
    /// Absolute address of counter 0.
    Abs(u64),
    /// `%gs` offset of counter 0.
    Gs(i32),
}

impl Home {
    pub(crate) fn resolve(home: CounterHome, data_addr: u64) -> Home {
        match home {
            CounterHome::Data => Home::Abs(data_addr + COUNTERS_OFF as u64),
            CounterHome::Gs(off) => Home::Gs(off),
        }
    }

    fn mem(self, c: Counter) -> AsmMemoryOperand {
        match self {
            Home::Abs(a) => qword_ptr(a + 8 * c as u64),
            Home::Gs(off) => qword_ptr(off as i64 + 8 * c as i64).gs(),
        }
    }

    fn operand(self, c: Counter) -> MemoryOperand {
        self.offset(8 * c as i32).operand_at()
    }

    /// The same home `bytes` further on.
    fn offset(self, bytes: i32) -> Home {
        match self {
            Home::Abs(a) => Home::Abs(a.wrapping_add(bytes as i64 as u64)),
            Home::Gs(off) => Home::Gs(off + bytes),
        }
    }

    /// The qword operand at this home itself.
    pub(crate) fn operand_at(self) -> MemoryOperand {
        match self {
            Home::Abs(a) => MemoryOperand::with_displ(a, 8),
            Home::Gs(off) => MemoryOperand::new(
                Register::None,
                Register::None,
                1,
                off as i64,
                8,
                false,
                Register::GS,
            ),
        }
    }
}

/// Bumps `c` by one through `scratch`, which the caller has spilled. Flags untouched.
pub(crate) fn emit_bump_via(
    e: &mut Emitter,
    home: Home,
    c: Counter,
    scratch: Register,
) -> Result<(), EncodeFailed> {
    let mem = home.mem(c);
    let r = iced_x86::code_asm::registers::gpr64::get_gpr64(scratch).expect("64-bit scratch");
    e.asm(|a| {
        a.mov(r, mem)?;
        a.lea(r, qword_ptr(r + 1))?;
        a.mov(mem, r)
    })
}

/// Emits an add of `n` (patched later through the returned field address) to counter `c` at
/// the current point. `flags_dead`: a plain `add` may clobber the flags. `red_zone`: bytes to
/// step over before spilling. Returns the tx address of the 32-bit field holding `n`.
pub(crate) fn emit_add_placeholder(
    e: &mut Emitter,
    home: Home,
    c: Counter,
    flags_dead: bool,
    red_zone: i32,
) -> Result<u64, EncodeFailed> {
    if flags_dead {
        let start = e.here();
        let insn = Instruction::with2(Code::Add_rm64_imm32, home.operand(c), 0x7fff_ffffu32)?;
        let offsets = e.insn(&insn)?;
        return Ok(start + offsets.immediate_offset() as u64);
    }
    e.lea_rsp(-red_zone)?;
    e.push_reg(Register::RAX)?;
    e.insn(&Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RAX,
        home.operand(c),
    )?)?;
    let start = e.here();
    let lea = MemoryOperand::new(
        Register::RAX,
        Register::None,
        1,
        0x7fff_ffff,
        8,
        false,
        Register::None,
    );
    let offsets = e.insn(&Instruction::with2(Code::Lea_r64_m, Register::RAX, lea)?)?;
    e.insn(&Instruction::with2(
        Code::Mov_rm64_r64,
        home.operand(c),
        Register::RAX,
    )?)?;
    e.pop_reg(Register::RAX)?;
    e.lea_rsp(red_zone)?;
    Ok(start + offsets.displacement_offset() as u64)
}

/// The translator's statistics plus the emitted counters, as one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks translated (since creation, across flushes).
    pub blocks: u64,
    /// Native instructions translated.
    pub native_insns: u64,
    /// Native bytes translated.
    pub native_bytes: u64,
    /// Code-cache bytes emitted (bodies and stubs).
    pub bytes_emitted: u64,
    /// Dispatcher entries (exit stubs not yet chained, jumptable misses, lookups with the
    /// jumptable off).
    pub dispatches: u64,
    /// Exits chained: rel32 patches at dispatch plus direct links made at translation.
    pub links: u64,
    /// Indirect transfers resolved by the dispatcher (jumptable misses; every indirect transfer
    /// with the jumptable off; the first execution of a site with an inline cache, which fills
    /// it).
    pub jumptable_misses: u64,
    /// Jumptable slots filled.
    pub jumptable_inserts: u64,
    /// Jumptable inserts that replaced another target in their slot.
    pub jumptable_conflicts: u64,
    /// Translated jump-table entries resolved (one dispatcher entry resolves every entry
    /// naming its target).
    pub switch_entries: u64,
    /// Full flushes.
    pub flushes: u64,
    /// Blocks invalidated because the native code they copy changed.
    pub blocks_invalidated: u64,
    /// Targets run natively because the cache was full and flushing was not safe.
    pub cache_full_native: u64,
    /// Targets run natively because their first instruction cannot be translated.
    pub untranslatable: u64,
    /// Client `inscount`: native instructions executed (when on).
    pub insns_executed: u64,
    /// Client `indirect`: indirect transfers executed (when on).
    pub indirect_executed: u64,
    /// Client `indirect`: of those, resolved inline without the dispatcher (when on): jumptable
    /// probe, landing and inline-cache hits.
    pub jumptable_hits: u64,
    /// Inline caches filled ([`crate::inline_cache`]): per-site IC landings emitted, one per
    /// indirect `call`/`jmp` site and code-cache generation at most.
    pub inline_cache_fills: u64,
    /// Client `indirect`: of [`Stats::jumptable_hits`], those an inline cache resolved (when
    /// on).
    pub inline_cache_hits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data memory's regions never overlap: the jumptable's probe (still used by `ret
    /// imm16` and drk's `iretq`) fills its arrays while landings read their table.
    #[test]
    fn the_data_memory_regions_are_disjoint_and_in_order() {
        let regions = [
            (0, jumptable::SIZE),
            (COUNTERS_OFF, COUNTERS_OFF + 8 * COUNTERS),
            (
                crate::switch_table::OFF,
                crate::switch_table::OFF + crate::switch_table::SIZE,
            ),
            (
                crate::landing::TABLE_OFF,
                crate::landing::TABLE_OFF + 8 * crate::landing::ENTRIES,
            ),
        ];
        for pair in regions.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:?}");
        }
        assert_eq!(regions[3].1, DATA_SIZE);
    }
}
