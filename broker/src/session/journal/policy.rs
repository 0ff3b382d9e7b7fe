//! Which sessions, messages and retained messages persist (`persistence.subscriberQueue`,
//! `persistence.retain`, their `dynamic` user property): decided from the configuration
//! alone, without touching storage.

use gatehouse_config::glob::Glob;
use gatehouse_config::{DynamicMode, Persistence, PersistenceMode};

use crate::message::Message;

/// What a session was selected for, decided once at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Every QoS 1/2 message of the session persists.
    AllMessages,
    /// Only messages on the policy's topics persist (`Custom` with `topics`).
    TopicsOnly,
}

pub(super) struct Policy {
    queue_mode: PersistenceMode,
    queue_client_ids: Vec<Glob>,
    queue_topics: Vec<String>,
    queue_dynamic: bool,
    retain_mode: PersistenceMode,
    retain_topics: Vec<String>,
    retain_dynamic: bool,
    dynamic_key: String,
    dynamic_value: String,
}

impl Policy {
    /// Whether nothing persists at all (no journal is needed).
    pub(super) fn is_off(&self) -> bool {
        self.queue_mode == PersistenceMode::None && self.retain_mode == PersistenceMode::None
    }

    pub(super) fn new(config: &Persistence) -> Policy {
        let q = &config.subscriber_queue;
        let qs = q.subscriber_queue_settings.clone().unwrap_or_default();
        let r = &config.retain;
        let rs = r.retain_settings.clone().unwrap_or_default();
        Policy {
            queue_mode: q.mode,
            // Validation checked the globs; one that does not compile matches nothing.
            queue_client_ids: qs
                .subscriber_client_ids
                .iter()
                .filter_map(|g| Glob::new(g).ok())
                .collect(),
            queue_topics: qs.topics,
            queue_dynamic: qs.dynamic.mode == DynamicMode::Enabled,
            retain_mode: r.mode,
            retain_topics: rs.topics,
            retain_dynamic: rs.dynamic.mode == DynamicMode::Enabled,
            dynamic_key: config.dynamic_settings.user_property_key.clone(),
            dynamic_value: config.dynamic_settings.user_property_value.clone(),
        }
    }

    /// Whether a session whose CONNECT had `user_properties` persists, and how much of it.
    pub(super) fn select_session(
        &self,
        client_id: &str,
        user_properties: &[(String, String)],
    ) -> Option<Selected> {
        let p = self;
        match p.queue_mode {
            PersistenceMode::None => None,
            PersistenceMode::All => Some(Selected::AllMessages),
            PersistenceMode::Custom => {
                let chosen = p.queue_client_ids.iter().any(|g| g.is_match(client_id))
                    || (p.queue_dynamic && p.dynamic(user_properties));
                if chosen {
                    Some(Selected::AllMessages)
                } else if !p.queue_topics.is_empty() {
                    Some(Selected::TopicsOnly)
                } else {
                    None
                }
            }
        }
    }

    /// Whether a message on `topic` persists in a session selected as `selected`.
    pub(super) fn message_wanted(&self, selected: Selected, topic: &str) -> bool {
        match selected {
            Selected::AllMessages => true,
            Selected::TopicsOnly => self
                .queue_topics
                .iter()
                .any(|f| gatehouse_protocol::topic::matches(f, topic)),
        }
    }

    /// Whether retained messages persist at all.
    pub(super) fn retains(&self) -> bool {
        self.retain_mode != PersistenceMode::None
    }

    /// Whether a retained message persists.
    pub(super) fn retain_wanted(&self, m: &Message) -> bool {
        let p = self;
        match p.retain_mode {
            PersistenceMode::None => false,
            PersistenceMode::All => true,
            PersistenceMode::Custom => {
                p.retain_topics
                    .iter()
                    .any(|f| gatehouse_protocol::topic::matches(f, &m.topic))
                    || (p.retain_dynamic && p.dynamic(&m.properties.user_properties))
            }
        }
    }

    fn dynamic(&self, user_properties: &[(String, String)]) -> bool {
        user_properties
            .iter()
            .any(|(k, v)| *k == self.dynamic_key && *v == self.dynamic_value)
    }
}
