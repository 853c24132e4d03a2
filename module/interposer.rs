// SPDX-License-Identifier: GPL-2.0

//! Entry interposition on every online CPU (DESIGN §4; BTKernel §3.2, DRK §4): a private IDT per
//! CPU whose interposable gates enter the code cache, and `MSR_LSTAR` at the code cache's
//! syscall entry; switch-off restores both. Until the translator is wired in, the code behind
//! them is the identity stubs of module/entry_stub.rs (count, then jump to the native handler).
//!
//! Switching is all-or-nothing: every CPU checks that it runs the native IDT and LSTAR the
//! tables were built from before switching, and if any CPU cannot, every CPU that did is
//! switched back before the ioctl returns `EIO`. While switched on, kdbt.ko pins itself, so
//! `rmmod` answers `EBUSY` rather than unmapping code the CPUs enter.
//!
//! When the code cache can be freed: identity stubs only jump (nothing they run leaves a return
//! address into the cache) and run with interrupts off, so once every CPU has taken the
//! switch-off IPI (which it can only take with interrupts on, i.e. outside a stub) no CPU is in
//! or can return into the cache.

use crate::code_cache::{CodeCache, WxProbe, PAGE};
use crate::control_abi::SPEC_MAX;
use crate::cpu::{self, ModulePin};
use crate::entry_stub::{self, STUB_BYTES};
use crate::idt::{self, Gate, Idtr, GATES};
use crate::stats::Stats;
use crate::syscall_entry;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

/// Code cache bytes per CPU: a stub per gate, then the syscall stub.
const CPU_BLOCK: usize = (GATES + 1) * STUB_BYTES;
/// Bytes at the end of the cache kept free for the W^X probe.
const PROBE_BYTES: usize = 64;

/// What one CPU saved when it switched, read back when it switches off.
#[derive(Default)]
struct CpuSlot {
    switched: AtomicBool,
    failed: AtomicBool,
    native_lstar: AtomicU64,
    native_idt_base: AtomicU64,
    native_idt_limit: AtomicU32,
}

/// The switched-on state.
struct On {
    /// Canonical mode spec, NUL-padded.
    mode: [u8; SPEC_MAX],
    /// Keeps kdbt.ko loaded while CPUs enter its code cache.
    _pin: ModulePin,
}

/// Entries of every CPU, the code they lead to, and their counters. One instance, behind the
/// control mutex.
pub(crate) struct Interposer {
    /// Entry stubs, a block of [`CPU_BLOCK`] bytes per possible CPU.
    cache: CodeCache,
    /// Counters the stubs increment (dropped after the cache that references them).
    stats: Stats,
    /// The private IDTs, [`GATES`] gates per possible CPU; never reallocated (CPUs read them).
    idts: KVec<Gate>,
    /// Per possible CPU.
    cpus: KVec<CpuSlot>,
    /// `Some` while switched on.
    on: Option<On>,
    /// Which gates the last switch-on kept native.
    native_gates: [bool; GATES],
}

/// Why a switch-on was refused.
pub(crate) enum OnError {
    /// Already on, with this mode.
    AlreadyOn,
    /// Failed with this errno; nothing is switched.
    Failed(Error),
}

impl Interposer {
    /// Allocates everything switching needs (so switching itself allocates nothing).
    /// Errors: `ENOMEM`, `ERANGE` when the code cache is out of rel32 reach of kernel text.
    pub(crate) fn new() -> Result<Self> {
        let n = cpu::possible();
        let mut cpus = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            cpus.push(CpuSlot::default(), GFP_KERNEL)?;
        }
        Ok(Interposer {
            cache: CodeCache::new(n * CPU_BLOCK + PROBE_BYTES)?,
            stats: Stats::new(n)?,
            idts: KVec::from_elem(Gate::default(), n * GATES, GFP_KERNEL)?,
            cpus,
            on: None,
            native_gates: [false; GATES],
        })
    }

    /// The mode switched on, or `None` when off.
    pub(crate) fn mode(&self) -> Option<&str> {
        let on = self.on.as_ref()?;
        let len = on.mode.iter().position(|&b| b == 0).unwrap_or(SPEC_MAX);
        Some(core::str::from_utf8(&on.mode[..len]).unwrap_or("?"))
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The code cache.
    pub(crate) fn cache(&self) -> &CodeCache {
        &self.cache
    }

    /// Vectors whose gates the last switch-on kept native.
    pub(crate) fn native_gates(&self) -> impl Iterator<Item = usize> + '_ {
        (0..GATES).filter(|&v| self.native_gates[v])
    }

    /// Probes the code cache's W^X layout (see [`CodeCache::probe`]) on its reserved tail.
    pub(crate) fn probe(&self) -> WxProbe {
        self.cache.probe(PROBE_BYTES)
    }

    /// tx address of the stub of `vector` (or of the syscall entry, `vector == GATES`) of `cpu`.
    pub(crate) fn stub(&self, cpu: usize, vector: usize) -> u64 {
        self.cache.exec() + (cpu * CPU_BLOCK + vector * STUB_BYTES) as u64
    }

    /// Switches every online CPU's entries into the code cache, recording `mode` (canonical).
    pub(crate) fn switch_on(&mut self, mode: &str) -> Result<(), OnError> {
        if self.on.is_some() {
            return Err(OnError::AlreadyOn);
        }
        let native_idtr = idt::current();
        let native_lstar = syscall_entry::current();
        self.build(native_idtr, native_lstar)
            .map_err(OnError::Failed)?;
        let this = &*self;
        cpu::on_each_online(&|cpu| {
            let slot = &this.cpus[cpu];
            if idt::current() != native_idtr || syscall_entry::current() != native_lstar {
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
            // and each gate leads to the native handler or to a stub ending in it (`build`).
            unsafe { idt::load(&private) };
            // SAFETY: the syscall stub spills rax into RIP-relative memory, touches neither the
            // stack nor GS, and jumps to the native entry_SYSCALL_64 (`build`).
            unsafe { syscall_entry::set(this.stub(cpu, GATES)) };
            slot.switched.store(true, Relaxed);
        });
        if self.cpus.iter().any(|s| s.failed.swap(false, Relaxed)) {
            self.restore_all();
            pr_err!("switch-on refused: a CPU did not run the native IDT and syscall entry\n");
            return Err(OnError::Failed(EIO));
        }
        let mut text = [0u8; SPEC_MAX];
        let n = mode.len().min(SPEC_MAX - 1);
        text[..n].copy_from_slice(&mode.as_bytes()[..n]);
        self.on = Some(On {
            mode: text,
            _pin: ModulePin::take(),
        });
        Ok(())
    }

    /// Restores every CPU's native entries. Errors: `EALREADY` (the ABI's off-while-off errno)
    /// when not switched on.
    pub(crate) fn switch_off(&mut self) -> Result {
        if self.on.is_none() {
            return Err(Error::from_errno(-crate::control_abi::OFF_WHILE_OFF_ERRNO));
        }
        self.restore_all();
        // Every CPU has left the stubs (module docs): the module may go now.
        self.on = None;
        Ok(())
    }

    /// Writes the stubs and private IDTs of every possible CPU from the native table and entry.
    fn build(&mut self, native_idtr: Idtr, native_lstar: u64) -> Result {
        let n = self.cpus.len();
        let (first, _) = self.idts.split_at_mut(GATES);
        if !idt::read_into(native_idtr, first) {
            pr_err!("native IDT limit {:#x} is not 256 gates\n", {
                native_idtr.limit
            });
            return Err(EIO);
        }
        for v in 0..GATES {
            self.native_gates[v] = !self.idts[v].interposable();
        }
        for cpu in 0..n {
            let counters = self.stats.cpu(cpu);
            let scratch = &counters.scratch as *const _ as u64;
            for v in 0..GATES {
                let gate = self.idts[v];
                let entry = if gate.interposable() {
                    let at = self.stub(cpu, v);
                    let counter = &counters.vectors[v] as *const _ as u64;
                    let code = entry_stub::counting_stub(at, scratch, counter, gate.target())?;
                    // SAFETY: no CPU is switched on (checked by the caller), so none runs a
                    // stub; writes are serialized by the control mutex (&mut self).
                    unsafe { self.cache.write(at, &code) };
                    gate.with_target(at)
                } else {
                    gate
                };
                self.idts[cpu * GATES + v] = entry;
            }
            let at = self.stub(cpu, GATES);
            let counter = &counters.syscalls as *const _ as u64;
            let code = entry_stub::counting_stub(at, scratch, counter, native_lstar)?;
            // SAFETY: as above.
            unsafe { self.cache.write(at, &code) };
        }
        Ok(())
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
        // Only a forced unload gets here while on (the pin makes rmmod fail otherwise).
        if self.on.is_some() {
            self.restore_all();
        }
    }
}

const _: () = assert!(CPU_BLOCK % 64 == 0 && PAGE % STUB_BYTES == 0);
