//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_certs::{issue_self_signed, Authority, CertRequest, Issued, Key, Usage};
use gatehouse_config::PrivateKeyAlgorithm;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn request(usage: Usage, common_name: &str, dns: &[&str]) -> CertRequest {
    CertRequest {
        usage,
        common_name: Some(common_name.into()),
        organization: None,
        dns_names: dns.iter().map(|d| d.to_string()).collect(),
        ip_addresses: vec!["127.0.0.1".parse().unwrap()],
        duration: DAY,
    }
}

pub fn server(dns: &[&str]) -> CertRequest {
    request(Usage::Server, dns.first().copied().unwrap_or("server"), dns)
}

pub fn key(algorithm: PrivateKeyAlgorithm) -> Key {
    Key::generate(algorithm).unwrap()
}

/// A self-signed root CA able to issue.
pub fn root(algorithm: PrivateKeyAlgorithm, now: SystemTime) -> Authority {
    let issued =
        issue_self_signed(&request(Usage::Ca, "Test Root", &[]), key(algorithm), now).unwrap();
    Authority::from_issued(issued).unwrap()
}

/// An intermediate CA under `parent`.
pub fn intermediate(
    parent: &Authority,
    algorithm: PrivateKeyAlgorithm,
    now: SystemTime,
) -> Authority {
    let issued = parent
        .issue(
            &request(Usage::Ca, "Test Intermediate", &[]),
            key(algorithm),
            now,
        )
        .unwrap();
    Authority::from_issued(issued).unwrap()
}

pub fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `issued` as `tls.crt` (chain) and `tls.key`; returns their paths.
pub fn write_issued(dir: &Path, issued: &Issued) -> (PathBuf, PathBuf) {
    (
        write(dir, "tls.crt", issued.chain_pem()),
        write(dir, "tls.key", issued.key_pem()),
    )
}

/// A complete in-memory TLS handshake: a server presenting `certified`, a client trusting
/// `roots` and connecting to `server_name`.
pub fn handshake(
    certified: Arc<CertifiedKey>,
    roots: &[CertificateDer<'static>],
    server_name: &str,
) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut client = Connection::Client(ClientConnection::new(Arc::new(client_config), name)?);
    let mut server = Connection::Server(ServerConnection::new(Arc::new(server_config))?);
    for _ in 0..10 {
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General("handshake did not finish".into()))
}

fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
    }
    let mut reader = &bytes[..];
    while !reader.is_empty() {
        to.read_tls(&mut reader)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        to.process_new_packets()?;
    }
    Ok(())
}

pub fn is_name_error(err: &rustls::Error) -> bool {
    matches!(
        err,
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. }
        )
    )
}
