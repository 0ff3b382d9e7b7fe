//! Certificate management end to end: real keys, real files, real TLS handshakes.

mod bootstrap;
mod chain;
mod common;
mod ensure;
mod load;
mod quickstart;
