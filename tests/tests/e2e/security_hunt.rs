//! Findings of the security hunt (issue 13, "a further hunt of your own"), each performed
//! end to end against the real broker.
//!
//! - Log injection: client ids, topics, will topics and subscription filters may hold line
//!   breaks (MQTT only forbids U+0000). The text log wrote some of them with `Display`, so
//!   a client could start a forged log line (a fake "client authenticated" for another
//!   user, say). They are written escaped now (`Debug`: quoted, `\n`).
//! - Forged state store notifications: the broker delivers KEYNOTIFY notifications on
//!   `clients/statestore/v1/<GUID>/{HEX(clientId)}/command/notify/{HEX(key)}`, and the
//!   SDKs believe whatever arrives there. Under the common per-client rule
//!   `clients/{principal.clientId}/#`, a client named `statestore` could publish there and
//!   feed any watching client a value of its choice. Only the broker publishes there now.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
use gatehouse_tests::jwt::{jwks, rsa_signer, AUDIENCE, ISSUER, SENSOR};
use gatehouse_tests::raw::{publish_bytes, ConnectBuilder, Props, RawClient, WillSpec};
use gatehouse_tests::state_store::{hex, NOTIFY_PREFIX};

const WAIT: Duration = Duration::from_secs(5);

/// What an attacker would put after a line break: a line of its own that looks like the
/// broker's.
const FORGED: &str = "FORGED 2026-01-01T00:00:00Z  INFO auth: client authenticated method=\"X509\" username=\"admin\"";

/// The real binary with text logs at debug level, an anonymous port, and a SAT port
/// (service account tokens signed by the returned signer) whose policy is `rules`.
async fn start(
    dir: &TempDir,
    rules: &str,
) -> (BrokerProcess, SocketAddr, gatehouse_tests::jwt::Signer) {
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
        authorizationRef: policy
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {jwks}, issuer: {ISSUER} }}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:{rules}
diagnostics:
  logs: {{ level: debug, format: text }}
  metrics: {{ prometheusPort: 0 }}
",
            jwks = p(&jwks),
        ),
    );
    let broker = BrokerProcess::start(&config, anonymous).await;
    (broker, SocketAddr::from(([127, 0, 0, 1], sat)), signer)
}

/// A v5 CONNECT as the SAT sensor, with client id `client_id`.
fn sat_connect(signer: &gatehouse_tests::jwt::Signer, client_id: &str) -> ConnectBuilder {
    let token = signer.good(3600);
    ConnectBuilder::new(client_id)
        .props(move |p| p.str(0x15, "K8S-SAT").bin(0x16, token.as_bytes()))
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
    let rules = format!(
        "
        - principals: {{ usernames: ['{SENSOR}'] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['ok/#']
"
    );
    let (broker, sat, signer) = start(&dir, &rules).await;
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
    let connect = sat_connect(&signer, "sensor-1")
        .will(WillSpec::new(&injected("denied"), b"gone"))
        .build();
    let mut s = RawClient::connect(sat).await;
    s.send(&connect).await;
    s.expect_connack_ok().await;
    s.disconnect().await;

    // The log is written asynchronously: wait for the three lines. They hold the forged
    // text escaped (`\nFORGED ... method=\"X509\"`), so count what `assert_not_injected`
    // counts: the raw text (unescaped quotes) never appears, and waiting for it always
    // took the whole WAIT.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = broker.log_text();
        let seen = log.matches("\\nFORGED").count();
        if seen >= 3 || tokio::time::Instant::now() > deadline {
            assert_not_injected(&log, 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client whose client id is `statestore` gets `clients/statestore/#` from the rule
/// `clients/{principal.clientId}/#`: it publishes a NOTIFY that sets the key `config` to
/// a value of its choice, on the notification topic of a client that watches the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_forge_state_store_notifications() {
    let dir = TempDir::new("hunt-notify");
    let rules = format!(
        "
        - principals: {{ usernames: ['{SENSOR}'] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['clients/{{principal.clientId}}/#']
            - method: Subscribe
              topics: ['{NOTIFY_PREFIX}/+/command/notify/+']
"
    );
    let (broker, sat, signer) = start(&dir, &rules).await;
    let notify_topic = format!(
        "{NOTIFY_PREFIX}/{}/command/notify/{}",
        hex(b"victim-1"),
        hex(b"config")
    );

    // The victim watches `config` the way the SDKs do.
    let mut victim = RawClient::connect(sat).await;
    victim.send(&sat_connect(&signer, "victim-1").build()).await;
    victim.expect_connack_ok().await;
    victim
        .sub_ok(
            1,
            &format!("{NOTIFY_PREFIX}/{}/command/notify/+", hex(b"victim-1")),
            1,
        )
        .await;

    // The attacker, named `statestore`, publishes a notification of its own.
    let mut attacker = RawClient::connect(sat).await;
    attacker
        .send(&sat_connect(&signer, "statestore").build())
        .await;
    attacker.expect_connack_ok().await;
    let forged = b"*4\r\n$6\r\nNOTIFY\r\n$3\r\nSET\r\n$5\r\nVALUE\r\n$4\r\nevil\r\n";
    attacker
        .send(&publish_bytes(
            0x02,
            notify_topic.as_bytes(),
            Some(7),
            Some(&Props::new()),
            forged,
        ))
        .await;
    let ack = attacker.expect_packet().await;
    assert!(
        matches!(&ack, gatehouse_protocol::Packet::PubAck(a) if a.reason_code.0 == 0x87),
        "the forged notification was accepted: {ack:?}\n{}",
        broker.log_text()
    );
    victim.expect_nothing(Duration::from_millis(500)).await;

    // Its own namespace still works.
    attacker
        .send(&publish_bytes(
            0x02,
            b"clients/statestore/own",
            Some(8),
            Some(&Props::new()),
            b"x",
        ))
        .await;
    let ack = attacker.expect_packet().await;
    assert!(
        matches!(&ack, gatehouse_protocol::Packet::PubAck(a) if a.reason_code.0 == 0),
        "{ack:?}"
    );
}

/// Validation accepts an attribute name with `/` in a topic token (one token, one level);
/// the broker split rule topics on `/` before reading tokens and refused to start with
/// "a token must be the whole topic level". The fuzz targets and the substitution
/// harness now check the invariant "what validates compiles".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_token_naming_an_attribute_with_a_slash_starts() {
    let rules = "
        - principals: { attributes: [ { team/site: north } ] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['sites/{principal.attributes.team/site}/#']
";
    if let Err(e) = policy_starts(rules).await {
        panic!("a configuration that validates did not start: {e}");
    }
}

/// The configuration of [`policy_starts`]: one SAT port with the policy `rules`.
fn sat_policy_yaml(jwks: &Path, rules: &str) -> String {
    format!(
        "
listeners:
  - name: hunt
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0, authenticationRef: sat, authorizationRef: policy }} ]
authentications:
  - name: sat
    authenticationMethods:
      - method: ServiceAccountToken
        serviceAccountTokenSettings:
          audiences: [{AUDIENCE}]
          jwks: {{ file: {jwks}, issuer: {ISSUER} }}
authorizations:
  - name: policy
    authorizationPolicies:
      rules:{rules}
",
        jwks = jwks.display(),
    )
}

/// Whether the broker starts with `rules`; `Err` is the start error.
async fn policy_starts(rules: &str) -> Result<(), String> {
    let dir = TempDir::new("hunt-policy");
    let (_signer, jwk) = rsa_signer("key-1");
    let jwks = dir.write("jwks.json", &jwks(&[jwk]));
    gatehouse_tests::broker::TestBroker::try_start(&sat_policy_yaml(&jwks, rules))
        .await
        .map(drop)
}

/// A token inside a glob's `[...]` class is read as class syntax, not literally: with
/// `[a-{principal.username}]` a client named `z` would be granted every key `a`..`z`, and
/// `[!{principal.attributes.x}]` every key but one. Such a policy is refused at start-up
/// (with its YAML path) instead of widening access at run time; so is a token after an
/// escaping `\`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_tokens_that_would_not_be_literal_are_refused() {
    for (key, why) in [
        (
            "cfg/[a-{principal.username}]",
            "inside a `[...]` character class",
        ),
        (
            "cfg/[!{principal.attributes.x}]*",
            "inside a `[...]` character class",
        ),
        ("cfg/\\\\{principal.username}", "follows a `\\`"),
    ] {
        let rules = format!(
            "
        - principals: {{ usernames: [u] }}
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: Pattern
              keys: [\"{key}\"]
"
        );
        match policy_starts(&rules).await {
            Ok(()) => panic!("the broker started with the key pattern `{key}`"),
            Err(e) => assert!(
                e.contains(why) && e.contains("stateStoreResources[0].keys[0]"),
                "{key}: {e}"
            ),
        }
    }
}

/// `keyType: String` keys are exact text (behaviour.md §4; validation says tokens are not
/// substituted there): one with braces validates, so the broker must start with it (it
/// parsed it for tokens and refused to start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_keys_with_braces_start() {
    let rules = "
        - principals: { usernames: [u] }
          brokerResources:
            - method: Connect
          stateStoreResources:
            - method: Read
              keyType: String
              keys: [\"literal/{a,b}\"]
";
    if let Err(e) = policy_starts(rules).await {
        panic!("a configuration that validates did not start: {e}");
    }
}

/// The log line of a refused state store request names the client id and the response
/// topic, both the client's: a line break in either stays inside the broker's line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_state_store_request_cannot_forge_log_lines() {
    let dir = TempDir::new("hunt-logs-ss");
    let rules = format!(
        "
        - principals: {{ usernames: ['{SENSOR}'] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: ['{}']
",
        gatehouse_tests::state_store::REQUEST_TOPIC
    );
    let (broker, sat, signer) = start(&dir, &rules).await;
    let injected = |before: &str| format!("{before}\n{FORGED}");
    let mut c = RawClient::connect(sat).await;
    c.send(&sat_connect(&signer, &injected("id")).build()).await;
    c.expect_connack_ok().await;
    // No Subscribe on the response topic: refused with 0x87, and logged.
    let props = Props::new()
        .str(0x08, &injected("reply"))
        .bin(0x09, b"corr");
    c.send(&publish_bytes(
        0x02,
        gatehouse_tests::state_store::REQUEST_TOPIC.as_bytes(),
        Some(1),
        Some(&props),
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    ))
    .await;
    c.expect_raw(&[0x40, 0x03, 0x00, 0x01, 0x87]).await;
    c.disconnect().await;

    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let log = broker.log_text();
        let refused = log.lines().any(|l| l.contains("request refused"));
        if refused || tokio::time::Instant::now() > deadline {
            assert!(refused, "the refusal is logged:\n{log}");
            // The refusal line holds both values escaped (no span since issue 16: the
            // client id once).
            let line = log
                .lines()
                .find(|l| l.contains("request refused"))
                .unwrap_or_default();
            assert_eq!(line.matches("\\nFORGED").count(), 2, "{line}");
            assert_not_injected(&log, 2);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
