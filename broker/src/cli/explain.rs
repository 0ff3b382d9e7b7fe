//! `gatehouse explain`: would this client be allowed to do this, and which rule says so?
//!
//! The verdict is always the broker's own: the policy is compiled with
//! [`Policy::compile`] and asked with [`Policy::decide`], exactly as a port does. The
//! explanation around it (which principal, topic filter, client id glob or key matched,
//! what each `{principal.*}` template became, and for a denial the rules that came close)
//! comes from [`Policy::trace`], which runs the same checks and keeps their results.
//!
//! Exit code: 0 allowed, 1 denied, 2 usage or configuration error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::{Args, ValueEnum};
use gatehouse::auth::x509::{CertIdentifier, PathRole, X509Identity};
use gatehouse::authz::policy::{EntryCheck, ResourceCheck, ResourceKind, RuleTrace};
use gatehouse::authz::{Action, Policy, Subject};
use gatehouse_config::{
    AuthenticationMethod, AuthorizationRule, BrokerResourceMethod, Config, KeyType,
    StateStoreMethod,
};
use serde::{Deserialize, Serialize};

const ALLOWED: u8 = 0;
const DENIED: u8 = 1;
const USAGE: u8 = 2;

#[derive(Args)]
#[command(after_help = "\
Which policy: --policy NAME; or --port, which also applies the port's rules (no \
authorizationRef: everything allowed; no authenticationRef: the policy is not applied, \
AIO rule); or, without either, the configuration's only authorization.

Examples:
  gatehouse explain --config gatehouse.yaml --client-id temperature-sensor \\
      --attr organization=contoso publish /sensor/contoso
  gatehouse explain -c gatehouse.yaml --port authz:8883 --client-id dev-1 \\
      --username monitor subscribe '/sensor/#' --json
  gatehouse explain -c gatehouse.yaml --client-id dev-1 get --binary-key AAEC

Exit code: 0 allowed, 1 denied, 2 usage or configuration error.")]
pub struct ExplainArgs {
    /// What the client does. State store: get and keynotify read, set, del and vdel write.
    #[arg(value_enum, value_name = "ACTION")]
    action: Verb,
    /// The topic (publish), topic filter (subscribe; `$share/GROUP/FILTER` is checked on
    /// FILTER) or state store key (UTF-8 text; see --binary-key). None for connect.
    #[arg(value_name = "TARGET")]
    target: Option<String>,
    /// The client id of the MQTT CONNECT.
    #[arg(long, value_name = "ID")]
    client_id: String,
    /// The user name authentication gives the client (X.509: the certificate's CN).
    #[arg(long, value_name = "NAME")]
    username: Option<String>,
    /// An attribute authentication gives the client; repeatable.
    #[arg(long = "attr", value_name = "KEY=VALUE", value_parser = parse_attr)]
    attrs: Vec<(String, String)>,
    /// X.509: the certificate chain the client presents in the TLS handshake (PEM, leaf
    /// first, as sent, extra certificates included). The user name and attributes are then
    /// derived exactly as the broker derives them: the chain is verified against the
    /// authentication's trusted client CAs and attributes come from the verified path only.
    /// Replaces --username and --attr.
    #[arg(long, value_name = "PEM", conflicts_with_all = ["username", "attrs"])]
    client_cert: Option<PathBuf>,
    /// With --client-cert: the authentication (BrokerAuthentication) whose X.509 method reads
    /// the chain. Default: the --port's authenticationRef, or the configuration's only
    /// authentication with an X.509 method.
    #[arg(long, value_name = "NAME", requires = "client_cert")]
    authentication: Option<String>,
    /// A binary state store key, in base64 (instead of TARGET).
    #[arg(long, value_name = "BASE64", conflicts_with = "target")]
    binary_key: Option<String>,
    /// The authorization (BrokerAuthorization) to ask, by name.
    #[arg(long, value_name = "NAME", conflicts_with = "port")]
    policy: Option<String>,
    /// The port the client connects to, `LISTENER:PORT` or `PORT`: its authorizationRef
    /// picks the policy, with the AIO rules for ports without one or without an
    /// authenticationRef.
    #[arg(long, value_name = "[LISTENER:]PORT")]
    port: Option<String>,
    /// Print the answer as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Verb {
    /// CONNECT (no TARGET).
    Connect,
    /// PUBLISH to the topic TARGET (also what a will needs).
    Publish,
    /// SUBSCRIBE to the filter TARGET.
    Subscribe,
    /// State store get of key TARGET (read).
    Get,
    /// State store keynotify of key TARGET (read).
    Keynotify,
    /// State store set of key TARGET (write).
    Set,
    /// State store del of key TARGET (write).
    Del,
    /// State store vdel of key TARGET (write).
    Vdel,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Connect => "connect",
            Verb::Publish => "publish",
            Verb::Subscribe => "subscribe",
            Verb::Get => "get",
            Verb::Keynotify => "keynotify",
            Verb::Set => "set",
            Verb::Del => "del",
            Verb::Vdel => "vdel",
        }
    }

    /// `Some(write)` for state store operations.
    fn state_store(self) -> Option<bool> {
        match self {
            Verb::Get | Verb::Keynotify => Some(false),
            Verb::Set | Verb::Del | Verb::Vdel => Some(true),
            Verb::Connect | Verb::Publish | Verb::Subscribe => None,
        }
    }
}

/// `KEY=VALUE`; the value may be empty or contain `=`.
fn parse_attr(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some(("", _)) => Err("expected KEY=VALUE, the attribute name is empty".into()),
        Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
        None => Err("expected KEY=VALUE (no `=` found)".into()),
    }
}

/// Runs `gatehouse explain`; `config_path` is where `config` came from (for YAML paths in
/// the manifest form), `None` for the embedded defaults.
pub fn run(args: &ExplainArgs, config: &Config, config_path: Option<&Path>) -> ExitCode {
    match explain(args, config, config_path) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => return usage(format!("cannot write JSON: {e}")),
                }
            } else {
                print!("{}", human(&report));
            }
            ExitCode::from(if report.allowed { ALLOWED } else { DENIED })
        }
        Err(message) => usage(message),
    }
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatehouse explain: {message}");
    ExitCode::from(USAGE)
}

// ---------------------------------------------------------------------------------------
// The answer, as printed with --json (and rendered for humans by `human`).

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    /// The answer for this client: the policy's, unless the port does not apply it.
    allowed: bool,
    /// Why: the engine's reason (`allowed by rule`, `no rule matched`, `invalid topic
    /// filter`), or what the port does instead.
    reason: String,
    action: &'static str,
    /// Topic, filter or key as given (`None` for connect and binary keys).
    target: Option<String>,
    /// State store key, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<String>,
    subject: SubjectOut,
    /// With --client-cert: how the broker reads the chain (the subject comes from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<CertificateOut>,
    /// With --port: the port and what it does.
    port: Option<PortOut>,
    /// The policy asked (none when the port has no authorizationRef).
    policy: Option<PolicyOut>,
    /// The rule that allowed it (index in `rules`).
    rule: Option<usize>,
    /// YAML path of that rule.
    rule_path: Option<String>,
    /// YAML path of the entry that allowed it: a topic, a Connect resource (or its client
    /// id glob), a state store key.
    yaml_path: Option<String>,
    /// Details of what allowed it.
    #[serde(rename = "match")]
    matched: Option<MatchOut>,
    /// For a denial: rules whose principals matched but no resource allowed the action.
    near_misses: Vec<NearMiss>,
    /// For a denial: rules whose principals did not match, and what was tried.
    principals_not_matched: Vec<PrincipalMiss>,
    notes: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SubjectOut {
    client_id: String,
    username: Option<String>,
    attributes: BTreeMap<String, String>,
}

/// `--client-cert`: the X.509 method that reads the chain and what it made of it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CertificateOut {
    /// The authentication (BrokerAuthentication) name.
    authentication: String,
    /// YAML path of its X.509 method.
    method_path: String,
    /// Certificates in the file (leaf first).
    presented: usize,
    /// Whether the chain verifies against the trusted client CAs now, for client auth.
    verified: bool,
    /// Why it does not (the broker refuses the CONNECT with 0x87 Not authorized).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The verified path: leaf, the intermediates the verifier chained through, the
    /// trusted CA; where attributes are looked up, in this order.
    path: Vec<PathCertOut>,
    /// YAML path of the `authorizationAttributes` entry that gave the attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes_from: Option<String>,
    /// Index in `path` of the certificate whose subject matched that entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    matched_certificate: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PathCertOut {
    /// `leaf`, `intermediate` or `anchor`.
    role: &'static str,
    /// RFC 4514, as parsed from the certificate.
    subject: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PortOut {
    listener: String,
    port: u16,
    path: String,
    authentication_ref: Option<String>,
    authorization_ref: Option<String>,
    /// Whether the port applies a policy (an authorizationRef and an authenticationRef).
    policy_applied: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PolicyOut {
    name: String,
    /// YAML path of the authorization.
    path: String,
    /// How to name it to people: `authorizations[0] (seed-policy)`.
    #[serde(skip)]
    label: String,
    rules: usize,
    /// Whether this decision is the client's (false: the port does not apply the policy).
    applied: bool,
    /// The policy's own decision ([`Policy::decide`]).
    allowed: bool,
    reason: String,
    /// The ports whose authorizationRef names it.
    used_by: Vec<PortUse>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PortUse {
    listener: String,
    port: u16,
    path: String,
    /// False when the port has no authenticationRef (AIO rule).
    applied: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchOut {
    principal: Option<PrincipalOut>,
    /// YAML path of the resource.
    resource: String,
    /// `Connect`, `Publish`, `Subscribe`, or the state store method.
    method: &'static str,
    /// State store: the key type (`Pattern`, `String`, `Binary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<&'static str>,
    /// The topic filter or key that matched, before and after substitution.
    entry: Option<EntryOut>,
    /// The resource's client id glob that let the client id through, if it has any.
    client_id_glob: Option<EntryOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalOut {
    path: String,
    /// `clientIds`, `usernames` or `attributes`.
    field: &'static str,
    /// As written: a client id or user name template, or an attribute set.
    written: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryOut {
    path: String,
    /// As written in the rule.
    written: String,
    /// After `{principal.*}` substitution; `None` when a token has no usable value for
    /// this client (the entry then matches nothing).
    substituted: Option<String>,
    matched: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NearMiss {
    rule: usize,
    rule_path: String,
    principal: Option<PrincipalOut>,
    /// The rule's resources for this action; empty when it has none.
    resources: Vec<ResourceOut>,
    /// One line on why none allowed it.
    why: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResourceOut {
    path: String,
    /// `Connect`, `Publish`, `Subscribe`, or the state store method (`Read`, `Write`,
    /// `ReadWrite`).
    method: &'static str,
    /// State store: the key type.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_type: Option<&'static str>,
    client_ids: Vec<EntryOut>,
    client_allowed: bool,
    method_allows: bool,
    /// Topics or keys.
    entries: Vec<EntryOut>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PrincipalMiss {
    rule: usize,
    rule_path: String,
    /// Every principal entry, none of which matched.
    tried: Vec<Tried>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tried {
    path: String,
    field: &'static str,
    /// As written: a template, or an attribute set.
    written: serde_json::Value,
    /// Client ids and user names: after substitution (`None`: a token has no value).
    #[serde(skip_serializing_if = "Option::is_none")]
    substituted: Option<Option<String>>,
    /// Attribute sets: names the client lacks, and names it has with another value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    different: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Building the answer.

/// The request, owned.
enum Request {
    Connect,
    Publish(String),
    Subscribe(String),
    StateStore { write: bool, key: Vec<u8> },
}

impl Request {
    fn action(&self) -> Action<'_> {
        match self {
            Request::Connect => Action::Connect,
            Request::Publish(t) => Action::Publish(t),
            Request::Subscribe(f) => Action::Subscribe(f),
            Request::StateStore { write, key } => Action::StateStore { write: *write, key },
        }
    }
}

fn request(args: &ExplainArgs) -> Result<Request, String> {
    let verb = args.action.name();
    if let Some(write) = args.action.state_store() {
        let key = match (&args.target, &args.binary_key) {
            (Some(text), None) => text.as_bytes().to_vec(),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("--binary-key `{b64}` is not base64: {e}"))?,
            (None, None) => return Err(format!("`{verb}` needs a KEY (or --binary-key BASE64)")),
            (Some(_), Some(_)) => return Err("give either KEY or --binary-key, not both".into()),
        };
        return Ok(Request::StateStore { write, key });
    }
    if args.binary_key.is_some() {
        return Err(format!(
            "--binary-key is for state store keys (get, keynotify, set, del, vdel), not `{verb}`"
        ));
    }
    match (args.action, &args.target) {
        (Verb::Connect, None) => Ok(Request::Connect),
        (Verb::Connect, Some(t)) => Err(format!("`connect` takes no TARGET (got `{t}`)")),
        (Verb::Publish, Some(t)) => Ok(Request::Publish(t.clone())),
        (Verb::Subscribe, Some(f)) => Ok(Request::Subscribe(f.clone())),
        (_, None) => Err(format!(
            "`{verb}` needs a TARGET: the {}",
            if args.action == Verb::Publish {
                "topic"
            } else {
                "topic filter"
            }
        )),
        _ => unreachable!("state store verbs are handled above"),
    }
}

fn explain(
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
    let paths = Paths::read(config_path);

    // The port, and through it (or --policy, or the only one) the policy.
    let port = args
        .port
        .as_deref()
        .map(|spec| find_port(config, spec, &paths))
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
    let auth_path = paths.authorization(ai, &auth.name);
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
        label: paths.authorization_label(ai, &auth.name),
        path: auth_path.clone(),
        rules: policy.rule_count(),
        applied,
        allowed: decision.allowed,
        reason: decision.reason.to_owned(),
        used_by: ports_using(config, &auth.name, &paths),
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
fn certificate_identity(
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
    let method_path = format!("authentications[{ai}].authenticationMethods[{mi}]");
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

fn authorization_index(config: &Config, name: &str) -> Result<usize, String> {
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

fn names<'a>(list: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<String> = list.map(|n| format!("`{n}`")).collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// `LISTENER:PORT` or `PORT` (which must then be unique).
fn find_port(config: &Config, spec: &str, paths: &Paths) -> Result<PortOut, String> {
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
                path: paths.port(*li, &l.name, *pi),
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

fn ports_using(config: &Config, name: &str, paths: &Paths) -> Vec<PortUse> {
    let mut out = Vec::new();
    for (li, l) in config.listeners.iter().enumerate() {
        for (pi, p) in l.ports.iter().enumerate() {
            if p.authorization_ref.as_deref() == Some(name) {
                out.push(PortUse {
                    listener: l.name.clone(),
                    port: p.port,
                    path: paths.port(li, &l.name, pi),
                    applied: p.authentication_ref.is_some(),
                });
            }
        }
    }
    out
}

fn method_name(kind: ResourceKind) -> &'static str {
    match kind {
        ResourceKind::Connect => "Connect",
        ResourceKind::Publish => "Publish",
        ResourceKind::Subscribe => "Subscribe",
        ResourceKind::StateStore => "state store",
    }
}

/// YAML index of the resource a trace's [`ResourceCheck`] comes from.
fn resource_index(rule: &AuthorizationRule, check: &ResourceCheck) -> Option<usize> {
    let method = match check.kind {
        ResourceKind::Connect => BrokerResourceMethod::Connect,
        ResourceKind::Publish => BrokerResourceMethod::Publish,
        ResourceKind::Subscribe => BrokerResourceMethod::Subscribe,
        ResourceKind::StateStore => {
            return (check.position < rule.state_store_resources.len()).then_some(check.position)
        }
    };
    rule.broker_resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.method == method)
        .nth(check.position)
        .map(|(j, _)| j)
}

/// A resource of the rule, as written, with its YAML path.
struct Written<'a> {
    path: String,
    method: &'static str,
    key_type: Option<&'static str>,
    client_ids: &'a [String],
    /// Topics or keys.
    items: &'a [String],
    /// `topics` or `keys`.
    items_field: &'static str,
}

fn written<'a>(
    rule: &'a AuthorizationRule,
    rule_path: &str,
    check: &ResourceCheck,
) -> Option<Written<'a>> {
    let j = resource_index(rule, check)?;
    Some(if check.kind == ResourceKind::StateStore {
        let r = &rule.state_store_resources[j];
        Written {
            path: format!("{rule_path}.stateStoreResources[{j}]"),
            method: match r.method {
                StateStoreMethod::Read => "Read",
                StateStoreMethod::Write => "Write",
                StateStoreMethod::ReadWrite => "ReadWrite",
            },
            key_type: Some(match r.key_type {
                KeyType::Pattern => "Pattern",
                KeyType::String => "String",
                KeyType::Binary => "Binary",
            }),
            client_ids: &[],
            items: &r.keys,
            items_field: "keys",
        }
    } else {
        let r = &rule.broker_resources[j];
        Written {
            path: format!("{rule_path}.brokerResources[{j}]"),
            method: method_name(check.kind),
            key_type: None,
            client_ids: &r.client_ids,
            items: &r.topics,
            items_field: "topics",
        }
    })
}

fn entries(base: &str, field: &str, written: &[String], checks: &[EntryCheck]) -> Vec<EntryOut> {
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| EntryOut {
            path: format!("{base}.{field}[{i}]"),
            written: written.get(i).cloned().unwrap_or_default(),
            substituted: c.rendered.clone(),
            matched: c.matched,
        })
        .collect()
}

/// The first principal entry that matched.
fn principal_out(rule: &AuthorizationRule, rule_path: &str, t: &RuleTrace) -> Option<PrincipalOut> {
    let p = &rule.principals;
    if let Some(i) = t.principals.client_ids.iter().position(|c| c.matched) {
        return Some(PrincipalOut {
            path: format!("{rule_path}.principals.clientIds[{i}]"),
            field: "clientIds",
            written: p.client_ids.get(i).cloned().unwrap_or_default().into(),
        });
    }
    if let Some(i) = t.principals.usernames.iter().position(|c| c.matched) {
        return Some(PrincipalOut {
            path: format!("{rule_path}.principals.usernames[{i}]"),
            field: "usernames",
            written: p.usernames.get(i).cloned().unwrap_or_default().into(),
        });
    }
    let i = t.principals.attributes.iter().position(|c| c.matched)?;
    Some(PrincipalOut {
        path: format!("{rule_path}.principals.attributes[{i}]"),
        field: "attributes",
        written: serde_json::to_value(p.attributes.get(i).cloned().unwrap_or_default())
            .unwrap_or_default(),
    })
}

/// The YAML path and details of what allowed the action in rule `t` (which allows it).
fn describe_match(
    rule: &AuthorizationRule,
    rule_path: &str,
    t: &RuleTrace,
) -> Option<(String, MatchOut)> {
    let check = t.resources.iter().find(|r| r.allows)?;
    let w = written(rule, rule_path, check)?;
    let client_id_glob = check
        .client_ids
        .iter()
        .position(|c| c.matched)
        .map(|i| entries(&w.path, "clientIds", w.client_ids, &check.client_ids).swap_remove(i));
    let entry = check
        .items
        .iter()
        .position(|c| c.matched)
        .map(|i| entries(&w.path, w.items_field, w.items, &check.items).swap_remove(i));
    let path = match (&entry, &client_id_glob) {
        (Some(e), _) => e.path.clone(),
        (None, Some(g)) => g.path.clone(),
        (None, None) => w.path.clone(),
    };
    Some((
        path,
        MatchOut {
            principal: principal_out(rule, rule_path, t),
            resource: w.path,
            method: w.method,
            key_type: w.key_type,
            entry,
            client_id_glob,
        },
    ))
}

fn near_miss(
    rule: &AuthorizationRule,
    i: usize,
    rule_path: &str,
    t: &RuleTrace,
    request: &Request,
) -> NearMiss {
    let mut resources = Vec::new();
    for check in &t.resources {
        let Some(w) = written(rule, rule_path, check) else {
            continue;
        };
        resources.push(ResourceOut {
            client_ids: entries(&w.path, "clientIds", w.client_ids, &check.client_ids),
            entries: entries(&w.path, w.items_field, w.items, &check.items),
            path: w.path,
            method: w.method,
            key_type: w.key_type,
            client_allowed: check.client_allowed,
            method_allows: check.method_allows,
        });
    }
    let why = match request {
        _ if resources.is_empty() => match request {
            Request::StateStore { .. } => "the rule has no stateStoreResources".to_owned(),
            _ => format!(
                "the rule has no {} entry in brokerResources",
                method_name(kind_of(request))
            ),
        },
        Request::Connect => "no Connect resource lets this client id through".to_owned(),
        Request::Publish(topic) => format!("no Publish topic of the rule matches `{topic}`"),
        Request::Subscribe(filter) => {
            format!("no Subscribe topic of the rule contains `{filter}`")
        }
        Request::StateStore { write, .. } => format!(
            "no stateStoreResources entry allows this {} on this key",
            if *write { "write" } else { "read" }
        ),
    };
    NearMiss {
        rule: i,
        rule_path: rule_path.to_owned(),
        principal: principal_out(rule, rule_path, t),
        resources,
        why,
    }
}

fn kind_of(request: &Request) -> ResourceKind {
    match request {
        Request::Connect => ResourceKind::Connect,
        Request::Publish(_) => ResourceKind::Publish,
        Request::Subscribe(_) => ResourceKind::Subscribe,
        Request::StateStore { .. } => ResourceKind::StateStore,
    }
}

fn principal_miss(
    rule: &AuthorizationRule,
    i: usize,
    rule_path: &str,
    t: &RuleTrace,
) -> PrincipalMiss {
    let p = &rule.principals;
    let mut tried = Vec::new();
    for (field, written, checks) in [
        ("clientIds", &p.client_ids, &t.principals.client_ids),
        ("usernames", &p.usernames, &t.principals.usernames),
    ] {
        for (k, c) in checks.iter().enumerate() {
            tried.push(Tried {
                path: format!("{rule_path}.principals.{field}[{k}]"),
                field,
                written: written.get(k).cloned().unwrap_or_default().into(),
                substituted: Some(c.rendered.clone()),
                missing: Vec::new(),
                different: Vec::new(),
            });
        }
    }
    for (k, c) in t.principals.attributes.iter().enumerate() {
        tried.push(Tried {
            path: format!("{rule_path}.principals.attributes[{k}]"),
            field: "attributes",
            written: serde_json::to_value(p.attributes.get(k).cloned().unwrap_or_default())
                .unwrap_or_default(),
            substituted: None,
            missing: c.missing.clone(),
            different: c.different.clone(),
        });
    }
    PrincipalMiss {
        rule: i,
        rule_path: rule_path.to_owned(),
        tried,
    }
}

// ---------------------------------------------------------------------------------------
// YAML paths: native form `authorizations[0]`, manifest form as the configuration crate
// prints them, `document 3 (BrokerAuthorization seed-policy).spec`.

struct Paths {
    /// Manifest form: (document number from 1, kind, metadata.name) of every document.
    documents: Option<Vec<(usize, String, String)>>,
}

impl Paths {
    fn read(config_path: Option<&Path>) -> Paths {
        let documents = config_path
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| manifest_documents(&text));
        Paths { documents }
    }

    fn document(&self, kind: &str, name: &str) -> Option<String> {
        self.documents.as_ref()?.iter().find_map(|(n, k, m)| {
            (k == kind && m == name).then(|| format!("document {n} ({kind} {name})"))
        })
    }

    fn authorization(&self, index: usize, name: &str) -> String {
        match self.document("BrokerAuthorization", name) {
            Some(doc) => format!("{doc}.spec"),
            None => format!("authorizations[{index}]"),
        }
    }

    fn authorization_label(&self, index: usize, name: &str) -> String {
        match self.document("BrokerAuthorization", name) {
            Some(doc) => doc,
            None => format!("authorizations[{index}] ({name})"),
        }
    }

    fn port(&self, listener: usize, name: &str, port: usize) -> String {
        match self.document("BrokerListener", name) {
            Some(doc) => format!("{doc}.spec.ports[{port}]"),
            None => format!("listeners[{listener}].ports[{port}]"),
        }
    }
}

/// The documents of a manifest stream (any document with `apiVersion` or `kind`, as the
/// configuration crate decides), numbered from 1 as in its messages; `None` for the native
/// form.
fn manifest_documents(text: &str) -> Option<Vec<(usize, String, String)>> {
    let mut docs = Vec::new();
    let mut manifest = false;
    for (index, document) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = serde_norway::Value::deserialize(document).ok()?;
        manifest |= value.get("apiVersion").is_some() || value.get("kind").is_some();
        let kind = value.get("kind").and_then(serde_norway::Value::as_str);
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(serde_norway::Value::as_str);
        if let (Some(kind), Some(name)) = (kind, name) {
            docs.push((index + 1, kind.to_owned(), name.to_owned()));
        }
    }
    manifest.then_some(docs)
}

// ---------------------------------------------------------------------------------------
// The human form.

/// A value as printed in the subject line: quoted when it has spaces or separators.
fn show(value: &str) -> String {
    if value.is_empty() || value.contains(|c: char| c.is_whitespace() || ",={}\"".contains(c)) {
        format!("{value:?}")
    } else {
        value.to_owned()
    }
}

fn show_set(set: &serde_json::Value) -> String {
    let pairs: Vec<String> = set
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{}={}", show(k), show(v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default();
    format!("{{{}}}", pairs.join(", "))
}

fn show_written(v: &serde_json::Value) -> String {
    match v.as_str() {
        Some(s) => s.to_owned(),
        None => show_set(v),
    }
}

/// `written -> substituted`, or just `written` when substitution changed nothing.
fn show_entry(e: &EntryOut) -> String {
    match &e.substituted {
        Some(s) if *s == e.written => s.clone(),
        Some(s) => format!("{} -> {s}", e.written),
        None => format!("{} -> (no value for a token: matches nothing)", e.written),
    }
}

fn relative<'a>(path: &'a str, base: &str) -> &'a str {
    path.strip_prefix(base)
        .and_then(|p| p.strip_prefix('.'))
        .unwrap_or(path)
}

fn human(r: &Report) -> String {
    let mut out = String::new();
    let verdict = if r.allowed { "ALLOWED" } else { "DENIED" };
    let target = match (&r.target, &r.key_base64) {
        (Some(t), _) => format!(" {t}"),
        (None, Some(b64)) => format!(" (binary key, base64 {b64})"),
        (None, None) => String::new(),
    };
    let _ = write!(out, "{verdict}  {}{target}", r.action);
    let decided_by_rule = r.allowed && r.policy.as_ref().is_some_and(|p| p.applied);
    if !decided_by_rule {
        let short = match (&r.port, &r.policy) {
            (Some(_), None) => "the port has no authorizationRef".to_owned(),
            (Some(_), Some(p)) if !p.applied => "the port does not apply the policy".to_owned(),
            _ => r.reason.clone(),
        };
        let _ = write!(out, "  — {short}");
    }
    out.push('\n');

    if let Some(p) = &r.port {
        let _ = writeln!(
            out,
            "  port: {}:{} (YAML: {}) authenticationRef={} authorizationRef={}",
            p.listener,
            p.port,
            p.path,
            p.authentication_ref.as_deref().unwrap_or("-"),
            p.authorization_ref.as_deref().unwrap_or("-"),
        );
        if !p.policy_applied {
            let _ = writeln!(out, "  {}", r.reason);
        }
    }
    let attrs: Vec<String> = r
        .subject
        .attributes
        .iter()
        .map(|(k, v)| format!("{}={}", show(k), show(v)))
        .collect();
    let subject_line = format!(
        "  subject: clientId={} username={} attributes={{{}}}\n",
        show(&r.subject.client_id),
        r.subject.username.as_deref().map_or("-".into(), show),
        attrs.join(", ")
    );

    if let Some(c) = &r.certificate {
        certificate_lines(&mut out, c);
    }
    let Some(policy) = &r.policy else {
        out.push_str(&subject_line);
        notes(&mut out, r);
        return out;
    };
    if !policy.applied {
        let _ = writeln!(
            out,
            "  the policy alone would decide: {}",
            if policy.allowed {
                "ALLOWED".to_owned()
            } else {
                format!("DENIED — {}", policy.reason)
            }
        );
    }
    if let (Some(rule), Some(m)) = (r.rule, &r.matched) {
        let _ = writeln!(
            out,
            "  by {} rules[{rule}] (YAML: {})",
            policy.label,
            r.yaml_path.as_deref().unwrap_or_default()
        );
        let rule_path = r.rule_path.as_deref().unwrap_or_default();
        if let Some(p) = &m.principal {
            let _ = writeln!(
                out,
                "  principal: {} = {}",
                relative(&p.path, rule_path),
                show_written(&p.written)
            );
        }
        out.push_str(&subject_line);
        if let Some(e) = &m.entry {
            let what = match m.key_type {
                None => "filter",
                Some("Binary") => "binary key (base64)",
                Some("String") => "key",
                Some(_) => "key pattern",
            };
            let _ = writeln!(
                out,
                "  {what} after substitution: {}{}",
                e.substituted.as_deref().unwrap_or_default(),
                if e.substituted.as_deref() == Some(e.written.as_str()) {
                    String::new()
                } else {
                    format!("  (written: {})", e.written)
                }
            );
        }
        match &m.client_id_glob {
            Some(g) => {
                let _ = writeln!(
                    out,
                    "  client id glob after substitution: {}{}",
                    g.substituted.as_deref().unwrap_or_default(),
                    if g.substituted.as_deref() == Some(g.written.as_str()) {
                        String::new()
                    } else {
                        format!("  (written: {})", g.written)
                    }
                );
            }
            None if r.action == "connect" => {
                let _ = writeln!(
                    out,
                    "  the Connect resource has no clientIds: any client id"
                );
            }
            None => {}
        }
    } else {
        let _ = writeln!(
            out,
            "  policy: {}, {} rule{}",
            policy.label,
            policy.rules,
            if policy.rules == 1 { "" } else { "s" }
        );
        out.push_str(&subject_line);
    }
    if !r.near_misses.is_empty() {
        out.push_str("  nearest misses (principals matched, but no resource allowed it):\n");
        for m in &r.near_misses {
            let principal = m.principal.as_ref().map_or(String::new(), |p| {
                format!(
                    "{} = {} matched; ",
                    relative(&p.path, &m.rule_path),
                    show_written(&p.written)
                )
            });
            let _ = writeln!(
                out,
                "    rules[{}] (YAML: {}): {principal}{}",
                m.rule, m.rule_path, m.why
            );
            for res in &m.resources {
                let method = match res.key_type {
                    Some(kt) => format!("{} {kt}", res.method),
                    None => res.method.to_owned(),
                };
                let mut verdict = Vec::new();
                if !res.method_allows {
                    verdict.push(format!("method {} does not allow {}", res.method, r.action));
                }
                if !res.client_allowed {
                    verdict.push(format!(
                        "client id {} matches none of its clientIds",
                        show(&r.subject.client_id)
                    ));
                }
                let _ = writeln!(
                    out,
                    "      {} {method}{}",
                    relative(&res.path, &m.rule_path),
                    if verdict.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", verdict.join("; "))
                    }
                );
                for g in &res.client_ids {
                    let _ = writeln!(
                        out,
                        "        {} {}: {}",
                        relative(&g.path, &res.path),
                        show_entry(g),
                        if g.matched {
                            "matches the client id"
                        } else {
                            "does not match the client id"
                        }
                    );
                }
                for e in &res.entries {
                    let verb = match r.action {
                        "publish" => ("matches", "does not match"),
                        "subscribe" => ("contains", "does not contain"),
                        _ => ("matches", "does not match"),
                    };
                    let target = match (&r.target, &r.key_base64) {
                        (Some(t), _) => t.clone(),
                        (None, Some(b)) => format!("base64 {b}"),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "        {} {}{}",
                        relative(&e.path, &res.path),
                        show_entry(e),
                        if e.substituted.is_none() {
                            String::new()
                        } else if e.matched {
                            format!(": {} {target}", verb.0)
                        } else {
                            format!(": {} {target}", verb.1)
                        }
                    );
                }
            }
        }
    }
    if !r.principals_not_matched.is_empty() {
        out.push_str("  principals did not match:\n");
        for m in &r.principals_not_matched {
            let tried: Vec<String> = m
                .tried
                .iter()
                .map(|t| {
                    let at = relative(&t.path, &m.rule_path);
                    let at = at.strip_prefix("principals.").unwrap_or(at);
                    match t.field {
                        "attributes" => {
                            let mut why = Vec::new();
                            if !t.missing.is_empty() {
                                why.push(format!("missing {}", t.missing.join(", ")));
                            }
                            if !t.different.is_empty() {
                                why.push(format!("other value for {}", t.different.join(", ")));
                            }
                            format!("{at} {}: {}", show_set(&t.written), why.join("; "))
                        }
                        field => {
                            let written = show_written(&t.written);
                            let value = match t.substituted.as_ref().and_then(|s| s.as_deref()) {
                                Some(s) if s == written => written.clone(),
                                Some(s) => format!("{written} (= {s})"),
                                None => format!("{written} (no value for a token)"),
                            };
                            let have = if field == "clientIds" {
                                format!("clientId={}", show(&r.subject.client_id))
                            } else {
                                format!(
                                    "username={}",
                                    r.subject.username.as_deref().map_or("-".into(), show)
                                )
                            };
                            format!("{at} {value} vs {have}")
                        }
                    }
                })
                .collect();
            let tried = if tried.is_empty() {
                "no principals: the rule matches no client".to_owned()
            } else {
                tried.join("; ")
            };
            let _ = writeln!(out, "    rules[{}]: {tried}", m.rule);
        }
    }
    if let Some(p) = &r.policy {
        if r.port.is_none() {
            let ports: Vec<String> = p
                .used_by
                .iter()
                .map(|u| {
                    format!(
                        "{}:{}{}",
                        u.listener,
                        u.port,
                        if u.applied {
                            ""
                        } else {
                            " (not applied: no authenticationRef)"
                        }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  used by ports: {}",
                if ports.is_empty() {
                    "none (no port names it in authorizationRef)".to_owned()
                } else {
                    ports.join(", ")
                }
            );
        }
    }
    notes(&mut out, r);
    out
}

/// How the X.509 method read `--client-cert`.
fn certificate_lines(out: &mut String, c: &CertificateOut) {
    let _ = writeln!(
        out,
        "  client certificate: {} certificate(s), read by {} (YAML: {})",
        c.presented, c.authentication, c.method_path
    );
    if !c.verified {
        let _ = writeln!(
            out,
            "    does not verify: {}",
            c.error.as_deref().unwrap_or("-")
        );
        return;
    }
    for (i, cert) in c.path.iter().enumerate() {
        let matched = if c.matched_certificate == Some(i) {
            format!(
                "  <- attributes from {}",
                c.attributes_from.as_deref().unwrap_or("-")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "    verified path {}: {}{matched}",
            cert.role, cert.subject
        );
    }
    if c.attributes_from.is_none() {
        let _ = writeln!(
            out,
            "    no certificate of the verified path matches an authorizationAttributes entry"
        );
    }
    let sent_off_path = c.presented.saturating_sub(c.path.len().saturating_sub(1));
    if sent_off_path > 0 {
        let _ = writeln!(
            out,
            "    {sent_off_path} certificate(s) sent but not chained through: ignored (the anchor comes from the trusted CAs)"
        );
    }
}

fn notes(out: &mut String, r: &Report) {
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}
