//! The few MQTT packets the load generator writes and reads, encoded by hand.
//!
//! The hot path is [`PublishTemplate::emit`]: a PUBLISH encoded once, whose packet id and
//! two timestamps are patched in place before the bytes are copied into the connection's
//! write buffer (one `memcpy` per message, no allocation). Reading is a frame splitter over
//! a byte buffer plus just enough PUBLISH parsing to find the packet id and payload.

/// MQTT protocol version of every connection of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum Version {
    /// MQTT 5.0
    #[value(name = "5")]
    V5,
    /// MQTT 3.1.1
    #[value(name = "3")]
    V311,
}

impl Version {
    pub fn is_v5(self) -> bool {
        self == Version::V5
    }
}

/// Bytes at the start of every payload the generator publishes: the send time and the
/// scheduled send time (nanoseconds since the run's epoch, little endian).
pub const STAMP_BYTES: usize = 16;

pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBACK: u8 = 9;
pub const CONNACK: u8 = 2;
pub const DISCONNECT: u8 = 14;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("malformed remaining length")]
    BadLength,
    #[error("malformed {0} packet")]
    Malformed(&'static str),
    #[error("CONNACK refused the connection (reason 0x{0:02x})")]
    Refused(u8),
    #[error("SUBACK refused the subscription (reason 0x{0:02x})")]
    SubscribeRefused(u8),
    #[error("expected {expected}, got packet type {got}")]
    Unexpected { expected: &'static str, got: u8 },
}

pub fn put_varint(buf: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        buf.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(buf: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&s[..usize::from(len)]);
}

/// A packet from its first byte and body.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// CONNECT with Clean Start / Clean Session and no will, user name or password. v5 asks
/// for Receive Maximum `receive_max` (how many QoS 1/2 deliveries the broker may have
/// unacknowledged to us).
pub fn connect(version: Version, client_id: &str, keep_alive: u16, receive_max: u16) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + client_id.len());
    put_str(&mut body, b"MQTT");
    body.push(if version.is_v5() { 5 } else { 4 });
    body.push(0x02);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if version.is_v5() {
        body.push(3);
        body.push(0x21);
        body.extend_from_slice(&receive_max.to_be_bytes());
    }
    put_str(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

pub fn subscribe(version: Version, pid: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(8 + filter.len());
    body.extend_from_slice(&pid.to_be_bytes());
    if version.is_v5() {
        body.push(0);
    }
    put_str(&mut body, filter.as_bytes());
    body.push(qos);
    packet(0x82, &body)
}

/// DISCONNECT, normal (v5: remaining length 0 means reason 0x00).
pub const DISCONNECT_PACKET: [u8; 2] = [0xE0, 0x00];

/// PUBACK / PUBREC / PUBREL / PUBCOMP with reason "success" left out (valid in v5, the
/// only form in 3.1.1).
pub fn ack(kind: u8, pid: u16) -> [u8; 4] {
    let first = if kind == PUBREL { 0x62 } else { kind << 4 };
    let p = pid.to_be_bytes();
    [first, 0x02, p[0], p[1]]
}

/// A PUBLISH encoded once; [`emit`](Self::emit) patches packet id and timestamps.
#[derive(Clone)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    pid_at: Option<usize>,
    stamp_at: usize,
}

impl PublishTemplate {
    /// `payload_len` is at least [`STAMP_BYTES`]; the rest of the payload is filler.
    pub fn new(version: Version, topic: &str, qos: u8, retain: bool, payload_len: usize) -> Self {
        let payload_len = payload_len.max(STAMP_BYTES);
        let mut body = Vec::with_capacity(topic.len() + payload_len + 8);
        put_str(&mut body, topic.as_bytes());
        let pid_at = (qos > 0).then(|| {
            body.extend_from_slice(&[0, 0]);
            body.len() - 2
        });
        if version.is_v5() {
            body.push(0);
        }
        let stamp_in_body = body.len();
        body.extend(std::iter::repeat_n(b'x', payload_len));
        let first = 0x30 | (qos << 1) | u8::from(retain);
        let bytes = packet(first, &body);
        let header = bytes.len() - body.len();
        PublishTemplate {
            pid_at: pid_at.map(|p| p + header),
            stamp_at: stamp_in_body + header,
            bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Append one PUBLISH to `out`.
    #[inline]
    pub fn emit(&mut self, out: &mut Vec<u8>, pid: u16, sent_ns: u64, sched_ns: u64) {
        if let Some(at) = self.pid_at {
            self.bytes[at..at + 2].copy_from_slice(&pid.to_be_bytes());
        }
        let s = self.stamp_at;
        self.bytes[s..s + 8].copy_from_slice(&sent_ns.to_le_bytes());
        self.bytes[s + 8..s + 16].copy_from_slice(&sched_ns.to_le_bytes());
        out.extend_from_slice(&self.bytes);
    }
}

/// One complete packet at the start of `buf`: (first byte, header length, total length),
/// `None` if more bytes are needed.
#[inline]
pub fn frame(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, ProtocolError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut shift = 0;
    for i in 1..5 {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            let total = i + 1 + len;
            return Ok((buf.len() >= total).then_some((buf[0], i + 1, total)));
        }
        shift += 7;
    }
    Err(ProtocolError::BadLength)
}

fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &x) in b.iter().take(4).enumerate() {
        v |= usize::from(x & 0x7F) << (7 * i);
        if x & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Packet id (0 for QoS 0) and payload of a PUBLISH body.
#[inline]
pub fn publish_parts(first: u8, body: &[u8], v5: bool) -> Result<(u16, &[u8]), ProtocolError> {
    let bad = || ProtocolError::Malformed("PUBLISH");
    let tl = usize::from(u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]));
    let mut pos = 2 + tl;
    let mut pid = 0;
    if (first >> 1) & 3 > 0 {
        let p = body.get(pos..pos + 2).ok_or_else(bad)?;
        pid = u16::from_be_bytes([p[0], p[1]]);
        pos += 2;
    }
    if v5 {
        let (plen, n) = varint(body.get(pos..).ok_or_else(bad)?).ok_or_else(bad)?;
        pos += n + plen;
    }
    Ok((pid, body.get(pos..).ok_or_else(bad)?))
}

/// The two timestamps at the start of a payload the generator wrote.
#[inline]
pub fn stamps(payload: &[u8]) -> Option<(u64, u64)> {
    let s: &[u8; 16] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&s[..8]);
    b.copy_from_slice(&s[8..]);
    Some((u64::from_le_bytes(a), u64::from_le_bytes(b)))
}

/// What a CONNACK said that the generator uses.
#[derive(Debug, Clone, Copy)]
pub struct ConnAck {
    /// v5 Receive Maximum (how many QoS 1/2 PUBLISHes we may have unacknowledged);
    /// 65535 when absent (the default) or under 3.1.1.
    pub receive_max: u16,
}

pub fn parse_connack(body: &[u8], v5: bool) -> Result<ConnAck, ProtocolError> {
    let rc = *body.get(1).ok_or(ProtocolError::Malformed("CONNACK"))?;
    if rc != 0 {
        return Err(ProtocolError::Refused(rc));
    }
    let mut ack = ConnAck {
        receive_max: u16::MAX,
    };
    if v5 {
        let bad = || ProtocolError::Malformed("CONNACK");
        let (plen, n) = varint(body.get(2..).ok_or_else(bad)?).ok_or_else(bad)?;
        let props = body.get(2 + n..2 + n + plen).ok_or_else(bad)?;
        let mut i = 0;
        while i < props.len() {
            let id = props[i];
            i += 1;
            let rest = &props[i..];
            let skip = match id {
                0x21 => {
                    let v = rest.get(..2).ok_or_else(bad)?;
                    ack.receive_max = u16::from_be_bytes([v[0], v[1]]);
                    2
                }
                0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
                0x13 | 0x22 | 0x23 => 2,
                0x02 | 0x11 | 0x18 | 0x27 => 4,
                0x0B => varint(rest).ok_or_else(bad)?.1,
                0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                    let v = rest.get(..2).ok_or_else(bad)?;
                    2 + usize::from(u16::from_be_bytes([v[0], v[1]]))
                }
                0x26 => {
                    let v = rest.get(..2).ok_or_else(bad)?;
                    let k = 2 + usize::from(u16::from_be_bytes([v[0], v[1]]));
                    let w = rest.get(k..k + 2).ok_or_else(bad)?;
                    k + 2 + usize::from(u16::from_be_bytes([w[0], w[1]]))
                }
                _ => return Err(bad()),
            };
            i += skip;
        }
    }
    Ok(ack)
}

/// The first reason code of a SUBACK; an error if it refused.
pub fn check_suback(body: &[u8], v5: bool) -> Result<u8, ProtocolError> {
    let bad = || ProtocolError::Malformed("SUBACK");
    let mut pos = 2;
    if v5 {
        let (plen, n) = varint(body.get(pos..).ok_or_else(bad)?).ok_or_else(bad)?;
        pos += n + plen;
    }
    let rc = *body.get(pos).ok_or_else(bad)?;
    if rc >= 0x80 {
        return Err(ProtocolError::SubscribeRefused(rc));
    }
    Ok(rc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_round_trips() {
        for v in [Version::V5, Version::V311] {
            for qos in 0..3 {
                let mut t = PublishTemplate::new(v, "a/b", qos, false, 64);
                let mut out = Vec::new();
                t.emit(&mut out, 7, 11, 22);
                t.emit(&mut out, 8, 33, 44);
                let (first, h, total) = frame(&out).unwrap().unwrap();
                assert_eq!(total, t.len());
                let (pid, payload) = publish_parts(first, &out[h..total], v.is_v5()).unwrap();
                assert_eq!(pid, if qos > 0 { 7 } else { 0 });
                assert_eq!(payload.len(), 64);
                assert_eq!(stamps(payload), Some((11, 22)));
                let (first, h, t2) = frame(&out[total..]).unwrap().unwrap();
                let (_, payload) =
                    publish_parts(first, &out[total + h..total + t2], v.is_v5()).unwrap();
                assert_eq!(stamps(payload), Some((33, 44)));
            }
        }
    }

    #[test]
    fn frame_needs_whole_packet() {
        let p = packet(0x30, &[0u8; 200]);
        assert!(frame(&p[..100]).unwrap().is_none());
        assert!(frame(&p[..2]).unwrap().is_none());
        assert_eq!(frame(&p).unwrap(), Some((0x30, 3, 203)));
    }
}
