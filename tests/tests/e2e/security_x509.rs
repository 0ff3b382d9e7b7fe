//! Issue 13 items 1 and 2 (security.md invariant 1: identity comes only from what was
//! verified), attacked over real TLS handshakes with certificates made in the test.
//!
//! - An appended certificate: a valid device sends its chain plus a self-made certificate
//!   whose subject equals an `authorizationAttributes` entry. The verifier never chains
//!   through it, so it must give nothing (it gave `building=17` when attributes were read
//!   from the chain as presented).
//! - DN string injection: a leaf whose CN is `Some CA, O=Other` (or holds `+`, or whose OU
//!   holds `, O=...`) must not equal the subject `CN = Some CA, O = Other` of an entry
//!   (it did when names were rendered to text and split on `,`).
//!
//! The client PKI is made with rcgen directly (the tests need subjects `gatehouse-certs`
//! does not issue); the server certificate comes from [`Pki`].

use std::path::Path;
use std::sync::Arc;

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::ReasonCode;
use gatehouse_tests::broker::{run_gatehouse, TempDir, TestBroker};
use gatehouse_tests::raw::{ConnectBuilder, RawClient};
use gatehouse_tests::tls::Pki;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

fn name(attrs: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (t, v) in attrs {
        dn.push(t.clone(), *v);
    }
    dn
}

/// A CA made with rcgen: its certificate and an issuer for what it signs.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(subject: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl Ca {
    fn root(subject: DistinguishedName) -> Ca {
        let key = KeyPair::generate().expect("key");
        let params = ca_params(subject);
        let cert = params.self_signed(&key).expect("root").der().clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn sub_ca(&self, subject: DistinguishedName) -> Ca {
        let key = KeyPair::generate().expect("key");
        let params = ca_params(subject);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("intermediate")
            .der()
            .clone();
        Ca {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// A clientAuth leaf with exactly `subject`.
    fn leaf(&self, subject: DistinguishedName) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::default();
        params.distinguished_name = subject;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf")
            .der()
            .clone();
        (cert, key)
    }

    fn write(&self, dir: &Path, file: &str) -> String {
        let path = dir.join(file);
        std::fs::write(&path, gatehouse_certs::encode_cert(&self.cert)).expect("write CA");
        p(&path)
    }
}

/// The client PKI: a trusted root, the devices' intermediate under it, and the real
/// `Building 17 CA` under it (the subject the attribute entry names).
struct ClientPki {
    root: Ca,
    devices: Ca,
    building17: Ca,
}

impl ClientPki {
    fn new() -> ClientPki {
        let root = Ca::root(name(&[
            (DnType::CommonName, "Security Test Root CA"),
            (DnType::OrganizationName, "Gatehouse tests"),
        ]));
        let devices = root.sub_ca(name(&[
            (DnType::CommonName, "Devices CA"),
            (DnType::OrganizationName, "Gatehouse tests"),
        ]));
        let building17 = root.sub_ca(name(&[
            (DnType::CommonName, "Building 17 CA"),
            (DnType::OrganizationName, "Gatehouse tests"),
        ]));
        ClientPki {
            root,
            devices,
            building17,
        }
    }
}

/// Policy: the test's client ids may connect; `building/{building}/#` for the building
/// attribute.
const RULES: &str = r#"
        - principals:
            clientIds: [legit, intruder-0, intruder-1, case-0, case-1, case-2, case-3, case-4]
          brokerResources:
            - method: Connect
        - principals:
            attributes: [ { building: "17" }, { building: "42" }, { building: "99" } ]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ["building/{principal.attributes.building}/#"]
            - method: Subscribe
              topics: ["building/{principal.attributes.building}/#"]
"#;

struct Setup {
    dir: TempDir,
    /// The same configuration as a file, for `gatehouse explain`.
    config_file: String,
    broker: TestBroker,
    server: Pki,
    clients: ClientPki,
}

impl Setup {
    async fn start(attribute_entries: &str) -> Setup {
        let dir = TempDir::new("sec-x509");
        let server = Pki::new(dir.path(), EC);
        let clients = ClientPki::new();
        let (crt, key) = server.write_server(&server.server(EC), "server");
        let client_root = clients.root.write(dir.path(), "client_root.crt");
        let yaml = format!(
            "
listeners:
  - name: sec
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        tls: {{ mode: Manual, manual: {{ secretRef: server-cert }} }}
        authenticationRef: certs
        authorizationRef: buildings
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
          authorizationAttributes:
{attribute_entries}
authorizations:
  - name: buildings
    authorizationPolicies:
      rules:{RULES}
secrets:
  server-cert: {{ certFile: {crt}, keyFile: {key} }}
configMaps:
  client-ca: {{ files: [{client_root}] }}
",
            crt = p(&crt),
            key = p(&key),
        );
        let broker = TestBroker::start(&yaml).await;
        let config_file = p(&dir.write("gatehouse.yaml", &yaml));
        Setup {
            dir,
            config_file,
            broker,
            server,
            clients,
        }
    }

    fn port(&self) -> u16 {
        self.broker.server.ports[0].addr.port()
    }

    /// TLS presenting exactly `chain` (leaf first) with `key`, then a v5 CONNECT;
    /// returns the client after a CONNACK 0x00.
    async fn connect(
        &self,
        client_id: &str,
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> RawClient {
        let mut roots = rustls::RootCertStore::empty();
        for cert in gatehouse_certs::read_certificates(&self.server.root_file()).expect("CA") {
            roots.add(cert).expect("root");
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client identity");
        let tcp = TcpStream::connect(("127.0.0.1", self.port()))
            .await
            .expect("TCP");
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("the handshake accepts a valid chain");
        let mut client = RawClient::over(tls);
        client.send(&ConnectBuilder::new(client_id).build()).await;
        client.expect_connack_ok().await;
        client
    }
}

/// `gatehouse explain --client-cert` on the same configuration and chain: exit code and
/// the JSON answer.
impl Setup {
    async fn explain(
        &self,
        client_id: &str,
        chain: &[CertificateDer<'static>],
        action: &str,
        target: &str,
    ) -> (i32, serde_json::Value) {
        let pem: String = chain.iter().map(gatehouse_certs::encode_cert).collect();
        let file = p(&self.dir.write(&format!("{client_id}-chain.pem"), &pem));
        let out = run_gatehouse(&[
            "explain",
            "--config",
            &self.config_file,
            "--client-cert",
            &file,
            "--client-id",
            client_id,
            "--json",
            action,
            target,
        ])
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "explain printed no JSON ({e}):\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().expect("exited"), json)
    }
}

/// QoS 1 PUBLISH; the PUBACK reason code.
async fn publish(client: &mut RawClient, topic: &str, id: u16) -> u8 {
    client.publish(topic, b"x", 1, false, id).await;
    match client.expect_packet().await {
        gatehouse_protocol::Packet::PubAck(ack) => ack.reason_code.0,
        other => panic!("expected PUBACK for {topic}, got {other:?}"),
    }
}

/// SUBSCRIBE at QoS 1; the SUBACK reason code.
async fn subscribe(client: &mut RawClient, filter: &str, id: u16) -> u8 {
    let ack = client.subscribe(id, filter, 1).await;
    ack.reason_codes[0].0
}

const NOT_AUTHORIZED: u8 = ReasonCode::NOT_AUTHORIZED.0;

/// Item 1: a certificate appended to a valid chain, with the subject of the entry that
/// grants `building=17`, gives nothing; a leaf the real Building 17 CA issued does get it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appended_self_made_ca_certificate_gives_no_attributes() {
    let s = Setup::start(
        "            b17: { subject: 'CN = Building 17 CA, O = Gatehouse tests', attributes: { building: '17' } }",
    )
    .await;
    // The normal path: a device of the real Building 17 CA.
    let (real, real_key) = s
        .clients
        .building17
        .leaf(name(&[(DnType::CommonName, "sensor-17")]));
    let real_chain = vec![real, s.clients.building17.cert.clone()];
    let mut legit = s.connect("legit", real_chain.clone(), &real_key).await;
    assert_eq!(subscribe(&mut legit, "building/17/#", 1).await, 1);
    assert_eq!(publish(&mut legit, "building/17/temperature", 2).await, 0);
    assert_eq!(
        legit.expect_publish().await.topic,
        "building/17/temperature"
    );

    // The attack: a valid device (Devices CA) appends a self-signed certificate named
    // like the Building 17 CA, after its intermediate and, second try, before it.
    let fake = Ca::root(name(&[
        (DnType::CommonName, "Building 17 CA"),
        (DnType::OrganizationName, "Gatehouse tests"),
    ]));
    let (leaf, key) = s
        .clients
        .devices
        .leaf(name(&[(DnType::CommonName, "intruder")]));
    let devices = s.clients.devices.cert.clone();
    for (i, chain) in [
        vec![leaf.clone(), devices.clone(), fake.cert.clone()],
        vec![leaf.clone(), fake.cert.clone(), devices.clone()],
    ]
    .into_iter()
    .enumerate()
    {
        let client_id = format!("intruder-{i}");
        let mut intruder = s.connect(&client_id, chain.clone(), &key).await;
        assert_eq!(
            publish(&mut intruder, "building/17/door", 10).await,
            NOT_AUTHORIZED,
            "chain {i}: PUBLISH under attributes of an appended certificate"
        );
        assert_eq!(
            subscribe(&mut intruder, "building/17/#", 11).await,
            NOT_AUTHORIZED,
            "chain {i}: SUBSCRIBE under attributes of an appended certificate"
        );
        // `gatehouse explain` reads the chain with the broker's code and agrees.
        let (code, answer) = s
            .explain(&client_id, &chain, "publish", "building/17/door")
            .await;
        assert_eq!(code, 1, "explain: chain {i} is denied\n{answer:#}");
        assert_eq!(answer["subject"]["attributes"], serde_json::json!({}));
        assert_eq!(answer["subject"]["username"], "intruder");
        assert_eq!(answer["certificate"]["presented"], 3);
        assert_eq!(
            answer["certificate"]["path"].as_array().map(Vec::len),
            Some(3),
            "leaf, Devices CA, root: {answer:#}"
        );
    }
    // The human form shows the verified path and the certificate left out.
    let pem: String = [leaf.clone(), devices.clone(), fake.cert.clone()]
        .iter()
        .map(gatehouse_certs::encode_cert)
        .collect();
    let file = p(&s.dir.write("appended.pem", &pem));
    let out = run_gatehouse(&[
        "explain",
        "--config",
        &s.config_file,
        "--client-cert",
        &file,
        "--client-id",
        "intruder-0",
        "publish",
        "building/17/door",
    ])
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "verified path leaf: CN=intruder\n",
        "verified path intermediate: CN=Devices CA, O=Gatehouse tests\n",
        "verified path anchor: CN=Security Test Root CA, O=Gatehouse tests\n",
        "no certificate of the verified path matches an authorizationAttributes entry",
        "1 certificate(s) sent but not chained through",
    ] {
        assert!(text.contains(line), "explain lacks {line:?}:\n{text}");
    }
    let (code, answer) = s
        .explain("legit", &real_chain, "publish", "building/17/door")
        .await;
    assert_eq!(code, 0, "explain: the real Building 17 device\n{answer:#}");
    assert_eq!(
        answer["subject"]["attributes"],
        serde_json::json!({ "building": "17" })
    );
    assert_eq!(
        answer["certificate"]["attributesFrom"],
        "authentications[0].authenticationMethods[0].x509Settings.authorizationAttributes.b17"
    );
    assert_eq!(answer["certificate"]["matchedCertificate"], 1);
    // Nothing of the intruder's reached the building.
    assert!(legit
        .recv(std::time::Duration::from_millis(500))
        .await
        .is_none());
    let _ = &s.dir;
}

/// Item 2: separators inside a certificate's values never make new attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separator_inside_a_certificate_value_does_not_forge_a_subject() {
    let s = Setup::start(concat!(
        "            other: { subject: 'CN = Some CA, O = Other', attributes: { building: '17' } }\n",
        "            plus: { subject: 'CN = Some CA + O = Other', attributes: { building: '17' } }\n",
        "            unit: { subject: 'CN = gateway, OU = Floor 1, O = Other', attributes: { building: '17' } }\n",
        "            escaped: { subject: 'CN = Some CA\\, O\\=Other', attributes: { building: '42' } }\n",
        "            hexescaped: { subject: 'CN = Lab\\2C O\\3DOther\\2BX', attributes: { building: '99' } }",
    ))
    .await;
    let devices = &s.clients.devices;
    // Each leaf's subject, and the building its (single) CN really entitles it to, if any.
    let cases: [(&str, DistinguishedName, Option<&str>); 5] = [
        (
            "CN with `, O=`",
            name(&[(DnType::CommonName, "Some CA, O=Other")]),
            Some("42"),
        ),
        (
            "CN with ` + O = `",
            name(&[(DnType::CommonName, "Some CA + O = Other")]),
            None,
        ),
        (
            "OU with `, O=`",
            name(&[
                (DnType::CommonName, "gateway"),
                (DnType::OrganizationalUnitName, "Floor 1, O=Other"),
            ]),
            None,
        ),
        (
            "CN with `,`, `=` and `+` written as hex escapes in the entry",
            name(&[(DnType::CommonName, "Lab, O=Other+X")]),
            Some("99"),
        ),
        (
            "CN with `, O=` and a trailing space",
            name(&[(DnType::CommonName, "Some CA, O=Other ")]),
            None,
        ),
    ];
    for (i, (what, subject, building)) in cases.into_iter().enumerate() {
        let (leaf, key) = devices.leaf(subject);
        let client_id = format!("case-{i}");
        let chain = vec![leaf, devices.cert.clone()];
        let mut client = s.connect(&client_id, chain.clone(), &key).await;
        let id = 10 * i as u16 + 1;
        assert_eq!(
            publish(&mut client, "building/17/door", id).await,
            NOT_AUTHORIZED,
            "{what}: matched an entry keyed on O = Other"
        );
        assert_eq!(
            subscribe(&mut client, "building/17/#", id + 1).await,
            NOT_AUTHORIZED,
            "{what}: matched an entry keyed on O = Other"
        );
        if let Some(b) = building {
            // The escaped entry names this exact CN: it does match.
            assert_eq!(
                publish(&mut client, &format!("building/{b}/door"), id + 2).await,
                0,
                "{what}: the entry that escapes the separators should match"
            );
        }
        // `gatehouse explain` agrees with the broker.
        let (code, answer) = s
            .explain(&client_id, &chain, "publish", "building/17/door")
            .await;
        assert_eq!(code, 1, "explain, {what}\n{answer:#}");
        let expected = match building {
            Some(b) => serde_json::json!({ "building": b }),
            None => serde_json::json!({}),
        };
        assert_eq!(answer["subject"]["attributes"], expected, "explain, {what}");
    }
}
