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
//! A change made on this node shows on it at once and may be undone briefly when a
//! concurrent change of another node comes back from the bucket before its own; it
//! settles on the bucket's order. The publisher's acknowledgement does not wait for the
//! bucket yet; while JetStream has not answered for `cluster.nats.disconnectGrace`
//! ([`health`](super::health)), retained PUBLISHes are refused instead of kept only here.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
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
use crate::routing::RetainedSink;

/// The bucket of retained messages.
pub const BUCKET: &str = "gatehouse-retained";

/// Keys longer than this are not stored (a KV key is part of a subject): such a
/// retained message stays on its node only.
const MAX_KEY: usize = 3072;

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

/// The router's retained sink in cluster mode.
pub struct RetainedKv {
    writes: mpsc::UnboundedSender<(String, Option<Bytes>)>,
    /// When each expiring retained message held here expires: a clear reported after that
    /// is the router dropping an expired message, not a client clearing the topic.
    expiry: parking_lot::Mutex<HashMap<String, Instant>>,
    shared: Arc<Shared>,
    /// Failure handling: whether JetStream takes writes now.
    health: Arc<super::health::Health>,
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
            let mut expiry = self.expiry.lock();
            match message.and_then(|m| m.expires_at) {
                Some(at) => expiry.insert(topic.to_owned(), at),
                None => expiry.remove(topic),
            }
        };
        if APPLYING.get() {
            return None;
        }
        if message.is_none() && previous.is_some_and(|at| at <= now) {
            return None;
        }
        let key = key_of(topic);
        if key.len() > MAX_KEY {
            self.shared
                .stats
                .not_forwarded
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let value = match message.map(|m| envelope::encode(m, now)) {
            None => None,
            Some(Ok(Some(body))) => Some(body),
            // Expired already, or not encodable: nothing to keep.
            Some(Ok(None)) | Some(Err(_)) => return None,
        };
        let _ = self.writes.send((key, value));
        None
    }

    fn available(&self) -> bool {
        // A change read from the bucket is applied whatever the probes say.
        APPLYING.get() || self.health.storage_available()
    }
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
    let (kv, mut watch) = super::bucket::open_watched(
        client,
        BUCKET,
        "Gatehouse retained messages (one key per topic)",
        replicas,
    )
    .await?;
    let (writes, rx) = mpsc::unbounded_channel();
    let (alive, alive_rx) = tokio::sync::watch::channel(());
    let sink = Arc::new(RetainedKv {
        writes,
        expiry: parking_lot::Mutex::new(HashMap::new()),
        shared: shared.clone(),
        health: health.clone(),
        _alive: alive,
    });
    if broker.router.retained_sink.set(sink).is_err() {
        return Err("retained messages already have a sink".to_owned());
    }
    tokio::spawn(write(kv.clone(), rx, health.clone()));
    let mut revision = 0;
    let stored = kv
        .status()
        .await
        .map(|s| s.values())
        .map_err(|e| format!("the {BUCKET} bucket: {e}"))?;
    if stored > 0 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, watch.next()).await;
            let entry = match next {
                Ok(Some(Ok(entry))) => entry,
                Ok(Some(Err(e))) => return Err(format!("reading the {BUCKET} bucket: {e}")),
                Ok(None) | Err(_) => {
                    return Err(format!("the {BUCKET} bucket could not be read within 30 s"))
                }
            };
            revision = entry.revision;
            let last = entry.delta == 0;
            apply(broker, entry);
            if last {
                break;
            }
        }
    }
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

/// Writes this node's changes to the bucket, in order (a change is retried before the
/// next is written, so a later change never lands before an earlier one). While
/// JetStream is known to be unavailable ([`health`](super::health)), a failed change
/// waits for it to come back instead of spending its attempts, so a change accepted just
/// before the loss of quorum is written once quorum is back, and at once.
async fn write(
    kv: async_nats::jetstream::kv::Store,
    mut rx: mpsc::UnboundedReceiver<(String, Option<Bytes>)>,
    health: Arc<super::health::Health>,
) {
    while let Some((key, value)) = rx.recv().await {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        while attempt < WRITE_ATTEMPTS {
            let result = match &value {
                Some(body) => kv
                    .put(&key, body.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => kv.delete(&key).await.map_err(|e| e.to_string()),
            };
            let Err(e) = result else {
                break;
            };
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
}
