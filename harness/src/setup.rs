//! What the lab needs on the host, installed on demand: Debian packages (when run as root;
//! otherwise a clear message naming them), `bindgen-cli` into the cache, and `rust-src`.

use crate::process;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// Packages to build the guest kernel with `LLVM=1` and its Rust support.
pub const KERNEL_PACKAGES: &[&str] = &[
    "linux-source-6.12",
    "clang",
    "lld",
    "llvm",
    "libclang-dev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "make",
    "patch",
];
/// Packages to build the guest root filesystem without booting it.
pub const IMAGE_PACKAGES: &[&str] = &["mmdebstrap", "e2fsprogs", "debian-archive-keyring"];
/// Packages to boot guests.
pub const VM_PACKAGES: &[&str] = &["qemu-system-x86"];

/// Packages the host tests drive for real: the Apache driver's test runs apache2 and ab.
pub const HOST_TEST_PACKAGES: &[&str] = &["apache2", "apache2-utils"];

/// Packages to draw figures: the TTF font plotters renders PNG text with.
pub const FIGURE_PACKAGES: &[&str] = &["fonts-dejavu-core"];

/// The bindgen-cli release the kernel build uses (6.12 needs ≥ 0.65.1).
pub const BINDGEN_VERSION: &str = "0.73.2";

/// Makes sure every package in `packages` is installed.
///
/// As root, installs the missing ones with apt-get; otherwise errors naming them.
pub fn ensure_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}; install them with `sudo apt-get install -y {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("installing Debian packages: {}", missing.join(" "));
    let status = Command::new("apt-get").arg("update").arg("-q").status()?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let status = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()?;
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    process::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|s| s == "install ok installed")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    process::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid == "0")
}

/// Where tools built for the lab live (`<cache>/tools`, binaries in `bin/`).
pub fn tools_dir() -> Result<PathBuf> {
    Ok(crate::cache::root()?.join("tools"))
}

/// Path of `bindgen`, installing [`BINDGEN_VERSION`] into the cache first if needed.
pub fn ensure_bindgen() -> Result<PathBuf> {
    let root = tools_dir()?;
    let bin = root.join("bin/bindgen");
    let wanted = format!("bindgen {BINDGEN_VERSION}");
    if process::output(Command::new(&bin).arg("--version")).is_ok_and(|v| v == wanted) {
        return Ok(bin);
    }
    eprintln!(
        "installing bindgen-cli {BINDGEN_VERSION} into {}",
        root.display()
    );
    let status = Command::new("cargo")
        .args(["install", "--locked", "--quiet", "--root"])
        .arg(&root)
        .args(["bindgen-cli", "--version", BINDGEN_VERSION])
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install bindgen-cli {BINDGEN_VERSION} failed ({status})");
    }
    Ok(bin)
}

/// Makes sure the active toolchain has `rust-src` (the kernel's Rust build and the engine's
/// `-Z build-std` compile `core` and `alloc` from it).
pub fn ensure_rust_src() -> Result<()> {
    let sysroot = process::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let core = PathBuf::from(sysroot).join("lib/rustlib/src/rust/library/core/src/lib.rs");
    if core.exists() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["component", "add", "rust-src"])
        .status()
        .context("running rustup (rust-src is needed)")?;
    if !status.success() {
        bail!("rustup component add rust-src failed ({status})");
    }
    Ok(())
}

/// One line naming a tool's version (`<tool> --version`'s first line), for cache keys.
pub fn tool_version(tool: &str) -> String {
    process::output(Command::new(tool).arg("--version"))
        .map(|v| v.lines().next().unwrap_or_default().to_string())
        .unwrap_or_else(|_| format!("{tool}: not found"))
}
