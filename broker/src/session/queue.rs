//! The bounded per-session delivery queue and its overflow policy.
//!
//! `length` and `max_bytes` are where a connected subscriber counts as *congested*
//! (`super::backpressure`): QoS 1/2
//! publishers routing to it get their PUBACK/PUBREC held until it drains (end-to-end
//! backpressure, so a slow consumer does not lose acknowledged messages). Publishers may
//! overshoot by their in-flight windows, so a connected session's queue accepts QoS 1/2 up
//! to [`ONLINE_CEILING`] × `length` (and × `max_bytes`) before the strategy drops anything.
//! Offline sessions and QoS 0 stop at `length` and `max_bytes`.
//!
//! Bytes are those of the topic and payload of each queued delivery ([`delivery_bytes`]).
//! A message is shared (`Arc`) between the sessions it is queued for, but each session
//! counts it in full, as mosquitto's `max_queued_bytes` does: that is what the session
//! would hold on its own if every other one let go, so it is the bound that holds.

use std::collections::VecDeque;

use gatehouse_protocol::QoS;
use smallvec::SmallVec;

use crate::message::Delivery;

/// How far past `length` and `max_bytes` a connected session's queue takes QoS 1/2
/// deliveries while publishers are being held back.
pub const ONLINE_CEILING: usize = 2;

/// What one queued delivery counts against `max_bytes`: its topic and payload.
pub fn delivery_bytes(d: &Delivery) -> usize {
    d.message
        .topic
        .len()
        .saturating_add(d.message.payload.len())
}

/// The deliveries of one session not yet sent, oldest first, with their bytes
/// ([`delivery_bytes`]) kept in step. Reading goes through `Deref` to the `VecDeque`;
/// every change goes through the methods here, so the byte count cannot drift.
#[derive(Debug, Default)]
pub struct DeliveryQueue {
    items: VecDeque<Delivery>,
    bytes: usize,
}

impl std::ops::Deref for DeliveryQueue {
    type Target = VecDeque<Delivery>;

    fn deref(&self) -> &VecDeque<Delivery> {
        &self.items
    }
}

impl DeliveryQueue {
    /// Bytes of the queued deliveries.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn push_back(&mut self, d: Delivery) {
        self.bytes = self.bytes.saturating_add(delivery_bytes(&d));
        self.items.push_back(d);
    }

    /// Put back a delivery taken with [`pop_front`](Self::pop_front) but not sent.
    pub fn push_front(&mut self, d: Delivery) {
        self.bytes = self.bytes.saturating_add(delivery_bytes(&d));
        self.items.push_front(d);
    }

    pub fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub(delivery_bytes(&d));
        Some(d)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Delivery) -> bool) {
        let mut bytes = 0usize;
        self.items.retain(|d| {
            let kept = keep(d);
            if kept {
                bytes = bytes.saturating_add(delivery_bytes(d));
            }
            kept
        });
        self.bytes = bytes;
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }

    /// Change the newest delivery in place (its journal seq); its bytes are counted again.
    pub fn update_back<R>(&mut self, f: impl FnOnce(&mut Delivery) -> R) -> Option<R> {
        let back = self.items.back_mut()?;
        let before = delivery_bytes(back);
        let r = f(back);
        let after = delivery_bytes(back);
        self.bytes = self.bytes.saturating_sub(before).saturating_add(after);
        Some(r)
    }

    /// Change every delivery in place (journal seqs); the bytes are counted again.
    pub fn update_all(&mut self, mut f: impl FnMut(&mut Delivery)) {
        let mut bytes = 0usize;
        for d in self.items.iter_mut() {
            f(d);
            bytes = bytes.saturating_add(delivery_bytes(d));
        }
        self.bytes = bytes;
    }
}

/// `broker.subscriberQueueLimit` from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct QueuePolicy {
    /// Queued (not yet sent) deliveries per session at which publishers are held back,
    /// and the hard limit for QoS 0 and for offline sessions.
    pub length: usize,
    /// The same in bytes ([`delivery_bytes`]; `subscriberQueueLimit.maxBytes`).
    pub max_bytes: usize,
    /// Drop the oldest queued message to make room (`DropOldest`) or refuse the new
    /// one (`None`, AIO's default).
    pub drop_oldest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    Queued,
    /// Queued after dropping the oldest queued deliveries (one for the length bound,
    /// possibly several for the byte bound).
    QueuedDroppedOldest,
    /// Not queued: QoS 0 to an offline session, a full queue, or an ended session.
    Dropped,
}

impl EnqueueOutcome {
    pub fn queued(self) -> bool {
        !matches!(self, EnqueueOutcome::Dropped)
    }
}

/// Deliveries dropped to make room for a new one.
pub type Evicted = SmallVec<[Delivery; 1]>;

impl QueuePolicy {
    /// Queue `d` or not; with `DropOldest` the deliveries dropped to make room come back.
    pub fn push(
        &self,
        queue: &mut DeliveryQueue,
        d: Delivery,
        online: bool,
    ) -> (EnqueueOutcome, Evicted) {
        // QoS 0 is not kept for offline sessions (as Mosquitto's default), and is the
        // first thing shed for a slow consumer.
        if d.qos == QoS::AtMostOnce && !online {
            return (EnqueueOutcome::Dropped, Evicted::new());
        }
        let ceiling = if online && d.qos != QoS::AtMostOnce {
            ONLINE_CEILING
        } else {
            1
        };
        let max_len = self.length.saturating_mul(ceiling);
        let max_bytes = self.max_bytes.saturating_mul(ceiling);
        let size = delivery_bytes(&d);
        // An empty queue takes any message, so one larger than `max_bytes` (a packet
        // size raised above it) is still delivered, one at a time.
        let fits = |q: &DeliveryQueue| {
            q.is_empty() || (q.len() < max_len && q.bytes().saturating_add(size) <= max_bytes)
        };
        if fits(queue) {
            queue.push_back(d);
            return (EnqueueOutcome::Queued, Evicted::new());
        }
        if d.qos == QoS::AtMostOnce || !self.drop_oldest {
            return (EnqueueOutcome::Dropped, Evicted::new());
        }
        let mut dropped = Evicted::new();
        while !fits(queue) {
            match queue.pop_front() {
                Some(old) => dropped.push(old),
                None => break,
            }
        }
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

    fn topics(q: &DeliveryQueue) -> Vec<&str> {
        q.iter().map(|d| d.message.topic.as_str()).collect()
    }

    #[test]
    fn qos0_is_not_queued_for_offline_sessions() {
        let policy = QueuePolicy {
            max_bytes: usize::MAX,
            length: 10,
            drop_oldest: true,
        };
        let mut q = DeliveryQueue::default();
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
            max_bytes: usize::MAX,
            length: 2,
            drop_oldest: false,
        };
        let mut q = DeliveryQueue::default();
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
            max_bytes: usize::MAX,
            length: 2,
            drop_oldest: true,
        };
        let mut q = DeliveryQueue::default();
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
            max_bytes: usize::MAX,
            length: 2,
            drop_oldest: false,
        };
        let mut q = DeliveryQueue::default();
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
            max_bytes: usize::MAX,
            length: 1,
            drop_oldest: true,
        };
        let mut q = DeliveryQueue::default();
        policy.push(&mut q, delivery(QoS::AtLeastOnce, "a"), true);
        assert_eq!(
            policy.push(&mut q, delivery(QoS::AtMostOnce, "b"), true).0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(topics(&q), ["a"]);
    }

    fn sized(qos: QoS, tag: &str, payload: usize) -> Delivery {
        let mut d = delivery(qos, tag);
        d.message = Arc::new(Message {
            topic: tag.to_owned(),
            payload: Bytes::from(vec![0u8; payload]),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: None,
        });
        d
    }

    #[test]
    fn bytes_bound_refuses_with_strategy_none() {
        let policy = QueuePolicy {
            length: 100,
            max_bytes: 25,
            drop_oldest: false,
        };
        let mut q = DeliveryQueue::default();
        for tag in ["a", "b"] {
            assert_eq!(
                policy
                    .push(&mut q, sized(QoS::AtLeastOnce, tag, 9), false)
                    .0,
                EnqueueOutcome::Queued
            );
        }
        assert_eq!(q.bytes(), 20);
        assert_eq!(
            policy
                .push(&mut q, sized(QoS::AtLeastOnce, "c", 9), false)
                .0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(topics(&q), ["a", "b"]);
        q.pop_front();
        assert_eq!(q.bytes(), 10);
    }

    #[test]
    fn bytes_bound_drops_as_many_oldest_as_needed() {
        let policy = QueuePolicy {
            length: 100,
            max_bytes: 30,
            drop_oldest: true,
        };
        let mut q = DeliveryQueue::default();
        for tag in ["a", "b", "c"] {
            policy.push(&mut q, sized(QoS::AtLeastOnce, tag, 9), false);
        }
        let (outcome, dropped) = policy.push(&mut q, sized(QoS::AtLeastOnce, "d", 19), false);
        assert_eq!(outcome, EnqueueOutcome::QueuedDroppedOldest);
        assert_eq!(dropped.len(), 2);
        assert_eq!(topics(&q), ["c", "d"]);
        assert_eq!(q.bytes(), 30);
    }

    #[test]
    fn bytes_bound_online_ceiling_and_congestion() {
        let policy = QueuePolicy {
            length: 100,
            max_bytes: 20,
            drop_oldest: false,
        };
        let mut q = DeliveryQueue::default();
        for tag in ["a", "b"] {
            policy.push(&mut q, sized(QoS::AtLeastOnce, tag, 9), true);
        }
        assert!(crate::session::backpressure::congests(&policy, &q));
        // QoS 0 stops at the bound, QoS 1 goes on to twice it.
        assert_eq!(
            policy.push(&mut q, sized(QoS::AtMostOnce, "x", 9), true).0,
            EnqueueOutcome::Dropped
        );
        for tag in ["c", "d"] {
            assert_eq!(
                policy.push(&mut q, sized(QoS::AtLeastOnce, tag, 9), true).0,
                EnqueueOutcome::Queued
            );
        }
        assert_eq!(
            policy.push(&mut q, sized(QoS::AtLeastOnce, "e", 9), true).0,
            EnqueueOutcome::Dropped
        );
        assert!(!crate::session::backpressure::drained(&policy, &q));
        while q.len() > 1 {
            q.pop_front();
        }
        assert!(crate::session::backpressure::drained(&policy, &q));
    }

    #[test]
    fn an_empty_queue_takes_a_message_larger_than_the_bound() {
        let policy = QueuePolicy {
            length: 10,
            max_bytes: 5,
            drop_oldest: false,
        };
        let mut q = DeliveryQueue::default();
        assert!(policy
            .push(&mut q, sized(QoS::AtLeastOnce, "a", 50), false)
            .0
            .queued());
        assert!(!policy
            .push(&mut q, sized(QoS::AtLeastOnce, "b", 1), false)
            .0
            .queued());
        let mut kept = q;
        kept.retain(|_| false);
        assert_eq!(kept.bytes(), 0);
    }
}
