//! Fan-out: match a message against the index and queue one delivery per session.
//!
//! The publishing connection task does the fan-out itself under a read lock of the
//! index, so a message reaches subscriber queues without a hop through a router task.
//! Subscriber queues are bounded and never block the publisher (see `session::queue`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use gatehouse_protocol::{QoS, SubscriptionOptions};
use parking_lot::RwLock;
use smallvec::SmallVec;

use super::index::SubscriptionIndex;
use super::retained::RetainedStore;
use crate::message::{Delivery, Message, SessionKey};
use crate::session::{EnqueueOutcome, QueuePolicy, Session};

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
}

pub struct Router {
    index: RwLock<SubscriptionIndex<SessionKey, SubEntry>>,
    retained: RwLock<RetainedStore<Arc<Message>>>,
    /// `subscriberQueueLimit`, replaceable by a reload.
    queue_length: std::sync::atomic::AtomicUsize,
    queue_drop_oldest: std::sync::atomic::AtomicBool,
    pub stats: RouterStats,
    /// Set at start when retained messages persist (`persistence.retain`).
    pub journal: std::sync::OnceLock<crate::persistence::journal::Journal>,
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
}

pub struct SubscribeOutcome {
    /// A subscription with the same filter already existed (Retain Handling 1).
    pub existed: bool,
}

/// A target session and what it gets, aggregated over its matching subscriptions.
struct Target {
    session: Arc<Session>,
    qos: QoS,
    retain: bool,
    ids: SmallVec<[u32; 2]>,
}

impl Router {
    pub fn new(policy: QueuePolicy) -> Self {
        Router {
            index: RwLock::new(SubscriptionIndex::new()),
            retained: RwLock::new(RetainedStore::default()),
            queue_length: std::sync::atomic::AtomicUsize::new(policy.length),
            queue_drop_oldest: std::sync::atomic::AtomicBool::new(policy.drop_oldest),
            stats: RouterStats::default(),
            journal: std::sync::OnceLock::new(),
        }
    }

    pub fn subscription_count(&self) -> usize {
        self.index.read().len()
    }

    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Update the retained store for a message published with RETAIN set; the ticket is
    /// the persisted change's (`persistence.retain`).
    pub fn retain(&self, message: &Arc<Message>) -> Option<u64> {
        let ticket = self.journal.get().filter(|j| j.retains()).and_then(|j| {
            if !message.payload.is_empty() && j.retain_wanted(message) {
                j.put_retained(&message.topic, Some(message))
            } else {
                // Cleared, or not (or no longer) persisted: drop an older persisted copy.
                // Nothing waits for it: at worst a crash brings back the older message.
                j.put_retained(&message.topic, None);
                None
            }
        });
        if message.payload.is_empty() {
            self.retained.write().remove(&message.topic);
            return ticket;
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
        self.retained.write().set(&message.topic, stored);
        ticket
    }

    /// Retained messages loaded from `journal` at start; those that expired while the
    /// broker was down are dropped from it.
    pub fn restore_retained(
        &self,
        journal: &crate::persistence::journal::Journal,
        messages: Vec<Message>,
    ) {
        let now = Instant::now();
        let mut retained = self.retained.write();
        for m in messages {
            if m.remaining_expiry(now).is_err() {
                journal.put_retained(&m.topic, None);
                continue;
            }
            let topic = m.topic.clone();
            retained.set(&topic, Arc::new(m));
        }
    }

    /// Queue `message` for every matching session.
    pub fn publish(&self, message: &Arc<Message>) -> Routed {
        self.stats.messages_routed.fetch_add(1, Ordering::Relaxed);
        let mut targets: SmallVec<[Target; 8]> = SmallVec::new();
        {
            let index = self.index.read();
            index.for_each_match(&message.topic, |entry| {
                for (key, sub) in &entry.direct {
                    if sub.options.no_local && message.origin == Some(*key) {
                        continue;
                    }
                    let qos = sub.options.qos.min(message.qos);
                    let retain = message.retain && sub.options.retain_as_published;
                    // One copy per session, carrying every matching identifier and the
                    // highest QoS among its matching subscriptions (MQTT 5 §3.3.4).
                    match targets.iter_mut().find(|t| t.session.key == *key) {
                        Some(t) => {
                            t.qos = t.qos.max(qos);
                            t.retain |= retain;
                            t.ids.extend(sub.id);
                        }
                        None => targets.push(Target {
                            session: sub.session.clone(),
                            qos,
                            retain,
                            ids: sub.id.into_iter().collect(),
                        }),
                    }
                }
                for group in entry.shared.values() {
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
            self.record(enqueued.outcome);
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
            drop_oldest: self.queue_drop_oldest.load(Ordering::Relaxed),
        }
    }

    /// A reload changed `subscriberQueueLimit`.
    pub fn set_policy(&self, policy: QueuePolicy) {
        self.queue_length.store(policy.length, Ordering::Relaxed);
        self.queue_drop_oldest
            .store(policy.drop_oldest, Ordering::Relaxed);
    }

    /// The queue length at which a congested session counts as drained again.
    pub fn low_water(&self) -> usize {
        self.policy().length / 2
    }

    fn record(&self, outcome: EnqueueOutcome) {
        let counter = match outcome {
            EnqueueOutcome::Queued => &self.stats.deliveries_queued,
            EnqueueOutcome::QueuedDroppedOldest => &self.stats.dropped_oldest,
            EnqueueOutcome::Dropped => &self.stats.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Add or replace a subscription in the index.
    pub fn subscribe(
        &self,
        filter: &str,
        group: Option<&str>,
        entry: SubEntry,
    ) -> SubscribeOutcome {
        let key = entry.session.key;
        let existed = self
            .index
            .write()
            .insert(filter, group, key, entry)
            .is_some();
        SubscribeOutcome { existed }
    }

    pub fn unsubscribe(&self, filter: &str, group: Option<&str>, key: SessionKey) -> bool {
        self.index.write().remove(filter, group, &key).is_some()
    }

    /// Retained messages for a new subscription, as deliveries for that subscriber
    /// (retained messages sent because of a subscription keep RETAIN=1).
    pub fn retained_for(
        &self,
        filter: &str,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Vec<Delivery> {
        let now = Instant::now();
        let retained = self.retained.read();
        retained
            .matching(filter)
            .into_iter()
            .filter(|m| m.remaining_expiry(now).is_ok())
            .map(|m| Delivery {
                message: m.clone(),
                qos: options.qos.min(m.qos),
                retain: true,
                subscription_ids: id.into_iter().collect(),
                seq: None,
            })
            .collect()
    }

    /// Drop expired retained messages (called periodically).
    pub fn purge_expired_retained(&self) {
        let now = Instant::now();
        let journal = self.journal.get();
        self.retained.write().retain(|m| {
            let keep = m.remaining_expiry(now).is_ok();
            if let (false, Some(j)) = (keep, journal) {
                j.put_retained(&m.topic, None);
            }
            keep
        });
    }

    /// Queue a delivery produced outside fan-out (retained messages on subscribe).
    pub fn enqueue(&self, session: &Session, delivery: Delivery) {
        self.record(session.enqueue(delivery, &self.policy()).outcome);
    }
}
