//! VM tests of kdbt.ko's control interface, code cache memory and entry interposition: boot the
//! cached guest, drive `/dev/kdbt` with `kdbtctl` (and perl for raw ioctls), and check what the
//! guest prints and its console log (any Oops/BUG/WARNING fails the run).
//!
//! Like vm_smoke.rs they need the lab built, so they are `#[ignore]`d in a plain `cargo test`;
//! `cargo xtask test` runs them with `--include-ignored`.

use kdbt_harness::{cache, module, vm};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Builds `kdbtctl` for the guest (the guest runs the host's Debian release) once per test
/// binary, in a target directory of its own so it never waits on the lock of the `cargo test`
/// that runs us.
fn kdbtctl() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = cache::repo_root();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("vm-kdbt-guest");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "--quiet", "-p", "kdbt-workloads"])
                .args(["--bin", "kdbtctl"])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(&root)
                .status()
                .expect("running cargo");
            assert!(status.success(), "building kdbtctl failed");
            target.join("release/kdbtctl")
        })
        .clone()
}

/// Boots a 2-vCPU guest with kdbt.ko and kdbtctl in /kdbt and runs `script` with `sh -c`.
/// Panics if the guest hangs past `timeout` or its kernel reports trouble.
fn run_script(script: &str, timeout: Duration) -> vm::Outcome {
    // One guest at a time: 2 host cores are enough for one TCG guest, and these tests time
    // 200 switch cycles under load.
    static ONE_GUEST: Mutex<()> = Mutex::new(());
    let _guest = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let ko = module::cached().expect("kdbt.ko (cargo xtask module)");
    vm::run_on_cached_lab(
        vec![ko, kdbtctl()],
        vec!["sh".into(), "-c".into(), script.into()],
        timeout,
    )
    .expect("guest run (console log named in the error)")
}

/// The `rc` of every `CASE <name> rc=<n>` line the script printed.
fn cases(output: &str) -> BTreeMap<String, i32> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("CASE ")?;
            let (name, rc) = rest.split_once(" rc=")?;
            Some((name.to_string(), rc.trim().parse().ok()?))
        })
        .collect()
}

/// `key: value` of a status/stats line starting with `key: `.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
}

/// A `0x...` number.
fn hex(text: &str) -> u64 {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("{text}"))
}

/// The executable address and size of the code cache from a status text
/// (`code cache: exec 0x... alias 0x... bytes N`).
fn cache_range(status: &str) -> (u64, u64) {
    let line = field(status, "code cache").unwrap_or_else(|| panic!("{status}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (hex(words[1]), words[5].parse().unwrap())
}

const EINVAL: i32 = 22;
const EBUSY: i32 = 16;
const EALREADY: i32 = 114;
const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EFAULT: i32 = 14;

/// Shell helpers for the scripts: `case NAME CMD...` runs CMD and prints `CASE NAME rc=N`;
/// `ioctl REQUEST [BUFFER_PERL_EXPR]` issues a raw ioctl on /dev/kdbt from perl and exits with
/// its errno (0 on success).
const PRELUDE: &str = r#"
set -u
export PATH=/kdbt:$PATH
case_() { name=$1; shift; "$@"; echo "CASE $name rc=$?"; }
ioctl() { perl -e 'open(F, "<", "/dev/kdbt") or exit($!+0); my $b = eval($ARGV[1] // "0"); exit(ioctl(F, hex($ARGV[0]), $b) ? 0 : $!+0)' "$@"; }
status() { cat /sys/kernel/debug/kdbt/status; }
"#;

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn control_device_gives_each_errno_and_switches_all_or_nothing() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
insmod kdbt.ko || exit 90
ls -l /dev/kdbt
case_ off_while_off kdbtctl off
case_ unknown_option kdbtctl on fast:turbo
case_ unknown_design kdbtctl on slow
case_ callret_in_drk kdbtctl on drk:callret
case_ empty_spec kdbtctl on ''
case_ garbage_ioctl ioctl 0xdb7f
case_ garbage_type ioctl 0x5401
case_ spec_without_nul ioctl 0xc100db40 '"f" x 256'
case_ spec_bad_pointer ioctl 0xc100db40 0
case_ no_cap_sys_admin setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin kdbtctl on fast
case_ not_root setpriv --reuid=65534 --regid=65534 --clear-groups kdbtctl on fast
echo "== still off"; status | head -1
case_ on_fast kdbtctl on fast
echo "== on fast"; status
case_ on_while_on kdbtctl on fast:no-callret
case_ rmmod_while_on rmmod kdbt
case_ reset kdbtctl reset
case_ stats kdbtctl stats
case_ off kdbtctl off
echo "== off"; status
case_ on_no_callret kdbtctl on fast:no-callret
echo "== on no-callret"; status | head -2
case_ off_again kdbtctl off
i=0
while [ $i -lt 40 ]; do kdbtctl on fast >/dev/null 2>&1 & kdbtctl off >/dev/null 2>&1 & i=$((i+1)); done
wait
echo "== after racing"; status
kdbtctl off >/dev/null 2>&1
case_ rmmod rmmod kdbt
"#
    );
    let out = run_script(&script, Duration::from_secs(600));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let rc = cases(o);
    let expect = [
        ("off_while_off", EALREADY),
        ("unknown_option", EINVAL),
        ("unknown_design", EINVAL),
        ("callret_in_drk", EINVAL),
        ("empty_spec", EINVAL),
        ("garbage_ioctl", EINVAL),
        ("garbage_type", EINVAL),
        ("spec_without_nul", EINVAL),
        ("spec_bad_pointer", EFAULT),
        ("no_cap_sys_admin", EPERM),
        ("not_root", EACCES),
        ("on_fast", 0),
        ("on_while_on", EBUSY),
        ("reset", 0),
        ("stats", 0),
        ("off", 0),
        ("on_no_callret", 0),
        ("off_again", 0),
        ("rmmod", 0),
    ];
    for (name, want) in expect {
        assert_eq!(rc.get(name), Some(&want), "case {name}:\n{o}");
    }
    assert_ne!(
        rc.get("rmmod_while_on"),
        Some(&0),
        "rmmod must fail while on:\n{o}"
    );
    // Refusals say why, in the parser's words.
    assert!(o.contains("unknown option `turbo`"), "{o}");
    assert!(o.contains("unknown design `slow`"), "{o}");
    assert!(o.contains("already on (fast); switch off first"), "{o}");
    assert!(o.contains("already switched off (EALREADY)"), "{o}");
    assert!(o.contains("crw------- 1 root root"), "{o}");

    let section = |name: &str| -> &str {
        let start = o
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("{name}: {o}"));
        let rest = &o[start + name.len() + 4..];
        let end = [rest.find("\n=="), rest.find("CASE ")]
            .into_iter()
            .flatten()
            .min();
        &rest[..end.unwrap_or(rest.len())]
    };
    assert_eq!(field(section("still off"), "state"), Some("off"), "{o}");
    let on = section("on fast");
    assert_eq!(field(on, "state"), Some("on"), "{on}");
    assert_eq!(field(on, "mode"), Some("fast"), "{on}");
    // NMI, #DB and #DF run on IST stacks and stay native (#MC has no IST gate: MCE is off).
    assert_eq!(field(on, "native gates"), Some("0x01 0x02 0x08"), "{on}");
    let (exec, bytes) = cache_range(on);
    let in_cache = |text: &str| (exec..exec + bytes).contains(&hex(field(text, "lstar").unwrap()));
    assert!(in_cache(on), "LSTAR is in the code cache:\n{on}");
    let off = section("off");
    assert_eq!(field(off, "state"), Some("off"), "{off}");
    assert!(
        field(off, "lstar").unwrap().starts_with("0xffffffff81"),
        "{off}"
    );
    assert!(
        off.contains(": swapgs"),
        "native entry_SYSCALL_64 restored:\n{off}"
    );
    let no_callret = section("on no-callret");
    assert_eq!(field(no_callret, "mode"), Some("fast:no-callret"), "{o}");
    // Racing switch-ons and -offs leave either state, but never a half-switched one: the
    // syscall entry is a stub exactly when the state says on.
    let raced = section("after racing");
    assert_eq!(
        field(raced, "state") == Some("on"),
        in_cache(raced),
        "{raced}"
    );
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn code_cache_is_executed_read_only_and_written_through_a_separate_alias() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
insmod kdbt.ko || exit 90
status
echo "== wx check"; cat /sys/kernel/debug/check_wx_pages
rmmod kdbt
"#
    );
    let out = run_script(&script, Duration::from_secs(300));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let (exec, bytes) = cache_range(o);
    let lstar = hex(field(o, "lstar").unwrap());
    // Module area, and every byte of the cache within rel32 reach of kernel text.
    assert!(exec >= 0xffff_ffff_a000_0000, "{o}");
    assert!(
        (exec + bytes).abs_diff(lstar) < 1 << 31 && exec.abs_diff(lstar) < 1 << 31,
        "{o}"
    );
    assert_eq!(
        field(o, "code cache exec view"),
        Some("writable no executable yes write_errno -14"),
        "{o}"
    );
    assert_eq!(
        field(o, "code cache alias"),
        Some("writable yes executable no write_visible_in_exec yes"),
        "{o}"
    );
    // The kernel's own page-table walk finds no W+X mapping anywhere (it WARNs if it does,
    // which also fails the run).
    assert!(o.contains("== wx check\nSUCCESS"), "{o}");
    let console = std::fs::read_to_string(&out.console_log).unwrap();
    assert!(!console.contains("W^X violation"), "{console}");
    assert!(!console.contains("Found insecure W+X"), "{console}");
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn identity_interposition_survives_200_switch_cycles_under_load() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
insmod kdbt.ko || exit 90
stress-ng --cpu 2 --syscall 2 -t 20s --quiet &
load=$!
kdbtctl reset
n=0
while [ $n -lt 200 ]; do
  kdbtctl on fast >/dev/null || { echo "on failed at $n"; exit 91; }
  ls /proc >/dev/null
  kdbtctl off || { echo "off failed at $n"; exit 92; }
  n=$((n+1))
done
echo "CYCLES $n"
echo "== stats"; kdbtctl stats
wait $load; echo "CASE stress rc=$?"
status | head -1
case_ rmmod rmmod kdbt
"#
    );
    let out = run_script(&script, Duration::from_secs(900));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    assert!(o.contains("CYCLES 200"), "{o}");
    let rc = cases(o);
    assert_eq!(rc.get("stress"), Some(&0), "{o}");
    assert_eq!(rc.get("rmmod"), Some(&0), "{o}");
    let stats = &o[o.find("== stats").unwrap()..];
    let total = field(stats, "total").unwrap();
    let count = |what: &str| -> u64 {
        let words: Vec<&str> = total.split_whitespace().collect();
        let i = words.iter().position(|w| *w == what).unwrap();
        words[i + 1].parse().unwrap()
    };
    // Each cycle runs ls (exec, page faults, syscalls) with the entries interposed, and both
    // CPUs take timer interrupts through the stubs.
    assert!(count("syscalls") > 200 * 10, "{stats}");
    assert!(count("exceptions") > 200, "{stats}");
    assert!(count("interrupts") > 200, "{stats}");
    for cpu in ["cpu0", "cpu1"] {
        let line = field(stats, cpu).unwrap_or_else(|| panic!("{stats}"));
        assert!(
            !line.starts_with("syscalls 0 exceptions 0 interrupts 0"),
            "{stats}"
        );
    }
    assert!(
        stats.contains("vector 0x0e: total"),
        "page faults counted:\n{stats}"
    );
    assert!(
        stats.contains("vector 0xec: total"),
        "local timer counted:\n{stats}"
    );
}
