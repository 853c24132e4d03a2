//! `table.md`: the paper's table of one run, benchmarks × modes.
//!
//! One section per suite; the native column gives the median in the benchmark's unit, every
//! other column the slowdown versus native from medians, each with its spread; a geometric
//! mean row closes each suite. A cell that has no number says why, in words and a footnote.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use kdbt_harness::store::{Clock, Run};

use crate::format::{self, md_cell, Footnotes};
use crate::matrix::{Cell, FailureNote, Matrix, Row};

/// The markdown table of `run`, whose matrix is `matrix`.
pub fn markdown(run: &Run, matrix: &Matrix) -> String {
    let mut out = String::new();
    let mut notes = Footnotes::default();
    header(&mut out, run);

    for suite in matrix.suites() {
        let _ = writeln!(out, "## {suite}\n");
        let mut head = String::from("| Benchmark | Metric |");
        let mut rule = String::from("|---|---|");
        for mode in &matrix.modes {
            let _ = write!(head, " {} |", md_cell(mode));
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");

        for row in matrix.rows.iter().filter(|r| r.key.suite == suite) {
            let _ = write!(
                out,
                "| {} | {} |",
                md_cell(&row.label),
                md_cell(&Matrix::metric_label(row))
            );
            for mode in 0..matrix.modes.len() {
                let _ = write!(
                    out,
                    " {} |",
                    md_cell(&cell_text(matrix, row, mode, &mut notes))
                );
            }
            out.push('\n');
        }

        let _ = write!(out, "| **geometric mean** | slowdown |");
        for mode in 0..matrix.modes.len() {
            let text = if mode == matrix.native {
                "baseline".to_owned()
            } else {
                geomean_text(matrix, suite, mode, &mut notes)
            };
            let _ = write!(out, " {} |", md_cell(&text));
        }
        out.push_str("\n\n");
    }

    translation(&mut out, run);
    idle(&mut out, run);
    stats(&mut out, run);
    let rendered = notes.render();
    if !rendered.is_empty() {
        let _ = writeln!(out, "## Notes\n\n{rendered}");
    }
    out
}

fn header(out: &mut String, run: &Run) {
    let m = &run.manifest;
    let _ = writeln!(out, "# kdbt results: run {}\n", m.run_id);
    let clock = match m.clock {
        Clock::Icount => "icount (1 ns of guest time = 1 guest instruction)",
        Clock::Wall => "wall",
    };
    let dirty = if m.git.dirty { " (dirty)" } else { "" };
    let _ = writeln!(
        out,
        "- Accelerator {}, clock {clock}\n- Guest kernel {} (config {}), {} vCPU, {} MiB\n- Host {}, {} cores, {} MiB\n- git {}{dirty}, {} boot(s) × {} round(s), started {}\n",
        m.accelerator,
        m.guest.kernel_release,
        m.guest.config_hash,
        m.guest.vcpus,
        m.guest.memory_mib,
        m.host.cpu_model,
        m.host.cores,
        m.host.memory_mib,
        m.git.revision,
        m.boots,
        m.reps,
        m.created_utc,
    );
    let _ = writeln!(
        out,
        "**native** is the median of all samples in the benchmark's unit. **Other modes** are \
         slowdowns versus native from medians (translated/native where lower is better ↓, \
         native/translated where higher is better ↑), so 1.00× is native speed and more is \
         slower. ± is half the interquartile range of the cell's samples, relative to their \
         median. Geometric means are over the suite's benchmarks.\n"
    );
}

fn cell_text(matrix: &Matrix, row: &Row, mode: usize, notes: &mut Footnotes) -> String {
    let name = &matrix.modes[mode];
    let spread = |s: &crate::matrix::Summary| {
        s.relative_spread()
            .map(|r| format!(" {}", format::spread(r)))
            .unwrap_or_default()
    };
    match &row.cells[mode] {
        Cell::Measured { summary, failures } => {
            let mut text = if mode == matrix.native {
                format!("{}{}", Matrix::absolute(row, summary), spread(summary))
            } else {
                match matrix.slowdown(row, mode) {
                    Some(s) => format!("{}{}", format::factor(s), spread(summary)),
                    None => format!("{} (no native baseline)", Matrix::absolute(row, summary)),
                }
            };
            if !failures.is_empty() {
                let note = format!(
                    "{name} on {}: from the {} samples of the attempts that completed; also failed: {}",
                    row.label,
                    summary.n,
                    describe(failures)
                );
                text = format!("{text} {}", notes.mark(note));
            }
            text
        }
        Cell::Failed(failures) => {
            let note = format!("{name} on {}: {}", row.label, describe(failures));
            format!("failed {}", notes.mark(note))
        }
        Cell::Missing => {
            let note = format!(
                "{name} on {}: no row in samples.csv (the mode was not run on this benchmark)",
                row.label
            );
            format!("not run {}", notes.mark(note))
        }
    }
}

fn geomean_text(
    matrix: &Matrix,
    suite: kdbt_harness::store::Suite,
    mode: usize,
    notes: &mut Footnotes,
) -> String {
    let g = matrix.geomean(suite, mode);
    match g.value {
        Some(v) if g.used == g.of => format::factor(v),
        Some(v) => {
            let note = format!(
                "{} geometric mean over the {} of {} {suite} benchmarks measured in both native and {}; the others failed or were not run",
                matrix.modes[mode], g.used, g.of, matrix.modes[mode]
            );
            format!(
                "{} ({} of {}) {}",
                format::factor(v),
                g.used,
                g.of,
                notes.mark(note)
            )
        }
        None => {
            let note = format!(
                "no {suite} benchmark was measured in both native and {}",
                matrix.modes[mode]
            );
            format!("n/a {}", notes.mark(note))
        }
    }
}

/// Failures grouped by reason: `reason (boot 0 round 1, console log `x`; boot 1 round 0)`.
pub(crate) fn describe(failures: &[FailureNote]) -> String {
    let mut reasons: Vec<&str> = Vec::new();
    for f in failures {
        if !reasons.contains(&f.reason.as_str()) {
            reasons.push(&f.reason);
        }
    }
    reasons
        .iter()
        .map(|reason| {
            let at: Vec<String> = failures
                .iter()
                .filter(|f| f.reason == *reason)
                .map(|f| match &f.console_log {
                    Some(log) => format!(
                        "boot {} round {}, console log `{}`",
                        f.boot,
                        f.round,
                        log.display()
                    ),
                    None => format!("boot {} round {}", f.boot, f.round),
                })
                .collect();
            format!("{reason} ({})", at.join("; "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Cold start: what each translated slot translated, warm-up included (its translator starts
/// cold unless the previous slot ran the same mode), per benchmark and mode, median over the
/// slots: blocks, KiB of native code, and the time spent translating and dispatching in
/// millions of TSC ticks (guest instructions under the icount clock; result sets from before
/// the module counted it show blocks and KiB only).
fn translation(out: &mut String, run: &Run) {
    if run.slot_stats.is_empty() {
        return;
    }
    type Key<'a> = (&'a str, &'a str, &'a str);
    #[derive(Default)]
    struct Cold {
        blocks: Vec<f64>,
        kib: Vec<f64>,
        mticks: Vec<f64>,
    }
    let mut per: BTreeMap<Key, Cold> = BTreeMap::new();
    for r in &run.slot_stats {
        let key = (r.suite.as_str(), r.benchmark.as_str(), r.mode.as_str());
        let cold = per.entry(key).or_default();
        match r.counter.as_str() {
            "translator_blocks_translated" => cold.blocks.push(r.value as f64),
            "translator_native_bytes_translated" => cold.kib.push(r.value as f64 / 1024.0),
            "translator_translate_tsc" => cold.mticks.push(r.value as f64 / 1e6),
            _ => {}
        }
    }
    let unit = match run.manifest.clock {
        Clock::Icount => {
            "millions of guest instructions (TSC ticks under the icount clock, every CPU's)"
        }
        Clock::Wall => "millions of TSC ticks",
    };
    // Result sets from before the module counted the time have blocks and KiB only.
    let (time, counter) = if per.values().any(|c| !c.mticks.is_empty()) {
        (
            format!(" / time in the dispatcher and translator, in {unit},"),
            "; the time is `translator_translate_tsc`",
        )
    } else {
        (String::new(), "")
    };
    let modes: Vec<&String> = run
        .manifest
        .modes
        .iter()
        .filter(|m| per.keys().any(|k| k.2 == m.as_str()))
        .collect();
    let _ = writeln!(
        out,
        "## Translation per slot (cold start)\n\nBlocks translated / KiB of native code \
         translated{time} in a slot, warm-up included, median over the slots \
         (`kdbt_stats.csv`{counter}). Each \
         slot switches on a translator that is cold unless the previous slot ran the same \
         mode; drk translates once per CPU.\n"
    );
    let _ = write!(out, "| Benchmark |");
    for mode in &modes {
        let _ = write!(out, " {} |", md_cell(mode));
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(modes.len()));
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| crate::matrix::quantile(&v, 0.5))
    };
    let benchmarks: BTreeSet<(&str, &str)> = per.keys().map(|k| (k.0, k.1)).collect();
    for (suite, bench) in benchmarks {
        let _ = write!(out, "| {} |", md_cell(&format!("{suite}: {bench}")));
        for mode in &modes {
            let text = match per.get(&(suite, bench, mode.as_str())) {
                Some(cold) => match (median(&cold.blocks), median(&cold.kib)) {
                    (Some(b), Some(k)) => match median(&cold.mticks) {
                        Some(t) => format!(
                            "{} / {} / {}",
                            format::count(b),
                            format::value(k),
                            format::value(t)
                        ),
                        None => format!("{} / {}", format::count(b), format::value(k)),
                    },
                    _ => "not reported".to_owned(),
                },
                None => "no slot".to_owned(),
            };
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out.push('\n');
    // Translated slots that sent new code native: their samples are partly native ones.
    let native: Vec<String> = run
        .slot_stats
        .iter()
        .filter(|r| {
            r.value > 0
                && matches!(
                    r.counter.as_str(),
                    "translator_cache_full_native" | "translator_untranslatable_native"
                )
        })
        .map(|r| {
            format!(
                "{} in {} (boot {}, round {}): {} {}",
                r.benchmark, r.mode, r.boot, r.round, r.counter, r.value
            )
        })
        .collect();
    if native.is_empty() {
        let _ = writeln!(
            out,
            "No translated slot ran code natively for want of cache room or because it could \
             not be translated.\n"
        );
    } else {
        let _ = writeln!(
            out,
            "**Slots that ran new code natively** (their samples are partly native): {}.\n",
            native.join("; ")
        );
    }
}

/// Share of a slot's measured time with every CPU idle from which a row is listed.
pub const IDLE_LISTED: f64 = 0.05;

/// Rows whose measured time had every CPU idle: under the icount clock, time that jumped to
/// the next timer deadline (ticks, not instructions). One entry per benchmark and mode, with
/// the largest share any of its slots had.
fn idle(out: &mut String, run: &Run) {
    let mut worst: BTreeMap<(String, &str), f64> = BTreeMap::new();
    let mut measured = false;
    for row in &run.samples {
        let Some(share) = row.all_idle_share else {
            continue;
        };
        measured = true;
        let key = (
            format!("{} {}", row.benchmark, row.params),
            row.mode.as_str(),
        );
        let w = worst.entry(key).or_insert(0.0);
        *w = w.max(share);
    }
    if !measured {
        return;
    }
    let listed: Vec<String> = worst
        .iter()
        .filter(|(_, &share)| share >= IDLE_LISTED)
        .map(|((bench, mode), share)| format!("{} in {mode} ({:.0}%)", bench.trim(), share * 100.0))
        .collect();
    let _ = writeln!(
        out,
        "## Time with every CPU idle
"
    );
    if listed.is_empty() {
        let _ = writeln!(
            out,
            "No micro row spent {:.0}% or more of a slot's measured time with every CPU idle \
             (a lower bound from /proc/stat).\n",
            IDLE_LISTED * 100.0
        );
    } else {
        let _ = writeln!(
            out,
            "Under the icount clock, time with every CPU idle jumps to the next timer deadline: \
             these rows measure timer ticks as well as instructions. Largest share of a slot's \
             measured time with every CPU idle (a lower bound from /proc/stat): {}.\n",
            listed.join("; ")
        );
    }
}

fn stats(out: &mut String, run: &Run) {
    let m = &run.manifest;
    if m.kdbt_stats.is_empty() {
        return;
    }
    let modes: Vec<&String> = m
        .modes
        .iter()
        .filter(|mode| m.kdbt_stats.contains_key(*mode))
        .collect();
    let counters: BTreeSet<&String> = m.kdbt_stats.values().flat_map(|c| c.keys()).collect();
    let _ = writeln!(out, "## kdbt statistics\n");
    let what = if run.slot_stats.is_empty() {
        "Per mode: the counters after the mode's last slot (this run predates per-slot \
         statistics; some are totals since the module was loaded)."
    } else {
        "Per mode: each count summed over the mode's slots, each slot counted from its own \
         switch-on; gauges (cache and heap bytes, caches) the largest a slot ended with. Per \
         slot: `kdbt_stats.csv`."
    };
    let _ = writeln!(out, "{what}\n");
    let _ = write!(out, "| Counter |");
    for mode in &modes {
        let _ = write!(out, " {} |", md_cell(mode));
    }
    let _ = writeln!(out, "\n|---|{}", "---:|".repeat(modes.len()));
    for counter in counters {
        let _ = write!(out, "| {} |", md_cell(counter));
        for mode in &modes {
            let text = m.kdbt_stats[*mode]
                .get(counter)
                .map_or_else(|| "not reported".to_owned(), |v| v.to_string());
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    out.push('\n');
}
