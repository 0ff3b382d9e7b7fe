//! Broker-wide limits (AIO Broker `advanced.clients` names plus Gatehouse extensions) and
//! diagnostics.

use std::time::Duration;

use serde::Deserialize;

use crate::enums::ci_enum;

/// `broker:` limits. Every field has a default, so the section may be omitted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BrokerLimits {
    /// Upper bound of a client's Session Expiry Interval; default 86400 (1 day). AIO range
    /// 1..=u32::MAX.
    pub max_session_expiry_seconds: u32,
    /// Upper bound of a PUBLISH's Message Expiry Interval; default 86400 (1 day). Messages
    /// published without one are not given one. AIO range 1..=u32::MAX.
    pub max_message_expiry_seconds: u32,
    /// Largest packet accepted (and the Maximum Packet Size the broker announces); default
    /// 1 MiB, like EMQX. AIO range 1..=268435456 (the MQTT maximum).
    pub max_packet_size_bytes: u32,
    /// Upper bound of the Receive Maximum a client may ask for; default 1024.
    pub max_receive_maximum: u16,
    /// Upper bound of a client's Keep Alive; larger requests get a Server Keep Alive of this
    /// value (v5). Default 3600.
    pub max_keep_alive_seconds: u16,
    /// Per-subscriber queue of QoS 1/2 messages waiting for delivery.
    pub subscriber_queue_limit: QueueLimit,
    /// Gatehouse extension: connections accepted at once (a semaphore before `accept()`);
    /// default 10000.
    pub max_connections: usize,
    /// Gatehouse extension: time for TLS handshake, CONNECT and authentication together;
    /// default 10s.
    #[serde(deserialize_with = "crate::duration::deserialize")]
    pub connect_timeout: Duration,
    /// Gatehouse extension: keys the state store holds at most; a SET that would create
    /// one more gets `-ERR the quota has been exceeded`. Default 100000 (AIO sizes its quota
    /// from the memory profile).
    pub state_store_key_quota: usize,

    // --- State store byte quotas (issue 13: the key quota alone let one client store
    // 433 MB). A SET crossing any of them gets `-ERR the quota has been exceeded`. Sizes
    // as in `persistence.maxSize` (`1MiB`, `64Mi`, or a number of bytes).
    /// Gatehouse extension: bytes of one state store value at most; default 1 MiB (the
    /// default `maxPacketSize`, so by default only a raised packet size makes it bite).
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub state_store_max_value_bytes: u64,
    /// Gatehouse extension: bytes of all state store keys and values together at most;
    /// default 64 MiB.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub state_store_max_total_bytes: u64,
    /// Gatehouse extension: bytes of the keys and values one client id last wrote (and
    /// that still exist) at most; default 8 MiB, so no single client can take more than
    /// an eighth of the default total.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub state_store_per_client_bytes: u64,

    // --- Pre-CONNECT limit (issue 13): sockets that have not completed CONNECT yet ---
    /// Gatehouse extension: connections accepted but not yet through CONNECT (TLS
    /// handshake, WebSocket upgrade, CONNECT and its authentication) at once; they count
    /// against `maxConnections` too, and at most `maxConnections` of them are allowed.
    /// When full, the oldest pending connection is closed to make room if it has been
    /// pending for at least a second, otherwise the new socket is closed at once. Default
    /// 256.
    pub max_pending_connections: usize,
    /// Gatehouse extension: pending connections (as above) from one source address (an
    /// IPv4 address, or an IPv6 /64) at once; the same rule applies among that address's
    /// own connections. At most `maxPendingConnections`. Default 64.
    pub max_pending_connections_per_address: usize,

    // --- Subscription and retained message bounds (issue 13) ------------------------
    /// Gatehouse extension: subscriptions one session holds at most (a re-subscription to
    /// a filter it holds does not count again); a SUBSCRIBE filter past it gets reason
    /// 0x97 Quota exceeded (3.1.1: 0x80). Default 1000: far more than a device or an SDK
    /// client uses, and it bounds the index entries (each with a filter of up to 64 KiB)
    /// one client can add. A lower value applies to new SUBSCRIBEs only.
    pub max_subscriptions_per_client: usize,
    /// Gatehouse extension: retained messages held at most, all topics together. A
    /// retained PUBLISH for a new topic past it is not retained: v5 QoS 1/2 publishers get
    /// 0x97 Quota exceeded and the message is not routed; QoS 0 and 3.1.1 messages are
    /// routed without being retained. Clearing and replacing a retained message always
    /// work. Default 100000 (as `stateStoreKeyQuota`).
    pub max_retained_messages: usize,
    /// Gatehouse extension: bytes of retained messages held at most (topic, payload and
    /// properties), all topics together; past it as for `maxRetainedMessages` (a
    /// replacement no larger than the message it replaces always works). Default 64 MiB.
    pub max_retained_bytes: u64,

    // --- Subscription filter bytes per client (issue 13) -----------------------------
    /// Gatehouse extension: bytes of the topic filters one session holds at most, all its
    /// subscriptions together (each filter as written, `$share/<group>/` included); a
    /// SUBSCRIBE filter that would pass it gets 0x97 Quota exceeded (3.1.1: 0x80), like
    /// `maxSubscriptionsPerClient`, which alone still let one client hold 1000 filters of
    /// 64 KiB. Default 256 KiB: 1000 filters averaging 256 bytes, or a few filters of the
    /// largest size. A size as in `persistence.maxSize`. A lower value applies to new
    /// SUBSCRIBEs only.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub max_subscription_bytes_per_client: u64,
    // --- Session bounds (issue 13): sessions and state store registrations ------------
    /// Gatehouse extension: sessions the broker holds at most, connected and offline
    /// together (a session with expiry 0 counts while its client is connected). A CONNECT
    /// that would create a new session past it is refused with CONNACK 0x97 Quota exceeded
    /// (3.1.1: 0x03 Server unavailable); resuming or taking over an existing session (and
    /// Clean Start on an existing client id, which replaces it) always works. Default
    /// 20000: every `maxConnections` slot can hold a session, plus as many offline sessions
    /// waiting for their devices to come back; without it any client may CONNECT with
    /// fresh client ids and a session expiry and leave a queue behind each time.
    pub max_sessions: usize,
    /// Gatehouse extension: keys one client may watch with KEYNOTIFY at once; one more gets
    /// `-ERR the quota has been exceeded`. Registering a key it watches already does not
    /// count again, and the registrations end with the connection. Default 1000 (a key may
    /// be as large as a packet, so this bounds the registry one client can grow).
    pub state_store_max_key_notify_per_client: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        BrokerLimits {
            max_session_expiry_seconds: 86_400,
            max_message_expiry_seconds: 86_400,
            max_packet_size_bytes: 1_048_576,
            max_receive_maximum: 1024,
            max_keep_alive_seconds: 3600,
            subscriber_queue_limit: QueueLimit::default(),
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(10),
            state_store_key_quota: 100_000,
            state_store_max_value_bytes: 1024 * 1024,
            state_store_max_total_bytes: 64 * 1024 * 1024,
            state_store_per_client_bytes: 8 * 1024 * 1024,
            max_pending_connections: 256,
            max_pending_connections_per_address: 64,
            max_subscriptions_per_client: 1000,
            max_retained_messages: 100_000,
            max_retained_bytes: 64 * 1024 * 1024,
            max_subscription_bytes_per_client: 256 * 1024,
            max_sessions: 20_000,
            state_store_max_key_notify_per_client: 1000,
        }
    }
}

/// `subscriberQueueLimit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct QueueLimit {
    /// Messages queued per subscriber before the strategy applies; default 1000 (as
    /// mosquitto's `max_queued_messages`). At least 1.
    pub length: usize,
    /// Default `None` (AIO's default).
    pub strategy: QueueStrategy,

    // --- Byte bound of the queue (issue 13): 1000 messages of 1 MiB are 1 GB ---------
    /// Gatehouse extension (mosquitto's `max_queued_bytes`): bytes (topic + payload) of
    /// the messages queued per subscriber before the strategy applies, counted like
    /// `length` (a connected session counts as congested at this value and takes QoS 1/2
    /// up to twice it while its publishers are held back; a message always fits into an
    /// empty queue). Sizes as in `persistence.maxSize`. Default 16 MiB: sixteen messages
    /// of the default `maxPacketSizeBytes`, or all 1000 messages at 16 KiB each. At least 1.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub max_bytes: u64,
}

impl Default for QueueLimit {
    fn default() -> Self {
        QueueLimit {
            length: 1000,
            strategy: QueueStrategy::None,
            max_bytes: 16 * 1024 * 1024,
        }
    }
}

ci_enum! {
    /// What happens when a subscriber's queue is full. Either way the queue stays bounded.
    #[derive(Default)]
    pub enum QueueStrategy("queue strategy") {
        /// The new message is not queued for that subscriber (dropped and counted), as
        /// mosquitto does.
        #[default]
        None = "None",
        /// The oldest queued message is dropped to make room.
        DropOldest = "DropOldest",
    }
}

/// `diagnostics:`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Diagnostics {
    pub logs: Logs,
    pub metrics: Metrics,
}

/// `diagnostics.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Logs {
    /// `RUST_LOG`-style filter: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`)
    /// and/or `target=level` directives, comma-separated (`info,authz=debug`). Default `info`.
    pub level: String,
    /// Default `text`.
    pub format: LogFormat,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

ci_enum! {
    /// Log line format.
    #[derive(Default)]
    pub enum LogFormat("log format") {
        /// Human-readable lines.
        #[default]
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

/// `diagnostics.metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Metrics {
    /// HTTP port of `/metrics`, `/healthz`, `/readyz`; default 9600 (AIO). `0` asks the OS
    /// for a free port. Must not be a listener's port.
    pub prometheus_port: u16,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            prometheus_port: 9600,
        }
    }
}
