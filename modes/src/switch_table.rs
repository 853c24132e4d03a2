//! Translated jump tables (`switch-tables` option): a compiler's `switch` jump
//! `jmp [table + idx*8]`, whose index the block itself has bounded (`cmp idx, imm; ja
//! default`), becomes `jmp [tx_table + idx*8]`: one instruction, as native. The tx table
//! lives in [`crate::env::DataMemory`]; every entry starts at the site's resolve stub, which
//! pushes the native entry (`push [table + idx*8]`, the native table read as the native jump
//! would) and enters the dispatcher. The dispatcher translates the target and writes its tx
//! address into every entry whose native entry names that target (read through
//! [`crate::env::Env::read_data`]), so each case resolves once. The kernel's `x64_sys_call`
//! is such a switch over the syscall number:
//!
//! ```text
//! cmp esi, 0x1ce ; ja default ; mov eax, esi ; jmp [table + rax*8]
//! ```
//!
//! Only this shape is recognised, in one block: an unsigned `ja`/`jae` on a `cmp` of the
//! index register with an immediate, then nothing but `mov r32, r32` copies into the index
//! (zero-extending), and no call or other write to it. The native code reads its own table at
//! the same indices, so the tx table is indexed exactly as far as the native one is.

use iced_x86::{Code, Instruction, InstructionInfoFactory, OpAccess, OpKind, Register};

use crate::decode::NativeInsn;
use crate::env::{is_abs32, DataMemory};

/// Offset of the tx tables in [`DataMemory`], after the counters (64-byte aligned).
pub const OFF: usize = (crate::clients::COUNTERS_OFF + 8 * crate::clients::COUNTERS + 63) & !63;
/// Bytes for tx tables: 8 Ki entries in all. A table that does not fit stays a lookup.
pub const SIZE: usize = 64 << 10;
/// Most entries one table may have (larger bounds stay lookups).
pub const MAX_ENTRIES: u64 = 4096;

/// A bounded jump-table jump found in a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Site {
    /// Native table address (absolute disp32).
    pub(crate) native_table: u64,
    /// Entries the bound allows (indices `0..entries`).
    pub(crate) entries: u32,
    /// The 64-bit index register of the jump.
    pub(crate) index: Register,
}

/// A translated table: where it is and how to refill it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Offset of entry 0 in [`DataMemory`].
    pub data_off: usize,
    /// Number of entries.
    pub entries: u32,
    /// Native table address.
    pub native_table: u64,
    /// tx address of the site's resolve stub (every unresolved entry's value).
    pub resolve: u64,
}

impl Table {
    /// Entry `i`'s qword.
    pub(crate) fn entry<'d>(
        &self,
        data: &'d DataMemory,
        i: usize,
    ) -> &'d core::sync::atomic::AtomicU64 {
        data.qword(self.data_off + 8 * i)
    }
}

/// The jump-table site of `jmp`, an indirect jump at the end of `prior` (the block's
/// instructions before it), if the block bounds its index; see the module doc.
pub(crate) fn site(prior: &[NativeInsn], jmp: &Instruction) -> Option<Site> {
    if jmp.code() != Code::Jmp_rm64
        || jmp.op0_kind() != OpKind::Memory
        || jmp.memory_base() != Register::None
        || jmp.memory_index_scale() != 8
        || !jmp.memory_index().is_gpr64()
        || jmp.segment_prefix() != Register::None
        || !is_abs32(jmp.memory_displacement64())
    {
        return None;
    }
    let mut reg = jmp.memory_index();
    let mut info = InstructionInfoFactory::new();
    for (k, n) in prior.iter().enumerate().rev() {
        let i = &n.insn;
        let ja = matches!(i.code(), Code::Ja_rel8_64 | Code::Ja_rel32_64);
        if ja || matches!(i.code(), Code::Jae_rel8_64 | Code::Jae_rel32_64) {
            let cmp = &prior.get(k.checked_sub(1)?)?.insn;
            let by_imm = matches!(
                cmp.code(),
                Code::Cmp_rm32_imm8
                    | Code::Cmp_rm32_imm32
                    | Code::Cmp_rm64_imm8
                    | Code::Cmp_rm64_imm32
            );
            if !by_imm
                || cmp.op0_kind() != OpKind::Register
                || cmp.op0_register().full_register() != reg
            {
                return None;
            }
            // A 32-bit compare sign-extends its immediate to 32 bits only.
            let imm = match cmp.code() {
                Code::Cmp_rm32_imm8 | Code::Cmp_rm32_imm32 => cmp.immediate(1) as u32 as u64,
                _ => cmp.immediate(1),
            };
            let last = if ja { imm } else { imm.checked_sub(1)? };
            if last >= MAX_ENTRIES {
                return None;
            }
            return Some(Site {
                native_table: jmp.memory_displacement64(),
                entries: last as u32 + 1,
                index: jmp.memory_index(),
            });
        }
        if i.is_call_near() || i.is_call_near_indirect() {
            return None;
        }
        let writes = info.info(i).used_registers().iter().any(|u| {
            u.register().full_register() == reg
                && matches!(
                    u.access(),
                    OpAccess::Write
                        | OpAccess::ReadWrite
                        | OpAccess::CondWrite
                        | OpAccess::ReadCondWrite
                )
        });
        if writes {
            // `mov r32, r32'` zero-extends a copy: the bound on r32' holds for it.
            let copy = matches!(i.code(), Code::Mov_r32_rm32 | Code::Mov_rm32_r32)
                && i.op0_kind() == OpKind::Register
                && i.op1_kind() == OpKind::Register
                && i.op0_register().full_register() == reg;
            if !copy {
                return None;
            }
            reg = i.op1_register().full_register();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use iced_x86::code_asm::*;

    /// Decodes what `build` assembles at `ip`; returns (the instructions before the last, the last).
    fn block(build: impl FnOnce(&mut CodeAssembler)) -> (Vec<NativeInsn>, Instruction) {
        let mut a = CodeAssembler::new(64).unwrap();
        build(&mut a);
        let bytes = a.assemble(0xffff_ffff_8100_1000).unwrap();
        let mut d = iced_x86::Decoder::with_ip(
            64,
            &bytes,
            0xffff_ffff_8100_1000,
            iced_x86::DecoderOptions::NONE,
        );
        let mut all: Vec<NativeInsn> = Vec::new();
        while d.can_decode() {
            let insn = d.decode();
            all.push(NativeInsn::new(insn, [0; 15]));
        }
        let last = all.pop().unwrap().insn;
        (all, last)
    }

    const TABLE: i32 = -0x7e5f_ff10;

    #[test]
    fn the_syscall_switch_is_bounded_through_the_copy() {
        let (prior, jmp) = block(|a| {
            a.cmp(esi, 0x1ce).unwrap();
            a.ja(0xffff_ffff_8100_1718u64).unwrap();
            a.mov(eax, esi).unwrap();
            a.jmp(qword_ptr(rax * 8 + TABLE)).unwrap();
        });
        assert_eq!(
            site(&prior, &jmp),
            Some(Site {
                native_table: TABLE as i64 as u64,
                entries: 0x1cf,
                index: Register::RAX
            })
        );
    }

    #[test]
    fn jae_bounds_one_less_and_other_shapes_are_not_sites() {
        let (prior, jmp) = block(|a| {
            a.cmp(rdx, 8).unwrap();
            a.jae(0xffff_ffff_8100_1718u64).unwrap();
            a.jmp(qword_ptr(rdx * 8 + TABLE)).unwrap();
        });
        assert_eq!(site(&prior, &jmp).map(|s| s.entries), Some(8));
        // The index is written after the check.
        let (prior, jmp) = block(|a| {
            a.cmp(rdx, 8).unwrap();
            a.ja(0xffff_ffff_8100_1718u64).unwrap();
            a.add(rdx, 1).unwrap();
            a.jmp(qword_ptr(rdx * 8 + TABLE)).unwrap();
        });
        assert_eq!(site(&prior, &jmp), None);
        // A signed check does not bound an unsigned index.
        let (prior, jmp) = block(|a| {
            a.cmp(rdx, 8).unwrap();
            a.jg(0xffff_ffff_8100_1718u64).unwrap();
            a.jmp(qword_ptr(rdx * 8 + TABLE)).unwrap();
        });
        assert_eq!(site(&prior, &jmp), None);
        // A call in between may change the index.
        let (prior, jmp) = block(|a| {
            a.cmp(rdx, 8).unwrap();
            a.ja(0xffff_ffff_8100_1718u64).unwrap();
            a.call(0xffff_ffff_8100_2000u64).unwrap();
            a.jmp(qword_ptr(rdx * 8 + TABLE)).unwrap();
        });
        assert_eq!(site(&prior, &jmp), None);
        // No bound at all, or a base register.
        let (prior, jmp) = block(|a| a.jmp(qword_ptr(rdx * 8 + TABLE)).unwrap());
        assert_eq!(site(&prior, &jmp), None);
        let (prior, jmp) = block(|a| {
            a.cmp(rdx, 8).unwrap();
            a.ja(0xffff_ffff_8100_1718u64).unwrap();
            a.jmp(qword_ptr(rbx + rdx * 8)).unwrap();
        });
        assert_eq!(site(&prior, &jmp), None);
    }
}
