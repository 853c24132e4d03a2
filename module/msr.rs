// SPDX-License-Identifier: GPL-2.0

//! Model-specific registers kdbt reads and writes.

/// `IA32_LSTAR`: the 64-bit `syscall` entry point (entry_SYSCALL_64 in Linux).
pub(crate) const MSR_LSTAR: u32 = 0xc000_0082;

/// Reads MSR `msr` on the current CPU.
///
/// Only architectural MSRs that every x86-64 CPU has may be passed (a missing MSR faults).
pub(crate) fn read(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: kdbt runs at CPL 0, and callers pass architectural MSRs (LSTAR) that exist on
    // every x86-64 CPU, so rdmsr cannot fault; it touches no memory.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes `value` to MSR `msr` on the current CPU.
///
/// # Safety
/// `msr` must be an architectural MSR and `value` valid for it; for `MSR_LSTAR`, the address of
/// code that can run as the `syscall` entry (user stack, user GS, interrupts masked).
pub(crate) unsafe fn write(msr: u32, value: u64) {
    // SAFETY: CPL 0; the caller guarantees the MSR exists and the value is acceptable.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nostack, preserves_flags));
    }
}
