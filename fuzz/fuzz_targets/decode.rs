//! Feeds arbitrary bytes to the codec's decoder, as every protocol state and direction.
//!
//! Invariants checked (any violation aborts the fuzzer):
//! - no panic anywhere in `decode`, `decode_from_server`, `peek_protocol_level`,
//!   `encode`;
//! - `Ok(None)` and `Err` leave the buffer untouched; `Ok(Some)` consumes bytes;
//! - whatever decodes re-encodes, and the encoding decodes to the same packet;
//! - a stream decoded packet by packet (version learnt from its CONNECT) behaves too.

#![no_main]

use bytes::BytesMut;
use gatehouse_protocol::codec::{decode, decode_from_server, encode, peek_protocol_level};
use gatehouse_protocol::{Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 1 << 20;

fn reencode(p: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    let n = match encode(p, version, &mut out) {
        Ok(n) => n,
        Err(e) => panic!("decoded packet failed to re-encode: {e}: {p:?}"),
    };
    assert_eq!(n, out.len());
    out
}

fuzz_target!(|data: &[u8]| {
    let _ = peek_protocol_level(data);

    // One packet, each protocol state.
    for version in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
        let mut buf = BytesMut::from(data);
        match decode(&mut buf, version, MAX) {
            Ok(Some(p)) => {
                assert!(buf.len() < data.len());
                let v = match (&p, version) {
                    (Packet::Connect(c), _) => c.protocol,
                    (_, Some(v)) => v,
                    (_, None) => panic!("non-CONNECT accepted before CONNECT"),
                };
                let mut out = reencode(&p, v);
                assert_eq!(decode(&mut out, version, MAX), Ok(Some(p)));
                assert!(out.is_empty());
            }
            Ok(None) | Err(_) => assert_eq!(&buf[..], data),
        }
    }

    // Server-to-client direction (test clients and tools).
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        match decode_from_server(&mut buf, v, MAX) {
            Ok(Some(p)) => {
                let mut out = reencode(&p, v);
                assert_eq!(decode_from_server(&mut out, v, MAX), Ok(Some(p)));
            }
            Ok(None) | Err(_) => assert_eq!(&buf[..], data),
        }
    }

    // As a stream: CONNECT first, then packets in the version it chose.
    let mut buf = BytesMut::from(data);
    let mut version = None;
    while let Ok(Some(p)) = decode(&mut buf, version, MAX) {
        if let Packet::Connect(c) = &p {
            version = Some(c.protocol);
        }
        if let Some(v) = version {
            let _ = reencode(&p, v);
        }
    }
});
