//! Reading a guest's kernel console log for signs the kernel went wrong.

/// Markers of a kernel in trouble, as printed by Linux 6.12: oopses, BUG()s, WARN()s, panics,
/// faults the kernel reports, and hung or soft-locked CPUs.
pub const TROUBLE_MARKERS: &[&str] = &[
    "Oops",
    "BUG:",
    "WARNING:",
    "Kernel panic",
    "general protection fault",
    "INFO: task",
    "watchdog: BUG: soft lockup",
    "detected stalls",
    "PANIC:",
];

/// The lines of `log` that carry a [`TROUBLE_MARKERS`] marker, in order, except reports of a
/// user program's own fault ([`is_user_trap_report`]).
pub fn trouble(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| TROUBLE_MARKERS.iter().any(|m| l.contains(m)))
        .filter(|l| !is_user_trap_report(l))
        .collect()
}

/// Whether `line` is the kernel reporting a fault of a user program, which it answered with a
/// signal (`show_signal` in arch/x86/kernel/traps.c: `traps: prog[pid] general protection
/// fault ip:… sp:… error:… in prog[…]`): the kernel is fine. Its own faults read otherwise
/// (`traps: PANIC: double fault`, `Oops: general protection fault …`).
pub fn is_user_trap_report(line: &str) -> bool {
    let message = line
        .split_once("] ")
        .filter(|(stamp, _)| stamp.trim_start().starts_with('['))
        .map_or(line, |(_, m)| m);
    let Some(rest) = message.strip_prefix("traps: ") else {
        return false;
    };
    let task = rest.split(' ').next().unwrap_or_default();
    let Some((comm, pid)) = task.strip_suffix(']').and_then(|t| t.rsplit_once('[')) else {
        return false;
    };
    !comm.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_boot_log_has_no_trouble() {
        let log = "[    0.000000] Linux version 6.12.117 (kdbt)\n[    1.2] kdbt: loaded\n[    2.0] reboot: Power down\n";
        assert!(trouble(log).is_empty());
    }

    #[test]
    fn oops_bug_and_warning_lines_are_found() {
        let log = "[ 1.0] ok\n[ 2.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n[ 2.1] Oops: 0000 [#1] SMP\n[ 3.0] WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 bar+0x1/0x2\n";
        let t = trouble(log);
        assert_eq!(t.len(), 3);
        assert!(t[0].contains("NULL pointer"));
        assert!(t[2].contains("WARNING: CPU: 0"));
    }

    #[test]
    fn the_detectors_reports_are_trouble() {
        let log = "[   30.1] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [sh:90]\n[   31.0] INFO: task sh:85 blocked for more than 120 seconds.\n[   32.0] BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!\n[   33.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n";
        assert_eq!(trouble(log).len(), 4, "{:?}", trouble(log));
    }

    #[test]
    fn a_user_programs_fault_is_not_kernel_trouble() {
        let log = "[   12.345678] traps: sigreturn_64[140] general protection fault ip:401a2b sp:7ffd1c error:0 in sigreturn_64[401000+9a000]\n[   13.0] traps: fsgsbase_64[77] general protection fault ip:4017f0 sp:7ffe error:38 in fsgsbase_64[401000+98000]\n";
        assert!(trouble(log).is_empty(), "{:?}", trouble(log));
    }

    #[test]
    fn the_kernels_own_faults_are_still_trouble() {
        let log = "[   20.1] traps: PANIC: double fault, error_code: 0x0\n[   20.2] Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1] SMP\n[   20.3] general protection fault: 0000 [#2] SMP\n[   30.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n";
        assert_eq!(trouble(log).len(), 4, "{:?}", trouble(log));
    }
}
