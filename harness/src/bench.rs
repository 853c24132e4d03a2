//! The experiment matrix behind `cargo xtask bench`: which (benchmark, round, mode) slots run,
//! the guest script that runs them interleaved within one boot, and reading the guest's output
//! back into the results store.
//!
//! Interleaving: for each benchmark, each round runs every mode once, the mode order rotating
//! by round, so native and translated samples of one benchmark share the boot, the page cache
//! state and the time of day. A translated mode is switched on just before its slot and off
//! after it (`kdbtctl`), and its samples count only if kdbt's statistics afterwards show that
//! translation happened. A boot that crashes is attributed to the slot running at the time: that
//! mode is recorded as failed (with the console log) for the rest of the run, and the guest is
//! booted again for the remaining slots.

use crate::mix::WAIT_FOR_DRAIN;
use crate::slot_stats;
use crate::store::{self, BenchRecord, Failure, Params, RunWriter, Suite};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The mode name of runs without translation (kdbt.ko loaded, switched off).
pub const NATIVE: &str = store::NATIVE_MODE;

/// Guest output lines that the runner's script prints start with this.
const MARK: &str = "@@kdbt";

/// One benchmark invocation of `kdbt-workload`.
#[derive(Debug, Clone, PartialEq)]
pub struct Benchmark {
    /// Its suite.
    pub suite: Suite,
    /// Its name as `kdbt-workload list` prints it ("lat_syscall null", "fileserver", "ab").
    pub name: String,
    /// Extra arguments for `kdbt-workload <suite>` (sample count, budget, concurrency ...).
    pub args: Vec<String>,
}

impl Benchmark {
    /// Roughly the wall time one slot of this benchmark takes under TCG with icount, in
    /// seconds, from its arguments: about 3 s of switch-on, warm-up and statistics, plus twice
    /// its samples' guest time (`--samples` × `--budget-ms`) for micro and file; for Apache,
    /// 8 s per `ab` point (concurrency levels × file sizes × samples). Fitted to the 2026-12-01
    /// reference runs (micro ≈ 4 s, Apache ≈ 230 s a slot); used only to balance shards.
    pub fn expected_slot_s(&self) -> u64 {
        let arg = |flag: &str| {
            let i = self.args.iter().position(|a| a == flag)?;
            self.args.get(i + 1)
        };
        let number =
            |flag: &str, default: u64| arg(flag).and_then(|v| v.parse().ok()).unwrap_or(default);
        let count =
            |flag: &str, default: u64| arg(flag).map_or(default, |v| v.split(',').count() as u64);
        match self.suite {
            Suite::Micro | Suite::File => {
                3 + 2 * number("--samples", 5) * number("--budget-ms", 100) / 1000
            }
            Suite::Apache => {
                8 * count("--concurrency", 3) * count("--file-sizes", 3) * number("--samples", 3)
            }
        }
    }
}

/// What one run measures.
#[derive(Debug, Clone)]
pub struct Matrix {
    /// Mode specs, `native` first by convention ("native", "fast", "fast:no-callret", "drk").
    pub modes: Vec<String>,
    /// Benchmarks, in run order.
    pub benchmarks: Vec<Benchmark>,
    /// Interleaving rounds per benchmark (each runs every mode once).
    pub reps: u32,
    /// The function list loaded after `insmod` (a file name in the guest's /kdbt), for the
    /// instrumentation comparison's modes (`funccount`, [`PROBE_MODES`]).
    pub funcs: Option<String>,
}

/// One cell of the plan: a benchmark run once under one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSlot {
    /// Index into [`Matrix::benchmarks`].
    pub bench: usize,
    /// Interleaving round.
    pub round: u32,
    /// Mode spec.
    pub mode: String,
}

impl Matrix {
    /// The slice `shard` of this matrix (see [`store::Shard`]): whole benchmarks, each with all
    /// its modes and rounds, dealt out so that the shards' expected wall times are close
    /// ([`Benchmark::expected_slot_s`]): longest first, each to the shard with the least so far
    /// (ties to the lower index). Deterministic: every shard of one matrix computes the same
    /// deal. A shard keeps the plan's order. Errors when it holds no benchmark.
    pub fn shard(&self, shard: store::Shard) -> Result<Matrix> {
        let cost: Vec<u64> = self
            .benchmarks
            .iter()
            .map(Benchmark::expected_slot_s)
            .collect();
        let mut order: Vec<usize> = (0..cost.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(cost[i]));
        let mut load = vec![0u64; shard.count as usize];
        let mut owner = vec![0u32; cost.len()];
        for i in order {
            let least = (0..load.len()).min_by_key(|&k| load[k]).unwrap_or(0);
            load[least] += cost[i];
            owner[i] = least as u32;
        }
        let benchmarks: Vec<Benchmark> = self
            .benchmarks
            .iter()
            .zip(&owner)
            .filter(|(_, o)| **o == shard.index)
            .map(|(b, _)| b.clone())
            .collect();
        if benchmarks.is_empty() {
            bail!(
                "shard {}/{} holds no benchmark: the plan has only {}",
                shard.index,
                shard.count,
                self.benchmarks.len()
            );
        }
        Ok(Matrix {
            modes: self.modes.clone(),
            benchmarks,
            reps: self.reps,
            funcs: self.funcs.clone(),
        })
    }

    /// This matrix with every Apache benchmark driven at the `ab` concurrency `levels` (a
    /// plan's `apache_concurrency`) instead of its budget's levels; other benchmarks as they
    /// are.
    pub fn with_apache_concurrency(mut self, levels: &[u32]) -> Matrix {
        let list = levels
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        for b in self
            .benchmarks
            .iter_mut()
            .filter(|b| b.suite == Suite::Apache)
        {
            // The workload's --concurrency adds to repeated values, so the budget's is replaced.
            match b.args.iter().position(|a| a == "--concurrency") {
                Some(i) if i + 1 < b.args.len() => b.args[i + 1] = list.clone(),
                _ => b.args.extend(["--concurrency".to_string(), list.clone()]),
            }
        }
        self
    }

    /// A digest of the whole matrix (modes, rounds, benchmarks with their arguments): equal
    /// for the shards of one plan.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for m in &self.modes {
            h.update(format!("mode {m}\n"));
        }
        h.update(format!("reps {}\n", self.reps));
        for b in &self.benchmarks {
            h.update(format!("bench {} {} {:?}\n", b.suite, b.name, b.args));
        }
        h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The slots in run order: benchmark-major, then round, then mode rotated by round.
    pub fn plan(&self) -> Vec<PlannedSlot> {
        let mut slots = Vec::new();
        let n = self.modes.len();
        for bench in 0..self.benchmarks.len() {
            for round in 0..self.reps {
                for k in 0..n {
                    let mode = self.modes[(k + round as usize) % n].clone();
                    slots.push(PlannedSlot { bench, round, mode });
                }
            }
        }
        slots
    }

    /// The guest shell script running `slots` (indices into `plan`), with markers the host
    /// reads back ([`parse_line`]).
    pub fn script(&self, plan: &[PlannedSlot], slots: &[usize]) -> String {
        let mut s = String::from("cd /kdbt\n");
        let translated = slots.iter().any(|&i| plan[i].mode != NATIVE);
        if translated {
            let _ = writeln!(
                s,
                "insmod /kdbt/kdbt.ko 2>/tmp/kdbt.err || echo \"{MARK} insmod-failed $(tr '\\n' ' ' </tmp/kdbt.err)\""
            );
            if let Some(funcs) = &self.funcs {
                // A failure shows in every slot that needs the set (switch-on or probe refused).
                let _ = writeln!(s, "kdbtctl funcs /kdbt/{}", quote(funcs));
                // kprobes as int3 probes (JIFL's comparison), not optimized into jumps.
                let _ = writeln!(
                    s,
                    "[ -w /proc/sys/debug/kprobes-optimization ] && echo 0 > /proc/sys/debug/kprobes-optimization"
                );
            }
        }
        for &i in slots {
            let slot = &plan[i];
            let b = &self.benchmarks[slot.bench];
            let mut run = format!(
                "kdbt-workload {} --only {}",
                suite_command(b.suite),
                quote(&b.name)
            );
            for a in &b.args {
                run.push(' ');
                run.push_str(&quote(a));
            }
            let _ = writeln!(s, "echo \"{MARK} slot {i}\"");
            if is_probe_mode(&slot.mode) {
                let mode = quote(&slot.mode);
                let _ = writeln!(
                    s,
                    "if kdbtctl probe {mode} >/tmp/kdbt.err 2>&1; then\n  echo \"{MARK} stats-before {i}\"; kdbtctl stats; echo \"{MARK} stats-end {i}\"\n  {run}\n  echo \"{MARK} stats {i}\"; kdbtctl stats; echo \"{MARK} stats-end {i}\"\n  kdbtctl probe off >/tmp/kdbt.err 2>&1 || echo \"{MARK} switch-off-failed {i} $(tr '\\n' ' ' </tmp/kdbt.err)\"\nelse\n  echo \"{MARK} switch-on-failed {i} $(tr '\\n' ' ' </tmp/kdbt.err)\"\nfi"
                );
            } else if slot.mode == NATIVE {
                if translated {
                    // A native sample taken translated would be a wrong baseline.
                    let _ = writeln!(
                        s,
                        "grep -q '^state: on' /sys/kernel/debug/kdbt/status 2>/dev/null && echo \"{MARK} native-while-on {i}\""
                    );
                }
                let _ = writeln!(s, "{run}");
            } else {
                let mode = quote(&slot.mode);
                let _ = writeln!(
                    s,
                    "if kdbtctl on {mode} >/tmp/kdbt.err 2>&1; then\n  echo \"{MARK} stats-before {i}\"; kdbtctl stats; echo \"{MARK} stats-end {i}\"\n  {run}\n  echo \"{MARK} stats {i}\"; kdbtctl stats; echo \"{MARK} stats-end {i}\"\n  kdbtctl off >/tmp/kdbt.err 2>&1 || echo \"{MARK} switch-off-failed {i} $(tr '\\n' ' ' </tmp/kdbt.err)\"\nelse\n  echo \"{MARK} switch-on-failed {i} $(tr '\\n' ' ' </tmp/kdbt.err)\"\nfi"
                );
            }
            let _ = writeln!(s, "echo \"{MARK} slot-end {i}\"");
        }
        if translated {
            // kdbt.ko stays pinned until its drain work (run right after switch-off) took the
            // last code-cache address off the stacks: moments, whatever the tasks do.
            let _ = writeln!(s, "{WAIT_FOR_DRAIN}; rmmod kdbt");
        }
        s
    }
}

fn suite_command(suite: Suite) -> &'static str {
    match suite {
        Suite::Micro => "micro",
        Suite::File => "file",
        Suite::Apache => "apache",
    }
}

fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| "''".to_string())
}

/// A line of guest output, as the runner reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestLine {
    /// Slot `i` starts.
    Slot(usize),
    /// Slot `i` ended (its benchmark process exited).
    SlotEnd(usize),
    /// `kdbtctl on` failed for slot `i`, with its message.
    SwitchOnFailed(usize, String),
    /// `kdbtctl off` failed after slot `i`.
    SwitchOffFailed(usize, String),
    /// Native slot `i` found kdbt still switched on.
    NativeWhileOn(usize),
    /// Loading kdbt.ko failed.
    InsmodFailed(String),
    /// kdbt statistics of slot `i` at its end follow, up to [`GuestLine::StatsEnd`].
    Stats(usize),
    /// kdbt statistics of slot `i` right after its switch-on follow, up to
    /// [`GuestLine::StatsEnd`].
    StatsBefore(usize),
    /// End of slot `i`'s statistics.
    StatsEnd(usize),
    /// A benchmark record.
    Record(Box<BenchRecord>),
    /// Anything else (diagnostics, statistics lines).
    Other,
}

/// Classifies one line of guest output. A line that looks like a record but does not parse
/// is an error: a silent drop would lose a measurement.
pub fn parse_line(line: &str) -> Result<GuestLine> {
    let line = line.trim_end();
    if line.starts_with('{') {
        let record = BenchRecord::from_json_line(line)
            .with_context(|| format!("guest printed a malformed record: {line}"))?;
        return Ok(GuestLine::Record(Box::new(record)));
    }
    let Some(rest) = line.strip_prefix(MARK) else {
        return Ok(GuestLine::Other);
    };
    let mut words = rest.trim_start().splitn(3, ' ');
    let kind = words.next().unwrap_or_default();
    let arg = words.next().unwrap_or_default();
    let text = words.next().unwrap_or_default().trim().to_string();
    let index = || -> Result<usize> {
        arg.parse()
            .with_context(|| format!("bad slot index in {line:?}"))
    };
    Ok(match kind {
        "slot" => GuestLine::Slot(index()?),
        "slot-end" => GuestLine::SlotEnd(index()?),
        "switch-on-failed" => GuestLine::SwitchOnFailed(index()?, text),
        "switch-off-failed" => GuestLine::SwitchOffFailed(index()?, text),
        "native-while-on" => GuestLine::NativeWhileOn(index()?),
        "stats" => GuestLine::Stats(index()?),
        "stats-before" => GuestLine::StatsBefore(index()?),
        "stats-end" => GuestLine::StatsEnd(index()?),
        "insmod-failed" => GuestLine::InsmodFailed(format!("{arg} {text}").trim().to_string()),
        _ => bail!("unknown runner marker in {line:?}"),
    })
}

/// Counters from `kdbtctl stats` output. A line is `[scope:] name value [name value ...]`
/// (`total: syscalls 36003 exceptions 83360`) or `name: value`; counters are named
/// `<scope>_<name>` with spaces as `_` (`total_syscalls`). Tokens that are not counts end a
/// line's pairs; lines without any count are ignored.
pub fn parse_stats(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counters = BTreeMap::new();
    for line in lines {
        let (scope, rest) = match line.split_once(':') {
            Some((scope, rest)) => (scope.trim().replace(' ', "_"), rest),
            None => (String::new(), line.as_str()),
        };
        let tokens: Vec<&str> = rest.split_whitespace().collect();
        if let [value] = tokens.as_slice() {
            if let (false, Ok(v)) = (scope.is_empty(), value.parse::<u64>()) {
                counters.insert(scope, v);
            }
            continue;
        }
        for pair in tokens.chunks(2) {
            let [name, value] = pair else { break };
            let Ok(v) = value.parse::<u64>() else { break };
            let name = if scope.is_empty() {
                name.to_string()
            } else {
                format!("{scope}_{name}")
            };
            counters.insert(name, v);
        }
    }
    counters
}

/// The statistic that proves a translated mode ran translated code: a counter named
/// `blocks_translated` (any scope, e.g. `total_blocks_translated`) above zero. Entry counts
/// alone do not: kdbt's identity interposition counts syscalls without translating anything.
pub const TRANSLATION_EVIDENCE: &str = "blocks_translated";

/// Whether `stats` show that translation happened (see [`TRANSLATION_EVIDENCE`]).
pub fn shows_translation(stats: &BTreeMap<String, u64>) -> bool {
    stats
        .iter()
        .any(|(name, &v)| name.ends_with(TRANSLATION_EVIDENCE) && v > 0)
}

/// What happened to the slots of one boot, as read from its output.
#[derive(Debug, Default)]
pub struct BootReport {
    /// Slots that started, in order.
    pub started: Vec<usize>,
    /// Slots that ended normally.
    pub ended: Vec<usize>,
    /// Records per slot.
    pub records: BTreeMap<usize, Vec<BenchRecord>>,
    /// Switch-on or switch-off failures per slot.
    pub switch_failures: BTreeMap<usize, String>,
    /// Statistics per slot at its end (translated modes): totals since the module's load.
    pub stats: BTreeMap<usize, BTreeMap<String, u64>>,
    /// Statistics per slot right after its switch-on.
    pub stats_before: BTreeMap<usize, BTreeMap<String, u64>>,
    /// Why kdbt.ko did not load, if it did not.
    pub insmod_failed: Option<String>,
}

impl BootReport {
    /// Reads a boot's whole output.
    pub fn read(output: &str) -> Result<BootReport> {
        let mut r = BootReport::default();
        let mut current: Option<usize> = None;
        // (slot, lines, whether taken before the benchmark)
        let mut stats: Option<(usize, Vec<String>, bool)> = None;
        for line in output.lines() {
            if let Some((_, lines, _)) = stats.as_mut() {
                if !line.starts_with(MARK) {
                    lines.push(line.to_string());
                    continue;
                }
            }
            match parse_line(line)? {
                GuestLine::Slot(i) => {
                    current = Some(i);
                    r.started.push(i);
                }
                GuestLine::SlotEnd(i) => {
                    r.ended.push(i);
                    current = None;
                }
                GuestLine::SwitchOnFailed(i, why) => {
                    r.switch_failures
                        .insert(i, format!("switch-on failed: {why}"));
                }
                GuestLine::SwitchOffFailed(i, why) => {
                    r.switch_failures
                        .insert(i, format!("switch-off failed: {why}"));
                }
                GuestLine::NativeWhileOn(i) => {
                    r.switch_failures.insert(
                        i,
                        "kdbt was still switched on when this native slot started".into(),
                    );
                }
                GuestLine::InsmodFailed(why) => r.insmod_failed = Some(why),
                GuestLine::Stats(i) => stats = Some((i, Vec::new(), false)),
                GuestLine::StatsBefore(i) => stats = Some((i, Vec::new(), true)),
                GuestLine::StatsEnd(_) => {
                    if let Some((i, lines, before)) = stats.take() {
                        let into = if before {
                            &mut r.stats_before
                        } else {
                            &mut r.stats
                        };
                        into.insert(i, parse_stats(&lines));
                    }
                }
                GuestLine::Record(rec) => {
                    let i = current.context("a record arrived outside any slot")?;
                    r.records.entry(i).or_default().push(*rec);
                }
                GuestLine::Other => {}
            }
        }
        Ok(r)
    }

    /// The slot running when the output stopped, if one had started but not ended.
    pub fn interrupted(&self) -> Option<usize> {
        self.started
            .last()
            .copied()
            .filter(|i| !self.ended.contains(i))
    }
}

/// Stores what one boot produced for `slots` (indices into `plan`) and says which slots are
/// left for the next boot.
///
/// `failure` is the boot's failure (crash, timeout, trouble in the log; `None` if clean) and
/// `console_log` where its log was kept. Slot outcomes:
/// - ended with records: stored, unless its mode is translated and the statistics show no
///   translation (then a failure "switch-on not verified"),
/// - ended without records, or with a switch failure: a failure with the reason,
/// - interrupted by the boot's failure: a failure with that reason, and its mode is added to
///   `crashed` so its remaining slots are recorded as failed instead of run,
/// - never started: returned, to run in the next boot (unless its mode crashed).
#[allow(clippy::too_many_arguments)]
pub fn store_boot(
    matrix: &Matrix,
    plan: &[PlannedSlot],
    slots: &[usize],
    boot: u32,
    report: &BootReport,
    failure: Option<&str>,
    console_log: Option<&Path>,
    crashed: &mut BTreeMap<String, String>,
    stats: &mut BTreeMap<String, BTreeMap<String, u64>>,
    writer: &mut RunWriter,
) -> Result<Vec<usize>> {
    let fail = |writer: &mut RunWriter, i: usize, reason: String| -> Result<()> {
        let slot = &plan[i];
        let b = &matrix.benchmarks[slot.bench];
        writer.append_failure(Failure {
            boot,
            round: slot.round,
            mode: slot.mode.clone(),
            suite: b.suite,
            benchmark: b.name.clone(),
            params: Params::none(),
            reason,
            console_log: console_log.map(Path::to_path_buf),
        })
    };
    let mut left = Vec::new();
    for &i in slots {
        let slot = &plan[i];
        if let Some(why) = crashed.get(&slot.mode) {
            fail(writer, i, format!("not run: {why}"))?;
            continue;
        }
        if report.ended.contains(&i) {
            let records = report
                .records
                .get(&i)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Some(why) = report.switch_failures.get(&i) {
                fail(writer, i, why.clone())?;
            } else if records.is_empty() {
                fail(writer, i, "the benchmark printed no record".into())?;
            } else if slot.mode != NATIVE
                && !is_probe_mode(&slot.mode)
                && !report.stats.get(&i).is_some_and(shows_translation)
            {
                let why = format!(
                    "switch-on not verified: kdbt statistics show no {TRANSLATION_EVIDENCE} (no translated code ran)"
                );
                fail(writer, i, why)?;
            } else {
                let counters = report
                    .stats
                    .get(&i)
                    .map(|end| slot_stats::of_slot(report.stats_before.get(&i), end))
                    .transpose();
                let counters = match counters {
                    Ok(c) => c,
                    Err(e) => {
                        fail(writer, i, format!("{e:#}"))?;
                        continue;
                    }
                };
                let store_slot = store::Slot {
                    mode: slot.mode.clone(),
                    boot,
                    round: slot.round,
                };
                let b = &matrix.benchmarks[slot.bench];
                let row = |(counter, value): (String, u64)| slot_stats::SlotStat {
                    boot,
                    round: slot.round,
                    mode: slot.mode.clone(),
                    suite: b.suite,
                    benchmark: b.name.clone(),
                    counter,
                    value,
                };
                for rec in records {
                    writer.append_record(&store_slot, rec)?;
                    if let (Some(counters), Some(ops)) = (&rec.kdbt_measured, rec.measured_ops) {
                        writer.append_slot_stats(slot_stats::measured(counters, ops).map(row))?;
                    }
                }
                if let Some(s) = counters {
                    slot_stats::accumulate(stats.entry(slot.mode.clone()).or_default(), &s);
                    writer.append_slot_stats(s.into_iter().map(row))?;
                }
            }
        } else if report.interrupted() == Some(i) {
            let why = failure
                .unwrap_or("the benchmark did not finish")
                .to_string();
            let first_line = why.lines().next().unwrap_or_default().to_string();
            fail(writer, i, why)?;
            crashed.insert(
                slot.mode.clone(),
                format!(
                    "mode {} crashed the guest in boot {boot}: {first_line}",
                    slot.mode
                ),
            );
        } else {
            left.push(i);
        }
    }
    Ok(left)
}

/// How much to measure: `Quick` fits in ~10 minutes of TCG, `Full` in ~45.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// A core subset with small budgets: a smoke test of the whole pipeline.
    Quick,
    /// Everything, with budgets long enough for stable medians.
    Full,
}

/// The lmbench-style benchmarks a quick run keeps: the paper's headline latencies.
pub const QUICK_MICRO: &[&str] = &[
    "lat_syscall null",
    "lat_syscall read",
    "lat_syscall write",
    "lat_syscall stat",
    "lat_sig catch",
    "lat_pipe",
    "lat_unix",
    "lat_proc fork",
    "lat_ctx 2p",
    "lat_pagefault",
];

/// The filebench-style personalities a quick run keeps.
pub const QUICK_FILE: &[&str] = &["fileserver", "varmail"];

/// Builds the matrix for `suites` from `list` (the output of `kdbt-workload list`:
/// `suite<TAB>name` lines), with per-suite arguments sized by `budget`: the benchmarks named
/// in `only` (a plan's list), else every one (a quick run: the core subset).
///
/// Errors: a line of `list` that is not `suite<TAB>name`, or a quick-run benchmark missing from
/// it (the workloads and this table drifted apart).
pub fn matrix_for(
    list: &str,
    suites: &[Suite],
    budget: Budget,
    modes: Vec<String>,
    reps: u32,
    only: Option<&[String]>,
) -> Result<Matrix> {
    check_modes(&modes)?;
    if reps == 0 {
        bail!("--reps 0: a run needs at least one round");
    }
    let mut available: Vec<(Suite, String)> = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (suite, name) = line
            .split_once('\t')
            .with_context(|| format!("`kdbt-workload list` printed {line:?}"))?;
        let Some(suite) = Suite::from_name(suite) else {
            bail!("`kdbt-workload list` names an unknown suite {suite:?}");
        };
        available.push((suite, name.to_string()));
    }
    let args = |suite: Suite| -> Vec<String> {
        let a: &[&str] = match (suite, budget) {
            (Suite::Micro, Budget::Quick) => &["--samples", "3", "--budget-ms", "30"],
            (Suite::Micro, Budget::Full) => &["--samples", "5", "--budget-ms", "100"],
            (Suite::File, Budget::Quick) => {
                &["--samples", "3", "--budget-ms", "300", "--nfiles", "50"]
            }
            (Suite::File, Budget::Full) => &["--samples", "5", "--budget-ms", "2000"],
            (Suite::Apache, Budget::Quick) => &[
                "--samples",
                "2",
                "--concurrency",
                "1,8",
                "--requests",
                "200",
                "--file-sizes",
                "10k",
            ],
            (Suite::Apache, Budget::Full) => &["--samples", "3", "--concurrency", "1,8,32"],
        };
        a.iter().map(|s| s.to_string()).collect()
    };
    let quick_keep = |suite: Suite| -> Option<&[&str]> {
        match (budget, suite, only) {
            (_, _, Some(_)) => None,
            (Budget::Quick, Suite::Micro, _) => Some(QUICK_MICRO),
            (Budget::Quick, Suite::File, _) => Some(QUICK_FILE),
            _ => None,
        }
    };
    let wanted = |name: &str| only.is_none_or(|only| only.iter().any(|n| n == name));
    let mut benchmarks = Vec::new();
    for &suite in suites {
        if let Some(keep) = quick_keep(suite) {
            for name in keep {
                if !available.iter().any(|(s, n)| *s == suite && n == name) {
                    bail!("quick-run benchmark {name:?} is not in `kdbt-workload list`");
                }
            }
        }
        for (s, name) in &available {
            if *s == suite
                && wanted(name)
                && quick_keep(suite).is_none_or(|keep| keep.contains(&name.as_str()))
            {
                benchmarks.push(Benchmark {
                    suite,
                    name: name.clone(),
                    args: args(suite),
                });
            }
        }
    }
    if benchmarks.is_empty() {
        bail!("no benchmark selected");
    }
    Ok(Matrix {
        modes,
        benchmarks,
        reps,
        funcs: None,
    })
}

/// Checks a run's mode list before anything builds, with the mode-spec parser `kdbt.ko`
/// uses: `native` must be there (every figure is relative to it), every other entry must be
/// a valid spec, and no mode may appear twice, also not in another spelling of the same spec
/// (`fast` and `fast:callret`).
///
/// Errors: one line naming the offending entry.
pub fn check_modes(modes: &[String]) -> Result<()> {
    if modes.is_empty() {
        bail!("--modes is empty: give native and at least one mode spec");
    }
    let mut seen: Vec<String> = Vec::new();
    for mode in modes {
        let canonical = canonical_mode(mode).map_err(|e| anyhow::anyhow!("mode {mode:?}: {e}"))?;
        if seen.contains(&canonical) {
            bail!("mode {mode:?} is listed twice (as {canonical:?})");
        }
        seen.push(canonical);
    }
    if !seen.iter().any(|m| m == NATIVE) {
        bail!("--modes must include native: every figure is relative to it");
    }
    if seen.len() < 2 {
        bail!("--modes has only native: give at least one mode spec to compare with it");
    }
    Ok(())
}

/// `mode` in canonical form: `native`, or a spec as the module's parser prints it. Errors:
/// the parser's reason for refusing it.
pub fn canonical_mode(mode: &str) -> Result<String> {
    if mode == NATIVE || is_probe_mode(mode) {
        return Ok(mode.to_string());
    }
    Ok(kdbt_modes::ModeSpec::parse(mode)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_string())
}

/// Modes of the instrumentation comparison that run the kernel natively while kprobes or
/// ftrace count the plan's function set (`kdbtctl probe`; docs/INSTRUMENT.md).
pub const PROBE_MODES: &[&str] = &["kprobes", "ftrace"];

/// Whether `mode` is one of [`PROBE_MODES`].
pub fn is_probe_mode(mode: &str) -> bool {
    PROBE_MODES.contains(&mode)
}

/// Seconds a guest needs to boot, start the agent and power off under TCG, at the least.
const MIN_BOOT_S: u64 = 20;

/// The least wall time one slot of `suite` takes under TCG (switch-on, the benchmark, the
/// statistics), in seconds: well below what the reference run measured (about 4 s a slot
/// quick, 7 s full), so a plan refused by it could never have finished.
fn min_slot_s(suite: Suite, budget: Budget) -> u64 {
    match (suite, budget) {
        (Suite::Micro, _) => 1,
        (Suite::File, Budget::Quick) => 2,
        (Suite::File, Budget::Full) => 5,
        (Suite::Apache, Budget::Quick) => 3,
        (Suite::Apache, Budget::Full) => 10,
    }
}

impl Matrix {
    /// A lower bound on the wall time one boot needs for the whole plan, in seconds.
    pub fn min_boot_s(&self, budget: Budget) -> u64 {
        let per_round: u64 = self
            .benchmarks
            .iter()
            .map(|b| min_slot_s(b.suite, budget))
            .sum();
        MIN_BOOT_S + per_round * self.modes.len() as u64 * u64::from(self.reps)
    }

    /// Refuses a per-boot limit shorter than [`Matrix::min_boot_s`].
    pub fn check_boot_timeout(&self, budget: Budget, timeout_s: u64) -> Result<()> {
        let need = self.min_boot_s(budget);
        if timeout_s < need {
            bail!(
                "--boot-timeout {timeout_s} s is too short: this plan ({} slots) needs at least {need} s in one boot",
                self.benchmarks.len() * self.modes.len() * self.reps as usize
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix() -> Matrix {
        Matrix {
            modes: vec![NATIVE.into(), "fast".into(), "drk".into()],
            benchmarks: vec![
                Benchmark {
                    suite: Suite::Micro,
                    name: "lat_syscall null".into(),
                    args: vec!["--samples".into(), "3".into()],
                },
                Benchmark {
                    suite: Suite::File,
                    name: "fileserver".into(),
                    args: vec![],
                },
            ],
            reps: 2,
            funcs: None,
        }
    }

    #[test]
    fn plan_interleaves_every_mode_in_each_round_with_rotation() {
        let plan = matrix().plan();
        assert_eq!(plan.len(), 2 * 2 * 3);
        let round0: Vec<&str> = plan[..3].iter().map(|s| s.mode.as_str()).collect();
        let round1: Vec<&str> = plan[3..6].iter().map(|s| s.mode.as_str()).collect();
        assert_eq!(round0, ["native", "fast", "drk"]);
        assert_eq!(round1, ["fast", "drk", "native"]);
        assert!(plan[..6].iter().all(|s| s.bench == 0));
    }

    #[test]
    fn script_switches_translated_modes_on_and_off_around_their_slot() {
        let m = matrix();
        let plan = m.plan();
        let s = m.script(&plan, &[0, 1]);
        assert!(s.starts_with("cd /kdbt\ninsmod /kdbt/kdbt.ko"), "{s}");
        assert!(
            s.contains("kdbt-workload micro --only 'lat_syscall null' --samples 3"),
            "{s}"
        );
        let on = s.find("kdbtctl on fast").unwrap();
        let run = s[on..].find("kdbt-workload").unwrap() + on;
        let off = s.find("kdbtctl off").unwrap();
        assert!(on < run && run < off, "{s}");
        assert!(
            s.ends_with(&format!("{WAIT_FOR_DRAIN}; rmmod kdbt\n")),
            "{s}"
        );
        let native_only = m.script(&plan, &[0]);
        assert!(!native_only.contains("insmod"), "{native_only}");
    }

    #[test]
    fn markers_and_stats_parse() {
        assert_eq!(parse_line("@@kdbt slot 4").unwrap(), GuestLine::Slot(4));
        assert_eq!(
            parse_line("@@kdbt switch-on-failed 2 kdbtctl: on: Invalid argument").unwrap(),
            GuestLine::SwitchOnFailed(2, "kdbtctl: on: Invalid argument".into())
        );
        assert!(parse_line("@@kdbt slot x").is_err());
        assert!(parse_line("@@kdbt bogus 1").is_err());
        assert_eq!(parse_line("fork: retry").unwrap(), GuestLine::Other);
        let s = parse_stats(&[
            "total: syscalls 36003 exceptions 83360 interrupts 151441".into(),
            "blocks_translated: 42".into(),
            "mode: fast".into(),
            "vector 0x0e: total 83360 cpu0 54349".into(),
        ]);
        assert_eq!(s["total_syscalls"], 36003);
        assert_eq!(s["total_interrupts"], 151441);
        assert_eq!(s["blocks_translated"], 42);
        assert_eq!(s["vector_0x0e_total"], 83360);
        assert!(!s.keys().any(|k| k.starts_with("mode")));
        assert!(shows_translation(&s));
        let identity_only = parse_stats(&["total: syscalls 36003 exceptions 8".into()]);
        assert!(!shows_translation(&identity_only));
        // A mode without `stats` counts no entries: no counter, not zeros.
        let uncounted =
            parse_stats(&["entries: not counted (the mode spec has no `stats`)".into()]);
        assert!(uncounted.is_empty(), "{uncounted:?}");
    }

    #[test]
    fn quick_matrix_keeps_the_core_subset_and_sizes_arguments() {
        let mut list = String::new();
        for n in QUICK_MICRO.iter().chain(&["lat_select 100 tcp"]) {
            list.push_str(&format!("micro\t{n}\n"));
        }
        list.push_str("file\tfileserver\nfile\tvarmail\nfile\twebproxy\napache\tab\n");
        let m = matrix_for(
            &list,
            &[Suite::Micro, Suite::File, Suite::Apache],
            Budget::Quick,
            vec![NATIVE.into(), "fast".into()],
            2,
            None,
        )
        .unwrap();
        let names: Vec<&str> = m.benchmarks.iter().map(|b| b.name.as_str()).collect();
        assert!(!names.contains(&"lat_select 100 tcp"));
        assert!(!names.contains(&"webproxy"));
        assert_eq!(names.len(), QUICK_MICRO.len() + QUICK_FILE.len() + 1);
        let full = matrix_for(&list, &[Suite::Micro], Budget::Full, modes(), 3, None).unwrap();
        assert_eq!(full.benchmarks.len(), QUICK_MICRO.len() + 1);
        assert!(full.benchmarks[0].args.contains(&"--budget-ms".to_string()));
    }

    #[test]
    fn a_plans_apache_concurrency_replaces_the_budgets_levels() {
        let list = "micro\tlat_pipe\napache\tab\n";
        for budget in [Budget::Quick, Budget::Full] {
            let only = ["lat_pipe".to_string(), "ab".to_string()];
            let m = matrix_for(
                list,
                &[Suite::Micro, Suite::Apache],
                budget,
                modes(),
                1,
                Some(&only),
            )
            .unwrap()
            .with_apache_concurrency(&[16, 32]);
            let ab = &m.benchmarks[1].args;
            let at = ab.iter().position(|a| a == "--concurrency").unwrap();
            assert_eq!(ab[at + 1], "16,32", "{budget:?}: {ab:?}");
            assert_eq!(ab.iter().filter(|a| *a == "--concurrency").count(), 1);
            assert!(!m.benchmarks[0].args.contains(&"--concurrency".to_string()));
        }
    }

    #[test]
    fn quick_benchmark_missing_from_the_list_is_an_error() {
        let err = matrix_for(
            "micro\tlat_pipe\n",
            &[Suite::Micro],
            Budget::Quick,
            modes(),
            1,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("lat_syscall null"), "{err}");
    }

    #[test]
    fn a_plans_benchmarks_replace_the_quick_subset() {
        let list = "micro\tlat_syscall null\nmicro\tlat_select 100 tcp\nfile\twebproxy\n";
        let only = ["lat_select 100 tcp".to_string(), "webproxy".to_string()];
        let m = matrix_for(
            list,
            &[Suite::Micro, Suite::File],
            Budget::Quick,
            modes(),
            1,
            Some(&only),
        )
        .unwrap();
        let names: Vec<&str> = m.benchmarks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["lat_select 100 tcp", "webproxy"]);
    }

    fn modes() -> Vec<String> {
        vec![NATIVE.into(), "fast".into()]
    }

    #[test]
    fn plans_are_checked_with_the_modules_mode_spec_parser() {
        let list = "micro	lat_pipe
";
        let plan = |modes: &[&str], reps| {
            let modes = modes.iter().map(|m| m.to_string()).collect();
            matrix_for(list, &[Suite::Micro], Budget::Full, modes, reps, None)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(plan(&["native", "drk:no-jumptable"], 1), Ok(()));
        for (modes, reps, why) in [
            (&[][..], 1, "empty"),
            (&["native"][..], 1, "only native"),
            (&["fast", "drk"][..], 1, "must include native"),
            (&["native", "fast", "fast:callret"][..], 1, "twice"),
            (&["native", "native", "fast"][..], 1, "twice"),
            (&["native", "fast:turbo"][..], 1, "unknown option"),
            (&["native", "drk:callret"][..], 1, "callret"),
            (&["native", "fast"][..], 0, "--reps 0"),
        ] {
            let err = plan(modes, reps).unwrap_err();
            assert!(err.contains(why), "{modes:?} reps {reps}: {err}");
        }
    }

    #[test]
    fn a_boot_timeout_shorter_than_the_plan_is_refused() {
        let list = "micro	lat_pipe
file	fileserver
apache	ab
";
        let all = [Suite::Micro, Suite::File, Suite::Apache];
        let m = matrix_for(list, &all, Budget::Full, modes(), 2, None).unwrap();
        let need = m.min_boot_s(Budget::Full);
        assert!(m.check_boot_timeout(Budget::Full, need).is_ok());
        let err = m.check_boot_timeout(Budget::Full, need - 1).unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }

    #[test]
    fn malformed_record_is_an_error_not_a_drop() {
        assert!(parse_line("{\"suite\": \"micro\"").is_err());
    }

    const RECORD: &str = r#"{"suite":"micro","benchmark":"lat_syscall null","params":{},"metric":"latency","unit":"us","better":"lower","samples":[0.5,0.6,0.55],"median":0.55,"min":0.5,"max":0.6,"q1":0.52,"q3":0.58,"iterations_per_sample":1000,"status":"ok","reason":null}"#;

    fn output_of(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn crash_fails_the_running_mode_and_leaves_the_rest_for_another_boot() {
        let m = matrix();
        let plan = m.plan();
        let slots: Vec<usize> = (0..plan.len()).collect();
        // native ran; fast ran and was verified; drk crashed the guest in slot 2.
        let out = output_of(&[
            "@@kdbt slot 0",
            RECORD,
            "@@kdbt slot-end 0",
            "@@kdbt slot 1",
            RECORD,
            "@@kdbt stats 1",
            "total: syscalls 3000 blocks_translated 12",
            "@@kdbt stats-end 1",
            "@@kdbt slot-end 1",
            "@@kdbt slot 2",
        ]);
        let report = BootReport::read(&out).unwrap();
        assert_eq!(report.interrupted(), Some(2));
        let dir = tempfile::tempdir().unwrap();
        let id = store::RunId::new(1_800_000_000, "abcdef1").unwrap();
        let mut w = RunWriter::create(dir.path(), &id).unwrap();
        let mut crashed = BTreeMap::new();
        let mut stats = BTreeMap::new();
        let left = store_boot(
            &m,
            &plan,
            &slots,
            0,
            &report,
            Some("the guest kernel reported trouble: Oops"),
            None,
            &mut crashed,
            &mut stats,
            &mut w,
        )
        .unwrap();
        assert!(crashed.contains_key("drk"));
        assert_eq!(stats["fast"]["total_blocks_translated"], 12);
        // Slots 3.. were never started: they are left for the next boot, except drk's,
        // which are recorded as failed at once.
        let expected: Vec<usize> = (3..plan.len()).filter(|&i| plan[i].mode != "drk").collect();
        assert_eq!(left, expected);
        let drk_later = (3..plan.len()).filter(|&i| plan[i].mode == "drk").count();
        assert_eq!(w.failures().len(), 1 + drk_later);
        assert!(w.failures().iter().all(|f| f.mode == "drk"));
        assert!(w.failures()[1]
            .reason
            .starts_with("not run: mode drk crashed"));
        assert_eq!(w.rows_written() as usize, 3 + 3 + 1 + drk_later);
        // The next boot runs exactly what is left.
        let left2 = store_boot(
            &m,
            &plan,
            &left,
            1,
            &BootReport::default(),
            None,
            None,
            &mut crashed,
            &mut stats,
            &mut w,
        )
        .unwrap();
        assert_eq!(left2, left);
    }

    #[test]
    fn each_slot_stores_its_own_counters_and_a_mode_their_sum() {
        let m = matrix();
        let plan = m.plan();
        let fast: Vec<usize> = (0..plan.len())
            .filter(|&i| plan[i].mode == "fast")
            .collect();
        let (a, b) = (fast[0], fast[1]);
        // Counters run on over the boot: each slot's are the difference from its switch-on.
        let mut lines = Vec::new();
        for (i, before, end) in [(a, 1000, 4000), (b, 4100, 4600)] {
            lines.push(format!("@@kdbt slot {i}"));
            lines.push(format!("@@kdbt stats-before {i}"));
            lines.push(format!(
                "total: syscalls {before} blocks_translated {}",
                before / 100
            ));
            lines.push(format!("translator: heap_used_bytes {before}"));
            lines.push(format!("@@kdbt stats-end {i}"));
            lines.push(RECORD.to_string());
            lines.push(format!("@@kdbt stats {i}"));
            lines.push(format!(
                "total: syscalls {end} blocks_translated {}",
                end / 100
            ));
            lines.push(format!("translator: heap_used_bytes {end}"));
            lines.push(format!("@@kdbt stats-end {i}"));
            lines.push(format!("@@kdbt slot-end {i}"));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let report = BootReport::read(&output_of(&lines)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let id = store::RunId::new(1_800_000_000, "abcdef1").unwrap();
        let mut w = RunWriter::create(dir.path(), &id).unwrap();
        let mut stats = BTreeMap::new();
        store_boot(
            &m,
            &plan,
            &[a, b],
            0,
            &report,
            None,
            None,
            &mut BTreeMap::new(),
            &mut stats,
            &mut w,
        )
        .unwrap();
        assert_eq!(stats["fast"]["total_syscalls"], 3000 + 500);
        assert_eq!(stats["fast"]["total_blocks_translated"], 30 + 5);
        assert_eq!(stats["fast"]["translator_heap_used_bytes"], 4600);
        let csv = std::fs::read_to_string(w.dir().join(slot_stats::FILE)).unwrap();
        assert!(
            csv.contains(",fast,micro,lat_syscall null,total_syscalls,3000\n"),
            "{csv}"
        );
        assert!(
            csv.contains(",fast,micro,lat_syscall null,total_syscalls,500\n"),
            "{csv}"
        );
    }

    #[test]
    fn shards_split_by_benchmark_and_share_the_whole_matrix_digest() {
        let m = matrix();
        let shards: Vec<Matrix> = (0..2)
            .map(|index| m.shard(store::Shard { index, count: 2 }).unwrap())
            .collect();
        let names = |m: &Matrix| {
            m.benchmarks
                .iter()
                .map(|b| b.name.clone())
                .collect::<Vec<_>>()
        };
        let mut all = names(&shards[0]);
        all.extend(names(&shards[1]));
        all.sort();
        let mut whole = names(&m);
        whole.sort();
        assert_eq!(all, whole);
        assert!(names(&shards[0])
            .iter()
            .all(|n| !names(&shards[1]).contains(n)));
        assert_ne!(shards[0].digest(), m.digest());
        assert!(m.shard(store::Shard { index: 5, count: 6 }).is_err());
    }

    /// The default plan's shape: 31 micro rows, 4 file personalities, Apache.
    fn default_shaped_matrix() -> Matrix {
        let mut list: String = (0..31).map(|i| format!("micro\tlat_{i}\n")).collect();
        list += "file\tfileserver\nfile\tvarmail\nfile\twebserver\nfile\twebproxy\napache\tab\n";
        let all = [Suite::Micro, Suite::File, Suite::Apache];
        matrix_for(&list, &all, Budget::Full, modes(), 2, None).unwrap()
    }

    #[test]
    fn shards_balance_expected_wall_time_and_keep_the_plan_order() {
        let m = default_shaped_matrix();
        let halves: Vec<Matrix> = (0..2)
            .map(|index| m.shard(store::Shard { index, count: 2 }).unwrap())
            .collect();
        let load =
            |m: &Matrix| -> u64 { m.benchmarks.iter().map(Benchmark::expected_slot_s).sum() };
        let apache = m
            .benchmarks
            .iter()
            .find(|b| b.suite == Suite::Apache)
            .unwrap();
        // Apache costs as much as everything else together: it gets a shard of its own.
        assert_eq!(load(&halves[0]) + load(&halves[1]), load(&m));
        assert_eq!(halves[0].benchmarks, std::slice::from_ref(apache));
        assert!(load(&halves[1]) <= apache.expected_slot_s());
        let order = |s: &Matrix| {
            s.benchmarks
                .iter()
                .map(|b| m.benchmarks.iter().position(|x| x == b).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(order(&halves[1]).windows(2).all(|w| w[0] < w[1]));
        // Three shards: no shard is more than one benchmark above a third of the whole.
        let thirds: Vec<u64> = (0..3)
            .map(|index| load(&m.shard(store::Shard { index, count: 3 }).unwrap()))
            .collect();
        assert!(
            thirds.iter().all(|&t| t <= apache.expected_slot_s()),
            "{thirds:?}"
        );
        assert_eq!(thirds.iter().sum::<u64>(), load(&m));
    }

    #[test]
    fn a_slots_expected_time_follows_its_arguments() {
        let m = default_shaped_matrix();
        let cost = |suite| {
            m.benchmarks
                .iter()
                .find(|b| b.suite == suite)
                .unwrap()
                .expected_slot_s()
        };
        assert_eq!(cost(Suite::Micro), 4);
        assert_eq!(cost(Suite::File), 23);
        assert_eq!(cost(Suite::Apache), 216);
        let fewer = m.clone().with_apache_concurrency(&[32]);
        let ab = fewer
            .benchmarks
            .iter()
            .find(|b| b.suite == Suite::Apache)
            .unwrap();
        assert_eq!(ab.expected_slot_s(), 72);
    }

    #[test]
    fn a_native_slot_that_found_kdbt_on_fails() {
        let m = matrix();
        let plan = m.plan();
        let native = (0..plan.len()).find(|&i| plan[i].mode == NATIVE).unwrap();
        assert!(m
            .script(&plan, &[native, native + 1])
            .contains(&format!("native-while-on {native}")));
        let out = output_of(&[
            &format!("@@kdbt slot {native}"),
            &format!("@@kdbt native-while-on {native}"),
            RECORD,
            &format!("@@kdbt slot-end {native}"),
        ]);
        let report = BootReport::read(&out).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let id = store::RunId::new(1_800_000_000, "abcdef1").unwrap();
        let mut w = RunWriter::create(dir.path(), &id).unwrap();
        store_boot(
            &m,
            &plan,
            &[native],
            0,
            &report,
            None,
            None,
            &mut BTreeMap::new(),
            &mut BTreeMap::new(),
            &mut w,
        )
        .unwrap();
        assert_eq!(w.failures().len(), 1);
        assert!(w.failures()[0].reason.contains("still switched on"));
    }

    #[test]
    fn translated_slot_without_translation_statistics_is_not_counted() {
        let m = matrix();
        let plan = m.plan();
        // Entries were counted (identity interposition) but no block was translated.
        let out = output_of(&[
            "@@kdbt slot 1",
            RECORD,
            "@@kdbt stats 1",
            "total: syscalls 5000 exceptions 20 interrupts 300",
            "@@kdbt stats-end 1",
            "@@kdbt slot-end 1",
        ]);
        let report = BootReport::read(&out).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let id = store::RunId::new(1_800_000_000, "abcdef1").unwrap();
        let mut w = RunWriter::create(dir.path(), &id).unwrap();
        store_boot(
            &m,
            &plan,
            &[1],
            0,
            &report,
            None,
            None,
            &mut BTreeMap::new(),
            &mut BTreeMap::new(),
            &mut w,
        )
        .unwrap();
        assert_eq!(w.failures().len(), 1);
        assert!(w.failures()[0].reason.contains("not verified"));
    }
}
