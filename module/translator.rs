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

extern "C" {
    fn kdbt_engine_parse_spec(
        text: *const u8,
        text_len: usize,
        out: *mut u8,
        out_len: usize,
        written: *mut usize,
    ) -> i32;
}

/// Parses a mode spec (`<design>[:<option>,…]`) with the translator's own parser
/// (`kdbt_modes::spec`). On success writes the canonical spec into `out` and returns its
/// length; when refused, writes why into `out` and returns `Err` with that length (both
/// truncated to `out`).
pub(crate) fn parse_spec(text: &str, out: &mut [u8]) -> core::result::Result<usize, usize> {
    let mut written = 0usize;
    // SAFETY: the pointers come from live slices of the given lengths and a local; the engine
    // reads `text` and writes `out` only within them, and only during the call.
    let rc = unsafe {
        kdbt_engine_parse_spec(
            text.as_ptr(),
            text.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut written,
        )
    };
    if rc == 0 {
        Ok(written)
    } else {
        Err(written)
    }
}
