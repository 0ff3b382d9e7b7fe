//! Subcommands of the `gatehouse` binary beyond `run` and `check`.

pub mod ca;
pub mod explain;
pub mod passwd;
