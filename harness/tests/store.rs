//! The results store against a hand-written golden run (`tests/fixtures/store/golden/`),
//! guest records (`tests/fixtures/store/guest-records.jsonl`) and malformed variants of both.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kdbt_harness::store::{
    list_runs, Accelerator, BenchRecord, Better, Clock, Durations, Failure, GitInfo, GuestInfo,
    HostInfo, Manifest, Params, Run, RunId, RunWriter, SampleRow, Slot, Status, Suite,
    MANIFEST_FILE, PARTIAL_PREFIX, SAMPLES_FILE, SAMPLE_COLUMNS, SCHEMA_VERSION,
};

const GOLDEN_ID: &str = "20260501-120000-abc1234";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store")
}

fn golden_dir() -> PathBuf {
    fixtures().join("golden").join(GOLDEN_ID)
}

/// A writable copy of the golden run, for tests that break it.
fn golden_copy() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(GOLDEN_ID);
    fs::create_dir(&dir).unwrap();
    for f in [MANIFEST_FILE, SAMPLES_FILE] {
        fs::copy(golden_dir().join(f), dir.join(f)).unwrap();
    }
    (tmp, dir)
}

fn edit(path: &Path, f: impl FnOnce(String) -> String) {
    let text = fs::read_to_string(path).unwrap();
    let new = f(text.clone());
    assert_ne!(new, text, "the edit of {} changed nothing", path.display());
    fs::write(path, new).unwrap();
}

/// Replaces line `n` (1-based, as the error messages count) of `samples.csv`.
fn replace_csv_line(dir: &Path, n: usize, line: &str) {
    edit(&dir.join(SAMPLES_FILE), |text| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines[n - 1] = line;
        lines.join("\n") + "\n"
    });
}

fn csv_line(dir: &Path, n: usize) -> String {
    fs::read_to_string(dir.join(SAMPLES_FILE))
        .unwrap()
        .lines()
        .nth(n - 1)
        .unwrap()
        .to_owned()
}

fn load_error(dir: &Path) -> String {
    format!(
        "{:#}",
        Run::load(dir).expect_err("the run should be rejected")
    )
}

fn guest_records() -> Vec<BenchRecord> {
    fs::read_to_string(fixtures().join("guest-records.jsonl"))
        .unwrap()
        .lines()
        .map(|l| BenchRecord::from_json_line(l).unwrap())
        .collect()
}

fn manifest(run_id: &RunId, modes: &[&str]) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        run_id: run_id.clone(),
        created_utc: "2026-05-01T12:00:00Z".into(),
        git: GitInfo {
            revision: "abc1234def5678abc1234def5678abc1234def56".into(),
            dirty: true,
        },
        host: HostInfo {
            cpu_model: "Test CPU".into(),
            cores: 2,
            memory_mib: 4096,
        },
        accelerator: Accelerator::Tcg,
        clock: Clock::Icount,
        guest: GuestInfo {
            kernel_release: "6.12.22-kdbt".into(),
            config_hash: "5f0c1e9a".into(),
            vcpus: 1,
            memory_mib: 1024,
        },
        modes: modes.iter().map(|m| m.to_string()).collect(),
        suites: Suite::ALL.to_vec(),
        reps: 1,
        boots: 1,
        seeds: vec![1, 2],
        durations: Durations {
            total_s: 10.5,
            per_mode_s: modes.iter().map(|m| (m.to_string(), 1.25)).collect(),
        },
        kdbt_stats: BTreeMap::from([(
            modes[1].to_string(),
            BTreeMap::from([("inscount".to_string(), u64::MAX)]),
        )]),
        failures: vec![],
        command_line: vec!["cargo".into(), "xtask".into(), "bench".into()],
        matrix_digest: String::new(),
        shard: None,
    }
}

#[test]
fn golden_run_loads_with_manifest_and_rows_parsed() {
    let run = Run::load(&golden_dir()).unwrap();
    let m = &run.manifest;
    assert_eq!(m.run_id.as_str(), GOLDEN_ID);
    assert_eq!(m.accelerator, Accelerator::Tcg);
    assert_eq!(m.clock, Clock::Icount);
    assert_eq!(m.modes, ["native", "fast", "drk"]);
    assert_eq!(m.suites, [Suite::Micro, Suite::Apache]);
    assert_eq!(m.guest.kernel_release, "6.12.22-kdbt");
    assert_eq!(m.durations.per_mode_s["drk"], 98.25);
    assert_eq!(m.kdbt_stats["fast"]["jumptable_hits"], 5120);
    assert_eq!(m.failures.len(), 2);
    assert_eq!(
        m.failures[0].console_log.as_deref(),
        Some(Path::new("console/boot0.log"))
    );

    assert_eq!(run.samples.len(), 50);
    let first = &run.samples[0];
    assert_eq!(
        (first.mode.as_str(), first.suite, first.benchmark.as_str()),
        ("native", Suite::Micro, "lat_syscall null")
    );
    assert_eq!(first.value, Some(0.20));
    assert_eq!(first.better, Some(Better::Lower));
    assert!(first.params.is_empty());

    let failed: Vec<&SampleRow> = run
        .samples
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    assert_eq!(failed.len(), 2);
    for row in failed {
        assert_eq!(row.mode, "drk");
        assert_eq!(row.value, None);
        assert_eq!(row.better, None);
        assert_eq!(row.params.get_f64("concurrency"), Some(8.0));
        assert!(row.reason.as_deref().unwrap().starts_with("guest crashed"));
    }
}

#[test]
fn writer_then_reader_round_trips_records_failures_and_manifest() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::new(1_777_636_800, "abc1234def5678").unwrap();
    let mut writer = RunWriter::create(root.path(), &id).unwrap();
    assert_eq!(
        writer.dir(),
        root.path().join(format!("{PARTIAL_PREFIX}{}", id.as_str()))
    );
    assert!(
        list_runs(root.path()).unwrap().is_empty(),
        "a partial run is not listed"
    );

    let records = guest_records();
    let mut written = 0;
    for mode in ["native", "fast:no-jumptable,inscount"] {
        let slot = Slot {
            mode: mode.into(),
            boot: 0,
            round: 0,
        };
        for r in &records {
            written += writer.append_record(&slot, r).unwrap();
        }
    }
    let crash = Failure {
        boot: 0,
        round: 1,
        mode: "drk".into(),
        suite: Suite::Apache,
        benchmark: "ab".into(),
        params: Params::from_pairs([("concurrency", "8")]).unwrap(),
        reason: "guest crashed".into(),
        console_log: Some("console/boot0.log".into()),
    };
    writer.append_failure(crash.clone()).unwrap();
    written += 1;
    assert_eq!(writer.rows_written(), written as u64);

    let m = manifest(&id, &["native", "fast:no-jumptable,inscount", "drk"]);
    let finished = writer.finish(m.clone()).unwrap();
    let loaded = Run::load(&root.path().join(id.as_str())).unwrap();
    assert_eq!(finished, loaded);

    // 3 ok samples + 2 ok samples + 1 failed record, per mode; then the crash.
    assert_eq!(loaded.samples.len(), 2 * (3 + 2 + 1) + 1);
    let ab: Vec<&SampleRow> = loaded
        .samples
        .iter()
        .filter(|r| r.benchmark == "ab" && r.status == Status::Ok)
        .collect();
    assert_eq!(ab.len(), 4);
    assert_eq!(ab[0].params.to_string(), "concurrency=8;keepalive=off");
    assert_eq!(ab[1].value, Some(5100.0));
    assert_eq!(ab[1].sample, 1);
    assert_eq!(ab[1].iterations, Some(1000));
    // The warm-up's cost rides on every sample row of its record.
    let null = loaded
        .samples
        .iter()
        .find(|r| r.benchmark == "lat_syscall null")
        .unwrap();
    assert_eq!(
        (
            null.warmup_blocks,
            null.warmup_native_bytes,
            null.warmup_translate_tsc,
            null.warmup_settled
        ),
        (Some(840), Some(66458), Some(9_680_000), Some(true))
    );
    assert_eq!(ab[0].warmup_translate_tsc, None);
    let mode_with_comma: Vec<&SampleRow> = loaded
        .samples
        .iter()
        .filter(|r| r.mode == "fast:no-jumptable,inscount")
        .collect();
    assert_eq!(mode_with_comma.len(), 6);

    // The guest's own failure and the crash both reach the manifest, besides what it had.
    let mut expected = m;
    let fileserver_failure = |mode: &str| Failure {
        boot: 0,
        round: 0,
        mode: mode.into(),
        suite: Suite::File,
        benchmark: "fileserver".into(),
        params: Params::from_pairs([("files", "200")]).unwrap(),
        reason: "ENOSPC creating the file set".into(),
        console_log: None,
    };
    expected.failures = vec![
        fileserver_failure("native"),
        fileserver_failure("fast:no-jumptable,inscount"),
        crash,
    ];
    assert_eq!(loaded.manifest, expected);
}

/// A run being written under `root` with the first guest record appended (native, boot 0).
fn writer_with_one_record(root: &std::path::Path, id: &RunId) -> RunWriter {
    let mut writer = RunWriter::create(root, id).unwrap();
    let slot = Slot {
        mode: "native".into(),
        boot: 0,
        round: 0,
    };
    writer.append_record(&slot, &guest_records()[0]).unwrap();
    writer
}

#[test]
fn writer_flushes_rows_before_the_run_finishes() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::new(1_777_636_800, "abc1234").unwrap();
    let writer = writer_with_one_record(root.path(), &id);

    // Read while the writer is still open, as after a crash of the harness.
    let text = fs::read_to_string(writer.dir().join(SAMPLES_FILE)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], SAMPLE_COLUMNS.join(","));
    assert_eq!(lines.len(), 1 + 3);
    assert!(lines[3].starts_with("0,0,native,micro,lat_syscall null,,latency,us,lower,2,0.19,"));

    let err = load_error(writer.dir());
    assert!(err.contains("manifest.json: missing"), "{err}");
}

#[test]
fn writer_refuses_to_overwrite_an_existing_run() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse(GOLDEN_ID).unwrap();
    let _first = RunWriter::create(root.path(), &id).unwrap();
    let err = RunWriter::create(root.path(), &id).unwrap_err();
    assert!(format!("{err:#}").contains(GOLDEN_ID), "{err:#}");
}

#[test]
fn a_writer_dropped_unfinished_leaves_no_run_directory() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse(GOLDEN_ID).unwrap();
    drop(writer_with_one_record(root.path(), &id));
    let left: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn writer_refuses_a_manifest_of_another_run() {
    let root = tempfile::tempdir().unwrap();
    let id = RunId::parse(GOLDEN_ID).unwrap();
    let writer = RunWriter::create(root.path(), &id).unwrap();
    let other = RunId::parse("20260501-120001-abc1234").unwrap();
    let err = writer
        .finish(manifest(&other, &["native", "fast"]))
        .unwrap_err();
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
    assert!(!root.path().join(GOLDEN_ID).join(MANIFEST_FILE).exists());
}

#[test]
fn writer_refuses_rows_that_break_the_schema() {
    let root = tempfile::tempdir().unwrap();
    let mut writer = RunWriter::create(root.path(), &RunId::parse(GOLDEN_ID).unwrap()).unwrap();
    let slot = Slot {
        mode: "native".into(),
        boot: 0,
        round: 0,
    };
    let mut nan = guest_records()[0].clone();
    nan.samples[1] = f64::NAN;
    assert!(writer.append_record(&slot, &nan).is_err());
    let mut empty = guest_records()[0].clone();
    empty.samples.clear();
    assert!(writer.append_record(&slot, &empty).is_err());
    assert_eq!(writer.rows_written(), 0);
}

#[test]
fn run_ids_are_utc_timestamps_with_short_revision_and_sort_by_time() {
    let id = RunId::new(1_700_000_000, "ABC1234def").unwrap();
    assert_eq!(id.as_str(), "20231114-221320-abc1234");
    assert_eq!(id.short_rev(), "abc1234");
    let later = RunId::new(1_700_000_001, "0000000").unwrap();
    assert!(id < later);
    assert_eq!(RunId::parse(id.as_str()).unwrap(), id);
    for bad in [
        "20231114-221320",
        "20231114-221320-abc12",
        "20231314-221320-abc1234",
        "2023111-221320-abc1234",
        "20231114-251320-abc1234",
        "20231114-221320-ABC1234",
        "20231114-221320-xyz1234",
    ] {
        assert!(RunId::parse(bad).is_err(), "{bad} was accepted");
    }
    assert!(RunId::new(0, "not-hex").is_err());
}

#[test]
fn list_runs_finds_run_directories_oldest_first() {
    let root = tempfile::tempdir().unwrap();
    for name in [
        "20260502-000000-abc1234",
        "20260501-000000-abc1234",
        "figures",
    ] {
        fs::create_dir(root.path().join(name)).unwrap();
    }
    fs::write(root.path().join("20260503-000000-abc1234"), "a file").unwrap();
    let runs = list_runs(root.path()).unwrap();
    let names: Vec<_> = runs.iter().map(|p| p.file_name().unwrap()).collect();
    assert_eq!(
        names,
        ["20260501-000000-abc1234", "20260502-000000-abc1234"]
    );
}

#[test]
fn params_have_one_canonical_spelling_with_sorted_keys() {
    let json: serde_json::Value =
        serde_json::from_str(r#"{"size": 4096, "file": "/tmp/x", "ratio": 0.5}"#).unwrap();
    let p = Params::from_json(json.as_object().unwrap()).unwrap();
    assert_eq!(p.to_string(), "file=/tmp/x;ratio=0.5;size=4096");
    assert_eq!(Params::parse(&p.to_string()).unwrap(), p);
    assert_eq!(p.get_f64("size"), Some(4096.0));
    assert_eq!(p.get_f64("file"), None);
    assert_eq!(Params::parse("").unwrap(), Params::none());

    assert!(Params::parse("size=1;file=x").is_err(), "unsorted keys");
    assert!(Params::parse("a=1;a=2").is_err(), "duplicate keys");
    assert!(Params::parse("a").is_err(), "no '='");
    assert!(
        Params::from_pairs([("a", "x;y")]).is_err(),
        "';' in a value"
    );
    let nested: serde_json::Value = serde_json::from_str(r#"{"a": [1]}"#).unwrap();
    assert!(Params::from_json(nested.as_object().unwrap()).is_err());
}

#[test]
fn guest_records_with_unknown_fields_or_bad_values_are_rejected() {
    let good = fs::read_to_string(fixtures().join("guest-records.jsonl")).unwrap();
    let good = good.lines().next().unwrap();
    assert!(BenchRecord::from_json_line(good).is_ok());
    let typo = good.replace("\"median\"", "\"medain\"");
    assert!(BenchRecord::from_json_line(&typo).is_err());
    let better = good.replace("\"lower\"", "\"smaller\"");
    assert!(BenchRecord::from_json_line(&better).is_err());
    let suite = good.replace("\"micro\"", "\"macro\"");
    assert!(BenchRecord::from_json_line(&suite).is_err());
}

#[test]
fn failed_guest_record_becomes_one_failed_row_with_its_reason() {
    let failed = &guest_records()[2];
    let slot = Slot {
        mode: "fast".into(),
        boot: 3,
        round: 2,
    };
    let rows = SampleRow::from_record(&slot, failed).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, Status::Failed);
    assert_eq!((rows[0].boot, rows[0].round), (3, 2));
    assert_eq!(rows[0].value, None);
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("ENOSPC creating the file set")
    );

    let mut silent = failed.clone();
    silent.reason = None;
    let rows = SampleRow::from_record(&slot, &silent).unwrap();
    assert!(rows[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("without a reason"));
}

// --- malformed samples.csv ---------------------------------------------------------------

#[test]
fn csv_with_a_missing_column_is_rejected_at_its_header() {
    let (_tmp, dir) = golden_copy();
    replace_csv_line(
        &dir,
        1,
        "boot,round,mode,suite,benchmark,params,metric,unit,better,sample,value,status,reason",
    );
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 1: header"), "{err}");
    assert!(err.contains("iterations"), "{err}");
}

#[test]
fn csv_with_a_non_numeric_value_is_rejected_naming_its_line() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 5).replace(",0.30,", ",0.3O,");
    replace_csv_line(&dir, 5, &line);
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 5"), "{err}");
    assert!(
        err.contains("column `value`: invalid float literal"),
        "{err}"
    );
}

#[test]
fn csv_with_a_short_row_is_rejected_naming_its_line() {
    let (_tmp, dir) = golden_copy();
    replace_csv_line(&dir, 7, "0,0,fast,micro,lat_syscall null");
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 7"), "{err}");
}

#[test]
fn csv_row_of_a_mode_missing_from_the_manifest_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 3).replacen(",native,", ",fast:no-callret,", 1);
    replace_csv_line(&dir, 3, &line);
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 3"), "{err}");
    assert!(err.contains("\"fast:no-callret\" is not among"), "{err}");
}

#[test]
fn csv_ok_row_without_a_value_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 2).replace(",0.20,", ",,");
    replace_csv_line(&dir, 2, &line);
    let err = load_error(&dir);
    assert!(
        err.contains("samples.csv line 2: ok row has no value"),
        "{err}"
    );
}

#[test]
fn csv_failed_row_without_a_reason_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 26);
    assert!(line.contains("failed"), "fixture moved: {line}");
    replace_csv_line(&dir, 26, "0,0,drk,apache,ab,concurrency=8,,,,0,,,failed,");
    let err = load_error(&dir);
    assert!(
        err.contains("samples.csv line 26: failed row has no reason"),
        "{err}"
    );
}

#[test]
fn csv_benchmark_changing_unit_between_rows_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 4).replace(",us,", ",ms,");
    replace_csv_line(&dir, 4, &line);
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 4"), "{err}");
    assert!(err.contains("line 2 says \"us\""), "{err}");
}

#[test]
fn csv_duplicate_sample_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 2);
    replace_csv_line(&dir, 3, &line);
    let err = load_error(&dir);
    assert!(
        err.contains("samples.csv line 3: duplicates the sample on line 2"),
        "{err}"
    );
}

#[test]
fn csv_unsorted_params_are_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 20).replace(",concurrency=8,", ",z=1;concurrency=8,");
    replace_csv_line(&dir, 20, &line);
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 20"), "{err}");
    assert!(err.contains("sorted"), "{err}");
}

#[test]
fn csv_boot_beyond_the_manifest_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 2).replacen("0,", "2,", 1);
    replace_csv_line(&dir, 2, &line);
    let err = load_error(&dir);
    assert!(
        err.contains("samples.csv line 2: boot 2 but the manifest says 2 boot(s)"),
        "{err}"
    );
}

#[test]
fn csv_failed_row_not_in_the_manifest_failures_is_rejected() {
    let (_tmp, dir) = golden_copy();
    let line = csv_line(&dir, 26).replacen(",drk,", ",fast,", 1);
    replace_csv_line(&dir, 26, &line);
    let err = load_error(&dir);
    assert!(err.contains("samples.csv line 26"), "{err}");
    assert!(err.contains("no entry in the manifest's failures"), "{err}");
}

// --- malformed manifest.json -------------------------------------------------------------

#[test]
fn manifest_with_an_unknown_field_is_rejected_naming_its_line() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replace("\"reps\": 1,", "\"reps\": 1,\n  \"repetitions\": 3,")
    });
    let err = load_error(&dir);
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("unknown field `repetitions`"), "{err}");
    assert!(err.contains("line 18"), "{err}");
}

#[test]
fn manifest_with_an_unknown_clock_is_rejected() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replace("\"clock\": \"icount\"", "\"clock\": \"cycles\"")
    });
    let err = load_error(&dir);
    assert!(err.contains("manifest.json"), "{err}");
    assert!(err.contains("unknown variant `cycles`"), "{err}");
}

#[test]
fn manifest_without_a_required_field_is_rejected() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replace("\"accelerator\": \"tcg\",\n", "")
    });
    let err = load_error(&dir);
    assert!(err.contains("missing field `accelerator`"), "{err}");
}

#[test]
fn manifest_of_a_newer_schema_is_rejected() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replace(
            "\"schema_version\": 1",
            &format!("\"schema_version\": {}", SCHEMA_VERSION + 1),
        )
    });
    let err = load_error(&dir);
    let want = format!("schema_version {} is not supported", SCHEMA_VERSION + 1);
    assert!(err.contains(&want), "{err}");
}

#[test]
fn manifest_whose_run_id_disagrees_with_git_revision_is_rejected() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replace("\"revision\": \"abc1234", "\"revision\": \"fff1234")
    });
    let err = load_error(&dir);
    assert!(err.contains("prefix of git.revision"), "{err}");
}

#[test]
fn manifest_failure_of_an_unknown_mode_is_rejected() {
    let (_tmp, dir) = golden_copy();
    edit(&dir.join(MANIFEST_FILE), |t| {
        t.replacen("\"mode\": \"drk\"", "\"mode\": \"fast:no-callret\"", 1)
    });
    let err = load_error(&dir);
    assert!(
        err.contains("failures[0]: mode \"fast:no-callret\" is not in modes"),
        "{err}"
    );
}

/// A shard `index`/2 of one matrix: one boot of native and fast samples.
fn shard_run(root: &Path, index: u32, second: u64) -> PathBuf {
    let modes = ["native", "fast"];
    let id = RunId::new(1_800_000_000 + second, "abc1234").unwrap();
    let mut writer = RunWriter::create(root, &id).unwrap();
    for mode in modes {
        let slot = Slot {
            mode: mode.into(),
            boot: 0,
            round: 0,
        };
        writer.append_record(&slot, &guest_records()[0]).unwrap();
    }
    let mut m = manifest(&id, &modes);
    m.matrix_digest = "0123456789abcdef".into();
    m.shard = Some(kdbt_harness::store::Shard { index, count: 2 });
    writer.finish(m).unwrap().dir
}

#[test]
fn the_shards_of_one_matrix_merge_into_one_run_and_others_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let a = shard_run(root.path(), 0, 0);
    let b = shard_run(root.path(), 1, 1);
    let out = root.path().join("merged");
    let merged = kdbt_harness::merge::merge(&[b.clone(), a.clone()], &out, vec![], None).unwrap();
    let run = Run::load(&merged).unwrap();
    assert_eq!(run.manifest.boots, 2);
    assert_eq!(run.manifest.shard, None);
    let shard_rows = Run::load(&a).unwrap().samples.len();
    assert_eq!(run.samples.len(), 2 * shard_rows);
    // Shard 0's boot stays 0; shard 1's becomes 1.
    assert!(run.samples[..shard_rows].iter().all(|r| r.boot == 0));
    assert!(run.samples[shard_rows..].iter().all(|r| r.boot == 1));
    assert_eq!(run.manifest.durations.total_s, 21.0);

    let err = |dirs: &[PathBuf]| {
        format!(
            "{:#}",
            kdbt_harness::merge::merge(dirs, &out, vec![], None).unwrap_err()
        )
    };
    assert!(err(std::slice::from_ref(&a)).contains("shard 1/2 is missing"));
    assert!(err(&[a.clone(), a.clone()]).contains("given twice"));
    edit(&b.join("manifest.json"), |t| {
        t.replace("0123456789abcdef", "fedcba9876543210")
    });
    assert!(err(&[a.clone(), b.clone()]).contains("plan"));
    assert!(err(std::slice::from_ref(&merged)).contains("not a shard"));
}

#[test]
fn a_shard_is_i_of_n() {
    use kdbt_harness::store::Shard;
    assert_eq!(Shard::parse("1/2").unwrap(), Shard { index: 1, count: 2 });
    for bad in ["2/2", "0/0", "1", "a/2"] {
        assert!(Shard::parse(bad).is_err(), "{bad}");
    }
}
