//! Start-up: the log of the previous run folded into the tables, then every stored session
//! (with its messages, their bodies shared) and retained message read back, and the
//! reference counts of the bodies rebuilt from the delivery records.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::bodies::Bodies;
use super::records::{self, Decoded};
use super::writer::{commit, io_error, Unfolded};
use super::{Loaded, LoadedSession, Table, BODIES, MESSAGES, RETAINED, SESSIONS};
use crate::message::{Delivery, Message};
use crate::storage::wal::{Batch, Wal};
use crate::storage::{Change, PersistError, Store};

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

/// Every stored session (with its messages) and retained message, and the bodies their
/// deliveries reference; records that do not decode, and a delivery whose body is missing,
/// are an error naming them, never skipped silently.
///
/// It also tidies the tables, in one batch: delivery records of the inline format (written
/// by a version before bodies were shared) are rewritten to reference a body (copies of one
/// message share one), bodies no delivery references (a crash between writing a body and
/// its deliveries, or between deleting them) and messages of sessions that are gone are
/// deleted.
pub(super) fn load(store: &dyn Store) -> Result<(Loaded, Bodies), PersistError> {
    let file = store.location().to_owned();
    let bad = |table: &'static str, key: String, why: records::BadRecord| PersistError::Record {
        file: file.clone(),
        table,
        key,
        reason: why.to_string(),
    };
    let sessions = store.scan(SESSIONS)?;
    let stored_bodies = store.scan(BODIES)?;
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
    let mut raw_bodies = HashMap::with_capacity(stored_bodies.len());
    let mut next_id = 0u64;
    for (key, record) in stored_bodies {
        let id = records::split_body_key(&key)
            .map_err(|e| bad("bodies", String::from_utf8_lossy(&key).into_owned(), e))?;
        next_id = next_id.max(id.saturating_add(1));
        raw_bodies.insert(id, record);
    }
    // Bodies in use: the message every delivery of it shares, and how many there are.
    let mut used: HashMap<u64, (Arc<Message>, u64)> = HashMap::new();
    // Inline records being rewritten: body bytes → id, so that copies share one body.
    let mut migrated: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut new_bodies: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut rewritten: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut stale: Vec<Vec<u8>> = Vec::new();
    for (key, record) in messages {
        let (client_id, seq) = records::split_message_key(&key)
            .map_err(|e| bad("messages", String::from_utf8_lossy(&key).into_owned(), e))?;
        let name = || format!("{client_id}/{seq}");
        let (decoded, sent) =
            records::decode_delivery(&record).map_err(|e| bad("messages", name(), e))?;
        // Messages of a session whose record is gone (it ended) are deleted, never
        // resurrected (nor counted as references).
        let Some(session) = by_client.get_mut(client_id) else {
            stale.push(key);
            continue;
        };
        let delivery = match decoded {
            Decoded::Shared { body, fields } => {
                let message = match used.get_mut(&body) {
                    Some((message, refs)) => {
                        *refs += 1;
                        message.clone()
                    }
                    None => {
                        let raw = raw_bodies.get(&body).ok_or_else(|| {
                            bad(
                                "messages",
                                name(),
                                records::BadRecord("its body is missing"),
                            )
                        })?;
                        let message = Arc::new(
                            records::decode_body(raw)
                                .map_err(|e| bad("bodies", body.to_string(), e))?,
                        );
                        used.insert(body, (message.clone(), 1));
                        message
                    }
                };
                fields.deliver(message)
            }
            Decoded::Inline {
                delivery,
                expires_ms,
            } => {
                let body = records::encode_body_expiring(&delivery.message, expires_ms);
                let id = match migrated.get(&body) {
                    Some(id) => *id,
                    None => {
                        let id = next_id;
                        next_id += 1;
                        migrated.insert(body.clone(), id);
                        new_bodies.push((records::body_key(id), body));
                        id
                    }
                };
                let (message, refs) = used
                    .entry(id)
                    .or_insert_with(|| (delivery.message.clone(), 0));
                *refs += 1;
                let delivery = Delivery {
                    message: message.clone(),
                    ..delivery
                };
                rewritten.push((key, records::encode_delivery(&delivery, sent, id)));
                delivery
            }
        };
        session.messages.push((seq, delivery, sent));
    }
    let orphans: Vec<Vec<u8>> = raw_bodies
        .keys()
        .filter(|id| !used.contains_key(id))
        .map(|id| records::body_key(*id))
        .collect();
    let mut changes = Vec::new();
    for (key, value) in &new_bodies {
        changes.push(Change::Put {
            table: BODIES,
            key,
            value,
        });
    }
    for (key, value) in &rewritten {
        changes.push(Change::Put {
            table: MESSAGES,
            key,
            value,
        });
    }
    for key in &stale {
        changes.push(Change::Delete {
            table: MESSAGES,
            key,
        });
    }
    for key in &orphans {
        changes.push(Change::Delete { table: BODIES, key });
    }
    if !changes.is_empty() {
        tracing::info!(
            target: "persistence",
            migrated = rewritten.len(),
            bodies = new_bodies.len(),
            orphan_bodies = orphans.len(),
            stale_messages = stale.len(),
            "tidying the journal's tables"
        );
        store.apply(&changes)?;
    }
    let mut out = Vec::new();
    for (topic, record) in retained {
        let topic = String::from_utf8_lossy(&topic).into_owned();
        out.push(records::decode_retained(&record).map_err(|e| bad("retained", topic.clone(), e))?);
    }
    let bodies = Bodies::restored(
        used.into_iter()
            .map(|(id, (message, refs))| (id, message, refs)),
        next_id,
    );
    Ok((
        Loaded {
            sessions: by_client.into_values().collect(),
            retained: out,
        },
        bodies,
    ))
}
