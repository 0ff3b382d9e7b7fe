//! Runtime update (config.md "Runtime reload"): a changed configuration file (or SIGHUP)
//! applies at once
//! - new authorization policies and new authentication resources (methods, trusted client
//!   CAs, attributes); every connected client is then disconnected (0x98) so it reconnects
//!   under them (AIO behaviour for policies);
//! - new `broker:` limits: new connections get them in their CONNACK, the queue policy,
//!   the state store quota and the connection cap change at once; live connections keep
//!   the limits they were told, and nobody is disconnected.
//!
//! The certificate files the chains in use read (trusted client CAs, custom servers' CAs)
//! are watched too: edited in place, with the configuration unchanged, they rebuild those
//! chains as a configuration change would ([`Reloader::watch_auth_files`]).
//!
//! Server certificates reload by themselves (their files are watched). Listener, port, metrics
//! port and persistence changes need a restart and are reported as such; an invalid file,
//! or one whose new resources do not build, changes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_config::Config;
use gatehouse_protocol::ReasonCode;
use parking_lot::Mutex;

use crate::admission::ConnectionCap;
use crate::auth::{self, Chain};
use crate::authz::{Authorizer, Policy};
use crate::file_stamp::{stamp, Stamp};
use crate::limits::Limits;
use crate::registry::Broker;

/// How often the files of the chains in use are `stat`ed.
const AUTH_FILES_POLL: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Authorization resources whose new policy is now in force.
    pub policies: Vec<String>,
    /// Authentication resources whose new methods are now in force.
    pub authentications: Vec<String>,
    /// Clients disconnected because policies or authentication resources changed.
    pub disconnected: usize,
    /// `broker:` limits changed: new connections get them (live ones keep theirs).
    pub limits: bool,
    /// Changes that only take effect after a restart.
    pub need_restart: Vec<String>,
}

/// Applies configuration changes to a running server. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    broker: Arc<Broker>,
    /// The authorizers in use, by resource name.
    authorizers: Arc<HashMap<String, Arc<Authorizer>>>,
    /// The authentication chains in use, by resource name.
    chains: Arc<HashMap<String, Arc<Chain>>>,
    /// The connection cap, resized when `maxConnections` changes.
    cap: Arc<ConnectionCap>,
    running: Arc<Mutex<Config>>,
    /// The certificate files of the chains in use as they were when last built.
    auth_files: Arc<Mutex<AuthFiles>>,
}

/// The files a set of chains reads: their stamps (cheap to compare every second) and,
/// once a stamp moved, their contents (a `touch` or a rewrite with the same bytes is not a
/// change).
#[derive(Debug, Default)]
struct AuthFiles {
    stamps: Vec<(PathBuf, Option<Stamp>)>,
    contents: Vec<Option<Vec<u8>>>,
}

impl AuthFiles {
    fn paths(config: &Config, chains: &HashMap<String, Arc<Chain>>) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = config
            .authentications
            .iter()
            .filter(|a| chains.contains_key(&a.name))
            .flat_map(|a| a.config_maps())
            .flat_map(|name| auth::files::config_map_paths(config, name))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    fn stamps(paths: &[PathBuf]) -> Vec<(PathBuf, Option<Stamp>)> {
        paths.iter().map(|p| (p.clone(), stamp(p))).collect()
    }

    /// A folder reads as `None`; its stamp covers it.
    #[allow(
        clippy::disallowed_methods,
        reason = "called from the reload check, which runs on a blocking thread"
    )]
    fn contents(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
        paths.iter().map(|p| std::fs::read(p).ok()).collect()
    }

    fn capture(config: &Config, chains: &HashMap<String, Arc<Chain>>) -> AuthFiles {
        let paths = Self::paths(config, chains);
        AuthFiles {
            stamps: Self::stamps(&paths),
            contents: Self::contents(&paths),
        }
    }
}

impl Reloader {
    pub(crate) fn new(
        broker: Arc<Broker>,
        authorizers: HashMap<String, Arc<Authorizer>>,
        chains: HashMap<String, Arc<Chain>>,
        cap: Arc<ConnectionCap>,
        config: Config,
    ) -> Reloader {
        let auth_files = AuthFiles::capture(&config, &chains);
        Reloader {
            broker,
            authorizers: Arc::new(authorizers),
            chains: Arc::new(chains),
            cap,
            running: Arc::new(Mutex::new(config)),
            auth_files: Arc::new(Mutex::new(auth_files)),
        }
    }

    /// Poll the certificate files of the chains in use and rebuild the chains when their
    /// contents change ([`Self::check_auth_files`]). Runs until aborted.
    pub async fn watch_auth_files(self) {
        let mut tick = tokio::time::interval(AUTH_FILES_POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.revoke_password_users();
            // stat, read and rebuild off the async workers.
            let this = self.clone();
            let Ok(checked) = tokio::task::spawn_blocking(move || this.check_auth_files()).await
            else {
                return; // the runtime is shutting down
            };
            match checked {
                None => {}
                Some(Err(problems)) => tracing::error!(
                    target: "auth",
                    "trusted CA files changed but the authentication chains do not build with them; keeping the running ones:\n  {}",
                    problems.join("\n  ")
                ),
                Some(Ok(done)) => tracing::info!(
                    target: "auth",
                    "trusted CA files changed: now in force: authentication {}; disconnected {} client(s) so they reconnect under it",
                    done.authentications.join(", authentication "),
                    done.disconnected
                ),
            }
        }
    }

    /// Disconnect (0x87) the clients authenticated by a `Password` method whose entry was
    /// removed from its file, or whose password changed, since last asked: a changed
    /// password file otherwise only applies to new CONNECTs (Mosquitto re-checks its
    /// connected clients on reload too). Matched by method and user name, so the same user
    /// name in another chain's password file is disconnected as well (and reconnects).
    fn revoke_password_users(&self) {
        let users: std::collections::HashSet<String> = self
            .chains
            .values()
            .flat_map(|c| c.take_revoked_password_users())
            .collect();
        if users.is_empty() {
            return;
        }
        let n = self
            .broker
            .disconnect_owners(ReasonCode::NOT_AUTHORIZED, |owner| match owner {
                crate::session::Owner::Principal(id) => {
                    id.method == auth::password::METHOD
                        && id.username.as_ref().is_some_and(|u| users.contains(u))
                }
                _ => false,
            });
        tracing::info!(
            target: "auth",
            "password file changed: {} user(s) removed or with a new password; disconnected {n} client(s)",
            users.len()
        );
    }

    /// Whether the certificate files of the chains in use changed since they were built,
    /// and if so what rebuilding them did: `None` when nothing changed. Like a changed
    /// config map in the configuration, new contents rebuild every chain that reads a
    /// config map and send connected clients away (0x98); a chain that does not build
    /// with them keeps every running chain, until the files change again.
    pub fn check_auth_files(&self) -> Option<Result<Reloaded, Vec<String>>> {
        let running = self.running.lock();
        let paths = AuthFiles::paths(&running, &self.chains);
        let stamps = AuthFiles::stamps(&paths);
        {
            let mut files = self.auth_files.lock();
            if files.stamps == stamps {
                return None;
            }
            let contents = AuthFiles::contents(&paths);
            let changed = contents != files.contents;
            *files = AuthFiles { stamps, contents };
            if !changed {
                return None;
            }
        }
        let mut fresh_chains = Vec::new();
        let mut problems = Vec::new();
        for (name, chain) in self.chains.iter() {
            let Some(auth) = running.authentications.iter().find(|a| &a.name == name) else {
                continue;
            };
            if auth.config_maps().next().is_none() {
                continue;
            }
            match auth::build(&running, name) {
                Ok(fresh) => fresh_chains.push((name.clone(), chain.clone(), fresh)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            return Some(Err(problems));
        }
        if fresh_chains.is_empty() {
            return None;
        }
        let mut outcome = Reloaded::default();
        for (name, chain, fresh) in fresh_chains {
            chain.replace(fresh);
            outcome.authentications.push(name);
        }
        outcome.authentications.sort();
        outcome.disconnected = self
            .broker
            .disconnect_all(ReasonCode::ADMINISTRATIVE_ACTION);
        Some(Ok(outcome))
    }

    /// Apply `new` (already loaded and validated). `Err` lists why nothing changed.
    pub fn apply(&self, new: Config) -> Result<Reloaded, Vec<String>> {
        let mut running = self.running.lock();
        let mut outcome = Reloaded::default();
        // Compile every policy in use first: all or nothing.
        let mut compiled = Vec::new();
        let mut problems = Vec::new();
        for (name, authorizer) in self.authorizers.iter() {
            let old = running.authorizations.iter().find(|a| &a.name == name);
            let Some((i, auth)) = new
                .authorizations
                .iter()
                .enumerate()
                .find(|(_, a)| &a.name == name)
            else {
                problems.push(format!(
                    "authorization `{name}` is in use by a port but no longer defined; keeping the running policy (remove the port's authorizationRef and restart to drop it)"
                ));
                continue;
            };
            if old == Some(auth) {
                continue;
            }
            match Policy::compile(auth, &new.paths.authorization(i).spec) {
                Ok(policy) => compiled.push((name.clone(), authorizer.clone(), policy)),
                Err(p) => problems.extend(p),
            }
        }
        let mut fresh_chains = Vec::new();
        for (name, chain) in self.chains.iter() {
            let old = running.authentications.iter().find(|a| &a.name == name);
            let Some(auth) = new.authentications.iter().find(|a| &a.name == name) else {
                problems.push(format!(
                    "authentication `{name}` is in use by a port but no longer defined; keeping the running one (remove the port's authenticationRef and restart to drop it)"
                ));
                continue;
            };
            // Methods read certificates through config maps and secrets: a change there
            // rebuilds every chain in use too.
            let files_changed =
                new.config_maps != running.config_maps || new.secrets != running.secrets;
            if old == Some(auth) && !files_changed {
                continue;
            }
            match auth::build(&new, name) {
                Ok(fresh) => fresh_chains.push((name.clone(), chain.clone(), fresh)),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        if new.listeners != running.listeners {
            outcome
                .need_restart
                .push("listeners or ports changed".into());
        }
        if new.persistence != running.persistence || new.data_dir != running.data_dir {
            outcome
                .need_restart
                .push("persistence or dataDir changed".into());
        }
        if new.cluster != running.cluster {
            outcome.need_restart.push("cluster changed".into());
        }
        if new.broker != running.broker {
            let old = running.broker.max_connections;
            let fresh = Limits::from_config(&new.broker);
            let max = fresh.max_connections;
            self.broker.set_limits(fresh);
            if max != old {
                // Free permits go at once; connections above a lowered cap finish
                // normally and their permits are retired as they close.
                let above = self.cap.resize(max);
                if above > 0 {
                    tracing::info!(
                        "maxConnections lowered to {max}: {above} connection(s) above it stay until they close"
                    );
                }
            }
            outcome.limits = true;
            running.broker = new.broker.clone();
        }
        if new.diagnostics.metrics != running.diagnostics.metrics {
            outcome.need_restart.push("the metrics port changed".into());
        }
        for (name, authorizer, policy) in compiled {
            authorizer.replace(policy);
            outcome.policies.push(name);
        }
        for (name, chain, fresh) in fresh_chains {
            chain.replace(fresh);
            outcome.authentications.push(name);
        }
        if !outcome.policies.is_empty() || !outcome.authentications.is_empty() {
            outcome.disconnected = self
                .broker
                .disconnect_all(ReasonCode::ADMINISTRATIVE_ACTION);
        }
        // Keep what was applied; later reloads compare against it.
        if !outcome.authentications.is_empty() {
            running.config_maps = new.config_maps.clone();
            running.secrets = new.secrets.clone();
        }
        for name in &outcome.policies {
            if let (Some(slot), Some(fresh)) = (
                running.authorizations.iter_mut().find(|a| &a.name == name),
                new.authorizations.iter().find(|a| &a.name == name),
            ) {
                *slot = fresh.clone();
            }
        }
        for name in &outcome.authentications {
            if let (Some(slot), Some(fresh)) = (
                running.authentications.iter_mut().find(|a| &a.name == name),
                new.authentications.iter().find(|a| &a.name == name),
            ) {
                *slot = fresh.clone();
            }
        }
        if !outcome.authentications.is_empty() {
            // The chains now read these files as they are: later polls compare with them.
            *self.auth_files.lock() = AuthFiles::capture(&running, &self.chains);
        }
        Ok(outcome)
    }
}
