//! Packet-body decoding, one function per packet type.
//!
//! Called by [`super::decode`] once a whole packet is in hand (check-then-parse), with a
//! [`Reader`] over the frozen packet so binary fields and payloads stay zero-copy. Every
//! refusal carries the reason code the server sends back; see the module docs of
//! [`super`] for the rule → code table.

use super::decode_server as server;
use super::properties;
use super::reader::Reader;
use super::DecodeError;
use crate::packet::{
    Connect, Disconnect, Packet, ProtocolVersion, PubResp, Publish, QoS, Subscribe,
    SubscriptionOptions, Unsubscribe, Will,
};
use crate::reason::ReasonCode;

/// Control packet types (the high nibble of the first byte).
pub(crate) mod ty {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Which side sent the bytes being decoded: some packets only flow one way, and a
/// PUBLISH may carry subscription identifiers only from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    Client,
    Server,
}

/// Validate the first byte alone, so a bad packet is refused as soon as its first byte
/// arrives (before a possibly huge body is buffered).
///
/// Order: reserved type 0 and AUTH in v3.1.1 (0x81), fixed-header flags (0x81), then
/// whether this packet may arrive now from this sender (0x82).
pub(crate) fn check_first_byte(
    first: u8,
    version: Option<ProtocolVersion>,
    sender: Sender,
) -> Result<(), DecodeError> {
    let kind = first >> 4;
    let flags = first & 0x0F;
    if kind == 0 {
        return Err(DecodeError::malformed("packet type 0 is reserved"));
    }
    if kind == ty::AUTH && version == Some(ProtocolVersion::V311) {
        return Err(DecodeError::malformed(
            "packet type 15 is reserved in MQTT 3.1.1",
        ));
    }
    if kind == ty::PUBLISH {
        let qos = (flags >> 1) & 0x03;
        if qos == 3 {
            return Err(DecodeError::malformed("PUBLISH with QoS 3"));
        }
        if qos == 0 && flags & 0x08 != 0 {
            return Err(DecodeError::malformed("PUBLISH with DUP set at QoS 0"));
        }
    } else {
        let expected = match kind {
            ty::PUBREL | ty::SUBSCRIBE | ty::UNSUBSCRIBE => 0b0010,
            _ => 0,
        };
        if flags != expected {
            return Err(DecodeError::malformed("invalid fixed header flags"));
        }
    }
    match sender {
        Sender::Client => match version {
            None if kind != ty::CONNECT => {
                Err(DecodeError::protocol("first packet must be CONNECT"))
            }
            Some(_) if kind == ty::CONNECT => Err(DecodeError::protocol("second CONNECT")),
            _ if matches!(kind, ty::CONNACK | ty::SUBACK | ty::UNSUBACK | ty::PINGRESP) => Err(
                DecodeError::protocol("server-to-client packet received from a client"),
            ),
            _ => Ok(()),
        },
        Sender::Server => {
            if matches!(
                kind,
                ty::CONNECT | ty::SUBSCRIBE | ty::UNSUBSCRIBE | ty::PINGREQ
            ) {
                Err(DecodeError::protocol(
                    "client-to-server packet received from a server",
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// Decode the body of a packet whose first byte passed [`check_first_byte`].
/// `r` covers exactly the Remaining Length bytes.
pub(crate) fn body(
    first: u8,
    r: &mut Reader<'_>,
    version: Option<ProtocolVersion>,
    sender: Sender,
) -> Result<Packet, DecodeError> {
    let kind = first >> 4;
    if kind == ty::CONNECT {
        return connect(r).map(|c| Packet::Connect(Box::new(c)));
    }
    // check_first_byte only lets CONNECT through without a version.
    let Some(v) = version else {
        return Err(DecodeError::protocol("first packet must be CONNECT"));
    };
    let v5 = v == ProtocolVersion::V5;
    let packet = match kind {
        ty::PUBLISH => Packet::Publish(publish(first, r, v5, sender)?),
        ty::PUBACK => Packet::PubAck(pub_resp(r, v5)?),
        ty::PUBREC => Packet::PubRec(pub_resp(r, v5)?),
        ty::PUBREL => Packet::PubRel(pub_resp(r, v5)?),
        ty::PUBCOMP => Packet::PubComp(pub_resp(r, v5)?),
        ty::SUBSCRIBE => Packet::Subscribe(subscribe(r, v5)?),
        ty::UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(r, v5)?),
        ty::PINGREQ => {
            r.expect_end("PINGREQ has no body")?;
            Packet::PingReq
        }
        ty::DISCONNECT => Packet::Disconnect(disconnect(r, v5)?),
        ty::AUTH => Packet::Auth(auth(r)?),
        ty::CONNACK => Packet::ConnAck(server::connack(r, v5)?),
        ty::SUBACK => Packet::SubAck(server::suback(r, v5)?),
        ty::UNSUBACK => Packet::UnsubAck(server::unsuback(r, v5)?),
        ty::PINGRESP => {
            r.expect_end("PINGRESP has no body")?;
            Packet::PingResp
        }
        _ => return Err(DecodeError::malformed("packet type 0 is reserved")),
    };
    Ok(packet)
}

/// CONNECT (§3.1). The protocol name and level choose the layout of the rest.
fn connect(r: &mut Reader<'_>) -> Result<Connect, DecodeError> {
    // A name that is not even a string is malformed; a well-formed but unknown
    // name or level is answered with 0x84 so the client learns what went wrong.
    let name = r.str()?;
    let level = r.u8()?;
    let protocol = match (name, level) {
        ("MQTT", 4) => ProtocolVersion::V311,
        ("MQTT", 5) => ProtocolVersion::V5,
        _ => {
            return Err(DecodeError::new(
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                "unsupported protocol name or level",
            ))
        }
    };
    let v5 = protocol == ProtocolVersion::V5;

    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::malformed("reserved CONNECT flag set"));
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let has_password = flags & 0x40 != 0;
    let has_username = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(DecodeError::malformed(
            "will QoS or retain set without will flag",
        ));
    }
    let Some(will_qos) = QoS::from_u8(will_qos) else {
        return Err(DecodeError::malformed("will QoS 3"));
    };
    if !v5 && has_password && !has_username {
        return Err(DecodeError::malformed(
            "password flag without user name flag",
        ));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        properties::connect(r)?
    } else {
        Default::default()
    };

    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 {
            properties::will(r)?
        } else {
            Default::default()
        };
        let topic = r.string()?;
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if has_username {
        Some(r.string()?)
    } else {
        None
    };
    let password = if has_password {
        Some(r.binary()?)
    } else {
        None
    };
    r.expect_end("bytes after the CONNECT payload")?;
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

/// PUBLISH (§3.3). Topic validation and alias resolution are the session's job: an
/// empty topic is returned as is. The payload is a zero-copy slice.
fn publish(
    first: u8,
    r: &mut Reader<'_>,
    v5: bool,
    sender: Sender,
) -> Result<Publish, DecodeError> {
    let Some(qos) = QoS::from_u8((first >> 1) & 0x03) else {
        return Err(DecodeError::malformed("PUBLISH with QoS 3"));
    };
    let topic = r.string()?;
    let packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        Some(r.packet_id()?)
    };
    let properties = if v5 {
        let ctx = match sender {
            Sender::Client => &properties::PUBLISH_FROM_CLIENT,
            Sender::Server => &properties::PUBLISH_FROM_SERVER,
        };
        properties::publish(r, ctx)?
    } else {
        Default::default()
    };
    Ok(Publish {
        dup: first & 0x08 != 0,
        qos,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

/// PUBACK/PUBREC/PUBREL/PUBCOMP (§3.4-3.7). v5 short forms: Remaining Length 2 means
/// success without properties, 3 means a reason code without properties. Reason codes
/// are passed through unchecked (the newtype keeps unknown ones intact).
fn pub_resp(r: &mut Reader<'_>, v5: bool) -> Result<PubResp, DecodeError> {
    let packet_id = r.packet_id()?;
    if !v5 || r.is_empty() {
        r.expect_end("bytes after the packet identifier")?;
        return Ok(PubResp::new(packet_id, ReasonCode::SUCCESS));
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        Default::default()
    } else {
        properties::ack(r)?
    };
    r.expect_end("bytes after the properties")?;
    Ok(PubResp {
        packet_id,
        reason_code,
        properties,
    })
}

/// SUBSCRIBE (§3.8). Filters are returned raw; the broker validates them with
/// [`crate::topic`] (and rejects No Local on shared subscriptions).
fn subscribe(r: &mut Reader<'_>, v5: bool) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let (subscription_identifier, user_properties) = if v5 {
        properties::subscribe(r)?
    } else {
        (None, Vec::new())
    };
    if r.is_empty() {
        return Err(DecodeError::protocol("SUBSCRIBE without a topic filter"));
    }
    let mut filters = Vec::with_capacity(1);
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r.u8()?, v5)?;
        filters.push((filter, options));
    }
    Ok(Subscribe {
        packet_id,
        subscription_identifier,
        user_properties,
        filters,
    })
}

fn subscription_options(byte: u8, v5: bool) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v5 { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::malformed(
            "reserved subscription option bits set",
        ));
    }
    let Some(qos) = QoS::from_u8(byte & 0x03) else {
        return Err(DecodeError::malformed("subscription with QoS 3"));
    };
    let retain_handling = (byte >> 4) & 0x03;
    if retain_handling == 3 {
        return Err(DecodeError::protocol("retain handling 3"));
    }
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

/// UNSUBSCRIBE (§3.10).
fn unsubscribe(r: &mut Reader<'_>, v5: bool) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let user_properties = if v5 {
        properties::unsubscribe(r)?
    } else {
        Vec::new()
    };
    if r.is_empty() {
        return Err(DecodeError::protocol("UNSUBSCRIBE without a topic filter"));
    }
    let mut filters = Vec::with_capacity(1);
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    Ok(Unsubscribe {
        packet_id,
        user_properties,
        filters,
    })
}

/// DISCONNECT (§3.14). `E0 00` is valid in both versions; in v5 `E0 01 rc` carries a
/// reason code without properties.
fn disconnect(r: &mut Reader<'_>, v5: bool) -> Result<Disconnect, DecodeError> {
    if !v5 || r.is_empty() {
        r.expect_end("MQTT 3.1.1 DISCONNECT has no body")?;
        return Ok(Disconnect::default());
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        Default::default()
    } else {
        properties::disconnect(r)?
    };
    r.expect_end("bytes after the DISCONNECT properties")?;
    Ok(Disconnect {
        reason_code,
        properties,
    })
}

/// AUTH (§3.15, v5 only). `F0 00` means success without properties. A lone reason code
/// (Remaining Length 1) is accepted like DISCONNECT's short form.
fn auth(r: &mut Reader<'_>) -> Result<crate::packet::Auth, DecodeError> {
    if r.is_empty() {
        return Ok(Default::default());
    }
    let reason_code = ReasonCode(r.u8()?);
    let properties = if r.is_empty() {
        Default::default()
    } else {
        properties::auth(r)?
    };
    r.expect_end("bytes after the AUTH properties")?;
    Ok(crate::packet::Auth {
        reason_code,
        properties,
    })
}

/// The protocol level byte of a CONNECT at the start of `buf` (see
/// [`super::peek_protocol_level`]).
pub(crate) fn peek_level(buf: &[u8]) -> Option<u8> {
    let (&first, rest) = buf.split_first()?;
    if first >> 4 != ty::CONNECT {
        return None;
    }
    let super::varint::VarInt::Value(remaining, n) = super::varint::read(rest) else {
        return None;
    };
    let body = rest.get(n..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let level_at = 2 + name_len;
    if level_at >= remaining as usize {
        return None; // the level byte would lie outside this packet
    }
    body.get(level_at).copied()
}
