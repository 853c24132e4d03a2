//! What the figure tests share: a result set's manifest and sample rows built in code.

use std::collections::BTreeMap;

use kdbt_harness::store::{
    Accelerator, Clock, Durations, GitInfo, GuestInfo, HostInfo, Manifest, Params, RunId,
    SampleRow, Status, Suite, SCHEMA_VERSION,
};

/// The manifest of a one-boot, one-round micro run `id` of `modes` under TCG and icount, with
/// 1 vCPU.
pub fn manifest(id: &RunId, modes: &[&str]) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: id.clone(),
        created_utc: "2026-05-03T00:00:00Z".into(),
        git: GitInfo {
            revision: "1234567".into(),
            dirty: false,
        },
        host: HostInfo {
            cpu_model: "Test CPU".into(),
            cores: 2,
            memory_mib: 4096,
        },
        accelerator: Accelerator::Tcg,
        clock: Clock::Icount,
        guest: GuestInfo {
            kernel_release: "6.12.22-kdbt".into(),
            config_hash: "5f0c1e9a".into(),
            vcpus: 1,
            memory_mib: 1024,
        },
        modes: modes.iter().map(|m| m.to_string()).collect(),
        suites: vec![Suite::Micro],
        reps: 1,
        boots: 1,
        seeds: vec![],
        durations: Durations {
            total_s: 1.0,
            per_mode_s: BTreeMap::new(),
        },
        kdbt_stats: BTreeMap::new(),
        failures: vec![],
        command_line: vec![],
        matrix_digest: String::new(),
        shard: None,
    }
}

/// An ok `lat_*`-style latency sample (µs, lower is better) of `mode` in boot 0, round 0.
pub fn sample(mode: &str, benchmark: &str, value: f64) -> SampleRow {
    SampleRow {
        boot: 0,
        round: 0,
        mode: mode.into(),
        suite: Suite::Micro,
        benchmark: benchmark.into(),
        params: Params::none(),
        metric: "latency".into(),
        unit: "us".into(),
        better: Some(kdbt_harness::store::Better::Lower),
        sample: 0,
        value: Some(value),
        iterations: None,
        status: Status::Ok,
        reason: None,
        warmup_blocks: None,
        warmup_settled: None,
        all_idle_share: None,
        warmup_native_bytes: None,
        warmup_translate_tsc: None,
    }
}
