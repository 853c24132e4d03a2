//! The paper's tables and figures from kdbt result sets (`results/<run-id>/`, see
//! `kdbt_harness::store`).
//!
//! Per run: `table.md` (benchmarks × modes, native absolute and the rest as slowdowns, with
//! geometric means), `slowdown.svg`/`.png` (bars of slowdown versus native) and
//! `apache.svg`/`.png` (requests/s against concurrency); for a run with an ablation
//! (`plans/ablation.toml`) `ablation.md` and `ablation-<design>.svg`/`.png`; for a run whose
//! micro slots recorded kdbt's counters over their samples, `prof.md` (`plans/prof.toml`). For two runs also
//! `compare.md` (before → after). For a scaling run (`plans/scaling.toml`: one result set per
//! vCPU count), each set's figures and `scaling.md`, `scaling.svg`/`.png`. For an
//! instrumentation run (a plan with `functions`: one result set per function list), each set's
//! figures and `instrument.md`, `instrument.svg`/`.png` (slowdown of each way of counting
//! function entries against the number of functions counted, and the cost per entry). Ratios
//! are only ever taken within one run.

pub mod ablation;
pub mod apache;
mod chart;
pub mod compare;
pub mod format;
pub mod instrument;
pub mod load;
pub mod matrix;
pub mod prof;
pub mod scaling;
pub mod slowdown;
pub mod table;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kdbt_harness::store::Run;

pub use chart::{font_path, DEFAULT_FONT, FONT_ENV};

/// Name of the figures directory inside a run directory.
pub const FIGURES_DIR: &str = "figures";

/// Renders the tables and figures of `runs` (run directories) and returns the files written,
/// in the order written.
///
/// Per run, into `<run>/figures/`, or into `<out>/<run-id>/` when `out` is given:
/// `table.md`; `slowdown.svg` and `slowdown.png` when the run has a mode besides native;
/// `apache.svg` and `apache.png` when it has Apache requests/s rows with a `concurrency`
/// parameter. With exactly two runs, the first taken as before and the second as after,
/// also `compare.md`, into the second run's figures directory or into `<out>/`.
///
/// A scaling run's directory (`kdbt_harness::scaling`), given alone, renders each of its
/// result sets as above and then `scaling.md`, `scaling.svg` and `scaling.png` into its own
/// `figures/`, or into `<out>/<its name>/`. An instrumentation run's directory
/// (`kdbt_harness::instrument`, `funcs-<list>/` inside), given alone, likewise renders each
/// of its sets and then `instrument.md`, `instrument.svg` and `instrument.png`
/// ([`instrument`]).
///
/// Errors, before writing anything, if no run is given, if a run fails to load (naming the
/// file and line at fault), if a run has no native mode, if two runs to compare differ in
/// accelerator or clock, if a scaling or instrumentation run is given with others, or if its
/// sets do not go together ([`scaling::Scaling::new`], [`instrument::Instrument::new`]:
/// different modes, benchmarks, accelerators or clocks). Charts need a TrueType font (see
/// [`font_path`]); without it the tables are written and the error says which package to
/// install.
pub fn render(runs: &[PathBuf], out: Option<&Path>) -> Result<Vec<PathBuf>> {
    if runs.is_empty() {
        bail!("no run directory given");
    }
    for dir in runs {
        let alone = |kind: &str, sets: &str| {
            if runs.len() > 1 {
                bail!(
                    "{} is {kind} run: draw it alone, or give its result sets ({}/{sets})",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(())
        };
        if let Some(sets) = kdbt_harness::scaling::sets(dir)? {
            alone("a scaling", "vcpus-<n>")?;
            return render_scaling(dir, &sets, out);
        }
        if let Some(sets) = kdbt_harness::instrument::sets(dir)? {
            alone("an instrumentation", "funcs-<list>")?;
            return render_instrument(dir, &sets, out);
        }
    }
    render_loaded(&load::load_runs(runs)?, out)
}

/// The name of the run whose sets are in `parent` (its directory's), `fallback` without one.
fn parent_name(parent: &Path, fallback: &str) -> Result<String> {
    Ok(parent
        .canonicalize()
        .with_context(|| format!("{fallback} run {}", parent.display()))?
        .file_name()
        .map_or_else(|| fallback.to_owned(), |n| n.to_string_lossy().into_owned()))
}

/// Renders each of `runs` alone (its own figures), then creates the directory the figures of
/// their parent go in, `<parent>/figures/` or `<out>/<name>/`, and returns it with the files
/// written.
fn render_sets(
    parent: &Path,
    name: &str,
    runs: &[Run],
    out: Option<&Path>,
) -> Result<(PathBuf, Vec<PathBuf>)> {
    let mut written = Vec::new();
    for run in runs {
        written.extend(render_loaded(std::slice::from_ref(run), out)?);
    }
    let dir = out.map_or_else(|| parent.join(FIGURES_DIR), |out| out.join(name));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, written))
}

/// [`render`] of a scaling run in `parent` whose result sets are `sets`.
fn render_scaling(
    parent: &Path,
    sets: &[(u32, PathBuf)],
    out: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let (vcpus, dirs): (Vec<u32>, Vec<PathBuf>) = sets.iter().cloned().unzip();
    let runs = load::load_runs(&dirs)?;
    let name = parent_name(parent, "scaling")?;
    let scaling = scaling::Scaling::new(&name, &vcpus, &runs)?;
    let (dir, mut written) = render_sets(parent, &name, &runs, out)?;
    written.push(write(
        &dir.join("scaling.md"),
        &scaling::markdown(&scaling, &runs),
    )?);
    if let Some(fig) = scaling::ScalingChart::new(&scaling) {
        written.extend(draw(&fig, &dir, "scaling")?);
    }
    Ok(written)
}

/// [`render`] of an instrumentation run in `parent` whose result sets are `sets` (sub-directory
/// name, functions in its list, directory).
fn render_instrument(
    parent: &Path,
    sets: &[(String, usize, PathBuf)],
    out: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> = sets.iter().map(|(_, _, d)| d.clone()).collect();
    let lists: Vec<(String, usize)> = sets.iter().map(|(s, n, _)| (s.clone(), *n)).collect();
    let runs = load::load_runs(&dirs)?;
    let name = parent_name(parent, "instrumentation")?;
    let ins = instrument::Instrument::new(&name, &lists, &runs)?;
    let (dir, mut written) = render_sets(parent, &name, &runs, out)?;
    written.push(write(
        &dir.join("instrument.md"),
        &instrument::markdown(&ins, &runs),
    )?);
    if let Some(fig) = instrument::InstrumentChart::new(&ins) {
        written.extend(draw(&fig, &dir, "instrument")?);
    }
    Ok(written)
}

/// [`render`] of runs already loaded.
fn render_loaded(loaded: &[Run], out: Option<&Path>) -> Result<Vec<PathBuf>> {
    let matrices = loaded
        .iter()
        .map(matrix::Matrix::from_run)
        .collect::<Result<Vec<_>>>()?;
    let comparison = match (loaded, &matrices[..]) {
        ([before, after], [b, a]) => Some(compare::markdown(before, b, after, a)?),
        _ => None,
    };

    let dirs: Vec<PathBuf> = loaded
        .iter()
        .map(|run| match out {
            Some(out) => out.join(run.manifest.run_id.as_str()),
            None => run.dir.join(FIGURES_DIR),
        })
        .collect();
    let mut written = Vec::new();
    for ((run, m), dir) in loaded.iter().zip(&matrices).zip(&dirs) {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        written.push(write(&dir.join("table.md"), &table::markdown(run, m))?);
        if let Some(text) = ablation::markdown(m, &ablation::find(m)) {
            written.push(write(&dir.join("ablation.md"), &text)?);
        }
        if let Some(text) = prof::markdown(run) {
            written.push(write(&dir.join("prof.md"), &text)?);
        }
    }
    if let Some(text) = comparison {
        let dir = out.map_or_else(|| dirs[1].clone(), Path::to_path_buf);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        written.push(write(&dir.join("compare.md"), &text)?);
    }
    for (m, dir) in matrices.iter().zip(&dirs) {
        if let Some(fig) = slowdown::SlowdownChart::new(m) {
            written.extend(draw(&fig, dir, "slowdown")?);
        }
        if let Some(fig) = apache::ApacheChart::new(m) {
            written.extend(draw(&fig, dir, "apache")?);
        }
        for a in ablation::find(m) {
            let design = a.design(m).to_owned();
            let title = format!("Ablation of {design}: slowdown vs native");
            if let Some(fig) = slowdown::SlowdownChart::of_modes(m, a.modes(), &title) {
                written.extend(draw(&fig, dir, &format!("ablation-{design}"))?);
            }
        }
    }
    Ok(written)
}

fn write(path: &Path, text: &str) -> Result<PathBuf> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path.to_owned())
}

fn draw(fig: &impl chart::Figure, dir: &Path, name: &str) -> Result<[PathBuf; 2]> {
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    chart::write_svg_png(fig, &svg, &png)?;
    Ok([svg, png])
}
