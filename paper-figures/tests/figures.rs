//! Tables and figures of the hand-written golden runs in `tests/fixtures/`:
//!
//! - `20260501-120000-abc1234` ("before"): native, fast, drk over micro, file and apache; two
//!   boots; drk crashes on `ab` at concurrency 8 in both and is refused once on
//!   `lat_syscall null`.
//! - `20260502-090000-def5678` ("after"): adds fast:no-callret and concurrency 32; no failure.
//! - `20260502-100000-def5678` ("wall"): the after revision under the wall clock.
//!
//! Expected numbers are recomputed here from `samples.csv` with code of this file's own, not
//! taken from the library.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use kdbt_harness::store::{Params, RunId, RunWriter, Suite};

mod support;
use support::{manifest, sample};

const BEFORE: &str = "20260501-120000-abc1234";
const AFTER: &str = "20260502-090000-def5678";
const WALL: &str = "20260502-100000-def5678";

fn fixture(id: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(id)
}

/// A writable copy of a fixture run under `root`.
fn copy_run(id: &str, root: &Path) -> PathBuf {
    let dir = root.join(id);
    fs::create_dir_all(&dir).unwrap();
    for f in ["manifest.json", "samples.csv"] {
        fs::copy(fixture(id).join(f), dir.join(f)).unwrap();
    }
    dir
}

fn render(runs: &[&str], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dirs: Vec<PathBuf> = runs.iter().map(|id| fixture(id)).collect();
    paper_figures::render(&dirs, Some(out))
}

// --- an independent reading of samples.csv ----------------------------------------------

struct Expected {
    /// (label, mode) → median of the ok samples.
    medians: HashMap<(String, String), f64>,
    /// label → (suite, lower is better)
    benches: BTreeMap<String, (String, bool)>,
}

impl Expected {
    fn of(id: &str) -> Expected {
        let text = fs::read_to_string(fixture(id).join("samples.csv")).unwrap();
        assert!(!text.contains('"'), "this reader does not handle quoting");
        let mut values: HashMap<(String, String), Vec<f64>> = HashMap::new();
        let mut benches = BTreeMap::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (mode, suite, bench, params, better, value, status) =
                (f[2], f[3], f[4], f[5], f[8], f[10], f[12]);
            if status != "ok" {
                continue;
            }
            let label = if params.is_empty() {
                bench.to_owned()
            } else {
                format!("{bench} {}", params.replace(';', " "))
            };
            benches.insert(label.clone(), (suite.to_owned(), better == "lower"));
            values
                .entry((label, mode.to_owned()))
                .or_default()
                .push(value.parse().unwrap());
        }
        let medians = values
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                let n = v.len();
                let median = if n % 2 == 1 {
                    v[n / 2]
                } else {
                    (v[n / 2 - 1] + v[n / 2]) / 2.0
                };
                (k, median)
            })
            .collect();
        Expected { medians, benches }
    }

    fn median(&self, label: &str, mode: &str) -> Option<f64> {
        self.medians
            .get(&(label.to_owned(), mode.to_owned()))
            .copied()
    }

    fn slowdown(&self, label: &str, mode: &str) -> Option<f64> {
        let native = self.median(label, "native")?;
        let translated = self.median(label, mode)?;
        Some(if self.benches[label].1 {
            translated / native
        } else {
            native / translated
        })
    }

    fn geomean(&self, suite: &str, mode: &str) -> Option<f64> {
        let logs: Vec<f64> = self
            .benches
            .iter()
            .filter(|(_, (s, _))| s == suite)
            .filter_map(|(label, _)| self.slowdown(label, mode))
            .map(f64::ln)
            .collect();
        (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
    }
}

// --- reading the markdown back ------------------------------------------------------------

/// (suite section, row label) → mode → cell text, from every table under a `## suite` heading.
type Cells = HashMap<(String, String), HashMap<String, String>>;

fn parse_tables(md: &str, first_mode_column: usize) -> Cells {
    let mut cells = Cells::new();
    let mut section = String::new();
    let mut modes: Vec<String> = Vec::new();
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.to_owned();
            continue;
        }
        if !line.starts_with('|') || line.starts_with("|---") {
            continue;
        }
        let cols: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_owned())
            .collect();
        if cols[0] == "Benchmark" || cols[0] == "Counter" {
            modes = cols[first_mode_column..].to_vec();
            continue;
        }
        let row = modes
            .iter()
            .cloned()
            .zip(cols[first_mode_column..].iter().cloned())
            .collect();
        cells.insert((section.clone(), cols[0].clone()), row);
    }
    cells
}

fn cell<'a>(cells: &'a Cells, suite: &str, label: &str, mode: &str) -> &'a str {
    &cells[&(suite.to_owned(), label.to_owned())][mode]
}

/// The number a cell starts with ("1.49× ±2.5%" → 1.49, "2025 MB/s" → 2025).
fn leading_number(text: &str) -> f64 {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    text[..end]
        .parse()
        .unwrap_or_else(|_| panic!("no number at the start of {text:?}"))
}

/// The text of footnote `marker` ("[2]") in a document.
fn footnote<'a>(md: &'a str, marker: &str) -> &'a str {
    md.lines()
        .find_map(|l| l.strip_prefix(marker).map(str::trim))
        .unwrap_or_else(|| panic!("no footnote {marker}"))
}

fn marker(cell: &str) -> &str {
    let start = cell
        .rfind('[')
        .unwrap_or_else(|| panic!("no marker in {cell:?}"));
    &cell[start..]
}

// --- table.md -----------------------------------------------------------------------------

#[test]
fn table_slowdowns_and_geomeans_match_an_independent_computation() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let expected = Expected::of(BEFORE);

    let mut checked = 0;
    for (label, (suite, _)) in &expected.benches {
        let native = expected.median(label, "native").unwrap();
        let shown = leading_number(cell(&cells, suite, label, "native"));
        assert!(
            (shown - native).abs() <= native * 0.005,
            "{label} native: table {shown}, computed {native}"
        );
        for mode in ["fast", "drk"] {
            let text = cell(&cells, suite, label, mode);
            match expected.slowdown(label, mode) {
                Some(s) => {
                    assert!(text.contains('×'), "{label} {mode}: {text}");
                    let shown = leading_number(text);
                    assert!(
                        (shown - s).abs() <= 0.005 + 1e-9,
                        "{label} {mode}: table {shown}, computed {s}"
                    );
                    checked += 1;
                }
                None => assert!(text.starts_with("failed ["), "{label} {mode}: {text}"),
            }
        }
    }
    assert_eq!(checked, 9, "5 benchmarks × 2 modes, less drk on ab at 8");

    for suite in ["micro", "file", "apache"] {
        for mode in ["fast", "drk"] {
            let g = expected.geomean(suite, mode).unwrap();
            let text = cell(&cells, suite, "**geometric mean**", mode);
            let shown = leading_number(text);
            assert!(
                (shown - g).abs() <= 0.005 + 1e-9,
                "{suite} {mode} geomean: table {text}, computed {g}"
            );
        }
        assert_eq!(
            cell(&cells, suite, "**geometric mean**", "native"),
            "baseline"
        );
    }

    // One cell pinned by hand: fast's lat_syscall null samples are 0.29, 0.30, 0.31, 0.32
    // (median 0.305, quartiles 0.2975 and 0.3125) against native's 0.19..0.22 (median 0.205):
    // 0.305 / 0.205 = 1.488; half the IQR is 0.0075 = 2.46 % of the median.
    assert_eq!(
        cell(&cells, "micro", "lat_syscall null", "fast"),
        "1.49× ±2.5%"
    );
    // Higher is better: native / translated = 2025 / 1625.
    assert!(cell(&cells, "micro", "bw_pipe", "fast").starts_with("1.25×"));
    assert!(cell(&cells, "micro", "bw_pipe", "native").starts_with("2025 MB/s"));
}

#[test]
fn table_has_no_blank_cell() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE, AFTER], out.path()).unwrap();
    for file in [
        out.path().join(BEFORE).join("table.md"),
        out.path().join(AFTER).join("table.md"),
        out.path().join("compare.md"),
    ] {
        let md = fs::read_to_string(&file).unwrap();
        for line in md.lines().filter(|l| l.starts_with('|')) {
            let cols: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert!(
                cols.iter().all(|c| !c.trim().is_empty()),
                "blank cell in {}: {line}",
                file.display()
            );
        }
    }
}

#[test]
fn failed_cell_says_failed_with_reason_and_console_logs_in_a_footnote() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let text = cell(&cells, "apache", "ab concurrency=8", "drk");
    assert!(text.starts_with("failed ["), "{text}");
    let note = footnote(&md, marker(text));
    assert!(
        note.starts_with(
            "drk on ab concurrency=8: guest crashed: general protection fault in tcp_sendmsg"
        ),
        "{note}"
    );
    assert!(
        note.contains("boot 0 round 0, console log `console/boot0.log`"),
        "{note}"
    );
    assert!(
        note.contains("boot 1 round 0, console log `console/boot1.log`"),
        "{note}"
    );
}

#[test]
fn partly_failed_cell_keeps_its_value_and_notes_the_failure() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let text = cell(&cells, "micro", "lat_syscall null", "drk");
    let expected = Expected::of(BEFORE)
        .slowdown("lat_syscall null", "drk")
        .unwrap();
    assert!((leading_number(text) - expected).abs() <= 0.005, "{text}");
    let note = footnote(&md, marker(text));
    assert!(note.contains("from the 2 samples"), "{note}");
    assert!(
        note.contains("switch-on refused: EBUSY (boot 1 round 0)"),
        "{note}"
    );
}

#[test]
fn geomean_over_a_partly_failed_suite_says_how_many_benchmarks_entered() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let text = cell(&cells, "apache", "**geometric mean**", "drk");
    assert!(text.contains("(1 of 2)"), "{text}");
    assert!(footnote(&md, marker(text)).contains("1 of 2 apache benchmarks"));
}

#[test]
fn table_lists_kdbt_statistics_per_mode() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    let cells = parse_tables(&md, 1);
    let stats =
        |counter: &str, mode: &str| cell(&cells, "kdbt statistics", counter, mode).to_owned();
    assert_eq!(stats("inscount", "fast"), "918273");
    assert_eq!(stats("jumptable_hits", "drk"), "not reported");
}

#[test]
fn table_header_names_accelerator_clock_and_guest() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join(BEFORE).join("table.md")).unwrap();
    assert!(md.starts_with(&format!("# kdbt results: run {BEFORE}")));
    assert!(md.contains("Accelerator tcg, clock icount"));
    assert!(md.contains("Guest kernel 6.12.22-kdbt (config 5f0c1e9a)"));
}

// --- charts -------------------------------------------------------------------------------

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn render_writes_nonempty_svg_and_png_naming_every_benchmark_and_mode() {
    let out = tempfile::tempdir().unwrap();
    let written = render(&[BEFORE], out.path()).unwrap();
    let dir = out.path().join(BEFORE);
    let names: Vec<PathBuf> = [
        "table.md",
        "slowdown.svg",
        "slowdown.png",
        "apache.svg",
        "apache.png",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    assert_eq!(written, names);

    let svg = fs::read_to_string(dir.join("slowdown.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "not an SVG");
    for label in Expected::of(BEFORE).benches.keys() {
        assert!(svg.contains(label.as_str()), "slowdown.svg lacks {label}");
    }
    // plotters writes each text element's content on a line of its own.
    let has_text = |svg: &str, text: &str| svg.lines().any(|l| l.trim() == text);
    for mode in ["fast", "drk"] {
        assert!(
            has_text(&svg, mode),
            "slowdown.svg lacks a legend for {mode}"
        );
    }
    assert!(
        svg.contains("failed (see table.md)"),
        "the failed bar is not marked"
    );

    let apache = fs::read_to_string(dir.join("apache.svg")).unwrap();
    assert!(
        has_text(&apache, "drk (failed at 8)"),
        "apache.svg does not mark drk's failure"
    );
    assert!(has_text(&apache, "native"));

    for png in ["slowdown.png", "apache.png"] {
        let (w, h) = png_size(&dir.join(png));
        assert!(w >= 800 && h >= 300, "{png} is {w}×{h}");
        assert!(
            fs::metadata(dir.join(png)).unwrap().len() > 10_000,
            "{png} looks empty"
        );
    }
}

#[test]
fn run_without_apache_rows_gets_no_apache_chart() {
    let out = tempfile::tempdir().unwrap();
    let written = render(&[WALL], out.path()).unwrap();
    let files: Vec<&str> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap())
        .collect();
    assert_eq!(files, ["table.md", "slowdown.svg", "slowdown.png"]);
}

#[test]
fn figures_go_into_the_run_directory_by_default() {
    let root = tempfile::tempdir().unwrap();
    let run = copy_run(BEFORE, root.path());
    let written = paper_figures::render(std::slice::from_ref(&run), None).unwrap();
    assert!(!written.is_empty());
    for f in &written {
        assert_eq!(f.parent().unwrap(), run.join("figures"));
        assert!(fs::metadata(f).unwrap().len() > 0);
    }
}

// --- compare.md ---------------------------------------------------------------------------

#[test]
fn compare_shows_before_and_after_slowdowns_with_their_change() {
    let out = tempfile::tempdir().unwrap();
    render(&[BEFORE, AFTER], out.path()).unwrap();
    let md = fs::read_to_string(out.path().join("compare.md")).unwrap();
    let cells = parse_tables(&md, 1);
    let (before, after) = (Expected::of(BEFORE), Expected::of(AFTER));

    let (b, a) = (
        before.slowdown("lat_syscall null", "fast").unwrap(),
        after.slowdown("lat_syscall null", "fast").unwrap(),
    );
    let change = (a / b - 1.0) * 100.0;
    assert!(change < 0.0, "the fixture makes fast faster");
    assert_eq!(
        cell(&cells, "micro", "lat_syscall null", "fast"),
        format!("{b:.2}× → {a:.2}× (−{:.1}%)", -change)
    );

    let (b, a) = (
        before.geomean("file", "drk").unwrap(),
        after.geomean("file", "drk").unwrap(),
    );
    assert_eq!(
        cell(&cells, "file", "**geometric mean**", "drk"),
        format!("{b:.2}× → {a:.2}× (+{:.1}%)", (a / b - 1.0) * 100.0)
    );

    let new_mode = cell(&cells, "apache", "ab concurrency=8", "fast:no-callret");
    assert!(new_mode.starts_with("not run → 1."), "{new_mode}");
    let new_level = cell(&cells, "apache", "ab concurrency=32", "native");
    assert_eq!(new_level, "not run → 6000 req/s");
    let fixed = cell(&cells, "apache", "ab concurrency=8", "drk");
    assert!(fixed.starts_with("failed [1] → 2.00×"), "{fixed}");
    assert!(footnote(&md, "[1]").contains("guest crashed"));
}

#[test]
fn compare_goes_into_the_after_runs_figures_by_default() {
    let root = tempfile::tempdir().unwrap();
    let runs = [copy_run(BEFORE, root.path()), copy_run(AFTER, root.path())];
    let written = paper_figures::render(&runs, None).unwrap();
    let compare = runs[1].join("figures").join("compare.md");
    assert!(written.contains(&compare));
    assert!(fs::read_to_string(compare)
        .unwrap()
        .starts_with(&format!("# kdbt comparison: {BEFORE} → {AFTER}")));
}

// --- refusals -----------------------------------------------------------------------------

#[test]
fn runs_under_different_clocks_are_refused_before_anything_is_written() {
    let out = tempfile::tempdir().unwrap();
    let err = format!("{:#}", render(&[AFTER, WALL], out.path()).unwrap_err());
    assert!(err.contains("clock icount"), "{err}");
    assert!(err.contains("clock wall"), "{err}");
    assert!(err.contains("do not compare"), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn runs_under_different_accelerators_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let kvm = copy_run(AFTER, root.path());
    let manifest = kvm.join("manifest.json");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, text.replace("\"tcg\"", "\"kvm\"")).unwrap();
    let err =
        paper_figures::render(&[fixture(BEFORE), kvm], Some(&root.path().join("out"))).unwrap_err();
    assert!(
        format!("{err:#}").contains("(kvm, clock icount)"),
        "{err:#}"
    );
}

#[test]
fn malformed_run_is_refused_naming_file_and_line() {
    let root = tempfile::tempdir().unwrap();
    let run = copy_run(BEFORE, root.path());
    let csv = run.join("samples.csv");
    let text = fs::read_to_string(&csv).unwrap();
    fs::write(&csv, text.replacen(",0.22,", ",fast,", 1)).unwrap();
    let err = format!("{:#}", paper_figures::render(&[run], None).unwrap_err());
    assert!(err.contains("samples.csv line 3"), "{err}");
}

#[test]
fn run_without_native_mode_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse("20260503-000000-1234567").unwrap();
    let mut w = RunWriter::create(root.path(), &id).unwrap();
    w.append_row(&sample("fast", "lat_pipe", 2.0)).unwrap();
    let run = w.finish(manifest(&id, &["fast", "drk"])).unwrap();
    let err = format!("{:#}", paper_figures::render(&[run.dir], None).unwrap_err());
    assert!(err.contains("has no \"native\" mode"), "{err}");
}

#[test]
fn mode_without_rows_for_a_benchmark_says_not_run() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse("20260503-000000-1234567").unwrap();
    let mut w = RunWriter::create(root.path(), &id).unwrap();
    for row in [
        sample("native", "lat_pipe", 2.0),
        sample("fast", "lat_pipe", 3.0),
        sample("drk", "lat_pipe", 5.0),
        sample("native", "lat_ctx 2p", 4.0),
        sample("fast", "lat_ctx 2p", 6.0),
    ] {
        w.append_row(&row).unwrap();
    }
    let run = w.finish(manifest(&id, &["native", "fast", "drk"])).unwrap();
    paper_figures::render(std::slice::from_ref(&run.dir), None).unwrap();
    let md = fs::read_to_string(run.dir.join("figures/table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let text = cell(&cells, "micro", "lat_ctx 2p", "drk");
    assert!(text.starts_with("not run ["), "{text}");
    assert!(footnote(&md, marker(text)).contains("no row in samples.csv"));
    assert_eq!(cell(&cells, "micro", "lat_pipe", "drk"), "2.50× ±0.0%");
    let svg = fs::read_to_string(run.dir.join("figures/slowdown.svg")).unwrap();
    assert!(svg.contains("not run"));
}

#[test]
fn no_run_given_is_an_error() {
    assert!(paper_figures::render(&[], None).is_err());
}

#[test]
fn failure_without_params_covers_every_configuration_of_its_benchmark() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse("20260503-000000-1234567").unwrap();
    let mut w = RunWriter::create(root.path(), &id).unwrap();
    for c in ["1", "8"] {
        let mut row = sample("native", "ab", 100.0);
        row.params = Params::from_pairs([("concurrency", c)]).unwrap();
        w.append_row(&row).unwrap();
    }
    // The slot failed before the benchmark printed anything: no metric, no params.
    w.append_failure(kdbt_harness::store::Failure {
        boot: 0,
        round: 0,
        mode: "fast".into(),
        suite: Suite::Micro,
        benchmark: "ab".into(),
        params: Params::none(),
        reason: "switch-on failed: EINVAL".into(),
        console_log: None,
    })
    .unwrap();
    let run = w.finish(manifest(&id, &["native", "fast"])).unwrap();
    paper_figures::render(std::slice::from_ref(&run.dir), None).unwrap();
    let md = fs::read_to_string(run.dir.join("figures/table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    for label in ["ab concurrency=1", "ab concurrency=8"] {
        let text = cell(&cells, "micro", label, "fast");
        assert!(text.starts_with("failed ["), "{label}: {text}");
        assert!(footnote(&md, marker(text)).contains("switch-on failed: EINVAL"));
    }
    assert!(
        !cells.contains_key(&("micro".to_owned(), "ab".to_owned())),
        "no extra row for the failure: {md}"
    );
}

#[test]
fn table_shows_headline_rows_labelled_by_the_parameters_that_vary() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse("20260503-000000-1234567").unwrap();
    let mut w = RunWriter::create(root.path(), &id).unwrap();
    let file_row = |mode: &str, flow: &str, metric: &str, value: f64| {
        let mut row = sample(mode, "fileserver", value);
        row.suite = Suite::File;
        row.metric = metric.into();
        row.unit = "ops/s".into();
        row.better = Some(kdbt_harness::store::Better::Higher);
        row.params = Params::from_pairs([("flow", flow), ("nfiles", "50")]).unwrap();
        row
    };
    for mode in ["native", "fast"] {
        w.append_row(&file_row(mode, "all", "ops_per_sec", 100.0))
            .unwrap();
        w.append_row(&file_row(mode, "readfile1", "ops_per_sec", 10.0))
            .unwrap();
        w.append_row(&file_row(mode, "readfile1", "us_per_op", 5.0))
            .unwrap();
    }
    let mut m = manifest(&id, &["native", "fast"]);
    m.suites = vec![Suite::File];
    let run = w.finish(m).unwrap();
    paper_figures::render(std::slice::from_ref(&run.dir), None).unwrap();
    let md = fs::read_to_string(run.dir.join("figures/table.md")).unwrap();
    let cells = parse_tables(&md, 2);
    let benchmark_rows: Vec<&(String, String)> = cells
        .keys()
        .filter(|(_, label)| !label.contains("geometric"))
        .collect();
    assert_eq!(
        benchmark_rows,
        [&("file".to_owned(), "fileserver".to_owned())],
        "only the personality's total throughput, labelled without its fixed nfiles: {md}"
    );
}

/// The before run with a hand-written `kdbt_stats.csv`: per-slot counts and counters over
/// the measured samples, for fast (inscount,indirect in its spec: no, so "client off") and
/// for drk.
#[test]
fn per_slot_statistics_give_the_cold_start_table_and_the_prof_table() {
    let root = tempfile::tempdir().unwrap();
    let dir = copy_run(BEFORE, root.path());
    let mut csv = String::from("boot,round,mode,suite,benchmark,counter,value\n");
    for (round, blocks) in [(0, 7000), (1, 7200)] {
        csv.push_str(&format!(
            "0,{round},fast,micro,lat_syscall null,translator_blocks_translated,{blocks}\n\
             0,{round},fast,micro,lat_syscall null,translator_native_bytes_translated,{}\n\
             0,{round},fast,micro,lat_syscall null,translator_translate_tsc,{}\n\
             0,{round},fast,micro,lat_syscall null,measured:dispatcher_entries,50\n\
             0,{round},fast,micro,lat_syscall null,measured:insns_executed,0\n\
             0,{round},fast,micro,lat_syscall null,measured:ops,100000\n",
            blocks * 100,
            blocks * 5000
        ));
    }
    csv.push_str("1,0,drk,micro,lat_syscall null,translator_cache_full_native,3\n");
    fs::write(dir.join("kdbt_stats.csv"), csv).unwrap();
    let out = root.path().join("out");
    paper_figures::render(std::slice::from_ref(&dir), Some(&out)).unwrap();
    let figures = out.join(BEFORE);
    let table = fs::read_to_string(figures.join("table.md")).unwrap();
    // Median of 7000 and 7200 blocks; of 700,000 and 720,000 bytes = 693 KiB; of 35 and 36
    // million ticks in the dispatcher and translator.
    assert!(
        table.contains("| micro: lat_syscall null | 7100 / 693 / 35.5 |"),
        "{table}"
    );
    assert!(
        table.contains("**Slots that ran new code natively**"),
        "{table}"
    );
    assert!(table.contains("translator_cache_full_native 3"), "{table}");
    let prof = fs::read_to_string(figures.join("prof.md")).unwrap();
    // 50 dispatcher entries over 100,000 operations; fast's spec has no inscount client.
    assert!(prof.contains("| lat_syscall null | 0.000500 |"), "{prof}");
    assert!(prof.contains("client off"), "{prof}");
}

#[test]
fn rows_whose_time_had_every_cpu_idle_are_listed_with_their_largest_share() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse("20260503-000000-1234567").unwrap();
    let mut w = RunWriter::create(root.path(), &id).unwrap();
    for (mode, bench, share) in [
        ("native", "lat_proc shell", 0.08),
        ("fast", "lat_proc shell", 0.31),
        ("native", "lat_pipe", 0.0),
        ("fast", "lat_pipe", 0.049),
    ] {
        let mut row = sample(mode, bench, 2.0);
        row.all_idle_share = Some(share);
        w.append_row(&row).unwrap();
    }
    let run = w.finish(manifest(&id, &["native", "fast"])).unwrap();
    paper_figures::render(std::slice::from_ref(&run.dir), None).unwrap();
    let md = fs::read_to_string(run.dir.join("figures/table.md")).unwrap();
    let section = &md[md.find("## Time with every CPU idle").expect("section")..];
    assert!(
        section.contains("lat_proc shell in fast (31%); lat_proc shell in native (8%)."),
        "{section}"
    );
    assert!(!section.contains("lat_pipe"), "{section}");
}
