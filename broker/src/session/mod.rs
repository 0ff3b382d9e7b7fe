//! Sessions: the state that outlives a network connection (MQTT 5 §4.1).
//!
//! A [`Session`] is shared between the router (which appends deliveries to its queue)
//! and at most one connection task at a time (which drains the queue within the
//! client's Receive Maximum and tracks in-flight packets). The state sits behind one
//! short-held mutex; the connection is woken through `wake`.

pub mod journal;
mod persist;
mod queue;
pub mod will;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gatehouse_protocol::{PacketId, QoS, ReasonCode, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify};

use crate::message::{Delivery, SessionKey};
use crate::session::journal::{Journal, Selected};
pub use queue::{delivery_bytes, DeliveryQueue, EnqueueOutcome, QueuePolicy};

/// How long a congested session may hold its publishers back. A consumer that has not
/// drained by then counts as stuck: its queue overflows under the configured strategy
/// instead, so one stuck client cannot stall every publisher that reaches it.
pub const HOLD_LIMIT: Duration = Duration::from_secs(5);
const HOLD_LIMIT_MS: u64 = HOLD_LIMIT.as_millis() as u64;

/// How long a congested session may pause the QoS 0 publishers that reach it (they stop
/// being read). Short, because nothing is lost without the pause but messages for this
/// subscriber: it covers a subscriber that is merely waiting for its turn on a worker
/// (it drains to half within microseconds to milliseconds), and stops covering one that
/// stays slow, whose QoS 0 messages are then dropped as before.
pub const QOS0_HOLD_LIMIT: Duration = Duration::from_millis(200);
const QOS0_HOLD_LIMIT_MS: u64 = QOS0_HOLD_LIMIT.as_millis() as u64;

/// How long publishers at `qos` may be held back by one congested session.
fn hold_limit_ms(qos: QoS) -> u64 {
    match qos {
        QoS::AtMostOnce => QOS0_HOLD_LIMIT_MS,
        _ => HOLD_LIMIT_MS,
    }
}

/// Milliseconds since the first call, plus one (so 0 can mean "never").
fn epoch_millis() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// What [`Session::enqueue`] did.
#[derive(Debug, Clone, Copy)]
pub struct Enqueued {
    pub outcome: EnqueueOutcome,
    /// Deliveries dropped to make room (`DropOldest`), for the metrics.
    pub evicted: usize,
    pub congested: bool,
    /// The journal ticket of the persisted copy: acknowledge the publisher only once it
    /// is durable.
    pub ticket: Option<u64>,
}

/// Wakes the connection attached to a session: a flag and that connection task's waker.
///
/// Smaller than a `Notify` and, above all, than the `Notified` future a `Notify` needs in
/// every connection's task while it waits (64 bytes each): the serve loop polls this
/// directly. One task polls it at a time (the attached connection; a taken-over one has
/// released the session before its successor serves).
#[derive(Debug, Default)]
pub struct WakeSignal {
    woken: AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl WakeSignal {
    /// Wake the connection (or, if none is waiting, have its next poll return at once).
    ///
    /// Called for every copy queued (millions a second in a fan-out), so a signal still
    /// pending costs one load: its connection was woken when it was set, or is polling
    /// and looks again after registering.
    pub fn notify(&self) {
        if self.woken.load(Ordering::Acquire) {
            return;
        }
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Ready once per [`WakeSignal::notify`] since the last Ready; otherwise registers
    /// the task to be woken. Registering before the second look means a notify between
    /// the two is not missed.
    pub fn poll(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }
}

pub struct Session {
    pub key: SessionKey,
    pub client_id: Arc<str>,
    /// Mirrors `state.attachment.is_some()` so shared-subscription picking can prefer
    /// connected members without taking every member's lock.
    online: AtomicBool,
    state: Mutex<SessionState>,
    /// Wakes the attached connection when deliveries are queued.
    pub wake: WakeSignal,
    /// When the queue of this connected session reached the policy length (milliseconds
    /// since [`epoch`], plus one; 0 = not congested). Publishers routing QoS 1/2 here hold
    /// their acknowledgements until it clears, for at most [`HOLD_LIMIT`] from then.
    congested_since: AtomicU64,
    /// Wakes those publishers when the session drains or goes offline.
    drained: Notify,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

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

#[derive(Debug)]
pub struct Outgoing {
    pub packet_id: PacketId,
    pub stage: Stage,
    pub delivery: Delivery,
}

/// A subscription as the session remembers it (the index holds the routing copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRecord {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// A will waiting out its Will Delay Interval; `generation` ties it to the connection
/// that left it, so a resumed session cancels it.
#[derive(Debug)]
pub struct PendingWill {
    pub will: will::WillMessage,
    pub generation: u64,
}

/// Who a session belongs to. A CONNECT that would resume it under another identity
/// starts a new session instead (Session Present 0): what the first identity was granted
/// (its subscriptions, its queued messages) must not pass to another one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Owner {
    /// Restored from a journal record written before owners were kept (or naming a method
    /// this build does not know): the first CONNECT resumes it, and everything in it is
    /// re-checked against that principal.
    #[default]
    Unknown,
    /// Connected on a port without authentication.
    Anonymous,
    /// Boxed: forty-odd bytes that anonymous sessions would otherwise carry too.
    Principal(Box<crate::auth::Identity>),
}

impl Owner {
    /// Whether a connection owned by `other` may resume a session owned by `self`.
    pub fn admits(&self, other: &Owner) -> bool {
        matches!(self, Owner::Unknown) || self == other
    }
}

/// The link between a session and the connection task currently attached to it.
/// Taking over a session sends on `kick` and waits for `released` to close.
#[derive(Debug)]
pub struct Attachment {
    pub kick: oneshot::Sender<ReasonCode>,
    pub released: oneshot::Receiver<()>,
}

#[derive(Debug, Default)]
pub struct SessionState {
    /// Deliveries not yet sent, oldest first, with their bytes. Bounded by the queue
    /// policy (length and bytes).
    pub queue: DeliveryQueue,
    /// Sent QoS 1/2 messages awaiting acknowledgement, in send order (which is also
    /// packet-id order modulo wrap-around, the invariant `next_packet_id` relies on).
    pub outgoing: VecDeque<Outgoing>,
    /// Incoming QoS 2 packet ids for which PUBREC was sent and PUBREL not yet received.
    /// B-tree collections here: empty, they take half the room of hash tables in every
    /// session, and they stay small (bounded by Receive Maximum and the subscription
    /// limit).
    pub incoming_qos2: BTreeSet<u16>,
    pub subscriptions: BTreeMap<String, SubscriptionRecord>,
    pub attachment: Option<Attachment>,
    /// The identity of the principal that attached last.
    pub owner: Owner,
    /// Bumped at every attach; timers for expiry and will delay compare it.
    pub generation: u64,
    pub expiry_interval: u32,
    /// Boxed: a will is a few hundred bytes that most sessions never hold.
    pub pending_will: Option<Box<PendingWill>>,
    /// Set when the session has been removed from the registry; late deliveries and
    /// timers check it.
    pub ended: bool,
    /// Answers to recent state store requests, for retransmissions (statestore.md §6.6).
    pub state_store_replies: crate::statestore::replay::ReplyCache,
    /// Set when this session persists (`persistence.subscriberQueue`): its journal and what
    /// of it persists.
    pub journal: Option<(Journal, Selected)>,
    /// The seq of the next persisted message (records keep queue order).
    pub next_seq: u64,
    last_packet_id: u16,
}

impl SessionState {
    /// The next free packet id for a server→client QoS 1/2 PUBLISH, or `None` when all
    /// 65535 are in flight.
    pub fn next_packet_id(&mut self) -> Option<PacketId> {
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

    /// Continue packet ids after `id` (sessions restored from the journal).
    pub fn set_last_packet_id(&mut self, id: u16) {
        self.last_packet_id = id;
    }

    /// Remove the in-flight entry for `id` (acks usually arrive in order: search from the front).
    pub fn take_outgoing(&mut self, id: PacketId) -> Option<Outgoing> {
        let pos = self.outgoing.iter().position(|o| o.packet_id == id)?;
        self.outgoing.remove(pos)
    }
}

impl Session {
    pub fn new(key: SessionKey, client_id: Arc<str>) -> Self {
        Session {
            key,
            client_id,
            online: AtomicBool::new(false),
            state: Mutex::new(SessionState::default()),
            wake: WakeSignal::default(),
            congested_since: AtomicU64::new(0),
            drained: Notify::new(),
        }
    }

    pub fn lock(&self) -> parking_lot::MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
        if !online {
            // Nobody drains an offline session: publishers must not wait for it.
            self.clear_congestion();
        }
    }

    /// Queue a delivery under `policy`, waking the connection if one is attached.
    /// `congested` is true when the publisher should wait until
    /// [`wait_drained`](Self::wait_drained) returns: hold its acknowledgement (QoS 1/2),
    /// or stop reading its client (QoS 0).
    pub fn enqueue(&self, delivery: Delivery, policy: &QueuePolicy) -> Enqueued {
        let online = self.is_online();
        let qos = delivery.qos;
        let outcome = {
            let mut st = self.state.lock();
            if st.ended {
                return Enqueued {
                    outcome: EnqueueOutcome::Dropped,
                    evicted: 0,
                    congested: false,
                    ticket: None,
                };
            }
            let mut delivery = delivery;
            let persist = match &st.journal {
                Some((j, selected)) => {
                    qos != QoS::AtMostOnce && j.message_wanted(*selected, &delivery.message.topic)
                }
                None => false,
            };
            if persist {
                delivery.seq = Some(st.next_seq);
                st.next_seq += 1;
            }
            let (outcome, dropped) = policy.push(&mut st.queue, delivery, online);
            let evicted = dropped.len();
            let ticket = self.journal_enqueued(&mut st, outcome, dropped);
            // At either bound (length or bytes) the session is congested.
            let congested =
                online && policy.congests(&st.queue) && self.mark_congested() < hold_limit_ms(qos);
            (outcome, evicted, congested, ticket)
        };
        let (outcome, evicted, congested, ticket) = outcome;
        if online && outcome.queued() {
            self.wake.notify();
        }
        Enqueued {
            outcome,
            evicted,
            congested,
            ticket,
        }
    }

    /// Note that the queue is at its limit; how long (ms) it has been congested.
    fn mark_congested(&self) -> u64 {
        let now = epoch_millis();
        let since = match self.congested_since.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => now,
            Err(since) => since,
        };
        now.saturating_sub(since)
    }

    /// Whether publishers should hold their acknowledgements for this session: it is
    /// congested, and not for so long that it counts as stuck.
    pub fn is_holding(&self) -> bool {
        self.is_holding_at(QoS::AtLeastOnce)
    }

    /// [`is_holding`](Self::is_holding) for publishers at `qos` (QoS 0 ones are held for
    /// [`QOS0_HOLD_LIMIT`] only).
    pub fn is_holding_at(&self, qos: QoS) -> bool {
        let since = self.congested_since.load(Ordering::Relaxed);
        since != 0 && epoch_millis().saturating_sub(since) < hold_limit_ms(qos)
    }

    /// Called by the attached connection after it took deliveries off the queue: clears
    /// congestion once the queue is back to half of both bounds ([`QueuePolicy::drained`]).
    pub fn note_drained(&self, queue: &DeliveryQueue, policy: &QueuePolicy) {
        if policy.drained(queue) && self.congested_since.load(Ordering::Relaxed) != 0 {
            self.clear_congestion();
        }
    }

    fn clear_congestion(&self) {
        if self.congested_since.swap(0, Ordering::Relaxed) != 0 {
            self.drained.notify_waiters();
        }
    }

    /// Resolves once publishers need no longer wait for this session (drained, offline,
    /// or congested past [`HOLD_LIMIT`]).
    pub async fn wait_drained(&self) {
        self.wait_drained_at(QoS::AtLeastOnce).await
    }

    /// [`wait_drained`](Self::wait_drained) for publishers at `qos`.
    pub async fn wait_drained_at(&self, qos: QoS) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Register before checking, so a clear between the check and the await
            // is not missed.
            notified.as_mut().enable();
            if !self.is_holding_at(qos) {
                return;
            }
            let since = self.congested_since.load(Ordering::Relaxed);
            let stuck_at = since.saturating_add(hold_limit_ms(qos));
            let left = Duration::from_millis(stuck_at.saturating_sub(epoch_millis()));
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use gatehouse_protocol::{PublishProperties, QoS};

    use super::*;
    use crate::message::Message;

    fn outgoing(id: PacketId) -> Outgoing {
        Outgoing {
            packet_id: id,
            stage: Stage::AwaitPubAck,
            delivery: Delivery {
                message: Arc::new(Message {
                    topic: "t".into(),
                    payload: Bytes::new(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    properties: PublishProperties::default(),
                    expires_at: None,
                    origin: None,
                }),
                qos: QoS::AtLeastOnce,
                retain: false,
                subscription_ids: Default::default(),
                seq: None,
            },
        }
    }

    #[test]
    fn packet_ids_wrap_past_65535_and_skip_zero() {
        let mut st = SessionState {
            last_packet_id: u16::MAX - 1,
            ..Default::default()
        };
        assert_eq!(st.next_packet_id().map(|p| p.get()), Some(u16::MAX));
        assert_eq!(st.next_packet_id().map(|p| p.get()), Some(1));
    }

    #[test]
    fn packet_id_still_in_flight_is_not_reused() {
        let mut st = SessionState::default();
        let first = st.next_packet_id().unwrap();
        st.outgoing.push_back(outgoing(first));
        // Pretend every other id was handed out since: the next one would be `first`.
        st.last_packet_id = u16::MAX;
        assert_eq!(st.next_packet_id(), None);
        assert!(st.take_outgoing(first).is_some());
        assert_eq!(st.next_packet_id(), Some(first));
    }
}
