//! Test support shared by the integration tests: native snippets, the differential helper.
#![allow(dead_code)]

use iced_x86::code_asm::CodeAssembler;
use kdbt_modes::user::{ExecConfig, Executor, Regs};
use kdbt_modes::ModeSpec;

/// The design/option combinations every differential case runs in.
pub const MODES: &[&str] = &[
    "fast",
    "fast:no-callret",
    "fast:no-chaining",
    "fast:no-jumptable",
    "fast:no-flags-liveness,inscount,indirect",
    "drk",
    "drk:no-chaining,no-jumptable",
    "drk:inscount,indirect",
];

/// Status flags and DF: what a translation must preserve.
pub const FLAGS_MASK: u64 = 0xcd5;

/// Anonymous memory, unmapped on drop.
pub struct Mem {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mem {
    pub fn new(len: usize, exec: bool) -> Mem {
        let prot = libc::PROT_READ | libc::PROT_WRITE | if exec { libc::PROT_EXEC } else { 0 };
        // SAFETY: plain anonymous mmap, checked.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Mem { ptr: p.cast(), len }
    }
    /// Read-write memory in the low 2 GiB (`MAP_32BIT`): addressable by an absolute disp32,
    /// as kernel data is from kernel code.
    pub fn low(len: usize) -> Mem {
        // SAFETY: plain anonymous mmap, checked.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Mem { ptr: p.cast(), len }
    }
    pub fn addr(&self) -> u64 {
        self.ptr as u64
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: our mapping.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: our mapping.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Native code assembled by a test, in its own executable mapping (far from the code cache,
/// so RIP-relative operands in it also exercise the far rule).
pub struct Snippet {
    pub mem: Mem,
    pub entry: u64,
    pub labels: Vec<u64>,
}

type Build<'a> = Box<
    dyn FnOnce(
            &mut CodeAssembler,
        ) -> Result<Vec<iced_x86::code_asm::CodeLabel>, iced_x86::IcedError>
        + 'a,
>;

/// Assembles `build` at a fresh mapping. `build` returns labels whose addresses the test wants.
pub fn snippet(
    build: impl FnOnce(
        &mut CodeAssembler,
    ) -> Result<Vec<iced_x86::code_asm::CodeLabel>, iced_x86::IcedError>,
) -> Snippet {
    assemble_in(Mem::new(1 << 16, true), Box::new(build))
}

/// [`snippet`] in a mapping near this binary's code, as the executor places its code cache:
/// for rules that branch straight to native code, which must be in rel32 reach (as kernel text
/// always is from the module area).
pub fn snippet_near_code(
    build: impl FnOnce(
        &mut CodeAssembler,
    ) -> Result<Vec<iced_x86::code_asm::CodeLabel>, iced_x86::IcedError>,
) -> Snippet {
    let len = 1usize << 16;
    let here = assemble_in as *const () as usize as u64;
    for step in 1..64u64 {
        for hint in [here.wrapping_sub(step << 22), here.wrapping_add(step << 22)] {
            let hint = hint & !0xffff;
            // SAFETY: anonymous mmap at a free address (NOREPLACE), checked.
            let p = unsafe {
                libc::mmap(
                    hint as *mut _,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p as u64 == hint {
                return assemble_in(Mem { ptr: p.cast(), len }, Box::new(build));
            }
        }
    }
    panic!("no free address near the test binary's code");
}

fn assemble_in(mut mem: Mem, build: Build<'_>) -> Snippet {
    let mut a = CodeAssembler::new(64).unwrap();
    let labels = build(&mut a).unwrap();
    let result = a
        .assemble_options(
            mem.addr(),
            iced_x86::BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
        )
        .unwrap();
    let code = &result.inner.code_buffer;
    mem.bytes_mut()[..code.len()].copy_from_slice(code);
    let labels = labels.iter().map(|l| result.label_ip(l).unwrap()).collect();
    let entry = mem.addr();
    Snippet { mem, entry, labels }
}

/// The machine a differential case starts from: registers (rsp set by the helper) and a data
/// buffer (4 KiB) whose address the case puts where it likes.
pub struct Case {
    pub regs: Regs,
    pub data: Vec<u8>,
}

/// What one run left behind.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub regs: Regs,
    pub data: Vec<u8>,
    pub live_stack: Vec<u8>,
}

/// Shared memory for a differential case: same addresses for the native and translated runs.
pub struct Machine {
    pub data: Mem,
    pub stack: Mem,
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            data: Mem::new(1 << 16, false),
            stack: Mem::new(1 << 20, false),
        }
    }
    pub fn stack_top(&self) -> u64 {
        self.stack.addr() + self.stack.len as u64 - 256
    }
}

fn prepare(m: &mut Machine, case: &Case) -> Regs {
    m.data.bytes_mut().fill(0);
    m.data.bytes_mut()[..case.data.len()].copy_from_slice(&case.data);
    m.stack.bytes_mut().fill(0x5a);
    let mut regs = case.regs;
    regs.gpr[4] = m.stack_top();
    regs
}

fn outcome(m: &Machine, regs: Regs) -> Outcome {
    let rsp = regs.gpr[4];
    let top = m.stack.addr() + m.stack.len as u64;
    assert!(
        rsp >= m.stack.addr() && rsp <= top,
        "rsp left the stack: {rsp:#x}"
    );
    let live = m.stack.bytes()[(rsp - m.stack.addr()) as usize..].to_vec();
    let mut regs = regs;
    regs.rflags &= FLAGS_MASK;
    Outcome {
        regs,
        data: m.data.bytes()[..4096].to_vec(),
        live_stack: live,
    }
}

/// Runs `entry` natively.
pub fn run_native(m: &mut Machine, entry: u64, case: &Case) -> Outcome {
    let ex = Executor::new(ModeSpec::parse("fast").unwrap());
    let mut regs = prepare(m, case);
    // SAFETY: test snippets are written to be run like this.
    unsafe { ex.run_native(entry, &mut regs) };
    outcome(m, regs)
}

/// Runs `entry` translated in `mode`; returns the outcome and the executor (for stats).
pub fn run_translated(m: &mut Machine, entry: u64, case: &Case, mode: &str) -> (Outcome, Executor) {
    run_translated_with(m, entry, case, mode, ExecConfig::default())
}

/// [`run_translated`] with an executor configuration.
pub fn run_translated_with(
    m: &mut Machine,
    entry: u64,
    case: &Case,
    mode: &str,
    cfg: ExecConfig,
) -> (Outcome, Executor) {
    let spec = ModeSpec::parse(mode).unwrap();
    let mut ex = Executor::with_config(spec, cfg);
    let mut regs = prepare(m, case);
    // SAFETY: as for the native run.
    unsafe {
        ex.run_translated(entry, &mut regs)
            .expect("translate entry")
    };
    (outcome(m, regs), ex)
}

/// The differential check: `entry` run natively, then translated in every mode of `modes`;
/// registers (flags masked to status+DF), the data buffer and the live stack must match.
/// Returns the executors, one per mode, for further assertions on statistics.
/// `case` gets the address of the data buffer.
pub fn differential(
    name: &str,
    entry: u64,
    case: impl Fn(u64) -> Case,
    modes: &[&str],
) -> Vec<(String, Executor)> {
    let out = differential_allowing_native(name, entry, case, modes);
    for (mode, ex) in &out {
        assert_eq!(
            ex.stats().untranslatable,
            0,
            "{name} [{mode}]: part of the run fell back to native"
        );
    }
    out
}

/// [`differential`] for cases that expect some code to run natively (untranslatable).
pub fn differential_allowing_native(
    name: &str,
    entry: u64,
    case: impl Fn(u64) -> Case,
    modes: &[&str],
) -> Vec<(String, Executor)> {
    let mut m = Machine::new();
    let case = &case(m.data.addr());
    let native = run_native(&mut m, entry, case);
    let mut out = Vec::new();
    for mode in modes {
        let (got, ex) = run_translated(&mut m, entry, case, mode);
        if got != native {
            for (k, (a, b)) in native.regs.gpr.iter().zip(got.regs.gpr.iter()).enumerate() {
                if a != b {
                    eprintln!("{name} [{mode}]: gpr{k}: native {a:#x} translated {b:#x}");
                }
            }
            if native.regs.rflags != got.regs.rflags {
                eprintln!(
                    "{name} [{mode}]: rflags native {:#x} translated {:#x}",
                    native.regs.rflags, got.regs.rflags
                );
            }
            if native.data != got.data {
                eprintln!("{name} [{mode}]: data buffers differ");
            }
            if native.live_stack != got.live_stack {
                eprintln!("{name} [{mode}]: live stacks differ");
            }
            panic!("{name}: translated run in `{mode}` differs from the native run");
        }
        out.push((mode.to_string(), ex));
    }
    out
}

/// Registers with the given (index, value) pairs set and rflags = 0x202.
pub fn regs(values: &[(usize, u64)]) -> Regs {
    let mut r = Regs {
        rflags: 0x202,
        ..Regs::default()
    };
    for (i, v) in values {
        r.gpr[*i] = *v;
    }
    r
}

/// Register numbers.
pub mod reg {
    pub const RAX: usize = 0;
    pub const RCX: usize = 1;
    pub const RDX: usize = 2;
    pub const RBX: usize = 3;
    pub const RSP: usize = 4;
    pub const RBP: usize = 5;
    pub const RSI: usize = 6;
    pub const RDI: usize = 7;
    pub const R8: usize = 8;
    pub const R9: usize = 9;
    pub const R10: usize = 10;
    pub const R11: usize = 11;
    pub const R12: usize = 12;
    pub const R13: usize = 13;
    pub const R14: usize = 14;
    pub const R15: usize = 15;
}

/// Differential run of a real function `f` (SysV, ≤ 6 integer arguments): natively once, then
/// translated in every mode. `setup` builds fresh inputs and returns the arguments and a state
/// owning the memory they point into; `observe` reads what the run left in that state. The
/// return value (rax) and the observation must match the native run's. Returns each mode's
/// statistics.
pub fn differential_fn<S, O: PartialEq + std::fmt::Debug>(
    name: &str,
    modes: &[&str],
    f: u64,
    setup: impl Fn() -> (Vec<u64>, S),
    observe: impl Fn(&S) -> O,
) -> Vec<(String, kdbt_modes::Stats)> {
    let native = {
        let ex = Executor::new(ModeSpec::parse("fast").unwrap());
        let (args, state) = setup();
        // SAFETY: callers pass functions that are safe to call with what `setup` builds.
        let rax = unsafe { ex.call_native(f, &args) };
        (rax, observe(&state))
    };
    let mut out = Vec::new();
    for mode in modes {
        let mut ex = Executor::new(ModeSpec::parse(mode).unwrap());
        let (args, state) = setup();
        // SAFETY: as above.
        let rax = unsafe { ex.call(f, &args).expect("translate entry") };
        let got = (rax, observe(&state));
        assert_eq!(
            got, native,
            "{name}: translated run in `{mode}` differs from the native run"
        );
        let stats = ex.stats();
        assert_eq!(
            stats.untranslatable, 0,
            "{name} [{mode}]: part of the run fell back to native"
        );
        out.push((mode.to_string(), stats));
    }
    out
}

/// The address of a function (or any symbol) for the executor.
pub fn addr<T>(f: *const T) -> u64 {
    f as u64
}
