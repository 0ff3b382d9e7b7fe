//! The typed configuration, with every default applied.
//!
//! One module per concern: [`listener`] (listeners and ports), [`tls`] (per-port TLS),
//! [`certs`] (issuers, certificates), [`auth`] (authentication chains), [`authz`]
//! (authorization policies), [`broker`] (limits, diagnostics), [`files`] (secrets and config
//! maps), [`persistence`] (what survives a restart). The broker reads these types and never
//! re-derives a default.

pub mod auth;
pub mod authz;
pub mod broker;
pub mod certs;
pub mod cluster;
pub mod files;
pub mod listener;
pub mod persistence;
pub mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::error::ConfigError;
use crate::paths::Paths;
use crate::validate;

pub use auth::*;
pub use authz::*;
pub use broker::*;
pub use certs::*;
pub use cluster::*;
pub use files::*;
pub use listener::*;
pub use persistence::*;
pub use tls::*;

/// The whole configuration, from either YAML form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Issued certificates, the quickstart CA, the trust bundle, default secret and config
    /// map folders, persistence. YAML default `./data`; relative paths in a config file are
    /// relative to that file's folder.
    pub data_dir: PathBuf,
    /// At least one; in YAML order.
    pub listeners: Vec<Listener>,
    pub broker: BrokerLimits,
    pub diagnostics: Diagnostics,
    pub authentications: Vec<Authentication>,
    pub authorizations: Vec<Authorization>,
    /// User-defined issuers; [`DEFAULT_ISSUER`] exists besides these.
    pub issuers: Vec<Issuer>,
    pub certificates: Vec<Certificate>,
    /// Explicit files for secret names; others live in `<dataDir>/secrets/NAME/`.
    pub secrets: BTreeMap<String, SecretFiles>,
    /// Explicit files for config map names; others live in `<dataDir>/configmaps/NAME/`.
    pub config_maps: BTreeMap<String, ConfigMapFiles>,
    /// `persistence:` (native form) or the Broker manifest's `spec.persistence`; `None` =
    /// nothing is written to disk (AIO's default).
    pub persistence: Option<Persistence>,

    // --- Cluster mode (issue 15) ---
    /// `cluster:` (native form only); `None` = one node, no NATS.
    pub cluster: Option<Cluster>,

    // --- Where things are in the YAML (issue 16: check and start-up name the same paths)
    /// Where each resource was written, for messages: set by [`load_file`](crate::load_file)
    /// and [`load_str`](crate::load_str); native-form paths when built in code. Ignored by
    /// equality (see [`Paths`]).
    pub paths: Paths,
}

impl Config {
    /// The configuration used when no file is given: listener `default` on 127.0.0.1 with
    /// port 1883 (MQTT) and 8080 (MQTT over WebSockets at `/mqtt`), anonymous, no TLS;
    /// data in `./data`. Local-only, so useful at once and unsafe nowhere.
    pub fn local_default() -> Config {
        let websockets = ListenerPort {
            path: Some("/mqtt".into()),
            ..ListenerPort::new(8080, Protocol::WebSockets)
        };
        Config {
            data_dir: PathBuf::from("./data"),
            listeners: vec![Listener {
                name: "default".into(),
                service_type: ServiceType::ClusterIp,
                service_name: "default".into(),
                bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
                ports: vec![ListenerPort::new(1883, Protocol::Mqtt), websockets],
            }],
            broker: BrokerLimits::default(),
            diagnostics: Diagnostics::default(),
            authentications: Vec::new(),
            authorizations: Vec::new(),
            issuers: Vec::new(),
            certificates: Vec::new(),
            secrets: BTreeMap::new(),
            config_maps: BTreeMap::new(),
            persistence: None,
            cluster: None,
            paths: Paths::default(),
        }
    }

    /// Checks every rule of `config.md` and reports all problems at once, with native-form
    /// YAML paths (`listeners[1].ports[0].port`). Returns the warnings (`<path>: <message>`)
    /// when valid. [`load_file`](crate::load_file) and [`load_str`](crate::load_str) call
    /// this themselves (with manifest paths where needed); call it after building or
    /// changing a `Config` in code.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        validate::validate(self, &self.paths).into_result()
    }

    /// The listener and port a TCP port number belongs to (port 0 matches nothing).
    pub fn port(&self, port: u16) -> Option<(&Listener, &ListenerPort)> {
        if port == 0 {
            return None;
        }
        self.listeners.iter().find_map(|listener| {
            listener
                .ports
                .iter()
                .find(|p| p.port == port)
                .map(|p| (listener, p))
        })
    }

    /// The authentication named `name`.
    pub fn authentication(&self, name: &str) -> Option<&Authentication> {
        self.authentications.iter().find(|a| a.name == name)
    }

    /// The authorization named `name`.
    pub fn authorization(&self, name: &str) -> Option<&Authorization> {
        self.authorizations.iter().find(|a| a.name == name)
    }

    /// The user-defined issuer named `name` (`None` for [`DEFAULT_ISSUER`], which is built in).
    pub fn issuer(&self, name: &str) -> Option<&Issuer> {
        self.issuers.iter().find(|i| i.name == name)
    }
}
