//! The one output format of every workload: a [`Record`] per benchmark result, serialized as
//! one JSON object per line on stdout.
//!
//! The bench harness deserializes these lines with this very type, so field names and the
//! string forms of the enums are a contract: change them only together with the harness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

/// Which family of workloads produced a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// lmbench-style microbenchmarks (`kdbt-workload micro`).
    Micro,
    /// filebench-style personalities (`kdbt-workload file`).
    File,
    /// apache2 driven by `ab` (`kdbt-workload apache`).
    Apache,
}

/// What a record's samples measure; each metric has exactly one [`Unit`] and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Time per operation in µs (lmbench's `lat_*`).
    Latency,
    /// Data moved per second in MB/s with MB = 10^6 bytes (lmbench's `bw_*`).
    Bandwidth,
    /// Operations completed per second (filebench's per-flow and total throughput).
    OpsPerSec,
    /// Mean time per operation of one filebench flow, in µs.
    UsPerOp,
    /// `ab`'s "Requests per second".
    RequestsPerSec,
    /// `ab`'s "Transfer rate" in KB/s (ab's KB = 1024 bytes).
    TransferKbPerSec,
}

/// Unit of a record's samples, spelled as the harness and the figures print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Microseconds.
    #[serde(rename = "us")]
    Us,
    /// 10^6 bytes per second.
    #[serde(rename = "MB/s")]
    MbPerSec,
    /// Operations per second.
    #[serde(rename = "ops/s")]
    OpsPerSec,
    /// HTTP requests per second.
    #[serde(rename = "req/s")]
    ReqPerSec,
    /// 1024 bytes per second.
    #[serde(rename = "KB/s")]
    KbPerSec,
}

/// Which direction of a metric is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Smaller is better (latencies).
    Lower,
    /// Larger is better (throughputs, bandwidths).
    Higher,
}

impl Metric {
    /// The unit this metric is always reported in.
    pub fn unit(self) -> Unit {
        match self {
            Metric::Latency | Metric::UsPerOp => Unit::Us,
            Metric::Bandwidth => Unit::MbPerSec,
            Metric::OpsPerSec => Unit::OpsPerSec,
            Metric::RequestsPerSec => Unit::ReqPerSec,
            Metric::TransferKbPerSec => Unit::KbPerSec,
        }
    }

    /// Whether lower or higher values of this metric are better.
    pub fn better(self) -> Better {
        match self {
            Metric::Latency | Metric::UsPerOp => Better::Lower,
            _ => Better::Higher,
        }
    }
}

/// Outcome of one benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// All samples were taken; the summary fields are set.
    Ok,
    /// The benchmark could not run or its result is invalid; `reason` says why and the
    /// summary fields are null.
    Failed,
}

/// A parameter value: integers stay integers in JSON so `{"concurrency": 8}` round-trips.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// An integral parameter (counts, sizes in bytes).
    Int(i64),
    /// A fractional parameter (e.g. a measured overhead in µs).
    Float(f64),
    /// A textual parameter (a flow name, a program path).
    Text(String),
}

impl From<i64> for ParamValue {
    fn from(v: i64) -> Self {
        ParamValue::Int(v)
    }
}

impl From<u64> for ParamValue {
    fn from(v: u64) -> Self {
        ParamValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<usize> for ParamValue {
    fn from(v: usize) -> Self {
        ParamValue::from(v as u64)
    }
}

impl From<f64> for ParamValue {
    fn from(v: f64) -> Self {
        ParamValue::Float(v)
    }
}

impl From<&str> for ParamValue {
    fn from(v: &str) -> Self {
        ParamValue::Text(v.to_owned())
    }
}

impl From<String> for ParamValue {
    fn from(v: String) -> Self {
        ParamValue::Text(v)
    }
}

/// Benchmark parameters, keyed by name; ordered so output is stable.
pub type Params = BTreeMap<String, ParamValue>;

/// Builds [`Params`] from `(name, value)` pairs.
pub fn params<const N: usize>(pairs: [(&str, ParamValue); N]) -> Params {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One benchmark result, one JSON line.
///
/// `samples` are in `unit`; `median`, `min`, `max`, `q1`, `q3` summarize them (see
/// [`crate::stats::Summary`]) and are `None` (JSON null) exactly when `status` is `Failed`.
/// `iterations_per_sample` is how many operations each sample averaged over (micro), the mean
/// operations per interval (file), or requests per `ab` run (apache).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Workload family.
    pub suite: Suite,
    /// lmbench-style name (`"lat_syscall null"`, `"lat_ctx 2p"`), personality name
    /// (`"fileserver"`), or `"ab"`.
    pub benchmark: String,
    /// Parameters that distinguish records of one benchmark (sizes, flow, concurrency).
    pub params: Params,
    /// What is measured.
    pub metric: Metric,
    /// Unit of `samples` and the summary; always `metric.unit()`.
    pub unit: Unit,
    /// Direction of improvement; always `metric.better()`.
    pub better: Better,
    /// One value per sample, in `unit`.
    pub samples: Vec<f64>,
    /// Median of `samples`.
    pub median: Option<f64>,
    /// Smallest sample.
    pub min: Option<f64>,
    /// Largest sample.
    pub max: Option<f64>,
    /// First quartile of `samples`.
    pub q1: Option<f64>,
    /// Third quartile of `samples`.
    pub q3: Option<f64>,
    /// Operations averaged into each sample.
    pub iterations_per_sample: u64,
    /// Whether the benchmark ran.
    pub status: Status,
    /// Why it failed; `None` when ok.
    pub reason: Option<String>,
    /// Warm-up passes run before calibration ([`crate::warmup`]); `None` for suites that do
    /// not warm up to a steady state yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_passes: Option<u32>,
    /// Blocks kdbt translated during the warm-up (the cold-start cost), in blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_blocks: Option<u64>,
    /// Native code kdbt translated during the warm-up, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_native_bytes: Option<u64>,
    /// TSC ticks kdbt spent translating and dispatching during the warm-up (guest
    /// instructions under the icount clock, every CPU's); `None` also from a module that does
    /// not count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_translate_tsc: Option<u64>,
    /// Whether the warm-up reached a pass that translated (almost) nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_settled: Option<bool>,
    /// kdbt's counters over the measured samples only ([`crate::prof`]); `None` natively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdbt_measured: Option<std::collections::BTreeMap<String, u64>>,
    /// The operations the measured samples timed together, which `kdbt_measured` divides
    /// into per-operation counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_ops: Option<u64>,
    /// Lower bound of the share (0 to 1) of the measured samples' time during which every CPU
    /// was idle ([`crate::idle`]): under the icount clock such time is timer ticks, not
    /// instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_idle_share: Option<f64>,
}

impl Record {
    /// Records what a warm-up did: passes, what it translated, whether it settled.
    pub fn set_warm_up(&mut self, warm: &crate::warmup::WarmUp) {
        self.warmup_passes = Some(warm.passes);
        self.warmup_blocks = Some(warm.translated.blocks);
        self.warmup_native_bytes = Some(warm.translated.native_bytes);
        self.warmup_translate_tsc = warm.translated.translate_tsc;
        self.warmup_settled = Some(warm.settled);
    }

    /// A successful record summarizing `samples`.
    ///
    /// Falls back to a failed record when `samples` is empty or holds a non-finite value,
    /// since no summary of those is meaningful.
    pub fn ok(
        suite: Suite,
        benchmark: &str,
        params: Params,
        metric: Metric,
        samples: Vec<f64>,
        iterations_per_sample: u64,
    ) -> Record {
        let Some(summary) = Summary::of(&samples) else {
            let reason = if samples.is_empty() {
                "no samples were taken".to_owned()
            } else {
                "a sample is not a finite number".to_owned()
            };
            let mut r = Record::failed(suite, benchmark, params, metric, reason);
            // JSON has no NaN: keep the finite ones so the line still parses.
            r.samples = samples.into_iter().filter(|x| x.is_finite()).collect();
            r.iterations_per_sample = iterations_per_sample;
            return r;
        };
        Record {
            suite,
            benchmark: benchmark.to_owned(),
            params,
            metric,
            unit: metric.unit(),
            better: metric.better(),
            samples,
            median: Some(summary.median),
            min: Some(summary.min),
            max: Some(summary.max),
            q1: Some(summary.q1),
            q3: Some(summary.q3),
            iterations_per_sample,
            status: Status::Ok,
            reason: None,
            warmup_passes: None,
            warmup_blocks: None,
            warmup_native_bytes: None,
            warmup_translate_tsc: None,
            warmup_settled: None,
            kdbt_measured: None,
            measured_ops: None,
            all_idle_share: None,
        }
    }

    /// A failed record with no samples; `reason` should name the failing call and errno.
    pub fn failed(
        suite: Suite,
        benchmark: &str,
        params: Params,
        metric: Metric,
        reason: impl Into<String>,
    ) -> Record {
        Record {
            suite,
            benchmark: benchmark.to_owned(),
            params,
            metric,
            unit: metric.unit(),
            better: metric.better(),
            samples: Vec::new(),
            median: None,
            min: None,
            max: None,
            q1: None,
            q3: None,
            iterations_per_sample: 0,
            status: Status::Failed,
            reason: Some(reason.into()),
            warmup_passes: None,
            warmup_blocks: None,
            warmup_native_bytes: None,
            warmup_translate_tsc: None,
            warmup_settled: None,
            kdbt_measured: None,
            measured_ops: None,
            all_idle_share: None,
        }
    }

    /// Turns this record into a failed one, keeping its samples for diagnosis.
    pub fn into_failed(mut self, reason: impl Into<String>) -> Record {
        self.status = Status::Failed;
        self.reason = Some(reason.into());
        self.median = None;
        self.min = None;
        self.max = None;
        self.q1 = None;
        self.q3 = None;
        self
    }

    /// Whether the record is ok.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_record_serializes_with_contract_field_names_and_spellings() {
        let r = Record::ok(
            Suite::Apache,
            "ab",
            params([("concurrency", 8u64.into()), ("path", "/f".into())]),
            Metric::TransferKbPerSec,
            vec![3.0, 1.0, 2.0],
            1000,
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["suite"], "apache");
        assert_eq!(v["benchmark"], "ab");
        assert_eq!(v["params"]["concurrency"], 8);
        assert!(v["params"]["concurrency"].is_i64());
        assert_eq!(v["params"]["path"], "/f");
        assert_eq!(v["metric"], "transfer_kb_per_sec");
        assert_eq!(v["unit"], "KB/s");
        assert_eq!(v["better"], "higher");
        assert_eq!(v["median"], 2.0);
        assert_eq!(v["status"], "ok");
        assert!(v["reason"].is_null());
        assert_eq!(v["iterations_per_sample"], 1000);
    }

    #[test]
    fn failed_record_has_null_summary_and_a_reason() {
        let r = Record::failed(
            Suite::Micro,
            "lat_pipe",
            Params::new(),
            Metric::Latency,
            "pipe: EMFILE",
        );
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(v["unit"], "us");
        assert_eq!(v["better"], "lower");
        for k in ["median", "min", "max", "q1", "q3"] {
            assert!(v[k].is_null(), "{k} should be null");
        }
        assert_eq!(v["reason"], "pipe: EMFILE");
    }

    #[test]
    fn record_round_trips_through_json() {
        let r = Record::ok(
            Suite::File,
            "varmail",
            params([("flow", "fsyncfile2".into()), ("overhead_us", 0.25.into())]),
            Metric::UsPerOp,
            vec![10.5, 11.0],
            42,
        );
        let line = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn ok_with_non_finite_sample_becomes_failed() {
        let r = Record::ok(
            Suite::Micro,
            "lat_udp",
            Params::new(),
            Metric::Latency,
            vec![1.0, f64::NAN],
            1,
        );
        assert_eq!(r.status, Status::Failed);
        assert!(r.median.is_none());
    }

    #[test]
    fn every_metric_maps_to_its_unit_and_direction() {
        assert_eq!(Metric::Latency.unit(), Unit::Us);
        assert_eq!(Metric::Bandwidth.unit(), Unit::MbPerSec);
        assert_eq!(Metric::OpsPerSec.unit(), Unit::OpsPerSec);
        assert_eq!(Metric::UsPerOp.better(), Better::Lower);
        assert_eq!(Metric::RequestsPerSec.unit(), Unit::ReqPerSec);
        assert_eq!(Metric::Bandwidth.better(), Better::Higher);
    }
}
