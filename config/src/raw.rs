//! The resources as written in YAML, before the defaults that depend on other fields.
//!
//! One struct per resource serves both forms: in the native form the resource carries its
//! `name`; in a manifest the name comes from `metadata.name` and `spec` has none. Building
//! the model from these applies the remaining defaults (`serviceName` = name, TLS
//! `secretName` = `<listener>-<port>`) and collects problems a type cannot catch (a bad
//! `bindAddress`, an issuer with both or neither of `ca` / `selfSigned`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::Deserialize;

use crate::duration::GoDuration;
use crate::error::Problem;
use crate::model::*;
use crate::validate::{Loc, Origins};

/// The native form: one document.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NativeDoc {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    listeners: Vec<ListenerDoc>,
    #[serde(default)]
    secrets: BTreeMap<String, SecretFiles>,
    #[serde(default)]
    config_maps: BTreeMap<String, ConfigMapFiles>,
    #[serde(default)]
    issuers: Vec<IssuerDoc>,
    #[serde(default)]
    certificates: Vec<CertificateDoc>,
    #[serde(default)]
    authentications: Vec<AuthenticationDoc>,
    #[serde(default)]
    authorizations: Vec<AuthorizationDoc>,
    #[serde(default)]
    broker: BrokerLimits,
    #[serde(default)]
    diagnostics: Diagnostics,
    #[serde(default)]
    persistence: Option<Persistence>,
    /// Cluster mode (issue 15).
    #[serde(default)]
    cluster: Option<Cluster>,
}

pub(crate) fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

impl NativeDoc {
    /// The configuration, where its resources are, and the problems found while building.
    pub(crate) fn build(self) -> (Config, Origins, Vec<Problem>) {
        let mut problems = Vec::new();
        let listeners = self
            .listeners
            .into_iter()
            .enumerate()
            .map(|(i, doc)| {
                let name = doc.name.clone().unwrap_or_default();
                doc.build(name, &Loc::native("listeners", i), &mut problems)
            })
            .collect();
        let issuers = self
            .issuers
            .into_iter()
            .enumerate()
            .map(|(i, doc)| {
                let name = doc.name.clone().unwrap_or_default();
                let kind = doc.kind.unwrap_or_default();
                doc.build(name, kind, &Loc::native("issuers", i), &mut problems)
            })
            .collect();
        let config = Config {
            data_dir: self.data_dir,
            listeners,
            broker: self.broker,
            diagnostics: self.diagnostics,
            authentications: self
                .authentications
                .into_iter()
                .map(|doc| {
                    let name = doc.name.clone().unwrap_or_default();
                    doc.build(name)
                })
                .collect(),
            authorizations: self
                .authorizations
                .into_iter()
                .map(|doc| {
                    let name = doc.name.clone().unwrap_or_default();
                    doc.build(name)
                })
                .collect(),
            issuers,
            certificates: self
                .certificates
                .into_iter()
                .map(|doc| {
                    let name = doc.name.clone().unwrap_or_default();
                    doc.build(name)
                })
                .collect(),
            secrets: self.secrets,
            config_maps: self.config_maps,
            persistence: self.persistence,
            cluster: self.cluster,
            paths: Default::default(),
        };
        (config, Origins::default(), problems)
    }
}

/// A listener (native) or BrokerListener `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListenerDoc {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    service_type: ServiceType,
    #[serde(default)]
    service_name: Option<String>,
    /// Kept as text so that a bad address is one of the collected problems.
    #[serde(default)]
    bind_address: Option<String>,
    #[serde(default)]
    ports: Vec<ListenerPort>,
    /// AIO CRDs name their Broker; Gatehouse is one broker, so it is accepted and unused.
    #[serde(default, rename = "brokerRef")]
    _broker_ref: Option<String>,
}

impl ListenerDoc {
    pub(crate) fn build(self, name: String, loc: &Loc, problems: &mut Vec<Problem>) -> Listener {
        let bind_address = match self.bind_address.as_deref() {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(text) => text.trim().parse().unwrap_or_else(|_| {
                problems.push(Problem::new(
                    loc.at("bindAddress"),
                    format!(
                        "`{text}` is not an IP address; write e.g. 0.0.0.0 (all interfaces), \
                         127.0.0.1 or ::1 (host names are not accepted)"
                    ),
                ));
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }),
        };
        let mut ports = self.ports;
        for port in &mut ports {
            if let Some(Tls::Automatic(spec)) = &mut port.tls {
                if spec.secret_name.is_empty() {
                    spec.secret_name = format!("{name}-{}", port.port);
                }
            }
        }
        Listener {
            service_name: self.service_name.unwrap_or_else(|| name.clone()),
            name,
            service_type: self.service_type,
            bind_address,
            ports,
        }
    }
}

/// An authentication (native) or BrokerAuthentication `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuthenticationDoc {
    #[serde(default)]
    pub name: Option<String>,
    authentication_methods: Vec<AuthenticationMethod>,
}

impl AuthenticationDoc {
    pub(crate) fn build(self, name: String) -> Authentication {
        Authentication {
            name,
            authentication_methods: self.authentication_methods,
        }
    }
}

/// An authorization (native) or BrokerAuthorization `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuthorizationDoc {
    #[serde(default)]
    pub name: Option<String>,
    authorization_policies: AuthorizationPolicies,
}

impl AuthorizationDoc {
    pub(crate) fn build(self, name: String) -> Authorization {
        Authorization {
            name,
            authorization_policies: self.authorization_policies,
        }
    }
}

/// An issuer (native, with `kind`) or cert-manager Issuer / ClusterIssuer `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct IssuerDoc {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kind: Option<IssuerKind>,
    #[serde(default)]
    ca: Option<CaIssuer>,
    #[serde(default)]
    self_signed: Option<SelfSigned>,
}

impl IssuerDoc {
    pub(crate) fn build(
        self,
        name: String,
        kind: IssuerKind,
        loc: &Loc,
        problems: &mut Vec<Problem>,
    ) -> Issuer {
        let spec = match (self.ca, self.self_signed) {
            (Some(ca), None) => IssuerSpec::Ca(ca),
            (None, Some(_)) => IssuerSpec::SelfSigned,
            (ca, _) => {
                let found = if ca.is_some() { "both" } else { "neither" };
                problems.push(Problem::new(
                    &loc.spec,
                    format!(
                        "an issuer needs exactly one of `ca: {{ secretName: ... }}` or \
                         `selfSigned: {{}}`; found {found}"
                    ),
                ));
                IssuerSpec::SelfSigned
            }
        };
        Issuer { name, kind, spec }
    }
}

/// A certificate (native) or cert-manager Certificate `spec` (the subset Gatehouse issues).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct CertificateDoc {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "isCA")]
    is_ca: bool,
    #[serde(default)]
    common_name: Option<String>,
    secret_name: String,
    issuer_ref: IssuerRef,
    #[serde(default)]
    private_key: PrivateKey,
    #[serde(default)]
    duration: Option<GoDuration>,
    #[serde(default)]
    renew_before: Option<GoDuration>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<IpAddr>,
}

impl CertificateDoc {
    pub(crate) fn build(self, name: String) -> Certificate {
        let duration = self.duration.map_or(DEFAULT_CERT_DURATION, |d| d.0);
        Certificate {
            name,
            is_ca: self.is_ca,
            common_name: self.common_name,
            secret_name: self.secret_name,
            issuer_ref: self.issuer_ref,
            private_key: self.private_key,
            duration,
            renew_before: self.renew_before.map_or(duration / 3, |d| d.0),
            dns_names: self.dns_names,
            ip_addresses: self.ip_addresses,
        }
    }
}
