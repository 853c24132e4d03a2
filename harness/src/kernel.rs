//! `cargo xtask kernel`: the guest kernel, Debian's `linux-source-6.12` with our config
//! fragment (harness/guest/kernel.config), built out of tree with `LLVM=1` into the cache.
//!
//! One build directory is kept and rebuilt incrementally; a stamp holding the content key
//! (source package version, fragment, toolchain) says whether it is current.

use crate::cache::{self, Key, Stamp};
use crate::{kconfig, process, setup};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Debian source package and the tarball it installs.
const SOURCE_PACKAGE: &str = "linux-source-6.12";
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.12.tar.xz";
/// Make targets built: vmlinux + bzImage + modules; leaves the Rust build products
/// (rust/*.rmeta, rust/*.o) out-of-tree Rust modules link against.
const MAKE_TARGETS: &[&str] = &["all"];
/// A cold build on 2 cores takes ~15 min; this bounds a wedged one.
const BUILD_TIMEOUT: Duration = Duration::from_secs(90 * 60);

/// A built guest kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The source tree (`make -C` target for out-of-tree modules goes through `build_dir`).
    pub source_dir: PathBuf,
    /// The `O=` build directory: `.config`, `vmlinux`, `Module.symvers`, `rust/`.
    pub build_dir: PathBuf,
    /// `arch/x86/boot/bzImage` in `build_dir`.
    pub bzimage: PathBuf,
    /// `vmlinux` in `build_dir` (symbols for gdb and address lookups).
    pub vmlinux: PathBuf,
    /// `uname -r` of the guest.
    pub release: String,
    /// Content key of the build (16 hex digits).
    pub key: String,
    /// SHA-256 (16 hex digits) of the resolved `.config`.
    pub config_hash: String,
}

/// The committed config fragment.
pub fn fragment_path() -> PathBuf {
    cache::repo_root().join("harness/guest/kernel.config")
}

fn dirs() -> Result<(PathBuf, PathBuf)> {
    let root = cache::root()?;
    Ok((
        root.join("src").join(SOURCE_PACKAGE),
        root.join("kernel").join("build"),
    ))
}

fn source_version() -> Result<String> {
    process::output(Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]))
        .with_context(|| format!("{SOURCE_PACKAGE} is not installed"))
}

/// The content key of the kernel build with the current fragment and toolchain.
fn key(fragment: &str, source_version: &str) -> Result<String> {
    Ok(Key::new()
        .part("source", source_version)
        .part("patches", patches_digest()?)
        .part("fragment", fragment)
        .part("targets", MAKE_TARGETS.join(" "))
        .part("rustc", setup::tool_version("rustc"))
        .part("clang", setup::tool_version("clang"))
        .part("bindgen", setup::BINDGEN_VERSION)
        .hex())
}

/// The directory of our kernel patches (`*.patch`, applied in name order with `patch -p1`).
pub fn patches_dir() -> PathBuf {
    cache::repo_root().join("harness/guest/patches")
}

/// Our kernel patches, sorted by name.
fn patches() -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(patches_dir()) {
        for entry in dir {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "patch") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// A key over the patches' names and contents.
fn patches_digest() -> Result<String> {
    let mut key = Key::new();
    for patch in patches()? {
        let name = patch
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        key = key.part(&name, std::fs::read(&patch)?);
    }
    Ok(key.hex())
}

/// Returns the cached kernel if it is current, without building anything.
///
/// Errors when it is missing or stale (run `cargo xtask kernel`).
pub fn cached() -> Result<Kernel> {
    let (source_dir, build_dir) = dirs()?;
    let fragment = std::fs::read_to_string(fragment_path())?;
    let key = key(&fragment, &source_version()?)?;
    if !Stamp::at(build_dir.join(".kdbt-key")).is_current(&key) {
        bail!("the guest kernel is not built or is stale: run `cargo xtask kernel`");
    }
    describe(source_dir, build_dir, key)
}

/// Builds the guest kernel if the cached one is missing or stale, and returns it.
pub fn build() -> Result<Kernel> {
    setup::ensure(&[setup::Stage::Kernel])?;
    let _lock = cache::lock("kernel")?;
    let (source_dir, build_dir) = dirs()?;
    let fragment_file = fragment_path();
    let fragment = std::fs::read_to_string(&fragment_file)?;
    let version = source_version()?;
    let key = key(&fragment, &version)?;
    let stamp = Stamp::at(build_dir.join(".kdbt-key"));
    if stamp.is_current(&key) {
        return describe(source_dir, build_dir, key);
    }
    let bindgen = setup::ensure_bindgen()?;
    setup::ensure_rust_src()?;
    unpack(&source_dir, &version)?;
    std::fs::create_dir_all(&build_dir)?;
    stamp.clear()?;
    let log = build_dir.join("kdbt-build.log");
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "building the guest kernel in {} (log: {})",
        build_dir.display(),
        log.display()
    );

    let make = |args: &[&str]| -> Command {
        let mut cmd = Command::new("make");
        cmd.arg("-C")
            .arg(&source_dir)
            .arg(format!("O={}", build_dir.display()))
            .arg("LLVM=1")
            .args(args)
            .env(
                "PATH",
                path_with(bindgen.parent().expect("bindgen is in a bin/ dir")),
            );
        cmd
    };
    let short = Duration::from_secs(300);
    process::run_logged(&mut make(&["rustavailable"]), &log, short)
        .context("the toolchain cannot build Rust for Linux")?;
    process::run_logged(&mut make(&["x86_64_defconfig"]), &log, short)?;
    process::run_logged(
        Command::new(source_dir.join("scripts/kconfig/merge_config.sh"))
            .current_dir(&source_dir)
            .args(["-m", "-O"])
            .arg(&build_dir)
            .arg(build_dir.join(".config"))
            .arg(&fragment_file),
        &log,
        short,
    )?;
    process::run_logged(&mut make(&["olddefconfig"]), &log, short)?;
    let resolved = kconfig::parse(&std::fs::read_to_string(build_dir.join(".config"))?)?;
    let wrong = kconfig::mismatches(&kconfig::parse(&fragment)?, &resolved);
    if !wrong.is_empty() {
        let lines: Vec<String> = wrong
            .iter()
            .map(|(n, want, got)| format!("  {n}: asked {want}, Kconfig resolved {got}"))
            .collect();
        bail!(
            "the config fragment {} is not honoured (unmet dependencies?):\n{}",
            fragment_file.display(),
            lines.join("\n")
        );
    }
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    let mut args = vec![jobs.as_str()];
    args.extend(MAKE_TARGETS);
    let took = process::run_logged(&mut make(&args), &log, BUILD_TIMEOUT)?;
    eprintln!("guest kernel built in {} s", took.as_secs());
    stamp.record(&key)?;
    describe(source_dir, build_dir, key)
}

fn describe(source_dir: PathBuf, build_dir: PathBuf, key: String) -> Result<Kernel> {
    let release = std::fs::read_to_string(build_dir.join("include/config/kernel.release"))
        .context("reading the kernel release")?
        .trim()
        .to_string();
    let config = std::fs::read(build_dir.join(".config"))?;
    Ok(Kernel {
        bzimage: build_dir.join("arch/x86/boot/bzImage"),
        vmlinux: build_dir.join("vmlinux"),
        config_hash: Key::new().part("config", config).hex(),
        source_dir,
        build_dir,
        release,
        key,
    })
}

/// Unpacks Debian's source tarball into `dir` and applies our patches, once per source
/// package version and patch set (tar keeps the archive's mtimes, so a re-unpack rebuilds
/// only what the patches touch).
fn unpack(dir: &Path, version: &str) -> Result<()> {
    let version = &format!("{version} patches {}", patches_digest()?);
    // A sibling of the tree (`with_extension` would eat the ".12" of the directory name).
    let mut stamp_name = dir.as_os_str().to_owned();
    stamp_name.push(".unpacked");
    let stamp = Stamp::at(PathBuf::from(stamp_name));
    if stamp.is_current(version) && dir.exists() {
        return Ok(());
    }
    stamp.clear()?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let parent = dir.parent().expect("source dir has a parent");
    std::fs::create_dir_all(parent)?;
    eprintln!("unpacking {SOURCE_TARBALL}");
    process::run_logged(
        Command::new("tar")
            .arg("-xf")
            .arg(SOURCE_TARBALL)
            .arg("-C")
            .arg(parent),
        &parent.join("unpack.log"),
        Duration::from_secs(600),
    )?;
    if !dir.exists() {
        bail!("{SOURCE_TARBALL} did not unpack to {}", dir.display());
    }
    for patch in patches()? {
        process::run_logged(
            Command::new("patch")
                .args(["-p1", "--forward", "--batch", "-i"])
                .arg(&patch)
                .current_dir(dir),
            &parent.join("unpack.log"),
            Duration::from_secs(60),
        )
        .with_context(|| format!("applying {}", patch.display()))?;
    }
    stamp.record(version)
}

/// `$PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).expect("PATH entries contain no separator")
}
