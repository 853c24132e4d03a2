//! `scaling.md` and `scaling.svg` / `scaling.png`: throughput against the guest's vCPU count,
//! from the result sets of one scaling run (`kdbt_harness::scaling`, a plan with `vcpus`).
//!
//! Per benchmark, mode and vCPU count: the throughput from the cell's median, and the
//! slowdown versus native measured in the same result set (same boots) at that count, as in
//! `table.md`. Ratios are never taken across sets; the sets must share accelerator and clock
//! and have run the same matrix. The chart has one panel per benchmark, vCPUs on a log₂ x axis,
//! throughput on y (higher is better), a line per mode with interquartile bars.
//!
//! Throughput is the median itself where higher is better (requests/s, ops/s, MB/s), and
//! operations per second of guest time where the row is a time per operation (a latency in
//! µs: 10⁶ / median). A lower-is-better row in any other unit has no throughput and is left
//! out (the workloads have none).

use std::fmt::Write as _;

use anyhow::{bail, Result};
use kdbt_harness::store::{Accelerator, Better, Clock, Run};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::chart::{legend, mode_color, Figure, KeyedAxis, FONT};
use crate::format::{self, md_cell, Footnotes};
use crate::load::ensure_comparable;
use crate::matrix::{BenchKey, Cell, FailureNote, Matrix};
use crate::table::describe;

/// What one mode gave at one vCPU count on one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    /// Samples were taken.
    Measured {
        /// Throughput from the median, in the row's [`ScalingRow::unit`].
        throughput: f64,
        /// Throughput from the quartiles, (smaller, larger).
        iqr: (f64, f64),
        /// Slowdown versus native in the same result set (`None` for native, or without a
        /// native median).
        slowdown: Option<f64>,
        /// Attempts that failed beside the ones measured.
        failures: Vec<FailureNote>,
    },
    /// Every attempt failed.
    Failed(Vec<FailureNote>),
    /// The mode has no row for this benchmark at this count.
    Missing,
}

/// One benchmark configuration at every vCPU count in every mode.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRow {
    /// Which benchmark.
    pub key: BenchKey,
    /// Its name in tables and on charts (as in the first set that has it).
    pub label: String,
    /// The throughput's unit: the row's own where higher is better, `ops/s` for a time per
    /// operation.
    pub unit: String,
    /// `points[set][mode]`, in [`Scaling::vcpus`] and [`Scaling::modes`] order.
    pub points: Vec<Vec<Point>>,
}

/// The scaling run: its result sets side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Scaling {
    /// The run's name (its directory's).
    pub name: String,
    /// How every set's guests ran.
    pub accelerator: Accelerator,
    /// Which clock every set's timings come from.
    pub clock: Clock,
    /// vCPU counts, ascending, one per set.
    pub vcpus: Vec<u32>,
    /// Each set's run id, in [`Scaling::vcpus`] order.
    pub run_ids: Vec<String>,
    /// Modes of any set, in the order of the first set that has them.
    pub modes: Vec<String>,
    /// Index of native in `modes`.
    pub native: usize,
    /// Benchmarks of any set, by suite, in order of first appearance.
    pub rows: Vec<ScalingRow>,
}

/// Seconds in one `unit` of a time per operation; `None` for any other unit.
pub(crate) fn seconds_per(unit: &str) -> Option<f64> {
    match unit {
        "s" => Some(1.0),
        "ms" => Some(1e-3),
        "us" | "µs" => Some(1e-6),
        "ns" => Some(1e-9),
        _ => None,
    }
}

/// How a row's values become throughput.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Throughput {
    /// The value is one already (higher is better).
    AsIs,
    /// The value is a time per operation, in units of this many seconds.
    PerOp(f64),
}

impl Throughput {
    /// The conversion for a row with `unit` and `better`, and the throughput's unit; `None`
    /// where there is none (see the module's comment).
    fn of(unit: &str, better: Better) -> Option<(Throughput, String)> {
        match better {
            Better::Higher => Some((Throughput::AsIs, unit.to_owned())),
            Better::Lower => Some((Throughput::PerOp(seconds_per(unit)?), "ops/s".to_owned())),
        }
    }

    fn apply(self, value: f64) -> f64 {
        match self {
            Throughput::AsIs => value,
            Throughput::PerOp(seconds) => 1.0 / (value * seconds),
        }
    }
}

impl Scaling {
    /// The scaling run `name` of the result sets `runs`, measured with `vcpus[i]` vCPUs each.
    ///
    /// Errors: no set; lengths differ; counts not ascending; a set whose manifest gives
    /// another vCPU count than its place; sets under different accelerators or clocks, or of
    /// different matrices (digests); a set without native.
    pub fn new(name: &str, vcpus: &[u32], runs: &[Run]) -> Result<Scaling> {
        if runs.is_empty() || runs.len() != vcpus.len() {
            bail!(
                "scaling run {name}: {} result sets for {} vCPU counts",
                runs.len(),
                vcpus.len()
            );
        }
        if vcpus.windows(2).any(|w| w[0] >= w[1]) {
            bail!("scaling run {name}: vCPU counts {vcpus:?} are not ascending");
        }
        let first = &runs[0].manifest;
        for (&n, run) in vcpus.iter().zip(runs) {
            let m = &run.manifest;
            if m.guest.vcpus != n {
                bail!(
                    "{}: the set for {n} vCPU(s) ran with {} (manifest guest.vcpus)",
                    run.dir.display(),
                    m.guest.vcpus
                );
            }
            ensure_comparable(&runs[0], run)?;
            if !first.matrix_digest.is_empty()
                && !m.matrix_digest.is_empty()
                && first.matrix_digest != m.matrix_digest
            {
                bail!(
                    "scaling run {name}: runs {} and {} measured different matrices (digests {} and {})",
                    first.run_id,
                    m.run_id,
                    first.matrix_digest,
                    m.matrix_digest
                );
            }
        }
        let matrices = runs
            .iter()
            .map(Matrix::from_run)
            .collect::<Result<Vec<_>>>()?;
        let mut modes: Vec<String> = Vec::new();
        for mode in matrices.iter().flat_map(|m| &m.modes) {
            if !modes.contains(mode) {
                modes.push(mode.clone());
            }
        }
        let native = modes
            .iter()
            .position(|m| m == kdbt_harness::store::NATIVE_MODE)
            .expect("every matrix has native");
        let mut keys: Vec<(BenchKey, String)> = Vec::new();
        for row in matrices.iter().flat_map(|m| &m.rows) {
            if !keys.iter().any(|(k, _)| *k == row.key) {
                keys.push((row.key.clone(), row.label.clone()));
            }
        }
        keys.sort_by_key(|(k, _)| k.suite);

        let mut rows = Vec::new();
        for (key, label) in keys {
            let matching = |m: &Matrix| m.rows.iter().find(|r| r.key == key).cloned();
            // The unit and direction from any set that measured the row.
            let kind = matrices
                .iter()
                .filter_map(matching)
                .find_map(|r| Some((r.unit.clone(), r.better?)));
            let (conversion, unit) = match kind {
                Some((unit, better)) => match Throughput::of(&unit, better) {
                    Some(t) => t,
                    None => continue,
                },
                // Only failures: no throughput, but the failures still show.
                None => (Throughput::AsIs, String::new()),
            };
            let to = |v| conversion.apply(v);
            let points = matrices
                .iter()
                .map(|m| {
                    let row = matching(m);
                    modes
                        .iter()
                        .map(|mode| {
                            let (Some(row), Some(i)) =
                                (&row, m.modes.iter().position(|x| x == mode))
                            else {
                                return Point::Missing;
                            };
                            match &row.cells[i] {
                                Cell::Measured { summary, failures } => {
                                    let (a, b) = (to(summary.q1), to(summary.q3));
                                    Point::Measured {
                                        throughput: to(summary.median),
                                        iqr: (a.min(b), a.max(b)),
                                        slowdown: (i != m.native)
                                            .then(|| m.slowdown(row, i))
                                            .flatten(),
                                        failures: failures.clone(),
                                    }
                                }
                                Cell::Failed(f) => Point::Failed(f.clone()),
                                Cell::Missing => Point::Missing,
                            }
                        })
                        .collect()
                })
                .collect();
            rows.push(ScalingRow {
                key,
                label,
                unit,
                points,
            });
        }
        Ok(Scaling {
            name: name.to_owned(),
            accelerator: first.accelerator,
            clock: first.clock,
            vcpus: vcpus.to_vec(),
            run_ids: runs.iter().map(|r| r.manifest.run_id.to_string()).collect(),
            modes,
            native,
            rows,
        })
    }

    /// What the x axis means under this run's accelerator and clock, in one sentence.
    pub fn caveat(&self) -> &'static str {
        match (self.accelerator, self.clock) {
            (Accelerator::Tcg, Clock::Icount) => {
                "TCG, one host thread (icount): throughput here is guest instructions per \
                 operation as vCPUs are added, not parallel speed-up."
            }
            (Accelerator::Tcg, Clock::Wall) => {
                "TCG, one host thread (wall clock): the vCPUs take turns on one host thread, \
                 so throughput here is not parallel speed-up."
            }
            (Accelerator::Kvm, _) => {
                "KVM: each vCPU is a host thread, so throughput here can include parallel \
                 speed-up, as far as the host's cores allow."
            }
        }
    }
}

fn vcpu_heading(n: u32) -> String {
    match n {
        1 => "1 vCPU".to_owned(),
        n => format!("{n} vCPUs"),
    }
}

/// `scaling.md`: a table per suite, a row per benchmark and mode, a column per vCPU count.
pub fn markdown(s: &Scaling, runs: &[Run]) -> String {
    let mut out = String::new();
    let mut notes = Footnotes::default();
    let _ = writeln!(out, "# kdbt scaling: run {}\n", s.name);
    let clock = match s.clock {
        Clock::Icount => "icount (1 ns of guest time = 1 guest instruction)",
        Clock::Wall => "wall",
    };
    let _ = writeln!(out, "- Accelerator {}, clock {clock}", s.accelerator);
    for ((n, id), run) in s.vcpus.iter().zip(&s.run_ids).zip(runs) {
        let m = &run.manifest;
        let dirty = if m.git.dirty { " (dirty)" } else { "" };
        let _ = writeln!(
            out,
            "- {}: `{}/`, run {id}, guest kernel {} (config {}), {} MiB, git {}{dirty}, {} boot(s) × {} round(s)",
            vcpu_heading(*n),
            kdbt_harness::scaling::sub_dir(*n),
            m.guest.kernel_release,
            m.guest.config_hash,
            m.guest.memory_mib,
            m.git.revision,
            m.boots,
            m.reps,
        );
    }
    let _ = writeln!(out, "\n**{}**\n", s.caveat());
    let per_second = match s.clock {
        Clock::Icount => {
            " Under icount guest time advances 1 ns per instruction of any vCPU (and jumps \
             ahead while all of them idle), so ops/s is operations per 10⁹ guest instructions."
        }
        Clock::Wall => "",
    };
    let _ = writeln!(
        out,
        "Each cell is the throughput from the median of the cell's samples: the benchmark's \
         own unit where higher is better ↑, operations per second of guest time where it \
         measures a latency (10⁶ / median µs).{per_second} In parentheses, the slowdown versus \
         native in the same result set (same boots) at that vCPU count, from medians as in \
         each set's `table.md`, so 1.00× is native speed and more is slower. Ratios are never \
         taken between vCPU counts.\n"
    );

    let mut suites: Vec<_> = s.rows.iter().map(|r| r.key.suite).collect();
    suites.dedup();
    for suite in suites {
        let _ = writeln!(out, "## {suite}\n");
        let mut head = String::from("| Benchmark | Throughput | Mode |");
        let mut rule = String::from("|---|---|---|");
        for &n in &s.vcpus {
            let _ = write!(head, " {} |", vcpu_heading(n));
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{head}\n{rule}");
        for row in s.rows.iter().filter(|r| r.key.suite == suite) {
            for (mode, name) in s.modes.iter().enumerate() {
                let (label, unit) = match mode {
                    0 => (md_cell(&row.label), md_cell(&format!("{} ↑", row.unit))),
                    _ => (String::new(), String::new()),
                };
                let _ = write!(out, "| {label} | {unit} | {} |", md_cell(name));
                for (set, &n) in s.vcpus.iter().enumerate() {
                    let text = point_text(s, row, set, mode, n, &mut notes);
                    let _ = write!(out, " {} |", md_cell(&text));
                }
                out.push('\n');
            }
        }
        out.push('\n');
    }
    let rendered = notes.render();
    if !rendered.is_empty() {
        let _ = writeln!(out, "## Notes\n\n{rendered}");
    }
    out
}

fn point_text(
    s: &Scaling,
    row: &ScalingRow,
    set: usize,
    mode: usize,
    n: u32,
    notes: &mut Footnotes,
) -> String {
    let at = format!(
        "{} at {} (`{}/`) on {}",
        s.modes[mode],
        vcpu_heading(n),
        kdbt_harness::scaling::sub_dir(n),
        row.label
    );
    match &row.points[set][mode] {
        Point::Measured {
            throughput,
            slowdown,
            failures,
            ..
        } => {
            let mut text = format::rate(*throughput);
            match slowdown {
                Some(f) => text.push_str(&format!(" ({})", format::factor(*f))),
                None if mode != s.native => text.push_str(" (no native baseline)"),
                None => {}
            }
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

/// Width and height of one panel.
const PANEL: (u32, u32) = (380, 400);
/// Panels in a row of the chart, at most.
const COLUMNS: usize = 4;
/// Room for the title, the caveat and the legend.
const TOP: u32 = 124;
const MIN_WIDTH: u32 = 1100;

/// The scaling chart: a panel per benchmark with a measured point.
pub(crate) struct ScalingChart<'a> {
    scaling: &'a Scaling,
    rows: Vec<&'a ScalingRow>,
}

impl<'a> ScalingChart<'a> {
    /// The chart of `scaling`; `None` when no benchmark has a measured point.
    pub(crate) fn new(scaling: &'a Scaling) -> Option<ScalingChart<'a>> {
        let rows: Vec<&ScalingRow> = scaling
            .rows
            .iter()
            .filter(|r| {
                r.points
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, Point::Measured { .. }))
            })
            .collect();
        (!rows.is_empty()).then_some(ScalingChart { scaling, rows })
    }

    fn grid(&self) -> (usize, usize) {
        let columns = self.rows.len().min(COLUMNS);
        (self.rows.len().div_ceil(columns), columns)
    }
}

impl Figure for ScalingChart<'_> {
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
        let s = self.scaling;
        let (top, body) = root.split_vertically(TOP);
        top.draw(&Text::new(
            format!(
                "Throughput vs vCPUs, scaling run {} ({}, clock {})",
                s.name, s.accelerator, s.clock
            ),
            (20, 14),
            (FONT, 22).into_font(),
        ))?;
        top.draw(&Text::new(
            s.caveat().to_owned(),
            (20, 48),
            (FONT, 16).into_font(),
        ))?;
        let entries: Vec<(String, RGBColor)> = s
            .modes
            .iter()
            .enumerate()
            .map(|(mode, name)| {
                let failed = self.rows.iter().any(|r| {
                    r.points
                        .iter()
                        .any(|set| matches!(set[mode], Point::Failed(_)))
                });
                let name = match failed {
                    true => format!("{name} (failed somewhere: × on the axis, see scaling.md)"),
                    false => name.clone(),
                };
                (name, mode_color(mode, s.native))
            })
            .collect();
        legend(&top, 82, &entries)?;
        let areas = body.split_evenly(self.grid());
        for (row, area) in self.rows.iter().zip(&areas) {
            draw_panel(s, row, area)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    s: &Scaling,
    row: &ScalingRow,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let xs: Vec<f64> = s.vcpus.iter().map(|&n| f64::from(n).log2()).collect();
    let (lo, hi) = (xs[0], xs[xs.len() - 1]);
    let y_top = row
        .points
        .iter()
        .flatten()
        .filter_map(|p| match p {
            Point::Measured {
                throughput, iqr, ..
            } => Some(throughput.max(iqr.1)),
            _ => None,
        })
        .fold(0.0, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.12 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(&row.label, (FONT, 17))
        .margin_left(8)
        .margin_right(20)
        .margin_top(8)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            KeyedAxis::new((lo - 0.5)..(hi + 0.5), xs.clone()),
            0.0..y_max,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format::count(x.exp2().round()))
        .y_label_formatter(&|y| format::rate(*y))
        .x_label_style((FONT, 14))
        .y_label_style((FONT, 14))
        .x_desc("vCPUs, log scale")
        .y_desc(format!("{} ↑ (median, IQR bars)", row.unit))
        .axis_desc_style((FONT, 14))
        .max_light_lines(1)
        .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .draw()?;

    // Modes at the same count are nudged apart so their bars stay visible.
    let k = s.modes.len() as f64;
    for mode in 0..s.modes.len() {
        let dx = (mode as f64 - (k - 1.0) / 2.0) * 0.03;
        let color = mode_color(mode, s.native);
        let measured: Vec<(f64, f64, (f64, f64))> = xs
            .iter()
            .zip(&row.points)
            .filter_map(|(&x, set)| match &set[mode] {
                Point::Measured {
                    throughput, iqr, ..
                } => Some((x + dx, *throughput, *iqr)),
                _ => None,
            })
            .collect();
        let pts: Vec<(f64, f64)> = measured.iter().map(|&(x, y, _)| (x, y)).collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(measured.iter().map(|&(x, y, (q_lo, q_hi))| {
            ErrorBar::new_vertical(x, q_lo, y, q_hi, color.stroke_width(1), 8)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::Summary;

    #[test]
    fn a_latency_becomes_operations_per_second_and_a_rate_stays() {
        let (to, unit) = Throughput::of("us", Better::Lower).unwrap();
        assert_eq!((to, unit.as_str()), (Throughput::PerOp(1e-6), "ops/s"));
        assert_eq!(to.apply(2.0), 500_000.0);
        let (to, unit) = Throughput::of("req/s", Better::Higher).unwrap();
        assert_eq!((unit.as_str(), to.apply(812.5)), ("req/s", 812.5));
        assert!(Throughput::of("KB", Better::Lower).is_none());
    }

    #[test]
    fn quartiles_of_a_latency_swap_ends_as_throughput() {
        let s = Summary::of(&[1.0, 2.0, 4.0]).unwrap();
        let (to, _) = Throughput::of("us", Better::Lower).unwrap();
        let (a, b) = (to.apply(s.q1), to.apply(s.q3));
        assert_eq!((a.min(b), a.max(b)), (1e6 / 3.0, 1e6 / 1.5));
    }
}
