//! A TLS port with X.509 client authentication and an authorization policy, with a PKI and
//! one client certificate per user made for the test: the setting of most security
//! attack tests (tests/tests/e2e/security_*.rs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::ConnAck;

use crate::broker::{TempDir, TestBroker};
use crate::raw::{ConnectBuilder, RawClient, WAIT};
use crate::tls::{connect_as, Pki};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The PKI, the server certificate and a client certificate (CN = user name) per user.
pub struct SecurePort {
    pub dir: TempDir,
    pub pki: Pki,
    server: (PathBuf, PathBuf),
    certs: Vec<(String, PathBuf, PathBuf)>,
}

impl SecurePort {
    pub fn new(name: &str, users: &[&str]) -> SecurePort {
        let dir = TempDir::new(name);
        let pki = Pki::new(dir.path(), EC);
        let server = pki.write_server(&pki.server(EC), "server");
        let certs = users
            .iter()
            .map(|u| {
                let (crt, key) = pki.client(u, EC, Duration::from_secs(3600), u);
                (u.to_string(), crt, key)
            })
            .collect();
        SecurePort {
            dir,
            pki,
            server,
            certs,
        }
    }

    /// One TLS port (`port: 0`) authenticating X.509 clients, authorized by `rules` (YAML
    /// list items indented 8 spaces), with `broker:` limits `broker` (flow-mapping
    /// entries, may be empty).
    pub fn yaml(&self, rules: &str, broker: &str) -> String {
        format!(
            "
listeners:
  - name: secure
    bindAddress: 127.0.0.1
    ports:
      - port: 0
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
{rules}
broker: {{ {broker} }}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{root}] }}
",
            crt = p(&self.server.0),
            key = p(&self.server.1),
            root = p(&self.pki.root_file())
        )
    }

    /// `user`'s certificate chain (leaf + intermediate) and key files.
    pub fn cert(&self, user: &str) -> (&Path, &Path) {
        let (_, crt, key) = self
            .certs
            .iter()
            .find(|(u, _, _)| u == user)
            .expect("a certificate for the user");
        (crt, key)
    }

    /// A TLS connection to `port` presenting `user`'s certificate, as a raw MQTT client.
    pub async fn tls_to(&self, port: u16, user: &str) -> RawClient {
        let (crt, key) = self.cert(user);
        let tls = connect_as(&self.pki.root_file(), port, "localhost", crt, key)
            .await
            .expect("TLS handshake");
        RawClient::over(tls)
    }

    /// Connect to `port` as `user` with `builder`; CONNACK 0x00 checked.
    pub async fn connect_to(
        &self,
        port: u16,
        user: &str,
        builder: ConnectBuilder,
    ) -> (RawClient, ConnAck) {
        let mut c = self.tls_to(port, user).await;
        c.send(&builder.build()).await;
        let ack = c.expect_connack_ok().await;
        (c, ack)
    }

    /// [`Self::connect_to`] the broker's first MQTT port.
    pub async fn connect(
        &self,
        b: &TestBroker,
        user: &str,
        builder: ConnectBuilder,
    ) -> (RawClient, ConnAck) {
        self.connect_to(b.mqtt_addr().port(), user, builder).await
    }

    /// Connect as `user`; returns the client and the raw CONNACK frame, whatever its code.
    pub async fn try_connect(
        &self,
        b: &TestBroker,
        user: &str,
        builder: ConnectBuilder,
    ) -> (RawClient, Vec<u8>) {
        let mut c = self.tls_to(b.mqtt_addr().port(), user).await;
        c.send(&builder.build()).await;
        let ack = c.recv_raw(WAIT).await.expect("CONNACK");
        (c, ack)
    }
}
