//! Key-level authorization of the state store (statestore.md §7) with the seed's
//! `stateStoreResources` example: X.509 clients (CN = user name) on a TLS port with the
//! seed policy, raw MQTT over TLS; keys are written by an anonymous client on a second,
//! unauthenticated port of the same listener.

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::raw::{ConnectBuilder, RawClient};
use gatehouse_tests::state_store::{response_topic, StateStoreClient, REQUEST_TOPIC};
use gatehouse_tests::tls::{connect_as, Pki};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The seed rules with the state store example, plus what clients of the state store
/// also need (behaviour.md §4): Publish on the request topic, Subscribe on their own
/// response topic.
fn rules() -> String {
    format!(
        "{}        - principals:
            usernames: [temperature-sensor, monitor]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"{REQUEST_TOPIC}\"]
            - method: Subscribe
              topics: [\"clients/{{principal.clientId}}/#\"]
",
        gatehouse_tests::policies::SEED_RULES_WITH_STATE_STORE
    )
}

struct Setup {
    _dir: TempDir,
    broker: TestBroker,
    pki: Pki,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("ss-authz");
        let pki = Pki::new(dir.path(), EC);
        let (crt, key) = pki.write_server(&pki.server(EC), "server");
        let broker = TestBroker::start(&format!(
            "
listeners:
  - name: secure
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
        authorizationRef: seed-policy
      - port: 0
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
authorizations:
  - name: seed-policy
    authorizationPolicies:
      rules:{rules}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
",
            rules = rules(),
            crt = p(&crt),
            key = p(&key),
            root = p(&pki.root_file()),
        ))
        .await;
        Setup {
            _dir: dir,
            broker,
            pki,
        }
    }

    /// A state store client with certificate CN `cn` and client id `client_id`.
    async fn sensor(&self, cn: &str, client_id: &str) -> StateStoreClient {
        let (crt, key) = self.pki.client(cn, EC, HOUR, &unique(cn));
        let port = self.broker.server.ports[0].addr.port();
        let tls = connect_as(&self.pki.root_file(), port, "localhost", &crt, &key)
            .await
            .expect("TLS handshake");
        let mut raw = RawClient::over(tls);
        raw.send(&ConnectBuilder::new(client_id).build()).await;
        raw.expect_connack_ok().await;
        StateStoreClient::start_with(raw, client_id, false).await
    }

    /// An anonymous client on the unauthenticated port (may do anything).
    async fn admin(&self) -> StateStoreClient {
        let addr = self.broker.server.ports[1].addr;
        let mut raw = RawClient::connect(addr).await;
        raw.send(&ConnectBuilder::new("admin").build()).await;
        raw.expect_connack_ok().await;
        StateStoreClient::start(raw, "admin").await
    }
}

fn get(key: &[u8]) -> Vec<u8> {
    command(&[b"GET", key])
}

fn set(key: &[u8], value: &[u8]) -> Vec<u8> {
    command(&[b"SET", key, value])
}

fn command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

const DENIED: &[u8] = b"-ERR not authorized\r\n";

#[tokio::test]
async fn seed_state_store_resources_grant_exactly_what_they_say() {
    let s = Setup::start().await;
    let mut admin = s.admin().await;
    let keys: [&[u8]; 9] = [
        b"myreadkey",
        b"myotherkey1",
        b"myotherkey12",
        b"mynumerickeysuffix7",
        b"mynumerickeysuffixA",
        b"clients/sensor-1/state",
        b"clients/sensor-2/state",
        b"\x00\x01\x02",
        b"secret",
    ];
    for key in keys {
        assert_eq!(
            &admin.call(&set(key, b"v"), &[]).await.payload[..],
            b"+OK\r\n"
        );
    }
    let mut sensor = s.sensor("temperature-sensor", "sensor-1").await;
    // Read: Pattern keys with ?, [0-9] and {principal.clientId} substitution.
    for (key, readable) in [
        (&b"myreadkey"[..], true),
        (b"myotherkey1", true),
        (b"myotherkey12", false),
        (b"mynumerickeysuffix7", true),
        (b"mynumerickeysuffixA", false),
        (b"clients/sensor-1/state", true),
        (b"clients/sensor-2/state", false),
        (b"secret", false),
    ] {
        let r = sensor.call(&get(key), &[]).await;
        let expected: &[u8] = if readable { b"$1\r\nv\r\n" } else { DENIED };
        assert_eq!(
            &r.payload[..],
            expected,
            "GET {}",
            String::from_utf8_lossy(key)
        );
        assert_eq!(r.prop("__stat"), Some("200"));
    }
    // Read does not grant Write.
    assert_eq!(
        &sensor.call(&set(b"myreadkey", b"x"), &[]).await.payload[..],
        DENIED
    );
    assert_eq!(
        &sensor
            .call(&command(&[b"DEL", b"myreadkey"]), &[])
            .await
            .payload[..],
        DENIED
    );
    // ReadWrite on the Binary key AAEC (bytes 00 01 02).
    assert_eq!(
        &sensor.call(&set(b"\x00\x01\x02", b"w"), &[]).await.payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &sensor.call(&get(b"\x00\x01\x02"), &[]).await.payload[..],
        b"$1\r\nw\r\n"
    );
    // KEYNOTIFY needs Read.
    assert_eq!(
        &sensor
            .call(&command(&[b"KEYNOTIFY", b"myreadkey"]), &[])
            .await
            .payload[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &sensor
            .call(&command(&[b"KEYNOTIFY", b"secret"]), &[])
            .await
            .payload[..],
        DENIED
    );
    // The denied writes changed nothing.
    assert_eq!(
        &admin.call(&get(b"myreadkey"), &[]).await.payload[..],
        b"$1\r\nv\r\n"
    );
    // SCAN returns only readable keys, in byte order (00 01 02 is valid UTF-8).
    let scan = sensor.call(&command(&[b"SCAN", b"*"]), &[]).await;
    assert_eq!(
        scan.text(),
        "*1\r\n*5\r\n$3\r\n\x00\x01\x02\r\n$22\r\nclients/sensor-1/state\r\n$19\r\nmynumerickeysuffix7\r\n$11\r\nmyotherkey1\r\n$9\r\nmyreadkey\r\n",
        "SCAN * as temperature-sensor"
    );
}

#[tokio::test]
async fn a_principal_without_state_store_resources_is_denied_every_key() {
    let s = Setup::start().await;
    let mut monitor = s.sensor("monitor", "monitor-1").await;
    assert_eq!(
        &monitor.call(&get(b"myreadkey"), &[]).await.payload[..],
        DENIED
    );
    assert_eq!(
        &monitor.call(&set(b"anything", b"v"), &[]).await.payload[..],
        DENIED
    );
    let scan = monitor.call(&command(&[b"SCAN", b"*"]), &[]).await;
    assert_eq!(&scan.payload[..], b"*1\r\n*0\r\n");
}

#[tokio::test]
async fn publishing_to_the_request_topic_needs_publish_permission() {
    let s = Setup::start().await;
    // humidity-sensor has the seed's key rules but not the extra Publish rule.
    let (crt, key) = s
        .pki
        .client("humidity-sensor", EC, HOUR, &unique("humidity"));
    let port = s.broker.server.ports[0].addr.port();
    let tls = connect_as(&s.pki.root_file(), port, "localhost", &crt, &key)
        .await
        .expect("TLS handshake");
    let mut raw = RawClient::over(tls);
    raw.send(&ConnectBuilder::new("humidity-1").build()).await;
    raw.expect_connack_ok().await;
    let props = gatehouse_protocol::PublishProperties {
        response_topic: Some(response_topic("humidity-1")),
        correlation_data: Some(bytes::Bytes::from_static(b"0123456789abcdef")),
        ..Default::default()
    };
    raw.publish_props(REQUEST_TOPIC, &get(b"myreadkey"), 1, false, 7, props)
        .await;
    // PUBACK 0x87 Not authorized, and no response.
    raw.expect_raw(&[0x40, 0x03, 0x00, 0x07, 0x87]).await;
    raw.expect_nothing(gatehouse_tests::raw::QUIET).await;
}
