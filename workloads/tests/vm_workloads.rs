//! Each workload runs in the guest (QEMU, the lab's kernel and image) and prints well-formed,
//! ok records: a short version of `micro`, `file` and `apache`.
//!
//! They need the lab built, so a plain `cargo test` skips them as ignored; `cargo xtask test`
//! builds the lab and runs them with `--include-ignored`.

use kdbt_harness::vm;
use kdbt_workloads::Record;
use std::time::Duration;

/// Runs `kdbt-workload <args>` in a 2-vCPU guest and returns its records and exit status.
fn run_in_guest(args: &[&str]) -> (Vec<Record>, i32, String) {
    let mut command = vec!["kdbt-workload".to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    let out = vm::run_on_cached_lab(
        vec![env!("CARGO_BIN_EXE_kdbt-workload").into()],
        command,
        Duration::from_secs(900),
    )
    .expect("guest run (console log named in the error)");
    let records = out
        .output
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (records, out.exit_status, out.output)
}

/// Every record is ok with a positive median, and each of `names` has one.
fn assert_all_ok(records: &[Record], names: &[&str], output: &str) {
    assert!(!records.is_empty(), "no record:\n{output}");
    for name in names {
        assert!(
            records.iter().any(|r| r.benchmark == *name),
            "{name} missing:\n{output}"
        );
    }
    for r in records {
        assert!(
            r.is_ok(),
            "{} failed: {:?}\n{output}",
            r.benchmark,
            r.reason
        );
        assert!(r.median.is_some_and(|m| m.is_finite() && m > 0.0), "{r:?}");
    }
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn micro_suite_runs_in_the_guest() {
    let (records, status, output) = run_in_guest(&["micro", "--budget-ms", "20", "--samples", "3"]);
    let names = [
        "lat_syscall null",
        "lat_pipe",
        "lat_ctx 2p",
        "lat_proc exec",
        "bw_unix",
    ];
    assert_all_ok(&records, &names, &output);
    assert_eq!(status, 0);
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn file_personalities_run_in_the_guest() {
    let (records, status, output) = run_in_guest(&[
        "file",
        "--budget-ms",
        "200",
        "--samples",
        "2",
        "--nfiles",
        "50",
    ]);
    let names = ["fileserver", "webserver", "varmail", "webproxy"];
    assert_all_ok(&records, &names, &output);
    assert_eq!(status, 0);
}

#[test]
#[ignore = "needs the guest lab: run through `cargo xtask test`"]
fn apache_serves_ab_in_the_guest_without_failed_requests() {
    let (records, status, output) = run_in_guest(&[
        "apache",
        "--concurrency",
        "1,8",
        "--file-sizes",
        "1k",
        "--requests",
        "100",
        "--samples",
        "2",
    ]);
    assert_all_ok(&records, &["ab"], &output);
    assert!(records.iter().any(|r| r.params.contains_key("concurrency")));
    assert_eq!(status, 0);
}
