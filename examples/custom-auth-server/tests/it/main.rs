//! The real `custom-auth-server` binary over real HTTPS: certificates are issued at test
//! time, each test starts its own server on port 0 and talks to it with a hyper client over
//! tokio-rustls that trusts only the test CA.

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

mod add_user;
mod api;
mod common;
mod mtls;
mod reload;
