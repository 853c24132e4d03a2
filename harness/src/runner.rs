//! Running a [`Matrix`](crate::bench::Matrix): boot the guest, run the interleaved slots,
//! store every sample and failure, boot again after a crash, and write the manifest.

use crate::bench::{self, BootReport, GuestLine, Matrix};
use crate::kernel::Kernel;
use crate::qemu::{self, Accel, Clock};
use crate::store::{self, Manifest, RunId, RunWriter};
use crate::vm;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How to run a matrix.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// What to measure.
    pub matrix: Matrix,
    /// Accelerator (resolved against the host).
    pub accel: Accel,
    /// Guest clock.
    pub clock: Clock,
    /// vCPUs.
    pub cpus: u32,
    /// Guest memory, MiB.
    pub mem_mib: u32,
    /// Limit per boot; a boot past it is killed and counted as a crash of the running mode.
    pub boot_timeout: Duration,
    /// Where result sets go (`results/`).
    pub results_root: PathBuf,
    /// The command line, for the manifest.
    pub command_line: Vec<String>,
    /// When the command started, before setup and builds: the manifest's `created_utc` and
    /// `total_s` count from here.
    pub started: Started,
    /// The whole matrix's digest ([`crate::bench::Matrix::digest`]), and which slice of it
    /// `matrix` is, if only a slice.
    pub matrix_digest: String,
    /// See [`crate::store::Shard`].
    pub shard: Option<store::Shard>,
}

/// A command's start, as a clock reading and as UTC.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    /// For durations.
    pub at: Instant,
    /// Unix time, s.
    pub unix_secs: u64,
}

impl Started {
    /// Now.
    pub fn now() -> Started {
        Started {
            at: Instant::now(),
            unix_secs: store::unix_now(),
        }
    }
}

/// Runs `config.matrix` on `kernel` + `rootfs` with `files` (kdbt.ko, the workload binaries)
/// in the guest's /kdbt; returns the result set's directory.
///
/// Errors: host-side problems, or a boot that fails before any slot starts (the lab itself is
/// broken: nothing could be attributed to a mode).
pub fn run(
    config: &BenchConfig,
    kernel: &Kernel,
    rootfs: &Path,
    files: &[PathBuf],
) -> Result<PathBuf> {
    let accel = qemu::resolve(config.accel);
    let (revision, dirty) = git_state()?;
    let run_id = RunId::new(config.started.unix_secs, &revision)?;
    let mut writer = RunWriter::create(&config.results_root, &run_id)?;
    let matrix = &config.matrix;
    let plan = matrix.plan();
    let mut left: Vec<usize> = (0..plan.len()).collect();
    let mut crashed = BTreeMap::new();
    let mut stats = BTreeMap::new();
    let mut per_mode_s: BTreeMap<String, f64> = BTreeMap::new();
    let bar = ProgressBar::new(plan.len() as u64).with_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut boot_index = 0u32;
    while !left.is_empty() {
        // The script goes in the share as a file (a whole matrix exceeds the kernel's limit on
        // one argument) and is kept with the results, so every boot can be replayed.
        let script_name = format!("guest-boot{boot_index}.sh");
        let script = writer.dir().join(&script_name);
        std::fs::write(&script, matrix.script(&plan, &left))?;
        let mut shared = files.to_vec();
        shared.push(script);
        let spec = vm::RunSpec {
            accel,
            clock: config.clock,
            cpus: config.cpus,
            mem_mib: config.mem_mib,
            timeout: config.boot_timeout,
            files: shared,
            command: vec!["sh".into(), format!("/kdbt/{script_name}")],
        };
        let mut running: Option<(usize, Instant)> = None;
        // The guest's output as it arrives, kept with the results (progress and post-mortems).
        let mut output_log = std::io::BufWriter::new(std::fs::File::create(
            writer.dir().join(format!("guest-boot{boot_index}.out")),
        )?);
        let mut on_line = |line: &str| {
            use std::io::Write as _;
            let _ = writeln!(output_log, "{line}").and_then(|_| output_log.flush());
            let Ok(parsed) = bench::parse_line(line) else {
                return;
            };
            if let GuestLine::Slot(_) | GuestLine::SlotEnd(_) = parsed {
                if let Some((j, since)) = running.take() {
                    *per_mode_s.entry(plan[j].mode.clone()).or_default() +=
                        since.elapsed().as_secs_f64();
                }
                if let GuestLine::Slot(i) = parsed {
                    let slot = &plan[i];
                    let b = &matrix.benchmarks[slot.bench];
                    bar.set_message(format!("{} | {} (round {})", slot.mode, b.name, slot.round));
                    running = Some((i, Instant::now()));
                } else {
                    bar.inc(1);
                }
            }
        };
        let boot = vm::boot(&kernel.bzimage, rootfs, &spec, &mut on_line)?;
        let report = BootReport::read(&boot.output)?;
        let failure = boot.failure_summary();
        let kept_log = if failure.is_some() {
            let kept = writer.dir().join(format!("console-boot{boot_index}.log"));
            std::fs::copy(&boot.console_log, &kept).context("keeping the console log")?;
            Some(PathBuf::from(kept.file_name().expect("has a name")))
        } else {
            None
        };
        if report.started.is_empty() {
            bail!(
                "boot {boot_index} ran no slot: {}",
                boot.failure()
                    .unwrap_or_else(|| format!("guest output:\n{}", boot.output))
            );
        }
        let before = left.len();
        left = bench::store_boot(
            matrix,
            &plan,
            &left,
            boot_index,
            &report,
            failure.as_deref(),
            kept_log.as_deref(),
            &mut crashed,
            &mut stats,
            &mut writer,
        )?;
        if failure.is_none() && left.len() == before {
            bail!("boot {boot_index} finished cleanly but ran none of the {before} slots left");
        }
        bar.set_position((plan.len() - left.len()) as u64);
        boot_index += 1;
    }
    bar.finish_with_message("done");

    let manifest = Manifest {
        schema_version: store::SCHEMA_VERSION,
        run_id: run_id.clone(),
        created_utc: store::utc_rfc3339(config.started.unix_secs),
        git: store::GitInfo { revision, dirty },
        host: host_info(),
        accelerator: match accel {
            Accel::Kvm => store::Accelerator::Kvm,
            _ => store::Accelerator::Tcg,
        },
        clock: config.clock,
        guest: store::GuestInfo {
            kernel_release: kernel.release.clone(),
            config_hash: kernel.config_hash.clone(),
            vcpus: config.cpus,
            memory_mib: u64::from(config.mem_mib),
        },
        modes: matrix.modes.clone(),
        suites: suites_of(matrix),
        reps: matrix.reps,
        boots: boot_index,
        seeds: Vec::new(),
        durations: store::Durations {
            total_s: config.started.at.elapsed().as_secs_f64(),
            per_mode_s,
        },
        kdbt_stats: stats,
        failures: Vec::new(),
        command_line: config.command_line.clone(),
        matrix_digest: config.matrix_digest.clone(),
        shard: config.shard,
    };
    let run = writer.finish(manifest)?;
    Ok(run.dir)
}

/// Runs `config.matrix` (whole) as `jobs` shards at once, each in its own guest boots, then
/// merges them into one result set under `config.results_root` ([`crate::merge`]), whose
/// `total_s` is the wall time since the command started. Returns its directory.
///
/// Errors: a plan with fewer benchmarks than jobs, any job's error, or the merge's.
pub fn run_jobs(
    config: &BenchConfig,
    jobs: u32,
    kernel: &Kernel,
    rootfs: &Path,
    files: &[PathBuf],
) -> Result<PathBuf> {
    let tmp = config
        .results_root
        .join(format!(".jobs-{}", config.started.unix_secs));
    let configs = (0..jobs)
        .map(|index| {
            let shard = store::Shard { index, count: jobs };
            Ok(BenchConfig {
                matrix: config.matrix.shard(shard)?,
                shard: Some(shard),
                results_root: tmp.join(format!("job{index}")),
                ..config.clone()
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let dirs = std::thread::scope(|s| {
        let handles: Vec<_> = configs
            .iter()
            .map(|c| s.spawn(move || run(c, kernel, rootfs, files)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a job panicked"))?)
            .collect::<Result<Vec<PathBuf>>>()
    })?;
    let wall = config.started.at.elapsed().as_secs_f64();
    let dir = crate::merge::merge(
        &dirs,
        &config.results_root,
        config.command_line.clone(),
        Some(wall),
    )?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir)
}

fn suites_of(matrix: &Matrix) -> Vec<store::Suite> {
    let mut suites: Vec<store::Suite> = matrix.benchmarks.iter().map(|b| b.suite).collect();
    suites.sort();
    suites.dedup();
    suites
}

/// The repository's HEAD revision and whether the work tree has uncommitted changes. Result
/// sets not yet committed (untracked under `results/`) do not count: they are outputs, not the
/// code that made this run.
pub fn git_state() -> Result<(String, bool)> {
    let repo = crate::cache::repo_root();
    let rev = crate::process::output(
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["rev-parse", "HEAD"]),
    )
    .context("reading the git revision (results record which code produced them)")?;
    let status = crate::process::output(
        Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["status", "--porcelain"]),
    )?;
    Ok((rev, status.lines().any(|l| !l.starts_with("?? results/"))))
}

fn host_info() -> store::HostInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |text: &str, name: &str| -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    store::HostInfo {
        cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        memory_mib: host_memory_mib().unwrap_or(0),
    }
}

/// The host's total memory, MiB (`MemTotal` of /proc/meminfo); `None` when unreadable.
pub fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib / 1024)
}
