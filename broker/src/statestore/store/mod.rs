//! The key map of the state store (statestore.md §2.3, §2.5, §3.4, §4.1, §6.2, §6.3, §10):
//! pure and I/O-free. The MQTT wiring parses the request, runs authorization and
//! [`super::stamps::check_stamps`], then calls [`Store::execute`] with the validated stamps,
//! the wall clock and a version source (the server [`super::HybridClock`]). Time is always
//! passed in; nothing here sleeps, spawns or publishes.
//!
//! Expiry is lazy (an expired key is absent to every command) and active ([`Store::expire`],
//! driven by a timer set from [`Store::next_expiry`]); both report a DELETE [`Change`] so
//! watchers are notified exactly once (§4.3, §6.2).
//!
//! Here: entries, one command ([`Store::execute`]) and expiry. Beside it: `quota`
//! ([`Quotas`], the SET check), `notify` (KEYNOTIFY registrations), `scan` (SCAN pages).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::error::ErrorReply;
use super::hlc::Hlc;
use super::request::{Request, SetCondition};
use super::resp3::{Notification, Reply};
use super::stamps::{check_fence, Stamps};

mod notify;
mod quota;
mod scan;
#[cfg(test)]
mod tests;

pub use quota::{entry_bytes, Outside, QuotaHit, Quotas};
pub use scan::{scan_after, SCAN_BUDGET, SCAN_MATCH_BUDGET, SCAN_PAGE_SIZE};

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Bytes,
    /// The version assigned by the last write (§3.3).
    pub version: Hlc,
    /// The fencing token protecting the key (§3.4).
    pub fencing_token: Option<Hlc>,
    /// Absolute expiry in ms since the Unix epoch (`PX`, §6.2).
    pub expires_at_ms: Option<u64>,
    /// The dynamic persistence property (`aio-persistence: true`) was on the last SET
    /// (§6.4); the latest SET decides. See `persist::PersistPolicy::wants`.
    pub persist: bool,
    /// The client id of the last writer: the key's bytes count against its
    /// [`Quotas::client_bytes`] ("last writer owns"). `None` for keys persisted by a build
    /// that did not record it; they count against the total only.
    pub owner: Option<Arc<str>>,
}

impl Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms.is_some_and(|at| at <= now_ms)
    }
}

/// What a change did to a key, for KEYNOTIFY (§4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Any successful SET, with the new value.
    Set(Bytes),
    /// DEL, VDEL or expiry.
    Delete,
}

/// A change to notify the key's [`Store::watchers`] about, with the `__ts` to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: Bytes,
    pub version: Hlc,
    pub kind: ChangeKind,
}

impl Change {
    /// The notification payload.
    pub fn notification(&self) -> Notification {
        match &self.kind {
            ChangeKind::Set(value) => Notification::Set(value.clone()),
            ChangeKind::Delete => Notification::Delete,
        }
    }
}

/// The request-independent inputs of one command.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The requesting MQTT client id (KEYNOTIFY registrations).
    pub client: &'a str,
    /// The validated `__ts` / `__ft` (from [`super::stamps::check_stamps`]).
    pub stamps: &'a Stamps,
    /// The server wall clock in ms since the Unix epoch.
    pub now_ms: u64,
    /// `aio-persistence: true` was on the request (SET only).
    pub persist: bool,
}

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub reply: Reply,
    /// The reply's `__ts`, when it has one (§2.5).
    pub version: Option<Hlc>,
    /// Changes to notify watchers about, in order (a lazily expired key's DELETE first).
    pub changes: Vec<Change>,
    /// The bound a refused SET would have crossed (the reply is the quota error).
    pub quota_hit: Option<QuotaHit>,
}

impl Outcome {
    fn new(reply: Reply, version: Option<Hlc>) -> Self {
        Outcome {
            reply,
            version,
            changes: Vec::new(),
            quota_hit: None,
        }
    }

    fn quota_exceeded(hit: QuotaHit) -> Self {
        Outcome {
            quota_hit: Some(hit),
            ..Outcome::new(ErrorReply::QuotaExceeded.into(), None)
        }
    }
}

/// The key map, its expiry index and the KEYNOTIFY registrations.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<Bytes, Entry>,
    /// `(expires_at_ms, key)` for every entry with an expiry.
    expiries: BTreeSet<(u64, Bytes)>,
    quotas: Quotas,
    /// Bytes of every key and value ([`entry_bytes`]), for [`Quotas::total_bytes`].
    total_bytes: u64,
    /// Bytes each owner holds, for [`Quotas::client_bytes`]; no entry for zero.
    client_bytes: HashMap<Arc<str>, u64>,
    /// key → clients watching it.
    watchers: HashMap<Bytes, BTreeSet<Arc<str>>>,
    /// client → keys it watches, for [`Store::drop_client`].
    watched: HashMap<Arc<str>, HashSet<Bytes>>,
    /// Usage counted by the quotas beside these entries (cluster mode's scratch store);
    /// empty on a single node.
    outside: Outside,
}

impl Store {
    /// An empty store bounded by `quotas` (§6.3).
    pub fn new(quotas: Quotas) -> Self {
        Store {
            quotas,
            ..Store::default()
        }
    }

    /// A store holding `entries`, e.g. those persisted before a restart
    /// ([`super::persist::StatePersistence::open`]). The quotas apply to new writes only,
    /// so every entry is kept, and its bytes are counted (total and owner) as if it had
    /// just been written. No KEYNOTIFY registrations (clients re-register on reconnect).
    pub fn with_entries(quotas: Quotas, entries: impl IntoIterator<Item = (Bytes, Entry)>) -> Self {
        let mut store = Store::new(quotas);
        for (key, entry) in entries {
            store.insert(key, entry);
        }
        store
    }

    /// A reload changed the quotas; what is stored stays, growth past a lower bound is
    /// refused.
    pub fn set_quotas(&mut self, quotas: Quotas) {
        self.quotas = quotas;
    }

    /// Count `outside` against the quotas too (cluster mode: the shared store's other keys).
    pub fn set_outside(&mut self, outside: Outside) {
        self.outside = outside;
    }

    /// The bounds in force.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Bytes of all keys and values.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes of the keys `client` last wrote that still exist.
    pub fn client_bytes(&self, client: &str) -> u64 {
        self.client_bytes.get(client).copied().unwrap_or(0)
    }

    /// Store `entry` under `key`, replacing (and uncounting) any entry there: the only
    /// way in, so the byte counts and the expiry index always match the map.
    fn insert(&mut self, key: Bytes, entry: Entry) {
        self.uncount(&key);
        self.unindex_expiry(&key);
        if let Some(at) = entry.expires_at_ms {
            self.expiries.insert((at, key.clone()));
        }
        let bytes = entry_bytes(&key, &entry.value);
        self.total_bytes = self.total_bytes.saturating_add(bytes);
        if let Some(owner) = &entry.owner {
            let held = self.client_bytes.entry(owner.clone()).or_default();
            *held = held.saturating_add(bytes);
        }
        self.entries.insert(key, entry);
    }

    /// Take the bytes of the entry at `key` (if any) out of the counts.
    fn uncount(&mut self, key: &Bytes) {
        let Some(entry) = self.entries.get(key) else {
            return;
        };
        let bytes = entry_bytes(key, &entry.value);
        self.total_bytes = self.total_bytes.saturating_sub(bytes);
        if let Some(owner) = &entry.owner {
            if let Some(held) = self.client_bytes.get_mut(owner) {
                *held = held.saturating_sub(bytes);
                if *held == 0 {
                    self.client_bytes.remove(owner);
                }
            }
        }
    }

    /// The number of stored keys (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The live entry of `key`, if any (expired entries are absent).
    pub fn get(&self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| !e.is_expired(now_ms))
    }

    /// Run one command. Authorization and the `__ts`/`__ft` format and skew checks have
    /// already passed; this does quota → fencing → condition → apply (§3.4). `next_version`
    /// is called once per write (including a lazy expiry), never for a failed one, with the
    /// key's current version when a SET overwrites a live key (else `None`): see
    /// [`super::HybridClock::version_for`].
    ///
    /// SCAN here sees every key; the wiring calls [`Store::scan`] to filter by authorization.
    pub fn execute(
        &mut self,
        request: &Request,
        ctx: Context<'_>,
        mut next_version: impl FnMut(Option<&Hlc>) -> Hlc,
    ) -> Outcome {
        let now = ctx.now_ms;
        let mut changes = Vec::new();
        if let Some(key) = request.key() {
            changes.extend(self.expire_key(key, now, &mut || next_version(None)));
        }
        let mut outcome = match request {
            Request::Get { key } => match self.entries.get(key) {
                Some(e) => Outcome::new(Reply::Bulk(e.value.clone()), Some(e.version.clone())),
                None => Outcome::new(Reply::Null, None),
            },
            Request::Set {
                key,
                value,
                condition,
                expiry_ms,
            } => self.set(key, value, *condition, *expiry_ms, ctx, &mut next_version),
            Request::Del { key } => self.delete(key, None, ctx, &mut || next_version(None)),
            Request::VDel { key, value } => {
                self.delete(key, Some(value), ctx, &mut || next_version(None))
            }
            Request::KeyNotify { key, stop: false } => {
                if self.registration_refused(ctx.client, key) {
                    Outcome::quota_exceeded(QuotaHit::KeyNotify)
                } else {
                    self.register(ctx.client, key.clone());
                    Outcome::new(Reply::Ok, None)
                }
            }
            Request::KeyNotify { key, stop: true } => {
                let reply = if self.unregister(ctx.client, key) {
                    Reply::Ok
                } else {
                    Reply::ABSENT
                };
                Outcome::new(reply, None)
            }
            Request::Scan { pattern, token } => {
                Outcome::new(self.scan(pattern, token.as_deref(), now, |_| true), None)
            }
        };
        changes.append(&mut outcome.changes);
        outcome.changes = changes;
        outcome
    }

    fn set(
        &mut self,
        key: &Bytes,
        value: &Bytes,
        condition: SetCondition,
        expiry_ms: Option<std::num::NonZeroU64>,
        ctx: Context<'_>,
        next_version: &mut impl FnMut(Option<&Hlc>) -> Hlc,
    ) -> Outcome {
        if let Some(hit) = self.quota_hit(ctx.client, key, value) {
            return Outcome::quota_exceeded(hit);
        }
        let existing = self.entries.get(key);
        let stored_token = existing.and_then(|e| e.fencing_token.as_ref());
        let fencing_token = match check_fence(stored_token, ctx.stamps.fencing_token.as_ref()) {
            Ok(token) => token,
            Err(error) => return Outcome::new(error.into(), None),
        };
        if let Some(e) = existing {
            let blocked = match condition {
                SetCondition::Always => false,
                SetCondition::NotExists => true,
                SetCondition::NotExistsOrEqual => e.value != *value,
            };
            if blocked {
                return Outcome::new(Reply::NOT_APPLIED, Some(e.version.clone()));
            }
        }
        let last = existing.map(|e| e.version.clone());
        let version = next_version(last.as_ref());
        let expires_at_ms = expiry_ms.map(|ms| ctx.now_ms.saturating_add(ms.get()));
        let owner = self.owner_id(ctx.client);
        self.insert(
            key.clone(),
            Entry {
                value: value.clone(),
                version: version.clone(),
                fencing_token,
                expires_at_ms,
                persist: ctx.persist,
                owner: Some(owner),
            },
        );
        Outcome {
            reply: Reply::Ok,
            version: Some(version.clone()),
            changes: vec![Change {
                key: key.clone(),
                version,
                kind: ChangeKind::Set(value.clone()),
            }],
            quota_hit: None,
        }
    }

    /// DEL (`expected` is `None`) and VDEL. An absent key is `:0` whatever `__ft` says.
    fn delete(
        &mut self,
        key: &Bytes,
        expected: Option<&Bytes>,
        ctx: Context<'_>,
        next_version: &mut impl FnMut() -> Hlc,
    ) -> Outcome {
        let Some(e) = self.entries.get(key) else {
            return Outcome::new(Reply::ABSENT, None);
        };
        if let Err(error) = check_fence(e.fencing_token.as_ref(), ctx.stamps.fencing_token.as_ref())
        {
            return Outcome::new(error.into(), None);
        }
        if expected.is_some_and(|v| *v != e.value) {
            return Outcome::new(Reply::NOT_APPLIED, Some(e.version.clone()));
        }
        let change = self.remove(key, next_version());
        Outcome {
            reply: Reply::DELETED,
            version: Some(change.version.clone()),
            changes: vec![change],
            quota_hit: None,
        }
    }

    /// The shared `Arc` of `client` as an owner, so a client's keys hold one copy of its id.
    fn owner_id(&self, client: &str) -> Arc<str> {
        match self.client_bytes.get_key_value(client) {
            Some((c, _)) => c.clone(),
            None => client.into(),
        }
    }

    fn remove(&mut self, key: &Bytes, version: Hlc) -> Change {
        self.uncount(key);
        self.unindex_expiry(key);
        self.entries.remove(key);
        Change {
            key: key.clone(),
            version,
            kind: ChangeKind::Delete,
        }
    }

    fn unindex_expiry(&mut self, key: &Bytes) {
        if let Some(at) = self.entries.get(key).and_then(|e| e.expires_at_ms) {
            self.expiries.remove(&(at, key.clone()));
        }
    }

    /// Remove `key` if it has expired by `now_ms`.
    fn expire_key(
        &mut self,
        key: &Bytes,
        now_ms: u64,
        next_version: &mut impl FnMut() -> Hlc,
    ) -> Option<Change> {
        let expired = self.entries.get(key)?.is_expired(now_ms);
        expired.then(|| self.remove(key, next_version()))
    }

    /// Active expiry: remove every key expired by `now_ms`, oldest expiry first, returning
    /// their DELETE changes (each with a fresh version from `next_version`).
    pub fn expire(&mut self, now_ms: u64, mut next_version: impl FnMut() -> Hlc) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now_ms {
                break;
            }
            changes.push(self.remove(&key, next_version()));
        }
        changes
    }

    /// When the next key expires (ms since the Unix epoch), for the wiring's timer.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(at, _)| *at)
    }
}
