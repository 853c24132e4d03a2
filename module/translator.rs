// SPDX-License-Identifier: GPL-2.0

//! The translator engine (crate `kdbt-modes`, built by cargo into module/kdbt_engine.o) seen
//! from the module: the only file that declares the engine's `extern "C"` surface.

use kernel::prelude::*;

extern "C" {
    fn kdbt_engine_disassemble(
        code: *const u8,
        code_len: usize,
        ip: u64,
        max_insns: usize,
        out: *mut u8,
        out_len: usize,
    ) -> isize;
}

/// Decodes up to `max_insns` instructions of `code` (native address `ip`) as text lines into
/// `out`; returns the bytes written. Errors: `EINVAL` when `out` is too small for one line.
pub(crate) fn disassemble(code: &[u8], ip: u64, max_insns: usize, out: &mut [u8]) -> Result<usize> {
    // SAFETY: both pointers come from live slices of the given lengths, which the engine reads
    // (code) or writes (out) only within those lengths and only during the call.
    let n = unsafe {
        kdbt_engine_disassemble(
            code.as_ptr(),
            code.len(),
            ip,
            max_insns,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    if n < 0 {
        return Err(Error::from_errno(n as i32));
    }
    Ok(n as usize)
}
