//! Listeners and ports (AIO `BrokerListener`).

use std::net::IpAddr;

use serde::Deserialize;

use super::tls::Tls;
use crate::enums::ci_enum;

/// A named network endpoint with one or more ports.
///
/// Built from the YAML by the loader (not deserialized directly) because two of its fields
/// have defaults that depend on other fields: `service_name` defaults to `name`, and each
/// Automatic TLS port's `secret_name` to `<name>-<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// 3–63 characters of `[a-z0-9-]`, unique among listeners.
    pub name: String,
    /// Kept from AIO: at most one listener per service type. Gatehouse opens no Kubernetes
    /// Service, so the type has no other effect.
    pub service_type: ServiceType,
    /// Unique; defaults to `name`. Used as a default SAN of Automatic TLS certificates.
    pub service_name: String,
    /// Gatehouse extension: the address the ports bind to; YAML default `0.0.0.0` (all
    /// interfaces; the broker also binds `::` for that case).
    pub bind_address: IpAddr,
    /// At least one.
    pub ports: Vec<ListenerPort>,
}

/// One port of a listener: its own protocol, TLS, authentication and authorization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerPort {
    /// TCP port, unique across all listeners. `0` asks the OS for a free port (useful in
    /// tests); several ports may be 0.
    pub port: u16,
    /// `Mqtt` (default) or `WebSockets` (MQTT over WebSocket, subprotocol `mqtt`).
    #[serde(default)]
    pub protocol: Protocol,
    /// Kubernetes NodePort; accepted so AIO manifests load, unused by Gatehouse.
    #[serde(default)]
    pub node_port: Option<u16>,
    /// Gatehouse extension, WebSockets only: the HTTP path to accept the upgrade on
    /// (e.g. `/mqtt`). Absent = every path is accepted, as AIO does.
    #[serde(default)]
    pub path: Option<String>,
    /// Name of an [`Authentication`](super::Authentication). Absent = authentication
    /// disabled: every client is accepted as anonymous.
    #[serde(default)]
    pub authentication_ref: Option<String>,
    /// Name of an [`Authorization`](super::Authorization). Absent = every client may do
    /// everything. Ignored (with a warning) when `authentication_ref` is absent, as in AIO.
    #[serde(default)]
    pub authorization_ref: Option<String>,
    /// Absent = plain TCP.
    #[serde(default)]
    pub tls: Option<Tls>,
}

impl ListenerPort {
    /// A plain, anonymous port.
    pub fn new(port: u16, protocol: Protocol) -> Self {
        ListenerPort {
            port,
            protocol,
            node_port: None,
            path: None,
            authentication_ref: None,
            authorization_ref: None,
            tls: None,
        }
    }
}

ci_enum! {
    /// AIO's Kubernetes service type; one listener per type.
    #[derive(Default)]
    pub enum ServiceType("service type") {
        #[default]
        ClusterIp = "ClusterIp",
        NodePort = "NodePort",
        LoadBalancer = "LoadBalancer",
    }
}

ci_enum! {
    /// The protocol a port speaks.
    #[derive(Default)]
    pub enum Protocol("protocol") {
        #[default]
        Mqtt = "Mqtt",
        WebSockets = "WebSockets",
    }
}
