//! `cargo xtask module`: `kdbt.ko`, the Rust-for-Linux module in module/ linked with the
//! translator engine (module/engine/, crate `kdbt-modes` behind an `extern "C"` surface) that
//! cargo compiles for the kernel target.
//!
//! The engine is built for `x86_64-unknown-none` (soft-float, no red zone) with the kernel code
//! model, static relocations and PLT calls (`-Z plt=yes`: without it calls go through the GOT,
//! whose `R_X86_64_GOTPCREL` relocations the x86 module loader rejects), `core` and `alloc`
//! rebuilt the same way (`-Z build-std`, with `RUSTC_BOOTSTRAP=1` as the kernel's own build
//! does), and LTO, after which the engine's own object is all the module needs.
//! Module sources are staged into the cache, so the repository never holds build products.

use crate::cache::{self, Key};
use crate::kernel::Kernel;
use crate::{process, setup};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The kernel target the engine is compiled for.
pub const ENGINE_TARGET: &str = "x86_64-unknown-none";
/// Code generation flags for the engine (see the module docs).
pub const ENGINE_RUSTFLAGS: &str = "-C code-model=kernel -C relocation-model=static -Z plt=yes";
/// Relocation types the x86-64 module loader (`apply_relocate_add`) accepts.
pub const LOADABLE_RELOCATIONS: &[&str] = &[
    "R_X86_64_NONE",
    "R_X86_64_64",
    "R_X86_64_32",
    "R_X86_64_32S",
    "R_X86_64_PC32",
    "R_X86_64_PLT32",
    "R_X86_64_PC64",
];

/// The last `kdbt.ko` built by [`build`]. Errors when there is none (`cargo xtask module`).
pub fn cached() -> Result<PathBuf> {
    let ko = module_dir()?.join("kdbt.ko");
    if !ko.exists() {
        bail!("kdbt.ko is not built: run `cargo xtask module`");
    }
    Ok(ko)
}

/// Builds `kdbt.ko` against `kernel` and returns its path (`<cache>/module/<checkout>/kdbt.ko`).
///
/// Errors carry the build log's tail; a module with relocations the loader would reject is
/// an error here rather than an `insmod` failure in the guest.
pub fn build(kernel: &Kernel) -> Result<PathBuf> {
    setup::ensure(&[setup::Stage::Module])?;
    setup::ensure_rust_src()?;
    // Out-of-tree modules build against the kernel tree: no kernel build may run meanwhile.
    let _lock = cache::lock("kernel")?;
    let root = module_dir()?;
    let stage = root.join("stage");
    let log = root.join("build.log");
    std::fs::create_dir_all(stage.join("module"))?;
    let _ = std::fs::remove_file(&log);

    let engine = build_engine(&root, &log)?;
    let repo = cache::repo_root();
    sync_file(&repo.join("Kbuild"), &stage.join("Kbuild"))?;
    for entry in std::fs::read_dir(repo.join("module"))? {
        let path = entry?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && matches!(ext, "rs" | "c" | "h") {
            sync_file(&path, &stage.join("module").join(path.file_name().unwrap()))?;
        }
    }
    let object = extract_engine_object(&engine)?;
    sync_bytes(&object, &stage.join("module/kdbt_engine.o_shipped"))?;

    process::run_logged(
        Command::new("make")
            .arg("-C")
            .arg(&kernel.build_dir)
            .arg(format!("M={}", stage.display()))
            .args(["LLVM=1", "modules"]),
        &log,
        Duration::from_secs(15 * 60),
    )
    .context("building kdbt.ko")?;
    let ko = stage.join("kdbt.ko");
    let relocs = process::output(Command::new("llvm-readelf").arg("-r").arg(&ko))?;
    let bad = unloadable_relocations(&relocs);
    if !bad.is_empty() {
        bail!(
            "kdbt.ko has relocations the module loader rejects: {}",
            bad.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    let out = root.join("kdbt.ko");
    std::fs::copy(&ko, &out)?;
    Ok(out)
}

/// This checkout's module build directory: `<cache>/module/<key of the repository path>`, so
/// two checkouts (a work tree and a CI clone) never build into each other's staging tree.
fn module_dir() -> Result<PathBuf> {
    let repo = cache::repo_root();
    let key = Key::new()
        .part("repo", repo.as_os_str().as_encoded_bytes())
        .hex();
    Ok(cache::root()?.join("module").join(key))
}

/// Builds the engine static library; returns its path.
fn build_engine(root: &Path, log: &Path) -> Result<PathBuf> {
    // Shared by all checkouts (cargo locks it): build-std's core/alloc take minutes cold.
    let target_dir = root
        .parent()
        .expect("module dir has a parent")
        .join("engine-target");
    let manifest = cache::repo_root().join("module/engine/Cargo.toml");
    process::run_logged(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--target", ENGINE_TARGET])
            .args(["-Z", "build-std=core,alloc"])
            .arg("--manifest-path")
            .arg(&manifest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", ENGINE_RUSTFLAGS)
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        log,
        Duration::from_secs(30 * 60),
    )
    .context("building the translator engine for the kernel target")?;
    Ok(target_dir
        .join(ENGINE_TARGET)
        .join("release/libkdbt_engine.a"))
}

/// The engine's own object out of its static library (after LTO it holds the engine, `core`
/// and `alloc`; `compiler_builtins` stays out, its few needs being the kernel's `mem*`).
fn extract_engine_object(lib: &Path) -> Result<Vec<u8>> {
    let members = process::output(Command::new("llvm-ar").arg("t").arg(lib))?;
    let member = members
        .lines()
        .find(|m| m.starts_with("kdbt_engine-") && m.ends_with(".o"))
        .with_context(|| format!("no kdbt_engine object in {}: {members}", lib.display()))?;
    let out = Command::new("llvm-ar")
        .arg("p")
        .arg(lib)
        .arg(member)
        .output()?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!("llvm-ar p {} {member} failed", lib.display());
    }
    Ok(out.stdout)
}

/// Relocation types in `llvm-readelf -r` output that [`LOADABLE_RELOCATIONS`] lacks.
pub fn unloadable_relocations(readelf: &str) -> BTreeSet<String> {
    readelf
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("R_X86_64_")))
        .filter(|t| !LOADABLE_RELOCATIONS.contains(t))
        .map(str::to_string)
        .collect()
}

/// Copies `from` to `to` only when the contents differ, so make's timestamps stay meaningful.
fn sync_file(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    sync_bytes(&bytes, to)
}

fn sync_bytes(bytes: &[u8], to: &Path) -> Result<()> {
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gotpcrel_relocations_are_flagged_and_loadable_ones_pass() {
        let readelf = "Relocation section '.rela.text' at offset 0x1 contains 3 entries:\n    Offset             Info             Type               Symbol's Value  Symbol's Name + Addend\n0000000000000010  0000000500000004 R_X86_64_PLT32         0000000000000000 memcpy - 4\n0000000000000020  0000000600000009 R_X86_64_GOTPCREL      0000000000000000 foo - 4\n0000000000000030  000000070000000b R_X86_64_32S           0000000000000000 .rodata + 0\n";
        let bad = unloadable_relocations(readelf);
        assert_eq!(bad.into_iter().collect::<Vec<_>>(), ["R_X86_64_GOTPCREL"]);
    }

    #[test]
    fn sync_rewrites_only_changed_files() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("f");
        sync_bytes(b"a", &to).unwrap();
        let t1 = std::fs::metadata(&to).unwrap().modified().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        sync_bytes(b"a", &to).unwrap();
        assert_eq!(std::fs::metadata(&to).unwrap().modified().unwrap(), t1);
        sync_bytes(b"b", &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"b");
    }
}
