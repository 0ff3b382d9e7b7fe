//! Backpressure: every decision about holding a publisher back for a slow subscriber, in
//! one place.
//!
//! - **When a session is congested** ([`congests`]): its queue of deliveries not yet sent
//!   is at `subscriberQueueLimit.length` or `.maxBytes`, while it is connected. It stops
//!   being congested once it has drained to half of both ([`drained`]), or goes offline
//!   (nobody drains it: publishers must not wait for it).
//! - **Who is held, for how long** ([`Congestion`]): a QoS 1/2 PUBLISH routed to a
//!   congested session gets its PUBACK/PUBREC held (the connection's `held_acks`, in
//!   PUBLISH order) until the session drains, for at most [`HOLD_LIMIT`] from the start of
//!   the congestion; the client's own Receive Maximum then stops it. A QoS 0 PUBLISH that
//!   finds a subscriber congested stops its connection from being read until that
//!   subscriber drains, for at most [`QOS0_HOLD_LIMIT`]. Past its limit the session counts
//!   as stuck and holds no one until it drains; its queue overflows under the strategy.
//! - **How far a queue may overshoot** while publishers are held: their in-flight windows
//!   add up, so a connected session takes QoS 1/2 up to `ONLINE_CEILING` × the bounds
//!   (`queue::QueuePolicy::push`); QoS 0 and offline sessions stop at the bounds.
//! - **Towards the client** (`machine::QosState::next_delivery`): its Receive Maximum of
//!   QoS 1/2 deliveries in flight; the rest waits in the queue.
//! - **From the client** (`machine::InboundWindow`): our Receive Maximum bounds its held
//!   PUBACKs plus unreleased QoS 2 (v5: DISCONNECT 0x93 past it; 3.1.1: the connection
//!   stops reading while as many acknowledgements are held, see [`inbound_window_full`]).
//!
//! The router reports the congested sessions a PUBLISH reached (`Routed::congested`,
//! from [`Congestion::mark`] at enqueue), the connection holds its publisher for them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use gatehouse_protocol::QoS;
use tokio::sync::Notify;

use super::queue::{DeliveryQueue, QueuePolicy};

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

/// Whether a connected session with this queue holds publishers back: at either bound.
#[inline]
pub fn congests(policy: &QueuePolicy, queue: &DeliveryQueue) -> bool {
    queue.len() >= policy.length || queue.bytes() >= policy.max_bytes
}

/// Whether a congested session has drained enough to release its publishers: back to
/// half of both bounds.
#[inline]
pub fn drained(policy: &QueuePolicy, queue: &DeliveryQueue) -> bool {
    queue.len() <= policy.length / 2 && queue.bytes() <= policy.max_bytes / 2
}

/// 3.1.1 has no Receive Maximum, so a 3.1.1 client cannot be told to stop: instead of
/// holding ever more acknowledgements for it, its connection stops reading it while
/// `held` acknowledgements are held, as many as our Receive Maximum (backpressure through
/// TCP, no disconnect). They are released within [`HOLD_LIMIT`] or once the journal has
/// the messages on disk.
#[inline]
pub fn inbound_window_full(v311: bool, held: usize, receive_maximum: u16) -> bool {
    v311 && held >= usize::from(receive_maximum)
}

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

/// A session's congestion as its publishers see it, outside the session lock: when it
/// began, and the wake-up of the publishers waiting for it to end.
#[derive(Debug)]
pub struct Congestion {
    /// When the queue of this connected session reached a bound (milliseconds since the
    /// first [`epoch_millis`], plus one; 0 = not congested).
    since: AtomicU64,
    /// Wakes the publishers held when the session drains or goes offline.
    drained: Notify,
}

impl Default for Congestion {
    fn default() -> Self {
        Congestion {
            since: AtomicU64::new(0),
            drained: Notify::new(),
        }
    }
}

impl Congestion {
    /// The queue is at a bound: whether a publisher at `qos` is to be held for it (not
    /// when congested past that QoS's hold limit: then it counts as stuck).
    #[inline]
    pub fn mark(&self, qos: QoS) -> bool {
        let now = epoch_millis();
        let since = match self
            .since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => now,
            Err(since) => since,
        };
        now.saturating_sub(since) < hold_limit_ms(qos)
    }

    /// Whether publishers at `qos` are still held: congested, not for so long that it
    /// counts as stuck.
    #[inline]
    pub fn is_holding(&self, qos: QoS) -> bool {
        let since = self.since.load(Ordering::Relaxed);
        since != 0 && epoch_millis().saturating_sub(since) < hold_limit_ms(qos)
    }

    /// The session drained below [`drained`], or went offline: release its publishers.
    pub fn clear(&self) {
        if self.since.swap(0, Ordering::Relaxed) != 0 {
            self.drained.notify_waiters();
        }
    }

    /// Whether congestion is recorded at all (cheap: one load).
    #[inline]
    pub fn is_set(&self) -> bool {
        self.since.load(Ordering::Relaxed) != 0
    }

    /// Resolves once publishers at `qos` need no longer wait (drained, offline, or
    /// congested past their hold limit).
    pub async fn wait(&self, qos: QoS) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            // Register before checking, so a clear between the check and the await
            // is not missed.
            notified.as_mut().enable();
            if !self.is_holding(qos) {
                return;
            }
            let since = self.since.load(Ordering::Relaxed);
            let stuck_at = since.saturating_add(hold_limit_ms(qos));
            let left = Duration::from_millis(stuck_at.saturating_sub(epoch_millis()));
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}
