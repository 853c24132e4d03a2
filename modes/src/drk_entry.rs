//! drk's entry routine: where a CPU's interrupt and exception stubs go when the interrupted RIP
//! is in its code cache (the kernel's delivery logic is the engine's `drk` module; DRK,
//! Feiner et al. ASPLOS'12 §4.2–4.3).
//!
//! On entry the stub has pushed the tag (vector | [`TAG_ERROR_CODE`]) and then the tx address
//! of the vector's translated handler, below the CPU's frame. The routine saves every GPR but
//! `rsp` below them and calls `func(ctx, regs)` (SysV) with `regs` the lowest saved qword:
//!
//! | qwords from `regs` | what |
//! |---|---|
//! | 0 … 14 | rax rcx rdx rbx rbp rsi rdi r8 … r15 ([`SAVED_GPRS`]) |
//! | [`HANDLER`] | the translated handler |
//! | [`TAG`] | vector, [`TAG_ERROR_CODE`] |
//! | [`FRAME`] … | the CPU's frame: error code (if tagged), RIP, CS, RFLAGS, RSP, SS |
//!
//! `func` may rewrite all of it and returns (rax, rdx) = (where to continue, where `regs` now
//! is: one qword higher when it dropped the error code). The routine reloads the GPRs from
//! there and `ret`s to the continuation through the tag slot: the translated handler (with
//! the frame as the CPU would have pushed it) or the routine's own `iretq`.
//!
//! ```text
//! push r15 … rax; cld; [r12 = 0; kernel %gs or swapgs, r12 = 1]; rbx = rsp; and rsp,-16
//! call func(ctx, rbx)
//! mov rsp, rdx; mov [rsp+8*TAG], rax; [swapgs back if r12]; pop rax … r15; lea rsp,[rsp+8]; ret
//! iret: iretq
//! ```
//! With a [`DispatcherStacks`] table, `func` never runs on a user's `%gs` base: the routine
//! switches to the CPU's kernel one as the dispatcher trampoline does, and back before the
//! handler (whose entry code decides its own `swapgs` from the frame) or the `iretq`.
//! Flags are clobbered: entries do not read them and `iretq` reloads them from the frame.

use alloc::vec::Vec;
use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;

use crate::dispatch::{emit_kernel_gs, DispatcherStacks};
use crate::rollback::GPR_COUNT;

/// Tag bit: the vector's frame has an error code (below RIP).
pub const TAG_ERROR_CODE: u64 = 1 << 8;
/// Saved GPRs (all but `rsp`).
pub const SAVED_GPRS: usize = GPR_COUNT - 1;
/// Index of the handler slot, in qwords from `regs`.
pub const HANDLER: usize = SAVED_GPRS;
/// Index of the tag slot.
pub const TAG: usize = SAVED_GPRS + 1;
/// Index of the first frame qword.
pub const FRAME: usize = SAVED_GPRS + 2;

/// Assembles the routine at tx address `at` calling `func(ctx, regs)`, with the kernel `%gs`
/// check of `stacks` if given; returns its bytes and the offset of its `iretq`.
pub fn emit(at: u64, ctx: u64, func: u64, stacks: Option<DispatcherStacks>) -> (Vec<u8>, usize) {
    let build = || -> Result<(Vec<u8>, usize), IcedError> {
        let mut a = CodeAssembler::new(64)?;
        let saved = [
            rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        for r in saved.iter().rev() {
            a.push(*r)?;
        }
        a.cld()?;
        if let Some(st) = stacks {
            a.xor(r12d, r12d)?;
            emit_kernel_gs(&mut a, &st, r12d)?;
        }
        a.mov(rbx, rsp)?;
        a.and(rsp, -16)?;
        a.mov(rdi, ctx)?;
        a.mov(rsi, rbx)?;
        a.mov(rax, func)?;
        a.call(rax)?;
        a.mov(rsp, rdx)?;
        a.mov(qword_ptr(rsp + 8 * TAG as i32), rax)?;
        if stacks.is_some() {
            let mut kept = a.create_label();
            a.test(r12d, r12d)?;
            a.jz(kept)?;
            a.swapgs()?;
            a.set_label(&mut kept)?;
        }
        for r in saved {
            a.pop(r)?;
        }
        a.lea(rsp, qword_ptr(rsp + 8))?;
        a.ret()?;
        let mut iret = a.create_label();
        a.set_label(&mut iret)?;
        a.iretq()?;
        let result = a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
        let off = result.label_ip(&iret)? - at;
        Ok((result.inner.code_buffer, off as usize))
    };
    build().expect("the drk entry routine assembles")
}

#[cfg(test)]
mod tests {
    use super::*;
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};

    #[test]
    fn saves_every_gpr_but_rsp_and_ends_in_ret_then_iretq() {
        let at = 0xffff_ffff_c000_1000;
        let (code, iret) = emit(at, 0x1234, 0xffff_ffff_8100_0000, None);
        let insns: Vec<_> = Decoder::with_ip(64, &code, at, DecoderOptions::NONE)
            .into_iter()
            .collect();
        let pushes = insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Push)
            .count();
        let pops = insns
            .iter()
            .filter(|i| i.mnemonic() == Mnemonic::Pop)
            .count();
        assert_eq!((pushes, pops), (SAVED_GPRS, SAVED_GPRS));
        let last = insns.last().unwrap();
        assert_eq!(last.mnemonic(), Mnemonic::Iretq);
        assert_eq!(last.ip(), at + iret as u64);
        assert_eq!(insns[insns.len() - 2].mnemonic(), Mnemonic::Ret);
        // The first push saves r15 (highest), so rax lands lowest, at `regs`.
        assert_eq!(insns[0].op0_register(), iced_x86::Register::R15);
        assert_eq!(
            insns[SAVED_GPRS - 1].op0_register(),
            iced_x86::Register::RAX
        );
    }

    #[test]
    fn with_a_stacks_table_the_event_call_runs_on_the_kernel_gs_and_swaps_back() {
        let at = 0xffff_ffff_c000_1000;
        let stacks = DispatcherStacks {
            table: 0xffff_ffff_c100_0000,
            size: 32 << 10,
            cpunode_selector: 0x7b,
        };
        let (code, _) = emit(at, 0x1234, 0xffff_ffff_8100_0000, Some(stacks));
        let insns: Vec<_> = Decoder::with_ip(64, &code, at, DecoderOptions::NONE)
            .into_iter()
            .collect();
        let call = insns
            .iter()
            .position(|i| i.mnemonic() == Mnemonic::Call)
            .unwrap();
        let swaps: Vec<usize> = insns
            .iter()
            .enumerate()
            .filter(|(_, i)| i.mnemonic() == Mnemonic::Swapgs)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(swaps.len(), 2, "one swapgs to the kernel's base, one back");
        assert!(swaps[0] < call && call < swaps[1]);
        assert!(insns[..call].iter().any(|i| i.mnemonic() == Mnemonic::Lsl));
        assert!(insns[..call]
            .iter()
            .any(|i| i.mnemonic() == Mnemonic::Rdmsr));
        let first_pop = insns
            .iter()
            .position(|i| i.mnemonic() == Mnemonic::Pop)
            .unwrap();
        assert!(
            swaps[1] < first_pop,
            "swapped back before the saved registers return"
        );
    }
}
