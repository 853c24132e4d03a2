//! The null system call's kernel instructions, measured two ways in one process, for the
//! check that the prof client counts what the kernel executes (BTKernel §6's instruction
//! counting client; kdbt's `inscount`).
//!
//! - **By the clock.** Under QEMU `-icount shift=0` CLOCK_MONOTONIC advances one ns per guest
//!   instruction. A loop of raw `getppid` `syscall`s, minus the same loop with a one-byte
//!   `nop` where the `syscall` was, leaves the kernel's instructions (entry to `sysretq`) and
//!   whatever the other, mostly halted, vCPU ran meanwhile.
//! - **By kdbt's counter.** With the `inscount` client on, `insns_executed` over the
//!   `syscall` loop counts the translated kernel instructions the loop caused.
//!
//! Natively only the first is meaningful; under `fast:inscount` only the second (the clock
//! then also counts the translation's own instructions).

use std::arch::asm;
use std::time::Instant;

/// One measurement of `calls` null system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NullInsns {
    /// System calls made by each loop.
    pub calls: u64,
    /// ns (icount: guest instructions) of the loop with `syscall`.
    pub with_syscall_ns: u64,
    /// ns of the same loop with a `nop` in its place.
    pub without_ns: u64,
    /// kdbt's `insns_executed` over the `syscall` loop; `None` when kdbt's statistics cannot
    /// be read (native, kdbt not loaded).
    pub insns_executed: Option<u64>,
}

impl NullInsns {
    /// The line `kdbt-workload null-insns` prints: `key value` pairs, `-` for no counter.
    pub fn line(&self) -> String {
        let counted = self
            .insns_executed
            .map_or_else(|| "-".to_string(), |v| v.to_string());
        format!(
            "calls {} with_syscall_ns {} without_ns {} insns_executed {counted}",
            self.calls, self.with_syscall_ns, self.without_ns
        )
    }
}

/// Runs both loops, `calls` iterations each (the `nop` loop first, so the `syscall` loop's
/// counter window holds nothing else).
pub fn measure(calls: u64) -> NullInsns {
    let calls = calls.max(1);
    let t = Instant::now();
    nop_loop(calls);
    let without_ns = t.elapsed().as_nanos() as u64;
    let before = crate::prof::read();
    let t = Instant::now();
    syscall_loop(calls);
    let with_syscall_ns = t.elapsed().as_nanos() as u64;
    let after = crate::prof::read();
    let insns_executed =
        crate::prof::delta(before, after).and_then(|d| d.get("insns_executed").copied());
    NullInsns {
        calls,
        with_syscall_ns,
        without_ns,
        insns_executed,
    }
}

/// `n` × (`mov eax, SYS_getppid`; `syscall`; `dec`; `jnz`).
fn syscall_loop(n: u64) {
    // SAFETY: getppid takes no arguments and writes no memory; the syscall clobbers only
    // rax, rcx and r11, declared here.
    unsafe {
        asm!(
            "2:",
            "mov eax, {nr}",
            "syscall",
            "dec {n}",
            "jnz 2b",
            nr = const libc::SYS_getppid,
            n = inout(reg) n => _,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(nostack),
        )
    };
}

/// [`syscall_loop`] with a `nop` for the `syscall`: the same user instructions per iteration.
fn nop_loop(n: u64) {
    // SAFETY: register arithmetic only.
    unsafe {
        asm!(
            "2:",
            "mov eax, {nr}",
            "nop",
            "dec {n}",
            "jnz 2b",
            nr = const libc::SYS_getppid,
            n = inout(reg) n => _,
            out("rax") _,
            out("rcx") _,
            out("r11") _,
            options(nostack, nomem),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loops_run_and_the_line_names_each_value() {
        assert_eq!(measure(1000).calls, 1000);
        let m = NullInsns {
            calls: 10,
            with_syscall_ns: 2500,
            without_ns: 40,
            insns_executed: Some(2400),
        };
        assert_eq!(
            m.line(),
            "calls 10 with_syscall_ns 2500 without_ns 40 insns_executed 2400"
        );
        let native = NullInsns {
            insns_executed: None,
            ..m
        };
        assert!(native.line().ends_with("insns_executed -"));
    }
}
