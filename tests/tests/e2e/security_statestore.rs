//! State store attacks (issue 13 items 3 and 7, and the state store byte bounds), each
//! performed end to end: X.509 clients made in the test (CN = user name) over TLS with raw
//! MQTT v5, against an authorization policy; victims and an administrator on a second,
//! unauthenticated port of the same listener.
//!
//! - The broker publishes a state store answer on the requester's behalf, so the requester
//!   must be allowed to publish it there and to receive it (security.md invariant 4).
//! - A `{principal.*}` value with `/` never moves a key template into another principal's
//!   namespace (invariant 5).
//! - Values, total bytes and each client's bytes are bounded (invariant 6).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::{Packet, Publish, PublishProperties, QoS};
use gatehouse_tests::broker::{unique, TempDir, TestBroker};
use gatehouse_tests::raw::{
    pid, puback_bytes, ConnectBuilder, ProtocolBroker, RawClient, QUIET, WAIT,
};
use gatehouse_tests::state_store::{response_topic, ts_now, StateStoreClient, REQUEST_TOPIC};
use gatehouse_tests::tls::{connect_as, Pki};

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const HOUR: Duration = Duration::from_secs(3600);
const VICTIM_TOPIC: &str = "devices/victim/cmd";
const QUOTA: &[u8] = b"-ERR the quota has been exceeded\r\n";
const DENIED: &[u8] = b"-ERR not authorized\r\n";

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// Every principal may use the state store (Publish on the request topic, Subscribe on its
/// own `clients/{clientId}/#`, which is what the seed's example and the AIO docs grant),
/// plus:
/// - `reader` may also subscribe to the victim's command topic, never publish there;
/// - `writer` may also publish to it, never subscribe;
/// - `watcher` may subscribe to every client's namespace `clients/#`;
/// - `victim` and `victim/x` own `users/{principal.username}/*` (Pattern) and
///   `names/{principal.username}` (String).
fn rules() -> String {
    format!(
        "
        - principals:
            usernames: [reader, writer, watcher, victim, victim/x]
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"{REQUEST_TOPIC}\"]
            - method: Subscribe
              topics: [\"clients/{{principal.clientId}}/#\"]
        - principals:
            usernames: [reader, writer, watcher]
          brokerResources: []
          stateStoreResources:
            - method: ReadWrite
              keys: [\"shared/*\"]
        - principals:
            usernames: [reader]
          brokerResources:
            - method: Subscribe
              topics: [\"{VICTIM_TOPIC}\"]
        - principals:
            usernames: [writer]
          brokerResources:
            - method: Publish
              topics: [\"{VICTIM_TOPIC}\"]
        - principals:
            usernames: [watcher]
          brokerResources:
            - method: Subscribe
              topics: [\"clients/#\"]
        - principals:
            usernames: [victim, victim/x]
          brokerResources: []
          stateStoreResources:
            - method: ReadWrite
              keyType: Pattern
              keys: [\"users/{{principal.username}}/*\"]
            - method: ReadWrite
              keyType: String
              keys: [\"names/{{principal.username}}\"]
"
    )
}

struct Setup {
    _dir: TempDir,
    broker: TestBroker,
    pki: Pki,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("sec-ss");
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
        authorizationRef: policy
      - port: 0
authentications:
  - name: certs
    authenticationMethods:
      - method: X509
        x509Settings:
          trustedClientCaCert: client-ca
authorizations:
  - name: policy
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

    /// A v5 client over TLS with a certificate whose CN (its user name) is `cn`.
    async fn tls_client(&self, cn: &str, client_id: &str) -> RawClient {
        let (crt, key) = self.pki.client(cn, EC, HOUR, &unique("client"));
        let port = self.broker.server.ports[0].addr.port();
        let tls = connect_as(&self.pki.root_file(), port, "localhost", &crt, &key)
            .await
            .expect("TLS handshake");
        let mut raw = RawClient::over(tls);
        raw.send(&ConnectBuilder::new(client_id).build()).await;
        raw.expect_connack_ok().await;
        raw
    }

    /// A state store client (subscribed to its own response topic) for `cn`.
    async fn requester(&self, cn: &str, client_id: &str) -> StateStoreClient {
        let raw = self.tls_client(cn, client_id).await;
        StateStoreClient::start_with(raw, client_id, false).await
    }

    /// An anonymous client on the unauthenticated port (may do anything).
    async fn anonymous(&self, client_id: &str) -> RawClient {
        let mut raw = RawClient::connect(self.broker.server.ports[1].addr).await;
        raw.send(&ConnectBuilder::new(client_id).build()).await;
        raw.expect_connack_ok().await;
        raw
    }

    /// The victim device, listening on its command topic.
    async fn victim_device(&self) -> RawClient {
        let mut victim = self.anonymous("victim-device").await;
        victim.sub_ok(1, VICTIM_TOPIC, 1).await;
        victim
    }

    /// A state store client on the unauthenticated port.
    async fn admin(&self) -> StateStoreClient {
        let raw = self.anonymous("admin").await;
        StateStoreClient::start_with(raw, "admin", false).await
    }
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

fn get(key: &[u8]) -> Vec<u8> {
    command(&[b"GET", key])
}

fn set(key: &[u8], value: &[u8]) -> Vec<u8> {
    command(&[b"SET", key, value])
}

/// A request PUBLISH answered at `response_topic`.
fn request(payload: &[u8], qos: QoS, id: u16, response_topic: &str, dup: bool) -> Packet {
    Packet::Publish(Publish {
        dup,
        qos,
        retain: false,
        topic: REQUEST_TOPIC.to_owned(),
        packet_id: Some(pid(id)),
        properties: PublishProperties {
            response_topic: Some(response_topic.to_owned()),
            correlation_data: Some(Bytes::from(format!("corr-{id:012}"))),
            user_properties: vec![("__ts".to_owned(), ts_now())],
            ..Default::default()
        },
        payload: Bytes::copy_from_slice(payload),
    })
}

/// PUBACK 0x87 Not authorized for `id`.
fn puback_not_authorized(id: u16) -> [u8; 5] {
    let [h, l] = id.to_be_bytes();
    [0x40, 0x03, h, l, 0x87]
}

/// The value of `key` as the administrator reads it.
async fn stored(admin: &mut StateStoreClient, key: &[u8]) -> Vec<u8> {
    admin.call(&get(key), &[]).await.payload.to_vec()
}

/// Item 3: a client allowed to subscribe to the victim's command topic but not to publish
/// there cannot make the broker publish a state store answer there. Its GET and SET (QoS 1
/// and QoS 2) get 0x87, the SET is not applied, and the victim receives nothing.
#[tokio::test]
async fn answer_to_a_topic_the_requester_may_not_publish_is_refused() {
    let s = Setup::start().await;
    let mut victim = s.victim_device().await;
    let mut admin = s.admin().await;
    admin.call(&set(b"shared/payload", b"REBOOT"), &[]).await;
    let mut reader = s.requester("reader", "reader-1").await;
    // Its own publish there is refused (the baseline the answer must not bypass).
    reader
        .raw
        .publish(VICTIM_TOPIC, b"REBOOT", 1, false, 20)
        .await;
    reader.raw.expect_raw(&puback_not_authorized(20)).await;

    let attack = request(
        &get(b"shared/payload"),
        QoS::AtLeastOnce,
        21,
        VICTIM_TOPIC,
        false,
    );
    reader.raw.send_packet(&attack).await;
    reader.raw.expect_raw(&puback_not_authorized(21)).await;

    let write = request(
        &set(b"shared/written", b"x"),
        QoS::AtLeastOnce,
        22,
        VICTIM_TOPIC,
        false,
    );
    reader.raw.send_packet(&write).await;
    reader.raw.expect_raw(&puback_not_authorized(22)).await;

    // QoS 2: PUBREC 0x87 ends the exchange; the packet id is free again at once.
    let q2 = request(
        &set(b"shared/written", b"y"),
        QoS::ExactlyOnce,
        23,
        VICTIM_TOPIC,
        false,
    );
    reader.raw.send_packet(&q2).await;
    reader.raw.expect_raw(&[0x50, 0x03, 0x00, 23, 0x87]).await;

    victim.expect_nothing(QUIET).await;
    reader.raw.expect_nothing(QUIET).await;
    assert_eq!(stored(&mut admin, b"shared/written").await, b"$-1\r\n");
    // The same requests answered on its own response topic work.
    let ok = reader.call(&set(b"shared/written", b"z"), &[]).await;
    assert_eq!(&ok.payload[..], b"+OK\r\n");
    victim.expect_nothing(QUIET).await;
}

/// Item 3, the AIO rule: publish permission alone is not enough either; the requester must
/// also be allowed to subscribe to the response topic.
#[tokio::test]
async fn answer_to_a_topic_the_requester_may_not_subscribe_is_refused() {
    let s = Setup::start().await;
    let mut victim = s.victim_device().await;
    let mut admin = s.admin().await;
    let mut writer = s.requester("writer", "writer-1").await;
    // It may publish there itself (so the refusal below is about subscribing).
    writer
        .raw
        .publish(VICTIM_TOPIC, b"hello", 1, false, 30)
        .await;
    writer.raw.expect_raw(&puback_bytes(30)).await;
    let _ = victim.expect_publish().await;

    let attack = request(
        &set(b"shared/by-writer", b"x"),
        QoS::AtLeastOnce,
        31,
        VICTIM_TOPIC,
        false,
    );
    writer.raw.send_packet(&attack).await;
    writer.raw.expect_raw(&puback_not_authorized(31)).await;
    victim.expect_nothing(QUIET).await;
    assert_eq!(stored(&mut admin, b"shared/by-writer").await, b"$-1\r\n");
}

/// Item 3, the exception's limit: without Publish, only the requester's own namespace
/// `clients/{its client id}/...` may receive answers, even for a principal allowed to
/// subscribe to every client's namespace.
#[tokio::test]
async fn answers_without_publish_permission_stay_in_the_own_namespace() {
    let s = Setup::start().await;
    let mut other = s.anonymous("other-device").await;
    other.sub_ok(1, "clients/other-device/#", 1).await;
    let mut watcher = s.requester("watcher", "watcher-1").await;
    let foreign = response_topic("other-device");
    let attack = request(&get(b"shared/x"), QoS::AtLeastOnce, 40, &foreign, false);
    watcher.raw.send_packet(&attack).await;
    watcher.raw.expect_raw(&puback_not_authorized(40)).await;
    other.expect_nothing(QUIET).await;
    // A prefix of another id is not the own namespace either.
    let prefix = request(
        &get(b"shared/x"),
        QoS::AtLeastOnce,
        41,
        "clients/watcher-1x/reply",
        false,
    );
    watcher.raw.send_packet(&prefix).await;
    watcher.raw.expect_raw(&puback_not_authorized(41)).await;
    // Its own namespace (the SDKs' response topic) is answered.
    let own = watcher.call(&get(b"shared/x"), &[]).await;
    assert_eq!(&own.payload[..], b"$-1\r\n");
    // A client id with `/` nests its namespace inside another client's: `other-device/x`
    // would own `clients/other-device/x/...`, which `other-device` receives through
    // `clients/other-device/#`. Such ids get no namespace exemption.
    let mut nested = s.requester("watcher", "other-device/x").await;
    let inside = request(
        &get(b"shared/x"),
        QoS::AtLeastOnce,
        42,
        "clients/other-device/x/reply",
        false,
    );
    nested.raw.send_packet(&inside).await;
    nested.raw.expect_raw(&puback_not_authorized(42)).await;
    other.expect_nothing(QUIET).await;
}

/// Item 3, the replay cache: a retransmission (DUP) of an answered request that names a
/// response topic the requester may not publish to is refused too; the cached answer is
/// not published anywhere.
#[tokio::test]
async fn cached_answer_is_not_served_to_an_unauthorized_topic() {
    let s = Setup::start().await;
    let mut victim = s.victim_device().await;
    let mut reader = s.requester("reader", "reader-2").await;
    let own = response_topic("reader-2");
    let first = request(&set(b"shared/k", b"v"), QoS::AtLeastOnce, 50, &own, false);
    reader.raw.send_packet(&first).await;
    let mut acked = false;
    let mut answered = false;
    while !(acked && answered) {
        match reader.raw.recv(WAIT).await {
            Some(Packet::PubAck(a)) if a.packet_id == pid(50) => {
                assert_eq!(a.reason_code.0, 0);
                acked = true;
            }
            Some(Packet::Publish(p)) if p.topic == own => {
                reader.raw.puback(p.packet_id.expect("QoS 1")).await;
                answered = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The same packet id and correlation data, so the cache would answer it.
    let again = request(
        &set(b"shared/k", b"v"),
        QoS::AtLeastOnce,
        50,
        VICTIM_TOPIC,
        true,
    );
    reader.raw.send_packet(&again).await;
    reader.raw.expect_raw(&puback_not_authorized(50)).await;
    victim.expect_nothing(QUIET).await;
    reader.raw.expect_nothing(QUIET).await;
}

/// Item 7: the user name `victim/x` (the CN of a certificate made in the test) must not
/// reach `users/victim/x/...` through `users/{principal.username}/*`, nor the exact key
/// `names/victim/x` through `names/{principal.username}` (String keys are exact text, so
/// that rule names only the key `names/{principal.username}` itself, for everyone). The
/// real `victim` keeps its keys.
#[tokio::test]
async fn username_with_slash_does_not_reach_another_users_keys() {
    let s = Setup::start().await;
    let mut admin = s.admin().await;
    let mut victim = s.requester("victim", "victim-1").await;
    let own = victim
        .call(&set(b"users/victim/x/secret", b"mine"), &[])
        .await;
    assert_eq!(&own.payload[..], b"+OK\r\n");

    let mut attacker = s.requester("victim/x", "attacker-1").await;
    for payload in [
        set(b"users/victim/x/secret", b"stolen"),
        get(b"users/victim/x/secret"),
        set(b"names/victim/x", b"stolen"),
        command(&[b"KEYNOTIFY", b"users/victim/x/secret"]),
    ] {
        let r = attacker.call(&payload, &[]).await;
        assert_eq!(
            &r.payload[..],
            DENIED,
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
    assert_eq!(
        stored(&mut admin, b"users/victim/x/secret").await,
        b"$4\r\nmine\r\n"
    );
    assert_eq!(stored(&mut admin, b"names/victim/x").await, b"$-1\r\n");
    // The victim's own pattern rule still works for it.
    let r = victim.call(&set(b"users/victim/other", b"v"), &[]).await;
    assert_eq!(&r.payload[..], b"+OK\r\n");
}

/// A state store client on a plain port of `b`.
async fn plain_client(b: &ProtocolBroker, client_id: &str) -> StateStoreClient {
    StateStoreClient::start(b.v5(client_id).await, client_id).await
}

/// Bounds: an oversized value, a client over its byte quota and a store over its total
/// get the quota error the SDKs know, and nothing is stored; a second client is not
/// affected by the first one's quota; deleting frees the bytes.
#[tokio::test]
async fn state_store_byte_quotas() {
    let b = ProtocolBroker::with_limits(
        "stateStoreMaxValueBytes: 1KiB, stateStorePerClientBytes: 4KiB, \
         stateStoreMaxTotalBytes: 6KiB",
    )
    .await;
    let mut hog = plain_client(&b, "hog").await;
    let mut other = plain_client(&b, "other").await;
    let value = vec![b'v'; 1000];

    // One value over 1 KiB.
    let big = hog.call(&set(b"big", &vec![b'v'; 1025]), &[]).await;
    assert_eq!(&big.payload[..], QUOTA);
    assert_eq!(&hog.call(&get(b"big"), &[]).await.payload[..], b"$-1\r\n");

    // Per client: four keys of 1002 bytes (key and value) fit in 4 KiB, a fifth does not.
    for i in 0..4 {
        let r = hog
            .call(&set(format!("h{i}").as_bytes(), &value), &[])
            .await;
        assert_eq!(&r.payload[..], b"+OK\r\n", "key {i}");
    }
    let fifth = hog.call(&set(b"h4", &value), &[]).await;
    assert_eq!(&fifth.payload[..], QUOTA);
    assert_eq!(&hog.call(&get(b"h4"), &[]).await.payload[..], b"$-1\r\n");

    // Another client still may write, up to the total (6 KiB: two more keys).
    for i in 0..2 {
        let r = other
            .call(&set(format!("o{i}").as_bytes(), &value), &[])
            .await;
        assert_eq!(&r.payload[..], b"+OK\r\n", "other key {i}");
    }
    let over_total = other.call(&set(b"o2", &value), &[]).await;
    assert_eq!(&over_total.payload[..], QUOTA);

    // Deleting frees the bytes for the owner.
    let del = hog.call(&command(&[b"DEL", b"h0"]), &[]).await;
    assert_eq!(&del.payload[..], b":1\r\n");
    let r = hog.call(&set(b"h4", &value), &[]).await;
    assert_eq!(&r.payload[..], b"+OK\r\n");
}

/// A reload applies new byte quotas at once, to connected clients too: a lowered value
/// bound refuses what was accepted before; what is stored stays.
#[tokio::test]
async fn reloaded_byte_quotas_apply_at_once() {
    let yaml = |value: &str| {
        format!(
            "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0 }} ]
broker: {{ stateStoreMaxValueBytes: {value} }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
"
        )
    };
    let broker = TestBroker::start(&yaml("4KiB")).await;
    let mut raw = RawClient::connect(broker.mqtt_addr()).await;
    raw.send(&ConnectBuilder::new("reloaded").build()).await;
    raw.expect_connack_ok().await;
    let mut c = StateStoreClient::start(raw, "reloaded").await;
    let value = vec![b'v'; 2000];
    assert_eq!(
        &c.call(&set(b"a", &value), &[]).await.payload[..],
        b"+OK\r\n"
    );

    let loaded = gatehouse_config::load_str(&yaml("1KiB"), "reload.yaml").expect("valid");
    let done = broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload");
    assert!(done.limits);
    assert_eq!(&c.call(&set(b"b", &value), &[]).await.payload[..], QUOTA);
    let kept = c.call(&get(b"a"), &[]).await;
    assert_eq!(kept.payload.len(), value.len() + b"$2000\r\n\r\n".len());
}

/// Keys restored from disk after a restart still count against the per-client quota of
/// the client that wrote them (the owner is persisted with the key), so a restart does
/// not hand a client a fresh quota.
#[tokio::test]
async fn restored_keys_count_against_their_writer() {
    use gatehouse_tests::broker::{free_port, BrokerProcess};
    let dir = TempDir::new("sec-ss-persist");
    let port = free_port();
    let file = dir.write(
        "gatehouse.yaml",
        &format!(
            "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: {port} }} ]
dataDir: {}
broker: {{ stateStorePerClientBytes: 3KiB }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
persistence:
  maxSize: 10M
  stateStore: {{ mode: All }}
",
            dir.path().join("data").display()
        ),
    );
    let client = |broker: &BrokerProcess| {
        let addr = broker.addr();
        async move {
            let mut raw = RawClient::connect(addr).await;
            raw.send(&ConnectBuilder::new("hog").build()).await;
            raw.expect_connack_ok().await;
            StateStoreClient::start(raw, "hog").await
        }
    };
    let value = vec![b'v'; 1000];
    let mut broker = BrokerProcess::start(&file, port).await;
    let mut c = client(&broker).await;
    for key in [&b"k1"[..], b"k2", b"k3"] {
        assert_eq!(
            &c.call(&set(key, &value), &[]).await.payload[..],
            b"+OK\r\n"
        );
    }
    assert_eq!(&c.call(&set(b"k4", &value), &[]).await.payload[..], QUOTA);
    tokio::time::sleep(Duration::from_millis(400)).await;
    broker.signal("TERM");
    assert!(broker.exit_within(Duration::from_secs(8)).await.success());

    let broker = BrokerProcess::start(&file, port).await;
    let mut c = client(&broker).await;
    assert_eq!(c.call(&get(b"k3"), &[]).await.payload.len(), 1000 + 9);
    assert_eq!(&c.call(&set(b"k4", &value), &[]).await.payload[..], QUOTA);
}

/// SCAN continuation tokens are sealed: a page ends after a budget of keys *examined*,
/// readable or not, and the plain token would be the name of the last one, a key the
/// client may not read. A client could also pick its own tokens and walk every key name.
#[tokio::test]
async fn scan_tokens_do_not_reveal_unreadable_key_names() {
    let s = Setup::start().await;
    let mut admin = s.admin().await;
    // More unreadable keys than one page examines (SCAN_BUDGET), sorted before the
    // readable one.
    for i in 0..900 {
        let key = format!("secret/{i:04}");
        let r = admin.call(&set(key.as_bytes(), b"x"), &[]).await;
        assert_eq!(&r.payload[..], b"+OK\r\n");
    }
    let r = admin.call(&set(b"shared/a", b"x"), &[]).await;
    assert_eq!(&r.payload[..], b"+OK\r\n");

    let mut reader = s.requester("reader", "reader-scan").await;
    let first = reader.call(&command(&[b"SCAN", b"*"]), &[]).await;
    let page = first.payload.to_vec();
    assert!(
        !page.windows(7).any(|w| w == b"secret/"),
        "the page names no unreadable key: {}",
        String::from_utf8_lossy(&page)
    );
    let prefix = b"*2\r\n*0\r\n$";
    assert!(
        page.starts_with(prefix),
        "{}",
        String::from_utf8_lossy(&page)
    );
    let rest = &page[prefix.len()..];
    let nl = rest.windows(2).position(|w| w == b"\r\n").expect("length");
    let token = &rest[nl + 2..rest.len() - 2];
    // The token continues the scan for its client...
    let next = reader.call(&command(&[b"SCAN", b"*", token]), &[]).await;
    assert_eq!(&next.payload[..], b"*1\r\n*1\r\n$8\r\nshared/a\r\n");
    // ...and for no one else, and a made-up token is refused.
    let mut other = s.requester("reader", "reader-other").await;
    let stolen = other.call(&command(&[b"SCAN", b"*", token]), &[]).await;
    assert!(stolen.payload.starts_with(b"-ERR"), "{:?}", stolen.payload);
    let forged = reader
        .call(&command(&[b"SCAN", b"*", b"secret/0100"]), &[])
        .await;
    assert!(forged.payload.starts_with(b"-ERR"), "{:?}", forged.payload);
}
