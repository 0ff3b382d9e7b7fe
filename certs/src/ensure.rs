//! Keeping a secret's certificate current, as cert-manager's Certificate controller does:
//! keep what is there while it is valid, from the configured issuer, matches the spec and is
//! not due for renewal; otherwise issue and write a new one.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use gatehouse_config::{
    CertManagerCertificateSpec, Certificate, PrivateKeyAlgorithm, RotationPolicy, SecretFiles,
};

use crate::issue::{CertRequest, IssueError, Usage};
use crate::keys::{Key, KeyError};
use crate::load::{LoadError, LoadedCert};
use crate::renewal;
use crate::san::server_sans;
use crate::secret::{read_secret, write_secret, SecretWriteError};
use crate::signer::Signer;
use crate::x509::CertInfo;

/// Everything that decides a certificate, whichever part of the configuration it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub request: CertRequest,
    pub algorithm: PrivateKeyAlgorithm,
    pub rotation: RotationPolicy,
    pub renew_before: Duration,
}

impl CertSpec {
    /// A `certificates:` entry. A CA without `commonName` is named after the entry, so its
    /// subject (the issuer name of everything it signs) is never empty.
    pub fn for_certificate(cert: &Certificate) -> CertSpec {
        let common_name = match (&cert.common_name, cert.is_ca) {
            (Some(cn), _) => Some(cn.clone()),
            (None, true) => Some(cert.name.clone()),
            (None, false) => None,
        };
        CertSpec {
            request: CertRequest {
                usage: if cert.is_ca {
                    Usage::Ca
                } else {
                    Usage::ServerAndClient
                },
                common_name,
                organization: None,
                dns_names: cert.dns_names.clone(),
                ip_addresses: cert.ip_addresses.clone(),
                duration: cert.duration,
            },
            algorithm: cert.private_key.algorithm,
            rotation: cert.private_key.rotation_policy,
            renew_before: cert.renew_before,
        }
    }

    /// The server certificate of an Automatic TLS port of the listener with `service_name`;
    /// SANs are the configured ones plus the defaults (see [`server_sans`]).
    pub fn for_port(spec: &CertManagerCertificateSpec, service_name: &str) -> CertSpec {
        let sans = server_sans(service_name, &spec.san);
        CertSpec {
            request: CertRequest {
                usage: Usage::Server,
                common_name: None,
                organization: None,
                dns_names: sans.dns,
                ip_addresses: sans.ip,
                duration: spec.duration,
            },
            algorithm: spec.private_key.algorithm,
            rotation: spec.private_key.rotation_policy,
            renew_before: spec.renew_before,
        }
    }

    /// Why a stored certificate no longer fits this spec, if it doesn't.
    fn mismatch(&self, info: &CertInfo) -> Option<String> {
        if info.key_algorithm != Some(self.algorithm) {
            let found = info.key_algorithm.map_or_else(
                || format!("another {} key", info.key_family),
                |a| a.to_string(),
            );
            return Some(format!("key is {found}, spec asks for {}", self.algorithm));
        }
        if info.is_ca != (self.request.usage == Usage::Ca) {
            return Some(format!(
                "isCA is {}, spec asks for {}",
                info.is_ca, !info.is_ca
            ));
        }
        let cn = self.request.effective_common_name();
        if info.common_name.as_deref() != cn {
            return Some(format!(
                "common name is {:?}, spec asks for {cn:?}",
                info.common_name
            ));
        }
        let dns = |names: &[String]| -> BTreeSet<String> {
            names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        if dns(&info.dns_names) != dns(&self.request.dns_names) {
            return Some(format!(
                "DNS names are {:?}, spec asks for {:?}",
                info.dns_names, self.request.dns_names
            ));
        }
        let ips = |ips: &[IpAddr]| -> BTreeSet<IpAddr> { ips.iter().copied().collect() };
        if ips(&info.ip_addresses) != ips(&self.request.ip_addresses) {
            return Some(format!(
                "IP addresses are {:?}, spec asks for {:?}",
                info.ip_addresses, self.request.ip_addresses
            ));
        }
        None
    }
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stored certificate is still good.
    Kept,
    /// A new certificate was issued and written, for this reason.
    Issued(Reason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The secret has no certificate or key yet.
    Missing,
    /// The secret's files exist but cannot be used (the message says why).
    Unusable(String),
    /// The certificate was signed by another issuer (e.g. the issuerRef changed).
    OtherIssuer,
    /// The spec changed since the certificate was issued (the message says how).
    SpecChanged(String),
    /// Expired, or within `renewBefore` of expiry.
    Due,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => f.write_str("no certificate yet"),
            Reason::Unusable(why) => write!(f, "stored certificate unusable: {why}"),
            Reason::OtherIssuer => f.write_str("stored certificate is from another issuer"),
            Reason::SpecChanged(why) => write!(f, "spec changed: {why}"),
            Reason::Due => f.write_str("due for renewal"),
        }
    }
}

/// The certificate a secret holds after [`ensure`].
#[derive(Debug, Clone)]
pub struct Ensured {
    pub outcome: Outcome,
    /// The leaf now in the secret.
    pub info: CertInfo,
    /// When to call [`ensure`] again.
    pub renewal_time: SystemTime,
}

impl Ensured {
    pub fn renew_in(&self, now: SystemTime) -> Duration {
        self.renewal_time
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    #[error("no issuer named `{0}`")]
    UnknownIssuer(String),
    #[error(transparent)]
    Issue(#[from] IssueError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Write(#[from] SecretWriteError),
}

/// Makes sure `files` hold a certificate for `spec` from `signer`, valid at `now` and not
/// due for renewal; issues and writes one if not. With `rotationPolicy: Never` a renewal
/// reuses the stored key when it still has the spec's algorithm.
pub fn ensure(
    signer: &Signer,
    spec: &CertSpec,
    files: &SecretFiles,
    now: SystemTime,
) -> Result<Ensured, EnsureError> {
    let stored = read_secret(files);
    let reason = match &stored {
        Err(LoadError::NotFound { .. }) => Reason::Missing,
        Err(e) => Reason::Unusable(e.to_string()),
        Ok(loaded) => match check(signer, spec, loaded, now) {
            None => {
                let info = loaded.info.clone();
                return Ok(Ensured {
                    outcome: Outcome::Kept,
                    renewal_time: renewal::renewal_time(
                        info.not_before,
                        info.not_after,
                        spec.renew_before,
                    ),
                    info,
                });
            }
            Some(reason) => reason,
        },
    };
    let key = match (&stored, spec.rotation) {
        (Ok(loaded), RotationPolicy::Never) => reusable_key(loaded, spec.algorithm)
            .map_or_else(|| Key::generate(spec.algorithm), Ok)?,
        _ => Key::generate(spec.algorithm)?,
    };
    let issued = signer.issue(&spec.request, key, now)?;
    write_secret(files, &issued)?;
    tracing::info!(
        target: "tls",
        secret = %files.cert_file.display(),
        serial = %issued.serial(),
        %reason,
        "issued certificate"
    );
    let info = issued.info().clone();
    Ok(Ensured {
        outcome: Outcome::Issued(reason),
        renewal_time: renewal::renewal_time(info.not_before, info.not_after, spec.renew_before),
        info,
    })
}

fn check(signer: &Signer, spec: &CertSpec, loaded: &LoadedCert, now: SystemTime) -> Option<Reason> {
    let info = &loaded.info;
    if !signer.has_signed(&loaded.chain()[0]) {
        return Some(Reason::OtherIssuer);
    }
    if let Some(why) = spec.mismatch(info) {
        return Some(Reason::SpecChanged(why));
    }
    if now < info.not_before
        || renewal::is_due(info.not_before, info.not_after, spec.renew_before, now)
    {
        return Some(Reason::Due);
    }
    None
}

fn reusable_key(loaded: &LoadedCert, algorithm: PrivateKeyAlgorithm) -> Option<Key> {
    let key = loaded.key().ok()?;
    (key.algorithm() == Some(algorithm)).then_some(key)
}
