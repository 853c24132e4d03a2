//! The kernel's own x86 selftests (`tools/testing/selftests/x86` of the guest kernel's source),
//! built 64-bit and static on the host for the guest, cached under `$KDBT_CACHE/selftests/`.
//!
//! Built as their Makefile builds them (`-O2 -g -std=gnu99 -pthread -DCAN_BUILD_64 … -lrt
//! -ldl`), against Debian's own kernel headers rather than the tree's exported ones, and
//! `-static` so they need nothing of the guest's userland.

use crate::cache::{self, Key, Stamp};
use crate::kernel::Kernel;
use crate::{process, setup};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The selftests that exercise the entry and return paths a translated kernel must get right
/// (user GS at a fault, a faulting `iretq`, espfix64, single-steps over syscalls, `sysret`
/// to a non-canonical RIP, the vsyscall page, syscall argument faults): the names their
/// Makefile gives, without the `_64` suffix.
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

/// Extra sources the Makefile links into some tests (its `extra-files` rules).
const EXTRA_FILES: &[(&str, &str)] = &[
    ("sysret_rip", "clang_helpers_64.S"),
    ("fsgsbase_restore", "clang_helpers_64.S"),
    ("sysret_ss_attrs", "thunks.S"),
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

/// Builds `names` (Makefile names without `_64`) and returns the binaries (`<name>_64`).
///
/// Errors: the C compiler is missing (setup names its package) or a test does not build
/// (with the compiler's output).
pub fn build(kernel: &Kernel, names: &[&str]) -> Result<Vec<PathBuf>> {
    setup::ensure(&[setup::Stage::HostTests])?;
    let source = kernel.source_dir.join("tools/testing/selftests/x86");
    let mut key = Key::new()
        .part("kernel", &kernel.key)
        .part("cc", setup::tool_version("cc"));
    for name in names {
        key = key.part(name, std::fs::read(source.join(format!("{name}.c")))?);
        for (_, extra) in EXTRA_FILES.iter().filter(|(n, _)| n == name) {
            key = key.part(extra, std::fs::read(source.join(extra))?);
        }
    }
    let key = key.hex();
    let dir = cache::root()?.join("selftests").join(&key);
    let outputs: Vec<PathBuf> = names.iter().map(|n| dir.join(format!("{n}_64"))).collect();
    let stamp = Stamp::at(dir.join("stamp"));
    if stamp.is_current(&key) && outputs.iter().all(|o| o.exists()) {
        return Ok(outputs);
    }
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("build.log");
    for (name, out) in names.iter().zip(&outputs) {
        process::run_logged(
            Command::new("cc")
                .current_dir(&source)
                .args([
                    "-m64",
                    "-static",
                    "-O2",
                    "-g",
                    "-std=gnu99",
                    "-pthread",
                    "-Wall",
                ])
                .args(["-DCAN_BUILD_64", "-o"])
                .arg(out)
                .arg(format!("{name}.c"))
                .args(
                    EXTRA_FILES
                        .iter()
                        .filter(|(n, _)| n == name)
                        .map(|(_, extra)| extra),
                )
                .args(["-lrt", "-ldl"]),
            &log,
            Duration::from_secs(300),
        )
        .with_context(|| format!("building the x86 selftest {name}"))?;
    }
    stamp.record(&key)?;
    Ok(outputs)
}
