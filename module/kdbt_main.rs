// SPDX-License-Identifier: GPL-2.0

//! kdbt: dynamic binary translation of the running Linux kernel, in the BTKernel design
//! (Kedia & Bansal, SOSP'13) or the DRK design (Feiner et al., ASPLOS'12), chosen at switch-on.
//!
//! This file is the module's root: it owns the module's resources (built in `init`, released in
//! `Drop`). The translator itself lives in the engine object (crate `kdbt-modes`, reached through
//! [`translator`]); kernel APIs without a Rust-for-Linux abstraction go through the C shim.
//!
//! Control: `/dev/kdbt` ([`control`], ABI in [`control_abi`]); text: `<debugfs>/kdbt/{status,
//! stats,funccount}` ([`debugfs`], [`funcs`]). Switching on interposes on every CPU's IDT and syscall entry
//! ([`interposer`]): the entries lead into the code cache, where the kernel runs translated;
//! [`hooks`] covers the kernel's other ways of meeting translated code.

use core::fmt::Write;
use kernel::prelude::*;
use kernel::sync::{new_mutex, Mutex};

mod code_cache;
mod control;
mod control_abi;
mod cpu;
mod debugfs;
mod dispatcher_stack;
mod entry_stub;
mod flush;
mod funcs;
mod hooks;
mod idt;
mod interposer;
mod msr;
mod stats;
mod syscall_entry;
mod translator;

module! {
    type: Kdbt,
    name: "kdbt",
    author: "kdbt developers",
    description: "Dynamic binary translation of the running kernel (BTKernel and DRK designs)",
    license: "GPL",
}

/// Instructions of the syscall entry shown at load and in the status file.
const ENTRY_INSNS: usize = 8;
/// Bytes of code read at the syscall entry: enough for [`ENTRY_INSNS`] instructions (at most
/// 15 bytes each, but entry code is short instructions; an entry stub is 37 bytes followed by
/// more cache).
const ENTRY_BYTES: usize = 64;
/// Largest status text, bytes (`KDBT_STATUS_MAX` in module/shim.c).
const STATUS_MAX: usize = 8192;

/// State shared by the control device and the debugfs files.
#[pin_data]
pub(crate) struct Shared {
    /// The entries and everything behind them; the one lock of every state change.
    #[pin]
    interposer: Mutex<interposer::Interposer>,
}

/// The loaded module. Fields drop in order: no more ioctls, no more readers, then the state
/// (which frees any translator), then the function set, then the kernel hooks, then the
/// engine's heap.
struct Kdbt {
    _control: control::ControlDevice,
    _debugfs: debugfs::DebugFiles,
    _flush: flush::Work,
    shared: Pin<KBox<Shared>>,
    _funcs: funcs::FuncSet,
    _hooks: hooks::Hooks,
    _arena: translator::Arena,
}

impl kernel::Module for Kdbt {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let arena = translator::Arena::give_to_engine()?;
        let lstar = syscall_entry::current();
        pr_info!("loaded; MSR_LSTAR (entry_SYSCALL_64) = {:#x}\n", lstar);
        let mut text = KVec::from_elem(0u8, STATUS_MAX, GFP_KERNEL)?;
        let n = write_entry_disassembly(lstar, &mut text)?;
        for line in text[..n].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            // The engine writes ASCII only; anything else would be a bug worth seeing as such.
            let line = core::str::from_utf8(line).unwrap_or("(non-ASCII disassembly)");
            pr_info!("  {}\n", line);
        }
        let hooks = hooks::Hooks::register()?;
        let interposer = interposer::Interposer::new()?;
        let cache = interposer.cache();
        pr_info!(
            "code cache: {} bytes executed at {:#x}, written at {:#x}\n",
            cache.len(),
            cache.exec(),
            cache.alias()
        );
        let shared = KBox::pin_init(
            pin_init!(Shared {
                interposer <- new_mutex!(interposer),
            }),
            GFP_KERNEL,
        )?;
        // SAFETY: `shared` outlives the work: the fields drop in order.
        let flush = unsafe { flush::Work::start(&shared) };
        let debugfs = debugfs::DebugFiles::create(&shared)?;
        let control = control::ControlDevice::register(&shared)?;
        pr_info!("control device {} ready\n", control_abi::DEVICE_PATH);
        Ok(Kdbt {
            _control: control,
            _debugfs: debugfs,
            _flush: flush,
            shared,
            _funcs: funcs::FuncSet::new(),
            _hooks: hooks,
            _arena: arena,
        })
    }
}

impl Drop for Kdbt {
    fn drop(&mut self) {
        hooks::cancel_drain();
        // Normally off here (switch-on pins the module); a forced unload switches off in the
        // interposer's own Drop.
        if let Some(mode) = self.shared.interposer.lock().mode() {
            pr_warn!("unloading while switched on ({}): switching off\n", mode);
        }
        pr_info!("unloaded\n");
    }
}

/// Decodes the first [`ENTRY_INSNS`] instructions at `entry` into `out`; returns bytes written.
fn write_entry_disassembly(entry: u64, out: &mut [u8]) -> Result<usize> {
    // SAFETY: `entry` is entry_SYSCALL_64 in kernel text (hundreds of bytes of entry code) or
    // a stub or translated block in the code cache (megabytes, the entry's translation made
    // first); either way ENTRY_BYTES are mapped and readable.
    let code = unsafe { core::slice::from_raw_parts(entry as *const u8, ENTRY_BYTES) };
    translator::disassemble(code, entry, ENTRY_INSNS, out)
}

/// Renders the status file: state and mode, the syscall entry this CPU uses now with its first
/// instructions as the engine decodes them, the entries kept native, and the code cache's W^X
/// layout checked live.
fn render_status(shared: &Shared, w: &mut debugfs::TextWriter<'_>) -> Result {
    let interposer = shared.interposer.lock();
    let lstar = syscall_entry::current();
    let state = match interposer.mode() {
        Some(mode) => {
            let _ = writeln!(w, "state: on\nmode: {mode}");
            let _ = writeln!(w, "entries: {}", interposer.entries_text());
            "on"
        }
        None => "off",
    };
    if state == "off" {
        let _ = writeln!(w, "state: off");
        let d = interposer.drain();
        match interposer.translator() {
            Some(t) if interposer.draining() => {
                let _ = writeln!(
                    w,
                    "draining: {} (attempts {} stack words held {})",
                    t.spec(),
                    d.attempts,
                    d.held
                );
            }
            Some(t) => {
                let _ = writeln!(
                    w,
                    "kept warm: {} (drains completed {} stack words rewritten {})",
                    t.spec(),
                    d.completed,
                    d.rewritten
                );
            }
            None => {}
        }
    }
    let _ = write!(w, "native gates:");
    for v in interposer.native_gates() {
        let _ = write!(w, " {v:#04x}");
    }
    let _ = write!(w, "\nuntranslated gates:");
    for v in interposer.untranslated_gates() {
        let _ = write!(w, " {v:#04x}");
    }
    let _ = writeln!(w);
    let cache = interposer.cache();
    let probe = interposer.probe();
    let text_distance = cache
        .exec()
        .abs_diff(lstar)
        .max((cache.exec() + cache.len() as u64).abs_diff(lstar));
    let _ = writeln!(
        w,
        "code cache: exec {:#x} alias {:#x} bytes {}",
        cache.exec(),
        cache.alias(),
        cache.len()
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    let _ = writeln!(
        w,
        "code cache exec view: writable {} executable {} write_errno {}",
        yes(probe.exec_writable),
        yes(probe.exec_executable),
        probe.exec_write_errno
    );
    let _ = writeln!(
        w,
        "code cache alias: writable {} executable {} write_visible_in_exec {}",
        yes(probe.alias_writable),
        yes(probe.alias_executable),
        yes(probe.alias_write_visible)
    );
    let _ = writeln!(
        w,
        "code cache max distance to syscall entry: {:#x} (rel32 reach {:#x})",
        text_distance,
        code_cache::REL32_REACH
    );
    let _ = writeln!(w, "lstar: {lstar:#x}");
    let in_cache = (cache.exec()..cache.exec() + cache.len() as u64).contains(&lstar);
    let translated = if in_cache && interposer.counting() {
        let _ = writeln!(w, "syscall entry stub:");
        let n = write_entry_disassembly(lstar, w.rest())?;
        w.advance(n);
        // The stub is `inc qword [rip+counter]` (7 bytes) then `jmp rel32` (module/entry_stub.rs).
        // SAFETY: LSTAR is this CPU's syscall stub, 12 mapped bytes in the code cache.
        let rel = unsafe { core::ptr::read_unaligned((lstar + 8) as *const i32) };
        Some((lstar + 12).wrapping_add(rel as i64 as u64))
    } else if in_cache {
        Some(lstar)
    } else {
        let _ = writeln!(w, "entry_SYSCALL_64:");
        let n = write_entry_disassembly(lstar, w.rest())?;
        w.advance(n);
        None
    };
    if let Some(tx) = translated {
        let _ = writeln!(w, "translated entry_SYSCALL_64 at {tx:#x}:");
        let n = write_entry_disassembly(tx, w.rest())?;
        w.advance(n);
    }
    Ok(())
}

/// Renders the statistics file.
fn render_stats(shared: &Shared, w: &mut debugfs::TextWriter<'_>) -> Result {
    let interposer = shared.interposer.lock();
    let _ = writeln!(w, "state: {}", interposer.mode().unwrap_or("off"));
    if interposer.counting() {
        interposer.stats().render(w);
    } else {
        // Not a zero: entries led straight into the cache and nothing counted them.
        let _ = writeln!(w, "entries: not counted (the mode spec has no `stats`)");
    }
    let (pokes, invalidating, redirected) = hooks::counts();
    let _ = writeln!(
        w,
        "hooks: text_pokes {pokes} text_pokes_invalidating {invalidating} traps_redirected \
         {redirected}"
    );
    // One method counts at a time, so their sum is that method's count (docs/INSTRUMENT.md).
    let _ = writeln!(w, "funccount: func_hits {}", funcs::hits());
    let f = interposer.flushes();
    let _ = writeln!(
        w,
        "flush: cache_flushes {} flush_refusals {} stack_words_rewritten {} stubs_retargeted {}",
        f.done, f.refused, f.words_rewritten, f.stubs_retargeted
    );
    if let Some(t) = interposer.translator() {
        let n = t.render_stats(w.rest())?;
        w.advance(n);
    }
    Ok(())
}
