//! The fast design's rulebook (BTKernel, Kedia & Bansal SOSP'13 §3–4): where it differs from
//! [`super::common`].
//!
//! | native | callret (default) | `no-callret` |
//! |---|---|---|
//! | `call rel` | `call rel32` to tx(target); block goes on (return lands on the fall-through) | `push $native_ret; jmp` exit |
//! | `call r/m` | push target, push tx(fall-through), lookup; block goes on | push target, push native return, lookup |
//! | `ret`, `ret imm16` | copied | lookup of the return address |
//! | with `landings` (default) | indirect calls, `jmp r/m` and no-callret `ret` jump through the landing table: [`super::landing_sites`] | |
//! | `iretq` | run at its native address (handlers see tx addresses in frames, which it returns to) | same |

use iced_x86::{FlowControl, Mnemonic};

use super::{common, landing_sites, Cx, RuleResult};
use crate::decode::NativeInsn;

pub(crate) fn rule(cx: &mut Cx, n: &NativeInsn) -> RuleResult {
    let callret = cx.opts.callret;
    match (n.flow, n.insn.mnemonic()) {
        (FlowControl::Call, Mnemonic::Call) if n.insn.is_call_near() && callret => {
            common::call_callret(cx, n)
        }
        (FlowControl::Call, Mnemonic::Call) if n.insn.is_call_near() => {
            common::call_push_native(cx, n)
        }
        (FlowControl::IndirectCall, Mnemonic::Call)
            if n.insn.is_call_near_indirect() && cx.opts.landings =>
        {
            if callret {
                landing_sites::call_callret(cx, n)
            } else {
                landing_sites::call_push_native(cx, n)
            }
        }
        (FlowControl::IndirectCall, Mnemonic::Call) if n.insn.is_call_near_indirect() => {
            common::call_indirect(cx, n, callret)
        }
        (FlowControl::Return, Mnemonic::Ret) if callret => common::copy_and_end(cx, n),
        (FlowControl::Return, Mnemonic::Ret)
            if cx.opts.landings && n.insn.code() == iced_x86::Code::Retnq =>
        {
            landing_sites::ret(cx, n)
        }
        (FlowControl::Return, Mnemonic::Ret) => common::ret_lookup(cx, n),
        (FlowControl::Return, Mnemonic::Iretq) => common::iretq_native(cx, n),
        _ => common::rule(cx, n),
    }
}
