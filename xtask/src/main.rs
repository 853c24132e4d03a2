//! `cargo xtask`: kdbt's command line. A thin clap layer; the work lives in `kdbt-harness`.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use kdbt_harness::qemu::{Accel, Clock};
use kdbt_harness::setup::Stage;
use kdbt_harness::{
    bench, cache, fresh, image, instrument, kernel, module, plan, qemu, runner, scaling, selftests,
    setup, soak, store, vm,
};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "kdbt: build the guest lab, run guests, benchmark"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the guest kernel (cached; a no-op when current).
    Kernel,
    /// Build the guest root filesystem image (cached).
    Image,
    /// Build kdbt.ko against the guest kernel.
    Module,
    /// Boot a guest and run one command in it; exits with the command's status.
    Vm(VmArgs),
    /// Build everything, run the benchmark matrix (native and every mode, interleaved in one
    /// boot), store it under results/ and draw the tables and figures.
    Bench(BenchArgs),
    /// Draw the paper's tables and figures for result sets (default: the newest in results/).
    Figures {
        /// Result directories (`results/<run-id>`); two draw a before/after comparison too. A
        /// scaling run's directory (`vcpus-<n>/` inside), given alone, draws each of its sets
        /// and the scaling figure; an instrumentation run's (`funcs-<list>/` inside), each of
        /// its sets and the instrumentation figure.
        runs: Vec<PathBuf>,
        /// Write into `<out>/<run-id>/` instead of each run's `figures/`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Join the result sets of the N shards of one plan (`bench --shard I/N`) into one result
    /// set, and draw its tables and figures.
    Merge {
        /// The shards' result directories.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Directory the merged result set is created in.
        #[arg(long, default_value = "results")]
        out: PathBuf,
    },
    /// Keep the kernel translated in one mode for N minutes under the VM mix's work, then
    /// switch off and on under load, then unload; stores `results/soak/<run-id>-<mode>/`
    /// (summary.md, output, console log). Exits 1 when the soak failed. Not part of CI.
    Soak {
        /// The mode spec to soak (not native).
        #[arg(long)]
        mode: String,
        /// Minutes of rounds (guest wall clock).
        #[arg(long, default_value_t = 30)]
        minutes: u32,
        /// Switch-off/on cycles after the rounds.
        #[arg(long, default_value_t = 1000)]
        cycles: u32,
    },
    /// Run the kernel's own selftests (x86, futex, timers and an mm subset, built from the
    /// guest kernel's source) natively and in each mode, in one guest boot; print every
    /// verdict. Exits 1 when a translated verdict differs from the native one, or on kernel
    /// trouble in the console.
    Selftests {
        /// A mode spec to compare with native; repeatable.
        #[arg(long = "mode", default_values_t = ["fast".to_string(), "fast:no-callret".to_string(), "drk".to_string()])]
        modes: Vec<String>,
        /// A suite to run (x86, futex, timers, mm); repeatable. Default: all.
        #[arg(long = "suite")]
        suites: Vec<String>,
    },
    /// The whole test suite: fmt, clippy, the lab's builds, host tests and VM tests.
    Test,
    /// The README's two commands on a fresh Debian bookworm root (mmdebstrap + chroot) with only
    /// a Rust toolchain: catches install steps a warm machine hides. Needs root; takes about an
    /// hour on 2 cores. Not part of CI.
    FreshCheck {
        /// Keep the fresh root afterwards (under $KDBT_CACHE/fresh/root) to look inside.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Args, Clone)]
struct VmOpts {
    /// auto (KVM only where the CPU shows vmx/svm), tcg or kvm.
    #[arg(long, default_value = "auto")]
    accel: Accel,
    /// wall, or icount (TCG: guest clock = guest instructions, 1 ns each).
    #[arg(long, default_value = "wall")]
    clock: Clock,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 1024)]
    mem: u32,
    /// Limit for the whole guest run, seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

#[derive(Args)]
struct BenchArgs {
    /// Modes, comma-separated: `native` and any mode spec kdbt accepts (`fast:no-jumptable`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "native,fast,fast:no-callret,drk",
        conflicts_with = "plan"
    )]
    modes: Vec<String>,
    /// micro, file, apache or all.
    #[arg(long, default_value = "all", conflicts_with = "plan")]
    suite: String,
    /// Run one deterministic slice of the plan, `I/N` (whole benchmarks, each with all its
    /// modes and rounds, dealt out by expected wall time); `cargo xtask merge` joins the N
    /// result sets.
    #[arg(long, conflicts_with = "jobs")]
    shard: Option<String>,
    /// Guest boots at once on this host: the plan's N shards run in parallel and are merged
    /// into one result set. Default: under the icount clock, whose figures do not depend on
    /// host load, one per host core as far as host memory allows (2 on a 2-core host); under
    /// the wall clock, 1, as parallel guests would slow each other's measured work.
    #[arg(long)]
    jobs: Option<u32>,
    /// A named plan (`plans/<name>.toml`: ablation, prof, scaling) or a plan file's path:
    /// modes, suites, benchmarks, rounds, vCPU counts and `ab` concurrency from the file
    /// (see README.md, "How to run an ablation").
    #[arg(long)]
    plan: Option<String>,
    /// Interleaving rounds per benchmark (each runs every mode once); default 2, as quick
    /// (four modes in 45 minutes under TCG; each round takes several samples per mode).
    #[arg(long)]
    reps: Option<u32>,
    /// A core subset with small budgets (~10 minutes under TCG).
    #[arg(long)]
    quick: bool,
    /// auto (KVM only where the CPU shows vmx/svm), tcg or kvm.
    #[arg(long, default_value = "auto")]
    accel: Accel,
    /// wall or icount; default icount under TCG (instructions per operation), wall on KVM.
    #[arg(long)]
    clock: Option<Clock>,
    /// Guest vCPUs (default 2); refused with a plan that sets `vcpus`.
    #[arg(long)]
    cpus: Option<u32>,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 1024)]
    mem: u32,
    /// Directory the result set is created in (as `<out>/<run-id>/`).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Limit per guest boot, seconds; a boot past it counts as a crash of the running mode.
    /// Only a bound for hangs: a full default run with `--jobs 1` keeps one boot busy for
    /// about 55 minutes on a 2-core host, and a busy host stretches that.
    #[arg(long, default_value_t = 10800)]
    boot_timeout: u64,
}

#[derive(Args)]
struct VmArgs {
    #[command(flatten)]
    opts: VmOpts,
    /// A host file to copy into the guest's /kdbt (the command's working directory, first on
    /// its PATH), keeping its mode; repeatable.
    #[arg(long = "put", value_name = "PATH")]
    put: Vec<PathBuf>,
    /// The command to run in the guest (in /kdbt, where kdbt.ko and the workloads are).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Cmd::Kernel => {
            let k = timed("kernel", kernel::build)?;
            println!(
                "bzImage {} (release {}, config {})",
                k.bzimage.display(),
                k.release,
                k.config_hash
            );
        }
        Cmd::Image => {
            let i = timed("image", image::build)?;
            println!("rootfs {}", i.rootfs.display());
        }
        Cmd::Module => {
            let k = timed("kernel", kernel::build)?;
            let ko = timed("module", || module::build(&k))?;
            println!("module {}", ko.display());
        }
        Cmd::Vm(args) => {
            vm::check_put(&args.put)?;
            setup::ensure(&[Stage::Kernel, Stage::Image, Stage::Module, Stage::Vm])?;
            let lab = build_lab()?;
            let mut spec = lab.spec(&args.opts, args.command);
            spec.files.extend(args.put);
            let out = vm::run(
                &lab.kernel.bzimage,
                &lab.rootfs,
                &spec,
                &mut std::io::stdout(),
            )?;
            eprintln!(
                "guest: {} accelerator, {} clock, {:.1} s wall; console log {}",
                out.accel,
                args.opts.clock,
                out.wall.as_secs_f64(),
                out.console_log.display()
            );
            return Ok(ExitCode::from(out.exit_status.clamp(0, 255) as u8));
        }
        Cmd::Bench(args) => bench(args)?,
        Cmd::Merge { runs, out } => {
            check_distinct_runs(&runs)?;
            let dir = kdbt_harness::merge::merge(
                &runs,
                &cache::repo_root().join(out),
                recorded_command_line(std::env::args().skip(1), &cache::repo_root()),
                None,
            )?;
            println!("results: {}", dir.display());
            setup::ensure(&[Stage::Figures])?;
            for file in paper_figures::render(std::slice::from_ref(&dir), None)? {
                println!("{}", file.display());
            }
        }
        Cmd::Figures { runs, out } => {
            check_distinct_runs(&runs)?;
            setup::ensure(&[Stage::Figures])?;
            let runs = if runs.is_empty() {
                let all = store::list_runs(&cache::repo_root().join("results"))?;
                vec![all
                    .last()
                    .cloned()
                    .context("no result sets under results/")?]
            } else {
                runs
            };
            for file in paper_figures::render(&runs, out.as_deref())? {
                println!("{}", file.display());
            }
        }
        Cmd::Soak {
            mode,
            minutes,
            cycles,
        } => return soak(&mode, minutes, cycles),
        Cmd::Selftests { modes, suites } => return run_selftests(&modes, &suites),
        Cmd::Test => return test(),
        Cmd::FreshCheck { keep } => {
            for step in fresh::check(keep)? {
                println!(
                    "fresh machine: `{}` passed in {:.1} min",
                    step.command,
                    step.wall.as_secs_f64() / 60.0
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Guest boots at once when `--jobs` is not given. Under icount a guest's figures count its
/// own instructions, so guests may share the host: one per core (a TCG guest keeps one host
/// thread busy), no more than host memory holds (`mem_mib` each, plus QEMU's own 512 MiB),
/// and no more than the plan's benchmarks. Under the wall clock, 1.
fn default_jobs(clock: Clock, mem_mib: u32, benchmarks: usize) -> u32 {
    if clock != Clock::Icount {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let by_memory =
        runner::host_memory_mib().map_or(1, |m| m / (u64::from(mem_mib) + 512)) as usize;
    cores.min(by_memory).min(benchmarks).max(1) as u32
}

/// The workloads' benchmarks by suite, as plans name them.
fn catalogue() -> Result<Vec<(store::Suite, String)>> {
    kdbt_workloads::catalogue()
        .into_iter()
        .map(|(suite, name)| {
            let suite = store::Suite::from_name(suite)
                .with_context(|| format!("the workloads name an unknown suite {suite:?}"))?;
            Ok((suite, name))
        })
        .collect()
}

/// `cargo xtask bench`: the matrix, the run, the figures, and the summary table.
fn bench(args: BenchArgs) -> Result<()> {
    let started = runner::Started::now();
    // Everything a user can get wrong is refused here, before setup or any build.
    let catalogue = catalogue()?;
    let plan = match &args.plan {
        Some(p) => Some(plan::load(
            &plan::resolve(p, &cache::repo_root())?,
            &catalogue,
            |m| bench::canonical_mode(m).map(drop),
        )?),
        None => None,
    };
    let suites = match args.suite.as_str() {
        "all" => store::Suite::ALL.to_vec(),
        name => match store::Suite::from_name(name) {
            Some(suite) => vec![suite],
            None => bail!("unknown suite {name:?} (micro, file, apache, all)"),
        },
    };
    let accel = qemu::resolve(args.accel);
    let clock = args.clock.unwrap_or(match accel {
        Accel::Kvm => Clock::Wall,
        _ => Clock::Icount,
    });
    let budget = match args.quick {
        true => bench::Budget::Quick,
        false => bench::Budget::Full,
    };
    let list: String = kdbt_workloads::catalogue()
        .into_iter()
        .map(|(suite, name)| format!("{suite}\t{name}\n"))
        .collect();
    let (modes, suites, reps) = match &plan {
        Some(p) => (
            p.modes.clone(),
            p.suites.clone().unwrap_or(suites),
            args.reps.or(p.reps),
        ),
        None => (args.modes.clone(), suites, args.reps),
    };
    let matrix = bench::matrix_for(
        &list,
        &suites,
        budget,
        modes,
        reps.unwrap_or(2),
        plan.as_ref().and_then(|p| p.benchmarks.as_deref()),
    )?;
    let matrix = match plan.as_ref().and_then(|p| p.apache_concurrency.as_deref()) {
        Some(levels) => matrix.with_apache_concurrency(levels),
        None => matrix,
    };
    // A plan's vCPU counts make a scaling run: the matrix once per count.
    let scaling_vcpus = plan.as_ref().and_then(|p| p.vcpus.clone());
    let vcpus = match (&scaling_vcpus, args.cpus) {
        (Some(counts), Some(cpus)) => bail!(
            "--cpus {cpus}: the plan sets the vCPU counts itself (vcpus = {counts:?}); drop --cpus, or edit a copy of the plan"
        ),
        (Some(counts), None) => counts.clone(),
        (None, cpus) => vec![cpus.unwrap_or(2)],
    };
    // A plan's function lists make an instrumentation run: the matrix once per list.
    let function_lists = plan.as_ref().and_then(|p| p.functions.clone());
    if function_lists.is_none()
        && matrix
            .modes
            .iter()
            .any(|m| bench::is_probe_mode(m) || m.split([':', ',']).any(|o| o == "funccount"))
    {
        bail!(
            "modes kprobes, ftrace and funccount count a function set: run them from a plan with `functions` (plans/instrument.toml)"
        );
    }
    if function_lists.is_some() && args.shard.is_some() {
        bail!("--shard with a plan that sets functions: run an instrumentation run whole");
    }
    if scaling_vcpus.is_some() && args.shard.is_some() {
        bail!(
            "--shard with a plan that sets vcpus: a scaling run is not sliced (its sets would need merging per vCPU count); run it whole, with --jobs 2 to use two guests at once"
        );
    }
    let jobs = match (args.jobs, &args.shard) {
        (Some(jobs), _) => {
            if jobs == 0 || jobs as usize > matrix.benchmarks.len() {
                bail!(
                    "--jobs {jobs}: give 1 to {} (the plan's benchmarks)",
                    matrix.benchmarks.len()
                );
            }
            jobs
        }
        (None, Some(_)) => 1,
        (None, None) => default_jobs(clock, args.mem, matrix.benchmarks.len()),
    };
    let matrix_digest = matrix.digest();
    let shard = args.shard.as_deref().map(store::Shard::parse).transpose()?;
    let matrix = match shard {
        Some(sh) => matrix.shard(sh)?,
        None => matrix,
    };
    matrix.check_boot_timeout(budget, args.boot_timeout)?;
    if vcpus.contains(&0) || args.mem < 256 {
        bail!("--cpus must be at least 1 and --mem at least 256 (MiB)");
    }
    setup::ensure(setup::ALL_STAGES)?;
    let lab = build_lab()?;
    eprintln!(
        "kdbt bench: {} benchmarks x {} modes x {} rounds on {accel} with the {clock} clock, {} vCPU(s), {jobs} guest boot(s) at once",
        matrix.benchmarks.len(),
        matrix.modes.len(),
        matrix.reps,
        vcpus
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", then ")
    );
    let config = runner::BenchConfig {
        matrix,
        accel,
        clock,
        cpus: vcpus[0],
        mem_mib: args.mem,
        boot_timeout: Duration::from_secs(args.boot_timeout),
        results_root: cache::repo_root().join(&args.out),
        command_line: recorded_command_line(std::env::args().skip(1), &cache::repo_root()),
        started,
        matrix_digest,
        shard,
    };
    let dir = timed("bench", || match (&scaling_vcpus, jobs) {
        _ if function_lists.is_some() => instrument::run(
            &config,
            function_lists.as_deref().unwrap_or_default(),
            jobs,
            &lab.kernel,
            &lab.rootfs,
            &lab.files,
        ),
        (Some(counts), jobs) => {
            scaling::run(&config, counts, jobs, &lab.kernel, &lab.rootfs, &lab.files)
        }
        (None, 1) => runner::run(&config, &lab.kernel, &lab.rootfs, &lab.files),
        (None, jobs) => runner::run_jobs(&config, jobs, &lab.kernel, &lab.rootfs, &lab.files),
    })?;
    println!("results: {}", dir.display());
    // A scaling run prints its table across vCPU counts, not each count's table.
    let summary = match (&scaling_vcpus, &function_lists) {
        (_, Some(_)) => "instrument.md",
        (Some(_), _) => "scaling.md",
        _ => "table.md",
    };
    for file in paper_figures::render(std::slice::from_ref(&dir), None)? {
        println!("{}", file.display());
        if file.file_name().is_some_and(|n| n == summary) {
            println!("{}", std::fs::read_to_string(&file)?);
        }
    }
    Ok(())
}

/// `cargo xtask soak`: checks the arguments before any build, runs the soak in one guest
/// boot and stores its result set; exit status 1 when it failed.
fn soak(mode: &str, minutes: u32, cycles: u32) -> Result<ExitCode> {
    let started = runner::Started::now();
    let mode = bench::canonical_mode(mode)?;
    if mode == "native" {
        bail!("--mode: a soak translates; give a mode spec such as fast or drk");
    }
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let spec = soak::SoakSpec {
        mode,
        minutes,
        cycles,
    };
    setup::ensure(setup::ALL_STAGES)?;
    let lab = build_lab()?;
    let (rev, _) = runner::git_state()?;
    let run_id = store::RunId::new(started.unix_secs, &rev)?;
    let opts = VmOpts {
        accel: Accel::Auto,
        clock: Clock::Wall,
        cpus: 2,
        mem: 1024,
        timeout: spec.timeout_s(),
    };
    let command = vec!["sh".into(), "-c".into(), soak::script(&spec)];
    eprintln!(
        "kdbt soak: {} for {} min, then {} switch cycles",
        spec.mode, spec.minutes, spec.cycles
    );
    let boot = vm::boot(
        &lab.kernel.bzimage,
        &lab.rootfs,
        &lab.spec(&opts, command),
        &mut |line| eprintln!("{line}"),
    )?;
    // Kernel trouble, and a guest that timed out or died, fail the soak; its files are kept.
    let mut trouble = boot.trouble.clone();
    if boot.timed_out || boot.exit_status.is_none() {
        trouble.extend(boot.failure_summary());
    }
    let dir = cache::repo_root()
        .join("results/soak")
        .join(soak::dir_name(run_id.as_str(), &spec.mode));
    let problems = soak::store(
        &dir,
        &spec,
        &boot.output,
        &boot.console_log,
        &trouble,
        boot.wall.as_secs_f64(),
        run_id.short_rev(),
    )?;
    println!("results: {}", dir.display());
    println!("{}", std::fs::read_to_string(dir.join("summary.md"))?);
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `cargo xtask selftests`: checks modes and suites before any build, builds the lab and the
/// suites, runs them natively and in every mode in one guest boot, prints the verdicts.
fn run_selftests(modes: &[String], suites: &[String]) -> Result<ExitCode> {
    let mut canonical = Vec::new();
    for m in modes {
        let m = bench::canonical_mode(m)?;
        if m == "native" {
            bail!("--mode: native always runs; give the modes to compare with it");
        }
        canonical.push(m);
    }
    let chosen: Vec<&selftests::Suite> = if suites.is_empty() {
        selftests::SUITES.to_vec()
    } else {
        suites
            .iter()
            .map(|s| selftests::suite(s))
            .collect::<Result<_>>()?
    };
    setup::ensure(setup::ALL_STAGES)?;
    let mut lab = build_lab()?;
    let mut binaries = Vec::new();
    for suite in &chosen {
        binaries.extend(timed(suite.name, || {
            selftests::build_suite(&lab.kernel, suite)
        })?);
    }
    let names = selftests::file_names(&binaries);
    lab.files.extend(binaries);
    let opts = VmOpts {
        accel: Accel::Auto,
        clock: Clock::Wall,
        cpus: 2,
        mem: 1024,
        timeout: 1800 + names.len() as u64 * (canonical.len() as u64 + 1) * 60,
    };
    let command = vec![
        "sh".into(),
        "-c".into(),
        selftests::script(&names, &canonical),
    ];
    eprintln!(
        "kdbt selftests: {} tests, natively and under {}",
        names.len(),
        canonical.join(", ")
    );
    let boot = vm::boot(
        &lab.kernel.bzimage,
        &lab.rootfs,
        &lab.spec(&opts, command),
        &mut |line| eprintln!("{line}"),
    )?;
    let v = selftests::verdicts(&boot.output)?;
    println!("{}", selftests::table(&v, &canonical));
    let mut problems = selftests::differences(&v, &canonical);
    problems.extend(boot.trouble.iter().map(|t| format!("console: {t}")));
    if !boot.output.contains("SELFTESTS-DONE") {
        problems.push(
            boot.failure_summary()
                .unwrap_or_else(|| "the guest script did not finish".into()),
        );
    }
    for p in &problems {
        eprintln!("kdbt selftests: {p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The command line a result set records: `cargo xtask` and `args` as typed (the binary's own
/// path says nothing about the run), except that an absolute path is made relative to `repo`
/// when inside it and cut to `…/<name>` when not, so a committed manifest names no path of
/// the machine that made it (`--out /scratch/runs` → `--out …/runs`).
fn recorded_command_line(args: impl Iterator<Item = String>, repo: &Path) -> Vec<String> {
    let portable = |arg: String| -> String {
        let (flag, value) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (Some(f.to_string()), v.to_string()),
            _ => (None, arg.clone()),
        };
        let path = Path::new(&value);
        if !path.is_absolute() {
            return arg;
        }
        let short = match path.strip_prefix(repo) {
            Ok(inside) => inside.display().to_string(),
            Err(_) => format!(
                "…/{}",
                path.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned())
            ),
        };
        match flag {
            Some(f) => format!("{f}={short}"),
            None => short,
        }
    };
    ["cargo".to_string(), "xtask".to_string()]
        .into_iter()
        .chain(args.map(portable))
        .collect()
}

/// Refuses a `figures` call that names one result set twice (in any spelling of its path).
fn check_distinct_runs(runs: &[PathBuf]) -> Result<()> {
    let mut seen = Vec::new();
    for run in runs {
        let real = run
            .canonicalize()
            .with_context(|| format!("result set {}", run.display()))?;
        if seen.contains(&real) {
            bail!("result set {} is named twice", run.display());
        }
        seen.push(real);
    }
    Ok(())
}

/// Everything a guest run needs, built or taken from the cache.
struct Lab {
    kernel: kernel::Kernel,
    rootfs: PathBuf,
    files: Vec<PathBuf>,
}

impl Lab {
    fn spec(&self, o: &VmOpts, command: Vec<String>) -> vm::RunSpec {
        vm::RunSpec {
            accel: o.accel,
            clock: o.clock,
            cpus: o.cpus,
            mem_mib: o.mem,
            timeout: Duration::from_secs(o.timeout),
            files: self.files.clone(),
            command,
        }
    }
}

fn build_lab() -> Result<Lab> {
    let kernel = timed("kernel", kernel::build)?;
    let image = timed("image", image::build)?;
    let ko = timed("module", || module::build(&kernel))?;
    let mut files = vec![ko];
    files.extend(timed("workloads", build_workloads)?);
    Ok(Lab {
        kernel,
        rootfs: image.rootfs,
        files,
    })
}

/// Builds the guest binaries of `workloads/` (the guest runs the same Debian release as the
/// build host, so they run there as built) and returns their paths.
fn build_workloads() -> Result<Vec<PathBuf>> {
    let root = cache::repo_root();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "--package",
            "kdbt-workloads",
            "--bins",
        ])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("building the workloads failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(WORKLOAD_BINARIES
        .iter()
        .map(|b| target.join("release").join(b))
        .filter(|p| p.exists())
        .collect())
}

/// Guest binaries shared into every guest.
const WORKLOAD_BINARIES: &[&str] = &["kdbt-workload", "kdbtctl", "kdbt-hostile"];

/// Runs `f`, printing how long it took to stderr.
fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let out = f().with_context(|| format!("{what} step failed"))?;
    eprintln!("[{what}: {:.1} s]", start.elapsed().as_secs_f64());
    Ok(out)
}

/// fmt and clippy, the lab's builds, then every test including the VM tests (which are
/// `#[ignore]`d in a plain `cargo test` because they need the lab built first).
fn test() -> Result<ExitCode> {
    let root = cache::repo_root();
    let cargo = |args: &[&str]| -> Result<()> {
        eprintln!("$ cargo {}", args.join(" "));
        let status = Command::new(env!("CARGO"))
            .args(args)
            .current_dir(&root)
            .status()?;
        if !status.success() {
            bail!("cargo {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    setup::ensure(setup::ALL_STAGES)?;
    cargo(&["fmt", "--all", "--check"])?;
    // The kernel-side crates are outside the workspace: the engine has its own manifest, and
    // the module's Rust is compiled by Kbuild (rustfmt follows its `mod` items).
    cargo(&[
        "fmt",
        "--manifest-path",
        "module/engine/Cargo.toml",
        "--check",
    ])?;
    let status = Command::new("rustfmt")
        .args(["--check", "--edition", "2021", "module/kdbt_main.rs"])
        .current_dir(&root)
        .status()?;
    if !status.success() {
        bail!("module/*.rs is not rustfmt-clean ({status})");
    }
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ])?;
    build_lab()?;
    cargo(&["test", "--workspace", "--", "--include-ignored"])?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plan_of_the_repository_loads() {
        let dir = cache::repo_root().join(plan::DIR);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                plan::load(&path, &catalogue().unwrap(), |m| {
                    bench::canonical_mode(m).map(drop)
                })
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 5, "only {n} plans in {}", dir.display());
    }

    #[test]
    fn a_recorded_command_line_names_no_machine_path() {
        let repo = Path::new("/home/someone/kdbt");
        let args = [
            "bench",
            "--out",
            "/scratch/runs",
            "--plan=/home/someone/kdbt/plans/layout.toml",
            "--jobs",
            "2",
            "--out=results",
        ];
        let line = recorded_command_line(args.iter().map(|a| a.to_string()), repo);
        assert_eq!(
            line,
            [
                "cargo",
                "xtask",
                "bench",
                "--out",
                "…/runs",
                "--plan=plans/layout.toml",
                "--jobs",
                "2",
                "--out=results"
            ]
        );
    }
}
