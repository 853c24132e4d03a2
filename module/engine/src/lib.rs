// SPDX-License-Identifier: GPL-2.0

//! The translator inside `kdbt.ko`: `kdbt-modes` behind a small `extern "C"` surface, with a
//! preallocated arena as global allocator ([`heap`]) and a panic that stops the kernel with
//! the message.
//!
//! The C side of each hook is in module/shim.c; the Rust caller of each export is in
//! module/translator.rs. A live translator and its lock are in [`instance`].
#![no_std]

extern crate alloc;

mod drk;
mod heap;
mod instance;
mod irq_lock;

use core::fmt::Write;

extern "C" {
    fn kdbt_engine_panic(msg: *const u8, len: usize) -> !;
}

/// A fixed buffer that `core::fmt` writes into, truncating when full.
pub(crate) struct Truncating<'a> {
    pub(crate) buf: &'a mut [u8],
    pub(crate) len: usize,
}

impl Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            return Err(core::fmt::Error);
        }
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut buf = [0u8; 256];
    let mut w = Truncating {
        buf: &mut buf,
        len: 0,
    };
    let _ = write!(w, "{info}");
    // SAFETY: the pointer and length describe the initialized part of `buf`.
    unsafe { kdbt_engine_panic(w.buf.as_ptr(), w.len) }
}

/// Bytes of data memory a translator needs (jumptable and counters), for
/// `kdbt_engine_create`.
#[no_mangle]
pub extern "C" fn kdbt_engine_data_size() -> usize {
    kdbt_modes::clients::DATA_SIZE
}

/// `EINVAL`: the output buffer cannot hold the text.
const EINVAL: isize = 22;

/// Decodes up to `max_insns` instructions of the `code_len` bytes at `code` (native address
/// `ip`) and writes them as text lines (see `kdbt_modes::decode::write_disassembly`) to `out`.
///
/// Returns the bytes written, or `-EINVAL` when `out` is too small for all of them.
///
/// # Safety
/// `code` must be readable for `code_len` bytes and `out` writable for `out_len` bytes, neither
/// changing during the call.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_disassemble(
    code: *const u8,
    code_len: usize,
    ip: u64,
    max_insns: usize,
    out: *mut u8,
    out_len: usize,
) -> isize {
    // SAFETY: the caller guarantees both ranges (this function's contract).
    let (code, out) = unsafe {
        (
            core::slice::from_raw_parts(code, code_len),
            core::slice::from_raw_parts_mut(out, out_len),
        )
    };
    let mut w = Truncating { buf: out, len: 0 };
    match kdbt_modes::decode::write_disassembly(code, ip, max_insns, &mut w) {
        Ok(_) => w.len as isize,
        Err(_) => -EINVAL,
    }
}

/// Parses the `text_len` bytes of UTF-8 at `text` as a mode spec (`kdbt_modes::spec`).
///
/// Returns 0 with the canonical spec in `out`, or `-EINVAL` with the parser's reason in `out`;
/// either way `*written` is the bytes written (the text is truncated to `out_len`).
///
/// # Safety
/// `text` must be readable for `text_len` bytes, `out` writable for `out_len` bytes and
/// `written` writable, none changing during the call.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_parse_spec(
    text: *const u8,
    text_len: usize,
    out: *mut u8,
    out_len: usize,
    written: *mut usize,
) -> i32 {
    // SAFETY: the caller guarantees the ranges (this function's contract).
    let (text, out) = unsafe {
        (
            core::slice::from_raw_parts(text, text_len),
            core::slice::from_raw_parts_mut(out, out_len),
        )
    };
    let mut w = Truncating { buf: out, len: 0 };
    let rc = match core::str::from_utf8(text) {
        Err(_) => {
            let _ = write!(w, "mode spec is not UTF-8");
            -(EINVAL as i32)
        }
        Ok(text) => match kdbt_modes::ModeSpec::parse(text) {
            Ok(spec) => {
                let _ = write!(w, "{spec}");
                0
            }
            Err(e) => {
                let _ = write!(w, "{e}");
                -(EINVAL as i32)
            }
        },
    };
    // SAFETY: the caller guarantees `written` is writable.
    unsafe { *written = w.len };
    rc
}
