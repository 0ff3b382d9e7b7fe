//! Encoder behaviour: errors, appending, the PUBLISH view, v3.1.1 down-conversion.

use bytes::Bytes;

use super::*;
use crate::codec::{encode_publish, EncodeError, PublishView, MAX_REMAINING_LENGTH};
use crate::packet::*;

fn view<'a>(topic: &'a str, props: &'a PublishProperties, payload: &'a [u8]) -> PublishView<'a> {
    PublishView {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic,
        packet_id: None,
        properties: props,
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &[],
        payload,
    }
}

#[test]
fn v3_publish_encodes_exactly() {
    let props = PublishProperties::default();
    let mut out = BytesMut::new();
    let n = encode_publish(&view("a/b", &props, b"hi"), V3, &mut out).expect("encodes");
    assert_eq!(n, 9);
    assert_eq!(
        &out[..],
        [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i']
    );
}

#[test]
fn v5_publish_without_properties_has_zero_property_length() {
    let props = PublishProperties::default();
    let mut out = BytesMut::new();
    let mut v = view("t", &props, b"x");
    v.qos = QoS::AtLeastOnce;
    v.packet_id = Some(pid(0x0102));
    v.retain = true;
    encode_publish(&v, V5, &mut out).expect("encodes");
    assert_eq!(
        &out[..],
        [0x33, 0x07, 0x00, 0x01, b't', 0x01, 0x02, 0x00, b'x']
    );
}

#[test]
fn encode_appends_to_existing_output() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let n = encode(&Packet::PingReq, V5, &mut out).expect("encodes");
    assert_eq!(n, 2);
    assert_eq!(&out[..], b"prefix\xC0\x00");
}

#[test]
fn encode_publish_matches_encode_of_the_same_publish() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let p = super::roundtrip::publish_v5(qos);
        for v in [V3, V5] {
            let via_packet = enc(&Packet::Publish(p.clone()), v);
            let mut out = BytesMut::new();
            let pv = PublishView {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                topic: &p.topic,
                packet_id: p.packet_id,
                properties: &p.properties,
                topic_alias: p.properties.topic_alias,
                message_expiry_interval: p.properties.message_expiry_interval,
                subscription_identifiers: &[],
                payload: &p.payload,
            };
            encode_publish(&pv, v, &mut out).expect("encodes");
            assert_eq!(&out[..], &via_packet[..]);
        }
    }
}

#[test]
fn publish_view_fields_override_the_message_properties() {
    let props = PublishProperties {
        topic_alias: Some(9),
        message_expiry_interval: Some(100),
        subscription_identifiers: vec![1, 2],
        user_properties: vec![("k".into(), "v".into())],
        ..Default::default()
    };
    let mut v = view("t", &props, b"x");
    v.message_expiry_interval = Some(40);
    v.subscription_identifiers = &[7];
    let mut out = BytesMut::new();
    encode_publish(&v, V5, &mut out).expect("encodes");
    let Ok(Some(Packet::Publish(p))) = decode_from_server(&mut out, V5, MAX) else {
        panic!("publish expected");
    };
    assert_eq!(p.properties.topic_alias, None);
    assert_eq!(p.properties.message_expiry_interval, Some(40));
    assert_eq!(p.properties.subscription_identifiers, vec![7]);
    assert_eq!(p.properties.user_properties, props.user_properties);
}

#[test]
fn dup_is_cleared_at_qos_0() {
    let props = PublishProperties::default();
    let mut v = view("t", &props, b"");
    v.dup = true;
    v.packet_id = Some(pid(1)); // ignored at QoS 0
    let mut out = BytesMut::new();
    encode_publish(&v, V3, &mut out).expect("encodes");
    assert_eq!(&out[..], [0x30, 0x03, 0x00, 0x01, b't']);
}

#[test]
fn v3_publish_drops_properties() {
    let p = super::roundtrip::publish_v5(QoS::AtLeastOnce);
    let bytes = enc(&Packet::Publish(p.clone()), V3);
    let Packet::Publish(back) = ok(&bytes, Some(V3)) else {
        panic!("publish expected");
    };
    assert_eq!(back.properties, PublishProperties::default());
    assert_eq!(back.payload, p.payload);
    assert_eq!(back.topic, p.topic);
}

#[test]
fn v3_subscribe_drops_v5_options() {
    let sub = Subscribe {
        packet_id: pid(1),
        subscription_identifier: Some(5),
        user_properties: vec![("k".into(), "v".into())],
        filters: vec![(
            "a".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
            },
        )],
    };
    assert_eq!(
        enc(&Packet::Subscribe(sub), V3),
        [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]
    );
}

#[test]
fn connack_maximum_qos_2_is_encoded_as_absent() {
    let ack = ConnAck {
        session_present: false,
        reason_code: crate::ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            maximum_qos: Some(QoS::ExactlyOnce),
            ..Default::default()
        },
    };
    assert_eq!(
        enc(&Packet::ConnAck(ack), V5),
        [0x20, 0x03, 0x00, 0x00, 0x00]
    );
}

#[test]
fn string_longer_than_65535_bytes_is_refused() {
    let long = "x".repeat(65_536);
    let props = PublishProperties::default();
    let mut out = BytesMut::from(&b"keep"[..]);
    assert_eq!(
        encode_publish(&view(&long, &props, b""), V5, &mut out),
        Err(EncodeError::StringTooLong(65_536))
    );
    assert_eq!(&out[..], b"keep", "nothing appended on error");

    let unsub = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(1),
        user_properties: vec![("k".into(), long.clone())],
        filters: vec!["a".into()],
    });
    assert_eq!(
        encode(&unsub, V5, &mut out),
        Err(EncodeError::StringTooLong(65_536))
    );
    assert_eq!(&out[..], b"keep");
    // 65535 bytes is still fine.
    let ok_len = "x".repeat(65_535);
    assert!(encode_publish(&view(&ok_len, &props, b""), V5, &mut out).is_ok());
}

#[test]
fn binary_longer_than_65535_bytes_is_refused() {
    let c = Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: Some("u".into()),
        password: Some(Bytes::from(vec![0u8; 70_000])),
        properties: Default::default(),
    };
    let mut out = BytesMut::new();
    assert_eq!(
        encode(&Packet::Connect(Box::new(c)), V5, &mut out),
        Err(EncodeError::StringTooLong(70_000))
    );
    assert!(out.is_empty());
}

#[test]
fn remaining_length_over_the_maximum_is_refused() {
    // Zeroed allocation: the pages are never touched since the size check comes first.
    let payload = vec![0u8; MAX_REMAINING_LENGTH as usize];
    let props = PublishProperties::default();
    let mut out = BytesMut::new();
    assert!(matches!(
        encode_publish(&view("t", &props, &payload), V3, &mut out),
        Err(EncodeError::TooLarge(_))
    ));
    assert!(out.is_empty());
    // Exactly the maximum Remaining Length is accepted by the size check: 2 + 1 + rest.
    let fits = &payload[..MAX_REMAINING_LENGTH as usize - 3];
    let mut counted = BytesMut::new();
    let n = encode_publish(&view("t", &props, fits), V3, &mut counted).expect("fits");
    assert_eq!(n, 1 + 4 + MAX_REMAINING_LENGTH as usize);
}

#[test]
fn subscription_identifier_over_the_maximum_is_refused() {
    let props = PublishProperties::default();
    let mut v = view("t", &props, b"");
    let ids = [MAX_REMAINING_LENGTH + 1];
    v.subscription_identifiers = &ids;
    let mut out = BytesMut::new();
    assert!(matches!(
        encode_publish(&v, V5, &mut out),
        Err(EncodeError::TooLarge(_))
    ));
    let sub = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        subscription_identifier: Some(u32::MAX),
        user_properties: Vec::new(),
        filters: vec![("a".into(), Default::default())],
    });
    assert!(matches!(
        encode(&sub, V5, &mut out),
        Err(EncodeError::TooLarge(_))
    ));
    assert!(out.is_empty());
}
