//! Bad command lines are refused before setup or any build: one line on stderr, a non-zero
//! exit, and nothing written to the lab cache (each run gets an empty `KDBT_CACHE`, which must
//! stay empty).

use std::path::Path;
use std::process::Command;

/// Runs `cargo xtask ARGS` with an empty cache; returns (exit code, stderr).
fn xtask(args: &[&str]) -> (Option<i32>, String) {
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("KDBT_CACHE", cache.path())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "`xtask {}` wrote into the cache: {left:?}",
        args.join(" ")
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts `args` are refused with one line that contains `why`.
fn refused(args: &[&str], why: &str) {
    let (code, stderr) = xtask(args);
    assert!(
        code.is_some_and(|c| c != 0),
        "`xtask {}` exited {code:?}",
        args.join(" ")
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "`xtask {}` says one line: {stderr}",
        args.join(" ")
    );
    assert!(stderr.contains(why), "`xtask {}`: {stderr}", args.join(" "));
}

#[test]
fn bench_refuses_an_empty_mode_list() {
    refused(&["bench", "--modes", ""], "mode");
}

#[test]
fn bench_refuses_a_mode_listed_twice_in_any_spelling() {
    refused(&["bench", "--modes", "native,fast,fast"], "twice");
    refused(&["bench", "--modes", "native,fast,fast:callret"], "twice");
}

#[test]
fn bench_refuses_unknown_options_and_designs() {
    refused(&["bench", "--modes", "native,fast:warp"], "unknown option");
    refused(&["bench", "--modes", "native,slow"], "unknown design");
    refused(&["bench", "--modes", "native,drk:callret"], "callret");
}

#[test]
fn bench_refuses_a_run_without_native() {
    refused(&["bench", "--modes", "fast,drk"], "native");
}

#[test]
fn bench_refuses_zero_rounds() {
    refused(&["bench", "--reps", "0"], "--reps 0");
}

#[test]
fn bench_refuses_a_boot_timeout_too_short_for_the_plan() {
    refused(&["bench", "--boot-timeout", "60"], "too short");
    refused(&["bench", "--quick", "--boot-timeout", "30"], "too short");
}

#[test]
fn bench_refuses_an_unknown_suite() {
    refused(&["bench", "--suite", "disk"], "unknown suite");
}

#[test]
fn figures_refuses_one_run_named_twice() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("20260101-000000-abc1234");
    std::fs::create_dir(&run).unwrap();
    let same = dir.path().join(".").join("20260101-000000-abc1234");
    refused(
        &["figures", run.to_str().unwrap(), same.to_str().unwrap()],
        "named twice",
    );
}

#[test]
fn vm_refuses_a_missing_or_unreadable_put_before_booting() {
    refused(
        &["vm", "--put", "/nonexistent/a.out", "--", "true"],
        "/nonexistent/a.out",
    );
    refused(&["vm", "--put", "/", "--", "true"], "not a regular file");
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("job.sh");
    std::fs::write(&job, "true").unwrap();
    refused(
        &["vm", "--put", job.to_str().unwrap(), "--", "true"],
        "already taken",
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_xtask")).exists());
}

#[test]
fn bench_refuses_cpus_with_a_plan_that_sets_vcpus() {
    refused(
        &["bench", "--plan", "scaling", "--cpus", "2"],
        "the plan sets the vCPU counts itself",
    );
    refused(
        &["bench", "--plan", "scaling", "--shard", "0/2"],
        "--shard with a plan that sets vcpus",
    );
}

#[test]
fn bench_refuses_a_plan_with_bad_vcpus_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.toml");
    std::fs::write(&plan, "modes = [\"native\", \"fast\"]\nvcpus = [2, 1]\n").unwrap();
    refused(
        &["bench", "--plan", plan.to_str().unwrap()],
        &format!("{}:2: vcpus must be in ascending order", plan.display()),
    );
}

#[test]
fn bench_refuses_jobs_out_of_range() {
    refused(&["bench", "--jobs", "0"], "--jobs 0: give 1 to");
    refused(
        &["bench", "--suite", "apache", "--jobs", "9"],
        "--jobs 9: give 1 to",
    );
}
