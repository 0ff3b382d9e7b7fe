//! The bounded per-session delivery queue and its overflow policy.
//!
//! `length` is where a connected subscriber counts as *congested*: QoS 1/2 publishers
//! routing to it get their PUBACK/PUBREC held until it drains (end-to-end backpressure,
//! so a slow consumer does not lose acknowledged messages). Publishers may overshoot by
//! their in-flight windows, so a connected session's queue accepts QoS 1/2 up to
//! [`ONLINE_CEILING`] × `length` before the strategy drops anything. Offline sessions and
//! QoS 0 stop at `length`.

use std::collections::VecDeque;

use gatehouse_protocol::QoS;

use crate::message::Delivery;

/// How far past `length` a connected session's queue takes QoS 1/2 deliveries while
/// publishers are being held back.
pub const ONLINE_CEILING: usize = 2;

/// `broker.subscriberQueueLimit` from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    /// Queued (not yet sent) deliveries per session at which publishers are held back,
    /// and the hard limit for QoS 0 and for offline sessions.
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
    /// Queue `d` or not; with `DropOldest` the delivery dropped to make room comes back.
    pub fn push(
        &self,
        queue: &mut VecDeque<Delivery>,
        d: Delivery,
        online: bool,
    ) -> (EnqueueOutcome, Option<Delivery>) {
        // QoS 0 is not kept for offline sessions (as Mosquitto's default), and is the
        // first thing shed for a slow consumer.
        if d.qos == QoS::AtMostOnce && !online {
            return (EnqueueOutcome::Dropped, None);
        }
        let limit = if online && d.qos != QoS::AtMostOnce {
            self.length.saturating_mul(ONLINE_CEILING)
        } else {
            self.length
        };
        if queue.len() < limit {
            queue.push_back(d);
            return (EnqueueOutcome::Queued, None);
        }
        if d.qos == QoS::AtMostOnce || !self.drop_oldest {
            return (EnqueueOutcome::Dropped, None);
        }
        let dropped = queue.pop_front();
        queue.push_back(d);
        (EnqueueOutcome::QueuedDroppedOldest, dropped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use gatehouse_protocol::PublishProperties;

    use super::*;
    use crate::message::Message;

    fn delivery(qos: QoS, tag: &str) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: tag.to_owned(),
                payload: Bytes::new(),
                qos,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
                origin: None,
            }),
            qos,
            retain: false,
            subscription_ids: Default::default(),
            seq: None,
        }
    }

    fn topics(q: &VecDeque<Delivery>) -> Vec<&str> {
        q.iter().map(|d| d.message.topic.as_str()).collect()
    }

    #[test]
    fn qos0_is_not_queued_for_offline_sessions() {
        let policy = QueuePolicy {
            length: 10,
            drop_oldest: true,
        };
        let mut q = VecDeque::new();
        assert_eq!(
            policy.push(&mut q, delivery(QoS::AtMostOnce, "a"), false).0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(
            policy
                .push(&mut q, delivery(QoS::AtLeastOnce, "b"), false)
                .0,
            EnqueueOutcome::Queued
        );
        assert_eq!(topics(&q), ["b"]);
    }

    #[test]
    fn full_queue_with_strategy_none_refuses_the_new_message() {
        let policy = QueuePolicy {
            length: 2,
            drop_oldest: false,
        };
        let mut q = VecDeque::new();
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "a"), false);
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "b"), false);
        assert_eq!(
            policy
                .push(&mut q, delivery(QoS::ExactlyOnce, "c"), false)
                .0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(topics(&q), ["a", "b"]);
    }

    #[test]
    fn full_queue_with_drop_oldest_keeps_the_newest() {
        let policy = QueuePolicy {
            length: 2,
            drop_oldest: true,
        };
        let mut q = VecDeque::new();
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "a"), false);
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "b"), false);
        assert_eq!(
            policy
                .push(&mut q, delivery(QoS::AtLeastOnce, "c"), false)
                .0,
            EnqueueOutcome::QueuedDroppedOldest
        );
        assert_eq!(topics(&q), ["b", "c"]);
    }

    #[test]
    fn connected_sessions_take_qos1_past_length_up_to_the_ceiling() {
        let policy = QueuePolicy {
            length: 2,
            drop_oldest: false,
        };
        let mut q = VecDeque::new();
        for tag in ["a", "b", "c", "d"] {
            assert_eq!(
                policy.push(&mut q, delivery(QoS::AtLeastOnce, tag), true).0,
                EnqueueOutcome::Queued
            );
        }
        assert_eq!(
            policy.push(&mut q, delivery(QoS::AtLeastOnce, "e"), true).0,
            EnqueueOutcome::Dropped
        );
        // QoS 0 still stops at `length`.
        assert_eq!(
            policy.push(&mut q, delivery(QoS::AtMostOnce, "f"), true).0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(topics(&q), ["a", "b", "c", "d"]);
    }

    #[test]
    fn qos0_is_shed_first_when_full() {
        let policy = QueuePolicy {
            length: 1,
            drop_oldest: true,
        };
        let mut q = VecDeque::new();
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "a"), true);
        assert_eq!(
            policy.push(&mut q, delivery(QoS::AtMostOnce, "b"), true).0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(topics(&q), ["a"]);
    }
}
