// SPDX-License-Identifier: GPL-2.0

//! The dispatcher's own stacks, one per possible CPU (DESIGN §4 "Dispatcher"; DynamoRIO keeps
//! a dispatch stack per thread likewise). Exits are taken wherever translated code runs,
//! including on the 4 KiB entry stack an exception from user mode arrives on, and translating
//! a block needs several KiB; the trampoline therefore moves to its CPU's stack, found by
//! `lsl` of the GDT's CPU-number segment (no `%gs`: it may still be the user's there), and
//! switches to the kernel's `%gs` for the dispatcher when the user's is active (an exit taken
//! before the entry code's `swapgs`): kernel code reaches per-CPU data and its stack canary
//! through `%gs`. The table holds both, per CPU (`kdbt_modes::dispatch::DispatcherStacks`).

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

use crate::code_cache::DataArea;

extern "C" {
    fn kdbt_vmem_alloc(size: usize) -> *mut u8;
    fn kdbt_vmem_free(mem: *mut u8);
    fn kdbt_cpunode_selector() -> u16;
    fn kdbt_cpunode_cpu() -> u32;
    fn kdbt_per_cpu_offset(cpu: u32) -> u64;
}

/// Bytes of each dispatcher stack.
pub(crate) const STACK_BYTES: usize = 32 << 10;

/// The stacks and the table of their tops that the trampoline indexes by CPU number.
pub(crate) struct DispatcherStacks {
    /// By CPU: stack top, kernel `%gs` base; in the module area (the trampoline addresses it
    /// absolutely).
    tops: DataArea<AtomicU64>,
    stacks: KVec<*mut u8>,
}

// SAFETY: the stacks are plain kernel memory owned here; only the trampoline uses them, on
// their own CPUs.
unsafe impl Send for DispatcherStacks {}
// SAFETY: as above; shared references only read addresses.
unsafe impl Sync for DispatcherStacks {}

impl DispatcherStacks {
    /// A stack for each of `cpus` CPUs. Errors: `ENOMEM`.
    pub(crate) fn new(cpus: usize) -> Result<Self> {
        let tops = DataArea::<AtomicU64>::zeroed(2 * cpus)?;
        let mut stacks = KVec::with_capacity(cpus, GFP_KERNEL)?;
        for cpu in 0..cpus {
            // SAFETY: any size; null on failure.
            let stack = unsafe { kdbt_vmem_alloc(STACK_BYTES) };
            if stack.is_null() {
                // Drop frees what was allocated so far.
                return Err(ENOMEM);
            }
            stacks.push(stack, GFP_KERNEL)?;
            tops.get()[2 * cpu].store(stack as u64 + STACK_BYTES as u64, Relaxed);
            // SAFETY: a read of the kernel's per-CPU offset table for a possible CPU.
            let gs_base = unsafe { kdbt_per_cpu_offset(cpu as u32) };
            tops.get()[2 * cpu + 1].store(gs_base, Relaxed);
        }
        Ok(DispatcherStacks { tops, stacks })
    }

    /// Address of the table of stack tops.
    pub(crate) fn table(&self) -> u64 {
        self.tops.get().as_ptr() as u64
    }

    /// The selector whose segment limit holds the CPU number.
    pub(crate) fn cpunode_selector() -> u16 {
        // SAFETY: a constant.
        unsafe { kdbt_cpunode_selector() }
    }

    /// Whether the trampoline's way of reading the CPU number gives `cpu` on this CPU (checked
    /// on every CPU at switch-on).
    pub(crate) fn cpu_number_reads(cpu: usize) -> bool {
        // SAFETY: `lsl` of a GDT segment, no side effects.
        unsafe { kdbt_cpunode_cpu() as usize == cpu }
    }
}

impl Drop for DispatcherStacks {
    fn drop(&mut self) {
        for &stack in self.stacks.iter() {
            // SAFETY: from kdbt_vmem_alloc; the owner drops this only when no trampoline can
            // run (the translator is gone).
            unsafe { kdbt_vmem_free(stack) };
        }
    }
}
