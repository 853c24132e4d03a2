// SPDX-License-Identifier: GPL-2.0

//! The translator engine (crate `kdbt-modes`, built by cargo into module/kdbt_engine.o) seen
//! from the module: the only file that declares the engine's `extern "C"` surface (the C
//! shim declares the two calls its hooks make).

use kernel::prelude::*;

extern "C" {
    fn kdbt_engine_disassemble(
        code: *const u8,
        code_len: usize,
        ip: u64,
        max_insns: usize,
        out: *mut u8,
        out_len: usize,
    ) -> isize;
}

/// Decodes up to `max_insns` instructions of `code` (native address `ip`) as text lines into
/// `out`; returns the bytes written. Errors: `EINVAL` when `out` is too small for one line.
pub(crate) fn disassemble(code: &[u8], ip: u64, max_insns: usize, out: &mut [u8]) -> Result<usize> {
    // SAFETY: both pointers come from live slices of the given lengths, which the engine reads
    // (code) or writes (out) only within those lengths and only during the call.
    let n = unsafe {
        kdbt_engine_disassemble(
            code.as_ptr(),
            code.len(),
            ip,
            max_insns,
            out.as_mut_ptr(),
            out.len(),
        )
    };
    if n < 0 {
        return Err(Error::from_errno(n as i32));
    }
    Ok(n as usize)
}

extern "C" {
    fn kdbt_engine_parse_spec(
        text: *const u8,
        text_len: usize,
        out: *mut u8,
        out_len: usize,
        written: *mut usize,
    ) -> i32;
}

/// Parses a mode spec (`<design>[:<option>,…]`) with the translator's own parser
/// (`kdbt_modes::spec`). On success writes the canonical spec into `out` and returns its
/// length; when refused, writes why into `out` and returns `Err` with that length (both
/// truncated to `out`).
pub(crate) fn parse_spec(text: &str, out: &mut [u8]) -> core::result::Result<usize, usize> {
    let mut written = 0usize;
    // SAFETY: the pointers come from live slices of the given lengths and a local; the engine
    // reads `text` and writes `out` only within them, and only during the call.
    let rc = unsafe {
        kdbt_engine_parse_spec(
            text.as_ptr(),
            text.len(),
            out.as_mut_ptr(),
            out.len(),
            &mut written,
        )
    };
    if rc == 0 {
        Ok(written)
    } else {
        Err(written)
    }
}

/// An engine instance as the engine sees it (opaque).
#[repr(C)]
pub(crate) struct RawInstance {
    _private: [u8; 0],
}

extern "C" {
    fn kdbt_engine_data_size() -> usize;
    fn kdbt_engine_create(
        spec: *const u8,
        spec_len: usize,
        code_tx: u64,
        code_rw: *mut u8,
        code_len: usize,
        data: *mut u8,
        data_len: usize,
        trampoline: u64,
        syscall_entry: u64,
        max_blocks: usize,
        max_exits: usize,
        err: *mut i32,
    ) -> *mut RawInstance;
    fn kdbt_engine_destroy(instance: *mut RawInstance);
    fn kdbt_engine_set_funcs(
        instance: *mut RawInstance,
        addrs: *const u64,
        n: usize,
        counts: u64,
        per_cpu: bool,
    ) -> i32;
    fn kdbt_engine_trampoline(
        instance: *const RawInstance,
        stacks: u64,
        stack_size: u32,
        cpunode_selector: u16,
        out: *mut u8,
        out_len: usize,
    ) -> isize;
    fn kdbt_engine_drk_entry(
        instance: *const RawInstance,
        at: u64,
        region_lo: u64,
        region_hi: u64,
        out: *mut u8,
        out_len: usize,
    ) -> isize;
    fn kdbt_engine_link(instance: *const RawInstance, next: *mut RawInstance);
    fn kdbt_engine_translate(instance: *const RawInstance, pc: u64) -> u64;
    fn kdbt_engine_lookup(instance: *const RawInstance, pc: u64) -> u64;
    fn kdbt_engine_set_entry_points(instance: *const RawInstance, natives: *const u64, n: usize);
    fn kdbt_engine_flush_wanted(instance: *const RawInstance) -> bool;
    fn kdbt_engine_native_at_boundary(instance: *const RawInstance, tx: u64) -> u64;
    fn kdbt_engine_flush(instance: *const RawInstance) -> bool;
    fn kdbt_engine_delivery_pending(instance: *const RawInstance) -> bool;
    fn kdbt_engine_describe_tx(
        instance: *const RawInstance,
        tx: u64,
        out: *mut u8,
        out_len: usize,
    ) -> usize;
    fn kdbt_engine_reset_stats(instance: *const RawInstance);
    fn kdbt_engine_stats(instance: *const RawInstance, out: *mut u8, out_len: usize) -> isize;
}

/// Bytes of data memory (jumptable and counters) a [`Translator`] needs.
pub(crate) fn data_size() -> usize {
    // SAFETY: a constant, no preconditions.
    unsafe { kdbt_engine_data_size() }
}

/// Where a [`Translator`] puts its code and data, and what it is told about the kernel.
pub(crate) struct Memories {
    /// Executable address of the code memory (16-byte aligned).
    pub(crate) code_tx: u64,
    /// Writable alias of the same bytes.
    pub(crate) code_rw: *mut u8,
    /// Code memory bytes.
    pub(crate) code_len: usize,
    /// Zeroed data memory in the top 2 GiB, [`data_size`] bytes at least.
    pub(crate) data: *mut u8,
    /// Data memory bytes.
    pub(crate) data_len: usize,
    /// Where the dispatcher trampoline goes (within rel32 reach of the code memory).
    pub(crate) trampoline: u64,
    /// Native `entry_SYSCALL_64`.
    pub(crate) syscall_entry: u64,
}

/// Blocks all translators of one switch-on may hold together (their records are allocated
/// at switch-on, out of the engine's fixed arena).
const MAX_BLOCKS: usize = 48 << 10;
/// Exits they may hold together.
const MAX_EXITS: usize = 128 << 10;

/// A live translator in the engine (`kdbt_modes::Translator` over the kernel's environment),
/// for one mode spec. Dropping it frees it: the owner first makes sure no CPU can enter its
/// code cache or reach it through a hook.
pub(crate) struct Translator {
    raw: *mut RawInstance,
    spec: KVec<u8>,
}

// SAFETY: the engine serializes every call on an instance with its own lock.
unsafe impl Send for Translator {}
// SAFETY: as above.
unsafe impl Sync for Translator {}

impl Translator {
    /// Creates a translator for canonical `spec` over `mem`, one of `share` translators
    /// splitting the record budget. Errors: `EINVAL` (spec), `ERANGE` (memory out of reach),
    /// `ENOMEM`.
    ///
    /// # Safety
    /// The memories in `mem` are the translator's alone and outlive it.
    pub(crate) unsafe fn new(spec: &str, mem: &Memories, share: usize) -> Result<Self> {
        let mut err = 0i32;
        // SAFETY: `spec` is a live str; the memories are the caller's contract.
        let raw = unsafe {
            kdbt_engine_create(
                spec.as_ptr(),
                spec.len(),
                mem.code_tx,
                mem.code_rw,
                mem.code_len,
                mem.data,
                mem.data_len,
                mem.trampoline,
                mem.syscall_entry,
                MAX_BLOCKS / share,
                MAX_EXITS / share,
                &mut err,
            )
        };
        if raw.is_null() {
            return Err(Error::from_errno(err));
        }
        let mut text = KVec::new();
        text.extend_from_slice(spec.as_bytes(), GFP_KERNEL)?;
        let translator = Translator { raw, spec: text };
        if crate::funcs::counts_in(spec) {
            // Before anything is translated: every entry of a listed function is counted.
            let (addrs, counts) = crate::funcs::for_translator();
            // SAFETY: a live instance nothing runs yet; the set outlives it (the interposer
            // frees any funccount translator before a new set is loaded).
            let rc = unsafe {
                kdbt_engine_set_funcs(raw, addrs.as_ptr(), addrs.len(), counts.at, counts.per_cpu)
            };
            if rc != 0 {
                return Err(Error::from_errno(rc));
            }
        }
        Ok(translator)
    }

    /// The canonical mode spec it runs.
    pub(crate) fn spec(&self) -> &str {
        core::str::from_utf8(&self.spec).unwrap_or("?")
    }

    /// The engine's handle (for the hooks and the trampoline).
    pub(crate) fn raw(&self) -> *mut RawInstance {
        self.raw
    }

    /// The dispatcher trampoline's bytes for this translator, running the dispatcher on
    /// `stacks` (each CPU's stack top, by CPU number, each `stack_size` bytes) with the CPU
    /// number read through segment `cpunode_selector`. Errors: `EINVAL` when `out` is too
    /// small.
    ///
    /// # Safety
    /// The table and the stacks outlive the translator.
    pub(crate) unsafe fn trampoline(
        &self,
        stacks: u64,
        stack_size: u32,
        cpunode_selector: u16,
        out: &mut [u8],
    ) -> Result<usize> {
        // SAFETY: a live instance; `out` is a live buffer of that length; the stacks are the
        // caller's contract.
        let n = unsafe {
            kdbt_engine_trampoline(
                self.raw,
                stacks,
                stack_size,
                cpunode_selector,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        if n < 0 {
            return Err(Error::from_errno(n as i32));
        }
        Ok(n as usize)
    }

    /// The drk entry routine's bytes for this translator, to run at `at`, for events whose RIP
    /// is in `region` (everything the stubs send it). Errors: `EINVAL` when `out` is too small.
    pub(crate) fn drk_entry(
        &self,
        at: u64,
        region: core::ops::Range<u64>,
        out: &mut [u8],
    ) -> Result<usize> {
        // SAFETY: a live instance; `out` is a live buffer of that length.
        let n = unsafe {
            kdbt_engine_drk_entry(
                self.raw,
                at,
                region.start,
                region.end,
                out.as_mut_ptr(),
                out.len(),
            )
        };
        if n < 0 {
            return Err(Error::from_errno(n as i32));
        }
        Ok(n as usize)
    }

    /// Chains `next` after this translator: the hooks, statistics and invalidation reach it
    /// through this one (`None`: ends the chain here).
    ///
    /// # Safety
    /// `next` outlives this translator's use as the chain's head (the owner frees them
    /// together).
    pub(crate) unsafe fn link(&self, next: Option<&Translator>) {
        let next = next.map_or(core::ptr::null_mut(), |t| t.raw);
        // SAFETY: a live instance; `next` is live or null (caller's contract).
        unsafe { kdbt_engine_link(self.raw, next) }
    }

    /// The tx address of native `pc`, or `None` when it cannot be translated.
    pub(crate) fn translate(&self, pc: u64) -> Option<u64> {
        // SAFETY: a live instance.
        let tx = unsafe { kdbt_engine_translate(self.raw, pc) };
        (tx != 0).then_some(tx)
    }

    /// The tx address of the live block at native `pc`, translating nothing: `None` when
    /// there is none (never translated, or invalidated since).
    pub(crate) fn lookup(&self, pc: u64) -> Option<u64> {
        // SAFETY: a live instance.
        let tx = unsafe { kdbt_engine_lookup(self.raw, pc) };
        (tx != 0).then_some(tx)
    }

    /// Names the native addresses the entry stubs lead to: an invalidation leaves their
    /// blocks unpoisoned (they run before the kernel's `%gs` is loaded, where an `int3` cannot
    /// be taken) and the interposer retargets the stubs instead.
    pub(crate) fn set_entry_points(&self, natives: &[u64]) {
        // SAFETY: a live instance; `natives` is a readable slice.
        unsafe { kdbt_engine_set_entry_points(self.raw, natives.as_ptr(), natives.len()) }
    }

    /// Whether a translator of the chain asked for a flush (its cache passed the watermark).
    pub(crate) fn flush_wanted(&self) -> bool {
        // SAFETY: `self.raw` is live for `self`'s life.
        unsafe { kdbt_engine_flush_wanted(self.raw) }
    }

    /// The native address that may replace code-cache address `tx` on a stack (a return
    /// address or interrupted RIP at a clean instruction boundary), if any.
    pub(crate) fn native_at_boundary(&self, tx: u64) -> Option<u64> {
        // SAFETY: as above.
        let native = unsafe { kdbt_engine_native_at_boundary(self.raw, tx) };
        (native != 0).then_some(native)
    }

    /// Empties the caches of the chain that asked for a flush (drk: each CPU's on its own);
    /// false (nothing flushed) while a drk interrupt waits
    /// at a patched boundary. Only with every CPU stopped and no stack referencing the caches
    /// (module/flush.rs).
    pub(crate) fn flush(&self) -> bool {
        // SAFETY: as above; the caller stops every CPU.
        unsafe { kdbt_engine_flush(self.raw) }
    }

    /// Whether a drk interrupt of the chain waits at a patched boundary (it must be delivered
    /// before the cache may be left for good). Only with every CPU stopped.
    pub(crate) fn delivery_pending(&self) -> bool {
        // SAFETY: as above; the caller stops every CPU.
        unsafe { kdbt_engine_delivery_pending(self.raw) }
    }

    /// What the translators know about code-cache address `tx`, as text in `out`; returns
    /// the bytes written (for the log).
    pub(crate) fn describe_tx(&self, tx: u64, out: &mut [u8]) -> usize {
        // SAFETY: `self.raw` is live; `out` is a live slice of the given length.
        unsafe { kdbt_engine_describe_tx(self.raw, tx, out.as_mut_ptr(), out.len()) }
    }

    /// Zeroes its statistics and those of the translators chained after it.
    pub(crate) fn reset_stats(&self) {
        // SAFETY: a live instance.
        unsafe { kdbt_engine_reset_stats(self.raw) }
    }

    /// Writes the statistics of it and the translators chained after it (`translator: name
    /// value` lines, summed; `drk:` lines for drk) into `out`; returns the bytes written. Errors: `EINVAL` when `out` is too small.
    pub(crate) fn render_stats(&self, out: &mut [u8]) -> Result<usize> {
        // SAFETY: a live instance; `out` is a live buffer of that length.
        let n = unsafe { kdbt_engine_stats(self.raw, out.as_mut_ptr(), out.len()) };
        if n < 0 {
            return Err(Error::from_errno(n as i32));
        }
        Ok(n as usize)
    }
}

impl Drop for Translator {
    fn drop(&mut self) {
        // SAFETY: created by kdbt_engine_create; the owner guarantees nothing reaches it now.
        unsafe { kdbt_engine_destroy(self.raw) };
    }
}

extern "C" {
    fn kdbt_engine_heap_init(base: *mut u8, size: usize) -> bool;
    fn kdbt_vmem_alloc(size: usize) -> *mut u8;
    fn kdbt_vmem_free(mem: *mut u8);
}

/// Bytes of the engine's arena: the translator's records, maps and block metadata.
const ARENA_BYTES: usize = 128 << 20;

/// The engine's heap arena (module/engine/src/heap.rs): vmalloc memory handed over at load,
/// freed at unload after everything the engine allocated is gone.
pub(crate) struct Arena {
    mem: *mut u8,
}

// SAFETY: plain kernel memory owned by the engine; this handle only frees it.
unsafe impl Send for Arena {}
// SAFETY: as above.
unsafe impl Sync for Arena {}

impl Arena {
    /// Allocates the arena and gives it to the engine. Errors: `ENOMEM`, `EINVAL` (the engine
    /// refused it).
    pub(crate) fn give_to_engine() -> Result<Self> {
        // SAFETY: any size; null on failure.
        let mem = unsafe { kdbt_vmem_alloc(ARENA_BYTES) };
        if mem.is_null() {
            return Err(ENOMEM);
        }
        let arena = Arena { mem };
        // SAFETY: fresh memory, the engine's until this handle is dropped at unload, after
        // every engine object.
        if !unsafe { kdbt_engine_heap_init(mem, ARENA_BYTES) } {
            return Err(EINVAL);
        }
        Ok(arena)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: from kdbt_vmem_alloc; the module drops this last.
        unsafe { kdbt_vmem_free(self.mem) };
    }
}
