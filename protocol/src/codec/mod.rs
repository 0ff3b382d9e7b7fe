//! Placeholder: the codec is being written (see the codec task). Signatures are final.

use std::borrow::Cow;

use bytes::BytesMut;

use crate::packet::{Packet, PacketId, ProtocolVersion, PublishProperties, QoS};
use crate::reason::ReasonCode;

/// A packet the decoder refused. `reason` is the v5 reason code the server sends in
/// DISCONNECT (or CONNACK) before closing: 0x81, 0x82, 0x95, 0x84...
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct DecodeError {
    pub reason: ReasonCode,
    pub detail: Cow<'static, str>,
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
pub fn decode(
    _buf: &mut BytesMut,
    _version: Option<ProtocolVersion>,
    _max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    unimplemented!()
}

/// The protocol level byte of a CONNECT at the start of `buf`, if enough bytes are there.
pub fn peek_protocol_level(_buf: &[u8]) -> Option<u8> {
    unimplemented!()
}

/// Encode `packet` for `version` onto `out`.
pub fn encode(
    _packet: &Packet,
    _version: ProtocolVersion,
    _out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    unimplemented!()
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
pub fn encode_publish(
    _view: &PublishView<'_>,
    _version: ProtocolVersion,
    _out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    unimplemented!()
}
