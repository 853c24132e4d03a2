//! VM tests of the instrumentation comparison (docs/INSTRUMENT.md): kdbt's `funccount` client
//! in both designs (per-CPU counters, and shared ones for a set of thousands), kprobes and
//! ftrace count the same function entries of a workload whose counts are known (each probe
//! method twice in the boot), and bad function lists are refused naming the symbol.
//!
//! They need the lab built, so they are `#[ignore]`d in a plain `cargo test`; `cargo xtask
//! test` runs them.

use crate::support::run_script;
use kdbt_harness::mix::PRELUDE;
use std::time::Duration;

/// `getppid` system calls and one-byte reads of /dev/zero the workload makes.
const GETPPIDS: u64 = 100_000;
const ZERO_READS: u64 = 20_000;

/// The count of `symbol` by `method` (column 0 kdbt, 1 kprobes, 2 ftrace) in the section of
/// `o` after `label` (a `kdbtctl funccount` listing).
fn count(o: &str, label: &str, method: usize, symbol: &str) -> u64 {
    let section = o
        .split_once(label)
        .unwrap_or_else(|| panic!("no {label} in:\n{o}"))
        .1;
    let line = section
        .lines()
        .take_while(|l| !l.starts_with("== "))
        .find(|l| l.split_whitespace().last() == Some(symbol))
        .unwrap_or_else(|| panic!("no {symbol} after {label}:\n{o}"));
    line.split_whitespace()
        .nth(method)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn kdbt_kprobes_and_ftrace_count_the_same_function_entries() {
    let script = format!(
        "{PRELUDE}insmod kdbt.ko || exit 1
printf '# the agreement set\\n__x64_sys_getppid\\nread_zero\\n' > /tmp/funcs.txt
kdbtctl on fast:funccount; echo \"NO_SET rc=$?\"
kdbtctl funcs /tmp/funcs.txt || exit 2
work() {{ kdbtctl reset; perl -e 'syscall(110) for 1..{GETPPIDS}'; dd if=/dev/zero of=/dev/null bs=1 count={ZERO_READS} 2>/dev/null; }}
for m in fast:funccount drk:funccount; do
  kdbtctl on $m || exit 3
  work
  kdbtctl off || exit 4
  echo \"== kdbt $m\"; kdbtctl funccount
done
# More functions than one per-CPU allocation holds: kdbt's counters are shared (lock add).
printf '__x64_sys_getppid\\nread_zero\\n[a-z]*\\n' > /tmp/many.txt
kdbtctl funcs /tmp/many.txt > /dev/null || exit 7
kdbtctl on fast:funccount || exit 8
work
kdbtctl off || exit 9
echo '== kdbt shared'; kdbtctl funccount | grep -E '^#|getppid$|read_zero$'
kdbtctl funcs /tmp/funcs.txt || exit 10
[ -w /proc/sys/debug/kprobes-optimization ] && echo 0 > /proc/sys/debug/kprobes-optimization
for round in 1 2; do
for p in kprobes ftrace; do
  kdbtctl probe $p || exit 5
  work
  kdbtctl on fast; echo \"ON_WHILE_PROBING rc=$?\"
  kdbtctl probe off || exit 6
  echo \"== $p $round\"; kdbtctl funccount
done
done
echo '== refusals'
printf 'no_such_function_kdbt\\n' > /tmp/bad1; kdbtctl funcs /tmp/bad1; echo \"UNKNOWN rc=$?\"
printf 'jiffies\\n' > /tmp/bad2; kdbtctl funcs /tmp/bad2; echo \"DATA rc=$?\"
printf '# nothing\\n' > /tmp/bad3; kdbtctl funcs /tmp/bad3; echo \"EMPTY rc=$?\"
printf 'entry_SYSCALL_64\\n' > /tmp/bad4; kdbtctl funcs /tmp/bad4; echo \"UNTRACEABLE rc=$?\"
unload
"
    );
    let out = run_script(&script, Duration::from_secs(900));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    assert!(
        o.contains("NO_SET rc=22"),
        "funccount without a set: EINVAL\n{o}"
    );
    // Two functions' counters fit the first per-CPU chunk; thousands do not.
    let section = |label: &str| o.split_once(label).unwrap().1.split("== ").next().unwrap();
    for label in ["== kdbt fast:funccount", "== kdbt drk:funccount"] {
        assert!(
            section(label).contains("# kdbt counts per CPU at %gs:"),
            "{label}\n{o}"
        );
    }
    assert!(
        section("== kdbt shared").contains("# kdbt counts into one array for all CPUs"),
        "{o}"
    );
    for (label, method) in [
        ("== kdbt fast:funccount", 0),
        ("== kdbt drk:funccount", 0),
        ("== kdbt shared", 0),
        ("== kprobes 1", 1),
        ("== ftrace 1", 2),
        // Each probe method a second time in the boot: nothing of the first is left over.
        ("== kprobes 2", 1),
        ("== ftrace 2", 2),
    ] {
        assert_eq!(
            count(o, label, method, "__x64_sys_getppid"),
            GETPPIDS,
            "{label}\n{o}"
        );
        assert_eq!(
            count(o, label, method, "read_zero"),
            ZERO_READS,
            "{label}\n{o}"
        );
    }
    assert!(o.contains("ON_WHILE_PROBING rc=16"), "{o}");
    let refusals = o.split_once("== refusals").unwrap().1;
    for (marker, says) in [
        ("UNKNOWN rc=1", "unknown symbol `no_such_function_kdbt`"),
        ("DATA rc=1", "`jiffies` is not a function"),
        ("EMPTY rc=1", "the function set is empty"),
        ("UNTRACEABLE rc=22", "kdbt refused `entry_SYSCALL_64`"),
    ] {
        assert!(refusals.contains(marker), "{marker}\n{o}");
        assert!(refusals.contains(says), "{says}\n{o}");
    }
}
