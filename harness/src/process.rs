//! Running host commands: logged to a file, bounded in time, failing with the log's tail.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// Runs `cmd` with stdout and stderr appended to `log`, killing it after `timeout`.
///
/// Errors: the command could not start, ran past `timeout`, or exited non-zero; the error
/// carries the last lines of the log. Returns the wall time it took.
pub fn run_logged(cmd: &mut Command, log: &Path, timeout: Duration) -> Result<Duration> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let status = match child.wait_timeout(timeout)? {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{:?} ran past its {} s limit and was killed; log {}:\n{}",
                cmd.get_program(),
                timeout.as_secs(),
                log.display(),
                tail(log, 40)
            );
        }
    };
    if !status.success() {
        bail!(
            "{:?} failed ({status}); log {}:\n{}",
            cmd.get_program(),
            log.display(),
            tail(log, 40)
        );
    }
    Ok(start.elapsed())
}

/// The last `n` lines of the file at `path` (empty if unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` and returns its trimmed stdout; errors with stderr when it fails.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_command_reports_its_log_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let err = run_logged(
            Command::new("sh").args(["-c", "echo first; echo the-reason >&2; exit 3"]),
            &log,
            Duration::from_secs(30),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("the-reason"), "{msg}");
    }

    #[test]
    fn command_past_its_timeout_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_logged(
            Command::new("sleep").arg("30"),
            &dir.path().join("log"),
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("limit"));
    }
}
