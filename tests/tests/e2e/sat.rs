//! Kubernetes service account tokens (`K8S-SAT`, behaviour.md §3 "SAT") with the offline
//! backend: tokens minted in the test with a real RSA key, verified by the broker against
//! a JWKS file; attributes from a service-accounts file. A raw MQTT v5 client sends the
//! token as Authentication Data (the Mosquitto tools cannot) and re-authenticates with AUTH.

use std::path::Path;
use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::jwt::{
    ec_signer, jwks, now, rsa_signer, sat_connect, Signer, AUDIENCE, ISSUER, SENSOR,
    SERVICE_ACCOUNTS_YAML,
};
use gatehouse_tests::raw::{connack_code, frame, ConnectBuilder, Props, RawClient, WAIT};

struct SatBroker {
    _dir: TempDir,
    broker: TestBroker,
    signer: Signer,
}

async fn sat_broker() -> SatBroker {
    let dir = TempDir::new("sat");
    let (signer, jwk) = rsa_signer("key-1");
    let jwks = dir.write("jwks.json", &jwks(&[jwk]));
    let accounts = dir.write("service-accounts.yaml", SERVICE_ACCOUNTS_YAML);
    let p = |x: &Path| x.to_str().expect("UTF-8").to_owned();
    let broker = TestBroker::start(&format!(
        "
listeners:
  - name: sat
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: sat
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {jwks}, issuer: {ISSUER} }}
          serviceAccounts: {{ file: {accounts} }}
",
        jwks = p(&jwks),
        accounts = p(&accounts),
    ))
    .await;
    SatBroker {
        _dir: dir,
        broker,
        signer,
    }
}

/// AUTH with reason 0x19 (re-authenticate), method and data.
fn reauth(method: &str, token: &str) -> Vec<u8> {
    let mut body = vec![0x19];
    Props::new()
        .str(0x15, method)
        .bin(0x16, token.as_bytes())
        .encode(&mut body);
    frame(0xF0, &body)
}

async fn connect(b: &SatBroker, packet: &[u8]) -> (RawClient, u8) {
    let mut c = RawClient::connect(b.broker.mqtt_addr()).await;
    c.send(packet).await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(raw[0], 0x20, "CONNACK expected, got {raw:02X?}");
    let code = connack_code(&raw);
    (c, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_token_connects_and_says_the_method_in_connack() {
    let b = sat_broker().await;
    let mut c = RawClient::connect(b.broker.mqtt_addr()).await;
    c.send(&sat_connect("sat-ok", &b.signer.good(3600))).await;
    match c.expect_packet().await {
        Packet::ConnAck(ack) => {
            assert_eq!(ack.reason_code.0, 0x00);
            assert_eq!(
                ack.properties.authentication_method.as_deref(),
                Some("K8S-SAT")
            );
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_not_authorized() {
    let b = sat_broker().await;
    let (other, _) = rsa_signer("key-1");
    let sub = "system:serviceaccount:default:sensor";
    let cases = [
        (
            "wrong audience",
            b.signer.token(sub, "someone-else", ISSUER, now() + 3600),
        ),
        ("expired", b.signer.token(sub, AUDIENCE, ISSUER, now() - 60)),
        (
            "bad signature",
            other.token(sub, AUDIENCE, ISSUER, now() + 3600),
        ),
        (
            "wrong issuer",
            b.signer
                .token(sub, AUDIENCE, "https://evil.example", now() + 3600),
        ),
        (
            "not a service account",
            b.signer.token("alice", AUDIENCE, ISSUER, now() + 3600),
        ),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (what, token) in cases {
        let (_, code) = connect(&b, &sat_connect("sat-bad", &token)).await;
        assert_eq!(code, 0x87, "{what}: CONNACK reason");
    }
    // An authentication method the chain does not have: 0x8C.
    let other_method = ConnectBuilder::new("sat-foo")
        .props(|p| p.str(0x15, "FOO").bin(0x16, b"x"))
        .build();
    let (_, code) = connect(&b, &other_method).await;
    assert_eq!(code, 0x8C, "unknown authentication method");
    // No credentials at all: nothing relevant, 0x87.
    let (_, code) = connect(&b, &ConnectBuilder::new("sat-none").build()).await;
    assert_eq!(code, 0x87, "no credentials");
}

/// The token expires in 3 s; a client that re-authenticates with a fresh one stays
/// connected past that, one that does not is closed without DISCONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_extends_the_session_past_the_first_expiry() {
    let b = sat_broker().await;
    let (mut renewing, code) = connect(&b, &sat_connect("sat-renew", &b.signer.good(3))).await;
    assert_eq!(code, 0);
    let (mut lapsing, code) = connect(&b, &sat_connect("sat-lapse", &b.signer.good(3))).await;
    assert_eq!(code, 0);

    renewing
        .send(&reauth("K8S-SAT", &b.signer.good(3600)))
        .await;
    match renewing.expect_packet().await {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code.0, 0x00, "AUTH reason");
            assert_eq!(
                a.properties.authentication_method.as_deref(),
                Some("K8S-SAT")
            );
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
    // The lapsing client is closed when its token expires, without DISCONNECT.
    lapsing.expect_closed(Duration::from_secs(8)).await;
    // Past the first expiry, the renewed client is still served.
    tokio::time::sleep(Duration::from_secs(1)).await;
    renewing.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_or_malformed_reauthentication_disconnects() {
    let b = sat_broker().await;
    // A bad token: DISCONNECT 0x87.
    let (mut c, _) = connect(&b, &sat_connect("sat-re-bad", &b.signer.good(3600))).await;
    let expired = b.signer.token(
        "system:serviceaccount:default:sensor",
        AUDIENCE,
        ISSUER,
        now() - 60,
    );
    c.send(&reauth("K8S-SAT", &expired)).await;
    c.expect_disconnect(0x87).await;
    // Another method than CONNECT's: protocol error 0x82.
    let (mut c, _) = connect(&b, &sat_connect("sat-re-other", &b.signer.good(3600))).await;
    c.send(&reauth("OTHER", "x")).await;
    c.expect_disconnect(0x82).await;
    // AUTH from a client that did not use enhanced authentication: 0x82.
    let plain = TestBroker::start(
        "listeners:\n  - name: plain\n    bindAddress: 127.0.0.1\n    ports: [ { port: 0 } ]\n",
    )
    .await;
    let mut c = RawClient::connect(plain.mqtt_addr()).await;
    c.send(&ConnectBuilder::new("plain").build()).await;
    c.expect_connack_ok().await;
    c.send(&reauth("K8S-SAT", "x")).await;
    c.expect_disconnect(0x82).await;
}

/// ES256 tokens verify against an EC key of the same JWKS (keys picked by `kid`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_verify_against_an_ec_jwk() {
    let dir = TempDir::new("sat-es256");
    let (rsa, rsa_jwk) = rsa_signer("rsa-1");
    let (ec, ec_jwk) = ec_signer("ec-1");
    let file = dir.write("jwks.json", &jwks(&[rsa_jwk, ec_jwk]));
    let b = TestBroker::start(&format!(
        "
listeners:
  - name: sat
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0, authenticationRef: sat }} ]
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {}, issuer: {ISSUER} }}
",
        file.display()
    ))
    .await;
    for (what, token, expect) in [
        ("ES256", ec.good(3600), 0x00),
        ("RS256", rsa.good(3600), 0x00),
        (
            "ES256 expired",
            ec.token(SENSOR, AUDIENCE, ISSUER, now() - 60),
            0x87,
        ),
    ] {
        let mut c = RawClient::connect(b.mqtt_addr()).await;
        c.send(&sat_connect("sat-es", &token)).await;
        let raw = c.recv_raw(WAIT).await.expect("CONNACK");
        assert_eq!(connack_code(&raw), expect, "{what}");
    }
}
