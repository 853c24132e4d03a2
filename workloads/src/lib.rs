//! Guest workloads.
