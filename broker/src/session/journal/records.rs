//! How sessions, their messages and retained messages are written in the `sessions`,
//! `bodies`, `messages` and `retained` tables.
//!
//! A message queued for persisted sessions is stored once, in `bodies` (key: the body id,
//! u64 big endian, handed out by the journal; value: [`encode_body`], the MQTT v5 PUBLISH
//! of the message as published, encoded and decoded by the broker's own codec so every
//! property survives exactly, after a short header: format byte, QoS as published,
//! absolute expiry). Each delivery of it to a session is a small record in `messages`
//! ([`encode_delivery`]: stage, packet id, body id, this subscriber's QoS, retain flag
//! and subscription identifiers), so one publish to 10,000 offline sessions writes its
//! payload once. Keys of `messages` are `client id · 0x00 · seq (u64, big endian)`:
//! client ids cannot contain U+0000, so a session's messages are one contiguous key range,
//! in queue order.
//!
//! Delivery records of format 1 (written before bodies were shared) carry the whole
//! PUBLISH inline; they are still read ([`decode_delivery`] returns [`Decoded::Inline`])
//! and rewritten as format 2 at the first start (`restore`). Retained messages keep that
//! inline layout ([`encode_retained`]): each is stored once anyway.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use gatehouse_protocol::codec::{self, PublishView};
use gatehouse_protocol::{Packet, PacketId, ProtocolVersion, Publish, QoS, SubscriptionOptions};
use smallvec::SmallVec;

use crate::auth::Identity;
use crate::message::{Delivery, Message};
use crate::session::{Owner, Stage, SubscriptionRecord};

/// Session and retained records, and delivery records with the message inline.
const FORMAT: u8 = 1;
/// Delivery records that reference a body.
const FORMAT_SHARED: u8 = 2;
/// Body records.
const BODY_FORMAT: u8 = 1;
/// Large enough for any message the broker accepted (MQTT's own maximum).
const MAX_PACKET: u32 = 268_435_455;

/// A stored record that does not decode; the table and key are added by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRecord(pub &'static str);

/// Where a stored delivery was: still queued, or sent with this packet id and awaiting
/// this acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Queued,
    InFlight(PacketId, Stage),
}

/// `messages` key of `seq` in `client_id`'s session.
pub fn message_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(client_id.len() + 9);
    key.extend_from_slice(client_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The key range of every message of `client_id`.
pub fn message_range(client_id: &str) -> (Vec<u8>, Vec<u8>) {
    let mut from = client_id.as_bytes().to_vec();
    from.push(0);
    let mut to = client_id.as_bytes().to_vec();
    to.push(1);
    (from, to)
}

/// Split a `messages` key into client id and seq.
pub fn split_message_key(key: &[u8]) -> Result<(&str, u64), BadRecord> {
    if key.len() < 9 || key[key.len() - 9] != 0 {
        return Err(BadRecord("bad message key"));
    }
    let (id, rest) = key.split_at(key.len() - 9);
    let id = std::str::from_utf8(id).map_err(|_| BadRecord("client id is not UTF-8"))?;
    let seq = u64::from_be_bytes(rest[1..].try_into().map_err(|_| BadRecord("bad seq"))?);
    Ok((id, seq))
}

/// `bodies` key of body `id`.
pub fn body_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// The body id of a `bodies` key.
pub fn split_body_key(key: &[u8]) -> Result<u64, BadRecord> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| BadRecord("bad body key"))
}

fn unix_ms(at: Instant, now: Instant) -> u64 {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    wall.saturating_add(at.saturating_duration_since(now).as_millis() as u64)
}

fn instant_of(ms: u64, now: Instant) -> Instant {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now + Duration::from_millis(ms.saturating_sub(wall))
}

/// The stored form of a message's expiry: ms since the Unix epoch, 0 for never.
fn expiry_ms(m: &Message) -> u64 {
    m.expires_at
        .map_or(0, |at| unix_ms(at, Instant::now()).max(1))
}

fn stage_code(sent: Sent) -> (u8, Option<PacketId>) {
    match sent {
        Sent::Queued => (0u8, None),
        Sent::InFlight(id, Stage::AwaitPubAck) => (1, Some(id)),
        Sent::InFlight(id, Stage::AwaitPubRec) => (2, Some(id)),
        Sent::InFlight(id, Stage::AwaitPubComp) => (3, Some(id)),
    }
}

fn sent_of(stage: u8, packet_id: Option<PacketId>) -> Result<Sent, BadRecord> {
    Ok(match (stage, packet_id) {
        (0, _) => Sent::Queued,
        (1, Some(id)) => Sent::InFlight(id, Stage::AwaitPubAck),
        (2, Some(id)) => Sent::InFlight(id, Stage::AwaitPubRec),
        (3, Some(id)) => Sent::InFlight(id, Stage::AwaitPubComp),
        _ => return Err(BadRecord("unknown delivery stage")),
    })
}

/// The message of `d` as a PUBLISH at `d`'s QoS and retain flag, appended to `out`.
fn put_publish(out: &mut BytesMut, d: &Delivery, packet_id: Option<PacketId>) {
    let view = PublishView {
        dup: false,
        qos: d.qos,
        retain: d.retain,
        topic: &d.message.topic,
        // QoS 1/2 PUBLISHes need an id on the wire; 1 stands in for a queued one.
        packet_id: packet_id.or(PacketId::new(1)),
        properties: &d.message.properties,
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &d.subscription_ids,
        payload: &d.message.payload,
    };
    let at = out.len();
    if codec::encode_publish(&view, ProtocolVersion::V5, out).is_err() {
        // Only a message the codec cannot write (it was decoded by it, so never);
        // storing nothing decodable is refused at load rather than panicking here.
        out.truncate(at);
    }
}

/// The PUBLISH after a record's header, as a [`Publish`].
fn take_publish(buf: &[u8]) -> Result<Publish, BadRecord> {
    let mut packet = BytesMut::from(buf);
    match codec::decode_from_server(&mut packet, ProtocolVersion::V5, MAX_PACKET) {
        Ok(Some(Packet::Publish(p))) if packet.is_empty() => Ok(p),
        _ => Err(BadRecord("the stored PUBLISH does not decode")),
    }
}

/// A message's body, stored once however many deliveries reference it: the QoS it was
/// published with, its expiry and the PUBLISH (topic, properties, payload, retain flag).
pub fn encode_body(m: &Message) -> Vec<u8> {
    encode_body_expiring(m, expiry_ms(m))
}

/// [`encode_body`] with the expiry already in its stored form (migrating an inline
/// record keeps its exact expiry, so copies of one message give equal bodies).
pub(super) fn encode_body_expiring(m: &Message, expires_ms: u64) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(m.payload.len() + m.topic.len() + 64);
    out.put_u8(BODY_FORMAT);
    out.put_u8(m.qos as u8);
    out.put_u64(expires_ms);
    let view = PublishView {
        dup: false,
        // Always QoS 1 in the PUBLISH (a QoS 0 one has no packet id); the header byte
        // has the QoS as published.
        qos: QoS::AtLeastOnce,
        retain: m.retain,
        topic: &m.topic,
        packet_id: PacketId::new(1),
        properties: &m.properties,
        topic_alias: None,
        message_expiry_interval: None,
        subscription_identifiers: &[],
        payload: &m.payload,
    };
    if codec::encode_publish(&view, ProtocolVersion::V5, &mut out).is_err() {
        // As in `put_publish`: refused at load rather than panicking here.
        out.truncate(10);
    }
    Vec::from(out)
}

/// Decode a [`encode_body`] record; `origin` is unknown after a restart.
pub fn decode_body(record: &[u8]) -> Result<Message, BadRecord> {
    let mut buf = record;
    if buf.len() < 10 || buf.get_u8() != BODY_FORMAT {
        return Err(BadRecord("unknown body record format"));
    }
    let qos = QoS::from_u8(buf.get_u8()).ok_or(BadRecord("bad QoS"))?;
    let expires_ms = buf.get_u64();
    let Publish {
        retain,
        topic,
        properties,
        payload,
        ..
    } = take_publish(buf)?;
    Ok(Message {
        topic,
        payload,
        qos,
        retain,
        properties,
        expires_at: (expires_ms != 0).then(|| instant_of(expires_ms, Instant::now())),
        origin: None,
    })
}

/// One delivery of a shared body (format 2): where it is, which body, and what this
/// subscriber gets of it (QoS, retain flag, subscription identifiers).
pub fn encode_delivery(d: &Delivery, sent: Sent, body: u64) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(20 + 4 * d.subscription_ids.len());
    out.put_u8(FORMAT_SHARED);
    let (stage, packet_id) = stage_code(sent);
    out.put_u8(stage);
    out.put_u16(packet_id.map_or(0, PacketId::get));
    out.put_u64(body);
    out.put_u8(d.qos as u8);
    out.put_u8(u8::from(d.retain));
    out.put_u32(d.subscription_ids.len() as u32);
    for id in &d.subscription_ids {
        out.put_u32(*id);
    }
    Vec::from(out)
}

/// What a delivery record holds of its delivery.
#[derive(Debug)]
pub enum Decoded {
    /// Format 1: the whole message inline; `expires_ms` as stored (0: never).
    Inline { delivery: Delivery, expires_ms: u64 },
    /// Format 2: the body's id and this delivery's own fields.
    Shared { body: u64, fields: Fields },
}

/// A delivery without its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: SmallVec<[u32; 2]>,
}

impl Fields {
    /// The delivery of `message` with these fields.
    pub fn deliver(self, message: Arc<Message>) -> Delivery {
        Delivery {
            message,
            qos: self.qos,
            retain: self.retain,
            subscription_ids: self.subscription_ids,
            seq: None,
        }
    }
}

/// Decode a delivery record of either format.
pub fn decode_delivery(record: &[u8]) -> Result<(Decoded, Sent), BadRecord> {
    match record.first() {
        Some(&FORMAT) => decode_inline(record).map(|(delivery, sent, expires_ms)| {
            (
                Decoded::Inline {
                    delivery,
                    expires_ms,
                },
                sent,
            )
        }),
        Some(&FORMAT_SHARED) => decode_shared(record),
        _ => Err(BadRecord("unknown message record format")),
    }
}

fn decode_shared(record: &[u8]) -> Result<(Decoded, Sent), BadRecord> {
    let mut buf = &record[1..];
    if buf.remaining() < 1 + 2 + 8 + 1 + 1 + 4 {
        return Err(BadRecord("truncated delivery record"));
    }
    let stage = buf.get_u8();
    let sent = sent_of(stage, PacketId::new(buf.get_u16()))?;
    let body = buf.get_u64();
    let qos = match QoS::from_u8(buf.get_u8()) {
        Some(QoS::AtMostOnce) => return Err(BadRecord("QoS 0 messages are never stored")),
        Some(qos) => qos,
        None => return Err(BadRecord("bad QoS")),
    };
    let retain = match buf.get_u8() {
        0 => false,
        1 => true,
        _ => return Err(BadRecord("bad retain flag")),
    };
    let n = buf.get_u32() as usize;
    if buf.remaining() != n.saturating_mul(4) {
        return Err(BadRecord("bad subscription identifiers"));
    }
    let subscription_ids = (0..n).map(|_| buf.get_u32()).collect();
    Ok((
        Decoded::Shared {
            body,
            fields: Fields {
                qos,
                retain,
                subscription_ids,
            },
        },
        sent,
    ))
}

/// A delivery with its message inline (format 1): how retained messages are stored, and
/// how deliveries were before bodies were shared.
pub fn encode_inline(d: &Delivery, sent: Sent) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(d.message.payload.len() + d.message.topic.len() + 64);
    out.put_u8(FORMAT);
    let (stage, packet_id) = stage_code(sent);
    out.put_u8(stage);
    out.put_u64(expiry_ms(&d.message));
    put_publish(&mut out, d, packet_id);
    Vec::from(out)
}

/// Decode a [`encode_inline`] record, with its stored expiry; `origin` is unknown after
/// a restart.
fn decode_inline(record: &[u8]) -> Result<(Delivery, Sent, u64), BadRecord> {
    let mut buf = record;
    if buf.len() < 10 || buf.get_u8() != FORMAT {
        return Err(BadRecord("unknown message record format"));
    }
    let stage = buf.get_u8();
    let expires_ms = buf.get_u64();
    let Publish {
        qos,
        retain,
        topic,
        packet_id,
        mut properties,
        payload,
        ..
    } = take_publish(buf)?;
    let sent = sent_of(stage, packet_id)?;
    if qos == QoS::AtMostOnce {
        return Err(BadRecord("QoS 0 messages are never stored"));
    }
    let subscription_ids = std::mem::take(&mut properties.subscription_identifiers);
    let message = Message {
        topic,
        payload,
        qos,
        retain,
        properties,
        expires_at: (expires_ms != 0).then(|| instant_of(expires_ms, Instant::now())),
        origin: None,
    };
    Ok((
        Delivery {
            message: Arc::new(message),
            qos,
            retain,
            subscription_ids: subscription_ids.into_iter().collect(),
            seq: None,
        },
        sent,
        expires_ms,
    ))
}

/// A retained message.
pub fn encode_retained(m: &Message) -> Vec<u8> {
    encode_inline(
        &Delivery {
            message: Arc::new(Message {
                topic: m.topic.clone(),
                payload: m.payload.clone(),
                qos: m.qos,
                retain: true,
                properties: m.properties.clone(),
                expires_at: m.expires_at,
                origin: None,
            }),
            qos: if m.qos == QoS::AtMostOnce {
                // Stored as QoS 1 with a marker bit of the stage byte; see decode.
                QoS::AtLeastOnce
            } else {
                m.qos
            },
            retain: true,
            subscription_ids: Default::default(),
            seq: None,
        },
        if m.qos == QoS::AtMostOnce {
            Sent::InFlight(PacketId::MIN, Stage::AwaitPubComp)
        } else {
            Sent::Queued
        },
    )
}

/// Decode a [`encode_retained`] record.
pub fn decode_retained(record: &[u8]) -> Result<Message, BadRecord> {
    let (d, sent, _) = decode_inline(record)?;
    let qos = match sent {
        Sent::InFlight(_, Stage::AwaitPubComp) => QoS::AtMostOnce,
        _ => d.qos,
    };
    match Arc::try_unwrap(d.message) {
        Ok(m) => Ok(Message { qos, ..m }),
        Err(_) => Err(BadRecord("a decoded message is shared")),
    }
}

/// What a persisted session needs besides its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    pub expiry_interval: u32,
    /// When it went offline (ms since the Unix epoch); 0 while connected.
    pub offline_since_ms: u64,
    /// Raw filters as subscribed (`$share/...` included).
    pub subscriptions: Vec<(String, SubscriptionRecord)>,
    /// QoS 2 packet ids received and not yet released.
    pub incoming_qos2: Vec<u16>,
    /// Who the session belongs to, so a restart does not let another identity resume it.
    /// Records written before owners were kept decode as [`Owner::Unknown`].
    pub owner: Owner,
}

/// The authentication methods a persisted owner may name (a principal's method is one of
/// these static names; anything else decodes as an unknown owner).
const OWNER_METHODS: [&str; 4] = ["X509", "ServiceAccountToken", "Custom", "Password"];
const OWNER_ANONYMOUS: u8 = 1;
const OWNER_PRINCIPAL: u8 = 2;

fn encode_owner(out: &mut BytesMut, owner: &Owner) {
    match owner {
        Owner::Unknown => {}
        Owner::Anonymous => out.put_u8(OWNER_ANONYMOUS),
        Owner::Principal(id) => {
            out.put_u8(OWNER_PRINCIPAL);
            out.put_u8(id.method.len() as u8);
            out.put_slice(id.method.as_bytes());
            match &id.username {
                None => out.put_u8(0),
                Some(name) => {
                    out.put_u8(1);
                    out.put_u32(name.len() as u32);
                    out.put_slice(name.as_bytes());
                }
            }
        }
    }
}

fn decode_owner(buf: &mut Bytes) -> Result<Owner, BadRecord> {
    let short = BadRecord("truncated session owner");
    if !buf.has_remaining() {
        return Ok(Owner::Unknown);
    }
    match buf.get_u8() {
        OWNER_ANONYMOUS => Ok(Owner::Anonymous),
        OWNER_PRINCIPAL => {
            if !buf.has_remaining() {
                return Err(short);
            }
            let len = usize::from(buf.get_u8());
            if buf.remaining() < len + 1 {
                return Err(short);
            }
            let method = buf.split_to(len);
            let username = match buf.get_u8() {
                0 => None,
                _ => {
                    if buf.remaining() < 4 {
                        return Err(short);
                    }
                    let len = buf.get_u32() as usize;
                    if buf.remaining() < len {
                        return Err(short);
                    }
                    Some(
                        String::from_utf8(buf.split_to(len).to_vec())
                            .map_err(|_| BadRecord("owner user name is not UTF-8"))?,
                    )
                }
            };
            Ok(
                match OWNER_METHODS.iter().find(|m| m.as_bytes() == &method[..]) {
                    Some(method) => Owner::Principal(Box::new(Identity { method, username })),
                    None => Owner::Unknown,
                },
            )
        }
        _ => Err(BadRecord("unknown session owner kind")),
    }
}

pub fn encode_session(meta: &SessionMeta) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(32 + meta.subscriptions.len() * 32);
    out.put_u8(FORMAT);
    out.put_u32(meta.expiry_interval);
    out.put_u64(meta.offline_since_ms);
    out.put_u32(meta.subscriptions.len() as u32);
    for (filter, record) in &meta.subscriptions {
        out.put_u16(filter.len() as u16);
        out.put_slice(filter.as_bytes());
        let o = record.options;
        out.put_u8(
            o.qos as u8
                | (u8::from(o.no_local) << 2)
                | (u8::from(o.retain_as_published) << 3)
                | (o.retain_handling << 4),
        );
        out.put_u32(record.id.unwrap_or(0));
    }
    out.put_u32(meta.incoming_qos2.len() as u32);
    for id in &meta.incoming_qos2 {
        out.put_u16(*id);
    }
    encode_owner(&mut out, &meta.owner);
    Vec::from(out)
}

pub fn decode_session(record: &[u8]) -> Result<SessionMeta, BadRecord> {
    let mut buf = Bytes::copy_from_slice(record);
    let short = BadRecord("truncated session record");
    if buf.remaining() < 17 || buf.get_u8() != FORMAT {
        return Err(BadRecord("unknown session record format"));
    }
    let expiry_interval = buf.get_u32();
    let offline_since_ms = buf.get_u64();
    let n = buf.get_u32() as usize;
    let mut subscriptions = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        if buf.remaining() < 2 {
            return Err(short);
        }
        let len = usize::from(buf.get_u16());
        if buf.remaining() < len + 5 {
            return Err(short);
        }
        let filter = String::from_utf8(buf.split_to(len).to_vec())
            .map_err(|_| BadRecord("filter is not UTF-8"))?;
        let bits = buf.get_u8();
        let qos = QoS::from_u8(bits & 3).ok_or(BadRecord("bad QoS"))?;
        let options = SubscriptionOptions {
            qos,
            no_local: bits & 4 != 0,
            retain_as_published: bits & 8 != 0,
            retain_handling: (bits >> 4) & 3,
        };
        let id = buf.get_u32();
        subscriptions.push((
            filter,
            SubscriptionRecord {
                options,
                id: (id != 0).then_some(id),
            },
        ));
    }
    if buf.remaining() < 4 {
        return Err(short);
    }
    let n = buf.get_u32() as usize;
    if buf.remaining() < n * 2 {
        return Err(short);
    }
    let incoming_qos2 = (0..n).map(|_| buf.get_u16()).collect();
    let owner = decode_owner(&mut buf)?;
    if buf.has_remaining() {
        return Err(BadRecord("trailing bytes in a session record"));
    }
    Ok(SessionMeta {
        expiry_interval,
        offline_since_ms,
        subscriptions,
        incoming_qos2,
        owner,
    })
}

#[cfg(test)]
mod tests {
    use gatehouse_protocol::PublishProperties;

    use super::*;

    fn delivery(qos: QoS) -> Delivery {
        Delivery {
            message: Arc::new(Message {
                topic: "a/b".into(),
                payload: Bytes::from_static(b"\0payload\xff"),
                qos,
                retain: false,
                properties: PublishProperties {
                    content_type: Some("text/plain".into()),
                    correlation_data: Some(Bytes::from_static(b"c")),
                    response_topic: Some("r/t".into()),
                    user_properties: vec![("k".into(), "v".into())],
                    ..Default::default()
                },
                expires_at: Some(Instant::now() + Duration::from_secs(100)),
                origin: Some(7),
            }),
            qos,
            retain: true,
            subscription_ids: [3, 9].into_iter().collect(),
            seq: Some(5),
        }
    }

    const STAGES: [(QoS, Sent); 4] = [
        (QoS::AtLeastOnce, Sent::Queued),
        (
            QoS::AtLeastOnce,
            Sent::InFlight(PacketId::MIN, Stage::AwaitPubAck),
        ),
        (
            QoS::ExactlyOnce,
            Sent::InFlight(PacketId::MAX, Stage::AwaitPubRec),
        ),
        (
            QoS::ExactlyOnce,
            Sent::InFlight(PacketId::MIN, Stage::AwaitPubComp),
        ),
    ];

    fn same_message(back: &Message, sent: &Message) {
        assert_eq!(back.topic, sent.topic);
        assert_eq!(back.payload, sent.payload);
        assert_eq!(back.properties, sent.properties);
        let left = back.expires_at.unwrap() - Instant::now();
        assert!(left > Duration::from_secs(98) && left <= Duration::from_secs(101));
    }

    #[test]
    fn shared_deliveries_round_trip_with_their_stage_and_body() {
        for (qos, sent) in STAGES {
            let d = delivery(qos);
            let record = encode_delivery(&d, sent, 0x0102_0304_0506_0708);
            // The delivery record holds no copy of the message.
            assert!(record.len() < 32, "{} bytes", record.len());
            let (Decoded::Shared { body, fields }, stage) = decode_delivery(&record).unwrap()
            else {
                panic!("a format 2 record decodes as shared");
            };
            assert_eq!((body, stage), (0x0102_0304_0506_0708, sent));
            assert_eq!(
                fields,
                Fields {
                    qos,
                    retain: true,
                    subscription_ids: [3, 9].into_iter().collect(),
                }
            );
            let message = Arc::new(decode_body(&encode_body(&d.message)).unwrap());
            same_message(&message, &d.message);
            assert_eq!((message.qos, message.retain), (qos, false), "as published");
            let back = fields.deliver(message);
            assert_eq!((back.qos, back.retain, back.seq), (qos, true, None));
        }
    }

    #[test]
    fn bodies_keep_the_qos_as_published_and_the_retain_flag() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = Message {
                qos,
                retain: qos == QoS::ExactlyOnce,
                expires_at: None,
                ..Arc::try_unwrap(delivery(qos).message).unwrap()
            };
            let back = decode_body(&encode_body(&m)).unwrap();
            assert_eq!((back.qos, back.retain), (m.qos, m.retain));
            assert_eq!(back.expires_at, None);
            assert_eq!(back.payload, m.payload);
        }
        assert_eq!(split_body_key(&body_key(77)).unwrap(), 77);
        assert!(split_body_key(b"1234567").is_err());
    }

    /// Records written before bodies were shared (format 1, the PUBLISH inline) are still
    /// read, with their stored expiry.
    #[test]
    fn inline_deliveries_of_the_old_format_still_decode() {
        for (qos, sent) in STAGES {
            let d = delivery(qos);
            let (decoded, stage) = decode_delivery(&encode_inline(&d, sent)).unwrap();
            let Decoded::Inline {
                delivery: back,
                expires_ms,
            } = decoded
            else {
                panic!("a format 1 record decodes inline");
            };
            assert_eq!(stage, sent);
            assert!(expires_ms > 0);
            assert_eq!((back.qos, back.retain), (qos, true));
            assert_eq!(&back.subscription_ids[..], &[3, 9]);
            same_message(&back.message, &d.message);
        }
    }

    #[test]
    fn retained_messages_round_trip_at_every_qos() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = delivery(qos).message;
            let back = decode_retained(&encode_retained(&m)).unwrap();
            assert_eq!((back.qos, back.retain), (qos, true));
            assert_eq!(back.payload, m.payload);
            assert_eq!(back.properties, m.properties);
        }
    }

    #[test]
    fn sessions_round_trip() {
        let meta = SessionMeta {
            expiry_interval: 3600,
            offline_since_ms: 1_700_000_000_000,
            subscriptions: vec![
                (
                    "a/+".into(),
                    SubscriptionRecord {
                        options: SubscriptionOptions {
                            qos: QoS::ExactlyOnce,
                            no_local: true,
                            retain_as_published: true,
                            retain_handling: 2,
                        },
                        id: Some(12),
                    },
                ),
                (
                    "$share/g/b/#".into(),
                    SubscriptionRecord {
                        options: SubscriptionOptions::default(),
                        id: None,
                    },
                ),
            ],
            incoming_qos2: vec![1, 65535],
            owner: Owner::Unknown,
        };
        assert_eq!(decode_session(&encode_session(&meta)).unwrap(), meta);
        for owner in [
            Owner::Anonymous,
            Owner::Principal(Box::new(Identity {
                method: "X509",
                username: Some("alice".into()),
            })),
            Owner::Principal(Box::new(Identity {
                method: "Custom",
                username: None,
            })),
        ] {
            let meta = SessionMeta {
                owner,
                ..meta.clone()
            };
            assert_eq!(decode_session(&encode_session(&meta)).unwrap(), meta);
            // Any cut of the owner is refused, not misread.
            let full = encode_session(&meta);
            let plain = encode_session(&SessionMeta {
                owner: Owner::Unknown,
                ..meta.clone()
            });
            for cut in plain.len() + 1..full.len() {
                assert!(decode_session(&full[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for bad in [
            &b""[..],
            b"\x01",
            b"\x02aaaaaaaaaaaaaaaaaaaaaaa",
            &[1u8; 40][..],
        ] {
            assert!(decode_delivery(bad).is_err());
            assert!(decode_session(bad).is_err());
            assert!(decode_body(bad).is_err());
        }
        let d = delivery(QoS::AtLeastOnce);
        for good in [
            encode_inline(&d, Sent::Queued),
            encode_delivery(&d, Sent::Queued, 1),
        ] {
            for cut in 0..good.len() {
                assert!(decode_delivery(&good[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = good.clone();
            longer.push(0);
            assert!(decode_delivery(&longer).is_err());
        }
        let body = encode_body(&d.message);
        assert!(decode_body(&body[..body.len() - 3]).is_err());
    }

    #[test]
    fn message_keys_sort_by_session_then_seq() {
        let a1 = message_key("a", 1);
        let a2 = message_key("a", 256);
        let ab = message_key("ab", 0);
        assert!(a1 < a2 && a2 < ab);
        let (from, to) = message_range("a");
        assert!(from <= a1 && a2 < to && ab >= to);
        assert_eq!(split_message_key(&a2).unwrap(), ("a", 256));
    }
}
