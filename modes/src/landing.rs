//! The indirect-branch lookup through landings (fast's `landings` option): a hit is 10
//! instructions for `jmp *`, 11 for a callret `call *`, and ends in direct jumps.
//!
//! A lookup site loads the native target T into rcx and jumps through a table of 2^16 code
//! addresses indexed by T's low 16 bits. Each entry points at the newest *landing* of its
//! bucket: a few instructions, emitted by the dispatcher when it first resolves a target, that
//! check their own target and jump to its translation, or pass T on to the bucket's previous
//! landing, and finally to the shared miss path. In the kernel (no red zone):
//!
//! ```text
//! site:     push rcx
//!           mov  rcx, <target operand>     ; T
//!           push rax
//!           movzx eax, cx                  ; i = T & 0xffff
//!           jmp  [TABLE + rax*8]           ; predicted per site, like the native branch
//! landing(T'):
//!           lea  rcx, [rcx - T']           ; 0 iff T == T'  (movabs + lea when T' > 2 GiB)
//!           jrcxz ok
//!           lea  rcx, [rcx + T']           ; T again
//!           jmp  previous landing of the bucket (or the miss path)
//! ok:       pop rax
//!           pop rcx
//!           jmp  tx(T')
//! ```
//!
//! Why this shape, against the two-array probe of [`crate::jumptable`] (29 instructions on a
//! hit, ending in `ret`):
//! - **One qword per bucket, read once.** The key a landing compares is an immediate in its
//!   own code, so a table entry can never be read torn against its key, and no entry is ever
//!   replaced: a new target is pushed in front of its bucket's chain with one aligned qword
//!   store. No key re-read, no conflicts evicting hot targets.
//! - **No flags touched** (`lea` + `jrcxz`), so no `pushf`/`popf` whatever the liveness.
//! - **Predictable:** the table jump sits at the site, where the branch target buffer learns
//!   it as it learns the native indirect branch; the rest are direct jumps. No `ret` to an
//!   address the return-stack buffer never saw.
//! - **The hash** is T's low 16 bits (`movzx`): nothing flag-free folds higher bits in under
//!   three more instructions. Kernel functions are 16-byte aligned, so call targets fill one
//!   bucket in 16 and chains of two or three occur; each extra landing costs 4 instructions.
//!
//! Every site moves rsp by the same amount, so one landing serves all of them: at the table
//! jump `[rsp]` = saved rax, `[rsp+8]` = saved rcx, then a gap of `red_zone` bytes (user space
//! only) above which the stack is what the native branch leaves. A landing pops both and
//! steps over the gap. The miss path ([`crate::link::emit_persistent`]) turns the same state
//! into a target slot and enters the dispatcher with [`MISS_ID`], which translates T and
//! pushes a landing for it.
//!
//! Two stack layouts ([`Layout`]). fast's keeps the target in rcx only: an address in a
//! landing then has no native PC, which fast's relaxed transparency allows (an interrupt there
//! returns there). drk must roll back any tx address to a native state, so its sites also
//! leave the target in a stack slot above the saved registers, where the native branch would
//! have consumed it (`ret`'s return address is that slot; `jmp`/`call` push one):
//!
//! ```text
//! [rsp] saved rax, [rsp+8] saved rcx, [rsp+16] T, red-zone gap, native stack after the branch
//! ```
//!
//! Every landing and miss-path address then rolls *forward* to the state at T's start
//! (`PcSource::StackSlot(16)`, the registers from their spill slots): a native state the
//! branch leads to. A drk hit costs two instructions more (the slot's push and its drop).

use iced_x86::code_asm::{qword_ptr, rax, rcx};
use iced_x86::Code;

use crate::clients::{self, Counter, Home};
use crate::emit::{Emitter, EncodeFailed};
use crate::env::{is_abs32, DataMemory};
use crate::rollback::{gpr_index, PcSource, Recipe};

/// Offset of the table in [`DataMemory`], after the translated jump tables: a region of its
/// own, since sites the landings cannot serve (`ret imm16`, drk's `iretq` to the kernel) still
/// use the jumptable's probe and fill its arrays.
pub const TABLE_OFF: usize = crate::switch_table::OFF + crate::switch_table::SIZE;
/// Buckets.
pub const ENTRIES: usize = 1 << 16;
/// The exit id the shared miss path pushes (as a sign-extended imm32; exit ids of blocks are
/// below 2^31).
pub const MISS_ID: i32 = -1;

/// Where a lookup keeps the native target ([`crate::landing`]'s module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// In rcx only (fast): landings have no native state.
    Registers,
    /// Also in a stack slot above the saved registers (drk): every landing address rolls
    /// forward to the target.
    Slot,
}

impl Layout {
    /// The layout of a design.
    pub fn of(design: crate::Design) -> Layout {
        match design {
            crate::Design::Fast => Layout::Registers,
            crate::Design::Drk => Layout::Slot,
        }
    }

    /// Bytes a landing drops after restoring rax and rcx: the slot, if any, and the gap.
    pub(crate) fn drop(self, gap: u16) -> i32 {
        gap as i32 + if self == Layout::Slot { 8 } else { 0 }
    }
}

/// The recipe at a landing (and the miss path) before its pops in the slot layout: the
/// state at the target, registers in their spill slots.
pub(crate) fn slot_recipe(gap: u16) -> Recipe {
    slot_recipe_saving(&[iced_x86::Register::RCX, iced_x86::Register::RAX], gap)
}

/// The recipe in the slot layout with the `saved` registers pushed in that order (the last
/// at `[rsp]`) below the slot holding the target, then the `gap`: the state at the target,
/// the registers in their spill slots.
pub(crate) fn slot_recipe_saving(saved: &[iced_x86::Register], gap: u16) -> Recipe {
    let k = saved.len() as i32;
    let adjust = 8 * (k + 1) + gap as i32;
    let mut r = Recipe {
        pc: PcSource::StackSlot(8 * k),
        rsp_adjust: adjust,
        ..Recipe::clean(0)
    };
    for (i, &reg) in saved.iter().enumerate() {
        r.spills[i] = Some((gpr_index(reg) as u8, 8 * (k - 1 - i as i32) - adjust));
    }
    r
}

/// The bucket of native target `native`.
pub fn bucket(native: u64) -> usize {
    native as u16 as usize
}

/// Points every bucket at `miss` (initialisation and flush).
pub fn clear(data: &DataMemory, miss: u64) {
    use core::sync::atomic::Ordering;
    for i in 0..ENTRIES {
        data.qword(TABLE_OFF + 8 * i).store(miss, Ordering::Relaxed);
    }
}

/// The head of `native`'s bucket.
pub fn head(data: &DataMemory, native: u64) -> u64 {
    data.qword(TABLE_OFF + 8 * bucket(native))
        .load(core::sync::atomic::Ordering::Acquire)
}

/// Makes `landing` (whose chain goes on to the current head) the head of `native`'s bucket.
/// Callers are serialized (the dispatcher's lock); lookups may run concurrently and see the
/// old or the new head, both complete chains.
pub fn push_front(data: &DataMemory, native: u64, landing: u64) {
    data.qword(TABLE_OFF + 8 * bucket(native))
        .store(landing, core::sync::atomic::Ordering::Release);
}

/// Emits the end of a lookup site: `[rsp]` = saved rcx, rcx = the native target. Counts the
/// branch in the `indirect` client's counter through rax, which is saved by then.
pub(crate) fn emit_table_jump(
    e: &mut Emitter,
    data_addr: u64,
    counters: Option<Home>,
) -> Result<(), EncodeFailed> {
    e.push_reg(iced_x86::Register::RAX)?;
    if let Some(home) = counters {
        clients::emit_bump_via(e, home, Counter::IndirectBranches, iced_x86::Register::RAX)?;
    }
    // By hand (a unit test compares them with iced's): `movzx eax, cx`, `jmp [rax*8 + table]`.
    let table = i32::try_from((data_addr + TABLE_OFF as u64) as i64).map_err(|_| EncodeFailed)?;
    let t = table.to_le_bytes();
    e.raw(&[0x0f, 0xb7, 0xc1]);
    e.raw(&[0xff, 0x24, 0xc5, t[0], t[1], t[2], t[3]]);
    Ok(())
}

/// A landing, emitted at `e`'s address: `native` → `tx`, else on to `next`. `gap`: the bytes
/// every site left between the saved registers (and slot) and the native stack. `hits`: the
/// `indirect` client's counters a hit bumps ([`Counter::JumptableHits`] for a landing; an
/// inline cache's far shape, [`crate::inline_cache`], bumps its own). In the slot layout `e`
/// records the recipes. Returns the tx address of the `jrcxz` displacement, which
/// [`DISABLED_REL8`] disables.
pub(crate) fn emit(
    e: &mut Emitter,
    native: u64,
    tx: u64,
    next: u64,
    gap: u16,
    hits: Option<(Home, &[Counter])>,
    layout: Layout,
) -> Result<u64, EncodeFailed> {
    if layout == Layout::Slot {
        e.cur = slot_recipe(gap);
    }
    let ok = e.new_label();
    // Both T' and -T' as disp32: true for kernel text and modules (the top 2 GiB).
    let short = is_abs32(native) && is_abs32(native.wrapping_neg());
    if short {
        e.asm(|a| a.lea(rcx, qword_ptr(rcx + native.wrapping_neg() as i32)))?;
    } else {
        e.asm(|a| {
            a.mov(rax, native.wrapping_neg())?;
            a.lea(rcx, qword_ptr(rcx + rax))
        })?;
    }
    let rel8 = e.branch_to_label(Code::Jrcxz_rel8_64, ok)?;
    if short {
        e.asm(|a| a.lea(rcx, qword_ptr(rcx + native as i32)))?;
    } else {
        e.asm(|a| {
            a.mov(rax, native)?;
            a.lea(rcx, qword_ptr(rcx + rax))
        })?;
    }
    e.branch_to(Code::Jmp_rel32_64, next)?;
    e.bind(ok);
    if let Some((home, counters)) = hits {
        for &c in counters {
            clients::emit_bump_via(e, home, c, iced_x86::Register::RCX)?;
        }
    }
    e.pop_reg(iced_x86::Register::RAX)?;
    if layout == Layout::Slot {
        e.cur.pc = PcSource::StackSlot(8);
    }
    emit_hit_tail(e, layout, gap, native, tx)?;
    Ok(rel8)
}

/// The end of a hit on `native`, rax restored (or never saved): pops rcx, drops the slot (if
/// any) and the `gap`, jumps to `tx`; in the slot layout the state rolls forward to `native`
/// until the pop and is `native`'s after the drop. Shared with the inline cache's landings.
pub(crate) fn emit_hit_tail(
    e: &mut Emitter,
    layout: Layout,
    gap: u16,
    native: u64,
    tx: u64,
) -> Result<(), EncodeFailed> {
    e.pop_reg(iced_x86::Register::RCX)?;
    if layout == Layout::Slot {
        e.cur.pc = PcSource::StackSlot(0);
    }
    e.lea_rsp(layout.drop(gap))?;
    if layout == Layout::Slot {
        e.cur = Recipe::clean(native);
    }
    e.branch_to(Code::Jmp_rel32_64, tx)?;
    Ok(())
}

/// The byte that makes a landing's `jrcxz` fall through: a disabled landing passes every
/// target on (its block was invalidated). One byte, so concurrent lookups see the old or the
/// new displacement.
pub const DISABLED_REL8: u8 = 0;

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::code_asm::{eax, CodeAssembler};

    /// The hand-encoded table jump equals iced's.
    #[test]
    fn the_table_jump_is_the_assemblers() {
        let data = 0x4010_0000u64;
        let mut e = Emitter::new(0x1000);
        emit_table_jump(&mut e, data, None).unwrap();
        let mut a = CodeAssembler::new(64).unwrap();
        a.push(rax).unwrap();
        a.movzx(eax, iced_x86::code_asm::cx).unwrap();
        a.jmp(qword_ptr(rax * 8 + (data + TABLE_OFF as u64) as i64))
            .unwrap();
        assert_eq!(e.code(), a.assemble(0x1000).unwrap());
    }
}
