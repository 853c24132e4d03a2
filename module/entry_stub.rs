// SPDX-License-Identifier: GPL-2.0

//! Identity entry stubs: what the private IDT's gates and `MSR_LSTAR` point at until the
//! translator is wired in. A stub counts the entry and jumps to the native handler, so the
//! handler sees exactly the frame and registers the CPU gave (the plumbing of DESIGN §4,
//! proven before any translated code runs).
//!
//! ```text
//! mov [rip+scratch], rax    spill rax (no stack: syscall entry still runs on the user stack)
//! mov rax, [rip+counter]
//! lea rax, [rax+1]          lea, not inc: the flags stay as the CPU left them
//! mov [rip+counter], rax
//! mov rax, [rip+scratch]
//! jmp native                rel32: the cache is within ±2 GiB of kernel text
//! ```
//! Interrupts are off in every stub (interrupt gates clear IF, `syscall` masks it through
//! `MSR_SYSCALL_MASK`) and the gates that can still arrive (NMI, #DB, #DF, #MC) stay native,
//! so one spill slot and a non-atomic increment per CPU are exact. The bytes are spelled out
//! here because this is the only hand-written code; translated code and its stubs come from
//! the engine's assembler.

use kernel::prelude::*;

/// Bytes reserved per stub (the code is 37; the rest is `int3` padding).
pub(crate) const STUB_BYTES: usize = 64;

/// The stub at tx address `at` that counts into the 8-byte counter at `counter` (spilling
/// `rax` at `scratch`) and jumps to `target`. Errors: `ERANGE` when an address is out of
/// rel32 reach of `at`.
pub(crate) fn counting_stub(
    at: u64,
    scratch: u64,
    counter: u64,
    target: u64,
) -> Result<[u8; STUB_BYTES]> {
    let mut code = [0xccu8; STUB_BYTES];
    let mut len = 0;
    let mut emit = |bytes: &[u8], rel_to: Option<u64>| -> Result {
        code[len..len + bytes.len()].copy_from_slice(bytes);
        len += bytes.len();
        if let Some(dest) = rel_to {
            let end = at + len as u64 + 4;
            let rel = i32::try_from(dest.wrapping_sub(end) as i64).map_err(|_| ERANGE)?;
            code[len..len + 4].copy_from_slice(&rel.to_le_bytes());
            len += 4;
        }
        Ok(())
    };
    emit(&[0x48, 0x89, 0x05], Some(scratch))?; // mov [rip+scratch], rax
    emit(&[0x48, 0x8b, 0x05], Some(counter))?; // mov rax, [rip+counter]
    emit(&[0x48, 0x8d, 0x40, 0x01], None)?; // lea rax, [rax+1]
    emit(&[0x48, 0x89, 0x05], Some(counter))?; // mov [rip+counter], rax
    emit(&[0x48, 0x8b, 0x05], Some(scratch))?; // mov rax, [rip+scratch]
    emit(&[0xe9], Some(target))?; // jmp target
    Ok(code)
}
