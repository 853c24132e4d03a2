//! Unprivileged programs against the translated kernel's entry and return paths: the kernel's
//! own x86 selftests that reach them (user GS at a fault, a faulting `iretq`, espfix64,
//! single-steps over syscalls) and `kdbt-hostile`, natively and in every design, alone and
//! beside two CPU-bound loops. Every translated verdict must equal the native one in the same
//! boot, and the kernel must stay clean (a user program's own faults are not kernel trouble).
//!
//! Needs the guest lab, so a plain `cargo test` skips it; `cargo xtask test` runs it.

use crate::support::run_script_with;
use kdbt_harness::mix::PRELUDE;
use kdbt_harness::{kernel, selftests};
use std::collections::BTreeMap;
use std::time::Duration;

/// The modes compared with native.
const MODES: &[&str] = &["fast", "fast:no-callret", "drk"];

/// The tests run again beside CPU load: the two the crash reports named, and kdbt-hostile.
const UNDER_LOAD: &[&str] = &["fsgsbase_64", "sigreturn_64", "kdbt-hostile"];

/// The guest script: for native and each mode, every selftest and kdbt-hostile alone, then
/// [`UNDER_LOAD`] beside two busy loops; each verdict as `VERDICT mode load name rc` and each
/// kdbt-hostile case as `VERDICT mode load case:NAME outcome`.
fn script(tests: &[String]) -> String {
    let all = tests.join(" ");
    let loaded = UNDER_LOAD.join(" ");
    let modes = MODES.join(" ");
    format!(
        r#"{PRELUDE}
insmod kdbt.ko || exit 90
run() {{ # mode load name
  if [ "$3" = kdbt-hostile ]; then
    kdbt-hostile 1 | sed "s/^case \([^:]*\): /VERDICT $1 $2 case:\1 /"
  else
    ./$3 > /tmp/$3.out 2>&1; echo "VERDICT $1 $2 $3 $?"
  fi
}}
sweep() {{ # mode
  for t in {all} kdbt-hostile; do run "$1" alone $t; done
  ( while :; do :; done ) & a=$!
  ( while :; do :; done ) & b=$!
  for t in {loaded}; do run "$1" loaded $t; done
  kill $a $b; wait $a $b 2>/dev/null
}}
sweep native
for m in {modes}; do
  kdbtctl on "$m" || exit 91
  sweep "$m"
  kdbtctl stats | grep -E '^(total|drk):' | head -3
  kdbtctl off || exit 92
done
unload || exit 93
echo ENTRY-PATHS-DONE
"#
    )
}

/// (load, test) → verdict, per mode.
type Verdicts = BTreeMap<String, BTreeMap<(String, String), String>>;

fn verdicts(output: &str) -> Verdicts {
    let mut all = Verdicts::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("VERDICT ") else {
            continue;
        };
        let mut words = rest.splitn(4, ' ');
        let (Some(mode), Some(load), Some(name), Some(verdict)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            panic!("bad verdict line {line:?}");
        };
        all.entry(mode.to_string())
            .or_default()
            .insert((load.to_string(), name.to_string()), verdict.to_string());
    }
    all
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn user_programs_see_the_same_kernel_translated_as_native() {
    let kernel = kernel::cached().expect("the guest kernel (cargo xtask kernel)");
    let binaries = selftests::build(&kernel, selftests::ENTRY_PATH).expect("x86 selftests");
    let names: Vec<String> = binaries
        .iter()
        .map(|b| b.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let out = run_script_with(&script(&names), Duration::from_secs(2400), &[], binaries);
    let o = &out.output;
    assert!(o.contains("ENTRY-PATHS-DONE"), "{o}");
    assert_eq!(out.exit_status, 0, "{o}");
    let v = verdicts(o);
    let native = &v["native"];
    let expected = names.len() + UNDER_LOAD.len() - 1;
    let hostile_cases = native
        .keys()
        .filter(|(_, n)| n.starts_with("case:"))
        .count();
    assert!(
        hostile_cases >= 2 * 17,
        "kdbt-hostile ran alone and loaded: {native:?}"
    );
    assert_eq!(native.len(), expected + hostile_cases, "{native:?}");
    for mode in MODES {
        let translated = v
            .get(*mode)
            .unwrap_or_else(|| panic!("no verdicts for {mode}: {o}"));
        let differ: Vec<String> = native
            .iter()
            .filter(|(k, verdict)| translated.get(*k) != Some(verdict))
            .map(|((load, name), verdict)| {
                format!(
                    "{load} {name}: native {verdict}, {mode} {:?}",
                    translated.get(&(load.clone(), name.clone()))
                )
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{mode} differs from native:\n{}",
            differ.join("\n")
        );
    }
    // What the entry-path selftests do natively under TCG (README lists these).
    for ((load, name), verdict) in native.iter().filter(|((_, n), _)| !n.starts_with("case:")) {
        eprintln!("native {load} {name}: rc {verdict}");
    }
}
