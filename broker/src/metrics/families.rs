//! The metric families, domain by domain (ports, sessions and routing, authentication,
//! authorization, the state store, certificates, the runtime): each reads the counters or
//! gauges its domain keeps and writes them in the exposition. [`Registry::render`] (in the
//! parent) calls them in order; the family names and help texts are in
//! `docs/operations.md`.

use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_protocol::QoS;

use super::render::{Exposition, Kind};
use super::Registry;
use crate::auth::counters::MethodCounters;
use crate::authz::counters::AUTHZ_ACTIONS;
use crate::counters::PortMetrics;
use crate::statestore::counters::{STATE_STORE_COMMANDS, STATE_STORE_RESULTS};

impl Registry {
    pub(super) fn render_ports(&self, e: &mut Exposition) {
        // One family at a time: all samples of a family must be contiguous.
        let per_port = |e: &mut Exposition,
                        name: &'static str,
                        kind: Kind,
                        help: &str,
                        value: &dyn Fn(&PortMetrics) -> u64| {
            let mut f = e.family(name, kind, help);
            for p in &self.ports {
                let c = &p.counters;
                let port = c.port.to_string();
                f.sample(&[("listener", &c.listener), ("port", &port)], value(c));
            }
        };
        per_port(
            e,
            "gatehouse_connections_accepted_total",
            Kind::Counter,
            "TCP connections accepted, by listener and port (before TLS, WebSocket upgrade and CONNECT).",
            &|c| c.connections.accepted.get(),
        );
        per_port(
            e,
            "gatehouse_connections",
            Kind::Gauge,
            "TCP connections open now, by listener and port.",
            &|c| c.connections.open.get(),
        );
        let per_qos = |e: &mut Exposition,
                       name: &'static str,
                       help: &str,
                       value: &dyn Fn(&PortMetrics, QoS) -> u64| {
            let mut f = e.family(name, Kind::Counter, help);
            for p in &self.ports {
                let c = &p.counters;
                let port = c.port.to_string();
                for (qos, label) in [
                    (QoS::AtMostOnce, "0"),
                    (QoS::AtLeastOnce, "1"),
                    (QoS::ExactlyOnce, "2"),
                ] {
                    f.sample(
                        &[("listener", &c.listener), ("port", &port), ("qos", label)],
                        value(c, qos),
                    );
                }
            }
        };
        per_qos(
            e,
            "gatehouse_messages_received_total",
            "PUBLISH packets received from clients, by listener, port and QoS.",
            &|c, q| c.inbound.messages.get(q),
        );
        per_qos(
            e,
            "gatehouse_messages_sent_total",
            "PUBLISH packets sent to clients, by listener, port and QoS (retransmissions included).",
            &|c, q| c.outbound.messages.get(q),
        );
        per_port(
            e,
            "gatehouse_received_bytes_total",
            Kind::Counter,
            "Bytes read from client connections, by listener and port (TLS and WebSocket framing included).",
            &|c| c.inbound.bytes.get(),
        );
        per_port(
            e,
            "gatehouse_sent_bytes_total",
            Kind::Counter,
            "Bytes written to client connections, by listener and port (TLS and WebSocket framing included).",
            &|c| c.outbound.bytes.get(),
        );
    }

    pub(super) fn render_broker(&self, e: &mut Exposition) {
        let b = &self.broker;
        let stats = &b.router.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        e.family(
            "gatehouse_messages_routed_total",
            Kind::Counter,
            "Messages routed to subscribers (client PUBLISHes, wills, state store answers).",
        )
        .sample(&[], load(&stats.messages_routed));
        e.family(
            "gatehouse_deliveries_queued_total",
            Kind::Counter,
            "Copies of messages queued for subscribing sessions.",
        )
        .sample(&[], load(&stats.deliveries_queued));
        let (expired, too_large, not_authorized, revoked) =
            self.ports.iter().fold((0, 0, 0, 0), |(x, t, n, r), p| {
                let o = &p.counters.outbound;
                (
                    x + o.expired.get(),
                    t + o.too_large.get(),
                    n + o.not_authorized.get(),
                    r + o.subscriptions_revoked.get(),
                )
            });
        e.family(
            "gatehouse_messages_dropped_total",
            Kind::Counter,
            "Deliveries dropped, by reason: queue_full (QoS 0 past the queue limit or to an offline session, QoS 1/2 refused by a full queue; full by subscriberQueueLimit length or maxBytes), queue_full_oldest (each oldest queued message dropped for a new one, DropOldest), expired (message expiry while queued), too_large (over the client's Maximum Packet Size), not_authorized (no longer allowed for the principal holding the session, re-checked on resume, re-authentication and reload).",
        )
        .sample(&[("reason", "queue_full")], load(&stats.dropped))
        .sample(&[("reason", "queue_full_oldest")], load(&stats.dropped_oldest))
        .sample(&[("reason", "expired")], expired)
        .sample(&[("reason", "too_large")], too_large)
        .sample(&[("reason", "not_authorized")], not_authorized);
        e.family(
            "gatehouse_subscriptions_revoked_total",
            Kind::Counter,
            "Stored subscriptions removed because the principal holding the session may no longer subscribe to them (re-checked on resume, re-authentication and reload).",
        )
        .sample(&[], revoked);
        e.family(
            "gatehouse_retained_messages",
            Kind::Gauge,
            "Retained messages held.",
        )
        .sample(&[], b.router.retained_count());
        e.family(
            "gatehouse_retained_bytes",
            Kind::Gauge,
            "Bytes of retained messages held (topic, payload and properties), as counted against broker.maxRetainedBytes.",
        )
        .sample(&[], b.router.retained_bytes());
        e.family(
            "gatehouse_retained_refused_total",
            Kind::Counter,
            "Retained PUBLISHes not retained because the store was at broker.maxRetainedMessages or broker.maxRetainedBytes.",
        )
        .sample(&[], load(&stats.retained_refused));
        e.family(
            "gatehouse_sessions",
            Kind::Gauge,
            "Sessions held, connected or not.",
        )
        .sample(&[], b.session_count());
        e.family(
            "gatehouse_subscriptions",
            Kind::Gauge,
            "Subscriptions in the subscription index.",
        )
        .sample(&[], b.router.subscription_count());
    }

    pub(super) fn render_auth(&self, e: &mut Exposition) {
        type Read = fn(&MethodCounters) -> u64;
        const CONNECT: [(&str, Read); 2] = [
            ("accepted", |m| m.accepted.get()),
            ("rejected", |m| m.rejected.get()),
        ];
        const REAUTH: [(&str, Read); 3] = [
            ("success", |m| m.reauth_success.get()),
            ("retry", |m| m.reauth_retry.get()),
            ("failure", |m| m.reauth_failure.get()),
        ];
        for (name, help, results) in [
            (
                "gatehouse_authentications_total",
                "CONNECT authentication outcomes, by authentication resource, the method that decided (none: no method was relevant) and result.",
                &CONNECT[..],
            ),
            (
                "gatehouse_reauthentications_total",
                "MQTT v5 re-authentication (AUTH 0x19) outcomes, by authentication resource, method and result (success, retry: AUTH 0x18, failure: DISCONNECT).",
                &REAUTH[..],
            ),
        ] {
            let mut f = e.family(name, Kind::Counter, help);
            for (resource, chain) in &self.chains {
                for (result, read) in results {
                    // Methods of the same kind in one chain share their labels: add them up.
                    let mut sums: Vec<(&'static str, u64)> = Vec::new();
                    for (method, counters) in chain.method_counters() {
                        match sums.iter_mut().find(|(m, _)| *m == method) {
                            Some((_, sum)) => *sum += read(counters),
                            None => sums.push((method, read(counters))),
                        }
                    }
                    for (method, n) in sums {
                        f.sample(
                            &[
                                ("authentication", resource),
                                ("method", method),
                                ("result", result),
                            ],
                            n,
                        );
                    }
                }
            }
        }
    }

    pub(super) fn render_authz(&self, e: &mut Exposition) {
        let mut f = e.family(
            "gatehouse_authorization_denials_total",
            Kind::Counter,
            "Authorization denials, by authorization resource and action.",
        );
        for (name, a) in &self.authorizers {
            for (i, action) in AUTHZ_ACTIONS.iter().enumerate() {
                f.sample(
                    &[("authorization", name), ("action", action)],
                    a.counters().denied[i].get(),
                );
            }
        }
        drop(f);
        let mut f = e.family(
            "gatehouse_authorization_cache_hits_total",
            Kind::Counter,
            "Authorization decisions answered from the decision cache, by authorization resource.",
        );
        for (name, a) in &self.authorizers {
            f.sample(&[("authorization", name)], a.counters().cache_hits.get());
        }
        drop(f);
        let mut f = e.family(
            "gatehouse_authorization_cache_misses_total",
            Kind::Counter,
            "Authorization decisions computed and then cached, by authorization resource.",
        );
        for (name, a) in &self.authorizers {
            f.sample(&[("authorization", name)], a.counters().cache_misses.get());
        }
        drop(f);
        let mut f = e.family(
            "gatehouse_authorization_cache_entries",
            Kind::Gauge,
            "Decisions in the decision cache, by authorization resource (policies with the cache enabled).",
        );
        for (name, a) in &self.authorizers {
            if let Some(n) = a.cached_decisions() {
                f.sample(&[("authorization", name)], n);
            }
        }
    }

    pub(super) fn render_state_store(&self, e: &mut Exposition) {
        let store = &self.broker.state_store;
        let mut f = e.family(
            "gatehouse_state_store_requests_total",
            Kind::Counter,
            "State store requests answered, by command and result (ok, denied, error: another -ERR reply, unsupported_version).",
        );
        for (ci, command) in STATE_STORE_COMMANDS.iter().enumerate() {
            for (ri, result) in STATE_STORE_RESULTS.iter().enumerate() {
                f.sample(
                    &[("command", command), ("result", result)],
                    store.requests.get(ci, ri),
                );
            }
        }
        drop(f);
        e.family(
            "gatehouse_state_store_keys",
            Kind::Gauge,
            "Keys in the state store.",
        )
        .sample(&[], store.len());
    }

    pub(super) fn render_tls(&self, e: &mut Exposition, now: SystemTime) {
        let mut f = e.family(
            "gatehouse_tls_certificate_expiry_seconds",
            Kind::Gauge,
            "Seconds until the server certificate a TLS port serves expires (negative once expired), by listener and port; absent while the port has no certificate.",
        );
        for p in &self.ports {
            let Some(not_after) = p.tls.as_ref().and_then(|t| t.slot.not_after()) else {
                continue;
            };
            let left = match not_after.duration_since(now) {
                Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                Err(past) => -i64::try_from(past.duration().as_secs()).unwrap_or(i64::MAX),
            };
            let c = &p.counters;
            let port = c.port.to_string();
            f.sample(&[("listener", &c.listener), ("port", &port)], left);
        }
    }
}

/// `/metrics` families of the password files of the chains (resource name, file), so an
/// operator sees a bad edit being ignored without reading the log.
pub(super) fn render_password_files(
    e: &mut Exposition,
    files: &[(&str, Arc<crate::auth::password::PasswordFile>)],
) {
    let mut f = e.family(
        "gatehouse_password_file_users",
        Kind::Gauge,
        "Users in the password file in force, by authentication resource and file (Password method).",
    );
    for (resource, file) in files {
        let path = file.path().display().to_string();
        f.sample(
            &[("authentication", resource), ("file", &path)],
            file.users(),
        );
    }
    drop(f);
    let mut f = e.family(
        "gatehouse_password_file_reloads_total",
        Kind::Counter,
        "Changes of a password file seen while running, by authentication resource, file and result (success: taken; failure: invalid or missing, the last good version stays).",
    );
    for (resource, file) in files {
        let path = file.path().display().to_string();
        let (taken, refused) = file.reload_counts();
        for (result, n) in [("success", taken), ("failure", refused)] {
            f.sample(
                &[
                    ("authentication", resource),
                    ("file", &path),
                    ("result", result),
                ],
                n,
            );
        }
    }
}

/// The async runtime's own figures. Tasks alive is what a connection costs in tasks: one
/// per connected client plus a fixed few, so a count that grows with connections closed
/// (or two per connection) shows a task kept alive by a stored waker.
pub(super) fn render_runtime(e: &mut Exposition) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let m = handle.metrics();
    e.family(
        "gatehouse_runtime_tasks",
        Kind::Gauge,
        "Tasks alive in the broker's async runtime.",
    )
    .sample(&[], m.num_alive_tasks() as u64);
    e.family(
        "gatehouse_runtime_workers",
        Kind::Gauge,
        "Worker threads of the broker's async runtime.",
    )
    .sample(&[], m.num_workers() as u64);
}

/// Cluster mode (issue 15): what crossed between this node and the others through NATS.
pub(super) fn render_cluster(e: &mut Exposition, cluster: &crate::cluster::Cluster) {
    let stats = cluster.stats();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    e.family(
        "gatehouse_cluster_info",
        Kind::Gauge,
        "Always 1 in cluster mode; the node label is this node's cluster.nodeName.",
    )
    .sample(&[("node", cluster.node())], 1u64);
    e.family(
        "gatehouse_cluster_forwarded_total",
        Kind::Counter,
        "Messages published on this node and handed to NATS for the other nodes.",
    )
    .sample(&[], load(&stats.forwarded));
    e.family(
        "gatehouse_cluster_not_forwarded_total",
        Kind::Counter,
        "Messages published on this node that did not reach NATS: topic or message above what NATS carries, outbox full (NATS stalled past the publishers' hold limit), or a NATS publish error.",
    )
    .sample(&[], load(&stats.not_forwarded));
    e.family(
        "gatehouse_cluster_received_total",
        Kind::Counter,
        "Copies of messages received from NATS, one per NATS subscription that matched (including those dropped below).",
    )
    .sample(&[], load(&stats.received));
    e.family(
        "gatehouse_cluster_received_dropped_total",
        Kind::Counter,
        "Copies received from NATS and not delivered, by reason: own (this node's message back from NATS, delivered here already), duplicate (another NATS subscription of this node brought it first), malformed (not a message of a Gatehouse node).",
    )
    .sample(&[("reason", "own")], load(&stats.own))
    .sample(&[("reason", "duplicate")], load(&stats.duplicates))
    .sample(&[("reason", "malformed")], load(&stats.malformed));
    e.family(
        "gatehouse_cluster_nats_subscriptions",
        Kind::Gauge,
        "Distinct (filter, shared group) pairs this node is subscribed to on NATS.",
    )
    .sample(&[], cluster.interest_count() as u64);
    e.family(
        "gatehouse_cluster_forwarding_congested",
        Kind::Gauge,
        "1 while the outbox to NATS is congested (publishers whose messages find it so are not read until it drains), else 0.",
    )
    .sample(&[], u64::from(cluster.forwarding_congested()));
    let queue = cluster.queue();
    e.family(
        "gatehouse_cluster_offline_sessions",
        Kind::Gauge,
        "Offline persistent sessions, cluster-wide, whose QoS 1/2 messages this node keeps in the gatehouse-queued stream when it publishes them.",
    )
    .sample(&[], queue.offline_count() as u64);
    e.family(
        "gatehouse_cluster_queue_stored_total",
        Kind::Counter,
        "Messages this node wrote to the gatehouse-queued stream for offline sessions (acknowledged by JetStream).",
    )
    .sample(&[], load(&queue.stats.stored));
    e.family(
        "gatehouse_cluster_queue_failed_total",
        Kind::Counter,
        "Messages for offline sessions this node could not write to the gatehouse-queued stream (JetStream unavailable for 10 s, or the writer's queue full): kept on this node only.",
    )
    .sample(&[], load(&queue.stats.failed));
    e.family(
        "gatehouse_cluster_queue_delivered_total",
        Kind::Counter,
        "Messages read back from the gatehouse-queued stream into sessions resumed on this node.",
    )
    .sample(&[], load(&queue.stats.delivered));
}
