//! End-to-end tests: the broker (in-process, or the `gatehouse` binary for the CLI) over
//! real sockets, driven by independent clients: the Mosquitto command-line tools, a
//! WebSocket client, and hand-made packets on raw TCP.
//!
//! Every test starts its own broker on free ports and uses its own client ids and
//! topics, so tests run in parallel. They need `mosquitto_pub` / `mosquitto_sub`
//! (Debian `mosquitto-clients`, installed by `.ci/run`) and `stdbuf` (coreutils).

#![allow(
    clippy::unwrap_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a failed test, and fixtures are written synchronously"
)]

mod arrival_order;
mod auth_chain;
mod authn_reload;
mod authz;
mod authz_reload;
mod authz_sat;
mod bounds_transport;
mod ca_cli;
mod cli;
mod cluster;
mod cluster_backpressure;
mod cluster_failure;
mod cluster_node_kill;
mod cluster_queue;
mod cluster_queue_authz;
mod cluster_retained_ack;
mod cluster_retained_bound;
mod cluster_retained_clears;
mod cluster_sessions;
mod cluster_statestore;
mod cluster_statestore_async;
mod cluster_statestore_quota;
mod cluster_statestore_retry;
mod cluster_statestore_scan;
mod cluster_statestore_sdk;
mod cluster_support;
mod cluster_wills;
mod cluster_wills_authz;
mod config_errors;
mod conn_buffers;
mod custom_auth;
mod explain;
mod ipv6;
mod limits;
mod limits_reload;
mod lingering_close;
mod loadgen;
mod logs;
mod metrics;
mod mosquitto_clients;
mod password;
mod persist_fanout;
mod persistence;
mod preflight;
mod process_metrics;
mod protocol_levels;
mod retained;
mod sat;
mod sat_token_review;
mod security_bounds_alias;
mod security_bounds_conn;
mod security_bounds_retained;
mod security_bounds_session;
mod security_hunt;
mod security_sessions;
mod security_statestore;
mod security_x509;
mod sessions;
mod shutdown;
mod statestore_authz;
mod statestore_cli;
mod statestore_persistence;
mod statestore_sdk;
mod tls;
mod websockets;
mod wills;
mod x509;
