//! The TLS client certificate verifier of a port with an authentication chain, swappable
//! so a configuration reload can change the trusted client CAs (or add or remove X.509)
//! without rebuilding the port's TLS acceptor or touching live connections.

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

/// Delegates to the current verifier of the chain; without one (a chain with no X.509
/// method) client certificates are not requested.
///
/// No root hints are sent (`certificate_authorities` is optional in TLS 1.3 and a hint
/// in TLS 1.2): hints borrowed from a verifier that a reload may replace cannot be
/// handed out safely, and clients with one certificate present it regardless.
#[derive(Debug)]
pub struct SwappableVerifier {
    current: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    /// Signature checks when no verifier is set (never reached: certificates are then
    /// not requested), from the process-wide crypto provider.
    fallback_schemes: Vec<SignatureScheme>,
}

impl SwappableVerifier {
    pub fn new(current: Option<Arc<dyn ClientCertVerifier>>) -> Self {
        let fallback_schemes = rustls::crypto::CryptoProvider::get_default()
            .map(|p| p.signature_verification_algorithms.supported_schemes())
            .unwrap_or_default();
        SwappableVerifier {
            current: RwLock::new(current),
            fallback_schemes,
        }
    }

    pub fn set(&self, verifier: Option<Arc<dyn ClientCertVerifier>>) {
        *self.current.write() = verifier;
    }

    pub fn get(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.current.read().clone()
    }
}

fn no_verifier() -> Error {
    Error::General("client certificates are not accepted on this port".into())
}

impl ClientCertVerifier for SwappableVerifier {
    fn offer_client_auth(&self) -> bool {
        self.get().is_some_and(|v| v.offer_client_auth())
    }

    fn client_auth_mandatory(&self) -> bool {
        self.get().is_some_and(|v| v.client_auth_mandatory())
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.get() {
            Some(v) => v.verify_client_cert(end_entity, intermediates, now),
            None => Err(no_verifier()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match self.get() {
            Some(v) => v.verify_tls12_signature(message, cert, dss),
            None => Err(no_verifier()),
        }
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        match self.get() {
            Some(v) => v.verify_tls13_signature(message, cert, dss),
            None => Err(no_verifier()),
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self.get() {
            Some(v) => v.supported_verify_schemes(),
            None => self.fallback_schemes.clone(),
        }
    }
}
