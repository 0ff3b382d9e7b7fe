//! X.509 client certificates (behaviour.md §3 "X.509").
//!
//! The TLS handshake verifies the presented chain against the trusted client CAs (the
//! verifier built by [`client_verifier`]); this method then turns a verified chain into a
//! principal: username = the leaf's CN, attributes from the first certificate (leaf,
//! intermediates, then the trusted CA that issued the top one) whose subject matches an
//! `authorizationAttributes` entry, expiry = the leaf's notAfter. With
//! `additionalValidation: AzureDeviceRegistry` the CN must also name an enabled device of
//! the [device registry](super::device_registry), and the principal carries the
//! [`RegistryCheck`] the connection uses to end itself when the device no longer is.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use gatehouse_certs::{CertInfo, LoadError};
use gatehouse_config::{AdditionalValidation, Config, X509Settings};
use gatehouse_protocol::ReasonCode;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::device_registry::{DeviceRegistry, RegistryCheck, RegistryError};
use super::dn::Dn;
use super::files::{self, ConfigMapError};
use super::{Credentials, Outcome, Principal, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum X509SetupError {
    #[error("trusted client CA config map `{name}`: {source}")]
    TrustedCa { name: String, source: LoadError },
    #[error("trusted client CA config map `{name}`: no certificate in {}", .path.display())]
    NoTrustedCa { name: String, path: PathBuf },
    #[error("trusted client CA config map `{name}`: cannot read folder {}: {source}", .path.display())]
    Folder {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("authorizationAttributes.{label}.subject `{subject}` is not a distinguished name (`CN = name, OU = unit, ...`)")]
    Subject { label: String, subject: String },
    #[error("additionalValidation: AzureDeviceRegistry needs `deviceRegistry: {{ file: <devices.yaml> }}`")]
    NoDeviceRegistry,
    #[error("deviceRegistry: {0}")]
    DeviceRegistry(#[from] RegistryError),
    #[error("trusted client CAs: {0}")]
    Verifier(String),
}

pub(super) struct X509Method {
    trusted: Vec<CertificateDer<'static>>,
    trusted_info: Vec<CertInfo>,
    attributes: Vec<(Dn, BTreeMap<String, String>)>,
    /// With `additionalValidation: AzureDeviceRegistry`.
    registry: Option<Arc<DeviceRegistry>>,
}

impl X509Method {
    pub(super) fn new(config: &Config, settings: &X509Settings) -> Result<Self, X509SetupError> {
        let registry = match settings.additional_validation {
            AdditionalValidation::None => None,
            AdditionalValidation::AzureDeviceRegistry => {
                let registry = settings
                    .device_registry
                    .as_ref()
                    .ok_or(X509SetupError::NoDeviceRegistry)?;
                Some(DeviceRegistry::open(
                    &registry.file,
                    registry.recheck_interval,
                )?)
            }
        };
        let name = &settings.trusted_client_ca_cert;
        let trusted = read_config_map(config, name)?;
        let trusted_info = trusted
            .iter()
            .filter_map(|c| CertInfo::from_der(c).ok())
            .collect();
        let mut attributes = Vec::new();
        for (label, entry) in &settings.authorization_attributes {
            let dn = Dn::parse(&entry.subject).ok_or_else(|| X509SetupError::Subject {
                label: label.clone(),
                subject: entry.subject.clone(),
            })?;
            attributes.push((dn, entry.attributes.clone()));
        }
        Ok(X509Method {
            trusted,
            trusted_info,
            attributes,
            registry,
        })
    }

    pub(super) fn trusted(&self) -> &[CertificateDer<'static>] {
        &self.trusted
    }

    pub(super) fn authenticate(&self, creds: &Credentials<'_>) -> Verdict {
        if creds.peer_certs.is_empty() {
            return Verdict::NotRelevant;
        }
        Verdict::Decided(match self.principal(creds.peer_certs, creds.client_id) {
            Ok(p) => Outcome::Accepted(p),
            Err(why) => Outcome::Rejected(ReasonCode::NOT_AUTHORIZED, why),
        })
    }

    /// The principal for a chain the TLS handshake has verified.
    fn principal(
        &self,
        chain: &[CertificateDer<'static>],
        client_id: &str,
    ) -> Result<Principal, String> {
        let infos: Vec<CertInfo> = chain
            .iter()
            .map(|c| CertInfo::from_der(c).map_err(|e| format!("client certificate: {e}")))
            .collect::<Result<_, _>>()?;
        let leaf = &infos[0];
        let username = leaf
            .common_name
            .clone()
            .ok_or_else(|| format!("client certificate {} has no CN", leaf.subject))?;
        let registry = match &self.registry {
            None => None,
            Some(registry) => {
                let check = RegistryCheck::new(registry.clone(), username.clone());
                check.check()?;
                Some(check)
            }
        };
        Ok(Principal {
            username: Some(username),
            client_id: client_id.to_owned(),
            attributes: self.attributes_for(&infos),
            expiry: Some(leaf.not_after),
            method: "X509",
            registry,
        })
    }

    /// Leaf first, then up the presented chain, then the trusted CA that issued its top:
    /// the first subject with an entry gives the attributes.
    fn attributes_for(&self, chain: &[CertInfo]) -> BTreeMap<String, String> {
        let anchor = chain.last().and_then(|top| {
            if top.self_issued {
                return None;
            }
            self.trusted_info.iter().find(|ca| ca.subject == top.issuer)
        });
        for cert in chain.iter().chain(anchor) {
            let Some(subject) = Dn::parse(&cert.subject) else {
                continue;
            };
            if let Some((_, attrs)) = self.attributes.iter().find(|(dn, _)| *dn == subject) {
                return attrs.clone();
            }
        }
        BTreeMap::new()
    }
}

/// Client certificates requested but optional; when presented they must chain to one of
/// `trusted` (a root or an intermediate: any of them is an anchor).
pub(super) fn client_verifier(
    trusted: Vec<CertificateDer<'static>>,
) -> Result<Arc<dyn ClientCertVerifier>, X509SetupError> {
    let mut roots = RootCertStore::empty();
    for cert in trusted {
        roots
            .add(cert)
            .map_err(|e| X509SetupError::Verifier(e.to_string()))?;
    }
    WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| X509SetupError::Verifier(e.to_string()))
}

/// Every certificate of the trusted client CA config map.
fn read_config_map(
    config: &Config,
    name: &str,
) -> Result<Vec<CertificateDer<'static>>, X509SetupError> {
    files::read_config_map(config, name).map_err(|e| match e {
        ConfigMapError::Load(source) => X509SetupError::TrustedCa {
            name: name.to_owned(),
            source,
        },
        ConfigMapError::Empty(path) => X509SetupError::NoTrustedCa {
            name: name.to_owned(),
            path,
        },
        ConfigMapError::Folder { path, source } => X509SetupError::Folder {
            name: name.to_owned(),
            path,
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use gatehouse_certs::{issue_self_signed, Authority, CertRequest, Key, Usage};
    use gatehouse_config::PrivateKeyAlgorithm;

    use super::*;

    fn req(usage: Usage, cn: &str) -> CertRequest {
        CertRequest {
            usage,
            common_name: Some(cn.into()),
            organization: Some("Contoso".into()),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            duration: Duration::from_secs(3600),
        }
    }

    fn key() -> Key {
        Key::generate(PrivateKeyAlgorithm::Ec256).expect("key")
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The seed's example: attributes for the root, the intermediate and the smart-fan
    /// leaf; matching walks up from the leaf and stops at the first subject with an entry.
    #[test]
    fn attributes_come_from_the_first_matching_certificate_from_the_leaf_up() {
        let now = SystemTime::now();
        let root = Authority::from_issued(
            issue_self_signed(&req(Usage::Ca, "Contoso Root CA Cert"), key(), now).expect("root"),
        )
        .expect("root CA");
        let intermediate = Authority::from_issued(
            root.issue(&req(Usage::Ca, "Contoso Intermediate CA"), key(), now)
                .expect("intermediate"),
        )
        .expect("intermediate CA");
        let leaf = |ca: &Authority, cn: &str| {
            let issued = ca.issue(&req(Usage::Client, cn), key(), now).expect("leaf");
            issued.chain().to_vec()
        };
        let method = X509Method {
            trusted: vec![root.certificate().clone()],
            trusted_info: vec![root.info().clone()],
            attributes: vec![
                (
                    Dn::parse("CN = Contoso Root CA Cert, O = Contoso").expect("dn"),
                    attrs(&[("organization", "contoso")]),
                ),
                (
                    Dn::parse("O=Contoso,CN=Contoso Intermediate CA").expect("dn"),
                    attrs(&[("city", "seattle"), ("foo", "bar")]),
                ),
                (
                    Dn::parse("CN = smart-fan, O = Contoso").expect("dn"),
                    attrs(&[("building", "17")]),
                ),
            ],
            registry: None,
        };
        let principal = |chain: Vec<CertificateDer<'static>>| {
            method.principal(&chain, "client-1").expect("principal")
        };
        let fan = principal(leaf(&intermediate, "smart-fan"));
        assert_eq!(fan.username.as_deref(), Some("smart-fan"));
        assert_eq!(fan.attributes, attrs(&[("building", "17")]));
        assert!(fan.expiry.is_some());
        let thermostat = principal(leaf(&intermediate, "thermostat"));
        assert_eq!(
            thermostat.attributes,
            attrs(&[("city", "seattle"), ("foo", "bar")])
        );
        // Directly under the root: the trusted root is the last step of the walk.
        let direct = principal(leaf(&root, "lamp"));
        assert_eq!(direct.attributes, attrs(&[("organization", "contoso")]));
        // A leaf whose chain matches nothing gets no attributes.
        let other = Authority::from_issued(
            issue_self_signed(&req(Usage::Ca, "Other Root"), key(), now).expect("other"),
        )
        .expect("other CA");
        assert!(principal(leaf(&other, "stranger")).attributes.is_empty());
    }
}
