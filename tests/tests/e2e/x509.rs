//! X.509 client certificate authentication (behaviour.md §3 "X.509") with real TLS
//! handshakes: certificates made in the test (root → intermediate → client, EC and
//! RSA), used by mosquitto_pub / mosquitto_sub (`--cert --key --cafile`) and a rustls
//! client.

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::{try_publish_to, Sub};
use gatehouse_tests::raw::{connack_code, split_frame, ConnectBuilder};
use gatehouse_tests::tls::{connect, connect_as, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// A TLS port (server certificate from `server_pki`) whose authentication chain is
/// X.509 only, trusting `trusted` client CA files.
async fn x509_broker(dir: &TempDir, server_pki: &Pki, trusted: &[&Path]) -> TestBroker {
    let (crt, key) = server_pki.write_server(&server_pki.server(EC), "server");
    let files: Vec<String> = trusted.iter().map(|f| p(f)).collect();
    TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: x509
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{files}] }}
",
        data = p(&dir.path().join("data")),
        crt = p(&crt),
        key = p(&key),
        files = files.join(", "),
    ))
    .await
}

fn port(b: &TestBroker) -> u16 {
    b.server.ports[0].addr.port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec_and_rsa_client_certificates_authenticate_mosquitto_clients() {
    let dir = TempDir::new("x509-ok");
    let ec = Pki::new(dir.path(), EC);
    let rsa_dir = TempDir::new("x509-ok-rsa");
    let rsa = Pki::new(rsa_dir.path(), PrivateKeyAlgorithm::Rsa2048);
    let b = x509_broker(&dir, &ec, &[&ec.root_file(), &rsa.root_file()]).await;
    let ca = p(&ec.root_file());
    let (sub_crt, sub_key) = ec.client("sensor-sub", EC, HOUR, "sub");
    let (pub_crt, pub_key) = rsa.client("smart-fan", PrivateKeyAlgorithm::Rsa2048, HOUR, "pub");
    let topic = unique("x509/ok");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &[
            "--cafile",
            &ca,
            "--cert",
            &p(&sub_crt),
            "--key",
            &p(&sub_key),
            "-V",
            "mqttv5",
            "-t",
            &topic,
        ],
    )
    .await;
    let out = try_publish_to(
        "localhost",
        port(&b),
        &[
            "--cafile",
            &ca,
            "--cert",
            &p(&pub_crt),
            "--key",
            &p(&pub_key),
            "-t",
            &topic,
            "-m",
            "by certificate",
            "-q",
            "1",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "publish with an RSA client certificate: {}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(sub.next_message().await.payload, "by certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_chain_rejects_with_not_authorized() {
    let dir = TempDir::new("x509-none");
    let pki = Pki::new(dir.path(), EC);
    let b = x509_broker(&dir, &pki, &[&pki.root_file()]).await;
    let ca = p(&pki.root_file());
    for (version, expect) in [("mqttv5", "not authori"), ("mqttv311", "not authori")] {
        let out = try_publish_to(
            "localhost",
            port(&b),
            &[
                "--cafile",
                &ca,
                "-V",
                version,
                "-t",
                "x509/none",
                "-m",
                "x",
                "-u",
                "someone",
                "-P",
                "secret",
            ],
        )
        .await;
        assert!(
            !out.status.success(),
            "{version}: accepted without a certificate"
        );
        assert!(
            out.stderr.to_lowercase().contains(expect),
            "{version}: expected a not-authorized refusal, got: {}",
            out.stderr
        );
    }
    // The exact codes, on raw packets: v5 0x87, 3.1.1 return code 5.
    for (packet, code) in [
        (ConnectBuilder::new("raw-v5").build(), 0x87),
        (ConnectBuilder::v311("raw-v311").build(), 5),
    ] {
        let mut tls = connect(&pki.root_file(), port(&b), "localhost")
            .await
            .expect("TLS without a client certificate is allowed");
        tls.write_all(&packet).await.expect("CONNECT");
        let connack = read_packet(&mut tls).await.expect("a refusing CONNACK");
        assert_eq!(connack_code(&connack), code, "{connack:02X?}");
    }
}

async fn read_packet<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<Vec<u8>> {
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(f) = split_frame(&mut buf) {
            return Some(f);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read_buf(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_untrusted_chain_fails_the_handshake() {
    let dir = TempDir::new("x509-untrusted");
    let pki = Pki::new(dir.path(), EC);
    let b = x509_broker(&dir, &pki, &[&pki.root_file()]).await;
    let other_dir = TempDir::new("x509-untrusted-other");
    let other = Pki::new(other_dir.path(), EC);
    let (crt, key) = other.client("intruder", EC, HOUR, "intruder");
    let out = try_publish_to(
        "localhost",
        port(&b),
        &[
            "--cafile",
            &p(&pki.root_file()),
            "--cert",
            &p(&crt),
            "--key",
            &p(&key),
            "-t",
            "x509/no",
            "-m",
            "x",
        ],
    )
    .await;
    assert!(
        !out.status.success(),
        "an untrusted client certificate was accepted"
    );
}

/// Credential expiry = the leaf's notAfter: the connection is closed then, without a
/// DISCONNECT packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_closes_without_disconnect_when_the_certificate_expires() {
    let dir = TempDir::new("x509-expiry");
    let pki = Pki::new(dir.path(), EC);
    let b = x509_broker(&dir, &pki, &[&pki.root_file()]).await;
    let (crt, key) = pki.client("short-lived", EC, Duration::from_secs(4), "short");
    let mut tls = connect_as(&pki.root_file(), port(&b), "localhost", &crt, &key)
        .await
        .expect("TLS with a client certificate");
    tls.write_all(&ConnectBuilder::new("short-lived").build())
        .await
        .expect("CONNECT");
    let connack = read_packet(&mut tls).await.expect("CONNACK");
    assert_eq!(connack_code(&connack), 0, "CONNACK");
    let started = std::time::Instant::now();
    // Nothing more may arrive: the broker just closes (EOF or a TLS error, no packet).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "still connected 10 s after the certificate expired"
    );
    assert!(
        rest.is_empty(),
        "the broker sent {rest:02X?} instead of just closing"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "closed too early ({:?}): the certificate was valid for seconds more",
        started.elapsed()
    );
}
