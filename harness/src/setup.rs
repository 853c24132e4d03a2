//! What the lab needs on the host, in one table ([`REQUIREMENTS`]): every external program
//! the harness runs, and every library or data package it relies on, each with the Debian
//! package that provides it. [`ensure`] installs from that table (as root; otherwise it
//! stops with one line naming the missing packages) and then checks each program by running
//! it. `bindgen-cli` (into the cache) and `rust-src` (rustup) come from Rust's own tools.

use crate::process;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// What a requirement is needed for; commands ask [`ensure`] for the stages they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Building the guest kernel (`LLVM=1`, Rust for Linux).
    Kernel,
    /// Building the guest root filesystem without booting it.
    Image,
    /// Building `kdbt.ko` and checking its relocations.
    Module,
    /// Booting guests and recording the revision a result set was made at.
    Vm,
    /// Drawing figures (plotters renders PNG text with a TTF font).
    Figures,
    /// Host tests that drive real programs (the Apache driver, the static test binary).
    HostTests,
    /// `cargo xtask fresh-check`: a Debian root to run the README's commands in.
    FreshCheck,
}

/// Every stage the README's two commands need: what `cargo xtask bench` and `cargo xtask test` make sure of up front.
pub const ALL_STAGES: &[Stage] = &[
    Stage::Kernel,
    Stage::Image,
    Stage::Module,
    Stage::Vm,
    Stage::Figures,
    Stage::HostTests,
];

/// How a requirement is checked after installation.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// A program, run with these arguments; it must start and exit 0.
    Run(&'static [&'static str]),
    /// A library, header or data package: its dpkg status must be "installed".
    Installed,
}

/// One thing the lab needs from Debian.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// The program's name as the harness spawns it (on `PATH`), or a package's role.
    pub name: &'static str,
    /// The Debian package that provides it.
    pub package: &'static str,
    /// How to check it works.
    pub probe: Probe,
    /// The stages that need it.
    pub stages: &'static [Stage],
}

const VERSION: Probe = Probe::Run(&["--version"]);

const fn program(
    name: &'static str,
    package: &'static str,
    stages: &'static [Stage],
) -> Requirement {
    Requirement {
        name,
        package,
        probe: VERSION,
        stages,
    }
}

const fn package(
    name: &'static str,
    package: &'static str,
    stages: &'static [Stage],
) -> Requirement {
    Requirement {
        name,
        package,
        probe: Probe::Installed,
        stages,
    }
}

use Stage::*;

/// The single source of truth for what the lab installs. A host test checks that every
/// program the code spawns by name is listed here (or is one of [`TOOLCHAIN_PROGRAMS`]).
pub const REQUIREMENTS: &[Requirement] = &[
    // The guest kernel: Debian's source, built with LLVM and Rust for Linux.
    package("kernel source tarball", "linux-source-6.12", &[Kernel]),
    program("make", "make", &[Kernel, Module]),
    program("patch", "patch", &[Kernel]),
    program("tar", "tar", &[Kernel]),
    program("xz", "xz-utils", &[Kernel]),
    program("clang", "clang", &[Kernel, Module]),
    program("ld.lld", "lld", &[Kernel, Module]),
    program("llvm-ar", "llvm", &[Kernel, Module]),
    program("llvm-readelf", "llvm", &[Module]),
    program("flex", "flex", &[Kernel]),
    program("bison", "bison", &[Kernel]),
    program("bc", "bc", &[Kernel]),
    program("cpio", "cpio", &[Kernel]),
    program("perl", "perl", &[Kernel]),
    package("libclang for bindgen", "libclang-dev", &[Kernel]),
    package("libelf headers (objtool)", "libelf-dev", &[Kernel]),
    package("OpenSSL headers (sign-file)", "libssl-dev", &[Kernel]),
    // The guest image, bootstrapped without booting it.
    program("mmdebstrap", "mmdebstrap", &[Image, FreshCheck]),
    Requirement {
        name: "mke2fs",
        package: "e2fsprogs",
        probe: Probe::Run(&["-V"]),
        stages: &[Image],
    },
    package("Debian archive keys", "debian-archive-keyring", &[Image]),
    program("dpkg-query", "dpkg", &[Kernel, Image]),
    // The fresh-machine check: a chroot with the host's toolchain copied in.
    program("chroot", "coreutils", &[FreshCheck]),
    program("cp", "coreutils", &[FreshCheck]),
    program("mount", "mount", &[FreshCheck]),
    program("umount", "mount", &[FreshCheck]),
    // Guests.
    program("qemu-system-x86_64", "qemu-system-x86", &[Vm]),
    program("git", "git", &[Vm, FreshCheck]),
    // Figures.
    package("TTF font for PNG text", "fonts-dejavu-core", &[Figures]),
    // Host tests: the Apache driver runs apache2 and ab; the guest-file test builds a
    // static binary with the C compiler.
    Requirement {
        name: "apache2",
        package: "apache2",
        probe: Probe::Run(&["-v"]),
        stages: &[HostTests],
    },
    Requirement {
        name: "ab",
        package: "apache2-utils",
        probe: Probe::Run(&["-V"]),
        stages: &[HostTests],
    },
    program("cc", "gcc", &[HostTests]),
    package("C library for static binaries", "libc6-dev", &[HostTests]),
];

/// Programs that come with rustup's toolchain or the base system, not from [`REQUIREMENTS`].
pub const TOOLCHAIN_PROGRAMS: &[&str] = &[
    "cargo", "rustc", "rustup", "rustfmt", "sh", "id", "sleep", "apt-get",
];

/// The bindgen-cli release the kernel build uses (6.12 needs ≥ 0.65.1).
pub const BINDGEN_VERSION: &str = "0.73.2";

/// Makes sure everything [`REQUIREMENTS`] lists for any of `stages` is installed and works.
///
/// As root, installs missing packages with apt-get. Otherwise errors with one line naming
/// them. Then runs each program's probe; errors name every program that does not start.
pub fn ensure(stages: &[Stage]) -> Result<()> {
    let wanted: Vec<&Requirement> = REQUIREMENTS
        .iter()
        .filter(|r| r.stages.iter().any(|s| stages.contains(s)))
        .collect();
    let mut missing: Vec<&str> = wanted
        .iter()
        .map(|r| r.package)
        .filter(|p| !is_installed(p))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        install(&missing)?;
    }
    let broken: Vec<String> = wanted
        .iter()
        .filter_map(|r| match r.probe {
            Probe::Run(args) => process::output(Command::new(r.name).args(args))
                .err()
                .map(|e| format!("{} ({}): {e:#}", r.name, r.package)),
            Probe::Installed => (!is_installed(r.package))
                .then(|| format!("{} ({}) is not installed", r.name, r.package)),
        })
        .collect();
    if !broken.is_empty() {
        bail!("installed, but not working: {}", broken.join("; "));
    }
    Ok(())
}

fn install(missing: &[&str]) -> Result<()> {
    if !is_root() {
        bail!(
            "missing Debian packages: {0}; install them with `sudo apt-get install -y {0}`",
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
        .args(missing)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every program the host-side sources spawn by a literal name (`Command::new` of a string).
    fn spawned_programs() -> Vec<(String, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut found = Vec::new();
        let mut dirs: Vec<PathBuf> = ["harness", "xtask", "paper-figures", "workloads/tests"]
            .iter()
            .map(|d| root.join(d))
            .collect();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for piece in text.split("Command::new(\"").skip(1) {
                        let name = piece.split('"').next().unwrap().to_string();
                        found.push((name, path.display().to_string()));
                    }
                }
            }
        }
        found
    }

    #[test]
    fn every_program_the_harness_spawns_is_in_the_table() {
        let spawned = spawned_programs();
        assert!(
            spawned.iter().any(|(p, _)| p == "qemu-system-x86_64"),
            "the scan found the QEMU launch: {spawned:?}"
        );
        for (program, file) in spawned {
            let listed = REQUIREMENTS
                .iter()
                .any(|r| r.name == program && matches!(r.probe, Probe::Run(_)))
                || TOOLCHAIN_PROGRAMS.contains(&program.as_str());
            assert!(
                listed,
                "{file} runs `{program}`, which setup::REQUIREMENTS does not list"
            );
        }
    }

    #[test]
    fn each_stage_has_requirements_and_guests_need_qemu() {
        for stage in ALL_STAGES.iter().chain([&FreshCheck]) {
            assert!(
                REQUIREMENTS.iter().any(|r| r.stages.contains(stage)),
                "{stage:?}"
            );
        }
        let qemu = REQUIREMENTS
            .iter()
            .find(|r| r.name == "qemu-system-x86_64")
            .unwrap();
        assert_eq!(qemu.package, "qemu-system-x86");
        assert!(qemu.stages.contains(&Vm));
    }
}
