//! X.509 client certificates (behaviour.md §3 "X.509").
//!
//! The TLS handshake verifies the presented chain against the trusted client CAs (the
//! verifier built by [`client_verifier`]). At CONNECT this method verifies the chain again,
//! itself, against its own trusted CAs (a reload may have changed them since the
//! handshake), and keeps the *verified path* webpki found: the leaf, the intermediates it
//! actually chained through, and the trust anchor. Everything the principal carries comes
//! from that path and nothing else (security.md invariant 1): username = the leaf's CN;
//! attributes from the first certificate of the path (leaf, intermediates, anchor) whose
//! subject equals an `authorizationAttributes` entry, names compared as parsed RDNs
//! ([`Dn`]); expiry = the earliest notAfter of the leaf and the intermediates (what the
//! verifier checks). Certificates the client merely sent and that are not on the path
//! (an appended self-made "CA" whose subject matches an entry) never count.
//!
//! With `additionalValidation: AzureDeviceRegistry` the CN must also name an enabled device
//! of the [device registry](super::device_registry), and the principal carries the
//! [`RegistryCheck`] the connection uses to end itself when the device no longer is.
//!
//! [`CertIdentifier`] is the part without the registry; `gatehouse explain --client-cert`
//! uses it, so the CLI and the live broker derive identities with the same code.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_certs::{CertInfo, LoadError};
use gatehouse_config::dn::DnError;
use gatehouse_config::{AdditionalValidation, Config, X509Settings};
use gatehouse_protocol::ReasonCode;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
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
    #[error("authorizationAttributes.{label}.subject `{subject}` is not a distinguished name (`CN = name, OU = unit, ...`, RFC 4514): {source}")]
    Subject {
        label: String,
        subject: String,
        source: DnError,
    },
    #[error("additionalValidation: AzureDeviceRegistry needs `deviceRegistry: {{ file: <devices.yaml> }}`")]
    NoDeviceRegistry,
    #[error("deviceRegistry: {0}")]
    DeviceRegistry(#[from] RegistryError),
    #[error("trusted client CAs: {0}")]
    Verifier(String),
}

/// One `authorizationAttributes` entry, its subject parsed.
#[derive(Debug, Clone)]
struct AttributeEntry {
    label: String,
    subject: Dn,
    attributes: BTreeMap<String, String>,
}

/// Where a certificate of a verified path sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRole {
    Leaf,
    Intermediate,
    /// The trusted client CA the path ends at.
    Anchor,
}

/// One certificate of a verified path.
#[derive(Debug, Clone)]
pub struct PathCert {
    pub role: PathRole,
    pub subject: Dn,
}

/// What a verified client chain proves.
#[derive(Debug, Clone)]
pub struct X509Identity {
    /// The leaf's CN.
    pub username: String,
    pub attributes: BTreeMap<String, String>,
    /// Earliest notAfter of the leaf and the intermediates of the path.
    pub expiry: SystemTime,
    /// The verified path: leaf, intermediates in chaining order, anchor.
    pub path: Vec<PathCert>,
    /// Which certificate of `path` (index) matched which `authorizationAttributes` entry
    /// (label); `None` when none did.
    pub matched: Option<(usize, String)>,
}

/// Turns a client certificate chain into an identity, from the verified path only.
pub struct CertIdentifier {
    trusted: Vec<CertificateDer<'static>>,
    /// The trusted client CAs as path-building anchors, in `trusted` order.
    anchors: Vec<TrustAnchor<'static>>,
    /// The subject of each anchor's certificate (read from its DER), same order.
    anchor_subjects: Vec<Dn>,
    attributes: Vec<AttributeEntry>,
    /// Signature algorithms of the process's crypto provider (the handshake's own).
    algorithms: WebPkiSupportedAlgorithms,
}

impl CertIdentifier {
    /// The trusted client CAs and `authorizationAttributes` of `settings`.
    pub fn new(config: &Config, settings: &X509Settings) -> Result<Self, X509SetupError> {
        let trusted = read_config_map(config, &settings.trusted_client_ca_cert)?;
        let mut attributes = Vec::new();
        for (label, entry) in &settings.authorization_attributes {
            let subject = Dn::parse(&entry.subject).map_err(|source| X509SetupError::Subject {
                label: label.clone(),
                subject: entry.subject.clone(),
                source,
            })?;
            attributes.push(AttributeEntry {
                label: label.clone(),
                subject,
                attributes: entry.attributes.clone(),
            });
        }
        CertIdentifier::from_parts(trusted, attributes)
    }

    fn from_parts(
        trusted: Vec<CertificateDer<'static>>,
        attributes: Vec<AttributeEntry>,
    ) -> Result<Self, X509SetupError> {
        let mut anchors = Vec::with_capacity(trusted.len());
        let mut anchor_subjects = Vec::with_capacity(trusted.len());
        for cert in &trusted {
            anchors.push(
                webpki::anchor_from_trusted_cert(cert)
                    .map_err(|e| X509SetupError::Verifier(format!("{e:?}")))?
                    .to_owned(),
            );
            anchor_subjects
                .push(Dn::subject_of(cert).map_err(|e| X509SetupError::Verifier(e.to_string()))?);
        }
        let algorithms = match rustls::crypto::CryptoProvider::get_default() {
            Some(provider) => provider.signature_verification_algorithms,
            None => rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        };
        Ok(CertIdentifier {
            trusted,
            anchors,
            anchor_subjects,
            attributes,
            algorithms,
        })
    }

    pub(super) fn trusted(&self) -> &[CertificateDer<'static>] {
        &self.trusted
    }

    /// Verify `chain` (leaf first, then whatever else the client sent) against the trusted
    /// client CAs at `now`, for client authentication, and derive the identity from the
    /// verified path. An error when the chain does not verify.
    pub fn identify(
        &self,
        chain: &[CertificateDer<'_>],
        now: SystemTime,
    ) -> Result<X509Identity, String> {
        let Some((leaf_der, rest)) = chain.split_first() else {
            return Err("no client certificate".to_owned());
        };
        let leaf = webpki::EndEntityCert::try_from(leaf_der)
            .map_err(|e| format!("client certificate: {e:?}"))?;
        let since_epoch = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970".to_owned())?;
        let verified = leaf
            .verify_for_usage(
                self.algorithms.all,
                &self.anchors,
                rest,
                UnixTime::since_unix_epoch(since_epoch),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| {
                format!("client certificate chain does not verify against the trusted client CAs: {e:?}")
            })?;
        let leaf_info =
            CertInfo::from_der(leaf_der).map_err(|e| format!("client certificate: {e}"))?;
        let username = leaf_info
            .common_name
            .clone()
            .ok_or_else(|| format!("client certificate {} has no CN", leaf_info.subject))?;
        let mut expiry = leaf_info.not_after;
        let mut path = vec![PathCert {
            role: PathRole::Leaf,
            subject: Dn::subject_of(leaf_der).map_err(|e| format!("client certificate: {e}"))?,
        }];
        for cert in verified.intermediate_certificates() {
            let der = cert.der();
            let info =
                CertInfo::from_der(&der).map_err(|e| format!("intermediate certificate: {e}"))?;
            expiry = expiry.min(info.not_after);
            path.push(PathCert {
                role: PathRole::Intermediate,
                subject: Dn::subject_of(&der)
                    .map_err(|e| format!("intermediate certificate: {e}"))?,
            });
        }
        // The anchor is one of `anchors` (webpki hands back a reference into the slice):
        // its position is that of the trusted certificate it came from.
        let anchor = verified.anchor();
        let index = self
            .anchors
            .iter()
            .position(|a| std::ptr::eq(a, anchor))
            .or_else(|| self.anchors.iter().position(|a| a == anchor))
            .ok_or_else(|| "the verified path ends at an unknown trust anchor".to_owned())?;
        path.push(PathCert {
            role: PathRole::Anchor,
            subject: self
                .anchor_subjects
                .get(index)
                .cloned()
                .ok_or_else(|| "the verified path ends at an unknown trust anchor".to_owned())?,
        });
        let matched = path.iter().enumerate().find_map(|(i, cert)| {
            self.attributes
                .iter()
                .find(|e| e.subject == cert.subject)
                .map(|e| (i, e))
        });
        Ok(X509Identity {
            username,
            attributes: matched
                .map(|(_, e)| e.attributes.clone())
                .unwrap_or_default(),
            expiry,
            path,
            matched: matched.map(|(i, e)| (i, e.label.clone())),
        })
    }
}

pub(crate) struct X509Method {
    identifier: CertIdentifier,
    /// With `additionalValidation: AzureDeviceRegistry`.
    registry: Option<Arc<DeviceRegistry>>,
}

impl X509Method {
    pub(crate) fn new(config: &Config, settings: &X509Settings) -> Result<Self, X509SetupError> {
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
        Ok(X509Method {
            identifier: CertIdentifier::new(config, settings)?,
            registry,
        })
    }

    pub(super) fn trusted(&self) -> &[CertificateDer<'static>] {
        self.identifier.trusted()
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

    /// The principal for the chain the TLS handshake received, verified again here.
    fn principal(
        &self,
        chain: &[CertificateDer<'static>],
        client_id: &str,
    ) -> Result<Principal, String> {
        let identity = self.identifier.identify(chain, SystemTime::now())?;
        let registry = match &self.registry {
            None => None,
            Some(registry) => {
                let check = RegistryCheck::new(registry.clone(), identity.username.clone());
                check.check()?;
                Some(check)
            }
        };
        Ok(Principal {
            username: Some(identity.username),
            client_id: client_id.to_owned(),
            attributes: identity.attributes,
            expiry: Some(identity.expiry),
            method: "X509",
            registry,
        })
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

    fn entry(label: &str, subject: &str, pairs: &[(&str, &str)]) -> AttributeEntry {
        AttributeEntry {
            label: label.into(),
            subject: Dn::parse(subject).expect("dn"),
            attributes: attrs(pairs),
        }
    }

    fn method(trusted: Vec<CertificateDer<'static>>, entries: Vec<AttributeEntry>) -> X509Method {
        X509Method {
            identifier: CertIdentifier::from_parts(trusted, entries).expect("identifier"),
            registry: None,
        }
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
        let method = method(
            vec![root.certificate().clone()],
            vec![
                entry(
                    "root",
                    "CN = Contoso Root CA Cert, O = Contoso",
                    &[("organization", "contoso")],
                ),
                entry(
                    "intermediate",
                    "O=Contoso,CN=Contoso Intermediate CA",
                    &[("city", "seattle"), ("foo", "bar")],
                ),
                entry("fan", "CN = smart-fan, O = Contoso", &[("building", "17")]),
            ],
        );
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
        // A leaf under a CA nobody trusts is refused outright (the handshake would have
        // refused it too; a reload may have dropped the CA since).
        let other = Authority::from_issued(
            issue_self_signed(&req(Usage::Ca, "Other Root"), key(), now).expect("other"),
        )
        .expect("other CA");
        assert!(method.principal(&leaf(&other, "stranger"), "c").is_err());
    }

    /// Certificates the client appends but the verifier does not chain through give
    /// nothing: a self-made "CA" with the subject of an entry, after a valid chain.
    #[test]
    fn appended_certificates_off_the_verified_path_give_no_attributes() {
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
        let fake = issue_self_signed(&req(Usage::Ca, "Building 17 CA"), key(), now).expect("fake");
        let method = method(
            vec![root.certificate().clone()],
            vec![entry(
                "b17",
                "CN = Building 17 CA, O = Contoso",
                &[("building", "17")],
            )],
        );
        let issued = intermediate
            .issue(&req(Usage::Client, "thermostat"), key(), now)
            .expect("leaf");
        let mut chain = issued.chain().to_vec();
        chain.push(fake.leaf().clone());
        let principal = method.principal(&chain, "c").expect("still a valid device");
        assert_eq!(principal.username.as_deref(), Some("thermostat"));
        assert!(
            principal.attributes.is_empty(),
            "{:?}",
            principal.attributes
        );
        let identity = method.identifier.identify(&chain, now).expect("identity");
        let roles: Vec<PathRole> = identity.path.iter().map(|c| c.role).collect();
        assert_eq!(
            roles,
            [PathRole::Leaf, PathRole::Intermediate, PathRole::Anchor]
        );
        assert_eq!(identity.matched, None);
        // The self-made certificate as the leaf's only companion: no path, refused.
        let alone = vec![issued.leaf().clone(), fake.leaf().clone()];
        assert!(method.principal(&alone, "c").is_err());
        // A leaf really issued by a CA with that subject gets the attributes.
        let b17 = Authority::from_issued(
            root.issue(&req(Usage::Ca, "Building 17 CA"), key(), now)
                .expect("b17"),
        )
        .expect("b17 CA");
        let real = b17
            .issue(&req(Usage::Client, "thermostat"), key(), now)
            .expect("leaf");
        let principal = method.principal(real.chain(), "c").expect("principal");
        assert_eq!(principal.attributes, attrs(&[("building", "17")]));
    }

    /// The session ends when the first certificate of the path expires, not only the leaf.
    #[test]
    fn expiry_is_the_earliest_not_after_of_the_path() {
        let now = SystemTime::now();
        let root = Authority::from_issued(
            issue_self_signed(&req(Usage::Ca, "Root"), key(), now).expect("root"),
        )
        .expect("root CA");
        let mut short = req(Usage::Ca, "Short Intermediate");
        short.duration = Duration::from_secs(600);
        let intermediate =
            Authority::from_issued(root.issue(&short, key(), now).expect("intermediate"))
                .expect("intermediate CA");
        let issued = intermediate
            .issue(&req(Usage::Client, "fan"), key(), now)
            .expect("leaf");
        let method = method(vec![root.certificate().clone()], Vec::new());
        let identity = method
            .identifier
            .identify(issued.chain(), now)
            .expect("identity");
        assert_eq!(identity.expiry, intermediate.info().not_after);
        assert!(identity.expiry <= now + Duration::from_secs(600));
    }
}
