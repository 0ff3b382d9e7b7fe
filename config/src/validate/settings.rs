//! Secrets and config maps, broker limits, diagnostics (native-form sections).

use super::{check_label, Origins, Report};
use crate::model::*;

pub(super) fn check_files(config: &Config, report: &mut Report) {
    for name in config.secrets.keys() {
        check_label(report, &format!("secrets.{name}"), "secret", name);
    }
    for (name, files) in &config.config_maps {
        check_label(report, &format!("configMaps.{name}"), "config map", name);
        if files.files.is_empty() {
            report.error(
                format!("configMaps.{name}.files"),
                "at least one file is required",
            );
        }
    }
}

pub(super) fn check_broker(broker: &BrokerLimits, origins: &Origins, report: &mut Report) {
    let mut at_least_one = |field: &str, value: u64| {
        if value == 0 {
            report.error(origins.limit(field), "must be at least 1");
        }
    };
    at_least_one(
        "maxSessionExpirySeconds",
        broker.max_session_expiry_seconds.into(),
    );
    at_least_one(
        "maxMessageExpirySeconds",
        broker.max_message_expiry_seconds.into(),
    );
    at_least_one("maxReceiveMaximum", broker.max_receive_maximum.into());
    at_least_one(
        "subscriberQueueLimit.length",
        broker.subscriber_queue_limit.length as u64,
    );
    at_least_one("maxConnections", broker.max_connections as u64);
    at_least_one("stateStoreKeyQuota", broker.state_store_key_quota as u64);
    // State store byte quotas: 0 would refuse every SET.
    at_least_one(
        "stateStoreMaxValueBytes",
        broker.state_store_max_value_bytes,
    );
    at_least_one(
        "stateStoreMaxTotalBytes",
        broker.state_store_max_total_bytes,
    );
    at_least_one(
        "stateStorePerClientBytes",
        broker.state_store_per_client_bytes,
    );
    // Pre-CONNECT limit (issue 13).
    at_least_one(
        "maxPendingConnections",
        broker.max_pending_connections as u64,
    );
    at_least_one(
        "maxPendingConnectionsPerAddress",
        broker.max_pending_connections_per_address as u64,
    );
    at_least_one(
        "maxSubscriptionsPerClient",
        broker.max_subscriptions_per_client as u64,
    );
    at_least_one("maxRetainedMessages", broker.max_retained_messages as u64);
    at_least_one("maxRetainedBytes", broker.max_retained_bytes);
    // Subscription filter bytes per client (issue 13): 0 would refuse every SUBSCRIBE.
    at_least_one(
        "maxSubscriptionBytesPerClient",
        broker.max_subscription_bytes_per_client,
    );
    // Session bounds (issue 13): 0 would refuse every new session, every queued message,
    // every KEYNOTIFY.
    at_least_one(
        "subscriberQueueLimit.maxBytes",
        broker.subscriber_queue_limit.max_bytes,
    );
    at_least_one("maxSessions", broker.max_sessions as u64);
    at_least_one(
        "stateStoreMaxKeyNotifyPerClient",
        broker.state_store_max_key_notify_per_client as u64,
    );
    const MQTT_MAX_PACKET: u32 = 268_435_456;
    if broker.max_packet_size_bytes == 0 || broker.max_packet_size_bytes > MQTT_MAX_PACKET {
        report.error(
            origins.limit("maxPacketSizeBytes"),
            format!(
                "{} is out of range; allowed: 1..={MQTT_MAX_PACKET} (256 MiB, the MQTT maximum)",
                broker.max_packet_size_bytes
            ),
        );
    }
    if broker.connect_timeout.is_zero() {
        report.error(
            origins.limit("connectTimeout"),
            "must be longer than 0 (default 10s)",
        );
    }
}

pub(super) fn check_diagnostics(diagnostics: &Diagnostics, origins: &Origins, report: &mut Report) {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let level_ok = |level: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level));
    let filter = &diagnostics.logs.level;
    let ok = !filter.trim().is_empty()
        && filter.split(',').all(|directive| {
            let directive = directive.trim();
            match directive.split_once('=') {
                None => level_ok(directive),
                Some((target, level)) => {
                    !target.is_empty()
                        && target
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
                        && level_ok(level)
                }
            }
        });
    if !ok {
        report.error(
            origins.diagnostics("logs.level"),
            format!(
                "`{filter}` is not a log filter; allowed: a level ({}) and/or target=level \
                 directives, comma-separated, e.g. info,authz=debug",
                LEVELS.join(", ")
            ),
        );
    }
}
