//! QEMU command lines for kdbt guests, and the choice of accelerator.
//!
//! These machines have no hardware virtualization: `/dev/kvm` may exist (a software nesting
//! that cannot run a stock kernel), so KVM is used only where the CPU shows `vmx`/`svm`.

use anyhow::{bail, Result};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which accelerator to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM where the CPU has hardware virtualization, else TCG.
    Auto,
    /// QEMU's binary translator, single-threaded (multi-threaded TCG raced with the guest's
    /// own text patching: `Oops: int3` in 2 of 25 boots).
    Tcg,
    /// Hardware virtualization.
    Kvm,
}

/// Which clock guest timings follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clock {
    /// Real time.
    Wall,
    /// `-icount shift=0,sleep=off`: the guest clock advances 1 ns per guest instruction, so
    /// in-guest latencies in ns are instruction counts (TCG only).
    Icount,
}

impl FromStr for Accel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Accel::Auto),
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            _ => bail!("unknown accelerator {s:?} (auto, tcg, kvm)"),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Auto => "auto",
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        })
    }
}

impl FromStr for Clock {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "wall" => Ok(Clock::Wall),
            "icount" => Ok(Clock::Icount),
            _ => bail!("unknown clock {s:?} (wall, icount)"),
        }
    }
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clock::Wall => "wall",
            Clock::Icount => "icount",
        })
    }
}

/// Whether `cpuinfo` (the text of `/proc/cpuinfo`) shows hardware virtualization.
pub fn cpu_has_hw_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Resolves [`Accel::Auto`] against this host (`/proc/cpuinfo`, `/dev/kvm`).
pub fn resolve(accel: Accel) -> Accel {
    match accel {
        Accel::Auto => {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            if cpu_has_hw_virt(&cpuinfo) && std::path::Path::new("/dev/kvm").exists() {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        }
        other => other,
    }
}

/// Everything that shapes one guest boot.
#[derive(Debug, Clone)]
pub struct Machine {
    /// A resolved accelerator (not `Auto`).
    pub accel: Accel,
    /// The guest clock.
    pub clock: Clock,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory, MiB.
    pub mem_mib: u32,
    /// The bzImage to boot.
    pub kernel: PathBuf,
    /// The root filesystem (ext4, raw); opened copy-on-write, never modified.
    pub rootfs: PathBuf,
    /// Host directory shared with the guest as 9p tag `kdbt` (mounted at /kdbt).
    pub share: PathBuf,
    /// Where the serial console (the kernel log) goes.
    pub console_log: PathBuf,
}

/// The kernel command line: serial console, our agent as init, and fail-fast on any oops
/// (`panic=-1` reboots at once, which `-no-reboot` turns into QEMU exiting).
pub const KERNEL_CMDLINE: &str =
    "console=ttyS0 root=/dev/vda rw init=/sbin/kdbt-init panic=-1 oops=panic nokaslr";

impl Machine {
    /// The `qemu-system-x86_64` arguments. The guest agent's virtio console is QEMU's stdout.
    ///
    /// Errors: `Auto` not resolved, or `icount` asked with KVM (it exists only under TCG).
    pub fn args(&self) -> Result<Vec<String>> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        match (self.accel, self.clock) {
            (Accel::Auto, _) => bail!("resolve the accelerator before building a command line"),
            (Accel::Kvm, Clock::Icount) => {
                bail!("--clock icount needs TCG (it counts guest instructions)")
            }
            (Accel::Kvm, Clock::Wall) => push(&["-accel", "kvm", "-cpu", "host"]),
            (Accel::Tcg, clock) => {
                push(&["-accel", "tcg,thread=single", "-cpu", "max"]);
                if clock == Clock::Icount {
                    push(&["-icount", "shift=0,sleep=off"]);
                }
            }
        }
        let smp = self.cpus.to_string();
        let mem = format!("{}M", self.mem_mib);
        let kernel = self.kernel.display().to_string();
        let drive = format!(
            "file={},if=virtio,format=raw,snapshot=on",
            self.rootfs.display()
        );
        let share = format!(
            "local,path={},mount_tag=kdbt,security_model=none,id=kdbt",
            self.share.display()
        );
        let serial = format!("file:{}", self.console_log.display());
        push(&[
            "-machine",
            "q35",
            "-smp",
            &smp,
            "-m",
            &mem,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-kernel",
            &kernel,
            "-append",
            KERNEL_CMDLINE,
            "-drive",
            &drive,
            "-virtfs",
            &share,
            "-serial",
            &serial,
            "-device",
            "virtio-serial-pci",
            "-chardev",
            "stdio,id=agent,signal=off",
            "-device",
            "virtconsole,chardev=agent",
            "-device",
            "virtio-rng-pci",
        ]);
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(accel: Accel, clock: Clock) -> Machine {
        Machine {
            accel,
            clock,
            cpus: 2,
            mem_mib: 1024,
            kernel: "/k/bzImage".into(),
            rootfs: "/k/root.ext4".into(),
            share: "/k/share".into(),
            console_log: "/k/console.log".into(),
        }
    }

    #[test]
    fn tcg_icount_command_line_is_single_threaded_and_counts_instructions() {
        let a = machine(Accel::Tcg, Clock::Icount).args().unwrap().join(" ");
        assert!(a.contains("-accel tcg,thread=single"), "{a}");
        assert!(a.contains("-icount shift=0,sleep=off"), "{a}");
        assert!(a.contains("-smp 2 -m 1024M"), "{a}");
        assert!(a.contains("snapshot=on"), "{a}");
        assert!(a.contains("mount_tag=kdbt"), "{a}");
        assert!(a.contains("panic=-1 oops=panic"), "{a}");
    }

    #[test]
    fn wall_clock_has_no_icount() {
        let a = machine(Accel::Tcg, Clock::Wall).args().unwrap().join(" ");
        assert!(!a.contains("icount"), "{a}");
    }

    #[test]
    fn kvm_with_icount_is_refused() {
        assert!(machine(Accel::Kvm, Clock::Icount).args().is_err());
        assert!(machine(Accel::Auto, Clock::Wall).args().is_err());
    }

    #[test]
    fn hw_virt_is_read_from_cpu_flags_only() {
        assert!(cpu_has_hw_virt(
            "processor: 0\nflags\t\t: fpu vme vmx sse\n"
        ));
        assert!(cpu_has_hw_virt("flags\t: fpu svm\n"));
        assert!(!cpu_has_hw_virt(
            "flags\t: fpu sse hypervisor\nmodel name: vmx-like\n"
        ));
    }

    #[test]
    fn accel_and_clock_parse_and_print() {
        for s in ["auto", "tcg", "kvm"] {
            assert_eq!(s.parse::<Accel>().unwrap().to_string(), s);
        }
        for s in ["wall", "icount"] {
            assert_eq!(s.parse::<Clock>().unwrap().to_string(), s);
        }
        assert!("fast".parse::<Accel>().is_err());
    }
}
