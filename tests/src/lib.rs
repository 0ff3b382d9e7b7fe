//! Shared helpers for the end-to-end tests (tests/tests/e2e) and the raw-byte protocol
//! tests (tests/tests/protocol): the broker in-process or as the `gatehouse` binary, the
//! Mosquitto command-line clients, a raw MQTT client with hand-made packets, service
//! account tokens ([`jwt`]) and a scripted HTTPS authentication server ([`https_stub`]).

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]
pub mod broker;
pub mod https_stub;
pub mod jwt;
pub mod mosquitto;
pub mod nats;
pub mod policies;
pub mod raw;
pub mod secure;
pub mod state_store;
pub mod tls;
pub mod wait;
