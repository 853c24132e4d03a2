//! Named benchmark plans: `plans/<name>.toml` in the repository, or any TOML file a user
//! copies and edits, run with `cargo xtask bench --plan <name or path>`.
//!
//! ```toml
//! modes = ["native", "fast", "fast:no-chaining"]   # native first; any spec kdbt accepts
//! suites = ["micro", "file"]                       # optional: all suites
//! benchmarks = ["lat_syscall null", "fileserver"]  # optional: every benchmark of the suites
//! reps = 2                                         # optional: interleaving rounds
//! vcpus = [1, 2, 4]                                # optional: the matrix once per count
//! apache_concurrency = [32]                        # optional: `ab -c` levels to run
//! ```
//!
//! A plan is checked whole before anything builds: every mode with the mode-spec parser the
//! module uses, every suite and benchmark against the workload catalogue. Errors name the file
//! and line.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::store::Suite;

/// The directory of the repository's plans.
pub const DIR: &str = "plans";

/// A plan as read from its file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Where it was read from.
    pub path: PathBuf,
    /// Mode specs, `native` among them.
    pub modes: Vec<String>,
    /// Suites to run; `None`: all.
    pub suites: Option<Vec<Suite>>,
    /// Benchmark names to keep; `None`: every benchmark of the suites.
    pub benchmarks: Option<Vec<String>>,
    /// Interleaving rounds; `None`: the command's default.
    pub reps: Option<u32>,
    /// Guest vCPU counts, ascending: the whole matrix runs once per count (a scaling run,
    /// `crate::scaling`); `None`: one run at the command's `--cpus`.
    pub vcpus: Option<Vec<u32>>,
    /// `ab` concurrency levels for the Apache benchmark, replacing the budget's own
    /// (`crate::bench::Matrix::with_apache_concurrency`); `None`: the budget's.
    pub apache_concurrency: Option<Vec<u32>>,
    /// Function lists of the instrumentation comparison (docs/INSTRUMENT.md), resolved against
    /// the plan file's directory: the whole matrix runs once per list, with that function set
    /// loaded (`crate::instrument`); `None`: no set.
    pub functions: Option<Vec<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    modes: Vec<Spanned<String>>,
    suites: Option<Vec<Spanned<String>>>,
    benchmarks: Option<Vec<Spanned<String>>>,
    reps: Option<Spanned<u32>>,
    vcpus: Option<Spanned<Vec<Spanned<u32>>>>,
    apache_concurrency: Option<Spanned<Vec<Spanned<u32>>>>,
    functions: Option<Spanned<Vec<Spanned<String>>>>,
}

/// The file `name_or_path` names: an existing path as given, else `plans/<name>.toml` under
/// `repo`. Errors list the repository's plans.
pub fn resolve(name_or_path: &str, repo: &Path) -> Result<PathBuf> {
    let given = PathBuf::from(name_or_path);
    if given.is_file() {
        return Ok(given);
    }
    let named = repo.join(DIR).join(format!("{name_or_path}.toml"));
    if named.is_file() {
        return Ok(named);
    }
    let mut known: Vec<String> = std::fs::read_dir(repo.join(DIR))
        .map(|d| {
            d.filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect()
        })
        .unwrap_or_default();
    known.sort();
    bail!(
        "no plan {name_or_path:?}: not a file, and not one of the repository's plans ({})",
        known.join(", ")
    )
}

/// Reads and checks the plan at `path`. `catalogue` lists the workloads' benchmarks
/// (`kdbt_workloads::catalogue()`); `check_mode` is the mode-spec check (an error says why).
pub fn load(
    path: &Path,
    catalogue: &[(Suite, String)],
    check_mode: impl Fn(&str) -> Result<()>,
) -> Result<Plan> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text, path, catalogue, check_mode)
}

/// [`load`] on the text of the file at `path`.
pub fn parse(
    text: &str,
    path: &Path,
    catalogue: &[(Suite, String)],
    check_mode: impl Fn(&str) -> Result<()>,
) -> Result<Plan> {
    let at = |span: Range<usize>| format!("{}:{}", path.display(), line_of(text, span.start));
    let file: PlanFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(text, s.start));
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })?;
    let mut modes = Vec::new();
    for m in &file.modes {
        check_mode(m.get_ref())
            .with_context(|| format!("{}: mode {:?}", at(m.span()), m.get_ref()))?;
        if modes.contains(m.get_ref()) {
            bail!("{}: mode {:?} is listed twice", at(m.span()), m.get_ref());
        }
        modes.push(m.get_ref().clone());
    }
    if !modes.iter().any(|m| m == "native") {
        bail!(
            "{}: modes must include native (every figure is relative to it)",
            path.display()
        );
    }
    let suites = match &file.suites {
        None => None,
        Some(list) => {
            let mut suites = Vec::new();
            for s in list {
                let Some(suite) = Suite::from_name(s.get_ref()) else {
                    bail!(
                        "{}: unknown suite {:?} (micro, file, apache)",
                        at(s.span()),
                        s.get_ref()
                    );
                };
                suites.push(suite);
            }
            Some(suites)
        }
    };
    let benchmarks = match &file.benchmarks {
        None => None,
        Some(list) => {
            let mut names = Vec::new();
            for b in list {
                let name = b.get_ref();
                let Some((suite, _)) = catalogue.iter().find(|(_, n)| n == name) else {
                    bail!(
                        "{}: unknown benchmark {name:?} (`kdbt-workload list`)",
                        at(b.span())
                    );
                };
                if suites.as_ref().is_some_and(|s| !s.contains(suite)) {
                    bail!(
                        "{}: benchmark {name:?} is in suite {suite}, which the plan does not run",
                        at(b.span())
                    );
                }
                names.push(name.clone());
            }
            Some(names)
        }
    };
    let reps = match &file.reps {
        Some(r) if *r.get_ref() == 0 => bail!("{}: reps must be at least 1", at(r.span())),
        r => r.as_ref().map(|r| *r.get_ref()),
    };
    let vcpus = match &file.vcpus {
        None => None,
        Some(list) => {
            let counts = positive_list(list, "vcpus", &at)?;
            if let Some(w) = list
                .get_ref()
                .windows(2)
                .find(|w| w[1].get_ref() < w[0].get_ref())
            {
                bail!(
                    "{}: vcpus must be in ascending order ({} after {})",
                    at(w[1].span()),
                    w[1].get_ref(),
                    w[0].get_ref()
                );
            }
            Some(counts)
        }
    };
    let apache_concurrency = match &file.apache_concurrency {
        None => None,
        Some(list) => {
            let runs_apache = suites.as_ref().is_none_or(|s| s.contains(&Suite::Apache))
                && benchmarks.as_ref().is_none_or(|names| {
                    names
                        .iter()
                        .any(|n| catalogue.contains(&(Suite::Apache, n.clone())))
                });
            if !runs_apache {
                bail!(
                    "{}: apache_concurrency is given, but the plan runs no Apache benchmark",
                    at(list.span())
                );
            }
            Some(positive_list(list, "apache_concurrency", &at)?)
        }
    };
    let functions = match &file.functions {
        None => None,
        Some(list) => {
            if vcpus.is_some() {
                bail!(
                    "{}: functions and vcpus in one plan: run the instrumentation comparison at one vCPU count",
                    at(list.span())
                );
            }
            if list.get_ref().is_empty() {
                bail!("{}: functions is empty", at(list.span()));
            }
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut files: Vec<PathBuf> = Vec::new();
            for f in list.get_ref() {
                let file = dir.join(f.get_ref());
                let names = std::fs::read_to_string(&file)
                    .map(|t| crate::instrument::listed(&t))
                    .with_context(|| {
                        format!("{}: function list {}", at(f.span()), file.display())
                    })?;
                if names == 0 {
                    bail!(
                        "{}: function list {} names no function",
                        at(f.span()),
                        file.display()
                    );
                }
                if files.iter().any(|g| g.file_stem() == file.file_stem()) {
                    bail!(
                        "{}: two function lists named {:?}",
                        at(f.span()),
                        file.file_stem().unwrap_or_default()
                    );
                }
                files.push(file);
            }
            Some(files)
        }
    };
    if functions.is_none()
        && modes.iter().any(|m| {
            crate::bench::is_probe_mode(m) || m.split(',').any(|o| o.ends_with("funccount"))
        })
    {
        bail!(
            "{}: modes kprobes, ftrace and funccount count a function set: give `functions`",
            path.display()
        );
    }
    Ok(Plan {
        path: path.to_owned(),
        modes,
        suites,
        benchmarks,
        reps,
        vcpus,
        apache_concurrency,
        functions,
    })
}

/// The numbers of `list`, the plan's key `key`: not empty, each at least 1, none twice.
/// Errors name the line with `at`.
fn positive_list(
    list: &Spanned<Vec<Spanned<u32>>>,
    key: &str,
    at: &impl Fn(Range<usize>) -> String,
) -> Result<Vec<u32>> {
    if list.get_ref().is_empty() {
        bail!("{}: {key} is empty", at(list.span()));
    }
    let mut numbers = Vec::new();
    for n in list.get_ref() {
        let value = *n.get_ref();
        if value == 0 {
            bail!("{}: {key} must be at least 1", at(n.span()));
        }
        if numbers.contains(&value) {
            bail!("{}: {key}: {value} is listed twice", at(n.span()));
        }
        numbers.push(value);
    }
    Ok(numbers)
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue() -> Vec<(Suite, String)> {
        vec![
            (Suite::Micro, "lat_syscall null".into()),
            (Suite::File, "fileserver".into()),
            (Suite::Apache, "ab".into()),
        ]
    }

    fn check(m: &str) -> Result<()> {
        if m == "native" || m == "fast" || m == "fast:no-chaining" {
            Ok(())
        } else {
            bail!("unknown option")
        }
    }

    fn parse_text(text: &str) -> Result<Plan> {
        parse(text, Path::new("plans/x.toml"), &catalogue(), check)
    }

    #[test]
    fn a_plan_reads_with_its_defaults() {
        let p = parse_text("modes = [\"native\", \"fast\"]\n").unwrap();
        assert_eq!(p.modes, ["native", "fast"]);
        assert_eq!((p.suites, p.benchmarks, p.reps), (None, None, None));
        assert_eq!((p.vcpus, p.apache_concurrency), (None, None));
        let p = parse_text(
            "modes = [\"native\", \"fast:no-chaining\"]\nsuites = [\"micro\"]\nbenchmarks = [\"lat_syscall null\"]\nreps = 3\n",
        )
        .unwrap();
        assert_eq!(p.suites, Some(vec![Suite::Micro]));
        assert_eq!(p.reps, Some(3));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = parse_text("modes = [\n  \"native\",\n  \"fast:turbo\",\n]\n").unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.starts_with("plans/x.toml:3: mode \"fast:turbo\""),
            "{text}"
        );
        assert!(text.contains("unknown option"), "{text}");
        let e = parse_text("modes = [\"native\"]\n\nbenchmarks = [\"lat_nothing\"]\n").unwrap_err();
        assert!(
            format!("{e:#}").starts_with("plans/x.toml:3: unknown benchmark"),
            "{e:#}"
        );
        let e = parse_text(
            "modes = [\"native\"]\nsuites = [\"micro\"]\nbenchmarks = [\"fileserver\"]\n",
        )
        .unwrap_err();
        assert!(format!("{e:#}").starts_with("plans/x.toml:3:"), "{e:#}");
        let e = parse_text("modes = [\"fast\"]\n").unwrap_err();
        assert!(format!("{e:#}").contains("must include native"), "{e:#}");
        let e = parse_text("modes = [\"native\"]\nrounds = 2\n").unwrap_err();
        assert!(format!("{e:#}").starts_with("plans/x.toml:2:"), "{e:#}");
        let e = parse_text("modes = [\"native\"]\nreps = 0\n").unwrap_err();
        assert!(
            format!("{e:#}").starts_with("plans/x.toml:2: reps"),
            "{e:#}"
        );
    }

    #[test]
    fn vcpus_read_as_an_ascending_list_of_distinct_counts() {
        let p = parse_text("modes = [\"native\", \"fast\"]\nvcpus = [1, 2, 4]\n").unwrap();
        assert_eq!(p.vcpus, Some(vec![1, 2, 4]));
        let p = parse_text("modes = [\"native\", \"fast\"]\nvcpus = [3]\n").unwrap();
        assert_eq!(p.vcpus, Some(vec![3]));
    }

    #[test]
    fn bad_vcpus_are_refused_with_file_and_line() {
        for (vcpus, why) in [
            ("[1, 0, 4]", "plans/x.toml:3: vcpus must be at least 1"),
            ("[1, 2, 2]", "plans/x.toml:3: vcpus: 2 is listed twice"),
            (
                "[4, 2]",
                "plans/x.toml:3: vcpus must be in ascending order (2 after 4)",
            ),
            ("[]", "plans/x.toml:3: vcpus is empty"),
            ("[-1]", "plans/x.toml:3:"),
            ("2", "plans/x.toml:3:"),
        ] {
            let text = format!("modes = [\"native\"]\nreps = 1\nvcpus = {vcpus}\n");
            let e = format!("{:#}", parse_text(&text).unwrap_err());
            assert!(e.starts_with(why), "vcpus = {vcpus}: {e}");
        }
    }

    #[test]
    fn apache_concurrency_needs_the_plan_to_run_apache() {
        let p = parse_text("modes = [\"native\"]\napache_concurrency = [32]\n").unwrap();
        assert_eq!(p.apache_concurrency, Some(vec![32]));
        let p = parse_text(
            "modes = [\"native\"]\nbenchmarks = [\"lat_syscall null\", \"ab\"]\napache_concurrency = [8, 32]\n",
        )
        .unwrap();
        assert_eq!(p.apache_concurrency, Some(vec![8, 32]));
        for (plan, why) in [
            (
                "suites = [\"micro\"]\napache_concurrency = [32]\n",
                "plans/x.toml:3: apache_concurrency is given, but the plan runs no Apache",
            ),
            (
                "benchmarks = [\"fileserver\"]\napache_concurrency = [32]\n",
                "plans/x.toml:3: apache_concurrency is given, but the plan runs no Apache",
            ),
            (
                "apache_concurrency = [0]\n",
                "plans/x.toml:2: apache_concurrency must be at least 1",
            ),
        ] {
            let e = format!(
                "{:#}",
                parse_text(&format!("modes = [\"native\"]\n{plan}")).unwrap_err()
            );
            assert!(e.starts_with(why), "{plan}: {e}");
        }
    }

    #[test]
    fn function_lists_resolve_beside_the_plan_and_are_checked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(dir.path().join("lists/hot.txt"), "# hot\nvfs_read\n").unwrap();
        std::fs::write(dir.path().join("lists/none.txt"), "# nothing\n").unwrap();
        let path = dir.path().join("p.toml");
        let load = |text: &str| {
            parse(text, &path, &catalogue(), |m: &str| {
                if m == "native" || m == "kprobes" || m == "fast:funccount" {
                    Ok(())
                } else {
                    bail!("unknown")
                }
            })
        };
        let p =
            load("modes = [\"native\", \"kprobes\"]\nfunctions = [\"lists/hot.txt\"]\n").unwrap();
        assert_eq!(p.functions, Some(vec![dir.path().join("lists/hot.txt")]));
        let at = path.display().to_string();
        for (text, why) in [
            (
                "modes = [\"native\", \"kprobes\"]\n",
                "modes kprobes, ftrace and funccount count a function set".to_string(),
            ),
            (
                "modes = [\"native\", \"fast:funccount\"]\n",
                "modes kprobes, ftrace and funccount count a function set".to_string(),
            ),
            (
                "modes = [\"native\"]\nfunctions = [\"lists/gone.txt\"]\n",
                format!("{at}:2: function list"),
            ),
            (
                "modes = [\"native\"]\nfunctions = [\"lists/none.txt\"]\n",
                format!("{at}:2: function list"),
            ),
            (
                "modes = [\"native\"]\nfunctions = []\n",
                format!("{at}:2: functions is empty"),
            ),
            (
                "modes = [\"native\"]\nvcpus = [1]\nfunctions = [\"lists/hot.txt\"]\n",
                format!("{at}:3: functions and vcpus in one plan"),
            ),
        ] {
            let e = format!("{:#}", load(text).unwrap_err());
            assert!(e.contains(&why), "{text}: {e}");
        }
    }
}
