//! A message as it crosses NATS: the body is the message as an MQTT 5 PUBLISH packet
//! (topic, QoS, retain flag, every property a subscriber sees, the remaining message
//! expiry, the payload), written and read by the codec the broker uses for its clients
//! (fuzzed, no second format to get wrong); the NATS headers say which node sent it
//! ([`ORIGIN`]: node name and a per-start instance id) and its sequence number from that
//! node ([`SEQ`]), so a node can drop its own messages and copies it already delivered.
//!
//! The packet carries no subscription identifiers or topic alias (per hop), and packet
//! id 1 at QoS 1/2 (the codec requires one; it means nothing here).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatehouse_protocol::codec::{self, PublishView};
use gatehouse_protocol::{Packet, PacketId, ProtocolVersion, QoS};

use crate::message::Message;

/// Header naming the node (and its start) that published the message.
pub const ORIGIN: &str = "Gatehouse-Origin";
/// Header with the message's sequence number on its origin node.
pub const SEQ: &str = "Gatehouse-Seq";

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an MQTT PUBLISH: {0}")]
    Decode(String),
    #[error("not an MQTT PUBLISH packet")]
    NotPublish,
    #[error("missing or malformed {0} header")]
    Header(&'static str),
}

/// The body for `message`, or `None` when it has expired already.
pub fn encode(message: &Message, now: Instant) -> Result<Option<Bytes>, codec::EncodeError> {
    let Ok(expiry) = message.remaining_expiry(now) else {
        return Ok(None);
    };
    let view = PublishView {
        dup: false,
        qos: message.qos,
        retain: message.retain,
        topic: &message.topic,
        packet_id: (message.qos != QoS::AtMostOnce).then_some(PacketId::MIN),
        properties: &message.properties,
        topic_alias: None,
        message_expiry_interval: expiry,
        subscription_identifiers: &[],
        payload: &message.payload,
    };
    let mut out = BytesMut::new();
    codec::encode_publish(&view, ProtocolVersion::V5, &mut out)?;
    Ok(Some(out.freeze()))
}

/// The message in `body` (as [`encode`] wrote it), received at `now`. Its origin session is
/// `None`: No Local concerns the publisher's own node only.
pub fn decode(body: Bytes, now: Instant) -> Result<Message, EnvelopeError> {
    let mut buf = BytesMut::from(body);
    let packet = codec::decode(&mut buf, Some(ProtocolVersion::V5), u32::MAX)
        .map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let Some(Packet::Publish(mut p)) = packet else {
        return Err(EnvelopeError::NotPublish);
    };
    let expires_at = p
        .properties
        .message_expiry_interval
        .take()
        .map(|secs| now + Duration::from_secs(u64::from(secs)));
    Ok(Message {
        topic: p.topic,
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: p.properties,
        expires_at,
        origin: None,
    })
}

/// The origin and sequence number headers of a received message.
pub fn origin_of(headers: Option<&async_nats::HeaderMap>) -> Result<(&str, u64), EnvelopeError> {
    let headers = headers.ok_or(EnvelopeError::Header(ORIGIN))?;
    let origin = headers
        .get(ORIGIN)
        .map(|v| v.as_str())
        .ok_or(EnvelopeError::Header(ORIGIN))?;
    let seq = headers
        .get(SEQ)
        .and_then(|v| v.as_str().parse().ok())
        .ok_or(EnvelopeError::Header(SEQ))?;
    Ok((origin, seq))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_protocol::PublishProperties;

    #[test]
    fn every_property_a_subscriber_sees_crosses() {
        let now = Instant::now();
        let m = Message {
            topic: "a.b/c d".into(),
            payload: Bytes::from_static(b"\0payload\xff"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                payload_format_indicator: Some(1),
                response_topic: Some("reply/to".into()),
                correlation_data: Some(Bytes::from_static(b"\x01\x02")),
                user_properties: vec![("k".into(), "v\r\nw".into()), ("k".into(), "2".into())],
                content_type: Some("text/plain".into()),
                ..Default::default()
            },
            expires_at: Some(now + Duration::from_secs(30)),
            origin: Some(7),
        };
        let body = encode(&m, now).unwrap().unwrap();
        let back = decode(body, now).unwrap();
        assert_eq!(back.topic, m.topic);
        assert_eq!(back.payload, m.payload);
        assert_eq!(back.qos, m.qos);
        assert!(back.retain);
        assert_eq!(back.properties, m.properties);
        assert_eq!(back.expires_at, m.expires_at);
        assert_eq!(back.origin, None);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let plain = Message {
                topic: "t".into(),
                payload: Bytes::from_static(b"x"),
                qos,
                retain: false,
                properties: PublishProperties::default(),
                expires_at: None,
                origin: None,
            };
            let back = decode(encode(&plain, now).unwrap().unwrap(), now).unwrap();
            assert_eq!((back.qos, back.retain, back.expires_at), (qos, false, None));
            assert_eq!(back.properties, PublishProperties::default());
        }
    }

    #[test]
    fn expired_messages_are_not_sent_and_garbage_is_refused() {
        let now = Instant::now();
        let m = Message {
            topic: "t".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: Some(now),
            origin: None,
        };
        assert!(encode(&m, now).unwrap().is_none());
        assert!(decode(Bytes::from_static(b"\x30\x05\x00"), now).is_err());
        assert!(decode(Bytes::from_static(b"\xc0\x00"), now).is_err());
        assert!(decode(Bytes::new(), now).is_err());
    }
}
