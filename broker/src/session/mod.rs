//! Sessions: the state that outlives a network connection (MQTT 5 §4.1).
//!
//! A [`Session`] is shared between the router (which appends deliveries to its queue)
//! and at most one connection task at a time (which drains the queue within the
//! client's Receive Maximum and tracks in-flight packets). The state sits behind one
//! short-held mutex; the connection is woken through `wake`.

mod backpressure;
pub mod invariants;
pub mod journal;
pub mod machine;
mod queue;
pub mod will;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gatehouse_protocol::{PacketId, QoS, ReasonCode, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::message::{Delivery, SessionKey};
pub use backpressure::{
    congests, drained, inbound_window_full, Congestion, HOLD_LIMIT, QOS0_HOLD_LIMIT,
};
pub use machine::{
    Changed, InboundWindow, Next, Outgoing, PublishIn, QosState, Reply, Resend, Stage,
};
pub use queue::{delivery_bytes, DeliveryQueue, EnqueueOutcome, QueuePolicy};

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
    /// Whether this session holds its publishers back (see [`backpressure`]).
    congestion: Congestion,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("key", &self.key)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
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

/// A session's state behind its lock. The QoS state ([`QosState`]: queue, in flight,
/// packet ids, unreleased QoS 2) is private: it changes only through the protocol events
/// below, which also keep the journal in step. The rest belongs to the registry
/// (`crate::registry`) and the connection (subscriptions, grants).
#[derive(Debug, Default)]
pub struct SessionState {
    qos: QosState,
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
    /// Set when this session persists (`persistence.subscriberQueue`): its journal, what
    /// of it persists, under which client id. Boxed: most sessions have none.
    journal: Option<Box<journal::recording::Persisted>>,
    /// The seq of the next persisted message (records keep queue order).
    next_seq: u64,
}

/// The QoS events, as the connection calls them: each is the [`QosState`] event, plus
/// what the journal records of it. They return what to send.
impl SessionState {
    /// A PUBLISH from the client (see [`QosState::on_publish_in`]).
    #[inline]
    pub fn on_publish_in(
        &mut self,
        qos: QoS,
        packet_id: PacketId,
        window: InboundWindow,
    ) -> PublishIn {
        let step = self.qos.on_publish_in(qos, packet_id, window);
        if qos == QoS::ExactlyOnce && step == PublishIn::Route {
            self.save_meta(0);
        }
        step
    }

    /// See [`QosState::on_publish_in_dropped`].
    pub fn on_publish_in_dropped(&mut self, packet_id: PacketId) {
        self.qos.on_publish_in_dropped(packet_id);
    }

    /// See [`QosState::on_publish_in_refused`].
    pub fn on_publish_in_refused(&mut self, packet_id: PacketId) {
        if self.qos.on_publish_in_refused(packet_id) {
            self.save_meta(0);
        }
    }

    /// PUBREL from the client: the PUBCOMP to send.
    pub fn on_pubrel(&mut self, packet_id: PacketId) -> Reply {
        let reply = self.qos.on_pubrel(packet_id);
        if reply == Reply::PubComp(packet_id, ReasonCode::SUCCESS) {
            self.save_meta(0);
        }
        reply
    }

    /// PUBACK from the client.
    #[inline]
    pub fn on_puback(&mut self, packet_id: PacketId) {
        let changed = self.qos.on_puback(packet_id);
        journal::recording::record(&self.journal, changed);
    }

    /// PUBREC from the client: the PUBREL to send, if any.
    pub fn on_pubrec(&mut self, packet_id: PacketId, reason: ReasonCode) -> Reply {
        let (reply, changed) = self.qos.on_pubrec(packet_id, reason);
        journal::recording::record(&self.journal, changed);
        reply
    }

    /// PUBCOMP from the client.
    #[inline]
    pub fn on_pubcomp(&mut self, packet_id: PacketId) {
        let changed = self.qos.on_pubcomp(packet_id);
        journal::recording::record(&self.journal, changed);
    }

    /// The next delivery to send (see [`QosState::next_delivery`]); an expired one is
    /// forgotten by the journal here.
    #[inline]
    pub fn next_delivery(&mut self, receive_maximum: usize, now: Instant) -> Next<'_> {
        let next = self.qos.next_delivery(receive_maximum, now);
        if let Next::Expired(d) = &next {
            journal::recording::done(&self.journal, d);
        }
        next
    }

    /// The PUBLISH of [`Next::Publish`] was written.
    #[inline]
    pub fn sent(&mut self, packet_id: Option<PacketId>) {
        if let Some(o) = self.qos.sent(packet_id) {
            journal::recording::record(&self.journal, Changed::Staged(o));
        }
    }

    /// The PUBLISH of [`Next::Publish`] could not be written (larger than the client's
    /// Maximum Packet Size): it counts as sent, and is done with.
    #[inline]
    pub fn discarded(&mut self) {
        if let Some(d) = self.qos.discarded() {
            self.journal_done(&d);
        }
    }

    /// What to send again after the session resumed (see [`QosState::resume`]).
    pub fn resume(&self, now: Instant) -> impl Iterator<Item = Resend<'_>> + '_ {
        self.qos.resume(now)
    }

    /// The client's QoS 2 PUBLISHes not yet released.
    pub fn unreleased(&self) -> usize {
        self.qos.unreleased()
    }

    /// The deliveries not yet sent.
    #[inline]
    pub fn queued(&self) -> &DeliveryQueue {
        self.qos.queued()
    }

    /// Deliveries in flight (sent, not yet acknowledged).
    #[inline]
    pub fn in_flight(&self) -> usize {
        self.qos.in_flight()
    }

    /// Drop the waiting messages `may_receive` refuses (the principal may no longer have
    /// them); a QoS 2 message past PUBREC is kept (delivered already: only PUBREL and
    /// PUBCOMP remain, which reveal nothing). Returns how many were dropped.
    pub fn retain_messages(&mut self, may_receive: impl Fn(&Delivery) -> bool) -> usize {
        let (qos, journal) = (&mut self.qos, &self.journal);
        qos.retain(
            &may_receive,
            |o| o.stage == Stage::AwaitPubComp || may_receive(&o.delivery),
            |d| journal::recording::done(journal, d),
        )
    }

    /// Whether this session persists.
    pub fn persists(&self) -> bool {
        self.journal.is_some()
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
            congestion: Congestion::default(),
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
            self.congestion.clear();
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
            if st.message_persists(&delivery) {
                delivery.seq = Some(st.next_seq);
                st.next_seq += 1;
            }
            let (outcome, dropped) = st.qos.enqueue(delivery, policy, online);
            let evicted = dropped.len();
            let ticket = st.journal_enqueued(outcome, dropped);
            // At either bound (length or bytes) the session is congested.
            let congested =
                online && congests(policy, st.qos.queued()) && self.congestion.mark(qos);
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

    /// Whether publishers should hold their acknowledgements for this session: it is
    /// congested, and not for so long that it counts as stuck.
    pub fn is_holding(&self) -> bool {
        self.congestion.is_holding(QoS::AtLeastOnce)
    }

    /// [`is_holding`](Self::is_holding) for publishers at `qos` (QoS 0 ones are held for
    /// [`QOS0_HOLD_LIMIT`] only).
    pub fn is_holding_at(&self, qos: QoS) -> bool {
        self.congestion.is_holding(qos)
    }

    /// Called by the attached connection after it took deliveries off the queue: clears
    /// congestion once the queue is back to half of both bounds ([`drained`]).
    #[inline]
    pub fn note_drained(&self, st: &SessionState, policy: &QueuePolicy) {
        if self.congestion.is_set() && drained(policy, st.queued()) {
            self.congestion.clear();
        }
    }

    /// Resolves once publishers need no longer wait for this session (drained, offline,
    /// or congested past [`HOLD_LIMIT`]).
    pub async fn wait_drained(&self) {
        self.congestion.wait(QoS::AtLeastOnce).await
    }

    /// [`wait_drained`](Self::wait_drained) for publishers at `qos`.
    pub async fn wait_drained_at(&self, qos: QoS) {
        self.congestion.wait(qos).await
    }
}
