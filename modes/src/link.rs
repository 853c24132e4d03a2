//! Exits, the dispatcher calling convention, and chaining.
//!
//! # Leaving a block
//! Every way out of a block that does not already know its tx target goes through an *exit*:
//! a direct exit stub (one per direct branch, after the block body) or the miss path of an
//! indirect lookup. Both end the same way:
//!
//! ```text
//!   ; [rsp] = native target T     (the "target slot")
//!   push  exit_id                 ; imm32, sign-extended
//!   jmp   persistent_entry(k)     ; rel32
//! ```
//!
//! A direct stub builds the slot first, without touching registers or flags:
//! `lea rsp,[rsp-red_zone]` (user only) · `push imm32 lo(T)` · `mov dword [rsp+4], hi(T)`.
//!
//! # Persistent entries
//! At the start of the code cache, never flushed, one entry per slot-drop amount `k`
//! (`k` = 0 for `call *`, 8 for lookup `ret`, the red zone for `jmp *` and direct stubs):
//!
//! ```text
//! entry(k):  call  dispatcher_entry   ; the environment's trampoline
//!            lea   rsp, [rsp+8]       ; drop exit_id
//!            ret   k                  ; jump to the slot (now tx), drop it and k more bytes
//! entry_iret:call  dispatcher_entry
//!            lea   rsp, [rsp+8]
//!            pop   qword [rsp]        ; frame.rip := slot (drk iretq)
//!            iretq
//! ```
//!
//! Keeping the tails here means a flush during dispatch never pulls the code the dispatcher
//! returns into from under it.
//!
//! # The dispatcher calling convention (what the kernel's asm trampoline implements)
//! On entry to `dispatcher_entry`:
//!
//! | where | what |
//! |---|---|
//! | `[rsp+0]`  | return address into the persistent entry |
//! | `[rsp+8]`  | exit id (`u64`, sign-extended imm32: a block exit's `< 2^31`, the landing miss path's `-1`) |
//! | `[rsp+16]` | target slot: the native target |
//! | every GPR, RFLAGS, the FPU/SSE state | the program's, to be preserved |
//!
//! The trampoline saves whatever the Rust code may clobber (all GPRs and RFLAGS; in user space
//! also the extended state, in the kernel none since it has no SSE), clears DF, aligns the
//! stack, and calls [`crate::Translator::dispatch`] with the exit id and a `&mut u64` to the
//! target slot (`rsp_at_entry + 16`). The dispatcher stores the tx address to continue at
//! (or the native target itself, to run natively) into the slot. The trampoline restores
//! everything and returns with `ret`: it clobbers nothing. In the kernel it runs with
//! interrupts off (`pushfq; cli` … `popfq`). [`crate::dispatch::emit_trampoline`] emits one.
//!
//! # Chaining
//! A direct branch in a block body is a `jmp/jcc/call rel32` whose rel32 field lies within one
//! cache line (`line-pad`) or is 4-byte aligned; it first points at its stub. When the
//! dispatcher resolves the stub's target it rewrites the field with one 32-bit store
//! ([`patch_rel32`], the only raw-byte write to live code), atomic because it stays within a
//! line, so concurrent CPUs see the old or the new jump, never a mix.

use iced_x86::{Code, Instruction, MemoryOperand, Register};

use crate::emit::{Emitter, EncodeFailed, Template};
use crate::env::CodeMemory;
use crate::rollback::{PcSource, Recipe};

/// Bytes reserved at the start of the code cache for the persistent entries.
pub const PERSISTENT_SIZE: u64 = 256;

/// Addresses of the persistent entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    /// `k` = 0.
    pub k0: u64,
    /// `k` = 8.
    pub k8: u64,
    /// `k` = red zone.
    pub krz: u64,
    /// drk `iretq` tail.
    pub iret: u64,
    /// The miss path of fast's landings ([`crate::landing`]): `[rsp]` = saved rax,
    /// `[rsp+8]` = saved rcx, rcx = the native target, then the red-zone gap.
    pub landing_miss: u64,
}

impl Entries {
    pub(crate) fn for_k(&self, k: u16, red_zone: u16) -> u64 {
        match k {
            0 => self.k0,
            8 => self.k8,
            k if k == red_zone => self.krz,
            _ => unreachable!("no persistent entry for k = {k}"),
        }
    }
}

/// Emits the persistent entries at the start of `mem` (whose first [`PERSISTENT_SIZE`] bytes
/// they own) and returns their addresses and recipes (tx address, recipe before it).
pub(crate) fn emit_persistent(
    mem: &mut CodeMemory,
    dispatcher: u64,
    red_zone: u16,
    layout: crate::landing::Layout,
) -> Result<(Entries, alloc::vec::Vec<(u64, Recipe)>), EncodeFailed> {
    let base = mem.tx_base();
    let mut e = Emitter::new(base);
    let mut recipes = alloc::vec::Vec::new();
    let entry = |e: &mut Emitter, k: Option<u16>| -> Result<u64, EncodeFailed> {
        // Before the call: [rsp] = id, [rsp+8] = native T; after it the slot holds tx (or T).
        let start = e.here();
        let drop = k.unwrap_or(0) as i32;
        e.cur = Recipe {
            pc: PcSource::StackSlot(8),
            rsp_adjust: 16 + drop,
            ..Recipe::clean(0)
        };
        e.branch_to(Code::Call_rel32_64, dispatcher)?;
        e.lea_rsp(8)?;
        e.cur.pc = PcSource::StackSlot(0);
        match k {
            Some(k) => e.ret_imm(k)?,
            None => {
                e.cur.rsp_adjust = 8;
                let slot = MemoryOperand::with_base(Register::RSP);
                e.insn(&Instruction::with1(Code::Pop_rm64, slot)?)?;
                e.cur = Recipe {
                    pc: PcSource::StackSlot(0),
                    tx_in_slot: Some(0),
                    ..Recipe::clean(0)
                };
                e.insn(&Instruction::with(Code::Iretq))?;
            }
        }
        // Keep each entry 16-byte aligned.
        while e.here() % 16 != 0 {
            e.raw(&[0xcc]);
        }
        Ok(start)
    };
    let k0 = entry(&mut e, Some(0))?;
    let k8 = entry(&mut e, Some(8))?;
    let krz = if red_zone == 0 || red_zone == 8 {
        k0
    } else {
        entry(&mut e, Some(red_zone))?
    };
    let krz = if red_zone == 8 { k8 } else { krz };
    let iret = entry(&mut e, None)?;
    let landing_miss = e.here();
    match layout {
        // Restore rax and rcx, leave the target in rcx's save slot, enter with k = the gap.
        // The locked `xchg` is off the hit path. No recipes: it has no native PC
        // (`CodeCache::tx_info` answers None), like a fast landing.
        crate::landing::Layout::Registers => {
            e.pop_reg(Register::RAX)?;
            e.insn(&Instruction::with2(
                Code::Xchg_rm64_r64,
                MemoryOperand::with_base(Register::RSP),
                Register::RCX,
            )?)?;
            emit_enter_dispatcher(&mut e, crate::landing::MISS_ID as u32, krz)?;
        }
        // The slot is the target slot already: restore, enter with k = the gap. Every
        // address rolls forward to the target, as in a landing.
        crate::landing::Layout::Slot => {
            e.cur = crate::landing::slot_recipe(red_zone);
            e.pop_reg(Register::RAX)?;
            e.cur.pc = PcSource::StackSlot(8);
            e.pop_reg(Register::RCX)?;
            e.cur.pc = PcSource::StackSlot(0);
            e.push_imm32(crate::landing::MISS_ID)?;
            e.cur.pc = PcSource::StackSlot(8);
            e.branch_to(Code::Jmp_rel32_64, krz)?;
        }
    }
    e.finish();
    assert!(
        e.code().len() as u64 <= PERSISTENT_SIZE,
        "persistent entries overflow their area"
    );
    mem.write(base, e.code());
    for (off, r) in &e.recipes {
        if base + (*off as u64) < landing_miss || layout == crate::landing::Layout::Slot {
            recipes.push((base + *off as u64, *r));
        }
    }
    Ok((
        Entries {
            k0,
            k8,
            krz,
            iret,
            landing_miss,
        },
        recipes,
    ))
}

/// The direct exit stubs of one translator: their bytes differ from stub to stub only in the
/// target, the exit id and the rel32 to the persistent entry, so the two shapes (a target that
/// is a sign-extended imm32, and one that needs its high half stored too) are built once and
/// patched after each copy. The same bytes as `lea_rsp`, `push_u64` and
/// `emit_enter_dispatcher` emit.
///
/// A stub's rollback recipes are not recorded with its block: they follow from its exit (the
/// target, and where the stub starts) and the shape ([`DirectStubs::recipe_at`]). That is about
/// three recipes, 200 bytes, fewer per exit in the translator's records.
pub(crate) struct DirectStubs {
    near: Template,
    far: Template,
    /// Offset of the target's low imm32 (both shapes); its high half follows 8 bytes later
    /// (far shape).
    lo: usize,
    entry: u64,
}

impl DirectStubs {
    /// The stubs whose target slot ends `red_zone` bytes below the native rsp.
    pub(crate) fn new(red_zone: u16, entries: &Entries) -> DirectStubs {
        let shape = |far: bool| {
            let mut t = Template::new();
            let rz = red_zone as i32;
            match i8::try_from(-rz) {
                Ok(0) => {}
                Ok(d) => t.add(&[0x48, 0x8d, 0x64, 0x24, d as u8], rz),
                Err(_) => {
                    let d = (-rz).to_le_bytes();
                    t.add(&[0x48, 0x8d, 0xa4, 0x24, d[0], d[1], d[2], d[3]], rz);
                }
            }
            t.add(&[0x68, 0, 0, 0, 0], 8);
            if far {
                t.add(&[0xc7, 0x44, 0x24, 0x04, 0, 0, 0, 0], 0);
            }
            t.add(&[0x68, 0, 0, 0, 0], 8);
            t.add(&[0xe9, 0, 0, 0, 0], 0);
            t
        };
        let near = shape(false);
        DirectStubs {
            lo: near.len() - 14,
            near,
            far: shape(true),
            entry: entries.for_k(red_zone, red_zone),
        }
    }

    /// The shape of the stub for native `target`.
    fn shape(&self, target: u64) -> &Template {
        let far = target as u32 as i32 as i64 as u64 != target;
        if far {
            &self.far
        } else {
            &self.near
        }
    }

    /// Bytes of the stub for native `target`.
    pub(crate) fn len(&self, target: u64) -> usize {
        self.shape(target).len()
    }

    /// The recipe before the instruction holding byte `off` (below [`DirectStubs::len`]) of
    /// the stub for `target`: clean at `target`, less what the stub has pushed so far. The
    /// stub runs "between" native instructions, at the start of the target.
    pub(crate) fn recipe_at(&self, target: u64, off: usize) -> Recipe {
        Recipe {
            rsp_adjust: self.shape(target).rsp_adjust_at(off),
            ..Recipe::clean(target)
        }
    }

    /// Emits the stub for native `target`, recording no recipe ([`DirectStubs::recipe_at`]).
    pub(crate) fn emit(
        &self,
        e: &mut Emitter,
        target: u64,
        exit_id: u32,
    ) -> Result<(), EncodeFailed> {
        let t = self.shape(target);
        let far = !core::ptr::eq(t, &self.near);
        let start = e.here();
        let end = start + t.len() as u64;
        let rel = i32::try_from(self.entry.wrapping_sub(end) as i64).map_err(|_| EncodeFailed)?;
        e.cur = Recipe::clean(target);
        e.template_unrecorded(t);
        let lo = start + self.lo as u64;
        e.set_u32(lo, target as u32);
        if far {
            e.set_u32(lo + 8, (target >> 32) as u32);
        }
        e.set_u32(end - 9, exit_id);
        e.set_u32(end - 4, rel as u32);
        Ok(())
    }
}

/// `push exit_id; jmp entry`.
pub(crate) fn emit_enter_dispatcher(
    e: &mut Emitter,
    exit_id: u32,
    entry: u64,
) -> Result<(), EncodeFailed> {
    e.push_imm32(exit_id as i32)?;
    e.branch_to(Code::Jmp_rel32_64, entry)?;
    Ok(())
}

/// Points the rel32 field at `field` (tx address, within one cache line) to `target` with one
/// atomic store through the writable alias ([`CodeMemory::store_field`]).
pub fn patch_rel32(mem: &CodeMemory, field: u64, target: u64) {
    let rel = target.wrapping_sub(field + 4) as i64;
    let rel = i32::try_from(rel).expect("chaining target out of rel32 range");
    mem.store_field(field, rel as u32);
}

/// The target a rel32 field at `field` currently jumps to.
pub fn rel32_target(mem: &CodeMemory, field: u64) -> u64 {
    let rel = mem.load_field(field) as i32;
    (field + 4).wrapping_add(rel as i64 as u64)
}
