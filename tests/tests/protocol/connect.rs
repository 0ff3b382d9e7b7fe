//! CONNECT / CONNACK (MQTT 5 §3.1, §3.2; 3.1.1 §3.1, §3.2) and keep alive.

use std::time::{Duration, Instant};

use gatehouse_tests::raw::*;

/// A CONNACK with reason `rc` (checked on the raw bytes), then the close.
async fn expect_refusal(c: &mut RawClient, what: &str, rc: u8) {
    let raw = c
        .recv_raw(WAIT)
        .await
        .unwrap_or_else(|| panic!("{what}: CONNACK"));
    assert_eq!(&raw[..4], [0x20, raw[1], 0x00, rc], "{what}: {raw:02X?}");
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connack_advertises_receive_maximum_packet_size_and_topic_alias_maximum() {
    let b = ProtocolBroker::with_limits("maxPacketSizeBytes: 5000, maxReceiveMaximum: 7").await;
    let mut c = b.sending(&ConnectBuilder::new("cp-limits").build()).await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    // 20 <len> <flags 00> <reason 00> <properties...>
    assert_eq!(raw[0], 0x20);
    let (rl, n) = read_varint(&raw[1..]).unwrap();
    assert_eq!(raw.len(), 1 + n + rl as usize);
    assert_eq!(&raw[1 + n..1 + n + 2], [0x00, 0x00], "flags and reason");
    let props = &raw[1 + n + 2..];
    // Receive Maximum 7 (0x21 0x0007) and Maximum Packet Size 5000 (0x27 0x00001388)
    // appear verbatim in the property block.
    assert!(
        contains(props, &[0x21, 0x00, 0x07]),
        "receive maximum in {props:02X?}"
    );
    assert!(
        contains(props, &[0x27, 0x00, 0x00, 0x13, 0x88]),
        "maximum packet size in {props:02X?}"
    );
    let mut buf = bytes::BytesMut::from(&raw[..]);
    let Ok(Some(gatehouse_protocol::Packet::ConnAck(ack))) =
        gatehouse_protocol::codec::decode_from_server(
            &mut buf,
            gatehouse_protocol::ProtocolVersion::V5,
            u32::MAX,
        )
    else {
        panic!("CONNACK does not decode: {raw:02X?}");
    };
    assert!(!ack.session_present);
    assert_eq!(ack.properties.receive_maximum, Some(7));
    assert_eq!(ack.properties.maximum_packet_size, Some(5000));
    assert!(
        ack.properties.topic_alias_maximum.unwrap_or(0) > 0,
        "topic alias maximum advertised: {:?}",
        ack.properties
    );
    // No Server Keep Alive when the client's keep alive (60) is within the limit.
    assert_eq!(ack.properties.server_keep_alive, None);
    assert_eq!(ack.properties.assigned_client_identifier, None);
    c.ping().await;
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_client_id_gets_an_assigned_client_identifier() {
    let b = ProtocolBroker::start().await;
    let (mut c1, ack1) = b.v5_with(ConnectBuilder::new("")).await;
    let (mut c2, ack2) = b.v5_with(ConnectBuilder::new("")).await;
    let id1 = ack1
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier (0x12) in CONNACK");
    let id2 = ack2
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier (0x12) in CONNACK");
    assert!(!id1.is_empty());
    assert_ne!(id1, id2, "assigned identifiers are unique");
    // Not guessable: 128 random bits each (an id derived from the clock and a counter let
    // another client predict it and take the session over). Consecutive ids share no more
    // than chance: compare their random parts position by position.
    for id in [&id1, &id2] {
        let random = id.strip_prefix("gatehouse-").expect("prefix");
        assert_eq!(random.len(), 32, "{id}");
        assert!(random.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    let same = id1[10..]
        .chars()
        .zip(id2[10..].chars())
        .filter(|(a, b)| a == b)
        .count();
    assert!(same < 16, "{id1} and {id2} share {same} of 32 digits");
    // Both connections live side by side (no takeover between them).
    c1.ping().await;
    c2.ping().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_empty_client_id_with_clean_session_0_gets_return_code_2() {
    let b = ProtocolBroker::start().await;
    let mut c = b
        .sending(&ConnectBuilder::v311("").clean_start(false).build())
        .await;
    c.expect_raw(&[0x20, 0x02, 0x00, 0x02]).await;
    c.expect_closed(WAIT).await;

    // With clean session 1 an empty id is accepted.
    let mut ok = b.sending(&ConnectBuilder::v311("").build()).await;
    ok.expect_raw(&[0x20, 0x02, 0x00, 0x00]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_protocol_levels_get_v311_return_code_1_and_close() {
    let b = ProtocolBroker::start().await;
    // Levels above 5 get a v5 CONNACK 0x84 instead (issue 18; tests/tests/e2e/protocol_levels.rs).
    for (name, level) in [("MQIsdp", 3u8), ("MQTT", 3)] {
        let mut c = b.client().await;
        let connect = ConnectBuilder {
            protocol_name: name.into(),
            level,
            ..ConnectBuilder::v311("cp-level")
        };
        c.send(&connect.build()).await;
        // 3.1.1-format CONNACK: 20 02 00 01 (unacceptable protocol version).
        c.expect_raw(&[0x20, 0x02, 0x00, 0x01]).await;
        c.expect_closed(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_packet_not_connect_closes_the_connection() {
    let b = ProtocolBroker::start().await;
    let cases: [&[u8]; 3] = [
        &[0xC0, 0x00],                                     // PINGREQ
        &publish_bytes(0, b"t", None, None, b"x"),         // PUBLISH (3.1.1 layout)
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00], // SUBSCRIBE
    ];
    for bytes in cases {
        let mut c = b.sending(bytes).await;
        c.expect_closed(WAIT).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_authentication_method_gets_0x8c() {
    let b = ProtocolBroker::start().await;
    let mut c = b.client().await;
    let connect =
        ConnectBuilder::new("cp-auth").props(|p| p.str(prop::AUTHENTICATION_METHOD, "SCRAM-SHA-1"));
    c.send(&connect.build()).await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(
        &raw[..4],
        [0x20, raw[1], 0x00, 0x8C],
        "CONNACK 0x8C: {raw:02X?}"
    );
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connect_is_a_protocol_error() {
    let b = ProtocolBroker::start().await;
    let mut c = b.v5("cp-twice").await;
    c.send(&ConnectBuilder::new("cp-twice").build()).await;
    c.expect_disconnect(0x82).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_is_announced_when_the_client_asks_for_none_or_too_much() {
    let b = ProtocolBroker::with_limits("maxKeepAliveSeconds: 30").await;
    let (_c0, ack) = b.v5_with(ConnectBuilder::new("cp-ka0").keep_alive(0)).await;
    assert_eq!(ack.properties.server_keep_alive, Some(30), "keep alive 0");
    let (_c1, ack) = b
        .v5_with(ConnectBuilder::new("cp-ka100").keep_alive(100))
        .await;
    assert_eq!(
        ack.properties.server_keep_alive,
        Some(30),
        "keep alive 100 > 30"
    );
    let (_c2, ack) = b
        .v5_with(ConnectBuilder::new("cp-ka20").keep_alive(20))
        .await;
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "keep alive 20 <= 30"
    );

    // Defaults: maxKeepAliveSeconds 3600.
    let d = ProtocolBroker::start().await;
    let (_c, ack) = d.v5_with(ConnectBuilder::new("cp-kad")).await;
    assert_eq!(ack.properties.server_keep_alive, None);
    let (_c, ack) = d
        .v5_with(ConnectBuilder::new("cp-kad0").keep_alive(0))
        .await;
    assert_eq!(ack.properties.server_keep_alive, Some(3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_above_the_maximum_is_announced_in_connack() {
    let b = ProtocolBroker::with_limits("maxSessionExpirySeconds: 100").await;
    let (_c, ack) = b
        .v5_with(ConnectBuilder::new("cp-se").session_expiry(1000))
        .await;
    assert_eq!(ack.properties.session_expiry_interval, Some(100));
    let (_c, ack) = b
        .v5_with(ConnectBuilder::new("cp-se2").session_expiry(50))
        .await;
    assert_eq!(ack.properties.session_expiry_interval, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_disconnected_after_one_and_a_half_keep_alives_with_will() {
    let b = ProtocolBroker::start().await;
    let mut watcher = b.v5("cp-ka-watch").await;
    watcher.sub_ok(1, "ka/will", 0).await;
    let (mut c, _) = b
        .v5_with(
            ConnectBuilder::new("cp-ka1")
                .keep_alive(1)
                .will(WillSpec::new("ka/will", b"gone")),
        )
        .await;
    let start = Instant::now();
    c.expect_disconnect_within(0x8D, Duration::from_secs(4))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1200) && took <= Duration::from_millis(2500),
        "keep alive 1 s: disconnected after {took:?}, expected ~1.5 s"
    );
    // The keep-alive timeout is not a normal disconnection: the will goes out.
    let will = watcher.expect_publish().await;
    assert_eq!(&will.payload[..], b"gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingreq_keeps_a_keep_alive_connection_open() {
    let b = ProtocolBroker::start().await;
    let (mut c, _) = b
        .v5_with(ConnectBuilder::new("cp-ka-ping").keep_alive(1))
        .await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.ping().await;
    }
    // 2.1 s have passed, more than 1.5 × keep alive, and the connection is alive.
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_v5_connects_get_a_v5_connack_with_the_reason() {
    let b = ProtocolBroker::start().await;
    let base = ConnectBuilder::new("cp-bad");
    // Reserved flag (bit 0): 10 LL | 00 04 MQTT | 05 | flags
    let mut reserved = base.build();
    reserved[9] |= 0x01;
    // Will QoS 3.
    let mut will_qos3 = base.clone().will(WillSpec::new("cp/w", b"x")).build();
    will_qos3[9] |= 0x18;
    let cases: [(&str, Vec<u8>, u8); 5] = [
        ("reserved CONNECT flag", reserved, 0x81),
        ("will QoS 3", will_qos3, 0x81),
        (
            "receive maximum 0",
            base.clone().receive_maximum(0).build(),
            0x82,
        ),
        (
            "maximum packet size 0",
            base.clone().maximum_packet_size(0).build(),
            0x82,
        ),
        (
            "duplicate session expiry",
            base.clone().session_expiry(1).session_expiry(2).build(),
            0x82,
        ),
    ];
    for (what, bytes, rc) in cases {
        let mut c = b.sending(&bytes).await;
        expect_refusal(&mut c, what, rc).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_wills_are_refused_at_connect() {
    let b = ProtocolBroker::start().await;
    let cases = [
        ("wildcard will topic", WillSpec::new("cp/+/w", b"x"), 0x90),
        (
            "will payload not UTF-8 with payload format indicator 1",
            WillSpec {
                props: Props::new().byte(prop::PAYLOAD_FORMAT_INDICATOR, 1),
                ..WillSpec::new("cp/w", &[0xFF])
            },
            0x99,
        ),
    ];
    for (what, will, rc) in cases {
        let mut c = b
            .sending(&ConnectBuilder::new("cp-will").will(will).build())
            .await;
        expect_refusal(&mut c, what, rc).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v311_password_without_user_name_is_closed_without_connack() {
    let b = ProtocolBroker::start().await;
    let mut bytes = ConnectBuilder::v311("cp-pw").build();
    bytes[9] |= 0x40; // password flag
    bytes.extend([0x00, 0x02, b'p', b'w']);
    bytes[1] += 4;
    let mut c = b.sending(&bytes).await;
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_connect_within_the_connect_timeout_closes() {
    let b = ProtocolBroker::with_limits("connectTimeout: 1s").await;
    let mut idle = b.client().await;
    let mut partial = b.client().await;
    let connect = ConnectBuilder::new("cp-partial").build();
    partial.send(&connect[..5]).await;
    let start = Instant::now();
    idle.expect_closed(Duration::from_secs(3)).await;
    partial.expect_closed(Duration::from_secs(3)).await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(800), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keep_alive_is_enforced() {
    let b = ProtocolBroker::with_limits("maxKeepAliveSeconds: 1").await;
    let (mut c, ack) = b
        .v5_with(ConnectBuilder::new("cp-ska").keep_alive(60))
        .await;
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    let start = Instant::now();
    c.expect_disconnect_within(0x8D, Duration::from_secs(4))
        .await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1200) && took <= Duration::from_millis(2500),
        "server keep alive 1 s: disconnected after {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_sent_together_with_connect_are_processed() {
    let b = ProtocolBroker::start().await;
    let mut c = b.client().await;
    let mut bytes = ConnectBuilder::new("cp-batch").build();
    // SUBSCRIBE cp/batch QoS 0, then PUBLISH to it, then PINGREQ, all in one write.
    let mut sub = vec![0x00, 0x01, 0x00];
    mqtt_str(&mut sub, b"cp/batch");
    sub.push(0x00);
    bytes.extend(frame(0x82, &sub));
    bytes.extend(publish_bytes(
        0,
        b"cp/batch",
        None,
        Some(&Props::new()),
        b"self",
    ));
    bytes.extend([0xC0, 0x00]);
    c.send(&bytes).await;
    c.expect_connack_ok().await;
    // SUBACK, the PUBLISH and PINGRESP, in whatever order (the spec orders none of
    // them relative to the others, §3.8.4, §4.6).
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(c.recv_raw(WAIT).await.expect("three packets"));
    }
    let delivery = publish_bytes(0, b"cp/batch", None, Some(&Props::new()), b"self");
    for expected in [
        vec![0x90, 0x04, 0x00, 0x01, 0x00, 0x00],
        delivery,
        vec![0xD0, 0x00],
    ] {
        assert!(got.contains(&expected), "{expected:02X?} not in {got:02X?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_split_into_single_bytes_are_reassembled() {
    let b = ProtocolBroker::start().await;
    let mut sub = b.v5("cp-split-sub").await;
    sub.sub_ok(1, "cp/split", 1).await;
    let mut c = b.client().await;
    let mut bytes = ConnectBuilder::new("cp-split").session_expiry(5).build();
    bytes.extend(publish_bytes(
        0x02,
        b"cp/split",
        Some(3),
        Some(&Props::new().pair("k", "v")),
        &[7; 200],
    ));
    for byte in bytes {
        c.send(&[byte]).await;
    }
    c.expect_connack_ok().await;
    c.expect_raw(&puback_bytes(3)).await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], [7; 200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_larger_than_the_maximum_packet_size_gets_0x95() {
    let b = ProtocolBroker::with_limits("maxPacketSizeBytes: 128").await;
    let mut c = b.client().await;
    let id = "x".repeat(200);
    c.send(&ConnectBuilder::new(&id).build()).await;
    let raw = c.recv_raw(WAIT).await.expect("CONNACK");
    assert_eq!(&raw[..4], [0x20, raw[1], 0x00, 0x95], "{raw:02X?}");
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_client_identifier_names_a_resumable_session() {
    let b = ProtocolBroker::start().await;
    let (c, ack) = b.v5_with(ConnectBuilder::new("").session_expiry(60)).await;
    let id = ack
        .properties
        .assigned_client_identifier
        .expect("assigned id");
    c.disconnect().await;
    let (_c, ack) = b
        .v5_with(
            ConnectBuilder::new(&id)
                .clean_start(false)
                .session_expiry(60),
        )
        .await;
    assert!(
        ack.session_present,
        "session of the assigned id {id} resumed"
    );
    assert_eq!(ack.properties.assigned_client_identifier, None);
}
