//! Authentication chains (authorization policies are in `authz`).

use super::{check_label, Loc, Report};
use crate::model::*;

pub(super) fn check_authentication(
    authentication: &Authentication,
    loc: &Loc,
    report: &mut Report,
) {
    if authentication.authentication_methods.is_empty() {
        report.error(
            loc.at("authenticationMethods"),
            "at least one method is required (Custom, ServiceAccountToken, X509 or Password)",
        );
    }
    for (k, method) in authentication.authentication_methods.iter().enumerate() {
        let base = loc.at(format!("authenticationMethods[{k}]"));
        match method {
            AuthenticationMethod::Custom(custom) => {
                check_custom(custom, &format!("{base}.customSettings"), report)
            }
            AuthenticationMethod::ServiceAccountToken(sat) => {
                check_sat(sat, &format!("{base}.serviceAccountTokenSettings"), report)
            }
            AuthenticationMethod::X509(x509) => {
                check_x509(x509, &format!("{base}.x509Settings"), report)
            }
            AuthenticationMethod::Password(password) => {
                check_password(password, &format!("{base}.passwordSettings"), report)
            }
        }
    }
}

fn check_custom(custom: &CustomSettings, base: &str, report: &mut Report) {
    let host = custom
        .endpoint
        .strip_prefix("https://")
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        None => report.error(
            format!("{base}.endpoint"),
            format!(
                "`{}` must start with https:// (the custom authentication API is HTTPS only)",
                custom.endpoint
            ),
        ),
        Some(host) if host.is_empty() || host.contains(char::is_whitespace) => report.error(
            format!("{base}.endpoint"),
            format!("`{}` has no valid host", custom.endpoint),
        ),
        Some(_) => {}
    }
    if let Some(name) = &custom.ca_cert_config_map {
        check_label(
            report,
            &format!("{base}.caCertConfigMap"),
            "config map",
            name,
        );
    }
    if let Some(auth) = &custom.auth {
        check_label(
            report,
            &format!("{base}.auth.x509.secretRef"),
            "secret",
            &auth.x509.secret_ref,
        );
    }
    for (name, value) in &custom.headers {
        let is_token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if name.is_empty() || !name.chars().all(is_token) {
            report.error(
                format!("{base}.headers.{name}"),
                "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
            );
        }
        if value.contains(['\r', '\n', '\0']) {
            report.error(
                format!("{base}.headers.{name}"),
                "header values must not contain line breaks or NUL",
            );
        }
    }
    if custom.timeout.is_zero() {
        report.error(
            format!("{base}.timeout"),
            "must be longer than 0 (default 10s)",
        );
    }
}

fn check_sat(sat: &ServiceAccountTokenSettings, base: &str, report: &mut Report) {
    if sat.audiences.is_empty() {
        report.error(
            format!("{base}.audiences"),
            "at least one audience is required (e.g. aio-internal)",
        );
    }
    for (i, audience) in sat.audiences.iter().enumerate() {
        if audience.trim().is_empty() {
            report.error(format!("{base}.audiences[{i}]"), "empty audience");
        }
    }
    if sat.token_review.is_some() && sat.jwks.is_some() {
        report.error(
            base,
            "`tokenReview` and `jwks` are alternatives: keep one (absent both = in-cluster TokenReview)",
        );
    }
    if let Some(jwks) = &sat.jwks {
        if jwks.issuer.trim().is_empty() {
            report.error(format!("{base}.jwks.issuer"), "empty issuer");
        } else if jwks.file.is_none() && !jwks.issuer.starts_with("https://") {
            report.error(
                format!("{base}.jwks.issuer"),
                format!(
                    "`{}`: without `file`, keys are fetched by OIDC discovery, which needs https://",
                    jwks.issuer
                ),
            );
        }
    }
}

fn check_x509(x509: &X509Settings, base: &str, report: &mut Report) {
    check_label(
        report,
        &format!("{base}.trustedClientCaCert"),
        "config map",
        &x509.trusted_client_ca_cert,
    );
    for (label, entry) in &x509.authorization_attributes {
        // Parsed here with the broker's own parser (RFC 4514), so a subject the broker
        // could not compare is refused with its YAML path before anything starts.
        match crate::dn::parse(&entry.subject) {
            Ok(_) => {}
            Err(crate::dn::DnError::Empty) => report.error(
                format!("{base}.authorizationAttributes.{label}.subject"),
                "empty subject; write a distinguished name like `CN = smart-fan, O = Contoso`",
            ),
            Err(e) => report.error(
                format!("{base}.authorizationAttributes.{label}.subject"),
                format!(
                    "`{}` is not a distinguished name: {e}; write it like `CN = smart-fan, O = Contoso` (RFC 4514)",
                    entry.subject
                ),
            ),
        }
    }
    match (x509.additional_validation, &x509.device_registry) {
        (AdditionalValidation::AzureDeviceRegistry, None) => report.error(
            format!("{base}.additionalValidation"),
            "AzureDeviceRegistry needs `deviceRegistry: { file: <devices.yaml> }` (Gatehouse extension)",
        ),
        (AdditionalValidation::None, Some(_)) => report.warn(
            format!("{base}.deviceRegistry"),
            "ignored: additionalValidation is None",
        ),
        _ => {}
    }
    if let Some(registry) = &x509.device_registry {
        if registry.recheck_interval.is_zero() {
            report.error(
                format!("{base}.deviceRegistry.recheckInterval"),
                "must be longer than 0 (default 10m)",
            );
        }
    }
}

/// `passwordSettings` (issue 16). The file itself is read when the chain is built.
fn check_password(settings: &PasswordSettings, base: &str, report: &mut Report) {
    if settings.password_file.as_os_str().is_empty() {
        report.error(
            format!("{base}.passwordFile"),
            "empty path; name the password file (`gatehouse passwd -c <file> <user>` writes one)",
        );
    }
    for (user, attributes) in &settings.user_attributes {
        if user.is_empty() || user.contains(':') || user.contains(char::is_control) {
            report.error(
                format!("{base}.userAttributes.{user}"),
                "not a user name a password file can hold (empty, or with `:` or a control character)",
            );
        }
        for name in attributes.keys() {
            if name.trim().is_empty() {
                report.error(
                    format!("{base}.userAttributes.{user}"),
                    "empty attribute name",
                );
            }
        }
    }
}
