//! Benchmarks live in benches/; see README.md.

pub mod authz_policy;
