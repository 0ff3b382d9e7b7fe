//! The bounds of the store (statestore.md §6.3, security.md invariant 6) and the check a
//! SET goes through.

use std::sync::Arc;

use bytes::Bytes;

use super::Store;

/// The bytes a key holds for the byte quotas: its key and its value. Versions, tokens
/// and map overhead are not counted (they are bounded per key, and so by [`Quotas::keys`]).
pub fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
    (key.len() as u64).saturating_add(value.len() as u64)
}

/// The bounds of the store (statestore.md §6.3, security.md invariant 6); `None` is no
/// bound. A SET that would cross one gets `-ERR the quota has been exceeded`, the one
/// quota error the SDKs know (Rust `ServiceError::QuotaExceeded`), whichever bound it is;
/// the log says which.
///
/// Lowering a bound (a reload) removes nothing: what is stored stays, and a SET is only
/// refused when it would make a count that is over its bound larger. So a client over a
/// lowered quota may still shrink or delete its keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quotas {
    /// Keys in the store (`broker.stateStoreKeyQuota`); only new keys are refused.
    pub keys: Option<usize>,
    /// Bytes of one value (`broker.stateStoreMaxValueBytes`).
    pub value_bytes: Option<u64>,
    /// Bytes of all keys and values together (`broker.stateStoreMaxTotalBytes`).
    pub total_bytes: Option<u64>,
    /// Bytes of the keys and values one client id last wrote and that still exist
    /// (`broker.stateStorePerClientBytes`). The last writer owns a key: overwriting
    /// another client's key moves its bytes to the writer; deleting or expiring it frees
    /// them from the owner, whoever deletes it.
    pub client_bytes: Option<u64>,
    /// Keys one client watches with KEYNOTIFY at once
    /// (`broker.stateStoreMaxKeyNotifyPerClient`); only a new registration is refused.
    pub key_notify_per_client: Option<usize>,
}

impl Quotas {
    /// Only a key count bound.
    pub fn keys(keys: Option<usize>) -> Self {
        Quotas {
            keys,
            ..Quotas::default()
        }
    }
}

/// What the quotas count beside a store's own entries: in cluster mode a request is
/// decided on a scratch store holding only its key, and the other keys of the shared
/// store (as this node sees them, plus its own writes still in flight) are counted here,
/// so a SET crosses a bound exactly where it would on a single node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outside {
    /// Keys.
    pub keys: usize,
    /// Bytes of their keys and values.
    pub total_bytes: u64,
    /// The client these bytes belong to, and how many of them are its own.
    pub client: Option<(Arc<str>, u64)>,
}

impl Outside {
    fn client_bytes(&self, client: &str) -> u64 {
        match &self.client {
            Some((owner, bytes)) if &**owner == client => *bytes,
            _ => 0,
        }
    }
}

/// Which bound of [`Quotas`] a SET would cross, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaHit {
    Keys,
    ValueBytes,
    TotalBytes,
    ClientBytes,
    KeyNotify,
}

impl QuotaHit {
    pub fn setting(self) -> &'static str {
        match self {
            QuotaHit::Keys => "stateStoreKeyQuota",
            QuotaHit::ValueBytes => "stateStoreMaxValueBytes",
            QuotaHit::TotalBytes => "stateStoreMaxTotalBytes",
            QuotaHit::ClientBytes => "stateStorePerClientBytes",
            QuotaHit::KeyNotify => "stateStoreMaxKeyNotifyPerClient",
        }
    }
}

impl Store {
    /// The bound `client` writing `value` at `key` would cross, if any. A count already
    /// over its bound (after a reload lowered it) may stay or shrink, never grow.
    pub(super) fn quota_hit(&self, client: &str, key: &Bytes, value: &Bytes) -> Option<QuotaHit> {
        let q = &self.quotas;
        let existing = self.entries.get(key);
        let outside = &self.outside;
        let keys = self.entries.len().saturating_add(outside.keys);
        if existing.is_none() && q.keys.is_some_and(|max| keys >= max) {
            return Some(QuotaHit::Keys);
        }
        if q.value_bytes.is_some_and(|max| value.len() as u64 > max) {
            return Some(QuotaHit::ValueBytes);
        }
        let new = entry_bytes(key, value);
        let old = existing.map_or(0, |e| entry_bytes(key, &e.value));
        let grows_past = |before: u64, after: u64, max: Option<u64>| {
            after > before && max.is_some_and(|max| after > max)
        };
        let total = self.total_bytes.saturating_add(outside.total_bytes);
        let total_after = total.saturating_sub(old).saturating_add(new);
        if grows_past(total, total_after, q.total_bytes) {
            return Some(QuotaHit::TotalBytes);
        }
        let mine = self
            .client_bytes(client)
            .saturating_add(outside.client_bytes(client));
        let mine_old = match existing.and_then(|e| e.owner.as_deref()) {
            Some(owner) if owner == client => old,
            _ => 0,
        };
        let mine_after = mine.saturating_sub(mine_old).saturating_add(new);
        if grows_past(mine, mine_after, q.client_bytes) {
            return Some(QuotaHit::ClientBytes);
        }
        None
    }
}
