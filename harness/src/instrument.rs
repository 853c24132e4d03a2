//! An instrumentation run (a plan with `functions = [...]`, docs/INSTRUMENT.md): the whole
//! matrix once per function list, each with that set loaded (`kdbtctl funcs`) for the modes
//! that count it: kdbt's `funccount` client and the probe modes `kprobes` and `ftrace`
//! ([`crate::bench::PROBE_MODES`]). Each list's result set is a sub-directory of one parent:
//!
//! ```text
//! results/<run-id>/
//!   funcs-hot-1/      manifest.json, samples.csv, kdbt_stats.csv, functions.txt, figures/
//!   funcs-hot-10/
//!   funcs-fs/
//! ```
//!
//! `functions.txt` is the list as loaded. The figures of the parent compare the methods'
//! overhead against the number of functions (`cargo xtask figures <parent>`).

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

use crate::kernel::Kernel;
use crate::runner::{self, BenchConfig, Started};
use crate::store::{RunId, MANIFEST_FILE};

/// Prefix of each list's result set: `funcs-<list file stem>`.
pub const SUB_DIR_PREFIX: &str = "funcs-";
/// The list a result set was measured with, inside it.
pub const LIST_FILE: &str = "functions.txt";

/// The sub-directory of the result set measured with the list at `list`.
pub fn sub_dir(list: &Path) -> String {
    let stem = list.file_stem().unwrap_or_default().to_string_lossy();
    format!("{SUB_DIR_PREFIX}{stem}")
}

/// Names a list's text gives: lines that are neither blank nor a comment.
pub fn listed(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.split('#').next().unwrap_or("").trim().is_empty())
        .count()
}

/// The result sets of an instrumentation run's parent `dir`, by sub-directory name, with the
/// number of names in each list; `None` when `dir` is no such parent.
///
/// Errors: `dir` or a list cannot be read.
pub fn sets(dir: &Path) -> Result<Option<Vec<(String, usize, PathBuf)>>> {
    if !dir.is_dir() || dir.join(MANIFEST_FILE).exists() {
        return Ok(None);
    }
    let mut sets = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(SUB_DIR_PREFIX) || !entry.file_type()?.is_dir() {
            continue;
        }
        let list = entry.path().join(LIST_FILE);
        let text =
            fs::read_to_string(&list).with_context(|| format!("reading {}", list.display()))?;
        sets.push((name, listed(&text), entry.path()));
    }
    sets.sort_by_key(|(name, n, _)| (*n, name.clone()));
    Ok((!sets.is_empty()).then_some(sets))
}

/// Runs `config.matrix` once per list of `lists` (each as [`runner::run`], or
/// [`runner::run_jobs`] when `jobs` > 1), the list in the guest's /kdbt and loaded after
/// `insmod`, and returns the parent directory, `config.results_root/<run-id>/`.
///
/// Errors: any list's run fails; the sets measured so far stay in the hidden
/// `.partial-<run-id>/` parent (the error names it).
pub fn run(
    config: &BenchConfig,
    lists: &[PathBuf],
    jobs: u32,
    kernel: &Kernel,
    rootfs: &Path,
    files: &[PathBuf],
) -> Result<PathBuf> {
    let (revision, _) = runner::git_state()?;
    let run_id = RunId::new(config.started.unix_secs, &revision)?;
    crate::scaling::run_each(
        &config.results_root,
        &run_id,
        lists,
        |l| sub_dir(l),
        |k, list, parent| {
            let name = list
                .file_name()
                .context("a function list has a file name")?
                .to_string_lossy()
                .into_owned();
            let mut matrix = config.matrix.clone();
            matrix.funcs = Some(name);
            let sub = BenchConfig {
                matrix,
                results_root: parent.to_owned(),
                started: if k == 0 {
                    config.started
                } else {
                    Started::now()
                },
                ..config.clone()
            };
            eprintln!(
                "kdbt bench: function list {} ({} of {})",
                list.display(),
                k + 1,
                lists.len()
            );
            let mut shared = files.to_vec();
            shared.push(list.clone());
            let dir = match jobs {
                1 => runner::run(&sub, kernel, rootfs, &shared),
                jobs => runner::run_jobs(&sub, jobs, kernel, rootfs, &shared),
            }?;
            fs::copy(list, dir.join(LIST_FILE))
                .with_context(|| format!("copying {} into {}", list.display(), dir.display()))?;
            Ok(dir)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_counts_its_names_and_names_its_set() {
        assert_eq!(
            listed("# hot\nvfs_read\n\n  ksys_read # the syscall\n#x\n"),
            2
        );
        assert_eq!(
            sub_dir(Path::new("plans/instrument/hot-10.txt")),
            "funcs-hot-10"
        );
    }

    #[test]
    fn only_a_directory_of_funcs_sets_is_an_instrumentation_parent() {
        let root = tempfile::tempdir().unwrap();
        assert!(sets(root.path()).unwrap().is_none());
        for (name, text) in [("funcs-b", "a\nb\nc\n"), ("funcs-a", "x\n")] {
            fs::create_dir(root.path().join(name)).unwrap();
            fs::write(root.path().join(name).join(LIST_FILE), text).unwrap();
        }
        fs::create_dir(root.path().join("other")).unwrap();
        let found = sets(root.path()).unwrap().unwrap();
        let got: Vec<(&str, usize)> = found.iter().map(|(n, k, _)| (n.as_str(), *k)).collect();
        assert_eq!(got, [("funcs-a", 1), ("funcs-b", 3)]);
    }
}
