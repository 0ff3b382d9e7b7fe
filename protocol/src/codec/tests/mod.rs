//! Codec tests, named after the spec rule they check.
//!
//! Helpers build packets byte by byte (`frame`, `s`, `b`) so the malformed cases are
//! written exactly as they appear on the wire.

mod connect;
mod encoding;
mod framing;
mod fuzz_smoke;
mod packets;
mod properties;
mod proptests;
mod roundtrip;

use std::num::NonZeroU16;

use bytes::BytesMut;

use super::{decode, decode_from_server, encode, DecodeError};
use crate::packet::{Packet, PacketId, ProtocolVersion};

pub(super) const V3: ProtocolVersion = ProtocolVersion::V311;
pub(super) const V5: ProtocolVersion = ProtocolVersion::V5;
pub(super) const MAX: u32 = 1 << 20;

pub(super) fn pid(v: u16) -> PacketId {
    NonZeroU16::new(v).expect("test packet ids are non-zero")
}

/// A length-prefixed string/binary field.
pub(super) fn s(v: &str) -> Vec<u8> {
    b(v.as_bytes())
}

pub(super) fn b(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// A variable byte integer.
pub(super) fn vbi(mut v: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Fixed header (first byte + Remaining Length) around `body`.
pub(super) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(vbi(body.len()));
    out.extend_from_slice(body);
    out
}

/// A property block (length prefix + the given property bytes).
pub(super) fn props(p: &[u8]) -> Vec<u8> {
    let mut out = vbi(p.len());
    out.extend_from_slice(p);
    out
}

pub(super) fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// Decode a client-to-server packet from exactly `bytes`; asserts that a returned
/// packet consumed every byte.
pub(super) fn dec(bytes: &[u8], v: Option<ProtocolVersion>) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let r = decode(&mut buf, v, MAX);
    match &r {
        Ok(Some(_)) => assert!(buf.is_empty(), "decoder left {} bytes", buf.len()),
        _ => assert_eq!(&buf[..], bytes, "decoder consumed input without a packet"),
    }
    r
}

pub(super) fn dec_server(bytes: &[u8], v: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let r = decode_from_server(&mut buf, v, MAX);
    if let Ok(Some(_)) = &r {
        assert!(buf.is_empty(), "decoder left {} bytes", buf.len());
    }
    r
}

/// Decode a packet that must be valid and complete.
pub(super) fn ok(bytes: &[u8], v: Option<ProtocolVersion>) -> Packet {
    match dec(bytes, v) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet from {bytes:02X?}, got {other:?}"),
    }
}

/// The reason code a packet is refused with.
pub(super) fn err(bytes: &[u8], v: Option<ProtocolVersion>) -> u8 {
    match dec(bytes, v) {
        Err(e) => e.reason.0,
        other => panic!("expected an error from {bytes:02X?}, got {other:?}"),
    }
}

pub(super) fn enc(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    let n = encode(p, v, &mut out).expect("encodable");
    assert_eq!(n, out.len(), "returned length matches bytes appended");
    out.to_vec()
}

/// Encode, decode as coming from the client, and compare.
pub(super) fn round_trip(p: &Packet, v: ProtocolVersion) {
    let bytes = enc(p, v);
    let version = if matches!(p, Packet::Connect(_)) {
        None
    } else {
        Some(v)
    };
    let back = ok(&bytes, version);
    assert_eq!(&back, p, "round trip through {bytes:02X?}");
    // Every strict prefix is "need more bytes", and consumes nothing.
    for n in 0..bytes.len() {
        assert_eq!(dec(&bytes[..n], version), Ok(None), "prefix of {n} bytes");
    }
}

/// Encode, decode as coming from the server, and compare.
pub(super) fn round_trip_server(p: &Packet, v: ProtocolVersion) {
    let bytes = enc(p, v);
    match dec_server(&bytes, v) {
        Ok(Some(back)) => assert_eq!(&back, p, "round trip through {bytes:02X?}"),
        other => panic!("expected a packet from {bytes:02X?}, got {other:?}"),
    }
    for n in 0..bytes.len() {
        assert_eq!(dec_server(&bytes[..n], v), Ok(None), "prefix of {n} bytes");
    }
}
