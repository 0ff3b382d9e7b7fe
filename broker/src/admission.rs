//! Admission of accepted sockets: the connection cap (`maxConnections`, resizable while
//! running) and the pre-CONNECT budget (`maxPendingConnections`, also per source address).
//!
//! # The connection cap
//! A semaphore with one permit per allowed connection, taken right after `accept`. A
//! reload may lower the cap below the connections open at that moment: the free permits
//! go at once, and the rest of the shortfall is *retired* as those connections close
//! (their permits are forgotten instead of returned), so the cap ends at exactly the new
//! limit. Raising it first cancels what is still to be retired, then adds permits. The
//! number of live connections is tracked on its own, so "drained" at shutdown means that
//! no connection is left, whatever the cap.
//!
//! # The pre-CONNECT budget
//! A socket is *pending* from `accept` until its CONNECT has been authenticated and its
//! session attached: the TLS handshake, the WebSocket upgrade and CONNECT all count.
//! Pending connections hold a connection permit like any other, so at most
//! `maxPendingConnections` (itself at most `maxConnections`) of the permits can be held by
//! sockets that never send CONNECT, and at most `maxPendingConnectionsPerAddress` by one
//! source address (an IPv4 address or an IPv6 /64, since one host usually has a whole
//! /64). When a newcomer finds either budget full, the oldest pending connection of that
//! budget is closed to make room if it has been pending for at least [`EVICT_AFTER`];
//! otherwise the newcomer is closed at once. So silent sockets cannot lock clients out
//! for the connect deadline (an attacker would have to open a whole budget of sockets
//! every second), while a burst of real clients whose CONNECT is merely waiting to be
//! read is not thinned out by its own late arrivals.
//!
//! # The connect deadline
//! A pending connection still pending `connectTimeout` after `accept` is closed by one
//! sweeper for all of them ([`expire_pending`]), the same way as an eviction: no timer
//! per socket. A socket that never sends CONNECT then costs its task, its registration
//! with the runtime and its place here, and nothing that ticks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A pending connection younger than this is never closed to make room for a newer one:
/// a real client needs a round trip or two (TCP, TLS) to send CONNECT, and one the broker
/// has simply not served yet must not lose its place to later arrivals of the same burst.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------
// Connection cap
// ---------------------------------------------------------------------------------------

/// The connection cap across all ports. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    state: Mutex<CapState>,
    /// Connections holding a permit; shutdown waits for 0.
    live: watch::Sender<usize>,
}

#[derive(Debug)]
struct CapState {
    limit: usize,
    /// Permits of live connections that are forgotten, not returned, when they close:
    /// the part of a lowered limit that free permits could not cover.
    retire: usize,
}

impl ConnectionCap {
    pub fn new(limit: usize) -> Arc<ConnectionCap> {
        Arc::new(ConnectionCap {
            permits: Arc::new(Semaphore::new(limit)),
            state: Mutex::new(CapState { limit, retire: 0 }),
            live: watch::Sender::new(0),
        })
    }

    /// Wait for a permit; `None` once the cap is closed.
    pub async fn acquire(self: &Arc<Self>) -> Option<ConnectionPermit> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        self.live.send_modify(|n| *n += 1);
        Some(ConnectionPermit {
            cap: self.clone(),
            permit: Some(permit),
        })
    }

    /// Change the limit. Returns how many open connections are above it (they finish
    /// normally; their permits are retired as they close).
    pub fn resize(&self, limit: usize) -> usize {
        let mut st = self.state.lock();
        if limit > st.limit {
            let up = limit - st.limit;
            let cancelled = up.min(st.retire);
            st.retire -= cancelled;
            self.permits.add_permits(up - cancelled);
        } else if limit < st.limit {
            let down = st.limit - limit;
            let gone = self.permits.forget_permits(down);
            st.retire += down - gone;
        }
        st.limit = limit;
        st.retire
    }

    /// Connections holding a permit now.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Permits free now (for tests and diagnostics).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Resolves when no connection holds a permit.
    pub async fn drained(&self) {
        let mut rx = self.live.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

/// One connection's place under the cap; returned (or retired) on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    cap: Arc<ConnectionCap>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        {
            // Under the lock, so a concurrent resize sees either this permit in use or
            // its fate decided.
            let mut st = self.cap.state.lock();
            if let Some(permit) = self.permit.take() {
                if st.retire > 0 {
                    st.retire -= 1;
                    permit.forget();
                } else {
                    drop(permit);
                }
            }
        }
        self.cap.live.send_modify(|n| *n = n.saturating_sub(1));
    }
}

// ---------------------------------------------------------------------------------------
// Pre-CONNECT budget
// ---------------------------------------------------------------------------------------

/// What the per-address budget counts by: an IPv4 address, or the /64 of an IPv6 one
/// (IPv4-mapped IPv6 addresses count as their IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a new socket was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `maxPendingConnectionsPerAddress` reached by connections younger than [`EVICT_AFTER`].
    Address,
    /// `maxPendingConnections` reached by connections younger than [`EVICT_AFTER`].
    Total,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Address => "too many connections from this address have not sent CONNECT yet (maxPendingConnectionsPerAddress)",
            Refused::Total => "too many connections have not sent CONNECT yet (maxPendingConnections)",
        })
    }
}

/// Connections accepted and not yet through CONNECT, oldest first.
#[derive(Debug, Default)]
pub struct PendingConnections {
    state: Mutex<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    next: u64,
    /// By admission order (ids only grow), so the first entry is the oldest.
    by_age: BTreeMap<u64, Entry>,
    by_addr: HashMap<AddrKey, BTreeSet<u64>>,
}

#[derive(Debug)]
struct Entry {
    key: AddrKey,
    since: Instant,
    slot: Arc<SlotState>,
}

/// Shared between a [`PendingSlot`] and the [`Evictable`] stream of its connection.
#[derive(Debug, Default)]
pub struct SlotState {
    /// Closed to make room for a newer connection.
    evicted: AtomicBool,
    /// Closed by the sweeper: still pending at the connect deadline.
    expired: AtomicBool,
    /// No longer pending (CONNECT done, or the connection ended): eviction no longer applies.
    done: AtomicBool,
    waker: AtomicWaker,
}

impl PendingConnections {
    pub fn new() -> Arc<PendingConnections> {
        Arc::new(PendingConnections::default())
    }

    /// Admit a new socket from `peer` as pending, closing older pending connections to
    /// make room where the budgets allow (see the module documentation).
    pub fn admit(
        self: &Arc<Self>,
        peer: IpAddr,
        max_total: usize,
        max_per_address: usize,
    ) -> Result<PendingSlot, Refused> {
        self.admit_at(peer, max_total, max_per_address, Instant::now())
    }

    fn admit_at(
        self: &Arc<Self>,
        peer: IpAddr,
        max_total: usize,
        max_per_address: usize,
        now: Instant,
    ) -> Result<PendingSlot, Refused> {
        let key = AddrKey::of(peer);
        let old_enough = |e: &Entry| now.saturating_duration_since(e.since) >= EVICT_AFTER;
        let mut st = self.state.lock();
        // Decide first, so a refused newcomer costs nobody else their connection.
        let mut victims: Vec<u64> = Vec::new();
        if let Some(ids) = st.by_addr.get(&key) {
            let over = (ids.len() + 1).saturating_sub(max_per_address.max(1));
            victims.extend(ids.iter().take(over));
        }
        if !victims
            .iter()
            .all(|id| st.by_age.get(id).is_some_and(old_enough))
        {
            return Err(Refused::Address);
        }
        let over = (st.by_age.len() - victims.len() + 1).saturating_sub(max_total.max(1));
        let oldest: Vec<u64> = st
            .by_age
            .keys()
            .filter(|id| !victims.contains(id))
            .take(over)
            .copied()
            .collect();
        if !oldest
            .iter()
            .all(|id| st.by_age.get(id).is_some_and(old_enough))
        {
            return Err(Refused::Total);
        }
        for id in victims.into_iter().chain(oldest) {
            if let Some(entry) = st.remove(id) {
                entry.slot.evicted.store(true, Ordering::Release);
                entry.slot.waker.wake();
            }
        }
        let id = st.next;
        st.next += 1;
        let slot = Arc::new(SlotState::default());
        st.by_age.insert(
            id,
            Entry {
                key,
                since: now,
                slot: slot.clone(),
            },
        );
        st.by_addr.entry(key).or_default().insert(id);
        Ok(PendingSlot {
            registry: self.clone(),
            id,
            state: slot,
        })
    }

    /// Close the connections pending for `timeout` or longer at `now` (the connect
    /// deadline); returns how many. Entries are in admission order, so this stops at the
    /// first younger one: a look at the front when nothing is due.
    pub fn expire(&self, now: Instant, timeout: Duration) -> usize {
        let mut st = self.state.lock();
        let mut expired = 0;
        while let Some((&id, entry)) = st.by_age.first_key_value() {
            if now.saturating_duration_since(entry.since) < timeout {
                break;
            }
            if let Some(entry) = st.remove(id) {
                entry.slot.expired.store(true, Ordering::Release);
                entry.slot.waker.wake();
                expired += 1;
            }
        }
        expired
    }

    /// Connections pending now.
    pub fn len(&self) -> usize {
        self.state.lock().by_age.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PendingState {
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.by_age.remove(&id)?;
        if let Some(ids) = self.by_addr.get_mut(&entry.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_addr.remove(&entry.key);
            }
        }
        Some(entry)
    }
}

/// How often [`expire_pending`] looks: the connect deadline is kept to within this.
pub const EXPIRY_SWEEP: Duration = Duration::from_millis(100);

/// Close pending connections at the connect deadline (`timeout()`, read at every sweep so
/// a reload applies to connections already pending), until `pending` is dropped.
pub async fn expire_pending(
    pending: std::sync::Weak<PendingConnections>,
    timeout: impl Fn() -> Duration,
) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pending) = pending.upgrade() else {
            return;
        };
        pending.expire(Instant::now(), timeout());
    }
}

/// A connection's place in the pre-CONNECT budget; dropping it (CONNECT done, or the
/// connection gone) frees the place and ends the connection's exposure to eviction.
pub struct PendingSlot {
    registry: Arc<PendingConnections>,
    id: u64,
    state: Arc<SlotState>,
}

impl std::fmt::Debug for PendingSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSlot").field("id", &self.id).finish()
    }
}

impl PendingSlot {
    /// The state an [`Evictable`] stream watches.
    pub fn state(&self) -> Arc<SlotState> {
        self.state.clone()
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.state.done.store(true, Ordering::Release);
        // The waker registered while pending belongs to the task that read CONNECT,
        // which ends once CONNECT is answered: a waker kept here would keep that task's
        // memory allocated for the connection's whole life.
        drop(self.state.waker.take());
        self.registry.state.lock().remove(self.id);
    }
}

/// A stream that fails its reads and writes once its connection was closed to make room
/// for a newer one while still pending, so whatever stage it is in (TLS handshake,
/// WebSocket upgrade, CONNECT) ends at once and releases its permit.
pub struct Evictable<S> {
    inner: S,
    /// Let go of once the slot is done: a connected client no longer needs it.
    state: Option<Arc<SlotState>>,
}

impl<S> Evictable<S> {
    pub fn new(inner: S, state: Arc<SlotState>) -> Evictable<S> {
        Evictable {
            inner,
            state: Some(state),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        if state.done.load(Ordering::Acquire) {
            self.state = None;
            return Ok(());
        }
        state.waker.register(cx.waker());
        if state.done.load(Ordering::Acquire) {
            // The slot was dropped between the first check and the registration: take
            // the waker back (see `PendingSlot`'s drop).
            drop(state.waker.take());
            self.state = None;
            return Ok(());
        }
        if state.evicted.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a newer connection: no CONNECT in time while the pre-CONNECT limit was reached",
            ));
        }
        if state.expired.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "not connected by the connect deadline (connectTimeout)",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Evictable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Evictable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expire_closes_only_connections_past_the_deadline() {
        let pending = PendingConnections::new();
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let old = pending.admit_at(ip, 10, 10, t0).expect("admit");
        let young = pending
            .admit_at(ip, 10, 10, t0 + Duration::from_secs(5))
            .expect("admit");
        let timeout = Duration::from_secs(10);
        assert_eq!(pending.expire(t0 + Duration::from_secs(9), timeout), 0);
        assert_eq!(pending.expire(t0 + Duration::from_secs(10), timeout), 1);
        assert!(old.state.expired.load(Ordering::Acquire));
        assert!(!young.state.expired.load(Ordering::Acquire));
        assert_eq!(pending.len(), 1);
        // The expired connection's stream fails its next read or write.
        let mut stream = Evictable::new(tokio::io::empty(), old.state());
        let mut buf = [0u8; 4];
        let err = tokio::io::AsyncReadExt::read(&mut stream, &mut buf)
            .await
            .expect_err("expired");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(old);
        drop(young);
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn lowering_then_raising_the_cap_ends_at_the_new_limit() {
        let cap = ConnectionCap::new(4);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(cap.acquire().await.expect("permit"));
        }
        // 3 in use, 1 free: lowering to 1 forgets the free one and retires 2.
        assert_eq!(cap.resize(1), 2);
        assert_eq!(cap.available(), 0);
        held.pop();
        assert_eq!(
            cap.available(),
            0,
            "a closing connection above the limit is retired"
        );
        held.pop();
        assert_eq!(cap.available(), 0);
        held.pop();
        assert_eq!(cap.available(), 1, "back at the new limit");
        assert_eq!(cap.live(), 0);

        // Lower with connections open, then raise before they close.
        let a = cap.acquire().await.expect("permit");
        assert_eq!(cap.resize(0), 1);
        assert_eq!(
            cap.resize(3),
            0,
            "raising cancels what was still to be retired"
        );
        assert_eq!(cap.available(), 2);
        drop(a);
        assert_eq!(cap.available(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn drained_waits_for_every_connection() {
        let cap = ConnectionCap::new(2);
        let a = cap.acquire().await.expect("permit");
        let b = cap.acquire().await.expect("permit");
        cap.resize(1);
        drop(a);
        let waiting = tokio::time::timeout(Duration::from_millis(50), cap.drained()).await;
        assert!(waiting.is_err(), "one connection is still open");
        drop(b);
        tokio::time::timeout(Duration::from_millis(50), cap.drained())
            .await
            .expect("drained");
    }

    #[test]
    fn a_full_budget_closes_the_oldest_only_once_it_is_old_enough() {
        let pending = PendingConnections::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = pending.admit(a, 2, 2).expect("room");
        let _second = pending.admit(a, 2, 2).expect("room");
        assert_eq!(pending.admit(b, 2, 2).unwrap_err(), Refused::Total);
        let later = Instant::now() + EVICT_AFTER;
        let _third = pending
            .admit_at(b, 2, 2, later)
            .expect("the oldest makes room");
        assert!(first.state.evicted.load(Ordering::Acquire));
        assert_eq!(pending.len(), 2);
        drop(first);
        assert_eq!(pending.len(), 2, "an evicted slot was already removed");
    }

    #[test]
    fn the_per_address_budget_evicts_that_address_only() {
        let pending = PendingConnections::new();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let a2: IpAddr = "2001:db8::2".parse().unwrap(); // same /64
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let other = pending.admit(b, 10, 1).expect("room");
        let first = pending.admit(a, 10, 1).expect("room");
        assert_eq!(pending.admit(a2, 10, 1).unwrap_err(), Refused::Address);
        let later = Instant::now() + EVICT_AFTER;
        let _second = pending.admit_at(a2, 10, 1, later).expect("room");
        assert!(first.state.evicted.load(Ordering::Acquire));
        assert!(!other.state.evicted.load(Ordering::Acquire));
    }
}
