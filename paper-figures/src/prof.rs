//! `prof.md`: the paper's prof-client table. Per benchmark and translated mode, kdbt's counters
//! over the measured samples divided by the operations those samples timed (`measured:` rows
//! of `kdbt_stats.csv`), median over the mode's slots: kernel instructions executed (the
//! `inscount` client), indirect branches executed (`indirect`), the indirect-branch lookup's
//! hit rate, dispatcher entries and blocks translated. Counts, not times: exact under any clock.

use std::collections::BTreeMap;
use std::fmt::Write;

use kdbt_harness::slot_stats::MEASURED;
use kdbt_harness::store::Run;

use crate::format::{self, md_cell};

/// One column of a table: how a per-operation figure comes from one slot's counters.
struct Figure {
    title: &'static str,
    /// The client the figure needs on (`None`: always counted).
    client: Option<&'static str>,
    value: fn(&BTreeMap<&str, u64>) -> Option<f64>,
    percent: bool,
}

fn per_op(c: &BTreeMap<&str, u64>, name: &str) -> Option<f64> {
    let ops = *c.get("ops")?;
    let n = *c.get(name)?;
    (ops > 0).then(|| n as f64 / ops as f64)
}

const FIGURES: &[Figure] = &[
    Figure {
        title: "Kernel instructions executed per operation",
        client: Some("inscount"),
        value: |c| per_op(c, "insns_executed"),
        percent: false,
    },
    Figure {
        title: "Indirect branches executed per operation",
        client: Some("indirect"),
        value: |c| per_op(c, "indirect_executed"),
        percent: false,
    },
    Figure {
        title: "Indirect-branch lookup hit rate",
        client: Some("indirect"),
        value: |c| {
            let hits = *c.get("jumptable_hits")? as f64;
            let misses = *c.get("jumptable_misses")? as f64;
            (hits + misses > 0.0).then(|| hits / (hits + misses))
        },
        percent: true,
    },
    Figure {
        title: "Dispatcher entries per operation",
        client: None,
        value: |c| per_op(c, "dispatcher_entries"),
        percent: false,
    },
    Figure {
        title: "Blocks translated per operation (steady state: about 0)",
        client: None,
        value: |c| per_op(c, "blocks_translated"),
        percent: false,
    },
];

/// `prof.md` of `run`; `None` when no slot recorded counters over its measured samples.
pub fn markdown(run: &Run) -> Option<String> {
    // (benchmark, mode, boot, round) → counter → value
    type Slot<'a> = (&'a str, &'a str, u32, u32);
    let mut slots: BTreeMap<Slot, BTreeMap<&str, u64>> = BTreeMap::new();
    for r in &run.slot_stats {
        if let Some(name) = r.counter.strip_prefix(MEASURED) {
            slots
                .entry((&r.benchmark, &r.mode, r.boot, r.round))
                .or_default()
                .insert(name, r.value);
        }
    }
    if slots.is_empty() {
        return None;
    }
    let mut benchmarks: Vec<&str> = Vec::new();
    for &(b, ..) in slots.keys() {
        if !benchmarks.contains(&b) {
            benchmarks.push(b);
        }
    }
    let modes: Vec<&String> = run
        .manifest
        .modes
        .iter()
        .filter(|m| slots.keys().any(|k| k.1 == m.as_str()))
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Prof client: run {}\n\nkdbt's counters over each benchmark's measured samples only, \
         divided by the operations those samples timed; median over the mode's slots. A column \
         needs its client in the mode spec (`inscount`, `indirect`); \"client off\" where it \
         was not.\n",
        run.manifest.run_id
    );
    for fig in FIGURES {
        let _ = writeln!(out, "## {}\n", fig.title);
        let _ = write!(out, "| Benchmark |");
        for m in &modes {
            let _ = write!(out, " {} |", md_cell(m));
        }
        let _ = writeln!(out, "\n|---|{}", "---:|".repeat(modes.len()));
        for b in &benchmarks {
            let _ = write!(out, "| {} |", md_cell(b));
            for m in &modes {
                let on = fig.client.is_none_or(|c| {
                    m.split_once(':')
                        .is_some_and(|(_, opts)| opts.split(',').any(|o| o == c))
                });
                let mut v: Vec<f64> = slots
                    .iter()
                    .filter(|(k, _)| k.0 == *b && k.1 == m.as_str())
                    .filter_map(|(_, c)| (fig.value)(c))
                    .collect();
                v.sort_by(f64::total_cmp);
                // kdbt is loaded but off in native slots: its counters stand still there.
                let text = if m.as_str() == kdbt_harness::store::NATIVE_MODE {
                    "not translated".to_owned()
                } else if !on {
                    "client off".to_owned()
                } else if v.is_empty() {
                    "—".to_owned()
                } else {
                    let med = crate::matrix::quantile(&v, 0.5);
                    if fig.percent {
                        format!("{:.1}%", med * 100.0)
                    } else {
                        format::value(med)
                    }
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    Some(out)
}
