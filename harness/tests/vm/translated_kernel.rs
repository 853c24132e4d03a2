//! VM tests of kdbt.ko: its control interface, code cache memory, and the kernel running
//! translated (fast and drk designs) under a kernel-heavy mix and switch cycles. They boot the cached
//! guest, drive `/dev/kdbt` with `kdbtctl` (and perl for raw ioctls), and check what the guest
//! prints, kdbt's statistics and the console log (any Oops/BUG/WARNING fails the run).
//!
//! Like every VM test they need the lab built, so they are `#[ignore]`d in a plain `cargo test`;
//! `cargo xtask test` runs them with `--include-ignored`.

use crate::support::{cases, run_script, run_script_expecting, run_script_icount};
use kdbt_harness::mix::{MIX, PRELUDE};
use std::time::Duration;

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
case_ rmmod unload
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
    // LSTAR leads straight to the translation of entry_SYSCALL_64, which starts like it.
    assert!(
        field(on, "entries").is_some_and(|e| e.starts_with("direct")),
        "{on}"
    );
    let translated = &on[on
        .find("translated entry_SYSCALL_64 at ")
        .unwrap_or_else(|| panic!("{on}"))..];
    assert!(translated.contains(": swapgs"), "{on}");
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

/// `translator: NAME VALUE` from the statistics.
const TSTAT: &str = r#"
tstat() { kdbtctl stats | awk -v k="$1" '$1=="translator:" && $2==k { print $3 }'; }
"#;

/// The clients: inscount must grow with work, indirect must see jumptable hits.
const CLIENTS: &str = r#"
insmod kdbt.ko || exit 90
kdbtctl on fast:inscount,indirect || exit 91
kdbtctl reset
a=$(tstat insns_executed); ls /proc > /dev/null
b=$(tstat insns_executed); tar -C /usr/share -cf - doc | md5sum > /dev/null
c=$(tstat insns_executed)
echo "INSCOUNT $a $b $c"
echo "JUMPTABLE_HITS $(tstat jumptable_hits)"
kdbtctl off
case_ rmmod unload
"#;

/// A number after `key` in `text` (`key N` or `key: N`).
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key}: {text}")) + key.len()..];
    let word = rest
        .trim_start_matches(':')
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("{key}: {text}"));
    word.parse()
        .unwrap_or_else(|_| panic!("{key}: {word} in {text}"))
}

/// Boots once and runs [`MIX`] in mode `m`; asserts what every design must do and returns
/// the statistics section (`== stats` … `== end`).
fn run_mix(m: &str) -> String {
    let script = format!("{PRELUDE}m={m}\n{MIX}");
    let out = run_script(&script, Duration::from_secs(600));
    assert_eq!(out.exit_status, 0, "[{m}] {}", out.output);
    check_mix(m, &out.output)
}

/// The mix, lighter (3 s of stress-ng, 300 requests, 2 MB archived, 100,000 `getppid`s; the
/// same static-key flip and uaccess fault), in each of `modes` in turn in one boot, each
/// loading and unloading kdbt.ko. Light because some option values are slow by design: drk
/// without chaining enters the dispatcher at every block's end. Returns each mode's
/// statistics.
fn run_light_mixes(modes: &[&str]) -> Vec<String> {
    let mut script = String::from(PRELUDE);
    for m in modes {
        // funccount counts the VFS entry points, the syscalls and the spinlocks: thousands of
        // entries per request, the hottest functions of the kernel among them.
        let funcs = if m.contains("funccount") {
            "FUNCS='vfs_* __x64_sys_* _raw_spin_*'; "
        } else {
            ""
        };
        script.push_str(&format!(
            "echo '== MIX {m}'\n( m={m}; {funcs}FILES=2; STRESS_S=3; AB_REQUESTS=300; GETPPID_N=100000\n{MIX}\n)\necho \"MIX_EXIT $?\"\n"
        ));
    }
    let out = run_script(&script, Duration::from_secs(300 + 300 * modes.len() as u64));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let segments: Vec<&str> = o.split("== MIX ").skip(1).collect();
    assert_eq!(segments.len(), modes.len(), "{o}");
    modes
        .iter()
        .zip(segments)
        .map(|(m, seg)| {
            assert!(seg.starts_with(&format!("{m}\n")), "{seg}");
            assert!(seg.contains("MIX_EXIT 0"), "[{m}] {seg}");
            check_mix(m, seg)
        })
        .collect()
}

/// A full code cache is flushed and translation goes on: with caches of 2 MiB (a quarter of
/// what the light mix translates) the light mix passes in each design, the caches were flushed
/// (every frame's code-cache addresses rewritten to native ones first), and no code ran
/// natively for want of room. `cache=1M` flushes hundreds of times but makes the mix take
/// a quarter of an hour in fast: that is a soak (README, "Soaks"), not a test.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn small_caches_are_flushed_and_translation_goes_on() {
    let modes = ["fast:cache=2M", "fast:no-callret,cache=2M", "drk:cache=2M"];
    for (m, stats) in modes.iter().zip(run_light_mixes(&modes)) {
        eprintln!("[{m}] {}", field(&stats, "flush").unwrap_or("?"));
        assert!(number_after(&stats, "cache_flushes") >= 2, "[{m}] {stats}");
        assert_eq!(
            number_after(&stats, "cache_full_native"),
            0,
            "[{m}] {stats}"
        );
    }
}

/// Asserts what one mix in mode `m` printed (`o`) and the console; returns its statistics.
fn check_mix(m: &str, o: &str) -> String {
    let rc = cases(o);
    for case in ["apache", "checksum", "stress", "rmmod"] {
        assert_eq!(rc.get(case), Some(&0), "{case} [{m}]:\n{o}");
    }
    assert!(
        o.contains("AB_NOT_OK 0 of "),
        "ab reported failures [{m}]:\n{o}"
    );
    // read(2) into address 16 faults in translated clear_user; the fixup found through
    // the code-cache address (fast) or at the rolled-back native address (drk) makes it
    // EFAULT, not an Oops.
    assert!(o.contains(&format!("EFAULT -1 {EFAULT}")), "[{m}]:\n{o}");
    let start = o.find("== stats\n").unwrap();
    let stats = &o[start..start + o[start..].find("== end").unwrap()];
    if counts_entries(m) {
        assert!(
            number_after(o, "GETPPID ") >= number_after(o, "GETPPID_N"),
            "every getppid entered translated [{m}]:\n{o}"
        );
        let total = field(stats, "total").unwrap();
        assert!(number_after(total, "interrupts_in_cache") > 0, "{stats}");
        assert!(number_after(total, "page_faults_in_cache") > 0, "{stats}");
    } else {
        // Entries led straight into the cache: nothing counted them, and no zero says so.
        assert!(o.contains("GETPPID uncounted"), "[{m}]:\n{o}");
        assert!(
            stats.contains("entries: not counted") && field(stats, "total").is_none(),
            "[{m}] {stats}"
        );
    }
    assert!(number_after(stats, "blocks_translated") > 0, "{stats}");
    assert!(number_after(stats, "dispatcher_entries") > 0, "{stats}");
    // The static-key flip patched text the cache had translated.
    assert!(number_after(stats, "text_pokes") > 0, "{stats}");
    assert!(number_after(stats, "blocks_invalidated") > 0, "{stats}");
    assert_eq!(number_after(stats, "untranslatable_native"), 0, "{stats}");
    // run_script fails on any trouble in the console (oopses, BUG, WARN, hung tasks, stalls).
    stats.to_string()
}

/// Whether mode spec `m` counts entries (the option `stats`).
fn counts_entries(m: &str) -> bool {
    m.split_once(':')
        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == "stats"))
}

/// fast with its entries straight into the cache (the default), and the no-callret ablation
/// with them counted.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_kernel_runs_a_kernel_mix_translated_in_both_fast_option_sets() {
    for m in ["fast", "fast:no-callret,stats"] {
        run_mix(m);
    }
}

/// Every option value of each design that no other test runs, one at a time (for the
/// ablation), runs the kernel through the light mix: each mechanism off, and the clients on.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_kernel_runs_the_mix_with_each_fast_option_value() {
    run_light_mixes(&[
        "fast:no-chaining",
        "fast:no-jumptable",
        "fast:no-landings",
        "fast:no-switch-tables",
        "fast:no-inline-cache",
        "fast:no-flags-liveness",
        "fast:no-prefix-pad",
        "fast:no-line-pad",
        "fast:inscount,indirect,stats",
        "fast:funccount",
    ]);
}

/// drk's option values, as [`the_kernel_runs_the_mix_with_each_fast_option_value`].
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_kernel_runs_the_mix_with_each_drk_option_value() {
    // drk:no-chaining is left out: every block's exit enters the dispatcher, and the timer
    // interrupt's handler can outlast the tick on a loaded host, which the kernel reports as
    // an RCU stall (plans/ablation.toml says more).
    run_light_mixes(&[
        "drk:no-jumptable",
        "drk:no-landings",
        "drk:no-switch-tables",
        "drk:no-inline-cache",
        "drk:no-flags-liveness",
        "drk:no-prefix-pad",
        "drk:no-line-pad",
        "drk:inscount,indirect,stats",
        "drk:funccount",
    ]);
}

/// `drk: NAME VALUE` from the statistics.
fn drk_stat(stats: &str, name: &str) -> u64 {
    number_after(stats, &format!("drk: {name}"))
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_kernel_runs_a_kernel_mix_translated_in_the_drk_design() {
    let stats = run_mix("drk");
    // One code cache per vCPU.
    assert_eq!(number_after(&stats, "code_caches"), 2, "{stats}");
    // Page faults in translated uaccess code were rolled back to native boundaries.
    assert!(drk_stat(&stats, "exceptions_rolled_back") > 0, "{stats}");
    // Interrupts were delayed by patching the next boundary, and each patch came out again.
    let delayed = drk_stat(&stats, "interrupts_delayed");
    assert!(delayed > 0, "{stats}");
    assert_eq!(drk_stat(&stats, "delayed_delivered"), delayed, "{stats}");
    assert_eq!(
        drk_stat(&stats, "patches_removed"),
        drk_stat(&stats, "patches_placed"),
        "{stats}"
    );
    assert!(drk_stat(&stats, "interrupts_at_boundary") > 0, "{stats}");
    // No handler ever saw a code-cache RIP.
    assert_eq!(drk_stat(&stats, "delivered_with_tx_rip"), 0, "{stats}");
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_clients_count_translated_work() {
    let out = run_script(
        &format!("{PRELUDE}{TSTAT}{CLIENTS}"),
        Duration::from_secs(300),
    );
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let ins: Vec<u64> = o
        .lines()
        .find_map(|l| l.strip_prefix("INSCOUNT "))
        .unwrap_or_else(|| panic!("{o}"))
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    assert!(
        ins[0] < ins[1] && ins[1] < ins[2],
        "inscount grows with work: {ins:?}"
    );
    assert!(number_after(o, "JUMPTABLE_HITS") > 0, "{o}");
    assert_eq!(cases(o).get("rmmod"), Some(&0), "{o}");
}

// One test per design, so that the two boots can run side by side: fast with its entries
// straight into the cache, drk with them counted.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn translation_survives_200_switch_cycles_under_load_in_fast() {
    switch_cycles("fast");
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn translation_survives_200_switch_cycles_under_load_in_drk() {
    switch_cycles("drk:stats");
}

/// One boot: 200 on/off cycles of mode `m` while stress-ng runs, then unload.
fn switch_cycles(m: &str) {
    let script = format!(
        "{PRELUDE}m={m}\n{}",
        r#"
insmod kdbt.ko || exit 90
stress-ng --cpu 1 --syscall 1 --fork 1 --pipe 1 -t 600s --quiet &
load=$!
kdbtctl reset
n=0
while [ $n -lt 200 ]; do
  kdbtctl on $m >/dev/null || { echo "on failed at $n"; exit 91; }
  ls /proc >/dev/null
  kdbtctl off || { echo "off failed at $n"; exit 92; }
  n=$((n+1))
done
echo "CYCLES $n"
echo "== stats"; kdbtctl stats
kill $load; wait $load
status | head -1
case_ rmmod unload
"#
    );
    let out = run_script(&script, Duration::from_secs(900));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "[{m}] {o}");
    assert!(o.contains("CYCLES 200"), "[{m}] {o}");
    let rc = cases(o);
    assert_eq!(rc.get("rmmod"), Some(&0), "{o}");
    let stats = &o[o.find("== stats").unwrap()..];
    assert!(number_after(stats, "blocks_translated") > 0, "{stats}");
    if !counts_entries(m) {
        assert!(stats.contains("entries: not counted"), "{stats}");
        return;
    }
    let total = field(stats, "total").unwrap();
    // Each cycle runs ls (exec, page faults, syscalls) translated, and both CPUs take timer
    // interrupts, some of them in the code cache.
    assert!(number_after(total, "syscalls") > 200 * 10, "{stats}");
    assert!(number_after(total, "exceptions") > 200, "{stats}");
    assert!(number_after(total, "interrupts") > 200, "{stats}");
    assert!(number_after(total, "interrupts_in_cache") > 0, "{stats}");
    for cpu in ["cpu0", "cpu1"] {
        let line = field(stats, cpu).unwrap_or_else(|| panic!("{stats}"));
        assert!(number_after(line, "syscalls") > 0, "{stats}");
    }
    assert!(
        stats.contains("vector 0x0e: total"),
        "page faults counted:\n{stats}"
    );
    assert!(
        stats.contains("vector 0xec: total"),
        "local timer counted:\n{stats}"
    );
    if m.starts_with("drk") {
        assert_eq!(drk_stat(stats, "delivered_with_tx_rip"), 0, "{stats}");
    }
}

/// The specs the switching test moves between: both designs, the no-callret ablation (native
/// return addresses) and a cache small enough to flush; with entries straight into the cache
/// and through counting stubs (`stats`).
const SWITCH_SPECS: [&str; 4] = [
    "fast",
    "drk:stats",
    "fast:no-callret,stats",
    "fast:cache=2M",
];

/// 100 switch-ons in which every ordered pair of [`SWITCH_SPECS`] occurs: each pair's two
/// specs in turn, pairs in order, repeated.
fn switch_sequence() -> Vec<&'static str> {
    let n = SWITCH_SPECS.len();
    let pairs = (0..n).flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)));
    let round: Vec<&str> = pairs
        .flat_map(|(a, b)| [SWITCH_SPECS[a], SWITCH_SPECS[b]])
        .collect();
    round.iter().copied().cycle().take(100).collect()
}

/// Any spec switches to any other, 100 times in a row in one boot, beside a fork load (tasks
/// preempted in translated code), and no switch waits for a task: before each switch-on to
/// another spec, the module takes the previous cache's addresses off every stack itself
/// (module/flush.rs). Two tasks sleep across all the switches in syscalls they entered
/// translated in `fast` (a `sleep` and a `read` of a FIFO), which kept the old drain waiting
/// for as long as they slept; they then return through their rewritten frames: the reader
/// gets its line, and both exit normally.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn any_spec_switches_to_any_other_100_times_without_waiting_for_tasks() {
    let sequence = switch_sequence();
    let script = format!(
        "{PRELUDE}SPECS='{}'\n{}",
        sequence.join(" "),
        r#"
insmod kdbt.ko || exit 90
stress-ng --fork 1 -t 1800s --quiet &
load=$!
mkfifo /tmp/fifo
kdbtctl on fast || exit 91
sleep 100000 & sleeper=$!
( read line < /tmp/fifo; echo "READ $line" ) & reader=$!
# Time to fall asleep translated (if they are not asleep yet, they enter natively later).
sleep 1
kdbtctl off || exit 92
n=0
for m in $SPECS; do
  kdbtctl on $m || { echo "on $m failed at $n"; exit 93; }
  echo "MODE $(status | awk '$1=="mode:" { print $2 }')"
  case $m in *stats*) before=$(total syscalls); cat /proc/self/stat >/dev/null; echo "ENTERED $(( $(total syscalls) - before ))";; esac
  kdbtctl off || { echo "off failed at $n"; exit 94; }
  n=$((n+1))
done
echo "SWITCHES $n"
echo hello > /tmp/fifo; wait $reader; echo "CASE reader rc=$?"
kill $sleeper; wait $sleeper; echo "CASE sleeper rc=$?"
kill $load; wait $load
echo "STATUS $(status | sed -n 2p)"
case_ rmmod unload
"#
    );
    let out = run_script(&script, Duration::from_secs(1800));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    assert!(o.contains("SWITCHES 100"), "{o}");
    let modes: Vec<&str> = o.lines().filter_map(|l| l.strip_prefix("MODE ")).collect();
    assert_eq!(modes, sequence, "{o}");
    // Each turn that counts entries ran translated: its own syscalls entered through the stubs.
    let entered: Vec<&str> = o
        .lines()
        .filter_map(|l| l.strip_prefix("ENTERED "))
        .collect();
    let counting = sequence.iter().filter(|m| counts_entries(m)).count();
    assert_eq!(entered.len(), counting, "{o}");
    for n in entered {
        assert!(n.parse::<u64>().unwrap() > 0, "{o}");
    }
    assert!(o.contains("READ hello"), "{o}");
    let rc = cases(o);
    assert_eq!(rc.get("reader"), Some(&0), "{o}");
    // Killed by SIGTERM: 128 + 15.
    assert_eq!(rc.get("sleeper"), Some(&143), "{o}");
    assert_eq!(rc.get("rmmod"), Some(&0), "{o}");
    // The sleepers' code-cache return addresses were rewritten, not waited for.
    let status = o.lines().find_map(|l| l.strip_prefix("STATUS ")).unwrap();
    assert!(status.starts_with("kept warm: "), "{status}");
    assert!(
        number_after(&status.replace(')', " "), "rewritten") > 0,
        "{status}"
    );
}

/// A switch-on that fails leaves kdbt.ko as pinned as it was (fault injection through the
/// `fail_next_switch_on` parameter): at once unloadable when it failed before any CPU switched,
/// with a fresh or a warm translator; unloadable after a drain when it failed after the CPUs
/// switched (the `EIO` path, all switched back).
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn a_failed_switch_on_leaves_the_module_unpinned() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
fail() { echo "$1" > /sys/module/kdbt/parameters/fail_next_switch_on; }
drained() { t=0; until status | grep -q '^kept warm'; do t=$((t+1)); [ $t -ge 150 ] && return 1; sleep 0.1; done; }
insmod kdbt.ko || exit 90
fail build; kdbtctl on fast; echo "CASE build_fresh rc=$?"
echo "STATE $(status | head -1)"
case_ rmmod_build_fresh rmmod kdbt
insmod kdbt.ko || exit 91
kdbtctl on fast; kdbtctl off; drained
fail build; kdbtctl on fast; echo "CASE build_warm rc=$?"
case_ rmmod_build_warm rmmod kdbt
insmod kdbt.ko || exit 92
fail cpus; kdbtctl on drk; echo "CASE cpus rc=$?"
echo "STATE $(status | head -1)"
drained
case_ rmmod_cpus rmmod kdbt
insmod kdbt.ko || exit 93
case_ on_after kdbtctl on drk
kdbtctl off
case_ rmmod unload
"#
    );
    let out = run_script(&script, Duration::from_secs(600));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let rc = cases(o);
    const EIO: i32 = 5;
    for (case, want) in [
        ("build_fresh", EIO),
        ("rmmod_build_fresh", 0),
        ("build_warm", EIO),
        ("rmmod_build_warm", 0),
        ("cpus", EIO),
        ("rmmod_cpus", 0),
        ("on_after", 0),
        ("rmmod", 0),
    ] {
        assert_eq!(rc.get(case), Some(&want), "{case}:\n{o}");
    }
    let states: Vec<&str> = o.lines().filter_map(|l| l.strip_prefix("STATE ")).collect();
    assert_eq!(states, ["state: off", "state: off"], "{o}");
}

/// Where return addresses are native (drk, fast:no-callret) a translated context switch
/// carries a CPU into the next task translated, an idle task included, which then loops in
/// the cache. Here CPU 1 is left exactly so: every other task is moved to CPU 0, and a task
/// pinned to CPU 1 ends in a translated `exit_group`, whose context switch goes to CPU 1's
/// idle task. Nothing returns to user mode on CPU 1 until a task pinned there after the
/// unload wakes it, in the idle loop where it stopped: the drain must have taken CPU 1 out of
/// the cache before the unload freed it.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn an_idle_cpu_carried_into_the_cache_leaves_it_before_unload() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
for p in /proc/[0-9]*; do taskset -p 1 ${p#/proc/} >/dev/null 2>&1; done
for m in drk:stats fast:no-callret,stats drk:stats; do
  insmod kdbt.ko || exit 90
  kdbtctl on $m; echo "CASE on_$m rc=$?"
  kdbtctl reset
  taskset -c 1 sh -c 'i=0; while [ $i -lt 50 ]; do sleep 0.002; i=$((i+1)); done'
  echo "PINNED $(total syscalls)"
  kdbtctl off
  case_ rmmod_$m unload
  taskset -c 1 true
  sleep 0.5
done
"#
    );
    let out = run_script(&script, Duration::from_secs(600));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let rc = cases(o);
    for case in [
        "on_drk:stats",
        "on_fast:no-callret,stats",
        "rmmod_drk:stats",
        "rmmod_fast:no-callret,stats",
    ] {
        assert_eq!(rc.get(case), Some(&0), "{case}:\n{o}");
    }
    // The pinned loops ran translated: their syscalls entered through the stubs.
    let pinned: Vec<u64> = o
        .lines()
        .filter_map(|l| l.strip_prefix("PINNED ")?.parse().ok())
        .collect();
    assert_eq!(pinned.len(), 3, "{o}");
    assert!(pinned.iter().all(|&n| n >= 50), "{o}");
    // run_script fails on any trouble in the console (an oops at a freed cache address).
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn a_warn_in_translated_code_is_reported_at_its_native_address() {
    let script = format!(
        "{PRELUDE}{}",
        r#"
insmod kdbt.ko || exit 90
kdbtctl on fast || exit 91
echo WARNING > /sys/kernel/debug/provoke-crash/DIRECT
echo "CASE warn rc=$?"
echo "== stats"; kdbtctl stats | grep '^hooks'
kdbtctl off
case_ rmmod unload
"#
    );
    // LKDTM's WARNING is built into core kernel text, so the write runs it translated: the
    // copied ud2 traps at a code-cache address, the die notifier resumes at the native ud2,
    // and the kernel reports the WARN from its bug table and goes on.
    let out = run_script_expecting(&script, Duration::from_secs(300), &["lkdtm"]);
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let rc = cases(o);
    assert_eq!(rc.get("warn"), Some(&0), "{o}");
    assert_eq!(rc.get("rmmod"), Some(&0), "{o}");
    assert!(number_after(o, "traps_redirected") >= 1, "{o}");
    let console = std::fs::read_to_string(&out.console_log).unwrap();
    let warning = console
        .lines()
        .find(|l| l.contains("WARNING:"))
        .unwrap_or_else(|| panic!("no WARNING:\n{console}"));
    assert!(
        warning.contains("drivers/misc/lkdtm/bugs.c"),
        "reported at its native address: {warning}"
    );
    assert!(!console.contains("invalid opcode"), "{console}");
}

/// `calls`, `with_syscall_ns`, `without_ns` and `insns_executed` (`None`: `-`) of the
/// `kdbt-workload null-insns` line after `label`.
fn null_insns(o: &str, label: &str) -> (u64, u64, u64, Option<u64>) {
    let line = o
        .split(label)
        .nth(1)
        .and_then(|rest| rest.lines().find(|l| l.starts_with("calls ")))
        .unwrap_or_else(|| panic!("no null-insns line after {label}:\n{o}"));
    let counted = line.rsplit(' ').next().unwrap();
    (
        number_after(line, "calls "),
        number_after(line, "with_syscall_ns "),
        number_after(line, "without_ns "),
        counted.parse().ok(),
    )
}

/// The prof client counts what the kernel executes: in one boot under the icount clock, the
/// null system call's kernel instructions per call by `fast:inscount`'s `insns_executed` lie
/// within ±10% of what the clock measures natively (a `syscall` loop minus the same loop
/// with a `nop`: the user side). Both counts are of instructions, not time.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_prof_clients_count_agrees_with_the_icount_clock() {
    let script = format!(
        "{PRELUDE}insmod kdbt.ko || exit 1
echo '== native'; kdbt-workload null-insns --calls 1000000 || exit 1
kdbtctl on fast:inscount || exit 1
echo '== counted'; kdbt-workload null-insns --calls 1000000 || exit 1
kdbtctl off && unload
"
    );
    let out = run_script_icount(&script, Duration::from_secs(900));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    let (calls, with, without, none) = null_insns(o, "== native");
    assert_eq!(none, None, "kdbt was off: no counter\n{o}");
    let by_clock = (with - without) as f64 / calls as f64;
    let (calls, _, _, counted) = null_insns(o, "== counted");
    let counted = counted.unwrap_or_else(|| panic!("no insns_executed under inscount:\n{o}"));
    let by_client = counted as f64 / calls as f64;
    eprintln!(
        "null syscall: {by_clock:.1} kernel instructions by the clock, {by_client:.1} by inscount"
    );
    assert!(
        (by_client / by_clock - 1.0).abs() <= 0.10,
        "inscount {by_client:.1} vs icount {by_clock:.1} instructions per call:\n{o}"
    );
}

/// When a text poke invalidates the block an entry leads to (the syscall entry's or a gate
/// handler's first block), the entries are pointed at fresh translations: they do not go on
/// through the poisoned block's `int3`, a trap each. The `invalidate` debugfs file makes the
/// invalidation land on those blocks on demand, in both designs, with the entries straight
/// into the cache (the gates and every CPU's LSTAR rewritten in the stop) and through stubs.
#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn entries_are_retargeted_when_their_handlers_translation_is_invalidated() {
    const CALLS: u64 = 100_000;
    let script = format!(
        "{PRELUDE}{}",
        r#"
addr() { awk -v s="$1" '$3==s { print $1; exit }' /proc/kallsyms; }
insmod kdbt.ko || exit 90
for m in fast drk fast:stats; do
  kdbtctl on $m || exit 91
  kdbtctl reset
  for f in entry_SYSCALL_64 asm_exc_page_fault; do
    echo "$(addr $f) 1" > /sys/kernel/debug/kdbt/invalidate || exit 92
  done
  perl -e 'syscall(110) for 1..CALLS'
  echo "== $m"; kdbtctl stats; echo "== end"
  kdbtctl off || exit 93
done
echo 'ffffffff81000000 0' > /sys/kernel/debug/kdbt/invalidate; echo "ZERO_LENGTH rc=$?"
unload || exit 94
"#
        .replace("CALLS", &CALLS.to_string())
    );
    let out = run_script(&script, Duration::from_secs(600));
    let o = &out.output;
    assert_eq!(out.exit_status, 0, "{o}");
    assert!(
        o.contains("ZERO_LENGTH rc=1"),
        "a 0-byte range is refused\n{o}"
    );
    // The flush counters count from the module's load.
    let mut retargeted_before = 0;
    for m in ["fast", "drk", "fast:stats"] {
        let start = o.find(&format!("== {m}\n")).unwrap();
        let stats = &o[start..start + o[start..].find("== end").unwrap()];
        eprintln!("[{m}] {}", field(stats, "flush").unwrap_or("?"));
        // One stop per write: each invalidated a block a stub led to.
        let retargeted = number_after(stats, "stubs_retargeted");
        assert_eq!(retargeted - retargeted_before, 2, "[{m}] {stats}");
        retargeted_before = retargeted;
        assert!(
            number_after(stats, "blocks_invalidated") >= 2,
            "[{m}] {stats}"
        );
        // Without retargeting every syscall would trap (fast: traps_redirected; drk: the
        // poisoned block's int3 goes through its rollback).
        let traps = number_after(stats, "traps_redirected")
            + if m == "drk" {
                number_after(stats, "poison_redirected")
            } else {
                0
            };
        assert!(traps < CALLS / 100, "[{m}] {traps} traps\n{stats}");
        if counts_entries(m) {
            assert!(
                number_after(field(stats, "total").unwrap(), "syscalls") >= CALLS,
                "[{m}] {stats}"
            );
        }
    }
}
