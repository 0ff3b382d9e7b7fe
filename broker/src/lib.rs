//! Gatehouse: a standalone MQTT 5 / 3.1.1 broker with the security model of the Azure
//! IoT Operations MQTT broker.
//!
//! # Layout
//! Top to bottom: a module uses only modules in its own group or below (checked by
//! `tests/layers.rs`; ARCHITECTURE.md "Module map" draws the same).
//!
//! Start-up and exposition:
//! - [`server`]: start the broker from a validated [`gatehouse_config::Config`].
//! - [`reload`]: apply a changed configuration file to the running broker.
//! - [`preflight`]: what start-up needs besides ports, checked at once (`gatehouse check`
//!   and [`Server::start`] both run it).
//! - [`metrics`]: `/metrics`, `/healthz` and `/readyz`: reads every domain's counters.
//!
//! The data path:
//! - [`transport`]: listeners, TCP and WebSockets, the metered socket.
//! - [`connection`]: a connection's tasks (CONNECT handshake, then serving): packet handling,
//!   delivery to the client, keep alive, exit (DISCONNECT, will, expiry).
//! - [`registry`]: the session registry (clean start, resume, takeover, expiry, will delay).
//! - [`session`]: state that outlives a connection: queue, in-flight window,
//!   subscriptions, pending will, and its journal (what persists).
//! - [`routing`]: the subscription index, retained messages and fan-out.
//! - [`limits`]: the `broker:` limits of the configuration, resolved.
//! - [`cluster`]: cluster mode, this node's link to the others through NATS (issue 15).
//!
//! Security and the state store:
//! - [`auth`]: authentication chains (X.509, SAT, custom server), device registry.
//! - [`authz`]: authorization policies and their decision cache.
//! - [`statestore`]: the key-value state store served over MQTT, and its persistence.
//! - [`tls`]: server certificates (manual files or issued automatically).
//!
//! Leaves:
//! - [`storage`]: the storage boundary ([`storage::Store`]), the redb file, the write-ahead log.
//! - [`admission`]: the connection cap and the pre-CONNECT budget.
//! - [`counters`]: counter primitives and a port's counters.
//! - [`message`]: an application message and one delivery of it.
//! - [`topics`]: the topics the broker serves itself (the state store's).
//! - [`file_stamp`]: whether a file changed; [`file_watch`]: files followed by a sweeping
//!   task, their parsed contents read without touching the file system.
//!
//! The wire format lives in the `gatehouse-protocol` crate (sans-IO, fuzzed), the
//! configuration in `gatehouse-config`. The `gatehouse` binary (`src/bin/gatehouse/`:
//! `main.rs` and the subcommands in `cli/`) is not part of this library; it uses it like
//! any other crate, through `gatehouse::`.

pub mod admission;
pub mod auth;
pub mod authz;
pub mod cluster;
pub mod connection;
pub mod counters;
pub mod file_stamp;
pub mod file_watch;
pub mod limits;
pub mod message;
pub mod metrics;
#[allow(
    clippy::disallowed_methods,
    reason = "runs at start-up before any port is bound, and in `gatehouse check`: it blocks no client"
)]
pub mod preflight;
pub mod registry;
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
