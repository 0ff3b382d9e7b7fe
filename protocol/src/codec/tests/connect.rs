//! CONNECT rules (MQTT 5 §3.1, MQTT 3.1.1 §3.1).

use super::*;

/// CONNECT with the given name, level, flags, properties (v5 only) and payload.
fn connect(
    name: &[u8],
    level: u8,
    flags: u8,
    properties: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = b(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x3C]);
    if let Some(p) = properties {
        body.extend(super::props(p));
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

fn v5(flags: u8, payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 5, flags, Some(&[]), payload)
}

fn v3(flags: u8, payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 4, flags, None, payload)
}

fn connect_of(p: Packet) -> Connect {
    match p {
        Packet::Connect(c) => *c,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

use crate::packet::Connect;

#[test]
fn connect_with_empty_client_id_decodes() {
    let c = connect_of(ok(&v5(0x02, &s("")), None));
    assert_eq!(c.client_id, "");
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.protocol, V5);
    let c = connect_of(ok(&v3(0x00, &s("id")), None));
    assert_eq!(c.protocol, V3);
    assert!(!c.clean_start);
}

#[test]
fn unsupported_protocol_level_is_refused_with_0x84() {
    for level in [0, 3, 6, 255] {
        assert_eq!(
            err(&connect(b"MQTT", level, 0x02, None, &s("c")), None),
            0x84
        );
    }
}

#[test]
fn mqisdp_protocol_name_is_refused_with_0x84() {
    assert_eq!(err(&connect(b"MQIsdp", 3, 0x02, None, &s("c")), None), 0x84);
    assert_eq!(err(&connect(b"MQIsdp", 4, 0x02, None, &s("c")), None), 0x84);
}

#[test]
fn unknown_protocol_name_is_refused_with_0x84() {
    assert_eq!(
        err(&connect(b"HTTP", 5, 0x02, Some(&[]), &s("c")), None),
        0x84
    );
    assert_eq!(err(&connect(b"mqtt", 4, 0x02, None, &s("c")), None), 0x84);
}

#[test]
fn protocol_name_that_is_not_a_string_is_malformed() {
    assert_eq!(
        err(&connect(&[0xFF, 0xFE], 5, 0x02, Some(&[]), &s("c")), None),
        0x81
    );
    // Name length running past the packet.
    assert_eq!(err(&frame(0x10, &[0x00, 0x10, b'M']), None), 0x81);
    // No level byte.
    assert_eq!(err(&frame(0x10, &s("MQTT")), None), 0x81);
}

#[test]
fn reserved_connect_flag_is_malformed() {
    assert_eq!(err(&v5(0x03, &s("c")), None), 0x81);
    assert_eq!(err(&v3(0x01, &s("c")), None), 0x81);
}

#[test]
fn will_qos_without_will_flag_is_malformed() {
    assert_eq!(err(&v5(0x08, &s("c")), None), 0x81);
    assert_eq!(err(&v3(0x10, &s("c")), None), 0x81);
}

#[test]
fn will_retain_without_will_flag_is_malformed() {
    assert_eq!(err(&v5(0x20, &s("c")), None), 0x81);
    assert_eq!(err(&v3(0x20, &s("c")), None), 0x81);
}

#[test]
fn will_qos_3_is_malformed() {
    let payload = cat(&[&s("c"), &s("will/topic"), &b(b"x")]);
    assert_eq!(err(&v3(0x1C, &payload), None), 0x81);
    let payload = cat(&[&s("c"), &[0], &s("will/topic"), &b(b"x")]);
    assert_eq!(err(&v5(0x1C, &payload), None), 0x81);
}

#[test]
fn will_fields_decode() {
    let payload = cat(&[&s("c"), &s("will/topic"), &b(b"bye")]);
    let c = connect_of(ok(&v3(0x2C, &payload), None)); // will, QoS 1, retain
    let will = c.will.expect("will");
    assert_eq!(will.topic, "will/topic");
    assert_eq!(&will.payload[..], b"bye");
    assert_eq!(will.qos, crate::packet::QoS::AtLeastOnce);
    assert!(will.retain);
}

#[test]
fn missing_will_payload_is_malformed() {
    assert_eq!(err(&v3(0x04, &cat(&[&s("c"), &s("w")])), None), 0x81);
}

#[test]
fn v3_password_without_username_is_malformed() {
    assert_eq!(err(&v3(0x40, &cat(&[&s("c"), &b(b"pw")])), None), 0x81);
}

#[test]
fn v5_password_without_username_decodes() {
    let c = connect_of(ok(&v5(0x40, &cat(&[&s("c"), &b(b"pw")])), None));
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn username_and_password_decode() {
    let c = connect_of(ok(&v3(0xC0, &cat(&[&s("c"), &s("user"), &b(b"pw")])), None));
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pw"[..]));
}

#[test]
fn trailing_bytes_after_connect_payload_are_malformed() {
    assert_eq!(err(&v3(0x02, &cat(&[&s("c"), &[0]])), None), 0x81);
    assert_eq!(err(&v5(0x02, &cat(&[&s("c"), &s("extra")])), None), 0x81);
}

#[test]
fn null_character_in_client_id_is_malformed() {
    assert_eq!(err(&v5(0x02, &s("a\0b")), None), 0x81);
}

#[test]
fn invalid_utf8_in_username_is_malformed() {
    assert_eq!(
        err(&v3(0x80, &cat(&[&s("c"), &b(&[0xC3, 0x28])])), None),
        0x81
    );
    // UTF-16 surrogate encoded in UTF-8 (ED A0 80) is ill-formed too.
    assert_eq!(
        err(&v3(0x80, &cat(&[&s("c"), &b(&[0xED, 0xA0, 0x80])])), None),
        0x81
    );
}

#[test]
fn v5_connect_without_property_length_is_malformed() {
    assert_eq!(err(&connect(b"MQTT", 5, 0x02, None, &[]), None), 0x81);
}

#[test]
fn authentication_data_without_method_is_a_protocol_error() {
    let p = cat(&[&[0x16], &b(b"data")]);
    assert_eq!(
        err(&connect(b"MQTT", 5, 0x02, Some(&p), &s("c")), None),
        0x82
    );
}

#[test]
fn will_properties_decode_in_v5() {
    let will_props = cat(&[&[0x18, 0, 0, 0, 5], &[0x01, 1], &[0x03], &s("text/plain")]);
    let payload = cat(&[&s("c"), &super::props(&will_props), &s("w"), &b(b"x")]);
    let c = connect_of(ok(&v5(0x04, &payload), None));
    let w = c.will.expect("will");
    assert_eq!(w.properties.will_delay_interval, Some(5));
    assert_eq!(w.properties.payload_format_indicator, Some(1));
    assert_eq!(w.properties.content_type.as_deref(), Some("text/plain"));
}

#[test]
fn will_property_not_allowed_in_will_is_malformed() {
    // Topic alias (0x23) is a PUBLISH property, not a will property.
    let payload = cat(&[&s("c"), &super::props(&[0x23, 0, 1]), &s("w"), &b(b"x")]);
    assert_eq!(err(&v5(0x04, &payload), None), 0x81);
}
