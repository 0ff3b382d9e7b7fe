//! TLS per port (behaviour.md §2) with real handshakes and real clients: mosquitto_pub /
//! mosquitto_sub with `--cafile`, a rustls client that reads the served certificate, and
//! a WebSocket client over TLS (wss). Certificates are made in the test (root →
//! intermediate → server, as in the seeds' step CLI flow) or issued by the broker.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{run_gatehouse, unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::{try_publish_to, Sub, WAIT};
use gatehouse_tests::raw::{connack_code, split_frame, ConnectBuilder};
use gatehouse_tests::tls::{connect, serial_for_new_handshake, Pki};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;

fn yaml_path(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// A broker with one Manual TLS port whose secret `server-cert` is the given files.
async fn manual_broker(dir: &TempDir, crt: &Path, key: &Path, protocol: &str) -> TestBroker {
    TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: tls
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        protocol: {protocol}
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
",
        data = yaml_path(&dir.path().join("data")),
        crt = yaml_path(crt),
        key = yaml_path(key),
    ))
    .await
}

fn port(b: &TestBroker) -> u16 {
    b.server.ports[0].addr.port()
}

async fn pub_tls(port: u16, ca: &Path, topic: &str, msg: &str) {
    let out = try_publish_to(
        "localhost",
        port,
        &[
            "--cafile",
            &yaml_path(ca),
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            topic,
            "-m",
            msg,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "mosquitto_pub over TLS failed ({}): {}{}",
        out.status,
        out.stdout,
        out.stderr
    );
}

/// A `mosquitto_pub -l` that stays connected and publishes each line written to it.
struct LinePublisher(tokio::process::Child);

impl LinePublisher {
    fn start(port: u16, ca: &Path, topic: &str) -> LinePublisher {
        let child = tokio::process::Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port.to_string()])
            .args(["--cafile", &yaml_path(ca), "-q", "1", "-t", topic, "-l"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("run mosquitto_pub -l");
        LinePublisher(child)
    }

    async fn line(&mut self, text: &str) {
        let stdin = self.0.stdin.as_mut().expect("piped stdin");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .expect("write to mosquitto_pub");
        stdin.flush().await.expect("flush");
    }
}

/// Poll new handshakes until the served serial differs from `old` (rotation picked up).
async fn wait_for_new_serial(ca: &Path, port: u16, old: &str, within: Duration) -> String {
    let until = tokio::time::Instant::now() + within;
    loop {
        if let Ok(serial) = serial_for_new_handshake(ca, port).await {
            if serial != old {
                return serial;
            }
        }
        assert!(
            tokio::time::Instant::now() < until,
            "new handshakes still get serial {old} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_chain_serves_mosquitto_clients_with_cafile() {
    let dir = TempDir::new("tls-manual");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let b = manual_broker(&dir, &crt, &key, "Mqtt").await;
    let ca = pki.root_file();
    let topic = unique("tls/manual");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&ca), "-V", "mqttv5", "-t", &topic],
    )
    .await;
    pub_tls(port(&b), &ca, &topic, "over tls").await;
    assert_eq!(sub.next_message().await.payload, "over tls");

    // Plain MQTT on the TLS port gets no CONNACK.
    let plain = try_publish_to(
        "127.0.0.1",
        port(&b),
        &["-t", &topic, "-m", "plain", "-q", "1"],
    )
    .await;
    assert!(
        !plain.status.success(),
        "plain MQTT was served on a TLS port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_verification_accepts_sans_and_refuses_other_names() {
    let dir = TempDir::new("tls-san");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let b = manual_broker(&dir, &crt, &key, "Mqtt").await;
    let ca = pki.root_file();
    connect(&ca, port(&b), "localhost")
        .await
        .expect("localhost is in the SANs");
    let err = connect(&ca, port(&b), "not-in-san.example")
        .await
        .expect_err("a name outside the SANs must fail verification");
    assert!(
        err.to_string().contains("NotValidForName") || err.to_string().contains("not valid for"),
        "unexpected error: {err}"
    );
    // Trusting another root fails too.
    let other = TempDir::new("tls-san-other");
    let other_pki = Pki::new(other.path(), EC);
    assert!(connect(&other_pki.root_file(), port(&b), "localhost")
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_rotation_serves_the_new_certificate_and_keeps_connections() {
    let dir = TempDir::new("tls-rotate");
    let pki = Pki::new(dir.path(), EC);
    let first = pki.server(EC);
    let (crt, key) = pki.write_server(&first, "server");
    let b = manual_broker(&dir, &crt, &key, "Mqtt").await;
    let ca = pki.root_file();
    let served = serial_for_new_handshake(&ca, port(&b)).await.expect("TLS");
    assert_eq!(served, first.serial());

    let topic = unique("tls/rotate");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&ca), "-t", &topic],
    )
    .await;
    let mut old_pub = LinePublisher::start(port(&b), &ca, &topic);
    old_pub.line("before").await;
    assert_eq!(sub.next_message().await.payload, "before");

    // Rotate: new key and certificate in place of the old files.
    let second = pki.server(EC);
    pki.write_server(&second, "server");
    let new = wait_for_new_serial(&ca, port(&b), first.serial(), Duration::from_secs(10)).await;
    assert_eq!(new, second.serial());
    // The connections opened before the rotation carry on.
    old_pub.line("after").await;
    assert_eq!(sub.next_message().await.payload, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_is_awaited_and_served_once_it_appears() {
    let dir = TempDir::new("tls-await");
    let pki = Pki::new(dir.path(), EC);
    let data = dir.path().join("data");
    let b = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: tls
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: late-cert }} }}
",
        data = yaml_path(&data)
    ))
    .await;
    let ca = pki.root_file();
    // The port is reserved, but without a certificate no handshake completes.
    assert!(serial_for_new_handshake(&ca, port(&b)).await.is_err());
    // The secret appears as a folder in the data directory, as Kubernetes would mount it.
    let secret = data.join("secrets").join("late-cert");
    std::fs::create_dir_all(&secret).expect("secret folder");
    let issued = pki.server(EC);
    std::fs::write(secret.join("tls.key"), issued.key_pem()).expect("key");
    std::fs::write(secret.join("tls.crt"), issued.chain_pem()).expect("chain");
    let served = wait_for_new_serial(&ca, port(&b), "", Duration::from_secs(10)).await;
    assert_eq!(served, issued.serial());
    let topic = unique("tls/late");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&ca), "-t", &topic],
    )
    .await;
    pub_tls(port(&b), &ca, &topic, "late but there").await;
    assert_eq!(sub.next_message().await.payload, "late but there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_mixing_rsa_and_ec_is_refused_naming_the_file() {
    let dir = TempDir::new("tls-mixed");
    let pki = Pki::new(dir.path(), EC);
    let ec_server = pki.server(EC);
    let rsa_dir = TempDir::new("tls-mixed-rsa");
    let rsa_pki = Pki::new(rsa_dir.path(), PrivateKeyAlgorithm::Rsa2048);
    // An EC leaf followed by an RSA CA certificate.
    let chain = format!(
        "{}{}",
        ec_server.cert_pem(),
        gatehouse_certs::encode_cert(rsa_pki.intermediate.certificate())
    );
    let crt = dir.write("mixed.crt", &chain);
    let key = dir.write("mixed.key", &ec_server.key_pem());
    let config = dir.write(
        "gatehouse.yaml",
        &format!(
            "
dataDir: {data}
listeners:
  - name: tls
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: mixed }} }}
secrets:
  mixed: {{ certFile: {crt}, keyFile: {key} }}
",
            data = yaml_path(&dir.path().join("data")),
            crt = yaml_path(&crt),
            key = yaml_path(&key),
        ),
    );
    let out = run_gatehouse(&["--config", &yaml_path(&config)]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a mixed chain");
    assert!(
        stderr.contains(&yaml_path(&crt)) && stderr.contains("listeners[0].ports[0].tls"),
        "the error does not name the file and the port:\n{stderr}"
    );
    assert!(
        stderr.contains("RSA") && stderr.contains("EC"),
        "the error does not say which key families are mixed:\n{stderr}"
    );
}

/// An Automatic port: the broker issues its certificate from the quickstart CA and
/// clients trust the exported bundle `<dataDir>/trust/ca.crt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_port_is_trusted_through_the_exported_bundle() {
    let dir = TempDir::new("tls-auto");
    let data = dir.path().join("data");
    let b = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: auto
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Automatic }}
",
        data = yaml_path(&data)
    ))
    .await;
    let bundle = data.join("trust").join("ca.crt");
    assert!(bundle.exists(), "no trust bundle at {}", bundle.display());
    let topic = unique("tls/auto");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&bundle), "-t", &topic],
    )
    .await;
    pub_tls(port(&b), &bundle, &topic, "issued here").await;
    assert_eq!(sub.next_message().await.payload, "issued here");
    // The issued certificate was written to the port's default secret <listener>-<port>.
    let secret = data.join("secrets").join("auto-0");
    assert!(
        secret.join("tls.crt").exists() && secret.join("tls.key").exists(),
        "no issued secret in {}",
        secret.display()
    );
}

/// A certificate that lives seconds is renewed and swapped in; connections opened before
/// carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_certificate_is_renewed_before_expiry_without_dropping_connections() {
    let dir = TempDir::new("tls-renew");
    let data = dir.path().join("data");
    let b = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: renew
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls:
          mode: Automatic
          certManagerCertificateSpec: {{ duration: 6s, renewBefore: 3s }}
",
        data = yaml_path(&data)
    ))
    .await;
    let bundle = data.join("trust").join("ca.crt");
    let first = serial_for_new_handshake(&bundle, port(&b))
        .await
        .expect("TLS");
    let topic = unique("tls/renew");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&bundle), "-t", &topic],
    )
    .await;
    let mut old_pub = LinePublisher::start(port(&b), &bundle, &topic);
    old_pub.line("before").await;
    assert_eq!(sub.next_message().await.payload, "before");
    let second = wait_for_new_serial(&bundle, port(&b), &first, Duration::from_secs(10)).await;
    assert_ne!(second, first);
    old_pub.line("after renewal").await;
    assert_eq!(sub.next_message().await.payload, "after renewal");
}

/// MQTT over WebSockets over TLS: a Rust client (rustls + tungstenite) on a wss port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_tls() {
    let dir = TempDir::new("tls-wss");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let b = manual_broker(&dir, &crt, &key, "WebSockets").await;
    let tls = connect(&pki.root_file(), port(&b), "localhost")
        .await
        .expect("TLS handshake");
    let mut request = format!("wss://localhost:{}/mqtt", port(&b))
        .into_client_request()
        .expect("URL");
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
    let (mut ws, response) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, tls))
            .await
            .expect("upgrade timed out")
            .expect("WebSocket upgrade over TLS");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    ws.send(Message::Binary(
        ConnectBuilder::new("wss-client").build().into(),
    ))
    .await
    .expect("send CONNECT");
    let mut buf = bytes::BytesMut::new();
    let connack = loop {
        if let Some(p) = split_frame(&mut buf) {
            break p;
        }
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Binary(d)))) => buf.extend_from_slice(&d),
            Ok(Some(Ok(_))) => {}
            other => panic!("no CONNACK over wss: {other:?}"),
        }
    };
    assert_eq!(connack_code(&connack), 0);
}

/// The cert-manager bootstrap pattern of the seeds: a `selfSigned` issuer signs a CA
/// certificate (`certificates:` with `isCA: true`) into the secret `test-ca`, a `ca`
/// issuer signs with it, and an Automatic port takes its certificate from that issuer.
/// Clients trust the bootstrapped CA (`secrets/test-ca/ca.crt`) or the bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_port_from_a_bootstrapped_ca_issuer() {
    let dir = TempDir::new("tls-ca-issuer");
    let data = dir.path().join("data");
    let b = TestBroker::start(&format!(
        "
dataDir: {data}
listeners:
  - name: custom-ca
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls:
          mode: Automatic
          certManagerCertificateSpec:
            issuerRef: {{ name: my-issuer, kind: Issuer }}
            privateKey: {{ algorithm: Ec384 }}
issuers:
  - name: my-issuer
    kind: Issuer
    ca: {{ secretName: test-ca }}
  - name: selfsigned-ca-issuer
    selfSigned: {{}}
certificates:
  - name: selfsigned-ca-cert
    isCA: true
    commonName: test-ca
    secretName: test-ca
    issuerRef: {{ name: selfsigned-ca-issuer, kind: Issuer }}
    privateKey: {{ algorithm: Ec256, rotationPolicy: Always }}
",
        data = yaml_path(&data)
    ))
    .await;
    let ca = data.join("secrets").join("test-ca").join("tls.crt");
    let topic = unique("tls/ca-issuer");
    let mut sub = Sub::subscribed_to(
        "localhost",
        port(&b),
        &["--cafile", &yaml_path(&ca), "-t", &topic],
    )
    .await;
    pub_tls(
        port(&b),
        &data.join("trust").join("ca.crt"),
        &topic,
        "from my-issuer",
    )
    .await;
    assert_eq!(sub.next_message().await.payload, "from my-issuer");
    // The quickstart root alone does not vouch for this port.
    let quickstart_only = dir.path().join("quickstart.crt");
    let quickstart_dir = data.join("ca");
    let root = std::fs::read_dir(&quickstart_dir)
        .expect("quickstart CA folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "crt"))
        .expect("a quickstart root");
    std::fs::copy(root, &quickstart_only).expect("copy");
    assert!(serial_for_new_handshake(&quickstart_only, port(&b))
        .await
        .is_err());
}
