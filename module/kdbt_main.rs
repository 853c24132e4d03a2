// SPDX-License-Identifier: GPL-2.0

//! kdbt: dynamic binary translation of the running Linux kernel, in the BTKernel design
//! (Kedia & Bansal, SOSP'13) or the DRK design (Feiner et al., ASPLOS'12), chosen at switch-on.
//!
//! This file is the module's root: it owns the module's resources (built in `init`, released in
//! `Drop`). The translator itself lives in the engine object (crate `kdbt-modes`, reached through
//! [`translator`]); kernel APIs without a Rust-for-Linux abstraction go through the C shim.

use kernel::prelude::*;

mod msr;
mod status_file;
mod translator;

module! {
    type: Kdbt,
    name: "kdbt",
    author: "kdbt developers",
    description: "Dynamic binary translation of the running kernel (BTKernel and DRK designs)",
    license: "GPL",
}

/// Instructions of the syscall entry shown at load and in the status file.
const ENTRY_INSNS: usize = 8;
/// Bytes of native code read at the syscall entry: enough for [`ENTRY_INSNS`] instructions
/// (at most 15 bytes each, but entry code is short instructions).
const ENTRY_BYTES: usize = 64;

/// The loaded module. Dropping it removes everything it created.
struct Kdbt {
    _status: status_file::StatusFile,
}

impl kernel::Module for Kdbt {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let lstar = msr::read(msr::MSR_LSTAR);
        pr_info!("loaded; MSR_LSTAR (entry_SYSCALL_64) = {:#x}\n", lstar);
        let mut text = KVec::from_elem(0u8, status_file::STATUS_MAX, GFP_KERNEL)?;
        let n = write_entry_disassembly(lstar, &mut text)?;
        for line in text[..n].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // The engine writes ASCII only; anything else would be a bug worth seeing as such.
            let line = core::str::from_utf8(line).unwrap_or("(non-ASCII disassembly)");
            pr_info!("  {}\n", line);
        }
        let status = status_file::StatusFile::create()?;
        Ok(Kdbt { _status: status })
    }
}

impl Drop for Kdbt {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}

/// Decodes the first [`ENTRY_INSNS`] instructions at `lstar` into `out`; returns bytes written.
fn write_entry_disassembly(lstar: u64, out: &mut [u8]) -> Result<usize> {
    // SAFETY: MSR_LSTAR holds the address of entry_SYSCALL_64 in the kernel's text, which is
    // mapped, readable and at least ENTRY_BYTES long (it is hundreds of bytes of entry code).
    let code = unsafe { core::slice::from_raw_parts(lstar as *const u8, ENTRY_BYTES) };
    translator::disassemble(code, lstar, ENTRY_INSNS, out)
}

/// Renders the status file: the design switched on (none yet: the module only loads), the
/// syscall entry the CPU uses now, and its first instructions as the engine decodes them.
fn render_status(out: &mut [u8]) -> Result<usize> {
    let lstar = msr::read(msr::MSR_LSTAR);
    let mut w = status_file::TextWriter::new(out);
    let _ = core::fmt::Write::write_fmt(
        &mut w,
        format_args!("state: off\nlstar: {:#x}\nentry_SYSCALL_64:\n", lstar),
    );
    let head = w.len();
    let n = write_entry_disassembly(lstar, &mut out[head..])?;
    Ok(head + n)
}

/// Called by the C shim when the status file is read (see module/shim.h).
///
/// Returns bytes written to `buf`, or a negative errno.
#[no_mangle]
pub extern "C" fn kdbt_status_render(buf: *mut u8, len: usize) -> isize {
    // SAFETY: the shim passes a kmalloc'ed buffer of `len` bytes that nothing else uses until
    // this call returns.
    let out = unsafe { core::slice::from_raw_parts_mut(buf, len) };
    match render_status(out) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}
