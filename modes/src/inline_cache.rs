//! Inline caches at indirect `call r/m` and `jmp r/m` sites (option `inline-cache`): the site
//! compares the target with the first one it saw and jumps straight to its translation;
//! other targets take the site's landing lookup ([`crate::landing`]) as without it. The
//! monomorphic inline cache of Smalltalk-80 and Self (Deutsch & Schiffman POPL'84, Hölzle et
//! al. ECOOP'91), as DynamoRIO inlines the check of one indirect-branch target at a site
//! (Bruening's thesis §4.3, "indirect branch inlining") and QEMU's `lookup_and_goto_ptr`
//! does per TB.
//!
//! # Shape
//! A landing site (fast's or drk's, [`crate::rules::landing_sites`]) loads the target T into
//! rcx with rcx saved and then, before its table jump, jumps through a `jmp rel32` whose
//! field is written exactly once:
//!
//! ```text
//! site:     push rcx                       ; drk: push <target operand>; push rcx
//!           mov  rcx, <target operand>     ; drk: mov rcx, [rsp+8]
//!           jmp  rel32                     ; → fill stub, later → the IC landing (written once)
//! lookup:   push rax                       ; the site's landing lookup, as without the IC
//!           movzx eax, cx
//!           jmp  [TABLE + rax*8]
//! IC landing(T'), in the code cache after the blocks, like a landing:
//!           lea  rcx, [rcx - T']           ; 0 iff T == T'
//!           jrcxz ok
//!           lea  rcx, [rcx + T']           ; T again
//!           jmp  lookup
//! ok:       pop  rcx
//!           [lea rsp, [rsp + slot + red zone]]
//!           jmp  tx(T')
//! ```
//!
//! A hit is 7 instructions for a kernel `jmp *` (a landing hit is 10) and 8 for a callret
//! `call *` (11); drk's `jmp *` is 9 (12), with the slot's push and drop. A miss costs the 4 compare instructions
//! more than the landing lookup it goes on to. When T' or -T' is not a sign-extended disp32
//! (user space) the IC landing is `push rax` and a landing ([`crate::landing::emit`]) whose
//! miss goes to `lookup + 1`, past the lookup's `push rax`: two instructions more.
//!
//! # Fill
//! The field first points at the site's *fill stub*, after the block's exit stubs: it leaves
//! the target in a target slot and enters the dispatcher with the site's exit id
//! ([`crate::cache::ExitKind::InlineCache`]), like an indirect exit's miss path. The
//! dispatcher translates T, emits the IC landing for T at the end of the code cache and then
//! points the site's field at it with one 4-byte store (the field is padded like a chaining
//! field so that it never crosses a 64-byte line: [`crate::link::patch_rel32`]), and
//! continues at tx(T). A target that runs natively, cannot be translated or whose IC landing
//! does not fit points the field at `lookup` instead: the site is then what it is without the
//! option. A landing-table hit never enters the dispatcher, so the fill cannot wait for a
//! miss: it is the site's own first execution that fills.
//!
//! # Why it is race-free
//! The key compared (T') and the jump target (tx(T')) are immediates in code written before
//! it is published; publication is the single aligned store to the field, which is written
//! once per code-cache generation. A CPU running the site sees the old field (the fill stub:
//! the dispatcher, under its lock, finds the field already filled and only continues at
//! tx(T)) or the new one (a complete IC landing): never a key that disagrees with its target.
//! The only later write is [`crate::landing::DISABLED_REL8`] over the `jrcxz` displacement
//! when T's block is invalidated: one byte, after which the IC always misses into the lookup.
//!
//! # Rollback (drk)
//! An IC landing address has no native PC in fast (like a landing). In drk's slot layout it
//! rolls forward to T: `[rsp]` saved rcx, `[rsp+8]` T ([`entry_recipe`]); past the `pop`, as a
//! landing's. The fill stub rolls back to the site's native instruction (its recipe is the
//! site's, less what it has popped).
//!
//! # Clients
//! With `indirect`, a hit bumps [`Counter::IndirectBranches`] and
//! [`Counter::InlineCacheHits`] (through rcx, saved); a miss is counted by the lookup it goes
//! to, the fill by its stub: each execution of the site counts once as an indirect branch.
//!
//! # Scope
//! Only landing sites get an inline cache: with `no-landings` (the jumptable probe) or
//! `no-jumptable` the option is inert, and `ret` (the return-stack buffer's business, and
//! callret's identity returns in fast) never has one.

use iced_x86::code_asm::{qword_ptr, rcx};
use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::clients::{self, Counter, Home};
use crate::emit::{Emitter, EncodeFailed};
use crate::env::is_abs32;
use crate::landing::{self, Layout};
use crate::rollback::Recipe;

/// The `indirect` client's counters an inline-cache hit bumps.
const HIT_COUNTERS: [Counter; 2] = [Counter::IndirectBranches, Counter::InlineCacheHits];

/// The site's lookup, where a miss goes: the table jump right after the site's rel32 field.
pub fn lookup_of(field: u64) -> u64 {
    field + 4
}

/// Emits the site's `jmp rel32` (to itself until its fill stub is placed) with its field
/// padded for one atomic store, as a chaining field ([`Emitter::field_pad`]). Returns the tx
/// address of the field; the lookup must follow at once ([`lookup_of`]).
pub(crate) fn emit_site_jump(
    e: &mut Emitter,
    line_pad: bool,
    prefix_pad: bool,
) -> Result<u64, EncodeFailed> {
    let pad = e.field_pad(1, line_pad);
    let to = e.here();
    e.padded_branch(Code::Jmp_rel32_64, pad, prefix_pad, to)
}

/// The fill stub of a site whose state at its `jmp rel32` is `recipe` (`[rsp]` = saved rcx,
/// in the slot layout `[rsp+8]` = T, rcx = T, then `gap` bytes above which the native stack
/// lies): T into a target slot, then the dispatcher with `exit_id` through `entry` (the
/// persistent entry that drops the slot and `gap`). `counters`: the `indirect` client's, to
/// count the branch.
pub(crate) fn emit_fill(
    e: &mut Emitter,
    recipe: Recipe,
    exit_id: u32,
    entry: u64,
    layout: Layout,
    counters: Option<Home>,
) -> Result<(), EncodeFailed> {
    e.cur = recipe;
    if let Some(home) = counters {
        e.push_reg(Register::RAX)?;
        clients::emit_bump_via(e, home, Counter::IndirectBranches, Register::RAX)?;
        e.pop_reg(Register::RAX)?;
    }
    match layout {
        Layout::Registers => {
            e.insn(&Instruction::with2(
                Code::Xchg_rm64_r64,
                MemoryOperand::with_base(Register::RSP),
                Register::RCX,
            )?)?;
            e.cur.unspill(Register::RCX);
        }
        Layout::Slot => e.pop_reg(Register::RCX)?,
    }
    crate::link::emit_enter_dispatcher(e, exit_id, entry)
}

/// The recipe at an IC landing's start in the slot layout: the state at the target T, with
/// `[rsp]` = saved rcx, `[rsp+8]` = T, then the `gap`.
pub(crate) fn entry_recipe(gap: u16) -> Recipe {
    landing::slot_recipe_saving(&[Register::RCX], gap)
}

/// An IC landing at `e`'s address: `native` → `tx`, else on to the site's `lookup`. `gap` as
/// for [`emit_fill`]; `hits`: the `indirect` client's counters, if on. In the slot layout
/// `e` records the recipes. Returns the tx address of the `jrcxz` displacement, which
/// [`landing::DISABLED_REL8`] disables.
pub(crate) fn emit_landing(
    e: &mut Emitter,
    native: u64,
    tx: u64,
    lookup: u64,
    gap: u16,
    hits: Option<Home>,
    layout: Layout,
) -> Result<u64, EncodeFailed> {
    e.cur = match layout {
        Layout::Slot => entry_recipe(gap),
        Layout::Registers => Recipe::clean(0),
    };
    if !(is_abs32(native) && is_abs32(native.wrapping_neg())) {
        // The far shape needs a scratch register: rax saved, the stack is a landing's.
        e.push_reg(Register::RAX)?;
        let hits = hits.map(|h| (h, &HIT_COUNTERS[..]));
        return landing::emit(e, native, tx, lookup + 1, gap, hits, layout);
    }
    let ok = e.new_label();
    e.asm(|a| a.lea(rcx, qword_ptr(rcx + native.wrapping_neg() as i32)))?;
    let rel8 = e.branch_to_label(Code::Jrcxz_rel8_64, ok)?;
    e.asm(|a| a.lea(rcx, qword_ptr(rcx + native as i32)))?;
    e.branch_to(Code::Jmp_rel32_64, lookup)?;
    e.bind(ok);
    if let Some(home) = hits {
        for c in HIT_COUNTERS {
            clients::emit_bump_via(e, home, c, Register::RCX)?;
        }
    }
    // What a landing does past its `pop rax` (rax is not saved here).
    landing::emit_hit_tail(e, layout, gap, native, tx)?;
    Ok(rel8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The site jump's field never crosses a cache line, and the lookup follows it.
    #[test]
    fn the_site_field_is_one_atomic_store() {
        for start in 0x1000..0x1000 + 64 {
            let mut e = Emitter::new(start);
            let field = emit_site_jump(&mut e, true, true).unwrap();
            assert!(field % 64 <= 60, "{start:#x}: field at {field:#x}");
            assert_eq!(e.here(), lookup_of(field));
        }
    }

    /// A kernel-shaped hit is `lea`, `jrcxz`, `pop`, `jmp` after the site's jump.
    #[test]
    fn a_short_hit_is_four_instructions() {
        let at = 0xffff_ffff_a000_1000;
        let native = 0xffff_ffff_8100_0200;
        let mut e = Emitter::new(at);
        emit_landing(
            &mut e,
            native,
            at + 0x400,
            at - 0x100,
            0,
            None,
            Layout::Registers,
        )
        .unwrap();
        e.finish();
        let mut d = iced_x86::Decoder::with_ip(64, e.code(), at, 0);
        let all: alloc::vec::Vec<_> = d.iter().map(|i| i.mnemonic()).collect();
        use iced_x86::Mnemonic::*;
        assert_eq!(all, [Lea, Jrcxz, Lea, Jmp, Pop, Jmp]);
    }
}
