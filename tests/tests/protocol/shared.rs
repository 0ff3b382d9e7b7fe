//! Shared subscriptions (MQTT 5 §4.8.2).

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_protocol::{QoS, ReasonCode, SubscriptionOptions};
use gatehouse_tests::raw::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_group_members_each_get_some_and_together_all_messages_once() {
    let b = ProtocolBroker::start().await;
    let mut m1 = b.v5("sh-m1").await;
    m1.sub_ok(1, "$share/g/sh/t", 1).await;
    let mut m2 = b.v5("sh-m2").await;
    m2.sub_ok(1, "$share/g/sh/t", 1).await;
    let mut publ = b.v5("sh-pub").await;
    const N: u16 = 10;
    for i in 1..=N {
        publ.publish_q1("sh/t", format!("{i}").as_bytes(), false, i)
            .await;
    }
    let mut per_member = [Vec::new(), Vec::new()];
    for (k, m) in [&mut m1, &mut m2].into_iter().enumerate() {
        while let Some(p) = m.recv(Duration::from_millis(300)).await {
            let gatehouse_protocol::Packet::Publish(p) = p else {
                panic!("expected PUBLISH, got {p:?}")
            };
            m.puback(p.packet_id.unwrap()).await;
            per_member[k].push(String::from_utf8(p.payload.to_vec()).unwrap());
        }
    }
    let [a, c] = &per_member;
    assert!(
        !a.is_empty() && !c.is_empty(),
        "both members get messages: {a:?} / {c:?}"
    );
    assert_eq!(
        a.len() + c.len(),
        N as usize,
        "every message exactly once: {a:?} / {c:?}"
    );
    let all: BTreeSet<u16> = a.iter().chain(c).map(|s| s.parse().unwrap()).collect();
    assert_eq!(all, (1..=N).collect(), "no duplicates, none missing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_shared_filters_get_0x8f() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("sh-bad").await;
    for (i, filter) in [
        "$share/g",
        "$share//t",
        "$share/g+/t",
        "$share/g#/t",
        "$share/g/",
    ]
    .into_iter()
    .enumerate()
    {
        let ack = c.subscribe(1 + i as u16, filter, 0).await;
        assert_eq!(ack.reason_codes, [ReasonCode(0x8F)], "SUBACK for {filter}");
    }
    // The connection stays usable.
    c.sub_ok(10, "$share/ok/sh/bad", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_for_malformed_shared_filter_raw_bytes() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("sh-bad-raw").await;
    // SUBSCRIBE 82 | 00 07 | 00 | "$share/g" | 01
    let mut body = vec![0x00, 0x07, 0x00];
    mqtt_str(&mut body, b"$share/g");
    body.push(0x01);
    c.send(&frame(0x82, &body)).await;
    // SUBACK 90 04 | 00 07 | 00 (no properties) | 8F
    c.expect_raw(&[0x90, 0x04, 0x00, 0x07, 0x00, 0x8F]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("sh-nl").await;
    c.send_packet(&gatehouse_protocol::Packet::Subscribe(
        gatehouse_protocol::Subscribe {
            packet_id: pid(1),
            subscription_identifier: None,
            user_properties: Vec::new(),
            filters: vec![(
                "$share/g/sh/nl".into(),
                SubscriptionOptions {
                    qos: QoS::AtMostOnce,
                    no_local: true,
                    ..Default::default()
                },
            )],
        },
    ))
    .await;
    c.expect_disconnect(0x82).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_and_plain_subscribers_each_get_a_copy() {
    let b = ProtocolBroker::start().await;
    let mut shared = b.v5("sh-both-s").await;
    shared.sub_ok(1, "$share/g/sh/both", 0).await;
    let mut plain = b.v5("sh-both-p").await;
    plain.sub_ok(1, "sh/both", 0).await;
    let mut publ = b.v5("sh-both-pub").await;
    publ.publish("sh/both", b"x", 0, false, 0).await;
    assert_eq!(&shared.expect_publish().await.payload[..], b"x");
    assert_eq!(&plain.expect_publish().await.payload[..], b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_groups_each_get_every_message() {
    let b = ProtocolBroker::start().await;
    let mut g1 = b.v5("sh-g1").await;
    g1.sub_ok(1, "$share/g1/sh/groups", 0).await;
    let mut g2 = b.v5("sh-g2").await;
    g2.sub_ok(1, "$share/g2/sh/groups", 0).await;
    let mut publ = b.v5("sh-groups-pub").await;
    for i in 0..3u8 {
        publ.publish("sh/groups", &[i], 0, false, 0).await;
    }
    for g in [&mut g1, &mut g2] {
        for i in 0..3u8 {
            assert_eq!(&g.expect_publish().await.payload[..], [i]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_member_no_longer_gets_shared_messages() {
    let b = ProtocolBroker::start().await;
    let mut m1 = b.v5("sh-un-1").await;
    m1.sub_ok(1, "$share/g/sh/un", 0).await;
    let mut m2 = b.v5("sh-un-2").await;
    m2.sub_ok(1, "$share/g/sh/un", 0).await;
    let ack = m2.unsubscribe(2, "$share/g/sh/un").await;
    assert_eq!(ack.reason_codes, [ReasonCode::SUCCESS]);
    let mut publ = b.v5("sh-un-pub").await;
    for i in 0..4u8 {
        publ.publish("sh/un", &[i], 0, false, 0).await;
    }
    for i in 0..4u8 {
        assert_eq!(&m1.expect_publish().await.payload[..], [i]);
    }
    m2.expect_nothing(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remaining_member_gets_everything_after_another_leaves() {
    let b = ProtocolBroker::start().await;
    let mut m1 = b.v5("sh-left-1").await;
    m1.sub_ok(1, "$share/g/sh/left", 0).await;
    let mut m2 = b.v5("sh-left-2").await;
    m2.sub_ok(1, "$share/g/sh/left", 0).await;
    m2.disconnect().await; // session expiry 0: the session and its subscription end
    let mut publ = b.v5("sh-left-pub").await;
    for i in 0..4u8 {
        publ.publish("sh/left", &[i], 0, false, 0).await;
    }
    for i in 0..4u8 {
        assert_eq!(&m1.expect_publish().await.payload[..], [i]);
    }
}
