//! Re-checking what a session was granted when the principal holding it or the policy
//! changes (security.md invariant 3): a resumed session (after a reload's 0x98, or a
//! plain reconnect) and a v5 re-authentication.
//!
//! Subscriptions are checked as SUBSCRIBE would check them now. Messages waiting in the
//! session (queued, or sent and not yet acknowledged) are checked as a subscription to
//! their own topic name would be: a principal may receive a message only where it could
//! subscribe. Whatever fails is dropped, logged and counted
//! (`gatehouse_subscriptions_revoked_total`, `gatehouse_messages_dropped_total{reason="not_authorized"}`).
//!
//! State store notifications for this client id (under its own notification prefix, not
//! anyone else's) are exempt from the topic check: they follow KEYNOTIFY registrations,
//! which are re-checked here too (Read on the key), and no subscription ever matches them
//! (statestore.md §4.2).

use gatehouse_protocol::topic::parse_subscription_filter;

use super::Connection;
use crate::authz::Action;
use crate::statestore::topic::notify_prefix_for;

impl Connection {
    /// Drop every subscription and waiting message the current principal may no longer
    /// have. `why` names the change, for the log. A port without a policy grants
    /// everything: nothing to do.
    pub(super) fn recheck_grants(&mut self, why: &str) {
        if self.authz.is_none() {
            return;
        }
        let own_notifications = notify_prefix_for(&self.client_id);
        let revoked: Vec<String>;
        let messages;
        {
            let mut st = self.session.lock();
            revoked = st
                .subscriptions
                .keys()
                .filter(|raw| !self.allowed(&Action::Subscribe(raw)))
                .cloned()
                .collect();
            for raw in &revoked {
                st.subscriptions.remove(raw);
            }
            let may_receive = |topic: &str| {
                topic.starts_with(&own_notifications) || self.allowed(&Action::Subscribe(topic))
            };
            // In flight: a QoS 2 message past PUBREC has been delivered already; only
            // its PUBREL/PUBCOMP remain, which reveal nothing (the session keeps it).
            messages = st.retain_messages(|d| may_receive(&d.message.topic));
            if !revoked.is_empty() {
                self.session.save_meta(&st, 0);
            }
        }
        for raw in &revoked {
            if let Ok(parsed) = parse_subscription_filter(raw) {
                self.broker
                    .router
                    .unsubscribe(parsed.filter, parsed.share_group, self.session.key);
            }
            tracing::info!(
                target: "authz",
                client_id = &*self.client_id,
                filter = raw.as_str(),
                "subscription no longer authorized ({why}): removed"
            );
        }
        if messages > 0 {
            tracing::info!(
                target: "authz",
                client_id = &*self.client_id,
                messages,
                "messages no longer authorized ({why}): dropped"
            );
        }
        // The state store logs each registration it drops.
        self.broker
            .state_store
            .recheck_registrations(&self.client_id, |action| self.allowed(action));
        if !revoked.is_empty() {
            // Cluster mode: the session's record follows its subscriptions.
            self.broker.session_changed(&self.session);
        }
        let outbound = &self.metrics.outbound;
        outbound.subscriptions_revoked.add(revoked.len() as u64);
        outbound.not_authorized.add(messages as u64);
    }
}
