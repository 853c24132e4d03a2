//! `cargo xtask fresh-check`: the README's two commands on a machine that has nothing but a
//! Rust toolchain, as a new user meets them. A CI machine that already ran kdbt hides a missing
//! install step; this check does not.
//!
//! It bootstraps a Debian bookworm root with `mmdebstrap` (what a fresh Debian 12 has, plus
//! what rustup's toolchain itself needs: a C linker, and git to clone), copies in the host's
//! default Rust toolchain without `rust-src` (a new rustup install has none), clones the
//! repository's committed HEAD, binds `/dev`, `/proc` and `/sys`, and runs `cargo xtask test`
//! and then `cargo xtask bench --quick` inside it with an empty `$KDBT_CACHE`. Each command's
//! wall time is printed; its whole output is kept in a log beside the root.

use crate::{apt_sources, cache, process, setup};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// What a fresh Debian 12 with a working rustup toolchain has beyond `mmdebstrap`'s default
/// variant: a C compiler and libc headers (rustc links through `cc`), certificates and git.
pub const BASE_PACKAGES: &[&str] = &["ca-certificates", "gcc", "libc6-dev", "git"];

/// The commands checked, in order, as README gives them.
pub const COMMANDS: &[&str] = &["cargo xtask test", "cargo xtask bench --quick"];

/// Where the cloned repository sits in the fresh root.
const REPO_IN_ROOT: &str = "root/kdbt";

/// Limit on each command: a cold build (~20 min) plus the VM tests or the quick bench, on 2
/// busy cores, with a wide margin.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// How one command went.
#[derive(Debug, Clone)]
pub struct Step {
    /// The command, as README gives it.
    pub command: String,
    /// Wall time.
    pub wall: Duration,
}

/// Mounts made in the fresh root, undone in reverse order when dropped (also on errors).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn bind(&mut self, from: &str, root: &Path) -> Result<()> {
        let to = root.join(from.trim_start_matches('/'));
        std::fs::create_dir_all(&to)?;
        process::output(Command::new("mount").args(["--rbind", from]).arg(&to))
            .with_context(|| format!("binding {from} into the fresh root"))?;
        // Unmounting a recursive bind must not propagate back to the host's mounts.
        process::output(Command::new("mount").args(["--make-rslave"]).arg(&to))?;
        self.0.push(to);
        Ok(())
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for to in self.0.iter().rev() {
            let _ = process::output(Command::new("umount").args(["-R", "-l"]).arg(to));
        }
    }
}

/// The mount points at or below `root`, deepest first (from `/proc/self/mounts`).
fn mounts_under(root: &Path) -> Result<Vec<PathBuf>> {
    let table = std::fs::read_to_string("/proc/self/mounts")?;
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(root))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    Ok(found)
}

/// Kills every process whose root directory is `root` or below (what an interrupted check
/// left running in the chroot: a kernel build, a guest).
fn kill_processes_in(root: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(entry.path().join("root")).is_ok_and(|r| r.starts_with(root)) {
            // SAFETY: sending a signal; the pid was just read from /proc.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Removes a fresh root left by an earlier check, after unmounting everything below it. It
/// refuses while anything stays mounted there: removing the files of a bound `/dev` or
/// `/proc` would remove the host's.
fn remove_root(root: &Path) -> Result<()> {
    kill_processes_in(root);
    for m in mounts_under(root)? {
        let _ = process::output(Command::new("umount").arg("-l").arg(&m));
    }
    let left = mounts_under(root)?;
    if !left.is_empty() {
        bail!(
            "{} is still mounted; not removing {}",
            left[0].display(),
            root.display()
        );
    }
    std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))
}

/// Runs the check in `<cache>/fresh/`; returns each command's wall time. The root is removed
/// afterwards unless `keep` (then its path is printed), and always before a new check starts,
/// never while anything is mounted below it.
///
/// Errors: not root, a host tool missing, or a command that failed (with its log's tail).
pub fn check(keep: bool) -> Result<Vec<Step>> {
    if !setup::is_root() {
        bail!("the fresh-machine check needs root (mmdebstrap, chroot, bind mounts)");
    }
    setup::ensure(&[setup::Stage::FreshCheck])?;
    let dir = cache::root()?.join("fresh");
    let root = dir.join("root");
    if root.exists() {
        // A previous check was interrupted.
        remove_root(&root).context("removing the previous fresh root")?;
    }
    std::fs::create_dir_all(&dir)?;
    let log = dir.join("fresh-check.log");
    let _ = std::fs::remove_file(&log);
    eprintln!(
        "fresh-machine check in {} (log: {})",
        root.display(),
        log.display()
    );

    let mirror = apt_sources::host_mirror(Path::new("/etc/apt"), "bookworm")?;
    process::run_logged(
        Command::new("mmdebstrap")
            .arg(format!("--include={}", BASE_PACKAGES.join(",")))
            .arg("bookworm")
            .arg(&root)
            .arg(&mirror),
        &log,
        Duration::from_secs(30 * 60),
    )
    .context("bootstrapping the fresh root")?;
    copy_toolchain(&root, &log)?;
    let repo = cache::repo_root();
    process::run_logged(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(&repo)
            .arg(root.join(REPO_IN_ROOT)),
        &log,
        Duration::from_secs(600),
    )
    .context("cloning the repository's HEAD")?;
    std::fs::copy("/etc/resolv.conf", root.join("etc/resolv.conf"))
        .context("copying the host's resolver configuration")?;
    copy_apt_sources(&root)?;
    // Certificate authorities this machine's administrator added (a TLS-inspecting network
    // needs them for cargo and apt) are part of its configuration, like the resolver.
    let local_cas = Path::new("/usr/local/share/ca-certificates");
    if local_cas.is_dir() {
        process::run_logged(
            Command::new("cp")
                .arg("-a")
                .arg(local_cas)
                .arg(root.join("usr/local/share")),
            &log,
            Duration::from_secs(60),
        )?;
    }
    // The root shares the host's network: packages installed in it (apache2) must not start
    // daemons there, as no init would on a machine being set up.
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n")?;
    std::fs::set_permissions(&policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;

    let mut mounts = Mounts(Vec::new());
    for m in ["/dev", "/proc", "/sys"] {
        mounts.bind(m, &root)?;
    }
    in_root(
        &root,
        "update-ca-certificates",
        &log,
        Duration::from_secs(600),
    )?;
    // A new rustup install has no rust-src: the commands must add it themselves.
    in_root(
        &root,
        "rustup component remove rust-src",
        &log,
        Duration::from_secs(600),
    )?;
    let mut steps = Vec::new();
    for command in COMMANDS {
        eprintln!("fresh root: {command}");
        let wall = in_root(
            &root,
            &format!("cd /{REPO_IN_ROOT} && {command}"),
            &log,
            COMMAND_TIMEOUT,
        )
        .with_context(|| format!("`{command}` failed on a fresh machine"))?;
        eprintln!(
            "fresh root: {command}: ok in {:.1} min",
            wall.as_secs_f64() / 60.0
        );
        steps.push(Step {
            command: command.to_string(),
            wall,
        });
    }
    drop(mounts);
    if keep {
        eprintln!("kept the fresh root at {}", root.display());
    } else {
        remove_root(&root)?;
    }
    Ok(steps)
}

/// Gives the fresh root this machine's apt sources (a stock Debian 12 has bookworm-updates and
/// bookworm-security besides bookworm, where `linux-source-6.12` lives) in place of the one
/// suite `mmdebstrap` wrote.
fn copy_apt_sources(root: &Path) -> Result<()> {
    let etc = root.join("etc/apt");
    let _ = std::fs::remove_file(etc.join("sources.list"));
    if Path::new("/etc/apt/sources.list").exists() {
        std::fs::copy("/etc/apt/sources.list", etc.join("sources.list"))?;
    }
    for entry in std::fs::read_dir("/etc/apt/sources.list.d")? {
        let path = entry?.path();
        let active = path
            .extension()
            .is_some_and(|e| e == "list" || e == "sources");
        if active {
            let name = path.file_name().expect("a directory entry has a name");
            std::fs::copy(&path, etc.join("sources.list.d").join(name))
                .with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// Copies the host's default toolchain (rustup, its settings, the active toolchain) into
/// `/root` of the fresh root, as rustup's installer would have left it.
fn copy_toolchain(root: &Path, log: &Path) -> Result<()> {
    let home = PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?);
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cargo"));
    let sysroot = PathBuf::from(process::output(
        Command::new("rustc").args(["--print", "sysroot"]),
    )?);
    let toolchain = sysroot
        .file_name()
        .context("rustc's sysroot has no name")?
        .to_owned();
    let dest = root.join("root");
    std::fs::create_dir_all(dest.join(".rustup/toolchains"))?;
    std::fs::create_dir_all(dest.join(".cargo"))?;
    let copy = |from: &Path, to: &Path| -> Result<()> {
        process::run_logged(
            Command::new("cp").arg("-a").arg(from).arg(to),
            log,
            Duration::from_secs(600),
        )
        .map(|_| ())
    };
    copy(&cargo_home.join("bin"), &dest.join(".cargo"))?;
    copy(&sysroot, &dest.join(".rustup/toolchains"))?;
    let name = toolchain.to_string_lossy();
    std::fs::write(
        dest.join(".rustup/settings.toml"),
        format!("version = \"12\"\nprofile = \"default\"\ndefault_toolchain = \"{name}\"\n"),
    )?;
    Ok(())
}

/// Runs `script` with `sh` in the fresh root as root would log in: a clean environment with
/// only `HOME`, `PATH` (cargo's bin first) and, under CI, `CI`. Returns its wall time.
fn in_root(root: &Path, script: &str, log: &Path, timeout: Duration) -> Result<Duration> {
    let mut cmd = Command::new("chroot");
    cmd.arg(root)
        .args(["/usr/bin/env", "-i", "HOME=/root", "LANG=C.UTF-8"])
        .arg("PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["/bin/sh", "-c", script]);
    process::run_logged(&mut cmd, log, timeout)
}
