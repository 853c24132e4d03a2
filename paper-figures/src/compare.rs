//! `compare.md`: two runs side by side, before → after, per benchmark and mode.
//!
//! Slowdowns are computed within each run (against that run's own native samples) and only
//! then compared, so the two runs need not share boots, only accelerator and clock.

use std::fmt::Write;

use anyhow::Result;
use kdbt_harness::store::{Run, Suite};

use crate::format::{self, md_cell, Footnotes};
use crate::load::ensure_comparable;
use crate::matrix::{BenchKey, Cell, GeoMean, Matrix, Row};
use crate::table::describe;

/// What one run says about one benchmark in one mode.
enum Entry {
    Number(f64, String),
    Word(String),
}

/// The comparison of `before` (matrix `b`) with `after` (matrix `a`). Errors if the runs
/// used different accelerators or clocks.
pub fn markdown(before: &Run, b: &Matrix, after: &Run, a: &Matrix) -> Result<String> {
    ensure_comparable(before, after)?;
    let mut out = String::new();
    let mut notes = Footnotes::default();
    let (bm, am) = (&before.manifest, &after.manifest);
    let _ = writeln!(out, "# kdbt comparison: {} → {}\n", bm.run_id, am.run_id);
    let _ = writeln!(
        out,
        "- Both: accelerator {}, clock {}\n- Before: run {}, git {}{}, guest {} (config {})\n- After: run {}, git {}{}, guest {} (config {})\n",
        am.accelerator,
        am.clock,
        bm.run_id,
        bm.git.revision,
        if bm.git.dirty { " (dirty)" } else { "" },
        bm.guest.kernel_release,
        bm.guest.config_hash,
        am.run_id,
        am.git.revision,
        if am.git.dirty { " (dirty)" } else { "" },
        am.guest.kernel_release,
        am.guest.config_hash,
    );
    if bm.guest.kernel_release != am.guest.kernel_release
        || bm.guest.config_hash != am.guest.config_hash
    {
        let _ = writeln!(
            out,
            "**The guest kernels differ**: part of any change may be theirs.\n"
        );
    }
    if bm.host.cpu_model != am.host.cpu_model {
        let _ = writeln!(
            out,
            "**The hosts differ** ({} → {}): native numbers move with the host.\n",
            bm.host.cpu_model, am.host.cpu_model
        );
    }
    let _ = writeln!(
        out,
        "Each cell reads before → after (relative change). **native** compares medians in the \
         benchmark's unit; other modes compare slowdowns versus native, each computed within \
         its own run, so a negative change in a slowdown is an improvement.\n"
    );

    let modes = union(a.modes.iter(), b.modes.iter());
    let keys = union(a.rows.iter().map(|r| &r.key), b.rows.iter().map(|r| &r.key));
    for suite in Suite::ALL {
        let suite_keys: Vec<&BenchKey> =
            keys.iter().copied().filter(|k| k.suite == suite).collect();
        if suite_keys.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {suite}\n");
        let _ = write!(out, "| Benchmark |");
        for mode in &modes {
            let _ = write!(out, " {} |", md_cell(mode));
        }
        let _ = writeln!(out, "\n|---|{}", "---:|".repeat(modes.len()));
        for key in suite_keys {
            let _ = write!(out, "| {} |", md_cell(&key.label()));
            for mode in &modes {
                let was = entry(b, key, mode, "before", &mut notes);
                let now = entry(a, key, mode, "after", &mut notes);
                let _ = write!(out, " {} |", md_cell(&pair(was, now)));
            }
            out.push('\n');
        }
        let _ = write!(out, "| **geometric mean** |");
        for mode in &modes {
            let was = geomean_entry(b, suite, mode);
            let now = geomean_entry(a, suite, mode);
            let _ = write!(out, " {} |", md_cell(&pair(was, now)));
        }
        out.push_str("\n\n");
    }
    let rendered = notes.render();
    if !rendered.is_empty() {
        let _ = writeln!(out, "## Notes\n\n{rendered}");
    }
    Ok(out)
}

fn union<'a, T: PartialEq + ?Sized + 'a>(
    first: impl Iterator<Item = &'a T>,
    second: impl Iterator<Item = &'a T>,
) -> Vec<&'a T> {
    let mut all: Vec<&T> = Vec::new();
    for x in first.chain(second) {
        if !all.contains(&x) {
            all.push(x);
        }
    }
    all
}

fn entry(m: &Matrix, key: &BenchKey, mode: &str, which: &str, notes: &mut Footnotes) -> Entry {
    let Some(mode_i) = m.modes.iter().position(|x| x == mode) else {
        return Entry::Word("not run".into());
    };
    let Some(row) = m.rows.iter().find(|r| r.key == *key) else {
        return Entry::Word("not run".into());
    };
    match &row.cells[mode_i] {
        Cell::Measured { summary, .. } if mode_i == m.native => {
            Entry::Number(summary.median, Matrix::absolute(row, summary))
        }
        Cell::Measured { .. } => match m.slowdown(row, mode_i) {
            Some(s) => Entry::Number(s, format::factor(s)),
            None => Entry::Word("no native baseline".into()),
        },
        Cell::Failed(failures) => {
            let note = format!(
                "{which} ({}), {mode} on {}: {}",
                m.run_id,
                label(row),
                describe(failures)
            );
            Entry::Word(format!("failed {}", notes.mark(note)))
        }
        Cell::Missing => Entry::Word("not run".into()),
    }
}

fn label(row: &Row) -> String {
    row.label.clone()
}

fn geomean_entry(m: &Matrix, suite: Suite, mode: &str) -> Entry {
    let Some(mode_i) = m.modes.iter().position(|x| x == mode) else {
        return Entry::Word("not run".into());
    };
    if mode_i == m.native {
        return Entry::Word("baseline".into());
    }
    match m.geomean(suite, mode_i) {
        GeoMean {
            value: Some(v),
            used,
            of,
        } if used == of => Entry::Number(v, format::factor(v)),
        GeoMean {
            value: Some(v),
            used,
            of,
        } => Entry::Number(v, format!("{} ({used} of {of})", format::factor(v))),
        GeoMean { value: None, .. } => Entry::Word("n/a".into()),
    }
}

fn pair(was: Entry, now: Entry) -> String {
    match (was, now) {
        (Entry::Word(w), Entry::Word(n)) if w == n => w,
        (Entry::Number(x, w), Entry::Number(y, n)) if x > 0.0 => {
            format!("{w} → {n} ({})", format::change(y / x - 1.0))
        }
        (Entry::Number(_, w) | Entry::Word(w), Entry::Number(_, n) | Entry::Word(n)) => {
            format!("{w} → {n}")
        }
    }
}
