//! The broker of the resource-bound tests (issue 13, security.md invariant 6) over either
//! transport, so each attack runs both over plain TCP and the way the issue asks for it:
//! a TLS port with X.509 client authentication and an authorization policy, with
//! certificates made in the test (root → intermediate → server and client leaves).
//!
//! [`BoundsBroker`] has the calls of `raw::ProtocolBroker` (`v5`, `v5_with`, `v311`),
//! so a test body written against one runs against either transport.

use std::path::Path;

use gatehouse_protocol::{ConnAck, ProtocolVersion};
use gatehouse_tests::broker::TestBroker;
use gatehouse_tests::raw::{frame_body, ConnectBuilder, RawClient, WAIT};
use gatehouse_tests::secure::SecurePort;

/// The X.509 user every client of a TLS [`BoundsBroker`] presents (its certificate's CN).
pub const DEVICE: &str = "device";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP, anonymous.
    Tcp,
    /// TLS with an X.509 client certificate (user [`DEVICE`]) and a policy allowing it
    /// to connect, publish and subscribe anywhere.
    Tls,
}

/// Certificates for a TLS port, made in the test: [`SecurePort`] with user [`DEVICE`].
pub struct X509Port(SecurePort);

/// [`DEVICE`] may connect, publish and subscribe anywhere.
const RULES: &str = "        - principals: { usernames: [device] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"#\"]
            - method: Subscribe
              topics: [\"#\"]
";

impl X509Port {
    pub fn new(name: &str) -> X509Port {
        X509Port(SecurePort::new(name, &[DEVICE]))
    }

    /// Arguments that make a Mosquitto client verify the server against our root and
    /// present `DEVICE`'s certificate.
    pub fn mosquitto_args(&self) -> Vec<String> {
        let (crt, key) = self.0.cert(DEVICE);
        vec![
            "--cafile".into(),
            path(&self.0.pki.root_file()),
            "--cert".into(),
            path(crt),
            "--key".into(),
            path(key),
        ]
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

/// A broker with one MQTT port over `transport` and the `broker:` limits given.
pub struct BoundsBroker {
    pub broker: TestBroker,
    pub x509: Option<X509Port>,
}

/// The configuration of a [`BoundsBroker`] (also for reloads): `broker` are `broker:`
/// flow-mapping entries, e.g. `"maxSubscriptionsPerClient: 3"`.
pub fn bounds_yaml(x509: Option<&X509Port>, broker: &str) -> String {
    let Some(x) = x509 else {
        return format!(
            "listeners:\n  - name: protocol\n    bindAddress: 127.0.0.1\n    ports: [ {{ port: 0 }} ]\nbroker: {{ {broker} }}\n"
        );
    };
    x.0.yaml(RULES, broker)
}

impl BoundsBroker {
    pub async fn start(transport: Transport, name: &str, broker: &str) -> BoundsBroker {
        let x509 = (transport == Transport::Tls).then(|| X509Port::new(name));
        let broker = TestBroker::start(&bounds_yaml(x509.as_ref(), broker)).await;
        BoundsBroker { broker, x509 }
    }

    pub fn port(&self) -> u16 {
        self.broker.mqtt_addr().port()
    }

    /// A new connection, nothing sent: TCP, or TLS presenting `DEVICE`'s certificate.
    pub async fn socket(&self) -> RawClient {
        match &self.x509 {
            None => RawClient::connect(self.broker.mqtt_addr()).await,
            Some(x) => x.0.tls_to(self.port(), DEVICE).await,
        }
    }

    /// A fresh connection that has sent `bytes`.
    pub async fn sending(&self, bytes: &[u8]) -> RawClient {
        let mut c = self.socket().await;
        c.send(bytes).await;
        c
    }

    /// A v5 client connected with clean start and no properties; CONNACK checked.
    pub async fn v5(&self, client_id: &str) -> RawClient {
        self.v5_with(ConnectBuilder::new(client_id)).await.0
    }

    /// A v5 client connected with `builder`; returns the CONNACK (success checked).
    pub async fn v5_with(&self, builder: ConnectBuilder) -> (RawClient, ConnAck) {
        let mut c = self.sending(&builder.build()).await;
        let ack = c.expect_connack_ok().await;
        (c, ack)
    }

    /// A 3.1.1 client connected with clean session; CONNACK checked byte for byte.
    pub async fn v311(&self, client_id: &str) -> RawClient {
        let mut c = self.sending(&ConnectBuilder::v311(client_id).build()).await;
        c.version = ProtocolVersion::V311;
        let raw = c.recv_raw(WAIT).await.expect("CONNACK");
        assert_eq!(
            (raw[0], frame_body(&raw)),
            (0x20, &[0x00, 0x00][..]),
            "3.1.1 CONNACK accepted"
        );
        c
    }
}
