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
//!
//! # Layout
//! - `policy`: which sessions, messages and retained messages persist.
//! - [`records`]: how each record is encoded.
//! - `bodies`: which stored message bodies the delivery records reference (a message
//!   queued for many persisted sessions is stored once).
//! - `recording`: the session's side, which changes of its state are recorded as they
//!   happen (what the QoS state machine reports, the subscriptions, the expiry).
//! - here: [`Journal`], the handle sessions and the registry write through (the pending
//!   map and its tickets).
//! - `writer`: the writer task (log appends, checkpoints).
//! - `restore`: start-up (replaying the log, loading the tables).
//!
//! Everything below [`Journal`] goes through [`crate::storage::Store`], so the same
//! journal runs on any store; the log is the embedded store's (a store that is durable
//! per write does not need it).

mod bodies;
mod policy;
// The session's side: which changes of its state are recorded (used by `session`).
pub(super) mod recording;
pub mod records;
mod restore;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

use crate::message::{Delivery, Message};
use crate::storage::wal::Wal;
use crate::storage::{self, Database, Keys, PersistError};
use bodies::Bodies;
use gatehouse_config::Persistence;
use policy::Policy;
use records::{body_key, message_key, SessionMeta};
use writer::{forget_messages, io_error};

pub use policy::Selected;
pub use writer::CHECKPOINT_EVERY;

/// client id → [`records::encode_session`].
const SESSIONS: storage::Table = storage::Table {
    name: "sessions",
    keys: Keys::Text,
};
/// [`body_key`] → [`records::encode_body`]: one per message, however many deliveries
/// reference it.
const BODIES: storage::Table = storage::Table {
    name: "bodies",
    keys: Keys::Bytes,
};
/// [`message_key`] → [`records::encode_delivery`] (or, written by an older version,
/// [`records::encode_inline`]).
const MESSAGES: storage::Table = storage::Table {
    name: "messages",
    keys: Keys::Bytes,
};
/// topic → [`records::encode_retained`].
const RETAINED: storage::Table = storage::Table {
    name: "retained",
    keys: Keys::Text,
};

/// The write-ahead log, next to the database file.
pub const LOG_FILE: &str = "journal.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Table {
    Sessions,
    /// Before `Messages`: in a batch's key order a body is put before the deliveries
    /// that reference it (see `writer::commit` for deletes).
    Bodies,
    Messages,
    Retained,
}

impl Table {
    fn stored(self) -> storage::Table {
        match self {
            Table::Sessions => SESSIONS,
            Table::Bodies => BODIES,
            Table::Messages => MESSAGES,
            Table::Retained => RETAINED,
        }
    }

    fn code(self) -> u8 {
        match self {
            Table::Sessions => 1,
            Table::Messages => 2,
            Table::Retained => 3,
            Table::Bodies => 4,
        }
    }

    fn of(code: u8) -> Option<Table> {
        match code {
            1 => Some(Table::Sessions),
            2 => Some(Table::Messages),
            3 => Some(Table::Retained),
            4 => Some(Table::Bodies),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Pending {
    ops: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    /// Message and body keys first written in this batch: removing one again before the
    /// batch is logged just forgets it.
    fresh: HashSet<(Table, Vec<u8>)>,
    /// The bodies the delivery records reference (kept under this lock, so a body's put
    /// is pending no later than its first delivery's, and its delete no earlier than its
    /// last delivery's: a batch never holds a reference to a body it lacks).
    bodies: Bodies,
    /// Sessions whose every message goes (applied before `ops`).
    dropped: Vec<String>,
    recorded: u64,
    /// The file reached `maxSize`: new records are refused, updates and deletes go on.
    full: bool,
    warned: bool,
    closed: bool,
}

impl Pending {
    /// Put (`Some`) or delete one record; `new` marks a message or body key the tables do
    /// not hold yet, so deleting it again before the batch is logged just forgets it.
    fn change(&mut self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>, new: bool) {
        let entry = (table, key);
        if matches!(table, Table::Messages | Table::Bodies) {
            if new {
                self.fresh.insert(entry.clone());
            } else if value.is_none() && self.fresh.remove(&entry) {
                self.ops.remove(&entry);
                return;
            }
        }
        self.ops.insert(entry, value);
    }

    /// The ticket of the change just recorded.
    fn ticket(&mut self) -> u64 {
        self.recorded += 1;
        self.recorded
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
        if policy.is_off() {
            return Ok(None);
        }
        let store: Arc<dyn storage::Store> = Arc::new(db.clone());
        let log_path = db.file().with_file_name(LOG_FILE);
        let (mut wal, logged) = Wal::open(&log_path).map_err(|e| io_error(&log_path, e))?;
        restore::replay(&*store, &mut wal, logged)?;
        let (loaded, bodies) = restore::load(&*store)?;
        let shared = Arc::new(Shared {
            file: db.file().to_owned(),
            policy,
            max_size: config.max_size,
            pending: Mutex::new(Pending {
                bodies,
                ..Pending::default()
            }),
            wake: Notify::new(),
            durable: watch::Sender::new(0),
        });
        tokio::spawn(writer::run(shared.clone(), store, wal));
        Ok(Some((Journal { shared }, loaded)))
    }

    /// Whether a session whose CONNECT had `user_properties` persists, and how much of it.
    pub fn select_session(
        &self,
        client_id: &str,
        user_properties: &[(String, String)],
    ) -> Option<Selected> {
        self.shared
            .policy
            .select_session(client_id, user_properties)
    }

    /// Whether a message on `topic` persists in a session selected as `selected`.
    pub fn message_wanted(&self, selected: Selected, topic: &str) -> bool {
        self.shared.policy.message_wanted(selected, topic)
    }

    /// Whether retained messages persist at all.
    pub fn retains(&self) -> bool {
        self.shared.policy.retains()
    }

    /// Whether a retained message persists.
    pub fn retain_wanted(&self, m: &Message) -> bool {
        self.shared.policy.retain_wanted(m)
    }

    fn record(&self, table: Table, key: Vec<u8>, value: Option<Vec<u8>>, new: bool) -> Option<u64> {
        let mut pending = self.shared.pending.lock();
        if new && value.is_some() && !self.admit(&mut pending) {
            return None;
        }
        pending.change(table, key, value, new);
        let ticket = pending.ticket();
        drop(pending);
        self.shared.wake.notify_one();
        Some(ticket)
    }

    /// Whether a new record may be written (`maxSize` not reached); warns once if not.
    fn admit(&self, pending: &mut Pending) -> bool {
        if !pending.full {
            return true;
        }
        if !std::mem::replace(&mut pending.warned, true) {
            tracing::warn!(
                target: "persistence",
                file = %self.shared.file.display(),
                "persistence maxSize reached: new messages and sessions stay in memory only"
            );
        }
        false
    }

    /// A new queued message of a persisted session; `None` when it stays in memory only
    /// (`maxSize` reached). The first delivery of a message stores its body; the others
    /// only reference it.
    pub fn add_message(&self, client_id: &str, seq: u64, d: &Delivery) -> Option<u64> {
        let key = message_key(client_id, seq);
        let mut pending = self.shared.pending.lock();
        if !self.admit(&mut pending) {
            return None;
        }
        let body = match pending.bodies.acquire(&d.message) {
            Some(id) => id,
            None => {
                // Encoded without the lock (it copies the payload); another delivery of
                // the same message may have stored it meanwhile.
                drop(pending);
                let record = records::encode_body(&d.message);
                pending = self.shared.pending.lock();
                if !self.admit(&mut pending) {
                    return None;
                }
                match pending.bodies.acquire(&d.message) {
                    Some(id) => id,
                    None => {
                        let id = pending.bodies.create(&d.message);
                        pending.change(Table::Bodies, body_key(id), Some(record), true);
                        id
                    }
                }
            }
        };
        let record = records::encode_delivery(d, records::Sent::Queued, body);
        pending.change(Table::Messages, key, Some(record), true);
        let ticket = pending.ticket();
        drop(pending);
        self.shared.wake.notify_one();
        Some(ticket)
    }

    /// A persisted message changed stage (sent, PUBREC received). Nothing is written for a
    /// message without a body: its record was never written either.
    pub fn update_message(&self, client_id: &str, seq: u64, d: &Delivery, sent: records::Sent) {
        let mut pending = self.shared.pending.lock();
        let Some(body) = pending.bodies.id_of(&d.message) else {
            return;
        };
        let record = records::encode_delivery(d, sent, body);
        pending.change(
            Table::Messages,
            message_key(client_id, seq),
            Some(record),
            false,
        );
        pending.ticket();
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// A persisted message was acknowledged, expired or dropped; its body goes with its
    /// last delivery.
    pub fn remove_message(&self, client_id: &str, seq: u64, d: &Delivery) {
        let key = message_key(client_id, seq);
        let mut pending = self.shared.pending.lock();
        pending.change(Table::Messages, key, None, false);
        if let Some(body) = pending.bodies.release(&d.message) {
            pending.change(Table::Bodies, body_key(body), None, false);
        }
        pending.ticket();
        drop(pending);
        // Nothing to write, perhaps, but earlier tickets may now be due.
        self.shared.wake.notify_one();
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

    /// The session ended: it and every message of it go; `messages` are the messages of
    /// its persisted deliveries (each releases its body).
    pub fn drop_session<'a>(
        &self,
        client_id: &str,
        messages: impl Iterator<Item = &'a Arc<Message>>,
    ) {
        let mut pending = self.shared.pending.lock();
        forget_messages(&mut pending.ops, client_id);
        pending.dropped.push(client_id.to_owned());
        pending
            .ops
            .insert((Table::Sessions, client_id.as_bytes().to_vec()), None);
        for m in messages {
            if let Some(body) = pending.bodies.release(m) {
                pending.change(Table::Bodies, body_key(body), None, false);
            }
        }
        pending.ticket();
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
