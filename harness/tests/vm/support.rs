//! What the VM tests share: the guest tools, the guest slots (at most two guests at a time)
//! and the readers of what a script printed.
#![allow(dead_code)]

use kdbt_harness::qemu::Clock;
use kdbt_harness::{cache, module, vm};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

/// Builds `kdbtctl`, `kdbt-workload` and `kdbt-hostile` for the guest (the guest runs the host's Debian
/// release) once per test binary, in a target directory of its own so it never waits on the
/// lock of the `cargo test` that runs us. Returns the directory holding both.
pub fn guest_tools() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = cache::repo_root();
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("vm-kdbt-guest");
            let status = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "-p",
                    "kdbt-workloads",
                    "--bins",
                ])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(&root)
                .status()
                .expect("running cargo");
            assert!(
                status.success(),
                "building kdbtctl and kdbt-workload failed"
            );
            target.join("release")
        })
        .clone()
}

/// Boots a 2-vCPU guest with kdbt.ko and the guest tools in /kdbt and runs `script`
/// with `sh -c`.
/// Panics if the guest hangs past `timeout` or its kernel reports trouble.
pub fn run_script(script: &str, timeout: Duration) -> vm::Outcome {
    run_script_expecting(script, timeout, &[])
}

/// [`run_script`] for a script that provokes trouble lines containing any of `expected`.
pub fn run_script_expecting(script: &str, timeout: Duration, expected: &[&str]) -> vm::Outcome {
    run_script_with(script, timeout, expected, Vec::new())
}

/// [`run_script_expecting`] with `extra` files in /kdbt beside kdbt.ko and the guest tools.
pub fn run_script_with(
    script: &str,
    timeout: Duration,
    expected: &[&str],
    extra: Vec<PathBuf>,
) -> vm::Outcome {
    run_script_clocked(script, timeout, expected, extra, Clock::Wall)
}

/// [`run_script`] with the icount clock: the guest's CLOCK_MONOTONIC counts its instructions.
pub fn run_script_icount(script: &str, timeout: Duration) -> vm::Outcome {
    run_script_clocked(script, timeout, &[], Vec::new(), Clock::Icount)
}

fn run_script_clocked(
    script: &str,
    timeout: Duration,
    expected: &[&str],
    extra: Vec<PathBuf>,
    clock: Clock,
) -> vm::Outcome {
    let _slot = GuestSlot::take();
    let ko = module::cached().expect("kdbt.ko (cargo xtask module)");
    let tools = guest_tools();
    let mut files = vec![
        ko,
        tools.join("kdbtctl"),
        tools.join("kdbt-workload"),
        tools.join("kdbt-hostile"),
    ];
    files.extend(extra);
    vm::run_on_cached_lab_expecting(
        files,
        vec!["sh".into(), "-c".into(), script.into()],
        timeout,
        expected,
        clock,
    )
    .expect("guest run (console log named in the error)")
}

/// Guests the VM tests run at once. A single-threaded TCG guest keeps one host core busy,
/// and the lab machines have two; no test's verdict depends on how fast its guest runs, so
/// two guests side by side only shorten the suite. Every VM test is in this one binary
/// (`cargo test` runs binaries one after another), so the slots pack all of them.
pub const MAX_GUESTS: u32 = 2;

/// One of the [`MAX_GUESTS`] slots, held while a guest runs.
pub struct GuestSlot;

static SLOTS: (Mutex<u32>, Condvar) = (Mutex::new(0), Condvar::new());

impl GuestSlot {
    /// Waits for a free slot and takes it.
    pub fn take() -> GuestSlot {
        let (busy, freed) = &SLOTS;
        let mut n = busy.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= MAX_GUESTS {
            n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
        GuestSlot
    }
}

impl Drop for GuestSlot {
    fn drop(&mut self) {
        let (busy, freed) = &SLOTS;
        *busy.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// The `rc` of every `CASE <name> rc=<n>` line the script printed.
pub fn cases(output: &str) -> BTreeMap<String, i32> {
    output
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("CASE ")?;
            let (name, rc) = rest.split_once(" rc=")?;
            Some((name.to_string(), rc.trim().parse().ok()?))
        })
        .collect()
}
