//! filebench-style personalities: our implementation of filebench's `fileserver`,
//! `webserver`, `varmail` and `webproxy` workloads, scaled to a small guest.
//!
//! As filebench, each personality creates its fileset up front (untimed), then N threads run
//! its flowop list in a loop for a fixed duration, and throughput and latency are reported per
//! flowop. The run is split into `samples` equal intervals of CLOCK_MONOTONIC time, and each
//! interval gives one sample, so a record's spread is the variation over the run.

mod fileserver;
mod fileset;
mod flow;
mod varmail;
mod webproxy;
mod webserver;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::SmallRng;
use rand::SeedableRng;

pub use fileset::{FileSet, State};
pub use flow::{Flowop, Op};

use crate::output::RecordSink;
use crate::record::{params, Metric, Params, Record, Suite};
use flow::{Outcome, ThreadState};

/// A personality's sizes: filebench's `$nfiles`, `$meandirwidth`, `$meanfilesize`,
/// `$nthreads`, `$iosize`, `$meanappendsize` and the fileset's `prealloc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Files in the set.
    pub nfiles: usize,
    /// Files per directory.
    pub dir_width: usize,
    /// Mean file size in bytes (sizes are gamma-distributed, shape 1.5, as filebench's).
    pub mean_file_size: u64,
    /// Threads running the flow list.
    pub threads: usize,
    /// Chunk size in bytes of whole-file reads and writes.
    pub io_size: u64,
    /// Largest random append in bytes.
    pub append_size: u64,
    /// Percentage of files created before the run.
    pub prealloc_percent: u32,
}

/// Command-line overrides of a personality's [`Config`]; `None` keeps its default.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// Overrides `nfiles`.
    pub nfiles: Option<usize>,
    /// Overrides `mean_file_size` (bytes).
    pub mean_file_size: Option<u64>,
    /// Overrides `threads`.
    pub threads: Option<usize>,
    /// Overrides `io_size` (bytes).
    pub io_size: Option<u64>,
    /// Overrides `append_size` (bytes).
    pub append_size: Option<u64>,
}

impl Config {
    /// This config with `o`'s overrides applied.
    pub fn with(self, o: &Overrides) -> Config {
        Config {
            nfiles: o.nfiles.unwrap_or(self.nfiles),
            mean_file_size: o.mean_file_size.unwrap_or(self.mean_file_size),
            threads: o.threads.unwrap_or(self.threads).max(1),
            io_size: o.io_size.unwrap_or(self.io_size).max(1),
            append_size: o.append_size.unwrap_or(self.append_size).max(1),
            ..self
        }
    }

    fn params(&self) -> Params {
        params([
            ("nfiles", self.nfiles.into()),
            ("dir_width", self.dir_width.into()),
            ("mean_file_bytes", self.mean_file_size.into()),
            ("threads", self.threads.into()),
            ("io_bytes", self.io_size.into()),
            ("append_bytes", self.append_size.into()),
            ("prealloc_percent", u64::from(self.prealloc_percent).into()),
        ])
    }
}

/// A filebench personality.
#[derive(Debug, Clone, Copy)]
pub struct Personality {
    /// filebench's name for it.
    pub name: &'static str,
    /// filebench's own defaults, for reference.
    pub filebench: Config,
    /// Our defaults for the small guest.
    pub default: Config,
    /// The flowops every thread runs, in order.
    pub flows: &'static [Flowop],
    /// Whether threads append to a shared log file (webserver's `logfiles` set).
    pub log_file: bool,
}

impl Personality {
    /// Distinct flow names in order of first appearance, and each flowop's index among them.
    fn flow_slots(&self) -> (Vec<&'static str>, Vec<usize>) {
        let mut names: Vec<&'static str> = Vec::new();
        let slots = self
            .flows
            .iter()
            .map(|f| match names.iter().position(|&n| n == f.name) {
                Some(i) => i,
                None => {
                    names.push(f.name);
                    names.len() - 1
                }
            })
            .collect();
        (names, slots)
    }
}

/// The four personalities in filebench's usual order.
pub fn personalities() -> [Personality; 4] {
    [
        fileserver::PERSONALITY,
        webserver::PERSONALITY,
        varmail::PERSONALITY,
        webproxy::PERSONALITY,
    ]
}

/// Settings of a `file` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run duration per personality in ns of CLOCK_MONOTONIC (fileset creation excluded).
    pub duration_ns: u64,
    /// Intervals the run is split into, one sample each.
    pub samples: usize,
    /// Directory on the filesystem under test; the fileset goes in a fresh directory in it.
    pub dir: PathBuf,
    /// Size overrides applied to every selected personality.
    pub overrides: Overrides,
}

/// Runs each selected personality, streaming its records to `sink`: first the total
/// throughput (flow `"all"`), then ops/s and µs/op for every flow.
///
/// A personality that fails (fileset creation, an I/O error in a flowop) yields one failed
/// record and the run goes on.
///
/// # Errors
/// Only failures to write to `sink`.
pub fn run<W: Write>(
    opts: &Options,
    selected: &[&Personality],
    sink: &mut RecordSink<W>,
) -> anyhow::Result<()> {
    for p in selected {
        let config = p.default.with(&opts.overrides);
        let mut base = config.params();
        base.insert("duration_ms".into(), (opts.duration_ns / 1_000_000).into());
        match run_personality(p, &config, opts) {
            Ok((intervals, warm)) => {
                for mut r in records(p, &base, &intervals) {
                    r.set_warm_up(&warm);
                    sink.emit(&r)?;
                }
            }
            Err(e) => {
                let mut params = base;
                params.insert("flow".into(), "all".into());
                let r = Record::failed(
                    Suite::File,
                    p.name,
                    params,
                    Metric::OpsPerSec,
                    format!("{e:#}"),
                );
                sink.emit(&r)?;
            }
        }
    }
    Ok(())
}

/// Counts and time of one flow in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    ops: u64,
    ns: u64,
}

/// What a run measured: per interval, per flow slot.
struct Intervals {
    names: Vec<&'static str>,
    /// `tallies[interval][slot]`.
    tallies: Vec<Vec<Tally>>,
    /// Length of each interval in ns (the last one runs until the last thread stopped).
    lengths_ns: Vec<u64>,
}

/// Creates the fileset, runs the personality until the translator is warm
/// ([`crate::warmup`]: passes of whole milliseconds, sized to a quarter of a sample
/// interval), then measures it for `opts.duration_ns` in `opts.samples` intervals.
fn run_personality(
    p: &Personality,
    config: &Config,
    opts: &Options,
) -> anyhow::Result<(Intervals, crate::warmup::WarmUp)> {
    let root = tempfile::Builder::new()
        .prefix(&format!("kdbt-{}.", p.name))
        .tempdir_in(&opts.dir)
        .with_context(|| format!("creating a fileset directory in {}", opts.dir.display()))?;
    let set = FileSet::create(root.path(), config, 0x6b64_6274)
        .with_context(|| format!("creating the {} fileset", p.name))?;
    let log_path = root.path().join("logfile");
    let samples = opts.samples.max(1);
    let interval_ns = (opts.duration_ns / samples as u64).max(1);
    const MS: u64 = 1_000_000;
    let warm = crate::warmup::warm_up(interval_ns, crate::warmup::translated_now, |ms| {
        let t0 = Instant::now();
        run_flows(p, config, &set, &log_path, ms * MS, 1)?;
        Ok::<_, anyhow::Error>(t0.elapsed().as_nanos() as u64)
    })
    .context("warm-up")?;
    let intervals = run_flows(p, config, &set, &log_path, opts.duration_ns, samples)?;
    Ok((intervals, warm))
}

/// Runs the personality's threads over `set` for `duration_ns`, tallied in `samples` equal
/// intervals.
fn run_flows(
    p: &Personality,
    config: &Config,
    set: &FileSet,
    log_path: &std::path::Path,
    duration_ns: u64,
    samples: usize,
) -> anyhow::Result<Intervals> {
    let (names, slots) = p.flow_slots();
    let nslots = names.len();
    let interval_ns = (duration_ns / samples as u64).max(1);
    let stop = AtomicBool::new(false);
    let error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let start = Instant::now();
    let end = start + Duration::from_nanos(duration_ns);
    let results: Vec<(Vec<Vec<Tally>>, Instant)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..config.threads)
            .map(|t| {
                let (slots, stop, error) = (&slots, &stop, &error);
                s.spawn(move || {
                    let log = if p.log_file {
                        match OpenOptions::new().create(true).append(true).open(log_path) {
                            Ok(f) => Some(f),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(anyhow::Error::new(e).context("opening the log file"));
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let rng = SmallRng::seed_from_u64(t as u64 + 1);
                    let mut state = ThreadState::new(
                        set,
                        log,
                        config.io_size as usize,
                        config.append_size,
                        rng,
                    );
                    let mut tallies = vec![vec![Tally::default(); nslots]; samples];
                    let mut last = start;
                    let mut loops = 0u64;
                    'run: while !stop.load(Ordering::Relaxed) {
                        for (k, f) in p.flows.iter().enumerate() {
                            let t0 = Instant::now();
                            let outcome = state.perform(f.op);
                            let t1 = Instant::now();
                            last = t1;
                            match outcome {
                                Ok(Outcome::Done) => {
                                    let iv = ((t1 - start).as_nanos() as u64 / interval_ns)
                                        .min(samples as u64 - 1)
                                        as usize;
                                    let tally = &mut tallies[iv][slots[k]];
                                    tally.ops += 1;
                                    tally.ns += (t1 - t0).as_nanos() as u64;
                                }
                                Ok(Outcome::Skipped) => {}
                                Err(e) => {
                                    stop.store(true, Ordering::Relaxed);
                                    let e =
                                        anyhow::Error::new(e).context(format!("flowop {}", f.name));
                                    error
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .get_or_insert(e);
                                    break 'run;
                                }
                            }
                            // Every flow runs at least once per thread, so even a tiny
                            // duration reports every flowop.
                            if t1 >= end && loops > 0 {
                                break 'run;
                            }
                            if stop.load(Ordering::Relaxed) {
                                break 'run;
                            }
                        }
                        loops += 1;
                    }
                    (tallies, last)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("flowop thread panicked"))
            .collect()
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let finished = results.iter().map(|(_, t)| *t).max().unwrap_or(start);
    let total_ns = (finished - start).as_nanos() as u64;
    let mut tallies = vec![vec![Tally::default(); names.len()]; samples];
    for (thread, _) in &results {
        for (iv, row) in thread.iter().enumerate() {
            for (slot, t) in row.iter().enumerate() {
                tallies[iv][slot].ops += t.ops;
                tallies[iv][slot].ns += t.ns;
            }
        }
    }
    let mut lengths_ns = vec![interval_ns; samples];
    lengths_ns[samples - 1] = total_ns
        .saturating_sub(interval_ns * (samples as u64 - 1))
        .max(1);
    Ok(Intervals {
        names,
        tallies,
        lengths_ns,
    })
}

fn ops_per_sec(ops: u64, ns: u64) -> f64 {
    ops as f64 / (ns.max(1) as f64 / 1e9)
}

/// The records of one run: total ops/s, then per flow ops/s and µs/op.
fn records(p: &Personality, base: &Params, m: &Intervals) -> Vec<Record> {
    let samples = m.lengths_ns.len() as u64;
    let with_flow = |flow: &str| {
        let mut params = base.clone();
        params.insert("flow".into(), flow.into());
        params
    };
    let total_ops: Vec<u64> = m
        .tallies
        .iter()
        .map(|row| row.iter().map(|t| t.ops).sum())
        .collect();
    let mut out = vec![Record::ok(
        Suite::File,
        p.name,
        with_flow("all"),
        Metric::OpsPerSec,
        total_ops
            .iter()
            .zip(&m.lengths_ns)
            .map(|(&o, &ns)| ops_per_sec(o, ns))
            .collect(),
        total_ops.iter().sum::<u64>() / samples,
    )];
    for (slot, name) in m.names.iter().enumerate() {
        let column: Vec<Tally> = m.tallies.iter().map(|row| row[slot]).collect();
        let ops: u64 = column.iter().map(|t| t.ops).sum();
        out.push(Record::ok(
            Suite::File,
            p.name,
            with_flow(name),
            Metric::OpsPerSec,
            column
                .iter()
                .zip(&m.lengths_ns)
                .map(|(t, &ns)| ops_per_sec(t.ops, ns))
                .collect(),
            ops / samples,
        ));
        let latency: Vec<f64> = column
            .iter()
            .filter(|t| t.ops > 0)
            .map(|t| t.ns as f64 / 1e3 / t.ops as f64)
            .collect();
        let record = if latency.is_empty() {
            Record::failed(
                Suite::File,
                p.name,
                with_flow(name),
                Metric::UsPerOp,
                "the flowop never ran: no file was in the state it needs",
            )
        } else {
            Record::ok(
                Suite::File,
                p.name,
                with_flow(name),
                Metric::UsPerOp,
                latency,
                ops / samples,
            )
        };
        out.push(record);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_flow_names_share_a_slot() {
        let (names, slots) = webserver::PERSONALITY.flow_slots();
        assert_eq!(
            names,
            ["openfile1-10", "readfile1-10", "closefile1-10", "appendlog"]
        );
        assert_eq!(slots.len(), 31);
        assert_eq!(slots.iter().filter(|&&s| s == 1).count(), 10);
        let (names, _) = fileserver::PERSONALITY.flow_slots();
        assert_eq!(names.len(), 11);
    }

    #[test]
    fn every_open_or_create_in_a_flow_is_followed_by_a_close() {
        for p in personalities() {
            let mut open = false;
            for f in p.flows {
                match f.op {
                    Op::OpenFile | Op::CreateFile => {
                        assert!(!open, "{}: {} opens twice", p.name, f.name);
                        open = true;
                    }
                    Op::CloseFile => open = false,
                    _ => {}
                }
            }
            assert!(!open, "{} ends with a file open", p.name);
        }
    }

    #[test]
    fn defaults_are_scaled_down_from_filebench() {
        for p in personalities() {
            assert!(p.default.nfiles <= p.filebench.nfiles, "{}", p.name);
            assert!(p.default.threads <= p.filebench.threads, "{}", p.name);
            assert!(
                p.default.mean_file_size <= p.filebench.mean_file_size,
                "{}",
                p.name
            );
        }
    }

    #[test]
    fn overrides_replace_only_what_they_set() {
        let c = varmail::DEFAULT.with(&Overrides {
            nfiles: Some(20),
            threads: Some(0),
            ..Overrides::default()
        });
        assert_eq!(c.nfiles, 20);
        assert_eq!(c.threads, 1, "at least one thread");
        assert_eq!(c.mean_file_size, varmail::DEFAULT.mean_file_size);
    }

    #[test]
    fn short_run_reports_every_flow_of_every_personality() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options {
            duration_ns: 20_000_000,
            samples: 3,
            dir: dir.path().to_owned(),
            overrides: Overrides {
                nfiles: Some(40),
                mean_file_size: Some(4096),
                threads: Some(2),
                ..Overrides::default()
            },
        };
        for p in personalities() {
            let mut sink = RecordSink::new(Vec::new());
            run(&opts, &[&p], &mut sink).unwrap();
            let (names, _) = p.flow_slots();
            assert_eq!(sink.written(), 1 + 2 * names.len(), "{}", p.name);
            assert_eq!(sink.failed(), 0, "{}", p.name);
            let text = String::from_utf8(sink.into_inner()).unwrap();
            let first: Record = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(first.params["flow"], "all".into());
            assert_eq!(first.samples.len(), 3);
            assert!(first.iterations_per_sample > 0);
        }
        // The fileset directories are gone afterwards.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unwritable_directory_gives_one_failed_record() {
        let opts = Options {
            duration_ns: 1_000_000,
            samples: 1,
            dir: "/nonexistent/kdbt".into(),
            overrides: Overrides::default(),
        };
        let mut sink = RecordSink::new(Vec::new());
        run(&opts, &[&varmail::PERSONALITY], &mut sink).unwrap();
        assert_eq!((sink.written(), sink.failed()), (1, 1));
    }
}
