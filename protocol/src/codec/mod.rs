//! MQTT 5.0 / 3.1.1 codec: check-then-parse framing, decoding with the specs'
//! malformed-packet and protocol-error rules, and encoding.
//!
//! # Decoding
//! [`decode`] looks at the fixed header first: the first byte is validated on its own
//! (so a bad packet is refused as soon as it starts to arrive), then the Remaining
//! Length; a packet larger than the limit is refused before its body is buffered.
//! Only a complete packet is split off the buffer and frozen; strings are copied into
//! the model's `String`s, while binary data and payloads are zero-copy `Bytes` slices.
//!
//! Each refusal carries the reason code the server should send (DISCONNECT, or CONNACK
//! for a bad CONNECT) before closing:
//!
//! | rule | reason |
//! | --- | --- |
//! | packet type 0; AUTH (type 15) in v3.1.1 | 0x81 |
//! | fixed-header flags not 0 (not 0b0010 for PUBREL/SUBSCRIBE/UNSUBSCRIBE); PUBLISH QoS 3; PUBLISH DUP at QoS 0 | 0x81 |
//! | Remaining Length longer than 4 bytes or not minimally encoded | 0x81 |
//! | packet (fixed header + Remaining Length) larger than `max_packet_size` | 0x95 |
//! | before CONNECT: anything but CONNECT; after it: CONNECT again | 0x82 |
//! | CONNACK, SUBACK, UNSUBACK, PINGRESP from a client | 0x82 |
//! | field running past the packet; bytes left where the layout allows none | 0x81 |
//! | string not UTF-8 or containing U+0000 | 0x81 |
//! | packet identifier 0 | 0x81 |
//! | CONNECT: protocol name not a string | 0x81 |
//! | CONNECT: name other than `MQTT`, or level other than 4/5 (`MQIsdp` included) | 0x84 |
//! | CONNECT: reserved flag; will QoS/retain without will flag; will QoS 3; v3.1.1 password without user name | 0x81 |
//! | CONNECT: authentication data without authentication method | 0x82 |
//! | property: unknown identifier, or not allowed in this packet | 0x81 |
//! | property: duplicate of a single-valued one; subscription identifier in a client PUBLISH | 0x82 |
//! | property: receive maximum 0, maximum packet size 0, subscription identifier 0, a 0/1 byte with another value | 0x82 |
//! | property: topic alias 0 | 0x94 (the spec's answer to any invalid alias) |
//! | SUBSCRIBE/UNSUBSCRIBE without a filter | 0x82 |
//! | subscription options: reserved bits (v5: 6-7; v3.1.1: 2-7); QoS 3 | 0x81 |
//! | subscription options: retain handling 3 | 0x82 |
//!
//! Left to the broker: topic name/filter validity (see [`crate::topic`]), topic alias
//! ranges, UTF-8 payloads when the payload format indicator is 1, No Local on shared
//! subscriptions, and reason codes' meaning (unknown ones pass through unchanged).
//!
//! # Encoding
//! [`encode`] writes any packet for either version; [`encode_publish`] is the fan-out
//! path. Both append to `out`, reserve once, and never panic. See `encode.rs` for how
//! v5-only content is dropped for v3.1.1.

mod decode;
mod decode_server;
mod encode;
mod properties;
mod props_encode;
mod reader;
mod sink;
mod varint;

#[cfg(test)]
mod tests;

use std::borrow::Cow;

use bytes::BytesMut;

use crate::packet::{Packet, PacketId, ProtocolVersion, PublishProperties, QoS};
use crate::reason::ReasonCode;

use decode::Sender;
use reader::Reader;
use varint::VarInt;

/// The largest Remaining Length MQTT can express (four variable-byte-integer bytes).
pub const MAX_REMAINING_LENGTH: u32 = varint::MAX;

/// A packet the decoder refused. `reason` is the v5 reason code the server sends in
/// DISCONNECT (or CONNACK) before closing: 0x81, 0x82, 0x95, 0x84...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: ReasonCode,
    pub detail: Cow<'static, str>,
}

impl DecodeError {
    pub(crate) fn new(reason: ReasonCode, detail: &'static str) -> Self {
        DecodeError {
            reason,
            detail: Cow::Borrowed(detail),
        }
    }

    /// 0x81: the bytes do not form a packet the spec allows.
    pub(crate) fn malformed(detail: &'static str) -> Self {
        Self::new(ReasonCode::MALFORMED_PACKET, detail)
    }

    /// 0x82: a well-formed packet that breaks a protocol rule.
    pub(crate) fn protocol(detail: &'static str) -> Self {
        Self::new(ReasonCode::PROTOCOL_ERROR, detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("packet of {0} bytes exceeds the MQTT maximum remaining length")]
    TooLarge(usize),
    #[error("string field of {0} bytes exceeds 65535")]
    StringTooLong(usize),
}

/// Decode one packet from the front of `buf`, consuming it. `Ok(None)`: need more bytes.
/// `version` is `None` before CONNECT (then only CONNECT is accepted).
///
/// Nothing is consumed unless a whole packet is returned (errors leave `buf` as it was). `max_packet_size` bounds the
/// whole packet (fixed header included) and is enforced as soon as the Remaining Length
/// is known, with reason 0x95. Errors are final: the connection should be closed.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode_from(buf, version, max_packet_size, Sender::Client)
}

/// Decode one packet sent by a server (CONNACK, SUBACK, PUBLISH with subscription
/// identifiers...), for test clients and tools. Same framing and rules as [`decode`],
/// with the packet-direction checks reversed.
pub fn decode_from_server(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    decode_from(buf, Some(version), max_packet_size, Sender::Server)
}

#[inline]
fn decode_from(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
    sender: Sender,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    decode::check_first_byte(first, version, sender)?;
    let (remaining, len_bytes) = match varint::read(&buf[1..]) {
        VarInt::Value(v, n) => (v as usize, n),
        VarInt::Incomplete => return Ok(None),
        VarInt::Malformed => {
            return Err(DecodeError::malformed("malformed remaining length"));
        }
    };
    let header = 1 + len_bytes;
    let total = header + remaining;
    if total > max_packet_size as usize {
        return Err(DecodeError::new(
            ReasonCode::PACKET_TOO_LARGE,
            "packet exceeds the maximum packet size",
        ));
    }
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let mut reader = Reader::new(&frame, header);
    match decode::body(first, &mut reader, version, sender) {
        Ok(packet) => Ok(Some(packet)),
        Err(e) => {
            restore(buf, frame);
            Err(e)
        }
    }
}

/// Put a refused packet back at the front of `buf`, so errors never consume input (the
/// broker may still want [`peek_protocol_level`] on a CONNECT that failed to decode).
/// A copy, but only on the cold path that ends the connection anyway.
#[cold]
fn restore(buf: &mut BytesMut, frame: bytes::Bytes) {
    let mut joined = BytesMut::with_capacity(frame.len() + buf.len());
    joined.extend_from_slice(&frame);
    joined.extend_from_slice(buf);
    *buf = joined;
}

/// The protocol level byte of a CONNECT at the start of `buf`, if enough bytes are there.
///
/// Lets the server answer a CONNECT that fails to decode (unsupported level, malformed
/// body) with a CONNACK in the client's own version. `None` if `buf` does not start
/// with a CONNECT, its Remaining Length is incomplete or malformed, or the level byte
/// has not arrived (or lies beyond the packet).
pub fn peek_protocol_level(buf: &[u8]) -> Option<u8> {
    decode::peek_level(buf)
}

/// Encode `packet` for `version` onto `out`.
///
/// Returns the number of bytes appended. v5 properties that are `None`/empty are
/// omitted and acknowledgements use their short forms. For v3.1.1, v5-only content is
/// dropped, and AUTH (which v3.1.1 lacks) appends nothing and returns `Ok(0)`.
/// On error nothing is appended.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    encode::packet(packet, version, out)
}

/// A PUBLISH to encode without building a [`crate::Publish`]: the fan-out path shares one
/// message among many subscribers and only the per-delivery fields differ.
#[derive(Debug, Clone, Copy)]
pub struct PublishView<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty when only the topic alias is sent.
    pub topic: &'a str,
    pub packet_id: Option<PacketId>,
    /// Message properties as published; its `topic_alias`, `message_expiry_interval` and
    /// `subscription_identifiers` are ignored in favour of the fields below.
    pub properties: &'a PublishProperties,
    pub topic_alias: Option<u16>,
    pub message_expiry_interval: Option<u32>,
    pub subscription_identifiers: &'a [u32],
    pub payload: &'a [u8],
}

/// Encode a PUBLISH from a view; returns the number of bytes appended.
///
/// Computes the whole size first, reserves once and writes straight into `out`; no
/// intermediate buffer. DUP is cleared at QoS 0, and `packet_id` is only written for
/// QoS 1/2 (a missing one is written as 0: a caller bug the peer will reject).
pub fn encode_publish(
    view: &PublishView<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    encode::publish(view, version, out)
}
