//! Listeners and ports: service types and names, port numbers, references, TLS.

use std::collections::HashMap;

use super::certs::{check_dns_name, check_issuer_ref, check_lifetime};
use super::{check_label, check_unique, names_or_none, Origins, Report};
use crate::model::*;

pub(super) fn check_listeners(config: &Config, origins: &Origins, report: &mut Report) {
    if config.listeners.is_empty()
        && !origins
            .unreadable
            .iter()
            .any(|(k, _)| *k == "BrokerListener")
    {
        let (path, hint) = if origins.manifest {
            ("manifests", "add a BrokerListener")
        } else {
            ("listeners", "add one with at least one port")
        };
        report.error(path, format!("at least one listener is required; {hint}"));
    }
    let mut ports: HashMap<u16, String> = HashMap::new();
    let metrics_port = config.diagnostics.metrics.prometheus_port;
    let mut service_types: HashMap<ServiceType, String> = HashMap::new();
    let mut service_names = HashMap::new();

    for (i, listener) in config.listeners.iter().enumerate() {
        let loc = origins.listener(i);
        match service_types.get(&listener.service_type) {
            Some(first) => report.error(
                loc.at("serviceType"),
                format!(
                    "a {} listener already exists ({first}); one listener per service type \
                     is allowed: add ports to that listener instead",
                    listener.service_type
                ),
            ),
            None => {
                service_types.insert(listener.service_type, loc.name.clone());
            }
        }
        // A defaulted serviceName is the name, which has been checked already.
        if listener.service_name != listener.name {
            check_label(
                report,
                &loc.at("serviceName"),
                "service",
                &listener.service_name,
            );
        }
        check_unique(
            report,
            &mut service_names,
            &listener.service_name,
            loc.at("serviceName"),
            "serviceName",
        );
        if listener.ports.is_empty() {
            report.error(loc.at("ports"), "at least one port is required");
        }
        for (j, port) in listener.ports.iter().enumerate() {
            let at = |suffix: &str| loc.at(format!("ports[{j}].{suffix}"));
            if port.port != 0 {
                if port.port == metrics_port {
                    report.error(
                        at("port"),
                        format!(
                            "port {} is also the metrics port ({}, default 9600)",
                            port.port,
                            origins.diagnostics("metrics.prometheusPort")
                        ),
                    );
                }
                match ports.get(&port.port) {
                    Some(first) => report.error(
                        at("port"),
                        format!(
                            "port {} is already used by {first}; port numbers are unique \
                             across all listeners (0 = any free port may repeat)",
                            port.port
                        ),
                    ),
                    None => {
                        ports.insert(port.port, at("port"));
                    }
                }
            }
            check_port(config, port, &at, report);
        }
    }
}

fn check_port(
    config: &Config,
    port: &ListenerPort,
    at: &dyn Fn(&str) -> String,
    report: &mut Report,
) {
    if let Some(path) = &port.path {
        if port.protocol != Protocol::WebSockets {
            report.error(at("path"), "`path` applies to WebSockets ports only");
        } else if !path.starts_with('/')
            || path.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
        {
            report.error(
                at("path"),
                format!("`{path}` is not an HTTP path; write e.g. /mqtt (absent = any path)"),
            );
        }
    }
    if let Some(name) = &port.authentication_ref {
        match config.authentication(name) {
            None if config.paths.is_unreadable("BrokerAuthentication", name) => {}
            None => report.error(
                at("authenticationRef"),
                format!(
                    "no authentication named `{name}`; {}",
                    names_or_none(config.authentications.iter().map(|a| a.name.as_str()))
                ),
            ),
            Some(authentication) if authentication.uses_x509() && port.tls.is_none() => report
                .error(
                    at("authenticationRef"),
                    format!(
                        "authentication `{name}` uses X509, which needs TLS on this port \
                         (client certificates come from the TLS handshake): add `tls`"
                    ),
                ),
            Some(_) => {}
        }
    }
    if let Some(name) = &port.authorization_ref {
        if config.authorization(name).is_none()
            && !config.paths.is_unreadable("BrokerAuthorization", name)
        {
            report.error(
                at("authorizationRef"),
                format!(
                    "no authorization named `{name}`; {}",
                    names_or_none(config.authorizations.iter().map(|a| a.name.as_str()))
                ),
            );
        }
        if port.authentication_ref.is_none() {
            report.warn(
                at("authorizationRef"),
                format!(
                    "policy `{name}` is not applied: authorization takes effect only on ports \
                     with an authenticationRef (AIO rule), so every client here may do everything"
                ),
            );
        }
    }
    match &port.tls {
        None => {}
        Some(Tls::Manual(manual)) => {
            check_label(
                report,
                &at("tls.manual.secretRef"),
                "secret",
                &manual.secret_ref,
            );
        }
        Some(Tls::Automatic(spec)) => {
            let base = at("tls.certManagerCertificateSpec");
            check_issuer_ref(
                config,
                &spec.issuer_ref,
                &format!("{base}.issuerRef"),
                report,
            );
            check_lifetime(spec.duration, spec.renew_before, &base, report);
            check_label(
                report,
                &format!("{base}.secretName"),
                "secret",
                &spec.secret_name,
            );
            for (k, dns) in spec.san.dns.iter().enumerate() {
                check_dns_name(report, &format!("{base}.san.dns[{k}]"), dns);
            }
        }
    }
}
