//! The state store as a broker service (statestore.md §1, §4, §6): one request in, one
//! response out, notifications to watchers, active expiry.
//!
//! The connection task that receives a request runs it here itself, under one mutex, so
//! a request costs no hop through another task and commands are applied one at a time:
//! the version order of a key always matches the order its notifications leave in (§6.7).
//! Nothing here blocks or awaits; notifications go to the watchers' session queues
//! through the `deliver` callback while the lock is held, for the same ordering reason.

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use std::sync::OnceLock;

use super::counters::{StateStoreCommand, StateStoreCounters};
use super::error::ErrorReply;
use super::hlc::{HybridClock, SystemClock, WallClock};
use super::persist::StatePersistence;
use super::request::Request;
use super::resp3::Reply;
use super::stamps::Stamps;
use super::stamps::{check_stamps, StampRule};
use super::store::{Change, ChangeKind, Context, Entry, Quotas, Store};
use super::topic::notify_topic;
use crate::authz::Action;
use crate::message::Message;

mod envelope;
pub mod shared;
use envelope::is_supported_version;
pub use envelope::{Answer, AnswerKind, Invocation, CONTENT_TYPE, NODE_ID, PROTOCOL_VERSION};
use shared::{SharedError, SharedKeys, Stored};

struct Inner<C> {
    store: Store,
    clock: HybridClock<C>,
}

/// The state store service; the broker owns one.
pub struct StateStore<C = SystemClock> {
    inner: Mutex<Inner<C>>,
    /// Wakes the expiry task when a SET may have brought the next expiry forward.
    expiry_changed: Notify,
    /// Set once at start when `persistence:` is configured ([`StateStore::restore`]).
    persistence: OnceLock<StatePersistence>,
    /// Requests by command and result, for `/metrics`.
    pub requests: StateStoreCounters,
    /// Seals SCAN continuation tokens (they name the last key examined).
    scan_tokens: super::scan_token::ScanTokens,
    /// Cluster mode (issue 15): where GET/SET/DEL/VDEL keep their keys instead of `inner`'s
    /// store, set once at start ([`StateStore::attach_shared`]). KEYNOTIFY registrations
    /// stay in `inner` (they belong to this node's clients).
    shared: OnceLock<std::sync::Arc<dyn SharedKeys>>,
    /// Cluster mode: the shared store's live keys, counted for the quotas.
    usage: Mutex<shared::Usage>,
}

/// How far [`StateStore::start`] got.
pub enum Started {
    /// Answered.
    Done(Answer),
    /// A request on the shared store (cluster mode): await [`StateStore::finish_shared`].
    Shared(SharedRequest),
}

/// A request on the shared store, checked (parsed, authorized, stamps valid) and owned,
/// so that its connection can await it.
pub struct SharedRequest {
    shared: std::sync::Arc<dyn SharedKeys>,
    command: StateStoreCommand,
    request: Request,
    key: Bytes,
    client: std::sync::Arc<str>,
    stamps: Stamps,
}

/// How many times a write is decided again after losing a compare-and-set to another
/// node's write of the same key, before the request is answered as unavailable.
const SHARED_ATTEMPTS: usize = 16;

/// How long a request on the shared store (cluster mode) may wait for it in all, reads,
/// writes and retries included; then it is answered `__stat` 503.
pub const SHARED_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

impl StateStore<SystemClock> {
    /// An empty store bounded by `quotas`.
    pub fn new(quotas: Quotas) -> Self {
        StateStore::with_clock(quotas, SystemClock)
    }
}

impl<C: WallClock> StateStore<C> {
    pub fn with_clock(quotas: Quotas, clock: C) -> Self {
        let clock = match HybridClock::new(NODE_ID, clock) {
            Ok(clock) => clock,
            Err(e) => unreachable!("the constant node id is valid: {e}"),
        };
        StateStore {
            inner: Mutex::new(Inner {
                store: Store::new(quotas),
                clock,
            }),
            expiry_changed: Notify::new(),
            persistence: OnceLock::new(),
            requests: StateStoreCounters::default(),
            scan_tokens: super::scan_token::ScanTokens::new(),
            shared: OnceLock::new(),
            usage: Mutex::new(shared::Usage::default()),
        }
    }

    /// Start from the persisted `entries` and record every later change through
    /// `persistence`. The clock moves past the highest stored version, so new versions stay
    /// above the old ones even if the wall clock went back across the restart. The quotas
    /// in force count the restored bytes (total, and per recorded owner).
    pub fn restore(&self, persistence: StatePersistence, entries: Vec<(Bytes, Entry)>) {
        let mut guard = self.inner.lock();
        if let Some(highest) = entries.iter().map(|(_, e)| &e.version).max() {
            guard.clock.update(highest);
        }
        let quotas = guard.store.quotas();
        guard.store = Store::with_entries(quotas, entries);
        drop(guard);
        if self.persistence.set(persistence).is_err() {
            tracing::warn!(target: "statestore", "persistence attached twice; keeping the first");
        }
        self.expiry_changed.notify_one();
    }

    /// Wait until every change so far is on disk (shutdown); a no-op without persistence.
    pub async fn flush(&self) -> Result<(), crate::storage::PersistError> {
        match self.persistence.get() {
            Some(p) => p.flush().await,
            None => Ok(()),
        }
    }

    /// Run one request. `authorize` is the requesting client's authorization check;
    /// `deliver(client_id, notification)` hands a notification to a watcher's session.
    ///
    /// Synchronous: a request on the shared store (cluster mode) is answered only if the
    /// store answers without waiting (the tests' in-memory store); otherwise `__stat` 503.
    /// The connection uses [`Self::start`] and awaits [`Self::finish_shared`].
    pub fn invoke(
        &self,
        invocation: Invocation<'_>,
        authorize: impl Fn(&Action<'_>) -> bool,
        deliver: impl FnMut(&str, Message),
    ) -> Answer {
        use futures_util::FutureExt as _;
        match self.start(invocation, authorize, deliver) {
            Started::Done(answer) => answer,
            Started::Shared(request) => {
                let command = request.command;
                self.finish_shared(request)
                    .now_or_never()
                    .unwrap_or_else(|| {
                        let answer = Answer::unavailable(&SharedError::Unavailable(
                            "the shared store would have to be waited for".to_owned(),
                        ));
                        self.requests.record(Some(command), &answer);
                        answer
                    })
            }
        }
    }

    /// Run one request as far as it goes without waiting: everything on a single node;
    /// in cluster mode GET/SET/DEL/VDEL stop after the checks that need no key (parse,
    /// authorization, stamps) and are handed back as a [`SharedRequest`] for
    /// [`Self::finish_shared`].
    pub fn start(
        &self,
        invocation: Invocation<'_>,
        authorize: impl Fn(&Action<'_>) -> bool,
        deliver: impl FnMut(&str, Message),
    ) -> Started {
        let mut command = None;
        let started = self.run(invocation, authorize, deliver, &mut command);
        if let Started::Done(answer) = &started {
            self.requests.record(command, answer);
        }
        started
    }

    /// [`Self::invoke`]; `command` is set once the request has parsed.
    fn run(
        &self,
        invocation: Invocation<'_>,
        authorize: impl Fn(&Action<'_>) -> bool,
        mut deliver: impl FnMut(&str, Message),
        command: &mut Option<StateStoreCommand>,
    ) -> Started {
        let header = |name: &str| {
            invocation
                .user_properties
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        if let Some(requested) = header("__protVer") {
            if !is_supported_version(requested) {
                return Started::Done(Answer::unsupported_version(requested));
            }
        }
        let request = match Request::parse(invocation.payload) {
            Ok(request) => request,
            Err(error) => return Started::Done(Answer::error(error)),
        };
        *command = Some(StateStoreCommand::of(&request));
        if let Some(key) = request.key() {
            let write = matches!(
                request,
                Request::Set { .. } | Request::Del { .. } | Request::VDel { .. }
            );
            if !authorize(&Action::StateStore { write, key }) {
                tracing::debug!(target: "statestore", client_id = invocation.client_id, "key access denied");
                return Started::Done(Answer::error(ErrorReply::NotAuthorized));
            }
        }
        let rule = StampRule::of(&request);
        if let Some(shared) = self.shared.get() {
            if let Some(key) = shared_key(&request) {
                let now_ms = self.now_ms();
                let stamps = match check_stamps(rule, header("__ts"), header("__ft"), now_ms) {
                    Ok(stamps) => stamps,
                    Err(error) => return Started::Done(Answer::error(error)),
                };
                let key = key.clone();
                return Started::Shared(SharedRequest {
                    shared: shared.clone(),
                    command: StateStoreCommand::of(&request),
                    request,
                    key,
                    client: invocation.client_id.into(),
                    stamps,
                });
            }
            if let Request::Scan { pattern, token } = &request {
                // The shared store's keys as this node knows them (its own writes at
                // once, other nodes' through its watch): see `shared::Usage::scan`.
                let now_ms = self.now_ms();
                if let Err(error) = check_stamps(rule, header("__ts"), header("__ft"), now_ms) {
                    return Started::Done(Answer::error(error));
                }
                let reply = self.sealed_scan(invocation.client_id, token.as_ref(), |after| {
                    self.usage.lock().scan(pattern, after, now_ms, |key| {
                        authorize(&Action::StateStore { write: false, key })
                    })
                });
                return Started::Done(Answer::reply(&reply, None));
            }
        }
        let mut guard = self.inner.lock();
        let Inner { store, clock } = &mut *guard;
        let now_ms = clock.wall_now_ms();
        let stamps = match check_stamps(rule, header("__ts"), header("__ft"), now_ms) {
            Ok(stamps) => stamps,
            Err(error) => return Started::Done(Answer::error(error)),
        };
        if let Request::Scan { pattern, token } = &request {
            let reply = self.sealed_scan(invocation.client_id, token.as_ref(), |after| {
                store.scan(pattern, after, now_ms, |key| {
                    authorize(&Action::StateStore { write: false, key })
                })
            });
            return Started::Done(Answer::reply(&reply, None));
        }
        let persistence = self.persistence.get();
        let persist = matches!(request, Request::Set { .. })
            && persistence.is_some_and(|p| p.policy().dynamic_flag(invocation.user_properties));
        let ctx = Context {
            client: invocation.client_id,
            stamps: &stamps,
            now_ms,
            persist,
        };
        let timestamp = stamps.timestamp.clone();
        let outcome = store.execute(&request, ctx, |last| {
            clock.version_for(timestamp.as_ref(), last)
        });
        if let Some(hit) = outcome.quota_hit {
            tracing::debug!(
                target: "statestore",
                client_id = invocation.client_id,
                limit = hit.setting(),
                "request refused: the quota has been exceeded"
            );
        }
        if let Some(p) = persistence {
            p.record_changes(store, &outcome.changes, now_ms);
        }
        notify(store, &outcome.changes, &mut deliver);
        drop(guard);
        if matches!(
            request,
            Request::Set {
                expiry_ms: Some(_),
                ..
            }
        ) {
            self.expiry_changed.notify_one();
        }
        Started::Done(Answer::reply(
            &outcome.reply,
            outcome.version.map(|v| v.to_string()),
        ))
    }

    /// A SCAN page by `scan(after)`, with the client's token opened and the next one
    /// sealed: the client sees sealed tokens only (see `scan_token`), as the last key
    /// examined may be one it cannot read. A token that does not open is a syntax error.
    fn sealed_scan(
        &self,
        client_id: &str,
        token: Option<&Bytes>,
        scan: impl FnOnce(Option<&[u8]>) -> Reply,
    ) -> Reply {
        let after = match token {
            None => None,
            Some(t) => match self.scan_tokens.open(client_id, t) {
                Some(key) => Some(key),
                None => return Reply::Error(ErrorReply::Syntax),
            },
        };
        match scan(after.as_deref()) {
            Reply::ScanPage {
                keys,
                token: Some(last),
            } => Reply::ScanPage {
                keys,
                token: self.scan_tokens.seal(client_id, &last).map(Bytes::from),
            },
            other => other,
        }
    }

    /// Cluster mode: keep the keys of GET/SET/DEL/VDEL in `shared` from now on (set once at
    /// start, before any client connects). KEYNOTIFY registrations stay here; the caller
    /// feeds every change of the shared store to [`Self::notify_shared`].
    pub fn attach_shared(&self, shared: std::sync::Arc<dyn SharedKeys>) {
        if self.shared.set(shared).is_err() {
            tracing::warn!(target: "statestore", "shared keys attached twice; keeping the first");
        }
    }

    /// Finish a request [`Self::start`] handed back: GET/SET/DEL/VDEL on the shared store
    /// (cluster mode), awaited by the requester's connection without holding a thread.
    pub async fn finish_shared(&self, r: SharedRequest) -> Answer {
        let answer = self
            .run_shared(&*r.shared, &r.request, &r.key, &r.client, &r.stamps)
            .await;
        self.requests.record(Some(r.command), &answer);
        answer
    }

    /// GET/SET/DEL/VDEL on the shared store (cluster mode): read the key's record, decide
    /// on a scratch store holding only that record (the single-node rules: fencing,
    /// NX/NEX, VDEL, lazy expiry, versions, and the quotas with the shared store's other
    /// keys counted: [`shared::Usage`]), commit the result by compare-and-set on the
    /// record's revision; on a conflict read and decide again, up to [`SHARED_ATTEMPTS`]
    /// times. Nothing is notified here: the shared store's watch on every node does it
    /// ([`Self::notify_shared`]), once per change, this node's own included.
    async fn run_shared(
        &self,
        shared: &dyn SharedKeys,
        request: &Request,
        key: &Bytes,
        client: &str,
        stamps: &Stamps,
    ) -> Answer {
        let deadline = std::time::Instant::now() + SHARED_BUDGET;
        for _ in 0..SHARED_ATTEMPTS {
            let current = match shared.read(key, deadline).await {
                Ok(current) => current,
                Err(e) => return Answer::unavailable(&e),
            };
            let (outcome, next, reservation) = {
                // Lock order: usage, then inner.
                let mut usage = self.usage.lock();
                let mut guard = self.inner.lock();
                let Inner { store, clock } = &mut *guard;
                let live = match current.as_ref().and_then(|c| c.stored.as_ref()) {
                    Some(Stored::Live(entry)) => Some((key.clone(), entry.clone())),
                    Some(Stored::Deleted(version)) => {
                        // A key created again gets a version above its delete's.
                        clock.update(version);
                        None
                    }
                    None => None,
                };
                let now_ms = clock.wall_now_ms();
                let mut scratch = Store::with_entries(store.quotas(), live);
                scratch.set_outside(usage.outside(key, client));
                let ctx = Context {
                    client,
                    stamps,
                    now_ms,
                    persist: false,
                };
                let timestamp = stamps.timestamp.clone();
                let outcome = scratch.execute(request, ctx, |last| {
                    clock.version_for(timestamp.as_ref(), last)
                });
                let next = match (outcome.changes.last(), scratch.get(key, now_ms)) {
                    (None, _) => None,
                    (Some(_), Some(entry)) => Some(Stored::Live(entry.clone())),
                    (Some(change), None) => Some(Stored::Deleted(change.version.clone())),
                };
                if next
                    .as_ref()
                    .is_some_and(|n| usage.over_stored_limit(key, n))
                {
                    tracing::debug!(
                        target: "statestore",
                        client_id = client,
                        "request refused: the shared store's bucket is nearly full"
                    );
                    return Answer::error(ErrorReply::QuotaExceeded);
                }
                let reservation = next.as_ref().map(|n| usage.reserve(key, n));
                (outcome, next, reservation)
            };
            if let Some(hit) = outcome.quota_hit {
                tracing::debug!(
                    target: "statestore",
                    client_id = client,
                    limit = hit.setting(),
                    "request refused: the quota has been exceeded (cluster-wide)"
                );
            }
            let answer = || {
                Answer::reply(
                    &outcome.reply,
                    outcome.version.as_ref().map(|v| v.to_string()),
                )
            };
            let (Some(next), Some(reservation)) = (next, reservation) else {
                return answer();
            };
            let written = shared
                .write(key, current.map(|c| c.revision), &next, deadline)
                .await;
            {
                let mut usage = self.usage.lock();
                usage.release(&reservation);
                if let Ok(revision) = written {
                    usage.committed(key, revision, &next);
                }
            }
            match written {
                Ok(_) => return answer(),
                Err(SharedError::Conflict) => continue,
                Err(SharedError::Full) if matches!(next, Stored::Live(_)) => {
                    tracing::debug!(
                        target: "statestore",
                        client_id = client,
                        "request refused: the shared store's bucket is full"
                    );
                    return Answer::error(ErrorReply::QuotaExceeded);
                }
                Err(e) => return Answer::unavailable(&e),
            }
        }
        tracing::debug!(target: "statestore", client_id = client, "request lost {SHARED_ATTEMPTS} compare-and-sets in a row");
        Answer::unavailable(&SharedError::Unavailable(
            "the key is written too often to commit this request".to_owned(),
        ))
    }

    /// A change of the shared store's watch (cluster mode), from any node, this one
    /// included, at `revision` (`None`: deleted or purged by someone else than Gatehouse):
    /// counted for the quotas.
    pub fn seen_shared(&self, key: &[u8], revision: u64, record: Option<&Stored>) {
        self.usage.lock().seen(key, revision, record);
    }

    /// Cluster mode: live records may take at most `limit` bytes of the shared store
    /// (see [`shared::Usage::set_stored_limit`]).
    pub fn set_shared_stored_limit(&self, limit: Option<u64>) {
        self.usage.lock().set_stored_limit(limit);
    }

    /// Count the shared store's keys again from `records`, a fresh read of every key's
    /// current record up to revision `upto` (cluster mode, after the watch was
    /// interrupted; see [`shared::Usage::rebuild`]).
    pub fn recount_shared(
        &self,
        records: impl IntoIterator<Item = (Bytes, u64, Option<Stored>)>,
        upto: u64,
    ) {
        self.usage.lock().rebuild(records, upto);
    }

    /// Live keys of the shared store as this node counts them (cluster mode).
    pub fn shared_len(&self) -> usize {
        self.usage.lock().len()
    }

    /// A change of the shared store (cluster mode), from any node, this one included:
    /// notify this node's clients that watch `key`.
    pub fn notify_shared(
        &self,
        key: &[u8],
        record: &Stored,
        mut deliver: impl FnMut(&str, Message),
    ) {
        let change = Change {
            key: Bytes::copy_from_slice(key),
            version: record.version().clone(),
            kind: match record {
                Stored::Live(entry) => ChangeKind::Set(entry.value.clone()),
                Stored::Deleted(_) => ChangeKind::Delete,
            },
        };
        let guard = self.inner.lock();
        notify(&guard.store, &[change], &mut deliver);
    }

    /// Active expiry in cluster mode: delete `key` from the shared store if it has
    /// expired, by compare-and-set (every node may try; one wins, the others find it
    /// deleted or written again). The DELETE notifications come from the watch.
    pub async fn expire_shared(&self, key: &[u8]) -> Result<(), SharedError> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + SHARED_BUDGET;
        for _ in 0..SHARED_ATTEMPTS {
            let Some(current) = shared.read(key, deadline).await? else {
                return Ok(());
            };
            let Some(Stored::Live(entry)) = &current.stored else {
                return Ok(());
            };
            let deleted = {
                let mut guard = self.inner.lock();
                let now_ms = guard.clock.wall_now_ms();
                if entry.expires_at_ms.is_none_or(|at| at > now_ms) {
                    return Ok(());
                }
                Stored::Deleted(guard.clock.version_for(None, Some(&entry.version)))
            };
            match shared
                .write(key, Some(current.revision), &deleted, deadline)
                .await
            {
                Ok(revision) => {
                    self.usage.lock().committed(key, revision, &deleted);
                    return Ok(());
                }
                Err(SharedError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.inner.lock().store.quotas()
    }

    /// A reload changed `broker.stateStoreKeyQuota` or a byte quota.
    pub fn set_quotas(&self, quotas: Quotas) {
        self.inner.lock().store.set_quotas(quotas);
    }

    /// Re-check the KEYNOTIFY registrations of `client_id` after its principal or the
    /// policy changed (security.md invariant 3; e.g. a v5 re-authentication as another
    /// identity): every registration whose key `allowed` no longer grants Read
    /// (`Action::StateStore { write: false, .. }`, what KEYNOTIFY needs) is dropped and
    /// logged. Returns how many were dropped. The client is not told (the protocol has no
    /// message for it): its notifications for those keys stop.
    pub fn recheck_registrations(
        &self,
        client_id: &str,
        allowed: impl Fn(&Action<'_>) -> bool,
    ) -> usize {
        let dropped = self
            .inner
            .lock()
            .store
            .retain_registrations(client_id, |key| {
                allowed(&Action::StateStore { write: false, key })
            });
        for key in &dropped {
            tracing::info!(
                target: "statestore",
                client_id,
                key = %crate::storage::error::show_key(key),
                "KEYNOTIFY registration dropped: no longer authorized"
            );
        }
        dropped.len()
    }

    /// A disconnect drops every KEYNOTIFY registration of the client (§4.1).
    pub fn drop_client(&self, client_id: &str) {
        self.inner.lock().store.drop_client(client_id);
    }

    /// Remove every key expired by now, notifying watchers; returns when the next key
    /// expires (ms since the Unix epoch), if any.
    pub fn expire_due(&self, mut deliver: impl FnMut(&str, Message)) -> Option<u64> {
        let mut guard = self.inner.lock();
        let Inner { store, clock } = &mut *guard;
        let now_ms = clock.wall_now_ms();
        let changes = store.expire(now_ms, || clock.now());
        if let Some(p) = self.persistence.get() {
            p.record_changes(store, &changes, now_ms);
        }
        notify(store, &changes, &mut deliver);
        store.next_expiry()
    }

    /// The wall clock the store uses, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.lock().clock.wall_now_ms()
    }

    /// Resolves when a SET may have brought the next expiry forward.
    pub async fn expiry_changed(&self) {
        self.expiry_changed.notified().await;
    }

    /// The number of stored keys (cluster mode: the shared store's live keys, as this
    /// node counts them).
    pub fn len(&self) -> usize {
        if self.shared.get().is_some() {
            return self.shared_len();
        }
        self.inner.lock().store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key of a request that cluster mode runs on the shared store.
fn shared_key(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Get { key }
        | Request::Set { key, .. }
        | Request::Del { key }
        | Request::VDel { key, .. } => Some(key),
        Request::KeyNotify { .. } | Request::Scan { .. } => None,
    }
}

/// Send each change to every client watching its key, in change order.
fn notify(store: &Store, changes: &[Change], deliver: &mut impl FnMut(&str, Message)) {
    for change in changes {
        let mut watchers = store.watchers(&change.key).peekable();
        if watchers.peek().is_none() {
            continue;
        }
        let payload = change.notification().to_bytes();
        let version = change.version.to_string();
        for client in watchers {
            deliver(
                client,
                envelope::notification(
                    notify_topic(client, &change.key),
                    payload.clone(),
                    version.clone(),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use gatehouse_protocol::{QoS, UserProperty};

    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn store() -> (StateStore<impl WallClock>, Arc<AtomicU64>) {
        let now = Arc::new(AtomicU64::new(NOW));
        let reader = now.clone();
        let store = StateStore::with_clock(Quotas::keys(Some(3)), move || {
            reader.load(Ordering::Relaxed)
        });
        (store, now)
    }

    fn ts(ms: u64) -> String {
        format!("{ms:015}:00000:client")
    }

    struct Call {
        payload: &'static [u8],
        props: Vec<UserProperty>,
        client: &'static str,
    }

    fn call(payload: &'static [u8]) -> Call {
        Call {
            payload,
            props: vec![("__ts".into(), ts(NOW))],
            client: "c1",
        }
    }

    impl Call {
        fn prop(mut self, k: &str, v: &str) -> Self {
            self.props.retain(|(name, _)| name != k);
            self.props.push((k.into(), v.into()));
            self
        }

        fn by(mut self, client: &'static str) -> Self {
            self.client = client;
            self
        }

        fn run(&self, s: &StateStore<impl WallClock>) -> (Answer, Vec<(String, Message)>) {
            let mut sent = Vec::new();
            let payload = Bytes::from_static(self.payload);
            let answer = s.invoke(
                Invocation {
                    client_id: self.client,
                    payload: &payload,
                    user_properties: &self.props,
                },
                |_| true,
                |c, m| sent.push((c.to_owned(), m)),
            );
            (answer, sent)
        }
    }

    fn prop<'a>(answer: &'a [UserProperty], name: &str) -> Option<&'a str> {
        answer
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_reply_carries_stat_200_and_protocol_version() {
        let (s, _) = store();
        for payload in [
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            b"hello",
            b"*2\r\n$3\r\nFOO\r\n$1\r\nk\r\n",
        ] {
            let payload = Bytes::copy_from_slice(payload);
            let a = s.invoke(
                Invocation {
                    client_id: "c",
                    payload: &payload,
                    user_properties: &[("__ts".into(), ts(NOW))],
                },
                |_| true,
                |_, _| {},
            );
            assert_eq!(prop(&a.user_properties, "__stat"), Some("200"));
            assert_eq!(prop(&a.user_properties, "__protVer"), Some("1.0"));
        }
    }

    #[test]
    fn set_and_get_carry_the_same_version() {
        let (s, _) = store();
        let (set, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n").run(&s);
        assert_eq!(&set.payload[..], b"+OK\r\n");
        let v1 = prop(&set.user_properties, "__ts").unwrap().to_owned();
        assert!(v1.ends_with(":Gatehouse"), "{v1}");
        let (get, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").run(&s);
        assert_eq!(&get.payload[..], b"$1\r\nv\r\n");
        assert_eq!(prop(&get.user_properties, "__ts"), Some(v1.as_str()));
        let (miss, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nx\r\n").run(&s);
        assert_eq!(&miss.payload[..], b"$-1\r\n");
        assert_eq!(prop(&miss.user_properties, "__ts"), None);
    }

    #[test]
    fn unsupported_protocol_version_gets_505_without_payload() {
        let (s, _) = store();
        let (a, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
            .prop("__protVer", "2.0")
            .run(&s);
        assert!(a.payload.is_empty());
        assert_eq!(prop(&a.user_properties, "__stat"), Some("505"));
        assert_eq!(prop(&a.user_properties, "__supProtMajVer"), Some("1"));
        assert_eq!(prop(&a.user_properties, "__requestProtVer"), Some("2.0"));
        for ok in ["1.0", "1", "1.3"] {
            let (a, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
                .prop("__protVer", ok)
                .run(&s);
            assert_eq!(prop(&a.user_properties, "__stat"), Some("200"), "{ok}");
        }
    }

    #[test]
    fn denied_key_is_not_authorized_and_changes_nothing() {
        let (s, _) = store();
        let payload = Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        let props = vec![("__ts".to_owned(), ts(NOW))];
        let a = s.invoke(
            Invocation {
                client_id: "c",
                payload: &payload,
                user_properties: &props,
            },
            |action| matches!(action, Action::StateStore { write: false, .. }),
            |_, _| {},
        );
        assert_eq!(&a.payload[..], b"-ERR not authorized\r\n");
        assert!(s.is_empty());
    }

    #[test]
    fn scan_returns_only_readable_keys() {
        let (s, _) = store();
        for p in [
            &b"*3\r\n$3\r\nSET\r\n$2\r\na1\r\n$1\r\nv\r\n"[..],
            b"*3\r\n$3\r\nSET\r\n$2\r\na2\r\n$1\r\nv\r\n",
        ] {
            let payload = Bytes::copy_from_slice(p);
            s.invoke(
                Invocation {
                    client_id: "c",
                    payload: &payload,
                    user_properties: &[("__ts".into(), ts(NOW))],
                },
                |_| true,
                |_, _| {},
            );
        }
        let payload = Bytes::from_static(b"*2\r\n$4\r\nSCAN\r\n$2\r\na*\r\n");
        let a = s.invoke(
            Invocation {
                client_id: "c",
                payload: &payload,
                user_properties: &[],
            },
            |action| matches!(action, Action::StateStore { key, .. } if *key == b"a2"),
            |_, _| {},
        );
        assert_eq!(&a.payload[..], b"*1\r\n*1\r\n$2\r\na2\r\n");
    }

    #[test]
    fn watchers_get_set_and_delete_notifications_with_versions() {
        let (s, _) = store();
        let (a, _) = call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$7\r\nSOMEKEY\r\n")
            .by("client-id1")
            .run(&s);
        assert_eq!(&a.payload[..], b"+OK\r\n");
        let (set, sent) = call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nabc\r\n")
            .by("other")
            .run(&s);
        assert_eq!(sent.len(), 1);
        let (to, m) = &sent[0];
        assert_eq!(to, "client-id1");
        assert_eq!(
            m.topic,
            "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/636C69656E742D696431/command/notify/534F4D454B4559"
        );
        assert_eq!(
            &m.payload[..],
            b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$3\r\nabc\r\n"
        );
        assert_eq!(
            prop(&m.properties.user_properties, "__ts"),
            prop(&set.user_properties, "__ts")
        );
        let (_, sent) = call(b"*2\r\n$3\r\nDEL\r\n$7\r\nSOMEKEY\r\n").run(&s);
        assert_eq!(
            &sent[0].1.payload[..],
            b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
        );
        s.drop_client("client-id1");
        let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$7\r\nSOMEKEY\r\n$3\r\nabc\r\n").run(&s);
        assert!(sent.is_empty());
    }

    #[test]
    fn active_expiry_notifies_and_reports_the_next_deadline() {
        let (s, now) = store();
        call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n").run(&s);
        call(b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1000\r\n").run(&s);
        assert_eq!(
            s.expire_due(|_, _| panic!("nothing expired yet")),
            Some(NOW + 1000)
        );
        now.store(NOW + 1000, Ordering::Relaxed);
        let mut sent = Vec::new();
        assert_eq!(s.expire_due(|c, m| sent.push((c.to_owned(), m))), None);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            &sent[0].1.payload[..],
            b"*2\r\n$6\r\nNOTIFY\r\n$6\r\nDELETE\r\n"
        );
        assert!(s.is_empty());
    }

    /// A re-check keeps the registrations still readable and drops the others, which then
    /// get no notification.
    #[test]
    fn recheck_registrations_drops_keys_no_longer_readable() {
        let (s, _) = store();
        call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$4\r\nmine\r\n").run(&s);
        call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$6\r\ntheirs\r\n").run(&s);
        let reads_mine = |action: &Action<'_>| matches!(action, Action::StateStore { write: false, key } if *key == b"mine");
        assert_eq!(s.recheck_registrations("c1", reads_mine), 1);
        assert_eq!(s.recheck_registrations("c1", reads_mine), 0);
        assert_eq!(s.recheck_registrations("other", |_| false), 0);
        let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$6\r\ntheirs\r\n$1\r\nv\r\n").run(&s);
        assert!(sent.is_empty());
        let (_, sent) = call(b"*3\r\n$3\r\nSET\r\n$4\r\nmine\r\n$1\r\nv\r\n").run(&s);
        assert_eq!(sent.len(), 1);
    }

    /// Byte quotas through the service: the SDK's quota error, nothing stored.
    #[test]
    fn oversized_value_gets_the_quota_error() {
        let s = StateStore::new(Quotas {
            value_bytes: Some(2),
            ..Quotas::default()
        });
        let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nabc\r\n").run(&s);
        assert_eq!(&a.payload[..], b"-ERR the quota has been exceeded\r\n");
        assert!(s.is_empty());
        let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nab\r\n").run(&s);
        assert_eq!(&a.payload[..], b"+OK\r\n");
    }

    #[test]
    fn response_message_echoes_correlation_data() {
        let answer = Answer::reply(&Reply::Ok, Some("1:0:Gatehouse".into()));
        let m = answer.into_message("resp/t".into(), Some(Bytes::from_static(b"0123")));
        assert_eq!(m.topic, "resp/t");
        assert_eq!(m.qos, QoS::AtLeastOnce);
        assert!(!m.retain);
        assert_eq!(m.properties.correlation_data.as_deref(), Some(&b"0123"[..]));
        assert_eq!(m.properties.content_type.as_deref(), Some(CONTENT_TYPE));
    }

    /// Cluster mode's boundary, with an in-memory shared store that can let "another node"
    /// write the key between this node's read and its compare-and-set.
    mod shared_keys {
        use std::collections::HashMap;
        use std::sync::atomic::AtomicUsize;

        use futures_util::FutureExt as _;

        use super::super::shared::{Current, SharedError, SharedFuture, SharedKeys, Stored};
        use super::*;
        use crate::statestore::hlc::Hlc;

        #[derive(Default)]
        struct Fake {
            keys: Mutex<HashMap<Vec<u8>, (u64, Stored)>>,
            revision: AtomicU64,
            /// Written by another node right after each of the next reads.
            interfere: Mutex<Vec<Stored>>,
            /// Interfere after every read, forever.
            always: bool,
            writes: AtomicUsize,
        }

        impl Fake {
            fn put(&self, key: &[u8], record: Stored) {
                let rev = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
                self.keys.lock().insert(key.to_vec(), (rev, record));
            }

            fn stored(&self, key: &[u8]) -> Option<Stored> {
                self.keys.lock().get(key).map(|(_, s)| s.clone())
            }
        }

        impl SharedKeys for Fake {
            fn read<'a>(
                &'a self,
                key: &'a [u8],
                _deadline: std::time::Instant,
            ) -> SharedFuture<'a, Option<Current>> {
                Box::pin(std::future::ready(self.read_now(key)))
            }

            fn write<'a>(
                &'a self,
                key: &'a [u8],
                expected: Option<u64>,
                record: &'a Stored,
                _deadline: std::time::Instant,
            ) -> SharedFuture<'a, u64> {
                Box::pin(std::future::ready(self.write_now(key, expected, record)))
            }
        }

        impl Fake {
            fn read_now(&self, key: &[u8]) -> Result<Option<Current>, SharedError> {
                let current = self.keys.lock().get(key).map(|(revision, stored)| Current {
                    revision: *revision,
                    stored: Some(stored.clone()),
                });
                let next = if self.always {
                    current.as_ref().and_then(|c| c.stored.clone())
                } else {
                    self.interfere.lock().pop()
                };
                if let Some(other) = next {
                    self.put(key, other);
                }
                Ok(current)
            }

            fn write_now(
                &self,
                key: &[u8],
                expected: Option<u64>,
                record: &Stored,
            ) -> Result<u64, SharedError> {
                let mut keys = self.keys.lock();
                if keys.get(key).map(|(r, _)| *r) != expected {
                    return Err(SharedError::Conflict);
                }
                self.writes.fetch_add(1, Ordering::Relaxed);
                let rev = self.revision.fetch_add(1, Ordering::Relaxed) + 1;
                keys.insert(key.to_vec(), (rev, record.clone()));
                Ok(rev)
            }
        }

        fn entry(value: &'static [u8], version_ms: u64, token: Option<&str>) -> Stored {
            Stored::Live(Entry {
                value: Bytes::from_static(value),
                version: ts(version_ms).parse().unwrap(),
                fencing_token: token.map(|t| t.parse().unwrap()),
                expires_at_ms: None,
                persist: false,
                owner: Some(Arc::from("other")),
            })
        }

        fn clustered(fake: Fake) -> (StateStore<impl WallClock>, Arc<Fake>, Arc<AtomicU64>) {
            let (s, now) = store();
            let fake = Arc::new(fake);
            s.attach_shared(fake.clone());
            (s, fake, now)
        }

        #[test]
        fn set_nx_decides_again_after_losing_the_compare_and_set() {
            let (s, fake, _) = clustered(Fake::default());
            // Another node creates the key between this node's read and its write.
            fake.interfere.lock().push(entry(b"theirs", NOW, None));
            let (a, _) = call(b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nmine\r\n$2\r\nNX\r\n").run(&s);
            assert_eq!(&a.payload[..], b":-1\r\n");
            assert_eq!(fake.writes.load(Ordering::Relaxed), 0);
            assert_eq!(fake.stored(b"k"), Some(entry(b"theirs", NOW, None)));
            // Nothing in this node's own store.
            assert!(s.is_empty());
        }

        #[test]
        fn fencing_is_checked_against_the_fresh_token_after_a_conflict() {
            let (s, fake, _) = clustered(Fake::default());
            fake.put(b"k", entry(b"a", NOW, Some(&ts(NOW - 2000))));
            fake.interfere
                .lock()
                .push(entry(b"b", NOW, Some(&ts(NOW - 500))));
            let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nc\r\n")
                .prop("__ft", &ts(NOW - 1000))
                .run(&s);
            assert_eq!(
                &a.payload[..],
                &b"-ERR the request fencing token is a lower version than the fencing token protecting the resource\r\n"[..]
            );
            assert_eq!(fake.writes.load(Ordering::Relaxed), 0);
        }

        #[test]
        fn a_key_written_on_every_attempt_gets_503() {
            let (s, fake, _) = clustered(Fake {
                always: true,
                ..Fake::default()
            });
            fake.put(b"k", entry(b"a", NOW, None));
            let (a, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nc\r\n").run(&s);
            assert!(a.payload.is_empty());
            assert_eq!(prop(&a.user_properties, "__stat"), Some("503"));
            assert_eq!(fake.writes.load(Ordering::Relaxed), 0);
        }

        #[test]
        fn deletes_leave_a_versioned_marker_and_expired_keys_are_absent() {
            let (s, fake, now) = clustered(Fake::default());
            let (set, _) =
                call(b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1000\r\n")
                    .run(&s);
            assert_eq!(&set.payload[..], b"+OK\r\n");
            let (get, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").run(&s);
            assert_eq!(&get.payload[..], b"$1\r\nv\r\n");
            now.store(NOW + 1000, Ordering::Relaxed);
            let (get, _) = call(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").run(&s);
            assert_eq!(&get.payload[..], b"$-1\r\n");
            let Some(Stored::Deleted(deleted)) = fake.stored(b"k") else {
                panic!("the lazily expired key is deleted in the shared store");
            };
            let (del, _) = call(b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n").run(&s);
            assert_eq!(&del.payload[..], b":0\r\n");
            let (again, _) = call(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nw\r\n").run(&s);
            let version: Hlc = prop(&again.user_properties, "__ts")
                .unwrap()
                .parse()
                .unwrap();
            assert!(version > deleted, "{version} > {deleted}");
            // Active expiry: nothing to do for a live key without expiry.
            s.expire_shared(b"k").now_or_never().unwrap().unwrap();
            assert!(matches!(fake.stored(b"k"), Some(Stored::Live(_))));
        }

        /// SCAN in cluster mode lists the shared keys: this node's acknowledged writes at
        /// once, another node's once the watch delivered them (not this node's own store,
        /// empty in cluster mode).
        #[test]
        fn scan_lists_the_shared_keys_this_node_knows() {
            let (s, fake, _) = clustered(Fake::default());
            for p in [
                &b"*3\r\n$3\r\nSET\r\n$2\r\na2\r\n$1\r\nv\r\n"[..],
                b"*3\r\n$3\r\nSET\r\n$2\r\na1\r\n$1\r\nv\r\n",
            ] {
                let (a, _) = call(p).run(&s);
                assert_eq!(&a.payload[..], b"+OK\r\n");
            }
            // Another node's write, as the watch delivers it.
            fake.put(b"a3", entry(b"x", NOW, None));
            let revision = fake.revision.load(Ordering::Relaxed);
            s.seen_shared(b"a3", revision, Some(&entry(b"x", NOW, None)));
            let (a, _) = call(b"*2\r\n$4\r\nSCAN\r\n$2\r\na*\r\n").run(&s);
            assert_eq!(
                &a.payload[..],
                b"*1\r\n*3\r\n$2\r\na1\r\n$2\r\na2\r\n$2\r\na3\r\n"
            );
            let (del, _) = call(b"*2\r\n$3\r\nDEL\r\n$2\r\na2\r\n").run(&s);
            assert_eq!(&del.payload[..], b":1\r\n");
            let (a, _) = call(b"*2\r\n$4\r\nSCAN\r\n$2\r\na*\r\n").run(&s);
            assert_eq!(&a.payload[..], b"*1\r\n*2\r\n$2\r\na1\r\n$2\r\na3\r\n");
            assert_eq!(s.len(), 2, "the shared keys this node counts");
        }

        #[test]
        fn watch_changes_notify_this_nodes_watchers() {
            let (s, _, _) = clustered(Fake::default());
            call(b"*2\r\n$9\r\nKEYNOTIFY\r\n$1\r\nk\r\n")
                .by("w")
                .run(&s);
            let mut sent = Vec::new();
            s.notify_shared(b"k", &entry(b"x", NOW, None), |c, m| {
                sent.push((c.to_owned(), m))
            });
            s.notify_shared(b"other", &entry(b"x", NOW, None), |c, m| {
                sent.push((c.to_owned(), m))
            });
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0, "w");
            assert_eq!(
                &sent[0].1.payload[..],
                b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$1\r\nx\r\n"
            );
        }
    }
}
