//! The user-mode executor: test support, never shipped in the module (feature `user`).
//!
//! Translates and runs ordinary user-space code of this process (test snippets, libc, Rust
//! crates) with the same rules as the kernel. What differs from the kernel is carried by the
//! environment, not the rules: a 128-byte red zone; memory from `mmap` (the code cache is a
//! `memfd` mapped twice, RX within ±2 GiB of this binary and RW elsewhere; the data memory is
//! `MAP_32BIT`); the dispatcher trampoline saves the extended state; the counters may live
//! behind `%gs` (`arch_prctl(ARCH_SET_GS)`).
//!
//! A run enters code through a thunk in the helper area: it loads every GPR and RFLAGS from a
//! [`Regs`], switches to the executor's own stack, pushes the address of its `back` label (so
//! the code's final `ret` returns into the thunk), and jumps to the entry (native or tx).
//! `back` stores every GPR and RFLAGS into the [`Regs`]. The helper area is outside the code
//! cache and marked run-natively, so returns into it leave the cache in every design.

use std::boxed::Box;
use std::cell::Cell;
use std::vec::Vec;

use iced_x86::code_asm::*;

pub mod alloc;

use crate::dispatch::{emit_trampoline, DispatcherStacks, TrampolineConfig};
use crate::env::{CodeMemory, CounterHome, DataMemory, Env};
use crate::{clients, ModeSpec, TranslateError, Translator};

/// Bytes of the helper area (trampoline, thunk) before the code cache.
const HELPER_SIZE: usize = 64 * 1024;
/// Default code cache size.
pub const DEFAULT_CACHE: usize = 16 << 20;
/// The executor's stack.
const STACK_SIZE: usize = 8 << 20;

std::thread_local! {
    static IN_DISPATCH: Cell<bool> = const { Cell::new(false) };
    static DISPATCH_SP: Cell<u64> = const { Cell::new(0) };
}

/// An address on the stack the dispatcher last ran on in this thread (0 before any
/// dispatch): tests check which stack that was.
pub fn last_dispatch_stack() -> u64 {
    DISPATCH_SP.with(|c| c.get())
}

/// Whether this thread is inside the dispatcher's Rust code (signal handlers must not touch
/// the translator then).
pub fn in_dispatch() -> bool {
    IN_DISPATCH.with(|c| c.get())
}

/// The user-space environment.
pub struct UserEnv {
    /// The last page of native code read: (page address, bytes, readable length). Native code
    /// changes only when the translator is told ([`Env::native_changed`]), so reads are memcpys
    /// after the first.
    page: Box<(u64, [u8; 4096], usize)>,
    dispatcher: u64,
    helper: (u64, u64),
    native: Option<(u64, u64)>,
    flush_safe: bool,
    counter_home: CounterHome,
    breakpoints_native: bool,
}

impl Env for UserEnv {
    fn read_native(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let at = addr + done as u64;
            let page = at & !4095;
            if self.page.0 != page || self.page.2 == 0 {
                let cache = &mut *self.page;
                cache.0 = page;
                cache.2 = read_memory(page, &mut cache.1);
            }
            let off = (at - page) as usize;
            if off >= self.page.2 {
                break;
            }
            let n = (self.page.2 - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&self.page.1[off..off + n]);
            done += n;
            if off + n < 4096 && done < buf.len() {
                break;
            }
        }
        done
    }
    /// Test code's own tables: whatever memory the process can read.
    fn read_data(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        read_memory(addr, buf)
    }
    fn red_zone(&self) -> u32 {
        128
    }
    fn dispatcher_entry(&self) -> u64 {
        self.dispatcher
    }
    fn run_natively(&self, native: u64) -> bool {
        [Some(self.helper), self.native]
            .into_iter()
            .flatten()
            .any(|(lo, hi)| (lo..hi).contains(&native))
    }
    fn flush_is_safe(&self) -> bool {
        self.flush_safe
    }
    fn counter_home(&self) -> CounterHome {
        self.counter_home
    }
    fn native_changed(&mut self, _lo: u64, _hi: u64) {
        self.page.2 = 0;
    }
    fn breakpoints_run_natively(&self) -> bool {
        self.breakpoints_native
    }
}

/// (start, length) of libc's executable segment in this process, or (0, 0) if none is loaded.
pub fn libc_text() -> (u64, u64) {
    extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: dl_iterate_phdr passes a valid info and our output slot.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut (u64, u64))) };
        // SAFETY: a NUL-terminated name from the loader, when present.
        let name = (!info.dlpi_name.is_null())
            .then(|| unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) });
        if name.is_some_and(|n| n.to_string_lossy().contains("libc.so")) {
            for k in 0..info.dlpi_phnum as usize {
                // SAFETY: dlpi_phdr has dlpi_phnum entries.
                let ph = unsafe { &*info.dlpi_phdr.add(k) };
                if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                    *out = (info.dlpi_addr + ph.p_vaddr, ph.p_memsz);
                }
            }
        }
        0
    }
    let mut out = (0, 0);
    // SAFETY: the callback only reads the info and writes `out`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut out as *mut _ as *mut libc::c_void) };
    out
}

/// Reads this process's memory without faulting: `process_vm_readv` on itself, split at page
/// boundaries so a readable prefix is returned.
pub fn read_memory(addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let at = addr + done as u64;
        let page_left = (4096 - (at % 4096)) as usize;
        let n = page_left.min(buf.len() - done);
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: n,
        };
        let remote = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: n,
        };
        // SAFETY: `local` is our own buffer of `n` bytes; the kernel checks `remote`.
        let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if got <= 0 {
            break;
        }
        done += got as usize;
        if (got as usize) < n {
            break;
        }
    }
    done
}

/// Reads a qword of this process's memory, if readable.
pub fn read_u64(addr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    (read_memory(addr, &mut b) == 8).then(|| u64::from_le_bytes(b))
}

/// Registers in and out of a run: rax rcx rdx rbx rsp rbp rsi rdi r8 … r15, then RFLAGS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    /// The GPRs in hardware order (index 4 is rsp).
    pub gpr: [u64; 16],
    /// RFLAGS.
    pub rflags: u64,
}

#[repr(C)]
struct RunCtx {
    regs: Regs,
    target: u64,
    host_rsp: u64,
}

/// `%gs` offset of `funccount`'s counters with [`ExecConfig::counters_in_gs`] (after the
/// client counters at 0).
pub const FUNCS_GS_OFF: i64 = 2048;

const OFF_RFLAGS: i32 = 16 * 8;
const OFF_TARGET: i32 = 17 * 8;
const OFF_HOST_RSP: i32 = 18 * 8;

/// How to set an executor up.
#[derive(Clone, Debug)]
pub struct ExecConfig {
    /// Code cache bytes.
    pub cache_size: usize,
    /// What [`Env::flush_is_safe`] answers; default: safe unless callret (whose return
    /// addresses on the stack point into the cache).
    pub flush_safe: Option<bool>,
    /// Home the client counters behind `%gs` (a mapping of this thread's, set with
    /// `arch_prctl(ARCH_SET_GS)`) instead of the data memory; `funccount`'s counters then are
    /// per CPU too ([`crate::FuncSet::per_cpu`], at `%gs` offset [`FUNCS_GS_OFF`]).
    pub counters_in_gs: bool,
    /// What [`Env::breakpoints_run_natively`] answers (the kernel's answer is yes).
    pub breakpoints_native: bool,
    /// Run the dispatcher on per-CPU stacks of its own, as the kernel does
    /// ([`crate::dispatch::DispatcherStacks`]; user mode can `lsl` the vDSO's CPU segment too).
    pub dispatcher_stacks: bool,
    /// Native code `lo..hi` that [`Env::run_natively`] keeps out of the cache (as the kernel
    /// keeps its espfix64 return and `asm_load_gs_index`).
    pub native: Option<(u64, u64)>,
    /// Client `funccount`'s functions (native entries); their counters are in a low mapping
    /// of the executor's, or behind `%gs` with `counters_in_gs` ([`Executor::func_counts`]).
    /// Needs `funccount` in the spec.
    pub funcs: Vec<u64>,
    /// Block and exit records reserved up front ([`Translator::reserve`]), as the kernel's
    /// switch-on does ([`KERNEL_RECORDS`]); None: the record vectors grow as needed.
    pub records: Option<(usize, usize)>,
    /// Memory present before translating, as the kernel's is (its code cache comes from
    /// `execmem_alloc`, its heap from `vmalloc`, both backed at allocation): the code cache's
    /// writable mapping is populated, the reserved records are touched, and this process's
    /// `malloc` heap is grown and touched once ([`prefault_heap`]), so that translating takes
    /// no page fault. Off, a first-touch fault costs about as much as translating 15–25
    /// native instructions on this host, and a bench would measure the host kernel's fault
    /// path.
    pub prefault: bool,
    /// Native code the code cache must be within ±2 GiB of (rel32 reach), as the kernel's
    /// cache is of all kernel text; default: this binary's code. A translation bench over
    /// libc places it near libc, so that RIP-relative operands are re-encoded as the kernel's
    /// are, not through the far path.
    pub near: Option<u64>,
}

/// The records the module reserves for one translator at switch-on (module/translator.rs,
/// `MAX_BLOCKS` and `MAX_EXITS`): (blocks, exits). With them translating never grows a record
/// vector or rehashes the block map, in the kernel or in a bench that sets
/// [`ExecConfig::records`] to them.
pub const KERNEL_RECORDS: (usize, usize) = (48 << 10, 128 << 10);

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            cache_size: DEFAULT_CACHE,
            flush_safe: None,
            counters_in_gs: false,
            breakpoints_native: false,
            dispatcher_stacks: false,
            native: None,
            funcs: Vec::new(),
            records: None,
            prefault: false,
            near: None,
        }
    }
}

/// Heap kept grown and touched by [`prefault_heap`], bytes: more than a sweep of libc's text
/// allocates, and under glibc's largest `mmap` threshold, so that every allocation up to it
/// comes from the heap.
const PREFAULT_HEAP: usize = 24 << 20;

/// Grows this process's `malloc` heap by [`PREFAULT_HEAP`] bytes of touched memory and keeps
/// it: allocations up to 32 MiB come from the heap (not fresh `mmap`s), and freeing never
/// trims it. Process-wide, done once; for benches ([`ExecConfig::prefault`]).
pub fn prefault_heap() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: mallopt only tunes glibc's allocator; the buffer is our own, written in full
    // and freed once.
    ONCE.call_once(|| unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        let p = libc::malloc(PREFAULT_HEAP).cast::<u8>();
        if !p.is_null() {
            core::ptr::write_bytes(p, 1, PREFAULT_HEAP);
            // Kept opaque: a buffer written and freed unread would be a dead store.
            libc::free(core::hint::black_box(p).cast());
        }
    });
}

/// Bytes of each dispatcher stack ([`ExecConfig::dispatcher_stacks`]).
const DISPATCHER_STACK: usize = 256 << 10;
/// Linux's CPU-number GDT segment (`__CPUNODE_SEG`).
const CPUNODE_SELECTOR: u16 = 0x7b;

/// A table of stack tops in the low 2 GiB, indexed by CPU, and the stacks (one per
/// configured CPU).
fn dispatcher_stacks(size: usize) -> (Mapping, Vec<Mapping>) {
    // SAFETY: plain sysconf.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as usize;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let private = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    let table = map(0, 16 * 4096, rw, private | libc::MAP_32BIT, -1).expect("stack table");
    assert!(cpus <= 4096, "more CPUs than the table holds");
    let stacks: Vec<Mapping> = (0..cpus)
        .map(|_| map(0, size, rw, private, -1).expect("dispatcher stack"))
        .collect();
    for (cpu, s) in stacks.iter().enumerate() {
        // SAFETY: the table has 4096 entries; `cpu` is below that (asserted). The gs base
        // stays 0: user mode never swaps %gs.
        unsafe { *(table.0 as *mut u64).add(2 * cpu) = s.0 as u64 + size as u64 };
    }
    (table, stacks)
}

/// Maps, unmapped on drop.
struct Mapping(*mut libc::c_void, usize);

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: a mapping we made, of that length, no longer used.
        unsafe { libc::munmap(self.0, self.1) };
    }
}

fn map(hint: u64, len: usize, prot: i32, flags: i32, fd: i32) -> Option<Mapping> {
    // SAFETY: plain mmap; the result is checked.
    let p = unsafe { libc::mmap(hint as *mut _, len, prot, flags, fd, 0) };
    (p != libc::MAP_FAILED).then_some(Mapping(p, len))
}

/// Runs code of this process natively or translated, on its own stack.
pub struct Executor {
    translator: Box<Translator<UserEnv>>,
    thunk: u64,
    back: u64,
    fault_exit: u64,
    ctx_slot: u64,
    stack_top: u64,
    gs_page: Option<Mapping>,
    _maps: Vec<Mapping>,
}

/// The Rust side of the trampoline.
extern "sysv64" fn user_dispatch(ctx: *mut Translator<UserEnv>, exit_id: u64, slot: *mut u64) {
    IN_DISPATCH.with(|c| c.set(true));
    let marker = 0u8;
    DISPATCH_SP.with(|c| c.set(&marker as *const u8 as u64));
    // SAFETY: `ctx` is the executor's boxed translator, which the running code cannot reach
    // otherwise; `slot` is the trampoline frame's target slot.
    unsafe { (*ctx).dispatch_raw(exit_id, slot) };
    IN_DISPATCH.with(|c| c.set(false));
}

impl Executor {
    /// An executor for `spec` with the default configuration.
    pub fn new(spec: ModeSpec) -> Executor {
        Executor::with_config(spec, ExecConfig::default())
    }

    /// An executor for `spec`.
    pub fn with_config(spec: ModeSpec, cfg: ExecConfig) -> Executor {
        let total = HELPER_SIZE + cfg.cache_size;
        // SAFETY: plain memfd_create with a static name.
        let fd = unsafe { libc::memfd_create(c"kdbt-cache".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create failed");
        // SAFETY: resizing our own fd.
        assert_eq!(unsafe { libc::ftruncate(fd, total as i64) }, 0);
        let populate = if cfg.prefault { libc::MAP_POPULATE } else { 0 };
        let rw = map(
            0,
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | populate,
            fd,
        )
        .expect("rw map");
        let here = cfg
            .near
            .unwrap_or(Executor::with_config as *const () as usize as u64);
        let mut rx = None;
        for step in 1..64u64 {
            for hint in [here.wrapping_add(step << 24), here.wrapping_sub(step << 24)] {
                let hint = hint & !0xffff;
                let flags = libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE;
                if let Some(m) = map(hint, total, libc::PROT_READ | libc::PROT_EXEC, flags, fd) {
                    if m.0 as u64 == hint {
                        rx = Some(m);
                        break;
                    }
                }
            }
            if rx.is_some() {
                break;
            }
        }
        // SAFETY: our fd, mapped twice already.
        unsafe { libc::close(fd) };
        let rx = rx.expect("no room for the code cache within reach of its native code");
        let tx_base = rx.0 as u64;
        let data_len = clients::DATA_SIZE + 4096;
        let data = map(
            0,
            data_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
        )
        .expect("MAP_32BIT data");
        let ctx_slot = data.0 as u64 + clients::DATA_SIZE as u64;
        let stack = map(
            0,
            STACK_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
        )
        .expect("stack");
        let stack_top = stack.0 as u64 + STACK_SIZE as u64 - 4096;
        let gs_page = cfg.counters_in_gs.then(|| {
            let page = map(
                0,
                (FUNCS_GS_OFF as usize + 8 * cfg.funcs.len()).next_multiple_of(4096),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
            )
            .expect("gs page");
            // SAFETY: sets this thread's GS base to a page we own; Rust code does not use %gs.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    0x1001, /* ARCH_SET_GS */
                    page.0 as u64,
                )
            };
            assert_eq!(rc, 0, "arch_prctl(ARCH_SET_GS)");
            page
        });

        let env = UserEnv {
            page: Box::new((u64::MAX, [0; 4096], 0)),
            dispatcher: tx_base,
            helper: (tx_base, tx_base + HELPER_SIZE as u64),
            native: cfg.native,
            flush_safe: cfg.flush_safe.unwrap_or(!spec.options.callret),
            breakpoints_native: cfg.breakpoints_native,
            counter_home: if cfg.counters_in_gs {
                CounterHome::Gs(0)
            } else {
                CounterHome::Data
            },
        };
        // SAFETY: the memfd maps: `rw` and `rx` are the same pages; the cache part starts
        // after the helper area, 64 KiB aligned; nothing else writes it.
        let code = unsafe {
            CodeMemory::new(
                tx_base + HELPER_SIZE as u64,
                (rw.0 as *mut u8).add(HELPER_SIZE),
                cfg.cache_size,
            )
        };
        // SAFETY: a fresh zeroed MAP_32BIT mapping, used only through the translator (the
        // slot after DATA_SIZE belongs to the thunk).
        let data_mem =
            unsafe { DataMemory::new(data.0 as u64, data.0 as *mut u8, clients::DATA_SIZE) };
        let mut translator =
            Box::new(Translator::new(spec, env, code, data_mem).expect("translator setup"));
        if let Some((blocks, exits)) = cfg.records {
            translator.reserve(blocks, exits).expect("records reserved");
            if cfg.prefault {
                translator.touch_records();
            }
        }
        if cfg.prefault {
            prefault_heap();
        }
        let mut counts = None;
        if !cfg.funcs.is_empty() && cfg.counters_in_gs {
            let set = crate::FuncSet::per_cpu(&cfg.funcs, FUNCS_GS_OFF).expect("function set");
            translator
                .set_functions(set)
                .expect("funccount in the spec");
        } else if !cfg.funcs.is_empty() {
            let m = map(
                0,
                (8 * cfg.funcs.len()).next_multiple_of(4096),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
            )
            .expect("MAP_32BIT counters");
            let set = crate::FuncSet::new(&cfg.funcs, m.0 as u64).expect("function set");
            translator
                .set_functions(set)
                .expect("funccount in the spec");
            counts = Some(m);
        }

        let rw_base = rw.0 as *mut u8;
        let mut maps = std::vec![rw, rx, data, stack];
        maps.extend(counts);
        let stacks = cfg.dispatcher_stacks.then(|| {
            let (table, tops) = dispatcher_stacks(DISPATCHER_STACK);
            let st = DispatcherStacks {
                table: table.0 as u64,
                size: DISPATCHER_STACK as u32,
                cpunode_selector: CPUNODE_SELECTOR,
            };
            maps.push(table);
            maps.extend(tops);
            st
        });
        let tramp = emit_trampoline(
            tx_base,
            &*translator as *const _ as u64,
            user_dispatch as *const () as usize as u64,
            TrampolineConfig {
                save_extended_state: true,
                disable_interrupts: false,
                stacks,
            },
        );
        let thunk_at = tx_base + ((tramp.len() as u64 + 63) & !63);
        let (thunk_code, back, fault_exit) = assemble_thunk(thunk_at, ctx_slot);
        // SAFETY: writing the helper area through the RW alias, within its size.
        unsafe {
            let base = rw_base;
            core::ptr::copy_nonoverlapping(tramp.as_ptr(), base, tramp.len());
            core::ptr::copy_nonoverlapping(
                thunk_code.as_ptr(),
                base.add((thunk_at - tx_base) as usize),
                thunk_code.len(),
            );
        }
        Executor {
            translator,
            thunk: thunk_at,
            back,
            fault_exit,
            ctx_slot,
            stack_top,
            gs_page,
            _maps: maps,
        }
    }

    /// Translates native `start..start + len` as a linear sweep: each block starts where the
    /// previous one ended, one byte on after an untranslatable instruction. For measuring the
    /// translator (the cache must hold it all: a flush would translate some code twice).
    pub fn translate_sweep(&mut self, start: u64, len: u64) {
        let t = &mut self.translator;
        let mut pc = start;
        while pc < start + len {
            match t.translate(pc) {
                Ok(tx) => {
                    let b = t.cache().blocks().iter().rev().find(|b| b.tx_start == tx);
                    let last = b
                        .and_then(|b| t.cache().insns(b).last())
                        .expect("a new block");
                    pc = last.native_pc + last.native_len as u64;
                }
                Err(TranslateError::Untranslatable { .. }) => pc += 1,
                Err(TranslateError::CacheFull) => panic!("the sweep overflows the code cache"),
            }
        }
    }

    /// Client `funccount`'s counts: `(native entry, entries counted)`, ascending by address.
    pub fn func_counts(&self) -> Vec<(u64, u64)> {
        let Some(set) = self.translator.functions() else {
            return Vec::new();
        };
        set.entries()
            .iter()
            .enumerate()
            .map(|(k, &f)| {
                let at = match &self.gs_page {
                    Some(page) if set.is_per_cpu() => page.0 as u64 + set.counter(k),
                    _ => set.counter(k),
                };
                // SAFETY: counter `k` lies in the executor's counter mapping or gs area;
                // emitted code updates it with single adds, so a volatile read sees a whole
                // value.
                let n = unsafe { core::ptr::read_volatile(at as *const u64) };
                (f, n)
            })
            .collect()
    }

    /// The translator.
    pub fn translator(&self) -> &Translator<UserEnv> {
        &self.translator
    }

    /// The translator, mutably.
    pub fn translator_mut(&mut self) -> &mut Translator<UserEnv> {
        &mut self.translator
    }

    /// Statistics, with the `%gs`-homed counters when they are there.
    pub fn stats(&self) -> crate::Stats {
        let mut s = self.translator.stats();
        if let Some(page) = &self.gs_page {
            // SAFETY: the gs page is ours and holds the counters.
            let c = |i: usize| unsafe { *(page.0 as *const u64).add(i) };
            s.insns_executed = c(0);
            s.indirect_executed = c(1);
            s.inline_cache_hits = c(3);
            s.jumptable_hits = c(2) + s.inline_cache_hits;
        }
        s
    }

    /// Top of the executor's stack (16-byte aligned): the rsp a run starts with by default.
    pub fn stack_top(&self) -> u64 {
        self.stack_top
    }

    /// The address translated and native code returns to at the end of a run.
    pub fn return_address(&self) -> u64 {
        self.back
    }

    /// Where a signal handler may send a run to abandon it (after filling the run's [`Regs`]
    /// itself): it restores the host stack and returns from the run.
    pub fn fault_exit(&self) -> u64 {
        self.fault_exit
    }

    /// Runs native code at `entry` with `regs` (rsp 0 = the executor's stack top) until it
    /// returns; `regs` receives the final registers.
    ///
    /// # Safety
    /// `entry` must be code that is safe to run with these registers and returns with `ret`.
    pub unsafe fn run_native(&self, entry: u64, regs: &mut Regs) {
        // SAFETY: forwarded contract.
        unsafe { self.enter(entry, regs) }
    }

    /// Translates `entry` and runs its translation like [`Executor::run_native`].
    ///
    /// # Safety
    /// As for [`Executor::run_native`]: the translation does what the native code does.
    pub unsafe fn run_translated(
        &mut self,
        entry: u64,
        regs: &mut Regs,
    ) -> Result<(), TranslateError> {
        let tx = self.translator.translate(entry)?;
        // SAFETY: forwarded contract.
        unsafe { self.enter(tx, regs) };
        Ok(())
    }

    /// Calls `f(args…)` (SysV, at most 6 integer arguments) natively; returns rax.
    ///
    /// # Safety
    /// `f` must be a function safe to call with these arguments.
    pub unsafe fn call_native(&self, f: u64, args: &[u64]) -> u64 {
        let mut regs = args_regs(args);
        // SAFETY: forwarded contract.
        unsafe { self.run_native(f, &mut regs) };
        regs.gpr[0]
    }

    /// Bytes of the executor's own stack (its top is [`Executor::stack_top`]).
    pub const STACK_SIZE: usize = STACK_SIZE;

    /// Calls `f(args…)` translated; returns rax.
    ///
    /// # Safety
    /// As for [`Executor::call_native`].
    pub unsafe fn call(&mut self, f: u64, args: &[u64]) -> Result<u64, TranslateError> {
        let mut regs = args_regs(args);
        // SAFETY: forwarded contract.
        unsafe { self.run_translated(f, &mut regs)? };
        Ok(regs.gpr[0])
    }

    unsafe fn enter(&self, target: u64, regs: &mut Regs) {
        if regs.gpr[4] == 0 {
            regs.gpr[4] = self.stack_top;
        }
        let mut ctx = RunCtx {
            regs: *regs,
            target,
            host_rsp: 0,
        };
        let thunk: extern "sysv64" fn(*mut RunCtx) =
            // SAFETY: the thunk is code we assembled with this signature.
            unsafe { core::mem::transmute(self.thunk as usize) };
        let _ = self.ctx_slot;
        thunk(&mut ctx);
        *regs = ctx.regs;
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        if self.gs_page.is_some() {
            // SAFETY: resets this thread's GS base, which we set.
            unsafe { libc::syscall(libc::SYS_arch_prctl, 0x1001, 0u64) };
        }
    }
}

fn args_regs(args: &[u64]) -> Regs {
    assert!(args.len() <= 6, "at most 6 register arguments");
    let mut regs = Regs {
        rflags: 0x202,
        ..Regs::default()
    };
    for (value, reg) in args.iter().zip([7usize, 6, 2, 1, 8, 9]) {
        regs.gpr[reg] = *value;
    }
    regs
}

/// The run thunk (see the module doc). Returns (code, `back`, `fault_exit`).
fn assemble_thunk(at: u64, ctx_slot: u64) -> (Vec<u8>, u64, u64) {
    let build = || -> Result<(Vec<u8>, u64, u64), iced_x86::IcedError> {
        let mut a = CodeAssembler::new(64)?;
        let mut back = a.create_label();
        let mut fault_exit = a.create_label();
        let host_saved = [rbx, rbp, r12, r13, r14, r15];
        let gprs = [
            rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15,
        ];
        let slot = qword_ptr(ctx_slot);
        for r in host_saved {
            a.push(r)?;
        }
        a.mov(slot, rdi)?;
        a.mov(qword_ptr(rdi + OFF_HOST_RSP), rsp)?;
        a.mov(rsp, qword_ptr(rdi + 4 * 8))?;
        a.lea(rax, ptr(back))?;
        a.push(rax)?;
        a.push(qword_ptr(rdi + OFF_TARGET))?;
        a.push(qword_ptr(rdi + OFF_RFLAGS))?;
        a.popfq()?;
        for (k, r) in gprs.iter().enumerate() {
            if k != 4 && k != 7 {
                a.mov(*r, qword_ptr(rdi + 8 * k as i32))?;
            }
        }
        a.mov(rdi, qword_ptr(rdi + 7 * 8))?;
        a.ret()?;

        a.set_label(&mut back)?;
        a.pushfq()?;
        a.push(rdi)?;
        a.mov(rdi, slot)?;
        a.pop(qword_ptr(rdi + 7 * 8))?;
        a.pop(qword_ptr(rdi + OFF_RFLAGS))?;
        for (k, r) in gprs.iter().enumerate() {
            if k != 4 && k != 7 {
                a.mov(qword_ptr(rdi + 8 * k as i32), *r)?;
            }
        }
        a.mov(qword_ptr(rdi + 4 * 8), rsp)?;
        a.set_label(&mut fault_exit)?;
        a.mov(rdi, slot)?;
        a.mov(rsp, qword_ptr(rdi + OFF_HOST_RSP))?;
        for r in host_saved.iter().rev() {
            a.pop(*r)?;
        }
        a.ret()?;
        let result = a.assemble_options(
            at,
            iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )?;
        let back_ip = result.label_ip(&back)?;
        let fault_ip = result.label_ip(&fault_exit)?;
        Ok((result.inner.code_buffer, back_ip, fault_ip))
    };
    build().expect("thunk assembles")
}
