// SPDX-License-Identifier: GPL-2.0

//! The engine's heap: a fixed arena the module hands over at load, managed by `talc`.
//!
//! The dispatcher translates with interrupts off, entered from translated kernel code that may
//! hold any kernel lock (slab, page allocator); calling kmalloc there deadlocks as soon as the
//! interrupted code holds the lock kmalloc needs while another CPU's dispatcher waits for it.
//! So the engine never calls the kernel's allocators: everything it allocates comes from this
//! arena (DESIGN §4: the dispatcher allocates from preallocated pools). The lock is an
//! [`IrqSpinLock`], never held across a call out of the allocator.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use talc::base::Talc;
use talc::source::Manual;
use talc::DefaultBinning;

use crate::irq_lock::IrqSpinLock;

/// Bytes of the arena that must stay free for translation to go on (see [`low`]).
const RESERVE: usize = 2 << 20;

/// The arena allocator.
pub(crate) struct Heap {
    lock: IrqSpinLock,
    talc: UnsafeCell<Talc<Manual, DefaultBinning>>,
    size: AtomicUsize,
    used: AtomicUsize,
}

// SAFETY: every access to `talc` holds `lock`.
unsafe impl Sync for Heap {}

impl Heap {
    const fn new() -> Self {
        Heap {
            lock: IrqSpinLock::new(),
            talc: UnsafeCell::new(Talc::new(Manual)),
            size: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the allocator with interrupts off and the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut Talc<Manual, DefaultBinning>) -> R) -> R {
        let _held = self.lock.lock_forever();
        // SAFETY: the lock is held: this is the only reference.
        f(unsafe { &mut *self.talc.get() })
    }
}

#[global_allocator]
pub(crate) static HEAP: Heap = Heap::new();

// SAFETY: talc returns blocks fitting `layout` from the claimed arena or null, and takes back
// exactly what it gave (GlobalAlloc's contract on the callers).
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded GlobalAlloc contract.
        let p = self.with(|t| unsafe { t.allocate(layout) });
        match p {
            Some(p) => {
                self.used.fetch_add(layout.size(), Ordering::Relaxed);
                p.as_ptr()
            }
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded GlobalAlloc contract.
        self.with(|t| unsafe { t.deallocate(ptr, layout) });
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

/// Whether the arena is nearly full (translation should stop rather than fail mid-way).
pub(crate) fn low() -> bool {
    let size = HEAP.size.load(Ordering::Relaxed);
    HEAP.used.load(Ordering::Relaxed) + RESERVE > size
}

/// (arena bytes, bytes in use).
pub(crate) fn usage() -> (usize, usize) {
    (
        HEAP.size.load(Ordering::Relaxed),
        HEAP.used.load(Ordering::Relaxed),
    )
}

/// Hands the engine its arena: `size` bytes at `base`. Returns false when the arena is too
/// small to hold the allocator's metadata, or when an arena was given already.
///
/// # Safety
/// `base..base+size` is writable memory owned by the engine until the module unloads, and
/// nothing allocated from it is used after that.
#[no_mangle]
pub unsafe extern "C" fn kdbt_engine_heap_init(base: *mut u8, size: usize) -> bool {
    if HEAP.size.load(Ordering::Relaxed) != 0 {
        return false;
    }
    // SAFETY: the caller's contract.
    let claimed = HEAP.with(|t| unsafe { t.claim(base, size) });
    if claimed.is_none() {
        return false;
    }
    HEAP.size.store(size, Ordering::Relaxed);
    true
}
