//! The benchmark × mode matrix of one run: every figure and table is drawn from it.
//!
//! A cell pools every ok sample of one benchmark configuration under one mode, over all boots
//! and interleaving rounds of the run, and summarises them by median and quartiles. Slowdowns
//! are ratios of medians within the run, so native and translated samples share boots.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use kdbt_harness::store::{
    Accelerator, Better, Clock, Params, Run, RunId, SampleRow, Status, Suite, NATIVE_MODE,
};

use crate::format;

/// Identifies one row of the matrix: a benchmark configuration and what it measures.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BenchKey {
    /// Workload family.
    pub suite: Suite,
    /// Benchmark name, e.g. "lat_syscall null".
    pub benchmark: String,
    /// Its parameters, e.g. `concurrency=8`.
    pub params: Params,
    /// What is measured, e.g. "latency"; empty when only failures were recorded.
    pub metric: String,
}

impl BenchKey {
    /// How the benchmark is named in tables and on charts: the name, then its parameters.
    pub fn label(&self) -> String {
        if self.params.is_empty() {
            self.benchmark.clone()
        } else {
            let params: Vec<String> = self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("{} {}", self.benchmark, params.join(" "))
        }
    }
}

/// Median and quartiles of a cell's samples, in the row's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile (linear interpolation between closest ranks).
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Summary {
            n: v.len(),
            median: quantile(&v, 0.5),
            q1: quantile(&v, 0.25),
            q3: quantile(&v, 0.75),
            min: v[0],
            max: v[v.len() - 1],
        })
    }

    /// Half the interquartile range as a fraction of the median; `None` for a zero median.
    pub fn relative_spread(&self) -> Option<f64> {
        (self.median != 0.0).then(|| (self.q3 - self.q1) / 2.0 / self.median)
    }
}

// Type 7 of Hyndman & Fan (numpy's and R's default), on sorted input.
/// The `p` quantile of `sorted` (non-empty, ascending), interpolated linearly.
pub(crate) fn quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// A failed attempt at a cell, with where to look.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureNote {
    /// Guest boot index.
    pub boot: u32,
    /// Interleaving round.
    pub round: u32,
    /// Why no sample was taken.
    pub reason: String,
    /// Kept console log, as the manifest gives it.
    pub console_log: Option<PathBuf>,
}

/// What one mode produced for one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Samples were taken; `failures` lists attempts that produced none (in other boots or
    /// rounds).
    Measured {
        /// Summary of every ok sample.
        summary: Summary,
        /// Attempts that failed.
        failures: Vec<FailureNote>,
    },
    /// Every attempt failed.
    Failed(Vec<FailureNote>),
    /// The mode has no row at all for this benchmark.
    Missing,
}

impl Cell {
    /// The summary, if the mode measured anything.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            Cell::Measured { summary, .. } => Some(summary),
            _ => None,
        }
    }
}

/// One benchmark configuration across all modes.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Which benchmark.
    pub key: BenchKey,
    /// How tables and charts name it: the benchmark and only the parameters that tell its rows
    /// apart within this run (`ab concurrency=8`), not every fixed setting.
    pub label: String,
    /// Unit of the samples; empty when only failures were recorded.
    pub unit: String,
    /// Direction of improvement; `None` when only failures were recorded.
    pub better: Option<Better>,
    /// One cell per mode, in [`Matrix::modes`] order.
    pub cells: Vec<Cell>,
}

/// A run's results as benchmark rows × mode columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// The run.
    pub run_id: RunId,
    /// How its guests ran.
    pub accelerator: Accelerator,
    /// Which clock its timings come from.
    pub clock: Clock,
    /// Mode specs, in the manifest's order.
    pub modes: Vec<String>,
    /// Index of "native" in `modes`.
    pub native: usize,
    /// Rows grouped by suite (micro, file, apache), in order of first appearance within a
    /// suite.
    pub rows: Vec<Row>,
}

/// The geometric mean of a mode's slowdowns over one suite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoMean {
    /// The mean, if any benchmark of the suite has a slowdown in this mode.
    pub value: Option<f64>,
    /// Benchmarks that entered the mean.
    pub used: usize,
    /// Benchmarks in the suite.
    pub of: usize,
}

impl Matrix {
    /// Builds the matrix of `run`. Errors if the run has no native mode, since every
    /// slowdown is relative to it.
    pub fn from_run(run: &Run) -> Result<Matrix> {
        let m = &run.manifest;
        let Some(native) = m.modes.iter().position(|mode| mode == NATIVE_MODE) else {
            bail!(
                "run {} has no {NATIVE_MODE:?} mode (modes: {:?}): slowdowns need a native baseline",
                m.run_id,
                m.modes
            );
        };
        let mode_index: HashMap<&str, usize> = m
            .modes
            .iter()
            .enumerate()
            .map(|(i, mode)| (mode.as_str(), i))
            .collect();

        // Rows come from rows that say what they measure; failures without a metric (a crash
        // before the guest printed anything) attach to every metric of their benchmark.
        let mut keys: Vec<BenchKey> = Vec::new();
        let mut kind: HashMap<BenchKey, (String, Better)> = HashMap::new();
        for s in run.samples.iter().filter(|s| !s.metric.is_empty()) {
            let key = key_of(s);
            if let Some(better) = s.better {
                kind.entry(key.clone())
                    .or_insert_with(|| (s.unit.clone(), better));
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        for s in run.samples.iter().filter(|s| s.metric.is_empty()) {
            let key = key_of(s);
            let known = keys.iter().any(|k| same_benchmark(k, &key));
            if !known {
                keys.push(key);
            }
        }
        // Stable sort: suites in the paper's order, first appearance within a suite.
        keys.sort_by_key(|k| k.suite);

        let mut values: HashMap<(usize, usize), Vec<f64>> = HashMap::new();
        let mut failures: HashMap<(usize, usize), Vec<FailureNote>> = HashMap::new();
        let mut seen: HashSet<(usize, usize)> = HashSet::new();
        for s in &run.samples {
            let mode = mode_index[s.mode.as_str()];
            let sk = key_of(s);
            for (r, key) in keys.iter().enumerate() {
                let matches = if s.metric.is_empty() {
                    same_benchmark(key, &sk)
                } else {
                    *key == sk
                };
                if !matches {
                    continue;
                }
                seen.insert((r, mode));
                match (s.status, s.value) {
                    (Status::Ok, Some(v)) => values.entry((r, mode)).or_default().push(v),
                    _ => failures
                        .entry((r, mode))
                        .or_default()
                        .push(failure_note(run, s)),
                }
            }
        }

        let rows = keys
            .into_iter()
            .enumerate()
            .map(|(r, key)| {
                let cells = (0..m.modes.len())
                    .map(|mode| {
                        let fails = failures.remove(&(r, mode)).unwrap_or_default();
                        match values.get(&(r, mode)).and_then(|v| Summary::of(v)) {
                            Some(summary) => Cell::Measured {
                                summary,
                                failures: fails,
                            },
                            None if seen.contains(&(r, mode)) => Cell::Failed(fails),
                            None => Cell::Missing,
                        }
                    })
                    .collect();
                let (unit, better) = match kind.get(&key) {
                    Some((unit, better)) => (unit.clone(), Some(*better)),
                    None => (String::new(), None),
                };
                Row {
                    label: key.label(),
                    key,
                    unit,
                    better,
                    cells,
                }
            })
            .filter(|row: &Row| is_headline(&row.key))
            .collect();
        let rows = with_short_labels(rows);

        Ok(Matrix {
            run_id: m.run_id.clone(),
            accelerator: m.accelerator,
            clock: m.clock,
            modes: m.modes.clone(),
            native,
            rows,
        })
    }

    /// Indices of the modes other than native, in order.
    pub fn translated_modes(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.modes.len()).filter(move |&i| i != self.native)
    }

    /// Suites that have rows, in the paper's order.
    pub fn suites(&self) -> Vec<Suite> {
        let mut suites: Vec<Suite> = self.rows.iter().map(|r| r.key.suite).collect();
        suites.dedup();
        suites
    }

    /// Slowdown of `mode` versus native on `row`, from medians: translated/native where lower
    /// is better, native/translated where higher is better, so above 1 is always slower.
    /// `None` unless both cells were measured with positive medians.
    pub fn slowdown(&self, row: &Row, mode: usize) -> Option<f64> {
        let native = row.cells[self.native].summary()?.median;
        let translated = row.cells[mode].summary()?.median;
        if native <= 0.0 || translated <= 0.0 {
            return None;
        }
        Some(match row.better? {
            Better::Lower => translated / native,
            Better::Higher => native / translated,
        })
    }

    /// The interquartile range of `mode`'s slowdown on `row`: its samples' first and third
    /// quartiles against the native median, as (smaller, larger) factors; `None` where
    /// [`Matrix::slowdown`] is.
    pub fn slowdown_iqr(&self, row: &Row, mode: usize) -> Option<(f64, f64)> {
        self.slowdown(row, mode)?;
        let native = row.cells[self.native].summary()?.median;
        let t = row.cells[mode].summary()?;
        if t.q1 <= 0.0 {
            return None;
        }
        Some(match row.better? {
            Better::Lower => (t.q1 / native, t.q3 / native),
            Better::Higher => (native / t.q3, native / t.q1),
        })
    }

    /// Geometric mean of `mode`'s slowdowns over the rows of `suite` that have one.
    pub fn geomean(&self, suite: Suite, mode: usize) -> GeoMean {
        let rows: Vec<&Row> = self.rows.iter().filter(|r| r.key.suite == suite).collect();
        let logs: Vec<f64> = rows
            .iter()
            .filter_map(|r| self.slowdown(r, mode))
            .map(f64::ln)
            .collect();
        GeoMean {
            value: (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp()),
            used: logs.len(),
            of: rows.len(),
        }
    }

    /// A one-line description of a row's metric: `latency, us, lower is better`.
    pub fn metric_label(row: &Row) -> String {
        let metric = if row.key.metric.is_empty() {
            "unknown metric"
        } else {
            &row.key.metric
        };
        match row.better {
            Some(Better::Lower) => format!("{metric} ({}) ↓", row.unit),
            Some(Better::Higher) => format!("{metric} ({}) ↑", row.unit),
            None => metric.to_owned(),
        }
    }

    /// A cell's absolute median with its unit, e.g. `0.215 us`.
    pub fn absolute(row: &Row, summary: &Summary) -> String {
        format!("{} {}", format::value(summary.median), row.unit)
    }
}

/// Whether a row is one the paper reports: every microbenchmark; a filebench personality's
/// total throughput (its per-flow rows stay in samples.csv); Apache's requests per second
/// (ab's transfer rate follows from it and the file size). Rows with only failures stay, so a
/// failure is never hidden.
fn is_headline(key: &BenchKey) -> bool {
    match key.suite {
        Suite::Micro => true,
        Suite::File => {
            key.metric.is_empty()
                || (key.metric == "ops_per_sec"
                    && key.params.get("flow").is_none_or(|f| f == "all"))
        }
        Suite::Apache => key.metric.is_empty() || key.metric == "requests_per_sec",
    }
}

/// Labels each row with the benchmark and the parameters whose values differ among the rows
/// of the same benchmark (a parameter fixed for the whole run says nothing in a table).
fn with_short_labels(mut rows: Vec<Row>) -> Vec<Row> {
    let labels: Vec<String> = rows
        .iter()
        .map(|row| {
            let varying: Vec<String> = row
                .key
                .params
                .iter()
                .filter(|(k, v)| {
                    rows.iter().any(|other| {
                        other.key.suite == row.key.suite
                            && other.key.benchmark == row.key.benchmark
                            && other.key.params.get(k).is_some_and(|w| w != *v)
                    })
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            if varying.is_empty() {
                row.key.benchmark.clone()
            } else {
                format!("{} {}", row.key.benchmark, varying.join(" "))
            }
        })
        .collect();
    for (row, label) in rows.iter_mut().zip(labels) {
        row.label = label;
    }
    rows
}

fn key_of(s: &SampleRow) -> BenchKey {
    BenchKey {
        suite: s.suite,
        benchmark: s.benchmark.clone(),
        params: s.params.clone(),
        metric: s.metric.clone(),
    }
}

/// Whether a failure without a metric, keyed `failure`, concerns the row keyed `row`: same
/// benchmark, and the same parameters unless the failure has none (a slot that failed before
/// the benchmark printed anything covers every configuration it would have measured).
fn same_benchmark(row: &BenchKey, failure: &BenchKey) -> bool {
    row.suite == failure.suite
        && row.benchmark == failure.benchmark
        && (failure.params.is_empty() || row.params == failure.params)
}

fn failure_note(run: &Run, s: &SampleRow) -> FailureNote {
    let console_log = run
        .manifest
        .failures
        .iter()
        .find(|f| {
            f.boot == s.boot
                && f.round == s.round
                && f.mode == s.mode
                && f.suite == s.suite
                && f.benchmark == s.benchmark
                && f.params == s.params
        })
        .and_then(|f| f.console_log.clone());
    FailureNote {
        boot: s.boot,
        round: s.round,
        reason: s.reason.clone().unwrap_or_default(),
        console_log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_between_ranks() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 1.75, 2.5, 3.25, 4.0)
        );
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!((one.q1, one.median, one.q3), (7.0, 7.0, 7.0));
        assert!(Summary::of(&[]).is_none());
    }
}
