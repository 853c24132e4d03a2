//! A global allocator that keeps the dispatcher off the program's allocator.
//!
//! In user space the translated program and the dispatcher share one process. When translated
//! code reaches the dispatcher from inside `malloc` (a lock held, a branch to code not yet
//! translated), a dispatcher that called `malloc` itself would deadlock. The kernel's
//! dispatcher allocates from preallocated pools for the same reason. Here: while the thread
//! is in the dispatcher, allocations come from a private bump arena (never reused: tests are
//! short), and frees of arena memory are no-ops; everything else goes to the system allocator.
//! System memory freed inside the dispatcher (a buffer the translator keeps from block to
//! block, grown during a dispatch) is leaked rather than handed to `free`, for the same
//! reason.
//! The `user` feature installs it as the global allocator of the test binaries.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::System;

/// Reserved (not committed) size of the arena.
const ARENA_SIZE: u64 = 1 << 36;

static ARENA_BASE: AtomicU64 = AtomicU64::new(0);
static ARENA_NEXT: AtomicU64 = AtomicU64::new(0);

/// The allocator (see the module doc).
pub struct DispatchAwareAlloc;

fn arena_base() -> u64 {
    let base = ARENA_BASE.load(Ordering::Acquire);
    if base != 0 {
        return base;
    }
    // SAFETY: reserving address space; pages are committed on first touch.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            ARENA_SIZE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert!(p != libc::MAP_FAILED, "dispatcher arena");
    match ARENA_BASE.compare_exchange(0, p as u64, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            ARENA_NEXT.store(p as u64, Ordering::Release);
            p as u64
        }
        Err(other) => {
            // SAFETY: our own fresh mapping, lost the race: unmap it.
            unsafe { libc::munmap(p, ARENA_SIZE as usize) };
            other
        }
    }
}

fn in_arena(ptr: *mut u8) -> bool {
    let base = ARENA_BASE.load(Ordering::Acquire);
    base != 0 && (ptr as u64).wrapping_sub(base) < ARENA_SIZE
}

fn arena_alloc(layout: Layout) -> *mut u8 {
    let base = arena_base();
    while ARENA_NEXT.load(Ordering::Acquire) < base {
        core::hint::spin_loop();
    }
    let align = layout.align().max(16) as u64;
    let mut cur = ARENA_NEXT.load(Ordering::Relaxed);
    loop {
        let start = (cur + align - 1) & !(align - 1);
        let end = start + layout.size() as u64;
        if end > base + ARENA_SIZE {
            return core::ptr::null_mut();
        }
        match ARENA_NEXT.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return start as *mut u8,
            Err(now) => cur = now,
        }
    }
}

// SAFETY: every pointer handed out is either the system allocator's (freed there) or a fresh,
// aligned, exclusive range of the arena (never handed out twice).
unsafe impl GlobalAlloc for DispatchAwareAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if super::in_dispatch() {
            arena_alloc(layout)
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !in_arena(ptr) && !super::in_dispatch() {
            // SAFETY: not arena memory, so the system allocator's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(ptr) && !super::in_dispatch() {
            // SAFETY: system memory, outside the dispatcher.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a valid layout of the new size (GlobalAlloc's contract for realloc).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: forwarded to our own alloc/dealloc.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[global_allocator]
static GLOBAL: DispatchAwareAlloc = DispatchAwareAlloc;
