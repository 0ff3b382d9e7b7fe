//! Will messages (MQTT 5 §3.1.2.5, §3.1.3.2): when they are published, delayed,
//! cancelled, and what they carry.

use std::time::{Duration, Instant};

use bytes::Bytes;
use gatehouse_protocol::QoS;
use gatehouse_tests::raw::*;
use gatehouse_tests::wait;

use crate::marker;

async fn watcher(b: &ProtocolBroker, name: &str, topic: &str) -> RawClient {
    let mut w = b.v5(name).await;
    w.sub_ok(1, topic, 1).await;
    w
}

fn will(topic: &str) -> WillSpec {
    WillSpec {
        qos: 1,
        ..WillSpec::new(topic, b"last words")
    }
}

async fn expect_will(w: &mut RawClient, topic: &str) {
    let p = w.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        (topic, &b"last words"[..])
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    w.puback(p.packet_id.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_connection_drops() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-drop-w", "wl/drop").await;
    let (c, _) = b
        .v5_with(ConnectBuilder::new("wl-drop").will(will("wl/drop")))
        .await;
    drop(c);
    expect_will(&mut w, "wl/drop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_will_after_normal_disconnect() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-norm-w", "wl/norm").await;
    let (c, _) = b
        .v5_with(ConnectBuilder::new("wl-norm").will(will("wl/norm")))
        .await;
    c.disconnect().await;
    let mut p = b.v5("wl-norm-p").await;
    marker(&mut p, &mut w, "wl/norm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_after_disconnect_0x04() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-04-w", "wl/04").await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("wl-04").will(will("wl/04")))
        .await;
    c.send(&[0xE0, 0x01, 0x04]).await;
    c.expect_closed(WAIT).await;
    expect_will(&mut w, "wl/04").await;
}

/// MQTT 5 §3.1.2.5 / [MQTT-3.1.2-8]: the will is published unless it was deleted on
/// receipt of a DISCONNECT with reason 0x00; [MQTT-3.14.4-3] only 0x00 discards it. A
/// client that disconnects with an error reason (here 0x80, unspecified error) did not
/// disconnect normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_after_disconnect_with_an_error_reason() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-80-w", "wl/80").await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("wl-80").will(will("wl/80")))
        .await;
    c.send(&[0xE0, 0x01, 0x80]).await;
    c.expect_closed(WAIT).await;
    expect_will(&mut w, "wl/80").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_server_closes_for_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-pe-w", "wl/pe").await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("wl-pe").will(will("wl/pe")))
        .await;
    c.send(&[0xF0, 0x00]).await;
    c.expect_disconnect(0x82).await;
    expect_will(&mut w, "wl/pe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_on_takeover_without_delay() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-to-w", "wl/to").await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("wl-to").will(will("wl/to")))
        .await;
    let (_c2, _) = b.v5_with(ConnectBuilder::new("wl-to")).await;
    c.expect_disconnect(0x8E).await;
    expect_will(&mut w, "wl/to").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_delay_interval_postpones_the_will() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-dl-w", "wl/dl").await;
    let spec = WillSpec {
        props: Props::new().u32(prop::WILL_DELAY_INTERVAL, 2),
        ..will("wl/dl")
    };
    let (c, _) = b
        .v5_with(ConnectBuilder::new("wl-dl").session_expiry(30).will(spec))
        .await;
    let start = Instant::now();
    drop(c);
    expect_will(&mut w, "wl/dl").await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took <= Duration::from_millis(3000),
        "will delay 2 s: published after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_within_the_will_delay_cancels_the_will() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-cx-w", "wl/cx").await;
    let spec = WillSpec {
        props: Props::new().u32(prop::WILL_DELAY_INTERVAL, 1),
        ..will("wl/cx")
    };
    let (c, _) = b
        .v5_with(ConnectBuilder::new("wl-cx").session_expiry(30).will(spec))
        .await;
    drop(c);
    // Reconnect once the broker has seen the connection end (the will delay started).
    wait::until(Duration::from_secs(5), "the broker saw wl-cx leave", || {
        b.broker.server.open_connections() == 1
    })
    .await;
    let (mut c, ack) = b
        .v5_with(
            ConnectBuilder::new("wl-cx")
                .clean_start(false)
                .session_expiry(30),
        )
        .await;
    assert!(ack.session_present);
    // Past the delay: still no will.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut p = b.v5("wl-cx-p").await;
    marker(&mut p, &mut w, "wl/cx").await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_is_published_when_the_session_ends_before_the_delay() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-se-w", "wl/se").await;
    let spec = WillSpec {
        props: Props::new().u32(prop::WILL_DELAY_INTERVAL, 30),
        ..will("wl/se")
    };
    let (c, _) = b
        .v5_with(ConnectBuilder::new("wl-se").session_expiry(1).will(spec))
        .await;
    let start = Instant::now();
    drop(c);
    expect_will(&mut w, "wl/se").await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_millis(2500),
        "session expiry 1 s ends the session (and the delay): will after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_properties_are_passed_through() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-pp-w", "wl/pp").await;
    let spec = WillSpec {
        props: Props::new()
            .byte(prop::PAYLOAD_FORMAT_INDICATOR, 1)
            .u32(prop::MESSAGE_EXPIRY_INTERVAL, 100)
            .str(prop::CONTENT_TYPE, "text/plain")
            .str(prop::RESPONSE_TOPIC, "wl/reply")
            .bin(prop::CORRELATION_DATA, &[0, 1, 0xFF])
            .pair("k1", "v1")
            .pair("k0", "v0")
            .pair("k1", "v2"),
        ..will("wl/pp")
    };
    let (c, _) = b.v5_with(ConnectBuilder::new("wl-pp").will(spec)).await;
    drop(c);
    let p = w.expect_publish().await;
    let props = &p.properties;
    assert_eq!(props.payload_format_indicator, Some(1));
    assert_eq!(props.content_type.as_deref(), Some("text/plain"));
    assert_eq!(props.response_topic.as_deref(), Some("wl/reply"));
    assert_eq!(
        props.correlation_data,
        Some(Bytes::from_static(&[0, 1, 0xFF]))
    );
    assert_eq!(
        props.user_properties,
        [
            ("k1".to_string(), "v1".to_string()),
            ("k0".to_string(), "v0".to_string()),
            ("k1".to_string(), "v2".to_string()),
        ]
    );
    let expiry = props
        .message_expiry_interval
        .expect("message expiry forwarded");
    assert!((99..=100).contains(&expiry), "message expiry {expiry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_retain_stores_the_will_as_retained() {
    let b = ProtocolBroker::start().await;
    let mut w = b.v5("wl-rt-w").await;
    w.subscribe_with(
        1,
        "wl/rt",
        gatehouse_protocol::SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            retain_as_published: true,
            ..Default::default()
        },
        None,
    )
    .await;
    let spec = WillSpec {
        retain: true,
        ..will("wl/rt")
    };
    let (c, _) = b.v5_with(ConnectBuilder::new("wl-rt").will(spec)).await;
    drop(c);
    let p = w.expect_publish().await;
    assert!(p.retain, "RETAIN as published");
    // A later subscriber gets it as a retained message.
    let mut late = b.v5("wl-rt-late").await;
    late.sub_ok(1, "wl/rt", 1).await;
    let p = late.expect_publish().await;
    assert_eq!((p.retain, &p.payload[..]), (true, &b"last words"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn will_delay_does_not_outlive_a_session_without_expiry() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-z-w", "wl/z").await;
    let spec = WillSpec {
        props: Props::new().u32(prop::WILL_DELAY_INTERVAL, 30),
        ..will("wl/z")
    };
    // Session Expiry 0: the session ends with the connection, and the will goes with it.
    let (c, _) = b.v5_with(ConnectBuilder::new("wl-z").will(spec)).await;
    let start = Instant::now();
    drop(c);
    expect_will(&mut w, "wl/z").await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_resuming_the_session_within_the_will_delay_cancels_the_will() {
    let b = ProtocolBroker::start().await;
    let mut w = watcher(&b, "wl-tod-w", "wl/tod").await;
    let spec = WillSpec {
        props: Props::new().u32(prop::WILL_DELAY_INTERVAL, 1),
        ..will("wl/tod")
    };
    let (mut first, _) = b
        .v5_with(ConnectBuilder::new("wl-tod").session_expiry(30).will(spec))
        .await;
    let (mut second, ack) = b
        .v5_with(
            ConnectBuilder::new("wl-tod")
                .clean_start(false)
                .session_expiry(30),
        )
        .await;
    assert!(ack.session_present);
    first.expect_disconnect(0x8E).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut p = b.v5("wl-tod-p").await;
    marker(&mut p, &mut w, "wl/tod").await;
    second.ping().await;
}
