//! A will as the session keeps it until it is published (after its delay, or when the
//! session ends), with what it takes to authorize it then.

use std::sync::Arc;

use gatehouse_protocol::Will;

/// A will and, on a port with authorization, who must still be allowed to publish it.
/// A will is published on its client's behalf, possibly long after CONNECT (will delay,
/// session expiry): it is authorized against the policy in force when it is published,
/// not the one in force at CONNECT (security.md invariant 4).
pub struct WillMessage {
    pub will: Will,
    pub authority: Option<WillAuthority>,
}

impl std::fmt::Debug for WillMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WillMessage")
            .field("topic", &self.will.topic)
            .field("authorized", &self.authority.is_some())
            .finish()
    }
}

/// The port's policy and the principal the will is published for.
pub struct WillAuthority {
    pub authz: Arc<crate::authz::Authorizer>,
    /// `None` only on a misconfigured port (policy without authentication): then nothing
    /// is allowed, so the will is not published.
    pub principal: Option<crate::auth::Principal>,
    pub client_id: Arc<str>,
}

impl WillAuthority {
    pub(crate) fn allows(&self, topic: &str) -> bool {
        self.principal.as_ref().is_some_and(|p| {
            self.authz
                .check(p, &self.client_id, &crate::authz::Action::Publish(topic))
                .allowed
        })
    }
}
