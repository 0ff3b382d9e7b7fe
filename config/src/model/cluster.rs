//! `cluster:` (issue 15, beyond AIO; native form only): several Gatehouse nodes behave as
//! one broker, joined through a NATS cluster with JetStream that each node reaches as an
//! ordinary client. Absent (the default): one node, nothing of NATS is needed or touched.
//!
//! ```yaml
//! cluster:
//!   nodeName: gatehouse-1          # default: the host name
//!   nats:
//!     servers: [nats://10.0.0.1:4222, nats://10.0.0.2:4222, nats://10.0.0.3:4222]
//!     replicas: 3                  # JetStream replicas of what the cluster stores
//!     credentialsFile: /etc/gatehouse/nats.creds   # optional
//!     tls: { caFile: ca.crt, certFile: node.crt, keyFile: node.key }   # optional
//!     disconnectGrace: 5s          # NATS lost this long: clients disconnected
//!   queueMaxBytes: 1GiB            # messages kept for offline sessions (JetStream)
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `cluster:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    pub nats: NatsSettings,
    /// This node's name among the cluster's nodes (logs, the origin of forwarded messages,
    /// later the owner of sessions). Default: the host name. Letters, digits, `-` and `_`.
    #[serde(default)]
    pub node_name: Option<String>,

    // --- QoS 1/2 messages for offline sessions (issue 15): the `gatehouse-queued` stream.
    /// At most this many bytes of messages kept for offline persistent sessions, across
    /// the cluster (per replica); past it the oldest are dropped. They are also dropped
    /// after `broker.maxSessionExpirySeconds`. Default 1 GiB; at least 1 MiB.
    #[serde(
        default = "default_queue_max_bytes",
        deserialize_with = "crate::size::deserialize"
    )]
    pub queue_max_bytes: u64,
}

fn default_queue_max_bytes() -> u64 {
    1 << 30
}

/// `cluster.nats`: how this node reaches the NATS cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsSettings {
    /// Seed URLs, `nats://host:port` (or `tls://host:port`); the client learns the rest of
    /// the cluster from them. At least one; no credentials inside a URL.
    pub servers: Vec<String>,
    /// JetStream replicas of every stream and key-value bucket the cluster creates, 1 to 5
    /// (JetStream's own bound). Default 3: survives the loss of one NATS server.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// A NATS credentials file (`.creds`: user JWT and NKey seed), optional.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// TLS to the NATS servers, optional (`tls://` URLs need it or the system roots).
    #[serde(default)]
    pub tls: Option<NatsTls>,

    // --- Failure handling (issue 15): how long this node serves its clients without NATS.
    /// How long the NATS connection may be lost (every server unreachable) before this node
    /// disconnects its MQTT clients (v5 DISCONNECT 0x89) and refuses new CONNECTs (0x88)
    /// until NATS is back; also how long JetStream may not answer before retained
    /// PUBLISHes are refused. Default 5s; at most 10 min; 0 acts at once.
    #[serde(
        default = "default_disconnect_grace",
        deserialize_with = "crate::duration::deserialize"
    )]
    pub disconnect_grace: Duration,
}

/// `cluster.nats.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NatsTls {
    /// CA certificates (PEM) the NATS servers' certificates are verified against; default
    /// the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to the NATS servers; with `keyFile`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

fn default_replicas() -> u32 {
    3
}

fn default_disconnect_grace() -> Duration {
    Duration::from_secs(5)
}
