//! kdbt's statistics per slot: `kdbt_stats.csv` in a result set, one row per counter of each
//! translated slot, and the per-mode totals the manifest keeps.
//!
//! The runner reads kdbt's counters right after each slot's switch-on and again when its
//! benchmark ends; a slot's counts are the differences ([`of_slot`]): what that slot did,
//! warm-up included, the switch-on's own translation of the entry handlers excluded. Gauges
//! ([`GAUGES`]) are not counts: they are what the slot ended with.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::{Manifest, Suite};

/// File name of the per-slot statistics inside a run directory.
pub const FILE: &str = "kdbt_stats.csv";

/// Counters that are levels, not counts (bytes of the code cache and of the translator heap,
/// caches in use): a slot's value is its last, and over several slots their largest value is
/// reported, not a sum.
pub const GAUGES: &[&str] = &[
    "translator_cache_bytes",
    "translator_cache_free_bytes",
    "translator_code_caches",
    "translator_heap_bytes",
    "translator_heap_used_bytes",
];

/// One counter of one translated slot: over the whole slot, or over its measured samples
/// ([`MEASURED`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotStat {
    /// Guest boot index, from 0.
    pub boot: u32,
    /// Interleaving round within the boot, from 0.
    pub round: u32,
    /// Mode spec; one of the manifest's translated modes.
    pub mode: String,
    /// Workload family of the slot's benchmark.
    pub suite: Suite,
    /// The slot's benchmark.
    pub benchmark: String,
    /// Counter name as `kdbtctl stats` scopes it (`translator_blocks_translated`).
    pub counter: String,
    /// Its value at the slot's end: a count since the slot's switch-on, or a gauge's level.
    pub value: u64,
}

/// Prefix of the counters taken over a benchmark's measured samples only (the prof client's
/// table), as opposed to the whole slot.
pub const MEASURED: &str = "measured:";

/// The rows of counters over the measured samples: `measured:<name>` for each, and
/// `measured:ops` for the operations those samples timed.
pub fn measured(
    counters: &BTreeMap<String, u64>,
    ops: u64,
) -> impl Iterator<Item = (String, u64)> + '_ {
    counters
        .iter()
        .map(|(k, &v)| (format!("{MEASURED}{k}"), v))
        .chain(std::iter::once((format!("{MEASURED}ops"), ops)))
}

/// Whether `counter` is a gauge ([`GAUGES`]).
pub fn is_gauge(counter: &str) -> bool {
    GAUGES.contains(&counter)
}

/// One slot's counters from those read after its switch-on (`before`; `None`: all zero) and
/// at its end. Errors when a count went down: something reset it during the slot, and the
/// difference would be a wrong number.
pub fn of_slot(
    before: Option<&BTreeMap<String, u64>>,
    end: &BTreeMap<String, u64>,
) -> Result<BTreeMap<String, u64>> {
    let mut slot = BTreeMap::new();
    for (name, &v) in end {
        let from = if is_gauge(name) {
            0
        } else {
            before.and_then(|b| b.get(name)).copied().unwrap_or(0)
        };
        let Some(d) = v.checked_sub(from) else {
            bail!("kdbt counter {name} went down during a slot ({from} to {v})");
        };
        slot.insert(name.clone(), d);
    }
    Ok(slot)
}

/// Adds one slot's `counters` into a mode's `totals`: counts are summed, gauges keep their
/// largest value.
pub fn accumulate(totals: &mut BTreeMap<String, u64>, counters: &BTreeMap<String, u64>) {
    for (name, &v) in counters {
        let t = totals.entry(name.clone()).or_default();
        *t = if is_gauge(name) {
            (*t).max(v)
        } else {
            t.saturating_add(v)
        };
    }
}

/// Appends rows to `kdbt_stats.csv`, flushing each slot's rows.
#[derive(Debug)]
pub struct Writer {
    csv: csv::Writer<File>,
}

impl Writer {
    /// Creates `dir/kdbt_stats.csv` with its header.
    pub fn create(dir: &Path) -> Result<Writer> {
        let path = dir.join(FILE);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Writer {
            csv: csv::Writer::from_writer(file),
        })
    }

    /// Appends every counter of one slot.
    pub fn append(&mut self, rows: impl IntoIterator<Item = SlotStat>) -> Result<()> {
        for row in rows {
            self.csv.serialize(row)?;
        }
        self.csv.flush().context("writing kdbt_stats.csv")?;
        Ok(())
    }
}

/// Reads `dir/kdbt_stats.csv`, checked against `manifest` (known mode, boot in range). A run
/// made before per-slot statistics has no such file: empty.
pub fn load(dir: &Path, manifest: &Manifest) -> Result<Vec<SlotStat>> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let mut reader =
        csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    for (i, row) in reader.deserialize::<SlotStat>().enumerate() {
        let line = i + 2;
        let row = row.with_context(|| format!("{}:{line}", path.display()))?;
        if !manifest.modes.contains(&row.mode) {
            bail!(
                "{}:{line}: mode {:?} is not in the manifest",
                path.display(),
                row.mode
            );
        }
        if row.boot >= manifest.boots {
            bail!(
                "{}:{line}: boot {} but the run had {} boots",
                path.display(),
                row.boot,
                manifest.boots
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_counts_from_its_switch_on_and_gauges_are_its_last_level() {
        let before = BTreeMap::from([
            ("total_syscalls".to_string(), 1000),
            ("translator_heap_used_bytes".to_string(), 10),
        ]);
        let end = BTreeMap::from([
            ("total_syscalls".to_string(), 1500),
            ("translator_heap_used_bytes".to_string(), 30),
            ("translator_flushes".to_string(), 1),
        ]);
        let s = of_slot(Some(&before), &end).unwrap();
        assert_eq!(s["total_syscalls"], 500);
        assert_eq!(s["translator_heap_used_bytes"], 30);
        assert_eq!(s["translator_flushes"], 1);
        let reset = BTreeMap::from([("total_syscalls".to_string(), 3)]);
        assert!(of_slot(Some(&before), &reset).is_err());
    }

    #[test]
    fn counts_are_summed_and_gauges_keep_their_largest_value() {
        let mut totals = BTreeMap::new();
        let slot = |blocks, heap| {
            BTreeMap::from([
                ("translator_blocks_translated".to_string(), blocks),
                ("translator_heap_used_bytes".to_string(), heap),
            ])
        };
        accumulate(&mut totals, &slot(7000, 40 << 20));
        accumulate(&mut totals, &slot(12, 38 << 20));
        assert_eq!(totals["translator_blocks_translated"], 7012);
        assert_eq!(totals["translator_heap_used_bytes"], 40 << 20);
    }
}
