//! The drk design's rulebook (DRK, Feiner, Brown, Goel ASPLOS'12 §3–4): where it differs from
//! [`super::common`]. Stacks and frames only ever hold native addresses.
//!
//! | native | translation |
//! |---|---|
//! | `call rel` | `push $native_ret; jmp` exit |
//! | `call r/m` | push target, push native return, lookup |
//! | `ret`, `ret imm16` | lookup of the return address |
//! | with `landings` (default) | indirect calls, `jmp r/m` and `ret` jump through the landing table in the slot layout: [`super::landing_sites`] | |
//! | `iretq` | to user mode (`CS & 3 != 0`): run at its native address, so its faults report the native PC. To kernel mode: the frame's native RIP is looked up and replaced by its translation as the last step before the copied `iretq` |

use iced_x86::{Code, FlowControl, Instruction, MemoryOperand, Mnemonic, Register};

use super::{common, landing_sites, Cx, RuleResult, Unsupported};
use crate::decode::NativeInsn;
use crate::emit::EncodeFailed;
use crate::jumptable;
use crate::link;
use crate::rollback::Recipe;

pub(crate) fn rule(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    match (n.flow, n.insn.mnemonic()) {
        (FlowControl::Call, Mnemonic::Call) if n.insn.is_call_near() => {
            common::call_push_native(cx, n)
        }
        (FlowControl::IndirectCall, Mnemonic::Call)
            if n.insn.is_call_near_indirect() && cx.opts.landings =>
        {
            landing_sites::call_push_native(cx, n)
        }
        (FlowControl::IndirectCall, Mnemonic::Call) if n.insn.is_call_near_indirect() => {
            common::call_indirect(cx, n, false)
        }
        (FlowControl::Return, Mnemonic::Ret)
            if cx.opts.landings && n.insn.code() == Code::Retnq =>
        {
            landing_sites::ret(cx, n)
        }
        (FlowControl::Return, Mnemonic::Ret) => common::ret_lookup(cx, n),
        (FlowControl::Return, Mnemonic::Iretq) => iretq_to_translated(cx, n),
        _ => common::rule(cx, n),
    }
}

/// `iretq` whose frame holds a native kernel RIP: look it up, write the tx address into the
/// frame (the last step before `iretq`, so rollback maps it back), `iretq`.
fn iretq_to_translated(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    if n.insn.code() != Code::Iretq {
        return Err(Unsupported);
    }
    let pc = n.insn.ip();
    let e = &mut cx.e;
    let rsp = |d: i64| MemoryOperand::with_base_displ(Register::RSP, d);
    // iretq reloads RFLAGS from the frame: the flags are dead here.
    e.insn(&Instruction::with2(Code::Test_rm8_imm8, rsp(8), 3u32).map_err(EncodeFailed::from)?)?;
    let native = e.new_label();
    e.branch_to_label(Code::Jne_rel32_64, native)?;
    e.pushing(&Instruction::with1(Code::Push_rm64, rsp(0)).map_err(EncodeFailed::from)?)?;
    let (_, id) = cx.indirect_exit();
    let iret_entry = cx.entries.iret;
    let write_frame = |e: &mut crate::emit::Emitter| -> Result<(), EncodeFailed> {
        e.insn(&Instruction::with1(Code::Pop_rm64, rsp(0))?)?;
        e.cur = Recipe {
            tx_in_slot: Some(0),
            ..Recipe::clean(pc)
        };
        Ok(())
    };
    if cx.opts.jumptable {
        let mut stub = 0;
        jumptable::emit_probe(
            cx.e,
            cx.data_addr,
            cx.indirect,
            |e| {
                stub = e.here();
                link::emit_enter_dispatcher(e, id, iret_entry)
            },
            write_frame,
        )?;
        cx.set_last_stub(stub);
    } else {
        cx.set_last_stub(cx.e.here());
        link::emit_enter_dispatcher(cx.e, id, iret_entry)?;
    }
    cx.e.raw(n.bytes());
    // To user mode: the native `iretq` itself (see `common::iretq_native`).
    cx.e.bind(native);
    cx.e.cur = Recipe::clean(pc);
    common::iretq_native(cx, n)
}
