//! The ablation study of a run whose modes remove a design's optimizations (`plans/ablation.toml`):
//! `ablation.md`, each optimization's contribution in geometric-mean slowdown points per
//! suite, and `ablation-<design>.svg`/`.png`, per benchmark the design with everything and with
//! each optimization removed.
//!
//! A design's ablation is found from the mode specs alone: its base mode (`fast`, with every
//! default), the modes that switch exactly one default off (`fast:no-chaining`), and any that
//! switch several off (`fast:no-chaining,no-jumptable,…`, shown as "all of them removed" when it
//! removes every optimization the single modes do).

use std::fmt::Write;

use crate::format::{self, md_cell};
use crate::matrix::Matrix;

/// One design's ablation in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ablation {
    /// The design's base mode (`fast`, `drk`): an index into the matrix's modes.
    pub base: usize,
    /// Each optimization removed alone: its name (`chaining`) and the mode's index.
    pub removed: Vec<(String, usize)>,
    /// Modes that remove several at once, with what they remove.
    pub combined: Vec<(Vec<String>, usize)>,
}

impl Ablation {
    /// The design's name.
    pub fn design<'m>(&self, m: &'m Matrix) -> &'m str {
        &m.modes[self.base]
    }

    /// Every mode of the ablation, the base first.
    pub fn modes(&self) -> Vec<usize> {
        let mut v = vec![self.base];
        v.extend(self.removed.iter().map(|r| r.1));
        v.extend(self.combined.iter().map(|c| c.1));
        v
    }
}

/// The ablations of `m`: one per base mode that has at least one mode removing an option.
pub fn find(m: &Matrix) -> Vec<Ablation> {
    let mut out = Vec::new();
    for (base, name) in m.modes.iter().enumerate() {
        if base == m.native || name.contains(':') {
            continue;
        }
        let mut a = Ablation {
            base,
            removed: Vec::new(),
            combined: Vec::new(),
        };
        for (i, mode) in m.modes.iter().enumerate() {
            let Some(options) = mode
                .strip_prefix(name.as_str())
                .and_then(|r| r.strip_prefix(':'))
            else {
                continue;
            };
            let removed: Option<Vec<String>> = options
                .split(',')
                .map(|o| o.strip_prefix("no-").map(str::to_owned))
                .collect();
            match removed {
                Some(r) if r.len() == 1 => a.removed.push((r[0].clone(), i)),
                Some(r) if r.len() > 1 => a.combined.push((r, i)),
                _ => {}
            }
        }
        if !a.removed.is_empty() || !a.combined.is_empty() {
            out.push(a);
        }
    }
    out
}

/// `ablation.md` for `ablations` of `m`; `None` when there are none.
pub fn markdown(m: &Matrix, ablations: &[Ablation]) -> Option<String> {
    if ablations.is_empty() {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Ablation: run {}\n\nEach optimization's contribution per suite: the geometric-mean \
         slowdown versus native with it removed, minus the design's with everything (in \
         slowdown points: +0.25× means removing it makes the suite a quarter of native time \
         slower). In brackets: the geometric mean with it removed. Per benchmark: \
         `table.md` and `ablation-<design>.svg`.\n",
        m.run_id
    );
    let suites = m.suites();
    for a in ablations {
        let _ = writeln!(out, "## {}\n", a.design(m));
        let _ = write!(out, "| Removed |");
        for s in &suites {
            let _ = write!(out, " {s} |");
        }
        let _ = writeln!(out, "\n|---|{}", "---:|".repeat(suites.len()));
        let _ = write!(out, "| nothing ({}) |", md_cell(&m.modes[a.base]));
        for &s in &suites {
            let text = m
                .geomean(s, a.base)
                .value
                .map_or("—".into(), format::factor);
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
        let rows = a
            .removed
            .iter()
            .map(|(name, i)| (name.clone(), *i))
            .chain(a.combined.iter().map(|(names, i)| (names.join(", "), *i)));
        for (label, mode) in rows {
            let _ = write!(out, "| {} |", md_cell(&label));
            for &s in &suites {
                let base = m.geomean(s, a.base).value;
                let without = m.geomean(s, mode).value;
                let text = match (base, without) {
                    (Some(b), Some(w)) => {
                        format!("{:+.2}× ({})", w - b, format::factor(w))
                    }
                    _ => "—".into(),
                };
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ablation_is_found_from_the_mode_specs() {
        let modes = [
            "native",
            "fast",
            "fast:no-chaining",
            "fast:no-chaining,no-callret",
            "fast:inscount",
            "drk",
        ];
        let m = Matrix {
            run_id: kdbt_harness::store::RunId::new(1_800_000_000, "abcdef1").unwrap(),
            accelerator: kdbt_harness::store::Accelerator::Tcg,
            clock: kdbt_harness::store::Clock::Icount,
            modes: modes.iter().map(|s| s.to_string()).collect(),
            native: 0,
            rows: Vec::new(),
        };
        let a = find(&m);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].base, 1);
        assert_eq!(a[0].removed, [("chaining".to_string(), 2)]);
        assert_eq!(a[0].combined[0].1, 3);
        assert_eq!(a[0].modes(), [1, 2, 3]);
    }
}
