//! A session's QoS state as a sans-IO state machine: the queue of deliveries not yet
//! sent, the in-flight window towards the client, the packet ids handed out, and the
//! client's QoS 2 PUBLISHes received but not yet released.
//!
//! One method per protocol event; each returns what to send (a [`Reply`], a [`Next`]
//! delivery, [`Resend`]s) and what changed that the journal must record (the deliveries it
//! completes). Nothing here touches a socket, the runtime, the journal or the clock (`now`
//! is passed in), so every flow is unit-tested without them, and the invariants below are
//! fuzzed (`fuzz/fuzz_targets/session.rs`) and property-tested (`super::invariants`).
//!
//! Invariants (checked by [`QosState::check`]):
//! - no packet id is in flight twice, and 0 is never used;
//! - a packet id is handed out only when it is not in flight;
//! - the in-flight window holds at most the client's Receive Maximum of QoS 1/2
//!   deliveries (it is only filled by [`QosState::next_delivery`], which checks it);
//! - a QoS 2 PUBLISH from the client is routed once: a retransmission of an id not yet
//!   released (PUBREL) is [`PublishIn::Duplicate`];
//! - the queue stays within its policy's bounds (see [`QueuePolicy::push`]), its byte
//!   count always equals the bytes of what it holds.
//!
//! The session (`super::Session`) owns one of these behind its lock and applies the
//! journal records; the connection does the I/O.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use gatehouse_protocol::{PacketId, QoS, ReasonCode};

use super::queue::{DeliveryQueue, EnqueueOutcome, Evicted, QueuePolicy, ONLINE_CEILING};
use crate::message::Delivery;

/// Where an outgoing QoS 1/2 message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitPubComp,
}

/// A QoS 1/2 delivery sent to the client and not yet acknowledged.
#[derive(Debug)]
pub struct Outgoing {
    pub packet_id: PacketId,
    pub stage: Stage,
    pub delivery: Delivery,
}

/// How many of the client's QoS 1/2 PUBLISHes may be unacknowledged at once: our Receive
/// Maximum (MQTT 5 §3.3.4), and the acknowledgements the connection holds back.
#[derive(Debug, Clone, Copy)]
pub struct InboundWindow {
    /// Our Receive Maximum (`maxReceiveMaximum`).
    pub maximum: usize,
    /// v5: QoS 1 PUBLISHes whose PUBACK the connection holds back (they count against the
    /// window with the unreleased QoS 2 ones). `None` for 3.1.1, which has no Receive
    /// Maximum: QoS 1 is not checked, and the same bound applies to unreleased QoS 2 alone
    /// (held PUBACKs are bounded by not reading the client instead).
    pub held_pubacks: Option<usize>,
}

/// What to do with a PUBLISH from the client ([`QosState::on_publish_in`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishIn {
    /// Route it, then acknowledge (QoS 2: its id is now unreleased until PUBREL).
    Route,
    /// A QoS 2 retransmission of a PUBLISH routed already and not yet released: do not
    /// route it again, acknowledge again (MQTT 5 §4.3.3).
    Duplicate,
    /// More QoS 1/2 PUBLISHes unacknowledged than our Receive Maximum: DISCONNECT 0x93.
    ReceiveMaximumExceeded,
}

/// What to send the client in answer to an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    Nothing,
    PubRel(PacketId, ReasonCode),
    PubComp(PacketId, ReasonCode),
}

/// The next delivery for the client ([`QosState::next_delivery`]).
#[derive(Debug)]
pub enum Next<'a> {
    /// Send this PUBLISH (with `packet_id` at QoS 1/2, and the Message Expiry Interval
    /// left), then report [`QosState::sent`] or [`QosState::discarded`]. It stays at the
    /// front of the queue until then: lent, not moved, on the per-message path.
    Publish {
        delivery: &'a Delivery,
        packet_id: Option<PacketId>,
        expiry: Option<u32>,
    },
    /// It expired while queued: it is dropped (count it; the journal forgets it).
    Expired(Delivery),
    /// The in-flight window is full, or every packet id is in flight: wait for acks.
    Blocked,
    /// Nothing queued.
    Empty,
}

/// What to send again when a session resumes ([`QosState::resume`]).
#[derive(Debug)]
pub enum Resend<'a> {
    /// The PUBLISH again, with DUP set, under its packet id.
    Publish {
        delivery: &'a Delivery,
        packet_id: PacketId,
        expiry: Option<u32>,
    },
    /// PUBREL again: the client has the message already (PUBREC received).
    PubRel(PacketId),
}

/// What an acknowledgement changed, for the journal.
#[derive(Debug)]
pub enum Changed<'a> {
    Nothing,
    /// This delivery is done with (acknowledged, refused, expired, discarded).
    Done(Delivery),
    /// This delivery moved on to a new stage.
    Staged(&'a Outgoing),
}

/// The QoS state of one session. See the module documentation for its invariants.
#[derive(Debug, Default)]
pub struct QosState {
    /// Deliveries not yet sent, oldest first, with their bytes. Bounded by the queue
    /// policy (length and bytes).
    queue: DeliveryQueue,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in send order (which is also
    /// packet-id order modulo wrap-around, the invariant `next_packet_id` relies on).
    outgoing: VecDeque<Outgoing>,
    /// Incoming QoS 2 packet ids for which PUBREC was sent and PUBREL not yet received.
    /// A B-tree: empty, it takes half the room of a hash table in every session, and it
    /// stays small (bounded by our Receive Maximum).
    incoming_qos2: BTreeSet<u16>,
    last_packet_id: u16,
}

impl QosState {
    // ----- client → server -----

    /// A PUBLISH from the client at `qos` (QoS 1/2 with `packet_id`), against `window`.
    /// QoS 0 is always routed; QoS 1 is only checked against the window; QoS 2 is also
    /// remembered until PUBREL, so a retransmission is not routed twice.
    #[inline]
    pub fn on_publish_in(
        &mut self,
        qos: QoS,
        packet_id: PacketId,
        window: InboundWindow,
    ) -> PublishIn {
        match qos {
            QoS::AtMostOnce => PublishIn::Route,
            QoS::AtLeastOnce => match window.held_pubacks {
                Some(held) if held + self.incoming_qos2.len() >= window.maximum => {
                    PublishIn::ReceiveMaximumExceeded
                }
                _ => PublishIn::Route,
            },
            QoS::ExactlyOnce => {
                if self.incoming_qos2.contains(&packet_id.get()) {
                    return PublishIn::Duplicate;
                }
                let unacknowledged = window.held_pubacks.unwrap_or(0) + self.incoming_qos2.len();
                if unacknowledged >= window.maximum {
                    return PublishIn::ReceiveMaximumExceeded;
                }
                self.incoming_qos2.insert(packet_id.get());
                PublishIn::Route
            }
        }
    }

    /// A QoS 2 PUBLISH dropped without telling the client (3.1.1 has no reason code for
    /// "not authorized"): its exchange still completes as usual, so its id is remembered
    /// for PUBREL like a routed one. No window check: it was never counted before either.
    pub fn on_publish_in_dropped(&mut self, packet_id: PacketId) {
        self.incoming_qos2.insert(packet_id.get());
    }

    /// A QoS 2 PUBLISH answered with an error PUBREC after all (the retained store was
    /// full): that ends its exchange, no PUBREL will come. True if it was unreleased.
    pub fn on_publish_in_refused(&mut self, packet_id: PacketId) -> bool {
        self.incoming_qos2.remove(&packet_id.get())
    }

    /// PUBREL: the client releases a QoS 2 PUBLISH. Answer PUBCOMP, 0x92 when the id is
    /// unknown (released already, or never received).
    pub fn on_pubrel(&mut self, packet_id: PacketId) -> Reply {
        let reason = if self.incoming_qos2.remove(&packet_id.get()) {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        Reply::PubComp(packet_id, reason)
    }

    /// QoS 2 PUBLISHes from the client not yet released: they count against our Receive
    /// Maximum.
    pub fn unreleased(&self) -> usize {
        self.incoming_qos2.len()
    }

    /// The unreleased ids, for the journal.
    pub fn unreleased_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.incoming_qos2.iter().copied()
    }

    // ----- server → client -----

    /// PUBACK: the delivery with this id is done (whatever its stage: acks usually
    /// arrive in order, so the search starts at the front).
    #[inline]
    pub fn on_puback(&mut self, packet_id: PacketId) -> Changed<'_> {
        let pos = self.outgoing.iter().position(|o| o.packet_id == packet_id);
        match pos.and_then(|pos| self.outgoing.remove(pos)) {
            Some(done) => Changed::Done(done.delivery),
            None => Changed::Nothing,
        }
    }

    /// PUBREC with `reason`: an error reason ends the exchange (nothing is sent); else
    /// the delivery waits for PUBCOMP and PUBREL answers (0x92 for an unknown id).
    pub fn on_pubrec(&mut self, packet_id: PacketId, reason: ReasonCode) -> (Reply, Changed<'_>) {
        let Some(pos) = self.outgoing.iter().position(|o| o.packet_id == packet_id) else {
            let rel = Reply::PubRel(packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
            return (rel, Changed::Nothing);
        };
        if reason.is_error() {
            return match self.outgoing.remove(pos) {
                Some(done) => (Reply::Nothing, Changed::Done(done.delivery)),
                None => (Reply::Nothing, Changed::Nothing),
            };
        }
        let o = &mut self.outgoing[pos];
        o.stage = Stage::AwaitPubComp;
        (
            Reply::PubRel(packet_id, ReasonCode::SUCCESS),
            Changed::Staged(o),
        )
    }

    /// PUBCOMP: a QoS 2 delivery past PUBREC is done; any other id is ignored.
    #[inline]
    pub fn on_pubcomp(&mut self, packet_id: PacketId) -> Changed<'_> {
        let pos = self
            .outgoing
            .iter()
            .position(|o| o.packet_id == packet_id && o.stage == Stage::AwaitPubComp);
        match pos.and_then(|pos| self.outgoing.remove(pos)) {
            Some(done) => Changed::Done(done.delivery),
            None => Changed::Nothing,
        }
    }

    /// The next delivery to send, within the client's Receive Maximum (`receive_maximum`
    /// QoS 1/2 deliveries in flight; QoS 0 is never held by it), at `now`. A QoS 1/2
    /// delivery gets a packet id that is not in flight.
    #[inline]
    pub fn next_delivery(&mut self, receive_maximum: usize, now: Instant) -> Next<'_> {
        let Some(front) = self.queue.front() else {
            return Next::Empty;
        };
        let qos = front.qos;
        if qos != QoS::AtMostOnce && self.outgoing.len() >= receive_maximum {
            return Next::Blocked;
        }
        let Ok(expiry) = front.message.remaining_expiry(now) else {
            return match self.queue.pop_front() {
                Some(expired) => Next::Expired(expired),
                None => Next::Empty,
            };
        };
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            _ => match self.next_packet_id() {
                Some(id) => Some(id),
                None => return Next::Blocked,
            },
        };
        match self.queue.front() {
            Some(delivery) => Next::Publish {
                delivery,
                packet_id,
                expiry,
            },
            None => Next::Empty,
        }
    }

    /// The PUBLISH of [`Next::Publish`] was written: it leaves the queue, and at QoS 1/2
    /// it is in flight now under `packet_id`.
    #[inline]
    pub fn sent(&mut self, packet_id: Option<PacketId>) -> Option<&Outgoing> {
        let delivery = self.queue.pop_front()?;
        let packet_id = packet_id?;
        let stage = if delivery.qos == QoS::AtLeastOnce {
            Stage::AwaitPubAck
        } else {
            Stage::AwaitPubRec
        };
        self.outgoing.push_back(Outgoing {
            packet_id,
            stage,
            delivery,
        });
        self.outgoing.back()
    }

    /// The PUBLISH of [`Next::Publish`] could not be written (larger than the client's
    /// Maximum Packet Size): it leaves the queue as if sent, and is done with.
    #[inline]
    pub fn discarded(&mut self) -> Option<Delivery> {
        self.queue.pop_front()
    }

    /// After a session resumes: every in-flight delivery again, in order, with DUP set, or
    /// its PUBREL once PUBREC came (MQTT 5 §4.4). An expired message is still resent (its
    /// id must be acknowledged), with the shortest expiry.
    pub fn resume(&self, now: Instant) -> impl Iterator<Item = Resend<'_>> + '_ {
        self.outgoing.iter().map(move |o| match o.stage {
            Stage::AwaitPubComp => Resend::PubRel(o.packet_id),
            Stage::AwaitPubAck | Stage::AwaitPubRec => Resend::Publish {
                delivery: &o.delivery,
                packet_id: o.packet_id,
                expiry: o.delivery.message.remaining_expiry(now).unwrap_or(Some(1)),
            },
        })
    }

    /// The next free packet id for a server→client QoS 1/2 PUBLISH, or `None` when all
    /// 65535 are in flight.
    #[inline]
    fn next_packet_id(&mut self) -> Option<PacketId> {
        let next = self.last_packet_id.checked_add(1).unwrap_or(1).max(1);
        // Ids are handed out in sequence and `outgoing` is in send order, so the ids in
        // flight lie in the circular range [front, last]: `next` is in use only when that
        // range already wraps all the way round to it.
        if self
            .outgoing
            .front()
            .is_some_and(|o| o.packet_id.get() == next)
        {
            return None;
        }
        self.last_packet_id = next;
        PacketId::new(next)
    }

    /// QoS 1/2 deliveries in flight.
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.outgoing.len()
    }

    // ----- the queue -----

    /// Queue `delivery` under `policy` (see [`QueuePolicy::push`]).
    #[inline]
    pub fn enqueue(
        &mut self,
        delivery: Delivery,
        policy: &QueuePolicy,
        online: bool,
    ) -> (EnqueueOutcome, Evicted) {
        policy.push(&mut self.queue, delivery, online)
    }

    /// The deliveries not yet sent.
    #[inline]
    pub fn queued(&self) -> &DeliveryQueue {
        &self.queue
    }

    /// Change the newest queued delivery in place (its journal seq).
    pub fn update_newest<R>(&mut self, f: impl FnOnce(&mut Delivery) -> R) -> Option<R> {
        self.queue.update_back(f)
    }

    /// Change every queued delivery in place (journal seqs).
    pub fn update_queued(&mut self, f: impl FnMut(&mut Delivery)) {
        self.queue.update_all(f)
    }

    // ----- whole-session changes -----

    /// Keep the queued deliveries `keep` accepts and the in-flight ones `keep_in_flight`
    /// accepts; the others are handed to `dropped`. Returns how many were dropped.
    pub fn retain(
        &mut self,
        mut keep: impl FnMut(&Delivery) -> bool,
        mut keep_in_flight: impl FnMut(&Outgoing) -> bool,
        mut dropped: impl FnMut(&Delivery),
    ) -> usize {
        let before = self.queue.len() + self.outgoing.len();
        self.queue.retain(|d| {
            let kept = keep(d);
            if !kept {
                dropped(d);
            }
            kept
        });
        self.outgoing.retain(|o| {
            let kept = keep_in_flight(o);
            if !kept {
                dropped(&o.delivery);
            }
            kept
        });
        before - self.queue.len() - self.outgoing.len()
    }

    /// The session ended: nothing more is sent.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.outgoing.clear();
    }

    /// Restoring from the journal: a delivery queued, not yet sent.
    pub fn restore_queued(&mut self, delivery: Delivery) {
        self.queue.push_back(delivery);
    }

    /// Restoring from the journal: a delivery in flight, in send order. Packet ids then
    /// continue after the last one restored.
    pub fn restore_in_flight(&mut self, packet_id: PacketId, stage: Stage, delivery: Delivery) {
        self.last_packet_id = packet_id.get();
        self.outgoing.push_back(Outgoing {
            packet_id,
            stage,
            delivery,
        });
    }

    /// Restoring from the journal: the client's unreleased QoS 2 ids.
    pub fn restore_unreleased(&mut self, ids: impl IntoIterator<Item = u16>) {
        self.incoming_qos2 = ids.into_iter().collect();
    }

    /// Check the invariants of the module documentation; `receive_maximum` is the largest
    /// Receive Maximum the client has had. For the tests and the fuzz target.
    pub fn check(&self, policy: &QueuePolicy, receive_maximum: usize) -> Result<(), String> {
        let mut ids = BTreeSet::new();
        for o in &self.outgoing {
            if !ids.insert(o.packet_id.get()) {
                return Err(format!("packet id {} in flight twice", o.packet_id.get()));
            }
            if o.delivery.qos == QoS::AtMostOnce {
                return Err("a QoS 0 delivery in flight".into());
            }
        }
        if self.outgoing.len() > receive_maximum {
            return Err(format!(
                "{} in flight past the Receive Maximum {receive_maximum}",
                self.outgoing.len()
            ));
        }
        let bytes: usize = self.queue.iter().map(super::queue::delivery_bytes).sum();
        if bytes != self.queue.bytes() {
            return Err(format!(
                "queue bytes {} counted as {}",
                bytes,
                self.queue.bytes()
            ));
        }
        let max_len = policy.length.saturating_mul(ONLINE_CEILING).max(1);
        if self.queue.len() > max_len {
            return Err(format!("{} queued past {max_len}", self.queue.len()));
        }
        let max_bytes = policy.max_bytes.saturating_mul(ONLINE_CEILING);
        if self.queue.len() > 1 && self.queue.bytes() > max_bytes {
            return Err(format!(
                "{} bytes queued past {max_bytes}",
                self.queue.bytes()
            ));
        }
        if self.incoming_qos2.contains(&0) {
            return Err("packet id 0 unreleased".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use gatehouse_protocol::{PacketId, PublishProperties, QoS, ReasonCode};

    use super::*;
    use crate::message::Message;

    fn delivery(topic: &str, qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: topic.into(),
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

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    const POLICY: QueuePolicy = QueuePolicy {
        length: 4,
        max_bytes: usize::MAX,
        drop_oldest: false,
    };

    const V5: InboundWindow = InboundWindow {
        maximum: 2,
        held_pubacks: Some(0),
    };

    /// Queue `topics` at `qos`, as the router would for a connected session.
    #[inline]
    fn queued(topics: &[&str], qos: QoS) -> QosState {
        let mut st = QosState::default();
        for t in topics {
            assert!(st.enqueue(delivery(t, qos), &POLICY, true).0.queued());
        }
        st
    }

    /// Take the next delivery, expecting a PUBLISH; returns its topic and packet id.
    fn send(st: &mut QosState, window: usize) -> (String, Option<PacketId>) {
        match st.next_delivery(window, Instant::now()) {
            Next::Publish {
                delivery,
                packet_id,
                ..
            } => {
                let topic = delivery.message.topic.clone();
                st.sent(packet_id);
                (topic, packet_id)
            }
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn packet_ids_wrap_past_65535_and_skip_zero() {
        let mut st = QosState {
            last_packet_id: u16::MAX - 1,
            ..Default::default()
        };
        assert_eq!(st.next_packet_id().map(|p| p.get()), Some(u16::MAX));
        assert_eq!(st.next_packet_id().map(|p| p.get()), Some(1));
    }

    #[test]
    fn a_packet_id_in_flight_is_not_handed_out_again() {
        let mut st = queued(&["a", "b"], QoS::AtLeastOnce);
        let (_, first) = send(&mut st, 10);
        let first = first.unwrap();
        // Pretend every other id was handed out since: the next one would be `first`.
        st.last_packet_id = u16::MAX;
        assert!(matches!(
            st.next_delivery(10, Instant::now()),
            Next::Blocked
        ));
        assert_eq!(st.queued().len(), 1, "the delivery waits in the queue");
        // Once acknowledged, the id is free again.
        assert!(matches!(st.on_puback(first), Changed::Done(_)));
        assert_eq!(send(&mut st, 10).1, Some(first));
    }

    #[test]
    fn ids_are_handed_out_in_sequence_and_reused_only_after_wrapping() {
        let mut st = queued(&["a", "b", "c"], QoS::AtLeastOnce);
        let ids: Vec<u16> = (0..3).map(|_| send(&mut st, 10).1.unwrap().get()).collect();
        assert_eq!(ids, [1, 2, 3]);
        st.on_puback(id(2));
        st.enqueue(delivery("d", QoS::AtLeastOnce), &POLICY, true);
        assert_eq!(
            send(&mut st, 10).1,
            Some(id(4)),
            "2 is free but not reused yet"
        );
    }

    #[test]
    fn qos1_outgoing_flow_ends_at_puback() {
        let mut st = queued(&["a"], QoS::AtLeastOnce);
        let (_, pid) = send(&mut st, 10);
        let pid = pid.unwrap();
        assert_eq!(st.in_flight(), 1);
        // An unknown id changes nothing.
        assert!(matches!(st.on_puback(id(99)), Changed::Nothing));
        match st.on_puback(pid) {
            Changed::Done(d) => assert_eq!(d.message.topic, "a"),
            other => panic!("{other:?}"),
        }
        assert_eq!(st.in_flight(), 0);
        assert!(
            matches!(st.on_puback(pid), Changed::Nothing),
            "a second PUBACK"
        );
    }

    #[test]
    fn qos2_outgoing_flow_pubrec_pubrel_pubcomp() {
        let mut st = queued(&["a"], QoS::ExactlyOnce);
        let pid = send(&mut st, 10).1.unwrap();
        // PUBCOMP before PUBREC is ignored.
        assert!(matches!(st.on_pubcomp(pid), Changed::Nothing));
        let (reply, changed) = st.on_pubrec(pid, ReasonCode::SUCCESS);
        assert_eq!(reply, Reply::PubRel(pid, ReasonCode::SUCCESS));
        assert!(matches!(changed, Changed::Staged(o) if o.stage == Stage::AwaitPubComp));
        // A PUBREC for an id not in flight: PUBREL 0x92.
        assert_eq!(
            st.on_pubrec(id(99), ReasonCode::SUCCESS).0,
            Reply::PubRel(id(99), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        );
        assert!(matches!(st.on_pubcomp(pid), Changed::Done(_)));
        assert_eq!(st.in_flight(), 0);
    }

    #[test]
    fn an_error_pubrec_ends_the_qos2_exchange_without_pubrel() {
        let mut st = queued(&["a"], QoS::ExactlyOnce);
        let pid = send(&mut st, 10).1.unwrap();
        let (reply, changed) = st.on_pubrec(pid, ReasonCode::UNSPECIFIED_ERROR);
        assert_eq!(reply, Reply::Nothing);
        assert!(matches!(changed, Changed::Done(_)));
        assert_eq!(st.in_flight(), 0);
    }

    #[test]
    fn qos1_incoming_is_routed_every_time() {
        let mut st = QosState::default();
        for _ in 0..2 {
            assert_eq!(
                st.on_publish_in(QoS::AtLeastOnce, id(1), V5),
                PublishIn::Route
            );
        }
        assert_eq!(st.unreleased(), 0);
    }

    #[test]
    fn qos2_incoming_flow_and_a_duplicate_is_not_routed_twice() {
        let mut st = QosState::default();
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(7), V5),
            PublishIn::Route
        );
        // The retransmission (DUP) before PUBREL: acknowledged again, not routed.
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(7), V5),
            PublishIn::Duplicate
        );
        assert_eq!(st.unreleased(), 1);
        assert_eq!(
            st.on_pubrel(id(7)),
            Reply::PubComp(id(7), ReasonCode::SUCCESS)
        );
        assert_eq!(
            st.on_pubrel(id(7)),
            Reply::PubComp(id(7), ReasonCode::PACKET_IDENTIFIER_NOT_FOUND)
        );
        // Released: the id may carry a new message now.
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(7), V5),
            PublishIn::Route
        );
    }

    #[test]
    fn a_refused_qos2_publish_is_forgotten() {
        let mut st = QosState::default();
        st.on_publish_in(QoS::ExactlyOnce, id(3), V5);
        assert!(st.on_publish_in_refused(id(3)));
        assert!(!st.on_publish_in_refused(id(3)));
        assert_eq!(st.unreleased(), 0);
    }

    #[test]
    fn our_receive_maximum_counts_held_pubacks_and_unreleased_qos2() {
        let mut st = QosState::default();
        // One PUBACK held, one QoS 2 unreleased: the window of 2 is full.
        let held_one = InboundWindow {
            maximum: 2,
            held_pubacks: Some(1),
        };
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(1), held_one),
            PublishIn::Route
        );
        assert_eq!(
            st.on_publish_in(QoS::AtLeastOnce, id(2), held_one),
            PublishIn::ReceiveMaximumExceeded
        );
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(3), held_one),
            PublishIn::ReceiveMaximumExceeded
        );
        // A duplicate is not a new PUBLISH: still answered.
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(1), held_one),
            PublishIn::Duplicate
        );
        // QoS 0 is never counted.
        assert_eq!(
            st.on_publish_in(QoS::AtMostOnce, id(9), held_one),
            PublishIn::Route
        );
        // 3.1.1: QoS 1 is not checked; unreleased QoS 2 alone counts.
        let v311 = InboundWindow {
            maximum: 2,
            held_pubacks: None,
        };
        assert_eq!(
            st.on_publish_in(QoS::AtLeastOnce, id(2), v311),
            PublishIn::Route
        );
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(3), v311),
            PublishIn::Route
        );
        assert_eq!(
            st.on_publish_in(QoS::ExactlyOnce, id(4), v311),
            PublishIn::ReceiveMaximumExceeded
        );
    }

    #[test]
    fn the_clients_receive_maximum_bounds_what_is_in_flight_but_not_qos0() {
        let mut st = queued(&["a", "b"], QoS::AtLeastOnce);
        send(&mut st, 1);
        assert!(matches!(st.next_delivery(1, Instant::now()), Next::Blocked));
        st.enqueue(delivery("a", QoS::AtLeastOnce), &POLICY, true);
        // QoS 0 behind a blocked QoS 1 waits its turn (order is kept).
        st.enqueue(delivery("zero", QoS::AtMostOnce), &POLICY, true);
        assert!(matches!(st.next_delivery(1, Instant::now()), Next::Blocked));
        st.on_puback(id(1));
        assert_eq!(send(&mut st, 1).0, "b");
        // A QoS 0 at the front goes even with the window full.
        let mut st = queued(&["q1"], QoS::AtLeastOnce);
        send(&mut st, 1);
        st.enqueue(delivery("zero", QoS::AtMostOnce), &POLICY, true);
        assert_eq!(send(&mut st, 1), ("zero".to_owned(), None));
        st.check(&POLICY, 1).unwrap();
    }

    #[test]
    fn queue_bounds_and_qos0_shedding() {
        let mut st = QosState::default();
        // Offline: QoS 0 is not kept; QoS 1 up to the length.
        assert_eq!(
            st.enqueue(delivery("0", QoS::AtMostOnce), &POLICY, false).0,
            EnqueueOutcome::Dropped
        );
        for t in ["a", "b", "c", "d"] {
            assert!(st
                .enqueue(delivery(t, QoS::AtLeastOnce), &POLICY, false)
                .0
                .queued());
        }
        assert_eq!(
            st.enqueue(delivery("e", QoS::AtLeastOnce), &POLICY, false)
                .0,
            EnqueueOutcome::Dropped
        );
        // Online: QoS 0 is shed at the length, QoS 1/2 go on to the ceiling.
        assert_eq!(
            st.enqueue(delivery("0", QoS::AtMostOnce), &POLICY, true).0,
            EnqueueOutcome::Dropped
        );
        for t in ["e", "f", "g", "h"] {
            assert!(st
                .enqueue(delivery(t, QoS::ExactlyOnce), &POLICY, true)
                .0
                .queued());
        }
        assert_eq!(
            st.enqueue(delivery("i", QoS::ExactlyOnce), &POLICY, true).0,
            EnqueueOutcome::Dropped
        );
        assert_eq!(st.queued().len(), POLICY.length * ONLINE_CEILING);
        st.check(&POLICY, 10).unwrap();
    }

    #[test]
    fn an_expired_message_is_not_sent() {
        let mut st = QosState::default();
        let mut d = delivery("old", QoS::AtLeastOnce);
        let now = Instant::now();
        d.message = Arc::new(Message {
            topic: "old".into(),
            payload: Bytes::new(),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: Some(now + Duration::from_secs(1)),
            origin: None,
        });
        st.enqueue(d, &POLICY, true);
        match st.next_delivery(10, now + Duration::from_secs(2)) {
            Next::Expired(d) => assert_eq!(d.message.topic, "old"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(st.next_delivery(10, now), Next::Empty));
        assert_eq!(st.in_flight(), 0, "no packet id was spent on it");
    }

    #[test]
    fn resume_resends_publish_with_its_id_or_pubrel_after_pubrec() {
        let mut st = queued(&["one", "two"], QoS::ExactlyOnce);
        st.enqueue(delivery("three", QoS::AtLeastOnce), &POLICY, true);
        let ids: Vec<PacketId> = (0..3).map(|_| send(&mut st, 10).1.unwrap()).collect();
        st.on_pubrec(ids[0], ReasonCode::SUCCESS);
        // The connection drops; the client reconnects and the session resumes.
        let resent: Vec<String> = st
            .resume(Instant::now())
            .map(|r| match r {
                Resend::PubRel(pid) => format!("PUBREL {}", pid.get()),
                Resend::Publish {
                    delivery,
                    packet_id,
                    ..
                } => format!("PUBLISH {} {}", packet_id.get(), delivery.message.topic),
            })
            .collect();
        assert_eq!(resent, ["PUBREL 1", "PUBLISH 2 two", "PUBLISH 3 three"]);
        // Resuming changes nothing: the same ids are acknowledged afterwards.
        assert_eq!(st.in_flight(), 3);
        assert!(matches!(st.on_pubcomp(ids[0]), Changed::Done(_)));
        assert!(matches!(
            st.on_pubrec(ids[1], ReasonCode::SUCCESS).1,
            Changed::Staged(_)
        ));
        assert!(matches!(st.on_puback(ids[2]), Changed::Done(_)));
    }

    #[test]
    fn restored_flights_resume_and_ids_continue_after_them() {
        let mut st = QosState::default();
        st.restore_in_flight(id(40), Stage::AwaitPubRec, delivery("a", QoS::ExactlyOnce));
        st.restore_in_flight(id(41), Stage::AwaitPubComp, delivery("b", QoS::ExactlyOnce));
        st.restore_queued(delivery("c", QoS::AtLeastOnce));
        st.restore_unreleased([5, 6]);
        assert_eq!(st.unreleased(), 2);
        assert_eq!(
            st.on_publish_in(
                QoS::ExactlyOnce,
                id(5),
                InboundWindow {
                    maximum: 10,
                    held_pubacks: Some(0)
                }
            ),
            PublishIn::Duplicate,
            "a QoS 2 PUBLISH routed before the restart is not routed again"
        );
        let kinds: Vec<bool> = st
            .resume(Instant::now())
            .map(|r| matches!(r, Resend::PubRel(_)))
            .collect();
        assert_eq!(kinds, [false, true]);
        assert_eq!(send(&mut st, 10).1, Some(id(42)));
    }
}
