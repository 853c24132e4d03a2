//! The prof client's table (BTKernel's instruction-counting client): kdbt's counters over a
//! benchmark's measured samples only, read from its statistics file before the first sample
//! and after the last, so the harness can divide them by the operations those samples timed.
//! Exact and deterministic counts, unlike the times: with `inscount` and `indirect` on they
//! give kernel instructions and indirect branches executed per operation.

use std::collections::BTreeMap;
use std::path::Path;

use crate::warmup::{counter_in, STATS_PATH};

/// The counters read, as `kdbtctl stats` names them in the translator's scope.
pub const COUNTERS: &[&str] = &[
    "insns_executed",
    "indirect_executed",
    "jumptable_hits",
    "jumptable_misses",
    "dispatcher_entries",
    "blocks_translated",
    "func_hits",
];

/// The counters now; None when kdbt's statistics cannot be read (native, kdbt not loaded).
pub fn read() -> Option<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(Path::new(STATS_PATH)).ok()?;
    Some(
        COUNTERS
            .iter()
            .filter_map(|&c| Some((c.to_string(), counter_in(&text, c)?)))
            .collect(),
    )
}

/// `after - before` per counter present in both; None when either is None or a counter went
/// down (a reset in between: no difference would be the true count).
pub fn delta(
    before: Option<BTreeMap<String, u64>>,
    after: Option<BTreeMap<String, u64>>,
) -> Option<BTreeMap<String, u64>> {
    let (before, after) = (before?, after?);
    after
        .iter()
        .map(|(k, &a)| Some((k.clone(), a.checked_sub(*before.get(k)?)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delta_needs_both_readings_and_monotonic_counters() {
        let m = |v: u64| Some(BTreeMap::from([("insns_executed".to_string(), v)]));
        assert_eq!(delta(m(10), m(25)), m(15));
        assert_eq!(delta(None, m(25)), None);
        assert_eq!(delta(m(30), m(25)), None);
    }
}
