// SPDX-License-Identifier: GPL-2.0

//! One translator serving the running kernel: the kernel's [`Env`], a lock, and the
//! `extern "C"` calls the module, its hooks and the dispatcher trampoline make.
//!
//! Locking: one [`IrqSpinLock`] per instance (the trampoline already runs with interrupts
//! off; every other caller gets them disabled by the lock).
//!
//! Instances form a chain (`next`): fast runs one for every CPU, drk one per CPU (each CPU
//! its own code cache, as DRK has). The hooks, statistics and invalidation take the chain's
//! first instance and cover all of them.

use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::Relaxed};

use kdbt_modes::dispatch::{emit_trampoline, DispatcherStacks, TrampolineConfig};
use kdbt_modes::env::{CodeMemory, CounterHome, DataMemory, Env};
use kdbt_modes::{ModeSpec, Translator};

use crate::drk;
use crate::irq_lock::{IrqGuard, IrqSpinLock};
use crate::Truncating;

extern "C" {
    fn kdbt_core_kernel_text(addr: u64) -> bool;
    fn kdbt_kept_native(addr: u64) -> bool;
    fn kdbt_read_kernel_image(dst: *mut core::ffi::c_void, addr: u64, len: usize) -> isize;
    fn kdbt_flush_request();
}

/// Page size, bytes.
const PAGE: u64 = 4096;

/// The running kernel as the translator sees it (DESIGN §4).
pub(crate) struct KernelEnv {
    /// Native `entry_SYSCALL_64`: its first instructions run on the user's stack.
    syscall_entry: u64,
    /// The dispatcher trampoline.
    dispatcher: u64,
}

fn core_text(addr: u64) -> bool {
    // SAFETY: a pure lookup of an address against the kernel's text bounds.
    unsafe { kdbt_core_kernel_text(addr) }
}

impl Env for KernelEnv {
    fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        // Core kernel text only: it is always mapped, so reading it cannot fault.
        let mut done = 0;
        while done < buf.len() {
            let at = addr + done as u64;
            if !core_text(at) {
                break;
            }
            let n = ((PAGE - at % PAGE) as usize).min(buf.len() - done);
            // SAFETY: `at..at+n` lies in one page of core kernel text (checked above), which
            // is mapped and readable for the kernel's life.
            unsafe { core::ptr::copy_nonoverlapping(at as *const u8, buf[done..].as_mut_ptr(), n) };
            done += n;
        }
        done
    }

    /// Jump tables of core kernel text: the compiler puts them in the image's .rodata, which
    /// is read-only after boot. Read from the image's mapping without faulting.
    fn read_data(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes; the shim checks the range
        // and reads it with `copy_from_kernel_nofault`.
        let rc = unsafe { kdbt_read_kernel_image(buf.as_mut_ptr().cast(), addr, buf.len()) };
        if rc == 0 {
            buf.len()
        } else {
            0
        }
    }

    fn red_zone(&self) -> u32 {
        0
    }

    fn dispatcher_entry(&self) -> u64 {
        self.dispatcher
    }

    /// Module code (kdbt's own included), BPF and anything outside core text run natively
    /// until the next interrupt or syscall brings the CPU back; so does the entry code the
    /// shim names (espfix64's return, `asm_load_gs_index`), which translated code branches
    /// to directly.
    fn run_natively(&self, native: u64) -> bool {
        // SAFETY: a pure comparison of an address with two kernel symbols.
        !core_text(native) || unsafe { kdbt_kept_native(native) }
    }

    fn stack_unusable_at(&self, native: u64) -> bool {
        native == self.syscall_entry
    }

    /// Text patching and kprobes own the `int3`s they place and find them by native address.
    fn breakpoints_run_natively(&self) -> bool {
        true
    }

    /// Never from the dispatcher: with callret, stacks hold code-cache return addresses at
    /// all times. The module flushes with every CPU stopped instead, after rewriting them
    /// ([`kdbt_engine_native_at_boundary`], [`kdbt_engine_flush`]).
    fn flush_is_safe(&self) -> bool {
        false
    }

    fn counter_home(&self) -> CounterHome {
        CounterHome::Data
    }

    fn memory_low(&self) -> bool {
        crate::heap::low()
    }
}

/// A translator, its drk delivery state and their lock.
pub struct Instance {
    lock: IrqSpinLock,
    translator: UnsafeCell<Translator<KernelEnv>>,
    drk: UnsafeCell<drk::State>,
    /// The dispatcher trampoline, and its final `ret` (0 until written).
    pub(crate) trampoline: u64,
    pub(crate) trampoline_ret: AtomicU64,
    /// The drk entry routine's `iretq` (0 until written).
    pub(crate) drk_iret: AtomicU64,
    /// drk events delivered untouched because the lock stayed busy.
    pub(crate) lock_busy: AtomicU64,
    /// TSC ticks spent in the dispatcher and in translations asked for directly, lock held
    /// ([`tsc`]): the cold-start cost in time; guest instructions under icount.
    pub(crate) translate_tsc: AtomicU64,
    /// The code region whose events the drk entry routine gets (0..0 until written).
    pub(crate) region_lo: AtomicU64,
    pub(crate) region_hi: AtomicU64,
    /// drk events delivered to a handler with a code-cache RIP still in the frame.
    pub(crate) tx_rip_delivered: AtomicU64,
    /// The dispatcher stacks' table (with each CPU's kernel `%gs` base) and the CPU-number
    /// selector, as given to the trampoline (0 until written): the drk entry routine checks
    /// `%gs` the same way.
    gs_table: AtomicU64,
    gs_selector: AtomicU64,
    /// A flush was asked of the module (the cache passed its watermark); cleared by the flush.
    flush_requested: AtomicBool,
    /// The next instance of the chain (null: last).
    next: AtomicPtr<Instance>,
    code_start: u64,
    code_end: u64,
}

/// The instance's lock held (interrupts off).
pub(crate) struct Guard<'a> {
    instance: &'a Instance,
    _held: IrqGuard<'a>,
}

impl Instance {
    /// Takes the lock; `None` after `spins` failed attempts.
    pub(crate) fn lock(&self, spins: u64) -> Option<Guard<'_>> {
        Some(Guard {
            instance: self,
            _held: self.lock.lock(spins)?,
        })
    }

    /// Takes the lock, however long it takes.
    fn lock_forever(&self) -> Guard<'_> {
        Guard {
            instance: self,
            _held: self.lock.lock_forever(),
        }
    }

    fn contains(&self, tx: u64) -> bool {
        (self.code_start..self.code_end).contains(&tx)
    }

    /// This instance and the ones chained after it.
    fn chain(&self) -> impl Iterator<Item = &Instance> {
        let mut at: *const Instance = self;
        core::iter::from_fn(move || {
            // SAFETY: chained instances are live as long as the first (the module links them
            // and frees them together).
            let inst = unsafe { at.as_ref()? };
            at = inst.next.load(Relaxed);
            Some(inst)
        })
    }
}

impl Guard<'_> {
    fn translator(&mut self) -> &mut Translator<KernelEnv> {
        self.parts().0
    }

    /// The translator and the drk state.
    pub(crate) fn parts(&mut self) -> (&mut Translator<KernelEnv>, &mut drk::State) {
        // SAFETY: the lock is held for the guard's life, so these are the only references.
        unsafe {
            (
                &mut *self.instance.translator.get(),
                &mut *self.instance.drk.get(),
            )
        }
    }
}

/// Errors of [`kdbt_engine_create`], negative errnos.
const EINVAL: i32 = 22;
const ENOMEM: i32 = 12;
const ERANGE: i32 = 34;

/// Creates an instance for `spec` over code memory (`code_len` bytes executed at `code_tx`,
/// written at `code_rw`) and zeroed data memory (`data_len` bytes at `data`, in the top
/// 2 GiB), with the dispatcher trampoline at `trampoline` (within rel32 reach of the code)
/// and `syscall_entry` the native `entry_SYSCALL_64`. Records are reserved for `max_blocks`
/// blocks and `max_exits` exits.
///
/// Returns the instance, or null with `*err` a negative errno: `-EINVAL` (bad spec),
/// `-ERANGE` (memory out of reach or too small, or smaller than the spec's `cache=`), `-ENOMEM` (the engine's arena cannot hold
/// the records).
///
/// # Safety
/// The memories must satisfy [`CodeMemory::new`] and [`DataMemory::new`] and outlive the
/// instance; `spec` must be readable for `spec_len` bytes; `err` writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kdbt_engine_create(
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
) -> *mut Instance {
    let fail = |e: i32| {
        // SAFETY: the caller guarantees `err` is writable.
        unsafe { *err = -e };
        core::ptr::null_mut()
    };
    // SAFETY: the caller guarantees the range.
    let text = unsafe { core::slice::from_raw_parts(spec, spec_len) };
    let Some(spec) = core::str::from_utf8(text)
        .ok()
        .and_then(|t| ModeSpec::parse(t).ok())
    else {
        return fail(EINVAL);
    };
    // `cache=` caps the code memory; more than the module gives is refused.
    let code_len = match spec.cache_kib {
        Some(kib) if kib as usize * 1024 > code_len => return fail(ERANGE),
        Some(kib) => kib as usize * 1024,
        None => code_len,
    };
    let env = KernelEnv {
        syscall_entry,
        dispatcher: trampoline,
    };
    // SAFETY: forwarded from this function's contract.
    let (code, data) = unsafe {
        (
            CodeMemory::new(code_tx, code_rw, code_len),
            DataMemory::new(data as u64, data, data_len),
        )
    };
    let mut translator = match Translator::new(spec, env, code, data) {
        Ok(t) => t,
        Err(kdbt_modes::InitError::Spec(_)) => return fail(EINVAL),
        Err(_) => return fail(ERANGE),
    };
    if translator.reserve(max_blocks, max_exits).is_err() {
        return fail(ENOMEM);
    }
    let instance = alloc::boxed::Box::new(Instance {
        lock: IrqSpinLock::new(),
        translator: UnsafeCell::new(translator),
        drk: UnsafeCell::new(drk::State::default()),
        trampoline,
        trampoline_ret: AtomicU64::new(0),
        drk_iret: AtomicU64::new(0),
        lock_busy: AtomicU64::new(0),
        translate_tsc: AtomicU64::new(0),
        region_lo: AtomicU64::new(0),
        region_hi: AtomicU64::new(0),
        tx_rip_delivered: AtomicU64::new(0),
        gs_table: AtomicU64::new(0),
        gs_selector: AtomicU64::new(0),
        flush_requested: AtomicBool::new(false),
        next: AtomicPtr::new(core::ptr::null_mut()),
        code_start: code_tx,
        code_end: code_tx + code_len as u64,
    });
    alloc::boxed::Box::into_raw(instance)
}

/// Frees an instance.
///
/// # Safety
/// `instance` came from [`kdbt_engine_create`]; no CPU can still enter its code cache or
/// reach it through a hook.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_destroy(instance: *mut Instance) {
    // SAFETY: the caller's contract: ours, and unreachable from now on.
    drop(unsafe { alloc::boxed::Box::from_raw(instance) });
}

/// Gives `instance` (spec with `funccount`, nothing translated yet) client funccount's
/// functions: `n` native entry addresses at `addrs`, counted at `counts` (`n` `u64`s in the
/// addresses' ascending order): a `%gs` offset within `i32` reach when `per_cpu`
/// ([`kdbt_modes::FuncSet::per_cpu`]), else an address in the top 2 GiB shared by all CPUs.
/// Returns 0, or -EINVAL (client off, nothing given, or blocks translated already), -ERANGE
/// (`counts` out of reach), -ENOMEM.
///
/// # Safety
/// `instance` is live and not running yet; `addrs` is readable for `n` `u64`s; the counters
/// outlive the instance.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_set_funcs(
    instance: *mut Instance,
    addrs: *const u64,
    n: usize,
    counts: u64,
    per_cpu: bool,
) -> i32 {
    // SAFETY: the caller's contract.
    let (inst, addrs) = unsafe { (&*instance, core::slice::from_raw_parts(addrs, n)) };
    let set = if per_cpu {
        kdbt_modes::FuncSet::per_cpu(addrs, counts as i64)
    } else {
        kdbt_modes::FuncSet::new(addrs, counts)
    };
    let set = match set {
        Ok(set) => set,
        Err(kdbt_modes::FuncSetError::CountsUnreachable) => return -ERANGE,
        Err(_) => return -EINVAL,
    };
    match inst.lock_forever().translator().set_functions(set) {
        Ok(()) => 0,
        Err(_) => -EINVAL,
    }
}

/// Writes the dispatcher trampoline for `instance` (at its trampoline address) into `out`,
/// `out_len` bytes; returns its length, or -EINVAL when `out` is too small. The trampoline
/// disables interrupts and runs the dispatcher on the CPU's own dispatcher stack: `stacks`
/// (top 2 GiB) holds each CPU's stack top, each stack `stack_size` bytes; the CPU number is
/// read with `lsl` of segment `cpunode_selector` (see `kdbt_modes::dispatch`).
///
/// # Safety
/// `instance` is live; `out` is writable for `out_len` bytes; the table and stacks outlive
/// the instance.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_trampoline(
    instance: *const Instance,
    stacks: u64,
    stack_size: u32,
    cpunode_selector: u16,
    out: *mut u8,
    out_len: usize,
) -> isize {
    // SAFETY: the caller's contract.
    let inst = unsafe { &*instance };
    inst.gs_table.store(stacks, Relaxed);
    inst.gs_selector.store(u64::from(cpunode_selector), Relaxed);
    let cfg = TrampolineConfig {
        save_extended_state: false,
        disable_interrupts: true,
        stacks: Some(DispatcherStacks {
            table: stacks,
            size: stack_size,
            cpunode_selector,
        }),
    };
    let code = emit_trampoline(
        inst.trampoline,
        instance as u64,
        kdbt_engine_dispatch as *const () as usize as u64,
        cfg,
    );
    if code.len() > out_len {
        return -(EINVAL as isize);
    }
    // SAFETY: `out` holds `out_len >= code.len()` bytes (checked).
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), out, code.len()) };
    // It ends `popfq; ret`: the `ret` is its last byte.
    inst.trampoline_ret
        .store(inst.trampoline + code.len() as u64 - 1, Relaxed);
    code.len() as isize
}

/// Writes the drk entry routine for `instance`, to run at tx address `at`, into `out`
/// (`out_len` bytes); returns its length, or -EINVAL when `out` is too small. The vectors'
/// stubs jump to it (module/entry_stub.rs) for events whose RIP is in `region_lo..region_hi`
/// (trampolines, stubs and code caches). Written after [`kdbt_engine_trampoline`], it checks
/// `%gs` with the same stacks table before the event code runs.
///
/// # Safety
/// `instance` is live; `out` is writable for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_drk_entry(
    instance: *const Instance,
    at: u64,
    region_lo: u64,
    region_hi: u64,
    out: *mut u8,
    out_len: usize,
) -> isize {
    // SAFETY: the caller's contract.
    let inst = unsafe { &*instance };
    inst.region_lo.store(region_lo, Relaxed);
    inst.region_hi.store(region_hi, Relaxed);
    let table = inst.gs_table.load(Relaxed);
    let stacks = (table != 0).then(|| DispatcherStacks {
        table,
        size: 0,
        cpunode_selector: inst.gs_selector.load(Relaxed) as u16,
    });
    let (code, iret) = drk::emit_entry(at, instance as u64, stacks);
    if code.len() > out_len {
        return -(EINVAL as isize);
    }
    // SAFETY: `out` holds `out_len >= code.len()` bytes (checked).
    unsafe { core::ptr::copy_nonoverlapping(code.as_ptr(), out, code.len()) };
    inst.drk_iret.store(at + iret as u64, Relaxed);
    code.len() as isize
}

/// Chains `next` after `instance` (null: ends the chain there).
///
/// # Safety
/// Both are live (or `next` null) and are freed together.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_link(instance: *const Instance, next: *mut Instance) {
    // SAFETY: the caller's contract.
    unsafe { &*instance }.next.store(next, Relaxed);
}

/// The dispatcher, called by the trampoline with interrupts off: resolves the native target
/// in `*slot` to the tx address to continue at (translating on a miss, chaining the exit or
/// filling the jumptable).
///
/// # Safety
/// Called only by the trampoline of a live `instance`, with `slot` its frame's target slot.
pub unsafe extern "C" fn kdbt_engine_dispatch(
    instance: *const Instance,
    exit_id: u64,
    slot: *mut u64,
) {
    // SAFETY: the trampoline passes the live instance it was built for.
    let inst = unsafe { &*instance };
    let mut g = inst.lock_forever();
    let start = tsc();
    // SAFETY: `slot` is the live trampoline frame's target slot (caller's contract).
    unsafe { g.translator().dispatch_raw(exit_id, slot) };
    inst.translate_tsc
        .fetch_add(tsc().wrapping_sub(start), Relaxed);
    if g.translator().cache().past_flush_watermark() && !inst.flush_requested.swap(true, Relaxed) {
        // SAFETY: queues the module's flush work; callable with interrupts off.
        unsafe { kdbt_flush_request() };
    }
}

/// Whether an instance of the chain asked for a flush and has not been flushed since.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_flush_wanted(instance: *const Instance) -> bool {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    first.chain().any(|i| i.flush_requested.load(Relaxed))
}

/// The native address that may replace code-cache address `tx` in a saved return address or
/// an interrupted frame (see `Translator::native_at_boundary`), or 0: `tx` is in no code
/// memory of the chain, is not at a clean instruction boundary, or the lock stays busy.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_native_at_boundary(instance: *const Instance, tx: u64) -> u64 {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    let Some(inst) = first.chain().find(|i| i.contains(tx)) else {
        return 0;
    };
    let Some(mut g) = inst.lock(1 << 24) else {
        return 0;
    };
    g.translator().native_at_boundary(tx).unwrap_or(0)
}

/// Writes what the chain knows about code-cache address `tx` (its `TxInfo`, or that it has
/// none) into `out` (`out_len` bytes, truncated); returns the bytes written. For the log of a
/// flush that a stack word held back.
///
/// # Safety
/// `instance` is live; `out` is writable for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_describe_tx(
    instance: *const Instance,
    tx: u64,
    out: *mut u8,
    out_len: usize,
) -> usize {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    // SAFETY: the caller's contract.
    let out = unsafe { core::slice::from_raw_parts_mut(out, out_len) };
    let mut w = Truncating { buf: out, len: 0 };
    let info = first
        .chain()
        .find(|i| i.contains(tx))
        .and_then(|i| i.lock(1 << 24))
        .map(|mut g| g.translator().tx_info(tx));
    let _ = match info {
        Some(Some(info)) => write!(w, "{info:?}"),
        Some(None) => write!(w, "no translation there"),
        None => write!(w, "outside every code memory, or the lock stayed busy"),
    };
    w.len
}

/// Whether a drk interrupt waits at a patched boundary in a cache of the chain, or a
/// translator's lock stayed busy (then it may).
///
/// # Safety
/// `instance` is live; every CPU is stopped.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_delivery_pending(instance: *const Instance) -> bool {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    first.chain().any(|inst| match inst.lock(1 << 24) {
        Some(mut g) => g.parts().1.pending(),
        None => true,
    })
}

/// Empties the code caches of the chain that asked for a flush (the persistent entries stay)
/// and clears their requests. Refused (false, nothing flushed) while a drk interrupt waits at a patched
/// boundary in a cache.
///
/// # Safety
/// `instance` is live; no CPU executes in the chain's code memories and no stack or frame
/// holds an address in them (every CPU stopped, stacks rewritten); the module rewrites the
/// entry stubs before any CPU runs again.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_flush(instance: *const Instance) -> bool {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    // Nothing can change between the passes: every CPU is stopped.
    // SAFETY: as above.
    if unsafe { kdbt_engine_delivery_pending(instance) } {
        return false;
    }
    // Only the caches that asked: drk's per-CPU caches fill at their own pace, and no CPU
    // runs in another's (their stacks and frames hold native addresses only).
    for inst in first.chain().filter(|i| i.flush_requested.load(Relaxed)) {
        inst.lock_forever().translator().flush();
        inst.flush_requested.store(false, Relaxed);
    }
    true
}

/// The tx address of native `pc`, translating it if needed; 0 when it cannot be translated.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_translate(instance: *const Instance, pc: u64) -> u64 {
    // SAFETY: the caller's contract.
    let inst = unsafe { &*instance };
    let mut g = inst.lock_forever();
    let start = tsc();
    let tx = g.translator().translate(pc).unwrap_or(0);
    inst.translate_tsc
        .fetch_add(tsc().wrapping_sub(start), Relaxed);
    tx
}

/// The time-stamp counter. Under QEMU's icount clock it counts guest instructions (of every
/// vCPU: `cpu_get_tsc` reads the one instruction counter), so the ticks an instance spends in
/// its dispatcher are the guest instructions that ran meanwhile (workloads/README.md, "What
/// the icount clock measures"); on hardware, TSC cycles.
fn tsc() -> u64 {
    // SAFETY: `rdtsc` reads a counter and has no other effect; CR4.TSD is clear in the kernel.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Names the native entry points of `instance` ([`kdbt_modes::Translator::set_entry_points`]):
/// `n` addresses at `natives` (at most a few hundred: the gates and the syscall entry).
///
/// # Safety
/// `instance` is live; `natives` is readable for `n` `u64`s.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_set_entry_points(
    instance: *const Instance,
    natives: *const u64,
    n: usize,
) {
    // SAFETY: the caller's contract.
    let (inst, natives) = unsafe { (&*instance, core::slice::from_raw_parts(natives, n)) };
    inst.lock_forever().translator().set_entry_points(natives);
}

/// The tx address of the live block that starts at native `pc` in `instance`, or 0 (none:
/// never translated, or invalidated since). Translates nothing.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_lookup(instance: *const Instance, pc: u64) -> u64 {
    // SAFETY: the caller's contract.
    let inst = unsafe { &*instance };
    let mut g = inst.lock_forever();
    g.translator().cache().lookup(pc).unwrap_or(0)
}

/// The native address the code-cache address `tx` stands for, or 0 when `tx` is not a
/// translation (outside the cache, persistent entries, padding) or the lock stays busy.
///
/// Called from exception handlers (the extable hook, the `int3` and `#UD` notifier): a
/// bounded spin, so a fault inside the dispatcher itself cannot deadlock here.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_tx_to_native(instance: *const Instance, tx: u64) -> u64 {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    let Some(inst) = first.chain().find(|i| i.contains(tx)) else {
        return 0;
    };
    let Some(mut g) = inst.lock(1 << 24) else {
        return 0;
    };
    match g.translator().tx_info(tx) {
        Some(info) if info.native_pc != 0 => info.native_pc,
        _ => 0,
    }
}

/// Invalidates translations of native `lo..hi` (kernel text changed there) in the chain;
/// returns how many blocks went stale (0: nothing was translated there).
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_invalidate(
    instance: *const Instance,
    lo: u64,
    hi: u64,
) -> u64 {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    first
        .chain()
        .map(|inst| {
            let mut g = inst.lock_forever();
            let t = g.translator();
            let before = t.blocks_invalidated();
            t.invalidate(lo, hi);
            t.blocks_invalidated() - before
        })
        .sum()
}

/// Zeroes the statistics of the chain.
///
/// # Safety
/// `instance` is live.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_reset_stats(instance: *const Instance) {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    for inst in first.chain() {
        let mut g = inst.lock_forever();
        let (t, drk) = g.parts();
        t.reset_stats();
        drk.stats = drk::Stats::default();
        inst.lock_busy.store(0, Relaxed);
        inst.translate_tsc.store(0, Relaxed);
        inst.tx_rip_delivered.store(0, Relaxed);
    }
}

/// Writes the statistics as `name value` lines into `out` (`out_len` bytes); returns the
/// bytes written, or -EINVAL when `out` is too small.
///
/// # Safety
/// `instance` is live; `out` is writable for `out_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_stats(
    instance: *const Instance,
    out: *mut u8,
    out_len: usize,
) -> isize {
    // SAFETY: the caller's contract.
    let first = unsafe { &*instance };
    let mut spec = None;
    let mut sums = [0u64; 20];
    let mut drk_sums = drk::Stats::default();
    let mut lock_busy = 0;
    let mut translate_tsc = 0;
    for inst in first.chain() {
        let mut g = inst.lock_forever();
        let (t, drk) = g.parts();
        let s = t.stats();
        spec.get_or_insert(t.spec());
        let values = [
            s.blocks,
            s.native_insns,
            s.native_bytes,
            s.bytes_emitted,
            t.cache().free(),
            s.dispatches,
            s.links,
            s.jumptable_misses,
            s.jumptable_inserts,
            s.jumptable_conflicts,
            s.jumptable_hits,
            s.inline_cache_fills,
            s.inline_cache_hits,
            s.switch_entries,
            s.indirect_executed,
            s.insns_executed,
            s.flushes,
            s.blocks_invalidated,
            s.untranslatable,
            s.cache_full_native,
        ];
        for (sum, v) in sums.iter_mut().zip(values) {
            *sum += v;
        }
        for (sum, v) in drk_sums.0.iter_mut().zip(drk.stats.0) {
            *sum += v;
        }
        lock_busy += inst.lock_busy.load(Relaxed);
        translate_tsc += inst.translate_tsc.load(Relaxed);
        drk_sums.0[drk::Counter::DeliveredWithTxRip as usize] +=
            inst.tx_rip_delivered.load(Relaxed);
    }
    let Some(spec) = spec else {
        return -(EINVAL as isize);
    };
    const NAMES: [&str; 20] = [
        "blocks_translated",
        "native_insns_translated",
        "native_bytes_translated",
        "cache_bytes",
        "cache_free_bytes",
        "dispatcher_entries",
        "chaining_patches",
        "jumptable_misses",
        "jumptable_inserts",
        "jumptable_conflicts",
        "jumptable_hits",
        "inline_cache_fills",
        "inline_cache_hits",
        "switch_entries_resolved",
        "indirect_executed",
        "insns_executed",
        "flushes",
        "blocks_invalidated",
        "untranslatable_native",
        "cache_full_native",
    ];
    // SAFETY: the caller's contract.
    let out = unsafe { core::slice::from_raw_parts_mut(out, out_len) };
    let mut w = Truncating { buf: out, len: 0 };
    let (heap_size, heap_used) = crate::heap::usage();
    let mut ok = writeln!(w, "translator: mode {spec}").is_ok();
    ok &= writeln!(w, "translator: code_caches {}", first.chain().count()).is_ok();
    for (name, value) in NAMES.iter().zip(sums) {
        ok &= writeln!(w, "translator: {name} {value}").is_ok();
    }
    let global = [
        ("client_inscount", spec.options.inscount as u64),
        ("heap_bytes", heap_size as u64),
        ("heap_used_bytes", heap_used as u64),
        ("translate_tsc", translate_tsc),
    ];
    for (name, value) in global {
        ok &= writeln!(w, "translator: {name} {value}").is_ok();
    }
    if spec.design == kdbt_modes::Design::Drk {
        for (name, value) in drk::COUNTER_NAMES.iter().zip(drk_sums.0) {
            ok &= writeln!(w, "drk: {name} {value}").is_ok();
        }
        ok &= writeln!(w, "drk: lock_busy {lock_busy}").is_ok();
    }
    if !ok {
        return -(EINVAL as isize);
    }
    w.len as isize
}

// The trampoline pushes this as a plain function address: keep the symbol's ABI fixed.
const _: unsafe extern "C" fn(*const Instance, u64, *mut u64) = kdbt_engine_dispatch;
