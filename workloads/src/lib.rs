//! Guest workloads of kdbt: lmbench-style microbenchmarks ([`micro`]), filebench-style
//! personalities ([`file`]) and an Apache driver ([`apache`]), all reporting [`Record`]s as
//! JSON lines for the bench harness.

pub mod ab;
pub mod apache;
pub mod file;
pub mod funcset;
pub mod idle;
pub mod micro;
pub mod null_insns;
pub mod output;
pub mod prof;
pub mod record;
pub mod size;
pub mod stats;
pub mod sys;
pub mod warmup;

pub use record::Record;

/// Every benchmark, as `kdbt-workload list` prints it: `suite<TAB>name` lines, in run order.
/// The host builds its plan from this without building or running the guest binary.
pub fn catalogue() -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, String)> = micro::specs()
        .into_iter()
        .map(|s| ("micro", s.name.to_string()))
        .collect();
    all.extend(
        file::personalities()
            .into_iter()
            .map(|p| ("file", p.name.to_string())),
    );
    all.push(("apache", apache::BENCHMARK.to_string()));
    all
}
