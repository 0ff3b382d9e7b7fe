//! The AIO `Broker` document: what of it applies to one broker on one machine.
//!
//! Read: `spec.persistence` (the native form's `persistence:`), `spec.diagnostics.logs.level`
//! and `spec.diagnostics.metrics.prometheusPort` (the native `diagnostics:`),
//! `spec.advanced.clients` (the AIO limits of the native `broker:`), and the annotation
//! [`DATA_DIR_ANNOTATION`] (the native `dataDir`, which a Broker has no field for).
//! Skipped with a warning: what describes a Kubernetes deployment (`cardinality`,
//! `memoryProfile`, `generateResourceLimits`, `diskBackedMessageBuffer`, the persistent
//! volume claim, internal certificates) and diagnostics Gatehouse does not have (self
//! check, traces).

use std::path::PathBuf;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{Built, Metadata};
use crate::enums::ci_enum;
use crate::error::Problem;
use crate::model::*;
use crate::paths::{Loc, DATA_DIR_ANNOTATION};

/// A Broker `spec` (AIO `BrokerProperties`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct BrokerSpec {
    #[serde(default)]
    persistence: Option<BrokerPersistence>,
    #[serde(default)]
    advanced: Option<Advanced>,
    #[serde(default)]
    cardinality: Option<IgnoredAny>,
    #[serde(default)]
    diagnostics: Option<BrokerDiagnostics>,
    #[serde(default)]
    disk_backed_message_buffer: Option<IgnoredAny>,
    #[serde(default)]
    generate_resource_limits: Option<IgnoredAny>,
    #[serde(default)]
    memory_profile: Option<IgnoredAny>,
}

/// AIO `BrokerDiagnostics`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerDiagnostics {
    #[serde(default)]
    logs: Option<BrokerLogs>,
    #[serde(default)]
    metrics: Option<BrokerMetrics>,
    #[serde(default)]
    self_check: Option<IgnoredAny>,
    #[serde(default)]
    traces: Option<IgnoredAny>,
}

/// AIO `DiagnosticsLogs`: only the level (the format is a Gatehouse setting of the native
/// form, or `--log-format`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerLogs {
    #[serde(default)]
    level: Option<String>,
}

/// AIO `Metrics`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerMetrics {
    #[serde(default)]
    prometheus_port: Option<u16>,
}

/// AIO `AdvancedSettings`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Advanced {
    #[serde(default)]
    clients: Option<ClientConfig>,
    #[serde(default)]
    encrypt_internal_traffic: Option<IgnoredAny>,
    #[serde(default)]
    internal_certs: Option<IgnoredAny>,
}

/// AIO `ClientConfig`: the limits the native `broker:` section names the same way.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClientConfig {
    #[serde(default)]
    max_session_expiry_seconds: Option<u32>,
    #[serde(default)]
    max_message_expiry_seconds: Option<u32>,
    #[serde(default)]
    max_packet_size_bytes: Option<u32>,
    #[serde(default)]
    max_receive_maximum: Option<u16>,
    #[serde(default)]
    max_keep_alive_seconds: Option<u16>,
    #[serde(default)]
    subscriber_queue_limit: Option<SubscriberQueueLimit>,
}

/// AIO `SubscriberQueueLimit`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubscriberQueueLimit {
    #[serde(default)]
    length: Option<usize>,
    #[serde(default)]
    strategy: Option<QueueStrategy>,
}

/// AIO `BrokerPersistence`: the native form's `persistence:` plus two fields about the
/// Kubernetes volume and its encryption, which Gatehouse does not have.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BrokerPersistence {
    #[serde(deserialize_with = "crate::size::deserialize")]
    max_size: u64,
    #[serde(default)]
    dynamic_settings: DynamicSettings,
    #[serde(default)]
    retain: RetainPolicy,
    #[serde(default)]
    state_store: StateStorePolicy,
    #[serde(default)]
    subscriber_queue: SubscriberQueuePolicy,
    #[serde(default)]
    encryption: Option<Encryption>,
    #[serde(default)]
    persistent_volume_claim_spec: Option<IgnoredAny>,
}

/// `persistence.encryption`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Encryption {
    mode: EncryptionMode,
}

ci_enum! {
    /// `persistence.encryption.mode`.
    enum EncryptionMode("encryption mode") {
        Enabled = "Enabled",
        Disabled = "Disabled",
    }
}

/// Takes what applies of a Broker and warns about the fields Gatehouse skips.
pub(super) fn add(
    spec: BrokerSpec,
    metadata: &Metadata,
    label: &str,
    loc: &Loc,
    built: &mut Built,
) {
    if let Some(first) = &built.broker {
        built.problems.push(Problem::new(
            label,
            format!("a second Broker: Gatehouse is one broker (the first is {first})"),
        ));
        return;
    }
    built.broker = Some(label.to_owned());
    built.origins.broker = Some(loc.spec.clone());
    let skipped = [
        ("cardinality", spec.cardinality.is_some()),
        (
            "diskBackedMessageBuffer",
            spec.disk_backed_message_buffer.is_some(),
        ),
        (
            "generateResourceLimits",
            spec.generate_resource_limits.is_some(),
        ),
        ("memoryProfile", spec.memory_profile.is_some()),
    ];
    for (field, _) in skipped.iter().filter(|(_, present)| *present) {
        built.warnings.push(Problem::new(
            loc.at(field),
            "skipped: it describes a Kubernetes deployment; Gatehouse is one process",
        ));
    }
    if let Some(dir) = metadata.annotations.get(DATA_DIR_ANNOTATION) {
        // Relative to the manifest file's folder, like the native `dataDir`.
        built.config.data_dir = PathBuf::from(dir);
    }
    if let Some(diagnostics) = spec.diagnostics {
        add_diagnostics(diagnostics, loc, built);
    }
    if let Some(advanced) = spec.advanced {
        add_advanced(advanced, loc, built);
    }
    if let Some(persistence) = spec.persistence {
        add_persistence(persistence, loc, built);
    }
}

fn add_diagnostics(diagnostics: BrokerDiagnostics, loc: &Loc, built: &mut Built) {
    let base = loc.at("diagnostics");
    if let Some(level) = diagnostics.logs.and_then(|l| l.level) {
        built.config.diagnostics.logs.level = level;
    }
    if let Some(port) = diagnostics.metrics.and_then(|m| m.prometheus_port) {
        built.config.diagnostics.metrics.prometheus_port = port;
    }
    for (field, present) in [
        ("selfCheck", diagnostics.self_check.is_some()),
        ("traces", diagnostics.traces.is_some()),
    ] {
        if present {
            built.warnings.push(Problem::new(
                format!("{base}.{field}"),
                "skipped: Gatehouse has no self check or tracing; it logs and serves \
                 /metrics, /healthz and /readyz",
            ));
        }
    }
}

fn add_advanced(advanced: Advanced, loc: &Loc, built: &mut Built) {
    let base = loc.at("advanced");
    for (field, present) in [
        (
            "encryptInternalTraffic",
            advanced.encrypt_internal_traffic.is_some(),
        ),
        ("internalCerts", advanced.internal_certs.is_some()),
    ] {
        if present {
            built.warnings.push(Problem::new(
                format!("{base}.{field}"),
                "skipped: Gatehouse is one process, with no internal traffic",
            ));
        }
    }
    let Some(clients) = advanced.clients else {
        return;
    };
    let limits = &mut built.config.broker;
    if let Some(value) = clients.max_session_expiry_seconds {
        limits.max_session_expiry_seconds = value;
    }
    if let Some(value) = clients.max_message_expiry_seconds {
        limits.max_message_expiry_seconds = value;
    }
    if let Some(value) = clients.max_packet_size_bytes {
        limits.max_packet_size_bytes = value;
    }
    if let Some(value) = clients.max_receive_maximum {
        limits.max_receive_maximum = value;
    }
    if let Some(value) = clients.max_keep_alive_seconds {
        limits.max_keep_alive_seconds = value;
    }
    if let Some(queue) = clients.subscriber_queue_limit {
        if let Some(length) = queue.length {
            limits.subscriber_queue_limit.length = length;
        }
        if let Some(strategy) = queue.strategy {
            limits.subscriber_queue_limit.strategy = strategy;
        }
    }
}

fn add_persistence(p: BrokerPersistence, loc: &Loc, built: &mut Built) {
    let base = loc.at("persistence");
    if p.encryption
        .is_some_and(|e| e.mode == EncryptionMode::Enabled)
    {
        built.warnings.push(Problem::new(
            format!("{base}.encryption"),
            "not implemented: gatehouse.redb is not encrypted (set mode Disabled to \
             acknowledge, or protect <dataDir> by other means)",
        ));
    }
    if p.persistent_volume_claim_spec.is_some() {
        built.warnings.push(Problem::new(
            format!("{base}.persistentVolumeClaimSpec"),
            "skipped: Gatehouse writes to <dataDir>/gatehouse.redb",
        ));
    }
    built.config.persistence = Some(Persistence {
        max_size: p.max_size,
        dynamic_settings: p.dynamic_settings,
        retain: p.retain,
        state_store: p.state_store,
        subscriber_queue: p.subscriber_queue,
    });
    built.origins.persistence = Some(base);
}

#[cfg(test)]
mod tests {
    use crate::{load_str, DATA_DIR_ANNOTATION};

    const LISTENER: &str = "apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: { name: default }
spec: { ports: [ { port: 1883 } ] }
---
";

    fn broker(metadata: &str, spec: &str) -> String {
        format!(
            "{LISTENER}apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: Broker\n\
             metadata: {metadata}\nspec: {spec}\n"
        )
    }

    #[test]
    fn diagnostics_limits_and_data_folder_are_read() {
        let yaml = broker(
            &format!("{{ name: default, annotations: {{ {DATA_DIR_ANNOTATION}: /var/lib/gh }} }}"),
            "{ diagnostics: { logs: { level: debug }, metrics: { prometheusPort: 9601 } },
               advanced: { clients: { maxPacketSizeBytes: 4096, maxKeepAliveSeconds: 60,
                 subscriberQueueLimit: { length: 10, strategy: DropOldest } } } }",
        );
        let loaded = load_str(&yaml, "t.yaml").expect("valid");
        let config = loaded.config;
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(config.diagnostics.logs.level, "debug");
        assert_eq!(config.diagnostics.metrics.prometheus_port, 9601);
        assert_eq!(config.broker.max_packet_size_bytes, 4096);
        assert_eq!(config.broker.max_keep_alive_seconds, 60);
        assert_eq!(config.broker.subscriber_queue_limit.length, 10);
        assert_eq!(config.data_dir, std::path::PathBuf::from("/var/lib/gh"));
    }

    #[test]
    fn bad_values_are_reported_at_the_broker_fields() {
        let yaml = broker(
            "{ name: default }",
            "{ diagnostics: { logs: { level: loud }, selfCheck: { mode: Enabled } },
               advanced: { clients: { maxPacketSizeBytes: 0 }, internalCerts: {} } }",
        );
        let err = load_str(&yaml, "t.yaml").expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("document 2 (Broker default).spec.diagnostics.logs.level: `loud`"),
            "{text}"
        );
        assert!(
            text.contains(
                "document 2 (Broker default).spec.advanced.clients.maxPacketSizeBytes: 0 is out of range"
            ),
            "{text}"
        );
    }

    #[test]
    fn deployment_and_tracing_fields_are_skipped_with_a_warning() {
        let yaml = broker(
            "{ name: default }",
            "{ diagnostics: { traces: { mode: Enabled } }, advanced: { encryptInternalTraffic: Enabled } }",
        );
        let loaded = load_str(&yaml, "t.yaml").expect("valid");
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0]
            .starts_with("document 2 (Broker default).spec.diagnostics.traces: skipped"));
        assert!(loaded.warnings[1].starts_with(
            "document 2 (Broker default).spec.advanced.encryptInternalTraffic: skipped"
        ));
    }
}
