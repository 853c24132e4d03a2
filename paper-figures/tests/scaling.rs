//! The scaling figure of a synthetic scaling run: result sets at 1, 2 and 4 vCPUs in
//! `vcpus-<n>/`, native, fast and drk on `lat_pipe` (µs, lower is better) and `ab`
//! (requests/s); drk fails `lat_pipe` at 4 vCPUs. Expected numbers are worked out here by
//! hand from the values written.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kdbt_harness::store::{Better, Clock, Failure, Params, RunId, RunWriter, Suite};

mod support;
use support::{manifest, sample};

const VCPUS: [u32; 3] = [1, 2, 4];
const PARENT: &str = "20260504-080000-1234567";

/// Native medians per vCPU count: `lat_pipe` in µs, `ab` in requests/s.
const PIPE_NATIVE: [f64; 3] = [2.0, 2.5, 3.0];
const AB_NATIVE: [f64; 3] = [1000.0, 900.0, 800.0];

/// Three samples around `median` (its median), so the figure must take the median.
fn around(median: f64) -> [f64; 3] {
    [median * 0.9, median, median * 1.3]
}

/// Writes the set for the `k`th count with `vcpus` vCPUs (`clock` for all of it) into
/// `parent/vcpus-<n>/`.
fn write_set(parent: &Path, k: usize, vcpus: u32, clock: Clock) -> PathBuf {
    let id = RunId::parse(&format!("20260504-08000{k}-1234567")).unwrap();
    let mut w = RunWriter::create(parent, &id).unwrap();
    // fast costs 1.25× native everywhere, drk 1.5× (and fails lat_pipe at 4 vCPUs).
    for (mode, factor) in [("native", 1.0), ("fast", 1.25), ("drk", 1.5)] {
        if !(mode == "drk" && vcpus == 4) {
            for (i, v) in around(PIPE_NATIVE[k] * factor).into_iter().enumerate() {
                let mut row = sample(mode, "lat_pipe", v);
                row.sample = i as u32;
                w.append_row(&row).unwrap();
            }
        }
        for (i, v) in around(AB_NATIVE[k] / factor).into_iter().enumerate() {
            let mut row = sample(mode, "ab", v);
            row.suite = Suite::Apache;
            row.params =
                Params::from_pairs([("concurrency", "32"), ("file_bytes", "10240")]).unwrap();
            row.metric = "requests_per_sec".into();
            row.unit = "req/s".into();
            row.better = Some(Better::Higher);
            row.sample = i as u32;
            w.append_row(&row).unwrap();
        }
    }
    if vcpus == 4 {
        w.append_failure(Failure {
            boot: 0,
            round: 0,
            mode: "drk".into(),
            suite: Suite::Micro,
            benchmark: "lat_pipe".into(),
            params: Params::none(),
            reason: "the guest kernel reported trouble: Oops".into(),
            console_log: Some("console-boot0.log".into()),
        })
        .unwrap();
    }
    let mut m = manifest(&id, &["native", "fast", "drk"]);
    m.guest.vcpus = vcpus;
    m.clock = clock;
    m.suites = vec![Suite::Micro, Suite::Apache];
    m.matrix_digest = "0011223344556677".into();
    let run = w.finish(m).unwrap();
    let to = parent.join(format!("vcpus-{vcpus}"));
    fs::rename(&run.dir, &to).unwrap();
    to
}

/// A scaling run under `root`; returns its directory.
fn scaling_run(root: &Path) -> PathBuf {
    let parent = root.join(PARENT);
    fs::create_dir(&parent).unwrap();
    for (k, &n) in VCPUS.iter().enumerate() {
        write_set(&parent, k, n, Clock::Icount);
    }
    parent
}

/// (label, mode) → the cells of the vCPU columns, from every table of `scaling.md`.
fn parse(md: &str) -> HashMap<(String, String), Vec<String>> {
    let mut cells = HashMap::new();
    let mut label = String::new();
    for line in md.lines() {
        if !line.starts_with('|') || line.starts_with("|---") || line.starts_with("| Benchmark") {
            continue;
        }
        let cols: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        if !cols[0].is_empty() {
            label = cols[0].clone();
        }
        cells.insert((label.clone(), cols[2].clone()), cols[3..].to_vec());
    }
    cells
}

#[test]
fn the_table_gives_throughput_from_medians_and_the_slowdown_within_each_set() {
    let root = tempfile::tempdir().unwrap();
    let parent = scaling_run(root.path());
    paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    let md = fs::read_to_string(parent.join("figures/scaling.md")).unwrap();
    let cells = parse(&md);
    let row = |label: &str, mode: &str| cells[&(label.to_owned(), mode.to_owned())].clone();
    // lat_pipe: 10⁶ / median µs. Native 2.0, 2.5, 3.0 µs; fast 1.25× those.
    assert_eq!(row("lat_pipe", "native"), ["500k", "400k", "333k"]);
    assert_eq!(
        row("lat_pipe", "fast"),
        ["400k (1.25×)", "320k (1.25×)", "267k (1.25×)"]
    );
    let drk = row("lat_pipe", "drk");
    assert_eq!(drk[..2], ["333k (1.50×)", "267k (1.50×)"]);
    assert!(drk[2].starts_with("failed ["), "{drk:?}");
    // ab: requests/s as measured; native 1000, 900, 800, fast and drk slower by 1.25 and 1.5.
    assert_eq!(row("ab", "native"), ["1.00k", "900", "800"]);
    assert_eq!(
        row("ab", "fast"),
        ["800 (1.25×)", "720 (1.25×)", "640 (1.25×)"]
    );
    assert_eq!(
        row("ab", "drk"),
        ["667 (1.50×)", "600 (1.50×)", "533 (1.50×)"]
    );
    assert!(md.contains("| lat_pipe | ops/s ↑ | native |"), "{md}");
    assert!(md.contains("| ab | req/s ↑ | native |"), "{md}");
    assert!(
        md.contains("| Benchmark | Throughput | Mode | 1 vCPU | 2 vCPUs | 4 vCPUs |"),
        "{md}"
    );
    assert!(md.contains(
        "**TCG, one host thread (icount): throughput here is guest instructions per operation \
         as vCPUs are added, not parallel speed-up.**"
    ));
    assert!(
        md.contains(
            "[1] drk at 4 vCPUs (`vcpus-4/`) on lat_pipe: the guest kernel reported trouble: Oops \
         (boot 0 round 0, console log `console-boot0.log`)"
        ),
        "{md}"
    );
    assert!(
        md.contains("- 4 vCPUs: `vcpus-4/`, run 20260504-080002-1234567"),
        "{md}"
    );
}

#[test]
fn render_draws_each_set_and_the_scaling_chart_into_the_parent() {
    let root = tempfile::tempdir().unwrap();
    let parent = scaling_run(root.path());
    let written = paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    for n in VCPUS {
        let table = parent.join(format!("vcpus-{n}/figures/table.md"));
        assert!(written.contains(&table), "{written:?}");
    }
    let figures = parent.join("figures");
    assert_eq!(
        written[written.len() - 3..],
        ["scaling.md", "scaling.svg", "scaling.png"].map(|f| figures.join(f))
    );
    let svg = fs::read_to_string(figures.join("scaling.svg")).unwrap();
    // plotters writes each text element's content on a line of its own.
    let has_text = |text: &str| svg.lines().any(|l| l.trim() == text);
    assert!(has_text(
        "TCG, one host thread (icount): throughput here is guest instructions per operation \
         as vCPUs are added, not parallel speed-up."
    ));
    for text in [
        "lat_pipe",
        "ab",
        "native",
        "fast",
        "vCPUs, log scale",
        "req/s ↑ (median, IQR bars)",
    ] {
        assert!(has_text(text), "scaling.svg lacks {text:?}");
    }
    assert!(has_text(
        "drk (failed somewhere: × on the axis, see scaling.md)"
    ));
    let png = fs::read(figures.join("scaling.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "scaling.png looks empty");
}

#[test]
fn with_out_the_scaling_figure_goes_under_the_runs_name() {
    let root = tempfile::tempdir().unwrap();
    let parent = scaling_run(root.path());
    let out = root.path().join("out");
    let written = paper_figures::render(std::slice::from_ref(&parent), Some(&out)).unwrap();
    assert!(written.contains(&out.join(PARENT).join("scaling.md")));
    assert!(written.contains(&out.join("20260504-080001-1234567/table.md")));
    assert!(!parent.join("figures").exists());
}

#[test]
fn a_set_whose_manifest_gives_another_vcpu_count_is_refused_before_writing() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    write_set(&parent, 0, 1, Clock::Icount);
    let two = write_set(&parent, 1, 2, Clock::Icount);
    fs::rename(&two, parent.join("vcpus-4")).unwrap();
    let err = format!(
        "{:#}",
        paper_figures::render(std::slice::from_ref(&parent), None).unwrap_err()
    );
    assert!(err.contains("the set for 4 vCPU(s) ran with 2"), "{err}");
    assert!(!parent.join("figures").exists());
    assert!(!parent.join("vcpus-1/figures").exists());
}

#[test]
fn sets_under_different_clocks_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    write_set(&parent, 0, 1, Clock::Icount);
    write_set(&parent, 1, 2, Clock::Wall);
    let err = format!(
        "{:#}",
        paper_figures::render(std::slice::from_ref(&parent), None).unwrap_err()
    );
    assert!(err.contains("different accelerators or clocks"), "{err}");
}

#[test]
fn a_scaling_run_is_drawn_alone() {
    let root = tempfile::tempdir().unwrap();
    let parent = scaling_run(root.path());
    let set = parent.join("vcpus-1");
    let err = format!(
        "{:#}",
        paper_figures::render(&[set, parent.clone()], None).unwrap_err()
    );
    assert!(err.contains("is a scaling run: draw it alone"), "{err}");
    // One of its sets alone is an ordinary result set.
    let written = paper_figures::render(&[parent.join("vcpus-2")], None).unwrap();
    assert_eq!(written[0], parent.join("vcpus-2/figures/table.md"));
}
