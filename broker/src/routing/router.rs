//! Fan-out: match a message against the index and queue one delivery per session.
//!
//! The publishing connection task does the fan-out itself under a read lock of the
//! index, so a message reaches subscriber queues without a hop through a router task.
//! Subscriber queues are bounded and never block the publisher (see `session::queue`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gatehouse_protocol::{QoS, SubscriptionOptions};
use parking_lot::RwLock;
use smallvec::SmallVec;

use super::index::SubscriptionIndex;
use super::retained::{Caps, RetainRefused, RetainedStore};
use crate::message::{Delivery, Message, SessionKey};
use crate::session::{Congestion, EnqueueOutcome, QueuePolicy, Session};

/// Where a publisher's acknowledgement can wait for a change to be kept: a numbered run
/// of changes, settled in order, such as the session journal's writes to disk (single
/// node) or the retained bucket's writes to JetStream (cluster mode). The connection holds
/// the acknowledgement until its [`Durable`] ticket has settled, without blocking a thread.
pub trait Durability: Send + Sync {
    /// Where change `ticket` stands now. Once settled it stays so.
    fn settled(&self, ticket: u64) -> Settled;
    /// Resolves once change `ticket` has settled (or never, if its writer is gone: the
    /// acknowledgement then waits for [`Self::wait_limit`]).
    fn wait_settled(&self, ticket: u64) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// How long an acknowledgement waits at most; `None`: however long it takes (the
    /// journal: a local disk). Past it the change counts as failed.
    fn wait_limit(&self) -> Option<std::time::Duration> {
        None
    }
}

/// Where one change of a [`Durability`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Not written yet.
    Pending,
    /// Kept (on disk, in the bucket).
    Kept,
    /// Given up: not kept (the acknowledgement says so where the protocol can).
    Failed,
}

/// A change an acknowledgement waits for: its source and its ticket there.
#[derive(Clone)]
pub struct Durable {
    pub source: Arc<dyn Durability>,
    pub ticket: u64,
}

impl Durable {
    pub fn settled(&self) -> Settled {
        self.source.settled(self.ticket)
    }
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("ticket", &self.ticket)
            .finish_non_exhaustive()
    }
}

/// Where the router reports changes to retained messages that should survive a restart
/// (`persistence.retain`). The router knows nothing of how they are kept: the session
/// journal implements this (see `registry.rs`), and the cluster's retained bucket
/// (`cluster/retained.rs`). The tickets [`Self::changed`] returns are its own
/// [`Durability`]'s.
pub trait RetainedSink: Durability {
    /// Whether retained messages persist at all.
    fn enabled(&self) -> bool;
    /// Whether this retained message persists.
    fn wanted(&self, message: &Message) -> bool;
    /// The retained message on `topic` was set (`Some`) or cleared. Returns the ticket the
    /// publisher's acknowledgement waits for, `None` when nothing is kept.
    fn changed(&self, topic: &str, message: Option<&Message>) -> Option<u64>;
    /// Whether a change can be kept now; false refuses retained PUBLISHes
    /// ([`RetainRefused::Unavailable`]), e.g. in cluster mode while JetStream has no quorum.
    fn available(&self) -> bool {
        true
    }
    /// Cluster mode: while clears are being written faster than the retained bucket's
    /// room for them allows, when that will have passed. A client that has just cleared
    /// a retained message is not read until then (see `cluster/retained.rs`).
    fn paced_until(&self) -> Option<Instant> {
        None
    }
}

/// Cluster mode (issue 15): the other nodes, as the router sees them. Implemented by
/// `cluster::Cluster`; the router holds it only when `cluster:` is configured, so a single
/// node pays one `Option` check per publish and per subscription change.
pub trait ClusterLink: Send + Sync {
    /// The index gained (`added`) or lost one subscription to `filter` (shared in `group`).
    /// Called under the index's write lock, so calls for one filter come in index order;
    /// it must not block.
    fn interest(&self, filter: &str, group: Option<&str>, added: bool);
    /// A message published on this node, to hand to the other nodes; must not block.
    fn forward(&self, message: &Arc<Message>) -> Forwarded;
    /// The congestion of the way to the other nodes (see [`Forwarded::congested`]).
    fn forwarding(&self) -> &Congestion;
    /// Whether the message of `ticket` ([`Forwarded::ticket`]) has left this node.
    fn is_forwarded(&self, ticket: u64) -> bool;
    /// Resolves once the message of `ticket` has left this node.
    fn wait_forwarded(&self, ticket: u64) -> Pin<Box<dyn Future<Output = ()> + Send>>;
    /// Failure handling: whether `message` needs storage that is known to be unavailable
    /// now (a QoS 1/2 message an offline session wants while JetStream has no quorum); a
    /// v5 publisher is then refused with 0x80 before anything is routed.
    fn storage_refuses(&self, _message: &Message) -> bool {
        false
    }
    /// Failure handling: false while this node is cut off from the others (a CONNECT is
    /// then refused with 0x88 Server unavailable).
    fn accepts_clients(&self) -> bool {
        true
    }
}

/// What [`ClusterLink::forward`] did with a message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forwarded {
    /// The way to the other nodes is congested: the publisher is to stop being read until
    /// [`ClusterLink::forwarding`] clears (backpressure, as for a slow local subscriber,
    /// instead of reading messages only to drop them).
    pub congested: bool,
    /// QoS 1/2: the message is on its way to NATS; its PUBACK/PUBREC waits until
    /// [`ClusterLink::is_forwarded`], so a node killed right after acknowledging has
    /// handed it to NATS already (what is written to the NATS socket survives the
    /// process). `None` when it is not forwarded at all (counted as not forwarded).
    pub ticket: Option<u64>,
}

/// What the index stores per subscription.
#[derive(Debug, Clone)]
pub struct SubEntry {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// Counters the router keeps (exported as metrics by the operations issue).
#[derive(Debug, Default)]
pub struct RouterStats {
    pub messages_routed: AtomicU64,
    pub deliveries_queued: AtomicU64,
    /// QoS 0 deliveries shed because a consumer was slow or offline, and QoS 1/2
    /// deliveries refused by a full queue.
    pub dropped: AtomicU64,
    pub dropped_oldest: AtomicU64,
    /// Retained PUBLISHes not retained because the store was at `maxRetainedMessages` or
    /// `maxRetainedBytes`.
    pub retained_refused: AtomicU64,
}

pub struct Router {
    index: RwLock<SubscriptionIndex<SessionKey, SubEntry>>,
    retained: RwLock<RetainedStore<Arc<Message>>>,
    /// `subscriberQueueLimit`, replaceable by a reload.
    queue_length: std::sync::atomic::AtomicUsize,
    queue_max_bytes: std::sync::atomic::AtomicUsize,
    queue_drop_oldest: std::sync::atomic::AtomicBool,
    /// `maxRetainedMessages` and `maxRetainedBytes`, replaceable by a reload.
    retained_caps: parking_lot::Mutex<Caps>,
    pub stats: RouterStats,
    /// Set at start when retained messages persist (`persistence.retain`).
    pub retained_sink: std::sync::OnceLock<Arc<dyn RetainedSink>>,
    /// Set at start in cluster mode, before any subscription is restored.
    pub cluster: std::sync::OnceLock<Arc<dyn ClusterLink>>,
}

/// Where a published message went.
pub struct Routed {
    /// Sessions that got a copy.
    pub matched: usize,
    /// Connected sessions whose queues are at their limit: the publisher holds its
    /// QoS 1/2 acknowledgement until they drain.
    pub congested: SmallVec<[Arc<Session>; 1]>,
    /// The highest journal ticket of the persisted copies: the publisher's acknowledgement
    /// waits until it is durable.
    pub ticket: Option<u64>,
    /// Cluster mode: what forwarding to the other nodes did ([`Forwarded`]).
    pub forwarded: Forwarded,
}

pub struct SubscribeOutcome {
    /// A subscription with the same filter already existed (Retain Handling 1).
    pub existed: bool,
}

/// Up to this many targets, a linear search finds a session's target faster than a
/// hash map would (no map to build; measured with `benches/benches/fanout.rs`).
const LINEAR_DEDUP: usize = 16;

/// Finds the first target of a session during one fan-out in O(1): a linear search while
/// the targets are few, then a map from session key to target index, built once from
/// the targets so far when they pass [`LINEAR_DEDUP`] and kept up to date from then on.
#[derive(Default)]
struct Dedup {
    map: Option<HashMap<SessionKey, usize, BuildKeyHasher>>,
}

impl Dedup {
    /// The index of the first target for `key`.
    fn find(&mut self, targets: &[Target], key: SessionKey) -> Option<usize> {
        if self.map.is_none() && targets.len() > LINEAR_DEDUP {
            let mut map = HashMap::with_capacity_and_hasher(targets.len() * 2, BuildKeyHasher);
            for (i, t) in targets.iter().enumerate() {
                map.entry(t.session.key).or_insert(i);
            }
            self.map = Some(map);
        }
        match &self.map {
            Some(map) => map.get(&key).copied(),
            None => targets.iter().position(|t| t.session.key == key),
        }
    }

    /// A target for `key` was pushed at index `i` (kept only if it is the session's first).
    fn note(&mut self, key: SessionKey, i: usize) {
        if let Some(map) = &mut self.map {
            map.entry(key).or_insert(i);
        }
    }
}

/// Session keys are handed out by the broker in sequence, never chosen by a client, so a
/// multiplicative hash spreads them well and cannot be steered into collisions; SipHash
/// would cost more than the rest of a delivery.
#[derive(Default, Clone, Copy)]
struct BuildKeyHasher;

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A target session and what it gets, aggregated over its matching subscriptions.
struct Target {
    session: Arc<Session>,
    qos: QoS,
    retain: bool,
    ids: SmallVec<[u32; 2]>,
}

impl Router {
    pub fn new(policy: QueuePolicy, retained_caps: Caps) -> Self {
        Router {
            index: RwLock::new(SubscriptionIndex::new()),
            retained: RwLock::new(RetainedStore::default()),
            queue_length: std::sync::atomic::AtomicUsize::new(policy.length),
            queue_max_bytes: std::sync::atomic::AtomicUsize::new(policy.max_bytes),
            queue_drop_oldest: std::sync::atomic::AtomicBool::new(policy.drop_oldest),
            retained_caps: parking_lot::Mutex::new(retained_caps),
            stats: RouterStats::default(),
            retained_sink: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    pub fn subscription_count(&self) -> usize {
        self.index.read().len()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// What the retained messages held count against `maxRetainedBytes`, together.
    pub fn retained_bytes(&self) -> usize {
        self.retained.read().bytes()
    }

    /// `maxRetainedMessages` and `maxRetainedBytes` as they are now (cluster mode sizes
    /// the retained bucket's limit from them).
    pub fn retained_caps(&self) -> Caps {
        *self.retained_caps.lock()
    }

    /// A reload changed `maxRetainedMessages` / `maxRetainedBytes`: new retained messages
    /// are refused until the store is back under them; nothing held is dropped.
    pub fn set_retained_caps(&self, caps: Caps) {
        *self.retained_caps.lock() = caps;
    }

    /// Update the retained store for a message published with RETAIN set; the ticket is
    /// the persisted change's (`persistence.retain`, or the retained bucket's write in
    /// cluster mode), for the publisher's acknowledgement to wait for. Clearing (an empty payload) and
    /// replacing a topic's message with one no larger always succeed; a message that
    /// would take the store past `maxRetainedMessages` or `maxRetainedBytes` is not
    /// retained (the caller decides whether it is still routed) and counted.
    pub fn retain(&self, message: &Arc<Message>) -> Result<Option<Durable>, RetainRefused> {
        let journal = self.retained_sink.get().filter(|j| j.enabled());
        if journal.is_some_and(|j| !j.available()) {
            self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
            return Err(RetainRefused::Unavailable);
        }
        if message.payload.is_empty() {
            let mut retained = self.retained.write();
            retained.remove(&message.topic);
            // Nothing waits for a persisted clear: at worst a crash brings back the
            // older message.
            if let Some(j) = journal {
                j.changed(&message.topic, None);
            }
            return Ok(None);
        }
        // The payload is a slice of the publisher's read buffer; a retained message can
        // live for days, so give it its own allocation instead of pinning that buffer.
        let stored = Arc::new(Message {
            topic: message.topic.clone(),
            payload: Bytes::copy_from_slice(&message.payload),
            qos: message.qos,
            retain: true,
            properties: message.properties.clone(),
            expires_at: message.expires_at,
            origin: message.origin,
        });
        let caps = *self.retained_caps.lock();
        let mut retained = self.retained.write();
        if let Err(refused) = retained.try_set(&message.topic, stored, message.stored_bytes(), caps)
        {
            drop(retained);
            self.stats.retained_refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(target: "router", topic = ?message.topic, "message not retained: {refused}");
            return Err(refused);
        }
        // Journalled under the store lock, so the journal sees changes in store order.
        Ok(journal.and_then(|j| {
            if j.wanted(message) {
                let ticket = j.changed(&message.topic, Some(message))?;
                let source: Arc<dyn Durability> = j.clone();
                Some(Durable { source, ticket })
            } else {
                // Not (or no longer) persisted: drop an older persisted copy.
                j.changed(&message.topic, None);
                None
            }
        }))
    }

    /// Retained messages loaded from `journal` at start; those that expired while the
    /// broker was down are dropped from it. They count against the caps but are all
    /// loaded, even past caps lowered since they were stored (as after a reload, new
    /// retained messages are then refused until the store is back under them).
    pub fn restore_retained(&self, journal: &dyn RetainedSink, messages: Vec<Message>) {
        let now = Instant::now();
        let mut retained = self.retained.write();
        for m in messages {
            if m.remaining_expiry(now).is_err() {
                journal.changed(&m.topic, None);
                continue;
            }
            let topic = m.topic.clone();
            let size = m.stored_bytes();
            retained.set(&topic, Arc::new(m), size);
        }
        let caps = *self.retained_caps.lock();
        if retained.len() > caps.max_messages || retained.bytes() > caps.max_bytes {
            tracing::warn!(
                target: "router",
                messages = retained.len(),
                bytes = retained.bytes(),
                "the retained messages restored exceed broker.maxRetainedMessages or broker.maxRetainedBytes; new retained messages are refused until enough are cleared"
            );
        }
    }

    /// Queue `message` (published on this node) for every matching session, and hand it
    /// to the other nodes in cluster mode. There, shared subscriptions are served through
    /// NATS queue groups (one member node gets the message, this one included), so they
    /// are left out of the local fan-out.
    pub fn publish(&self, message: &Arc<Message>) -> Routed {
        let Some(cluster) = self.cluster.get() else {
            return self.fan_out(message, true);
        };
        let mut routed = self.fan_out(message, false);
        routed.forwarded = cluster.forward(message);
        routed
    }

    /// A message another node published, for this node's plain (not shared)
    /// subscriptions. Its publisher was authorized on its own node; the subscriptions it
    /// reaches were authorized here when they were made, as for local messages.
    pub fn publish_forwarded(&self, message: &Arc<Message>) -> Routed {
        self.fan_out(message, false)
    }

    /// A message the NATS queue group of `$share/<group>/<filter>` gave this node: one
    /// local member of that group gets it (a connected one if any), as in local fan-out.
    /// Returns whether a member was found.
    pub fn publish_to_group(&self, message: &Arc<Message>, filter: &str, group: &str) -> bool {
        let pick = {
            let index = self.index.read();
            let Some(g) = index.get(filter).and_then(|e| e.shared.get(group)) else {
                return false;
            };
            let n = g.members.len();
            if n == 0 {
                return false;
            }
            let start = g.cursor.fetch_add(1, Ordering::Relaxed);
            let pick = (0..n)
                .map(|i| &g.members[(start + i) % n].1)
                .find(|s| s.session.is_online())
                .unwrap_or(&g.members[start % n].1);
            pick.clone()
        };
        let delivery = Delivery {
            message: message.clone(),
            qos: pick.options.qos.min(message.qos),
            retain: message.retain && pick.options.retain_as_published,
            subscription_ids: pick.id.into_iter().collect(),
            seq: None,
        };
        self.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        self.enqueue(&pick.session, delivery);
        true
    }

    /// Queue `message` for every matching session; shared groups only with `shared`.
    fn fan_out(&self, message: &Arc<Message>, shared: bool) -> Routed {
        self.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        let mut targets: SmallVec<[Target; 8]> = SmallVec::new();
        let mut dedup = Dedup::default();
        {
            let index = self.index.read();
            index.for_each_match(&message.topic, |entry| {
                // The keys of one filter's subscribers are distinct: the first filter
                // with subscribers needs no look-up at all (the common case of one
                // matching filter, however many subscribers it has).
                let first = targets.is_empty();
                for (key, sub) in &entry.direct {
                    if sub.options.no_local && message.origin == Some(*key) {
                        continue;
                    }
                    let qos = sub.options.qos.min(message.qos);
                    let retain = message.retain && sub.options.retain_as_published;
                    // One copy per session, carrying every matching identifier and the
                    // highest QoS among its matching subscriptions (MQTT 5 §3.3.4).
                    let found = if first {
                        None
                    } else {
                        dedup.find(&targets, *key)
                    };
                    match found {
                        Some(i) => {
                            let t = &mut targets[i];
                            t.qos = t.qos.max(qos);
                            t.retain |= retain;
                            t.ids.extend(sub.id);
                        }
                        None => {
                            dedup.note(*key, targets.len());
                            targets.push(Target {
                                session: sub.session.clone(),
                                qos,
                                retain,
                                ids: sub.id.into_iter().collect(),
                            });
                        }
                    }
                }
                for group in entry.shared.values().filter(|_| shared) {
                    let n = group.members.len();
                    if n == 0 {
                        continue;
                    }
                    let start = group.cursor.fetch_add(1, Ordering::Relaxed);
                    // Prefer a connected member; fall back to the round-robin pick.
                    let pick = (0..n)
                        .map(|i| &group.members[(start + i) % n].1)
                        .find(|s| s.session.is_online())
                        .unwrap_or(&group.members[start % n].1);
                    // A shared subscription's copy is never merged into an earlier one;
                    // a later plain subscription of the same session may merge into it.
                    dedup.note(pick.session.key, targets.len());
                    targets.push(Target {
                        session: pick.session.clone(),
                        qos: pick.options.qos.min(message.qos),
                        retain: message.retain && pick.options.retain_as_published,
                        ids: pick.id.into_iter().collect(),
                    });
                }
            });
        }
        let mut routed = Routed {
            matched: targets.len(),
            congested: SmallVec::new(),
            forwarded: Forwarded::default(),
            ticket: None,
        };
        let policy = self.policy();
        for t in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.ids,
                seq: None,
            };
            let enqueued = t.session.enqueue(delivery, &policy);
            self.record(&enqueued);
            if enqueued.congested {
                routed.congested.push(t.session);
            }
            routed.ticket = routed.ticket.max(enqueued.ticket);
        }
        routed
    }

    /// The queue policy in force.
    pub fn policy(&self) -> QueuePolicy {
        QueuePolicy {
            length: self.queue_length.load(Ordering::Relaxed),
            max_bytes: self.queue_max_bytes.load(Ordering::Relaxed),
            drop_oldest: self.queue_drop_oldest.load(Ordering::Relaxed),
        }
    }

    /// A reload changed `subscriberQueueLimit`.
    pub fn set_policy(&self, policy: QueuePolicy) {
        self.queue_length.store(policy.length, Ordering::Relaxed);
        self.queue_max_bytes
            .store(policy.max_bytes, Ordering::Relaxed);
        self.queue_drop_oldest
            .store(policy.drop_oldest, Ordering::Relaxed);
    }

    fn record(&self, enqueued: &crate::session::Enqueued) {
        let (counter, n) = match enqueued.outcome {
            EnqueueOutcome::Queued => (&self.stats.deliveries_queued, 1),
            // One per delivery dropped: the byte bound may drop several for one.
            EnqueueOutcome::QueuedDroppedOldest => {
                (&self.stats.dropped_oldest, enqueued.evicted.max(1) as u64)
            }
            EnqueueOutcome::Dropped => (&self.stats.dropped, 1),
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Add or replace a subscription in the index.
    pub fn subscribe(
        &self,
        filter: &str,
        group: Option<&str>,
        entry: SubEntry,
    ) -> SubscribeOutcome {
        let key = entry.session.key;
        let mut index = self.index.write();
        let existed = index.insert(filter, group, key, entry).is_some();
        if let (false, Some(cluster)) = (existed, self.cluster.get()) {
            cluster.interest(filter, group, true);
        }
        SubscribeOutcome { existed }
    }

    pub fn unsubscribe(&self, filter: &str, group: Option<&str>, key: SessionKey) -> bool {
        let mut index = self.index.write();
        let removed = index.remove(filter, group, &key).is_some();
        if let (true, Some(cluster)) = (removed, self.cluster.get()) {
            cluster.interest(filter, group, false);
        }
        removed
    }

    /// A walk over the retained messages matching `filter` as they are now, for a new
    /// subscription with `options` and identifier `id` (subscribed already, so messages
    /// retained from now on reach it as live messages and the walk skips them).
    pub fn retained_cursor(
        &self,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> RetainedCursor {
        RetainedCursor {
            filter: filter.to_owned(),
            options,
            id,
            max_seq: self.retained.read().seq(),
            after: None,
        }
    }

    /// The next (at most) `n` retained messages of `cursor`, as deliveries for its
    /// subscriber (retained messages sent because of a subscription keep RETAIN=1, at the
    /// lower of the message's and the subscription's QoS; No Local does not apply), of at
    /// most `byte_budget` bytes together (as the queue counts them,
    /// [`crate::session::delivery_bytes`]) except that the first one is taken whatever its
    /// size when `first_always` (the subscriber's queue is empty). The flag is true when
    /// the walk is over. Messages removed, replaced or expired since the subscription are
    /// skipped.
    pub fn next_retained(
        &self,
        cursor: &mut RetainedCursor,
        n: usize,
        byte_budget: usize,
        first_always: bool,
    ) -> (Vec<Delivery>, bool) {
        let now = Instant::now();
        let retained = self.retained.read();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < n {
            let Some((topic, m)) =
                retained.next_match(&cursor.filter, cursor.after.as_deref(), cursor.max_seq)
            else {
                return (out, true);
            };
            if m.remaining_expiry(now).is_err() {
                cursor.after = Some(topic);
                continue;
            }
            let size = m.topic.len().saturating_add(m.payload.len());
            let take =
                bytes.saturating_add(size) <= byte_budget || (out.is_empty() && first_always);
            if !take {
                // Not taken: the walk resumes here once the queue has room.
                break;
            }
            bytes = bytes.saturating_add(size);
            cursor.after = Some(topic);
            out.push(Delivery {
                message: m.clone(),
                qos: cursor.options.qos.min(m.qos),
                retain: true,
                subscription_ids: cursor.id.into_iter().collect(),
                seq: None,
            });
        }
        (out, false)
    }

    /// Drop expired retained messages (called periodically).
    pub fn purge_expired_retained(&self) {
        let now = Instant::now();
        let journal = self.retained_sink.get();
        self.retained.write().retain(|m| {
            let keep = m.remaining_expiry(now).is_ok();
            if let (false, Some(j)) = (keep, journal) {
                j.changed(&m.topic, None);
            }
            keep
        });
    }

    /// Queue a delivery produced outside fan-out (retained messages on subscribe, state
    /// store notifications).
    pub fn enqueue(&self, session: &Session, delivery: Delivery) {
        self.record(&session.enqueue(delivery, &self.policy()));
    }
}

/// Where a new subscription is in the retained messages it is owed: the walk holds its
/// filter and the last topic it reached, never the messages, so a subscriber is sent every
/// matching retained message at the pace of its own flow control without the broker
/// copying them all into its queue (which would overflow it) or holding them for it.
#[derive(Debug)]
pub struct RetainedCursor {
    filter: String,
    options: SubscriptionOptions,
    id: Option<u32>,
    /// The store's sequence number when the subscription was made.
    max_seq: u64,
    after: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::PublishProperties;

    fn router() -> Router {
        Router::new(
            QueuePolicy {
                length: 100,
                max_bytes: usize::MAX,
                drop_oldest: false,
            },
            Caps {
                max_messages: 10,
                max_bytes: 1 << 20,
            },
        )
    }

    fn options(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }

    fn sub(
        router: &Router,
        s: &Arc<Session>,
        filter: &str,
        group: Option<&str>,
        qos: QoS,
        id: u32,
    ) {
        let entry = SubEntry {
            session: s.clone(),
            options: options(qos),
            id: Some(id),
        };
        router.subscribe(filter, group, entry);
    }

    fn publish(router: &Router) -> Routed {
        router.publish(&Arc::new(Message {
            topic: "a/b".into(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            origin: None,
        }))
    }

    fn sessions(n: u64) -> Vec<Arc<Session>> {
        (1..=n)
            .map(|k| {
                let s = Arc::new(Session::new(k, format!("c{k}").into()));
                s.set_online(true);
                s
            })
            .collect()
    }

    /// Few and many subscribers (linear search and map), each on three overlapping
    /// filters: one copy each, every identifier, the highest QoS.
    #[test]
    fn overlapping_subscriptions_give_one_copy_at_any_fan_out() {
        for n in [1, 3, LINEAR_DEDUP as u64, LINEAR_DEDUP as u64 + 1, 200] {
            let router = router();
            let all = sessions(n);
            for s in &all {
                sub(&router, s, "a/b", None, QoS::AtMostOnce, 1);
                sub(&router, s, "a/+", None, QoS::ExactlyOnce, 2);
                sub(&router, s, "#", None, QoS::AtLeastOnce, 3);
            }
            assert_eq!(publish(&router).matched, n as usize, "n = {n}");
            for s in &all {
                let st = s.lock();
                assert_eq!(st.queued().len(), 1, "n = {n}");
                let d = &st.queued()[0];
                assert_eq!(d.qos, QoS::ExactlyOnce);
                let mut ids = d.subscription_ids.to_vec();
                ids.sort_unstable();
                assert_eq!(ids, [1, 2, 3]);
            }
        }
    }

    /// A shared subscription's copy is separate from an earlier plain one of the same
    /// session; a plain subscription matched after it merges into it, as before.
    #[test]
    fn shared_copies_are_not_merged_into_earlier_targets() {
        for n in [2, 40] {
            let router = router();
            let all = sessions(n);
            for s in &all {
                sub(&router, s, "a/b", None, QoS::AtMostOnce, 1);
                sub(&router, s, "a/b", Some("g"), QoS::AtLeastOnce, 2);
            }
            // The one member picked for the group gets two copies, the others one.
            assert_eq!(publish(&router).matched, n as usize + 1);
            let copies: usize = all.iter().map(|s| s.lock().queued().len()).sum();
            assert_eq!(copies, n as usize + 1);
            let router = self::router();
            let all = sessions(n);
            for s in &all {
                sub(&router, s, "a/b", Some("g"), QoS::AtLeastOnce, 2);
                sub(&router, s, "a/+", None, QoS::AtMostOnce, 1);
            }
            // The exact filter (with the group) is visited first: the picked member's
            // plain subscription merges into its shared copy.
            assert_eq!(publish(&router).matched, n as usize);
        }
    }
}
