//! Per-packet rules for PUBLISH, the PUBACK family, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT
//! and AUTH.

use super::*;
use crate::packet::{Disconnect, QoS, SubscriptionOptions};
use crate::reason::ReasonCode;

// ---- short forms ---------------------------------------------------------------

#[test]
fn short_disconnect_without_body_decodes_as_normal_disconnection() {
    for v in [V3, V5] {
        assert_eq!(
            ok(&[0xE0, 0x00], Some(v)),
            Packet::Disconnect(Disconnect::default())
        );
    }
}

#[test]
fn short_disconnect_with_reason_only_decodes() {
    assert_eq!(
        ok(&[0xE0, 0x01, 0x8E], Some(V5)),
        Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER))
    );
}

#[test]
fn v3_disconnect_with_a_body_is_malformed() {
    assert_eq!(err(&[0xE0, 0x01, 0x8E], Some(V3)), 0x81);
}

#[test]
fn disconnect_with_bytes_after_properties_is_malformed() {
    assert_eq!(err(&[0xE0, 0x03, 0x00, 0x00, 0x00], Some(V5)), 0x81);
}

#[test]
fn disconnect_with_reason_and_empty_properties_decodes() {
    assert_eq!(
        ok(&[0xE0, 0x02, 0x04, 0x00], Some(V5)),
        Packet::Disconnect(Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL))
    );
}

#[test]
fn short_auth_without_body_decodes_as_success() {
    let Packet::Auth(a) = ok(&[0xF0, 0x00], Some(V5)) else {
        panic!("auth expected");
    };
    assert_eq!(a.reason_code, ReasonCode::SUCCESS);
    assert_eq!(a.properties.authentication_method, None);
}

#[test]
fn short_auth_with_reason_only_decodes() {
    let Packet::Auth(a) = ok(&[0xF0, 0x01, 0x19], Some(V5)) else {
        panic!("auth expected");
    };
    assert_eq!(a.reason_code, ReasonCode::RE_AUTHENTICATE);
}

#[test]
fn short_acks_decode_in_v5() {
    for first in [0x40u8, 0x50, 0x62, 0x70] {
        let two = ok(&[first, 0x02, 0x00, 0x05], Some(V5));
        let three = ok(&[first, 0x03, 0x00, 0x05, 0x10], Some(V5));
        let (two, three) = match (two, three) {
            (Packet::PubAck(a), Packet::PubAck(b))
            | (Packet::PubRec(a), Packet::PubRec(b))
            | (Packet::PubRel(a), Packet::PubRel(b))
            | (Packet::PubComp(a), Packet::PubComp(b)) => (a, b),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(two.packet_id, pid(5));
        assert_eq!(two.reason_code, ReasonCode::SUCCESS);
        assert_eq!(three.reason_code, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert!(three.properties.user_properties.is_empty());
    }
}

#[test]
fn v3_ack_with_reason_code_is_malformed() {
    for first in [0x40u8, 0x50, 0x62, 0x70] {
        assert_eq!(err(&[first, 0x03, 0x00, 0x05, 0x10], Some(V3)), 0x81);
    }
}

#[test]
fn ack_shorter_than_a_packet_identifier_is_malformed() {
    for v in [V3, V5] {
        assert_eq!(err(&[0x40, 0x01, 0x05], Some(v)), 0x81);
        assert_eq!(err(&[0x40, 0x00], Some(v)), 0x81);
    }
}

#[test]
fn ack_with_bytes_after_properties_is_malformed() {
    assert_eq!(
        err(&[0x40, 0x05, 0x00, 0x05, 0x00, 0x00, 0xAA], Some(V5)),
        0x81
    );
}

// ---- packet identifiers -------------------------------------------------------

#[test]
fn packet_identifier_0_is_malformed() {
    for v in [V3, V5] {
        let props: &[u8] = if v == V5 { &[0] } else { &[] };
        assert_eq!(err(&[0x40, 0x02, 0x00, 0x00], Some(v)), 0x81, "PUBACK");
        assert_eq!(err(&[0x62, 0x02, 0x00, 0x00], Some(v)), 0x81, "PUBREL");
        let publish = frame(0x32, &cat(&[&s("t"), &[0, 0], props]));
        assert_eq!(err(&publish, Some(v)), 0x81, "PUBLISH");
        let sub = frame(0x82, &cat(&[&[0, 0], props, &s("t"), &[0]]));
        assert_eq!(err(&sub, Some(v)), 0x81, "SUBSCRIBE");
        let unsub = frame(0xA2, &cat(&[&[0, 0], props, &s("t")]));
        assert_eq!(err(&unsub, Some(v)), 0x81, "UNSUBSCRIBE");
    }
}

// ---- PUBLISH ------------------------------------------------------------------

#[test]
fn publish_packet_identifier_is_present_only_above_qos_0() {
    // QoS 0: the two bytes after the topic are payload.
    let Packet::Publish(p) = ok(&frame(0x30, &cat(&[&s("t"), &[0, 1]])), Some(V3)) else {
        panic!("publish expected");
    };
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));
    assert_eq!(&p.payload[..], [0, 1]);
    let Packet::Publish(p) = ok(&frame(0x3D, &cat(&[&s("t"), &[0, 1]])), Some(V3)) else {
        panic!("publish expected");
    };
    assert_eq!((p.qos, p.packet_id), (QoS::ExactlyOnce, Some(pid(1))));
    assert!(p.dup && p.retain && p.payload.is_empty());
}

#[test]
fn publish_without_packet_identifier_at_qos_1_is_malformed() {
    assert_eq!(err(&frame(0x32, &s("t")), Some(V3)), 0x81);
}

#[test]
fn publish_topic_with_null_character_is_malformed() {
    assert_eq!(err(&frame(0x30, &cat(&[&s("a\0b"), &[0]])), Some(V5)), 0x81);
    assert_eq!(err(&frame(0x30, &s("a\0b")), Some(V3)), 0x81);
}

#[test]
fn publish_topic_with_invalid_utf8_is_malformed() {
    assert_eq!(err(&frame(0x30, &b(&[0x61, 0xFF])), Some(V3)), 0x81);
}

#[test]
fn publish_topic_running_past_the_packet_is_malformed() {
    assert_eq!(err(&[0x30, 0x03, 0x00, 0x05, b'a'], Some(V3)), 0x81);
    assert_eq!(err(&[0x30, 0x01, 0x00], Some(V3)), 0x81);
}

#[test]
fn publish_with_empty_topic_is_returned_for_the_broker_to_judge() {
    for v in [V3, V5] {
        let props: &[u8] = if v == V5 { &[0] } else { &[] };
        let Packet::Publish(p) = ok(&frame(0x30, &cat(&[&s(""), props, b"x"])), Some(v)) else {
            panic!("publish expected");
        };
        assert_eq!(p.topic, "");
    }
}

#[test]
fn publish_topic_with_wildcards_is_returned_for_the_broker_to_judge() {
    let Packet::Publish(p) = ok(&frame(0x30, &s("a/#")), Some(V3)) else {
        panic!("publish expected");
    };
    assert_eq!(p.topic, "a/#");
}

#[test]
fn v5_publish_without_property_length_is_malformed() {
    assert_eq!(err(&frame(0x30, &s("t")), Some(V5)), 0x81);
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------

fn subscribe(v: ProtocolVersion, payload: &[u8]) -> Vec<u8> {
    let props: &[u8] = if v == V5 { &[0] } else { &[] };
    frame(0x82, &cat(&[&[0, 1], props, payload]))
}

fn unsubscribe(v: ProtocolVersion, payload: &[u8]) -> Vec<u8> {
    let props: &[u8] = if v == V5 { &[0] } else { &[] };
    frame(0xA2, &cat(&[&[0, 1], props, payload]))
}

#[test]
fn subscribe_without_filters_is_a_protocol_error() {
    assert_eq!(err(&subscribe(V3, &[]), Some(V3)), 0x82);
    assert_eq!(err(&subscribe(V5, &[]), Some(V5)), 0x82);
}

#[test]
fn unsubscribe_without_filters_is_a_protocol_error() {
    assert_eq!(err(&unsubscribe(V3, &[]), Some(V3)), 0x82);
    assert_eq!(err(&unsubscribe(V5, &[]), Some(V5)), 0x82);
}

#[test]
fn v5_subscription_option_reserved_bits_are_malformed() {
    assert_eq!(
        err(&subscribe(V5, &cat(&[&s("a"), &[0x40]])), Some(V5)),
        0x81
    );
    assert_eq!(
        err(&subscribe(V5, &cat(&[&s("a"), &[0x80]])), Some(V5)),
        0x81
    );
}

#[test]
fn v3_subscription_option_upper_bits_are_malformed() {
    for byte in [0x04u8, 0x08, 0x10, 0x20, 0x40, 0x80] {
        assert_eq!(
            err(&subscribe(V3, &cat(&[&s("a"), &[byte]])), Some(V3)),
            0x81
        );
    }
}

#[test]
fn subscription_qos_3_is_malformed() {
    assert_eq!(
        err(&subscribe(V3, &cat(&[&s("a"), &[0x03]])), Some(V3)),
        0x81
    );
    assert_eq!(
        err(&subscribe(V5, &cat(&[&s("a"), &[0x03]])), Some(V5)),
        0x81
    );
}

#[test]
fn retain_handling_3_is_a_protocol_error() {
    assert_eq!(
        err(&subscribe(V5, &cat(&[&s("a"), &[0x30]])), Some(V5)),
        0x82
    );
}

#[test]
fn v5_subscription_options_decode() {
    let payload = cat(&[&s("a"), &[0x2E], &s("b"), &[0x01]]);
    let Packet::Subscribe(sub) = ok(&subscribe(V5, &payload), Some(V5)) else {
        panic!("subscribe expected");
    };
    assert_eq!(
        sub.filters,
        vec![
            (
                "a".to_string(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                }
            ),
            (
                "b".to_string(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                }
            ),
        ]
    );
}

#[test]
fn subscribe_filter_without_options_byte_is_malformed() {
    assert_eq!(
        err(&subscribe(V3, &cat(&[&s("a"), &[0], &s("b")])), Some(V3)),
        0x81
    );
}

#[test]
fn subscribe_filters_are_returned_raw_for_the_broker_to_validate() {
    let Packet::Subscribe(sub) = ok(&subscribe(V3, &cat(&[&s("a/#/b"), &[0]])), Some(V3)) else {
        panic!("subscribe expected");
    };
    assert_eq!(sub.filters[0].0, "a/#/b");
}

#[test]
fn unsubscribe_filter_with_null_character_is_malformed() {
    assert_eq!(err(&unsubscribe(V5, &s("a\0")), Some(V5)), 0x81);
}

#[test]
fn unsubscribe_with_truncated_filter_is_malformed() {
    assert_eq!(
        err(&unsubscribe(V3, &cat(&[&s("a"), &[0]])), Some(V3)),
        0x81
    );
}

// ---- server-to-client packets (client-side decoder) -----------------------------

#[test]
fn v3_connack_with_reserved_return_code_is_malformed() {
    let e = dec_server(&[0x20, 0x02, 0x00, 0x06], V3).expect_err("reserved");
    assert_eq!(e.reason, ReasonCode::MALFORMED_PACKET);
}

#[test]
fn connack_with_reserved_flags_is_malformed() {
    let e = dec_server(&[0x20, 0x02, 0x02, 0x00], V3).expect_err("reserved");
    assert_eq!(e.reason, ReasonCode::MALFORMED_PACKET);
}

#[test]
fn v3_suback_with_reserved_return_code_is_malformed() {
    let e = dec_server(&[0x90, 0x03, 0x00, 0x01, 0x03], V3).expect_err("reserved");
    assert_eq!(e.reason, ReasonCode::MALFORMED_PACKET);
}
