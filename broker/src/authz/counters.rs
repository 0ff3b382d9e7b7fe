//! The checks of an authorization policy, counted by its `Authorizer` and rendered by
//! `metrics`.

use crate::counters::Counter;

use super::{Action, Decision};

/// The action kinds of authorization, as `action` label values.
pub const AUTHZ_ACTIONS: [&str; 5] = [
    "connect",
    "publish",
    "subscribe",
    "statestore_read",
    "statestore_write",
];

fn action_index(action: &Action<'_>) -> usize {
    match action {
        Action::Connect => 0,
        Action::Publish(_) => 1,
        Action::Subscribe(_) => 2,
        Action::StateStore { write: false, .. } => 3,
        Action::StateStore { write: true, .. } => 4,
    }
}

/// The checks of one authorization policy; they survive policy reloads (the decision
/// cache does not), so the counters stay monotonic.
#[derive(Debug, Default)]
pub struct AuthzCounters {
    /// Denials by action, indexed like [`AUTHZ_ACTIONS`].
    pub denied: [Counter; 5],
    pub cache_hits: Counter,
    pub cache_misses: Counter,
}

impl AuthzCounters {
    #[inline]
    pub fn decided(&self, action: &Action<'_>, decision: &Decision) {
        if !decision.allowed {
            self.denied[action_index(action)].inc();
        }
    }

    #[inline]
    pub fn cache_lookup(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }
}
