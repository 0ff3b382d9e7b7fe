//! The journal of persisted sessions (`persistence.subscriberQueue`) and retained messages
//! (`persistence.retain`): what the broker would need after a restart or a `kill -9`.
//!
//! Writes never block a connection task. Each change goes into a pending map under a short
//! lock (the latest change of a record wins, so an enqueue and its acknowledgement inside
//! one batch cost no disk write at all) and gets a *ticket*; one writer task commits each
//! batch in one transaction on a blocking thread and publishes the highest durable ticket.
//! A publisher's PUBACK/PUBREC for a message that reached a persisted queue (or set a
//! persisted retained message) waits for its ticket (see `connection::held_acks`), so a
//! message the broker acknowledged is on disk: group commit, one fsync per batch.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::glob::Glob;
use parking_lot::Mutex;
use redb::{ReadableTable, TableDefinition};
use tokio::sync::{watch, Notify};

use super::records::{self, message_key, message_range, SessionMeta};
use super::wal::{Batch, Wal};
use super::{Database, PersistError};
use crate::message::{Delivery, Message};
use gatehouse_config::{DynamicMode, Persistence, PersistenceMode};

/// client id → [`records::encode_session`].
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// [`message_key`] → [`records::encode_delivery`].
const MESSAGES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("messages");
/// topic → [`records::encode_retained`].
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

const RETRY: Duration = Duration::from_millis(200);
/// The write-ahead log, next to the database file.
pub const LOG_FILE: &str = "journal.log";
/// How often the log is folded into the tables (and fsynced): the most a power loss can
/// take; a killed process loses nothing (see `wal`).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Fold earlier when this many records wait in memory...
const CHECKPOINT_OPS: usize = 100_000;
/// ...or the log grew this large.
const CHECKPOINT_LOG_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Table {
    Sessions,
    Messages,
    Retained,
}

#[derive(Default)]
struct Pending {
    ops: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    /// Message keys first written in this batch: removing one again before the batch is
    /// logged just forgets it.
    fresh: HashSet<Vec<u8>>,
    /// Sessions whose every message goes (applied before `ops`).
    dropped: Vec<String>,
    recorded: u64,
    /// The file reached `maxSize`: new records are refused, updates and deletes go on.
    full: bool,
    warned: bool,
    closed: bool,
}

/// What a session was selected for, decided once at CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selected {
    /// Every QoS 1/2 message of the session persists.
    AllMessages,
    /// Only messages on the policy's topics persist (`Custom` with `topics`).
    TopicsOnly,
}

struct Policy {
    queue_mode: PersistenceMode,
    queue_client_ids: Vec<Glob>,
    queue_topics: Vec<String>,
    queue_dynamic: bool,
    retain_mode: PersistenceMode,
    retain_topics: Vec<String>,
    retain_dynamic: bool,
    dynamic_key: String,
    dynamic_value: String,
}

impl Policy {
    fn new(config: &Persistence) -> Policy {
        let q = &config.subscriber_queue;
        let qs = q.subscriber_queue_settings.clone().unwrap_or_default();
        let r = &config.retain;
        let rs = r.retain_settings.clone().unwrap_or_default();
        Policy {
            queue_mode: q.mode,
            // Validation checked the globs; one that does not compile matches nothing.
            queue_client_ids: qs
                .subscriber_client_ids
                .iter()
                .filter_map(|g| Glob::new(g).ok())
                .collect(),
            queue_topics: qs.topics,
            queue_dynamic: qs.dynamic.mode == DynamicMode::Enabled,
            retain_mode: r.mode,
            retain_topics: rs.topics,
            retain_dynamic: rs.dynamic.mode == DynamicMode::Enabled,
            dynamic_key: config.dynamic_settings.user_property_key.clone(),
            dynamic_value: config.dynamic_settings.user_property_value.clone(),
        }
    }

    fn dynamic(&self, user_properties: &[(String, String)]) -> bool {
        user_properties
            .iter()
            .any(|(k, v)| *k == self.dynamic_key && *v == self.dynamic_value)
    }
}

struct Shared {
    file: std::path::PathBuf,
    policy: Policy,
    max_size: u64,
    pending: Mutex<Pending>,
    wake: Notify,
    durable: watch::Sender<u64>,
}

/// Sessions and retained messages as loaded at start.
pub struct Loaded {
    pub sessions: Vec<LoadedSession>,
    pub retained: Vec<Message>,
}

pub struct LoadedSession {
    pub client_id: String,
    pub meta: SessionMeta,
    /// In seq order (= queue order).
    pub messages: Vec<(u64, Delivery, records::Sent)>,
}

/// The journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("file", &self.shared.file)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Load what is stored and start the writer. `None` when neither sessions nor retained
    /// messages persist under `config`. Blocking (reads the tables); needs a tokio runtime.
    pub fn open(
        db: &Database,
        config: &Persistence,
    ) -> Result<Option<(Journal, Loaded)>, PersistError> {
        let policy = Policy::new(config);
        if policy.queue_mode == PersistenceMode::None && policy.retain_mode == PersistenceMode::None
        {
            return Ok(None);
        }
        let log_path = db.file().with_file_name(LOG_FILE);
        let (mut wal, logged) = Wal::open(&log_path).map_err(|e| io_error(&log_path, e))?;
        replay(db, &mut wal, logged)?;
        let loaded = load(db)?;
        let shared = Arc::new(Shared {
            file: db.file().to_owned(),
            policy,
            max_size: config.max_size,
            pending: Mutex::new(Pending::default()),
            wake: Notify::new(),
            durable: watch::Sender::new(0),
        });
        tokio::spawn(run(shared.clone(), db.clone(), wal));
        Ok(Some((Journal { shared }, loaded)))
    }

    /// Whether a session whose CONNECT had `user_properties` persists, and how much of it.
    pub fn select_session(
        &self,
        client_id: &str,
        user_properties: &[(String, String)],
    ) -> Option<Selected> {
        let p = &self.shared.policy;
        match p.queue_mode {
            PersistenceMode::None => None,
            PersistenceMode::All => Some(Selected::AllMessages),
            PersistenceMode::Custom => {
                let chosen = p.queue_client_ids.iter().any(|g| g.is_match(client_id))
                    || (p.queue_dynamic && p.dynamic(user_properties));
                if chosen {
                    Some(Selected::AllMessages)
                } else if !p.queue_topics.is_empty() {
                    Some(Selected::TopicsOnly)
                } else {
                    None
                }
            }
        }
    }

    /// Whether a message on `topic` persists in a session selected as `selected`.
    pub fn message_wanted(&self, selected: Selected, topic: &str) -> bool {
        match selected {
            Selected::AllMessages => true,
            Selected::TopicsOnly => self
                .shared
                .policy
                .queue_topics
                .iter()
                .any(|f| gatehouse_protocol::topic::matches(f, topic)),
        }
    }

    /// Whether retained messages persist at all.
    pub fn retains(&self) -> bool {
        self.shared.policy.retain_mode != PersistenceMode::None
    }

    /// Whether a retained message persists.
    pub fn retain_wanted(&self, m: &Message) -> bool {
        let p = &self.shared.policy;
        match p.retain_mode {
            PersistenceMode::None => false,
            PersistenceMode::All => true,
            PersistenceMode::Custom => {
                p.retain_topics
                    .iter()
                    .any(|f| gatehouse_protocol::topic::matches(f, &m.topic))
                    || (p.retain_dynamic && p.dynamic(&m.properties.user_properties))
            }
        }
    }

    fn record(&self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>, new: bool) -> Option<u64> {
        let mut pending = self.shared.pending.lock();
        if new && value.is_some() && pending.full {
            if !std::mem::replace(&mut pending.warned, true) {
                tracing::warn!(
                    target: "persistence",
                    file = %self.shared.file.display(),
                    "persistence maxSize reached: new messages and sessions stay in memory only"
                );
            }
            return None;
        }
        if new && table == Table::Messages {
            pending.fresh.insert(key.clone());
        } else if value.is_none() && table == Table::Messages && pending.fresh.remove(&key) {
            pending.ops.remove(&(table, key));
            pending.recorded += 1;
            let ticket = pending.recorded;
            drop(pending);
            // Nothing to write, but earlier tickets may now be due.
            self.shared.wake.notify_one();
            return Some(ticket);
        }
        pending.ops.insert((table, key), value);
        pending.recorded += 1;
        let ticket = pending.recorded;
        drop(pending);
        self.shared.wake.notify_one();
        Some(ticket)
    }

    /// A new queued message of a persisted session; `None` when it stays in memory only
    /// (`maxSize` reached).
    pub fn add_message(&self, client_id: &str, seq: u64, d: &Delivery) -> Option<u64> {
        let record = records::encode_delivery(d, records::Sent::Queued);
        self.record(
            Table::Messages,
            message_key(client_id, seq),
            Some(record),
            true,
        )
    }

    /// A persisted message changed stage (sent, PUBREC received).
    pub fn update_message(&self, client_id: &str, seq: u64, d: &Delivery, sent: records::Sent) {
        let record = records::encode_delivery(d, sent);
        self.record(
            Table::Messages,
            message_key(client_id, seq),
            Some(record),
            false,
        );
    }

    /// A persisted message was acknowledged, expired or dropped.
    pub fn remove_message(&self, client_id: &str, seq: u64) {
        self.record(Table::Messages, message_key(client_id, seq), None, false);
    }

    /// The session's subscriptions, expiry or QoS 2 state changed.
    pub fn put_session(&self, client_id: &str, meta: &SessionMeta) -> Option<u64> {
        let record = records::encode_session(meta);
        self.record(
            Table::Sessions,
            client_id.as_bytes().to_vec(),
            Some(record),
            false,
        )
    }

    /// The session ended: it and every message of it go.
    pub fn drop_session(&self, client_id: &str) {
        let mut pending = self.shared.pending.lock();
        forget_messages(&mut pending.ops, client_id);
        pending.dropped.push(client_id.to_owned());
        pending
            .ops
            .insert((Table::Sessions, client_id.as_bytes().to_vec()), None);
        pending.recorded += 1;
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// A retained message was set (`Some`) or cleared.
    pub fn put_retained(&self, topic: &str, m: Option<&Message>) -> Option<u64> {
        let record = m.map(records::encode_retained);
        let new = record.is_some();
        self.record(Table::Retained, topic.as_bytes().to_vec(), record, new)
    }

    /// Whether every change up to `ticket` is on disk.
    pub fn is_durable(&self, ticket: u64) -> bool {
        *self.shared.durable.borrow() >= ticket
    }

    /// Resolves once every change up to `ticket` is on disk (or the writer stopped).
    pub fn wait_durable(&self, ticket: u64) -> impl std::future::Future<Output = ()> + use<> {
        let mut rx = self.shared.durable.subscribe();
        async move {
            let _ = rx.wait_for(|d| *d >= ticket).await;
        }
    }

    /// Wait until everything recorded so far is on disk (shutdown, tests).
    pub async fn flush(&self) {
        let target = self.shared.pending.lock().recorded;
        self.wait_durable(target).await;
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.pending.get_mut().closed = true;
    }
}

/// Every row of `table` (none when it does not exist yet), keys turned owned by `own`.
fn read_table<K: redb::Key + 'static, O>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
    own: impl Fn(K::SelfType<'_>) -> O,
) -> Result<Vec<(O, Vec<u8>)>, redb::Error> {
    let mut rows = Vec::new();
    match tx.open_table(table) {
        Ok(t) => {
            for row in t.iter()? {
                let (k, v) = row?;
                rows.push((own(k.value()), v.value().to_vec()));
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rows)
}

/// Every stored session (with its messages) and retained message; records that do not
/// decode are an error naming them, never skipped silently.
fn load(db: &Database) -> Result<Loaded, PersistError> {
    let file = db.file().to_owned();
    let bad = |table: &'static str, key: String, why: records::BadRecord| PersistError::Record {
        file: file.clone(),
        table,
        key,
        reason: why.to_string(),
    };
    let raw = db.read(|tx| {
        let sessions = read_table(tx, SESSIONS, |k: &str| k.to_owned())?;
        let messages = read_table(tx, MESSAGES, |k: &[u8]| k.to_vec())?;
        let retained = read_table(tx, RETAINED, |k: &str| k.to_owned())?;
        Ok((sessions, messages, retained))
    })?;
    let (sessions, messages, retained) = raw;
    let mut by_client: BTreeMap<String, LoadedSession> = BTreeMap::new();
    for (client_id, record) in sessions {
        let meta =
            records::decode_session(&record).map_err(|e| bad("sessions", client_id.clone(), e))?;
        by_client.insert(
            client_id.clone(),
            LoadedSession {
                client_id,
                meta,
                messages: Vec::new(),
            },
        );
    }
    for (key, record) in messages {
        let (client_id, seq) = records::split_message_key(&key)
            .map_err(|e| bad("messages", String::from_utf8_lossy(&key).into_owned(), e))?;
        let (delivery, sent) = records::decode_delivery(&record)
            .map_err(|e| bad("messages", format!("{client_id}/{seq}"), e))?;
        // Messages of a session whose record is gone (it ended) are left for the
        // writer's next session drop; they are not resurrected.
        if let Some(s) = by_client.get_mut(client_id) {
            s.messages.push((seq, delivery, sent));
        }
    }
    let mut out = Vec::new();
    for (topic, record) in retained {
        out.push(records::decode_retained(&record).map_err(|e| bad("retained", topic.clone(), e))?);
    }
    Ok(Loaded {
        sessions: by_client.into_values().collect(),
        retained: out,
    })
}

type Ops = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Drop the changes to `client_id`'s messages from `ops` (its session ended).
fn forget_messages(ops: &mut Ops, client_id: &str) {
    let (from, to) = message_range(client_id);
    let doomed: Vec<_> = ops
        .range((
            Bound::Included((Table::Messages, from)),
            Bound::Excluded((Table::Messages, to)),
        ))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        ops.remove(&k);
    }
}

impl Table {
    fn code(self) -> u8 {
        match self {
            Table::Sessions => 1,
            Table::Messages => 2,
            Table::Retained => 3,
        }
    }

    fn of(code: u8) -> Option<Table> {
        match code {
            1 => Some(Table::Sessions),
            2 => Some(Table::Messages),
            3 => Some(Table::Retained),
            _ => None,
        }
    }
}

/// What the log holds and the tables do not yet: folded into them at the next checkpoint.
#[derive(Default)]
struct Unfolded {
    ops: Ops,
    dropped: Vec<String>,
    /// Message keys not in the tables yet: a removal just forgets them, so a message
    /// queued and acknowledged between two checkpoints never reaches the tables.
    fresh: HashSet<Vec<u8>>,
}

impl Unfolded {
    fn absorb(&mut self, ops: Ops, dropped: Vec<String>, fresh: HashSet<Vec<u8>>) {
        for client_id in dropped {
            forget_messages(&mut self.ops, &client_id);
            self.dropped.push(client_id);
        }
        for ((table, key), value) in ops {
            if table == Table::Messages {
                if value.is_none() && self.fresh.remove(&key) {
                    self.ops.remove(&(table, key));
                    continue;
                }
                if fresh.contains(&key) {
                    self.fresh.insert(key.clone());
                }
            }
            self.ops.insert((table, key), value);
        }
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.dropped.is_empty()
    }
}

/// Replay the log into the tables (a previous run's acknowledged changes) and start it
/// over. Blocking; at start.
fn replay(db: &Database, wal: &mut Wal, batches: Vec<Batch>) -> Result<(), PersistError> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut unfolded = Unfolded::default();
    for b in batches {
        let ops = b
            .ops
            .into_iter()
            .filter_map(|(t, k, v)| Table::of(t).map(|t| ((t, k), v)))
            .collect();
        unfolded.absorb(ops, b.dropped, HashSet::new());
    }
    tracing::info!(
        target: "persistence",
        changes = unfolded.ops.len(),
        "replaying the journal log of the previous run"
    );
    commit(db, &unfolded.ops, &unfolded.dropped)?;
    wal.reset().map_err(|e| io_error(wal.path(), e))
}

fn io_error(path: &std::path::Path, source: std::io::Error) -> PersistError {
    PersistError::Io {
        file: path.to_owned(),
        source,
    }
}

async fn run(shared: Arc<Shared>, db: Database, wal: Wal) {
    let mut wal = Some(wal);
    let mut unfolded = Unfolded::default();
    let mut last_fold = tokio::time::Instant::now();
    loop {
        let batch = {
            let mut pending = shared.pending.lock();
            if pending.ops.is_empty() && pending.dropped.is_empty() {
                // Changes that cancelled out before being logged: nothing to write,
                // their tickets are done.
                if *shared.durable.borrow() < pending.recorded {
                    shared.durable.send_replace(pending.recorded);
                }
                if pending.closed && unfolded.is_empty() {
                    return;
                }
                None
            } else {
                Some((
                    std::mem::take(&mut pending.ops),
                    std::mem::take(&mut pending.dropped),
                    std::mem::take(&mut pending.fresh),
                    pending.recorded,
                ))
            }
        };
        let due = !unfolded.is_empty()
            && (last_fold.elapsed() >= CHECKPOINT_EVERY
                || unfolded.ops.len() >= CHECKPOINT_OPS
                || wal
                    .as_ref()
                    .is_some_and(|w| w.len() >= CHECKPOINT_LOG_BYTES));
        let Some((ops, dropped, fresh, ticket)) = batch else {
            if due || (!unfolded.is_empty() && shared.pending.lock().closed) {
                fold(&shared, &db, &mut wal, &mut unfolded).await;
                last_fold = tokio::time::Instant::now();
                continue;
            }
            let notified = shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let empty = {
                let p = shared.pending.lock();
                p.ops.is_empty() && p.dropped.is_empty()
            };
            if empty {
                if unfolded.is_empty() {
                    notified.await;
                } else {
                    let _ = tokio::time::timeout_at(last_fold + CHECKPOINT_EVERY, notified).await;
                }
            }
            continue;
        };
        let Some(mut log) = wal.take() else { return };
        // One `write` into the page cache, on this task: a hop to a blocking thread and
        // back would cost more than the write, and every acknowledgement waits for it.
        match log.append_parts(&dropped, ops.iter().map(|((t, k), v)| (t.code(), k, v))) {
            Ok(()) => {
                wal = Some(log);
                shared.durable.send_replace(ticket);
                unfolded.absorb(ops, dropped, fresh);
                if due {
                    fold(&shared, &db, &mut wal, &mut unfolded).await;
                    last_fold = tokio::time::Instant::now();
                }
            }
            Err(e) => {
                wal = Some(log);
                tracing::error!(
                    target: "persistence",
                    "writing {} session and retained changes to the journal log failed (retrying): {e}",
                    ops.len() + dropped.len()
                );
                {
                    let mut p = shared.pending.lock();
                    for (k, v) in ops {
                        p.ops.entry(k).or_insert(v);
                    }
                    p.fresh.extend(fresh);
                    let mut again = dropped;
                    again.append(&mut p.dropped);
                    p.dropped = again;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Checkpoint: fold what the log holds into the tables (one fsynced transaction), then
/// start the log over. On failure the log keeps everything and the next one retries.
async fn fold(shared: &Shared, db: &Database, wal: &mut Option<Wal>, unfolded: &mut Unfolded) {
    let Some(mut log) = wal.take() else { return };
    let taken = std::mem::take(unfolded);
    let db = db.clone();
    let result = tokio::task::spawn_blocking(move || {
        let committed = commit(&db, &taken.ops, &taken.dropped);
        let reset = match &committed {
            Ok(_) => log.reset().map_err(|e| io_error(log.path(), e)),
            Err(_) => Ok(()),
        };
        (committed, reset, log, taken)
    })
    .await;
    match result {
        Ok((Ok(used), Ok(()), log, _)) => {
            *wal = Some(log);
            let full = used >= shared.max_size;
            let mut p = shared.pending.lock();
            if p.full && !full {
                p.warned = false;
            }
            p.full = full;
        }
        Ok((committed, reset, log, taken)) => {
            *wal = Some(log);
            let err = committed.err().or(reset.err());
            tracing::error!(
                target: "persistence",
                "checkpoint of the journal failed (the log keeps the changes; retrying): {}",
                err.map(|e| e.to_string()).unwrap_or_default()
            );
            let mut merged = taken;
            let later = std::mem::take(unfolded);
            merged.absorb(later.ops, later.dropped, later.fresh);
            *unfolded = merged;
        }
        Err(_) => {}
    }
}

fn commit(db: &Database, ops: &Ops, dropped: &[String]) -> Result<u64, PersistError> {
    db.write(|tx| {
        {
            let mut messages = tx.open_table(MESSAGES)?;
            for client_id in dropped {
                let (from, to) = message_range(client_id);
                messages.retain_in::<&[u8], _>(from.as_slice()..to.as_slice(), |_, _| false)?;
            }
            let mut sessions = tx.open_table(SESSIONS)?;
            let mut retained = tx.open_table(RETAINED)?;
            for ((table, key), value) in ops {
                match table {
                    Table::Messages => match value {
                        Some(v) => {
                            messages.insert(key.as_slice(), v.as_slice())?;
                        }
                        None => {
                            messages.remove(key.as_slice())?;
                        }
                    },
                    Table::Sessions | Table::Retained => {
                        let name = std::str::from_utf8(key).unwrap_or_default();
                        let t = if *table == Table::Sessions {
                            &mut sessions
                        } else {
                            &mut retained
                        };
                        match value {
                            Some(v) => {
                                t.insert(name, v.as_slice())?;
                            }
                            None => {
                                t.remove(name)?;
                            }
                        }
                    }
                }
            }
        }
        Database::used_bytes(tx)
    })
}
