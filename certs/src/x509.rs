//! What Gatehouse reads from a certificate: validity, serial, names, key algorithm, and
//! whether one certificate was signed by a given key.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use gatehouse_config::PrivateKeyAlgorithm;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_PKCS1_SHA256WITHRSA, OID_PKCS1_SHA384WITHRSA,
    OID_PKCS1_SHA512WITHRSA, OID_SIG_ECDSA_WITH_SHA256, OID_SIG_ECDSA_WITH_SHA384,
    OID_SIG_ECDSA_WITH_SHA512, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::time::ASN1Time;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::keys::KeyFamily;

/// Why bytes are not a certificate Gatehouse can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertParseError {
    #[error("not a valid X.509 certificate: {0}")]
    Malformed(String),
    #[error("unsupported public key type {0} (EC, RSA and Ed25519 are supported)")]
    UnsupportedKey(String),
}

/// The facts about one certificate that certificate management and the broker's logs need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Lower-case hex without separators, to match logs against `openssl x509 -serial`.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The subject's first CN, when it has one.
    pub common_name: Option<String>,
    /// The subject as a distinguished name string (`O=Gatehouse, CN=...`).
    pub subject: String,
    pub issuer: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Subject and issuer are the same name: a root, or a self-signed leaf.
    pub self_issued: bool,
    pub key_family: KeyFamily,
    /// `None` for sizes AIO doesn't name (e.g. RSA 3072, P-224 is already unsupported).
    pub key_algorithm: Option<PrivateKeyAlgorithm>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
}

impl CertInfo {
    pub fn from_der(der: &[u8]) -> Result<CertInfo, CertParseError> {
        let cert = parse(der)?;
        CertInfo::from_parsed(&cert)
    }

    pub(crate) fn from_parsed(cert: &X509Certificate<'_>) -> Result<CertInfo, CertParseError> {
        let spki = cert.public_key();
        let key_family = family_of(spki).ok_or_else(|| {
            CertParseError::UnsupportedKey(spki.algorithm.algorithm.to_id_string())
        })?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let subject = cert.subject();
        Ok(CertInfo {
            serial: hex(cert.raw_serial()),
            not_before: system_time(cert.validity().not_before),
            not_after: system_time(cert.validity().not_after),
            common_name: subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            subject: subject.to_string(),
            issuer: cert.issuer().to_string(),
            is_ca: cert.is_ca(),
            self_issued: subject.as_raw() == cert.issuer().as_raw(),
            key_family,
            key_algorithm: algorithm_of(spki),
            dns_names,
            ip_addresses,
        })
    }

    /// Whether `now` is inside the validity period.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Parses one DER certificate, refusing trailing bytes.
pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertParseError> {
    match X509Certificate::from_der(der) {
        Ok((rest, _)) if !rest.is_empty() => Err(CertParseError::Malformed(format!(
            "{} bytes after the certificate",
            rest.len()
        ))),
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(CertParseError::Malformed(e.to_string())),
    }
}

pub(crate) fn family_of(spki: &SubjectPublicKeyInfo<'_>) -> Option<KeyFamily> {
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        Some(KeyFamily::Ec)
    } else if *oid == OID_PKCS1_RSAENCRYPTION || *oid == OID_PKCS1_RSASSAPSS {
        Some(KeyFamily::Rsa)
    } else if *oid == OID_SIG_ED25519 {
        Some(KeyFamily::Ed25519)
    } else {
        None
    }
}

pub(crate) fn algorithm_of(spki: &SubjectPublicKeyInfo<'_>) -> Option<PrivateKeyAlgorithm> {
    match family_of(spki)? {
        KeyFamily::Ed25519 => Some(PrivateKeyAlgorithm::Ed25519),
        KeyFamily::Ec => {
            let curve = curve_of(spki)?;
            if curve == OID_EC_P256 {
                Some(PrivateKeyAlgorithm::Ec256)
            } else if curve == OID_NIST_EC_P384 {
                Some(PrivateKeyAlgorithm::Ec384)
            } else if curve == OID_NIST_EC_P521 {
                Some(PrivateKeyAlgorithm::Ec521)
            } else {
                None
            }
        }
        KeyFamily::Rsa => match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => match rsa.key_size() {
                2048 => Some(PrivateKeyAlgorithm::Rsa2048),
                4096 => Some(PrivateKeyAlgorithm::Rsa4096),
                8192 => Some(PrivateKeyAlgorithm::Rsa8192),
                _ => None,
            },
            _ => None,
        },
    }
}

fn curve_of(spki: &SubjectPublicKeyInfo<'_>) -> Option<Oid<'static>> {
    let params = spki.algorithm.parameters.as_ref()?;
    params.as_oid().ok().map(|oid| oid.to_owned())
}

/// Whether `cert` carries a valid signature made by the key of `signer`.
///
/// Covers every signature Gatehouse issues, including ECDSA P-521 with SHA-512, which
/// x509-parser's own verifier lacks.
pub(crate) fn is_signed_by(cert: &X509Certificate<'_>, signer: &SubjectPublicKeyInfo<'_>) -> bool {
    let Some(algorithm) = verification_algorithm(&cert.signature_algorithm.algorithm, signer)
    else {
        return false;
    };
    UnparsedPublicKey::new(algorithm, &signer.subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

fn verification_algorithm(
    signature: &Oid<'_>,
    signer: &SubjectPublicKeyInfo<'_>,
) -> Option<&'static dyn VerificationAlgorithm> {
    if *signature == OID_PKCS1_SHA256WITHRSA {
        return Some(&signature::RSA_PKCS1_2048_8192_SHA256);
    } else if *signature == OID_PKCS1_SHA384WITHRSA {
        return Some(&signature::RSA_PKCS1_2048_8192_SHA384);
    } else if *signature == OID_PKCS1_SHA512WITHRSA {
        return Some(&signature::RSA_PKCS1_2048_8192_SHA512);
    } else if *signature == OID_SIG_ED25519 {
        return Some(&signature::ED25519);
    }
    let curve = curve_of(signer)?;
    let p256 = curve == OID_EC_P256;
    let p384 = curve == OID_NIST_EC_P384;
    let p521 = curve == OID_NIST_EC_P521;
    if *signature == OID_SIG_ECDSA_WITH_SHA256 {
        match (p256, p384, p521) {
            (true, _, _) => Some(&signature::ECDSA_P256_SHA256_ASN1),
            (_, true, _) => Some(&signature::ECDSA_P384_SHA256_ASN1),
            (_, _, true) => Some(&signature::ECDSA_P521_SHA256_ASN1),
            _ => None,
        }
    } else if *signature == OID_SIG_ECDSA_WITH_SHA384 {
        match (p256, p384, p521) {
            (true, _, _) => Some(&signature::ECDSA_P256_SHA384_ASN1),
            (_, true, _) => Some(&signature::ECDSA_P384_SHA384_ASN1),
            (_, _, true) => Some(&signature::ECDSA_P521_SHA384_ASN1),
            _ => None,
        }
    } else if *signature == OID_SIG_ECDSA_WITH_SHA512 {
        p521.then_some(&signature::ECDSA_P521_SHA512_ASN1 as &dyn VerificationAlgorithm)
    } else {
        None
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3339 in UTC, for messages.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

/// Whether `issuer` issued `cert`: names chain up and the signature verifies.
pub(crate) fn is_issued_by(cert: &[u8], issuer: &[u8]) -> bool {
    let (Ok(cert), Ok(issuer)) = (parse(cert), parse(issuer)) else {
        return false;
    };
    cert.issuer().as_raw() == issuer.subject().as_raw() && is_signed_by(&cert, issuer.public_key())
}
