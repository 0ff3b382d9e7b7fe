//! Retained messages (MQTT 5 §3.3.1.3) and the subscription options that govern them
//! (Retain Handling, Retain As Published, §3.8.3.1).

use std::time::Duration;

use gatehouse_protocol::{PublishProperties, QoS, SubscriptionOptions};
use gatehouse_tests::raw::*;

use crate::marker;

fn rh(retain_handling: u8, retain_as_published: bool) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_handling,
        retain_as_published,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_is_set_replaced_and_cleared() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rt-pub").await;
    publ.publish_q1("rt/a", b"v1", true, 1).await;
    publ.publish_q1("rt/a", b"v2", true, 2).await;

    let mut s1 = b.v5("rt-s1").await;
    s1.sub_ok(1, "rt/a", 0).await;
    let raw = s1.recv_raw(WAIT).await.expect("retained PUBLISH");
    assert_eq!(raw[0], 0x31, "QoS 0 with RETAIN=1: {raw:02X?}");
    let gatehouse_protocol::Packet::Publish(p) = s1.decode(&raw) else {
        panic!()
    };
    assert_eq!(
        &p.payload[..],
        b"v2",
        "the latest retained message replaces the first"
    );

    // An empty retained PUBLISH clears it, and is itself forwarded to subscribers.
    publ.publish_q1("rt/a", b"", true, 3).await;
    let p = s1.expect_publish().await;
    assert!(p.payload.is_empty());
    let mut s2 = b.v5("rt-s2").await;
    s2.sub_ok(1, "rt/a", 0).await;
    s2.sub_ok(2, "rt/marker", 0).await;
    marker(&mut publ, &mut s2, "rt/marker").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_match_wildcard_filters() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rtw-pub").await;
    for t in ["rtw/a", "rtw/b", "rtw/a/deep", "rtx/a"] {
        publ.publish_q1(t, t.as_bytes(), true, 1).await;
    }
    let mut s = b.v5("rtw-sub").await;
    s.sub_ok(1, "rtw/+", 0).await;
    let mut got = vec![
        s.expect_publish().await.topic,
        s.expect_publish().await.topic,
    ];
    got.sort();
    assert_eq!(got, ["rtw/a", "rtw/b"]);
    s.sub_ok(2, "rtw/m", 0).await;
    marker(&mut publ, &mut s, "rtw/m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_qos_is_capped_by_the_subscription() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rtq-pub").await;
    publ.publish_q2("rtq/a", b"q2", true, 1).await;
    let mut s = b.v5("rtq-sub").await;
    s.sub_ok(1, "rtq/a", 1).await;
    let p = s.expect_publish().await;
    assert_eq!(
        (p.qos, p.retain, &p.payload[..]),
        (QoS::AtLeastOnce, true, &b"q2"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_handling_0_1_2() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rh-pub").await;
    publ.publish_q1("rh/t", b"kept", true, 1).await;
    let mut s = b.v5("rh-sub").await;
    s.sub_ok(9, "rh/m", 0).await;

    // 0: at every subscribe, including a repeat of the same filter.
    for i in 0..2 {
        s.subscribe_with(1 + i, "rh/t", rh(0, false), None).await;
        let p = s.expect_publish().await;
        assert_eq!((p.retain, &p.payload[..]), (true, &b"kept"[..]));
        s.puback(p.packet_id.unwrap()).await;
    }
    s.unsubscribe(3, "rh/t").await;

    // 1: only when the subscription is new.
    s.subscribe_with(4, "rh/t", rh(1, false), None).await;
    let p = s.expect_publish().await;
    assert_eq!(&p.payload[..], b"kept");
    s.puback(p.packet_id.unwrap()).await;
    s.subscribe_with(5, "rh/t", rh(1, false), None).await;
    marker(&mut publ, &mut s, "rh/m").await;
    s.unsubscribe(6, "rh/t").await;

    // 2: never.
    s.subscribe_with(7, "rh/t", rh(2, false), None).await;
    marker(&mut publ, &mut s, "rh/m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_as_published_for_live_messages() {
    let b = ProtocolBroker::start().await;
    let mut plain = b.v5("rap-0").await;
    plain.subscribe_with(1, "rap/t", rh(0, false), None).await;
    let mut rap = b.v5("rap-1").await;
    rap.subscribe_with(1, "rap/t", rh(0, true), None).await;
    let mut publ = b.v5("rap-pub").await;
    publ.publish_q1("rap/t", b"r", true, 1).await;
    publ.publish_q1("rap/t", b"n", false, 2).await;

    let p = plain.expect_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain),
        (&b"r"[..], false),
        "RAP 0 clears RETAIN"
    );
    let p = plain.expect_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"n"[..], false));
    let p = rap.expect_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain),
        (&b"r"[..], true),
        "RAP 1 keeps RETAIN"
    );
    let p = rap.expect_publish().await;
    assert_eq!((&p.payload[..], p.retain), (&b"n"[..], false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_sent_on_subscribe_have_retain_set_whatever_rap() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rts-pub").await;
    publ.publish_q1("rts/t", b"r", true, 1).await;
    for (i, rap) in [false, true].into_iter().enumerate() {
        let mut s = b.v5(&format!("rts-{i}")).await;
        s.subscribe_with(1, "rts/t", rh(0, rap), None).await;
        let p = s.expect_publish().await;
        assert!(p.retain, "RETAIN=1 on subscribe (RAP {rap})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_not_sent_to_shared_subscriptions() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rtsh-pub").await;
    publ.publish_q1("rtsh/t", b"r", true, 1).await;
    let mut s = b.v5("rtsh-sub").await;
    s.sub_ok(1, "$share/g/rtsh/t", 1).await;
    s.sub_ok(2, "rtsh/m", 0).await;
    marker(&mut publ, &mut s, "rtsh/m").await;
    // Live messages do reach the shared subscription.
    publ.publish("rtsh/t", b"live", 0, false, 0).await;
    assert_eq!(&s.expect_publish().await.payload[..], b"live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_expires() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rte-pub").await;
    let props = PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    publ.publish_props("rte/t", b"short", 1, true, 1, props)
        .await;
    publ.expect_raw(&puback_bytes(1)).await;
    let mut s = b.v5("rte-s1").await;
    s.sub_ok(1, "rte/t", 0).await;
    let p = s.expect_publish().await;
    assert_eq!(p.properties.message_expiry_interval, Some(1));
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut s = b.v5("rte-s2").await;
    s.sub_ok(1, "rte/t", 0).await;
    s.sub_ok(2, "rte/m", 0).await;
    marker(&mut publ, &mut s, "rte/m").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_retained_publish_leaves_the_retained_message_alone() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rtn-pub").await;
    publ.publish_q1("rtn/t", b"kept", true, 1).await;
    publ.publish_q1("rtn/t", b"live", false, 2).await;
    publ.publish_q1("rtn/t", b"", false, 3).await; // empty but not retained: no clear
    let mut s = b.v5("rtn-sub").await;
    s.sub_ok(1, "rtn/t", 0).await;
    assert_eq!(&s.expect_publish().await.payload[..], b"kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_message_carries_the_subscription_identifier() {
    let b = ProtocolBroker::start().await;
    let mut publ = b.v5("rti-pub").await;
    publ.publish_q1("rti/t", b"r", true, 1).await;
    let mut s = b.v5("rti-sub").await;
    s.subscribe_with(1, "rti/+", opts(0), Some(42)).await;
    let p = s.expect_publish().await;
    assert_eq!(p.properties.subscription_identifiers, [42]);
}
