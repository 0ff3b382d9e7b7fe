//! The preflight: everything start-up needs besides free ports, checked at once.
//!
//! `gatehouse check` and [`Server::start`](crate::Server::start) both run it, so a check
//! that passes means the broker starts (short of a port in use), and both name the same
//! problems at the same YAML paths ([`gatehouse_config::Paths`]):
//! - every file, folder, secret and config map the configuration refers to exists and
//!   parses: certificates as PEM certificates, keys as keys that match their certificate,
//!   CA bundles (`files`);
//! - every authentication method has what it needs here, e.g. a backend for service
//!   account tokens outside Kubernetes, and a custom server URL that parses (`auth`);
//! - TLS: a Manual port's secret (missing is a warning: the port waits for it, as in
//!   AIO), the CA secrets of the issuers, the data folder (`tls`);
//! - policies no port uses (a warning; their problems are warnings too, since they do not
//!   stop start-up).
//!
//! [`Mode::Check`] also builds each authentication method, each chain and each policy as
//! start-up does, which catches what only building finds (a JWKS that does not parse, an
//! unusable kubeconfig). [`Mode::Start`] leaves that to start-up, which builds them next.

mod auth;
mod files;
mod tls;

use std::collections::BTreeMap;
use std::fmt;

use gatehouse_config::Config;

use crate::authz::Policy;

/// What the preflight is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `gatehouse check`: also build every method, chain and policy.
    Check,
    /// Start-up, which builds them itself right after.
    Start,
}

/// One problem at one place in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The YAML path, as in validation messages.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Everything found: errors stop start-up, warnings do not.
#[derive(Debug, Default)]
pub struct Preflight {
    pub errors: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Preflight {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Finding {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Finding {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Where findings about one resource go: errors of a resource no port uses become
/// warnings, since start-up does not load it.
struct Sink<'a> {
    report: &'a mut Preflight,
    /// The references that make the resource used (`listeners[0].ports[1].authenticationRef`),
    /// named in its errors so that they say which ports cannot start; empty = unused.
    used_by: Vec<String>,
    errors: usize,
}

impl<'a> Sink<'a> {
    fn new(report: &'a mut Preflight, used_by: Vec<String>) -> Sink<'a> {
        Sink {
            report,
            used_by,
            errors: 0,
        }
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors += 1;
        if !self.used_by.is_empty() {
            let message = message.into();
            self.report.error(
                path,
                format!("{message} (used by {})", self.used_by.join(", ")),
            );
        } else {
            let message = message.into();
            self.report.warn(
                path,
                format!("{message} (not used by any port, so this does not stop start-up)"),
            );
        }
    }
}

/// Runs every check on `config` (already validated) without opening a port or writing a
/// file.
pub fn run(config: &Config, mode: Mode) -> Preflight {
    let mut report = Preflight::default();
    // Every port's references, by resource name.
    let mut authentications: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut authorizations: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (li, listener) in config.listeners.iter().enumerate() {
        for (pi, port) in listener.ports.iter().enumerate() {
            if let Some(name) = &port.authentication_ref {
                let at = format!("{}.authenticationRef", config.paths.port(li, pi));
                authentications.entry(name).or_default().push(at);
            }
            if let Some(name) = &port.authorization_ref {
                let at = format!("{}.authorizationRef", config.paths.port(li, pi));
                authorizations.entry(name).or_default().push(at);
            }
        }
    }

    for (i, authentication) in config.authentications.iter().enumerate() {
        let loc = config.paths.authentication(i);
        let used_by = authentications
            .get(authentication.name.as_str())
            .cloned()
            .unwrap_or_default();
        if used_by.is_empty() {
            report.warn(
                &loc.name,
                format!(
                    "authentication `{}` is not used: no port's authenticationRef names it",
                    authentication.name
                ),
            );
        }
        auth::check(config, i, mode, &mut Sink::new(&mut report, used_by));
    }
    for (i, authorization) in config.authorizations.iter().enumerate() {
        let loc = config.paths.authorization(i);
        let used_by = authorizations
            .get(authorization.name.as_str())
            .cloned()
            .unwrap_or_default();
        if used_by.is_empty() {
            report.warn(
                &loc.name,
                format!(
                    "authorization `{}` is not used: no port's authorizationRef names it",
                    authorization.name
                ),
            );
        }
        if mode == Mode::Check {
            if let Err(problems) = Policy::compile(authorization, &loc.spec) {
                let mut sink = Sink::new(&mut report, used_by);
                for problem in problems {
                    sink.error("", problem);
                }
            }
        }
    }
    tls::check(config, &mut report);
    if config.persistence.is_some() {
        files::data_dir(
            config,
            "persistence keeps gatehouse.redb there",
            &mut report,
        );
    }
    report
}

#[cfg(test)]
mod tests;
