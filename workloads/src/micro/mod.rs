//! lmbench-style microbenchmarks: our implementation of lmbench's method and benchmarks
//! (names as lmbench prints them, so a reader maps each record to the paper's tables).
//!
//! Every benchmark is a [`Spec`]: its setup builds a [`Bench`] (files, peer processes,
//! sockets), whose `run(n)` performs `n` operations and returns the ns they took on
//! CLOCK_MONOTONIC. The driver calibrates `n` to the time budget (the calibration runs are the
//! warm-up), takes the samples and emits one [`Record`] per benchmark.

mod ctx;
mod fs;
mod inet;
mod mem;
mod peer;
mod pipe;
mod proc;
mod select;
mod signal;
mod syscall;
mod unix;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::output::RecordSink;
use crate::record::{Metric, Params, Record, Suite};
use crate::{stats, warmup};

/// Everything a benchmark's setup may use.
pub struct Env {
    /// A private scratch directory on the filesystem under test, removed afterwards.
    pub dir: PathBuf,
    /// The driver's target length of one sample in ns, for benchmarks that calibrate an
    /// overhead of their own (`lat_ctx`).
    pub sample_target_ns: u64,
}

/// How a benchmark's time converts to its metric.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// Latency in µs per operation; one iteration of `run` is `ops_per_iter` operations
    /// (e.g. 1024 pages touched by one `lat_pagefault` iteration).
    Latency {
        /// Operations per iteration.
        ops_per_iter: u64,
    },
    /// Bandwidth in MB/s; one iteration moves `bytes_per_iter` bytes.
    Bandwidth {
        /// Bytes per iteration.
        bytes_per_iter: u64,
    },
}

/// A prepared benchmark; dropping it tears its setup down (kills peers, removes files).
pub trait Bench {
    /// Performs `iters` iterations and returns their duration in ns.
    ///
    /// # Errors
    /// The failing call with its errno; the driver reports it as a failed record.
    fn run(&mut self, iters: u64) -> anyhow::Result<u64>;

    /// Duration in ns of the whole last `run` when it does untimed work besides the timed
    /// part (lat_fs creates the files it times deleting; lat_ctx subtracts its pipe
    /// overhead). Calibration sizes runs by this, since it is what the budget pays for;
    /// `None` means the returned duration is the whole run.
    fn last_run_total_ns(&self) -> Option<u64> {
        None
    }

    /// Operations the last `run` actually performed, when the benchmark counts them itself
    /// (page faults); `None` means `iters × ops_per_iter`.
    fn measured_ops(&self) -> Option<u64> {
        None
    }

    /// What setup or the last run measured besides the samples (a subtracted overhead),
    /// for stderr. Not a record parameter: parameters identify a configuration across modes
    /// and rounds, and a measured value differs in every run.
    fn diagnostics(&self) -> Option<String> {
        None
    }
}

/// Builds a benchmark's [`Bench`] in an [`Env`].
pub type Setup = Box<dyn Fn(&Env) -> anyhow::Result<Box<dyn Bench>>>;

/// One benchmark of the suite.
pub struct Spec {
    /// lmbench-style name, unique in the suite (`"lat_syscall null"`).
    pub name: &'static str,
    /// Fixed parameters (sizes, fd counts, programs).
    pub params: Params,
    /// Metric and normalization.
    pub kind: Kind,
    /// Prepares the benchmark.
    pub setup: Setup,
    /// How many times the driver's sample length this row's samples last (1 for most).
    /// Longer for a row whose kernel work comes in bursts a short sample catches a varying
    /// number of ([`Spec::longer_samples`]).
    pub sample_scale: u64,
}

impl Spec {
    fn new(
        name: &'static str,
        params: Params,
        kind: Kind,
        setup: impl Fn(&Env) -> anyhow::Result<Box<dyn Bench>> + 'static,
    ) -> Spec {
        Spec {
            name,
            params,
            kind,
            setup: Box::new(setup),
            sample_scale: 1,
        }
    }

    /// This row's samples last `scale` times the driver's target, its budget growing with
    /// them: for a row part of whose cost comes in bursts, so that a short sample catches
    /// a varying number of them (`lat_connect`, workloads/README.md).
    ///
    /// # Panics
    /// If `scale` is 0.
    fn longer_samples(mut self, scale: u64) -> Spec {
        assert!(scale > 0, "a sample scale of 0");
        self.sample_scale = scale;
        self
    }

    /// The length in ns of this row's samples when the driver's target is `target_ns`.
    fn sample_target_ns(&self, target_ns: u64) -> u64 {
        target_ns.saturating_mul(self.sample_scale)
    }

    fn metric(&self) -> Metric {
        match self.kind {
            Kind::Latency { .. } => Metric::Latency,
            Kind::Bandwidth { .. } => Metric::Bandwidth,
        }
    }

    /// The operations `iters` iterations perform: latency operations, or for a bandwidth
    /// benchmark its chunks (one per iteration).
    fn ops(&self, iters: u64) -> u64 {
        match self.kind {
            Kind::Latency { ops_per_iter } => iters * ops_per_iter,
            Kind::Bandwidth { .. } => iters,
        }
    }

    /// Converts `ns` spent on `iters` iterations to this benchmark's unit.
    fn value(&self, ns: u64, iters: u64) -> f64 {
        match self.kind {
            Kind::Latency { ops_per_iter } => stats::us_per_op(ns, iters * ops_per_iter),
            Kind::Bandwidth { bytes_per_iter } => stats::mb_per_sec(bytes_per_iter * iters, ns),
        }
    }
}

/// All microbenchmarks in lmbench's reporting order.
pub fn specs() -> Vec<Spec> {
    let mut v = Vec::new();
    v.extend(syscall::specs());
    v.extend(select::specs());
    v.extend(signal::specs());
    v.extend(pipe::specs());
    v.extend(unix::specs());
    v.extend(inet::specs());
    v.extend(proc::specs());
    v.extend(ctx::specs());
    v.extend(mem::specs());
    v.extend(fs::specs());
    v
}

/// Settings of a `micro` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Target guest time per benchmark in ns, calibration and warm-up included.
    pub budget_ns: u64,
    /// Samples per benchmark (lmbench's TRIES is 11).
    pub samples: usize,
    /// Directory on the filesystem under test; scratch files go in a fresh directory in it.
    pub dir: PathBuf,
}

/// Times `iters` calls of `op` on CLOCK_MONOTONIC and returns the elapsed ns.
///
/// # Errors
/// The first error of `op`, which stops the loop.
#[inline]
pub(crate) fn time_loop(
    iters: u64,
    mut op: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    for _ in 0..iters {
        op()?;
    }
    Ok(start.elapsed().as_nanos() as u64)
}

/// Runs the benchmarks of `selected` in order, streaming one record each to `sink`.
///
/// A benchmark whose setup or run fails yields a failed record and the run goes on.
///
/// # Errors
/// Only failures to create the scratch directory or to write to `sink`.
pub fn run<W: Write>(
    opts: &Options,
    selected: &[&Spec],
    sink: &mut RecordSink<W>,
) -> anyhow::Result<()> {
    let granularity = stats::timer_granularity_ns();
    let target = stats::sample_target_ns(
        opts.budget_ns,
        opts.samples,
        stats::min_sample_ns(granularity),
    );
    let layout = match crate::sys::aslr_off() {
        Ok(true) => "fixed",
        Ok(false) => "randomized",
        Err(_) => "unknown",
    };
    eprintln!(
        "micro: timer granularity {granularity} ns, sample target {target} ns, address layout {layout}"
    );
    let dir = enter_dir(&opts.dir)?;
    for spec in selected {
        let scratch = tempfile::Builder::new()
            .prefix("kdbt-micro.")
            .tempdir_in(&dir)
            .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
        let target = spec.sample_target_ns(target);
        let env = Env {
            dir: scratch.path().to_owned(),
            sample_target_ns: target,
        };
        let record = measure(spec, &env, opts.samples, target);
        sink.emit(&record)?;
    }
    Ok(())
}

/// Makes `dir` the working directory, and `PWD` say so, for the rest of the run; returns
/// it as an absolute path.
///
/// The children the rows start inherit both: `/bin/sh` stats `$PWD` and `.` as it starts
/// (dash's `getpwd`). Left in the guest's 9p share, each such stat is a round trip to QEMU
/// with both vCPUs idle, which the icount clock counts as a jump to the next timer deadline:
/// `lat_proc shell` had single operations of 3–16 ms among ones of 2.1 ms.
fn enter_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::env::set_current_dir(dir).with_context(|| format!("chdir {}", dir.display()))?;
    let cwd = std::env::current_dir().context("getcwd")?;
    // Single-threaded here: nothing reads the environment concurrently.
    std::env::set_var("PWD", &cwd);
    Ok(cwd)
}

fn measure(spec: &Spec, env: &Env, samples: usize, target_ns: u64) -> Record {
    let fail = |what: &str, e: anyhow::Error| {
        Record::failed(
            Suite::Micro,
            spec.name,
            spec.params.clone(),
            spec.metric(),
            format!("{what}: {e:#}"),
        )
    };
    let mut bench = match (spec.setup)(env) {
        Ok(b) => b,
        Err(e) => return fail("setup", e),
    };
    // Steady state first: calibration never sees a cold translator.
    let warm = match warmup::warm_up(target_ns, warmup::translated_now, |n| {
        let ns = bench.run(n)?;
        Ok::<_, anyhow::Error>(bench.last_run_total_ns().unwrap_or(ns))
    }) {
        Ok(w) => w,
        Err(e) => return fail("warm-up", e),
    };
    let iters = match stats::calibrate(target_ns, |n| {
        let ns = bench.run(n)?;
        Ok::<_, anyhow::Error>(bench.last_run_total_ns().unwrap_or(ns))
    }) {
        Ok(n) => n,
        Err(e) => return fail("calibration", e),
    };
    let mut values = Vec::with_capacity(samples);
    let counters_before = crate::prof::read();
    let cpu_before = crate::idle::CpuTimes::now();
    let mut ops_measured = 0;
    for _ in 0..samples {
        match bench.run(iters) {
            Ok(ns) => values.push(match bench.measured_ops() {
                Some(ops) => {
                    ops_measured += ops;
                    stats::us_per_op(ns, ops)
                }
                None => {
                    ops_measured += spec.ops(iters);
                    spec.value(ns, iters)
                }
            }),
            Err(e) => return fail("sample", e),
        }
    }
    let all_idle_share = crate::idle::all_idle_share(cpu_before, crate::idle::CpuTimes::now());
    let kdbt_measured = crate::prof::delta(counters_before, crate::prof::read());
    let params = spec.params.clone();
    if let Some(note) = bench.diagnostics() {
        eprintln!("{}: {note}", spec.name);
    }
    let mut record = Record::ok(
        Suite::Micro,
        spec.name,
        params,
        spec.metric(),
        values,
        iters,
    );
    record.set_warm_up(&warm);
    record.all_idle_share = all_idle_share;
    if kdbt_measured.is_some() {
        record.kdbt_measured = kdbt_measured;
        record.measured_ops = Some(ops_measured);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::specs;

    #[test]
    fn only_lat_connect_takes_longer_samples() {
        for spec in specs() {
            let want = if spec.name == "lat_connect" {
                8_000
            } else {
                1_000
            };
            assert_eq!(spec.sample_target_ns(1_000), want, "{}", spec.name);
        }
    }
}
