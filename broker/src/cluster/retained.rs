//! Retained messages in cluster mode: kept in a JetStream key-value bucket
//! ([`BUCKET`], one key per topic, history 1, `cluster.nats.replicas` copies) and mirrored
//! in memory on every node, in the router's retained store as before.
//!
//! - **Out**: the router reports every change of its store to a
//!   [`RetainedSink`](crate::routing::RetainedSink) (the boundary the session journal
//!   uses on a single node); here that sink is [`RetainedKv`], which puts the message (the
//!   [`envelope`](super::envelope) body) or deletes the key, in order, on one task.
//! - **In**: a watch on the bucket applies every change, this node's own included, in
//!   the bucket's order, through the router's ordinary `retain` (a set, or a clear with an
//!   empty payload) while a thread-local flag tells the sink not to write it back. Every
//!   node thus ends with the bucket's last value per topic, whichever node wrote last.
//!   At start the node loads the whole bucket before it opens its ports.
//! - **Expiry**: the entry keeps the remaining expiry at the time of the put; a node
//!   reading it subtracts the time since the entry was stored (the server's timestamp),
//!   so the message expires at the same moment everywhere. Each node drops expired
//!   messages from memory itself; the clear the router reports for an expired message is
//!   not written to the bucket (it could delete a newer message another node has put
//!   meanwhile); expired entries are skipped when read and replaced by the next put.
//!
//! - **Bound**: the bucket's stream has a `max_bytes` ([`backstop`], discard new) derived
//!   from `broker.maxRetainedMessages` / `maxRetainedBytes`, which bound every node's
//!   mirror and so the live records (at most about half of it). Nothing else may stay:
//!   a put carries the message's expiry as its per-message TTL (`Nats-TTL`, none without
//!   expiry), so JetStream removes an expired message itself; a clear is a purge record
//!   with a [`TOMBSTONE_TTL`], which carries it to every node's watch and then goes; a
//!   clear of a topic this node holds no message for is not written, and the clears this
//!   node writes are paced ([`ClearBudget`]) so that up to [`CLEAR_NODES`] nodes
//!   clearing flat out cannot fill the bucket. The stream allows
//!   TTLs but has no subject delete markers (with them an expiring record of a full
//!   bucket stays for good, see `cluster_statestore_quota.rs`). Should the bucket still
//!   refuse writes as full (clears of more nodes within the TTL), retained PUBLISHes are refused on
//!   this node, as when JetStream does not answer, and the pending change is tried again
//!   until the tombstones' room frees. A bucket created by an older Gatehouse (no limit,
//!   delete markers kept forever) is updated in place at start, and its stale delete
//!   markers and expired records are purged.
//!
//! A change made on this node shows on it at once and may be undone briefly when a
//! concurrent change of another node comes back from the bucket before its own; it
//! settles on the bucket's order. While JetStream has not answered for
//! `cluster.nats.disconnectGrace` ([`health`](super::health)), retained PUBLISHes are
//! refused instead of kept only here.
//!
//! - **Acknowledgement**: a set gets a ticket of the writer ([`RetainedKv`] is the
//!   [`Durability`] the router returns with it), settled in order when JetStream has
//!   acknowledged the put (stored on a majority of the replicas) or the writer gave it
//!   up. The publisher's PUBACK/PUBREC waits for it in the connection's held
//!   acknowledgements (no thread waits), at most [`ACK_WAIT_LIMIT`]: past it, or when
//!   given up, a v5 publisher gets 0x80 Unspecified error. A clear is not waited for.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_protocol::{PublishProperties, QoS};
use tokio::sync::mpsc;

use super::{envelope, Shared};
use crate::message::Message;
use crate::registry::Broker;
use crate::routing::{Durability, RetainedCaps, RetainedSink, Settled};

/// The bucket of retained messages.
pub const BUCKET: &str = "gatehouse-retained";

/// Keys longer than this are not stored (a KV key is part of a subject): such a
/// retained message stays on its node only.
const MAX_KEY: usize = 3072;

/// How long a clear's record stays in the bucket (JetStream's per-message TTL): long
/// enough for every node's watch to deliver it (a watch that stalls is replaced within
/// seconds, `bucket::follow`); after it the topic is simply absent from the bucket.
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// Bytes per record the [`backstop`] allows beside what `maxRetainedBytes` counts (topic,
/// payload, properties): the subject (the topic again, in base64, with the bucket's
/// prefix), the headers, the PUBLISH packet's framing and JetStream's own.
const RECORD_OVERHEAD: u64 = 512;

/// The bucket's `max_bytes`: what no flood of retained messages and clears, on any number
/// of nodes, can take every NATS server's disk past. A record takes at most twice what
/// `maxRetainedBytes` counts for it (the topic is in the subject and in the body) plus
/// [`RECORD_OVERHEAD`], so the live records every node's mirror allows fill at most half
/// of `2 × (2 × maxRetainedBytes + RECORD_OVERHEAD × maxRetainedMessages)`; the other half
/// holds the clears of the last [`TOMBSTONE_TTL`] (nats-server refuses EVERY write to a
/// full bucket, clears included, so live records must leave room).
pub fn backstop(caps: RetainedCaps) -> i64 {
    let bytes = (caps.max_bytes as u64)
        .saturating_mul(2)
        .saturating_add((caps.max_messages as u64).saturating_mul(RECORD_OVERHEAD))
        .saturating_mul(2);
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The number of nodes whose clears together cannot fill the bucket's room for them (its
/// half beside the live records, see [`backstop`]): each node writes clears' records of
/// at most `room / CLEAR_NODES` bytes in any [`TOMBSTONE_TTL`] ([`ClearBudget`]).
pub const CLEAR_NODES: u64 = 8;

/// What a clear's record is charged against [`ClearBudget`]: twice the topic (the key is
/// its base64 in the subject: 4/3 of it) and this for the subject's prefix (23 bytes),
/// the purge's headers (`KV-Operation`, `Nats-Rollup`, `Nats-TTL`) and JetStream's own
/// (measured: 133 bytes in all for a 9-byte topic, so about 100 beside prefix and key).
const CLEAR_OVERHEAD: u64 = 160;

/// This node's budget for clears' records in the bucket: a token bucket in bytes holding
/// at most `room / (2 × CLEAR_NODES)` and filling at that much per [`TOMBSTONE_TTL`], so
/// the records of the clears this node wrote in the last [`TOMBSTONE_TTL`] (those still
/// in the bucket) take at most `room / CLEAR_NODES`, plus one clear per client that
/// cleared while it was spent. A clear is never refused: it is written, and the budget
/// goes into debt; the client that made it, and any client clearing while it is in debt,
/// is not read until it is repaid ([`RetainedSink::paced_until`]), so a client that sets
/// and clears in a loop is slowed to the budget's rate instead of filling the bucket and
/// making every node refuse retained PUBLISHes.
struct ClearBudget {
    /// Bytes available now; negative: the debt.
    tokens: f64,
    capacity: f64,
    /// Bytes per second.
    rate: f64,
    at: Instant,
}

impl ClearBudget {
    /// The budget for a bucket of `max_bytes` ([`backstop`]).
    fn new(max_bytes: i64) -> ClearBudget {
        let room = (max_bytes.max(0) as u64 / 2) as f64;
        let capacity = room / (2 * CLEAR_NODES) as f64;
        ClearBudget {
            tokens: capacity,
            capacity,
            rate: capacity / TOMBSTONE_TTL.as_secs_f64(),
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.at = now;
    }

    /// A clear of `topic` is written.
    fn charge(&mut self, topic: &str, now: Instant) {
        self.refill(now);
        self.tokens -= (2 * topic.len() as u64 + CLEAR_OVERHEAD) as f64;
    }

    /// When the debt is repaid; `None` when there is none.
    fn repaid_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.tokens >= 0.0 || self.rate <= 0.0 {
            return None;
        }
        let wait = Duration::from_secs_f64((-self.tokens / self.rate).min(3600.0));
        Some(now + wait)
    }
}

thread_local! {
    /// Set while a change read from the bucket is applied to the local store, so that
    /// the sink does not write it back.
    static APPLYING: Cell<bool> = const { Cell::new(false) };
}

/// The bucket key of `topic`: base64url without padding (KV keys allow only
/// `[-/_=.A-Za-z0-9]`, MQTT topics anything but wildcards).
pub fn key_of(topic: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(topic)
}

/// The topic of a bucket key.
pub fn topic_of(key: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// How long a retained PUBLISH's acknowledgement waits at most for the bucket to store
/// its message ([`Durability::wait_limit`]): past it the publisher gets 0x80 Unspecified
/// error (v5), since the message may not be kept. The write itself goes on (in order), so
/// a message the bucket stores later is still retained everywhere. Longer than a leader
/// election of the bucket after the loss of one NATS server (measured up to 10 s), short
/// enough that the publisher's later acknowledgements, held behind this one, do not
/// stall for long when JetStream has lost quorum.
pub const ACK_WAIT_LIMIT: Duration = Duration::from_secs(15);

/// A change for the writer: the key, the message to put (`None`: a clear), and the ticket
/// a publisher's acknowledgement waits for (sets only).
type Change = (String, Option<Put>, Option<u64>);

/// The writer's tickets: each retained message this node sets gets the next one, and
/// the writer settles them in order (as it writes), so `settled` is the highest ticket
/// written or given up and `failed` lists the recent ones given up.
struct Tickets {
    next: AtomicU64,
    settled: tokio::sync::watch::Sender<u64>,
    failed: parking_lot::Mutex<VecDeque<u64>>,
}

/// How many tickets given up [`Tickets`] remembers (an acknowledgement looks its own up
/// as soon as it settles, long before so many more have failed).
const FAILED_KEPT: usize = 4096;

impl Tickets {
    fn new() -> Tickets {
        Tickets {
            next: AtomicU64::new(1),
            settled: tokio::sync::watch::Sender::new(0),
            failed: parking_lot::Mutex::new(VecDeque::new()),
        }
    }

    fn issue(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The writer is done with `ticket` (tickets come here in order).
    fn settle(&self, ticket: u64, kept: bool) {
        if !kept {
            let mut failed = self.failed.lock();
            if failed.len() == FAILED_KEPT {
                failed.pop_front();
            }
            failed.push_back(ticket);
        }
        self.settled.send_replace(ticket);
    }

    fn state(&self, ticket: u64) -> Settled {
        if *self.settled.borrow() < ticket {
            Settled::Pending
        } else if self.failed.lock().contains(&ticket) {
            Settled::Failed
        } else {
            Settled::Kept
        }
    }

    fn wait(&self, ticket: u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let mut rx = self.settled.subscribe();
        Box::pin(async move {
            if rx.wait_for(|s| *s >= ticket).await.is_err() {
                // The writer is gone (the broker with it): the wait limit ends it.
                std::future::pending::<()>().await;
            }
        })
    }
}

/// The router's retained sink in cluster mode.
pub struct RetainedKv {
    writes: mpsc::UnboundedSender<Change>,
    /// The publishers' acknowledgements wait for these ([`Durability`]).
    tickets: Arc<Tickets>,
    /// The topics of the retained messages held here (as the router's store, which
    /// reports every change) and when each expires: a clear of a topic not held is not
    /// written (it would only add a record), and a clear reported after the expiry is the
    /// router dropping an expired message, not a client clearing the topic.
    held: parking_lot::Mutex<HashMap<String, Option<Instant>>>,
    shared: Arc<Shared>,
    /// Failure handling: whether JetStream takes writes now.
    health: Arc<super::health::Health>,
    /// Set while the bucket refuses this node's writes as full (its `max_bytes`).
    full: Arc<AtomicBool>,
    /// This node's rate of clears' records.
    clears: parking_lot::Mutex<ClearBudget>,
    /// Dropped with the router: tells the watching task to stop.
    _alive: tokio::sync::watch::Sender<()>,
}

impl RetainedSink for RetainedKv {
    fn enabled(&self) -> bool {
        true
    }

    fn wanted(&self, _message: &Message) -> bool {
        true
    }

    fn changed(&self, topic: &str, message: Option<&Message>) -> Option<u64> {
        let now = Instant::now();
        let previous = {
            let mut held = self.held.lock();
            match message {
                Some(m) => held.insert(topic.to_owned(), m.expires_at),
                None => held.remove(topic),
            }
        };
        if APPLYING.get() {
            return None;
        }
        if message.is_none() {
            match previous {
                // Nothing held: nothing to clear.
                None => return None,
                // Expired: JetStream removes it (its TTL).
                Some(Some(at)) if at <= now => return None,
                Some(_) => {}
            }
        }
        let key = key_of(topic);
        if key.len() > MAX_KEY {
            self.shared
                .stats
                .not_forwarded
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if message.is_none() {
            self.clears.lock().charge(topic, now);
        }
        let value = match message.map(|m| (envelope::encode(m, now), m.remaining_expiry(now))) {
            None => None,
            Some((Ok(Some(body)), Ok(ttl))) => Some(Put {
                body,
                ttl: ttl.map(u64::from),
            }),
            // Expired already, or not encodable: nothing to keep.
            Some(_) => return None,
        };
        // A set is acknowledged once the bucket has it; a clear is not waited for (at
        // worst a node dying at once leaves the older message).
        let ticket = value.is_some().then(|| self.tickets.issue());
        let _ = self.writes.send((key, value, ticket));
        ticket
    }

    fn available(&self) -> bool {
        // A change read from the bucket is applied whatever the probes say.
        APPLYING.get() || (self.health.storage_available() && !self.full.load(Ordering::Relaxed))
    }

    fn paced_until(&self) -> Option<Instant> {
        self.clears.lock().repaid_at(Instant::now())
    }
}

/// The bucket's writes as a publisher's acknowledgement waits for them: a retained
/// PUBLISH at QoS 1/2 is acknowledged once JetStream has stored its message (on a
/// majority of the replicas), or with 0x80 after [`ACK_WAIT_LIMIT`].
impl Durability for RetainedKv {
    fn settled(&self, ticket: u64) -> Settled {
        self.tickets.state(ticket)
    }

    fn wait_settled(
        &self,
        ticket: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        self.tickets.wait(ticket)
    }

    fn wait_limit(&self) -> Option<Duration> {
        Some(ACK_WAIT_LIMIT)
    }
}

/// A retained message to put: the envelope body and its TTL in seconds (the remaining
/// message expiry, rounded up; `None`: it does not expire).
struct Put {
    body: Bytes,
    ttl: Option<u64>,
}

/// The bucket's stream ([`super::bucket::bounded_stream_config`]; see the module's
/// **Bound**).
fn stream_config(replicas: usize, max_bytes: i64) -> async_nats::jetstream::stream::Config {
    super::bucket::bounded_stream_config(
        BUCKET,
        "Gatehouse retained messages (one key per topic)",
        replicas,
        max_bytes,
    )
}

/// Open (or create) the bucket, make [`RetainedKv`] the router's retained sink, load the
/// bucket into memory, and start the tasks that write and watch it.
pub(super) async fn start(
    client: &async_nats::Client,
    replicas: usize,
    broker: &Arc<Broker>,
    shared: &Arc<Shared>,
    health: &Arc<super::health::Health>,
) -> Result<(), String> {
    let max_bytes = backstop(broker.router.retained_caps());
    let (kv, mut watch) =
        super::bucket::open_stream_watched(client, BUCKET, stream_config(replicas, max_bytes))
            .await?;
    let (writes, rx) = mpsc::unbounded_channel();
    let (alive, alive_rx) = tokio::sync::watch::channel(());
    let full = Arc::new(AtomicBool::new(false));
    let tickets = Arc::new(Tickets::new());
    let sink = Arc::new(RetainedKv {
        writes,
        tickets: tickets.clone(),
        held: parking_lot::Mutex::new(HashMap::new()),
        shared: shared.clone(),
        health: health.clone(),
        full: full.clone(),
        clears: parking_lot::Mutex::new(ClearBudget::new(max_bytes)),
        _alive: alive,
    });
    if broker.router.retained_sink.set(sink).is_err() {
        return Err("retained messages already have a sink".to_owned());
    }
    let js = async_nats::jetstream::new(client.clone());
    tokio::spawn(write(kv.clone(), js, rx, health.clone(), full, tickets));
    let mut revision = 0;
    let stored = kv
        .status()
        .await
        .map(|s| s.values())
        .map_err(|e| format!("the {BUCKET} bucket: {e}"))?;
    // Records an older Gatehouse may have left for good (delete markers, expired
    // messages, without a TTL): purged once read.
    let mut stale = Vec::new();
    if stored > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // A record may expire (TTL) after the count and before the watch delivers it,
            // and the one announced last may then never come: a second without one ends
            // the load.
            let idle = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
            let next = tokio::time::timeout_at(idle, watch.next()).await;
            let entry = match next {
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(e))) => return Err(format!("reading the {BUCKET} bucket: {e}")),
                Err(_) if tokio::time::Instant::now() < deadline => break,
                Ok(None) | Err(_) => {
                    return Err(format!("the {BUCKET} bucket could not be read within 30 s"))
                }
            };
            revision = entry.revision;
            let last = entry.delta == 0;
            if may_be_stale(&entry) {
                stale.push((entry.key.clone(), entry.revision));
            }
            apply(broker, entry);
            if last {
                break;
            }
        }
    }
    purge_stale(&kv, stale).await;
    tracing::info!(
        target: "cluster",
        retained = broker.router.retained_count(),
        "retained messages loaded from the {BUCKET} bucket"
    );
    tokio::spawn(follow(
        kv,
        watch,
        revision,
        Arc::downgrade(broker),
        alive_rx,
    ));
    Ok(())
}

/// How many times a change is tried before it is given up (about 30 s in all): a write
/// that timed out while JetStream was busy or electing a leader must not leave this node's
/// retained message different from every other node's.
const WRITE_ATTEMPTS: u32 = 8;

/// How long a change the bucket refuses as full is tried again: the clears' records that
/// fill it are gone after [`TOMBSTONE_TTL`].
const FULL_FOR: Duration = Duration::from_secs(TOMBSTONE_TTL.as_secs() + 30);

/// Writes this node's changes to the bucket, in order (a change is retried before the
/// next is written, so a later change never lands before an earlier one). While
/// JetStream is known to be unavailable ([`health`](super::health)), a failed change
/// waits for it to come back instead of spending its attempts, so a change accepted just
/// before the loss of quorum is written once quorum is back, and at once. While the
/// bucket refuses the change as full, `full` is set (retained PUBLISHes are refused here)
/// and the change is tried again for up to [`FULL_FOR`].
async fn write(
    kv: async_nats::jetstream::kv::Store,
    js: async_nats::jetstream::Context,
    mut rx: mpsc::UnboundedReceiver<Change>,
    health: Arc<super::health::Health>,
    full: Arc<AtomicBool>,
    tickets: Arc<Tickets>,
) {
    while let Some((key, value, ticket)) = rx.recv().await {
        let subject = format!("{}{}", kv.prefix, key);
        let mut headers = async_nats::HeaderMap::new();
        let body = match &value {
            Some(put) => {
                if let Some(ttl) = put.ttl {
                    headers.insert(
                        async_nats::header::NATS_MESSAGE_TTL,
                        ttl.to_string().as_str(),
                    );
                }
                put.body.clone()
            }
            None => {
                // A purge, as `kv.purge` writes it, that JetStream removes after its TTL.
                headers.insert("KV-Operation", "PURGE");
                headers.insert(async_nats::header::NATS_ROLLUP, "sub");
                headers.insert(
                    async_nats::header::NATS_MESSAGE_TTL,
                    TOMBSTONE_TTL.as_secs().to_string().as_str(),
                );
                Bytes::new()
            }
        };
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        let mut full_since: Option<Instant> = None;
        let mut kept = false;
        while attempt < WRITE_ATTEMPTS {
            let result = match js
                .publish_with_headers(subject.clone(), headers.clone(), body.clone())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()),
                Err(e) => Err(e),
            };
            let Err(e) = result else {
                kept = true;
                break;
            };
            if is_full(&e) {
                let since = *full_since.get_or_insert_with(Instant::now);
                if !full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(target: "cluster", "the {BUCKET} bucket is full (its max_bytes, from broker.maxRetainedMessages and maxRetainedBytes): retained messages are refused on this node until clears expire");
                }
                if since.elapsed() >= FULL_FOR {
                    tracing::warn!(target: "cluster", "retained message not stored in {BUCKET}: the bucket stayed full for {FULL_FOR:?}");
                    break;
                }
                if rx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if !health.storage_available() {
                tracing::debug!(target: "cluster", "retained message waits for JetStream: {e}");
                while !health.storage_available() {
                    if rx.is_closed() {
                        // The broker is gone.
                        return;
                    }
                    tokio::time::sleep(super::health::PROBE_EVERY / 5).await;
                }
                continue;
            }
            attempt += 1;
            if attempt == WRITE_ATTEMPTS {
                tracing::warn!(target: "cluster", "retained message not stored in {BUCKET} after {attempt} attempts: {e}");
                break;
            }
            tracing::debug!(target: "cluster", attempt, "retained message not stored in {BUCKET} yet: {e}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(8));
        }
        // Written or given up: nothing waits here now (a give-up must not leave retained
        // PUBLISHes refused for good; the next refused write sets it again).
        full.store(false, Ordering::Relaxed);
        if let Some(ticket) = ticket {
            tickets.settle(ticket, kept);
        }
    }
}

/// Whether JetStream refused a write because the bucket is at its `max_bytes` (10077
/// "maximum bytes exceeded", discard new) or the account or server has no storage left.
fn is_full(e: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::ErrorCode;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(js) = s.downcast_ref::<async_nats::jetstream::Error>() {
            return match js.error_code() {
                ErrorCode::STREAM_STORE_FAILED => js.to_string().contains("maximum"),
                ErrorCode::STORAGE_RESOURCES_EXCEEDED | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED => {
                    true
                }
                _ => false,
            };
        }
        source = s.source();
    }
    false
}

/// Whether `entry` (read at start) may be a record nothing will ever remove, written by an
/// older Gatehouse without a TTL: a delete or purge, or an expired message ([`purge_stale`]
/// checks for the TTL).
fn may_be_stale(entry: &async_nats::jetstream::kv::Entry) -> bool {
    match entry.operation {
        async_nats::jetstream::kv::Operation::Delete
        | async_nats::jetstream::kv::Operation::Purge => true,
        async_nats::jetstream::kv::Operation::Put => {
            let now = Instant::now();
            let age: Duration = (time::OffsetDateTime::now_utc() - entry.created)
                .try_into()
                .unwrap_or(Duration::ZERO);
            envelope::decode(entry.value.clone(), now)
                .ok()
                .and_then(|m| m.expires_at)
                .is_some_and(|at| age > at.saturating_duration_since(now))
        }
    }
}

/// Purge those of `candidates` (key, revision; [`may_be_stale`]) that carry no TTL (an
/// older Gatehouse's): each up to its own revision only, so a newer record of the key
/// written meanwhile stays. Every node starting does it; the second finds nothing left.
async fn purge_stale(kv: &async_nats::jetstream::kv::Store, candidates: Vec<(String, u64)>) {
    let mut purged = 0;
    for (key, revision) in candidates {
        let Ok(message) = kv.stream.get_raw_message(revision).await else {
            // Gone meanwhile (its TTL, or replaced).
            continue;
        };
        if message
            .headers
            .get(async_nats::header::NATS_MESSAGE_TTL)
            .is_some()
        {
            continue;
        }
        let subject = format!("{}{}", kv.prefix, key);
        match kv
            .stream
            .purge()
            .filter(subject)
            .sequence(revision + 1)
            .await
        {
            Ok(_) => purged += 1,
            Err(e) => {
                tracing::debug!(target: "cluster", "purging a stale record of {BUCKET}: {e}")
            }
        }
    }
    if purged > 0 {
        tracing::info!(target: "cluster", purged, "records without a TTL (an older Gatehouse's clears and expired messages) purged from the {BUCKET} bucket");
    }
}

/// Applies the bucket's changes as they come; watches again from the last revision seen
/// when the watch ends (NATS reconnected). Ends with the broker.
async fn follow(
    kv: async_nats::jetstream::kv::Store,
    watch: async_nats::jetstream::kv::Watch,
    revision: u64,
    broker: Weak<Broker>,
    mut alive: tokio::sync::watch::Receiver<()>,
) {
    tokio::select! {
        _ = super::bucket::follow(kv, watch, revision, BUCKET, broker, apply) => {}
        // Err: the sink, and so the broker, is gone.
        _ = alive.changed() => {}
    }
}

/// Apply one entry of the bucket to this node's retained store.
fn apply(broker: &Broker, entry: async_nats::jetstream::kv::Entry) {
    let Some(topic) = topic_of(&entry.key) else {
        return;
    };
    let now = Instant::now();
    let message = match entry.operation {
        async_nats::jetstream::kv::Operation::Put => {
            match envelope::decode(entry.value, now) {
                Ok(mut m) => {
                    // Expiry counts from when the entry was stored, not from now.
                    let age = (time::OffsetDateTime::now_utc() - entry.created)
                        .try_into()
                        .unwrap_or(Duration::ZERO);
                    m.expires_at = m.expires_at.map(|at| at.checked_sub(age).unwrap_or(now));
                    m.retain = true;
                    if m.remaining_expiry(now).is_err() || m.payload.is_empty() {
                        cleared(topic)
                    } else {
                        m
                    }
                }
                Err(e) => {
                    tracing::debug!(target: "cluster", topic = ?topic, "bad entry in {BUCKET}: {e}");
                    return;
                }
            }
        }
        async_nats::jetstream::kv::Operation::Delete
        | async_nats::jetstream::kv::Operation::Purge => cleared(topic),
    };
    APPLYING.set(true);
    let _ = broker.router.retain(&Arc::new(message));
    APPLYING.set(false);
}

/// What clears `topic` through the router: a retained message with an empty payload.
fn cleared(topic: String) -> Message {
    Message {
        topic,
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: PublishProperties::default(),
        expires_at: None,
        origin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_reversible() {
        for topic in ["a/b", "a.b/c d", "/", "häuser/*/>", "$SYS/x"] {
            let key = key_of(topic);
            assert!(key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(topic_of(&key).as_deref(), Some(topic));
        }
        assert_eq!(topic_of("!"), None);
    }

    #[test]
    fn the_backstop_leaves_half_for_clears() {
        let caps = RetainedCaps {
            max_messages: 20,
            max_bytes: 2000,
        };
        assert_eq!(backstop(caps), 2 * (2 * 2000 + 512 * 20));
        let huge = RetainedCaps {
            max_messages: usize::MAX,
            max_bytes: usize::MAX,
        };
        assert_eq!(backstop(huge), i64::MAX);
    }

    #[test]
    fn the_clear_budget_goes_into_debt_and_is_repaid_at_its_rate() {
        // Room for clears 16,000 bytes: 1,000 per node at once, 1,000 per minute.
        let mut b = ClearBudget::new(32_000);
        let t0 = b.at;
        let topic = "t".repeat(170); // 500 bytes a clear
        b.charge(&topic, t0);
        assert_eq!(b.repaid_at(t0), None);
        b.charge(&topic, t0);
        assert_eq!(b.repaid_at(t0), None);
        b.charge(&topic, t0);
        // 500 in debt at 1,000 per 60 s: 30 s.
        let at = b.repaid_at(t0).expect("in debt");
        assert!((at - t0).as_secs_f64() > 29.9 && (at - t0).as_secs_f64() < 30.1);
        assert_eq!(b.repaid_at(t0 + Duration::from_secs(31)), None);
        // Full again after a minute, never more.
        let mut b = ClearBudget::new(32_000);
        let t0 = b.at;
        b.refill(t0 + Duration::from_secs(600));
        assert_eq!(b.tokens, b.capacity);
    }
}
