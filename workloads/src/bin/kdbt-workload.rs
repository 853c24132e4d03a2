//! `kdbt-workload`: the guest's benchmark binary. Prints one JSON [`Record`] per line on
//! stdout; exits 0 if every record is ok, 1 if any failed, 2 on a usage error.
//!
//! [`Record`]: kdbt_workloads::Record

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};
use kdbt_workloads::output::RecordSink;
use kdbt_workloads::size::parse_size;
use kdbt_workloads::{apache, file, micro};

#[derive(Parser)]
#[command(
    name = "kdbt-workload",
    version,
    about = "kdbt's guest workloads (JSON lines on stdout)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print every benchmark as `suite<TAB>name`, the names `--only` takes.
    List {
        /// Only this suite.
        #[arg(long)]
        suite: Option<SuiteArg>,
    },
    /// lmbench-style microbenchmarks (default budget 1000 ms, 11 samples each).
    Micro {
        #[command(flatten)]
        common: Common,
        /// Directory on the filesystem to test (scratch files).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
    },
    /// filebench-style personalities (default 5000 ms run, 5 interval samples each).
    File {
        #[command(flatten)]
        common: Common,
        /// Directory on the filesystem to test (filesets).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
        /// Files per fileset, overriding each personality's default.
        #[arg(long)]
        nfiles: Option<usize>,
        /// Mean file size (e.g. 16k).
        #[arg(long, value_parser = parse_size)]
        mean_file_size: Option<u64>,
        /// Threads per personality.
        #[arg(long)]
        threads: Option<usize>,
        /// Chunk size of whole-file reads and writes (e.g. 1m).
        #[arg(long, value_parser = parse_size)]
        io_size: Option<u64>,
        /// Largest random append (e.g. 16k).
        #[arg(long, value_parser = parse_size)]
        append_size: Option<u64>,
    },
    /// The null system call's kernel instructions, by the icount clock (a `syscall` loop
    /// minus a `nop` loop) and by kdbt's `insns_executed` counter: one line of `key value`s.
    NullInsns {
        /// System calls per loop.
        #[arg(long, default_value_t = 1_000_000)]
        calls: u64,
    },
    /// apache2 on loopback driven by ab (default budget 3000 ms, 3 ab runs per point).
    Apache {
        #[command(flatten)]
        common: Common,
        /// ab concurrency levels.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        concurrency: Vec<u64>,
        /// Requests per ab run; by default adapted to the budget.
        #[arg(long)]
        requests: Option<u64>,
        /// Sizes of the static files served.
        #[arg(long, value_delimiter = ',', value_parser = parse_size, default_value = "1k,10k,100k")]
        file_sizes: Vec<u64>,
        /// Loopback port for apache2; 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Use HTTP keep-alive (ab -k).
        #[arg(long)]
        keepalive: bool,
        /// The apache2 binary.
        #[arg(long, default_value = "/usr/sbin/apache2")]
        apache_bin: PathBuf,
        /// The ab binary.
        #[arg(long, default_value = "/usr/bin/ab")]
        ab_bin: PathBuf,
        /// apache2's module directory.
        #[arg(long, default_value = "/usr/lib/apache2/modules")]
        modules_dir: PathBuf,
        /// Directory for the server's root.
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: PathBuf,
        /// Wall-time limit in seconds for apache2's start-up and for each ab run.
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
}

#[derive(Args)]
struct Common {
    /// Run only this benchmark (exact name from `list`); repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// Target guest time per benchmark in ms; iteration counts adapt to it.
    #[arg(long)]
    budget_ms: Option<u64>,
    /// Samples per benchmark.
    #[arg(long)]
    samples: Option<usize>,
}

impl Common {
    fn budget_ns(&self, default_ms: u64) -> u64 {
        self.budget_ms
            .unwrap_or(default_ms)
            .saturating_mul(1_000_000)
    }

    fn samples(&self, default: usize) -> usize {
        self.samples.unwrap_or(default).max(1)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SuiteArg {
    Micro,
    File,
    Apache,
}

/// Keeps the items whose name is in `only` (all if `only` is empty), in suite order.
///
/// # Errors
/// A name in `only` that no item has.
fn select<'a, T>(
    items: &'a [T],
    name: impl Fn(&T) -> &str,
    only: &[String],
) -> anyhow::Result<Vec<&'a T>> {
    if let Some(bad) = only
        .iter()
        .find(|o| !items.iter().any(|i| name(i) == o.as_str()))
    {
        bail!("unknown benchmark `{bad}` (see `kdbt-workload list`)");
    }
    Ok(items
        .iter()
        .filter(|i| only.is_empty() || only.iter().any(|o| o == name(i)))
        .collect())
}

fn list(suite: Option<SuiteArg>) {
    let wanted = match suite {
        None => None,
        Some(SuiteArg::Micro) => Some("micro"),
        Some(SuiteArg::File) => Some("file"),
        Some(SuiteArg::Apache) => Some("apache"),
    };
    for (s, name) in kdbt_workloads::catalogue() {
        if wanted.is_none_or(|w| w == s) {
            println!("{s}\t{name}");
        }
    }
}

fn run(cmd: Cmd, sink: &mut RecordSink<std::io::Stdout>) -> anyhow::Result<()> {
    match cmd {
        Cmd::List { suite } => list(suite),
        Cmd::NullInsns { calls } => {
            println!("{}", kdbt_workloads::null_insns::measure(calls).line());
        }
        Cmd::Micro { common, dir } => {
            let specs = micro::specs();
            let selected = select(&specs, |s| s.name, &common.only)?;
            let opts = micro::Options {
                budget_ns: common.budget_ns(1000),
                samples: common.samples(11),
                dir,
            };
            micro::run(&opts, &selected, sink)?;
        }
        Cmd::File {
            common,
            dir,
            nfiles,
            mean_file_size,
            threads,
            io_size,
            append_size,
        } => {
            let all = file::personalities();
            let selected = select(&all, |p| p.name, &common.only)?;
            let opts = file::Options {
                duration_ns: common.budget_ns(5000),
                samples: common.samples(5),
                dir,
                overrides: file::Overrides {
                    nfiles,
                    mean_file_size,
                    threads,
                    io_size,
                    append_size,
                },
            };
            file::run(&opts, &selected, sink)?;
        }
        Cmd::Apache {
            common,
            concurrency,
            requests,
            file_sizes,
            port,
            keepalive,
            apache_bin,
            ab_bin,
            modules_dir,
            dir,
            timeout_s,
        } => {
            select(&[apache::BENCHMARK], |n| n, &common.only)?;
            if concurrency.contains(&0) {
                bail!("concurrency levels must be at least 1");
            }
            let opts = apache::Options {
                apache_bin,
                ab_bin,
                modules_dir,
                concurrency,
                requests,
                file_sizes,
                port,
                samples: common.samples(3),
                budget_ns: common.budget_ns(3000),
                keepalive,
                dir,
                timeout: Duration::from_secs(timeout_s),
            };
            apache::run(&opts, sink)?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::List { .. }) {
        if let Err(e) = kdbt_workloads::sys::reexec_without_aslr() {
            eprintln!("kdbt-workload: turning address-space randomization off: {e}");
            return ExitCode::from(2);
        }
    }
    let mut sink = RecordSink::stdout();
    match run(cli.cmd, &mut sink) {
        Err(e) => {
            eprintln!("kdbt-workload: {e:#}");
            ExitCode::from(2)
        }
        Ok(()) if sink.failed() > 0 => ExitCode::from(1),
        Ok(()) => ExitCode::SUCCESS,
    }
}
