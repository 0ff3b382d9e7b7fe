//! Attacks on what a session was granted (security.md invariants 2, 3 and 4), performed
//! end to end with real TLS clients presenting X.509 certificates made in the test:
//!
//! - another principal resuming someone else's session by client id (issue 13, 4a);
//! - a session resumed after a policy reload that revokes its subscription (4b);
//! - a v5 re-authentication that changes the principal (4c, custom auth over HTTPS);
//! - a custom-auth pass whose expiry is already past, with packets pipelined behind
//!   CONNECT (5);
//! - a will whose topic a reloaded policy forbids (6).

use std::path::Path;
use std::time::{Duration, SystemTime};

use gatehouse_config::PrivateKeyAlgorithm;
use gatehouse_protocol::{Packet, ReasonCode};
use gatehouse_tests::broker::{TempDir, TestBroker};
use gatehouse_tests::https_stub::ScriptedServer;
use gatehouse_tests::raw::{connack_code, ConnectBuilder, Props, RawClient, WillSpec, WAIT};
use gatehouse_tests::secure::SecurePort;
use gatehouse_tests::tls::Pki;
use gatehouse_tests::wait;

const EC: PrivateKeyAlgorithm = PrivateKeyAlgorithm::Ec256;
const QUIET: Duration = Duration::from_millis(700);

fn p(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_owned()
}

/// Alice may read `alice/#`, Mallory `mallory/#`; the publisher `pub` may publish
/// anywhere. Everyone may connect with any client id.
const RULES: &str = "        - principals: { usernames: [alice] }
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"alice/#\"]
        - principals: { usernames: [mallory] }
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"mallory/#\"]
        - principals: { usernames: [pub] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"#\"]
";

/// 4a across a restart: the owner of a persisted session is persisted with it, so after
/// `kill -9` another identity still cannot resume it, while its owner can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_of_a_persisted_session_survives_a_restart() {
    use gatehouse_tests::broker::{free_port, BrokerProcess};
    let s = SecurePort::new("sec-owner-restart", &["alice", "mallory", "pub"]);
    let port = free_port();
    let data = s.dir.path().join("data");
    let yaml = format!(
        "dataDir: {data}\npersistence: {{ maxSize: 64MiB, subscriberQueue: {{ mode: All }} }}\ndiagnostics: {{ metrics: {{ prometheusPort: 0 }} }}\n{}",
        s.yaml(RULES, "").replacen("port: 0", &format!("port: {port}"), 1),
        data = p(&data),
    );
    let file = s.dir.write("gatehouse.yaml", &yaml);
    let session = |id: &str, clean: bool| {
        ConnectBuilder::new(id)
            .clean_start(clean)
            .session_expiry(300)
    };

    let mut broker = BrokerProcess::start(&file, port).await;
    for id in ["shared-id", "alice-own"] {
        let (mut alice, _) = s.connect_to(port, "alice", session(id, true)).await;
        alice.sub_ok(1, "alice/#", 1).await;
        alice.disconnect().await;
    }
    let (mut publisher, _) = s
        .connect_to(port, "pub", ConnectBuilder::new("pub-1"))
        .await;
    publisher
        .publish_q1("alice/queued", b"secret", false, 1)
        .await;
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;

    let _broker = BrokerProcess::start(&file, port).await;
    let (mut mallory, ack) = s
        .connect_to(port, "mallory", session("shared-id", false))
        .await;
    assert!(
        !ack.session_present,
        "Mallory must not resume Alice's persisted session after a restart"
    );
    mallory.expect_nothing(QUIET).await;
    let (mut alice, ack) = s
        .connect_to(port, "alice", session("alice-own", false))
        .await;
    assert!(
        ack.session_present,
        "the owner resumes her persisted session"
    );
    let m = alice.expect_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("alice/queued", &b"secret"[..])
    );
}

/// 4a: Mallory connects with Alice's client id and Clean Start 0. Before the fix she got
/// Alice's session (Session Present 1), its queued message and its live messages, although
/// her own SUBSCRIBE to `alice/#` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_principal_cannot_resume_a_session_by_its_client_id() {
    let s = SecurePort::new("sec-takeover", &["alice", "mallory", "pub"]);
    let b = TestBroker::start(&s.yaml(RULES, "")).await;

    let session = ConnectBuilder::new("shared-id")
        .clean_start(true)
        .session_expiry(300);
    let (mut alice, _) = s.connect(&b, "alice", session).await;
    alice.sub_ok(1, "alice/#", 1).await;
    alice.disconnect().await;

    let (mut publisher, _) = s.connect(&b, "pub", ConnectBuilder::new("pub-1")).await;
    publisher
        .publish_q1("alice/queued", b"secret-1", false, 1)
        .await;

    let resume = ConnectBuilder::new("shared-id")
        .clean_start(false)
        .session_expiry(300);
    let (mut mallory, ack) = s.connect(&b, "mallory", resume).await;
    assert!(
        !ack.session_present,
        "Mallory must not resume Alice's session"
    );
    // Her own SUBSCRIBE is refused, as before.
    let refused = mallory.subscribe(2, "alice/#", 1).await;
    assert_eq!(refused.reason_codes, [ReasonCode::NOT_AUTHORIZED]);
    publisher
        .publish_q1("alice/live", b"secret-2", false, 2)
        .await;
    mallory.expect_nothing(QUIET).await;
    mallory.disconnect().await;

    // Alice herself resumes: the session she had is gone (Mallory's CONNECT replaced it),
    // and nothing of Alice's reached Mallory meanwhile. The same identity resuming its
    // own session still works: shown with a fresh session below.
    let own = ConnectBuilder::new("alice-own")
        .clean_start(true)
        .session_expiry(300);
    let (mut alice, _) = s.connect(&b, "alice", own).await;
    alice.sub_ok(1, "alice/#", 1).await;
    alice.disconnect().await;
    publisher
        .publish_q1("alice/while-away", b"kept", false, 3)
        .await;
    let back = ConnectBuilder::new("alice-own")
        .clean_start(false)
        .session_expiry(300);
    let (mut alice, ack) = s.connect(&b, "alice", back).await;
    assert!(ack.session_present, "the owner resumes her own session");
    let m = alice.expect_publish().await;
    assert_eq!(m.topic, "alice/while-away");
    assert_eq!(&m.payload[..], b"kept");
}

/// 4b: a policy reload disconnects clients (0x98); a client resuming its session keeps
/// only the subscriptions the new policy allows, and loses the messages queued for the
/// revoked ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_loses_what_a_reloaded_policy_revokes() {
    let s = SecurePort::new("sec-reload-subs", &["alice", "pub"]);
    let rules_before = "        - principals: { usernames: [alice] }
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"alice/#\", \"news/#\"]
        - principals: { usernames: [pub] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"#\"]
";
    let rules_after = rules_before.replace("[\"alice/#\", \"news/#\"]", "[\"news/#\"]");
    let b = TestBroker::start(&s.yaml(rules_before, "")).await;

    let session = ConnectBuilder::new("alice-1")
        .clean_start(true)
        .session_expiry(300);
    let (mut alice, _) = s.connect(&b, "alice", session).await;
    alice.sub_ok(1, "alice/#", 1).await;
    alice.sub_ok(2, "news/#", 1).await;

    let fresh = gatehouse_config::load_str(&s.yaml(&rules_after, ""), "reload.yaml")
        .expect("new config")
        .config;
    let reloaded = b.server.reloader().apply(fresh).expect("reload");
    assert_eq!(reloaded.policies, ["policy"]);
    alice.expect_disconnect(0x98).await;

    // While Alice is away: one message on the revoked filter, one on the kept one.
    let (mut publisher, _) = s.connect(&b, "pub", ConnectBuilder::new("pub-1")).await;
    publisher
        .publish_q1("alice/private", b"revoked", false, 1)
        .await;
    publisher.publish_q1("news/today", b"kept", false, 2).await;

    let resume = ConnectBuilder::new("alice-1")
        .clean_start(false)
        .session_expiry(300);
    let (mut alice, ack) = s.connect(&b, "alice", resume).await;
    assert!(ack.session_present);
    let m = alice.expect_publish().await;
    assert_eq!(
        (m.topic.as_str(), &m.payload[..]),
        ("news/today", &b"kept"[..])
    );
    if let Some(id) = m.packet_id {
        alice.puback(id).await;
    }
    alice.expect_nothing(QUIET).await;
    // Live traffic on the revoked filter does not arrive either.
    publisher
        .publish_q1("alice/live", b"revoked", false, 3)
        .await;
    publisher.publish_q1("news/live", b"kept", false, 4).await;
    let m = alice.expect_publish().await;
    assert_eq!(m.topic, "news/live");
    if let Some(id) = m.packet_id {
        alice.puback(id).await;
    }
    alice.expect_nothing(QUIET).await;
    // And the revocation is counted.
    let metrics = scrape(&b).await;
    assert!(
        metrics.contains("gatehouse_subscriptions_revoked_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_messages_dropped_total{reason=\"not_authorized\"} 1"),
        "{metrics}"
    );
}

/// 4b, narrowly: the re-check on resume lets state store notifications through only for
/// the client's own notification prefix. A message on another client's notification topic
/// (published by a client of a port without a policy, where those topics are not reserved)
/// is queued for a subscription the reload then revokes; it must not be delivered as if
/// it were a notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_session_gets_no_foreign_notification_topics_it_may_no_longer_read() {
    let s = SecurePort::new("sec-notify-exempt", &["watcher"]);
    let rules = |filter: &str| {
        format!(
            "        - principals: {{ usernames: [watcher] }}
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"{filter}\"]
"
        )
    };
    // One TLS port with the policy, one open port (no authentication, no policy).
    let yaml = |filter: &str| {
        s.yaml(&rules(filter), "").replacen(
            "        authorizationRef: policy\n",
            "        authorizationRef: policy\n      - port: 0\n",
            1,
        )
    };
    let b = TestBroker::start(&yaml("clients/#")).await;
    let addrs = b.server.addrs();
    let (secure, open) = (
        addrs[0].port(),
        gatehouse_tests::broker::connectable(addrs[1]),
    );
    let session = |clean: bool| {
        ConnectBuilder::new("watcher-1")
            .clean_start(clean)
            .session_expiry(300)
    };
    let (mut watcher, _) = s.connect_to(secure, "watcher", session(true)).await;
    watcher.sub_ok(1, "clients/#", 1).await;

    let fresh = gatehouse_config::load_str(&yaml("other/#"), "reload.yaml")
        .expect("new config")
        .config;
    b.server.reloader().apply(fresh).expect("reload");
    watcher.expect_disconnect(0x98).await;

    // Another client's notification topic, written from the open port.
    let foreign = format!(
        "{}/{}/command/notify/4B",
        gatehouse_tests::state_store::NOTIFY_PREFIX,
        gatehouse_tests::state_store::hex(b"victim")
    );
    let mut anon = RawClient::connect(open).await;
    anon.send(&ConnectBuilder::new("anon-1").build()).await;
    anon.expect_connack_ok().await;
    anon.publish_q1(&foreign, b"forged", false, 1).await;

    let (mut watcher, ack) = s.connect_to(secure, "watcher", session(false)).await;
    assert!(ack.session_present);
    watcher.expect_nothing(QUIET).await;
}

/// 6: a will authorized at CONNECT is not published once a reloaded policy forbids its
/// topic. The reload's own disconnect (0x98) is what publishes it; the watcher, also
/// disconnected by the reload, has a persistent QoS 1 session, so a will published at
/// that moment would wait for it in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_will_is_authorized_by_the_policy_in_force_when_it_is_published() {
    let s = SecurePort::new("sec-will", &["device", "watcher"]);
    let rules_before = "        - principals: { usernames: [device] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"alerts/#\", \"status/#\"]
        - principals: { usernames: [watcher] }
          brokerResources:
            - method: Connect
            - method: Subscribe
              topics: [\"#\"]
";
    let rules_after = rules_before.replace("[\"alerts/#\", \"status/#\"]", "[\"status/#\"]");
    let b = TestBroker::start(&s.yaml(rules_before, "")).await;
    let watcher_session = |clean: bool| {
        ConnectBuilder::new("watcher-1")
            .clean_start(clean)
            .session_expiry(300)
    };
    let (mut watcher, _) = s.connect(&b, "watcher", watcher_session(true)).await;
    watcher.sub_ok(1, "#", 1).await;

    let mut will = WillSpec::new("alerts/device-1", b"gone");
    will.qos = 1;
    let (mut device, _) = s
        .connect(&b, "device", ConnectBuilder::new("device-1").will(will))
        .await;
    let fresh = gatehouse_config::load_str(&s.yaml(&rules_after, ""), "reload.yaml")
        .expect("new config")
        .config;
    b.server.reloader().apply(fresh).expect("reload");
    device.expect_disconnect(0x98).await;
    watcher.expect_disconnect(0x98).await;
    drop((device, watcher));

    // A will that the new policy still allows is published: the check is not a blanket
    // refusal.
    let mut allowed = WillSpec::new("status/device-2", b"bye");
    allowed.qos = 1;
    let (device, _) = s
        .connect(&b, "device", ConnectBuilder::new("device-2").will(allowed))
        .await;
    drop(device); // no DISCONNECT: the will is due
                  // The will is published when the broker ends the connection.
    wait::until(
        Duration::from_secs(5),
        "the broker saw device-2 leave",
        || b.server.open_connections() == 0,
    )
    .await;

    let (mut watcher, ack) = s.connect(&b, "watcher", watcher_session(false)).await;
    assert!(ack.session_present);
    let m = watcher.expect_publish().await;
    assert_eq!(
        m.topic, "status/device-2",
        "the first device's will on alerts/ must not have been published"
    );
    if let Some(id) = m.packet_id {
        watcher.puback(id).await;
    }
    watcher.expect_nothing(QUIET).await;
}

/// 5: a custom authentication server answers a pass whose expiry is already past. The
/// client is refused, and the PUBLISH it pipelined behind CONNECT reaches nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_expired_pass_is_refused_and_pipelined_packets_are_not_routed() {
    let dir = TempDir::new("sec-expired-pass");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, |seen| {
        let past = SystemTime::now() - Duration::from_secs(60);
        let future = SystemTime::now() + Duration::from_secs(3600);
        let at = if seen.body["username"] == "stale" {
            past
        } else {
            future
        };
        (200, format!(r#"{{"expiry": "{}"}}"#, rfc3339(at)))
    })
    .await;
    let yaml = custom_yaml(&server, &pki, None);
    let b = TestBroker::start(&with_tls(&yaml, &pki)).await;
    let mut watcher = tls_client(&b, &pki).await;
    watcher.send(&login("watcher", "fresh")).await;
    watcher.expect_connack_ok().await;
    watcher.sub_ok(1, "pipelined/#", 0).await;

    let mut stale = tls_client(&b, &pki).await;
    let mut bytes = login("stale-1", "stale");
    bytes.extend(gatehouse_tests::raw::publish_bytes(
        0x00,
        b"pipelined/x",
        None,
        Some(&Props::new()),
        b"should not be routed",
    ));
    stale.send(&bytes).await;
    let raw = stale.recv_raw(WAIT).await.expect("a CONNACK");
    assert_eq!(connack_code(&raw), 0x87, "CONNACK {raw:02X?}");
    stale.expect_closed(WAIT).await;
    watcher.expect_nothing(QUIET).await;
}

/// CONNECT v5 (clean start, no properties) with user name `username` and a password.
fn login(client_id: &str, username: &str) -> Vec<u8> {
    use gatehouse_tests::raw::{frame, mqtt_str};
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(5);
    body.push(0x80 | 0x40 | 0x02);
    body.extend(60u16.to_be_bytes());
    body.push(0); // no properties
    mqtt_str(&mut body, client_id.as_bytes());
    mqtt_str(&mut body, username.as_bytes());
    mqtt_str(&mut body, b"pw");
    frame(0x10, &body)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

/// 4c: a v5 re-authentication whose answer changes the principal's attributes (here:
/// which room it belongs to). Before the fix the subscription granted under the old
/// attributes kept delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_authentication_as_another_principal_drops_what_the_first_was_granted() {
    let dir = TempDir::new("sec-reauth");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, |seen| {
        let data = seen.body["enhancedAuthentication"]["data"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // base64 of "room-a" / "room-b"
        let room = match data.as_str() {
            "cm9vbS1h" => "a",
            "cm9vbS1i" => "b",
            _ => return (403, r#"{"reason": 135}"#.into()),
        };
        (
            200,
            format!(r#"{{"expiry": "2099-01-01T00:00:00Z", "attributes": {{"room": "{room}"}}}}"#),
        )
    })
    .await;
    let yaml = custom_yaml(
        &server,
        &pki,
        Some(
            "        - principals: { attributes: [{ room: a }] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"rooms/#\"]
            - method: Subscribe
              topics: [\"rooms/a/#\"]
        - principals: { attributes: [{ room: b }] }
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"rooms/#\"]
            - method: Subscribe
              topics: [\"rooms/b/#\"]
",
        ),
    );
    let b = TestBroker::start(&with_tls(&yaml, &pki)).await;
    let enhanced = |id: &str, data: &[u8]| {
        ConnectBuilder::new(id)
            .props(|p| p.str(0x15, "token").bin(0x16, data))
            .build()
    };
    let mut client = tls_client(&b, &pki).await;
    client.send(&enhanced("roomie", b"room-a")).await;
    client.expect_connack_ok().await;
    client.sub_ok(1, "rooms/a/#", 0).await;

    let mut publisher = tls_client(&b, &pki).await;
    publisher.send(&enhanced("publisher", b"room-b")).await;
    publisher.expect_connack_ok().await;
    publisher.publish("rooms/a/1", b"before", 0, false, 0).await;
    assert_eq!(client.expect_publish().await.topic, "rooms/a/1");

    // Re-authenticate into room b.
    let mut auth = Vec::new();
    auth.push(0x19);
    Props::new()
        .str(0x15, "token")
        .bin(0x16, b"room-b")
        .encode(&mut auth);
    client.send(&gatehouse_tests::raw::frame(0xF0, &auth)).await;
    match client.expect_packet().await {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    publisher.publish("rooms/a/2", b"after", 0, false, 0).await;
    publisher.ping().await;
    client.expect_nothing(QUIET).await;
    // The new principal's own rights work.
    client.sub_ok(2, "rooms/b/#", 0).await;
    publisher.publish("rooms/b/1", b"mine", 0, false, 0).await;
    assert_eq!(client.expect_publish().await.topic, "rooms/b/1");
}

/// 4c for the state store: a KEYNOTIFY registration made under the first principal stops
/// delivering once a re-authentication takes away Read on the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_authentication_re_checks_keynotify_registrations() {
    use gatehouse_tests::state_store::StateStoreClient;
    let dir = TempDir::new("sec-reauth-ss");
    let pki = Pki::new(dir.path(), EC);
    let server = ScriptedServer::start(&pki, None, |seen| {
        let data = seen.body["enhancedAuthentication"]["data"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // base64 of "room-a" / "room-b" / "admin"
        let room = match data.as_str() {
            "cm9vbS1h" => "a",
            "cm9vbS1i" => "b",
            "YWRtaW4=" => "admin",
            _ => return (403, r#"{"reason": 135}"#.into()),
        };
        (
            200,
            format!(r#"{{"expiry": "2099-01-01T00:00:00Z", "attributes": {{"room": "{room}"}}}}"#),
        )
    })
    .await;
    let room_rule = |room: &str, keys: &str, method: &str| {
        format!(
            "        - principals: {{ attributes: [{{ room: {room} }}] }}
          brokerResources:
            - method: Connect
            - method: Publish
              topics: [\"{request}\"]
            - method: Subscribe
              topics: [\"clients/#\"]
          stateStoreResources:
            - method: {method}
              keyType: Pattern
              keys: [\"{keys}\"]
",
            request = gatehouse_tests::state_store::REQUEST_TOPIC
        )
    };
    let yaml = custom_yaml(
        &server,
        &pki,
        Some(&format!(
            "{a}{b}{admin}",
            a = room_rule("a", "rooms/a/*", "Read"),
            b = room_rule("b", "rooms/b/*", "Read"),
            admin = room_rule("admin", "*", "ReadWrite")
        )),
    );
    let b = TestBroker::start(&with_tls(&yaml, &pki)).await;
    let enhanced = |id: &str, data: &[u8]| {
        ConnectBuilder::new(id)
            .props(|p| p.str(0x15, "token").bin(0x16, data))
            .build()
    };
    let command = |parts: &[&[u8]]| {
        let mut out = format!("*{}\r\n", parts.len()).into_bytes();
        for part in parts {
            out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out
    };

    let mut raw = tls_client(&b, &pki).await;
    raw.send(&enhanced("watcher-ss", b"room-a")).await;
    raw.expect_connack_ok().await;
    let mut watcher = StateStoreClient::start(raw, "watcher-ss").await;
    let ok = watcher
        .call(&command(&[b"KEYNOTIFY", b"rooms/a/door"]), &[])
        .await;
    assert_eq!(ok.text(), "+OK\r\n", "KEYNOTIFY under room a");

    let mut raw = tls_client(&b, &pki).await;
    raw.send(&enhanced("admin-ss", b"admin")).await;
    raw.expect_connack_ok().await;
    let mut admin = StateStoreClient::start(raw, "admin-ss").await;
    admin
        .call(&command(&[b"SET", b"rooms/a/door", b"open"]), &[])
        .await;
    watcher.notification().await;
    // A GET under room a, remembered for retransmission.
    let ts = gatehouse_tests::state_store::ts_now();
    let get = command(&[b"GET", b"rooms/a/door"]);
    let (id, correlation) = watcher.send(&get, &[("__ts", ts.as_str())]).await;
    let answer = watcher.await_response(id, &correlation).await;
    assert_eq!(&answer.payload[..], b"$4\r\nopen\r\n");

    // Re-authenticate into room b: Read on rooms/a/* is gone.
    let mut auth = vec![0x19];
    Props::new()
        .str(0x15, "token")
        .bin(0x16, b"room-b")
        .encode(&mut auth);
    watcher
        .raw
        .send(&gatehouse_tests::raw::frame(0xF0, &auth))
        .await;
    match watcher.raw.expect_packet().await {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    admin
        .call(&command(&[b"SET", b"rooms/a/door", b"closed"]), &[])
        .await;
    watcher.no_notification(QUIET).await;
    // Retransmitting the GET (DUP, same packet id and correlation data) runs it again under
    // room b instead of handing back the answer room a was given.
    let retransmit = Packet::Publish(gatehouse_protocol::Publish {
        dup: true,
        qos: gatehouse_protocol::QoS::AtLeastOnce,
        retain: false,
        topic: gatehouse_tests::state_store::REQUEST_TOPIC.to_owned(),
        packet_id: gatehouse_protocol::PacketId::new(id),
        properties: gatehouse_protocol::PublishProperties {
            response_topic: Some(watcher.response_topic.clone()),
            correlation_data: Some(correlation.clone()),
            content_type: Some("application/octet-stream".into()),
            user_properties: vec![("__ts".into(), gatehouse_tests::state_store::ts_now())],
            ..Default::default()
        },
        payload: get.clone().into(),
    });
    watcher.raw.send_packet(&retransmit).await;
    let again = watcher.await_response(id, &correlation).await;
    assert_eq!(&again.payload[..], b"-ERR not authorized\r\n");
}

/// One port whose chain `users` is a Custom method asking `server` (trusting `pki`'s
/// root), with the policy `rules` (YAML list items indented 8 spaces) when given.
fn custom_yaml(server: &ScriptedServer, pki: &Pki, rules: Option<&str>) -> String {
    let (authz_ref, authz) = match rules {
        Some(rules) => (
            "        authorizationRef: rooms\n",
            format!("authorizations:\n  - name: rooms\n    authorizationPolicies:\n      rules:\n{rules}"),
        ),
        None => ("", String::new()),
    };
    format!(
        "
listeners:
  - name: custom
    bindAddress: 127.0.0.1
    ports:
      - port: 0
        authenticationRef: users
{authz_ref}authentications:
  - name: users
    authenticationMethods:
      - method: Custom
        customSettings:
          endpoint: \"{endpoint}\"
          caCertConfigMap: auth-ca
{authz}configMaps:
  auth-ca: {{ files: [{root}] }}
",
        endpoint = server.endpoint("/"),
        root = p(&pki.root_file()),
    )
}

/// `yaml` (one port with `authenticationRef: users`) with TLS on that port: a server
/// certificate for `localhost` from `pki`.
fn with_tls(yaml: &str, pki: &Pki) -> String {
    let (crt, key) = pki.write_server(&pki.server(EC), "server");
    format!(
        "{}secrets:\n  server-cert: {{ certFile: {}, keyFile: {} }}\n",
        yaml.replacen(
            "        authenticationRef: users",
            "        tls: { mode: Manual, manual: { secretRef: server-cert } }\n        authenticationRef: users",
            1,
        ),
        p(&crt),
        p(&key)
    )
}

/// A TLS connection to the broker's first MQTT port, trusting `pki`'s root.
async fn tls_client(b: &TestBroker, pki: &Pki) -> RawClient {
    let tls = gatehouse_tests::tls::connect(&pki.root_file(), b.mqtt_addr().port(), "localhost")
        .await
        .expect("TLS handshake");
    RawClient::over(tls)
}

async fn scrape(b: &TestBroker) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.metrics_addr())
        .await
        .expect("metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}

/// Custom re-authentication names the user the connection is authenticated as, so the
/// authentication server decides for that user: credentials of another user (Bob's token
/// on Alice's connection) are refused instead of lending Bob's attributes to a connection
/// that keeps Alice's user name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_re_authentication_is_decided_for_the_connected_user() {
    use gatehouse_tests::raw::{frame, mqtt_str};
    let dir = TempDir::new("sec-reauth-user");
    let pki = Pki::new(dir.path(), EC);
    // A server that checks a token belongs to the user it is asked about.
    let server = ScriptedServer::start(&pki, None, |seen| {
        let user = seen.body["username"].as_str().unwrap_or_default();
        let data = seen.body["enhancedAuthentication"]["data"]
            .as_str()
            .unwrap_or_default();
        // base64 of "alice-token" / "bob-token"
        let owner = match data {
            "YWxpY2UtdG9rZW4=" => "alice",
            "Ym9iLXRva2Vu" => "bob",
            _ => "",
        };
        if !owner.is_empty() && owner == user {
            (200, r#"{"expiry": "2099-01-01T00:00:00Z"}"#.into())
        } else {
            (403, r#"{"reason": 135}"#.into())
        }
    })
    .await;
    let yaml = custom_yaml(&server, &pki, None);
    let b = TestBroker::start(&with_tls(&yaml, &pki)).await;
    // CONNECT v5 with user name, enhanced authentication method and data.
    let mut body = Vec::new();
    mqtt_str(&mut body, b"MQTT");
    body.push(5);
    body.push(0x80 | 0x02);
    body.extend(60u16.to_be_bytes());
    Props::new()
        .str(0x15, "token")
        .bin(0x16, b"alice-token")
        .encode(&mut body);
    mqtt_str(&mut body, b"alice-conn");
    mqtt_str(&mut body, b"alice");
    let mut client = tls_client(&b, &pki).await;
    client.send(&frame(0x10, &body)).await;
    client.expect_connack_ok().await;

    let reauth = |data: &[u8]| {
        let mut auth = vec![0x19];
        Props::new()
            .str(0x15, "token")
            .bin(0x16, data)
            .encode(&mut auth);
        frame(0xF0, &auth)
    };
    // Her own fresh token: accepted.
    client.send(&reauth(b"alice-token")).await;
    match client.expect_packet().await {
        Packet::Auth(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
        other => panic!("expected AUTH 0x00, got {other:?}"),
    }
    // Bob's token on Alice's connection: the server is asked about Alice and refuses.
    client.send(&reauth(b"bob-token")).await;
    client.expect_disconnect(0x87).await;
    let asked: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|s| s.body["type"] == "auth")
        .map(|s| s.body["username"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(asked, ["alice", "alice"]);
}
