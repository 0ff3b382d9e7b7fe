//! X.509 client certificate authentication (behaviour.md §3 "X.509") with real TLS
//! handshakes: certificates made in the test (root → intermediate → client, EC and
//! RSA), used by mosquitto_pub / mosquitto_sub (`--cert --key --cafile`) and a rustls
//! client. At the end, `additionalValidation: AzureDeviceRegistry` with a registry file
//! the tests edit.

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::{try_publish_to, Sub};
use gatehouse_tests::raw::{connack_code, frame_body, split_frame, ConnectBuilder};
use gatehouse_tests::tls::{connect, connect_as, write_atomically, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// A TLS port (server certificate from `server_pki`) whose authentication chain is
/// X.509 only, trusting `trusted` client CA files.
async fn x509_broker(dir: &TempDir, server_pki: &Pki, trusted: &[&Path]) -> TestBroker {
    x509_broker_with(dir, server_pki, trusted, "").await
}

/// [`x509_broker`] with more `x509Settings` lines (indented to match).
async fn x509_broker_with(
    dir: &TempDir,
    server_pki: &Pki,
    trusted: &[&Path],
    settings: &str,
) -> TestBroker {
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
{settings}
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

/// [`x509_broker`] trusting `pki`'s root, with `additionalValidation: AzureDeviceRegistry`
/// on `registry` (written before the broker starts) and this recheck interval.
async fn registry_broker(
    dir: &TempDir,
    pki: &Pki,
    registry: &Path,
    devices: &str,
    recheck: &str,
) -> TestBroker {
    write_atomically(registry, devices.as_bytes());
    x509_broker_with(
        dir,
        pki,
        &[&pki.root_file()],
        &format!(
            "          additionalValidation: AzureDeviceRegistry
          deviceRegistry: {{ file: {}, recheckInterval: {recheck} }}",
            p(registry)
        ),
    )
    .await
}

/// TLS with `cn`'s certificate, then CONNECT (v5 or 3.1.1): the CONNACK code.
async fn connect_device(
    pki: &Pki,
    port: u16,
    cn: &str,
    connect: Vec<u8>,
) -> (tokio_rustls::client::TlsStream<tokio::net::TcpStream>, u8) {
    let (crt, key) = pki.client(cn, EC, HOUR, cn);
    let mut tls = connect_as(&pki.root_file(), port, "localhost", &crt, &key)
        .await
        .expect("TLS with a client certificate");
    tls.write_all(&connect).await.expect("CONNECT");
    let connack = read_packet(&mut tls).await.expect("CONNACK");
    let code = connack_code(&connack);
    (tls, code)
}

const REVOKED: &str = "device disabled or removed from the registry";

/// The next packet is DISCONNECT 0x87 with the registry's reason string, then EOF.
async fn expect_registry_disconnect<S: tokio::io::AsyncRead + Unpin>(tls: &mut S, what: &str) {
    let started = std::time::Instant::now();
    let frame = read_packet(tls)
        .await
        .unwrap_or_else(|| panic!("{what}: no DISCONNECT within 5 s"));
    assert_eq!(
        frame[0], 0xE0,
        "{what}: expected DISCONNECT, got {frame:02X?}"
    );
    assert_eq!(frame_body(&frame)[0], 0x87, "{what}: {frame:02X?}");
    assert!(
        frame
            .windows(REVOKED.len())
            .any(|w| w == REVOKED.as_bytes()),
        "{what}: no reason string `{REVOKED}` in {frame:02X?}"
    );
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "{what}: still open after DISCONNECT");
    assert!(
        rest.is_empty(),
        "{what}: more after DISCONNECT: {rest:02X?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{what}: took {:?}",
        started.elapsed()
    );
}

/// behaviour.md §3 X.509 `additionalValidation: AzureDeviceRegistry`: the certificate
/// CN must name an enabled device; unknown and disabled devices are refused with
/// CONNACK 0x87 (3.1.1: return code 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_device_registry_only_enabled_devices_connect() {
    let dir = TempDir::new("x509-registry");
    let pki = Pki::new(dir.path(), EC);
    let registry = dir.path().join("devices.yaml");
    let b = registry_broker(
        &dir,
        &pki,
        &registry,
        "devices:\n  - { name: smart-fan, enabled: true }\n  - { name: thermostat, enabled: false }\n",
        "10m",
    )
    .await;
    let (crt, key) = pki.client("smart-fan", EC, HOUR, "fan");
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
            "x509/registry",
            "-m",
            "enabled device",
            "-q",
            "1",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "an enabled device was refused: {}{}",
        out.stdout,
        out.stderr
    );
    for cn in ["lamp", "thermostat"] {
        let (_, v5) = connect_device(&pki, port(&b), cn, ConnectBuilder::new(cn).build()).await;
        assert_eq!(v5, 0x87, "{cn} (v5)");
        let (_, v311) = connect_device(&pki, port(&b), cn, ConnectBuilder::v311(cn).build()).await;
        assert_eq!(v311, 5, "{cn} (3.1.1)");
    }
    let (_, ok) = connect_device(
        &pki,
        port(&b),
        "smart-fan",
        ConnectBuilder::new("fan-raw").build(),
    )
    .await;
    assert_eq!(ok, 0, "smart-fan over a raw client");
}

/// A connected device disabled in the registry is disconnected (DISCONNECT 0x87) at the
/// latest at the next recheck (1s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_is_disconnected_once_disabled() {
    let dir = TempDir::new("x509-registry-disable");
    let pki = Pki::new(dir.path(), EC);
    let registry = dir.path().join("devices.yaml");
    let b = registry_broker(
        &dir,
        &pki,
        &registry,
        "devices:\n  - { name: smart-fan, enabled: true }\n  - { name: lamp, enabled: true }\n",
        "1s",
    )
    .await;
    let (mut fan, code) = connect_device(
        &pki,
        port(&b),
        "smart-fan",
        ConnectBuilder::new("fan").build(),
    )
    .await;
    assert_eq!(code, 0, "smart-fan CONNACK");
    let (mut lamp, code) =
        connect_device(&pki, port(&b), "lamp", ConnectBuilder::new("lamp").build()).await;
    assert_eq!(code, 0, "lamp CONNACK");
    // A few rechecks pass while the device is enabled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut probe = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), fan.read(&mut probe)).await;
    assert!(early.is_err(), "smart-fan disconnected while enabled");

    write_atomically(
        &registry,
        b"devices:\n  - { name: smart-fan, enabled: false }\n  - { name: lamp, enabled: true }\n",
    );
    expect_registry_disconnect(&mut fan, "disabled smart-fan").await;
    // The other device stays connected.
    let other = tokio::time::timeout(Duration::from_millis(1500), lamp.read(&mut probe)).await;
    assert!(other.is_err(), "lamp was disconnected too");
    // And a new connection of the disabled device is refused.
    let (_, code) = connect_device(
        &pki,
        port(&b),
        "smart-fan",
        ConnectBuilder::new("fan-again").build(),
    )
    .await;
    assert_eq!(code, 0x87, "disabled smart-fan reconnecting");
}

/// With an hour between rechecks, editing the file is enough: removing the device
/// disconnects it within seconds (v5: DISCONNECT 0x87; 3.1.1: the connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_device_is_disconnected_when_the_file_changes() {
    let dir = TempDir::new("x509-registry-remove");
    let pki = Pki::new(dir.path(), EC);
    let registry = dir.path().join("devices.json");
    let b = registry_broker(
        &dir,
        &pki,
        &registry,
        r#"{"devices": [{"name": "smart-fan", "enabled": true}]}"#,
        "1h",
    )
    .await;
    let (mut v5, code) = connect_device(
        &pki,
        port(&b),
        "smart-fan",
        ConnectBuilder::new("fan-v5").build(),
    )
    .await;
    assert_eq!(code, 0, "v5 CONNACK");
    let (mut v311, code) = connect_device(
        &pki,
        port(&b),
        "smart-fan",
        ConnectBuilder::v311("fan-v311").build(),
    )
    .await;
    assert_eq!(code, 0, "3.1.1 CONNACK");

    // An invalid file changes nothing: the last good registry stays.
    write_atomically(&registry, br#"{"devices": [{"name": "smart-fan"}]}"#);
    let mut probe = [0u8; 1];
    let kept = tokio::time::timeout(Duration::from_secs(2), v5.read(&mut probe)).await;
    assert!(kept.is_err(), "disconnected by an invalid registry file");

    write_atomically(&registry, br#"{"devices": []}"#);
    expect_registry_disconnect(&mut v5, "removed smart-fan (v5)").await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), v311.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "3.1.1 smart-fan still connected");
    assert!(rest.is_empty(), "3.1.1 got {rest:02X?}");
}
