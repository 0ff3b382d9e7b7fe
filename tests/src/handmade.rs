//! A handful of MQTT packets written byte by byte (no codec), and a reader that splits
//! a byte stream into packets, for the end-to-end tests that need a client the
//! Mosquitto tools cannot play: WebSockets, silent TCP clients, the connection cap.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// CONNACK's first byte.
pub const CONNACK: u8 = 0x20;
/// PUBLISH's packet type (high nibble of the first byte).
pub const PUBLISH: u8 = 0x3;
/// SUBACK's first byte.
pub const SUBACK: u8 = 0x90;

fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// v5 CONNECT, clean start, keep alive 60 s, no properties.
pub fn connect_v5(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    string("MQTT", &mut body);
    body.push(5); // protocol level
    body.push(0x02); // clean start
    body.extend_from_slice(&60u16.to_be_bytes());
    body.push(0); // no properties
    string(client_id, &mut body);
    packet(0x10, &body)
}

/// v5 SUBSCRIBE of one filter at `qos`, no properties.
pub fn subscribe_v5(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.push(0); // no properties
    string(filter, &mut body);
    body.push(qos);
    packet(0x82, &body)
}

/// v5 PUBLISH at QoS 0, no properties.
pub fn publish_v5_qos0(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    string(topic, &mut body);
    body.push(0); // no properties
    body.extend_from_slice(payload);
    packet(0x30, &body)
}

/// v5 DISCONNECT, normal.
pub fn disconnect_v5() -> Vec<u8> {
    vec![0xE0, 0x00]
}

/// One packet: its first byte and its body (after the remaining length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPacket {
    pub first: u8,
    pub body: Vec<u8>,
}

impl RawPacket {
    /// The CONNACK reason code (v5) / return code (3.1.1).
    pub fn connack_code(&self) -> u8 {
        assert_eq!(self.first, CONNACK, "not a CONNACK: {self:?}");
        self.body[1]
    }

    /// Topic and payload of a v5 PUBLISH.
    pub fn publish_v5(&self) -> (String, Vec<u8>) {
        assert_eq!(self.first >> 4, PUBLISH, "not a PUBLISH: {self:?}");
        let b = &self.body;
        let tlen = usize::from(u16::from_be_bytes([b[0], b[1]]));
        let topic = String::from_utf8(b[2..2 + tlen].to_vec()).expect("UTF-8 topic");
        let mut i = 2 + tlen;
        if (self.first >> 1) & 3 > 0 {
            i += 2; // packet identifier
        }
        let (plen, used) = read_varint(&b[i..]).expect("property length");
        i += used + plen;
        (topic, b[i..].to_vec())
    }
}

fn read_varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, byte) in b.iter().enumerate().take(4) {
        n |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// Split one packet off the front of `buf`, if a whole one is there.
pub fn split_packet(buf: &mut Vec<u8>) -> Option<RawPacket> {
    if buf.is_empty() {
        return None;
    }
    let (len, used) = read_varint(&buf[1..])?;
    let end = 1 + used + len;
    if buf.len() < end {
        return None;
    }
    let p = RawPacket {
        first: buf[0],
        body: buf[1 + used..end].to_vec(),
    };
    buf.drain(..end);
    Some(p)
}

/// What reading a packet off a stream came to.
#[derive(Debug)]
pub enum Read {
    Packet(RawPacket),
    /// The peer closed the connection (EOF or reset).
    Closed,
    /// Nothing complete within the time given.
    TimedOut,
}

/// A byte-stream reader that returns whole packets.
pub struct PacketReader<R> {
    pub inner: R,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(inner: R) -> Self {
        PacketReader {
            inner,
            buf: Vec::new(),
        }
    }

    pub async fn read(&mut self, within: Duration) -> Read {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(p) = split_packet(&mut self.buf) {
                return Read::Packet(p);
            }
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(until, self.inner.read(&mut chunk)).await {
                Err(_) => return Read::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return Read::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
