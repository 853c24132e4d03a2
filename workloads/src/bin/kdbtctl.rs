//! `kdbtctl`: drives kdbt.ko's control device from the guest.
//!
//! ```text
//! kdbtctl on SPEC     switch the whole kernel on, e.g. `fast`, `fast:no-callret`
//! kdbtctl off         switch off
//! kdbtctl stats       print <debugfs>/kdbt/stats (per CPU and total)
//! kdbtctl reset       zero the statistics (function counts too)
//! kdbtctl funcs FILE  load the function set: names or globs, one per line (docs/INSTRUMENT.md)
//! kdbtctl probe M     count the set with M = kprobes | ftrace, or stop (off)
//! kdbtctl funccount   print the set's counts per method, largest first
//! ```
//! Exit status: 0 on success, the errno of the refused ioctl otherwise (`EINVAL` 22 bad spec,
//! `EBUSY` 16 already on, or a frame inside an expansion held another mode's code cache for a
//! second, `EALREADY` 114 already off,
//! `EOPNOTSUPP` 95 the drk design, `EPERM` 1 without CAP_SYS_ADMIN, ...),
//! 1 for other failures. The ABI is the module's own definition (module/control_abi.rs).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

#[path = "../../../module/control_abi.rs"]
mod control_abi;

use control_abi::{
    FuncsArg, OnArg, ProbeArg, KDBT_IOC_FUNCS, KDBT_IOC_OFF, KDBT_IOC_ON, KDBT_IOC_PROBE,
    KDBT_IOC_RESET_STATS, MESSAGE_MAX, PROBE_FTRACE, PROBE_KPROBES, PROBE_OFF, SPEC_MAX,
};
use kdbt_workloads::funcset;

/// Where the module's statistics text lives.
const STATS_PATH: &str = "/sys/kernel/debug/kdbt/stats";
/// Where the module's function counts live.
const FUNCCOUNT_PATH: &str = "/sys/kernel/debug/kdbt/funccount";
/// ftrace's traceable functions and kprobes' refused ones (globs keep neither).
const TRACEABLE_PATH: &str = "/sys/kernel/debug/tracing/available_filter_functions_addrs";
const KPROBE_BLACKLIST_PATH: &str = "/sys/kernel/debug/kprobes/blacklist";

#[derive(Parser)]
#[command(about = "Control kdbt, the kernel binary translator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Switch on with a mode spec: `<design>[:<option>,...]`, e.g. `fast`, `fast:no-callret`.
    On {
        /// The mode spec.
        spec: String,
    },
    /// Switch off.
    Off,
    /// Print the statistics (per CPU and total).
    Stats,
    /// Zero the statistics and the function counts.
    Reset,
    /// Load the function set from a list file: symbol names or globs, one per line.
    Funcs {
        /// The list file.
        file: std::path::PathBuf,
    },
    /// Count the function set's entries with kprobes or ftrace, or stop.
    Probe {
        /// kprobes, ftrace or off.
        #[arg(value_parser = ["kprobes", "ftrace", "off"])]
        method: String,
    },
    /// Print the function set's counts (kdbt, kprobes, ftrace), largest first.
    Funccount,
}

/// An ioctl the module refused: its errno and what the module said.
struct Refused {
    errno: i32,
    what: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(r)) => {
            eprintln!("kdbtctl: {}", r.what);
            ExitCode::from(u8::try_from(r.errno).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("kdbtctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<std::result::Result<(), Refused>> {
    if let Command::Stats = command {
        let text = std::fs::read_to_string(STATS_PATH).with_context(|| {
            format!("reading {STATS_PATH} (is kdbt.ko loaded and debugfs mounted?)")
        })?;
        std::io::stdout().write_all(text.as_bytes())?;
        return Ok(Ok(()));
    }
    if let Command::Funccount = command {
        let text = std::fs::read_to_string(FUNCCOUNT_PATH).with_context(|| {
            format!("reading {FUNCCOUNT_PATH} (is kdbt.ko loaded and debugfs mounted?)")
        })?;
        std::io::stdout().write_all(sorted_counts(&text)?.as_bytes())?;
        return Ok(Ok(()));
    }
    let set = match &command {
        Command::Funcs { file } => Some(resolve_list(file)?),
        _ => None,
    };
    let device = match std::fs::File::open(control_abi::DEVICE_PATH) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(Refused {
                errno: e.raw_os_error().unwrap_or(1),
                what: format!("opening {}: {e}", control_abi::DEVICE_PATH),
            }))
        }
    };
    let fd = device.as_raw_fd();
    Ok(match command {
        Command::On { spec } => switch_on(fd, &spec),
        Command::Off => ioctl_none(fd, KDBT_IOC_OFF).map_err(|errno| Refused {
            errno,
            what: format!("switch-off refused: {}", describe(errno)),
        }),
        Command::Reset => ioctl_none(fd, KDBT_IOC_RESET_STATS).map_err(|errno| Refused {
            errno,
            what: format!("reset refused: {}", describe(errno)),
        }),
        Command::Funcs { .. } => load_funcs(fd, &set.expect("resolved above")),
        Command::Probe { method } => probe(fd, &method),
        Command::Stats | Command::Funccount => unreachable!("handled above"),
    })
}

fn switch_on(fd: i32, spec: &str) -> std::result::Result<(), Refused> {
    let mut arg = OnArg {
        spec: [0; SPEC_MAX],
        message: [0; MESSAGE_MAX],
    };
    if spec.len() >= SPEC_MAX || spec.as_bytes().contains(&0) {
        return Err(Refused {
            errno: libc::EINVAL,
            what: format!(
                "mode spec longer than {} bytes or holding NUL",
                SPEC_MAX - 1
            ),
        });
    }
    arg.spec[..spec.len()].copy_from_slice(spec.as_bytes());
    // SAFETY: KDBT_IOC_ON reads and writes one OnArg, which `arg` is, alive for the call.
    let rc = unsafe { libc::ioctl(fd, KDBT_IOC_ON as _, &mut arg as *mut OnArg) };
    let message = message_text(&arg.message);
    if rc == 0 {
        println!("on: {message}");
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
    let why = if message.is_empty() {
        describe(errno)
    } else {
        message
    };
    Err(Refused {
        errno,
        what: format!("switch-on refused ({}): {why}", errno_name(errno)),
    })
}

/// Resolves list `file` through /proc/kallsyms (globs keep only what ftrace traces and kprobes
/// may probe, when those lists are readable).
fn resolve_list(file: &std::path::Path) -> Result<funcset::Resolved> {
    let list = std::fs::read_to_string(file)
        .with_context(|| format!("reading the function list {}", file.display()))?;
    let symbols = funcset::parse_kallsyms(&std::fs::read_to_string("/proc/kallsyms")?);
    let traceable = std::fs::read_to_string(TRACEABLE_PATH)
        .ok()
        .map(|t| funcset::parse_traceable(&t));
    let black = std::fs::read_to_string(KPROBE_BLACKLIST_PATH)
        .ok()
        .map(|t| funcset::parse_kprobe_blacklist(&t));
    funcset::resolve(&list, &symbols, traceable.as_ref(), black.as_ref())
        .with_context(|| format!("{}", file.display()))
}

fn load_funcs(fd: i32, set: &funcset::Resolved) -> std::result::Result<(), Refused> {
    let addrs: Vec<u64> = set.functions.iter().map(|f| f.addr).collect();
    let mut arg = FuncsArg {
        addrs: addrs.as_ptr() as u64,
        count: addrs.len() as u32,
        bad_index: u32::MAX,
        message: [0; MESSAGE_MAX],
    };
    // SAFETY: KDBT_IOC_FUNCS reads one FuncsArg and `count` u64s at `addrs`, writes back into
    // the FuncsArg; all alive for the call.
    let rc = unsafe { libc::ioctl(fd, KDBT_IOC_FUNCS as _, &mut arg as *mut FuncsArg) };
    if rc == 0 {
        println!(
            "funcs: {} functions loaded ({} glob matches left out: not traceable or not probeable)",
            addrs.len(),
            set.skipped
        );
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
    let why = message_text(&arg.message);
    let what = match set.functions.get(arg.bad_index as usize) {
        Some(f) => format!("kdbt refused `{}` ({:#x}): {why}", f.name, f.addr),
        None if !why.is_empty() => format!("function set refused: {why}"),
        None => format!("function set refused: {}", describe(errno)),
    };
    Err(Refused {
        errno,
        what: format!("{what} ({})", errno_name(errno)),
    })
}

fn probe(fd: i32, method: &str) -> std::result::Result<(), Refused> {
    let mut arg = ProbeArg {
        method: match method {
            "kprobes" => PROBE_KPROBES,
            "ftrace" => PROBE_FTRACE,
            _ => PROBE_OFF,
        },
        bad_index: u32::MAX,
    };
    // SAFETY: KDBT_IOC_PROBE reads and writes one ProbeArg, alive for the call.
    let rc = unsafe { libc::ioctl(fd, KDBT_IOC_PROBE as _, &mut arg as *mut ProbeArg) };
    if rc == 0 {
        println!("probe: {method}");
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(1);
    let why = match errno {
        libc::ENOENT => "no function set: `kdbtctl funcs FILE` first".to_string(),
        libc::EBUSY => "kdbt is on, or another method counts".to_string(),
        _ if arg.bad_index != u32::MAX => format!(
            "kprobes refused function {} of the set (ascending address order)",
            arg.bad_index
        ),
        _ => describe(errno),
    };
    Err(Refused {
        errno,
        what: format!("probe {method} refused ({}): {why}", errno_name(errno)),
    })
}

/// The debugfs counts (`kdbt kprobes ftrace address symbol`, by address) sorted by the
/// largest count, then by address.
fn sorted_counts(text: &str) -> Result<String> {
    let mut header = String::new();
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            header.push_str(line);
            header.push('\n');
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            anyhow::bail!("unexpected line in {FUNCCOUNT_PATH}: {line:?}");
        }
        let n: Vec<u64> = f[..3].iter().map(|v| v.parse()).collect::<Result<_, _>>()?;
        let key = n.iter().copied().max().unwrap_or(0);
        rows.push((std::cmp::Reverse(key), line.to_string()));
    }
    rows.sort();
    let mut out = header;
    for (_, line) in rows {
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// The module's message in an answer's `message` field: the bytes before the first NUL.
fn message_text(field: &[u8]) -> String {
    let len = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..len]).into_owned()
}

/// An ioctl without argument; `Err(errno)` when refused.
fn ioctl_none(fd: i32, request: u32) -> std::result::Result<(), i32> {
    // SAFETY: the request takes no argument; the fd is open.
    let rc = unsafe { libc::ioctl(fd, request as _, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(1))
    }
}

/// What an errno means for kdbt's ioctls.
fn describe(errno: i32) -> String {
    let meaning = match errno {
        libc::EINVAL => "invalid request".to_string(),
        libc::EBUSY => "already switched on".to_string(),
        control_abi::OFF_WHILE_OFF_ERRNO => "already switched off".to_string(),
        libc::EPERM => "needs CAP_SYS_ADMIN".to_string(),
        _ => std::io::Error::from_raw_os_error(errno).to_string(),
    };
    format!("{meaning} ({})", errno_name(errno))
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EINVAL => "EINVAL",
        libc::EBUSY => "EBUSY",
        libc::EALREADY => "EALREADY",
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EIO => "EIO",
        libc::ENOMEM => "ENOMEM",
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EFAULT => "EFAULT",
        libc::ERANGE => "ERANGE",
        _ => "errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_abi_errno_for_off_while_off_is_ealready() {
        assert_eq!(control_abi::OFF_WHILE_OFF_ERRNO, libc::EALREADY);
    }

    #[test]
    fn ioctl_numbers_match_the_kernel_encoding() {
        // _IOWR(0xDB, 0x40, 256 bytes), _IO(0xDB, 0x41), _IO(0xDB, 0x42)
        assert_eq!(KDBT_IOC_ON, 0xc100_db40);
        assert_eq!(KDBT_IOC_OFF, 0x0000_db41);
        assert_eq!(KDBT_IOC_RESET_STATS, 0x0000_db42);
        // _IOWR(0xDB, 0x43, 144 bytes), _IOWR(0xDB, 0x44, 8 bytes)
        assert_eq!(KDBT_IOC_FUNCS, 0xc090_db43);
        assert_eq!(KDBT_IOC_PROBE, 0xc008_db44);
    }

    #[test]
    fn counts_are_listed_largest_first() {
        let text = "# 3 functions; probing: none\n# kdbt kprobes ftrace address symbol\n\
                    5 0 0 0xffffffff81001000 a\n0 9 0 0xffffffff81002000 b\n1 1 1 0xffffffff81003000 c\n";
        let out = sorted_counts(text).unwrap();
        let names: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(names, ["b", "a", "c"]);
        assert!(out.starts_with("# 3 functions"));
    }
}
