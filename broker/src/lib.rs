//! Gatehouse: a standalone MQTT 5 / 3.1.1 broker with the security model of the Azure
//! IoT Operations MQTT broker.
//!
//! # Layout
//! - [`server`]: start the broker from a validated [`gatehouse_config::Config`].
//! - [`transport`]: listeners, the connection cap, TCP and WebSockets.
//! - [`connection`]: one task per connection: CONNECT handshake, packet handling,
//!   delivery to the client, keep alive, exit (DISCONNECT, will, expiry).
//! - [`session`]: state that outlives a connection: queue, in-flight window,
//!   subscriptions, pending will.
//! - [`broker`]: the session registry (clean start, resume, takeover, expiry, will delay).
//! - [`routing`]: the subscription index, retained messages and fan-out.
//! - [`message`]: an application message and one delivery of it.
//! - [`limits`]: the `broker:` limits of the configuration, resolved.
//! - [`metrics`]: counters, `/metrics`, `/healthz` and `/readyz`.
//!
//! The wire format lives in the `gatehouse-protocol` crate (sans-IO, fuzzed).

pub mod admission;
pub mod auth;
pub mod authz;
pub mod broker;
pub mod connection;
pub mod counters;
pub mod file_stamp;
pub mod limits;
pub mod message;
pub mod metrics;
pub mod reload;
pub mod routing;
pub mod server;
pub mod session;
pub mod statestore;
pub mod storage;
pub mod tls;
pub mod topics;
pub mod transport;

pub use server::{BoundPort, Server, StartError};
