//! What every chart shares: the font, the colours, and drawing one figure as SVG and PNG.

use std::env;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;

/// Font family name charts use; it is registered from [`font_path`].
pub(crate) const FONT: &str = "sans-serif";

/// Environment variable naming a TrueType font to use instead of [`DEFAULT_FONT`].
pub const FONT_ENV: &str = "KDBT_FIGURES_FONT";

/// DejaVu Sans as Debian's `fonts-dejavu-core` installs it.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// The TrueType font charts are drawn with: `$KDBT_FIGURES_FONT` if set, else [`DEFAULT_FONT`].
pub fn font_path() -> PathBuf {
    env::var_os(FONT_ENV).map_or_else(|| PathBuf::from(DEFAULT_FONT), PathBuf::from)
}

// plotters lays out text (also for SVG, to size label areas) with fonts registered once per
// process from static bytes; the file is read at run time so no font is built into the binary.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let path = font_path();
            let bytes = fs::read(&path).map_err(|e| {
                format!(
                    "reading font {}: {e} (install Debian's fonts-dejavu-core, or set {FONT_ENV} to a .ttf file)",
                    path.display()
                )
            })?;
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies; yellow last
/// because it is faint on white.
const PALETTE: [RGBColor; 7] = [
    RGBColor(0xE6, 0x9F, 0x00),
    RGBColor(0x00, 0x72, 0xB2),
    RGBColor(0x00, 0x9E, 0x73),
    RGBColor(0xD5, 0x5E, 0x00),
    RGBColor(0x56, 0xB4, 0xE9),
    RGBColor(0xCC, 0x79, 0xA7),
    RGBColor(0xF0, 0xE4, 0x42),
];

/// The colour of mode `mode` of a run whose native mode has index `native`: black for native,
/// the palette in order for the others, so a mode has the same colour on every chart of a run.
pub(crate) fn mode_color(mode: usize, native: usize) -> RGBColor {
    if mode == native {
        BLACK
    } else {
        let rank = if mode > native { mode - 1 } else { mode };
        PALETTE[rank % PALETTE.len()]
    }
}

/// A chart that can be drawn on any plotters backend.
pub(crate) trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the chart on `root`, already filled white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Draws `figure` to `svg` and to `png`.
pub(crate) fn write_svg_png(figure: &impl Figure, svg: &Path, png: &Path) -> Result<()> {
    ensure_font()?;
    {
        let root = SVGBackend::new(svg, figure.size()).into_drawing_area();
        root.fill(&WHITE)?;
        figure.draw(&root)?;
        root.present()
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    let root = BitMapBackend::new(png, figure.size()).into_drawing_area();
    root.fill(&WHITE)?;
    figure.draw(&root)?;
    root.present()
        .with_context(|| format!("writing {}", png.display()))?;
    Ok(())
}

/// Draws a legend of coloured squares and names from the left edge of `area`, wrapping to a new
/// line where it would run past the right edge.
pub(crate) fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[(String, RGBColor)],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let style = TextStyle::from((FONT, 15).into_font()).color(&BLACK);
    let width = area.dim_in_pixel().0 as i32;
    let (mut x, mut y) = (20, top);
    for (name, color) in entries {
        let text_w = area.estimate_text_size(name, &style)?.0 as i32;
        if x + 22 + text_w > width - 20 && x > 20 {
            x = 20;
            y += 24;
        }
        area.draw(&Rectangle::new(
            [(x, y + 2), (x + 14, y + 16)],
            color.filled(),
        ))?;
        area.draw(&Text::new(name.clone(), (x + 20, y + 2), style.clone()))?;
        x += 20 + text_w + 28;
    }
    Ok(())
}

/// A linear axis whose ticks and labels sit exactly at the given values (benchmark rows,
/// concurrency levels) rather than at round numbers.
pub(crate) struct KeyedAxis {
    range: Range<f64>,
    keys: Vec<f64>,
}

impl KeyedAxis {
    pub(crate) fn new(range: Range<f64>, keys: Vec<f64>) -> KeyedAxis {
        KeyedAxis { range, keys }
    }
}

impl Ranged for KeyedAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        self.keys.clone()
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}
