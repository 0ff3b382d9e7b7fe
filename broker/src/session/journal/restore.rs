//! Start-up: the log of the previous run folded into the tables, then every stored session
//! (with its messages) and retained message read back.

use std::collections::{BTreeMap, HashSet};

use super::records;
use super::writer::{commit, io_error, Unfolded};
use super::{Loaded, LoadedSession, Table, MESSAGES, RETAINED, SESSIONS};
use crate::storage::wal::{Batch, Wal};
use crate::storage::{PersistError, Store};

/// Replay the log into the tables (a previous run's acknowledged changes) and start it
/// over. Blocking; at start.
pub(super) fn replay(
    store: &dyn Store,
    wal: &mut Wal,
    batches: Vec<Batch>,
) -> Result<(), PersistError> {
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
    commit(store, &unfolded.ops, &unfolded.dropped)?;
    wal.reset().map_err(|e| io_error(wal.path(), e))
}

/// Every stored session (with its messages) and retained message; records that do not
/// decode are an error naming them, never skipped silently.
pub(super) fn load(store: &dyn Store) -> Result<Loaded, PersistError> {
    let file = store.location().to_owned();
    let bad = |table: &'static str, key: String, why: records::BadRecord| PersistError::Record {
        file: file.clone(),
        table,
        key,
        reason: why.to_string(),
    };
    let sessions = store.scan(SESSIONS)?;
    let messages = store.scan(MESSAGES)?;
    let retained = store.scan(RETAINED)?;
    let mut by_client: BTreeMap<String, LoadedSession> = BTreeMap::new();
    for (client_id, record) in sessions {
        let client_id = String::from_utf8_lossy(&client_id).into_owned();
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
        let topic = String::from_utf8_lossy(&topic).into_owned();
        out.push(records::decode_retained(&record).map_err(|e| bad("retained", topic.clone(), e))?);
    }
    Ok(Loaded {
        sessions: by_client.into_values().collect(),
        retained: out,
    })
}
