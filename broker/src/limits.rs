//! Limits the broker enforces, resolved once from `broker:` in the configuration.

use std::time::{Duration, Instant};

use gatehouse_config::{BrokerLimits, QueueStrategy};

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_session_expiry: u32,
    pub max_message_expiry: u32,
    /// Largest packet we accept (CONNACK Maximum Packet Size); bigger → 0x95.
    pub max_packet_size: u32,
    /// `maxReceiveMaximum`: the largest in-flight window a client may ask for
    /// (AIO semantics), and also the Receive Maximum we advertise for QoS 2 messages a
    /// client may leave unacknowledged with us.
    pub receive_maximum: u16,
    pub max_keep_alive: u16,
    /// Topic aliases a client may set towards us (CONNACK Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    pub queue_length: usize,
    pub queue_drop_oldest: bool,
    pub max_connections: usize,
    /// One deadline for everything before CONNACK (TLS, WebSocket upgrade, CONNECT).
    pub connect_timeout: Duration,
    /// Keys the state store holds at most (`-ERR the quota has been exceeded`).
    pub state_store_key_quota: Option<usize>,

    // State store byte quotas (`-ERR the quota has been exceeded`); see
    // `statestore::store::Quotas`.
    /// `stateStoreMaxValueBytes`: bytes of one value.
    pub state_store_max_value_bytes: Option<u64>,
    /// `stateStoreMaxTotalBytes`: bytes of all keys and values.
    pub state_store_max_total_bytes: Option<u64>,
    /// `stateStorePerClientBytes`: bytes of the keys a client id last wrote.
    pub state_store_per_client_bytes: Option<u64>,
    /// Pre-CONNECT limit (`maxPendingConnections`, at most `maxConnections`): accepted
    /// connections not yet through CONNECT. See `transport::admission`.
    pub max_pending_connections: usize,
    /// The same per source address (`maxPendingConnectionsPerAddress`, at most
    /// `max_pending_connections`).
    pub max_pending_per_address: usize,

    // --- Subscription and retained message bounds (issue 13) ------------------------
    /// `maxSubscriptionsPerClient`: past it a SUBSCRIBE filter gets 0x97 Quota exceeded.
    /// Read from the broker's current limits at each SUBSCRIBE, so a reload applies at once.
    pub max_subscriptions_per_client: usize,
    /// `maxRetainedMessages` and `maxRetainedBytes`.
    pub retained_caps: crate::routing::RetainedCaps,

    // --- Subscription filter bytes per client (issue 13) -----------------------------
    /// `maxSubscriptionBytesPerClient`: bytes of the filters one session holds at most;
    /// past it a SUBSCRIBE filter gets 0x97 Quota exceeded. Read at each SUBSCRIBE, as
    /// `max_subscriptions_per_client`.
    pub max_subscription_bytes_per_client: usize,
    // --- Session bounds (issue 13) ---------------------------------------------------
    /// `subscriberQueueLimit.maxBytes`: bytes (topic + payload) queued per session, with
    /// the same strategy and congestion rules as `queue_length` (see `session::queue`).
    pub queue_max_bytes: usize,
    /// `maxSessions`: a CONNECT that would create a session past it gets 0x97 (3.1.1:
    /// 0x03). Read from the broker's current limits at each CONNECT, so a reload applies
    /// at once (sessions past a lowered bound stay until they end).
    pub max_sessions: usize,
    /// `stateStoreMaxKeyNotifyPerClient`: keys one client may watch at once.
    pub state_store_max_key_notify_per_client: usize,
}

/// Aliases per connection: enough for any real client. Each entry holds a topic of up
/// to 64 KiB, so the table is also bounded in bytes (`connection::aliases`).
const TOPIC_ALIAS_MAXIMUM: u16 = 1024;

impl Limits {
    pub fn from_config(b: &BrokerLimits) -> Self {
        Limits {
            max_session_expiry: b.max_session_expiry_seconds,
            max_message_expiry: b.max_message_expiry_seconds,
            max_packet_size: b.max_packet_size_bytes,
            receive_maximum: b.max_receive_maximum,
            max_keep_alive: b.max_keep_alive_seconds,
            topic_alias_maximum: TOPIC_ALIAS_MAXIMUM,
            queue_length: b.subscriber_queue_limit.length,
            queue_drop_oldest: matches!(
                b.subscriber_queue_limit.strategy,
                QueueStrategy::DropOldest
            ),
            max_connections: b.max_connections,
            connect_timeout: b.connect_timeout,
            state_store_key_quota: Some(b.state_store_key_quota),
            // Pending connections hold connection permits: a budget above the cap could
            // let them take every permit without ever filling up (and so without ever
            // making room for a newcomer).
            max_pending_connections: b.max_pending_connections.clamp(1, b.max_connections.max(1)),
            max_pending_per_address: b.max_pending_connections_per_address.clamp(
                1,
                b.max_pending_connections.clamp(1, b.max_connections.max(1)),
            ),
            state_store_max_value_bytes: Some(b.state_store_max_value_bytes),
            state_store_max_total_bytes: Some(b.state_store_max_total_bytes),
            state_store_per_client_bytes: Some(b.state_store_per_client_bytes),
            max_subscriptions_per_client: b.max_subscriptions_per_client,
            max_subscription_bytes_per_client: usize::try_from(b.max_subscription_bytes_per_client)
                .unwrap_or(usize::MAX),
            retained_caps: crate::routing::RetainedCaps {
                max_messages: b.max_retained_messages,
                max_bytes: usize::try_from(b.max_retained_bytes).unwrap_or(usize::MAX),
            },
            queue_max_bytes: usize::try_from(b.subscriber_queue_limit.max_bytes)
                .unwrap_or(usize::MAX),
            max_sessions: b.max_sessions,
            state_store_max_key_notify_per_client: b.state_store_max_key_notify_per_client,
        }
    }

    /// Every bound of the state store.
    pub fn state_store_quotas(&self) -> crate::statestore::store::Quotas {
        crate::statestore::store::Quotas {
            keys: self.state_store_key_quota,
            value_bytes: self.state_store_max_value_bytes,
            total_bytes: self.state_store_max_total_bytes,
            client_bytes: self.state_store_per_client_bytes,
            key_notify_per_client: Some(self.state_store_max_key_notify_per_client),
        }
    }

    /// `subscriberQueueLimit`: the per-session queue policy.
    pub fn queue_policy(&self) -> crate::session::QueuePolicy {
        crate::session::QueuePolicy {
            length: self.queue_length,
            max_bytes: self.queue_max_bytes,
            drop_oldest: self.queue_drop_oldest,
        }
    }

    /// When a message published with this Message Expiry Interval expires, after
    /// capping it at `maxMessageExpirySeconds`.
    pub fn message_expires_at(&self, interval: Option<u32>) -> Option<Instant> {
        let secs = interval?.min(self.max_message_expiry);
        Some(Instant::now() + Duration::from_secs(u64::from(secs)))
    }
}
