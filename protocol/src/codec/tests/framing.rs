//! Fixed header, Remaining Length, packet size limit, partial input and the
//! "which packet may arrive now" rules.

use super::*;
use crate::codec::peek_protocol_level;
use crate::reason::ReasonCode;

#[test]
fn empty_buffer_needs_more_bytes() {
    assert_eq!(dec(&[], None), Ok(None));
    assert_eq!(dec(&[], Some(V5)), Ok(None));
}

#[test]
fn incomplete_remaining_length_needs_more_bytes() {
    assert_eq!(dec(&[0x30], Some(V5)), Ok(None));
    assert_eq!(dec(&[0x30, 0xFF], Some(V5)), Ok(None));
    assert_eq!(dec(&[0x30, 0xFF, 0xFF, 0xFF], Some(V5)), Ok(None));
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    assert_eq!(err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], Some(V5)), 0x81);
    // Already known after the fourth continuation byte.
    assert_eq!(err(&[0x30, 0x80, 0x80, 0x80, 0x80], Some(V3)), 0x81);
}

#[test]
fn non_minimal_remaining_length_is_malformed() {
    assert_eq!(err(&[0xC0, 0x80, 0x00], Some(V5)), 0x81);
}

#[test]
fn packet_larger_than_maximum_is_refused_with_only_the_header_present() {
    // PUBLISH announcing 65535 bytes; only the fixed header has arrived.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x03][..]);
    let e = decode(&mut buf, Some(V5), 1024).expect_err("too large");
    assert_eq!(e.reason, ReasonCode::PACKET_TOO_LARGE);
    // Also before CONNECT: a huge CONNECT is refused without buffering it.
    let mut buf = BytesMut::from(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let e = decode(&mut buf, None, 1 << 20).expect_err("too large");
    assert_eq!(e.reason, ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn maximum_packet_size_counts_the_fixed_header() {
    let p = frame(0x30, &cat(&[&s("t"), &[0u8; 10]])); // 2 + 13 = 15 bytes
    assert_eq!(p.len(), 15);
    let mut buf = BytesMut::from(&p[..]);
    assert!(matches!(decode(&mut buf, Some(V3), 15), Ok(Some(_))));
    let mut buf = BytesMut::from(&p[..]);
    let e = decode(&mut buf, Some(V3), 14).expect_err("one byte over");
    assert_eq!(e.reason, ReasonCode::PACKET_TOO_LARGE);
}

#[test]
fn packet_type_0_is_malformed() {
    assert_eq!(err(&[0x00, 0x00], Some(V5)), 0x81);
    assert_eq!(err(&[0x00, 0x00], Some(V3)), 0x81);
    assert_eq!(err(&[0x00], None), 0x81);
}

#[test]
fn auth_in_v3_is_malformed() {
    assert_eq!(err(&[0xF0, 0x00], Some(V3)), 0x81);
    assert_eq!(
        ok(&[0xF0, 0x00], Some(V5)),
        Packet::Auth(Default::default())
    );
}

#[test]
fn reserved_fixed_header_flags_are_malformed() {
    let cases: &[(&[u8], Option<ProtocolVersion>)] = &[
        (&[0x11, 0x00], None),                                         // CONNECT
        (&[0x41, 0x02, 0x00, 0x01], Some(V5)),                         // PUBACK
        (&[0x58, 0x02, 0x00, 0x01], Some(V3)),                         // PUBREC
        (&[0x60, 0x02, 0x00, 0x01], Some(V5)),                         // PUBREL must be 0b0010
        (&[0x63, 0x02, 0x00, 0x01], Some(V3)),                         // PUBREL
        (&[0x72, 0x02, 0x00, 0x01], Some(V5)),                         // PUBCOMP
        (&[0x80, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], Some(V3)), // SUBSCRIBE
        (&[0xA0, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'], Some(V3)),       // UNSUBSCRIBE
        (&[0xC1, 0x00], Some(V5)),                                     // PINGREQ
        (&[0xE2, 0x00], Some(V3)),                                     // DISCONNECT
        (&[0xF8, 0x00], Some(V5)),                                     // AUTH
    ];
    for (bytes, v) in cases {
        assert_eq!(err(bytes, *v), 0x81, "{bytes:02X?}");
    }
}

#[test]
fn publish_with_qos_3_is_malformed() {
    assert_eq!(err(&[0x36], Some(V5)), 0x81);
    assert_eq!(err(&[0x37, 0x03, 0x00, 0x01, b'a'], Some(V3)), 0x81);
}

#[test]
fn publish_with_dup_at_qos_0_is_malformed() {
    assert_eq!(err(&[0x38, 0x03, 0x00, 0x01, b'a'], Some(V5)), 0x81);
    assert_eq!(err(&[0x39, 0x03, 0x00, 0x01, b'a'], Some(V3)), 0x81);
}

#[test]
fn first_packet_must_be_connect() {
    assert_eq!(err(&[0xC0, 0x00], None), 0x82);
    assert_eq!(err(&[0x30, 0x03, 0x00, 0x01, b'a'], None), 0x82);
    assert_eq!(err(&[0xE0, 0x00], None), 0x82);
    // Refused from the first byte, before the body arrives.
    assert_eq!(err(&[0x82], None), 0x82);
}

#[test]
fn second_connect_is_a_protocol_error() {
    let connect = enc(
        &Packet::Connect(Box::new(super::roundtrip::connect_v5())),
        V5,
    );
    assert_eq!(err(&connect, Some(V5)), 0x82);
    assert_eq!(err(&connect, Some(V3)), 0x82);
}

#[test]
fn server_to_client_packets_from_a_client_are_protocol_errors() {
    let cases: &[&[u8]] = &[
        &[0x20, 0x02, 0x00, 0x00],       // CONNACK
        &[0x90, 0x03, 0x00, 0x01, 0x00], // SUBACK
        &[0xB0, 0x02, 0x00, 0x01],       // UNSUBACK
        &[0xD0, 0x00],                   // PINGRESP
    ];
    for v in [V3, V5] {
        for bytes in cases {
            assert_eq!(err(bytes, Some(v)), 0x82, "{bytes:02X?} in {v:?}");
        }
    }
}

#[test]
fn client_to_server_packets_from_a_server_are_protocol_errors() {
    let cases: &[&[u8]] = &[
        &[0xC0, 0x00],
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00],
        &[0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, b'a'],
    ];
    for bytes in cases {
        let e = dec_server(bytes, V3).expect_err("refused");
        assert_eq!(e.reason, ReasonCode::PROTOCOL_ERROR);
    }
}

#[test]
fn pingreq_with_a_body_is_malformed() {
    assert_eq!(err(&[0xC0, 0x01, 0x00], Some(V5)), 0x81);
}

#[test]
fn decode_error_names_the_reason() {
    let e = dec(&[0xC0, 0x00], None).expect_err("refused");
    assert!(e.to_string().starts_with("0x82 protocol error"), "{e}");
}

#[test]
fn peek_protocol_level_reads_the_level_byte() {
    let v5 = enc(
        &Packet::Connect(Box::new(super::roundtrip::connect_v5())),
        V5,
    );
    assert_eq!(peek_protocol_level(&v5), Some(5));
    // Needs only the bytes up to the level: 1 + RL(2) + name(6) + level.
    assert_eq!(peek_protocol_level(&v5[..10]), Some(5));
    assert_eq!(peek_protocol_level(&v5[..9]), None);
    let v3 = frame(0x10, &cat(&[&s("MQTT"), &[4, 0x02, 0, 60], &s("c")]));
    assert_eq!(peek_protocol_level(&v3), Some(4));
    let mqisdp = frame(0x10, &cat(&[&s("MQIsdp"), &[3, 0x02, 0, 60], &s("c")]));
    assert_eq!(peek_protocol_level(&mqisdp), Some(3));
    assert_eq!(peek_protocol_level(&[]), None);
    assert_eq!(peek_protocol_level(&[0x10]), None);
    assert_eq!(peek_protocol_level(&[0x30, 0x07, 0x00, 0x04]), None);
    // Level byte beyond the declared Remaining Length: not part of this packet.
    assert_eq!(
        peek_protocol_level(&[0x10, 0x06, 0x00, 0x04, b'M', b'Q', b'T', b'T', 5]),
        None
    );
}

#[test]
fn every_prefix_of_a_valid_packet_needs_more_bytes() {
    for packet in super::fuzz_smoke::seeds() {
        for n in 0..packet.len() {
            let prefix = &packet[..n];
            for v in [None, Some(V3), Some(V5)] {
                // Some seeds are invalid in some states; those may fail early, but a
                // prefix must never decode to a packet nor consume anything.
                let mut buf = BytesMut::from(prefix);
                let r = decode(&mut buf, v, MAX);
                assert!(!matches!(r, Ok(Some(_))), "prefix {prefix:02X?} decoded");
                assert_eq!(&buf[..], prefix);
            }
        }
    }
}

#[test]
fn refused_connect_stays_in_the_buffer_for_peek_protocol_level() {
    let mut bytes = frame(0x10, &cat(&[&s("MQTT"), &[3, 0x02, 0, 60], &s("c")]));
    bytes.extend_from_slice(&[0xC0, 0x00]); // more input behind it
    let mut buf = BytesMut::from(&bytes[..]);
    let e = decode(&mut buf, None, MAX).expect_err("level 3 refused");
    assert_eq!(e.reason, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
    assert_eq!(&buf[..], &bytes[..]);
    assert_eq!(peek_protocol_level(&buf), Some(3));
}

#[test]
fn oversized_packet_is_refused_even_when_fully_buffered() {
    let p = frame(0x30, &cat(&[&s("t"), &[0u8; 200]]));
    let mut buf = BytesMut::from(&p[..]);
    let e = decode(&mut buf, Some(V5), 100).expect_err("too large");
    assert_eq!(e.reason, ReasonCode::PACKET_TOO_LARGE);
    assert_eq!(&buf[..], &p[..]);
}
