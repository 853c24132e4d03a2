// SPDX-License-Identifier: GPL-2.0

//! Flushing a full code cache while switched on (module/flush_stop.c has the mechanism).
//!
//! Before, a full cache was never flushed in the kernel: with identity call/ret, stacks hold
//! code-cache return addresses at all times, so no moment is free of references, and new code
//! ran natively for the translator's whole life. Now the dispatcher asks for a flush once a
//! cache is seven-eighths full (`CodeCache::past_flush_watermark`); the flush stops every
//! CPU, replaces each code-cache address on a stack with the native address it stands for,
//! empties the caches and points the entry stubs at fresh translations. The spec option
//! `cache=SIZE` makes caches small enough to force flushes.
//!
//! A switched-off cache is drained the same way, without emptying it: once every stack's
//! code-cache addresses are native ones, nothing can enter the cache any more, and the
//! translator is kept warm or freed at once, whatever the tasks are doing (before, a drain
//! waited for every task holding such an address to wake and return to user mode).

use kernel::prelude::*;

use crate::interposer::Interposer;

extern "C" {
    fn kdbt_flush_stacks(
        lo: u64,
        hi: u64,
        ctx: *mut core::ffi::c_void,
        flush: bool,
        rewritten: *mut u64,
        held: *mut u64,
    ) -> isize;
    fn kdbt_flush_start(ctx: *const core::ffi::c_void);
    fn kdbt_flush_stop();
    fn kdbt_stubs_check_take() -> bool;
    fn kdbt_stop_cpus(
        f: extern "C" fn(*mut core::ffi::c_void) -> core::ffi::c_int,
        each: extern "C" fn(*mut core::ffi::c_void),
        ctx: *mut core::ffi::c_void,
    ) -> core::ffi::c_int;
}

/// Whether an invalidation happened since the last call (module/shim.c `kdbt_invalidate`).
pub(crate) fn stubs_check_take() -> bool {
    // SAFETY: an atomic exchange.
    unsafe { kdbt_stubs_check_take() }
}

/// Stops every CPU and runs `f(interposer)` on one of them meanwhile; then each CPU reloads
/// its syscall entry ([`Interposer::reload_this_cpu`]) before it leaves the stop. Errors:
/// `f`'s, or `stop_machine`'s.
pub(crate) fn stop_cpus_and(
    interposer: &mut Interposer,
    f: fn(&mut Interposer) -> Result,
) -> Result {
    struct Call<'a> {
        interposer: &'a mut Interposer,
        f: fn(&mut Interposer) -> Result,
    }
    extern "C" fn run(ctx: *mut core::ffi::c_void) -> core::ffi::c_int {
        // SAFETY: `ctx` is the `Call` below, alive and used by this one CPU during the stop.
        let call = unsafe { &mut *(ctx as *mut Call<'_>) };
        match (call.f)(call.interposer) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }
    extern "C" fn each(ctx: *mut core::ffi::c_void) {
        // SAFETY: `ctx` is the `Call` below; every CPU reads it only after `run` returned on
        // the one CPU that used it mutably (module/flush_stop.c orders them).
        let call = unsafe { &*(ctx as *const Call<'_>) };
        call.interposer.reload_this_cpu();
    }
    let mut call = Call { interposer, f };
    // SAFETY: `run` and `each` get `call` back only during the stop.
    let rc = unsafe { kdbt_stop_cpus(run, each, &mut call as *mut Call<'_> as *mut _) };
    if rc < 0 {
        return Err(Error::from_errno(rc));
    }
    Ok(())
}

/// Called by the `invalidate` debugfs file after it invalidated: retargets the entry stubs
/// before the write returns (0 or -errno).
#[no_mangle]
extern "C" fn kdbt_stubs_retarget_now(ctx: *const core::ffi::c_void) -> core::ffi::c_int {
    // SAFETY: the debugfs files' context is the module's shared state (`DebugFiles::create`).
    let shared = unsafe { &*(ctx as *const crate::Shared) };
    stubs_check_take();
    match shared.interposer.lock().retarget_stubs() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// What a stop that rewrote the stacks is to do when no code-cache address is left on them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Empty the caches that asked for it and rewrite the entry stubs ([`Interposer::flush_now`]).
    Flush,
    /// Nothing more: the switched-off cache is unreferenced (a drain), unless a drk interrupt
    /// still waits at a patched boundary in it.
    Release,
}

/// What one stop did.
pub(crate) struct Outcome {
    /// No stack holds a code-cache address any more, and the caches were emptied
    /// ([`Then::Flush`]) or are unreferenced ([`Then::Release`]).
    pub(crate) done: bool,
    /// Code-cache addresses on stacks replaced by native ones.
    pub(crate) rewritten: u64,
    /// Code-cache addresses left on stacks (inside an expansion: no native equivalent).
    pub(crate) held: u64,
}

/// Stops every CPU, rewrites the stacks' addresses in `lo..hi` to native ones and, if none is
/// left, does `then`. Errors: the errno of `stop_machine`.
///
/// # Safety
/// Process context, entered natively (the caller's own frames are walked too, while it waits
/// in `stop_machine`); `interposer` is exclusively borrowed for the call and used only by the
/// stopped CPU that walks the stacks.
pub(crate) unsafe fn rewrite_stacks(
    lo: u64,
    hi: u64,
    interposer: &mut Interposer,
    then: Then,
) -> Result<Outcome> {
    let (mut rewritten, mut held) = (0, 0);
    let ctx = interposer as *mut Interposer as *mut core::ffi::c_void;
    let flush = then == Then::Flush;
    // SAFETY: the callbacks below get `ctx` back only during the call.
    let rc = unsafe { kdbt_flush_stacks(lo, hi, ctx, flush, &mut rewritten, &mut held) };
    if rc < 0 {
        return Err(Error::from_errno(rc as i32));
    }
    Ok(Outcome {
        done: rc == 1,
        rewritten,
        held,
    })
}

/// The native address that may replace code-cache address `tx` on a stack, or 0.
#[no_mangle]
extern "C" fn kdbt_flush_native_of(ctx: *mut core::ffi::c_void, tx: u64) -> u64 {
    // SAFETY: `rewrite_stacks` passes its exclusive borrow; only one CPU calls back.
    let interposer = unsafe { &*(ctx as *const Interposer) };
    interposer
        .translator()
        .and_then(|t| t.native_at_boundary(tx))
        .unwrap_or(0)
}

/// With no code-cache address left on any stack: empties the caches and rewrites the stubs
/// (`flush`), or checks that no drk interrupt waits in the cache (a drain). Whether it did.
#[no_mangle]
extern "C" fn kdbt_flush_finish(ctx: *mut core::ffi::c_void, flush: bool) -> bool {
    // SAFETY: as for `kdbt_flush_native_of`.
    let interposer = unsafe { &mut *(ctx as *mut Interposer) };
    if flush {
        interposer.flush_now()
    } else {
        !interposer
            .translator()
            .is_some_and(|t| t.delivery_pending())
    }
}

/// Every CPU, before it leaves a flush's stop: reloads its syscall entry, which the flush may
/// have moved.
#[no_mangle]
extern "C" fn kdbt_entries_reload(ctx: *mut core::ffi::c_void) {
    // SAFETY: as for `kdbt_flush_native_of`; the CPU that walked the stacks is done with its
    // exclusive use (module/flush_stop.c calls this after publishing the outcome).
    let interposer = unsafe { &*(ctx as *const Interposer) };
    interposer.reload_this_cpu();
}

/// Logs the first stack word that held a flush or drain back (`comm` a NUL-padded task name).
#[no_mangle]
extern "C" fn kdbt_flush_report(
    ctx: *mut core::ffi::c_void,
    comm: *const u8,
    pid: i32,
    word: u64,
    depth: u64,
    words: u64,
) {
    // SAFETY: called by `kdbt_flush_stacks` after the stop, during `rewrite_stacks`'s
    // exclusive borrow.
    let interposer = unsafe { &*(ctx as *const Interposer) };
    // SAFETY: `comm` points to the task name copied into the flush's record (16 bytes).
    let comm = unsafe { core::slice::from_raw_parts(comm, 16) };
    let comm = &comm[..comm.iter().position(|&b| b == 0).unwrap_or(16)];
    let mut text = [0u8; 256];
    let n = interposer
        .translator()
        .map_or(0, |t| t.describe_tx(word, &mut text));
    pr_info!(
        "code cache held by {} stack words; first: {}[{}] at {} bytes below its stack top holds {:#x}: {}\n",
        words,
        core::str::from_utf8(comm).unwrap_or("?"),
        pid,
        depth,
        word,
        core::str::from_utf8(&text[..n]).unwrap_or("?")
    );
}

/// The flush work's step: whether to run again shortly.
#[no_mangle]
extern "C" fn kdbt_flush_tick(ctx: *const core::ffi::c_void) -> bool {
    // SAFETY: `Work::start`'s contract keeps the shared state valid until `Work` drops.
    let shared = unsafe { &*(ctx as *const crate::Shared) };
    shared.interposer.lock().flush_step()
}

/// The flush work, accepting requests from its start until dropped.
pub(crate) struct Work(());

impl Work {
    /// Lets the engine's requests run flush steps on `shared`.
    ///
    /// # Safety
    /// `shared` stays valid until the returned value is dropped.
    pub(crate) unsafe fn start(shared: &crate::Shared) -> Work {
        // SAFETY: the caller's contract.
        unsafe { kdbt_flush_start(shared as *const crate::Shared as *const _) };
        Work(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: waits for a queued request and a running step to finish.
        unsafe { kdbt_flush_stop() };
    }
}
