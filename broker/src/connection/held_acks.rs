//! Acknowledgements held back while a subscriber is congested.
//!
//! A QoS 1/2 PUBLISH that reached a congested session gets its PUBACK/PUBREC only once
//! that session drains (or goes offline, or counts as stuck after [`HOLD_LIMIT`]). The client's own
//! Receive Maximum then stops it from sending more, so a slow consumer slows its
//! publishers instead of losing acknowledged messages. Acknowledgements leave in the
//! order the PUBLISH packets arrived (MQTT 5 §4.6), so one held ack holds those behind it.

use std::collections::VecDeque;
use std::sync::Arc;

use gatehouse_protocol::{PacketId, QoS, ReasonCode};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::persistence::journal::Journal;
use crate::session::Session;
pub(super) use crate::session::HOLD_LIMIT;

pub(super) struct HeldAck {
    pub qos: QoS,
    pub packet_id: PacketId,
    pub reason: ReasonCode,
    pub waits: SmallVec<[Arc<Session>; 1]>,
    pub until: Instant,
    /// The message reached a persisted queue (or set a persisted retained message): the
    /// acknowledgement waits until the journal has it on disk, however long that takes.
    pub durable: Option<(Journal, u64)>,
}

impl HeldAck {
    fn ready(&self, now: Instant) -> bool {
        (now >= self.until || self.waits.iter().all(|s| !s.is_holding()))
            && self.durable.as_ref().is_none_or(|(j, t)| j.is_durable(*t))
    }
}

#[derive(Default)]
pub(super) struct HeldAcks {
    queue: VecDeque<HeldAck>,
}

impl HeldAcks {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, ack: HeldAck) {
        self.queue.push_back(ack);
    }

    pub fn contains(&self, qos: QoS, packet_id: PacketId) -> bool {
        self.queue
            .iter()
            .any(|h| h.qos == qos && h.packet_id == packet_id)
    }

    /// Pop the acknowledgements at the front that may go now.
    pub fn pop_ready(&mut self) -> impl Iterator<Item = HeldAck> + '_ {
        let now = Instant::now();
        std::iter::from_fn(move || {
            if self.queue.front()?.ready(now) {
                self.queue.pop_front()
            } else {
                None
            }
        })
    }

    /// A future that resolves when the front acknowledgement may be ready; owns what it
    /// needs so it does not borrow the connection.
    pub fn front_wait(&self) -> Option<impl std::future::Future<Output = ()> + use<>> {
        let front = self.queue.front()?;
        let waits = front.waits.clone();
        let until = front.until;
        let durable = front.durable.as_ref().map(|(j, t)| j.wait_durable(*t));
        Some(async move {
            let drained = async {
                for s in &waits {
                    s.wait_drained().await;
                }
            };
            let _ = tokio::time::timeout_at(until, drained).await;
            if let Some(durable) = durable {
                durable.await;
            }
        })
    }
}
