//! Every packet type, both versions: encode → decode gives the packet back, and every
//! prefix of the encoding decodes to `Ok(None)`.

use bytes::Bytes;

use super::*;
use crate::packet::*;
use crate::reason::ReasonCode;

fn users() -> Vec<UserProperty> {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "second value".into()),
        ("ünïcode".into(), String::new()),
    ]
}

pub(super) fn connect_v5() -> Connect {
    Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "client-1".into(),
        will: Some(Will {
            topic: "last/will".into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                payload_format_indicator: Some(1),
                message_expiry_interval: Some(3600),
                content_type: Some("text/plain".into()),
                response_topic: Some("resp".into()),
                correlation_data: Some(Bytes::from_static(&[1, 2, 3])),
                user_properties: users(),
            },
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"secret")),
        properties: ConnectProperties {
            session_expiry_interval: Some(0xFFFF_FFFF),
            receive_maximum: Some(100),
            maximum_packet_size: Some(65536),
            topic_alias_maximum: Some(10),
            request_response_information: Some(true),
            request_problem_information: Some(false),
            user_properties: users(),
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"client-first")),
        },
    }
}

fn connect_v3() -> Connect {
    Connect {
        protocol: V3,
        clean_start: false,
        keep_alive: 0,
        client_id: String::new(),
        will: Some(Will {
            topic: "w".into(),
            payload: Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: WillProperties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: ConnectProperties::default(),
    }
}

#[test]
fn connect_round_trips_in_both_versions() {
    round_trip(&Packet::Connect(Box::new(connect_v5())), V5);
    round_trip(&Packet::Connect(Box::new(connect_v3())), V3);
    // Minimal CONNECTs: no will, no credentials, empty client id.
    for v in [V3, V5] {
        let c = Connect {
            protocol: v,
            clean_start: true,
            keep_alive: 10,
            client_id: String::new(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        };
        round_trip(&Packet::Connect(Box::new(c)), v);
    }
}

#[test]
fn v5_connect_allows_password_without_username() {
    let mut c = connect_v5();
    c.username = None;
    round_trip(&Packet::Connect(Box::new(c)), V5);
}

#[test]
fn connack_round_trips_in_both_versions() {
    let full = ConnAck {
        session_present: true,
        reason_code: ReasonCode::SUCCESS,
        properties: ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: Some(1000),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            maximum_packet_size: Some(1 << 20),
            assigned_client_identifier: Some("auto-1".into()),
            topic_alias_maximum: Some(65535),
            reason_string: Some("welcome".into()),
            user_properties: users(),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(false),
            server_keep_alive: Some(30),
            response_information: Some("resp/".into()),
            server_reference: Some("other:1883".into()),
            authentication_method: Some("SCRAM-SHA-1".into()),
            authentication_data: Some(Bytes::from_static(b"server-final")),
        },
    };
    round_trip_server(&Packet::ConnAck(full), V5);
    round_trip_server(
        &Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::BANNED,
            properties: Default::default(),
        }),
        V5,
    );
    // v3.1.1: the return codes that have a v5 equivalent map back exactly.
    for rc in [0x00, 0x84, 0x85, 0x88, 0x86, 0x87] {
        round_trip_server(
            &Packet::ConnAck(ConnAck {
                session_present: rc == 0,
                reason_code: ReasonCode(rc),
                properties: Default::default(),
            }),
            V3,
        );
    }
}

#[test]
fn v3_connack_maps_reason_codes_to_return_codes() {
    let ack = |rc| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode(rc),
            properties: Default::default(),
        })
    };
    assert_eq!(enc(&ack(0x00), V3), [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(enc(&ack(0x84), V3), [0x20, 0x02, 0x00, 0x01]);
    assert_eq!(enc(&ack(0x85), V3), [0x20, 0x02, 0x00, 0x02]);
    assert_eq!(enc(&ack(0x89), V3), [0x20, 0x02, 0x00, 0x03]);
    assert_eq!(enc(&ack(0x97), V3), [0x20, 0x02, 0x00, 0x03]);
    assert_eq!(enc(&ack(0x86), V3), [0x20, 0x02, 0x00, 0x04]);
    assert_eq!(enc(&ack(0x87), V3), [0x20, 0x02, 0x00, 0x05]);
    // Anything without a nearer 3.1.1 code.
    assert_eq!(enc(&ack(0x9C), V3), [0x20, 0x02, 0x00, 0x05]);
}

pub(super) fn publish_v5(qos: QoS) -> Publish {
    Publish {
        dup: qos != QoS::AtMostOnce,
        qos,
        retain: true,
        topic: "sensors/room-1/temperature".into(),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(7)),
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(60),
            topic_alias: Some(3),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"corr-id")),
            user_properties: users(),
            subscription_identifiers: Vec::new(),
            content_type: Some("application/json".into()),
        },
        payload: Bytes::from_static(br#"{"t":21.5}"#),
    }
}

#[test]
fn publish_round_trips_at_every_qos_in_both_versions() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        round_trip(&Packet::Publish(publish_v5(qos)), V5);
        let mut p = publish_v5(qos);
        p.properties = PublishProperties::default();
        p.payload = Bytes::from(vec![0xAB; 300]); // two-byte remaining length
        round_trip(&Packet::Publish(p.clone()), V3);
        round_trip(&Packet::Publish(p), V5);
    }
}

#[test]
fn publish_with_empty_topic_and_alias_round_trips() {
    let mut p = publish_v5(QoS::AtMostOnce);
    p.topic = String::new();
    round_trip(&Packet::Publish(p), V5);
}

#[test]
fn server_publish_round_trips_with_subscription_identifiers() {
    let mut p = publish_v5(QoS::AtLeastOnce);
    p.properties.subscription_identifiers = vec![1, 127, 128, 268_435_455];
    round_trip_server(&Packet::Publish(p), V5);
}

#[test]
fn publish_payload_is_a_zero_copy_slice_of_the_input() {
    let bytes = enc(&Packet::Publish(publish_v5(QoS::AtLeastOnce)), V5);
    let mut buf = BytesMut::from(&bytes[..]);
    let base = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, Some(V5), MAX) else {
        panic!("publish expected");
    };
    let payload_at = p.payload.as_ptr() as usize;
    assert_eq!(payload_at, base + bytes.len() - p.payload.len());
    let corr = p.properties.correlation_data.expect("correlation data");
    assert!((base..base + bytes.len()).contains(&(corr.as_ptr() as usize)));
}

fn ack_variants() -> Vec<PubResp> {
    vec![
        PubResp::new(pid(1), ReasonCode::SUCCESS),
        PubResp::new(pid(65535), ReasonCode::NO_MATCHING_SUBSCRIBERS),
        PubResp {
            packet_id: pid(2),
            reason_code: ReasonCode::SUCCESS,
            properties: AckProperties {
                reason_string: Some("fine".into()),
                user_properties: users(),
            },
        },
        PubResp {
            packet_id: pid(3),
            reason_code: ReasonCode::QUOTA_EXCEEDED,
            properties: AckProperties {
                reason_string: None,
                user_properties: users(),
            },
        },
    ]
}

#[test]
fn pub_ack_family_round_trips_in_both_versions() {
    type Wrap = fn(PubResp) -> Packet;
    let kinds: [Wrap; 4] = [
        Packet::PubAck,
        Packet::PubRec,
        Packet::PubRel,
        Packet::PubComp,
    ];
    for wrap in kinds {
        for a in ack_variants() {
            round_trip(&wrap(a.clone()), V5);
            round_trip_server(&wrap(a), V5);
        }
        let v3 = wrap(PubResp::new(pid(9), ReasonCode::SUCCESS));
        round_trip(&v3, V3);
        round_trip_server(&v3, V3);
    }
}

#[test]
fn pub_ack_family_uses_short_forms() {
    let id = pid(0x1234);
    let ok = PubResp::new(id, ReasonCode::SUCCESS);
    let fail = PubResp::new(id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
    assert_eq!(
        enc(&Packet::PubAck(ok.clone()), V5),
        [0x40, 0x02, 0x12, 0x34]
    );
    assert_eq!(
        enc(&Packet::PubRec(ok.clone()), V5),
        [0x50, 0x02, 0x12, 0x34]
    );
    assert_eq!(
        enc(&Packet::PubRel(ok.clone()), V5),
        [0x62, 0x02, 0x12, 0x34]
    );
    assert_eq!(enc(&Packet::PubComp(ok), V5), [0x70, 0x02, 0x12, 0x34]);
    assert_eq!(
        enc(&Packet::PubRel(fail.clone()), V5),
        [0x62, 0x03, 0x12, 0x34, 0x92]
    );
    // v3.1.1 has no reason code: always the 4-byte form.
    assert_eq!(enc(&Packet::PubRel(fail), V3), [0x62, 0x02, 0x12, 0x34]);
}

#[test]
fn subscribe_round_trips_in_both_versions() {
    let v5 = Subscribe {
        packet_id: pid(10),
        subscription_identifier: Some(268_435_455),
        user_properties: users(),
        filters: vec![
            ("a/+/c".into(), SubscriptionOptions::default()),
            (
                "$share/g/x/#".into(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: false,
                    retain_as_published: true,
                    retain_handling: 2,
                },
            ),
            (
                "d".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: 1,
                },
            ),
        ],
    };
    round_trip(&Packet::Subscribe(v5), V5);
    let v3 = Subscribe {
        packet_id: pid(11),
        subscription_identifier: None,
        user_properties: Vec::new(),
        filters: vec![
            ("#".into(), SubscriptionOptions::default()),
            (
                "x/y".into(),
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..Default::default()
                },
            ),
        ],
    };
    round_trip(&Packet::Subscribe(v3.clone()), V3);
    round_trip(&Packet::Subscribe(v3), V5);
}

#[test]
fn suback_round_trips_in_both_versions() {
    let v5 = SubAck {
        packet_id: pid(10),
        properties: AckProperties {
            reason_string: Some("partly".into()),
            user_properties: users(),
        },
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::TOPIC_FILTER_INVALID,
        ],
    };
    round_trip_server(&Packet::SubAck(v5), V5);
    let v3 = SubAck {
        packet_id: pid(10),
        properties: AckProperties::default(),
        reason_codes: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ],
    };
    round_trip_server(&Packet::SubAck(v3), V3);
}

#[test]
fn v3_suback_maps_failures_to_0x80() {
    let ack = SubAck {
        packet_id: pid(1),
        properties: AckProperties::default(),
        reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED],
    };
    assert_eq!(
        enc(&Packet::SubAck(ack), V3),
        [0x90, 0x04, 0x00, 0x01, 0x01, 0x80]
    );
}

#[test]
fn unsubscribe_round_trips_in_both_versions() {
    let v5 = Unsubscribe {
        packet_id: pid(12),
        user_properties: users(),
        filters: vec!["a/b".into(), "$share/g/c".into()],
    };
    round_trip(&Packet::Unsubscribe(v5), V5);
    let v3 = Unsubscribe {
        packet_id: pid(12),
        user_properties: Vec::new(),
        filters: vec!["a/b".into()],
    };
    round_trip(&Packet::Unsubscribe(v3), V3);
}

#[test]
fn unsuback_round_trips_in_both_versions() {
    let v5 = UnsubAck {
        packet_id: pid(12),
        properties: AckProperties {
            reason_string: Some("done".into()),
            user_properties: Vec::new(),
        },
        reason_codes: vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED],
    };
    round_trip_server(&Packet::UnsubAck(v5.clone()), V5);
    // v3.1.1 UNSUBACK has no payload: reason codes and properties are dropped.
    assert_eq!(enc(&Packet::UnsubAck(v5), V3), [0xB0, 0x02, 0x00, 0x0C]);
    round_trip_server(
        &Packet::UnsubAck(UnsubAck {
            packet_id: pid(12),
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        }),
        V3,
    );
}

#[test]
fn ping_round_trips_in_both_versions() {
    for v in [V3, V5] {
        assert_eq!(enc(&Packet::PingReq, v), [0xC0, 0x00]);
        assert_eq!(enc(&Packet::PingResp, v), [0xD0, 0x00]);
        round_trip(&Packet::PingReq, v);
        round_trip_server(&Packet::PingResp, v);
    }
}

#[test]
fn disconnect_round_trips_in_both_versions() {
    let variants = [
        Disconnect::default(),
        Disconnect::new(ReasonCode::DISCONNECT_WITH_WILL),
        Disconnect {
            reason_code: ReasonCode::SERVER_MOVED,
            properties: DisconnectProperties {
                session_expiry_interval: Some(0),
                reason_string: Some("bye".into()),
                user_properties: users(),
                server_reference: Some("elsewhere".into()),
            },
        },
        Disconnect {
            reason_code: ReasonCode::SUCCESS,
            properties: DisconnectProperties {
                session_expiry_interval: Some(10),
                ..Default::default()
            },
        },
    ];
    for d in variants {
        round_trip(&Packet::Disconnect(d.clone()), V5);
        round_trip_server(&Packet::Disconnect(d), V5);
    }
    round_trip(&Packet::Disconnect(Disconnect::default()), V3);
}

#[test]
fn disconnect_uses_short_forms() {
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::default()), V5),
        [0xE0, 0x00]
    );
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::new(ReasonCode(0x8E))), V5),
        [0xE0, 0x01, 0x8E]
    );
    // v3.1.1 DISCONNECT carries nothing, whatever the reason.
    assert_eq!(
        enc(&Packet::Disconnect(Disconnect::new(ReasonCode(0x8E))), V3),
        [0xE0, 0x00]
    );
}

#[test]
fn auth_round_trips_in_v5() {
    let variants = [
        Auth::default(),
        Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: AuthProperties {
                authentication_method: Some("SCRAM-SHA-1".into()),
                authentication_data: Some(Bytes::from_static(b"data")),
                reason_string: Some("more".into()),
                user_properties: users(),
            },
        },
        Auth {
            reason_code: ReasonCode::RE_AUTHENTICATE,
            properties: AuthProperties::default(),
        },
    ];
    for a in variants {
        round_trip(&Packet::Auth(a.clone()), V5);
        round_trip_server(&Packet::Auth(a), V5);
    }
    assert_eq!(enc(&Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
    // A reason code without properties still carries a zero property length.
    assert_eq!(
        enc(
            &Packet::Auth(Auth {
                reason_code: ReasonCode::RE_AUTHENTICATE,
                properties: AuthProperties::default()
            }),
            V5
        ),
        [0xF0, 0x02, 0x19, 0x00]
    );
}

#[test]
fn auth_is_not_encoded_for_v3() {
    let mut out = BytesMut::new();
    assert_eq!(encode(&Packet::Auth(Auth::default()), V3, &mut out), Ok(0));
    assert!(out.is_empty());
}

#[test]
fn several_packets_in_one_buffer_decode_one_at_a_time() {
    let mut bytes = enc(&Packet::PingReq, V5);
    bytes.extend(enc(&Packet::Publish(publish_v5(QoS::AtLeastOnce)), V5));
    bytes.extend(enc(&Packet::Disconnect(Disconnect::default()), V5));
    bytes.extend_from_slice(&[0x30]); // start of the next packet
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, Some(V5), MAX), Ok(Some(Packet::PingReq)));
    assert!(matches!(
        decode(&mut buf, Some(V5), MAX),
        Ok(Some(Packet::Publish(_)))
    ));
    assert!(matches!(
        decode(&mut buf, Some(V5), MAX),
        Ok(Some(Packet::Disconnect(_)))
    ));
    assert_eq!(decode(&mut buf, Some(V5), MAX), Ok(None));
    assert_eq!(&buf[..], [0x30]);
}
