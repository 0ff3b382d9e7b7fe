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
//! - `families`: the families each domain contributes, written from what the registry
//!   holds.
//! - [`render`]: the text exposition format.
//! - [`process`]: the standard `process_*` metrics, read from `/proc/self` (Linux).
//! - [`http`]: the HTTP/1.1 server.
//!
//! Gauges that the broker already knows (sessions, retained messages, subscriptions, state
//! store keys, time left on each port's certificate) are read when `/metrics` is scraped,
//! so they cost nothing in between.

mod families;
pub mod http;
pub mod process;
pub mod render;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_config::{Listener, ListenerPort, Tls};

use crate::auth::Chain;
use crate::authz::Authorizer;
use crate::counters::PortMetrics;
use crate::registry::Broker;
use crate::tls::CertSlot;
use families::{render_password_files, render_runtime};
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
    /// Cluster mode: the link to the other nodes (its families are left out otherwise).
    cluster: Option<Arc<crate::cluster::Cluster>>,
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
            cluster: None,
        }
    }

    /// Report the cluster link's counters too (cluster mode).
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Registry {
        self.cluster = cluster;
        self
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
        if let Some(cluster) = &self.cluster {
            families::render_cluster(&mut e, cluster);
        }
        render_runtime(&mut e);
        e.finish()
    }
}

#[cfg(test)]
mod tests;
