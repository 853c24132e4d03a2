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
];

/// The lines of `log` that carry a [`TROUBLE_MARKERS`] marker, in order.
pub fn trouble(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| TROUBLE_MARKERS.iter().any(|m| l.contains(m)))
        .collect()
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
}
