//! The boundary where GET/SET/DEL/VDEL read and write keys when they do not live in this
//! node's own [`Store`](super::super::store::Store): cluster mode (issue 15) keeps them in a
//! store shared by every node (a JetStream key-value bucket, `cluster/statestore.rs`).
//!
//! The service stays the one place that decides: it reads the key's current record and
//! its revision, runs the request on a scratch [`Store`](super::super::store::Store)
//! holding only that record (the same code as a single node: fencing, NX/NEX, VDEL,
//! expiry, versions), and commits the resulting record by compare-and-set on the
//! revision. On a conflict (another node wrote the key in between) it reads again and
//! decides again on the fresh record, a bounded number of times.
//!
//! The calls are futures: the connection that sent a request awaits its answer without
//! holding a worker thread (`connection/state_store.rs`).
//!
//! Quotas (statestore.md §6.3, security.md invariant 6) hold cluster-wide: every node
//! counts the shared store's live keys from the changes it watches ([`Usage`]), and a
//! request is decided with the other keys counted ([`super::super::store::Outside`]).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::super::hlc::Hlc;
use super::super::persist::codec;
use super::super::resp3::Reply;
use super::super::store::{entry_bytes, scan_after, Entry, Outside};

/// What the shared store holds for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A live (or expired, not yet removed) entry.
    Live(Entry),
    /// Deleted (DEL, VDEL or expiry) with the delete's version: kept as a record so that
    /// every node's KEYNOTIFY gets the version, and a key created again gets a version
    /// above it.
    Deleted(Hlc),
}

/// First byte of a record.
const LIVE: u8 = b'S';
const DELETED: u8 = b'D';

impl Stored {
    /// The record's bytes: a tag, then the entry in the persistence codec's layout, or
    /// the delete's version as an HLC string.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Stored::Live(entry) => {
                let mut out = vec![LIVE];
                out.extend_from_slice(&codec::encode(entry));
                out
            }
            Stored::Deleted(version) => {
                let mut out = vec![DELETED];
                out.extend_from_slice(version.to_string().as_bytes());
                out
            }
        }
    }

    /// The record of `bytes`, or `None` when it is not one (another writer's).
    pub fn decode(bytes: &[u8]) -> Option<Stored> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            LIVE => codec::decode(rest).ok().map(Stored::Live),
            DELETED => std::str::from_utf8(rest)
                .ok()?
                .parse::<Hlc>()
                .ok()
                .map(Stored::Deleted),
            _ => None,
        }
    }

    /// The version of the write that left this record.
    pub fn version(&self) -> &Hlc {
        match self {
            Stored::Live(entry) => &entry.version,
            Stored::Deleted(version) => version,
        }
    }
}

/// A key's current record and the revision to compare-and-set against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The shared store's revision of the key's last write (any kind).
    pub revision: u64,
    /// `None`: the last write was not a Gatehouse record (e.g. a delete by an operator):
    /// the key is absent.
    pub stored: Option<Stored>,
}

/// Why a shared read or write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    /// The key changed since it was read (compare-and-set lost): read and decide again.
    #[error("the key was written by another node meanwhile")]
    Conflict,
    /// The shared store did not answer (unreachable, no quorum, timeout) or refused.
    #[error("the shared state store is unavailable: {0}")]
    Unavailable(String),
    /// The shared store's own size limit (the JetStream bucket's `max_bytes`, a backstop
    /// behind the quotas) refused a write that would grow it: answered like a quota.
    #[error("the shared state store is full")]
    Full,
}

/// What a [`SharedKeys`] call returns: a future, so the caller waits without holding a
/// thread.
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SharedError>> + Send + 'a>>;

/// The keys of the state store shared by every node (cluster mode).
///
/// Every call is given the request's `deadline` (the whole request's budget,
/// [`super::SHARED_BUDGET`] from its start): past it the call gives up with
/// [`SharedError::Unavailable`]. Within it an implementation may try again as it sees fit.
pub trait SharedKeys: Send + Sync {
    /// The key's current record: its last write as seen by the store's leader, so a read
    /// sees every write acknowledged before it, this node's own included.
    fn read<'a>(&'a self, key: &'a [u8], deadline: Instant) -> SharedFuture<'a, Option<Current>>;

    /// Write `record` if the key's last revision is still `expected` (`None`: the key has
    /// never been written); [`SharedError::Conflict`] otherwise. Returns the new revision.
    ///
    /// Exactly once: when an attempt's outcome is unknown (no acknowledgement in time),
    /// the implementation finds out whether THIS record was stored before trying again
    /// or answering, so that an `Ok` is never a write decided twice, and a `Conflict`
    /// never hides this write (the caller decides again on a `Conflict`: an NX decided
    /// again on its own write would say "not applied").
    fn write<'a>(
        &'a self,
        key: &'a [u8],
        expected: Option<u64>,
        record: &'a Stored,
        deadline: Instant,
    ) -> SharedFuture<'a, u64>;
}

/// One live key of the shared store as the quotas count it.
#[derive(Debug, Clone)]
struct Held {
    revision: u64,
    bytes: u64,
    /// What its record takes in the shared store ([`stored_size`]).
    stored: u64,
    owner: Option<Arc<str>>,
    /// The record's absolute expiry (ms since the Unix epoch), for SCAN.
    expires_at_ms: Option<u64>,
}

/// Roughly what `record` of `key` takes in the shared store: the record, the key as the
/// store names it (base64, with a prefix) and an allowance for headers and framing. For
/// [`Usage::stored_limit`], which keeps live records well under the store's hard limit.
pub fn stored_size(key: &[u8], record: &Stored) -> u64 {
    let record = match record {
        Stored::Live(entry) => codec::encode(entry).len() + 1,
        Stored::Deleted(_) => 64,
    };
    (record as u64)
        .saturating_add((key.len() as u64).saturating_mul(4) / 3)
        .saturating_add(STORED_FRAMING)
}

/// Bytes per record [`stored_size`] adds for the subject's prefix, the headers and the
/// store's own framing.
pub const STORED_FRAMING: u64 = 160;

/// A write this node has decided and not yet committed: counted as if committed, so
/// that concurrent requests on this node cannot together cross a quota.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    keys: usize,
    bytes: u64,
    stored: u64,
    owner: Option<Arc<str>>,
}

/// The shared store's live keys as this node counts them for the quotas and lists them
/// for SCAN ([`Usage::scan`]): every change
/// the node's watch of the shared store sees ([`Usage::seen`]), this node's own commits
/// as soon as they are acknowledged ([`Usage::committed`]), and its writes in flight
/// ([`Reservation`]).
///
/// Another node's write is counted once this node's watch has delivered it (normally
/// within milliseconds): two nodes that decide at the same moment may each admit the
/// last key under a bound, so the bounds may be overshot by the writes the nodes have in
/// flight at once. The bucket's `max_bytes` (set from the quotas, `cluster/statestore.rs`)
/// is the hard limit behind it.
#[derive(Debug, Default)]
pub struct Usage {
    /// In byte order, for SCAN's pages.
    keys: BTreeMap<Bytes, Held>,
    total_bytes: u64,
    client_bytes: HashMap<Arc<str>, u64>,
    /// The highest revision the watch has delivered.
    watched: u64,
    /// Keys this node deleted (or saw deleted) at a revision the watch has not reached:
    /// an older record of the key the watch delivers later must not count it again.
    gone: HashMap<Bytes, u64>,
    reserved_keys: usize,
    reserved_bytes: u64,
    reserved_clients: HashMap<Arc<str>, u64>,
    /// [`stored_size`] of every live key, and of the writes in flight.
    stored: u64,
    reserved_stored: u64,
    /// Live records may take at most this much of the shared store
    /// ([`Self::set_stored_limit`]).
    stored_limit: Option<u64>,
}

impl Usage {
    /// The watch delivered `record` (`None`: deleted or purged) for `key` at `revision`.
    pub fn seen(&mut self, key: &[u8], revision: u64, record: Option<&Stored>) {
        self.watched = self.watched.max(revision);
        self.apply(key, revision, record);
        let watched = self.watched;
        self.gone.retain(|_, at| *at > watched);
    }

    /// This node committed `record` at `revision`; the watch delivers it later.
    pub fn committed(&mut self, key: &[u8], revision: u64, record: &Stored) {
        if revision > self.watched {
            self.apply(key, revision, Some(record));
        }
    }

    fn apply(&mut self, key: &[u8], revision: u64, record: Option<&Stored>) {
        if self.gone.get(key).is_some_and(|at| *at >= revision) {
            return;
        }
        if self.keys.get(key).is_some_and(|h| h.revision >= revision) {
            return;
        }
        self.uncount(key);
        match record {
            Some(live @ Stored::Live(entry)) => {
                let held = Held {
                    revision,
                    bytes: entry_bytes(key, &entry.value),
                    stored: stored_size(key, live),
                    owner: entry.owner.clone(),
                    expires_at_ms: entry.expires_at_ms,
                };
                self.gone.remove(key);
                self.count(Bytes::copy_from_slice(key), held);
            }
            _ => {
                if revision > self.watched {
                    self.gone.insert(Bytes::copy_from_slice(key), revision);
                }
            }
        }
    }

    /// Count again from `records`, every key's current record up to revision `upto` (a
    /// fresh read of the whole store, after this node's watch was interrupted: deletes it
    /// missed, whose records may be gone by now, are no longer counted). This node's own
    /// commits after `upto` and its writes in flight stay counted.
    pub fn rebuild(
        &mut self,
        records: impl IntoIterator<Item = (Bytes, u64, Option<Stored>)>,
        upto: u64,
    ) {
        let mut fresh = Usage {
            reserved_keys: self.reserved_keys,
            reserved_bytes: self.reserved_bytes,
            reserved_clients: std::mem::take(&mut self.reserved_clients),
            reserved_stored: self.reserved_stored,
            stored_limit: self.stored_limit,
            ..Usage::default()
        };
        for (key, revision, record) in records {
            fresh.seen(&key, revision, record.as_ref());
        }
        fresh.watched = fresh.watched.max(upto);
        for (key, held) in std::mem::take(&mut self.keys) {
            if held.revision > upto
                && fresh
                    .keys
                    .get(&key)
                    .is_none_or(|h| h.revision < held.revision)
            {
                fresh.uncount(&key);
                fresh.count(key, held);
            }
        }
        for (key, at) in std::mem::take(&mut self.gone) {
            if at > upto && fresh.keys.get(&key).is_none_or(|h| h.revision < at) {
                fresh.uncount(&key);
                fresh.gone.insert(key, at);
            }
        }
        *self = fresh;
    }

    fn count(&mut self, key: Bytes, held: Held) {
        self.total_bytes = self.total_bytes.saturating_add(held.bytes);
        self.stored = self.stored.saturating_add(held.stored);
        if let Some(owner) = &held.owner {
            let mine = self.client_bytes.entry(owner.clone()).or_default();
            *mine = mine.saturating_add(held.bytes);
        }
        self.keys.insert(key, held);
    }

    fn uncount(&mut self, key: &[u8]) {
        let Some(held) = self.keys.remove(key) else {
            return;
        };
        self.total_bytes = self.total_bytes.saturating_sub(held.bytes);
        self.stored = self.stored.saturating_sub(held.stored);
        if let Some(owner) = &held.owner {
            if let Some(mine) = self.client_bytes.get_mut(owner) {
                *mine = mine.saturating_sub(held.bytes);
                if *mine == 0 {
                    self.client_bytes.remove(owner);
                }
            }
        }
    }

    /// What the quotas count beside `key` itself for a request of `client`: the other
    /// live keys and the writes in flight on this node.
    pub fn outside(&self, key: &[u8], client: &str) -> Outside {
        let this = self.keys.get(key);
        let own = this.map_or(0, |h| h.bytes);
        let mine_here = match this.and_then(|h| h.owner.as_deref()) {
            Some(owner) if owner == client => own,
            _ => 0,
        };
        let mine = self
            .client_bytes
            .get(client)
            .copied()
            .unwrap_or(0)
            .saturating_sub(mine_here)
            .saturating_add(self.reserved_clients.get(client).copied().unwrap_or(0));
        Outside {
            keys: (self.keys.len() - usize::from(this.is_some()))
                .saturating_add(self.reserved_keys),
            total_bytes: self
                .total_bytes
                .saturating_sub(own)
                .saturating_add(self.reserved_bytes),
            client: Some((Arc::from(client), mine)),
        }
    }

    /// Count `record`, about to be written at `key`, until [`Self::release`].
    pub fn reserve(&mut self, key: &[u8], record: &Stored) -> Reservation {
        let Stored::Live(entry) = record else {
            return Reservation::default();
        };
        let r = Reservation {
            keys: usize::from(!self.keys.contains_key(key)),
            bytes: entry_bytes(key, &entry.value),
            stored: stored_size(key, record),
            owner: entry.owner.clone(),
        };
        self.reserved_keys = self.reserved_keys.saturating_add(r.keys);
        self.reserved_stored = self.reserved_stored.saturating_add(r.stored);
        self.reserved_bytes = self.reserved_bytes.saturating_add(r.bytes);
        if let Some(owner) = &r.owner {
            let mine = self.reserved_clients.entry(owner.clone()).or_default();
            *mine = mine.saturating_add(r.bytes);
        }
        r
    }

    /// The reserved write was committed (and counted) or failed.
    pub fn release(&mut self, r: &Reservation) {
        self.reserved_keys = self.reserved_keys.saturating_sub(r.keys);
        self.reserved_bytes = self.reserved_bytes.saturating_sub(r.bytes);
        self.reserved_stored = self.reserved_stored.saturating_sub(r.stored);
        if let Some(owner) = &r.owner {
            if let Some(mine) = self.reserved_clients.get_mut(owner) {
                *mine = mine.saturating_sub(r.bytes);
                if *mine == 0 {
                    self.reserved_clients.remove(owner);
                }
            }
        }
    }

    /// Keep live records under `limit` bytes of the shared store (cluster mode: a share of
    /// the bucket's `max_bytes`, which refuses every write, deletes included, once it is
    /// reached: the rest is room for delete records and for races between nodes).
    pub fn set_stored_limit(&mut self, limit: Option<u64>) {
        self.stored_limit = limit;
    }

    /// Whether writing `record` at `key` would take live records past the stored limit:
    /// only a write that makes the key's record larger is refused.
    pub fn over_stored_limit(&self, key: &[u8], record: &Stored) -> bool {
        let Some(limit) = self.stored_limit else {
            return false;
        };
        let Stored::Live(_) = record else {
            return false;
        };
        let old = self.keys.get(key).map_or(0, |h| h.stored);
        let new = stored_size(key, record);
        new > old
            && self
                .stored
                .saturating_sub(old)
                .saturating_add(self.reserved_stored)
                .saturating_add(new)
                > limit
    }

    /// SCAN (statestore.md §10) of the shared store's live keys as this node knows them:
    /// the same pages, token, budgets and answers as a single node's store
    /// ([`scan_after`]); a key whose expiry has passed by `now_ms` is skipped, as a GET
    /// would find it absent. Bounded work: at most one page is examined per call.
    pub fn scan(
        &self,
        pattern: &[u8],
        token: Option<&[u8]>,
        now_ms: u64,
        readable: impl Fn(&[u8]) -> bool,
    ) -> Reply {
        scan_after(
            &self.keys,
            token,
            |held| held.expires_at_ms.is_none_or(|at| at > now_ms),
            pattern,
            readable,
        )
    }

    /// Live keys counted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    #[test]
    fn records_round_trip() {
        let version: Hlc = "001700000000000:00003:Gatehouse".parse().unwrap();
        let live = Stored::Live(Entry {
            value: Bytes::from_static(b"v\r\n\0"),
            version: version.clone(),
            fencing_token: Some("001700000000000:00001:c".parse().unwrap()),
            expires_at_ms: Some(1_700_000_001_000),
            persist: false,
            owner: Some(Arc::from("client")),
        });
        assert_eq!(Stored::decode(&live.encode()), Some(live.clone()));
        let deleted = Stored::Deleted(version.clone());
        assert_eq!(Stored::decode(&deleted.encode()), Some(deleted));
        assert_eq!(live.version(), &version);
        assert_eq!(Stored::decode(b""), None);
        assert_eq!(Stored::decode(b"Xabc"), None);
        assert_eq!(Stored::decode(b"Dnot a version"), None);
    }

    fn live(value: &'static [u8], owner: &str) -> Stored {
        Stored::Live(Entry {
            value: Bytes::from_static(value),
            version: "001700000000000:00001:Gatehouse".parse().unwrap(),
            fencing_token: None,
            expires_at_ms: None,
            persist: false,
            owner: Some(Arc::from(owner)),
        })
    }

    fn deleted() -> Stored {
        Stored::Deleted("001700000000000:00002:Gatehouse".parse().unwrap())
    }

    /// The count follows the watch in revision order; this node's own commits count at
    /// once, and an older record the watch delivers later does not undo them.
    #[test]
    fn usage_counts_live_keys_once_in_revision_order() {
        let mut u = Usage::default();
        u.seen(b"a", 1, Some(&live(b"xx", "c1")));
        u.seen(b"b", 2, Some(&live(b"yyy", "c2")));
        assert_eq!(u.len(), 2);
        // Own commit of a new key at 5, before the watch reaches it.
        u.committed(b"c", 5, &live(b"z", "c1"));
        assert_eq!(u.len(), 3);
        // Own delete of `a` at 6; the watch then delivers 5 and 6: nothing changes.
        u.committed(b"a", 6, &deleted());
        assert_eq!(u.len(), 2);
        u.seen(b"c", 5, Some(&live(b"z", "c1")));
        u.seen(b"a", 6, Some(&deleted()));
        assert_eq!(u.len(), 2);
        // A later write of `a` counts again.
        u.seen(b"a", 7, Some(&live(b"w", "c2")));
        assert_eq!(u.len(), 3);
        // Outside `b` for c2: the others' keys and bytes, c2's own bytes elsewhere.
        let o = u.outside(b"b", "c2");
        assert_eq!(o.keys, 2);
        assert_eq!(o.total_bytes, 2 + 2);
        assert_eq!(o.client, Some((Arc::from("c2"), 2)));
        // A commit older than the watch is ignored (the watch has applied it or later).
        u.committed(b"d", 3, &live(b"q", "c1"));
        assert_eq!(u.len(), 3);
    }

    /// A recount from a fresh read drops keys whose deletes the watch missed, and keeps
    /// this node's own commits after the read.
    #[test]
    fn a_rebuild_drops_missed_deletes_and_keeps_later_commits() {
        let mut u = Usage::default();
        u.seen(b"a", 1, Some(&live(b"x", "c1")));
        u.seen(b"b", 2, Some(&live(b"y", "c1")));
        let r = u.reserve(b"n", &live(b"v", "c1"));
        u.committed(b"c", 9, &live(b"z", "c2"));
        u.committed(b"b", 10, &deleted());
        // The store now: `a` was deleted (its record expired, so it is absent), `b` live
        // at 2 (this node's delete at 10 came after the read, up to 8).
        u.rebuild([(Bytes::from_static(b"b"), 2, Some(live(b"y", "c1")))], 8);
        assert_eq!(
            u.len(),
            1,
            "only c: a was deleted, b deleted after the read"
        );
        assert_eq!(u.outside(b"x", "c2").client, Some((Arc::from("c2"), 2)));
        // The write in flight is still counted, and released against the new count.
        assert_eq!(u.outside(b"x", "c1").keys, 2);
        u.release(&r);
        assert_eq!(u.outside(b"x", "c1").keys, 1);
        // The watch then delivers b's delete and c: nothing changes.
        u.seen(b"c", 9, Some(&live(b"z", "c2")));
        u.seen(b"b", 10, Some(&deleted()));
        assert_eq!(u.len(), 1);
    }

    /// SCAN of the shared keys this node knows: byte order whatever the order they came
    /// in, expired and deleted keys skipped, pages of the single-node size with a token.
    #[test]
    fn scan_lists_live_keys_in_order_with_pages() {
        use crate::statestore::store::SCAN_PAGE_SIZE;
        let mut u = Usage::default();
        let expiring = Stored::Live(Entry {
            expires_at_ms: Some(1_000),
            ..match live(b"x", "c1") {
                Stored::Live(e) => e,
                Stored::Deleted(_) => unreachable!(),
            }
        });
        u.seen(b"k/b", 1, Some(&live(b"x", "c1")));
        u.committed(b"k/a", 2, &live(b"x", "c2"));
        u.seen(b"k/c", 3, Some(&expiring));
        u.seen(b"k/d", 4, Some(&live(b"x", "c1")));
        u.seen(b"k/d", 5, Some(&deleted()));
        u.seen(b"other", 6, Some(&live(b"x", "c1")));
        let page = |r: Reply| match r {
            Reply::ScanPage { keys, token } => (
                keys.iter()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect::<Vec<_>>(),
                token,
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            page(u.scan(b"k/*", None, 999, |_| true)),
            (vec!["k/a".into(), "k/b".into(), "k/c".into()], None)
        );
        assert_eq!(
            page(u.scan(b"k/*", None, 1_000, |_| true)).0,
            ["k/a", "k/b"]
        );
        assert_eq!(
            page(u.scan(b"k/*", Some(b"k/a"), 1_000, |_| true)).0,
            ["k/b"]
        );
        assert_eq!(
            page(u.scan(b"*", None, 1_000, |k| k != b"k/a")).0,
            ["k/b", "other"]
        );
        assert!(matches!(u.scan(b"[", None, 0, |_| true), Reply::Error(_)));
        for i in 0..SCAN_PAGE_SIZE + 5 {
            u.seen(
                format!("p/{i:04}").as_bytes(),
                10 + i as u64,
                Some(&live(b"x", "c1")),
            );
        }
        let (first, token) = page(u.scan(b"p/*", None, 0, |_| true));
        assert_eq!(first.len(), SCAN_PAGE_SIZE);
        let token = token.expect("a second page");
        assert_eq!(&token[..], first[SCAN_PAGE_SIZE - 1].as_bytes());
        let (second, end) = page(u.scan(b"p/*", Some(&token), 0, |_| true));
        assert_eq!(second.len(), 5);
        assert_eq!(end, None);
    }

    /// Writes in flight count until released; the stored limit refuses only growth.
    #[test]
    fn reservations_and_the_stored_limit() {
        let mut u = Usage::default();
        u.seen(b"a", 1, Some(&live(b"xx", "c1")));
        let r = u.reserve(b"n", &live(b"vvvv", "c1"));
        let o = u.outside(b"other", "c1");
        assert_eq!(o.keys, 2);
        assert_eq!(o.total_bytes, 3 + 5);
        assert_eq!(o.client, Some((Arc::from("c1"), 8)));
        u.release(&r);
        assert_eq!(u.outside(b"other", "c1").keys, 1);
        let a = stored_size(b"a", &live(b"xx", "c1"));
        u.set_stored_limit(Some(a + 10));
        assert!(!u.over_stored_limit(b"a", &live(b"x", "c1")), "smaller");
        assert!(!u.over_stored_limit(b"a", &deleted()), "a delete");
        assert!(u.over_stored_limit(b"b", &live(b"x", "c1")), "a new key");
        u.set_stored_limit(None);
        assert!(!u.over_stored_limit(b"b", &live(b"x", "c1")));
    }
}
