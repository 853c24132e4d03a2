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
    /// Run the dispatcher on a stack of its own per CPU rather than the program's.
    pub stacks: Option<DispatcherStacks>,
}

/// Per-CPU dispatcher stacks (the kernel: exits can be taken on the 4 KiB entry stack of an
/// exception from user mode, before the handler moves to the task stack, and the translator
/// needs several KiB; DynamoRIO likewise runs its dispatcher on its own stack).
///
/// The CPU number comes from `lsl` of the GDT's CPU-number segment (what the vDSO's getcpu
/// reads: limit = cpu | node << 12), which needs neither `%gs` (it may be the user's at an
/// exit taken before `swapgs`) nor memory. A dispatch that starts on its CPU's dispatcher
/// stack already (a nested entry) stays on it.
///
/// The table has one [`DispatcherStacks::ENTRY`]-byte entry per CPU: the stack top, then the
/// CPU's kernel `%gs` base (0: do not check). When the active `%gs` base (`MSR_GS_BASE`)
/// differs from a non-zero one, the trampoline runs the dispatcher between two `swapgs`: the
/// kernel code it calls reaches per-CPU data (and its stack canary) through `%gs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DispatcherStacks {
    /// Address (absolute, sign-extended 32-bit) of the table, indexed by CPU.
    pub table: u64,
    /// Bytes of each stack (the top is its first byte past the end, 64-byte aligned).
    pub size: u32,
    /// Selector of the CPU-number segment (`__CPUNODE_SEG`, 0x7b on x86-64 Linux).
    pub cpunode_selector: u16,
}

impl DispatcherStacks {
    /// Bytes of a table entry: stack top, kernel `%gs` base.
    pub const ENTRY: usize = 16;
}

/// `MSR_GS_BASE`.
const MSR_GS_BASE: u32 = 0xc000_0101;

/// Bytes of the `xsave` area (covers x87, SSE, AVX and AVX-512 state).
const XSAVE_AREA: i32 = 4096;
/// `xsave` feature mask: x87, SSE, AVX, AVX-512 (opmask, ZMM_Hi256, Hi16_ZMM).
const XSAVE_MASK: i32 = 0xe7;

/// Emits: find this CPU (`lsl` of the CPU-number segment) and, when the active `%gs` base is
/// not its kernel one from `st`'s table (and the table has one), `swapgs` and set `swapped`
/// to 1 (the caller zeroes it first and swaps back when it is set). Code that reaches kernel C
/// must never run on a `%gs` base a user chose (ptrace, `wrgsbase`). Leaves `rsi` = the CPU's
/// byte offset in the table; clobbers rax, rcx, rdx, rdi and the flags.
pub(crate) fn emit_kernel_gs(
    a: &mut CodeAssembler,
    st: &DispatcherStacks,
    swapped: AsmRegister32,
) -> Result<(), iced_x86::IcedError> {
    let mut gs_ok = a.create_label();
    let table = st.table as i64 as i32;
    a.mov(eax, st.cpunode_selector as u32)?;
    a.lsl(eax, eax)?;
    a.and(eax, 0xfff)?;
    a.shl(eax, DispatcherStacks::ENTRY.trailing_zeros())?;
    a.mov(rsi, rax)?;
    a.mov(rdi, qword_ptr(rsi + table + 8))?;
    a.test(rdi, rdi)?;
    a.jz(gs_ok)?;
    a.mov(ecx, MSR_GS_BASE)?;
    a.rdmsr()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.cmp(rax, rdi)?;
    a.je(gs_ok)?;
    a.swapgs()?;
    a.mov(swapped, 1)?;
    a.set_label(&mut gs_ok)?;
    Ok(())
}

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
        // rbx (callee-saved, restored from the frame) says whether to swapgs back.
        a.xor(ebx, ebx)?;
        if let Some(st) = cfg.stacks {
            let mut switch = a.create_label();
            let mut stay = a.create_label();
            let table = st.table as i64 as i32;
            emit_kernel_gs(&mut a, &st, ebx)?;
            a.mov(rax, qword_ptr(rsi + table))?;
            a.lea(rcx, qword_ptr(rax - st.size as i32))?;
            a.cmp(rbp, rcx)?;
            a.jb(switch)?;
            a.cmp(rbp, rax)?;
            a.jb(stay)?;
            a.set_label(&mut switch)?;
            a.mov(rsp, rax)?;
            a.set_label(&mut stay)?;
        }
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
        let mut no_swap = a.create_label();
        a.test(ebx, ebx)?;
        a.jz(no_swap)?;
        a.swapgs()?;
        a.set_label(&mut no_swap)?;
        for r in saved.iter().rev() {
            a.pop(*r)?;
        }
        a.popfq()?;
        a.ret()?;
        a.assemble(at)
    };
    build().expect("trampoline assembles")
}
