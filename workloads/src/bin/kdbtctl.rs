//! `kdbtctl`: drives kdbt.ko's control device from the guest.
//!
//! ```text
//! kdbtctl on SPEC     switch the whole kernel on, e.g. `fast`, `fast:no-callret`
//! kdbtctl off         switch off
//! kdbtctl stats       print <debugfs>/kdbt/stats (per CPU and total)
//! kdbtctl reset       zero the statistics
//! ```
//! Exit status: 0 on success, the errno of the refused ioctl otherwise (`EINVAL` 22 bad spec,
//! `EBUSY` 16 already on or another mode still draining, `EALREADY` 114 already off,
//! `EOPNOTSUPP` 95 the drk design, `EPERM` 1 without CAP_SYS_ADMIN, ...),
//! 1 for other failures. The ABI is the module's own definition (module/control_abi.rs).

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::ExitCode;

#[path = "../../../module/control_abi.rs"]
mod control_abi;

use control_abi::{OnArg, KDBT_IOC_OFF, KDBT_IOC_ON, KDBT_IOC_RESET_STATS, MESSAGE_MAX, SPEC_MAX};

/// Where the module's statistics text lives.
const STATS_PATH: &str = "/sys/kernel/debug/kdbt/stats";

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
    /// Zero the statistics.
    Reset,
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
        Command::Stats => unreachable!("handled above"),
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
    let len = arg
        .message
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(MESSAGE_MAX);
    let message = String::from_utf8_lossy(&arg.message[..len]).into_owned();
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
    }
}
