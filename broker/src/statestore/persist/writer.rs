//! The writer: state store changes reach the disk off the request path.
//!
//! [`StatePersistence::record_set`] / [`record_delete`](StatePersistence::record_delete) run
//! under the store's mutex on every write, so they only note the change in a pending map
//! (the latest change per key wins, so it holds at most one entry per key) and wake one
//! writer task. The task takes the whole map and commits it as one redb write transaction
//! on a blocking thread: under load, many changes share one fsync.
//!
//! The writer knows which keys are on disk (`on_disk`, also one entry per key), so a SET
//! that the policy no longer wants deletes the earlier persisted value ("the latest SET
//! decides", statestore.md §6.4) and a non-persisted key costs no disk write at all.
//!
//! `maxSize`: after each commit the writer compares the bytes of the file's pages in use
//! ([`Database::used_bytes`]; freed pages are reused before the file grows) with
//! `maxSize`. While they reach it, keys not yet on disk stay in memory only (a warning is
//! logged once each time this starts); changes to keys already on disk, and deletes, are
//! still written, so nothing on disk goes stale. Writes are never blocked or refused. The
//! check lags by one batch, so one batch may take the file past `maxSize`.
//!
//! A failed commit is logged and retried with backoff (1 s doubling to 30 s), with the
//! changes recorded meanwhile merged in; [`StatePersistence::flush`] reports the failure.
//! Once the handle is closed, the writer retries at once and gives up (logged) after a
//! second failure, so shutdown does not hang on a broken disk.
//!
//! The writer task owns the [`Database`] handle, so [`StatePersistence::close`] can wait
//! until the file is released (a restart in the same process, tests).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use super::super::store::{Change, ChangeKind, Entry, Store};
use super::{codec, PersistPolicy, STORED};
use crate::storage::{self, Database, PersistError};

/// Persistence of one state store: the policy and the background writer.
///
/// Dropping it lets the writer commit what is pending and stop in the background; on
/// shutdown call [`Self::close`] (or [`Self::flush`]) to wait for that.
pub struct StatePersistence {
    shared: Arc<Shared>,
}

struct Shared {
    /// The database file, for messages.
    file: PathBuf,
    policy: PersistPolicy,
    /// `persistence.maxSize`.
    max_size: u64,
    pending: Mutex<Pending>,
    /// Wakes the writer task.
    wake: Notify,
    /// What the writer has done, for [`StatePersistence::flush`].
    progress: watch::Sender<Progress>,
}

#[derive(Default)]
struct Pending {
    /// Changes not yet committed: the entry to store, or `None` to delete.
    changes: HashMap<Bytes, Option<Entry>>,
    /// Number of recorded changes so far; a batch covers every change up to its number.
    recorded: u64,
    /// Keys on disk once `changes` are committed.
    on_disk: HashSet<Bytes>,
    /// The file has reached `maxSize`: keys not on disk are not added.
    full: bool,
    /// The warning for `full` was logged.
    warned: bool,
    /// The handle was dropped: commit what is pending, then stop.
    closed: bool,
}

#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every change up to this number is durable.
    durable: u64,
    /// The last batch that failed (its number and why), until one succeeds.
    failure: Option<(u64, Arc<str>)>,
    /// The writer task ended.
    stopped: bool,
}

impl StatePersistence {
    /// Reads the stored entries ([`super::load`]: expired ones are dropped and deleted) and
    /// starts the writer task, which stops after this handle is dropped. Returns the
    /// entries for [`Store::with_entries`].
    ///
    /// Blocking (reads the whole table): call at start-up, or in `spawn_blocking`.
    ///
    /// # Panics
    /// Outside a tokio runtime (the writer is a tokio task).
    pub fn open(
        db: Database,
        config: &gatehouse_config::Persistence,
        now_ms: u64,
    ) -> Result<(StatePersistence, Vec<(Bytes, Entry)>), PersistError> {
        let policy = PersistPolicy::new(config)?;
        let entries = super::load(&db, now_ms)?;
        let pending = Pending {
            on_disk: entries.iter().map(|(key, _)| key.clone()).collect(),
            ..Pending::default()
        };
        let shared = Arc::new(Shared {
            file: db.file().to_owned(),
            policy,
            max_size: config.max_size,
            pending: Mutex::new(pending),
            wake: Notify::new(),
            progress: watch::Sender::new(Progress::default()),
        });
        tokio::spawn(run(shared.clone(), db));
        Ok((StatePersistence { shared }, entries))
    }

    /// The policy, for [`PersistPolicy::dynamic_flag`] on each SET.
    pub fn policy(&self) -> &PersistPolicy {
        &self.shared.policy
    }

    /// A SET stored `entry` under `key`: persist it if the policy wants it, else remove an
    /// earlier persisted value. Cheap and never blocks on I/O.
    pub fn record_set(&self, key: &Bytes, entry: &Entry) {
        let wanted = self.shared.policy.wants(key, entry.persist);
        let mut pending = self.shared.pending.lock();
        if wanted {
            if pending.full && !pending.on_disk.contains(key) {
                let first = !std::mem::replace(&mut pending.warned, true);
                drop(pending);
                if first {
                    warn!(
                        target: "statestore",
                        file = %self.shared.file.display(),
                        max_size = %gatehouse_config::size::format(self.shared.max_size),
                        "persistence maxSize reached: new keys stay in memory only until \
                         space is freed (updates and deletes of persisted keys are still saved)"
                    );
                }
                return;
            }
            pending.on_disk.insert(key.clone());
            pending.changes.insert(key.clone(), Some(entry.clone()));
        } else if pending.on_disk.remove(key) {
            pending.changes.insert(key.clone(), None);
        } else {
            return;
        }
        pending.recorded += 1;
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// DEL, VDEL or expiry removed `key`. Cheap and never blocks on I/O.
    pub fn record_delete(&self, key: &Bytes) {
        let mut pending = self.shared.pending.lock();
        if !pending.on_disk.remove(key) {
            return;
        }
        pending.changes.insert(key.clone(), None);
        pending.recorded += 1;
        drop(pending);
        self.shared.wake.notify_one();
    }

    /// Records the `changes` of one command or expiry run, taking the new entries from
    /// `store` (call right after [`Store::execute`] / [`Store::expire`], under the same lock).
    pub fn record_changes(&self, store: &Store, changes: &[Change], now_ms: u64) {
        for change in changes {
            match (&change.kind, store.get(&change.key, now_ms)) {
                (ChangeKind::Set(_), Some(entry)) => self.record_set(&change.key, entry),
                _ => self.record_delete(&change.key),
            }
        }
    }

    /// Waits until every change recorded before the call is durable (on shutdown, in
    /// tests). Fails if the commit that holds them fails (the writer keeps retrying).
    pub async fn flush(&self) -> Result<(), PersistError> {
        let target = self.shared.pending.lock().recorded;
        let mut progress = self.shared.progress.subscribe();
        loop {
            {
                let now = progress.borrow_and_update();
                if now.durable >= target {
                    return Ok(());
                }
                if let Some((batch, reason)) = &now.failure {
                    if *batch >= target {
                        return Err(self.writer_error(reason));
                    }
                }
                if now.stopped {
                    return Err(self.writer_error("the writer stopped"));
                }
            }
            if progress.changed().await.is_err() {
                return Err(self.writer_error("the writer stopped"));
            }
        }
    }

    /// [`Self::flush`], then stops the writer and waits until it has released the file.
    pub async fn close(self) -> Result<(), PersistError> {
        let flushed = self.flush().await;
        let mut progress = self.shared.progress.subscribe();
        drop(self);
        while !progress.borrow_and_update().stopped {
            if progress.changed().await.is_err() {
                break;
            }
        }
        flushed
    }

    fn writer_error(&self, reason: &str) -> PersistError {
        PersistError::Writer {
            file: self.shared.file.clone(),
            reason: reason.to_owned(),
        }
    }
}

impl Drop for StatePersistence {
    fn drop(&mut self) {
        self.shared.pending.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

/// The writer's resources: however its task ends (also when the runtime drops it), the
/// file is released, then the writer is marked stopped.
struct Writer {
    shared: Arc<Shared>,
    db: Option<Database>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.db = None;
        self.shared.progress.send_modify(|p| p.stopped = true);
    }
}

/// The writer task.
async fn run(shared: Arc<Shared>, db: Database) {
    let writer = Writer {
        shared,
        db: Some(db),
    };
    let shared = &writer.shared;
    let mut backoff = RETRY_FIRST;
    loop {
        let batch = {
            let mut pending = shared.pending.lock();
            if pending.changes.is_empty() {
                if pending.closed {
                    return;
                }
                None
            } else {
                Some((std::mem::take(&mut pending.changes), pending.recorded))
            }
        };
        let Some((changes, number)) = batch else {
            shared.wake.notified().await;
            continue;
        };
        let Some(db) = writer.db.clone() else {
            return;
        };
        let committed = tokio::task::spawn_blocking(move || (commit(&db, &changes), changes)).await;
        match committed {
            Ok((Ok(used), _)) => {
                backoff = RETRY_FIRST;
                let full = used >= shared.max_size;
                let was_full = std::mem::replace(&mut shared.pending.lock().full, full);
                if !full {
                    shared.pending.lock().warned = false;
                    if was_full {
                        info!(target: "statestore", "persistence is below maxSize again: new keys are saved");
                    }
                }
                shared.progress.send_modify(|p| {
                    p.durable = number;
                    p.failure = None;
                });
            }
            Ok((Err(err), changes)) => {
                let reason: Arc<str> = err.to_string().into();
                shared
                    .progress
                    .send_modify(|p| p.failure = Some((number, reason)));
                let closed = shared.pending.lock().closed;
                if closed && backoff > RETRY_FIRST {
                    // Shutting down and failing repeatedly: flush has reported it.
                    error!(
                        target: "statestore",
                        "giving up on saving {} state store changes at shutdown: {err}",
                        changes.len()
                    );
                    return;
                }
                error!(
                    target: "statestore",
                    "saving {} state store changes failed (retrying in {backoff:?}): {err}",
                    changes.len()
                );
                {
                    let mut pending = shared.pending.lock();
                    for (key, change) in changes {
                        // A change recorded meanwhile is newer and wins.
                        pending.changes.entry(key).or_insert(change);
                    }
                }
                wait_to_retry(shared, backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            // The runtime is shutting down.
            Err(_) => return,
        }
    }
}

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Sleeps `backoff`, or less if the handle is closed meanwhile (to retry once more at once).
async fn wait_to_retry(shared: &Shared, backoff: Duration) {
    let until = tokio::time::Instant::now() + backoff;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => return,
            () = shared.wake.notified() => {
                if shared.pending.lock().closed {
                    return;
                }
            }
        }
    }
}

/// Writes one batch in one transaction; returns the bytes the file now uses.
fn commit(
    store: &dyn storage::Store,
    changes: &HashMap<Bytes, Option<Entry>>,
) -> Result<u64, PersistError> {
    let encoded: Vec<_> = changes
        .iter()
        .map(|(key, change)| (key, change.as_ref().map(codec::encode)))
        .collect();
    let batch: Vec<_> = encoded
        .iter()
        .map(|(key, value)| match value {
            Some(value) => storage::Change::Put {
                table: STORED,
                key,
                value,
            },
            None => storage::Change::Delete { table: STORED, key },
        })
        .collect();
    store.apply(&batch)
}
