//! The kernel's own selftests under translation: every 64-bit x86 selftest, futex/functional,
//! the non-destructive timers tests and an mm subset (`kdbt_harness::selftests`), run natively
//! and under `fast`, `fast:no-callret` and `drk` in one boot. Each translated verdict must
//! equal the native one, and the console must stay clean (`cargo xtask selftests` runs the
//! same and prints the table README quotes). The tests whose verdict is a latency bound
//! (`selftests::TIMING_DEPENDENT`) are left out: a test's verdict may not depend on timing.
//!
//! Needs the guest lab, so a plain `cargo test` skips it; `cargo xtask test` runs it.

use crate::support::run_script_with;
use kdbt_harness::{kernel, selftests};
use std::time::Duration;

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn the_kernels_selftests_give_the_native_verdicts_under_translation() {
    let kernel = kernel::cached().expect("the guest kernel (cargo xtask kernel)");
    let mut binaries = Vec::new();
    for suite in selftests::SUITES {
        binaries.extend(selftests::build_suite(&kernel, suite).expect("selftests build"));
    }
    binaries.retain(|b| {
        let name = b.file_name().unwrap().to_string_lossy();
        !selftests::TIMING_DEPENDENT.contains(&name.as_ref())
    });
    let names = selftests::file_names(&binaries);
    let modes: Vec<String> = ["fast", "fast:no-callret", "drk"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let out = run_script_with(
        &selftests::script(&names, &modes),
        Duration::from_secs(3600),
        &[],
        binaries,
    );
    let o = &out.output;
    assert!(o.contains("SELFTESTS-DONE"), "{o}");
    assert_eq!(out.exit_status, 0, "{o}");
    let v = selftests::verdicts(o).unwrap();
    assert_eq!(v["native"].len(), names.len(), "{o}");
    let differ = selftests::differences(&v, &modes);
    assert!(differ.is_empty(), "{}\n{o}", differ.join("\n"));
    eprintln!("{}", selftests::table(&v, &modes));
}
