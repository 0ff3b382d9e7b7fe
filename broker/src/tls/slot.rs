//! The certificate a TLS port serves, swappable while the port runs.

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Empty until the certificate exists (a Manual port waiting for its secret): handshakes
/// then fail with a TLS alert and the connection closes.
#[derive(Debug, Default)]
pub struct CertSlot {
    current: RwLock<Option<Arc<CertifiedKey>>>,
}

impl CertSlot {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write() = Some(key);
    }

    pub fn is_empty(&self) -> bool {
        self.current.read().is_none()
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().clone()
    }
}
