//! Malformed packets and protocol errors (MQTT 5 §4.13): the offending connection gets
//! a DISCONNECT with the right reason and is closed; every other client carries on.

use gatehouse_tests::raw::*;

/// A client subscribed to its own topic, connected before the trouble starts.
struct Witness {
    client: RawClient,
    topic: String,
}

impl Witness {
    async fn new(b: &ProtocolBroker, name: &str) -> Witness {
        let topic = format!("witness/{name}");
        let mut client = b.v5(&format!("witness-{name}")).await;
        client.sub_ok(1, &topic, 0).await;
        Witness { client, topic }
    }

    /// Still connected, and publish → deliver still works.
    async fn check(&mut self) {
        let topic = self.topic.clone();
        self.client
            .publish(&topic, b"still here", 0, false, 0)
            .await;
        let p = self.client.expect_publish().await;
        assert_eq!(&p.payload[..], b"still here");
    }
}

/// Connect a fresh v5 client, send `bad`, expect DISCONNECT `rc` and a close.
async fn violation(b: &ProtocolBroker, id: &str, bad: &[u8], rc: u8) {
    let mut c = b.v5(id).await;
    c.send(bad).await;
    c.expect_disconnect(rc).await;
}

/// One broker, a witness, one fresh connection per case.
async fn cases(name: &str, limits: &str, cases: &[(&str, Vec<u8>, u8)]) {
    let b = ProtocolBroker::with_limits(limits).await;
    let mut w = Witness::new(&b, name).await;
    for (i, (what, bytes, rc)) in cases.iter().enumerate() {
        eprintln!("case {what}");
        violation(&b, &format!("{name}-{i}"), bytes, *rc).await;
    }
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_disconnect_e0_00_closes_without_will() {
    let b = ProtocolBroker::start().await;
    let mut w = Witness::new(&b, "e000").await;
    w.client.sub_ok(2, "mf/will/e000", 0).await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("mf-e000").will(WillSpec::new("mf/will/e000", b"will")))
        .await;
    c.send(&[0xE0, 0x00]).await;
    c.expect_closed(WAIT).await;
    // The witness sees its own marker first: no will was published.
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_short_form_with_reason_code_is_accepted() {
    let b = ProtocolBroker::start().await;
    let mut w = Witness::new(&b, "e0018e").await;
    let mut c = b.v5("mf-e0018e").await;
    // E0 01 8E: a reason code without properties (Remaining Length 1).
    c.send(&[0xE0, 0x01, 0x8E]).await;
    // Accepted as a DISCONNECT: the server just closes, it does not answer with one.
    c.expect_closed(WAIT).await;
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_without_enhanced_authentication_is_a_protocol_error() {
    cases("auth", "", &[("F0 00", vec![0xF0, 0x00], 0x82)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_packet_type_15_closes_without_disconnect() {
    let b = ProtocolBroker::start().await;
    let mut w = Witness::new(&b, "v3auth").await;
    let mut c = b.v311("mf-v3auth").await;
    c.send(&[0xF0, 0x00]).await;
    // 3.1.1 has no server DISCONNECT: the connection is just closed.
    c.expect_closed(WAIT).await;
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_rules_in_publish_and_subscribe() {
    let dup = Props::new()
        .u32(prop::MESSAGE_EXPIRY_INTERVAL, 10)
        .u32(prop::MESSAGE_EXPIRY_INTERVAL, 20);
    let dup_pfi = Props::new()
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 0)
        .byte(prop::PAYLOAD_FORMAT_INDICATOR, 0);
    let sub_id_in_publish = Props::new().varint(prop::SUBSCRIPTION_IDENTIFIER, 3);
    // SUBSCRIBE 82 len | 00 01 | props: 02 0B 00 | 00 01 't' | 00
    let sub_id_zero = frame(
        0x82,
        &[0x00, 0x01, 0x02, 0x0B, 0x00, 0x00, 0x01, b't', 0x00],
    );
    // Session Expiry Interval is not a PUBLISH property: malformed.
    let wrong_prop = Props::new().u32(prop::SESSION_EXPIRY_INTERVAL, 5);
    cases(
        "props",
        "",
        &[
            (
                "duplicate message expiry",
                publish_bytes(0, b"mf/p", None, Some(&dup), b"x"),
                0x82,
            ),
            (
                "duplicate payload format indicator",
                publish_bytes(2, b"mf/p", Some(1), Some(&dup_pfi), b"x"),
                0x82,
            ),
            (
                "subscription identifier in client PUBLISH",
                publish_bytes(0, b"mf/p", None, Some(&sub_id_in_publish), b"x"),
                0x82,
            ),
            ("subscription identifier 0", sub_id_zero, 0x82),
            (
                "property not allowed in PUBLISH",
                publish_bytes(0, b"mf/p", None, Some(&wrong_prop), b"x"),
                0x81,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_strings_and_topics() {
    let empty = Props::new();
    cases(
        "strings",
        "",
        &[
            (
                "U+0000 in topic",
                publish_bytes(0, b"mf/a\0b", None, Some(&empty), b"x"),
                0x81,
            ),
            (
                "UTF-16 surrogate in topic",
                publish_bytes(0, b"mf/\xED\xA0\x80", None, Some(&empty), b"x"),
                0x81,
            ),
            (
                "string longer than the packet",
                frame(0x30, &[0x00, 0x10, b'a', 0x00]),
                0x81,
            ),
            (
                "U+0000 in a subscription filter",
                frame(0x82, &[0x00, 0x01, 0x00, 0x00, 0x03, b'a', 0, b'b', 0x00]),
                0x81,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_header_violations() {
    let empty = Props::new();
    cases(
        "header",
        "",
        &[
            ("PINGREQ with flags 0001", vec![0xC1, 0x00], 0x81),
            (
                "SUBSCRIBE with flags 0000",
                frame(0x80, &[0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x00]),
                0x81,
            ),
            ("PUBREL with flags 0000", vec![0x60, 0x02, 0x00, 0x01], 0x81),
            (
                "PUBLISH QoS 3",
                publish_bytes(0x06, b"mf/q3", Some(1), Some(&empty), b"x"),
                0x81,
            ),
            (
                "PUBLISH DUP at QoS 0",
                publish_bytes(0x08, b"mf/dup", None, Some(&empty), b"x"),
                0x81,
            ),
            (
                "Remaining Length of 5 bytes",
                vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
                0x81,
            ),
            (
                "Remaining Length not minimally encoded",
                vec![0xC0, 0x80, 0x00],
                0x81,
            ),
            ("packet type 0", vec![0x00, 0x00], 0x81),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_only_a_server_sends_are_protocol_errors() {
    cases(
        "direction",
        "",
        &[
            ("CONNACK", vec![0x20, 0x03, 0x00, 0x00, 0x00], 0x82),
            ("PINGRESP", vec![0xD0, 0x00], 0x82),
            ("SUBACK", vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00], 0x82),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_unsubscribe_body_violations() {
    cases(
        "subscribe",
        "",
        &[
            (
                "SUBSCRIBE without filters",
                frame(0x82, &[0x00, 0x01, 0x00]),
                0x82,
            ),
            (
                "UNSUBSCRIBE without filters",
                frame(0xA2, &[0x00, 0x01, 0x00]),
                0x82,
            ),
            (
                "subscription options reserved bits",
                frame(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b't', 0xC0]),
                0x81,
            ),
            (
                "retain handling 3",
                frame(0x82, &[0x00, 0x01, 0x00, 0x00, 0x01, b't', 0x30]),
                0x82,
            ),
            (
                "packet identifier 0",
                frame(0x82, &[0x00, 0x00, 0x00, 0x00, 0x01, b't', 0x00]),
                0x81,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packet_larger_than_maximum_packet_size_gets_0x95() {
    let b = ProtocolBroker::with_limits("maxPacketSizeBytes: 128").await;
    let mut w = Witness::new(&b, "size").await;
    let (mut c, ack) = b.v5_with(ConnectBuilder::new("mf-size")).await;
    assert_eq!(ack.properties.maximum_packet_size, Some(128));
    // Exactly 128 bytes is fine: 2 (header) + 2+7 (topic) + 1 (props) + 116.
    let fits = publish_bytes(0, b"mf/size", None, Some(&Props::new()), &[b'a'; 116]);
    assert_eq!(fits.len(), 128);
    c.send(&fits).await;
    c.ping().await;
    // One byte more is too large.
    let big = publish_bytes(0, b"mf/size", None, Some(&Props::new()), &[b'a'; 117]);
    assert_eq!(big.len(), 129);
    c.send(&big).await;
    c.expect_disconnect(0x95).await;
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_packet_is_refused_before_its_body_arrives() {
    let b = ProtocolBroker::with_limits("maxPacketSizeBytes: 128").await;
    let mut c = b.v5("mf-size-early").await;
    // Announce a 1 MB PUBLISH but send only its first bytes.
    let mut head = vec![0x30];
    write_varint(&mut head, 1 << 20);
    head.extend([0x00, 0x01, b't']);
    c.send(&head).await;
    c.expect_disconnect(0x95).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_in_publish_topic_gets_0x90() {
    let empty = Props::new();
    cases(
        "wild",
        "",
        &[
            (
                "+",
                publish_bytes(0, b"mf/+/x", None, Some(&empty), b"x"),
                0x90,
            ),
            (
                "#",
                publish_bytes(2, b"mf/#", Some(1), Some(&empty), b"x"),
                0x90,
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_with_payload_format_indicator_qos1_gets_puback_0x99() {
    let b = ProtocolBroker::start().await;
    let mut w = Witness::new(&b, "pfi1").await;
    w.client.sub_ok(2, "mf/pfi1", 1).await;
    let mut c = b.v5("mf-pfi1").await;
    let pfi = Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 1);
    c.send(&publish_bytes(
        0x02,
        b"mf/pfi1",
        Some(0x0102),
        Some(&pfi),
        &[0xFF, 0xFE, 0x00],
    ))
    .await;
    // PUBACK 40 03 01 02 99: the reason code form.
    c.expect_raw(&[0x40, 0x03, 0x01, 0x02, 0x99]).await;
    // The connection stays open and the message was not forwarded.
    c.ping().await;
    // Valid UTF-8 with the indicator goes through.
    c.send(&publish_bytes(
        0x02,
        b"mf/pfi1",
        Some(3),
        Some(&pfi),
        "ok ✓".as_bytes(),
    ))
    .await;
    c.expect_raw(&puback_bytes(3)).await;
    let p = w.client.expect_publish().await;
    assert_eq!(
        &p.payload[..],
        "ok ✓".as_bytes(),
        "only the valid message is forwarded"
    );
    assert_eq!(p.properties.payload_format_indicator, Some(1));
    w.client.puback(p.packet_id.unwrap()).await;
    w.check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_with_payload_format_indicator_qos0_gets_disconnect_0x99() {
    let pfi = Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 1);
    cases(
        "pfi0",
        "",
        &[(
            "invalid UTF-8 at QoS 0",
            publish_bytes(0, b"mf/pfi0", None, Some(&pfi), &[0xC3, 0x28]),
            0x99,
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_respects_the_client_maximum_packet_size() {
    let b = ProtocolBroker::start().await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("mf-small").maximum_packet_size(8))
        .await;
    c.send(&[0xF0, 0x00]).await;
    let raw = c.recv_raw(WAIT).await.expect("DISCONNECT");
    assert!(
        raw.len() <= 8,
        "DISCONNECT of {} bytes to a client with Maximum Packet Size 8",
        raw.len()
    );
    assert_eq!(&raw[..3], [0xE0, raw[1], 0x82]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_length_beyond_the_packet_is_malformed() {
    cases(
        "proplen",
        "",
        &[
            (
                "PUBLISH property length 10 with 2 bytes left",
                frame(0x30, &[0x00, 0x01, b't', 0x0A, 0x01, 0x00]),
                0x81,
            ),
            (
                "DISCONNECT with trailing byte after properties",
                vec![0xE0, 0x03, 0x00, 0x00, 0xAA],
                0x81,
            ),
            ("PINGREQ with a body", vec![0xC0, 0x01, 0x00], 0x81),
        ],
    )
    .await;
}
