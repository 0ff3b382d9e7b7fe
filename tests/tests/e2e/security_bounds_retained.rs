//! Issue 13: retained messages on subscribe are paced by the subscriber's flow control
//! instead of being cut at its queue length, and the bounds a client could push without
//! limit: subscriptions per client (`maxSubscriptionsPerClient`) and the retained store
//! (`maxRetainedMessages`, `maxRetainedBytes`). Real sockets, raw MQTT clients (v5 and
//! 3.1.1), reason codes checked on the bytes. The retained burst and the subscription cap
//! also run over a TLS port with X.509 client certificates made in the test
//! (`bounds_transport`), and the burst also to `mosquitto_sub` over TLS.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gatehouse_protocol::{Packet, PubResp, QoS, ReasonCode, SubscriptionOptions};
use gatehouse_tests::mosquitto::Sub;
use gatehouse_tests::raw::*;

use crate::bounds_transport::{BoundsBroker, Transport};

/// More retained messages than the default subscriber queue length (1000).
const RETAINED: usize = 1500;

fn retained_topic(i: usize) -> String {
    format!("fleet/{:02}/dev{i:04}", i % 37)
}

/// Publish [`RETAINED`] retained messages at `qos` (0 or 1), in windows of 100 under the
/// broker's Receive Maximum, and make sure the broker has handled them all.
async fn publish_retained(b: &BoundsBroker, qos: u8) {
    let mut publ = b.v5("ret-publisher").await;
    for chunk in (0..RETAINED).collect::<Vec<_>>().chunks(100) {
        for &i in chunk {
            let id = u16::try_from(i % 60_000 + 1).expect("packet id");
            publ.publish(
                &retained_topic(i),
                format!("v{i}").as_bytes(),
                qos,
                true,
                id,
            )
            .await;
        }
        if qos == 1 {
            for _ in chunk {
                match publ.expect_packet().await {
                    Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        }
    }
    publ.ping().await;
    assert_eq!(b.broker.server.broker.router.retained_count(), RETAINED);
}

/// Read PUBLISHes until `retained` retained ones and `live` live ones have arrived (each
/// QoS 1 one acknowledged at once); panics if the flow stops first. Returns the retained
/// topics seen and the live payloads, and whether a live message came while retained
/// ones were still due.
async fn collect(
    sub: &mut RawClient,
    retained: usize,
    live: usize,
) -> (BTreeSet<String>, BTreeSet<Vec<u8>>, bool) {
    let (mut topics, mut payloads) = (BTreeSet::new(), BTreeSet::new());
    let mut duplicates = 0;
    let mut interleaved = false;
    while topics.len() < retained || payloads.len() < live {
        let p = match sub.recv(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) => p,
            Some(other) => panic!("expected PUBLISH, got {other:?}"),
            None => panic!(
                "the flow stopped after {} of {retained} retained and {} of {live} live messages",
                topics.len(),
                payloads.len()
            ),
        };
        if let Some(id) = p.packet_id {
            sub.puback(id).await;
        }
        let fresh = if p.retain {
            topics.insert(p.topic.clone())
        } else {
            interleaved |= topics.len() < retained;
            payloads.insert(p.payload.to_vec())
        };
        duplicates += usize::from(!fresh);
    }
    assert_eq!(duplicates, 0, "no message came twice");
    (topics, payloads, interleaved)
}

fn every_retained_topic() -> BTreeSet<String> {
    (0..RETAINED).map(retained_topic).collect()
}

/// A new `#` subscriber used to get only the first 1000 (the queue length) of 1500
/// retained messages, the rest counted as queue-full drops.
async fn every_retained_message_reaches_a_new_v5_qos0_subscriber_over(t: Transport) {
    let b = BoundsBroker::start(t, "ret-q0", "").await;
    publish_retained(&b, 0).await;
    let mut sub = b.v5("ret-sub-q0").await;
    sub.sub_ok(1, "#", 0).await;
    let (topics, _, _) = collect(&mut sub, RETAINED, 0).await;
    assert_eq!(topics, every_retained_topic());
    sub.expect_nothing(QUIET).await;
    let stats = &b.broker.server.broker.router.stats;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "nothing dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_reaches_a_new_v5_qos0_subscriber() {
    every_retained_message_reaches_a_new_v5_qos0_subscriber_over(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_reaches_a_new_v5_qos0_subscriber_over_tls() {
    every_retained_message_reaches_a_new_v5_qos0_subscriber_over(Transport::Tls).await;
}

/// The same burst to a third-party client over TLS: `mosquitto_sub` presenting an X.509
/// certificate, v5 at QoS 1 (acknowledging at its own pace) and 3.1.1 at QoS 0, each told to stop after exactly 1500 messages (`-C`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_reaches_mosquitto_sub_over_tls() {
    let b = BoundsBroker::start(Transport::Tls, "ret-mosquitto", "").await;
    publish_retained(&b, 1).await;
    let x509 = b.x509.as_ref().expect("TLS");
    let count = RETAINED.to_string();
    for (version, qos) in [("mqttv5", "1"), ("mqttv311", "0")] {
        let mut args = x509.mosquitto_args();
        let id = format!("ret-mosq-{version}");
        args.extend(
            ["-V", version, "-q", qos, "-i", &id, "-t", "#", "-C", &count].map(String::from),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut sub = Sub::spawn_to("localhost", b.port(), &args);
        let messages = sub.next_messages(RETAINED).await;
        assert!(messages.iter().all(|m| m.retain), "{version}: retained");
        let topics: BTreeSet<String> = messages.into_iter().map(|m| m.topic).collect();
        assert_eq!(
            topics,
            every_retained_topic(),
            "{version}: every topic once"
        );
        let status = sub.exit().await;
        assert!(
            status.success(),
            "{version}: {status}\n{}",
            sub.transcript()
        );
    }
    let stats = &b.broker.server.broker.router.stats;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "nothing dropped");
}

/// QoS 1 with a Receive Maximum of 5 and a queue of 100: retained messages flow at the
/// client's pace, and QoS 1 messages published live during the burst are not lost.
async fn retained_burst_follows_receive_maximum_over(t: Transport) {
    const LIVE: usize = 300;
    let b = BoundsBroker::start(t, "ret-q1", "subscriberQueueLimit: { length: 100 }").await;
    publish_retained(&b, 1).await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("ret-sub-q1").receive_maximum(5))
        .await;
    sub.sub_ok(1, "#", 1).await;

    // A live publisher, QoS 1, while the retained messages are still being sent, with
    // 25 messages in flight (its acknowledgements are held while the subscriber's queue
    // is congested, which is what paces it).
    let mut live = b.v5("ret-live").await;
    let publisher = tokio::spawn(async move {
        for window in (0..LIVE).collect::<Vec<_>>().chunks(25) {
            for &i in window {
                let id = u16::try_from(i + 1).expect("packet id");
                live.publish(
                    &format!("live/{i}"),
                    format!("live-{i}").as_bytes(),
                    1,
                    false,
                    id,
                )
                .await;
            }
            for _ in window {
                match live.recv(Duration::from_secs(10)).await {
                    Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::SUCCESS),
                    other => panic!("expected PUBACK, got {other:?}"),
                }
            }
        }
    });
    let (topics, payloads, interleaved) = collect(&mut sub, RETAINED, LIVE).await;
    publisher.await.expect("live publisher");
    assert!(
        interleaved,
        "live messages flowed during the retained burst"
    );
    assert_eq!(topics, every_retained_topic());
    let expected: BTreeSet<Vec<u8>> = (0..LIVE)
        .map(|i| format!("live-{i}").into_bytes())
        .collect();
    assert_eq!(payloads, expected, "every live message arrived");
    sub.expect_nothing(QUIET).await;
    let stats = &b.broker.server.broker.router.stats;
    assert_eq!(stats.dropped.load(Ordering::Relaxed), 0, "nothing dropped");
    assert_eq!(stats.dropped_oldest.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_burst_follows_receive_maximum_without_losing_live_messages() {
    retained_burst_follows_receive_maximum_over(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_burst_follows_receive_maximum_without_losing_live_messages_over_tls() {
    retained_burst_follows_receive_maximum_over(Transport::Tls).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retained_message_reaches_a_new_v311_subscriber() {
    let b = BoundsBroker::start(Transport::Tcp, "ret-311", "").await;
    publish_retained(&b, 0).await;
    let mut sub = b.v311("ret-sub-311").await;
    sub.send(&v311_subscribe(1, "fleet/#", 1)).await;
    sub.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x01]).await;
    let (topics, _, _) = collect(&mut sub, RETAINED, 0).await;
    assert_eq!(topics, every_retained_topic());
    sub.expect_nothing(QUIET).await;
}

/// Subscription identifiers and the QoS cap apply to the paced retained messages; a
/// retained message cleared while a subscriber's walk is still owed it is not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_retained_messages_keep_subscription_options() {
    let b = BoundsBroker::start(Transport::Tcp, "ret-opts", "").await;
    publish_retained(&b, 1).await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("ret-sub-id").receive_maximum(1))
        .await;
    let ack = sub
        .subscribe_with(
            1,
            "fleet/00/#",
            SubscriptionOptions {
                qos: QoS::AtMostOnce,
                ..Default::default()
            },
            Some(42),
        )
        .await;
    assert_eq!(ack.reason_codes, [ReasonCode::SUCCESS]);
    let expected: Vec<String> = (0..RETAINED)
        .filter(|i| i % 37 == 0)
        .map(retained_topic)
        .collect();
    for t in &expected {
        let p = sub.expect_publish().await;
        assert_eq!(&p.topic, t, "in topic order");
        assert_eq!((p.qos, p.retain), (QoS::AtMostOnce, true));
        assert_eq!(p.properties.subscription_identifiers, [42]);
    }
    sub.expect_nothing(QUIET).await;
}

fn v311_subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    mqtt_str(&mut body, filter.as_bytes());
    body.push(qos);
    frame(0x82, &body)
}

fn subscribe_many(id: u16, filters: &[&str]) -> Packet {
    Packet::Subscribe(gatehouse_protocol::Subscribe {
        packet_id: pid(id),
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: filters.iter().map(|f| (f.to_string(), opts(1))).collect(),
    })
}

async fn suback_codes(c: &mut RawClient) -> Vec<u8> {
    match c.expect_packet().await {
        Packet::SubAck(s) => s.reason_codes.iter().map(|r| r.0).collect(),
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// No client can grow the subscription index without bound: past
/// `maxSubscriptionsPerClient` a filter gets 0x97 (3.1.1: 0x80) and is not subscribed;
/// re-subscribing a held filter does not count again; other clients are unaffected.
async fn subscriptions_past_the_per_client_cap_over(t: Transport) {
    let b = BoundsBroker::start(t, "sub-cap", "maxSubscriptionsPerClient: 3").await;
    let mut a = b.v5("cap-a").await;
    a.send_packet(&subscribe_many(1, &["cap/1", "cap/2"])).await;
    assert_eq!(suback_codes(&mut a).await, [1, 1]);
    // One more fits; a held filter again is a replacement; the rest are over the cap.
    a.send_packet(&subscribe_many(2, &["cap/2", "cap/3", "cap/4", "cap/#"]))
        .await;
    assert_eq!(suback_codes(&mut a).await, [1, 1, 0x97, 0x97]);
    a.send_packet(&subscribe_many(3, &["cap/1"])).await;
    assert_eq!(suback_codes(&mut a).await, [1]);

    // Nothing is delivered for a refused filter.
    let mut publ = b.v5("cap-pub").await;
    publ.publish_q1("cap/4", b"refused", false, 1).await;
    publ.publish_q1("cap/3", b"granted", false, 2).await;
    let p = a.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("cap/3", &b"granted"[..])
    );
    a.expect_nothing(QUIET).await;

    // Room again after an UNSUBSCRIBE.
    a.unsubscribe(4, "cap/1").await;
    a.send_packet(&subscribe_many(5, &["cap/4"])).await;
    assert_eq!(suback_codes(&mut a).await, [1]);

    // Other clients have their own budget.
    let mut other = b.v5("cap-b").await;
    other
        .send_packet(&subscribe_many(1, &["cap/1", "cap/2", "cap/3", "cap/5"]))
        .await;
    assert_eq!(suback_codes(&mut other).await, [1, 1, 1, 0x97]);

    // 3.1.1 has one failure code, 0x80.
    let mut old = b.v311("cap-311").await;
    for (id, filter) in [(1u16, "cap/1"), (2, "cap/2"), (3, "cap/3")] {
        old.send(&v311_subscribe(id, filter, 0)).await;
        old.expect_raw(&[0x90, 0x03, 0x00, id as u8, 0x00]).await;
    }
    old.send(&v311_subscribe(4, "cap/4", 0)).await;
    old.expect_raw(&[0x90, 0x03, 0x00, 0x04, 0x80]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_the_per_client_cap_get_quota_exceeded() {
    subscriptions_past_the_per_client_cap_over(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_past_the_per_client_cap_get_quota_exceeded_over_tls() {
    subscriptions_past_the_per_client_cap_over(Transport::Tls).await;
}

/// The retained store is bounded in count and bytes. A v5 QoS 1/2 retained PUBLISH past a
/// cap gets 0x97 and is neither retained nor routed; QoS 0 and 3.1.1 ones (which cannot
/// be told) are routed but not retained. Replacing a retained message with one no larger,
/// and clearing one, always work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_store_caps_refuse_new_topics_but_allow_replace_and_clear() {
    let b = ProtocolBroker::with_limits("maxRetainedMessages: 3, maxRetainedBytes: 100").await;
    let mut watcher = b.v5("rc-watch").await;
    watcher.sub_ok(1, "rc/#", 0).await;
    let mut publ = b.v5("rc-pub").await;
    for (id, t) in [(1u16, "rc/1"), (2, "rc/2"), (3, "rc/3")] {
        publ.publish_q1(t, b"0123456789", true, id).await; // 14 bytes each
        assert_eq!(watcher.expect_publish().await.topic, t);
    }

    // Count cap: a fourth topic is refused (v5 QoS 1 and QoS 2) and not routed.
    publ.publish("rc/4", b"x", 1, true, 4).await;
    publ.expect_raw(&[0x40, 0x03, 0x00, 0x04, 0x97]).await;
    publ.publish("rc/4", b"x", 2, true, 5).await;
    publ.expect_raw(&[0x50, 0x03, 0x00, 0x05, 0x97]).await;
    // The refused QoS 2 exchange is over: its packet id is unknown to a PUBREL.
    publ.send_packet(&Packet::PubRel(PubResp::new(pid(5), ReasonCode::SUCCESS)))
        .await;
    publ.expect_raw(&[0x70, 0x03, 0x00, 0x05, 0x92]).await;
    watcher.expect_nothing(QUIET).await;

    // QoS 0 over the cap: routed, not retained.
    publ.publish("rc/5", b"qos0", 0, true, 0).await;
    let p = watcher.expect_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("rc/5", &b"qos0"[..]));

    // 3.1.1 QoS 1 over the cap: acknowledged (3.1.1 has no code for it), routed, not retained.
    let mut old = b.v311("rc-311").await;
    old.send(&publish_bytes(0x03, b"rc/6", Some(7), None, b"v311"))
        .await;
    old.expect_raw(&[0x40, 0x02, 0x00, 0x07]).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/6");

    // Replacing in place (same size) works although the store is full.
    publ.publish_q1("rc/1", b"abcdefghij", true, 8).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/1");
    // Clearing works, and makes room.
    publ.publish_q1("rc/2", b"", true, 9).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/2");
    publ.publish_q1("rc/4", b"0123456789", true, 10).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/4");

    // Bytes cap (3 × 14 = 42 held): a replacement growing past 100 bytes is refused, a
    // smaller one is not.
    publ.publish("rc/3", &[b'y'; 70], 1, true, 11).await;
    publ.expect_raw(&[0x40, 0x03, 0x00, 0x0B, 0x97]).await;
    publ.publish_q1("rc/3", &[b'z'; 50], true, 12).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/3");
    publ.publish_q1("rc/3", b"small", true, 13).await;
    assert_eq!(watcher.expect_publish().await.topic, "rc/3");
    watcher.expect_nothing(QUIET).await;

    // What a new subscriber gets is exactly what was retained.
    let mut fresh = b.v5("rc-fresh").await;
    fresh.sub_ok(1, "rc/#", 0).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = fresh.expect_publish().await;
        got.push((p.topic, p.payload.to_vec()));
    }
    assert_eq!(
        got,
        [
            ("rc/1".to_string(), b"abcdefghij".to_vec()),
            ("rc/3".to_string(), b"small".to_vec()),
            ("rc/4".to_string(), b"0123456789".to_vec()),
        ]
    );
    fresh.expect_nothing(QUIET).await;
    assert_eq!(b.broker.server.broker.router.retained_count(), 3);
    assert_eq!(
        b.broker
            .server
            .broker
            .router
            .stats
            .retained_refused
            .load(Ordering::Relaxed),
        5
    );
    let metrics = scrape_metrics(&b).await;
    for line in [
        "gatehouse_retained_messages 3",
        "gatehouse_retained_bytes 37", // 14 + 9 + 14
        "gatehouse_retained_refused_total 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

/// `GET /metrics`, by hand.
async fn scrape_metrics(b: &ProtocolBroker) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(b.broker.metrics_addr())
        .await
        .expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    out
}

/// A reload applies the new bounds at once, to connections made before it too (they
/// announce nothing in CONNACK); what is held already is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloaded_bounds_apply_at_once() {
    let b =
        ProtocolBroker::with_limits("maxSubscriptionsPerClient: 5, maxRetainedMessages: 5").await;
    let mut c = b.v5("reload-subscriber").await;
    c.send_packet(&subscribe_many(1, &["rl/1", "rl/2"])).await;
    assert_eq!(suback_codes(&mut c).await, [1, 1]);
    let mut publ = b.v5("reload-publisher").await;
    publ.publish_q1("rr/1", b"a", true, 1).await;
    publ.publish_q1("rr/2", b"b", true, 2).await;

    // The same configuration as `with_limits` writes, with lower bounds.
    let yaml =
        "listeners:\n  - name: protocol\n    bindAddress: 127.0.0.1\n    ports: [ { port: 0 } ]\n\
                broker: { maxSubscriptionsPerClient: 2, maxRetainedMessages: 1 }\n\
                diagnostics: { metrics: { prometheusPort: 0 } }\n";
    let loaded = gatehouse_config::load_str(yaml, "reload.yaml").expect("valid");
    let done = b
        .broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload");
    assert!(done.limits);
    assert!(done.need_restart.is_empty(), "{:?}", done.need_restart);
    assert_eq!(done.disconnected, 0);

    c.send_packet(&subscribe_many(2, &["rl/1", "rl/3"])).await;
    assert_eq!(suback_codes(&mut c).await, [1, 0x97]);
    publ.publish("rr/3", b"c", 1, true, 3).await;
    publ.expect_raw(&[0x40, 0x03, 0x00, 0x03, 0x97]).await;
    // Held messages stay, and can still be replaced or cleared.
    publ.publish_q1("rr/1", b"z", true, 4).await;
    publ.publish_q1("rr/2", b"", true, 5).await;
    assert_eq!(b.broker.server.broker.router.retained_count(), 1);
    assert_eq!(
        b.broker.server.broker.router.retained_bytes(),
        "rr/1".len() + 1
    );
}

/// Retained messages restored from disk count against `maxRetainedMessages`: a restart
/// does not reset the budget (the real binary, killed with SIGKILL, then started again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_retained_messages_count_against_the_cap() {
    use gatehouse_tests::broker::{free_port, BrokerProcess, TempDir};
    let dir = TempDir::new("retained-cap-restore");
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
broker: {{ maxRetainedMessages: 2 }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
persistence:
  maxSize: 100M
  retain: {{ mode: All }}
",
            dir.path().join("data").display()
        ),
    );
    let connect = |id: &'static str| async move {
        let mut c = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
        c.send(&ConnectBuilder::new(id).build()).await;
        c.expect_connack_ok().await;
        c
    };
    let mut broker = BrokerProcess::start(&file, port).await;
    let mut publ = connect("restore-pub").await;
    publ.publish_q1("rs/1", b"one", true, 1).await;
    publ.publish_q1("rs/2", b"two", true, 2).await;
    broker.signal("KILL");
    broker.exit_within(Duration::from_secs(5)).await;

    let _broker = BrokerProcess::start(&file, port).await;
    let mut publ = connect("restore-pub").await;
    publ.publish("rs/3", b"three", 1, true, 3).await;
    publ.expect_raw(&[0x40, 0x03, 0x00, 0x03, 0x97]).await;
    publ.publish_q1("rs/2", b"", true, 4).await;
    publ.publish_q1("rs/3", b"three", true, 5).await;
    let mut sub = connect("restore-sub").await;
    sub.sub_ok(1, "rs/#", 0).await;
    let topics = [
        sub.expect_publish().await.topic,
        sub.expect_publish().await.topic,
    ];
    assert_eq!(topics, ["rs/1", "rs/3"]);
    sub.expect_nothing(QUIET).await;
}

/// The retained store's count cap against a client filling it, over TLS with an X.509
/// client certificate made in the test: a retained PUBLISH for a new topic past the cap
/// gets PUBACK 0x97 and is not routed; replacing and clearing still work; a new subscriber
/// sees exactly what was retained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_count_cap_holds_over_tls() {
    let b = BoundsBroker::start(Transport::Tls, "rc-tls", "maxRetainedMessages: 3").await;
    let mut watcher = b.v5("rct-watch").await;
    watcher.sub_ok(1, "rct/#", 0).await;
    let mut publ = b.v5("rct-pub").await;
    for (id, t) in [(1u16, "rct/1"), (2, "rct/2"), (3, "rct/3")] {
        publ.publish_q1(t, b"v", true, id).await;
        assert_eq!(watcher.expect_publish().await.topic, t);
    }
    for id in 4..10u16 {
        publ.publish(&format!("rct/new-{id}"), b"x", 1, true, id)
            .await;
        let [h, l] = id.to_be_bytes();
        publ.expect_raw(&[0x40, 0x03, h, l, 0x97]).await;
    }
    watcher.expect_nothing(QUIET).await;
    publ.publish_q1("rct/1", b"w", true, 10).await;
    assert_eq!(watcher.expect_publish().await.topic, "rct/1");
    let mut fresh = b.v5("rct-fresh").await;
    fresh.sub_ok(1, "rct/#", 0).await;
    let mut topics = Vec::new();
    for _ in 0..3 {
        topics.push(fresh.expect_publish().await.topic);
    }
    assert_eq!(topics, ["rct/1", "rct/2", "rct/3"]);
    fresh.expect_nothing(QUIET).await;
}
