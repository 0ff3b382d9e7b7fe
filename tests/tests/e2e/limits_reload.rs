//! Reloading `broker:` limits (issue 7): new connections are told the new limits in their
//! CONNACK and held to them; a connection made before keeps the limits it was told.

use gatehouse_tests::broker::TestBroker;
use gatehouse_tests::raw::{ConnectBuilder, RawClient};

fn yaml(max_packet: u32, receive_max: u16) -> String {
    format!(
        "
listeners:
  - name: main
    bindAddress: 127.0.0.1
    ports: [ {{ port: 0 }} ]
broker: {{ maxPacketSizeBytes: {max_packet}, maxReceiveMaximum: {receive_max} }}
diagnostics: {{ metrics: {{ prometheusPort: 0 }} }}
"
    )
}

#[tokio::test]
async fn new_limits_apply_to_new_connections_only() {
    let broker = TestBroker::start(&yaml(10_000, 100)).await;
    let addr = broker.mqtt_addr();
    let mut before = RawClient::connect(addr).await;
    before.send(&ConnectBuilder::new("before").build()).await;
    let ack = before.expect_connack_ok().await;
    assert_eq!(ack.properties.maximum_packet_size, Some(10_000));
    assert_eq!(ack.properties.receive_maximum, Some(100));

    let loaded = gatehouse_config::load_str(&yaml(500, 7), "reload.yaml").expect("valid");
    let done = broker
        .server
        .reloader()
        .apply(loaded.config)
        .expect("reload");
    assert!(done.limits);
    assert!(done.need_restart.is_empty(), "{:?}", done.need_restart);
    assert_eq!(done.disconnected, 0, "a limits change disconnects nobody");

    let mut after = RawClient::connect(addr).await;
    after.send(&ConnectBuilder::new("after").build()).await;
    let ack = after.expect_connack_ok().await;
    assert_eq!(ack.properties.maximum_packet_size, Some(500));
    assert_eq!(ack.properties.receive_maximum, Some(7));
    // Held to it: a 1000-byte PUBLISH is too large now (DISCONNECT 0x95).
    after.publish("t", &[0u8; 1000], 0, false, 0).await;
    after.expect_disconnect(0x95).await;

    // The earlier connection keeps the limit its CONNACK announced.
    before.publish("t", &[0u8; 1000], 0, false, 0).await;
    before.ping().await;
}
