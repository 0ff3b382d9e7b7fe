//! Reading a certificate chain and its private key from PEM files into what a rustls
//! certificate resolver serves.
//!
//! Files that do not exist yet are told apart from files that are wrong: for a Manual TLS
//! port the first means "wait for the secret", the second "tell the operator".

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::keys::{Key, KeyError, KeyFamily};
use crate::x509::{self, CertInfo, CertParseError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file does not exist (yet). A Manual TLS port waits for it to appear.
    #[error("{} not found", path.display())]
    NotFound { path: PathBuf },
    /// The files exist but cannot be used.
    #[error(transparent)]
    Invalid(#[from] InvalidFiles),
}

impl LoadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, LoadError::NotFound { .. })
    }
}

/// What is wrong with certificate or key files that exist. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum InvalidFiles {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: the file is empty", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not valid PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate in the file (expected PEM `CERTIFICATE` blocks, leaf first)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: certificate #{index} (the leaf is #0): {source}", path.display())]
    Certificate {
        path: PathBuf,
        index: usize,
        #[source]
        source: CertParseError,
    },
    #[error(
        "{}: certificate #{index} has an {found} key but the leaf (#0) has an {leaf} key; \
         all certificates of the chain must use the same key algorithm family",
        path.display()
    )]
    MixedKeyFamilies {
        path: PathBuf,
        index: usize,
        leaf: KeyFamily,
        found: KeyFamily,
    },
    #[error(
        "{}: no unencrypted private key (expected PEM `PRIVATE KEY`, `EC PRIVATE KEY` \
         or `RSA PRIVATE KEY`)",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error("{}: more than one private key; the file must hold exactly one", path.display())]
    SeveralKeys { path: PathBuf },
    #[error("{}: unsupported private key: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error(
        "{}: the private key does not match the certificate in {}",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        cert_path: PathBuf,
        key_path: PathBuf,
    },
}

/// A chain and key ready to serve, with the leaf's facts for logs and renewal.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// Leaf first, then intermediates, with the key rustls signs handshakes with.
    pub certified_key: Arc<CertifiedKey>,
    /// The leaf certificate.
    pub info: CertInfo,
    /// Kept so a `rotationPolicy: Never` renewal can reuse the key.
    key: Arc<PrivateKeyDer<'static>>,
}

impl LoadedCert {
    /// Leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.certified_key.cert
    }

    /// The private key as a signing key for issuing (e.g. to renew with the same key).
    pub fn key(&self) -> Result<Key, KeyError> {
        Key::from_der(self.key.clone_key())
    }
}

/// Loads a chain (leaf first, then intermediates) and the leaf's private key.
///
/// Checks what a TLS client would otherwise report as an opaque handshake failure: every
/// certificate parses and has the leaf's key family (AIO requires one family per chain),
/// and the key belongs to the leaf. Expiry is not checked here: an expired certificate is
/// still the one to serve until its replacement arrives.
pub fn load_chain_and_key(cert_file: &Path, key_file: &Path) -> Result<LoadedCert, LoadError> {
    let cert_bytes = read(cert_file)?;
    let key_bytes = read(key_file)?;
    let chain = parse_certificates(cert_file, &cert_bytes)?;
    let info = check_chain(cert_file, &chain)?;
    let key = parse_key(key_file, &key_bytes)?;

    let signing_key = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(|e| {
        InvalidFiles::Key {
            path: key_file.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        // `Unknown`: the provider cannot derive the public key; the handshake will tell.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(InvalidFiles::KeyMismatch {
                cert_path: cert_file.to_owned(),
                key_path: key_file.to_owned(),
            }
            .into())
        }
    }
    Ok(LoadedCert {
        certified_key: Arc::new(certified_key),
        info,
        key: Arc::new(key),
    })
}

/// Every certificate in a PEM file (a CA file or bundle); at least one.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read(path)?;
    let certs = parse_certificates(path, &bytes)?;
    for (index, cert) in certs.iter().enumerate() {
        x509::parse(cert).map_err(|source| InvalidFiles::Certificate {
            path: path.to_owned(),
            index,
            source,
        })?;
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => LoadError::NotFound {
            path: path.to_owned(),
        },
        _ => InvalidFiles::Read {
            path: path.to_owned(),
            source,
        }
        .into(),
    })
}

fn parse_certificates(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, InvalidFiles> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidFiles::Empty {
            path: path.to_owned(),
        });
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InvalidFiles::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(InvalidFiles::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, InvalidFiles> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(InvalidFiles::Empty {
            path: path.to_owned(),
        });
    }
    let mut keys = PrivateKeyDer::pem_slice_iter(bytes);
    let pem_err = |e: rustls_pki_types::pem::Error| InvalidFiles::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let key = match keys.next() {
        None => {
            return Err(InvalidFiles::NoKey {
                path: path.to_owned(),
            })
        }
        Some(key) => key.map_err(pem_err)?,
    };
    if keys.next().is_some() {
        return Err(InvalidFiles::SeveralKeys {
            path: path.to_owned(),
        });
    }
    Ok(key)
}

/// Parses every certificate, checks the key families, warns about an unusual order, and
/// returns the leaf's facts.
fn check_chain(path: &Path, chain: &[CertificateDer<'_>]) -> Result<CertInfo, InvalidFiles> {
    let mut parsed = Vec::with_capacity(chain.len());
    for (index, der) in chain.iter().enumerate() {
        let cert_err = |source| InvalidFiles::Certificate {
            path: path.to_owned(),
            index,
            source,
        };
        let cert = x509::parse(der).map_err(cert_err)?;
        let info = CertInfo::from_parsed(&cert).map_err(cert_err)?;
        if let Some(leaf) = parsed
            .first()
            .map(|(_, leaf): &(_, CertInfo)| leaf.key_family)
        {
            if info.key_family != leaf {
                return Err(InvalidFiles::MixedKeyFamilies {
                    path: path.to_owned(),
                    index,
                    leaf,
                    found: info.key_family,
                });
            }
        }
        parsed.push((cert, info));
    }
    for (index, pair) in parsed.windows(2).enumerate() {
        if pair[0].0.issuer().as_raw() != pair[1].0.subject().as_raw() {
            tracing::warn!(
                target: "tls",
                file = %path.display(),
                "certificate #{} was not issued by certificate #{}: the chain should be the \
                 leaf first, then each issuer in turn",
                index,
                index + 1
            );
        }
    }
    match parsed.into_iter().next() {
        Some((_, leaf)) => Ok(leaf),
        None => Err(InvalidFiles::NoCertificate {
            path: path.to_owned(),
        }),
    }
}
