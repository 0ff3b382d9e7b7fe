//! The state store's keys in cluster mode (issue 15): a JetStream key-value bucket
//! ([`BUCKET`], history 1, `cluster.nats.replicas` copies) shared by every node, behind
//! the state store's [`SharedKeys`] boundary.
//!
//! - **Key**: base64url of the key's bytes (state store keys are binary, KV keys allow
//!   only `[-/_=.A-Za-z0-9]`). **Value**: a [`Stored`] record: the entry (value, version,
//!   fencing token, absolute expiry, owner) or a delete marker with the delete's version.
//! - **Reads** ask the bucket's stream leader for the key's last message (a stream
//!   message get, not the KV's direct get, which a follower may answer from behind), so a
//!   read sees every acknowledged write, this node's own included.
//! - **Writes** are compare-and-set on the key's revision (`Nats-Expected-Last-Subject-
//!   Sequence`, 0 for a key never written); a lost one is [`SharedError::Conflict`] and the
//!   service decides again on a fresh read.
//! - **KEYNOTIFY**: one watch of the whole bucket per node (from the keys stored at start,
//!   which only fill the expiry index, then every new change) hands every
//!   change, this node's own included, to the node's state store, which notifies its own
//!   clients watching the key: each watcher gets each change once, in the bucket's order.
//! - **Expiry**: the record holds the absolute expiry (ms since the Unix epoch, the
//!   writing node's clock); an expired record is absent to every request (lazy), and each
//!   node keeps the expiries it has seen through the watch and deletes due keys by
//!   compare-and-set (the first node wins, the others find the key deleted).
//!
//! - **Quotas**: every node counts the live keys from its watch (the service's
//!   `shared::Usage`: keys, bytes, bytes per owner, the owner being in each record), so a
//!   request is decided against the whole cluster's usage and gets a single node's answer.
//!   Behind it, the bucket's `max_bytes` ([`backstop`], discard new) is a hard limit that
//!   no race between nodes can pass: a write it refuses is answered as over quota.
//! - **Deletes** (DEL, VDEL, expiry) are records with a per-message TTL
//!   ([`TOMBSTONE_TTL`]): they carry the delete's version to every node's watch, then
//!   JetStream removes them, so deleted keys do not pile up in the bucket.
//!
//! Every call is a future: the requester's connection awaits it without holding a
//! worker thread, within the request's deadline (the service's `SHARED_BUDGET`, 5 s).
//!
//! - **Surviving a leader election**: each attempt (a read, or a write's publish and
//!   acknowledgement) gets at most [`ATTEMPT`], so a request sent to a leader that died
//!   is tried again on the new one within the budget (an election takes 2-3 s). A write
//!   whose acknowledgement did not come may have been stored: the key is read back from
//!   the leader and the write settled by what is there ([`KvKeys::write_now`]): this
//!   very record (the version is this write's HLC timestamp, with the owner and value)
//!   means it was stored, so it is answered as stored; the revision it expected still
//!   there means it was not (yet), so the same compare-and-set is sent again (at most
//!   one of the two can be stored, both expect the same revision); anything else is a
//!   lost compare-and-set, decided again on the fresh record. Reads are simply retried.
//!
//! - **Failing fast**: while the node knows JetStream is lost ([`Health::storage_available`]
//!   false: the retained bucket's probe has had no quorum for `disconnectGrace`, or the
//!   node is cut off from NATS), every read and write, and every retry of one, is refused
//!   at once ([`no_quorum`]) rather than after the round trip's time. While the node is
//!   unsure (the grace not yet over) requests wait as usual.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use base64::Engine as _;
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::health::Health;
use crate::registry::Broker;
use crate::statestore::service::shared::{Current, SharedError, SharedFuture, SharedKeys, Stored};
use crate::statestore::store::Quotas;

/// The bucket of state store keys.
pub const BUCKET: &str = "gatehouse-statestore";

/// How long one attempt (a read, or a write's publish and acknowledgement) may take
/// before it is given up and tried again, within the request's deadline: well under the
/// 5 s budget, so that a request sent while the bucket's leader died is tried again on
/// the new leader once elected (2-3 s), and long enough for a loaded leader to answer.
const ATTEMPT: Duration = Duration::from_millis(1500);

/// Keys whose bucket key would be longer than this are refused (a KV key is part of a
/// NATS subject).
const MAX_KEY: usize = 3072;

/// The bucket key of a state store key.
pub fn key_of(key: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// The state store key of a bucket key.
pub fn key_from(bucket_key: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(bucket_key)
        .ok()
}

/// How long a delete's record stays in the bucket (JetStream's per-message TTL): long
/// enough for every node's watch to deliver it (KEYNOTIFY gets the delete's version, and
/// a key written again meanwhile gets a version above it); after it the key is simply
/// absent. Nodes' clocks must agree far better than this (the fencing checks allow 60 s).
pub const TOMBSTONE_TTL: Duration = Duration::from_secs(60);

/// Bytes per key the bucket's [`backstop`] allows beside the key and value the quotas
/// count: the subject (the key in base64 with the bucket's prefix), the headers, the
/// record's version, fencing token, expiry and owner, and JetStream's own framing.
const RECORD_OVERHEAD: u64 = 512;

/// The bucket's `max_bytes`: the hard limit behind the quotas, which every node enforces
/// from its own count (so two nodes deciding at the same moment may each admit a last
/// key). Twice `stateStoreMaxTotalBytes` plus [`RECORD_OVERHEAD`] per key
/// (`stateStoreKeyQuota`, or as many keys as the total allows); no limit (-1) without a
/// total bytes quota.
///
/// nats-server refuses EVERY write to a replicated bucket at its `max_bytes`, deletes
/// included (`cluster_statestore_quota.rs` shows it): so live records are kept under
/// [`live_limit`] of it by every node's count, and the rest holds the delete records of
/// the last [`TOMBSTONE_TTL`] and what races between nodes admit.
pub fn backstop(quotas: &Quotas) -> i64 {
    let Some(total) = quotas.total_bytes else {
        return -1;
    };
    let keys = quotas
        .keys
        .map_or(total / 2, |k| (k as u64).min(total / 2).max(1));
    let bytes = total
        .saturating_mul(2)
        .saturating_add(keys.saturating_mul(RECORD_OVERHEAD));
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The bucket's stream ([`super::bucket::bounded_stream_config`]), with the [`backstop`]
/// as `max_bytes` and per-message TTLs for the delete records.
fn stream_config(replicas: usize, max_bytes: i64) -> async_nats::jetstream::stream::Config {
    super::bucket::bounded_stream_config(
        BUCKET,
        "Gatehouse state store (one key per state store key)",
        replicas,
        max_bytes,
    )
}

/// How much of the bucket's `max_bytes` live records may take (as every node counts them):
/// three quarters.
pub fn live_limit(backstop: i64) -> Option<u64> {
    u64::try_from(backstop).ok().map(|b| b / 4 * 3)
}

/// The state store's keys in the bucket.
pub struct KvKeys {
    kv: async_nats::jetstream::kv::Store,
    js: async_nats::jetstream::Context,
    /// Whether JetStream is known lost (`health.rs`): requests are then refused at once.
    health: Arc<Health>,
}

/// What a request gets while the node knows JetStream is lost (answered `__stat` 503
/// with this in `__stMsg`).
fn no_quorum() -> SharedError {
    SharedError::Unavailable(
        "JetStream has no quorum (no answer from a majority of its servers for \
         cluster.nats.disconnectGrace); nothing was written, try again later"
            .to_owned(),
    )
}

/// The end of the next attempt: [`ATTEMPT`] from now, at most the deadline; unavailable
/// once the deadline has passed.
fn attempt_until(deadline: tokio::time::Instant) -> Result<tokio::time::Instant, SharedError> {
    let now = tokio::time::Instant::now();
    if now >= deadline {
        return Err(SharedError::Unavailable(
            "JetStream did not answer within the request's 5 s".to_owned(),
        ));
    }
    Ok((now + ATTEMPT).min(deadline))
}

/// Sleep `pause` (not past `deadline`), then double it up to [`MAX_PAUSE`].
async fn pause_before_retry(pause: &mut Duration, deadline: tokio::time::Instant) {
    tokio::time::sleep_until((tokio::time::Instant::now() + *pause).min(deadline)).await;
    *pause = (*pause * 2).min(MAX_PAUSE);
}

fn bucket_key(key: &[u8]) -> Result<String, SharedError> {
    let k = key_of(key);
    if k.len() > MAX_KEY {
        return Err(SharedError::Unavailable(
            "the key is too long for cluster mode".to_owned(),
        ));
    }
    Ok(k)
}

impl KvKeys {
    /// Refuse at once while the node knows JetStream is lost (not while merely unsure).
    fn check_available(&self) -> Result<(), SharedError> {
        if self.health.storage_available() {
            Ok(())
        } else {
            Err(no_quorum())
        }
    }

    /// The last message of `subject`, from the stream's leader; tries again (each try
    /// within [`ATTEMPT`]) while JetStream is busy, unreachable or slow, until `deadline`.
    async fn last(
        &self,
        subject: &str,
        deadline: tokio::time::Instant,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, SharedError> {
        let mut pause = FIRST_PAUSE;
        loop {
            self.check_available()?;
            let until = attempt_until(deadline)?;
            let got = tokio::time::timeout_at(
                until,
                self.kv.stream.get_last_raw_message_by_subject(subject),
            )
            .await;
            match got {
                Ok(Ok(message)) => return Ok(Some(message)),
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    return Ok(None)
                }
                Ok(Err(e)) if e.kind() == LastRawMessageErrorKind::InvalidSubject => {
                    return Err(SharedError::Unavailable(format!("reading {BUCKET}: {e}")))
                }
                // No leader yet, no responders, a timeout: try again until the deadline.
                Ok(Err(e)) => {
                    tracing::debug!(target: "cluster", "reading {BUCKET}: {e}; trying again");
                    pause_before_retry(&mut pause, deadline).await;
                }
                // The leader asked may have died: ask again at once (a new leader answers).
                Err(_) => {
                    tracing::debug!(target: "cluster", "reading {BUCKET}: no answer within {ATTEMPT:?}; trying again");
                }
            }
        }
    }
}

impl KvKeys {
    async fn read_now(
        &self,
        key: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<Option<Current>, SharedError> {
        let subject = format!("{}{}", self.kv.prefix, bucket_key(key)?);
        // Not `kv.entry`: KV streams allow direct gets, which any replica answers, a
        // follower perhaps from behind. A stream message get is answered by the leader.
        let Some(message) = self.last(&subject, deadline).await? else {
            return Ok(None);
        };
        // A delete or purge (KV-Operation header) or a limit marker is not a record.
        let ours = message.headers.get("KV-Operation").is_none()
            && message.headers.get("Nats-Marker-Reason").is_none();
        Ok(Some(Current {
            revision: message.sequence,
            stored: ours.then(|| Stored::decode(&message.payload)).flatten(),
        }))
    }

    /// Compare-and-set `record` on `key`, exactly once. Each attempt gets [`ATTEMPT`];
    /// one whose outcome is unknown (no acknowledgement: the leader may have died after
    /// storing it, or before) is settled by reading the key back from the (new) leader:
    ///
    /// - the record there is this one (same bytes: this write's version, an HLC
    ///   timestamp, with its owner and value): it was stored, answered as written;
    /// - the key is still at `expected`: not stored (yet), the same compare-and-set is
    ///   sent again: both expect the same revision, so at most one is stored, and if the
    ///   first one lands after all the second is refused and the read-back finds it;
    /// - anything else: another write came first, a lost compare-and-set
    ///   ([`SharedError::Conflict`]: the service decides again on the fresh record, as
    ///   for any lost race: this write can no longer be stored).
    async fn write_now(
        &self,
        key: &[u8],
        expected: Option<u64>,
        record: &Stored,
        deadline: tokio::time::Instant,
    ) -> Result<u64, SharedError> {
        let subject = format!("{}{}", self.kv.prefix, bucket_key(key)?);
        let value = bytes::Bytes::from(record.encode());
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.unwrap_or(0).to_string().as_str(),
        );
        if matches!(record, Stored::Deleted(_)) {
            headers.insert(
                async_nats::header::NATS_MESSAGE_TTL,
                TOMBSTONE_TTL.as_secs().to_string().as_str(),
            );
        }
        // The key's last revision, and whether its record is this very write.
        let seen = |m: Option<async_nats::jetstream::message::StreamMessage>| {
            m.map(|m| {
                let ours = m.payload == value
                    && m.headers.get("KV-Operation").is_none()
                    && m.headers.get("Nats-Marker-Reason").is_none();
                (m.sequence, ours)
            })
        };
        let mut pause = FIRST_PAUSE;
        // An attempt went unacknowledged: this record may be stored.
        let mut uncertain = false;
        loop {
            self.check_available()?;
            let until = attempt_until(deadline)?;
            let sent = tokio::time::timeout_at(until, async {
                match self
                    .js
                    .publish_with_headers(subject.clone(), headers.clone(), value.clone())
                    .await
                {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                }
            })
            .await;
            let failure = match sent {
                Ok(Ok(ack)) => return Ok(ack.sequence),
                Ok(Err(e)) => {
                    let failure = write_failure(&e);
                    if !matches!(failure, WriteFailure::Conflict) {
                        tracing::debug!(target: "cluster", "writing {BUCKET}: {e}");
                    }
                    failure
                }
                Err(_) => {
                    tracing::debug!(target: "cluster", "writing {BUCKET}: no acknowledgement within {ATTEMPT:?}");
                    WriteFailure::Unknown
                }
            };
            match failure {
                WriteFailure::Conflict => {
                    // The leader refuses a write while an earlier one of the key is
                    // still being applied, and reads show the key without it until
                    // then: wait until the key's revision has moved, so that the
                    // service's next read sees the write it lost to. After an
                    // unacknowledged attempt, the write it lost to may be that one.
                    loop {
                        let last = seen(self.last(&subject, deadline).await?);
                        // Without an unacknowledged attempt, an equal record is not ours.
                        let last = last.map(|(seq, ours)| (seq, ours && uncertain));
                        match settle(last, expected) {
                            Settled::Stored(revision) => return Ok(revision),
                            Settled::NotYet => pause_before_retry(&mut pause, deadline).await,
                            Settled::Lost => return Err(SharedError::Conflict),
                        }
                    }
                }
                WriteFailure::Unknown => {
                    uncertain = true;
                    match settle(seen(self.last(&subject, deadline).await?), expected) {
                        Settled::Stored(revision) => return Ok(revision),
                        Settled::NotYet => {
                            tracing::debug!(target: "cluster", "writing {BUCKET}: not stored; sending it again");
                        }
                        Settled::Lost => return Err(SharedError::Conflict),
                    }
                }
                WriteFailure::Busy => pause_before_retry(&mut pause, deadline).await,
                WriteFailure::Full => return Err(SharedError::Full),
                WriteFailure::Failed(e) => {
                    return Err(SharedError::Unavailable(format!("writing {BUCKET}: {e}")))
                }
            }
        }
    }
}

/// What the key's last revision on the leader says of a compare-and-set expecting
/// `expected` whose outcome is unknown.
#[derive(Debug, PartialEq, Eq)]
enum Settled {
    /// This very record is there, at this revision: it was stored.
    Stored(u64),
    /// The key is still at `expected`: not stored (yet); the same compare-and-set may be
    /// sent again (both expect `expected`: at most one can be stored).
    NotYet,
    /// Another write is there: this one can no longer be stored (its expectation is
    /// past); decide again on the fresh record.
    Lost,
}

/// Settle a write from the key's last revision and whether its record is this write's
/// (`last`: `None` for a key never written).
fn settle(last: Option<(u64, bool)>, expected: Option<u64>) -> Settled {
    match last {
        Some((revision, true)) => Settled::Stored(revision),
        last if last.map(|(revision, _)| revision) == expected => Settled::NotYet,
        _ => Settled::Lost,
    }
}

impl SharedKeys for KvKeys {
    fn read<'a>(
        &'a self,
        key: &'a [u8],
        deadline: std::time::Instant,
    ) -> SharedFuture<'a, Option<Current>> {
        Box::pin(self.read_now(key, tokio::time::Instant::from_std(deadline)))
    }

    fn write<'a>(
        &'a self,
        key: &'a [u8],
        expected: Option<u64>,
        record: &'a Stored,
        deadline: std::time::Instant,
    ) -> SharedFuture<'a, u64> {
        Box::pin(self.write_now(
            key,
            expected,
            record,
            tokio::time::Instant::from_std(deadline),
        ))
    }
}

/// The first pause before a read or write that found JetStream busy is tried again; it
/// doubles up to [`MAX_PAUSE`], within the request's deadline in all.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(200);

enum WriteFailure {
    /// The key's last revision was not the expected one: read and decide again.
    Conflict,
    /// Not decided (the stream's leader still applies earlier writes of the subject, or
    /// nobody answers the stream's subjects yet): the same write may be tried again.
    Busy,
    /// The bucket's `max_bytes` (or the account's storage limit) refused it.
    Full,
    /// No acknowledgement (in time, or the connection broke after sending): the write
    /// may or may not be stored; [`KvKeys::write_now`] reads the key back to know.
    Unknown,
    /// Refused for another reason: answered unavailable.
    Failed(String),
}

/// Why a compare-and-set failed. async-nats maps only JetStream's error 10071 to
/// `WrongLastSequence`; nats-server 2.11+ answers a per-subject expectation with 10164
/// ("wrong last sequence", constant form), and with 10163 ("expected last sequence per
/// subject not ready") while earlier proposals of the subject are in flight. A stream
/// over its `max_bytes` with discard new answers 10077 "maximum bytes exceeded"; an
/// account over its storage 10047 / 10002.
fn write_failure(e: &async_nats::jetstream::context::PublishError) -> WriteFailure {
    use async_nats::jetstream::context::PublishErrorKind;
    use async_nats::jetstream::ErrorCode;
    match e.kind() {
        PublishErrorKind::WrongLastSequence => return WriteFailure::Conflict,
        // No responders: no server took the message, so trying again is safe.
        PublishErrorKind::StreamNotFound => return WriteFailure::Busy,
        // The write may have been stored: settled by reading the key back.
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => return WriteFailure::Unknown,
        _ => {}
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(js) = s.downcast_ref::<async_nats::jetstream::Error>() {
            return match js.error_code() {
                ErrorCode::STREAM_WRONG_LAST_SEQUENCE
                | ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT => WriteFailure::Conflict,
                ErrorCode::STREAM_EXPECTED_LAST_SEQ_PER_SUBJECT_NOT_READY => WriteFailure::Busy,
                ErrorCode::STREAM_STORE_FAILED if js.to_string().contains("maximum") => {
                    WriteFailure::Full
                }
                ErrorCode::STORAGE_RESOURCES_EXCEEDED | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED => {
                    WriteFailure::Full
                }
                _ => WriteFailure::Failed(e.to_string()),
            };
        }
        source = s.source();
    }
    WriteFailure::Failed(e.to_string())
}

/// Expiries seen through the watch: when each key with a `PX` expires.
#[derive(Default)]
struct Expiries {
    by_key: HashMap<Vec<u8>, u64>,
    due: BTreeSet<(u64, Vec<u8>)>,
}

impl Expiries {
    fn set(&mut self, key: &[u8], at: Option<u64>) {
        if let Some(old) = self.by_key.remove(key) {
            self.due.remove(&(old, key.to_vec()));
        }
        if let Some(at) = at {
            self.by_key.insert(key.to_vec(), at);
            self.due.insert((at, key.to_vec()));
        }
    }

    /// Take the keys due by `now_ms`; returns them and the next deadline after.
    fn take_due(&mut self, now_ms: u64) -> (Vec<Vec<u8>>, Option<u64>) {
        let mut keys = Vec::new();
        while let Some((at, key)) = self.due.first().cloned() {
            if at > now_ms {
                return (keys, Some(at));
            }
            self.due.remove(&(at, key.clone()));
            self.by_key.remove(&key);
            keys.push(key);
        }
        (keys, None)
    }
}

struct Shared {
    expiries: parking_lot::Mutex<Expiries>,
    changed: Notify,
}

/// Open (or create) the bucket, make it the state store's shared keys, and start the
/// watch (KEYNOTIFY, expiries) and the expiry task.
pub(super) async fn start(
    client: &async_nats::Client,
    replicas: usize,
    broker: &Arc<Broker>,
    health: &Arc<Health>,
) -> Result<(), String> {
    let max_bytes = backstop(&broker.state_store.quotas());
    broker
        .state_store
        .set_shared_stored_limit(live_limit(max_bytes));
    let (kv, mut watch) =
        super::bucket::open_stream_watched(client, BUCKET, stream_config(replicas, max_bytes))
            .await?;
    broker.state_store.attach_shared(Arc::new(KvKeys {
        kv: kv.clone(),
        js: async_nats::jetstream::new(client.clone()),
        health: health.clone(),
    }));
    let shared = Arc::new(Shared {
        expiries: parking_lot::Mutex::new(Expiries::default()),
        changed: Notify::new(),
    });
    // The keys stored before this node started: their expiries (a node that starts after
    // every other stopped still expires them) and the count for the quotas; no
    // notifications (nobody here registered).
    let (records, revision) = snapshot(&kv, &mut watch).await?;
    recount(broker, &shared, records, revision, None);
    tokio::spawn(follow(
        kv,
        watch,
        revision,
        Arc::downgrade(broker),
        shared.clone(),
    ));
    tokio::spawn(expire(Arc::downgrade(broker), shared));
    Ok(())
}

/// Every key's current record, from a watch with history just opened (`watch`), and the
/// highest revision read. Ends at the last record the watch announced (delta 0), or
/// when none came for a second: a delete record may expire (TTL) before it is delivered,
/// and the one announced last may then never come.
async fn snapshot(
    kv: &async_nats::jetstream::kv::Store,
    watch: &mut async_nats::jetstream::kv::Watch,
) -> Result<(Vec<async_nats::jetstream::kv::Entry>, u64), String> {
    let mut entries = Vec::new();
    let mut revision = 0;
    let stored = kv
        .status()
        .await
        .map(|s| s.values())
        .map_err(|e| format!("the {BUCKET} bucket: {e}"))?;
    if stored == 0 {
        return Ok((entries, revision));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let idle = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        let entry = match tokio::time::timeout_at(idle, watch.next()).await {
            Ok(Some(Ok(entry))) => entry,
            Ok(Some(Err(e))) => return Err(format!("reading the {BUCKET} bucket: {e}")),
            Ok(None) => return Err(format!("reading the {BUCKET} bucket: the watch ended")),
            Err(_) if tokio::time::Instant::now() < deadline => break,
            Err(_) => return Err(format!("the {BUCKET} bucket could not be read within 30 s")),
        };
        revision = revision.max(entry.revision);
        let last = entry.delta == 0;
        entries.push(entry);
        if last {
            break;
        }
    }
    Ok((entries, revision))
}

/// Take a fresh read of the bucket (`entries`, up to `upto`) as this node's count of
/// live keys and its expiries; notify the changes after `notify_after` (those the node
/// has not seen yet).
fn recount(
    broker: &Broker,
    shared: &Shared,
    entries: Vec<async_nats::jetstream::kv::Entry>,
    upto: u64,
    notify_after: Option<u64>,
) {
    let mut records = Vec::with_capacity(entries.len());
    for entry in &entries {
        let Some((key, record)) = record_of(entry) else {
            continue;
        };
        shared.expiries.lock().set(&key, expiry_of(record.as_ref()));
        if let (Some(after), Some(record)) = (notify_after, &record) {
            if entry.revision > after {
                broker.state_store.notify_shared(&key, record, |client, m| {
                    broker.deliver_notification(client, m)
                });
            }
        }
        records.push((bytes::Bytes::from(key), entry.revision, record));
    }
    broker.state_store.recount_shared(records, upto);
    shared.changed.notify_one();
}

/// Hands every change of the bucket to the state store (KEYNOTIFY, the count for the
/// quotas) and records its expiry. When the watch ends or fails (NATS reconnected), it
/// watches again from the start: every key's current record recounts the live keys
/// (deletes missed meanwhile may have left no record by now: they expire), and the
/// changes after the last one seen are notified. Ends with the broker.
///
/// Not `bucket::follow` (which resumes after the last revision seen) for that recount.
async fn follow(
    kv: async_nats::jetstream::kv::Store,
    mut watch: async_nats::jetstream::kv::Watch,
    mut revision: u64,
    broker: Weak<Broker>,
    shared: Arc<Shared>,
) {
    loop {
        while let Some(next) = watch.next().await {
            let Some(b) = broker.upgrade() else {
                return;
            };
            match next {
                Ok(entry) => {
                    revision = revision.max(entry.revision);
                    apply(&b, &shared, entry);
                }
                Err(e) => {
                    tracing::warn!(target: "cluster", "watching {BUCKET}: {e}");
                    break;
                }
            }
        }
        if broker.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = async {
            let mut w = kv
                .watch_with_history(">")
                .await
                .map_err(|e| e.to_string())?;
            let read = snapshot(&kv, &mut w).await?;
            Ok::<_, String>((w, read))
        };
        match again.await {
            Ok((w, (entries, upto))) => {
                let Some(b) = broker.upgrade() else {
                    return;
                };
                recount(&b, &shared, entries, upto, Some(revision));
                revision = revision.max(upto);
                watch = w;
            }
            Err(e) => tracing::warn!(target: "cluster", "watching {BUCKET} again: {e}"),
        }
    }
}

/// The state store key of a bucket entry and its record (`None`: deleted or purged by
/// something else than Gatehouse, so absent); `None` for an entry that is not one of ours.
fn record_of(entry: &async_nats::jetstream::kv::Entry) -> Option<(Vec<u8>, Option<Stored>)> {
    let key = key_from(&entry.key)?;
    match entry.operation {
        async_nats::jetstream::kv::Operation::Put => match Stored::decode(&entry.value) {
            Some(record) => Some((key, Some(record))),
            None => {
                tracing::debug!(target: "cluster", "not a state store record in {BUCKET}");
                None
            }
        },
        _ => Some((key, None)),
    }
}

fn expiry_of(record: Option<&Stored>) -> Option<u64> {
    match record {
        Some(Stored::Live(entry)) => entry.expires_at_ms,
        _ => None,
    }
}

fn apply(broker: &Broker, shared: &Shared, entry: async_nats::jetstream::kv::Entry) {
    let Some((key, record)) = record_of(&entry) else {
        return;
    };
    shared.expiries.lock().set(&key, expiry_of(record.as_ref()));
    broker
        .state_store
        .seen_shared(&key, entry.revision, record.as_ref());
    shared.changed.notify_one();
    // An operator's delete or purge: nothing to notify.
    if let Some(record) = record {
        broker
            .state_store
            .notify_shared(&key, &record, |client, m| {
                broker.deliver_notification(client, m)
            });
    }
}

/// Deletes keys as they fall due (every node tries; compare-and-set lets one win).
async fn expire(broker: Weak<Broker>, shared: Arc<Shared>) {
    loop {
        let Some(b) = broker.upgrade() else {
            return;
        };
        let now_ms = b.state_store.now_ms();
        let (due, next) = shared.expiries.lock().take_due(now_ms);
        for key in due {
            if let Err(e) = b.state_store.expire_shared(&key).await {
                tracing::debug!(target: "cluster", "expiring a state store key: {e}");
            }
        }
        drop(b);
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(now_ms))
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_reversible() {
        for key in [&b"k"[..], b"a/b.c d", b"\0\r\n\xff", b"$SYS"] {
            let k = key_of(key);
            assert!(k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(key_from(&k).as_deref(), Some(key));
        }
    }

    /// A write whose acknowledgement was lost is answered as stored when its own record
    /// is there, sent again while the key has not moved, and decided again (a lost
    /// compare-and-set) only when another write came first: never decided again on its
    /// own record (an NX would say "not applied" for its own write).
    #[test]
    fn an_unacknowledged_write_is_settled_by_the_key_read_back() {
        assert_eq!(settle(Some((8, true)), Some(7)), Settled::Stored(8));
        assert_eq!(settle(Some((1, true)), None), Settled::Stored(1));
        assert_eq!(settle(Some((7, false)), Some(7)), Settled::NotYet);
        assert_eq!(settle(None, None), Settled::NotYet);
        assert_eq!(settle(Some((9, false)), Some(7)), Settled::Lost);
        assert_eq!(settle(Some((3, false)), None), Settled::Lost);
        // Removed meanwhile (a delete record's TTL, an operator's purge): not ours.
        assert_eq!(settle(None, Some(7)), Settled::Lost);
    }

    #[test]
    fn expiries_come_due_in_order_and_follow_rewrites() {
        let mut e = Expiries::default();
        e.set(b"a", Some(20));
        e.set(b"b", Some(10));
        e.set(b"a", Some(30));
        e.set(b"c", Some(5));
        e.set(b"c", None);
        assert_eq!(e.take_due(20), (vec![b"b".to_vec()], Some(30)));
        assert_eq!(e.take_due(30), (vec![b"a".to_vec()], None));
    }
}
