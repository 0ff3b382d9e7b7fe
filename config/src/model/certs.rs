//! Built-in cert-manager: issuers and certificates.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::tls::{IssuerRef, PrivateKey};
use crate::enums::ci_enum;

/// The issuer that always exists: a quickstart root CA generated in the data dir on first
/// start (AIO's name, so AIO listener manifests work unchanged).
pub const DEFAULT_ISSUER: &str = "azure-iot-operations-aio-certificate-issuer";

ci_enum! {
    /// cert-manager issuer kinds; both mean the same in Gatehouse (one namespace).
    #[derive(Default)]
    pub enum IssuerKind("issuer kind") {
        #[default]
        Issuer = "Issuer",
        ClusterIssuer = "ClusterIssuer",
    }
}

/// A cert-manager style issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// 3–63 characters of `[a-z0-9-]`; unique; not [`DEFAULT_ISSUER`].
    pub name: String,
    pub kind: IssuerKind,
    /// How it signs.
    pub spec: IssuerSpec,
}

/// How an issuer signs (exactly one of cert-manager's `ca` / `selfSigned`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuerSpec {
    /// Signs with a CA certificate and key (`tls.crt`, `tls.key`) from a secret; the CA may
    /// be an intermediate.
    Ca(CaIssuer),
    /// Each certificate signs itself (to bootstrap a CA, as in the cert-manager docs).
    SelfSigned,
}

/// `ca:` of an issuer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaIssuer {
    pub secret_name: String,
}

/// `selfSigned: {}` of an issuer (no settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SelfSigned {}

/// A cert-manager style certificate the broker issues into a secret, e.g. a CA for an issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub name: String,
    /// Issue a CA certificate.
    pub is_ca: bool,
    pub common_name: Option<String>,
    /// Secret (folder in the data dir) the certificate and key are written to.
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    pub private_key: PrivateKey,
    /// Default 2160h (90 days).
    pub duration: Duration,
    /// Default one third of `duration`.
    pub renew_before: Duration,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}
