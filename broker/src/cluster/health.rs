//! What a node does when NATS fails under it (issue 15, "Failure handling").
//!
//! Two things are watched, each with the grace `cluster.nats.disconnectGrace`:
//!
//! - **The NATS connection** (async-nats' connection events). Losing one server is
//!   normal: the client reconnects to another one within milliseconds. When no server
//!   has been reachable for the grace, the node is *cut off*: every other node may have
//!   taken its clients' sessions, messages and keys on since, so it stops serving stale
//!   state. It disconnects every MQTT client (v5: DISCONNECT 0x89 Server busy, the
//!   DISCONNECT code for "try again later"; 3.1.1: the socket closes) and answers every
//!   CONNECT with CONNACK 0x88 Server unavailable (3.1.1: return code 3) until the
//!   connection is back, then accepts again at once. Clients are expected to reconnect,
//!   through the load balancer, to a node that still has NATS.
//! - **JetStream** (what needs storage: retained messages, the state store). The node
//!   asks the retained messages' stream for its info every [`PROBE_EVERY`]. Only the
//!   stream's Raft leader answers, and it says when it last heard from each replica: no
//!   answer, or a leader that has not heard from a majority for [`PEER_SILENT`], means
//!   the bucket cannot take writes (its servers lost their quorum, or the connection is
//!   down). After the grace without quorum, retained PUBLISHes are refused (v5 QoS 1/2: PUBACK/PUBREC 0x80 Unspecified
//!   error, and the message is not delivered, so that the publisher's retry is the only
//!   copy; QoS 0 and 3.1.1: delivered but not retained, as with `maxRetainedMessages`).
//!   Core NATS forwarding does not need JetStream and keeps flowing.
//!
//! The node does not leave the cut-off state on a timer: only a new connection to NATS
//! ends it, so a flapping network cannot let a client in between two losses.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use gatehouse_protocol::ReasonCode;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::registry::Broker;

/// How often JetStream is asked whether the retained bucket has a leader.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How long one probe may take before it counts as no answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the NATS client pings its server: a server that stops answering (a network
/// partition, no TCP reset) is given up after three unanswered pings, so within about
/// 6 s rather than async-nats' default of 3 minutes.
pub const PING_INTERVAL: Duration = Duration::from_secs(2);

/// The v5 DISCONNECT reason sent to the clients of a node cut off from NATS.
pub const CUT_OFF_DISCONNECT: ReasonCode = ReasonCode::SERVER_BUSY;

/// The CONNACK reason while a node is cut off from NATS (3.1.1: return code 3).
pub const CUT_OFF_CONNACK: ReasonCode = ReasonCode::SERVER_UNAVAILABLE;

/// What the connection events say, passed from async-nats' event callback to the
/// watching task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Up,
    Down,
}

/// The node's view of NATS, read on every CONNECT and retained PUBLISH.
#[derive(Debug)]
pub struct Health {
    /// NATS lost for longer than the grace: clients disconnected, CONNECTs refused.
    cut_off: AtomicBool,
    /// JetStream has not answered for longer than the grace.
    storage_lost: AtomicBool,
    grace: Duration,
}

impl Health {
    pub(super) fn new(grace: Duration) -> Arc<Health> {
        Arc::new(Health {
            cut_off: AtomicBool::new(false),
            storage_lost: AtomicBool::new(false),
            grace,
        })
    }

    /// Whether a CONNECT may be accepted (false while cut off from NATS).
    pub fn accepts_clients(&self) -> bool {
        !self.cut_off.load(Ordering::Acquire)
    }

    /// Whether JetStream takes writes (as far as the last probes tell).
    pub fn storage_available(&self) -> bool {
        !self.storage_lost.load(Ordering::Acquire) && self.accepts_clients()
    }

    /// `cluster.nats.disconnectGrace`.
    pub fn grace(&self) -> Duration {
        self.grace
    }
}

/// Start the two watching tasks. `events` carries what async-nats' event callback saw;
/// `retained_stream` is the retained bucket's stream (probed for a leader). Both tasks end
/// with the broker.
pub(super) fn start(
    health: &Arc<Health>,
    client: async_nats::Client,
    events: mpsc::UnboundedReceiver<Link>,
    retained_stream: String,
    broker: Weak<Broker>,
) {
    tokio::spawn(watch_link(
        health.clone(),
        client.clone(),
        events,
        broker.clone(),
    ));
    tokio::spawn(probe_storage(
        health.clone(),
        client,
        retained_stream,
        broker,
    ));
}

/// Follows the connection events: arms the grace when the connection drops, cuts the
/// node off when it runs out, and lets clients in again when NATS is back.
async fn watch_link(
    health: Arc<Health>,
    client: async_nats::Client,
    mut events: mpsc::UnboundedReceiver<Link>,
    broker: Weak<Broker>,
) {
    let mut down_since: Option<Instant> = None;
    let mut sweep = tokio::time::interval(PROBE_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cut_off = !health.accepts_clients();
        let deadline = down_since
            .filter(|_| !cut_off)
            .map(|since| since + health.grace);
        tokio::select! {
            event = events.recv() => match event {
                None => return,
                Some(Link::Down) => {
                    down_since.get_or_insert_with(Instant::now);
                }
                Some(Link::Up) => {
                    if let (true, Some(since)) = (cut_off, down_since) {
                        tracing::warn!(
                            target: "cluster",
                            after = ?since.elapsed(),
                            "NATS is back: accepting MQTT clients again"
                        );
                    }
                    down_since = None;
                    health.cut_off.store(false, Ordering::Release);
                }
            },
            () = sleep_until(deadline) => {
                if client.connection_state() == async_nats::connection::State::Connected {
                    // Reconnected; its event is on its way.
                    down_since = None;
                    continue;
                }
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                health.cut_off.store(true, Ordering::Release);
                let kicked = broker.disconnect_all(CUT_OFF_DISCONNECT);
                tracing::error!(
                    target: "cluster",
                    grace = ?health.grace,
                    disconnected = kicked,
                    "cut off from NATS: MQTT clients disconnected (0x89) and CONNECTs refused (0x88) until it is back"
                );
            }
            _ = sweep.tick() => {
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                if cut_off {
                    // A CONNECT that passed its check just before the node was cut off.
                    broker.disconnect_all(CUT_OFF_DISCONNECT);
                }
            }
        }
    }
}

/// Asks for the retained stream's info every [`PROBE_EVERY`] and marks storage lost after
/// the grace without an answer.
async fn probe_storage(
    health: Arc<Health>,
    client: async_nats::Client,
    stream: String,
    broker: Weak<Broker>,
) {
    let js = async_nats::jetstream::new(client);
    let mut failing_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if broker.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        let answered = match tokio::time::timeout(PROBE_TIMEOUT, js.get_stream(&stream)).await {
            Ok(Ok(s)) => {
                let info = s.cached_info();
                has_quorum(info.config.num_replicas, info.cluster.as_ref())
            }
            _ => false,
        };
        let lost = health.storage_lost.load(Ordering::Acquire);
        if answered {
            failing_since = None;
            if lost {
                tracing::warn!(target: "cluster", "JetStream answers again: retained messages accepted");
                health.storage_lost.store(false, Ordering::Release);
            }
            continue;
        }
        // Unanswered since this probe was sent, not since its timeout.
        let since = *failing_since.get_or_insert(started);
        if !lost && since.elapsed() >= health.grace {
            tracing::error!(
                target: "cluster",
                grace = ?health.grace,
                "JetStream does not answer (no quorum?): retained PUBLISHes refused until it does"
            );
            health.storage_lost.store(true, Ordering::Release);
        }
    }
}

/// How long a replica of the probed stream may be silent (its leader has not heard from
/// it) and still count towards a quorum. Raft heartbeats come every second; JetStream
/// itself marks a replica not current only after 10 s, and a leader whose followers are
/// gone goes on answering stream info as leader.
const PEER_SILENT: Duration = Duration::from_secs(3);

/// Whether the leader of a stream of `replicas` copies hears from a majority of them
/// (itself included).
fn has_quorum(
    replicas: usize,
    cluster: Option<&async_nats::jetstream::stream::ClusterInfo>,
) -> bool {
    let replicas = replicas.max(1);
    let Some(cluster) = cluster else {
        // Not clustered: the server that answered holds it.
        return true;
    };
    if cluster.leader.is_none() {
        return false;
    }
    let heard = cluster
        .replicas
        .iter()
        .filter(|p| !p.offline && p.active < PEER_SILENT)
        .count();
    (1 + heard) * 2 > replicas
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the leader of an R3 stream says, its replicas last heard `active` ago
    /// (nanoseconds, as the server writes them).
    fn quorum(leader: Option<&str>, active: [u64; 2], offline: bool) -> bool {
        let json = serde_json::json!({
            "name": "c",
            "leader": leader,
            "replicas": [
                { "name": "n2", "current": true, "active": active[0], "offline": offline },
                { "name": "n3", "current": true, "active": active[1] }
            ]
        });
        let cluster: async_nats::jetstream::stream::ClusterInfo =
            serde_json::from_value(json).expect("a stream's cluster info");
        has_quorum(3, Some(&cluster))
    }

    #[test]
    fn quorum_needs_a_leader_that_hears_a_majority() {
        let second = 1_000_000_000;
        assert!(quorum(Some("n1"), [second / 2, second / 2], false));
        // One replica silent: the leader and the other still make two of three.
        assert!(quorum(Some("n1"), [second / 2, 9 * second], false));
        // Both silent (killed) for longer than PEER_SILENT: the leader alone.
        assert!(!quorum(Some("n1"), [4 * second, 4 * second], false));
        assert!(!quorum(Some("n1"), [second / 2, 9 * second], true));
        assert!(!quorum(None, [0, 0], false));
    }
}
