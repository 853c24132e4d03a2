//! Indirect branches looked up through landings (fast with `landings`, the default): each
//! site loads the native target into rcx with rcx and rax saved, the red-zone gap below
//! them, and jumps through the landing table ([`crate::landing`]). What the landing leaves is
//! the native branch's stack:
//!
//! | native | site |
//! |---|---|
//! | `jmp r/m` | `[lea rsp,[rsp-rz]]` `push rcx` `mov rcx, r/m` → table |
//! | `call r/m`, callret | `call tail` inline (pushes tx of the fall-through, which the block goes on to translate); `tail:` after the stubs: `[lea rsp,[rsp-rz]]` `push rcx` `mov rcx, r/m` → table |
//! | `call r/m`, no-callret | `lea rsp,[rsp-8-rz]` `push rcx` `mov rcx, r/m`, the native return address into the reserved qword → table |
//! | `ret`, no red zone (kernel) | `xchg rcx,[rsp]` → table (the return address's qword holds the saved rcx) |
//! | `ret`, red zone | `lea rsp,[rsp+8-rz]` `push rcx` `mov rcx,[rsp+rz]` → table |
//!
//! drk's sites (the slot layout) also leave the target in a stack slot above the saved
//! registers, where the native branch consumed it:
//!
//! | native | drk site |
//! |---|---|
//! | `jmp r/m` | `[lea rsp,[rsp-rz]]` `push r/m` `push rcx` `mov rcx,[rsp+8]` → table |
//! | `call r/m` | `lea rsp,[rsp-8-rz]` `push r/m`, the native return address into the reserved qword, `push rcx` `mov rcx,[rsp+8]` → table |
//! | `ret`, no red zone (kernel) | `push rcx` `mov rcx,[rsp+8]` → table (the return address is the slot) |
//! | `ret`, red zone | `lea rsp,[rsp+8-rz]` `push [rsp+rz-8]` `push rcx` `mov rcx,[rsp+8]` → table |
//!
//! `ret imm16` keeps the probe of [`crate::jumptable`]: the landing cannot drop its bytes.
//!
//! With `inline-cache` (the default) the `jmp r/m` and `call r/m` sites, not `ret`, put their
//! inline cache's `jmp rel32` between loading the target and the table jump
//! ([`crate::inline_cache`]).

use iced_x86::{Code, Instruction, MemoryOperand, OpKind, Register};

use super::{Cx, Flow, RuleResult, Unsupported};
use crate::cache::After;
use crate::decode::NativeInsn;
use crate::env::is_abs32;
use crate::landing;
use crate::rollback::Recipe;

/// Whether operand 0 is a near target [`load_target`] can read: a 64-bit register other than
/// rsp, or a qword in memory addressed by 64-bit registers or RIP (far pointers, m16:64, are
/// not near targets).
fn loadable(i: &Instruction) -> bool {
    match i.op0_kind() {
        OpKind::Register => i.op0_register().size() == 8 && i.op0_register() != Register::RSP,
        OpKind::Memory => {
            let ok = |r: Register| r == Register::None || r.is_gpr64();
            i.memory_size().size() == 8
                && (i.memory_base() == Register::RIP || ok(i.memory_base()))
                && ok(i.memory_index())
        }
        _ => false,
    }
}

/// `mov rcx, <operand 0>` as the native instruction reads it: rsp-based operands see the
/// native rsp (the site's pushes undone), RIP-relative ones the native address.
fn load_target(cx: &mut Cx, i: &Instruction) -> Result<(), Unsupported> {
    if !loadable(i) {
        return Err(Unsupported);
    }
    let e = &mut cx.e;
    let mov = |mem: MemoryOperand| Instruction::with2(Code::Mov_r64_rm64, Register::RCX, mem);
    match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            if r != Register::RCX {
                e.insn(&Instruction::with2(Code::Mov_r64_rm64, Register::RCX, r)?)?;
            }
        }
        _ => {
            let (base, index, seg) = (i.memory_base(), i.memory_index(), i.segment_prefix());
            if base == Register::RIP {
                let addr = i.memory_displacement64();
                let cp = e.checkpoint();
                let rip = MemoryOperand::with_base_displ(Register::RIP, addr as i64);
                if e.insn(&mov(rip)?).is_ok() {
                    return Ok(());
                }
                e.restore(cp);
                if is_abs32(addr) {
                    let abs = MemoryOperand::new(
                        Register::None,
                        Register::None,
                        1,
                        addr as i64,
                        4,
                        false,
                        seg,
                    );
                    e.insn(&mov(abs)?)?;
                } else {
                    e.insn(&Instruction::with2(
                        Code::Mov_r64_imm64,
                        Register::RCX,
                        addr,
                    )?)?;
                    e.insn(&mov(MemoryOperand::with_base(Register::RCX))?)?;
                }
                return Ok(());
            }
            let mut displ = i.memory_displacement64() as i64;
            if base == Register::RSP {
                displ += e.cur.rsp_adjust as i64;
            }
            let size = if displ == 0 { 0 } else { 1 };
            let mem =
                MemoryOperand::new(base, index, i.memory_index_scale(), displ, size, false, seg);
            e.insn(&mov(mem)?)?;
        }
    }
    Ok(())
}

/// Whether a site gets an inline cache in front of its table jump ([`crate::inline_cache`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ic {
    /// No (`ret`, or the option off).
    No,
    /// Yes, in the body: the fill stub goes after the body with the exit stubs.
    Body,
    /// Yes, in a callret call tail (after the stubs): the fill stub follows the tail.
    Tail,
}

/// The table jump with rcx saved at `[rsp]` and the target in rcx, behind the site's inline
/// cache if it has one: its `jmp rel32`, patched once, is the last instruction before the
/// lookup, which its misses go on to.
fn table_jump(cx: &mut Cx, ic: Ic) -> Result<(), Unsupported> {
    let site = if ic != Ic::No && cx.opts.inline_cache {
        let recipe = cx.e.cur;
        let field =
            crate::inline_cache::emit_site_jump(cx.e, cx.opts.line_pad, cx.opts.prefix_pad)?;
        Some((field, recipe))
    } else {
        None
    };
    landing::emit_table_jump(cx.e, cx.data_addr, cx.indirect)?;
    if let Some((field, recipe)) = site {
        cx.inline_cache_exit(field, recipe, ic == Ic::Tail)?;
    }
    Ok(())
}

/// The end every site shares: rcx saved at `[rsp]`, the target loaded, the table jump.
fn load_and_jump(cx: &mut Cx, i: &Instruction, ic: Ic) -> Result<(), Unsupported> {
    load_target(cx, i)?;
    table_jump(cx, ic)
}

/// The end of a site whose target is on the stack at `[rsp+at]`: save rcx, load the target
/// (at `[rsp+at+8]` after the push), jump through the table.
fn stacked_target_and_jump(cx: &mut Cx, at: i64, ic: Ic) -> Result<(), Unsupported> {
    cx.e.push_reg(Register::RCX)?;
    cx.e.load_rsp(Register::RCX, at as i32 + 8)?;
    table_jump(cx, ic)
}

/// `jmp r/m`.
pub(crate) fn jmp_indirect(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    cx.e.lea_rsp(-(cx.red_zone as i32))?;
    if cx.design == crate::Design::Drk {
        super::common::push_target(cx, &n.insn)?;
        stacked_target_and_jump(cx, 0, Ic::Body)?;
        cx.after = After::Dynamic;
        return Ok(Flow::End);
    }
    cx.e.push_reg(Register::RCX)?;
    load_and_jump(cx, &n.insn, Ic::Body)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// callret `call r/m`: the inline `call` to a tail emitted after the block's stubs
/// ([`emit_call_tail`]); the block goes on with the fall-through, where the callee returns.
pub(crate) fn call_callret(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    if !loadable(&n.insn) {
        return Err(Unsupported);
    }
    let tail = cx.e.new_label();
    cx.e.branch_to_label(Code::Call_rel32_64, tail)?;
    cx.tails.push((tail, n.insn));
    cx.after = After::Dynamic;
    cx.new_segment = true;
    Ok(Flow::Continue)
}

/// The tail of a callret `call r/m` at `label` (after the stubs): the call pushed the tx
/// return address.
pub(crate) fn emit_call_tail(
    cx: &mut Cx,
    label: crate::emit::Label,
    i: &Instruction,
) -> Result<(), Unsupported> {
    cx.e.bind(label);
    cx.e.cur = Recipe {
        rsp_adjust: 8,
        ..Recipe::clean(i.ip())
    };
    cx.e.lea_rsp(-(cx.red_zone as i32))?;
    cx.e.push_reg(Register::RCX)?;
    load_and_jump(cx, i, Ic::Tail)
}

/// no-callret and drk `call r/m`: the native return address where the hardware puts it.
pub(crate) fn call_push_native(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let rz = cx.red_zone as i32;
    cx.e.lea_rsp(-8 - rz)?;
    if cx.design == crate::Design::Drk {
        super::common::push_target(cx, &n.insn)?;
        cx.e.store_u64(8 + rz, n.insn.next_ip())?;
        stacked_target_and_jump(cx, 0, Ic::Body)?;
        cx.after = After::Dynamic;
        return Ok(Flow::End);
    }
    cx.e.push_reg(Register::RCX)?;
    load_target(cx, &n.insn)?;
    cx.e.store_u64(8 + rz, n.insn.next_ip())?;
    table_jump(cx, Ic::Body)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// no-callret and drk `ret` (no immediate).
pub(crate) fn ret(cx: &mut Cx, _n: &NativeInsn) -> RuleResult {
    let rz = cx.red_zone as i32;
    if cx.design == crate::Design::Drk {
        if rz != 0 {
            // The return address moves down to where the slot goes, over the dead red zone.
            cx.e.lea_rsp(8 - rz)?;
            let ra = MemoryOperand::with_base_displ(Register::RSP, (rz - 8) as i64);
            cx.e.pushing(&Instruction::with1(Code::Push_rm64, ra)?)?;
        }
        stacked_target_and_jump(cx, 0, Ic::No)?;
        cx.after = After::Dynamic;
        return Ok(Flow::End);
    }
    if rz == 0 {
        cx.e.insn(&Instruction::with2(
            Code::Xchg_rm64_r64,
            MemoryOperand::with_base(Register::RSP),
            Register::RCX,
        )?)?;
        landing::emit_table_jump(cx.e, cx.data_addr, cx.indirect)?;
    } else {
        // The return address is at [rsp + rz - 8] once rsp moved up to below the red zone.
        cx.e.lea_rsp(8 - rz)?;
        stacked_target_and_jump(cx, (rz - 8) as i64, Ic::No)?;
    }
    cx.after = After::Dynamic;
    Ok(Flow::End)
}
