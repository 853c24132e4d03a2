//! `lat_pagefault` and `lat_mmap`: lmbench's cost of faulting in a page of a mapped file and
//! of mapping, touching and unmapping a file.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::Context;

use super::{Bench, Env, Kind, Spec};
use crate::record::params;
use crate::sys::{self, Mapping};

/// File size of `lat_pagefault`: 4 MiB (1024 pages), enough pages to amortize the mmap and
/// munmap around them, small for a 1 GiB guest.
const FAULT_FILE: usize = 4 << 20;

/// File size of `lat_mmap`: 1 MiB.
const MMAP_FILE: usize = 1 << 20;

/// lmbench's `lat_mmap` stores one byte every 16 KiB of the mapping's first tenth
/// (`domapping` in src/lat_mmap.c, without `-r`).
const MMAP_STRIDE: usize = 16 << 10;

pub(super) fn specs() -> Vec<Spec> {
    let pages = (FAULT_FILE / sys::page_size()) as u64;
    vec![
        Spec::new(
            "lat_pagefault",
            params([
                ("file_bytes", FAULT_FILE.into()),
                ("pages", pages.into()),
                ("access", "write, private mapping".into()),
            ]),
            // Normalized by the faults counted in each run, not by a fixed count.
            Kind::Latency { ops_per_iter: 1 },
            |env| {
                Ok(Box::new(PageFault {
                    file: scratch_file(env, "lat_pagefault.file", FAULT_FILE, false)?,
                    faults: 0,
                    faults_per_map: 0.0,
                }))
            },
        ),
        Spec::new(
            "lat_mmap",
            params([
                ("file_bytes", MMAP_FILE.into()),
                ("stride_bytes", MMAP_STRIDE.into()),
                ("access", "write, shared mapping, first tenth".into()),
            ]),
            Kind::Latency { ops_per_iter: 1 },
            |env| {
                Ok(Box::new(Mmap {
                    file: scratch_file(env, "lat_mmap.file", MMAP_FILE, true)?,
                }))
            },
        ),
    ]
}

/// A file of `len` non-zero bytes, written through so its pages are in the page cache,
/// opened read-only or, with `writable`, read-write.
fn scratch_file(env: &Env, name: &str, len: usize, writable: bool) -> anyhow::Result<OwnedFd> {
    let path = env.dir.join(name);
    std::fs::write(&path, vec![0xa5u8; len])
        .with_context(|| format!("create {}", path.display()))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .open(&path)?;
    Ok(file.into())
}

/// Maps the file privately, stores one byte in every page, unmaps; each iteration maps
/// afresh so every page faults again. lmbench reads a shared mapping instead, but on current
/// kernels a read fault maps many cached pages at once (fault-around, large folios: two faults
/// for the whole 4 MiB file here), so it would mostly time mmap and munmap. A store to a
/// private file mapping always takes one copy-on-write fault per page. The result is per fault
/// as counted by `getrusage`, with mmap and munmap amortized over the 1024 faults.
struct PageFault {
    file: OwnedFd,
    faults: u64,
    faults_per_map: f64,
}

impl Bench for PageFault {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let fd = self.file.as_fd();
        let page = sys::page_size();
        let before = sys::minor_faults()?;
        let ns = super::time_loop(iters, || {
            let m = Mapping::file_private(fd, FAULT_FILE)?;
            for off in (0..FAULT_FILE).step_by(page) {
                // SAFETY: file_private maps read-write.
                unsafe { m.poke(off, 1) };
            }
            m.unmap()?;
            Ok(())
        })?;
        self.faults = sys::minor_faults()? - before;
        anyhow::ensure!(
            self.faults > 0,
            "touching {iters} fresh mappings took no page fault"
        );
        self.faults_per_map = self.faults as f64 / iters as f64;
        Ok(ns)
    }

    fn measured_ops(&self) -> Option<u64> {
        Some(self.faults)
    }

    fn diagnostics(&self) -> Option<String> {
        Some(format!(
            "{:.1} page faults per mapping",
            self.faults_per_map
        ))
    }
}

/// As lmbench: maps the file shared and read-write, stores one byte every 16 KiB of its first
/// tenth, unmaps; one operation is the whole cycle.
struct Mmap {
    file: OwnedFd,
}

impl Bench for Mmap {
    fn run(&mut self, iters: u64) -> anyhow::Result<u64> {
        let fd = self.file.as_fd();
        super::time_loop(iters, || {
            let m = Mapping::file(fd, MMAP_FILE, libc::PROT_READ | libc::PROT_WRITE)?;
            for off in (0..MMAP_FILE / 10).step_by(MMAP_STRIDE) {
                // SAFETY: the mapping is read-write.
                unsafe { m.poke(off, 1) };
            }
            m.unmap()?;
            Ok(())
        })
    }
}
