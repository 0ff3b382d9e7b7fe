//! Per-port TLS: `Manual` (certificate files from a secret) or `Automatic` (issued and renewed
//! by the built-in issuer, cert-manager style).

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::certs::{IssuerKind, DEFAULT_ISSUER};
use crate::duration::GoDuration;
use crate::enums::{ci_enum, CaseInsensitive};

/// Default lifetime of issued certificates: 90 days, as AIO documents today.
pub const DEFAULT_CERT_DURATION: Duration = Duration::from_secs(2160 * 3600);

/// The cert-manager API group, the only `issuerRef.group` Gatehouse serves.
pub const CERT_MANAGER_GROUP: &str = "cert-manager.io";

/// TLS on a port. Absent `tls` in the YAML means plain TCP (AIO has no `Disabled` mode).
/// Deserialized through `RawTls` (see `yaml::map_try_from`: errors keep their line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// `mode: Automatic`: the broker issues the server certificate itself and renews it.
    /// `certManagerCertificateSpec` may be omitted: the default issuer and defaults apply.
    Automatic(CertManagerCertificateSpec),
    /// `mode: Manual`: certificate chain and key come from a secret.
    Manual(ManualTls),
}

impl Tls {
    /// The YAML `mode` of this TLS block.
    pub fn mode(&self) -> TlsMode {
        match self {
            Tls::Automatic(_) => TlsMode::Automatic,
            Tls::Manual(_) => TlsMode::Manual,
        }
    }
}

ci_enum! {
    /// `tls.mode`.
    pub enum TlsMode("TLS mode") {
        Automatic = "Automatic",
        Manual = "Manual",
    }
}

/// `tls.manual`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualTls {
    /// Secret holding `tls.crt` (chain, leaf first) and `tls.key`; see
    /// [`Config::secret`](super::Config::secret). May not exist yet: the port waits for it.
    pub secret_ref: String,
}

crate::yaml::map_try_from!(Tls, RawTls, "TLS settings");

/// The YAML shape of `tls`, checked for consistency before it becomes a [`Tls`].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawTls {
    mode: TlsMode,
    #[serde(default)]
    cert_manager_certificate_spec: Option<CertManagerCertificateSpec>,
    #[serde(default)]
    manual: Option<ManualTls>,
}

impl TryFrom<RawTls> for Tls {
    type Error = String;

    fn try_from(raw: RawTls) -> Result<Self, String> {
        match (raw.mode, raw.cert_manager_certificate_spec, raw.manual) {
            (TlsMode::Automatic, _, Some(_)) => {
                Err("`manual` goes with mode Manual, not Automatic".into())
            }
            (TlsMode::Automatic, spec, None) => Ok(Tls::Automatic(spec.unwrap_or_default())),
            (TlsMode::Manual, Some(_), _) => {
                Err("`certManagerCertificateSpec` goes with mode Automatic, not Manual".into())
            }
            (TlsMode::Manual, None, Some(manual)) => Ok(Tls::Manual(manual)),
            (TlsMode::Manual, None, None) => {
                Err("mode Manual needs `manual: { secretRef: <secret name> }`".into())
            }
        }
    }
}

/// `tls.certManagerCertificateSpec`: how the server certificate of an Automatic port is issued.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawCertSpec")]
pub struct CertManagerCertificateSpec {
    /// Default: the built-in issuer [`DEFAULT_ISSUER`].
    pub issuer_ref: IssuerRef,
    /// Certificate lifetime; default 2160h (90 days).
    pub duration: Duration,
    /// Renew this long before expiry; default one third of `duration`.
    pub renew_before: Duration,
    /// Default `Ec256`, rotation `Always`.
    pub private_key: PrivateKey,
    /// Extra SANs. Without any, the broker uses `localhost`, the host name, `127.0.0.1`,
    /// `::1` and the listener's service name.
    pub san: San,
    /// Secret (folder in the data dir) the issued certificate and key are written to;
    /// default `<listener>-<port>`.
    pub secret_name: String,
}

impl Default for CertManagerCertificateSpec {
    fn default() -> Self {
        CertManagerCertificateSpec {
            issuer_ref: IssuerRef::default(),
            duration: DEFAULT_CERT_DURATION,
            renew_before: DEFAULT_CERT_DURATION / 3,
            private_key: PrivateKey::default(),
            san: San::default(),
            // Filled in by the loader, which knows the listener name and port.
            secret_name: String::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCertSpec {
    #[serde(default)]
    issuer_ref: Option<IssuerRef>,
    #[serde(default)]
    duration: Option<GoDuration>,
    #[serde(default)]
    renew_before: Option<GoDuration>,
    #[serde(default)]
    private_key: Option<PrivateKey>,
    #[serde(default)]
    san: Option<San>,
    #[serde(default)]
    secret_name: Option<String>,
}

impl TryFrom<RawCertSpec> for CertManagerCertificateSpec {
    type Error = String;

    fn try_from(raw: RawCertSpec) -> Result<Self, String> {
        if raw.secret_name.as_deref() == Some("") {
            return Err("`secretName` is empty; omit it for the default <listener>-<port>".into());
        }
        let duration = raw.duration.map_or(DEFAULT_CERT_DURATION, |d| d.0);
        Ok(CertManagerCertificateSpec {
            issuer_ref: raw.issuer_ref.unwrap_or_default(),
            duration,
            renew_before: raw.renew_before.map_or(duration / 3, |d| d.0),
            private_key: raw.private_key.unwrap_or_default(),
            san: raw.san.unwrap_or_default(),
            secret_name: raw.secret_name.unwrap_or_default(),
        })
    }
}

/// Which issuer signs a certificate (cert-manager `issuerRef`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuerRef {
    /// An issuer of `issuers`, or [`DEFAULT_ISSUER`].
    pub name: String,
    /// `Issuer` (default, as in cert-manager) or `ClusterIssuer`; same meaning here.
    #[serde(default)]
    pub kind: IssuerKind,
    /// Must be `cert-manager.io` (the default).
    #[serde(default = "default_group")]
    pub group: String,
}

fn default_group() -> String {
    CERT_MANAGER_GROUP.into()
}

impl Default for IssuerRef {
    /// The built-in issuer, as AIO's default listener names it.
    fn default() -> Self {
        IssuerRef {
            name: DEFAULT_ISSUER.into(),
            kind: IssuerKind::ClusterIssuer,
            group: default_group(),
        }
    }
}

/// Key of an issued certificate.
///
/// Accepts AIO's spelling (`algorithm: Ec256`) and cert-manager's (`algorithm: ECDSA,
/// size: 256`), so cert-manager `Certificate` manifests load unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "RawPrivateKey")]
pub struct PrivateKey {
    /// Default `Ec256`.
    pub algorithm: PrivateKeyAlgorithm,
    /// Default `Always` (a new key at each renewal).
    pub rotation_policy: RotationPolicy,
}

ci_enum! {
    /// Key algorithm (AIO names).
    #[derive(Default)]
    pub enum PrivateKeyAlgorithm("private key algorithm") {
        #[default]
        Ec256 = "Ec256",
        Ec384 = "Ec384",
        Ec521 = "Ec521",
        Ed25519 = "Ed25519",
        Rsa2048 = "Rsa2048",
        Rsa4096 = "Rsa4096",
        Rsa8192 = "Rsa8192",
    }
}

ci_enum! {
    /// Whether renewal makes a new key.
    #[derive(Default)]
    pub enum RotationPolicy("rotation policy") {
        #[default]
        Always = "Always",
        Never = "Never",
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPrivateKey {
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    rotation_policy: Option<RotationPolicy>,
}

impl TryFrom<RawPrivateKey> for PrivateKey {
    type Error = String;

    fn try_from(raw: RawPrivateKey) -> Result<Self, String> {
        use PrivateKeyAlgorithm::*;
        let algorithm = match (raw.algorithm.as_deref(), raw.size) {
            (None, None) => PrivateKeyAlgorithm::default(),
            (None, Some(_)) => return Err("`size` needs `algorithm: ECDSA` or `RSA`".into()),
            (Some(name), size) if name.eq_ignore_ascii_case("ecdsa") => match size {
                None | Some(256) => Ec256,
                Some(384) => Ec384,
                Some(521) => Ec521,
                Some(other) => return Err(format!("ECDSA size {other}; allowed: 256, 384, 521")),
            },
            (Some(name), size) if name.eq_ignore_ascii_case("rsa") => match size {
                None | Some(2048) => Rsa2048,
                Some(4096) => Rsa4096,
                Some(8192) => Rsa8192,
                Some(other) => return Err(format!("RSA size {other}; allowed: 2048, 4096, 8192")),
            },
            (Some(name), size) => {
                let Some(algorithm) = PrivateKeyAlgorithm::from_str_ci(name) else {
                    return Err(format!(
                        "unknown private key algorithm `{name}`; allowed: {} (or cert-manager's ECDSA / RSA with `size`)",
                        PrivateKeyAlgorithm::allowed()
                    ));
                };
                if size.is_some() && algorithm != Ed25519 {
                    return Err(format!(
                        "`size` goes with cert-manager's ECDSA or RSA; {algorithm} already says the size"
                    ));
                }
                algorithm
            }
        };
        Ok(PrivateKey {
            algorithm,
            rotation_policy: raw.rotation_policy.unwrap_or_default(),
        })
    }
}

/// Extra subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct San {
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub ip: Vec<IpAddr>,
}
