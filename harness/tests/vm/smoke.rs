//! VM smoke tests: boot the cached guest under QEMU and run commands through the agent.
//!
//! They need the lab built (kernel, image, kdbt.ko), so a plain `cargo test` skips them as
//! ignored; `cargo xtask test` builds the lab and runs them with `--include-ignored`.

use kdbt_harness::{kernel, module, vm};
use std::time::Duration;

/// Boots a 2-vCPU TCG guest (KVM where the CPU has it) and runs `command` with kdbt.ko shared.
fn run_in_guest(command: &[&str]) -> vm::Outcome {
    let _slot = crate::support::GuestSlot::take();
    let ko = module::cached().expect("kdbt.ko (cargo xtask module)");
    vm::run_on_cached_lab(
        vec![ko],
        command.iter().map(|s| s.to_string()).collect(),
        Duration::from_secs(600),
    )
    .expect("guest run (console log named in the error)")
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn guest_boots_the_612_kernel_and_reports_its_release() {
    let kernel = kernel::cached().unwrap();
    let out = run_in_guest(&["uname", "-r"]);
    assert_eq!(out.exit_status, 0);
    assert_eq!(out.output.trim(), kernel.release);
    assert!(kernel.release.starts_with("6.12."), "{}", kernel.release);
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn kdbt_module_loads_decodes_the_syscall_entry_and_unloads() {
    let out = run_in_guest(&[
        "sh",
        "-c",
        "insmod kdbt.ko && cat /sys/kernel/debug/kdbt/status && rmmod kdbt && ! test -e /sys/kernel/debug/kdbt",
    ]);
    assert_eq!(out.exit_status, 0, "output:\n{}", out.output);
    assert!(out.output.contains("state: off"), "{}", out.output);
    assert!(out.output.contains("lstar: 0xffffffff"), "{}", out.output);
    // entry_SYSCALL_64 starts by switching to the kernel's GS base.
    assert!(out.output.contains(": swapgs"), "{}", out.output);
    let console = std::fs::read_to_string(&out.console_log).unwrap();
    assert!(console.contains("kdbt: loaded; MSR_LSTAR"), "{console}");
    assert!(console.contains("kdbt: unloaded"), "{console}");
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn failing_guest_command_returns_its_exit_status() {
    let out = run_in_guest(&["sh", "-c", "echo before; exit 7"]);
    assert_eq!(out.exit_status, 7);
    assert_eq!(out.output.trim(), "before");
}

/// The guest kernel's soft-lockup and hung-task detectors are on, and the console check
/// reads their reports as trouble. LKDTM (built in) provokes both, with the thresholds
/// lowered to seconds: a task spinning with preemption off on one vCPU, and a task asleep
/// uninterruptibly for ever. The script waits until the kernel log has both reports, so
/// the verdict does not depend on how fast the guest runs. The spinning task is pinned to
/// CPU 1 and everything else the run needs (init, the agent, this script and its children)
/// to CPU 0: a task woken on the spinning CPU would wait there for ever (a run hung so once).
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_console_check_sees_soft_lockups_and_hung_tasks() {
    const SOFT_LOCKUP: &str = "soft lockup";
    const HUNG_TASK: &str = "blocked for more than";
    let script = format!(
        "for p in 1 $PPID $$; do taskset -a -p -c 0 $p > /dev/null || exit 9; done && \
         echo 1 > /proc/sys/kernel/watchdog_thresh && \
         echo 1 > /proc/sys/kernel/hung_task_timeout_secs && \
         {{ echo HUNG_TASK > /sys/kernel/debug/provoke-crash/DIRECT & }} && \
         {{ taskset -c 1 sh -c 'echo SOFTLOCKUP > /sys/kernel/debug/provoke-crash/DIRECT' & }} && \
         until dmesg | grep -q '{SOFT_LOCKUP}' && dmesg | grep -q '{HUNG_TASK}'; do sleep 1; done; \
         echo reported"
    );
    let out = crate::support::run_script_expecting(
        &script,
        Duration::from_secs(600),
        &[SOFT_LOCKUP, HUNG_TASK],
    );
    assert_eq!(out.exit_status, 0, "{}", out.output);
    assert_eq!(out.output.trim(), "reported");
    let console = std::fs::read_to_string(&out.console_log).unwrap();
    let trouble = kdbt_harness::console::trouble(&console);
    for marker in [SOFT_LOCKUP, HUNG_TASK] {
        assert!(
            trouble.iter().any(|l| l.contains(marker)),
            "the console check did not read {marker:?} as trouble: {trouble:?}\n{console}"
        );
    }
}
