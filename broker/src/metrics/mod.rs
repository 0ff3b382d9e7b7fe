//! Metrics and health (behaviour.md §7) on `diagnostics.metrics.prometheusPort`:
//! `/metrics` (Prometheus text), `/healthz` and `/readyz`.
//!
//! # Layout
//! - The counters are not here: each domain bumps its own, built from the primitives of
//!   [`crate::counters`] (per port: connections, PUBLISH in and out by QoS, bytes;
//!   [`crate::auth::counters`] per authentication chain, [`crate::authz::counters`] per
//!   authorization policy, [`crate::statestore::counters`] for the state store). The
//!   router keeps its own (`RouterStats`); [`crate::transport::metered`] counts bytes.
//! - [`Registry`] (here): where every counter and gauge is found at scrape time, and the
//!   readiness of the ports; nothing is aggregated until someone asks.
//! - [`render`]: the text exposition format.
//! - [`process`]: the standard `process_*` metrics, read from `/proc/self` (Linux).
//! - [`http`]: the HTTP/1.1 server.
//!
//! Gauges that the broker already knows (sessions, retained messages, subscriptions, state
//! store keys, time left on each port's certificate) are read when `/metrics` is scraped,
//! so they cost nothing in between.

pub mod http;
pub mod process;
pub mod render;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_config::{Listener, ListenerPort, Tls};
use gatehouse_protocol::QoS;

use crate::auth::counters::MethodCounters;
use crate::authz::counters::AUTHZ_ACTIONS;
use crate::counters::PortMetrics;
use crate::statestore::counters::{STATE_STORE_COMMANDS, STATE_STORE_RESULTS};

use crate::auth::Chain;
use crate::authz::Authorizer;
use crate::registry::Broker;
use crate::tls::CertSlot;
use render::{Exposition, Kind};

/// Every configured port, as the metrics and readiness see it. Built while the ports are
/// bound (see `Server::start`), then handed to [`Registry::new`].
#[derive(Debug, Default)]
pub struct Ports(Vec<Port>);

#[derive(Debug)]
struct Port {
    /// `listeners[i].ports[j]`, to name the port in the readiness report.
    path: String,
    counters: Arc<PortMetrics>,
    tls: Option<PortTls>,
}

#[derive(Debug)]
struct PortTls {
    slot: Arc<CertSlot>,
    /// `Manual` or `Automatic`, and the secret the certificate comes from.
    mode: &'static str,
    secret: String,
}

impl Ports {
    /// Register port `port_index` of listener `listener_index`, bound to `bound` (the port
    /// number clients use); `slot` is its certificate slot when it has TLS. Returns the
    /// counters its connections bump.
    pub fn add(
        &mut self,
        (listener_index, port_index): (usize, usize),
        listener: &Listener,
        port: &ListenerPort,
        bound: u16,
        slot: Option<Arc<CertSlot>>,
    ) -> Arc<PortMetrics> {
        let counters = Arc::new(PortMetrics::new(&listener.name, bound));
        let tls = slot.zip(port.tls.as_ref()).map(|(slot, tls)| {
            let (mode, secret) = match tls {
                Tls::Manual(m) => ("Manual", m.secret_ref.clone()),
                Tls::Automatic(spec) => ("Automatic", spec.secret_name.clone()),
            };
            PortTls { slot, mode, secret }
        });
        self.0.push(Port {
            path: format!("listeners[{listener_index}].ports[{port_index}]"),
            counters: counters.clone(),
            tls,
        });
        counters
    }
}

/// Where everything `/metrics` and `/readyz` report is found.
pub struct Registry {
    broker: Arc<Broker>,
    ports: Vec<Port>,
    /// By resource name (one chain per BrokerAuthentication, shared by its ports).
    chains: BTreeMap<String, Arc<Chain>>,
    /// By resource name (one authorizer per BrokerAuthorization in use).
    authorizers: BTreeMap<String, Arc<Authorizer>>,
}

impl Registry {
    pub fn new(
        broker: Arc<Broker>,
        ports: Ports,
        chains: impl IntoIterator<Item = Arc<Chain>>,
        authorizers: impl IntoIterator<Item = (String, Arc<Authorizer>)>,
    ) -> Registry {
        Registry {
            broker,
            ports: ports.0,
            chains: chains.into_iter().map(|c| (c.name.clone(), c)).collect(),
            authorizers: authorizers.into_iter().collect(),
        }
    }

    /// The ports that cannot serve yet, each with why (empty: ready). Every port is
    /// listening once the server has started (ports are bound all or nothing), so what
    /// remains is TLS: a port whose certificate slot is empty (a Manual secret that does
    /// not exist yet) fails every handshake.
    pub fn unready(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter_map(|p| {
                let tls = p.tls.as_ref()?;
                tls.slot.is_empty().then(|| {
                    format!(
                        "{} (listener {}, port {}): no server certificate yet ({} TLS, secret {})",
                        p.path, p.counters.listener, p.counters.port, tls.mode, tls.secret
                    )
                })
            })
            .collect()
    }

    /// The Prometheus text exposition of everything, as of now.
    pub fn render(&self) -> String {
        let mut e = Exposition::default();
        e.family(
            "gatehouse_build_info",
            Kind::Gauge,
            "Always 1; the version label says which Gatehouse is running.",
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1u64);
        process::render(&mut e, &process::read());
        self.render_ports(&mut e);
        self.render_broker(&mut e);
        self.render_auth(&mut e);
        let password_files: Vec<_> = self
            .chains
            .iter()
            .flat_map(|(name, c)| {
                c.password_files()
                    .into_iter()
                    .map(move |f| (name.as_str(), f))
            })
            .collect();
        render_password_files(&mut e, &password_files);
        self.render_authz(&mut e);
        self.render_state_store(&mut e);
        self.render_tls(&mut e, SystemTime::now());
        render_runtime(&mut e);
        e.finish()
    }

    fn render_ports(&self, e: &mut Exposition) {
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

    fn render_broker(&self, e: &mut Exposition) {
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

    fn render_auth(&self, e: &mut Exposition) {
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

    fn render_authz(&self, e: &mut Exposition) {
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

    fn render_state_store(&self, e: &mut Exposition) {
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

    fn render_tls(&self, e: &mut Exposition, now: SystemTime) {
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
fn render_password_files(
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
fn render_runtime(e: &mut Exposition) {
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

#[cfg(test)]
mod tests {
    use gatehouse_config::Config;
    use hyper::{Method, StatusCode};

    use super::*;
    use crate::limits::Limits;

    fn config() -> Config {
        let yaml = "
listeners:
  - name: plain
    bindAddress: 127.0.0.1
    ports: [ { port: 1883 } ]
  - name: secure
    serviceType: LoadBalancer
    bindAddress: 127.0.0.1
    ports:
      - port: 8883
        tls: { mode: Manual, manual: { secretRef: late-cert } }
";
        match gatehouse_config::load_str(yaml, "metrics-test.yaml") {
            Ok(loaded) => loaded.config,
            Err(e) => panic!("{e}"),
        }
    }

    /// The registry of `config()`: port 1883 plain, port 8883 with an empty slot.
    fn registry() -> (Registry, Arc<PortMetrics>, Arc<CertSlot>) {
        let config = config();
        let broker = Broker::new(Limits::from_config(&config.broker));
        let mut ports = Ports::default();
        let plain = ports.add(
            (0, 0),
            &config.listeners[0],
            &config.listeners[0].ports[0],
            1883,
            None,
        );
        let slot = Arc::new(CertSlot::default());
        ports.add(
            (1, 0),
            &config.listeners[1],
            &config.listeners[1].ports[0],
            8883,
            Some(slot.clone()),
        );
        (Registry::new(broker, ports, [], []), plain, slot)
    }

    #[test]
    fn a_tls_port_without_a_certificate_is_not_ready_and_is_named() {
        let (registry, _, slot) = registry();
        let unready = registry.unready();
        assert_eq!(unready.len(), 1, "{unready:?}");
        assert!(
            unready[0].starts_with("listeners[1].ports[0] (listener secure, port 8883)")
                && unready[0].contains("Manual TLS, secret late-cert"),
            "{}",
            unready[0]
        );
        let r = http::respond(&registry, &Method::GET, "/readyz");
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Once the slot holds a certificate the port serves (end to end, with a real
        // certificate and its expiry metric, in tests/tests/e2e/metrics.rs).
        assert!(slot.is_empty());
    }

    #[test]
    fn routes_and_methods() {
        let (registry, _, _) = registry();
        let status = |m: Method, p: &str| http::respond(&registry, &m, p).status();
        assert_eq!(status(Method::GET, "/healthz"), StatusCode::OK);
        assert_eq!(status(Method::HEAD, "/metrics"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/nope"), StatusCode::NOT_FOUND);
        let post = http::respond(&registry, &Method::POST, "/metrics");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()["allow"], "GET, HEAD");
        let metrics = http::respond(&registry, &Method::GET, "/metrics");
        assert_eq!(metrics.headers()["content-type"], render::CONTENT_TYPE);
    }

    #[test]
    fn port_counters_appear_with_listener_port_and_qos_labels() {
        let (registry, plain, _) = registry();
        plain.inbound.messages.inc(QoS::AtLeastOnce);
        plain.inbound.messages.inc(QoS::AtLeastOnce);
        plain.outbound.messages.inc(QoS::ExactlyOnce);
        plain.outbound.expired.inc();
        let text = registry.render();
        for line in [
            "# TYPE gatehouse_messages_received_total counter",
            "gatehouse_messages_received_total{listener=\"plain\",port=\"1883\",qos=\"1\"} 2",
            "gatehouse_messages_received_total{listener=\"secure\",port=\"8883\",qos=\"1\"} 0",
            "gatehouse_messages_sent_total{listener=\"plain\",port=\"1883\",qos=\"2\"} 1",
            "gatehouse_messages_dropped_total{reason=\"expired\"} 1",
            "gatehouse_connections{listener=\"plain\",port=\"1883\"} 0",
            "gatehouse_sessions 0",
            "gatehouse_retained_messages 0",
            "gatehouse_state_store_requests_total{command=\"get\",result=\"ok\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // No TLS port has a certificate: no expiry family; no chain: no authentication family.
        assert!(!text.contains("gatehouse_tls_certificate_expiry_seconds"));
        assert!(!text.contains("gatehouse_authentications_total"));
        // Each family's HELP and TYPE appear once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "{types:?}");
    }
}
