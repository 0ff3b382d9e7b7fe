//! The compiled policy and the decision function. No I/O; every check is a function of
//! the policy, the subject and the action.

use std::collections::BTreeMap;

use gatehouse_config::glob::Glob;

use super::filter;
use super::template::{plain_value, topic_value, Subject, Template};

// From the configuration to the rules below (a child module: the rules' fields stay private).
mod compile;
// `gatehouse explain`: the checks of `decide`, kept (a child module, so it reuses the
// private matching functions below).
mod trace;

use compile::glob;
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
    /// How a substituted value enters the glob: [`glob_value`](super::template::glob_value) for client ids,
    /// [`key_glob_value`](super::template::key_glob_value) (which also refuses `/`) for state store keys. Kept with the
    /// template so `decide` and `gatehouse explain`'s trace render it the same way.
    escape: fn(&str) -> Option<String>,
}

impl GlobTemplate {
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

#[cfg(test)]
mod tests;
