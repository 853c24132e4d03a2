//! Rollback: signals stand in for the kernel's faults and interrupts. A SIGSEGV inside a rule's
//! expansion must roll back to exactly the state the native run faults in; timer signals
//! landing anywhere in the code cache must roll back to a state that satisfies the program's
//! invariants, and drk's "delay to the next boundary" (patch `int3` there, take the trap,
//! unpatch) must deliver at a clean boundary.

mod support;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use iced_x86::code_asm::*;
use iced_x86::{Code, Instruction, MemoryOperand, Register};
use kdbt_modes::rollback::MachineState;
use kdbt_modes::user::{in_dispatch, read_u64, Executor, Regs};
use kdbt_modes::{ModeSpec, NextBoundary};
use support::{reg::*, regs, snippet, Mem, MODES};

// ucontext gregs indices (x86-64 Linux), in the order of MachineState::gpr.
const GREGS: [usize; 16] = [13, 14, 12, 11, 15, 10, 9, 8, 0, 1, 2, 3, 4, 5, 6, 7];
const REG_RIP: usize = 16;
const REG_EFL: usize = 17;

fn state_of(uc: *mut libc::c_void) -> MachineState {
    // SAFETY: the kernel passes a valid ucontext to SA_SIGINFO handlers.
    let g = unsafe { &(*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs };
    let mut s = MachineState {
        rip: g[REG_RIP] as u64,
        rflags: g[REG_EFL] as u64,
        ..MachineState::default()
    };
    for (i, gi) in GREGS.iter().enumerate() {
        s.gpr[i] = g[*gi] as u64;
    }
    s
}

fn set_rip(uc: *mut libc::c_void, rip: u64) {
    // SAFETY: as above; the handler owns the context until it returns.
    unsafe { (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs[REG_RIP] = rip as i64 };
}

fn install(sig: i32, handler: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void)) {
    // SAFETY: installing a handler that only touches thread-local state and the executor.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
    }
}

thread_local! {
    static EXEC: Cell<*mut Executor> = const { Cell::new(std::ptr::null_mut()) };
    static FAULT: Cell<Option<MachineState>> = const { Cell::new(None) };
    static TIMER: RefCell<TimerLog> = RefCell::new(TimerLog::default());
}

// --- Faults ---------------------------------------------------------------------------------

extern "C" fn on_segv(_sig: i32, _info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let ex = EXEC.with(|e| e.get());
    if ex.is_null() {
        // Not ours: restore the default action and let the fault recur.
        // SAFETY: resetting a signal disposition.
        unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
        return;
    }
    // SAFETY: the test set EXEC to its live executor for the duration of the run.
    let ex = unsafe { &*ex };
    let mut state = state_of(uc);
    if ex.translator().cache().contains(state.rip) {
        ex.translator()
            .rollback(&mut state, &mut |a| read_u64(a))
            .expect("rollback");
    }
    FAULT.with(|f| f.set(Some(state)));
    set_rip(uc, ex.fault_exit());
}

/// Runs `entry` (natively or translated) until it faults; returns the (rolled-back) state.
fn fault_state(ex: &mut Executor, entry: u64, translated: bool, init: Regs) -> MachineState {
    install(libc::SIGSEGV, on_segv);
    FAULT.with(|f| f.set(None));
    EXEC.with(|e| e.set(ex as *mut Executor));
    let mut r = init;
    // SAFETY: the snippets fault on purpose; the handler abandons the run via fault_exit.
    unsafe {
        if translated {
            ex.run_translated(entry, &mut r).unwrap();
        } else {
            ex.run_native(entry, &mut r);
        }
    }
    EXEC.with(|e| e.set(std::ptr::null_mut()));
    let mut s = FAULT.with(|f| f.take()).expect("the snippet faulted");
    s.rflags &= support::FLAGS_MASK;
    s
}

#[test]
fn faults_inside_expansions_roll_back_to_the_native_fault_state() {
    // A page that faults, within ±2 GiB of the snippets (far from the code cache).
    let hole = Mem::new(4096, false);
    // SAFETY: our own mapping.
    unsafe { libc::mprotect(hole.ptr.cast(), 4096, libc::PROT_NONE) };
    let bad = hole.addr();
    type Build = Box<dyn Fn(&mut CodeAssembler) -> Result<(), iced_x86::IcedError>>;
    let rip_rel = move |code: Code, reg: Option<Register>| -> Build {
        Box::new(move |a: &mut CodeAssembler| {
            let mem = MemoryOperand::with_base_displ(Register::RIP, bad as i64);
            let i = match reg {
                Some(r) => Instruction::with2(code, r, mem)?,
                None => Instruction::with1(code, mem)?,
            };
            a.add_instruction(i)
        })
    };
    let cases: Vec<(&str, Build)> = vec![
        (
            "identity load",
            Box::new(|a: &mut CodeAssembler| a.mov(rax, qword_ptr(rdi))),
        ),
        (
            "jmp [mem]",
            Box::new(|a: &mut CodeAssembler| a.jmp(qword_ptr(rdi))),
        ),
        (
            "call [mem]",
            Box::new(|a: &mut CodeAssembler| a.call(qword_ptr(rdi + 8))),
        ),
        (
            "far rip load",
            rip_rel(Code::Mov_r64_rm64, Some(Register::RAX)),
        ),
        (
            "far rip load into rcx",
            rip_rel(Code::Mov_r64_rm64, Some(Register::RCX)),
        ),
        ("far rip push", rip_rel(Code::Push_rm64, None)),
        ("far rip jmp", rip_rel(Code::Jmp_rm64, None)),
        ("far rip call", rip_rel(Code::Call_rm64, None)),
    ];
    for (name, build) in &cases {
        let s = snippet(|a| {
            let mut f = a.create_label();
            a.add(rax, 1)?; // flags and registers differ from the initial ones
            a.call(f)?; // fault one call deep: the return address is on the stack
            a.ret()?;
            a.set_label(&mut f)?;
            a.push(rbx)?;
            a.cmp(rax, rcx)?;
            build(a)?;
            a.pop(rbx)?;
            a.ret()?;
            Ok(vec![])
        });
        let init = regs(&[
            (RAX, 7),
            (RCX, 9),
            (RBX, 0x1111),
            (RDI, bad),
            (RSI, 3),
            (R12, 12),
        ]);
        let mut native_ex = Executor::new(ModeSpec::parse("fast").unwrap());
        let native = fault_state(&mut native_ex, s.entry, false, init);
        for mode in MODES {
            let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
            let mut got = fault_state(&mut ex, s.entry, true, init);
            // The executors' stacks differ: compare rsp relative to each stack top.
            got.gpr[RSP] = got.gpr[RSP]
                .wrapping_sub(ex.stack_top())
                .wrapping_add(native_ex.stack_top());
            assert_eq!(got, native, "{name} [{mode}]");
        }
    }
}

// --- Timer signals and delayed delivery -----------------------------------------------------

const MAGIC_A: u64 = 0xa1a1_a1a1_a1a1_a1a1;
const MAGIC_C: u64 = 0xc3c3_c3c3_c3c3_c3c3;
const MAGIC_12: u64 = 0x1212_1212_1212_1212;

#[derive(Default)]
struct TimerLog {
    in_cache: u64,
    checked: u64,
    delivered_here: u64,
    delayed: u64,
    delivered_delayed: u64,
    dynamic: u64,
    failures: Vec<String>,
    /// Patched boundaries and the bytes under them.
    pending: Vec<(u64, u8)>,
    /// Where the loop returns to (the executor's exit).
    exit: u64,
    /// Every native PC an interrupt was rolled back to.
    rolled_back_to: std::collections::BTreeSet<u64>,
    /// Every code-cache address an interrupt arrived at and was rolled back from.
    interrupted_at: std::collections::BTreeSet<u64>,
    /// What a native state must satisfy.
    loop_rsp: u64,
    boundaries: Vec<u64>,
    f_range: (u64, u64),
    return_points: Vec<u64>,
    callret: bool,
    data: u64,
    f_addr: u64,
}

fn check_native(log: &mut TimerLog, s: &MachineState, what: &str) {
    let mut fail = |m: String| {
        if log.failures.len() < 10 {
            log.failures.push(format!("{what}: {m} (rip {:#x})", s.rip));
        }
    };
    if s.rip == log.exit && s.gpr[RSP] == log.loop_rsp + 8 {
        // Inside the lookup of the loop's final `ret`: the return has happened natively.
        return;
    }
    if !log.boundaries.contains(&s.rip) {
        fail("rolled-back rip is not a native instruction boundary".into());
    }
    if s.gpr[RAX] != MAGIC_A || s.gpr[RCX] != MAGIC_C || s.gpr[R12] != MAGIC_12 {
        fail(format!(
            "scratch registers not restored: rax {:#x} rcx {:#x}",
            s.gpr[RAX], s.gpr[RCX]
        ));
    }
    if s.gpr[RBX] != log.data || s.gpr[RSI] != log.f_addr {
        fail("rbx/rsi changed".into());
    }
    let in_f = (log.f_range.0..log.f_range.1).contains(&s.rip);
    let want_rsp = if in_f { log.loop_rsp - 8 } else { log.loop_rsp };
    if s.gpr[RSP] != want_rsp {
        fail(format!("rsp {:#x}, want {want_rsp:#x}", s.gpr[RSP]));
    }
    if in_f && !log.callret {
        let ret = read_u64(s.gpr[RSP]).unwrap_or(0);
        if !log.return_points.contains(&ret) {
            fail(format!(
                "return address {ret:#x} is not a native return point"
            ));
        }
    }
}

extern "C" fn on_timer(_sig: i32, _info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let ex = EXEC.with(|e| e.get());
    if ex.is_null() || in_dispatch() {
        return;
    }
    // SAFETY: EXEC is the running test's executor; the interrupted code is translated code
    // (not the dispatcher), which never touches the translator.
    interrupt(unsafe { &mut *ex }, state_of(uc));
}

/// An interrupt arriving at `tx` (a timer signal or a single-step trap): roll back and check
/// the native state, then deliver here or delay to the next boundary as drk does.
fn interrupt(ex: &mut Executor, tx: MachineState) {
    if ex.translator().tx_info(tx.rip).is_none() {
        return;
    }
    TIMER.with(|t| {
        let mut log = t.borrow_mut();
        log.in_cache += 1;
        let mut s = tx;
        match ex.translator().rollback(&mut s, &mut |a| read_u64(a)) {
            Ok(_) => {
                log.checked += 1;
                log.interrupted_at.insert(tx.rip);
                if s.rip != log.exit {
                    log.rolled_back_to.insert(s.rip);
                }
                check_native(&mut log, &s, "rollback");
            }
            Err(e) => log
                .failures
                .push(format!("rollback failed at {:#x}: {e:?}", tx.rip)),
        }
        match ex.translator().next_boundary(tx.rip) {
            Some(NextBoundary::Here) => log.delivered_here += 1,
            Some(NextBoundary::Static(targets)) if log.pending.is_empty() => {
                for t in targets.into_iter().flatten() {
                    let mut old = [0u8];
                    ex.translator().read_code(t, &mut old);
                    log.pending.push((t, old[0]));
                    // SAFETY: one byte, patched by the only thread running this cache.
                    unsafe { ex.translator_mut().write_code(t, &[0xcc]) };
                }
                log.delayed += 1;
            }
            Some(NextBoundary::Static(_)) => {}
            Some(NextBoundary::Dynamic) | None => log.dynamic += 1,
        }
    });
}

/// RFLAGS.TF: the CPU traps after every instruction (a debug exception, #DB).
const TF: u64 = 0x100;
/// `si_code` of a SIGTRAP raised by `int3` (#BP): Linux sends it as SI_KERNEL.
const SI_KERNEL: i32 = 0x80;

/// Writes `msg` to stderr and aborts: a signal handler cannot unwind, and the test harness's
/// captured output is lost on abort.
fn die(msg: &str) -> ! {
    // SAFETY: write(2) on stderr with a valid buffer.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
    std::process::abort();
}

extern "C" fn on_trap(_sig: i32, info: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let ex = EXEC.with(|e| e.get());
    // SAFETY: as in on_timer.
    let ex = unsafe { &mut *ex };
    let mut s = state_of(uc);
    // A single step and an `int3` are told apart by the exception, not by the step's
    // si_code: #DB usually reports TRAP_TRACE, but some hypervisors lose DR6.BS and the
    // same step arrives as TRAP_BRKPT. #BP always arrives as SI_KERNEL.
    // SAFETY: the kernel passes a valid siginfo to SA_SIGINFO handlers.
    if unsafe { (*info).si_code } != SI_KERNEL {
        if s.rflags & TF == 0 {
            die(&format!("a debug trap at {:#x} without TF\n", s.rip));
        }
        if s.rip == ex.return_address() {
            // The run is over: stop stepping before the host code after it.
            // SAFETY: as in set_rip.
            unsafe { (*(uc as *mut libc::ucontext_t)).uc_mcontext.gregs[REG_EFL] &= !(TF as i64) };
            return;
        }
        // A patched boundary pending means drk cleared IF in the frame: no interrupt
        // arrives until the delayed one is delivered.
        let masked = TIMER.with(|t| !t.borrow().pending.is_empty());
        if !masked && !in_dispatch() {
            interrupt(ex, s);
        }
        return;
    }
    let at = s.rip - 1;
    TIMER.with(|t| {
        let mut log = t.borrow_mut();
        if !log.pending.iter().any(|(a, _)| *a == at) {
            die(&format!(
                "an int3 at {at:#x} that no delayed interrupt patched\n"
            ));
        }
        for (a, b) in std::mem::take(&mut log.pending) {
            // SAFETY: restoring the byte we patched.
            unsafe { ex.translator_mut().write_code(a, &[b]) };
        }
        // The delayed interrupt is delivered here: a clean boundary, exact native state.
        if ex.translator().next_boundary(at) != Some(NextBoundary::Here) {
            log.failures.push(format!(
                "delayed delivery at {at:#x} is not a clean boundary"
            ));
        }
        s.rip = at;
        if ex
            .translator()
            .rollback(&mut s, &mut |a| read_u64(a))
            .is_ok()
        {
            log.rolled_back_to.insert(s.rip);
            check_native(&mut log, &s, "delayed");
        }
        log.delivered_delayed += 1;
    });
    set_rip(uc, at);
}

fn timer_loop() -> support::Snippet {
    snippet(|a| {
        let mut top = a.create_label();
        let mut next = a.create_label();
        let mut f = a.create_label();
        let mut far = a.create_label();
        let mut ret1 = a.create_label();
        let mut ret2 = a.create_label();
        let mut ret3 = a.create_label();
        a.set_label(&mut top)?;
        a.call(f)?;
        a.set_label(&mut ret1)?;
        a.call(rsi)?;
        a.set_label(&mut ret2)?;
        a.call(qword_ptr(rbx))?;
        a.set_label(&mut ret3)?;
        a.lea(rdx, ptr(next))?;
        a.jmp(rdx)?;
        a.set_label(&mut next)?;
        a.mov(r8, qword_ptr(far))?; // far RIP-relative: spills a scratch register
        a.add(r10, r8)?;
        a.dec(r14)?;
        a.jnz(top)?;
        a.ret()?;
        a.set_label(&mut f)?;
        a.add(r9, 1)?;
        a.ret()?;
        a.set_label(&mut far)?;
        a.dq(&[3])?;
        Ok(vec![f, far, ret1, ret2, ret3])
    })
}

/// Modes the interrupt tests run in.
const INTERRUPT_MODES: &[&str] = &[
    "fast",
    "fast:no-callret",
    "drk",
    "drk:no-jumptable,inscount",
];

/// The timer loop's native instruction boundaries (up to its data).
fn loop_boundaries(s: &support::Snippet) -> Vec<u64> {
    let far = s.labels[1];
    let code = &s.mem.bytes()[..(far - s.entry) as usize];
    let mut d = iced_x86::Decoder::with_ip(64, code, s.entry, iced_x86::DecoderOptions::NONE);
    let mut boundaries = Vec::new();
    while d.can_decode() {
        boundaries.push(d.decode().ip());
    }
    boundaries
}

/// Runs the timer loop for `iterations` translated in `mode`, with `rflags` (TF to step it),
/// while `during` runs beside it; returns the final registers and the interrupt log.
fn run_loop(
    ex: &mut Executor,
    s: &support::Snippet,
    mode: &str,
    iterations: u64,
    rflags: u64,
    during: impl FnOnce() -> Box<dyn FnOnce()>,
) -> (Regs, TimerLog) {
    let f = s.labels[0];
    let data = support::Mem::new(4096, false);
    // SAFETY: our buffer: [data] = &f for the memory-indirect call.
    unsafe { *(data.ptr as *mut u64) = f };
    let mut r = regs(&[
        (RAX, MAGIC_A),
        (RCX, MAGIC_C),
        (R12, MAGIC_12),
        (RBX, data.addr()),
        (RSI, f),
        (14, iterations),
    ]);
    r.rflags = rflags;
    TIMER.with(|t| {
        *t.borrow_mut() = TimerLog {
            loop_rsp: ex.stack_top() - 8,
            boundaries: loop_boundaries(s),
            f_range: (f, s.labels[1]),
            return_points: s.labels[2..].to_vec(),
            callret: ModeSpec::parse(mode).unwrap().options.callret,
            data: data.addr(),
            f_addr: f,
            exit: ex.return_address(),
            ..TimerLog::default()
        }
    });
    EXEC.with(|e| e.set(ex as *mut Executor));
    let stop = during();
    // SAFETY: the loop snippet is self-contained.
    unsafe { ex.run_translated(s.entry, &mut r).unwrap() };
    stop();
    EXEC.with(|e| e.set(std::ptr::null_mut()));
    let log = TIMER.with(|t| std::mem::take(&mut *t.borrow_mut()));
    for (a, b) in &log.pending {
        // SAFETY: restoring bytes patched by a delivery that never happened.
        unsafe { ex.translator_mut().write_code(*a, &[*b]) };
    }
    assert!(log.failures.is_empty(), "{mode}: {:#?}", log.failures);
    assert_eq!(
        (r.gpr[9], r.gpr[10]),
        (3 * iterations, 3 * iterations),
        "{mode}: the computation survived"
    );
    assert_eq!((r.gpr[RAX], r.gpr[RCX]), (MAGIC_A, MAGIC_C), "{mode}");
    (r, log)
}

fn nothing_beside() -> Box<dyn FnOnce()> {
    Box::new(|| {})
}

/// Every tx address the loop executes is, in turn, where an interrupt arrives: the executor
/// single-steps the warm code cache (TF), and each step trap in the cache is handled as an
/// interrupt. Deterministic: the same addresses are hit on an idle or a loaded machine.
#[test]
fn an_interrupt_at_every_tx_address_rolls_back_and_delays_to_the_next_boundary() {
    let s = timer_loop();
    install(libc::SIGTRAP, on_trap);
    for mode in INTERRUPT_MODES {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        // Warm-up: translate and chain everything, so the stepped run stays in the cache.
        run_loop(&mut ex, &s, mode, 2, 0x202, nothing_beside);
        let (_, log) = run_loop(&mut ex, &s, mode, 3, 0x202 | TF, nothing_beside);
        assert!(
            log.pending.is_empty(),
            "{mode}: a delayed interrupt was never delivered"
        );
        assert!(log.delayed >= 1, "{mode}: no interrupt was delayed");
        assert_eq!(log.delivered_delayed, log.delayed, "{mode}");
        assert!(log.delivered_here >= 1, "{mode}: none at a native boundary");
        let all: std::collections::BTreeSet<u64> = loop_boundaries(&s).into_iter().collect();
        assert_eq!(
            log.rolled_back_to, all,
            "{mode}: every native instruction is a rollback target of some tx address"
        );
        eprintln!(
            "{mode}: {} steps in the cache, {} at a boundary, {} delayed and delivered, {} dynamic",
            log.in_cache, log.delivered_here, log.delayed, log.dynamic
        );
    }
}

/// Timer signals at random points: whatever tx address each lands on, the rolled-back state
/// is the native one and a delayed delivery lands on a clean boundary. How many land in the
/// cache, and where, depends on the host: nothing here asserts on it.
#[test]
fn timer_signals_at_random_points_see_native_state() {
    let s = timer_loop();
    install(libc::SIGUSR1, on_timer);
    install(libc::SIGTRAP, on_trap);
    for mode in INTERRUPT_MODES {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let sender = move || -> Box<dyn FnOnce()> {
            let stop = Arc::new(AtomicBool::new(false));
            let flag = stop.clone();
            let thread = std::thread::spawn(move || {
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                let mut sent = 0u64;
                while !flag.load(Ordering::Relaxed) && sent < 200_000 {
                    // SAFETY: signals our own test thread, whose handler is installed.
                    unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
                    sent += 1;
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            });
            Box::new(move || {
                stop.store(true, Ordering::Relaxed);
                thread.join().unwrap();
            })
        };
        let (_, log) = run_loop(&mut ex, &s, mode, 1_500_000, 0x202, sender);
        eprintln!(
            "{mode}: {} signals in the cache, {} at a boundary, {} delayed ({} delivered), {} dynamic",
            log.in_cache, log.delivered_here, log.delayed, log.delivered_delayed, log.dynamic
        );
    }
}

/// The code-cache addresses a run executes from `at` up to and including the first `jmp
/// rel32`, taking every `jrcxz` (an inline cache's hit path, or a fill stub).
fn path_to_jmp(ex: &Executor, mut at: u64) -> Vec<u64> {
    let mut path = Vec::new();
    loop {
        let mut bytes = [0u8; 16];
        ex.translator().read_code(at, &mut bytes);
        let i = iced_x86::Decoder::with_ip(64, &bytes, at, iced_x86::DecoderOptions::NONE).decode();
        path.push(at);
        match i.code() {
            Code::Jmp_rel32_64 => return path,
            Code::Jrcxz_rel8_64 => at = i.near_branch_target(),
            _ => at = i.next_ip(),
        }
    }
}

/// A cold run stepped from its first instruction: every address of the inline caches' fill
/// stubs, and in drk of the IC landings' hit paths (emitted during this run), is where an
/// interrupt arrives, and each rolls back to a native state ([`check_native`]).
#[test]
fn an_interrupt_at_every_address_of_an_inline_cache_fill_and_hit_rolls_back() {
    let s = timer_loop();
    install(libc::SIGTRAP, on_trap);
    for mode in ["drk", "fast", "fast:no-callret"] {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let (_, log) = run_loop(&mut ex, &s, mode, 3, 0x202 | TF, nothing_beside);
        let t = ex.translator();
        let sites: Vec<(u64, u64)> = t
            .cache()
            .exits()
            .iter()
            .filter_map(|x| match x.kind {
                kdbt_modes::cache::ExitKind::InlineCache { field } => Some((field, x.stub)),
                _ => None,
            })
            .collect();
        // `call rsi`, `call [rbx]` and `jmp rdx`.
        assert_eq!(sites.len(), 3, "{mode}");
        assert_eq!(ex.stats().inline_cache_fills, 3, "{mode}");
        for (field, stub) in sites {
            for at in path_to_jmp(&ex, stub) {
                assert!(
                    log.interrupted_at.contains(&at),
                    "{mode}: fill stub address {at:#x} never rolled back"
                );
            }
            if mode == "drk" {
                let mut rel = [0u8; 4];
                t.read_code(field, &mut rel);
                let ic = (field + 4).wrapping_add(i32::from_le_bytes(rel) as i64 as u64);
                for at in path_to_jmp(&ex, ic) {
                    assert!(
                        log.interrupted_at.contains(&at),
                        "{mode}: IC landing address {at:#x} never rolled back"
                    );
                }
            }
        }
    }
}
