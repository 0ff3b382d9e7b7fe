//! The compiled policy and the decision function. No I/O; every check is a function of
//! the policy, the subject and the action.

use std::collections::BTreeMap;

use base64::Engine as _;
use gatehouse_config::glob::Glob;
use gatehouse_config::{Authorization, BrokerResourceMethod, CacheMode, KeyType, StateStoreMethod};

use super::filter;
use super::template::{glob_value, key_glob_value, plain_value, topic_value, Subject, Template};

// `gatehouse explain`: the checks of `decide`, kept (a child module, so it reuses the
// private matching functions below).
mod trace;
pub use trace::{
    AttributeSetCheck, EntryCheck, PrincipalsTrace, ResourceCheck, ResourceKind, RuleTrace,
};

/// What a client wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action<'a> {
    Connect,
    Publish(&'a str),
    /// The filter as requested; `$share/<group>/<filter>` is checked on `<filter>`.
    Subscribe(&'a str),
    /// State store: `get`/`keynotify` read, `set`/`del`/`vdel` write.
    StateStore {
        write: bool,
        key: &'a [u8],
    },
}

/// The answer, with which rule (index in `rules`) allowed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub rule: Option<usize>,
    pub reason: &'static str,
}

impl Decision {
    fn allow(rule: usize) -> Decision {
        Decision {
            allowed: true,
            rule: Some(rule),
            reason: "allowed by rule",
        }
    }

    fn deny(reason: &'static str) -> Decision {
        Decision {
            allowed: false,
            rule: None,
            reason,
        }
    }
}

/// A glob (resource `clientIds`, state store `Pattern` keys), compiled once when it has
/// no token.
#[derive(Debug, Clone)]
struct GlobTemplate {
    template: Template,
    fixed: Option<Glob>,
    /// How a substituted value enters the glob: [`glob_value`] for client ids,
    /// [`key_glob_value`] (which also refuses `/`) for state store keys. Kept with the
    /// template so `decide` and `gatehouse explain`'s trace render it the same way.
    escape: fn(&str) -> Option<String>,
}

impl GlobTemplate {
    fn new(text: &str, escape: fn(&str) -> Option<String>) -> Result<Self, String> {
        let template = Template::parse(text)?;
        let fixed = match template.literal() {
            Some(literal) => Some(glob(&literal)?),
            None => {
                // A token inside a `[...]` class or after `\` would not be read literally
                // (validation refuses it too; this keeps the compiler safe on its own).
                let parts = gatehouse_config::tokens::parse(text).map_err(|e| e.to_string())?;
                if let Some(why) = gatehouse_config::tokens::glob_token_misplaced(&parts) {
                    return Err(format!("`{text}`: {why}"));
                }
                // Check the shape now, with a placeholder for every token.
                let probe: String = template
                    .parts()
                    .iter()
                    .map(|p| match p {
                        super::template::Part::Text(t) => t.as_str(),
                        super::template::Part::Token(_) => "x",
                    })
                    .collect();
                glob(&probe)?;
                None
            }
        };
        Ok(GlobTemplate {
            template,
            fixed,
            escape,
        })
    }

    /// The glob for `subject`; `None` when a token has no usable value (matches nothing).
    fn render(&self, subject: &Subject<'_>) -> Option<String> {
        match self.template.literal() {
            Some(literal) => Some(literal),
            None => self.template.render(subject, self.escape),
        }
    }

    fn is_match(&self, subject: &Subject<'_>, candidate: &str) -> bool {
        match &self.fixed {
            Some(m) => m.is_match(candidate),
            None => self
                .render(subject)
                .and_then(|g| glob(&g).ok())
                .is_some_and(|m| m.is_match(candidate)),
        }
    }
}

fn glob(pattern: &str) -> Result<Glob, String> {
    Glob::new(pattern).map_err(|e| format!("invalid glob `{pattern}`: {e}"))
}

#[derive(Debug, Clone)]
struct Resource {
    filters: Vec<Template>,
    client_ids: Vec<GlobTemplate>,
}

impl Resource {
    fn client_allowed(&self, subject: &Subject<'_>) -> bool {
        self.client_ids.is_empty()
            || self
                .client_ids
                .iter()
                .any(|g| g.is_match(subject, subject.client_id))
    }

    fn filters<'s>(&'s self, subject: &'s Subject<'_>) -> impl Iterator<Item = String> + 's {
        self.filters
            .iter()
            .filter_map(move |t| t.render(subject, topic_value))
    }
}

#[derive(Debug, Clone)]
enum KeyMatch {
    Pattern(GlobTemplate),
    /// `keyType: String`: the key exactly as written. Tokens are not substituted here
    /// (behaviour.md §4 "String = exact match"; validation warns about a `{principal.`
    /// in one), so a key may hold any text, braces included.
    String(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone)]
struct KeyRule {
    read: bool,
    write: bool,
    keys: Vec<KeyMatch>,
}

#[derive(Debug, Clone)]
struct Rule {
    client_ids: Vec<Template>,
    usernames: Vec<Template>,
    attributes: Vec<BTreeMap<String, String>>,
    connect: Vec<Resource>,
    publish: Vec<Resource>,
    subscribe: Vec<Resource>,
    state_store: Vec<KeyRule>,
}

impl Rule {
    fn applies_to(&self, s: &Subject<'_>) -> bool {
        let exact = |t: &Template, value: Option<&str>| {
            value.is_some_and(|v| t.render(s, plain_value).as_deref() == Some(v))
        };
        self.client_ids.iter().any(|t| exact(t, Some(s.client_id)))
            || self.usernames.iter().any(|t| exact(t, s.username))
            || self
                .attributes
                .iter()
                .any(|set| set.iter().all(|(k, v)| s.attributes.get(k) == Some(v)))
    }
}

/// One BrokerAuthorization, compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub cache: bool,
    rules: Vec<Rule>,
}

impl Policy {
    /// Compile a (validated) authorization resource. Any problem is an error: the broker
    /// refuses to start rather than run with fewer rules than written.
    /// `path` is where the resource is in the YAML, for messages.
    pub fn compile(auth: &Authorization, path: &str) -> Result<Policy, Vec<String>> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let base = format!("{path}.authorizationPolicies");
        for (ri, rule) in auth.authorization_policies.rules.iter().enumerate() {
            let at = |suffix: &str| format!("{base}.rules[{ri}].{suffix}");
            let mut template = |text: &str, path: String| match Template::parse(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    problems.push(format!("{path}: {e}"));
                    None
                }
            };
            let client_ids = rule
                .principals
                .client_ids
                .iter()
                .enumerate()
                .filter_map(|(i, c)| template(c, at(&format!("principals.clientIds[{i}]"))))
                .collect();
            let usernames = rule
                .principals
                .usernames
                .iter()
                .enumerate()
                .filter_map(|(i, u)| template(u, at(&format!("principals.usernames[{i}]"))))
                .collect();
            let mut compiled = Rule {
                client_ids,
                usernames,
                attributes: rule.principals.attributes.clone(),
                connect: Vec::new(),
                publish: Vec::new(),
                subscribe: Vec::new(),
                state_store: Vec::new(),
            };
            for (bi, res) in rule.broker_resources.iter().enumerate() {
                let mut filters = Vec::new();
                for (ti, t) in res.topics.iter().enumerate() {
                    let path = at(&format!("brokerResources[{bi}].topics[{ti}]"));
                    match topic_template(t) {
                        Ok(t) => filters.push(t),
                        Err(e) => problems.push(format!("{path}: {e}")),
                    }
                }
                let mut client_ids = Vec::new();
                for (ci, c) in res.client_ids.iter().enumerate() {
                    match GlobTemplate::new(c, glob_value) {
                        Ok(g) => client_ids.push(g),
                        Err(e) => problems.push(format!(
                            "{}: {e}",
                            at(&format!("brokerResources[{bi}].clientIds[{ci}]"))
                        )),
                    }
                }
                let resource = Resource {
                    filters,
                    client_ids,
                };
                match res.method {
                    BrokerResourceMethod::Connect => compiled.connect.push(resource),
                    BrokerResourceMethod::Publish => compiled.publish.push(resource),
                    BrokerResourceMethod::Subscribe => compiled.subscribe.push(resource),
                }
            }
            for (si, res) in rule.state_store_resources.iter().enumerate() {
                let mut keys = Vec::new();
                for (ki, k) in res.keys.iter().enumerate() {
                    let path = at(&format!("stateStoreResources[{si}].keys[{ki}]"));
                    let key = match res.key_type {
                        KeyType::Pattern => {
                            GlobTemplate::new(k, key_glob_value).map(KeyMatch::Pattern)
                        }
                        KeyType::String => Ok(KeyMatch::String(k.clone())),
                        KeyType::Binary => base64::engine::general_purpose::STANDARD
                            .decode(k)
                            .map(KeyMatch::Binary)
                            .map_err(|e| format!("not base64: {e}")),
                    };
                    match key {
                        Ok(key) => keys.push(key),
                        Err(e) => problems.push(format!("{path}: {e}")),
                    }
                }
                compiled.state_store.push(KeyRule {
                    read: matches!(
                        res.method,
                        StateStoreMethod::Read | StateStoreMethod::ReadWrite
                    ),
                    write: matches!(
                        res.method,
                        StateStoreMethod::Write | StateStoreMethod::ReadWrite
                    ),
                    keys,
                });
            }
            rules.push(compiled);
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Policy {
            name: auth.name.clone(),
            cache: auth.authorization_policies.cache == CacheMode::Enabled,
            rules,
        })
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Allow-only: the first rule that applies to `subject` and allows `action` decides;
    /// none = denied. Publishing to a [reserved topic](is_reserved_for_publish) is denied
    /// whatever the rules say.
    pub fn decide(&self, subject: &Subject<'_>, action: &Action<'_>) -> Decision {
        if let Action::Publish(topic) = action {
            if is_reserved_for_publish(topic) {
                return Decision::deny(RESERVED);
            }
        }
        let subscribe_filter = match action {
            Action::Subscribe(f) => match gatehouse_protocol::topic::parse_subscription_filter(f) {
                Ok(parsed) => Some(parsed.filter),
                Err(_) => return Decision::deny("invalid topic filter"),
            },
            _ => None,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.applies_to(subject) {
                continue;
            }
            let allowed = match action {
                Action::Connect => rule.connect.iter().any(|r| r.client_allowed(subject)),
                Action::Publish(topic) => rule.publish.iter().any(|r| {
                    r.client_allowed(subject)
                        && r.filters(subject).any(|f| filter::matches(&f, topic))
                }),
                Action::Subscribe(_) => {
                    let requested = subscribe_filter.unwrap_or_default();
                    rule.subscribe.iter().any(|r| {
                        r.client_allowed(subject)
                            && r.filters(subject).any(|f| filter::contains(&f, requested))
                    })
                }
                Action::StateStore { write, key } => rule.state_store.iter().any(|k| {
                    (if *write { k.write } else { k.read })
                        && k.keys.iter().any(|m| key_matches(m, subject, key))
                }),
            };
            if allowed {
                return Decision::allow(i);
            }
        }
        Decision::deny("no rule matched")
    }
}

/// The reason of a denied publish to a reserved topic.
pub const RESERVED: &str = "the topic is reserved for the state store's notifications";

/// Whether only the broker may publish to `topic`: the state store's notification topics
/// (`clients/statestore/v1/<GUID>/{HEX(clientId)}/command/notify/{HEX(key)}`, statestore.md
/// §4.2), which the broker delivers itself. A client that could publish there (a rule like
/// `clients/{principal.clientId}/#` and the client id `statestore`, or a broad `clients/#`)
/// would forge notifications (`NOTIFY SET VALUE <anything>`) to every client watching a
/// key, so no rule can allow it; the same topics are already refused as response topics.
pub fn is_reserved_for_publish(topic: &str) -> bool {
    use crate::topics::NOTIFY_PREFIX;
    topic
        .strip_prefix(NOTIFY_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn key_matches(m: &KeyMatch, subject: &Subject<'_>, key: &[u8]) -> bool {
    match m {
        KeyMatch::Binary(bytes) => bytes.as_slice() == key,
        KeyMatch::String(s) => s.as_bytes() == key,
        KeyMatch::Pattern(g) => std::str::from_utf8(key).is_ok_and(|k| g.is_match(subject, k)),
    }
}

/// A rule topic: a valid MQTT filter whose tokens fill whole levels.
fn topic_template(text: &str) -> Result<Template, String> {
    use super::template::Part;
    let template = Template::parse(text)?;
    // Levels come from the parts, not from splitting the text (as in validation): an
    // attribute name may hold `/` (`{principal.attributes.aio-broker-auth/group}`).
    let whole_level = || "a token must be the whole topic level".to_owned();
    let mut probe = String::new();
    let (mut text_in_level, mut token_in_level) = (false, false);
    for part in template.parts() {
        match part {
            Part::Text(t) => {
                for (i, piece) in t.split('/').enumerate() {
                    if i > 0 {
                        probe.push('/');
                        (text_in_level, token_in_level) = (false, false);
                    }
                    if !piece.is_empty() {
                        if token_in_level {
                            return Err(format!("{}, not part of `{text}`", whole_level()));
                        }
                        text_in_level = true;
                        probe.push_str(piece);
                    }
                }
            }
            Part::Token(_) => {
                if text_in_level || token_in_level {
                    return Err(format!("{}, not part of `{text}`", whole_level()));
                }
                token_in_level = true;
                probe.push('x');
            }
        }
    }
    gatehouse_protocol::topic::validate_topic_filter(&probe)
        .map_err(|e| format!("invalid topic filter `{text}`: {e}"))?;
    Ok(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules_yaml: &str) -> Policy {
        let yaml = format!(
            "listeners:\n  - name: lst\n    ports: [ {{ port: 0 }} ]\nauthorizations:\n  - name: pol\n    authorizationPolicies:\n      rules:\n{rules_yaml}"
        );
        let loaded = gatehouse_config::load_str(&yaml, "test.yaml").expect("valid config");
        Policy::compile(&loaded.config.authorizations[0], "authorizations[0]").expect("compiles")
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn who<'a>(
        client_id: &'a str,
        username: Option<&'a str>,
        attributes: &'a BTreeMap<String, String>,
    ) -> Subject<'a> {
        Subject {
            client_id,
            username,
            attributes,
        }
    }

    /// The seed's first example: client ids OR an attribute set; publish under the client
    /// id or the organization; subscribe to the organization's commands.
    #[test]
    fn seed_example_client_ids_and_attributes() {
        let p = policy(
            r#"        - principals:
            clientIds: [temperature-sensor, humidity-sensor]
            attributes: [ { city: seattle, organization: contoso } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["/sensor/{principal.clientId}", "/sensor/{principal.attributes.organization}"]
            - method: Subscribe
              topics: ["/commands/{principal.attributes.organization}"]
"#,
        );
        let contoso = attrs(&[("city", "seattle"), ("organization", "contoso")]);
        let none = attrs(&[]);
        let temp = who("temperature-sensor", None, &contoso);
        // `some-other-username` is a user name; its client id is something else.
        let other = who("client-x", Some("some-other-username"), &contoso);
        let bare = who("humidity-sensor", None, &none);
        let seattle = attrs(&[("city", "seattle")]);
        let stranger = who("stranger", None, &seattle);
        assert!(p.decide(&temp, &Action::Connect).allowed);
        assert!(
            p.decide(&temp, &Action::Publish("/sensor/temperature-sensor"))
                .allowed
        );
        assert!(p.decide(&temp, &Action::Publish("/sensor/contoso")).allowed);
        assert!(
            p.decide(&bare, &Action::Publish("/sensor/humidity-sensor"))
                .allowed
        );
        // No organization attribute: that filter matches nothing.
        assert!(!p.decide(&bare, &Action::Publish("/sensor/contoso")).allowed);
        assert!(
            p.decide(&other, &Action::Publish("/sensor/contoso"))
                .allowed
        );
        assert!(
            !p.decide(&other, &Action::Publish("/sensor/some-other-username"))
                .allowed
        );
        assert!(
            p.decide(&other, &Action::Subscribe("/commands/contoso"))
                .allowed
        );
        assert!(!p.decide(&other, &Action::Subscribe("/commands/+")).allowed);
        let d = p.decide(&stranger, &Action::Connect);
        assert_eq!((d.allowed, d.reason), (false, "no rule matched"));
    }

    /// The seed's Connect restriction: building22/23 attribute AND a client id starting
    /// with the building.
    #[test]
    fn seed_example_connect_client_id_glob_with_token() {
        let p = policy(
            r#"        - principals:
            attributes: [ { building: building22 }, { building: building23 } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
            - method: Publish
              topics: ["sensors/{principal.attributes.building}/{principal.clientId}/sensor"]
"#,
        );
        let b22 = attrs(&[("building", "building22")]);
        assert!(
            p.decide(&who("building22-fan", None, &b22), &Action::Connect)
                .allowed
        );
        assert!(
            !p.decide(&who("building23-fan", None, &b22), &Action::Connect)
                .allowed
        );
        assert!(!p.decide(&who("fan", None, &b22), &Action::Connect).allowed);
        assert!(
            p.decide(
                &who("building22-fan", None, &b22),
                &Action::Publish("sensors/building22/building22-fan/sensor")
            )
            .allowed
        );
        // A glob metacharacter in the attribute does not widen the pattern.
        let star = attrs(&[("building", "*")]);
        let p2 = policy(
            r#"        - principals:
            attributes: [ { building: "*" } ]
          brokerResources:
            - method: Connect
              clientIds: ["{principal.attributes.building}*"]
"#,
        );
        assert!(
            !p2.decide(&who("anything", None, &star), &Action::Connect)
                .allowed
        );
        assert!(p2.decide(&who("*x", None, &star), &Action::Connect).allowed);
    }

    #[test]
    fn shared_subscriptions_are_checked_on_the_inner_filter() {
        let p = policy(
            r#"        - principals: { clientIds: [c] }
          brokerResources:
            - method: Subscribe
              topics: ["orders/#"]
"#,
        );
        let none = attrs(&[]);
        let c = who("c", None, &none);
        assert!(
            p.decide(&c, &Action::Subscribe("$share/g/orders/+/new"))
                .allowed
        );
        assert!(!p.decide(&c, &Action::Subscribe("$share/g/#")).allowed);
    }

    #[test]
    fn state_store_keys_by_type_and_method() {
        let p = policy(
            r#"        - principals: { usernames: [temperature-sensor] }
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: [myreadkey, "myotherkey?", "mynumerickeysuffix[0-9]", "clients/{principal.clientId}/*"]
            - method: ReadWrite
              keyType: Binary
              keys: ["AAEC"]
            - method: Write
              keyType: String
              keys: ["exact*"]
"#,
        );
        let none = attrs(&[]);
        let s = who("dev-1", Some("temperature-sensor"), &none);
        let read = |k: &[u8]| {
            p.decide(
                &s,
                &Action::StateStore {
                    write: false,
                    key: k,
                },
            )
            .allowed
        };
        let write = |k: &[u8]| {
            p.decide(
                &s,
                &Action::StateStore {
                    write: true,
                    key: k,
                },
            )
            .allowed
        };
        assert!(read(b"myreadkey") && read(b"myotherkeyA") && read(b"mynumerickeysuffix7"));
        assert!(read(b"clients/dev-1/anything"));
        assert!(!read(b"clients/dev-2/anything"));
        assert!(!write(b"myreadkey"));
        assert!(read(&[0, 1, 2]) && write(&[0, 1, 2]));
        assert!(write(b"exact*") && !write(b"exactly"));
    }

    #[test]
    fn no_rules_deny_everything() {
        let yaml = "listeners:\n  - name: lst\n    ports: [ { port: 0 } ]\nauthorizations:\n  - name: pol\n    authorizationPolicies: { rules: [] }\n";
        let loaded = gatehouse_config::load_str(yaml, "t.yaml").expect("valid");
        let p = Policy::compile(&loaded.config.authorizations[0], "authorizations[0]")
            .expect("compiles");
        let none = attrs(&[]);
        assert!(!p.decide(&who("c", None, &none), &Action::Connect).allowed);
    }

    /// Only the broker publishes state store notifications: no rule allows a client to.
    #[test]
    fn notification_topics_are_reserved() {
        let p = policy(
            r##"        - principals: { clientIds: [c] }
          brokerResources:
            - method: Publish
              topics: ["#", "clients/statestore/#"]
"##,
        );
        let none = attrs(&[]);
        let c = who("c", None, &none);
        let notify =
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/63/command/notify/6B";
        let denied = p.decide(&c, &Action::Publish(notify));
        assert_eq!((denied.allowed, denied.reason), (false, RESERVED));
        for t in [
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8",
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/x",
        ] {
            assert!(!p.decide(&c, &Action::Publish(t)).allowed, "{t}");
        }
        for t in [
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8x/y",
            "clients/statestore/v1/other",
            "clients/c/response",
        ] {
            assert!(p.decide(&c, &Action::Publish(t)).allowed, "{t}");
        }
    }

    /// An attribute name with `/` (the SAT group annotation) is one token, one level: the
    /// broker used to split the text on `/` and refuse what validation accepted.
    #[test]
    fn attribute_names_with_a_slash_fill_one_level() {
        let p = policy(
            r##"        - principals: { usernames: [u] }
          brokerResources:
            - method: Publish
              topics: ["groups/{principal.attributes.aio-broker-auth/group}/#"]
"##,
        );
        let a = attrs(&[("aio-broker-auth/group", "sensors")]);
        let u = who("c", Some("u"), &a);
        assert!(p.decide(&u, &Action::Publish("groups/sensors/x")).allowed);
        assert!(!p.decide(&u, &Action::Publish("groups/other/x")).allowed);
    }

    #[test]
    fn partial_level_tokens_are_refused() {
        assert!(topic_template("{principal.clientId}{principal.username}/#").is_err());
        assert!(topic_template("a/{principal.clientId}-x").is_err());
        assert!(topic_template("client-{principal.clientId}/#").is_err());
        assert!(topic_template("clients/{principal.clientId}/#").is_ok());
        assert!(topic_template("a/#/b").is_err());
    }
}
