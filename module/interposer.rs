// SPDX-License-Identifier: GPL-2.0

//! Entry interposition on every online CPU (DESIGN §4; BTKernel §3.2): a private IDT per CPU
//! whose interposable gates enter the code cache, and `MSR_LSTAR` at the translation of
//! `entry_SYSCALL_64`; switch-off restores both.
//!
//! Where the entries lead (BTKernel §3.2): in fast, the private gates and `MSR_LSTAR` point
//! straight at the translated handlers, so an entry costs no instruction more than natively.
//! With the spec option `stats`, and for drk's gates always, they lead to entry stubs instead
//! (module/entry_stub.rs): counting the entry, and in drk checking whether the interrupted RIP
//! is in the code cache (rollback or delay, DRK §4), then jumping to the translated handler.
//! A flush or an invalidation moves the translations: with every CPU stopped, the gates and
//! stubs are rewritten, and each CPU reloads its own LSTAR before it leaves the stop.
//!
//! The code cache region: per translator its dispatcher trampoline and drk entry routine, then
//! the entry stubs (one block per possible CPU: a stub per gate and one for `syscall`), then
//! the translators' code memories. fast runs one translator for every CPU (a shared code cache,
//! BTKernel §3); drk one per CPU (private code caches, DRK §4.3: its interrupt delay patches
//! the cache), each CPU's entries leading into its own.
//!
//! Switching is all-or-nothing: every CPU checks that it runs the native IDT and LSTAR the
//! tables were built from before switching, and if any CPU cannot, every CPU that did is
//! switched back before the ioctl returns `EIO`.
//!
//! The translator outlives switch-off: with callret, sleeping tasks hold code-cache return
//! addresses and would run translated code (and enter the dispatcher) until they return to
//! user mode. The drain (delayed work, first run right after switch-off) stops every CPU and
//! rewrites each such address to the native one it stands for (module/flush.rs), so no task can
//! return into the cache whatever it is doing; only a frame stopped inside an expansion (no
//! native equivalent; its task is runnable) holds it, retried every `KDBT_DRAIN_PERIOD_MS`.
//! Then kdbt.ko unpins itself (until then `rmmod` answers `EBUSY`). The drained translator
//! stays warm: switching on again with its mode spec reuses it; another spec drains it at once
//! if it is not yet, frees it and starts a new one, so a switch never waits for a task.

use crate::code_cache::{CodeCache, DataArea, WxProbe, PAGE};
use crate::control_abi::SPEC_MAX;
use crate::cpu::{self, ModulePin};
use crate::dispatcher_stack::{self, DispatcherStacks};
use crate::entry_stub::{self, DrkEvent, InCache, STUB_BYTES, TAG_ERROR_CODE};
use crate::flush::{self, Then};
use crate::hooks::{self, InjectedFailure};
use crate::idt::{self, Gate, Idtr, GATES};
use crate::stats::{Stats, FIRST_INTERRUPT};
use crate::syscall_entry;
use crate::translator::{self, Memories, Translator};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

/// Bytes reserved for each translator's dispatcher trampoline at the start of the region.
const TRAMPOLINE_BYTES: usize = 256;
/// Bytes reserved for each translator's drk entry routine, after its trampoline.
const DRK_ENTRY_BYTES: usize = 256;
/// Bytes of the region's head per translator.
const PER_TRANSLATOR: usize = TRAMPOLINE_BYTES + DRK_ENTRY_BYTES;
/// Entry stub bytes per CPU: a stub per gate, then the syscall stub.
const CPU_BLOCK: usize = (GATES + 1) * STUB_BYTES;
/// Bytes at the end of the head kept free for the W^X probe.
const PROBE_BYTES: usize = 64;
/// The page-fault vector (its frame has an error code).
const PAGE_FAULT: usize = 14;
/// Vectors whose frame has an error code (Intel SDM vol. 3 §6.13).
const ERROR_CODE_VECTORS: [usize; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
/// The translators' code memory, bytes: at least this much in all…
const CODE_BYTES: usize = 16 << 20;
/// …and at least this much per CPU for drk's per-CPU caches.
const DRK_CODE_BYTES_PER_CPU: usize = 8 << 20;
/// Drain attempts a switch-on makes (`KDBT_DRAIN_RETRY_MS` apart) before it answers `EBUSY`.
const SWITCH_DRAIN_ATTEMPTS: usize = 100;

/// What one CPU saved when it switched, read back when it switches off.
#[derive(Default)]
struct CpuSlot {
    switched: AtomicBool,
    failed: AtomicBool,
    native_lstar: AtomicU64,
    /// What `MSR_LSTAR` holds while switched: the syscall stub, or the translation of the
    /// syscall entry ([`Interposer::write_stubs`]).
    entry_lstar: AtomicU64,
    native_idt_base: AtomicU64,
    native_idt_limit: AtomicU32,
}

/// The switched-on state.
struct On {
    /// Canonical mode spec, NUL-padded.
    mode: [u8; SPEC_MAX],
}

/// The translators of one mode (one, or one per CPU for drk; the first heads the chain the
/// hooks see), and while code may still run in their caches, the module reference that keeps
/// that code mapped. Once drained they stay, warm, for the next switch-on with their mode.
struct Live {
    translators: KVec<Translator>,
    pin: Option<ModulePin>,
}

impl Live {
    /// Whether each CPU has a translator of its own (drk).
    fn per_cpu(&self) -> bool {
        self.translators.len() > 1
    }

    /// Index of the translator whose cache `cpu` enters.
    fn index_of(&self, cpu: usize) -> usize {
        if self.per_cpu() {
            cpu
        } else {
            0
        }
    }
}

/// Where a switched-off translator stands.
#[derive(Clone, Copy, Default)]
pub(crate) struct Drain {
    /// Attempts since the last switch-off (each stops every CPU).
    pub(crate) attempts: u64,
    /// Code-cache addresses left on stacks at the last attempt (frames inside an expansion).
    pub(crate) held: u64,
    /// Code-cache addresses on stacks rewritten to native ones by drains since load.
    pub(crate) rewritten: u64,
    /// Drains completed since load (no stack held a code-cache address any more).
    pub(crate) completed: u64,
}

/// Why [`Interposer::write_stubs`] runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stubs {
    /// At switch-on: stubs and private gates, all translated or refused.
    Switching,
    /// After a flush or an invalidation, every CPU stopped: the stubs only, whatever can be
    /// translated.
    AfterFlush,
}

/// Flushes of full code caches since load ([`Interposer::flush_step`]).
#[derive(Clone, Copy, Default)]
pub(crate) struct Flushes {
    /// Stops that emptied the caches.
    pub(crate) done: u64,
    /// Stops that left them: a stack held a code-cache address with no native equivalent
    /// (a frame stopped inside an expansion), retried shortly.
    pub(crate) refused: u64,
    /// Code-cache addresses on stacks replaced by native ones.
    pub(crate) words_rewritten: u64,
    /// Stops that pointed the entry stubs at fresh translations because an invalidation
    /// (a text poke) had poisoned the block one of them led to.
    pub(crate) stubs_retargeted: u64,
}

/// Entries of every CPU, the code they lead to, and their counters. One instance, behind the
/// control mutex.
pub(crate) struct Interposer {
    /// Trampoline, entry stubs, the translator's code memory.
    region: CodeCache,
    /// Bytes of the region before the translator's code memory.
    head: usize,
    /// The translators' data memories (jumptable, counters; one per possible CPU at most):
    /// module area, top 2 GiB.
    data: DataArea<AtomicU64>,
    /// Counters the stubs increment (dropped after the region that references them).
    stats: Stats,
    /// The dispatcher's per-CPU stacks.
    stacks: DispatcherStacks,
    /// The private IDTs, [`GATES`] gates per possible CPU; never reallocated (CPUs read them).
    idts: KVec<Gate>,
    /// Per possible CPU.
    cpus: KVec<CpuSlot>,
    /// `Some` while switched on.
    on: Option<On>,
    /// The translator, from switch-on until its code cache is unreferenced.
    live: Option<Live>,
    /// Which gates the last switch-on kept native (not interposable).
    native_gates: [bool; GATES],
    /// Which interposed gates lead to the native handler (it could not be translated).
    untranslated_gates: [bool; GATES],
    /// Draining after switch-off.
    drain: Drain,
    /// The native IDT's gates and syscall entry, as last read (switch-on).
    native_idt: KVec<Gate>,
    native_lstar: u64,
    /// Flushes of full caches.
    flushes: Flushes,
    /// A retargeting of the entry stubs failed and is retried by the flush work.
    retarget_pending: bool,
    /// The last switch-on's spec has `stats`: every entry goes through a counting stub.
    counting: bool,
}

/// Why a switch-on was refused.
pub(crate) enum OnError {
    /// Already on, with this mode.
    AlreadyOn,
    /// Refused with this errno and reason; nothing is switched.
    Refused(Error, &'static str),
    /// Failed with this errno; nothing is switched.
    Failed(Error),
}

impl Interposer {
    /// Allocates everything switching needs. Errors: `ENOMEM`, `ERANGE` when the region is
    /// out of rel32 reach of kernel text.
    pub(crate) fn new() -> Result<Self> {
        let n = cpu::possible();
        let mut cpus = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            cpus.push(CpuSlot::default(), GFP_KERNEL)?;
        }
        let head = (n * PER_TRANSLATOR + n * CPU_BLOCK + PROBE_BYTES).div_ceil(PAGE) * PAGE;
        let code = CODE_BYTES.max(n * DRK_CODE_BYTES_PER_CPU);
        Ok(Interposer {
            region: CodeCache::new(head + code)?,
            head,
            data: DataArea::zeroed(n * translator::data_size() / 8)?,
            stats: Stats::new(n)?,
            stacks: DispatcherStacks::new(n)?,
            idts: KVec::from_elem(Gate::default(), n * GATES, GFP_KERNEL)?,
            cpus,
            on: None,
            live: None,
            native_gates: [false; GATES],
            untranslated_gates: [false; GATES],
            drain: Drain::default(),
            native_idt: KVec::from_elem(Gate::default(), GATES, GFP_KERNEL)?,
            native_lstar: 0,
            flushes: Flushes::default(),
            retarget_pending: false,
            counting: false,
        })
    }

    /// The mode switched on, or `None` when off.
    pub(crate) fn mode(&self) -> Option<&str> {
        let on = self.on.as_ref()?;
        let len = on.mode.iter().position(|&b| b == 0).unwrap_or(SPEC_MAX);
        Some(core::str::from_utf8(&on.mode[..len]).unwrap_or("?"))
    }

    /// The entry counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the last switch-on counted entries (its spec has `stats`); the counters are
    /// those of the last switch-on that did.
    pub(crate) fn counting(&self) -> bool {
        self.counting
    }

    /// What the entries of the mode switched on lead to, for the status file.
    pub(crate) fn entries_text(&self) -> &'static str {
        let drk = self.live.as_ref().is_some_and(|l| l.per_cpu())
            || self.mode().is_some_and(|m| m.starts_with("drk"));
        match (self.counting, drk) {
            (true, _) => "stubs (count, then the translated handler)",
            (false, false) => "direct (gates and LSTAR at the translated handlers; not counted)",
            (false, true) => {
                "LSTAR direct; gates through drk stubs (the code-cache RIP check); not counted"
            }
        }
    }

    /// Loads this CPU's `MSR_LSTAR` with what it is to hold while switched (after a flush or
    /// a retargeting moved the syscall entry's translation). Only inside a stop of every CPU
    /// (module/flush_stop.c), after the stubs were rewritten.
    pub(crate) fn reload_this_cpu(&self) {
        let slot = &self.cpus[cpu::this_cpu()];
        if !slot.switched.load(Relaxed) {
            return;
        }
        let entry = slot.entry_lstar.load(Relaxed);
        if syscall_entry::current() != entry {
            // SAFETY: interrupts are off (stop_machine); `entry` is the syscall stub or the
            // translation of entry_SYSCALL_64 just written by `write_stubs`, or the native
            // entry (`set`'s contract).
            unsafe { syscall_entry::set(entry) };
        }
    }

    /// The first translator (the chain's head: its statistics cover all), while they live
    /// (switched on, draining after switch-off, or kept warm).
    pub(crate) fn translator(&self) -> Option<&Translator> {
        self.live.as_ref().map(|l| &l.translators[0])
    }

    /// Whether code may still run in the cache while off (the module stays pinned).
    pub(crate) fn draining(&self) -> bool {
        self.on.is_none() && self.live.as_ref().is_some_and(|l| l.pin.is_some())
    }

    /// The drain state.
    pub(crate) fn drain(&self) -> Drain {
        self.drain
    }

    /// The code cache region.
    pub(crate) fn cache(&self) -> &CodeCache {
        &self.region
    }

    /// Vectors whose gates the last switch-on kept native.
    pub(crate) fn native_gates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..GATES).filter(|&v| self.native_gates[v])
    }

    /// Interposed vectors whose handler could not be translated (their stub jumps native).
    pub(crate) fn untranslated_gates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..GATES).filter(|&v| self.untranslated_gates[v])
    }

    /// Probes the region's W^X layout (see [`CodeCache::probe`]) on the head's reserved tail.
    pub(crate) fn probe(&self) -> WxProbe {
        self.region.probe_at(self.head - PROBE_BYTES, PROBE_BYTES)
    }

    /// tx address of the stub of `vector` (or of the syscall entry, `vector == GATES`) of `cpu`.
    fn stub(&self, cpu: usize, vector: usize) -> u64 {
        let stubs = self.cpus.len() * PER_TRANSLATOR;
        self.region.exec() + (stubs + cpu * CPU_BLOCK + vector * STUB_BYTES) as u64
    }

    /// tx address of translator `i`'s dispatcher trampoline (its drk entry routine follows).
    fn trampoline(&self, i: usize) -> u64 {
        self.region.exec() + (i * PER_TRANSLATOR) as u64
    }

    /// Switches every online CPU's entries into the code cache in `mode` (canonical). A failure
    /// leaves the module as pinned as before, except that after the `EIO` path, where some
    /// CPUs ran switched for a moment, it drains as after a switch-off (`ctx`: as for
    /// [`Interposer::switch_off`]).
    pub(crate) fn switch_on(
        &mut self,
        mode: &str,
        ctx: *const core::ffi::c_void,
    ) -> Result<(), OnError> {
        if self.on.is_some() {
            return Err(OnError::AlreadyOn);
        }
        if crate::funcs::probing() {
            return Err(OnError::Refused(
                EBUSY,
                "kprobes or ftrace count the function set: `kdbtctl probe off` first",
            ));
        }
        if crate::funcs::counts_in(mode) && crate::funcs::for_translator().0.is_empty() {
            return Err(OnError::Refused(
                EINVAL,
                "funccount needs a function set: `kdbtctl funcs FILE` first",
            ));
        }
        let native_idtr = idt::current();
        let native_lstar = syscall_entry::current();
        let reuse = self
            .live
            .as_ref()
            .is_some_and(|l| l.translators[0].spec() == mode);
        if !reuse && self.live.is_some() {
            // Another mode's translator: drain it now if it is not yet, then free it.
            if !self.drain_now() {
                return Err(OnError::Refused(
                    EBUSY,
                    "a frame inside an expansion still holds the previous mode's code cache; \
                     retry shortly",
                ));
            }
            self.release();
        }
        let pinned_before = self.live.as_ref().is_some_and(|l| l.pin.is_some());
        self.counting = counts_entries(mode);
        if let Some(live) = self.live.as_mut() {
            if live.pin.is_none() {
                live.pin = Some(ModulePin::take());
            }
        } else {
            self.start_translator(mode, native_lstar)
                .map_err(OnError::Failed)?;
        }
        let injected = hooks::take_injected_failure();
        let built = if injected == InjectedFailure::Build {
            Err(EIO)
        } else {
            self.build(native_idtr, native_lstar)
        };
        if let Err(e) = built {
            // No CPU entered the cache: unpin as before (the translator stays, warm).
            if !pinned_before {
                if let Some(live) = self.live.as_mut() {
                    live.pin = None;
                }
            }
            return Err(OnError::Failed(e));
        }
        let this = &*self;
        cpu::on_each_online(&|cpu| {
            let slot = &this.cpus[cpu];
            if idt::current() != native_idtr
                || syscall_entry::current() != native_lstar
                || !DispatcherStacks::cpu_number_reads(cpu)
            {
                slot.failed.store(true, Relaxed);
                return;
            }
            slot.native_idt_base.store(native_idtr.base, Relaxed);
            slot.native_idt_limit
                .store(native_idtr.limit.into(), Relaxed);
            slot.native_lstar.store(native_lstar, Relaxed);
            let private = Idtr {
                limit: native_idtr.limit,
                base: this.idts[cpu * GATES..].as_ptr() as u64,
            };
            // SAFETY: interrupts are off (IPI callback); the private table has all 256 gates,
            // lives in `idts`, which is neither moved nor written while any CPU is switched,
            // and each gate leads to the native handler or to a stub ending in its
            // translation or in it (`build`).
            unsafe { idt::load(&private) };
            // SAFETY: the syscall stub touches neither registers, the stack nor GS, and jumps
            // to the translation of entry_SYSCALL_64; that translation starts with the native
            // entry's own instructions (`build`).
            unsafe { syscall_entry::set(slot.entry_lstar.load(Relaxed)) };
            slot.switched.store(true, Relaxed);
        });
        if injected == InjectedFailure::Cpus {
            self.cpus[0].failed.store(true, Relaxed);
        }
        if self.cpus.iter().any(|s| s.failed.swap(false, Relaxed)) {
            self.restore_all();
            pr_err!(
                "switch-on refused: a CPU did not run the native IDT and syscall entry, or \
                 could not read its CPU number\n"
            );
            // The CPUs that switched may have entered the cache meanwhile: drain it.
            // SAFETY: `ctx` is the module's shared state, which cancels the work before it goes.
            unsafe { hooks::schedule_drain(ctx) };
            return Err(OnError::Failed(EIO));
        }
        let mut text = [0u8; SPEC_MAX];
        let n = mode.len().min(SPEC_MAX - 1);
        text[..n].copy_from_slice(&mode.as_bytes()[..n]);
        self.on = Some(On { mode: text });
        self.drain.attempts = 0;
        self.drain.held = 0;
        Ok(())
    }

    /// Creates the translators for `mode` (one per possible CPU for drk, else one), writes
    /// their trampolines (and drk entry routines), chains them and publishes the chain to the
    /// hooks.
    fn start_translator(&mut self, mode: &str, native_lstar: u64) -> Result {
        for word in self.data.get() {
            word.store(0, Relaxed);
        }
        let drk = mode.starts_with("drk");
        let count = if drk { self.cpus.len() } else { 1 };
        let code_each = (self.region.len() - self.head) / count / PAGE * PAGE;
        let data = self.data.get();
        let data_each = core::mem::size_of_val(data) / count;
        let mut translators = KVec::with_capacity(count, GFP_KERNEL)?;
        for i in 0..count {
            let code_off = self.head + i * code_each;
            let mem = Memories {
                code_tx: self.region.exec() + code_off as u64,
                code_rw: (self.region.alias() + code_off as u64) as *mut u8,
                code_len: code_each,
                // SAFETY: `data_each * count` bytes fit in `data`.
                data: unsafe { (data.as_ptr() as *mut u8).add(i * data_each) },
                data_len: data_each,
                trampoline: self.trampoline(i),
                syscall_entry: native_lstar,
            };
            // SAFETY: each translator gets its own slice of the code memory past the head and
            // of the data memory, both kept until the translators are dropped (`live` is
            // dropped before them; Drop below).
            let translator = unsafe { Translator::new(mode, &mem, count)? };
            let mut code = [0u8; TRAMPOLINE_BYTES];
            // SAFETY: the stacks live as long as `self`, which drops the translators first.
            let n = unsafe {
                translator.trampoline(
                    self.stacks.table(),
                    dispatcher_stack::STACK_BYTES as u32,
                    DispatcherStacks::cpunode_selector(),
                    &mut code,
                )?
            };
            // SAFETY: no CPU runs in the region: no translator lived (checked by the caller).
            unsafe { self.region.write(mem.trampoline, &code[..n]) };
            if drk {
                let at = mem.trampoline + TRAMPOLINE_BYTES as u64;
                let mut code = [0u8; DRK_ENTRY_BYTES];
                let region = self.region.exec()..self.region.exec() + self.region.len() as u64;
                let n = translator.drk_entry(at, region, &mut code)?;
                // SAFETY: as above.
                unsafe { self.region.write(at, &code[..n]) };
            }
            translators.push(translator, GFP_KERNEL)?;
        }
        for (i, t) in translators.iter().enumerate() {
            // SAFETY: the chain's translators are dropped together (`Live`).
            unsafe { t.link(translators.get(i + 1)) };
        }
        // SAFETY: the translators stay live until unpublished (`release`).
        unsafe { hooks::publish(translators[0].raw()) };
        self.live = Some(Live {
            translators,
            pin: Some(ModulePin::take()),
        });
        Ok(())
    }

    /// Restores every CPU's native entries and starts draining. Errors: `EALREADY` (the
    /// ABI's off-while-off errno) when not switched on.
    pub(crate) fn switch_off(&mut self, ctx: *const core::ffi::c_void) -> Result {
        if self.on.is_none() {
            return Err(Error::from_errno(-crate::control_abi::OFF_WHILE_OFF_ERRNO));
        }
        self.restore_all();
        self.on = None;
        // SAFETY: `ctx` is the module's shared state, which cancels the work before it goes.
        unsafe { hooks::schedule_drain(ctx) };
        Ok(())
    }

    /// One drain step while off: stops every CPU and rewrites the stacks' code-cache addresses
    /// to native ones; when none is left, unpins the module (the translator stays, warm).
    /// Returns whether to try again later (a frame inside an expansion held one, or the stop
    /// failed). Process context, entered natively: kdbt is off.
    pub(crate) fn drain_step(&mut self) -> bool {
        if self.on.is_some() || !self.live.as_ref().is_some_and(|l| l.pin.is_some()) {
            return false;
        }
        let lo = self.region.exec();
        let hi = lo + self.region.len() as u64;
        self.drain.attempts += 1;
        // SAFETY: the drain work and the control ioctls run in process context and entered the
        // kernel natively (kdbt is off); `self` is borrowed mutably for the whole stop.
        match unsafe { flush::rewrite_stacks(lo, hi, self, Then::Release) } {
            Ok(outcome) => {
                self.drain.rewritten += outcome.rewritten;
                self.drain.held = outcome.held;
                if !outcome.done {
                    return true;
                }
                self.drain.completed += 1;
                if let Some(live) = self.live.as_mut() {
                    live.pin = None;
                    pr_info!(
                        "code cache of {} unreferenced after {} attempts ({} stack words rewritten)\n",
                        live.translators[0].spec(),
                        self.drain.attempts,
                        outcome.rewritten
                    );
                }
                false
            }
            Err(e) => {
                pr_warn!("drain: stop_machine failed ({:?}); retrying\n", e);
                true
            }
        }
    }

    /// Drains the switched-off translator now, retrying [`SWITCH_DRAIN_ATTEMPTS`] times while
    /// a frame inside an expansion holds it. Whether it is drained (or was).
    fn drain_now(&mut self) -> bool {
        for _ in 0..SWITCH_DRAIN_ATTEMPTS {
            if !self.drain_step() {
                return true;
            }
            hooks::drain_pause();
        }
        false
    }

    /// Frees a kept translator whose code counts into the function set, so that a new set can
    /// be loaded (draining it first if needed). Errors (why): kdbt is on, or a frame inside an
    /// expansion held that translator's cache for a second.
    pub(crate) fn release_funccount(&mut self) -> Result<(), &'static str> {
        if self.on.is_some() {
            return Err("kdbt is on: switch it off first");
        }
        let counting = self.live.as_ref().is_some_and(|l| {
            l.translators
                .iter()
                .any(|t| crate::funcs::counts_in(t.spec()))
        });
        if counting {
            if !self.drain_now() {
                return Err(
                    "a frame inside an expansion still holds the funccount translator's \
                            cache; retry",
                );
            }
            self.release();
        }
        Ok(())
    }

    /// Unpublishes and frees the translator (drained: nothing can enter its cache any more).
    fn release(&mut self) {
        // SAFETY: waits for every hook that may still use it.
        unsafe { hooks::publish(core::ptr::null_mut()) };
        self.live = None;
    }

    /// Writes the stubs and private IDTs of every possible CPU from the native table and entry,
    /// translating each handler in the CPU's translator. Errors: `EIO` (unreadable IDT,
    /// untranslatable syscall entry), `ERANGE`.
    fn build(&mut self, native_idtr: Idtr, native_lstar: u64) -> Result {
        if self.live.is_none() {
            return Err(EIO);
        }
        if !idt::read_into(native_idtr, &mut self.native_idt) {
            pr_err!("native IDT limit {:#x} is not 256 gates\n", {
                native_idtr.limit
            });
            return Err(EIO);
        }
        for v in 0..GATES {
            self.native_gates[v] = !self.native_idt[v].interposable();
            self.untranslated_gates[v] = false;
        }
        self.native_lstar = native_lstar;
        let mut entries = KVec::with_capacity(GATES + 1, GFP_KERNEL)?;
        for gate in self.native_idt.iter().filter(|g| g.interposable()) {
            entries.push(gate.target(), GFP_KERNEL)?;
        }
        entries.push(native_lstar, GFP_KERNEL)?;
        if let Some(live) = &self.live {
            for t in live.translators.iter() {
                t.set_entry_points(&entries);
            }
        }
        self.write_stubs(Stubs::Switching)
    }

    /// Points every possible CPU's entries at its translator: the private IDT's interposed
    /// gates and the CPU's LSTAR value ([`CpuSlot::entry_lstar`]) lead to the handlers'
    /// translations (to the native handler where there is none), straight or through the
    /// stubs written here (`stats`, drk's gates). When switching, an untranslatable syscall
    /// entry is an error (`EIO`); after a flush the syscall entry then leads to the native
    /// entry. Errors: `EIO`, `ERANGE`.
    fn write_stubs(&mut self, why: Stubs) -> Result {
        let Some(live) = &self.live else {
            return Err(EIO);
        };
        let native_lstar = self.native_lstar;
        let n = self.cpus.len();
        let drk = live.per_cpu() || live.translators[0].spec().starts_with("drk");
        let counting = self.counting;
        let mut targets = [0u64; GATES];
        for cpu in (0..n).rev() {
            let index = live.index_of(cpu);
            let translator = &live.translators[index];
            if cpu == n - 1 || live.per_cpu() {
                for v in 0..GATES {
                    let gate = self.native_idt[v];
                    if gate.interposable() {
                        targets[v] = translator.translate(gate.target()).unwrap_or_else(|| {
                            self.untranslated_gates[v] = true;
                            gate.target()
                        });
                    }
                }
            }
            let syscall_tx = match translator.translate(native_lstar) {
                Some(tx) => tx,
                None if why == Stubs::AfterFlush => native_lstar,
                None => {
                    pr_err!(
                        "entry_SYSCALL_64 at {:#x} cannot be translated\n",
                        native_lstar
                    );
                    return Err(EIO);
                }
            };
            let drk_entry = self.trampoline(index) + TRAMPOLINE_BYTES as u64;
            let counters = self.stats.cpu(cpu);
            for v in 0..GATES {
                let gate = self.native_idt[v];
                if !gate.interposable() {
                    if why == Stubs::Switching {
                        self.idts[cpu * GATES + v] = gate;
                    }
                    continue;
                }
                if !counting && !drk {
                    // No CPU takes this gate meanwhile: none is switched yet, or every CPU is
                    // stopped with interrupts off (the gates that could still arrive, NMI and
                    // the like, stay native).
                    self.idts[cpu * GATES + v] = gate.with_target(targets[v]);
                    continue;
                }
                let at = self.stub(cpu, v);
                let counter = if counting {
                    &counters.vectors[v] as *const _ as u64
                } else {
                    0
                };
                let error_code = ERROR_CODE_VECTORS.contains(&v);
                let watch = |counter: Option<&AtomicU64>| InCache {
                    rip_at: if error_code { 8 } else { 0 },
                    start: self.region.exec(),
                    len: self.region.len() as u64,
                    counter: counter.map_or(0, |c| c as *const _ as u64),
                };
                let in_cache = match v {
                    _ if !counting => None,
                    PAGE_FAULT => Some(&counters.page_faults_in_cache),
                    v if v >= FIRST_INTERRUPT => Some(&counters.interrupts_in_cache),
                    _ => None,
                };
                let code = if drk {
                    let event = DrkEvent {
                        tag: v as u32 | if error_code { TAG_ERROR_CODE } else { 0 },
                        entry: drk_entry,
                    };
                    entry_stub::drk_stub(at, counter, targets[v], &watch(in_cache), &event)?
                } else {
                    let watch = in_cache.map(|c| watch(Some(c)));
                    entry_stub::counting_stub(at, counter, targets[v], watch.as_ref())?
                };
                // SAFETY: no CPU runs a stub: none is switched on yet (switching), or every
                // CPU is stopped (after a flush); writes are serialized by the control mutex
                // (&mut self).
                unsafe { self.region.write(at, &code) };
                // A gate to a stub may have led straight to a handler before (another mode).
                self.idts[cpu * GATES + v] = gate.with_target(at);
            }
            let entry_lstar = if counting {
                let at = self.stub(cpu, GATES);
                let counter = &counters.syscalls as *const _ as u64;
                let code = entry_stub::counting_stub(at, counter, syscall_tx, None)?;
                // SAFETY: as above.
                unsafe { self.region.write(at, &code) };
                at
            } else {
                syscall_tx
            };
            // Loaded by the CPU itself: at switch-on, or before it leaves this stop.
            self.cpus[cpu].entry_lstar.store(entry_lstar, Relaxed);
        }
        Ok(())
    }

    /// One step of the flush work while switched on: when a translator asked for a flush,
    /// stops every CPU, rewrites the code-cache addresses on every stack to native ones, and,
    /// if none is left that has no native equivalent, empties the caches and rewrites the
    /// entry stubs (module/flush.rs). Returns whether to try again later.
    pub(crate) fn flush_step(&mut self) -> bool {
        if flush::stubs_check_take() || self.retarget_pending {
            self.retarget_pending = false;
            if let Err(e) = self.retarget_stubs() {
                pr_warn!("retargeting the entry stubs failed ({:?}); retrying\n", e);
                self.retarget_pending = true;
                return true;
            }
        }
        let Some(live) = self.live.as_ref().filter(|_| self.on.is_some()) else {
            return false;
        };
        if !live.translators[0].flush_wanted() {
            return false;
        }
        let lo = self.region.exec() + self.head as u64;
        let hi = self.region.exec() + self.region.len() as u64;
        // SAFETY: the flush work runs in process context, natively; `self` is borrowed
        // mutably for the whole stop; only the stopped CPUs' callbacks use it meanwhile
        // (module/flush.rs).
        match unsafe { flush::rewrite_stacks(lo, hi, self, Then::Flush) } {
            Ok(outcome) => {
                self.flushes.words_rewritten += outcome.rewritten;
                if outcome.done {
                    self.flushes.done += 1;
                    false
                } else {
                    self.flushes.refused += 1;
                    true
                }
            }
            Err(e) => {
                pr_warn!("flush: stop_machine failed ({:?}); retrying\n", e);
                true
            }
        }
    }

    /// After an invalidation: if an entry stub leads to a handler translation that is gone
    /// (its block poisoned: a gate's handler or the syscall entry has no live block in some
    /// CPU's translator), stops every CPU and points the stubs at fresh translations. A stub
    /// left as it was still works, through the poisoned block's `int3`, at a trap per entry.
    /// Errors: `stop_machine`'s, or the stubs' encoding (`ERANGE`).
    pub(crate) fn retarget_stubs(&mut self) -> Result {
        if !self.stubs_stale() {
            return Ok(());
        }
        flush::stop_cpus_and(self, |interposer| interposer.write_stubs(Stubs::AfterFlush))?;
        self.flushes.stubs_retargeted += 1;
        Ok(())
    }

    fn stubs_stale(&self) -> bool {
        let Some(live) = self.live.as_ref().filter(|_| self.on.is_some()) else {
            return false;
        };
        live.translators.iter().any(|t| {
            let gone = |native| t.lookup(native).is_none();
            gone(self.native_lstar)
                || (0..GATES).any(|v| {
                    let gate = self.native_idt[v];
                    gate.interposable() && !self.untranslated_gates[v] && gone(gate.target())
                })
        })
    }

    /// Inside the flush's stop, every stack rewritten: empties the translators' caches and
    /// points the entry stubs at fresh translations. Returns whether it flushed.
    pub(crate) fn flush_now(&mut self) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        if !live.translators[0].flush() {
            return false;
        }
        // Cannot fail after a flush but for a stub's encoding (ERANGE), which worked at
        // switch-on with the same addresses.
        if self.write_stubs(Stubs::AfterFlush).is_err() {
            pr_err!("flush: rewriting the entry stubs failed\n");
        }
        true
    }

    /// Flushes of full caches while switched on.
    pub(crate) fn flushes(&self) -> Flushes {
        self.flushes
    }

    /// Switches back every CPU that switched.
    fn restore_all(&self) {
        let slots = &self.cpus;
        cpu::on_each_online(&|cpu| {
            let slot = &slots[cpu];
            if !slot.switched.swap(false, Relaxed) {
                return;
            }
            let native = Idtr {
                limit: slot.native_idt_limit.load(Relaxed) as u16,
                base: slot.native_idt_base.load(Relaxed),
            };
            // SAFETY: interrupts are off; these are the values this CPU ran before switching:
            // the kernel's own syscall entry and IDT.
            unsafe {
                syscall_entry::set(slot.native_lstar.load(Relaxed));
                idt::load(&native);
            }
        });
    }
}

impl Drop for Interposer {
    fn drop(&mut self) {
        // Only a forced unload gets here with a live translator (its pin makes rmmod fail
        // otherwise); the drain work was cancelled by the module first.
        if self.on.is_some() {
            self.restore_all();
        }
        if self.live.is_some() {
            self.release();
        }
    }
}

/// Whether canonical spec `spec` counts entries (has the option `stats`).
fn counts_entries(spec: &str) -> bool {
    spec.split_once(':')
        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == "stats"))
}

const _: () = assert!(CPU_BLOCK % 16 == 0 && TRAMPOLINE_BYTES % 16 == 0);
