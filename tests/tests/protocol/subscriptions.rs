//! SUBSCRIBE / UNSUBSCRIBE: subscription identifiers (MQTT 5 §3.8.2.1.2), No Local,
//! overlapping subscriptions (§3.3.4), invalid filters, UNSUBACK reason codes.

use gatehouse_protocol::{QoS, ReasonCode, SubscriptionOptions};
use gatehouse_tests::raw::*;

use crate::marker;

fn nl(no_local: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_subscriptions_give_one_copy_with_every_identifier() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("si-over").await;
    s.subscribe_with(1, "si/#", opts(0), Some(1)).await;
    s.subscribe_with(2, "si/+", opts(1), Some(2)).await;
    let mut publ = b.v5("si-over-pub").await;
    publ.publish_q1("si/x", b"both", false, 1).await;
    let p = s.expect_publish().await;
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort();
    assert_eq!(ids, [1, 2], "one copy carrying both identifiers");
    // The highest QoS of the matching subscriptions.
    assert_eq!(p.qos, QoS::AtLeastOnce);
    s.puback(p.packet_id.unwrap()).await;
    // Only one copy.
    marker(&mut publ, &mut s, "si/m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifier_on_the_wire() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("si-raw").await;
    // SUBSCRIBE 82 | 00 01 | props 02: 0B 96 01 (150) | "si/r" | 00
    let mut body = vec![0x00, 0x01, 0x03, 0x0B, 0x96, 0x01];
    mqtt_str(&mut body, b"si/r");
    body.push(0x00);
    s.send(&frame(0x82, &body)).await;
    s.expect_raw(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x00]).await;
    let mut publ = b.v5("si-raw-pub").await;
    publ.publish("si/r", b"p", 0, false, 0).await;
    // 30 0B | 00 04 si/r | 03 0B 96 01 | p
    s.expect_raw(&[
        0x30, 0x0B, 0x00, 0x04, b's', b'i', b'/', b'r', 0x03, 0x0B, 0x96, 0x01, b'p',
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identifier_means_none_in_the_publish() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("si-none").await;
    s.sub_ok(1, "si/none", 0).await;
    let mut other = b.v5("si-none-other").await;
    other.subscribe_with(1, "si/none", opts(0), Some(7)).await;
    let mut publ = b.v5("si-none-pub").await;
    publ.publish("si/none", b"x", 0, false, 0).await;
    let p = s.expect_publish().await;
    assert!(p.properties.subscription_identifiers.is_empty(), "{p:?}");
    // Identifiers belong to the subscriber: the other one gets only its own.
    let p = other.expect_publish().await;
    assert_eq!(p.properties.subscription_identifiers, [7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_replaces_the_identifier() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("si-re").await;
    s.subscribe_with(1, "si/re", opts(0), Some(5)).await;
    s.subscribe_with(2, "si/re", opts(0), Some(6)).await;
    let mut publ = b.v5("si-re-pub").await;
    publ.publish("si/re", b"x", 0, false, 0).await;
    let p = s.expect_publish().await;
    assert_eq!(p.properties.subscription_identifiers, [6]);
    s.subscribe_with(3, "si/re", opts(0), None).await;
    publ.publish("si/re", b"y", 0, false, 0).await;
    let p = s.expect_publish().await;
    assert!(p.properties.subscription_identifiers.is_empty());
    marker(&mut publ, &mut s, "si/re").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_suppresses_own_messages_only() {
    let b = ProtocolBroker::start().await;
    let mut me = b.v5("nl-me").await;
    me.subscribe_with(1, "nl/t", nl(true), None).await;
    me.subscribe_with(2, "nl/own", nl(false), None).await;
    me.publish("nl/t", b"mine", 0, false, 0).await;
    me.publish("nl/own", b"echo", 0, false, 0).await;
    // No Local 0: own message comes back; No Local 1: it does not (and came first).
    let p = me.expect_publish().await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("nl/own", &b"echo"[..]));
    // Other clients' messages do arrive on the No Local subscription.
    let mut other = b.v5("nl-other").await;
    other.publish("nl/t", b"theirs", 0, false, 0).await;
    let p = me.expect_publish().await;
    assert_eq!(&p.payload[..], b"theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_filters_get_0x8f_per_filter() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("sub-bad").await;
    // One SUBSCRIBE, four filters: ok, bad, bad, ok.
    let mut body = vec![0x00, 0x05, 0x00];
    for (f, o) in [("sb/ok", 1u8), ("sb/#/x", 0), ("sb/a+", 0), ("sb/+/ok", 2)] {
        mqtt_str(&mut body, f.as_bytes());
        body.push(o);
    }
    c.send(&frame(0x82, &body)).await;
    c.expect_raw(&[0x90, 0x07, 0x00, 0x05, 0x00, 0x01, 0x8F, 0x8F, 0x02])
        .await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_reason_codes_and_effect() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("unsub").await;
    c.sub_ok(1, "us/a", 0).await;
    c.sub_ok(2, "us/m", 0).await;
    // UNSUBSCRIBE a2 | 00 03 | 00 | us/a | us/none
    let mut body = vec![0x00, 0x03, 0x00];
    mqtt_str(&mut body, b"us/a");
    mqtt_str(&mut body, b"us/none");
    c.send(&frame(0xA2, &body)).await;
    // UNSUBACK b0 05 | 00 03 | 00 | 00 11
    c.expect_raw(&[0xB0, 0x05, 0x00, 0x03, 0x00, 0x00, 0x11])
        .await;
    let mut publ = b.v5("unsub-pub").await;
    publ.publish("us/a", b"x", 0, false, 0).await;
    publ.ping().await;
    marker(&mut publ, &mut c, "us/m").await;
    let ack = c.unsubscribe(4, "us/a").await;
    assert_eq!(ack.reason_codes, [ReasonCode::NO_SUBSCRIPTION_EXISTED]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_matching() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("wild").await;
    c.sub_ok(1, "wm/+/b", 0).await;
    c.sub_ok(2, "wm/x/#", 0).await;
    let mut publ = b.v5("wild-pub").await;
    for t in ["wm/a/b", "wm/a/c", "wm/x", "wm/x/y/z", "wm//b", "wm/a/b/c"] {
        publ.publish(t, t.as_bytes(), 0, false, 0).await;
    }
    for t in ["wm/a/b", "wm/x", "wm/x/y/z", "wm//b"] {
        assert_eq!(c.expect_publish().await.topic, t);
    }
    marker(&mut publ, &mut c, "wm/m/b").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn largest_subscription_identifier_round_trips() {
    let b = ProtocolBroker::start().await;
    let mut s = b.v5("si-max").await;
    s.subscribe_with(1, "si/max", opts(0), Some(268_435_455))
        .await;
    let mut publ = b.v5("si-max-pub").await;
    publ.publish("si/max", b"x", 0, false, 0).await;
    // 30 0F | 00 06 si/max | 05 0B FF FF FF 7F | x
    s.expect_raw(&[
        0x30, 0x0F, 0x00, 0x06, b's', b'i', b'/', b'm', b'a', b'x', 0x05, 0x0B, 0xFF, 0xFF, 0xFF,
        0x7F, b'x',
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_levels_are_levels() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("wild-empty").await;
    c.sub_ok(1, "+/we", 0).await;
    let mut publ = b.v5("wild-empty-pub").await;
    publ.publish("/we", b"1", 0, false, 0).await; // first level empty: matches +/we
    publ.publish("we", b"2", 0, false, 0).await; // one level: does not
    publ.publish("x/we/", b"3", 0, false, 0).await; // three levels: does not
    assert_eq!(c.expect_publish().await.topic, "/we");
    marker(&mut publ, &mut c, "m/we").await;
}
