//! Every VM test, in one test binary: `cargo test` runs binaries one after another, so only
//! tests of one binary share the guest slots ([`support::MAX_GUESTS`]) and run side by side.
//!
//! They boot the cached guest lab, so they are `#[ignore]`d in a plain `cargo test`;
//! `cargo xtask test` builds the lab and runs them with `--include-ignored`. One of them:
//! `cargo test -p kdbt-harness --test vm -- --include-ignored <name filter>`.

// Tests start in name order, two at a time: the long switch and mix tests of
// `translated_kernel` come last, so the selftests boot does not run alone at the end.
mod entry_paths;
mod instrument;
mod selftests;
mod smoke;
mod support;
mod translated_kernel;
