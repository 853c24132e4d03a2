//! `cargo xtask image`: the guest root filesystem, Debian bookworm built without booting
//! (`mmdebstrap` into a directory, then `mke2fs -d` into an ext4 image), with kdbt's guest agent
//! as init. Cached under `<cache>/image/<key>/rootfs.ext4`, keyed by what goes into it.

use crate::apt_sources;
use crate::cache::{self, Key, Stamp};
use crate::{process, setup};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The Debian release of the guest userland.
pub const SUITE: &str = "bookworm";

/// Packages in the guest beyond `minbase`: the Apache server and `ab` (the paper's macro
/// benchmark), stress-ng (the kernel-heavy mix), kmod (insmod/rmmod), busybox (poweroff -f
/// without an init system), iproute2 (bringing up loopback), procps, and third-party
/// benchmarks to check our lmbench-style numbers against (hackbench from rt-tests,
/// `perf bench` from linux-perf).
pub const GUEST_PACKAGES: &[&str] = &[
    "apache2",
    "apache2-utils",
    "stress-ng",
    "kmod",
    "busybox",
    "iproute2",
    "procps",
    "rt-tests",
    "linux-perf",
];

/// Size of the ext4 image; sparse, so only used blocks take disk space.
const IMAGE_SIZE: &str = "3G";

/// The guest agent, PID 1 of every kdbt guest. It mounts the basics and the host's 9p share at
/// /kdbt, runs the job the host left there (`job.sh`) with its output on the virtio console
/// (the host's stream), records the exit status in the share and powers off. No init system,
/// so a TCG boot reaches the job in seconds.
pub const AGENT: &str = r#"#!/bin/sh
# kdbt guest agent: PID 1. Written by kdbt's image builder.
PATH=/kdbt:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
export PATH HOME
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /run/lock /run/apache2 /var/log/apache2 /kdbt
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=none kdbt /kdbt; then
    echo "kdbt-agent: cannot mount the host share; no job run" > /dev/kmsg
    busybox poweroff -f
fi
ip link set lo up
hostname kdbt-guest
echo "kdbt-agent: job start" > /dev/kmsg
cd /kdbt
sh /kdbt/job.sh < /dev/null > /dev/hvc0 2>&1
echo $? > /kdbt/exit-status
echo "kdbt-agent: job done" > /dev/kmsg
sync
busybox poweroff -f
"#;

/// Files written into the root filesystem besides the packages: (path, mode, contents).
const FILES: &[(&str, u32, &str)] = &[
    ("sbin/kdbt-init", 0o755, AGENT),
    ("etc/hostname", 0o644, "kdbt-guest\n"),
    ("etc/hosts", 0o644, "127.0.0.1 localhost kdbt-guest\n"),
    // Apache's default config wants a ServerName to stay quiet about it.
    (
        "etc/apache2/conf-enabled/kdbt-servername.conf",
        0o644,
        "ServerName localhost\n",
    ),
];

/// A built guest image.
#[derive(Debug, Clone)]
pub struct Image {
    /// The ext4 root filesystem.
    pub rootfs: PathBuf,
    /// Content key (16 hex digits).
    pub key: String,
}

fn key() -> String {
    let mut k = Key::new()
        .part("suite", SUITE)
        .part("packages", GUEST_PACKAGES.join(","))
        .part("size", IMAGE_SIZE);
    for (path, mode, text) in FILES {
        k = k.part(path, format!("{mode:o}:{text}"));
    }
    k.hex()
}

fn dir_for(key: &str) -> Result<PathBuf> {
    Ok(cache::root()?.join("image").join(key))
}

/// Returns the cached image if it is current, without building anything.
pub fn cached() -> Result<Image> {
    let key = key();
    let dir = dir_for(&key)?;
    if !Stamp::at(dir.join("stamp")).is_current(&key) {
        bail!("the guest image is not built or is stale: run `cargo xtask image`");
    }
    Ok(Image {
        rootfs: dir.join("rootfs.ext4"),
        key,
    })
}

/// Builds the guest image if missing, and returns it.
///
/// Needs root (mmdebstrap's root mode keeps file ownership for `mke2fs -d`); errors say so.
pub fn build() -> Result<Image> {
    if let Ok(image) = cached() {
        return Ok(image);
    }
    if !setup::is_root() {
        bail!("building the guest image needs root (mmdebstrap into a directory owned by root, then mke2fs -d); run `sudo cargo xtask image` once");
    }
    setup::ensure(&[setup::Stage::Image])?;
    let _lock = cache::lock("image")?;
    if let Ok(image) = cached() {
        return Ok(image);
    }
    let key = key();
    let dir = dir_for(&key)?;
    std::fs::create_dir_all(&dir)?;
    let stamp = Stamp::at(dir.join("stamp"));
    let root = dir.join("rootfs");
    let log = dir.join("build.log");
    let _ = std::fs::remove_file(&log);
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let mirror = apt_sources::host_mirror(Path::new("/etc/apt"), SUITE)?;
    eprintln!(
        "building the guest image in {} (log: {})",
        dir.display(),
        log.display()
    );
    let took = process::run_logged(
        Command::new("mmdebstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", GUEST_PACKAGES.join(",")))
            .arg(SUITE)
            .arg(&root)
            .arg(&mirror),
        &log,
        Duration::from_secs(30 * 60),
    )?;
    eprintln!("root filesystem bootstrapped in {} s", took.as_secs());
    for (path, mode, text) in FILES {
        write_file(&root.join(path), *mode, text)?;
    }
    let rootfs = dir.join("rootfs.ext4");
    let _ = std::fs::remove_file(&rootfs);
    process::run_logged(
        Command::new("mke2fs")
            .args(["-q", "-t", "ext4", "-L", "kdbt-root", "-d"])
            .arg(&root)
            .arg(&rootfs)
            .arg(IMAGE_SIZE),
        &log,
        Duration::from_secs(10 * 60),
    )?;
    std::fs::remove_dir_all(&root)?;
    stamp.record(&key)?;
    Ok(Image { rootfs, key })
}

fn write_file(path: &Path, mode: u32, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_runs_the_job_records_status_and_powers_off() {
        let job = AGENT.find("sh /kdbt/job.sh").unwrap();
        let status = AGENT.find("> /kdbt/exit-status").unwrap();
        let off = AGENT.rfind("poweroff -f").unwrap();
        let share = AGENT.find("mount -t 9p").unwrap();
        assert!(share < job && job < status && status < off);
    }

    #[test]
    fn image_key_covers_packages_and_agent() {
        assert_eq!(key(), key());
        assert!(GUEST_PACKAGES.contains(&"apache2"));
        assert!(GUEST_PACKAGES.contains(&"stress-ng"));
    }
}
