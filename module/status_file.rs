// SPDX-License-Identifier: GPL-2.0

//! `<debugfs>/kdbt/status`: kdbt's state as text, readable by root.
//!
//! Rust-for-Linux 6.12 has no debugfs abstraction, so the file is made by the C shim
//! (module/shim.c), which calls back into `kdbt_status_render` on every read.

use kernel::prelude::*;

/// Largest status text, bytes (`KDBT_STATUS_MAX` in module/shim.h).
pub(crate) const STATUS_MAX: usize = 8192;

extern "C" {
    fn kdbt_debugfs_create() -> core::ffi::c_int;
    fn kdbt_debugfs_remove();
}

/// The status file; removed when dropped.
pub(crate) struct StatusFile(());

impl StatusFile {
    /// Creates `<debugfs>/kdbt/status`. Errors: the errno debugfs gave (e.g. `ENODEV` when
    /// debugfs is disabled).
    pub(crate) fn create() -> Result<Self> {
        // SAFETY: the shim's function has no preconditions; it is called once per module load.
        kernel::error::to_result(unsafe { kdbt_debugfs_create() })?;
        Ok(StatusFile(()))
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        // SAFETY: a StatusFile exists only after kdbt_debugfs_create succeeded, and is dropped
        // once; debugfs_remove_recursive waits for readers of the file to finish.
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
}

impl core::fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}
