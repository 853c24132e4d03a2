//! `kdbt-hostile`: an unprivileged program that attacks the kernel's entry and return paths
//! the way user programs can: hostile `%gs`/`%fs` selectors and bases (directly, through
//! `arch_prctl`, `wrgsbase`/`wrfsbase` and ptrace on a stopped child), bad selectors,
//! `sigreturn` to a bad CS and to a 16-bit stack segment from the LDT (espfix64), single-steps
//! over a syscall, and `int $0x80` without IA32 emulation.
//!
//! Each case runs in a child of its own, so a fault that kills it ends only that case. The
//! program prints one line per case and round, `case NAME: exit N` or `case NAME: signal N`,
//! which depend only on the kernel's behaviour: a run under kdbt must print exactly what the
//! native run prints, and the kernel must survive it. Usage: `kdbt-hostile [ROUNDS]`.

use std::arch::asm;
use std::io::Write;

/// A kernel address user space must never get into `%gs`/`%fs` base through the kernel's
/// interfaces (the direct map on x86-64).
const KERNEL_ADDRESS: u64 = 0xffff_8880_0000_0000;
/// A non-canonical address.
const NON_CANONICAL: u64 = 0x8000_0000_0000_0000;
/// An LDT selector (index 0, RPL 3).
const LDT_SELECTOR: u32 = 0x7;
/// `arch_prctl` codes.
const ARCH_SET_GS: i32 = 0x1001;
const ARCH_GET_GS: i32 = 0x1004;
/// `AT_HWCAP2` bit: the kernel allows `rd/wr{fs,gs}base` in user mode.
const HWCAP2_FSGSBASE: u64 = 1 << 1;
/// `struct user_regs_struct` offsets (bytes) for `PTRACE_POKEUSER`.
const USER_GS_BASE: usize = 22 * 8;
const USER_GS: usize = 26 * 8;
/// `uc_flags`: the sigcontext's SS is valid and must be restored as given.
const UC_SIGCONTEXT_SS: u64 = 0x2;
const UC_STRICT_RESTORE_SS: u64 = 0x4;
/// Exit status of a case the CPU or kernel cannot run (the same natively and translated).
const UNSUPPORTED: i32 = 77;

/// What a case's child runs; its exit status is the outcome.
type CaseFn = fn() -> i32;

/// The cases, by name.
const CASES: &[(&str, CaseFn)] = &[
    ("gs_selector_null", gs_selector_null),
    ("gs_selector_ldt_without_ldt", || load_gs(LDT_SELECTOR)),
    ("gs_selector_beyond_gdt", || load_gs(0xfff3)),
    ("gsbase_kernel_address_wrgsbase", || {
        wrgsbase_then_syscall(KERNEL_ADDRESS)
    }),
    ("gsbase_non_canonical_wrgsbase", || {
        wrgsbase_then_syscall(NON_CANONICAL)
    }),
    ("fsbase_kernel_address_wrfsbase", fsbase_kernel_address),
    ("gsbase_kernel_address_arch_prctl", || {
        arch_prctl_gs(KERNEL_ADDRESS)
    }),
    ("gsbase_non_canonical_arch_prctl", || {
        arch_prctl_gs(NON_CANONICAL)
    }),
    ("ptrace_gs_selector_ldt", || {
        ptrace_poke(USER_GS, LDT_SELECTOR as u64)
    }),
    ("ptrace_gs_selector_bad", || ptrace_poke(USER_GS, 0xfff3)),
    ("ptrace_gsbase_kernel_address", || {
        ptrace_poke(USER_GS_BASE, KERNEL_ADDRESS)
    }),
    ("ptrace_gsbase_non_canonical", || {
        ptrace_poke(USER_GS_BASE, NON_CANONICAL)
    }),
    ("ptrace_gsbase_user_address", || {
        ptrace_poke(USER_GS_BASE, 0x1000)
    }),
    ("sigreturn_bad_cs", sigreturn_bad_cs),
    ("sigreturn_16bit_ss_from_ldt", sigreturn_16bit_ss),
    ("single_step_over_syscall", single_step_over_syscall),
    ("int80_without_ia32_emulation", int80),
];

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .map(|r| r.parse().expect("ROUNDS is a whole number"))
        .unwrap_or(1);
    for _ in 0..rounds {
        for (name, run) in CASES {
            println!("case {name}: {}", in_child(*run));
        }
    }
}

/// Runs `f` in a child and describes how the child ended.
fn in_child(f: fn() -> i32) -> String {
    let _ = std::io::stdout().flush();
    // SAFETY: the child only runs `f` (no locks held across fork in this single-threaded
    // program) and leaves with `_exit`.
    match unsafe { libc::fork() } {
        0 => {
            let code = f();
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        pid => describe(wait(pid)),
    }
}

fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}

fn describe(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn getppid_raw() -> u64 {
    let ret: u64;
    // SAFETY: a plain syscall; rcx and r11 are clobbered by `syscall`.
    unsafe {
        asm!("syscall", inlateout("rax") libc::SYS_getppid as u64 => ret,
             out("rcx") _, out("r11") _, options(nostack));
    }
    ret
}

fn read_gs() -> u32 {
    let sel: u32;
    // SAFETY: reads a segment register.
    unsafe { asm!("mov {0:e}, gs", out(reg) sel, options(nomem, nostack)) };
    sel
}

fn gs_selector_null() -> i32 {
    // SAFETY: glibc does not use %gs on x86-64; a null selector is always loadable.
    unsafe { asm!("mov gs, {0:e}", in(reg) 0u32, options(nostack)) };
    getppid_raw();
    read_gs() as i32
}

/// Loads `%gs`; a bad selector faults (#GP → SIGSEGV).
fn load_gs(selector: u32) -> i32 {
    // SAFETY: as in gs_selector_null; a fault kills only this child.
    unsafe { asm!("mov gs, {0:e}", in(reg) selector, options(nostack)) };
    read_gs() as i32
}

fn fsgsbase_usable() -> bool {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(libc::AT_HWCAP2) & HWCAP2_FSGSBASE != 0 }
}

/// Sets the `%gs` base to `base` with `wrgsbase` (a non-canonical one faults), then enters the
/// kernel by syscall and by a page fault on a fresh page, with that base in place.
fn wrgsbase_then_syscall(base: u64) -> i32 {
    if !fsgsbase_usable() {
        return UNSUPPORTED;
    }
    // SAFETY: a fresh anonymous page, checked.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(page, libc::MAP_FAILED);
    let ppid: u64;
    // SAFETY: glibc does not use %gs; the base is restored to 0 before leaving the block.
    unsafe {
        asm!(
            "wrgsbase {base}",
            "syscall",
            "mov byte ptr [{page}], 1",
            "xor {base:e}, {base:e}",
            "wrgsbase {base}",
            base = inout(reg) base => _,
            page = in(reg) page,
            inlateout("rax") libc::SYS_getppid as u64 => ppid,
            out("rcx") _, out("r11") _,
            options(nostack),
        );
    }
    // SAFETY: getppid has no preconditions.
    i32::from(ppid != unsafe { libc::getppid() } as u64)
}

/// The `%fs` base (glibc's thread pointer) set to a kernel address around a syscall.
fn fsbase_kernel_address() -> i32 {
    if !fsgsbase_usable() {
        return UNSUPPORTED;
    }
    let ppid: u64;
    // SAFETY: nothing between the two wrfsbase touches thread-local storage; the original
    // base is back before the block ends.
    unsafe {
        asm!(
            "rdfsbase {saved}",
            "wrfsbase {hostile}",
            "syscall",
            "wrfsbase {saved}",
            saved = out(reg) _,
            hostile = in(reg) KERNEL_ADDRESS,
            inlateout("rax") libc::SYS_getppid as u64 => ppid,
            out("rcx") _, out("r11") _,
            options(nostack),
        );
    }
    // SAFETY: getppid has no preconditions.
    i32::from(ppid != unsafe { libc::getppid() } as u64)
}

/// `arch_prctl(ARCH_SET_GS, base)`: the kernel refuses bases outside user space (EPERM).
fn arch_prctl_gs(base: u64) -> i32 {
    // SAFETY: arch_prctl with a plain value.
    if unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, base) } == 0 {
        return 0;
    }
    errno()
}

/// Stops a child, writes `value` at `offset` of its user registers with ptrace, lets it run
/// on, and reports `poke errno * 10 + the child's status code` (the child exits with 1 when
/// its `%gs` selector or base reads back as written, 0 otherwise; a signal shows as 100+).
fn ptrace_poke(offset: usize, value: u64) -> i32 {
    let _ = std::io::stdout().flush();
    // SAFETY: the child stops itself and then only reads registers and exits.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: standard ptrace self-attach followed by a stop.
        unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0);
            libc::raise(libc::SIGSTOP);
        }
        let matches = if offset == USER_GS {
            u64::from(read_gs()) == value
        } else {
            let mut base = 0u64;
            // SAFETY: ARCH_GET_GS writes one u64 to our variable.
            unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_GET_GS, &mut base as *mut u64) };
            base == value
        };
        getppid_raw();
        // SAFETY: ends the child.
        unsafe { libc::_exit(i32::from(matches)) }
    }
    let status = wait(child);
    assert!(libc::WIFSTOPPED(status), "child did not stop: {status:#x}");
    // SAFETY: the child is our stopped tracee.
    let poke = unsafe { libc::ptrace(libc::PTRACE_POKEUSER, child, offset, value) };
    let poke_errno = if poke == 0 { 0 } else { errno() };
    // SAFETY: resumes our stopped tracee.
    unsafe { libc::ptrace(libc::PTRACE_CONT, child, 0, 0) };
    let end = wait(child);
    let code = if libc::WIFEXITED(end) {
        libc::WEXITSTATUS(end)
    } else {
        100 + libc::WTERMSIG(end)
    };
    poke_errno * 10 + code
}

type Handler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

fn on_signal(sig: i32, handler: Handler) {
    // SAFETY: installing a handler that only edits the context it is given.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
    }
}

fn context<'a>(uc: *mut libc::c_void) -> &'a mut libc::ucontext_t {
    // SAFETY: SA_SIGINFO handlers get a valid ucontext, theirs until they return.
    unsafe { &mut *(uc as *mut libc::ucontext_t) }
}

/// `REG_CSGSFS`: cs | gs << 16 | fs << 32 | ss << 48.
const REG_CSGSFS: usize = 18;

extern "C" fn set_bad_cs(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let g = &mut context(uc).uc_mcontext.gregs[REG_CSGSFS];
    *g = (*g & !0xffff) | LDT_SELECTOR as i64;
}

/// sigreturn to a CS selector that cannot be loaded: `iretq` to user mode faults in the
/// kernel, which must recognise the faulting `iretq` and deliver SIGSEGV.
fn sigreturn_bad_cs() -> i32 {
    on_signal(libc::SIGUSR1, set_bad_cs);
    // SAFETY: raising a signal whose handler is installed.
    unsafe { libc::raise(libc::SIGUSR1) };
    0
}

extern "C" fn set_ldt_ss(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    let c = context(uc);
    let g = &mut c.uc_mcontext.gregs[REG_CSGSFS];
    *g = (*g & 0x0000_ffff_ffff_ffff) | ((LDT_SELECTOR as i64) << 48);
    c.uc_flags |= UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
}

/// Installs a 16-bit data segment as LDT entry 0 and returns from a signal onto it: the kernel
/// returns through espfix64 (a read-only per-CPU stack). Exits with the SS it then reads.
fn sigreturn_16bit_ss() -> i32 {
    // struct user_desc: entry 0, base 0, limit 0xfffff in pages, 16-bit writable data.
    let desc: [u32; 4] = [0, 0, 0xfffff, 1 << 4];
    // SAFETY: modify_ldt(1) reads our descriptor.
    let r = unsafe {
        libc::syscall(
            libc::SYS_modify_ldt,
            1,
            desc.as_ptr(),
            std::mem::size_of_val(&desc),
        )
    };
    if r != 0 {
        return UNSUPPORTED;
    }
    on_signal(libc::SIGUSR1, set_ldt_ss);
    // SAFETY: raising a signal whose handler is installed.
    unsafe { libc::raise(libc::SIGUSR1) };
    let ss: u32;
    // SAFETY: reads a segment register.
    unsafe { asm!("mov {0:e}, ss", out(reg) ss, options(nomem, nostack)) };
    getppid_raw();
    ss as i32
}

static TRAPS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

extern "C" fn count_trap(_: i32, _: *mut libc::siginfo_t, uc: *mut libc::c_void) {
    if TRAPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= 5 {
        context(uc).uc_mcontext.gregs[libc::REG_EFL as usize] &= !0x100;
    }
}

/// TF set across a `syscall`: the kernel must deliver the single-step traps around it the same
/// way. Exits with the number of traps (5: the handler stops stepping at the fifth).
fn single_step_over_syscall() -> i32 {
    on_signal(libc::SIGTRAP, count_trap);
    // SAFETY: sets TF; the handler clears it after five traps; the syscall clobbers rcx/r11.
    unsafe {
        asm!(
            "pushfq",
            "or qword ptr [rsp], 0x100",
            "popfq",
            "mov eax, {nr}",
            "syscall",
            "nop", "nop", "nop", "nop", "nop", "nop", "nop", "nop",
            nr = const libc::SYS_getppid,
            out("rax") _, out("rcx") _, out("r11") _,
        );
    }
    TRAPS.load(std::sync::atomic::Ordering::Relaxed) as i32
}

/// `int $0x80` with IA32 emulation compiled out: the gate is absent (#GP → SIGSEGV).
fn int80() -> i32 {
    // SAFETY: the fault kills only this child; rax holds getpid's 32-bit number.
    unsafe { asm!("int 0x80", inout("rax") 20u64 => _, options(nostack)) };
    0
}
