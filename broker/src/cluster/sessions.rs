//! Sessions owned by one node at a time, cluster-wide (issue 15).
//!
//! A JetStream key-value bucket ([`BUCKET`], history 1, `cluster.nats.replicas` copies)
//! holds one `Record` per client id: the node that owns the session (its origin, which
//! is unique per start of a node), a generation, whether a client is connected, and what
//! a persistent session needs to move to another node (its subscriptions with their
//! options and identifiers, its expiry interval, when it went offline, the identity that
//! owns it).
//!
//! - **Claim**: every CONNECT in cluster mode first writes the record with this node as
//!   owner, by compare-and-set on the key's revision (0 for a key never written), before
//!   the local registry attaches it. A lost compare-and-set reads the key again and
//!   decides again, so of two CONNECTs racing on two nodes both end up written one after
//!   the other, and the earlier owner learns it lost (below). The old owner's consent is
//!   not needed: a node that died still owns its keys, and a CONNECT elsewhere takes them.
//!   Before deciding on a record another node owns, the claimant asks that node (a core
//!   NATS request on its flush subject, at most `FLUSH_WAIT`) to finish the record
//!   writes it has queued; a dead node has no subscriber, so NATS answers at once.
//! - **Moving**: a CONNECT with clean start 0 for a record that is alive (connected, or
//!   offline within its expiry), of the same identity and owned by another node gets the
//!   record's subscriptions installed in a fresh local session, and Session Present 1.
//!   A record this node owns is resumed from the local session as on a single node.
//! - **Losing**: every node watches the bucket. A record of a session this node holds,
//!   written by another owner at a later revision, means it was taken over: the node
//!   disconnects its client with 0x8E, waits for it to let go (its will is handled by the
//!   ordinary detach), then drops the local session; a will still waiting out its delay is
//!   published unless the new CONNECT resumed the session (the record says so), as a
//!   single node does on a takeover.
//! - **Keeping it current**: the owner rewrites the record (by compare-and-set, on one
//!   task, in order) after each SUBSCRIBE / UNSUBSCRIBE (whose SUBACK / UNSUBACK waits for
//!   the write, so an acknowledged subscription survives this node) and when its client
//!   goes offline; a write that loses its compare-and-set is dropped (the watch reports
//!   the loss).
//! - **Ending**: the owner deletes the key (compare-and-set) when the session ends: clean
//!   start on disconnect, session expiry. When the owner is gone, every node's sweep
//!   deletes offline records past their expiry plus `SWEEP_GRACE_MS` (compare-and-set on
//!   the revision it saw: one delete commits). The sweep also asks each owner of connected
//!   records whether it lives (its flush subject); one without a responder
//!   `ORPHAN_AFTER` sweeps in a row has those records rewritten offline and unowned, so
//!   their expiry runs (a node only cut off from NATS then sees them taken over).
//! - **Wills of a dead owner**: a connected session's record holds its client's will
//!   (when its topic was authorized at CONNECT) with its port's policy name and the
//!   verified principal; once its client is gone the owner handles the will itself, and
//!   the record keeps a will waiting out its delay (with its due time) until the owner
//!   publishes it (rewriting the record first) or a resume cancels it. Whoever publishes
//!   it checks it against the policy in force then, as a single node does. The node whose rewrite of a dead owner's record
//!   wins its compare-and-set publishes that will, once cluster-wide, after its delay
//!   counted from then, or at its due time for a client that had gone (`OrphanWill`); a
//!   resume meanwhile cancels it. The sweep's delete of an expired record that still
//!   holds a will publishes it.
//!
//! Keys: base64url of the client id (KV keys allow only `[-/_=.A-Za-z0-9]`; base64url
//! is one spelling per id, so no two ids share a key and none reaches another's key);
//! ids whose key would be too long for a subject are keyed `h.<sha-256 hex>` instead (a
//! `.` never occurs in base64url, so the two forms cannot meet).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation, Store};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use base64::Engine as _;
use bytes::Bytes;
use gatehouse_protocol::{QoS, SubscriptionOptions, Will, WillProperties};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::registry::Broker;
use crate::session::{Owner, Session, SubscriptionRecord};

/// The bucket of sessions.
pub const BUCKET: &str = "gatehouse-sessions";

/// How long a CONNECT waits for its claim (read and compare-and-set) before it is
/// refused with 0x88 Server unavailable.
const CLAIM_TIMEOUT: Duration = Duration::from_secs(5);

/// Sweeps in a row in which an owner of connected sessions had no subscriber on its
/// flush subject before its sessions count as offline (about 15 s).
const ORPHAN_AFTER: u32 = 3;

/// How long a claim waits for the previous owner to write what it has queued.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Client ids whose base64url key would be longer than this are keyed by their hash.
const MAX_KEY: usize = 1024;

/// How often each node looks for offline records past their expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// An offline record is deleted by the sweep only this long after its expiry: its owner,
/// when alive, ends it first (and publishes a will still pending).
const SWEEP_GRACE_MS: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SessionsError {
    #[error("the {BUCKET} bucket did not answer within {CLAIM_TIMEOUT:?}")]
    Timeout,
}

/// A session's record in the bucket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Record {
    /// The origin (`<nodeName>/<random per start>`) of the owning node.
    owner: String,
    generation: u64,
    online: bool,
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    expiry: u32,
    /// When the session went offline (ms since the Unix epoch, the owner's clock).
    #[serde(default)]
    offline_since_ms: u64,
    /// Whether the CONNECT that wrote this claim resumed the session (the previous
    /// owner then cancels a will still waiting out its delay).
    #[serde(default)]
    resumed: bool,
    /// The identity that owns the session (authentication method and user name; both
    /// absent for an anonymous client).
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    subscriptions: Vec<StoredSubscription>,
    /// The client's will (authorized at its CONNECT on the owner, and again by whoever
    /// publishes it: `StoredWill::authz`): while `online`, and once its client has gone
    /// while it waits out its delay on the owner (`StoredWill::due_ms`). When the owner
    /// dies, the node that rewrites the record unowned publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    will: Option<Box<StoredWill>>,
    /// Offline since: the first sequence of the `gatehouse-queued` stream that may hold
    /// messages for it (queue.rs); kept until a node that resumed it has read them.
    #[serde(default, skip_serializing_if = "is_zero")]
    queued_from: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A will as a record keeps it (binary fields in standard base64).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct StoredWill {
    topic: String,
    payload: String,
    qos: u8,
    retain: bool,
    #[serde(default)]
    delay: u32,
    #[serde(default)]
    payload_format_indicator: Option<u8>,
    #[serde(default)]
    message_expiry_interval: Option<u32>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    response_topic: Option<String>,
    #[serde(default)]
    correlation_data: Option<String>,
    #[serde(default)]
    user_properties: Vec<(String, String)>,
    /// What the node that publishes the will checks it against (security.md invariant
    /// 4: under the policy in force when it is published). Absent (a record of an
    /// earlier version): the will is not published by another node (fails closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authz: Option<WillAuthz>,
    /// Once the client has gone (the record is offline) and the will waits out its
    /// delay on the owner: when it falls due (ms since the Unix epoch, the owner's
    /// clock). 0 while the client is connected.
    #[serde(default, skip_serializing_if = "is_zero")]
    due_ms: u64,
}

/// How a will in a record is authorized when another node publishes it: as on its
/// owner's port, against the policy of the same name in force on the publishing node,
/// for the principal the owner verified (client id, user name, attributes; never a
/// credential).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum WillAuthz {
    /// The owner's port has no policy: every publish is allowed there.
    Open,
    /// The owner's port uses the policy (`authorizationRef`) `policy`.
    #[serde(rename_all = "camelCase")]
    Policy {
        policy: String,
        client_id: String,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        attributes: std::collections::BTreeMap<String, String>,
    },
}

/// A will as the owner puts it into its client's record (see [`ClusterSessions::record_will`]).
pub struct RecordWill(Box<StoredWill>);

impl StoredWill {
    fn of(will: &Will, authz: WillAuthz) -> StoredWill {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let p = &will.properties;
        StoredWill {
            topic: will.topic.clone(),
            payload: b64(&will.payload),
            qos: will.qos as u8,
            retain: will.retain,
            delay: p.will_delay_interval.unwrap_or(0),
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval: p.message_expiry_interval,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_deref().map(b64),
            user_properties: p.user_properties.clone(),
            authz: Some(authz),
            due_ms: 0,
        }
    }

    /// The will again; `None` for a record that does not decode (written by no owner).
    fn will(&self) -> Option<Will> {
        let unb64 = |s: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .ok()
                .map(Bytes::from)
        };
        let correlation_data = match &self.correlation_data {
            Some(c) => Some(unb64(c)?),
            None => None,
        };
        Some(Will {
            topic: self.topic.clone(),
            payload: unb64(&self.payload)?,
            qos: QoS::from_u8(self.qos)?,
            retain: self.retain,
            properties: WillProperties {
                will_delay_interval: (self.delay > 0).then_some(self.delay),
                payload_format_indicator: self.payload_format_indicator,
                message_expiry_interval: self.message_expiry_interval,
                content_type: self.content_type.clone(),
                response_topic: self.response_topic.clone(),
                correlation_data,
                user_properties: self.user_properties.clone(),
            },
        })
    }
}

/// Room left in a NATS message for the KV headers next to a record.
const RECORD_HEADROOM: usize = 4096;

/// `record`, without its will when with it the record would not fit in one NATS message
/// of `max_payload` bytes (a will is bounded only by the broker's maximum packet size):
/// that will is then published only by its owner (logged).
fn bounded(mut record: Record, max_payload: usize) -> Record {
    if record.will.is_some() && record.encode().len() + RECORD_HEADROOM > max_payload {
        tracing::warn!(
            target: "cluster",
            max_payload,
            "a will too large for the {BUCKET} record: only its own node can publish it"
        );
        record.will = None;
    }
    record
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct StoredSubscription {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    #[serde(default)]
    id: Option<u32>,
}

impl Record {
    /// Whether the session still exists at `now_ms`.
    fn alive(&self, now_ms: u64) -> bool {
        self.online
            || self.expiry == u32::MAX
            || now_ms < self.offline_since_ms + u64::from(self.expiry) * 1000
    }

    /// When an offline record falls due, if it ever does.
    fn due_ms(&self) -> Option<u64> {
        (!self.online && self.expiry != u32::MAX)
            .then(|| self.offline_since_ms + u64::from(self.expiry) * 1000)
    }

    fn same_identity(&self, owner: &Owner) -> bool {
        let (method, username) = identity(owner);
        self.method.as_deref() == method && self.username.as_deref() == username
    }

    fn subscriptions(&self) -> Vec<(String, SubscriptionRecord)> {
        self.subscriptions
            .iter()
            .filter_map(|s| {
                Some((
                    s.filter.clone(),
                    SubscriptionRecord {
                        options: SubscriptionOptions {
                            qos: QoS::from_u8(s.qos)?,
                            no_local: s.no_local,
                            retain_as_published: s.retain_as_published,
                            retain_handling: s.retain_handling,
                        },
                        id: s.id,
                    },
                ))
            })
            .collect()
    }

    fn decode(value: &[u8]) -> Option<Record> {
        serde_json::from_slice(value).ok()
    }

    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// The filters of a record's subscriptions.
fn filter_names(record: &Record) -> Vec<String> {
    record
        .subscriptions
        .iter()
        .map(|s| s.filter.clone())
        .collect()
}

fn identity(owner: &Owner) -> (Option<&str>, Option<&str>) {
    match owner {
        Owner::Principal(p) => (Some(p.method), p.username.as_deref()),
        Owner::Anonymous | Owner::Unknown => (None, None),
    }
}

fn stored_subscriptions<'a>(
    subs: impl Iterator<Item = (&'a String, &'a SubscriptionRecord)>,
) -> Vec<StoredSubscription> {
    subs.map(|(filter, r)| StoredSubscription {
        filter: filter.clone(),
        qos: r.options.qos as u8,
        no_local: r.options.no_local,
        retain_as_published: r.options.retain_as_published,
        retain_handling: r.options.retain_handling,
        id: r.id,
    })
    .collect()
}

/// The bucket key of a client id (see the module's doc).
pub fn key_of(client_id: &str) -> String {
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id);
    if key.len() <= MAX_KEY {
        return key;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, client_id.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("h.{hex}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What this node knows of a session it owns.
struct Held {
    /// Which claim this is: writes and confirmations of an older claim are ignored.
    token: u64,
    /// The revision of this node's last write of the key.
    revision: u64,
    /// The expiry interval the connected client asked for (written while it is online).
    expiry: u32,
    method: Option<String>,
    username: Option<String>,
    generation: u64,
    /// The client's will: written while it is online, and once it has gone while the
    /// will waits out its delay here (`pending_will`), with when it falls due.
    will: Option<Box<StoredWill>>,
    /// The record's `queuedFrom` (0: no backlog in the stream to read).
    queued_from: u64,
    /// When the will waiting out its delay falls due (set when the client goes).
    will_due_ms: Option<u64>,
    /// When the client went (set by the first offline write, kept by later ones).
    offline_since_ms: Option<u64>,
    state: HeldState,
}

enum HeldState {
    /// Written; the local registry has not attached it yet.
    Claimed,
    /// Attached to this local session (at this local generation).
    Attached {
        session: Arc<Session>,
        generation: u64,
    },
    /// Taken over by another node before the local attach was confirmed.
    Lost { resumed: bool },
    /// Ended here; the delete is queued.
    Ending,
}

/// A claim under way (see `ClusterSessions::claiming`).
#[derive(Default)]
struct Claiming {
    /// Claims of this node under way for the key.
    count: usize,
    /// The latest revision written by another owner meanwhile, and whether it resumed.
    foreign: Option<(u64, bool)>,
}

/// Registers a claim under way for its lifetime (a claim that times out is dropped
/// mid-way).
struct ClaimingGuard<'a> {
    sessions: &'a ClusterSessions,
    key: String,
}

impl<'a> ClaimingGuard<'a> {
    fn new(sessions: &'a ClusterSessions, key: &str) -> Self {
        sessions
            .claiming
            .lock()
            .entry(key.to_owned())
            .or_default()
            .count += 1;
        ClaimingGuard {
            sessions,
            key: key.to_owned(),
        }
    }
}

impl Drop for ClaimingGuard<'_> {
    fn drop(&mut self) {
        let mut claiming = self.sessions.claiming.lock();
        if let Some(c) = claiming.get_mut(&self.key) {
            c.count -= 1;
            if c.count == 0 {
                claiming.remove(&self.key);
            }
        }
    }
}

/// What a CONNECT's claim found.
pub struct Claim {
    token: u64,
    key: String,
    /// The record written.
    record: Record,
    /// The subscriptions of a session moved from another node (Session Present 1).
    pub moved: Option<Vec<(String, SubscriptionRecord)>>,
    /// Whether a local session of this client id may be resumed (the record is this
    /// node's own and alive); otherwise the local attach starts clean.
    pub local_valid: bool,
}

impl Claim {
    /// Where the backlog of a session moved here starts in the `gatehouse-queued` stream
    /// (0: none to read).
    pub fn backlog_from(&self) -> u64 {
        self.record.queued_from
    }
}

enum Write {
    Put {
        key: String,
        token: u64,
        record: Record,
        /// The session has just gone offline: mark where its messages start in the stream
        /// first, and write what it holds there after.
        offline: bool,
        /// Told when the write is done (or skipped).
        done: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Delete {
        key: String,
        token: u64,
    },
    /// Answered once every write queued before it is done.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The subject on which the node of `origin` answers flush requests (an origin holds a
/// node name, which may hold anything; hashed into one token).
fn flush_subject(origin: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, origin.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("gh-sessions.flush.{hex}")
}

/// The will of a dead owner's session that this node rewrote offline: published when
/// its delay has run, at once when the session ends or a clean start replaces it,
/// never when its client resumes the session (single-node rules, §3.1.3.2.2).
struct OrphanWill {
    /// The revision this node's rewrite replaced: later writes of the key decide.
    after: u64,
    will: Box<StoredWill>,
}

/// This node's side of the sessions bucket.
pub struct ClusterSessions {
    kv: Store,
    client: async_nats::Client,
    origin: String,
    held: parking_lot::Mutex<HashMap<String, Held>>,
    /// Records of other owners whose client is connected: (revision, owner), for the
    /// sweep's check that their owner still lives.
    online_elsewhere: parking_lot::Mutex<HashMap<String, (u64, String)>>,
    /// Keys with a claim of this node under way, and the latest write of another owner
    /// the watch showed meanwhile: the watch may show a later claim of another node before
    /// this node's own write is acknowledged, when nothing is held yet to lose. Locked
    /// after `held`.
    claiming: parking_lot::Mutex<HashMap<String, Claiming>>,
    /// Offline records of every node and when they fall due: (revision, due ms).
    offline: parking_lot::Mutex<HashMap<String, (u64, u64)>>,
    /// Wills of dead owners' sessions this node orphaned, waiting out their delay.
    orphan_wills: parking_lot::Mutex<HashMap<String, OrphanWill>>,
    /// This node's policies by name (`authorizationRef`), set once at start: a will is
    /// recorded with its port's policy name and checked against that policy on the node
    /// that publishes it.
    authorizers: std::sync::OnceLock<HashMap<String, Arc<crate::authz::Authorizer>>>,
    next_token: AtomicU64,
    writes: mpsc::UnboundedSender<Write>,
    broker: Weak<Broker>,
    /// Messages for offline sessions: its index follows the records (queue.rs).
    queue: Arc<super::queue::Queue>,
    /// Itself, for tasks started through `&self` (the registry holds it as a trait object).
    me: Weak<ClusterSessions>,
}

/// Open (or create) the bucket, start the watch, the writer and the sweep.
pub(super) async fn start(
    client: &async_nats::Client,
    replicas: usize,
    broker: &Arc<Broker>,
    origin: &str,
    queue: Arc<super::queue::Queue>,
) -> Result<Arc<ClusterSessions>, String> {
    let (kv, watch) = super::bucket::open_watched(
        client,
        BUCKET,
        "Gatehouse sessions (one key per client id: owning node, subscriptions, expiry)",
        replicas,
    )
    .await?;
    let (writes, writes_rx) = mpsc::unbounded_channel();
    let flushes = client
        .subscribe(flush_subject(origin))
        .await
        .map_err(|e| format!("subscribing to flush requests: {e}"))?;
    let sessions = Arc::new_cyclic(|me| ClusterSessions {
        kv: kv.clone(),
        client: client.clone(),
        origin: origin.to_owned(),
        held: parking_lot::Mutex::new(HashMap::new()),
        online_elsewhere: parking_lot::Mutex::new(HashMap::new()),
        claiming: parking_lot::Mutex::new(HashMap::new()),
        offline: parking_lot::Mutex::new(HashMap::new()),
        orphan_wills: parking_lot::Mutex::new(HashMap::new()),
        authorizers: std::sync::OnceLock::new(),
        next_token: AtomicU64::new(1),
        writes,
        broker: Arc::downgrade(broker),
        queue,
        me: me.clone(),
    });
    let weak = Arc::downgrade(&sessions);
    tokio::spawn(async move {
        super::bucket::follow(kv, watch, 0, BUCKET, weak, |s: &ClusterSessions, entry| {
            s.apply(entry)
        })
        .await
    });
    tokio::spawn(run_writes(Arc::downgrade(&sessions), writes_rx));
    tokio::spawn(sweep(Arc::downgrade(&sessions)));
    tokio::spawn(answer_flushes(Arc::downgrade(&sessions), flushes));
    Ok(sessions)
}

impl ClusterSessions {
    /// Claim the session of `client_id` for this node (see the module's doc). Fails when
    /// the bucket does not answer in time: the CONNECT is refused then.
    pub async fn claim(
        &self,
        client_id: &str,
        clean_start: bool,
        owner: &Owner,
        expiry: u32,
        will: Option<RecordWill>,
    ) -> Result<Claim, SessionsError> {
        tokio::time::timeout(
            CLAIM_TIMEOUT,
            self.try_claim(client_id, clean_start, owner, expiry, will),
        )
        .await
        .map_err(|_| SessionsError::Timeout)
    }

    async fn try_claim(
        &self,
        client_id: &str,
        clean_start: bool,
        owner: &Owner,
        expiry: u32,
        will: Option<RecordWill>,
    ) -> Claim {
        let will = will.map(|w| w.0);
        let key = key_of(client_id);
        let _claiming = ClaimingGuard::new(self, &key);
        let subject = format!("{}{key}", self.kv.prefix);
        let (method, username) = identity(owner);
        let mut pause = Duration::from_millis(5);
        let mut flushed = false;
        // Where the messages the previous owner held for its connected client start in
        // the stream, when it handed them over (see `hand_over`).
        let mut handed_over = 0u64;
        // Wills: the owner that did not answer the flush request (dead, or cut off).
        let mut gone_owner: Option<String> = None;
        loop {
            let (revision, current) = match self.last(&subject).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::debug!(target: "cluster", "reading {BUCKET}: {e}; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                    continue;
                }
            };
            let now = now_ms();
            let alive = current.as_ref().filter(|r| r.alive(now));
            if let Some(r) =
                alive.filter(|r| r.owner != self.origin && !r.owner.is_empty() && !flushed)
            {
                // The owner may still have writes of the record queued (a SUBSCRIBE just
                // acknowledged, the disconnect of its client): have it write them first,
                // then read again. A dead owner has no subscriber: no responders at once.
                flushed = true;
                // Naming the key asks the owner to hand over what it holds for a
                // connected client (`hand_over`): only for a claim that will resume it.
                let resumes = !clean_start && r.same_identity(owner);
                let named = if resumes {
                    Bytes::from(key.clone())
                } else {
                    Bytes::new()
                };
                let asked = self.client.request(flush_subject(&r.owner), named);
                match tokio::time::timeout(FLUSH_WAIT, asked).await {
                    Ok(Ok(answer)) => {
                        handed_over = std::str::from_utf8(&answer.payload)
                            .ok()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                    }
                    Ok(Err(e))
                        if e.kind() == async_nats::client::RequestErrorKind::NoResponders =>
                    {
                        gone_owner = Some(r.owner.clone());
                    }
                    _ => {}
                }
                continue;
            }
            let resumable = alive.filter(|r| !clean_start && r.same_identity(owner));
            let local_valid = alive.is_some_and(|r| r.owner == self.origin);
            let record = Record {
                owner: self.origin.clone(),
                generation: current.as_ref().map_or(0, |r| r.generation) + 1,
                online: true,
                expiry,
                offline_since_ms: 0,
                resumed: resumable.is_some(),
                method: method.map(str::to_owned),
                username: username.map(str::to_owned),
                subscriptions: resumable.map_or_else(Vec::new, |r| r.subscriptions.clone()),
                will: will.clone(),
                // Moved here: its backlog is read from the stream. Resumed from this
                // node's own session: that has every message already.
                queued_from: resumable.filter(|r| r.owner != self.origin).map_or(0, |r| {
                    match (r.queued_from, handed_over) {
                        (0, h) | (h, 0) => h,
                        (a, b) => a.min(b),
                    }
                }),
            };
            let record = bounded(record, self.client.max_payload());
            match self.kv.update(&key, record.encode(), revision).await {
                Ok(written) => {
                    let token = self.next_token.fetch_add(1, Ordering::Relaxed);
                    let mut held = self.held.lock();
                    // Another node's later claim seen before this write was acknowledged:
                    // this claim lost already.
                    let state = match self.claiming.lock().get(&key).and_then(|c| c.foreign) {
                        Some((rev, resumed)) if rev > written => HeldState::Lost { resumed },
                        _ => HeldState::Claimed,
                    };
                    held.insert(
                        key.clone(),
                        Held {
                            token,
                            revision: written,
                            expiry,
                            method: record.method.clone(),
                            username: record.username.clone(),
                            generation: record.generation,
                            will: record.will.clone(),
                            queued_from: record.queued_from,
                            will_due_ms: None,
                            offline_since_ms: None,
                            state,
                        },
                    );
                    drop(held);
                    if let Some(old) = current
                        .as_ref()
                        .filter(|r| gone_owner.as_deref() == Some(r.owner.as_str()))
                    {
                        self.will_of_gone_owner(old, resumable.is_some());
                    }
                    let moved = resumable
                        .filter(|r| r.owner != self.origin)
                        .map(Record::subscriptions);
                    return Claim {
                        token,
                        key,
                        record,
                        moved,
                        local_valid,
                    };
                }
                Err(e) => {
                    // Lost to another write, or JetStream busy: read and decide again.
                    tracing::debug!(target: "cluster", "claiming a session in {BUCKET}: {e}; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// The key's last revision (0: never written) and its record, from the stream's
    /// leader (a follower may answer from behind).
    async fn last(&self, subject: &str) -> Result<(u64, Option<Record>), String> {
        match self
            .kv
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
        {
            Ok(m) => {
                let live = m.headers.get("KV-Operation").is_none()
                    && m.headers.get("Nats-Marker-Reason").is_none();
                Ok((
                    m.sequence,
                    live.then(|| Record::decode(&m.payload)).flatten(),
                ))
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok((0, None)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The local registry attached the claimed session: from now on this node keeps its
    /// record. `Err(resumed)` when another node took it over meanwhile: the caller
    /// disconnects its client (0x8E) as a takeover does.
    pub fn confirm(
        &self,
        claim: &Claim,
        session: &Arc<Session>,
        generation: u64,
    ) -> Result<(), bool> {
        let mut held = self.held.lock();
        match held.get_mut(&claim.key) {
            Some(h) if h.token == claim.token => match h.state {
                HeldState::Claimed => {
                    h.state = HeldState::Attached {
                        session: session.clone(),
                        generation,
                    };
                    Ok(())
                }
                HeldState::Lost { resumed } => {
                    held.remove(&claim.key);
                    Err(resumed)
                }
                _ => Ok(()),
            },
            // A newer claim of this node replaced it: the local takeover handles this one.
            _ => Ok(()),
        }
    }

    /// The session moved here with a backlog in the stream (`Claim::backlog_from`): read
    /// it into the session in the background, then let the record forget it.
    pub fn read_backlog(&self, claim: &Claim, session: &Arc<Session>, generation: u64) {
        let from = claim.backlog_from();
        if from == 0
            || self
                .held
                .lock()
                .get(&claim.key)
                .is_none_or(|h| h.token != claim.token)
        {
            return; // nothing to read, or taken over by another node meanwhile
        }
        let (sessions, session, key, token) = (
            self.me.clone(),
            session.clone(),
            claim.key.clone(),
            claim.token,
        );
        tokio::spawn(async move {
            let Some(s) = sessions.upgrade() else { return };
            let Some(broker) = s.broker.upgrade() else {
                return;
            };
            let queue = s.queue.clone();
            drop(s);
            let read =
                super::queue::read_backlog(&queue, &broker, &session, generation, from).await;
            let Some(s) = sessions.upgrade() else { return };
            if read && session.is_online() {
                if let Some(h) = s
                    .held
                    .lock()
                    .get_mut(&key)
                    .filter(|h| h.token == token && h.queued_from == from)
                {
                    h.queued_from = 0;
                }
                s.changed(&session);
            }
        });
    }

    /// The local attach failed after the claim (`maxSessions`): the session is not
    /// served here. Its record stays, offline from now on and owned by nobody, so that a
    /// session that moved here is not lost with it (its expiry runs; the sweep deletes it).
    pub async fn release(&self, claim: &Claim) {
        let revision = {
            let mut held = self.held.lock();
            match held.get(&claim.key) {
                Some(h) if h.token == claim.token => {
                    let revision = h.revision;
                    held.remove(&claim.key);
                    revision
                }
                _ => return,
            }
        };
        let record = Record {
            owner: String::new(),
            online: false,
            offline_since_ms: now_ms(),
            resumed: false,
            will: None,
            ..claim.record.clone()
        };
        let _ = tokio::time::timeout(
            CLAIM_TIMEOUT,
            self.kv.update(&claim.key, record.encode(), revision),
        )
        .await;
    }

    /// The held entry of `session`, if it is the one this node's record describes.
    fn held_for<'a>(
        held: &'a mut HashMap<String, Held>,
        session: &Arc<Session>,
    ) -> Option<(String, &'a mut Held)> {
        let key = key_of(&session.client_id);
        let h = held.get_mut(&key)?;
        match &h.state {
            HeldState::Attached { session: s, .. } if Arc::ptr_eq(s, session) => Some((key, h)),
            _ => None,
        }
    }

    /// The session's subscriptions or connection changed: write its record again (in
    /// the background).
    pub fn changed(&self, session: &Arc<Session>) {
        self.queue_changed(session, None);
    }

    /// [`Self::changed`], resolving once the record is written (at most 5 s), so that
    /// what the client is about to be told (a SUBACK) survives this node; `None` when
    /// this node does not hold the session's record (nothing to wait for). The connection
    /// awaits it in its serve loop, not on a worker thread.
    pub fn changed_then(
        &self,
        session: &Arc<Session>,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.queue_changed(session, Some(tx)) {
            return None;
        }
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(CLAIM_TIMEOUT, rx).await;
        }))
    }

    /// Queue the write of the session's record; false when this node does not hold it.
    fn queue_changed(
        &self,
        session: &Arc<Session>,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        let mut held = self.held.lock();
        let Some((key, h)) = Self::held_for(&mut held, session) else {
            return false;
        };
        let HeldState::Attached { generation, .. } = h.state else {
            return false;
        };
        // The first write since the client went (later ones, e.g. for a will falling
        // due, change nothing of what the stream keeps for the session).
        let first_offline = h.offline_since_ms.is_none();
        let record = {
            let st = session.lock();
            if st.generation != generation || st.ended {
                return false;
            }
            let online = st.attachment.is_some();
            Record {
                owner: self.origin.clone(),
                generation: h.generation,
                online,
                expiry: if online { h.expiry } else { st.expiry_interval },
                // Wills: stays when the client went (a rewrite when the will is
                // published must not move the session's expiry).
                offline_since_ms: if online {
                    0
                } else {
                    *h.offline_since_ms.get_or_insert_with(now_ms)
                },
                resumed: false,
                method: h.method.clone(),
                username: h.username.clone(),
                subscriptions: stored_subscriptions(st.subscriptions.iter()),
                will: Self::will_to_write(h, online, &st, generation),
                queued_from: h.queued_from,
            }
        };
        let offline = first_offline && !record.online && record.expiry > 0;
        let record = bounded(record, self.client.max_payload());
        self.writes
            .send(Write::Put {
                key,
                token: h.token,
                record,
                offline,
                done,
            })
            .is_ok()
    }

    /// The session ended on this node (clean start, expiry): delete its record.
    pub fn ended(&self, session: &Arc<Session>) {
        let mut held = self.held.lock();
        let Some((key, h)) = Self::held_for(&mut held, session) else {
            return;
        };
        h.state = HeldState::Ending;
        let _ = self.writes.send(Write::Delete {
            key,
            token: h.token,
        });
    }

    /// A change of the bucket (every node's, this node's own included).
    fn apply(&self, entry: Entry) {
        let record = match entry.operation {
            Operation::Put => Record::decode(&entry.value),
            Operation::Delete | Operation::Purge => None,
        };
        {
            let mut offline = self.offline.lock();
            match record.as_ref().and_then(Record::due_ms) {
                Some(due) => offline.insert(entry.key.clone(), (entry.revision, due)),
                None => offline.remove(&entry.key),
            };
        }
        {
            let mut online = self.online_elsewhere.lock();
            // Also offline records holding a will that waits out its delay on its owner:
            // if the owner dies, another node publishes it.
            match record.as_ref().filter(|r| {
                (r.online || r.will.is_some()) && r.owner != self.origin && !r.owner.is_empty()
            }) {
                Some(r) => online.insert(entry.key.clone(), (entry.revision, r.owner.clone())),
                None => online.remove(&entry.key),
            };
        }
        // Offline persistent sessions, cluster-wide: what the stream keeps (queue.rs).
        match record
            .as_ref()
            .filter(|r| !r.online && r.expiry > 0 && r.queued_from != 0 && r.alive(now_ms()))
        {
            Some(r) => self
                .queue
                .set_offline(&entry.key, filter_names(r), r.owner == self.origin),
            None => self.queue.remove(&entry.key),
        }
        self.orphan_will_decided(&entry.key, entry.revision, record.as_ref());
        // This node's own writes change nothing here. A delete is another node's (this
        // node's own are of keys it is ending, or older than its current claim).
        if record.as_ref().is_some_and(|r| r.owner == self.origin) {
            return;
        }
        let resumed = record.as_ref().is_some_and(|r| r.resumed);
        let mut held = self.held.lock();
        if let Some(c) = self.claiming.lock().get_mut(&entry.key) {
            if c.foreign.is_none_or(|(rev, _)| rev < entry.revision) {
                c.foreign = Some((entry.revision, resumed));
            }
        }
        let Some(h) = held.get_mut(&entry.key) else {
            return;
        };
        if entry.revision <= h.revision {
            return; // older than this node's own claim
        }
        match std::mem::replace(&mut h.state, HeldState::Lost { resumed }) {
            HeldState::Claimed => {} // `confirm` tells the connection
            HeldState::Attached {
                session,
                generation,
            } => {
                held.remove(&entry.key);
                tracing::info!(
                    target: "session",
                    client_id = &*session.client_id,
                    "the session was taken over by another node"
                );
                if let Some(broker) = self.broker.upgrade() {
                    tokio::spawn(async move {
                        broker.give_up_session(&session, generation, resumed).await;
                    });
                }
            }
            HeldState::Lost { .. } | HeldState::Ending => {
                held.remove(&entry.key);
            }
        }
    }

    /// Apply one queued write, if its claim is still this node's current one.
    async fn write(&self, write: Write) {
        let (key, token) = match &write {
            Write::Put { key, token, .. } | Write::Delete { key, token } => (key.clone(), *token),
            Write::Flush(_) => (String::new(), 0),
        };
        if let Write::Flush(done) = write {
            // Every earlier write is done.
            let _ = done.send(());
            return;
        }
        let Some(revision) = self
            .held
            .lock()
            .get(&key)
            .filter(|h| h.token == token)
            .map(|h| h.revision)
        else {
            return;
        };
        match write {
            Write::Put {
                mut record,
                offline,
                done,
                ..
            } => {
                if offline && record.queued_from == 0 {
                    // Read before the record says offline: every message kept for the
                    // session from now on comes after it (queue.rs).
                    match self.queue.last_sequence().await {
                        Ok(last) => record.queued_from = last + 1,
                        Err(e) => {
                            tracing::warn!(target: "cluster", "the {} stream did not answer ({e}): messages this offline session gets are kept on this node only", super::queue::STREAM)
                        }
                    }
                }
                let outcome = tokio::time::timeout(
                    CLAIM_TIMEOUT,
                    self.kv.update(&key, record.encode(), revision),
                )
                .await;
                match outcome {
                    Ok(Ok(written)) => {
                        let mut held = self.held.lock();
                        if let Some(h) = held.get_mut(&key).filter(|h| h.token == token) {
                            h.revision = h.revision.max(written);
                            h.queued_from = record.queued_from;
                            if offline && record.queued_from != 0 {
                                // From now on this node's publishes keep what it wants;
                                // what it holds already goes to the stream too.
                                self.queue.set_offline(&key, filter_names(&record), true);
                                if let HeldState::Attached { session, .. } = &h.state {
                                    self.queue.write_held(session);
                                }
                            }
                        }
                    }
                    // Lost (the watch tells) or NATS unavailable: the record stays as it was.
                    Ok(Err(e)) => {
                        tracing::debug!(target: "cluster", "writing a session to {BUCKET}: {e}")
                    }
                    Err(_) => {
                        tracing::warn!(target: "cluster", "writing a session to {BUCKET}: no answer within {CLAIM_TIMEOUT:?}")
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            Write::Flush(_) => {}
            Write::Delete { .. } => {
                let done = tokio::time::timeout(
                    CLAIM_TIMEOUT,
                    self.kv.delete_expect_revision(&key, Some(revision)),
                )
                .await;
                if !matches!(done, Ok(Ok(()))) {
                    tracing::debug!(target: "cluster", "deleting an ended session from {BUCKET}: not deleted (taken over, or NATS unavailable)");
                }
                let mut held = self.held.lock();
                if held.get(&key).is_some_and(|h| h.token == token) {
                    held.remove(&key);
                }
            }
        }
    }

    /// Another node is about to take over the session of `key`, whose client is connected
    /// here: write what this node holds for that client (queued, unacknowledged) to the
    /// stream, and return where it starts there, for the new owner to read (queue.rs).
    /// `None` when this node has nothing to hand over.
    async fn hand_over(&self, key: &str) -> Option<u64> {
        let session = match self.held.lock().get(key) {
            Some(Held {
                state: HeldState::Attached { session, .. },
                expiry,
                ..
            }) if *expiry > 0 => session.clone(),
            _ => return None, // not here, or ends with its connection
        };
        if !session.is_online() {
            return None; // offline: its record says where its messages start
        }
        let from = self.queue.last_sequence().await.ok()? + 1;
        tokio::time::timeout(FLUSH_WAIT, self.queue.write_held_then(&session))
            .await
            .ok()?;
        Some(from)
    }

    /// Records this node holds (for tests and metrics).
    pub fn held_count(&self) -> usize {
        self.held.lock().len()
    }
}

impl ClusterSessions {
    /// Owners of connected sessions that no longer answer (no subscriber on their flush
    /// subject, [`ORPHAN_AFTER`] sweeps in a row: the node died, or has been cut off from
    /// NATS that long) lose them: each such record is rewritten with no owner, offline
    /// since now, so that its expiry runs (and a node that was only cut off sees it taken
    /// over when it is back, and disconnects its client).
    async fn orphan_sessions_of_gone_owners(self: &Arc<Self>, strikes: &mut HashMap<String, u32>) {
        let owners: std::collections::HashSet<String> = self
            .online_elsewhere
            .lock()
            .values()
            .map(|(_, owner)| owner.clone())
            .filter(|o| !o.is_empty())
            .collect();
        strikes.retain(|o, _| owners.contains(o));
        for owner in owners {
            let asked = self.client.request(flush_subject(&owner), Bytes::new());
            match tokio::time::timeout(FLUSH_WAIT, asked).await {
                Ok(Ok(_)) => {
                    strikes.remove(&owner);
                }
                Ok(Err(e)) if e.kind() == async_nats::client::RequestErrorKind::NoResponders => {
                    *strikes.entry(owner).or_default() += 1;
                }
                // Slow or NATS trouble: no verdict.
                _ => {}
            }
        }
        for (owner, _) in strikes.iter().filter(|(_, n)| **n >= ORPHAN_AFTER) {
            let keys: Vec<(String, u64)> = self
                .online_elsewhere
                .lock()
                .iter()
                .filter(|(_, (_, o))| o == owner)
                .map(|(k, (rev, _))| (k.clone(), *rev))
                .collect();
            for (key, revision) in keys {
                let subject = format!("{}{key}", self.kv.prefix);
                let Ok((current, Some(record))) = self.last(&subject).await else {
                    continue;
                };
                if current != revision
                    || &record.owner != owner
                    || !(record.online || record.will.is_some())
                {
                    continue;
                }
                let will = record.will.clone();
                let expiry = record.expiry;
                // Its messages from now on are kept in the stream (queue.rs); what the
                // dead node held is lost with it.
                let queued_from = match record.queued_from {
                    0 => self.queue.last_sequence().await.map_or(0, |last| last + 1),
                    from => from,
                };
                // A session whose client had gone stays offline since then (its expiry
                // and its will's due time run on); a connected one goes offline now.
                let offline_since_ms = if record.online {
                    now_ms()
                } else {
                    record.offline_since_ms
                };
                let orphaned = Record {
                    owner: String::new(),
                    online: false,
                    offline_since_ms,
                    resumed: false,
                    will: None,
                    queued_from,
                    ..record
                };
                // Registered before the write: the watch may show a later write (a
                // CONNECT resuming the session) before the write's answer arrives.
                if let Some(will) = &will {
                    self.orphan_wills.lock().insert(
                        key.clone(),
                        OrphanWill {
                            after: revision,
                            will: will.clone(),
                        },
                    );
                }
                let written = tokio::time::timeout(
                    CLAIM_TIMEOUT,
                    self.kv.update(&key, orphaned.encode(), revision),
                )
                .await;
                if matches!(written, Ok(Ok(_))) {
                    tracing::info!(
                        target: "cluster",
                        owner = owner.as_str(),
                        "a session of a node that no longer answers is offline now (its expiry runs)"
                    );
                    if let Some(will) = will {
                        let wait = if will.due_ms > 0 {
                            // Waiting out its delay on the owner: due when it was.
                            Duration::from_millis(will.due_ms.saturating_sub(now_ms()))
                        } else if will.delay == 0 || expiry == 0 {
                            Duration::ZERO
                        } else {
                            Duration::from_secs(u64::from(will.delay.min(expiry)))
                        };
                        self.arm_orphan_will(&key, revision, wait);
                    }
                } else if will.is_some() {
                    // Another node's write won (or no verdict): that node decides.
                    let mut wills = self.orphan_wills.lock();
                    if wills.get(&key).is_some_and(|w| w.after == revision) {
                        wills.remove(&key);
                    }
                }
            }
        }
    }
}

impl ClusterSessions {
    /// This node orphaned the session of `key` (its compare-and-set on `after` won, so no
    /// other node did): publish its will after `wait`: its delay counted from now for a
    /// connected client, as a single node does when its client goes (at once without a
    /// delay or without an expiry), or what is left of it for a client that had gone.
    fn arm_orphan_will(self: &Arc<Self>, key: &str, after: u64, wait: Duration) {
        if wait.is_zero() {
            self.publish_orphan_will(key, after);
            return;
        }
        let key = key.to_owned();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(s) = weak.upgrade() {
                s.publish_orphan_will(&key, after);
            }
        });
    }

    /// Publish the orphaned will of `key` (through the router, so every node's
    /// subscribers get it), unless a later write decided otherwise meanwhile.
    fn publish_orphan_will(&self, key: &str, after: u64) {
        let will = {
            let mut wills = self.orphan_wills.lock();
            match wills.get(key) {
                Some(w) if w.after == after => wills.remove(key),
                _ => None,
            }
        };
        if let Some(will) = will {
            self.publish_recorded_will(&will.will);
        }
    }

    /// This node's claim replaced the record of an owner that no longer answers (so it
    /// cannot handle its client's will, and no other node will: the compare-and-set
    /// on that record succeeded here). Its will follows the single-node rules of a
    /// takeover: a connected client's will without a delay (or of a session with expiry
    /// 0) is published, as the old connection's end would; a will with a delay, or one
    /// already waiting it out, is cancelled by a resume and published when the session
    /// ends instead (clean start, another identity); one already due is published.
    fn will_of_gone_owner(&self, old: &Record, resumed: bool) {
        let Some(will) = &old.will else {
            return;
        };
        let due = will.due_ms > 0 && will.due_ms <= now_ms();
        let immediate = old.online && (will.delay == 0 || old.expiry == 0);
        if !resumed || immediate || due {
            self.publish_recorded_will(will);
        }
    }

    /// The will an expired record at `revision` still holds: its owner died before it
    /// published it (and before it was found gone): the node whose delete of the record
    /// commits publishes it ("or the session ends", §3.1.3.2.2).
    async fn will_of_expired(&self, key: &str, revision: u64) -> Option<Box<StoredWill>> {
        let subject = format!("{}{key}", self.kv.prefix);
        match self.last(&subject).await {
            Ok((current, Some(record))) if current == revision => record.will,
            _ => None,
        }
    }

    /// Publish a will taken from a record whose owner no longer handles it, authorized
    /// as its owner's port would (the policy in force here now, the principal the owner
    /// verified: [`Self::will_message`], checked by [`Broker::publish_will`]).
    fn publish_recorded_will(&self, stored: &StoredWill) {
        let Some(message) = self.will_message(stored) else {
            return;
        };
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        tracing::info!(
            target: "session",
            topic = message.will.topic.as_str(),
            "publishing the will of a session whose node no longer answers"
        );
        broker.publish_will(message, None);
    }

    /// A write of `key` at `revision` seen by the watch, for an orphaned will waiting
    /// out its delay here: a CONNECT that resumed the session cancels it; a clean start
    /// (which ends the session) or the end of the session publishes it now.
    fn orphan_will_decided(&self, key: &str, revision: u64, record: Option<&Record>) {
        let after = {
            let wills = self.orphan_wills.lock();
            match wills.get(key) {
                Some(w) if revision > w.after => w.after,
                _ => return,
            }
        };
        match record {
            // This node's own rewrite (no owner): the delay runs.
            Some(r) if r.owner.is_empty() => {}
            Some(r) if r.resumed => {
                let mut wills = self.orphan_wills.lock();
                if wills.get(key).is_some_and(|w| w.after == after) {
                    wills.remove(key);
                }
            }
            _ => self.publish_orphan_will(key, after),
        }
    }
}

// --- The will in the record of a session this node holds ---

impl ClusterSessions {
    /// The will the record of `h` holds: the connected client's; once it has gone, the
    /// will still waiting out its delay here (the session's `pending_will` of this
    /// attachment), with when it falls due, so that another node publishes it then if
    /// this one dies meanwhile; none once it is published, cancelled or discarded.
    fn will_to_write(
        h: &mut Held,
        online: bool,
        st: &crate::session::SessionState,
        generation: u64,
    ) -> Option<Box<StoredWill>> {
        if online {
            h.will_due_ms = None;
            return h.will.clone();
        }
        let pending = st
            .pending_will
            .as_ref()
            .is_some_and(|p| p.generation == generation);
        let mut will = h.will.clone().filter(|_| pending)?;
        let wait = u64::from(will.delay.min(st.expiry_interval)) * 1000;
        let since = *h.offline_since_ms.get_or_insert_with(now_ms);
        let due = *h.will_due_ms.get_or_insert(since + wait);
        will.due_ms = due.max(1);
        Some(will)
    }
}

// --- Authorizing the wills another node publishes (security.md invariant 4) ---

impl ClusterSessions {
    /// This node's policies by name; called once at start, before any port accepts.
    pub fn set_authorizers(&self, authorizers: HashMap<String, Arc<crate::authz::Authorizer>>) {
        let _ = self.authorizers.set(authorizers);
    }

    /// The name of the policy `authz` (the ports that name one policy share it).
    fn policy_name(&self, authz: &Arc<crate::authz::Authorizer>) -> Option<String> {
        self.authorizers
            .get()?
            .iter()
            .find(|(_, a)| Arc::ptr_eq(a, authz))
            .map(|(name, _)| name.clone())
    }

    /// The will of a CONNECT as its record keeps it, with what another node needs to
    /// authorize it when it publishes it: the port's policy name (`authz`, `None` on a
    /// port without one) and the verified principal's client id, user name and
    /// attributes (never a credential). `None` (the will stays out of the record, so only
    /// this node publishes it) when the port's policy has no name here or there is no
    /// principal (a policy then allows nothing).
    pub fn record_will(
        &self,
        will: &Will,
        authz: Option<&Arc<crate::authz::Authorizer>>,
        principal: Option<&crate::auth::Principal>,
        client_id: &str,
    ) -> Option<RecordWill> {
        let authz = self.will_authz(authz, principal, client_id)?;
        Some(RecordWill(Box::new(StoredWill::of(will, authz))))
    }

    fn will_authz(
        &self,
        authz: Option<&Arc<crate::authz::Authorizer>>,
        principal: Option<&crate::auth::Principal>,
        client_id: &str,
    ) -> Option<WillAuthz> {
        let Some(authz) = authz else {
            return Some(WillAuthz::Open);
        };
        let (Some(policy), Some(principal)) = (self.policy_name(authz), principal) else {
            tracing::warn!(
                target: "cluster",
                "a will whose policy has no name on this node: only this node can publish it"
            );
            return None;
        };
        Some(WillAuthz::Policy {
            policy,
            client_id: client_id.to_owned(),
            username: principal.username.clone(),
            attributes: principal.attributes.clone(),
        })
    }

    /// A connected client re-authenticated (v5 AUTH) as `principal`: the will in its
    /// record is authorized for that principal from now on, as a single node does (its
    /// will is checked for the principal after any re-authentication).
    pub fn reauthenticated(
        &self,
        session: &Arc<Session>,
        authz: Option<&Arc<crate::authz::Authorizer>>,
        principal: Option<&crate::auth::Principal>,
    ) {
        let fresh = self.will_authz(authz, principal, &session.client_id);
        {
            let mut held = self.held.lock();
            let Some((_, h)) = Self::held_for(&mut held, session) else {
                return;
            };
            let Some(will) = h.will.as_mut() else {
                return;
            };
            match fresh {
                Some(a) if will.authz.as_ref() == Some(&a) => return,
                Some(a) => will.authz = Some(a),
                None => h.will = None,
            }
        }
        self.changed(session);
    }

    /// The will of a record, ready for [`Broker::publish_will`], which checks it against
    /// the policy of its owner's port as in force on this node now, for the principal
    /// its owner verified. `None` (logged) when it cannot be authorized here: a record
    /// without that information, or a policy this node does not have (fails closed).
    fn will_message(&self, stored: &StoredWill) -> Option<crate::registry::WillMessage> {
        let will = stored.will()?;
        let authority = match &stored.authz {
            Some(WillAuthz::Open) => None,
            Some(WillAuthz::Policy {
                policy,
                client_id,
                username,
                attributes,
            }) => {
                let Some(authz) = self.authorizers.get().and_then(|a| a.get(policy)) else {
                    tracing::warn!(
                        target: "authz",
                        client_id = client_id.as_str(),
                        policy = policy.as_str(),
                        "the will of a session whose node no longer answers names a policy this node does not have: the will is not published"
                    );
                    return None;
                };
                Some(crate::registry::WillAuthority {
                    authz: authz.clone(),
                    principal: Some(crate::auth::Principal {
                        username: username.clone(),
                        client_id: client_id.clone(),
                        attributes: attributes.clone(),
                        expiry: None,
                        method: "cluster record",
                        registry: None,
                    }),
                    client_id: client_id.as_str().into(),
                })
            }
            None => {
                tracing::warn!(
                    target: "authz",
                    "the will of a session whose node no longer answers carries no authorization (written by an earlier version): the will is not published"
                );
                return None;
            }
        };
        Some(crate::registry::WillMessage { will, authority })
    }
}

/// Answers other nodes' flush requests (see [`ClusterSessions::claim`]) once this node's
/// queued writes are done.
async fn answer_flushes(sessions: Weak<ClusterSessions>, mut requests: async_nats::Subscriber) {
    use futures_util::StreamExt;
    while let Some(request) = requests.next().await {
        let Some(s) = sessions.upgrade() else {
            return;
        };
        let Some(reply) = request.reply else {
            continue;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = s.writes.send(Write::Flush(tx));
        let client = s.client.clone();
        // A claimant names the key it is about to take (the sweep asks with nothing).
        let key = (!request.payload.is_empty())
            .then(|| String::from_utf8(request.payload.to_vec()).ok())
            .flatten();
        let sessions = sessions.clone();
        drop(s);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(FLUSH_WAIT, rx).await;
            let from = match (key, sessions.upgrade()) {
                (Some(key), Some(s)) => s.hand_over(&key).await,
                _ => None,
            };
            let answer = from.map_or_else(Bytes::new, |f| Bytes::from(f.to_string()));
            let _ = client.publish(reply, answer).await;
        });
    }
}

/// Writes records in the order they were queued. Ends with the sessions.
async fn run_writes(sessions: Weak<ClusterSessions>, mut rx: mpsc::UnboundedReceiver<Write>) {
    while let Some(write) = rx.recv().await {
        let Some(s) = sessions.upgrade() else {
            return;
        };
        s.write(write).await;
    }
}

/// Deletes offline records past their expiry (plus [`SWEEP_GRACE_MS`]) whoever owned them:
/// every node tries, compare-and-set on the revision seen lets one delete commit, and a
/// record written again meanwhile (resumed) is left alone.
async fn sweep(sessions: Weak<ClusterSessions>) {
    let mut strikes: HashMap<String, u32> = HashMap::new();
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(s) = sessions.upgrade() else {
            return;
        };
        s.orphan_sessions_of_gone_owners(&mut strikes).await;
        let now = now_ms();
        let due: Vec<(String, u64)> = s
            .offline
            .lock()
            .iter()
            .filter(|(_, (_, at))| at + SWEEP_GRACE_MS <= now)
            .map(|(k, (rev, _))| (k.clone(), *rev))
            .collect();
        for (key, revision) in due {
            let will = s.will_of_expired(&key, revision).await;
            match tokio::time::timeout(
                CLAIM_TIMEOUT,
                s.kv.delete_expect_revision(&key, Some(revision)),
            )
            .await
            {
                Ok(Ok(())) => {
                    tracing::debug!(target: "cluster", "an expired session's record deleted from {BUCKET}");
                    if let Some(will) = will {
                        s.publish_recorded_will(&will);
                    }
                }
                _ => {
                    // Another node deleted it, or it was resumed: the watch updates `offline`.
                    let mut offline = s.offline.lock();
                    if offline.get(&key).is_some_and(|(r, _)| *r == revision) {
                        offline.remove(&key);
                    }
                }
            }
        }
    }
}

impl crate::registry::SessionRecords for ClusterSessions {
    fn changed(&self, session: &Arc<Session>) {
        ClusterSessions::changed(self, session)
    }

    fn changed_then(
        &self,
        session: &Arc<Session>,
    ) -> Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
        ClusterSessions::changed_then(self, session)
    }

    fn ended(&self, session: &Arc<Session>) {
        ClusterSessions::ended(self, session)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_distinct_and_bounded() {
        let ids = ["a", "a.b", "a b", "*", ">", "~", "/", "h.x", "\u{1F600}"];
        let keys: Vec<String> = ids.iter().map(|i| key_of(i)).collect();
        for k in &keys {
            assert!(k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len());
        let long = "x".repeat(4000);
        let k = key_of(&long);
        assert!(k.starts_with("h.") && k.len() == 66);
        assert_ne!(k, key_of(&"x".repeat(4001)));
    }

    #[test]
    fn records_round_trip_and_expire() {
        let r = Record {
            owner: "n1/abc".into(),
            generation: 3,
            online: false,
            expiry: 10,
            offline_since_ms: 1_000,
            resumed: true,
            method: Some("password".into()),
            username: Some("u".into()),
            subscriptions: vec![StoredSubscription {
                filter: "$share/g/a/+".into(),
                qos: 2,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
                id: Some(7),
            }],
            will: None,
            queued_from: 0,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        assert!(r.alive(10_999));
        assert!(!r.alive(11_000));
        assert_eq!(r.due_ms(), Some(11_000));
        let subs = r.subscriptions();
        assert_eq!(subs[0].0, "$share/g/a/+");
        assert_eq!(subs[0].1.options.qos, QoS::ExactlyOnce);
        assert_eq!(subs[0].1.id, Some(7));
        assert!(
            r.same_identity(&Owner::Principal(Box::new(crate::auth::Identity {
                method: "password",
                username: Some("u".into()),
            })))
        );
        assert!(!r.same_identity(&Owner::Anonymous));
    }

    #[test]
    fn wills_round_trip_and_too_large_ones_are_dropped() {
        let will = Will {
            topic: "w/t".into(),
            payload: Bytes::from_static(b"\x00\xffbye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(3),
                payload_format_indicator: Some(0),
                message_expiry_interval: Some(60),
                content_type: Some("c".into()),
                response_topic: Some("r/t".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v".into())],
            },
        };
        let stored = StoredWill::of(&will, WillAuthz::Open);
        assert_eq!(stored.will(), Some(will.clone()));
        // What authorization needs (never a credential) and the due time round-trip.
        let mut pending = StoredWill::of(
            &will,
            WillAuthz::Policy {
                policy: "p".into(),
                client_id: "c".into(),
                username: Some("u".into()),
                attributes: [("zone".to_owned(), "a".to_owned())].into(),
            },
        );
        pending.due_ms = 42;
        let json = serde_json::to_string(&pending).unwrap_or_default();
        assert!(json.contains(r#""authz":{"kind":"policy","policy":"p","clientId":"c""#));
        assert_eq!(
            serde_json::from_str::<StoredWill>(&json).ok(),
            Some(pending)
        );
        // A will of an earlier version's record carries no authorization.
        let old = json.replace(r#""authz":{"kind":"policy","policy":"p","clientId":"c","username":"u","attributes":{"zone":"a"}},"#, "");
        assert!(serde_json::from_str::<StoredWill>(&old).is_ok_and(|w| w.authz.is_none()));
        let r = Record {
            owner: "n1/abc".into(),
            generation: 1,
            online: true,
            expiry: 0,
            offline_since_ms: 0,
            resumed: false,
            method: None,
            username: None,
            subscriptions: vec![],
            will: Some(Box::new(stored)),
            queued_from: 0,
        };
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        assert!(bounded(r.clone(), 1 << 20).will.is_some());
        let big = Will {
            payload: Bytes::from(vec![7u8; 1 << 20]),
            ..will
        };
        let r = Record {
            will: Some(Box::new(StoredWill::of(&big, WillAuthz::Open))),
            ..r
        };
        let kept = bounded(r, 1 << 20);
        assert!(kept.will.is_none());
        assert!(kept.encode().len() < 1 << 20);
    }
}
