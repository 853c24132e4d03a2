//! A scaling run (a plan with `vcpus = [1, 2, 4]`): the whole matrix once per vCPU count, one
//! count after the other, each in its own guest boots, stored as ordinary result sets in the
//! sub-directories `vcpus-<n>/` of one parent directory:
//!
//! ```text
//! results/<run-id>/
//!   vcpus-1/   manifest.json (guest.vcpus = 1), samples.csv, …, figures/
//!   vcpus-2/
//!   vcpus-4/
//!   figures/   scaling.md, scaling.svg, scaling.png
//! ```
//!
//! Each sub-set has its own run id and loads, draws and compares like any other; ratios are
//! only taken within one. The parent's id is the command's start; the first sub-set's
//! `total_s` counts from there (setup and builds included), each later one from its own
//! start, so they add up to the command's wall time. The parent is written as
//! `results/.partial-<run-id>/` until every count has finished.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::kernel::Kernel;
use crate::runner::{self, BenchConfig, Started};
use crate::store::{RunId, MANIFEST_FILE, PARTIAL_PREFIX};

/// A sub-directory's name is this and the vCPU count.
pub const SUB_DIR_PREFIX: &str = "vcpus-";

/// The sub-directory holding the result set measured with `vcpus` vCPUs: `vcpus-<n>`.
pub fn sub_dir(vcpus: u32) -> String {
    format!("{SUB_DIR_PREFIX}{vcpus}")
}

/// The result sets of the scaling run in `dir`, as (vCPUs, directory), fewest vCPUs first;
/// `None` when `dir` is not a scaling run's parent (not a directory, holds a `manifest.json`
/// itself, or no `vcpus-<n>/` sub-directory). Only canonical names count (`vcpus-2`, not `vcpus-02`).
///
/// Errors: `dir` cannot be read.
pub fn sets(dir: &Path) -> Result<Option<Vec<(u32, PathBuf)>>> {
    if !dir.is_dir() || dir.join(MANIFEST_FILE).exists() {
        return Ok(None);
    }
    let mut sets = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SUB_DIR_PREFIX))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if name.to_str() == Some(sub_dir(n).as_str()) && entry.file_type()?.is_dir() {
            sets.push((n, entry.path()));
        }
    }
    sets.sort();
    Ok((!sets.is_empty()).then_some(sets))
}

/// Runs `config.matrix` once per count in `vcpus` (each as [`runner::run`], or
/// [`runner::run_jobs`] when `jobs` > 1) and returns the parent directory,
/// `config.results_root/<run-id>/`. `config.cpus` is ignored.
///
/// Errors: any count's run fails. The counts already measured stay in the hidden
/// `.partial-<run-id>/` parent (the error names it); each is a complete result set.
pub fn run(
    config: &BenchConfig,
    vcpus: &[u32],
    jobs: u32,
    kernel: &Kernel,
    rootfs: &Path,
    files: &[PathBuf],
) -> Result<PathBuf> {
    let (revision, _) = runner::git_state()?;
    let run_id = RunId::new(config.started.unix_secs, &revision)?;
    run_each(
        &config.results_root,
        &run_id,
        vcpus,
        |&n| sub_dir(n),
        |k, &n, parent| {
            let sub = BenchConfig {
                cpus: n,
                results_root: parent.to_owned(),
                started: if k == 0 {
                    config.started
                } else {
                    Started::now()
                },
                ..config.clone()
            };
            eprintln!(
                "kdbt bench: {n} vCPU(s), result set {} of {}",
                k + 1,
                vcpus.len()
            );
            match jobs {
                1 => runner::run(&sub, kernel, rootfs, files),
                jobs => runner::run_jobs(&sub, jobs, kernel, rootfs, files),
            }
        },
    )
}

/// The layout of [`run`] (and of an instrumentation run, `crate::instrument`): creates
/// `results_root/.partial-<run_id>/`, calls `run_one(k, item, parent)` for the `k`th of
/// `items`, which writes a result set under `parent` and returns its directory, moves that to
/// `parent/<name(item)>/`, and at the end renames the parent to `results_root/<run_id>/`,
/// which it returns.
///
/// Errors: the parent exists already, or `run_one` fails (the parent then stays partial).
pub(crate) fn run_each<T>(
    results_root: &Path,
    run_id: &RunId,
    items: &[T],
    name: impl Fn(&T) -> String,
    mut run_one: impl FnMut(usize, &T, &Path) -> Result<PathBuf>,
) -> Result<PathBuf> {
    let done = results_root.join(run_id.as_str());
    if done.exists() {
        bail!("run directory {} exists already", done.display());
    }
    fs::create_dir_all(results_root)
        .with_context(|| format!("creating {}", results_root.display()))?;
    let partial = results_root.join(format!("{PARTIAL_PREFIX}{run_id}"));
    fs::create_dir(&partial).with_context(|| format!("creating {}", partial.display()))?;
    for (k, item) in items.iter().enumerate() {
        let sub = name(item);
        let dir = run_one(k, item, &partial).with_context(|| {
            format!(
                "measuring {sub}; the result sets finished so far are in {}",
                partial.display()
            )
        })?;
        // The runner names a set by its run id; inside this run its parameter names it.
        let to = partial.join(sub);
        fs::rename(&dir, &to)
            .with_context(|| format!("renaming {} to {}", dir.display(), to.display()))?;
    }
    fs::rename(&partial, &done)
        .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Run;

    const GOLDEN: &str = "20260501-120000-abc1234";

    /// A stand-in for one count's run: the golden result set copied in as `<id>/`, its id
    /// made unique per count as the runner's start times make it.
    fn fake_run(k: usize, parent: &Path) -> Result<PathBuf> {
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/store/golden")
            .join(GOLDEN);
        let dir = parent.join(format!("20260501-12000{k}-abc1234"));
        fs::create_dir(&dir)?;
        for f in [MANIFEST_FILE, crate::store::SAMPLES_FILE] {
            fs::copy(golden.join(f), dir.join(f))?;
        }
        Ok(dir)
    }

    #[test]
    fn each_count_becomes_a_loadable_vcpus_sub_directory_of_one_parent() {
        let root = tempfile::tempdir().unwrap();
        let id = RunId::parse("20261201-080000-1234567").unwrap();
        let mut seen = Vec::new();
        let parent = run_each(
            root.path(),
            &id,
            &[1, 2, 4],
            |&n| sub_dir(n),
            |k, &n, parent| {
                assert_eq!(
                    parent,
                    root.path().join(".partial-20261201-080000-1234567"),
                    "sets are written inside the hidden parent"
                );
                seen.push((k, n));
                fake_run(k, parent)
            },
        )
        .unwrap();
        assert_eq!(seen, [(0, 1), (1, 2), (2, 4)]);
        assert_eq!(parent, root.path().join("20261201-080000-1234567"));
        let mut names: Vec<String> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["vcpus-1", "vcpus-2", "vcpus-4"]);
        let found = sets(&parent).unwrap().unwrap();
        let counts: Vec<u32> = found.iter().map(|(n, _)| *n).collect();
        assert_eq!(counts, [1, 2, 4]);
        assert_eq!(found[2].1, parent.join("vcpus-4"));
        let run = Run::load(&found[1].1).unwrap();
        assert_eq!(
            run.manifest.run_id.as_str(),
            GOLDEN,
            "a sub-set keeps its own run id"
        );
        assert!(!root
            .path()
            .join(".partial-20261201-080000-1234567")
            .exists());
    }

    #[test]
    fn a_failed_count_leaves_the_finished_sets_in_the_hidden_parent() {
        let root = tempfile::tempdir().unwrap();
        let id = RunId::parse("20261201-080000-1234567").unwrap();
        let err = run_each(
            root.path(),
            &id,
            &[1, 2],
            |&n| sub_dir(n),
            |k, &n, parent| match n {
                1 => fake_run(k, parent),
                _ => bail!("boot 0 ran no slot"),
            },
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.starts_with("measuring vcpus-2"), "{text}");
        assert!(text.ends_with("boot 0 ran no slot"), "{text}");
        let partial = root.path().join(".partial-20261201-080000-1234567");
        assert!(partial.join("vcpus-1").join(MANIFEST_FILE).is_file());
        assert!(!root.path().join("20261201-080000-1234567").exists());
        assert_eq!(
            crate::store::list_runs(root.path()).unwrap(),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn only_a_directory_of_vcpus_sets_is_a_scaling_parent() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(sets(root.path()).unwrap(), None);
        for name in ["vcpus-02", "vcpus-x", "other"] {
            fs::create_dir(root.path().join(name)).unwrap();
        }
        assert_eq!(sets(root.path()).unwrap(), None);
        fs::create_dir(root.path().join("vcpus-8")).unwrap();
        assert_eq!(
            sets(root.path()).unwrap(),
            Some(vec![(8, root.path().join("vcpus-8"))])
        );
        fs::write(root.path().join(MANIFEST_FILE), "{}").unwrap();
        assert_eq!(sets(root.path()).unwrap(), None, "a result set itself");
    }
}
