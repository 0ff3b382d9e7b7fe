//! Certificate management end to end: real keys, real files, real TLS handshakes.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

mod bootstrap;
mod chain;
mod common;
mod ensure;
mod load;
mod quickstart;
