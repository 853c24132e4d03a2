//! `cargo xtask merge DIR…`: joins the result sets of the shards of one matrix
//! (`cargo xtask bench --shard I/N`, on one machine or many) into one result set, as if one
//! run had measured the whole matrix.
//!
//! Shards are refused unless they are exactly the N slices of one matrix (same digest, shard
//! count, indices 0..N once each) measured by one revision on one kind of guest: accelerator,
//! clock, guest kernel and config, vCPUs and memory. Boots are renumbered one shard after the
//! other; ratios stay within a boot, so no figure mixes shards. Durations add up (machine
//! time, not wall time when shards ran at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::slot_stats::{self, SlotStat};
use crate::store::{self, Manifest, Run, RunId, RunWriter};

/// Merges the shard result sets in `dirs` into a new result set under `results_root`;
/// returns its directory. `command_line` goes into its manifest, and its `total_s` is
/// `wall_s` when given (shards run at once by one command), else the shards' times added.
pub fn merge(
    dirs: &[PathBuf],
    results_root: &Path,
    command_line: Vec<String>,
    wall_s: Option<f64>,
) -> Result<PathBuf> {
    let mut runs: Vec<Run> = dirs.iter().map(|d| Run::load(d)).collect::<Result<_>>()?;
    check(&runs)?;
    runs.sort_by_key(|r| r.manifest.shard.map(|s| s.index));
    let first = &runs[0].manifest;
    let run_id = RunId::now(&first.git.revision)?;
    let mut writer = RunWriter::create(results_root, &run_id)?;
    let mut offset = 0;
    let mut failures = Vec::new();
    let mut stats: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut per_mode_s: BTreeMap<String, f64> = BTreeMap::new();
    let mut total_s = 0.0;
    for run in &runs {
        let m = &run.manifest;
        for row in &run.samples {
            let mut row = row.clone();
            row.boot += offset;
            writer.append_row(&row)?;
        }
        for f in &m.failures {
            let mut f = f.clone();
            f.boot += offset;
            failures.push(f);
        }
        writer.append_slot_stats(run.slot_stats.iter().map(|s| SlotStat {
            boot: s.boot + offset,
            ..s.clone()
        }))?;
        for (mode, counters) in &m.kdbt_stats {
            slot_stats::accumulate(stats.entry(mode.clone()).or_default(), counters);
        }
        for (mode, s) in &m.durations.per_mode_s {
            *per_mode_s.entry(mode.clone()).or_default() += s;
        }
        total_s += m.durations.total_s;
        offset += m.boots;
    }
    let mut suites: Vec<store::Suite> = runs
        .iter()
        .flat_map(|r| r.manifest.suites.clone())
        .collect();
    suites.sort();
    suites.dedup();
    let created = runs
        .iter()
        .map(|r| r.manifest.created_utc.clone())
        .min()
        .unwrap_or_default();
    let manifest = Manifest {
        run_id,
        created_utc: created,
        suites,
        boots: offset,
        durations: store::Durations {
            total_s: wall_s.unwrap_or(total_s),
            per_mode_s,
        },
        kdbt_stats: stats,
        failures,
        command_line,
        shard: None,
        ..first.clone()
    };
    Ok(writer.finish(manifest)?.dir)
}

/// Refuses runs that are not the complete shards of one matrix on one kind of guest.
fn check(runs: &[Run]) -> Result<()> {
    let Some(first) = runs.first() else {
        bail!("no result set to merge");
    };
    let f = &first.manifest;
    let Some(shard) = f.shard else {
        bail!(
            "{} is not a shard (made without --shard)",
            first.dir.display()
        );
    };
    let mut seen = vec![false; shard.count as usize];
    for run in runs {
        let m = &run.manifest;
        let name = run.dir.display();
        let differs = |what: &str| -> Result<()> {
            bail!(
                "{name} differs from {} in {what}: not shards of one run",
                first.dir.display()
            )
        };
        if m.git.revision != f.git.revision || m.git.dirty != f.git.dirty {
            differs("revision")?;
        }
        if m.accelerator != f.accelerator || m.clock != f.clock {
            differs("accelerator or clock")?;
        }
        if m.guest != f.guest {
            differs("guest (kernel, config, vCPUs or memory)")?;
        }
        if m.matrix_digest.is_empty() || m.matrix_digest != f.matrix_digest {
            differs("plan (modes, rounds, benchmarks or their arguments)")?;
        }
        if m.modes != f.modes || m.reps != f.reps {
            differs("modes or rounds")?;
        }
        let Some(s) = m.shard.filter(|s| s.count == shard.count) else {
            bail!("{name} is not one of {} shards", shard.count);
        };
        if std::mem::replace(&mut seen[s.index as usize], true) {
            bail!("shard {}/{} is given twice", s.index, s.count);
        }
    }
    if let Some(missing) = seen.iter().position(|&s| !s) {
        bail!("shard {missing}/{} is missing", shard.count);
    }
    Ok(())
}
