//! Acknowledgements held back while a subscriber is congested.
//!
//! A QoS 1/2 PUBLISH that reached a congested session gets its PUBACK/PUBREC only once
//! that session drains (or goes offline, or counts as stuck after [`HOLD_LIMIT`]). The client's own
//! Receive Maximum then stops it from sending more, so a slow consumer slows its
//! publishers instead of losing acknowledged messages. Acknowledgements leave in the
//! order the PUBLISH packets arrived (MQTT 5 §4.6), so one held ack holds those behind it.
//!
//! The queue is bounded by the Receive Maximum we advertise (`maxReceiveMaximum`): a held
//! PUBACK is a QoS 1 PUBLISH the client has not had acknowledged, so a v5 client with more
//! of those (plus unreleased QoS 2) than our Receive Maximum gets DISCONNECT 0x93 (MQTT 5
//! §3.3.4); a 3.1.1 client, which was never told a limit, is simply not read while the
//! queue is that long (see `Connection::inbound_window_full`).

use std::collections::VecDeque;
use std::sync::Arc;

use gatehouse_protocol::{PacketId, QoS, ReasonCode};
use smallvec::SmallVec;
use tokio::time::Instant;

use crate::routing::{ClusterLink, Durable, Settled};
use crate::session::Session;
#[cfg(doc)]
use crate::session::HOLD_LIMIT;

pub(super) struct HeldAck {
    pub qos: QoS,
    pub packet_id: PacketId,
    pub reason: ReasonCode,
    pub waits: SmallVec<[Arc<Session>; 1]>,
    pub until: Instant,
    /// The message reached a persisted queue or set a persisted retained message: the
    /// acknowledgement waits until each of these changes has settled (the journal has it
    /// on disk, however long that takes; in cluster mode the retained bucket has stored
    /// it, for at most its `wait_limit`).
    pub durable: SmallVec<[Durable; 1]>,
    /// The earliest `wait_limit` of `durable`: past it the acknowledgement goes, saying
    /// the change failed where the protocol can ([`HeldAck::kept`]).
    pub durable_until: Option<Instant>,
    /// Cluster mode: the acknowledgement waits until the message has been written to the
    /// NATS connection (`ClusterLink::is_forwarded`), however long NATS takes.
    pub forwarded: Option<(Arc<dyn ClusterLink>, u64)>,
}

impl HeldAck {
    /// Whether every change it waited for was kept (false: one failed, or had not
    /// settled by `durable_until`). Meaningful once popped.
    pub fn kept(&self) -> bool {
        self.durable.iter().all(|d| d.settled() == Settled::Kept)
    }

    fn ready(&self, now: Instant) -> bool {
        (now >= self.until || self.waits.iter().all(|s| !s.is_holding()))
            && (self.durable.iter().all(|d| d.settled() != Settled::Pending)
                || self.durable_until.is_some_and(|at| now >= at))
            && self
                .forwarded
                .as_ref()
                .is_none_or(|(link, t)| link.is_forwarded(*t))
    }
}

#[derive(Default)]
pub(super) struct HeldAcks {
    queue: VecDeque<HeldAck>,
    /// How many entries are QoS 1 (PUBACK): the QoS 1 PUBLISHes not yet acknowledged.
    qos1: usize,
}

impl HeldAcks {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Acknowledgements held now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Held PUBACKs: QoS 1 PUBLISHes the client is still waiting to have acknowledged.
    pub fn qos1(&self) -> usize {
        self.qos1
    }

    pub fn push(&mut self, ack: HeldAck) {
        if ack.qos == QoS::AtLeastOnce {
            self.qos1 += 1;
        }
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
                let ack = self.queue.pop_front()?;
                if ack.qos == QoS::AtLeastOnce {
                    self.qos1 -= 1;
                }
                Some(ack)
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
        let durable: SmallVec<[_; 1]> = front
            .durable
            .iter()
            .map(|d| d.source.wait_settled(d.ticket))
            .collect();
        let durable_until = front.durable_until;
        let forwarded = front
            .forwarded
            .as_ref()
            .map(|(link, t)| link.wait_forwarded(*t));
        Some(async move {
            let drained = async {
                for s in &waits {
                    s.wait_drained().await;
                }
            };
            let _ = tokio::time::timeout_at(until, drained).await;
            let settled = async {
                for d in durable {
                    d.await;
                }
            };
            match durable_until {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, settled).await;
                }
                None => settled.await,
            }
            if let Some(forwarded) = forwarded {
                forwarded.await;
            }
        })
    }
}
