//! The bounded per-session delivery queue and its overflow policy.

use std::collections::VecDeque;

use gatehouse_protocol::QoS;

use crate::message::Delivery;

/// `broker.subscriberQueueLimit` from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    /// Maximum queued (not yet sent) deliveries per session.
    pub length: usize,
    /// Drop the oldest queued message to make room (`DropOldest`) or refuse the new
    /// one (`None`, AIO's default).
    pub drop_oldest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued,
    /// Queued after dropping the oldest queued delivery.
    QueuedDroppedOldest,
    /// Not queued: QoS 0 to an offline session, a full queue, or an ended session.
    Dropped,
}

impl EnqueueOutcome {
    pub fn queued(self) -> bool {
        !matches!(self, EnqueueOutcome::Dropped)
    }
}

impl QueuePolicy {
    pub fn push(
        &self,
        queue: &mut VecDeque<Delivery>,
        d: Delivery,
        online: bool,
    ) -> EnqueueOutcome {
        // QoS 0 is not kept for offline sessions (as Mosquitto's default), and is the
        // first thing shed for a slow consumer.
        if d.qos == QoS::AtMostOnce && !online {
            return EnqueueOutcome::Dropped;
        }
        if queue.len() < self.length {
            queue.push_back(d);
            return EnqueueOutcome::Queued;
        }
        if d.qos == QoS::AtMostOnce || !self.drop_oldest {
            return EnqueueOutcome::Dropped;
        }
        queue.pop_front();
        queue.push_back(d);
        EnqueueOutcome::QueuedDroppedOldest
    }
}
