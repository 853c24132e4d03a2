//! kdbt's host-side lab: everything `cargo xtask` does lives here so tests can call it.
pub mod store;
