//! The `kdbt-workload` binary as the harness runs it: JSON lines on stdout, exit status by
//! outcome. Runs are short (tiny budgets); nothing here asserts how fast anything is.

use std::path::Path;
use std::process::{Command, Output};

use kdbt_workloads::record::{Status, Suite};
use kdbt_workloads::Record;

fn workload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdbt-workload"))
        .args(args)
        .output()
        .expect("running kdbt-workload")
}

/// Every stdout line must be a record: diagnostics belong on stderr.
fn records(out: &Output) -> Vec<Record> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a record: {l}: {e}")))
        .collect()
}

fn listed(suite: &str) -> Vec<String> {
    let out = workload(&["list", "--suite", suite]);
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, name) = l.split_once('\t').unwrap();
            assert_eq!(s, suite);
            name.to_owned()
        })
        .collect()
}

fn assert_well_formed_ok(r: &Record) {
    assert_eq!(r.status, Status::Ok, "{}: {:?}", r.benchmark, r.reason);
    assert!(r.reason.is_none());
    assert!(!r.samples.is_empty());
    assert!(
        r.samples.iter().all(|x| x.is_finite() && *x >= 0.0),
        "{}",
        r.benchmark
    );
    let (min, q1, med, q3, max) = (
        r.min.unwrap(),
        r.q1.unwrap(),
        r.median.unwrap(),
        r.q3.unwrap(),
        r.max.unwrap(),
    );
    assert!(
        min <= q1 && q1 <= med && med <= q3 && q3 <= max,
        "{}",
        r.benchmark
    );
    assert_eq!(r.unit, r.metric.unit());
    assert_eq!(r.better, r.metric.better());
}

#[test]
fn list_names_are_unique_and_cover_the_lmbench_set() {
    let micro = listed("micro");
    let mut dedup = micro.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), micro.len());
    for name in [
        "lat_syscall null",
        "lat_select tcp 100",
        "lat_sig prot",
        "lat_pipe",
        "lat_connect",
        "lat_proc shell",
        "lat_ctx 16p",
        "lat_pagefault",
        "lat_fs 10k delete",
        "bw_unix",
    ] {
        assert!(micro.iter().any(|m| m == name), "missing {name}");
    }
    assert_eq!(
        listed("file"),
        ["fileserver", "webserver", "varmail", "webproxy"]
    );
    assert_eq!(listed("apache"), ["ab"]);
}

#[test]
fn micro_short_run_gives_one_ok_record_per_benchmark_in_list_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = workload(&[
        "micro",
        "--budget-ms",
        "40",
        "--samples",
        "3",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let recs = records(&out);
    let names: Vec<_> = recs.iter().map(|r| r.benchmark.clone()).collect();
    assert_eq!(names, listed("micro"));
    for r in &recs {
        assert_eq!(r.suite, Suite::Micro);
        assert_eq!(r.samples.len(), 3);
        assert!(r.iterations_per_sample >= 1);
        assert_well_formed_ok(r);
    }
    assert!(out.status.success(), "exit {:?}", out.status);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "scratch left behind"
    );
}

/// A measuring run re-executes itself with address-space randomization off, so every run
/// sees one layout (`sys::reexec_without_aslr`).
#[test]
fn micro_runs_with_a_fixed_address_layout() {
    let out = workload(&[
        "micro",
        "--only",
        "lat_syscall null",
        "--samples",
        "1",
        "--budget-ms",
        "1",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("address layout fixed"), "{stderr}");
}

#[test]
fn only_is_repeatable_and_selects_exactly_those() {
    let out = workload(&[
        "micro",
        "--only",
        "lat_pipe",
        "--only",
        "lat_syscall null",
        "--budget-ms",
        "20",
        "--samples",
        "2",
    ]);
    let names: Vec<_> = records(&out).into_iter().map(|r| r.benchmark).collect();
    assert_eq!(names, ["lat_syscall null", "lat_pipe"]);
    assert!(out.status.success());
}

#[test]
fn unknown_benchmark_is_a_usage_error_with_no_output() {
    let out = workload(&["micro", "--only", "lat_nothing"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lat_nothing"));
}

#[test]
fn file_short_run_reports_total_and_per_flow_records() {
    let dir = tempfile::tempdir().unwrap();
    let out = workload(&[
        "file",
        "--only",
        "varmail",
        "--budget-ms",
        "50",
        "--samples",
        "2",
        "--nfiles",
        "30",
        "--threads",
        "2",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 1 + 2 * 13);
    for r in &recs {
        assert_eq!((r.suite, r.benchmark.as_str()), (Suite::File, "varmail"));
        assert_well_formed_ok(r);
    }
    assert!(out.status.success());
}

#[test]
fn apache_that_cannot_start_fails_every_point_and_exits_1() {
    let out = workload(&[
        "apache",
        "--apache-bin",
        "/nonexistent/apache2",
        "--concurrency",
        "1,4",
        "--file-sizes",
        "1k",
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert_eq!(r.status, Status::Failed);
        assert!(r.median.is_none());
        assert!(r.reason.as_deref().unwrap().contains("apache2"));
    }
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn apache_serves_files_to_ab_without_failures() {
    // `cargo xtask test` installs them (setup::REQUIREMENTS); a missing server is a
    // failure here, not a silent pass.
    assert!(
        Path::new("/usr/sbin/apache2").exists() && Path::new("/usr/bin/ab").exists(),
        "apache2 and apache2-utils must be installed on the host for this test"
    );
    let out = workload(&[
        "apache",
        "--concurrency",
        "1,4",
        "--file-sizes",
        "1k,10k",
        "--requests",
        "50",
        "--samples",
        "2",
    ]);
    let recs = records(&out);
    assert_eq!(recs.len(), 2 * 2 * 2);
    for r in &recs {
        assert_well_formed_ok(r);
        assert_eq!(r.iterations_per_sample, 50);
        assert!(r.params.contains_key("concurrency"));
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
