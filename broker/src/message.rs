//! An application message as the broker routes it, and one delivery of it to a session.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gatehouse_protocol::{PublishProperties, QoS};
use smallvec::SmallVec;

/// Identifies a session for the life of the process (client ids can be reused by a
/// new session after clean start; keys cannot).
pub type SessionKey = u64;

/// One published message, shared by every subscriber it goes to.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// As published, minus the per-hop fields (topic alias, subscription identifiers,
    /// message expiry, which is kept as `expires_at` and re-derived at delivery).
    pub properties: PublishProperties,
    pub expires_at: Option<Instant>,
    /// The publishing session, for No Local; `None` for wills published after the
    /// session is gone and for messages the broker makes itself.
    pub origin: Option<SessionKey>,
}

impl Message {
    /// The bytes a stored copy holds that a client chose: topic, payload and the
    /// variable-length properties. What bounds on stored messages (retained messages,
    /// remembered state store answers) count, so a large property cannot slip past them.
    pub fn stored_bytes(&self) -> usize {
        let p = &self.properties;
        self.topic.len()
            + self.payload.len()
            + p.response_topic.as_ref().map_or(0, String::len)
            + p.correlation_data.as_ref().map_or(0, |c| c.len())
            + p.content_type.as_ref().map_or(0, String::len)
            + p.user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }

    /// The Message Expiry Interval to send now: `Ok(None)` when the message does not
    /// expire, `Err(())` when it already has (MQTT 5 §3.3.2.3.3: the server must not
    /// deliver it and must send the remaining lifetime otherwise).
    #[allow(clippy::result_unit_err)]
    pub fn remaining_expiry(&self, now: Instant) -> Result<Option<u32>, ()> {
        match self.expires_at {
            None => Ok(None),
            Some(at) if at <= now => Err(()),
            Some(at) => {
                let secs = (at - now).as_secs_f64().ceil() as u32;
                Ok(Some(secs.max(1)))
            }
        }
    }
}

/// A message on its way to one session: the QoS and retain flag for this subscriber,
/// and the identifiers of every subscription of that session that matched.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SmallVec<[u32; 2]>,
    /// The key of this delivery's record in a persisted session (`persistence::journal`);
    /// `None` when the session or the message is not persisted.
    pub seq: Option<u64>,
}
