//! Reloading authentication resources (issue 7): a new trusted client CA applies to new
//! TLS handshakes at once, without a restart; connected clients are sent away (0x98) to
//! reconnect under it; a reload that does not build changes nothing.

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::try_publish_to;
use gatehouse_tests::raw::{ConnectBuilder, RawClient};
use gatehouse_tests::tls::{connect_as, Pki};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

fn yaml(crt: &Path, key: &Path, client_ca: &Path) -> String {
    format!(
        "
listeners:
  - name: devices
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings: {{ trustedClientCaCert: client-ca }}
secrets:
  server-cert: {{ certFile: {}, keyFile: {} }}
configMaps:
  client-ca: {{ files: [{}] }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
",
        p(crt),
        p(key),
        p(client_ca)
    )
}

/// mosquitto_pub with a client certificate of `pki`; whether it succeeded.
async fn publishes(server_pki: &Pki, port: u16, pki: &Pki, cn: &str) -> bool {
    let (crt, key) = pki.client(cn, EC, HOUR, &unique(cn));
    let args = [
        "--cafile",
        &p(&server_pki.root_file()),
        "--cert",
        &p(&crt),
        "--key",
        &p(&key),
        "-i",
        &unique(cn),
        "-t",
        "t",
        "-m",
        "x",
        "-q",
        "1",
    ];
    try_publish_to("localhost", port, &args)
        .await
        .status
        .success()
}

/// Two independent PKIs under `dir`: the one the broker starts with and another.
fn two_pkis(dir: &Path) -> (Pki, Pki) {
    let (first_dir, second_dir) = (dir.join("first"), dir.join("second"));
    std::fs::create_dir_all(&first_dir).expect("mkdir");
    std::fs::create_dir_all(&second_dir).expect("mkdir");
    (
        Pki::new(&first_dir, EC),
        Pki::named(&second_dir, EC, "Second"),
    )
}

/// An MQTT v5 client connected over TLS with a client certificate of `pki`.
async fn connected_client(pki: &Pki, port: u16, cn: &str) -> RawClient {
    let (crt, key) = pki.client(cn, EC, HOUR, cn);
    let tls = connect_as(&pki.root_file(), port, "localhost", &crt, &key)
        .await
        .expect("TLS handshake");
    let mut client = RawClient::over(tls);
    client.send(&ConnectBuilder::new(cn).build()).await;
    client.expect_connack_ok().await;
    client
}

#[tokio::test]
async fn a_new_trusted_client_ca_applies_without_restart() {
    let dir = TempDir::new("authn-reload");
    let (first, second) = two_pkis(dir.path());
    let (crt, key) = first.write_server(&first.server(EC), "server");
    let broker = TestBroker::start(&yaml(&crt, &key, &first.root_file())).await;
    let port = broker.server.ports[0].addr.port();

    assert!(publishes(&first, port, &first, "dev-a").await, "trusted CA");
    assert!(
        !publishes(&first, port, &second, "dev-b").await,
        "not yet trusted"
    );

    // A client connected before the reload.
    let mut connected = connected_client(&first, port, "dev-c").await;

    // A reload whose new resource cannot build (missing CA file) changes nothing.
    let broken = gatehouse_config::load_str(
        &yaml(&crt, &key, &dir.path().join("missing.pem")),
        "reload.yaml",
    )
    .expect("valid YAML; the file is only read when the chain is built");
    let refused = broker.server.reloader().apply(broken.config);
    let problems = refused.expect_err("a chain that cannot build is refused");
    assert!(
        problems.iter().any(|p| p.contains("missing.pem")),
        "{problems:?}"
    );
    assert!(
        publishes(&first, port, &first, "dev-a").await,
        "still the old CA"
    );

    let loaded = gatehouse_config::load_str(&yaml(&crt, &key, &second.root_file()), "reload.yaml")
        .expect("valid configuration");
    let done = broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload applies");
    assert_eq!(done.authentications, ["certs"]);
    assert!(done.need_restart.is_empty(), "{:?}", done.need_restart);
    // At least the client connected above (a mosquitto_pub may still be closing).
    assert!(done.disconnected >= 1, "{done:?}");
    connected.expect_disconnect(0x98).await;

    assert!(
        publishes(&first, port, &second, "dev-b").await,
        "the new CA is trusted"
    );
    assert!(
        !publishes(&first, port, &first, "dev-a").await,
        "the old CA no longer is"
    );
}

/// A trusted CA bundle rewritten in place (same path, configuration untouched) is picked
/// up by polling: new contents rebuild the chain and send connected clients away (0x98);
/// the same bytes written again (a new mtime) change nothing.
#[tokio::test]
async fn a_trusted_ca_file_rewritten_in_place_applies_without_a_configuration_change() {
    let dir = TempDir::new("authn-file");
    let (first, second) = two_pkis(dir.path());
    let (crt, key) = first.write_server(&first.server(EC), "server");
    // The config map's file: a copy the test rewrites.
    let bundle = dir.path().join("client-ca.pem");
    let first_root = std::fs::read(first.root_file()).expect("read first root");
    std::fs::write(&bundle, &first_root).expect("write bundle");
    let broker = TestBroker::start(&yaml(&crt, &key, &bundle)).await;
    let port = broker.server.ports[0].addr.port();
    assert!(publishes(&first, port, &first, "dev-a").await, "trusted CA");

    let mut connected = connected_client(&first, port, "dev-c").await;

    // Same bytes, new mtime: two polls later the client is still connected.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&bundle, &first_root).expect("rewrite bundle");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    connected.ping().await;

    // New contents: the second CA only.
    let second_root = std::fs::read(second.root_file()).expect("read second root");
    std::fs::write(&bundle, &second_root).expect("rewrite bundle");
    connected
        .expect_disconnect_within(0x98, Duration::from_secs(5))
        .await;
    assert!(
        publishes(&first, port, &second, "dev-b").await,
        "the rewritten CA is trusted"
    );
    assert!(
        !publishes(&first, port, &first, "dev-a").await,
        "the old CA no longer is"
    );

    // A rewrite that does not parse keeps the running chain.
    std::fs::write(&bundle, b"not a certificate").expect("break bundle");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        publishes(&first, port, &second, "dev-b").await,
        "a broken rewrite keeps the running CA"
    );
}
