//! Enforcement: the policy a port uses, swappable on reload, with its decision cache and the
//! `authz` debug logs.

use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use serde_json::json;

use super::cache::DecisionCache;
use super::counters::AuthzCounters;
use super::policy::{Action, Decision, Policy};
use super::template::Subject;
use crate::auth::Principal;

/// The policy of one BrokerAuthorization, shared by the ports that use it.
#[derive(Debug)]
pub struct Authorizer {
    current: RwLock<Arc<Installed>>,
    /// Denials and cache lookups, for `/metrics`; kept across policy replacements.
    counters: AuthzCounters,
}

/// A policy and the decisions made with it. They are replaced together, so a cached
/// decision always comes from the policy in force.
#[derive(Debug)]
struct Installed {
    policy: Arc<Policy>,
    /// `None` with `cache: Disabled`.
    cache: Option<DecisionCache>,
}

impl Installed {
    fn new(policy: Policy) -> Arc<Installed> {
        Arc::new(Installed {
            cache: policy.cache.then(DecisionCache::new),
            policy: Arc::new(policy),
        })
    }
}

impl Authorizer {
    pub fn new(policy: Policy) -> Authorizer {
        Authorizer {
            current: RwLock::new(Installed::new(policy)),
            counters: AuthzCounters::default(),
        }
    }

    /// A new policy for every later check (runtime update), with an empty cache.
    pub fn replace(&self, policy: Policy) {
        let installed = Installed::new(policy);
        *self.current.write() = installed;
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.current.read().policy.clone()
    }

    pub fn counters(&self) -> &AuthzCounters {
        &self.counters
    }

    /// How many decisions the cache holds (`None`: caching is off).
    pub fn cached_decisions(&self) -> Option<usize> {
        self.current.read().cache.as_ref().map(DecisionCache::len)
    }

    /// Decide `action` for the client `client_id` authenticated as `principal`.
    pub fn check(&self, principal: &Principal, client_id: &str, action: &Action<'_>) -> Decision {
        let subject = Subject {
            client_id,
            username: principal.username.as_deref(),
            attributes: &principal.attributes,
        };
        let (decision, cached) = {
            let current = self.current.read();
            match &current.cache {
                Some(cache) => {
                    let (decision, hit) = cache.get_or_decide(&subject, action, || {
                        current.policy.decide(&subject, action)
                    });
                    self.counters.cache_lookup(hit);
                    (decision, hit)
                }
                None => (current.policy.decide(&subject, action), false),
            }
        };
        self.counters.decided(action, &decision);
        if tracing::enabled!(target: "authz", tracing::Level::DEBUG) {
            let what = describe(client_id, action);
            let mark = if cached { " (cached)" } else { "" };
            tracing::debug!(target: "authz", "checking authorization for {what}{mark}");
            if !decision.allowed {
                tracing::debug!(target: "authz", "denied {what}: {}{mark}", decision.reason);
            }
        }
        decision
    }
}

/// `{"action":"publish","clientId":"x","topic":"t"}`; state store keys in base64.
fn describe(client_id: &str, action: &Action<'_>) -> String {
    let value = match action {
        Action::Connect => json!({ "action": "connect", "clientId": client_id }),
        Action::Publish(topic) => {
            json!({ "action": "publish", "clientId": client_id, "topic": topic })
        }
        Action::Subscribe(filter) => {
            json!({ "action": "subscribe", "clientId": client_id, "topic": filter })
        }
        Action::StateStore { write, key } => json!({
            "action": if *write { "statestore-write" } else { "statestore-read" },
            "clientId": client_id,
            "key": base64::engine::general_purpose::STANDARD.encode(key),
        }),
    };
    value.to_string()
}
