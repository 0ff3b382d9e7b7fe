//! The counters themselves: plain atomics bumped where the events happen, read only when
//! `/metrics` is scraped.
//!
//! Everything here is on or near the hot path, so a count is one relaxed atomic add on a
//! counter resolved before the event (a port's counters once per connection, a chain's or
//! a policy's once when it is built): no map lookup, no lock, no allocation. Relaxed is
//! enough because nothing is ordered by these values; a scrape only needs each counter to
//! be monotonic, which a single atomic is.

use std::sync::atomic::{AtomicU64, Ordering};

use gatehouse_protocol::QoS;

use crate::auth::{Outcome, Reauth};
use crate::authz::{Action, Decision};
use crate::statestore::service::{Answer, AnswerKind};
use crate::statestore::{ErrorReply, Request};

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

/// What one method of an authentication chain decided.
#[derive(Debug, Default)]
pub struct MethodCounters {
    pub accepted: Counter,
    pub rejected: Counter,
    /// Re-authentication (AUTH 0x19) answers: AUTH 0x00, AUTH 0x18 (try again), DISCONNECT.
    pub reauth_success: Counter,
    pub reauth_retry: Counter,
    pub reauth_failure: Counter,
}

/// The outcomes of one authentication chain: one [`MethodCounters`] per method, in chain
/// order, and a last one for credentials that no method was relevant to.
#[derive(Debug)]
pub struct AuthCounters(Box<[MethodCounters]>);

impl AuthCounters {
    pub fn new(methods: usize) -> AuthCounters {
        AuthCounters((0..=methods).map(|_| MethodCounters::default()).collect())
    }

    /// Method `index` decided the CONNECT.
    pub fn decided(&self, index: usize, outcome: &Outcome) {
        let m = self.method(index);
        match outcome {
            Outcome::Accepted(_) => m.accepted.inc(),
            Outcome::Rejected(..) => m.rejected.inc(),
        }
    }

    /// No method was relevant to the credentials: rejected.
    pub fn none_relevant(&self) {
        self.none().rejected.inc();
    }

    /// Method `index` answered a re-authentication; `None` when no method handled it.
    pub fn reauthenticated(&self, index: Option<usize>, answer: &Reauth) {
        let m = index.map_or(self.none(), |i| self.method(i));
        match answer {
            Reauth::Success(_) => m.reauth_success.inc(),
            Reauth::Continue(_) => m.reauth_retry.inc(),
            Reauth::Failed(..) => m.reauth_failure.inc(),
        }
    }

    /// Method `index`'s counters (an index past the last method gives [`Self::none`]).
    pub fn method(&self, index: usize) -> &MethodCounters {
        &self.0[index.min(self.0.len() - 1)]
    }

    /// The counters of credentials no method was relevant to.
    pub fn none(&self) -> &MethodCounters {
        &self.0[self.0.len() - 1]
    }
}

/// The action kinds of authorization, as `action` label values.
pub const AUTHZ_ACTIONS: [&str; 5] = [
    "connect",
    "publish",
    "subscribe",
    "statestore_read",
    "statestore_write",
];

fn action_index(action: &Action<'_>) -> usize {
    match action {
        Action::Connect => 0,
        Action::Publish(_) => 1,
        Action::Subscribe(_) => 2,
        Action::StateStore { write: false, .. } => 3,
        Action::StateStore { write: true, .. } => 4,
    }
}

/// The checks of one authorization policy; they survive policy reloads (the decision
/// cache does not), so the counters stay monotonic.
#[derive(Debug, Default)]
pub struct AuthzCounters {
    /// Denials by action, indexed like [`AUTHZ_ACTIONS`].
    pub denied: [Counter; 5],
    pub cache_hits: Counter,
    pub cache_misses: Counter,
}

impl AuthzCounters {
    #[inline]
    pub fn decided(&self, action: &Action<'_>, decision: &Decision) {
        if !decision.allowed {
            self.denied[action_index(action)].inc();
        }
    }

    #[inline]
    pub fn cache_lookup(&self, hit: bool) {
        if hit {
            self.cache_hits.inc();
        } else {
            self.cache_misses.inc();
        }
    }
}

/// A state store command, for the `command` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateStoreCommand {
    Get,
    Set,
    Del,
    VDel,
    KeyNotify,
    Scan,
}

impl StateStoreCommand {
    pub fn of(request: &Request) -> StateStoreCommand {
        match request {
            Request::Get { .. } => StateStoreCommand::Get,
            Request::Set { .. } => StateStoreCommand::Set,
            Request::Del { .. } => StateStoreCommand::Del,
            Request::VDel { .. } => StateStoreCommand::VDel,
            Request::KeyNotify { .. } => StateStoreCommand::KeyNotify,
            Request::Scan { .. } => StateStoreCommand::Scan,
        }
    }
}

/// State store commands, as `command` label values, indexed like [`StateStoreCommand`];
/// `unknown` last, for payloads that did not parse (or requests refused before parsing,
/// for their protocol version).
pub const STATE_STORE_COMMANDS: [&str; 7] =
    ["get", "set", "del", "vdel", "keynotify", "scan", "unknown"];

/// State store results, as `result` label values: `ok` (any non-error RESP3 reply, a
/// failed SET NX condition included), `denied` (key authorization), `error` (any other
/// `-ERR` reply) and `unsupported_version` (`__stat` 505).
pub const STATE_STORE_RESULTS: [&str; 4] = ["ok", "denied", "error", "unsupported_version"];

/// State store requests by command and result.
#[derive(Debug, Default)]
pub struct StateStoreCounters([[Counter; 4]; 7]);

impl StateStoreCounters {
    /// Count one answered request; `command` is `None` when the request never parsed.
    pub fn record(&self, command: Option<StateStoreCommand>, answer: &Answer) {
        let result = match answer.kind {
            AnswerKind::Reply => 0,
            AnswerKind::Error(ErrorReply::NotAuthorized) => 1,
            AnswerKind::Error(_) => 2,
            AnswerKind::UnsupportedVersion => 3,
        };
        let command = command.map_or(STATE_STORE_COMMANDS.len() - 1, |c| c as usize);
        self.0[command][result].inc();
    }

    /// The count for `STATE_STORE_COMMANDS[command]` and `STATE_STORE_RESULTS[result]`.
    pub fn get(&self, command: usize, result: usize) -> u64 {
        self.0[command][result].get()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::statestore::service::Invocation;
    use crate::statestore::StateStore;

    fn run(store: &StateStore, payload: &'static [u8], props: &[(&str, &str)], allow: bool) {
        let user_properties: Vec<_> = props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        store.invoke(
            Invocation {
                client_id: "c",
                payload: &Bytes::from_static(payload),
                user_properties: &user_properties,
            },
            |_| allow,
            |_, _| {},
        );
    }

    fn count(store: &StateStore, command: &str, result: &str) -> u64 {
        let c = STATE_STORE_COMMANDS.iter().position(|x| *x == command);
        let r = STATE_STORE_RESULTS.iter().position(|x| *x == result);
        store.requests.get(c.expect("command"), r.expect("result"))
    }

    #[test]
    fn state_store_requests_are_counted_by_command_and_result() {
        let store = StateStore::new(Default::default());
        let ts = format!("{}:0:c", store.now_ms());
        let set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        run(&store, set, &[("__ts", &ts)], true);
        run(&store, set, &[("__ts", &ts)], false);
        run(&store, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &[], true);
        run(&store, set, &[("__ts", "not a timestamp")], true);
        run(&store, b"*1\r\n$4\r\nNOPE\r\n", &[], true);
        run(&store, set, &[("__protVer", "2.0")], true);
        assert_eq!(count(&store, "set", "ok"), 1);
        assert_eq!(count(&store, "set", "denied"), 1);
        assert_eq!(count(&store, "get", "ok"), 1);
        // A malformed `__ts` is refused by the stamp checks: an -ERR reply.
        assert_eq!(count(&store, "set", "error"), 1);
        assert_eq!(count(&store, "unknown", "error"), 1);
        assert_eq!(count(&store, "unknown", "unsupported_version"), 1);
    }

    #[test]
    fn chain_counters_keep_a_slot_for_no_relevant_method() {
        let c = AuthCounters::new(2);
        c.none_relevant();
        c.method(1).accepted.inc();
        assert_eq!(c.none().rejected.get(), 1);
        assert_eq!(c.method(1).accepted.get(), 1);
        // Past the last method is the "none" slot, never out of bounds.
        assert_eq!(c.method(9).rejected.get(), 1);
    }
}
