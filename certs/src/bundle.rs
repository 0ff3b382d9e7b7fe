//! The public trust bundle: the root certificates clients need for the broker's issued
//! certificates, in one PEM file (`mosquitto_pub --cafile <dataDir>/trust/ca.crt`).
//!
//! What goes in (see `Issuers::trust_bundle`): the quickstart root(s), including a
//! rotated-out root until it expires, and the root of every `ca` issuer (bootstrapped by
//! `certificates:` or brought by the user). Self-signed leaves of `selfSigned` issuers are
//! not: they are not CAs, and TLS libraries differ on trusting a leaf directly.

use std::io;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use crate::fs::{write_atomic, Access};
use crate::pem;

/// Roots, without duplicates, in the order added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustBundle {
    certs: Vec<CertificateDer<'static>>,
}

#[derive(Debug, thiserror::Error)]
#[error("writing the trust bundle {}: {source}", path.display())]
pub struct BundleWriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl TrustBundle {
    /// `<dataDir>/trust/ca.crt`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("trust").join("ca.crt")
    }

    pub fn add(&mut self, cert: CertificateDer<'static>) {
        if !self.certs.contains(&cert) {
            self.certs.push(cert);
        }
    }

    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    pub fn to_pem(&self) -> String {
        pem::encode_certs(&self.certs)
    }

    /// Replaces `path` atomically, so a client never reads half a bundle.
    pub fn write(&self, path: &Path) -> Result<(), BundleWriteError> {
        write_atomic(path, self.to_pem().as_bytes(), Access::Public).map_err(|source| {
            BundleWriteError {
                path: path.to_owned(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_each_certificate_once() {
        let mut bundle = TrustBundle::default();
        bundle.add(CertificateDer::from(vec![1]));
        bundle.add(CertificateDer::from(vec![2]));
        bundle.add(CertificateDer::from(vec![1]));
        assert_eq!(bundle.certificates().len(), 2);
    }
}
