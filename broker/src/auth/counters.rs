//! What each method of an authentication chain decided, counted where it decides
//! (`Chain::authenticate` / `Chain::reauthenticate`) and rendered by `metrics`.

use crate::counters::Counter;

use super::{Outcome, Reauth};

/// What one method of an authentication chain decided.
#[derive(Debug, Default)]
pub struct MethodCounters {
    pub accepted: Counter,
    pub rejected: Counter,
    /// Re-authentication (AUTH 0x19) answers: AUTH 0x00, AUTH 0x18 (try again), DISCONNECT.
    pub reauth_success: Counter,
    pub reauth_retry: Counter,
    pub reauth_failure: Counter,
}

/// The outcomes of one authentication chain: one [`MethodCounters`] per method, in chain
/// order, and a last one for credentials that no method was relevant to.
#[derive(Debug)]
pub struct AuthCounters(Box<[MethodCounters]>);

impl AuthCounters {
    pub fn new(methods: usize) -> AuthCounters {
        AuthCounters((0..=methods).map(|_| MethodCounters::default()).collect())
    }

    /// Method `index` decided the CONNECT.
    pub fn decided(&self, index: usize, outcome: &Outcome) {
        let m = self.method(index);
        match outcome {
            Outcome::Accepted(_) => m.accepted.inc(),
            Outcome::Rejected(..) => m.rejected.inc(),
        }
    }

    /// No method was relevant to the credentials: rejected.
    pub fn none_relevant(&self) {
        self.none().rejected.inc();
    }

    /// Method `index` answered a re-authentication; `None` when no method handled it.
    pub fn reauthenticated(&self, index: Option<usize>, answer: &Reauth) {
        let m = index.map_or(self.none(), |i| self.method(i));
        match answer {
            Reauth::Success(_) => m.reauth_success.inc(),
            Reauth::Continue(_) => m.reauth_retry.inc(),
            Reauth::Failed(..) => m.reauth_failure.inc(),
        }
    }

    /// Method `index`'s counters (an index past the last method gives [`Self::none`]).
    pub fn method(&self, index: usize) -> &MethodCounters {
        &self.0[index.min(self.0.len() - 1)]
    }

    /// The counters of credentials no method was relevant to.
    pub fn none(&self) -> &MethodCounters {
        &self.0[self.0.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_counters_keep_a_slot_for_no_relevant_method() {
        let c = AuthCounters::new(2);
        c.none_relevant();
        c.method(1).accepted.inc();
        assert_eq!(c.none().rejected.get(), 1);
        assert_eq!(c.method(1).accepted.get(), 1);
        // Past the last method is the "none" slot, never out of bounds.
        assert_eq!(c.method(9).rejected.get(), 1);
    }
}
