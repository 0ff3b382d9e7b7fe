//! Packet encoding for both protocol versions.
//!
//! Non-PUBLISH packets go through one generic [`body`] function run twice (count, then
//! write; see [`super::sink`]). PUBLISH, the hot fan-out path, has its own
//! [`publish`] that computes every length up front, reserves once and writes straight
//! into the output.
//!
//! Version differences handled here: v3.1.1 packets drop properties and map reason
//! codes (CONNACK via [`ReasonCode::to_v3_connack`], SUBACK via
//! [`ReasonCode::to_v3_suback`]); PUBACK-family and DISCONNECT lose their reason codes;
//! UNSUBACK loses its payload; AUTH cannot be expressed and encodes to nothing.

use std::num::NonZeroU16;

use bytes::{BufMut, BytesMut};

use super::props_encode::{self, Props, PublishProps, SubscribeProps, UserProps};
use super::sink::{Counter, Sink};
use super::varint;
use super::{EncodeError, PublishView};
use crate::packet::{Connect, Packet, ProtocolVersion, PubResp, QoS};
use crate::reason::ReasonCode;

/// Encode any packet; see [`super::encode`].
pub(crate) fn packet(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let first = match packet {
        Packet::Publish(p) => {
            let view = PublishView {
                dup: p.dup,
                qos: p.qos,
                retain: p.retain,
                topic: &p.topic,
                packet_id: p.packet_id,
                properties: &p.properties,
                topic_alias: p.properties.topic_alias,
                message_expiry_interval: p.properties.message_expiry_interval,
                subscription_identifiers: &p.properties.subscription_identifiers,
                payload: &p.payload,
            };
            return publish(&view, version, out);
        }
        // AUTH does not exist in MQTT 3.1.1: nothing is written (documented on `encode`).
        Packet::Auth(_) if version == ProtocolVersion::V311 => return Ok(0),
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    };
    // The acknowledgement of nearly every QoS 1/2 message: fixed header, packet id, and
    // (v5) no reason code or properties when it is a plain success. Written directly,
    // without the two passes below: it is sent once per message.
    if let Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) = packet {
        let plain = version == ProtocolVersion::V311
            || (r.reason_code == ReasonCode::SUCCESS && props_encode::ack_is_empty(&r.properties));
        if plain {
            let [hi, lo] = r.packet_id.get().to_be_bytes();
            out.extend_from_slice(&[first, 2, hi, lo]);
            return Ok(4);
        }
    }
    let v5 = version == ProtocolVersion::V5;
    let mut counter = Counter::default();
    body(packet, v5, &mut counter)?;
    let remaining = check_remaining(counter.0)?;
    let total = 1 + varint::len(remaining) + remaining;
    let start = out.len();
    out.reserve(total);
    out.put_u8(first);
    varint::write(out, remaining);
    if let Err(e) = body(packet, v5, out) {
        // Unreachable in practice (the counting pass ran the same checks), but never
        // leave half a packet in the output.
        out.truncate(start);
        return Err(e);
    }
    Ok(total)
}

fn check_remaining(remaining: usize) -> Result<usize, EncodeError> {
    if remaining > varint::MAX as usize {
        Err(EncodeError::TooLarge(remaining.saturating_add(5)))
    } else {
        Ok(remaining)
    }
}

/// The variable header and payload of every packet but PUBLISH.
fn body<S: Sink>(packet: &Packet, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect(c, v5, s)?,
        Packet::ConnAck(c) => {
            s.u8(u8::from(c.session_present));
            if v5 {
                s.u8(c.reason_code.0);
                props_encode::block(s, &c.properties)?;
            } else {
                s.u8(c.reason_code.to_v3_connack());
            }
        }
        Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
            pub_resp(p, v5, s)?
        }
        Packet::Subscribe(sub) => {
            s.u16(sub.packet_id.get());
            if v5 {
                props_encode::block(
                    s,
                    &SubscribeProps {
                        subscription_identifier: sub.subscription_identifier,
                        user_properties: &sub.user_properties,
                    },
                )?;
            }
            for (filter, o) in &sub.filters {
                s.string(filter)?;
                let mut byte = o.qos as u8;
                if v5 {
                    byte |= u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling & 0x03) << 4;
                }
                s.u8(byte);
            }
        }
        Packet::SubAck(a) => {
            s.u16(a.packet_id.get());
            if v5 {
                props_encode::block(s, &a.properties)?;
                for rc in &a.reason_codes {
                    s.u8(rc.0);
                }
            } else {
                for rc in &a.reason_codes {
                    s.u8(rc.to_v3_suback());
                }
            }
        }
        Packet::Unsubscribe(u) => {
            s.u16(u.packet_id.get());
            if v5 {
                props_encode::block(s, &UserProps(&u.user_properties))?;
            }
            for filter in &u.filters {
                s.string(filter)?;
            }
        }
        Packet::UnsubAck(a) => {
            s.u16(a.packet_id.get());
            if v5 {
                props_encode::block(s, &a.properties)?;
                for rc in &a.reason_codes {
                    s.u8(rc.0);
                }
            }
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            if v5 {
                short_form(
                    d.reason_code,
                    &d.properties,
                    props_encode::disconnect_is_empty(&d.properties),
                    true,
                    s,
                )?;
            }
        }
        Packet::Auth(a) => {
            if v5 {
                // A lone reason code is not a form §3.15 describes, so only the
                // fully-empty short form is used.
                short_form(
                    a.reason_code,
                    &a.properties,
                    props_encode::auth_is_empty(&a.properties),
                    false,
                    s,
                )?;
            }
        }
        Packet::Publish(_) => {} // handled by `publish` before reaching here
    }
    Ok(())
}

/// Reason code and properties with the v5 short forms: nothing for success without
/// properties, the bare reason code (if `code_only_ok`) for failure without properties.
fn short_form<S: Sink, P: Props>(
    rc: ReasonCode,
    props: &P,
    props_empty: bool,
    code_only_ok: bool,
    s: &mut S,
) -> Result<(), EncodeError> {
    if props_empty && rc == ReasonCode::SUCCESS {
        return Ok(());
    }
    s.u8(rc.0);
    if props_empty && code_only_ok {
        return Ok(());
    }
    props_encode::block(s, props)
}

fn pub_resp<S: Sink>(p: &PubResp, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.u16(p.packet_id.get());
    if v5 {
        short_form(
            p.reason_code,
            &p.properties,
            props_encode::ack_is_empty(&p.properties),
            true,
            s,
        )?;
    }
    Ok(())
}

/// CONNECT laid out for the `version` being encoded (`c.protocol` is not consulted, so
/// the caller's choice of version always wins).
fn connect<S: Sink>(c: &Connect, v5: bool, s: &mut S) -> Result<(), EncodeError> {
    s.string("MQTT")?;
    s.u8(if v5 { 5 } else { 4 });
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(w) = &c.will {
        flags |= 0x04 | (w.qos as u8) << 3 | u8::from(w.retain) << 5;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    s.u8(flags);
    s.u16(c.keep_alive);
    if v5 {
        props_encode::block(s, &c.properties)?;
    }
    s.string(&c.client_id)?;
    if let Some(w) = &c.will {
        if v5 {
            props_encode::block(s, &w.properties)?;
        }
        s.string(&w.topic)?;
        s.binary(&w.payload)?;
    }
    if let Some(u) = &c.username {
        s.string(u)?;
    }
    if let Some(p) = &c.password {
        s.binary(p)?;
    }
    Ok(())
}

/// PUBLISH from a view: lengths first, one `reserve`, then straight writes.
///
/// DUP is cleared at QoS 0 ([MQTT-3.3.1-2]) and `packet_id` is ignored there. A QoS > 0
/// view without a packet identifier is a caller bug with no [`EncodeError`] variant to
/// report it: identifier 0 is written, which the receiver rejects as malformed.
pub(crate) fn publish(
    view: &PublishView<'_>,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<usize, EncodeError> {
    let topic_len = u16::try_from(view.topic.len())
        .map_err(|_| EncodeError::StringTooLong(view.topic.len()))?;
    let v5 = version == ProtocolVersion::V5;
    let props = PublishProps {
        base: view.properties,
        topic_alias: view.topic_alias,
        message_expiry_interval: view.message_expiry_interval,
        subscription_identifiers: view.subscription_identifiers,
    };
    let props_len = if v5 {
        let n = props_encode::len(&props)?;
        if n > varint::MAX as usize {
            return Err(EncodeError::TooLarge(n));
        }
        n
    } else {
        0
    };
    let has_id = view.qos != QoS::AtMostOnce;
    let remaining = (2 + usize::from(topic_len))
        .saturating_add(if has_id { 2 } else { 0 })
        .saturating_add(if v5 {
            varint::len(props_len) + props_len
        } else {
            0
        })
        .saturating_add(view.payload.len());
    let remaining = check_remaining(remaining)?;
    let total = 1 + varint::len(remaining) + remaining;

    let first =
        0x30 | u8::from(view.dup && has_id) << 3 | (view.qos as u8) << 1 | u8::from(view.retain);
    let start = out.len();
    out.reserve(total);
    out.put_u8(first);
    varint::write(out, remaining);
    out.put_u16(topic_len);
    out.put_slice(view.topic.as_bytes());
    if has_id {
        out.put_u16(view.packet_id.map_or(0, NonZeroU16::get));
    }
    if v5 {
        varint::write(out, props_len);
        if let Err(e) = props.visit(out) {
            out.truncate(start);
            return Err(e);
        }
    }
    out.put_slice(view.payload);
    Ok(total)
}
