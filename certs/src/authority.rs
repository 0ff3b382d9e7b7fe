//! A CA that issues certificates: its certificate, key and the chain above it.
//!
//! Output follows cert-manager's CA issuer: `tls.crt` is the leaf followed by the
//! intermediates (the issuing CA itself when it is not the root, then the certificates
//! above it), without the root; `ca.crt` is the root. When the secret does not carry the
//! root, the top-most certificate known stands in for it.

use std::path::PathBuf;
use std::time::SystemTime;

use gatehouse_config::SecretFiles;
use rustls_pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;

use crate::issue::{is_self_signed, CertRequest, IssueError, Issued};
use crate::keys::{Key, KeyError};
use crate::load::{self, LoadError};
use crate::x509::{self, CertInfo, CertParseError};

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{}: not a CA certificate (basicConstraints CA:TRUE is missing)", origin.display())]
    NotCa { origin: PathBuf },
    #[error("{}: the CA certificate's key usage does not allow signing certificates", origin.display())]
    CannotSign { origin: PathBuf },
    #[error("{}: {source}", origin.display())]
    Key {
        origin: PathBuf,
        #[source]
        source: KeyError,
    },
    #[error("{}: {source}", origin.display())]
    Certificate {
        origin: PathBuf,
        #[source]
        source: CertParseError,
    },
}

/// A CA certificate with its key, able to issue.
#[derive(Debug)]
pub struct Authority {
    cert: CertificateDer<'static>,
    info: CertInfo,
    key: Key,
    /// Certificates above `cert`, up to but excluding `root`: they follow `cert` in `tls.crt`.
    above: Vec<CertificateDer<'static>>,
    /// Top of the chain: a self-signed root, or the top-most certificate known.
    root: CertificateDer<'static>,
}

impl Authority {
    /// Loads a `ca` issuer's secret: `tls.crt` (the CA, optionally followed by its chain),
    /// `tls.key`, and the optional `ca.crt` (the root, or more of the chain). The CA may be
    /// an intermediate; its chain is rebuilt from both files by name and signature.
    pub fn from_files(files: &SecretFiles) -> Result<Authority, AuthorityError> {
        let loaded = load::load_chain_and_key(&files.cert_file, &files.key_file)?;
        let origin = files.cert_file.clone();
        let key = loaded.key().map_err(|source| AuthorityError::Key {
            origin: files.key_file.clone(),
            source,
        })?;
        let mut candidates = loaded.chain()[1..].to_vec();
        if let Some(ca_file) = &files.ca_file {
            match load::read_certificates(ca_file) {
                Ok(certs) => candidates.extend(certs),
                Err(LoadError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Authority::from_parts(loaded.chain()[0].clone(), key, &candidates, origin)
    }

    /// A CA just issued (a bootstrapped root or intermediate), ready to issue in turn.
    pub fn from_issued(issued: Issued) -> Result<Authority, AuthorityError> {
        let (chain, ca, key) = issued.into_parts();
        let mut candidates = chain[1..].to_vec();
        candidates.push(ca);
        Authority::from_parts(
            chain[0].clone(),
            key,
            &candidates,
            PathBuf::from("<issued CA certificate>"),
        )
    }

    fn from_parts(
        cert: CertificateDer<'static>,
        key: Key,
        candidates: &[CertificateDer<'static>],
        origin: PathBuf,
    ) -> Result<Authority, AuthorityError> {
        let cert_err = |source| AuthorityError::Certificate {
            origin: origin.clone(),
            source,
        };
        let parsed = x509::parse(&cert).map_err(cert_err)?;
        let info = CertInfo::from_parsed(&parsed).map_err(cert_err)?;
        if !info.is_ca {
            return Err(AuthorityError::NotCa { origin });
        }
        if let Ok(Some(usage)) = parsed.key_usage() {
            if !usage.value.key_cert_sign() {
                return Err(AuthorityError::CannotSign { origin });
            }
        }
        let (above, root) = chain_above(&cert, candidates);
        if !is_self_signed(&root) {
            tracing::warn!(
                target: "tls",
                ca = %info.subject,
                top = %CertInfo::from_der(&root).map(|i| i.subject).unwrap_or_default(),
                "the CA's chain does not reach a self-signed root (add it to ca.crt); \
                 clients must trust the top-most certificate instead"
            );
        }
        Ok(Authority {
            cert,
            info,
            key,
            above,
            root,
        })
    }

    /// Issues `request` for `key`, valid from `now` (backdated by the clock skew allowance)
    /// and never beyond this CA's own expiry.
    pub fn issue(
        &self,
        request: &CertRequest,
        key: Key,
        now: SystemTime,
    ) -> Result<Issued, IssueError> {
        if !self.info.is_valid_at(now) {
            return Err(IssueError::AuthorityNotValid {
                subject: self.info.subject.clone(),
                not_before: x509::rfc3339(self.info.not_before),
                not_after: x509::rfc3339(self.info.not_after),
            });
        }
        let mut chain = Vec::with_capacity(2 + self.above.len());
        if self.cert != self.root {
            chain.push(self.cert.clone());
        }
        chain.extend(self.above.iter().cloned());
        for cert in &chain {
            let family = CertInfo::from_der(cert)?.key_family;
            if family != key.family() {
                return Err(IssueError::MixedKeyFamilies {
                    requested: key.family(),
                    chain: family,
                });
            }
        }
        let params = request.params(&key, now, Some(self.info.not_after))?;
        let issuer = rcgen::Issuer::from_ca_cert_der(&self.cert, self.key.signing_key())?;
        let leaf = params.signed_by(key.signing_key(), &issuer)?;
        chain.insert(0, leaf.der().clone());
        Issued::new(chain, self.root.clone(), key)
    }

    /// Whether this CA's key signed `cert` (a certificate in a secret is kept only when its
    /// issuer is still the one configured).
    pub fn has_signed(&self, cert: &CertificateDer<'_>) -> bool {
        x509::is_issued_by(cert, &self.cert)
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The root clients trust for certificates of this CA (`ca.crt`, the trust bundle).
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    /// The certificates `tls.crt` carries after an issued leaf.
    pub fn intermediates(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = Vec::new();
        if self.cert != self.root {
            chain.push(self.cert.clone());
        }
        chain.extend(self.above.iter().cloned());
        chain
    }
}

/// Walks from `cert` up through `candidates` (each step: issuer name matches and the
/// signature verifies) and returns the certificates strictly between `cert` and the top,
/// and the top (`cert` itself when nothing is above it).
fn chain_above(
    cert: &CertificateDer<'static>,
    candidates: &[CertificateDer<'static>],
) -> (Vec<CertificateDer<'static>>, CertificateDer<'static>) {
    let parsed: Vec<(&CertificateDer<'static>, X509Certificate<'_>)> = candidates
        .iter()
        .filter_map(|der| x509::parse(der).ok().map(|c| (der, c)))
        .collect();
    let mut path: Vec<CertificateDer<'static>> = vec![cert.clone()];
    while let Some(top) = path.last().cloned() {
        let Ok(current) = x509::parse(&top) else {
            break;
        };
        if is_self_signed(&top) {
            break;
        }
        let parent = parsed.iter().find(|(der, candidate)| {
            !path.contains(der)
                && candidate.subject().as_raw() == current.issuer().as_raw()
                && x509::is_signed_by(&current, candidate.public_key())
        });
        match parent {
            Some((der, _)) => path.push((*der).clone()),
            None => break,
        }
    }
    let root = path.pop().unwrap_or_else(|| cert.clone());
    // `path` now holds `cert` and the certificates above it, below the root.
    let above = path.into_iter().skip(1).collect();
    (above, root)
}
