// SPDX-License-Identifier: GPL-2.0

//! `<debugfs>/kdbt/`: `status` (state, mode, entries, code cache layout), `stats` (counters
//! per CPU and total), text files readable by root.
//!
//! Rust-for-Linux 6.12 has no debugfs abstraction, so the files are made by the C shim
//! (module/shim.c), which calls back into the render functions here on every read with the
//! context pointer given at creation.

use kernel::prelude::*;

extern "C" {
    fn kdbt_debugfs_create(ctx: *mut core::ffi::c_void) -> core::ffi::c_int;
    fn kdbt_debugfs_remove();
}

/// What the files show: the module's shared state.
pub(crate) type Context = crate::Shared;

/// The debugfs directory and its files; removed when dropped.
pub(crate) struct DebugFiles(());

impl DebugFiles {
    /// Creates the files over `ctx`, which must outlive the returned value (the module struct
    /// declares this before its shared state, so it is dropped first).
    /// Errors: the errno debugfs gave (e.g. `ENODEV` when debugfs is disabled).
    pub(crate) fn create(ctx: &Context) -> Result<Self> {
        // SAFETY: the shim keeps `ctx` for the render callbacks; the pointer stays valid until
        // `drop` below removes the files (the caller's contract).
        kernel::error::to_result(unsafe {
            kdbt_debugfs_create(ctx as *const Context as *mut core::ffi::c_void)
        })?;
        Ok(DebugFiles(()))
    }
}

impl Drop for DebugFiles {
    fn drop(&mut self) {
        // SAFETY: exists only after kdbt_debugfs_create succeeded, dropped once;
        // debugfs_remove_recursive waits for readers of the files to finish.
        unsafe { kdbt_debugfs_remove() };
    }
}

/// A `core::fmt::Write` into a byte buffer that truncates instead of failing when full.
pub(crate) struct TextWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> TextWriter<'a> {
    /// A writer at the start of `buf`.
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        TextWriter { buf, len: 0 }
    }

    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The unwritten rest of the buffer, for writers that take a byte slice; `advance` by what
    /// they wrote.
    pub(crate) fn rest(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    /// Counts `n` bytes written into [`TextWriter::rest`].
    pub(crate) fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
    }
}

impl core::fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Runs `render` over the shim's buffer; returns bytes written or a negative errno.
///
/// # Safety
/// `ctx` must be the pointer given to [`DebugFiles::create`] and `buf` writable for `len` bytes
/// and unused by anything else during the call.
unsafe fn render_with(
    ctx: *mut core::ffi::c_void,
    buf: *mut u8,
    len: usize,
    render: fn(&Context, &mut TextWriter<'_>) -> Result,
) -> isize {
    // SAFETY: the function's contract.
    let (ctx, out) = unsafe {
        (
            &*(ctx as *const Context),
            core::slice::from_raw_parts_mut(buf, len),
        )
    };
    let mut w = TextWriter::new(out);
    match render(ctx, &mut w) {
        Ok(()) => w.len() as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// Called by the shim when `status` is read (module/shim.h).
#[no_mangle]
pub(crate) extern "C" fn kdbt_status_render(
    ctx: *mut core::ffi::c_void,
    buf: *mut u8,
    len: usize,
) -> isize {
    // SAFETY: the shim passes the context it was created with and a kvmalloc'ed buffer of
    // `len` bytes that nothing else uses until this returns.
    unsafe { render_with(ctx, buf, len, crate::render_status) }
}

/// Called by the shim when `stats` is read (module/shim.h).
#[no_mangle]
pub(crate) extern "C" fn kdbt_stats_render(
    ctx: *mut core::ffi::c_void,
    buf: *mut u8,
    len: usize,
) -> isize {
    // SAFETY: as for kdbt_status_render.
    unsafe { render_with(ctx, buf, len, crate::render_stats) }
}
