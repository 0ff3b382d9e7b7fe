//! Starting the broker from a validated configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gatehouse_config::{Config, Protocol};
use tokio::task::JoinSet;

use crate::admission::{ConnectionCap, PendingConnections};
use crate::auth::{self, AuthError, Chain};
use crate::authz::{Authorizer, Policy};
use crate::connection::PortAuth;
use crate::limits::Limits;
use crate::metrics::{self, Registry};
use crate::registry::Broker;
use crate::reload::Reloader;
use crate::tls::{TlsError, TlsPorts};
use crate::transport::{self, Transport};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: {what} is not supported yet (it arrives with the {issue} work); refusing to start rather than run this port without it")]
    NotSupportedYet {
        path: String,
        what: &'static str,
        issue: &'static str,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{path}: the authorization policy does not compile:\n  {}", .problems.join("\n  "))]
    Authz { path: String, problems: Vec<String> },
    #[error("{path}: {source}")]
    Auth {
        path: String,
        source: Box<AuthError>,
    },
    /// Cluster mode (issue 15): NATS could not be reached or configured.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("persistence: {0}")]
    Persistence(#[from] crate::storage::PersistError),
    /// `path` is the setting to change (a port's `port`, or the metrics port).
    #[error("{path}: cannot listen on {addr}: {source}{}", bind_hint(.source, .path))]
    Bind {
        path: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// What the preflight found (every problem, one per line); see [`crate::preflight`].
    #[error("the configuration cannot start:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Preflight(Vec<crate::preflight::Finding>),
}

/// What to do about a port that cannot be bound (issue 16: a second instance failed with
/// only "Address in use").
fn bind_hint(source: &std::io::Error, path: &str) -> String {
    use std::io::ErrorKind;
    match source.kind() {
        ErrorKind::AddrInUse => format!(
            "; another process already listens there (another Gatehouse, or a Mosquitto \
             service?): stop it, or set {path} to a free port (0 = any free port)"
        ),
        ErrorKind::PermissionDenied => format!(
            "; ports below 1024 need root or CAP_NET_BIND_SERVICE: set {path} to a port from \
             1024 up"
        ),
        ErrorKind::AddrNotAvailable => {
            "; the address is not one of this machine's: change the listener's bindAddress"
                .to_owned()
        }
        _ => String::new(),
    }
}

/// A port the broker is listening on.
#[derive(Debug, Clone)]
pub struct BoundPort {
    pub listener: String,
    /// The port as configured (0 = any free port).
    pub configured: u16,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub tls: bool,
    // --- for the start-up log (issue 16) ---
    /// `Automatic` or `Manual`; `None` without TLS.
    pub tls_mode: Option<gatehouse_config::TlsMode>,
    /// The port's `authenticationRef` (`None`: anonymous).
    pub authentication: Option<String>,
    /// The `authorizationRef` in force (`None` without one, or without authentication).
    pub authorization: Option<String>,
}

/// A running broker. Dropping it stops accepting connections.
pub struct Server {
    pub broker: Arc<Broker>,
    pub ports: Vec<BoundPort>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addrs: Vec<SocketAddr>,
    reloader: Reloader,
    tasks: JoinSet<()>,
    /// The connection cap; it also counts the connections still open.
    cap: Arc<ConnectionCap>,
    /// The link to the other nodes in cluster mode (issue 15).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// What [`Server::shutdown`] did.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Connected clients sent away (v5: DISCONNECT 0x8B).
    pub disconnected: usize,
    /// Every connection task ended within the grace period.
    pub drained: bool,
}

impl Server {
    /// Bind every port of `config` (all or nothing) and start accepting.
    pub async fn start(config: &Config) -> Result<Server, StartError> {
        // Everything but the ports, checked at once (as `gatehouse check` does).
        let preflight = crate::preflight::run(config, crate::preflight::Mode::Start);
        for warning in &preflight.warnings {
            tracing::warn!(target: "config", "{warning}");
        }
        if !preflight.errors.is_empty() {
            return Err(StartError::Preflight(preflight.errors));
        }
        let mut tasks = JoinSet::new();
        let chains = port_chains(config)?;
        let policies = port_policies(config)?;
        // Certificates first: an invalid one stops start-up before any port opens.
        let tls = TlsPorts::setup(
            config,
            |li, pi| chains.get(&(li, pi)).and_then(|c| c.client_verifier()),
            &mut tasks,
        )?;
        let broker = Broker::new(Limits::from_config(&config.broker));
        // Cluster mode: linked before sessions are restored, so that their subscriptions
        // subscribe on NATS too.
        let cluster = match &config.cluster {
            Some(settings) => {
                let cluster = crate::cluster::Cluster::connect(settings, &broker).await?;
                let _ = broker.router.cluster.set(cluster.clone());
                Some(cluster)
            }
            None => None,
        };
        let mut authorizers = HashMap::new();
        for (li, listener) in config.listeners.iter().enumerate() {
            for (pi, port) in listener.ports.iter().enumerate() {
                if let (Some(name), Some(a)) = (&port.authorization_ref, policies.get(&(li, pi))) {
                    authorizers.insert(name.clone(), a.clone());
                }
            }
        }
        // Cluster mode: a will another node publishes for a client of this one is
        // authorized against the policy of the same name there (cluster/sessions.rs).
        if let Some(sessions) = broker.cluster_sessions.get().and_then(|r| {
            r.as_any()
                .downcast_ref::<crate::cluster::sessions::ClusterSessions>()
        }) {
            sessions.set_authorizers(authorizers.clone());
        }
        if let Some(settings) = &config.persistence {
            let db = crate::storage::Database::open(&config.data_dir)?;
            restore_state_store(&broker, &db, &config.data_dir, settings)?;
            restore_journal(&broker, &db, settings)?;
        }
        let cap = ConnectionCap::new(broker.limits().max_connections);
        let pending = PendingConnections::new();
        // The connect deadline of every pending connection, kept by one sweeper.
        let deadline_broker = broker.clone();
        tasks.spawn(crate::admission::expire_pending(
            Arc::downgrade(&pending),
            move || deadline_broker.limits().connect_timeout,
        ));
        let mut bound = Vec::new();
        let mut metric_ports = metrics::Ports::default();
        for (li, listener) in config.listeners.iter().enumerate() {
            for (pi, port) in listener.ports.iter().enumerate() {
                let path = format!("{}.port", config.paths.port(li, pi));
                let addr = SocketAddr::new(listener.bind_address, port.port);
                let sockets = transport::bind(listener.bind_address, port.port)
                    .await
                    .map_err(|source| StartError::Bind { path, addr, source })?;
                let number = sockets.first().and_then(|s| s.local_addr().ok());
                let number = number.map_or(port.port, |a| a.port());
                let counters = metric_ports.add((li, pi), listener, port, number, tls.slot(li, pi));
                let transport = match port.protocol {
                    Protocol::Mqtt => Transport::Mqtt,
                    Protocol::WebSockets => Transport::WebSockets {
                        path: port.path.clone(),
                    },
                };
                for socket in sockets {
                    let addr = socket.local_addr().unwrap_or(addr);
                    bound.push((
                        BoundPort {
                            listener: listener.name.clone(),
                            configured: port.port,
                            addr,
                            protocol: port.protocol,
                            tls: port.tls.is_some(),
                            tls_mode: port.tls.as_ref().map(|t| t.mode()),
                            authentication: port.authentication_ref.clone(),
                            authorization: port
                                .authentication_ref
                                .as_ref()
                                .and(port.authorization_ref.clone()),
                        },
                        socket,
                        transport.clone(),
                        tls.acceptor(li, pi),
                        PortAuth {
                            chain: chains.get(&(li, pi)).cloned(),
                            // AIO: a policy applies only where authentication is on too
                            // (validation warns about the other case).
                            authz: chains
                                .contains_key(&(li, pi))
                                .then(|| policies.get(&(li, pi)).cloned())
                                .flatten(),
                            metrics: counters.clone(),
                        },
                    ));
                }
            }
        }
        // Bound with the ports, before any accepts: all or nothing.
        let metrics_sockets = metrics::http::bind(config)
            .await
            .map_err(|(addr, source)| {
                let path = config.paths.diagnostics("metrics.prometheusPort");
                StartError::Bind { path, addr, source }
            })?;
        let mut ports = Vec::new();
        for (info, socket, transport, acceptor, port_auth) in bound {
            tracing::info!(
                target: "listener",
                listener = %info.listener,
                protocol = ?info.protocol,
                tls = info.tls_mode.map_or("off", |m| m.as_str()),
                authentication = info.authentication.as_deref().unwrap_or("none (anonymous)"),
                authorization = info.authorization.as_deref().unwrap_or("none (all allowed)"),
                "listening on {}",
                info.addr
            );
            tasks.spawn(transport::accept_loop(
                socket,
                transport,
                acceptor,
                port_auth,
                broker.clone(),
                cap.clone(),
                pending.clone(),
                info.addr.port(),
            ));
            ports.push(info);
        }
        // Expired retained messages are dropped lazily on read; purge them now and then
        // so they do not hold memory.
        let purger = broker.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                purger.router.purge_expired_retained();
            }
        });
        tasks.spawn(broker.clone().run_state_store_expiry());
        let chains_by_name = chains
            .values()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        let chains = chains.into_values();
        let registry = Registry::new(broker.clone(), metric_ports, chains, authorizers.clone())
            .with_cluster(cluster.clone());
        let metrics_addrs = metrics::http::start(metrics_sockets, Arc::new(registry), &mut tasks);
        let reloader = Reloader::new(
            broker.clone(),
            authorizers,
            chains_by_name,
            cap.clone(),
            config.clone(),
        );
        tasks.spawn(reloader.clone().watch_auth_files());
        Ok(Server {
            broker,
            ports,
            metrics_addrs,
            reloader,
            tasks,
            cap,
            cluster,
        })
    }

    /// Applies configuration changes to this server while it runs.
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// The first bound address of `protocol` (handy for tests and logs).
    pub fn addr(&self, protocol: Protocol) -> Option<SocketAddr> {
        self.ports
            .iter()
            .find(|p| p.protocol == protocol)
            .map(|p| p.addr)
    }

    /// Connections open now (pending or connected), for tests and diagnostics.
    pub fn open_connections(&self) -> usize {
        self.cap.live()
    }

    /// Every bound port's address, in configuration order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| p.addr).collect()
    }

    /// The first address of the metrics and health server.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addrs.first().copied()
    }

    /// Run until every accept loop has ended (they do not, short of a panic).
    pub async fn wait(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stop gracefully: stop accepting, send every connected client away (v5 clients get
    /// DISCONNECT 0x8B; their wills are not published and their sessions keep their
    /// expiry), and wait up to `grace` for the connection tasks to flush and end.
    pub async fn shutdown(mut self, grace: std::time::Duration) -> Shutdown {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let disconnected = self
            .broker
            .disconnect_all(gatehouse_protocol::ReasonCode::SERVER_SHUTTING_DOWN);
        // Every connection gone, whatever the cap is now (a lowered cap may still have
        // connections above it open).
        let drained = tokio::time::timeout(grace, self.cap.drained())
            .await
            .is_ok();
        if let Err(e) = self.broker.state_store.flush().await {
            tracing::error!("state store changes not saved: {e}");
        }
        if let Some(journal) = self.broker.journal.get() {
            let _ = tokio::time::timeout(grace, journal.flush()).await;
        }
        Shutdown {
            disconnected,
            drained,
        }
    }
}

/// Open `<dataDir>/gatehouse.redb` and load the persisted state store keys.
fn restore_state_store(
    broker: &Broker,
    db: &crate::storage::Database,
    data_dir: &std::path::Path,
    settings: &gatehouse_config::Persistence,
) -> Result<(), StartError> {
    let now_ms = broker.state_store.now_ms();
    let (persistence, entries) =
        crate::statestore::persist::StatePersistence::open(db.clone(), settings, now_ms)?;
    tracing::info!(
        target: "statestore",
        keys = entries.len(),
        "state store persistence in {}",
        data_dir.display()
    );
    broker.state_store.restore(persistence, entries);
    Ok(())
}

/// Load persisted sessions and retained messages and start their journal.
fn restore_journal(
    broker: &Arc<Broker>,
    db: &crate::storage::Database,
    settings: &gatehouse_config::Persistence,
) -> Result<(), StartError> {
    let Some((journal, loaded)) = crate::session::journal::Journal::open(db, settings)? else {
        return Ok(());
    };
    tracing::info!(
        target: "persistence",
        sessions = loaded.sessions.len(),
        retained = loaded.retained.len(),
        "restored sessions and retained messages from {}",
        db.file().display()
    );
    // Cluster mode keeps retained messages in JetStream (cluster/retained.rs), loaded
    // already; the file's would overwrite newer ones.
    if broker.router.cluster.get().is_none() {
        broker.router.restore_retained(&journal, loaded.retained);
    }
    broker.restore_sessions(&journal, loaded.sessions);
    let _ = broker.router.retained_sink.set(Arc::new(journal.clone()));
    let _ = broker.journal_tickets.set(Arc::new(journal.clone()));
    let _ = broker.journal.set(journal);
    Ok(())
}

/// The authentication chain of every port with an `authenticationRef`, shared between
/// ports that name the same resource.
fn port_chains(config: &Config) -> Result<HashMap<(usize, usize), Arc<Chain>>, StartError> {
    let mut built: HashMap<&str, Arc<Chain>> = HashMap::new();
    let mut chains = HashMap::new();
    for (li, listener) in config.listeners.iter().enumerate() {
        for (pi, port) in listener.ports.iter().enumerate() {
            let Some(name) = &port.authentication_ref else {
                continue;
            };
            let chain = match built.get(name.as_str()) {
                Some(c) => c.clone(),
                None => {
                    let c =
                        Arc::new(
                            auth::build(config, name).map_err(|source| StartError::Auth {
                                path: format!("{}.authenticationRef", config.paths.port(li, pi)),
                                source: Box::new(source),
                            })?,
                        );
                    built.insert(name, c.clone());
                    c
                }
            };
            chains.insert((li, pi), chain);
        }
    }
    Ok(chains)
}

/// The compiled policy of every port with an `authorizationRef`, shared between ports
/// that name the same resource.
fn port_policies(config: &Config) -> Result<HashMap<(usize, usize), Arc<Authorizer>>, StartError> {
    let mut built: HashMap<&str, Arc<Authorizer>> = HashMap::new();
    let mut policies = HashMap::new();
    for (li, listener) in config.listeners.iter().enumerate() {
        for (pi, port) in listener.ports.iter().enumerate() {
            let Some(name) = &port.authorization_ref else {
                continue;
            };
            let authorizer = match built.get(name.as_str()) {
                Some(a) => a.clone(),
                None => {
                    let (ai, auth) = config
                        .authorizations
                        .iter()
                        .enumerate()
                        .find(|(_, a)| &a.name == name)
                        .ok_or_else(|| StartError::Authz {
                            path: format!("{}.authorizationRef", config.paths.port(li, pi)),
                            problems: vec![format!("no authorization named `{name}`")],
                        })?;
                    let policy = Policy::compile(auth, &config.paths.authorization(ai).spec)
                        .map_err(|problems| StartError::Authz {
                            path: format!("{}.authorizationRef", config.paths.port(li, pi)),
                            problems,
                        })?;
                    let a = Arc::new(Authorizer::new(policy));
                    built.insert(name, a.clone());
                    a
                }
            };
            policies.insert((li, pi), authorizer);
        }
    }
    Ok(policies)
}
