//! Issuers, certificates, and the secrets the broker writes issued certificates to.

use std::collections::HashMap;
use std::time::Duration;

use super::{check_label, check_unique, names_or_none, Origins, Report};
use crate::duration;
use crate::model::*;

pub(super) fn check_issuer_ref(
    config: &Config,
    issuer_ref: &IssuerRef,
    base: &str,
    report: &mut Report,
) {
    if issuer_ref.name != DEFAULT_ISSUER
        && config.issuer(&issuer_ref.name).is_none()
        && !config.paths.is_unreadable("Issuer", &issuer_ref.name)
    {
        report.error(
            format!("{base}.name"),
            format!(
                "no issuer named `{}`; {} (besides the built-in {DEFAULT_ISSUER})",
                issuer_ref.name,
                names_or_none(config.issuers.iter().map(|i| i.name.as_str()))
            ),
        );
    }
    if issuer_ref.group != CERT_MANAGER_GROUP {
        report.error(
            format!("{base}.group"),
            format!(
                "`{}`: only {CERT_MANAGER_GROUP} issuers are built in",
                issuer_ref.group
            ),
        );
    }
}

pub(super) fn check_lifetime(
    lifetime: Duration,
    renew_before: Duration,
    base: &str,
    report: &mut Report,
) {
    if lifetime.is_zero() {
        report.error(format!("{base}.duration"), "must be longer than 0");
    } else if renew_before.is_zero() || renew_before >= lifetime {
        report.error(
            format!("{base}.renewBefore"),
            format!(
                "{} must be above 0 and shorter than duration ({})",
                duration::format(renew_before),
                duration::format(lifetime)
            ),
        );
    }
}

/// A host name or `*.`-wildcard, as a DNS SAN must be.
pub(super) fn check_dns_name(report: &mut Report, path: &str, name: &str) {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let ok = !host.is_empty()
        && name.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !ok {
        report.error(
            path,
            format!(
                "`{name}` is not a DNS name (letters, digits, '-' and '.', optionally *. first)"
            ),
        );
    }
}

pub(super) fn check_certs(config: &Config, origins: &Origins, report: &mut Report) {
    for (i, issuer) in config.issuers.iter().enumerate() {
        if let IssuerSpec::Ca(ca) = &issuer.spec {
            let path = origins.issuer(i).at("ca.secretName");
            check_label(report, &path, "secret", &ca.secret_name);
        }
    }
    // Secrets the broker writes: two writers of one secret would overwrite each other.
    let mut written = HashMap::new();
    for (i, cert) in config.certificates.iter().enumerate() {
        let loc = origins.certificate(i);
        check_label(report, &loc.at("secretName"), "secret", &cert.secret_name);
        check_issuer_ref(config, &cert.issuer_ref, &loc.at("issuerRef"), report);
        check_lifetime(cert.duration, cert.renew_before, &loc.spec, report);
        for (k, dns) in cert.dns_names.iter().enumerate() {
            check_dns_name(report, &loc.at(format!("dnsNames[{k}]")), dns);
        }
        check_unique(
            report,
            &mut written,
            &cert.secret_name,
            loc.at("secretName"),
            "written secret",
        );
    }
    for (i, listener) in config.listeners.iter().enumerate() {
        let loc = origins.listener(i);
        for (j, port) in listener.ports.iter().enumerate() {
            if let Some(Tls::Automatic(spec)) = &port.tls {
                let path = loc.at(format!(
                    "ports[{j}].tls.certManagerCertificateSpec.secretName"
                ));
                check_unique(
                    report,
                    &mut written,
                    &spec.secret_name,
                    path,
                    "written secret",
                );
            }
        }
    }
}
