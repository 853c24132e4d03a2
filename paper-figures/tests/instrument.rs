//! The instrumentation figure of a synthetic instrumentation run: result sets `funcs-hot-1/`
//! (1 function), `funcs-hot-10/` (10) and `funcs-fs/` (100), each with native, fast,
//! fast:funccount, drk, drk:funccount, kprobes and ftrace on `lat_syscall null` (µs, lower is
//! better, with function entries counted over its measured samples) and `ab` (requests/s);
//! kprobes fails `ab` with the `fs` list. Expected numbers are worked out here by hand from
//! the values written.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use kdbt_harness::instrument::LIST_FILE;
use kdbt_harness::slot_stats::SlotStat;
use kdbt_harness::store::{Better, Failure, Params, RunId, RunWriter, Suite};
use paper_figures::instrument::{Cost, Instrument, PerHit};

mod support;
use support::{manifest, sample};

const PARENT: &str = "20260505-080000-1234567";
const MODES: [&str; 7] = [
    "native",
    "fast",
    "fast:funccount",
    "drk",
    "drk:funccount",
    "kprobes",
    "ftrace",
];

/// (list name, functions in it, function entries per `lat_syscall null` call it counts).
const LISTS: [(&str, usize, f64); 3] = [("hot-1", 1, 2.0), ("hot-10", 10, 5.0), ("fs", 100, 0.0)];

/// `lat_syscall null` per mode: (baseline's median in µs, guest instructions each counted
/// entry adds). Under icount 1 µs is 1000 instructions.
fn syscall_us(mode: &str, hits: f64) -> f64 {
    let (base, per_hit) = match mode {
        "native" => (0.200, 0.0),
        "fast" => (0.250, 0.0),
        "fast:funccount" => (0.250, 10.0),
        "drk" => (0.300, 0.0),
        "drk:funccount" => (0.300, 12.0),
        "kprobes" => (0.200, 500.0),
        "ftrace" => (0.200, 100.0),
        _ => unreachable!(),
    };
    base + hits * per_hit / 1000.0
}

/// `ab`'s slowdown per mode, the same with every list.
fn ab_factor(mode: &str) -> f64 {
    match mode {
        "native" => 1.0,
        "fast" => 1.25,
        "fast:funccount" => 1.3,
        "drk" => 1.5,
        "drk:funccount" => 1.6,
        "kprobes" => 2.0,
        "ftrace" => 1.1,
        _ => unreachable!(),
    }
}

/// Three samples around `median` (its median), so the figure must take the median; half their
/// interquartile range is 10% of it.
fn around(median: f64) -> [f64; 3] {
    [median * 0.9, median, median * 1.3]
}

/// Operations timed in the measured samples of each of the three rounds, and the entries per
/// operation of each against the list's (×0.5, ×1, ×3: the median over the slots is the
/// list's).
const ROUNDS: [(u64, f64); 3] = [(1000, 0.5), (2000, 1.0), (500, 3.0)];

/// Writes the set of the `k`th list with `modes` into `parent/funcs-<list>/`.
fn write_set(parent: &Path, k: usize, modes: &[&str], with_ab: bool) -> PathBuf {
    let (list, functions, hits) = LISTS[k];
    let id = RunId::parse(&format!("20260505-08000{k}-1234567")).unwrap();
    let mut w = RunWriter::create(parent, &id).unwrap();
    for &mode in modes {
        for (round, v) in around(syscall_us(mode, hits)).into_iter().enumerate() {
            let mut row = sample(mode, "lat_syscall null", v);
            row.round = round as u32;
            w.append_row(&row).unwrap();
            let (ops, scale) = ROUNDS[round];
            let stat = |counter: &str, value: u64| SlotStat {
                boot: 0,
                round: round as u32,
                mode: mode.into(),
                suite: Suite::Micro,
                benchmark: "lat_syscall null".into(),
                counter: format!("measured:{counter}"),
                value,
            };
            let mut stats = vec![stat("ops", ops)];
            if mode.contains("funccount") || mode == "kprobes" || mode == "ftrace" {
                stats.push(stat("func_hits", (ops as f64 * hits * scale) as u64));
            }
            w.append_slot_stats(stats).unwrap();
        }
        if !with_ab {
            continue;
        }
        if mode == "kprobes" && list == "fs" {
            w.append_failure(Failure {
                boot: 0,
                round: 0,
                mode: mode.into(),
                suite: Suite::Apache,
                benchmark: "ab".into(),
                params: Params::from_pairs([("concurrency", "8")]).unwrap(),
                reason: "the guest kernel reported trouble: Oops".into(),
                console_log: Some("console-boot0.log".into()),
            })
            .unwrap();
            continue;
        }
        for (round, v) in around(1000.0 / ab_factor(mode)).into_iter().enumerate() {
            let mut row = sample(mode, "ab", v);
            row.round = round as u32;
            row.suite = Suite::Apache;
            row.params = Params::from_pairs([("concurrency", "8")]).unwrap();
            row.metric = "requests_per_sec".into();
            row.unit = "req/s".into();
            row.better = Some(Better::Higher);
            w.append_row(&row).unwrap();
        }
    }
    let mut m = manifest(&id, modes);
    m.reps = 3;
    m.suites = vec![Suite::Micro, Suite::Apache];
    // As `Matrix::digest`, it differs with the modes or benchmarks (not with the list).
    m.matrix_digest = format!("{:08x}{:08x}", modes.len(), u8::from(with_ab));
    let run = w.finish(m).unwrap();
    let to = parent.join(format!("funcs-{list}"));
    fs::rename(&run.dir, &to).unwrap();
    let names: Vec<String> = (0..functions).map(|i| format!("f{i}\n")).collect();
    fs::write(to.join(LIST_FILE), format!("# {list}\n{}", names.concat())).unwrap();
    to
}

/// An instrumentation run under `root`; returns its directory.
fn instrument_run(root: &Path) -> PathBuf {
    let parent = root.join(PARENT);
    fs::create_dir(&parent).unwrap();
    for k in 0..LISTS.len() {
        write_set(&parent, k, &MODES, true);
    }
    parent
}

/// The rows of the table under the heading that starts with `heading`: first cell → the rest.
fn table(md: &str, heading: &str) -> HashMap<String, Vec<String>> {
    let section = md
        .split_once(&format!("\n{heading}"))
        .unwrap_or_else(|| panic!("no {heading:?} in:\n{md}"))
        .1;
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter(|l| !l.starts_with("|---") && !l.starts_with("| Set"))
        .map(|line| {
            let cols: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            (cols[0].clone(), cols[1..].to_vec())
        })
        .collect()
}

#[test]
fn the_slowdown_tables_give_each_mode_against_native_within_each_set() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    let md = fs::read_to_string(parent.join("figures/instrument.md")).unwrap();
    assert!(
        md.contains(
            "| Set | Functions | fast | fast:funccount | drk | drk:funccount | kprobes | ftrace |"
        ),
        "{md}"
    );
    let syscall = table(&md, "### micro: lat_syscall null");
    // Set hot-1, 2 entries a call: fast:funccount 0.250 + 2 × 10 insns = 0.270 µs of 0.200,
    // drk:funccount 0.324, kprobes 0.200 + 2 × 500 = 1.200, ftrace 0.400.
    assert_eq!(
        syscall["hot-1"],
        [
            "1",
            "1.25× ±10.0%",
            "1.35× ±10.0%",
            "1.50× ±10.0%",
            "1.62× ±10.0%",
            "6.00× ±10.0%",
            "2.00× ±10.0%"
        ]
    );
    // hot-10, 5 entries a call: 0.300, 0.360, 2.700 and 0.700 µs.
    assert_eq!(
        syscall["hot-10"],
        [
            "10",
            "1.25× ±10.0%",
            "1.50× ±10.0%",
            "1.50× ±10.0%",
            "1.80× ±10.0%",
            "13.50× ±10.0%",
            "3.50× ±10.0%"
        ]
    );
    // fs counts nothing on a null syscall: every method runs at its baseline's speed.
    assert_eq!(syscall["fs"][..3], ["100", "1.25× ±10.0%", "1.25× ±10.0%"]);
    // ab: native/translated from requests/s, the same with every list; kprobes failed with fs.
    let ab = table(&md, "### apache: ab");
    assert_eq!(
        ab["hot-10"],
        [
            "10",
            "1.25× ±10.0%",
            "1.30× ±10.0%",
            "1.50× ±10.0%",
            "1.60× ±10.0%",
            "2.00× ±10.0%",
            "1.10× ±10.0%"
        ]
    );
    assert_eq!(ab["fs"][5], "failed [1]");
    assert!(
        md.contains(
            "[1] kprobes with `funcs-fs/` on ab: the guest kernel reported trouble: Oops \
             (boot 0 round 0, console log `console-boot0.log`)"
        ),
        "{md}"
    );
    assert!(md.contains("- hot-10 (10 functions): `funcs-hot-10/`, run 20260505-080001-1234567"));
    assert!(md.contains("Steady-state medians, per mode, one boot per set"));
    assert!(md.contains("Under icount, time is guest instructions."));
    assert!(md.contains("JIFL's figure"));
}

#[test]
fn the_cost_of_a_hit_is_the_difference_from_the_baseline_over_the_hits_per_operation() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    let md = fs::read_to_string(parent.join("figures/instrument.md")).unwrap();
    let costs = table(&md, "## Cost per function entry");
    assert!(
        md.contains(
            "| Set | Functions | fast:funccount hits/op | fast:funccount insns/hit | \
             drk:funccount hits/op | drk:funccount insns/hit | kprobes hits/op | \
             kprobes insns/hit | ftrace hits/op | ftrace insns/hit |"
        ),
        "{md}"
    );
    // The costs written into the times come back: 10, 12, 500 and 100 instructions a hit,
    // each method against its own baseline (fast, drk, native, native).
    assert_eq!(
        costs["hot-1"],
        ["1", "2.00", "10.0", "2.00", "12.0", "2.00", "500", "2.00", "100"]
    );
    assert_eq!(
        costs["hot-10"],
        ["10", "5.00", "10.0", "5.00", "12.0", "5.00", "500", "5.00", "100"]
    );
    assert_eq!(costs["fs"][1..], ["no hits"; 8]);
    for said in [
        "`fast:funccount` against `fast` (the same kdbt mode without counting",
        "`drk:funccount` against `drk`",
        "`kprobes` against `native` (it counts on the native kernel)",
        "`ftrace` against `native`",
    ] {
        assert!(md.contains(said), "{said:?} in:\n{md}");
    }
}

#[test]
fn the_run_as_numbers_gives_hits_per_operation_as_the_median_over_slots() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    let sets = kdbt_harness::instrument::sets(&parent).unwrap().unwrap();
    let lists: Vec<(String, usize)> = sets.iter().map(|(s, n, _)| (s.clone(), *n)).collect();
    let dirs: Vec<PathBuf> = sets.iter().map(|(.., d)| d.clone()).collect();
    let runs = paper_figures::load::load_runs(&dirs).unwrap();
    let ins = Instrument::new(PARENT, &lists, &runs).unwrap();
    let labels: Vec<(&str, usize)> = ins
        .sets
        .iter()
        .map(|s| (s.label.as_str(), s.functions))
        .collect();
    assert_eq!(labels, [("hot-1", 1), ("hot-10", 10), ("fs", 100)]);
    let methods: Vec<(&str, &str)> = ins
        .methods
        .iter()
        .map(|m| (ins.modes[m.mode].as_str(), ins.modes[m.baseline].as_str()))
        .collect();
    assert_eq!(
        methods,
        [
            ("fast:funccount", "fast"),
            ("drk:funccount", "drk"),
            ("kprobes", "native"),
            ("ftrace", "native")
        ]
    );
    assert_eq!(
        ins.hits.len(),
        3,
        "lat_syscall null in each set; ab counts nothing"
    );
    let hot10 = &ins.hits[1];
    assert_eq!((hot10.set, hot10.label.as_str()), (1, "lat_syscall null"));
    for (cell, want) in hot10.cells.iter().zip([10.0, 12.0, 500.0, 100.0]) {
        let PerHit::Counted {
            hits_per_op,
            cost: Cost::Ns(cost),
        } = *cell
        else {
            panic!("{cell:?}");
        };
        assert!((hits_per_op - 5.0).abs() < 1e-12, "{hits_per_op}");
        assert!((cost - want).abs() < 1e-9, "{cost} for {want}");
    }
    assert!(ins.hits[2].cells.iter().all(|c| *c == PerHit::NoHits));
}

#[test]
fn render_draws_each_set_and_the_instrumentation_chart_into_the_parent() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    let written = paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    for (list, ..) in LISTS {
        let table = parent.join(format!("funcs-{list}/figures/table.md"));
        assert!(written.contains(&table), "{written:?}");
    }
    let figures = parent.join("figures");
    assert_eq!(
        written[written.len() - 3..],
        ["instrument.md", "instrument.svg", "instrument.png"].map(|f| figures.join(f))
    );
    let svg = fs::read_to_string(figures.join("instrument.svg")).unwrap();
    // plotters writes each text element's content on a line of its own, XML-escaped.
    let has_text = |text: &str| svg.lines().any(|l| l.trim() == text);
    assert!(has_text(&format!(
        "Overhead vs instrumented functions (JIFL&apos;s figure, EuroSys&apos;07, plus ftrace), run {PARENT}"
    )));
    for text in [
        "lat_syscall null",
        "ab",
        "fast:funccount",
        "fast (dashed)",
        "drk (dashed)",
        "kprobes (failed somewhere: × on the axis)",
        "ftrace",
        "functions in the set, log scale",
        "slowdown vs native (IQR bars)",
    ] {
        assert!(has_text(text), "instrument.svg lacks {text:?}");
    }
    let png = fs::read(figures.join("instrument.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "instrument.png looks empty");
}

#[test]
fn with_out_the_instrumentation_figure_goes_under_the_runs_name() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    let out = root.path().join("out");
    let written = paper_figures::render(std::slice::from_ref(&parent), Some(&out)).unwrap();
    assert!(written.contains(&out.join(PARENT).join("instrument.md")));
    assert!(written.contains(&out.join("20260505-080001-1234567/table.md")));
    assert!(!parent.join("figures").exists());
}

/// Renders `parent` expecting an error, and checks nothing was written.
fn refused(parent: &Path) -> String {
    let err = format!(
        "{:#}",
        paper_figures::render(&[parent.to_owned()], None).unwrap_err()
    );
    assert!(!parent.join("figures").exists(), "{err}");
    for (list, ..) in LISTS {
        assert!(!parent.join(format!("funcs-{list}/figures")).exists());
    }
    err
}

#[test]
fn sets_with_different_modes_are_refused_before_writing() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    write_set(&parent, 0, &MODES, true);
    write_set(&parent, 1, &MODES[..6], true);
    let err = refused(&parent);
    assert!(
        err.contains("sets funcs-hot-1 and funcs-hot-10 ran different modes"),
        "{err}"
    );
}

#[test]
fn sets_with_different_benchmarks_are_refused_before_writing() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    write_set(&parent, 0, &MODES, true);
    write_set(&parent, 1, &MODES, false);
    let err = refused(&parent);
    assert!(
        err.contains(
            "sets funcs-hot-1 and funcs-hot-10 ran different benchmarks (only in funcs-hot-1: \
             [apache ab]; only in funcs-hot-10: [])"
        ),
        "{err}"
    );
}

#[test]
fn a_set_without_native_is_refused_before_writing() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    write_set(&parent, 0, &MODES[1..], true);
    write_set(&parent, 1, &MODES[1..], true);
    let err = refused(&parent);
    assert!(err.contains("set funcs-hot-1 has no native mode"), "{err}");
}

#[test]
fn an_instrumentation_run_is_drawn_alone() {
    let root = tempfile::tempdir().unwrap();
    let parent = instrument_run(root.path());
    let set = parent.join("funcs-hot-1");
    let err = format!(
        "{:#}",
        paper_figures::render(&[set, parent.clone()], None).unwrap_err()
    );
    assert!(
        err.contains("is an instrumentation run: draw it alone"),
        "{err}"
    );
    // One of its sets alone is an ordinary result set.
    let written = paper_figures::render(&[parent.join("funcs-fs")], None).unwrap();
    assert_eq!(written[0], parent.join("funcs-fs/figures/table.md"));
}

#[test]
fn without_the_plain_kdbt_mode_funccount_is_measured_against_native() {
    let root = tempfile::tempdir().unwrap();
    let parent = root.path().join(PARENT);
    fs::create_dir(&parent).unwrap();
    for k in 0..2 {
        write_set(&parent, k, &["native", "fast:funccount", "kprobes"], false);
    }
    paper_figures::render(std::slice::from_ref(&parent), None).unwrap();
    let md = fs::read_to_string(parent.join("figures/instrument.md")).unwrap();
    assert!(
        md.contains(
            "- `fast:funccount` against `native` (the same kdbt mode without counting was not \
             run, so this cost includes translation's own)"
        ),
        "{md}"
    );
    // hot-1: (0.270 − 0.200) µs = 70 instructions over 2 entries a call.
    let costs = table(&md, "## Cost per function entry");
    assert_eq!(costs["hot-1"], ["1", "2.00", "35.0", "2.00", "500"]);
    assert_eq!(costs["hot-10"], ["10", "5.00", "20.0", "5.00", "500"]);
}
