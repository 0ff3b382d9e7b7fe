//! Resending unacknowledged messages when a session resumes (MQTT 5 §4.4).

use gatehouse_protocol::{Packet, QoS};
use gatehouse_tests::raw::*;

use crate::marker;

/// Reconnect `id` with clean start 0 and expect CONNACK with session present 1
/// (checked on the raw bytes).
async fn resume(b: &ProtocolBroker, id: &str) -> RawClient {
    let builder = ConnectBuilder::new(id)
        .clean_start(false)
        .session_expiry(60);
    let (c, present) = b.connect_session(builder).await;
    assert_eq!(present, 0x01, "CONNACK with session present 1");
    c
}

async fn persistent(b: &ProtocolBroker, id: &str) -> RawClient {
    b.v5_with(ConnectBuilder::new(id).session_expiry(60))
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_qos1_is_resent_with_dup_and_the_same_packet_id() {
    let b = ProtocolBroker::start().await;
    let mut sub = persistent(&b, "rd-q1").await;
    sub.sub_ok(1, "rd/q1", 1).await;
    let mut publ = b.v5("rd-q1-pub").await;
    publ.publish_q1("rd/q1", b"again", false, 1).await;
    let first = sub.expect_publish().await;
    assert!(!first.dup);
    drop(sub); // no PUBACK, connection simply gone

    let mut sub = resume(&b, "rd-q1").await;
    let raw = sub.recv_raw(WAIT).await.expect("resent PUBLISH");
    assert_eq!(raw[0], 0x3A, "QoS 1 with DUP=1: {raw:02X?}");
    let Packet::Publish(again) = sub.decode(&raw) else {
        panic!("{raw:02X?}")
    };
    assert_eq!(again.packet_id, first.packet_id, "same packet identifier");
    assert_eq!(
        (again.topic.as_str(), &again.payload[..]),
        ("rd/q1", &b"again"[..])
    );
    assert_eq!(again.qos, QoS::AtLeastOnce);
    sub.puback(again.packet_id.unwrap()).await;
    sub.ping().await;
    drop(sub);

    // Acknowledged now: the next resume resends nothing.
    let mut sub = resume(&b, "rd-q1").await;
    marker(&mut publ, &mut sub, "rd/q1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_before_pubrec_is_resent_as_publish_and_after_pubrec_as_pubrel() {
    let b = ProtocolBroker::start().await;
    let mut sub = persistent(&b, "rd-q2").await;
    sub.sub_ok(1, "rd/q2", 2).await;
    let mut publ = b.v5("rd-q2-pub").await;
    publ.publish_q2("rd/q2", b"first", false, 1).await;
    publ.publish_q2("rd/q2", b"second", false, 2).await;
    let a = sub.expect_publish().await;
    let c = sub.expect_publish().await;
    assert_eq!(
        (&a.payload[..], &c.payload[..]),
        (&b"first"[..], &b"second"[..])
    );
    // PUBREC the first only, and receive its PUBREL.
    let [h, l] = a.packet_id.unwrap().get().to_be_bytes();
    sub.send(&[0x50, 0x02, h, l]).await;
    sub.expect_raw(&[0x62, 0x02, h, l]).await;
    sub.send(&[0xE0, 0x00]).await; // normal disconnect, session kept (expiry 60)
    sub.expect_closed(WAIT).await;

    let mut sub = resume(&b, "rd-q2").await;
    // The first is at PUBREL stage: the PUBREL is resent, not the PUBLISH.
    sub.expect_raw(&[0x62, 0x02, h, l]).await;
    // The second was never acknowledged: PUBLISH again with DUP=1, same id.
    let raw = sub.recv_raw(WAIT).await.expect("resent PUBLISH");
    assert_eq!(raw[0], 0x3C, "QoS 2 with DUP=1: {raw:02X?}");
    let Packet::Publish(again) = sub.decode(&raw) else {
        panic!("{raw:02X?}")
    };
    assert_eq!(again.packet_id, c.packet_id);
    assert_eq!(&again.payload[..], b"second");
    // Finish both flows.
    sub.send(&[0x70, 0x02, h, l]).await;
    let [h2, l2] = again.packet_id.unwrap().get().to_be_bytes();
    sub.send(&[0x50, 0x02, h2, l2]).await;
    sub.expect_raw(&[0x62, 0x02, h2, l2]).await;
    sub.send(&[0x70, 0x02, h2, l2]).await;
    marker(&mut publ, &mut sub, "rd/q2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_offline_are_delivered_on_resume() {
    let b = ProtocolBroker::start().await;
    let mut sub = persistent(&b, "rd-off").await;
    sub.sub_ok(1, "rd/off", 2).await;
    sub.disconnect().await;
    let mut publ = b.v5("rd-off-pub").await;
    publ.publish_q1("rd/off", b"q1", false, 1).await;
    publ.publish_q2("rd/off", b"q2", false, 2).await;
    let mut sub = resume(&b, "rd-off").await;
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.qos, &p.payload[..], p.dup),
        (QoS::AtLeastOnce, &b"q1"[..], false)
    );
    sub.puback(p.packet_id.unwrap()).await;
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.qos, &p.payload[..], p.dup),
        (QoS::ExactlyOnce, &b"q2"[..], false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_qos2_state_survives_a_reconnect() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("rd-in-sub").await;
    sub.sub_ok(1, "rd/in", 0).await;
    let mut c = persistent(&b, "rd-in").await;
    c.send(&publish_bytes(
        0x04,
        b"rd/in",
        Some(77),
        Some(&Props::new()),
        b"once",
    ))
    .await;
    c.expect_raw(&[0x50, 0x02, 0x00, 0x4D]).await;
    drop(c); // PUBREC received, PUBREL never sent
    assert_eq!(&sub.expect_publish().await.payload[..], b"once");

    // The client resumes, retransmits the PUBLISH with DUP=1, then PUBREL.
    let mut c = resume(&b, "rd-in").await;
    c.send(&publish_bytes(
        0x0C,
        b"rd/in",
        Some(77),
        Some(&Props::new()),
        b"once",
    ))
    .await;
    c.expect_raw(&[0x50, 0x02, 0x00, 0x4D]).await;
    c.send(&[0x62, 0x02, 0x00, 0x4D]).await;
    // The broker still knew the id: PUBCOMP success, not 0x92.
    c.expect_raw(&[0x70, 0x02, 0x00, 0x4D]).await;
    // And the retransmission was not delivered a second time.
    marker(&mut c, &mut sub, "rd/in").await;
}
