// SPDX-License-Identifier: GPL-2.0

//! Statistics: per-CPU counters that code in the cache increments, rendered as text for
//! `<debugfs>/kdbt/stats` (per CPU and total).
//!
//! The counters live in the module-area data area so entry code reaches them RIP-relative;
//! each CPU has its own block, incremented only by that CPU's entry code with interrupts off,
//! so a plain `inc` is exact (see module/entry_stub.rs).

use crate::code_cache::DataArea;
use crate::debugfs::TextWriter;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
use kernel::prelude::*;

/// IDT vectors.
pub(crate) const VECTORS: usize = 256;
/// First vector of external and system interrupts (below it: exceptions).
pub(crate) const FIRST_INTERRUPT: usize = 32;

/// One CPU's counters (one cache-line-aligned block per CPU).
#[repr(C, align(64))]
pub(crate) struct CpuCounters {
    /// `syscall` instructions entered through the interposed `MSR_LSTAR`.
    pub(crate) syscalls: AtomicU64,
    /// Interrupts (vectors from [`FIRST_INTERRUPT`]) that arrived while the CPU ran code in
    /// the code cache.
    pub(crate) interrupts_in_cache: AtomicU64,
    /// Page faults at code-cache addresses (translated uaccess and the like).
    pub(crate) page_faults_in_cache: AtomicU64,
    /// Entries through each interposed IDT gate (exceptions, interrupts).
    pub(crate) vectors: [AtomicU64; VECTORS],
}

/// The counters of every possible CPU.
pub(crate) struct Stats {
    cpus: DataArea<CpuCounters>,
}

impl Stats {
    /// Zeroed counters for `cpus` CPUs. Errors: `ENOMEM`.
    pub(crate) fn new(cpus: usize) -> Result<Self> {
        Ok(Stats {
            cpus: DataArea::zeroed(cpus)?,
        })
    }

    /// The counters of `cpu`.
    pub(crate) fn cpu(&self, cpu: usize) -> &CpuCounters {
        &self.cpus.get()[cpu]
    }

    /// Zeroes every counter. An entry racing the reset on another CPU may survive it.
    pub(crate) fn reset(&self) {
        for c in self.cpus.get() {
            c.syscalls.store(0, Relaxed);
            c.interrupts_in_cache.store(0, Relaxed);
            c.page_faults_in_cache.store(0, Relaxed);
            for v in &c.vectors {
                v.store(0, Relaxed);
            }
        }
    }

    /// Writes the text form: one line per online-or-counted CPU, a total line, then one line per
    /// vector that was entered, with its per-CPU counts.
    pub(crate) fn render(&self, w: &mut TextWriter<'_>) {
        let cpus = self.cpus.get();
        let (mut sys, mut exc, mut irq, mut irq_tx, mut pf_tx) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for (n, c) in cpus.iter().enumerate() {
            let s = c.syscalls.load(Relaxed);
            let e: u64 = c.vectors[..FIRST_INTERRUPT]
                .iter()
                .map(|v| v.load(Relaxed))
                .sum();
            let i: u64 = c.vectors[FIRST_INTERRUPT..]
                .iter()
                .map(|v| v.load(Relaxed))
                .sum();
            if !crate::cpu::online(n) && s + e + i == 0 {
                continue;
            }
            let (it, pt) = (
                c.interrupts_in_cache.load(Relaxed),
                c.page_faults_in_cache.load(Relaxed),
            );
            let _ = writeln!(
                w,
                "cpu{n}: syscalls {s} exceptions {e} interrupts {i} interrupts_in_cache {it} \
                 page_faults_in_cache {pt}"
            );
            (sys, exc, irq, irq_tx, pf_tx) = (sys + s, exc + e, irq + i, irq_tx + it, pf_tx + pt);
        }
        let _ = writeln!(
            w,
            "total: syscalls {sys} exceptions {exc} interrupts {irq} interrupts_in_cache \
             {irq_tx} page_faults_in_cache {pf_tx}"
        );
        for v in 0..VECTORS {
            let total: u64 = cpus.iter().map(|c| c.vectors[v].load(Relaxed)).sum();
            if total == 0 {
                continue;
            }
            let _ = write!(w, "vector {v:#04x}: total {total}");
            for (n, c) in cpus.iter().enumerate() {
                let count = c.vectors[v].load(Relaxed);
                if count != 0 {
                    let _ = write!(w, " cpu{n} {count}");
                }
            }
            let _ = writeln!(w);
        }
    }
}
