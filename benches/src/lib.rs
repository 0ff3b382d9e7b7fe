//! Benchmarks live in benches/; see README.md.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "a measuring tool, not the broker: a setup failure aborts the run; /proc and result files are read and written synchronously"
)]

pub mod authz_policy;
pub mod harness;
pub mod loadgen;
