// SPDX-License-Identifier: GPL-2.0

//! The drk design's delivery of interrupts and exceptions that arrive while a CPU runs in its
//! code cache (DRK, Feiner et al. ASPLOS'12 §4.2–4.3; DESIGN §4). Handlers only ever see
//! native PCs and native register state:
//!
//! - **Exceptions** (faults) at a code-cache RIP are rolled back with the translator's recipe
//!   to the start of the native instruction, the frame's RIP rewritten to that native PC, and
//!   then delivered. The native instruction is re-executed when the handler returns.
//! - **Interrupts** at a code-cache RIP: at a native boundary already, delivered there. When
//!   the next boundary is known statically, its tx address (both, after a conditional branch)
//!   is patched with `int $vector`, IF is cleared in the frame and the CPU returns into the
//!   cache; the `int` then traps into the same vector's stub, the patch is removed, the frame
//!   gets the native PC and the original IF, and the handler runs. Where the next boundary is
//!   only known at run time (indirect lookups, exit stubs, the trampoline's edges) the state is
//!   rolled back to the start of the native instruction instead, which is as precise.
//!
//! - **`int3`** in the cache marks an invalidated boundary (the native text changed; native
//!   `int3`s are never copied): the CPU continues in a fresh translation of that native
//!   instruction and nothing is delivered.
//!
//! Each CPU has its own translator and code cache (as DRK has), so a patch is private to the
//! CPU that placed it. The only frames that keep a code-cache RIP are the ones this code
//! returns into with `iretq` itself; `delivered_with_tx_rip` counts any other (the design
//! promises none).
//!
//! The entry routine (`kdbt_modes::drk_entry`) saves the GPRs below what the vector's stub pushed and
//! calls [`kdbt_engine_drk_event`] with interrupts off and the kernel's `%gs` (no interrupt or
//! fault can reach translated code while the user's `%gs` is active, apart from the few
//! instructions around `swapgs` that run with interrupts off and fault in nothing).

use core::sync::atomic::Ordering::Relaxed;

use kdbt_modes::drk_entry::{self, FRAME, HANDLER, TAG};
use kdbt_modes::env::Env;
use kdbt_modes::rollback::{MachineState, RSP};
use kdbt_modes::{NextBoundary, Translator};

use crate::instance::{Instance, KernelEnv};

/// Frame layout from RIP: rip, cs, rflags, rsp, ss.
const F_RIP: usize = 0;
const F_FLAGS: usize = 2;
const F_RSP: usize = 3;
const IF: u64 = 1 << 9;
const INT_IMM8: u8 = 0xcd;
const BREAKPOINT: u64 = 3;
const FIRST_INTERRUPT: u64 = 32;
/// Bytes the rollback may read around the interrupted stack pointer (one kernel stack).
const STACK_REACH: u64 = 16 << 10;

/// A patched boundary: tx address and the two bytes it held.
#[derive(Clone, Copy)]
struct Patch {
    at: u64,
    orig: [u8; 2],
}

/// The interrupt waiting at patched boundaries on this instance's CPU.
struct Pending {
    vector: u8,
    /// The translated handler to run when it is delivered.
    handler: u64,
    /// IF of the interrupted state (cleared in the frame while pending).
    if_set: bool,
    patches: [Option<Patch>; 2],
}

/// The drk counters, in report order (`drk: name value` lines).
#[derive(Clone, Copy)]
pub(crate) enum Counter {
    ExceptionsRolledBack,
    InterruptsAtBoundary,
    InterruptsRolledBack,
    InterruptsDelayed,
    PatchesPlaced,
    PatchesRemoved,
    DelayedDelivered,
    InterruptsWhilePending,
    ExceptionsWhilePending,
    PoisonRedirected,
    BreakpointsInCache,
    RollbackFailed,
    DeliveredWithTxRip,
}

/// Names of the [`Counter`]s, by index.
pub(crate) const COUNTER_NAMES: [&str; 13] = [
    "exceptions_rolled_back",
    "interrupts_at_boundary",
    "interrupts_rolled_back",
    "interrupts_delayed",
    "patches_placed",
    "patches_removed",
    "delayed_delivered",
    "interrupts_while_pending",
    "exceptions_while_pending",
    "poison_redirected",
    "breakpoints_in_cache",
    "rollback_failed",
    "delivered_with_tx_rip",
];

/// Counter values, indexed by [`Counter`].
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats(pub(crate) [u64; COUNTER_NAMES.len()]);

impl Stats {
    fn add(&mut self, c: Counter, n: u64) {
        self.0[c as usize] += n;
    }

    fn bump(&mut self, c: Counter) {
        self.add(c, 1);
    }
}

/// Per-instance drk state, under the instance's lock.
#[derive(Default)]
pub(crate) struct State {
    pending: Option<Pending>,
    pub(crate) stats: Stats,
}

impl State {
    /// Whether an interrupt waits at a patched boundary in the cache (a flush would erase
    /// its patch).
    pub(crate) fn pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// Where the entry routine continues: `ret` to `target` with the saved area at `regs`
/// (returned in rax:rdx).
#[repr(C)]
pub struct Continue {
    target: u64,
    regs: u64,
}

/// The saved area and frame of one event (see [`emit_entry`] for the layout).
struct Event {
    regs: *mut u64,
    frame: usize,
}

impl Event {
    fn get(&self, i: usize) -> u64 {
        // SAFETY: `i` indexes the saved area or the hardware frame, all on the live stack the
        // entry routine passed (kdbt_engine_drk_event's contract).
        unsafe { self.regs.add(i).read() }
    }

    fn set(&self, i: usize, v: u64) {
        // SAFETY: as in `get`.
        unsafe { self.regs.add(i).write(v) }
    }

    fn frame(&self, f: usize) -> u64 {
        self.get(self.frame + f)
    }

    fn set_frame(&self, f: usize, v: u64) {
        self.set(self.frame + f, v)
    }

    fn state(&self) -> MachineState {
        let mut s = MachineState {
            rip: self.frame(F_RIP),
            rflags: self.frame(F_FLAGS),
            ..MachineState::default()
        };
        for (g, v) in s.gpr.iter_mut().enumerate() {
            *v = match saved_index(g) {
                Some(i) => self.get(i),
                None => self.frame(F_RSP),
            };
        }
        s
    }

    fn set_state(&self, s: &MachineState) {
        for (g, v) in s.gpr.iter().enumerate() {
            match saved_index(g) {
                Some(i) => self.set(i, *v),
                None => self.set_frame(F_RSP, *v),
            }
        }
        self.set_frame(F_RIP, s.rip);
    }

    fn proceed(&self, target: u64) -> Continue {
        Continue {
            target,
            regs: self.regs as u64,
        }
    }
}

/// Index in the saved area of GPR `g` (hardware numbering); `None` for `rsp` (in the frame).
fn saved_index(g: usize) -> Option<usize> {
    match g {
        RSP => None,
        g if g < RSP => Some(g),
        g => Some(g - 1),
    }
}

/// Reads a stack qword near the interrupted `rsp` (recipes only read spill and target slots).
fn stack_reader(rsp: u64) -> impl FnMut(u64) -> Option<u64> {
    move |addr| {
        if addr.abs_diff(rsp) >= STACK_REACH {
            return None;
        }
        // SAFETY: a qword within one kernel stack of the interrupted stack pointer, which is
        // mapped (the CPU just pushed the frame below it). Kernel code may run with `rsp`
        // off 8-byte alignment (seen under load): the read does not assume it.
        Some(unsafe { (addr as *const u64).read_unaligned() })
    }
}

/// Rolls `s` back to a native boundary, writing back a frame slot the recipe names.
fn roll_back(t: &Translator<KernelEnv>, s: &mut MachineState) -> bool {
    let mut read = stack_reader(s.gpr[RSP]);
    match t.rollback(s, &mut read) {
        Ok(done) => {
            if let Some((addr, native)) = done.slot_fixup {
                // SAFETY: a frame slot on the interrupted stack that drk's `iretq` rule wrote
                // a tx address into (the recipe says so); it holds the native one again.
                unsafe { (addr as *mut u64).write_volatile(native) };
            }
            true
        }
        Err(_) => false,
    }
}

/// Unwinds the dispatcher trampoline's two interruptible edges to the persistent entry that
/// called it: its first instruction (before `pushfq`, or between `pushfq` and `cli`) and its
/// final `ret` (after `popfq`). Returns false when `s.rip` is elsewhere in it.
fn unwind_trampoline(inst: &Instance, s: &mut MachineState) -> bool {
    let start = inst.trampoline;
    let ret = inst.trampoline_ret.load(Relaxed);
    let mut read = stack_reader(s.gpr[RSP]);
    let (skip, back) = match s.rip {
        r if r == start => (0, 5),
        r if r == start + 1 => (8, 5),
        r if r == ret && ret != 0 => (0, 0),
        _ => return false,
    };
    let Some(ret_addr) = read(s.gpr[RSP] + skip) else {
        return false;
    };
    // `call rel32` is 5 bytes: the return address minus 5 is the call itself.
    s.rip = ret_addr - back;
    s.gpr[RSP] += skip + 8;
    true
}

/// Places `int $vector` over each static next boundary; false (nothing placed) when one is
/// outside this cache or overlaps the code still to run before it.
fn place(
    t: &mut Translator<KernelEnv>,
    targets: [Option<u64>; 2],
    rip: u64,
    vector: u8,
) -> Option<[Option<Patch>; 2]> {
    let mut patches = [None; 2];
    let [a, b] = targets;
    let b = b.filter(|&b| Some(b) != a);
    let list = [a, b];
    let mut any = false;
    for (i, at) in list.iter().enumerate() {
        let Some(at) = *at else { continue };
        let clash = (at..at + 2).contains(&rip)
            || list
                .iter()
                .flatten()
                .any(|&o| o != at && o.abs_diff(at) < 2);
        if !t.cache().contains(at) || !t.cache().contains(at + 1) || clash {
            return None;
        }
        let mut orig = [0u8; 2];
        t.read_code(at, &mut orig);
        patches[i] = Some(Patch { at, orig });
        any = true;
    }
    if !any {
        return None;
    }
    for p in patches.iter().flatten() {
        // SAFETY: this CPU alone runs this cache (per-CPU instances) and runs nothing until it
        // returns from this interrupt; the patch is undone before the boundary is left.
        unsafe { t.write_code(p.at, &[INT_IMM8, vector]) };
    }
    Some(patches)
}

/// Removes the patches of `p`; each byte goes back only if it still holds the patch (an
/// invalidation may have poisoned the boundary with `int3` since).
fn unpatch(t: &mut Translator<KernelEnv>, p: &Pending, stats: &mut Stats) {
    for patch in p.patches.iter().flatten() {
        let mut now = [0u8; 2];
        t.read_code(patch.at, &mut now);
        let placed = [INT_IMM8, p.vector];
        for i in 0..2 {
            if now[i] == placed[i] {
                // SAFETY: as in `place`: this CPU's own cache, one byte.
                unsafe { t.write_code(patch.at + i as u64, &patch.orig[i..i + 1]) };
            }
        }
        stats.bump(Counter::PatchesRemoved);
    }
}

/// Delivers the pending interrupt `p` at the (rolled-back) state in `ev`'s frame: removes its
/// patches and gives the frame back the IF it had; returns its handler.
fn deliver_pending(
    t: &mut Translator<KernelEnv>,
    p: Pending,
    ev: &Event,
    stats: &mut Stats,
) -> u64 {
    unpatch(t, &p, stats);
    if p.if_set {
        ev.set_frame(F_FLAGS, ev.frame(F_FLAGS) | IF);
    }
    stats.bump(Counter::DelayedDelivered);
    p.handler
}

fn covers(p: &Pending, at: u64) -> bool {
    p.patches.iter().flatten().any(|q| q.at == at)
}

/// The entry routine's call: decides how the event in the stub frame at `regs` is delivered,
/// rewriting saved registers and frame as needed. Returns where to continue: the translated
/// handler, or the routine's `iretq` (an interrupt delayed; an invalidated boundary left for
/// a fresh translation).
///
/// # Safety
/// Called only by the entry routine of a live `instance`, with interrupts off, on the stack
/// holding `regs`: 15 saved GPRs, the stub's handler and tag slots, then the CPU's frame.
pub unsafe extern "C" fn kdbt_engine_drk_event(
    instance: *const Instance,
    regs: *mut u64,
) -> Continue {
    // SAFETY: the entry routine passes the live instance it was emitted for.
    let inst = unsafe { &*instance };
    // SAFETY: `regs` points at the saved area (caller's contract).
    let tag = unsafe { regs.add(TAG).read() };
    let c = deliver(inst, regs);
    // Check what the design promises: a handler never sees a code-cache RIP.
    if c.target != inst.drk_iret.load(Relaxed) {
        let at = c.regs as *const u64;
        let err = c.regs == regs as u64 && tag & drk_entry::TAG_ERROR_CODE != 0;
        // SAFETY: the frame above the (possibly moved) saved area.
        let rip = unsafe { at.add(FRAME + err as usize).read() };
        if (inst.region_lo.load(Relaxed)..inst.region_hi.load(Relaxed)).contains(&rip) {
            inst.tx_rip_delivered.fetch_add(1, Relaxed);
        }
    }
    c
}

/// [`kdbt_engine_drk_event`]'s decision.
fn deliver(inst: &Instance, regs: *mut u64) -> Continue {
    // SAFETY: `regs` points at the saved area (caller's contract).
    let tag = unsafe { regs.add(TAG).read() };
    let vector = tag & 0xff;
    let ev = Event {
        regs,
        frame: FRAME + (tag & drk_entry::TAG_ERROR_CODE != 0) as usize,
    };
    let handler = ev.get(HANDLER);
    let Some(mut g) = inst.lock(1 << 24) else {
        inst.lock_busy.fetch_add(1, Relaxed);
        return ev.proceed(handler);
    };
    let (t, drk) = g.parts();
    let rip = ev.frame(F_RIP);
    let mut s = ev.state();

    // A pending interrupt's patch reached: `int $vector` (or the `int3` that poisoned it).
    let fired_at = match vector {
        BREAKPOINT => rip.wrapping_sub(1),
        v if v >= FIRST_INTERRUPT => rip.wrapping_sub(2),
        _ => 0,
    };
    let fired = drk.pending.as_ref().is_some_and(|p| {
        covers(p, fired_at) && (vector == BREAKPOINT || vector == p.vector as u64)
    });
    if let Some(p) = drk.pending.take_if(|_| fired) {
        s.rip = fired_at;
        if !roll_back(t, &mut s) {
            drk.stats.bump(Counter::RollbackFailed);
        }
        ev.set_state(&s);
        return ev.proceed(deliver_pending(t, p, &ev, &mut drk.stats));
    }
    if vector == BREAKPOINT {
        // An `int3` in the cache is an invalidated boundary (native ones are never copied):
        // continue in a fresh translation of its native instruction, delivering nothing.
        s.rip = rip.wrapping_sub(1);
        if t.cache().contains(s.rip) && roll_back(t, &mut s) {
            let native = s.rip;
            if !t.env().run_natively(native) {
                s.rip = t.translate(native).unwrap_or(native);
            }
            ev.set_state(&s);
            drk.stats.bump(Counter::PoisonRedirected);
            return ev.proceed(inst.drk_iret.load(Relaxed));
        }
        drk.stats.bump(Counter::BreakpointsInCache);
        return ev.proceed(handler);
    }
    let unwound = unwind_trampoline(inst, &mut s);
    if vector < FIRST_INTERRUPT {
        let rolled = roll_back(t, &mut s);
        if !rolled {
            drk.stats.bump(Counter::RollbackFailed);
            return ev.proceed(handler);
        }
        ev.set_state(&s);
        let Some(p) = drk.pending.take() else {
            drk.stats.bump(Counter::ExceptionsRolledBack);
            return ev.proceed(handler);
        };
        // An interrupt is waiting for a boundary this fault interrupts: deliver it now, at
        // the rolled-back state; the faulting instruction runs again after it.
        drk.stats.bump(Counter::ExceptionsWhilePending);
        let target = deliver_pending(t, p, &ev, &mut drk.stats);
        let mut regs = regs;
        if ev.frame != FRAME {
            // Drop the error code: move the saved area and slots up over it.
            for i in (0..FRAME).rev() {
                ev.set(i + 1, ev.get(i));
            }
            // SAFETY: one qword up, still within the caller's area.
            regs = unsafe { regs.add(1) };
        }
        return Continue {
            target,
            regs: regs as u64,
        };
    }
    if drk.pending.is_some() {
        // IF came back on before the boundary (a `popfq` in the rule): deliver this one at the
        // rolled-back state; the pending one still waits at its patch.
        drk.stats.bump(Counter::InterruptsWhilePending);
    } else if !unwound {
        match t.next_boundary(rip) {
            Some(NextBoundary::Here) => {
                if roll_back(t, &mut s) {
                    ev.set_state(&s);
                    drk.stats.bump(Counter::InterruptsAtBoundary);
                } else {
                    drk.stats.bump(Counter::RollbackFailed);
                }
                return ev.proceed(handler);
            }
            Some(NextBoundary::Static(targets)) => {
                if let Some(patches) = place(t, targets, rip, vector as u8) {
                    let placed = patches.iter().flatten().count() as u64;
                    drk.stats.add(Counter::PatchesPlaced, placed);
                    drk.stats.bump(Counter::InterruptsDelayed);
                    let flags = ev.frame(F_FLAGS);
                    drk.pending = Some(Pending {
                        vector: vector as u8,
                        handler,
                        if_set: flags & IF != 0,
                        patches,
                    });
                    ev.set_frame(F_FLAGS, flags & !IF);
                    return ev.proceed(inst.drk_iret.load(Relaxed));
                }
            }
            Some(NextBoundary::Dynamic) | None => {}
        }
    }
    if roll_back(t, &mut s) {
        ev.set_state(&s);
        drk.stats.bump(Counter::InterruptsRolledBack);
    } else {
        drk.stats.bump(Counter::RollbackFailed);
    }
    ev.proceed(handler)
}

/// The entry routine for `instance` at tx address `at`: its bytes and the offset of its
/// `iretq` (see `kdbt_modes::drk_entry`).
pub(crate) fn emit_entry(
    at: u64,
    instance: u64,
    stacks: Option<kdbt_modes::dispatch::DispatcherStacks>,
) -> (alloc::vec::Vec<u8>, usize) {
    drk_entry::emit(
        at,
        instance,
        kdbt_engine_drk_event as *const () as usize as u64,
        stacks,
    )
}

// The entry routine calls this as a plain function address: keep the symbol's ABI fixed.
const _: unsafe extern "C" fn(*const Instance, *mut u64) -> Continue = kdbt_engine_drk_event;
