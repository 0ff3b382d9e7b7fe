//! The writer task: takes each batch of pending changes, appends it to the log (one
//! `write`), publishes the highest durable ticket, and every so often folds the log into
//! the tables (a checkpoint: one durable [`Store::apply`] on a blocking thread).

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use super::records::message_range;
use super::{Shared, Table, BODIES, MESSAGES};
use crate::storage::wal::Wal;
use crate::storage::{Change, PersistError, Store};

const RETRY: Duration = Duration::from_millis(200);
/// How often the log is folded into the tables (and fsynced): the most a power loss can
/// take; a killed process loses nothing (see `wal`).
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Fold earlier when this many records wait in memory...
const CHECKPOINT_OPS: usize = 100_000;
/// ...or the log grew this large.
const CHECKPOINT_LOG_BYTES: u64 = 64 << 20;

pub(super) type Ops = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Drop the changes to `client_id`'s messages from `ops` (its session ended).
pub(super) fn forget_messages(ops: &mut Ops, client_id: &str) {
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

/// What the log holds and the tables do not yet: folded into them at the next checkpoint.
#[derive(Default)]
pub(super) struct Unfolded {
    pub(super) ops: Ops,
    pub(super) dropped: Vec<String>,
    /// Message and body keys not in the tables yet: a removal just forgets them, so a
    /// message queued and acknowledged between two checkpoints never reaches the tables.
    fresh: HashSet<(Table, Vec<u8>)>,
}

impl Unfolded {
    pub(super) fn absorb(
        &mut self,
        ops: Ops,
        dropped: Vec<String>,
        fresh: HashSet<(Table, Vec<u8>)>,
    ) {
        for client_id in dropped {
            forget_messages(&mut self.ops, &client_id);
            self.dropped.push(client_id);
        }
        for (entry, value) in ops {
            if matches!(entry.0, Table::Messages | Table::Bodies) {
                if value.is_none() && self.fresh.remove(&entry) {
                    self.ops.remove(&entry);
                    continue;
                }
                if fresh.contains(&entry) {
                    self.fresh.insert(entry.clone());
                }
            }
            self.ops.insert(entry, value);
        }
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.dropped.is_empty()
    }
}

pub(super) fn io_error(path: &std::path::Path, source: std::io::Error) -> PersistError {
    PersistError::Io {
        file: path.to_owned(),
        source,
    }
}

pub(super) async fn run(shared: Arc<Shared>, store: Arc<dyn Store>, wal: Wal) {
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
                fold(&shared, &store, &mut wal, &mut unfolded).await;
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
                    fold(&shared, &store, &mut wal, &mut unfolded).await;
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
async fn fold(
    shared: &Shared,
    store: &Arc<dyn Store>,
    wal: &mut Option<Wal>,
    unfolded: &mut Unfolded,
) {
    let Some(mut log) = wal.take() else { return };
    let taken = std::mem::take(unfolded);
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let committed = commit(&*store, &taken.ops, &taken.dropped);
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

/// One batch into the tables: new bodies first, then the dropped sessions' messages, then
/// every other change in key order, and deleted bodies last. Returns the bytes the store
/// uses.
///
/// The embedded store applies a batch atomically, so the order is only for a store that
/// cannot (see [`Store`]): a crash part-way then leaves at worst a body no delivery
/// references (restore removes it), never a delivery whose body is gone.
pub(super) fn commit(
    store: &dyn Store,
    ops: &Ops,
    dropped: &[String],
) -> Result<u64, PersistError> {
    let ranges: Vec<_> = dropped.iter().map(|c| message_range(c)).collect();
    let mut changes = Vec::with_capacity(ranges.len() + ops.len());
    let bodies = || {
        ops.range((
            Bound::Included((Table::Bodies, Vec::new())),
            Bound::Excluded((Table::Messages, Vec::new())),
        ))
    };
    for ((_, key), value) in bodies() {
        if let Some(value) = value {
            changes.push(Change::Put {
                table: BODIES,
                key,
                value,
            });
        }
    }
    for (from, to) in &ranges {
        changes.push(Change::DeleteRange {
            table: MESSAGES,
            from,
            to,
        });
    }
    for ((table, key), value) in ops {
        if *table == Table::Bodies {
            continue;
        }
        let table = table.stored();
        changes.push(match value {
            Some(value) => Change::Put { table, key, value },
            None => Change::Delete { table, key },
        });
    }
    for ((_, key), value) in bodies() {
        if value.is_none() {
            changes.push(Change::Delete { table: BODIES, key });
        }
    }
    store.apply(&changes)
}
