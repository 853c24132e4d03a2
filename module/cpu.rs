// SPDX-License-Identifier: GPL-2.0

//! CPUs: numbering, running a function on every online CPU, and pinning kdbt.ko while the
//! kernel's entries point into it. Thin wrappers over the C shim (module/shim.c), the only
//! place these kernel APIs are called.

use core::ffi::c_void;

extern "C" {
    fn kdbt_on_each_online_cpu(func: extern "C" fn(*mut c_void), info: *mut c_void);
    fn kdbt_this_cpu() -> u32;
    fn kdbt_nr_cpu_ids() -> u32;
    fn kdbt_cpu_online(cpu: u32) -> bool;
    fn kdbt_module_hold();
    fn kdbt_module_release();
}

/// One past the highest possible CPU number (`nr_cpu_ids`): the size of per-CPU arrays.
pub(crate) fn possible() -> usize {
    // SAFETY: reads a variable fixed at boot; no preconditions.
    unsafe { kdbt_nr_cpu_ids() as usize }
}

/// Whether `cpu` is online now.
pub(crate) fn online(cpu: usize) -> bool {
    // SAFETY: any CPU number is accepted (out of range reads as offline).
    cpu < possible() && unsafe { kdbt_cpu_online(cpu as u32) }
}

/// The CPU this runs on. Only meaningful where the caller cannot migrate (IPI callbacks).
pub(crate) fn this_cpu() -> usize {
    // SAFETY: smp_processor_id has no memory-safety preconditions; callers run with interrupts
    // off (debug kernels would warn otherwise).
    unsafe { kdbt_this_cpu() as usize }
}

/// Runs `f` on every online CPU with interrupts off, waiting for all; no CPU is hotplugged
/// meanwhile. Must be called from process context without spinlocks held.
pub(crate) fn on_each_online<F: Fn(usize) + Sync>(f: &F) {
    extern "C" fn call<F: Fn(usize) + Sync>(info: *mut c_void) {
        // SAFETY: `info` is the `&F` passed below, alive until kdbt_on_each_online_cpu returns
        // (it waits for every CPU); F: Sync makes the shared use from several CPUs sound.
        let f = unsafe { &*(info as *const F) };
        f(this_cpu());
    }
    // SAFETY: `call::<F>` matches the callback type and `f` outlives the call (see above).
    unsafe { kdbt_on_each_online_cpu(call::<F>, f as *const F as *mut c_void) };
}

/// A reference on kdbt.ko, held while the kernel's entries point into the module's code cache:
/// `rmmod` fails with `EBUSY` instead of unmapping code that CPUs run.
pub(crate) struct ModulePin(());

impl ModulePin {
    /// Takes the reference (the module is live: its own code is running).
    pub(crate) fn take() -> Self {
        // SAFETY: __module_get on THIS_MODULE from the module's own code, which runs only
        // while the module is loaded.
        unsafe { kdbt_module_hold() };
        ModulePin(())
    }
}

impl Drop for ModulePin {
    fn drop(&mut self) {
        // SAFETY: releases exactly the reference `take` got.
        unsafe { kdbt_module_release() };
    }
}
