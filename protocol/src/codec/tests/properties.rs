//! MQTT 5 property rules (§2.2.2): allowed identifiers, duplicates, value ranges.

use super::*;
use crate::packet::QoS;

/// v5 PUBLISH QoS 1 to "t" with the given property bytes and payload "x".
fn publish(p: &[u8]) -> Vec<u8> {
    frame(0x32, &cat(&[&s("t"), &[0, 1], &props(p), b"x"]))
}

/// v5 CONNECT with the given CONNECT property bytes.
fn connect(p: &[u8]) -> Vec<u8> {
    frame(
        0x10,
        &cat(&[&s("MQTT"), &[5, 0x02, 0, 60], &props(p), &s("c")]),
    )
}

/// v5 DISCONNECT with a reason code and the given property bytes.
fn disconnect(p: &[u8]) -> Vec<u8> {
    frame(0xE0, &cat(&[&[0x00], &props(p)]))
}

/// v5 SUBSCRIBE of "a/b" at QoS 0 with the given property bytes.
fn subscribe(p: &[u8]) -> Vec<u8> {
    frame(0x82, &cat(&[&[0, 1], &props(p), &s("a/b"), &[0]]))
}

/// v5 CONNACK (server to client) with the given property bytes.
fn connack(p: &[u8]) -> Vec<u8> {
    frame(0x20, &cat(&[&[0, 0], &props(p)]))
}

fn server_err(bytes: &[u8]) -> u8 {
    dec_server(bytes, V5).expect_err("refused").reason.0
}

#[test]
fn duplicate_single_valued_property_is_a_protocol_error() {
    let expiry = [0x02, 0, 0, 0, 9];
    assert_eq!(err(&publish(&cat(&[&expiry, &expiry])), Some(V5)), 0x82);
    let session = [0x11, 0, 0, 0, 9];
    assert_eq!(err(&connect(&cat(&[&session, &session])), None), 0x82);
    let reason = cat(&[&[0x1F], &s("r")]);
    assert_eq!(err(&disconnect(&cat(&[&reason, &reason])), Some(V5)), 0x82);
    let ack = frame(0x40, &cat(&[&[0, 1, 0], &props(&cat(&[&reason, &reason]))]));
    assert_eq!(err(&ack, Some(V5)), 0x82);
    let pfi = [0x01, 0x01];
    assert_eq!(err(&publish(&cat(&[&pfi, &pfi])), Some(V5)), 0x82);
}

#[test]
fn duplicate_is_detected_even_with_a_different_value() {
    let p = cat(&[&[0x23, 0, 1], &[0x23, 0, 2]]);
    assert_eq!(err(&publish(&p), Some(V5)), 0x82);
}

#[test]
fn user_properties_may_repeat() {
    let user = cat(&[&[0x26], &s("k"), &s("v")]);
    let Packet::Publish(p) = ok(&publish(&cat(&[&user, &user, &user])), Some(V5)) else {
        panic!("publish expected");
    };
    assert_eq!(p.properties.user_properties.len(), 3);
}

#[test]
fn subscription_identifier_0_is_a_protocol_error() {
    assert_eq!(err(&subscribe(&[0x0B, 0x00]), Some(V5)), 0x82);
    // Also in a PUBLISH from the server.
    assert_eq!(server_err(&publish(&[0x0B, 0x00])), 0x82);
}

#[test]
fn subscription_identifier_decodes_in_subscribe() {
    let Packet::Subscribe(sub) = ok(&subscribe(&[0x0B, 0xFF, 0xFF, 0xFF, 0x7F]), Some(V5)) else {
        panic!("subscribe expected");
    };
    assert_eq!(sub.subscription_identifier, Some(268_435_455));
}

#[test]
fn duplicate_subscription_identifier_in_subscribe_is_a_protocol_error() {
    assert_eq!(err(&subscribe(&[0x0B, 0x01, 0x0B, 0x02]), Some(V5)), 0x82);
}

#[test]
fn subscription_identifier_in_client_publish_is_a_protocol_error() {
    assert_eq!(err(&publish(&[0x0B, 0x01]), Some(V5)), 0x82);
}

#[test]
fn malformed_subscription_identifier_is_malformed() {
    assert_eq!(err(&subscribe(&[0x0B, 0x80, 0x00]), Some(V5)), 0x81);
    assert_eq!(err(&subscribe(&[0x0B, 0x80, 0x80]), Some(V5)), 0x81);
}

#[test]
fn unknown_property_identifier_is_malformed() {
    for id in [0x00u8, 0x04, 0x0A, 0x14, 0x2B, 0x3F, 0x40, 0x7F] {
        assert_eq!(err(&publish(&[id, 0]), Some(V5)), 0x81, "id {id:#04X}");
    }
    // A multi-byte identifier cannot be one of the defined ones.
    assert_eq!(err(&publish(&[0x81, 0x00, 0x00]), Some(V5)), 0x81);
}

#[test]
fn property_not_allowed_in_packet_is_malformed() {
    // Topic alias in DISCONNECT, session expiry in PUBLISH, receive maximum in SUBSCRIBE,
    // reason string in CONNECT, will delay in PUBLISH, server keep alive from a client.
    assert_eq!(err(&disconnect(&[0x23, 0, 1]), Some(V5)), 0x81);
    assert_eq!(err(&publish(&[0x11, 0, 0, 0, 1]), Some(V5)), 0x81);
    assert_eq!(err(&subscribe(&[0x21, 0, 1]), Some(V5)), 0x81);
    assert_eq!(err(&connect(&cat(&[&[0x1F], &s("r")])), None), 0x81);
    assert_eq!(err(&publish(&[0x18, 0, 0, 0, 1]), Some(V5)), 0x81);
    assert_eq!(err(&connect(&[0x13, 0, 1]), None), 0x81);
    let unsub = frame(0xA2, &cat(&[&[0, 1], &props(&[0x0B, 1]), &s("a")]));
    assert_eq!(err(&unsub, Some(V5)), 0x81);
}

#[test]
fn property_length_overrunning_the_packet_is_malformed() {
    // DISCONNECT declaring 10 bytes of properties with 2 present.
    assert_eq!(err(&frame(0xE0, &[0x00, 0x0A, 0x23, 0x00]), Some(V5)), 0x81);
    let p = frame(0x30, &cat(&[&s("t"), &[0x05, 0x01]]));
    assert_eq!(err(&p, Some(V5)), 0x81);
}

#[test]
fn property_value_overrunning_its_block_is_malformed() {
    // Block of 3 bytes holding a 4-byte message expiry interval; the PUBLISH payload follows.
    let p = frame(0x30, &cat(&[&s("t"), &[0x03, 0x02, 0, 0], &[0, 0, 0, 0]]));
    assert_eq!(err(&p, Some(V5)), 0x81);
    // A string property whose length runs past the block.
    let p = frame(0x30, &cat(&[&s("t"), &[0x03, 0x03, 0x00, 0x05], b"hello"]));
    assert_eq!(err(&p, Some(V5)), 0x81);
}

#[test]
fn malformed_property_length_is_malformed() {
    let p = frame(0x30, &cat(&[&s("t"), &[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]]));
    assert_eq!(err(&p, Some(V5)), 0x81);
}

#[test]
fn receive_maximum_0_is_a_protocol_error() {
    assert_eq!(err(&connect(&[0x21, 0, 0]), None), 0x82);
    assert_eq!(server_err(&connack(&[0x21, 0, 0])), 0x82);
}

#[test]
fn maximum_packet_size_0_is_a_protocol_error() {
    assert_eq!(err(&connect(&[0x27, 0, 0, 0, 0]), None), 0x82);
    assert_eq!(server_err(&connack(&[0x27, 0, 0, 0, 0])), 0x82);
}

#[test]
fn payload_format_indicator_other_than_0_or_1_is_a_protocol_error() {
    assert_eq!(err(&publish(&[0x01, 2]), Some(V5)), 0x82);
    assert!(matches!(dec(&publish(&[0x01, 0]), Some(V5)), Ok(Some(_))));
}

#[test]
fn request_information_flags_other_than_0_or_1_are_protocol_errors() {
    assert_eq!(err(&connect(&[0x17, 2]), None), 0x82);
    assert_eq!(err(&connect(&[0x19, 0xFF]), None), 0x82);
}

#[test]
fn topic_alias_0_is_topic_alias_invalid() {
    assert_eq!(err(&publish(&[0x23, 0, 0]), Some(V5)), 0x94);
}

#[test]
fn connack_flag_properties_other_than_0_or_1_are_protocol_errors() {
    for id in [0x24u8, 0x25, 0x28, 0x29, 0x2A] {
        assert_eq!(server_err(&connack(&[id, 2])), 0x82, "id {id:#04X}");
    }
    let Ok(Some(Packet::ConnAck(ack))) = dec_server(&connack(&[0x24, 0]), V5) else {
        panic!("connack expected");
    };
    assert_eq!(ack.properties.maximum_qos, Some(QoS::AtMostOnce));
}

#[test]
fn null_character_in_user_property_is_malformed() {
    let user = cat(&[&[0x26], &s("k"), &s("v\0")]);
    assert_eq!(err(&publish(&user), Some(V5)), 0x81);
}

#[test]
fn correlation_data_is_binary_and_may_hold_any_byte() {
    let p = cat(&[&[0x09], &b(&[0x00, 0xFF, 0xC3])]);
    let Packet::Publish(publish) = ok(&publish(&p), Some(V5)) else {
        panic!("publish expected");
    };
    assert_eq!(
        publish.properties.correlation_data.as_deref(),
        Some(&[0x00, 0xFF, 0xC3][..])
    );
}

#[test]
fn v3_packets_have_no_properties() {
    // The same bytes that are a property block in v5 are the payload in v3.1.1.
    let p = frame(0x30, &cat(&[&s("t"), &[0x03, 0x23, 0x00, 0x00]]));
    let Packet::Publish(publish) = ok(&p, Some(V3)) else {
        panic!("publish expected");
    };
    assert_eq!(&publish.payload[..], [0x03, 0x23, 0x00, 0x00]);
    assert_eq!(err(&p, Some(V5)), 0x94);
}
