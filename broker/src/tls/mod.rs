//! Per-port TLS (behaviour.md §2): a rustls acceptor per TLS port whose certificate sits
//! in a swappable slot, so rotation reaches new handshakes without touching existing
//! connections.
//!
//! - [`manual`]: chain + key files from a secret, polled for changes; missing files
//!   reserve the port until they appear.
//! - [`automatic`]: issued by the built-in issuers (`gatehouse-certs`) at start and
//!   renewed `renewBefore` ahead of expiry by one background task.
//!
//! The handshake itself runs in the connection task, under the connect deadline
//! (see `transport`).

mod automatic;
mod manual;
mod slot;

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_config::{Config, Tls};
use rustls::server::danger::ClientCertVerifier;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub use slot::CertSlot;

/// Why TLS could not be set up at start-up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: server certificate of secret `{secret}`: {source}")]
    Manual {
        path: String,
        secret: String,
        source: gatehouse_certs::LoadError,
    },
    #[error("certificate issuers: {0}")]
    Issuers(#[from] gatehouse_certs::IssuersError),
    #[error("{path}: issuing the server certificate: {source}")]
    Issue {
        path: String,
        source: gatehouse_certs::EnsureError,
    },
    #[error("{path}: reading the issued server certificate: {source}")]
    Issued {
        path: String,
        source: gatehouse_certs::LoadError,
    },
}

/// The acceptors of every TLS port, keyed by (listener index, port index).
pub struct TlsPorts {
    acceptors: HashMap<(usize, usize), TlsAcceptor>,
    /// The certificate slots, for readiness and the certificate expiry metric.
    slots: HashMap<(usize, usize), Arc<CertSlot>>,
}

impl TlsPorts {
    /// Load or issue every port's certificate and start the tasks that keep them
    /// current (in `tasks`, so they end with the server).
    /// `client_verifier(listener, port)` gives the client certificate verifier of ports
    /// whose authentication chain has X.509.
    pub fn setup(
        config: &Config,
        client_verifier: impl Fn(usize, usize) -> Option<Arc<dyn ClientCertVerifier>>,
        tasks: &mut JoinSet<()>,
    ) -> Result<TlsPorts, TlsError> {
        let mut acceptors = HashMap::new();
        let mut slots = HashMap::new();
        let mut automatic = Vec::new();
        for (li, listener) in config.listeners.iter().enumerate() {
            for (pi, port) in listener.ports.iter().enumerate() {
                let Some(tls) = &port.tls else { continue };
                let path = format!("{}.tls", config.paths.port(li, pi));
                let slot = Arc::new(CertSlot::default());
                match tls {
                    Tls::Manual(manual) => {
                        manual::start(config, &path, &manual.secret_ref, slot.clone(), tasks)?
                    }
                    Tls::Automatic(spec) => automatic.push(automatic::AutoPort::new(
                        config,
                        path.clone(),
                        &listener.service_name,
                        spec,
                        slot.clone(),
                    )),
                }
                slots.insert((li, pi), slot.clone());
                acceptors.insert((li, pi), acceptor(slot, client_verifier(li, pi)));
            }
        }
        // Issuers are bootstrapped when anything needs them, so a configuration without
        // automatic TLS or `certificates:` writes nothing to the data directory.
        if !automatic.is_empty() || !config.certificates.is_empty() {
            automatic::start(config, automatic, tasks)?;
        }
        Ok(TlsPorts { acceptors, slots })
    }

    pub fn acceptor(&self, listener: usize, port: usize) -> Option<TlsAcceptor> {
        self.acceptors.get(&(listener, port)).cloned()
    }

    pub fn slot(&self, listener: usize, port: usize) -> Option<Arc<CertSlot>> {
        self.slots.get(&(listener, port)).cloned()
    }
}

/// TLS 1.2 and 1.3 only (rustls supports nothing older), certificate from `slot`, client
/// certificates requested when `client_verifier` is given.
fn acceptor(
    slot: Arc<CertSlot>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> TlsAcceptor {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&versions);
    let builder = match client_verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_cert_resolver(slot);
    TlsAcceptor::from(Arc::new(config))
}
