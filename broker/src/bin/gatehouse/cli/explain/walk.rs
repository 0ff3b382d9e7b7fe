//! The decision walk: which port and policy, who the client is (`--client-cert` through
//! the broker's X.509 code), the policy's own verdict ([`Policy::decide`]) and the trace
//! of every rule ([`Policy::trace`]), turned into a [`Report`].

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use gatehouse::auth::x509::{CertIdentifier, PathRole, X509Identity};
use gatehouse::authz::policy::RuleTrace;
use gatehouse::authz::{Policy, Subject};
use gatehouse_config::{AuthenticationMethod, Config};

use super::args::{request, ExplainArgs, Request};
use super::model::*;
use super::rules::{describe_match, near_miss, principal_miss};

pub(super) fn explain(
    args: &ExplainArgs,
    config: &Config,
    config_path: Option<&Path>,
) -> Result<Report, String> {
    let mut attributes = BTreeMap::new();
    for (k, v) in &args.attrs {
        if attributes.insert(k.clone(), v.clone()).is_some() {
            return Err(format!("--attr `{k}` given twice"));
        }
    }
    let request = request(args)?;
    let action = request.action();

    // The port, and through it (or --policy, or the only one) the policy.
    let port = args
        .port
        .as_deref()
        .map(|spec| find_port(config, spec))
        .transpose()?;

    // --client-cert: user name and attributes as the broker's X.509 method derives them.
    let mut username = args.username.clone();
    let certificate = match &args.client_cert {
        None => None,
        Some(file) => {
            let (out, identity) = certificate_identity(config, args, file, port.as_ref())?;
            if let Some(identity) = identity {
                username = Some(identity.username);
                attributes = identity.attributes;
            }
            Some(out)
        }
    };
    let subject = Subject {
        client_id: &args.client_id,
        username: username.as_deref(),
        attributes: &attributes,
    };
    let chosen: Option<usize> = match (&args.policy, &port) {
        (Some(name), _) => Some(authorization_index(config, name)?),
        (None, Some(p)) => match &p.authorization_ref {
            Some(name) => Some(authorization_index(config, name)?),
            None => None,
        },
        (None, None) => match config.authorizations.len() {
            1 => Some(0),
            0 => {
                return Err(match config_path {
                    None => "no --config given: the embedded defaults have no authorizations \
                             (every client may do everything)"
                        .into(),
                    Some(path) => format!(
                        "{} has no authorizations: ports without an authorizationRef allow \
                         everything",
                        path.display()
                    ),
                })
            }
            _ => {
                return Err(format!(
                    "the configuration has {} authorizations ({}): choose one with --policy \
                     NAME, or the port the client connects to with --port LISTENER:PORT",
                    config.authorizations.len(),
                    names(config.authorizations.iter().map(|a| a.name.as_str()))
                ))
            }
        },
    };

    let mut notes = Vec::new();
    match &request {
        Request::Publish(topic) => {
            if let Err(e) = gatehouse_protocol::topic::validate_topic_name(topic) {
                notes.push(format!(
                    "`{topic}` is not a valid PUBLISH topic name ({e}): the broker refuses such \
                     a PUBLISH as malformed before asking the policy"
                ));
            }
        }
        Request::Subscribe(filter) => {
            match gatehouse_protocol::topic::parse_subscription_filter(filter) {
                Err(e) => notes.push(format!(
                    "`{filter}` is not a valid topic filter ({e}); the policy denies it"
                )),
                Ok(parsed) => {
                    if let Some(group) = parsed.share_group {
                        notes.push(format!(
                            "shared subscription (group `{group}`): the rules are checked on \
                             the filter `{}`",
                            parsed.filter
                        ));
                    }
                }
            }
        }
        Request::StateStore { key, .. } => {
            if key.is_empty() {
                notes.push("the key is empty".into());
            }
        }
        Request::Connect => {}
    }

    let (target, key_base64) = match &request {
        Request::Connect => (None, None),
        Request::Publish(t) | Request::Subscribe(t) => (Some(t.clone()), None),
        Request::StateStore { key, .. } => (
            args.target.clone(),
            Some(base64::engine::general_purpose::STANDARD.encode(key)),
        ),
    };
    let mut report = Report {
        allowed: true,
        reason: String::new(),
        action: args.action.name(),
        target,
        key_base64,
        subject: SubjectOut {
            client_id: args.client_id.clone(),
            username: username.clone(),
            attributes: attributes.clone(),
        },
        certificate,
        port: None,
        policy: None,
        rule: None,
        rule_path: None,
        yaml_path: None,
        matched: None,
        near_misses: Vec::new(),
        principals_not_matched: Vec::new(),
        notes,
    };

    let port_applies = port.as_ref().map(|p| p.policy_applied);
    report.port = port;
    if let Some(c) = report.certificate.as_ref().filter(|c| !c.verified) {
        // The broker refuses the CONNECT (0x87) before any policy is asked.
        report.allowed = false;
        report.reason = format!(
            "authentication fails: {} (CONNACK 0x87 Not authorized)",
            c.error
                .as_deref()
                .unwrap_or("the certificate chain does not verify")
        );
        return Ok(report);
    }
    let Some(ai) = chosen else {
        // --port on a port without an authorizationRef.
        report.reason = "the port has no authorizationRef: every client may do everything".into();
        return Ok(report);
    };
    let auth = &config.authorizations[ai];
    let loc = config.paths.authorization(ai);
    let auth_path = loc.spec.clone();
    let policy = Policy::compile(auth, &auth_path).map_err(|problems| {
        format!(
            "{auth_path}: the policy does not compile:\n  {}",
            problems.join("\n  ")
        )
    })?;

    // The verdict: the engine's.
    let decision = policy.decide(&subject, &action);
    let traces: Vec<RuleTrace> = (0..policy.rule_count())
        .filter_map(|i| policy.trace(i, &subject, &action))
        .collect();

    let applied = port_applies.unwrap_or(true);
    report.policy = Some(PolicyOut {
        name: auth.name.clone(),
        label: loc
            .document()
            .map_or_else(|| format!("{} ({})", loc.spec, auth.name), str::to_owned),
        path: auth_path.clone(),
        rules: policy.rule_count(),
        applied,
        allowed: decision.allowed,
        reason: decision.reason.to_owned(),
        used_by: ports_using(config, &auth.name),
    });
    if applied {
        report.allowed = decision.allowed;
        report.reason = decision.reason.to_owned();
    } else {
        report.reason = format!(
            "policy `{}` is not applied on this port: it has no authenticationRef, and \
             authorization takes effect only with authentication (AIO rule), so every client \
             may do everything",
            auth.name
        );
    }

    let rules = &auth.authorization_policies.rules;
    let rule_path = |i: usize| format!("{auth_path}.authorizationPolicies.rules[{i}]");
    if let Some(i) = decision.rule {
        report.rule = Some(i);
        report.rule_path = Some(rule_path(i));
        let described = traces
            .get(i)
            .filter(|t| t.allows)
            .and_then(|t| describe_match(&rules[i], &rule_path(i), t));
        match described {
            Some((path, m)) => {
                report.yaml_path = Some(path);
                report.matched = Some(m);
            }
            None => report.notes.push(format!(
                "the details of rules[{i}] are not available (its trace does not show the \
                 match); the decision above is the engine's"
            )),
        }
    } else if decision.reason == "no rule matched" {
        for (i, t) in traces.iter().enumerate() {
            let path = rule_path(i);
            if t.applies {
                report
                    .near_misses
                    .push(near_miss(&rules[i], i, &path, t, &request));
            } else {
                report
                    .principals_not_matched
                    .push(principal_miss(&rules[i], i, &path, t));
            }
        }
        if rules.is_empty() {
            report
                .notes
                .push("the policy has no rules: it denies everything".into());
        }
    }
    Ok(report)
}

/// `--client-cert`: the X.509 method of the chosen authentication reads the chain with the
/// broker's own code ([`CertIdentifier`], the one `X509Method` uses at CONNECT). The
/// identity is `None` when the chain does not verify (the broker refuses the CONNECT).
/// The device registry (`additionalValidation`) is not consulted.
pub(super) fn certificate_identity(
    config: &Config,
    args: &ExplainArgs,
    file: &Path,
    port: Option<&PortOut>,
) -> Result<(CertificateOut, Option<X509Identity>), String> {
    let name = match (&args.authentication, port) {
        (Some(name), _) => name.clone(),
        (None, Some(p)) => p.authentication_ref.clone().ok_or_else(|| {
            format!(
                "port {}:{} has no authenticationRef: it does not read client certificates",
                p.listener, p.port
            )
        })?,
        (None, None) => {
            let with_x509: Vec<&str> = config
                .authentications
                .iter()
                .filter(|a| {
                    a.authentication_methods
                        .iter()
                        .any(|m| matches!(m, AuthenticationMethod::X509(_)))
                })
                .map(|a| a.name.as_str())
                .collect();
            match with_x509.as_slice() {
                [one] => (*one).to_owned(),
                [] => return Err("--client-cert: no authentication has an X509 method".into()),
                many => {
                    return Err(format!(
                        "--client-cert: several authentications have an X509 method ({}): \
                         choose one with --authentication NAME or --port",
                        many.join(", ")
                    ))
                }
            }
        }
    };
    let (ai, auth) = config
        .authentications
        .iter()
        .enumerate()
        .find(|(_, a)| a.name == name)
        .ok_or_else(|| format!("no authentication named `{name}`"))?;
    let (mi, settings) = auth
        .authentication_methods
        .iter()
        .enumerate()
        .find_map(|(i, m)| match m {
            AuthenticationMethod::X509(settings) => Some((i, settings)),
            _ => None,
        })
        .ok_or_else(|| format!("authentication `{name}` has no X509 method"))?;
    let method_path = config
        .paths
        .authentication(ai)
        .at(format!("authenticationMethods[{mi}]"));
    let identifier =
        CertIdentifier::new(config, settings).map_err(|e| format!("{method_path}: {e}"))?;
    let chain = gatehouse_certs::read_certificates(file)
        .map_err(|e| format!("--client-cert {}: {e}", file.display()))?;
    let mut out = CertificateOut {
        authentication: name,
        method_path,
        presented: chain.len(),
        verified: false,
        error: None,
        path: Vec::new(),
        attributes_from: None,
        matched_certificate: None,
    };
    match identifier.identify(&chain, std::time::SystemTime::now()) {
        Err(e) => {
            out.error = Some(e);
            Ok((out, None))
        }
        Ok(identity) => {
            out.verified = true;
            out.path = identity
                .path
                .iter()
                .map(|c| PathCertOut {
                    role: match c.role {
                        PathRole::Leaf => "leaf",
                        PathRole::Intermediate => "intermediate",
                        PathRole::Anchor => "anchor",
                    },
                    subject: c.subject.to_string(),
                })
                .collect();
            if let Some((index, label)) = &identity.matched {
                out.matched_certificate = Some(*index);
                out.attributes_from = Some(format!(
                    "{}.x509Settings.authorizationAttributes.{label}",
                    out.method_path
                ));
            }
            Ok((out, Some(identity)))
        }
    }
}

pub(super) fn authorization_index(config: &Config, name: &str) -> Result<usize, String> {
    config
        .authorizations
        .iter()
        .position(|a| a.name == name)
        .ok_or_else(|| {
            format!(
                "no authorization named `{name}`; the configuration has {}",
                names(config.authorizations.iter().map(|a| a.name.as_str()))
            )
        })
}

pub(super) fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<String> = list.map(|n| format!("`{n}`")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// `LISTENER:PORT` or `PORT` (which must then be unique).
pub(super) fn find_port(config: &Config, spec: &str) -> Result<PortOut, String> {
    let (listener, number) = match spec.rsplit_once(':') {
        Some((l, n)) => (Some(l), n),
        None => (None, spec),
    };
    let number: u16 = number
        .parse()
        .map_err(|_| format!("--port `{spec}`: expected LISTENER:PORT or PORT"))?;
    let mut found = Vec::new();
    for (li, l) in config.listeners.iter().enumerate() {
        if listener.is_some_and(|name| name != l.name) {
            continue;
        }
        for (pi, p) in l.ports.iter().enumerate() {
            if p.port == number {
                found.push((li, pi));
            }
        }
    }
    let all = || {
        let list: Vec<String> = config
            .listeners
            .iter()
            .flat_map(|l| {
                l.ports
                    .iter()
                    .map(move |p| format!("{}:{}", l.name, p.port))
            })
            .collect();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    match found.as_slice() {
        [(li, pi)] => {
            let l = &config.listeners[*li];
            let p = &l.ports[*pi];
            Ok(PortOut {
                listener: l.name.clone(),
                port: p.port,
                path: config.paths.port(*li, *pi),
                authentication_ref: p.authentication_ref.clone(),
                authorization_ref: p.authorization_ref.clone(),
                policy_applied: p.authorization_ref.is_some() && p.authentication_ref.is_some(),
            })
        }
        [] => Err(format!(
            "--port `{spec}`: no such port; the configuration has {}",
            all()
        )),
        _ => Err(format!(
            "--port `{spec}`: several listeners have port {number}; say which with \
             LISTENER:PORT ({})",
            all()
        )),
    }
}

pub(super) fn ports_using(config: &Config, name: &str) -> Vec<PortUse> {
    let mut out = Vec::new();
    for (li, l) in config.listeners.iter().enumerate() {
        for (pi, p) in l.ports.iter().enumerate() {
            if p.authorization_ref.as_deref() == Some(name) {
                out.push(PortUse {
                    listener: l.name.clone(),
                    port: p.port,
                    path: config.paths.port(li, pi),
                    applied: p.authentication_ref.is_some(),
                });
            }
        }
    }
    out
}
