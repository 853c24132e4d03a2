// SPDX-License-Identifier: GPL-2.0

//! Entry stubs: what the private IDT's gates and `MSR_LSTAR` point at when entries are counted
//! (the spec option `stats`), and drk's gates always; otherwise those point straight at the
//! translations (module/interposer.rs). A stub counts the entry and jumps to the translation
//! of the native handler (or to the native handler itself when that could not be
//! translated). The syscall stub and exception stubs:
//!
//! ```text
//! inc qword [rip+entries]     this CPU's counter for this entry
//! jmp tx                      rel32: cache and counters are in the module area
//! ```
//! Interrupt and page-fault stubs also count entries whose interrupted RIP is in the code cache
//! (the frame is on the kernel stack here, so one push is allowed):
//!
//! ```text
//! push rax
//! mov  rax, [rsp+8|16]        the frame's RIP (past the error code, if any)
//! sub  rax, cache_start       imm32: the cache is in the top 2 GiB
//! cmp  rax, cache_len
//! jae  1f
//! inc  qword [rip+in_cache]
//! 1: pop rax
//! inc  qword [rip+entries]
//! jmp  tx
//! ```
//! In the drk design every interposed vector's stub (counting only with `stats`: a `counter`
//! of 0 leaves the increments out) checks the interrupted RIP, and when it is
//! in the code cache hands the event to the CPU's drk entry routine (kdbt_modes::drk_entry),
//! which rolls back or delays it (module/engine/src/drk.rs) before the handler runs:
//!
//! ```text
//! inc  qword [rip+entries]
//! push rax
//! mov  rax, [rsp+8|16]        the frame's RIP
//! sub  rax, cache_start
//! cmp  rax, cache_len
//! pop  rax
//! jae  1f
//! inc  qword [rip+in_cache]   (interrupts and #PF only)
//! push imm32 tag              vector | error-code flag
//! push imm32 tx               the translated handler (top 2 GiB: sign-extends)
//! jmp  drk_entry
//! 1: jmp tx
//! ```
//!
//! The syscall stub touches no register and no stack (it still runs on the user's stack and
//! the user's GS). The stubs clobber the arithmetic flags, which no entry reads: the CPU has
//! just set RFLAGS for the handler (interrupt gates; `syscall` masks them through
//! `MSR_SYSCALL_MASK` and saves the user's in r11), and the handlers' first instructions
//! (`clac`, `cld`, `swapgs`, pushes, `test`) write flags before any reads them. Interrupts are
//! off in every stub and the gates that could still arrive (NMI, #DB, #DF, #MC) stay native,
//! so per-CPU non-atomic increments are exact. The bytes are spelled out here because this is
//! the only hand-written code; translated code comes from the engine's assembler.

use kernel::prelude::*;

/// Bytes reserved per stub (the longest, drk's, is 55; the rest is `int3` padding).
pub(crate) const STUB_BYTES: usize = 64;

/// Counting the entries whose interrupted RIP is in the code cache.
pub(crate) struct InCache {
    /// Offset of the frame's RIP from `rsp` at entry: 0, or 8 past an error code.
    pub(crate) rip_at: u8,
    /// Code cache start (top 2 GiB) and length.
    pub(crate) start: u64,
    pub(crate) len: u64,
    /// The counter to increment.
    pub(crate) counter: u64,
}

/// The drk tag bit for a frame with an error code (`kdbt_modes::drk_entry::TAG_ERROR_CODE`).
pub(crate) const TAG_ERROR_CODE: u32 = 1 << 8;

/// A drk stub's event path: what it tells the entry routine.
pub(crate) struct DrkEvent {
    /// The tag: vector, and `kdbt_modes::drk_entry::TAG_ERROR_CODE` when the frame has an
    /// error code.
    pub(crate) tag: u32,
    /// The CPU's drk entry routine.
    pub(crate) entry: u64,
}

/// Machine code being written at tx address `at`.
struct Code {
    at: u64,
    bytes: [u8; STUB_BYTES],
    len: usize,
}

impl Code {
    fn put(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `bytes` followed by a rel32 field reaching `dest`. Errors: `ERANGE`.
    fn put_rel32(&mut self, bytes: &[u8], dest: u64) -> Result {
        self.put(bytes);
        let end = self.at + self.len as u64 + 4;
        let rel = i32::try_from(dest.wrapping_sub(end) as i64).map_err(|_| ERANGE)?;
        self.put(&rel.to_le_bytes());
        Ok(())
    }

    /// `bytes` followed by `value` as a sign-extended imm32. Errors: `ERANGE`.
    fn put_imm32(&mut self, bytes: &[u8], value: u64) -> Result {
        let imm = i32::try_from(value as i64).map_err(|_| ERANGE)?;
        self.put(bytes);
        self.put(&imm.to_le_bytes());
        Ok(())
    }
}

/// The stub at tx address `at` that counts into the 8-byte counter at `counter` (and, with
/// `in_cache`, counts interrupted code-cache RIPs) and jumps to `target`. Errors: `ERANGE`
/// when an address is out of rel32 (or imm32) reach.
pub(crate) fn counting_stub(
    at: u64,
    counter: u64,
    target: u64,
    in_cache: Option<&InCache>,
) -> Result<[u8; STUB_BYTES]> {
    let mut c = Code {
        at,
        bytes: [0xcc; STUB_BYTES],
        len: 0,
    };
    if let Some(ic) = in_cache {
        c.put(&[0x50]); // push rax
        c.put(&[0x48, 0x8b, 0x44, 0x24, 8 + ic.rip_at]); // mov rax, [rsp+8+rip_at]
        c.put_imm32(&[0x48, 0x2d], ic.start)?; // sub rax, imm32
        c.put_imm32(&[0x48, 0x3d], ic.len)?; // cmp rax, imm32
        c.put(&[0x73, 7]); // jae over the inc
        c.put_rel32(&[0x48, 0xff, 0x05], ic.counter)?; // inc qword [rip+in_cache]
        c.put(&[0x58]); // pop rax
    }
    c.put_rel32(&[0x48, 0xff, 0x05], counter)?; // inc qword [rip+counter]
    c.put_rel32(&[0xe9], target)?; // jmp target
    Ok(c.bytes)
}

/// The drk stub at tx address `at` (see the module docs): counts into `counter` (0: does not
/// count), and when the
/// interrupted RIP is in `watch`'s range counts into its counter (0: none) and hands the event
/// to `event.entry`; otherwise jumps to `target`. Errors: `ERANGE`.
pub(crate) fn drk_stub(
    at: u64,
    counter: u64,
    target: u64,
    watch: &InCache,
    event: &DrkEvent,
) -> Result<[u8; STUB_BYTES]> {
    let mut c = Code {
        at,
        bytes: [0xcc; STUB_BYTES],
        len: 0,
    };
    if counter != 0 {
        c.put_rel32(&[0x48, 0xff, 0x05], counter)?; // inc qword [rip+counter]
    }
    c.put(&[0x50]); // push rax
    c.put(&[0x48, 0x8b, 0x44, 0x24, 8 + watch.rip_at]); // mov rax, [rsp+8+rip_at]
    c.put_imm32(&[0x48, 0x2d], watch.start)?; // sub rax, imm32
    c.put_imm32(&[0x48, 0x3d], watch.len)?; // cmp rax, imm32
    c.put(&[0x58]); // pop rax (flags kept)
    let event_len = if watch.counter != 0 { 7 } else { 0 } + 5 + 5 + 5;
    c.put(&[0x73, event_len]); // jae to the native-RIP path
    if watch.counter != 0 {
        c.put_rel32(&[0x48, 0xff, 0x05], watch.counter)?; // inc qword [rip+in_cache]
    }
    c.put_imm32(&[0x68], event.tag.into())?; // push imm32 tag
    c.put_imm32(&[0x68], target)?; // push imm32 handler
    c.put_rel32(&[0xe9], event.entry)?; // jmp drk_entry
    c.put_rel32(&[0xe9], target)?; // jmp target
    Ok(c.bytes)
}
