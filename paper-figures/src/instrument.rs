//! `instrument.md` and `instrument.svg` / `instrument.png`: the cost of counting function
//! entries against the number of functions counted, from the result sets of one
//! instrumentation run (`kdbt_harness::instrument`, a plan with `functions`). This is JIFL's
//! figure (overhead against the number of instrumented functions, JIFL, EuroSys'07), with
//! ftrace beside kprobes and kdbt's `funccount` client in both designs.
//!
//! Each set measured the same matrix with its own function list loaded, in boots of its own;
//! as in `table.md`, a slowdown is a ratio of medians taken within one set, never across sets.
//! A counting method is a mode that counts the set's entries: kdbt's `funccount` client
//! (`fast:funccount`, `drk:funccount`) or a probe mode (`kprobes`, `ftrace`,
//! `kdbt_harness::bench::PROBE_MODES`). Its *baseline* is the mode it adds the counting to:
//! the same kdbt mode without `funccount` where the set ran it, else native; native for the
//! probes.
//!
//! Per micro benchmark, the counts over the measured samples (`measured:func_hits` and
//! `measured:ops` rows of `kdbt_stats.csv`) give the function entries per operation, and the
//! difference of the medians of a method and its baseline, divided by it, the cost of one
//! entry: guest instructions under the icount clock (1 ns of guest time = 1 instruction),
//! nanoseconds under the wall clock.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use anyhow::{bail, Result};
use kdbt_harness::bench::is_probe_mode;
use kdbt_harness::instrument::SUB_DIR_PREFIX;
use kdbt_harness::slot_stats::MEASURED;
use kdbt_harness::store::{Accelerator, Better, Clock, Run, Suite, NATIVE_MODE};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::chart::{legend, mode_color, Figure, KeyedAxis, FONT};
use crate::format::{self, md_cell, Footnotes};
use crate::load::ensure_comparable;
use crate::matrix::{BenchKey, Cell, FailureNote, Matrix, Row};
use crate::scaling::seconds_per;
use crate::table::describe;

/// The option of a kdbt mode spec that turns on the function-entry counting client.
pub const FUNCCOUNT: &str = "funccount";

/// The counter of function entries, as `measured:` rows of `kdbt_stats.csv` name it.
const FUNC_HITS: &str = "func_hits";
/// The operations the measured samples timed.
const OPS: &str = "ops";

/// Whether `mode` counts function entries: a probe mode, or a kdbt mode spec with the
/// [`FUNCCOUNT`] client on.
pub fn is_counting(mode: &str) -> bool {
    is_probe_mode(mode)
        || mode
            .split_once(':')
            .is_some_and(|(_, opts)| opts.split(',').any(|o| o == FUNCCOUNT))
}

/// The mode a counting method's cost is measured against, among `modes`: a kdbt mode without
/// its [`FUNCCOUNT`] option (`fast:funccount` → `fast`) where that mode was run, else native
/// (always native for the probe modes, which count on the native kernel).
pub fn baseline_of(mode: &str, modes: &[String]) -> String {
    if let Some((design, opts)) = mode.split_once(':') {
        let rest: Vec<&str> = opts.split(',').filter(|o| *o != FUNCCOUNT).collect();
        let plain = match rest.is_empty() {
            true => design.to_owned(),
            false => format!("{design}:{}", rest.join(",")),
        };
        if modes.contains(&plain) {
            return plain;
        }
    }
    NATIVE_MODE.to_owned()
}

/// The cost of one counted function entry, in the unit of `method` and `baseline` (the
/// medians of one operation's time under the method and under its baseline), given
/// `hits_per_op` entries counted per operation: `(method − baseline) / hits_per_op`. `None`
/// for no hits. Negative where the method measured faster than its baseline (noise).
pub fn cost_per_hit(method: f64, baseline: f64, hits_per_op: f64) -> Option<f64> {
    (hits_per_op > 0.0).then(|| (method - baseline) / hits_per_op)
}

/// One result set of the run: the matrix measured with one function list.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    /// Its sub-directory, `funcs-<list>`.
    pub dir_name: String,
    /// The list's name: the sub-directory's without `funcs-`.
    pub label: String,
    /// Functions the list names.
    pub functions: usize,
    /// The set's own run id.
    pub run_id: String,
}

/// A counting method and the mode its cost is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// Index of the counting mode in [`Instrument::modes`].
    pub mode: usize,
    /// Index of its baseline ([`baseline_of`]) in [`Instrument::modes`].
    pub baseline: usize,
}

/// What one mode gave on one benchmark in one set.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    /// Samples were taken.
    Measured {
        /// Slowdown versus native from medians in the same set, as [`Matrix::slowdown`]
        /// (`None` for native, or without a native median).
        slowdown: Option<f64>,
        /// Its interquartile range, as [`Matrix::slowdown_iqr`].
        iqr: Option<(f64, f64)>,
        /// Half the interquartile range of the mode's samples relative to their median, as
        /// `table.md` prints it.
        spread: Option<f64>,
        /// Attempts that failed beside the ones measured.
        failures: Vec<FailureNote>,
    },
    /// Every attempt failed.
    Failed(Vec<FailureNote>),
    /// The mode has no row for this benchmark in this set.
    Missing,
}

/// One benchmark configuration in every set and mode.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentRow {
    /// Which benchmark.
    pub key: BenchKey,
    /// Its name in tables and on charts (as in the first set that has it).
    pub label: String,
    /// What it measures, as `table.md` says it (`latency (us) ↓`).
    pub metric: String,
    /// `points[set][mode]`, in [`Instrument::sets`] and [`Instrument::modes`] order.
    pub points: Vec<Vec<Point>>,
}

/// A counting method's cost on one micro benchmark in one set.
#[derive(Debug, Clone, PartialEq)]
pub enum PerHit {
    /// None of the method's slots recorded `measured:func_hits` (with operations).
    NotCounted,
    /// The median of the entries counted per operation is zero: no cost to divide.
    NoHits,
    /// Entries were counted.
    Counted {
        /// Function entries per operation: `func_hits / ops` of each slot, median over the
        /// method's slots.
        hits_per_op: f64,
        /// What one entry cost.
        cost: Cost,
    },
}

/// The cost of one function entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cost {
    /// (median time per operation of the method − that of its baseline) / entries per
    /// operation, in ns of guest time: guest instructions under the icount clock.
    Ns(f64),
    /// The row is not a time per operation (a bandwidth, say): no difference of times.
    NotATime,
    /// The method or its baseline has no median on this row (failed or not run).
    NoMedian,
}

/// The per-hit costs of one micro benchmark row in one set.
#[derive(Debug, Clone, PartialEq)]
pub struct HitRow {
    /// Index into [`Instrument::sets`].
    pub set: usize,
    /// Which benchmark row (one of [`Instrument::rows`], suite micro).
    pub key: BenchKey,
    /// Its name in tables.
    pub label: String,
    /// One per method, in [`Instrument::methods`] order.
    pub cells: Vec<PerHit>,
}

/// The instrumentation run: its result sets side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Instrument {
    /// The run's name (its directory's).
    pub name: String,
    /// How every set's guests ran.
    pub accelerator: Accelerator,
    /// Which clock every set's timings come from.
    pub clock: Clock,
    /// The sets, by number of functions, ascending.
    pub sets: Vec<Set>,
    /// Modes of every set, in the first set's order.
    pub modes: Vec<String>,
    /// Index of native in `modes`.
    pub native: usize,
    /// The counting methods among `modes`, in their order.
    pub methods: Vec<Method>,
    /// Benchmarks, by suite, in order of first appearance.
    pub rows: Vec<InstrumentRow>,
    /// Per-hit costs: per micro benchmark with `measured:func_hits` in any set (in
    /// [`Instrument::rows`] order), one row per set.
    pub hits: Vec<HitRow>,
}

impl Instrument {
    /// The instrumentation run `name` of the result sets `runs`, the `k`th measured with the
    /// list of `sets[k]` = (sub-directory name, number of functions), as
    /// `kdbt_harness::instrument::sets` gives them (ascending by functions).
    ///
    /// Errors: no set; lengths differ; a list naming no function (the x axis is a log scale);
    /// a set without native; sets under different accelerators or clocks, of different
    /// matrices (digests), with different modes, or with different benchmarks.
    pub fn new(name: &str, sets: &[(String, usize)], runs: &[Run]) -> Result<Instrument> {
        if runs.is_empty() || runs.len() != sets.len() {
            bail!(
                "instrumentation run {name}: {} result sets for {} function lists",
                runs.len(),
                sets.len()
            );
        }
        let first = &runs[0];
        let modes = first.manifest.modes.clone();
        let benchmarks = |run: &Run| -> BTreeSet<(Suite, String)> {
            run.samples
                .iter()
                .map(|s| (s.suite, s.benchmark.clone()))
                .collect()
        };
        let first_benchmarks = benchmarks(first);
        for ((dir_name, functions), run) in sets.iter().zip(runs) {
            let m = &run.manifest;
            if *functions == 0 {
                bail!(
                    "{}: the function list of set {dir_name} names no function",
                    run.dir.display()
                );
            }
            if !m.modes.iter().any(|mode| mode == NATIVE_MODE) {
                bail!(
                    "{}: set {dir_name} has no {NATIVE_MODE} mode (modes: {:?}): slowdowns need a native baseline",
                    run.dir.display(),
                    m.modes
                );
            }
            ensure_comparable(first, run)?;
            let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
                (modes.iter().collect(), m.modes.iter().collect());
            if a != b {
                bail!(
                    "instrumentation run {name}: sets {} and {dir_name} ran different modes ({:?} and {:?})",
                    sets[0].0,
                    modes,
                    m.modes
                );
            }
            let these = benchmarks(run);
            if these != first_benchmarks {
                let only = |x: &BTreeSet<(Suite, String)>, y: &BTreeSet<(Suite, String)>| {
                    x.difference(y)
                        .map(|(s, b)| format!("{s} {b}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                bail!(
                    "instrumentation run {name}: sets {} and {dir_name} ran different benchmarks (only in {}: [{}]; only in {dir_name}: [{}])",
                    sets[0].0,
                    sets[0].0,
                    only(&first_benchmarks, &these),
                    only(&these, &first_benchmarks)
                );
            }
            // Same modes and benchmarks, yet other arguments or rounds.
            let fm = &first.manifest;
            if !fm.matrix_digest.is_empty()
                && !m.matrix_digest.is_empty()
                && fm.matrix_digest != m.matrix_digest
            {
                bail!(
                    "instrumentation run {name}: sets {} and {dir_name} measured different matrices (digests {} and {})",
                    sets[0].0,
                    fm.matrix_digest,
                    m.matrix_digest
                );
            }
        }
        let matrices = runs
            .iter()
            .map(Matrix::from_run)
            .collect::<Result<Vec<_>>>()?;
        let native = modes
            .iter()
            .position(|m| m == NATIVE_MODE)
            .expect("checked: every set has native");
        let index = |mode: &str| modes.iter().position(|m| m == mode);
        let methods: Vec<Method> = modes
            .iter()
            .enumerate()
            .filter(|(_, m)| is_counting(m))
            .map(|(mode, m)| Method {
                mode,
                baseline: index(&baseline_of(m, &modes)).expect("a baseline is one of the modes"),
            })
            .collect();

        let mut keys: Vec<(BenchKey, String, String)> = Vec::new();
        for row in matrices.iter().flat_map(|m| &m.rows) {
            if !keys.iter().any(|(k, ..)| *k == row.key) {
                keys.push((
                    row.key.clone(),
                    row.label.clone(),
                    Matrix::metric_label(row),
                ));
            }
        }
        keys.sort_by_key(|(k, ..)| k.suite);

        let find = |m: &'_ Matrix, key: &BenchKey| -> Option<usize> {
            m.rows.iter().position(|r| r.key == *key)
        };
        let rows: Vec<InstrumentRow> = keys
            .iter()
            .map(|(key, label, metric)| InstrumentRow {
                key: key.clone(),
                label: label.clone(),
                metric: metric.clone(),
                points: matrices
                    .iter()
                    .map(|m| {
                        let row = find(m, key).map(|r| &m.rows[r]);
                        modes.iter().map(|mode| point(m, row, mode)).collect()
                    })
                    .collect(),
            })
            .collect();

        let mut hits = Vec::new();
        for (key, label, _) in keys.iter().filter(|(k, ..)| k.suite == Suite::Micro) {
            let counted = runs.iter().any(|run| {
                run.slot_stats.iter().any(|s| {
                    s.suite == Suite::Micro
                        && s.benchmark == key.benchmark
                        && s.counter.strip_prefix(MEASURED) == Some(FUNC_HITS)
                })
            });
            if !counted {
                continue;
            }
            for (set, (run, m)) in runs.iter().zip(&matrices).enumerate() {
                let row = find(m, key).map(|r| &m.rows[r]);
                let cells = methods
                    .iter()
                    .map(|method| {
                        per_hit(
                            run,
                            m,
                            row,
                            &key.benchmark,
                            &modes[method.mode],
                            &modes[method.baseline],
                        )
                    })
                    .collect();
                hits.push(HitRow {
                    set,
                    key: key.clone(),
                    label: label.clone(),
                    cells,
                });
            }
        }

        Ok(Instrument {
            name: name.to_owned(),
            accelerator: first.manifest.accelerator,
            clock: first.manifest.clock,
            sets: sets
                .iter()
                .zip(runs)
                .map(|((dir_name, functions), run)| Set {
                    label: dir_name
                        .strip_prefix(SUB_DIR_PREFIX)
                        .unwrap_or(dir_name)
                        .to_owned(),
                    dir_name: dir_name.clone(),
                    functions: *functions,
                    run_id: run.manifest.run_id.to_string(),
                })
                .collect(),
            modes,
            native,
            methods,
            rows,
            hits,
        })
    }

    /// Indices into [`Instrument::modes`] of the lines the chart draws: each counting method,
    /// and each baseline other than native, in mode order.
    fn charted_modes(&self) -> Vec<usize> {
        (0..self.modes.len())
            .filter(|&i| {
                self.methods
                    .iter()
                    .any(|m| m.mode == i || (m.baseline == i && i != self.native))
            })
            .collect()
    }

    fn is_baseline(&self, mode: usize) -> bool {
        mode != self.native
            && !self.methods.iter().any(|m| m.mode == mode)
            && self.methods.iter().any(|m| m.baseline == mode)
    }
}

/// The point of `mode` on `row` (if the set has the row) of the set whose matrix is `m`.
fn point(m: &Matrix, row: Option<&Row>, mode: &str) -> Point {
    let (Some(row), Some(i)) = (row, m.modes.iter().position(|x| x == mode)) else {
        return Point::Missing;
    };
    match &row.cells[i] {
        Cell::Measured { summary, failures } => Point::Measured {
            slowdown: (i != m.native).then(|| m.slowdown(row, i)).flatten(),
            iqr: (i != m.native).then(|| m.slowdown_iqr(row, i)).flatten(),
            spread: summary.relative_spread(),
            failures: failures.clone(),
        },
        Cell::Failed(f) => Point::Failed(f.clone()),
        Cell::Missing => Point::Missing,
    }
}

/// Function entries per operation of `mode` on `benchmark`: each slot's `measured:func_hits`
/// over its `measured:ops`, median over the slots that have both (and operations).
fn hits_per_op(run: &Run, mode: &str, benchmark: &str) -> Option<f64> {
    let mut slots: BTreeMap<(u32, u32), (Option<u64>, Option<u64>)> = BTreeMap::new();
    for s in &run.slot_stats {
        if s.mode != mode || s.benchmark != benchmark || s.suite != Suite::Micro {
            continue;
        }
        let slot = slots.entry((s.boot, s.round)).or_default();
        match s.counter.strip_prefix(MEASURED) {
            Some(FUNC_HITS) => slot.0 = Some(s.value),
            Some(OPS) => slot.1 = Some(s.value),
            _ => {}
        }
    }
    let mut per_op: Vec<f64> = slots
        .values()
        .filter_map(|&(hits, ops)| match (hits?, ops?) {
            (_, 0) => None,
            (hits, ops) => Some(hits as f64 / ops as f64),
        })
        .collect();
    per_op.sort_by(f64::total_cmp);
    (!per_op.is_empty()).then(|| crate::matrix::quantile(&per_op, 0.5))
}

/// The per-hit cost of `method` against `baseline` on `row` (of `benchmark`) in the set `run`
/// whose matrix is `m`.
fn per_hit(
    run: &Run,
    m: &Matrix,
    row: Option<&Row>,
    benchmark: &str,
    method: &str,
    baseline: &str,
) -> PerHit {
    let Some(hits_per_op) = hits_per_op(run, method, benchmark) else {
        return PerHit::NotCounted;
    };
    if hits_per_op <= 0.0 {
        return PerHit::NoHits;
    }
    let median = |mode: &str| {
        let row = row?;
        let i = m.modes.iter().position(|x| x == mode)?;
        Some(row.cells[i].summary()?.median)
    };
    let cost = match row.map(|r| (r.better, seconds_per(&r.unit))) {
        Some((Some(Better::Lower), Some(seconds))) => match (median(method), median(baseline)) {
            (Some(t), Some(b)) => {
                let ns = seconds * 1e9;
                cost_per_hit(t * ns, b * ns, hits_per_op).map_or(Cost::NoMedian, Cost::Ns)
            }
            _ => Cost::NoMedian,
        },
        Some(_) => Cost::NotATime,
        None => Cost::NoMedian,
    };
    PerHit::Counted { hits_per_op, cost }
}

fn functions_text(n: usize) -> String {
    match n {
        1 => "1 function".to_owned(),
        n => format!("{n} functions"),
    }
}

/// What a counting method is, for the text.
fn method_text(mode: &str) -> String {
    match mode {
        "kprobes" => "kprobes on the native kernel".to_owned(),
        "ftrace" => "ftrace on the native kernel".to_owned(),
        m => format!(
            "kdbt's {FUNCCOUNT} client in {}",
            m.split(':').next().unwrap_or(m)
        ),
    }
}

/// `instrument.md`: a slowdown table per benchmark (sets × non-native modes) and the
/// per-hit cost tables of the micro benchmarks that counted entries. `runs` are the sets'
/// result sets, in [`Instrument::sets`] order.
pub fn markdown(ins: &Instrument, runs: &[Run]) -> String {
    let mut out = String::new();
    let mut notes = Footnotes::default();
    let _ = writeln!(out, "# kdbt instrumentation: run {}\n", ins.name);
    let _ = writeln!(
        out,
        "JIFL's figure (overhead against the number of instrumented functions; JIFL, \
         EuroSys'07) plus ftrace: what counting the entries of a set of kernel functions \
         costs, by method, as the set grows.\n"
    );
    let clock = match ins.clock {
        Clock::Icount => "icount (1 ns of guest time = 1 guest instruction)",
        Clock::Wall => "wall",
    };
    let _ = writeln!(out, "- Accelerator {}, clock {clock}", ins.accelerator);
    for (set, run) in ins.sets.iter().zip(runs) {
        let m = &run.manifest;
        let dirty = if m.git.dirty { " (dirty)" } else { "" };
        let _ = writeln!(
            out,
            "- {} ({}): `{}/`, run {}, guest kernel {} (config {}), {} vCPU, {} MiB, git {}{dirty}, {} boot(s) × {} round(s)",
            set.label,
            functions_text(set.functions),
            set.dir_name,
            set.run_id,
            m.guest.kernel_release,
            m.guest.config_hash,
            m.guest.vcpus,
            m.guest.memory_mib,
            m.git.revision,
            m.boots,
            m.reps,
        );
    }
    let boots = match runs.iter().all(|r| r.manifest.boots == 1) {
        true => "one boot per set".to_owned(),
        false => "each set in boots of its own".to_owned(),
    };
    let time = match ins.clock {
        Clock::Icount => " Under icount, time is guest instructions.",
        Clock::Wall => "",
    };
    let _ = writeln!(
        out,
        "\nSteady-state medians, per mode, {boots}: every set ran the same matrix with its own \
         function list loaded, and each ratio is taken within one set (same boots), never \
         between sets.{time}\n"
    );
    if ins.methods.is_empty() {
        let _ = writeln!(out, "No mode counts function entries.\n");
    } else {
        let _ = writeln!(out, "Counting methods:\n");
        for method in &ins.methods {
            let _ = writeln!(
                out,
                "- `{}`: {}; its cost against `{}`",
                ins.modes[method.mode],
                method_text(&ins.modes[method.mode]),
                ins.modes[method.baseline]
            );
        }
        out.push('\n');
    }

    let _ = writeln!(
        out,
        "## Slowdown versus native\n\nPer benchmark, a row per set and a column per mode: the \
         slowdown versus native from medians, as in each set's `table.md` (translated/native \
         where lower is better ↓, native/translated where higher is better ↑), so 1.00× is \
         native speed and more is slower; ± is half the interquartile range of the mode's \
         samples, relative to their median.\n"
    );
    let shown: Vec<usize> = (0..ins.modes.len()).filter(|&i| i != ins.native).collect();
    for row in &ins.rows {
        let _ = writeln!(
            out,
            "### {}: {} — {}\n",
            row.key.suite,
            md_cell(&row.label),
            row.metric
        );
        let mut head = String::from("| Set | Functions |");
        let mut rule = String::from("|---|---:|");
        for &mode in &shown {
            let _ = write!(head, " {} |", md_cell(&ins.modes[mode]));
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for (s, set) in ins.sets.iter().enumerate() {
            let _ = write!(out, "| {} | {} |", md_cell(&set.label), set.functions);
            for &mode in &shown {
                let text = slowdown_text(ins, row, s, mode, &mut notes);
                let _ = write!(out, " {} |", md_cell(&text));
            }
            out.push('\n');
        }
        out.push('\n');
    }

    if !ins.hits.is_empty() {
        hits_markdown(&mut out, ins);
    }
    let rendered = notes.render();
    if !rendered.is_empty() {
        let _ = writeln!(out, "## Notes\n\n{rendered}");
    }
    out
}

fn slowdown_text(
    ins: &Instrument,
    row: &InstrumentRow,
    set: usize,
    mode: usize,
    notes: &mut Footnotes,
) -> String {
    let at = format!(
        "{} with `{}/` on {}",
        ins.modes[mode], ins.sets[set].dir_name, row.label
    );
    match &row.points[set][mode] {
        Point::Measured {
            slowdown,
            spread,
            failures,
            ..
        } => {
            let mut text = match slowdown {
                Some(f) => {
                    let spread = spread.map(|r| format!(" {}", format::spread(r)));
                    format!("{}{}", format::factor(*f), spread.unwrap_or_default())
                }
                None => "no native baseline".to_owned(),
            };
            if !failures.is_empty() {
                let note = format!(
                    "{at}: from the attempts that completed; also failed: {}",
                    describe(failures)
                );
                text = format!("{text} {}", notes.mark(note));
            }
            text
        }
        Point::Failed(failures) => {
            format!(
                "failed {}",
                notes.mark(format!("{at}: {}", describe(failures)))
            )
        }
        Point::Missing => {
            let note = format!("{at}: no row in that set's samples.csv (not run)");
            format!("not run {}", notes.mark(note))
        }
    }
}

fn hits_markdown(out: &mut String, ins: &Instrument) {
    let unit = match ins.clock {
        Clock::Icount => "guest instructions (icount: 1 ns of guest time = 1 instruction)",
        Clock::Wall => "ns of wall time",
    };
    let short = match ins.clock {
        Clock::Icount => "insns/hit",
        Clock::Wall => "ns/hit",
    };
    let _ = writeln!(
        out,
        "## Cost per function entry\n\nPer micro benchmark whose slots counted function entries \
         over their measured samples (`measured:func_hits` and `measured:ops` in \
         `kdbt_stats.csv`), per set and counting method: **hits/op**, the entries counted per \
         operation (each slot's hits over the operations its samples timed, median over the \
         method's slots), and **{short}**, the cost of one entry in {unit}: (median time per \
         operation of the method − median of its baseline) / hits/op. Baselines:\n"
    );
    for method in &ins.methods {
        let base = &ins.modes[method.baseline];
        let why = match (
            base.as_str(),
            is_probe_mode(&ins.modes[method.mode]),
        ) {
            (NATIVE_MODE, true) => "it counts on the native kernel",
            (NATIVE_MODE, false) => {
                "the same kdbt mode without counting was not run, so this cost includes translation's own"
            }
            _ => "the same kdbt mode without counting, so the cost is the counting's alone",
        };
        let _ = writeln!(
            out,
            "- `{}` against `{base}` ({why})",
            ins.modes[method.mode]
        );
    }
    let _ = writeln!(
        out,
        "\n\"no hits\" where the median count was zero, \"not counted\" where the method's slots \
         recorded no count, \"n/a\" where the row is not a time per operation or a median is \
         missing. Medians of nearby times can differ by noise: a small or negative cost is \
         within it.\n"
    );
    let mut seen: Vec<&BenchKey> = Vec::new();
    for hr in &ins.hits {
        if seen.contains(&&hr.key) {
            continue;
        }
        seen.push(&hr.key);
        let _ = writeln!(out, "### {}\n", md_cell(&hr.label));
        let mut head = String::from("| Set | Functions |");
        let mut rule = String::from("|---|---:|");
        for method in &ins.methods {
            let m = md_cell(&ins.modes[method.mode]);
            let _ = write!(head, " {m} hits/op | {m} {short} |");
            rule.push_str("---:|---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for row in ins.hits.iter().filter(|r| r.key == hr.key) {
            let set = &ins.sets[row.set];
            let _ = write!(out, "| {} | {} |", md_cell(&set.label), set.functions);
            for cell in &row.cells {
                let (hits, cost) = match cell {
                    PerHit::NotCounted => ("not counted".to_owned(), "not counted".to_owned()),
                    PerHit::NoHits => ("no hits".to_owned(), "no hits".to_owned()),
                    PerHit::Counted { hits_per_op, cost } => (
                        format::value(*hits_per_op),
                        match cost {
                            Cost::Ns(c) => format::value(*c),
                            Cost::NotATime | Cost::NoMedian => "n/a".to_owned(),
                        },
                    ),
                };
                let _ = write!(out, " {hits} | {cost} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
}

/// Width and height of one panel.
const PANEL: (u32, u32) = (380, 400);
/// Panels in a row of the chart, at most.
const COLUMNS: usize = 4;
/// Room for the title, the caption and the legend.
const TOP: u32 = 124;
const MIN_WIDTH: u32 = 1100;

/// The instrumentation chart: a panel per benchmark with a slowdown to draw.
pub(crate) struct InstrumentChart<'a> {
    ins: &'a Instrument,
    modes: Vec<usize>,
    rows: Vec<&'a InstrumentRow>,
}

impl<'a> InstrumentChart<'a> {
    /// The chart of `ins`; `None` when there is no counting method or no benchmark with a
    /// slowdown in one of the charted modes.
    pub(crate) fn new(ins: &'a Instrument) -> Option<InstrumentChart<'a>> {
        let modes = ins.charted_modes();
        let rows: Vec<&InstrumentRow> = ins
            .rows
            .iter()
            .filter(|r| {
                r.points.iter().any(|set| {
                    modes.iter().any(|&m| {
                        matches!(
                            set[m],
                            Point::Measured {
                                slowdown: Some(_),
                                ..
                            }
                        )
                    })
                })
            })
            .collect();
        (!rows.is_empty()).then_some(InstrumentChart { ins, modes, rows })
    }

    fn grid(&self) -> (usize, usize) {
        let columns = self.rows.len().min(COLUMNS);
        (self.rows.len().div_ceil(columns), columns)
    }
}

impl Figure for InstrumentChart<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        (
            (PANEL.0 * columns as u32).max(MIN_WIDTH),
            TOP + PANEL.1 * rows as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let ins = self.ins;
        let (top, body) = root.split_vertically(TOP);
        top.draw(&Text::new(
            format!(
                "Overhead vs instrumented functions (JIFL's figure, EuroSys'07, plus ftrace), run {}",
                ins.name
            ),
            (20, 14),
            (FONT, 22).into_font(),
        ))?;
        let time = match ins.clock {
            Clock::Icount => "icount: time = guest instructions",
            Clock::Wall => "wall clock",
        };
        top.draw(&Text::new(
            format!(
                "Slowdown vs native from steady-state medians within each set ({}, {time}); \
                 dashed: kdbt without counting; grey: native",
                ins.accelerator
            ),
            (20, 48),
            (FONT, 16).into_font(),
        ))?;
        let entries: Vec<(String, RGBColor)> = self
            .modes
            .iter()
            .map(|&mode| {
                let mut name = ins.modes[mode].clone();
                if ins.is_baseline(mode) {
                    name.push_str(" (dashed)");
                }
                let failed = self.rows.iter().any(|r| {
                    r.points
                        .iter()
                        .any(|set| matches!(set[mode], Point::Failed(_)))
                });
                if failed {
                    name.push_str(" (failed somewhere: × on the axis)");
                }
                (name, mode_color(mode, ins.native))
            })
            .collect();
        legend(&top, 82, &entries)?;
        let areas = body.split_evenly(self.grid());
        for (row, area) in self.rows.iter().zip(&areas) {
            self.draw_panel(row, area)?;
        }
        Ok(())
    }
}

impl InstrumentChart<'_> {
    fn draw_panel<DB: DrawingBackend>(
        &self,
        row: &InstrumentRow,
        area: &DrawingArea<DB, Shift>,
    ) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let ins = self.ins;
        let xs: Vec<f64> = ins
            .sets
            .iter()
            .map(|s| (s.functions as f64).log10())
            .collect();
        let mut keys = xs.clone();
        keys.dedup();
        let (lo, hi) = (xs[0], xs[xs.len() - 1]);
        let y_top = row
            .points
            .iter()
            .flat_map(|set| self.modes.iter().map(move |&m| &set[m]))
            .filter_map(|p| match p {
                Point::Measured {
                    slowdown: Some(s),
                    iqr,
                    ..
                } => Some(iqr.map_or(*s, |(_, q3)| s.max(q3))),
                _ => None,
            })
            .fold(1.0, f64::max);
        let y_max = y_top * 1.12;
        let mut chart = ChartBuilder::on(area)
            .caption(&row.label, (FONT, 17))
            .margin_left(8)
            .margin_right(20)
            .margin_top(8)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(KeyedAxis::new((lo - 0.3)..(hi + 0.3), keys), 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|x| format::count(10f64.powf(*x).round()))
            .y_label_formatter(&|y| format!("{y:.1}×"))
            .x_label_style((FONT, 14))
            .y_label_style((FONT, 14))
            .x_desc("functions in the set, log scale")
            .y_desc("slowdown vs native (IQR bars)")
            .axis_desc_style((FONT, 14))
            .max_light_lines(1)
            .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
            .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
            .draw()?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(lo - 0.3, 1.0), (hi + 0.3, 1.0)],
            RGBColor(0x88, 0x88, 0x88).stroke_width(1),
        )))?;

        // Modes at the same count are nudged apart so their bars stay visible.
        let k = self.modes.len() as f64;
        for (j, &mode) in self.modes.iter().enumerate() {
            let dx = (j as f64 - (k - 1.0) / 2.0) * 0.015;
            let color = mode_color(mode, ins.native);
            // (x, slowdown, its interquartile range)
            type Plotted = (f64, f64, Option<(f64, f64)>);
            let measured: Vec<Plotted> = xs
                .iter()
                .zip(&row.points)
                .filter_map(|(&x, set)| match &set[mode] {
                    Point::Measured {
                        slowdown: Some(s),
                        iqr,
                        ..
                    } => Some((x + dx, *s, *iqr)),
                    _ => None,
                })
                .collect();
            let pts: Vec<(f64, f64)> = measured.iter().map(|&(x, y, _)| (x, y)).collect();
            if ins.is_baseline(mode) {
                chart.draw_series(DashedLineSeries::new(
                    pts.clone(),
                    8,
                    5,
                    color.stroke_width(2),
                ))?;
            } else {
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            }
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            chart.draw_series(measured.iter().filter_map(|&(x, y, iqr)| {
                let (q1, q3) = iqr?;
                Some(ErrorBar::new_vertical(
                    x,
                    q1,
                    y,
                    q3,
                    color.stroke_width(1),
                    8,
                ))
            }))?;
            let failed = xs
                .iter()
                .zip(&row.points)
                .filter(|(_, set)| matches!(set[mode], Point::Failed(_)));
            chart.draw_series(
                failed.map(|(&x, _)| Cross::new((x + dx, y_max * 0.02), 7, color.stroke_width(3))),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(list: &[&str]) -> Vec<String> {
        list.iter().map(|m| m.to_string()).collect()
    }

    #[test]
    fn funccount_and_the_probes_count_and_nothing_else_does() {
        for m in [
            "fast:funccount",
            "drk:funccount",
            "fast:no-chaining,funccount",
        ] {
            assert!(is_counting(m), "{m}");
        }
        for m in ["kprobes", "ftrace"] {
            assert!(is_counting(m), "{m}");
        }
        for m in ["native", "fast", "drk", "fast:inscount", "funccount"] {
            assert!(!is_counting(m), "{m}");
        }
    }

    #[test]
    fn a_funccount_mode_is_measured_against_itself_without_counting_where_that_ran() {
        let all = modes(&[
            "native",
            "fast",
            "fast:funccount",
            "fast:no-chaining",
            "fast:no-chaining,funccount",
            "drk:funccount",
            "kprobes",
        ]);
        assert_eq!(baseline_of("fast:funccount", &all), "fast");
        assert_eq!(
            baseline_of("fast:no-chaining,funccount", &all),
            "fast:no-chaining"
        );
        // drk was not run: its counting is measured against native.
        assert_eq!(baseline_of("drk:funccount", &all), "native");
        assert_eq!(baseline_of("kprobes", &all), "native");
        assert_eq!(baseline_of("ftrace", &all), "native");
    }

    #[test]
    fn a_hit_costs_the_difference_of_medians_over_the_hits_per_operation() {
        // 300 − 200 instructions per operation, 4 entries per operation: 25 each.
        assert_eq!(cost_per_hit(300.0, 200.0, 4.0), Some(25.0));
        // Faster than its baseline (noise) gives a negative cost, not a hidden one.
        assert_eq!(cost_per_hit(190.0, 200.0, 2.0), Some(-5.0));
        assert_eq!(cost_per_hit(300.0, 200.0, 0.0), None);
    }
}
