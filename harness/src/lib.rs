//! kdbt's host-side lab: building the guest kernel, image and module, booting QEMU guests and
//! running commands in them, and storing results. `cargo xtask` is a thin CLI over this crate,
//! so tests can call the same functions.

pub mod apt_sources;
pub mod bench;
pub mod cache;
pub mod console;
pub mod fresh;
pub mod image;
pub mod instrument;
pub mod kconfig;
pub mod kernel;
pub mod merge;
pub mod mix;
pub mod module;
pub mod plan;
pub mod process;
pub mod qemu;
pub mod runner;
pub mod scaling;
pub mod selftests;
pub mod setup;
pub mod slot_stats;
pub mod soak;
pub mod store;
pub mod vm;
