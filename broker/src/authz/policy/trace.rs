//! Why a rule did or did not allow a request, for `gatehouse explain`.
//!
//! [`Policy::trace`] runs the checks [`Policy::decide`] runs for one rule — the same
//! functions on the same compiled data — but keeps every intermediate result instead of
//! stopping at the first answer. It never decides anything: the verdict always comes from
//! `decide`; a trace only says which entries of the rule matched and what each template
//! became after `{principal.*}` substitution.

use base64::Engine as _;

use super::super::template::{plain_value, topic_value, Subject};
use super::{filter, key_matches, Action, GlobTemplate, Policy, Resource};

/// One entry of a list (a principal client id or user name, a resource's client id glob,
/// a topic filter, a state store key) after substitution, and whether it matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryCheck {
    /// The entry after substitution; `None` when a token has no usable value for this
    /// subject, which makes the entry match nothing. Binary keys are shown in base64.
    pub rendered: Option<String>,
    pub matched: bool,
}

/// One attribute set of `principals.attributes`: it matches when the subject has every
/// pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeSetCheck {
    pub matched: bool,
    /// Attribute names the subject lacks.
    pub missing: Vec<String>,
    /// Attribute names the subject has with another value.
    pub different: Vec<String>,
}

/// A rule's principals (ORed) against the subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalsTrace {
    /// `principals.clientIds`, in order.
    pub client_ids: Vec<EntryCheck>,
    /// `principals.usernames`, in order.
    pub usernames: Vec<EntryCheck>,
    /// `principals.attributes`, in order.
    pub attributes: Vec<AttributeSetCheck>,
}

/// Which list of a rule a [`ResourceCheck`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    Connect,
    Publish,
    Subscribe,
    StateStore,
}

/// One resource of the rule that concerns the action: a `brokerResources` entry of the
/// action's method, or a `stateStoreResources` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCheck {
    pub kind: ResourceKind,
    /// Position among the rule's resources of this kind: the n-th `brokerResources` entry
    /// with this method, or the n-th `stateStoreResources` entry.
    pub position: usize,
    /// The resource's `clientIds` globs (broker resources only); empty = any client.
    pub client_ids: Vec<EntryCheck>,
    /// Whether the client id passes `clientIds` (always true for state store resources).
    pub client_allowed: bool,
    /// State store: whether the method (Read, Write, ReadWrite) covers the operation.
    /// Always true for broker resources.
    pub method_allows: bool,
    /// Topic filters (matching a PUBLISH topic, containing a SUBSCRIBE filter) or keys.
    /// Empty for Connect.
    pub items: Vec<EntryCheck>,
    /// Whether this resource allows the action.
    pub allows: bool,
}

/// One rule against one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// Whether the rule's principals match the subject (the engine's own check).
    pub applies: bool,
    pub principals: PrincipalsTrace,
    /// The rule's resources that concern the action, in order.
    pub resources: Vec<ResourceCheck>,
    /// Whether this rule allows the action (`applies` and some resource allows it).
    pub allows: bool,
}

impl Policy {
    /// The checks of [`Policy::decide`] for rule `rule` (index in `rules`), kept; `None`
    /// when there is no such rule. The first rule whose trace `allows` is the rule `decide`
    /// names.
    pub fn trace(
        &self,
        rule: usize,
        subject: &Subject<'_>,
        action: &Action<'_>,
    ) -> Option<RuleTrace> {
        let r = self.rules.get(rule)?;
        let plain = |t: &super::Template, value: Option<&str>| {
            let rendered = t.render(subject, plain_value);
            let matched = value.is_some_and(|v| rendered.as_deref() == Some(v));
            EntryCheck { rendered, matched }
        };
        let principals = PrincipalsTrace {
            client_ids: r
                .client_ids
                .iter()
                .map(|t| plain(t, Some(subject.client_id)))
                .collect(),
            usernames: r
                .usernames
                .iter()
                .map(|t| plain(t, subject.username))
                .collect(),
            attributes: r
                .attributes
                .iter()
                .map(|set| {
                    let mut missing = Vec::new();
                    let mut different = Vec::new();
                    for (k, v) in set {
                        match subject.attributes.get(k) {
                            None => missing.push(k.clone()),
                            Some(have) if have != v => different.push(k.clone()),
                            Some(_) => {}
                        }
                    }
                    AttributeSetCheck {
                        matched: missing.is_empty() && different.is_empty(),
                        missing,
                        different,
                    }
                })
                .collect(),
        };
        let applies = r.applies_to(subject);
        let broker = |kind: ResourceKind, list: &[Resource], item: &dyn Fn(&str) -> bool| {
            list.iter()
                .enumerate()
                .map(|(position, res)| {
                    let client_allowed = res.client_allowed(subject);
                    let items: Vec<EntryCheck> = res
                        .filters
                        .iter()
                        .map(|t| {
                            let rendered = t.render(subject, topic_value);
                            let matched = rendered.as_deref().is_some_and(item);
                            EntryCheck { rendered, matched }
                        })
                        .collect();
                    let allows = client_allowed
                        && (kind == ResourceKind::Connect || items.iter().any(|i| i.matched));
                    ResourceCheck {
                        kind,
                        position,
                        client_ids: res
                            .client_ids
                            .iter()
                            .map(|g| EntryCheck {
                                rendered: rendered_glob(g, subject),
                                matched: g.is_match(subject, subject.client_id),
                            })
                            .collect(),
                        client_allowed,
                        method_allows: true,
                        items,
                        allows,
                    }
                })
                .collect::<Vec<_>>()
        };
        let resources = match action {
            Action::Connect => broker(ResourceKind::Connect, &r.connect, &|_| false),
            Action::Publish(topic) => broker(ResourceKind::Publish, &r.publish, &|f| {
                filter::matches(f, topic)
            }),
            Action::Subscribe(requested) => {
                // As in `decide`: `$share/<group>/<filter>` is checked on `<filter>`; an
                // invalid filter matches nothing.
                let inner = gatehouse_protocol::topic::parse_subscription_filter(requested)
                    .ok()
                    .map(|p| p.filter);
                broker(ResourceKind::Subscribe, &r.subscribe, &|f| {
                    inner.is_some_and(|q| filter::contains(f, q))
                })
            }
            Action::StateStore { write, key } => r
                .state_store
                .iter()
                .enumerate()
                .map(|(position, k)| {
                    let method_allows = if *write { k.write } else { k.read };
                    let items: Vec<EntryCheck> = k
                        .keys
                        .iter()
                        .map(|m| EntryCheck {
                            rendered: match m {
                                super::KeyMatch::Pattern(g) => rendered_glob(g, subject),
                                super::KeyMatch::String(s) => Some(s.clone()),
                                super::KeyMatch::Binary(bytes) => {
                                    Some(base64::engine::general_purpose::STANDARD.encode(bytes))
                                }
                            },
                            matched: key_matches(m, subject, key),
                        })
                        .collect();
                    ResourceCheck {
                        kind: ResourceKind::StateStore,
                        position,
                        client_ids: Vec::new(),
                        client_allowed: true,
                        method_allows,
                        allows: method_allows && items.iter().any(|i| i.matched),
                        items,
                    }
                })
                .collect(),
        };
        let allows = applies && resources.iter().any(|res| res.allows);
        Some(RuleTrace {
            applies,
            principals,
            resources,
            allows,
        })
    }
}

/// The glob after substitution, as the engine compiles it (values escaped, and for keys
/// values with `/` refused: [`GlobTemplate::render`]).
fn rendered_glob(g: &GlobTemplate, subject: &Subject<'_>) -> Option<String> {
    g.render(subject)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The seed's examples (as in the e2e policy) plus its state store example.
    const RULES: &str = r#"        - principals:
            clientIds: [temperature-sensor, humidity-sensor]
            attributes: [ { city: seattle, organization: contoso } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["/sensor/{principal.clientId}", "/sensor/{principal.attributes.organization}"]
            - method: Subscribe
              topics: ["/commands/{principal.attributes.organization}"]
        - principals:
            usernames: [monitor]
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: ["/sensor/#", "sensors/#"]
        - principals:
            attributes: [ { building: building22 }, { building: building23 } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
            - method: Publish
              topics: ["sensors/{principal.attributes.building}/{principal.clientId}/sensor"]
        - principals:
            usernames: [temperature-sensor]
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: [myreadkey, "myotherkey?", "clients/{principal.clientId}/*"]
            - method: ReadWrite
              keyType: Binary
              keys: ["AAEC"]
            - method: Write
              keyType: String
              keys: ["exact*"]
"#;

    fn policy() -> Policy {
        let yaml = format!(
            "listeners:\n  - name: lst\n    ports: [ {{ port: 0 }} ]\nauthorizations:\n  - name: pol\n    authorizationPolicies:\n      rules:\n{RULES}"
        );
        let loaded = gatehouse_config::load_str(&yaml, "test.yaml").expect("valid config");
        Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles")
    }

    /// Over many subjects and actions, the first rule whose trace allows is the rule
    /// `decide` names, and a trace's `applies` is the engine's principal check.
    #[test]
    fn traces_agree_with_decide() {
        let p = policy();
        let attr_sets: Vec<BTreeMap<String, String>> = vec![
            BTreeMap::new(),
            BTreeMap::from([
                ("city".into(), "seattle".into()),
                ("organization".into(), "contoso".into()),
            ]),
            BTreeMap::from([("organization".into(), "contoso".into())]),
            BTreeMap::from([("building".into(), "building22".into())]),
            BTreeMap::from([("building".into(), "a/b".into())]),
        ];
        let client_ids = ["temperature-sensor", "building22-fan", "fan", "x"];
        let usernames = [None, Some("monitor"), Some("temperature-sensor")];
        let topics = [
            "/sensor/temperature-sensor",
            "/sensor/contoso",
            "/commands/contoso",
            "/commands/#",
            "/sensor/+",
            "sensors/building22/building22-fan/sensor",
            "$share/g/sensors/#",
            "$share/g",
            "a/#/b",
        ];
        let keys: [&[u8]; 6] = [
            b"myreadkey",
            b"myotherkeyA",
            b"clients/temperature-sensor/x",
            &[0, 1, 2],
            b"exact*",
            b"exactly",
        ];
        let mut actions = vec![Action::Connect];
        for t in topics {
            actions.push(Action::Publish(t));
            actions.push(Action::Subscribe(t));
        }
        for k in keys {
            actions.push(Action::StateStore {
                write: false,
                key: k,
            });
            actions.push(Action::StateStore {
                write: true,
                key: k,
            });
        }
        let mut checked = 0;
        for attributes in &attr_sets {
            for client_id in client_ids {
                for username in usernames {
                    let s = Subject {
                        client_id,
                        username,
                        attributes,
                    };
                    for a in &actions {
                        let d = p.decide(&s, a);
                        let traces: Vec<RuleTrace> = (0..p.rule_count())
                            .map(|i| p.trace(i, &s, a).expect("rule exists"))
                            .collect();
                        let first = traces.iter().position(|t| t.allows);
                        assert_eq!(d.rule, first, "{s:?} {a:?}");
                        assert_eq!(d.allowed, first.is_some(), "{s:?} {a:?}");
                        for (i, t) in traces.iter().enumerate() {
                            let any = t.principals.client_ids.iter().any(|c| c.matched)
                                || t.principals.usernames.iter().any(|c| c.matched)
                                || t.principals.attributes.iter().any(|c| c.matched);
                            assert_eq!(t.applies, any, "rule {i} {s:?}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1000);
        assert!(p
            .trace(
                p.rule_count(),
                &Subject {
                    client_id: "c",
                    username: None,
                    attributes: &attr_sets[0],
                },
                &Action::Connect
            )
            .is_none());
    }

    #[test]
    fn trace_shows_substituted_entries() {
        let p = policy();
        let b22 = BTreeMap::from([("building".to_string(), "building22".to_string())]);
        let s = Subject {
            client_id: "fan",
            username: None,
            attributes: &b22,
        };
        let t = p.trace(2, &s, &Action::Connect).expect("rule 2");
        assert!(t.applies && !t.allows);
        assert!(t.principals.attributes[0].matched);
        assert_eq!(t.principals.attributes[1].different, vec!["building"]);
        let connect = &t.resources[0];
        assert_eq!(connect.kind, ResourceKind::Connect);
        assert_eq!(
            connect.client_ids[0].rendered.as_deref(),
            Some("building22*")
        );
        assert!(!connect.client_allowed);

        let wild = BTreeMap::from([("organization".to_string(), "a/#".to_string())]);
        let s = Subject {
            client_id: "temperature-sensor",
            username: None,
            attributes: &wild,
        };
        let t = p
            .trace(0, &s, &Action::Publish("/sensor/x"))
            .expect("rule 0");
        assert_eq!(t.resources.len(), 1);
        assert_eq!(
            t.resources[0].items[0].rendered.as_deref(),
            Some("/sensor/temperature-sensor")
        );
        assert_eq!(t.resources[0].items[1].rendered, None);

        let none = BTreeMap::new();
        let s = Subject {
            client_id: "dev",
            username: Some("temperature-sensor"),
            attributes: &none,
        };
        let t = p
            .trace(
                3,
                &s,
                &Action::StateStore {
                    write: true,
                    key: b"myreadkey",
                },
            )
            .expect("rule 3");
        assert!(!t.resources[0].method_allows && t.resources[0].items[0].matched);
        assert_eq!(t.resources[1].items[0].rendered.as_deref(), Some("AAEC"));
        assert_eq!(
            t.resources[0].items[2].rendered.as_deref(),
            Some("clients/dev/*")
        );
    }
}
