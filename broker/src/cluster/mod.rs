//! Cluster mode (issue 15): this node's link to the other nodes through NATS.
//!
//! Each node is an ordinary NATS client (`async-nats`). What it does so far is publish
//! forwarding over core NATS (ARCHITECTURE.md "Cluster mode"):
//!
//! - **Interest**: one NATS subscription per distinct local filter (two for a filter
//!   ending in `/#`, see [`subject`]), counted as local subscriptions come and go (the
//!   router reports each through [`ClusterLink::interest`]); `$share/<group>/<filter>` is a
//!   queue subscription whose queue name is derived from group and filter (NATS merges
//!   queue groups of one name across subjects, MQTT keeps them apart). Subscribing and
//!   unsubscribing happen in order on one task.
//! - **Out**: a message published here goes to this node's plain subscribers at once
//!   (the router) and, through a bounded outbox and one task, to NATS on the topic's
//!   subject, as an MQTT PUBLISH packet ([`envelope`]) with this node's origin and a
//!   sequence number in headers.
//! - **In**: a message from a plain subscription is dropped when this node sent it (it
//!   was delivered here already) or when another subscription of this node brought it
//!   already ([`dedup`]); otherwise the router delivers it to every matching local plain
//!   subscription. A message from a queue subscription goes to one local member of that
//!   group, whoever sent it (the publishing node leaves shared groups to NATS).
//!
//! Retained messages live in a JetStream key-value bucket, mirrored in memory on every node
//! ([`retained`]).
//!
//! The state store's keys live in another bucket, read and written by compare-and-set,
//! with KEYNOTIFY driven by a watch on every node ([`statestore`]).
//!
//! Sessions are owned by one node at a time, claimed by compare-and-set in a third bucket
//! and watched for takeovers by other nodes ([`sessions`]).
//!
//! When NATS fails under the node ([`health`]): cut off for longer than
//! `cluster.nats.disconnectGrace`, it disconnects its clients and refuses CONNECTs until
//! NATS is back; while JetStream has no quorum, retained PUBLISHes are refused.
//!
//! QoS 1/2 messages for offline persistent sessions are also written to a JetStream
//! stream, and read back by the node where such a session resumes ([`queue`]).

mod bucket;
pub mod dedup;
pub mod envelope;
pub mod health;
pub mod queue;
pub mod retained;
pub mod sessions;
pub mod statestore;
pub mod subject;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use gatehouse_protocol::QoS;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::message::Message;
use crate::registry::Broker;
use crate::routing::{ClusterLink, Forwarded};
use crate::session::Congestion;

/// Messages waiting for the NATS connection. Past [`OUTBOX_HIGH`] the outbox counts as
/// congested: the publishers whose messages find it so stop being read until it drains
/// to half (backpressure, as for a slow local subscriber), for at most the hold limit of
/// their QoS (`session::QOS0_HOLD_LIMIT`, `HOLD_LIMIT`: NATS stalled). A full outbox
/// drops what does not fit, counted in [`ClusterStats::not_forwarded`]: forwarding is at
/// most once until messages are kept in JetStream.
const OUTBOX: usize = 16 * 1024;
/// Queued messages from which the outbox holds publishers back.
const OUTBOX_HIGH: usize = OUTBOX * 3 / 4;

/// Messages async-nats buffers per subscription before it drops (slow consumer). Below
/// [`dedup::WINDOW`], so copies reordered between subscriptions stay inside the window.
const SUBSCRIPTION_CAPACITY: usize = 32 * 1024;

/// How long start-up waits for a first NATS connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.nats.servers[{index}]: `{url}` is not a NATS URL: {reason}")]
    Url {
        index: usize,
        url: String,
        reason: String,
    },
    #[error("cluster.nats.credentialsFile: {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to NATS ({servers}): {reason}")]
    Connect { servers: String, reason: String },
    /// JetStream did not give the retained messages' bucket.
    #[error("retained messages: {0}")]
    Retained(String),
    /// JetStream did not give the state store's bucket.
    #[error("state store: {0}")]
    StateStore(String),
    /// JetStream did not give the sessions' bucket.
    #[error("sessions: {0}")]
    Sessions(String),
    /// JetStream did not give the stream of messages for offline sessions.
    #[error("messages for offline sessions: {0}")]
    Queue(String),
}

/// What crossed between nodes (for tests and, later, metrics).
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages handed to NATS.
    pub forwarded: AtomicU64,
    /// Messages not forwarded: subject too long, body above NATS's maximum payload,
    /// outbox full, or a NATS publish error.
    pub not_forwarded: AtomicU64,
    /// Copies received from NATS (every subscription's).
    pub received: AtomicU64,
    /// Of those: this node's own messages, and copies already delivered.
    pub own: AtomicU64,
    pub duplicates: AtomicU64,
    /// Received copies that were not a message of another node (bad headers or body).
    pub malformed: AtomicU64,
}

/// One local subscription as NATS sees it: a filter, shared in a group or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Interest {
    filter: String,
    group: Option<String>,
}

enum Command {
    Subscribe(Interest),
    Unsubscribe(Interest),
}

/// What the reader tasks share with the link.
struct Shared {
    /// `<nodeName>/<random per start>`: the origin header of this node's messages.
    origin: String,
    seen: parking_lot::Mutex<dedup::Seen>,
    stats: ClusterStats,
    /// The outbox's congestion, which publishers wait on (set by `forward`, cleared by
    /// `run_outbox` once the outbox has drained to half).
    outbox_congestion: Congestion,
    /// The sequence number of the last message written to the NATS connection's socket
    /// (`run_outbox` flushes before it moves this): the held PUBACK/PUBRECs wait on it.
    flushed: tokio::sync::watch::Sender<u64>,
    /// Messages for offline sessions (set once at start, before any subscription).
    queue: std::sync::OnceLock<Arc<queue::Queue>>,
}

/// This node's link to the cluster; the router holds it as its [`ClusterLink`].
pub struct Cluster {
    node: String,
    shared: Arc<Shared>,
    /// Sequence numbers, in outbox order: taken with `outbox_order` held, so a message
    /// never enters the outbox behind one with a higher number (`flushed` relies on it).
    seq: AtomicU64,
    outbox_order: parking_lot::Mutex<()>,
    /// Local subscriptions per (filter, group); a NATS subscription exists while > 0.
    interest: parking_lot::Mutex<HashMap<Interest, usize>>,
    commands: mpsc::UnboundedSender<Command>,
    outbox: mpsc::Sender<Outgoing>,
    max_payload: AtomicUsize,
    client: async_nats::Client,
    /// Failure handling: whether NATS and JetStream are there ([`health`]).
    health: Arc<health::Health>,
    /// Messages for offline sessions ([`queue`]).
    queue: Arc<queue::Queue>,
}

impl Cluster {
    /// Connect to NATS and start the tasks that subscribe, publish and receive for
    /// `broker`. Fails when no server of `settings` answers within 10 s.
    pub async fn connect(
        settings: &gatehouse_config::Cluster,
        broker: &Arc<Broker>,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let node = settings.node_name.clone().unwrap_or_else(host_name);
        let nats = &settings.nats;
        let mut servers = Vec::new();
        for (index, url) in nats.servers.iter().enumerate() {
            let addr: async_nats::ServerAddr =
                url.parse().map_err(|e: std::io::Error| ClusterError::Url {
                    index,
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            servers.push(addr);
        }
        // Failure handling: the connection events also go to the health task.
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("gatehouse {node}"))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .connection_timeout(CONNECT_TIMEOUT)
            .ping_interval(health::PING_INTERVAL)
            .event_callback(move |event| {
                let link_tx = link_tx.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(target: "cluster", "connected to NATS");
                            let _ = link_tx.send(health::Link::Up);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!(
                                target: "cluster",
                                "disconnected from NATS: messages are not forwarded until it reconnects"
                            );
                            let _ = link_tx.send(health::Link::Down);
                        }
                        other => tracing::info!(target: "cluster", "NATS: {other}"),
                    }
                }
            });
        if let Some(path) = &nats.credentials_file {
            options = options.credentials_file(path).await.map_err(|source| {
                ClusterError::Credentials {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        }
        if let Some(tls) = &nats.tls {
            options = options.require_tls(true);
            if let Some(ca) = &tls.ca_file {
                options = options.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
        }
        let listed = nats.servers.join(", ");
        let client = tokio::time::timeout(CONNECT_TIMEOUT, options.connect(servers))
            .await
            .map_err(|_| ClusterError::Connect {
                servers: listed.clone(),
                reason: format!("no answer within {CONNECT_TIMEOUT:?}"),
            })?
            .map_err(|e| ClusterError::Connect {
                servers: listed,
                reason: e.to_string(),
            })?;
        let shared = Arc::new(Shared {
            origin: format!("{node}/{}", instance_id()),
            seen: parking_lot::Mutex::new(dedup::Seen::default()),
            stats: ClusterStats::default(),
            outbox_congestion: Congestion::default(),
            flushed: tokio::sync::watch::Sender::new(0),
            queue: std::sync::OnceLock::new(),
        });
        let health = health::Health::new(nats.disconnect_grace);
        retained::start(&client, nats.replicas as usize, broker, &shared, &health)
            .await
            .map_err(ClusterError::Retained)?;
        health::start(
            &health,
            client.clone(),
            link_rx,
            format!("KV_{}", retained::BUCKET),
            Arc::downgrade(broker),
        );
        statestore::start(&client, nats.replicas as usize, broker, &health)
            .await
            .map_err(ClusterError::StateStore)?;
        // Messages for offline sessions (queue.rs), before the sessions that fill its index.
        let queue = queue::start(
            &client,
            nats.replicas as usize,
            Duration::from_secs(u64::from(broker.limits().max_session_expiry.max(1))),
            settings.queue_max_bytes,
            &shared.origin,
            health.clone(),
        )
        .await
        .map_err(ClusterError::Queue)?;
        let _ = shared.queue.set(queue.clone());
        // Sessions owned by one node at a time (sessions.rs).
        let sessions = sessions::start(
            &client,
            nats.replicas as usize,
            broker,
            &shared.origin,
            queue.clone(),
        )
        .await
        .map_err(ClusterError::Sessions)?;
        let _ = broker.cluster_sessions.set(sessions);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (outbox, outbox_rx) = mpsc::channel(OUTBOX);
        tokio::spawn(run_subscriptions(
            client.clone(),
            command_rx,
            Arc::downgrade(broker),
            shared.clone(),
        ));
        let flush_subject = format!("gh.flush.{}", instance_token(&shared.origin));
        tokio::spawn(run_outbox(
            client.clone(),
            outbox_rx,
            shared.clone(),
            flush_subject,
        ));
        tracing::info!(
            target: "cluster",
            node = %node,
            origin = %shared.origin,
            "cluster mode: forwarding publishes through NATS ({})",
            nats.servers.join(", ")
        );
        Ok(Arc::new(Cluster {
            node,
            shared,
            seq: AtomicU64::new(0),
            outbox_order: parking_lot::Mutex::new(()),
            interest: parking_lot::Mutex::new(HashMap::new()),
            commands,
            outbox,
            max_payload: AtomicUsize::new(client.server_info().max_payload),
            client,
            health,
            queue,
        }))
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.shared.stats
    }

    /// Whether NATS and JetStream are there, as this node sees them.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// Distinct (filter, group) pairs this node is subscribed to on NATS.
    /// Messages for offline sessions ([`queue`]).
    pub fn queue(&self) -> &queue::Queue {
        &self.queue
    }

    pub fn interest_count(&self) -> usize {
        self.interest.lock().len()
    }

    /// Whether the outbox to NATS holds publishers back now.
    pub fn forwarding_congested(&self) -> bool {
        self.shared.outbox_congestion.is_set()
    }

    /// Wait until NATS has processed everything this node sent so far (subscriptions
    /// included); for tests and orderly shutdown.
    pub async fn flush(&self) -> Result<(), async_nats::client::FlushError> {
        self.client.flush().await
    }
}

impl ClusterLink for Cluster {
    fn interest(&self, filter: &str, group: Option<&str>, added: bool) {
        let key = Interest {
            filter: filter.to_owned(),
            group: group.map(str::to_owned),
        };
        let mut interest = self.interest.lock();
        if added {
            let n = interest.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                let _ = self.commands.send(Command::Subscribe(key));
            }
        } else if let Some(n) = interest.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                interest.remove(&key);
                let _ = self.commands.send(Command::Unsubscribe(key));
            }
        }
    }

    fn forward(&self, message: &Arc<Message>) -> Forwarded {
        let stats = &self.shared.stats;
        let subject = subject::topic_to_subject(&message.topic);
        let body = match envelope::encode(message, Instant::now()) {
            Ok(Some(body)) => body,
            // Expired: nobody may receive it.
            Ok(None) => return Forwarded::default(),
            Err(e) => {
                tracing::debug!(target: "cluster", topic = ?message.topic, "not forwarded: {e}");
                stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
                return Forwarded::default();
            }
        };
        if subject.len() > subject::MAX_SUBJECT
            || body.len() > self.max_payload.load(Ordering::Relaxed)
        {
            tracing::debug!(
                target: "cluster",
                topic = ?message.topic,
                "not forwarded: topic or message above what NATS carries"
            );
            stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
            return Forwarded::default();
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(envelope::ORIGIN, self.shared.origin.as_str());
        // An offline persistent session somewhere wants it: into the stream too, and the
        // publisher's acknowledgement waits for JetStream (`is_forwarded`).
        let keep = message.qos != QoS::AtMostOnce && self.queue.wanted(&message.topic);
        let queued = {
            let _order = self.outbox_order.lock();
            let seq = self.seq.load(Ordering::Relaxed) + 1;
            headers.insert(envelope::SEQ, seq.to_string().as_str());
            let kept = keep.then(|| (subject.clone(), headers.clone(), body.clone()));
            let out = Outgoing {
                seq,
                subject,
                headers,
                body,
            };
            match self.outbox.try_send(out) {
                Ok(()) => {
                    self.seq.store(seq, Ordering::Relaxed);
                    if let Some((subject, headers, body)) = kept {
                        let id = format!("{}.{seq}", self.shared.origin);
                        self.queue.capture(seq, &subject, headers, body, id);
                    }
                    Some(seq)
                }
                Err(_) => None,
            }
        };
        if queued.is_none() {
            stats.not_forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Forwarded {
            // `capacity` is what is left of OUTBOX.
            congested: OUTBOX - self.outbox.capacity() >= OUTBOX_HIGH
                && self.shared.outbox_congestion.mark(message.qos),
            ticket: queued.filter(|_| message.qos != QoS::AtMostOnce),
        }
    }

    fn forwarding(&self) -> &Congestion {
        &self.shared.outbox_congestion
    }

    fn is_forwarded(&self, ticket: u64) -> bool {
        *self.shared.flushed.borrow() >= ticket && self.queue.is_stored(ticket)
    }

    fn wait_forwarded(&self, ticket: u64) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let mut rx = self.shared.flushed.subscribe();
        let stored = self.queue.wait_stored(ticket);
        Box::pin(async move {
            // An error means the link is gone (shutdown): nothing left to wait for.
            let _ = rx.wait_for(|f| *f >= ticket).await;
            stored.await;
        })
    }

    fn accepts_clients(&self) -> bool {
        self.health.accepts_clients()
    }

    fn storage_refuses(&self, message: &Message) -> bool {
        message.qos != QoS::AtMostOnce
            && !self.health.storage_available()
            && self.queue.wanted(&message.topic)
    }
}

/// A message in the outbox.
struct Outgoing {
    seq: u64,
    subject: String,
    headers: async_nats::HeaderMap,
    body: Bytes,
}

/// Messages published between two confirmations at most (the outbox usually runs empty
/// first).
const CONFIRM_EVERY: usize = 4096;

/// How long a confirmation marker may take before another is sent (one may be lost while
/// the connection to NATS is re-established).
const CONFIRM_RETRY: Duration = Duration::from_secs(1);

/// Publishes the outbox in order. After each run of messages (until the outbox is empty,
/// or [`CONFIRM_EVERY`]) it confirms them with a round trip through the NATS server: a
/// marker published on this node's own subject `gh.flush.<instance>` comes back only after
/// the server has processed everything published before it (NATS keeps one connection's
/// messages in order), so they are in the server's hands. Only then does it report them
/// (`Shared::flushed`), which releases their publishers' PUBACK/PUBRECs: a node killed
/// right after acknowledging loses nothing it acknowledged. (Written to the socket is not
/// enough: a process that dies with unread input gets its socket reset, and what it had
/// not yet sent is discarded.)
async fn run_outbox(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    flush_subject: String,
) {
    let mut markers = match client.subscribe(flush_subject.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: "cluster", "NATS subscription for confirmations failed ({e}): acknowledgements wait only for the NATS socket");
            None
        }
    };
    let mut round = 0u64;
    while let Some(first) = rx.recv().await {
        let mut last = 0;
        let mut next = Some(first);
        let mut sent = 0usize;
        while let Some(out) = next.take() {
            last = out.seq;
            match client
                .publish_with_headers(out.subject, out.headers, out.body)
                .await
            {
                Ok(()) => shared.stats.forwarded.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(target: "cluster", "publish to NATS failed: {e}");
                    shared.stats.not_forwarded.fetch_add(1, Ordering::Relaxed)
                }
            };
            sent += 1;
            if shared.outbox_congestion.is_set() && rx.len() <= OUTBOX / 2 {
                shared.outbox_congestion.clear();
            }
            if sent < CONFIRM_EVERY {
                next = rx.try_recv().ok();
            }
        }
        round += 1;
        match markers.as_mut() {
            Some(markers) => confirm(&client, markers, &flush_subject, round).await,
            None => {
                let _ = client.flush().await;
            }
        }
        shared.flushed.send_replace(last);
    }
    // The link is gone: release whoever still waits.
    shared.flushed.send_replace(u64::MAX);
}

/// One round trip through the NATS server (see [`run_outbox`]); waits through a
/// reconnection, sending the marker again every [`CONFIRM_RETRY`].
async fn confirm(
    client: &async_nats::Client,
    markers: &mut async_nats::Subscriber,
    subject: &str,
    round: u64,
) {
    let marker = Bytes::from(round.to_string());
    loop {
        if client
            .publish(subject.to_owned(), marker.clone())
            .await
            .is_err()
        {
            return; // the client is closed
        }
        let retry = tokio::time::sleep(CONFIRM_RETRY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                m = markers.next() => match m {
                    Some(m) if m.payload == marker => return,
                    Some(_) => continue, // an earlier round's marker, sent again
                    None => return,
                },
                _ = &mut retry => break,
            }
        }
    }
}

/// Subscribes and unsubscribes in the order the router's changes came, and owns the
/// reader task of each NATS subscription. Ends (stopping every reader) when the link is
/// dropped.
async fn run_subscriptions(
    client: async_nats::Client,
    mut rx: mpsc::UnboundedReceiver<Command>,
    broker: Weak<Broker>,
    shared: Arc<Shared>,
) {
    let mut readers: HashMap<Interest, Vec<JoinHandle<()>>> = HashMap::new();
    while let Some(command) = rx.recv().await {
        match command {
            Command::Subscribe(interest) => {
                let mut tasks = Vec::new();
                let queue = interest
                    .group
                    .as_deref()
                    .map(|g| queue_name(g, &interest.filter));
                for subject in subject::filter_to_subjects(&interest.filter) {
                    if subject.len() > subject::MAX_SUBJECT {
                        tracing::warn!(
                            target: "cluster",
                            filter = ?interest.filter,
                            "filter too long for NATS: it receives only messages published on this node"
                        );
                        continue;
                    }
                    let sub = match &queue {
                        None => client.subscribe(subject).await,
                        Some(q) => client.queue_subscribe(subject, q.clone()).await,
                    };
                    match sub {
                        Ok(sub) => tasks.push(tokio::spawn(read(
                            sub,
                            interest.clone(),
                            broker.clone(),
                            shared.clone(),
                        ))),
                        Err(e) => tracing::warn!(
                            target: "cluster",
                            filter = ?interest.filter,
                            "NATS subscription failed: {e}"
                        ),
                    }
                }
                readers.insert(interest, tasks);
            }
            Command::Unsubscribe(interest) => {
                // Aborting a reader drops its subscriber, which unsubscribes.
                for task in readers.remove(&interest).into_iter().flatten() {
                    task.abort();
                }
            }
        }
    }
    for task in readers.into_values().flatten() {
        task.abort();
    }
}

/// Delivers what one NATS subscription brings. It never waits for a local subscriber:
/// the reader serves every local subscriber of its filter, so a slow one (or one that
/// stops reading on purpose) must not hold the others' messages back until NATS drops
/// them for a slow consumer; its own queue overflows instead, as on a single node.
async fn read(
    mut sub: async_nats::Subscriber,
    interest: Interest,
    broker: Weak<Broker>,
    shared: Arc<Shared>,
) {
    while let Some(msg) = sub.next().await {
        let Some(broker) = broker.upgrade() else {
            return;
        };
        receive(&broker, &shared, &interest, msg);
    }
}

fn receive(broker: &Broker, shared: &Shared, interest: &Interest, msg: async_nats::Message) {
    let stats = &shared.stats;
    stats.received.fetch_add(1, Ordering::Relaxed);
    let (origin, seq) = match envelope::origin_of(msg.headers.as_ref()) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(target: "cluster", subject = %msg.subject, "dropped: {e}");
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let own = origin == shared.origin;
    if interest.group.is_none() {
        if own {
            stats.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !shared.seen.lock().first_time(origin, seq) {
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    let message = match envelope::decode(msg.payload.clone(), Instant::now()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::debug!(target: "cluster", subject = %msg.subject, "dropped: {e}");
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    // A session of this node that went offline a moment ago wants it, and its publisher
    // may not know yet that the session is offline: keep it in the stream (queue.rs).
    if let Some(queue) = shared
        .queue
        .get()
        .filter(|_| interest.group.is_none() && message.qos != QoS::AtMostOnce && !own)
    {
        if queue.wanted_in_gap(&message.topic) {
            queue.write_forwarded(msg.subject.as_str(), origin, seq, msg.payload);
        }
    }
    match &interest.group {
        None => {
            broker.router.publish_forwarded(&message);
        }
        Some(group) => {
            broker
                .router
                .publish_to_group(&message, &interest.filter, group);
        }
    }
}

/// The NATS queue group of `$share/<group>/<filter>`: NATS merges queue subscriptions of
/// one name across subjects, so the name covers the filter too; hashed, since queue names
/// may not hold whitespace and a filter may.
fn queue_name(group: &str, filter: &str) -> String {
    let mut input = Vec::with_capacity(group.len() + 1 + filter.len());
    input.extend_from_slice(group.as_bytes());
    input.push(0);
    input.extend_from_slice(filter.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("gh-share-{hex}")
}

/// The instance part of `origin` (`<nodeName>/<hex>`), a valid NATS token.
fn instance_token(origin: &str) -> &str {
    origin.rsplit('/').next().unwrap_or(origin)
}

/// A random id for this start of the node, so that a restarted node's sequence numbers
/// are not taken for copies of its earlier ones.
fn instance_id() -> String {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The start time then: unique enough between two starts of one node.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The default node name: the host name (Linux), else `gatehouse`.
#[allow(
    clippy::disallowed_methods,
    reason = "read once at start-up, before any port is bound"
)]
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "gatehouse".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_keep_groups_and_filters_apart() {
        let a = queue_name("g", "a/b");
        assert_eq!(a, queue_name("g", "a/b"));
        assert_ne!(a, queue_name("g", "a/+"));
        assert_ne!(a, queue_name("h", "a/b"));
        assert_ne!(queue_name("g/a", "b"), queue_name("g", "a/b"));
        assert!(!a.contains(char::is_whitespace));
    }
}
