//! Flow control (MQTT 5 §4.9) and Maximum Packet Size (§3.1.2.11.4) in both directions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_protocol::Packet;
use gatehouse_tests::raw::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receive_maximum_bounds_unacknowledged_qos1_deliveries() {
    let b = ProtocolBroker::start().await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("fc-rm-sub").receive_maximum(2))
        .await;
    sub.sub_ok(1, "fc/rm", 1).await;
    let mut publ = b.v5("fc-rm-pub").await;
    for i in 1..=3u16 {
        publ.publish_q1("fc/rm", format!("m{i}").as_bytes(), false, i)
            .await;
    }
    let p1 = sub.expect_publish().await;
    let p2 = sub.expect_publish().await;
    assert_eq!((&p1.payload[..], &p2.payload[..]), (&b"m1"[..], &b"m2"[..]));
    // Two in flight: the third waits for an acknowledgement.
    sub.expect_nothing(QUIET).await;
    sub.puback(p1.packet_id.unwrap()).await;
    let p3 = sub.expect_publish().await;
    assert_eq!(&p3.payload[..], b"m3");
    assert_ne!(p3.packet_id, p2.packet_id);
    // QoS 0 is not subject to the window.
    publ.publish("fc/rm", b"q0", 0, false, 0).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"q0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_receive_maximum_also_bounds_qos2_until_pubcomp() {
    let b = ProtocolBroker::start().await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("fc-rm2-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "fc/rm2", 2).await;
    let mut publ = b.v5("fc-rm2-pub").await;
    publ.publish_q2("fc/rm2", b"a", false, 1).await;
    publ.publish_q2("fc/rm2", b"b", false, 2).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"a");
    let [h, l] = p.packet_id.unwrap().get().to_be_bytes();
    sub.send(&[0x50, 0x02, h, l]).await; // PUBREC
    sub.expect_raw(&[0x62, 0x02, h, l]).await; // PUBREL
                                               // Still in flight until PUBCOMP (§4.9: the quota returns at PUBCOMP).
    sub.expect_nothing(QUIET).await;
    sub.send(&[0x70, 0x02, h, l]).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_server_receive_maximum_gets_0x93() {
    let b = ProtocolBroker::with_limits("maxReceiveMaximum: 2").await;
    let (mut c, ack) = b.v5_with(ConnectBuilder::new("fc-srm")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    let q2 = |id: u16| publish_bytes(0x04, b"fc/srm", Some(id), Some(&Props::new()), b"x");
    c.send(&q2(1)).await;
    c.expect_raw(&[0x50, 0x02, 0x00, 0x01]).await;
    c.send(&q2(2)).await;
    c.expect_raw(&[0x50, 0x02, 0x00, 0x02]).await;
    // Completing one frees a slot.
    c.send(&[0x62, 0x02, 0x00, 0x01]).await;
    c.expect_raw(&[0x70, 0x02, 0x00, 0x01]).await;
    c.send(&q2(3)).await;
    c.expect_raw(&[0x50, 0x02, 0x00, 0x03]).await;
    // Ids 2 and 3 unacknowledged: a third exceeds Receive Maximum 2.
    c.send(&q2(4)).await;
    c.expect_disconnect(0x93).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_above_the_client_maximum_packet_size_are_not_sent() {
    let b = ProtocolBroker::start().await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("fc-mps-sub").maximum_packet_size(64))
        .await;
    sub.sub_ok(1, "fc/mps", 1).await;
    let mut publ = b.v5("fc-mps-pub").await;
    publ.publish("fc/mps", &[b'x'; 100], 0, false, 0).await;
    publ.publish_q1("fc/mps", &[b'y'; 100], false, 1).await;
    publ.publish("fc/mps", b"small", 0, false, 0).await;
    publ.publish_q1("fc/mps", b"small1", false, 2).await;
    // Exactly 64 bytes: 2 + (2+6) + 2 (packet id) + 1 (props) + 51.
    publ.publish_q1("fc/mps", &[b'z'; 51], false, 3).await;
    // 65 bytes: too large.
    publ.publish_q1("fc/mps", &[b'w'; 52], false, 4).await;
    publ.publish("fc/mps", b"end", 0, false, 0).await;
    let mut got = Vec::new();
    loop {
        let raw = sub.recv_raw(WAIT).await.expect("a PUBLISH");
        assert!(
            raw.len() <= 64,
            "sent a {}-byte packet to a client with Maximum Packet Size 64",
            raw.len()
        );
        let gatehouse_protocol::Packet::Publish(p) = sub.decode(&raw) else {
            panic!("expected PUBLISH: {raw:02X?}")
        };
        if let Some(id) = p.packet_id {
            sub.puback(id).await;
        }
        if &p.payload[..] == b"end" {
            break;
        }
        got.push(p.payload.to_vec());
    }
    assert_eq!(got, [b"small".to_vec(), b"small1".to_vec(), vec![b'z'; 51]]);
}

/// A subscriber that stops acknowledging makes its queue reach `subscriberQueueLimit`:
/// the broker then holds the publisher's PUBACKs (and so, through the publisher's own
/// Receive Maximum, its sending) instead of dropping acknowledged QoS 1 messages. Once the
/// subscriber catches up, every message arrives in order and every PUBACK follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_congested_subscriber_holds_publisher_acks_and_loses_nothing() {
    const N: u16 = 12;
    let b =
        ProtocolBroker::with_limits("subscriberQueueLimit: { length: 3 }, maxReceiveMaximum: 2")
            .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("fc-bp-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "fc/bp", 1).await;
    let (mut publ, ack) = b.v5_with(ConnectBuilder::new("fc-bp-pub")).await;
    assert_eq!(ack.properties.receive_maximum, Some(2));
    let acked = Arc::new(AtomicUsize::new(0));
    // The publisher keeps the broker's Receive Maximum (2) of PUBLISHes unacknowledged.
    let publisher = tokio::spawn({
        let acked = acked.clone();
        async move {
            let mut order = Vec::new();
            let mut sent = 0u16;
            while order.len() < usize::from(N) {
                if sent < N && usize::from(sent) - order.len() < 2 {
                    sent += 1;
                    publ.publish("fc/bp", format!("m{sent}").as_bytes(), 1, false, sent)
                        .await;
                    continue;
                }
                match publ.recv(Duration::from_secs(20)).await {
                    Some(Packet::PubAck(a)) => order.push(a.packet_id.get()),
                    other => panic!("publisher got {other:?}"),
                }
                acked.store(order.len(), Ordering::SeqCst);
            }
            order
        }
    });
    // One in flight plus three queued, then the hold: a publisher that got through
    // would mean the queue limit was ignored or messages dropped behind its back.
    tokio::time::sleep(QUIET * 2).await;
    let early = acked.load(Ordering::SeqCst);
    assert!(
        early <= 4,
        "{early} PUBACKs went out while the subscriber was congested"
    );
    // The subscriber catches up, acknowledging one at a time.
    for i in 1..=N {
        let p = sub.expect_publish().await;
        assert_eq!(
            p.payload,
            format!("m{i}").as_bytes(),
            "message {i} in order"
        );
        sub.puback(p.packet_id.unwrap()).await;
    }
    sub.expect_nothing(QUIET).await;
    // Every PUBACK arrives, in PUBLISH order (MQTT 5 §4.6).
    let order = publisher.await.expect("publisher task");
    assert_eq!(order, (1..=N).collect::<Vec<_>>());
}

/// A subscriber that stops reading altogether must not stall its publishers for ever:
/// after the 5 s hold limit it counts as stuck, the held PUBACKs go out, and its queue
/// overflows under the strategy (bounded) instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_stops_holding_publishers_after_the_hold_limit() {
    const N: u16 = 12;
    let b =
        ProtocolBroker::with_limits("subscriberQueueLimit: { length: 3 }, maxReceiveMaximum: 2")
            .await;
    let (mut sub, _) = b
        .v5_with(ConnectBuilder::new("fc-stuck-sub").receive_maximum(1))
        .await;
    sub.sub_ok(1, "fc/stuck", 1).await;
    let (mut publ, _) = b.v5_with(ConnectBuilder::new("fc-stuck-pub")).await;
    let started = std::time::Instant::now();
    let mut order = Vec::new();
    let mut sent = 0u16;
    let mut acked_at_2s = None;
    while order.len() < usize::from(N) {
        if sent < N && usize::from(sent) - order.len() < 2 {
            sent += 1;
            publ.publish("fc/stuck", b"x", 1, false, sent).await;
            continue;
        }
        match publ.recv(Duration::from_secs(10)).await {
            Some(Packet::PubAck(a)) => order.push(a.packet_id.get()),
            other => panic!("publisher got {other:?} after {:?}", started.elapsed()),
        }
        if acked_at_2s.is_none() && started.elapsed() >= Duration::from_secs(2) {
            acked_at_2s = Some(order.len());
        }
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "the publisher was not held back ({took:?})"
    );
    assert!(took < Duration::from_secs(9), "held for {took:?}");
    assert!(
        acked_at_2s.is_some_and(|n| n <= 5),
        "acked by 2 s: {acked_at_2s:?}"
    );
    assert_eq!(order, (1..=N).collect::<Vec<_>>());
}
