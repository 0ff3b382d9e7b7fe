//! A raw MQTT client for protocol conformance tests: it writes hand-made bytes (or
//! packets encoded by `gatehouse-protocol`'s codec) and reads frames off the socket
//! with nothing between the test and the wire.
//!
//! The most important assertions (CONNACK and DISCONNECT reason codes) are made on raw
//! bytes, framed here without the codec, so a symmetric codec bug cannot hide them.
//!
//! Also here: [`ProtocolBroker`], an in-process broker on a free loopback port;
//! [`ConnectBuilder`] / [`Props`] / [`frame`] / [`publish_bytes`] / [`subscribe_bytes`]
//! for writing packets by hand, and [`split_frame`] / [`frame_body`] / [`connack_code`] /
//! [`publish_v5_parts`] for reading them by hand (also used over WebSockets and by the
//! end-to-end tests).

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatehouse_protocol::codec;
use gatehouse_protocol::{
    ConnAck, Disconnect, Packet, PacketId, ProtocolVersion, PubResp, Publish, PublishProperties,
    QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::broker::TestBroker;

/// Default wait for something that should arrive promptly.
pub const WAIT: Duration = Duration::from_secs(3);
/// How long to wait before concluding that nothing is coming.
pub const QUIET: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------

/// The broker in-process ([`TestBroker`]) with one MQTT port on a free port of 127.0.0.1.
pub struct ProtocolBroker {
    pub broker: TestBroker,
    pub addr: SocketAddr,
}

impl ProtocolBroker {
    /// Start with default limits.
    pub async fn start() -> ProtocolBroker {
        Self::with_limits("").await
    }

    /// Start with `broker:` limits given as YAML flow-mapping entries, e.g.
    /// `"maxPacketSizeBytes: 200, maxReceiveMaximum: 2"`.
    pub async fn with_limits(limits: &str) -> ProtocolBroker {
        let broker = TestBroker::start(&format!(
            "listeners:\n  - name: protocol\n    bindAddress: 127.0.0.1\n    ports: [ {{ port: 0 }} ]\nbroker: {{ {limits} }}\n"
        ))
        .await;
        let addr = broker.mqtt_addr();
        ProtocolBroker { broker, addr }
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }

    /// A fresh connection that has sent `bytes` (nothing read yet).
    pub async fn sending(&self, bytes: &[u8]) -> RawClient {
        let mut c = self.client().await;
        c.send(bytes).await;
        c
    }

    /// A v5 client connected with clean start and no properties; CONNACK checked.
    pub async fn v5(&self, client_id: &str) -> RawClient {
        self.v5_with(ConnectBuilder::new(client_id)).await.0
    }

    /// A v5 client connected with `builder`; returns the CONNACK (success checked).
    pub async fn v5_with(&self, builder: ConnectBuilder) -> (RawClient, ConnAck) {
        let mut c = self.sending(&builder.build()).await;
        let ack = c.expect_connack_ok().await;
        (c, ack)
    }

    /// CONNECT with `builder`; checks a successful CONNACK on the raw bytes and returns
    /// the client and the raw session-present flag byte.
    pub async fn connect_session(&self, builder: ConnectBuilder) -> (RawClient, u8) {
        let mut c = self.sending(&builder.build()).await;
        let raw = c.recv_raw(WAIT).await.expect("CONNACK");
        let body = frame_body(&raw);
        assert_eq!(
            (raw[0], body[1]),
            (0x20, 0x00),
            "CONNACK success: {raw:02X?}"
        );
        (c, body[0])
    }

    /// A 3.1.1 client connected with clean session; CONNACK checked byte for byte.
    pub async fn v311(&self, client_id: &str) -> RawClient {
        let mut c = self.sending(&ConnectBuilder::v311(client_id).build()).await;
        c.version = ProtocolVersion::V311;
        let raw = c.recv_raw(WAIT).await.expect("CONNACK");
        assert_eq!(raw, [0x20, 0x02, 0x00, 0x00], "3.1.1 CONNACK accepted");
        c
    }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// What came off the socket.
#[derive(Debug)]
pub enum Event {
    /// One whole packet, fixed header included.
    Frame(Vec<u8>),
    Timeout,
    /// EOF or a read error (a reset after the server closed).
    Closed,
}

/// Any byte stream a [`RawClient`] can speak over (TCP, TLS).
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

pub struct RawClient {
    stream: Box<dyn Io>,
    buf: BytesMut,
    closed: bool,
    /// Used by `send_packet` and `recv`; `connect` starts with v5.
    pub version: ProtocolVersion,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("TCP connect");
        stream.set_nodelay(true).ok();
        RawClient::over(stream)
    }

    /// A client over an established stream (e.g. TLS), nothing sent yet.
    pub fn over(stream: impl Io + 'static) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            buf: BytesMut::with_capacity(8192),
            closed: false,
            version: ProtocolVersion::V5,
        }
    }

    /// Write bytes as given. Errors are ignored (the server may already have closed).
    pub async fn send(&mut self, bytes: &[u8]) {
        let _ = self.write(bytes).await;
    }

    /// Write bytes as given and report a failure.
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Encode with the protocol crate's codec in `version` and write.
    pub async fn send_packet_as(&mut self, packet: &Packet, version: ProtocolVersion) {
        let mut out = BytesMut::new();
        codec::encode(packet, version, &mut out).expect("encode");
        self.send(&out).await;
    }

    /// Encode in this client's version and write.
    pub async fn send_packet(&mut self, packet: &Packet) {
        self.send_packet_as(packet, self.version).await;
    }

    /// The next whole packet, timeout or close. Frames are cut by hand (type byte +
    /// Remaining Length), without the codec.
    pub async fn next_event(&mut self, timeout: Duration) -> Event {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(f) = split_frame(&mut self.buf) {
                return Event::Frame(f);
            }
            if self.closed {
                return Event::Closed;
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Event::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet's raw bytes; `None` on timeout or close.
    pub async fn recv_raw(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        match self.next_event(timeout).await {
            Event::Frame(f) => Some(f),
            _ => None,
        }
    }

    /// The next packet decoded by the codec (server side rules reversed); `None` on
    /// timeout or close. Panics if the server sent something the codec refuses.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        let raw = self.recv_raw(timeout).await?;
        Some(decode_server_packet(&raw, self.version))
    }

    /// Decode raw bytes from [`Self::recv_raw`] with the codec; panics if it refuses them.
    pub fn decode(&self, raw: &[u8]) -> Packet {
        decode_server_packet(raw, self.version)
    }

    /// The next packet, which must arrive within [`WAIT`].
    pub async fn expect_packet(&mut self) -> Packet {
        match self.next_event(WAIT).await {
            Event::Frame(f) => decode_server_packet(&f, self.version),
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// Nothing arrives (and the connection stays open) for `quiet`.
    #[track_caller]
    pub fn expect_nothing(
        &mut self,
        quiet: Duration,
    ) -> impl std::future::Future<Output = ()> + '_ {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event(quiet).await {
                Event::Timeout => {}
                Event::Frame(f) => panic!(
                    "{caller}: expected nothing, got {:02X?} = {:?}",
                    f,
                    codec_decode(&f, self.version)
                ),
                Event::Closed => panic!("{caller}: expected nothing, the connection was closed"),
            }
        }
    }

    /// The server closes the connection without sending anything more.
    pub async fn expect_closed(&mut self, timeout: Duration) {
        match self.next_event(timeout).await {
            Event::Closed => {}
            Event::Frame(f) => panic!(
                "expected the connection to close, got {f:02X?} = {:?}",
                codec_decode(&f, self.version)
            ),
            Event::Timeout => {
                panic!("expected the connection to close; still open after {timeout:?}")
            }
        }
    }

    /// A v5 DISCONNECT with `reason` (checked on the raw bytes), then EOF.
    pub async fn expect_disconnect(&mut self, reason: u8) {
        self.expect_disconnect_within(reason, WAIT).await;
    }

    pub async fn expect_disconnect_within(&mut self, reason: u8, timeout: Duration) {
        let raw = match self.next_event(timeout).await {
            Event::Frame(f) => f,
            other => panic!("expected DISCONNECT 0x{reason:02X}, got {other:?}"),
        };
        assert_eq!(
            raw[0],
            0xE0,
            "expected DISCONNECT 0x{reason:02X}, got {raw:02X?} = {:?}",
            codec_decode(&raw, self.version)
        );
        assert_eq!(
            frame_body(&raw).first().copied(),
            Some(reason),
            "DISCONNECT reason code: got {raw:02X?}, expected 0x{reason:02X}"
        );
        self.expect_closed(WAIT).await;
    }

    /// Read until a PUBLISH arrives (within [`WAIT`]), panicking on anything else.
    pub async fn expect_publish(&mut self) -> Publish {
        match self.expect_packet().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// A v5 CONNACK with reason 0x00, checked on the raw bytes; returns it decoded.
    pub async fn expect_connack_ok(&mut self) -> ConnAck {
        let raw = self.recv_raw(WAIT).await.expect("CONNACK");
        assert_eq!(
            connack_code(&raw),
            0x00,
            "CONNACK reason code in {raw:02X?}"
        );
        match decode_server_packet(&raw, ProtocolVersion::V5) {
            Packet::ConnAck(a) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    // -- Convenience, through the codec ------------------------------------------------

    /// SUBSCRIBE one filter; returns the SUBACK.
    pub async fn subscribe(&mut self, id: u16, filter: &str, qos: u8) -> SubAck {
        self.subscribe_with(id, filter, opts(qos), None).await
    }

    pub async fn subscribe_with(
        &mut self,
        id: u16,
        filter: &str,
        options: SubscriptionOptions,
        subscription_identifier: Option<u32>,
    ) -> SubAck {
        self.send_packet(&Packet::Subscribe(Subscribe {
            packet_id: pid(id),
            subscription_identifier,
            user_properties: Vec::new(),
            filters: vec![(filter.to_owned(), options)],
        }))
        .await;
        match self.expect_packet().await {
            Packet::SubAck(s) => {
                assert_eq!(s.packet_id, pid(id), "SUBACK packet id");
                s
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// SUBSCRIBE and assert the granted QoS.
    pub async fn sub_ok(&mut self, id: u16, filter: &str, qos: u8) {
        let ack = self.subscribe(id, filter, qos).await;
        assert_eq!(ack.reason_codes, [ReasonCode(qos)], "SUBACK for {filter}");
    }

    pub async fn unsubscribe(&mut self, id: u16, filter: &str) -> UnsubAck {
        self.send_packet(&Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id),
            user_properties: Vec::new(),
            filters: vec![filter.to_owned()],
        }))
        .await;
        match self.expect_packet().await {
            Packet::UnsubAck(u) => u,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// PUBLISH without waiting for acknowledgements (packet id `id` for QoS 1/2).
    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: u8, retain: bool, id: u16) {
        self.publish_props(
            topic,
            payload,
            qos,
            retain,
            id,
            PublishProperties::default(),
        )
        .await;
    }

    pub async fn publish_props(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: u8,
        retain: bool,
        id: u16,
        properties: PublishProperties,
    ) {
        let qos = QoS::from_u8(qos).expect("QoS 0..=2");
        self.send_packet(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: topic.to_owned(),
            packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
            properties,
            payload: Bytes::copy_from_slice(payload),
        }))
        .await;
    }

    /// PUBLISH at QoS 1 and wait for a successful PUBACK (raw-checked).
    pub async fn publish_q1(&mut self, topic: &str, payload: &[u8], retain: bool, id: u16) {
        self.publish(topic, payload, 1, retain, id).await;
        self.expect_raw(&puback_bytes(id)).await;
    }

    /// PUBLISH at QoS 2 and complete the exchange (PUBREC, PUBREL, PUBCOMP; raw-checked).
    pub async fn publish_q2(&mut self, topic: &str, payload: &[u8], retain: bool, id: u16) {
        let [h, l] = id.to_be_bytes();
        self.publish(topic, payload, 2, retain, id).await;
        self.expect_raw(&[0x50, 0x02, h, l]).await;
        self.send(&[0x62, 0x02, h, l]).await;
        self.expect_raw(&[0x70, 0x02, h, l]).await;
    }

    /// The next frame must be exactly `expected`.
    #[track_caller]
    pub fn expect_raw<'a>(
        &'a mut self,
        expected: &'a [u8],
    ) -> impl std::future::Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            match self.next_event(WAIT).await {
                Event::Frame(f) => assert_eq!(
                    f,
                    expected,
                    "{caller}: expected {expected:02X?}, got {:?}",
                    codec_decode(&f, self.version)
                ),
                other => panic!("{caller}: expected {expected:02X?}, got {other:?}"),
            }
        }
    }

    pub async fn puback(&mut self, id: PacketId) {
        self.send_packet(&Packet::PubAck(PubResp::new(id, ReasonCode::SUCCESS)))
            .await;
    }

    /// A PING round trip: proves the connection is alive and every earlier packet has
    /// been processed by the broker.
    pub async fn ping(&mut self) {
        self.send(&[0xC0, 0x00]).await;
        match self.next_event(WAIT).await {
            Event::Frame(f) if f == [0xD0, 0x00] => {}
            Event::Frame(f) => panic!(
                "expected PINGRESP, got {f:02X?} = {:?}",
                codec_decode(&f, self.version)
            ),
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Normal DISCONNECT (`E0 00`) and wait for the close.
    pub async fn disconnect(mut self) {
        self.send(&[0xE0, 0x00]).await;
        self.expect_closed(WAIT).await;
    }
}

/// Packet id helper (non-zero).
pub fn pid(id: u16) -> PacketId {
    NonZeroU16::new(id).expect("packet id 0")
}

/// Subscription options with only a QoS.
pub fn opts(qos: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(qos).expect("QoS 0..=2"),
        ..Default::default()
    }
}

/// v5 short-form PUBACK (success): `40 02 id`.
pub fn puback_bytes(id: u16) -> Vec<u8> {
    let [h, l] = id.to_be_bytes();
    vec![0x40, 0x02, h, l]
}

pub fn disconnect_packet(rc: u8) -> Packet {
    Packet::Disconnect(Disconnect::new(ReasonCode(rc)))
}

fn decode_server_packet(raw: &[u8], version: ProtocolVersion) -> Packet {
    match codec_decode(raw, version) {
        Ok(p) => p,
        Err(e) => panic!("server sent a packet the codec refuses: {raw:02X?}: {e}"),
    }
}

fn codec_decode(raw: &[u8], version: ProtocolVersion) -> Result<Packet, String> {
    let mut buf = BytesMut::from(raw);
    match codec::decode_from_server(&mut buf, version, u32::MAX) {
        Ok(Some(p)) if buf.is_empty() => Ok(p),
        Ok(Some(_)) => Err("trailing bytes".into()),
        Ok(None) => Err("incomplete".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Split the whole packet at the front of `buf` off it, once all of it is in. Frames are
/// cut by hand (type byte + Remaining Length), without the codec.
pub fn split_frame(buf: &mut BytesMut) -> Option<Vec<u8>> {
    if buf.is_empty() {
        return None;
    }
    let (rl, n) = read_varint(&buf[1..])?;
    let len = 1 + n + rl as usize;
    (buf.len() >= len).then(|| buf.split_to(len).to_vec())
}

/// The body of a whole frame: what follows the first byte and the Remaining Length.
pub fn frame_body(frame: &[u8]) -> &[u8] {
    let (_, n) = read_varint(&frame[1..]).expect("remaining length");
    &frame[1 + n..]
}

/// The reason code (v5) / return code (3.1.1) of a CONNACK frame, read by hand; panics
/// if `frame` is not a CONNACK.
pub fn connack_code(frame: &[u8]) -> u8 {
    assert_eq!(frame[0], 0x20, "expected CONNACK, got {frame:02X?}");
    frame_body(frame)[1]
}

/// Topic and payload of a v5 PUBLISH frame, read by hand (no codec).
pub fn publish_v5_parts(frame: &[u8]) -> (String, Vec<u8>) {
    assert_eq!(frame[0] >> 4, 0x3, "not a PUBLISH: {frame:02X?}");
    let b = frame_body(frame);
    let tlen = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let topic = String::from_utf8(b[2..2 + tlen].to_vec()).expect("UTF-8 topic");
    let mut i = 2 + tlen;
    if (frame[0] >> 1) & 3 > 0 {
        i += 2; // packet identifier
    }
    let (plen, used) = read_varint(&b[i..]).expect("property length");
    i += used + plen as usize;
    (topic, b[i..].to_vec())
}

/// A variable byte integer: (value, bytes used). `None` if incomplete.
pub fn read_varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, byte) in b.iter().enumerate().take(4) {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    assert!(
        b.len() < 4,
        "malformed variable byte integer from server: {b:02X?}"
    );
    None
}

pub fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let mut byte = (v & 0x7F) as u8;
        v >>= 7;
        if v > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if v == 0 {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand encoding
// ---------------------------------------------------------------------------------------

/// A whole packet: first byte, Remaining Length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    write_varint(&mut out, body.len() as u32);
    out.extend_from_slice(body);
    out
}

/// A length-prefixed string.
pub fn mqtt_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A v5 property block, written by hand.
#[derive(Debug, Clone, Default)]
pub struct Props(Vec<u8>);

impl Props {
    pub fn new() -> Self {
        Props(Vec::new())
    }
    pub fn byte(mut self, id: u8, v: u8) -> Self {
        self.0.extend([id, v]);
        self
    }
    pub fn u16(mut self, id: u8, v: u16) -> Self {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn u32(mut self, id: u8, v: u32) -> Self {
        self.0.push(id);
        self.0.extend(v.to_be_bytes());
        self
    }
    pub fn varint(mut self, id: u8, v: u32) -> Self {
        self.0.push(id);
        write_varint(&mut self.0, v);
        self
    }
    pub fn str(mut self, id: u8, s: &str) -> Self {
        self.0.push(id);
        mqtt_str(&mut self.0, s.as_bytes());
        self
    }
    pub fn bin(mut self, id: u8, b: &[u8]) -> Self {
        self.0.push(id);
        mqtt_str(&mut self.0, b);
        self
    }
    pub fn pair(mut self, k: &str, v: &str) -> Self {
        self.0.push(0x26);
        mqtt_str(&mut self.0, k.as_bytes());
        mqtt_str(&mut self.0, v.as_bytes());
        self
    }
    /// Length prefix and content.
    pub fn encode(&self, out: &mut Vec<u8>) {
        write_varint(out, self.0.len() as u32);
        out.extend_from_slice(&self.0);
    }
}

/// Property identifiers used by the tests.
pub mod prop {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// A PUBLISH written by hand (v5 when `props` is `Some`, 3.1.1 layout otherwise).
pub fn publish_bytes(
    flags: u8,
    topic: &[u8],
    packet_id: Option<u16>,
    props: Option<&Props>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = Vec::new();
    mqtt_str(&mut body, topic);
    if let Some(id) = packet_id {
        body.extend(id.to_be_bytes());
    }
    if let Some(p) = props {
        p.encode(&mut body);
    }
    body.extend_from_slice(payload);
    frame(0x30 | flags, &body)
}

/// A v5 SUBSCRIBE of one filter at `qos`, no properties, written by hand.
pub fn subscribe_bytes(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.push(0); // no properties
    mqtt_str(&mut body, filter.as_bytes());
    body.push(qos);
    frame(0x82, &body)
}

/// A will for [`ConnectBuilder`].
#[derive(Debug, Clone)]
pub struct WillSpec {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: u8,
    pub retain: bool,
    pub props: Props,
}

impl WillSpec {
    pub fn new(topic: &str, payload: &[u8]) -> Self {
        WillSpec {
            topic: topic.into(),
            payload: payload.into(),
            qos: 0,
            retain: false,
            props: Props::new(),
        }
    }
}

/// CONNECT written by hand: v5 (with properties) or 3.1.1.
#[derive(Debug, Clone)]
pub struct ConnectBuilder {
    pub protocol_name: String,
    pub level: u8,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub props: Props,
    pub will: Option<WillSpec>,
}

impl ConnectBuilder {
    /// v5, clean start, keep alive 60, no properties.
    pub fn new(client_id: &str) -> Self {
        ConnectBuilder {
            protocol_name: "MQTT".into(),
            level: 5,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            props: Props::new(),
            will: None,
        }
    }

    /// 3.1.1, clean session, keep alive 60.
    pub fn v311(client_id: &str) -> Self {
        ConnectBuilder {
            level: 4,
            ..Self::new(client_id)
        }
    }

    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }
    pub fn session_expiry(mut self, secs: u32) -> Self {
        self.props = self.props.u32(prop::SESSION_EXPIRY_INTERVAL, secs);
        self
    }
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.props = self.props.u16(prop::RECEIVE_MAXIMUM, n);
        self
    }
    pub fn maximum_packet_size(mut self, n: u32) -> Self {
        self.props = self.props.u32(prop::MAXIMUM_PACKET_SIZE, n);
        self
    }
    pub fn topic_alias_maximum(mut self, n: u16) -> Self {
        self.props = self.props.u16(prop::TOPIC_ALIAS_MAXIMUM, n);
        self
    }
    pub fn props(mut self, f: impl FnOnce(Props) -> Props) -> Self {
        self.props = f(self.props);
        self
    }
    pub fn will(mut self, will: WillSpec) -> Self {
        self.will = Some(will);
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let v5 = self.level == 5;
        let mut body = Vec::new();
        mqtt_str(&mut body, self.protocol_name.as_bytes());
        body.push(self.level);
        let mut flags = u8::from(self.clean_start) << 1;
        if let Some(w) = &self.will {
            flags |= 0x04 | (w.qos << 3) | (u8::from(w.retain) << 5);
        }
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        if v5 {
            self.props.encode(&mut body);
        }
        mqtt_str(&mut body, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            if v5 {
                w.props.encode(&mut body);
            }
            mqtt_str(&mut body, w.topic.as_bytes());
            mqtt_str(&mut body, &w.payload);
        }
        frame(0x10, &body)
    }
}
