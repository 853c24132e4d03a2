//! The inline indirect-branch lookup table (native → tx), probed by emitted code.
//!
//! Two arrays of 2^16 qwords at the start of [`DataMemory`]: `native[i]` and `tx[i]`, indexed by
//! `i = (T + bswap(T)) & 0xffff` over the low 32 bits of the native target T (bits 16-31 folded
//! onto bits 0-15, so targets 64 KiB apart do not collide). The probe never touches the arithmetic flags, so it
//! needs no `pushf`/`popf` whatever the liveness (DynamoRIO's `lea`+`jrcxz` compare):
//!
//! ```text
//!   ; [rsp] = native target T (the "target slot"); rax, rcx free to spill
//!   push rcx ; push rax
//!   mov   rax, [rsp+16]            ; T
//!   mov ecx, eax ; bswap ecx ; lea ecx, [rcx+rax] ; movzx ecx, cx   ; i
//!   mov   rcx, [rcx*8 + NATIVE]    ; native[i]
//!   not   rax
//!   lea   rcx, [rcx + rax + 1]     ; native[i] - T
//!   not   rax
//!   jrcxz hit
//! miss:
//!   pop rax ; pop rcx              ; restore, enter the dispatcher (see `link`)
//!   push exit_id ; jmp persistent_entry(k)
//! hit:
//!   (i again, as above)
//!   push  qword [rcx*8 + TX]       ; tx[i]
//!   mov   rcx, [rcx*8 + NATIVE]    ; native[i] again, after tx[i]
//!   not rax ; lea rcx, [rcx + rax + 1] ; not rax
//!   jrcxz ok
//!   lea   rsp, [rsp+8] ; jmp miss  ; the entry changed under us
//! ok:
//!   pop   qword [rsp+16]           ; target slot := tx
//!   pop rax ; pop rcx
//!   call 1f ; 1: lea rsp, [rsp+8]  ; keep the return-stack buffer balanced for the ret below
//!   ret   k                        ; jump to tx, drop the slot and k more bytes
//! ```
//!
//! Concurrency: an entry is two qwords that CPUs read while the dispatcher rewrites them. A
//! writer empties the key, writes tx, then writes the key ([`insert`]); the probe reads key,
//! tx, key. Under x86-TSO (stores and loads each stay in order) a probe that read the new tx
//! reads at least the emptied key the second time and misses; a probe whose two keys match
//! read the tx that belongs to them. So a colliding target replaces the entry (counted as
//! `jumptable_conflicts`) instead of going through the dispatcher for as long as the other
//! one holds the slot. Old tx addresses stay valid code (blocks are never freed while the
//! cache lives), so a probe racing a replacement jumps to a correct translation either way.

use iced_x86::code_asm::{cx, dword_ptr, eax, ecx, qword_ptr, rax, rcx};
use iced_x86::{Code, Register};

use crate::clients::{self, Counter};
use crate::emit::{Emitter, EncodeFailed};
use crate::env::DataMemory;

/// log2 of the number of entries.
pub const BITS: u32 = 16;
/// Number of entries.
pub const ENTRIES: usize = 1 << BITS;
/// Offset of the native array in [`DataMemory`].
pub const NATIVE_OFF: usize = 0;
/// Offset of the tx array in [`DataMemory`].
pub const TX_OFF: usize = ENTRIES * 8;
/// Bytes the table takes at the start of [`DataMemory`].
pub const SIZE: usize = 2 * ENTRIES * 8;

/// The slot of `native`: bits 0-15 plus bits 16-31 (byte-swapped), so targets that share
/// their low 16 bits (64 KiB apart, as kernel text often has) spread out. What the emitted
/// probe computes with `mov`/`bswap`/`lea`/`movzx`, none of which touches the flags.
fn index(native: u64) -> usize {
    let low = native as u32;
    (low.swap_bytes().wrapping_add(low) & (ENTRIES as u32 - 1)) as usize
}

/// Emits `ecx := index(rax)` (see [`index`]).
fn emit_index(e: &mut Emitter) -> Result<(), EncodeFailed> {
    e.asm(|a| {
        a.mov(ecx, eax)?;
        a.bswap(ecx)?;
        a.lea(ecx, dword_ptr(rcx + rax))?;
        a.movzx(ecx, cx)
    })
}

/// What [`insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    /// The slot was empty and now maps `native`.
    Added,
    /// The slot already maps `native`.
    Present,
    /// The slot mapped another target, which `native` replaced.
    Conflict,
}

/// Makes the slot of `native` map it to `tx` (see the module doc for the protocol). Callers
/// are serialized (the dispatcher's lock); probes may run concurrently.
pub fn insert(data: &DataMemory, native: u64, tx: u64) -> Insert {
    use core::sync::atomic::Ordering;
    let i = index(native);
    let key = data.qword(NATIVE_OFF + 8 * i);
    let result = match key.load(Ordering::Relaxed) {
        0 => Insert::Added,
        n if n == native => return Insert::Present,
        _ => Insert::Conflict,
    };
    key.store(0, Ordering::Relaxed);
    // Release: the emptied key is visible before the new tx, the new tx before the key.
    data.qword(TX_OFF + 8 * i).store(tx, Ordering::Release);
    key.store(native, Ordering::Release);
    result
}

/// The tx address the table holds for `native`, if any.
pub fn get(data: &DataMemory, native: u64) -> Option<u64> {
    use core::sync::atomic::Ordering;
    let i = index(native);
    (data.qword(NATIVE_OFF + 8 * i).load(Ordering::Acquire) == native && native != 0)
        .then(|| data.qword(TX_OFF + 8 * i).load(Ordering::Relaxed))
}

/// Forgets the entry of `native`, if it holds one: a lookup racing with this sees the old
/// entry whole or a miss (only the key is cleared; its tx slot keeps the old value until an
/// insert replaces the pair, tx first).
pub fn forget(data: &DataMemory, native: u64) {
    use core::sync::atomic::Ordering;
    let slot = data.qword(NATIVE_OFF + 8 * index(native));
    let _ = slot.compare_exchange(native, 0, Ordering::Relaxed, Ordering::Relaxed);
}

/// Empties every slot (flush).
pub fn clear(data: &DataMemory) {
    use core::sync::atomic::Ordering;
    for i in 0..ENTRIES {
        data.qword(NATIVE_OFF + 8 * i).store(0, Ordering::Relaxed);
    }
}

/// Emits the probe for the target in the slot at `[rsp]` (see the module doc). `miss` emits
/// the miss path (with rax and rcx already restored); `hit_tail` finishes the hit path after
/// the slot holds the tx address and rax/rcx are restored. `indirect` counts executions and
/// hits in the client counters through rcx (no flags touched).
pub(crate) fn emit_probe(
    e: &mut Emitter,
    data_addr: u64,
    counters: Option<clients::Home>,
    miss: impl FnOnce(&mut Emitter) -> Result<(), EncodeFailed>,
    hit_tail: impl FnOnce(&mut Emitter) -> Result<(), EncodeFailed>,
) -> Result<(), EncodeFailed> {
    let native_arr = (data_addr + NATIVE_OFF as u64) as i64;
    let tx_arr = (data_addr + TX_OFF as u64) as i64;
    e.push_reg(Register::RCX)?;
    e.push_reg(Register::RAX)?;
    if let Some(home) = counters {
        clients::emit_bump_via(e, home, Counter::IndirectBranches, Register::RCX)?;
    }
    e.asm(|a| a.mov(rax, qword_ptr(rsp_plus(16))))?;
    emit_index(e)?;
    e.asm(|a| {
        a.mov(rcx, qword_ptr(rcx * 8 + native_arr))?;
        a.not(rax)?;
        a.lea(rcx, qword_ptr(rcx + rax + 1))?;
        a.not(rax)
    })?;
    let hit = e.new_label();
    e.branch_to_label(Code::Jrcxz_rel8_64, hit)?;
    let saved = e.cur;
    let missed = e.new_label();
    e.bind(missed);
    e.pop_reg(Register::RAX)?;
    e.pop_reg(Register::RCX)?;
    miss(e)?;
    e.cur = saved;
    e.bind(hit);
    // tx[i], then the key again: a replacement racing with this probe makes it miss.
    emit_index(e)?;
    let tx_slot = iced_x86::MemoryOperand::with_base_index_scale_displ_size(
        Register::None,
        Register::RCX,
        8,
        tx_arr,
        4,
    );
    e.pushing(
        &iced_x86::Instruction::with1(Code::Push_rm64, tx_slot).map_err(EncodeFailed::from)?,
    )?;
    e.asm(|a| {
        a.mov(rcx, qword_ptr(rcx * 8 + native_arr))?;
        a.not(rax)?;
        a.lea(rcx, qword_ptr(rcx + rax + 1))?;
        a.not(rax)
    })?;
    let ok = e.new_label();
    e.branch_to_label(Code::Jrcxz_rel8_64, ok)?;
    let confirmed = e.cur;
    e.lea_rsp(8)?;
    e.branch_to_label(Code::Jmp_rel32_64, missed)?;
    e.cur = confirmed;
    e.bind(ok);
    // pop [rsp+16]: the address is computed after the pop, so this is the target slot.
    let slot = iced_x86::MemoryOperand::with_base_displ(Register::RSP, 16);
    e.insn(&iced_x86::Instruction::with1(Code::Pop_rm64, slot).map_err(EncodeFailed::from)?)?;
    e.cur.rsp_adjust -= 8;
    if let Some(home) = counters {
        clients::emit_bump_via(e, home, Counter::JumptableHits, Register::RCX)?;
    }
    e.pop_reg(Register::RAX)?;
    e.pop_reg(Register::RCX)?;
    hit_tail(e)
}

/// `[rsp + off]` for code_asm.
pub(crate) fn rsp_plus(off: i32) -> iced_x86::code_asm::AsmMemoryOperand {
    iced_x86::code_asm::rsp + off
}

/// The jump to the tx address in the slot at `[rsp]`: balanced `call`/`ret` so the return-stack
/// buffer stays in step, then `ret k`.
pub(crate) fn emit_slot_jump(e: &mut Emitter, k: u16) -> Result<(), EncodeFailed> {
    let after = e.new_label();
    e.branch_to_label(Code::Call_rel32_64, after)?;
    e.bind(after);
    // The call pushed 8 bytes of our own: account for them until the lea drops them.
    e.cur.rsp_adjust += 8;
    e.lea_rsp(8)?;
    e.ret_imm(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn a_colliding_target_replaces_the_entry_and_forget_only_clears_its_own() {
        let mut mem = vec![0u64; SIZE / 8];
        // SAFETY: a zeroed, 8-aligned buffer owned by this test for the memory's life.
        let data = unsafe { DataMemory::new(0, mem.as_mut_ptr() as *mut u8, SIZE) };
        let a = 0x1000_0040u64;
        let b = (1u64 << 32) + a;
        assert_eq!(index(a), index(b));
        assert_eq!(insert(&data, a, 0xa), Insert::Added);
        assert_eq!(insert(&data, a, 0xa), Insert::Present);
        assert_eq!(insert(&data, b, 0xb), Insert::Conflict);
        assert_eq!(get(&data, b), Some(0xb));
        assert_eq!(get(&data, a), None);
        forget(&data, a);
        assert_eq!(
            get(&data, b),
            Some(0xb),
            "forgetting another target keeps b"
        );
        forget(&data, b);
        assert_eq!(get(&data, b), None);
    }
}
