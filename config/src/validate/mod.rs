//! Semantic validation: every rule of `config.md` that a type cannot express, checked over
//! the whole configuration so that all problems are reported at once.
//!
//! Paths are built from [`Origins`], which knows where each resource came from: native form
//! (`listeners[1]`) or a manifest document (`document 2 (BrokerListener default).spec`).
//!
//! One file per concern: `listeners` (listeners and ports), `auth` (authentications),
//! `authz` (authorization rules: topic filters, `{principal.*}` tokens, globs, base64 keys),
//! `certs` (issuers, certificates, issued secrets), `settings` (secrets, config maps, broker
//! limits, diagnostics), `persistence` (the `persistence:` section).

mod auth;
mod authz;
mod certs;
mod cluster;
mod listeners;
mod persistence;
mod settings;

use std::collections::HashMap;

use crate::error::{ConfigError, Problem};
use crate::model::*;

pub(crate) use crate::paths::{Loc, Paths as Origins};

/// Problems (errors) and warnings found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Report {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem::new(path, message));
    }

    /// `Ok(warnings)` or `Err(Invalid(problems))`.
    pub(crate) fn into_result(self) -> Result<Vec<String>, ConfigError> {
        if self.problems.is_empty() {
            Ok(self.warnings.iter().map(ToString::to_string).collect())
        } else {
            Err(ConfigError::Invalid(self.problems))
        }
    }
}

const NAME_RULE: &str =
    "3–63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit";
const LABEL_RULE: &str =
    "1–63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit";

/// What is wrong with `name` as an RFC 1123 label of `min..=63` characters, if anything.
fn label_fault(name: &str, min: usize) -> Option<String> {
    let len = name.chars().count();
    if len < min || len > 63 {
        return Some(format!("length {len}"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("contains {c:?}"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("starts or ends with '-'".into());
    }
    None
}

/// A resource name (listener, authentication, authorization, issuer, certificate).
fn check_name(report: &mut Report, path: &str, what: &str, name: &str) {
    if name.is_empty() {
        report.error(
            path,
            format!("missing: every {what} needs a name ({NAME_RULE})"),
        );
    } else if let Some(fault) = label_fault(name, 3) {
        report.error(
            path,
            format!("`{name}` is not a valid {what} name ({fault}); allowed: {NAME_RULE}"),
        );
    }
}

/// A secret, config map or service name: an RFC 1123 label, which also keeps it inside
/// `<dataDir>/secrets/` and `<dataDir>/configmaps/`.
fn check_label(report: &mut Report, path: &str, what: &str, name: &str) {
    if let Some(fault) = label_fault(name, 1) {
        report.error(
            path,
            format!("`{name}` is not a valid {what} name ({fault}); allowed: {LABEL_RULE}"),
        );
    }
}

/// Records `key` at `path`; reports it when an earlier path has it already.
fn check_unique<'a>(
    report: &mut Report,
    seen: &mut HashMap<&'a str, String>,
    key: &'a str,
    path: String,
    what: &str,
) {
    if key.is_empty() {
        return;
    }
    match seen.get(key) {
        Some(first) => report.error(path, format!("duplicate {what} `{key}` (also at {first})")),
        None => {
            seen.insert(key, path);
        }
    }
}

fn names_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none is defined".into()
    } else {
        format!("defined: {}", names.join(", "))
    }
}

/// Runs every check.
pub(crate) fn validate(config: &Config, origins: &Origins) -> Report {
    let mut report = Report::default();
    check_unique_names(config, origins, &mut report);
    listeners::check_listeners(config, origins, &mut report);
    for (i, authentication) in config.authentications.iter().enumerate() {
        auth::check_authentication(authentication, &origins.authentication(i), &mut report);
    }
    for (i, authorization) in config.authorizations.iter().enumerate() {
        authz::check_authorization(authorization, &origins.authorization(i), &mut report);
    }
    certs::check_certs(config, origins, &mut report);
    settings::check_files(config, &mut report);
    settings::check_broker(&config.broker, origins, &mut report);
    settings::check_diagnostics(&config.diagnostics, origins, &mut report);
    if let Some(settings) = &config.persistence {
        persistence::check_persistence(settings, &origins.persistence(), &mut report);
    }
    if let Some(settings) = &config.cluster {
        cluster::check_cluster(settings, "cluster", &mut report);
    }
    report
}

fn check_unique_names(config: &Config, origins: &Origins, report: &mut Report) {
    let mut seen = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        check_name(report, &origins.listener(i).name, "listener", &l.name);
        check_unique(
            report,
            &mut seen,
            &l.name,
            origins.listener(i).name,
            "listener name",
        );
    }
    let mut seen = HashMap::new();
    for (i, a) in config.authentications.iter().enumerate() {
        let path = origins.authentication(i).name;
        check_name(report, &path, "authentication", &a.name);
        check_unique(report, &mut seen, &a.name, path, "authentication name");
    }
    let mut seen = HashMap::new();
    for (i, a) in config.authorizations.iter().enumerate() {
        let path = origins.authorization(i).name;
        check_name(report, &path, "authorization", &a.name);
        check_unique(report, &mut seen, &a.name, path, "authorization name");
    }
    let mut seen = HashMap::new();
    for (i, issuer) in config.issuers.iter().enumerate() {
        let path = origins.issuer(i).name;
        check_name(report, &path, "issuer", &issuer.name);
        if issuer.name == DEFAULT_ISSUER {
            report.error(
                &path,
                format!("`{DEFAULT_ISSUER}` is the built-in issuer's name; choose another"),
            );
        }
        check_unique(report, &mut seen, &issuer.name, path, "issuer name");
    }
    let mut seen = HashMap::new();
    for (i, c) in config.certificates.iter().enumerate() {
        let path = origins.certificate(i).name;
        check_name(report, &path, "certificate", &c.name);
        check_unique(report, &mut seen, &c.name, path, "certificate name");
    }
}
