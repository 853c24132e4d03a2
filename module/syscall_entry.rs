// SPDX-License-Identifier: GPL-2.0

//! The 64-bit `syscall` entry: `MSR_LSTAR`, per CPU. kdbt points it at its own entry (BTKernel
//! §3.2: system calls enter translated code like interrupts do); switch-off restores the native
//! `entry_SYSCALL_64`. The first instructions there run on the user stack with the user's GS
//! base, so whatever LSTAR points at must not push or use per-CPU data before `swapgs`.

use crate::msr;

/// The current CPU's syscall entry address.
pub(crate) fn current() -> u64 {
    msr::read(msr::MSR_LSTAR)
}

/// Points the current CPU's `syscall` at `entry`.
///
/// # Safety
/// `entry` must be code that can run as the syscall entry (see the module docs) and ends in
/// the native `entry_SYSCALL_64` or its translation; it must stay mapped while installed.
/// Interrupts must be off.
pub(crate) unsafe fn set(entry: u64) {
    // SAFETY: LSTAR exists on every x86-64 CPU; the caller vouches for `entry`.
    unsafe { msr::write(msr::MSR_LSTAR, entry) };
}
