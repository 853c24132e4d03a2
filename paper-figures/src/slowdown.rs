//! `slowdown.svg` / `slowdown.png`: grouped bars of slowdown versus native, one group per
//! benchmark, one bar per translated mode, with a dashed line at 1 (native speed). Whiskers
//! span the interquartile range of the mode's samples against the native median.
//!
//! Bars run horizontally so that benchmark names read without rotation. A bar that cannot be
//! drawn says why in its place ("failed", "not run", "no native baseline").

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::chart::{legend, mode_color, Figure, KeyedAxis, FONT};
use crate::format;
use crate::matrix::{Cell, Matrix};

const WIDTH: u32 = 1100;
const TOP: u32 = 96;
const BOTTOM: u32 = 70;

/// The slowdown chart of one run.
pub(crate) struct SlowdownChart<'a> {
    matrix: &'a Matrix,
    modes: Vec<usize>,
    title: String,
}

impl<'a> SlowdownChart<'a> {
    /// The chart of `matrix`, every translated mode; `None` when there is nothing to compare
    /// (no translated mode or no benchmark).
    pub(crate) fn new(matrix: &'a Matrix) -> Option<SlowdownChart<'a>> {
        let modes: Vec<usize> = matrix.translated_modes().collect();
        Self::of_modes(matrix, modes, "Slowdown vs native")
    }

    /// The chart of `modes` (indices into the matrix's modes) only, titled `title`.
    pub(crate) fn of_modes(
        matrix: &'a Matrix,
        modes: Vec<usize>,
        title: &str,
    ) -> Option<SlowdownChart<'a>> {
        (!modes.is_empty() && !matrix.rows.is_empty()).then(|| SlowdownChart {
            matrix,
            modes,
            title: title.to_owned(),
        })
    }

    fn row_px(&self) -> u32 {
        (16 * self.modes.len() as u32 + 14).max(30)
    }

    fn x_max(&self) -> f64 {
        let largest = self
            .matrix
            .rows
            .iter()
            .flat_map(|r| {
                self.modes
                    .iter()
                    .filter_map(|&m| self.matrix.slowdown(r, m))
            })
            .fold(1.0, f64::max);
        // Room for the value printed after the longest bar, rounded up to a half.
        ((largest * 1.18).max(1.5) * 2.0).ceil() / 2.0
    }
}

impl Figure for SlowdownChart<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.matrix.rows.len() as u32;
        (WIDTH, TOP + rows * self.row_px() + BOTTOM)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let m = self.matrix;
        let (top, body) = root.split_vertically(TOP);
        top.draw(&Text::new(
            format!(
                "{}, run {} ({}, clock {})",
                self.title, m.run_id, m.accelerator, m.clock
            ),
            (20, 14),
            (FONT, 22).into_font(),
        ))?;
        let entries: Vec<(String, RGBColor)> = self
            .modes
            .iter()
            .map(|&i| (m.modes[i].clone(), mode_color(i, m.native)))
            .collect();
        legend(&top, 56, &entries)?;

        let labels: Vec<String> = m
            .rows
            .iter()
            .map(|r| format!("{} · {}", r.key.suite, r.label))
            .collect();
        let label_style = TextStyle::from((FONT, 15).into_font());
        let mut label_w = 0;
        for l in &labels {
            label_w = label_w.max(body.estimate_text_size(l, &label_style)?.0);
        }

        let n = m.rows.len();
        let nf = n as f64;
        // Row i occupies y in [n-i-1, n-i], so the first benchmark is at the top.
        let centers: Vec<f64> = (0..n).map(|i| nf - i as f64 - 0.5).collect();
        let x_max = self.x_max();
        let mut chart = ChartBuilder::on(&body)
            .margin_left(12)
            .margin_right(28)
            .margin_top(6)
            .x_label_area_size(BOTTOM - 14)
            .y_label_area_size(label_w + 16)
            .build_cartesian_2d(0.0..x_max, KeyedAxis::new(0.0..nf, centers))?;
        let label_of = |y: &f64| {
            let i = (nf - y - 0.5).round();
            labels.get(i.max(0.0) as usize).cloned().unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&label_of)
            .y_label_style(label_style.clone())
            .x_label_formatter(&|x| format!("{x:.1}×"))
            .x_label_style((FONT, 14))
            .x_desc("slowdown vs native (medians; 1.0× = native; whiskers: interquartile range)")
            .axis_desc_style((FONT, 15))
            .max_light_lines(1)
            .light_line_style(RGBColor(0xF2, 0xF2, 0xF2))
            .bold_line_style(RGBColor(0xDD, 0xDD, 0xDD))
            .draw()?;

        // Faint rules between suites.
        for i in 1..n {
            if m.rows[i].key.suite != m.rows[i - 1].key.suite {
                let y = nf - i as f64;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y), (x_max, y)],
                    RGBColor(0x99, 0x99, 0x99).stroke_width(1),
                )))?;
            }
        }

        let k = self.modes.len() as f64;
        let band = 0.8 / k;
        let value_style =
            TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, row) in m.rows.iter().enumerate() {
            let row_top = nf - i as f64 - 0.1;
            for (j, &mode) in self.modes.iter().enumerate() {
                let y1 = row_top - j as f64 * band;
                let y0 = y1 - band;
                let mid = (y0 + y1) / 2.0;
                let color = mode_color(mode, m.native);
                let note = match (m.slowdown(row, mode), &row.cells[mode]) {
                    (Some(s), _) => {
                        chart.draw_series(std::iter::once(Rectangle::new(
                            [(0.0, y0), (s, y1)],
                            color.filled(),
                        )))?;
                        let mut end = s;
                        let mut text = format::factor(s);
                        if let Some((lo, hi)) = m.slowdown_iqr(row, mode) {
                            // A whisker past the axis is cut there and its end printed.
                            let shown = hi.min(x_max);
                            chart.draw_series(std::iter::once(ErrorBar::new_horizontal(
                                mid,
                                lo,
                                s,
                                shown,
                                BLACK.stroke_width(1),
                                6,
                            )))?;
                            if hi > x_max {
                                text = format!("{text} (Q3 {})", format::factor(hi));
                            }
                            end = end.max(shown);
                        }
                        (end.min(x_max / 1.18), text)
                    }
                    (None, Cell::Failed(_)) => (0.0, "failed (see table.md)".to_owned()),
                    (None, Cell::Missing) => (0.0, "not run".to_owned()),
                    (None, Cell::Measured { .. }) => (0.0, "no native baseline".to_owned()),
                };
                let text_color = if note.0 > 0.0 { BLACK } else { color };
                chart.draw_series(std::iter::once(
                    EmptyElement::at((note.0, mid))
                        + Text::new(note.1, (5, 0), value_style.color(&text_color)),
                ))?;
            }
        }

        chart.draw_series(DashedLineSeries::new(
            vec![(1.0, 0.0), (1.0, nf)],
            6,
            4,
            BLACK.stroke_width(2),
        ))?;
        Ok(())
    }
}
