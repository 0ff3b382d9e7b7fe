//! Authorization (behaviour.md §4) end to end: X.509 clients (CN = user name, attributes
//! from `authorizationAttributes`) on a TLS port with a policy built from the seed's
//! examples, driven by mosquitto_pub / mosquitto_sub and raw MQTT over TLS for the exact
//! reason codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::mosquitto::{try_publish_to, Sub};
use gatehouse_tests::raw::{
    connack_code, frame_body, publish_bytes, split_frame, subscribe_bytes, ConnectBuilder, Props,
};
use gatehouse_tests::tls::{connect_as, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

use gatehouse_tests::policies::SEED_RULES as RULES;

struct Setup {
    _dir: TempDir,
    _other_dir: TempDir,
    broker: TestBroker,
    ca: PathBuf,
    pki: Pki,
    other: Pki,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("authz");
        let pki = Pki::new(dir.path(), EC);
        // Clients of this second PKI get no attributes.
        let other_dir = TempDir::new("authz-other");
        let other = Pki::named(other_dir.path(), EC, "Other");
        let (crt, key) = pki.write_server(&pki.server(EC), "server");
        let broker = TestBroker::start(&format!(
            "
listeners:
  - name: authz
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
        authorizationRef: seed-policy
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
          authorizationAttributes:
            contoso: {{ subject: 'CN = Gatehouse Test Intermediate CA, O = Gatehouse tests', attributes: {{ organization: contoso, city: seattle }} }}
            b22: {{ subject: 'CN = building22-fan, O = Gatehouse tests', attributes: {{ building: building22 }} }}
authorizations:
  - name: seed-policy
    authorizationPolicies:
      rules:{RULES}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}, {other_root}] }}
",
            crt = p(&crt),
            key = p(&key),
            root = p(&pki.root_file()),
            other_root = p(&other.root_file()),
        ))
        .await;
        Setup {
            ca: pki.root_file(),
            _dir: dir,
            _other_dir: other_dir,
            broker,
            pki,
            other,
        }
    }

    fn port(&self) -> u16 {
        self.broker.server.ports[0].addr.port()
    }

    /// Certificate files for CN `cn` from the attributed PKI (or the other one).
    fn cert(&self, cn: &str, attributed: bool) -> (String, String) {
        let pki = if attributed { &self.pki } else { &self.other };
        let (crt, key) = pki.client(cn, EC, HOUR, &unique(cn));
        (p(&crt), p(&key))
    }

    fn tls_args(&self, cert: &(String, String)) -> Vec<String> {
        vec![
            "--cafile".into(),
            p(&self.ca),
            "--cert".into(),
            cert.0.clone(),
            "--key".into(),
            cert.1.clone(),
        ]
    }

    async fn monitor(&self, filter: &str) -> Sub {
        let cert = self.cert("monitor", false);
        let mut args = self.tls_args(&cert);
        args.extend(["-i".into(), unique("monitor"), "-t".into(), filter.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Sub::subscribed_to("localhost", self.port(), &args).await
    }

    async fn publish(
        &self,
        cn: &str,
        attributed: bool,
        client_id: &str,
        version: &str,
        topic: &str,
    ) -> bool {
        let cert = self.cert(cn, attributed);
        let mut args = self.tls_args(&cert);
        args.extend(
            [
                "-i", client_id, "-V", version, "-q", "1", "-t", topic, "-m", "hello",
            ]
            .map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        try_publish_to("localhost", self.port(), &args)
            .await
            .status
            .success()
    }

    /// A raw MQTT client over TLS with a client certificate; returns it after CONNACK
    /// (whose reason code is returned too).
    async fn raw(&self, cn: &str, attributed: bool, connect: Vec<u8>) -> (Raw, u8) {
        let cert = self.cert(cn, attributed);
        let tls = connect_as(
            &self.ca,
            self.port(),
            "localhost",
            Path::new(&cert.0),
            Path::new(&cert.1),
        )
        .await
        .expect("TLS with a client certificate");
        let mut raw = Raw {
            tls,
            buf: bytes::BytesMut::new(),
        };
        raw.tls.write_all(&connect).await.expect("CONNECT");
        let connack = raw.packet().await.expect("CONNACK");
        let code = connack_code(&connack);
        (raw, code)
    }
}

struct Raw {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: bytes::BytesMut,
}

impl Raw {
    async fn packet(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(f) = split_frame(&mut self.buf) {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.tls.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).await.expect("send");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_publish_only_to_their_own_and_their_organizations_topics() {
    let s = Setup::start().await;
    let mut monitor = s.monitor("/sensor/#").await;
    assert!(
        s.publish(
            "temperature-sensor",
            false,
            "temperature-sensor",
            "mqttv5",
            "/sensor/temperature-sensor"
        )
        .await
    );
    assert_eq!(
        monitor.next_message().await.topic,
        "/sensor/temperature-sensor"
    );
    // Through the organization attribute (from the intermediate CA's subject).
    assert!(
        s.publish(
            "some-other-username",
            true,
            "some-client",
            "mqttv5",
            "/sensor/contoso"
        )
        .await
    );
    assert_eq!(monitor.next_message().await.topic, "/sensor/contoso");
    // Another sensor's topic: dropped (3.1.1 gets a normal PUBACK, nothing is delivered).
    s.publish(
        "temperature-sensor",
        false,
        "temperature-sensor",
        "mqttv311",
        "/sensor/humidity-sensor",
    )
    .await;
    assert!(
        monitor
            .message_within(Duration::from_millis(800))
            .await
            .is_none(),
        "a denied PUBLISH was delivered"
    );

    // v5: PUBACK 0x87 for a denied QoS 1 PUBLISH, PUBREC 0x87 for QoS 2.
    let (mut raw, code) = s
        .raw(
            "temperature-sensor",
            false,
            ConnectBuilder::new("temperature-sensor").build(),
        )
        .await;
    assert_eq!(code, 0);
    raw.send(&publish_bytes(
        0x02,
        b"/sensor/humidity-sensor",
        Some(7),
        Some(&Props::new()),
        b"x",
    ))
    .await;
    let ack = raw.packet().await.expect("PUBACK");
    assert_eq!((ack[0], frame_body(&ack)[2]), (0x40, 0x87), "{ack:02X?}");
    raw.send(&publish_bytes(
        0x04,
        b"/sensor/humidity-sensor",
        Some(8),
        Some(&Props::new()),
        b"x",
    ))
    .await;
    let rec = raw.packet().await.expect("PUBREC");
    assert_eq!((rec[0], frame_body(&rec)[2]), (0x50, 0x87), "{rec:02X?}");
    assert!(monitor
        .message_within(Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_must_be_contained_in_a_rule_filter() {
    let s = Setup::start().await;
    let (mut raw, code) = s
        .raw(
            "some-other-username",
            true,
            ConnectBuilder::new("org-client").build(),
        )
        .await;
    assert_eq!(code, 0);
    // /commands/contoso allowed; /commands/+ and /commands/# are wider: 0x87 each.
    for (i, (filter, expect)) in [
        ("/commands/contoso", 0x00),
        ("/commands/+", 0x87),
        ("/commands/#", 0x87),
    ]
    .into_iter()
    .enumerate()
    {
        raw.send(&subscribe_bytes(i as u16 + 1, filter, 0)).await;
        let suback = raw.packet().await.expect("SUBACK");
        assert_eq!(suback[0], 0x90);
        assert_eq!(
            *frame_body(&suback).last().expect("code"),
            expect,
            "{filter}"
        );
    }
    // 3.1.1: a denied filter is 0x80.
    let (mut v3, code) = s
        .raw(
            "some-other-username",
            true,
            ConnectBuilder::v311("org-v3").build(),
        )
        .await;
    assert_eq!(code, 0);
    // SUBSCRIBE 3.1.1: packet id 1, "/commands/#", QoS 0 (no properties).
    v3.send(&[
        0x82, 0x10, 0x00, 0x01, 0x00, 0x0B, b'/', b'c', b'o', b'm', b'm', b'a', b'n', b'd', b's',
        b'/', b'#', 0x00,
    ])
    .await;
    let suback = v3.packet().await.expect("SUBACK");
    assert_eq!(*frame_body(&suback).last().expect("code"), 0x80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_needs_a_rule_and_the_building_client_id_pattern() {
    let s = Setup::start().await;
    // No rule for this user name (other PKI: no attributes).
    let (_, code) = s
        .raw("stranger", false, ConnectBuilder::new("stranger").build())
        .await;
    assert_eq!(code, 0x87, "v5 CONNACK for a client no rule allows");
    let (_, code) = s
        .raw("stranger", false, ConnectBuilder::v311("stranger").build())
        .await;
    assert_eq!(code, 5, "3.1.1 return code");
    // building22 attribute: only client ids starting with the building connect.
    let (_, code) = s
        .raw(
            "building22-fan",
            true,
            ConnectBuilder::new("building22-fan-1").build(),
        )
        .await;
    assert_eq!(code, 0);
    let (_, code) = s
        .raw("building22-fan", true, ConnectBuilder::new("fan-1").build())
        .await;
    assert_eq!(code, 0x87, "client id outside the building pattern");
    // ... and publish under their building and client id only.
    let mut monitor = s.monitor("sensors/#").await;
    assert!(
        s.publish(
            "building22-fan",
            true,
            "building22-fan-1",
            "mqttv5",
            "sensors/building22/building22-fan-1/sensor"
        )
        .await
    );
    assert_eq!(
        monitor.next_message().await.topic,
        "sensors/building22/building22-fan-1/sensor"
    );
}

/// A will whose topic the client may not publish to is dropped at CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_on_a_forbidden_topic_is_not_published() {
    let s = Setup::start().await;
    let mut monitor = s.monitor("/sensor/#").await;
    let will = |topic: &str| gatehouse_tests::raw::WillSpec::new(topic, b"gone");
    let (mut allowed, code) = s
        .raw(
            "temperature-sensor",
            false,
            ConnectBuilder::new("temperature-sensor")
                .will(will("/sensor/temperature-sensor"))
                .build(),
        )
        .await;
    assert_eq!(code, 0);
    let (mut denied, code) = s
        .raw(
            "humidity-sensor",
            false,
            ConnectBuilder::new("humidity-sensor")
                .will(will("/sensor/temperature-sensor"))
                .build(),
        )
        .await;
    assert_eq!(code, 0);
    // Both drop their connection without DISCONNECT: wills are due.
    denied.tls.get_mut().0.shutdown().await.ok();
    drop(denied);
    allowed.tls.get_mut().0.shutdown().await.ok();
    drop(allowed);
    let msg = monitor.next_message().await;
    assert_eq!(
        (msg.topic.as_str(), msg.payload.as_str()),
        ("/sensor/temperature-sensor", "gone")
    );
    assert!(
        monitor
            .message_within(Duration::from_millis(800))
            .await
            .is_none(),
        "the forbidden will was published"
    );
}
