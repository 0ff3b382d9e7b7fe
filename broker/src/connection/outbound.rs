//! Deliveries from the session queue to the client, within its Receive Maximum,
//! Maximum Packet Size and Topic Alias Maximum, and the retained messages owed to new
//! subscriptions, fed into that queue a few at a time as it empties.

use std::time::Instant;

use gatehouse_protocol::codec::{self, PublishView};
use gatehouse_protocol::{Packet, PacketId, PubResp, ReasonCode};

use super::{Connection, DRAIN_HIGH_WATER};
use crate::message::Delivery;
use crate::routing::RetainedCursor;
use crate::session::{Next, Resend};

/// Retained messages are moved into the session queue while it holds fewer than this
/// (or than the queue length, if smaller): enough to keep the in-flight window and the
/// write buffer busy, few enough that live messages are never crowded out of the queue.
const RETAINED_BATCH: usize = 32;

/// The retained messages one SUBSCRIBE filter is still owed.
#[derive(Debug)]
pub(super) struct PendingRetained {
    /// The filter as subscribed (the session's subscription key): once the session no
    /// longer holds it (unsubscribed, or revoked), nothing more is sent for it.
    pub(super) raw: String,
    pub(super) cursor: RetainedCursor,
}

impl Connection {
    /// Move queued deliveries into the write buffer while the in-flight window and the
    /// buffer allow, topping the queue up with owed retained messages as it empties.
    pub(super) fn drain(&mut self) {
        // Each round either fills the window or buffer (and stops), or finds the queue
        // empty again, when the next feed moves a cursor on or retires it: this ends.
        loop {
            self.feed_retained();
            // While a SUBACK waits (`waiting`) the feed moves nothing on: stop, or this
            // loop would spin.
            if !self.drain_queue() || self.retained_backlog.is_empty() || self.waiting() {
                break;
            }
        }
    }

    /// Queue owed retained messages while the session queue is short (see
    /// [`RETAINED_BATCH`]). Live messages that arrive meanwhile
    /// queue behind them, so both flow at the pace of the client's Receive Maximum and the
    /// socket, and neither is dropped for the other.
    fn feed_retained(&mut self) {
        // Retained messages follow the SUBACK, which may be waiting (`waiting`).
        if self.retained_backlog.is_empty() || self.waiting() {
            return;
        }
        let router = &self.broker.router;
        let policy = router.policy();
        let target = RETAINED_BATCH.min(policy.length).max(1);
        // Likewise at most half the byte bound (`subscriberQueueLimit.maxBytes`).
        let byte_target = (policy.max_bytes / 2).max(1);
        while let Some(pending) = self.retained_backlog.front_mut() {
            let (queued, queued_bytes, subscribed) = {
                let st = self.session.lock();
                let subscribed = st.subscriptions.contains_key(&pending.raw);
                (st.queued().len(), st.queued().bytes(), subscribed)
            };
            if queued >= target || (queued > 0 && queued_bytes >= byte_target) {
                break;
            }
            let want = target - queued;
            let budget = byte_target.saturating_sub(queued_bytes);
            let (batch, done) = if subscribed {
                router.next_retained(&mut pending.cursor, want, budget, queued == 0)
            } else {
                (Vec::new(), true)
            };
            if done {
                self.retained_backlog.pop_front(); // walked to the end
            }
            for d in batch {
                router.enqueue(&self.session, d);
            }
            if !done {
                break; // the queue is full enough for now
            }
        }
    }

    /// Move queued deliveries into the write buffer while the in-flight window and the
    /// buffer allow; true when it stopped because the queue ran empty.
    fn drain_queue(&mut self) -> bool {
        let mut emptied = false;
        let session = self.session.clone();
        let mut st = session.lock();
        let now = Instant::now();
        while self.wbuf.len() < DRAIN_HIGH_WATER {
            match st.next_delivery(self.client_receive_maximum, now) {
                Next::Empty => {
                    emptied = true;
                    break;
                }
                Next::Blocked => break,
                Next::Expired(_) => self.metrics.outbound.expired.inc(),
                Next::Publish {
                    delivery,
                    packet_id,
                    expiry,
                } => {
                    if self.write_publish(delivery, packet_id, false, expiry) {
                        st.sent(packet_id);
                    } else {
                        st.discarded();
                    }
                }
            }
        }
        session.note_drained(&st, &self.broker.router.policy());
        emptied
    }

    /// After a session resumes: resend unacknowledged PUBLISHes with DUP set and PUBRELs
    /// for those already received (MQTT 5 §4.4).
    pub(super) fn resend_inflight(&mut self) {
        let session = self.session.clone();
        let st = session.lock();
        for resend in st.resume(Instant::now()) {
            match resend {
                Resend::PubRel(packet_id) => self.send(&Packet::PubRel(PubResp::new(
                    packet_id,
                    ReasonCode::SUCCESS,
                ))),
                Resend::Publish {
                    delivery,
                    packet_id,
                    expiry,
                } => {
                    self.write_publish(delivery, Some(packet_id), true, expiry);
                }
            }
        }
    }

    /// Encode one PUBLISH; `false` when it was discarded for exceeding the client's
    /// Maximum Packet Size (§3.1.2.11.4: discard and act as if sent).
    fn write_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        expiry: Option<u32>,
    ) -> bool {
        let m = &d.message;
        let (topic, alias) = self.outbound_aliases.assign(&m.topic);
        let view = PublishView {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            properties: &m.properties,
            topic_alias: alias,
            message_expiry_interval: expiry,
            subscription_identifiers: &d.subscription_ids,
            payload: &m.payload,
        };
        let before = self.wbuf.len();
        match codec::encode_publish(&view, self.version, &mut self.wbuf) {
            Ok(n) if n as u64 <= u64::from(self.client_maximum_packet_size) => {
                self.metrics.outbound.messages.inc(d.qos);
                true
            }
            Ok(_) => {
                self.metrics.outbound.too_large.inc();
                self.wbuf.truncate(before);
                if !topic.is_empty() && alias.is_some() {
                    // The client never saw this alias being set.
                    self.outbound_aliases.forget(&m.topic);
                }
                tracing::debug!(target: "conn", client_id = &*self.client_id, topic = ?m.topic, "message larger than the client's maximum packet size; discarded");
                false
            }
            Err(e) => {
                self.wbuf.truncate(before);
                if !topic.is_empty() && alias.is_some() {
                    self.outbound_aliases.forget(&m.topic);
                }
                tracing::warn!(target: "conn", client_id = &*self.client_id, "could not encode PUBLISH: {e}");
                false
            }
        }
    }
}
