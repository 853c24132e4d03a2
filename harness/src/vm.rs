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
use std::os::unix::process::CommandExt;
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

/// Names in the share that the harness writes itself: a `--put` file may not take them.
const RESERVED: &[&str] = &[
    "job.sh",
    "exit-status",
    "kdbt.ko",
    "kdbt-workload",
    "kdbtctl",
];

/// Checks files a user asked to copy into the guest (`cargo xtask vm --put`), before any build
/// or boot: each must be a readable regular file, and no two may share a file name or take
/// one the harness writes.
///
/// Errors: one line naming the path and what is wrong with it.
pub fn check_put(paths: &[PathBuf]) -> Result<()> {
    let mut names = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("--put {}: cannot read it", path.display()))?;
        if !meta.is_file() {
            bail!("--put {}: not a regular file", path.display());
        }
        std::fs::File::open(path)
            .with_context(|| format!("--put {}: cannot open it for reading", path.display()))?;
        let name = path
            .file_name()
            .with_context(|| format!("--put {}: no file name", path.display()))?
            .to_string_lossy()
            .into_owned();
        if RESERVED.contains(&name.as_str()) || names.contains(&name) {
            bail!(
                "--put {}: /kdbt/{name} is already taken (by the harness or another --put)",
                path.display()
            );
        }
        names.push(name);
    }
    Ok(())
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

/// A finished boot, whatever happened in it.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The accelerator actually used.
    pub accel: Accel,
    /// The command's exit status, if the agent recorded one (it did not if the guest died).
    pub exit_status: Option<i32>,
    /// Everything the command printed (stdout and stderr, interleaved).
    pub output: String,
    /// Console lines showing kernel trouble (oops, BUG, WARNING, panic).
    pub trouble: Vec<String>,
    /// Whether QEMU was killed for running past the limit.
    pub timed_out: bool,
    /// The limit that applied.
    pub timeout: Duration,
    /// The guest kernel's console log.
    pub console_log: PathBuf,
    /// The run directory (share, logs).
    pub run_dir: PathBuf,
    /// Wall time from QEMU start to exit.
    pub wall: Duration,
}

impl Boot {
    /// Why this boot failed, in one line without host paths (for result sets, which keep
    /// their own copy of the console log), or `None` if the command ran to its end on a clean
    /// kernel: a timeout, kernel trouble in the console log, or a guest that died before the
    /// command finished.
    pub fn failure_summary(&self) -> Option<String> {
        if self.timed_out {
            return Some(format!(
                "the guest ran past {} s and was killed",
                self.timeout.as_secs()
            ));
        }
        if !self.trouble.is_empty() {
            return Some(format!(
                "the guest kernel reported trouble: {}",
                self.trouble.join(" | ")
            ));
        }
        if self.exit_status.is_none() {
            return Some("the guest stopped before the command finished".into());
        }
        None
    }

    /// [`Boot::failure_summary`] followed by where the console log is and its last lines.
    pub fn failure(&self) -> Option<String> {
        self.failure_summary().map(|why| {
            format!(
                "{why}; console log {} (last lines):\n{}",
                self.console_log.display(),
                process::tail(&self.console_log, 30)
            )
        })
    }
}

/// Boots `kernel` with `rootfs`, runs `spec.command`, and hands each line it prints to
/// `on_line` as it arrives.
///
/// Errors only for host-side problems (QEMU cannot start, the share cannot be written);
/// what happened in the guest is in the returned [`Boot`].
pub fn boot(
    kernel: &Path,
    rootfs: &Path,
    spec: &RunSpec,
    on_line: &mut dyn FnMut(&str),
) -> Result<Boot> {
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
    let mut qemu = Command::new("qemu-system-x86_64");
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, which
    // is async-signal-safe and touches no memory shared with the parent.
    unsafe {
        qemu.pre_exec(|| {
            // A guest must not outlive the run that waits for it (a killed bench): the
            // thread that spawns it waits for it below, so its exit means nobody will.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = qemu
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(run_dir.join("qemu.stderr"))?)
        .spawn()
        .context("starting qemu-system-x86_64 (Debian package qemu-system-x86)")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // Lines are streamed from a reader thread so the timeout holds even while the guest
    // prints nothing.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let mut timed_out = false;
    loop {
        let left = spec.timeout.saturating_sub(start.elapsed());
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                on_line(&line);
                output.push_str(&line);
                output.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if start.elapsed() >= spec.timeout {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
            }
        }
    }
    // Its stdout closed, so QEMU is exiting (or was killed); make sure it is gone.
    if child.wait_timeout(Duration::from_secs(30))?.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = reader.join();
    let wall = start.elapsed();
    let log_text = std::fs::read_to_string(&machine.console_log).unwrap_or_default();
    let exit_status = std::fs::read_to_string(share.join("exit-status"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    Ok(Boot {
        accel: machine.accel,
        exit_status,
        output,
        trouble: console::trouble(&log_text)
            .into_iter()
            .map(str::to_string)
            .collect(),
        timed_out,
        timeout: spec.timeout,
        console_log: machine.console_log,
        run_dir,
        wall,
    })
}

/// Boots, runs `spec.command` streaming its output to `echo`, and powers off.
///
/// Errors: QEMU fails to start, the run exceeds `spec.timeout` (QEMU is killed), the guest
/// dies before the command finishes (no exit status), or the console log shows an oops, BUG
/// or WARNING (see [`Boot::failure`]). A non-zero exit status of the command itself is not an
/// error: see [`Outcome::exit_status`].
pub fn run(kernel: &Path, rootfs: &Path, spec: &RunSpec, echo: &mut dyn Write) -> Result<Outcome> {
    let boot = boot(kernel, rootfs, spec, &mut |line| {
        let _ = writeln!(echo, "{line}");
    })?;
    finish(boot)
}

/// The [`Outcome`] of a boot, or its failure as an error.
fn finish(boot: Boot) -> Result<Outcome> {
    if let Some(reason) = boot.failure() {
        bail!("{reason}");
    }
    Ok(Outcome {
        accel: boot.accel,
        exit_status: boot.exit_status.expect("failure() checked it"),
        output: boot.output,
        console_log: boot.console_log,
        run_dir: boot.run_dir,
        wall: boot.wall,
    })
}

/// Runs `command` in the guest the tests use: the cached kernel and image (built beforehand by
/// `cargo xtask`), 2 vCPUs, 1 GiB, the wall clock, TCG unless the CPU has hardware
/// virtualization, `files` shared in /kdbt, output not echoed.
///
/// Errors: the lab is not built or is stale, or any error of [`run`].
pub fn run_on_cached_lab(
    files: Vec<PathBuf>,
    command: Vec<String>,
    timeout: Duration,
) -> Result<Outcome> {
    run_on_cached_lab_expecting(files, command, timeout, &[], Clock::Wall)
}

/// [`run_on_cached_lab`] with the guest clock `clock`, for a command that may provoke kernel
/// trouble on purpose: console trouble lines containing any of `expected` are not failures
/// (every other one still is).
pub fn run_on_cached_lab_expecting(
    files: Vec<PathBuf>,
    command: Vec<String>,
    timeout: Duration,
    expected: &[&str],
    clock: Clock,
) -> Result<Outcome> {
    let kernel = crate::kernel::cached()?;
    let image = crate::image::cached()?;
    let spec = RunSpec {
        accel: Accel::Auto,
        clock,
        cpus: 2,
        mem_mib: 1024,
        timeout,
        files,
        command,
    };
    let mut boot = boot(&kernel.bzimage, &image.rootfs, &spec, &mut |_| {})?;
    boot.trouble
        .retain(|line| !expected.iter().any(|e| line.contains(e)));
    finish(boot)
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
    // Milliseconds, pid and a per-process sequence number: guests started in the same
    // millisecond by one process (parallel tests) must not share a share directory.
    static SEQUENCE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    let dir = cache::root()?
        .join("runs")
        .join(format!("{stamp}-{}-{seq}", std::process::id()));
    std::fs::create_dir(&dir)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => std::fs::create_dir_all(&dir),
            _ => Err(e),
        })
        .with_context(|| format!("creating the run directory {}", dir.display()))?;
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
