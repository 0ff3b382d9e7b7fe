//! The key map of the state store (statestore.md §2.3, §2.5, §3.4, §4.1, §6.2, §6.3, §10):
//! pure and I/O-free. The MQTT wiring parses the request, runs authorization and
//! [`super::stamps::check_stamps`], then calls [`Store::execute`] with the validated stamps,
//! the wall clock and a version source (the server [`super::HybridClock`]). Time is always
//! passed in; nothing here sleeps, spawns or publishes.
//!
//! Expiry is lazy (an expired key is absent to every command) and active ([`Store::expire`],
//! driven by a timer set from [`Store::next_expiry`]); both report a DELETE [`Change`] so
//! watchers are notified exactly once (§4.3, §6.2).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use gatehouse_config::glob::Glob;

use super::error::ErrorReply;
use super::hlc::Hlc;
use super::request::{Request, SetCondition};
use super::resp3::{Notification, Reply};
use super::stamps::{check_fence, Stamps};

/// Keys returned per SCAN page at most.
pub const SCAN_PAGE_SIZE: usize = 100;
/// Keys examined per SCAN request at most; past this a page (possibly empty) ends with a
/// continuation token, so one request's work stays bounded whatever the pattern.
pub const SCAN_BUDGET: usize = 8 * SCAN_PAGE_SIZE;
/// Glob matching steps one SCAN request may spend ([`Glob::matches_within`], about a few
/// milliseconds): a page ends early, before the key that would cross it, so a long pattern
/// against long keys cannot stall the state store. A single key that alone needs more is
/// `-ERR the pattern is too complex` (only a hostile pattern gets there).
pub const SCAN_MATCH_BUDGET: u64 = 1 << 22;

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

/// The bytes a key holds for the byte quotas: its key and its value. Versions, tokens
/// and map overhead are not counted (they are bounded per key, and so by [`Quotas::keys`]).
fn entry_bytes(key: &[u8], value: &[u8]) -> u64 {
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

    /// The bound `client` writing `value` at `key` would cross, if any. A count already
    /// over its bound (after a reload lowered it) may stay or shrink, never grow.
    fn quota_hit(&self, client: &str, key: &Bytes, value: &Bytes) -> Option<QuotaHit> {
        let q = &self.quotas;
        let existing = self.entries.get(key);
        if existing.is_none() && q.keys.is_some_and(|max| self.entries.len() >= max) {
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
        let total_after = self.total_bytes.saturating_sub(old).saturating_add(new);
        if grows_past(self.total_bytes, total_after, q.total_bytes) {
            return Some(QuotaHit::TotalBytes);
        }
        let mine = self.client_bytes(client);
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

    /// Whether registering `key` for `client` would take it past
    /// [`Quotas::key_notify_per_client`]; a key it watches already never is.
    fn registration_refused(&self, client: &str, key: &[u8]) -> bool {
        let Some(max) = self.quotas.key_notify_per_client else {
            return false;
        };
        match self.watched.get(client) {
            Some(keys) => !keys.contains(key) && keys.len() >= max,
            None => max == 0,
        }
    }

    /// KEYNOTIFY: `client` watches `key` (idempotent, §4.1). Returns whether it is new.
    pub fn register(&mut self, client: &str, key: Bytes) -> bool {
        let client: Arc<str> = match self.watched.get_key_value(client) {
            Some((c, _)) => c.clone(),
            None => client.into(),
        };
        let added = self
            .watchers
            .entry(key.clone())
            .or_default()
            .insert(client.clone());
        self.watched.entry(client).or_default().insert(key);
        added
    }

    /// KEYNOTIFY STOP: returns whether there was a registration to remove.
    pub fn unregister(&mut self, client: &str, key: &[u8]) -> bool {
        let Some(keys) = self.watched.get_mut(client) else {
            return false;
        };
        if !keys.remove(key) {
            return false;
        }
        if keys.is_empty() {
            self.watched.remove(client);
        }
        if let Some(clients) = self.watchers.get_mut(key) {
            clients.remove(client);
            if clients.is_empty() {
                self.watchers.remove(key);
            }
        }
        true
    }

    /// A disconnect drops all of the client's registrations (§4.1, §8 vector 14).
    pub fn drop_client(&mut self, client: &str) {
        let Some(keys) = self.watched.remove(client) else {
            return;
        };
        for key in keys {
            if let Some(clients) = self.watchers.get_mut(&key) {
                clients.remove(client);
                if clients.is_empty() {
                    self.watchers.remove(&key);
                }
            }
        }
    }

    /// Drop the registrations of `client` whose key `keep` no longer lets through (the
    /// client's principal or the policy changed: security.md invariant 3). Returns the
    /// dropped keys.
    pub fn retain_registrations(
        &mut self,
        client: &str,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<Bytes> {
        let dropped: Vec<Bytes> = match self.watched.get(client) {
            Some(keys) => keys.iter().filter(|k| !keep(k)).cloned().collect(),
            None => return Vec::new(),
        };
        for key in &dropped {
            self.unregister(client, key);
        }
        dropped
    }

    /// The keys `client` watches (any order).
    pub fn registrations(&self, client: &str) -> impl Iterator<Item = &Bytes> {
        self.watched.get(client).into_iter().flatten()
    }

    /// The clients watching `key`, in client id order.
    pub fn watchers(&self, key: &[u8]) -> impl Iterator<Item = &str> {
        self.watchers
            .get(key)
            .into_iter()
            .flat_map(|clients| clients.iter().map(|c| &**c))
    }

    /// SCAN (§10): live keys after `token` (exclusive; keys are visited in byte order, so
    /// the token is simply the last key examined) whose whole UTF-8 text matches the glob
    /// `pattern` ([`gatehouse_config::glob`]: `[!...]` negates, `^` is literal, as the AIO
    /// SDK expects) and that `readable` lets through. Non-UTF-8 keys are never returned. An
    /// invalid or non-UTF-8 pattern is `-ERR syntax error`. The matching work is bounded
    /// by [`SCAN_MATCH_BUDGET`] as well as [`SCAN_BUDGET`].
    pub fn scan(
        &self,
        pattern: &[u8],
        token: Option<&[u8]>,
        now_ms: u64,
        readable: impl Fn(&[u8]) -> bool,
    ) -> Reply {
        let Some(matcher) = std::str::from_utf8(pattern)
            .ok()
            .and_then(|p| Glob::new(p).ok())
        else {
            return ErrorReply::Syntax.into();
        };
        use std::ops::Bound;
        let start = token.map_or(Bound::Unbounded, |t| {
            Bound::Excluded(Bytes::copy_from_slice(t))
        });
        let mut keys = Vec::new();
        let mut range = self
            .entries
            .range::<Bytes, _>((start, Bound::Unbounded))
            .peekable();
        let mut examined = 0;
        let mut budget = SCAN_MATCH_BUDGET;
        let mut previous: Option<&Bytes> = None;
        while let Some((key, entry)) = range.next() {
            let text = match std::str::from_utf8(key) {
                Ok(text) if !entry.is_expired(now_ms) => Some(text),
                _ => None, // expired, or not UTF-8
            };
            let matched = text.map_or(Ok(false), |t| matcher.matches_within(t, &mut budget));
            let matched = match matched {
                Ok(matched) => matched,
                // The budget ran out on this key: end the page before it, so the next
                // request starts here with a whole budget. If this key was the first, even
                // a whole budget is not enough for it.
                Err(_) => match previous {
                    Some(previous) => {
                        return Reply::ScanPage {
                            keys,
                            token: Some(previous.clone()),
                        }
                    }
                    None => return ErrorReply::PatternTooComplex.into(),
                },
            };
            examined += 1;
            previous = Some(key);
            if matched && readable(key) {
                keys.push(key.clone());
            }
            if (keys.len() >= SCAN_PAGE_SIZE || examined >= SCAN_BUDGET) && range.peek().is_some() {
                return Reply::ScanPage {
                    keys,
                    token: Some(key.clone()),
                };
            }
        }
        Reply::ScanPage { keys, token: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU64;

    const NOW: u64 = 1_700_000_000_000;

    fn hlc(s: &str) -> Hlc {
        s.parse().unwrap()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// A versioned store with a monotonic version counter standing in for the server HLC.
    struct Harness {
        store: Store,
        counter: u64,
        /// The requesting client of the next commands.
        client: &'static str,
    }

    impl Harness {
        fn new(quota: Option<usize>) -> Self {
            Harness::with_quotas(Quotas::keys(quota))
        }

        fn with_quotas(quotas: Quotas) -> Self {
            Harness {
                store: Store::new(quotas),
                counter: 0,
                client: "c1",
            }
        }

        fn run_ft(&mut self, req: Request, ft: Option<&str>, now_ms: u64) -> Outcome {
            let stamps = Stamps {
                timestamp: None,
                fencing_token: ft.map(hlc),
            };
            let ctx = Context {
                client: self.client,
                stamps: &stamps,
                now_ms,
                persist: false,
            };
            let counter = &mut self.counter;
            self.store.execute(&req, ctx, |_| {
                *counter += 1;
                Hlc {
                    wall_ms: now_ms,
                    counter: *counter,
                    node_id: "S".into(),
                }
            })
        }

        fn run(&mut self, req: Request) -> Outcome {
            self.run_ft(req, None, NOW)
        }

        fn run_as(&mut self, client: &'static str, req: Request) -> Outcome {
            self.client = client;
            let outcome = self.run(req);
            self.client = "c1";
            outcome
        }
    }

    fn set(key: &str, value: &str, condition: SetCondition, px: u64) -> Request {
        Request::Set {
            key: b(key),
            value: b(value),
            condition,
            expiry_ms: NonZeroU64::new(px),
        }
    }

    fn get(key: &str) -> Request {
        Request::Get { key: b(key) }
    }

    fn del(key: &str) -> Request {
        Request::Del { key: b(key) }
    }

    fn vdel(key: &str, value: &str) -> Request {
        Request::VDel {
            key: b(key),
            value: b(value),
        }
    }

    fn wire(reply: &Reply) -> Vec<u8> {
        reply.to_bytes().to_vec()
    }

    /// §8 vector 1: SET → `+OK` with V1, GET → the value with V1.
    #[test]
    fn vector_01_set_then_get() {
        let mut h = Harness::new(None);
        let set = h.run(set("k", "v", SetCondition::Always, 0));
        assert_eq!(wire(&set.reply), b"+OK\r\n");
        let v1 = set.version.clone().unwrap();
        assert_eq!(
            set.changes,
            vec![Change {
                key: b("k"),
                version: v1.clone(),
                kind: ChangeKind::Set(b("v"))
            }]
        );
        let got = h.run(get("k"));
        assert_eq!(wire(&got.reply), b"$1\r\nv\r\n");
        assert_eq!(got.version, Some(v1));
        assert!(got.changes.is_empty());
    }

    /// §8 vector 4: NX on an existing key → `:-1` with the stored version; absent → `+OK`.
    #[test]
    fn vector_04_set_nx() {
        let mut h = Harness::new(None);
        let first = h.run(set("k", "v", SetCondition::NotExists, 0));
        assert_eq!(first.reply, Reply::Ok);
        let again = h.run(set("k", "w", SetCondition::NotExists, 0));
        assert_eq!(wire(&again.reply), b":-1\r\n");
        assert_eq!(again.version, first.version);
        assert!(again.changes.is_empty());
        assert_eq!(wire(&h.run(get("k")).reply), b"$1\r\nv\r\n");
    }

    /// §8 vector 5: NEX with another value → `:-1`; with the same value and PX → `+OK`,
    /// a higher version and the new expiry.
    #[test]
    fn vector_05_set_nex_renewal() {
        let mut h = Harness::new(None);
        let v1 = h.run(set("k", "v1", SetCondition::Always, 0)).version;
        let other = h.run(set("k", "v2", SetCondition::NotExistsOrEqual, 0));
        assert_eq!(other.reply, Reply::NOT_APPLIED);
        assert_eq!(other.version, v1);
        let renew = h.run(set("k", "v1", SetCondition::NotExistsOrEqual, 1000));
        assert_eq!(renew.reply, Reply::Ok);
        assert!(renew.version > v1);
        assert_eq!(h.store.next_expiry(), Some(NOW + 1000));
        // NEX on an absent key sets it.
        let fresh = h.run(set("n", "x", SetCondition::NotExistsOrEqual, 0));
        assert_eq!(fresh.reply, Reply::Ok);
    }

    /// §8 vector 6: VDEL wrong → `:-1`, right → `:1`, again → `:0`.
    #[test]
    fn vector_06_vdel() {
        let mut h = Harness::new(None);
        let v1 = h.run(set("k", "v1", SetCondition::Always, 0)).version;
        let wrong = h.run(vdel("k", "wrong"));
        assert_eq!(wire(&wrong.reply), b":-1\r\n");
        assert_eq!(wrong.version, v1);
        let right = h.run(vdel("k", "v1"));
        assert_eq!(wire(&right.reply), b":1\r\n");
        assert!(right.version > v1);
        assert_eq!(right.changes.len(), 1);
        assert_eq!(right.changes[0].kind, ChangeKind::Delete);
        let again = h.run(vdel("k", "v1"));
        assert_eq!(wire(&again.reply), b":0\r\n");
        assert!(again.changes.is_empty());
    }

    /// §8 vector 7: DEL missing → `:0`; GET missing → `$-1` without `__ts`.
    #[test]
    fn vector_07_missing_key() {
        let mut h = Harness::new(None);
        assert_eq!(wire(&h.run(del("missing")).reply), b":0\r\n");
        let got = h.run(get("missing"));
        assert_eq!(wire(&got.reply), b"$-1\r\n");
        assert_eq!(got.version, None);
        // After a DEL the key is a miss again.
        h.run(set("k", "v", SetCondition::Always, 0));
        assert_eq!(wire(&h.run(del("k")).reply), b":1\r\n");
        assert_eq!(h.run(get("k")).version, None);
    }

    /// §8 vector 8: fencing.
    #[test]
    fn vector_08_fencing() {
        let f = "1700000000000:5:lock";
        let lower = "1700000000000:4:lock";
        let higher = "1700000000001:0:lock";
        let mut h = Harness::new(None);
        let ok = h.run_ft(set("k", "v", SetCondition::Always, 0), Some(f), NOW);
        assert_eq!(ok.reply, Reply::Ok);
        let missing = h.run(set("k", "v", SetCondition::Always, 0));
        assert_eq!(
            wire(&missing.reply),
            b"-ERR a fencing token is required for this request\r\n"
        );
        assert!(missing.changes.is_empty());
        let low = h.run_ft(set("k", "v", SetCondition::Always, 0), Some(lower), NOW);
        assert_eq!(
            wire(&low.reply),
            &b"-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"[..]
        );
        assert_eq!(
            h.run(del("k")).reply,
            Reply::Error(ErrorReply::FencingTokenRequired)
        );
        assert_eq!(
            h.run_ft(vdel("k", "v"), None, NOW).reply,
            Reply::Error(ErrorReply::FencingTokenRequired)
        );
        // GET needs no token.
        assert_eq!(wire(&h.run(get("k")).reply), b"$1\r\nv\r\n");
        // Fencing is checked before the NX condition.
        assert_eq!(
            h.run(set("k", "v", SetCondition::NotExists, 0)).reply,
            Reply::Error(ErrorReply::FencingTokenRequired)
        );
        // An equal token is accepted, a higher one replaces the stored one.
        assert_eq!(
            h.run_ft(set("k", "v2", SetCondition::Always, 0), Some(f), NOW)
                .reply,
            Reply::Ok
        );
        assert_eq!(
            h.run_ft(set("k", "v3", SetCondition::Always, 0), Some(higher), NOW)
                .reply,
            Reply::Ok
        );
        assert_eq!(
            h.store.get(b"k", NOW).unwrap().fencing_token,
            Some(hlc(higher))
        );
        assert_eq!(
            h.run_ft(del("k"), Some(f), NOW).reply,
            Reply::Error(ErrorReply::FencingTokenLowerVersion)
        );
        assert_eq!(h.run_ft(del("k"), Some(higher), NOW).reply, Reply::DELETED);
        // The token went with the key: a new SET starts unfenced.
        assert_eq!(
            h.run(set("k", "v", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(h.run(del("k")).reply, Reply::DELETED);
        // DEL on an absent key with any token is `:0`.
        assert_eq!(h.run_ft(del("k"), Some(lower), NOW).reply, Reply::ABSENT);
    }

    /// §8 vector 13: `SET k v PX 1000` while watching k → SET change, then a DELETE change
    /// from active expiry at +1000 ms; lazily, the key is absent at +1000 ms too.
    #[test]
    fn vector_13_expiry_notifies_delete() {
        let mut h = Harness::new(None);
        h.run(Request::KeyNotify {
            key: b("k"),
            stop: false,
        });
        let set = h.run(set("k", "v", SetCondition::Always, 1000));
        assert_eq!(set.changes[0].kind, ChangeKind::Set(b("v")));
        assert_eq!(h.store.watchers(b"k").collect::<Vec<_>>(), ["c1"]);
        assert_eq!(h.store.next_expiry(), Some(NOW + 1000));
        let mut n = 100;
        let mut version = || {
            n += 1;
            hlc(&format!("{}:{n}:S", NOW + 1000))
        };
        assert!(h.store.expire(NOW + 999, &mut version).is_empty());
        assert_eq!(
            wire(&h.run_ft(get("k"), None, NOW + 999).reply),
            b"$1\r\nv\r\n"
        );
        let expired = h.store.expire(NOW + 1000, &mut version);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].key, b("k"));
        assert_eq!(expired[0].kind, ChangeKind::Delete);
        assert!(expired[0].version > set.version.unwrap());
        assert_eq!(
            expired[0].notification().to_bytes(),
            &b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"[..]
        );
        assert_eq!(h.store.next_expiry(), None);
        assert!(h.store.is_empty());
    }

    /// Lazy expiry: an expired key is absent to every command, and its removal is reported
    /// once as a DELETE change before the command's own changes.
    #[test]
    fn lazy_expiry_is_absent_and_reported_once() {
        let mut h = Harness::new(None);
        h.run(set("k", "v", SetCondition::Always, 10));
        let later = NOW + 10;
        let got = h.run_ft(get("k"), None, later);
        assert_eq!(got.reply, Reply::Null);
        assert_eq!(got.changes.len(), 1);
        assert_eq!(got.changes[0].kind, ChangeKind::Delete);
        assert!(h.run_ft(get("k"), None, later).changes.is_empty());
        assert!(h.store.expire(later, || hlc("1:0:S")).is_empty());
        // NX on an expired key succeeds; DEL on one is `:0`.
        h.run(set("e", "v", SetCondition::Always, 10));
        let nx = h.run_ft(set("e", "w", SetCondition::NotExists, 0), None, later);
        assert_eq!(nx.reply, Reply::Ok);
        assert_eq!(nx.changes.len(), 2);
        h.run(set("d", "v", SetCondition::Always, 10));
        assert_eq!(h.run_ft(del("d"), None, later).reply, Reply::ABSENT);
        // A plain SET removes the expiry (Redis semantics).
        h.run(set("p", "v", SetCondition::Always, 10));
        h.run(set("p", "v", SetCondition::Always, 0));
        assert_eq!(h.run_ft(get("p"), None, later).reply, Reply::Bulk(b("v")));
        assert_eq!(h.store.next_expiry(), None);
    }

    #[test]
    fn quota_counts_keys_and_only_blocks_new_ones() {
        let mut h = Harness::new(Some(2));
        h.run(set("a", "1", SetCondition::Always, 0));
        h.run(set("b", "1", SetCondition::Always, 5));
        let full = h.run(set("c", "1", SetCondition::Always, 0));
        assert_eq!(wire(&full.reply), b"-ERR the quota has been exceeded\r\n");
        assert!(full.changes.is_empty());
        // Overwriting an existing key is fine.
        assert_eq!(
            h.run(set("a", "2", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        // A deleted or expired key frees its slot.
        h.run(del("a"));
        assert_eq!(
            h.run(set("c", "1", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        h.store.expire(NOW + 5, || hlc("1:0:S"));
        assert_eq!(
            h.run(set("d", "1", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(h.store.len(), 2);
    }

    /// Value size, total bytes and per-client bytes (issue 13): refused with the quota
    /// error, nothing stored, nothing notified; another client is unaffected by one
    /// client's quota; the last writer owns a key; DEL and expiry free the owner's bytes.
    #[test]
    fn byte_quotas() {
        let mut h = Harness::with_quotas(Quotas {
            keys: None,
            value_bytes: Some(10),
            total_bytes: Some(40),
            client_bytes: Some(20),
            key_notify_per_client: None,
        });
        let quota = |o: &Outcome| {
            assert_eq!(wire(&o.reply), b"-ERR the quota has been exceeded\r\n");
            assert!(o.changes.is_empty());
            o.quota_hit
        };
        // Value size: 10 bytes pass, 11 do not.
        let big = h.run(set("k", "01234567890", SetCondition::Always, 0));
        assert_eq!(quota(&big), Some(QuotaHit::ValueBytes));
        assert!(h.store.is_empty());
        assert_eq!(
            h.run(set("a", "0123456789", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(h.store.client_bytes("c1"), 11);
        // Per client: c1 holds 11, 10 more would be 21 > 20.
        let over = h.run(set("b", "012345678", SetCondition::Always, 0));
        assert_eq!(quota(&over), Some(QuotaHit::ClientBytes));
        assert_eq!(
            h.run(set("b", "01234567", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(h.store.client_bytes("c1"), 20);
        // Overwriting its own key with a value of the same size is fine at the limit.
        assert_eq!(
            h.run(set("b", "abcdefgh", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        // Another client is not affected by c1's quota.
        assert_eq!(
            h.run_as("c2", set("c", "0123456789", SetCondition::Always, 0))
                .reply,
            Reply::Ok
        );
        assert_eq!(h.store.client_bytes("c2"), 11);
        assert_eq!(h.store.total_bytes(), 31);
        // Total: 31 + 10 > 40, whoever asks.
        let full = h.run_as("c3", set("d", "012345678", SetCondition::Always, 0));
        assert_eq!(quota(&full), Some(QuotaHit::TotalBytes));
        assert_eq!(h.store.client_bytes("c3"), 0);
        // The last writer owns: c2 overwrites c1's `a`, its 11 bytes move to c2.
        assert_eq!(
            h.run_as("c2", set("a", "x", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(h.store.client_bytes("c1"), 9);
        assert_eq!(h.store.client_bytes("c2"), 13);
        // DEL by anyone frees the owner's bytes; so does expiry.
        h.run_as("c2", del("b"));
        assert_eq!(h.store.client_bytes("c1"), 0);
        assert_eq!(
            h.run(set("e", "v", SetCondition::Always, 5)).reply,
            Reply::Ok
        );
        assert_eq!(h.store.client_bytes("c1"), 2);
        h.store.expire(NOW + 5, || hlc("1:0:S"));
        assert_eq!(h.store.client_bytes("c1"), 0);
        assert_eq!(h.store.total_bytes(), 13);
        assert!(
            !h.store.client_bytes.contains_key("c1"),
            "no entry for zero"
        );
    }

    /// A lowered bound keeps what is stored; growth is refused, shrinking is not.
    #[test]
    fn lowered_byte_quota_allows_shrinking() {
        let mut h = Harness::with_quotas(Quotas::default());
        h.run(set("k", "0123456789", SetCondition::Always, 0));
        h.store.set_quotas(Quotas {
            total_bytes: Some(5),
            client_bytes: Some(5),
            ..Quotas::default()
        });
        assert_eq!(
            h.run(set("k", "0123", SetCondition::Always, 0)).reply,
            Reply::Ok
        );
        assert_eq!(
            h.run(set("k", "01234", SetCondition::Always, 0)).quota_hit,
            Some(QuotaHit::TotalBytes)
        );
        assert_eq!(h.store.len(), 1);
    }

    /// Restored entries count towards the total and their recorded owner.
    #[test]
    fn restored_entries_are_counted() {
        let entry = |value: &'static str, owner: Option<&str>| Entry {
            value: b(value),
            version: hlc("1:0:S"),
            fencing_token: None,
            expires_at_ms: None,
            persist: true,
            owner: owner.map(Arc::from),
        };
        let quotas = Quotas {
            client_bytes: Some(10),
            total_bytes: Some(100),
            ..Quotas::default()
        };
        let mut h = Harness::with_quotas(quotas);
        h.store = Store::with_entries(
            quotas,
            [
                (b("a"), entry("12345678", Some("c1"))),
                (b("b"), entry("xyz", None)),
            ],
        );
        assert_eq!(h.store.total_bytes(), 13);
        assert_eq!(h.store.client_bytes("c1"), 9);
        assert_eq!(
            h.run(set("c", "v", SetCondition::Always, 0)).quota_hit,
            Some(QuotaHit::ClientBytes)
        );
    }

    /// Re-checking a client's registrations drops those `keep` refuses, and only those.
    #[test]
    fn retain_registrations_drops_what_is_no_longer_allowed() {
        let mut h = Harness::new(None);
        for key in ["mine/1", "mine/2", "theirs/1"] {
            h.store.register("c1", b(key));
        }
        h.store.register("c2", b("theirs/1"));
        let mut dropped = h
            .store
            .retain_registrations("c1", |k| k.starts_with(b"mine/"));
        dropped.sort();
        assert_eq!(dropped, [b("theirs/1")]);
        assert_eq!(h.store.watchers(b"theirs/1").collect::<Vec<_>>(), ["c2"]);
        assert_eq!(h.store.watchers(b"mine/1").collect::<Vec<_>>(), ["c1"]);
        assert!(h.store.retain_registrations("c1", |_| true).is_empty());
        assert!(h.store.retain_registrations("nobody", |_| false).is_empty());
        assert_eq!(h.store.retain_registrations("c1", |_| false).len(), 2);
        assert!(!h.store.watched.contains_key("c1"));
    }

    /// `stateStoreMaxKeyNotifyPerClient`: past it a new registration gets the quota
    /// error; the same key again, other clients and registrations after a STOP still work.
    #[test]
    fn keynotify_registrations_per_client_are_bounded() {
        let mut h = Harness::with_quotas(Quotas {
            key_notify_per_client: Some(2),
            ..Quotas::default()
        });
        let notify = |key: &str, stop| Request::KeyNotify { key: b(key), stop };
        assert_eq!(h.run(notify("a", false)).reply, Reply::Ok);
        assert_eq!(h.run(notify("b", false)).reply, Reply::Ok);
        assert_eq!(h.run(notify("b", false)).reply, Reply::Ok); // not counted twice
        let refused = h.run(notify("c", false));
        assert_eq!(
            wire(&refused.reply),
            b"-ERR the quota has been exceeded\r\n"
        );
        assert_eq!(refused.quota_hit, Some(QuotaHit::KeyNotify));
        assert_eq!(h.store.registrations("c1").count(), 2);
        assert_eq!(h.run(notify("a", true)).reply, Reply::Ok);
        assert_eq!(h.run(notify("c", false)).reply, Reply::Ok);
    }

    /// §8 vectors 12 and 14 at this level: registration replies and who is addressed.
    #[test]
    fn keynotify_registrations() {
        let mut h = Harness::new(None);
        let notify = |stop| Request::KeyNotify {
            key: b("SOMEKEY"),
            stop,
        };
        assert_eq!(h.run(notify(false)).reply, Reply::Ok);
        assert_eq!(h.run(notify(false)).reply, Reply::Ok); // idempotent
        assert!(h.store.register("c2", b("SOMEKEY")));
        assert!(h.store.register("c2", b("OTHER")));
        assert_eq!(
            h.store.watchers(b"SOMEKEY").collect::<Vec<_>>(),
            ["c1", "c2"]
        );
        assert_eq!(h.run(notify(true)).reply, Reply::Ok);
        assert_eq!(wire(&h.run(notify(true)).reply), b":0\r\n");
        assert_eq!(h.store.watchers(b"SOMEKEY").collect::<Vec<_>>(), ["c2"]);
        h.store.drop_client("c2");
        assert_eq!(h.store.watchers(b"SOMEKEY").count(), 0);
        assert_eq!(h.store.watchers(b"OTHER").count(), 0);
        assert!(!h.store.unregister("c2", b"OTHER"));
        assert!(h.store.watchers.is_empty() && h.store.watched.is_empty());
    }

    fn page(reply: Reply) -> (Vec<String>, Option<Bytes>) {
        let Reply::ScanPage { keys, token } = reply else {
            panic!("not a page: {reply:?}");
        };
        let keys = keys
            .iter()
            .map(|k| String::from_utf8(k.to_vec()).unwrap())
            .collect();
        (keys, token)
    }

    #[test]
    fn scan_matches_whole_utf8_keys() {
        let mut h = Harness::new(None);
        for key in ["a/1", "a/2", "a/x/3", "b/1", "A/1"] {
            h.run(set(key, "v", SetCondition::Always, 0));
        }
        h.run(Request::Set {
            key: Bytes::from_static(b"a/\xff"),
            value: b("v"),
            condition: SetCondition::Always,
            expiry_ms: None,
        });
        h.run(set("a/gone", "v", SetCondition::Always, 1));
        let scan = |store: &Store, p: &str| page(store.scan(p.as_bytes(), None, NOW + 1, |_| true));
        assert_eq!(scan(&h.store, "a/*").0, ["a/1", "a/2", "a/x/3"]);
        assert_eq!(scan(&h.store, "a/?").0, ["a/1", "a/2"]);
        assert_eq!(scan(&h.store, "[!a]/1").0, ["A/1", "b/1"]);
        // Issue 18: `^` is a member of the class, not a negation (AIO SDK semantics).
        assert_eq!(scan(&h.store, "[^a]/1").0, ["a/1"]);
        assert_eq!(scan(&h.store, "a/[^0-9]").0, ["a/1", "a/2"]);
        assert_eq!(scan(&h.store, "a").0, Vec::<String>::new());
        // The authorization hook hides keys.
        let (keys, _) = page(h.store.scan(b"*", None, NOW + 1, |k| !k.starts_with(b"a/")));
        assert_eq!(keys, ["A/1", "b/1"]);
        assert_eq!(
            h.store.scan(b"[", None, NOW, |_| true),
            Reply::Error(ErrorReply::Syntax)
        );
        assert_eq!(
            h.store.scan(b"\xff", None, NOW, |_| true),
            Reply::Error(ErrorReply::Syntax)
        );
        // Through execute, SCAN sees every key.
        let all = h.run_ft(
            Request::Scan {
                pattern: b("*/1"),
                token: None,
            },
            None,
            NOW + 1,
        );
        assert_eq!(page(all.reply).0, ["A/1", "a/1", "b/1"]);
    }

    /// A pattern that is costly against long keys ends pages early (before the key that
    /// would cross [`SCAN_MATCH_BUDGET`]) and still returns every match across pages; one
    /// key that alone exceeds the budget is refused, not matched for ever.
    #[test]
    fn scan_matching_work_is_bounded_per_request() {
        let mut h = Harness::new(None);
        // Each match of `*` + 100 `a` + `?b` against 4000 `a`s retries the `*` at each of the
        // 4000 characters, comparing up to 100 `a`s each time: about 400 000 steps.
        let long = "a".repeat(4000);
        for i in 0..40 {
            h.run(set(&format!("{i:02}{long}"), "v", SetCondition::Always, 0));
            h.run(set(&format!("{i:02}{long}b"), "v", SetCondition::Always, 0));
        }
        let pattern = format!("*{}?b", "a".repeat(100));
        let mut token = None;
        let mut found = 0;
        let mut pages = 0;
        loop {
            let reply = h
                .store
                .scan(pattern.as_bytes(), token.as_deref(), NOW, |_| true);
            let (keys, next) = page(reply);
            pages += 1;
            assert!(keys.iter().all(|k| k.ends_with('b')));
            found += keys.len();
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(found, 40);
        assert!(pages > 1, "the budget split the scan into pages");
        // One key whose match alone needs more than a whole budget.
        let mut h = Harness::new(None);
        h.run(set(&"a".repeat(60_000), "v", SetCondition::Always, 0));
        let pattern = format!("*{}b", "a".repeat(100));
        assert_eq!(
            h.store.scan(pattern.as_bytes(), None, NOW, |_| true),
            Reply::Error(ErrorReply::PatternTooComplex)
        );
    }

    #[test]
    fn scan_pages_with_continuation_tokens() {
        let mut h = Harness::new(None);
        let total = SCAN_PAGE_SIZE * 2 + 7;
        for i in 0..total {
            h.run(set(&format!("k{i:04}"), "v", SetCondition::Always, 0));
        }
        h.run(set("z", "v", SetCondition::Always, 0));
        let mut seen = Vec::new();
        let mut token = None;
        let mut pages = 0;
        loop {
            let (keys, next) = page(h.store.scan(b"k*", token.as_deref(), NOW, |_| true));
            pages += 1;
            assert!(keys.len() <= SCAN_PAGE_SIZE);
            seen.extend(keys);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<String> = (0..total).map(|i| format!("k{i:04}")).collect();
        assert_eq!(seen, expected);
        // A sparse match over many keys yields bounded, possibly empty, pages.
        for i in total..SCAN_BUDGET {
            h.run(set(&format!("k{i:04}"), "v", SetCondition::Always, 0));
        }
        let (keys, token) = page(h.store.scan(b"z", None, NOW, |_| true));
        assert!(keys.is_empty() && token.is_some());
        let (keys, token) = page(h.store.scan(b"z", token.as_deref(), NOW, |_| true));
        assert_eq!((keys, token), (vec!["z".to_string()], None));
    }
}
