//! Findings of the security hunt (issue 13, "a further hunt of your own"), each performed
//! end to end against the real broker.
//!
//! - Log injection: client ids, topics, will topics and subscription filters may hold line
//!   breaks (MQTT only forbids U+0000). The text log wrote some of them with `Display`, so
//!   a client could start a forged log line (a fake "client authenticated" for another
//!   user, say). They are written escaped now (`Debug`: quoted, `\n`).

use std::path::Path;
use std::time::Duration;

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::jwt::{jwks, rsa_signer, AUDIENCE, ISSUER, SENSOR};
use gatehouse_tests::raw::{ConnectBuilder, RawClient, WillSpec};

const WAIT: Duration = Duration::from_secs(5);

/// What an attacker would put after a line break: a line of its own that looks like the
/// broker's.
const FORGED: &str = "FORGED 2026-01-01T00:00:00Z  INFO auth: client authenticated method=\"X509\" username=\"admin\"";

/// The real binary with text logs at debug level, an anonymous port, and a SAT port whose
/// policy lets the sensor connect and publish under `ok/` only.
async fn start(dir: &TempDir) -> (BrokerProcess, u16, gatehouse_tests::jwt::Signer) {
    let (signer, jwk) = rsa_signer("key-1");
    let jwks = dir.write("jwks.json", &jwks(&[jwk]));
    let p = |x: &Path| x.to_str().expect("UTF-8").to_owned();
    let (anonymous, sat) = (free_port(), free_port());
    let config = dir.write(
        "gatehouse.yaml",
        &format!(
            "
listeners:
  - name: hunt
    bindAddress: 127.0.0.1
    ports:
      - port: {anonymous}
      - port: {sat}
        authenticationRef: sat
        authorizationRef: narrow
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {jwks}, issuer: {ISSUER} }}
authorizations:
  - name: narrow
    authorizationPolicies:
      rules:
        - principals: {{ usernames: ['{SENSOR}'] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['ok/#']
diagnostics:
  logs: {{ level: debug, format: text }}
  metrics: {{ prometheusPort: 0 }}
",
            jwks = p(&jwks),
        ),
    );
    let broker = BrokerProcess::start(&config, anonymous).await;
    (broker, sat, signer)
}

/// No line of the log starts with the forged text, and the text did reach the log
/// (escaped, inside one of the broker's own lines) `expected` times at least.
fn assert_not_injected(log: &str, expected: usize) {
    for line in log.lines() {
        assert!(
            !line.starts_with("FORGED"),
            "a client started a log line of its own: {line:?}\n--- log ---\n{log}"
        );
    }
    let escaped = log.matches("\\nFORGED").count();
    assert!(
        escaped >= expected,
        "expected the forged text {expected} times, escaped, in the broker's lines; found \
         {escaped}\n--- log ---\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_values_cannot_forge_log_lines() {
    let dir = TempDir::new("hunt-logs");
    let (broker, sat_port, signer) = start(&dir).await;
    let injected = |before: &str| format!("{before}\n{FORGED}");

    // A client id with a line break ("client connected", debug), and a subscription
    // filter that is refused ("refused subscription", debug).
    let mut c = RawClient::connect(broker.addr()).await;
    c.send(&ConnectBuilder::new(&injected("id")).build()).await;
    c.expect_connack_ok().await;
    let suback = c.subscribe(1, &injected("a/#/b"), 0).await;
    assert_eq!(suback.reason_codes.len(), 1);
    c.disconnect().await;

    // An authenticated client whose will topic is not authorized ("the will's topic is
    // not authorized", info).
    let token = signer.good(3600);
    let connect = ConnectBuilder::new("sensor-1")
        .props(move |p| p.str(0x15, "K8S-SAT").bin(0x16, token.as_bytes()))
        .will(WillSpec::new(&injected("denied"), b"gone"))
        .build();
    let mut s = RawClient::connect(std::net::SocketAddr::from(([127, 0, 0, 1], sat_port))).await;
    s.send(&connect).await;
    s.expect_connack_ok().await;
    s.disconnect().await;

    // The log is written asynchronously: wait for the three lines.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = broker.log_text();
        let seen = log.matches(FORGED).count();
        if seen >= 3 || tokio::time::Instant::now() > deadline {
            assert_not_injected(&log, 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
