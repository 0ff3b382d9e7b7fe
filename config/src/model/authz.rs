//! Authorization resources (AIO `BrokerAuthorization`): allow-only rules.
//!
//! The rules are kept as typed data exactly as written (tokens unparsed). Validation checks
//! everything in them (topic filter syntax, `{principal.*}` tokens filling whole levels,
//! globs, base64 keys; see `validate/authz.rs`), so a loaded configuration's rules all
//! compile; [`crate::tokens::parse`] splits their token-bearing strings.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::enums::ci_enum;

/// A named policy, linked to ports by `authorizationRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// 3–63 characters of `[a-z0-9-]`, unique among authorizations.
    pub name: String,
    pub authorization_policies: AuthorizationPolicies,
}

/// `authorizationPolicies`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicies {
    /// Default `Enabled`.
    #[serde(default)]
    pub cache: CacheMode,
    /// Empty = deny everything on the ports that use this policy.
    #[serde(default)]
    pub rules: Vec<AuthorizationRule>,
}

ci_enum! {
    /// Whether decisions are cached.
    #[derive(Default)]
    pub enum CacheMode("cache mode") {
        #[default]
        Enabled = "Enabled",
        Disabled = "Disabled",
    }
}

/// One rule: who (`principals`, ORed) may do what.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    pub principals: Principals,
    pub broker_resources: Vec<BrokerResource>,
    #[serde(default)]
    pub state_store_resources: Vec<StateStoreResource>,
}

/// A client matches if any client id, any username, or any attribute set matches; an
/// attribute set matches when the client has all of its pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principals {
    #[serde(default)]
    pub client_ids: Vec<String>,
    #[serde(default)]
    pub usernames: Vec<String>,
    #[serde(default)]
    pub attributes: Vec<BTreeMap<String, String>>,
}

/// `brokerResources[]`: an MQTT action and the topics (or client ids) it is allowed on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BrokerResource {
    pub method: BrokerResourceMethod,
    /// Topic filters; none for Connect, at least one for Publish and Subscribe.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Glob patterns narrowing the resource to some client ids; empty = any.
    #[serde(default)]
    pub client_ids: Vec<String>,
}

ci_enum! {
    /// `brokerResources[].method`.
    pub enum BrokerResourceMethod("broker resource method") {
        Connect = "Connect",
        Publish = "Publish",
        Subscribe = "Subscribe",
    }
}

/// `stateStoreResources[]`: state store keys a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateStoreResource {
    pub method: StateStoreMethod,
    /// Default `Pattern`.
    #[serde(default)]
    pub key_type: KeyType,
    pub keys: Vec<String>,
}

ci_enum! {
    /// Read = get, keynotify; Write = set, del, vdel.
    pub enum StateStoreMethod("state store method") {
        Read = "Read",
        Write = "Write",
        ReadWrite = "ReadWrite",
    }
}

ci_enum! {
    /// How `keys` are matched.
    #[derive(Default)]
    pub enum KeyType("key type") {
        /// Glob with `{principal.*}` tokens.
        #[default]
        Pattern = "Pattern",
        /// Exact match.
        String = "String",
        /// Exact match of base64-written binary keys.
        Binary = "Binary",
    }
}
