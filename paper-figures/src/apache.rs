//! `apache.svg` / `apache.png`: Apache throughput (requests/s, median with interquartile
//! range) against `ab` concurrency, concurrency on a log₂ axis: one panel per served file
//! (size, keep-alive), one line per mode in each, so a line never joins different files.
//!
//! Drawn from the apache suite's rows that have a numeric `concurrency` parameter and the
//! metric [`METRIC`]. A mode that failed at a concurrency level gets a cross on the axis there
//! and says so in the legend.

use anyhow::Result;
use kdbt_harness::store::Suite;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::chart::{legend, mode_color, Figure, KeyedAxis, FONT};
use crate::format;
use crate::matrix::{Cell, Matrix, Summary};

/// The metric the chart plots.
pub const METRIC: &str = "requests_per_sec";
/// The parameter giving the number of concurrent clients.
pub const CONCURRENCY: &str = "concurrency";
/// Parameters that vary along a line rather than between panels.
const ALONG_A_LINE: &[&str] = &[CONCURRENCY, "requests"];

/// Width of one panel, and the figure's height.
const PANEL: (u32, u32) = (520, 640);
const TOP: u32 = 96;
/// Room for the title and the legend.
const MIN_WIDTH: u32 = 1000;

struct Line {
    mode: usize,
    points: Vec<(f64, Summary)>,
    failed_at: Vec<f64>,
}

/// One served file: its label and a line per mode.
struct Panel {
    title: String,
    levels: Vec<f64>,
    lines: Vec<Line>,
}

/// The Apache chart of one run.
pub(crate) struct ApacheChart<'a> {
    matrix: &'a Matrix,
    benchmark: String,
    panels: Vec<Panel>,
}

/// A panel's title from the parameters that stay fixed along its lines.
fn panel_title(params: &kdbt_harness::store::Params) -> String {
    let mut parts = Vec::new();
    for (k, v) in params.iter().filter(|(k, _)| !ALONG_A_LINE.contains(k)) {
        let text = match (k, v.parse::<f64>()) {
            ("file_bytes", Ok(b)) if b >= 1024.0 => {
                format!("{} KiB file", format::count(b / 1024.0))
            }
            ("file_bytes", Ok(b)) => format!("{} B file", format::count(b)),
            _ => format!("{k} {v}"),
        };
        parts.push(text);
    }
    parts.join(", ")
}

impl<'a> ApacheChart<'a> {
    /// The chart of `matrix`; `None` when the run has no Apache throughput rows with a
    /// concurrency level.
    pub(crate) fn new(matrix: &'a Matrix) -> Option<ApacheChart<'a>> {
        let rows: Vec<_> = matrix
            .rows
            .iter()
            .filter(|r| r.key.suite == Suite::Apache)
            .filter(|r| r.key.metric == METRIC || r.key.metric.is_empty())
            .filter_map(|r| Some((r.key.params.get_f64(CONCURRENCY)?, r)))
            .filter(|(c, _)| *c > 0.0)
            .collect();
        let benchmark = rows
            .iter()
            .find(|(_, r)| r.key.metric == METRIC)?
            .1
            .key
            .benchmark
            .clone();
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|(_, r)| r.key.benchmark == benchmark)
            .collect();

        // Panels by file size, then by title.
        let mut titles: Vec<(f64, String)> = rows
            .iter()
            .map(|(_, r)| {
                let bytes = r.key.params.get_f64("file_bytes").unwrap_or(0.0);
                (bytes, panel_title(&r.key.params))
            })
            .collect();
        titles.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        titles.dedup();
        let panels = titles
            .into_iter()
            .map(|(_, title)| {
                let rows: Vec<_> = rows
                    .iter()
                    .filter(|(_, r)| panel_title(&r.key.params) == title)
                    .collect();
                let mut levels: Vec<f64> = rows.iter().map(|(c, _)| *c).collect();
                levels.sort_by(f64::total_cmp);
                levels.dedup();
                let lines = (0..matrix.modes.len())
                    .map(|mode| {
                        let mut line = Line {
                            mode,
                            points: Vec::new(),
                            failed_at: Vec::new(),
                        };
                        for (c, row) in &rows {
                            match &row.cells[mode] {
                                Cell::Measured { summary, .. } => line.points.push((*c, *summary)),
                                Cell::Failed(_) => line.failed_at.push(*c),
                                Cell::Missing => {}
                            }
                        }
                        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        line
                    })
                    .collect();
                Panel {
                    title,
                    levels,
                    lines,
                }
            })
            .collect();
        Some(ApacheChart {
            matrix,
            benchmark,
            panels,
        })
    }
}

impl Figure for ApacheChart<'_> {
    fn size(&self) -> (u32, u32) {
        ((PANEL.0 * self.panels.len() as u32).max(MIN_WIDTH), PANEL.1)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let m = self.matrix;
        let (top, body) = root.split_vertically(TOP);
        top.draw(&Text::new(
            format!(
                "Apache ({}): requests/s vs concurrency, run {} ({}, clock {})",
                self.benchmark, m.run_id, m.accelerator, m.clock
            ),
            (20, 14),
            (FONT, 22).into_font(),
        ))?;
        let mut entries: Vec<(String, RGBColor)> = Vec::new();
        for mode in 0..m.modes.len() {
            let mut name = m.modes[mode].clone();
            let one_panel = self.panels.len() == 1;
            let failed: Vec<String> = self
                .panels
                .iter()
                .flat_map(|p| {
                    p.lines[mode]
                        .failed_at
                        .iter()
                        .map(move |c| match one_panel {
                            true => format::count(*c),
                            false => format!("{} ({})", format::count(*c), p.title),
                        })
                })
                .collect();
            if !failed.is_empty() {
                name.push_str(&format!(" (failed at {})", failed.join(", ")));
            }
            entries.push((name, mode_color(mode, m.native)));
        }
        legend(&top, 56, &entries)?;
        let areas = body.split_evenly((1, self.panels.len().max(1)));
        for (panel, area) in self.panels.iter().zip(&areas) {
            draw_panel(m, panel, area)?;
        }
        Ok(())
    }
}

fn draw_panel<DB: DrawingBackend>(
    m: &Matrix,
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let log_levels: Vec<f64> = panel.levels.iter().map(|c| c.log2()).collect();
    let (lo, hi) = (log_levels[0], log_levels[log_levels.len() - 1]);
    let y_top = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|(_, s)| s.q3.max(s.median)))
        .fold(0.0, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.12 } else { 1.0 };

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 17))
        .margin_left(12)
        .margin_right(24)
        .margin_top(8)
        .x_label_area_size(56)
        .y_label_area_size(84)
        .build_cartesian_2d(
            KeyedAxis::new((lo - 0.5)..(hi + 0.5), log_levels),
            0.0..y_max,
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format::count(x.exp2().round()))
        .y_label_formatter(&|y| format::value(*y))
        .x_label_style((FONT, 14))
        .y_label_style((FONT, 14))
        .x_desc("concurrent clients (ab -c), log scale")
        .y_desc("requests/s (median; bars: interquartile range)")
        .axis_desc_style((FONT, 15))
        .max_light_lines(1)
        .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
        .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
        .draw()?;

    // Modes measured at the same level are nudged apart so their error bars stay visible.
    let k = panel.lines.len() as f64;
    for (j, line) in panel.lines.iter().enumerate() {
        let dx = (j as f64 - (k - 1.0) / 2.0) * 0.03;
        let color = mode_color(line.mode, m.native);
        let pts: Vec<(f64, f64)> = line
            .points
            .iter()
            .map(|(c, s)| (c.log2() + dx, s.median))
            .collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(line.points.iter().map(|(c, s)| {
            ErrorBar::new_vertical(
                c.log2() + dx,
                s.q1,
                s.median,
                s.q3,
                color.stroke_width(1),
                8,
            )
        }))?;
        chart.draw_series(
            line.failed_at
                .iter()
                .map(|c| Cross::new((c.log2() + dx, y_max * 0.02), 7, color.stroke_width(3))),
        )?;
    }
    Ok(())
}
