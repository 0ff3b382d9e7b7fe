//! Issue 18 item 5: a CONNECT with a protocol level the broker does not speak is answered
//! before the close. A level above 5 (a newer MQTT) gets a v5 CONNACK with 0x84 Unsupported
//! Protocol Version, which such a client can read; levels 3 and 4 (3.1, or 3.1.1 under a
//! wrong protocol name) keep 3.1.1's return code 0x01.

use gatehouse_tests::raw::{ConnectBuilder, ProtocolBroker, WAIT};

async fn refused_with(b: &ProtocolBroker, name: &str, level: u8, expected: &[u8]) {
    let mut c = b.client().await;
    let connect = ConnectBuilder {
        protocol_name: name.into(),
        level,
        ..ConnectBuilder::new("levels")
    };
    c.send(&connect.build()).await;
    let raw = c
        .recv_raw(WAIT)
        .await
        .unwrap_or_else(|| panic!("protocol {name:?} level {level}: no CONNACK before the close"));
    assert_eq!(raw, expected, "protocol {name:?} level {level}");
    c.expect_closed(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_above_5_get_a_v5_connack_0x84() {
    let b = ProtocolBroker::start().await;
    // v5 CONNACK: flags 0, reason 0x84, no properties.
    for level in [6u8, 7, 255] {
        refused_with(&b, "MQTT", level, &[0x20, 0x03, 0x00, 0x84, 0x00]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_3_and_4_keep_the_v311_return_code_1() {
    let b = ProtocolBroker::start().await;
    for (name, level) in [("MQIsdp", 3u8), ("MQTT", 3), ("MQIsdp", 4), ("MQTX", 4)] {
        refused_with(&b, name, level, &[0x20, 0x02, 0x00, 0x01]).await;
    }
}
