//! Subcommands of the `gatehouse` binary beyond `run`.

pub mod ca;
pub mod check;
pub mod explain;
pub mod passwd;
