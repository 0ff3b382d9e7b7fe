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
}

impl Outcome {
    fn new(reply: Reply, version: Option<Hlc>) -> Self {
        Outcome {
            reply,
            version,
            changes: Vec::new(),
        }
    }
}

/// The key map, its expiry index and the KEYNOTIFY registrations.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<Bytes, Entry>,
    /// `(expires_at_ms, key)` for every entry with an expiry.
    expiries: BTreeSet<(u64, Bytes)>,
    quota: Option<usize>,
    /// key → clients watching it.
    watchers: HashMap<Bytes, BTreeSet<Arc<str>>>,
    /// client → keys it watches, for [`Store::drop_client`].
    watched: HashMap<Arc<str>, HashSet<Bytes>>,
}

impl Store {
    /// An empty store; `quota` is the maximum number of keys (§6.3), `None` for no limit.
    pub fn new(quota: Option<usize>) -> Self {
        Store {
            quota,
            ..Store::default()
        }
    }

    /// A store holding `entries`, e.g. those persisted before a restart
    /// ([`super::persist::StatePersistence::open`]). The quota applies to new keys only, so
    /// every entry is kept. No KEYNOTIFY registrations (clients re-register on reconnect).
    pub fn with_entries(
        quota: Option<usize>,
        entries: impl IntoIterator<Item = (Bytes, Entry)>,
    ) -> Self {
        let mut store = Store::new(quota);
        for (key, entry) in entries {
            store.unindex_expiry(&key);
            if let Some(at) = entry.expires_at_ms {
                store.expiries.insert((at, key.clone()));
            }
            store.entries.insert(key, entry);
        }
        store
    }

    /// A reload changed the key quota; keys beyond a lower one stay, new ones are refused.
    pub fn set_quota(&mut self, quota: Option<usize>) {
        self.quota = quota;
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
    /// is called once per write (including a lazy expiry), never for a failed one.
    ///
    /// SCAN here sees every key; the wiring calls [`Store::scan`] to filter by authorization.
    pub fn execute(
        &mut self,
        request: &Request,
        ctx: Context<'_>,
        mut next_version: impl FnMut() -> Hlc,
    ) -> Outcome {
        let now = ctx.now_ms;
        let mut changes = Vec::new();
        if let Some(key) = request.key() {
            changes.extend(self.expire_key(key, now, &mut next_version));
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
            Request::Del { key } => self.delete(key, None, ctx, &mut next_version),
            Request::VDel { key, value } => self.delete(key, Some(value), ctx, &mut next_version),
            Request::KeyNotify { key, stop: false } => {
                self.register(ctx.client, key.clone());
                Outcome::new(Reply::Ok, None)
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
        next_version: &mut impl FnMut() -> Hlc,
    ) -> Outcome {
        let existing = self.entries.get(key);
        if existing.is_none() && self.quota.is_some_and(|q| self.entries.len() >= q) {
            return Outcome::new(ErrorReply::QuotaExceeded.into(), None);
        }
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
        let version = next_version();
        let expires_at_ms = expiry_ms.map(|ms| ctx.now_ms.saturating_add(ms.get()));
        self.unindex_expiry(key);
        if let Some(at) = expires_at_ms {
            self.expiries.insert((at, key.clone()));
        }
        self.entries.insert(
            key.clone(),
            Entry {
                value: value.clone(),
                version: version.clone(),
                fencing_token,
                expires_at_ms,
                persist: ctx.persist,
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
        }
    }

    fn remove(&mut self, key: &Bytes, version: Hlc) -> Change {
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

    /// The clients watching `key`, in client id order.
    pub fn watchers(&self, key: &[u8]) -> impl Iterator<Item = &str> {
        self.watchers
            .get(key)
            .into_iter()
            .flat_map(|clients| clients.iter().map(|c| &**c))
    }

    /// SCAN (§10): live keys after `token` (exclusive; keys are visited in byte order, so
    /// the token is simply the last key examined) whose whole UTF-8 text matches the glob
    /// `pattern` and that `readable` lets through. Non-UTF-8 keys are never returned. An
    /// invalid or non-UTF-8 pattern is `-ERR syntax error`.
    pub fn scan(
        &self,
        pattern: &[u8],
        token: Option<&[u8]>,
        now_ms: u64,
        readable: impl Fn(&[u8]) -> bool,
    ) -> Reply {
        let Some(matcher) = std::str::from_utf8(pattern).ok().and_then(|p| {
            globset::GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .ok()
                .map(|g| g.compile_matcher())
        }) else {
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
        while let Some((key, entry)) = range.next() {
            examined += 1;
            let matches = !entry.is_expired(now_ms)
                && std::str::from_utf8(key).is_ok_and(|k| matcher.is_match(k))
                && readable(key);
            if matches {
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
    }

    impl Harness {
        fn new(quota: Option<usize>) -> Self {
            Harness {
                store: Store::new(quota),
                counter: 0,
            }
        }

        fn run_ft(&mut self, req: Request, ft: Option<&str>, now_ms: u64) -> Outcome {
            let stamps = Stamps {
                timestamp: None,
                fencing_token: ft.map(hlc),
            };
            let ctx = Context {
                client: "c1",
                stamps: &stamps,
                now_ms,
                persist: false,
            };
            let counter = &mut self.counter;
            self.store.execute(&req, ctx, || {
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
