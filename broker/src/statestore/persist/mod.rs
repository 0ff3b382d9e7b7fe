//! State store persistence (statestore.md §6.4, `persistence.stateStore`): which keys
//! survive a restart, how they are stored, and the writer that stores them.
//!
//! Keys live in the table `statestore` of the broker's [`Database`], keyed by the raw key
//! bytes, one [`codec`] record per key. The wiring:
//!
//! ```text
//! start:   let db = Database::open(&config.data_dir)?;
//!          let (persistence, entries) = StatePersistence::open(db, settings, now_ms)?;
//!          let store = Store::with_entries(quotas, entries);
//! SET:     ctx.persist = persistence.policy().dynamic_flag(&publish.user_properties);
//! any:     let outcome = store.execute(...);                    // under the store lock
//!          persistence.record_changes(&store, &outcome.changes, now_ms);
//! expiry:  let changes = store.expire(...); persistence.record_changes(&store, &changes, now);
//! stop:    persistence.flush().await?;
//! ```
//!
//! Entries persisted under an earlier policy are loaded whatever the current policy says,
//! and stay on disk until their key is written or deleted again: then the current policy
//! decides. So a key on disk never holds a value older than the one in memory.
//!
//! # Layout
//! - [`policy`]: [`PersistPolicy`]: which keys persist (mode, resources, dynamic flag).
//! - [`codec`]: the stored form of an [`Entry`].
//! - [`writer`]: [`StatePersistence`]: recording changes and the background writer.

pub mod codec;
pub mod policy;
pub mod writer;

use bytes::Bytes;

use super::store::Entry;
use crate::storage::error::show_key;
use crate::storage::{Change, Keys, PersistError, Store, Table};

pub use policy::PersistPolicy;
pub use writer::StatePersistence;

const TABLE_NAME: &str = "statestore";
/// The table: raw key → [`codec`] record.
pub(crate) const STORED: Table = Table {
    name: TABLE_NAME,
    keys: Keys::Bytes,
};
/// The same table as redb sees it, for tests that damage the file.
#[cfg(test)]
pub(crate) const TABLE: redb::TableDefinition<&[u8], &[u8]> =
    redb::TableDefinition::new(TABLE_NAME);

/// Every stored entry that has not expired by `now_ms`, in key order; expired ones are
/// deleted from the file. A record that cannot be decoded is an error naming the file and
/// key (nothing is skipped silently). Blocking.
pub fn load(store: &dyn Store, now_ms: u64) -> Result<Vec<(Bytes, Entry)>, PersistError> {
    let records = store.scan(STORED)?;
    let mut entries = Vec::with_capacity(records.len());
    let mut expired = Vec::new();
    for (key, record) in records {
        let key = Bytes::from(key);
        let entry = codec::decode(&record).map_err(|error| PersistError::Record {
            file: store.location().to_owned(),
            table: TABLE_NAME,
            key: show_key(&key),
            reason: error.to_string(),
        })?;
        if entry.expires_at_ms.is_some_and(|at| at <= now_ms) {
            expired.push(key);
        } else {
            entries.push((key, entry));
        }
    }
    if !expired.is_empty() {
        let deletes: Vec<_> = expired
            .iter()
            .map(|key| Change::Delete { table: STORED, key })
            .collect();
        store.apply(&deletes)?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;
