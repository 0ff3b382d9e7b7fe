//! Deterministic fuzzing that runs with `cargo test` (the libFuzzer target in `fuzz/`
//! needs nightly; this needs nothing).
//!
//! A fixed-seed generator mutates valid encodings of many packets (bit flips, byte
//! overwrites, insertions, deletions, truncations, splices, length-field tweaks) and
//! also feeds pure noise. Every input is decoded as each version and as each direction;
//! the decoder must not panic, must not consume bytes unless it returns a packet, and
//! whatever decodes must re-encode (without panicking) to bytes that decode to the
//! same packet.

use bytes::BytesMut;

use super::*;
use crate::codec::decode_from_server;
use crate::packet::*;

/// xorshift64*: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

pub(super) fn seeds() -> Vec<Vec<u8>> {
    use super::roundtrip::{connect_v5, publish_v5};
    let mut out = Vec::new();
    let mut c3 = connect_v5();
    c3.protocol = V3;
    c3.properties = Default::default();
    if let Some(w) = c3.will.as_mut() {
        w.properties = Default::default();
    }
    let client: Vec<Packet> = vec![
        Packet::Connect(Box::new(connect_v5())),
        Packet::Publish(publish_v5(QoS::AtMostOnce)),
        Packet::Publish(publish_v5(QoS::ExactlyOnce)),
        Packet::PubAck(PubResp::new(pid(1), crate::ReasonCode(0x10))),
        Packet::PubRel(PubResp {
            packet_id: pid(2),
            reason_code: crate::ReasonCode::SUCCESS,
            properties: AckProperties {
                reason_string: Some("r".into()),
                user_properties: vec![("a".into(), "b".into())],
            },
        }),
        Packet::Subscribe(Subscribe {
            packet_id: pid(3),
            subscription_identifier: Some(300),
            user_properties: vec![("a".into(), "b".into())],
            filters: vec![
                ("a/+".into(), Default::default()),
                (
                    "b/#".into(),
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: true,
                        retain_handling: 1,
                    },
                ),
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(4),
            user_properties: vec![],
            filters: vec!["a/+".into(), "c".into()],
        }),
        Packet::PingReq,
        Packet::Disconnect(Disconnect {
            reason_code: crate::ReasonCode(0x04),
            properties: DisconnectProperties {
                session_expiry_interval: Some(5),
                reason_string: Some("x".into()),
                ..Default::default()
            },
        }),
        Packet::Auth(Auth {
            reason_code: crate::ReasonCode(0x18),
            properties: AuthProperties {
                authentication_method: Some("m".into()),
                authentication_data: Some(bytes::Bytes::from_static(b"d")),
                ..Default::default()
            },
        }),
    ];
    for p in &client {
        for v in [V3, V5] {
            if let Packet::Connect(_) = p {
                if v == V3 {
                    out.push(enc(&Packet::Connect(Box::new(c3.clone())), V3));
                    continue;
                }
            }
            if matches!(p, Packet::Auth(_)) && v == V3 {
                continue;
            }
            out.push(enc(p, v));
        }
    }
    let mut server_pub = publish_v5(QoS::AtLeastOnce);
    server_pub.properties.subscription_identifiers = vec![1, 2000];
    out.push(enc(&Packet::Publish(server_pub), V5));
    out.push(enc(
        &Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: crate::ReasonCode::SUCCESS,
            properties: ConnAckProperties {
                receive_maximum: Some(10),
                maximum_qos: Some(QoS::AtLeastOnce),
                assigned_client_identifier: Some("id".into()),
                ..Default::default()
            },
        }),
        V5,
    ));
    out.push(vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x80]);
    out.push(vec![0xB0, 0x05, 0x00, 0x01, 0x00, 0x00, 0x11]);
    out.push(vec![0xD0, 0x00]);
    out.push(vec![0xE0, 0x01, 0x8E]);
    out.push(vec![0xF0, 0x00]);
    out
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        match rng.below(9) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.byte();
            }
            2 => {
                let i = rng.below(input.len() + 1);
                input.insert(i, rng.byte());
            }
            3 if !input.is_empty() => {
                let i = rng.below(input.len());
                input.remove(i);
            }
            4 => {
                let n = rng.below(input.len() + 1);
                input.truncate(n);
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let at = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            // Interesting values where length fields and flags live.
            6 if !input.is_empty() => {
                let i = rng.below(input.len().min(12));
                input[i] = [0x00, 0x01, 0x02, 0x7F, 0x80, 0xFF][rng.below(6)];
            }
            // Keep the Remaining Length consistent after a body edit, so mutations
            // reach the body parsers instead of stopping at "need more bytes".
            7 if input.len() >= 2 && input.len() < 129 => {
                input[1] = (input.len() - 2) as u8;
            }
            _ => {
                let i = rng.below(input.len() + 1);
                input.insert(i, 0);
            }
        }
    }
}

/// Decode `data` every way; check the invariants; return how many packets decoded.
fn check(data: &[u8]) -> usize {
    let mut decoded = 0;
    for version in [None, Some(V3), Some(V5)] {
        let mut buf = BytesMut::from(data);
        match decode(&mut buf, version, MAX) {
            Ok(Some(p)) => {
                decoded += 1;
                assert!(buf.len() < data.len());
                let v = match (&p, version) {
                    (Packet::Connect(c), _) => c.protocol,
                    (_, Some(v)) => v,
                    (_, None) => panic!("non-CONNECT decoded before CONNECT: {p:?}"),
                };
                let mut out = BytesMut::new();
                encode(&p, v, &mut out).expect("a decoded packet re-encodes");
                let again = decode(&mut out, version, MAX);
                assert_eq!(again, Ok(Some(p)), "re-decode of {data:02X?}");
            }
            _ => assert_eq!(&buf[..], data, "consumed without a packet"),
        }
    }
    for v in [V3, V5] {
        let mut buf = BytesMut::from(data);
        if let Ok(Some(p)) = decode_from_server(&mut buf, v, MAX) {
            decoded += 1;
            let mut out = BytesMut::new();
            encode(&p, v, &mut out).expect("a decoded packet re-encodes");
            assert_eq!(decode_from_server(&mut out, v, MAX), Ok(Some(p)));
        }
    }
    let _ = crate::codec::peek_protocol_level(data);
    decoded
}

#[test]
fn decoder_survives_300k_mutated_and_random_inputs() {
    let seeds = seeds();
    for s in &seeds {
        assert!(check(s) > 0, "seed {s:02X?} decodes");
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0usize;
    let iterations = 300_000;
    for i in 0..iterations {
        let mut input = if i % 10 == 0 {
            let len = rng.below(48);
            (0..len).map(|_| rng.byte()).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        mutate(&mut rng, &seeds, &mut input);
        decoded += check(&input);
    }
    // The mutations must reach the body parsers, not only the header checks.
    assert!(decoded > iterations / 20, "only {decoded} inputs decoded");
}
