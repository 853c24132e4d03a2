//! Results store: one directory per benchmark run.
//!
//! ```text
//! results/<run-id>/
//!     manifest.json   what was run, where, how, and what failed (written last)
//!     samples.csv     one tidy row per measured sample (appended as samples arrive)
//!     kdbt_stats.csv  kdbt's counters per translated slot (crate::slot_stats)
//! ```
//!
//! A run id is `YYYYMMDD-HHMMSS-<short git rev>` in UTC, so run directories sort by time.
//! [`RunWriter`] creates the directory and appends rows as the runner hands over guest
//! records, flushing each row so that a crashed run keeps what it measured; it writes the
//! manifest when the run ends. [`Run::load`] reads a run back and checks both files against
//! the schema below, naming file and line in every error.
//!
//! Units: durations are seconds, memory sizes MiB, sample values are in the row's `unit`
//! column (as the guest printed them). Under the `icount` clock one nanosecond of guest time
//! is one guest instruction, so a latency in µs is thousands of instructions per operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use time::macros::format_description;

/// Version of the manifest and CSV layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 4;
/// The oldest schema this build still reads: version 1 lacks the warm-up columns, version 2
/// the all-idle share, and version 3 the warm-up's bytes and time, which then read as empty.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;
/// File name of the run manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the sample table inside a run directory.
pub const SAMPLES_FILE: &str = "samples.csv";
/// The mode that every other mode is compared against.
pub const NATIVE_MODE: &str = "native";
/// Columns of `samples.csv`, in order. Field meanings are documented on [`SampleRow`].
pub const SAMPLE_COLUMNS: [&str; 19] = [
    "boot",
    "round",
    "mode",
    "suite",
    "benchmark",
    "params",
    "metric",
    "unit",
    "better",
    "sample",
    "value",
    "iterations",
    "status",
    "reason",
    "warmup_blocks",
    "warmup_settled",
    "all_idle_share",
    "warmup_native_bytes",
    "warmup_translate_tsc",
];
/// Columns of a schema-1 `samples.csv`: all but the warm-up ones and the all-idle share.
const SAMPLE_COLUMNS_V1: usize = 14;
/// Columns of a schema-2 `samples.csv`: all but the all-idle share and the later ones.
const SAMPLE_COLUMNS_V2: usize = 16;
/// Columns of a schema-3 `samples.csv`: all but the warm-up's bytes and time.
const SAMPLE_COLUMNS_V3: usize = 17;

/// Workload family a benchmark belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// lmbench-style microbenchmarks (latencies and bandwidths).
    Micro,
    /// filebench-style personalities.
    File,
    /// `ab` against apache2 on the guest's loopback.
    Apache,
}

impl Suite {
    /// All suites, in the order the paper presents them.
    pub const ALL: [Suite; 3] = [Suite::Micro, Suite::File, Suite::Apache];

    /// The suite named `name` ([`Suite::as_str`]), if any.
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The lowercase name used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Micro => "micro",
            Suite::File => "file",
            Suite::Apache => "apache",
        }
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which direction of a metric is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Latencies, times per operation.
    Lower,
    /// Bandwidths, throughputs.
    Higher,
}

/// Whether a row holds a measurement or stands for one that could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `value` holds a sample.
    Ok,
    /// No sample; `reason` says why.
    Failed,
}

/// How guests were executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// QEMU's binary translator (full system, single-threaded).
    Tcg,
    /// Hardware virtualization.
    Kvm,
}

/// Which clock the guest's timings are read from (the same type the QEMU runner takes).
pub use crate::qemu::Clock;

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accelerator::Tcg => "tcg",
            Accelerator::Kvm => "kvm",
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Run ids and UTC timestamps

/// A run's identifier and directory name: `YYYYMMDD-HHMMSS-<rev>` (UTC start time, then the
/// first 7 hex digits of the git revision), so that lexical order is chronological order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(String);

impl RunId {
    /// The id of a run started `unix_secs` seconds after the Unix epoch at git revision
    /// `git_rev` (at least 7 hex digits). Errors if the revision is not hex.
    pub fn new(unix_secs: u64, git_rev: &str) -> Result<RunId> {
        check_git_rev(git_rev)?;
        let stamp = utc(unix_secs)
            .format(format_description!(
                "[year][month][day]-[hour][minute][second]"
            ))
            .expect("the format has only numeric components");
        Ok(RunId(format!(
            "{stamp}-{}",
            git_rev[..7].to_ascii_lowercase()
        )))
    }

    /// The id of a run starting now.
    pub fn now(git_rev: &str) -> Result<RunId> {
        RunId::new(unix_now(), git_rev)
    }

    /// Parses and checks an id; errors name what is malformed.
    pub fn parse(s: &str) -> Result<RunId> {
        let err = || {
            anyhow!(
                "run id {s:?} is not of the form YYYYMMDD-HHMMSS-<7 to 40 lowercase hex digits>"
            )
        };
        let mut parts = s.splitn(3, '-');
        let (date, time, rev) = match (parts.next(), parts.next(), parts.next()) {
            (Some(d), Some(t), Some(r)) => (d, t, r),
            _ => return Err(err()),
        };
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(date, 8) || !digits(time, 6) || !is_short_rev(rev) {
            return Err(err());
        }
        let num = |p: &str| p.parse::<u32>().expect("checked digits");
        let (month, day) = (num(&date[4..6]), num(&date[6..8]));
        let (hour, minute, second) = (num(&time[0..2]), num(&time[2..4]), num(&time[4..6]));
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return Err(err());
        }
        Ok(RunId(s.to_owned()))
    }

    /// The id as written in directory names and the manifest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The abbreviated git revision at the end of the id.
    pub fn short_rev(&self) -> &str {
        &self.0[16..]
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for RunId {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<RunId> {
        RunId::parse(&s)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.0
    }
}

fn is_short_rev(rev: &str) -> bool {
    (7..=40).contains(&rev.len())
        && rev
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_git_rev(rev: &str) -> Result<()> {
    if rev.len() >= 7 && rev.len() <= 40 && rev.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        bail!("git revision {rev:?} is not 7 to 40 hex digits")
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `unix_secs` as an RFC 3339 UTC timestamp, `YYYY-MM-DDTHH:MM:SSZ` (the manifest's
/// `created_utc`).
pub fn utc_rfc3339(unix_secs: u64) -> String {
    utc(unix_secs)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .expect("the format has only numeric components")
}

/// `unix_secs` as a UTC date-time.
fn utc(unix_secs: u64) -> time::OffsetDateTime {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .expect("a u64 seconds count from the system clock or a run id is in range")
}

fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

// ---------------------------------------------------------------------------------------------
// Benchmark parameters

/// A benchmark's parameters, e.g. `{"concurrency": 8}`, kept as strings with sorted keys.
///
/// Written to the CSV in canonical form `k=v;k=v` (keys sorted, empty string when there are
/// none), so rows of the same benchmark configuration compare equal as text. Keys and values
/// may not contain `=`, `;` or line breaks, and keys may not be empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// No parameters.
    pub fn none() -> Params {
        Params::default()
    }

    /// Parameters from a guest record's JSON object, whose values must be strings or numbers.
    pub fn from_json(obj: &serde_json::Map<String, serde_json::Value>) -> Result<Params> {
        let mut map = BTreeMap::new();
        for (k, v) in obj {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => bail!("parameter {k:?}: value {other} is neither a string nor a number"),
            };
            map.insert(k.clone(), v);
        }
        Params::from_pairs(map)
    }

    /// Parameters from key/value pairs; errors on a key or value the canonical form cannot hold.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Params> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let (k, v) = (k.into(), v.into());
            let bad = |s: &str| s.contains(['=', ';', '\n', '\r']);
            if k.is_empty() || bad(&k) || bad(&v) {
                bail!("parameter {k:?}={v:?}: keys must be non-empty and neither may contain '=', ';' or a line break");
            }
            if map.insert(k.clone(), v).is_some() {
                bail!("parameter {k:?} given twice");
            }
        }
        Ok(Params(map))
    }

    /// Parses the canonical form; rejects unsorted or duplicate keys, so each parameter set
    /// has exactly one spelling.
    pub fn parse(s: &str) -> Result<Params> {
        if s.is_empty() {
            return Ok(Params::none());
        }
        let mut pairs = Vec::new();
        for part in s.split(';') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| anyhow!("params {s:?}: {part:?} is not key=value"))?;
            pairs.push((k.to_owned(), v.to_owned()));
        }
        if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
            bail!("params {s:?}: keys must be sorted and unique (canonical form k=v;k=v)");
        }
        Params::from_pairs(pairs)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value of `key` as a number, if present and numeric.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.parse().ok()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Key/value pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for Params {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<Params> {
        Params::parse(&s)
    }
}

impl From<Params> for String {
    fn from(p: Params) -> String {
        p.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Guest records

/// One benchmark result as the guest prints it: a single JSON object per line.
///
/// `samples` are in `unit`, each the mean over `iterations_per_sample` iterations. The
/// summary fields (`median`, `min`, `max`, `q1`, `q3`) are the guest's own and are not stored:
/// figures recompute them from the samples. A record with `status` "failed" has a `reason`
/// and may have no samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchRecord {
    /// Workload family.
    pub suite: Suite,
    /// lmbench-style name, e.g. "lat_syscall null", "lat_ctx 2p", "fileserver", "ab".
    pub benchmark: String,
    /// Configuration, e.g. `{"concurrency": 8}`; string or number values.
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What was measured: "latency", "bandwidth", "ops_per_sec", "requests_per_sec", ...
    pub metric: String,
    /// Unit of the samples: "us", "MB/s", "ops/s", "req/s", "KB/s", ...
    pub unit: String,
    /// Which direction is an improvement.
    pub better: Better,
    /// The measurements, in `unit`.
    #[serde(default)]
    pub samples: Vec<f64>,
    /// Guest-computed median of `samples`.
    #[serde(default)]
    pub median: Option<f64>,
    /// Guest-computed minimum.
    #[serde(default)]
    pub min: Option<f64>,
    /// Guest-computed maximum.
    #[serde(default)]
    pub max: Option<f64>,
    /// Guest-computed first quartile.
    #[serde(default)]
    pub q1: Option<f64>,
    /// Guest-computed third quartile.
    #[serde(default)]
    pub q3: Option<f64>,
    /// Operations averaged into each sample.
    #[serde(default)]
    pub iterations_per_sample: Option<u64>,
    /// Whether the benchmark completed.
    pub status: Status,
    /// Why it did not, for a failed record.
    #[serde(default)]
    pub reason: Option<String>,
    /// Warm-up passes before calibration (suites that warm up to a steady state).
    #[serde(default)]
    pub warmup_passes: Option<u32>,
    /// Blocks kdbt translated during the warm-up: the benchmark's cold-start cost.
    #[serde(default)]
    pub warmup_blocks: Option<u64>,
    /// Native code kdbt translated during the warm-up, bytes.
    #[serde(default)]
    pub warmup_native_bytes: Option<u64>,
    /// TSC ticks kdbt spent translating and dispatching during the warm-up (guest
    /// instructions under the icount clock, every CPU's).
    #[serde(default)]
    pub warmup_translate_tsc: Option<u64>,
    /// Whether the warm-up reached a pass that translated (almost) nothing.
    #[serde(default)]
    pub warmup_settled: Option<bool>,
    /// kdbt's counters over the measured samples only (micro, translated).
    #[serde(default)]
    pub kdbt_measured: Option<BTreeMap<String, u64>>,
    /// The operations those samples timed together.
    #[serde(default)]
    pub measured_ops: Option<u64>,
    /// Lower bound of the share of the samples' time with every CPU idle (micro).
    #[serde(default)]
    pub all_idle_share: Option<f64>,
}

impl BenchRecord {
    /// Parses one line of guest output. Errors quote the line.
    pub fn from_json_line(line: &str) -> Result<BenchRecord> {
        serde_json::from_str(line.trim())
            .with_context(|| format!("guest record is not valid: {}", line.trim()))
    }
}

/// Where a guest record was taken: under which mode, in which boot and interleaving round
/// (both counted from 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Mode spec, e.g. "native", "fast", "fast:no-jumptable,inscount".
    pub mode: String,
    /// Guest boot index.
    pub boot: u32,
    /// Interleaving round within the boot.
    pub round: u32,
}

// ---------------------------------------------------------------------------------------------
// Sample rows

/// One row of `samples.csv`: one sample of one benchmark configuration in one mode.
///
/// Rows with `status` ok carry `value` (in `unit`), a `metric`, `unit` and `better`. Failed
/// rows stand for samples that could not be taken: `value` is empty, `reason` says why, and
/// `metric`, `unit` and `better` are empty when the failure happened before the guest said
/// what it measures (a crash, a refused switch-on).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    /// Guest boot index, from 0.
    pub boot: u32,
    /// Interleaving round within the boot, from 0.
    pub round: u32,
    /// Mode spec; one of the manifest's modes.
    pub mode: String,
    /// Workload family.
    pub suite: Suite,
    /// Benchmark name.
    pub benchmark: String,
    /// Canonical parameters (`k=v;k=v`, sorted keys).
    pub params: Params,
    /// What was measured ("latency", "requests_per_sec", ...).
    pub metric: String,
    /// Unit of `value` ("us", "MB/s", "req/s", ...).
    pub unit: String,
    /// Which direction of `value` is an improvement.
    pub better: Option<Better>,
    /// Index of the sample within its guest record, from 0.
    pub sample: u32,
    /// The sample, in `unit`; empty for a failed row.
    pub value: Option<f64>,
    /// Operations averaged into the sample, when the guest reported it.
    pub iterations: Option<u64>,
    /// Whether `value` holds a measurement.
    pub status: Status,
    /// Why the sample is missing; empty for an ok row.
    pub reason: Option<String>,
    /// Blocks kdbt translated while the benchmark warmed up before its samples (the
    /// cold-start cost, per slot); empty where the suite has no steady-state warm-up.
    #[serde(default)]
    pub warmup_blocks: Option<u64>,
    /// Whether that warm-up settled (a pass translated almost nothing); empty as above.
    #[serde(default)]
    pub warmup_settled: Option<bool>,
    /// Lower bound of the share (0 to 1) of the slot's measured time during which every CPU
    /// was idle: under the icount clock that time is timer ticks, not instructions
    /// (`kdbt_workloads::idle`); empty where not measured (file, apache).
    #[serde(default)]
    pub all_idle_share: Option<f64>,
    /// Native code kdbt translated in that warm-up, bytes; empty as `warmup_blocks`.
    #[serde(default)]
    pub warmup_native_bytes: Option<u64>,
    /// TSC ticks kdbt spent in its dispatcher and translator in that warm-up: guest
    /// instructions under the icount clock, every CPU's. Empty as `warmup_blocks`, and from
    /// a module that does not count them.
    #[serde(default)]
    pub warmup_translate_tsc: Option<u64>,
}

impl SampleRow {
    /// Rows for a guest record taken at `slot`: one per sample for an ok record, a single
    /// failed row for a failed one (any samples a failed record kept are not stored; a failed
    /// record without a reason gets a generic one). Errors on an ok record without samples or
    /// with a negative or non-finite sample, and on parameters the canonical form cannot hold.
    pub fn from_record(slot: &Slot, record: &BenchRecord) -> Result<Vec<SampleRow>> {
        let what = format!(
            "{} {:?} in mode {:?}",
            record.suite, record.benchmark, slot.mode
        );
        let base = SampleRow {
            boot: slot.boot,
            round: slot.round,
            mode: slot.mode.clone(),
            suite: record.suite,
            benchmark: record.benchmark.clone(),
            params: Params::from_json(&record.params).with_context(|| what.clone())?,
            metric: record.metric.clone(),
            unit: record.unit.clone(),
            better: Some(record.better),
            sample: 0,
            value: None,
            iterations: record.iterations_per_sample,
            status: record.status,
            reason: None,
            warmup_blocks: record.warmup_blocks,
            warmup_settled: record.warmup_settled,
            all_idle_share: record.all_idle_share,
            warmup_native_bytes: record.warmup_native_bytes,
            warmup_translate_tsc: record.warmup_translate_tsc,
        };
        let rows = match record.status {
            Status::Ok => {
                if record.samples.is_empty() {
                    bail!("{what}: status ok but no samples");
                }
                record
                    .samples
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| SampleRow {
                        sample: i as u32,
                        value: Some(v),
                        ..base.clone()
                    })
                    .collect()
            }
            Status::Failed => vec![SampleRow {
                reason: Some(
                    record
                        .reason
                        .clone()
                        .filter(|r| !r.trim().is_empty())
                        .unwrap_or_else(|| "guest reported failure without a reason".into()),
                ),
                ..base
            }],
        };
        for row in &rows {
            row.check().with_context(|| what.clone())?;
        }
        Ok(rows)
    }

    /// Checks the row on its own (not against a manifest).
    pub fn check(&self) -> Result<()> {
        if self.mode.trim().is_empty() || self.mode.contains(['\n', '\r']) {
            bail!("mode {:?} is empty or spans lines", self.mode);
        }
        if self.benchmark.trim().is_empty() {
            bail!("benchmark name is empty");
        }
        match self.status {
            Status::Ok => {
                if self.metric.is_empty() || self.unit.is_empty() || self.better.is_none() {
                    bail!("ok row needs metric, unit and better");
                }
                match self.value {
                    Some(v) if v.is_finite() && v >= 0.0 => {}
                    Some(v) => bail!("value {v} is not a finite non-negative number"),
                    None => bail!("ok row has no value"),
                }
                if self.reason.as_deref().is_some_and(|r| !r.is_empty()) {
                    bail!("ok row has a reason; only failed rows do");
                }
            }
            Status::Failed => {
                if self.value.is_some() {
                    bail!("failed row has a value; failed rows leave it empty");
                }
                if !matches!(self.reason.as_deref(), Some(r) if !r.trim().is_empty()) {
                    bail!("failed row has no reason");
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Manifest

/// `manifest.json`: everything needed to know what a run measured and to reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The run's id (also its directory name when written by [`RunWriter`]).
    pub run_id: RunId,
    /// When the command started (before setup and builds), RFC 3339 UTC
    /// (`YYYY-MM-DDTHH:MM:SSZ`, see [`utc_rfc3339`]).
    pub created_utc: String,
    /// Source revision the run was built from.
    pub git: GitInfo,
    /// The machine QEMU ran on.
    pub host: HostInfo,
    /// How the guest was executed.
    pub accelerator: Accelerator,
    /// Which clock the guest's timings come from.
    pub clock: Clock,
    /// The guest machine and kernel.
    pub guest: GuestInfo,
    /// Mode specs run, in presentation order ("native" first by convention).
    pub modes: Vec<String>,
    /// Suites run.
    pub suites: Vec<Suite>,
    /// Repetitions (interleaving rounds) per boot.
    pub reps: u32,
    /// Number of guest boots; every row's `boot` is below it.
    pub boots: u32,
    /// Random seeds used by the workloads.
    pub seeds: Vec<u64>,
    /// Wall-clock time spent, seconds.
    pub durations: Durations,
    /// kdbt's statistics per mode (mode → counter name → value), e.g.
    /// "translator_blocks_translated": each count summed over the mode's slots, each slot's
    /// counted from its own switch-on; gauges (`slot_stats::GAUGES`) the largest a slot ended
    /// with. Per slot: `kdbt_stats.csv`. Runs made before per-slot statistics (no such file)
    /// kept the last slot's counters here, some of them totals since the module's load.
    pub kdbt_stats: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every failure recorded in `samples.csv`, with where to look.
    pub failures: Vec<Failure>,
    /// The command line that started the run, one argument per element, with absolute paths
    /// made relative to the repository or cut to `…/<name>` (no machine path in a manifest).
    pub command_line: Vec<String>,
    /// What the whole matrix was (modes, rounds, every benchmark with its arguments), as a
    /// digest: shards of one matrix share it (`cargo xtask merge` checks). Empty in runs made
    /// before sharding.
    #[serde(default)]
    pub matrix_digest: String,
    /// Which slice of the matrix this run measured (`--shard I/N`); `None` for the whole.
    #[serde(default)]
    pub shard: Option<Shard>,
}

/// A deterministic slice of a matrix: whole benchmarks, dealt out by expected wall time
/// (`crate::bench::Matrix::shard`), each with all its modes and rounds, so a benchmark's
/// native and translated samples share their boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    /// Shards in all, at least 1.
    pub count: u32,
}

impl Shard {
    /// Parses `I/N` (e.g. `0/2`). Errors: not two numbers, `N == 0` or `I >= N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let (i, n) = text
            .split_once('/')
            .with_context(|| format!("shard {text:?} is not I/N (e.g. 0/2)"))?;
        let index: u32 = i
            .trim()
            .parse()
            .with_context(|| format!("shard index {i:?}"))?;
        let count: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("shard count {n:?}"))?;
        if count == 0 || index >= count {
            bail!("shard {text:?}: the index must be below the count (0/2 and 1/2 make a whole)");
        }
        Ok(Shard { index, count })
    }
}

/// Source revision of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitInfo {
    /// Full (or at least 7-digit) hex commit id.
    pub revision: String,
    /// Whether the work tree had uncommitted changes.
    pub dirty: bool,
}

/// The host machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostInfo {
    /// CPU model name as `/proc/cpuinfo` gives it.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cores: u32,
    /// Physical memory, MiB.
    pub memory_mib: u64,
}

/// The guest machine and kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestInfo {
    /// `uname -r` of the guest kernel.
    pub kernel_release: String,
    /// Hash of the kernel's `.config`.
    pub config_hash: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory, MiB.
    pub memory_mib: u64,
}

/// Time spent by a run, seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Durations {
    /// The whole `cargo xtask bench` command, setup and builds included, until the manifest
    /// is written, s.
    pub total_s: f64,
    /// Time spent measuring under each mode, s.
    pub per_mode_s: BTreeMap<String, f64>,
}

/// A mode that could not produce samples for a benchmark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Guest boot index in which it failed.
    pub boot: u32,
    /// Interleaving round in which it failed.
    pub round: u32,
    /// Mode spec that failed.
    pub mode: String,
    /// Suite of the benchmark that was running or due.
    pub suite: Suite,
    /// Benchmark that was running or due.
    pub benchmark: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Params,
    /// What went wrong ("guest crashed", "switch-on refused: EINVAL", ...).
    pub reason: String,
    /// Kept serial console log, relative to the run directory when inside it.
    pub console_log: Option<PathBuf>,
}

impl Manifest {
    /// Checks the manifest's internal consistency. Errors name the offending field.
    pub fn check(&self) -> Result<()> {
        if !(OLDEST_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&self.schema_version) {
            bail!(
                "schema_version {} is not supported (this build reads {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION})",
                self.schema_version
            );
        }
        if !is_rfc3339_utc(&self.created_utc) {
            bail!(
                "created_utc {:?} is not YYYY-MM-DDTHH:MM:SSZ",
                self.created_utc
            );
        }
        check_git_rev(&self.git.revision).context("git.revision")?;
        if !self
            .git
            .revision
            .to_ascii_lowercase()
            .starts_with(self.run_id.short_rev())
        {
            bail!(
                "run_id {} does not end in a prefix of git.revision {}",
                self.run_id,
                self.git.revision
            );
        }
        if self.host.cores == 0 || self.guest.vcpus == 0 {
            bail!("host.cores and guest.vcpus must be at least 1");
        }
        if self.modes.is_empty() {
            bail!("modes is empty");
        }
        let mut seen = BTreeSet::new();
        for m in &self.modes {
            if m.trim().is_empty() || m.contains(['\n', '\r']) {
                bail!("modes: {m:?} is empty or spans lines");
            }
            if !seen.insert(m.as_str()) {
                bail!("modes: {m:?} listed twice");
            }
        }
        if self.suites.is_empty() {
            bail!("suites is empty");
        }
        if self.suites.iter().collect::<BTreeSet<_>>().len() != self.suites.len() {
            bail!("suites: a suite is listed twice");
        }
        if self.reps == 0 || self.boots == 0 {
            bail!("reps and boots must be at least 1");
        }
        if !(self.durations.total_s.is_finite() && self.durations.total_s >= 0.0) {
            bail!("durations.total_s is not a non-negative number");
        }
        for (m, s) in &self.durations.per_mode_s {
            if !seen.contains(m.as_str()) {
                bail!("durations.per_mode_s: mode {m:?} is not in modes");
            }
            if !(s.is_finite() && *s >= 0.0) {
                bail!("durations.per_mode_s[{m:?}] is not a non-negative number");
            }
        }
        for m in self.kdbt_stats.keys() {
            if !seen.contains(m.as_str()) {
                bail!("kdbt_stats: mode {m:?} is not in modes");
            }
        }
        for (i, f) in self.failures.iter().enumerate() {
            if !seen.contains(f.mode.as_str()) {
                bail!("failures[{i}]: mode {:?} is not in modes", f.mode);
            }
            if !self.suites.contains(&f.suite) {
                bail!("failures[{i}]: suite {} is not in suites", f.suite);
            }
            if f.reason.trim().is_empty() {
                bail!("failures[{i}]: reason is empty");
            }
            if f.boot >= self.boots {
                bail!("failures[{i}]: boot {} but boots is {}", f.boot, self.boots);
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Prefix of a run directory still being written (`results/.partial-<run-id>/`): hidden, ignored
/// by git and by [`list_runs`], so an unfinished run never counts as a result set.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// Writes one run directory: rows as they arrive, the manifest at the end.
///
/// The run is written under `results_root/.partial-<run-id>/` and renamed to
/// `results_root/<run-id>/` only by [`RunWriter::finish`]. A writer dropped unfinished (the
/// run failed) removes its partial directory; a harness killed outright leaves it hidden.
/// Every appended row is flushed to the file before the call returns, so while the harness
/// runs, `samples.csv` holds everything measured so far.
#[derive(Debug)]
pub struct RunWriter {
    dir: PathBuf,
    run_id: RunId,
    csv: csv::Writer<File>,
    stats: crate::slot_stats::Writer,
    rows: u64,
    failures: Vec<Failure>,
}

impl RunWriter {
    /// Creates `results_root/<run_id>/` with a `samples.csv` holding only the header.
    /// Errors if the directory already exists, so that no run is overwritten.
    pub fn create(results_root: &Path, run_id: &RunId) -> Result<RunWriter> {
        fs::create_dir_all(results_root)
            .with_context(|| format!("creating {}", results_root.display()))?;
        let done = results_root.join(run_id.as_str());
        if done.exists() {
            bail!("run directory {} exists already", done.display());
        }
        let dir = results_root.join(format!("{PARTIAL_PREFIX}{run_id}"));
        fs::create_dir(&dir)
            .with_context(|| format!("creating run directory {}", dir.display()))?;
        let path = dir.join(SAMPLES_FILE);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        // The header is written by hand so that a run with no rows still has one.
        let mut csv = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        csv.write_record(SAMPLE_COLUMNS)?;
        csv.flush()?;
        let stats = crate::slot_stats::Writer::create(&dir)?;
        Ok(RunWriter {
            dir,
            run_id: run_id.clone(),
            csv,
            stats,
            rows: 0,
            failures: Vec::new(),
        })
    }

    /// The run directory while it is written, `results_root/.partial-<run_id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's id.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// Rows written so far.
    pub fn rows_written(&self) -> u64 {
        self.rows
    }

    /// Appends one row after checking it. A failed row must also be described by a
    /// [`Failure`]: prefer [`RunWriter::append_failure`] and [`RunWriter::append_record`],
    /// which keep the two in step.
    pub fn append_row(&mut self, row: &SampleRow) -> Result<()> {
        row.check().with_context(|| {
            format!(
                "refusing to store a bad row for {} {:?} in mode {:?}",
                row.suite, row.benchmark, row.mode
            )
        })?;
        self.csv.serialize(row)?;
        self.csv
            .flush()
            .with_context(|| format!("writing {}", self.dir.join(SAMPLES_FILE).display()))?;
        self.rows += 1;
        Ok(())
    }

    /// Stores a guest record taken at `slot`: one row per sample, or for a failed record one
    /// failed row plus a [`Failure`] for the manifest. Returns the number of rows written.
    pub fn append_record(&mut self, slot: &Slot, record: &BenchRecord) -> Result<usize> {
        let rows = SampleRow::from_record(slot, record)?;
        for row in &rows {
            self.append_row(row)?;
        }
        if record.status == Status::Failed {
            self.failures.push(Failure {
                boot: slot.boot,
                round: slot.round,
                mode: slot.mode.clone(),
                suite: record.suite,
                benchmark: record.benchmark.clone(),
                params: rows[0].params.clone(),
                reason: rows[0].reason.clone().unwrap_or_default(),
                console_log: None,
            });
        }
        Ok(rows.len())
    }

    /// Records that `failure.mode` produced nothing for a benchmark (guest crash, switch-on
    /// refused, timeout): writes a failed row with metric, unit and better empty, and keeps the
    /// failure for the manifest.
    pub fn append_failure(&mut self, failure: Failure) -> Result<()> {
        self.append_row(&SampleRow {
            boot: failure.boot,
            round: failure.round,
            mode: failure.mode.clone(),
            suite: failure.suite,
            benchmark: failure.benchmark.clone(),
            params: failure.params.clone(),
            metric: String::new(),
            unit: String::new(),
            better: None,
            sample: 0,
            value: None,
            iterations: None,
            status: Status::Failed,
            reason: Some(failure.reason.clone()),
            warmup_blocks: None,
            warmup_settled: None,
            all_idle_share: None,
            warmup_native_bytes: None,
            warmup_translate_tsc: None,
        })?;
        self.failures.push(failure);
        Ok(())
    }

    /// Appends the kdbt statistics of one translated slot to `kdbt_stats.csv`.
    pub fn append_slot_stats(
        &mut self,
        rows: impl IntoIterator<Item = crate::slot_stats::SlotStat>,
    ) -> Result<()> {
        self.stats.append(rows)
    }

    /// Failures recorded so far through this writer.
    pub fn failures(&self) -> &[Failure] {
        &self.failures
    }

    /// Ends the run: adds the failures recorded through this writer to `manifest.failures`,
    /// checks the manifest, writes `manifest.json` (atomically, via a temporary file), and
    /// reads the whole run back with [`Run::load`] so that a bad run is caught now rather than
    /// when figures are drawn. Errors if `manifest.run_id` is not this writer's.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Run> {
        if manifest.run_id != self.run_id {
            bail!(
                "manifest run_id {} does not match the run directory {}",
                manifest.run_id,
                self.run_id
            );
        }
        self.csv.flush()?;
        for f in self.failures.drain(..) {
            if !manifest.failures.contains(&f) {
                manifest.failures.push(f);
            }
        }
        manifest.check().context("manifest")?;
        let path = self.dir.join(MANIFEST_FILE);
        let tmp = self.dir.join(format!("{MANIFEST_FILE}.tmp"));
        let mut json = serde_json::to_string_pretty(&manifest)?;
        json.push('\n');
        fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
        let partial = std::mem::take(&mut self.dir);
        let done = partial
            .parent()
            .expect("a run directory has a parent")
            .join(self.run_id.as_str());
        fs::rename(&partial, &done)
            .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
        Run::load(&done)
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        // Unfinished: the run failed, and its partial directory must not look like a result.
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A stored run, read back and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// Its `manifest.json`.
    pub manifest: Manifest,
    /// Its `samples.csv`, in file order.
    pub samples: Vec<SampleRow>,
    /// Its `kdbt_stats.csv` (empty for runs made before per-slot statistics).
    pub slot_stats: Vec<crate::slot_stats::SlotStat>,
}

impl Run {
    /// Reads `dir/manifest.json` and `dir/samples.csv` and checks them: the manifest against
    /// its schema, every row against the schema and the manifest (known mode and suite, boot
    /// in range), unit and direction consistent per benchmark, no duplicate samples, and every
    /// failed row described in the manifest's failures. Errors name the file and line.
    pub fn load(dir: &Path) -> Result<Run> {
        let manifest = load_manifest(&dir.join(MANIFEST_FILE))?;
        let samples = load_samples(&dir.join(SAMPLES_FILE), &manifest)?;
        let slot_stats = crate::slot_stats::load(dir, &manifest)?;
        Ok(Run {
            dir: dir.to_owned(),
            manifest,
            samples,
            slot_stats,
        })
    }
}

/// Run directories directly under `results_root` (those whose names are run ids), oldest
/// first. Errors if `results_root` cannot be read.
pub fn list_runs(results_root: &Path) -> Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    for entry in
        fs::read_dir(results_root).with_context(|| format!("reading {}", results_root.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        let is_run = name.to_str().is_some_and(|n| RunId::parse(n).is_ok());
        if is_run && entry.file_type()?.is_dir() {
            runs.push(entry.path());
        }
    }
    runs.sort();
    Ok(runs)
}

fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "{}: missing (the run did not finish, or this is not a run directory)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    // serde_json's message already ends in "at line L column C".
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    manifest
        .check()
        .map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    Ok(manifest)
}

fn load_samples(path: &Path, manifest: &Manifest) -> Result<Vec<SampleRow>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let at = |line: u64| format!("{} line {line}", path.display());
    let headers = reader
        .headers()
        .map_err(|e| anyhow!("{}: {e}", at(1)))?
        .clone();
    let columns = match manifest.schema_version {
        1 => &SAMPLE_COLUMNS[..SAMPLE_COLUMNS_V1],
        2 => &SAMPLE_COLUMNS[..SAMPLE_COLUMNS_V2],
        3 => &SAMPLE_COLUMNS[..SAMPLE_COLUMNS_V3],
        _ => &SAMPLE_COLUMNS[..],
    };
    if headers.iter().ne(columns.iter().copied()) {
        bail!(
            "{}: header is {:?}, expected {:?}",
            at(1),
            headers.iter().collect::<Vec<_>>(),
            columns
        );
    }

    struct Seen {
        unit: String,
        better: Better,
        line: u64,
    }
    let mut kinds: HashMap<(Suite, String, Params, String), Seen> = HashMap::new();
    let mut keys = HashMap::new();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                bail!("{}: {e}", at(line));
            }
        }
        let line = record.position().map_or(0, |p| p.line());
        let row: SampleRow = record
            .deserialize(Some(&headers))
            .map_err(|e| anyhow!("{}: {}", at(line), describe_csv_error(&e)))?;
        row.check().map_err(|e| anyhow!("{}: {e:#}", at(line)))?;
        if !manifest.modes.contains(&row.mode) {
            bail!(
                "{}: mode {:?} is not among the manifest's modes {:?}",
                at(line),
                row.mode,
                manifest.modes
            );
        }
        if !manifest.suites.contains(&row.suite) {
            bail!(
                "{}: suite {} is not among the manifest's suites",
                at(line),
                row.suite
            );
        }
        if row.boot >= manifest.boots {
            bail!(
                "{}: boot {} but the manifest says {} boot(s)",
                at(line),
                row.boot,
                manifest.boots
            );
        }
        let key = (
            row.boot,
            row.round,
            row.mode.clone(),
            row.suite,
            row.benchmark.clone(),
            row.params.clone(),
            row.metric.clone(),
            row.sample,
        );
        if let Some(first) = keys.insert(key, line) {
            bail!(
                "{}: duplicates the sample on line {first} (same boot, round, mode, benchmark, params, metric and sample)",
                at(line)
            );
        }
        if let Some(better) = row.better {
            let kind = (
                row.suite,
                row.benchmark.clone(),
                row.params.clone(),
                row.metric.clone(),
            );
            match kinds.get(&kind) {
                Some(seen) if seen.unit != row.unit || seen.better != better => bail!(
                    "{}: {} {:?} {} is in {:?} with better={:?}, but line {} says {:?} with better={:?}",
                    at(line),
                    row.suite,
                    row.benchmark,
                    row.metric,
                    row.unit,
                    better,
                    seen.line,
                    seen.unit,
                    seen.better
                ),
                Some(_) => {}
                None => {
                    kinds.insert(
                        kind,
                        Seen {
                            unit: row.unit.clone(),
                            better,
                            line,
                        },
                    );
                }
            }
        }
        if row.status == Status::Failed
            && !manifest
                .failures
                .iter()
                .any(|f| f.mode == row.mode && f.suite == row.suite && f.benchmark == row.benchmark)
        {
            bail!(
                "{}: failed row for {} {:?} in mode {:?} has no entry in the manifest's failures",
                at(line),
                row.suite,
                row.benchmark,
                row.mode
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

/// A csv error by column name rather than the csv crate's field index and byte offset.
fn describe_csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(i) => format!(
                "column `{}`: {}",
                SAMPLE_COLUMNS.get(i as usize).unwrap_or(&"?"),
                err.kind()
            ),
            None => err.kind().to_string(),
        },
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_conversion_matches_known_dates() {
        assert_eq!(utc_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc_rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
