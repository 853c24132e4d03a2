//! The environment: everything the translator needs from the world it runs in.
//!
//! The translator makes no OS call. The kernel module and the user-mode executor each
//! implement [`Env`] and hand over two pieces of memory:
//!
//! - [`CodeMemory`]: the code cache, one range of pages seen at two addresses, `tx_base`
//!   (executable; what emitted code is encoded for) and a writable alias (what the translator
//!   writes through). W^X: the translator never needs the executable mapping to be writable.
//!   It must lie within ±2 GiB of the dispatcher entry (exit paths `call rel32` it).
//! - [`DataMemory`]: the jumptable and the counters. Emitted code addresses it with absolute
//!   sign-extended 32-bit displacements (`[rcx*8 + disp32]`), so it must lie in the top or the
//!   bottom 2 GiB of the address space: the module area or the module's `.bss` in the kernel,
//!   a `MAP_32BIT` mapping in user space.
//!
//! Scratch space: inserted code spills to the stack only, below `rsp - red_zone`; the kernel is
//! built without a red zone (0), user code has 128 bytes that scratch pushes step over. There
//! is no per-CPU scratch slot: the only per-CPU data the emitted code may touch are the client
//! counters, and only when the environment homes them behind `%gs`
//! ([`CounterHome::Gs`]; in user space `arch_prctl(ARCH_SET_GS)` gives `%gs` a home).

/// What the translator asks of its environment.
pub trait Env {
    /// Copies native code at `addr` into `buf` and returns how many bytes could be read
    /// (fewer than `buf.len()` at the end of readable memory; 0 if `addr` is unreadable).
    fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize;

    /// Copies constant native data at `addr` (a compiler's jump table) into `buf` and returns
    /// how many bytes could be read; 0 where the environment does not vouch that the data is
    /// constant and mapped (the default: translated jump tables then resolve one entry per
    /// dispatcher entry instead of every entry naming the same target).
    fn read_data(&mut self, _addr: u64, _buf: &mut [u8]) -> usize {
        0
    }

    /// Bytes below `rsp` that interrupts and signals leave alone and compiled code may use:
    /// 128 in user space, 0 in the kernel. Inserted scratch pushes step over them.
    fn red_zone(&self) -> u32;

    /// Address of the dispatcher entry (the assembly trampoline that saves the machine state
    /// and calls [`crate::Translator::dispatch`]); see `link` for the calling convention.
    fn dispatcher_entry(&self) -> u64;

    /// Native addresses that must never be translated: control reaching them leaves the code
    /// cache and runs natively (the executor's return thunk, kernel code the module excludes).
    fn run_natively(&self, _native: u64) -> bool {
        false
    }

    /// Whether the stack must not be touched at the start of the native code at `native`:
    /// the first instructions of `entry_SYSCALL_64` run on the user's stack. A block starting
    /// there gets no inscount bump before its first branch (the only inserted code that could
    /// spill there; rules spill only in their own expansions, and those instructions do not
    /// occur before the stack switch).
    fn stack_unusable_at(&self, _native: u64) -> bool {
        false
    }

    /// Whether a native `int3` is a breakpoint someone else owns (the kernel's text patching
    /// and kprobes put them there and find them by native address): control reaching one
    /// leaves the cache and runs natively from the `int3` (the kernel), rather than executing
    /// a copy at a tx address (user space, where an `int3` is ordinary code).
    fn breakpoints_run_natively(&self) -> bool {
        false
    }

    /// Whether the translator's heap is nearly exhausted: translating then stops as if the
    /// code cache were full (the kernel's engine allocates from a fixed arena).
    fn memory_low(&self) -> bool {
        false
    }

    /// Native bytes `lo..hi` changed ([`crate::Translator::invalidate`]): forget any copy of
    /// them kept for [`Env::read_native`].
    fn native_changed(&mut self, _lo: u64, _hi: u64) {}

    /// May the cache be flushed now, when it is full? Flushing is only safe when no stack or
    /// frame holds a code-cache address outside the persistent area. When this says no, a
    /// target that does not fit runs natively (counted as `cache_full_native`).
    fn flush_is_safe(&self) -> bool {
        false
    }

    /// Where the client counters live.
    fn counter_home(&self) -> CounterHome {
        CounterHome::Data
    }
}

/// Where emitted code finds the client counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterHome {
    /// In [`DataMemory`], shared by all CPUs; increments are plain (not `lock`ed) read-modify-
    /// writes, so concurrent CPUs may lose a few counts.
    Data,
    /// Per CPU at `%gs:offset + 8*k`. Blocks that execute `swapgs` get no `%gs`-relative
    /// increments after it, since `%gs` may then be the user's.
    Gs(i32),
}

/// The code cache's memory: executable at `tx_base`, written through `rw`.
#[derive(Debug)]
pub struct CodeMemory {
    tx_base: u64,
    rw: *mut u8,
    len: usize,
}

impl CodeMemory {
    /// # Safety
    /// `rw..rw+len` must be writable memory that is the same physical memory as the executable
    /// range `tx_base..tx_base+len`, owned by the translator for its whole life (nothing else
    /// writes it), and `tx_base` must be 16-byte aligned.
    pub unsafe fn new(tx_base: u64, rw: *mut u8, len: usize) -> CodeMemory {
        CodeMemory { tx_base, rw, len }
    }

    /// The executable address of the first byte.
    pub fn tx_base(&self) -> u64 {
        self.tx_base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `tx` is inside the executable range.
    pub fn contains(&self, tx: u64) -> bool {
        tx.wrapping_sub(self.tx_base) < self.len as u64
    }

    pub(crate) fn write(&mut self, tx: u64, bytes: &[u8]) {
        let off = (tx - self.tx_base) as usize;
        assert!(
            off + bytes.len() <= self.len,
            "code cache write out of range"
        );
        // SAFETY: in range (checked above); the constructor's contract makes `rw` ours to write.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.rw.add(off), bytes.len()) }
    }

    /// Copies emitted code at `tx` into `buf` (diagnostics, disassembly of the cache).
    pub fn read(&self, tx: u64, buf: &mut [u8]) {
        let off = (tx - self.tx_base) as usize;
        assert!(off + buf.len() <= self.len, "code cache read out of range");
        // SAFETY: in range; the alias is readable memory we own.
        unsafe { core::ptr::copy_nonoverlapping(self.rw.add(off), buf.as_mut_ptr(), buf.len()) }
    }

    /// The writable alias of the 32-bit field at `tx`, which must lie within one 64-byte
    /// cache line (`tx` and its alias share their offset in the page, so in the line too).
    fn field(&self, tx: u64) -> *mut u32 {
        let off = (tx - self.tx_base) as usize;
        assert!(
            off + 4 <= self.len && tx % crate::emit::CACHE_LINE <= crate::emit::CACHE_LINE - 4,
            "patch site out of range or across a cache line"
        );
        // SAFETY: in range (checked above).
        unsafe { self.rw.add(off) }.cast()
    }

    /// Stores `value` in the 32-bit field at `tx` with one `mov`, which instruction fetch on
    /// any CPU sees whole or not at all: a store that stays within one cache line is atomic on
    /// x86 whether aligned or not (Intel SDM vol. 3A, 9.1.1, "Guaranteed Atomic Operations").
    /// Stores are not reordered with older stores, so code written before it is seen first.
    pub(crate) fn store_field(&self, tx: u64, value: u32) {
        let p = self.field(tx);
        // SAFETY: `p` is a field of code memory we own (`field` checked range and line); a
        // plain `mov` because Rust's atomics require 4-byte alignment, which the field may lack.
        unsafe {
            core::arch::asm!(
                "mov dword ptr [{p}], {v:e}",
                p = in(reg) p,
                v = in(reg) value,
                options(nostack, preserves_flags)
            )
        };
    }

    /// The 32-bit field at `tx`, read with one `mov` (see [`CodeMemory::store_field`]).
    pub(crate) fn load_field(&self, tx: u64) -> u32 {
        let p = self.field(tx);
        let value: u32;
        // SAFETY: as in `store_field`; a read of memory we own.
        unsafe {
            core::arch::asm!(
                "mov {v:e}, dword ptr [{p}]",
                p = in(reg) p,
                v = out(reg) value,
                options(nostack, preserves_flags, readonly)
            )
        };
        value
    }
}

// SAFETY: a CodeMemory is the exclusive handle on its pages (constructor contract); moving it
// to another thread moves that exclusive access with it.
unsafe impl Send for CodeMemory {}

/// The jumptable and counters: readable and writable at `addr` by emitted code and by the
/// translator (through `rw`, which may be the same address).
#[derive(Debug)]
pub struct DataMemory {
    addr: u64,
    rw: *mut u8,
    len: usize,
}

impl DataMemory {
    /// # Safety
    /// `rw..rw+len` must be writable memory, the same memory emitted code sees at
    /// `addr..addr+len`, zeroed, 8-byte aligned, and owned by the translator for its whole life.
    pub unsafe fn new(addr: u64, rw: *mut u8, len: usize) -> DataMemory {
        DataMemory { addr, rw, len }
    }

    /// The address emitted code uses.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn qword(&self, off: usize) -> &core::sync::atomic::AtomicU64 {
        assert!(
            off + 8 <= self.len && off % 8 == 0,
            "data memory access out of range"
        );
        // SAFETY: in range and aligned (the base is 8-aligned); owned memory; AtomicU64 has the
        // layout of u64.
        unsafe { &*(self.rw.add(off) as *const core::sync::atomic::AtomicU64) }
    }
}

// SAFETY: as for CodeMemory: the exclusive handle on memory the translator owns.
unsafe impl Send for DataMemory {}

/// Whether `addr` can be an absolute sign-extended 32-bit displacement.
pub(crate) fn is_abs32(addr: u64) -> bool {
    addr as i64 == addr as i32 as i64
}
