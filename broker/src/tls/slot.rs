//! The certificate a TLS port serves, swappable while the port runs.

use std::sync::Arc;
use std::time::SystemTime;

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

    /// When the served leaf certificate expires (`None` while the slot is empty). Parsed
    /// on each call: only `/metrics` asks, and the slot stays as cheap as can be for
    /// handshakes.
    pub fn not_after(&self) -> Option<SystemTime> {
        let key = self.current.read().clone()?;
        let leaf = key.cert.first()?;
        gatehouse_certs::CertInfo::from_der(leaf)
            .ok()
            .map(|info| info.not_after)
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().clone()
    }
}
