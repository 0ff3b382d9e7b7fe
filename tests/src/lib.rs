//! Shared helpers for the end-to-end tests (tests/tests/e2e) and the raw-byte protocol
//! tests (tests/tests/protocol): the broker in-process or as the `gatehouse` binary, the
//! Mosquitto command-line clients, and a raw MQTT client with hand-made packets.
pub mod broker;
pub mod mosquitto;
pub mod raw;
pub mod tls;
