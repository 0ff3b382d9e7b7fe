//! Benchmarks live in benches/; see README.md.

pub mod authz_policy;
pub mod harness;
pub mod loadgen;
