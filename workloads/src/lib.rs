//! Guest workloads of kdbt: lmbench-style microbenchmarks ([`micro`]), filebench-style
//! personalities ([`file`]) and an Apache driver ([`apache`]), all reporting [`Record`]s as
//! JSON lines for the bench harness.

pub mod ab;
pub mod apache;
pub mod file;
pub mod micro;
pub mod output;
pub mod record;
pub mod size;
pub mod stats;
pub mod sys;

pub use record::Record;
