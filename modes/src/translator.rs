//! The translator: one design's rulebook over one code cache in one environment.

use alloc::vec::Vec;

use crate::cache::{After, CodeCache, ExitKind, TxInfo};
use crate::clients::{self, Counter, Home, Stats};
use crate::env::{is_abs32, CodeMemory, DataMemory, Env};
use crate::funccount::{FuncSet, FuncSetError};
use crate::link;
use crate::rollback::{self, MachineState, RollbackError, RSP};
use crate::rules::{self, Config, TranslateError};
use crate::spec::{ModeSpec, SpecError};

/// Why a translator could not be set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitError {
    /// The mode spec is not a valid combination.
    Spec(SpecError),
    /// The code memory is too small (or not 16-byte aligned).
    CodeMemoryTooSmall,
    /// The data memory is smaller than [`clients::DATA_SIZE`], or not addressable with an
    /// absolute sign-extended 32-bit displacement.
    DataMemoryUnusable,
    /// The dispatcher entry is out of `call rel32` reach of the code cache.
    DispatcherOutOfReach,
    /// The red zone is not a multiple of 8 below 32 KiB.
    BadRedZone,
}

/// Where the next native instruction boundary is, seen from a code-cache address (for
/// delaying an interrupt to it, drk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextBoundary {
    /// The machine is at a boundary already: the rolled-back state is exact with nothing to
    /// undo but the PC.
    Here,
    /// Control reaches one of these tx addresses next, each a boundary.
    Static([Option<u64>; 2]),
    /// Only known at run time (indirect transfer, lookup, dispatcher): roll back instead.
    Dynamic,
}

/// A successful rollback: the state was rewritten; a frame slot may need writing back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// `(address, native value)` to store for the state to be fully native (drk `iretq` wrote
    /// a tx address into its frame as its last step).
    pub slot_fixup: Option<(u64, u64)>,
}

/// The translator. Not `Sync`: the kernel keeps it behind a lock (or one per CPU).
pub struct Translator<E: Env> {
    env: E,
    spec: ModeSpec,
    pub(crate) cache: CodeCache,
    pub(crate) data: DataMemory,
    cfg: Config,
    pub(crate) stats: Stats,
    /// Live landings ([`crate::landing`]): native target → tx address of the `jrcxz`
    /// displacement that [`Translator::invalidate`] rewrites.
    landings: alloc::collections::BTreeMap<u64, u64>,
    /// Live IC landings ([`crate::inline_cache`]): (native target, tx address of the `jrcxz`
    /// displacement), disabled like landings when the target's block is invalidated.
    inline_caches: alloc::collections::BTreeSet<(u64, u64)>,
    /// Native entry points the environment enters directly (sorted): their blocks are never
    /// poisoned by [`Translator::invalidate`].
    entry_points: Vec<u64>,
    /// Translated jump tables ([`crate::switch_table`]), and the next free data offset.
    tables: Vec<crate::switch_table::Table>,
    switch_next: usize,
    /// Buffers reused from block to block.
    scratch: rules::Scratch,
}

impl<E: Env> Translator<E> {
    /// Sets up a translator for `spec` over the given memories.
    pub fn new(
        spec: ModeSpec,
        env: E,
        code: CodeMemory,
        data: DataMemory,
    ) -> Result<Self, InitError> {
        spec.validate().map_err(InitError::Spec)?;
        if data.len() < clients::DATA_SIZE
            || !is_abs32(data.addr())
            || !is_abs32(data.addr() + data.len() as u64)
        {
            return Err(InitError::DataMemoryUnusable);
        }
        let red_zone = env.red_zone();
        if red_zone % 8 != 0 || red_zone >= 0x8000 {
            return Err(InitError::BadRedZone);
        }
        let cache = CodeCache::new(
            code,
            env.dispatcher_entry(),
            red_zone as u16,
            crate::landing::Layout::of(spec.design),
        )?;
        let cfg = Config {
            design: spec.design,
            opts: spec.options,
            red_zone: red_zone as u16,
            data_addr: data.addr(),
            counters: Home::resolve(env.counter_home(), data.addr()),
            breakpoints_native: env.breakpoints_run_natively(),
            funcs: None,
        };
        if spec.options.landings {
            crate::landing::clear(&data, cache.entries.landing_miss);
        }
        let scratch = rules::Scratch::new();
        Ok(Translator {
            env,
            spec,
            cache,
            data,
            cfg,
            stats: Stats::default(),
            landings: alloc::collections::BTreeMap::new(),
            inline_caches: alloc::collections::BTreeSet::new(),
            entry_points: Vec::new(),
            tables: Vec::new(),
            switch_next: crate::switch_table::OFF,
            scratch,
        })
    }

    /// Allocates the block and exit records up front, for at most `blocks` blocks and
    /// `exits` exits: translating then allocates only small objects and, every few hundred
    /// blocks, a chunk of 4,096 instruction maps or recipes (`chunked.rs`), never a block's
    /// own (the kernel's dispatcher runs with interrupts off, on the engine's arena). A block
    /// that would exceed either limit is treated like a full code cache. Errors: the heap
    /// cannot hold the records (nothing is limited then).
    pub fn reserve(
        &mut self,
        blocks: usize,
        exits: usize,
    ) -> Result<(), alloc::collections::TryReserveError> {
        self.cache.reserve(blocks, exits)
    }

    /// Writes every page of the records [`Translator::reserve`] reserved, so that filling
    /// them takes no first-touch page fault (user mode; the kernel's heap is present from
    /// allocation).
    pub fn touch_records(&mut self) {
        self.cache.touch_records();
    }

    /// Gives client `funccount` its functions (from now on each entry of one of them adds one
    /// to its counter). Errors: [`FuncSetError::ClientOff`] without `funccount` in the spec;
    /// [`FuncSetError::AfterTranslation`] once a block is translated (its entries would go
    /// uncounted).
    pub fn set_functions(&mut self, set: FuncSet) -> Result<(), FuncSetError> {
        if !self.spec.options.funccount {
            return Err(FuncSetError::ClientOff);
        }
        if !self.cache.blocks().is_empty() {
            return Err(FuncSetError::AfterTranslation);
        }
        self.cfg.funcs = Some(set);
        Ok(())
    }

    /// Client `funccount`'s functions, if given.
    pub fn functions(&self) -> Option<&FuncSet> {
        self.cfg.funcs.as_ref()
    }

    /// The mode it runs.
    pub fn spec(&self) -> ModeSpec {
        self.spec
    }

    /// The environment.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// The environment, mutably.
    pub fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    /// The code cache (blocks, exits, maps).
    pub fn cache(&self) -> &CodeCache {
        &self.cache
    }

    /// The tx address of native `pc`, translating its block if needed. A full cache is flushed
    /// first when the environment says that is safe.
    pub fn translate(&mut self, pc: u64) -> Result<u64, TranslateError> {
        if let Some(tx) = self.cache.lookup(pc) {
            return Ok(tx);
        }
        let attempt = |t: &mut Self| {
            if t.env.memory_low() {
                return Err(TranslateError::CacheFull);
            }
            let built = rules::translate_block(
                &mut t.env,
                &t.cache,
                &t.cfg,
                pc,
                t.switch_next,
                &mut t.scratch,
            )?;
            if !t.cache.records_fit(t.scratch.exits.len()) {
                return Err(TranslateError::CacheFull);
            }
            Ok(built)
        };
        let built = match attempt(self) {
            Err(TranslateError::CacheFull) if self.env.flush_is_safe() => {
                self.flush();
                attempt(self)?
            }
            other => other?,
        };
        let tx = built.block.tx_start;
        self.stats.blocks += 1;
        self.stats.native_insns += self.scratch.maps.len() as u64;
        self.stats.native_bytes += built.native_bytes;
        self.stats.bytes_emitted += self.scratch.e.code().len() as u64;
        self.stats.links += built.links;
        self.cache.commit(
            self.scratch.e.code(),
            built.block,
            &self.scratch.maps,
            &self.scratch.e.recipes,
            &self.scratch.exits,
        );
        // New tables start all unresolved; the block is unreachable until this returns.
        for table in &built.tables {
            for i in 0..table.entries as usize {
                table
                    .entry(&self.data, i)
                    .store(table.resolve, core::sync::atomic::Ordering::Relaxed);
            }
        }
        self.tables.extend(built.tables);
        self.switch_next = built.switch_next;
        Ok(tx)
    }

    /// Empties the code cache and the jumptable (the persistent entries stay). The caller
    /// guarantees no CPU executes in the cache and no stack or frame holds a cache address.
    pub fn flush(&mut self) {
        self.cache.flush();
        if self.spec.options.landings {
            crate::landing::clear(&self.data, self.cache.entries.landing_miss);
            self.landings.clear();
        }
        // IC landings and the sites they serve go with the cache; new blocks fill anew.
        self.inline_caches.clear();
        // Also with landings: `ret imm16` and drk's `iretq` to the kernel look up here.
        crate::jumptable::clear(&self.data);
        self.tables.clear();
        self.switch_next = crate::switch_table::OFF;
        self.stats.flushes += 1;
    }

    /// Names the native addresses the environment enters the cache at directly, outside any
    /// exit or lookup (the kernel's IDT and syscall entry stubs), replacing any earlier list.
    /// Their blocks run before the entry code has switched to the kernel's `%gs` and stack,
    /// where a trap cannot be taken: [`Translator::invalidate`] leaves them unpoisoned, and
    /// the environment points its entries at fresh translations instead.
    pub fn set_entry_points(&mut self, natives: &[u64]) {
        self.entry_points.clear();
        self.entry_points.extend_from_slice(natives);
        self.entry_points.sort_unstable();
        self.entry_points.dedup();
    }

    /// Blocks invalidated since the translator was made ([`Translator::invalidate`]).
    pub fn blocks_invalidated(&self) -> u64 {
        self.stats.blocks_invalidated
    }

    /// Invalidates the translations of native bytes `lo..hi` after the code there changed (the
    /// kernel patched its text), without a flush: code may be running in the cache.
    ///
    /// Every block copying any of those bytes becomes stale: it is no longer the translation
    /// of its start, direct exits chained to its start go back to their stubs, its jumptable
    /// entry is forgotten, and an `int3` is written over the first byte of every native
    /// instruction's translation in it. Returns those tx addresses: a CPU reaching one (a
    /// return address into the block, a lookup that raced with this) traps, and the
    /// environment's `int3` handler sends it to the native instruction, where the state is
    /// exactly the native state (see [`Translator::tx_info`]). A block starting at an entry
    /// point ([`Translator::set_entry_points`]) is stale but not poisoned: it runs its old code
    /// until the environment stops entering it.
    pub fn invalidate(&mut self, lo: u64, hi: u64) -> Vec<u64> {
        self.env.native_changed(lo, hi);
        let stale = self.cache.mark_stale(lo, hi);
        if stale.is_empty() {
            return Vec::new();
        }
        let starts: Vec<(u64, u64)> = stale
            .iter()
            .map(|&b| {
                let block = &self.cache.blocks()[b];
                (block.tx_start, block.native_start)
            })
            .collect();
        for exit in self.cache.exits() {
            if let ExitKind::Direct { field } = exit.kind {
                let to = link::rel32_target(&self.cache.mem, field);
                if exit.stub != 0 && starts.iter().any(|&(tx, _)| tx == to) {
                    link::patch_rel32(&self.cache.mem, field, exit.stub);
                }
            }
        }
        for table in &self.tables {
            for i in 0..table.entries as usize {
                let entry = table.entry(&self.data, i);
                let tx = entry.load(core::sync::atomic::Ordering::Relaxed);
                if starts.iter().any(|&(start, _)| start == tx) {
                    entry.store(table.resolve, core::sync::atomic::Ordering::Release);
                }
            }
        }
        for &(_, native) in &starts {
            crate::jumptable::forget(&self.data, native);
            if let Some(rel8) = self.landings.remove(&native) {
                self.cache.mem.write(rel8, &[crate::landing::DISABLED_REL8]);
            }
            // A site keeps its (disabled) IC landing: every target then goes to its lookup.
            let ics: Vec<(u64, u64)> = self
                .inline_caches
                .range((native, 0)..=(native, u64::MAX))
                .copied()
                .collect();
            for ic in ics {
                self.cache.mem.write(ic.1, &[crate::landing::DISABLED_REL8]);
                self.inline_caches.remove(&ic);
            }
        }
        let mut poisoned = Vec::new();
        for &b in &stale {
            let block = &self.cache.blocks()[b];
            if self.entry_points.binary_search(&block.native_start).is_ok() {
                continue;
            }
            for m in self.cache.insns(block) {
                poisoned.push(block.tx_start + m.tx_off as u64);
            }
        }
        for &tx in &poisoned {
            self.cache.mem.write(tx, &[0xcc]);
        }
        self.stats.blocks_invalidated += stale.len() as u64;
        poisoned
    }

    /// The statistics, with the emitted counters when they live in the data memory.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        if let Home::Abs(_) = self.cfg.counters {
            let read = |c: Counter| {
                self.data
                    .qword(clients::COUNTERS_OFF + 8 * c as usize)
                    .load(core::sync::atomic::Ordering::Relaxed)
            };
            s.insns_executed = read(Counter::Instructions);
            s.indirect_executed = read(Counter::IndirectBranches);
            s.inline_cache_hits = read(Counter::InlineCacheHits);
            s.jumptable_hits = read(Counter::JumptableHits) + s.inline_cache_hits;
        }
        s
    }

    /// Zeroes the statistics and the data-memory counters.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
        for c in 0..clients::COUNTERS {
            self.data
                .qword(clients::COUNTERS_OFF + 8 * c)
                .store(0, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Writes `bytes` over emitted code at `tx` through the writable alias: drk's interrupt
    /// delivery patches `int $vector` over the next boundary and restores it afterwards.
    ///
    /// # Safety
    /// The caller's protocol makes the write safe for code that may be running: only the
    /// patching CPU executes there meanwhile, or the write is a single byte.
    pub unsafe fn write_code(&mut self, tx: u64, bytes: &[u8]) {
        self.cache.mem.write(tx, bytes);
    }

    /// Reads emitted code at `tx` (through the writable alias).
    pub fn read_code(&self, tx: u64, buf: &mut [u8]) {
        self.cache.mem.read(tx, buf);
    }

    /// Everything known about code-cache address `tx`.
    pub fn tx_info(&self, tx: u64) -> Option<TxInfo> {
        self.cache.tx_info(tx)
    }

    /// The native address that code-cache address `tx` may be replaced with in a saved
    /// return address or interrupted frame: `tx` starts the translation of a native
    /// instruction (or an exit stub to it) and the machine state there is the native state.
    /// `None` anywhere else (inside an expansion, a lookup, a persistent entry).
    ///
    /// A flush rewrites every such word on the kernel's stacks (identity call/ret leaves
    /// code-cache return addresses there, BTKernel §3.3) before it empties the cache.
    pub fn native_at_boundary(&self, tx: u64) -> Option<u64> {
        let info = self.cache.tx_info(tx)?;
        let at_start = info.native_pc != 0 && info.offset == 0 && info.recipe.is_clean();
        (at_start && info.recipe.pc == crate::rollback::PcSource::Static(info.native_pc))
            .then_some(info.native_pc)
    }

    /// Rewrites `state` (taken at code-cache address `state.rip`) into the native state at the
    /// start of the native instruction being executed. `read` reads a qword of memory.
    pub fn rollback(
        &self,
        state: &mut MachineState,
        read: &mut dyn FnMut(u64) -> Option<u64>,
    ) -> Result<RolledBack, RollbackError> {
        let info = self
            .cache
            .tx_info(state.rip)
            .ok_or(RollbackError::NotInCache(state.rip))?;
        let map = |tx: u64| self.cache.tx_to_native(tx);
        rollback::apply(&info.recipe, state, read, &map)?;
        let slot_fixup = rollback::slot_fixup(&info.recipe, state.gpr[RSP], read, &map);
        Ok(RolledBack { slot_fixup })
    }

    /// Where the next native instruction boundary is after code-cache address `tx`.
    pub fn next_boundary(&self, tx: u64) -> Option<NextBoundary> {
        let info = self.cache.tx_info(tx)?;
        if info.recipe.is_clean() {
            return Some(NextBoundary::Here);
        }
        let Some((b, Some(i))) = info.place else {
            return Some(NextBoundary::Dynamic);
        };
        let block = &self.cache.blocks()[b];
        let dest = |exit: u32| match self.cache.exits()[exit as usize].kind {
            ExitKind::Direct { field } => Some(link::rel32_target(&self.cache.mem, field)),
            ExitKind::Indirect | ExitKind::Switch { .. } | ExitKind::InlineCache { .. } => None,
        };
        let insns = self.cache.insns(block);
        let fall = || match insns.get(i + 1) {
            Some(next) => Some(block.tx_start + next.tx_off as u64),
            None => block.fall_exit.and_then(dest),
        };
        let next = match insns[i].after {
            After::FallThrough => [fall(), None],
            After::FallThroughOr(exit) => [fall(), dest(exit)],
            After::Exit(exit) => [dest(exit), None],
            After::Dynamic => return Some(NextBoundary::Dynamic),
        };
        // A branch straight to code that runs natively leaves the cache: nothing there may
        // be patched, so such a boundary is only known at run time.
        if next.iter().flatten().any(|t| !self.cache.mem.contains(*t)) {
            return Some(NextBoundary::Dynamic);
        }
        Some(NextBoundary::Static(next))
    }

    /// The dispatcher's decision (see `link` for the calling convention): `slot` holds the
    /// native target; on return it holds the tx address to continue at, or the native target
    /// itself when it is to run natively. Chains a direct exit, fills the jumptable for an
    /// indirect one.
    pub fn dispatch(&mut self, exit_id: u64, slot: &mut u64) {
        self.stats.dispatches += 1;
        let landing_miss = exit_id == crate::landing::MISS_ID as i64 as u64;
        if landing_miss
            || matches!(self.cache.exit(exit_id), Some((_, exit))
                if matches!(exit.kind, ExitKind::Indirect | ExitKind::InlineCache { .. }))
        {
            self.stats.jumptable_misses += 1;
        }
        let native = *slot;
        if self.env.run_natively(native) || self.cache.contains(native) {
            self.inline_cache_to_lookup(exit_id);
            return;
        }
        let tx = match self.translate(native) {
            Ok(tx) => tx,
            Err(TranslateError::Untranslatable { .. }) => {
                self.stats.untranslatable += 1;
                self.inline_cache_to_lookup(exit_id);
                return;
            }
            Err(TranslateError::CacheFull) => {
                self.stats.cache_full_native += 1;
                self.inline_cache_to_lookup(exit_id);
                return;
            }
        };
        if landing_miss {
            self.add_landing(native, tx);
        }
        // Looked up after translating: a flush in between makes the id stale.
        if let Some((_, exit)) = self.cache.exit(exit_id) {
            match exit.kind {
                ExitKind::Direct { field }
                    if self.spec.options.chaining && exit.target == native =>
                {
                    link::patch_rel32(&self.cache.mem, field, tx);
                    self.stats.links += 1;
                }
                ExitKind::Switch { data_off } => self.resolve_switch(data_off as usize, native, tx),
                ExitKind::InlineCache { field } => {
                    self.fill_inline_cache(field, exit.stub, native, tx)
                }
                ExitKind::Indirect if self.spec.options.jumptable => {
                    match crate::jumptable::insert(&self.data, native, tx) {
                        crate::jumptable::Insert::Added => self.stats.jumptable_inserts += 1,
                        crate::jumptable::Insert::Conflict => self.stats.jumptable_conflicts += 1,
                        crate::jumptable::Insert::Present => {}
                    }
                }
                _ => {}
            }
        }
        *slot = tx;
    }

    /// Points every entry of the table at `data_off` whose native entry is `native` at `tx`
    /// (the native table read through [`Env::read_data`]).
    fn resolve_switch(&mut self, data_off: usize, native: u64, tx: u64) {
        let Some(table) = self.tables.iter().find(|t| t.data_off == data_off).copied() else {
            return;
        };
        for i in 0..table.entries as usize {
            let mut q = [0u8; 8];
            if self
                .env
                .read_data(table.native_table + 8 * i as u64, &mut q)
                != 8
            {
                continue;
            }
            if u64::from_le_bytes(q) == native {
                table
                    .entry(&self.data, i)
                    .store(tx, core::sync::atomic::Ordering::Release);
                self.stats.switch_entries += 1;
            }
        }
    }

    /// Emits a landing for `native` → `tx` in front of its bucket's chain, unless it has a
    /// live one. With no room left in the cache the target keeps missing, which is slower,
    /// not wrong.
    fn add_landing(&mut self, native: u64, tx: u64) {
        if self.landings.contains_key(&native) {
            return;
        }
        let at = self.cache.next_tx();
        let next = crate::landing::head(&self.data, native);
        let hits = Some((self.cfg.counters, &[Counter::JumptableHits][..]))
            .filter(|_| self.spec.options.indirect);
        let mut e = crate::emit::Emitter::new(at);
        let layout = crate::landing::Layout::of(self.spec.design);
        let Ok(rel8) =
            crate::landing::emit(&mut e, native, tx, next, self.cfg.red_zone, hits, layout)
        else {
            return;
        };
        e.finish();
        if !self.cache.append_landing(e.code(), &e.recipes) {
            return;
        }
        self.landings.insert(native, rel8);
        self.stats.jumptable_inserts += 1;
        if next != self.cache.entries.landing_miss {
            self.stats.jumptable_conflicts += 1;
        }
        crate::landing::push_front(&self.data, native, at);
    }

    /// Fills the inline cache whose site jump has its rel32 field at `field` and still leads
    /// to its fill stub `stub`: emits the IC landing `native` → `tx` at the end of the code
    /// cache, then points the field at it with one atomic store ([`crate::inline_cache`]).
    /// With no room left, the field goes to the site's lookup: the IC stays empty.
    fn fill_inline_cache(&mut self, field: u64, stub: u64, native: u64, tx: u64) {
        if link::rel32_target(&self.cache.mem, field) != stub {
            // Another CPU's dispatch filled it first (or gave it up).
            return;
        }
        let lookup = crate::inline_cache::lookup_of(field);
        let at = self.cache.next_tx();
        let hits = Some(self.cfg.counters).filter(|_| self.spec.options.indirect);
        let layout = crate::landing::Layout::of(self.spec.design);
        let mut e = crate::emit::Emitter::new(at);
        let emitted = crate::inline_cache::emit_landing(
            &mut e,
            native,
            tx,
            lookup,
            self.cfg.red_zone,
            hits,
            layout,
        );
        let Ok(rel8) = emitted else {
            link::patch_rel32(&self.cache.mem, field, lookup);
            return;
        };
        e.finish();
        if !self.cache.append_landing(e.code(), &e.recipes) {
            link::patch_rel32(&self.cache.mem, field, lookup);
            return;
        }
        self.inline_caches.insert((native, rel8));
        self.stats.inline_cache_fills += 1;
        // The IC landing is complete before the field leads to it.
        link::patch_rel32(&self.cache.mem, field, at);
    }

    /// Gives up the inline cache of exit `exit_id`, if it is one still leading to its fill
    /// stub, for a target the cache cannot serve (it runs natively, or was not translated):
    /// the site jumps straight to its lookup from now on, as without the option.
    fn inline_cache_to_lookup(&mut self, exit_id: u64) {
        if let Some((_, exit)) = self.cache.exit(exit_id) {
            if let ExitKind::InlineCache { field } = exit.kind {
                if link::rel32_target(&self.cache.mem, field) == exit.stub {
                    let lookup = crate::inline_cache::lookup_of(field);
                    link::patch_rel32(&self.cache.mem, field, lookup);
                }
            }
        }
    }

    /// [`Translator::dispatch`] for an assembly trampoline.
    ///
    /// # Safety
    /// `slot` must point to the target slot of a live dispatcher frame (valid, aligned, not
    /// otherwise accessed during the call).
    pub unsafe fn dispatch_raw(&mut self, exit_id: u64, slot: *mut u64) {
        // SAFETY: the caller guarantees `slot` is a valid, exclusive qword.
        self.dispatch(exit_id, unsafe { &mut *slot })
    }
}

impl From<SpecError> for InitError {
    fn from(e: SpecError) -> Self {
        InitError::Spec(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;
    impl Env for NoEnv {
        fn read_native(&mut self, _: u64, _: &mut [u8]) -> usize {
            0
        }
        fn red_zone(&self) -> u32 {
            0
        }
        fn dispatcher_entry(&self) -> u64 {
            0
        }
    }

    #[test]
    fn a_translator_can_move_behind_a_kernel_lock() {
        fn assert_send<T: Send>() {}
        assert_send::<Translator<NoEnv>>();
    }
}
