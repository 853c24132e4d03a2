//! Reading runs for figures, and the rule that ratios never cross accelerators or clocks.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use kdbt_harness::store::Run;

/// Loads and checks each run directory, in order. Errors name the directory.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<Run>> {
    dirs.iter()
        .map(|d| Run::load(d).with_context(|| format!("loading run {}", d.display())))
        .collect()
}

/// Errors unless `before` and `after` ran under the same accelerator and clock: numbers taken
/// under TCG and KVM, or in instructions (icount) and in real time (wall), do not compare.
pub fn ensure_comparable(before: &Run, after: &Run) -> Result<()> {
    let (b, a) = (&before.manifest, &after.manifest);
    if b.accelerator != a.accelerator || b.clock != a.clock {
        bail!(
            "refusing to compare run {} ({}, clock {}) with run {} ({}, clock {}): \
             results under different accelerators or clocks do not compare; draw them separately",
            b.run_id,
            b.accelerator,
            b.clock,
            a.run_id,
            a.accelerator,
            a.clock
        );
    }
    Ok(())
}
