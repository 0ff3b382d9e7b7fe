//! The connection's log lines (issue 16): the connect and disconnect lines and the
//! authorization denials, at info, each with the client id and the peer address.
//!
//! No `tracing` span carries that context: a span per connection cost about 390 bytes per
//! connected client in the subscriber's registry (the idle-connection budget is 2 KB), so
//! the few lines a connection writes name the client themselves.
//!
//! What a client wrote (client id, user name, topics, reason strings) goes into fields as
//! `&str` values, never into the message: the text format writes them quoted and escaped
//! (`"a\nb"`), JSON as JSON strings, so a line break in a client id cannot forge a line.
//! Passwords, authentication data and tokens are never logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use gatehouse_protocol::{ProtocolVersion, ReasonCode};

use super::Connection;
use crate::authz::Action;

/// Denial lines per connection per second; further denials in the same second are counted
/// and the count is reported on the next denial line (`suppressed`) or on the disconnect
/// line (`denials_suppressed`). A client hammering a denied topic writes at most this many
/// lines a second.
pub(super) const DENIALS_PER_SECOND: u32 = 5;

/// A connection's denial-line budget. Atomics (12 bytes) because `Connection::allowed`
/// takes `&self`; only the connection's own task touches them.
#[derive(Debug, Default)]
pub(super) struct DenialLog {
    /// The second (since the process started) of `count`.
    window: AtomicU32,
    /// Denials in that second.
    count: AtomicU32,
    /// Denials not logged since the last line that was.
    suppressed: AtomicU32,
}

impl DenialLog {
    /// Whether to log this denial; with the count of denials not logged before it.
    fn admit(&self) -> Option<u32> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_secs() as u32;
        if self.window.load(Ordering::Relaxed) != now {
            self.window.store(now, Ordering::Relaxed);
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < DENIALS_PER_SECOND {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Denials not logged yet (for the disconnect line).
    pub(super) fn suppressed(&self) -> u32 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// `5` or `3.1.1`.
pub(super) fn protocol(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V5 => "5",
        ProtocolVersion::V311 => "3.1.1",
    }
}

/// `0x8D`: the code alone, for a field (its name goes into `reason`).
pub(super) fn code(rc: ReasonCode) -> String {
    format!("0x{:02X}", rc.0)
}

/// The action's name and the topic, filter or key it is about.
fn describe(action: &Action<'_>) -> (&'static str, Option<String>) {
    match action {
        Action::Connect => ("connect", None),
        Action::Publish(topic) => ("publish", Some((*topic).to_owned())),
        Action::Subscribe(filter) => ("subscribe", Some((*filter).to_owned())),
        Action::StateStore { write, key } => (
            if *write {
                "statestore-write"
            } else {
                "statestore-read"
            },
            Some(String::from_utf8_lossy(key).into_owned()),
        ),
    }
}

/// Log a denial at info: who (principal user name, client id, peer), what (action and
/// topic) and why. Not rate limited: for CONNECT, which happens once per connection.
pub(super) fn denied(
    client_id: &str,
    username: Option<&str>,
    peer: SocketAddr,
    action: &Action<'_>,
    reason: &str,
    suppressed: u32,
) {
    let (action, topic) = describe(action);
    tracing::info!(
        target: "authz",
        client_id,
        username,
        peer = %peer,
        action,
        topic = topic.as_deref(),
        reason,
        suppressed = (suppressed > 0).then_some(suppressed),
        "denied {action}"
    );
}

impl Connection {
    /// Log a denial of `action`, within the connection's [`DENIALS_PER_SECOND`].
    pub(super) fn log_denial(&self, action: &Action<'_>, reason: &str) {
        if !tracing::enabled!(target: "authz", tracing::Level::INFO) {
            return;
        }
        if let Some(suppressed) = self.denials.admit() {
            denied(
                &self.client_id,
                self.principal.as_ref().and_then(|p| p.username.as_deref()),
                self.peer,
                action,
                reason,
                suppressed,
            );
        }
    }
}
