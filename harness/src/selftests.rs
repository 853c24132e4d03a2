//! The kernel's own selftests (`tools/testing/selftests` of the guest kernel's source), built
//! static on the host for the guest and cached under `$KDBT_CACHE/selftests/`, and the guest
//! script that runs them natively and under translation (`cargo xtask selftests`, the VM tests).
//!
//! Each suite is built as its Makefile builds it (its flags, its helper sources, and
//! `lib.mk`'s `-D_GNU_SOURCE=`, without which `basename` is implicitly declared and truncates
//! its pointer), against the tree's own exported UAPI headers (`make headers`, the
//! `KHDR_INCLUDES` of `lib.mk`), and `-static` so it needs nothing of the guest's userland.

use crate::cache::{self, Key, Stamp};
use crate::kernel::Kernel;
use crate::{process, setup};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One directory of selftests, and how its Makefile builds them.
pub struct Suite {
    /// Its name on the command line (`--suite`).
    pub name: &'static str,
    /// Its directory under `tools/testing/selftests`.
    pub dir: &'static str,
    /// The tests run: sources `<test>.c`, binaries `<test><suffix>`.
    pub tests: &'static [&'static str],
    /// Binary suffix (x86's Makefile builds `<test>_64`).
    pub suffix: &'static str,
    /// Compiler flags of every test, after `-static`.
    cflags: &'static [&'static str],
    /// Helper sources linked into every test.
    helpers: &'static [&'static str],
    /// Libraries, last on the line.
    libs: &'static [&'static str],
}

/// The x86 selftests that exercise the entry and return paths a translated kernel must get
/// right (user GS at a fault, a faulting `iretq`, espfix64, single-steps over syscalls,
/// `sysret` to a non-canonical RIP, the vsyscall page, syscall argument faults): the names
/// their Makefile gives, without the `_64` suffix.
pub const ENTRY_PATH: &[&str] = &[
    "fsgsbase",
    "sigreturn",
    "sysret_rip",
    "single_step_syscall",
    "syscall_nt",
    "sigaltstack",
    "test_vsyscall",
    "syscall_arg_fault",
];

/// Every 64-bit x86 selftest (x86/Makefile: `TARGETS_C_BOTHBITS`, `TARGETS_C_64BIT_ONLY` and
/// `TARGETS_C_32BIT_NEEDED`) but those in [`NOT_RUN`].
pub const X86: Suite = Suite {
    name: "x86",
    dir: "x86",
    tests: &[
        "single_step_syscall",
        "syscall_nt",
        "test_mremap_vdso",
        "check_initial_reg_state",
        "sigreturn",
        "iopl",
        "ioperm",
        "test_vsyscall",
        "mov_ss_trap",
        "sigtrap_loop",
        "syscall_arg_fault",
        "fsgsbase_restore",
        "sigaltstack",
        "nx_stack",
        "fsgsbase",
        "sysret_rip",
        "syscall_numbering",
        "corrupt_xstate_header",
        "amx",
        "lam",
        "test_shadow_stack",
        "ldt_gdt",
        "ptrace_syscall",
    ],
    suffix: "_64",
    // -no-pie: thunks.S uses absolute addresses.
    cflags: &[
        "-m64",
        "-no-pie",
        "-O2",
        "-g",
        "-std=gnu99",
        "-pthread",
        "-Wall",
        "-DCAN_BUILD_64",
    ],
    helpers: &[],
    libs: &["-lrt", "-ldl"],
};

/// futex/functional: every test of its Makefile.
pub const FUTEX: Suite = Suite {
    name: "futex",
    dir: "futex/functional",
    tests: &[
        "futex_wait_timeout",
        "futex_wait_wouldblock",
        "futex_requeue_pi",
        "futex_requeue_pi_signal_restart",
        "futex_requeue_pi_mismatched_ops",
        "futex_wait_uninitialized_heap",
        "futex_wait_private_mapped_file",
        "futex_wait",
        "futex_requeue",
        "futex_waitv",
    ],
    suffix: "",
    cflags: &["-g", "-O2", "-Wall", "-pthread", "-I../include", "-I../.."],
    helpers: &[],
    libs: &["-lpthread", "-lrt"],
};

/// timers: the Makefile's non-destructive tests (its `TEST_GEN_PROGS`; the destructive ones
/// set the clock), but for the three that run a minute or more each (`inconsistency-check`,
/// `raw_skew`, `threadtest`) and `rtcpie` (the guest has no `/dev/rtc` interrupts to test).
pub const TIMERS: Suite = Suite {
    name: "timers",
    dir: "timers",
    tests: &[
        "posix_timers",
        "nanosleep",
        "nsleep-lat",
        "set-timer-lat",
        "mqueue-lat",
    ],
    suffix: "",
    cflags: &["-O3", "-Wall", "-Wl,-no-as-needed"],
    helpers: &[],
    libs: &["-lrt", "-lpthread", "-lm"],
};

/// mm: a subset that needs no hugetlb pages, KSM, userfaultfd, debugfs or extra kernel
/// options: mapping, remapping, locking, populating and sealing memory, and dirty tracking.
pub const MM: Suite = Suite {
    name: "mm",
    dir: "mm",
    tests: &[
        "map_fixed_noreplace",
        "mremap_dontunmap",
        "mremap_test",
        "mlock2-tests",
        "map_populate",
        "madv_populate",
        "mkdirty",
        "mseal_test",
        "mdwe_test",
        "mrelease_test",
        "soft-dirty",
    ],
    suffix: "",
    // -I../../../../tools/include: the Makefile's $(TOOLS_INCLUDES).
    cflags: &[
        "-Wall",
        "-O2",
        "-U_FORTIFY_SOURCE",
        "-I../../../../tools/include",
    ],
    helpers: &["vm_util.c", "thp_settings.c"],
    libs: &["-lrt", "-lpthread", "-lm"],
};

/// Every suite, in the order they run.
pub const SUITES: &[&Suite] = &[&X86, &FUTEX, &TIMERS, &MM];

/// Selftests whose verdict depends on elapsed time, and so on the host's load under TCG: a
/// latency or interval bound (timers), or a `usleep` that must outlast another thread's way
/// into `futex_wait` (futex: 10 ms; `futex_requeue` failed natively and passed translated in
/// one boot). `cargo xtask selftests` runs and reports them; the VM test, whose verdict may
/// not depend on timing, leaves them out.
pub const TIMING_DEPENDENT: &[&str] = &[
    "posix_timers",
    "nsleep-lat",
    "set-timer-lat",
    "mqueue-lat",
    "futex_requeue",
    "futex_requeue_pi",
    "futex_requeue_pi_mismatched_ops",
    "futex_requeue_pi_signal_restart",
    "futex_wait",
    "futex_wait_private_mapped_file",
    "futex_wait_uninitialized_heap",
    "futex_waitv",
];

/// Selftests of the suites' Makefiles that are not run, with the reason.
pub const NOT_RUN: &[(&str, &str)] = &[(
    "sysret_ss_attrs_64",
    "natively under TCG it takes the kernel down: its far return to a 32-bit code segment \
     faults on the user stack as a supervisor access (error code 0x1), which the kernel \
     cannot fix up (Oops)",
)];

/// Extra sources and flags the x86 Makefile gives single tests (its `extra-files` and
/// per-target `CFLAGS` rules).
const X86_EXTRAS: &[(&str, &str)] = &[
    ("sysret_rip", "clang_helpers_64.S"),
    ("fsgsbase_restore", "clang_helpers_64.S"),
    ("sysret_ss_attrs", "thunks.S"),
    ("check_initial_reg_state", "-Wl,-ereal_start"),
    ("nx_stack", "-Wl,-z,noexecstack"),
];

/// Selftests whose native verdict under QEMU TCG is not a pass, with the reason. They are run
/// and compared like the others (a translated verdict must equal the native one), never hidden.
pub const TCG_NATIVE_FAILURES: &[(&str, &str)] = &[
    (
        "ldt_gdt_64",
        "needs int $0x80 (IA32 emulation is off in the guest kernel): exits 139",
    ),
    (
        "mov_ss_trap_64",
        "needs int $0x80 (IA32 emulation is off in the guest kernel): exits 139",
    ),
    (
        "ptrace_syscall_64",
        "needs int $0x80 (IA32 emulation is off in the guest kernel): exits 139",
    ),
    ("amx_64", "TCG has no AMX: exits 4 (skip)"),
    ("lam_64", "TCG has no LAM: exits 4 (skip)"),
    (
        "test_shadow_stack_64",
        "no user shadow stack under TCG: exits 1",
    ),
];

/// The suite called `name`. Errors: no such suite (naming the ones there are).
pub fn suite(name: &str) -> Result<&'static Suite> {
    SUITES
        .iter()
        .copied()
        .find(|s| s.name == name)
        .with_context(|| {
            let names: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
            format!("no selftest suite {name:?}; there are {}", names.join(", "))
        })
}

/// Builds the x86 tests `names` (Makefile names without `_64`) and returns the binaries.
pub fn build(kernel: &Kernel, names: &[&str]) -> Result<Vec<PathBuf>> {
    build_tests(kernel, &X86, names)
}

/// Builds every test of `suite` and returns the binaries.
pub fn build_suite(kernel: &Kernel, suite: &Suite) -> Result<Vec<PathBuf>> {
    build_tests(kernel, suite, suite.tests)
}

/// The tree's exported UAPI headers (`make headers` in a build directory of their own), for
/// `-isystem`: what `lib.mk` gives every selftest as `KHDR_INCLUDES`.
fn headers(kernel: &Kernel) -> Result<PathBuf> {
    let dir = cache::root()?
        .join("selftests")
        .join(format!("headers-{}", kernel.key));
    let include = dir.join("usr/include");
    let stamp = Stamp::at(dir.join("stamp"));
    if stamp.is_current(&kernel.key) && include.join("linux/fs.h").exists() {
        return Ok(include);
    }
    process::run_logged(
        Command::new("make")
            .arg("-C")
            .arg(&kernel.source_dir)
            .arg(format!("O={}", dir.display()))
            .args(["ARCH=x86", "LLVM=1", "headers"]),
        &dir.join("build.log"),
        Duration::from_secs(600),
    )
    .context("exporting the kernel tree's UAPI headers for the selftests")?;
    stamp.record(&kernel.key)?;
    Ok(include)
}

/// Builds `names` of `suite`. Errors: the C compiler is missing (setup names its package) or a
/// test does not build (with the compiler's output).
fn build_tests(kernel: &Kernel, suite: &Suite, names: &[&str]) -> Result<Vec<PathBuf>> {
    setup::ensure(&[setup::Stage::HostTests])?;
    let source = kernel
        .source_dir
        .join("tools/testing/selftests")
        .join(suite.dir);
    let extras = |name: &str| -> Vec<&'static str> {
        if suite.dir != X86.dir {
            return Vec::new();
        }
        X86_EXTRAS
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, e)| *e)
            .collect()
    };
    let mut key = Key::new()
        .part("kernel", &kernel.key)
        .part("cc", setup::tool_version("cc"))
        .part("suite", suite.dir)
        .part("cflags", suite.cflags.join(" "))
        .part("lib.mk", "-D_GNU_SOURCE=");
    for helper in suite.helpers {
        key = key.part(helper, std::fs::read(source.join(helper))?);
    }
    for name in names {
        key = key.part(name, std::fs::read(source.join(format!("{name}.c")))?);
        for extra in extras(name).iter().filter(|e| !e.starts_with('-')) {
            key = key.part(extra, std::fs::read(source.join(extra))?);
        }
    }
    let key = key.hex();
    let dir = cache::root()?.join("selftests").join(&key);
    let outputs: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(format!("{n}{}", suite.suffix)))
        .collect();
    let stamp = Stamp::at(dir.join("stamp"));
    if stamp.is_current(&key) && outputs.iter().all(|o| o.exists()) {
        return Ok(outputs);
    }
    let include = headers(kernel)?;
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("build.log");
    for (name, out) in names.iter().zip(&outputs) {
        process::run_logged(
            Command::new("cc")
                .current_dir(&source)
                .args(["-static", "-D_GNU_SOURCE="])
                .args(suite.cflags)
                .arg("-isystem")
                .arg(&include)
                .arg("-o")
                .arg(out)
                .arg(format!("{name}.c"))
                .args(suite.helpers)
                .args(extras(name))
                .args(suite.libs),
            &log,
            Duration::from_secs(300),
        )
        .with_context(|| format!("building the {} selftest {name}", suite.name))?;
    }
    stamp.record(&key)?;
    Ok(outputs)
}

/// Seconds one selftest may run in the guest before `timeout` kills it (its verdict is then
/// 124, compared like any other).
pub const TEST_TIMEOUT_S: u64 = 300;

/// The guest script: loads kdbt, then runs every binary of `tests` (file names in /kdbt)
/// natively and in each of `modes`, one line `VERDICT <mode> <test> <exit status>` each (and
/// `TOOK <mode> <test> <start> <end>`, guest uptime in s; natively, a failing test's last
/// lines as `OUT <test>: …`), with kdbt's `total:` statistics after each mode; unloads, and
/// ends with `SELFTESTS-DONE`.
pub fn script(tests: &[String], modes: &[String]) -> String {
    let prelude = crate::mix::PRELUDE;
    let all = tests.join(" ");
    let modes = modes.join(" ");
    format!(
        r#"{prelude}
insmod kdbt.ko || exit 90
sweep() {{ # mode
  for t in {all}; do
    start=$(cut -d' ' -f1 /proc/uptime)
    timeout {TEST_TIMEOUT_S} ./$t > /tmp/$t.out 2>&1; rc=$?
    echo "VERDICT $1 $t $rc"
    echo "TOOK $1 $t $start $(cut -d' ' -f1 /proc/uptime)"
    [ "$1" = native ] && [ $rc != 0 ] && tail -n 4 /tmp/$t.out | sed "s/^/OUT $t: /"
  done
}}
sweep native
for m in {modes}; do
  kdbtctl on "$m" || exit 91
  sweep "$m"
  kdbtctl stats | grep -E '^(total|flush):'
  kdbtctl off || exit 92
done
unload || exit 93
echo SELFTESTS-DONE
"#
    )
}

/// Each mode's verdicts (exit statuses) by test, from the script's output.
pub type Verdicts = BTreeMap<String, BTreeMap<String, String>>;

/// Parses the `VERDICT` lines of `output`. Errors: a malformed line.
pub fn verdicts(output: &str) -> Result<Verdicts> {
    let mut all = Verdicts::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("VERDICT ") else {
            continue;
        };
        let words: Vec<&str> = rest.split(' ').collect();
        let [mode, test, verdict] = words[..] else {
            bail!("malformed verdict line {line:?}");
        };
        all.entry(mode.to_string())
            .or_default()
            .insert(test.to_string(), verdict.to_string());
    }
    Ok(all)
}

/// Where a mode's verdicts differ from native: one line per test (a test a mode did not run
/// counts as differing). Empty when every mode agrees with native on every test.
pub fn differences(v: &Verdicts, modes: &[String]) -> Vec<String> {
    let empty = BTreeMap::new();
    let native = v.get("native").unwrap_or(&empty);
    let mut out = Vec::new();
    if native.is_empty() {
        out.push("no native verdicts".to_string());
    }
    for mode in modes {
        let got = v.get(mode).unwrap_or(&empty);
        for (test, want) in native {
            let verdict = got.get(test).map_or("not run", String::as_str);
            if verdict != want {
                out.push(format!("{test}: native {want}, {mode} {verdict}"));
            }
        }
    }
    out
}

/// The verdicts as a Markdown table: a row per test, a column per mode (native first), and
/// the known reason for a native failure under TCG.
pub fn table(v: &Verdicts, modes: &[String]) -> String {
    let empty = BTreeMap::new();
    let native = v.get("native").unwrap_or(&empty);
    let mut out = String::from("| selftest | native |");
    for m in modes {
        out.push_str(&format!(" {m} |"));
    }
    out.push_str(" native under TCG |\n|---|---|");
    out.push_str(&"---|".repeat(modes.len()));
    out.push_str("---|\n");
    for (test, verdict) in native {
        out.push_str(&format!("| `{test}` | {verdict} |"));
        for m in modes {
            let got = v.get(m).and_then(|t| t.get(test));
            out.push_str(&format!(" {} |", got.map_or("not run", String::as_str)));
        }
        let why = TCG_NATIVE_FAILURES
            .iter()
            .find(|(n, _)| n == test)
            .map_or(if verdict == "0" { "pass" } else { "fails" }, |(_, w)| w);
        let timing = if TIMING_DEPENDENT.contains(&test.as_str()) {
            " (verdict depends on timing)"
        } else {
            ""
        };
        out.push_str(&format!(" {why}{timing} |\n"));
    }
    out
}

/// The binaries' file names, for the script.
pub fn file_names(binaries: &[PathBuf]) -> Vec<String> {
    binaries
        .iter()
        .filter_map(|b| Path::new(b).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes() -> Vec<String> {
        vec!["fast".into(), "drk".into()]
    }

    #[test]
    fn verdicts_are_compared_with_native_per_test() {
        let out = "VERDICT native a 0\nnoise\nVERDICT native b 1\nVERDICT fast a 0\n\
                   VERDICT fast b 1\nVERDICT drk a 0\nVERDICT drk b 139\n";
        let v = verdicts(out).unwrap();
        assert_eq!(v["drk"]["b"], "139");
        assert_eq!(differences(&v, &modes()), ["b: native 1, drk 139"]);
        let t = table(&v, &modes());
        assert!(t.contains("| `b` | 1 | 1 | 139 |"), "{t}");
        assert!(t.contains("| `a` | 0 | 0 | 0 | pass |"), "{t}");
    }

    #[test]
    fn a_test_a_mode_did_not_run_differs_and_bad_lines_are_refused() {
        let v = verdicts("VERDICT native a 0\nVERDICT fast b 0\n").unwrap();
        let d = differences(&v, &modes());
        assert!(
            d.contains(&"a: native 0, fast not run".to_string()),
            "{d:?}"
        );
        assert_eq!(
            differences(&Verdicts::new(), &modes()),
            ["no native verdicts"]
        );
        assert!(verdicts("VERDICT native a\n").is_err());
    }

    #[test]
    fn suites_are_found_by_name_and_an_unknown_one_is_refused() {
        assert_eq!(suite("futex").unwrap().dir, "futex/functional");
        let e = match suite("net") {
            Err(e) => e.to_string(),
            Ok(_) => panic!("no suite net"),
        };
        assert!(e.contains("x86, futex, timers, mm"), "{e}");
    }

    #[test]
    fn the_script_runs_every_test_natively_and_in_each_mode() {
        let s = script(&["a_64".into(), "b".into()], &modes());
        assert!(s.contains("for t in a_64 b; do"), "{s}");
        assert!(s.contains("sweep native"), "{s}");
        assert!(s.contains("for m in fast drk; do"), "{s}");
        assert!(s.contains("SELFTESTS-DONE"), "{s}");
    }
}
