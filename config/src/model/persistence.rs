//! `persistence:` (AIO Broker `spec.persistence`): what is written to disk so that it
//! survives a restart.
//!
//! Field names, values and defaults are AIO's (Broker CRD `BrokerPersistence`, and the
//! "Configure MQTT broker persistence" how-to): absent = nothing persists, everything is in
//! memory. Per kind of data, `mode` is `None` (the default: nothing), `All` or `Custom`
//! (the listed resources, plus whatever clients ask for with the dynamic user property when
//! `dynamic.mode` is `Enabled`, its default). In AIO the dynamic settings exist only inside
//! the `Custom` settings, so `None` and `All` ignore the user property.
//!
//! Gatehouse implements `stateStore`; `retain` and `subscriberQueue` are read and validated
//! so configurations written for AIO load unchanged, and are not yet acted upon.

use serde::Deserialize;

use crate::enums::ci_enum;
use crate::model::authz::KeyType;

/// `persistence:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Persistence {
    /// Bound on the disk space of `<dataDir>/gatehouse.redb`, in bytes; required, as in AIO
    /// (where it sizes the volume). Written as a size: `1GiB`, `10Gi`, `500M`, or bytes.
    #[serde(deserialize_with = "crate::size::deserialize")]
    pub max_size: u64,
    /// The MQTT v5 user property with which a client asks for its data to be persisted.
    #[serde(default)]
    pub dynamic_settings: DynamicSettings,
    /// Retained messages. Not yet acted upon.
    #[serde(default)]
    pub retain: RetainPolicy,
    /// State store keys.
    #[serde(default)]
    pub state_store: StateStorePolicy,
    /// Queues of sessions that outlive their connection. Not yet acted upon.
    #[serde(default)]
    pub subscriber_queue: SubscriberQueuePolicy,
}

/// `persistence.dynamicSettings`: the user property (key and value, both compared exactly)
/// that asks for persistence on a PUBLISH, CONNECT or state store SET.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DynamicSettings {
    /// Default `aio-persistence` (AIO's, and what the AIO SDKs send).
    pub user_property_key: String,
    /// Default `true`.
    pub user_property_value: String,
}

impl Default for DynamicSettings {
    fn default() -> Self {
        DynamicSettings {
            user_property_key: "aio-persistence".into(),
            user_property_value: "true".into(),
        }
    }
}

ci_enum! {
    /// What a persistence policy keeps on disk.
    #[derive(Default)]
    pub enum PersistenceMode("persistence mode") {
        /// Nothing (the default).
        #[default]
        None = "None",
        /// Everything of this kind.
        All = "All",
        /// What the `...Settings` list, plus what clients ask for when dynamic mode is on.
        Custom = "Custom",
    }
}

ci_enum! {
    /// `dynamic.mode`: whether clients may ask for persistence with the user property of
    /// `dynamicSettings`.
    #[derive(Default)]
    pub enum DynamicMode("dynamic mode") {
        /// The default.
        #[default]
        Enabled = "Enabled",
        Disabled = "Disabled",
    }
}

/// `dynamic:` of a `Custom` policy's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dynamic {
    /// Required when `dynamic` is written (AIO); an absent `dynamic` is `Enabled`.
    pub mode: DynamicMode,
}

/// `persistence.retain`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetainPolicy {
    #[serde(default)]
    pub mode: PersistenceMode,
    /// Required with `Custom`, used only then.
    #[serde(default)]
    pub retain_settings: Option<RetainSettings>,
}

/// `retain.retainSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetainSettings {
    /// Topic filters (`+` and `#` allowed) whose retained messages persist.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub dynamic: Dynamic,
}

/// `persistence.stateStore`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateStorePolicy {
    #[serde(default)]
    pub mode: PersistenceMode,
    /// Required with `Custom`, used only then.
    #[serde(default)]
    pub state_store_settings: Option<StateStoreSettings>,
}

impl StateStorePolicy {
    /// The settings that apply: `Some` only with mode `Custom`.
    pub fn custom(&self) -> Option<&StateStoreSettings> {
        match self.mode {
            PersistenceMode::Custom => self.state_store_settings.as_ref(),
            PersistenceMode::None | PersistenceMode::All => None,
        }
    }
}

/// `stateStore.stateStoreSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateStoreSettings {
    /// Keys that persist, matched like the keys of authorization rules (without tokens).
    #[serde(default)]
    pub state_store_resources: Vec<PersistedKeys>,
    #[serde(default)]
    pub dynamic: Dynamic,
}

/// `stateStoreSettings.stateStoreResources[]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistedKeys {
    /// Required (AIO gives no default here, unlike in authorization rules): `Pattern`
    /// (glob: `*`, `?`, `[...]`), `String` (exact) or `Binary` (exact, base64-written).
    pub key_type: KeyType,
    pub keys: Vec<String>,
}

/// `persistence.subscriberQueue`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriberQueuePolicy {
    #[serde(default)]
    pub mode: PersistenceMode,
    /// Required with `Custom`, used only then.
    #[serde(default)]
    pub subscriber_queue_settings: Option<SubscriberQueueSettings>,
}

/// `subscriberQueue.subscriberQueueSettings`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriberQueueSettings {
    /// Client ids whose queues persist; `*` matches any text.
    #[serde(default)]
    pub subscriber_client_ids: Vec<String>,
    /// Topic filters (`+` and `#` allowed) whose messages persist in every queue.
    #[serde(default)]
    pub topics: Vec<String>,
    #[serde(default)]
    pub dynamic: Dynamic,
}
