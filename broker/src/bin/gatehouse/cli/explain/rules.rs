//! What one rule's trace says, with YAML paths: the entry that allowed the action, or for a
//! denial the rules whose principals matched (near misses) and those whose did not.

use gatehouse::authz::policy::{EntryCheck, ResourceCheck, ResourceKind, RuleTrace};
use gatehouse_config::{AuthorizationRule, BrokerResourceMethod, KeyType, StateStoreMethod};

use super::args::Request;
use super::model::*;

pub(super) fn method_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Connect => "Connect",
        ResourceKind::Publish => "Publish",
        ResourceKind::Subscribe => "Subscribe",
        ResourceKind::StateStore => "state store",
    }
}

/// YAML index of the resource a trace's [`ResourceCheck`] comes from.
pub(super) fn resource_index(rule: &AuthorizationRule, check: &ResourceCheck) -> Option<usize> {
    let method = match check.kind {
        ResourceKind::Connect => BrokerResourceMethod::Connect,
        ResourceKind::Publish => BrokerResourceMethod::Publish,
        ResourceKind::Subscribe => BrokerResourceMethod::Subscribe,
        ResourceKind::StateStore => {
            return (check.position < rule.state_store_resources.len()).then_some(check.position)
        }
    };
    rule.broker_resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == method)
        .nth(check.position)
        .map(|(j, _)| j)
}

/// A resource of the rule, as written, with its YAML path.
pub(super) struct Written<'a> {
    path: String,
    method: &'static str,
    key_type: Option<&'static str>,
    client_ids: &'a [String],
    /// Topics or keys.
    items: &'a [String],
    /// `topics` or `keys`.
    items_field: &'static str,
}

pub(super) fn written<'a>(
    rule: &'a AuthorizationRule,
    rule_path: &str,
    check: &ResourceCheck,
) -> Option<Written<'a>> {
    let j = resource_index(rule, check)?;
    Some(if check.kind == ResourceKind::StateStore {
        let r = &rule.state_store_resources[j];
        Written {
            path: format!("{rule_path}.stateStoreResources[{j}]"),
            method: match r.method {
                StateStoreMethod::Read => "Read",
                StateStoreMethod::Write => "Write",
                StateStoreMethod::ReadWrite => "ReadWrite",
            },
            key_type: Some(match r.key_type {
                KeyType::Pattern => "Pattern",
                KeyType::String => "String",
                KeyType::Binary => "Binary",
            }),
            client_ids: &[],
            items: &r.keys,
            items_field: "keys",
        }
    } else {
        let r = &rule.broker_resources[j];
        Written {
            path: format!("{rule_path}.brokerResources[{j}]"),
            method: method_name(check.kind),
            key_type: None,
            client_ids: &r.client_ids,
            items: &r.topics,
            items_field: "topics",
        }
    })
}

pub(super) fn entries(
    base: &str,
    field: &str,
    written: &[String],
    checks: &[EntryCheck],
) -> Vec<EntryOut> {
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| EntryOut {
            path: format!("{base}.{field}[{i}]"),
            written: written.get(i).cloned().unwrap_or_default(),
            substituted: c.rendered.clone(),
            matched: c.matched,
        })
        .collect()
}

/// The first principal entry that matched.
pub(super) fn principal_out(
    rule: &AuthorizationRule,
    rule_path: &str,
    t: &RuleTrace,
) -> Option<PrincipalOut> {
    let p = &rule.principals;
    if let Some(i) = t.principals.client_ids.iter().position(|c| c.matched) {
        return Some(PrincipalOut {
            path: format!("{rule_path}.principals.clientIds[{i}]"),
            field: "clientIds",
            written: p.client_ids.get(i).cloned().unwrap_or_default().into(),
        });
    }
    if let Some(i) = t.principals.usernames.iter().position(|c| c.matched) {
        return Some(PrincipalOut {
            path: format!("{rule_path}.principals.usernames[{i}]"),
            field: "usernames",
            written: p.usernames.get(i).cloned().unwrap_or_default().into(),
        });
    }
    let i = t.principals.attributes.iter().position(|c| c.matched)?;
    Some(PrincipalOut {
        path: format!("{rule_path}.principals.attributes[{i}]"),
        field: "attributes",
        written: serde_json::to_value(p.attributes.get(i).cloned().unwrap_or_default())
            .unwrap_or_default(),
    })
}

/// The YAML path and details of what allowed the action in rule `t` (which allows it).
pub(super) fn describe_match(
    rule: &AuthorizationRule,
    rule_path: &str,
    t: &RuleTrace,
) -> Option<(String, MatchOut)> {
    let check = t.resources.iter().find(|r| r.allows)?;
    let w = written(rule, rule_path, check)?;
    let client_id_glob = check
        .client_ids
        .iter()
        .position(|c| c.matched)
        .map(|i| entries(&w.path, "clientIds", w.client_ids, &check.client_ids).swap_remove(i));
    let entry = check
        .items
        .iter()
        .position(|c| c.matched)
        .map(|i| entries(&w.path, w.items_field, w.items, &check.items).swap_remove(i));
    let path = match (&entry, &client_id_glob) {
        (Some(e), _) => e.path.clone(),
        (None, Some(g)) => g.path.clone(),
        (None, None) => w.path.clone(),
    };
    Some((
        path,
        MatchOut {
            principal: principal_out(rule, rule_path, t),
            resource: w.path,
            method: w.method,
            key_type: w.key_type,
            entry,
            client_id_glob,
        },
    ))
}

pub(super) fn near_miss(
    rule: &AuthorizationRule,
    i: usize,
    rule_path: &str,
    t: &RuleTrace,
    request: &Request,
) -> NearMiss {
    let mut resources = Vec::new();
    for check in &t.resources {
        let Some(w) = written(rule, rule_path, check) else {
            continue;
        };
        resources.push(ResourceOut {
            client_ids: entries(&w.path, "clientIds", w.client_ids, &check.client_ids),
            entries: entries(&w.path, w.items_field, w.items, &check.items),
            path: w.path,
            method: w.method,
            key_type: w.key_type,
            client_allowed: check.client_allowed,
            method_allows: check.method_allows,
        });
    }
    let why = match request {
        _ if resources.is_empty() => match request {
            Request::StateStore { .. } => "the rule has no stateStoreResources".to_owned(),
            _ => format!(
                "the rule has no {} entry in brokerResources",
                method_name(kind_of(request))
            ),
        },
        Request::Connect => "no Connect resource lets this client id through".to_owned(),
        Request::Publish(topic) => format!("no Publish topic of the rule matches `{topic}`"),
        Request::Subscribe(filter) => {
            format!("no Subscribe topic of the rule contains `{filter}`")
        }
        Request::StateStore { write, .. } => format!(
            "no stateStoreResources entry allows this {} on this key",
            if *write { "write" } else { "read" }
        ),
    };
    NearMiss {
        rule: i,
        rule_path: rule_path.to_owned(),
        principal: principal_out(rule, rule_path, t),
        resources,
        why,
    }
}

pub(super) fn kind_of(request: &Request) -> ResourceKind {
    match request {
        Request::Connect => ResourceKind::Connect,
        Request::Publish(_) => ResourceKind::Publish,
        Request::Subscribe(_) => ResourceKind::Subscribe,
        Request::StateStore { .. } => ResourceKind::StateStore,
    }
}

pub(super) fn principal_miss(
    rule: &AuthorizationRule,
    i: usize,
    rule_path: &str,
    t: &RuleTrace,
) -> PrincipalMiss {
    let p = &rule.principals;
    let mut tried = Vec::new();
    for (field, written, checks) in [
        ("clientIds", &p.client_ids, &t.principals.client_ids),
        ("usernames", &p.usernames, &t.principals.usernames),
    ] {
        for (k, c) in checks.iter().enumerate() {
            tried.push(Tried {
                path: format!("{rule_path}.principals.{field}[{k}]"),
                field,
                written: written.get(k).cloned().unwrap_or_default().into(),
                substituted: Some(c.rendered.clone()),
                missing: Vec::new(),
                different: Vec::new(),
            });
        }
    }
    for (k, c) in t.principals.attributes.iter().enumerate() {
        tried.push(Tried {
            path: format!("{rule_path}.principals.attributes[{k}]"),
            field: "attributes",
            written: serde_json::to_value(p.attributes.get(k).cloned().unwrap_or_default())
                .unwrap_or_default(),
            substituted: None,
            missing: c.missing.clone(),
            different: c.different.clone(),
        });
    }
    PrincipalMiss {
        rule: i,
        rule_path: rule_path.to_owned(),
        tried,
    }
}
