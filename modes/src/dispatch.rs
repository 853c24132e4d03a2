//! The dispatcher trampoline: save the machine state, call the translator's
//! [`crate::Translator::dispatch`], restore, return (the convention is in [`crate::link`]).
//!
//! [`emit_trampoline`] assembles one for a given context pointer and Rust function; the user
//! executor uses it as is, the kernel may too (with `disable_interrupts` and without
//! `save_extended_state`), or implement the same convention in its own asm.

use alloc::vec::Vec;
use iced_x86::code_asm::*;

/// What the trampoline saves beyond the GPRs and RFLAGS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrampolineConfig {
    /// `xsave`/`xrstor` x87/SSE/AVX/AVX-512 state around the call (user space, where the
    /// dispatcher's Rust code and libc may use vector registers). The kernel has no SSE.
    pub save_extended_state: bool,
    /// `cli` after saving RFLAGS (the kernel's dispatcher runs with interrupts off).
    pub disable_interrupts: bool,
}

/// Bytes of the `xsave` area (covers x87, SSE, AVX and AVX-512 state).
const XSAVE_AREA: i32 = 4096;
/// `xsave` feature mask: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM).
const XSAVE_MASK: i32 = 0xe7;

/// Assembles a trampoline at tx address `at` that calls
/// `func(ctx, exit_id, slot: *mut u64)` (SysV ABI). Returns its bytes.
pub fn emit_trampoline(at: u64, ctx: u64, func: u64, cfg: TrampolineConfig) -> Vec<u8> {
    let build = || -> Result<Vec<u8>, iced_x86::IcedError> {
        let mut a = CodeAssembler::new(64)?;
        let saved = [
            rax, rcx, rdx, rbx, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        a.pushfq()?;
        if cfg.disable_interrupts {
            a.cli()?;
        }
        for r in saved {
            a.push(r)?;
        }
        // rsp at entry = rsp + 8 * 16; [entry+8] = exit id, [entry+16] = slot.
        let entry = 8 * 16;
        a.mov(rbp, rsp)?;
        a.and(rsp, -64)?;
        if cfg.save_extended_state {
            a.sub(rsp, XSAVE_AREA)?;
            for k in 0..8 {
                a.mov(qword_ptr(rsp + 512 + 8 * k), 0)?;
            }
            a.mov(eax, XSAVE_MASK)?;
            a.xor(edx, edx)?;
            a.xsave64(ptr(rsp))?;
        }
        a.cld()?;
        a.mov(rdi, ctx)?;
        a.mov(rsi, qword_ptr(rbp + entry + 8))?;
        a.lea(rdx, qword_ptr(rbp + entry + 16))?;
        a.mov(rax, func)?;
        a.call(rax)?;
        if cfg.save_extended_state {
            a.mov(eax, XSAVE_MASK)?;
            a.xor(edx, edx)?;
            a.xrstor64(ptr(rsp))?;
        }
        a.mov(rsp, rbp)?;
        for r in saved.iter().rev() {
            a.pop(*r)?;
        }
        a.popfq()?;
        a.ret()?;
        a.assemble(at)
    };
    build().expect("trampoline assembles")
}
