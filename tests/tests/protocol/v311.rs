//! MQTT 3.1.1: CONNACK return codes, SUBACK/UNSUBACK layouts, QoS flows, and v5
//! messages delivered to 3.1.1 subscribers without properties.

use gatehouse_protocol::PublishProperties;
use gatehouse_tests::raw::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_session_present_with_clean_session_0() {
    let b = ProtocolBroker::start().await;
    let mut c = b
        .sending(&ConnectBuilder::v311("v3-sp").clean_start(false).build())
        .await;
    c.expect_raw(&[0x20, 0x02, 0x00, 0x00]).await;
    c.send(&[0xE0, 0x00]).await;
    c.expect_closed(WAIT).await;

    let mut c = b
        .sending(&ConnectBuilder::v311("v3-sp").clean_start(false).build())
        .await;
    c.expect_raw(&[0x20, 0x02, 0x01, 0x00]).await;
    c.send(&[0xE0, 0x00]).await;
    c.expect_closed(WAIT).await;

    // Clean session 1: the stored session is discarded, session present 0.
    let mut c = b.sending(&ConnectBuilder::v311("v3-sp").build()).await;
    c.expect_raw(&[0x20, 0x02, 0x00, 0x00]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_connect_refusals_use_return_codes() {
    let b = ProtocolBroker::start().await;
    // Identifier rejected (2): empty id with clean session 0.
    let mut c = b
        .sending(&ConnectBuilder::v311("").clean_start(false).build())
        .await;
    c.expect_raw(&[0x20, 0x02, 0x00, 0x02]).await;
    c.expect_closed(WAIT).await;
    // Reserved flag bit 0 set: malformed, closed without CONNACK.
    let mut bytes = ConnectBuilder::v311("v3-flag").build();
    bytes[9] |= 0x01; // 10 LL | 00 04 MQTT | 04 | flags
    let mut c = b.sending(&bytes).await;
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_return_codes_and_0x80_for_an_invalid_filter() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v311("v3-sub").await;
    // SUBSCRIBE 82 | 00 0A | v3/ok q1 | v3/#/bad q0 | v3/q2 q2   (no properties in 3.1.1)
    let mut body = vec![0x00, 0x0A];
    for (f, q) in [("v3/ok", 1u8), ("v3/#/bad", 0), ("v3/q2", 2)] {
        mqtt_str(&mut body, f.as_bytes());
        body.push(q);
    }
    c.send(&frame(0x82, &body)).await;
    c.expect_raw(&[0x90, 0x05, 0x00, 0x0A, 0x01, 0x80, 0x02])
        .await;
    c.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsuback_has_no_payload() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v311("v3-unsub").await;
    c.send(&frame(
        0x82,
        &[0x00, 0x01, 0x00, 0x04, b'v', b'3', b'/', b'u', 0x00],
    ))
    .await;
    c.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x00]).await;
    c.send(&frame(
        0xA2,
        &[0x00, 0x02, 0x00, 0x04, b'v', b'3', b'/', b'u'],
    ))
    .await;
    c.expect_raw(&[0xB0, 0x02, 0x00, 0x02]).await;
    // Unsubscribing a filter that was never subscribed: same UNSUBACK.
    c.send(&frame(
        0xA2,
        &[0x00, 0x03, 0x00, 0x04, b'v', b'3', b'/', b'n'],
    ))
    .await;
    c.expect_raw(&[0xB0, 0x02, 0x00, 0x03]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_and_qos2_flows() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v311("v3-q-sub").await;
    sub.send(&frame(
        0x82,
        &[0x00, 0x01, 0x00, 0x04, b'v', b'3', b'/', b'q', 0x02],
    ))
    .await;
    sub.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x02]).await;
    let mut publ = b.v311("v3-q-pub").await;

    // QoS 1: PUBLISH → PUBACK 40 02 id.
    publ.send(&publish_bytes(0x02, b"v3/q", Some(0x11), None, b"one"))
        .await;
    publ.expect_raw(&[0x40, 0x02, 0x00, 0x11]).await;
    let raw = sub.recv_raw(WAIT).await.expect("PUBLISH");
    // 32 0B | 00 04 v3/q | id id | one  (no properties)
    assert_eq!(raw.len(), 13, "{raw:02X?}");
    assert_eq!(&raw[..8], [0x32, 0x0B, 0x00, 0x04, b'v', b'3', b'/', b'q']);
    assert_eq!(&raw[10..], b"one");
    sub.send(&[0x40, 0x02, raw[8], raw[9]]).await;

    // QoS 2: PUBLISH → PUBREC, PUBREL → PUBCOMP.
    publ.send(&publish_bytes(0x04, b"v3/q", Some(0x12), None, b"two"))
        .await;
    publ.expect_raw(&[0x50, 0x02, 0x00, 0x12]).await;
    publ.send(&[0x62, 0x02, 0x00, 0x12]).await;
    publ.expect_raw(&[0x70, 0x02, 0x00, 0x12]).await;
    let raw = sub.recv_raw(WAIT).await.expect("PUBLISH");
    assert_eq!(&raw[..8], [0x34, 0x0B, 0x00, 0x04, b'v', b'3', b'/', b'q']);
    assert_eq!(&raw[10..], b"two");
    let (h, l) = (raw[8], raw[9]);
    sub.send(&[0x50, 0x02, h, l]).await;
    sub.expect_raw(&[0x62, 0x02, h, l]).await;
    sub.send(&[0x70, 0x02, h, l]).await;
    sub.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v5_message_reaches_a_v311_subscriber_without_properties() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v311("v3-x-sub").await;
    sub.send(&frame(
        0x82,
        &[0x00, 0x01, 0x00, 0x04, b'v', b'3', b'/', b'x', 0x00],
    ))
    .await;
    sub.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x00]).await;
    let mut publ = b.v5("v3-x-pub").await;
    let props = PublishProperties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), "v".into())],
        message_expiry_interval: Some(100),
        ..Default::default()
    };
    publ.publish_props("v3/x", b"hi", 0, false, 0, props).await;
    sub.expect_raw(&[0x30, 0x08, 0x00, 0x04, b'v', b'3', b'/', b'x', b'h', b'i'])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_protocol_violation_closes_without_disconnect() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v311("v3-bad").await;
    c.send(&publish_bytes(0x06, b"v3/bad", Some(1), None, b"x"))
        .await; // QoS 3
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_will_on_abrupt_close() {
    let b = ProtocolBroker::start().await;
    let mut w = b.v311("v3-will-w").await;
    w.send(&frame(
        0x82,
        &[0x00, 0x01, 0x00, 0x04, b'v', b'3', b'/', b'w', 0x00],
    ))
    .await;
    w.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x00]).await;
    let mut c = b
        .sending(
            &ConnectBuilder::v311("v3-will")
                .will(WillSpec::new("v3/w", b"bye"))
                .build(),
        )
        .await;
    c.expect_raw(&[0x20, 0x02, 0x00, 0x00]).await;
    drop(c);
    w.expect_raw(&[
        0x30, 0x09, 0x00, 0x04, b'v', b'3', b'/', b'w', b'b', b'y', b'e',
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_unacknowledged_qos1_is_resent_with_dup_after_reconnect() {
    let b = ProtocolBroker::start().await;
    let connect = ConnectBuilder::v311("v3-rd").clean_start(false).build();
    let mut sub = b.client().await;
    sub.version = gatehouse_protocol::ProtocolVersion::V311;
    sub.send(&connect).await;
    sub.expect_raw(&[0x20, 0x02, 0x00, 0x00]).await;
    sub.send(&frame(
        0x82,
        &[0x00, 0x01, 0x00, 0x05, b'v', b'3', b'/', b'r', b'd', 0x01],
    ))
    .await;
    sub.expect_raw(&[0x90, 0x03, 0x00, 0x01, 0x01]).await;
    let mut publ = b.v311("v3-rd-pub").await;
    publ.send(&publish_bytes(0x02, b"v3/rd", Some(1), None, b"m"))
        .await;
    publ.expect_raw(&[0x40, 0x02, 0x00, 0x01]).await;
    let first = sub.recv_raw(WAIT).await.expect("PUBLISH");
    assert_eq!(first[0], 0x32);
    drop(sub);

    let mut sub = b.sending(&connect).await;
    sub.expect_raw(&[0x20, 0x02, 0x01, 0x00]).await;
    let again = sub.recv_raw(WAIT).await.expect("resent PUBLISH");
    assert_eq!(again[0], 0x3A, "DUP=1: {again:02X?}");
    assert_eq!(
        &again[1..],
        &first[1..],
        "same packet id, topic and payload"
    );
}
