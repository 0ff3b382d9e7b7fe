//! The three ways an issuer signs, behind one type the registry hands out.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use crate::authority::Authority;
use crate::issue::{is_self_signed, issue_self_signed, CertRequest, IssueError, Issued};
use crate::keys::Key;
use crate::quickstart::QuickstartCa;

#[derive(Debug)]
pub enum Signer {
    /// The default issuer: the quickstart root CA.
    Quickstart(QuickstartCa),
    /// A `ca` issuer: a CA certificate and key from a secret.
    Ca(Authority),
    /// A `selfSigned` issuer: every certificate signs itself.
    SelfSigned,
}

impl Signer {
    pub fn issue(
        &self,
        request: &CertRequest,
        key: Key,
        now: SystemTime,
    ) -> Result<Issued, IssueError> {
        match self {
            Signer::Quickstart(ca) => ca.authority().issue(request, key, now),
            Signer::Ca(ca) => ca.issue(request, key, now),
            Signer::SelfSigned => issue_self_signed(request, key, now),
        }
    }

    /// Whether `cert` comes from this issuer, so a stored certificate can be kept.
    pub fn has_signed(&self, cert: &CertificateDer<'_>) -> bool {
        match self {
            Signer::Quickstart(ca) => ca.has_signed(cert),
            Signer::Ca(ca) => ca.has_signed(cert),
            Signer::SelfSigned => is_self_signed(cert),
        }
    }

    /// Roots clients need to trust this issuer's certificates (none for `selfSigned`: each
    /// certificate is its own root, found in its secret's `ca.crt`).
    pub fn roots(&self) -> Vec<CertificateDer<'static>> {
        match self {
            Signer::Quickstart(ca) => ca.roots().cloned().collect(),
            Signer::Ca(ca) => vec![ca.root().clone()],
            Signer::SelfSigned => Vec::new(),
        }
    }
}
