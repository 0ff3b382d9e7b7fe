//! `gatehouse ca bundle` and `gatehouse ca issue`: the real binary, a fresh data directory
//! per test, and the results checked with an independent X.509 parser and rustls (the
//! same verification a TLS peer does, EKU included).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::SystemTime;

use gatehouse_certs::{load_chain_and_key, read_certificates, CertInfo, LoadedCert};
use gatehouse_tests::broker::{run_gatehouse, TempDir};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use x509_parser::prelude::{FromDer, X509Certificate};

const QUICKSTART_SUBJECT: &str =
    "O=Gatehouse, CN=Gatehouse Quickstart Root CA - Not for Production";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A temporary folder with `gatehouse.yaml` whose `dataDir` is `<folder>/data`.
struct Setup {
    dir: TempDir,
    config: String,
}

impl Setup {
    fn new(prefix: &str) -> Setup {
        let dir = TempDir::new(prefix);
        let data = dir.path().join("data");
        let config = dir.write(
            "gatehouse.yaml",
            &format!(
                "
dataDir: {}
listeners:
  - name: ca-cli
    bindAddress: 127.0.0.1
    ports:
      - port: 0
",
                data.display()
            ),
        );
        let config = config.to_str().expect("UTF-8 path").to_owned();
        Setup { dir, config }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `gatehouse --config <file> ca <args>`.
    async fn ca(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", &self.config, "ca"];
        all.extend_from_slice(args);
        run_gatehouse(&all).await
    }

    /// `gatehouse ca bundle`, which must succeed; the PEM it printed.
    async fn bundle(&self) -> String {
        let out = self.ca(&["bundle"]).await;
        assert!(out.status.success(), "ca bundle: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// `gatehouse ca issue <args> --out <folder>/<name>`, which must succeed; the folder.
    async fn issue(&self, name: &str, args: &[&str]) -> PathBuf {
        let dir = self.path(name);
        let dir_str = dir.to_str().expect("UTF-8 path").to_owned();
        let mut all = vec!["issue"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--out", &dir_str]);
        let out = self.ca(&all).await;
        assert!(
            out.status.success(),
            "ca {all:?}: {}\n{}",
            out.status,
            text(&out.stderr)
        );
        dir
    }
}

/// The certificates of a PEM text.
fn parse_pem(dir: &Path, pem: &str) -> Vec<CertificateDer<'static>> {
    let file = dir.join("parsed.pem");
    std::fs::write(&file, pem).expect("write PEM");
    read_certificates(&file).unwrap_or_else(|e| panic!("{e}\n{pem}"))
}

fn roots(certs: &[CertificateDer<'static>]) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert.clone()).expect("a usable root");
    }
    Arc::new(store)
}

/// serverAuth, clientAuth from the extended key usage extension.
fn eku(der: &[u8]) -> (bool, bool) {
    let (_, cert) = X509Certificate::from_der(der).expect("X.509");
    let eku = cert
        .extended_key_usage()
        .expect("well-formed extensions")
        .expect("an extended key usage extension");
    (eku.value.server_auth, eku.value.client_auth)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// The chain and key of an issued folder, checked to belong together.
fn load(dir: &Path) -> LoadedCert {
    load_chain_and_key(&dir.join("tls.crt"), &dir.join("tls.key"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// A fresh data directory: `ca bundle` creates the quickstart root and prints it; a second
/// run prints the same root (it is kept, not recreated); `--out` writes the same bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_creates_and_prints_the_quickstart_root() {
    let setup = Setup::new("ca-bundle");
    let bundle_file = setup.data_dir().join("trust").join("ca.crt");
    assert!(!bundle_file.exists());

    let first = setup.bundle().await;
    let certs = parse_pem(setup.dir.path(), &first);
    assert_eq!(certs.len(), 1, "{first}");
    let root = CertInfo::from_der(&certs[0]).expect("parse root");
    assert_eq!(root.subject, QUICKSTART_SUBJECT);
    assert!(root.is_ca && root.self_issued, "{root:?}");
    assert!(root.is_valid_at(SystemTime::now()));
    assert_eq!(
        std::fs::read_to_string(&bundle_file).expect("the bundle file exists"),
        first,
        "stdout is <dataDir>/trust/ca.crt"
    );

    let second = setup.bundle().await;
    assert_eq!(first, second, "the root changed between runs");

    let out_file = setup.path("bundle.pem");
    let out = setup
        .ca(&["bundle", "--out", out_file.to_str().expect("UTF-8")])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(&out_file).expect("--out"), first);
}

/// `ca issue --client`: CN device-1, clientAuth only, signed by the bundle's root (rustls
/// accepts it as a client certificate), key 0600 and matching, ca.crt = the root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_client_certificate_signed_by_the_bundle_root() {
    let setup = Setup::new("ca-client");
    let dir = setup
        .issue("device-1", &["--cn", "device-1", "--client"])
        .await;
    let bundle = parse_pem(setup.dir.path(), &setup.bundle().await);

    let loaded = load(&dir);
    let leaf = &loaded.chain()[0];
    assert_eq!(loaded.info.common_name.as_deref(), Some("device-1"));
    assert_eq!(loaded.info.subject, "CN=device-1");
    assert_eq!(loaded.info.issuer, QUICKSTART_SUBJECT);
    assert!(!loaded.info.is_ca);
    assert!(loaded.info.dns_names.is_empty() && loaded.info.ip_addresses.is_empty());
    assert_eq!(eku(leaf), (false, true), "clientAuth only");

    let ca = read_certificates(&dir.join("ca.crt")).expect("ca.crt");
    assert_eq!(ca, bundle, "ca.crt is the bundle's root");

    let verifier =
        WebPkiClientVerifier::builder_with_provider(roots(&bundle), Arc::new(default_provider()))
            .build()
            .expect("client verifier");
    verifier
        .verify_client_cert(leaf, &loaded.chain()[1..], UnixTime::now())
        .expect("rustls accepts the client certificate under the bundle root");

    #[cfg(unix)]
    {
        assert_eq!(mode(&dir.join("tls.key")), 0o600);
    }
}

/// `ca issue` (server) with `--san localhost --san 127.0.0.1` carries exactly those names,
/// serverAuth only, and completes a mutual-TLS handshake (in memory) with a client
/// certificate from `ca issue --client`, both trusted through the bundle alone. Without
/// `--san`, a server certificate gets the CN, localhost, 127.0.0.1 and ::1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_server_certificate_with_sans() {
    let setup = Setup::new("ca-server");
    let dir = setup
        .issue(
            "server",
            &["--cn", "broker", "--san", "localhost", "--san", "127.0.0.1"],
        )
        .await;
    let bundle = parse_pem(setup.dir.path(), &setup.bundle().await);
    let server = load(&dir);
    assert_eq!(server.info.common_name.as_deref(), Some("broker"));
    assert_eq!(server.info.dns_names, vec!["localhost".to_string()]);
    assert_eq!(
        server.info.ip_addresses,
        vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(eku(&server.chain()[0]), (true, false), "serverAuth only");

    let verifier =
        WebPkiServerVerifier::builder_with_provider(roots(&bundle), Arc::new(default_provider()))
            .build()
            .expect("server verifier");
    for name in ["localhost", "127.0.0.1"] {
        let name = ServerName::try_from(name).expect("server name");
        verifier
            .verify_server_cert(
                &server.chain()[0],
                &server.chain()[1..],
                &name,
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
    let other = ServerName::try_from("example.com").expect("server name");
    assert!(verifier
        .verify_server_cert(
            &server.chain()[0],
            &server.chain()[1..],
            &other,
            &[],
            UnixTime::now()
        )
        .is_err());

    let client_dir = setup
        .issue("client", &["--cn", "device-2", "--client"])
        .await;
    let client = load(&client_dir);
    mutual_tls_handshake(&bundle, &server, &client);

    let defaults = setup.issue("defaults", &["--cn", "broker.local"]).await;
    let info = load(&defaults).info;
    assert_eq!(info.dns_names, vec!["broker.local", "localhost"]);
    assert_eq!(
        info.ip_addresses,
        vec![
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        ]
    );
}

/// A TLS 1.3 handshake over in-memory buffers: the client trusts `roots` and connects to
/// `localhost`; the server requires a client certificate under `roots`.
fn mutual_tls_handshake(
    roots_certs: &[CertificateDer<'static>],
    server: &LoadedCert,
    client: &LoadedCert,
) {
    let provider = Arc::new(default_provider());
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots(roots_certs), provider.clone())
            .build()
            .expect("client verifier");
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_client_cert_verifier(client_verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(
            server.certified_key.clone(),
        )));
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots(roots_certs))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
            client.certified_key.clone(),
        )));
    let name = ServerName::try_from("localhost").expect("server name");
    let mut c = ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut s = ServerConnection::new(Arc::new(server_config)).expect("server");
    for _ in 0..10 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
            s.process_new_packets()
                .unwrap_or_else(|e| panic!("the server refused the handshake: {e}"));
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
            c.process_new_packets()
                .unwrap_or_else(|e| panic!("the client refused the handshake: {e}"));
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            let peer = s
                .peer_certificates()
                .expect("the client sent its certificate");
            assert_eq!(peer[0], client.chain()[0]);
            return;
        }
    }
    panic!("the handshake did not complete");
}

/// An unknown `--issuer` is refused with exit code 1, naming the issuer, before anything
/// is written; so is a SAN that is neither a host name nor an IP address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_refuses_bad_input() {
    let setup = Setup::new("ca-errors");
    let out_dir = setup.path("never");
    let out_str = out_dir.to_str().expect("UTF-8").to_owned();

    let out = setup
        .ca(&[
            "issue",
            "--cn",
            "device-1",
            "--issuer",
            "no-such-issuer",
            "--out",
            &out_str,
        ])
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown issuer `no-such-issuer`"),
        "stderr does not name the issuer:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = setup
        .ca(&[
            "issue",
            "--cn",
            "device-1",
            "--san",
            "not a name",
            "--out",
            &out_str,
        ])
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`not a name`"), "{stderr}");

    assert!(!out_dir.exists(), "nothing is written on bad input");
    assert!(
        !setup.data_dir().exists(),
        "input errors are found before the data directory is touched"
    );
}
