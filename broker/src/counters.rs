//! The counter primitives: plain atomics bumped where the events happen, read only when
//! `/metrics` is scraped, and the counters of a listening port.
//!
//! A leaf: nothing here imports the rest of the crate. Each domain keeps its own counters
//! next to the events they count ([`crate::auth::counters`], [`crate::authz::counters`],
//! [`crate::statestore::counters`]), built from these primitives; `metrics` only reads and
//! renders them.
//!
//! Everything here is on or near the hot path, so a count is one relaxed atomic add on a
//! counter resolved before the event (a port's counters once per connection, a chain's or
//! a policy's once when it is built): no map lookup, no lock, no allocation. Relaxed is
//! enough because nothing is ordered by these values; a scrape only needs each counter to
//! be monotonic, which a single atomic is.

use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_protocol::QoS;

/// A count that only goes up (Prometheus `counter`).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A count that goes up and down (Prometheus `gauge`), such as open connections.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Only ever paired with an earlier [`Gauge::inc`], so it never goes below zero.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One counter per QoS level, indexed by the QoS value.
#[derive(Debug, Default)]
pub struct PerQos([Counter; 3]);

impl PerQos {
    #[inline]
    pub fn inc(&self, qos: QoS) {
        self.0[qos as usize].inc();
    }

    pub fn get(&self, qos: QoS) -> u64 {
        self.0[qos as usize].get()
    }
}

/// The counters of one listening port (`listener`, `port` labels). A connection holds an
/// `Arc` to its port's counters from accept to close, so counting never looks anything up.
///
/// The groups are aligned to 128 bytes (two cache lines: x86 prefetches lines in pairs)
/// so that publishers bumping `inbound` and subscribers bumping `outbound` on other cores
/// do not fight over one cache line.
#[derive(Debug, Default)]
pub struct PortMetrics {
    pub listener: String,
    /// The port number clients connect to (the bound one when configured as 0).
    pub port: u16,
    pub connections: Connections,
    pub inbound: Inbound,
    pub outbound: Outbound,
}

#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Connections {
    /// TCP connections accepted (before TLS, WebSocket upgrade or CONNECT).
    pub accepted: Counter,
    /// TCP connections open now.
    pub open: Gauge,
}

/// What clients send on this port.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Inbound {
    /// PUBLISH packets received, by their QoS (denied and state store requests included).
    pub messages: PerQos,
    /// Bytes read from client sockets (TLS and WebSocket framing included).
    pub bytes: Counter,
}

/// What this port sends to clients.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Outbound {
    /// PUBLISH packets written, by their QoS (retransmissions included).
    pub messages: PerQos,
    /// Bytes written to client sockets (TLS and WebSocket framing included).
    pub bytes: Counter,
    /// Deliveries whose message expired while queued.
    pub expired: Counter,
    /// Deliveries discarded as larger than the client's Maximum Packet Size.
    pub too_large: Counter,
    /// Queued or in-flight deliveries dropped because the principal now holding the
    /// session may no longer receive them (resumed session, re-authentication, reload).
    pub not_authorized: Counter,
    /// Stored subscriptions removed for the same reason.
    pub subscriptions_revoked: Counter,
}

impl PortMetrics {
    pub fn new(listener: &str, port: u16) -> PortMetrics {
        PortMetrics {
            listener: listener.to_owned(),
            port,
            ..Default::default()
        }
    }
}
