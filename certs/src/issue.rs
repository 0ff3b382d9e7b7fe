//! What to issue ([`CertRequest`]) and what comes out ([`Issued`]), shared by every issuer.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::keys::{Key, KeyError, KeyFamily};
use crate::pem;
use crate::x509::{self, CertInfo, CertParseError};

/// How far `notBefore` is set in the past, so a peer whose clock is a little behind ours
/// does not reject a certificate issued a moment ago.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a certificate is for; decides basic constraints and (extended) key usages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (serverAuth), e.g. a listener port.
    Server,
    /// A TLS client (clientAuth), e.g. for X.509 authentication tests or custom auth.
    Client,
    /// Both: a `certificates:` entry without `isCA`, whose use the configuration doesn't
    /// say (cert-manager's default usages don't restrict it either).
    ServerAndClient,
    /// A CA that issues other certificates (`certificates:` with `isCA: true`).
    Ca,
}

/// The certificate to issue. The key is passed separately: whether it is new or reused is
/// the caller's policy (`rotationPolicy`), not the issuer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    pub usage: Usage,
    /// Subject CN. Without one, a leaf takes its first DNS name (a subject-less certificate
    /// confuses tools that print it).
    pub common_name: Option<String>,
    /// Subject O, e.g. `Gatehouse` for the quickstart CA.
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    /// Lifetime from the moment of issuing; `notBefore` is backdated by [`CLOCK_SKEW`] on top,
    /// and `notAfter` never exceeds the issuing CA's.
    pub duration: Duration,
}

impl CertRequest {
    /// The subject CN the certificate gets.
    pub fn effective_common_name(&self) -> Option<&str> {
        match (&self.common_name, self.usage) {
            (Some(cn), _) => Some(cn),
            (None, Usage::Ca) => None,
            (None, _) => self.dns_names.first().map(String::as_str),
        }
    }

    /// rcgen parameters for this request, valid from `now - CLOCK_SKEW` until `now +
    /// duration` or `not_after_limit`, whichever is earlier.
    pub(crate) fn params(
        &self,
        key: &Key,
        now: SystemTime,
        not_after_limit: Option<SystemTime>,
    ) -> Result<CertificateParams, IssueError> {
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        if let Some(o) = &self.organization {
            subject.push(DnType::OrganizationName, o.as_str());
        }
        if let Some(cn) = self.effective_common_name() {
            subject.push(DnType::CommonName, cn);
        }
        params.distinguished_name = subject;
        params.serial_number = Some(random_serial()?);
        params.not_before = OffsetDateTime::from(now.checked_sub(CLOCK_SKEW).unwrap_or(now));
        let mut not_after = now.checked_add(self.duration).ok_or(IssueError::Duration)?;
        if let Some(limit) = not_after_limit {
            not_after = not_after.min(limit);
        }
        params.not_after = OffsetDateTime::from(not_after);
        for name in &self.dns_names {
            let ia5 = name
                .as_str()
                .try_into()
                .map_err(|_| IssueError::InvalidDnsName { name: name.clone() })?;
            params.subject_alt_names.push(SanType::DnsName(ia5));
        }
        for ip in &self.ip_addresses {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.use_authority_key_identifier_extension = true;
        match self.usage {
            Usage::Ca => {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.key_usages = vec![
                    KeyUsagePurpose::KeyCertSign,
                    KeyUsagePurpose::CrlSign,
                    KeyUsagePurpose::DigitalSignature,
                ];
            }
            Usage::Server | Usage::Client | Usage::ServerAndClient => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                // TLS 1.2 RSA key exchange encrypts with the certificate's key.
                if key.family() == KeyFamily::Rsa {
                    params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
                }
                if self.usage != Usage::Client {
                    params
                        .extended_key_usages
                        .push(ExtendedKeyUsagePurpose::ServerAuth);
                }
                if self.usage != Usage::Server {
                    params
                        .extended_key_usages
                        .push(ExtendedKeyUsagePurpose::ClientAuth);
                }
            }
        }
        Ok(params)
    }
}

/// 16 random bytes, positive: RFC 5280 asks for unpredictable serials of at most 20 bytes.
fn random_serial() -> Result<SerialNumber, IssueError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| IssueError::Random)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("`{name}` cannot be a DNS name in a certificate (ASCII only)")]
    InvalidDnsName { name: String },
    #[error("the duration is too long to represent")]
    Duration,
    #[error(
        "cannot issue an {requested} certificate under the {chain} CA chain: AIO requires \
         every certificate of a chain to use the same key algorithm family"
    )]
    MixedKeyFamilies {
        requested: KeyFamily,
        chain: KeyFamily,
    },
    #[error("the issuing CA `{subject}` is not valid now (valid {not_before} to {not_after})")]
    AuthorityNotValid {
        subject: String,
        not_before: String,
        not_after: String,
    },
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("signing the certificate failed: {0}")]
    Sign(#[from] rcgen::Error),
    #[error("the issued certificate does not parse back: {0}")]
    Parse(#[from] CertParseError),
}

/// A freshly issued certificate, in the shape of a cert-manager secret.
#[derive(Debug)]
pub struct Issued {
    /// Leaf first, then the intermediates up to (not including) the root: `tls.crt`.
    chain: Vec<CertificateDer<'static>>,
    /// The root of the chain (or the top-most CA known): `ca.crt`.
    ca: CertificateDer<'static>,
    key: Key,
    info: CertInfo,
}

impl Issued {
    pub(crate) fn new(
        chain: Vec<CertificateDer<'static>>,
        ca: CertificateDer<'static>,
        key: Key,
    ) -> Result<Issued, IssueError> {
        let leaf = chain
            .first()
            .ok_or_else(|| CertParseError::Malformed("empty chain".into()))?;
        let info = CertInfo::from_der(leaf)?;
        Ok(Issued {
            chain,
            ca,
            key,
            info,
        })
    }

    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// `tls.crt`: leaf, then intermediates.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// `ca.crt`.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn serial(&self) -> &str {
        &self.info.serial
    }

    pub fn not_after(&self) -> SystemTime {
        self.info.not_after
    }

    pub fn cert_pem(&self) -> String {
        pem::encode_cert(self.leaf())
    }

    pub fn chain_pem(&self) -> String {
        pem::encode_certs(&self.chain)
    }

    pub fn ca_pem(&self) -> String {
        pem::encode_cert(&self.ca)
    }

    pub fn key_pem(&self) -> String {
        self.key.to_pem()
    }

    pub(crate) fn into_parts(self) -> (Vec<CertificateDer<'static>>, CertificateDer<'static>, Key) {
        (self.chain, self.ca, self.key)
    }
}

/// Signs `request` with its own key: a self-signed root, or a self-signed leaf from a
/// `selfSigned` issuer (`tls.crt` and `ca.crt` are then the same certificate).
pub fn issue_self_signed(
    request: &CertRequest,
    key: Key,
    now: SystemTime,
) -> Result<Issued, IssueError> {
    let params = request.params(&key, now, None)?;
    let cert = params.self_signed(key.signing_key())?;
    let der = cert.der().clone();
    Issued::new(vec![der.clone()], der, key)
}

/// Whether `cert` is self-issued and carries a signature of its own key.
pub(crate) fn is_self_signed(cert: &CertificateDer<'_>) -> bool {
    x509::parse(cert).is_ok_and(|c| {
        c.subject().as_raw() == c.issuer().as_raw() && x509::is_signed_by(&c, c.public_key())
    })
}
