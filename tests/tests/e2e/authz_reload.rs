//! Runtime update of authorization (behaviour.md §4, config.md "Runtime reload") with the
//! real binary: the configuration file is rewritten while an X.509 client is connected;
//! the client is disconnected (v5 DISCONNECT 0x98) and reconnects under the new rules. An
//! invalid file changes nothing.

use std::path::Path;
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::raw::{frame_body, publish_bytes, split_frame, ConnectBuilder, Props};
use gatehouse_tests::tls::{connect_as, Pki};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

fn config(port: u16, pki: &Pki, crt: &Path, key: &Path, publish: &str) -> String {
    format!(
        "
listeners:
  - name: reload
    bindAddress: 127.0.0.1
    ports:
      - port: {port}
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
        authorizationRef: policy
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings: {{ trustedClientCaCert: client-ca }}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:
        - principals: {{ usernames: [sensor] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"{publish}\"]
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
",
        crt = p(crt),
        key = p(key),
        root = p(&pki.root_file())
    )
}

struct Client {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: bytes::BytesMut,
}

impl Client {
    async fn connect(pki: &Pki, port: u16, crt: &Path, key: &Path) -> Client {
        let tls = connect_as(&pki.root_file(), port, "localhost", crt, key)
            .await
            .expect("TLS");
        let mut c = Client {
            tls,
            buf: bytes::BytesMut::new(),
        };
        c.tls
            .write_all(&ConnectBuilder::new("sensor-1").build())
            .await
            .expect("CONNECT");
        let connack = c.packet(Duration::from_secs(5)).await.expect("CONNACK");
        assert_eq!(frame_body(&connack)[1], 0, "CONNACK {connack:02X?}");
        c
    }

    async fn packet(&mut self, within: Duration) -> Option<Vec<u8>> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(f) = split_frame(&mut self.buf) {
                return Some(f);
            }
            let n = tokio::time::timeout_at(until, self.tls.read_buf(&mut self.buf))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// PUBLISH QoS 1 and return the PUBACK reason code.
    async fn publish(&mut self, topic: &str, id: u16) -> u8 {
        self.tls
            .write_all(&publish_bytes(
                0x02,
                topic.as_bytes(),
                Some(id),
                Some(&Props::new()),
                b"x",
            ))
            .await
            .expect("PUBLISH");
        let ack = self.packet(Duration::from_secs(5)).await.expect("PUBACK");
        assert_eq!(ack[0], 0x40, "{ack:02X?}");
        frame_body(&ack).get(2).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_policy_disconnects_clients_who_come_back_under_it() {
    let dir = TempDir::new("authz-reload");
    let pki = Pki::new(dir.path(), EC);
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    let (ccrt, ckey) = pki.client("sensor", EC, Duration::from_secs(3600), "sensor");
    let port = free_port();
    let file = dir.write("gatehouse.yaml", &config(port, &pki, &crt, &key, "a/#"));
    let broker = BrokerProcess::start(&file, port).await;

    let mut c = Client::connect(&pki, port, &ccrt, &ckey).await;
    assert_eq!(
        c.publish("a/1", 1).await,
        0x00,
        "allowed by the first policy"
    );
    assert_eq!(
        c.publish("b/1", 2).await,
        0x87,
        "not allowed by the first policy"
    );

    // An invalid file changes nothing: still connected, same rules.
    std::fs::write(&file, "listeners: [ this is not valid").expect("write");
    assert!(
        c.packet(Duration::from_millis(2500)).await.is_none(),
        "disconnected by an invalid file"
    );
    assert_eq!(c.publish("a/1", 3).await, 0x00);

    // The new policy: publish b/# only. The client is disconnected (0x98) ...
    std::fs::write(&file, config(port, &pki, &crt, &key, "b/#")).expect("write");
    let disconnect = c.packet(Duration::from_secs(6)).await.expect("DISCONNECT");
    assert_eq!(
        (disconnect[0], frame_body(&disconnect)[0]),
        (0xE0, 0x98),
        "{disconnect:02X?}"
    );
    // ... and reconnects under the new rules.
    let mut c = Client::connect(&pki, port, &ccrt, &ckey).await;
    assert_eq!(c.publish("a/1", 1).await, 0x87, "a/# is no longer allowed");
    assert_eq!(c.publish("b/1", 2).await, 0x00, "b/# is now allowed");
    broker.signal("KILL");
}
