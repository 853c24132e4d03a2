//! Rules both designs share, and the one `match` that picks them.
//!
//! | native | translation |
//! |---|---|
//! | anything that falls through (`FlowControl::Next`) | identity copy of the bytes |
//! | … with a RIP-relative operand | re-encoded at the tx address for the same absolute address; out of ±2 GiB: through a spilled scratch register (`lea` becomes `mov r, imm64`) |
//! | `sti`, `mov ss`, `pop ss` | copied, the next instruction kept adjacent (interrupt shadow) |
//! | `swapgs`, `hlt`, `syscall` | copied, block goes on |
//! | `sysretq` | copied, block ends |
//! | `jmp rel` | exit (chained `jmp rel32`) |
//! | `jcc rel` | `jcc rel32` exit, block goes on with the fall-through |
//! | `loop*`, `jrcxz`, `jecxz` | `op taken; jmp fall; taken: jmp rel32 exit; fall:` |
//! | `jmp [table + idx*8]` bounded by the block (`switch-tables`) | `jmp [tx_table + idx*8]`; a resolve stub after the body ([`crate::switch_table`]) |
//! | `jmp r/m` | `lea rsp,[rsp-rz]; push r/m` then the jumptable lookup (`ret rz`); with landings see [`super::landing_sites`] |
//! | `int3`, `int n`, `int1`, `ud0/1/2` | copied, then an exit to the next native instruction |
//! | `int3` where breakpoints run natively (kernel) | `jmp rel32` to the native `int3` |
//! | a direct branch to code that runs natively | straight there, no exit stub on the path |
//! | far transfers, `xbegin`, `sysenter`/`sysexit`, `iret`/`iretd` | unsupported: the block stops before them |

use iced_x86::{Code, FlowControl, Instruction, MemoryOperand, Mnemonic, OpKind, Register};

use super::{Cx, Flow, RuleResult, Unsupported};
use crate::cache::After;
use crate::decode::NativeInsn;
use crate::emit::{Emitter, EncodeFailed};
use crate::jumptable;
use crate::link::{self, Entries};
use crate::rollback::Recipe;

/// The shared rulebook.
pub(crate) fn rule(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let i = &n.insn;
    match (n.flow, i.mnemonic()) {
        (_, Mnemonic::Sti) => shadowing(cx, n),
        (FlowControl::Next, Mnemonic::Mov | Mnemonic::Pop) if i.op0_register() == Register::SS => {
            shadowing(cx, n)
        }
        (_, Mnemonic::Swapgs | Mnemonic::Hlt | Mnemonic::Syscall) => identity(cx, n),
        (_, Mnemonic::Sysretq | Mnemonic::Sysret) => copy_and_end(cx, n),
        (FlowControl::Next, _) => identity(cx, n),
        (FlowControl::UnconditionalBranch, Mnemonic::Jmp) if i.is_jmp_short_or_near() => {
            jmp_direct(cx, n)
        }
        (
            FlowControl::ConditionalBranch,
            Mnemonic::Loop | Mnemonic::Loope | Mnemonic::Loopne | Mnemonic::Jrcxz | Mnemonic::Jecxz,
        ) => loop_like(cx, n),
        (FlowControl::ConditionalBranch, _) if i.is_jcc_short_or_near() => jcc(cx, n),
        (FlowControl::IndirectBranch, Mnemonic::Jmp) if i.is_jmp_near_indirect() => {
            if let Some(site) = cx.switch {
                if let Some(flow) = switch_jump(cx, n, site)? {
                    return Ok(flow);
                }
            }
            if cx.opts.landings {
                super::landing_sites::jmp_indirect(cx, n)
            } else {
                jmp_indirect(cx, n)
            }
        }
        (FlowControl::Interrupt | FlowControl::Exception, _) => trap(cx, n),
        _ => Err(Unsupported),
    }
}

/// Whether `i` is translated by copying its bytes as they are, in every design: what
/// [`rule`] sends to [`identity`] without a RIP-relative operand (the designs' own rulebooks
/// have no arm for `FlowControl::Next`). `translate_block` copies these without the rulebooks.
pub(crate) fn is_plain_copy(n: &NativeInsn) -> bool {
    let i = &n.insn;
    n.flow == FlowControl::Next
        && !i.is_ip_rel_memory_operand()
        && match i.mnemonic() {
            Mnemonic::Sti | Mnemonic::Sysretq | Mnemonic::Sysret => false,
            Mnemonic::Mov | Mnemonic::Pop => i.op0_register() != Register::SS,
            _ => true,
        }
}

/// Identity copy; RIP-relative operands re-targeted for the tx address.
pub(crate) fn identity(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    if !n.insn.is_ip_rel_memory_operand() {
        cx.e.raw(n.bytes());
        return Ok(Flow::Continue);
    }
    let len = n.insn.len();
    let off = n.rip_disp as usize;
    if off != 0 {
        // The native bytes with the disp32 the decoder located rewritten: the same instruction
        // and length, so the same next IP the displacement is relative to. Re-encoding with
        // iced costs a few hundred host instructions more and may pick another encoding.
        let end = cx.e.here() + len as u64;
        let Ok(disp) = i32::try_from(n.insn.memory_displacement64().wrapping_sub(end) as i64)
        else {
            return far_rip(cx, n);
        };
        let mut bytes = n.bytes;
        bytes[off..off + 4].copy_from_slice(&disp.to_le_bytes());
        cx.e.raw(&bytes[..len]);
        return Ok(Flow::Continue);
    }
    let cp = cx.e.checkpoint();
    if cx.e.insn(&n.insn).is_ok() {
        return Ok(Flow::Continue);
    }
    cx.e.restore(cp);
    far_rip(cx, n)
}

/// A RIP-relative operand whose absolute address is out of rel32 reach from the code cache.
fn far_rip(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let i = &n.insn;
    let addr = i.memory_displacement64();
    let next = i.next_ip();
    if i.mnemonic() == Mnemonic::Lea {
        let e = &mut cx.e;
        let r = i.op0_register();
        let mov = match r.size() {
            8 => Instruction::with2(Code::Mov_r64_imm64, r, addr),
            4 => Instruction::with2(Code::Mov_r32_imm32, r, addr as u32),
            _ => return Err(Unsupported),
        };
        e.insn(&mov.map_err(EncodeFailed::from)?)?;
        return Ok(Flow::Continue);
    }
    if i.stack_pointer_increment() != 0 {
        if i.mnemonic() == Mnemonic::Push && i.memory_size().size() == 8 {
            push_far_qword(cx.e, addr)?;
            cx.e.cur = Recipe::clean(next);
            return Ok(Flow::Continue);
        }
        return Err(Unsupported);
    }
    let used = cx
        .info
        .info(i)
        .used_registers()
        .iter()
        .map(|u| u.register().full_register())
        .fold(0u64, |set, r| {
            if r.is_gpr64() {
                set | 1 << (r.number() - Register::RAX.number())
            } else {
                set
            }
        });
    if used & (1 << 4) != 0 {
        // Reads or writes rsp explicitly: it would see the moved stack pointer.
        return Err(Unsupported);
    }
    let scratch = (0..16)
        .filter(|r| *r != 4 && used & (1 << r) == 0)
        .map(gpr)
        .next()
        .ok_or(Unsupported)?;
    let rz = cx.red_zone as i32;
    let e = &mut cx.e;
    e.lea_rsp(-rz)?;
    e.push_reg(scratch)?;
    e.insn(&Instruction::with2(Code::Mov_r64_imm64, scratch, addr)?)?;
    let mut via = *i;
    via.set_memory_base(scratch);
    via.set_memory_displacement64(0);
    via.set_memory_displ_size(0);
    e.insn(&via)?;
    e.commit_to(next);
    e.pop_reg(scratch)?;
    e.lea_rsp(rz)?;
    Ok(Flow::Continue)
}

fn gpr(number: usize) -> Register {
    // SAFETY-free: Register is a C-like enum; the 64-bit GPRs are contiguous from RAX.
    [
        Register::RAX,
        Register::RCX,
        Register::RDX,
        Register::RBX,
        Register::RSP,
        Register::RBP,
        Register::RSI,
        Register::RDI,
        Register::R8,
        Register::R9,
        Register::R10,
        Register::R11,
        Register::R12,
        Register::R13,
        Register::R14,
        Register::R15,
    ][number]
}

/// `push qword [addr]` for an address out of rel32 reach: through rax, flags untouched.
fn push_far_qword(e: &mut Emitter, addr: u64) -> Result<(), EncodeFailed> {
    e.push_reg(Register::RAX)?;
    e.insn(&Instruction::with2(
        Code::Mov_r64_imm64,
        Register::RAX,
        addr,
    )?)?;
    e.insn(&Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RAX,
        MemoryOperand::with_base(Register::RAX),
    )?)?;
    e.insn(&Instruction::with2(
        Code::Xchg_rm64_r64,
        MemoryOperand::with_base(Register::RSP),
        Register::RAX,
    )?)?;
    e.cur.unspill(Register::RAX);
    Ok(())
}

/// `sti`, `mov ss`, `pop ss`: copied; the next instruction follows with nothing in between.
fn shadowing(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let flow = identity(cx, n)?;
    cx.shadow = true;
    Ok(flow)
}

/// Copied; the block ends (control goes where the instruction says: `ret` under callret,
/// `iretq` in fast, `sysretq`).
pub(crate) fn copy_and_end(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    cx.e.raw(n.bytes());
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

fn jmp_direct(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let exit = cx.exit_branch(Code::Jmp_rel32_64, n.insn.near_branch_target())?;
    cx.after = After::Exit(exit);
    Ok(Flow::End)
}

fn jcc(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let exit = cx.exit_branch(n.insn.code().as_near_branch(), n.insn.near_branch_target())?;
    cx.after = After::FallThroughOr(exit);
    cx.new_segment = true;
    Ok(Flow::Continue)
}

/// `loop*`/`jrcxz`/`jecxz` only have rel8 forms: branch over a local trampoline.
fn loop_like(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let (target, next) = (n.insn.near_branch_target(), n.insn.next_ip());
    let taken = cx.e.new_label();
    let fall = cx.e.new_label();
    cx.e.branch_to_label(n.insn.code(), taken)?;
    cx.e.commit_to(next);
    cx.e.branch_to_label(Code::Jmp_rel8_64, fall)?;
    cx.e.bind(taken);
    cx.e.commit_to(target);
    let exit = cx.exit_branch(Code::Jmp_rel32_64, target)?;
    cx.e.bind(fall);
    cx.after = After::FallThroughOr(exit);
    cx.new_segment = true;
    Ok(Flow::Continue)
}

/// `iretq` executed at its own native address (`jmp rel32` there): every fault it takes (#GP,
/// #SS, #NP on a bad user frame; #DF through espfix64) is reported at the native PC, which
/// Linux compares with `native_irq_return_iret` to fix up a bad return to user mode (in
/// `error_entry` and `exc_double_fault`). It is the same instruction, so nothing else changes.
pub(crate) fn iretq_native(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    if !cx.e.reaches(n.insn.ip(), cx.cache_span) {
        // Only in user-space tests, whose code may sit anywhere: an `iretq` cannot run there.
        return Err(Unsupported);
    }
    cx.e.branch_to(Code::Jmp_rel32_64, n.insn.ip())?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// Traps (`int3`, `int n`, `ud2`, …): copied, then an exit to the next native instruction, so
/// the address a handler resumes at is a clean boundary.
fn trap(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    if cx.breakpoints_native && n.insn.code() == Code::Int3 {
        // Someone else's breakpoint (text patching, kprobes): run it where it was put.
        cx.e.branch_to(Code::Jmp_rel32_64, n.insn.ip())?;
        cx.after = After::Dynamic;
        return Ok(Flow::End);
    }
    cx.e.raw(n.bytes());
    let next = n.insn.next_ip();
    // Recorded (not an instruction start): a handler resumes at the next instruction.
    cx.e.cur = Recipe::clean(next);
    cx.exit_branch(Code::Jmp_rel32_64, next)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// Pushes the target of an indirect `jmp`/`call` (operand 0) as a new stack slot, reading any
/// rsp-based operand as the native instruction would.
pub(crate) fn push_target(cx: &mut Cx, i: &Instruction) -> Result<(), Unsupported> {
    let e = &mut cx.e;
    match i.op0_kind() {
        OpKind::Register => {
            let r = i.op0_register();
            if r.size() != 8 || r == Register::RSP {
                return Err(Unsupported);
            }
            e.pushing(&Instruction::with1(Code::Push_r64, r).map_err(EncodeFailed::from)?)?;
        }
        OpKind::Memory => {
            // A near target is a qword (`UInt64` from `push`, `QwordOffset` from `call`/`jmp`);
            // far pointers (m16:64) are not.
            if i.memory_size().size() != 8 {
                return Err(Unsupported);
            }
            let (base, index) = (i.memory_base(), i.memory_index());
            if base == Register::RIP {
                let addr = i.memory_displacement64();
                let mem = MemoryOperand::with_base_displ(Register::RIP, addr as i64);
                let cp = e.checkpoint();
                if e.pushing(&Instruction::with1(Code::Push_rm64, mem).map_err(EncodeFailed::from)?)
                    .is_err()
                {
                    e.restore(cp);
                    push_far_qword(e, addr)?;
                    e.cur.rsp_adjust = 8;
                }
                return Ok(());
            }
            if (base != Register::None && !base.is_gpr64())
                || (index != Register::None && !index.is_gpr64())
            {
                return Err(Unsupported);
            }
            let mut displ = i.memory_displacement64() as i64;
            if base == Register::RSP {
                displ += e.cur.rsp_adjust as i64;
            }
            let size = if displ == 0 { 0 } else { 1 };
            let mem = MemoryOperand::new(
                base,
                index,
                i.memory_index_scale(),
                displ,
                size,
                false,
                i.segment_prefix(),
            );
            e.pushing(&Instruction::with1(Code::Push_rm64, mem).map_err(EncodeFailed::from)?)?;
        }
        _ => return Err(Unsupported),
    }
    Ok(())
}

fn jmp_indirect(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let rz = cx.red_zone;
    cx.e.lea_rsp(-(rz as i32))?;
    push_target(cx, &n.insn)?;
    lookup(cx, rz)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// A bounded jump-table jump through a translated table, if the data memory has room for it
/// (None: translate it as any indirect jump).
fn switch_jump(
    cx: &mut Cx,
    n: &NativeInsn,
    site: crate::switch_table::Site,
) -> Result<Option<Flow>, Unsupported> {
    let bytes = 8 * site.entries as usize;
    let data_off = cx.switch_next;
    if data_off + bytes > crate::switch_table::OFF + crate::switch_table::SIZE {
        return Ok(None);
    }
    let table = cx.data_addr + data_off as u64;
    let mem = MemoryOperand::new(
        Register::None,
        site.index,
        8,
        table as i64,
        4,
        false,
        Register::None,
    );
    cx.e.insn(&Instruction::with1(Code::Jmp_rm64, mem).map_err(EncodeFailed::from)?)?;
    cx.switch_next += bytes;
    let label = cx.e.new_label();
    cx.add_switch_exit(label, n.insn.ip(), site, data_off);
    cx.after = After::Dynamic;
    Ok(Some(Flow::End))
}

/// The resolve stub of a translated jump table, for the jump at native `pc` (every entry
/// starts here): the native entry becomes the target slot, then the dispatcher. The state is
/// the native one at the jump.
pub(crate) fn emit_switch_resolve(
    e: &mut Emitter,
    pc: u64,
    site: crate::switch_table::Site,
    exit_id: u32,
    red_zone: u16,
    entries: &Entries,
) -> Result<(), EncodeFailed> {
    e.cur = Recipe::clean(pc);
    e.lea_rsp(-(red_zone as i32))?;
    let native = MemoryOperand::new(
        Register::None,
        site.index,
        8,
        site.native_table as i64,
        4,
        false,
        Register::None,
    );
    e.pushing(&Instruction::with1(Code::Push_rm64, native)?)?;
    link::emit_enter_dispatcher(e, exit_id, entries.for_k(red_zone, red_zone))
}

/// The jumptable lookup of the native target in the slot at `[rsp]`; afterwards control is at
/// its translation with the slot and `k` more bytes dropped. With the jumptable off: straight
/// to the dispatcher.
pub(crate) fn lookup(cx: &mut Cx, k: u16) -> Result<(), EncodeFailed> {
    let (_, id) = cx.indirect_exit();
    let (entries, rz, data) = (cx.entries, cx.red_zone, cx.data_addr);
    if cx.opts.jumptable {
        let mut stub = 0;
        jumptable::emit_probe(
            cx.e,
            data,
            cx.indirect,
            |e| {
                stub = e.here();
                emit_miss(e, id, k, &entries, rz)
            },
            |e| jumptable::emit_slot_jump(e, k),
        )?;
        cx.set_last_stub(stub);
    } else {
        if let Some(home) = cx.indirect {
            cx.e.push_reg(Register::RCX)?;
            crate::clients::emit_bump_via(
                cx.e,
                home,
                crate::clients::Counter::IndirectBranches,
                Register::RCX,
            )?;
            cx.e.pop_reg(Register::RCX)?;
            cx.set_last_stub(cx.e.here());
        }
        emit_miss(cx.e, id, k, &entries, rz)?;
    }
    Ok(())
}

/// Enters the dispatcher with the slot at `[rsp]`, to drop the slot and `k` bytes after.
fn emit_miss(
    e: &mut Emitter,
    id: u32,
    k: u16,
    entries: &Entries,
    rz: u16,
) -> Result<(), EncodeFailed> {
    if k == 0 || k == 8 || k == rz {
        return link::emit_enter_dispatcher(e, id, entries.for_k(k, rz));
    }
    // `ret imm16`: move the slot up so that only 8 bytes remain to drop after it. The bytes
    // it overwrites are the arguments the return discards.
    let up = k as i32 - 8;
    e.push_reg(Register::RAX)?;
    let rsp = |d: i32| MemoryOperand::with_base_displ(Register::RSP, d as i64);
    e.insn(&Instruction::with2(
        Code::Mov_r64_rm64,
        Register::RAX,
        rsp(8),
    )?)?;
    e.insn(&Instruction::with2(
        Code::Mov_rm64_r64,
        rsp(8 + up),
        Register::RAX,
    )?)?;
    e.pop_reg(Register::RAX)?;
    e.lea_rsp(up)?;
    link::emit_enter_dispatcher(e, id, entries.k8)
}

/// callret `call rel`: `call rel32` to the callee's translation, so the pushed return address
/// is the tx address of the fall-through, which this block goes on to translate.
pub(crate) fn call_callret(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let (target, next) = (n.insn.near_branch_target(), n.insn.next_ip());
    if target == next {
        // `call next; pop reg` reads its own address: push the native one, as the hardware does.
        cx.e.push_u64(next)?;
        cx.e.cur = Recipe::clean(next);
        return Ok(Flow::Continue);
    }
    let exit = cx.exit_branch(Code::Call_rel32_64, target)?;
    cx.after = After::Exit(exit);
    cx.new_segment = true;
    Ok(Flow::Continue)
}

/// Non-callret `call rel` (fast:no-callret, drk): push the native return address, jump.
pub(crate) fn call_push_native(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    cx.e.push_u64(n.insn.next_ip())?;
    let exit = cx.exit_branch(Code::Jmp_rel32_64, n.insn.near_branch_target())?;
    cx.after = After::Exit(exit);
    Ok(Flow::End)
}

/// `call r/m`.
///
/// callret: a real `call` pushes the tx address of the fall-through (where this block goes on),
/// so the return-stack buffer predicts the callee's copied `ret`; the call goes to an
/// out-of-line tail that reads the target (as the hardware would, rsp-relative operands seeing
/// the pre-call rsp) and looks it up:
///
/// ```text
///     jmp   call
/// tail:                       ; rsp = native rsp - 8, [rsp] = tx return address
///     push  r/m               ; target slot
///     <lookup, k = 0>
/// call:
///     call  tail
/// ret:                        ; the fall-through's translation
/// ```
///
/// Otherwise: the target is pushed first, a copy of it below, the native return address
/// written where the hardware puts it, then the lookup; the block ends.
pub(crate) fn call_indirect(cx: &mut Cx, n: &NativeInsn, callret: bool) -> RuleResult {
    if callret {
        let (tail, call) = (cx.e.new_label(), cx.e.new_label());
        let pc = n.insn.ip();
        cx.e.branch_to_label(Code::Jmp_rel32_64, call)?;
        cx.e.bind(tail);
        cx.e.cur = Recipe {
            rsp_adjust: 8,
            ..Recipe::clean(pc)
        };
        push_target(cx, &n.insn)?;
        lookup(cx, 0)?;
        cx.e.bind(call);
        cx.e.cur = Recipe::clean(pc);
        cx.e.branch_to_label(Code::Call_rel32_64, tail)?;
        cx.after = After::Dynamic;
        cx.new_segment = true;
        return Ok(Flow::Continue);
    }
    push_target(cx, &n.insn)?;
    // Slot copy one lower; [rsp+8] becomes the return-address slot.
    cx.e.push_rsp_qword(0)?;
    cx.e.store_u64(8, n.insn.next_ip())?;
    lookup(cx, 0)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}

/// Non-callret `ret`/`ret imm16`: copy the return address into a slot and look it up.
pub(crate) fn ret_lookup(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let imm = match n.insn.code() {
        Code::Retnq => 0,
        Code::Retnq_imm16 => n.insn.immediate16(),
        _ => return Err(Unsupported),
    };
    cx.e.push_rsp_qword(0)?;
    lookup(cx, 8 + imm)?;
    cx.after = After::Dynamic;
    Ok(Flow::End)
}
