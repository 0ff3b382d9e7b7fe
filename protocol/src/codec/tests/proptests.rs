//! Property-based round trips: any packet the model can express validly encodes and
//! decodes back to itself, in both versions and both directions.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::*;
use crate::packet::*;
use crate::reason::ReasonCode;

/// UTF-8 strings without U+0000 (any other code point, multi-byte ones included).
fn string() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..8).prop_map(|cs| cs.into_iter().filter(|&c| c != '\0').collect())
}

fn bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn users() -> impl Strategy<Value = Vec<UserProperty>> {
    vec((string(), string()), 0..3)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1u16..=u16::MAX).prop_map(pid)
}

fn flag_byte() -> impl Strategy<Value = Option<u8>> {
    of(0u8..=1)
}

fn sub_id() -> impl Strategy<Value = u32> {
    1u32..=268_435_455
}

fn rc() -> impl Strategy<Value = ReasonCode> {
    any::<u8>().prop_map(ReasonCode)
}

fn ack_props(v5: bool) -> BoxedStrategy<AckProperties> {
    if v5 {
        (of(string()), users())
            .prop_map(|(reason_string, user_properties)| AckProperties {
                reason_string,
                user_properties,
            })
            .boxed()
    } else {
        Just(AckProperties::default()).boxed()
    }
}

fn connect(v5: bool) -> BoxedStrategy<Packet> {
    let props = if v5 {
        (
            (of(any::<u32>()), of(1u16..), of(1u32..), of(any::<u16>())),
            (of(any::<bool>()), of(any::<bool>()), users()),
            of((string(), of(bytes()))),
        )
            .prop_map(|((sei, rm, mps, tam), (rri, rpi, up), auth)| {
                let (authentication_method, authentication_data) = match auth {
                    Some((m, d)) => (Some(m), d),
                    None => (None, None),
                };
                ConnectProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_packet_size: mps,
                    topic_alias_maximum: tam,
                    request_response_information: rri,
                    request_problem_information: rpi,
                    user_properties: up,
                    authentication_method,
                    authentication_data,
                }
            })
            .boxed()
    } else {
        Just(ConnectProperties::default()).boxed()
    };
    let will_props = if v5 {
        (
            (of(any::<u32>()), flag_byte(), of(any::<u32>())),
            (of(string()), of(string()), of(bytes()), users()),
        )
            .prop_map(|((wdi, pfi, mei), (ct, rt, cd, up))| WillProperties {
                will_delay_interval: wdi,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
            })
            .boxed()
    } else {
        Just(WillProperties::default()).boxed()
    };
    let will = of(
        (string(), bytes(), qos(), any::<bool>(), will_props).prop_map(
            |(topic, payload, qos, retain, properties)| Will {
                topic,
                payload,
                qos,
                retain,
                properties,
            },
        ),
    );
    (
        (any::<bool>(), any::<u16>(), string(), will),
        (of(string()), of(bytes()), props),
    )
        .prop_map(
            move |((clean_start, keep_alive, client_id, will), (user, pass, properties))| {
                // v3.1.1 forbids a password without a user name.
                let password = if v5 || user.is_some() { pass } else { None };
                Packet::Connect(Box::new(Connect {
                    protocol: if v5 { V5 } else { V3 },
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username: user,
                    password,
                    properties,
                }))
            },
        )
        .boxed()
}

fn connack(v5: bool) -> BoxedStrategy<Packet> {
    if !v5 {
        return (
            any::<bool>(),
            prop::sample::select(vec![0x00u8, 0x84, 0x85, 0x88, 0x86, 0x87]),
        )
            .prop_map(|(session_present, rc)| {
                Packet::ConnAck(ConnAck {
                    session_present,
                    reason_code: ReasonCode(rc),
                    properties: Default::default(),
                })
            })
            .boxed();
    }
    let props = (
        (
            of(any::<u32>()),
            of(1u16..),
            of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
            of(any::<bool>()),
            of(1u32..),
            of(string()),
        ),
        (of(any::<u16>()), of(string()), users(), of(any::<bool>())),
        (
            of(any::<bool>()),
            of(any::<bool>()),
            of(any::<u16>()),
            of(string()),
        ),
        (of(string()), of(string()), of(bytes())),
    )
        .prop_map(
            |(
                (sei, rm, mq, ra, mps, aci),
                (tam, rs, up, wsa),
                (sia, ssa, ska, ri),
                (sr, am, ad),
            )| {
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method: am,
                    authentication_data: ad,
                }
            },
        );
    (any::<bool>(), rc(), props)
        .prop_map(|(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason_code,
                properties,
            })
        })
        .boxed()
}

fn publish(v5: bool, from_server: bool) -> BoxedStrategy<Packet> {
    let props = if v5 {
        let sub_ids = if from_server {
            vec(sub_id(), 0..3).boxed()
        } else {
            Just(Vec::new()).boxed()
        };
        (
            (flag_byte(), of(any::<u32>()), of(1u16..), of(string())),
            (of(bytes()), users(), sub_ids, of(string())),
        )
            .prop_map(|((pfi, mei, ta, rt), (cd, up, si, ct))| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
                subscription_identifiers: si,
                content_type: ct,
            })
            .boxed()
    } else {
        Just(PublishProperties::default()).boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        string(),
        packet_id(),
        props,
        vec(any::<u8>(), 0..300),
    )
        .prop_map(|(qos, dup, retain, topic, id, properties, payload)| {
            let has_id = qos != QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && has_id,
                qos,
                retain,
                topic,
                packet_id: has_id.then_some(id),
                properties,
                payload: Bytes::from(payload),
            })
        })
        .boxed()
}

fn pub_resp(v5: bool) -> BoxedStrategy<Packet> {
    let rc = if v5 {
        rc().boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    };
    (0..4u8, packet_id(), rc, ack_props(v5))
        .prop_map(|(kind, packet_id, reason_code, properties)| {
            let r = PubResp {
                packet_id,
                reason_code,
                properties,
            };
            match kind {
                0 => Packet::PubAck(r),
                1 => Packet::PubRec(r),
                2 => Packet::PubRel(r),
                _ => Packet::PubComp(r),
            }
        })
        .boxed()
}

fn subscribe(v5: bool) -> BoxedStrategy<Packet> {
    let options = (qos(), any::<bool>(), any::<bool>(), 0u8..=2).prop_map(
        move |(qos, no_local, retain_as_published, retain_handling)| {
            if v5 {
                SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                }
            }
        },
    );
    let (sid, up) = if v5 {
        (of(sub_id()).boxed(), users().boxed())
    } else {
        (Just(None).boxed(), Just(Vec::new()).boxed())
    };
    (packet_id(), sid, up, vec((string(), options), 1..4))
        .prop_map(
            |(packet_id, subscription_identifier, user_properties, filters)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    subscription_identifier,
                    user_properties,
                    filters,
                })
            },
        )
        .boxed()
}

fn suback(v5: bool) -> BoxedStrategy<Packet> {
    let codes = if v5 {
        vec(rc(), 0..4).boxed()
    } else {
        vec(
            prop::sample::select(vec![0u8, 1, 2, 0x80]).prop_map(ReasonCode),
            0..4,
        )
        .boxed()
    };
    (packet_id(), ack_props(v5), codes)
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
        .boxed()
}

fn unsubscribe(v5: bool) -> BoxedStrategy<Packet> {
    let up = if v5 {
        users().boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), up, vec(string(), 1..4))
        .prop_map(|(packet_id, user_properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                user_properties,
                filters,
            })
        })
        .boxed()
}

fn unsuback(v5: bool) -> BoxedStrategy<Packet> {
    let codes = if v5 {
        vec(rc(), 0..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), ack_props(v5), codes)
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
        .boxed()
}

fn disconnect(v5: bool) -> BoxedStrategy<Packet> {
    if !v5 {
        return Just(Packet::Disconnect(Disconnect::default())).boxed();
    }
    (rc(), of(any::<u32>()), of(string()), users(), of(string()))
        .prop_map(|(reason_code, sei, rs, up, sr)| {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties: DisconnectProperties {
                    session_expiry_interval: sei,
                    reason_string: rs,
                    user_properties: up,
                    server_reference: sr,
                },
            })
        })
        .boxed()
}

fn auth() -> BoxedStrategy<Packet> {
    (rc(), of(string()), of(bytes()), of(string()), users())
        .prop_map(|(reason_code, am, ad, rs, up)| {
            Packet::Auth(Auth {
                reason_code,
                properties: AuthProperties {
                    authentication_method: am,
                    authentication_data: ad,
                    reason_string: rs,
                    user_properties: up,
                },
            })
        })
        .boxed()
}

fn client_packet(v5: bool) -> BoxedStrategy<Packet> {
    let mut options = vec![
        connect(v5),
        publish(v5, false),
        pub_resp(v5),
        subscribe(v5),
        unsubscribe(v5),
        Just(Packet::PingReq).boxed(),
        disconnect(v5),
    ];
    if v5 {
        options.push(auth());
    }
    proptest::strategy::Union::new(options).boxed()
}

fn server_packet(v5: bool) -> BoxedStrategy<Packet> {
    let mut options = vec![
        connack(v5),
        publish(v5, true),
        pub_resp(v5),
        suback(v5),
        unsuback(v5),
        Just(Packet::PingResp).boxed(),
        disconnect(v5),
    ];
    if v5 {
        options.push(auth());
    }
    proptest::strategy::Union::new(options).boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_v5_client_packet_round_trips(p in client_packet(true)) {
        round_trip(&p, V5);
    }

    #[test]
    fn any_v3_client_packet_round_trips(p in client_packet(false)) {
        round_trip(&p, V3);
    }

    #[test]
    fn any_v5_server_packet_round_trips(p in server_packet(true)) {
        round_trip_server(&p, V5);
    }

    #[test]
    fn any_v3_server_packet_round_trips(p in server_packet(false)) {
        round_trip_server(&p, V3);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_consume_on_failure(
        data in vec(any::<u8>(), 0..64),
        which in 0..3u8,
    ) {
        let version = match which { 0 => None, 1 => Some(V3), _ => Some(V5) };
        let mut buf = BytesMut::from(&data[..]);
        let before = buf.len();
        match decode(&mut buf, version, MAX) {
            Ok(Some(_)) => prop_assert!(buf.len() < before),
            _ => prop_assert_eq!(&buf[..], &data[..]),
        }
    }
}
