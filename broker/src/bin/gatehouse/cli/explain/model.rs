//! The answer of `gatehouse explain`, as printed with `--json` (and rendered for people by
//! `render`). Every YAML path in it is the configuration's own
//! ([`gatehouse_config::Paths`]), so it matches what `check` and start-up print.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Report {
    /// The answer for this client: the policy's, unless the port does not apply it.
    pub(super) allowed: bool,
    /// Why: the engine's reason (`allowed by rule`, `no rule matched`, `invalid topic
    /// filter`), or what the port does instead.
    pub(super) reason: String,
    pub(super) action: &'static str,
    /// Topic, filter or key as given (`None` for connect and binary keys).
    pub(super) target: Option<String>,
    /// State store key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_base64: Option<String>,
    pub(super) subject: SubjectOut,
    /// With --client-cert: how the broker reads the chain (the subject comes from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) certificate: Option<CertificateOut>,
    /// With --port: the port and what it does.
    pub(super) port: Option<PortOut>,
    /// The policy asked (none when the port has no authorizationRef).
    pub(super) policy: Option<PolicyOut>,
    /// The rule that allowed it (index in `rules`).
    pub(super) rule: Option<usize>,
    /// YAML path of that rule.
    pub(super) rule_path: Option<String>,
    /// YAML path of the entry that allowed it: a topic, a Connect resource (or its client
    /// id glob), a state store key.
    pub(super) yaml_path: Option<String>,
    /// Details of what allowed it.
    #[serde(rename = "match")]
    pub(super) matched: Option<MatchOut>,
    /// For a denial: rules whose principals matched but no resource allowed the action.
    pub(super) near_misses: Vec<NearMiss>,
    /// For a denial: rules whose principals did not match, and what was tried.
    pub(super) principals_not_matched: Vec<PrincipalMiss>,
    pub(super) notes: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SubjectOut {
    pub(super) client_id: String,
    pub(super) username: Option<String>,
    pub(super) attributes: BTreeMap<String, String>,
}

/// `--client-cert`: the X.509 method that reads the chain and what it made of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CertificateOut {
    /// The authentication (BrokerAuthentication) name.
    pub(super) authentication: String,
    /// YAML path of its X.509 method.
    pub(super) method_path: String,
    /// Certificates in the file (leaf first).
    pub(super) presented: usize,
    /// Whether the chain verifies against the trusted client CAs now, for client auth.
    pub(super) verified: bool,
    /// Why it does not (the broker refuses the CONNECT with 0x87 Not authorized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
    /// The verified path: leaf, the intermediates the verifier chained through, the
    /// trusted CA; where attributes are looked up, in this order.
    pub(super) path: Vec<PathCertOut>,
    /// YAML path of the `authorizationAttributes` entry that gave the attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) attributes_from: Option<String>,
    /// Index in `path` of the certificate whose subject matched that entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) matched_certificate: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PathCertOut {
    /// `leaf`, `intermediate` or `anchor`.
    pub(super) role: &'static str,
    /// RFC 4514, as parsed from the certificate.
    pub(super) subject: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PortOut {
    pub(super) listener: String,
    pub(super) port: u16,
    pub(super) path: String,
    pub(super) authentication_ref: Option<String>,
    pub(super) authorization_ref: Option<String>,
    /// Whether the port applies a policy (an authorizationRef and an authenticationRef).
    pub(super) policy_applied: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PolicyOut {
    pub(super) name: String,
    /// YAML path of the authorization.
    pub(super) path: String,
    /// How to name it to people: `authorizations[0] (seed-policy)`.
    #[serde(skip)]
    pub(super) label: String,
    pub(super) rules: usize,
    /// Whether this decision is the client's (false: the port does not apply the policy).
    pub(super) applied: bool,
    /// The policy's own decision ([`Policy::decide`]).
    pub(super) allowed: bool,
    pub(super) reason: String,
    /// The ports whose authorizationRef names it.
    pub(super) used_by: Vec<PortUse>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PortUse {
    pub(super) listener: String,
    pub(super) port: u16,
    pub(super) path: String,
    /// False when the port has no authenticationRef (AIO rule).
    pub(super) applied: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MatchOut {
    pub(super) principal: Option<PrincipalOut>,
    /// YAML path of the resource.
    pub(super) resource: String,
    /// `Connect`, `Publish`, `Subscribe`, or the state store method.
    pub(super) method: &'static str,
    /// State store: the key type (`Pattern`, `String`, `Binary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_type: Option<&'static str>,
    /// The topic filter or key that matched, before and after substitution.
    pub(super) entry: Option<EntryOut>,
    /// The resource's client id glob that let the client id through, if it has any.
    pub(super) client_id_glob: Option<EntryOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PrincipalOut {
    pub(super) path: String,
    /// `clientIds`, `usernames` or `attributes`.
    pub(super) field: &'static str,
    /// As written: a client id or user name template, or an attribute set.
    pub(super) written: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EntryOut {
    pub(super) path: String,
    /// As written in the rule.
    pub(super) written: String,
    /// After `{principal.*}` substitution; `None` when a token has no usable value for
    /// this client (the entry then matches nothing).
    pub(super) substituted: Option<String>,
    pub(super) matched: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NearMiss {
    pub(super) rule: usize,
    pub(super) rule_path: String,
    pub(super) principal: Option<PrincipalOut>,
    /// The rule's resources for this action; empty when it has none.
    pub(super) resources: Vec<ResourceOut>,
    /// One line on why none allowed it.
    pub(super) why: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ResourceOut {
    pub(super) path: String,
    /// `Connect`, `Publish`, `Subscribe`, or the state store method (`Read`, `Write`,
    /// `ReadWrite`).
    pub(super) method: &'static str,
    /// State store: the key type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) key_type: Option<&'static str>,
    pub(super) client_ids: Vec<EntryOut>,
    pub(super) client_allowed: bool,
    pub(super) method_allows: bool,
    /// Topics or keys.
    pub(super) entries: Vec<EntryOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PrincipalMiss {
    pub(super) rule: usize,
    pub(super) rule_path: String,
    /// Every principal entry, none of which matched.
    pub(super) tried: Vec<Tried>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Tried {
    pub(super) path: String,
    pub(super) field: &'static str,
    /// As written: a template, or an attribute set.
    pub(super) written: serde_json::Value,
    /// Client ids and user names: after substitution (`None`: a token has no value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) substituted: Option<Option<String>>,
    /// Attribute sets: names the client lacks, and names it has with another value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) missing: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) different: Vec<String>,
}
