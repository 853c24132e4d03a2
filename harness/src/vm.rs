//! `cargo xtask vm`: boot the guest, run one command in it through the guest agent, stream its
//! output, return its exit status, power off.
//!
//! Protocol with the agent (harness/src/image.rs `AGENT`): a per-run host directory is shared
//! as 9p tag `kdbt` and mounted at /kdbt (also the command's working directory and first on
//! its `PATH`); it holds `job.sh` (the command), `kdbt.ko` and the workload binaries. The
//! command's output arrives on the virtio console (QEMU's stdout); its exit status in
//! `exit-status`. The kernel console goes to `console.log`, kept for every run.

use crate::qemu::{self, Accel, Clock, Machine};
use crate::{cache, console, process};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// What to boot and run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Accelerator (resolved here if `Auto`).
    pub accel: Accel,
    /// Guest clock.
    pub clock: Clock,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory, MiB.
    pub mem_mib: u32,
    /// Limit on the whole run, boot to power-off; QEMU is killed past it.
    pub timeout: Duration,
    /// Files copied into the share (to /kdbt in the guest) under their file names.
    pub files: Vec<PathBuf>,
    /// The command and its arguments, run by `sh` in /kdbt.
    pub command: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The accelerator actually used.
    pub accel: Accel,
    /// The command's exit status in the guest.
    pub exit_status: i32,
    /// Everything the command printed (stdout and stderr, interleaved).
    pub output: String,
    /// The guest kernel's console log.
    pub console_log: PathBuf,
    /// The run directory (share, logs).
    pub run_dir: PathBuf,
    /// Wall time from QEMU start to exit.
    pub wall: Duration,
}

/// Boots `kernel` with `rootfs`, runs `spec.command`, and streams its output to `echo`.
///
/// Errors: QEMU fails to start, the run exceeds `spec.timeout` (QEMU is killed), the guest
/// dies before the command finishes (no exit status), or the console log shows an oops, BUG
/// or WARNING. Each error names the console log and shows its tail. A non-zero exit status of
/// the command itself is not an error: see [`Outcome::exit_status`].
pub fn run(kernel: &Path, rootfs: &Path, spec: &RunSpec, echo: &mut dyn Write) -> Result<Outcome> {
    let run_dir = new_run_dir()?;
    let share = run_dir.join("share");
    std::fs::create_dir_all(&share)?;
    for file in &spec.files {
        let name = file.file_name().context("file to share has no name")?;
        std::fs::copy(file, share.join(name))
            .with_context(|| format!("copying {} into the share", file.display()))?;
    }
    std::fs::write(share.join("job.sh"), job_script(&spec.command)?)?;
    let machine = Machine {
        accel: qemu::resolve(spec.accel),
        clock: spec.clock,
        cpus: spec.cpus,
        mem_mib: spec.mem_mib,
        kernel: kernel.to_path_buf(),
        rootfs: rootfs.to_path_buf(),
        share: share.clone(),
        console_log: run_dir.join("console.log"),
    };
    let args = machine.args()?;
    std::fs::write(run_dir.join("qemu.args"), args.join("\n"))?;
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(run_dir.join("qemu.stderr"))?)
        .spawn()
        .context("starting qemu-system-x86_64 (Debian package qemu-system-x86)")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || -> Vec<String> {
        BufReader::new(stdout)
            .lines()
            .map_while(|l| l.ok())
            .collect::<Vec<_>>()
    });
    let status = child.wait_timeout(spec.timeout)?;
    let timed_out = status.is_none();
    if timed_out {
        let _ = child.kill();
        let _ = child.wait();
    }
    let wall = start.elapsed();
    let lines = reader.join().unwrap_or_default();
    let output = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    echo.write_all(output.as_bytes())?;
    let console_log = machine.console_log.clone();
    let log_text = std::fs::read_to_string(&console_log).unwrap_or_default();
    let context = || {
        format!(
            "console log {} (last lines):\n{}",
            console_log.display(),
            process::tail(&console_log, 30)
        )
    };
    if timed_out {
        bail!(
            "the guest ran past {} s and was killed; {}",
            spec.timeout.as_secs(),
            context()
        );
    }
    let trouble = console::trouble(&log_text);
    if !trouble.is_empty() {
        bail!(
            "the guest kernel reported trouble: {}; {}",
            trouble.join(" | "),
            context()
        );
    }
    let exit_status = match std::fs::read_to_string(share.join("exit-status")) {
        Ok(s) => s
            .trim()
            .parse::<i32>()
            .context("exit-status is not a number")?,
        Err(_) => bail!(
            "the guest stopped before the command finished; {}",
            context()
        ),
    };
    Ok(Outcome {
        accel: machine.accel,
        exit_status,
        output,
        console_log,
        run_dir,
        wall,
    })
}

/// The job file: the command with each argument shell-quoted, so `-- sh -c 'a && b'` runs
/// exactly what was typed.
pub fn job_script(command: &[String]) -> Result<String> {
    if command.is_empty() {
        bail!("no command to run in the guest");
    }
    let words: Vec<String> = command
        .iter()
        .map(|w| shlex::try_quote(w).map(|q| q.into_owned()))
        .collect::<Result<_, _>>()
        .context("a command argument cannot be quoted (NUL byte?)")?;
    Ok(format!("{}\n", words.join(" ")))
}

fn new_run_dir() -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let dir = cache::root()?
        .join("runs")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_script_quotes_each_argument() {
        let s = job_script(&["sh".into(), "-c".into(), "insmod kdbt.ko && cat x".into()]).unwrap();
        assert_eq!(s, "sh -c 'insmod kdbt.ko && cat x'\n");
    }

    #[test]
    fn empty_command_is_refused() {
        assert!(job_script(&[]).is_err());
    }
}
