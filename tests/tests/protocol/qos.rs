//! QoS 0/1/2 flows in both directions (MQTT 5 §4.3), downgrade to the subscription's
//! QoS, duplicate QoS 2 PUBLISHes and unknown packet identifiers.

use gatehouse_protocol::{Packet, QoS};
use gatehouse_tests::raw::*;

use crate::marker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_is_forwarded_byte_for_byte() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q0-sub").await;
    sub.sub_ok(1, "q0/t", 0).await;
    let mut publ = b.v5("q0-pub").await;
    publ.send(&publish_bytes(0, b"q0/t", None, Some(&Props::new()), b"hi"))
        .await;
    // 30 09 | 00 04 q0/t | 00 (no properties) | hi
    sub.expect_raw(&[
        0x30, 0x09, 0x00, 0x04, b'q', b'0', b'/', b't', 0x00, b'h', b'i',
    ])
    .await;
    // No acknowledgement for QoS 0.
    publ.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_both_directions() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q1-sub").await;
    sub.sub_ok(1, "q1/t", 1).await;
    let mut publ = b.v5("q1-pub").await;
    publ.send(&publish_bytes(
        0x02,
        b"q1/t",
        Some(7),
        Some(&Props::new()),
        b"one",
    ))
    .await;
    publ.expect_raw(&[0x40, 0x02, 0x00, 0x07]).await;

    let raw = sub.recv_raw(WAIT).await.expect("PUBLISH");
    assert_eq!(raw[0], 0x32, "QoS 1, DUP 0, RETAIN 0: {raw:02X?}");
    let p = match sub.decode(&raw) {
        Packet::Publish(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("q1/t", &b"one"[..]));
    let id = p.packet_id.expect("QoS 1 has a packet id");
    sub.send(&puback_bytes(id.get())).await;
    // Acknowledged: never sent again.
    marker(&mut publ, &mut sub, "q1/t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_full_flow_both_directions() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q2-sub").await;
    sub.sub_ok(1, "q2/t", 2).await;
    let mut publ = b.v5("q2-pub").await;

    // Client → server: PUBLISH, PUBREC, PUBREL, PUBCOMP.
    publ.send(&publish_bytes(
        0x04,
        b"q2/t",
        Some(9),
        Some(&Props::new()),
        b"two",
    ))
    .await;
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x09]).await;
    publ.send(&[0x62, 0x02, 0x00, 0x09]).await;
    publ.expect_raw(&[0x70, 0x02, 0x00, 0x09]).await;

    // Server → client.
    let raw = sub.recv_raw(WAIT).await.expect("PUBLISH");
    assert_eq!(raw[0], 0x34, "QoS 2, DUP 0, RETAIN 0: {raw:02X?}");
    let Packet::Publish(p) = sub.decode(&raw) else {
        panic!("{raw:02X?}")
    };
    assert_eq!(&p.payload[..], b"two");
    let [h, l] = p.packet_id.unwrap().get().to_be_bytes();
    sub.send(&[0x50, 0x02, h, l]).await; // PUBREC
    sub.expect_raw(&[0x62, 0x02, h, l]).await; // PUBREL
    sub.send(&[0x70, 0x02, h, l]).await; // PUBCOMP
    marker(&mut publ, &mut sub, "q2/t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_qos_is_the_minimum_of_publish_and_subscription() {
    let b = ProtocolBroker::start().await;
    let mut s0 = b.v5("qd-s0").await;
    s0.sub_ok(1, "qd/t", 0).await;
    let mut s1 = b.v5("qd-s1").await;
    s1.sub_ok(1, "qd/t", 1).await;
    let mut s2 = b.v5("qd-s2").await;
    s2.sub_ok(1, "qd/t", 2).await;
    let mut publ = b.v5("qd-pub").await;

    publ.publish("qd/t", b"at2", 2, false, 1).await;
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x01]).await;
    publ.send(&[0x62, 0x02, 0x00, 0x01]).await;
    publ.expect_raw(&[0x70, 0x02, 0x00, 0x01]).await;
    publ.publish("qd/t", b"at1", 1, false, 2).await;
    publ.expect_raw(&puback_bytes(2)).await;

    let p = s0.expect_publish().await;
    assert_eq!(
        (p.qos, p.packet_id, &p.payload[..]),
        (QoS::AtMostOnce, None, &b"at2"[..])
    );
    let p = s0.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &b"at1"[..]));

    let p = s1.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"at2"[..]));
    s1.puback(p.packet_id.unwrap()).await;
    let p = s1.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"at1"[..]));
    s1.puback(p.packet_id.unwrap()).await;

    let p = s2.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"at2"[..]));
    // Never upgraded: a QoS 1 message stays QoS 1 for a QoS 2 subscription.
    let p2 = s2.expect_publish().await;
    assert_eq!((p2.qos, &p2.payload[..]), (QoS::AtLeastOnce, &b"at1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_retransmitted_publish_before_pubrel_is_delivered_once() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("qdup-sub").await;
    sub.sub_ok(1, "qdup/t", 0).await;
    let mut publ = b.v5("qdup-pub").await;
    let first = publish_bytes(0x04, b"qdup/t", Some(5), Some(&Props::new()), b"once");
    let again = publish_bytes(0x0C, b"qdup/t", Some(5), Some(&Props::new()), b"once");
    publ.send(&first).await;
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x05]).await;
    publ.send(&again).await; // DUP=1, same id
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x05]).await;
    publ.send(&[0x62, 0x02, 0x00, 0x05]).await;
    publ.expect_raw(&[0x70, 0x02, 0x00, 0x05]).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"once");
    // Exactly one copy: the marker comes next.
    marker(&mut publ, &mut sub, "qdup/t").await;

    // After PUBCOMP the id is free again: the same id is a new message.
    publ.send(&publish_bytes(
        0x04,
        b"qdup/t",
        Some(5),
        Some(&Props::new()),
        b"twice",
    ))
    .await;
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x05]).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrel_for_unknown_id_gets_pubcomp_0x92() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("q-pubrel").await;
    c.send(&[0x62, 0x02, 0x00, 0x2A]).await;
    c.expect_raw(&[0x70, 0x03, 0x00, 0x2A, 0x92]).await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrec_for_unknown_id_gets_pubrel_0x92() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("q-pubrec").await;
    c.send(&[0x50, 0x02, 0x00, 0x2B]).await;
    c.expect_raw(&[0x62, 0x03, 0x00, 0x2B, 0x92]).await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubrec_with_error_reason_ends_the_qos2_flow() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q-recerr-sub").await;
    sub.sub_ok(1, "qre/t", 2).await;
    let mut publ = b.v5("q-recerr-pub").await;
    publ.publish("qre/t", b"x", 1, false, 1).await;
    publ.expect_raw(&puback_bytes(1)).await;
    let p = sub.expect_publish().await;
    let [h, l] = p.packet_id.unwrap().get().to_be_bytes();
    // PUBREC 0x80: the receiver refuses; no PUBREL follows (§4.3.3).
    sub.send(&[0x50, 0x03, h, l, 0x80]).await;
    marker(&mut publ, &mut sub, "qre/t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payload_round_trip() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q-big-sub").await;
    sub.sub_ok(1, "q/big", 1).await;
    let mut publ = b.v5("q-big-pub").await;
    let payload: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    publ.publish_q1("q/big", &payload, false, 1).await;
    let p = sub.expect_publish().await;
    assert!(p.payload[..] == payload[..], "600 kB payload intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_qos1_messages_arrive_in_order() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("q-order-sub").await;
    sub.sub_ok(1, "q/order", 1).await;
    let mut publ = b.v5("q-order-pub").await;
    const N: u16 = 500;
    // Pipelined: every PUBLISH first, then the PUBACKs.
    let mut bytes = Vec::new();
    for i in 1..=N {
        bytes.extend(publish_bytes(
            0x02,
            b"q/order",
            Some(i),
            Some(&Props::new()),
            &i.to_be_bytes(),
        ));
    }
    publ.send(&bytes).await;
    for i in 1..=N {
        publ.expect_raw(&puback_bytes(i)).await;
    }
    for i in 1..=N {
        let p = sub.expect_publish().await;
        assert_eq!(&p.payload[..], i.to_be_bytes(), "message {i} in order");
        sub.puback(p.packet_id.unwrap()).await;
    }
}
