// SPDX-License-Identifier: GPL-2.0

//! The function set of the instrumentation comparison (docs/INSTRUMENT.md): which kernel
//! functions' entries are counted, by kdbt's `funccount` client, by kprobes or by ftrace. The
//! set, its counters and the probes live in the C shim (module/funcs.c); the ioctls that use
//! them are in [`crate::control`].

use kernel::c_str;
use kernel::prelude::*;

extern "C" {
    fn kdbt_funcs_load(
        uaddrs: usize,
        n: u32,
        bad: *mut u32,
        why: *mut *const kernel::ffi::c_char,
    ) -> core::ffi::c_int;
    fn kdbt_funcs_probe(method: core::ffi::c_int, bad: *mut u32) -> core::ffi::c_int;
    fn kdbt_funcs_method() -> core::ffi::c_int;
    fn kdbt_funcs_for_translator(
        addrs: *mut *const u64,
        counts: *mut u64,
        per_cpu: *mut bool,
    ) -> u32;
    fn kdbt_funcs_hits() -> u64;
    fn kdbt_funcs_reset();
    fn kdbt_funcs_free();
}

/// A refusal: the errno, the index of the function it concerns (`u32::MAX`: none) and why.
pub(crate) struct Refusal {
    pub(crate) errno: Error,
    pub(crate) index: u32,
    pub(crate) why: &'static CStr,
}

/// Replaces the set with the `n` native entry addresses at user address `uaddrs`, counters
/// zeroed. The caller has made sure no translator counts into the old set.
pub(crate) fn load(uaddrs: usize, n: u32) -> Result<(), Refusal> {
    let mut bad = u32::MAX;
    let mut why: *const kernel::ffi::c_char = core::ptr::null();
    // SAFETY: the shim copies from user memory with copy_from_user and writes both outs.
    let rc = unsafe { kdbt_funcs_load(uaddrs, n, &mut bad, &mut why) };
    if rc == 0 {
        return Ok(());
    }
    let why = if why.is_null() {
        c_str!("")
    } else {
        // SAFETY: the shim answers with static strings.
        unsafe { CStr::from_char_ptr(why) }
    };
    Err(Refusal {
        errno: Error::from_errno(rc),
        index: bad,
        why,
    })
}

/// Starts counting the set with `method` ([`crate::control_abi::PROBE_KPROBES`] or
/// [`crate::control_abi::PROBE_FTRACE`]), or stops ([`crate::control_abi::PROBE_OFF`]).
pub(crate) fn probe(method: u32) -> Result<(), Refusal> {
    let mut bad = u32::MAX;
    use crate::control_abi::{PROBE_FTRACE, PROBE_KPROBES, PROBE_OFF};
    // The shim's column numbers (module/shim.h KDBT_FUNCS_*).
    let method: core::ffi::c_int = match method {
        PROBE_OFF => 0,
        PROBE_KPROBES => 1,
        PROBE_FTRACE => 2,
        _ => {
            return Err(Refusal {
                errno: EINVAL,
                index: u32::MAX,
                why: c_str!("unknown method"),
            })
        }
    };
    // SAFETY: registers or unregisters the shim's own probes; `bad` is writable.
    let rc = unsafe { kdbt_funcs_probe(method, &mut bad) };
    if rc == 0 {
        return Ok(());
    }
    let why = match rc {
        rc if rc == ENOENT.to_errno() => c_str!("no function set: `kdbtctl funcs FILE` first"),
        rc if rc == EBUSY.to_errno() => c_str!("another method counts: `kdbtctl probe off` first"),
        _ if bad != u32::MAX => c_str!("kprobes refused this function"),
        _ => c_str!("kprobes or ftrace refused the set"),
    };
    Err(Refusal {
        errno: Error::from_errno(rc),
        index: bad,
        why,
    })
}

/// Whether kprobes or ftrace count now.
pub(crate) fn probing() -> bool {
    // SAFETY: reads one int.
    unsafe { kdbt_funcs_method() != 0 }
}

/// Where kdbt's counters for a set are: one `u64` per address, in ascending address order.
pub(crate) struct Counters {
    /// The `%gs` offset of each CPU's array (`per_cpu`), or the address of the one array.
    pub(crate) at: u64,
    /// Per CPU (module/funcs.c: when the first per-CPU chunk holds them), or shared.
    pub(crate) per_cpu: bool,
}

/// The set for a translator: sorted entry addresses and kdbt's counters; empty when no set
/// is loaded. Valid until the next [`load`], which the interposer refuses while a translator
/// counting into it exists.
pub(crate) fn for_translator() -> (&'static [u64], Counters) {
    let mut addrs: *const u64 = core::ptr::null();
    let mut counts = Counters {
        at: 0,
        per_cpu: false,
    };
    // SAFETY: writes the three outs.
    let n = unsafe { kdbt_funcs_for_translator(&mut addrs, &mut counts.at, &mut counts.per_cpu) };
    if n == 0 || addrs.is_null() {
        return (&[], counts);
    }
    // SAFETY: the shim's sorted array of `n` addresses, kept until the next load.
    (
        unsafe { core::slice::from_raw_parts(addrs, n as usize) },
        counts,
    )
}

/// Function entries counted so far by every method together (one counts at a time).
pub(crate) fn hits() -> u64 {
    // SAFETY: sums the shim's counters under its lock.
    unsafe { kdbt_funcs_hits() }
}

/// Zeroes every method's counters.
pub(crate) fn reset() {
    // SAFETY: under the shim's own lock.
    unsafe { kdbt_funcs_reset() }
}

/// Owns the set for the module's life: stops any probing and frees it when dropped (after
/// every translator, which the module struct drops first).
pub(crate) struct FuncSet(());

impl FuncSet {
    /// The (empty) set.
    pub(crate) fn new() -> Self {
        FuncSet(())
    }
}

impl Drop for FuncSet {
    fn drop(&mut self) {
        // SAFETY: no translator is left to count into the set.
        unsafe { kdbt_funcs_free() }
    }
}

/// Whether canonical mode spec `spec` has client `funccount` on.
pub(crate) fn counts_in(spec: &str) -> bool {
    spec.split_once(':')
        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == "funccount"))
}
