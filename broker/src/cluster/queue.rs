//! QoS 1/2 messages for offline persistent sessions, kept in one JetStream stream
//! (issue 15), so that a session resumed on another node, or after its node died, gets
//! what was published while it was away.
//!
//! - **The stream** [`STREAM`] (file storage, `cluster.nats.replicas` copies, limits
//!   retention: kept for `broker.maxSessionExpirySeconds` at most and within
//!   `cluster.queueMaxBytes`, oldest dropped first) on subjects `ghq.m.<topic subject>`
//!   (the forwarding escape of [`super::subject`]). One copy per message, however many
//!   sessions want it.
//! - **Who wants what**: every node sees every session record (the sessions bucket's
//!   watch). The filters of offline persistent sessions, cluster-wide, are in an index
//!   here ([`Queue::set_offline`]). A QoS 1/2 message published on this node that matches
//!   one of them is also written to the stream, and its PUBACK/PUBREC waits until
//!   JetStream has stored it ([`Queue::is_stored`], part of
//!   `ClusterLink::is_forwarded`): acknowledged only once stored. Messages no offline
//!   session wants cost nothing more than one index look-up.
//! - **Going offline**: the owner reads the stream's last sequence *before* writing the
//!   record offline, and the record keeps the next one (`queuedFrom`): everything a
//!   resumed session needs from the stream comes after it. The owner then writes what its
//!   client had not acknowledged yet (the session's queue and its unacknowledged
//!   deliveries) to the stream too, and for [`GAP_WINDOW`] after, every QoS 1/2 message
//!   from another node that matches the session (published before that node's watch
//!   showed the record): both would otherwise sit in this node's memory only.
//! - **Resuming on another node**: one ordered consumer per session (not per
//!   subscription; an ephemeral R1 consumer that lives while the backlog is read) from
//!   `queuedFrom`, filtered on the session's filters; each message is delivered with the
//!   session's matching subscriptions (highest QoS, every identifier), its expiry reduced
//!   by its time in the stream, once per origin and sequence number (the same message may
//!   be in the stream twice: written by its publisher and by the old owner). The record
//!   keeps `queuedFrom` until the backlog is read, so a node that dies while reading it
//!   leaves it to the next one. A session resumed on the node that holds it locally
//!   reads nothing: its own queue has every message already.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use gatehouse_protocol::QoS;
use smallvec::SmallVec;
use tokio::sync::mpsc;

use super::{envelope, subject};
use crate::message::{Delivery, Message};
use crate::registry::Broker;
use crate::routing::index::SubscriptionIndex;
use crate::session::Session;

/// The stream of queued messages.
pub const STREAM: &str = "gatehouse-queued";

/// Its subjects' prefix (a topic's forwarding subject with `gh.` replaced).
const PREFIX: &str = "ghq.";

/// For how long after a session of this node went offline the node also writes the
/// messages other nodes forward for it (their watch may not show the record yet).
pub const GAP_WINDOW: Duration = Duration::from_secs(5);

/// Writes waiting for JetStream (beyond it a message is not kept for offline sessions;
/// counted).
const CAPTURES: usize = 16 * 1024;

/// Writes to JetStream awaiting their acknowledgement at once.
const IN_FLIGHT: usize = 512;

/// How long a write keeps being tried before it counts as failed (its publisher is
/// acknowledged then, and the failure logged and counted).
const STORE_BUDGET: Duration = Duration::from_secs(10);

/// How long reading a backlog waits for the next message before giving up (the rest is
/// read by the next resume).
const READ_WAIT: Duration = Duration::from_secs(5);

/// The stream's subject for a forwarding subject (`gh.m.<tokens>`).
fn queue_subject(forward_subject: &str) -> String {
    format!(
        "{PREFIX}{}",
        forward_subject
            .strip_prefix("gh.")
            .unwrap_or(forward_subject)
    )
}

/// Counters (exported as `gatehouse_cluster_queue_*`).
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Messages written to the stream for offline sessions.
    pub stored: std::sync::atomic::AtomicU64,
    /// Messages that could not be written (JetStream unavailable past the budget, or the
    /// writer's queue full).
    pub failed: std::sync::atomic::AtomicU64,
    /// Messages read back from the stream for resumed sessions.
    pub delivered: std::sync::atomic::AtomicU64,
}

/// One offline session in the index.
struct OfflineSession {
    filters: Vec<String>,
    /// This node owns it: when it went offline (for [`GAP_WINDOW`]).
    own_since: Option<Instant>,
}

#[derive(Default)]
struct Offline {
    index: SubscriptionIndex<String, ()>,
    sessions: HashMap<String, OfflineSession>,
    /// When a session of this node last went offline: outside [`GAP_WINDOW`] of it no
    /// forwarded message needs a look-up in the index ([`Queue::wanted_in_gap`]).
    last_own: Option<Instant>,
}

/// A write to the stream.
struct Capture {
    /// The publisher's ticket (0: nobody waits for it).
    ticket: u64,
    subject: String,
    headers: HeaderMap,
    body: Bytes,
    /// Told when the write is done (stored or given up).
    notify: Option<mpsc::UnboundedSender<()>>,
}

/// This node's side of the stream.
pub struct Queue {
    js: jetstream::Context,
    offline: parking_lot::RwLock<Offline>,
    /// Tickets of writes not yet stored (or given up).
    pending: parking_lot::Mutex<BTreeSet<u64>>,
    /// Bumped whenever a write is done, to wake publishers waiting for theirs.
    done: tokio::sync::watch::Sender<u64>,
    tx: mpsc::Sender<Capture>,
    /// This node's origin (message ids of what it writes on another's behalf).
    origin: String,
    /// Sequence numbers of what [`Queue::write_held`] writes (its own origin).
    held_seq: std::sync::atomic::AtomicU64,
    pub stats: QueueStats,
}

/// Create (or update) the stream and start the writer.
pub(super) async fn start(
    client: &async_nats::Client,
    replicas: usize,
    max_age: Duration,
    max_bytes: u64,
    origin: &str,
    health: Arc<super::health::Health>,
) -> Result<Arc<Queue>, String> {
    let js = jetstream::new(client.clone());
    let config = jetstream::stream::Config {
        name: STREAM.to_owned(),
        description: Some("Gatehouse: QoS 1/2 messages for offline persistent sessions".to_owned()),
        subjects: vec![format!("{PREFIX}m.>")],
        retention: jetstream::stream::RetentionPolicy::Limits,
        discard: jetstream::stream::DiscardPolicy::Old,
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas,
        max_age,
        max_bytes: i64::try_from(max_bytes).unwrap_or(i64::MAX),
        duplicate_window: Duration::from_secs(120).min(max_age),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match js.create_or_update_stream(config.clone()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(target: "cluster", "creating the {STREAM} stream: {e}; trying again");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(format!("creating the {STREAM} stream: {e}")),
        }
    }
    let (tx, rx) = mpsc::channel(CAPTURES);
    let queue = Arc::new(Queue {
        js: js.clone(),
        offline: parking_lot::RwLock::new(Offline::default()),
        pending: parking_lot::Mutex::new(BTreeSet::new()),
        done: tokio::sync::watch::Sender::new(0),
        tx,
        origin: origin.to_owned(),
        held_seq: std::sync::atomic::AtomicU64::new(0),
        stats: QueueStats::default(),
    });
    tokio::spawn(run_writes(js, rx, Arc::downgrade(&queue), health));
    Ok(queue)
}

impl Queue {
    /// The session of `key` is offline (persistent, alive) with these filters; `own`:
    /// this node owns it.
    pub fn set_offline(&self, key: &str, filters: Vec<String>, own: bool) {
        let filters: Vec<String> = filters
            .into_iter()
            .filter(|f| !f.starts_with("$share/"))
            .collect();
        let mut offline = self.offline.write();
        let own_since = offline
            .sessions
            .get(key)
            .and_then(|s| s.own_since)
            .or_else(|| own.then(Instant::now))
            .filter(|_| own);
        if let Some(old) = offline.sessions.remove(key) {
            for f in &old.filters {
                offline.index.remove(f, None, &key.to_owned());
            }
        }
        for f in &filters {
            offline.index.insert(f, None, key.to_owned(), ());
        }
        offline.last_own = offline.last_own.max(own_since);
        offline
            .sessions
            .insert(key.to_owned(), OfflineSession { filters, own_since });
    }

    /// The session of `key` is online again, or gone.
    pub fn remove(&self, key: &str) {
        let mut offline = self.offline.write();
        if let Some(old) = offline.sessions.remove(key) {
            for f in &old.filters {
                offline.index.remove(f, None, &key.to_owned());
            }
        }
    }

    /// Offline persistent sessions in the index (cluster-wide).
    pub fn offline_count(&self) -> usize {
        self.offline.read().sessions.len()
    }

    /// Whether an offline session anywhere wants a message on `topic`.
    pub fn wanted(&self, topic: &str) -> bool {
        let offline = self.offline.read();
        if offline.sessions.is_empty() {
            return false;
        }
        let mut found = false;
        offline.index.for_each_match(topic, |entry| {
            found |= !entry.direct.is_empty();
        });
        found
    }

    /// Whether a session this node owns went offline less than [`GAP_WINDOW`] ago and
    /// wants a message on `topic` (forwarded by a node that may not know it is offline).
    pub fn wanted_in_gap(&self, topic: &str) -> bool {
        let offline = self.offline.read();
        let now = Instant::now();
        if offline
            .last_own
            .is_none_or(|at| now.duration_since(at) >= GAP_WINDOW)
        {
            return false;
        }
        let mut found = false;
        offline.index.for_each_match(topic, |entry| {
            found |= entry.direct.keys().any(|k| {
                offline
                    .sessions
                    .get(k)
                    .and_then(|s| s.own_since)
                    .is_some_and(|at| now.duration_since(at) < GAP_WINDOW)
            });
        });
        found
    }

    /// Write a message to the stream. `ticket` (not 0) is the publisher's: it is
    /// acknowledged once [`Self::is_stored`]. Callers with a ticket call this in ticket
    /// order. False when the writer is full (counted; nothing waits then).
    pub(super) fn capture(
        &self,
        ticket: u64,
        forward_subject: &str,
        headers: HeaderMap,
        body: Bytes,
        message_id: String,
    ) -> bool {
        self.capture_notified(ticket, forward_subject, headers, body, message_id, None)
    }

    /// [`Self::capture`], telling `notify` once the write is done.
    fn capture_notified(
        &self,
        ticket: u64,
        forward_subject: &str,
        mut headers: HeaderMap,
        body: Bytes,
        message_id: String,
        notify: Option<mpsc::UnboundedSender<()>>,
    ) -> bool {
        headers.insert("Nats-Msg-Id", message_id.as_str());
        let capture = Capture {
            ticket,
            subject: queue_subject(forward_subject),
            headers,
            body,
            notify,
        };
        let mut pending = self.pending.lock();
        match self.tx.try_send(capture) {
            Ok(()) => {
                if ticket != 0 {
                    pending.insert(ticket);
                }
                true
            }
            Err(_) => {
                self.stats
                    .failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether every write up to `ticket` is done.
    pub fn is_stored(&self, ticket: u64) -> bool {
        self.pending.lock().first().is_none_or(|&t| t > ticket)
    }

    /// Resolves once [`Self::is_stored`].
    pub fn wait_stored(
        self: &Arc<Self>,
        ticket: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let queue = Arc::downgrade(self);
        let mut rx = self.done.subscribe();
        Box::pin(async move {
            loop {
                match queue.upgrade() {
                    Some(q) if !q.is_stored(ticket) => {}
                    _ => return,
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// The stream's last sequence number (from its leader).
    pub async fn last_sequence(&self) -> Result<u64, String> {
        let stream = self
            .js
            .get_stream(STREAM)
            .await
            .map_err(|e| e.to_string())?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Write what `session` holds for its client (queued, and sent but not acknowledged)
    /// to the stream, under this node's origin: it went offline, and these messages were
    /// published before its record said so.
    pub fn write_held(&self, session: &Session) {
        self.write_held_notified(session, None);
    }

    /// [`Self::write_held`], resolving once every write is done (a session handed over to
    /// the node taking it over, which reads them right after).
    pub async fn write_held_then(&self, session: &Session) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let n = self.write_held_notified(session, Some(tx));
        for _ in 0..n {
            if rx.recv().await.is_none() {
                return;
            }
        }
    }

    /// Returns how many writes were queued.
    fn write_held_notified(
        &self,
        session: &Session,
        notify: Option<mpsc::UnboundedSender<()>>,
    ) -> usize {
        let now = Instant::now();
        let messages: Vec<Arc<Message>> = {
            let st = session.lock();
            let in_flight = st.resume(now).filter_map(|r| match r {
                crate::session::machine::Resend::Publish { delivery, .. } => Some(delivery),
                crate::session::machine::Resend::PubRel(_) => None,
            });
            in_flight
                .chain(st.queued().iter())
                .filter(|d| d.qos != QoS::AtMostOnce)
                .map(|d| d.message.clone())
                .collect()
        };
        let origin = format!("{}/held", self.origin);
        let mut queued = 0;
        for m in messages {
            let Ok(Some(body)) = envelope::encode(&m, now) else {
                continue;
            };
            let n = self
                .held_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            let mut headers = HeaderMap::new();
            headers.insert(envelope::ORIGIN, origin.as_str());
            headers.insert(envelope::SEQ, n.to_string().as_str());
            let id = format!("{origin}.{n}");
            let subject = subject::topic_to_subject(&m.topic);
            if self.capture_notified(0, &subject, headers, body, id, notify.clone()) {
                queued += 1;
            }
        }
        queued
    }

    /// This node received `body` (from `origin`, number `seq`) by forwarding while a
    /// session it owns went offline less than [`GAP_WINDOW`] ago: keep it in the stream.
    pub(super) fn write_forwarded(&self, subject: &str, origin: &str, seq: u64, body: Bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(envelope::ORIGIN, origin);
        headers.insert(envelope::SEQ, seq.to_string().as_str());
        // Its own id (not the publisher's): the publisher's copy, if any, may be older
        // than the session's `queuedFrom`; the reader drops the second copy.
        let id = format!("{origin}.{seq}.{}", self.origin);
        self.capture(0, subject, headers, body, id);
    }

    fn done(&self, ticket: u64, stored: bool, notify: Option<mpsc::UnboundedSender<()>>) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(n) = notify {
            let _ = n.send(());
        }
        if stored {
            self.stats.stored.fetch_add(1, Relaxed);
        } else {
            self.stats.failed.fetch_add(1, Relaxed);
        }
        if ticket != 0 {
            self.pending.lock().remove(&ticket);
            self.done.send_modify(|n| *n += 1);
        }
    }
}

/// Writes to the stream in order, awaiting up to [`IN_FLIGHT`] acknowledgements at once;
/// a failed write is tried again (JetStream drops the second copy by its message id)
/// until [`STORE_BUDGET`], or given up at once while JetStream is known to be without
/// quorum (`Health::storage_available`), so publishers are not held for nothing.
async fn run_writes(
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Capture>,
    queue: Weak<Queue>,
    health: Arc<super::health::Health>,
) {
    let mut acks = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((ticket, stored, notify)) = acks.next(), if !acks.is_empty() => {
                match queue.upgrade() {
                    Some(q) => q.done(ticket, stored, notify),
                    None => return,
                }
            }
            c = rx.recv(), if acks.len() < IN_FLIGHT => {
                let Some(c) = c else { return };
                if !health.storage_available() {
                    match queue.upgrade() {
                        Some(q) => q.done(c.ticket, false, c.notify),
                        None => return,
                    }
                    continue;
                }
                let first = js
                    .publish_with_headers(c.subject.clone(), c.headers.clone(), c.body.clone())
                    .await;
                let (js, health) = (js.clone(), health.clone());
                acks.push(async move {
                    let deadline = Instant::now() + STORE_BUDGET;
                    let mut sent = first;
                    loop {
                        let outcome = match sent {
                            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome {
                            Ok(()) => return (c.ticket, true, c.notify),
                            Err(e) if Instant::now() >= deadline || !health.storage_available() => {
                                tracing::warn!(target: "cluster", "a message for offline sessions was not stored in {STREAM}: {e}");
                                return (c.ticket, false, c.notify);
                            }
                            Err(e) => {
                                tracing::debug!(target: "cluster", "storing in {STREAM}: {e}; trying again");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                        }
                        sent = js
                            .publish_with_headers(c.subject.clone(), c.headers.clone(), c.body.clone())
                            .await;
                    }
                });
            }
            else => return,
        }
    }
}

/// Read the backlog of `session` (resumed here, moved from another node) from the stream,
/// from sequence `from`, and queue it for the session. Returns whether it was read to
/// the end (the record may forget `queuedFrom` then).
pub async fn read_backlog(
    queue: &Queue,
    broker: &Broker,
    session: &Arc<Session>,
    generation: u64,
    from: u64,
) -> bool {
    let filters: Vec<String> = {
        let st = session.lock();
        st.subscriptions
            .keys()
            .filter(|f| !f.starts_with("$share/"))
            .cloned()
            .collect()
    };
    if filters.is_empty() {
        return true;
    }
    let mut subjects: Vec<String> = filters
        .iter()
        .flat_map(|f| subject::filter_to_subjects(f))
        .map(|s| queue_subject(&s))
        .collect();
    subjects.sort();
    subjects.dedup();
    let subjects = without_subsumed(subjects);
    let stream = match queue.js.get_stream(STREAM).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(target: "cluster", "reading the backlog of a resumed session: {e}");
            return false;
        }
    };
    let config = |filter_subjects: Vec<String>| OrderedConfig {
        filter_subjects,
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: from.max(1),
        },
        description: Some("Gatehouse: the backlog of a resumed session".to_owned()),
        ..Default::default()
    };
    // Overlapping filter subjects are refused by JetStream: then read every subject and
    // match here.
    let consumer = match stream.create_consumer(config(subjects)).await {
        Ok(c) => c,
        Err(_) => match stream
            .create_consumer(config(vec![format!("{PREFIX}m.>")]))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target: "cluster", "reading the backlog of a resumed session: {e}");
                return false;
            }
        },
    };
    let mut consumer = consumer;
    match consumer.info().await {
        Ok(info) if info.num_pending == 0 => return true,
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(target: "cluster", "reading the backlog of a resumed session: {e}");
            return false;
        }
    }
    let mut messages = match consumer.messages().await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(target: "cluster", "reading the backlog of a resumed session: {e}");
            return false;
        }
    };
    // Bounded, unlike a set of every message read: a second copy of a message is written
    // within seconds of the first, so it is close to it in the stream.
    let mut seen = super::dedup::Seen::default();
    let policy = broker.router.policy();
    loop {
        let next = match tokio::time::timeout(READ_WAIT, messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => {
                tracing::debug!(target: "cluster", "reading a backlog: {e}");
                continue;
            }
            Ok(None) | Err(_) => return false,
        };
        let Ok(info) = next.info() else {
            continue;
        };
        let pending = info.pending;
        let age: Duration = (time::OffsetDateTime::now_utc() - info.published)
            .try_into()
            .unwrap_or(Duration::ZERO);
        let fresh = match envelope::origin_of(next.headers.as_ref()) {
            Ok((origin, seq)) => seen.first_time(origin, seq),
            Err(_) => true,
        };
        {
            let st = session.lock();
            if st.generation != generation || st.ended {
                return false; // taken over, or ended: not ours to read any more
            }
        }
        let now = Instant::now();
        let received = now.checked_sub(age).unwrap_or(now);
        if let (true, Ok(message)) = (fresh, envelope::decode(next.payload.clone(), received)) {
            if message.remaining_expiry(now).is_ok() {
                if let Some(delivery) = delivery_for(session, Arc::new(message)) {
                    queue
                        .stats
                        .delivered
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let enqueued = session.enqueue(delivery, &policy);
                    if enqueued.congested {
                        // Paced by the client: a backlog never overflows its queue.
                        session.wait_drained().await;
                    }
                }
            }
        }
        if pending == 0 {
            return true;
        }
    }
}

/// `subjects` without those another one covers (`a.*` under `a.>`): JetStream refuses a
/// consumer whose filter subjects overlap, and MQTT sessions often hold `a/#` and `a/+`.
fn without_subsumed(subjects: Vec<String>) -> Vec<String> {
    subjects
        .iter()
        .filter(|s| !subjects.iter().any(|t| t != *s && covers(t, s)))
        .cloned()
        .collect()
}

/// Whether every subject `s` matches is matched by `t` (NATS wildcards in both).
fn covers(t: &str, s: &str) -> bool {
    let mut t = t.split('.');
    let mut s = s.split('.');
    loop {
        match (t.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(x)) if x != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// The delivery of `message` to `session` through its matching plain subscriptions
/// (one copy, the highest QoS, every identifier), or none when none matches.
fn delivery_for(session: &Session, message: Arc<Message>) -> Option<Delivery> {
    let st = session.lock();
    let mut qos = None;
    let mut retain = false;
    let mut ids: SmallVec<[u32; 2]> = SmallVec::new();
    for (filter, sub) in &st.subscriptions {
        if filter.starts_with("$share/")
            || !gatehouse_protocol::topic::matches(filter, &message.topic)
        {
            continue;
        }
        let q = sub.options.qos.min(message.qos);
        qos = Some(qos.map_or(q, |old: QoS| old.max(q)));
        retain |= message.retain && sub.options.retain_as_published;
        ids.extend(sub.id);
    }
    Some(Delivery {
        qos: qos?,
        retain,
        subscription_ids: ids,
        seq: None,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsumed_filter_subjects_are_left_out() {
        let got = without_subsumed(
            [
                "ghq.m.a.>",
                "ghq.m.a.*",
                "ghq.m.a",
                "ghq.m.a.b.c",
                "ghq.m.b.*",
                "ghq.m.*.x",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(got, ["ghq.m.a.>", "ghq.m.a", "ghq.m.b.*", "ghq.m.*.x"]);
        assert!(covers("ghq.m.*.x", "ghq.m.a.x"));
        assert!(!covers("ghq.m.*", "ghq.m.>"));
        assert!(!covers("ghq.m.a.>", "ghq.m.a"));
        assert!(covers("ghq.m.>", "ghq.m.a.>"));
    }

    #[test]
    fn queue_subjects_mirror_forwarding_subjects() {
        assert_eq!(queue_subject("gh.m.a.b"), "ghq.m.a.b");
        assert_eq!(queue_subject("gh.m.>"), "ghq.m.>");
    }
}
