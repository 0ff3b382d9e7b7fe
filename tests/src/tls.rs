//! Certificates made in the test (with `gatehouse-certs`, no external tool) and a rustls
//! client that reports what the broker served.
//!
//! [`Pki`] follows the seeds' step CLI flow: a root CA, an intermediate under it, and a
//! server certificate under the intermediate; the server gets `tls.crt` = leaf +
//! intermediate and clients trust the root only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gatehouse_certs::{issue_self_signed, Authority, CertInfo, CertRequest, Issued, Key, Usage};
use gatehouse_config::PrivateKeyAlgorithm;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const DAY: Duration = Duration::from_secs(86400);

fn request(usage: Usage, cn: &str, dns: &[&str]) -> CertRequest {
    CertRequest {
        usage,
        common_name: Some(cn.into()),
        organization: Some("Gatehouse tests".into()),
        dns_names: dns.iter().map(|d| d.to_string()).collect(),
        ip_addresses: if dns.is_empty() {
            Vec::new()
        } else {
            vec!["127.0.0.1".parse().expect("IP")]
        },
        duration: DAY,
    }
}

/// Root → intermediate → servers, all in one folder.
pub struct Pki {
    pub dir: PathBuf,
    pub root: Authority,
    pub intermediate: Authority,
}

impl Pki {
    pub fn new(dir: &Path, algorithm: PrivateKeyAlgorithm) -> Pki {
        Pki::named(dir, algorithm, "Gatehouse Test")
    }

    /// [`Pki::new`] with CA names `<name> Root CA` and `<name> Intermediate CA`, for tests
    /// that need two PKIs with different subjects.
    pub fn named(dir: &Path, algorithm: PrivateKeyAlgorithm, name: &str) -> Pki {
        let now = SystemTime::now();
        let key = |a| Key::generate(a).expect("generate key");
        let root = issue_self_signed(
            &request(Usage::Ca, &format!("{name} Root CA"), &[]),
            key(algorithm),
            now,
        )
        .expect("root");
        let root = Authority::from_issued(root).expect("root authority");
        let intermediate = root
            .issue(
                &request(Usage::Ca, &format!("{name} Intermediate CA"), &[]),
                key(algorithm),
                now,
            )
            .expect("intermediate");
        let intermediate = Authority::from_issued(intermediate).expect("intermediate authority");
        std::fs::write(
            dir.join("root_ca.crt"),
            gatehouse_certs::encode_cert(root.certificate()),
        )
        .expect("write root");
        Pki {
            dir: dir.to_owned(),
            root,
            intermediate,
        }
    }

    /// The root CA file clients pass as `--cafile`.
    pub fn root_file(&self) -> PathBuf {
        self.dir.join("root_ca.crt")
    }

    /// A server certificate for `localhost` / 127.0.0.1 under the intermediate.
    pub fn server(&self, algorithm: PrivateKeyAlgorithm) -> Issued {
        self.intermediate
            .issue(
                &request(Usage::Server, "localhost", &["localhost"]),
                Key::generate(algorithm).expect("generate key"),
                SystemTime::now(),
            )
            .expect("server certificate")
    }

    /// Write `issued` as `<name>.crt` (leaf + intermediate) and `<name>.key`, each
    /// replaced atomically (rename), as a secret rotation would.
    pub fn write_server(&self, issued: &Issued, name: &str) -> (PathBuf, PathBuf) {
        let crt = self.dir.join(format!("{name}.crt"));
        let key = self.dir.join(format!("{name}.key"));
        write_atomically(&key, issued.key_pem().as_bytes());
        write_atomically(&crt, issued.chain_pem().as_bytes());
        (crt, key)
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename into place");
}

/// A TLS client that trusts the certificates in `ca_file`.
pub fn connector(ca_file: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in gatehouse_certs::read_certificates(ca_file).expect("read CA file") {
        roots.add(cert).expect("add root");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Connect to `port` on 127.0.0.1 and handshake, verifying the certificate for
/// `server_name`.
pub async fn connect(
    ca_file: &Path,
    port: u16,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    // As RawClient::connect: without it a request written while the previous packet's
    // ACK is delayed waits ~40 ms (Nagle), and request/response tests crawl.
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    connector(ca_file).connect(name, tcp).await
}

/// The serial number of the leaf certificate the server presented.
pub fn served_serial(stream: &TlsStream<TcpStream>) -> String {
    let certs: &[CertificateDer<'_>] = stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("the server presented certificates");
    CertInfo::from_der(&certs[0]).expect("parse leaf").serial
}

/// Handshake with `localhost` and return the serial served, or the error.
pub async fn serial_for_new_handshake(ca_file: &Path, port: u16) -> Result<String, String> {
    match connect(ca_file, port, "localhost").await {
        Ok(stream) => Ok(served_serial(&stream)),
        Err(e) => Err(e.to_string()),
    }
}

impl Pki {
    /// A client certificate (clientAuth, CN `cn`) under the intermediate, valid for
    /// `lifetime`, written as `<name>.crt` (leaf + intermediate) and `<name>.key`.
    pub fn client(
        &self,
        cn: &str,
        algorithm: PrivateKeyAlgorithm,
        lifetime: Duration,
        name: &str,
    ) -> (PathBuf, PathBuf) {
        let mut req = request(Usage::Client, cn, &[]);
        req.duration = lifetime;
        let issued = self
            .intermediate
            .issue(
                &req,
                Key::generate(algorithm).expect("generate key"),
                SystemTime::now(),
            )
            .expect("client certificate");
        self.write_server(&issued, name)
    }
}

/// [`connect`], presenting the client certificate chain and key from PEM files.
pub async fn connect_as(
    ca_file: &Path,
    port: u16,
    server_name: &str,
    cert_file: &Path,
    key_file: &Path,
) -> std::io::Result<TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let mut roots = rustls::RootCertStore::empty();
    for cert in gatehouse_certs::read_certificates(ca_file).expect("read CA file") {
        roots.add(cert).expect("add root");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .expect("client chain")
        .collect::<Result<_, _>>()
        .expect("client chain PEM");
    let key = PrivateKeyDer::from_pem_file(key_file).expect("client key");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client identity");
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    // As RawClient::connect: without it a request written while the previous packet's
    // ACK is delayed waits ~40 ms (Nagle), and request/response tests crawl.
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}
