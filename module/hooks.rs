// SPDX-License-Identifier: GPL-2.0

//! Where the kernel meets translated code outside the entries (DESIGN §4, the paper's special
//! cases on 6.12; BTKernel §3.3), all in module/shim.c:
//!
//! - **Exception-table fixups**: the kernel patch's `search_exception_tables` hook maps a
//!   code-cache address to the native instruction it copies; the native entry's fixup then
//!   runs (natively, until the next return into the cache or the next entry).
//! - **BUG/WARN (`ud2`)**: `#UD` at a code-cache address reaches the die notifier, which
//!   resumes at the native `ud2`; the kernel then finds it in its bug table and reports it.
//! - **Text patching**: the patch's `__text_poke` hook invalidates translations of the
//!   changed bytes (their instruction boundaries get `int3`) and serializes every CPU; an
//!   `int3` at a code-cache address reaches the die notifier, which resumes at the native
//!   instruction. Native `int3`s (text_poke_bp, kprobes) are never copied: translated code
//!   jumps to them.
//! - **When a code cache may go**: after switch-off, stacks may still hold code-cache return
//!   addresses; delayed work rewrites them to native ones with every CPU stopped
//!   (module/flush.rs), retried while a frame is stopped inside an expansion.

use kernel::prelude::*;

use crate::translator::RawInstance;

extern "C" {
    fn kdbt_hooks_register() -> i32;
    fn kdbt_hooks_unregister();
    fn kdbt_publish(instance: *mut RawInstance);
    fn kdbt_text_pokes(seen: *mut u64, invalidating: *mut u64);
    fn kdbt_traps_redirected_count() -> u64;
    fn kdbt_drain_schedule(ctx: *const core::ffi::c_void);
    fn kdbt_drain_cancel();
    fn kdbt_drain_pause();
    fn kdbt_take_injected_failure() -> i32;
    fn kdbt_hooks_reset_counts();
}

/// The registered hooks; unregistered on drop.
pub(crate) struct Hooks(());

impl Hooks {
    /// Registers the die notifier and sets the kernel's hook pointers. Errors: the errno of
    /// `register_die_notifier`.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: no preconditions; undone in Drop.
        kernel::error::to_result(unsafe { kdbt_hooks_register() })?;
        Ok(Hooks(()))
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; waits for every hook in flight.
        unsafe { kdbt_hooks_unregister() };
    }
}

/// Makes `instance` the translator the hooks consult (null: none, after waiting for every
/// hook that may still use the previous one).
///
/// # Safety
/// `instance` stays live until it is unpublished.
pub(crate) unsafe fn publish(instance: *mut RawInstance) {
    // SAFETY: the caller's contract.
    unsafe { kdbt_publish(instance) }
}

/// Counters of the hooks: (text pokes seen, pokes that invalidated translations, traps
/// redirected to native addresses).
pub(crate) fn counts() -> (u64, u64, u64) {
    let (mut seen, mut invalidating) = (0, 0);
    // SAFETY: two writable locals.
    unsafe { kdbt_text_pokes(&mut seen, &mut invalidating) };
    // SAFETY: a counter read.
    (seen, invalidating, unsafe { kdbt_traps_redirected_count() })
}

/// Schedules the drain work (`kdbt_drain_tick(ctx)`, repeated while it answers true).
///
/// # Safety
/// `ctx` stays valid until [`cancel_drain`] returns.
pub(crate) unsafe fn schedule_drain(ctx: *const core::ffi::c_void) {
    // SAFETY: the caller's contract.
    unsafe { kdbt_drain_schedule(ctx) }
}

/// The drain work's step (module/shim.c): unpins kdbt.ko once no stack references the
/// switched-off code cache. Returns whether to run again.
#[no_mangle]
pub(crate) extern "C" fn kdbt_drain_tick(ctx: *const core::ffi::c_void) -> bool {
    // SAFETY: `schedule_drain`'s contract keeps the shared state valid until the work is
    // cancelled.
    let shared = unsafe { &*(ctx as *const crate::Shared) };
    shared.interposer.lock().drain_step()
}

/// Cancels the drain work and waits for a running tick to finish.
pub(crate) fn cancel_drain() {
    // SAFETY: no preconditions.
    unsafe { kdbt_drain_cancel() }
}

/// Sleeps between two drain attempts of a switch-on (`KDBT_DRAIN_RETRY_MS`).
pub(crate) fn drain_pause() {
    // SAFETY: sleeps; callers are in process context and hold no spinlock.
    unsafe { kdbt_drain_pause() }
}

/// Zeroes the counters of text pokes and redirected traps.
pub(crate) fn reset_counts() {
    // SAFETY: stores to atomics.
    unsafe { kdbt_hooks_reset_counts() }
}

/// Where the next switch-on is to fail, set by a test through the `fail_next_switch_on`
/// module parameter (module/shim.c); taking it clears it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum InjectedFailure {
    /// No failure asked for.
    None,
    /// Building the stubs fails, before any CPU switches.
    Build,
    /// A CPU refuses after the others switched (the `EIO` path).
    Cpus,
}

/// Takes the injected failure for this switch-on.
pub(crate) fn take_injected_failure() -> InjectedFailure {
    // SAFETY: reads and clears the parameter under the kernel's parameter lock.
    match unsafe { kdbt_take_injected_failure() } {
        1 => InjectedFailure::Build,
        2 => InjectedFailure::Cpus,
        _ => InjectedFailure::None,
    }
}
