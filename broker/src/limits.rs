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

    // --- Subscription and retained message bounds (issue 13) ------------------------
    /// `maxSubscriptionsPerClient`: past it a SUBSCRIBE filter gets 0x97 Quota exceeded.
    /// Read from the broker's current limits at each SUBSCRIBE, so a reload applies at once.
    pub max_subscriptions_per_client: usize,
    /// `maxRetainedMessages` and `maxRetainedBytes`.
    pub retained_caps: crate::routing::RetainedCaps,
}

/// Aliases per connection: enough for any real client, small enough that a hostile one
/// cannot make the alias table large (each entry holds a topic of up to 64 KiB).
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
            max_subscriptions_per_client: b.max_subscriptions_per_client,
            retained_caps: crate::routing::RetainedCaps {
                max_messages: b.max_retained_messages,
                max_bytes: usize::try_from(b.max_retained_bytes).unwrap_or(usize::MAX),
            },
        }
    }

    /// When a message published with this Message Expiry Interval expires, after
    /// capping it at `maxMessageExpirySeconds`.
    pub fn message_expires_at(&self, interval: Option<u32>) -> Option<Instant> {
        let secs = interval?.min(self.max_message_expiry);
        Some(Instant::now() + Duration::from_secs(u64::from(secs)))
    }
}
