//! Enforcement: the policy a port uses, swappable on reload, with the `authz` debug logs.

use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use serde_json::json;

use super::policy::{Action, Decision, Policy};
use super::template::Subject;
use crate::auth::Principal;

/// The policy of one BrokerAuthorization, shared by the ports that use it.
#[derive(Debug)]
pub struct Authorizer {
    policy: RwLock<Arc<Policy>>,
}

impl Authorizer {
    pub fn new(policy: Policy) -> Authorizer {
        Authorizer {
            policy: RwLock::new(Arc::new(policy)),
        }
    }

    /// A new policy for every later check (runtime update).
    pub fn replace(&self, policy: Policy) {
        *self.policy.write() = Arc::new(policy);
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().clone()
    }

    /// Decide `action` for the client `client_id` authenticated as `principal`.
    pub fn check(&self, principal: &Principal, client_id: &str, action: &Action<'_>) -> Decision {
        let subject = Subject {
            client_id,
            username: principal.username.as_deref(),
            attributes: &principal.attributes,
        };
        if tracing::enabled!(target: "authz", tracing::Level::DEBUG) {
            tracing::debug!(
                target: "authz",
                "checking authorization for {}",
                describe(client_id, action)
            );
        }
        let decision = self.policy().decide(&subject, action);
        if !decision.allowed {
            tracing::debug!(
                target: "authz",
                "denied {}: {}",
                describe(client_id, action),
                decision.reason
            );
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
