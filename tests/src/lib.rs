//! Shared helpers for the end-to-end tests.
pub mod raw;

// End-to-end helpers (tests/tests/e2e): the broker in-process or as the `gatehouse`
// binary, the Mosquitto command-line clients, and a few hand-made MQTT 5 packets.
pub mod broker;
pub mod handmade;
pub mod mosquitto;
